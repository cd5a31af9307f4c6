//! The fault suite: the real state machine on the local stack while AWS misbehaves on purpose
//! (the router's fault injection). Every scenario asserts the same four things:
//!
//! 1. the run ends: it succeeds, or fails with a named error;
//! 2. every instance the inventory can see has exactly one recorded, final outcome;
//! 3. no instance received `AWS-RunPatchBaseline` twice (counted in the emulator's SSM commands);
//! 4. the report (each wave's `outcomes.json`, the run's `report.json`) matches the records.
//!
//! Each test prints a `FIGURES` line (docs/reliability.md's table is copied from them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::types::ExecutionStatus;
use bytes::Bytes;
use ec2patch_core::plan::BedrockAgent;
use ec2patch_core::run_lock::{self, RunLock};
use ec2patch_core::store::{self, Item};
use ec2patch_core::{AccountId, Region};
use ec2patch_e2e::records::{instance_records as records, text};
use ec2patch_local::{ApproveOptions, Estate, EstateSpec, FaultRule, LocalStack, LocalStackOptions, SeedKind};
use http_body_util::Full;
use hyper::Request;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(150);

fn options() -> LocalStackOptions {
    LocalStackOptions { approval_timeout_seconds: 120, targets_per_batch: 1, ..LocalStackOptions::default() }
}

fn spec(accounts: usize, regions: &[&str], per_target: &[(SeedKind, usize)], first_account: usize) -> EstateSpec {
    EstateSpec {
        accounts,
        regions: regions.iter().map(|r| (*r).to_owned()).collect(),
        per_target: per_target.iter().copied().collect(),
        first_account,
        ..EstateSpec::default()
    }
}

/// Approves every approval email of `run_id` as it arrives (GET the page, then POST its form),
/// until the execution ends. A 503 answer is accepted: the decision is recorded while Step
/// Functions is unreachable, and the run times out or is re-delivered.
async fn approve_until_done(stack: &LocalStack, arn: &str, run_id: &str) -> DescribeExecutionOutput {
    let options = ApproveOptions::new(TIMEOUT).for_run(run_id).accepting_unavailable();
    stack.approve_until_done(arn, &options).await.unwrap()
}

fn outcome_of(records: &BTreeMap<String, Item>, id: &str) -> String {
    records.get(id).map(|item| text(item, "outcome")).unwrap_or_default()
}

/// `AWS-RunPatchBaseline` commands per instance, as the emulator's SSM recorded them (every
/// account and region of the estate; called with the faults cleared).
async fn patch_commands(stack: &LocalStack, estate: &Estate) -> BTreeMap<String, usize> {
    let sessions = stack.hub.spoke_sessions("fault-suite-check");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for account in &estate.accounts {
        for region in &estate.regions {
            let config = sessions
                .config_for(&AccountId::parse(account).unwrap(), &Region::new_unchecked(region.clone()))
                .await
                .unwrap();
            let ssm = aws_sdk_ssm::Client::new(&config);
            let mut pages = ssm.list_commands().into_paginator().send();
            while let Some(page) = pages.next().await {
                for command in page.unwrap().commands() {
                    if command.document_name() == Some("AWS-RunPatchBaseline") {
                        for id in command.instance_ids() {
                            *counts.entry(id.clone()).or_default() += 1;
                        }
                    }
                }
            }
        }
    }
    counts
}

/// The measured outcome of one scenario, as docs/reliability.md reports it.
struct Figures {
    ended: String,
    instances: usize,
    with_one_outcome: usize,
    /// Instances without a record because their whole target failed at inventory after the
    /// retries (recorded on the `TARGET#` item instead, with the error).
    under_failed_target: usize,
    duplicate_commands: usize,
}

