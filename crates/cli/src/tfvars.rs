//! The hub's Terraform variables (`*.tfvars`), read the way `terraform/modules/hub` reads them,
//! so the CLI checks and schedules exactly what `terraform apply` would deploy.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Value, json};

use ec2patch_core::config::{NamedWave, RunDefaults};
use ec2patch_core::plan::BedrockAgent;

/// The hub variables the CLI uses; other variables in the file are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct HubVars {
    #[serde(default = "default_prefix")]
    pub name_prefix: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub orchestrator_account_id: Option<String>,
    #[serde(default)]
    pub wave_rules: Vec<WaveRule>,
    #[serde(default = "default_tag_key")]
    pub tag_key: String,
    #[serde(default = "default_tag_value")]
    pub tag_value: String,
    #[serde(default)]
    pub wave_pause_seconds: i64,
    #[serde(default = "default_true")]
    pub abort_on_issues: bool,
    #[serde(default)]
    pub bedrock_agent_id: Option<String>,
    #[serde(default)]
    pub bedrock_agent_alias_id: Option<String>,
    #[serde(default)]
    pub default_regions: Vec<String>,
}

/// One `wave_rules` entry: an EventBridge rule that starts a run of one wave.
#[derive(Debug, Clone, Deserialize)]
pub struct WaveRule {
    pub name: String,
    pub schedule_expression: String,
    #[serde(default)]
    pub accounts: Vec<String>,
    /// AWS Organizations targeting: OUs whose accounts join the wave, and accounts left out.
    #[serde(default)]
    pub organizational_units: Vec<String>,
    #[serde(default)]
    pub exclude_accounts: Vec<String>,
    pub regions: Vec<String>,
    /// The wave this one follows across runs (its gate), and how far back the gate looks.
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub gate_window_hours: Option<u32>,
    /// Pre-patch snapshots of each instance's volumes.
    #[serde(default)]
    pub snapshot: bool,
}

impl WaveRule {
    /// The gate's window as Terraform sends it (`optional(number, 168)`).
    pub fn gate_window_hours(&self) -> u32 {
        self.gate_window_hours.unwrap_or(ec2patch_core::wave_gate::DEFAULT_WINDOW_HOURS)
    }
}

fn default_prefix() -> String {
    "ec2patch".to_owned()
}
fn default_tag_key() -> String {
    "PatchGroup".to_owned()
}
fn default_tag_value() -> String {
    "default".to_owned()
}
fn default_true() -> bool {
    true
}

impl HubVars {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        hcl::from_str(&text).with_context(|| format!("{} is not a valid hub tfvars file", path.display()))
    }

    /// The SNS topic Terraform creates, as the run inputs name it.
    pub fn topic_arn(&self) -> String {
        format!(
            "arn:aws:sns:{}:{}:{}-PatchAlerts",
            self.region.as_deref().unwrap_or("us-east-1"),
            self.orchestrator_account_id.as_deref().unwrap_or("111111111111"),
            self.name_prefix
        )
    }

    /// The run input the wave's EventBridge rule sends (terraform/modules/hub/schedule.tf).
    pub fn wave_input(&self, rule: &WaveRule) -> Value {
        let mut input = json!({
            "accountWaves": [Self::account_wave(rule)],
            "ec2": {"tagKey": self.tag_key, "tagValue": self.tag_value},
            "snsTopicArn": self.topic_arn(),
            "wavePauseSeconds": self.wave_pause_seconds,
            "abortOnIssues": self.abort_on_issues,
        });
        if let (Some(agent), Some(alias), Some(object)) =
            (&self.bedrock_agent_id, &self.bedrock_agent_alias_id, input.as_object_mut())
        {
            object.insert("bedrock".to_owned(), json!({"agentId": agent, "agentAliasId": alias}));
        }
        input
    }

    /// The rule's wave as its run input names it, with its gate when it has one.
    fn account_wave(rule: &WaveRule) -> Value {
        let mut wave = json!({"name": rule.name, "accounts": rule.accounts, "regions": rule.regions});
        if let Some(object) = wave.as_object_mut() {
            if !rule.organizational_units.is_empty() {
                object.insert("organizationalUnits".to_owned(), json!(rule.organizational_units));
            }
            if !rule.exclude_accounts.is_empty() {
                object.insert("excludeAccounts".to_owned(), json!(rule.exclude_accounts));
            }
            if rule.snapshot {
                object.insert("snapshot".to_owned(), json!(true));
            }
        }
        if let (Some(after), Some(object)) = (&rule.after, wave.as_object_mut()) {
            object.insert("after".to_owned(), json!(after));
            object.insert("gateWindowHours".to_owned(), json!(rule.gate_window_hours()));
        }
        wave
    }

    /// Gates naming a wave that is not a rule, or waiting on each other in a cycle.
    pub fn check_gates(&self) -> Result<(), String> {
        ec2patch_core::wave_gate::check_graph(self.wave_rules.iter().map(|w| (w.name.as_str(), w.after.as_deref())))
    }

    /// The defaults the hub's functions get from these variables (EC2PATCH_* environment).
    pub fn run_defaults(&self) -> RunDefaults {
        let mut defaults = RunDefaults {
            tag_key: self.tag_key.clone(),
            tag_value: self.tag_value.clone(),
            sns_topic_arn: Some(self.topic_arn()),
            // Terraform hands the agent to the functions (EC2PATCH_BEDROCK_AGENT_ID/_ALIAS_ID)
            // only when both are set.
            bedrock: match (&self.bedrock_agent_id, &self.bedrock_agent_alias_id) {
                (Some(agent_id), Some(agent_alias_id)) => {
                    Some(BedrockAgent { agent_id: agent_id.clone(), agent_alias_id: agent_alias_id.clone() })
                }
                _ => None,
            },
            abort_on_issues: self.abort_on_issues,
            wave_pause_seconds: u32::try_from(self.wave_pause_seconds).unwrap_or_default(),
            waves: self
                .wave_rules
                .iter()
                .map(|w| NamedWave {
                    name: w.name.clone(),
                    accounts: w.accounts.clone(),
                    organizational_units: w.organizational_units.clone(),
                    exclude_accounts: w.exclude_accounts.clone(),
                    regions: w.regions.clone(),
                    after: w.after.clone(),
                    gate_window_hours: w.after.as_ref().map(|_| w.gate_window_hours()),
                    snapshot: w.snapshot,
                })
                .collect(),
            ..RunDefaults::default()
        };
        if !self.default_regions.is_empty() {
            defaults.regions = self.default_regions.clone();
        } else if let Some(region) = &self.region {
            defaults.regions = vec![region.clone()];
        }
        defaults
    }
}
