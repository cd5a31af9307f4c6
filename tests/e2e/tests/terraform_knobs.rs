//! Every setting a function reads is a validated, documented variable of terraform/modules/hub
//! and of the root terraform/hub, and reaches the functions' environment.
//!
//! The list of settings is not kept by hand: it is what the functions' sources read (every
//! `"EC2PATCH_..."` literal outside test modules of crates/core and crates/functions), checked
//! against what `HubConfig::from_lookup` and `Thresholds::from_lookup` actually ask for. The root
//! is then planned against the local stack with every knob set to a non-default value, and the
//! planned environment of the ten functions must carry every setting, parse as a hub
//! configuration with exactly those values, and the module's validations must refuse bad values.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ec2patch_bedrock_analysis::Thresholds;
use ec2patch_core::config::{HubConfig, PatchSettings};
use ec2patch_e2e::terraform::{TerraformOutput, cli_config, copy_tree, emulator_provider_override};
use ec2patch_local::moto::repo_root;
use ec2patch_local::{LocalStack, LocalStackOptions};
use serde_json::{Value, json};

/// Settings whose value Terraform derives from the resources it creates (not a variable of
/// their own), and the variable each follows from.
const DERIVED: &[(&str, &str)] = &[
    ("EC2PATCH_TABLE", "name_prefix: the table <prefix>-runs"),
    ("EC2PATCH_BUCKET", "name_prefix: the bucket <prefix>-artifacts-<account>-<region>"),
    ("EC2PATCH_SNS_TOPIC_ARN", "the alerts topic the module creates"),
    ("EC2PATCH_CALLBACK_BASE_URL", "the approval API the module creates"),
    ("EC2PATCH_HMAC_KEY_PARAMETER", "the SSM parameter the module creates"),
    ("EC2PATCH_WAVES", "wave_rules"),
];

