//! Cross-account sessions: the hub assumes each spoke's `PatchExecRole` with the ExternalId the
//! spoke's trust policy demands, and reuses the credentials for every call into that account
//! until shortly before they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::{Region as SdkRegion, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::is_throttling_code;
use crate::plan::{AccountId, Region};
use crate::regions::partition;
use crate::{Error, Result};

/// The session policy of the steps that only read in a spoke (PreEC2Inventory, PollSsmCommand,
/// PostEC2Verify): a session's rights are what both this and `PatchExecRole`'s policy allow, so
/// only SendSsmCommand's sessions can send a command. The actions are exactly the reads the
/// steps make (terraform/modules/spoke's `ReadInstancesAndPatchState` and
/// `PatchStateOfThisAccountsInstances`); resources stay as the role scopes them.
pub const READ_ONLY_SESSION_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"ReadOnlyStep","Effect":"Allow","Action":["ec2:DescribeInstances","ec2:DescribeInstanceStatus","ssm:DescribeInstanceInformation","ssm:DescribeInstancePatchStates","ssm:ListCommands","ssm:ListCommandInvocations"],"Resource":"*"}]}"#;

/// The session policy of ApprovalMonitor's snapshot cleanup: it lists and deletes snapshots,
/// nothing else of `PatchExecRole` (whose policy limits deletion to ec2patch's own snapshots).
pub const SNAPSHOT_CLEANUP_SESSION_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"SnapshotCleanup","Effect":"Allow","Action":["ec2:DescribeSnapshots","ec2:DeleteSnapshot"],"Resource":"*"}]}"#;

/// Runs whose sessions one warm container keeps (a container serves one run at a time, a
/// Distributed Map's children a few): enough never to evict a live one.
const WARM_RUNS: usize = 16;

/// Spoke sessions a warm container keeps across its invocations, one set per run and session
/// policy: a poll loop assumes each account's role once per run and container (renewed five
/// minutes before the hour-long session expires), not once per poll. Per run, because the session
/// name carries the run for the spoke's CloudTrail. A role whose trust is revoked mid-run refuses
/// new sessions at once; a session already issued stays valid until it expires, as any STS
/// session does (IAM's "revoke active sessions" cuts it off at once).
#[derive(Debug)]
pub struct WarmSessions {
    runs: Mutex<lru::LruCache<RunAndPolicy, Arc<SpokeSessions>>>,
}

