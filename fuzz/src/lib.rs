//! What the fuzz targets share: the hub defaults and offline hub they run against, and the
//! checks that turn "it did not crash" into "it answered as documented".

use std::sync::LazyLock;

use ec2patch_core::approval::SigningKey;
use ec2patch_core::config::{NamedWave, RunDefaults};
use serde_json::Value;

/// Hub defaults with one configured wave, so `waveId` alone can select something.
pub fn run_defaults() -> RunDefaults {
    RunDefaults {
        waves: vec![NamedWave {
            name: "wave2-standard".into(),
            accounts: vec!["444444444444".into(), "555555555555".into()],
            regions: vec!["us-east-1".into()],
        }],
        wave_pause_seconds: 300,
        ..RunDefaults::default()
    }
}

/// Fields the parser may name although the input lacks them (required, or filled from defaults).
const MISSING_FIELDS: &[&str] =
    &["accountWaves", "accounts", "regions", "tagFilters", "tagKey", "tagValue", "agentId", "agentAliasId"];

/// Whether `field` (as in `InvalidInput`) names a place in `input`: every segment exists, except
/// that the last may be a field the schema requires or defaults. `$` is the whole input.
///
/// Object keys may themselves contain `.` or `[` (unknown fields, tag keys), so each key of the
/// object is tried as a prefix rather than splitting the path first.
pub fn names_a_place_in(input: &Value, field: &str) -> bool {
    field == "$" || resolves(input, field)
}

fn resolves(value: &Value, rest: &str) -> bool {
    if rest.is_empty() {
        return true;
    }
    match value {
        Value::Object(map) => {
            let found = map.iter().any(|(key, child)| {
                rest.strip_prefix(key.as_str()).is_some_and(|after| match after.as_bytes().first() {
                    None => true,
                    Some(b'.') => resolves(child, &after[1..]),
                    Some(b'[') => resolves(child, after),
                    Some(_) => false,
                })
            });
            found || MISSING_FIELDS.contains(&rest)
        }
        Value::Array(items) => {
            let Some(inner) = rest.strip_prefix('[') else { return false };
            let Some((digits, after)) = inner.split_once(']') else { return false };
            let Ok(index) = digits.parse::<usize>() else { return false };
            let Some(child) = items.get(index) else { return false };
            match after.as_bytes().first() {
                None => true,
                Some(b'.') => resolves(child, &after[1..]),
                Some(b'[') => resolves(child, after),
                Some(_) => false,
            }
        }
        _ => false,
    }
}

/// The approval-link key the callback targets sign and verify with.
pub static KEY: LazyLock<SigningKey> = LazyLock::new(|| match SigningKey::new(b"fuzzing-key-of-at-least-32-bytes!!") {
    Ok(key) => key,
    Err(error) => panic!("the fuzz key is long enough: {error}"),
});

/// A hub whose clients point at a closed port: every answer the fuzzers accept must come before
/// any AWS call (a call would show as a 503 page, which the targets treat as a failure).
pub use ec2patch_core::test_util::offline_hub;
