//! Wall-clock time as the records and messages carry it: epoch seconds, and RFC 3339 UTC text.

use std::time::{SystemTime, UNIX_EPOCH};

/// Epoch seconds now (0 on a clock set before 1970, which no AWS call would accept anyway).
pub fn now_epoch_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// Epoch seconds now, with their fraction (poll timing against SSM's millisecond times).
pub fn now_epoch_seconds_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// Epoch milliseconds now (EMF timestamps, API Gateway's `timeEpoch`).
pub fn now_epoch_millis() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default()
}

/// An epoch time as RFC 3339 UTC (`2026-11-29T19:00:00Z`).
pub fn format_epoch(epoch: u64) -> String {
    aws_smithy_types::DateTime::from_secs(i64::try_from(epoch).unwrap_or(i64::MAX))
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| epoch.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_format_as_rfc3339_utc() {
        assert_eq!(format_epoch(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_epoch(1_795_460_400), "2026-11-23T19:00:00Z");
    }

    #[test]
    fn now_is_after_this_code_was_written() {
        assert!(now_epoch_seconds() > 1_795_000_000);
        assert!(now_epoch_millis() / 1000 >= u128::from(now_epoch_seconds()) - 1);
    }
}
