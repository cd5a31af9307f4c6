//! From measurements to the reported figures: each with its target, the ratio the target is
//! about, whether it is met and, when not, by what factor. Projections to full scale are
//! formulas over measured quantities, spelled out in each figure's note.

use std::collections::BTreeMap;

use ec2patch_core::config::PatchSettings;
use serde::Serialize;

use crate::bill;
use crate::coldstart::{ColdStart, Spread};
use crate::fanout::FanOut;
use crate::waves::WaveRun;

/// Public prices (us-east-1): Standard workflow state transitions, Lambda requests and duration
/// (arm64, the architecture the hub module deploys).
pub const PRICE_PER_TRANSITION: f64 = 0.025 / 1000.0;
pub const PRICE_PER_REQUEST: f64 = 0.20 / 1_000_000.0;
pub const PRICE_PER_GB_SECOND: f64 = 0.000_013_333_4;
/// Step Functions: events per execution history.
pub const HISTORY_LIMIT: f64 = 25_000.0;
/// The simulated patch: every command takes this long.
pub const PATCH_SECONDS: u32 = 30 * 60;
/// The fixed poll loop compared against.
pub const FIXED_POLL_SECONDS: u32 = 30;

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub enum Bound {
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">=")]
    AtLeast,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub bound: Bound,
    pub value: f64,
    /// `ratio` (the figure's ratio to its baseline) or `value` (the measured value itself).
    pub applies_to: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figure {
    pub key: String,
    pub section: &'static str,
    pub label: String,
    pub value: f64,
    pub unit: &'static str,
    /// What the value is compared with (the baseline), if anything.
    pub baseline: Option<f64>,
    pub baseline_label: Option<String>,
    /// `value / baseline`, or, for a figure measured over several runs, the median of the runs'
    /// ratios.
    pub ratio: Option<f64>,
    /// A figure measured over several runs (`runs` of them): `value` is their median, and these
    /// are the smallest and largest value and ratio among them.
    pub runs: Option<usize>,
    pub value_min: Option<f64>,
    pub value_max: Option<f64>,
    pub ratio_min: Option<f64>,
    pub ratio_max: Option<f64>,
    pub target: Option<Target>,
    pub met: Option<bool>,
    /// How far from the target when missed (>= 1: the factor by which it is missed).
    pub miss_factor: Option<f64>,
    pub note: String,
}

impl Figure {
    fn new(
        key: impl Into<String>,
        section: &'static str,
        label: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Self {
            key: key.into(),
            section,
            label: label.into(),
            value,
            unit,
            baseline: None,
            baseline_label: None,
            ratio: None,
            runs: None,
            value_min: None,
            value_max: None,
            ratio_min: None,
            ratio_max: None,
            target: None,
            met: None,
            miss_factor: None,
            note: String::new(),
        }
    }

    fn against(mut self, baseline: f64, label: impl Into<String>) -> Self {
        self.baseline = Some(baseline);
        self.baseline_label = Some(label.into());
        self.ratio = Some(self.value / baseline);
        self
    }

    /// Measured over several runs: the value's spread (its median is the figure's value) and,
    /// when there is a baseline, the spread of each run's ratio to it (whose median becomes the
    /// figure's ratio, the one its target is judged on). Call after [`Figure::against`] and
    /// before [`Figure::target`].
    fn runs(mut self, runs: usize, value: Spread, ratio: Option<Spread>) -> Self {
        self.runs = Some(runs);
        (self.value, self.value_min, self.value_max) = (value.median, Some(value.min), Some(value.max));
        if let Some(ratio) = ratio {
            (self.ratio, self.ratio_min, self.ratio_max) = (Some(ratio.median), Some(ratio.min), Some(ratio.max));
        }
        self
    }

    fn target(mut self, bound: Bound, value: f64, applies_to: &'static str) -> Self {
        let actual = if applies_to == "ratio" { self.ratio.unwrap_or(f64::NAN) } else { self.value };
        let met = match bound {
            Bound::AtMost => actual <= value,
            Bound::AtLeast => actual >= value,
        };
        self.met = Some(met);
        if !met {
            self.miss_factor = Some(match bound {
                Bound::AtMost => actual / value,
                Bound::AtLeast => value / actual,
            });
        }
        self.target = Some(Target { bound, value, applies_to });
        self
    }

    fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// Polls a batch makes for a command lasting `patch_seconds`: the first wait is the send's
/// `nextPollSeconds` (the initial wait), then each poll returns the next wait
/// (`ec2patch_ssm_poll::next_poll_seconds`, the function PollSsmCommand uses). The poll at or
/// after `patch_seconds` sees the command done.
pub fn polls_for(settings: &PatchSettings, patch_seconds: u32) -> u32 {
    crate::polling::doubling(settings, f64::from(patch_seconds)).0
}

/// Lambda memory per function, from the hub module's function table (the deployed setting).
pub fn configured_memory_mb(main_tf: &str) -> BTreeMap<String, f64> {
    main_tf
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.trim().split_once('=')?;
            let memory = rest.split("memory = ").nth(1)?.split([',', ' ']).next()?.parse().ok()?;
            Some((name.trim().to_owned(), memory))
        })
        .collect()
}

/// Which function each Lambda task state of the template invokes (the ARN placeholder's name).
fn state_functions() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("PlanRun", "PlanRun"),
        ("Inventory", "PreEC2Inventory"),
        ("PrePatchAnalysis", "AnalyzeWithBedrock"),
        ("RequestApproval", "SendApprovalRequest"),
        ("SendCommands", "SendSsmCommand"),
        ("PollCommands", "PollSsmCommand"),
        ("VerifyBatch", "PostEC2Verify"),
        ("SummarizeWave", "PostEC2Verify"),
        ("AnalyzeWave", "AnalyzeWithBedrock"),
        ("WriteReport", "PostEC2Verify"),
        ("WriteStoppedReport", "PostEC2Verify"),
    ])
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    pub polls_per_batch: f64,
    pub transitions: f64,
    pub invocations: f64,
    pub gb_seconds: f64,
    pub dollars: f64,
}

/// What a 30-minute patch wave of `targets` targets costs, from a measured run: the parent's
/// per-wave states and Lambda tasks as measured (their durations scaled to `targets` for the
/// steps that work over the whole wave), and per batch the measured send/verify transitions and
/// durations plus `polls` x the measured cost of one poll cycle.
pub fn wave_cost(
    run: &WaveRun,
    processor: &BTreeMap<String, String>,
    memory: &BTreeMap<String, f64>,
    inventory_seconds_per_target: f64,
    targets: f64,
    targets_per_batch: f64,
    polls: f64,
) -> Cost {
    let functions = state_functions();
    let batches = (targets / targets_per_batch).ceil();
    let entered = |name: &str| run.entered.get(name).copied().unwrap_or_default() as f64;
    let processor_transitions: f64 = processor.keys().map(|n| entered(n)).sum();
    let run_polls = entered("PollCommands").max(1.0);
    let poll_cycle_transitions = entered("WaitForCommands") + entered("PollCommands") + entered("CommandsFinished");
    let per_poll_transitions = poll_cycle_transitions / run_polls;
    let per_batch_fixed_transitions = (processor_transitions - poll_cycle_transitions) / run.batches.max(1) as f64;
    let parent_transitions = run.transitions as f64 - processor_transitions;
    let transitions = parent_transitions + batches * (per_batch_fixed_transitions + polls * per_poll_transitions);

    let mut invocations = 0.0;
    let mut gb_seconds = 0.0;
    let scale = targets / run.targets.max(1) as f64;
    for (state, time) in &run.task_times {
        let function = functions.get(state.as_str()).copied().unwrap_or("");
        let gb = memory.get(function).copied().unwrap_or(128.0) / 1024.0;
        let mean_seconds = time.total_millis / 1000.0 / time.invocations.max(1) as f64;
        let (count, seconds_each) = match state.as_str() {
            // Over the whole wave: the inventory's time per target as measured at full scale.
            "Inventory" => (time.invocations as f64, inventory_seconds_per_target * targets),
            // The wave summary reads every instance record of the wave: linear in targets.
            "SummarizeWave" => (time.invocations as f64, mean_seconds * scale),
            "SendCommands" | "VerifyBatch" => (batches, mean_seconds),
            "PollCommands" => (batches * polls, mean_seconds),
            _ => (time.invocations as f64, mean_seconds),
        };
        invocations += count;
        gb_seconds += count * seconds_each * gb;
    }
    let dollars =
        transitions * PRICE_PER_TRANSITION + invocations * PRICE_PER_REQUEST + gb_seconds * PRICE_PER_GB_SECOND;
    Cost { polls_per_batch: polls, transitions, invocations, gb_seconds, dollars }
}

