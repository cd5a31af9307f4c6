//! PostEC2Verify: after a batch's commands finish, records each instance's final outcome from
//! what AWS says about it: the command invocation, EC2 status checks, SSM `PingStatus` and
//! `DescribeInstancePatchStates` (failed, missing, installed-pending-reboot counts). Then, once
//! per wave, sums the wave's records into the [`WaveOutcomes`] the analysis and report use.
//!
//! Outcomes: `PATCHED` (healthy or not), `SCANNED` (dry run), `FAILED` with the reason,
//! `TIMED_OUT`, `SKIPPED` (set at inventory), `UNREACHABLE` (set when the role stops working).

pub mod report;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::types::SummaryStatus;
use aws_sdk_ssm::types::InstanceInformationStringFilter;
use ec2patch_core::aws::AwsResultExt;
use ec2patch_core::error_budget;
use ec2patch_core::instance_lease;
use ec2patch_core::instance_records::{self, OutcomeUpdate, RecordKey};
use ec2patch_core::metrics::{self, Metric};
use ec2patch_core::patching::{self, CommandRecord, Invocation};
use ec2patch_core::status::{InstanceOutcome, InventoryStatus};
use ec2patch_core::store::{self, Item, ObjectRef};
use ec2patch_core::time::now_epoch_seconds;
use ec2patch_core::wave::{InstanceFailure, WaveOutcomes};
use ec2patch_core::{AccountId, Error, Hub, Region, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "step", rename_all = "camelCase")]
pub enum VerifyRequest {
    /// Verify one batch after its poll loop ended.
    #[serde(rename_all = "camelCase")]
    Batch { run_id: String, wave_index: usize, batch: usize, timed_out: bool },
    /// Sum up a wave after all its batches.
    #[serde(rename_all = "camelCase")]
    Wave { run_id: String, wave_index: usize },
    /// Write the run report (`status`: `completed` or `stopped`).
    #[serde(rename_all = "camelCase")]
    Run { run_id: String, status: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchVerified {
    pub batch: usize,
    pub patched: usize,
    pub failed: usize,
    pub timed_out: usize,
    pub unreachable: usize,
    pub unhealthy: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VerifyResponse {
    Batch(BatchVerified),
    Wave { outcomes: WaveOutcomes, report: ObjectRef },
    Run(report::ReportWritten),
}

pub async fn handle(hub: &Hub, request: VerifyRequest) -> Result<VerifyResponse> {
    match request {
        VerifyRequest::Batch { run_id, wave_index, batch, timed_out } => {
            verify_batch(hub, &run_id, wave_index, batch, timed_out).await.map(VerifyResponse::Batch)
        }
        VerifyRequest::Wave { run_id, wave_index } => {
            let (outcomes, report) = summarize_wave(hub, &run_id, wave_index).await?;
            Ok(VerifyResponse::Wave { outcomes, report })
        }
        VerifyRequest::Run { run_id, status } => {
            if status != "completed" && status != "stopped" {
                return Err(Error::invalid("status", format!("must be completed or stopped, got {status:?}")));
            }
            report::write_run_report(hub, &run_id, &status).await.map(VerifyResponse::Run)
        }
    }
}

/// What AWS says about one instance after its command.
#[derive(Debug, Clone, Default)]
struct Health {
    status_checks_ok: Option<bool>,
    ping: Option<String>,
    failed_patches: Option<i32>,
    missing: Option<i32>,
    pending_reboot: Option<i32>,
}

async fn verify_batch(
    hub: &Hub,
    run_id: &str,
    wave_index: usize,
    batch: usize,
    timed_out: bool,
) -> Result<BatchVerified> {
    let plan = hub.store.load_plan(run_id).await?;
    let records: Vec<CommandRecord> = hub
        .store
        .query_prefix(&store::run_pk(run_id), &store::batch_commands_prefix(wave_index, batch))
        .await?
        .iter()
        .map(CommandRecord::from_item)
        .collect::<Result<_>>()?;
    let sessions = hub.read_only_spoke_sessions(run_id);
    let mut verified = BatchVerified { batch, patched: 0, failed: 0, timed_out: 0, unreachable: 0, unhealthy: 0 };
    // Every outcome of the batch, written together once all are known (a BatchWriteItem per 25
    // instances, not an UpdateItem each); a retry after a failure here redoes the whole batch.
    let mut outcomes: Vec<OutcomeUpdate> = Vec::new();
    let update = |record: &CommandRecord, id: &str, outcome, reason: Option<String>, extra| OutcomeUpdate {
        key: record.record_key(wave_index, id),
        outcome,
        reason,
        extra,
    };
    for record in &records {
        let config = match sessions.config_for(&record.account, &record.region).await {
            Ok(config) => config,
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                let reason = format!("cannot reach the account to verify: {error}");
                for id in &record.instance_ids {
                    outcomes.push(update(record, id, InstanceOutcome::Unreachable, Some(reason.clone()), Vec::new()));
                }
                verified.unreachable += record.instance_ids.len();
                continue;
            }
        };
        let Some(command_id) = &record.command_id else {
            for id in &record.instance_ids {
                let reason = Some("the patch command was never sent".to_owned());
                outcomes.push(update(record, id, InstanceOutcome::Failed, reason, Vec::new()));
            }
            verified.failed += record.instance_ids.len();
            continue;
        };
        let ssm = aws_sdk_ssm::Client::new(&config);
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let context = record.context();
        // The poll that saw the command end kept its invocations on the record.
        let invocations = match &record.final_invocations {
            Some(invocations) => invocations.clone(),
            None => patching::list_invocations(&ssm, command_id, &context).await?,
        };
        let invocations: HashMap<String, Invocation> =
            invocations.into_iter().map(|i| (i.instance_id.clone(), i)).collect();
        // SSM's ping only adds to what an invocation says when it did not succeed: a successful
        // AWS-RunPatchBaseline reported from the instance after its reboot.
        let all_succeeded =
            record.instance_ids.iter().all(|id| invocations.get(id).is_some_and(|i| i.status == "Success"));
        let health = health(&ec2, (&ssm, !all_succeeded), &record.instance_ids, &context).await?;
        for id in &record.instance_ids {
            let invocation = invocations.get(id);
            let health = health.get(id).cloned().unwrap_or_default();
            let (result, reason, healthy) = judge(invocation, &health, plan.dry_run, timed_out);
            let mut extra: Vec<(&'static str, AttributeValue)> = vec![
                ("commandId", AttributeValue::S(command_id.clone())),
                ("invocationStatus", AttributeValue::S(invocation.map(|i| i.status.clone()).unwrap_or_default())),
                ("healthy", AttributeValue::Bool(healthy)),
            ];
            for (name, value) in [
                ("failedPatches", health.failed_patches),
                ("missingPatches", health.missing),
                ("pendingReboot", health.pending_reboot),
            ] {
                if let Some(value) = value {
                    extra.push((name, AttributeValue::N(value.to_string())));
                }
            }
            outcomes.push(update(record, id, result, reason, extra));
            match result {
                InstanceOutcome::Patched | InstanceOutcome::Scanned => verified.patched += 1,
                InstanceOutcome::TimedOut => verified.timed_out += 1,
                _ => verified.failed += 1,
            }
            if result.is_patched() && !healthy {
                verified.unhealthy += 1;
            }
        }
    }
    // Leases of the instances a command was meant for (unreachable accounts keep theirs until
    // they run out: whether their command ran cannot be known).
    let leased: Vec<(AccountId, Region, String)> = outcomes
        .iter()
        .filter(|o| o.outcome != InstanceOutcome::Unreachable)
        .map(|o| (o.key.account.clone(), o.key.region.clone(), o.key.instance_id.clone()))
        .collect();
    instance_records::record_outcomes(&hub.store, run_id, outcomes).await?;
    // The outcomes are on record: the instances are free for another run.
    if !plan.dry_run {
        let keys: Vec<instance_lease::InstanceKey<'_>> =
            leased.iter().map(|(account, region, id)| (account, region, id.as_str())).collect();
        instance_lease::release_all(&hub.store, run_id, &keys).await?;
    }
    if plan.error_budget.is_set() {
        record_batch_failures(hub, run_id, wave_index, batch, verified.failed + verified.timed_out).await?;
    }
    Ok(verified)
}

/// Sets this batch's failures on the wave's record, which SendSsmCommand sums against the error
/// budget before each later batch. A set, not an increment: a retried verification counts once.
async fn record_batch_failures(hub: &Hub, run_id: &str, wave_index: usize, batch: usize, failed: usize) -> Result<()> {
    hub.store
        .dynamodb()
        .update_item()
        .table_name(hub.store.table())
        .key("pk", AttributeValue::S(store::run_pk(run_id)))
        .key("sk", AttributeValue::S(store::wave_sk(wave_index)))
        .update_expression("SET #failures.#batch = :failed")
        .expression_attribute_names("#failures", error_budget::BATCH_FAILURES_ATTRIBUTE)
        .expression_attribute_names("#batch", batch.to_string())
        .expression_attribute_values(":failed", AttributeValue::N(failed.to_string()))
        .send()
        .await
        .aws_context("UpdateItem", || format!("run {run_id} wave {wave_index} batch {batch} failures"))
        .map_err(store::into_store_error)?;
    Ok(())
}

/// The outcome, its reason and whether the instance is healthy.
fn judge(
    invocation: Option<&Invocation>,
    health: &Health,
    dry_run: bool,
    timed_out: bool,
) -> (InstanceOutcome, Option<String>, bool) {
    let healthy = health.status_checks_ok != Some(false) && health.ping.as_deref().is_none_or(|p| p == "Online");
    let Some(invocation) = invocation else {
        return if timed_out {
            (
                InstanceOutcome::TimedOut,
                Some("SSM reported no invocation within the command timeout".to_owned()),
                healthy,
            )
        } else {
            (InstanceOutcome::Failed, Some("SSM reported no invocation for this instance".to_owned()), healthy)
        };
    };
    match invocation.status.as_str() {
        "Success" if dry_run => (InstanceOutcome::Scanned, None, healthy),
        "Success" => match health.failed_patches {
            Some(failed) if failed > 0 => {
                (InstanceOutcome::Failed, Some(format!("{failed} patches failed to install")), healthy)
            }
            _ if !healthy => {
                let why = match (health.status_checks_ok, health.ping.as_deref()) {
                    (Some(false), _) => "EC2 status checks are failing".to_owned(),
                    (_, Some(ping)) => format!("SSM agent is {ping}"),
                    _ => "unknown".to_owned(),
                };
                (InstanceOutcome::Patched, Some(format!("patched, but unhealthy afterwards: {why}")), false)
            }
            _ => (InstanceOutcome::Patched, None, true),
        },
        "TimedOut" => (
            InstanceOutcome::TimedOut,
            Some(format!("AWS-RunPatchBaseline timed out ({})", invocation.status_details)),
            healthy,
        ),
        "Cancelled" => (InstanceOutcome::Failed, Some("the patch command was cancelled".to_owned()), healthy),
        status if !invocation.is_terminal() => {
            (InstanceOutcome::TimedOut, Some(format!("still {status} when the command timeout passed")), healthy)
        }
        status => (
            InstanceOutcome::Failed,
            Some(format!("AWS-RunPatchBaseline {status} ({})", invocation.status_details)),
            healthy,
        ),
    }
}

/// Status checks, SSM ping and patch states for `ids`, in as few calls as the APIs allow.
async fn health(
    ec2: &aws_sdk_ec2::Client,
    (ssm, ask_ping): (&aws_sdk_ssm::Client, bool),
    ids: &[String],
    context: &str,
) -> Result<HashMap<String, Health>> {
    let mut health: HashMap<String, Health> = ids.iter().map(|id| (id.clone(), Health::default())).collect();
    let mut pages = ec2
        .describe_instance_status()
        .set_instance_ids(Some(ids.to_vec()))
        .include_all_instances(true)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for status in page.aws_context("DescribeInstanceStatus", || context.to_owned())?.instance_statuses() {
            let ok = |s: Option<&SummaryStatus>| {
                s.is_none_or(|s| {
                    matches!(s, SummaryStatus::Ok | SummaryStatus::NotApplicable | SummaryStatus::Initializing)
                })
            };
            if let Some(entry) = status.instance_id().and_then(|id| health.get_mut(id)) {
                entry.status_checks_ok = Some(
                    ok(status.instance_status().and_then(|s| s.status()))
                        && ok(status.system_status().and_then(|s| s.status())),
                );
            }
        }
    }
    let filter = InstanceInformationStringFilter::builder()
        .key("InstanceIds")
        .set_values(Some(ids.to_vec()))
        .build()
        .map_err(|e| Error::invalid("instanceIds", e.to_string()))?;
    if ask_ping {
        let mut pages = ssm.describe_instance_information().filters(filter).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.aws_context("DescribeInstanceInformation", || context.to_owned())?;
            for info in page.instance_information_list() {
                if let Some(entry) = info.instance_id().and_then(|id| health.get_mut(id)) {
                    entry.ping = info.ping_status().map(|p| p.as_str().to_owned());
                }
            }
        }
    }
    let mut pages = ssm.describe_instance_patch_states().set_instance_ids(Some(ids.to_vec())).into_paginator().send();
    while let Some(page) = pages.next().await {
        for state in page.aws_context("DescribeInstancePatchStates", || context.to_owned())?.instance_patch_states() {
            if let Some(entry) = health.get_mut(state.instance_id()) {
                entry.failed_patches = Some(state.failed_count());
                entry.missing = Some(state.missing_count());
                entry.pending_reboot = state.installed_pending_reboot_count();
            }
        }
    }
    Ok(health)
}

