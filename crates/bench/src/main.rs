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
    /// Measure the debug (dev profile) binaries instead of release ones: for the counts (calls,
    /// polls, delays, the bill) when a release build does not fit; timings are then not Lambda's.
    #[arg(long)]
    debug: bool,
    /// Runs of each inventory fan-out comparison (the figures are the median ratio, with min and max).
    #[arg(long, default_value_t = 3)]
    fanout_runs: usize,
    /// Accounts of the patch waves (x 3 regions; at most 10 batches of 10 targets: moto runs only the inline Map).
    #[arg(long, default_value_t = 20)]
    wave_accounts: usize,
    /// Where the JSON goes (default target/bench/results.json).
    #[arg(long)]
    output: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { command: Command::All(args) } = Cli::parse();
    match all(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn all(args: Args) -> anyhow::Result<()> {
    let root = ec2patch_local::moto::repo_root();
    // Shown in the output: the plain path, not crates/local/../..
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let mut options = ec2patch_bench::Options::full(&root);
    if args.debug {
        options.binaries = ec2patch_bench::target_dir(&root).join("debug");
        options.build_profile = Some("dev".to_owned());
    }
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
