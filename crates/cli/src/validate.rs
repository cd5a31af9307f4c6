//! `ec2patch validate`: a run input (JSON) or the hub's tfvars, checked with the rules the hub
//! applies, before anything reaches AWS.

use std::path::Path;

use serde_json::{Value, json};

use ec2patch_core::config::RunDefaults;
use ec2patch_core::input::plan_run;
use ec2patch_core::plan::{BedrockAgent, RunPlan};

use crate::schedule::Schedule;
use crate::tfvars::HubVars;

/// What was checked and what is wrong, per item (a run input, or each wave rule).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub subject: String,
    pub ok: bool,
    pub detail: String,
}

/// The run id `validate` plans under: any valid id will do, nothing is stored.
const VALIDATION_RUN_ID: &str = "validate";

pub fn is_tfvars(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.ends_with(".tfvars") || name.contains(".tfvars.") || name.ends_with(".hcl")
}

/// Checks one run input against `defaults` (the hub's, when its tfvars were given).
pub fn check_run_input(subject: &str, input: &Value, defaults: &RunDefaults) -> Check {
    match plan_run(VALIDATION_RUN_ID, input, defaults) {
        Ok(plan) => Check { subject: subject.to_owned(), ok: true, detail: describe(&plan) },
        Err(error) => Check { subject: subject.to_owned(), ok: false, detail: error.to_string() },
    }
}

/// Checks one run input when the hub is unknown (no `--hub-vars`): the shape and every value is
/// checked, but whether `snsTopicArn` and `bedrock` are *this hub's* cannot be, so the input's own
/// are taken as the hub's and the detail says that they were not compared.
pub fn check_run_input_without_hub(subject: &str, input: &Value) -> Check {
    let mut defaults = RunDefaults::default();
    let mut unchecked = Vec::new();
    if let Some(Value::String(arn)) = input.get("snsTopicArn") {
        defaults.sns_topic_arn = Some(arn.clone());
        unchecked.push("snsTopicArn");
    }
    if let Some(agent) = input.get("bedrock").and_then(|b| serde_json::from_value::<BedrockAgent>(b.clone()).ok()) {
        defaults.bedrock = Some(agent);
        unchecked.push("bedrock");
    }
    let mut check = check_run_input(subject, input, &defaults);
    if check.ok && !unchecked.is_empty() {
        check.detail.push_str(&format!(
            " ({} not compared with the hub's: pass --hub-vars <hub tfvars> to check them)",
            unchecked.join(" and ")
        ));
    }
    check
}

pub fn describe(plan: &RunPlan) -> String {
    let waves: Vec<String> = plan
        .waves
        .iter()
        .map(|w| {
            let gate = w
                .gate
                .as_ref()
                .map(|g| format!(", after {} passed within {} h", g.after, g.window_hours))
                .unwrap_or_default();
            // OUs are resolved into accounts only when the run starts (PlanRun).
            let ous = if w.organizational_units.is_empty() {
                String::new()
            } else {
                format!(
                    " + the accounts of {} resolved at run time{}",
                    w.organizational_units.join(", "),
                    if w.exclude_accounts.is_empty() {
                        String::new()
                    } else {
                        format!(" except {} excluded", w.exclude_accounts.len())
                    }
                )
            };
            format!("{} ({} accounts{ous} x {} regions{gate})", w.name, w.accounts.len(), w.regions.len())
        })
        .collect();
    let tags: Vec<String> = plan.tag_filters.iter().map(|t| format!("{}={}", t.key, t.values.join("|"))).collect();
    format!(
        "{}{} wave(s), {} target(s): {}; tags {}",
        if plan.dry_run { "dry run, " } else { "" },
        plan.waves.len(),
        plan.target_count(),
        waves.join(", "),
        tags.join(", ")
    )
}

/// Checks every wave rule of a hub tfvars file: its schedule and the run input its rule sends.
pub fn check_hub_vars(vars: &HubVars) -> Vec<Check> {
    let defaults = vars.run_defaults();
    let mut checks = Vec::new();
    if vars.wave_rules.is_empty() {
        checks.push(Check {
            subject: "wave_rules".to_owned(),
            ok: true,
            detail: "no scheduled waves (runs start by hand only)".to_owned(),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for (index, rule) in vars.wave_rules.iter().enumerate() {
        let subject = format!("wave_rules[{index}] {}", rule.name);
        let mut problems = Vec::new();
        let name_ok = (1..=39).contains(&rule.name.len())
            && rule.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            problems.push("`name` must be 1-39 characters of A-Z, a-z, 0-9, '.', '_' and '-'".to_owned());
        }
        if !seen.insert(rule.name.clone()) {
            problems.push("`name` is used by another wave rule".to_owned());
        }
        if let Err(error) = rule.schedule_expression.parse::<Schedule>() {
            problems.push(format!("`schedule_expression`: {}", error.reason));
        }
        let input = check_run_input(&subject, &vars.wave_input(rule), &defaults);
        if !input.ok {
            problems.push(input.detail.clone());
        }
        checks.push(if problems.is_empty() {
            Check { subject, ok: true, detail: format!("{}; {}", rule.schedule_expression, input.detail) }
        } else {
            Check { subject, ok: false, detail: problems.join("; ") }
        });
    }
    if vars.wave_rules.iter().any(|w| w.after.is_some()) {
        let subject = "wave_rules gates".to_owned();
        checks.push(match vars.check_gates() {
            Ok(()) => Check { subject, ok: true, detail: gate_chain(vars) },
            Err(problem) => Check { subject, ok: false, detail: problem },
        });
    }
    checks
}

/// Each gated wave and the wave it follows: `canary -> production (168 h)`.
fn gate_chain(vars: &HubVars) -> String {
    vars.wave_rules
        .iter()
        .filter_map(|w| w.after.as_ref().map(|after| format!("{after} -> {} ({} h)", w.name, w.gate_window_hours())))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn to_json(checks: &[Check]) -> Value {
    json!({"valid": checks.iter().all(|c| c.ok), "checks": checks})
}
