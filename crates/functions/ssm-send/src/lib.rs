//! SendSsmCommand: sends `AWS-RunPatchBaseline` to one batch's patchable instances, target by
//! target, acting as each spoke's `PatchExecRole` (Step Functions task credentials cannot carry
//! an ExternalId, so the function assumes the role itself).
//!
//! Idempotent: each command (at most 50 instances) is claimed in DynamoDB before it is sent and
//! completed with its command id after. A retried invocation reuses recorded commands, and a
//! claim without an id (the previous attempt died between sending and recording) is matched to
//! the command SSM already has by its Comment before anything is sent again.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ssm::types::CloudWatchOutputConfig;
use ec2patch_core::approval::{format_epoch, now_epoch_seconds};
use ec2patch_core::aws::AwsResultExt;
use ec2patch_core::patching::{self, CommandRecord, DOCUMENT, INSTANCES_PER_COMMAND, outcome};
use ec2patch_core::sessions::SpokeSessions;
use ec2patch_core::store::{self, s};
use ec2patch_core::wave::{BatchManifest, TargetManifest};
use ec2patch_core::{AccountId, Error, Hub, Region, Result, RunPlan};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendRequest {
    pub run_id: String,
    pub wave_index: usize,
    pub batch: usize,
}

/// Counts for the batch, and the first wait of the poll loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendResult {
    pub batch: usize,
    pub commands: usize,
    /// Commands found already sent (a retry) rather than sent now.
    pub reused: usize,
    pub instances: usize,
    pub unreachable_targets: usize,
    pub next_poll_seconds: u32,
    pub attempt: u32,
    pub done: bool,
    pub timed_out: bool,
}

struct TargetSent {
    commands: usize,
    reused: usize,
    instances: usize,
    unreachable: bool,
}

