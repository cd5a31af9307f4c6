//! Least privilege, proven on the policies Terraform would apply, not on what we meant to write.
//!
//! 1. The hub and spoke roots are planned with the example variables (`terraform plan -out`,
//!    `terraform show -json`, offline, against a plain emulator for the data sources): once as
//!    the example stands (the module creates the KMS key, so the documents naming the key are
//!    "known after apply"), once with a brought key (`kms_key_arn`, every document known), once
//!    with `organization_id` as well (the spoke role in any account of the organization). Every
//!    IAM policy document of the plans (inline role policies, managed policies, trust policies,
//!    resource policies: KMS key, S3 bucket, SQS queue, SNS topic, ...) is written under
//!    target/least-privilege/policies/.
//! 2. parliament and cloudsplaining (`scan-policy-file`) lint every document; the test fails on
//!    any finding that is not in [`ALLOWED_FINDINGS`] (each entry with its reason), and on an
//!    entry no finding needs any more. checkov runs on the resolved plans here (and on the modules
//!    in tests/e2e/tests/terraform.rs), under the same allow-list.
//! 3. Identity policies use `Resource: "*"` only for the actions in [`STAR_RESOURCE_ACTIONS`]
//!    (actions AWS gives no resource-level permission), and no wildcard actions.
//! 4. A separate moto server with IAM enforcement on (moto's `INITIAL_NO_AUTH_ACTION_COUNT`,
//!    switched to 0 through `/moto-api/reset-auth` once the identities exist) holds the spoke
//!    `PatchExecRole` and the hub function roles with the planned documents; the test assumes them
//!    through `SpokeSessions` (the production code path, with the ExternalId and role name the
//!    planned hub gives its functions) and asserts what moto allows and denies.
//! 5. What moto does not evaluate (SSM resource ARNs, conditions other than a present
//!    `sts:ExternalId` under StringEquals, cross-account trust policies) is decided by a small
//!    IAM evaluator on the planned JSON instead, and each of moto's gaps is pinned by an assertion
//!    that fails when a moto upgrade starts evaluating it (then move the check to moto).
//!    docs/security.md has the table of which is which.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_ssm::config::http::HttpResponse;
use aws_sdk_ssm::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use ec2patch_core::config::HubConfig;
use ec2patch_core::{AccountId, Hub, Region};
use ec2patch_e2e::terraform::copy_tree;
use ec2patch_local::http::{query_call, xml_text};
use ec2patch_local::moto::{MotoServer, ensure_venv_at, free_port, repo_root, venv_tool};
use ec2patch_local::{LocalStack, LocalStackOptions};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

const HUB_ACCOUNT: &str = "111111111111";
/// The spoke accounts of examples/hub.auto.tfvars.example's waves.
const LISTED_SPOKES: [&str; 4] = ["222222222222", "333333333333", "444444444444", "555555555555"];
/// The account the spoke example is planned in (its policy names this account's instances).
const SPOKE_ACCOUNT: &str = "222222222222";
/// An account in no wave.
const OUTSIDE_ACCOUNT: &str = "999999999999";
const PREFIX: &str = "ec2patch";
const REGION: &str = "us-east-1";
/// The organization of the "organization" plan (`organization_id`: any account of it).
const ORGANIZATION: &str = "o-ec2patch0001";
/// The key of the "brought key" plan.
const BROUGHT_KEY: &str = "arn:aws:kms:us-east-1:111111111111:key/0c0ffee0-0000-4000-8000-000000000001";

/// The hub's functions (terraform/modules/hub/main.tf `function_specs`) and whether each
/// assumes the spoke role (ApprovalMonitor: to delete expired pre-patch snapshots).
const FUNCTIONS: &[(&str, bool)] = &[
    ("PlanRun", false),
    ("PreEC2Inventory", true),
    ("SendApprovalRequest", false),
    ("ApprovalCallback", false),
    ("SendSsmCommand", true),
    ("PollSsmCommand", true),
    ("PostEC2Verify", true),
    ("AnalyzeWithBedrock", false),
    ("ApprovalMonitor", true),
    ("CheckChangeFreeze", false),
];

/// A tool finding we accept, with the reason. `address` is a substring of the planned resource
/// address (plus `#<attribute>`), `detail` a substring of the finding's issue and detail.
struct Allowed {
    tool: &'static str,
    kind: Kind,
    address: &'static str,
    detail: &'static str,
    reason: &'static str,
}

const ALLOWED_FINDINGS: &[Allowed] = &[
    Allowed {
        tool: "parliament",
        kind: Kind::Trust,
        address: "aws_iam_role.",
        detail: "MALFORMED: \"Statement contains neither Resource nor NotResource\"",
        reason: "a trust policy has no Resource by definition; parliament models identity policies only",
    },
    Allowed {
        tool: "parliament",
        kind: Kind::Identity,
        address: "module.spoke.aws_iam_role_policy.patch_exec#policy",
        detail: "RESOURCE_MISMATCH: [{\"action\":\"ssm:SendCommand\",\"required_format\":\"arn:*:ssm:*:*:document/*\"}]",
        reason: "SendCommand is authorized on the document AND on each instance; the tag condition may only apply to \
                 the instances (documents carry no PatchGroup tag), so they are two statements, and parliament checks \
                 each alone; AWS-owned documents have an empty account (arn:aws:ssm:*::document/...), which its \
                 pattern arn:*:ssm:*:*:document/* does not match",
    },
    Allowed {
        tool: "parliament",
        kind: Kind::Identity,
        address: "module.spoke.aws_iam_role_policy.patch_exec#policy",
        detail: "RESOURCE_MISMATCH: [{\"action\":\"ec2:CreateSnapshots\"",
        reason: "CreateSnapshots is authorized on the instance AND each of its volumes AND each new snapshot; each \
                 resource has its own condition (the instance's patch tag, none for this account's volumes, the \
                 ec2patch request tags on the snapshot), and a condition in a statement naming all three would be \
                 evaluated against every one of them, so they are three statements, and parliament checks each alone",
    },
    Allowed {
        tool: "parliament",
        kind: Kind::Identity,
        address: "module.hub.aws_iam_role_policy.state_machine#policy",
        detail: "RESOURCE_MISMATCH: [{\"action\":\"states:DescribeExecution\",\"required_format\":\"arn:*:states:*:*:express:*:*:*\"}]",
        reason: "DescribeExecution takes an execution or an express execution; the Distributed Map's children are \
                 Standard executions of the orchestrator (execution:ec2patch-orchestrator/*), never express ones",
    },
    Allowed {
        tool: "parliament",
        kind: Kind::Resource,
        address: "module.hub.aws_kms_key.hub[0]#policy",
        detail: "RESOURCE_STAR",
        reason: "in a key policy, Resource \"*\" means this key",
    },
    Allowed {
        tool: "parliament",
        kind: Kind::Resource,
        address: "module.hub.aws_kms_key.hub[0]#policy",
        detail: "UNKNOWN_CONDITION_FOR_ACTION: \"Unknown condition kms:EncryptionContext:aws:logs:arn for action kms:DescribeKey\"",
        reason: "AWS's documented key policy for CloudWatch Logs puts DescribeKey under the log-group encryption \
                 context condition too; the condition only narrows",
    },
    Allowed {
        tool: "parliament",
        kind: Kind::Resource,
        address: "module.hub.aws_kms_key.hub[0]#policy",
        detail: "MISMATCHED_TYPE: \"Type mismatch: ArnLike requires a value of type Arn but given String\"",
        reason: "AWS documents ArnLike for kms:EncryptionContext:aws:logs:arn (the context value is the log group ARN)",
    },
    Allowed {
        tool: "checkov",
        kind: Kind::Trust,
        address: "module.spoke.aws_iam_role.patch_exec",
        detail: "CKV_AWS_61",
        reason: "the spoke trusts the hub account root narrowed by aws:PrincipalArn (the five function roles) and \
                 sts:ExternalId, which checkov does not read; naming the roles as principals would fail for hub \
                 roles not created yet and silently stop matching a re-created role (IAM stores its unique id)",
    },
    Allowed {
        tool: "cloudsplaining",
        kind: Kind::Resource,
        address: "module.hub.aws_kms_key.hub[0]#policy",
        detail: "ServiceWildcard",
        reason: "the AccountAdministration statement (kms:* for the account root) is KMS's default key policy: it \
                 delegates the key to IAM in this account; without it nobody could ever manage the key again",
    },
    Allowed {
        tool: "cloudsplaining",
        kind: Kind::Resource,
        address: "module.hub.aws_kms_key.hub[0]#policy",
        detail: "ResourceExposure",
        reason: "same statement: kms:PutKeyPolicy/CreateGrant for the account root, i.e. for IAM policies of the hub \
                 account, which grant none of them to any ec2patch role",
    },
    Allowed {
        tool: "cloudsplaining",
        kind: Kind::Resource,
        address: "module.hub.aws_kms_key.hub[0]#policy",
        detail: "InfrastructureModification",
        reason: "same statement (the account root may administer its own key)",
    },
];

/// Actions an identity policy may allow on `Resource: "*"`: AWS supports no resource-level
/// permission for them (the service authorization reference lists no resource type).
const STAR_RESOURCE_ACTIONS: &[(&str, &str)] = &[
    ("ec2:DescribeInstances", "EC2 Describe* take no resource"),
    ("ec2:DescribeInstanceStatus", "EC2 Describe* take no resource"),
    ("ec2:DescribeSnapshots", "EC2 Describe* take no resource"),
    ("ssm:DescribeInstanceInformation", "no resource type"),
    ("ssm:ListCommands", "no resource type"),
    ("ssm:ListCommandInvocations", "no resource type"),
    ("xray:PutTraceSegments", "X-Ray writes take no resource"),
    ("xray:PutTelemetryRecords", "X-Ray writes take no resource"),
    ("xray:GetSamplingRules", "X-Ray sampling takes no resource"),
    ("xray:GetSamplingTargets", "X-Ray sampling takes no resource"),
    ("states:SendTaskSuccess", "no resource type: the task token is the capability"),
    ("states:SendTaskFailure", "no resource type: the task token is the capability"),
    ("logs:CreateLogDelivery", "Step Functions log delivery (AWS's documented policy): no resource type"),
    ("logs:GetLogDelivery", "Step Functions log delivery: no resource type"),
    ("logs:UpdateLogDelivery", "Step Functions log delivery: no resource type"),
    ("logs:DeleteLogDelivery", "Step Functions log delivery: no resource type"),
    ("logs:ListLogDeliveries", "Step Functions log delivery: no resource type"),
    ("logs:PutResourcePolicy", "Step Functions log delivery: no resource type"),
    ("logs:DescribeResourcePolicies", "Step Functions log delivery: no resource type"),
    ("logs:DescribeLogGroups", "Step Functions log delivery: the account's log groups, no resource type"),
];

