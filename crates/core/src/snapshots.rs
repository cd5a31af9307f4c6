//! Pre-patch snapshots (a wave's `snapshot: true`): how they are tagged, recorded and found again.
//!
//! SendSsmCommand snapshots each instance's EBS volumes (`ec2:CreateSnapshots`, crash-consistent
//! across the instance's volumes) as the spoke role before it sends the patch command, tags every
//! snapshot with [`RUN_TAG`], [`WAVE_TAG`], [`INSTANCE_TAG`] and [`DELETE_AFTER_TAG`], records the
//! ids on the instance record ([`SNAPSHOT_IDS_ATTRIBUTE`]) and writes one index item per target
//! ([`IndexEntry`]) that the hub's scheduled cleanup (ApprovalMonitor) queries once it is due.
//! The spoke role may delete only snapshots that carry [`DELETE_AFTER_TAG`]: removing that tag from
//! a snapshot keeps it for good.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::AwsResultExt;
use crate::plan::{AccountId, Region};
use crate::store::{Item, RunStore, n, number_attr, s, text_attr};
use crate::time::format_epoch;
use crate::{Error, Result};

pub const RUN_TAG: &str = "ec2patch:run-id";
pub const WAVE_TAG: &str = "ec2patch:wave";
pub const INSTANCE_TAG: &str = "ec2patch:instance-id";
/// RFC 3339 UTC: the cleanup deletes the snapshot once this time has passed.
pub const DELETE_AFTER_TAG: &str = "ec2patch:delete-after";
/// The instance record's list of its snapshot ids.
pub const SNAPSHOT_IDS_ATTRIBUTE: &str = "snapshotIds";
/// Reasons of instances skipped because their snapshot failed start with this.
pub const FAILED_REASON: &str = "SnapshotFailed";
/// The partition of the cleanup's index items.
pub const INDEX_PK: &str = "SNAPSHOTS";

const SECONDS_PER_DAY: u64 = 86_400;

/// When snapshots taken at `now` may be deleted.
pub fn delete_after(now: u64, retention_days: u32) -> u64 {
    now.saturating_add(u64::from(retention_days) * SECONDS_PER_DAY)
}

/// The epoch seconds of a [`DELETE_AFTER_TAG`] value (`None`: not RFC 3339, which the cleanup
/// treats as "keep").
pub fn parse_delete_after(value: &str) -> Option<u64> {
    aws_smithy_types::DateTime::from_str(value, aws_smithy_types::date_time::Format::DateTime)
        .ok()
        .and_then(|time| u64::try_from(time.secs()).ok())
}

/// `SnapshotFailed: <why>`, the reason an unprotected instance is skipped with.
pub fn failed_reason(why: &str) -> String {
    format!("{FAILED_REASON}: {why}")
}

/// One target's snapshots of one run, due for cleanup at `delete_after`. Items have no TTL
/// attribute: they must outlive the run records when the retention is longer than their TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub delete_after: u64,
    pub account: AccountId,
    pub region: Region,
    pub run_id: String,
}

impl IndexEntry {
    /// Sorted by due time, so the cleanup reads only what is due.
    pub fn sk(&self) -> String {
        format!("{:010}#{}#{}#{}", self.delete_after, self.account, self.region, self.run_id)
    }

    pub fn to_item(&self) -> Item {
        Item::from([
            ("pk".to_owned(), s(INDEX_PK)),
            ("sk".to_owned(), s(self.sk())),
            ("account".to_owned(), s(self.account.as_str())),
            ("region".to_owned(), s(self.region.as_str())),
            ("runId".to_owned(), s(&self.run_id)),
            ("deleteAfter".to_owned(), n(self.delete_after)),
            ("deleteAfterText".to_owned(), s(format_epoch(self.delete_after))),
        ])
    }

