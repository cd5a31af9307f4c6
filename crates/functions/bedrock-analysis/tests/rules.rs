//! The rule-based analysis on representative waves, the request contract and the configuration.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use ec2patch_bedrock_analysis::rules::{self, Thresholds};
use ec2patch_bedrock_analysis::{
    Analysis, AnalysisRequest, Deps, MAX_REASON_CHARS, MAX_REASONS, MAX_SUMMARY_CHARS, Mode, Source, WaveData,
};
use ec2patch_core::store::ObjectRef;
use ec2patch_core::wave::{InstanceFailure, TargetFailure, WaveInventory, WaveOutcomes};
use serde_json::json;

fn clean_wave() -> WaveOutcomes {
    WaveOutcomes {
        run_id: "run-1".into(),
        wave_index: 0,
        wave_name: "wave1-critical".into(),
        dry_run: false,
        attempted: 40,
        patched: 40,
        skipped: 0,
        targets: 6,
        ..WaveOutcomes::default()
    }
}

fn failure(instance_id: &str, reason: &str) -> InstanceFailure {
    InstanceFailure {
        account: "222222222222".into(),
        region: "us-east-1".into(),
        instance_id: instance_id.into(),
        outcome: "FAILED".into(),
        reason: reason.into(),
    }
}

fn inventory() -> WaveInventory {
    WaveInventory {
        run_id: "run-1".into(),
        wave_index: 1,
        wave_name: "wave2".into(),
        targets: 4,
        targets_failed: 0,
        instances: 50,
        patchable: 45,
        offline: 2,
        unmanaged: 3,
        failures: Vec::new(),
        failures_omitted: 0,
        manifest: ObjectRef { bucket: "b".into(), key: "runs/run-1/waves/001/manifest.json".into() },
        batches: 1,
        batch_indexes: vec![0],
    }
}

fn target_failure(account: &str) -> TargetFailure {
    TargetFailure {
        account: account.into(),
        region: "eu-west-1".into(),
        error_type: "AssumeRoleFailed".into(),
        message: "AccessDenied".into(),
    }
}

fn post(outcomes: &WaveOutcomes) -> Analysis {
    rules::post_wave(outcomes, &Thresholds::default())
}

fn assert_bounded(analysis: &Analysis) {
    assert!(analysis.summary.chars().count() <= MAX_SUMMARY_CHARS, "{}", analysis.summary);
    assert!(analysis.reasons.len() <= MAX_REASONS, "{:?}", analysis.reasons);
    assert!(analysis.reasons.iter().all(|r| r.chars().count() <= MAX_REASON_CHARS), "{:?}", analysis.reasons);
}

#[test]
fn a_clean_wave_has_no_issues() {
    let analysis = post(&clean_wave());
    assert_eq!(analysis.source, Source::Rules);
    assert!(!analysis.issues_detected);
    assert!(analysis.reasons.is_empty(), "{:?}", analysis.reasons);
    assert!(analysis.summary.contains("Wave \"wave1-critical\" (wave 1): 40 of 40 attempted instances patched"));
    assert!(analysis.summary.ends_with("No issues detected by the rules."), "{}", analysis.summary);
    assert_eq!(analysis.agent_error, None);
}

#[test]
fn one_failed_instance_is_an_issue_and_is_named() {
    let mut outcomes = clean_wave();
    outcomes.patched = 39;
    outcomes.failed = 1;
    outcomes.failures = vec![failure("i-0abc", "AWS-RunPatchBaseline exited 1: yum lock held")];
    let analysis = post(&outcomes);
    assert!(analysis.issues_detected);
    assert_eq!(
        analysis.reasons,
        vec![
            "failure rate 2.5 % (1 failed, 0 timed out of 40 attempted) is above the allowed 0.0 %",
            "222222222222/us-east-1/i-0abc: AWS-RunPatchBaseline exited 1: yum lock held",
        ]
    );
    assert!(analysis.summary.contains("Issues detected: failure rate 2.5 %"), "{}", analysis.summary);
}

