//! The approval gate and the run report in a real browser: Debian's Chromium, headless, driven
//! by playwright-core through tests/browser/browser.mjs. A person opens the emailed link (which
//! must decide nothing), presses Approve, and later reads the report, whose charts and numbers
//! must match the estate that was seeded. Screenshots go to target/browser-artifacts/.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::types::ExecutionStatus;
use ec2patch_core::approval;
use ec2patch_local::{Estate, EstateSpec, LocalStack, LocalStackOptions, SeedKind};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const TIMEOUT: Duration = Duration::from_secs(60);
const RUN_ID: &str = "browser-1";
const REGION: &str = "us-east-1";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").components().collect()
}

fn browser_dir() -> PathBuf {
    repo_root().join("tests/browser")
}

/// Where CI collects the screenshots from: `<target>/browser-artifacts`.
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from);
    let dir = target.join("browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

/// Chromium, node and playwright-core, or a panic that says how to get them.
async fn ensure_browser_tooling() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the browser test drives Debian's Chromium. Install it with \
         `apt-get install -y chromium` (.ci/run does this)."
    );
    let node = Command::new("node").arg("--version").output().await;
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is missing ({node:?}): install Node.js >= 20 (`apt-get install -y nodejs npm`)."
    );
    let dir = browser_dir();
    if !dir.join("node_modules/playwright-core/package.json").exists() {
        let started = Instant::now();
        let output = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .output()
            .await
            .expect("running npm (install Node.js and npm)");
        assert!(
            output.status.success(),
            "`npm ci` in {} failed; run it there by hand to see why:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        println!("npm ci in tests/browser took {:?}", started.elapsed());
    }
}

fn node_script(mode: &str, target: &str, expected: &Value, shot_prefix: &Path) -> Command {
    let mut command = Command::new("node");
    command
        .arg(browser_dir().join("browser.mjs"))
        .args([mode, target, &expected.to_string()])
        .arg(shot_prefix)
        .current_dir(browser_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The script's stdout up to the line `ec2patch-browser: <want>`; panics with its stderr if it
/// exits (or stalls) first. Screenshot lines are echoed.
async fn wait_for_line(child: &mut Child, stdout: &mut BufReader<ChildStdout>, want: &str) {
    let want = format!("ec2patch-browser: {want}");
    let read = async {
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line).await.unwrap() == 0 {
                return false;
            }
            let line = line.trim_end();
            println!("{line}");
            if line == want {
                return true;
            }
        }
    };
    let found = tokio::time::timeout(TIMEOUT, read).await.unwrap_or(false);
    if !found {
        let _ = child.start_kill();
        let status = child.wait().await.unwrap();
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
        panic!("the browser script did not reach \"{want}\" (exit {status}):\n{stderr}");
    }
}

async fn finish(mut child: Child) {
    let status = tokio::time::timeout(TIMEOUT, child.wait()).await.expect("browser script hangs").unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    assert!(status.success(), "browser script failed ({status}):\n{stderr}");
}

