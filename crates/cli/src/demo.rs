//! `ec2patch local demo`: the whole product on this machine. Starts the local AWS stack (moto
//! behind the router, the hub deployed as Terraform deploys it), seeds a simulated estate, runs
//! two waves through the real state machine, serves the approval links on localhost, and ends
//! with the report and a check of its numbers against the estate.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use ec2patch_core::report::{RunReport, Totals};
use ec2patch_local::approvals::{self, ApprovalInbox};
use ec2patch_local::{Estate, EstateSpec, LocalStack, LocalStackOptions, SeedKind};

use crate::connect::{Connection, HubArgs};
use crate::watch::{self, Renderer};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Spoke accounts to simulate.
    #[arg(long, default_value_t = 20)]
    pub accounts: usize,
    /// Regions per account (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "us-east-1,eu-west-1")]
    pub regions: Vec<String>,
    /// Patchable instances per account x region.
    #[arg(long, default_value_t = 3)]
    pub instances: usize,
    /// Instances whose patching fails (one each in the first accounts' first region).
    #[arg(long, default_value_t = 3)]
    pub failing: usize,
    /// Accounts (the last ones) whose PatchExecRole refuses the hub.
    #[arg(long, default_value_t = 1)]
    pub denied: usize,
    /// Approve every wave through the confirmation page's POST, as a person clicking would.
    #[arg(long)]
    pub yes: bool,
    /// Where the report is saved.
    #[arg(long, default_value = "target/ec2patch-demo")]
    pub out: PathBuf,
}

/// What the simulated estate makes the report say.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Expected {
    pub patched: usize,
    pub failed: usize,
    pub skipped: usize,
    pub unreachable: usize,
    /// Account x region targets the hub cannot reach (denied role): no instance records.
    pub targets_failed: usize,
    /// Instances missing patches before (every patchable one: the SSM simulation starts each
    /// with 3 missing) and after (only those whose patch failed).
    pub non_compliant_before: usize,
    pub non_compliant_after: usize,
}

impl Expected {
    pub fn of(estate: &Estate) -> Self {
        let mut expected =
            Expected { targets_failed: estate.denied.len() * estate.regions.len(), ..Expected::default() };
        for instance in estate.expected_inventory() {
            match instance.kind {
                SeedKind::Patchable => {
                    expected.patched += 1;
                    expected.non_compliant_before += 1;
                }
                SeedKind::PatchFails => {
                    expected.failed += 1;
                    expected.non_compliant_before += 1;
                    expected.non_compliant_after += 1;
                }
                SeedKind::Unmanaged | SeedKind::Offline => expected.skipped += 1,
                _ => {}
            }
        }
        expected
    }

    pub fn matches(&self, totals: &Totals) -> bool {
        self.patched == totals.patched
            && self.failed == totals.failed
            && self.skipped == totals.skipped
            && self.unreachable == totals.unreachable
            && self.non_compliant_before == totals.compliance.non_compliant_before
            && self.non_compliant_after == totals.compliance.non_compliant_after
            && totals.timed_out == 0
    }
}

/// What the demo did, for the closing summary.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoResult {
    pub run_id: String,
    pub status: String,
    pub report_html: PathBuf,
    pub report_json: PathBuf,
    pub expected: Expected,
    pub report: RunReport,
    pub numbers_match: bool,
    /// Wall time per phase, seconds.
    pub phases: Vec<(String, f64)>,
}