#[test]
fn timed_out_instances_count_as_failures_and_at_most_three_are_named() {
    let mut outcomes = clean_wave();
    outcomes.patched = 35;
    outcomes.failed = 2;
    outcomes.timed_out = 3;
    outcomes.failures = (0..5).map(|i| failure(&format!("i-{i}"), "")).collect();
    let analysis = post(&outcomes);
    assert!(analysis.issues_detected);
    assert!(analysis.reasons[0].starts_with("failure rate 12.5 % (2 failed, 3 timed out of 40 attempted)"));
    let named: Vec<_> = analysis.reasons.iter().filter(|r| r.starts_with("222222222222/")).collect();
    assert_eq!(named.len(), rules::FAILED_INSTANCES_NAMED);
    assert_eq!(named[0], "222222222222/us-east-1/i-0: FAILED", "the outcome stands in for a missing reason");
}

#[test]
fn only_pending_reboots_are_not_an_issue() {
    let mut outcomes = clean_wave();
    outcomes.pending_reboot = 7;
    let analysis = post(&outcomes);
    assert!(!analysis.issues_detected);
    assert_eq!(analysis.reasons, vec!["7 instances are pending a reboot to finish patching (not an issue)"]);
}

#[test]
fn unhealthy_instances_are_an_issue() {
    let mut outcomes = clean_wave();
    outcomes.unhealthy = 2;
    let analysis = post(&outcomes);
    assert!(analysis.issues_detected);
    assert_eq!(analysis.reasons, vec!["2 instances are unhealthy after patching (allowed 0)"]);
}

#[test]
fn an_unreachable_target_is_an_issue_unless_configured_otherwise() {
    let mut outcomes = clean_wave();
    outcomes.targets_failed = 1;
    outcomes.unreachable = 5;
    let analysis = post(&outcomes);
    assert!(analysis.issues_detected);
    assert_eq!(analysis.reasons, vec!["1 of 6 account/region targets could not be reached (5 instances not patched)"]);

    let tolerant = Thresholds { unreachable_is_issue: false, ..Thresholds::default() };
    let analysis = rules::post_wave(&outcomes, &tolerant);
    assert!(!analysis.issues_detected);
    assert!(analysis.reasons[0].contains("not an issue by configuration"), "{:?}", analysis.reasons);
}

#[test]
fn a_wave_that_attempted_nothing_has_failure_rate_zero() {
    let outcomes = WaveOutcomes { wave_name: "empty".into(), skipped: 3, targets: 2, ..WaveOutcomes::default() };
    assert_eq!(rules::failure_rate(&outcomes), 0.0);
    let analysis = post(&outcomes);
    assert!(!analysis.issues_detected);
    assert_eq!(
        analysis.reasons,
        vec![
            "3 instances skipped (not managed by SSM, agent offline, or busy in another run; not an issue)",
            "no instance was sent the patch command in this wave",
        ]
    );
}

#[test]
fn raised_thresholds_tolerate_some_failures() {
    let thresholds = Thresholds { max_failure_rate: 0.05, max_unhealthy: 1, unreachable_is_issue: true };
    let mut outcomes = clean_wave();
    outcomes.failed = 2; // 5 % exactly: not above the threshold
    outcomes.unhealthy = 1;
    outcomes.failures = vec![failure("i-1", "x"), failure("i-2", "y")];
    let analysis = rules::post_wave(&outcomes, &thresholds);
    assert!(!analysis.issues_detected, "{:?}", analysis.reasons);
    assert_eq!(analysis.reasons.len(), 2, "failed instances are still named: {:?}", analysis.reasons);

    outcomes.failed = 3; // 7.5 %
    assert!(rules::post_wave(&outcomes, &thresholds).issues_detected);
    outcomes.failed = 0;
    outcomes.unhealthy = 2;
    assert!(rules::post_wave(&outcomes, &thresholds).issues_detected);
}

#[test]
fn a_dry_run_says_scanned() {
    let mut outcomes = clean_wave();
    outcomes.dry_run = true;
    let analysis = post(&outcomes);
    assert!(
        analysis.summary.contains("a dry run (scan only, nothing installed): 40 of 40 attempted instances scanned")
    );
}