// ---------------------------------------------------------------------------------------------
// Terraform, offline, with the machine's provider mirror (as in tests/e2e/tests/terraform.rs).

fn test_dir() -> PathBuf {
    let dir = repo_root().join("target/least-privilege");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn record(what: &str, elapsed: Duration) {
    eprintln!("least-privilege timing: {what}: {:.1}s", elapsed.as_secs_f64());
    let line = format!("{:>8.1}s  {what}\n", elapsed.as_secs_f64());
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(test_dir().join(format!("timings-{}.txt", std::process::id())))
        .and_then(|mut file| std::io::Write::write_all(&mut file, line.as_bytes()));
}

fn cli_config() -> PathBuf {
    ec2patch_e2e::terraform::cli_config(&test_dir())
}

async fn terraform(dir: &Path, args: &[&str]) -> String {
    let started = Instant::now();
    let output = ec2patch_e2e::terraform::run(dir, args, &cli_config()).await;
    let label: Vec<&str> = args.iter().copied().take_while(|a| !a.starts_with("-var")).collect();
    record(&format!("terraform {} ({})", label.join(" "), dir.display()), started.elapsed());
    assert!(output.success(), "terraform {args:?} in {}: {}", dir.display(), output.text());
    output.stdout
}

/// An IAM user with an access key in `account` on a (not yet enforcing) moto server.
async fn iam_user(endpoint: &str, account: &str, user: &str) -> (String, String) {
    let endpoint = &format!("{endpoint}/");
    query_call(endpoint, account, "iam", &[("Action", "CreateUser"), ("UserName", user), ("Version", "2010-05-08")])
        .await
        .unwrap();
    let xml = query_call(
        endpoint,
        account,
        "iam",
        &[("Action", "CreateAccessKey"), ("UserName", user), ("Version", "2010-05-08")],
    )
    .await
    .unwrap();
    (xml_text(&xml, "AccessKeyId").unwrap().to_owned(), xml_text(&xml, "SecretAccessKey").unwrap().to_owned())
}

/// The root's provider pointed at the emulator with `account`'s credentials.
fn provider_override(endpoint: &str, (key, secret): &(String, String)) -> String {
    ec2patch_e2e::terraform::emulator_provider_override(endpoint, key, secret)
}

// ---------------------------------------------------------------------------------------------
// The plans and their policy documents.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Attached to a principal: inline role/user/group policies, managed policies.
    Identity,
    /// A role's assume-role policy.
    Trust,
    /// Attached to a resource: key, bucket, queue, topic, log resource policies.
    Resource,
}

/// Resource types whose attribute holds a policy document we apply, and the kind.
const POLICY_ATTRIBUTES: &[(&str, &str, Kind)] = &[
    ("aws_iam_role", "assume_role_policy", Kind::Trust),
    ("aws_iam_role_policy", "policy", Kind::Identity),
    ("aws_iam_user_policy", "policy", Kind::Identity),
    ("aws_iam_group_policy", "policy", Kind::Identity),
    ("aws_iam_policy", "policy", Kind::Identity),
    ("aws_kms_key", "policy", Kind::Resource),
    ("aws_s3_bucket_policy", "policy", Kind::Resource),
    ("aws_sqs_queue_policy", "policy", Kind::Resource),
    ("aws_sns_topic_policy", "policy", Kind::Resource),
    ("aws_cloudwatch_log_resource_policy", "policy_document", Kind::Resource),
    ("aws_secretsmanager_secret_policy", "policy", Kind::Resource),
    ("aws_lambda_layer_version_permission", "policy", Kind::Resource),
];

/// Attributes that hold a policy the provider computes from the resource (read-only here).
const COMPUTED_POLICY_ATTRIBUTES: &[(&str, &str)] =
    &[("aws_s3_bucket", "policy"), ("aws_sns_topic", "policy"), ("aws_sqs_queue", "policy")];

/// Resource types that attach a managed policy by ARN (its document is not in the plan).
const MANAGED_ATTACHMENTS: &[&str] = &[
    "aws_iam_role_policy_attachment",
    "aws_iam_policy_attachment",
    "aws_iam_user_policy_attachment",
    "aws_iam_group_policy_attachment",
];

#[derive(Debug, Clone)]
struct Document {
    plan: &'static str,
    /// `<resource address>#<attribute>`.
    address: String,
    kind: Kind,
    policy: Value,
    file: PathBuf,
}

#[derive(Debug)]
struct Plans {
    documents: Vec<Document>,
    /// Per plan, the policy attributes that are "known after apply".
    unknown: BTreeMap<&'static str, BTreeSet<String>>,
    /// Per plan, managed policy attachments (resource address, policy ARN).
    managed: Vec<(String, String)>,
    /// Lambda resource policies: (address, principal, source_arn).
    lambda_permissions: Vec<(String, String, String)>,
    /// The ExternalId and spoke role name the hub's functions use (brought-key plan).
    hub_external_id: String,
    hub_spoke_role_name: String,
}

impl Plans {
    fn document(&self, plan: &str, address: &str) -> &Value {
        &self
            .documents
            .iter()
            .find(|d| d.plan == plan && d.address == address)
            .unwrap_or_else(|| panic!("no planned document {address} in plan {plan}"))
            .policy
    }
}

static PLANS: OnceCell<Result<Plans, String>> = OnceCell::const_new();

/// The plans, made once for all tests of this file (a failure is kept too, not retried).
async fn plans() -> &'static Plans {
    let plans = PLANS
        .get_or_init(|| async {
            tokio::spawn(plan_examples()).await.map_err(|e| format!("planning the examples failed: {e}"))
        })
        .await;
    plans.as_ref().unwrap_or_else(|e| panic!("{e} (its panic message is above, in the first test that asked)"))
}

/// Plans the examples against a plain emulator (only the data sources read it) and extracts
/// every policy document.
async fn plan_examples() -> Plans {
    let started = Instant::now();
    let root = repo_root();
    let port = free_port().unwrap();
    let moto = MotoServer::start(&root, port, port).await.unwrap();
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let hub_identity = iam_user(&endpoint, HUB_ACCOUNT, "terraform-plan").await;
    let spoke_identity = iam_user(&endpoint, SPOKE_ACCOUNT, "terraform-plan").await;

    let copy = test_dir().join("plan");
    let _ = std::fs::remove_dir_all(&copy);
    for dir in ["terraform", "examples", "statemachine"] {
        copy_tree(&root.join(dir), &copy.join(dir));
    }
    // The hub root's default artifacts directory; the plan only hashes the files.
    for bin in ec2patch_local::functions::binaries() {
        let dir = copy.join("target/lambda").join(bin);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bootstrap.zip"), b"placeholder: the plan only hashes this file").unwrap();
    }
    let hub = copy.join("terraform/hub");
    let spoke = copy.join("terraform/spoke");
    std::fs::write(hub.join("zz_emulator_override.tf"), provider_override(&endpoint, &hub_identity)).unwrap();
    std::fs::write(spoke.join("zz_emulator_override.tf"), provider_override(&endpoint, &spoke_identity)).unwrap();
    let init = ["init", "-backend=false", "-input=false", "-no-color"];
    tokio::join!(terraform(&hub, &init), terraform(&spoke, &init));

    let hub_vars = "-var-file=../../examples/hub.auto.tfvars.example";
    let key_var = format!("-var=kms_key_arn={BROUGHT_KEY}");
    let plan = |dir: PathBuf, name: &'static str, vars: Vec<String>| async move {
        let out = format!("-out={name}.tfplan");
        // Two plans of the hub root at once: no state to protect, so no state lock.
        let mut args = vec!["plan", "-input=false", "-no-color", "-lock=false", out.as_str()];
        args.extend(vars.iter().map(String::as_str));
        terraform(&dir, &args).await;
        let show = terraform(&dir, &["show", "-json", &format!("{name}.tfplan")]).await;
        (name, serde_json::from_str::<Value>(&show).unwrap())
    };
    // The hub's documented variant past ~180 accounts: any account of the organization.
    let organization = vec![hub_vars.to_owned(), key_var.clone(), format!("-var=organization_id={ORGANIZATION}")];
    let (hub_key, hub_brought, hub_organization, spoke_plan) = tokio::join!(
        plan(hub.clone(), "hub-module-key", vec![hub_vars.to_owned()]),
        plan(hub.clone(), "hub-brought-key", vec![hub_vars.to_owned(), key_var]),
        plan(hub.clone(), "hub-organization", organization),
        plan(spoke.clone(), "spoke", vec!["-var-file=../../examples/spoke.tfvars.example".to_owned()]),
    );
    drop(moto);

    let out = test_dir().join("policies");
    let _ = std::fs::remove_dir_all(&out);
    let mut plans = Plans {
        documents: Vec::new(),
        unknown: BTreeMap::new(),
        managed: Vec::new(),
        lambda_permissions: Vec::new(),
        hub_external_id: String::new(),
        hub_spoke_role_name: String::new(),
    };
    for (name, show) in [hub_key, hub_brought, hub_organization, spoke_plan] {
        std::fs::create_dir_all(out.join(name)).unwrap();
        std::fs::write(out.join(name).join("plan.json"), serde_json::to_string_pretty(&show).unwrap()).unwrap();
        extract(name, &show, &out.join(name), &mut plans);
    }
    // What the hub's functions present: the root's external_id output (the functions'
    // EC2PATCH_EXTERNAL_ID) and spoke_role_name (EC2PATCH_SPOKE_ROLE_NAME); the Lambda
    // environment as a whole is known after apply (it names the topic and the API).
    let hub_plan = plans_show(&out, "hub-brought-key");
    let text = |value: &Value| value.as_str().unwrap_or_else(|| panic!("not a known string: {value}")).to_owned();
    plans.hub_external_id = text(&hub_plan["planned_values"]["outputs"]["external_id"]["value"]);
    plans.hub_spoke_role_name = text(&hub_plan["variables"]["spoke_role_name"]["value"]);
    record("plans of the examples, in all", started.elapsed());
    plans
}

