//! The whole bill of a patch wave: every AWS service the hub pays for, each part with its units
//! and public price (us-east-1), from what a measured run used, scaled to the wave's size.
//!
//! Measured: state transitions and Lambda time (see [`crate::figures::wave_cost`]), the hub's
//! DynamoDB, S3 and SNS requests (the router's counters), and the bytes the functions log (every
//! tracing event of the functions' crates, formatted as JSON as Lambda's JSON log format does,
//! counted while the run is under way). Where the unit a service bills cannot be seen from a
//! request, the part is an upper bound, and its note says which.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::figures::{Cost, PRICE_PER_GB_SECOND, PRICE_PER_REQUEST, PRICE_PER_TRANSITION};

/// DynamoDB on demand: per million write and read request units.
pub const PRICE_PER_WRITE_UNIT: f64 = 0.625 / 1_000_000.0;
pub const PRICE_PER_READ_UNIT: f64 = 0.125 / 1_000_000.0;
/// S3 Standard: PUT/LIST per 1000, GET per 1000.
pub const PRICE_PER_S3_PUT: f64 = 0.005 / 1000.0;
pub const PRICE_PER_S3_GET: f64 = 0.0004 / 1000.0;
pub const PRICE_PER_KMS_REQUEST: f64 = 0.03 / 10_000.0;
/// CloudWatch Logs ingestion (standard class), per GB.
pub const PRICE_PER_LOG_GB: f64 = 0.50;
/// A custom metric costs $0.30 a month, prorated by the hour it is published in.
pub const PRICE_PER_METRIC_HOUR: f64 = 0.30 / 730.0;
pub const PRICE_PER_SNS_PUBLISH: f64 = 0.50 / 1_000_000.0;
pub const PRICE_PER_SNS_EMAIL: f64 = 2.0 / 100_000.0;
/// API Gateway HTTP API, per request.
pub const PRICE_PER_HTTP_API_REQUEST: f64 = 1.0 / 1_000_000.0;

/// KMS requests an invocation can cause at most: the table, the bucket, the log group and the
/// function's environment are each encrypted with the hub's key (terraform/modules/hub).
pub const KMS_REQUESTS_PER_INVOCATION: f64 = 4.0;

/// Metric series a wave publishes: PostEC2Verify's eight and SendApprovalRequest's one, each
/// with no dimensions and per `Wave` (crates/core/src/metrics.rs), for the hour the wave runs.
pub const METRIC_SERIES_PER_WAVE: f64 = 18.0;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BillPart {
    pub service: &'static str,
    pub units: f64,
    pub unit: &'static str,
    pub dollars: f64,
    /// How the units were counted, and whether they are an upper bound.
    pub basis: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bill {
    pub targets: f64,
    pub parts: Vec<BillPart>,
    pub dollars: f64,
}

/// What a run measured, for the bill.
#[derive(Debug, Clone)]
pub struct Usage<'a> {
    /// The run's AWS calls (router counters) and its number of targets.
    pub calls: &'a BTreeMap<String, u64>,
    /// Items the DynamoDB batch and transaction calls carried.
    pub items: &'a BTreeMap<String, u64>,
    pub run_targets: f64,
    /// Bytes the functions logged during the run, and during one poll invocation.
    pub log_bytes: f64,
    pub log_bytes_per_poll: f64,
    /// Poll invocations in the run.
    pub run_polls: f64,
}