#[test]
fn texts_stay_within_the_limits() {
    let mut outcomes = clean_wave();
    outcomes.wave_name = "w".repeat(3000);
    outcomes.failed = 10;
    outcomes.unhealthy = 3;
    outcomes.targets_failed = 1;
    outcomes.pending_reboot = 1;
    outcomes.skipped = 1;
    outcomes.failures = (0..10).map(|i| failure(&format!("i-{i}"), &"long reason\n".repeat(100))).collect();
    let analysis = post(&outcomes);
    assert_bounded(&analysis);
    assert!(analysis.reasons.iter().all(|r| !r.contains('\n')));
}

#[test]
fn pre_patch_of_a_healthy_inventory_states_the_counts() {
    let analysis = rules::pre_patch(&inventory(), false);
    assert_eq!(analysis.source, Source::Rules);
    assert!(!analysis.issues_detected);
    assert!(analysis.reasons.is_empty(), "{:?}", analysis.reasons);
    assert_eq!(
        analysis.summary,
        "Wave \"wave2\" (wave 2) will install patches on 45 patchable instances; 5 of 50 instances skipped \
         (3 not managed by SSM, 2 with the SSM agent offline); 0 of 4 account/region targets could not be \
         inventoried. No risks found by the rules."
    );
    let dry = rules::pre_patch(&inventory(), true);
    assert!(dry.summary.contains("will scan, as a dry run that installs nothing, 45 patchable instances"));
}

#[test]
fn pre_patch_notes_risks_without_calling_them_issues() {
    let mut inventory = inventory();
    inventory.unmanaged = 15; // 30 % of 50
    inventory.patchable = 33;
    inventory.targets_failed = 2; // exactly half: not more than half
    inventory.failures = vec![target_failure("333333333333"), target_failure("444444444444")];
    let analysis = rules::pre_patch(&inventory, false);
    assert!(!analysis.issues_detected);
    assert_eq!(
        analysis.reasons,
        vec![
            "2 of 4 account/region targets could not be inventoried and will not be patched",
            "333333333333/eu-west-1 unreachable: AssumeRoleFailed: AccessDenied",
            "444444444444/eu-west-1 unreachable: AssumeRoleFailed: AccessDenied",
            "15 of 50 instances (30.0 %) are not managed by SSM and will not be patched",
        ]
    );
    assert!(analysis.summary.contains("Risks: 2 of 4 account/region targets"), "{}", analysis.summary);
    assert!(!analysis.summary.contains("333333333333"), "targets are named in the reasons only");
}

#[test]
fn pre_patch_with_most_targets_unreachable_is_an_issue() {
    let mut inventory = inventory();
    inventory.targets_failed = 3;
    inventory.instances = 0;
    inventory.patchable = 0;
    inventory.offline = 0;
    inventory.unmanaged = 0;
    let analysis = rules::pre_patch(&inventory, false);
    assert!(analysis.issues_detected);
    assert_eq!(analysis.reasons[0], "more than half the wave's targets (3 of 4) could not be inventoried");
    assert!(analysis.reasons.contains(&"no instance in this wave can be patched".to_owned()));
    assert!(analysis.summary.ends_with("Issues detected: most of the wave is unreachable."), "{}", analysis.summary);
}

#[test]
fn requests_follow_the_contract() {
    let request: AnalysisRequest = serde_json::from_value(json!({
        "mode": "postWave",
        "runId": "run-1",
        "waveIndex": 0,
        "outcomes": serde_json::to_value(clean_wave()).unwrap(),
    }))
    .unwrap();
    assert_eq!(request.mode, Mode::PostWave);
    assert!(matches!(request.into_data(false).unwrap(), WaveData::PostWave { .. }));

    let request: AnalysisRequest = serde_json::from_value(json!({
        "mode": "prePatch",
        "runId": "run-1",
        "waveIndex": 1,
        "inventory": serde_json::to_value(inventory()).unwrap(),
    }))
    .unwrap();
    assert_eq!(request.into_data(true).unwrap(), WaveData::PrePatch { inventory: inventory(), dry_run: true });

    let unknown = serde_json::from_value::<AnalysisRequest>(json!({
        "mode": "postWave", "runId": "r", "waveIndex": 0, "outcome": {}
    }));
    assert!(unknown.unwrap_err().to_string().contains("unknown field `outcome`"));
    let bad_mode = serde_json::from_value::<AnalysisRequest>(json!({"mode": "later", "runId": "r", "waveIndex": 0}));
    assert!(bad_mode.is_err());
}

