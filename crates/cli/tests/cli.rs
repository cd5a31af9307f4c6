//! The `ec2patch` binary through its public surface: arguments in, exit code and output out.
//! Commands that talk to AWS run against the local stack (moto behind the router), started
//! in this test process; the binary reaches it through the standard `AWS_ENDPOINT_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use ec2patch_local::{EstateSpec, LocalStack, LocalStackOptions, SeedKind};
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn ec2patch() -> Command {
    let mut command = Command::cargo_bin("ec2patch").unwrap();
    // Never pick up the developer's AWS setup.
    for name in ["AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        command.env_remove(name);
    }
    command.env("AWS_CONFIG_FILE", "/nonexistent").env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_temp(name: &str, contents: &str) -> PathBuf {
    let dir = repo("target/cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

// ---- validate --------------------------------------------------------------------------------

#[test]
fn validate_says_which_organizational_units_resolve_at_run_time() {
    let input = write_temp(
        "org-input.json",
        r#"{"accountWaves": [{"name": "prod", "organizationalUnits": ["ou-ab12-prod0001"], "excludeAccounts": ["333333333333"]}]}"#,
    );
    let out = ec2patch().args(["validate"]).arg(&input).assert().success();
    let stdout = text(&out.get_output().stdout);
    assert!(
        stdout.contains(
            "prod (0 accounts + the accounts of ou-ab12-prod0001 resolved at run time except 1 excluded x 1 regions)"
        ),
        "{stdout}"
    );
    let bad = write_temp("org-bad.json", r#"{"accountWaves": [{"organizationalUnits": ["Prod"]}]}"#);
    let out = ec2patch().args(["validate"]).arg(&bad).assert().code(2);
    let stderr = text(&out.get_output().stderr);
    assert!(stderr.contains("accountWaves[0].organizationalUnits[0]"), "{stderr}");
}

#[test]
fn validate_accepts_both_seed_shapes_and_the_hub_tfvars() {
    for file in ["examples/run-input-api.json", "examples/run-input-eventbridge.json"] {
        let out = ec2patch().args(["validate"]).arg(repo(file)).assert().success();
        let stdout = text(&out.get_output().stdout);
        assert!(stdout.contains("ok") && stdout.contains("target(s)"), "{file}: {stdout}");
    }
    // Without the hub's tfvars the seed example's agent cannot be compared with the hub's: it is
    // accepted, and the output says what was not checked.
    let out = ec2patch().args(["validate"]).arg(repo("examples/run-input-eventbridge.json")).assert().success();
    let stdout = text(&out.get_output().stdout);
    assert!(stdout.contains("snsTopicArn and bedrock not compared with the hub's"), "{stdout}");
    let out =
        ec2patch().args(["validate", "-o", "json"]).arg(repo("examples/hub.auto.tfvars.example")).assert().success();
    let json: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["valid"], true);
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2, "one check per wave rule: {json}");
    assert!(checks[0]["subject"].as_str().unwrap().contains("wave1-critical"));
    assert!(checks[0]["detail"].as_str().unwrap().contains("cron(0 3 ? * SAT *)"));
}

#[test]
fn validate_names_the_bad_field_and_exits_2() {
    let bad = write_temp("bad-input.json", r#"{"accounts": ["12345"], "tagFilters": {"PatchGroup": "web"}}"#);
    let out = ec2patch().arg("validate").arg(&bad).assert().code(2);
    let stderr = text(&out.get_output().stderr);
    assert!(stderr.contains("accounts[0]") && stderr.contains("12-digit"), "{stderr}");

    let misspelt = write_temp("misspelt.json", r#"{"accounts": ["123456789012"], "dryrun": true}"#);
    let out = ec2patch().arg("validate").arg(&misspelt).assert().code(2);
    assert!(text(&out.get_output().stderr).contains("dryrun"), "unknown fields are named");

    let not_json = write_temp("not-json.json", "{accounts:");
    let out = ec2patch().arg("validate").arg(&not_json).assert().code(2);
    assert!(text(&out.get_output().stderr).contains("is not JSON"));

    let tfvars = write_temp(
        "bad.tfvars",
        r#"
wave_rules = [
  { name = "ok", schedule_expression = "cron(0 3 ? * SAT *)", accounts = ["222222222222"], regions = ["us-east-1"] },
  { name = "both-days", schedule_expression = "cron(0 3 * * SAT *)", accounts = ["333333333333"], regions = ["us-east-1"] },
  { name = "bad-account", schedule_expression = "rate(1 day)", accounts = ["12"], regions = ["us-east-1"] },
]
"#,
    );
    let out = ec2patch().arg("validate").arg(&tfvars).assert().code(2);
    let stdout = text(&out.get_output().stdout);
    let stderr = text(&out.get_output().stderr);
    assert!(stdout.contains("wave_rules[0] ok"), "{stdout}");
    assert!(stderr.contains("wave_rules[1] both-days") && stderr.contains("must be `?`"), "{stderr}");
    assert!(stderr.contains("wave_rules[2] bad-account") && stderr.contains("12-digit"), "{stderr}");

    let out = ec2patch().arg("validate").arg(repo("examples/no-such-file.json")).assert().code(1);
    assert!(text(&out.get_output().stderr).contains("no-such-file.json"));
}

#[test]
fn validate_and_schedule_show_wave_gates_and_refuse_unknown_or_cyclic_ones() {
    let rule = |name: &str, after: Option<&str>| {
        let after = after.map(|a| format!(", after = \"{a}\", gate_window_hours = 72")).unwrap_or_default();
        format!(
            "  {{ name = \"{name}\", schedule_expression = \"cron(0 3 ? * SAT *)\", accounts = [\"222222222222\"], regions = [\"us-east-1\"]{after} }},\n"
        )
    };
    let chain = write_temp(
        "gates.tfvars",
        &format!(
            "wave_rules = [\n{}{}]\n",
            rule("canary", None),
            rule("production", Some("canary")).replace("222222222222", "333333333333")
        ),
    );
    let out = ec2patch().args(["validate", "-o", "json"]).arg(&chain).assert().success();
    let json: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let checks = json["checks"].as_array().unwrap();
    assert!(checks[1]["detail"].as_str().unwrap().contains("after canary passed within 72 h"), "{json}");
    assert_eq!(checks[2]["subject"], "wave_rules gates");
    assert_eq!(checks[2]["detail"], "canary -> production (72 h)");
    let out =
        ec2patch().args(["schedule", "-n", "1", "--from", "2026-11-29T00:00:00Z", "-f"]).arg(&chain).assert().success();
    let table = text(&out.get_output().stdout);
    assert!(table.contains("after canary passed (within 72 h)") && table.contains("none"), "{table}");

    let unknown =
        write_temp("gate-unknown.tfvars", &format!("wave_rules = [\n{}]\n", rule("production", Some("canry"))));
    let out = ec2patch().arg("validate").arg(&unknown).assert().code(2);
    let stderr = text(&out.get_output().stderr);
    assert!(stderr.contains("wave production follows canry, which is not a configured wave"), "{stderr}");
    ec2patch().args(["schedule", "-f"]).arg(&unknown).assert().code(2);

    let cycle = write_temp(
        "gate-cycle.tfvars",
        &format!(
            "wave_rules = [\n{}{}]\n",
            rule("a", Some("b")),
            rule("b", Some("a")).replace("222222222222", "333333333333")
        ),
    );
    let out = ec2patch().arg("validate").arg(&cycle).assert().code(2);
    let stderr = text(&out.get_output().stderr);
    assert!(stderr.contains("wave gates form a cycle: a -> b -> a"), "{stderr}");
}

// ---- schedule --------------------------------------------------------------------------------

#[test]
fn schedule_lists_each_waves_next_fire_times_in_utc_and_a_zone() {
    let out = ec2patch()
        .args(["schedule", "-n", "2", "--tz", "Europe/Paris", "--from", "2026-11-29T00:00:00Z", "-o", "json", "-f"])
        .arg(repo("examples/hub.auto.tfvars.example"))
        .assert()
        .success();
    let json: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json[0]["wave"], "wave1-critical");
    assert_eq!(json[0]["next"][0], "2026-12-05T03:00:00+00:00");
    assert_eq!(json[0]["next"][1], "2026-12-12T03:00:00+00:00");
    assert_eq!(json[0]["nextLocal"][0], "2026-12-05T04:00:00+01:00");
    assert_eq!(json[1]["next"][0], "2026-12-05T03:30:00+00:00");

    let out = ec2patch()
        .args(["schedule", "-e", "cron(0 9 ? * 2#1 *)", "-n", "1", "--from", "2026-11-29T00:00:00Z"])
        .assert()
        .success();
    assert!(text(&out.get_output().stdout).contains("2026-12-07 Mon 09:00"), "first Monday");
}

#[test]
fn schedule_rejects_bad_expressions_and_zones() {
    let out = ec2patch().args(["schedule", "-e", "cron(0 3 * * *)"]).assert().code(2);
    assert!(text(&out.get_output().stderr).contains("6 fields"));
    let out = ec2patch().args(["schedule", "-e", "rate(1 hours)"]).assert().code(2);
    assert!(text(&out.get_output().stderr).contains("1 hour"));
    let out = ec2patch().args(["schedule", "-e", "rate(1 hour)", "--tz", "Mars/Olympus"]).assert().code(2);
    assert!(text(&out.get_output().stderr).contains("unknown time zone"));
    ec2patch().args(["schedule"]).assert().code(2);
}

// ---- start / approvals / approve / reject / watch / report, on the local stack ----------------

struct Env {
    stack: LocalStack,
    accounts: Vec<String>,
}

impl Env {
    fn command(&self) -> Command {
        let mut command = ec2patch();
        command
            .env("AWS_ENDPOINT_URL", self.stack.router.url())
            .env("AWS_REGION", &self.stack.options.region)
            .env("AWS_ACCESS_KEY_ID", self.stack.hub_credentials.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", self.stack.hub_credentials.secret_access_key())
            .env("EC2PATCH_TABLE", &self.stack.hub.config.table)
            .env("EC2PATCH_BUCKET", &self.stack.hub.config.bucket)
            .env("EC2PATCH_STATE_MACHINE_ARN", &self.stack.state_machine_arn);
        command
    }

    /// Runs the binary off the async runtime (the stack serves on it meanwhile).
    async fn run(&self, args: &[&str]) -> Output {
        let mut command = self.command();
        command.args(args).timeout(Duration::from_secs(240));
        tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
    }

    async fn pending_approval_of(&self, run_id: &str) -> String {
        for _ in 0..300 {
            let out = self.run(&["approvals", "-o", "json"]).await;
            assert!(out.status.success(), "{}", text(&out.stderr));
            let list: Value = serde_json::from_slice(&out.stdout).unwrap();
            if let Some(found) = list.as_array().unwrap().iter().find(|a| a["details"]["runId"] == run_id) {
                return found["id"].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!("no pending approval for {run_id}");
    }
}

async fn env() -> Env {
    let stack = LocalStack::start(LocalStackOptions { approval_timeout_seconds: 600, ..LocalStackOptions::default() })
        .await
        .unwrap();
    let estate = stack
        .seed(&EstateSpec {
            accounts: 2,
            regions: vec!["us-east-1".to_owned()],
            per_target: BTreeMap::from([(SeedKind::Patchable, 2), (SeedKind::Unmanaged, 1)]),
            ..EstateSpec::default()
        })
        .await
        .unwrap();
    Env { stack, accounts: estate.accounts }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_approve_watch_and_report_a_run_then_reject_another() {
    let env = env().await;
    let accounts = env.accounts.join(",");

    // Bad input fails before anything is started, naming the field.
    let out = env.run(&["start", "--accounts", "12345", "--tag", "PatchGroup=default"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("accounts[0]"), "{}", text(&out.stderr));
    let out = env.run(&["start", "--accounts", &accounts, "--tag", "PatchGroup"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("KEY=VALUE"));
    let out = env.run(&["approve", "not-an-approval-id"]).await;
    assert_eq!(out.status.code(), Some(2));

    // start prints the execution ARN (and only it) on stdout.
    let out = env
        .run(&[
            "start",
            "--accounts",
            &accounts,
            "--regions",
            "us-east-1",
            "--tag",
            "PatchGroup=default",
            "--name",
            "cli-run-1",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let arn = text(&out.stdout).trim().to_owned();
    assert!(arn.starts_with("arn:aws:states:") && arn.ends_with(":cli-run-1"), "{arn}");

    // approvals lists it; approve decides as the caller's IAM identity; a second approve is refused.
    let id = env.pending_approval_of("cli-run-1").await;
    let out = env.run(&["approve", &id]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("approved by iam:arn:aws:iam::111111111111:"), "{stdout}");
    let out = env.run(&["approve", &id]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already approved"), "{}", text(&out.stderr));
    let item = env
        .stack
        .hub
        .store
        .get_item(&ec2patch_core::approval::approval_pk(&id), ec2patch_core::approval::APPROVAL_SK)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item["status"].as_s().unwrap(), "approved");
    assert!(item["userAgent"].as_s().unwrap().starts_with("ec2patch-cli/"), "audit record names the CLI");

    // watch follows to the end and reports what the estate says: 4 patched, 2 skipped.
    let out = env.run(&["watch", "cli-run-1", "--interval", "1", "-o", "json"]).await;
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["progress"]["status"], "SUCCEEDED");
    assert_eq!(json["report"]["totals"]["patched"], 4);
    assert_eq!(json["report"]["totals"]["skipped"], 2);
    assert_eq!(json["progress"]["waves"][0]["finished"], 6, "{json}");
    // Compliance from SSM's patch states: the simulation gives each instance 3 missing patches
    // until a successful Install, then none.
    assert_eq!(
        json["report"]["totals"]["compliance"],
        serde_json::json!({
            "knownBefore": 4, "nonCompliantBefore": 4, "missingPatchesBefore": 12,
            "knownAfter": 4, "nonCompliantAfter": 0, "missingPatchesAfter": 0
        }),
        "{json}"
    );
    assert!(json["reportHtml"].as_str().unwrap().ends_with("runs/cli-run-1/report.html"));

    // report prints the table and saves the HTML.
    let html = repo("target/cli-tests/cli-run-1.html");
    let _ = std::fs::remove_file(&html);
    let csv = repo("target/cli-tests/cli-run-1.csv");
    let _ = std::fs::remove_file(&csv);
    let out = env.run(&["report", &arn, "--html", html.to_str().unwrap(), "--csv", csv.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("total") && stdout.contains("completed"), "{stdout}");
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"), "the HTML report has its chart");
    // Who approved the wave (as their IAM identity, from the CLI), and why instances were skipped.
    assert!(stdout.contains("approval approved by iam:arn:aws:iam::111111111111:user/"), "{stdout}");
    assert!(stdout.contains("from cli"), "{stdout}");
    assert!(stdout.contains("  skipped 2: "), "{stdout}");
    assert!(stdout.contains("Asked: 1 wave(s), 2 target(s), tags PatchGroup=default"), "{stdout}");
    assert!(stdout.contains(" s from inventory to the last outcome"), "{stdout}");
    // Every instance, one row each, under the documented header.
    let rows: Vec<String> = std::fs::read_to_string(&csv).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(rows[0], "wave,wave_name,account,region,instance_id,outcome,reason,command_id,finished_at,snapshot_ids");
    assert_eq!(rows.len(), 1 + 6, "{rows:#?}");
    assert_eq!(rows.iter().filter(|r| r.contains(",PATCHED,")).count(), 4, "{rows:#?}");
    assert_eq!(rows.iter().filter(|r| r.contains(",SKIPPED,")).count(), 2, "{rows:#?}");
    assert!(rows[1..].iter().all(|r| r.starts_with("1,")), "waves numbered from 1: {rows:#?}");
    let out = env.run(&["report", "no-such-run"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no report"), "{}", text(&out.stderr));

    // A rejected wave stops the run: watch exits 1 and names ApprovalRejected.
    let out = env.run(&["start", "--accounts", &accounts, "--tag", "PatchGroup=default", "--name", "cli-run-2"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = env.pending_approval_of("cli-run-2").await;
    let out = env.run(&["reject", &id, "--reason", "change freeze"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("rejected"));
    let out = env.run(&["watch", "cli-run-2", "--interval", "1"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("FAILED") && stdout.contains("ApprovalRejected"), "{stdout}");
    // Its report reads as a person would say it: the wave's number, the error and its message,
    // not the state machine's JSON.
    let out = env.run(&["report", "cli-run-2"]).await;
    let stdout = text(&out.stdout);
    assert!(stdout.contains("1. ") && stdout.contains("ApprovalRejected: "), "{stdout}");
    assert!(!stdout.contains("{\"Error\""), "{stdout}");
    let out = env.run(&["approvals", "-o", "json"]).await;
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), Value::Array(vec![]), "nothing pending");
}

#[test]
fn local_demo_with_yes_runs_two_waves_and_its_report_matches_the_estate() {
    let out_dir = repo("target/cli-tests/demo");
    let out = ec2patch()
        .args(["local", "demo", "--accounts", "3", "--regions", "us-east-1", "--instances", "2", "--failing", "1"])
        .args(["--denied", "1", "--yes", "-o", "json", "--out"])
        .arg(&out_dir)
        .timeout(Duration::from_secs(400))
        .assert()
        .success();
    let json: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["status"], "SUCCEEDED");
    assert_eq!(json["numbersMatch"], true);
    // 2 reachable accounts x 2 patchable, 1 failing, 1 unmanaged each.
    assert_eq!(json["expected"]["patched"], 4);
    assert_eq!(json["report"]["totals"]["patched"], 4);
    assert_eq!(json["report"]["totals"]["failed"], 1);
    // Compliance as the simulated estate implies: 5 instances missing patches before (4 + the
    // failing one), only the failing one after.
    assert_eq!(json["expected"]["nonCompliantBefore"], 5, "{json}");
    assert_eq!(json["report"]["totals"]["compliance"]["nonCompliantBefore"], 5, "{json}");
    assert_eq!(json["report"]["totals"]["compliance"]["nonCompliantAfter"], 1, "{json}");
    assert_eq!(json["report"]["totals"]["skipped"], 2);
    assert_eq!(json["report"]["waves"].as_array().unwrap().len(), 2);
    let html = json["reportHtml"].as_str().unwrap();
    assert!(std::fs::read_to_string(html).unwrap().contains("<svg"));
    let stderr = text(&out.get_output().stderr);
    assert_eq!(stderr.matches("Approval email").count(), 2, "one email per wave:\n{stderr}");
    assert!(stderr.contains("approved through POST /callback"), "{stderr}");
}