pub async fn handle(hub: &Hub, request: SendRequest) -> Result<SendResult> {
    let plan = hub.store.load_plan(&request.run_id).await?;
    let batch: BatchManifest =
        hub.store.get_json(&store::batch_key(&plan.run_id, request.wave_index, request.batch)).await?;
    let sessions = hub.spoke_sessions(&plan.run_id);
    let (plan, sessions, request) = (&plan, &sessions, &request);
    // Owned targets: a borrowed item in a spawned-future stream trips the compiler's
    // higher-ranked lifetime inference (rust-lang/rust#102211).
    let sent: Vec<TargetSent> = futures::stream::iter(batch.targets.clone())
        .map(|target| async move { send_target(hub, sessions, plan, request, &target).await })
        .buffer_unordered(hub.config.inventory_concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let result = SendResult {
        batch: request.batch,
        commands: sent.iter().map(|t| t.commands).sum(),
        reused: sent.iter().map(|t| t.reused).sum(),
        instances: sent.iter().map(|t| t.instances).sum(),
        unreachable_targets: sent.iter().filter(|t| t.unreachable).count(),
        next_poll_seconds: hub.config.patching.poll_initial_seconds,
        attempt: 0,
        done: false,
        timed_out: false,
    };
    tracing::info!(run_id = %plan.run_id, wave = request.wave_index, batch = request.batch, commands = result.commands,
        reused = result.reused, instances = result.instances, "patch commands sent");
    Ok(result)
}

async fn send_target(
    hub: &Hub,
    sessions: &SpokeSessions,
    plan: &RunPlan,
    request: &SendRequest,
    target: &TargetManifest,
) -> Result<TargetSent> {
    let account = AccountId::parse(&target.account)
        .ok_or_else(|| Error::StateStoreFailed(format!("bad account {}", target.account)))?;
    let region = Region::new_unchecked(target.region.clone());
    let config = match sessions.config_for(&account, &region).await {
        Ok(config) => config,
        Err(error) if error.is_transient() => return Err(error),
        Err(error) => {
            // The role worked at inventory time but not now (revoked, SCP, deleted stack): the
            // instances cannot be patched; say so on each of them.
            let reason = format!("cannot reach the account to send the patch command: {error}");
            for instance in &target.instances {
                patching::record_outcome(
                    &hub.store,
                    &plan.run_id,
                    (&account, &region, &instance.instance_id),
                    outcome::UNREACHABLE,
                    Some(&reason),
                    &[],
                )
                .await?;
            }
            tracing::warn!(%account, %region, %error, "target unreachable at send");
            return Ok(TargetSent { commands: 0, reused: 0, instances: 0, unreachable: true });
        }
    };
    let ssm = aws_sdk_ssm::Client::new(&config);
    let ids: Vec<String> = target.instances.iter().map(|i| i.instance_id.clone()).collect();
    let mut sent = TargetSent { commands: 0, reused: 0, instances: ids.len(), unreachable: false };
    for (chunk, instance_ids) in ids.chunks(INSTANCES_PER_COMMAND).enumerate() {
        let sk = store::command_sk(request.wave_index, request.batch, &account, &region, chunk);
        let reused = send_once(hub, &ssm, plan, &sk, &account, &region, instance_ids).await?;
        sent.commands += 1;
        sent.reused += usize::from(reused);
    }
    Ok(sent)
}

/// Sends one command unless it was sent before; returns whether an earlier send was reused.
async fn send_once(
    hub: &Hub,
    ssm: &aws_sdk_ssm::Client,
    plan: &RunPlan,
    sk: &str,
    account: &AccountId,
    region: &Region,
    instance_ids: &[String],
) -> Result<bool> {
    let pk = store::run_pk(&plan.run_id);
    let comment = patching::claim_comment(&plan.run_id, sk);
    let (record, claimed_before) = match hub.store.get_item(&pk, sk).await? {
        Some(item) => (CommandRecord::from_item(&item)?, true),
        None => {
            let record = CommandRecord {
                sk: sk.to_owned(),
                account: account.clone(),
                region: region.clone(),
                instance_ids: instance_ids.to_vec(),
                claimed_at: now_epoch_seconds(),
                command_id: None,
            };
            hub.store.put_item_if_absent(record.to_item(&pk, hub.store.expires_at())).await?;
            (record, false)
        }
    };
    if record.command_id.is_some() {
        return Ok(true);
    }
    // Only an earlier attempt's claim can have a command behind it: look it up then, not on
    // every first send.
    if claimed_before && let Some(command_id) = find_sent(ssm, &record, &comment).await? {
        complete(hub, &pk, sk, &command_id).await?;
        return Ok(true);
    }
    let operation = if plan.dry_run { "Scan" } else { "Install" };
    let patching = &hub.config.patching;
    let mut send = ssm
        .send_command()
        .document_name(DOCUMENT)
        .set_instance_ids(Some(record.instance_ids.clone()))
        .parameters("Operation", vec![operation.to_owned()])
        .parameters("RebootOption", vec![patching.reboot_option.clone()])
        .parameters("SnapshotId", vec![plan.snapshot_id.clone()])
        .max_concurrency(&patching.max_concurrency)
        .max_errors(&patching.max_errors)
        .timeout_seconds(i32::try_from(patching.command_timeout_seconds).unwrap_or(i32::MAX))
        .comment(&comment);
    if let Some(group) = &patching.command_log_group {
        send = send.cloud_watch_output_config(
            CloudWatchOutputConfig::builder()
                .cloud_watch_log_group_name(group)
                .cloud_watch_output_enabled(true)
                .build(),
        );
    }
    let output = send.send().await.aws_context("SendCommand", || record.context())?;
    let command_id = output.command.and_then(|c| c.command_id).ok_or_else(|| Error::AwsCallFailed {
        operation: "SendCommand".into(),
        context: record.context(),
        code: "NoCommandId".into(),
        message: "SSM returned no command id".into(),
    })?;
    complete(hub, &pk, sk, &command_id).await?;
    tracing::info!(%account, %region, %command_id, instances = record.instance_ids.len(), operation, "SendCommand");
    Ok(false)
}

/// The command an earlier attempt sent for this claim, if SSM has one.
async fn find_sent(ssm: &aws_sdk_ssm::Client, record: &CommandRecord, comment: &str) -> Result<Option<String>> {
    let since = format_epoch(record.claimed_at.saturating_sub(60));
    let mut pages = ssm
        .list_commands()
        .filters(
            aws_sdk_ssm::types::CommandFilter::builder()
                .key(aws_sdk_ssm::types::CommandFilterKey::InvokedAfter)
                .value(since)
                .build()
                .map_err(|e| Error::invalid("filter", e.to_string()))?,
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.aws_context("ListCommands", || record.context())?;
        if let Some(command) = page.commands().iter().find(|c| c.comment() == Some(comment)) {
            return Ok(command.command_id.clone());
        }
    }
    Ok(None)
}

async fn complete(hub: &Hub, pk: &str, sk: &str, command_id: &str) -> Result<()> {
    hub.store
        .dynamodb()
        .update_item()
        .table_name(hub.store.table())
        .key("pk", s(pk))
        .key("sk", s(sk))
        .update_expression("SET commandId = :id, sentAt = :at")
        .expression_attribute_values(":id", AttributeValue::S(command_id.to_owned()))
        .expression_attribute_values(":at", AttributeValue::N(now_epoch_seconds().to_string()))
        .send()
        .await
        .aws_context("UpdateItem", || format!("command record {sk}"))
        .map_err(store::into_store_error)?;
    Ok(())
}
