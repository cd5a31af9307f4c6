//! The whole bill of a wave, per 1000 targets, for a 30-minute patch: every AWS charge the hub
//! incurs, each shown, counted from a real wave's recorded calls (the router's counters and the
//! execution history) and scaled by targets. Spoke calls (EC2, SSM, STS) are free.
//!
//! Prices: us-east-1 public list prices (on-demand, no free tier), for the architecture the hub
//! module deploys (arm64). Where AWS bills by something the emulator cannot observe (KMS calls
//! made by AWS services on the hub's behalf), the figure is an upper bound and says so.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::waves::WaveRun;

/// Step Functions Standard: per state transition.
pub const TRANSITION: f64 = 0.025 / 1000.0;
/// Lambda: per request, and per GB-second on arm64 (Graviton).
pub const LAMBDA_REQUEST: f64 = 0.20 / 1_000_000.0;
pub const LAMBDA_GB_SECOND_ARM64: f64 = 0.000_013_333_4;
/// DynamoDB on-demand: per write request unit (1 KB) and read request unit (4 KB strongly
/// consistent, or 8 KB eventually consistent).
pub const DYNAMODB_WRU: f64 = 0.625 / 1_000_000.0;
pub const DYNAMODB_RRU: f64 = 0.125 / 1_000_000.0;
/// S3 Standard: PUT/COPY/POST/LIST and GET requests.
pub const S3_PUT: f64 = 0.005 / 1000.0;
pub const S3_GET: f64 = 0.0004 / 1000.0;
/// KMS: per request.
pub const KMS_REQUEST: f64 = 0.03 / 10_000.0;
/// CloudWatch Logs: per GB ingested; custom metrics: per metric-month, prorated by the hour.
pub const LOGS_GB: f64 = 0.50;
pub const METRIC_HOUR: f64 = 0.30 / 730.0;
/// SNS: per publish, and per email delivery.
pub const SNS_PUBLISH: f64 = 0.50 / 1_000_000.0;
pub const SNS_EMAIL: f64 = 2.00 / 100_000.0;
/// API Gateway HTTP API: per request.
pub const HTTP_API_REQUEST: f64 = 1.00 / 1_000_000.0;

/// Lambda's own log lines per invocation (START, END and REPORT; REPORT with its init
/// duration on a cold start), bytes.
pub const PLATFORM_LOG_BYTES: f64 = 420.0;
/// A wave's metrics with the `Wave` dimension (new metrics each wave): PendingApprovals (request
/// and callback), ApprovalsDecided, and the six the wave summary emits.
pub const METRICS_PER_WAVE: f64 = 8.0;
/// The size of an instance record as the wave summary reads it (a Query, eventually
/// consistent: 8 KB per read unit).
pub const INSTANCE_RECORD_BYTES: f64 = 400.0;

/// One charge of the bill.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    pub service: &'static str,
    pub quantity: f64,
    pub unit: &'static str,
    pub dollars: f64,
    pub basis: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bill {
    pub targets: f64,
    pub instances_per_target: usize,
    pub polls_per_batch: f64,
    pub parts: Vec<Part>,
    pub dollars: f64,
}

/// What the bill is computed from.
#[derive(Debug, Clone)]
pub struct BillInputs<'a> {
    pub run: &'a WaveRun,
    /// Calls one PollSsmCommand invocation makes (measured).
    pub calls_per_poll: &'a BTreeMap<String, u64>,
    pub processor: &'a BTreeMap<String, String>,
    /// Lambda memory per function (MB), from the hub module.
    pub memory: &'a BTreeMap<String, f64>,
    /// Log bytes per invocation per function (measured at cold start).
    pub log_bytes: &'a BTreeMap<String, f64>,
    pub inventory_seconds_per_target: f64,
    pub targets: f64,
    pub targets_per_batch: f64,
    pub polls: f64,
    /// Above this many batches the wave runs in the Distributed Map (one child per batch).
    pub inline_max_batches: f64,
}

