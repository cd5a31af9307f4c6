//! Pre-patch snapshots of one command's instances (a wave's `snapshot: true`), taken as the
//! spoke role before the command is sent. See [`ec2patch_core::snapshots`] for the tags and records.
//!
//! Retries take no second snapshot: the run's snapshots in the target are listed first (one
//! `DescribeSnapshots` by the run's tag) and an instance that has some keeps them.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::{
    CopyTagsFromSource, InstanceSpecification, ResourceType, SnapshotState, Tag, TagSpecification,
};
use ec2patch_core::aws::AwsResultExt;
use ec2patch_core::instance_lease;
use ec2patch_core::instance_records::{self, TargetRecords};
use ec2patch_core::snapshots::{self, DELETE_AFTER_TAG, INSTANCE_TAG, IndexEntry, RUN_TAG, WAVE_TAG};
use ec2patch_core::status::InstanceOutcome;
use ec2patch_core::time::{format_epoch, now_epoch_seconds};
use ec2patch_core::{AccountId, Hub, Region, Result, RunPlan};
use futures::StreamExt;

/// CreateSnapshots calls in flight at once for one command's instances.
const CREATE_CONCURRENCY: usize = 4;
/// How long to wait for a snapshot to reach `pending` (the point in time is fixed then, which is
/// all patching needs; `completed` can take hours).
pub const WAIT_BOUND: Duration = Duration::from_secs(60);
const WAIT_STEP: Duration = Duration::from_secs(2);

/// Which instances are protected (with their snapshot ids) and which are not (with why).
#[derive(Debug, Default)]
pub struct Protection {
    pub protected: BTreeMap<String, Vec<String>>,
    pub unprotected: BTreeMap<String, String>,
    /// Snapshots of the run that exist in the target, protecting an instance or not (one that
    /// never reached `pending` in time still needs the cleanup).
    pub snapshots_in_target: usize,
}

/// The snapshots one CreateSnapshots took: (snapshot id, state as answered).
type Taken = Vec<(String, Option<SnapshotState>)>;

/// What the snapshots are tagged with.
#[derive(Debug)]
pub struct SnapshotTags<'a> {
    pub run_id: &'a str,
    pub wave: &'a str,
    pub delete_after: u64,
}

/// Protects `instance_ids` before their command is sent: snapshots them ([`protect`]), records
/// each instance's snapshot ids, records each unprotected instance `SKIPPED` (reason
/// `SnapshotFailed: ...`) and frees its lease, and indexes the target's snapshots for the
/// cleanup. Returns the protected instances, in the order given: the only ones to patch.
pub async fn protect_and_record(
    hub: &Hub,
    ec2: &aws_sdk_ec2::Client,
    (plan, wave): (&RunPlan, &str),
    records: &TargetRecords,
    instance_ids: &[String],
) -> Result<Vec<String>> {
    let (account, region) = (&records.account, &records.region);
    let now = now_epoch_seconds();
    let delete_after = snapshots::delete_after(now, hub.config.patching.snapshot_retention_days);
    let tags = SnapshotTags { run_id: &plan.run_id, wave, delete_after };
    let protection = protect(ec2, &tags, (account, region), instance_ids, WAIT_BOUND).await?;
    for (instance_id, snapshot_ids) in &protection.protected {
        snapshots::record_on_instance(&hub.store, &plan.run_id, &records.key(instance_id), snapshot_ids).await?;
    }
    if protection.snapshots_in_target > 0 {
        let entry =
            IndexEntry { delete_after, account: account.clone(), region: region.clone(), run_id: plan.run_id.clone() };
        hub.store.put_item(entry.to_item()).await?;
    }
    for (instance_id, why) in &protection.unprotected {
        let reason = snapshots::failed_reason(why);
        instance_records::record_outcome(
            &hub.store,
            &plan.run_id,
            &records.key(instance_id),
            InstanceOutcome::Skipped,
            Some(&reason),
            &[],
        )
        .await?;
        instance_lease::release(&hub.store, &plan.run_id, (account, region, instance_id)).await?;
        tracing::warn!(%account, %region, %instance_id, reason, "no pre-patch snapshot: instance skipped, not patched");
    }
    tracing::info!(%account, %region, protected = protection.protected.len(), unprotected = protection.unprotected.len(),
        "pre-patch snapshots");
    Ok(instance_ids.iter().filter(|id| protection.protected.contains_key(*id)).cloned().collect())
}

