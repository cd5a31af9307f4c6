//! SendApprovalRequest: invoked with `lambda:invoke.waitForTaskToken` before a wave is patched.
//!
//! Stores the task token server-side under a random approval id, then emails (SNS) what the wave
//! will patch, with signed Approve/Reject links to the confirmation page. The token never leaves
//! DynamoDB: it is not in the message, the links, the return value or any log line.

use ec2patch_core::approval::{
    self, Action, ApprovalDetails, ApprovalRecord, MAX_LISTED_ACCOUNTS, SigningKey, TaskToken,
};
use ec2patch_core::aws::AwsResultExt;
use ec2patch_core::time::now_epoch_seconds;
use ec2patch_core::wave::WaveInventory;
use ec2patch_core::{Error, Hub, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalRequest {
    pub task_token: TaskToken,
    pub run_id: String,
    pub wave_index: usize,
    pub inventory: WaveInventory,
    /// The pre-patch analysis, when one ran.
    #[serde(default)]
    pub analysis: Option<String>,
}

/// Returned to Step Functions (which ignores it while waiting for the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSent {
    pub approval_id: String,
    pub link_expires_at: u64,
    pub message_id: Option<String>,
}

/// What the function needs beyond the hub: its signing key and SNS.
#[derive(Debug)]
pub struct Deps {
    pub key: SigningKey,
    pub sns: aws_sdk_sns::Client,
}

impl Deps {
    pub async fn load(hub: &Hub) -> Result<Self> {
        Ok(Self { key: hub.load_signing_key().await?, sns: aws_sdk_sns::Client::new(&hub.sdk) })
    }
}

pub async fn handle(hub: &Hub, deps: &Deps, request: ApprovalRequest) -> Result<ApprovalSent> {
    let base_url = hub
        .config
        .callback_base_url
        .as_deref()
        .ok_or_else(|| Error::ConfigError("EC2PATCH_CALLBACK_BASE_URL is not set".to_owned()))?;
    let plan = hub.store.load_plan(&request.run_id).await?;
    let wave = plan
        .waves
        .get(request.wave_index)
        .ok_or_else(|| Error::invalid("waveIndex", format!("run {} has {} waves", plan.run_id, plan.waves.len())))?;
    let topic = plan.sns_topic_arn.clone().ok_or_else(|| {
        Error::ConfigError(
            "no SNS topic: set snsTopicArn in the run input or EC2PATCH_SNS_TOPIC_ARN on the hub".to_owned(),
        )
    })?;
    // The run lock's lease must outlast the approval window; a run that lost its lock asks no one
    // (DuplicateRun: the wave is recorded as not patched).
    let lease = ec2patch_core::run_lock::lease_seconds(
        &hub.config,
        plan.wave_pause_seconds,
        ec2patch_core::run_lock::Renewal::AwaitingApproval,
    );
    ec2patch_core::run_lock::renew_for_run(&hub.store, &plan.run_id, lease).await?;

    let inventory = &request.inventory;
    let link_expires_at = now_epoch_seconds() + u64::from(hub.config.approval_timeout_seconds);
    let details = ApprovalDetails {
        run_id: plan.run_id.clone(),
        wave_index: request.wave_index,
        wave_name: wave.name.clone(),
        dry_run: plan.dry_run,
        accounts: wave.accounts.iter().take(MAX_LISTED_ACCOUNTS).map(ToString::to_string).collect(),
        accounts_total: wave.accounts.len(),
        regions: wave.regions.iter().map(ToString::to_string).collect(),
        targets: inventory.targets,
        targets_failed: inventory.targets_failed,
        instances: inventory.instances,
        patchable: inventory.patchable,
        offline: inventory.offline,
        unmanaged: inventory.unmanaged,
        analysis: request.analysis.clone(),
        manifest: inventory.manifest.clone(),
        link_expires_at,
    };
    let approval_id = approval::new_approval_id()?;
    let record = ApprovalRecord::pending(&approval_id, request.task_token.clone(), details);
    approval::decide::create(&hub.store, &record).await?;
    let details = record.details;

    let approve = deps.key.link(base_url, &approval_id, Action::Approve, link_expires_at);
    let reject = deps.key.link(base_url, &approval_id, Action::Reject, link_expires_at);
    let published = deps
        .sns
        .publish()
        .topic_arn(&topic)
        .subject(subject(&details))
        .message(email_text(&details, &approve, &reject))
        .send()
        .await
        .aws_context("Publish", || format!("topic {topic}, approval {approval_id}"))?;
    tracing::info!(run_id = %details.run_id, wave = details.wave_index, %approval_id, link_expires_at, "approval requested");
    ec2patch_core::metrics::emit(
        Some(&details.wave_name),
        &[ec2patch_core::metrics::Metric::count("PendingApprovals", 1)],
    );
    Ok(ApprovalSent { approval_id, link_expires_at, message_id: published.message_id })
}

// The email is the approval domain's (the approval monitor re-sends it as a reminder).
pub use ec2patch_core::approval::email::{email_text, subject};
