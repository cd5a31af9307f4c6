//! What a wave's inventory reports to the state machine and to the approval step.

use serde::{Deserialize, Serialize};

use crate::store::ObjectRef;

/// At most this many failed targets are listed in the summary; the manifest has all of them.
pub const MAX_FAILURES_IN_SUMMARY: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetFailure {
    pub account: String,
    pub region: String,
    pub error_type: String,
    pub message: String,
}

/// What the state machine gets back: counts and a pointer, bounded in size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveInventory {
    pub run_id: String,
    pub wave_index: usize,
    pub wave_name: String,
    pub targets: usize,
    pub targets_failed: usize,
    pub instances: usize,
    pub patchable: usize,
    pub offline: usize,
    pub unmanaged: usize,
    /// The first [`MAX_FAILURES_IN_SUMMARY`] failed targets.
    pub failures: Vec<TargetFailure>,
    pub failures_omitted: usize,
    pub manifest: ObjectRef,
}