    pub fn from_item(item: &Item) -> Result<Self> {
        let sk = text_attr(item, "sk");
        let malformed = || Error::StateStoreFailed(format!("malformed snapshot index item {sk:?}"));
        Ok(Self {
            delete_after: number_attr(item, "deleteAfter").ok_or_else(malformed)?,
            account: AccountId::parse(&text_attr(item, "account")).ok_or_else(malformed)?,
            region: Region::new_unchecked(text_attr(item, "region")),
            run_id: Some(text_attr(item, "runId")).filter(|r| !r.is_empty()).ok_or_else(malformed)?,
        })
    }
}

/// Index items due at or before `now`, oldest first (one Query, paginated).
pub async fn due_entries(store: &RunStore, now: u64) -> Result<Vec<IndexEntry>> {
    let mut entries = Vec::new();
    let mut pages = store
        .dynamodb()
        .query()
        .table_name(store.table())
        .key_condition_expression("pk = :pk AND sk <= :due")
        .expression_attribute_values(":pk", s(INDEX_PK))
        // '~' sorts after every character of an account, region or run id.
        .expression_attribute_values(":due", s(format!("{now:010}#~")))
        .into_paginator()
        .items()
        .send();
    while let Some(item) = pages.next().await {
        let item =
            item.aws_context("Query", || "the snapshot index".to_owned()).map_err(crate::store::into_store_error)?;
        entries.push(IndexEntry::from_item(&item)?);
    }
    Ok(entries)
}

/// The run's snapshots in the account and region `ec2` reaches: this account's own, found by
/// the run's tag (one paginated `DescribeSnapshots`).
pub async fn of_run(
    ec2: &aws_sdk_ec2::Client,
    run_id: &str,
    context: &str,
) -> Result<Vec<aws_sdk_ec2::types::Snapshot>> {
    let mut snapshots = Vec::new();
    let mut pages = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(aws_sdk_ec2::types::Filter::builder().name(format!("tag:{RUN_TAG}")).values(run_id).build())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.aws_context("DescribeSnapshots", || context.to_owned())?;
        snapshots.extend(page.snapshots().iter().cloned());
    }
    Ok(snapshots)
}

/// The value of the snapshot's tag `key`.
pub fn tag_value<'a>(snapshot: &'a aws_sdk_ec2::types::Snapshot, key: &str) -> Option<&'a str> {
    snapshot.tags().iter().find(|tag| tag.key() == Some(key)).and_then(|tag| tag.value())
}

/// Sets the instance's snapshot ids on its record.
pub async fn record_on_instance(
    store: &RunStore,
    run_id: &str,
    key: &crate::instance_records::RecordKey,
    snapshot_ids: &[String],
) -> Result<()> {
    let ids = AttributeValue::L(snapshot_ids.iter().map(s).collect());
    crate::instance_records::update_record(store, run_id, key, &[(SNAPSHOT_IDS_ATTRIBUTE, ids)], &[]).await
}

/// The snapshot ids on an instance record (empty when none were taken).
pub fn ids_on_record(item: &Item) -> Vec<String> {
    item.get(SNAPSHOT_IDS_ATTRIBUTE)
        .and_then(|v| v.as_l().ok())
        .map(|ids| ids.iter().filter_map(|id| id.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_after_round_trips_through_its_tag() {
        let due = delete_after(1_795_460_400, 7);
        assert_eq!(due, 1_795_460_400 + 7 * 86_400);
        assert_eq!(parse_delete_after(&format_epoch(due)), Some(due));
        assert_eq!(parse_delete_after("next tuesday"), None);
    }

    #[test]
    fn index_entries_sort_by_due_time_and_round_trip() {
        let entry = |due: u64| IndexEntry {
            delete_after: due,
            account: AccountId::parse("222222222222").unwrap(),
            region: Region::new_unchecked("eu-west-1"),
            run_id: "run-1".to_owned(),
        };
        assert!(entry(999).sk() < entry(1_000).sk());
        assert!(entry(1_000).sk() <= format!("{:010}#~", 1_000));
        assert!(entry(1_001).sk() > format!("{:010}#~", 1_000));
        assert_eq!(IndexEntry::from_item(&entry(5).to_item()).unwrap(), entry(5));
        assert!(IndexEntry::from_item(&Item::new()).is_err());
    }
}
