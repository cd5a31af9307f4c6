//! `scale`: one real wave at fleet scale (default 1000 accounts x 3 regions, one patchable
//! instance per target) through the Distributed Map on the local stack, approval included.
//!
//! Measured, not projected: wall time and the emulator's share of the CPU spent, the parent's
//! history events, the largest child history, the largest state payload (parent or child),
//! child executions started, the most children in flight at once (from the children's start and
//! stop times), and AWS calls per target (every call the router saw, Lambda invokes apart).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent};
use bytes::Bytes;
use ec2patch_local::{EstateSpec, LocalStack, LocalStackOptions, SeedKind};
use http_body_util::Full;
use hyper::Request;
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleOptions {
    pub accounts: usize,
    pub regions: usize,
    pub instances_per_target: usize,
    pub targets_per_batch: usize,
    /// How long the whole wave may take before the step gives up.
    pub timeout: Duration,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        Self {
            accounts: 1000,
            regions: 3,
            instances_per_target: 1,
            targets_per_batch: 10,
            timeout: Duration::from_secs(3 * 3600),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleRun {
    pub accounts: usize,
    pub regions: usize,
    pub targets: usize,
    pub instances: usize,
    pub batches: usize,
    pub seed_seconds: f64,
    /// StartExecution to the end of the execution (approval given as soon as it is asked).
    pub wall_seconds: f64,
    /// CPU seconds of the emulator (moto) and of this process (router + handlers) over the run.
    pub emulator_cpu_seconds: f64,
    pub stack_cpu_seconds: f64,
    /// The emulator's share of the CPU time spent during the run.
    pub emulator_share: f64,
    pub parent_events: usize,
    pub child_executions: usize,
    pub children_succeeded: usize,
    pub largest_child_events: usize,
    pub largest_payload_bytes: usize,
    pub largest_payload_state: String,
    pub most_children_in_flight: usize,
    pub max_concurrency: Option<i32>,
    pub aws_calls: u64,
    pub aws_calls_per_target: f64,
    pub lambda_invocations: u64,
    pub patched: u64,
    pub failed: u64,
}

pub async fn run(options: &ScaleOptions) -> anyhow::Result<ScaleRun> {
    let stack = LocalStack::start(LocalStackOptions {
        targets_per_batch: options.targets_per_batch,
        inventory_concurrency: 64,
        // Long enough for the slowest child on a loaded emulator: its commands must not time out.
        command_timeout_seconds: 1800,
        ..LocalStackOptions::default()
    })
    .await?;
    let region_names: Vec<String> = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2", "eu-central-1"]
        .iter()
        .take(options.regions.clamp(1, 5))
        .map(|r| (*r).to_owned())
        .collect();
    let seeding = Instant::now();
    let estate = stack
        .seed(&EstateSpec {
            accounts: options.accounts,
            regions: region_names.clone(),
            per_target: BTreeMap::from([(SeedKind::Patchable, options.instances_per_target)]),
            denied_accounts: 0,
            concurrency: 32,
            first_account: 0,
        })
        .await
        .context("seeding the estate")?;
    let seed_seconds = seeding.elapsed().as_secs_f64();
    eprintln!("scale: seeded {} instances in {seed_seconds:.0} s", estate.instances.len());
    stack.router.reset_calls();
    let moto_pid = moto_pid(stack.moto.port);
    let (moto_cpu_before, own_cpu_before) = (moto_pid.and_then(cpu_seconds), cpu_seconds_of_self());

    let started = Instant::now();
    let input = json!({
        "accountWaves": [{"name": "scale", "accounts": estate.accounts, "regions": region_names}],
        "abortOnIssues": false
    });
    let arn = stack.start_execution("scale-run", &input).await?;
    let execution = approve_until_done(&stack, &arn, options.timeout).await?;
    let wall_seconds = started.elapsed().as_secs_f64();
    let emulator_cpu = moto_pid.and_then(cpu_seconds).zip(moto_cpu_before).map(|(after, before)| after - before);
    let stack_cpu = cpu_seconds_of_self().zip(own_cpu_before).map(|(after, before)| after - before);
    if execution.status != ExecutionStatus::Succeeded {
        bail!("the scale run ended {:?}: {:?} {:?}", execution.status, execution.error, execution.cause);
    }
    let calls = stack.router.calls();

    let parent = stack.history(&arn).await?;
    let (mut largest, mut largest_state) = largest_payload(&parent, "parent");
    let runs = stack.sfn().list_map_runs().execution_arn(&arn).send().await.context("ListMapRuns")?;
    let map_run = runs.map_runs().first().context("the wave did not run through the Distributed Map")?;
    let described =
        stack.sfn().describe_map_run().map_run_arn(map_run.map_run_arn()).send().await.context("DescribeMapRun")?;
    let mut children = Vec::new();
    let mut pages =
        stack.sfn().list_executions().map_run_arn(map_run.map_run_arn()).max_results(1000).into_paginator().send();
    while let Some(page) = pages.next().await {
        children.extend(page.context("ListExecutions")?.executions);
    }
    let mut largest_child_events = 0;
    let mut spans = Vec::new();
    for child in &children {
        let history = stack.history(child.execution_arn()).await?;
        largest_child_events = largest_child_events.max(history.len());
        let (size, state) = largest_payload(&history, "child");
        if size > largest {
            (largest, largest_state) = (size, state);
        }
        if let Some(stop) = child.stop_date() {
            spans.push((child.start_date().as_secs_f64(), stop.as_secs_f64()));
        }
    }
    let report: serde_json::Value = stack.hub.store.get_json("runs/scale-run/waves/000/outcomes.json").await?;
    let aws_calls: u64 = calls.iter().filter(|(k, _)| !k.starts_with("lambda:Invoke")).map(|(_, n)| n).sum();
    let lambda_invocations: u64 = calls.iter().filter(|(k, _)| k.starts_with("lambda:Invoke")).map(|(_, n)| n).sum();
    let targets = options.accounts * region_names.len();
    let (emulator_cpu_seconds, stack_cpu_seconds) = (emulator_cpu.unwrap_or(f64::NAN), stack_cpu.unwrap_or(f64::NAN));
    Ok(ScaleRun {
        accounts: options.accounts,
        regions: region_names.len(),
        targets,
        instances: estate.instances.len(),
        batches: targets.div_ceil(options.targets_per_batch.max(1)),
        seed_seconds,
        wall_seconds,
        emulator_cpu_seconds,
        stack_cpu_seconds,
        emulator_share: emulator_cpu_seconds / (emulator_cpu_seconds + stack_cpu_seconds),
        parent_events: parent.len(),
        child_executions: children.len(),
        children_succeeded: children.iter().filter(|c| c.status() == &ExecutionStatus::Succeeded).count(),
        largest_child_events,
        largest_payload_bytes: largest,
        largest_payload_state: largest_state,
        most_children_in_flight: most_overlapping(&spans),
        max_concurrency: Some(described.max_concurrency()),
        aws_calls,
        aws_calls_per_target: aws_calls as f64 / targets as f64,
        lambda_invocations,
        patched: report["patched"].as_u64().unwrap_or_default(),
        failed: report["failed"].as_u64().unwrap_or_default(),
    })
}

/// The largest state input or output of a history, and which state it was.
fn largest_payload(history: &[HistoryEvent], whose: &str) -> (usize, String) {
    let mut largest = (0, String::new());
    for event in history {
        if let Some(d) = event.state_entered_event_details() {
            let size = d.input.as_deref().map_or(0, str::len);
            if size > largest.0 {
                largest = (size, format!("{whose} {} (input)", d.name));
            }
        }
        if let Some(d) = event.state_exited_event_details() {
            let size = d.output.as_deref().map_or(0, str::len);
            if size > largest.0 {
                largest = (size, format!("{whose} {} (output)", d.name));
            }
        }
    }
    largest
}

/// The most intervals (start, stop) open at one instant.
pub fn most_overlapping(spans: &[(f64, f64)]) -> usize {
    let mut edges: Vec<(f64, i32)> = spans.iter().flat_map(|(start, stop)| [(*start, 1), (*stop, -1)]).collect();
    // At equal times a stop comes before a start: a child that ends as the next begins frees its slot.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut open, mut most) = (0_i32, 0_i32);
    for (_, delta) in edges {
        open += delta;
        most = most.max(open);
    }
    usize::try_from(most).unwrap_or_default()
}

async fn approve_until_done(
    stack: &LocalStack,
    arn: &str,
    timeout: Duration,
) -> anyhow::Result<aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput> {
    let started = Instant::now();
    let mut approved = 0;
    loop {
        let links: Vec<String> = stack
            .router
            .mailbox()
            .iter()
            .filter_map(|m| m.message.lines().find_map(|l| l.strip_prefix("Approve: ")).map(|l| l.trim().to_owned()))
            .collect();
        for link in links.iter().skip(approved) {
            let form = link.split_once('?').map(|(_, q)| q.to_owned()).context("approval link without a query")?;
            let post = Request::post(format!("{}/callback", stack.router.url()))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(form)))?;
            let answer = ec2patch_local::http::send(post).await?;
            anyhow::ensure!(answer.status() == 200, "approval POST answered {}", answer.status());
            approved += 1;
        }
        let execution =
            stack.sfn().describe_execution().execution_arn(arn).send().await.context("DescribeExecution")?;
        if execution.status != ExecutionStatus::Running {
            return Ok(execution);
        }
        if started.elapsed() > timeout {
            bail!("execution {arn} still running after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The moto server process listening on `port` (found by its command line).
fn moto_pid(port: u16) -> Option<u32> {
    let wanted = format!("--port\0{port}\0");
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains("launcher.py") && cmdline.contains(&wanted)).then_some(pid)
    })
}

/// User + system CPU seconds of a process (Linux /proc; clock ticks of 100 Hz).
fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn cpu_seconds_of_self() -> Option<f64> {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn stat_cpu(stat: &str) -> Option<f64> {
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

pub fn print(run: &ScaleRun) {
    println!(
        "Distributed Map at scale: one wave of {} accounts x {} regions ({} targets, {} instances, {} batches)",
        run.accounts, run.regions, run.targets, run.instances, run.batches
    );
    let rows: [(&str, String); 13] = [
        ("wall time (StartExecution to end)", format!("{:.1} s", run.wall_seconds)),
        (
            "emulator share of CPU",
            format!(
                "{:.0}% (moto {:.1} s, router + handlers {:.1} s)",
                run.emulator_share * 100.0,
                run.emulator_cpu_seconds,
                run.stack_cpu_seconds
            ),
        ),
        ("parent history events", run.parent_events.to_string()),
        ("largest child history", format!("{} events", run.largest_child_events)),
        ("largest state payload", format!("{} bytes ({})", run.largest_payload_bytes, run.largest_payload_state)),
        ("child executions started", format!("{} ({} succeeded)", run.child_executions, run.children_succeeded)),
        (
            "most children in flight",
            format!("{} (MaxConcurrency {})", run.most_children_in_flight, run.max_concurrency.unwrap_or_default()),
        ),
        ("AWS calls", run.aws_calls.to_string()),
        ("AWS calls per target", format!("{:.1}", run.aws_calls_per_target)),
        ("Lambda invocations", run.lambda_invocations.to_string()),
        ("instances patched / failed", format!("{} / {}", run.patched, run.failed)),
        ("seeding the estate (not in wall time)", format!("{:.0} s", run.seed_seconds)),
        ("batches (targets / batch size)", run.batches.to_string()),
    ];
    for (name, value) in rows {
        println!("  {name:<40} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_counts_children_open_at_once() {
        assert_eq!(most_overlapping(&[]), 0);
        assert_eq!(most_overlapping(&[(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)]), 2, "a stop at 2.0 frees the slot");
        assert_eq!(most_overlapping(&[(0.0, 10.0), (1.0, 2.0), (1.5, 3.0)]), 3);
    }

    #[test]
    fn cpu_time_is_read_from_proc_stat() {
        let stat = "42 (moto server) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(stat_cpu(stat), Some(3.0));
    }
}
