//! SendSsmCommand: sends `AWS-RunPatchBaseline` to one batch's patchable instances, target by
//! target, acting as each spoke's `PatchExecRole` (Step Functions task credentials cannot carry
//! an ExternalId, so the function assumes the role itself).
//!
//! Idempotent: each command (at most 50 instances) is claimed in DynamoDB before it is sent and
//! completed with its command id after. A retried invocation reuses recorded commands, and a
//! claim without an id (the previous attempt died between sending and recording) is matched to
//! the command SSM already has by its Comment before anything is sent again.
//!
//! Error budget: before anything else, a batch of a wave whose recorded failures exceed its
//! budget sends nothing; its instances are recorded `SKIPPED` with `ErrorBudgetExceeded ...`
//! ([`ec2patch_core::error_budget`]).
//!
//! One run per instance: before sending, each instance is leased to this run
//! ([`ec2patch_core::instance_lease`]); an instance another run holds is recorded `SKIPPED` with
//! `BusyInAnotherRun <runId>` and gets no command. Dry runs neither take nor respect leases.
//!
//! Across runs: the run must still hold its run lock (renewed here, before anything is sent; see
//! [`ec2patch_core::run_lock`]), and a run that resumes stopped runs of the same waves adopts
//! their commands for the instances they already sent to (recorded under this run with
//! `adoptedFrom`), so an instance gets `AWS-RunPatchBaseline` once however often a run is
//! stopped and started again.
//!
//! Pre-patch snapshots: in a wave with `snapshot: true` (never in a dry run), each instance's
//! volumes are snapshotted before its command is sent; an instance that cannot be protected is
//! recorded `SKIPPED` (`SnapshotFailed: ...`) and gets no command ([`snapshots`]).

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ssm::types::CloudWatchOutputConfig;
use ec2patch_core::aws::AwsResultExt;
use ec2patch_core::error_budget::{self, BudgetUse};
use ec2patch_core::instance_lease::{self, Lease};
use ec2patch_core::patching::{self, CommandRecord, DOCUMENT, INSTANCES_PER_COMMAND};
use ec2patch_core::run_lock::{self, Renewal};
use ec2patch_core::sessions::SpokeSessions;
use ec2patch_core::status::InstanceOutcome;
use ec2patch_core::store::{self, s};
use ec2patch_core::time::{format_epoch, now_epoch_seconds};
use ec2patch_core::wave::{BatchManifest, TargetManifest, WaveManifest};
use ec2patch_core::{AccountId, Error, Hub, Region, Result, RunPlan};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

pub mod snapshots;

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
    /// Instances skipped because another run holds their lease (`BusyInAnotherRun`).
    #[serde(default)]
    pub busy_instances: usize,
    /// Instances not sent because the wave's error budget was already exceeded.
    #[serde(default)]
    pub budget_skipped_instances: usize,
    /// Instances not sent because their pre-patch snapshot failed (`SnapshotFailed`).
    #[serde(default)]
    pub unprotected_instances: usize,
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
    busy: usize,
    unprotected: usize,
}

/// How this run takes instance leases ([`ec2patch_core::instance_lease`]).
struct Leases {
    /// Runs this one resumes: their leases are this run's to take over.
    resumes: Vec<String>,
    seconds: u64,
}

/// Chunk numbers from here on hold commands adopted from resumed runs (sent chunks count from 0).
const ADOPTED_CHUNK_BASE: usize = 500;

/// An earlier (stopped) run's wave manifest, to find its commands for a target.
struct Predecessor {
    run_id: String,
    manifest: WaveManifest,
}

