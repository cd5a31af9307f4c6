//! Whole waves on the local stack: inventory, approval, AWS-RunPatchBaseline through SSM, the
//! poll loop, verification, the wave's analysis and summary, abort on issues. Each test asserts
//! the execution's status and every instance's recorded outcome.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::types::ExecutionStatus;
use ec2patch_core::{AccountId, Region, store};
use ec2patch_e2e::records::{instance_records, text};
use ec2patch_local::{ApproveOptions, Estate, EstateSpec, FaultRule, LocalStack, LocalStackOptions, SeedKind};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(180);

/// Approves every wave's email as it arrives (GET the page, then POST its form), until the
/// execution ends.
async fn approve_until_done(stack: &LocalStack, arn: &str) -> DescribeExecutionOutput {
    stack.approve_until_done(arn, &ApproveOptions::new(TIMEOUT)).await.unwrap()
}

async fn outcomes(stack: &LocalStack, run_id: &str) -> BTreeMap<String, (String, String)> {
    instance_records(stack, run_id)
        .await
        .into_iter()
        .map(|(id, item)| (id, (text(&item, "outcome"), text(&item, "reason"))))
        .collect()
}

async fn s3_text(stack: &LocalStack, key: &str) -> String {
    let s3 = aws_sdk_s3::Client::from_conf(ec2patch_core::hub::s3_config(&stack.sdk));
    let object = s3.get_object().bucket(&stack.hub.config.bucket).key(key).send().await.unwrap();
    assert_eq!(object.content_type(), Some("text/html; charset=utf-8"));
    String::from_utf8(object.body.collect().await.unwrap().into_bytes().to_vec()).unwrap()
}

fn ids_of(estate: &Estate, kinds: &[SeedKind]) -> BTreeSet<String> {
    estate.instances.iter().filter(|i| kinds.contains(&i.kind)).map(|i| i.instance_id.clone()).collect()
}

fn with_outcome(recorded: &BTreeMap<String, (String, String)>, outcome: &str) -> BTreeSet<String> {
    recorded.iter().filter(|(_, (o, _))| o == outcome).map(|(id, _)| id.clone()).collect()
}

fn spec(accounts: usize, regions: &[&str], per_target: &[(SeedKind, usize)]) -> EstateSpec {
    EstateSpec {
        accounts,
        regions: regions.iter().map(|r| (*r).to_owned()).collect(),
        per_target: per_target.iter().copied().collect(),
        ..EstateSpec::default()
    }
}

