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
use ec2patch_core::approval::now_epoch_seconds;
use ec2patch_core::aws::AwsResultExt;
use ec2patch_core::metrics::{self, Metric};
use ec2patch_core::patching::{self, CommandRecord, Invocation, outcome};
use ec2patch_core::sessions::SessionCache;
use ec2patch_core::store::{self, Item, ObjectRef};
use ec2patch_core::wave::{BatchManifest, DiscoveredInstance};
use ec2patch_core::wave::{InstanceFailure, WaveOutcomes};
use ec2patch_core::{AccountId, Error, Hub, Region, Result};
use serde::{Deserialize, Serialize};

/// Spoke credentials kept in a warm container (the batches of a run share accounts).
static SESSIONS: SessionCache = SessionCache::new();

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
    // What the inventory recorded of each instance (the batch object has it): the outcomes are
    // written as whole records, 25 to a BatchWriteItem, instead of one UpdateItem each.
    let manifest: BatchManifest = hub.store.get_json(&store::batch_key(run_id, wave_index, batch)).await?;
    let discovered: HashMap<(&str, &str, &str), &DiscoveredInstance> = manifest
        .targets
        .iter()
        .flat_map(|t| {
            t.instances.iter().map(move |i| ((t.account.as_str(), t.region.as_str(), i.instance_id.as_str()), i))
        })
        .collect();
    let outcomes = Outcomes {
        pk: store::run_pk(run_id),
        wave_index,
        expires_at: hub.store.expires_at(),
        finished_at: now_epoch_seconds(),
        discovered,
        items: Vec::new(),
    };
    let mut outcomes = outcomes;
    let sessions = SESSIONS.sessions(hub, run_id);
    let mut verified = BatchVerified { batch, patched: 0, failed: 0, timed_out: 0, unreachable: 0, unhealthy: 0 };
    for record in &records {
        let config = match sessions.config_for(&record.account, &record.region).await {
            Ok(config) => config,
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                let reason = format!("cannot reach the account to verify: {error}");
                for id in &record.instance_ids {
                    outcomes.add(record, id, outcome::UNREACHABLE, Some(&reason), Vec::new());
                }
                verified.unreachable += record.instance_ids.len();
                continue;
            }
        };
        let Some(command_id) = &record.command_id else {
            for id in &record.instance_ids {
                outcomes.add(record, id, outcome::FAILED, Some("the patch command was never sent"), Vec::new());
            }
            verified.failed += record.instance_ids.len();
            continue;
        };
        let ssm = aws_sdk_ssm::Client::new(&config);
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let context = record.context();
        let invocations: HashMap<String, Invocation> = patching::list_invocations(&ssm, command_id, &context)
            .await?
            .into_iter()
            .map(|i| (i.instance_id.clone(), i))
            .collect();
        let health = health(&ec2, &ssm, &record.instance_ids, &context).await?;
        for id in &record.instance_ids {
            let invocation = invocations.get(id);
            let health = health.get(id).cloned().unwrap_or_default();
            let (result, reason, healthy) = judge(invocation, &health, plan.dry_run, timed_out);
            let mut extra: Vec<(&str, AttributeValue)> = vec![
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
            outcomes.add(record, id, result, reason.as_deref(), extra);
            match result {
                outcome::PATCHED | outcome::SCANNED => verified.patched += 1,
                outcome::TIMED_OUT => verified.timed_out += 1,
                _ => verified.failed += 1,
            }
            if (result == outcome::PATCHED || result == outcome::SCANNED) && !healthy {
                verified.unhealthy += 1;
            }
        }
    }
    hub.store.put_items(outcomes.items).await?;
    Ok(verified)
}

/// The batch's instance records with their outcomes, built whole (what the inventory recorded +
/// the outcome), to be written together.
struct Outcomes<'a> {
    pk: String,
    wave_index: usize,
    expires_at: AttributeValue,
    finished_at: u64,
    discovered: HashMap<(&'a str, &'a str, &'a str), &'a DiscoveredInstance>,
    items: Vec<Item>,
}

impl Outcomes<'_> {
    fn add(
        &mut self,
        record: &CommandRecord,
        instance_id: &str,
        result: &str,
        reason: Option<&str>,
        extra: Vec<(&str, AttributeValue)>,
    ) {
        let (account, region) = (&record.account, &record.region);
        let mut item = match self.discovered.get(&(account.as_str(), region.as_str(), instance_id)) {
            Some(instance) => ec2patch_core::wave::instance_record(
                &self.pk,
                self.wave_index,
                account,
                region,
                instance,
                &self.expires_at,
            ),
            None => HashMap::from([
                ("pk".to_owned(), store::s(&self.pk)),
                ("sk".to_owned(), store::s(store::instance_sk(account, region, instance_id))),
                ("wave".to_owned(), store::n(self.wave_index)),
                ("account".to_owned(), store::s(account.as_str())),
                ("region".to_owned(), store::s(region.as_str())),
                ("instanceId".to_owned(), store::s(instance_id)),
                ("expiresAt".to_owned(), self.expires_at.clone()),
            ]),
        };
        item.insert("outcome".to_owned(), store::s(result));
        item.insert("finishedAt".to_owned(), store::n(self.finished_at));
        match reason {
            Some(reason) => item.insert("reason".to_owned(), store::s(reason)),
            None => item.remove("reason"),
        };
        for (name, value) in extra {
            item.insert(name.to_owned(), value);
        }
        self.items.push(item);
    }
}