pub async fn handle(hub: &Hub, request: SendRequest) -> Result<SendResult> {
    let plan = hub.store.load_plan(&request.run_id).await?;
    let batch: BatchManifest =
        hub.store.get_json(&store::batch_key(&plan.run_id, request.wave_index, request.batch)).await?;
    // Fencing: a run that lost its lock (another run took over after its lease expired) must not
    // send; the renewal also covers the polls that follow.
    let lease = run_lock::lease_seconds(&hub.config, plan.wave_pause_seconds, Renewal::Patching);
    let lock = run_lock::renew_for_run(&hub.store, &plan.run_id, lease).await?;
    if let Some(used) = exceeded_budget(hub, &plan, request.wave_index).await? {
        return skip_for_budget(hub, &plan, &request, &batch, &used).await;
    }
    let predecessors = load_predecessors(hub, &lock.resumes, request.wave_index).await?;
    let sessions = hub.spoke_sessions(&plan.run_id);
    let leases = Leases {
        resumes: lock.resumes.clone(),
        seconds: u64::from(hub.config.patching.command_timeout_seconds)
            + u64::from(hub.config.patching.run_lock_margin_seconds),
    };
    let (plan, sessions, request, predecessors, leases) = (&plan, &sessions, &request, &predecessors, &leases);
    // Owned targets: a borrowed item in a spawned-future stream trips the compiler's
    // higher-ranked lifetime inference (rust-lang/rust#102211).
    let sent: Vec<TargetSent> = futures::stream::iter(batch.targets.clone())
        .map(|target| async move { send_target(hub, sessions, plan, request, (predecessors, leases), &target).await })
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
        busy_instances: sent.iter().map(|t| t.busy).sum(),
        budget_skipped_instances: 0,
        unprotected_instances: sent.iter().map(|t| t.unprotected).sum(),
        next_poll_seconds: hub.config.patching.poll_initial_seconds,
        attempt: 0,
        done: false,
        timed_out: false,
    };
    tracing::info!(run_id = %plan.run_id, wave = request.wave_index, batch = request.batch, commands = result.commands,
        reused = result.reused, instances = result.instances, "patch commands sent");
    Ok(result)
}

/// The wave's error budget, when its recorded failures exceed it (read before every batch).
async fn exceeded_budget(hub: &Hub, plan: &RunPlan, wave_index: usize) -> Result<Option<BudgetUse>> {
    if !plan.error_budget.is_set() {
        return Ok(None);
    }
    let Some(wave) = hub.store.get_item(&store::run_pk(&plan.run_id), &store::wave_sk(wave_index)).await? else {
        return Ok(None);
    };
    let number = |value: &AttributeValue| value.as_n().ok().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
    let patchable = wave.get("patchable").map_or(0, number);
    let failed: usize = wave
        .get(error_budget::BATCH_FAILURES_ATTRIBUTE)
        .and_then(|v| v.as_m().ok())
        .map_or(0, |batches| batches.values().map(number).sum());
    Ok(plan.error_budget.use_of(failed, patchable).filter(|used| used.exceeded))
}

/// Sends nothing for this batch: each of its instances is recorded `SKIPPED` with the budget's
/// reason.
async fn skip_for_budget(
    hub: &Hub,
    plan: &RunPlan,
    request: &SendRequest,
    batch: &BatchManifest,
    used: &BudgetUse,
) -> Result<SendResult> {
    let reason = used.reason(&plan.error_budget);
    let mut skipped = 0;
    for target in &batch.targets {
        let account = AccountId::parse(&target.account)
            .ok_or_else(|| Error::StateStoreFailed(format!("bad account {}", target.account)))?;
        let region = Region::new_unchecked(target.region.clone());
        for instance in target.instances.iter().filter(|i| i.is_patchable()) {
            patching::record_outcome(
                &hub.store,
                &plan.run_id,
                (&account, &region, &instance.instance_id),
                InstanceOutcome::Skipped,
                Some(&reason),
                &[],
            )
            .await?;
            skipped += 1;
        }
    }
    tracing::warn!(run_id = %plan.run_id, wave = request.wave_index, batch = request.batch, skipped, reason,
        "error budget exceeded: batch not sent");
    Ok(SendResult {
        batch: request.batch,
        commands: 0,
        reused: 0,
        instances: 0,
        unreachable_targets: 0,
        busy_instances: 0,
        budget_skipped_instances: skipped,
        unprotected_instances: 0,
        next_poll_seconds: hub.config.patching.poll_initial_seconds,
        attempt: 0,
        done: false,
        timed_out: false,
    })
}

