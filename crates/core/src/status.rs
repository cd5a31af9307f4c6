//! Statuses the run records carry, as the items store them (`outcome` on instance items,
//! `status` on target and wave items). The approval status lives with the approval record
//! ([`crate::approval::ApprovalStatus`]), the lock status with the run lock
//! ([`crate::run_lock::LockStatus`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An instance's outcome (`outcome` on its `INSTANCE#` item).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceOutcome {
    /// Inventoried as patchable; no final outcome yet.
    Pending,
    Patched,
    /// A dry run's Scan completed (nothing installed).
    Scanned,
    Failed,
    TimedOut,
    /// Not patched by design: not SSM-managed, agent offline.
    Skipped,
    /// Its account could not be reached to patch or verify it.
    Unreachable,
}

impl InstanceOutcome {
    pub const ALL: [InstanceOutcome; 7] = [
        InstanceOutcome::Pending,
        InstanceOutcome::Patched,
        InstanceOutcome::Scanned,
        InstanceOutcome::Failed,
        InstanceOutcome::TimedOut,
        InstanceOutcome::Skipped,
        InstanceOutcome::Unreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InstanceOutcome::Pending => "PENDING",
            InstanceOutcome::Patched => "PATCHED",
            InstanceOutcome::Scanned => "SCANNED",
            InstanceOutcome::Failed => "FAILED",
            InstanceOutcome::TimedOut => "TIMED_OUT",
            InstanceOutcome::Skipped => "SKIPPED",
            InstanceOutcome::Unreachable => "UNREACHABLE",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|outcome| outcome.as_str() == value)
    }

    /// Anything but [`InstanceOutcome::Pending`].
    pub fn is_final(self) -> bool {
        self != InstanceOutcome::Pending
    }

    /// Patched, or (dry run) scanned: counted as patched in the wave's outcomes.
    pub fn is_patched(self) -> bool {
        matches!(self, InstanceOutcome::Patched | InstanceOutcome::Scanned)
    }

    /// AWS-RunPatchBaseline ran (or was meant to run) on the instance.
    pub fn was_attempted(self) -> bool {
        matches!(
            self,
            InstanceOutcome::Patched | InstanceOutcome::Scanned | InstanceOutcome::Failed | InstanceOutcome::TimedOut
        )
    }

    /// Listed among a wave's failures (for the analysis and the email).
    pub fn is_failure(self) -> bool {
        matches!(self, InstanceOutcome::Failed | InstanceOutcome::TimedOut | InstanceOutcome::Unreachable)
    }
}

impl fmt::Display for InstanceOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a target (or a wave) was inventoried (`status` on its `TARGET#`/`WAVE#` item).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InventoryStatus {
    Inventoried,
    /// The target could not be inventoried (`errorType` and `error` say why).
    Failed,
}

impl InventoryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InventoryStatus::Inventoried => "INVENTORIED",
            InventoryStatus::Failed => "FAILED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [InventoryStatus::Inventoried, InventoryStatus::Failed].into_iter().find(|status| status.as_str() == value)
    }
}

impl fmt::Display for InventoryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_what_they_write_and_serialize_the_same() {
        for outcome in InstanceOutcome::ALL {
            assert_eq!(InstanceOutcome::parse(outcome.as_str()), Some(outcome));
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.as_str());
        }
        for status in [InventoryStatus::Inventoried, InventoryStatus::Failed] {
            assert_eq!(InventoryStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(InstanceOutcome::parse("patched"), None, "stored upper case only");
    }

    #[test]
    fn outcome_classes() {
        let attempted: Vec<_> = InstanceOutcome::ALL.into_iter().filter(|o| o.was_attempted()).collect();
        assert_eq!(
            attempted,
            [InstanceOutcome::Patched, InstanceOutcome::Scanned, InstanceOutcome::Failed, InstanceOutcome::TimedOut]
        );
        let failures: Vec<_> = InstanceOutcome::ALL.into_iter().filter(|o| o.is_failure()).collect();
        assert_eq!(failures, [InstanceOutcome::Failed, InstanceOutcome::TimedOut, InstanceOutcome::Unreachable]);
        assert!(!InstanceOutcome::Pending.is_final() && InstanceOutcome::Skipped.is_final());
    }
}
