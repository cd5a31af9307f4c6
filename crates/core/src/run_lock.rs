//! The run lock: at most one run patches the same waves (for the same scheduled time) at once.
//!
//! EventBridge delivers at least once, so one schedule can start two executions. PlanRun takes a
//! lock keyed by the waves (a fingerprint of their accounts, regions, tag filters and `dryRun`)
//! and the run input's `scheduledTime` (`MANUAL` for a run started by hand), with a lease:
//!
//! | pk                              | sk                     | what                         |
//! |---------------------------------|------------------------|------------------------------|
//! | `RUNLOCK#<hash>`                | `AT#<scheduled time>`  | a scheduled run's lock       |
//! | `RUNLOCK#<hash>`                | `MANUAL`               | the lock of hand-started runs|
//!
//! - The lock is one conditional `PutItem`: created if absent; otherwise the current holder is
//!   returned with the refusal (`ReturnValuesOnConditionCheckFailure`) and this module decides
//!   ([`decide`]): a live holder (lease in the future) refuses the run with `DuplicateRun`; an
//!   expired lease (the holder crashed or was stopped) is taken over, optimistically (the put is
//!   conditional on the holder and lease seen), and the new run *resumes* the old one: it records
//!   the old run ids (`resumes`) and SendSsmCommand adopts their patch commands instead of
//!   sending again.
//! - The lease is renewed by the run's own steps (PlanRun, SendApprovalRequest, SendSsmCommand),
//!   each time for as long as the run can legitimately go without the next renewal (the approval
//!   window; the command timeout and polls; plus [`crate::config::PatchSettings::run_lock_margin_seconds`]
//!   for the steps in between). A renewal is conditional on still holding the lock: a run that
//!   lost it (its lease ran out and another run took over) stops before sending anything.
//! - The margin is larger than any function's timeout, so when a lease has expired no invocation
//!   of the old run is still in flight: the takeover cannot race a late send.
//! - At the end the state machine releases the lock (`status = RELEASED`, conditional on the
//!   holder). A released `MANUAL` lock is free for the next hand-started run (a fresh run, no
//!   resume); a released scheduled lock keeps refusing that schedule time: a late duplicate
//!   delivery of an event whose run already ended must not patch again.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use serde::{Deserialize, Serialize};

use crate::config::HubConfig;
use crate::plan::RunPlan;
use crate::store::{Item, RunStore, n, s};
use crate::time::{format_epoch, now_epoch_seconds};
use crate::{Error, Result};

/// The lock item's `status`: held by a run (with a lease), or released by the state machine at
/// the end of the run (with `endedAs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockStatus {
    Held,
    Released,
}

impl LockStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LockStatus::Held => "HELD",
            LockStatus::Released => "RELEASED",
        }
    }

    /// The status as stored: only `RELEASED` frees the lock; anything else (the lock is written
    /// `HELD`) holds it.
    pub fn from_stored(value: Option<&str>) -> Self {
        if value == Some(LockStatus::Released.as_str()) { LockStatus::Released } else { LockStatus::Held }
    }
}

/// The sort key of the lock shared by runs started without a `scheduledTime`.
pub const MANUAL_SK: &str = "MANUAL";
/// A resume chain longer than this keeps only the most recent runs.
const MAX_RESUMED_RUNS: usize = 10;
/// Optimistic takeover attempts before giving up (each loses only to another run's write).
const ACQUIRE_ATTEMPTS: usize = 5;

/// Where the lock of a run lives, and what the run knows about it: stored by PlanRun with the
/// plan (`runLock` in `runs/<runId>/plan.json`, so the run's S3 writes stay as they were) for the
/// steps that renew it, and passed to the state machine (which releases it at the end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunLock {
    pub pk: String,
    pub sk: String,
    pub run_id: String,
    pub scheduled_time: Option<String>,
    /// The waves' names, for people reading the lock item.
    #[serde(default)]
    pub waves: Vec<String>,
    /// Earlier runs of the same lock that ended without releasing it (stopped, crashed), newest
    /// last: their patch commands are adopted, not sent again.
    pub resumes: Vec<String>,
    /// DynamoDB TTL (epoch seconds, as a string for the state machine's `N.$`).
    pub expires_at: String,
}

impl RunLock {
    pub fn name(&self) -> String {
        format!("{}/{}", self.pk, self.sk)
    }

    /// What the state machine carries to release the lock at the end.
    pub fn to_ref(&self) -> LockRef {
        LockRef { pk: self.pk.clone(), sk: self.sk.clone(), expires_at: self.expires_at.clone() }
    }
}