fn calls(map: &BTreeMap<String, u64>, key: &str) -> f64 {
    map.get(key).copied().unwrap_or_default() as f64
}

/// The bill of one wave of `targets` targets, from a measured run at `run.targets`.
pub fn bill(inputs: &BillInputs<'_>) -> Bill {
    let run = inputs.run;
    let cost = crate::figures::wave_cost(
        run,
        inputs.processor,
        inputs.memory,
        inputs.inventory_seconds_per_target,
        inputs.targets,
        inputs.targets_per_batch,
        inputs.polls,
    );
    let batches = (inputs.targets / inputs.targets_per_batch).ceil();
    let distributed = batches > inputs.inline_max_batches;
    let children = if distributed { batches } else { 0.0 };
    let transitions = cost.transitions + children;
    let mut parts = vec![
        Part {
            service: "Step Functions transitions",
            quantity: transitions,
            unit: "transitions",
            dollars: transitions * TRANSITION,
            basis: format!(
                "measured states entered, {} polls per batch, + {children:.0} Distributed Map child starts; $0.025/1000",
                inputs.polls
            ),
        },
        Part {
            service: "Lambda requests",
            quantity: cost.invocations,
            unit: "requests",
            dollars: cost.invocations * LAMBDA_REQUEST,
            basis: "tasks of the wave + per batch send, verify and each poll; $0.20/M".to_owned(),
        },
        Part {
            service: "Lambda duration (arm64)",
            quantity: cost.gb_seconds,
            unit: "GB-s",
            dollars: cost.gb_seconds * LAMBDA_GB_SECOND_ARM64,
            basis: "measured task durations against the emulator x configured memory; $0.0000133334/GB-s".to_owned(),
        },
    ];

    // The run's calls without its polls, then the polls a 30-minute patch makes.
    let run_polls = run.entered.get("PollCommands").copied().unwrap_or_default() as f64;
    let scale = inputs.targets / run.targets.max(1) as f64;
    let wave_polls = batches * inputs.polls;
    let per_wave = |key: &str| {
        (calls(&run.aws_calls, key) - run_polls * calls(inputs.calls_per_poll, key)).max(0.0) * scale
            + wave_polls * calls(inputs.calls_per_poll, key)
    };
    let instances = run.targets as f64 * run.instances_per_target as f64;
    // BatchWriteItem carries up to 25 items, each a write unit: the inventory writes a record per
    // target and per instance; the verify step one per instance when it batches its outcomes
    // (when it updates them one by one, those are UpdateItem calls, counted as such).
    let verify_batches = calls(&run.aws_calls, "dynamodb:UpdateItem") < instances;
    let batch_items_run = run.targets as f64 + instances * if verify_batches { 2.0 } else { 1.0 };
    let batch_items = batch_items_run.min(25.0 * calls(&run.aws_calls, "dynamodb:BatchWriteItem")) * scale;
    let single_writes =
        per_wave("dynamodb:PutItem") + per_wave("dynamodb:UpdateItem") + per_wave("dynamodb:DeleteItem");
    let wru = single_writes + batch_items;
    parts.push(Part {
        service: "DynamoDB writes (on-demand)",
        quantity: wru,
        unit: "WRU",
        dollars: wru * DYNAMODB_WRU,
        basis: format!(
            "{single_writes:.0} PutItem/UpdateItem/DeleteItem + {batch_items:.0} items in {:.0} BatchWriteItem calls (items < 1 KB); $0.625/M",
            per_wave("dynamodb:BatchWriteItem")
        ),
    });
    let summary_reads = instances * scale * INSTANCE_RECORD_BYTES / 8192.0;
    let rru = per_wave("dynamodb:GetItem") + per_wave("dynamodb:Query") + summary_reads;
    parts.push(Part {
        service: "DynamoDB reads (on-demand)",
        quantity: rru,
        unit: "RRU",
        dollars: rru * DYNAMODB_RRU,
        basis: format!(
            "GetItem and Query calls (one unit each at least) + {summary_reads:.0} for the wave summary's read of every instance record ({INSTANCE_RECORD_BYTES} B each, eventually consistent); $0.125/M"
        ),
    });
    let s3_puts = per_wave("s3:PutObject") + per_wave("s3:ListObjects") + per_wave("s3:ListObjectsV2")
        // The Distributed Map's ItemReader lists the batch objects (1000 keys a page) and its
        // ResultWriter writes a manifest and result files.
        + if distributed { (batches / 1000.0).ceil() + 3.0 } else { 0.0 };
    let s3_gets = per_wave("s3:GetObject") + per_wave("s3:HeadObject") + if distributed { batches } else { 0.0 };
    parts.push(Part {
        service: "S3 requests",
        quantity: s3_puts + s3_gets,
        unit: "requests",
        dollars: s3_puts * S3_PUT + s3_gets * S3_GET,
        basis: format!(
            "{s3_puts:.0} PUT/LIST ($0.005/1000) + {s3_gets:.0} GET ($0.0004/1000), the Distributed Map's reader and writer included"
        ),
    });
    // KMS (the hub's key encrypts the table, bucket, topic, parameters, logs and the functions'
    // environment): upper bound, as if every invocation were a cold start decrypting its
    // environment and fetching a data key for the table; S3 uses a bucket key.
    let kms = 2.0 * cost.invocations + per_wave("ssm:GetParameter") + per_wave("sns:Publish");
    parts.push(Part {
        service: "KMS requests",
        quantity: kms,
        unit: "requests",
        dollars: kms * KMS_REQUEST,
        basis: "upper bound: 2 per Lambda invocation + 1 per SecureString read and SNS publish; $0.03/10,000"
            .to_owned(),
    });
    let functions = crate::figures::state_functions();
    let log_bytes: f64 = run
        .task_times
        .iter()
        .map(|(state, time)| {
            let function = functions.get(state.as_str()).copied().unwrap_or("");
            let count = match state.as_str() {
                "SendCommands" | "VerifyBatch" => batches,
                "PollCommands" => wave_polls,
                _ => time.invocations as f64,
            };
            count * (PLATFORM_LOG_BYTES + inputs.log_bytes.get(function).copied().unwrap_or_default())
        })
        .sum();
    let log_gb = log_bytes / 1e9;
    parts.push(Part {
        service: "CloudWatch Logs ingestion",
        quantity: log_bytes / 1e6,
        unit: "MB",
        dollars: log_gb * LOGS_GB,
        basis: format!(
            "per invocation: {PLATFORM_LOG_BYTES} B of Lambda's lines + the function's own (measured at cold start); state machine logging at ERROR: none; $0.50/GB"
        ),
    });
    parts.push(Part {
        service: "CloudWatch custom metrics",
        quantity: METRICS_PER_WAVE,
        unit: "metric-hours",
        dollars: METRICS_PER_WAVE * METRIC_HOUR,
        basis: "the wave's metrics with its Wave dimension, each billed for the hour it is published ($0.30/metric-month); the undimensioned ones are a fixed monthly cost".to_owned(),
    });
    let publishes = calls(&run.aws_calls, "sns:Publish");
    parts.push(Part {
        service: "SNS",
        quantity: publishes,
        unit: "messages",
        dollars: publishes * (SNS_PUBLISH + SNS_EMAIL),
        basis: "per wave (not per target): publishes x (publish + one email delivery)".to_owned(),
    });
    let api = calls(&run.aws_calls, "apigateway:/callback");
    parts.push(Part {
        service: "API Gateway (HTTP API)",
        quantity: api,
        unit: "requests",
        dollars: api * HTTP_API_REQUEST,
        basis: "per wave: the approval link's GET and the form's POST; $1.00/M".to_owned(),
    });
    let dollars = parts.iter().map(|p| p.dollars).sum();
    Bill {
        targets: inputs.targets,
        instances_per_target: run.instances_per_target,
        polls_per_batch: inputs.polls,
        parts,
        dollars,
    }
}