/// The manifests of this wave in the runs this one resumes, newest first (a run that never got
/// to this wave has none).
async fn load_predecessors(hub: &Hub, resumes: &[String], wave_index: usize) -> Result<Vec<Predecessor>> {
    let mut predecessors = Vec::new();
    for run_id in resumes.iter().rev() {
        match hub.store.get_json::<WaveManifest>(&store::manifest_key(run_id, wave_index)).await {
            Ok(manifest) => predecessors.push(Predecessor { run_id: run_id.clone(), manifest }),
            Err(Error::NotFound(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(predecessors)
}

/// The batch an earlier run put `target` in: the same rule as the inventory's batching
/// (targets with patchable instances, in manifest order, `targets_per_batch` to a batch).
fn batch_of(manifest: &WaveManifest, account: &str, region: &str, per_batch: usize) -> Option<usize> {
    manifest
        .targets
        .iter()
        .filter(|t| t.failure.is_none() && t.instances.iter().any(|i| i.is_patchable()))
        .position(|t| t.account == account && t.region == region)
        .map(|position| position / per_batch.max(1))
}

/// Commands earlier runs sent to instances of `target`: (command id, run, instances), at most
/// one per instance, the newest run's first.
async fn adoptable_commands(
    hub: &Hub,
    ssm: &aws_sdk_ssm::Client,
    predecessors: &[Predecessor],
    wave_index: usize,
    (account, region): (&AccountId, &Region),
    instance_ids: &[String],
) -> Result<Vec<(String, String, Vec<String>)>> {
    let mut left: Vec<String> = instance_ids.to_vec();
    let mut adopted = Vec::new();
    for predecessor in predecessors {
        let Some(batch) =
            batch_of(&predecessor.manifest, account.as_str(), region.as_str(), hub.config.patching.targets_per_batch)
        else {
            continue;
        };
        let pk = store::run_pk(&predecessor.run_id);
        let chunks = (0..).map(|chunk| store::command_sk(wave_index, batch, account, region, chunk));
        for sk in chunks.take(ADOPTED_CHUNK_BASE) {
            let Some(item) = hub.store.get_item(&pk, &sk).await? else { break };
            let record = CommandRecord::from_item(&item)?;
            let command_id = match record.command_id.clone() {
                Some(id) => Some(id),
                // The earlier run died between claiming and recording: SSM knows if it sent.
                None => find_sent(ssm, &record, &patching::claim_comment(&predecessor.run_id, &sk)).await?,
            };
            let Some(command_id) = command_id else { continue };
            let covered: Vec<String> = left.iter().filter(|id| record.instance_ids.contains(id)).cloned().collect();
            if covered.is_empty() {
                continue;
            }
            left.retain(|id| !covered.contains(id));
            adopted.push((command_id, predecessor.run_id.clone(), covered));
        }
    }
    Ok(adopted)
}

async fn send_target(
    hub: &Hub,
    sessions: &SpokeSessions,
    plan: &RunPlan,
    request: &SendRequest,
    (predecessors, leases): (&[Predecessor], &Leases),
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
                    InstanceOutcome::Unreachable,
                    Some(&reason),
                    &[],
                )
                .await?;
            }
            tracing::warn!(%account, %region, %error, "target unreachable at send");
            return Ok(TargetSent { commands: 0, reused: 0, instances: 0, unreachable: true, busy: 0, unprotected: 0 });
        }
    };
    let ssm = aws_sdk_ssm::Client::new(&config);
    let mut ids: Vec<String> = target.instances.iter().map(|i| i.instance_id.clone()).collect();
    let mut sent =
        TargetSent { commands: 0, reused: 0, instances: ids.len(), unreachable: false, busy: 0, unprotected: 0 };
    let adopted = adoptable_commands(hub, &ssm, predecessors, request.wave_index, (&account, &region), &ids).await?;
    for (index, (command_id, from_run, instance_ids)) in adopted.into_iter().enumerate() {
        let sk = store::command_sk(request.wave_index, request.batch, &account, &region, ADOPTED_CHUNK_BASE + index);
        let record = CommandRecord {
            sk: sk.clone(),
            account: account.clone(),
            region: region.clone(),
            instance_ids: instance_ids.clone(),
            claimed_at: now_epoch_seconds(),
            command_id: Some(command_id.clone()),
            final_invocations: None,
        };
        let mut item = record.to_item(&store::run_pk(&plan.run_id), hub.store.expires_at());
        item.insert("adoptedFrom".to_owned(), s(&from_run));
        hub.store.put_item(item).await?;
        ids.retain(|id| !instance_ids.contains(id));
        sent.commands += 1;
        sent.reused += 1;
        tracing::info!(%account, %region, %command_id, from_run, instances = instance_ids.len(),
            "adopted the patch command of a resumed run instead of sending again");
    }
    if !plan.dry_run {
        let busy = lease_instances(hub, plan, leases, (&account, &region), &ids).await?;
        ids.retain(|id| !busy.contains(id));
        sent.instances -= busy.len();
        sent.busy = busy.len();
    }
    let snapshot_wave = plan.waves.get(request.wave_index).filter(|wave| wave.snapshot && !plan.dry_run);
    let ec2 = snapshot_wave.map(|_| aws_sdk_ec2::Client::new(&config));
    for (chunk, instance_ids) in ids.chunks(INSTANCES_PER_COMMAND).enumerate() {
        let sk = store::command_sk(request.wave_index, request.batch, &account, &region, chunk);
        let mut instance_ids = instance_ids.to_vec();
        // A chunk already claimed (a retry) keeps the instances its claim names: they were
        // protected then. Chunks are cut before snapshots, so a retry cuts them the same way.
        if let (Some(wave), Some(ec2)) = (snapshot_wave, &ec2)
            && hub.store.get_item(&store::run_pk(&plan.run_id), &sk).await?.is_none()
        {
            let protected =
                snapshots::protect_and_record(hub, ec2, (plan, &wave.name), (&account, &region), &instance_ids).await?;
            let unprotected = instance_ids.len() - protected.len();
            sent.instances -= unprotected;
            sent.unprotected += unprotected;
            instance_ids = protected;
            if instance_ids.is_empty() {
                continue;
            }
        }
        let reused = send_once(hub, &ssm, plan, &sk, &account, &region, &instance_ids).await?;
        sent.commands += 1;
        sent.reused += usize::from(reused);
    }
    Ok(sent)
}