/// Snapshots every volume of each of `instance_ids` (reusing the run's existing ones), and waits
/// at most [`WAIT_BOUND`] for the new ones to be `pending` or `completed`. A transient error
/// (throttling left after the SDK's retries) fails the call so the batch is retried; any other
/// failure leaves that instance unprotected.
pub async fn protect(
    ec2: &aws_sdk_ec2::Client,
    tags: &SnapshotTags<'_>,
    (account, region): (&AccountId, &Region),
    instance_ids: &[String],
    wait_bound: Duration,
) -> Result<Protection> {
    let context = |what: &str| format!("{what} (account {account} region {region})");
    let mut protection = Protection::default();
    let existing = existing_snapshots(ec2, tags.run_id, &context("the run's snapshots")).await?;
    protection.snapshots_in_target = existing.values().map(Vec::len).sum();
    let mut to_take = Vec::new();
    for id in instance_ids {
        match existing.get(id) {
            Some(ids) if !ids.is_empty() => {
                protection.protected.insert(id.clone(), ids.clone());
            }
            _ => to_take.push(id.clone()),
        }
    }
    let taken: Vec<(String, Result<Taken>)> = futures::stream::iter(to_take)
        .map(|id| async move {
            let result = create(ec2, tags, &id, &format!("instance {id} (account {account} region {region})")).await;
            (id, result)
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    let mut waiting: BTreeMap<String, (String, Option<SnapshotState>)> = BTreeMap::new();
    for (id, result) in taken {
        match result {
            Ok(snapshots) if snapshots.is_empty() => {
                protection.unprotected.insert(id, "the instance has no EBS volume to snapshot".to_owned());
            }
            Ok(snapshots) => {
                protection.snapshots_in_target += snapshots.len();
                for (snapshot_id, state) in &snapshots {
                    waiting.insert(snapshot_id.clone(), (id.clone(), state.clone()));
                }
                protection.protected.insert(id, snapshots.into_iter().map(|(snapshot_id, _)| snapshot_id).collect());
            }
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                protection.unprotected.insert(id, error.to_string());
            }
        }
    }
    wait_until_pending(ec2, &mut waiting, wait_bound, &context("waiting for snapshots")).await?;
    for (snapshot_id, (instance_id, state)) in waiting {
        let why = match state {
            Some(SnapshotState::Error) => format!("snapshot {snapshot_id} failed (state error)"),
            other => format!(
                "snapshot {snapshot_id} was not pending within {} s (state {})",
                wait_bound.as_secs(),
                other.as_ref().map_or("unknown", SnapshotState::as_str)
            ),
        };
        protection.protected.remove(&instance_id);
        protection.unprotected.entry(instance_id).or_insert(why);
    }
    Ok(protection)
}

/// The run's snapshots in this account and region by instance (those in `error` left out).
async fn existing_snapshots(
    ec2: &aws_sdk_ec2::Client,
    run_id: &str,
    context: &str,
) -> Result<BTreeMap<String, Vec<String>>> {
    let mut by_instance: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for snapshot in snapshots::of_run(ec2, run_id, context).await? {
        if snapshot.state() == Some(&SnapshotState::Error) {
            continue;
        }
        if let (Some(instance), Some(id)) = (snapshots::tag_value(&snapshot, INSTANCE_TAG), snapshot.snapshot_id()) {
            by_instance.entry(instance.to_owned()).or_default().push(id.to_owned());
        }
    }
    Ok(by_instance)
}

/// One crash-consistent set of snapshots of the instance's volumes.
async fn create(ec2: &aws_sdk_ec2::Client, tags: &SnapshotTags<'_>, instance_id: &str, context: &str) -> Result<Taken> {
    let tag = |key: &str, value: &str| Tag::builder().key(key).value(value).build();
    let output = ec2
        .create_snapshots()
        .instance_specification(InstanceSpecification::builder().instance_id(instance_id).build())
        .description(format!("ec2patch pre-patch snapshot: run {} wave {}", tags.run_id, tags.wave))
        .copy_tags_from_source(CopyTagsFromSource::Volume)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Snapshot)
                .tags(tag(RUN_TAG, tags.run_id))
                .tags(tag(WAVE_TAG, tags.wave))
                .tags(tag(INSTANCE_TAG, instance_id))
                .tags(tag(DELETE_AFTER_TAG, &format_epoch(tags.delete_after)))
                .build(),
        )
        .send()
        .await
        .aws_context("CreateSnapshots", || context.to_owned())?;
    Ok(output
        .snapshots()
        .iter()
        .filter_map(|snapshot| snapshot.snapshot_id().map(|id| (id.to_owned(), snapshot.state().cloned())))
        .collect())
}

/// Polls the snapshots not yet `pending`/`completed` until they are, one is in `error`, or the
/// bound passes; those left in `waiting` afterwards did not make it.
async fn wait_until_pending(
    ec2: &aws_sdk_ec2::Client,
    waiting: &mut BTreeMap<String, (String, Option<SnapshotState>)>,
    bound: Duration,
    context: &str,
) -> Result<()> {
    let started = tokio::time::Instant::now();
    loop {
        waiting.retain(|_, (_, state)| !matches!(state, Some(SnapshotState::Pending | SnapshotState::Completed)));
        // Nothing left, or only snapshots that failed for good: no point in waiting.
        let settled = waiting.values().all(|(_, state)| state == &Some(SnapshotState::Error));
        if settled || started.elapsed() >= bound {
            return Ok(());
        }
        tokio::time::sleep(WAIT_STEP.min(bound)).await;
        let ids: Vec<String> = waiting.keys().cloned().collect();
        let output = ec2
            .describe_snapshots()
            .set_snapshot_ids(Some(ids))
            .send()
            .await
            .aws_context("DescribeSnapshots", || context.to_owned())?;
        for snapshot in output.snapshots() {
            if let (Some(id), Some(state)) = (snapshot.snapshot_id(), snapshot.state())
                && let Some(entry) = waiting.get_mut(id)
            {
                entry.1 = Some(state.clone());
            }
        }
    }
}
