//! The hub's configuration: set by Terraform as Lambda environment variables, and by the local
//! stack directly. Every value has a documented variable; see `docs/architecture.md`.

use serde::Deserialize;

use crate::plan::BedrockAgent;
use crate::{Error, Result};

/// Defaults applied to run inputs that omit a value, plus the hub's named waves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDefaults {
    /// Regions used when a wave names none (`EC2PATCH_DEFAULT_REGIONS`, else the hub's region).
    pub regions: Vec<String>,
    /// The tag filter used when the input has neither `tagFilters` nor `ec2`
    /// (`EC2PATCH_TAG_KEY`/`EC2PATCH_TAG_VALUE`, default `PatchGroup=default`).
    pub tag_key: String,
    pub tag_value: String,
    pub sns_topic_arn: Option<String>,
    pub bedrock: Option<BedrockAgent>,
    pub wave_pause_seconds: u32,
    pub abort_on_issues: bool,
    /// Waves configured on the hub (`EC2PATCH_WAVES`, JSON `[{name, accounts, regions, after?,
    /// gateWindowHours?}]`), which
    /// an API-shape input selects with `waveId`.
    pub waves: Vec<NamedWave>,
    /// Regions accepted beyond the built-in list (`EC2PATCH_EXTRA_REGIONS`).
    pub extra_regions: Vec<String>,
    /// SSM Change Calendars (names or ARNs, in the hub account) every run respects
    /// (`EC2PATCH_CHANGE_CALENDARS`, comma-separated; Terraform's `change_calendars`).
    pub change_calendars: Vec<String>,
    /// How long a wave waits for a closed calendar to open (`EC2PATCH_FREEZE_WAIT_SECONDS`).
    pub freeze_wait_seconds: u32,
    /// Each wave's default error budget (`EC2PATCH_MAX_FAILED_INSTANCES`,
    /// `EC2PATCH_MAX_FAILED_PERCENT`; unset: none).
    pub error_budget: crate::error_budget::ErrorBudget,
    /// Default `maxConcurrentBatches` (`EC2PATCH_MAX_CONCURRENT_BATCHES`; unset: no extra bound).
    pub max_concurrent_batches: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NamedWave {
    pub name: String,
    #[serde(default)]
    pub accounts: Vec<String>,
    /// AWS Organizations targeting (Terraform's `wave_rules[*].organizational_units`).
    #[serde(default, rename = "organizationalUnits")]
    pub organizational_units: Vec<String>,
    #[serde(default, rename = "excludeAccounts")]
    pub exclude_accounts: Vec<String>,
    pub regions: Vec<String>,
    /// The wave this one follows across runs (Terraform's `wave_rules[*].after`).
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default, rename = "gateWindowHours")]
    pub gate_window_hours: Option<u32>,
    /// Pre-patch snapshots (Terraform's `wave_rules[*].snapshot`).
    #[serde(default)]
    pub snapshot: bool,
}

impl Default for RunDefaults {
    fn default() -> Self {
        Self {
            regions: vec!["us-east-1".to_owned()],
            tag_key: "PatchGroup".to_owned(),
            tag_value: "default".to_owned(),
            sns_topic_arn: None,
            bedrock: None,
            wave_pause_seconds: 0,
            abort_on_issues: true,
            waves: Vec::new(),
            extra_regions: Vec::new(),
            change_calendars: Vec::new(),
            freeze_wait_seconds: 0,
            error_budget: crate::error_budget::ErrorBudget::default(),
            max_concurrent_batches: None,
        }
    }
}

