//! `ec2patch local up` as an operator uses it: start it, copy its `export` lines, and drive the
//! hub with the real AWS CLI (`aws stepfunctions start-execution` with the README's two run
//! inputs, verbatim) and `ec2patch` (approvals, report), then stop it with Ctrl-C.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ec2patch_local::moto::{ensure_venv_at, venv_tool};
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// The environment `up` printed (`export K=V`), over an environment without the developer's AWS
/// setup.
fn with_env(command: &mut Command, env: &BTreeMap<String, String>) {
    for name in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        command.env_remove(name);
    }
    command.env("AWS_CONFIG_FILE", "/nonexistent").env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    command.envs(env);
}

fn json_of(command: &mut Command, what: &str) -> Value {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{what}: {}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{what}: not JSON ({e})"))
}

/// SIGINT, as Ctrl-C sends it, through the shell's own `kill` (no procps needed).
fn ctrl_c(pid: u32) -> std::io::Result<std::process::ExitStatus> {
    Command::new("sh").arg("-c").arg(format!("kill -INT {pid}")).status()
}

/// Stops `up` as a person would (Ctrl-C is SIGINT) when the test ends, even when it fails.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let _ = ctrl_c(self.0.id());
        let _ = self.0.wait();
    }
}

#[test]
fn local_up_serves_the_aws_cli_and_ec2patch_the_readme_runs_end_to_end() {
    let root = repo("");
    let python = ensure_venv_at(&root, ".venv-awscli", &repo("crates/cli/tests/awscli-requirements.txt")).unwrap();
    let log_dir = repo("target/cli-tests");
    std::fs::create_dir_all(&log_dir).unwrap();
    let stderr_log = log_dir.join("local-up.stderr");

    let mut command = Command::new(assert_cmd::cargo::cargo_bin("ec2patch"));
    with_env(&mut command, &BTreeMap::new());
    let child = command
        .args(["local", "up", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_log).unwrap())
        .spawn()
        .unwrap();
    let mut up = Up(child);
    let stdout = up.0.stdout.take().unwrap();
    let mut printed = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let ready = line.starts_with("# ready");
        printed.push(line);
        if ready {
            break;
        }
    }
    let stderr = || std::fs::read_to_string(&stderr_log).unwrap_or_default();
    assert!(
        printed.last().is_some_and(|l| l.starts_with("# ready")),
        "up ended early:\n{}\n{}",
        printed.join("\n"),
        stderr()
    );
    let env: BTreeMap<String, String> = printed
        .iter()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|assignment| assignment.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    for name in ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
        assert!(env.contains_key(name), "{name} not exported: {printed:#?}");
    }
    // The examples it prints are the README's run inputs (its default accounts are theirs).
    let examples: Vec<Value> = printed
        .iter()
        .filter_map(|line| line.trim().strip_prefix("--input '"))
        .map(|rest| serde_json::from_str(rest.trim_end_matches('\'')).unwrap())
        .collect();
    let seed_inputs: Vec<Value> = ["examples/run-input-api.json", "examples/run-input-eventbridge.json"]
        .iter()
        .map(|path| serde_json::from_str(&std::fs::read_to_string(repo(path)).unwrap()).unwrap())
        .collect();
    assert_eq!(examples, seed_inputs, "printed examples:\n{}", printed.join("\n"));
    let state_machine_arn = "arn:aws:states:us-east-1:111111111111:stateMachine:ec2patch-orchestrator";
    assert!(printed.iter().any(|l| l.contains(state_machine_arn)), "Terraform's name: {printed:#?}");

    let aws = |args: &[&str]| {
        let mut command = venv_tool(&python, "aws");
        with_env(&mut command, &env);
        json_of(command.args(args).args(["--output", "json"]), &format!("aws {}", args.join(" ")))
    };
    let ec2patch = |args: &[&str]| {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin("ec2patch"));
        with_env(&mut command, &env);
        json_of(command.args(args).args(["-o", "json"]), &format!("ec2patch {}", args.join(" ")))
    };

    // Both README inputs, verbatim, through the AWS CLI.
    let mut executions = Vec::new();
    for (name, file) in
        [("manual-patch-1", "examples/run-input-api.json"), ("eventbridge-1", "examples/run-input-eventbridge.json")]
    {
        let input = format!("file://{}", repo(file).display());
        let started = aws(&[
            "stepfunctions",
            "start-execution",
            "--state-machine-arn",
            state_machine_arn,
            "--name",
            name,
            "--input",
            &input,
        ]);
        executions.push((name, started["executionArn"].as_str().unwrap().to_owned()));
    }

    // Approve each wave with `ec2patch approve` as the email arrives, until both runs end.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut approved = 0;
    let statuses = loop {
        for pending in ec2patch(&["approvals"]).as_array().unwrap() {
            let decision = ec2patch(&["approve", pending["id"].as_str().unwrap()]);
            assert_eq!(decision["decision"]["status"], "approved", "{decision}");
            approved += 1;
        }
        let statuses: Vec<String> = executions
            .iter()
            .map(|(_, arn)| {
                aws(&["stepfunctions", "describe-execution", "--execution-arn", arn])["status"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        if statuses.iter().all(|s| s != "RUNNING") {
            break statuses;
        }
        assert!(Instant::now() < deadline, "still running after 300 s: {statuses:?}\n{}", stderr());
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(statuses, ["SUCCEEDED", "SUCCEEDED"], "{}", stderr());
    assert_eq!(approved, 2, "one wave each");

    // The reports count the seeded instances: 2 patchable + 1 not managed by SSM per account.
    for ((name, _), accounts) in executions.iter().zip([1, 2]) {
        let report = ec2patch(&["report", name]);
        assert_eq!(report["totals"]["patched"], 2 * accounts, "{name}: {report}");
        assert_eq!(report["totals"]["skipped"], accounts, "{name}: {report}");
        assert_eq!(report["totals"]["failed"], 0, "{name}: {report}");
    }
    // The approval emails went to up's terminal, links included.
    let log = stderr();
    assert_eq!(log.matches("Approve: http://127.0.0.1:").count(), 2, "{log}");
    // Waves are numbered from 1 for people, in every email.
    assert_eq!(log.matches("Email: [ec2patch] wave 1 finished: ").count(), 2, "{log}");
    assert!(log.contains("Run manual-patch-1, wave 1 (wave1-critical): 2 patched"), "{log}");

    // Ctrl-C stops it cleanly.
    assert!(ctrl_c(up.0.id()).unwrap().success());
    let status = up.0.wait().unwrap();
    assert!(status.success(), "exit after Ctrl-C: {status}\n{}", stderr());
}
