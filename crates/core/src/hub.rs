//! What every function handler receives: the hub's configuration and the clients built once per
//! cold start.

use aws_config::SdkConfig;

use crate::config::HubConfig;
use crate::sessions::SpokeSessions;
use crate::store::RunStore;

#[derive(Debug)]
pub struct Hub {
    pub config: HubConfig,
    pub sdk: SdkConfig,
    pub store: RunStore,
}

impl Hub {
    pub fn new(sdk: SdkConfig, config: HubConfig) -> Self {
        let store = RunStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            aws_sdk_s3::Client::from_conf(s3_config(&sdk)),
            &config.table,
            &config.bucket,
            config.record_ttl_days,
        );
        Self { config, sdk, store }
    }

    /// Loads the SDK configuration from the Lambda environment (adaptive retries: throttling
    /// across 1000 accounts is the normal case, not the exception) and the hub configuration.
    pub async fn from_env() -> crate::Result<Self> {
        let config = HubConfig::from_env()?;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(aws_config::retry::RetryConfig::adaptive().with_max_attempts(5))
            .load()
            .await;
        Ok(Self::new(sdk, config))
    }

    /// Sessions into spokes for one run; the session name shows the run in spoke CloudTrail.
    pub fn spoke_sessions(&self, run_id: &str) -> SpokeSessions {
        SpokeSessions::new(
            &self.sdk,
            aws_sdk_sts::Client::new(&self.sdk),
            &self.config.spoke_role_name,
            self.config.external_id.clone(),
            &format!("ec2patch-{run_id}"),
        )
    }
}

impl Hub {
    /// The approval-link signing key, read from SSM (call once per cold start).
    pub async fn load_signing_key(&self) -> crate::Result<crate::approval::SigningKey> {
        let parameter = self
            .config
            .hmac_key_parameter
            .as_deref()
            .ok_or_else(|| crate::Error::ConfigError("EC2PATCH_HMAC_KEY_PARAMETER is not set".to_owned()))?;
        crate::approval::SigningKey::load(&aws_sdk_ssm::Client::new(&self.sdk), parameter).await
    }
}

/// S3 against a custom endpoint (the local stack) needs path-style addressing.
pub fn s3_config(sdk: &SdkConfig) -> aws_sdk_s3::Config {
    let builder = aws_sdk_s3::config::Builder::from(sdk);
    if sdk.endpoint_url().is_some() { builder.force_path_style(true).build() } else { builder.build() }
}
