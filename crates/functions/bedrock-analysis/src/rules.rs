//! The rule-based analysis: deterministic, and what the step returns (`source: "rules"`) when no
//! Bedrock agent is configured or the agent fails.
//!
//! # After a wave (`postWave`, from [`WaveOutcomes`])
//!
//! - *failure rate* = (`failed` + `timedOut`) / `attempted`, and 0 when `attempted` is 0.
//! - `issuesDetected` is true when any of these holds:
//!   1. the failure rate is above [`Thresholds::max_failure_rate`] (`EC2PATCH_MAX_FAILURE_RATE`, a
//!      fraction from 0 to 1, default 0: any failed or timed-out instance is an issue);
//!   2. `unhealthy` is above [`Thresholds::max_unhealthy`] (`EC2PATCH_MAX_UNHEALTHY`, default 0);
//!   3. [`Thresholds::unreachable_is_issue`] (`EC2PATCH_UNREACHABLE_IS_ISSUE`, default true) and
//!      `targetsFailed` > 0 or `unreachable` > 0.
//! - Never an issue, only reported: instances pending a reboot, skipped instances (not managed,
//!   agent offline), a wave that attempted nothing.
//! - `reasons`, in this order: one per rule that fired; the first 3 of `failures` as
//!   `account/region/instance: reason`; then notes (pending reboot, skipped, nothing attempted).
//!   At most 10 in all.
//!
//! # Before patching (`prePatch`, from [`WaveInventory`] and the plan's `dryRun`)
//!
//! - `issuesDetected` is true only when more than half the wave's targets could not be
//!   inventoried (`targetsFailed * 2 > targets`). This rule has no threshold.
//! - The summary states the counts (patchable, skipped as not managed / agent offline, targets
//!   not reachable) and whether the wave installs or only scans (dry run).
//! - `reasons` are the risks: the unreachable targets (count and the first 3, with their error),
//!   more than half of them unreachable, an unmanaged share above 20 % of the instances, an
//!   agent-offline share above 20 %, nothing to patch.
//!
//! Every text is plain, one line, and clipped to the limits of [`crate::Analysis`].

use ec2patch_core::wave::{WaveInventory, WaveOutcomes};
use ec2patch_core::{Error, Result};

use crate::{Analysis, MAX_REASONS, Source, WaveData};

/// Failed instances named in the reasons.
pub const FAILED_INSTANCES_NAMED: usize = 3;
/// Unreachable targets named in the pre-patch reasons.
pub const FAILED_TARGETS_NAMED: usize = 3;
/// Above this share of the wave's instances, unmanaged (or offline) instances are a noted risk.
pub const SKIPPED_SHARE_RISK: f64 = 0.2;

/// When a wave's results count as issues (hub environment, read by [`Thresholds::from_lookup`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Highest tolerated (failed + timed out) / attempted, 0 to 1 (`EC2PATCH_MAX_FAILURE_RATE`,
    /// default 0).
    pub max_failure_rate: f64,
    /// Highest tolerated number of unhealthy instances after patching (`EC2PATCH_MAX_UNHEALTHY`,
    /// default 0).
    pub max_unhealthy: usize,
    /// Whether targets that could not be reached make a wave's result an issue
    /// (`EC2PATCH_UNREACHABLE_IS_ISSUE`, `true` or `false`, default true).
    pub unreachable_is_issue: bool,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { max_failure_rate: 0.0, max_unhealthy: 0, unreachable_is_issue: true }
    }
}

impl Thresholds {
    /// Reads the thresholds through `lookup` (the environment, or a map in tests); an unset or
    /// blank variable takes its default, a malformed one is a [`Error::ConfigError`] naming it.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let defaults = Self::default();
        let max_failure_rate = match get("EC2PATCH_MAX_FAILURE_RATE") {
            None => defaults.max_failure_rate,
            Some(v) => match v.parse::<f64>() {
                Ok(rate) if (0.0..=1.0).contains(&rate) => rate,
                _ => {
                    return Err(Error::ConfigError(format!(
                        "EC2PATCH_MAX_FAILURE_RATE={v:?} is not a fraction from 0 to 1 (0.05 tolerates 5 % failed instances)"
                    )));
                }
            },
        };
        let max_unhealthy = match get("EC2PATCH_MAX_UNHEALTHY") {
            None => defaults.max_unhealthy,
            Some(v) => v.parse().map_err(|_| {
                Error::ConfigError(format!("EC2PATCH_MAX_UNHEALTHY={v:?} is not a non-negative integer"))
            })?,
        };
        let unreachable_is_issue = match get("EC2PATCH_UNREACHABLE_IS_ISSUE").as_deref() {
            None => defaults.unreachable_is_issue,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(Error::ConfigError(format!(
                    "EC2PATCH_UNREACHABLE_IS_ISSUE={other:?} is not true or false"
                )));
            }
        };
        Ok(Self { max_failure_rate, max_unhealthy, unreachable_is_issue })
    }
}

