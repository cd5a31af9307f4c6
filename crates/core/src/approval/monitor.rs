//! What the scheduled approval monitor measures and when it reminds.
//!
//! Every five minutes the monitor reads the live pending approvals and emits `PendingApprovals`
//! (how many) and `OldestPendingApprovalMinutes` (how long the oldest has waited), so the
//! `ApprovalTimeout` alarm sees an approval left pending for hours, not only the moment its email
//! went out. Halfway through an approval's window it re-sends the email once: the reminder is
//! claimed by a conditional write (`reminderSentAt` absent, still pending), so overlapping or
//! retried invocations send it at most once.
//!
//! The live approvals are found through their index entries (see [`super::record`]): one Query of
//! the `APPROVALS#PENDING` partition for the entries whose links are still open (nothing else
//! when none is), then one BatchGetItem of their records, which say whether each is still
//! pending. Entries of approvals decided since are deleted on the way (one BatchWriteItem), so
//! the partition holds the open approvals and those decided within the last five minutes; the
//! expired ones stay out of the Query's range until their TTL removes them.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::error::display::DisplayErrorContext;

use super::ApprovalDetails;
use super::record::{APPROVAL_SK, ApprovalStatus, PENDING_INDEX_PK, approval_pk, pending_index_floor};
use crate::aws::AwsResultExt;
use crate::store::{RunStore, into_store_error, number_attr, s, text_attr};
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

/// The live pending approvals (not decided, links not expired at `now`), oldest first. Drops
/// the index entries of approvals found decided (or gone); failing to drop them only logs.
pub async fn pending_waits(store: &RunStore, now: u64) -> Result<Vec<PendingWait>> {
    let entries = open_index_entries(store, now).await?;
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<(String, String)> = entries.iter().map(|(id, _)| (approval_pk(id), APPROVAL_SK.to_owned())).collect();
    let records = store.get_items(&keys).await?;
    let mut waits = Vec::new();
    let mut live = std::collections::HashSet::new();
    for item in &records {
        let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok());
        let Some(id) = text("pk").and_then(|pk| pk.strip_prefix("APPROVAL#")) else { continue };
        let pending = text("status").map(String::as_str) == Some(ApprovalStatus::Pending.as_str());
        if !pending || number_attr::<u64>(item, "linkExpiresAt").is_none_or(|expiry| expiry <= now) {
            continue;
        }
        // Unreadable details keep the entry: the record is pending, only this monitor cannot use it.
        live.insert(id.to_owned());
        let details = match text("details").map(|d| serde_json::from_str::<ApprovalDetails>(d)) {
            Some(Ok(details)) => details,
            _ => {
                tracing::warn!(approval_id = %id, "skipping an approval with unreadable details");
                continue;
            }
        };
        // A record without requestedAt counts as requested now: it is counted, never reminded early.
        let requested_at = number_attr(item, "requestedAt").unwrap_or(now);
        let reminded = item.contains_key("reminderSentAt");
        waits.push(PendingWait { id: id.to_owned(), details, requested_at, reminded });
    }
    let settled: Vec<(String, String)> = entries
        .into_iter()
        .filter(|(id, _)| !live.contains(id))
        .map(|(_, sk)| (PENDING_INDEX_PK.to_owned(), sk))
        .collect();
    // Harmless when it fails: the next run finds them decided again and retries.
    if !settled.is_empty()
        && let Err(error) = store.delete_items(&settled).await
    {
        tracing::warn!(entries = settled.len(), %error, "cannot drop the index entries of decided approvals");
    }
    waits.sort_by_key(|w| w.requested_at);
    Ok(waits)
}

/// The index entries of approvals whose links are open at `now`: `(approval id, entry sk)`.
async fn open_index_entries(store: &RunStore, now: u64) -> Result<Vec<(String, String)>> {
    let mut entries = Vec::new();
    let mut items = store
        .dynamodb()
        .query()
        .table_name(store.table())
        .key_condition_expression("pk = :pk AND sk > :floor")
        .expression_attribute_values(":pk", s(PENDING_INDEX_PK))
        .expression_attribute_values(":floor", s(pending_index_floor(now)))
        .consistent_read(true)
        .into_paginator()
        .items()
        .send();
    while let Some(item) = items.next().await {
        let item = item
            .aws_context("Query", || format!("table {}, the pending approvals' index", store.table()))
            .map_err(into_store_error)?;
        let (id, sk) = (text_attr(&item, "approvalId"), text_attr(&item, "sk"));
        if !id.is_empty() && !sk.is_empty() {
            entries.push((id, sk));
        }
    }
    Ok(entries)
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
