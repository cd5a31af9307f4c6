//! Wave gates: a scheduled wave patches only after the wave it follows passed its latest run.
//!
//! A wave may name the wave it follows (`after`, Terraform's `wave_rules[*].after`) and a window
//! (`gateWindowHours`, default one week). Its run then looks, before inventory, at the latest
//! run of the named wave that ended within the window, and patches only if that wave passed.
//! Otherwise the wave fails with `WaveGateClosed` (which stops the run whatever `abortOnIssues`
//! says), naming the predecessor's run and what it found.
//!
//! - Every run that is not a dry run records, when its report is written, one
//!   `WAVERUN#<wave name>` item per wave, sorted by end time: the gate reads the newest with one
//!   Query (`Limit 1`, newest first), never a Scan.
//! - A wave passed when it was summarised (it ran to its end), nothing stopped it, and its failed
//!   and timed-out instances stayed within its error budget (without a budget: none failed).
//! - Waves of a run are recorded by name, whoever started the run: a manual run of `canary` counts
//!   as a canary run. Dry runs patch nothing, so they neither open a gate nor are held by one.
//! - `ignoreGates: true` (with `startedBy`) lets a manual run through; the wave record keeps what
//!   the gate found and who overrode it.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::aws::AwsResultExt;
use crate::store::{Item, RunStore, into_store_error, n, number_attr, s, text_attr};
use crate::time::format_epoch;
use crate::wave::WaveOutcomes;
use crate::{Error, Result};

/// The window a gate looks back over unless the wave names one: one week.
pub const DEFAULT_WINDOW_HOURS: u32 = 168;
/// The longest window: 366 days (a yearly cycle).
pub const MAX_WINDOW_HOURS: u32 = 8_784;
/// Wave-run records outlive the longest window, whatever the hub's record TTL.
const RECORD_LIFETIME_SECONDS: u64 = MAX_WINDOW_HOURS as u64 * 3600 + 86_400;

/// What a wave's gate requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveGate {
    /// The wave whose latest run must have passed.
    pub after: String,
    pub window_hours: u32,
}

/// How one wave of a finished run ended, as the next wave's gate reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveRun {
    pub wave_name: String,
    pub run_id: String,
    pub wave_index: usize,
    pub ended_at: u64,
    pub passed: bool,
    /// What the wave found, in a sentence ("3 patched, 0 failed").
    pub summary: String,
}

/// The DynamoDB key of a wave's run records.
pub fn wave_run_pk(wave_name: &str) -> String {
    format!("WAVERUN#{wave_name}")
}

/// Sort key: end time first (zero-padded seconds), so the newest sorts last.
fn wave_run_sk(ended_at: u64, run_id: &str) -> String {
    format!("{ended_at:012}#{run_id}")
}

/// Whether a summarised (or stopped) wave passed, and what it found. `problem` is why the wave
/// stopped or failed, if it did; the budget is the one its summary measured against
/// (`WaveOutcomes::error_budget`, present whenever the run set one).
pub fn verdict(outcomes: Option<&WaveOutcomes>, problem: Option<&str>) -> (bool, String) {
    let Some(outcomes) = outcomes else {
        let why = problem.unwrap_or("the run stopped before this wave");
        return (false, format!("did not run to its end: {why}"));
    };
    let failed = outcomes.failed + outcomes.timed_out;
    let allowed = outcomes.error_budget.map(|used| used.allowed);
    let found = format!(
        "{} patched, {} failed, {} timed out, {} skipped, {} unreachable",
        outcomes.patched, outcomes.failed, outcomes.timed_out, outcomes.skipped, outcomes.unreachable
    );
    if let Some(problem) = problem {
        return (false, format!("{found}; stopped: {problem}"));
    }
    match allowed {
        Some(allowed) if failed > allowed => {
            (false, format!("{found}: {failed} failure(s), more than its error budget of {allowed}"))
        }
        None if failed > 0 => (false, format!("{found}: {failed} failure(s) and no error budget allows any")),
        _ => (true, found),
    }
}