/// Everything a function needs to know about the hub deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// DynamoDB table for run state (`EC2PATCH_TABLE`).
    pub table: String,
    /// S3 bucket for plans, manifests and reports (`EC2PATCH_BUCKET`).
    pub bucket: String,
    /// Role assumed in each spoke (`EC2PATCH_SPOKE_ROLE_NAME`, default `PatchExecRole`).
    pub spoke_role_name: String,
    /// ExternalId required by the spoke role's trust policy (`EC2PATCH_EXTERNAL_ID`).
    pub external_id: Option<String>,
    /// Targets inventoried at once by one invocation (`EC2PATCH_INVENTORY_CONCURRENCY`, default 16).
    pub inventory_concurrency: usize,
    /// Days run records are kept before DynamoDB's TTL removes them (`EC2PATCH_RECORD_TTL_DAYS`, default 90).
    pub record_ttl_days: u32,
    /// How long a wave waits for a person (`EC2PATCH_APPROVAL_TIMEOUT_SECONDS`, default 14400 =
    /// 4 hours); also the lifetime of the emailed links.
    pub approval_timeout_seconds: u32,
    /// Base URL of the `/callback` route (`EC2PATCH_CALLBACK_BASE_URL`): the HTTP API's invoke URL.
    pub callback_base_url: Option<String>,
    /// SSM SecureString parameter holding the approval-link HMAC key (`EC2PATCH_HMAC_KEY_PARAMETER`).
    pub hmac_key_parameter: Option<String>,
    /// A role PlanRun assumes to read AWS Organizations (`EC2PATCH_ORGANIZATIONS_ROLE_ARN`,
    /// Terraform's `organizations_role_arn`): one in the management account, or a delegated
    /// administrator's. Unset: the hub's own role reads it (the hub is then the management or a
    /// delegated administrator account).
    pub organizations_role_arn: Option<String>,
    pub patching: PatchSettings,
    pub defaults: RunDefaults,
}

/// How `AWS-RunPatchBaseline` is sent and watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchSettings {
    /// Targets one Map iteration handles (`EC2PATCH_TARGETS_PER_BATCH`, default 10): the state
    /// machine fans out over batches, so its transitions grow with targets / batch size.
    pub targets_per_batch: usize,
    /// `RebootIfNeeded` or `NoReboot` (`EC2PATCH_REBOOT_OPTION`, default `RebootIfNeeded`).
    pub reboot_option: String,
    /// SSM rate control (`EC2PATCH_MAX_CONCURRENCY`, `EC2PATCH_MAX_ERRORS`, defaults `10%` / `10%`).
    pub max_concurrency: String,
    pub max_errors: String,
    /// Per-command timeout (`EC2PATCH_COMMAND_TIMEOUT_SECONDS`, default 7200); a batch still
    /// running this long after sending is recorded as timed out.
    pub command_timeout_seconds: u32,
    /// Poll back-off: first wait and cap (`EC2PATCH_POLL_INITIAL_SECONDS` 30, `EC2PATCH_POLL_MAX_SECONDS` 300).
    pub poll_initial_seconds: u32,
    pub poll_max_seconds: u32,
    /// CloudWatch Logs group for command output (`EC2PATCH_COMMAND_LOG_GROUP`, optional).
    pub command_log_group: Option<String>,
    /// Run lock: what every lease renewal adds for the steps until the next renewal
    /// (`EC2PATCH_RUN_LOCK_MARGIN_SECONDS`, default 900). Keep it above the longest function
    /// timeout: an expired lease then means no invocation of that run is still in flight.
    pub run_lock_margin_seconds: u32,
    /// Days a pre-patch snapshot is kept before the hub's scheduled cleanup deletes it
    /// (`EC2PATCH_SNAPSHOT_RETENTION_DAYS`, 1 to 365, default 7; see [`crate::snapshots`]).
    pub snapshot_retention_days: u32,
}

impl Default for PatchSettings {
    fn default() -> Self {
        Self {
            targets_per_batch: 10,
            reboot_option: "RebootIfNeeded".to_owned(),
            max_concurrency: "10%".to_owned(),
            max_errors: "10%".to_owned(),
            command_timeout_seconds: 7200,
            poll_initial_seconds: 30,
            poll_max_seconds: 300,
            command_log_group: None,
            run_lock_margin_seconds: 900,
            snapshot_retention_days: 7,
        }
    }
}

