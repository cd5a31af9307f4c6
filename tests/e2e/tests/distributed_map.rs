//! The Distributed Map (`PatchTargetsDistributed`) executed for real on the local stack: waves of
//! more than 10 batches (one target per batch here) run as child executions of a map run. Each
//! test asserts the parent's history, the map run and its children, every instance's recorded
//! outcome and the SSM commands the spokes received.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use bytes::Bytes;
use ec2patch_core::{AccountId, Region, run_lock, store};
use ec2patch_local::{Estate, EstateSpec, FaultRule, LocalStack, LocalStackOptions, SeedKind};
use http_body_util::Full;
use hyper::Request;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(180);
/// One target (account x region) per batch: 13 accounts make 13 batches, past the inline Map's 10.
const ACCOUNTS: usize = 13;

fn options() -> LocalStackOptions {
    LocalStackOptions { targets_per_batch: 1, ..LocalStackOptions::default() }
}

fn estate_spec() -> EstateSpec {
    EstateSpec {
        accounts: ACCOUNTS,
        regions: vec!["us-east-1".to_owned()],
        per_target: BTreeMap::from([(SeedKind::Patchable, 1)]),
        ..EstateSpec::default()
    }
}

/// POSTs the approval form of every approval email not yet approved; returns how many there are.
async fn approve_new(stack: &LocalStack, approved: usize) -> usize {
    let mail = stack.router.mailbox();
    let links: Vec<String> = mail
        .iter()
        .filter_map(|m| m.message.lines().find_map(|l| l.strip_prefix("Approve: ")).map(|l| l.trim().to_owned()))
        .collect();
    for link in links.iter().skip(approved) {
        let post = Request::post(format!("{}/callback", stack.router.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(link.split_once('?').unwrap().1.to_owned())))
            .unwrap();
        assert_eq!(ec2patch_local::http::send(post).await.unwrap().status(), 200);
    }
    links.len()
}