/// The four invariants for `run_id`, whose execution ended as `execution`; `expected` are the
/// instances the inventory can see.
async fn check_invariants(
    stack: &LocalStack,
    estate: &Estate,
    run_id: &str,
    execution: &DescribeExecutionOutput,
    expected: &BTreeSet<String>,
) -> Figures {
    stack.router.faults().clear();
    // 1. The run ended, and a failure has a name.
    assert_ne!(execution.status, ExecutionStatus::Running);
    let ended = match execution.status {
        ExecutionStatus::Succeeded => "SUCCEEDED".to_owned(),
        _ => {
            let error = execution.error.clone().unwrap_or_default();
            assert!(
                !error.is_empty() && !error.starts_with("States.Runtime"),
                "a failed run names its error: {:?} {:?}",
                execution.error,
                execution.cause
            );
            format!("{} {error}", execution.status.as_str())
        }
    };
    // 2. Exactly one final outcome per visible instance (one item per instance is the key
    //    layout; final means not PENDING), and nothing recorded that should not be.
    let recorded = records(stack, run_id).await;
    let failed_targets: BTreeMap<(String, String), String> = stack
        .hub
        .store
        .query_prefix(&store::run_pk(run_id), "TARGET#")
        .await
        .unwrap()
        .iter()
        .filter(|t| text(t, "status") == "FAILED")
        .map(|t| ((text(t, "account"), text(t, "region")), text(t, "errorType")))
        .collect();
    // The other acceptable end: the run stopped, naming a write it could not make.
    let failed_loudly = execution.status == ExecutionStatus::Failed
        && matches!(execution.error.as_deref(), Some("StateStoreFailed" | "AwsUnavailable" | "Throttled"));
    let mut with_one_outcome = 0;
    let mut under_failed_target = 0;
    for id in expected {
        let outcome = outcome_of(&recorded, id);
        if !outcome.is_empty() && outcome != "PENDING" {
            with_one_outcome += 1;
            continue;
        }
        if failed_loudly {
            println!("{id}: no final outcome; the run failed with {:?}: {:?}", execution.error, execution.cause);
            under_failed_target += 1;
            continue;
        }
        // Not lost either way: an instance of a target the inventory could not list is covered
        // by that target's FAILED record (with the error), and by the report's failures.
        let instance = estate.instances.iter().find(|i| &i.instance_id == id).unwrap();
        match failed_targets.get(&(instance.account.clone(), instance.region.clone())) {
            Some(error) if outcome.is_empty() => {
                println!("{id}: no instance record, its target failed at inventory with {error}");
                under_failed_target += 1;
            }
            _ => panic!("{id} has no final outcome in {run_id} ({outcome:?}); records: {recorded:#?}"),
        }
    }
    let unexpected: Vec<&String> = recorded.keys().filter(|id| !expected.contains(*id)).collect();
    assert!(unexpected.is_empty(), "records for instances the run should not see: {unexpected:?}");
    // 3. No instance got the patch document twice (over every run in this stack).
    let commands = patch_commands(stack, estate).await;
    let duplicates: Vec<(&String, &usize)> = commands.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "instances patched more than once: {duplicates:?}");
    for id in expected {
        let outcome = outcome_of(&recorded, id);
        if outcome == "PATCHED" || outcome == "SCANNED" {
            assert_eq!(commands.get(id), Some(&1), "{id} is {outcome} but got {:?} commands", commands.get(id));
        }
    }
    // 4. The reports agree with the records.
    check_reports(stack, run_id, &recorded, failed_loudly).await;
    Figures {
        ended,
        instances: expected.len(),
        with_one_outcome,
        under_failed_target,
        duplicate_commands: duplicates.len(),
    }
}

/// Each summarised wave's `outcomes.json` and the run's `report.json` against the records. A run
/// that failed naming a store failure (`partial`) may lack the failed wave's summary.
async fn check_reports(stack: &LocalStack, run_id: &str, recorded: &BTreeMap<String, Item>, partial: bool) {
    let mut per_wave: BTreeMap<u64, BTreeMap<&str, u64>> = BTreeMap::new();
    for item in recorded.values() {
        let wave = item.get("wave").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap();
        let key = match text(item, "outcome").as_str() {
            "PENDING" if partial => continue,
            "PATCHED" | "SCANNED" => "patched",
            "FAILED" => "failed",
            "TIMED_OUT" => "timedOut",
            "SKIPPED" => "skipped",
            "UNREACHABLE" => "unreachable",
            other => panic!("unexpected outcome {other}"),
        };
        *per_wave.entry(wave).or_default().entry(key).or_default() += 1;
    }
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for (wave, counts) in &per_wave {
        let report: Value =
            match stack.hub.store.get_json(&format!("runs/{run_id}/waves/{wave:03}/outcomes.json")).await {
                Ok(report) => report,
                Err(ec2patch_core::Error::NotFound(_)) if partial => continue,
                Err(error) => panic!("wave {wave} of {run_id} has no readable outcomes.json: {error}"),
            };
        for key in ["patched", "failed", "timedOut", "skipped", "unreachable"] {
            let recorded = counts.get(key).copied().unwrap_or_default();
            assert_eq!(report[key].as_u64(), Some(recorded), "wave {wave} {key}: report {report} vs records");
            *totals.entry(key).or_default() += recorded;
        }
    }
    let report: Value = match stack.hub.store.get_json(&format!("runs/{run_id}/report.json")).await {
        Ok(report) => report,
        Err(ec2patch_core::Error::NotFound(_)) if partial => return,
        Err(error) => panic!("{run_id} has no readable report.json: {error}"),
    };
    for (key, value) in totals {
        assert_eq!(report["totals"][key].as_u64(), Some(value), "report.json totals.{key}: {report}");
    }
}

