//! Deciding an approval: one conditional write (only `pending` -> `approved`/`rejected`, only
//! before the link expires), then delivery to the waiting execution (`SendTaskSuccess` or
//! `SendTaskFailure`). The callback's POST and the operator CLI's `approve`/`reject` both decide
//! here, so the audit record and the delivery rules are the same whoever decides.
//!
//! A decision recorded but not delivered (Step Functions unreachable) stays `notified = no`;
//! deciding again (a replayed POST, the same CLI command) delivers it then, by the same path.

use aws_sdk_dynamodb::types::{AttributeValue, Put};
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::json;

use super::record::{APPROVAL_SK, ApprovalRecord, ApprovalStatus, Decision, Notified, approval_pk};
use super::{Action, ApprovalDetails, new_approval_id};
use crate::metrics::{self, Metric};
use crate::store::{Item, RunStore, n, s};
use crate::time::{format_epoch, now_epoch_seconds};
use crate::{Error, Result};

/// Who decides, as the audit record keeps it: the callback's requester, or an operator's IAM
/// identity when the `ec2patch approve`/`reject` command decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    pub decided_by: String,
    pub source_ip: String,
    pub user_agent: String,
}

/// Whether the waiting execution heard the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// SendTaskSuccess/SendTaskFailure went through: the run goes on (or stops, on reject).
    Resumed,
    /// The execution had stopped waiting (timed out, stopped): recorded, without effect.
    TaskClosed,
    /// Step Functions could not be reached; deciding again re-delivers the recorded decision.
    Unavailable,
}

/// The result of one attempt to decide an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionOutcome {
    Decided {
        decision: Decision,
        delivery: Delivery,
    },
    /// Decided before (this attempt changed nothing); an undelivered earlier decision was re-sent.
    AlreadyDecided(Decision),
    Expired,
    NotFound,
    /// The records could not be read or written: nothing was decided.
    Unavailable,
}

/// Reads approval `id`; `None` when there is no such approval.
pub async fn load(store: &RunStore, id: &str) -> Result<Option<ApprovalRecord>> {
    match store.get_item(&approval_pk(id), APPROVAL_SK).await? {
        Some(item) => ApprovalRecord::from_item(id, &item).map(Some),
        None => Ok(None),
    }
}