/// Takes this run's lease on each instance (a retried send renews its own) and records every
/// instance another run holds as `SKIPPED` with `BusyInAnotherRun <runId>`; returns those.
async fn lease_instances(
    hub: &Hub,
    plan: &RunPlan,
    leases: &Leases,
    (account, region): (&AccountId, &Region),
    ids: &[String],
) -> Result<Vec<String>> {
    let leases =
        instance_lease::acquire_all(&hub.store, &plan.run_id, &leases.resumes, (account, region), ids, leases.seconds)
            .await?;
    let mut busy = Vec::new();
    for (id, lease) in ids.iter().cloned().zip(leases) {
        let Lease::Busy { holder_run_id, until } = lease else { continue };
        let reason = instance_lease::busy_reason(&holder_run_id);
        patching::record_outcome(
            &hub.store,
            &plan.run_id,
            (account, region, &id),
            InstanceOutcome::Skipped,
            Some(&reason),
            &[("busyRun", s(&holder_run_id))],
        )
        .await?;
        tracing::warn!(%account, %region, instance_id = %id, holder_run_id, lease_until = %format_epoch(until),
            "instance leased by another run: skipped, no command sent");
        busy.push(id);
    }
    Ok(busy)
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
    let claim = CommandRecord {
        sk: sk.to_owned(),
        account: account.clone(),
        region: region.clone(),
        instance_ids: instance_ids.to_vec(),
        claimed_at: now_epoch_seconds(),
        command_id: None,
        final_invocations: None,
    };
    // One call: the claim is written, or the one already there comes back (an earlier attempt,
    // or this put's own first try whose answer was lost and which the SDK retried): that one
    // may have a command behind it.
    let (record, claimed_before) =
        match hub.store.put_item_or_get_existing(claim.to_item(&pk, hub.store.expires_at())).await? {
            None => (claim, false),
            Some(item) => (CommandRecord::from_item(&item)?, true),
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