/// The events one batch costs in a history: the iteration's (or child execution's) start and
/// end, the send and verify tasks, and `polls` x (wait, poll task, choice).
pub fn batch_events(run: &WaveRun, polls: f64) -> f64 {
    let per = |kind: &str, default: f64| run.events_per_state.get(kind).copied().unwrap_or(default);
    2.0 + per("Task", 5.0) * (2.0 + polls) + (per("Wait", 2.0) + per("Choice", 2.0)) * polls
}

#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub cold: &'a [ColdStart],
    pub fanout: &'a FanOut,
    /// One target with one instance: the parent's events with the least to patch.
    pub tiny: &'a WaveRun,
    pub small: &'a WaveRun,
    pub large: &'a WaveRun,
    /// Calls one PollSsmCommand invocation makes for a batch of the large run (measured).
    pub calls_per_poll: &'a BTreeMap<String, u64>,
    /// Bytes that invocation logged.
    pub log_bytes_per_poll: f64,
    /// The time-scaled polling run.
    pub polling: &'a crate::polling::Polling,
    pub processor: &'a BTreeMap<String, String>,
    pub memory: &'a BTreeMap<String, f64>,
    /// The scale the figures are stated for (1000 accounts x 3 regions x 50 instances).
    pub scale_accounts: usize,
    pub scale_regions: usize,
    pub scale_instances: usize,
    /// The deployed defaults (targets per batch, poll schedule, command timeout).
    pub settings: &'a PatchSettings,
}

/// Spoke calls (STS, EC2, SSM) in `calls`, without the hub's own SSM parameter reads.
fn spoke_calls(calls: &BTreeMap<String, u64>) -> f64 {
    calls
        .iter()
        .filter(|(k, _)| {
            (k.starts_with("sts:") || k.starts_with("ec2:") || k.starts_with("ssm:"))
                && k.as_str() != "ssm:GetParameter"
        })
        .map(|(_, v)| *v as f64)
        .sum()
}

/// Calls made by the benchmark itself, standing in for people and tools: starting and watching
/// the execution, clicking the approval link.
const HARNESS_CALLS: &[&str] =
    &["states:StartExecution", "states:DescribeExecution", "states:GetExecutionHistory", "apigateway:/callback"];

/// Every AWS call the product made (the harness's own calls left out).
fn all_calls(calls: &BTreeMap<String, u64>) -> f64 {
    calls.iter().filter(|(k, _)| !HARNESS_CALLS.contains(&k.as_str())).map(|(_, v)| *v as f64).sum()
}