/// Records how each wave of a finished run ended (one item per wave, written together).
pub async fn record(store: &RunStore, runs: &[WaveRun]) -> Result<()> {
    let expires_at = crate::time::now_epoch_seconds() + RECORD_LIFETIME_SECONDS;
    let items: Vec<Item> = runs
        .iter()
        .map(|run| {
            [
                ("pk", s(wave_run_pk(&run.wave_name))),
                ("sk", s(wave_run_sk(run.ended_at, &run.run_id))),
                ("runId", s(run.run_id.clone())),
                ("wave", n(run.wave_index)),
                ("endedAt", n(run.ended_at)),
                ("passed", AttributeValue::Bool(run.passed)),
                ("summary", s(run.summary.clone())),
                ("expiresAt", n(expires_at)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
        })
        .collect();
    store.put_items(items).await
}

/// The newest recorded run of `wave_name` that ended at or after `since` (one Query).
pub async fn latest_run(store: &RunStore, wave_name: &str, since: u64) -> Result<Option<WaveRun>> {
    let pk = wave_run_pk(wave_name);
    let output = store
        .dynamodb()
        .query()
        .table_name(store.table())
        .key_condition_expression("pk = :pk AND sk >= :since")
        .expression_attribute_values(":pk", s(pk.clone()))
        .expression_attribute_values(":since", s(format!("{since:012}")))
        .scan_index_forward(false)
        .limit(1)
        .send()
        .await
        .aws_context("Query", || format!("table {} pk {pk}", store.table()))
        .map_err(into_store_error)?;
    let Some(item) = output.items.unwrap_or_default().into_iter().next() else { return Ok(None) };
    Ok(Some(WaveRun {
        wave_name: wave_name.to_owned(),
        run_id: text_attr(&item, "runId"),
        wave_index: number_attr(&item, "wave").unwrap_or_default(),
        ended_at: number_attr(&item, "endedAt").unwrap_or_default(),
        passed: item.get("passed").and_then(|v| v.as_bool().ok()) == Some(&true),
        summary: text_attr(&item, "summary"),
    }))
}

/// The gate's decision on the predecessor's latest run within the window: `Ok` with what it
/// found, or `WaveGateClosed` naming the run (or its absence).
pub fn decide(wave_name: &str, gate: &WaveGate, latest: Option<&WaveRun>) -> Result<String> {
    let closed =
        |reason: String| Error::WaveGateClosed { wave: wave_name.to_owned(), after: gate.after.clone(), reason };
    match latest {
        None => Err(closed(format!(
            "no run of wave {} ended in the last {} hours (gateWindowHours)",
            gate.after, gate.window_hours
        ))),
        Some(run) if !run.passed => Err(closed(format!(
            "its latest run {} (ended {}) did not pass: {}",
            run.run_id,
            format_epoch(run.ended_at),
            run.summary
        ))),
        Some(run) => Ok(format!(
            "open: wave {} passed in run {} (ended {}): {}",
            gate.after,
            run.run_id,
            format_epoch(run.ended_at),
            run.summary
        )),
    }
}

/// Checks `gate` for wave `wave_name` at `now` (epoch seconds).
pub async fn check(store: &RunStore, wave_name: &str, gate: &WaveGate, now: u64) -> Result<String> {
    let since = now.saturating_sub(u64::from(gate.window_hours) * 3600);
    let latest = latest_run(store, &gate.after, since).await?;
    decide(wave_name, gate, latest.as_ref())
}

/// Gates that name a wave nobody configured, or that wait on each other: a cycle never opens.
/// `waves` are (name, after) pairs; the error says which wave and why.
pub fn check_graph<'a>(waves: impl IntoIterator<Item = (&'a str, Option<&'a str>)> + Clone) -> Result<(), String> {
    let after_of = |name: &str| waves.clone().into_iter().find(|(n, _)| *n == name).map(|(_, after)| after);
    for (name, after) in waves.clone() {
        let Some(first) = after else { continue };
        if after_of(first).is_none() {
            return Err(format!("wave {name} follows {first}, which is not a configured wave"));
        }
        let mut chain = vec![name];
        let mut next = Some(first);
        while let Some(current) = next {
            if chain.contains(&current) {
                chain.push(current);
                return Err(format!("wave gates form a cycle: {}", chain.join(" -> ")));
            }
            chain.push(current);
            next = after_of(current).flatten();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_budget::BudgetUse;

    fn outcomes(patched: usize, failed: usize) -> WaveOutcomes {
        WaveOutcomes { patched, failed, attempted: patched + failed, ..WaveOutcomes::default() }
    }

    #[test]
    fn a_wave_passes_only_when_it_ran_to_its_end_within_its_budget() {
        assert!(verdict(Some(&outcomes(3, 0)), None).0);
        let (passed, why) = verdict(Some(&outcomes(3, 1)), None);
        assert!(!passed);
        assert!(why.contains("1 failure(s) and no error budget allows any"), "{why}");

        let with_budget = |patched, failed| {
            let mut measured = outcomes(patched, failed);
            measured.error_budget = Some(BudgetUse { allowed: 1, failed, exceeded: failed > 1, skipped: 0 });
            measured
        };
        assert!(verdict(Some(&with_budget(3, 1)), None).0, "exactly the budget passes");
        assert!(!verdict(Some(&with_budget(3, 2)), None).0);

        let (passed, why) = verdict(None, Some("Error: approval rejected"));
        assert!(!passed);
        assert_eq!(why, "did not run to its end: Error: approval rejected");
        let (passed, why) = verdict(Some(&outcomes(3, 0)), Some("WaveIssuesDetected"));
        assert!(!passed, "{why}");
    }

    #[test]
    fn the_gate_names_the_run_it_judged() {
        let gate = WaveGate { after: "canary".into(), window_hours: 24 };
        let error = decide("production", &gate, None).unwrap_err();
        assert_eq!(error.error_type(), "WaveGateClosed");
        assert!(error.to_string().contains("no run of wave canary ended in the last 24 hours"), "{error}");

        let failed = WaveRun {
            wave_name: "canary".into(),
            run_id: "canary-tuesday".into(),
            wave_index: 0,
            ended_at: 1_764_000_000,
            passed: false,
            summary: "1 patched, 1 failed".into(),
        };
        let error = decide("production", &gate, Some(&failed)).unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("wave gate closed: wave production follows canary:"), "{message}");
        assert!(message.contains("canary-tuesday") && message.contains("1 failed"), "{message}");

        let passed = WaveRun { passed: true, ..failed };
        let open = decide("production", &gate, Some(&passed)).unwrap();
        assert!(open.starts_with("open: wave canary passed in run canary-tuesday"), "{open}");
    }

    #[test]
    fn unknown_predecessors_and_cycles_are_refused() {
        assert_eq!(check_graph([("canary", None), ("prod", Some("canary"))]), Ok(()));
        let error = check_graph([("canary", None), ("prod", Some("canry"))]).unwrap_err();
        assert_eq!(error, "wave prod follows canry, which is not a configured wave");
        let error = check_graph([("a", Some("c")), ("b", Some("a")), ("c", Some("b"))]).unwrap_err();
        assert_eq!(error, "wave gates form a cycle: a -> c -> b -> a");
        let error = check_graph([("a", Some("a"))]).unwrap_err();
        assert_eq!(error, "wave gates form a cycle: a -> a");
    }

    #[test]
    fn records_sort_by_end_time() {
        assert!(wave_run_sk(999, "z") < wave_run_sk(1000, "a"));
        assert_eq!(wave_run_pk("canary"), "WAVERUN#canary");
    }
}
