//! ApprovalMonitor: run by EventBridge every five minutes (terraform/modules/hub/approval_monitor.tf).
//!
//! Emits `PendingApprovals` and `OldestPendingApprovalMinutes` (EMF, no dimensions) from the
//! approval records, which the `ApprovalTimeout` alarm watches, and re-sends each approval's email
//! once, marked as a reminder, halfway through its window (see ec2patch_core::approval::monitor).
//! One approval whose reminder fails does not stop the others' reminders or the metrics.
//!
//! It is also the hub's scheduled housekeeping: each run deletes the pre-patch snapshots whose
//! retention has passed ([`snapshot_cleanup`]), after the approval work, so a spoke that cannot
//! be reached never delays an approval's metric or reminder.

use ec2patch_core::approval::monitor::{
    self, OLDEST_PENDING_METRIC, PENDING_COUNT_METRIC, PendingSummary, PendingWait,
};
use ec2patch_core::approval::{Action, SigningKey, email};
use ec2patch_core::aws::AwsResultExt;
use ec2patch_core::metrics::{self, Metric};
use ec2patch_core::time::now_epoch_seconds;
use ec2patch_core::{Error, Hub, Result};
use serde::{Deserialize, Serialize};

pub mod snapshot_cleanup;

/// What one invocation measured and did (the scheduled event ignores it; tests and logs read it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorReport {
    pub pending_approvals: usize,
    pub oldest_pending_approval_minutes: u64,
    /// Approvals reminded by this invocation.
    pub reminders_sent: Vec<String>,
    /// Approvals whose due reminder could not be sent, with why (retried next time).
    pub reminder_failures: Vec<String>,
    /// Expired pre-patch snapshots deleted (and kept, and targets that failed).
    #[serde(default)]
    pub snapshots: snapshot_cleanup::SnapshotCleanup,
}

/// What the function needs beyond the hub: the link signing key and SNS.
#[derive(Debug)]
pub struct Deps {
    pub key: SigningKey,
    pub sns: aws_sdk_sns::Client,
}

impl Deps {
    pub async fn load(hub: &Hub) -> Result<Self> {
        Ok(Self { key: hub.load_signing_key().await?, sns: aws_sdk_sns::Client::new(&hub.sdk) })
    }
}

/// `event` is EventBridge's scheduled event; nothing in it is needed.
pub async fn handle(hub: &Hub, deps: &Deps, _event: serde_json::Value) -> Result<MonitorReport> {
    let now = now_epoch_seconds();
    let waits = monitor::pending_waits(&hub.store, now).await?;
    let PendingSummary { pending, oldest_minutes } = monitor::summarize(&waits, now);
    // Emitted before the reminders: a failing SNS must not hide a stuck approval from the alarm.
    metrics::emit(None, &metrics_of(pending, oldest_minutes));
    let mut report = MonitorReport {
        pending_approvals: pending,
        oldest_pending_approval_minutes: oldest_minutes,
        reminders_sent: Vec::new(),
        reminder_failures: Vec::new(),
        snapshots: snapshot_cleanup::SnapshotCleanup::default(),
    };
    for wait in waits.iter().filter(|w| w.reminder_due(now)) {
        match remind(hub, deps, wait, now).await {
            Ok(true) => report.reminders_sent.push(wait.id.clone()),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(approval_id = %wait.id, %error, "cannot send the approval reminder");
                report.reminder_failures.push(format!("{}: {error}", wait.id));
            }
        }
    }
    tracing::info!(pending, oldest_minutes, reminders = report.reminders_sent.len(), "approvals monitored");
    report.snapshots = snapshot_cleanup::delete_expired(hub, now).await?;
    Ok(report)
}

/// The metrics one invocation emits: what the alarm and the dashboard read.
pub fn metrics_of(pending: usize, oldest_minutes: u64) -> [Metric; 2] {
    [
        Metric::count(PENDING_COUNT_METRIC, pending),
        // CloudWatch has no minutes unit; the name carries it.
        Metric { name: OLDEST_PENDING_METRIC, value: oldest_minutes as f64, unit: "None" },
    ]
}

/// Claims and sends `wait`'s reminder; `Ok(false)` when another invocation claimed it first or the
/// approval was decided meanwhile.
async fn remind(hub: &Hub, deps: &Deps, wait: &PendingWait, now: u64) -> Result<bool> {
    let base_url = hub
        .config
        .callback_base_url
        .as_deref()
        .ok_or_else(|| Error::ConfigError("EC2PATCH_CALLBACK_BASE_URL is not set".to_owned()))?;
    // The email goes where the request went: the run's topic.
    let plan = hub.store.load_plan(&wait.details.run_id).await?;
    let topic = plan
        .sns_topic_arn
        .ok_or_else(|| Error::ConfigError(format!("run {} has no SNS topic for the reminder", wait.details.run_id)))?;
    if !monitor::claim_reminder(&hub.store, &wait.id, now).await? {
        return Ok(false);
    }
    let expires = wait.details.link_expires_at;
    let approve = deps.key.link(base_url, &wait.id, Action::Approve, expires);
    let reject = deps.key.link(base_url, &wait.id, Action::Reject, expires);
    let published = deps
        .sns
        .publish()
        .topic_arn(&topic)
        .subject(email::reminder_subject(&wait.details))
        .message(email::reminder_text(&wait.details, &approve, &reject))
        .send()
        .await
        .aws_context("Publish", || format!("topic {topic}, reminder of approval {}", wait.id));
    if let Err(error) = published {
        // Unclaimed, the next invocation (five minutes later) tries again.
        if let Err(release) = monitor::release_reminder(&hub.store, &wait.id).await {
            tracing::warn!(approval_id = %wait.id, %release, "the failed reminder stays claimed");
        }
        return Err(error);
    }
    tracing::info!(approval_id = %wait.id, run_id = %wait.details.run_id, "approval reminder sent");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emitted_document_carries_both_figures_without_dimensions() {
        let doc = metrics::document("EC2Patch/x", None, &metrics_of(2, 125), 0);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Dimensions"], serde_json::json!([[]]));
        assert_eq!(doc[PENDING_COUNT_METRIC], 2.0);
        assert_eq!(doc[OLDEST_PENDING_METRIC], 125.0);
    }
}
