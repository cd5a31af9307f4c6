//! The run report: JSON for machines and a self-contained HTML page for people (a bar chart per
//! wave: patched / failed / timed out / skipped / unreachable), both written to S3 at the end of
//! a run, also when it stops early.

use askama::Template;
use ec2patch_core::approval::{format_epoch, now_epoch_seconds};
use ec2patch_core::store::{self, ObjectRef};
use ec2patch_core::wave::WaveOutcomes;
use ec2patch_core::{Error, Hub, Result};
use serde::{Deserialize, Serialize};

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

struct WaveView<'a> {
    index: usize,
    name: &'a str,
    outcomes: Option<&'a WaveOutcomes>,
    problem: Option<&'a str>,
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
            index: w.index,
            name: &w.name,
            outcomes: w.outcomes.as_ref(),
            problem: w.problem.as_deref(),
            bars: w.outcomes.as_ref().map(bars).unwrap_or_default(),
        })
        .collect();
    ReportPage { report, waves, legend: SERIES.to_vec() }
        .render()
        .map_err(|e| Error::StateStoreFailed(format!("cannot render the report: {e}")))
}

/// Gathers the wave summaries and failure records of `run_id` into a report and writes it.
pub async fn write_run_report(hub: &Hub, run_id: &str, status: &str) -> Result<ReportWritten> {
    let plan = hub.store.load_plan(run_id).await?;
    let failures = hub.store.query_prefix(&store::run_pk(run_id), "FAILURE#WAVE#").await?;
    let text = |item: &store::Item, key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    let mut waves = Vec::new();
    let mut totals = Totals::default();
    for (index, wave) in plan.waves.iter().enumerate() {
        let outcomes =
            match hub.store.get_json::<WaveOutcomes>(&format!("runs/{run_id}/waves/{index:03}/outcomes.json")).await {
                Ok(outcomes) => Some(outcomes),
                Err(Error::NotFound(_)) => None,
                Err(error) => return Err(error),
            };
        if let Some(o) = &outcomes {
            totals.patched += o.patched;
            totals.failed += o.failed;
            totals.timed_out += o.timed_out;
            totals.skipped += o.skipped;
            totals.unreachable += o.unreachable;
            totals.unhealthy += o.unhealthy;
            totals.pending_reboot += o.pending_reboot;
        }
        let problems: Vec<String> = failures
            .iter()
            .filter(|f| {
                let sk = text(f, "sk");
                sk == format!("FAILURE#WAVE#{index}") || sk.starts_with(&format!("FAILURE#WAVE#{index}#"))
            })
            .map(|f| format!("{}: {}", text(f, "errorType"), text(f, "cause")))
            .collect();
        waves.push(WaveReport {
            index,
            name: wave.name.clone(),
            outcomes,
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        });
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
        stopped_because,
        totals: totals.clone(),
        waves,
    };
    let json = hub.store.put_json(&format!("runs/{run_id}/report.json"), &report).await?;
    let html = hub.store.put_html(&format!("runs/{run_id}/report.html"), &render_html(&report)?).await?;
    Ok(ReportWritten { json, html, status: status.to_owned(), totals })
}
