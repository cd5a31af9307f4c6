//! The run report: JSON for machines and a self-contained HTML page for people (a bar chart per
//! wave: patched / failed / timed out / skipped / unreachable), both written to S3 at the end of
//! a run, also when it stops early.

use askama::Template;
use ec2patch_core::approval::record::{APPROVAL_SK, approval_pk};
use ec2patch_core::instance_records::{self, RecordKey};
use ec2patch_core::report::{CSV_HEADER, InputSummary, SnapshotCount, WaveApproval, csv_key, html_key, json_key};
pub use ec2patch_core::report::{ReportWritten, RunReport, Totals, WaveReport};
use ec2patch_core::status::{InstanceOutcome, InventoryStatus};
use ec2patch_core::store::{self, number_attr, text_attr};
use ec2patch_core::time::{format_epoch, now_epoch_seconds};
use ec2patch_core::wave::{InstanceFailure, TargetFailure, WaveOutcomes};
use ec2patch_core::wave_gate::{self, WaveRun};
use ec2patch_core::{Error, Hub, Result};

const CHART_WIDTH: usize = 600;
const SERIES: [(&str, &str); 5] = [
    ("patched", "#1f883d"),
    ("failed", "#cf222e"),
    ("timed out", "#bf8700"),
    ("skipped", "#8c959f"),
    ("unreachable", "#8250df"),
];

struct Bar {
    x: usize,
    width: usize,
    color: &'static str,
    label: &'static str,
    count: usize,
}

/// A wave as the page shows it: its report, plus what the page derives from it.
struct WaveView<'a> {
    report: &'a WaveReport,
    approval: Option<String>,
    bars: Vec<Bar>,
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage<'a> {
    report: &'a RunReport,
    waves: Vec<WaveView<'a>>,
    legend: Vec<(&'static str, &'static str)>,
}

/// Proportional stacked bars (each non-empty series at least 2 px wide, so it shows).
fn bars(outcomes: &WaveOutcomes) -> Vec<Bar> {
    let counts = [outcomes.patched, outcomes.failed, outcomes.timed_out, outcomes.skipped, outcomes.unreachable];
    let total: usize = counts.iter().sum();
    let mut x = 0;
    let mut bars = Vec::new();
    for ((label, color), count) in SERIES.iter().zip(counts) {
        if count == 0 {
            continue;
        }
        let width = (count * CHART_WIDTH / total.max(1)).max(2);
        bars.push(Bar { x, width, color, label, count });
        x += width;
    }
    bars
}

pub fn render_html(report: &RunReport) -> Result<String> {
    let waves = report
        .waves
        .iter()
        .map(|w| WaveView {
            report: w,
            approval: w.approval.as_ref().map(WaveApproval::describe),
            bars: w.outcomes.as_ref().map(bars).unwrap_or_default(),
        })
        .collect();
    ReportPage { report, waves, legend: SERIES.to_vec() }
        .render()
        .map_err(|e| Error::StateStoreFailed(format!("cannot render the report: {e}")))
}

/// A wave that failed before its summary (approval rejected, change freeze, a step failure)
/// leaves its inventoried instances `PENDING`: each is recorded `SKIPPED` with why, so every
/// instance of the run ends with an outcome. Works on the rows the report read (one query of
/// the run's instance records for both), updating them as it updates the records.
async fn settle_unpatched(
    hub: &Hub,
    run_id: &str,
    stopped_waves: &std::collections::BTreeMap<usize, String>,
    rows: &mut [InstanceRow],
) -> Result<()> {
    for row in rows {
        let Some(problem) = stopped_waves.get(&row.wave) else { continue };
        if InstanceOutcome::parse(&row.outcome) != Some(InstanceOutcome::Pending) {
            continue;
        }
        let reason = format!("not patched: the wave stopped before patching ({problem})");
        let Some(key) = &row.key else { continue };
        instance_records::record_outcome(&hub.store, run_id, key, InstanceOutcome::Skipped, Some(&reason), &[]).await?;
        row.outcome = InstanceOutcome::Skipped.as_str().to_owned();
        row.reason = reason;
        row.finished = Some(now_epoch_seconds());
    }
    Ok(())
}