/// The outcome, its reason and whether the instance is healthy.
fn judge(
    invocation: Option<&Invocation>,
    health: &Health,
    dry_run: bool,
    timed_out: bool,
) -> (&'static str, Option<String>, bool) {
    let healthy = health.status_checks_ok != Some(false) && health.ping.as_deref().is_none_or(|p| p == "Online");
    let Some(invocation) = invocation else {
        return if timed_out {
            (outcome::TIMED_OUT, Some("SSM reported no invocation within the command timeout".to_owned()), healthy)
        } else {
            (outcome::FAILED, Some("SSM reported no invocation for this instance".to_owned()), healthy)
        };
    };
    match invocation.status.as_str() {
        "Success" if dry_run => (outcome::SCANNED, None, healthy),
        "Success" => match health.failed_patches {
            Some(failed) if failed > 0 => {
                (outcome::FAILED, Some(format!("{failed} patches failed to install")), healthy)
            }
            _ if !healthy => {
                let why = match (health.status_checks_ok, health.ping.as_deref()) {
                    (Some(false), _) => "EC2 status checks are failing".to_owned(),
                    (_, Some(ping)) => format!("SSM agent is {ping}"),
                    _ => "unknown".to_owned(),
                };
                (outcome::PATCHED, Some(format!("patched, but unhealthy afterwards: {why}")), false)
            }
            _ => (outcome::PATCHED, None, true),
        },
        "TimedOut" => (
            outcome::TIMED_OUT,
            Some(format!("AWS-RunPatchBaseline timed out ({})", invocation.status_details)),
            healthy,
        ),
        "Cancelled" => (outcome::FAILED, Some("the patch command was cancelled".to_owned()), healthy),
        status if !invocation.is_terminal() => {
            (outcome::TIMED_OUT, Some(format!("still {status} when the command timeout passed")), healthy)
        }
        status => {
            (outcome::FAILED, Some(format!("AWS-RunPatchBaseline {status} ({})", invocation.status_details)), healthy)
        }
    }
}

/// Status checks, SSM ping and patch states for `ids`, in as few calls as the APIs allow.
async fn health(
    ec2: &aws_sdk_ec2::Client,
    ssm: &aws_sdk_ssm::Client,
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
    let mut pages = ssm.describe_instance_information().filters(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        for info in page.aws_context("DescribeInstanceInformation", || context.to_owned())?.instance_information_list()
        {
            if let Some(entry) = info.instance_id().and_then(|id| health.get_mut(id)) {
                entry.ping = info.ping_status().map(|p| p.as_str().to_owned());
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
        if text(&target, "status") == "FAILED" {
            outcomes.targets_failed += 1;
        }
    }
    for mut item in hub.store.query_prefix(&pk, "INSTANCE#").await?.into_iter().filter(in_wave) {
        let mut result = text(&item, "outcome");
        if result == outcome::PENDING {
            // Its batch never reached verification (the patch step failed for it): it was not
            // patched, and the record must say so rather than stay pending.
            let (account, region, id) = (text(&item, "account"), text(&item, "region"), text(&item, "instanceId"));
            let reason = "the patch step failed for this instance's batch (see the FAILURE#WAVE records)";
            if let Some(account) = AccountId::parse(&account) {
                patching::record_outcome(
                    &hub.store,
                    run_id,
                    (&account, &Region::new_unchecked(region), &id),
                    outcome::FAILED,
                    Some(reason),
                    &[],
                )
                .await?;
            }
            item.insert("reason".to_owned(), AttributeValue::S(reason.to_owned()));
            result = outcome::FAILED.to_owned();
        }
        match result.as_str() {
            outcome::PATCHED | outcome::SCANNED => outcomes.patched += 1,
            outcome::FAILED => outcomes.failed += 1,
            outcome::TIMED_OUT => outcomes.timed_out += 1,
            outcome::SKIPPED => outcomes.skipped += 1,
            outcome::UNREACHABLE => outcomes.unreachable += 1,
            _ => {}
        }
        if matches!(result.as_str(), outcome::PATCHED | outcome::SCANNED | outcome::FAILED | outcome::TIMED_OUT)
            && item.contains_key("commandId")
        {
            outcomes.attempted += 1;
        }
        if item.get("healthy").and_then(|v| v.as_bool().ok()) == Some(&false) {
            outcomes.unhealthy += 1;
        }
        outcomes.pending_reboot += number(&item, "pendingReboot").unwrap_or_default();
        if matches!(result.as_str(), outcome::FAILED | outcome::TIMED_OUT | outcome::UNREACHABLE)
            && outcomes.failures.len() < 10
        {
            outcomes.failures.push(InstanceFailure {
                account: text(&item, "account"),
                region: text(&item, "region"),
                instance_id: text(&item, "instanceId"),
                outcome: result.clone(),
                reason: text(&item, "reason"),
            });
        }
    }
    let report = hub.store.put_json(&format!("runs/{run_id}/waves/{wave_index:03}/outcomes.json"), &outcomes).await?;
    let started = hub
        .store
        .get_item(&pk, &store::wave_sk(wave_index))
        .await?
        .and_then(|item| number(&item, "startedAt"))
        .map(|at| at as u64);
    let mut metrics = vec![
        Metric::count("PatchFailures", outcomes.failed + outcomes.timed_out),
        Metric::count("InstancesUnhealthy", outcomes.unhealthy),
        Metric::count("InstancesPatched", outcomes.patched),
        Metric::count("InstancesUnreachable", outcomes.unreachable),
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
