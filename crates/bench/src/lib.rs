//! ec2patch's benchmark: every figure docs/performance.md reports, measured side by side in one
//! run on the local stack (moto + router), printed as a table and written as JSON.
//!
//! - [`coldstart`]: each function binary's cold start and peak memory vs a Python equivalent,
//!   both reaching AWS over HTTPS ([`tls`]);
//! - [`fanout`]: the inventory over N accounts x regions vs the emulator's capacity, and with
//!   per-call latency vs a sequential loop, each comparison repeated;
//! - [`waves`]: real patch waves through the committed state machine, for transitions, history,
//!   payloads, Lambda durations and AWS calls;
//! - [`figures`]: the figures, their targets and the projections to full scale;
//! - [`scale`]: one real wave of 1000 accounts x 3 regions through the Distributed Map.

pub mod bill;
pub mod coldstart;
pub mod fanout;
pub mod figures;
pub mod polling;
pub mod runtime_api;
pub mod scale;
pub mod tls;
pub mod waves;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use ec2patch_core::config::PatchSettings;
use ec2patch_local::{LocalStack, LocalStackOptions};
use serde::Serialize;

use crate::figures::{Bound, Figure};

/// The function crates (their binaries are what Lambda runs).
pub static FUNCTION_CRATES: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| ec2patch_local::functions::ALL.iter().map(|f| f.crate_name()).collect());

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    /// Where the function binaries are (`target/release` or `target/debug`).
    pub binaries: PathBuf,
    /// Build them first with this cargo profile (`release` or `dev`); `None`: use what is there.
    pub build_profile: Option<String>,
    pub cold_start_runs: usize,
    /// One unmeasured cold start per function and side first (page cache warm for both).
    pub cold_start_warmup: bool,
    /// Only these functions' cold starts (their Lambda names, e.g. `PlanRun`); empty: all.
    pub cold_start_only: Vec<String>,
    pub fanout_accounts: usize,
    pub fanout_regions: Vec<String>,
    pub extra_region: Option<String>,
    pub fanout_instances: usize,
    pub latency_ms: u64,
    pub sequential_accounts: usize,
    /// Runs of the fan-out's timed comparisons (the estate is seeded once): each figure is the
    /// median of the runs' ratios, with their min and max.
    pub fanout_runs: usize,
    pub wave_accounts: usize,
    pub wave_regions: Vec<String>,
    pub wave_instances_small: usize,
    pub wave_instances_large: usize,
    /// The scale the history and payload figures are stated for.
    pub scale_accounts: usize,
    pub scale_regions: usize,
    pub scale_instances: usize,
    /// The time-scaled polling run: time compression, instances per target of each group of
    /// targets, and targets per group.
    pub polling_scale: u32,
    pub polling_instances: Vec<usize>,
    pub polling_targets_per_group: usize,
    pub output: PathBuf,
}

impl Options {
    /// The documented full run (`cargo run -p ec2patch-bench --release -- all`).
    pub fn full(root: &Path) -> Self {
        Self {
            binaries: target_dir(root).join("release"),
            build_profile: Some("release".to_owned()),
            cold_start_runs: 5,
            cold_start_warmup: true,
            cold_start_only: Vec::new(),
            fanout_accounts: 1000,
            fanout_regions: vec!["us-east-1".to_owned(), "eu-west-1".to_owned()],
            extra_region: Some("ap-southeast-2".to_owned()),
            fanout_instances: 2,
            latency_ms: 50,
            sequential_accounts: 100,
            fanout_runs: 3,
            wave_accounts: 20,
            wave_regions: vec!["us-east-1".to_owned(), "eu-west-1".to_owned(), "ap-southeast-2".to_owned()],
            wave_instances_small: 5,
            wave_instances_large: 50,
            scale_accounts: 1000,
            scale_regions: 3,
            scale_instances: 50,
            polling_scale: 10,
            polling_instances: vec![1, 5, 20, 50],
            polling_targets_per_group: 3,
            output: target_dir(root).join("bench/results.json"),
        }
    }

