//! Logging setup shared by every function binary.

/// Structured logs: JSON when the function's `logging_config` says `JSON` (Terraform sets it, and
/// Lambda then exports `AWS_LAMBDA_LOG_FORMAT=JSON`), plain text otherwise; the level follows
/// `AWS_LAMBDA_LOG_LEVEL` / `RUST_LOG`.
pub fn init() {
    lambda_runtime::tracing::init_default_subscriber();
}