pub fn figures(inputs: &Inputs<'_>) -> Vec<Figure> {
    let mut out = Vec::new();
    for c in inputs.cold {
        let sides = if c.same_calls { "same AWS calls both sides" } else { "AWS CALLS DIFFER between the sides" };
        out.push(
            Figure::new(
                format!("coldStart.{}.millis", c.bin),
                "cold start",
                format!("{} cold start + first invoke (HTTPS)", c.function),
                c.rust_millis.median,
                "ms",
            )
            .against(c.python_millis.median, "Python (boto3 + awslambdaric)")
            .runs(c.rust.len(), c.rust_millis, Some(c.millis_ratio))
            .target(Bound::AtMost, 0.1, "ratio")
            .note(format!(
                "{}; median (min-max) of {} runs per side, the sides alternating which goes first, ratio: median of the runs' ratios; Python {:.0} ms ({:.0}-{:.0}); AWS over TLS (a CA made for the run, each side's standard trust setting); {sides}; without the time the emulator took to answer: {:.1} ms vs {:.0} ms ({:.3}x)",
                c.calls,
                c.rust.len(),
                c.python_millis.median,
                c.python_millis.min,
                c.python_millis.max,
                c.rust_own_millis.median,
                c.python_own_millis.median,
                c.rust_own_millis.median / c.python_own_millis.median.max(f64::MIN_POSITIVE),
            )),
        );
        out.push(
            Figure::new(
                format!("coldStart.{}.peakRssMib", c.bin),
                "cold start",
                format!("{} peak RSS", c.function),
                c.rust_peak_rss_mib.median,
                "MiB",
            )
            .against(c.python_peak_rss_mib.median, "Python (boto3 + awslambdaric)")
            .runs(c.rust.len(), c.rust_peak_rss_mib, Some(c.peak_rss_ratio))
            .target(Bound::AtMost, 0.25, "ratio")
            .note(format!(
                "VmHWM at the first answer; median (min-max) of {} runs per side, ratio: median of the runs' ratios; Python {:.1} MiB ({:.1}-{:.1})",
                c.rust.len(),
                c.python_peak_rss_mib.median,
                c.python_peak_rss_mib.min,
                c.python_peak_rss_mib.max
            )),
        );
    }

    let f = inputs.fanout;
    let runs = f.runs.len();
    out.push(
        Figure::new(
            "fanout.inventorySeconds",
            "inventory fan-out",
            format!("inventory {} accounts x {} regions", f.accounts, f.regions),
            f.inventory_seconds,
            "s",
        )
        .against(f.raw_seconds, "tight client, same calls")
        .runs(runs, f.spread(|r| r.inventory_seconds), Some(f.ratio(|r| r.inventory_seconds, |r| r.raw_seconds)))
        .target(Bound::AtMost, 1.25, "ratio")
        .note(format!(
            "{} targets, {} instances, concurrency {}; median (min-max) of {runs} runs (the tight client first in each), ratio: median of the runs' ratios; tight client {:.1} s ({:.1}-{:.1}); {} AWS calls by the handler, {} by the tight client",
            f.targets,
            f.instances,
            f.concurrency,
            f.raw_seconds,
            f.spread(|r| r.raw_seconds).min,
            f.spread(|r| r.raw_seconds).max,
            all_calls(&f.inventory_calls),
            all_calls(&f.raw_calls)
        )),
    );
    let sequential = f.spread(|r| r.sequential_sample_seconds);
    out.push(
        Figure::new("fanout.latencyInventorySeconds", "inventory fan-out", format!("inventory with {} ms per AWS call", f.latency_ms), f.inventory_latency_seconds, "s")
            .against(f.sequential_seconds, "sequential loop, same calls")
            .runs(runs, f.spread(|r| r.inventory_latency_seconds), Some(f.ratio(|r| r.inventory_latency_seconds, |r| r.sequential_seconds)))
            .target(Bound::AtMost, 0.1, "ratio")
            .note(format!(
                "deployed concurrency {}; median (min-max) of {runs} runs, ratio: median of the runs' ratios; the sequential loop timed in each run over {} targets ({:.1} s, {:.1}-{:.1}) and scaled to {} targets (linear: the same calls per target)",
                f.concurrency, f.sequential_sample_targets, sequential.median, sequential.min, sequential.max, f.targets
            )),
    );

    out.push(
        Figure::new(
            "fanout.latencyInventoryWiderSeconds",
            "inventory fan-out",
            format!("same, EC2PATCH_INVENTORY_CONCURRENCY={}", f.wider_concurrency),
            f.inventory_latency_wider_seconds,
            "s",
        )
        .against(f.sequential_seconds, "sequential loop, same calls")
        .runs(
            runs,
            f.spread(|r| r.inventory_latency_wider_seconds),
            Some(f.ratio(|r| r.inventory_latency_wider_seconds, |r| r.sequential_seconds)),
        )
        .target(Bound::AtMost, 0.1, "ratio")
        .note(format!(
            "the deployed default is {}; a setting of the hub module (inventory_concurrency); median (min-max) of {runs} runs",
            f.concurrency
        )),
    );

    // Orchestration cost of one wave of 1000 targets, 30-minute patch.
    let settings = inputs.settings;
    let per_batch = settings.targets_per_batch as f64;
    // Polls per batch for a 30-minute patch: the time-scaled run's median (adaptive waits).
    let polling = inputs.polling;
    let measured_polls: Vec<f64> = polling.batches.iter().map(|b| f64::from(b.polls)).collect();
    let backoff_polls = crate::coldstart::median(&mut measured_polls.clone());
    let most_polls = measured_polls.iter().copied().fold(backoff_polls, f64::max);
    let fixed_polls = f64::from(PATCH_SECONDS / FIXED_POLL_SECONDS);
    let inventory_per_target = f.inventory_seconds / f.targets.max(1) as f64;
    let cost = |polls| {
        wave_cost(inputs.large, inputs.processor, inputs.memory, inventory_per_target, 1000.0, per_batch, polls)
    };
    let (backoff, fixed) = (cost(backoff_polls), cost(fixed_polls));
    out.push(
        Figure::new("cost.per1000TargetsDollars", "orchestration cost", "one wave, 1000 targets, 30-min patch", backoff.dollars, "$")
            .target(Bound::AtMost, 1.0, "value")
            .note(format!(
                "{:.0} transitions, {:.0} Lambda requests, {:.1} GB-s; {} polls per batch of {}; $0.025/1000 transitions, $0.20/M requests, $0.0000133334/GB-s (arm64)",
                backoff.transitions, backoff.invocations, backoff.gb_seconds, backoff_polls, per_batch
            )),
    );
    out.push(
        Figure::new(
            "cost.vsFixedPoll",
            "orchestration cost",
            "same wave vs a fixed 30 s poll loop",
            backoff.dollars,
            "$",
        )
        .against(fixed.dollars, "fixed 30 s polls")
        .target(Bound::AtMost, 0.25, "ratio")
        .note(format!(
            "fixed loop: {:.0} transitions, {:.0} requests, {:.1} GB-s ({} polls per batch)",
            fixed.transitions, fixed.invocations, fixed.gb_seconds, fixed_polls
        )),
    );
    let wave_targets = (inputs.scale_accounts * inputs.scale_regions) as f64;
    let at_scale = wave_cost(
        inputs.large,
        inputs.processor,
        inputs.memory,
        inventory_per_target,
        wave_targets,
        per_batch,
        backoff_polls,
    );
    out.push(
        Figure::new(
            "cost.waveAtScaleDollars",
            "orchestration cost",
            format!("one wave, {} accounts x {} regions, 30-min patch", inputs.scale_accounts, inputs.scale_regions),
            at_scale.dollars,
            "$",
        )
        .note(format!(
            "{:.0} transitions (${:.3}), {:.0} Lambda requests (${:.4}), {:.0} GB-s (${:.3})",
            at_scale.transitions,
            at_scale.transitions * PRICE_PER_TRANSITION,
            at_scale.invocations,
            at_scale.invocations * PRICE_PER_REQUEST,
            at_scale.gb_seconds,
            at_scale.gb_seconds * PRICE_PER_GB_SECOND
        )),
    );
    out.push(
        Figure::new(
            "cost.perTargetDollars",
            "orchestration cost",
            "per account x region target",
            backoff.dollars / 1000.0,
            "$",
        )
        .against(fixed.dollars / 1000.0, "fixed 30 s polls")
        .note("one wave's cost / 1000"),
    );

    // The whole bill: every service, per 1000 targets and per instance (the difference between
    // the 50- and the 5-instance runs, per instance added).
    let bill_of = |run: &WaveRun| {
        let cost =
            wave_cost(run, inputs.processor, inputs.memory, inventory_per_target, 1000.0, per_batch, backoff_polls);
        let usage = bill::Usage {
            calls: &run.aws_calls,
            items: &run.dynamodb_items,
            run_targets: run.targets as f64,
            log_bytes: run.log_bytes as f64,
            log_bytes_per_poll: inputs.log_bytes_per_poll,
            run_polls: run.entered.get("PollCommands").copied().unwrap_or_default() as f64,
        };
        let batches = (1000.0 / per_batch).ceil();
        let children = if batches as u64 > ec2patch_core::asl::INLINE_MAP_MAX_BATCHES { batches } else { 0.0 };
        bill::wave_bill(&cost, &usage, 1000.0, batches, children)
    };
    let (bill_small, bill_large) = (bill_of(inputs.small), bill_of(inputs.large));
    out.push(
        Figure::new(
            "cost.billPer1000TargetsDollars",
            "whole bill",
            format!("whole bill, 1000 targets x {} instances, 30-min patch", inputs.large.instances_per_target),
            bill_large.dollars,
            "$",
        )
        .target(Bound::AtMost, 0.5, "value")
        .note(
            bill_large
                .parts
                .iter()
                .map(|p| format!("{} ${:.4} ({:.1} {}: {})", p.service, p.dollars, p.units, p.unit, p.basis))
                .collect::<Vec<_>>()
                .join("; "),
        ),
    );
    let added_instances =
        1000.0 * (inputs.large.instances_per_target as f64 - inputs.small.instances_per_target as f64).max(1.0);
    out.push(
        Figure::new(
            "cost.billPerInstanceDollars",
            "whole bill",
            "marginal cost per instance",
            (bill_large.dollars - bill_small.dollars) / added_instances,
            "$",
        )
        .note(format!(
            "(bill at {} instances/target ${:.4} - at {} ${:.4}) / {added_instances:.0} instances",
            inputs.large.instances_per_target,
            bill_large.dollars,
            inputs.small.instances_per_target,
            bill_small.dollars
        )),
    );

    // History: the parent's events do not depend on the wave's size (the Distributed Map's
    // children carry the batches); the largest child is one batch.
    let large = inputs.large;
    let scale_targets = inputs.scale_accounts * inputs.scale_regions;
    let scale_batches = scale_targets.div_ceil(settings.targets_per_batch.max(1));
    let distributed = scale_batches as u64 > ec2patch_core::asl::INLINE_MAP_MAX_BATCHES;
    out.push(
        Figure::new("history.parentEvents", "history", format!("parent events, {} x {} ({} batches)", inputs.scale_accounts, inputs.scale_regions, scale_batches), large.parent_events as f64, "events")
            .against(HISTORY_LIMIT, "hard limit")
            .target(Bound::AtMost, 5000.0, "value")
            .note(format!(
                "measured outside the patch Map: {} events at 1 target x 1 instance, {} at {} targets x {} instances, {} at {} x {}: flat in targets and instances; at {} batches the wave takes the {} path, whose map run adds the same 4 Map-state events",
                inputs.tiny.parent_events, inputs.small.parent_events, inputs.small.targets, inputs.small.instances_per_target,
                large.parent_events, large.targets, large.instances_per_target,
                scale_batches, if distributed { "Distributed Map" } else { "inline Map" }
            )),
    );
    let timeout_polls = f64::from(polls_for(settings, settings.command_timeout_seconds));
    let measured_max_polls = large.polls_per_batch.values().copied().max().unwrap_or_default() as f64;
    out.push(
        Figure::new("history.largestChildEvents", "history", "largest child execution (one batch), 30-min patch", batch_events(large, most_polls), "events")
            .against(HISTORY_LIMIT, "hard limit")
            .target(Bound::AtMost, HISTORY_LIMIT, "value")
            .note(format!(
                "per batch: 2 + {:.1} x (send, verify, {} polls: the most of the time-scaled run) task events + wait/choice events, from the measured events per state; a batch polled until the {} s command timeout: {:.0} events; measured locally: {:.0} events for the batch with most polls ({} polls)",
                large.events_per_state.get("Task").copied().unwrap_or(5.0), most_polls, settings.command_timeout_seconds,
                batch_events(large, timeout_polls), batch_events(large, measured_max_polls), measured_max_polls
            )),
    );

    // Largest payload: flat in instances; what grows with targets is the summary's batch list.
    let summary_growth = match (f.summary_bytes_all_regions, summary_bytes(large)) {
        (Some(full), Some(measured)) => full as f64 - measured as f64,
        _ => f64::NAN,
    };
    // Counts at 150,000 instances are up to two digits wider than in the measured summaries.
    let widen = 8.0;
    let projected = large.largest_payload_bytes as f64 + summary_growth + widen;
    out.push(
        Figure::new("payload.largestBytes", "payload", format!("largest state payload, {} x {} x {}", inputs.scale_accounts, inputs.scale_regions, inputs.scale_instances), projected, "bytes")
            .against(262_144.0, "256 KiB limit")
            .target(Bound::AtMost, 32_768.0, "value")
            .note(format!(
                "measured {} B ({}) at {} x {} x {} and {} B at {} x {} x {}; + {:.0} B: the inventory summary measured at {} targets minus at {} (its batch list grows with targets) + {widen} B wider counts",
                large.largest_payload_bytes, large.largest_payload_state, large.accounts, large.regions, large.instances_per_target,
                inputs.small.largest_payload_bytes, inputs.small.accounts, inputs.small.regions, inputs.small.instances_per_target,
                summary_growth, f.summary_targets_all_regions.unwrap_or_default(), large.targets
            )),
    );

    // AWS calls per target, without polls; and polls per target.
    for (key, run) in [("5", inputs.small), ("50", inputs.large)] {
        let polls = run.entered.get("PollCommands").copied().unwrap_or_default() as f64;
        // A poll lists a command's invocations until it has ended, then keeps them on its
        // record: a poll measured on a finished batch makes no listing, so every listing of
        // the run counts as the polls' (verification reads the kept ones), and the measured
        // poll's own calls without listings once per poll.
        let listing = "ssm:ListCommandInvocations";
        let without_listings = |calls: &BTreeMap<String, u64>| {
            calls.iter().filter(|(k, _)| k.as_str() != listing).map(|(k, v)| (k.clone(), *v)).collect()
        };
        let per_poll: BTreeMap<String, u64> = without_listings(inputs.calls_per_poll);
        let per_poll_spoke = spoke_calls(&per_poll);
        let per_poll_all = all_calls(&per_poll) + 1.0; // + the Lambda invoke itself
        let run_calls: BTreeMap<String, u64> = without_listings(&run.aws_calls);
        let targets = run.targets.max(1) as f64;
        let spoke = (spoke_calls(&run_calls) - polls * per_poll_spoke) / targets;
        let all = (all_calls(&run_calls) - polls * per_poll_all) / targets;
        out.push(
            Figure::new(format!("calls.spokePerTarget.{key}"), "AWS calls", format!("spoke calls per target, {} instances/target", run.instances_per_target), spoke, "calls")
                .target(Bound::AtMost, 8.0, "value")
                .note(format!("STS, EC2, SSM in the spokes, without the {polls} poll invocations' reads (every ListCommandInvocations, + {per_poll_spoke} spoke calls each, measured on a warm poller); every AssumeRole counted, the polls' included")),
        );
        out.push(
            Figure::new(
                format!("calls.allPerTarget.{key}"),
                "AWS calls",
                format!("all AWS calls per target, {} instances/target", run.instances_per_target),
                all,
                "calls",
            )
            .target(Bound::AtMost, 12.0, "value")
            .note("spoke + hub (DynamoDB, S3, SNS, Lambda invokes by the state machine), without polls"),
        );
    }
    let doubling_polls: Vec<f64> = polling.batches.iter().map(|b| f64::from(b.doubling_polls)).collect();
    let spread = |values: &[f64]| {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (crate::coldstart::median(&mut values.to_vec()), min, max)
    };
    let instances: Vec<String> = polling.batches.iter().map(|b| b.instances.to_string()).collect();
    let (_, polls_min, polls_max) = spread(&measured_polls);
    out.push(
        Figure::new("calls.pollsPerTarget", "completion seen", format!("polls per batch, {}-min patch", PATCH_SECONDS / 60), backoff_polls, "polls")
            .against(spread(&doubling_polls).0, "30 s doubling to 300 s alone")
            .target(Bound::AtMost, 12.0, "value")
            .note(format!(
                "median of {} batches (instances per command: {}), min {polls_min}, max {polls_max}; time-scaled x{}; one ListCommandInvocations per command (<= 50 instances) per poll; a fixed 30 s loop: {fixed_polls} polls",
                polling.batches.len(), instances.join(", "), polling.scale
            )),
    );
    let delays: Vec<f64> = polling.batches.iter().map(|b| b.delay_seconds).collect();
    let doubling_delays: Vec<f64> = polling.batches.iter().map(|b| b.doubling_delay_seconds).collect();
    let (delay, delay_min, delay_max) = spread(&delays);
    let (doubling_delay, doubling_min, doubling_max) = spread(&doubling_delays);
    out.push(
        Figure::new("polling.delaySeconds", "completion seen", "command finished -> hub sees it (median)", delay, "s")
            .against(doubling_delay, "30 s doubling to 300 s alone")
            .target(Bound::AtMost, 60.0, "value")
            .note(format!(
                "min {delay_min:.0} s, max {delay_max:.0} s over {} batches (doubling alone: {doubling_min:.0}-{doubling_max:.0} s, computed on the same measured command durations); time-scaled x{}: one real second is {} s here",
                polling.batches.len(), polling.scale, polling.scale
            )),
    );
    out
}

/// The wave's inventory summary in a run's history (compact JSON bytes).
pub fn summary_bytes(run: &WaveRun) -> Option<usize> {
    run.inventory_summary.as_ref().map(|s| s.len())
}
