//! Rollout safety across runs on the local stack (issue 14): the approval alarm's monitor, one
//! run per instance (instance leases), change freezes (SSM Change Calendars) and error budgets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::types::ExecutionStatus;
use ec2patch_approval_monitor::MonitorReport;
use ec2patch_core::approval::decide::{self, Decider, DecisionOutcome};
use ec2patch_core::approval::{self, Action};
use ec2patch_core::instance_lease;
use ec2patch_core::time::{format_epoch, now_epoch_seconds};
use ec2patch_core::{AccountId, Region};
use ec2patch_e2e::records::{instance_list, instance_records, link_after, records, text};
use ec2patch_local::approvals::ApproveOptions;
use ec2patch_local::functions::APPROVAL_MONITOR;
use ec2patch_local::{Estate, EstateSpec, LocalStack, LocalStackOptions, SeedKind};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(120);

/// One account in us-east-1 with `patchable` patchable instances.
async fn seed_one_target(stack: &LocalStack, patchable: usize) -> Estate {
    let spec = EstateSpec {
        accounts: 1,
        regions: vec!["us-east-1".to_owned()],
        per_target: BTreeMap::from([(SeedKind::Patchable, patchable)]),
        ..EstateSpec::default()
    };
    stack.seed(&spec).await.unwrap()
}

/// Invokes ApprovalMonitor as EventBridge's schedule would, through the stack's function table.
async fn invoke_monitor(stack: &LocalStack) -> MonitorReport {
    let name = stack.functions.function_name(APPROVAL_MONITOR);
    let event = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    let invocation = ec2patch_local::functions::FunctionHost::invoke(&*stack.functions, &name, event)
        .expect("ApprovalMonitor is hosted");
    serde_json::from_value(invocation.await.unwrap()).unwrap()
}

