//! The Terraform modules, checked the way CI and a deployer use them, without AWS:
//!
//! - `terraform fmt -check` over terraform/ and examples/;
//! - offline `terraform init` + `validate` of the hub and spoke roots, modules and examples/local,
//!   with the machine's provider mirror (a generated CLI config, never a download);
//! - the seed README's exact Quick Start `-var` command lines (hub and spoke) and the example
//!   tfvars planned against the local stack, and the hub's safety checks (bad account id,
//!   credentials of another account) failing a plan;
//! - examples/local (hub + two spokes) applied to the local stack, re-planned with no changes,
//!   inspected (the state machine is exactly `asl::render` of the template, the functions'
//!   environment is a valid hub configuration, each wave rule's input is a valid run input,
//!   a wave's `snapshot` reaches its rule's input and the named waves, spoke roles trust the
//!   hub's roles with the ExternalId and may snapshot only as the spoke module says), then
//!   destroyed; the spoke's `allow_snapshots = false` drops every snapshot permission;
//! - checkov on both modules: no failed check, and exactly the skips written in the code.
//!
//! Working copies, state and timings live under target/terraform-test/, never in the source tree.
//! The emulator never runs Lambda code: the plans and the apply use the real zips when
//! `.ci/package` has built them into target/lambda (the apply then checks moto holds each one,
//! byte for byte by size), else placeholder zips built here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ec2patch_core::asl;
use ec2patch_core::config::HubConfig;
use ec2patch_core::input::plan_run;
use ec2patch_e2e::terraform::{TerraformOutput, copy_tree};
use ec2patch_local::moto::{ensure_venv, ensure_venv_at, repo_root, venv_tool};
use ec2patch_local::{LocalStack, LocalStackOptions};
use serde_json::{Value, json};

/// The hub's Lambda functions: name, cargo binary, the state machine template variable that
/// receives its ARN (`<var>_function_arn`), and the timeout from the seed's function table.
/// Keep in step with `function_specs` in terraform/modules/hub/main.tf.
const FUNCTIONS: &[(&str, &str, Option<&str>, i64)] = &[
    ("PlanRun", "plan", Some("plan"), 60),
    ("PreEC2Inventory", "inventory", Some("inventory"), 300),
    ("SendApprovalRequest", "approval-request", Some("approval_request"), 60),
    ("ApprovalCallback", "approval-callback", None, 60),
    ("SendSsmCommand", "ssm-send", Some("ssm_send"), 300),
    ("PollSsmCommand", "ssm-poll", Some("ssm_poll"), 600),
    ("PostEC2Verify", "verify", Some("verify"), 300),
    ("AnalyzeWithBedrock", "bedrock-analysis", Some("analysis"), 180),
    ("CheckChangeFreeze", "change-freeze", Some("change_freeze"), 60),
    ("ApprovalMonitor", "approval-monitor", None, 60),
];

/// The functions that assume the spoke role (ApprovalMonitor: to delete expired pre-patch
/// snapshots).
const SPOKE_FUNCTIONS: &[&str] =
    &["PreEC2Inventory", "SendSsmCommand", "PollSsmCommand", "PostEC2Verify", "ApprovalMonitor"];

const HUB_ACCOUNT: &str = "111111111111";
const SPOKES: [&str; 2] = ["222222222222", "333333333333"];
/// The Terraform hub's prefix; the local stack uses another one, since it creates its own table
/// and state machine.
const PREFIX: &str = "ec2patch";
const STACK_PREFIX: &str = "tfstack";

/// The seed README's Quick Start, verbatim (including the stray space after "wave2-standard",).
const QUICK_START_VARS: &[&str] = &[
    "-var=region=us-east-1",
    "-var=orchestrator_account_id=111111111111",
    "-var=name_prefix=ec2patch",
    "-var=bedrock_agent_id=YOUR_AGENT_ID",
    "-var=bedrock_agent_alias_id=YOUR_ALIAS_ID",
    r#"-var=wave_rules=[
    {
      name="wave1-critical",
      schedule_expression="cron(0 3 ? * SAT *)",
      accounts=["222222222222","333333333333"],
      regions=["us-east-1"]
    },
    {
      name="wave2-standard", 
      schedule_expression="cron(30 3 ? * SAT *)",
      accounts=["444444444444","555555555555"],
      regions=["us-east-1"]
    }
  ]"#,
];

/// checkov findings skipped in the code, each with its reason there (`# checkov:skip=ID:reason`).
const EXPECTED_SKIPS: &[(&str, &str)] = &[
    ("hub", "CKV_AWS_18"),  // S3 access logging: would need a second bucket
    ("hub", "CKV_AWS_144"), // S3 cross-region replication: reproducible, expiring artifacts
    ("hub", "CKV2_AWS_62"), // S3 event notifications: nothing consumes them
    ("hub", "CKV_AWS_116"), // Lambda DLQ: invoked synchronously only
    ("hub", "CKV_AWS_117"), // Lambda in a VPC: calls only AWS APIs
    ("hub", "CKV_AWS_115"), // Lambda reserved concurrency: bounded by the state machine
    ("hub", "CKV_AWS_272"), // Lambda code signing: zips built by cargo-lambda in CI
    ("hub", "CKV_AWS_285"), // Step Functions execution data in logs: carries the task token
    ("hub", "CKV_AWS_309"), // API routes without IAM auth: emailed links, HMAC-signed
];

static TIMINGS: Mutex<Vec<(String, Duration)>> = Mutex::new(Vec::new());

fn record(what: &str, elapsed: Duration) {
    eprintln!("terraform test timing: {what}: {:.1}s", elapsed.as_secs_f64());
    let mut timings = TIMINGS.lock().unwrap();
    timings.push((what.to_owned(), elapsed));
    let text: String = timings.iter().map(|(w, d)| format!("{:>8.1}s  {w}\n", d.as_secs_f64())).collect();
    let _ = std::fs::write(test_dir().join(format!("timings-{}.txt", std::process::id())), text);
}

