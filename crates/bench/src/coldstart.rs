//! Cold start and peak memory: each function binary, started as Lambda starts it (a fresh
//! process with the Lambda environment, talking to a Runtime API), against a Python handler
//! (boto3 + `awslambdaric`) doing the same AWS calls against the same emulator.
//!
//! Measured: from spawning the process to the Runtime API receiving the first invocation's
//! answer (init + first invoke, as a cold invoke's duration), and the process's peak resident
//! set (`VmHWM`) at that moment. The router counts each process's AWS calls, so the report shows
//! that both sides made the same ones.
//!
//! Both sides reach AWS over HTTPS, as every Lambda does ([`crate::tls`]): the TLS handshake and
//! loading the root certificates are part of the cold start. A sample that made no AWS call,
//! completed no TLS handshake or answered otherwise than its case expects fails the run instead
//! of reporting a fast number.
//!
//! Each first invocation is the real work of its step on a small estate ([`prepare`]: 2 accounts
//! x 1 region, 2 patchable instances each, a run taken through the steps before), never an
//! early-error path: an inventory, an approval asked and its link opened, a batch sent, polled
//! once its commands finished, verified, analysed, a calendar checked. The Python handlers
//! (`crates/bench/python`) make the same calls; the report says when the calls differ.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use ec2patch_core::wave::WaveInventory;
use ec2patch_local::LocalStack;
use http_body_util::Full;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::runtime_api::RuntimeApi;
use crate::tls::TlsFront;

/// The run most cold-start events refer to: a wave over the small estate, inventoried, asked
/// for approval, its batch sent and polled until done, all in-process before measuring.
const FIXTURE_RUN: &str = "bench-cold";
/// The run the inventory samples inventory (the same estate, records of its own).
const INVENTORY_RUN: &str = "bench-cold-inventory";
/// The Change Calendar the fixture run names: open (no event), so the freeze check reads it.
const CALENDAR: &str = "BenchColdOpen";
/// The small estate's first account: away from those the other steps seed.
const FIRST_ACCOUNT: usize = 900;
/// Patchable instances per account of the small estate.
const INSTANCES_PER_ACCOUNT: usize = 2;

/// One function: its Lambda name, cargo binary, Python module, and the first invocation both
/// sides get. The events are chosen so that the Rust handler makes a small, known set of AWS
/// calls (its first ones) and answers; the Python module makes the same calls.
#[derive(Debug, Clone)]
pub struct Case {
    pub function: &'static str,
    pub bin: &'static str,
    pub python_module: &'static str,
    pub event: Value,
    /// What the invocation does, for the report.
    pub calls: &'static str,
    /// The answer the event must get (`response`, or `error` for an event that is refused by
    /// design): any other answer fails the run.
    pub answer: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub millis: f64,
    pub peak_rss_kib: u64,
    /// `response`, `error` (a handled error, as intended for some events) or `init-error`.
    pub answer: String,
    pub aws_calls: BTreeMap<String, u64>,
    /// TLS handshakes the process completed with the HTTPS front (at least one: its AWS calls
    /// went over TLS).
    pub tls_handshakes: u64,
    /// Whether this side ran first in its pair (the sides alternate).
    pub ran_first: bool,
    /// Of `millis`, the time the emulator took to answer the process's AWS calls (the router's
    /// sum): what both sides wait for alike.
    pub emulator_millis: f64,
    /// CPU time the process's threads had run when it answered (`/proc/<pid>/task/*/schedstat`):
    /// its own work, whatever else the machine is doing.
    pub cpu_millis: f64,
}