impl HubConfig {
    /// A configuration for `table` and `bucket` with every other value at its documented default
    /// (what [`HubConfig::from_lookup`] gives when only the table and bucket are set, before the
    /// default regions).
    pub fn new(table: &str, bucket: &str) -> Self {
        Self {
            table: table.to_owned(),
            bucket: bucket.to_owned(),
            spoke_role_name: "PatchExecRole".to_owned(),
            external_id: None,
            inventory_concurrency: 16,
            record_ttl_days: 90,
            approval_timeout_seconds: 14_400,
            callback_base_url: None,
            hmac_key_parameter: None,
            organizations_role_arn: None,
            patching: PatchSettings::default(),
            defaults: RunDefaults::default(),
        }
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let required = |name: &str| get(name).ok_or_else(|| Error::ConfigError(format!("{name} is not set")));
        let number = |name: &str, default: u64| -> Result<u64> {
            match get(name) {
                None => Ok(default),
                Some(v) => {
                    v.parse().map_err(|_| Error::ConfigError(format!("{name}={v:?} is not a non-negative integer")))
                }
            }
        };
        // An optional whole number up to `max` (unset or empty: `None`).
        let optional = |name: &str, max: u64| -> Result<Option<u64>> {
            match get(name) {
                None => Ok(None),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if n <= max => Ok(Some(n)),
                    _ => Err(Error::ConfigError(format!("{name}={v:?} is not a whole number from 0 to {max}"))),
                },
            }
        };
        let list = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default()
        };

        let mut regions = list("EC2PATCH_DEFAULT_REGIONS");
        if regions.is_empty() {
            regions.push(get("AWS_REGION").unwrap_or_else(|| "us-east-1".to_owned()));
        }
        let bedrock = match (get("EC2PATCH_BEDROCK_AGENT_ID"), get("EC2PATCH_BEDROCK_AGENT_ALIAS_ID")) {
            (Some(agent_id), Some(agent_alias_id)) => Some(BedrockAgent { agent_id, agent_alias_id }),
            (None, None) => None,
            _ => {
                return Err(Error::ConfigError(
                    "EC2PATCH_BEDROCK_AGENT_ID and EC2PATCH_BEDROCK_AGENT_ALIAS_ID must be set together".to_owned(),
                ));
            }
        };
        let waves = match get("EC2PATCH_WAVES") {
            None => Vec::new(),
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                Error::ConfigError(format!(
                    "EC2PATCH_WAVES is not a JSON list of {{name, accounts, regions, after?, gateWindowHours?}}: {e}"
                ))
            })?,
        };
        let abort_on_issues = match get("EC2PATCH_ABORT_ON_ISSUES").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(Error::ConfigError(format!("EC2PATCH_ABORT_ON_ISSUES={other:?} is not true or false")));
            }
        };
        let concurrency = number("EC2PATCH_INVENTORY_CONCURRENCY", 16)?;
        if concurrency == 0 {
            return Err(Error::ConfigError("EC2PATCH_INVENTORY_CONCURRENCY must be at least 1".to_owned()));
        }
        Ok(Self {
            table: required("EC2PATCH_TABLE")?,
            bucket: required("EC2PATCH_BUCKET")?,
            spoke_role_name: get("EC2PATCH_SPOKE_ROLE_NAME").unwrap_or_else(|| "PatchExecRole".to_owned()),
            external_id: get("EC2PATCH_EXTERNAL_ID"),
            inventory_concurrency: usize::try_from(concurrency).unwrap_or(usize::MAX),
            record_ttl_days: u32::try_from(number("EC2PATCH_RECORD_TTL_DAYS", 90)?).unwrap_or(u32::MAX),
            approval_timeout_seconds: match number("EC2PATCH_APPROVAL_TIMEOUT_SECONDS", 14_400)? {
                0 => return Err(Error::ConfigError("EC2PATCH_APPROVAL_TIMEOUT_SECONDS must be at least 1".to_owned())),
                // Step Functions' task timeout limit is one year.
                seconds if seconds > 31_536_000 => {
                    return Err(Error::ConfigError(
                        "EC2PATCH_APPROVAL_TIMEOUT_SECONDS must be at most one year".to_owned(),
                    ));
                }
                seconds => u32::try_from(seconds).unwrap_or(u32::MAX),
            },
            callback_base_url: get("EC2PATCH_CALLBACK_BASE_URL").map(|url| url.trim_end_matches('/').to_owned()),
            hmac_key_parameter: get("EC2PATCH_HMAC_KEY_PARAMETER"),
            organizations_role_arn: match get("EC2PATCH_ORGANIZATIONS_ROLE_ARN") {
                Some(arn) if !(arn.starts_with("arn:") && arn.contains(":iam::") && arn.contains(":role/")) => {
                    return Err(Error::ConfigError(format!(
                        "EC2PATCH_ORGANIZATIONS_ROLE_ARN={arn:?} is not an IAM role ARN"
                    )));
                }
                arn => arn,
            },
            patching: {
                let defaults = PatchSettings::default();
                let reboot_option = get("EC2PATCH_REBOOT_OPTION").unwrap_or(defaults.reboot_option);
                if !["RebootIfNeeded", "NoReboot"].contains(&reboot_option.as_str()) {
                    return Err(Error::ConfigError(format!(
                        "EC2PATCH_REBOOT_OPTION={reboot_option:?} is not RebootIfNeeded or NoReboot"
                    )));
                }
                let small = |name: &str, default: u32| -> Result<u32> {
                    u32::try_from(number(name, u64::from(default))?)
                        .map_err(|_| Error::ConfigError(format!("{name} is too large")))
                };
                let targets_per_batch = number("EC2PATCH_TARGETS_PER_BATCH", 10)?;
                if targets_per_batch == 0 {
                    return Err(Error::ConfigError("EC2PATCH_TARGETS_PER_BATCH must be at least 1".to_owned()));
                }
                PatchSettings {
                    targets_per_batch: usize::try_from(targets_per_batch).unwrap_or(usize::MAX),
                    reboot_option,
                    max_concurrency: get("EC2PATCH_MAX_CONCURRENCY").unwrap_or(defaults.max_concurrency),
                    max_errors: get("EC2PATCH_MAX_ERRORS").unwrap_or(defaults.max_errors),
                    command_timeout_seconds: small(
                        "EC2PATCH_COMMAND_TIMEOUT_SECONDS",
                        defaults.command_timeout_seconds,
                    )?,
                    poll_initial_seconds: small("EC2PATCH_POLL_INITIAL_SECONDS", defaults.poll_initial_seconds)?.max(1),
                    poll_max_seconds: small("EC2PATCH_POLL_MAX_SECONDS", defaults.poll_max_seconds)?.max(1),
                    command_log_group: get("EC2PATCH_COMMAND_LOG_GROUP"),
                    run_lock_margin_seconds: small(
                        "EC2PATCH_RUN_LOCK_MARGIN_SECONDS",
                        defaults.run_lock_margin_seconds,
                    )?
                    .max(1),
                    snapshot_retention_days: {
                        let days = small("EC2PATCH_SNAPSHOT_RETENTION_DAYS", defaults.snapshot_retention_days)?;
                        if !(1..=365).contains(&days) {
                            return Err(Error::ConfigError(format!(
                                "EC2PATCH_SNAPSHOT_RETENTION_DAYS={days} is not a number of days from 1 to 365"
                            )));
                        }
                        days
                    },
                }
            },
            defaults: RunDefaults {
                regions,
                tag_key: get("EC2PATCH_TAG_KEY").unwrap_or_else(|| "PatchGroup".to_owned()),
                tag_value: get("EC2PATCH_TAG_VALUE").unwrap_or_else(|| "default".to_owned()),
                sns_topic_arn: get("EC2PATCH_SNS_TOPIC_ARN"),
                bedrock,
                wave_pause_seconds: u32::try_from(number("EC2PATCH_WAVE_PAUSE_SECONDS", 0)?)
                    .map_err(|_| Error::ConfigError("EC2PATCH_WAVE_PAUSE_SECONDS is too large".to_owned()))?,
                abort_on_issues,
                waves,
                extra_regions: list("EC2PATCH_EXTRA_REGIONS"),
                change_calendars: list("EC2PATCH_CHANGE_CALENDARS"),
                freeze_wait_seconds: u32::try_from(number("EC2PATCH_FREEZE_WAIT_SECONDS", 0)?)
                    .map_err(|_| Error::ConfigError("EC2PATCH_FREEZE_WAIT_SECONDS is too large".to_owned()))?,
                error_budget: crate::error_budget::ErrorBudget {
                    max_failed_instances: optional("EC2PATCH_MAX_FAILED_INSTANCES", u64::from(u32::MAX))?
                        .and_then(|n| u32::try_from(n).ok()),
                    max_failed_percent: optional("EC2PATCH_MAX_FAILED_PERCENT", 100)?
                        .and_then(|n| u8::try_from(n).ok()),
                },
                max_concurrent_batches: optional("EC2PATCH_MAX_CONCURRENT_BATCHES", 1000)?
                    .filter(|n| *n > 0)
                    .and_then(|n| u32::try_from(n).ok()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<HubConfig> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        HubConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn minimal_environment_gets_documented_defaults() {
        let config = config(&[("EC2PATCH_TABLE", "t"), ("EC2PATCH_BUCKET", "b"), ("AWS_REGION", "eu-west-1")]).unwrap();
        assert_eq!(config.spoke_role_name, "PatchExecRole");
        assert_eq!(config.inventory_concurrency, 16);
        assert_eq!(config.defaults.regions, vec!["eu-west-1"]);
        assert_eq!((config.defaults.tag_key.as_str(), config.defaults.tag_value.as_str()), ("PatchGroup", "default"));
        assert!(config.defaults.abort_on_issues);
        assert_eq!(config.approval_timeout_seconds, 14_400);
        assert_eq!(config.callback_base_url, None);
    }

    #[test]
    fn missing_or_malformed_variables_are_named() {
        let error = config(&[("EC2PATCH_BUCKET", "b")]).unwrap_err();
        assert!(error.to_string().contains("EC2PATCH_TABLE"), "{error}");
        let error =
            config(&[("EC2PATCH_TABLE", "t"), ("EC2PATCH_BUCKET", "b"), ("EC2PATCH_INVENTORY_CONCURRENCY", "lots")])
                .unwrap_err();
        assert!(error.to_string().contains("EC2PATCH_INVENTORY_CONCURRENCY"), "{error}");
        let error = config(&[("EC2PATCH_TABLE", "t"), ("EC2PATCH_BUCKET", "b"), ("EC2PATCH_WAVES", "{")]).unwrap_err();
        assert!(error.to_string().contains("EC2PATCH_WAVES"), "{error}");
        let error = config(&[("EC2PATCH_TABLE", "t"), ("EC2PATCH_BUCKET", "b"), ("EC2PATCH_BEDROCK_AGENT_ID", "A")])
            .unwrap_err();
        assert!(error.to_string().contains("ALIAS"), "{error}");
    }

    #[test]
    fn named_waves_parse() {
        let config = config(&[
            ("EC2PATCH_TABLE", "t"),
            ("EC2PATCH_BUCKET", "b"),
            ("EC2PATCH_WAVES", r#"[{"name":"wave1-critical","accounts":["222222222222"],"regions":["us-east-1"]}]"#),
        ])
        .unwrap();
        assert_eq!(config.defaults.waves[0].name, "wave1-critical");
    }
}