fn plans_show(out: &Path, name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join(name).join("plan.json")).unwrap()).unwrap()
}

fn extract(plan: &'static str, show: &Value, dir: &Path, plans: &mut Plans) {
    for change in show["resource_changes"].as_array().unwrap() {
        if change["mode"] != "managed" {
            continue;
        }
        assert_eq!(change["change"]["actions"], json!(["create"]), "{}", change["address"]);
        let address = change["address"].as_str().unwrap();
        let kind_of = change["type"].as_str().unwrap();
        let after = &change["change"]["after"];
        let unknown = &change["change"]["after_unknown"];
        if MANAGED_ATTACHMENTS.contains(&kind_of) {
            plans
                .managed
                .push((address.to_owned(), after["policy_arn"].as_str().unwrap_or("(known after apply)").to_owned()));
        }
        if kind_of == "aws_iam_role" {
            for arn in after["managed_policy_arns"].as_array().into_iter().flatten() {
                plans.managed.push((address.to_owned(), arn.as_str().unwrap_or_default().to_owned()));
            }
        }
        if kind_of == "aws_lambda_permission" {
            // The API's execution ARN is known after apply only; then the planned value is unknown
            // but set (null and known would mean any caller of the principal's service).
            let source = match after["source_arn"].as_str() {
                Some(arn) => arn.to_owned(),
                None if unknown["source_arn"] == json!(true) => "(known after apply)".to_owned(),
                None => String::new(),
            };
            plans.lambda_permissions.push((
                address.to_owned(),
                after["principal"].as_str().unwrap_or_default().to_owned(),
                source,
            ));
        }
        let known_attributes: Vec<(&str, Kind)> =
            POLICY_ATTRIBUTES.iter().filter(|(t, _, _)| *t == kind_of).map(|(_, a, k)| (*a, *k)).collect();
        // Any other attribute holding a policy document is a resource type this test does not
        // know yet: fail rather than leave it unlinted.
        for (attribute, value) in after.as_object().into_iter().flatten() {
            let is_policy = value
                .as_str()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                .is_some_and(|doc| doc.get("Statement").is_some());
            let known = known_attributes.iter().any(|(a, _)| a == attribute)
                || COMPUTED_POLICY_ATTRIBUTES.contains(&(kind_of, attribute.as_str()));
            assert!(
                !is_policy || known,
                "{address}.{attribute} holds a policy document, but {kind_of} is not in POLICY_ATTRIBUTES: add it"
            );
        }
        for (attribute, kind) in known_attributes {
            let key = format!("{address}#{attribute}");
            if unknown[attribute] == json!(true) {
                plans.unknown.entry(plan).or_default().insert(key);
                continue;
            }
            let Some(text) = after[attribute].as_str().filter(|t| !t.is_empty()) else { continue };
            let policy: Value = serde_json::from_str(text).unwrap();
            let sub = match kind {
                Kind::Identity => "identity",
                Kind::Trust => "trust",
                Kind::Resource => "resource",
            };
            let name: String =
                key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
            let file = dir.join(sub).join(format!("{name}.json"));
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, serde_json::to_string_pretty(&policy).unwrap()).unwrap();
            plans.documents.push(Document { plan, address: key, kind, policy, file });
        }
    }
}

