//! What the scheduled approval monitor measures and when it reminds.
//!
//! Every five minutes the monitor reads the live pending approvals and emits `PendingApprovals`
//! (how many) and `OldestPendingApprovalMinutes` (how long the oldest has waited), so the
//! `ApprovalTimeout` alarm sees an approval left pending for hours, not only the moment its email
//! went out. Halfway through an approval's window it re-sends the email once: the reminder is
//! claimed by a conditional write (`reminderSentAt` absent, still pending), so overlapping or
//! retried invocations send it at most once.
//!
//! The records are read with a filtered Scan, not a Query: an approval is keyed by its own random
//! id (`pk = APPROVAL#<id>`, looked up by the id in the link) and the table has no index on
//! status, so no key condition selects "pending". The table holds only TTL-bounded run records.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::error::display::DisplayErrorContext;

use super::ApprovalDetails;
use super::record::{APPROVAL_SK, ApprovalStatus, approval_pk};
use crate::store::RunStore;
use crate::{Error, Result};

/// The metric the `ApprovalTimeout` alarm watches (no dimensions, the hub's namespace).
pub const OLDEST_PENDING_METRIC: &str = "OldestPendingApprovalMinutes";
/// How many approvals are waiting (no dimensions, the hub's namespace).
pub const PENDING_COUNT_METRIC: &str = "PendingApprovals";

/// A live approval waiting for a decision, with what the monitor needs to judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWait {
    pub id: String,
    pub details: ApprovalDetails,
    /// When the approval email went out (epoch seconds).
    pub requested_at: u64,
    /// Whether the reminder was already claimed.
    pub reminded: bool,
}

impl PendingWait {
    /// Whole minutes the approval has waited at `now`.
    pub fn age_minutes(&self, now: u64) -> u64 {
        now.saturating_sub(self.requested_at) / 60
    }

    /// Halfway between the request and the links' expiry.
    pub fn reminder_due_at(&self) -> u64 {
        self.requested_at + self.details.link_expires_at.saturating_sub(self.requested_at) / 2
    }

    /// Whether the reminder should go out at `now`: not sent yet, past halfway, links still valid.
    pub fn reminder_due(&self, now: u64) -> bool {
        !self.reminded && now >= self.reminder_due_at() && now < self.details.link_expires_at
    }
}

/// The monitor's two figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingSummary {
    pub pending: usize,
    /// 0 when nothing is pending, so the alarm returns to OK.
    pub oldest_minutes: u64,
}

pub fn summarize(waits: &[PendingWait], now: u64) -> PendingSummary {
    PendingSummary { pending: waits.len(), oldest_minutes: waits.iter().map(|w| w.age_minutes(now)).max().unwrap_or(0) }
}

/// The live pending approvals (not decided, links not expired at `now`), oldest first.
pub async fn pending_waits(store: &RunStore, now: u64) -> Result<Vec<PendingWait>> {
    let mut waits = Vec::new();
    let mut pages = store
        .dynamodb()
        .scan()
        .table_name(store.table())
        .filter_expression("sk = :sk AND #status = :pending AND linkExpiresAt > :now")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":sk", AttributeValue::S(APPROVAL_SK.to_owned()))
        .expression_attribute_values(":pending", AttributeValue::S(ApprovalStatus::Pending.as_str().to_owned()))
        .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            Error::StateStoreFailed(format!(
                "scanning {} for pending approvals: {}",
                store.table(),
                DisplayErrorContext(&e)
            ))
        })?;
        for item in page.items.unwrap_or_default() {
            let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok());
            let Some(id) = text("pk").and_then(|pk| pk.strip_prefix("APPROVAL#")) else { continue };
            let details = match text("details").map(|d| serde_json::from_str::<ApprovalDetails>(d)) {
                Some(Ok(details)) => details,
                _ => {
                    tracing::warn!(approval_id = %id, "skipping an approval with unreadable details");
                    continue;
                }
            };
            // A record without requestedAt counts as requested now: it is counted, never reminded early.
            let requested_at =
                item.get("requestedAt").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(now);
            let reminded = item.contains_key("reminderSentAt");
            waits.push(PendingWait { id: id.to_owned(), details, requested_at, reminded });
        }
    }
    waits.sort_by_key(|w| w.requested_at);
    Ok(waits)
}

/// Claims approval `id`'s reminder at `now`. `Ok(false)` when it was claimed before or the
/// approval is no longer pending (decided meanwhile): send nothing then.
pub async fn claim_reminder(store: &RunStore, id: &str, now: u64) -> Result<bool> {
    let written = store
        .dynamodb()
        .update_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(approval_pk(id)))
        .key("sk", AttributeValue::S(APPROVAL_SK.to_owned()))
        .update_expression("SET reminderSentAt = :now")
        .condition_expression("attribute_not_exists(reminderSentAt) AND #status = :pending")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
        .expression_attribute_values(":pending", AttributeValue::S(ApprovalStatus::Pending.as_str().to_owned()))
        .send()
        .await;
    match written {
        Ok(_) => Ok(true),
        Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
        Err(error) => Err(Error::StateStoreFailed(format!(
            "claiming the reminder of approval {id}: {}",
            DisplayErrorContext(&error)
        ))),
    }
}

/// Gives a claimed reminder back when its email could not be sent, so the next run retries it.
pub async fn release_reminder(store: &RunStore, id: &str) -> Result<()> {
    store
        .dynamodb()
        .update_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(approval_pk(id)))
        .key("sk", AttributeValue::S(APPROVAL_SK.to_owned()))
        .update_expression("REMOVE reminderSentAt")
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            Error::StateStoreFailed(format!("releasing the reminder of approval {id}: {}", DisplayErrorContext(&e)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectRef;

    fn wait(requested_at: u64, link_expires_at: u64, reminded: bool) -> PendingWait {
        PendingWait {
            id: "a".repeat(32),
            details: ApprovalDetails {
                run_id: "run-1".into(),
                wave_index: 0,
                wave_name: "canary".into(),
                dry_run: false,
                accounts: vec![],
                accounts_total: 0,
                regions: vec![],
                targets: 0,
                targets_failed: 0,
                instances: 0,
                patchable: 0,
                offline: 0,
                unmanaged: 0,
                analysis: None,
                manifest: ObjectRef { bucket: "b".into(), key: "k".into() },
                link_expires_at,
            },
            requested_at,
            reminded,
        }
    }

    #[test]
    fn the_reminder_is_due_once_from_halfway_until_the_links_expire() {
        let w = wait(1_000, 5_000, false);
        assert_eq!(w.reminder_due_at(), 3_000);
        assert!(!w.reminder_due(2_999));
        assert!(w.reminder_due(3_000));
        assert!(w.reminder_due(4_999));
        assert!(!w.reminder_due(5_000), "expired links are not re-sent");
        assert!(!wait(1_000, 5_000, true).reminder_due(4_000), "a claimed reminder is not due again");
    }

    #[test]
    fn the_summary_counts_and_ages_the_oldest_in_whole_minutes() {
        assert_eq!(summarize(&[], 10_000), PendingSummary { pending: 0, oldest_minutes: 0 });
        let waits = [wait(10_000 - 7_230, 20_000, false), wait(10_000 - 60, 20_000, true)];
        assert_eq!(summarize(&waits, 10_000), PendingSummary { pending: 2, oldest_minutes: 120 });
    }
}
