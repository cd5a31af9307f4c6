//! PlanRun: the first step of every execution. Validates the run input (either seed shape) into a
//! [`RunPlan`], takes the run lock (one run per waves and scheduled time: see
//! [`ec2patch_core::run_lock`]), stores the plan in S3 for the later steps, records the run, and
//! returns a summary small enough to carry through the whole execution.
//!
//! Waves that name AWS Organizations OUs are resolved into accounts first
//! ([`organizations`]).
//!
//! A run refused by the lock fails with `DuplicateRun` and is recorded as such (`RUN` item with
//! `status = DUPLICATE` and the holder), without a plan: it patches nothing.

pub mod organizations;

use ec2patch_core::input::{plan_run, scheduled_time};
use ec2patch_core::run_lock::{self, LockRef, Renewal, RunLock};
use ec2patch_core::store::{self, ObjectRef, n, s};
use ec2patch_core::time::now_epoch_seconds;
use ec2patch_core::{Error, Hub, Result, RunPlan};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Batches the inline patch Map runs at once: its iterations share the execution's history.
pub const INLINE_BATCHES_AT_ONCE: u32 = 10;
/// Child executions the Distributed Map runs at once (each has at most one invocation in flight).
pub const DISTRIBUTED_BATCHES_AT_ONCE: u32 = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanRequest {
    /// The execution name: unique per run, used to key every record.
    pub run_id: String,
    /// The execution input, as given.
    pub input: Value,
}

/// What the state machine carries from wave to wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedRun {
    pub run_id: String,
    pub dry_run: bool,
    pub wave_count: usize,
    pub target_count: usize,
    pub wave_pause_seconds: u32,
    pub abort_on_issues: bool,
    /// The approval step's `TimeoutSecondsPath`.
    pub approval_timeout_seconds: u32,
    /// Where wave summaries are published (`null`: nowhere).
    pub sns_topic_arn: Option<String>,
    /// Whether each wave checks SSM Change Calendars before patching (the run names some and
    /// is not a dry run): the state machine skips CheckChangeFreeze otherwise.
    pub change_freeze: bool,
    /// The patch Maps' `MaxConcurrencyPath`: batches patched at once, inline (at most 10) and
    /// distributed (at most 100), lowered by the run's `maxConcurrentBatches`.
    pub inline_batch_concurrency: u32,
    pub distributed_batch_concurrency: u32,
    pub plan: ObjectRef,
    /// The run lock, which the state machine releases when the run ends.
    pub lock: LockRef,
}

pub async fn handle(hub: &Hub, request: PlanRequest) -> Result<PlannedRun> {
    let mut plan = plan_run(&request.run_id, &request.input, &hub.config.defaults)?;
    if plan.waves.iter().any(|wave| !wave.organizational_units.is_empty()) {
        // Resolved before the lock and stored in the plan: every step and a resumed run patch
        // exactly these accounts.
        let client = organizations::client(hub, &plan.run_id).await?;
        let account_waves = request.input.get("accountWaves").is_some();
        organizations::resolve(&client, &mut plan, |index| {
            if account_waves { format!("accountWaves[{index}]") } else { String::new() }
        })
        .await?;
    }
    let scheduled_time = scheduled_time(&request.input)?;
    let key = run_lock::lock_key(&plan, scheduled_time.as_deref());
    let lease = run_lock::lease_seconds(&hub.config, plan.wave_pause_seconds, Renewal::Planned);
    let lock = match run_lock::acquire(&hub.store, key, &plan, scheduled_time, lease).await {
        Ok(lock) => lock,
        Err(error @ Error::DuplicateRun { .. }) => {
            tracing::warn!(run_id = %plan.run_id, %error, "duplicate run refused");
            record_duplicate(hub, &plan, &error).await?;
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    // The plan (with the lock, for the steps that renew it) is written once the lock is ours: a
    // refused run leaves nothing a later step could pick up.
    let stored = run_lock::PlanWithLock { plan: &plan, run_lock: &lock };
    let plan_ref = hub.store.put_json(&store::plan_key(&plan.run_id), &stored).await?;
    record_run(hub, &plan, &lock).await?;
    tracing::info!(run_id = %plan.run_id, waves = plan.waves.len(), targets = plan.target_count(), dry_run = plan.dry_run,
        resumes = ?lock.resumes, "run planned");
    Ok(PlannedRun {
        run_id: plan.run_id.clone(),
        dry_run: plan.dry_run,
        wave_count: plan.waves.len(),
        target_count: plan.target_count(),
        wave_pause_seconds: plan.wave_pause_seconds,
        abort_on_issues: plan.abort_on_issues,
        approval_timeout_seconds: hub.config.approval_timeout_seconds,
        sns_topic_arn: plan.sns_topic_arn.clone(),
        change_freeze: !plan.change_calendars.is_empty() && !plan.dry_run,
        inline_batch_concurrency: plan
            .max_concurrent_batches
            .map_or(INLINE_BATCHES_AT_ONCE, |n| n.min(INLINE_BATCHES_AT_ONCE)),
        distributed_batch_concurrency: plan
            .max_concurrent_batches
            .map_or(DISTRIBUTED_BATCHES_AT_ONCE, |n| n.min(DISTRIBUTED_BATCHES_AT_ONCE)),
        plan: plan_ref,
        lock: lock.to_ref(),
    })
}

async fn record_run(hub: &Hub, plan: &RunPlan, lock: &RunLock) -> Result<()> {
    let wave_names: Vec<_> = plan.waves.iter().map(|w| s(w.name.clone())).collect();
    let resumes: Vec<_> = lock.resumes.iter().map(s).collect();
    let mut item: store::Item = [
        ("pk", s(store::run_pk(&plan.run_id))),
        ("sk", s("RUN")),
        ("runId", s(plan.run_id.clone())),
        ("status", s("RUNNING")),
        ("dryRun", aws_sdk_dynamodb::types::AttributeValue::Bool(plan.dry_run)),
        ("waveCount", n(plan.waves.len())),
        ("targetCount", n(plan.target_count())),
        ("waves", aws_sdk_dynamodb::types::AttributeValue::L(wave_names)),
        ("plannedAt", n(now_epoch_seconds())),
        ("lock", s(lock.name())),
        ("resumes", aws_sdk_dynamodb::types::AttributeValue::L(resumes)),
        ("ignoreGates", aws_sdk_dynamodb::types::AttributeValue::Bool(plan.ignore_gates)),
        ("expiresAt", hub.store.expires_at()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // The audit of who started the run (and so who overrode any gate).
    if let Some(who) = &plan.started_by {
        item.insert("startedBy".to_owned(), s(who.clone()));
    }
    hub.store.put_item(item).await
}

/// The refused run's record: what it was, and which run holds the lock.
async fn record_duplicate(hub: &Hub, plan: &RunPlan, error: &Error) -> Result<()> {
    let (lock, holder) = match error {
        Error::DuplicateRun { lock, holder, .. } => (lock.clone(), holder.clone()),
        _ => (String::new(), String::new()),
    };
    let item = [
        ("pk", s(store::run_pk(&plan.run_id))),
        ("sk", s("RUN")),
        ("runId", s(plan.run_id.clone())),
        ("status", s("DUPLICATE")),
        ("errorType", s(error.error_type())),
        ("error", s(error.to_string())),
        ("lock", s(lock)),
        ("duplicateOf", s(holder)),
        ("plannedAt", n(now_epoch_seconds())),
        ("expiresAt", hub.store.expires_at()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    hub.store.put_item(item).await
}