/// A run id and the session policy its sessions carry (`None`: the role's own rights).
type RunAndPolicy = (String, Option<&'static str>);

impl Default for WarmSessions {
    fn default() -> Self {
        Self { runs: Mutex::new(lru::LruCache::new(std::num::NonZeroUsize::MIN.saturating_add(WARM_RUNS - 1))) }
    }
}

impl WarmSessions {
    /// The container's sessions for `run_id` with `session_policy`, made by `make` the first time.
    pub fn get_or_make(
        &self,
        run_id: &str,
        session_policy: Option<&'static str>,
        make: impl FnOnce() -> SpokeSessions,
    ) -> Arc<SpokeSessions> {
        let mut runs = self.runs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        runs.get_or_insert((run_id.to_owned(), session_policy), || Arc::new(make())).clone()
    }
}

/// Credentials closer than this to expiry are renewed before use.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
const SESSION_SECONDS: i32 = 3600;

#[derive(Debug)]
pub struct SpokeSessions {
    hub: SdkConfig,
    sts: aws_sdk_sts::Client,
    role_name: String,
    external_id: Option<String>,
    session_name: String,
    /// AssumeRole's `Policy` ([`READ_ONLY_SESSION_POLICY`] for the reading steps).
    session_policy: Option<&'static str>,
    // One async lock per account: concurrent targets in the same account wait for a single
    // AssumeRole instead of each calling STS.
    cache: Mutex<HashMap<AccountId, Arc<tokio::sync::Mutex<Option<Credentials>>>>>,
}

impl SpokeSessions {
    /// `session_name` shows up in the spoke's CloudTrail; it is sanitised to what STS accepts.
    pub fn new(
        hub: &SdkConfig,
        sts: aws_sdk_sts::Client,
        role_name: &str,
        external_id: Option<String>,
        session_name: &str,
    ) -> Self {
        Self {
            hub: hub.clone(),
            sts,
            role_name: role_name.to_owned(),
            external_id,
            session_name: sanitize_session_name(session_name),
            session_policy: None,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Sessions limited to the reads ([`READ_ONLY_SESSION_POLICY`]): they cannot send commands.
    pub fn read_only(mut self) -> Self {
        self.session_policy = Some(READ_ONLY_SESSION_POLICY);
        self
    }

    /// Sessions limited to listing and deleting snapshots ([`SNAPSHOT_CLEANUP_SESSION_POLICY`]).
    pub fn snapshot_cleanup(mut self) -> Self {
        self.session_policy = Some(SNAPSHOT_CLEANUP_SESSION_POLICY);
        self
    }

    pub fn role_arn(&self, account: &AccountId) -> String {
        let region = self.hub.region().map(|r| r.as_ref()).unwrap_or("us-east-1");
        format!("arn:{}:iam::{account}:role/{}", partition(region), self.role_name)
    }

    /// An SDK configuration acting as the spoke role in `account`, for `region`.
    pub async fn config_for(&self, account: &AccountId, region: &Region) -> Result<SdkConfig> {
        let credentials = self.credentials(account).await?;
        Ok(self
            .hub
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .region(SdkRegion::new(region.as_str().to_owned()))
            .build())
    }

    async fn credentials(&self, account: &AccountId) -> Result<Credentials> {
        let slot = {
            let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            cache.entry(account.clone()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(credentials) = slot.as_ref() {
            let fresh = credentials.expiry().is_none_or(|expiry| expiry > SystemTime::now() + RENEW_BEFORE_EXPIRY);
            if fresh {
                return Ok(credentials.clone());
            }
        }
        let credentials = self.assume(account).await?;
        *slot = Some(credentials.clone());
        Ok(credentials)
    }

    async fn assume(&self, account: &AccountId) -> Result<Credentials> {
        let role_arn = self.role_arn(account);
        let request = self
            .sts
            .assume_role()
            .role_arn(&role_arn)
            .role_session_name(&self.session_name)
            .set_external_id(self.external_id.clone())
            .set_policy(self.session_policy.map(str::to_owned))
            .duration_seconds(SESSION_SECONDS);
        credentials_of(request, account.as_str(), &role_arn, "ec2patch-spoke").await
    }
}

/// An SDK configuration acting as `role_arn` (a hub-side role, e.g. Terraform's
/// `organizations_role_arn`), with the hub's region and endpoint.
pub async fn assume_role_config(hub: &SdkConfig, role_arn: &str, session_name: &str) -> Result<SdkConfig> {
    let request = aws_sdk_sts::Client::new(hub)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(sanitize_session_name(session_name))
        .duration_seconds(SESSION_SECONDS);
    let account = role_arn.split(':').nth(4).unwrap_or_default();
    let credentials = credentials_of(request, account, role_arn, "ec2patch-assumed-role").await?;
    Ok(hub.to_builder().credentials_provider(SharedCredentialsProvider::new(credentials)).build())
}

/// Sends an AssumeRole request; throttling stays retryable, anything else is AssumeRoleFailed
/// naming the account and role.
async fn credentials_of(
    request: aws_sdk_sts::operation::assume_role::builders::AssumeRoleFluentBuilder,
    account: &str,
    role_arn: &str,
    provider_name: &'static str,
) -> Result<Credentials> {
    let output = request.send().await.map_err(|error| {
        let code = error.code().unwrap_or_default().to_owned();
        let message = error.message().map(str::to_owned).unwrap_or_else(|| DisplayErrorContext(&error).to_string());
        if is_throttling_code(&code) {
            Error::Throttled { operation: "AssumeRole".into(), context: format!("account {account}"), message }
        } else {
            let message = if code.is_empty() { message } else { format!("{code}: {message}") };
            Error::AssumeRoleFailed { account: account.to_owned(), role_arn: role_arn.to_owned(), message }
        }
    })?;
    let sts_credentials = output.credentials.ok_or_else(|| Error::AssumeRoleFailed {
        account: account.to_owned(),
        role_arn: role_arn.to_owned(),
        message: "STS returned no credentials".to_owned(),
    })?;
    let expiry = SystemTime::try_from(sts_credentials.expiration).ok();
    Ok(Credentials::new(
        sts_credentials.access_key_id,
        sts_credentials.secret_access_key,
        Some(sts_credentials.session_token),
        expiry,
        provider_name,
    ))
}

fn sanitize_session_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) { c } else { '-' })
        .take(64)
        .collect();
    if cleaned.len() < 2 { "ec2patch".to_owned() } else { cleaned }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sts::operation::assume_role::{AssumeRoleError, AssumeRoleOutput};
    use aws_sdk_sts::types::Credentials as StsCredentials;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_types::DateTime;

    use super::*;

    fn hub() -> SdkConfig {
        SdkConfig::builder()
            .region(SdkRegion::new("us-east-1"))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    /// AssumeRole's answer: credentials expiring at `expiry`.
    fn assumed(expiry: DateTime) -> AssumeRoleOutput {
        AssumeRoleOutput::builder()
            .credentials(
                StsCredentials::builder()
                    .access_key_id("AKID")
                    .secret_access_key("SECRET")
                    .session_token("TOKEN")
                    .expiration(expiry)
                    .build()
                    .unwrap(),
            )
            .build()
    }

    fn account() -> AccountId {
        AccountId::parse("222222222222").unwrap()
    }

    #[tokio::test]
    async fn assumes_once_per_account_with_external_id() {
        let rule = mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(|req| {
                req.role_arn() == Some("arn:aws:iam::222222222222:role/PatchExecRole")
                    && req.external_id() == Some("ext-123")
                    && req.role_session_name() == Some("ec2patch-run-1")
            })
            .then_output(|| {
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
                assumed(DateTime::from_secs(i64::try_from(now).unwrap() + 3600))
            });
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&rule]);
        let sessions = SpokeSessions::new(&hub(), sts, "PatchExecRole", Some("ext-123".into()), "ec2patch-run-1");
        let region = Region::new_unchecked("eu-west-1");
        let first = sessions.config_for(&account(), &region).await.unwrap();
        let second = sessions.config_for(&account(), &Region::new_unchecked("us-east-1")).await.unwrap();
        assert_eq!(rule.num_calls(), 1, "credentials are cached per account");
        assert_eq!(first.region().unwrap().as_ref(), "eu-west-1");
        assert_eq!(second.region().unwrap().as_ref(), "us-east-1");
    }

    #[tokio::test]
    async fn reading_sessions_carry_the_read_only_policy_and_patching_sessions_none() {
        let output = || assumed(DateTime::from_secs(4_102_444_800));
        let read_only = mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(|req| req.policy() == Some(READ_ONLY_SESSION_POLICY))
            .then_output(output);
        let whole_role =
            mock!(aws_sdk_sts::Client::assume_role).match_requests(|req| req.policy().is_none()).then_output(output);
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&read_only, &whole_role]);
        let region = Region::new_unchecked("us-east-1");
        SpokeSessions::new(&hub(), sts.clone(), "PatchExecRole", None, "run")
            .read_only()
            .config_for(&account(), &region)
            .await
            .unwrap();
        SpokeSessions::new(&hub(), sts, "PatchExecRole", None, "run").config_for(&account(), &region).await.unwrap();
        assert_eq!((read_only.num_calls(), whole_role.num_calls()), (1, 1));
        let policy: serde_json::Value = serde_json::from_str(READ_ONLY_SESSION_POLICY).unwrap();
        let actions = policy["Statement"][0]["Action"].as_array().unwrap();
        assert!(actions.iter().all(|a| !a.as_str().unwrap().contains("Send")), "{actions:?}");
    }

    #[tokio::test]
    async fn denied_assume_role_names_the_account_and_role() {
        let rule = mock!(aws_sdk_sts::Client::assume_role).then_error(|| {
            AssumeRoleError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("AccessDenied")
                    .message("not authorized to perform sts:AssumeRole")
                    .build(),
            )
        });
        let sts = mock_client!(aws_sdk_sts, [&rule]);
        let sessions = SpokeSessions::new(&hub(), sts, "PatchExecRole", None, "run");
        let error = sessions.config_for(&account(), &Region::new_unchecked("us-east-1")).await.unwrap_err();
        assert_eq!(error.error_type(), "AssumeRoleFailed");
        let text = error.to_string();
        assert!(
            text.contains("222222222222") && text.contains("PatchExecRole") && text.contains("AccessDenied"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn throttled_assume_role_is_transient() {
        let rule = mock!(aws_sdk_sts::Client::assume_role).then_error(|| {
            AssumeRoleError::generic(
                aws_smithy_types::error::ErrorMetadata::builder().code("Throttling").message("Rate exceeded").build(),
            )
        });
        let sts = mock_client!(aws_sdk_sts, [&rule]);
        let sessions = SpokeSessions::new(&hub(), sts, "PatchExecRole", None, "run");
        let error = sessions.config_for(&account(), &Region::new_unchecked("us-east-1")).await.unwrap_err();
        assert_eq!(error.error_type(), "Throttled");
        assert!(error.is_transient());
    }

    #[test]
    fn session_names_are_sanitised() {
        assert_eq!(sanitize_session_name("run:2026/11/29"), "run-2026-11-29");
        assert_eq!(sanitize_session_name(""), "ec2patch");
        assert_eq!(sanitize_session_name(&"x".repeat(100)).len(), 64);
    }
}