/// Median, min and max of a set of samples (or of the runs' ratios).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut values: Vec<f64> = values.into_iter().collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Self { median: median(&mut values), min, max }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ColdStart {
    pub function: String,
    pub bin: String,
    pub calls: String,
    /// Median, min and max over the measured runs.
    pub rust_millis: Spread,
    pub rust_peak_rss_mib: Spread,
    pub python_millis: Spread,
    pub python_peak_rss_mib: Spread,
    /// Each run's Rust / Python ratio (the samples of a run are taken one after the other).
    pub millis_ratio: Spread,
    pub peak_rss_ratio: Spread,
    pub rust: Vec<Sample>,
    pub python: Vec<Sample>,
    /// Both sides made the same AWS calls (by operation and count).
    pub same_calls: bool,
    /// Each side's time without the emulator's answers (`millis - emulator_millis`): the
    /// process's own start, TLS and work.
    pub rust_own_millis: Spread,
    pub python_own_millis: Spread,
    /// Each side's CPU time when it answered ([`Sample::cpu_millis`]).
    pub rust_cpu_millis: Spread,
    pub python_cpu_millis: Spread,
}

/// What the cold-start events refer to, made by [`prepare`].
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The fixture run's wave 0, as PreEC2Inventory answered.
    pub inventory: WaveInventory,
    /// The API Gateway event of opening the approval email's Approve link (a GET: the
    /// confirmation page).
    pub callback: Value,
    /// The account x region the SendSsmCommand samples patch (each sample a run of its own).
    pub send_accounts: Vec<String>,
    pub send_instances: Vec<ec2patch_local::estate::SeededInstance>,
}

/// PlanRun's case (the same in [`boot`]).
fn plan_case() -> Case {
    let account = ec2patch_local::estate::spoke_account(FIRST_ACCOUNT);
    Case {
        function: "PlanRun",
        bin: "plan",
        python_module: "plan",
        // Made unique per sample (see `sample_event`): a second run of the same waves would be
        // refused by the run lock.
        event: json!({"runId": "bench-cold-plan", "input": {"accountWaves": [{"name": "cold", "accounts": [account], "regions": ["us-east-1"]}]}}),
        calls: "validate; DynamoDB PutItem (run lock), S3 PutObject (plan), DynamoDB PutItem (run)",
        answer: "response",
    }
}

/// The cases: each function's first invocation doing the real work of its step on the small
/// estate of [`prepare`] (2 accounts x 1 region, 2 patchable instances each).
pub fn cases(fixture: &Fixture) -> anyhow::Result<Vec<Case>> {
    let inventory = serde_json::to_value(&fixture.inventory)?;
    Ok(vec![
        plan_case(),
        Case {
            function: "PreEC2Inventory",
            bin: "inventory",
            python_module: "inventory",
            event: json!({"runId": INVENTORY_RUN, "waveIndex": 0}),
            calls: "2 accounts x 1 region: S3 GetObject (plan); per account STS AssumeRole; per target EC2 DescribeInstances, SSM DescribeInstanceInformation and DescribeInstancePatchStates, DynamoDB BatchWriteItem (records); S3 PutObject (manifest, batch); DynamoDB PutItem (wave)",
            answer: "response",
        },
        Case {
            function: "SendApprovalRequest",
            bin: "approval-request",
            python_module: "approval_request",
            event: json!({"taskToken": "bench-cold-token", "runId": FIXTURE_RUN, "waveIndex": 0, "inventory": inventory}),
            calls: "init: SSM GetParameter (key); S3 GetObject x2 (plan, its lock), DynamoDB PutItem (run lock renewed), TransactWriteItems (approval, its index entry, the wave's pointer), SNS Publish (the email with signed links)",
            answer: "response",
        },
        Case {
            function: "ApprovalCallback",
            bin: "approval-callback",
            python_module: "approval_callback",
            event: fixture.callback.clone(),
            calls: "init: SSM GetParameter (key); the emailed Approve link opened: signature verified, DynamoDB GetItem (approval), confirmation page",
            answer: "response",
        },
        Case {
            function: "SendSsmCommand",
            bin: "ssm-send",
            python_module: "ssm_send",
            // A run of its own per sample (see `sample_event`).
            event: json!({"runId": "bench-cold-send", "waveIndex": 0, "batch": 0}),
            calls: "1 target x 2 instances: plan and batch read, run lock renewed, STS AssumeRole, instance leases taken, the command claimed (DynamoDB), SSM SendCommand, its id recorded",
            answer: "response",
        },
        Case {
            function: "PollSsmCommand",
            bin: "ssm-poll",
            python_module: "ssm_poll",
            // A run of its own per sample, its commands sent and finished (see `sample_event`).
            event: json!({"runId": "bench-cold-poll", "waveIndex": 0, "batch": 0, "attempt": 1}),
            calls: "1 target, 2 instances, the command finished but not yet seen: DynamoDB Query (commands), STS AssumeRole, SSM ListCommandInvocations, results recorded",
            answer: "response",
        },
        Case {
            function: "PostEC2Verify",
            bin: "verify",
            python_module: "verify",
            event: json!({"step": "batch", "runId": FIXTURE_RUN, "waveIndex": 0, "batch": 0, "timedOut": false}),
            calls: "2 targets x 2 instances, finished: S3 GetObject (plan), DynamoDB Query (commands); per account STS AssumeRole, EC2 DescribeInstanceStatus, SSM DescribeInstancePatchStates; records read and written (BatchGetItem, BatchWriteItem); leases released",
            answer: "response",
        },
        Case {
            function: "AnalyzeWithBedrock",
            bin: "bedrock-analysis",
            python_module: "bedrock_analysis",
            event: json!({"mode": "prePatch", "runId": FIXTURE_RUN, "waveIndex": 0, "inventory": inventory}),
            calls: "S3 GetObject (plan); no agent configured: the rules over the wave's inventory",
            answer: "response",
        },
        Case {
            function: "CheckChangeFreeze",
            bin: "change-freeze",
            python_module: "change_freeze",
            event: json!({"runId": FIXTURE_RUN, "waveIndex": 0}),
            calls: "S3 GetObject (plan); SSM GetCalendarState (one open calendar): OPEN",
            answer: "response",
        },
        Case {
            function: "ApprovalMonitor",
            bin: "approval-monitor",
            python_module: "approval_monitor",
            event: json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}),
            calls: "init: SSM GetParameter (key); DynamoDB Query (the pending-approval index), BatchGetItem (their records), two metrics; expired snapshots (DynamoDB Query)",
            answer: "response",
        },
    ])
}