/// Writes a new, pending approval, its entry in the pending index and the run's pointer to it,
/// in one transaction: the monitor never sees an entry without its record, nor a record without
/// its entry. Never overwrites an approval (a fresh 128-bit id never collides).
pub async fn create(store: &RunStore, record: &ApprovalRecord) -> Result<()> {
    let requested_at = now_epoch_seconds();
    // The run's pointer to its wave's approval, so the run report finds who decided (a resumed
    // run's new request replaces it).
    let pointer: Item = [
        ("pk", s(crate::store::run_pk(&record.details.run_id))),
        ("sk", s(super::record::run_approval_sk(record.details.wave_index))),
        ("approvalId", s(&record.id)),
        ("wave", n(record.details.wave_index)),
        ("requestedAt", n(requested_at)),
        ("expiresAt", store.expires_at()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let items = vec![
        store.transact_put(
            Put::builder()
                .set_item(Some(record.to_item(requested_at, store.expires_at())?))
                .condition_expression("attribute_not_exists(pk)"),
        )?,
        store.transact_put(Put::builder().set_item(Some(record.pending_index_item(store.expires_at()))))?,
        store.transact_put(Put::builder().set_item(Some(pointer)))?,
    ];
    let context =
        || format!("approval {} of run {} wave {}", record.id, record.details.run_id, record.details.wave_index);
    if store.transact_write(items, context).await? {
        Ok(())
    } else {
        Err(Error::StateStoreFailed(format!("{}: the approval exists already or was written concurrently", context())))
    }
}

/// Decides approval `id` as `decider`. The link's signature is not involved: the callback checks
/// it before; for the CLI the caller's IAM permissions on the table and on Step Functions are the
/// authorization.
pub async fn decide(
    store: &RunStore,
    sfn: &aws_sdk_sfn::Client,
    id: &str,
    action: Action,
    decider: &Decider,
) -> DecisionOutcome {
    match load(store, id).await {
        Ok(Some(record)) => decide_loaded(store, sfn, record, action, decider).await,
        Ok(None) => DecisionOutcome::NotFound,
        Err(error) => {
            tracing::error!(approval_id = %id, %error, "cannot read the approval");
            DecisionOutcome::Unavailable
        }
    }
}

/// [`decide`] for a record the caller has just read (the callback reads it for its checks).
pub async fn decide_loaded(
    store: &RunStore,
    sfn: &aws_sdk_sfn::Client,
    record: ApprovalRecord,
    action: Action,
    decider: &Decider,
) -> DecisionOutcome {
    let id = record.id.clone();
    let now = now_epoch_seconds();
    let decision = Decision {
        status: action.decision(),
        decided_by: decider.decided_by.clone(),
        decided_at: format_epoch(now),
        source_ip: decider.source_ip.clone(),
    };
    // Tells this request's own write apart from an earlier one: when the answer to the write is
    // lost (connection reset, 5xx) the SDK writes again and the condition fails on our own
    // decision, which must still be delivered and reported as decided, not as "already decided".
    let write_id = new_approval_id().unwrap_or_else(|_| format!("{now}-{}", decision.decided_by));
    let written = store
        .dynamodb()
        .update_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(approval_pk(&id)))
        .key("sk", AttributeValue::S(APPROVAL_SK.to_owned()))
        .update_expression(
            "SET #status = :decision, decidedBy = :by, decidedAt = :at, sourceIp = :ip, userAgent = :ua, notified = :no, decisionWrite = :write",
        )
        .condition_expression("#status = :pending AND linkExpiresAt > :now")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":decision", AttributeValue::S(decision.status.as_str().to_owned()))
        .expression_attribute_values(":by", AttributeValue::S(decision.decided_by.clone()))
        .expression_attribute_values(":at", AttributeValue::S(decision.decided_at.clone()))
        .expression_attribute_values(":ip", AttributeValue::S(decision.source_ip.clone()))
        .expression_attribute_values(":ua", AttributeValue::S(decider.user_agent.clone()))
        .expression_attribute_values(":no", AttributeValue::S(Notified::No.as_str().to_owned()))
        .expression_attribute_values(":pending", AttributeValue::S(ApprovalStatus::Pending.as_str().to_owned()))
        .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
        .expression_attribute_values(":write", AttributeValue::S(write_id.clone()))
        .send()
        .await;
    if let Err(error) = written {
        let conditional = error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception());
        if !conditional {
            tracing::error!(approval_id = %id, error = %DisplayErrorContext(&error).to_string(), "cannot record the decision");
            return DecisionOutcome::Unavailable;
        }
        let ours = match store.get_item(&approval_pk(&id), APPROVAL_SK).await {
            Ok(Some(item)) => item.get("decisionWrite").and_then(|v| v.as_s().ok()) == Some(&write_id),
            _ => false,
        };
        if !ours {
            // Decided before (a replay, or the other button), or expired in between.
            return decided_before(store, sfn, &id).await;
        }
        tracing::info!(approval_id = %id, "the decision's write succeeded although its answer was lost");
    }
    // The decision ends the wait: the hub's PendingApprovals alarm watches this go back to 0.
    metrics::emit(
        Some(&record.details.wave_name),
        &[Metric::count("PendingApprovals", 0), Metric::count("ApprovalsDecided", 1)],
    );
    tracing::info!(approval_id = %id, run_id = %record.details.run_id, wave = record.details.wave_index,
        decision = %decision.status, decided_by = %decision.decided_by, "approval decided");
    let delivery = deliver(store, sfn, &record, &decision).await;
    DecisionOutcome::Decided { decision, delivery }
}