/// The approval ids in the index of pending approvals.
async fn pending_index(stack: &LocalStack) -> Vec<String> {
    let store = &stack.hub.store;
    let page = store
        .dynamodb()
        .query()
        .table_name(store.table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(approval::PENDING_INDEX_PK.to_owned()))
        .send()
        .await
        .unwrap();
    page.items().iter().map(|entry| text(entry, "approvalId")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_approval_monitor_measures_the_wait_and_reminds_once() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let estate = seed_one_target(&stack, 1).await;
    // Nothing pending yet: both figures are 0, so the alarm stays (or returns to) OK.
    let idle = invoke_monitor(&stack).await;
    assert_eq!((idle.pending_approvals, idle.oldest_pending_approval_minutes), (0, 0));

    let input = json!({"accountWaves": [{"name": "canary", "accounts": [estate.accounts[0]]}]});
    let arn = stack.start_execution("monitor-1", &input).await.unwrap();
    let request = stack.wait_for_mail(1, TIMEOUT).await.unwrap().remove(0);
    let approve = link_after(&request.message, "Approve:");
    let id = approve.split(['?', '&']).find_map(|kv| kv.strip_prefix("id=")).unwrap().to_owned();

    // The request wrote the approval's index entry with its record.
    assert_eq!(pending_index(&stack).await, vec![id.clone()]);

    // Just requested: counted, a few seconds old, no reminder before halfway.
    let fresh = invoke_monitor(&stack).await;
    assert_eq!(fresh.pending_approvals, 1);
    assert_eq!(fresh.oldest_pending_approval_minutes, 0);
    assert!(fresh.reminders_sent.is_empty(), "{fresh:?}");
    assert_eq!(stack.router.mailbox().len(), 1);

    // The approval has waited two hours of a window that ends in more than an hour: past the
    // alarm's 60 minutes and past halfway. Only the request time moves; the links stay as mailed.
    let requested_at = now_epoch_seconds() - 2 * 3600;
    stack
        .hub
        .store
        .dynamodb()
        .update_item()
        .table_name(stack.hub.store.table())
        .key("pk", AttributeValue::S(approval::record::approval_pk(&id)))
        .key("sk", AttributeValue::S(approval::record::APPROVAL_SK.to_owned()))
        .update_expression("SET requestedAt = :at")
        .expression_attribute_values(":at", AttributeValue::N(requested_at.to_string()))
        .send()
        .await
        .unwrap();

    let late = invoke_monitor(&stack).await;
    assert_eq!(late.pending_approvals, 1);
    assert!((120..=121).contains(&late.oldest_pending_approval_minutes), "{late:?}");
    assert_eq!(late.reminders_sent, vec![id.clone()]);
    assert!(late.reminder_failures.is_empty(), "{late:?}");
    let mail = stack.wait_for_mail(2, TIMEOUT).await.unwrap();
    let reminder = &mail[1];
    assert_eq!(reminder.topic_arn, request.topic_arn, "the reminder goes where the request went");
    assert!(
        reminder.subject.as_deref().unwrap().starts_with("[ec2patch] Reminder: Approve wave canary"),
        "{reminder:?}"
    );
    assert!(reminder.message.starts_with("REMINDER: this approval is still pending"), "{}", reminder.message);
    assert_eq!(link_after(&reminder.message, "Approve:"), approve, "the same signed link");

    // The next scheduled run measures again but does not remind again.
    let again = invoke_monitor(&stack).await;
    assert_eq!(again.pending_approvals, 1);
    assert!(again.reminders_sent.is_empty(), "{again:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stack.router.mailbox().len(), 2, "one reminder only");

    // Decided: no longer counted, and the alarm's figure goes back to 0.
    let decider = Decider { decided_by: "e2e".into(), source_ip: "cli".into(), user_agent: "e2e".into() };
    let outcome = decide::decide(&stack.hub.store, &stack.sfn(), &id, Action::Approve, &decider).await;
    assert!(matches!(outcome, DecisionOutcome::Decided { .. }), "{outcome:?}");
    let decided = invoke_monitor(&stack).await;
    assert_eq!((decided.pending_approvals, decided.oldest_pending_approval_minutes), (0, 0), "{decided:?}");
    assert!(decided.reminders_sent.is_empty());
    // The monitor found the approval through its index entry, and dropped the entry once decided;
    // it never scanned the table.
    assert_eq!(pending_index(&stack).await, Vec::<String>::new());
    let scans = stack.router.journal().into_iter().filter(|e| e.key == "dynamodb:Scan").count();
    assert_eq!(scans, 0, "the pending approvals are queried, not scanned");
    let done = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
}

/// Two runs whose waves differ (so the run lock does not keep them apart) reach the same
/// instances while the first run's command is still running: the second sends nothing to them
/// and says why; once the first has verified them, a later run patches them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_runs_patch_each_instance_once() {
    let stack =
        LocalStack::start(LocalStackOptions { name_prefix: "overlap".into(), ..Default::default() }).await.unwrap();
    let estate = seed_one_target(&stack, 2).await;
    let account = AccountId::parse(&estate.accounts[0]).unwrap();
    let region = Region::new_unchecked("us-east-1".to_owned());
    let ids: Vec<String> = estate.instances.iter().map(|i| i.instance_id.clone()).collect();
    // Each command runs 12 s in the emulator: long enough for the second run to reach it.
    let config = stack.hub.spoke_sessions("e2e").config_for(&account, &region).await.unwrap();
    aws_sdk_ec2::Client::new(&config)
        .create_tags()
        .set_resources(Some(ids.clone()))
        .tags(aws_sdk_ec2::types::Tag::builder().key("ec2patch:sim:patch-seconds").value("12").build())
        .send()
        .await
        .unwrap();

    // Same instances, two tag filters: two different run locks.
    let first_input = json!({"accountWaves": [{"name": "by-group", "accounts": [account.as_str()]}]});
    let second_input = json!({
        "accountWaves": [{"name": "by-kind", "accounts": [account.as_str()]}],
        "ec2": {"tagKey": "ec2patch:sim:kind", "tagValue": "Patchable"}
    });
    let first_arn = stack.start_execution("overlap-first", &first_input).await.unwrap();
    let first = {
        let stack = &stack;
        let options = ApproveOptions::new(TIMEOUT).for_run("overlap-first");
        async move { stack.approve_until_done(&first_arn, &options).await }
    };
    let second = async {
        // Start the second run once the first has sent its command.
        let started = std::time::Instant::now();
        while stack.router.calls().get("ssm:SendCommand").copied().unwrap_or_default() == 0 {
            assert!(started.elapsed() < TIMEOUT, "the first run never sent: {:?}", stack.router.calls());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for id in &ids {
            let holder = instance_lease::holder(&stack.hub.store, (&account, &region, id)).await.unwrap();
            assert_eq!(holder.map(|(run, _)| run).as_deref(), Some("overlap-first"), "{id} is leased");
        }
        let arn = stack.start_execution("overlap-second", &second_input).await.unwrap();
        stack.approve_until_done(&arn, &ApproveOptions::new(TIMEOUT).for_run("overlap-second")).await
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.unwrap().status, ExecutionStatus::Succeeded);
    assert_eq!(second.unwrap().status, ExecutionStatus::Succeeded);
    assert_eq!(stack.router.calls().get("ssm:SendCommand"), Some(&1), "one command, from the first run");

    let patched = instance_records(&stack, "overlap-first").await;
    let skipped = instance_records(&stack, "overlap-second").await;
    for id in &ids {
        assert_eq!(text(&patched[id], "outcome"), "PATCHED", "{:?}", patched[id]);
        assert_eq!(text(&skipped[id], "outcome"), "SKIPPED", "{:?}", skipped[id]);
        assert_eq!(text(&skipped[id], "reason"), "BusyInAnotherRun overlap-first");
        assert_eq!(text(&skipped[id], "busyRun"), "overlap-first");
        // Verified: the first run let go of the instance.
        assert_eq!(instance_lease::holder(&stack.hub.store, (&account, &region, id)).await.unwrap(), None);
    }

    // Free again: the next run patches them.
    let third_arn = stack.start_execution("overlap-third", &second_input).await.unwrap();
    let third = stack.approve_until_done(&third_arn, &ApproveOptions::new(TIMEOUT).for_run("overlap-third")).await;
    assert_eq!(third.unwrap().status, ExecutionStatus::Succeeded);
    let third = instance_records(&stack, "overlap-third").await;
    for id in &ids {
        assert_eq!(text(&third[id], "outcome"), "PATCHED", "{:?}", third[id]);
    }
    assert_eq!(stack.router.calls().get("ssm:SendCommand"), Some(&2));
}

/// A Change Calendar in the hub, as the console writes it: `DEFAULT_OPEN`, closed from `start`
/// to `end` (epoch seconds).
async fn freeze_calendar(stack: &LocalStack, name: &str, start: u64, end: u64) {
    let ical = |epoch: u64| format_epoch(epoch).replace(['-', ':'], "");
    let content = [
        "BEGIN:VCALENDAR",
        "PRODID:-//AWS//Change Calendar 1.0//EN",
        "VERSION:2.0",
        "X-CALENDAR-TYPE:DEFAULT_OPEN",
        "X-WR-CALDESC:ec2patch e2e",
        "BEGIN:VEVENT",
        "DTSTAMP:20260101T000000Z",
        &format!("UID:{name}-1"),
        &format!("DTSTART:{}", ical(start)),
        &format!("DTEND:{}", ical(end)),
        "SUMMARY:patch freeze",
        "END:VEVENT",
        "END:VCALENDAR",
        "",
    ]
    .join("\r\n");
    aws_sdk_ssm::Client::new(&stack.sdk)
        .create_document()
        .name(name)
        .content(content)
        .document_type(aws_sdk_ssm::types::DocumentType::ChangeCalendar)
        .document_format(aws_sdk_ssm::types::DocumentFormat::Text)
        .send()
        .await
        .unwrap();
}

/// A run whose calendar is CLOSED sends nothing and stops with `ChangeFreeze`, naming the
/// calendar and when it opens; a calendar that opens within `freezeWaitSeconds` is waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_change_calendar_stops_the_run_before_any_command() {
    let stack =
        LocalStack::start(LocalStackOptions { name_prefix: "freeze".into(), ..Default::default() }).await.unwrap();
    let estate = seed_one_target(&stack, 2).await;
    let now = now_epoch_seconds();
    let opens_at = now + 86_400;
    freeze_calendar(&stack, "PatchFreeze", now - 3600, opens_at).await;

    // Two waves and abortOnIssues false: the freeze still stops the run at the first.
    let account = estate.accounts[0].as_str();
    let input = json!({
        "accountWaves": [
            {"name": "frozen", "accounts": [account]},
            {"name": "later", "accounts": [account], "regions": ["eu-west-1"]}
        ],
        "abortOnIssues": false,
        "changeCalendars": ["PatchFreeze"]
    });
    let arn = stack.start_execution("freeze-closed", &input).await.unwrap();
    let done = stack.approve_until_done(&arn, &ApproveOptions::new(TIMEOUT).for_run("freeze-closed")).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:?}");
    assert_eq!(done.error.as_deref(), Some("ChangeFreeze"), "{done:?}");
    assert_eq!(stack.router.calls().get("ssm:SendCommand"), None, "nothing sent: {:?}", stack.router.calls());
    assert_eq!(stack.router.calls().get("ssm:GetCalendarState"), Some(&1));
    let failures = records(&stack, "freeze-closed", "FAILURE#WAVE#").await;
    assert_eq!(failures.len(), 1, "the second wave never started: {failures:?}");
    assert_eq!(text(&failures[0], "errorType"), "ChangeFreeze");
    let cause = text(&failures[0], "cause");
    assert!(cause.contains("PatchFreeze") && cause.contains(&format_epoch(opens_at)), "{cause}");
    // Every instance ends with an outcome that says why it was not patched.
    let unpatched = instance_records(&stack, "freeze-closed").await;
    assert_eq!(unpatched.len(), 2);
    for record in unpatched.values() {
        assert_eq!(text(record, "outcome"), "SKIPPED", "{record:?}");
        assert!(text(record, "reason").contains("ChangeFreeze: change freeze: PatchFreeze CLOSED"), "{record:?}");
    }

    // A freeze that ends in a few seconds, and 60 s allowed: the wave waits, then patches.
    let now = now_epoch_seconds();
    freeze_calendar(&stack, "ShortFreeze", now - 60, now + 20).await;
    let input = json!({
        "accountWaves": [{"name": "waits", "accounts": [account]}],
        "changeCalendars": ["ShortFreeze"],
        "freezeWaitSeconds": 60
    });
    let arn = stack.start_execution("freeze-waits", &input).await.unwrap();
    let done = stack.approve_until_done(&arn, &ApproveOptions::new(TIMEOUT).for_run("freeze-waits")).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    assert!(now_epoch_seconds() >= now + 20, "the run waited for the calendar to open");
    let waited = stack
        .history(&arn)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.state_entered_event_details().is_some_and(|d| d.name() == "WaitForChangeWindow"))
        .count();
    assert!(waited >= 1, "the wave waited in WaitForChangeWindow");
    let patched = instance_records(&stack, "freeze-waits").await;
    assert!(patched.values().all(|r| text(r, "outcome") == "PATCHED"), "{patched:?}");
}

