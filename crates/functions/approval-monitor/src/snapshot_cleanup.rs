//! Deletes pre-patch snapshots whose retention has passed (see [`ec2patch_core::snapshots`]).
//!
//! Only targets with a due index item are visited (one Query when nothing is due), each as the
//! spoke role narrowed to DescribeSnapshots and DeleteSnapshot by a session policy. A snapshot
//! is deleted only when it carries the run's tag and an `ec2patch:delete-after` in the past: one
//! without that tag (an operator removed it to keep the snapshot) or created by anyone else is
//! never touched, and a later `delete-after` (an operator extended it) moves the target's index
//! item to that time. One target failing never stops the others; a transient failure is retried
//! on the next invocation, any other a day later.

use ec2patch_core::aws::AwsResultExt;
use ec2patch_core::snapshots::{self, DELETE_AFTER_TAG, IndexEntry};
use ec2patch_core::{Error, Hub, Result};
use serde::{Deserialize, Serialize};

/// A target whose cleanup failed for good (access denied, a snapshot an AMI uses) is tried
/// again this much later, not every five minutes.
const RETRY_AFTER_SECONDS: u64 = 86_400;

/// What one cleanup pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotCleanup {
    /// Snapshot ids deleted.
    pub deleted: Vec<String>,
    /// Snapshots of due targets kept: a later or no `ec2patch:delete-after`.
    pub kept: usize,
    /// Targets (account, region, run) that could not be cleaned, with why.
    pub failures: Vec<String>,
}

/// Cleans every target whose index item is due at `now`.
pub async fn delete_expired(hub: &Hub, now: u64) -> Result<SnapshotCleanup> {
    let mut cleanup = SnapshotCleanup::default();
    for entry in snapshots::due_entries(&hub.store, now).await? {
        let label = format!("account {} region {} run {}", entry.account, entry.region, entry.run_id);
        let next_due = match clean_target(hub, &entry, now, &mut cleanup).await {
            Ok(next_due) => next_due,
            Err(error) => {
                tracing::error!(target = label, %error, "cannot delete expired snapshots");
                cleanup.failures.push(format!("{label}: {error}"));
                if error.is_transient() {
                    continue;
                }
                Some(now + RETRY_AFTER_SECONDS)
            }
        };
        if let Some(delete_after) = next_due {
            hub.store.put_item(IndexEntry { delete_after, ..entry.clone() }.to_item()).await?;
        }
        hub.store.delete_item(snapshots::INDEX_PK, &entry.sk()).await?;
    }
    if !cleanup.deleted.is_empty() || !cleanup.failures.is_empty() {
        tracing::info!(
            deleted = cleanup.deleted.len(),
            kept = cleanup.kept,
            failures = cleanup.failures.len(),
            "expired pre-patch snapshots cleaned"
        );
    }
    Ok(cleanup)
}

/// Deletes the target's expired snapshots of the run; returns when the next of its kept ones
/// is due, if any.
async fn clean_target(hub: &Hub, entry: &IndexEntry, now: u64, cleanup: &mut SnapshotCleanup) -> Result<Option<u64>> {
    let context = format!("snapshots of run {} (account {} region {})", entry.run_id, entry.account, entry.region);
    let config = hub.snapshot_cleanup_spoke_sessions(&entry.run_id).config_for(&entry.account, &entry.region).await?;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let mut expired = Vec::new();
    let mut next_due: Option<u64> = None;
    for snapshot in snapshots::of_run(&ec2, &entry.run_id, &context).await? {
        let Some(id) = snapshot.snapshot_id() else { continue };
        match snapshots::tag_value(&snapshot, DELETE_AFTER_TAG).and_then(snapshots::parse_delete_after) {
            Some(due) if due <= now => expired.push(id.to_owned()),
            Some(due) => {
                cleanup.kept += 1;
                next_due = Some(next_due.map_or(due, |next| next.min(due)));
            }
            None => cleanup.kept += 1,
        }
    }
    for id in expired {
        match ec2
            .delete_snapshot()
            .snapshot_id(&id)
            .send()
            .await
            .aws_context("DeleteSnapshot", || format!("{id} of {context}"))
        {
            Ok(_) => {
                tracing::info!(snapshot_id = id, account = %entry.account, region = %entry.region, run_id = entry.run_id,
                    "expired pre-patch snapshot deleted");
                cleanup.deleted.push(id);
            }
            // Gone already (deleted by hand, or an earlier pass whose index update was lost).
            Err(Error::AwsCallFailed { code, .. }) if code == "InvalidSnapshot.NotFound" => {}
            Err(error) => return Err(error),
        }
    }
    Ok(next_due)
}
