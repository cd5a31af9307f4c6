//! SendSsmCommand: sends `AWS-RunPatchBaseline` to one batch's patchable instances, target by
//! target, acting as each spoke's `PatchExecRole` (Step Functions task credentials cannot carry
//! an ExternalId, so the function assumes the role itself).
//!
//! Idempotent: each command (at most 50 instances) is claimed in DynamoDB before it is sent and
//! completed with its command id after (the batch's claims in one transaction per 100, its ids
//! in one BatchWriteItem per 25; its leases likewise taken 100 to a transaction across targets). A retried invocation reuses recorded commands, and a
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
use ec2patch_core::instance_records::{self, TargetRecords};
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

#[derive(Debug, Default)]
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
    let (plan, sessions, request, predecessors) = (&plan, &sessions, &request, &predecessors);
    // Per target, side by side: reach the account, adopt what resumed runs sent. Owned targets:
    // a borrowed item in a spawned-future stream trips the compiler's higher-ranked lifetime
    // inference (rust-lang/rust#102211).
    let prepared: Vec<std::result::Result<ReadyTarget, TargetSent>> = futures::stream::iter(batch.targets.clone())
        .map(|target| async move { prepare_target(hub, sessions, plan, request, predecessors, &target).await })
        .buffer_unordered(hub.config.inventory_concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let (mut ready, mut sent): (Vec<ReadyTarget>, Vec<TargetSent>) = (Vec::new(), Vec::new());
    for target in prepared {
        match target {
            Ok(target) => ready.push(target),
            Err(unreachable) => sent.push(unreachable),
        }
    }
    // The batch's leases at once, 100 to a transaction across targets.
    if !plan.dry_run {
        lease_instances(hub, plan, &leases, &mut ready).await?;
    }
    // Per target: snapshots first where the wave takes them, then its commands cut.
    let cut: Vec<(ReadyTarget, Vec<(CommandRecord, aws_sdk_ssm::Client)>)> = futures::stream::iter(ready)
        .map(|mut target| async move {
            let claims = cut_commands(hub, plan, request, &mut target).await?;
            Ok::<_, Error>((target, claims))
        })
        .buffer_unordered(hub.config.inventory_concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let (claims, clients): (Vec<CommandRecord>, Vec<aws_sdk_ssm::Client>) =
        cut.iter().flat_map(|(_, claims)| claims.iter().cloned()).unzip();
    sent.extend(cut.into_iter().map(|(target, _)| target.sent));
    // The batch's claims at once, then the commands side by side, then their ids recorded.
    let claimed = patching::claim_all(&hub.store, &plan.run_id, claims).await?;
    let (outcomes, failures): (Vec<_>, Vec<_>) = futures::stream::iter(claimed.into_iter().zip(clients))
        .map(|(claimed, ssm)| async move { send_claimed(hub, &ssm, plan, claimed).await })
        .buffer_unordered(hub.config.inventory_concurrency)
        .collect::<Vec<Result<Sent>>>()
        .await
        .into_iter()
        .partition(Result::is_ok);
    let outcomes: Vec<Sent> = outcomes.into_iter().flatten().collect();
    // What was sent is recorded even when another command failed (a retry then reuses it
    // without asking SSM).
    let completed: Vec<CommandRecord> =
        outcomes.iter().filter(|sent| sent.to_record).map(|sent| sent.record.clone()).collect();
    patching::complete_all(&hub.store, &plan.run_id, &completed).await?;
    if let Some(Err(error)) = failures.into_iter().next() {
        return Err(error);
    }
    let commands = outcomes.len();
    let reused = outcomes.iter().filter(|sent| sent.reused).count();
    let result = SendResult {
        batch: request.batch,
        commands: commands + sent.iter().map(|t| t.commands).sum::<usize>(),
        reused: reused + sent.iter().map(|t| t.reused).sum::<usize>(),
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
        let records = target_records(target, request.wave_index)?;
        for instance in target.instances.iter().filter(|i| i.is_patchable()) {
            instance_records::record_outcome(
                &hub.store,
                &plan.run_id,
                &records.key(&instance.instance_id),
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

/// A target ready to lease and send to: reachable, with what resumed runs already sent adopted.
struct ReadyTarget {
    records: TargetRecords,
    ssm: aws_sdk_ssm::Client,
    /// EC2 in the spoke, for a wave that snapshots first.
    ec2: Option<aws_sdk_ec2::Client>,
    /// The instances left to send to.
    ids: Vec<String>,
    sent: TargetSent,
}

/// Reaches the target's account and adopts the commands resumed runs sent to its instances; an
/// unreachable account's instances are recorded `UNREACHABLE` (then `Err` holds what was done).
async fn prepare_target(
    hub: &Hub,
    sessions: &SpokeSessions,
    plan: &RunPlan,
    request: &SendRequest,
    predecessors: &[Predecessor],
    target: &TargetManifest,
) -> Result<std::result::Result<ReadyTarget, TargetSent>> {
    let records = target_records(target, request.wave_index)?;
    let (account, region) = (records.account.clone(), records.region.clone());
    let config = match sessions.config_for(&account, &region).await {
        Ok(config) => config,
        Err(error) if error.is_transient() => return Err(error),
        Err(error) => {
            // The role worked at inventory time but not now (revoked, SCP, deleted stack): the
            // instances cannot be patched; say so on each of them.
            let reason = format!("cannot reach the account to send the patch command: {error}");
            for instance in &target.instances {
                instance_records::record_outcome(
                    &hub.store,
                    &plan.run_id,
                    &records.key(&instance.instance_id),
                    InstanceOutcome::Unreachable,
                    Some(&reason),
                    &[],
                )
                .await?;
            }
            tracing::warn!(%account, %region, %error, "target unreachable at send");
            return Ok(Err(TargetSent { unreachable: true, ..TargetSent::default() }));
        }
    };
    let ssm = aws_sdk_ssm::Client::new(&config);
    let mut ids: Vec<String> = target.instances.iter().map(|i| i.instance_id.clone()).collect();
    let mut sent = TargetSent { instances: ids.len(), ..TargetSent::default() };
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
            record_parts: records.parts,
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
    let snapshots = plan.waves.get(request.wave_index).is_some_and(|wave| wave.snapshot && !plan.dry_run);
    let ec2 = snapshots.then(|| aws_sdk_ec2::Client::new(&config));
    Ok(Ok(ReadyTarget { records, ssm, ec2, ids, sent }))
}

/// Where the target's instance records live; a malformed account id is a broken manifest.
fn target_records(target: &TargetManifest, wave_index: usize) -> Result<TargetRecords> {
    target.records(wave_index).ok_or_else(|| Error::StateStoreFailed(format!("bad account {}", target.account)))
}

/// Takes this run's lease on every instance of the batch at once (a retried send renews its own)
/// and records every instance another run holds as `SKIPPED` with `BusyInAnotherRun <runId>`;
/// those are taken out of their targets.
async fn lease_instances(hub: &Hub, plan: &RunPlan, leases: &Leases, targets: &mut [ReadyTarget]) -> Result<()> {
    let keys: Vec<instance_lease::InstanceKey<'_>> = targets
        .iter()
        .flat_map(|t| t.ids.iter().map(|id| (&t.records.account, &t.records.region, id.as_str())))
        .collect();
    let taken = instance_lease::acquire_all(&hub.store, &plan.run_id, &leases.resumes, &keys, leases.seconds).await?;
    let mut taken = taken.into_iter();
    for target in targets.iter_mut() {
        let mut busy = Vec::new();
        for id in &target.ids {
            let Some(Lease::Busy { holder_run_id, until }) = taken.next() else { continue };
            let reason = instance_lease::busy_reason(&holder_run_id);
            instance_records::record_outcome(
                &hub.store,
                &plan.run_id,
                &target.records.key(id),
                InstanceOutcome::Skipped,
                Some(&reason),
                &[("busyRun", s(&holder_run_id))],
            )
            .await?;
            let (account, region) = (&target.records.account, &target.records.region);
            tracing::warn!(%account, %region, instance_id = %id, holder_run_id, lease_until = %format_epoch(until),
                "instance leased by another run: skipped, no command sent");
            busy.push(id.clone());
        }
        target.ids.retain(|id| !busy.contains(id));
        target.sent.instances -= busy.len();
        target.sent.busy = busy.len();
    }
    Ok(())
}

/// Cuts the target's instances into commands of at most 50, after their snapshots in a wave that
/// takes them: the claims to make, each with the SSM client to send it with.
async fn cut_commands(
    hub: &Hub,
    plan: &RunPlan,
    request: &SendRequest,
    target: &mut ReadyTarget,
) -> Result<Vec<(CommandRecord, aws_sdk_ssm::Client)>> {
    let (account, region) = (target.records.account.clone(), target.records.region.clone());
    let mut claims = Vec::new();
    for (chunk, instance_ids) in target.ids.chunks(INSTANCES_PER_COMMAND).enumerate() {
        let sk = store::command_sk(request.wave_index, request.batch, &account, &region, chunk);
        let mut instance_ids = instance_ids.to_vec();
        // A chunk already claimed (a retry) keeps the instances its claim names: they were
        // protected then. Chunks are cut before snapshots, so a retry cuts them the same way.
        if let (Some(wave), Some(ec2)) = (plan.waves.get(request.wave_index), &target.ec2)
            && hub.store.get_item(&store::run_pk(&plan.run_id), &sk).await?.is_none()
        {
            let protected =
                snapshots::protect_and_record(hub, ec2, (plan, &wave.name), &target.records, &instance_ids).await?;
            let unprotected = instance_ids.len() - protected.len();
            target.sent.instances -= unprotected;
            target.sent.unprotected += unprotected;
            instance_ids = protected;
            if instance_ids.is_empty() {
                continue;
            }
        }
        let claim = CommandRecord {
            sk,
            account: account.clone(),
            region: region.clone(),
            instance_ids,
            claimed_at: now_epoch_seconds(),
            command_id: None,
            final_invocations: None,
            record_parts: target.records.parts,
        };
        claims.push((claim, target.ssm.clone()));
    }
    Ok(claims)
}

/// A claim's command after [`send_claimed`].
struct Sent {
    /// The record, with its command id.
    record: CommandRecord,
    /// An earlier attempt's command, not sent now.
    reused: bool,
    /// The id is not on the record in DynamoDB yet.
    to_record: bool,
}

/// Sends the command of one claim unless it was sent before (the claim has its id, or SSM has a
/// command with its Comment).
async fn send_claimed(
    hub: &Hub,
    ssm: &aws_sdk_ssm::Client,
    plan: &RunPlan,
    (mut record, claimed_before): (CommandRecord, bool),
) -> Result<Sent> {
    if record.command_id.is_some() {
        return Ok(Sent { record, reused: true, to_record: false });
    }
    let comment = patching::claim_comment(&plan.run_id, &record.sk);
    // Only an earlier attempt's claim can have a command behind it: look it up then, not on
    // every first send.
    if claimed_before && let Some(command_id) = find_sent(ssm, &record, &comment).await? {
        record.command_id = Some(command_id);
        return Ok(Sent { record, reused: true, to_record: true });
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
    tracing::info!(account = %record.account, region = %record.region, %command_id,
        instances = record.instance_ids.len(), operation, "SendCommand");
    record.command_id = Some(command_id);
    Ok(Sent { record, reused: false, to_record: true })
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