/// A wave of 4 batches (2 targets each, one at a time) whose first batch fails on both its
/// instances, with a budget of 1 failed instance: the later batches send nothing, their
/// instances are `SKIPPED` with `ErrorBudgetExceeded`, and the wave's analysis stops the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exceeded_error_budget_stops_the_later_batches() {
    let stack =
        LocalStack::start(LocalStackOptions { name_prefix: "budget".into(), ..Default::default() }).await.unwrap();
    let spec = EstateSpec {
        accounts: 4,
        regions: vec!["us-east-1".to_owned(), "eu-west-1".to_owned()],
        per_target: BTreeMap::from([(SeedKind::Patchable, 1)]),
        ..EstateSpec::default()
    };
    let estate = stack.seed(&spec).await.unwrap();
    // The first account's targets are the first batch (accounts outermost, 2 targets a batch).
    let first = AccountId::parse(&estate.accounts[0]).unwrap();
    for region in &estate.regions {
        let ids: Vec<String> = estate
            .instances
            .iter()
            .filter(|i| i.account == first.as_str() && &i.region == region)
            .map(|i| i.instance_id.clone())
            .collect();
        let config =
            stack.hub.spoke_sessions("e2e").config_for(&first, &Region::new_unchecked(region.clone())).await.unwrap();
        aws_sdk_ec2::Client::new(&config)
            .create_tags()
            .set_resources(Some(ids))
            .tags(aws_sdk_ec2::types::Tag::builder().key("ec2patch:sim:patch-outcome").value("failed").build())
            .send()
            .await
            .unwrap();
    }

    let input = json!({
        "accountWaves": [{"name": "budgeted", "accounts": estate.accounts, "regions": estate.regions}],
        "maxFailedInstances": 1,
        "maxConcurrentBatches": 1
    });
    let arn = stack.start_execution("budget-1", &input).await.unwrap();
    let done = stack.approve_until_done(&arn, &ApproveOptions::new(TIMEOUT).for_run("budget-1")).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:?}");
    assert_eq!(done.error.as_deref(), Some("WaveIssuesDetected"));
    assert!(done.cause.as_deref().is_some_and(|c| c.contains("ErrorBudgetExceeded")), "{:?}", done.cause);
    assert_eq!(stack.router.calls().get("ssm:SendCommand"), Some(&2), "the first batch's two targets only");

    let records = instance_records(&stack, "budget-1").await;
    assert_eq!(records.len(), 8);
    for instance in &estate.instances {
        let record = &records[&instance.instance_id];
        if instance.account == first.as_str() {
            assert_eq!(text(record, "outcome"), "FAILED", "{record:?}");
        } else {
            assert_eq!(text(record, "outcome"), "SKIPPED", "{record:?}");
            let reason = text(record, "reason");
            assert!(reason.starts_with("ErrorBudgetExceeded: 2 instance(s) of this wave failed"), "{reason}");
            assert!(reason.contains("maxFailedInstances 1"), "{reason}");
        }
    }
    let outcomes: ec2patch_core::wave::WaveOutcomes =
        stack.hub.store.get_json("runs/budget-1/waves/000/outcomes.json").await.unwrap();
    let budget = outcomes.error_budget.unwrap();
    assert_eq!((budget.allowed, budget.failed, budget.exceeded, budget.skipped), (1, 2, true, 6));
}

