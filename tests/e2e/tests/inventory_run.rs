//! The real state machine on the local stack: plan, then inventory wave by wave, against moto
//! through the real SDK. Assertions are on the execution's result and history and on what the
//! run recorded in DynamoDB and S3, instance by instance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent};
use ec2patch_core::store;
use ec2patch_e2e::records::{instance_list, records, text_str as text};
use ec2patch_local::{Estate, EstateSpec, LocalStack, LocalStackOptions, SeedKind};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Every state input and output in the history, with its size in bytes.
fn payload_sizes(history: &[HistoryEvent]) -> Vec<(String, usize)> {
    let mut sizes = Vec::new();
    for event in history {
        if let Some(d) = &event.state_entered_event_details {
            sizes.push((format!("enter {}", d.name), d.input.as_deref().map_or(0, str::len)));
        }
        if let Some(d) = &event.state_exited_event_details {
            sizes.push((format!("exit {}", d.name), d.output.as_deref().map_or(0, str::len)));
        }
        if let Some(d) = &event.task_succeeded_event_details {
            sizes.push(("task result".to_owned(), d.output.as_deref().map_or(0, str::len)));
        }
    }
    sizes
}

fn two_wave_input(estate: &Estate) -> Value {
    let (first, rest) = estate.accounts.split_at(2);
    json!({
        "accountWaves": [
            {"accounts": first, "regions": estate.regions},
            {"accounts": rest, "regions": estate.regions}
        ],
        "ec2": {"tagKey": "PatchGroup", "tagValue": "default"},
        "wavePauseSeconds": 1,
        // The unreachable account makes wave 2 a wave with issues; keep going to see it all.
        "abortOnIssues": false,
        // A dry run skips the approval gate (tests/e2e/tests/approval.rs covers it).
        "dryRun": true
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inventory_records_every_instance_and_the_unreachable_account() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let estate = stack.seed(&EstateSpec { accounts: 3, denied_accounts: 1, ..EstateSpec::default() }).await.unwrap();
    let denied = estate.denied[0].clone();
    assert_eq!(denied, estate.accounts[2], "the denied account is in the second wave");

    let run_id = "inventory-e2e-1";
    let arn = stack.start_execution(run_id, &two_wave_input(&estate)).await.unwrap();
    let execution = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?} {:?}", execution.error, execution.cause);

    // The execution's own result: counts for the last wave, with the unreachable account named.
    let output: Value = serde_json::from_str(execution.output.as_deref().unwrap()).unwrap();
    assert_eq!(output["runId"], run_id);
    assert_eq!(output["waveCount"], 2);
    assert_eq!(output["targetCount"], 6);
    let last = &output["lastWave"]["inventory"];
    assert_eq!(last["waveIndex"], 1);
    assert_eq!(last["targets"], 2);
    assert_eq!(last["targetsFailed"], 2);
    assert_eq!(last["instances"], 0);
    assert_eq!(last["failures"][0]["account"], denied.as_str());
    assert_eq!(last["failures"][0]["errorType"], "AssumeRoleFailed");

    // Instance by instance: exactly the tagged, running instances of reachable accounts.
    let expected: BTreeMap<String, SeedKind> =
        estate.expected_inventory().map(|i| (i.instance_id.clone(), i.kind)).collect();
    let recorded = instance_list(&stack, run_id).await;
    let recorded_ids: BTreeSet<String> = recorded.iter().map(|i| text(i, "instanceId").to_owned()).collect();
    let expected_ids: BTreeSet<String> = expected.keys().cloned().collect();
    assert_eq!(recorded_ids, expected_ids, "recorded instances differ from the tagged, running, reachable ones");
    assert_eq!(recorded.len(), expected.len(), "one record per instance");
    for item in &recorded {
        let id = text(item, "instanceId");
        let (outcome, reason) = (text(item, "outcome"), text(item, "reason"));
        match expected[id] {
            // A dry run scans them (patch_wave.rs covers installs).
            SeedKind::Patchable => assert_eq!((outcome, text(item, "ssm")), ("SCANNED", "Online"), "{id}"),
            SeedKind::Unmanaged => assert_eq!((outcome, reason), ("SKIPPED", "not managed by SSM"), "{id}"),
            SeedKind::Offline => assert_eq!((outcome, reason), ("SKIPPED", "SSM agent is ConnectionLost"), "{id}"),
            other => panic!("{id} is {other} and must not be recorded"),
        }
    }

    // Every target has a record; the denied account's say why.
    let targets = records(&stack, run_id, "TARGET#").await;
    assert_eq!(targets.len(), 6);
    for target in &targets {
        if text(target, "account") == denied {
            assert_eq!(text(target, "status"), "FAILED");
            assert_eq!(text(target, "errorType"), "AssumeRoleFailed");
            assert!(
                text(target, "error").contains(&denied) && text(target, "error").contains("PatchExecRole"),
                "{target:?}"
            );
        } else {
            assert_eq!(text(target, "status"), "INVENTORIED", "{target:?}");
            assert_eq!(target["instances"].as_n().unwrap(), "5");
            assert_eq!(target["patchable"].as_n().unwrap(), "3");
        }
    }

    // The run report names every target the hub could not reach, with why (JSON and HTML).
    let report: ec2patch_core::report::RunReport =
        stack.hub.store.get_json(&ec2patch_core::report::json_key(run_id)).await.unwrap();
    assert!(report.waves[0].failed_targets.is_empty(), "{:?}", report.waves[0]);
    let unreachable: Vec<(&str, &str, &str)> = report.waves[1]
        .failed_targets
        .iter()
        .map(|t| (t.account.as_str(), t.region.as_str(), t.error_type.as_str()))
        .collect();
    let mut expected_unreachable: Vec<(&str, &str, &str)> =
        estate.regions.iter().map(|r| (denied.as_str(), r.as_str(), "AssumeRoleFailed")).collect();
    expected_unreachable.sort();
    assert_eq!(unreachable, expected_unreachable);
    assert!(report.waves[1].failed_targets.iter().all(|t| t.message.contains("PatchExecRole")));
    let html = aws_sdk_s3::Client::new(&stack.sdk)
        .get_object()
        .bucket(stack.hub.store.bucket())
        .key(ec2patch_core::report::html_key(run_id))
        .send()
        .await
        .unwrap();
    let html = String::from_utf8(html.body.collect().await.unwrap().into_bytes().to_vec()).unwrap();
    assert!(html.contains("Targets the hub could not reach (2)") && html.contains(&denied), "{html}");

    // The S3 manifests hold the same instances, per target.
    let mut manifest_ids = BTreeSet::new();
    for wave in 0..2 {
        let manifest: Value = stack.hub.store.get_json(&store::manifest_key(run_id, wave)).await.unwrap();
        for target in manifest["targets"].as_array().unwrap() {
            for instance in target["instances"].as_array().unwrap() {
                manifest_ids.insert(instance["instanceId"].as_str().unwrap().to_owned());
            }
            if target["account"] == denied.as_str() {
                assert_eq!(target["failure"]["errorType"], "AssumeRoleFailed");
            }
        }
    }
    assert_eq!(manifest_ids, expected_ids);

    // The wave loop ran both waves, paused between them, and nothing in the history is large.
    let history = stack.history(&arn).await.unwrap();
    let entered: Vec<&str> =
        history.iter().filter_map(|e| e.state_entered_event_details.as_ref()).map(|d| d.name.as_str()).collect();
    assert_eq!(entered.iter().filter(|n| **n == "Inventory").count(), 2, "{entered:?}");
    assert_eq!(entered.iter().filter(|n| **n == "WavePause").count(), 1, "{entered:?}");
    let (largest_state, largest) = payload_sizes(&history).into_iter().max_by_key(|(_, size)| *size).unwrap();
    // Fixed-size fields only (counts, pointers, the plan's settings): a bound far below Step
    // Functions' 256 KiB that still catches a list of instances or targets slipping in.
    assert!(largest < 5120, "{largest_state} carries {largest} bytes");

    // The hub assumed each reachable account's role once per invocation, not once per call.
    let calls = stack.router.calls();
    assert!(calls.get("sts:AssumeRole").copied().unwrap_or_default() >= 3, "{calls:?}");
    assert_eq!(calls.get("lambda:Invoke:ec2patch-PreEC2Inventory"), Some(&2), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_payloads_do_not_grow_with_the_estate() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let spec = |patchable| EstateSpec {
        accounts: 1,
        regions: vec!["us-east-1".to_owned()],
        per_target: BTreeMap::from([(SeedKind::Patchable, patchable), (SeedKind::Unmanaged, 1)]),
        ..EstateSpec::default()
    };
    let small = stack.seed(&spec(1)).await.unwrap();
    let input = |estate: &Estate| json!({"accounts": [estate.accounts[0]], "regions": ["us-east-1"], "tagFilters": {"PatchGroup": "default"}, "dryRun": true});
    let arn = stack.start_execution("payload-small", &input(&small)).await.unwrap();
    assert_eq!(stack.wait_for_execution(&arn, TIMEOUT).await.unwrap().status, ExecutionStatus::Succeeded);
    let small_largest = payload_sizes(&stack.history(&arn).await.unwrap()).into_iter().map(|(_, s)| s).max().unwrap();

    // 120 more instances in the same account: more than two DescribeInstanceInformation pages.
    stack.seed(&spec(120)).await.unwrap();
    let arn = stack.start_execution("payload-large", &input(&small)).await.unwrap();
    let execution = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    let output: Value = serde_json::from_str(execution.output.as_deref().unwrap()).unwrap();
    assert_eq!(output["lastWave"]["inventory"]["instances"], 123);
    assert_eq!(output["lastWave"]["inventory"]["patchable"], 121);
    let large_largest = payload_sizes(&stack.history(&arn).await.unwrap()).into_iter().map(|(_, s)| s).max().unwrap();
    // Same shape, different digits and names: a few bytes apart, not 120 instance records.
    assert!(large_largest <= small_largest + 64, "largest payload grew from {small_largest} to {large_largest} bytes");
    assert_eq!(instance_list(&stack, "payload-large").await.len(), 123);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_input_fails_the_execution_at_once_naming_the_field() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let input = json!({"accountWaves": [{"accounts": ["222222222222", "12345"], "regions": ["us-east-1"]}]});
    let arn = stack.start_execution("bad-input", &input).await.unwrap();
    let execution = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!(execution.error.as_deref(), Some("InvalidInput"));
    let cause = execution.cause.unwrap_or_default();
    assert!(cause.contains("accountWaves[0].accounts[1]"), "{cause}");

    let history = stack.history(&arn).await.unwrap();
    assert!(
        history.iter().filter_map(|e| e.state_entered_event_details.as_ref()).all(|d| d.name != "Inventory"),
        "no wave may start on invalid input"
    );
    let plan = stack.hub.store.get_json::<Value>(&store::plan_key("bad-input")).await;
    assert!(matches!(plan, Err(ec2patch_core::Error::NotFound(_))), "nothing is recorded for a refused run: {plan:?}");
}

/// Runs one single-target wave (and a second one) with `faults` installed after seeding.
async fn run_with_faults(
    abort_on_issues: bool,
    faults: &[ec2patch_local::FaultRule],
    run_id: &str,
) -> (LocalStack, aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput) {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let estate = stack
        .seed(&EstateSpec { accounts: 2, regions: vec!["us-east-1".to_owned()], ..EstateSpec::default() })
        .await
        .unwrap();
    for fault in faults {
        stack.router.faults().add(fault.clone());
    }
    let input = json!({
        "accountWaves": [{"accounts": [estate.accounts[0]]}, {"accounts": [estate.accounts[1]]}],
        "abortOnIssues": abort_on_issues,
        "dryRun": true
    });
    let arn = stack.start_execution(run_id, &input).await.unwrap();
    let execution = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
    (stack, execution)
}

fn count_entered(history: &[HistoryEvent], state: &str) -> usize {
    history.iter().filter_map(|e| e.state_entered_event_details.as_ref()).filter(|d| d.name == state).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wave_that_cannot_be_inventoried_is_recorded_and_aborts_the_run() {
    // Once the plan is stored (PutObject #1), the bucket refuses writes: the inventory cannot
    // record its manifest, so it must fail loudly rather than report a wave it did not record.
    let deny_writes = ec2patch_local::FaultRule::error("s3", "PutObject", "AccessDenied", 403).after(1);
    let (stack, execution) = run_with_faults(true, &[deny_writes], "wave-fails-abort").await;
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!(execution.error.as_deref(), Some("StateStoreFailed"));
    let failures = records(&stack, "wave-fails-abort", "FAILURE#WAVE#").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(text(&failures[0], "sk"), "FAILURE#WAVE#0");
    assert_eq!(text(&failures[0], "errorType"), "StateStoreFailed");
    assert!(text(&failures[0], "cause").contains("AccessDenied"), "{failures:?}");
    let history = stack.history(&execution.execution_arn).await.unwrap();
    assert_eq!(count_entered(&history, "Inventory"), 1, "abortOnIssues stops before the second wave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_abort_on_issues_a_failed_wave_is_recorded_and_the_run_goes_on() {
    // PutObject #1 stores the plan; #2, wave 0's manifest, is refused once.
    let deny_first_manifest =
        ec2patch_local::FaultRule::error("s3", "PutObject", "AccessDenied", 403).after(1).first(1);
    let (stack, execution) = run_with_faults(false, &[deny_first_manifest], "wave-fails-continue").await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?}", execution.cause);
    let output: Value = serde_json::from_str(execution.output.as_deref().unwrap()).unwrap();
    assert_eq!(output["lastWave"]["inventory"]["waveIndex"], 1, "{output}");
    let failures = records(&stack, "wave-fails-continue", "FAILURE#WAVE#").await;
    assert_eq!(failures.iter().map(|f| text(f, "sk")).collect::<Vec<_>>(), ["FAILURE#WAVE#0"]);
    let waves = records(&stack, "wave-fails-continue", "WAVE#").await;
    assert_eq!(
        waves.iter().map(|w| text(w, "sk")).collect::<Vec<_>>(),
        ["WAVE#001"],
        "wave 1 completed and was recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transient_failure_is_retried_by_the_state_machine() {
    // S3 answers SlowDown to the first five reads: the SDK's own five attempts of the first
    // invocation all fail, the function reports Throttled, and the state machine retries it.
    let slow_down = ec2patch_local::FaultRule::error("s3", "GetObject", "SlowDown", 503).first(5);
    let (stack, execution) = run_with_faults(true, &[slow_down], "transient-retry").await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?}", execution.cause);
    let calls = stack.router.calls();
    assert_eq!(calls.get("lambda:Invoke:ec2patch-PreEC2Inventory"), Some(&3), "two waves plus one retry: {calls:?}");
    let history = stack.history(&execution.execution_arn).await.unwrap();
    assert_eq!(count_entered(&history, "RecordWaveFailure"), 0);
    assert_eq!(instance_list(&stack, "transient-retry").await.len(), 10);
}