fn statements(policy: &Value) -> Vec<Value> {
    match &policy["Statement"] {
        Value::Array(list) => list.clone(),
        other => vec![other.clone()],
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(list) => list.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
        Value::Null => Vec::new(),
        other => panic!("expected a string or a list of strings, got {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Findings.

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Finding {
    tool: &'static str,
    kind: Kind,
    address: String,
    detail: String,
}

/// Fails on every finding no entry allows, and on every entry (of `tool`) no finding needed.
fn check_findings(tool: &str, findings: &[Finding]) {
    let allowed = |f: &Finding, a: &Allowed| {
        a.tool == f.tool && a.kind == f.kind && f.address.contains(a.address) && f.detail.contains(a.detail)
    };
    let unexpected: Vec<&Finding> =
        findings.iter().filter(|f| !ALLOWED_FINDINGS.iter().any(|a| allowed(f, a))).collect();
    let unused: Vec<&str> = ALLOWED_FINDINGS
        .iter()
        .filter(|a| a.tool == tool && !findings.iter().any(|f| allowed(f, a)))
        .map(|a| a.reason)
        .collect();
    let summary: BTreeSet<(String, String)> =
        findings.iter().map(|f| (f.address.clone(), f.detail.chars().take(160).collect())).collect();
    eprintln!("{tool}: {} findings, all on the allow-list: {}", findings.len(), unexpected.is_empty());
    for (address, detail) in &summary {
        eprintln!("  {address}: {detail}");
    }
    assert!(
        unexpected.is_empty(),
        "{tool} findings not in ALLOWED_FINDINGS (fix the policy, or allow the finding with its reason):\n{unexpected:#?}"
    );
    assert!(unused.is_empty(), "ALLOWED_FINDINGS entries of {tool} that no finding needs any more: {unused:#?}");
}

fn checks_python() -> PathBuf {
    let root = repo_root();
    let started = Instant::now();
    let python = ensure_venv_at(&root, ".venv-checks", &root.join("terraform/requirements-checks.txt")).unwrap();
    record("checks virtualenv", started.elapsed());
    python
}

/// Documents with the same text are linted once (the two hub plans share most of theirs).
fn unique_documents(plans: &Plans) -> Vec<&Document> {
    let mut seen = BTreeSet::new();
    plans.documents.iter().filter(|d| seen.insert((d.kind, d.address.clone(), d.policy.to_string()))).collect()
}

// ---------------------------------------------------------------------------------------------
// A small IAM evaluator for what moto cannot decide: Allow/Deny, Action/NotAction,
// Resource/NotResource, Principal (AWS account roots and ARNs, services), and the condition
// operators our documents use. Anything else panics, so a new construct cannot pass unexamined.

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

#[derive(Debug, Default, Clone)]
struct Request {
    principal: Option<String>,
    action: String,
    resource: String,
    context: BTreeMap<String, Vec<String>>,
}

impl Request {
    fn new(action: &str, resource: &str) -> Self {
        Self { action: action.to_owned(), resource: resource.to_owned(), ..Default::default() }
    }
    fn principal(mut self, arn: &str) -> Self {
        self.principal = Some(arn.to_owned());
        self
    }
    fn with(mut self, key: &str, value: &str) -> Self {
        self.context.entry(key.to_lowercase()).or_default().push(value.to_owned());
        self
    }
}

/// IAM wildcards: `*` any run of characters, `?` one character.
fn wildcard(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = if ignore_case {
        (pattern.to_lowercase().chars().collect(), value.to_lowercase().chars().collect())
    } else {
        (pattern.chars().collect(), value.chars().collect())
    };
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn principal_matches(principal: &Value, caller: &str) -> bool {
    if principal == "*" {
        return true;
    }
    let account_of = |arn: &str| arn.split(':').nth(4).unwrap_or_default().to_owned();
    for (kind, values) in principal.as_object().unwrap() {
        for value in strings(values) {
            let hit = match kind.as_str() {
                "AWS" if value == "*" => true,
                // An account root names every principal of that account (its own policies decide).
                "AWS" if value.ends_with(":root") => account_of(&value) == account_of(caller),
                "AWS" if value.chars().all(|c| c.is_ascii_digit()) => value == account_of(caller),
                "AWS" => value == caller,
                "Service" | "Federated" | "CanonicalUser" => value == caller,
                other => panic!("principal type {other} not supported by the evaluator"),
            };
            if hit {
                return true;
            }
        }
    }
    false
}

fn condition_holds(condition: &Value, request: &Request) -> bool {
    for (operator, keys) in condition.as_object().unwrap() {
        for (key, expected) in keys.as_object().unwrap() {
            let expected = strings(expected);
            let actual = request.context.get(&key.to_lowercase());
            let holds = match operator.as_str() {
                "StringEquals" | "ArnEquals" => actual.is_some_and(|a| a.iter().any(|v| expected.contains(v))),
                "StringLike" | "ArnLike" => {
                    actual.is_some_and(|a| a.iter().any(|v| expected.iter().any(|p| wildcard(p, v, false))))
                }
                "StringNotEquals" | "ArnNotEquals" => actual.is_none_or(|a| a.iter().all(|v| !expected.contains(v))),
                "Bool" => actual.is_some_and(|a| a.iter().any(|v| expected.iter().any(|e| e.eq_ignore_ascii_case(v)))),
                // "true": the key is absent from the request; "false": it is present (any value).
                "Null" => expected.iter().all(|e| match e.to_ascii_lowercase().as_str() {
                    "true" => actual.is_none(),
                    "false" => actual.is_some(),
                    other => panic!("Null condition on {key} with {other:?}: only \"true\" or \"false\""),
                }),
                other => panic!("condition operator {other} is not supported by the evaluator: add it"),
            };
            if !holds {
                return false;
            }
        }
    }
    true
}

fn statement_applies(statement: &Value, request: &Request) -> bool {
    let action_hit = |key: &str| strings(&statement[key]).iter().any(|p| wildcard(p, &request.action, true));
    let resource_hit = |key: &str| strings(&statement[key]).iter().any(|p| wildcard(p, &request.resource, false));
    let action = if statement.get("NotAction").is_some() { !action_hit("NotAction") } else { action_hit("Action") };
    let resource = if statement.get("NotResource").is_some() {
        !resource_hit("NotResource")
    } else if statement.get("Resource").is_some() {
        resource_hit("Resource")
    } else {
        true // trust policies
    };
    assert!(statement.get("NotPrincipal").is_none(), "NotPrincipal is not supported by the evaluator");
    let principal = match statement.get("Principal") {
        None => true,
        Some(p) => principal_matches(
            p,
            request.principal.as_deref().expect("a resource or trust policy needs the request's principal"),
        ),
    };
    let condition = statement.get("Condition").is_none_or(|c| condition_holds(c, request));
    action && resource && principal && condition
}

fn evaluate(policy: &Value, request: &Request) -> Decision {
    let mut decision = Decision::ImplicitDeny;
    for statement in statements(policy) {
        if statement_applies(&statement, request) {
            match statement["Effect"].as_str() {
                Some("Deny") => return Decision::ExplicitDeny,
                Some("Allow") => decision = Decision::Allow,
                other => panic!("statement without a valid Effect: {other:?}"),
            }
        }
    }
    decision
}

// ---------------------------------------------------------------------------------------------
// Tests on the plans.

/// Every policy is visible in the plan (a reviewer sees what will be applied), no managed policy
/// hides a document, and the Lambda resource policy names its caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_policy_document_is_in_the_plan() {
    let plans = plans().await;
    let function_policies: BTreeSet<String> =
        FUNCTIONS.iter().map(|(f, _)| format!("module.hub.aws_iam_role_policy.function[\"{f}\"]#policy")).collect();
    let mut naming_the_key = function_policies.clone();
    naming_the_key.insert("module.hub.aws_iam_role_policy.state_machine#policy".to_owned());
    // With a module-created key, only the documents naming the key wait for it.
    assert_eq!(plans.unknown.get("hub-module-key").cloned().unwrap_or_default(), naming_the_key);
    // With a brought key, and in the spoke, every document is known at plan time.
    assert_eq!(plans.unknown.get("hub-brought-key"), None, "policies known only after apply");
    assert_eq!(plans.unknown.get("hub-organization"), None, "policies known only after apply");
    assert_eq!(plans.unknown.get("spoke"), None, "policies known only after apply");
    assert!(
        plans.managed.is_empty(),
        "managed policies are attached (their documents are not linted): {:?}",
        plans.managed
    );

    let count = |plan: &str, kind: Kind| plans.documents.iter().filter(|d| d.plan == plan && d.kind == kind).count();
    // The function roles + state machine + schedules; their inline policies; key, bucket, queue.
    assert_eq!(count("hub-brought-key", Kind::Trust), FUNCTIONS.len() + 2);
    assert_eq!(count("hub-brought-key", Kind::Identity), FUNCTIONS.len() + 2);
    assert_eq!(count("hub-brought-key", Kind::Resource), 2, "bucket and queue policies (no key: brought)");
    assert_eq!(count("hub-module-key", Kind::Resource), 3, "key, bucket and queue policies");
    assert_eq!((count("spoke", Kind::Trust), count("spoke", Kind::Identity)), (1, 1));

    for (address, principal, source) in &plans.lambda_permissions {
        if address.ends_with(".approval_monitor") {
            // ApprovalMonitor's schedule, and only it.
            assert_eq!(principal, "events.amazonaws.com", "{address}");
            assert!(
                source.ends_with(":rule/ec2patch-approval-monitor") || source == "(known after apply)",
                "{address} lets any rule invoke the function: {source:?}"
            );
            continue;
        }
        assert_eq!(principal, "apigateway.amazonaws.com", "{address}");
        assert!(
            source.ends_with("/*/*/callback") || source == "(known after apply)",
            "{address} lets any API or route invoke the function: {source:?}"
        );
    }
    assert_eq!(
        plans.lambda_permissions.len(),
        6,
        "the callback's and the monitor's, per hub plan: {:?}",
        plans.lambda_permissions
    );

    // The examples' hub and spoke agree: the spoke trusts the ExternalId the hub presents.
    let trust = plans.document("spoke", "module.spoke.aws_iam_role.patch_exec#assume_role_policy");
    let ids: Vec<String> =
        statements(trust).iter().flat_map(|s| strings(&s["Condition"]["StringEquals"]["sts:ExternalId"])).collect();
    assert_eq!(ids, vec![plans.hub_external_id.clone()]);
    assert_eq!(plans.hub_spoke_role_name, "PatchExecRole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parliament_finds_nothing_outside_the_allow_list() {
    let plans = plans().await;
    let python = checks_python();
    let dir = test_dir().join("parliament");
    let _ = std::fs::remove_dir_all(&dir);
    let mut by_file = BTreeMap::new();
    for (n, document) in unique_documents(plans).into_iter().enumerate() {
        let file = dir.join(format!("{n:03}.json"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&document.file, &file).unwrap();
        by_file.insert(file.display().to_string(), document);
    }
    let started = Instant::now();
    // --directory, not --file: parliament refuses --file when stdin is not a terminal.
    let output = venv_tool(&python, "parliament")
        .args(["--directory"])
        .arg(&dir)
        .args(["--include_policy_extension", ".json", "--json", "--minimum_severity", "LOW"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    record("parliament", started.elapsed());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "parliament failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut findings = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let finding: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("parliament printed {line:?}: {e}"));
        let file = finding["location"]["filepath"].as_str().unwrap();
        let document = by_file.get(file).unwrap_or_else(|| panic!("parliament reports an unknown file {file}"));
        findings.push(Finding {
            tool: "parliament",
            kind: document.kind,
            address: document.address.clone(),
            detail: format!("{}: {}", finding["issue"].as_str().unwrap(), finding["detail"]),
        });
    }
    assert_eq!(output.status.code() == Some(1), !findings.is_empty(), "parliament's exit code and output disagree");
    check_findings("parliament", &findings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudsplaining_finds_nothing_outside_the_allow_list() {
    let plans = plans().await;
    let python = checks_python();
    let started = Instant::now();
    let mut findings = Vec::new();
    let documents = unique_documents(plans);
    for document in &documents {
        let output = venv_tool(&python, "cloudsplaining")
            .args(["scan-policy-file", "--input-file"])
            .arg(&document.file)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "cloudsplaining on {}: {}\n{stdout}\n{}",
            document.file.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        // Its text report: "Potential Issue found: Policy <category>" then "Actions: a, b".
        let text: String = strip_ansi(&stdout);
        let mut category = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("Potential Issue found: ") {
                category = Some(categorize(rest));
            } else if let Some(actions) = line.strip_prefix("Actions: ") {
                findings.push(Finding {
                    tool: "cloudsplaining",
                    kind: document.kind,
                    address: document.address.clone(),
                    detail: format!("{}: {actions}", category.take().expect("Actions without an issue line")),
                });
            }
        }
        assert!(
            text.contains("There were no results found.") || text.contains("Potential Issue found"),
            "unexpected cloudsplaining output for {}:\n{text}",
            document.file.display()
        );
    }
    record(&format!("cloudsplaining on {} documents", documents.len()), started.elapsed());
    check_findings("cloudsplaining", &findings);
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn categorize(issue: &str) -> &'static str {
    [
        ("Privilege Escalation", "PrivilegeEscalation"),
        ("Data Exfiltration", "DataExfiltration"),
        ("Resource Exposure", "ResourceExposure"),
        ("ALL Actions from a service", "ServiceWildcard"),
        ("return credentials", "CredentialsExposure"),
        ("Infrastructure Modification", "InfrastructureModification"),
    ]
    .iter()
    .find(|(text, _)| issue.contains(text))
    .map(|(_, name)| *name)
    .unwrap_or_else(|| panic!("unknown cloudsplaining issue {issue:?}: name it in categorize()"))
}

/// checkov on the plans themselves, where every policy is resolved (the module scan in
/// terraform.rs sees `aws_iam_policy_document` blocks with references). Plan mode ignores the
/// code's `# checkov:skip=ID:reason` comments, so the test applies them: a failed check is
/// accepted only if the module code skips it with a reason, and no IAM resource may fail at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkov_on_the_plans_fails_no_iam_check() {
    let plans = plans().await;
    let python = checks_python();
    let root = repo_root();
    let mut skipped_in_code = BTreeSet::new();
    for module in ["hub", "spoke"] {
        for entry in std::fs::read_dir(root.join("terraform/modules").join(module)).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
            for skip in text.split("checkov:skip=").skip(1) {
                let (id, reason) = skip.split_once(':').unwrap();
                assert!(reason.trim().len() > 20, "checkov skip {id} without a real reason");
                skipped_in_code.insert(id.to_owned());
            }
        }
    }
    // The emulator provider override this test writes carries the emulator's access key.
    let emulator_provider = ("CKV_AWS_41", "aws.default");
    let mut iam_checks = BTreeSet::new();
    let mut findings = BTreeSet::new();
    for plan in ["hub-brought-key", "hub-organization", "spoke"] {
        let started = Instant::now();
        let output = venv_tool(&python, "checkov")
            .arg("-f")
            .arg(test_dir().join("policies").join(plan).join("plan.json"))
            .args(["--framework", "terraform_plan", "--skip-download", "--output", "json", "--compact"])
            .output()
            .unwrap();
        record(&format!("checkov on the {plan} plan"), started.elapsed());
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("checkov output is not JSON ({e}):\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr))
        });
        let report = if report.is_array() { report[0].clone() } else { report };
        assert_eq!(report["summary"]["parsing_errors"], 0, "{plan}");
        let is_iam = |resource: &str| {
            resource.contains(".aws_iam_") || resource.contains("_policy") || resource.contains(".aws_kms_key.")
        };
        for check in report["results"]["passed_checks"].as_array().into_iter().flatten() {
            if is_iam(check["resource"].as_str().unwrap()) {
                iam_checks.insert(check["check_id"].as_str().unwrap().to_owned());
            }
        }
        for check in report["results"]["failed_checks"].as_array().into_iter().flatten() {
            let (id, resource) = (check["check_id"].as_str().unwrap(), check["resource"].as_str().unwrap());
            if !is_iam(resource) && (skipped_in_code.contains(id) || (id, resource) == emulator_provider) {
                continue;
            }
            let kind = if resource.contains(".aws_iam_role.") {
                Kind::Trust
            } else if resource.contains(".aws_iam_") {
                Kind::Identity
            } else {
                Kind::Resource
            };
            findings.insert(Finding { tool: "checkov", kind, address: resource.to_owned(), detail: id.to_owned() });
        }
    }
    // The IAM checks did run on the resolved documents (e.g. CKV_AWS_355/356: no "*" resource for
    // restrictable actions; CKV_AWS_286-290: escalation, exposure, exfiltration, writes).
    for id in ["CKV_AWS_355", "CKV_AWS_286", "CKV_AWS_287", "CKV_AWS_288", "CKV_AWS_289", "CKV_AWS_290", "CKV_AWS_60"] {
        assert!(iam_checks.contains(id), "checkov did not run {id} on an IAM document: {iam_checks:?}");
    }
    assert!(!plans.documents.is_empty());
    check_findings("checkov", &findings.into_iter().collect::<Vec<_>>());
}

/// Identity policies: no wildcard action, `Resource: "*"` only for actions without resource
/// types, and each role exactly the services it needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_policies_name_their_resources() {
    let plans = plans().await;
    let star: BTreeMap<&str, &str> = STAR_RESOURCE_ACTIONS.iter().copied().collect();
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for document in plans.documents.iter().filter(|d| d.kind == Kind::Identity) {
        for statement in statements(&document.policy) {
            assert_eq!(
                statement["Effect"], "Allow",
                "{}: a Deny in an identity policy is unexpected here",
                document.address
            );
            assert!(
                statement.get("NotAction").is_none() && statement.get("NotResource").is_none(),
                "{}",
                document.address
            );
            let actions = strings(&statement["Action"]);
            let resources = strings(&statement["Resource"]);
            for action in &actions {
                if action.contains('*') || action.contains('?') {
                    problems.push(format!("{}: wildcard action {action}", document.address));
                }
                if resources.iter().any(|r| r == "*") {
                    if star.contains_key(action.as_str()) {
                        used.insert(action.clone());
                    } else {
                        problems.push(format!("{}: {action} on Resource \"*\"", document.address));
                    }
                }
            }
            if resources.iter().any(|r| r == "*") && resources.len() > 1 {
                problems.push(format!("{}: \"*\" beside other resources", document.address));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    let unused: Vec<&&str> = star.keys().filter(|a| !used.contains(**a)).collect();
    assert!(unused.is_empty(), "STAR_RESOURCE_ACTIONS entries no policy uses any more: {unused:?}");

    // The spoke role: reads, SendCommand, and the pre-patch snapshots (create tagged, delete
    // ec2patch's own); nothing that changes an instance.
    let spoke = plans.document("spoke", "module.spoke.aws_iam_role_policy.patch_exec#policy");
    let actions: BTreeSet<String> = statements(spoke).iter().flat_map(|s| strings(&s["Action"])).collect();
    let expected: BTreeSet<String> = [
        "ec2:CreateSnapshots",
        "ec2:CreateTags",
        "ec2:DeleteSnapshot",
        "ec2:DescribeInstances",
        "ec2:DescribeInstanceStatus",
        "ec2:DescribeSnapshots",
        "ssm:DescribeInstanceInformation",
        "ssm:DescribeInstancePatchStates",
        "ssm:ListCommandInvocations",
        "ssm:ListCommands",
        "ssm:SendCommand",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(actions, expected, "the spoke role's actions changed: review them here and in docs/security.md");
}

/// What moto cannot evaluate, decided on the planned JSON: SendCommand only with
/// AWS-RunPatchBaseline and only on tagged instances of the spoke's account; pre-patch snapshots
/// only of tagged instances, created with ec2patch's tags, deleted only when ec2patch's; the spoke
/// trust (ExternalId, the hub's five spoke-working function roles); SendTask* for ApprovalCallback
/// only; the hub key's encrypting actions for writers only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_policies_decide_what_moto_cannot_evaluate() {
    let plans = plans().await;
    let spoke = plans.document("spoke", "module.spoke.aws_iam_role_policy.patch_exec#policy");
    let instance = |account: &str| format!("arn:aws:ec2:{REGION}:{account}:instance/i-0123456789abcdef0");
    let document = |name: &str| format!("arn:aws:ssm:{REGION}::document/{name}");
    let tagged =
        |resource: &str| Request::new("ssm:SendCommand", resource).with("ssm:resourceTag/PatchGroup", "default");

    // Both resources of the call must be allowed.
    assert_eq!(evaluate(spoke, &Request::new("ssm:SendCommand", &document("AWS-RunPatchBaseline"))), Decision::Allow);
    assert_eq!(evaluate(spoke, &tagged(&instance(SPOKE_ACCOUNT))), Decision::Allow);
    for other in ["AWS-RunShellScript", "AWS-RunPowerShellScript", "AWS-ApplyPatchBaseline", "AWS-RunDocument"] {
        assert_eq!(
            evaluate(spoke, &Request::new("ssm:SendCommand", &document(other))),
            Decision::ImplicitDeny,
            "{other}"
        );
    }
    // A document of the same name owned by an account is not AWS's.
    let owned = format!("arn:aws:ssm:{REGION}:{SPOKE_ACCOUNT}:document/AWS-RunPatchBaseline");
    assert_eq!(evaluate(spoke, &Request::new("ssm:SendCommand", &owned)), Decision::ImplicitDeny);
    assert_eq!(
        evaluate(spoke, &Request::new("ssm:SendCommand", &instance(SPOKE_ACCOUNT))),
        Decision::ImplicitDeny,
        "untagged"
    );
    assert_eq!(
        evaluate(spoke, &Request::new("ssm:SendCommand", &instance(SPOKE_ACCOUNT)).with("ssm:resourceTag/Team", "x")),
        Decision::ImplicitDeny,
        "tagged with another key"
    );
    assert_eq!(evaluate(spoke, &tagged(&instance(OUTSIDE_ACCOUNT))), Decision::ImplicitDeny, "another account");
    for action in [
        "ec2:TerminateInstances",
        "ec2:StopInstances",
        "ec2:ModifyInstanceAttribute",
        "ssm:StartSession",
        "ssm:CreateDocument",
    ] {
        assert_eq!(
            evaluate(spoke, &Request::new(action, &instance(SPOKE_ACCOUNT))),
            Decision::ImplicitDeny,
            "{action}"
        );
    }
    let patch_states = Request::new("ssm:DescribeInstancePatchStates", &instance(SPOKE_ACCOUNT));
    assert_eq!(evaluate(spoke, &patch_states), Decision::Allow);

    // Pre-patch snapshots. CreateSnapshots is authorized on the instance, on each of its volumes
    // and on each new snapshot: the call succeeds only if all are allowed.
    let snapshot = format!("arn:aws:ec2:{REGION}::snapshot/snap-0123456789abcdef0");
    let volume = |account: &str| format!("arn:aws:ec2:{REGION}:{account}:volume/vol-0123456789abcdef0");
    let create = |resource: &str| Request::new("ec2:CreateSnapshots", resource);
    let patch_tagged = |request: Request| request.with("aws:ResourceTag/PatchGroup", "default");
    let delete_after = ("aws:RequestTag/ec2patch:delete-after", "2026-12-12T03:00:00Z");
    let run_id = ("aws:RequestTag/ec2patch:run-id", "wave1-critical-2026-12-05");
    let ec2patch_tags = |request: Request| request.with(run_id.0, run_id.1).with(delete_after.0, delete_after.1);
    assert_eq!(evaluate(spoke, &patch_tagged(create(&instance(SPOKE_ACCOUNT)))), Decision::Allow);
    assert_eq!(evaluate(spoke, &create(&instance(SPOKE_ACCOUNT))), Decision::ImplicitDeny, "untagged instance");
    assert_eq!(
        evaluate(spoke, &create(&instance(SPOKE_ACCOUNT)).with("aws:ResourceTag/Team", "x")),
        Decision::ImplicitDeny,
        "instance tagged with another key"
    );
    assert_eq!(
        evaluate(spoke, &patch_tagged(create(&instance(OUTSIDE_ACCOUNT)))),
        Decision::ImplicitDeny,
        "another account's instance"
    );
    assert_eq!(evaluate(spoke, &create(&volume(SPOKE_ACCOUNT))), Decision::Allow);
    assert_eq!(evaluate(spoke, &create(&volume(OUTSIDE_ACCOUNT))), Decision::ImplicitDeny, "another account's volume");
    assert_eq!(evaluate(spoke, &ec2patch_tags(create(&snapshot))), Decision::Allow);
    assert_eq!(evaluate(spoke, &create(&snapshot)), Decision::ImplicitDeny, "a snapshot without ec2patch's tags");
    assert_eq!(
        evaluate(spoke, &create(&snapshot).with(run_id.0, run_id.1)),
        Decision::ImplicitDeny,
        "a snapshot without its expiry"
    );
    assert_eq!(
        evaluate(spoke, &create(&snapshot).with(delete_after.0, delete_after.1)),
        Decision::ImplicitDeny,
        "a snapshot without the run id"
    );
    // Tags on snapshots only, and only while CreateSnapshots creates them.
    let tag = Request::new("ec2:CreateTags", &snapshot);
    assert_eq!(evaluate(spoke, &tag.clone().with("ec2:CreateAction", "CreateSnapshots")), Decision::Allow);
    assert_eq!(evaluate(spoke, &tag), Decision::ImplicitDeny, "tagging an existing snapshot");
    assert_eq!(
        evaluate(spoke, &tag.clone().with("ec2:CreateAction", "CopySnapshot")),
        Decision::ImplicitDeny,
        "tagging while copying"
    );
    assert_eq!(
        evaluate(
            spoke,
            &Request::new("ec2:CreateTags", &instance(SPOKE_ACCOUNT)).with("ec2:CreateAction", "CreateSnapshots")
        ),
        Decision::ImplicitDeny,
        "tags on an instance"
    );
    assert_eq!(evaluate(spoke, &Request::new("ec2:DescribeSnapshots", "*")), Decision::Allow);
    // Deleting: only a snapshot carrying ec2patch:delete-after (which only CreateSnapshots can set).
    let delete = Request::new("ec2:DeleteSnapshot", &snapshot);
    assert_eq!(
        evaluate(spoke, &delete.clone().with("aws:ResourceTag/ec2patch:delete-after", delete_after.1)),
        Decision::Allow
    );
    assert_eq!(evaluate(spoke, &delete), Decision::ImplicitDeny, "a snapshot ec2patch did not create");
    assert_eq!(
        evaluate(spoke, &delete.clone().with("aws:ResourceTag/ec2patch:run-id", run_id.1)),
        Decision::ImplicitDeny,
        "an ec2patch snapshot whose delete-after tag was removed to keep it"
    );
    // Nothing that shares, copies or restores a snapshot, or touches a volume otherwise.
    for (action, resource) in [
        ("ec2:ModifySnapshotAttribute", snapshot.clone()),
        ("ec2:CopySnapshot", snapshot.clone()),
        ("ec2:CreateVolume", snapshot.clone()),
        ("ec2:CreateSnapshot", volume(SPOKE_ACCOUNT)),
        ("ec2:DeleteVolume", volume(SPOKE_ACCOUNT)),
        ("ec2:DetachVolume", volume(SPOKE_ACCOUNT)),
        ("ec2:CreateReplaceRootVolumeTask", instance(SPOKE_ACCOUNT)),
    ] {
        let request = Request::new(action, &resource).with("aws:ResourceTag/ec2patch:delete-after", delete_after.1);
        assert_eq!(evaluate(spoke, &patch_tagged(request)), Decision::ImplicitDeny, "{action}");
    }

    // The reading steps' sessions (PreEC2Inventory, PollSsmCommand, PostEC2Verify) carry a session
    // policy: what both it and the role allow. Every read the role grants stays; SendCommand,
    // which the role grants for AWS-RunPatchBaseline on tagged instances, is gone.
    let session: Value = serde_json::from_str(ec2patch_core::sessions::READ_ONLY_SESSION_POLICY).unwrap();
    let both = |request: &Request| match (evaluate(spoke, request), evaluate(&session, request)) {
        (Decision::Allow, Decision::Allow) => Decision::Allow,
        (Decision::ExplicitDeny, _) | (_, Decision::ExplicitDeny) => Decision::ExplicitDeny,
        _ => Decision::ImplicitDeny,
    };
    for action in [
        "ec2:DescribeInstances",
        "ec2:DescribeInstanceStatus",
        "ssm:DescribeInstanceInformation",
        "ssm:ListCommands",
        "ssm:ListCommandInvocations",
    ] {
        assert_eq!(both(&Request::new(action, "*")), Decision::Allow, "a read-only session may {action}");
    }
    assert_eq!(both(&patch_states), Decision::Allow);
    assert_eq!(both(&Request::new("ssm:SendCommand", &document("AWS-RunPatchBaseline"))), Decision::ImplicitDeny);
    assert_eq!(both(&tagged(&instance(SPOKE_ACCOUNT))), Decision::ImplicitDeny, "a read-only session cannot send");
    assert_eq!(
        both(&patch_tagged(create(&instance(SPOKE_ACCOUNT)))),
        Decision::ImplicitDeny,
        "a read-only session cannot snapshot"
    );
    assert_eq!(
        both(&delete.clone().with("aws:ResourceTag/ec2patch:delete-after", delete_after.1)),
        Decision::ImplicitDeny,
        "a read-only session cannot delete snapshots"
    );
    // Nothing in the session policy that the role does not grant (it would only mislead).
    for action in strings(&session["Statement"][0]["Action"]) {
        let resource = if action == "ssm:DescribeInstancePatchStates" { instance(SPOKE_ACCOUNT) } else { "*".into() };
        assert_eq!(evaluate(spoke, &Request::new(&action, &resource)), Decision::Allow, "the role grants {action}");
    }

    // ApprovalMonitor's cleanup sessions: list and delete ec2patch's snapshots, nothing else.
    let cleanup: Value = serde_json::from_str(ec2patch_core::sessions::SNAPSHOT_CLEANUP_SESSION_POLICY).unwrap();
    let cleaner = |request: &Request| match (evaluate(spoke, request), evaluate(&cleanup, request)) {
        (Decision::Allow, Decision::Allow) => Decision::Allow,
        (Decision::ExplicitDeny, _) | (_, Decision::ExplicitDeny) => Decision::ExplicitDeny,
        _ => Decision::ImplicitDeny,
    };
    assert_eq!(cleaner(&Request::new("ec2:DescribeSnapshots", "*")), Decision::Allow);
    assert_eq!(
        cleaner(&delete.clone().with("aws:ResourceTag/ec2patch:delete-after", delete_after.1)),
        Decision::Allow,
        "the cleanup deletes an expired ec2patch snapshot"
    );
    assert_eq!(cleaner(&delete.clone()), Decision::ImplicitDeny, "but no snapshot without ec2patch:delete-after");
    assert_eq!(cleaner(&tagged(&instance(SPOKE_ACCOUNT))), Decision::ImplicitDeny, "the cleanup cannot send");
    assert_eq!(
        cleaner(&patch_tagged(create(&instance(SPOKE_ACCOUNT)))),
        Decision::ImplicitDeny,
        "the cleanup cannot snapshot"
    );
    assert_eq!(cleaner(&Request::new("ec2:DescribeInstances", "*")), Decision::ImplicitDeny);

    // The spoke trust: the hub's five spoke-working function roles, with the ExternalId.
    let trust = plans.document("spoke", "module.spoke.aws_iam_role.patch_exec#assume_role_policy");
    let external_id = plans.hub_external_id.clone();
    let role_arn = format!("arn:aws:iam::{SPOKE_ACCOUNT}:role/PatchExecRole");
    let assume = |caller_role: &str, account: &str, external: Option<&str>| {
        let session = format!("arn:aws:sts::{account}:assumed-role/{caller_role}/ec2patch-run");
        let mut request = Request::new("sts:AssumeRole", &role_arn)
            .principal(&session)
            .with("aws:PrincipalArn", &format!("arn:aws:iam::{account}:role/{caller_role}"));
        if let Some(id) = external {
            request = request.with("sts:ExternalId", id);
        }
        evaluate(trust, &request)
    };
    for (function, works_in_spokes) in FUNCTIONS {
        let expected = if *works_in_spokes { Decision::Allow } else { Decision::ImplicitDeny };
        assert_eq!(assume(&format!("{PREFIX}-{function}"), HUB_ACCOUNT, Some(&external_id)), expected, "{function}");
    }
    let inventory = format!("{PREFIX}-PreEC2Inventory");
    assert_eq!(assume(&inventory, HUB_ACCOUNT, None), Decision::ImplicitDeny, "without the ExternalId");
    assert_eq!(
        assume(&inventory, HUB_ACCOUNT, Some("ec2patch-000000000000")),
        Decision::ImplicitDeny,
        "wrong ExternalId"
    );
    assert_eq!(
        assume(&inventory, OUTSIDE_ACCOUNT, Some(&external_id)),
        Decision::ImplicitDeny,
        "same role name elsewhere"
    );
    assert_eq!(assume("Admin", HUB_ACCOUNT, Some(&external_id)), Decision::ImplicitDeny, "another hub role");

    // The hub: SendTask* for ApprovalCallback only; GenerateDataKey for writers only; the spoke
    // role in the listed accounts only (the organization variant is a documented choice).
    let function = |name: &str| {
        plans.document("hub-brought-key", &format!("module.hub.aws_iam_role_policy.function[\"{name}\"]#policy"))
    };
    let writers = [
        "PlanRun",
        "PreEC2Inventory",
        "SendApprovalRequest",
        "ApprovalCallback",
        "SendSsmCommand",
        "PollSsmCommand",
        "PostEC2Verify",
        "CheckChangeFreeze",
        "ApprovalMonitor",
    ];
    for (name, works_in_spokes) in FUNCTIONS {
        let policy = function(name);
        let decide = |action: &str, resource: &str| evaluate(policy, &Request::new(action, resource));
        let callback = if *name == "ApprovalCallback" { Decision::Allow } else { Decision::ImplicitDeny };
        assert_eq!(decide("states:SendTaskSuccess", "*"), callback, "{name}");
        assert_eq!(decide("states:SendTaskFailure", "*"), callback, "{name}");
        assert_eq!(decide("kms:Decrypt", BROUGHT_KEY), Decision::Allow, "{name}");
        let encrypts = if writers.contains(name) { Decision::Allow } else { Decision::ImplicitDeny };
        assert_eq!(decide("kms:GenerateDataKey", BROUGHT_KEY), encrypts, "{name}");
        let spoke_role = if *works_in_spokes { Decision::Allow } else { Decision::ImplicitDeny };
        for account in LISTED_SPOKES {
            assert_eq!(
                decide("sts:AssumeRole", &format!("arn:aws:iam::{account}:role/PatchExecRole")),
                spoke_role,
                "{name}"
            );
        }
        assert_eq!(
            decide("sts:AssumeRole", &format!("arn:aws:iam::{OUTSIDE_ACCOUNT}:role/PatchExecRole")),
            Decision::ImplicitDeny,
            "{name}"
        );
        assert_eq!(
            decide("sts:AssumeRole", &format!("arn:aws:iam::{}:role/Admin", LISTED_SPOKES[0])),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide("ssm:SendCommand", "*"),
            Decision::ImplicitDeny,
            "{name}: the hub never runs commands itself"
        );
    }
    // With organization_id: the spoke role in any account, of the organization only (moto
    // ignores aws:ResourceOrgID, so this is decided here only).
    for (name, works_in_spokes) in FUNCTIONS {
        let policy =
            plans.document("hub-organization", &format!("module.hub.aws_iam_role_policy.function[\"{name}\"]#policy"));
        let assume = |account: &str, organization: Option<&str>| {
            let mut request = Request::new("sts:AssumeRole", &format!("arn:aws:iam::{account}:role/PatchExecRole"));
            if let Some(id) = organization {
                request = request.with("aws:ResourceOrgID", id);
            }
            evaluate(policy, &request)
        };
        let inside = if *works_in_spokes { Decision::Allow } else { Decision::ImplicitDeny };
        assert_eq!(assume(OUTSIDE_ACCOUNT, Some(ORGANIZATION)), inside, "{name}: an account of the organization");
        assert_eq!(
            assume(OUTSIDE_ACCOUNT, Some("o-someoneelse1")),
            Decision::ImplicitDeny,
            "{name}: another organization"
        );
        assert_eq!(assume(OUTSIDE_ACCOUNT, None), Decision::ImplicitDeny, "{name}: no organization");
        let other_role = Request::new("sts:AssumeRole", &format!("arn:aws:iam::{OUTSIDE_ACCOUNT}:role/Admin"))
            .with("aws:ResourceOrgID", ORGANIZATION);
        assert_eq!(evaluate(policy, &other_role), Decision::ImplicitDeny, "{name}: another role");
        // Organizations targeting: only PlanRun lists OUs, and only this organization's.
        let list = |action: &str, arn: &str| evaluate(policy, &Request::new(action, arn));
        let own_ou = format!("arn:aws:organizations::{OUTSIDE_ACCOUNT}:ou/{ORGANIZATION}/ou-ab12-prod0001");
        let own_root = format!("arn:aws:organizations::{OUTSIDE_ACCOUNT}:root/{ORGANIZATION}/r-ab12");
        let expected = if *name == "PlanRun" { Decision::Allow } else { Decision::ImplicitDeny };
        assert_eq!(list("organizations:ListAccountsForParent", &own_ou), expected, "{name}");
        assert_eq!(list("organizations:ListChildren", &own_root), expected, "{name}");
        let other_ou = format!("arn:aws:organizations::{OUTSIDE_ACCOUNT}:ou/o-someoneelse1/ou-ab12-prod0001");
        assert_eq!(list("organizations:ListChildren", &other_ou), Decision::ImplicitDeny, "{name}");
        assert_eq!(list("organizations:CreateAccount", "*"), Decision::ImplicitDeny, "{name}");
    }

    // The bucket refuses plain HTTP to everyone, itself included.
    let bucket = plans.document("hub-brought-key", "module.hub.aws_s3_bucket_policy.artifacts#policy");
    let object = format!("arn:aws:s3:::{PREFIX}-artifacts-{HUB_ACCOUNT}-{REGION}/runs/x/plan.json");
    let get = |secure: &str| {
        evaluate(
            bucket,
            &Request::new("s3:GetObject", &object)
                .principal(&format!("arn:aws:sts::{HUB_ACCOUNT}:assumed-role/{PREFIX}-PlanRun/s"))
                .with("aws:SecureTransport", secure),
        )
    };
    assert_eq!((get("false"), get("true")), (Decision::ExplicitDeny, Decision::ImplicitDeny));
}

#[test]
fn the_evaluator_can_deny() {
    // The evaluator itself, on hand-written documents: each rule can flip a decision.
    let policy = json!({"Statement": [
        {"Effect": "Allow", "Action": "ssm:SendCommand", "Resource": "arn:aws:ssm:*::document/AWS-RunPatchBaseline"},
        {"Effect": "Allow", "Action": "ssm:SendCommand", "Resource": "arn:aws:ec2:*:1:instance/*",
         "Condition": {"StringLike": {"ssm:resourceTag/PatchGroup": ["web-*"]}}},
        {"Effect": "Deny", "Action": "ssm:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    ]});
    let doc = Request::new("SSM:sendcommand", "arn:aws:ssm:eu-west-1::document/AWS-RunPatchBaseline");
    assert_eq!(evaluate(&policy, &doc), Decision::Allow, "actions are case-insensitive");
    assert_eq!(evaluate(&policy, &doc.clone().with("aws:SecureTransport", "false")), Decision::ExplicitDeny);
    let instance = Request::new("ssm:SendCommand", "arn:aws:ec2:eu-west-1:1:instance/i-1");
    assert_eq!(evaluate(&policy, &instance.clone().with("ssm:resourcetag/patchgroup", "web-1")), Decision::Allow);
    assert_eq!(evaluate(&policy, &instance.clone().with("ssm:resourceTag/PatchGroup", "db-1")), Decision::ImplicitDeny);
    assert_eq!(evaluate(&policy, &instance), Decision::ImplicitDeny);
    assert!(wildcard("a*b?d", "axxbcd", false) && !wildcard("a*b?d", "axxbd", false) && !wildcard("A", "a", false));
}

#[test]
fn the_evaluator_decides_null_conditions() {
    // Null "false": the key must be in the request (any value); Null "true": it must not be.
    let policy = json!({"Statement": [
        {"Effect": "Allow", "Action": "ec2:DeleteSnapshot", "Resource": "arn:aws:ec2:*::snapshot/*",
         "Condition": {"Null": {"aws:ResourceTag/ec2patch:delete-after": "false"}}},
        {"Effect": "Allow", "Action": "ec2:CreateSnapshots", "Resource": "arn:aws:ec2:*::snapshot/*",
         "Condition": {"Null": {"aws:RequestTag/ec2patch:run-id": "false", "aws:RequestTag/Owner": "true"}}},
    ]});
    let delete = Request::new("ec2:DeleteSnapshot", "arn:aws:ec2:us-east-1::snapshot/snap-1");
    assert_eq!(evaluate(&policy, &delete), Decision::ImplicitDeny, "the key is absent");
    assert_eq!(evaluate(&policy, &delete.clone().with("aws:ResourceTag/ec2patch:delete-after", "")), Decision::Allow);
    assert_eq!(
        evaluate(&policy, &delete.clone().with("AWS:resourcetag/ec2patch:DELETE-AFTER", "x")),
        Decision::Allow,
        "condition keys are case-insensitive"
    );
    assert_eq!(evaluate(&policy, &delete.clone().with("aws:ResourceTag/ec2patch:run-id", "x")), Decision::ImplicitDeny);
    // Two keys under one Null operator: both must hold.
    let create = Request::new("ec2:CreateSnapshots", "arn:aws:ec2:us-east-1::snapshot/snap-1");
    assert_eq!(evaluate(&policy, &create), Decision::ImplicitDeny);
    let tagged = create.with("aws:RequestTag/ec2patch:run-id", "run-1");
    assert_eq!(evaluate(&policy, &tagged), Decision::Allow);
    assert_eq!(
        evaluate(&policy, &tagged.with("aws:RequestTag/Owner", "me")),
        Decision::ImplicitDeny,
        "\"true\": present"
    );
}

// ---------------------------------------------------------------------------------------------
// Enforcement on the emulator.

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Allowed,
    Denied,
}

/// Allowed when the call succeeded; denied when moto refused it with AccessDenied (moto answers
/// SSM's JSON protocol with an XML 403, so the code is read from the body too). Anything else
/// fails the test.
fn verdict<T, E: ProvideErrorMetadata + std::fmt::Debug>(
    what: &str,
    result: Result<T, SdkError<E, HttpResponse>>,
) -> Verdict {
    match result {
        Ok(_) => Verdict::Allowed,
        Err(error) => {
            let status = error.raw_response().map(|r| r.status().as_u16());
            let body =
                error.raw_response().and_then(|r| r.body().bytes()).map(|b| String::from_utf8_lossy(b).into_owned());
            let code = error.code().map(str::to_owned);
            let denied = status == Some(403)
                && (code.as_deref() == Some("AccessDenied")
                    || body.as_deref().is_some_and(|b| b.contains("<Code>AccessDenied</Code>")));
            assert!(denied, "{what}: neither allowed nor denied: status {status:?}, code {code:?}, {error:?}");
            Verdict::Denied
        }
    }
}

async fn put_role(endpoint: &str, account: &str, name: &str, trust: &Value, policy: &Value) {
    let (trust, policy) = (trust.to_string(), policy.to_string());
    let endpoint = &format!("{endpoint}/");
    query_call(
        endpoint,
        account,
        "iam",
        &[
            ("Action", "CreateRole"),
            ("RoleName", name),
            ("AssumeRolePolicyDocument", trust.as_str()),
            ("Version", "2010-05-08"),
        ],
    )
    .await
    .unwrap();
    query_call(
        endpoint,
        account,
        "iam",
        &[
            ("Action", "PutRolePolicy"),
            ("RoleName", name),
            ("PolicyName", "least-privilege"),
            ("PolicyDocument", policy.as_str()),
            ("Version", "2010-05-08"),
        ],
    )
    .await
    .unwrap();
}

/// A separate moto server with IAM enforcement on, holding the planned documents. Asserts what
/// moto enforces, and pins (as failing-when-fixed assertions) what it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_enforces_the_planned_spoke_role_and_hub_function_policies() {
    let plans = plans().await;
    let started = Instant::now();
    // The local stack only lends its SDK configuration (retries, behaviour version); every call
    // below goes to the enforcing server.
    let stack =
        LocalStack::start(LocalStackOptions { name_prefix: "lpstack".into(), ..Default::default() }).await.unwrap();
    let port = free_port().unwrap();
    let moto = MotoServer::start(&repo_root(), port, port).await.unwrap();
    let endpoint = format!("http://127.0.0.1:{}", moto.port);

    // Identities, while moto does not check yet: a bootstrap user standing in for Lambda (moto
    // cannot evaluate a service principal's trust), the function roles with their planned
    // policies, and PatchExecRole with the planned trust and policy in every listed account and
    // in one outside any wave.
    let (key, secret) = iam_user(&endpoint, HUB_ACCOUNT, "lambda-stand-in").await;
    let stand_in = format!("arn:aws:iam::{HUB_ACCOUNT}:user/lambda-stand-in");
    let stand_in_policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
        "Resource": format!("arn:aws:iam::{HUB_ACCOUNT}:role/{PREFIX}-*")}]});
    query_call(
        &format!("{endpoint}/"),
        HUB_ACCOUNT,
        "iam",
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", "lambda-stand-in"),
            ("PolicyName", "become-functions"),
            ("PolicyDocument", stand_in_policy.to_string().as_str()),
            ("Version", "2010-05-08"),
        ],
    )
    .await
    .unwrap();
    let stand_in_trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": stand_in}}]});
    for (function, _) in FUNCTIONS {
        let policy = plans
            .document("hub-brought-key", &format!("module.hub.aws_iam_role_policy.function[\"{function}\"]#policy"));
        put_role(&endpoint, HUB_ACCOUNT, &format!("{PREFIX}-{function}"), &stand_in_trust, policy).await;
    }
    let trust = plans.document("spoke", "module.spoke.aws_iam_role.patch_exec#assume_role_policy").to_string();
    let policy = plans.document("spoke", "module.spoke.aws_iam_role_policy.patch_exec#policy").to_string();
    assert!(policy.contains(SPOKE_ACCOUNT), "the spoke policy names its own account's instances: {policy}");
    for account in LISTED_SPOKES.iter().chain([&OUTSIDE_ACCOUNT]) {
        // The spoke module renders its own account id into the policy.
        let in_account = |text: &str| serde_json::from_str::<Value>(&text.replace(SPOKE_ACCOUNT, account)).unwrap();
        put_role(&endpoint, account, "PatchExecRole", &in_account(&trust), &in_account(&policy)).await;
    }
    // Enforcement on: every later request must be signed by a known key and allowed.
    let reset = moto_api_post(&format!("{endpoint}/moto-api/reset-auth"), "0").await;
    assert!(reset.contains("PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"), "{reset}");

    let sdk = |credentials: Credentials| {
        stack
            .sdk
            .to_builder()
            .endpoint_url(&endpoint)
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build()
    };
    let stand_in_sdk = sdk(Credentials::new(key, secret, None, None, "lambda-stand-in"));
    let config = |role: &str, external_id: Option<String>| HubConfig {
        spoke_role_name: role.to_owned(),
        external_id,
        ..stack.hub.config.clone()
    };
    let hub_account = AccountId::parse(HUB_ACCOUNT).unwrap();
    let region = Region::new_unchecked(REGION);
    // The production path: SpokeSessions with the role name and ExternalId of the planned
    // Lambda environment.
    let role_name = plans.hub_spoke_role_name.clone();
    let external_id = plans.hub_external_id.clone();
    assert_eq!((role_name.as_str(), external_id.as_str()), ("PatchExecRole", "ec2patch-111111111111"));

    // A bootstrap user outside the hub's functions cannot reach a spoke.
    let outsider = Hub::new(stand_in_sdk.clone(), config(&role_name, Some(external_id.clone())));
    let refused = outsider.spoke_sessions("lp").config_for(&AccountId::parse(SPOKE_ACCOUNT).unwrap(), &region).await;
    assert!(matches!(&refused, Err(e) if e.to_string().contains("AccessDenied")), "{refused:?}");

    let mut inventory_spoke_sdk = None;
    for (function, works_in_spokes) in FUNCTIONS {
        let role = Hub::new(stand_in_sdk.clone(), config(&format!("{PREFIX}-{function}"), None));
        let function_sdk = role.spoke_sessions("lp").config_for(&hub_account, &region).await.unwrap();
        let hub = Hub::new(function_sdk, config(&role_name, Some(external_id.clone())));
        for account in LISTED_SPOKES.iter().chain([&OUTSIDE_ACCOUNT]) {
            let result = hub.spoke_sessions("lp").config_for(&AccountId::parse(account).unwrap(), &region).await;
            let expected = *works_in_spokes && *account != OUTSIDE_ACCOUNT;
            match (&result, expected) {
                (Ok(_), true) => {}
                (Err(error), false) => {
                    assert!(error.to_string().contains("AccessDenied"), "{function} -> {account}: {error}")
                }
                _ => panic!(
                    "{function} assuming PatchExecRole in {account}: expected allowed={expected}, got {:?}",
                    result.as_ref().map(|_| "allowed").map_err(ToString::to_string)
                ),
            }
            if *function == "PreEC2Inventory" && *account == SPOKE_ACCOUNT {
                inventory_spoke_sdk = result.ok();
            }
        }
    }

    // moto gap, pinned: cross-account trust policies are not evaluated (moto looks the role up
    // in the caller's account only), so a wrong ExternalId still gets in. The planned trust
    // policy decides it instead (planned_policies_decide_what_moto_cannot_evaluate).
    let inventory_role = Hub::new(stand_in_sdk.clone(), config(&format!("{PREFIX}-PreEC2Inventory"), None));
    let inventory_sdk = inventory_role.spoke_sessions("lp").config_for(&hub_account, &region).await.unwrap();
    let wrong = Hub::new(inventory_sdk, config(&role_name, Some("ec2patch-000000000000".to_owned())));
    let wrong = wrong.spoke_sessions("lp").config_for(&AccountId::parse(SPOKE_ACCOUNT).unwrap(), &region).await;
    assert!(
        wrong.is_ok(),
        "moto now refuses a wrong ExternalId: it evaluates cross-account trust; assert it here and update docs/security.md"
    );

    // The spoke role, as PreEC2Inventory's session in the spoke.
    let spoke = inventory_spoke_sdk.expect("PreEC2Inventory assumed PatchExecRole");
    let ec2 = aws_sdk_ec2::Client::new(&spoke);
    let ssm = aws_sdk_ssm::Client::new(&spoke);
    let instance = "i-0123456789abcdef0";
    // The reads inventory, ssm-send, ssm-poll and verify make.
    assert_eq!(verdict("DescribeInstances", ec2.describe_instances().send().await), Verdict::Allowed);
    assert_eq!(verdict("DescribeInstanceStatus", ec2.describe_instance_status().send().await), Verdict::Allowed);
    assert_eq!(
        verdict("DescribeInstanceInformation", ssm.describe_instance_information().send().await),
        Verdict::Allowed
    );
    assert_eq!(verdict("ListCommands", ssm.list_commands().send().await), Verdict::Allowed);
    assert_eq!(verdict("ListCommandInvocations", ssm.list_command_invocations().send().await), Verdict::Allowed);
    // Nothing that changes an instance, no other document, no unused read.
    assert_eq!(
        verdict("TerminateInstances", ec2.terminate_instances().instance_ids(instance).send().await),
        Verdict::Denied
    );
    assert_eq!(verdict("StopInstances", ec2.stop_instances().instance_ids(instance).send().await), Verdict::Denied);
    let modify = ec2
        .modify_instance_attribute()
        .instance_id(instance)
        .disable_api_termination(aws_sdk_ec2::types::AttributeBooleanValue::builder().value(true).build())
        .send()
        .await;
    assert_eq!(verdict("ModifyInstanceAttribute", modify), Verdict::Denied);
    assert_eq!(verdict("DescribeRegions", ec2.describe_regions().send().await), Verdict::Denied);
    // Pre-patch snapshots: the lookup (retries, the wait, the cleanup) is allowed; nothing that
    // shares a snapshot with another account or copies it. CreateSnapshots and DeleteSnapshot name
    // instance, volume and snapshot ARNs with conditions: moto denies them whatever the policy says
    // (the resource-ARN gap below), so they are decided on the planned JSON.
    let snapshots = ec2.describe_snapshots().owner_ids("self").send().await;
    assert_eq!(verdict("DescribeSnapshots", snapshots), Verdict::Allowed);
    let share = ec2
        .modify_snapshot_attribute()
        .snapshot_id("snap-0123456789abcdef0")
        .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
        .operation_type(aws_sdk_ec2::types::OperationType::Add)
        .user_ids(OUTSIDE_ACCOUNT)
        .send()
        .await;
    assert_eq!(verdict("ModifySnapshotAttribute", share), Verdict::Denied);
    let copy = ec2.copy_snapshot().source_snapshot_id("snap-0123456789abcdef0").source_region(REGION).send().await;
    assert_eq!(verdict("CopySnapshot", copy), Verdict::Denied);
    let send = |document: &str, parameter: (&str, &str)| {
        ssm.send_command()
            .document_name(document)
            .instance_ids(instance)
            .parameters(parameter.0, vec![parameter.1.to_owned()])
            .send()
    };
    assert_eq!(
        verdict("SendCommand AWS-RunShellScript", send("AWS-RunShellScript", ("commands", "id")).await),
        Verdict::Denied
    );
    assert_eq!(
        verdict("GetParameter", ssm.get_parameter().name("/ec2patch/approval-hmac-key").send().await),
        Verdict::Denied
    );
    // moto gap, pinned: moto authorizes SSM and EC2 calls against Resource "*" only (it derives
    // resource ARNs for STS, IAM, S3 and SQS alone), so statements naming documents or instances
    // never match and the allowed SendCommand is refused too. Decided on the planned JSON instead.
    assert_eq!(
        verdict("SendCommand AWS-RunPatchBaseline", send("AWS-RunPatchBaseline", ("Operation", "Scan")).await),
        Verdict::Denied,
        "moto now allows SendCommand(AWS-RunPatchBaseline): it evaluates SSM resource ARNs; move the document \
         assertions from the JSON evaluator here and update docs/security.md"
    );
    let patch_states = ssm.describe_instance_patch_states().instance_ids(instance).send().await;
    assert_eq!(verdict("DescribeInstancePatchStates", patch_states), Verdict::Denied, "moto now matches instance ARNs");

    // PreEC2Inventory's production path: a read-only session, which the launcher makes moto
    // authorize by the intersection of role and session policy (test_launcher.py's
    // SessionPolicyTest proves a session is refused what only its role allows). Every read the
    // steps make still works. That it cannot send is decided on the planned JSON
    // (planned_policies_decide_what_moto_cannot_evaluate): moto refuses SendCommand to every
    // session, the resource-ARN gap pinned above.
    let inventory_role = Hub::new(stand_in_sdk.clone(), config(&format!("{PREFIX}-PreEC2Inventory"), None));
    let function_sdk = inventory_role.spoke_sessions("lp").config_for(&hub_account, &region).await.unwrap();
    let reader = Hub::new(function_sdk, config(&role_name, Some(external_id.clone())));
    let read_only = reader
        .read_only_spoke_sessions("lp")
        .config_for(&AccountId::parse(SPOKE_ACCOUNT).unwrap(), &region)
        .await
        .unwrap();
    let (ec2, ssm) = (aws_sdk_ec2::Client::new(&read_only), aws_sdk_ssm::Client::new(&read_only));
    assert_eq!(verdict("DescribeInstances (read-only)", ec2.describe_instances().send().await), Verdict::Allowed);
    assert_eq!(
        verdict("DescribeInstanceStatus (read-only)", ec2.describe_instance_status().send().await),
        Verdict::Allowed
    );
    assert_eq!(
        verdict("DescribeInstanceInformation (read-only)", ssm.describe_instance_information().send().await),
        Verdict::Allowed
    );
    assert_eq!(verdict("ListCommands (read-only)", ssm.list_commands().send().await), Verdict::Allowed);
    assert_eq!(
        verdict("ListCommandInvocations (read-only)", ssm.list_command_invocations().send().await),
        Verdict::Allowed
    );
    record("enforcement on the emulator", started.elapsed());
    drop(moto);
}

/// A POST with a text body (moto's own API), over the local stack's HTTP client.
async fn moto_api_post(url: &str, body: &str) -> String {
    use http_body_util::Full;
    let request = hyper::Request::post(url).body(Full::new(bytes::Bytes::from(body.to_owned()))).unwrap();
    let response = ec2patch_local::http::send(request).await.unwrap();
    assert!(response.status().is_success(), "{url}: {}", response.status());
    String::from_utf8_lossy(response.body()).into_owned()
}