fn test_dir() -> PathBuf {
    let dir = repo_root().join("target/terraform-test");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A CLI config installing providers from the mirror only.
fn cli_config() -> PathBuf {
    ec2patch_e2e::terraform::cli_config(&test_dir())
}

/// A fresh copy of terraform/, examples/ and statemachine/ under target/terraform-test/<name>,
/// keeping their relative layout (the modules read ../../../statemachine).
fn working_copy(name: &str) -> PathBuf {
    let root = repo_root();
    let copy = test_dir().join(name);
    let _ = std::fs::remove_dir_all(&copy);
    for dir in ["terraform", "examples", "statemachine"] {
        copy_tree(&root.join(dir), &copy.join(dir));
    }
    copy
}

/// Zips whose `bootstrap` only says it is a placeholder: the emulator stores function code but
/// never runs it. Real zips come from `cargo lambda build --release --arm64 --output-format zip`.
fn placeholder_zips(dir: &Path) {
    let python = ensure_venv(&repo_root()).unwrap();
    for (_, bin, _, _) in FUNCTIONS {
        let zip = dir.join(bin).join("bootstrap.zip");
        std::fs::create_dir_all(zip.parent().unwrap()).unwrap();
        let status = std::process::Command::new(&python)
            .arg("-c")
            .arg(
                "import sys, zipfile\n\
                 info = zipfile.ZipInfo('bootstrap', (2026, 1, 1, 0, 0, 0))\n\
                 info.external_attr = 0o100755 << 16\n\
                 with zipfile.ZipFile(sys.argv[1], 'w') as z:\n\
                 \x20   z.writestr(info, '#!/bin/sh\\necho \"ec2patch placeholder: build with cargo lambda\" >&2\\nexit 1\\n')\n",
            )
            .arg(&zip)
            .status()
            .unwrap();
        assert!(status.success(), "writing {}", zip.display());
    }
}

/// The zips `.ci/package` builds (cargo-lambda, arm64), when every one of them exists.
fn packaged_zips() -> Option<PathBuf> {
    let dir = std::env::var_os("EC2PATCH_LAMBDA_DIR").map_or_else(|| repo_root().join("target/lambda"), PathBuf::from);
    FUNCTIONS.iter().all(|(_, bin, _, _)| dir.join(bin).join("bootstrap.zip").is_file()).then_some(dir)
}

/// Fills `dir` with the Lambda zips Terraform uploads: the packaged ones when they exist (so the
/// Quick Start runs in the order the deployment guide gives: `.ci/package`, then `terraform`),
/// else placeholders.
fn lambda_zips(dir: &Path) {
    let Some(packaged) = packaged_zips() else {
        eprintln!("terraform test: no packaged zips in target/lambda (run .ci/package): using placeholders");
        return placeholder_zips(dir);
    };
    eprintln!("terraform test: using the packaged zips in {}", packaged.display());
    for (_, bin, _, _) in FUNCTIONS {
        std::fs::create_dir_all(dir.join(bin)).unwrap();
        std::fs::copy(packaged.join(bin).join("bootstrap.zip"), dir.join(bin).join("bootstrap.zip")).unwrap();
    }
}

/// Terraform wraps its messages: compare them with whitespace collapsed.
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

type Run = TerraformOutput;

/// Runs terraform in `dir` (through tokio, so the local stack's router keeps serving).
async fn terraform(dir: &Path, args: &[&str]) -> Run {
    let started = Instant::now();
    let run = ec2patch_e2e::terraform::run(dir, args, &cli_config()).await;
    let label = format!(
        "terraform {} ({})",
        args.iter().take_while(|a| !a.starts_with("-var")).cloned().collect::<Vec<_>>().join(" "),
        dir.strip_prefix(test_dir()).unwrap_or(dir).display()
    );
    record(&label, started.elapsed());
    // Every command's output stays beside its working copy (never in the source tree), for
    // reading after a failure.
    if !dir.starts_with(test_dir()) {
        return run;
    }
    let log = dir.join(format!("terraform-{}.log", args.first().copied().unwrap_or("terraform")));
    let _ = std::fs::OpenOptions::new().create(true).append(true).open(log).and_then(|mut file| {
        std::io::Write::write_all(&mut file, format!("$ terraform {args:?}\n{}\n", run.text()).as_bytes())
    });
    run
}

async fn terraform_ok(dir: &Path, args: &[&str]) -> Run {
    let run = terraform(dir, args).await;
    assert_eq!(run.code, Some(0), "terraform {args:?} in {}:\n{}", dir.display(), run.text());
    run
}

async fn init(dir: &Path) {
    terraform_ok(dir, &["init", "-backend=false", "-input=false", "-no-color"]).await;
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn terraform_fmt_is_clean() {
    let run =
        terraform(&repo_root(), &["fmt", "-check", "-recursive", "-diff", "-no-color", "terraform", "examples"]).await;
    assert_eq!(run.code, Some(0), "terraform fmt -check found unformatted files:\n{}", run.text());
}

#[tokio::test]
async fn roots_modules_and_examples_validate_offline() {
    let copy = working_copy("validate");
    for dir in
        ["terraform/modules/hub", "terraform/modules/spoke", "terraform/hub", "terraform/spoke", "examples/local"]
    {
        let dir = copy.join(dir);
        init(&dir).await;
        let run = terraform_ok(&dir, &["validate", "-no-color"]).await;
        assert!(run.stdout.contains("The configuration is valid"), "{}", run.text());
        // Only the mirror's provider, linked or copied from it: nothing was downloaded.
        let lock = std::fs::read_to_string(dir.join(".terraform.lock.hcl")).unwrap();
        assert!(lock.contains("registry.terraform.io/hashicorp/aws"), "{lock}");
    }
}

#[test]
fn checkov_passes_on_both_modules() {
    let root = repo_root();
    let started = Instant::now();
    let python = ensure_venv_at(&root, ".venv-checks", &root.join("terraform/requirements-checks.txt")).unwrap();
    record("checkov virtualenv", started.elapsed());
    let mut skipped = BTreeSet::new();
    for module in ["hub", "spoke"] {
        let started = Instant::now();
        let output = venv_tool(&python, "checkov")
            .args(["--directory", &format!("terraform/modules/{module}")])
            .args(["--framework", "terraform", "--skip-download", "--output", "json", "--compact"])
            .current_dir(&root)
            .output()
            .unwrap();
        record(&format!("checkov terraform/modules/{module}"), started.elapsed());
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("checkov output is not JSON ({e}):\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr))
        });
        let report = if report.is_array() { report[0].clone() } else { report };
        let summary = &report["summary"];
        eprintln!("checkov terraform/modules/{module}: {summary}");
        assert_eq!(
            summary["failed"], 0,
            "checkov failed checks in {module}:\n{:#}",
            report["results"]["failed_checks"]
        );
        assert_eq!(summary["parsing_errors"], 0, "checkov could not parse {module}");
        assert!(summary["passed"].as_u64().unwrap() > 0, "checkov checked nothing in {module}");
        for check in report["results"]["skipped_checks"].as_array().into_iter().flatten() {
            let id = check["check_id"].as_str().unwrap().to_owned();
            let reason = check["check_result"]["suppress_comment"].as_str().unwrap_or_default();
            assert!(reason.len() > 20, "skip of {id} on {} has no real reason: {reason:?}", check["resource"]);
            skipped.insert((module, id));
        }
    }
    let expected: BTreeSet<(&str, String)> = EXPECTED_SKIPS.iter().map(|(m, id)| (*m, (*id).to_owned())).collect();
    assert_eq!(skipped, expected, "checkov skips changed: review the new skip's reason, then update EXPECTED_SKIPS");
}

/// The provider pointed at the local stack, as the hub's identity.
fn local_provider_override(stack: &LocalStack) -> String {
    ec2patch_e2e::terraform::emulator_provider_override(
        &stack.router.url(),
        stack.hub_credentials.access_key_id(),
        stack.hub_credentials.secret_access_key(),
    )
}

/// Every resource in a `terraform show -json` document, by address.
fn state_resources(show: &Value) -> BTreeMap<String, Value> {
    fn walk(module: &Value, out: &mut BTreeMap<String, Value>) {
        for resource in module["resources"].as_array().into_iter().flatten() {
            out.insert(resource["address"].as_str().unwrap().to_owned(), resource["values"].clone());
        }
        for child in module["child_modules"].as_array().into_iter().flatten() {
            walk(child, out);
        }
    }
    let mut out = BTreeMap::new();
    walk(&show["values"]["root_module"], &mut out);
    out
}

fn function_arn(function: &str) -> String {
    format!("arn:aws:lambda:us-east-1:{HUB_ACCOUNT}:function:{PREFIX}-{function}")
}

fn json_field(value: &Value, key: &str) -> Value {
    serde_json::from_str(value[key].as_str().unwrap_or_else(|| panic!("{key} missing in {value:#}"))).unwrap()
}

fn statements(policy: &Value) -> Vec<Value> {
    match &policy["Statement"] {
        Value::Array(list) => list.clone(),
        other => vec![other.clone()],
    }
}

fn strings(value: &Value) -> BTreeSet<String> {
    match value {
        Value::String(s) => BTreeSet::from([s.clone()]),
        Value::Array(list) => list.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
        _ => BTreeSet::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_start_plans_and_hub_with_two_spokes_applies_to_the_local_stack() {
    let started = Instant::now();
    let stack =
        LocalStack::start(LocalStackOptions { name_prefix: STACK_PREFIX.into(), ..Default::default() }).await.unwrap();
    record("local stack start", started.elapsed());
    // The plans only read from the stack, so they run while the apply waits on the provider's
    // consistency checks (most of its time).
    tokio::join!(quick_start_plans(&stack), hub_and_spokes_apply_replan_destroy(&stack));
    record("quick start plans, and apply/plan/destroy, in all", started.elapsed());
}

/// The seed's Quick Start command lines and the example tfvars, planned against the stack.
async fn quick_start_plans(stack: &LocalStack) {
    // 1. The seed's Quick Start, exactly, against the local stack (data sources read from it;
    //    nothing is created). Its default artifacts directory is the repository's target/lambda.
    let copy = working_copy("quick-start");
    lambda_zips(&copy.join("target/lambda"));
    let hub_root = copy.join("terraform/hub");
    std::fs::write(hub_root.join("zz_local_stack_override.tf"), local_provider_override(stack)).unwrap();
    init(&hub_root).await;
    let mut args = vec!["plan", "-input=false", "-no-color", "-out=quick-start.tfplan"];
    args.extend(QUICK_START_VARS);
    terraform_ok(&hub_root, &args).await;
    let show: Value =
        serde_json::from_str(&terraform_ok(&hub_root, &["show", "-json", "quick-start.tfplan"]).await.stdout).unwrap();
    let planned: BTreeMap<String, Value> = show["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["mode"] == "managed")
        .map(|r| {
            assert_eq!(r["change"]["actions"], json!(["create"]), "{}", r["address"]);
            (r["address"].as_str().unwrap().to_owned(), r["change"]["after"].clone())
        })
        .collect();
    let planned_name = |address: &str, key: &str| planned[address][key].as_str().map(str::to_owned);
    assert_eq!(
        planned_name("module.hub.aws_sfn_state_machine.orchestrator", "name").as_deref(),
        Some("ec2patch-orchestrator")
    );
    assert_eq!(planned_name("module.hub.aws_sns_topic.alerts", "name").as_deref(), Some("ec2patch-PatchAlerts"));
    assert_eq!(planned_name("module.hub.aws_dynamodb_table.runs", "name").as_deref(), Some("ec2patch-runs"));
    assert_eq!(
        planned_name("module.hub.aws_cloudwatch_dashboard.hub", "dashboard_name").as_deref(),
        Some("ec2patch-dashboard")
    );
    for wave in ["wave1-critical", "wave2-standard"] {
        let rule = &planned[&format!("module.hub.aws_cloudwatch_event_rule.wave[\"{wave}\"]")];
        assert_eq!(rule["name"], format!("ec2patch-{wave}"));
        assert_eq!(rule["state"], "ENABLED");
    }
    for (function, _, _, timeout) in FUNCTIONS {
        let lambda = &planned[&format!("module.hub.aws_lambda_function.this[\"{function}\"]")];
        assert_eq!(lambda["function_name"], format!("ec2patch-{function}"));
        assert_eq!(lambda["runtime"], "provided.al2023");
        assert_eq!(lambda["handler"], "bootstrap");
        assert_eq!(lambda["architectures"], json!(["arm64"]));
        assert_eq!(lambda["timeout"], *timeout, "{function}");
        assert_eq!(lambda["logging_config"][0]["log_format"], "JSON");
    }
    approval_alarm_watches_the_emitted_metric(&planned);
    eprintln!("quick start plan: {} resources to create", planned.len());

    // 2. The hub refuses a malformed account id, and credentials of another account.
    let account_arg = args.iter().position(|a| a.starts_with("-var=orchestrator_account_id=")).unwrap();
    let mut bad = args.clone();
    bad[account_arg] = "-var=orchestrator_account_id=12345";
    let run = terraform(&hub_root, &bad).await;
    assert_eq!(run.code, Some(1), "{}", run.text());
    assert!(
        squash(&run.stderr).contains("orchestrator_account_id must be a 12-digit AWS account id"),
        "{}",
        run.text()
    );
    let mut other = args.clone();
    other[account_arg] = "-var=orchestrator_account_id=999999999999";
    let run = terraform(&hub_root, &other).await;
    assert_eq!(run.code, Some(1), "{}", run.text());
    assert!(
        squash(&run.stderr)
            .contains("credentials are for account 111111111111, but orchestrator_account_id is 999999999999"),
        "{}",
        run.text()
    );

    // The hub example settings and the spoke's Quick Start (and its example) plan too.
    terraform_ok(&hub_root, &["plan", "-input=false", "-no-color", "-var-file=../../examples/hub.auto.tfvars.example"])
        .await;
    let spoke_root = copy.join("terraform/spoke");
    std::fs::write(spoke_root.join("zz_local_stack_override.tf"), local_provider_override(stack)).unwrap();
    init(&spoke_root).await;
    for vars in [
        &["-var=region=us-east-1", "-var=orchestrator_account_id=111111111111"][..],
        &["-var-file=../../examples/spoke.tfvars.example"][..],
    ] {
        let mut args = vec!["plan", "-input=false", "-no-color"];
        args.extend(vars);
        let run = terraform_ok(&spoke_root, &args).await;
        assert!(squash(&run.stdout).contains("Plan: 2 to add, 0 to change, 0 to destroy"), "{}", run.text());
    }
    // A spoke owner who wants no snapshots: none of the snapshot permissions, and ApprovalMonitor
    // (which only deletes snapshots there) is not trusted. With the default, both are there.
    for (allow, snapshots) in [("-var=allow_snapshots=false", false), ("-var=allow_snapshots=true", true)] {
        let out = format!("-out=spoke-{snapshots}.tfplan");
        terraform_ok(
            &spoke_root,
            &["plan", "-input=false", "-no-color", "-var=orchestrator_account_id=111111111111", allow, &out],
        )
        .await;
        let show = terraform_ok(&spoke_root, &["show", "-json", &format!("spoke-{snapshots}.tfplan")]).await;
        let show: Value = serde_json::from_str(&show.stdout).unwrap();
        let after = |address: &str| {
            show["resource_changes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["address"] == address)
                .map(|r| r["change"]["after"].clone())
                .unwrap_or_else(|| panic!("no {address} in the spoke plan"))
        };
        let policy = json_field(&after("module.spoke.aws_iam_role_policy.patch_exec"), "policy");
        let actions: BTreeSet<String> = statements(&policy).iter().flat_map(|s| strings(&s["Action"])).collect();
        for action in ["ec2:CreateSnapshots", "ec2:CreateTags", "ec2:DescribeSnapshots", "ec2:DeleteSnapshot"] {
            assert_eq!(actions.contains(action), snapshots, "{allow}: {action} in {actions:?}");
        }
        assert!(actions.contains("ssm:SendCommand") && actions.contains("ec2:DescribeInstances"), "{actions:?}");
        let trust = json_field(&after("module.spoke.aws_iam_role.patch_exec"), "assume_role_policy");
        let trusted = strings(&statements(&trust)[0]["Condition"]["ArnEquals"]["aws:PrincipalArn"]);
        let monitor = format!("arn:aws:iam::{HUB_ACCOUNT}:role/{PREFIX}-ApprovalMonitor");
        assert_eq!(trusted.contains(&monitor), snapshots, "{allow}: trusted {trusted:?}");
        assert_eq!(trusted.len(), if snapshots { 5 } else { 4 }, "{allow}: trusted {trusted:?}");
    }
}

/// ApprovalTimeout watches exactly what ApprovalMonitor emits: the EMF document the function
/// prints, in the hub's namespace, has the alarm's metric with the
/// alarm's dimensions (none); and the monitor is scheduled every five minutes.
fn approval_alarm_watches_the_emitted_metric(planned: &BTreeMap<String, Value>) {
    use ec2patch_core::approval::monitor::OLDEST_PENDING_METRIC;
    let alarm = &planned["module.hub.aws_cloudwatch_metric_alarm.approval_timeout"];
    assert_eq!(alarm["alarm_name"], "ec2patch-ApprovalTimeout");
    assert_eq!(alarm["metric_name"], OLDEST_PENDING_METRIC);
    assert_eq!(alarm["statistic"], "Maximum");
    assert_eq!(alarm["threshold"], 60.0);
    assert_eq!(alarm["comparison_operator"], "GreaterThanOrEqualToThreshold");
    // The functions' environment is known only after apply (it holds the API's URL); the
    // namespace is the module's local.metric_namespace, as in every function's
    // EC2PATCH_METRIC_NAMESPACE (checked after the apply in inspect_local_apply).
    let namespace = alarm["namespace"].as_str().unwrap();
    assert_eq!(namespace, "EC2Patch/ec2patch");
    // The seed's alarm names, metrics and thresholds (its Monitoring section).
    for (name, metric, threshold) in
        [("PatchFailureRate", "PatchFailures", 5.0), ("InstanceDowntime", "InstancesUnhealthy", 2.0)]
    {
        let seed_alarm = &planned[&format!("module.hub.aws_cloudwatch_metric_alarm.metric[\"{name}\"]")];
        assert_eq!(seed_alarm["alarm_name"], format!("ec2patch-{name}"));
        assert_eq!(seed_alarm["metric_name"], metric);
        assert_eq!(seed_alarm["threshold"], threshold);
        assert_eq!(seed_alarm["comparison_operator"], "GreaterThanThreshold");
        assert_eq!(seed_alarm["namespace"], namespace);
    }
    let emitted = ec2patch_core::metrics::document(namespace, None, &ec2patch_approval_monitor::metrics_of(1, 61), 0);
    let directive = &emitted["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], namespace);
    assert!(directive["Metrics"].as_array().unwrap().iter().any(|m| m["Name"] == OLDEST_PENDING_METRIC), "{emitted}");
    let alarm_dimensions: Vec<String> = match alarm.get("dimensions") {
        Some(Value::Object(d)) => d.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let dimension_sets: Vec<Vec<String>> = serde_json::from_value(directive["Dimensions"].clone()).unwrap();
    assert!(dimension_sets.contains(&alarm_dimensions), "alarm dimensions {alarm_dimensions:?} not emitted: {emitted}");
    assert_eq!(emitted[OLDEST_PENDING_METRIC], 61.0);
    let rule = &planned["module.hub.aws_cloudwatch_event_rule.approval_monitor"];
    assert_eq!(rule["schedule_expression"], "rate(5 minutes)");
    assert!(planned.contains_key("module.hub.aws_cloudwatch_event_target.approval_monitor"));
    assert_eq!(planned["module.hub.aws_lambda_permission.approval_monitor"]["principal"], "events.amazonaws.com");
}

/// examples/local applied, re-planned, inspected and destroyed.
async fn hub_and_spokes_apply_replan_destroy(stack: &LocalStack) {
    // Hub + two spokes on the local stack.
    let copy = working_copy("local");
    let artifacts = copy.join("artifacts");
    lambda_zips(&artifacts);
    // moto 5.2.5 does not store a function's LoggingConfig, so every plan would want to set it
    // again. On the emulator only, this override ignores that one block (the request still sends
    // it: see the Quick Start plan's logging_config assertion); everything else must converge.
    std::fs::write(
        copy.join("terraform/modules/hub/zz_emulator_override.tf"),
        "# Written by tests/e2e/tests/terraform.rs: moto does not return Lambda LoggingConfig.\n\
         resource \"aws_lambda_function\" \"this\" {\n  lifecycle {\n    ignore_changes = [logging_config]\n  }\n}\n",
    )
    .unwrap();
    let local = copy.join("examples/local");
    std::fs::write(
        local.join("terraform.tfvars.json"),
        json!({
            "endpoint": stack.router.url(),
            "access_key": stack.hub_credentials.access_key_id(),
            "secret_key": stack.hub_credentials.secret_access_key(),
            "lambda_artifacts_dir": artifacts,
            "name_prefix": PREFIX,
            "spoke_accounts": SPOKES,
        })
        .to_string(),
    )
    .unwrap();
    init(&local).await;
    let apply = terraform(&local, &["apply", "-auto-approve", "-input=false", "-no-color"]).await;
    let applied = apply.code == Some(0);
    let result = if applied { inspect_local_apply(stack, &local, &artifacts, &apply.stdout).await } else { Ok(()) };
    // Always destroy (the stack goes away with the test, but destroy itself is under test). The
    // state was refreshed by the plan just made.
    let destroy = terraform(&local, &["destroy", "-auto-approve", "-refresh=false", "-input=false", "-no-color"]).await;
    assert!(applied, "terraform apply on the local stack failed:\n{}", apply.text());
    if let Err(message) = result {
        panic!("{message}");
    }
    assert_eq!(destroy.code, Some(0), "terraform destroy failed:\n{}", destroy.text());
    let machines = stack.sfn().list_state_machines().send().await.unwrap();
    let names: Vec<&str> = machines.state_machines().iter().map(|m| m.name()).collect();
    assert!(!names.contains(&"ec2patch-orchestrator"), "destroy left the state machine: {names:?}");
    assert!(names.contains(&"tfstack-orchestrator"), "the local stack's own machine is gone: {names:?}");
}

/// Everything checked between apply and destroy; an error message instead of a panic, so the
/// caller still destroys.
async fn inspect_local_apply(
    stack: &LocalStack,
    local: &Path,
    artifacts: &Path,
    apply_log: &str,
) -> Result<(), String> {
    let check = |ok: bool, message: String| if ok { Ok(()) } else { Err(message) };

    // A second plan must find nothing to do.
    let plan = terraform(local, &["plan", "-detailed-exitcode", "-input=false", "-no-color"]).await;
    check(plan.code == Some(0), format!("the plan after apply is not empty (exit 2 = changes):\n{}", plan.text()))?;

    let outputs: Value =
        serde_json::from_str(&terraform(local, &["output", "-json"]).await.stdout).map_err(|e| e.to_string())?;
    let show: Value =
        serde_json::from_str(&terraform(local, &["show", "-json"]).await.stdout).map_err(|e| e.to_string())?;
    let state = state_resources(&show);
    let resource = |address: &str| state.get(address).cloned().ok_or_else(|| format!("{address} is not in the state"));

    // The deployed state machine is exactly what the local stack renders from the same template.
    let arn = outputs["state_machine_arn"]["value"].as_str().ok_or("no state_machine_arn output")?.to_owned();
    let described =
        stack.sfn().describe_state_machine().state_machine_arn(&arn).send().await.map_err(|e| format!("{e:?}"))?;
    let owned: Vec<(String, String)> = FUNCTIONS
        .iter()
        .filter_map(|(function, _, var, _)| var.map(|v| (format!("{v}_function_arn"), function_arn(function))))
        .chain([("table_name".to_owned(), format!("{PREFIX}-runs"))])
        .collect();
    let values: BTreeMap<&str, String> = owned.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    for placeholder in asl::placeholders(asl::ORCHESTRATOR_TEMPLATE) {
        check(
            values.contains_key(placeholder.as_str()),
            format!(
                "the template has ${{{placeholder}}}, which the hub module does not fill: add it to function_specs"
            ),
        )?;
    }
    let expected = asl::render(asl::ORCHESTRATOR_TEMPLATE, &values).map_err(|e| e.to_string())?;
    check(
        described.definition() == expected,
        format!(
            "deployed definition differs from asl::render:\n--- deployed\n{}\n--- rendered\n{expected}",
            described.definition()
        ),
    )?;
    check(described.name() == "ec2patch-orchestrator", format!("state machine name {}", described.name()))?;
    check(
        described.role_arn() == format!("arn:aws:iam::{HUB_ACCOUNT}:role/{PREFIX}-orchestrator"),
        format!("state machine role {}", described.role_arn()),
    )?;

    // The dashboard graphs the seed's KPIs and shows the seed's three alarms.
    let dashboard = resource("module.hub.aws_cloudwatch_dashboard.hub")?;
    let body: Value =
        serde_json::from_str(dashboard["dashboard_body"].as_str().unwrap_or("{}")).map_err(|e| e.to_string())?;
    let widgets = body["widgets"].as_array().cloned().unwrap_or_default();
    for (title, metric) in [
        ("Patch success rate", "PatchSuccessRate"),
        ("Wave duration", "WaveDurationSeconds"),
        ("Compliance", "InstancesNonCompliantBefore"),
    ] {
        let graphs = widgets.iter().any(|w| {
            w["properties"]["title"].as_str().is_some_and(|t| t.starts_with(title))
                && w["properties"]["metrics"][0][1] == metric
        });
        check(graphs, format!("no dashboard widget \"{title}\" graphing {metric}: {body}"))?;
    }
    let alarm_widget = widgets.iter().find(|w| w["type"] == "alarm").map(|w| w["properties"]["alarms"].to_string());
    for name in ["PatchFailureRate", "InstanceDowntime", "ApprovalTimeout"] {
        check(
            alarm_widget.as_deref().is_some_and(|alarms| alarms.contains(&format!(":alarm:{PREFIX}-{name}\""))),
            format!("the dashboard's alarm widget lacks {name}: {alarm_widget:?}"),
        )?;
    }

    // Every function's environment is a hub configuration the functions accept.
    let mut plan_run_config = None;
    for (function, bin, _, _) in FUNCTIONS {
        let lambda = resource(&format!("module.hub.aws_lambda_function.this[\"{function}\"]"))?;
        // The code moto stores (its CodeSize, read back by the provider) is the zip given.
        let zip = artifacts.join(bin).join("bootstrap.zip");
        let size = std::fs::metadata(&zip).map_err(|e| format!("{}: {e}", zip.display()))?.len();
        check(
            lambda["source_code_size"] == json!(size),
            format!(
                "{function}: source_code_size {} but {} has {size} bytes",
                lambda["source_code_size"],
                zip.display()
            ),
        )?;
        let env: BTreeMap<String, String> =
            serde_json::from_value(lambda["environment"][0]["variables"].clone()).map_err(|e| e.to_string())?;
        let config = HubConfig::from_lookup(|name| env.get(name).cloned())
            .map_err(|e| format!("{function}'s environment is not a valid hub configuration: {e}"))?;
        check(config.table == "ec2patch-runs", format!("{function} table {}", config.table))?;
        check(
            config.bucket == format!("ec2patch-artifacts-{HUB_ACCOUNT}-us-east-1"),
            format!("{function} bucket {}", config.bucket),
        )?;
        check(config.spoke_role_name == "PatchExecRole", format!("{function} role {}", config.spoke_role_name))?;
        check(
            config.external_id.as_deref() == Some("ec2patch-111111111111"),
            format!("{function} external id {:?}", config.external_id),
        )?;
        check(
            env.get("EC2PATCH_HMAC_KEY_PARAMETER").map(String::as_str) == Some("/ec2patch/approval-hmac-key"),
            format!("{function} HMAC parameter {:?}", env.get("EC2PATCH_HMAC_KEY_PARAMETER")),
        )?;
        // The namespace the functions emit in is the one ApprovalTimeout watches.
        let alarm_namespace = resource("module.hub.aws_cloudwatch_metric_alarm.approval_timeout")?["namespace"].clone();
        check(
            env.get("EC2PATCH_METRIC_NAMESPACE").map(|n| json!(n)) == Some(alarm_namespace.clone()),
            format!("{function} metric namespace {:?}, alarm {alarm_namespace}", env.get("EC2PATCH_METRIC_NAMESPACE")),
        )?;
        let base = env.get("EC2PATCH_CALLBACK_BASE_URL").cloned().unwrap_or_default();
        check(base.starts_with("https://") && !base.ends_with('/'), format!("{function} callback base URL {base:?}"))?;
        check(
            env.get("EC2PATCH_APPROVAL_TIMEOUT_SECONDS").map(String::as_str) == Some("14400"),
            format!("{function} approval timeout {:?}", env.get("EC2PATCH_APPROVAL_TIMEOUT_SECONDS")),
        )?;
        // snapshot_retention_days' default: a week.
        check(
            env.get("EC2PATCH_SNAPSHOT_RETENTION_DAYS").map(String::as_str) == Some("7")
                && config.patching.snapshot_retention_days == 7,
            format!("{function} snapshot retention {:?}", env.get("EC2PATCH_SNAPSHOT_RETENTION_DAYS")),
        )?;
        if *function == "PlanRun" {
            plan_run_config = Some(config);
        }
    }
    let config = plan_run_config.ok_or("no PlanRun")?;

    // Each wave rule's input is a run input PlanRun accepts, naming that wave's accounts.
    let topic = resource("module.hub.aws_sns_topic.alerts")?["arn"].as_str().unwrap_or_default().to_owned();
    // wave2-standard follows wave1-critical (a wave gate), and wave1-critical snapshots its
    // instances before patching them (examples/local/main.tf).
    for (wave, account, regions, gate, snapshot) in [
        ("wave1-critical", SPOKES[0], vec!["us-east-1"], None, true),
        (
            "wave2-standard",
            SPOKES[1],
            vec!["us-east-1", "us-west-2"],
            Some(json!({"after": "wave1-critical", "windowHours": 24})),
            false,
        ),
    ] {
        let target = resource(&format!("module.hub.aws_cloudwatch_event_target.wave[\"{wave}\"]"))?;
        check(target["arn"] == json!(arn), format!("{wave} target {}", target["arn"]))?;
        // The rule adds the firing time (`scheduledTime`, the run lock's key) with an input
        // transformer: fill `<time>` as EventBridge does and check what PlanRun gets.
        let transformer = &target["input_transformer"][0];
        check(
            transformer["input_paths"] == json!({"time": "$.time"}),
            format!("{wave} input paths {}", transformer["input_paths"]),
        )?;
        let template = transformer["input_template"].as_str().unwrap_or_default();
        let input: Value = serde_json::from_str(&template.replace("<time>", "2026-12-05T03:00:00Z"))
            .map_err(|e| format!("{wave}: input template is not JSON once filled: {e}\n{template}"))?;
        check(
            input["scheduledTime"] == "2026-12-05T03:00:00Z",
            format!("{wave}: scheduledTime {}", input["scheduledTime"]),
        )?;
        check(
            input["accountWaves"][0]["snapshot"] == json!(snapshot),
            format!("{wave}: accountWaves[0].snapshot {}", input["accountWaves"][0]["snapshot"]),
        )?;
        let plan = plan_run("terraform-check", &input, &config.defaults)
            .map_err(|e| format!("wave rule {wave}'s input is not a valid run input: {e}\n{input:#}"))?;
        let plan = serde_json::to_value(&plan).map_err(|e| e.to_string())?;
        let mut expected_wave = json!([{"name": wave, "accounts": [account], "regions": regions}]);
        if let Some(gate) = gate {
            expected_wave[0]["gate"] = gate;
        }
        // The plan names `snapshot` only when the wave takes snapshots.
        if snapshot {
            expected_wave[0]["snapshot"] = json!(true);
        }
        check(plan["waves"] == expected_wave, format!("{wave}: planned waves {}", plan["waves"]))?;
        check(plan["snsTopicArn"] == json!(topic), format!("{wave}: topic {}", plan["snsTopicArn"]))?;
        check(plan["bedrock"]["agentId"] == "AGENT_ID", format!("{wave}: bedrock {}", plan["bedrock"]))?;
    }
    // An API-shape run can select a configured wave by name (EC2PATCH_WAVES on PlanRun).
    let plan = plan_run("terraform-check", &json!({"waveId": "wave2-standard"}), &config.defaults)
        .map_err(|e| format!("waveId wave2-standard: {e}"))?;
    let plan = serde_json::to_value(&plan).map_err(|e| e.to_string())?;
    check(plan["waves"][0]["accounts"] == json!([SPOKES[1]]), format!("waveId selected {}", plan["waves"]))?;
    check(plan["waves"][0]["gate"]["after"] == "wave1-critical", format!("waveId's gate {}", plan["waves"]))?;
    check(plan["waves"][0].get("snapshot").is_none(), format!("wave2-standard takes no snapshots: {}", plan["waves"]))?;
    // ... and gets the configured wave's snapshots.
    let plan = plan_run("terraform-check", &json!({"waveId": "wave1-critical"}), &config.defaults)
        .map_err(|e| format!("waveId wave1-critical: {e}"))?;
    let plan = serde_json::to_value(&plan).map_err(|e| e.to_string())?;
    check(plan["waves"][0]["snapshot"] == true, format!("waveId wave1-critical's snapshot {}", plan["waves"]))?;

    // Only the functions that work in spokes may assume spoke roles, only in the listed accounts,
    // and exactly those roles are what each spoke trusts.
    let callers = strings(&outputs["spoke_caller_role_arns"]["value"]);
    let expected_callers: BTreeSet<String> =
        SPOKE_FUNCTIONS.iter().map(|f| format!("arn:aws:iam::{HUB_ACCOUNT}:role/{PREFIX}-{f}")).collect();
    check(callers == expected_callers, format!("hub roles that assume spoke roles: {callers:?}"))?;
    let trusted = strings(&outputs["spoke_trusted_hub_role_arns"]["value"]);
    check(trusted == callers, format!("spokes trust {trusted:?}, but the hub assumes with {callers:?}"))?;
    for (function, _, _, _) in FUNCTIONS {
        let policy =
            json_field(&resource(&format!("module.hub.aws_iam_role_policy.function[\"{function}\"]"))?, "policy");
        let assumable: BTreeSet<String> = statements(&policy)
            .iter()
            .filter(|s| strings(&s["Action"]).contains("sts:AssumeRole"))
            .flat_map(|s| strings(&s["Resource"]))
            .collect();
        let expected: BTreeSet<String> = if SPOKE_FUNCTIONS.contains(function) {
            SPOKES.iter().map(|a| format!("arn:aws:iam::{a}:role/PatchExecRole")).collect()
        } else {
            BTreeSet::new()
        };
        check(assumable == expected, format!("{function} may assume {assumable:?}"))?;
    }

    // The approval-link key: 64 hex digits, generated at apply, never printed.
    let key = resource("module.hub.aws_ssm_parameter.hmac_key")?;
    let value = key["value"].as_str().unwrap_or_default();
    check(
        value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit()) && key["type"] == "SecureString",
        format!("HMAC key parameter: type {}, {} characters", key["type"], value.len()),
    )?;
    check(!apply_log.contains(value), "the apply output prints the HMAC key".to_owned())?;

    // Each spoke role lives in its own account and trusts the hub's roles with the ExternalId.
    for (module, account) in [("spoke_a", SPOKES[0]), ("spoke_b", SPOKES[1])] {
        let role = resource(&format!("module.{module}.aws_iam_role.patch_exec"))?;
        check(
            role["arn"] == format!("arn:aws:iam::{account}:role/PatchExecRole"),
            format!("{module} role {}", role["arn"]),
        )?;
        let trust = json_field(&role, "assume_role_policy");
        let statement = &statements(&trust)[0];
        check(
            strings(&statement["Condition"]["StringEquals"]["sts:ExternalId"])
                == BTreeSet::from(["ec2patch-111111111111".to_owned()]),
            format!("{module} trust {statement:#}"),
        )?;
        // The functions that work in spokes, ApprovalMonitor (snapshot cleanup) included.
        let principals = strings(&statement["Condition"]["ArnEquals"]["aws:PrincipalArn"]);
        for function in SPOKE_FUNCTIONS {
            check(
                principals.contains(&format!("arn:aws:iam::{HUB_ACCOUNT}:role/{PREFIX}-{function}")),
                format!("{module} trust lacks {function}: {statement:#}"),
            )?;
        }
        let policy = json_field(&resource(&format!("module.{module}.aws_iam_role_policy.patch_exec"))?, "policy");
        let send: Vec<Value> =
            statements(&policy).into_iter().filter(|s| strings(&s["Action"]).contains("ssm:SendCommand")).collect();
        let document = "arn:aws:ssm:*::document/AWS-RunPatchBaseline".to_owned();
        let instances = format!("arn:aws:ec2:*:{account}:instance/*");
        check(
            send.len() == 2
                && send.iter().any(|s| strings(&s["Resource"]) == BTreeSet::from([document.clone()]))
                && send.iter().any(|s| {
                    strings(&s["Resource"]) == BTreeSet::from([instances.clone()])
                        && s["Condition"]["StringLike"]["ssm:resourceTag/PatchGroup"].is_string()
                }),
            format!("{module}: SendCommand is not limited to AWS-RunPatchBaseline on tagged instances: {send:#?}"),
        )?;
        // Pre-patch snapshots: of patch-tagged instances only, created with ec2patch's tags,
        // tagged only at creation, deleted only when ec2patch's (the evaluator in
        // least_privilege.rs decides requests against the same statements).
        let by_sid = |sid: &str| statements(&policy).into_iter().find(|s| s["Sid"] == sid).unwrap_or(Value::Null);
        let snapshot_arn = "arn:aws:ec2:*::snapshot/*".to_owned();
        let expected = [
            (
                "SnapshotTaggedInstancesOnly",
                "ec2:CreateSnapshots",
                instances.clone(),
                json!({"StringLike": {"aws:ResourceTag/PatchGroup": "*"}}),
            ),
            ("SnapshotTheirVolumes", "ec2:CreateSnapshots", format!("arn:aws:ec2:*:{account}:volume/*"), Value::Null),
            (
                "CreateSnapshotsTaggedByEc2patch",
                "ec2:CreateSnapshots",
                snapshot_arn.clone(),
                json!({"Null": {
                    "aws:RequestTag/ec2patch:run-id": "false",
                    "aws:RequestTag/ec2patch:delete-after": "false",
                }}),
            ),
            (
                "TagSnapshotsAtCreationOnly",
                "ec2:CreateTags",
                snapshot_arn.clone(),
                json!({"StringEquals": {"ec2:CreateAction": "CreateSnapshots"}}),
            ),
            ("ReadSnapshots", "ec2:DescribeSnapshots", "*".to_owned(), Value::Null),
            (
                "DeleteEc2patchSnapshotsOnly",
                "ec2:DeleteSnapshot",
                snapshot_arn,
                json!({"Null": {"aws:ResourceTag/ec2patch:delete-after": "false"}}),
            ),
        ];
        for (sid, action, arn, condition) in expected {
            let found = by_sid(sid);
            check(
                strings(&found["Action"]) == BTreeSet::from([action.to_owned()])
                    && strings(&found["Resource"]) == BTreeSet::from([arn])
                    && found.get("Condition").cloned().unwrap_or(Value::Null) == condition,
                format!("{module}: statement {sid} is not {action} as the spoke module says: {found:#}"),
            )?;
        }
    }
    Ok(())
}
