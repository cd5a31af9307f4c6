//! `ec2patch start`: a run input from a file or from flags, checked locally, then started.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use ec2patch_core::config::RunDefaults;

use crate::connect::Connection;
use crate::validate;

#[derive(Debug, Clone, clap::Args)]
pub struct StartArgs {
    /// A run input file (either seed shape); flags below are then not allowed.
    #[arg(long, short = 'f', conflicts_with_all = ["wave", "accounts", "regions", "tags"])]
    pub file: Option<PathBuf>,
    /// A wave configured on the hub (`wave_rules[*].name`).
    #[arg(long)]
    pub wave: Option<String>,
    /// Account ids to patch (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub accounts: Vec<String>,
    /// Regions (comma-separated; default: the hub's default regions).
    #[arg(long, value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Tag filter `Key=Value` (repeatable; default: the hub's `tag_key=tag_value`).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Scan only: report missing patches, install nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Execution name = run id (default: `manual-<UTC time>`).
    #[arg(long)]
    pub name: Option<String>,
    /// Patch even where a wave gate is closed (the wave it follows did not pass); the run's
    /// record keeps that you did.
    #[arg(long)]
    pub ignore_gates: bool,
}

/// The run input the flags describe (the seed's API shape).
pub fn input_from_args(args: &StartArgs) -> anyhow::Result<Value> {
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut input: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        if args.ignore_gates
            && let Some(object) = input.as_object_mut()
        {
            object.insert("ignoreGates".to_owned(), json!(true));
        }
        return Ok(input);
    }
    if args.wave.is_none() && args.accounts.is_empty() {
        bail!("say what to patch: --file FILE, --wave NAME or --accounts ID,...");
    }
    let mut input = Map::new();
    if let Some(wave) = &args.wave {
        input.insert("waveId".to_owned(), json!(wave));
    }
    if !args.accounts.is_empty() {
        input.insert("accounts".to_owned(), json!(args.accounts));
    }
    if !args.regions.is_empty() {
        input.insert("regions".to_owned(), json!(args.regions));
    }
    if !args.tags.is_empty() {
        let mut filters = Map::new();
        for tag in &args.tags {
            let (key, value) = tag
                .split_once('=')
                .with_context(|| format!("--tag {tag:?}: expected KEY=VALUE, e.g. PatchGroup=web"))?;
            filters.insert(key.to_owned(), json!(value));
        }
        input.insert("tagFilters".to_owned(), Value::Object(filters));
    }
    input.insert("dryRun".to_owned(), json!(args.dry_run));
    if args.ignore_gates {
        input.insert("ignoreGates".to_owned(), json!(true));
    }
    Ok(Value::Object(input))
}

/// The execution name for a manual run.
pub fn run_name(args: &StartArgs) -> String {
    args.name.clone().unwrap_or_else(|| format!("manual-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")))
}

/// Checks `input` as the hub's PlanRun will (a `waveId` can only be resolved by the hub, which
/// knows its waves), then starts the execution as `startedBy` the caller's IAM identity (unless
/// the input names someone). Returns its ARN.
pub async fn start(connection: &Connection, name: &str, input: &Value) -> anyhow::Result<String> {
    let mut input = input.clone();
    if let Some(object) = input.as_object_mut() {
        object.entry("startedBy").or_insert_with(|| json!(connection.caller_arn));
    }
    let input = &input;
    let defaults = RunDefaults {
        regions: connection.hub.sdk.region().map(|r| vec![r.to_string()]).unwrap_or_default(),
        ..RunDefaults::default()
    };
    if input.get("waveId").is_none() {
        let check = validate::check_run_input("run input", input, &defaults);
        if !check.ok {
            bail!(crate::InvalidInput(check.detail));
        }
    }
    let output = connection
        .sfn()
        .start_execution()
        .state_machine_arn(&connection.state_machine_arn)
        .name(name)
        .input(input.to_string())
        .send()
        .await
        .map_err(crate::connect::aws_error)
        .with_context(|| format!("states:StartExecution on {}", connection.state_machine_arn))?;
    Ok(output.execution_arn)
}