/// The targets each wave could not inventory (their `TARGET#` records `FAILED`), by wave, in
/// account and region order: one query for the whole run.
async fn failed_targets(hub: &Hub, run_id: &str) -> Result<std::collections::BTreeMap<usize, Vec<TargetFailure>>> {
    let mut by_wave: std::collections::BTreeMap<usize, Vec<TargetFailure>> = std::collections::BTreeMap::new();
    for item in hub.store.query_prefix(&store::run_pk(run_id), "TARGET#").await? {
        let text = |key: &str| text_attr(&item, key);
        if InventoryStatus::parse(&text("status")) != Some(InventoryStatus::Failed) {
            continue;
        }
        let Some(wave) = number_attr::<usize>(&item, "wave") else { continue };
        by_wave.entry(wave).or_default().push(TargetFailure {
            account: text("account"),
            region: text("region"),
            error_type: text("errorType"),
            message: text("error"),
        });
    }
    for targets in by_wave.values_mut() {
        targets.sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
    }
    Ok(by_wave)
}

/// One instance of the run, as its record ends.
struct InstanceRow {
    /// Where its record is (`None`: a malformed record, left as it is).
    key: Option<RecordKey>,
    wave: usize,
    finished: Option<u64>,
    account: String,
    region: String,
    instance_id: String,
    outcome: String,
    reason: String,
    command_id: String,
    snapshot_ids: Vec<String>,
}

/// Every instance record of the run (one query), in wave, account, region, instance order.
async fn instance_rows(hub: &Hub, run_id: &str) -> Result<Vec<InstanceRow>> {
    let mut rows: Vec<InstanceRow> = instance_records::query(&hub.store, run_id)
        .await?
        .iter()
        .map(|item| InstanceRow {
            key: RecordKey::of_record(item),
            wave: number_attr(item, "wave").unwrap_or_default(),
            finished: number_attr(item, "finishedAt"),
            account: text_attr(item, "account"),
            region: text_attr(item, "region"),
            instance_id: text_attr(item, "instanceId"),
            outcome: text_attr(item, "outcome"),
            reason: text_attr(item, "reason"),
            command_id: text_attr(item, "commandId"),
            snapshot_ids: ec2patch_core::snapshots::ids_on_record(item),
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.wave, &a.account, &a.region, &a.instance_id).cmp(&(b.wave, &b.account, &b.region, &b.instance_id))
    });
    Ok(rows)
}