    /// The CI smoke run: every figure, at a scale that takes well under a minute, with the debug
    /// binaries `cargo test` already built.
    pub fn smoke(root: &Path) -> Self {
        Self {
            binaries: target_dir(root).join("debug"),
            build_profile: None,
            cold_start_runs: 1,
            cold_start_warmup: false,
            fanout_accounts: 10,
            extra_region: Some("ap-southeast-2".to_owned()),
            fanout_instances: 1,
            sequential_accounts: 2,
            fanout_runs: 1,
            wave_accounts: 2,
            wave_instances_small: 1,
            wave_instances_large: 3,
            polling_scale: 300,
            polling_instances: vec![2],
            polling_targets_per_group: 1,
            output: target_dir(root).join("bench/smoke-results.json"),
            ..Self::full(root)
        }
    }
}

/// `CARGO_TARGET_DIR`, else `<root>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Self {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
                .unwrap_or_default(),
            memory_gib: memory_kib / 1024.0 / 1024.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Results {
    pub machine: Machine,
    pub options: Options,
    pub started_at_epoch_seconds: u64,
    pub wall_seconds: f64,
    pub phase_seconds: BTreeMap<String, f64>,
    pub figures: Vec<Figure>,
    pub cold_start: Vec<coldstart::ColdStart>,
    pub fanout: fanout::FanOut,
    pub waves: Vec<waves::WaveRun>,
    pub calls_per_poll: BTreeMap<String, u64>,
    /// The time-scaled polling run, batch by batch.
    pub polling: polling::Polling,
    /// `ValidateStateMachineDefinition` of the deployed definition (Distributed Map included) by
    /// the emulator's ASL parser: `OK`, or its diagnostics.
    pub definition_check: String,
}

/// Asks the emulator to validate the definition the stack deployed: its parser checks the whole
/// definition, the Distributed Map included (which [`scale`] executes).
pub async fn validate_definition(stack: &LocalStack) -> anyhow::Result<String> {
    let definition = ec2patch_core::asl::render(ec2patch_core::asl::ORCHESTRATOR_TEMPLATE, &stack.template_values())?;
    let output = stack
        .sfn()
        .validate_state_machine_definition()
        .definition(definition)
        .send()
        .await
        .context("ValidateStateMachineDefinition")?;
    let diagnostics: Vec<String> =
        output.diagnostics().iter().map(|d| format!("{}: {} at {:?}", d.code(), d.message(), d.location())).collect();
    Ok(if diagnostics.is_empty() { output.result().as_str().to_owned() } else { diagnostics.join("; ") })
}

/// The Python baseline's virtualenv (`.venv-bench`), made on first use; its interpreter.
pub fn python_venv(root: &Path) -> anyhow::Result<PathBuf> {
    ec2patch_local::moto::ensure_venv_at(root, ".venv-bench", &root.join("crates/bench/python/requirements.txt"))
        .context("the Python baseline's virtualenv")
}

/// Builds the function binaries (and this crate, so cargo resolves the same features and the
/// later `cargo run` reuses everything) with one cargo command.
pub fn build(root: &Path, profile: &str) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(root).args(["build", "--locked", "--profile", profile]);
    for krate in FUNCTION_CRATES.iter().map(String::as_str).chain(["ec2patch-bench"]) {
        command.args(["-p", krate]);
    }
    eprintln!("bench: building the function binaries ({profile}) ...");
    let status = command.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the function binaries failed: {status}");
    }
    Ok(())
}

