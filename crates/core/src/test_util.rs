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
