//! `ec2patch`, the operator CLI: check inputs and schedules, start and follow runs, decide
//! approvals, read reports, and run the whole product locally (`ec2patch local demo`).
//!
//! Exit codes: 0 success; 1 the run failed or AWS refused; 2 invalid input or usage.

pub mod approvals;
pub mod connect;
#[cfg(feature = "local")]
pub mod demo;
pub mod report;
pub mod schedule;
pub mod start;
pub mod tfvars;
#[cfg(feature = "local")]
pub mod up;
pub mod validate;
pub mod watch;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;

use ec2patch_core::approval::Action;
use ec2patch_core::time::format_epoch;

use crate::connect::{Connection, HubArgs, run_id_of};
use crate::schedule::Schedule;
use crate::tfvars::HubVars;

/// Bad input from the person at the terminal (exit code 2), as opposed to a failure.
#[derive(Debug, thiserror::Error)]
#[error("invalid input: {0}")]
pub struct InvalidInput(pub String);

#[derive(Debug, Parser)]
#[command(name = "ec2patch", version, about = "Operate ec2patch: patch EC2 fleets across AWS accounts in waves")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub hub: HubArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a run input (JSON) or the hub's tfvars (wave rules, schedules) without touching AWS.
    Validate {
        /// A run input `.json`, or a hub `.tfvars` file.
        file: PathBuf,
        /// The hub's tfvars: resolves a run input's `waveId` against its wave rules and checks that
        /// `snsTopicArn` and `bedrock` are the hub's own.
        #[arg(long)]
        hub_vars: Option<PathBuf>,
    },
    /// The next fire times of each wave's EventBridge schedule.
    Schedule {
        /// The hub's tfvars (its `wave_rules`).
        #[arg(long, short = 'f', required_unless_present = "expression")]
        file: Option<PathBuf>,
        /// One expression instead, e.g. 'cron(0 3 ? * SAT *)'.
        #[arg(long, short = 'e', conflicts_with = "file")]
        expression: Option<String>,
        /// How many fire times per wave.
        #[arg(long, short = 'n', default_value_t = 5)]
        count: usize,
        /// Also show times in this IANA time zone (e.g. Europe/Paris).
        #[arg(long, value_parser = parse_tz)]
        tz: Option<chrono_tz::Tz>,
        /// Start from this time (RFC 3339) instead of now.
        #[arg(long, value_parser = parse_time)]
        from: Option<chrono::DateTime<Utc>>,
    },
    /// Start a run from a file or flags; prints the execution ARN.
    Start(start::StartArgs),
    /// Follow a run live until it ends, then print its summary and report location.
    Watch {
        /// Execution ARN or run id (the execution's name).
        execution: String,
        /// Seconds between looks.
        #[arg(long, default_value_t = 5)]
        interval: u64,
    },
    /// Approvals waiting for a decision.
    Approvals,
    /// Approve a wave (as your IAM identity; recorded like the emailed page's decision).
    Approve { id: String },
    /// Reject a wave: the run stops before patching it.
    Reject {
        id: String,
        /// Why (kept in the audit record).
        #[arg(long)]
        reason: Option<String>,
    },
    /// The report of a finished or stopped run.
    Report {
        /// Execution ARN or run id.
        execution: String,
        /// Also save the HTML report (with its charts) to this file.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Also save every instance's outcome (one CSV row each) to this file.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Run ec2patch on this machine, against the local AWS emulator.
    #[cfg(feature = "local")]
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
}

#[cfg(feature = "local")]
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start the local stack, seed a simulated estate, run two waves with approvals, show the report.
    Demo(demo::DemoArgs),
    /// Keep the local stack running as an AWS endpoint: prints `export` lines for the AWS CLI,
    /// Terraform, SDKs and `ec2patch`, and the README's example runs; Ctrl-C stops it.
    Up(up::UpArgs),
}

fn parse_tz(value: &str) -> Result<chrono_tz::Tz, String> {
    value.parse().map_err(|_| format!("unknown time zone {value:?} (use an IANA name such as Europe/Paris)"))
}

fn parse_time(value: &str) -> Result<chrono::DateTime<Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{value:?} is not an RFC 3339 time: {e}"))
}