/// Approves each new approval email (`approved` were already decided) until the execution ends.
async fn approve_until_done(stack: &LocalStack, arn: &str, approved: usize) -> DescribeExecutionOutput {
    let started = Instant::now();
    let mut approved = approve_new(stack, approved).await;
    loop {
        let execution = stack.sfn().describe_execution().execution_arn(arn).send().await.unwrap();
        if execution.status != ExecutionStatus::Running {
            return execution;
        }
        assert!(started.elapsed() < TIMEOUT, "execution still running after {TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        approved = approve_new(stack, approved).await;
    }
}

/// instance id -> (outcome, reason) of a run.
async fn outcomes(stack: &LocalStack, run_id: &str) -> BTreeMap<String, (String, String)> {
    ec2patch_e2e::records::instance_records(stack, run_id)
        .await
        .into_iter()
        .map(|(instance_id, item)| {
            let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            (instance_id, (text("outcome"), text("reason")))
        })
        .collect()
}

/// AWS-RunPatchBaseline commands each instance received, over every run.
async fn patch_commands(stack: &LocalStack, estate: &Estate) -> BTreeMap<String, usize> {
    let sessions = stack.hub.spoke_sessions("distributed-map-check");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for account in &estate.accounts {
        let config = sessions
            .config_for(&AccountId::parse(account).unwrap(), &Region::new_unchecked("us-east-1"))
            .await
            .unwrap();
        let listed = aws_sdk_ssm::Client::new(&config).list_commands().send().await.unwrap();
        for command in listed.commands().iter().filter(|c| c.document_name() == Some("AWS-RunPatchBaseline")) {
            for id in command.instance_ids() {
                *counts.entry(id.clone()).or_default() += 1;
            }
        }
    }
    counts
}

fn patchable(estate: &Estate) -> BTreeSet<String> {
    estate.instances.iter().map(|i| i.instance_id.clone()).collect()
}

/// The map run of a parent execution and its children (newest first), each with its input.
async fn map_run_children(stack: &LocalStack, parent: &str) -> (String, Vec<(String, ExecutionStatus, Value)>) {
    let runs = stack.sfn().list_map_runs().execution_arn(parent).send().await.unwrap();
    assert_eq!(runs.map_runs().len(), 1, "one wave, one map run");
    let map_run = runs.map_runs()[0].map_run_arn().to_owned();
    let listed = stack.sfn().list_executions().map_run_arn(&map_run).max_results(1000).send().await.unwrap();
    let mut children = Vec::new();
    for child in listed.executions() {
        let described = stack.sfn().describe_execution().execution_arn(child.execution_arn()).send().await.unwrap();
        let input: Value = serde_json::from_str(described.input().unwrap()).unwrap();
        children.push((child.execution_arn().to_owned(), described.status, input));
    }
    (map_run, children)
}

fn batch_numbers(children: &[(String, ExecutionStatus, Value)]) -> BTreeSet<u64> {
    children.iter().map(|(_, _, input)| input["batch"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wave_of_13_batches_runs_as_child_executions_of_a_map_run() {
    let stack = LocalStack::start(options()).await.unwrap();
    let estate = stack.seed(&estate_spec()).await.unwrap();
    let arn = stack.start_execution("dmap-wave", &json!({"accounts": estate.accounts})).await.unwrap();
    let execution = approve_until_done(&stack, &arn, 0).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?} {:?}", execution.error, execution.cause);

    // The parent went through the Distributed Map, not the inline one.
    let history = stack.history(&arn).await.unwrap();
    let entered: Vec<&str> =
        history.iter().filter_map(|e| e.state_entered_event_details.as_ref()).map(|d| d.name.as_str()).collect();
    assert!(entered.contains(&"PatchTargetsDistributed") && !entered.contains(&"PatchTargets"), "{entered:?}");
    assert!(!entered.contains(&"ChildSendCommands"), "the children's states are not in the parent's history");
    let kinds: Vec<&HistoryEventType> = history.iter().map(|e| &e.r#type).collect();
    assert!(kinds.contains(&&HistoryEventType::MapRunStarted) && kinds.contains(&&HistoryEventType::MapRunSucceeded));

    // The map run: 13 items, 13 child executions, each SUCCEEDED with a history of its own.
    let (map_run, children) = map_run_children(&stack, &arn).await;
    let described = stack.sfn().describe_map_run().map_run_arn(&map_run).send().await.unwrap();
    let items = described.item_counts().unwrap();
    assert_eq!((items.total(), items.succeeded(), items.failed()), (13, 13, 0), "{described:?}");
    assert_eq!(children.len(), ACCOUNTS);
    assert_eq!(batch_numbers(&children), (0..ACCOUNTS as u64).collect(), "one child per batch, batch from its key");
    for (child, status, _) in &children {
        assert_eq!(*status, ExecutionStatus::Succeeded, "{child}");
        let events = stack.history(child).await.unwrap();
        assert_eq!(events.first().unwrap().r#type, HistoryEventType::ExecutionStarted);
        assert_eq!(events.last().unwrap().r#type, HistoryEventType::ExecutionSucceeded);
        let names: Vec<&str> =
            events.iter().filter_map(|e| e.state_entered_event_details.as_ref()).map(|d| d.name.as_str()).collect();
        assert_eq!(names.first(), Some(&"ChildSendCommands"), "{names:?}");
        assert_eq!(names.last(), Some(&"ChildVerifyBatch"), "{names:?}");
    }

    // Every instance: exactly one outcome, PATCHED; exactly one patch command each.
    let recorded = outcomes(&stack, "dmap-wave").await;
    assert_eq!(recorded.keys().cloned().collect::<BTreeSet<_>>(), patchable(&estate));
    assert!(recorded.values().all(|(outcome, _)| outcome == "PATCHED"), "{recorded:?}");
    let commands = patch_commands(&stack, &estate).await;
    assert_eq!(commands.keys().cloned().collect::<BTreeSet<_>>(), patchable(&estate));
    assert!(commands.values().all(|n| *n == 1), "nothing patched twice: {commands:?}");

    // Report == records; the map run's results are in S3 next to the run.
    let report: Value = stack.hub.store.get_json("runs/dmap-wave/waves/000/outcomes.json").await.unwrap();
    assert_eq!((report["patched"].as_u64(), report["failed"].as_u64()), (Some(13), Some(0)), "{report}");
    let output: Value = serde_json::from_str(execution.output.as_deref().unwrap()).unwrap();
    assert_eq!(output["report"]["totals"]["patched"], 13, "{output}");
    let s3 = aws_sdk_s3::Client::from_conf(ec2patch_core::hub::s3_config(&stack.sdk));
    let written =
        s3.list_objects_v2().bucket(&stack.hub.config.bucket).prefix("runs/dmap-wave/map-runs/").send().await.unwrap();
    let keys: Vec<&str> = written.contents().iter().filter_map(|o| o.key()).collect();
    assert!(
        keys.iter().any(|k| k.ends_with("/manifest.json")) && keys.iter().any(|k| k.ends_with("/SUCCEEDED_0.json"))
    );
    println!("distributed wave: parent {} events, {} children", history.len(), children.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_whose_send_fails_past_its_retries_is_recorded_failed_and_the_others_patched() {
    let stack = LocalStack::start(options()).await.unwrap();
    let estate = stack.seed(&estate_spec()).await.unwrap();
    let send = stack.functions.function_name(ec2patch_local::functions::SEND_SSM_COMMAND);
    stack
        .router
        .faults()
        .add(FaultRule::lambda_service_error(&send, "ServiceException", 500).when_payload("batch", json!(3)));
    // abortOnIssues off: the failed batch is an issue, and the run must still end normally here.
    let input = json!({"accounts": estate.accounts, "abortOnIssues": false});
    let arn = stack.start_execution("dmap-broken", &input).await.unwrap();
    let execution = approve_until_done(&stack, &arn, 0).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?} {:?}", execution.error, execution.cause);
    assert_eq!(
        stack.router.calls().get(&format!("lambda:Invoke:{send}")),
        Some(&(ACCOUNTS as u64 + 3)),
        "batch 3's send was tried 4 times (3 retries), every other batch's once"
    );

    // Batch 3's instances: FAILED with the reason; the failure record names the error.
    let batch: Value = stack.hub.store.get_json(&store::batch_key("dmap-broken", 0, 3)).await.unwrap();
    let broken_account = batch["targets"][0]["account"].as_str().unwrap().to_owned();
    let recorded = outcomes(&stack, "dmap-broken").await;
    assert_eq!(recorded.len(), ACCOUNTS, "every instance has an outcome");
    for instance in &estate.instances {
        let (outcome, reason) = &recorded[&instance.instance_id];
        if instance.account == broken_account {
            assert_eq!(outcome, "FAILED");
            assert!(reason.contains("patch step failed"), "{reason}");
        } else {
            assert_eq!(outcome, "PATCHED", "{}", instance.account);
        }
    }
    let failures = stack.hub.store.query_prefix(&store::run_pk("dmap-broken"), "FAILURE#WAVE#0#BATCH#").await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["sk"].as_s().unwrap(), "FAILURE#WAVE#0#BATCH#3");
    assert_eq!(failures[0]["errorType"].as_s().unwrap(), "Lambda.ServiceException");
    assert!(failures[0].contains_key("expiresAt"), "the state machine's records expire too");

    // The child caught its failure and recorded it: every child succeeded, the wave went on.
    let (_, children) = map_run_children(&stack, &arn).await;
    assert_eq!(children.len(), ACCOUNTS);
    assert!(children.iter().all(|(_, status, _)| *status == ExecutionStatus::Succeeded));
    let report: Value = stack.hub.store.get_json("runs/dmap-broken/waves/000/outcomes.json").await.unwrap();
    assert_eq!((report["patched"].as_u64(), report["failed"].as_u64()), (Some(12), Some(1)), "{report}");
    let output: Value = serde_json::from_str(execution.output.as_deref().unwrap()).unwrap();
    assert_eq!(output["lastWave"]["result"]["outcomes"]["failed"], 1, "the wave summary says so: {output}");
    assert_eq!(output["report"]["totals"]["failed"], 1, "and the run report: {output}");
    let commands = patch_commands(&stack, &estate).await;
    assert_eq!(commands.len(), ACCOUNTS - 1, "batch 3 was never sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_stopped_during_the_distributed_wave_is_resumed_without_repatching() {
    let options = LocalStackOptions { run_lock_margin_seconds: 2, ..options() };
    let stack = LocalStack::start(options).await.unwrap();
    let estate = stack.seed(&estate_spec()).await.unwrap();
    let input = json!({"accounts": estate.accounts, "abortOnIssues": false});
    let first = stack.start_execution("dmap-stopped", &input).await.unwrap();
    stack.wait_for_mail(1, TIMEOUT).await.unwrap();
    approve_new(&stack, 0).await;
    let deadline = Instant::now() + TIMEOUT;
    while !stack.router.calls().contains_key("ssm:SendCommand") {
        assert!(Instant::now() < deadline, "the wave was never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stack.sfn().stop_execution().execution_arn(&first).cause("operator stop").send().await.unwrap();
    let stopped = stack.wait_for_execution(&first, TIMEOUT).await.unwrap();
    assert_eq!(stopped.status, ExecutionStatus::Aborted, "{:?} {:?}", stopped.error, stopped.cause);
    // The map run stops with its parent; no child runs on.
    let (map_run, children) = map_run_children(&stack, &first).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let running = stack.sfn().list_executions().map_run_arn(&map_run).status_filter(ExecutionStatus::Running);
        if running.send().await.unwrap().executions().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "children still running after the parent stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let described = stack.sfn().describe_map_run().map_run_arn(&map_run).send().await.unwrap();
    assert_eq!(described.status().as_str(), "ABORTED");
    println!("stopped after {} of {ACCOUNTS} children started", children.len());
    let sent_before = stack.router.calls().get("ssm:SendCommand").copied().unwrap_or_default();
    assert!(sent_before >= 1);

    // Once the stopped run's lease has expired, a new run of the same waves adopts its commands.
    let lock = run_lock::load(&stack.hub.store, "dmap-stopped").await.unwrap().unwrap();
    let item = stack.hub.store.get_item(&lock.pk, &lock.sk).await.unwrap().unwrap();
    let lease: u64 = item["leaseExpiresAt"].as_n().unwrap().parse().unwrap();
    let wait = lease.saturating_sub(ec2patch_core::time::now_epoch_seconds()) + 1;
    assert!(wait < 60, "lease {wait} s");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let resumed = ("dmap-resumed".to_owned(), stack.start_execution("dmap-resumed", &input).await.unwrap());
    let execution = approve_until_done(&stack, &resumed.1, 1).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?} {:?}", execution.error, execution.cause);
    let recorded = outcomes(&stack, &resumed.0).await;
    let failures = stack.hub.store.query_prefix(&store::run_pk(&resumed.0), "FAILURE#").await.unwrap();
    assert!(recorded.values().all(|(outcome, _)| outcome == "PATCHED"), "{recorded:?} {failures:?}");
    assert_eq!(recorded.len(), ACCOUNTS);
    let adopted = stack.hub.store.query_prefix(&store::run_pk(&resumed.0), "COMMAND#000#").await.unwrap();
    let adopted = adopted.iter().filter(|c| c.get("adoptedFrom").and_then(|v| v.as_s().ok()).is_some()).count();
    assert!(adopted >= 1, "the stopped run's commands were adopted");
    let commands = patch_commands(&stack, &estate).await;
    assert_eq!(commands.len(), ACCOUNTS);
    assert!(commands.values().all(|n| *n == 1), "nothing patched twice over both runs: {commands:?}");
}

/// A run input that is not a JSON object ends `InvalidInput`, like any other bad input.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_input_that_is_not_an_object_ends_invalid_input() {
    let stack = LocalStack::start(options()).await.unwrap();
    for (name, input) in [("list-input", json!([1, 2, 3])), ("string-input", json!("just a string"))] {
        let arn = stack.start_execution(name, &input).await.unwrap();
        let execution = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
        assert_eq!(execution.status, ExecutionStatus::Failed);
        assert_eq!(execution.error.as_deref(), Some("InvalidInput"), "{:?}", execution.cause);
        assert!(execution.cause.as_deref().unwrap_or_default().contains("JSON object"), "{:?}", execution.cause);
    }
}
