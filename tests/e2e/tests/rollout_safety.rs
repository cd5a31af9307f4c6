//! Rollout safety across runs on the local stack (issue 14): the approval alarm's monitor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::types::ExecutionStatus;
use ec2patch_approval_monitor::MonitorReport;
use ec2patch_core::approval::decide::{self, Decider, DecisionOutcome};
use ec2patch_core::approval::{self, Action};
use ec2patch_core::time::now_epoch_seconds;
use ec2patch_e2e::records::link_after;
use ec2patch_local::functions::APPROVAL_MONITOR;
use ec2patch_local::{EstateSpec, LocalStack, LocalStackOptions, SeedKind};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Invokes ApprovalMonitor as EventBridge's schedule would, through the stack's function table.
async fn invoke_monitor(stack: &LocalStack) -> MonitorReport {
    let name = stack.functions.function_name(APPROVAL_MONITOR);
    let event = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    let invocation = ec2patch_local::functions::FunctionHost::invoke(&*stack.functions, &name, event)
        .expect("ApprovalMonitor is hosted");
    serde_json::from_value(invocation.await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_approval_monitor_measures_the_wait_and_reminds_once() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let estate = stack
        .seed(&EstateSpec {
            accounts: 1,
            regions: vec!["us-east-1".to_owned()],
            per_target: BTreeMap::from([(SeedKind::Patchable, 1)]),
            ..EstateSpec::default()
        })
        .await
        .unwrap();
    // Nothing pending yet: both figures are 0, so the alarm stays (or returns to) OK.
    let idle = invoke_monitor(&stack).await;
    assert_eq!((idle.pending_approvals, idle.oldest_pending_approval_minutes), (0, 0));

    let input = json!({"accountWaves": [{"name": "canary", "accounts": [estate.accounts[0]]}]});
    let arn = stack.start_execution("monitor-1", &input).await.unwrap();
    let request = stack.wait_for_mail(1, TIMEOUT).await.unwrap().remove(0);
    let approve = link_after(&request.message, "Approve:");
    let id = approve.split(['?', '&']).find_map(|kv| kv.strip_prefix("id=")).unwrap().to_owned();

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
    let done = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
}