/// Runs every measurement on one local stack and computes the figures.
pub async fn run(root: &Path, options: &Options) -> anyhow::Result<Results> {
    let started = Instant::now();
    let started_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let mut phases = BTreeMap::new();
    // Before any function runs: the bill counts the bytes they log.
    bill::count_function_logs()?;
    let mut phase = |name: &str, since: Instant| {
        let seconds = since.elapsed().as_secs_f64();
        eprintln!("bench: {name} done in {seconds:.1} s");
        phases.insert(name.to_owned(), seconds);
    };

    if let Some(profile) = &options.build_profile {
        let t = Instant::now();
        build(root, profile)?;
        phase("build", t);
    }
    let t = Instant::now();
    let python = python_venv(root)?;
    phase("python venv", t);

    let settings = PatchSettings::default();
    let t = Instant::now();
    let stack = LocalStack::start(LocalStackOptions {
        name_prefix: "bench".to_owned(),
        // The deployed batch size, so per-batch durations and counts are the deployed ones.
        targets_per_batch: settings.targets_per_batch,
        // 50 instances at SSM's 10% concurrency take ~20 simulated seconds: far from a timeout.
        command_timeout_seconds: 600,
        ..LocalStackOptions::default()
    })
    .await?;
    phase("local stack", t);
    let definition_check = validate_definition(&stack).await?;

    let t = Instant::now();
    let cold = coldstart::measure_over_tls(&stack, root, &python, options).await?;
    phase("cold start", t);

    let batches = options.wave_accounts * options.wave_regions.len();
    let batches = batches.div_ceil(settings.targets_per_batch);
    if batches as u64 > ec2patch_core::asl::INLINE_MAP_MAX_BATCHES {
        bail!(
            "{} accounts x {} regions is {batches} batches: more than the inline Map's {} this step measures (the `scale` step runs the Distributed Map)",
            options.wave_accounts,
            options.wave_regions.len(),
            ec2patch_core::asl::INLINE_MAP_MAX_BATCHES
        );
    }
    let t = Instant::now();
    eprintln!("bench: patch waves ...");
    // One target, one instance: what the parent's events are without any batch to speak of.
    let tiny = waves::run(&stack, "bench-wave-tiny", 1, &options.wave_regions[..1], 1, 200).await?;
    let small = waves::run(
        &stack,
        "bench-wave-small",
        options.wave_accounts,
        &options.wave_regions,
        options.wave_instances_small,
        0,
    )
    .await?;
    let large = waves::run(
        &stack,
        "bench-wave-large",
        options.wave_accounts,
        &options.wave_regions,
        options.wave_instances_large,
        100,
    )
    .await?;
    // One poll of a finished batch, in-process, by a warm container (a hub of its own that
    // polled once before): the calls every later poll invocation makes. The first poll's
    // AssumeRole (once per run, account and container) stays in the run's own counts.
    let poller = ec2patch_core::Hub::new(stack.hub.sdk.clone(), stack.hub.config.clone());
    let poll = || -> anyhow::Result<ec2patch_ssm_poll::PollRequest> {
        Ok(serde_json::from_value(
            serde_json::json!({"runId": large.run_id, "waveIndex": 0, "batch": 0, "attempt": 0}),
        )?)
    };
    ec2patch_ssm_poll::handle(&poller, poll()?).await.context("warming the poller")?;
    stack.router.reset_calls();
    let logged_before = bill::log_bytes();
    ec2patch_ssm_poll::handle(&poller, poll()?).await.context("measuring one poll")?;
    let calls_per_poll = stack.router.calls();
    let log_bytes_per_poll = (bill::log_bytes() - logged_before) as f64;
    phase("patch waves", t);

    let t = Instant::now();
    eprintln!("bench: time-scaled polling (x{}) ...", options.polling_scale);
    let polling = polling::measure(
        &stack,
        &polling::PollingOptions {
            scale: options.polling_scale,
            patch_seconds: figures::PATCH_SECONDS,
            instances_per_target: options.polling_instances.clone(),
            targets_per_group: options.polling_targets_per_group,
            first_account: 500,
        },
    )
    .await?;
    phase("polling", t);

    let t = Instant::now();
    eprintln!("bench: inventory fan-out over {} accounts ...", options.fanout_accounts);
    let fanout = fanout::measure(
        &stack,
        &fanout::FanOutOptions {
            accounts: options.fanout_accounts,
            regions: options.fanout_regions.clone(),
            extra_region: options.extra_region.clone(),
            instances_per_target: options.fanout_instances,
            latency: Duration::from_millis(options.latency_ms),
            sequential_accounts: options.sequential_accounts,
            wider_concurrency: 64,
            runs: options.fanout_runs,
        },
    )
    .await?;
    phase("inventory fan-out", t);

    let main_tf = std::fs::read_to_string(root.join("terraform/modules/hub/main.tf"))
        .context("reading the hub module's function table")?;
    let memory = figures::configured_memory_mb(&main_tf);
    let processor = waves::processor_states()?;
    let figures = figures::figures(&figures::Inputs {
        cold: &cold,
        fanout: &fanout,
        tiny: &tiny,
        small: &small,
        large: &large,
        calls_per_poll: &calls_per_poll,
        log_bytes_per_poll,
        polling: &polling,
        processor: &processor,
        memory: &memory,
        scale_accounts: options.scale_accounts,
        scale_regions: options.scale_regions,
        scale_instances: options.scale_instances,
        settings: &settings,
    });
    Ok(Results {
        machine: Machine::detect(),
        options: options.clone(),
        started_at_epoch_seconds: started_at,
        wall_seconds: started.elapsed().as_secs_f64(),
        phase_seconds: phases,
        figures,
        cold_start: cold,
        fanout,
        waves: vec![tiny, small, large],
        calls_per_poll,
        polling,
        definition_check,
    })
}

