//! Error budgets: once a wave's recorded failures exceed its budget, no further batch of that
//! wave sends a patch command.
//!
//! The budget is `maxFailedInstances` and/or `maxFailedPercent` (of the wave's patchable
//! instances) in the run input, defaulting to the hub's (`EC2PATCH_MAX_FAILED_INSTANCES`,
//! `EC2PATCH_MAX_FAILED_PERCENT`); with both, the smaller allowance holds. Failures are the
//! instances PostEC2Verify records `FAILED` or `TIMED_OUT`.
//!
//! - PostEC2Verify writes each verified batch's failure count on the wave's record
//!   (`batchFailures.<batch>`: a set, not an increment, so a retried verification counts once).
//! - SendSsmCommand reads that record before sending; when the sum exceeds the allowance, it
//!   sends nothing and records the batch's instances `SKIPPED` with `ErrorBudgetExceeded ...`.
//!   Batches already running finish and are verified.
//! - The wave summary says whether the budget was exceeded ([`BudgetUse`]); the analysis counts it
//!   as an issue, so `abortOnIssues` decides about later waves.
//!
//! A budget stops batches that start after the failures are known: with every batch at once
//! there is nothing to stop. `maxConcurrentBatches` bounds how many batches run at once.

use serde::{Deserialize, Serialize};

/// The prefix of the reason of an instance a budget kept from being patched.
pub const SKIP_REASON_PREFIX: &str = "ErrorBudgetExceeded";
/// The wave record's map of failures per verified batch.
pub const BATCH_FAILURES_ATTRIBUTE: &str = "batchFailures";

/// A wave's error budget (none set: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBudget {
    pub max_failed_instances: Option<u32>,
    /// Percent (0-100) of the wave's patchable instances.
    pub max_failed_percent: Option<u8>,
}

impl ErrorBudget {
    pub fn is_set(&self) -> bool {
        self.max_failed_instances.is_some() || self.max_failed_percent.is_some()
    }

    /// Failures a wave of `patchable` instances may have; `None`: unlimited.
    pub fn allowed(&self, patchable: usize) -> Option<usize> {
        let by_count = self.max_failed_instances.map(|n| n as usize);
        let by_percent = self.max_failed_percent.map(|p| patchable * usize::from(p) / 100);
        match (by_count, by_percent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What the budget is, for reasons and reports (`maxFailedInstances 1, maxFailedPercent 5`).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.max_failed_instances {
            parts.push(format!("maxFailedInstances {n}"));
        }
        if let Some(p) = self.max_failed_percent {
            parts.push(format!("maxFailedPercent {p}"));
        }
        if parts.is_empty() { "no budget".to_owned() } else { parts.join(", ") }
    }

    /// The budget's state for a wave with `failed` recorded failures; `None` when no budget is set.
    pub fn use_of(&self, failed: usize, patchable: usize) -> Option<BudgetUse> {
        let allowed = self.allowed(patchable)?;
        Some(BudgetUse { allowed, failed, exceeded: failed > allowed, skipped: 0 })
    }
}

/// How much of its budget a wave used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetUse {
    /// Failures the wave may have.
    pub allowed: usize,
    /// Failures recorded (`FAILED` and `TIMED_OUT`).
    pub failed: usize,
    pub exceeded: bool,
    /// Instances recorded `SKIPPED` because the budget was exceeded before their batch started.
    pub skipped: usize,
}

impl BudgetUse {
    /// The reason on each instance a budget kept from being patched, and in the analysis.
    pub fn reason(&self, budget: &ErrorBudget) -> String {
        format!(
            "{SKIP_REASON_PREFIX}: {} instance(s) of this wave failed, more than its budget of {} ({})",
            self.failed,
            self.allowed,
            budget.describe()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_allowance_holds_and_none_means_unlimited() {
        assert_eq!(ErrorBudget::default().allowed(1000), None);
        assert!(!ErrorBudget::default().is_set());
        let count = ErrorBudget { max_failed_instances: Some(3), max_failed_percent: None };
        assert_eq!(count.allowed(1000), Some(3));
        let percent = ErrorBudget { max_failed_instances: None, max_failed_percent: Some(5) };
        assert_eq!(percent.allowed(1000), Some(50));
        assert_eq!(percent.allowed(19), Some(0), "5 % of 19 rounds down: no failure allowed");
        let both = ErrorBudget { max_failed_instances: Some(3), max_failed_percent: Some(5) };
        assert_eq!(both.allowed(1000), Some(3));
        assert_eq!(both.allowed(20), Some(1));
    }

    #[test]
    fn exceeded_means_more_failures_than_allowed() {
        let budget = ErrorBudget { max_failed_instances: Some(1), max_failed_percent: None };
        assert!(!budget.use_of(1, 8).unwrap().exceeded, "exactly the budget is within it");
        let used = budget.use_of(2, 8).unwrap();
        assert!(used.exceeded);
        assert_eq!(
            used.reason(&budget),
            "ErrorBudgetExceeded: 2 instance(s) of this wave failed, more than its budget of 1 (maxFailedInstances 1)"
        );
        assert_eq!(ErrorBudget::default().use_of(5, 8), None);
    }
}