/// Each knob: root/module variable, the `-var` value given (all non-default), the environment
/// variable it sets and the value expected there.
const KNOBS: &[(&str, &str, &str, &str)] = &[
    ("spoke_role_name", "PatchRole2", "EC2PATCH_SPOKE_ROLE_NAME", "PatchRole2"),
    ("external_id", "knobs-external-id", "EC2PATCH_EXTERNAL_ID", "knobs-external-id"),
    ("inventory_concurrency", "7", "EC2PATCH_INVENTORY_CONCURRENCY", "7"),
    ("record_ttl_days", "30", "EC2PATCH_RECORD_TTL_DAYS", "30"),
    ("snapshot_retention_days", "14", "EC2PATCH_SNAPSHOT_RETENTION_DAYS", "14"),
    ("approval_timeout_seconds", "3600", "EC2PATCH_APPROVAL_TIMEOUT_SECONDS", "3600"),
    ("default_regions", r#"["eu-west-1","eu-central-1"]"#, "EC2PATCH_DEFAULT_REGIONS", "eu-west-1,eu-central-1"),
    ("tag_key", "Patch", "EC2PATCH_TAG_KEY", "Patch"),
    ("tag_value", "weekly", "EC2PATCH_TAG_VALUE", "weekly"),
    ("wave_pause_seconds", "120", "EC2PATCH_WAVE_PAUSE_SECONDS", "120"),
    ("abort_on_issues", "false", "EC2PATCH_ABORT_ON_ISSUES", "false"),
    ("metric_namespace", "Knobs/Metrics", "EC2PATCH_METRIC_NAMESPACE", "Knobs/Metrics"),
    ("bedrock_agent_id", "AGENT1", "EC2PATCH_BEDROCK_AGENT_ID", "AGENT1"),
    ("bedrock_agent_alias_id", "ALIAS1", "EC2PATCH_BEDROCK_AGENT_ALIAS_ID", "ALIAS1"),
    ("extra_regions", r#"["ap-southeast-7"]"#, "EC2PATCH_EXTRA_REGIONS", "ap-southeast-7"),
    ("targets_per_batch", "25", "EC2PATCH_TARGETS_PER_BATCH", "25"),
    ("reboot_option", "NoReboot", "EC2PATCH_REBOOT_OPTION", "NoReboot"),
    ("max_concurrency", "5", "EC2PATCH_MAX_CONCURRENCY", "5"),
    ("max_errors", "2%", "EC2PATCH_MAX_ERRORS", "2%"),
    ("command_timeout_seconds", "3600", "EC2PATCH_COMMAND_TIMEOUT_SECONDS", "3600"),
    ("poll_initial_seconds", "15", "EC2PATCH_POLL_INITIAL_SECONDS", "15"),
    ("poll_max_seconds", "120", "EC2PATCH_POLL_MAX_SECONDS", "120"),
    ("command_log_group", "/ec2patch/commands", "EC2PATCH_COMMAND_LOG_GROUP", "/ec2patch/commands"),
    ("run_lock_margin_seconds", "1200", "EC2PATCH_RUN_LOCK_MARGIN_SECONDS", "1200"),
    ("bedrock_timeout_seconds", "90", "EC2PATCH_BEDROCK_TIMEOUT_SECONDS", "90"),
    ("max_failure_rate", "0.05", "EC2PATCH_MAX_FAILURE_RATE", "0.05"),
    ("max_unhealthy", "2", "EC2PATCH_MAX_UNHEALTHY", "2"),
    ("unreachable_is_issue", "false", "EC2PATCH_UNREACHABLE_IS_ISSUE", "false"),
    (
        "change_calendars",
        r#"["PatchFreeze","arn:aws:ssm:us-east-1:111111111111:document/Holidays"]"#,
        "EC2PATCH_CHANGE_CALENDARS",
        "PatchFreeze,arn:aws:ssm:us-east-1:111111111111:document/Holidays",
    ),
    ("freeze_wait_seconds", "3600", "EC2PATCH_FREEZE_WAIT_SECONDS", "3600"),
    ("max_failed_instances", "3", "EC2PATCH_MAX_FAILED_INSTANCES", "3"),
    ("max_failed_percent", "5", "EC2PATCH_MAX_FAILED_PERCENT", "5"),
    ("max_concurrent_batches", "4", "EC2PATCH_MAX_CONCURRENT_BATCHES", "4"),
    (
        "organizations_role_arn",
        "arn:aws:iam::999999999999:role/OrgReader",
        "EC2PATCH_ORGANIZATIONS_ROLE_ARN",
        "arn:aws:iam::999999999999:role/OrgReader",
    ),
];

/// snapshot_retention_days' validation message (terraform/modules/hub/variables.tf).
const SNAPSHOT_RETENTION_MESSAGE: &str = "snapshot_retention_days must be a whole number of days from 1 to 365";

/// Variables of the module the root does not pass on, and why.
const NOT_PASSED: &[(&str, &str)] = &[("tags", "the root puts them in the provider's default_tags")];

/// `"EC2PATCH_..."` string literals in the Rust files under `dir`, test modules left out.
fn env_literals(dir: &Path, out: &mut BTreeMap<String, BTreeSet<String>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            env_literals(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") || path.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        // Unit tests sit in a trailing `#[cfg(test)] mod tests`.
        let source = source.split("#[cfg(test)]").next().unwrap();
        for piece in source.split("\"EC2PATCH_").skip(1) {
            let name: String =
                piece.chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
            if piece[name.len()..].starts_with('"') {
                out.entry(format!("EC2PATCH_{name}")).or_default().insert(path.display().to_string());
            }
        }
    }
}

/// The settings the functions read, from their sources.
fn settings_read_by_functions() -> BTreeMap<String, BTreeSet<String>> {
    let root = repo_root();
    let mut found = BTreeMap::new();
    env_literals(&root.join("crates/core/src"), &mut found);
    env_literals(&root.join("crates/functions"), &mut found);
    found
}

/// The names `HubConfig::from_lookup` and `Thresholds::from_lookup` ask for.
fn settings_asked_for() -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    let lookup = |name: &str| {
        asked.borrow_mut().insert(name.to_owned());
        matches!(name, "EC2PATCH_TABLE" | "EC2PATCH_BUCKET").then(|| "x".to_owned())
    };
    HubConfig::from_lookup(lookup).unwrap();
    Thresholds::from_lookup(lookup).unwrap();
    asked.into_inner().into_iter().filter(|n| n.starts_with("EC2PATCH_")).collect()
}

/// `variable "NAME" { ... }` blocks of a .tf file: name -> block text.
fn variables(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    for block in text.split("\nvariable \"").skip(1) {
        let name = block.split('"').next().unwrap().to_owned();
        let body = block.split("\n}\n").next().unwrap().to_owned();
        out.insert(name, body);
    }
    out
}

#[test]
fn every_setting_the_functions_read_is_a_variable_of_the_module_and_the_root() {
    let root = repo_root();
    let read = settings_read_by_functions();
    // The source scan must see at least what the parsers ask for (else the scan is broken).
    let asked = settings_asked_for();
    let missed: Vec<_> = asked.iter().filter(|n| !read.contains_key(*n)).collect();
    assert!(missed.is_empty(), "the source scan missed settings HubConfig/Thresholds read: {missed:?}");
    assert!(read.len() >= 30, "the source scan found only {read:?}");

    let knob_envs: BTreeSet<&str> = KNOBS.iter().map(|k| k.2).collect();
    let derived: BTreeSet<&str> = DERIVED.iter().map(|d| d.0).collect();
    for (name, files) in &read {
        assert!(
            knob_envs.contains(name.as_str()) || derived.contains(name.as_str()),
            "{name} is read by {files:?} but has no Terraform variable: add one to terraform/modules/hub and \
             terraform/hub (validated, documented in the module README), set it in lambda.tf's environment, and list \
             it in KNOBS here"
        );
    }
    for name in knob_envs.iter().chain(&derived) {
        assert!(read.contains_key(*name), "{name} is listed here but no function reads it any more");
    }

    let module = variables(&root.join("terraform/modules/hub/variables.tf"));
    let root_vars = variables(&root.join("terraform/hub/variables.tf"));
    let root_main = std::fs::read_to_string(root.join("terraform/hub/main.tf")).unwrap();
    let readme = std::fs::read_to_string(root.join("terraform/modules/hub/README.md")).unwrap();
    let inputs = readme.split("## Inputs").nth(1).unwrap().split("\n## ").next().unwrap();
    for (name, body) in &module {
        assert!(body.contains("description = \""), "module variable {name} has no description");
        assert!(inputs.contains(&format!("`{name}`")), "module variable {name} is not in the README's Inputs table");
        if NOT_PASSED.iter().any(|(n, _)| n == name) {
            continue;
        }
        assert!(root_vars.contains_key(name), "terraform/hub does not declare the module's variable {name}");
        let passed = root_main.lines().any(|line| {
            let line: String = line.split_whitespace().collect();
            line == format!("{name}=var.{name}")
        });
        assert!(passed, "terraform/hub/main.tf does not pass {name} to the module");
    }
    for (knob, _, env, _) in KNOBS {
        let body = module.get(*knob).unwrap_or_else(|| panic!("{env}: the module has no variable {knob}"));
        assert!(
            body.contains("validation {") || body.contains("type        = bool"),
            "module variable {knob} ({env}) has no validation"
        );
    }
}

// ---------------------------------------------------------------------------------------------

fn test_dir() -> PathBuf {
    let dir = repo_root().join("target/terraform-test");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn terraform(dir: &Path, args: &[String]) -> TerraformOutput {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ec2patch_e2e::terraform::run(dir, &args, &cli_config(&test_dir())).await
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn plan_args(knobs: &[(&str, &str)]) -> Vec<String> {
    let mut args: Vec<String> =
        ["plan", "-input=false", "-no-color", "-var=orchestrator_account_id=111111111111"].map(str::to_owned).to_vec();
    args.extend(knobs.iter().map(|(name, value)| format!("-var={name}={value}")));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_knob_set_on_the_root_reaches_the_functions_and_bad_values_are_refused() {
    let stack =
        LocalStack::start(LocalStackOptions { name_prefix: "knobs".into(), ..Default::default() }).await.unwrap();
    let copy = test_dir().join("knobs");
    let _ = std::fs::remove_dir_all(&copy);
    for dir in ["terraform", "statemachine"] {
        copy_tree(&repo_root().join(dir), &copy.join(dir));
    }
    // The plan only needs the zips to exist (the emulator never runs them).
    for bin in ec2patch_local::functions::binaries() {
        let zip = copy.join("target/lambda").join(bin).join("bootstrap.zip");
        std::fs::create_dir_all(zip.parent().unwrap()).unwrap();
        std::fs::write(zip, b"placeholder").unwrap();
    }
    let hub = copy.join("terraform/hub");
    std::fs::write(
        hub.join("zz_local_stack_override.tf"),
        emulator_provider_override(
            &stack.router.url(),
            stack.hub_credentials.access_key_id(),
            stack.hub_credentials.secret_access_key(),
        ),
    )
    .unwrap();
    std::fs::write(
        hub.join("zz_knobs_outputs.tf"),
        "output \"zz_function_environment\" {\n  value = module.hub.function_environment\n}\n",
    )
    .unwrap();
    let init = terraform(&hub, &["init", "-backend=false", "-input=false", "-no-color"].map(str::to_owned)).await;
    assert!(init.success(), "{}", init.text());

    let mut knobs: Vec<(&str, &str)> = KNOBS.iter().map(|k| (k.0, k.1)).collect();
    knobs.extend([
        ("log_level", "DEBUG"),
        ("state_machine_log_level", "ALL"),
        ("callback_throttle", "{rate=3,burst=4}"),
        ("spoke_account_ids", r#"["222222222222"]"#),
        // A wave with pre-patch snapshots (its rule's input is checked after a real apply in
        // terraform.rs: the plan knows it only once the alerts topic exists).
        (
            "wave_rules",
            r#"[{name="knobs-snap",schedule_expression="rate(7 days)",accounts=["222222222222"],regions=["us-east-1"],snapshot=true},{name="knobs-plain",schedule_expression="rate(7 days)",accounts=["222222222222"],regions=["us-west-2"]}]"#,
        ),
    ]);
    let mut args = plan_args(&knobs);
    args.push("-out=knobs.tfplan".to_owned());
    let plan = terraform(&hub, &args).await;
    assert!(plan.success(), "{}", plan.text());
    let show = terraform(&hub, &["show", "-json", "knobs.tfplan"].map(str::to_owned)).await;
    let show: Value = serde_json::from_str(&show.stdout).unwrap();
    let planned: BTreeMap<String, Value> = show["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["address"].as_str().unwrap().to_owned(), r["change"]["after"].clone()))
        .collect();

    // Every function's environment: every knob with its value, a configuration the functions
    // accept with exactly those values, and together every setting any function reads. The
    // plan shows a map holding a value known only after apply (the API's URL) as wholly
    // unknown, so the environments are read from the module's function_environment output
    // (everything but that URL), which this copy of the root passes on.
    let environments: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_value(show["planned_values"]["outputs"]["zz_function_environment"]["value"].clone())
            .unwrap_or_else(|e| panic!("{e}: {:#}", show["planned_values"]["outputs"]));
    assert_eq!(environments.len(), ec2patch_local::functions::ALL.len(), "{environments:?}");
    let mut seen = BTreeSet::new();
    for (function, env) in &environments {
        let address = format!("module.hub.aws_lambda_function.this[\"{function}\"]");
        let lambda = &planned[&address];
        seen.extend(env.keys().cloned());
        for (knob, _, name, expected) in KNOBS {
            assert_eq!(env.get(*name).map(String::as_str), Some(*expected), "{function}: {name} from {knob}");
        }
        let config = HubConfig::from_lookup(|name| env.get(name).cloned()).unwrap();
        assert_eq!(
            config.patching,
            PatchSettings {
                targets_per_batch: 25,
                reboot_option: "NoReboot".into(),
                max_concurrency: "5".into(),
                max_errors: "2%".into(),
                command_timeout_seconds: 3600,
                poll_initial_seconds: 15,
                poll_max_seconds: 120,
                command_log_group: Some("/ec2patch/commands".into()),
                run_lock_margin_seconds: 1200,
                snapshot_retention_days: 14,
            },
            "{address}"
        );
        assert_eq!((config.inventory_concurrency, config.record_ttl_days), (7, 30), "{address}");
        assert_eq!(config.defaults.extra_regions, ["ap-southeast-7"], "{address}");
        assert_eq!(
            (config.defaults.change_calendars.len(), config.defaults.freeze_wait_seconds),
            (2, 3600),
            "{address}"
        );
        assert_eq!(
            (config.defaults.error_budget.max_failed_instances, config.defaults.error_budget.max_failed_percent),
            (Some(3), Some(5)),
            "{address}"
        );
        assert_eq!(config.defaults.max_concurrent_batches, Some(4), "{address}");
        let thresholds = Thresholds::from_lookup(|name| env.get(name).cloned()).unwrap();
        assert_eq!(
            thresholds,
            Thresholds { max_failure_rate: 0.05, max_unhealthy: 2, unreachable_is_issue: false },
            "{address}"
        );
        assert_eq!(lambda["logging_config"][0]["application_log_level"], "DEBUG", "{address}");
    }
    // wave_rules[*].snapshot reaches the named waves `waveId` selects (EC2PATCH_WAVES, PlanRun
    // only), true where the rule says so and false by default.
    let plan_run = &environments["PlanRun"];
    let waves: Value = serde_json::from_str(&plan_run["EC2PATCH_WAVES"]).unwrap();
    assert_eq!(
        (&waves[0]["name"], &waves[0]["snapshot"], &waves[1]["name"], &waves[1]["snapshot"]),
        (&json!("knobs-snap"), &json!(true), &json!("knobs-plain"), &json!(false)),
        "{waves}"
    );
    let config = HubConfig::from_lookup(|name| plan_run.get(name).cloned()).unwrap();
    let snapshots: Vec<(&str, bool)> = config.defaults.waves.iter().map(|w| (w.name.as_str(), w.snapshot)).collect();
    assert_eq!(snapshots, [("knobs-snap", true), ("knobs-plain", false)]);
    for (function, env) in &environments {
        assert_eq!(env.contains_key("EC2PATCH_WAVES"), function == "PlanRun", "{function}");
    }
    for name in settings_read_by_functions().keys() {
        // Values Terraform only knows after apply (the topic ARN, the API URL) are absent from
        // the planned map; they are checked after a real apply in terraform.rs.
        let after_apply = name == "EC2PATCH_CALLBACK_BASE_URL";
        assert!(seen.contains(name) || after_apply, "no function's planned environment sets {name}");
    }
    let machine = &planned["module.hub.aws_sfn_state_machine.orchestrator"];
    assert_eq!(machine["logging_configuration"][0]["level"], "ALL");
    let stage = &planned["module.hub.aws_apigatewayv2_stage.callback"]["default_route_settings"][0];
    assert_eq!(
        (stage["throttling_rate_limit"].as_f64(), stage["throttling_burst_limit"].as_i64()),
        (Some(3.0), Some(4))
    );
    let alarm = planned
        .iter()
        .find(|(a, v)| a.starts_with("module.hub.aws_cloudwatch_metric_alarm.") && v["metric_name"] == "PatchFailures")
        .map(|(_, v)| v.clone())
        .expect("the PatchFailures alarm");
    assert_eq!(alarm["namespace"], "Knobs/Metrics");

    // Bad values fail the plan, each with its variable's message. Terraform reports every failed
    // variable validation of a plan at once, so one plan checks them all (a plan costs most of a
    // minute).
    let bad = [
        ("targets_per_batch", "0", "targets_per_batch must be a whole number from 1 to 100"),
        ("reboot_option", "Sometimes", "reboot_option must be RebootIfNeeded or NoReboot"),
        ("max_concurrency", "0", "max_concurrency must be a number from 1 to 9999"),
        ("bedrock_timeout_seconds", "600", "bedrock_timeout_seconds must be a whole number from 1 to 150"),
        ("run_lock_margin_seconds", "300", "run_lock_margin_seconds must be a whole number above 600"),
        ("max_failure_rate", "5", "max_failure_rate must be a fraction from 0 to 1"),
        ("command_log_group", "no spaces", "command_log_group must be a CloudWatch Logs group name"),
        ("change_calendars", r#"["no spaces"]"#, "change_calendars must be at most 10 Change Calendar names"),
        ("freeze_wait_seconds", "-1", "freeze_wait_seconds must be a whole number of seconds from 0 to 604800"),
        ("max_failed_percent", "101", "max_failed_percent must be a whole number from 0 to 100, or null"),
        ("max_concurrent_batches", "0", "max_concurrent_batches must be a whole number from 1 to 1000, or null"),
        ("snapshot_retention_days", "366", SNAPSHOT_RETENTION_MESSAGE),
        (
            "wave_rules",
            r#"[{name="prod",schedule_expression="rate(1 day)",accounts=["222222222222"],regions=["us-east-1"],after="canry",gate_window_hours=0},{name="org",schedule_expression="rate(1 day)",organizational_units=["Prod"],regions=["us-east-1"]}]"#,
            "Each wave_rules[*].after must name another wave of wave_rules",
        ),
        ("organizations_role_arn", "OrgReader", "organizations_role_arn must be an IAM role ARN"),
    ];
    // The same plan's second wave names an OU by its name instead of its id.
    let ou_message = "Each wave_rules[*].organizational_units must hold at most 50 OU ids";
    let run = terraform(&hub, &plan_args(&bad.map(|(knob, value, _)| (knob, value)))).await;
    assert_eq!(run.code, Some(1), "planned with bad values:\n{}", run.text());
    let stderr = squash(&run.stderr);
    for (knob, value, message) in bad {
        assert!(stderr.contains(message), "{knob}={value}: no {message:?} in\n{}", run.text());
    }
    assert!(stderr.contains(ou_message), "no {ou_message:?} in\n{}", run.text());
    // A rule between two variables is checked only once each is valid on its own: its own plan.
    let run = terraform(&hub, &plan_args(&[("poll_initial_seconds", "600"), ("poll_max_seconds", "60")])).await;
    assert_eq!(run.code, Some(1), "{}", run.text());
    assert!(
        squash(&run.stderr).contains("poll_max_seconds (60) must be at least poll_initial_seconds (600)"),
        "{}",
        run.text()
    );
}

/// snapshot_retention_days: whole days from 1 to 365. Its block from the module, alone in a
/// scratch root: a plan without providers takes well under a second (the hub's plan above takes
/// most of a minute for one value per variable), so every edge gets its own plan.
#[tokio::test]
async fn snapshot_retention_days_accepts_whole_days_from_1_to_365() {
    let module = variables(&repo_root().join("terraform/modules/hub/variables.tf"));
    let body = module.get("snapshot_retention_days").expect("the module's snapshot_retention_days");
    assert!(body.contains("default     = 7"), "the default is a week: {body}");
    let dir = test_dir().join("snapshot-retention-days");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("variables.tf"), format!("variable \"{body}\n}}\n")).unwrap();
    let plan = |value: &str| -> Vec<String> {
        let mut args: Vec<String> = ["plan", "-input=false", "-no-color"].map(str::to_owned).to_vec();
        args.push(format!("-var=snapshot_retention_days={value}"));
        args
    };
    for value in ["0", "366", "1.5", "-7"] {
        let run = terraform(&dir, &plan(value)).await;
        assert_eq!(run.code, Some(1), "snapshot_retention_days={value} was accepted:\n{}", run.text());
        assert!(squash(&run.stderr).contains(SNAPSHOT_RETENTION_MESSAGE), "{value}: {}", run.text());
    }
    for value in ["1", "7", "365"] {
        let run = terraform(&dir, &plan(value)).await;
        assert!(run.success(), "snapshot_retention_days={value} was refused:\n{}", run.text());
    }
    // Without a value: the default passes its own validation.
    let run = terraform(&dir, &["plan", "-input=false", "-no-color"].map(str::to_owned)).await;
    assert!(run.success(), "{}", run.text());
}
