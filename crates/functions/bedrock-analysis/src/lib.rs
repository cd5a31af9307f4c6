//! AnalyzeWithBedrock: invoked twice per wave, before approval (`prePatch`: assess the planned
//! change from the wave's inventory) and after the wave (`postWave`: analyse its outcomes and decide
//! `issuesDetected`, which aborts the run when the plan says `abortOnIssues`).
//!
//! When the run's plan names a Bedrock agent (from the run input, or the hub's default folded into
//! the plan), the agent is asked ([`agent`]); otherwise, or when Bedrock fails in any way (throttled
//! after the SDK's retries, access denied, no answer within `EC2PATCH_BEDROCK_TIMEOUT_SECONDS`, a
//! broken stream, an answer that is not the JSON asked for), the deterministic [`rules`] answer,
//! marked `source: "rules"`, with `agentError` saying what happened. Analysis never fails a run
//! because of Bedrock: the handler returns an error only for a malformed request or a plan it
//! cannot load.
//!
//! The answer travels through the state machine, so it is bounded: a summary of at most
//! [`MAX_SUMMARY_CHARS`] characters and at most [`MAX_REASONS`] reasons of at most
//! [`MAX_REASON_CHARS`] characters each, all plain one-line text.

pub mod agent;
pub mod rules;

use std::time::Duration;

use ec2patch_core::plan::BedrockAgent;
use ec2patch_core::wave::{WaveInventory, WaveOutcomes};
use ec2patch_core::{Error, Hub, Result};
use serde::{Deserialize, Serialize};

pub use rules::Thresholds;

pub const MAX_SUMMARY_CHARS: usize = 1500;
pub const MAX_REASONS: usize = 10;
pub const MAX_REASON_CHARS: usize = 200;
/// `agentError` is clipped to this.
pub const MAX_AGENT_ERROR_CHARS: usize = 500;
/// Default bound on one InvokeAgent call, stream included (`EC2PATCH_BEDROCK_TIMEOUT_SECONDS`).
pub const DEFAULT_BEDROCK_TIMEOUT: Duration = Duration::from_secs(60);
/// Lambda's own limit: a longer Bedrock timeout could never be reached.
pub const MAX_BEDROCK_TIMEOUT_SECONDS: u64 = 900;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Before approval: assess the wave's inventory.
    PrePatch,
    /// After the wave: analyse its outcomes.
    PostWave,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::PrePatch => "prePatch",
            Mode::PostWave => "postWave",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisRequest {
    pub mode: Mode,
    pub run_id: String,
    pub wave_index: usize,
    /// The wave's inventory; required for `prePatch`.
    #[serde(default)]
    pub inventory: Option<WaveInventory>,
    /// The wave's outcomes; required for `postWave`.
    #[serde(default)]
    pub outcomes: Option<WaveOutcomes>,
}

impl AnalysisRequest {
    /// What the mode analyses; `dry_run` is the plan's (the inventory does not carry it). The
    /// other mode's field, if present, is ignored.
    pub fn into_data(self, dry_run: bool) -> Result<WaveData> {
        match self.mode {
            Mode::PrePatch => match self.inventory {
                Some(inventory) => Ok(WaveData::PrePatch { inventory, dry_run }),
                None => Err(Error::invalid("inventory", "is required when mode is prePatch")),
            },
            Mode::PostWave => match self.outcomes {
                Some(outcomes) => Ok(WaveData::PostWave { outcomes }),
                None => Err(Error::invalid("outcomes", "is required when mode is postWave")),
            },
        }
    }
}

/// What one analysis looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum WaveData {
    PrePatch { inventory: WaveInventory, dry_run: bool },
    PostWave { outcomes: WaveOutcomes },
}

impl WaveData {
    pub fn mode(&self) -> Mode {
        match self {
            WaveData::PrePatch { .. } => Mode::PrePatch,
            WaveData::PostWave { .. } => Mode::PostWave,
        }
    }

    pub fn run_id(&self) -> &str {
        match self {
            WaveData::PrePatch { inventory, .. } => &inventory.run_id,
            WaveData::PostWave { outcomes } => &outcomes.run_id,
        }
    }