#[test]
fn a_missing_inventory_or_outcomes_is_invalid_input() {
    let request: AnalysisRequest =
        serde_json::from_value(json!({"mode": "postWave", "runId": "r", "waveIndex": 0})).unwrap();
    let error = request.into_data(false).unwrap_err();
    assert_eq!(error.error_type(), "InvalidInput");
    assert_eq!(error, ec2patch_core::Error::invalid("outcomes", "is required when mode is postWave"));

    let request: AnalysisRequest = serde_json::from_value(json!({
        "mode": "prePatch", "runId": "r", "waveIndex": 0,
        "outcomes": serde_json::to_value(clean_wave()).unwrap(),
    }))
    .unwrap();
    let error = request.into_data(false).unwrap_err();
    assert!(error.to_string().contains("`inventory`"), "{error}");
}

#[test]
fn the_answer_serialises_in_camel_case() {
    let value = serde_json::to_value(post(&clean_wave())).unwrap();
    assert_eq!(value["source"], "rules");
    assert_eq!(value["issuesDetected"], false);
    assert!(value["agentError"].is_null());
    assert!(value["reasons"].as_array().unwrap().is_empty());
}

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    move |name| map.get(name).cloned()
}

fn client() -> aws_sdk_bedrockagentruntime::Client {
    aws_sdk_bedrockagentruntime::Client::from_conf(
        aws_sdk_bedrockagentruntime::Config::builder().with_test_defaults_v2().build(),
    )
}

#[test]
fn configuration_has_documented_defaults() {
    let deps = Deps::from_lookup(client(), lookup(&[])).unwrap();
    assert_eq!(deps.thresholds, Thresholds { max_failure_rate: 0.0, max_unhealthy: 0, unreachable_is_issue: true });
    assert_eq!(deps.timeout, Duration::from_secs(60));

    let deps = Deps::from_lookup(
        client(),
        lookup(&[
            ("EC2PATCH_MAX_FAILURE_RATE", "0.05"),
            ("EC2PATCH_MAX_UNHEALTHY", "2"),
            ("EC2PATCH_UNREACHABLE_IS_ISSUE", "false"),
            ("EC2PATCH_BEDROCK_TIMEOUT_SECONDS", " 20 "),
        ]),
    )
    .unwrap();
    assert_eq!(deps.thresholds, Thresholds { max_failure_rate: 0.05, max_unhealthy: 2, unreachable_is_issue: false });
    assert_eq!(deps.timeout, Duration::from_secs(20));
}

#[test]
fn malformed_configuration_is_named() {
    for (name, value) in [
        ("EC2PATCH_MAX_FAILURE_RATE", "5%"),
        ("EC2PATCH_MAX_FAILURE_RATE", "1.5"),
        ("EC2PATCH_MAX_FAILURE_RATE", "NaN"),
        ("EC2PATCH_MAX_UNHEALTHY", "-1"),
        ("EC2PATCH_UNREACHABLE_IS_ISSUE", "yes"),
        ("EC2PATCH_BEDROCK_TIMEOUT_SECONDS", "soon"),
        ("EC2PATCH_BEDROCK_TIMEOUT_SECONDS", "0"),
        ("EC2PATCH_BEDROCK_TIMEOUT_SECONDS", "901"),
    ] {
        let error = Deps::from_lookup(client(), lookup(&[(name, value)])).unwrap_err();
        assert_eq!(error.error_type(), "ConfigError", "{name}={value}");
        assert!(error.to_string().contains(name), "{error}");
    }
}