/// The CSV of every instance ([`CSV_HEADER`]).
fn instances_csv(rows: &[InstanceRow], wave_names: &[String]) -> Result<String> {
    let csv_error = |e: csv::Error| Error::StateStoreFailed(format!("cannot write the instances CSV: {e}"));
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_HEADER).map_err(csv_error)?;
    for row in rows {
        let wave_name = wave_names.get(row.wave).map(String::as_str).unwrap_or_default();
        let wave = (row.wave + 1).to_string();
        let finished_at = row.finished.map(format_epoch).unwrap_or_default();
        let snapshot_ids = row.snapshot_ids.join(" ");
        writer
            .write_record([
                wave.as_str(),
                wave_name,
                &row.account,
                &row.region,
                &row.instance_id,
                &row.outcome,
                &row.reason,
                &row.command_id,
                &finished_at,
                &snapshot_ids,
            ])
            .map_err(csv_error)?;
    }
    let bytes =
        writer.into_inner().map_err(|e| Error::StateStoreFailed(format!("cannot write the instances CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::StateStoreFailed(format!("the instances CSV is not UTF-8: {e}")))
}

/// A skip reason without its particulars: `SSM agent offline (ConnectionLost since ...)` and
/// `SSM agent offline (Inactive)` group as `SSM agent offline`.
fn reason_group(reason: &str) -> String {
    let head = reason.split([':', '(']).next().unwrap_or(reason).trim();
    if head.is_empty() { "unknown".to_owned() } else { head.to_owned() }
}

/// Each wave's approval, from the run's pointers (`APPROVAL#<wave>`) to the approval records.
async fn approvals(hub: &Hub, run_id: &str) -> Result<std::collections::BTreeMap<usize, WaveApproval>> {
    let mut by_wave = std::collections::BTreeMap::new();
    for pointer in hub.store.query_prefix(&store::run_pk(run_id), "APPROVAL#").await? {
        let (Some(wave), id) = (number_attr::<usize>(&pointer, "wave"), text_attr(&pointer, "approvalId")) else {
            continue;
        };
        let Some(record) = hub.store.get_item(&approval_pk(&id), APPROVAL_SK).await? else { continue };
        let optional = |key: &str| Some(text_attr(&record, key)).filter(|v| !v.is_empty());
        by_wave.insert(
            wave,
            WaveApproval {
                approval_id: id,
                status: text_attr(&record, "status"),
                requested_at: number_attr::<u64>(&record, "requestedAt").map(format_epoch).unwrap_or_default(),
                decided_by: optional("decidedBy"),
                decided_at: optional("decidedAt"),
                source_ip: optional("sourceIp"),
                user_agent: optional("userAgent"),
            },
        );
    }
    Ok(by_wave)
}

/// Gathers the wave summaries and failure records of `run_id` into a report and writes it.
pub async fn write_run_report(hub: &Hub, run_id: &str, status: &str) -> Result<ReportWritten> {
    let plan = hub.store.load_plan(run_id).await?;
    let failures = hub.store.query_prefix(&store::run_pk(run_id), "FAILURE#WAVE#").await?;
    let failed_by_wave = failed_targets(hub, run_id).await?;
    let mut approvals = approvals(hub, run_id).await?;
    // When each wave's inventory started (its WAVE#<nnn> record).
    let started: std::collections::BTreeMap<usize, u64> = hub
        .store
        .query_prefix(&store::run_pk(run_id), "WAVE#")
        .await?
        .iter()
        .filter_map(|item| {
            let index = text_attr(item, "sk").strip_prefix("WAVE#")?.parse().ok()?;
            Some((index, number_attr(item, "startedAt")?))
        })
        .collect();
    let mut waves = Vec::new();
    let mut totals = Totals::default();
    // Waves that failed before their summary, with why: their pending instances are settled below.
    let mut stopped_waves = std::collections::BTreeMap::new();
    for (index, wave) in plan.waves.iter().enumerate() {
        let outcomes =
            match hub.store.get_json::<WaveOutcomes>(&format!("runs/{run_id}/waves/{index:03}/outcomes.json")).await {
                Ok(outcomes) => Some(outcomes),
                Err(Error::NotFound(_)) => None,
                Err(error) => return Err(error),
            };
        if let Some(o) = &outcomes {
            totals.add(o);
        }
        let problems: Vec<String> = failures
            .iter()
            .filter(|f| {
                let sk = text_attr(f, "sk");
                sk == format!("FAILURE#WAVE#{index}") || sk.starts_with(&format!("FAILURE#WAVE#{index}#"))
            })
            .map(|f| ec2patch_core::report::human_problem(&text_attr(f, "errorType"), &text_attr(f, "cause")))
            .collect();
        let problem = (!problems.is_empty()).then(|| problems.join("; "));
        if outcomes.is_none()
            && let Some(problem) = &problem
        {
            stopped_waves.insert(index, problem.clone());
        }
        let failed_targets = failed_by_wave.get(&index).cloned().unwrap_or_default();
        let mut accounts_from = std::collections::BTreeMap::new();
        for source in &wave.account_sources {
            *accounts_from.entry(source.from.clone()).or_default() += 1;
        }
        waves.push(WaveReport {
            index,
            name: wave.name.clone(),
            outcomes,
            problem,
            failed_targets,
            approval: approvals.remove(&index),
            accounts_from,
            left_out: wave.left_out.clone(),
            skipped_by_reason: std::collections::BTreeMap::new(),
            failed_instances: Vec::new(),
            started_at: started.get(&index).copied().map(format_epoch),
            finished_at: None,
            duration_seconds: None,
            snapshots: (wave.snapshot && !plan.dry_run).then(SnapshotCount::default),
        });
    }
    // Every instance's final record: the CSV, failed ones listed, skipped ones grouped by reason.
    let mut rows = instance_rows(hub, run_id).await?;
    if !stopped_waves.is_empty() {
        settle_unpatched(hub, run_id, &stopped_waves, &mut rows).await?;
    }
    for row in &rows {
        let Some(wave) = waves.get_mut(row.wave) else { continue };
        if let Some(count) = wave.snapshots.as_mut().filter(|_| !row.snapshot_ids.is_empty()) {
            count.instances += 1;
            count.snapshots += row.snapshot_ids.len();
        }
        match InstanceOutcome::parse(&row.outcome) {
            Some(InstanceOutcome::Skipped) => {
                *wave.skipped_by_reason.entry(reason_group(&row.reason)).or_default() += 1;
            }
            Some(outcome) if outcome.is_failure() => wave.failed_instances.push(InstanceFailure {
                account: row.account.clone(),
                region: row.region.clone(),
                instance_id: row.instance_id.clone(),
                outcome: row.outcome.clone(),
                reason: row.reason.clone(),
            }),
            _ => {}
        }
    }
    for wave in &mut waves {
        let finished = rows.iter().filter(|r| r.wave == wave.index).filter_map(|r| r.finished).max();
        if let (Some(finished), Some(started)) = (finished, started.get(&wave.index)) {
            wave.finished_at = Some(format_epoch(finished));
            wave.duration_seconds = Some(finished.saturating_sub(*started));
        }
    }
    let wave_names: Vec<String> = plan.waves.iter().map(|w| w.name.clone()).collect();
    let instances_csv =
        hub.store.put_text(&csv_key(run_id), "text/csv; charset=utf-8", &instances_csv(&rows, &wave_names)?).await?;
    // How each wave ended, for the gates of the waves that follow it in later runs. A dry run
    // patched nothing, so it proves nothing about the patches.
    if !plan.dry_run {
        let ended_at = now_epoch_seconds();
        let runs: Vec<WaveRun> = waves
            .iter()
            .map(|w| {
                let (passed, summary) = wave_gate::verdict(w.outcomes.as_ref(), w.problem.as_deref());
                WaveRun {
                    wave_name: w.name.clone(),
                    run_id: run_id.to_owned(),
                    wave_index: w.index,
                    ended_at,
                    passed,
                    summary,
                }
            })
            .collect();
        wave_gate::record(&hub.store, &runs).await?;
    }
    let stopped_because = (status != "completed").then(|| {
        waves
            .iter()
            .find_map(|w| {
                w.problem.as_ref().map(|p| format!("The run stopped at wave {} ({}): {p}", w.index + 1, w.name))
            })
            .unwrap_or_else(|| "The run stopped before all waves were patched.".to_owned())
    });
    let report = RunReport {
        run_id: run_id.to_owned(),
        generated_at: format_epoch(now_epoch_seconds()),
        dry_run: plan.dry_run,
        status: status.to_owned(),
        stopped_because: stopped_because.clone(),
        input: InputSummary {
            waves: plan.waves.len(),
            targets: plan.target_count(),
            tag_filters: plan.tag_filters.iter().map(|t| format!("{}={}", t.key, t.values.join("|"))).collect(),
            organizational_units: plan.waves.iter().flat_map(|w| w.organizational_units.clone()).collect(),
            started_by: plan.started_by.clone(),
        },
        totals: totals.clone(),
        waves,
        instances_csv: Some(instances_csv),
    };
    let json = hub.store.put_json(&json_key(run_id), &report).await?;
    let html = hub.store.put_html(&html_key(run_id), &render_html(&report)?).await?;
    Ok(ReportWritten { json, html, status: status.to_owned(), totals, stopped_because })
}
