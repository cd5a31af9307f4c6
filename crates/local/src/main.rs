//! `ec2patch-local`: runs ec2patch on the local AWS stack, against a simulated estate.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use ec2patch_core::status::InventoryStatus;
use ec2patch_core::store;
use ec2patch_inventory::WaveManifest;
use ec2patch_local::{EstateSpec, LocalStack, LocalStackOptions, SeedKind};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "ec2patch-local",
    version,
    about = "Run ec2patch on the local AWS stack (moto) against a simulated estate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Seed spoke accounts, run the real state machine's inventory over them, print what it found.
    Inventory(InventoryArgs),
}

#[derive(Debug, clap::Args)]
struct InventoryArgs {
    /// Spoke accounts to simulate.
    #[arg(long, default_value_t = 4)]
    accounts: usize,
    /// Regions per account (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "us-east-1,eu-west-1")]
    regions: Vec<String>,
    /// Waves to split the accounts into.
    #[arg(long, default_value_t = 2)]
    waves: usize,
    /// Per account x region: patchable instances (tagged, running, SSM online).
    #[arg(long, default_value_t = 3)]
    patchable: usize,
    /// Per account x region: tagged instances SSM does not manage.
    #[arg(long, default_value_t = 1)]
    unmanaged: usize,
    /// Per account x region: tagged instances whose SSM agent lost its connection.
    #[arg(long, default_value_t = 1)]
    offline: usize,
    /// Per account x region: running instances without the PatchGroup tag (must not be listed).
    #[arg(long, default_value_t = 1)]
    untagged: usize,
    /// Accounts (the last ones) whose PatchExecRole refuses the hub.
    #[arg(long, default_value_t = 1)]
    denied: usize,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inventory(args) => inventory(args).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn inventory(args: InventoryArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.accounts > 0, "--accounts must be at least 1");
    anyhow::ensure!((1..=args.accounts).contains(&args.waves), "--waves must be between 1 and --accounts");
    let started = Instant::now();
    eprintln!("Starting the local AWS stack (moto + router) ...");
    let stack = LocalStack::start(LocalStackOptions::default()).await?;
    eprintln!("  router {}  moto :{}  state machine {}", stack.router.url(), stack.moto.port, stack.state_machine_arn);

    let spec = EstateSpec {
        accounts: args.accounts,
        regions: args.regions.clone(),
        per_target: BTreeMap::from([
            (SeedKind::Patchable, args.patchable),
            (SeedKind::Unmanaged, args.unmanaged),
            (SeedKind::Offline, args.offline),
            (SeedKind::Untagged, args.untagged),
        ]),
        denied_accounts: args.denied.min(args.accounts),
        ..EstateSpec::default()
    };
    let estate = stack.seed(&spec).await?;
    eprintln!(
        "Seeded {} instances in {} accounts x {} regions ({} account(s) refuse the hub's role)",
        estate.instances.len(),
        estate.accounts.len(),
        estate.regions.len(),
        estate.denied.len()
    );
    stack.router.reset_calls();

    let per_wave = estate.accounts.len().div_ceil(args.waves);
    let waves: Vec<_> = estate
        .accounts
        .chunks(per_wave)
        .map(|accounts| json!({"accounts": accounts, "regions": estate.regions}))
        .collect();
    // A dry run: inventory, a Scan and its verification, without waiting for an approval.
    let input = json!({
        "accountWaves": waves,
        "ec2": {"tagKey": "PatchGroup", "tagValue": "default"},
        "abortOnIssues": false,
        "dryRun": true
    });
    let run_id = format!("local-inventory-{}", ec2patch_core::time::now_epoch_seconds());
    eprintln!("Starting execution {run_id} ({} waves) ...", waves.len());
    let arn = stack.start_execution(&run_id, &input).await?;
    let execution = stack.wait_for_execution(&arn, Duration::from_secs(600)).await?;
    let history = stack.history(&arn).await?;

    let mut manifests = Vec::new();
    for wave in 0..waves.len() {
        let manifest: WaveManifest = stack
            .hub
            .store
            .get_json(&store::manifest_key(&run_id, wave))
            .await
            .with_context(|| format!("manifest of wave {wave}"))?;
        manifests.push(manifest);
    }
    let calls = stack.router.calls();
    let succeeded = execution.status == aws_sdk_sfn::types::ExecutionStatus::Succeeded;

    match args.output {
        Output::Json => {
            let report = json!({
                "runId": run_id,
                "executionArn": arn,
                "status": execution.status.as_str(),
                "output": execution.output.as_deref().and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok()),
                "historyEvents": history.len(),
                "waves": manifests,
                "awsCalls": calls,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Output::Table => {
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED).set_header([
                "wave",
                "account",
                "region",
                "status",
                "instances",
                "patchable",
                "offline",
                "unmanaged",
                "note",
            ]);
            for manifest in &manifests {
                for target in &manifest.targets {
                    let count = |pred: &dyn Fn(&ec2patch_inventory::DiscoveredInstance) -> bool| {
                        target.instances.iter().filter(|i| pred(i)).count().to_string()
                    };
                    let (status, note) = match &target.failure {
                        Some(failure) => (
                            InventoryStatus::Failed.as_str(),
                            format!("{}: {}", failure.error_type, truncate(&failure.message, 60)),
                        ),
                        None => ("ok", String::new()),
                    };
                    table.add_row([
                        manifest.wave_name.clone(),
                        target.account.clone(),
                        target.region.clone(),
                        status.to_owned(),
                        target.instances.len().to_string(),
                        count(&|i| i.is_patchable()),
                        count(&|i| matches!(i.ssm, ec2patch_inventory::SsmStatus::Offline { .. })),
                        count(&|i| i.ssm == ec2patch_inventory::SsmStatus::NotManaged),
                        note,
                    ]);
                }
            }
            println!("{table}");
            let mut api = Table::new();
            api.load_preset(UTF8_FULL_CONDENSED).set_header(["AWS call (during the run)", "count"]);
            for (operation, count) in &calls {
                api.add_row([operation.clone(), count.to_string()]);
            }
            println!("{api}");
            println!(
                "Execution {}: {} ({} history events). Manifests: s3://{}/runs/{run_id}/. Total time {:.1}s.",
                run_id,
                execution.status.as_str(),
                history.len(),
                stack.hub.config.bucket,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(if succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(max).collect::<String>())
    }
}
