//! Run input: any JSON document the Step Functions execution could be started with.
//!
//! Checks, beyond "no panic": every rejection is `InvalidInput` naming a place in the input, and
//! every accepted input gives a plan that survives a JSON round trip and re-plans identically
//! from its own canonical (EventBridge-shape) input.

#![no_main]

use ec2patch_core::input::plan_run;
use ec2patch_core::{Error, RunPlan};
use ec2patch_fuzz::{names_a_place_in, run_defaults};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fuzz_target!(|data: &[u8]| {
    // The Lambda runtime hands the handler a parsed `Value`; bytes that are not JSON never
    // reach the parser.
    let Ok(input) = serde_json::from_slice::<Value>(data) else { return };
    let defaults = run_defaults();
    match plan_run("fuzz-run-1", &input, &defaults) {
        Ok(plan) => {
            let text = serde_json::to_string(&plan).unwrap_or_default();
            let back: Option<RunPlan> = serde_json::from_str(&text).ok();
            assert_eq!(back.as_ref(), Some(&plan), "the plan survives a JSON round trip");
            let again = plan_run("fuzz-run-1", &canonical_input(&plan), &defaults);
            assert_eq!(again.as_ref().ok(), Some(&plan), "the canonical input re-plans identically: {again:?}");
        }
        Err(Error::InvalidInput { field, reason }) => {
            assert!(!reason.is_empty(), "a rejection says why");
            assert!(names_a_place_in(&input, &field), "`{field}` is not a place in {input}");
        }
        Err(other) => panic!("a run input must be refused as InvalidInput, got {other:?}"),
    }
});

/// The plan written back as an EventBridge-shape input with every value explicit.
fn canonical_input(plan: &RunPlan) -> Value {
    let waves: Vec<Value> = plan
        .waves
        .iter()
        .map(|wave| json!({"name": wave.name, "accounts": wave.accounts, "regions": wave.regions}))
        .collect();
    let filters: Map<String, Value> =
        plan.tag_filters.iter().map(|filter| (filter.key.clone(), json!(filter.values))).collect();
    let mut input = json!({
        "accountWaves": waves,
        "tagFilters": filters,
        "dryRun": plan.dry_run,
        "wavePauseSeconds": plan.wave_pause_seconds,
        "abortOnIssues": plan.abort_on_issues,
    });
    if let Some(arn) = &plan.sns_topic_arn {
        input["snsTopicArn"] = json!(arn);
    }
    if let Some(agent) = &plan.bedrock {
        input["bedrock"] = json!({"agentId": agent.agent_id, "agentAliasId": agent.agent_alias_id});
    }
    input
}
