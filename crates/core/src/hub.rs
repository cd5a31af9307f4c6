//! What every function handler receives: the hub's configuration and the clients built once per
//! cold start.

use aws_config::SdkConfig;

use crate::config::HubConfig;
use std::sync::Arc;

use crate::sessions::{READ_ONLY_SESSION_POLICY, SNAPSHOT_CLEANUP_SESSION_POLICY, SpokeSessions, WarmSessions};
use crate::store::RunStore;

#[derive(Debug)]
pub struct Hub {
    pub config: HubConfig,
    pub sdk: SdkConfig,
    pub store: RunStore,
    /// Spoke sessions kept across this container's invocations ([`WarmSessions`]).
    warm_sessions: WarmSessions,
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
        Self::from_parts(config, sdk, store)
    }

    /// A hub over a given store (tests: a store whose clients are mocks).
    pub fn from_parts(config: HubConfig, sdk: SdkConfig, store: RunStore) -> Self {
        Self { config, sdk, store, warm_sessions: WarmSessions::default() }
    }

    /// Loads the SDK configuration from the Lambda environment ([`retry_config`]) and the hub
    /// configuration.
    pub async fn from_env() -> crate::Result<Self> {
        let config = HubConfig::from_env()?;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).retry_config(retry_config()).load().await;
        Ok(Self::new(sdk, config))
    }

    /// Sessions into spokes for one run with the whole spoke role (SendSsmCommand, which sends
    /// the patch command); the session name shows the run in spoke CloudTrail. Kept across this
    /// container's invocations ([`WarmSessions`]).
    pub fn spoke_sessions(&self, run_id: &str) -> Arc<SpokeSessions> {
        self.warm_sessions.get_or_make(run_id, None, || self.new_spoke_sessions(run_id))
    }

    /// Sessions for the steps that only read in spokes: the spoke role narrowed by
    /// [`READ_ONLY_SESSION_POLICY`], so they cannot send a command.
    pub fn read_only_spoke_sessions(&self, run_id: &str) -> Arc<SpokeSessions> {
        self.warm_sessions
            .get_or_make(run_id, Some(READ_ONLY_SESSION_POLICY), || self.new_spoke_sessions(run_id).read_only())
    }

    /// Sessions for ApprovalMonitor's snapshot cleanup: the spoke role narrowed by
    /// [`SNAPSHOT_CLEANUP_SESSION_POLICY`], so it cannot send a command.
    pub fn snapshot_cleanup_spoke_sessions(&self, run_id: &str) -> Arc<SpokeSessions> {
        self.warm_sessions.get_or_make(run_id, Some(SNAPSHOT_CLEANUP_SESSION_POLICY), || {
            self.new_spoke_sessions(run_id).snapshot_cleanup()
        })
    }

    fn new_spoke_sessions(&self, run_id: &str) -> SpokeSessions {
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

/// The SDK's retries: 5 attempts with exponential back-off and jitter per request (standard
/// mode), then the state machine's own retries (docs/api.md).
///
/// Not adaptive mode: its client-side rate limiter is shared by every client of a service and
/// region in the process (the SDK's default retry partition, e.g. `ssm-us-east-1`), whatever the
/// credentials, so throttling in one spoke account would slow the calls into every other spoke
/// of that region, while AWS's limits are per account and region. With 30 % of STS/EC2/SSM calls
/// throttled, adaptive mode slowed a 6-target run to 4 polls in 150 s (the limiter drops to
/// 0.5 calls/s); standard mode finishes it (docs/reliability.md).
pub fn retry_config() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard().with_max_attempts(5)
}

/// S3 against a custom endpoint (the local stack) needs path-style addressing.
pub fn s3_config(sdk: &SdkConfig) -> aws_sdk_s3::Config {
    let builder = aws_sdk_s3::config::Builder::from(sdk);
    if sdk.endpoint_url().is_some() { builder.force_path_style(true).build() } else { builder.build() }
}