/// The bill of one wave of `targets` targets in `batches` batches, where `cost` holds the wave's
/// transitions and Lambda use (at the same size, each batch polled `cost.polls_per_batch` times) and
/// `child_executions` the Distributed Map's children (0 on the inline path).
pub fn wave_bill(cost: &Cost, usage: &Usage<'_>, targets: f64, batches: f64, child_executions: f64) -> Bill {
    let calls = |key: &str| usage.calls.get(key).copied().unwrap_or_default() as f64;
    // The hub's own requests grow with the targets (records, objects); scaled linearly, which
    // over-counts the few made once per wave.
    let scale = targets / usage.run_targets.max(1.0);
    let items = |key: &str| usage.items.get(key).copied().unwrap_or_default() as f64;
    // Per item, as DynamoDB bills: a transaction's twice.
    let writes = (calls("dynamodb:PutItem")
        + calls("dynamodb:UpdateItem")
        + calls("dynamodb:DeleteItem")
        + 2.0 * items("dynamodb:TransactWriteItems")
        + items("dynamodb:BatchWriteItem"))
        * scale;
    let reads = (calls("dynamodb:GetItem")
        + items("dynamodb:BatchGetItem")
        + 256.0 * (calls("dynamodb:Query") + calls("dynamodb:Scan")))
        * scale;
    let puts = (calls("s3:PutObject") + calls("s3:ListObjects")) * scale;
    let gets = (calls("s3:GetObject") + calls("s3:HeadObject")) * scale;
    let publishes = calls("sns:Publish").max(1.0);
    // KMS (the hub's customer managed key): each service caches what it gets from KMS for a
    // while (DynamoDB the table key per caller for 5 minutes, S3 a Bucket Key, CloudWatch Logs
    // and SNS a data key for 5 minutes, Lambda the environment at each cold start), so an
    // invocation costs at most one request per encrypted resource it touches: the table, the
    // bucket, its log group, its environment. Each SecureString read (the HMAC key) and each
    // publish add one.
    let kms = KMS_REQUESTS_PER_INVOCATION * cost.invocations + calls("ssm:GetParameter") + publishes;
    // Logs: the run's bytes without its polls, per target, plus every poll of the wave.
    let per_target_log =
        (usage.log_bytes - usage.run_polls * usage.log_bytes_per_poll).max(0.0) / usage.run_targets.max(1.0);
    let log_bytes = per_target_log * targets + batches * cost.polls_per_batch * usage.log_bytes_per_poll;
    let log_gb = log_bytes / 1e9;

    let mut parts = vec![
        part(
            "Step Functions",
            cost.transitions + child_executions,
            "transitions",
            PRICE_PER_TRANSITION,
            format!("measured states entered, scaled per batch; + {child_executions:.0} Distributed Map child starts"),
        ),
        part("Lambda requests", cost.invocations, "requests", PRICE_PER_REQUEST, "every task and poll invocation"),
        part(
            "Lambda duration",
            cost.gb_seconds,
            "GB-s",
            PRICE_PER_GB_SECOND,
            "measured task durations x each function's memory (hub module), arm64 price",
        ),
        part(
            "DynamoDB writes",
            writes,
            "WRU",
            PRICE_PER_WRITE_UNIT,
            "per item (<= 1 KB) of every write, batch and transaction (the router counts their items); a transaction's items twice",
        ),
        part(
            "DynamoDB reads",
            reads,
            "RRU",
            PRICE_PER_READ_UNIT,
            "GetItem and each BatchGetItem key 1; a Query counted as a full 1 MB strongly consistent page, 256 (upper bound)",
        ),
        part("S3 PUT/LIST", puts, "requests", PRICE_PER_S3_PUT, "router counters"),
        part("S3 GET/HEAD", gets, "requests", PRICE_PER_S3_GET, "router counters"),
        part(
            "KMS",
            kms,
            "requests",
            PRICE_PER_KMS_REQUEST,
            format!(
                "{KMS_REQUESTS_PER_INVOCATION:.0} per Lambda invocation (table, bucket, log group, environment: each caches its key for minutes, so an upper bound) + each SecureString read and publish"
            ),
        ),
        part(
            "CloudWatch Logs",
            log_gb,
            "GB",
            PRICE_PER_LOG_GB,
            format!(
                "{:.0} B per target + {:.0} B per poll, the functions' JSON logs at INFO as measured; platform lines are filtered (system_log_level WARN)",
                per_target_log, usage.log_bytes_per_poll
            ),
        ),
        part(
            "CloudWatch metrics",
            METRIC_SERIES_PER_WAVE,
            "series-hours",
            PRICE_PER_METRIC_HOUR,
            "the wave's metric series for the hour it runs ($0.30 per metric-month, prorated)",
        ),
        part("SNS publish", publishes, "publishes", PRICE_PER_SNS_PUBLISH, "the approval request"),
        part("SNS email", publishes, "emails", PRICE_PER_SNS_EMAIL, "one subscriber per topic"),
        part("API Gateway", 1.0, "requests", PRICE_PER_HTTP_API_REQUEST, "the Approve click (HTTP API)"),
    ];
    parts.retain(|p| p.units > 0.0);
    let dollars = parts.iter().map(|p| p.dollars).sum();
    Bill { targets, parts, dollars }
}