/// Runs one command; `Ok` carries the exit code for "ran, but the answer is no".
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let output = cli.output;
    match cli.command {
        Command::Validate { file, hub_vars } => validate_command(&file, hub_vars.as_deref(), output),
        Command::Schedule { file, expression, count, tz, from } => {
            schedule_command(file.as_deref(), expression.as_deref(), count, tz, from, output)
        }
        Command::Start(args) => {
            let input = start::input_from_args(&args).map_err(|e| InvalidInput(format!("{e:#}")))?;
            let connection = Connection::open(&cli.hub).await?;
            let arn = start::start(&connection, &start::run_name(&args), &input).await?;
            match output {
                Output::Json => println!("{}", json!({"executionArn": arn, "runId": run_id_of(&arn)})),
                Output::Table => println!("{arn}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch { execution, interval } => {
            let connection = Connection::open(&cli.hub).await?;
            let arn = connection.execution_arn(&execution);
            let interactive = output == Output::Table && std::io::stderr().is_terminal();
            let mut renderer = watch::Renderer::new(interactive);
            let progress =
                watch::follow(&connection, &arn, Duration::from_secs(interval.max(1)), &mut renderer).await?;
            let report = report::load(&connection, &progress.run_id).await.ok();
            print_outcome(&connection, &progress, report.as_ref(), output)?;
            Ok(exit_for(&progress.status))
        }
        Command::Approvals => {
            let connection = Connection::open(&cli.hub).await?;
            let pending = approvals::list(&connection).await?;
            match output {
                Output::Json => {
                    let list: Vec<_> = pending.iter().map(|p| json!({"id": p.id, "details": p.details})).collect();
                    println!("{}", serde_json::to_string_pretty(&list)?);
                }
                Output::Table => {
                    let mut table = Table::new();
                    table.load_preset(UTF8_FULL_CONDENSED).set_header([
                        "id",
                        "run",
                        "wave",
                        "accounts",
                        "instances",
                        "patchable",
                        "expires",
                    ]);
                    for p in &pending {
                        let d = &p.details;
                        table.add_row([
                            p.id.clone(),
                            d.run_id.clone(),
                            // 1-based, as the email and the report number waves.
                            format!("{} (wave {})", d.wave_name, d.wave_index + 1),
                            d.accounts_total.to_string(),
                            d.instances.to_string(),
                            d.patchable.to_string(),
                            format_epoch(d.link_expires_at),
                        ]);
                    }
                    if pending.is_empty() {
                        eprintln!("No approvals are waiting.");
                    } else {
                        println!("{table}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Approve { id } => decide_command(&cli.hub, &id, Action::Approve, None, output).await,
        Command::Reject { id, reason } => {
            decide_command(&cli.hub, &id, Action::Reject, reason.as_deref(), output).await
        }
        Command::Report { execution, html, csv } => {
            let connection = Connection::open(&cli.hub).await?;
            let run_id = run_id_of(&connection.execution_arn(&execution)).to_owned();
            let report = report::load(&connection, &run_id).await?;
            if let Some(path) = &html {
                report::save_html(&connection, &run_id, path).await?;
                eprintln!("HTML report saved to {}", path.display());
            }
            if let Some(path) = &csv {
                report::save_csv(&connection, &run_id, path).await?;
                eprintln!("Instances CSV saved to {}", path.display());
            }
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Table => print_report(&report),
            }
            Ok(if report.status == "completed" { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        #[cfg(feature = "local")]
        Command::Local { command: LocalCommand::Demo(args) } => {
            let interactive = output == Output::Table && std::io::stderr().is_terminal();
            let result = tokio::select! {
                result = demo::run(&args, interactive) => result?,
                _ = tokio::signal::ctrl_c() => {
                    // Returning drops the local stack, which stops moto and the router.
                    anyhow::bail!("interrupted: the local stack was stopped");
                }
            };
            print_demo(&result, output)?;
            Ok(if result.numbers_match && result.status == "SUCCEEDED" { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        #[cfg(feature = "local")]
        Command::Local { command: LocalCommand::Up(args) } => {
            up::run(&args).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn exit_for(status: &str) -> ExitCode {
    if status == "SUCCEEDED" { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn validate_command(
    file: &std::path::Path,
    hub_vars: Option<&std::path::Path>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let checks = if validate::is_tfvars(file) {
        let vars = HubVars::read(file).map_err(|e| InvalidInput(format!("{e:#}")))?;
        validate::check_hub_vars(&vars)
    } else {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let input: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| InvalidInput(format!("{} is not JSON: {e}", file.display())))?;
        match hub_vars {
            Some(path) => {
                let defaults = HubVars::read(path).map_err(|e| InvalidInput(format!("{e:#}")))?.run_defaults();
                vec![validate::check_run_input(&file.display().to_string(), &input, &defaults)]
            }
            None => vec![validate::check_run_input_without_hub(&file.display().to_string(), &input)],
        }
    };
    let valid = checks.iter().all(|c| c.ok);
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&validate::to_json(&checks))?),
        Output::Table => {
            for check in &checks {
                let mark = if check.ok { "ok" } else { "INVALID" };
                let line = format!("{mark:>7}  {}: {}", check.subject, check.detail);
                if check.ok { println!("{line}") } else { eprintln!("{line}") }
            }
        }
    }
    Ok(if valid { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn schedule_command(
    file: Option<&std::path::Path>,
    expression: Option<&str>,
    count: usize,
    tz: Option<chrono_tz::Tz>,
    from: Option<chrono::DateTime<Utc>>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    // (wave, expression, gate): the gate says which wave's latest run must have passed.
    let rules: Vec<(String, String, Option<String>)> = match (file, expression) {
        (_, Some(expression)) => vec![("expression".to_owned(), expression.to_owned(), None)],
        (Some(file), None) => {
            let vars = HubVars::read(file).map_err(|e| InvalidInput(format!("{e:#}")))?;
            vars.check_gates().map_err(InvalidInput)?;
            vars.wave_rules
                .iter()
                .map(|w| {
                    let gate = w
                        .after
                        .as_ref()
                        .map(|after| format!("after {after} passed (within {} h)", w.gate_window_hours()));
                    (w.name.clone(), w.schedule_expression.clone(), gate)
                })
                .collect()
        }
        (None, None) => return Err(InvalidInput("pass --file HUB.tfvars or --expression EXPR".to_owned()).into()),
    };
    let from = from.unwrap_or_else(Utc::now);
    let mut waves = Vec::new();
    for (name, expression, gate) in &rules {
        let schedule: Schedule =
            expression.parse().map_err(|e: schedule::ScheduleError| InvalidInput(format!("wave {name}: {e}")))?;
        let times = schedule.next_after(&from, count);
        waves.push((name, schedule, times, gate));
    }
    match output {
        Output::Json => {
            let list: Vec<_> = waves
                .iter()
                .map(|(name, schedule, times, gate)| {
                    json!({
                        "wave": name,
                        "expression": schedule.expression(),
                        "gate": gate,
                        "next": times.iter().map(|t| t.to_rfc3339()).collect::<Vec<_>>(),
                        "nextLocal": tz.map(|tz| times.iter().map(|t| t.with_timezone(&tz).to_rfc3339()).collect::<Vec<_>>()),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        Output::Table => {
            let mut table = Table::new();
            let gated = waves.iter().any(|(_, _, _, gate)| gate.is_some());
            let mut header = vec!["wave".to_owned(), "expression".to_owned()];
            if gated {
                header.push("gate".to_owned());
            }
            header.push("next (UTC)".to_owned());
            if let Some(tz) = tz {
                header.push(format!("next ({tz})"));
            }
            table.load_preset(UTF8_FULL_CONDENSED).set_header(header);
            for (name, schedule, times, gate) in &waves {
                let first = |i: usize, text: String| if i == 0 { text } else { String::new() };
                for (i, time) in times.iter().enumerate() {
                    let mut row = vec![first(i, (*name).clone()), first(i, schedule.expression().to_owned())];
                    if gated {
                        row.push(first(i, gate.as_deref().unwrap_or("none").to_owned()));
                    }
                    row.push(time.format("%Y-%m-%d %a %H:%M").to_string());
                    if let Some(tz) = tz {
                        row.push(time.with_timezone(&tz).format("%Y-%m-%d %a %H:%M %Z").to_string());
                    }
                    table.add_row(row);
                }
                if times.is_empty() {
                    let mut row = vec![(*name).clone(), schedule.expression().to_owned()];
                    if gated {
                        row.push(gate.as_deref().unwrap_or("none").to_owned());
                    }
                    row.push("never again".to_owned());
                    table.add_row(row);
                }
            }
            println!("{table}");
            if waves.iter().any(|(_, s, _, _)| matches!(s, Schedule::Rate { .. })) {
                eprintln!(
                    "note: rate() schedules count from when the rule was created; times shown count from --from/now."
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn decide_command(
    hub: &HubArgs,
    id: &str,
    action: Action,
    reason: Option<&str>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let connection = Connection::open(hub).await?;
    let decision = approvals::decide(&connection, id, action, reason).await?;
    match output {
        Output::Json => println!("{}", json!({"approvalId": id, "decision": decision})),
        Output::Table => {
            println!("approval {id}: {} by {} at {}", decision.status, decision.decided_by, decision.decided_at)
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_outcome(
    connection: &Connection,
    progress: &watch::Progress,
    report: Option<&ec2patch_core::report::RunReport>,
    output: Output,
) -> anyhow::Result<()> {
    let location = format!("s3://{}/{}", connection.hub.store.bucket(), report::html_key(&progress.run_id));
    match output {
        Output::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"progress": progress, "report": report, "reportHtml": location}))?
            );
        }
        Output::Table => {
            println!(
                "Run {} {}{}",
                progress.run_id,
                progress.status,
                progress.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            );
            if let Some(cause) = &progress.cause {
                println!("  cause: {cause}");
            }
            if let Some(report) = report {
                print_report(report);
                println!("Report: {location}");
            }
        }
    }
    Ok(())
}

fn print_report(report: &ec2patch_core::report::RunReport) {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "wave",
        "patched",
        "failed",
        "timed out",
        "skipped",
        "unreachable",
        "unhealthy",
        "note",
    ]);
    // Long notes (why a wave stopped) wrap to the terminal's width instead of overflowing it.
    table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    for wave in &report.waves {
        let cell = |f: fn(&ec2patch_core::wave::WaveOutcomes) -> usize| {
            wave.outcomes.as_ref().map(|o| f(o).to_string()).unwrap_or_else(|| "-".to_owned())
        };
        table.add_row([
            format!("{}. {}", wave.index + 1, wave.name),
            cell(|o| o.patched),
            cell(|o| o.failed),
            cell(|o| o.timed_out),
            cell(|o| o.skipped),
            cell(|o| o.unreachable),
            cell(|o| o.unhealthy),
            wave.problem.clone().unwrap_or_default(),
        ]);
    }
    let t = &report.totals;
    table.add_row([
        "total".to_owned(),
        t.patched.to_string(),
        t.failed.to_string(),
        t.timed_out.to_string(),
        t.skipped.to_string(),
        t.unreachable.to_string(),
        t.unhealthy.to_string(),
        report.stopped_because.clone().unwrap_or_default(),
    ]);
    println!(
        "Run {} ({}{}), report generated {}",
        report.run_id,
        report.status,
        if report.dry_run { ", dry run" } else { "" },
        report.generated_at
    );
    println!("{table}");
    let input = &report.input;
    println!(
        "Asked: {} wave(s), {} target(s), tags {}{}",
        input.waves,
        input.targets,
        input.tag_filters.join(", "),
        if input.organizational_units.is_empty() {
            String::new()
        } else {
            format!(", OUs {}", input.organizational_units.join(", "))
        }
    );
    for wave in &report.waves {
        let approval = match &wave.approval {
            Some(approval) => approval.describe(),
            None if report.dry_run => "none needed (dry run)".to_owned(),
            None => "not requested".to_owned(),
        };
        let took =
            wave.duration_seconds.map(|s| format!("; {s} s from inventory to the last outcome")).unwrap_or_default();
        println!("Wave {}. {}: approval {approval}{took}", wave.index + 1, wave.name);
        if let Some(outcomes) = &wave.outcomes {
            println!("  compliance: {}", outcomes.compliance.describe());
        }
        if let Some(taken) = &wave.snapshots {
            println!("  pre-patch snapshots: {} of {} instances (ids in --csv)", taken.snapshots, taken.instances);
        }
        if !wave.accounts_from.is_empty() {
            let from: Vec<String> = wave.accounts_from.iter().map(|(from, n)| format!("{n} from {from}")).collect();
            println!("  accounts: {}", from.join(", "));
        }
        for left in &wave.left_out {
            println!("  left out {} (in {}): {}", left.account, left.parent, left.reason);
        }
        for (reason, count) in &wave.skipped_by_reason {
            println!("  skipped {count}: {reason}");
        }
    }
    for wave in report.waves.iter().filter(|w| !w.failed_targets.is_empty()) {
        println!("Wave {}. {}: targets the hub could not reach", wave.index + 1, wave.name);
        for target in &wave.failed_targets {
            println!("  {} {}: {}: {}", target.account, target.region, target.error_type, target.message);
        }
    }
}

#[cfg(feature = "local")]
fn print_demo(result: &demo::DemoResult, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(result)?),
        Output::Table => {
            print_report(&result.report);
            let e = &result.expected;
            let t = &result.report.totals;
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED).set_header(["", "expected from the estate", "in the report"]);
            for (name, expected, actual) in [
                ("patched", e.patched, t.patched),
                ("failed", e.failed, t.failed),
                ("skipped", e.skipped, t.skipped),
                ("unreachable", e.unreachable, t.unreachable),
                ("timed out", 0, t.timed_out),
                ("missing patches before", e.non_compliant_before, t.compliance.non_compliant_before),
                ("missing patches after", e.non_compliant_after, t.compliance.non_compliant_after),
            ] {
                table.add_row([name.to_owned(), expected.to_string(), actual.to_string()]);
            }
            println!("{table}");
            println!("Targets the hub could not reach (denied role, recorded as FAILED targets): {}", e.targets_failed);
            let phases: Vec<String> = result.phases.iter().map(|(name, secs)| format!("{name} {secs:.1}s")).collect();
            println!("Phases: {}", phases.join(", "));
            println!("Execution {}: {}", result.run_id, result.status);
            println!("Report: {}  (JSON: {})", result.report_html.display(), result.report_json.display());
            println!(
                "{}",
                if result.numbers_match {
                    "The report's numbers match the simulated estate."
                } else {
                    "MISMATCH: the report's numbers differ from the simulated estate."
                }
            );
        }
    }
    Ok(())
}