fn two_waves(estate: &Estate, abort_on_issues: bool) -> Value {
    let half = estate.accounts.len().div_ceil(2);
    json!({
        "accountWaves": [
            {"name": "first", "accounts": estate.accounts[..half], "regions": estate.regions},
            {"name": "second", "accounts": estate.accounts[half..], "regions": estate.regions}
        ],
        "abortOnIssues": abort_on_issues
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_waves_patch_every_instance_and_the_wave_reports_match() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let estate = stack
        .seed(&spec(
            6,
            &["us-east-1", "eu-west-1"],
            &[(SeedKind::Patchable, 2), (SeedKind::Unmanaged, 1), (SeedKind::Untagged, 1)],
        ))
        .await
        .unwrap();
    stack.router.reset_calls();
    stack.router.start_journal();
    let arn = stack.start_execution("happy-1", &two_waves(&estate, true)).await.unwrap();
    let execution = approve_until_done(&stack, &arn).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?} {:?}", execution.error, execution.cause);

    let recorded = outcomes(&stack, "happy-1").await;
    assert_eq!(
        with_outcome(&recorded, "PATCHED"),
        ids_of(&estate, &[SeedKind::Patchable]),
        "every patchable instance patched"
    );
    assert_eq!(with_outcome(&recorded, "SKIPPED"), ids_of(&estate, &[SeedKind::Unmanaged]));
    assert_eq!(recorded.len(), 36, "untagged instances are not recorded");

    // Each wave's report in S3 agrees with the records.
    for wave in 0..2 {
        let report: Value =
            stack.hub.store.get_json(&format!("runs/happy-1/waves/{wave:03}/outcomes.json")).await.unwrap();
        assert_eq!(report["patched"], 12, "{report}");
        assert_eq!(report["attempted"], 12);
        assert_eq!(report["skipped"], 6);
        assert_eq!((report["failed"].as_u64(), report["timedOut"].as_u64()), (Some(0), Some(0)));
    }
    let output: Value = serde_json::from_str(execution.output.as_deref().unwrap()).unwrap();
    // The run report: its location is in the output, its numbers match the records.
    assert_eq!(output["report"]["totals"]["patched"], 24, "{output}");
    let report: Value = stack.hub.store.get_json(output["report"]["json"]["key"].as_str().unwrap()).await.unwrap();
    assert_eq!(report["status"], "completed");
    assert_eq!((report["totals"]["patched"].as_u64(), report["totals"]["skipped"].as_u64()), (Some(24), Some(12)));
    assert_eq!(report["waves"][1]["outcomes"]["patched"], 12);
    let html = s3_text(&stack, output["report"]["html"]["key"].as_str().unwrap()).await;
    assert_eq!(html.matches("<svg").count(), 2, "a chart per wave");
    assert_eq!(html.matches("<td class=\"patched\">12</td>").count(), 2, "{html}");
    assert!(html.contains("Run happy-1") && !html.contains("<script"));
    assert_eq!(output["lastWave"]["analysis"]["source"], "rules", "no Bedrock agent configured");
    assert_eq!(output["lastWave"]["analysis"]["issuesDetected"], false);

    // One SendCommand per target (under 50 instances each), polls bounded, one email per wave
    // plus a summary per wave.
    let calls = stack.router.calls();
    assert_eq!(calls.get("ssm:SendCommand"), Some(&12), "{calls:?}");
    let summaries = stack.router.mailbox().iter().filter(|m| m.message.starts_with("Run happy-1, wave")).count();
    assert_eq!(summaries, 2);
    let history = stack.history(&arn).await.unwrap();
    let polls = history
        .iter()
        .filter_map(|e| e.state_entered_event_details.as_ref())
        .filter(|d| d.name == "PollCommands")
        .count();
    assert!(polls <= 12 * 4, "{polls} polls for 6 batches");
    // Each spoke-working function (a warm container of its own: inventory, send, poll, verify)
    // assumed each account's role once for the run, however many invocations it served.
    assert!(polls > 6, "{polls} polls: at least one batch polled twice");
    assert_eq!(calls.get("sts:AssumeRole"), Some(&(6 * 4)), "{calls:?}");
    // No call per instance or target: a batch's leases go 100 to a transaction (one to take
    // them, one to release them), and so do its command claims (one); a target's instance
    // records are one item, 25 to a BatchWriteItem; no lease is deleted alone. Each wave's
    // approval request is one more: its record, index entry and the run's pointer.
    // (Distinct requests: the SDK retries a transaction the emulator answers with a transient
    // error, with the same body.)
    let transactions: BTreeSet<String> =
        stack.router.journal().into_iter().filter(|e| e.key == "dynamodb:TransactWriteItems").map(|e| e.body).collect();
    assert_eq!(transactions.len(), 6 * 3 + 2, "{calls:?}");
    assert_eq!(calls.get("dynamodb:DeleteItem"), None, "{calls:?}");
    // Every command succeeded: PostEC2Verify asked SSM for no ping (the inventory's one per
    // target only) and read the invocations the last poll kept (one listing per command and
    // poll until it ended, none by the verification).
    assert_eq!(calls.get("ssm:DescribeInstanceInformation"), Some(&12), "{calls:?}");
    assert!(calls.get("ssm:ListCommandInvocations").copied().unwrap_or_default() <= polls as u64 * 2, "{calls:?}");
    let largest = history
        .iter()
        .filter_map(|e| e.state_exited_event_details.as_ref())
        .filter_map(|d| d.output.as_deref())
        .map(str::len)
        .max()
        .unwrap();
    assert!(largest < 8192, "largest state output {largest} bytes");
    println!("happy path: {} history events, {polls} polls, largest state output {largest} bytes", history.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_patch_is_recorded_and_stops_later_waves_when_abort_on_issues() {
    for abort in [true, false] {
        let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
        let estate = stack.seed(&spec(2, &["us-east-1"], &[(SeedKind::Patchable, 2)])).await.unwrap();
        let failing = stack.seed(&spec(1, &["us-east-1"], &[(SeedKind::PatchFails, 1)])).await.unwrap();
        let run_id = format!("failed-patch-{abort}");
        let arn = stack.start_execution(&run_id, &two_waves(&estate, abort)).await.unwrap();
        let execution = approve_until_done(&stack, &arn).await;
        let recorded = outcomes(&stack, &run_id).await;
        let failed_id = &failing.instances[0].instance_id;
        assert_eq!(recorded[failed_id].0, "FAILED");
        assert!(recorded[failed_id].1.contains("Failed"), "{:?}", recorded[failed_id]);
        let wave_two: BTreeSet<String> = estate
            .instances
            .iter()
            .filter(|i| i.account == estate.accounts[1])
            .map(|i| i.instance_id.clone())
            .collect();
        if abort {
            assert_eq!(execution.status, ExecutionStatus::Failed);
            assert_eq!(execution.error.as_deref(), Some("WaveIssuesDetected"));
            assert!(wave_two.iter().all(|id| !recorded.contains_key(id)), "wave 2 is not even inventoried");
            let report: Value = stack.hub.store.get_json(&format!("runs/{run_id}/report.json")).await.unwrap();
            assert_eq!(report["status"], "stopped");
            assert!(report["stoppedBecause"].as_str().unwrap().contains("WaveIssuesDetected"), "{report}");
            assert!(report["waves"][1]["outcomes"].is_null(), "wave 2 was not patched: {report}");
            let failures = stack.hub.store.query_prefix(&store::run_pk(&run_id), "FAILURE#WAVE#0").await.unwrap();
            assert_eq!(failures[0]["errorType"].as_s().unwrap(), "WaveIssuesDetected");
            assert!(failures[0]["cause"].as_s().unwrap().contains("failed"), "the record says why");
        } else {
            assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?}", execution.cause);
            assert!(wave_two.iter().all(|id| recorded[id].0 == "PATCHED"), "wave 2 ran: {recorded:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_that_never_finishes_is_recorded_as_timed_out() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let estate = stack.seed(&spec(1, &["us-east-1"], &[(SeedKind::Patchable, 2)])).await.unwrap();
    // The hanging instance gets an account (so a command) of its own: within one command SSM's
    // rate control would rightly hold other instances back behind it.
    let hanging = stack
        .seed(&EstateSpec { first_account: 1, ..spec(1, &["us-east-1"], &[(SeedKind::PatchHangs, 1)]) })
        .await
        .unwrap();
    let accounts = [estate.accounts[0].clone(), hanging.accounts[0].clone()];
    let arn = stack.start_execution("hang-1", &json!({"accounts": accounts, "abortOnIssues": false})).await.unwrap();
    let execution = approve_until_done(&stack, &arn).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?}", execution.cause);
    let recorded = outcomes(&stack, "hang-1").await;
    assert_eq!(with_outcome(&recorded, "TIMED_OUT"), ids_of(&hanging, &[SeedKind::PatchHangs]), "{recorded:?}");
    assert_eq!(with_outcome(&recorded, "PATCHED"), ids_of(&estate, &[SeedKind::Patchable]), "the rest is patched");
    let output: Value = serde_json::from_str(execution.output.as_deref().unwrap()).unwrap();
    assert_eq!(output["lastWave"]["result"]["outcomes"]["timedOut"], 1);
    assert_eq!(output["lastWave"]["analysis"]["issuesDetected"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_role_revoked_after_inventory_leaves_its_instances_unreachable_and_the_rest_patched() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let estate = stack.seed(&spec(2, &["us-east-1"], &[(SeedKind::Patchable, 2)])).await.unwrap();
    let arn = stack
        .start_execution("revoked-1", &json!({"accounts": estate.accounts, "abortOnIssues": false}))
        .await
        .unwrap();
    // The approval email means inventory is done: now the second account's role stops working.
    stack.wait_for_mail(1, TIMEOUT).await.unwrap();
    stack.router.faults().add(FaultRule::deny_assume_role(&estate.accounts[1]));
    let execution = approve_until_done(&stack, &arn).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?}", execution.cause);
    let recorded = outcomes(&stack, "revoked-1").await;
    for instance in &estate.instances {
        let (outcome, reason) = &recorded[&instance.instance_id];
        if instance.account == estate.accounts[1] {
            assert_eq!(outcome, "UNREACHABLE");
            assert!(reason.contains("AssumeRoleFailed") || reason.contains("cannot assume"), "{reason}");
        } else {
            assert_eq!(outcome, "PATCHED");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_sends_scan_and_installs_nothing() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let estate = stack.seed(&spec(1, &["us-east-1"], &[(SeedKind::Patchable, 2)])).await.unwrap();
    let arn = stack.start_execution("dry-scan", &json!({"accounts": estate.accounts, "dryRun": true})).await.unwrap();
    let execution = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?}", execution.cause);
    assert!(stack.router.mailbox().iter().all(|m| !m.message.contains("Approve: ")), "no approval for a dry run");
    let recorded = outcomes(&stack, "dry-scan").await;
    assert_eq!(with_outcome(&recorded, "SCANNED"), ids_of(&estate, &[SeedKind::Patchable]));

    // What the emulator received: Operation=Scan, the run's snapshot id, and no patch installed.
    let sessions = stack.hub.spoke_sessions("check");
    let config = sessions
        .config_for(&AccountId::parse(&estate.accounts[0]).unwrap(), &Region::new_unchecked("us-east-1"))
        .await
        .unwrap();
    let ssm = aws_sdk_ssm::Client::new(&config);
    let commands = ssm.list_commands().send().await.unwrap();
    assert_eq!(commands.commands().len(), 1);
    let parameters = commands.commands()[0].parameters().unwrap();
    assert_eq!(parameters["Operation"], ["Scan"]);
    assert_eq!(parameters["SnapshotId"][0].len(), 36);
    let states = ssm
        .describe_instance_patch_states()
        .set_instance_ids(Some(ids_of(&estate, &[SeedKind::Patchable]).into_iter().collect()))
        .send()
        .await
        .unwrap();
    assert!(
        states.instance_patch_states().iter().all(|s| s.missing_count() == 3 && s.operation().as_str() == "Scan"),
        "nothing installed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_send_after_the_command_went_out_does_not_send_again() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let estate = stack.seed(&spec(1, &["us-east-1"], &[(SeedKind::Patchable, 2)])).await.unwrap();
    // The run's second BatchWriteItem (the inventory's records are the first) records the command
    // id right after SendCommand: make it fail through all the SDK's attempts, so the invocation
    // fails after the command was sent.
    stack
        .router
        .faults()
        .add(FaultRule::error("dynamodb", "BatchWriteItem", "InternalServerError", 500).after(1).first(5));
    let arn = stack.start_execution("retry-send", &json!({"accounts": estate.accounts, "dryRun": true})).await.unwrap();
    let execution = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?}", execution.cause);
    let calls = stack.router.calls();
    assert_eq!(
        calls.get("lambda:Invoke:ec2patch-SendSsmCommand"),
        Some(&2),
        "the state machine retried the send: {calls:?}"
    );
    assert_eq!(calls.get("ssm:SendCommand"), Some(&1), "but only one command was sent: {calls:?}");
    let recorded = outcomes(&stack, "retry-send").await;
    assert_eq!(with_outcome(&recorded, "SCANNED"), ids_of(&estate, &[SeedKind::Patchable]));
}
