//! `ec2patch watch`: live progress of one run, from the execution (status, current state) and
//! the run's DynamoDB records (per wave: targets, instances and their outcomes).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_sfn::types::ExecutionStatus;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use ec2patch_core::plan::RunPlan;
use ec2patch_core::status::{InstanceOutcome, InventoryStatus};
use ec2patch_core::store;

use crate::connect::{Connection, run_id_of};

/// One look at a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub run_id: String,
    pub status: String,
    /// The state the execution is in (or last entered), and the wave it works on.
    pub state: Option<String>,
    pub wave_index: Option<usize>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub waves: Vec<WaveProgress>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveProgress {
    pub index: usize,
    pub name: String,
    pub phase: String,
    pub targets: usize,
    pub targets_failed: usize,
    pub instances: usize,
    /// Instances with a final outcome (anything but PENDING).
    pub finished: usize,
    pub outcomes: BTreeMap<String, usize>,
}

impl Progress {
    pub fn running(&self) -> bool {
        self.status == ExecutionStatus::Running.as_str()
    }
}

/// Reads the run's progress once.
pub async fn snapshot(connection: &Connection, execution_arn: &str) -> anyhow::Result<Progress> {
    let run_id = run_id_of(execution_arn).to_owned();
    let execution = connection
        .sfn()
        .describe_execution()
        .execution_arn(execution_arn)
        .send()
        .await
        .map_err(crate::connect::aws_error)
        .with_context(|| format!("states:DescribeExecution {execution_arn}"))?;
    let (state, wave_index) = current_state(connection, execution_arn).await?;
    // Planned waves, so the ones not started yet show too; a run whose input was invalid has none.
    let plan: Option<RunPlan> = connection.hub.store.get_json(&store::plan_key(&run_id)).await.ok();
    let pk = store::run_pk(&run_id);
    let mut items = connection.hub.store.query_prefix(&pk, "TARGET#").await?;
    items.extend(ec2patch_core::instance_records::query(&connection.hub.store, &run_id).await?);

    let mut waves: Vec<WaveProgress> = plan
        .map(|plan| {
            plan.waves
                .iter()
                .enumerate()
                .map(|(index, wave)| WaveProgress { index, name: wave.name.clone(), ..WaveProgress::default() })
                .collect()
        })
        .unwrap_or_default();
    for item in &items {
        let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).map(String::as_str).unwrap_or_default();
        let number = |key: &str| item.get(key).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<usize>().ok());
        let sk = text("sk");
        let Some(index) = number("wave") else { continue };
        if waves.len() <= index {
            waves.resize_with(index + 1, WaveProgress::default);
        }
        let wave = &mut waves[index];
        wave.index = index;
        if sk.starts_with("TARGET#") {
            wave.targets += 1;
            if InventoryStatus::parse(text("status")) == Some(InventoryStatus::Failed) {
                wave.targets_failed += 1;
            }
        } else if sk.starts_with("INSTANCE#") {
            wave.instances += 1;
            let outcome = text("outcome");
            if !outcome.is_empty() && InstanceOutcome::parse(outcome) != Some(InstanceOutcome::Pending) {
                wave.finished += 1;
                *wave.outcomes.entry(outcome.to_owned()).or_default() += 1;
            }
        }
    }
    let status = execution.status.as_str().to_owned();
    let running = execution.status == ExecutionStatus::Running;
    for wave in &mut waves {
        wave.phase = match wave_index {
            _ if !running && wave.targets > 0 => "done".to_owned(),
            _ if !running => "not run".to_owned(),
            Some(current) if wave.index < current => "done".to_owned(),
            Some(current) if wave.index == current => phase_of(state.as_deref()).to_owned(),
            _ => "queued".to_owned(),
        };
    }
    Ok(Progress { run_id, status, state, wave_index, error: execution.error, cause: execution.cause, waves })
}

/// The most recent state entered, and the wave index in its input.
async fn current_state(
    connection: &Connection,
    execution_arn: &str,
) -> anyhow::Result<(Option<String>, Option<usize>)> {
    let sfn = connection.sfn();
    let newest = sfn
        .get_execution_history()
        .execution_arn(execution_arn)
        .reverse_order(true)
        .max_results(50)
        .send()
        .await
        .map_err(crate::connect::aws_error)
        .with_context(|| format!("states:GetExecutionHistory {execution_arn}"))?;
    let mut events = newest.events;
    // Step Functions honours reverseOrder; an emulator that does not returns the oldest events
    // first, so read the whole history then (it is small there).
    let ascending = events.len() > 1 && events[0].id < events[events.len() - 1].id;
    if ascending {
        events.clear();
        let mut pages = sfn.get_execution_history().execution_arn(execution_arn).into_paginator().send();
        while let Some(page) = pages.next().await {
            events.extend(page.map_err(crate::connect::aws_error).context("states:GetExecutionHistory")?.events);
        }
        events.reverse();
    }
    let mut state = None;
    let mut wave_index = None;
    for event in &events {
        let Some(details) = event.state_entered_event_details() else { continue };
        if state.is_none() {
            state = Some(details.name.clone());
        }
        let input: Option<serde_json::Value> = details.input.as_deref().and_then(|i| serde_json::from_str(i).ok());
        if let Some(index) = input.as_ref().and_then(|i| i.get("waveIndex")).and_then(serde_json::Value::as_u64) {
            wave_index = usize::try_from(index).ok();
            break;
        }
    }
    Ok((state, wave_index))
}