/// The answer when the approval was decided by an earlier request (or expired meanwhile).
async fn decided_before(store: &RunStore, sfn: &aws_sdk_sfn::Client, id: &str) -> DecisionOutcome {
    match load(store, id).await {
        Ok(Some(record)) => match record.decision.clone() {
            Some(earlier) => {
                // The earlier decision was recorded but could not resume the execution: finish
                // that job now (the decision stands as recorded; this request adds nothing).
                // Delivered the way a fresh decision is: marked delivered only when it was, so
                // during a Step Functions outage it stays `notified = no` for the next replay.
                if record.notified == Some(Notified::No) {
                    let _delivery = deliver(store, sfn, &record, &earlier).await;
                }
                DecisionOutcome::AlreadyDecided(earlier)
            }
            None => DecisionOutcome::Expired,
        },
        Ok(None) => DecisionOutcome::NotFound,
        Err(_) => DecisionOutcome::Unavailable,
    }
}

/// Sends `decision` to the execution waiting on `record`'s task token and records whether it
/// arrived; an undelivered decision stays `notified = no`, to be delivered by the next attempt.
async fn deliver(
    store: &RunStore,
    sfn: &aws_sdk_sfn::Client,
    record: &ApprovalRecord,
    decision: &Decision,
) -> Delivery {
    let delivery = notify(sfn, record, decision).await;
    match delivery {
        Delivery::Resumed => mark_notified(store, &record.id, Notified::Yes).await,
        Delivery::TaskClosed => mark_notified(store, &record.id, Notified::TaskClosed).await,
        Delivery::Unavailable => {}
    }
    delivery
}

async fn notify(sfn: &aws_sdk_sfn::Client, record: &ApprovalRecord, decision: &Decision) -> Delivery {
    let (id, token, details): (&str, _, &ApprovalDetails) = (&record.id, &record.task_token, &record.details);
    let result = if decision.status == ApprovalStatus::Approved {
        let output = json!({
            "decision": decision.status,
            "approvalId": id,
            "decidedBy": decision.decided_by,
            "decidedAt": decision.decided_at,
        });
        sfn.send_task_success()
            .task_token(token.expose())
            .output(output.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| notify_error(&e))
    } else {
        sfn.send_task_failure()
            .task_token(token.expose())
            .error("ApprovalRejected")
            .cause(format!(
                "wave {} of run {} rejected by {} at {} (approval {id})",
                details.wave_name, details.run_id, decision.decided_by, decision.decided_at
            ))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| notify_error(&e))
    };
    match result {
        Ok(()) => Delivery::Resumed,
        Err((closed, message)) => {
            tracing::warn!(approval_id = %id, %message, closed, "cannot resume the execution");
            if closed { Delivery::TaskClosed } else { Delivery::Unavailable }
        }
    }
}

/// Whether the execution stopped waiting (the decision can no longer take effect), and why.
fn notify_error<E: ProvideErrorMetadata + std::error::Error>(error: &E) -> (bool, String) {
    let closed = matches!(error.code(), Some("TaskTimedOut" | "TaskDoesNotExist" | "InvalidToken"));
    (closed, DisplayErrorContext(error).to_string())
}

async fn mark_notified(store: &RunStore, id: &str, value: Notified) {
    let result = store
        .dynamodb()
        .update_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(approval_pk(id)))
        .key("sk", AttributeValue::S(APPROVAL_SK.to_owned()))
        .update_expression("SET notified = :value")
        .expression_attribute_values(":value", AttributeValue::S(value.as_str().to_owned()))
        .send()
        .await;
    if let Err(error) = result {
        // The decision stands; a replayed POST re-sends the (idempotent) task outcome.
        tracing::warn!(approval_id = %id, error = %DisplayErrorContext(&error).to_string(), "cannot mark the approval notified");
    }
}

/// An approval waiting for a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApproval {
    pub id: String,
    pub details: ApprovalDetails,
}

