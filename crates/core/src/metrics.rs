//! CloudWatch metrics in Embedded Metric Format: one JSON line on stdout, which Lambda sends to
//! CloudWatch Logs and CloudWatch turns into metrics, with no API call on the hot path.
//!
//! Namespace `EC2PATCH_METRIC_NAMESPACE` (default `ec2patch`). Every metric is published with
//! no dimensions (what the hub's alarms watch) and per `Wave` when a wave is given.

use serde_json::{Map, Value, json};

/// One metric value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

impl Metric {
    pub fn count(name: &'static str, value: usize) -> Self {
        Self { name, value: value as f64, unit: "Count" }
    }
}

/// The EMF document for `metrics`, stamped `timestamp_ms`.
pub fn document(namespace: &str, wave: Option<&str>, metrics: &[Metric], timestamp_ms: u128) -> Value {
    let dimensions: Vec<Vec<&str>> = match wave {
        Some(_) => vec![vec![], vec!["Wave"]],
        None => vec![vec![]],
    };
    let definitions: Vec<Value> = metrics.iter().map(|m| json!({"Name": m.name, "Unit": m.unit})).collect();
    let mut root = Map::new();
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": u64::try_from(timestamp_ms).unwrap_or(u64::MAX),
            "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": dimensions, "Metrics": definitions}]
        }),
    );
    if let Some(wave) = wave {
        root.insert("Wave".to_owned(), Value::String(wave.to_owned()));
    }
    for metric in metrics {
        root.insert(metric.name.to_owned(), json!(metric.value));
    }
    Value::Object(root)
}

/// Prints the metrics as one EMF line.
pub fn emit(wave: Option<&str>, metrics: &[Metric]) {
    // Only Lambda ships stdout to CloudWatch, where EMF lines become metrics. Elsewhere (the
    // local stack runs the handlers inside the CLI or a test) they would be noise in a
    // terminal or corrupt a command's JSON output.
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_none() {
        return;
    }
    let namespace = std::env::var("EC2PATCH_METRIC_NAMESPACE").unwrap_or_else(|_| "ec2patch".to_owned());
    let now = crate::time::now_epoch_millis();
    // stdout, not tracing: EMF must be the whole log line.
    println!("{}", document(&namespace, wave, metrics, now));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_follow_the_embedded_metric_format() {
        let doc = document(
            "ec2patch",
            Some("wave1"),
            &[Metric::count("PatchFailures", 2), Metric { name: "PatchSuccessRate", value: 95.5, unit: "Percent" }],
            1_700_000_000_000,
        );
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000u64);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "ec2patch");
        assert_eq!(directive["Dimensions"], json!([[], ["Wave"]]));
        assert_eq!(directive["Metrics"][0], json!({"Name": "PatchFailures", "Unit": "Count"}));
        assert_eq!(doc["PatchFailures"], 2.0);
        assert_eq!(doc["PatchSuccessRate"], 95.5);
        assert_eq!(doc["Wave"], "wave1");
        let plain = document("ns", None, &[Metric::count("PendingApprovals", 1)], 0);
        assert_eq!(plain["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        assert!(plain.get("Wave").is_none());
    }
}
