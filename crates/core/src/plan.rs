//! The normalised run: what every step works from, whichever input shape started the run.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A 12-digit AWS account id (validated by [`crate::input`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(value: &str) -> Option<Self> {
        (value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit())).then(|| Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An AWS region name, checked against [`crate::regions`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Region(String);

impl Region {
    /// Wraps a name the caller has already validated.
    pub fn new_unchecked(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One EC2 tag filter: an instance matches when its tag `key` has one of `values`.
/// A run matches instances that satisfy *all* its filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagFilter {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockAgent {
    pub agent_id: String,
    pub agent_alias_id: String,
}

/// A group of accounts x regions patched together; waves run one after another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    pub name: String,
    pub accounts: Vec<AccountId>,
    pub regions: Vec<Region>,
    /// The wave this one follows across runs ([`crate::wave_gate`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<crate::wave_gate::WaveGate>,
    /// AWS Organizations targeting: OUs (or a root), whose accounts, nested OUs included, PlanRun
    /// adds to `accounts` before anything else runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizational_units: Vec<String>,
    /// Accounts this wave never patches, even when listed or in one of its OUs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_accounts: Vec<AccountId>,
    /// Where each of `accounts` came from, once PlanRun resolved the OUs (empty for a wave that
    /// only lists accounts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub account_sources: Vec<AccountSource>,
    /// Accounts the OUs hold that this wave leaves out, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOutAccount>,
    /// Snapshot each instance's EBS volumes before sending its patch command
    /// ([`crate::snapshots`]); an instance whose snapshot fails is skipped, never patched.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub snapshot: bool,
}

/// How an account came into a wave: listed in `accounts`, or found under one of the wave's OUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSource {
    pub account: AccountId,
    /// `accounts`, or the OU (as named in the wave) the account was found under.
    pub from: String,
    /// The OU (or root) the account sits in directly, when it came from an OU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// An account under a wave's OUs that the wave does not patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeftOutAccount {
    pub account: AccountId,
    /// e.g. `SUSPENDED`, `excluded (excludeAccounts)`, `in an earlier wave (canary)`.
    pub reason: String,
    /// The OU it sits in directly.
    pub parent: String,
}

impl Wave {
    /// A wave of `accounts` x `regions`, nothing else set.
    pub fn new(name: impl Into<String>, accounts: Vec<AccountId>, regions: Vec<Region>) -> Self {
        Self {
            name: name.into(),
            accounts,
            regions,
            gate: None,
            organizational_units: Vec::new(),
            exclude_accounts: Vec::new(),
            account_sources: Vec::new(),
            left_out: Vec::new(),
            snapshot: false,
        }
    }

    /// Every account x region pair of the wave, accounts outermost.
    pub fn targets(&self) -> impl Iterator<Item = Target> + '_ {
        self.accounts.iter().flat_map(move |account| {
            self.regions.iter().map(move |region| Target { account: account.clone(), region: region.clone() })
        })
    }

    pub fn target_count(&self) -> usize {
        self.accounts.len() * self.regions.len()
    }
}

/// The unit of fan-out: one account in one region.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Target {
    pub account: AccountId,
    pub region: Region,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "account {} region {}", self.account, self.region)
    }
}

/// A validated run. Built only by [`crate::input::plan_run`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPlan {
    pub run_id: String,
    pub dry_run: bool,
    pub waves: Vec<Wave>,
    pub tag_filters: Vec<TagFilter>,
    pub sns_topic_arn: Option<String>,
    pub bedrock: Option<BedrockAgent>,
    pub wave_pause_seconds: u32,
    pub abort_on_issues: bool,
    /// `SnapshotId` of every AWS-RunPatchBaseline command of the run (one per run, so patch
    /// baselines resolve identically across waves and retries).
    pub snapshot_id: String,
    /// SSM Change Calendars (hub account) that must be OPEN before a wave sends commands: the
    /// hub's, then the input's ([`crate::change_freeze`]).
    #[serde(default)]
    pub change_calendars: Vec<String>,
    /// How long a wave waits for a CLOSED calendar to open before the run stops with
    /// `ChangeFreeze` (0: stop at once).
    #[serde(default)]
    pub freeze_wait_seconds: u32,
    /// Each wave's error budget ([`crate::error_budget`]).
    #[serde(default)]
    pub error_budget: crate::error_budget::ErrorBudget,
    /// At most this many batches of a wave patch at once (`None`: the state machine's own limits,
    /// 10 inline and 100 distributed).
    #[serde(default)]
    pub max_concurrent_batches: Option<u32>,
    /// A manual run let through closed wave gates (`ignoreGates`), and who started it.
    #[serde(default)]
    pub ignore_gates: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
}

impl RunPlan {
    pub fn target_count(&self) -> usize {
        self.waves.iter().map(Wave::target_count).sum()
    }
}