/// The pending approvals in the table, the soonest to expire first: what the approval monitor
/// reads ([`super::monitor::pending_waits`]), through the index of pending approvals.
pub async fn pending(store: &RunStore) -> Result<Vec<PendingApproval>> {
    let mut pending: Vec<PendingApproval> = super::monitor::pending_waits(store, now_epoch_seconds())
        .await?
        .into_iter()
        .map(|wait| PendingApproval { id: wait.id, details: wait.details })
        .collect();
    pending.sort_by_key(|p| p.details.link_expires_at);
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_sdk_sfn::operation::send_task_success::{SendTaskSuccessError, SendTaskSuccessOutput};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;
    use crate::approval::TaskToken;
    use crate::approval::record::tests::details;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    /// The record an earlier POST left: approved, but Step Functions was unreachable then.
    fn undelivered() -> ApprovalRecord {
        ApprovalRecord {
            decision: Some(Decision {
                status: ApprovalStatus::Approved,
                decided_by: "anonymous (holder of the emailed link)".into(),
                decided_at: "2026-11-29T10:00:00Z".into(),
                source_ip: "192.0.2.1".into(),
            }),
            notified: Some(Notified::No),
            ..ApprovalRecord::pending(ID, TaskToken::new("token".into()), details())
        }
    }

    fn store(rules: &[&Rule]) -> RunStore {
        let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules);
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder().behavior_version(aws_sdk_s3::config::BehaviorVersion::latest()).build(),
        );
        RunStore::new(dynamodb, s3, "t", "b", 1)
    }

    /// A replayed POST of the earlier decision, with SendTaskSuccess answering `delivered`.
    async fn replay(task_success: Rule) -> (DecisionOutcome, Rule, Rule) {
        let mut item = undelivered().to_item(1, AttributeValue::N("2".into())).unwrap();
        item.insert("decisionWrite".into(), AttributeValue::S("the earlier request".into()));
        let get = mock!(aws_sdk_dynamodb::Client::get_item)
            .then_output(move || GetItemOutput::builder().set_item(Some(item.clone())).build());
        // This request's write: refused, the approval is no longer pending.
        let decide_write = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| r.condition_expression().is_some())
            .then_error(|| {
                UpdateItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder().message("not pending").build(),
                )
            });
        let mark_notified = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| r.update_expression() == Some("SET notified = :value"))
            .then_output(|| UpdateItemOutput::builder().build());
        let store = store(&[&get, &decide_write, &mark_notified]);
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&task_success], |c| c
            .retry_config(aws_sdk_sfn::config::retry::RetryConfig::disabled()));
        let decider =
            Decider { decided_by: "anonymous".into(), source_ip: "192.0.2.2".into(), user_agent: "test".into() };
        let outcome = decide(&store, &sfn, ID, Action::Approve, &decider).await;
        (outcome, mark_notified, task_success)
    }

    #[tokio::test]
    async fn a_replayed_post_during_an_outage_leaves_the_decision_undelivered() {
        let outage = mock!(aws_sdk_sfn::Client::send_task_success)
            .then_error(|| SendTaskSuccessError::generic(ErrorMetadata::builder().code("ServiceUnavailable").build()));
        let (outcome, mark_notified, task_success) = replay(outage).await;
        assert_eq!(outcome, DecisionOutcome::AlreadyDecided(undelivered().decision.unwrap()));
        assert_eq!(task_success.num_calls(), 1, "the earlier decision is re-sent");
        assert_eq!(mark_notified.num_calls(), 0, "not delivered: still notified = no, for the next replay");
    }

    #[tokio::test]
    async fn a_replayed_post_delivers_an_undelivered_decision() {
        let delivered =
            mock!(aws_sdk_sfn::Client::send_task_success).then_output(|| SendTaskSuccessOutput::builder().build());
        let (outcome, mark_notified, task_success) = replay(delivered).await;
        assert_eq!(outcome, DecisionOutcome::AlreadyDecided(undelivered().decision.unwrap()));
        assert_eq!((task_success.num_calls(), mark_notified.num_calls()), (1, 1));
    }
}