pub async fn run(args: &DemoArgs, interactive: bool) -> anyhow::Result<DemoResult> {
    if args.accounts < 2 {
        bail!(crate::InvalidInput("--accounts must be at least 2 (the demo runs two waves)".to_owned()));
    }
    if args.denied >= args.accounts {
        bail!(crate::InvalidInput("--denied must leave at least one reachable account".to_owned()));
    }
    if args.regions.is_empty() {
        bail!(crate::InvalidInput("--regions needs at least one region".to_owned()));
    }
    let mut phases = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |name: &str, clock: &mut Instant| {
        phases.push((name.to_owned(), clock.elapsed().as_secs_f64()));
        *clock = Instant::now();
    };

    eprintln!("[1/5] Starting the local AWS stack (moto + router; first use installs moto into .venv) ...");
    let stack = LocalStack::start(LocalStackOptions {
        approval_timeout_seconds: 1800,
        targets_per_batch: 10,
        command_timeout_seconds: 120,
        ..LocalStackOptions::default()
    })
    .await?;
    eprintln!("      router {} (approval links and /callback are served here)", stack.router.url());
    lap("start stack", &mut clock);

    eprintln!(
        "[2/5] Seeding {} accounts x {} regions ({} patchable per target, {} set to fail, {} account(s) refusing the hub) ...",
        args.accounts,
        args.regions.len(),
        args.instances,
        failing_instances(args),
        args.denied
    );
    let estate = seed(&stack, args).await?;
    let expected = Expected::of(&estate);
    eprintln!("      {} instances seeded", estate.instances.len());
    lap("seed estate", &mut clock);

    let hub_args = HubArgs {
        region: None,
        profile: None,
        prefix: stack.options.name_prefix.clone(),
        state_machine_arn: Some(stack.state_machine_arn.clone()),
        table: Some(stack.hub.config.table.clone()),
        bucket: Some(stack.hub.config.bucket.clone()),
    };
    let connection = Connection::with_sdk(stack.sdk.clone(), &hub_args).await?;
    let run_id = format!("demo-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
    let input = two_wave_input(&estate);
    eprintln!("[3/5] Starting run {run_id}: 2 waves, each waits for an approval ...");
    let execution_arn = crate::start::start(&connection, &run_id, &input).await?;
    eprintln!("      {execution_arn}");

    let mut renderer = Renderer::new(interactive);
    let progress = follow_with_approvals(&stack, &connection, &execution_arn, args.yes, &mut renderer).await?;
    lap("run (inventory, approvals, patching)", &mut clock);

    eprintln!("[5/5] Collecting the report ...");
    let report = crate::report::load(&connection, &run_id).await?;
    let dir = args.out.join(&run_id);
    let report_html = dir.join("report.html");
    crate::report::save_html(&connection, &run_id, &report_html).await?;
    let report_json = dir.join("report.json");
    std::fs::write(&report_json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", report_json.display()))?;
    lap("report", &mut clock);

    let numbers_match = expected.matches(&report.totals);
    Ok(DemoResult {
        run_id,
        status: progress.status,
        report_html: std::path::absolute(&report_html).unwrap_or(report_html),
        report_json: std::path::absolute(&report_json).unwrap_or(report_json),
        expected,
        report,
        numbers_match,
        phases,
    })
}

async fn seed(stack: &LocalStack, args: &DemoArgs) -> anyhow::Result<Estate> {
    let mut estate =
        stack.seed(&EstateSpec::operator(args.accounts, &args.regions, args.instances, args.denied)).await?;
    let failing = failing_instances(args);
    if failing > 0 {
        let extra = stack
            .seed(&EstateSpec {
                accounts: failing,
                regions: vec![args.regions[0].clone()],
                per_target: BTreeMap::from([(SeedKind::PatchFails, 1)]),
                denied_accounts: 0,
                concurrency: 8,
                first_account: 0,
            })
            .await?;
        estate.instances.extend(extra.instances);
    }
    Ok(estate)
}

/// Instances whose patch fails: one each in the first (reachable) accounts, so at most one per
/// reachable account.
fn failing_instances(args: &DemoArgs) -> usize {
    args.failing.min(args.accounts.saturating_sub(args.denied))
}

/// Wave 1 is a small canary (a quarter of the accounts, at least one), wave 2 the rest.
fn two_wave_input(estate: &Estate) -> Value {
    let canary = (estate.accounts.len() / 4).max(1);
    let (first, second) = estate.accounts.split_at(canary);
    json!({
        "accountWaves": [
            {"name": "canary", "accounts": first, "regions": estate.regions},
            {"name": "fleet", "accounts": second, "regions": estate.regions},
        ],
        "ec2": {"tagKey": "PatchGroup", "tagValue": "default"},
        "wavePauseSeconds": 0,
        "abortOnIssues": false
    })
}

/// Follows the run; shows each approval email as it arrives and, with `--yes`, approves it
/// through the confirmation page's POST.
async fn follow_with_approvals(
    stack: &LocalStack,
    connection: &Connection,
    execution_arn: &str,
    yes: bool,
    renderer: &mut Renderer,
) -> anyhow::Result<watch::Progress> {
    let mut inbox = ApprovalInbox::every_run();
    loop {
        let progress = watch::snapshot(connection, execution_arn).await?;
        renderer.update(&progress);
        for approval in inbox.take_new(&stack.router) {
            let (mail, link) = (&approval.mail, &approval.approve_link);
            renderer.println(&format!(
                "[4/5] Approval email: {}\n{}\n",
                mail.subject.as_deref().unwrap_or("(no subject)"),
                indent(&mail.message)
            ));
            if yes {
                let status = approvals::approve(link, "ec2patch local demo --yes").await?;
                if status != 200 {
                    bail!("approving through {link} answered HTTP {status}");
                }
                renderer.println(&format!("      --yes: approved through POST /callback (HTTP {status})"));
            } else {
                renderer.println(&format!(
                    "      Open the Approve link above in a browser and click Approve (it waits for you):\n      {link}"
                ));
            }
        }
        if !progress.running() {
            renderer.finish();
            return Ok(progress);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("      | {line}")).collect::<Vec<_>>().join("\n")
}