/// What a person calls the state the wave is in.
pub fn phase_of(state: Option<&str>) -> &'static str {
    match state.unwrap_or_default() {
        "PlanRun" => "planning",
        "Inventory" | "PrePatchAnalysis" | "ApprovalNeeded" => "inventory",
        "RequestApproval" => "waiting for approval",
        "PatchNeeded" | "PatchTargets" | "SendCommands" | "WaitForCommands" | "PollCommands" | "CommandsFinished" => {
            "patching"
        }
        "VerifyBatch" | "RecordBatchFailure" => "verifying",
        "SummarizeWave" | "AnalyzeWave" | "NotifyWave" | "PublishWaveSummary" | "IssuesFound" => "analysing",
        "AdvanceWave" | "PauseBetweenWaves" | "WavePause" => "pause",
        "" => "starting",
        _ => "working",
    }
}

/// Draws progress: bars on a terminal, one line per change otherwise.
#[derive(Debug)]
pub struct Renderer {
    bars: Option<(MultiProgress, ProgressBar, Vec<ProgressBar>)>,
    last_line: String,
}

impl Renderer {
    pub fn new(interactive: bool) -> Self {
        let bars = interactive.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let header = multi.add(ProgressBar::new_spinner());
            header.enable_steady_tick(Duration::from_millis(120));
            (multi, header, Vec::new())
        });
        Self { bars, last_line: String::new() }
    }

    /// Prints a message above the bars (or plainly).
    pub fn println(&self, message: &str) {
        match &self.bars {
            Some((multi, ..)) => {
                let _ = multi.println(message);
            }
            None => eprintln!("{message}"),
        }
    }

    pub fn update(&mut self, progress: &Progress) {
        let headline = format!(
            "run {}: {}{}",
            progress.run_id,
            progress.status,
            progress.state.as_deref().map(|s| format!(" ({s})")).unwrap_or_default()
        );
        let Some((multi, header, bars)) = &mut self.bars else {
            let waves: Vec<String> = progress.waves.iter().map(wave_line).collect();
            let line = format!("{headline} | {}", waves.join(" | "));
            if line != self.last_line {
                eprintln!("{line}");
                self.last_line = line;
            }
            return;
        };
        header.set_message(headline);
        let style = ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos:>4}/{len:4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        while bars.len() < progress.waves.len() {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(style.clone());
            bars.push(bar);
        }
        for (bar, wave) in bars.iter().zip(&progress.waves) {
            bar.set_prefix(wave.name.clone());
            bar.set_length(wave.instances as u64);
            bar.set_position(wave.finished as u64);
            bar.set_message(wave_detail(wave));
        }
    }

    pub fn finish(&mut self) {
        if let Some((_, header, bars)) = &self.bars {
            header.finish_and_clear();
            for bar in bars {
                bar.finish();
            }
        }
    }
}

fn wave_detail(wave: &WaveProgress) -> String {
    let mut parts = vec![wave.phase.clone()];
    if wave.targets > 0 {
        parts.push(format!("{} targets ({} failed)", wave.targets, wave.targets_failed));
    }
    for (outcome, count) in &wave.outcomes {
        parts.push(format!("{} {count}", outcome.to_lowercase()));
    }
    parts.join(", ")
}

fn wave_line(wave: &WaveProgress) -> String {
    format!("{}: {}/{} {}", wave.name, wave.finished, wave.instances, wave_detail(wave))
}

/// Follows the run until it ends; returns the last snapshot.
pub async fn follow(
    connection: &Connection,
    execution_arn: &str,
    interval: Duration,
    renderer: &mut Renderer,
) -> anyhow::Result<Progress> {
    loop {
        let progress = snapshot(connection, execution_arn).await?;
        renderer.update(&progress);
        if !progress.running() {
            renderer.finish();
            return Ok(progress);
        }
        tokio::time::sleep(interval).await;
    }
}
