//! What a wave's inventory reports to the state machine and to the approval step.

use serde::{Deserialize, Serialize};

use crate::plan::TagFilter;
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
    /// Batches of targets with patchable instances (`store::batch_key`): the patch step's Map
    /// runs once per batch.
    pub batches: usize,
    /// `0..batches`, the patch Map's items (a list of small numbers: targets / batch size).
    pub batch_indexes: Vec<usize>,
}

/// How a wave's instances ended: the input of the post-wave analysis and of the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveOutcomes {
    pub run_id: String,
    pub wave_index: usize,
    pub wave_name: String,
    pub dry_run: bool,
    /// Instances AWS-RunPatchBaseline was sent to.
    pub attempted: usize,
    pub patched: usize,
    pub failed: usize,
    pub timed_out: usize,
    /// Not patched by design: not SSM-managed, agent offline.
    pub skipped: usize,
    /// In targets whose role could not be assumed or whose calls failed.
    pub unreachable: usize,
    /// Patched, but failing EC2 status checks or no longer online in SSM afterwards.
    pub unhealthy: usize,
    pub pending_reboot: usize,
    pub targets: usize,
    pub targets_failed: usize,
    /// Up to ten failed instances with their reasons, for the analysis and the email.
    pub failures: Vec<InstanceFailure>,
    /// The wave's error budget and how much of it was used (`None`: no budget set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_budget: Option<crate::error_budget::BudgetUse>,
    /// Patch compliance of the wave's patchable instances before (inventory) and after
    /// (verification), from SSM's DescribeInstancePatchStates.
    #[serde(default)]
    pub compliance: Compliance,
}

/// Instances missing (or failing) patches, and how many patches, before and after a wave.
/// "Known" counts the instances SSM reported a patch state for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compliance {
    pub known_before: usize,
    pub non_compliant_before: usize,
    pub missing_patches_before: usize,
    pub known_after: usize,
    pub non_compliant_after: usize,
    pub missing_patches_after: usize,
}

impl Compliance {
    pub fn add(&mut self, other: &Compliance) {
        self.known_before += other.known_before;
        self.non_compliant_before += other.non_compliant_before;
        self.missing_patches_before += other.missing_patches_before;
        self.known_after += other.known_after;
        self.non_compliant_after += other.non_compliant_after;
        self.missing_patches_after += other.missing_patches_after;
    }

    /// `4 instances missing 12 patches before, 0 missing 0 after`.
    pub fn describe(&self) -> String {
        format!(
            "{} of {} instances missing {} patches before, {} of {} missing {} after",
            self.non_compliant_before,
            self.known_before,
            self.missing_patches_before,
            self.non_compliant_after,
            self.known_after,
            self.missing_patches_after
        )
    }
}

/// An instance's patch state as SSM reports it (DescribeInstancePatchStates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchCounts {
    pub missing: i32,
    pub failed: i32,
    pub installed: i32,
    pub installed_pending_reboot: i32,
}

impl PatchCounts {
    /// Missing or failed patches: not compliant with its baseline.
    pub fn non_compliant(&self) -> bool {
        self.missing > 0 || self.failed > 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceFailure {
    pub account: String,
    pub region: String,
    pub instance_id: String,
    pub outcome: String,
    pub reason: String,
}

/// SSM's view of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum SsmStatus {
    /// Managed and its agent is online: patchable.
    Online,
    /// Registered with SSM but its agent is not online (`ConnectionLost`, `Inactive`).
    Offline { ping_status: String },
    /// Not registered with SSM (no agent, no instance profile, no route to SSM).
    NotManaged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredInstance {
    pub instance_id: String,
    pub name: Option<String>,
    pub platform: String,
    pub instance_type: Option<String>,
    pub availability_zone: Option<String>,
    pub ssm: SsmStatus,
    /// Its patch state at inventory (SSM-managed, online instances; `None`: SSM reported none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_state: Option<PatchCounts>,
}

impl DiscoveredInstance {
    pub fn is_patchable(&self) -> bool {
        self.ssm == SsmStatus::Online
    }

    /// Why the instance will not be patched, if it will not.
    pub fn skip_reason(&self) -> Option<String> {
        match &self.ssm {
            SsmStatus::Online => None,
            SsmStatus::Offline { ping_status } => Some(format!("SSM agent is {ping_status}")),
            SsmStatus::NotManaged => Some("not managed by SSM".to_owned()),
        }
    }
}

/// One target in the manifest: its instances, or why it could not be inventoried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetManifest {
    pub account: String,
    pub region: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<TargetFailure>,
    pub instances: Vec<DiscoveredInstance>,
    /// How many groups its instance records are kept in ([`crate::instance_records`]), fixed at
    /// inventory from all its instances (a batch keeps the patchable ones only).
    #[serde(default = "one_part")]
    pub record_parts: u32,
}

fn one_part() -> u32 {
    1
}

impl TargetManifest {
    /// Where its instances' records live (`None`: a malformed account id).
    pub fn records(&self, wave_index: usize) -> Option<crate::instance_records::TargetRecords> {
        Some(crate::instance_records::TargetRecords {
            wave_index,
            account: crate::plan::AccountId::parse(&self.account)?,
            region: crate::plan::Region::new_unchecked(self.region.clone()),
            parts: self.record_parts,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveManifest {
    pub run_id: String,
    pub wave_index: usize,
    pub wave_name: String,
    pub tag_filters: Vec<TagFilter>,
    pub targets: Vec<TargetManifest>,
}

/// The patchable part of a wave, split for the patch step's Map: one batch per iteration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchManifest {
    pub run_id: String,
    pub wave_index: usize,
    pub batch: usize,
    /// Targets with their patchable instances only.
    pub targets: Vec<TargetManifest>,
}