fn print_figures(scenario: &str, figures: &Figures, started: Instant) {
    let under = match figures.under_failed_target {
        0 => String::new(),
        n => format!(" (+{n} not recorded: target FAILED at inventory, or the run failed naming it)"),
    };
    println!(
        "FIGURES | {scenario} | {} | {}/{}{under} | {} | {:.0} s",
        figures.ended,
        figures.with_one_outcome,
        figures.instances,
        figures.duplicate_commands,
        started.elapsed().as_secs_f64()
    );
}

fn visible(estate: &Estate) -> BTreeSet<String> {
    estate.expected_inventory().map(|i| i.instance_id.clone()).collect()
}

fn ids(estate: &Estate, kinds: &[SeedKind]) -> BTreeSet<String> {
    estate.instances.iter().filter(|i| kinds.contains(&i.kind)).map(|i| i.instance_id.clone()).collect()
}

fn task_errors(history: &[aws_sdk_sfn::types::HistoryEvent]) -> Vec<String> {
    history.iter().filter_map(|e| e.task_failed_event_details()).filter_map(|d| d.error().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttling_on_sts_ec2_and_ssm_slows_the_run_but_loses_nothing() {
    let started = Instant::now();
    let stack = LocalStack::start(options()).await.unwrap();
    let estate = stack
        .seed(&spec(3, &["us-east-1", "eu-west-1"], &[(SeedKind::Patchable, 2), (SeedKind::Unmanaged, 1)], 0))
        .await
        .unwrap();
    // 30 % of every STS, EC2 and SSM call is throttled, with each service's own error.
    for (service, code, status) in
        [("sts", "Throttling", 400), ("ec2", "RequestLimitExceeded", 503), ("ssm", "ThrottlingException", 400)]
    {
        stack.router.faults().add(FaultRule::error(service, "*", code, status).with_probability(0.3));
    }
    let input = json!({"accounts": estate.accounts, "regions": estate.regions, "abortOnIssues": false});
    let arn = stack.start_execution("throttled", &input).await.unwrap();
    let execution = approve_until_done(&stack, &arn, "throttled").await;
    let calls = stack.router.calls();
    let figures = check_invariants(&stack, &estate, "throttled", &execution, &visible(&estate)).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?} {:?}", execution.error, execution.cause);
    let recorded = records(&stack, "throttled").await;
    // Every target is inventoried (a target still throttled after the SDK's retries is tried
    // again as a whole) and every patchable instance patched.
    for id in ids(&estate, &[SeedKind::Patchable]) {
        assert!(recorded.contains_key(&id), "instance {id} has no record: its target was given up on");
        assert_eq!(outcome_of(&recorded, &id), "PATCHED", "throttling is retried, not recorded as failure");
    }
    // The faults did fire: more AssumeRole calls than one per account and function.
    assert!(calls.get("sts:AssumeRole").copied().unwrap_or_default() > 9, "{calls:?}");
    print_figures("throttling", &figures, started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_errors_and_connection_resets_on_state_writes_lose_no_result() {
    let started = Instant::now();
    let stack = LocalStack::start(options()).await.unwrap();
    let estate = stack
        .seed(&spec(2, &["us-east-1", "eu-west-1"], &[(SeedKind::Patchable, 2), (SeedKind::Unmanaged, 1)], 0))
        .await
        .unwrap();
    let faults = stack.router.faults();
    for operation in ["PutItem", "BatchWriteItem", "UpdateItem", "TransactWriteItems"] {
        faults.add(FaultRule::error("dynamodb", operation, "InternalServerError", 500).with_probability(0.2));
        // The nasty reset: DynamoDB applied the write, the answer is lost, the SDK writes again.
        faults.add(FaultRule::reset("dynamodb", operation).after_forwarding().with_probability(0.1));
    }
    faults.add(FaultRule::error("s3", "PutObject", "InternalError", 500).with_probability(0.2));
    faults.add(FaultRule::reset("s3", "PutObject").with_probability(0.1));
    // abortOnIssues: a write that stays lost after every retry stops the run, naming it.
    let input = json!({"accounts": estate.accounts, "regions": estate.regions, "abortOnIssues": true});
    let arn = stack.start_execution("flaky-writes", &input).await.unwrap();
    let execution = approve_until_done(&stack, &arn, "flaky-writes").await;
    let figures = check_invariants(&stack, &estate, "flaky-writes", &execution, &visible(&estate)).await;
    if execution.status == ExecutionStatus::Succeeded {
        let recorded = records(&stack, "flaky-writes").await;
        for id in ids(&estate, &[SeedKind::Patchable]) {
            assert_eq!(outcome_of(&recorded, &id), "PATCHED", "{id}: {:?}", recorded.get(&id));
        }
    } else {
        // Not lost silently: the execution names the store failure and the run's records say
        // which wave it hit.
        let failures = stack.hub.store.query_prefix(&store::run_pk("flaky-writes"), "FAILURE#WAVE#").await.unwrap();
        assert!(!failures.is_empty(), "{:?} without a failure record", execution.error);
    }
    print_figures("5xx and resets on DynamoDB/S3 writes", &figures, started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_invocation_is_retried_and_a_timed_out_send_does_not_send_twice() {
    let started = Instant::now();
    let stack = LocalStack::start(options()).await.unwrap();
    let estate = stack.seed(&spec(2, &["us-east-1"], &[(SeedKind::Patchable, 2)], 0)).await.unwrap();
    let name = |f: &str| stack.functions.function_name(f);
    let faults = stack.router.faults();
    // Lambda's Invoke API fails once for the first two steps (nothing ran)...
    faults.add(FaultRule::lambda_service_error(&name("PlanRun"), "ServiceException", 500).first(1));
    faults.add(FaultRule::lambda_service_error(&name("PreEC2Inventory"), "ServiceException", 500).first(1));
    // ...and the first send and the first verify do their work but time out.
    faults.add(FaultRule::lambda_timeout(&name("SendSsmCommand")).first(1));
    faults.add(FaultRule::lambda_timeout(&name("PostEC2Verify")).first(1));
    let input = json!({"accounts": estate.accounts, "abortOnIssues": true});
    let arn = stack.start_execution("lambda-faults", &input).await.unwrap();
    let execution = approve_until_done(&stack, &arn, "lambda-faults").await;
    let calls = stack.router.calls();
    let figures = check_invariants(&stack, &estate, "lambda-faults", &execution, &visible(&estate)).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?} {:?}", execution.error, execution.cause);
    let errors = task_errors(&stack.history(&arn).await.unwrap());
    assert_eq!(errors.iter().filter(|e| *e == "Lambda.ServiceException").count(), 2, "{errors:?}");
    assert_eq!(errors.iter().filter(|e| *e == "Sandbox.Timedout").count(), 2, "{errors:?}");
    assert_eq!(
        calls.get(&format!("lambda:Invoke:{}", name("SendSsmCommand"))),
        Some(&3),
        "2 batches + 1 retry: {calls:?}"
    );
    assert_eq!(calls.get("ssm:SendCommand"), Some(&2), "one command per target despite the retry: {calls:?}");
    let recorded = records(&stack, "lambda-faults").await;
    assert!(recorded.values().all(|item| text(item, "outcome") == "PATCHED"), "{recorded:#?}");
    print_figures("Lambda.ServiceException once; Sandbox.Timedout after the work", &figures, started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spoke_denied_after_inventory_is_recorded_unreachable_and_the_rest_patched() {
    let started = Instant::now();
    let stack = LocalStack::start(options()).await.unwrap();
    let estate = stack.seed(&spec(3, &["us-east-1"], &[(SeedKind::Patchable, 2)], 0)).await.unwrap();
    let denied = estate.accounts[2].clone();
    // The inventory's AssumeRole (one per account and invocation) still works; every later one
    // (the send, the verify) is refused, as when the spoke's role is removed mid-run.
    stack.router.faults().add(FaultRule::deny_assume_role(&denied).after(1));
    let input = json!({"accounts": estate.accounts, "abortOnIssues": true});
    let arn = stack.start_execution("denied-mid-run", &input).await.unwrap();
    let execution = approve_until_done(&stack, &arn, "denied-mid-run").await;
    let figures = check_invariants(&stack, &estate, "denied-mid-run", &execution, &visible(&estate)).await;
    // abortOnIssues: unreachable instances are an issue, so the run stops, named, after the wave.
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!(execution.error.as_deref(), Some("WaveIssuesDetected"), "{:?}", execution.cause);
    let recorded = records(&stack, "denied-mid-run").await;
    let commands = patch_commands(&stack, &estate).await;
    for instance in &estate.instances {
        let outcome = outcome_of(&recorded, &instance.instance_id);
        if instance.account == denied {
            assert_eq!(outcome, "UNREACHABLE");
            assert!(text(&recorded[&instance.instance_id], "reason").contains("AccessDenied"));
            assert_eq!(commands.get(&instance.instance_id), None, "nothing was sent into the denied account");
        } else {
            assert_eq!(outcome, "PATCHED");
        }
    }
    print_figures("spoke role denied after inventory", &figures, started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bedrock_down_or_answering_garbage_falls_back_to_the_rules_and_the_run_goes_on() {
    let started = Instant::now();
    // The hub's agent: a run input may name only that one.
    let bedrock = BedrockAgent { agent_id: "AGENT00001".into(), agent_alias_id: "ALIAS00001".into() };
    let stack = LocalStack::start(LocalStackOptions { bedrock: Some(bedrock), ..options() }).await.unwrap();
    let estate = stack.seed(&spec(2, &["us-east-1"], &[(SeedKind::Patchable, 2)], 0)).await.unwrap();
    let cases = [
        ("bedrock-down", FaultRule::error("bedrock", "InvokeAgent", "ServiceUnavailableException", 503)),
        (
            "bedrock-garbage",
            FaultRule::respond(
                "bedrock",
                "InvokeAgent",
                200,
                "application/vnd.amazon.eventstream",
                b"\x00\x00\x00\x10not an event stream, not JSON {\"issuesDetected\": mayb",
            ),
        ),
    ];
    let mut figures = Vec::new();
    for (index, (run_id, fault)) in cases.into_iter().enumerate() {
        stack.router.faults().add(fault);
        stack.router.reset_calls();
        let input = json!({
            "accounts": [estate.accounts[index]],
            "bedrock": {"agentId": "AGENT00001", "agentAliasId": "ALIAS00001"},
            "abortOnIssues": true
        });
        let arn = stack.start_execution(run_id, &input).await.unwrap();
        let execution = approve_until_done(&stack, &arn, run_id).await;
        let calls = stack.router.calls();
        let expected: BTreeSet<String> = estate
            .instances
            .iter()
            .filter(|i| i.account == estate.accounts[index])
            .map(|i| i.instance_id.clone())
            .collect();
        figures.push(check_invariants(&stack, &estate, run_id, &execution, &expected).await);
        assert_eq!(execution.status, ExecutionStatus::Succeeded, "{run_id}: {:?}", execution.cause);
        assert!(calls.get("bedrock:InvokeAgent").copied().unwrap_or_default() >= 2, "the agent was asked: {calls:?}");
        // Both analyses fell back to the rules, saying why.
        let history = stack.history(&arn).await.unwrap();
        let analyses: Vec<Value> = history
            .iter()
            .filter_map(|e| e.task_succeeded_event_details())
            .filter_map(|d| d.output())
            .filter_map(|o| serde_json::from_str::<Value>(o).ok())
            .filter(|o| o["Payload"]["source"].is_string())
            .map(|o| o["Payload"].clone())
            .collect();
        assert_eq!(analyses.len(), 2, "prePatch and postWave: {analyses:?}");
        for analysis in &analyses {
            assert_eq!(analysis["source"], "rules", "{analysis}");
            assert!(analysis["agentError"].as_str().is_some_and(|e| !e.is_empty()), "{analysis}");
        }
        let output: Value = serde_json::from_str(execution.output.as_deref().unwrap()).unwrap();
        assert_eq!(output["lastWave"]["analysis"]["issuesDetected"], false, "{output}");
    }
    let figures = Figures {
        ended: figures.iter().map(|f| f.ended.clone()).collect::<Vec<_>>().join(", "),
        instances: figures.iter().map(|f| f.instances).sum(),
        with_one_outcome: figures.iter().map(|f| f.with_one_outcome).sum(),
        under_failed_target: figures.iter().map(|f| f.under_failed_target).sum(),
        duplicate_commands: figures.iter().map(|f| f.duplicate_commands).sum(),
    };
    print_figures("Bedrock 503 / garbage answer", &figures, started);
}

async fn start_both(stack: &LocalStack, input: &Value) -> (String, String) {
    let (a, b) = tokio::join!(stack.start_execution("trigger-a", input), stack.start_execution("trigger-b", input));
    (a.unwrap(), b.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_scheduled_wave_triggered_twice_patches_once() {
    let started = Instant::now();
    let stack = LocalStack::start(options()).await.unwrap();
    let estate = stack.seed(&spec(2, &["us-east-1"], &[(SeedKind::Patchable, 2)], 0)).await.unwrap();
    // What the EventBridge rule's input transformer delivers: the wave plus the event's time.
    let input = json!({
        "accountWaves": [{"name": "wave1", "accounts": estate.accounts}],
        "scheduledTime": "2026-11-29T03:00:00Z",
        "abortOnIssues": false
    });
    let (arn_a, arn_b) = start_both(&stack, &input).await;
    let (a, b) =
        tokio::join!(approve_until_done(&stack, &arn_a, "trigger-a"), approve_until_done(&stack, &arn_b, "trigger-b"));
    let (winner, loser, winner_id, loser_id) = if a.status == ExecutionStatus::Succeeded {
        (a, b, "trigger-a", "trigger-b")
    } else {
        (b, a, "trigger-b", "trigger-a")
    };
    assert_eq!(winner.status, ExecutionStatus::Succeeded, "{:?} {:?}", winner.error, winner.cause);
    assert_eq!(loser.status, ExecutionStatus::Failed);
    assert_eq!(loser.error.as_deref(), Some("DuplicateRun"), "{:?}", loser.cause);
    assert!(loser.cause.as_deref().unwrap_or_default().contains(winner_id), "{:?}", loser.cause);
    // The refused run's record says so; it has no instance records and sent nothing.
    let run = stack.hub.store.get_item(&store::run_pk(loser_id), "RUN").await.unwrap().unwrap();
    assert_eq!((text(&run, "status"), text(&run, "duplicateOf")), ("DUPLICATE".to_owned(), winner_id.to_owned()));
    assert!(records(&stack, loser_id).await.is_empty());
    let approvals = stack.router.mailbox().iter().filter(|m| m.message.contains("Approve: ")).count();
    assert_eq!(approvals, 1, "only the winner asked for approval");
    let figures = check_invariants(&stack, &estate, winner_id, &winner, &visible(&estate)).await;

    // The lock is released (the run completed); a late third delivery of the same event is
    // refused too, while a run of the same wave started by hand is not blocked by it.
    let lock: RunLock = run_lock::load(&stack.hub.store, winner_id).await.unwrap().unwrap();
    let item = stack.hub.store.get_item(&lock.pk, &lock.sk).await.unwrap().unwrap();
    assert_eq!((text(&item, "status"), text(&item, "endedAs")), ("RELEASED".to_owned(), "completed".to_owned()));
    let late = stack.start_execution("trigger-late", &input).await.unwrap();
    let late = stack.wait_for_execution(&late, TIMEOUT).await.unwrap();
    assert_eq!(late.error.as_deref(), Some("DuplicateRun"), "{:?}", late.cause);
    assert!(late.cause.as_deref().unwrap_or_default().contains("already ended"), "{:?}", late.cause);
    let commands = patch_commands(&stack, &estate).await;
    assert!(commands.values().all(|n| *n == 1) && commands.len() == 4, "{commands:?}");
    print_figures("same scheduled wave triggered twice (+ a late third)", &figures, started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_stopped_mid_wave_and_started_again_resumes_without_repatching() {
    let started = Instant::now();
    let options = LocalStackOptions { run_lock_margin_seconds: 2, approval_timeout_seconds: 20, ..options() };
    let stack = LocalStack::start(options).await.unwrap();
    let estate =
        stack.seed(&spec(2, &["us-east-1"], &[(SeedKind::Patchable, 2), (SeedKind::Unmanaged, 1)], 0)).await.unwrap();
    // Two waves; the first one's patch takes long enough to stop the run in the middle of it.
    let input = json!({
        "accountWaves": [
            {"name": "first", "accounts": [estate.accounts[0]]},
            {"name": "second", "accounts": [estate.accounts[1]]}
        ],
        "abortOnIssues": false
    });
    let first = stack.start_execution("stopped-run", &input).await.unwrap();
    let mail = stack.wait_for_mail(1, TIMEOUT).await.unwrap();
    let approve = mail[0].message.lines().find_map(|l| l.strip_prefix("Approve: ")).unwrap().trim().to_owned();
    let post = Request::post(format!("{}/callback", stack.router.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(approve.split_once('?').unwrap().1.to_owned())))
        .unwrap();
    assert_eq!(ec2patch_local::http::send(post).await.unwrap().status(), 200);
    let deadline = Instant::now() + TIMEOUT;
    while !stack.router.calls().contains_key("ssm:SendCommand") {
        assert!(Instant::now() < deadline, "the first wave was never sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.sfn().stop_execution().execution_arn(&first).cause("operator stop (fault suite)").send().await.unwrap();
    let stopped = stack.wait_for_execution(&first, TIMEOUT).await.unwrap();
    // AWS reports ABORTED; moto's interpreter may end a stopped execution FAILED instead (the
    // stop interrupts the running state). Either way nothing of the run's end ran.
    assert!(
        matches!(stopped.status, ExecutionStatus::Aborted | ExecutionStatus::Failed),
        "{:?} {:?} {:?}",
        stopped.status,
        stopped.error,
        stopped.cause
    );
    println!("stopped run ended {:?} {:?} {:?}", stopped.status, stopped.error, stopped.cause);
    let before = records(&stack, "stopped-run").await;
    assert!(before.values().any(|i| text(i, "outcome") == "PENDING"), "stopped mid-wave: {before:#?}");

    // Started again at once: the stopped run's lease still runs, so the restart is refused...
    let early = stack.start_execution("restarted-early", &input).await.unwrap();
    let early = stack.wait_for_execution(&early, TIMEOUT).await.unwrap();
    assert_eq!(early.error.as_deref(), Some("DuplicateRun"), "{:?}", early.cause);
    // ...until the lease has expired (command timeout + last poll + margin after the send).
    let lock: RunLock = run_lock::load(&stack.hub.store, "stopped-run").await.unwrap().unwrap();
    let item = stack.hub.store.get_item(&lock.pk, &lock.sk).await.unwrap().unwrap();
    let lease: u64 = item["leaseExpiresAt"].as_n().unwrap().parse().unwrap();
    let wait = lease.saturating_sub(ec2patch_core::time::now_epoch_seconds()) + 1;
    assert!(wait < 60, "lease {wait} s");
    tokio::time::sleep(Duration::from_secs(wait)).await;

    let resumed = stack.start_execution("resumed-run", &input).await.unwrap();
    let execution = approve_until_done(&stack, &resumed, "resumed-run").await;
    let run = stack.hub.store.get_item(&store::run_pk("resumed-run"), "RUN").await.unwrap().unwrap();
    let resumes: Vec<String> = run["resumes"].as_l().unwrap().iter().map(|v| v.as_s().unwrap().clone()).collect();
    assert_eq!(resumes, ["stopped-run"], "the new run resumes the stopped one");
    let figures = check_invariants(&stack, &estate, "resumed-run", &execution, &visible(&estate)).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?} {:?}", execution.error, execution.cause);
    let recorded = records(&stack, "resumed-run").await;
    for id in ids(&estate, &[SeedKind::Patchable]) {
        assert_eq!(outcome_of(&recorded, &id), "PATCHED");
    }
    // The first wave's command is the stopped run's, adopted; only the second wave was sent.
    let commands = stack.hub.store.query_prefix(&store::run_pk("resumed-run"), "COMMAND#000#").await.unwrap();
    assert_eq!(commands.len(), 1);
    assert_eq!(text(&commands[0], "adoptedFrom"), "stopped-run");
    assert_eq!(stack.router.calls().get("ssm:SendCommand"), Some(&2), "one per wave, over both runs");
    print_figures("stopped mid-wave, started again (resume)", &figures, started);
}