pub fn write_json(results: &Results, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(results)?).with_context(|| format!("writing {}", path.display()))
}

fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else if magnitude >= 0.01 {
        format!("{value:.3}")
    } else {
        format!("{value:.6}")
    }
}

fn with_unit(value: f64, unit: &str) -> String {
    match unit {
        "$" => format!("${}", number(value)),
        unit => format!("{} {unit}", number(value)),
    }
}

/// The table: every figure, its baseline and ratio, the target and whether it is met.
pub fn table(results: &Results) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "figure",
        "measured",
        "compared with",
        "ratio",
        "target",
        "result",
    ]);
    for figure in &results.figures {
        let baseline = match (&figure.baseline, &figure.baseline_label) {
            (Some(value), Some(label)) => format!("{} ({label})", with_unit(*value, figure.unit)),
            _ => String::new(),
        };
        let ratio = figure.ratio.map(|r| format!("{}x", number(r))).unwrap_or_default();
        let target = figure
            .target
            .as_ref()
            .map(|t| {
                let bound = if t.bound == Bound::AtMost { "<=" } else { ">=" };
                if t.applies_to == "ratio" {
                    format!("ratio {bound} {}", number(t.value))
                } else {
                    format!("{bound} {}", with_unit(t.value, figure.unit))
                }
            })
            .unwrap_or_default();
        let result = match (figure.met, figure.miss_factor) {
            (Some(true), _) => "met".to_owned(),
            (Some(false), Some(factor)) => format!("MISSED by {}x", number(factor)),
            (Some(false), None) => "MISSED".to_owned(),
            (None, _) => String::new(),
        };
        // A median of several runs: "median (min-max)".
        let measured = match (figure.value_min, figure.value_max) {
            (Some(min), Some(max)) => {
                format!("{} ({}-{})", with_unit(figure.value, figure.unit), number(min), number(max))
            }
            _ => with_unit(figure.value, figure.unit),
        };
        let ratio = match (figure.ratio_min, figure.ratio_max) {
            (Some(min), Some(max)) if !ratio.is_empty() => format!("{ratio} ({}-{})", number(min), number(max)),
            _ => ratio,
        };
        table.add_row([figure.label.clone(), measured, baseline, ratio, target, result]);
    }
    table
}

/// Every figure's key, for checks that a run produced all of them.
pub fn figure_keys(results: &Results) -> Vec<&str> {
    results.figures.iter().map(|f| f.key.as_str()).collect()
}