/// The lock's key and TTL, as the execution carries them (`$.run.lock`) to release it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockRef {
    pub pk: String,
    pub sk: String,
    /// DynamoDB TTL (epoch seconds, a string for the state machine's `N.$`).
    pub expires_at: String,
}

/// `plan.json` as PlanRun writes it: the plan plus the run's lock.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanWithLock<'a> {
    #[serde(flatten)]
    pub plan: &'a RunPlan,
    pub run_lock: &'a RunLock,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredLock {
    run_lock: Option<RunLock>,
}

/// The lock of `run_id` as PlanRun stored it; `None` for a plan stored without one (see
/// [`renew_for_run`]).
pub async fn load(store: &RunStore, run_id: &str) -> Result<Option<RunLock>> {
    let stored: StoredLock = store.get_json(&crate::store::plan_key(run_id)).await?;
    Ok(stored.run_lock)
}

/// The lock's key for `plan` (and the run input's normalised `scheduledTime`).
pub fn lock_key(plan: &RunPlan, scheduled_time: Option<&str>) -> (String, String) {
    // What makes two runs "the same": the instances they would patch and how. The run id, topic,
    // agent and pauses do not.
    let identity = serde_json::json!({
        "dryRun": plan.dry_run,
        "waves": plan.waves,
        "tagFilters": plan.tag_filters,
    })
    .to_string();
    let hash = crate::hash::fingerprint_128(identity.as_bytes());
    // Only the hash: the key travels in every state of the execution, which is kept small (the
    // lock item carries the wave names for people).
    let sk = scheduled_time.map_or_else(|| MANUAL_SK.to_owned(), |time| format!("AT#{time}"));
    (format!("RUNLOCK#{hash}"), sk)
}

/// The lock as last seen in DynamoDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub run_id: String,
    pub status: LockStatus,
    pub lease_expires_at: u64,
    pub resumes: Vec<String>,
    pub ended_as: Option<String>,
}

impl Holder {
    pub fn from_item(item: &Item) -> Option<Self> {
        let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned();
        Some(Self {
            run_id: text("runId")?,
            status: LockStatus::from_stored(text("status").as_deref()),
            lease_expires_at: item
                .get("leaseExpiresAt")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
            resumes: item
                .get("resumes")
                .and_then(|v| v.as_l().ok())
                .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
                .unwrap_or_default(),
            ended_as: text("endedAs"),
        })
    }
}

/// What to do about a lock as seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Take the lock, resuming these earlier runs (oldest first).
    Take { resumes: Vec<String> },
    /// It is already this run's (a retried PlanRun): renew it.
    Renew { resumes: Vec<String> },
    /// Another run has it, or this schedule time already ran: why.
    Refuse { holder: String, reason: String },
}

/// The lock rules, without I/O: see the module documentation.
pub fn decide(sk: &str, me: &str, seen: Option<&Holder>, now: u64) -> Verdict {
    let Some(holder) = seen else {
        return Verdict::Take { resumes: Vec::new() };
    };
    if holder.run_id == me {
        return Verdict::Renew { resumes: holder.resumes.clone() };
    }
    if holder.status == LockStatus::Released {
        if sk == MANUAL_SK {
            // The previous hand-started run ended properly: a new one is a new run.
            return Verdict::Take { resumes: Vec::new() };
        }
        return Verdict::Refuse {
            holder: holder.run_id.clone(),
            reason: format!(
                "the run for this scheduled time already ended ({}); start a run without scheduledTime to patch again",
                holder.ended_as.as_deref().unwrap_or("released")
            ),
        };
    }
    if holder.lease_expires_at > now {
        return Verdict::Refuse {
            holder: holder.run_id.clone(),
            reason: format!(
                "it is running (its lease runs until {}; a stopped run's lease expires then and a new run resumes it)",
                format_epoch(holder.lease_expires_at)
            ),
        };
    }
    // The holder stopped renewing (stopped, crashed, timed out): take over and resume it.
    let mut resumes = holder.resumes.clone();
    resumes.retain(|r| r != &holder.run_id && r != me);
    resumes.push(holder.run_id.clone());
    let keep = resumes.len().saturating_sub(MAX_RESUMED_RUNS);
    Verdict::Take { resumes: resumes.split_off(keep) }
}

/// How long a lease taken or renewed now must last, by the step renewing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// PlanRun: until the first wave's approval request or send.
    Planned,
    /// SendApprovalRequest: through the approval window.
    AwaitingApproval,
    /// SendSsmCommand: through the command timeout and the last poll.
    Patching,
}