    pub fn wave_index(&self) -> usize {
        match self {
            WaveData::PrePatch { inventory, .. } => inventory.wave_index,
            WaveData::PostWave { outcomes } => outcomes.wave_index,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Bedrock,
    Rules,
}

/// The step's result (small: it flows through the state machine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    pub source: Source,
    pub issues_detected: bool,
    /// A few plain-text sentences, at most [`MAX_SUMMARY_CHARS`] characters.
    pub summary: String,
    /// At most [`MAX_REASONS`], each at most [`MAX_REASON_CHARS`] characters.
    pub reasons: Vec<String>,
    /// Why the configured Bedrock agent was not used (`null` when it was, or when none is configured).
    pub agent_error: Option<String>,
}

impl Analysis {
    /// An analysis with its texts cleaned and clipped to the limits.
    pub fn new(source: Source, issues_detected: bool, summary: &str, reasons: Vec<String>) -> Self {
        Self {
            source,
            issues_detected,
            summary: clean(summary, MAX_SUMMARY_CHARS),
            reasons: reasons
                .iter()
                .map(|reason| clean(reason, MAX_REASON_CHARS))
                .filter(|reason| !reason.is_empty())
                .take(MAX_REASONS)
                .collect(),
            agent_error: None,
        }
    }
}

/// One line of plain text: whitespace runs (newlines included) become one space, other control
/// characters go, and the result is at most `max_chars` characters (ending in `...` when cut).
pub fn clean(text: &str, max_chars: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let line: String = line.chars().filter(|c| !c.is_control()).collect();
    if line.chars().count() <= max_chars {
        return line;
    }
    let mut clipped: String = line.chars().take(max_chars.saturating_sub(3)).collect();
    clipped.truncate(clipped.trim_end().len());
    clipped.push_str("...");
    clipped
}

/// What the function needs beyond the hub: the Bedrock client, the rules' thresholds and the
/// bound on one agent call. Build it directly in tests and local runs.
#[derive(Debug, Clone)]
pub struct Deps {
    pub bedrock: aws_sdk_bedrockagentruntime::Client,
    pub thresholds: Thresholds,
    /// `EC2PATCH_BEDROCK_TIMEOUT_SECONDS` (1 to 900, default 60).
    pub timeout: Duration,
}

impl Deps {
    /// The client from the hub's SDK configuration; thresholds and timeout from the environment.
    pub async fn load(hub: &Hub) -> Result<Self> {
        Self::from_lookup(aws_sdk_bedrockagentruntime::Client::new(&hub.sdk), |name| std::env::var(name).ok())
    }

    /// Reads the thresholds and the timeout through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(
        bedrock: aws_sdk_bedrockagentruntime::Client,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let thresholds = Thresholds::from_lookup(&lookup)?;
        let timeout = match lookup("EC2PATCH_BEDROCK_TIMEOUT_SECONDS").as_deref().map(str::trim) {
            None | Some("") => DEFAULT_BEDROCK_TIMEOUT,
            Some(v) => match v.parse::<u64>() {
                Ok(seconds @ 1..=MAX_BEDROCK_TIMEOUT_SECONDS) => Duration::from_secs(seconds),
                _ => {
                    return Err(Error::ConfigError(format!(
                        "EC2PATCH_BEDROCK_TIMEOUT_SECONDS={v:?} is not a whole number of seconds from 1 to {MAX_BEDROCK_TIMEOUT_SECONDS}"
                    )));
                }
            },
        };
        Ok(Self { bedrock, thresholds, timeout })
    }
}

pub async fn handle(hub: &Hub, deps: &Deps, request: AnalysisRequest) -> Result<Analysis> {
    let plan = hub.store.load_plan(&request.run_id).await?;
    if request.wave_index >= plan.waves.len() {
        return Err(Error::invalid("waveIndex", format!("run {} has {} waves", plan.run_id, plan.waves.len())));
    }
    let data = request.into_data(plan.dry_run)?;
    Ok(analyze(Some(&deps.bedrock), plan.bedrock.as_ref(), &deps.thresholds, deps.timeout, &data).await)
}

/// The analysis of `data`: the agent's when `agent` is configured and answers well within
/// `timeout`, else the rules' (with `agentError` saying why when an agent was configured). Never
/// fails. `client` `None` means no Bedrock in this environment.
pub async fn analyze(
    client: Option<&aws_sdk_bedrockagentruntime::Client>,
    agent: Option<&BedrockAgent>,
    thresholds: &Thresholds,
    timeout: Duration,
    data: &WaveData,
) -> Analysis {
    let (run_id, wave, mode) = (data.run_id(), data.wave_index(), data.mode().as_str());
    let Some(agent) = agent else {
        let analysis = rules::analyze(data, thresholds);
        tracing::info!(run_id, wave, mode, source = "rules", issues = analysis.issues_detected, "wave analysed");
        return analysis;
    };
    let answer = match client {
        None => Err("a Bedrock agent is configured but this environment has no Bedrock client".to_owned()),
        Some(client) => {
            let session_id = agent::session_id(run_id, wave, data.mode());
            let call = agent::ask(client, agent, &session_id, agent::prompt(data, thresholds));
            match tokio::time::timeout(timeout, call).await {
                Ok(answer) => answer.and_then(|text| agent::parse_answer(&text)),
                Err(_) => Err(format!(
                    "InvokeAgent (agent {} alias {}) did not answer within {} s",
                    agent.agent_id,
                    agent.agent_alias_id,
                    timeout.as_secs_f64()
                )),
            }
        }
    };
    match answer {
        Ok(mut analysis) => {
            // The agent may add issues but not wave away the rules' hard facts: a failed or
            // unhealthy instance stops the rollout (with abortOnIssues) whatever the model says.
            let rules = rules::analyze(data, thresholds);
            if rules.issues_detected && !analysis.issues_detected {
                analysis.issues_detected = true;
                analysis.reasons.insert(0, "the rules found issues the agent did not flag".to_owned());
                analysis.reasons.truncate(MAX_REASONS);
            }
            tracing::info!(run_id, wave, mode, source = "bedrock", issues = analysis.issues_detected, "wave analysed");
            analysis
        }
        Err(reason) => {
            let mut analysis = rules::analyze(data, thresholds);
            tracing::warn!(run_id, wave, mode, agent_error = %reason, "Bedrock analysis failed, using the rules");
            tracing::info!(run_id, wave, mode, source = "rules", issues = analysis.issues_detected, "wave analysed");
            analysis.agent_error = Some(clean(&reason, MAX_AGENT_ERROR_CHARS));
            analysis
        }
    }
}