fn part(service: &'static str, units: f64, unit: &'static str, price: f64, basis: impl Into<String>) -> BillPart {
    BillPart { service, units, unit, dollars: units * price, basis: basis.into() }
}

static LOG_BYTES: AtomicU64 = AtomicU64::new(0);

/// Counts the bytes of what it is given, and drops them.
struct CountingWriter;

impl std::io::Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG_BYTES.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Makes this process's tracing events (the functions' logs, as the local stack runs them
/// in-process) counted by [`log_bytes`]: JSON lines at INFO, as Lambda's JSON log format and the
/// hub's default `log_level` write them. The stack's and the benchmark's own events are left out.
pub fn count_function_logs() -> anyhow::Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let filter = tracing_subscriber::EnvFilter::new("info,ec2patch_local=off,ec2patch_bench=off");
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_writer(|| CountingWriter)
                .try_init()
                .map_err(|e| format!("cannot count the functions' log bytes: {e}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Bytes logged since the process started counting.
pub fn log_bytes() -> u64 {
    LOG_BYTES.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost() -> Cost {
        Cost { polls_per_batch: 9.0, transitions: 10_000.0, invocations: 1_200.0, gb_seconds: 300.0, dollars: 0.0 }
    }

    #[test]
    fn the_bill_scales_hub_requests_by_targets_and_prices_each_part() {
        let calls = BTreeMap::from([
            ("dynamodb:BatchWriteItem".to_owned(), 4),
            ("dynamodb:UpdateItem".to_owned(), 10),
            ("s3:PutObject".to_owned(), 6),
            ("sns:Publish".to_owned(), 1),
        ]);
        let items = BTreeMap::from([
            ("dynamodb:BatchWriteItem".to_owned(), 90),
            ("dynamodb:TransactWriteItems".to_owned(), 20),
        ]);
        let usage = Usage {
            calls: &calls,
            items: &items,
            run_targets: 10.0,
            log_bytes: 20_000.0,
            log_bytes_per_poll: 500.0,
            run_polls: 20.0,
        };
        let bill = wave_bill(&cost(), &usage, 1000.0, 100.0, 0.0);
        let find = |service: &str| bill.parts.iter().find(|p| p.service == service).unwrap().clone();
        // (90 batched items + 2 x 20 transaction items + 10 updates) per 10 targets, x 100.
        assert_eq!(find("DynamoDB writes").units, 14_000.0);
        assert_eq!(find("S3 PUT/LIST").units, 600.0);
        assert!((find("DynamoDB writes").dollars - 14_000.0 * PRICE_PER_WRITE_UNIT).abs() < 1e-12);
        // (20000 - 20 x 500) / 10 = 1000 B per target; + 100 batches x 9 polls x 500 B.
        assert!((find("CloudWatch Logs").units - (1_000_000.0 + 450_000.0) / 1e9).abs() < 1e-12);
        assert!(bill.parts.iter().all(|p| p.service != "DynamoDB reads"), "no reads, no part");
        // 4 per invocation + the one publish: not one per storage request.
        assert_eq!(find("KMS").units, 4.0 * 1_200.0 + 1.0);
        let sum: f64 = bill.parts.iter().map(|p| p.dollars).sum();
        assert!((bill.dollars - sum).abs() < 1e-12);
    }

    #[test]
    fn distributed_map_children_are_billed_as_transitions() {
        let calls = BTreeMap::new();
        let usage = Usage {
            calls: &calls,
            items: &calls,
            run_targets: 1.0,
            log_bytes: 0.0,
            log_bytes_per_poll: 0.0,
            run_polls: 0.0,
        };
        let inline = wave_bill(&cost(), &usage, 1000.0, 100.0, 0.0);
        let distributed = wave_bill(&cost(), &usage, 1000.0, 100.0, 100.0);
        assert!((distributed.dollars - inline.dollars - 100.0 * PRICE_PER_TRANSITION).abs() < 1e-12);
    }
}