/// The rule-based analysis of either mode.
pub fn analyze(data: &WaveData, thresholds: &Thresholds) -> Analysis {
    match data {
        WaveData::PrePatch { inventory, dry_run } => pre_patch(inventory, *dry_run),
        WaveData::PostWave { outcomes } => post_wave(outcomes, thresholds),
    }
}

/// (failed + timed out) / attempted; 0 when nothing was attempted.
pub fn failure_rate(outcomes: &WaveOutcomes) -> f64 {
    if outcomes.attempted == 0 {
        0.0
    } else {
        (outcomes.failed + outcomes.timed_out) as f64 / outcomes.attempted as f64
    }
}

fn percent(fraction: f64) -> String {
    format!("{:.1} %", fraction * 100.0)
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// The analysis of a patched wave.
pub fn post_wave(outcomes: &WaveOutcomes, thresholds: &Thresholds) -> Analysis {
    let o = outcomes;
    let rate = failure_rate(o);
    let mut issues = Vec::new();
    if rate > thresholds.max_failure_rate {
        issues.push(format!(
            "failure rate {} ({} failed, {} timed out of {} attempted) is above the allowed {}",
            percent(rate),
            o.failed,
            o.timed_out,
            o.attempted,
            percent(thresholds.max_failure_rate)
        ));
    }
    // The wave's own error budget (the run input's maxFailedInstances/maxFailedPercent) is an
    // issue of its own, whatever the hub's thresholds say: it is how the run asked to be stopped.
    if let Some(budget) = o.error_budget.filter(|b| b.exceeded) {
        issues.push(format!(
            "ErrorBudgetExceeded: {} failed, more than the wave's budget of {}; {} not sent the patch command",
            plural(budget.failed, "instance", "instances"),
            budget.allowed,
            plural(budget.skipped, "instance was", "instances were")
        ));
    }
    if o.unhealthy > thresholds.max_unhealthy {
        issues.push(format!(
            "{} after patching (allowed {})",
            plural(o.unhealthy, "instance is unhealthy", "instances are unhealthy"),
            thresholds.max_unhealthy
        ));
    }
    if thresholds.unreachable_is_issue && (o.targets_failed > 0 || o.unreachable > 0) {
        issues.push(format!(
            "{} of {} account/region targets could not be reached ({} not patched)",
            o.targets_failed,
            o.targets,
            plural(o.unreachable, "instance", "instances")
        ));
    }

    let mut reasons = issues.clone();
    reasons.extend(o.failures.iter().take(FAILED_INSTANCES_NAMED).map(|f| {
        let why = if f.reason.trim().is_empty() { f.outcome.as_str() } else { f.reason.as_str() };
        format!("{}/{}/{}: {why}", f.account, f.region, f.instance_id)
    }));
    if o.pending_reboot > 0 {
        reasons.push(format!(
            "{} pending a reboot to finish patching (not an issue)",
            plural(o.pending_reboot, "instance is", "instances are")
        ));
    }
    if !thresholds.unreachable_is_issue && (o.targets_failed > 0 || o.unreachable > 0) {
        reasons.push(format!(
            "{} of {} targets could not be reached ({} not patched; not an issue by configuration)",
            o.targets_failed,
            o.targets,
            plural(o.unreachable, "instance", "instances")
        ));
    }
    let budget_skipped = o.error_budget.map_or(0, |b| b.skipped);
    if o.skipped > budget_skipped {
        reasons.push(format!(
            "{} skipped (not managed by SSM, agent offline, or busy in another run; not an issue)",
            plural(o.skipped - budget_skipped, "instance", "instances")
        ));
    }
    if o.attempted == 0 {
        reasons.push("no instance was sent the patch command in this wave".to_owned());
    }

    let done = if o.dry_run { "scanned" } else { "patched" };
    let mut summary = format!(
        "Wave \"{}\" (wave {}){}: {} of {} attempted instances {done}, {} failed, {} timed out; \
         {} unhealthy and {} pending a reboot afterwards; {} skipped; {} unreachable in {} of {} targets.",
        o.wave_name,
        o.wave_index + 1,
        if o.dry_run { ", a dry run (scan only, nothing installed)" } else { "" },
        o.patched,
        o.attempted,
        o.failed,
        o.timed_out,
        o.unhealthy,
        o.pending_reboot,
        o.skipped,
        o.unreachable,
        o.targets_failed,
        o.targets,
    );
    if issues.is_empty() {
        summary.push_str(" No issues detected by the rules.");
    } else {
        summary.push_str(&format!(" Issues detected: {}.", issues.join("; ")));
    }
    Analysis::new(Source::Rules, !issues.is_empty(), &summary, reasons)
}

/// The assessment of a wave before it is patched.
pub fn pre_patch(inventory: &WaveInventory, dry_run: bool) -> Analysis {
    let i = inventory;
    let issue = i.targets_failed * 2 > i.targets;
    let share = |count: usize| if i.instances == 0 { 0.0 } else { count as f64 / i.instances as f64 };

    let mut risks = Vec::new();
    if issue {
        risks.push(format!(
            "more than half the wave's targets ({} of {}) could not be inventoried",
            i.targets_failed, i.targets
        ));
    } else if i.targets_failed > 0 {
        risks.push(format!(
            "{} of {} account/region targets could not be inventoried and will not be patched",
            i.targets_failed, i.targets
        ));
    }
    risks.extend(
        i.failures
            .iter()
            .take(FAILED_TARGETS_NAMED)
            .map(|f| format!("{}/{} unreachable: {}: {}", f.account, f.region, f.error_type, f.message)),
    );
    if share(i.unmanaged) > SKIPPED_SHARE_RISK {
        risks.push(format!(
            "{} of {} instances ({}) are not managed by SSM and will not be patched",
            i.unmanaged,
            i.instances,
            percent(share(i.unmanaged))
        ));
    }
    if share(i.offline) > SKIPPED_SHARE_RISK {
        risks.push(format!(
            "{} of {} instances ({}) have the SSM agent offline and will not be patched",
            i.offline,
            i.instances,
            percent(share(i.offline))
        ));
    }
    if i.patchable == 0 {
        risks.push("no instance in this wave can be patched".to_owned());
    }

    let skipped = i.offline + i.unmanaged;
    let mut summary = format!(
        "Wave \"{}\" (wave {}) will {} {}; {} of {} skipped ({} not managed by SSM, {} with the SSM agent offline); \
         {} of {} account/region targets could not be inventoried.",
        i.wave_name,
        i.wave_index + 1,
        if dry_run { "scan, as a dry run that installs nothing," } else { "install patches on" },
        plural(i.patchable, "patchable instance", "patchable instances"),
        skipped,
        plural(i.instances, "instance", "instances"),
        i.unmanaged,
        i.offline,
        i.targets_failed,
        i.targets,
    );
    if risks.is_empty() {
        summary.push_str(" No risks found by the rules.");
    } else {
        let shown: Vec<&str> = risks.iter().filter(|r| !r.contains(" unreachable: ")).map(String::as_str).collect();
        summary.push_str(&format!(" Risks: {}.", shown.join("; ")));
    }
    if issue {
        summary.push_str(" Issues detected: most of the wave is unreachable.");
    }
    Analysis::new(Source::Rules, issue, &summary, risks.into_iter().take(MAX_REASONS).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_clipped_plain_text() {
        let outcomes = WaveOutcomes { wave_name: "w\n".repeat(2000), attempted: 1, ..WaveOutcomes::default() };
        let analysis = post_wave(&outcomes, &Thresholds::default());
        assert!(analysis.summary.chars().count() <= crate::MAX_SUMMARY_CHARS);
        assert!(!analysis.summary.contains('\n'));
        assert_eq!(crate::clean("a\n\tb  c", 10), "a b c");
    }
}