/// The lease length (seconds) after `renewal`, for `plan` on this hub.
pub fn lease_seconds(config: &HubConfig, wave_pause_seconds: u32, renewal: Renewal) -> u64 {
    let patching = &config.patching;
    // Every renewal also covers the steps that run before the next one: inventory, analyses,
    // summary, report, and the pause between waves.
    let base = u64::from(patching.run_lock_margin_seconds) + u64::from(wave_pause_seconds);
    match renewal {
        Renewal::Planned => base,
        Renewal::AwaitingApproval => base + u64::from(config.approval_timeout_seconds),
        Renewal::Patching => base + u64::from(patching.command_timeout_seconds) + u64::from(patching.poll_max_seconds),
    }
}

fn lock_item(lock: &RunLock, lease_expires_at: u64, now: u64) -> Item {
    let mut item: Item = HashMap::from([
        ("pk".to_owned(), s(&lock.pk)),
        ("sk".to_owned(), s(&lock.sk)),
        ("runId".to_owned(), s(&lock.run_id)),
        ("status".to_owned(), s(LockStatus::Held.as_str())),
        ("leaseExpiresAt".to_owned(), n(lease_expires_at)),
        ("leaseUntil".to_owned(), s(format_epoch(lease_expires_at))),
        ("renewedAt".to_owned(), n(now)),
        ("resumes".to_owned(), AttributeValue::L(lock.resumes.iter().map(s).collect())),
        ("expiresAt".to_owned(), AttributeValue::N(lock.expires_at.clone())),
    ]);
    if let Some(time) = &lock.scheduled_time {
        item.insert("scheduledTime".to_owned(), s(time));
    }
    if !lock.waves.is_empty() {
        item.insert("waves".to_owned(), AttributeValue::L(lock.waves.iter().map(s).collect()));
    }
    item
}

/// Takes (or renews, or takes over) the lock for `run_id`, or fails with `DuplicateRun`.
pub async fn acquire(
    store: &RunStore,
    (pk, sk): (String, String),
    plan: &RunPlan,
    scheduled_time: Option<String>,
    lease_seconds: u64,
) -> Result<RunLock> {
    let run_id = plan.run_id.as_str();
    let mut seen: Option<Holder> = None;
    for _ in 0..ACQUIRE_ATTEMPTS {
        let now = now_epoch_seconds();
        let resumes = match decide(&sk, run_id, seen.as_ref(), now) {
            Verdict::Take { resumes } | Verdict::Renew { resumes } => resumes,
            Verdict::Refuse { holder, reason } => {
                return Err(Error::DuplicateRun { lock: format!("{pk}/{sk}"), holder, reason });
            }
        };
        let lock = RunLock {
            pk: pk.clone(),
            sk: sk.clone(),
            run_id: run_id.to_owned(),
            scheduled_time: scheduled_time.clone(),
            waves: plan.waves.iter().map(|w| w.name.clone()).collect(),
            resumes,
            expires_at: expires_at(store),
        };
        let mut put = store
            .dynamodb()
            .put_item()
            .table_name(store.table())
            .set_item(Some(lock_item(&lock, now + lease_seconds, now)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        put = match &seen {
            None => put.condition_expression("attribute_not_exists(pk)"),
            // Optimistic: only over exactly the holder (and lease) this decision was made on.
            // A released item carries no lease (the state machine writes it without one).
            Some(holder) => put
                .condition_expression(
                    "runId = :run AND #status = :status AND (leaseExpiresAt = :lease OR attribute_not_exists(leaseExpiresAt))",
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":run", s(&holder.run_id))
                .expression_attribute_values(":lease", n(holder.lease_expires_at))
                .expression_attribute_values(":status", s(holder.status.as_str())),
        };
        match put.send().await {
            Ok(_) => {
                tracing::info!(run_id, lock = %lock.name(), resumes = ?lock.resumes, lease_seconds, "run lock taken");
                return Ok(lock);
            }
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    seen = failed.item().and_then(Holder::from_item);
                    if seen.is_none() {
                        // Released and removed between our reads (TTL): start again from scratch.
                        tracing::info!(run_id, lock = %format!("{pk}/{sk}"), "run lock vanished, retrying");
                    }
                }
                _ => {
                    let context = format!("run lock {pk}/{sk} for run {run_id}");
                    return Err(crate::store::into_store_error(crate::aws::classify("PutItem", &context, error)));
                }
            },
        }
    }
    Err(Error::StateStoreFailed(format!(
        "run lock {pk}/{sk}: still contended after {ACQUIRE_ATTEMPTS} attempts (run {run_id})"
    )))
}

