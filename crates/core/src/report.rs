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
    pub totals: Totals,
    pub waves: Vec<WaveReport>,
}

/// Where the report went, plus its totals: what the execution output carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportWritten {
    pub json: ObjectRef,
    pub html: ObjectRef,
    pub status: String,
    pub totals: Totals,
}
