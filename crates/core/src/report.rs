//! The run report's model: what PostEC2Verify writes at the end of a run (also when it stops
//! early) and what the operator CLI reads back. Rendering and writing live in the verify
//! function; the CLI needs only these types and the keys.

use serde::{Deserialize, Serialize};

use crate::store::ObjectRef;
use crate::wave::WaveOutcomes;

/// The report's JSON in the artifacts bucket.
pub fn json_key(run_id: &str) -> String {
    format!("runs/{run_id}/report.json")
}

/// The report's HTML page (charts included) in the artifacts bucket.
pub fn html_key(run_id: &str) -> String {
    format!("runs/{run_id}/report.html")
}

/// Every instance of the run, one CSV row each ([`CSV_HEADER`]), in the artifacts bucket.
pub fn csv_key(run_id: &str) -> String {
    format!("runs/{run_id}/instances.csv")
}

/// The CSV's columns.
pub const CSV_HEADER: [&str; 10] = [
    "wave",
    "wave_name",
    "account",
    "region",
    "instance_id",
    "outcome",
    "reason",
    "command_id",
    "finished_at",
    // Space-separated: the instance's pre-patch snapshots (a `snapshot: true` wave).
    "snapshot_ids",
];

/// Who decided a wave's approval, when and from where (the approval record's audit fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveApproval {
    pub approval_id: String,
    /// `approved`, `rejected`, or `pending` (nobody decided: timed out or the run stopped).
    pub status: String,
    pub requested_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// The browser's address (emailed link) or `cli` (`ec2patch approve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl WaveApproval {
    /// One line: `approved by iam:arn:... at 2026-12-03T09:00:00Z from cli`.
    pub fn describe(&self) -> String {
        match (&self.decided_by, &self.decided_at) {
            (Some(by), Some(at)) => format!(
                "{} by {by} at {at}{}",
                self.status,
                self.source_ip.as_deref().map(|ip| format!(" from {ip}")).unwrap_or_default()
            ),
            _ => format!("{} since {}", self.status, self.requested_at),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub patched: usize,
    pub failed: usize,
    pub timed_out: usize,
    pub skipped: usize,
    pub unreachable: usize,
    pub unhealthy: usize,
    pub pending_reboot: usize,
    /// Patch compliance before and after, summed over the waves.
    #[serde(default)]
    pub compliance: crate::wave::Compliance,
}

impl Totals {
    /// Adds one wave's outcomes.
    pub fn add(&mut self, wave: &WaveOutcomes) {
        self.patched += wave.patched;
        self.failed += wave.failed;
        self.timed_out += wave.timed_out;
        self.skipped += wave.skipped;
        self.unreachable += wave.unreachable;
        self.unhealthy += wave.unhealthy;
        self.pending_reboot += wave.pending_reboot;
        self.compliance.add(&wave.compliance);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveReport {
    pub index: usize,
    pub name: String,
    /// `None` when the wave was not patched (skipped, aborted before it, or failed).
    pub outcomes: Option<WaveOutcomes>,
    /// Why the wave was not (fully) patched, from the run's failure records.
    pub problem: Option<String>,
    /// Every target (account x region) the hub could not inventory, with why: listed in full
    /// (the wave summary in the state machine carries ten at most).
    #[serde(default)]
    pub failed_targets: Vec<crate::wave::TargetFailure>,
    /// The wave's approval (`None`: a dry run, which asks nobody, or a wave never reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<WaveApproval>,
    /// Accounts by where they came from (`accounts`, or an OU), when the wave named OUs.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub accounts_from: std::collections::BTreeMap<String, usize>,
    /// Accounts under the wave's OUs that it did not patch, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<crate::plan::LeftOutAccount>,
    /// Every FAILED and TIMED_OUT instance of the wave with its reason, in full (the wave summary
    /// the state machine carries keeps ten).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_instances: Vec<crate::wave::InstanceFailure>,
    /// Skipped instances by reason (`not managed by SSM`: 12).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub skipped_by_reason: std::collections::BTreeMap<String, usize>,
    /// When the wave's inventory started, and when its last instance got its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
    /// A `snapshot: true` wave's pre-patch snapshots (`None` for other waves and dry runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<SnapshotCount>,
}

/// Pre-patch snapshots a wave took: instances protected, and snapshots (one per EBS volume).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotCount {
    pub instances: usize,
    pub snapshots: usize,
}

/// What the run was asked to do, in a line a person reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputSummary {
    pub waves: usize,
    /// Account x region targets, after the OUs were resolved.
    pub targets: usize,
    /// `PatchGroup=default`, ...
    pub tag_filters: Vec<String>,
    /// Every OU the waves named (resolved into accounts by PlanRun).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizational_units: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub run_id: String,
    pub generated_at: String,
    pub dry_run: bool,
    /// `completed` or `stopped`.
    pub status: String,
    pub stopped_because: Option<String>,
    /// What the run was asked to do.
    #[serde(default)]
    pub input: InputSummary,
    pub totals: Totals,
    pub waves: Vec<WaveReport>,
    /// Every instance, one row each: `runs/<run>/instances.csv` ([`csv_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances_csv: Option<ObjectRef>,
}

/// Where the report went, plus its totals: what the execution output carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportWritten {
    pub json: ObjectRef,
    pub html: ObjectRef,
    pub status: String,
    pub totals: Totals,
    /// Why a stopped run stopped, as the report says it (`null` for a completed run): the stop
    /// notice quotes it.
    pub stopped_because: Option<String>,
}

/// A failure record's `errorType` and `cause` as a person reads them: `ChangeFreeze: change
/// freeze: ...`, not the state machine's JSON. The cause is the whole Step Functions error
/// (`{"Error": .., "Cause": ..}`), whose `Cause` is, for a Lambda error, itself JSON with an
/// `errorMessage`; anything else is shown as it is.
pub fn human_problem(error_type: &str, cause: &str) -> String {
    fn message(value: &serde_json::Value) -> Option<String> {
        match value {
            serde_json::Value::String(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(inner @ serde_json::Value::Object(_)) => message(&inner),
                _ => Some(text.clone()),
            },
            serde_json::Value::Object(object) => {
                ["errorMessage", "Cause"].iter().find_map(|key| object.get(*key).and_then(message))
            }
            _ => None,
        }
    }
    let detail = match serde_json::from_str::<serde_json::Value>(cause) {
        Ok(value @ serde_json::Value::Object(_)) => message(&value),
        _ => Some(cause.to_owned()).filter(|c| !c.trim().is_empty()),
    };
    match detail.filter(|d| !d.trim().is_empty()) {
        Some(detail) => format!("{error_type}: {detail}"),
        None => error_type.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_read_as_the_error_and_its_message() {
        let lambda = r#"{"Error":"ChangeFreeze","Cause":"{\"errorType\":\"ChangeFreeze\",\"errorMessage\":\"change freeze: PatchFreeze CLOSED: opens at 2026-12-25T00:00:00Z\"}"}"#;
        assert_eq!(
            human_problem("ChangeFreeze", lambda),
            "ChangeFreeze: change freeze: PatchFreeze CLOSED: opens at 2026-12-25T00:00:00Z"
        );
        let plain = r#"{"Error":"ApprovalRejected","Cause":"rejected by ops@example.com"}"#;
        assert_eq!(human_problem("ApprovalRejected", plain), "ApprovalRejected: rejected by ops@example.com");
        // A timeout has no cause at all.
        assert_eq!(human_problem("States.Timeout", r#"{"Error":"States.Timeout","Cause":null}"#), "States.Timeout");
        assert_eq!(human_problem("X", "not json"), "X: not json");
    }
}