async fn approval_status(stack: &LocalStack, approval_id: &str) -> String {
    let item: BTreeMap<String, AttributeValue> = stack
        .hub
        .store
        .get_item(&approval::approval_pk(approval_id), approval::APPROVAL_SK)
        .await
        .unwrap()
        .expect("the approval record exists")
        .into_iter()
        .collect();
    ["status", "userAgent"]
        .iter()
        .map(|k| item.get(*k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" | ")
}

async fn execution_status(stack: &LocalStack, arn: &str) -> ExecutionStatus {
    stack.sfn().describe_execution().execution_arn(arn).send().await.unwrap().status
}

fn count(estate: &Estate, account: &str, kinds: &[SeedKind]) -> usize {
    estate.instances.iter().filter(|i| i.account == account && kinds.contains(&i.kind)).count()
}

const PATCHED_KINDS: [SeedKind; 3] = [SeedKind::Patchable, SeedKind::PatchFails, SeedKind::PatchHangs];

/// The accounts of wave `wave`: its own, and in wave 2 also the account that refuses the hub.
fn wave_accounts(estate: &Estate, wave: usize) -> Vec<&String> {
    let mut accounts = vec![&estate.accounts[wave]];
    if wave == 1 {
        accounts.extend(&estate.denied);
    }
    accounts
}

/// What the confirmation page of a wave must show, from the seeded estate.
fn expected_confirmation(estate: &Estate, wave: usize, name: &str) -> Value {
    let account = &estate.accounts[wave];
    let accounts = wave_accounts(estate, wave);
    let denied = accounts.iter().filter(|a| estate.denied.contains(a)).count();
    json!({
        "runId": RUN_ID,
        "waveName": name,
        "waveNumber": wave + 1,
        "operation": "Install patches (AWS-RunPatchBaseline)",
        "accounts": accounts,
        "regions": [REGION],
        "patchable": count(estate, account, &PATCHED_KINDS),
        "unmanaged": count(estate, account, &[SeedKind::Unmanaged]),
        "offline": count(estate, account, &[SeedKind::Offline]),
        "targets": accounts.len(),
        "targetsFailed": denied,
    })
}

/// What the report must show for a one-account wave, from the seeded estate.
fn expected_outcomes(estate: &Estate, wave: usize, name: &str) -> Value {
    let account = &estate.accounts[wave];
    let patched = count(estate, account, &[SeedKind::Patchable]);
    let failed = count(estate, account, &[SeedKind::PatchFails]);
    let timed_out = count(estate, account, &[SeedKind::PatchHangs]);
    let failed_instances: Vec<&str> = estate
        .instances
        .iter()
        .filter(|i| i.account == *account && i.kind == SeedKind::PatchFails)
        .map(|i| i.instance_id.as_str())
        .collect();
    json!({
        "name": name,
        "attempted": patched + failed + timed_out,
        "patched": patched,
        "failed": failed,
        "timedOut": timed_out,
        "skipped": count(estate, account, &[SeedKind::Unmanaged, SeedKind::Offline]),
        "unreachable": 0,
        "unhealthy": 0,
        "targets": wave_accounts(estate, wave).len(),
        "targetsFailed": wave_accounts(estate, wave).iter().filter(|a| estate.denied.contains(a)).count(),
        "failedInstances": failed_instances,
        // Named in the "Targets the hub could not reach" table, with why.
        "failedTargets": wave_accounts(estate, wave).iter().filter(|a| estate.denied.contains(a)).collect::<Vec<_>>(),
        // The approval line: decided in this test's Chromium, from localhost.
        "approvedFrom": "127.0.0.1",
    })
}

/// The approval email of wave `wave` (0-based), once it has arrived; exactly one per wave.
async fn approval_mail(stack: &LocalStack, wave: usize) -> String {
    let started = Instant::now();
    loop {
        let mail = stack.router.mailbox();
        let approvals: Vec<&str> =
            mail.iter().filter(|m| m.message.contains("Approve: ")).map(|m| m.message.as_str()).collect();
        assert!(approvals.len() <= wave + 1, "one approval email per wave: {approvals:?}");
        if let Some(message) = approvals.get(wave) {
            return (*message).to_owned();
        }
        assert!(started.elapsed() < TIMEOUT, "no approval email for wave {} after {TIMEOUT:?}: {mail:?}", wave + 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens the wave's approval email in Chromium, checks that loading the page decided nothing,
/// then presses Approve and checks the decision was recorded from the browser.
async fn approve_in_browser(stack: &LocalStack, arn: &str, mail: &str, expected: &Value, shots: &Path, wave: usize) {
    let link = mail
        .lines()
        .find_map(|l| l.strip_prefix("Approve: "))
        .unwrap_or_else(|| panic!("no Approve link in:\n{mail}"))
        .trim()
        .to_owned();
    assert!(link.starts_with(&format!("{}/callback?id=", stack.router.url())), "{link}");
    assert!(link.starts_with("http://127.0.0.1:"), "served on localhost: {link}");
    let approval_id =
        link.split_once('?').unwrap().1.split('&').find_map(|kv| kv.strip_prefix("id=")).unwrap().to_owned();
    let mails_before = stack.router.mailbox().len();

    let prefix = shots.join(format!("approval-wave{}-", wave + 1));
    let mut child = node_script("approve", &link, expected, &prefix).spawn().expect("starting node");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    wait_for_line(&mut child, &mut stdout, "confirmed").await;

    // The page is open in the browser: nothing may have been decided.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        execution_status(stack, arn).await,
        ExecutionStatus::Running,
        "loading the page must not resume the run"
    );
    let status = approval_status(stack, &approval_id).await;
    assert!(status.starts_with("pending |"), "loading the page must not decide: {status}");
    assert_eq!(stack.router.mailbox().len(), mails_before, "the run must still wait for wave {}", wave + 1);

    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"click\n").await.unwrap();
    stdin.flush().await.unwrap();
    wait_for_line(&mut child, &mut stdout, "decided").await;
    finish(child).await;

    let status = approval_status(stack, &approval_id).await;
    assert!(
        status.starts_with("approved | ") && status.contains("HeadlessChrome"),
        "decided from the browser: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_approves_in_chromium_and_the_report_shows_the_estate() {
    let started = Instant::now();
    ensure_browser_tooling().await;
    let shots = artifacts_dir();

    // Two one-account waves: "alpha" all patchable; "beta" also with an instance whose patch
    // fails and one whose SSM agent is offline. abortOnIssues off: beta's failure is reported.
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let base = EstateSpec {
        accounts: 2,
        regions: vec![REGION.to_owned()],
        per_target: BTreeMap::from([(SeedKind::Patchable, 2), (SeedKind::Unmanaged, 1)]),
        ..EstateSpec::default()
    };
    let mut estate = stack.seed(&base).await.unwrap();
    let extra = stack
        .seed(&EstateSpec {
            accounts: 1,
            first_account: 1,
            per_target: BTreeMap::from([(SeedKind::PatchFails, 1), (SeedKind::Offline, 1)]),
            ..base.clone()
        })
        .await
        .unwrap();
    estate.instances.extend(extra.instances);
    // A third account, in wave beta, whose PatchExecRole refuses the hub: the report names it.
    let denied = stack
        .seed(&EstateSpec {
            accounts: 1,
            first_account: 2,
            denied_accounts: 1,
            per_target: BTreeMap::from([(SeedKind::Patchable, 1)]),
            ..base.clone()
        })
        .await
        .unwrap();
    estate.denied = denied.denied;
    let names = ["alpha", "beta"];
    let input = json!({
        "accountWaves": [
            {"name": names[0], "accounts": wave_accounts(&estate, 0), "regions": [REGION]},
            {"name": names[1], "accounts": wave_accounts(&estate, 1), "regions": [REGION]},
        ],
        "abortOnIssues": false,
    });
    let arn = stack.start_execution(RUN_ID, &input).await.unwrap();

    for (wave, name) in names.iter().enumerate() {
        // The run asks for wave N only after wave N-1 was approved and patched: it resumed.
        let mail = approval_mail(&stack, wave).await;
        let expected = expected_confirmation(&estate, wave, name);
        approve_in_browser(&stack, &arn, &mail, &expected, &shots, wave).await;
    }

    let execution = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?} {:?}", execution.error, execution.cause);
    let output: Value = serde_json::from_str(execution.output.as_deref().unwrap()).unwrap();
    assert_eq!(output["lastWave"]["approval"]["decision"], "approved", "{output}");
    let key = output["report"]["html"]["key"].as_str().unwrap();
    assert_eq!(key, format!("runs/{RUN_ID}/report.html"));

    // The report, as a person would download it, against the numbers the seeded estate implies.
    let s3 = aws_sdk_s3::Client::from_conf(ec2patch_core::hub::s3_config(&stack.sdk));
    let object = s3.get_object().bucket(&stack.hub.config.bucket).key(key).send().await.unwrap();
    let html = object.body.collect().await.unwrap().into_bytes();
    let report_file = shots.join(format!("report-{RUN_ID}.html"));
    std::fs::write(&report_file, &html).unwrap();
    let waves: Vec<Value> = names.iter().enumerate().map(|(i, n)| expected_outcomes(&estate, i, n)).collect();
    let sum = |k: &str| waves.iter().map(|w| w[k].as_u64().unwrap()).sum::<u64>();
    let expected = json!({
        "runId": RUN_ID,
        "status": "completed",
        "totals": {
            "patched": sum("patched"), "failed": sum("failed"), "timedOut": sum("timedOut"),
            "skipped": sum("skipped"), "unreachable": sum("unreachable"), "unhealthy": sum("unhealthy"),
            "pendingReboot": 0,
        },
        "waves": waves,
    });
    assert_eq!((sum("patched"), sum("failed"), sum("skipped")), (4, 1, 3), "the estate this test means to seed");
    let mut child = node_script("report", report_file.to_str().unwrap(), &expected, &shots.join("report"))
        .spawn()
        .expect("starting node");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    wait_for_line(&mut child, &mut stdout, "report ok").await;
    finish(child).await;

    println!("browser test took {:?}; screenshots and report in {}", started.elapsed(), shots.display());
}