/// Seeds the small estate and takes the fixture run through its steps in-process (the handlers
/// the router hosts), so that each cold-start event finds what its step would: a plan with an
/// open Change Calendar, an inventory, a pending approval and its email, a batch sent and its
/// commands finished.
pub async fn prepare(stack: &LocalStack) -> anyhow::Result<Fixture> {
    use ec2patch_local::functions::{
        FunctionHost, PLAN_RUN, POLL_SSM_COMMAND, PRE_EC2_INVENTORY, SEND_APPROVAL_REQUEST, SEND_SSM_COMMAND,
    };
    let region = stack.options.region.clone();
    let estate = stack
        .seed(&ec2patch_local::EstateSpec {
            accounts: 3,
            regions: vec![region.clone()],
            per_target: BTreeMap::from([(ec2patch_local::SeedKind::Patchable, INSTANCES_PER_ACCOUNT)]),
            denied_accounts: 0,
            concurrency: 3,
            first_account: FIRST_ACCOUNT,
        })
        .await
        .context("seeding the cold-start estate")?;
    let (fixture_accounts, send_accounts) = estate.accounts.split_at(2);
    let send_instances: Vec<_> =
        estate.instances.iter().filter(|i| send_accounts.contains(&i.account)).cloned().collect();
    aws_sdk_ssm::Client::new(&stack.sdk)
        .create_document()
        .name(CALENDAR)
        .content(
            [
                "BEGIN:VCALENDAR",
                "PRODID:-//AWS//Change Calendar 1.0//EN",
                "VERSION:2.0",
                "X-CALENDAR-TYPE:DEFAULT_OPEN",
                "END:VCALENDAR",
                "",
            ]
            .join("\r\n"),
        )
        .document_type(aws_sdk_ssm::types::DocumentType::ChangeCalendar)
        .document_format(aws_sdk_ssm::types::DocumentFormat::Text)
        .send()
        .await
        .context("creating the fixture's Change Calendar")?;

    let invoke = |function: &'static str, payload: Value| async move {
        let name = stack.functions.function_name(function);
        let future = stack.functions.invoke(&name, payload).with_context(|| format!("no function {name}"))?;
        future.await.map_err(|error| anyhow::anyhow!("{function}: {error:?}"))
    };
    for (run_id, calendars) in [(FIXTURE_RUN, vec![CALENDAR]), (INVENTORY_RUN, vec![])] {
        invoke(
            PLAN_RUN,
            json!({"runId": run_id, "input": {
                "accountWaves": [{"name": run_id, "accounts": fixture_accounts, "regions": [&region]}],
                "changeCalendars": calendars
            }}),
        )
        .await?;
    }
    let inventory: WaveInventory =
        serde_json::from_value(invoke(PRE_EC2_INVENTORY, json!({"runId": FIXTURE_RUN, "waveIndex": 0})).await?)?;
    anyhow::ensure!(
        inventory.patchable == fixture_accounts.len() * INSTANCES_PER_ACCOUNT && inventory.batches == 1,
        "the cold-start fixture's inventory: {inventory:?}"
    );

    // The approval email's Approve link, opened: the API Gateway event of that GET.
    let mut inbox = ec2patch_local::ApprovalInbox::for_run(FIXTURE_RUN);
    invoke(
        SEND_APPROVAL_REQUEST,
        json!({"taskToken": "bench-cold-token", "runId": FIXTURE_RUN, "waveIndex": 0, "inventory": inventory}),
    )
    .await?;
    let started = Instant::now();
    let link = loop {
        if let Some(mail) = inbox.take_new(&stack.router).into_iter().next() {
            break mail.approve_link;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("no approval email for the cold-start fixture");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let path = link.find("/callback").map(|at| &link[at..]).with_context(|| format!("no /callback in {link}"))?;
    let callback = {
        let request = hyper::Request::get(path).header("user-agent", "ec2patch-bench").body(Full::new(Bytes::new()))?;
        let (parts, _) = request.into_parts();
        ec2patch_local::apigw::event(&parts, &Bytes::new(), ([127, 0, 0, 1], 9).into(), ec2patch_local::HUB_ACCOUNT)
    };

    // The batch sent, and polled until every command finished: what PollSsmCommand's and
    // PostEC2Verify's samples then find.
    invoke(SEND_SSM_COMMAND, json!({"runId": FIXTURE_RUN, "waveIndex": 0, "batch": 0})).await?;
    let started = Instant::now();
    for attempt in 0.. {
        let poll =
            invoke(POLL_SSM_COMMAND, json!({"runId": FIXTURE_RUN, "waveIndex": 0, "batch": 0, "attempt": attempt}))
                .await?;
        if poll["done"] == Value::Bool(true) {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the cold-start fixture's commands did not finish within 120 s: {poll}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(Fixture { inventory, callback, send_accounts: send_accounts.to_vec(), send_instances })
}

/// How to start one function process.
#[derive(Debug, Clone)]
pub enum Launch {
    Rust {
        binary: PathBuf,
    },
    /// A binary of another architecture under a user-mode emulator (`qemu-aarch64 -L <sysroot>
    /// <binary>`): the packaged arm64 `bootstrap` on an x86-64 machine (.ci/package).
    Emulated {
        runner: PathBuf,
        sysroot: PathBuf,
        binary: PathBuf,
    },
    Python {
        python: PathBuf,
        handlers: PathBuf,
        module: String,
    },
}

/// The Lambda environment of a function process against `stack`, reaching AWS through the HTTPS
/// `front`.
fn environment(stack: &LocalStack, front: &TlsFront, case: &Case, runtime_api: &str) -> Vec<(String, String)> {
    let config = &stack.hub.config;
    let credentials = &stack.hub_credentials;
    let mut env = vec![
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", format!("ec2patch-{}", case.function)),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/ec2patch-{}", case.function)),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".to_owned()),
        ("AWS_REGION", stack.options.region.clone()),
        ("AWS_DEFAULT_REGION", stack.options.region.clone()),
        ("AWS_ENDPOINT_URL", front.url()),
        // Each side's standard trust setting, both the same bundle (the system roots and the
        // run's CA): rustls-native-certs, which the Rust SDK's HTTPS client loads its roots
        // with, reads SSL_CERT_FILE; botocore reads AWS_CA_BUNDLE.
        ("SSL_CERT_FILE", front.bundle().display().to_string()),
        ("AWS_CA_BUNDLE", front.bundle().display().to_string()),
        ("AWS_ACCESS_KEY_ID", credentials.access_key_id().to_owned()),
        ("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key().to_owned()),
        // No shared config files and no instance metadata: Lambda has neither.
        ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("EC2PATCH_TABLE", config.table.clone()),
        ("EC2PATCH_BUCKET", config.bucket.clone()),
        ("EC2PATCH_EXTERNAL_ID", config.external_id.clone().unwrap_or_default()),
        ("EC2PATCH_CALLBACK_BASE_URL", front.url()),
        ("EC2PATCH_HMAC_KEY_PARAMETER", config.hmac_key_parameter.clone().unwrap_or_default()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
    ];
    if let Ok(value) = std::env::var("LANG") {
        env.push(("LANG", value));
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// One cold start: spawn, wait for the answer, read the peak RSS, kill. Fails unless the process
/// answered as the case expects, made AWS calls and completed a TLS handshake.
pub async fn sample(
    stack: &LocalStack,
    front: &TlsFront,
    case: &Case,
    event: &Value,
    launch: &Launch,
    log: &Path,
) -> anyhow::Result<Sample> {
    let mut api =
        RuntimeApi::serve(event, &format!("arn:aws:lambda:us-east-1:111111111111:function:{}", case.function)).await?;
    let mut command = match launch {
        Launch::Rust { binary } => Command::new(binary),
        Launch::Emulated { runner, sysroot, binary } => {
            let mut command = Command::new(runner);
            command.arg("-L").arg(sysroot).arg(binary);
            command
        }
        Launch::Python { python, handlers, module } => {
            let mut command = Command::new(python);
            command.args(["-m", "awslambdaric", &format!("{module}.handler")]).current_dir(handlers);
            command
        }
    };
    command.env_clear().envs(environment(stack, front, case, &api.address()));
    if let Launch::Python { handlers, .. } = launch {
        command.env("PYTHONPATH", handlers.as_os_str()).env("LAMBDA_TASK_ROOT", handlers.as_os_str());
    }
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    command.stdin(Stdio::null()).stdout(log_file.try_clone()?).stderr(log_file).kill_on_drop(true);
    stack.router.reset_calls();
    front.reset_handshakes();
    let started = Instant::now();
    let mut child = command.spawn().with_context(|| format!("starting {launch:?}"))?;
    let pid = child.id().context("the function process has no pid")?;
    let answer = tokio::select! {
        answer = api.answer() => answer?,
        status = child.wait() => bail!("{} exited ({:?}) before answering; see {}", case.function, status?, log.display()),
        () = tokio::time::sleep(Duration::from_secs(120)) => bail!("{} did not answer within 120 s", case.function),
    };
    let peak_rss_kib = peak_rss_kib(pid).with_context(|| format!("reading the peak RSS of {}", case.function))?;
    let cpu_millis = cpu_millis(pid);
    let _ = child.start_kill();
    let _ = child.wait().await;
    let (aws_calls, tls_handshakes) = (stack.router.calls(), front.handshakes());
    let emulator_millis = stack.router.upstream_time().as_secs_f64() * 1000.0;
    if answer.kind == "init-error" {
        bail!("{} failed at init: {}", case.function, answer.body);
    }
    if answer.kind != case.answer {
        bail!(
            "{} ({launch:?}) answered {} where {} was expected: {}; see {}",
            case.function,
            answer.kind,
            case.answer,
            answer.body,
            log.display()
        );
    }
    if aws_calls.is_empty() || tls_handshakes == 0 {
        bail!(
            "{} ({launch:?}) made {} AWS calls with {tls_handshakes} TLS handshakes: its cold start did not reach AWS over TLS; see {}",
            case.function,
            aws_calls.values().sum::<u64>(),
            log.display()
        );
    }
    Ok(Sample {
        millis: answer.at.duration_since(started).as_secs_f64() * 1000.0,
        peak_rss_kib,
        answer: answer.kind.to_owned(),
        aws_calls,
        tls_handshakes,
        ran_first: false,
        emulator_millis,
        cpu_millis,
    })
}

/// The case's event for sample `n`. PlanRun gets a run id and wave name of its own each time.
/// SendSsmCommand and PollSsmCommand get a run of their own over the send account, planned and
/// inventoried here (in-process, not timed) with the previous sample's instance leases released:
/// every send sample sends the batch's commands anew, and every poll sample polls a batch whose
/// commands were sent here and have finished in SSM, but which no poll has seen yet.
async fn sample_event(stack: &LocalStack, fixture: &Fixture, case: &Case, n: usize) -> anyhow::Result<Value> {
    let mut event = case.event.clone();
    match case.function {
        "PlanRun" => {
            event["runId"] = Value::from(format!("bench-cold-plan-{n}"));
            event["input"]["accountWaves"][0]["name"] = Value::from(format!("cold-{n}"));
        }
        "SendSsmCommand" | "PollSsmCommand" => {
            let run_id = format!("{}-{n}", case.event["runId"].as_str().unwrap_or("bench-cold-run"));
            fresh_run(stack, fixture, &run_id).await?;
            if case.function == "PollSsmCommand" {
                let send: ec2patch_ssm_send::SendRequest =
                    serde_json::from_value(json!({"runId": run_id, "waveIndex": 0, "batch": 0}))?;
                ec2patch_ssm_send::handle(&stack.hub, send).await.with_context(|| format!("sending {run_id}"))?;
                wait_for_commands(stack, &run_id).await?;
            }
            event["runId"] = Value::from(run_id);
        }
        _ => {}
    }
    Ok(event)
}

/// Plans `run_id` over the send account and inventories it, its instances' leases released.
async fn fresh_run(stack: &LocalStack, fixture: &Fixture, run_id: &str) -> anyhow::Result<()> {
    let plan: ec2patch_plan::PlanRequest = serde_json::from_value(json!({
        "runId": run_id,
        "input": {"accountWaves": [{"name": run_id, "accounts": fixture.send_accounts, "regions": [stack.options.region]}]}
    }))?;
    ec2patch_plan::handle(&stack.hub, plan).await.with_context(|| format!("planning {run_id}"))?;
    let inventory: ec2patch_inventory::InventoryRequest =
        serde_json::from_value(json!({"runId": run_id, "waveIndex": 0}))?;
    ec2patch_inventory::handle(&stack.hub, inventory).await.with_context(|| format!("inventory of {run_id}"))?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    for instance in &fixture.send_instances {
        dynamodb
            .delete_item()
            .table_name(&stack.hub.config.table)
            .key(
                "pk",
                AttributeValue::S(format!("LEASE#{}#{}#{}", instance.account, instance.region, instance.instance_id)),
            )
            .key("sk", AttributeValue::S("LEASE".to_owned()))
            .send()
            .await
            .context("releasing the previous sample's lease")?;
    }
    Ok(())
}

/// Waits until every command of `run_id`'s batch 0 has finished in SSM (asking SSM directly,
/// so that the run's records still say nothing about it).
async fn wait_for_commands(stack: &LocalStack, run_id: &str) -> anyhow::Result<()> {
    let records = aws_sdk_dynamodb::Client::new(&stack.sdk)
        .query()
        .table_name(&stack.hub.config.table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
        .expression_attribute_values(":pk", AttributeValue::S(format!("RUN#{run_id}")))
        .expression_attribute_values(":prefix", AttributeValue::S("COMMAND#000#00000#".to_owned()))
        .consistent_read(true)
        .send()
        .await
        .context("reading the sample's commands")?;
    let sessions = stack.hub.spoke_sessions("bench-cold-harness");
    let started = Instant::now();
    for record in records.items() {
        let text = |name: &str| record.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let (account, region, command) = (text("account"), text("region"), text("commandId"));
        let account = ec2patch_core::AccountId::parse(&account).with_context(|| format!("account {account:?}"))?;
        let ssm = aws_sdk_ssm::Client::new(
            &sessions.config_for(&account, &ec2patch_core::Region::new_unchecked(region)).await?,
        );
        loop {
            let invocations = ssm.list_command_invocations().command_id(&command).send().await?;
            let busy = invocations.command_invocations().iter().any(|i| {
                matches!(
                    i.status(),
                    None | Some(
                        aws_sdk_ssm::types::CommandInvocationStatus::Pending
                            | aws_sdk_ssm::types::CommandInvocationStatus::InProgress
                            | aws_sdk_ssm::types::CommandInvocationStatus::Delayed
                    )
                )
            });
            if !busy && !invocations.command_invocations().is_empty() {
                break;
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("{run_id}'s command {command} did not finish within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    anyhow::ensure!(!records.items().is_empty(), "{run_id} sent no command");
    Ok(())
}

/// `VmHWM` (peak resident set) of a live process, in KiB.
fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM line")
}

/// CPU time of a live process's threads so far, in ms (the first field of each thread's
/// `schedstat`, in ns); threads that ended are not counted.
fn cpu_millis(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return f64::NAN };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum();
    nanos as f64 / 1e6
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Every case, `runs` measured times per side, after one unmeasured warm-up run if `warmup` (so
/// both sides start with their files in the page cache, as Lambda's workers do). The function
/// processes reach AWS through `front`.
#[allow(clippy::too_many_arguments)]
pub async fn measure(
    stack: &LocalStack,
    front: &TlsFront,
    binaries: &Path,
    python: &Path,
    handlers: &Path,
    runs: usize,
    warmup: bool,
    only: &[String],
    logs: &Path,
) -> anyhow::Result<Vec<ColdStart>> {
    let fixture = prepare(stack).await?;
    std::fs::create_dir_all(logs)?;
    let mut results = Vec::new();
    let cases = cases(&fixture)?;
    if let Some(unknown) = only.iter().find(|name| !cases.iter().any(|case| case.function == name.as_str())) {
        bail!("no cold-start case {unknown}");
    }
    for case in cases.into_iter().filter(|case| only.is_empty() || only.iter().any(|name| name == case.function)) {
        let rust = Launch::Rust { binary: binaries.join(case.bin) };
        if !binaries.join(case.bin).exists() {
            bail!("{} is missing: build the function binaries first", binaries.join(case.bin).display());
        }
        let py = Launch::Python {
            python: python.to_owned(),
            handlers: handlers.to_owned(),
            module: case.python_module.to_owned(),
        };
        let mut rust_samples = Vec::new();
        let mut python_samples = Vec::new();
        let skip = usize::from(warmup);
        let rust_log = logs.join(format!("{}-rust.log", case.bin));
        let python_log = logs.join(format!("{}-python.log", case.bin));
        for run in 0..runs + skip {
            // The two sides one after the other, alternating which goes first (measured run i:
            // Rust first if i is even), so that neither always follows the other (page cache,
            // CPU frequency, the emulator's state) and any drift in the machine's load hits both.
            let rust_first = run.saturating_sub(skip) % 2 == 0;
            let (mut r, mut p);
            if rust_first {
                let event = sample_event(stack, &fixture, &case, 2 * run).await?;
                r = sample(stack, front, &case, &event, &rust, &rust_log).await?;
                let event = sample_event(stack, &fixture, &case, 2 * run + 1).await?;
                p = sample(stack, front, &case, &event, &py, &python_log).await?;
            } else {
                let event = sample_event(stack, &fixture, &case, 2 * run).await?;
                p = sample(stack, front, &case, &event, &py, &python_log).await?;
                let event = sample_event(stack, &fixture, &case, 2 * run + 1).await?;
                r = sample(stack, front, &case, &event, &rust, &rust_log).await?;
            }
            (r.ran_first, p.ran_first) = (rust_first, !rust_first);
            if run >= skip {
                rust_samples.push(r);
                python_samples.push(p);
            }
        }
        let spread = |samples: &[Sample], f: fn(&Sample) -> f64| Spread::of(samples.iter().map(f));
        let ratio =
            |f: fn(&Sample) -> f64| Spread::of(rust_samples.iter().zip(&python_samples).map(|(r, p)| f(r) / f(p)));
        let same_calls = rust_samples.iter().zip(&python_samples).all(|(r, p)| r.aws_calls == p.aws_calls);
        let rss_mib = |s: &Sample| s.peak_rss_kib as f64 / 1024.0;
        results.push(ColdStart {
            function: case.function.to_owned(),
            bin: case.bin.to_owned(),
            calls: case.calls.to_owned(),
            rust_millis: spread(&rust_samples, |s| s.millis),
            rust_peak_rss_mib: spread(&rust_samples, rss_mib),
            python_millis: spread(&python_samples, |s| s.millis),
            python_peak_rss_mib: spread(&python_samples, rss_mib),
            millis_ratio: ratio(|s| s.millis),
            peak_rss_ratio: ratio(rss_mib),
            rust_own_millis: spread(&rust_samples, |s| s.millis - s.emulator_millis),
            python_own_millis: spread(&python_samples, |s| s.millis - s.emulator_millis),
            rust_cpu_millis: spread(&rust_samples, |s| s.cpu_millis),
            python_cpu_millis: spread(&python_samples, |s| s.cpu_millis),
            rust: rust_samples,
            python: python_samples,
            same_calls,
        });
    }
    Ok(results)
}

/// The cold starts alone, on a local stack of their own (`ec2patch-bench cold-start`): the
/// binaries built first if `options.build_profile` says so, the Python virtualenv, the stack, then
/// [`measure_over_tls`].
pub async fn run(root: &Path, options: &crate::Options) -> anyhow::Result<Vec<ColdStart>> {
    if let Some(profile) = &options.build_profile {
        crate::build(root, profile)?;
    }
    let python = crate::python_venv(root)?;
    let stack =
        LocalStack::start(ec2patch_local::LocalStackOptions { name_prefix: "bench".to_owned(), ..Default::default() })
            .await?;
    measure_over_tls(&stack, root, &python, options).await
}

/// [`measure`] with the function processes reaching AWS over HTTPS, as in Lambda: a TLS front to
/// the stack's router, with a CA made for this run.
pub async fn measure_over_tls(
    stack: &LocalStack,
    root: &Path,
    python: &Path,
    options: &crate::Options,
) -> anyhow::Result<Vec<ColdStart>> {
    let target = crate::target_dir(root);
    let front = TlsFront::start(&target.join("bench/tls"), stack.router.addr).await?;
    eprintln!("bench: cold starts ({} runs per side, AWS at {}) ...", options.cold_start_runs, front.url());
    measure(
        stack,
        &front,
        &options.binaries,
        python,
        &root.join("crates/bench/python"),
        options.cold_start_runs,
        options.cold_start_warmup,
        &options.cold_start_only,
        &target.join("bench/logs"),
    )
    .await
}

/// Boots one packaged function (`launch`, e.g. the arm64 PlanRun under qemu) as Lambda would,
/// against a fresh local stack, and returns its one invocation's answer: PlanRun plans a run,
/// which takes the run lock and stores the plan (DynamoDB, S3), so a `response` proves the
/// binary starts, reads its environment, reaches AWS through the SDK over HTTPS (a CA made for
/// the boot) and answers the Runtime API.
pub async fn boot(launch: &Launch, log: &Path) -> anyhow::Result<Sample> {
    let stack =
        LocalStack::start(ec2patch_local::LocalStackOptions { name_prefix: "boot".to_owned(), ..Default::default() })
            .await?;
    let case = plan_case();
    let tls_dir = std::env::temp_dir().join(format!("ec2patch-boot-tls-{}", std::process::id()));
    let front = TlsFront::start(&tls_dir, stack.router.addr).await?;
    let sample = sample(&stack, &front, &case, &case.event, launch, log).await;
    let _ = std::fs::remove_dir_all(&tls_dir);
    let sample = sample?;
    if sample.answer != "response" {
        bail!("PlanRun answered {} (see {})", sample.answer, log.display());
    }
    Ok(sample)
}
