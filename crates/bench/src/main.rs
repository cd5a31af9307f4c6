//! `ec2patch-bench`: measures what docs/performance.md reports, prints a table and writes JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ec2patch-bench", version, about = "ec2patch benchmarks on the local AWS stack")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the release function binaries, measure everything, print the table, write the JSON.
    All(Args),
    /// One real wave at fleet scale through the Distributed Map (approval included); prints the
    /// measured figures and writes them as JSON (default target/bench/scale.json).
    Scale(ScaleArgs),
    /// Only the cold starts (Rust vs Python over HTTPS), on a local stack of their own: prints each
    /// function's times, peak RSS, ratios and AWS calls per side.
    ColdStart(ColdStartArgs),
    /// Boot one PlanRun binary (e.g. the packaged arm64 bootstrap under qemu-aarch64) against
    /// the Runtime API and a local stack; it must answer its invocation (.ci/package).
    Boot(BootArgs),
}

#[derive(Debug, clap::Args)]
struct ScaleArgs {
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    #[arg(long, default_value_t = 3)]
    regions: usize,
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ColdStartArgs {
    /// Measured cold starts per function and side (after one warm-up).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The debug binaries (target/debug) as they are, instead of building the release ones.
    #[arg(long)]
    debug: bool,
    /// The release binaries as they are (no cargo build first).
    #[arg(long)]
    no_build: bool,
    /// Only this function's cold starts (its Lambda name, e.g. PlanRun); repeat for more.
    #[arg(long)]
    only: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct BootArgs {
    /// The PlanRun `bootstrap` to start.
    #[arg(long)]
    bootstrap: PathBuf,
    /// User-mode emulator to start it under (e.g. qemu-aarch64-static); none: run it directly.
    #[arg(long)]
    runner: Option<PathBuf>,
    /// The emulated architecture's libraries (qemu's -L).
    #[arg(long, default_value = "/usr/aarch64-linux-gnu")]
    sysroot: PathBuf,
}

#[derive(Debug, clap::Args)]
struct Args {
    /// Use the function binaries as they are (no cargo build first).
    #[arg(long)]
    no_build: bool,
    /// Measured cold starts per function and side (after one warm-up).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Accounts of the inventory fan-out (x 2 regions).
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// Accounts the sequential loop is timed over (then scaled to --accounts).
    #[arg(long, default_value_t = 100)]
    sequential_accounts: usize,
    /// Runs of the inventory fan-out's timed comparisons (the estate is seeded once): each figure
    /// is the median of the runs' ratios, with min and max.
    #[arg(long, default_value_t = 3)]
    fanout_runs: usize,
    /// Accounts of the patch waves (x 3 regions; at most 10 batches of 10 targets: this step measures the inline Map; `scale` the Distributed Map).
    #[arg(long, default_value_t = 20)]
    wave_accounts: usize,
    /// Where the JSON goes (default target/bench/results.json).
    #[arg(long)]
    output: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::All(args) => all(args).await,
        Command::Scale(args) => scale(args).await,
        Command::ColdStart(args) => cold_start(args).await,
        Command::Boot(args) => boot(args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn scale(args: ScaleArgs) -> anyhow::Result<()> {
    let root = ec2patch_local::moto::repo_root();
    let options = ec2patch_bench::scale::ScaleOptions {
        accounts: args.accounts.max(1),
        regions: args.regions.max(1),
        ..Default::default()
    };
    let run = ec2patch_bench::scale::run(&options).await?;
    ec2patch_bench::scale::print(&run);
    let output = args.output.unwrap_or_else(|| ec2patch_bench::target_dir(&root).join("bench/scale.json"));
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&output, serde_json::to_vec_pretty(&run)?)?;
    println!("JSON: {}", output.display());
    Ok(())
}

async fn all(args: Args) -> anyhow::Result<()> {
    let root = ec2patch_local::moto::repo_root();
    // Shown in the output: the plain path, not crates/local/../..
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let mut options = ec2patch_bench::Options::full(&root);
    if args.no_build {
        options.build_profile = None;
    }
    options.cold_start_runs = args.runs.max(1);
    options.fanout_accounts = args.accounts.max(1);
    options.sequential_accounts = args.sequential_accounts.clamp(1, options.fanout_accounts);
    options.wave_accounts = args.wave_accounts.max(1);
    options.fanout_runs = args.fanout_runs.max(1);
    if let Some(output) = args.output {
        options.output = output;
    }
    let results = ec2patch_bench::run(&root, &options).await?;
    println!("{}", ec2patch_bench::table(&results));
    println!(
        "Machine: {} CPUs ({}), {:.0} GiB, Linux {}. Wall time {:.0} s. JSON: {}",
        results.machine.cpus,
        results.machine.cpu_model,
        results.machine.memory_gib,
        results.machine.kernel,
        results.wall_seconds,
        options.output.display()
    );
    ec2patch_bench::write_json(&results, &options.output)?;
    Ok(())
}

async fn cold_start(args: ColdStartArgs) -> anyhow::Result<()> {
    let root = ec2patch_local::moto::repo_root();
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let mut options = ec2patch_bench::Options::full(&root);
    if args.debug {
        options.binaries = ec2patch_bench::target_dir(&root).join("debug");
        options.build_profile = None;
    }
    if args.no_build {
        options.build_profile = None;
    }
    options.cold_start_only = args.only;
    options.cold_start_runs = args.runs.max(1);
    let cold = ec2patch_bench::coldstart::run(&root, &options).await?;
    for c in &cold {
        let spread = |s: ec2patch_bench::coldstart::Spread| format!("{:.1} ({:.1}-{:.1})", s.median, s.min, s.max);
        println!(
            "{}: {} ms vs Python {} ms, ratio {}; peak RSS {} MiB vs {} MiB, ratio {}; answers {:?}; TLS handshakes {:?} / {:?}; {}",
            c.function,
            spread(c.rust_millis),
            spread(c.python_millis),
            format_ratio(c.millis_ratio),
            spread(c.rust_peak_rss_mib),
            spread(c.python_peak_rss_mib),
            format_ratio(c.peak_rss_ratio),
            c.rust.iter().map(|s| s.answer.as_str()).collect::<Vec<_>>(),
            c.rust.iter().map(|s| s.tls_handshakes).collect::<Vec<_>>(),
            c.python.iter().map(|s| s.tls_handshakes).collect::<Vec<_>>(),
            if c.same_calls { "same AWS calls".to_owned() } else { "AWS CALLS DIFFER".to_owned() },
        );
        println!(
            "    without the emulator's answers: {} ms vs Python {} ms",
            spread(c.rust_own_millis),
            spread(c.python_own_millis)
        );
        println!("    CPU time: {} ms vs Python {} ms", spread(c.rust_cpu_millis), spread(c.python_cpu_millis));
        if let (Some(r), Some(p)) = (c.rust.first(), c.python.first()) {
            println!("    Rust:   {:?}\n    Python: {:?}", r.aws_calls, p.aws_calls);
        }
    }
    Ok(())
}

fn format_ratio(s: ec2patch_bench::coldstart::Spread) -> String {
    format!("{:.3} ({:.3}-{:.3})", s.median, s.min, s.max)
}

async fn boot(args: BootArgs) -> anyhow::Result<()> {
    let launch = match args.runner {
        Some(runner) => ec2patch_bench::coldstart::Launch::Emulated {
            runner,
            sysroot: args.sysroot,
            binary: args.bootstrap.clone(),
        },
        None => ec2patch_bench::coldstart::Launch::Rust { binary: args.bootstrap.clone() },
    };
    let log = std::env::temp_dir().join(format!("ec2patch-boot-{}.log", std::process::id()));
    let sample = ec2patch_bench::coldstart::boot(&launch, &log).await?;
    println!(
        "boot: {} answered its invocation ({}) in {:.0} ms, peak RSS {:.1} MiB, AWS calls {:?}",
        args.bootstrap.display(),
        sample.answer,
        sample.millis,
        sample.peak_rss_kib as f64 / 1024.0,
        sample.aws_calls
    );
    Ok(())
}