/// Extends this run's lease, or fails with `DuplicateRun` if the run no longer holds its lock
/// (so it must not send anything more).
pub async fn renew(store: &RunStore, lock: &RunLock, lease_seconds: u64) -> Result<()> {
    let now = now_epoch_seconds();
    let result = store
        .dynamodb()
        .put_item()
        .table_name(store.table())
        .set_item(Some(lock_item(lock, now + lease_seconds, now)))
        .condition_expression("runId = :run AND #status = :held")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":run", s(&lock.run_id))
        .expression_attribute_values(":held", s(LockStatus::Held.as_str()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(error) => match error.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                let holder = failed.item().and_then(Holder::from_item);
                Err(Error::DuplicateRun {
                    lock: lock.name(),
                    holder: holder.as_ref().map_or_else(|| "nobody".to_owned(), |h| h.run_id.clone()),
                    reason: format!(
                        "run {} lost its lock (its lease expired and it was taken over or released); it sends nothing more",
                        lock.run_id
                    ),
                })
            }
            _ => {
                let context = format!("run lock {} renewal for run {}", lock.name(), lock.run_id);
                Err(crate::store::into_store_error(crate::aws::classify("PutItem", &context, error)))
            }
        },
    }
}

/// Renews the lease of `run_id` by the lock stored with its plan. The lock is required: PlanRun
/// stores one with every plan, so a plan without one was not written by PlanRun, and a run that
/// cannot show its lock must not act (the fence holds for every run).
pub async fn renew_for_run(store: &RunStore, run_id: &str, lease_seconds: u64) -> Result<RunLock> {
    let lock = load(store, run_id).await?.ok_or_else(|| {
        Error::StateStoreFailed(format!(
            "the plan of run {run_id} has no run lock (PlanRun stores one with every plan); nothing is done without it"
        ))
    })?;
    renew(store, &lock, lease_seconds).await?;
    Ok(lock)
}