async fn summarize_wave(hub: &Hub, run_id: &str, wave_index: usize) -> Result<(WaveOutcomes, ObjectRef)> {
    let plan = hub.store.load_plan(run_id).await?;
    let wave = plan
        .waves
        .get(wave_index)
        .ok_or_else(|| Error::invalid("waveIndex", format!("run {run_id} has no wave {wave_index}")))?;
    let pk = store::run_pk(run_id);
    let number =
        |item: &Item, key: &str| item.get(key).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<usize>().ok());
    let text = |item: &Item, key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    let in_wave = |item: &Item| number(item, "wave") == Some(wave_index);
    let mut outcomes = WaveOutcomes {
        run_id: run_id.to_owned(),
        wave_index,
        wave_name: wave.name.clone(),
        dry_run: plan.dry_run,
        ..WaveOutcomes::default()
    };
    for target in hub.store.query_prefix(&pk, &format!("TARGET#{wave_index:03}#")).await? {
        outcomes.targets += 1;
        if InventoryStatus::parse(&text(&target, "status")) == Some(InventoryStatus::Failed) {
            outcomes.targets_failed += 1;
        }
    }
    let mut budget_skipped = 0;
    for mut item in instance_records::query(&hub.store, run_id).await?.into_iter().filter(in_wave) {
        let mut result = InstanceOutcome::parse(&text(&item, "outcome"));
        if result == Some(InstanceOutcome::Pending) {
            // Its batch never reached verification (the patch step failed for it): it was not
            // patched, and the record must say so rather than stay pending.
            let reason = "the patch step failed for this instance's batch (see the FAILURE#WAVE records)";
            if let Some(key) = RecordKey::of_record(&item) {
                instance_records::record_outcome(&hub.store, run_id, &key, InstanceOutcome::Failed, Some(reason), &[])
                    .await?;
            }
            item.insert("reason".to_owned(), AttributeValue::S(reason.to_owned()));
            result = Some(InstanceOutcome::Failed);
        }
        // An item without a known outcome is in no outcome's count.
        match result {
            Some(InstanceOutcome::Patched | InstanceOutcome::Scanned) => outcomes.patched += 1,
            Some(InstanceOutcome::Failed) => outcomes.failed += 1,
            Some(InstanceOutcome::TimedOut) => outcomes.timed_out += 1,
            Some(InstanceOutcome::Skipped) => {
                outcomes.skipped += 1;
                if text(&item, "reason").starts_with(error_budget::SKIP_REASON_PREFIX) {
                    budget_skipped += 1;
                }
            }
            Some(InstanceOutcome::Unreachable) => outcomes.unreachable += 1,
            Some(InstanceOutcome::Pending) | None => {}
        }
        if result.is_some_and(InstanceOutcome::was_attempted) && item.contains_key("commandId") {
            outcomes.attempted += 1;
        }
        if item.get("healthy").and_then(|v| v.as_bool().ok()) == Some(&false) {
            outcomes.unhealthy += 1;
        }
        outcomes.pending_reboot += number(&item, "pendingReboot").unwrap_or_default();
        // Compliance: patch states at inventory (before) and at verification (after).
        let compliance = &mut outcomes.compliance;
        if let (Some(missing), Some(failed)) = (number(&item, "missingBefore"), number(&item, "failedBefore")) {
            compliance.known_before += 1;
            compliance.missing_patches_before += missing;
            compliance.non_compliant_before += usize::from(missing > 0 || failed > 0);
        }
        if let (Some(missing), Some(failed)) = (number(&item, "missingPatches"), number(&item, "failedPatches")) {
            compliance.known_after += 1;
            compliance.missing_patches_after += missing;
            compliance.non_compliant_after += usize::from(missing > 0 || failed > 0);
        }
        if let Some(result) = result.filter(|r| r.is_failure())
            && outcomes.failures.len() < 10
        {
            outcomes.failures.push(InstanceFailure {
                account: text(&item, "account"),
                region: text(&item, "region"),
                instance_id: text(&item, "instanceId"),
                outcome: result.as_str().to_owned(),
                reason: text(&item, "reason"),
            });
        }
    }
    let wave_record = hub.store.get_item(&pk, &store::wave_sk(wave_index)).await?;
    // The budget against the wave's patchable instances, as the inventory counted them.
    let patchable = wave_record.as_ref().and_then(|item| number(item, "patchable")).unwrap_or(outcomes.attempted);
    outcomes.error_budget = plan
        .error_budget
        .use_of(outcomes.failed + outcomes.timed_out, patchable)
        .map(|used| error_budget::BudgetUse { skipped: budget_skipped, ..used });
    let report = hub.store.put_json(&format!("runs/{run_id}/waves/{wave_index:03}/outcomes.json"), &outcomes).await?;
    let started = wave_record.as_ref().and_then(|item| number(item, "startedAt")).map(|at| at as u64);
    let mut metrics = vec![
        Metric::count("PatchFailures", outcomes.failed + outcomes.timed_out),
        Metric::count("InstancesUnhealthy", outcomes.unhealthy),
        Metric::count("InstancesPatched", outcomes.patched),
        Metric::count("InstancesUnreachable", outcomes.unreachable),
        Metric::count("InstancesNonCompliantBefore", outcomes.compliance.non_compliant_before),
        Metric::count("InstancesNonCompliantAfter", outcomes.compliance.non_compliant_after),
    ];
    if outcomes.attempted > 0 {
        metrics.push(Metric {
            name: "PatchSuccessRate",
            value: 100.0 * outcomes.patched as f64 / outcomes.attempted as f64,
            unit: "Percent",
        });
    }
    if let Some(started) = started {
        metrics.push(Metric {
            name: "WaveDurationSeconds",
            value: now_epoch_seconds().saturating_sub(started) as f64,
            unit: "Seconds",
        });
    }
    metrics::emit(Some(&outcomes.wave_name), &metrics);
    Ok((outcomes, report))
}