/// Sets the simulated outcome of `instance`'s next AWS-RunPatchBaseline (`success` or `failed`).
async fn set_patch_outcome(stack: &LocalStack, account: &str, instance: &str, outcome: &str) {
    let account = AccountId::parse(account).unwrap();
    let config =
        stack.hub.spoke_sessions("e2e").config_for(&account, &Region::new_unchecked("us-east-1")).await.unwrap();
    aws_sdk_ec2::Client::new(&config)
        .create_tags()
        .resources(instance)
        .tags(aws_sdk_ec2::types::Tag::builder().key("ec2patch:sim:patch-outcome").value(outcome).build())
        .send()
        .await
        .unwrap();
}

/// Scheduled rings: `production` follows `canary`. After a canary run with a failed patch the
/// production run stops before inventory with `WaveGateClosed` naming that run, sends nothing,
/// tells the topic and writes a report; `ignoreGates` (with who) lets it through and the records
/// say so; after a clean canary run it proceeds on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wave_gate_holds_production_until_its_canary_passes() {
    let stack =
        LocalStack::start(LocalStackOptions { name_prefix: "gate".into(), ..Default::default() }).await.unwrap();
    let spec = EstateSpec {
        accounts: 2,
        regions: vec!["us-east-1".to_owned()],
        per_target: BTreeMap::from([(SeedKind::Patchable, 1)]),
        ..EstateSpec::default()
    };
    let estate = stack.seed(&spec).await.unwrap();
    let (canary, production) = (estate.accounts[0].clone(), estate.accounts[1].clone());
    let canary_instance = estate.instances.iter().find(|i| i.account == canary).unwrap().instance_id.clone();
    let canary_input = json!({"accountWaves": [{"name": "canary", "accounts": [canary]}]});
    // As the production wave's EventBridge rule sends it (wave_rules[*].after).
    let production_input = json!({
        "accountWaves": [{"name": "production", "accounts": [production], "after": "canary", "gateWindowHours": 24}]
    });
    let run = |name: &'static str, input: serde_json::Value| {
        let stack = &stack;
        async move {
            let arn = stack.start_execution(name, &input).await.unwrap();
            stack.approve_until_done(&arn, &ApproveOptions::new(TIMEOUT).for_run(name)).await.unwrap()
        }
    };
    let sent = |stack: &LocalStack| stack.router.calls().get("ssm:SendCommand").copied().unwrap_or_default();

    // Tuesday: the canary's patch fails.
    set_patch_outcome(&stack, &canary, &canary_instance, "failed").await;
    let done = run("gate-canary-1", canary_input.clone()).await;
    assert_ne!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    assert_eq!(sent(&stack), 1);

    // Thursday: production's run stops at its gate, before inventory and approval.
    let mails = stack.router.mailbox().len();
    let done = run("gate-production-1", production_input.clone()).await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:?}");
    assert_eq!(done.error.as_deref(), Some("WaveGateClosed"), "{done:?}");
    let cause = done.cause.unwrap_or_default();
    assert!(cause.contains("wave production follows canary") && cause.contains("gate-canary-1"), "{cause}");
    assert!(cause.contains("1 failed"), "what the canary found: {cause}");
    assert_eq!(sent(&stack), 1, "production sent nothing");
    assert!(instance_list(&stack, "gate-production-1").await.is_empty(), "nothing was inventoried");
    let notices: Vec<_> = stack.router.mailbox().into_iter().skip(mails).collect();
    assert_eq!(notices.len(), 1, "one stop notice, no approval request: {notices:?}");
    assert_eq!(notices[0].subject.as_deref(), Some("[ec2patch] run stopped: WaveGateClosed"));
    assert!(notices[0].message.contains("gate-canary-1"), "{}", notices[0].message);
    assert!(notices[0].message.contains("runs/gate-production-1/report.json"), "{}", notices[0].message);
    let report: ec2patch_core::report::RunReport =
        stack.hub.store.get_json(&ec2patch_core::report::json_key("gate-production-1")).await.unwrap();
    let because = report.stopped_because.unwrap_or_default();
    assert!(because.contains("WaveGateClosed") && because.contains("gate-canary-1"), "{because}");

    // An operator overrides the gate: it must say who, and the records keep it.
    let mut input = production_input.clone();
    input["ignoreGates"] = json!(true);
    let done = run("gate-production-anonymous", input.clone()).await;
    assert_eq!(done.error.as_deref(), Some("InvalidInput"), "{done:?}");
    assert!(done.cause.unwrap_or_default().contains("startedBy"));
    input["startedBy"] = json!("arn:aws:iam::111111111111:user/oncall");
    let done = run("gate-production-override", input).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    assert_eq!(sent(&stack), 2);
    let run_record = records(&stack, "gate-production-override", "RUN").await.remove(0);
    assert_eq!(run_record.get("ignoreGates").and_then(|v| v.as_bool().ok()), Some(&true));
    assert_eq!(text(&run_record, "startedBy"), "arn:aws:iam::111111111111:user/oncall");
    let wave = records(&stack, "gate-production-override", "WAVE#").await.remove(0);
    let gate = text(&wave, "gate");
    assert!(gate.starts_with("ignored by arn:aws:iam::111111111111:user/oncall (ignoreGates)"), "{gate}");
    assert!(gate.contains("gate-canary-1"), "{gate}");

    // The canary is fixed and passes: production proceeds on its own, and says why.
    set_patch_outcome(&stack, &canary, &canary_instance, "success").await;
    let done = run("gate-canary-2", canary_input).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let done = run("gate-production-2", production_input).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    assert_eq!(sent(&stack), 4);
    let wave = records(&stack, "gate-production-2", "WAVE#").await.remove(0);
    let gate = text(&wave, "gate");
    assert!(gate.starts_with("open: wave canary passed in run gate-canary-2"), "{gate}");
    let patched = instance_records(&stack, "gate-production-2").await;
    assert!(patched.values().all(|r| text(r, "outcome") == "PATCHED"), "{patched:?}");
}