fn expires_at(store: &RunStore) -> String {
    match store.expires_at() {
        AttributeValue::N(at) => at,
        _ => (now_epoch_seconds() + 90 * 86_400).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::RunDefaults;
    use crate::input::{plan_run, scheduled_time};

    fn plan(input: serde_json::Value) -> RunPlan {
        plan_run("run-1", &input, &RunDefaults::default()).unwrap()
    }

    fn holder(run_id: &str, status: LockStatus, lease: u64, resumes: &[&str]) -> Holder {
        Holder {
            run_id: run_id.into(),
            status,
            lease_expires_at: lease,
            resumes: resumes.iter().map(|r| (*r).to_owned()).collect(),
            ended_as: Some("completed".into()),
        }
    }

    #[test]
    fn the_key_is_the_waves_and_the_scheduled_time() {
        let input = json!({"accountWaves": [{"name": "w1", "accounts": ["222222222222"]}], "scheduledTime": "2026-11-29T03:00:00Z"});
        let time = scheduled_time(&input).unwrap();
        assert_eq!(time.as_deref(), Some("2026-11-29T03:00:00Z"));
        let (pk, sk) = lock_key(&plan(input.clone()), time.as_deref());
        assert!(pk.starts_with("RUNLOCK#") && pk.len() == "RUNLOCK#".len() + 32, "{pk}");
        assert_eq!(sk, "AT#2026-11-29T03:00:00Z");

        // Same waves, another run id, topic or pause: the same lock.
        let other = plan_run(
            "run-2",
            &json!({"accountWaves": [{"name": "w1", "accounts": ["222222222222"]}], "wavePauseSeconds": 60}),
            &RunDefaults::default(),
        )
        .unwrap();
        assert_eq!(lock_key(&other, time.as_deref()).0, pk);
        // Other accounts, a dry run, another tag: another lock.
        for different in [
            json!({"accountWaves": [{"name": "w1", "accounts": ["333333333333"]}]}),
            json!({"accountWaves": [{"name": "w1", "accounts": ["222222222222"]}], "dryRun": true}),
            json!({"accountWaves": [{"name": "w1", "accounts": ["222222222222"]}], "tagFilters": {"Env": "prod"}}),
        ] {
            assert_ne!(lock_key(&plan(different), None).0, pk);
        }
        // A hand-started run has the wave's MANUAL lock.
        assert_eq!(lock_key(&other, None).1, MANUAL_SK);
    }

    #[test]
    fn scheduled_times_are_normalised_and_checked() {
        let at = |t: &str| scheduled_time(&json!({"scheduledTime": t}));
        assert_eq!(at("2026-11-29T03:00:00.000Z").unwrap().as_deref(), Some("2026-11-29T03:00:00Z"));
        assert_eq!(scheduled_time(&json!({})).unwrap(), None);
        for bad in ["tomorrow", "2026-13-01T00:00:00Z", ""] {
            match at(bad) {
                Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "scheduledTime"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // The run input accepts the field, and refuses a malformed one naming it.
        let ok = json!({"accounts": ["222222222222"], "scheduledTime": "2026-11-29T03:00:00Z"});
        assert!(plan_run("r", &ok, &RunDefaults::default()).is_ok());
        let bad = json!({"accounts": ["222222222222"], "scheduledTime": "soon"});
        match plan_run("r", &bad, &RunDefaults::default()) {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "scheduledTime"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_live_holder_refuses_and_an_expired_one_is_taken_over_and_resumed() {
        let now = 1_000;
        assert_eq!(decide("AT#t", "b", None, now), Verdict::Take { resumes: vec![] });
        match decide("AT#t", "b", Some(&holder("a", LockStatus::Held, now + 1, &[])), now) {
            Verdict::Refuse { holder, reason } => {
                assert_eq!(holder, "a");
                assert!(reason.contains("lease"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide("AT#t", "c", Some(&holder("b", LockStatus::Held, now, &["a"])), now),
            Verdict::Take { resumes: vec!["a".into(), "b".into()] },
            "an expired lease is taken over, and the chain of stopped runs is kept"
        );
        assert_eq!(
            decide("MANUAL", "b", Some(&holder("b", LockStatus::Held, now + 100, &["a"])), now),
            Verdict::Renew { resumes: vec!["a".into()] },
            "a retried PlanRun keeps its own lock"
        );
    }

    #[test]
    fn a_released_lock_frees_hand_started_runs_but_not_the_same_schedule() {
        let now = 1_000;
        assert_eq!(
            decide(MANUAL_SK, "b", Some(&holder("a", LockStatus::Released, now + 100, &[])), now),
            Verdict::Take { resumes: vec![] },
            "a new manual run after one that ended is a fresh run"
        );
        assert!(matches!(
            decide("AT#2026-11-29T03:00:00Z", "b", Some(&holder("a", LockStatus::Released, 0, &[])), now),
            Verdict::Refuse { .. }
        ));
    }

    #[test]
    fn resume_chains_are_bounded() {
        let long: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
        let refs: Vec<&str> = long.iter().map(String::as_str).collect();
        match decide("MANUAL", "me", Some(&holder("last", LockStatus::Held, 0, &refs)), 10) {
            Verdict::Take { resumes } => {
                assert_eq!(resumes.len(), MAX_RESUMED_RUNS);
                assert_eq!(resumes.last().map(String::as_str), Some("last"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_lock_travels_inside_plan_json_without_disturbing_the_plan() {
        let plan = plan(json!({"accounts": ["222222222222"]}));
        let lock = RunLock {
            pk: "RUNLOCK#manual#0".into(),
            sk: MANUAL_SK.into(),
            run_id: "run-1".into(),
            scheduled_time: None,
            waves: vec!["manual".into()],
            resumes: vec!["run-0".into()],
            expires_at: "1".into(),
        };
        let stored = serde_json::to_value(PlanWithLock { plan: &plan, run_lock: &lock }).unwrap();
        assert_eq!(
            serde_json::from_value::<RunPlan>(stored.clone()).unwrap(),
            plan,
            "readers of the plan see the plan"
        );
        assert_eq!(serde_json::from_value::<StoredLock>(stored).unwrap().run_lock, Some(lock));
        let older = serde_json::to_value(&plan).unwrap();
        assert_eq!(serde_json::from_value::<StoredLock>(older).unwrap().run_lock, None);
    }

    #[test]
    fn leases_cover_what_runs_until_the_next_renewal() {
        let mut config = crate::config::HubConfig::from_lookup(|name| match name {
            "EC2PATCH_TABLE" | "EC2PATCH_BUCKET" => Some("x".to_owned()),
            _ => None,
        })
        .unwrap();
        config.patching.run_lock_margin_seconds = 900;
        assert_eq!(lease_seconds(&config, 0, Renewal::Planned), 900);
        assert_eq!(lease_seconds(&config, 60, Renewal::AwaitingApproval), 900 + 60 + 14_400);
        assert_eq!(lease_seconds(&config, 0, Renewal::Patching), 900 + 7200 + 300);
        assert!(
            u64::from(config.patching.run_lock_margin_seconds) > 300,
            "the margin outlasts the longest function timeout (300 s)"
        );
    }
}
