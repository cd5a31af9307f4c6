//! Test support shared by the crates' tests and the fuzz targets (cargo feature `test-util`,
//! never enabled in a Lambda build).

use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::Hub;
use crate::config::HubConfig;

/// SDK configuration whose clients point at a closed port: any AWS call fails at once.
pub fn offline_sdk() -> SdkConfig {
    SdkConfig::builder()
        .region(Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .behavior_version(BehaviorVersion::latest())
        .build()
}

/// A small hub configuration (table `t`, bucket `b`) with no callback URL and no key parameter
/// to re-read.
pub fn offline_config() -> HubConfig {
    HubConfig { inventory_concurrency: 1, record_ttl_days: 1, approval_timeout_seconds: 60, ..HubConfig::new("t", "b") }
}

/// A hub whose clients point nowhere: what a test expects to be answered before any AWS call.
pub fn offline_hub() -> Hub {
    Hub::new(offline_sdk(), offline_config())
}

/// Starts a function's bootstrap binary as Lambda would, but without the hub's configuration
/// (no `EC2PATCH_*` variables): it must stop at once with an error naming the missing variable,
/// never panic (exit code 101) and never reach AWS.
///
/// Each function crate's `tests/bootstrap.rs` calls this with `env!("CARGO_BIN_EXE_<bin>")`;
/// having an integration test also makes `cargo test --workspace` build the binary, which the
/// benchmark's smoke test then runs without a second, differently-featured cargo build.
pub fn assert_refuses_to_start_unconfigured(binary: &str) {
    let output = std::process::Command::new(binary)
        .env_clear()
        .env("AWS_LAMBDA_FUNCTION_NAME", "unconfigured")
        .output()
        .unwrap_or_else(|error| panic!("starting {binary}: {error}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{binary} must fail cleanly: {stderr}");
    assert!(stderr.contains("EC2PATCH") && stderr.contains(" is not set"), "{binary}: {stderr}");
}
