//! Every inventoried instance and its outcome, kept in groups: one item per target of a wave
//! (per part of it, for targets of more than [`PART_SIZE`] instances) holding a map from
//! instance id to that instance's record.
//!
//! Why groups and not an item per instance: DynamoDB calls are per item batch (25 items a
//! BatchWriteItem), so an item per instance made the inventory's and the verification's writes
//! grow with instances (4 calls per target at 50 instances); a group per target keeps them flat,
//! one item per target whatever its size. Readers see one record per instance all the same:
//! [`query`] flattens the groups into the per-instance items they always saw (`instanceId`,
//! `account`, `region`, `wave`, `outcome`, ...).
//!
//! A target's instances go to its parts by a hash of the instance id, so a writer that knows the
//! target's part count ([`crate::wave::TargetManifest::record_parts`], carried on the command
//! records) finds an instance's group without reading anything. A group belongs to one target, and
//! a target to one patch batch, so within a batch only that batch's steps write its groups, one
//! after the other (send, then verify): [`record_outcomes`] can read, change and write them whole.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::AwsResultExt;
use crate::hash;
use crate::plan::{AccountId, Region};
use crate::status::InstanceOutcome;
use crate::store::{Item, RunStore, n, run_pk, s};
use crate::{Error, Result};

/// Sort key prefix of the groups.
pub const PREFIX: &str = "INSTANCES#";
/// Instances per group at most (on average): a record is a few hundred bytes, so a group stays
/// far below DynamoDB's 400 KB item limit.
pub const PART_SIZE: usize = 200;
/// The group's attribute holding the map from instance id to record.
const RECORDS: &str = "records";
/// The attributes a flattened record takes from its group.
const GROUP_ATTRIBUTES: [&str; 4] = ["pk", "wave", "account", "region"];

/// How many groups a target of `instances` instances is split into.
pub fn parts_for(instances: usize) -> u32 {
    u32::try_from(instances.div_ceil(PART_SIZE).max(1)).unwrap_or(u32::MAX)
}

/// The sort key of a target's group `part`.
pub fn group_sk(wave_index: usize, account: &str, region: &str, part: u32) -> String {
    format!("{PREFIX}{wave_index:03}#{account}#{region}#{part:03}")
}

/// Where the records of one target's instances live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRecords {
    pub wave_index: usize,
    pub account: AccountId,
    pub region: Region,
    /// How many groups the target's records are in ([`parts_for`] its instance count).
    pub parts: u32,
}

impl TargetRecords {
    pub fn key(&self, instance_id: &str) -> RecordKey {
        RecordKey::new(self.wave_index, (&self.account, &self.region), self.parts, instance_id)
    }
}

/// Where one instance's record lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub wave_index: usize,
    pub account: AccountId,
    pub region: Region,
    pub part: u32,
    pub instance_id: String,
}

impl RecordKey {
    /// The record of `instance_id` in a target whose instances are split into `parts` groups.
    pub fn new(wave_index: usize, (account, region): (&AccountId, &Region), parts: u32, instance_id: &str) -> Self {
        let part = (hash::fnv1a(hash::FNV_OFFSET_BASIS, instance_id.as_bytes()) % u64::from(parts.max(1))) as u32;
        Self { wave_index, account: account.clone(), region: region.clone(), part, instance_id: instance_id.to_owned() }
    }

    /// The key of a record as [`query`] returns it.
    pub fn of_record(item: &Item) -> Option<Self> {
        let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok());
        let number = |key: &str| item.get(key).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<usize>().ok());
        Some(Self {
            wave_index: number("wave")?,
            account: AccountId::parse(text("account")?)?,
            region: Region::new_unchecked(text("region")?.clone()),
            part: u32::try_from(number("recordPart")?).ok()?,
            instance_id: text("instanceId")?.clone(),
        })
    }

    pub fn group_sk(&self) -> String {
        group_sk(self.wave_index, self.account.as_str(), self.region.as_str(), self.part)
    }

    fn context(&self) -> String {
        format!("instance {} (account {} region {})", self.instance_id, self.account, self.region)
    }
}

/// A target's groups, ready to write: `records` are `(instance id, record attributes)`.
pub fn group_items(
    run_id: &str,
    wave_index: usize,
    (account, region): (&AccountId, &Region),
    records: Vec<(String, Item)>,
    expires_at: AttributeValue,
) -> Vec<Item> {
    let parts = parts_for(records.len());
    let mut maps: BTreeMap<u32, HashMap<String, AttributeValue>> = BTreeMap::new();
    for (instance_id, record) in records {
        let key = RecordKey::new(wave_index, (account, region), parts, &instance_id);
        maps.entry(key.part).or_default().insert(instance_id, AttributeValue::M(record));
    }
    maps.into_iter()
        .map(|(part, map)| group_item(run_id, wave_index, (account, region), part, map, expires_at.clone()))
        .collect()
}

fn group_item(
    run_id: &str,
    wave_index: usize,
    (account, region): (&AccountId, &Region),
    part: u32,
    records: HashMap<String, AttributeValue>,
    expires_at: AttributeValue,
) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(run_pk(run_id))),
        ("sk".to_owned(), s(group_sk(wave_index, account.as_str(), region.as_str(), part))),
        ("wave".to_owned(), n(wave_index)),
        ("account".to_owned(), s(account.as_str())),
        ("region".to_owned(), s(region.as_str())),
        ("part".to_owned(), n(part)),
        (RECORDS.to_owned(), AttributeValue::M(records)),
        ("expiresAt".to_owned(), expires_at),
    ])
}

/// A group's records, one item per instance: the record's own attributes with the group's `pk`,
/// `wave`, `account`, `region`, the instance's `instanceId`, its `recordPart`, and the `sk` an
/// instance record is known by (`INSTANCE#<account>#<region>#<instanceId>`).
pub fn flatten(group: &Item) -> Vec<Item> {
    let Some(records) = group.get(RECORDS).and_then(|v| v.as_m().ok()) else { return Vec::new() };
    let text = |key: &str| group.get(key).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    let part = group.get("part").cloned().unwrap_or_else(|| n(0));
    let mut flat: Vec<Item> = records
        .iter()
        .filter_map(|(instance_id, record)| {
            let mut item = record.as_m().ok()?.clone();
            for name in GROUP_ATTRIBUTES {
                if let Some(value) = group.get(name) {
                    item.insert(name.to_owned(), value.clone());
                }
            }
            let sk = format!("INSTANCE#{}#{}#{instance_id}", text("account"), text("region"));
            item.insert("sk".to_owned(), s(sk));
            item.insert("instanceId".to_owned(), s(instance_id));
            item.insert("recordPart".to_owned(), part.clone());
            Some(item)
        })
        .collect();
    flat.sort_by_key(|record| crate::store::text_attr(record, "instanceId"));
    flat
}

/// Every instance record of the run, flattened ([`flatten`]), in wave, account, region, part and
/// instance order: one Query (of a page per 1 MB) for the whole run.
pub async fn query(store: &RunStore, run_id: &str) -> Result<Vec<Item>> {
    Ok(store.query_prefix(&run_pk(run_id), PREFIX).await?.iter().flat_map(flatten).collect())
}

/// Sets an instance's outcome (and any extra attributes) on its record: one UpdateItem on its
/// group, touching only that instance's record.
pub async fn record_outcome(
    store: &RunStore,
    run_id: &str,
    key: &RecordKey,
    outcome: InstanceOutcome,
    reason: Option<&str>,
    extra: &[(&str, AttributeValue)],
) -> Result<()> {
    let mut sets: Vec<(&str, AttributeValue)> =
        vec![("outcome", s(outcome.as_str())), ("finishedAt", n(crate::time::now_epoch_seconds()))];
    let mut removes = Vec::new();
    match reason {
        Some(reason) => sets.push(("reason", s(reason))),
        None => removes.push("reason"),
    }
    sets.extend(extra.iter().map(|(name, value)| (*name, value.clone())));
    update_record(store, run_id, key, &sets, &removes).await
}

/// Sets (and removes) attributes of one instance's record in place. A record (or group) that is
/// not there yet is created first, with what is known of it: an outcome is never dropped.
pub async fn update_record(
    store: &RunStore,
    run_id: &str,
    key: &RecordKey,
    sets: &[(&str, AttributeValue)],
    removes: &[&str],
) -> Result<()> {
    match set_in_place(store, run_id, key, sets, removes).await {
        Err(UpdateFailure::NoSuchRecord) => {
            create_record(store, run_id, key).await?;
            set_in_place(store, run_id, key, sets, removes).await.map_err(|failure| match failure {
                UpdateFailure::NoSuchRecord => {
                    Error::StateStoreFailed(format!("UpdateItem: no record for {} after creating it", key.context()))
                }
                UpdateFailure::Other(error) => error,
            })
        }
        Err(UpdateFailure::Other(error)) => Err(error),
        Ok(()) => Ok(()),
    }
}

enum UpdateFailure {
    /// The group or the instance's record in it does not exist (the condition failed).
    NoSuchRecord,
    Other(Error),
}

async fn set_in_place(
    store: &RunStore,
    run_id: &str,
    key: &RecordKey,
    sets: &[(&str, AttributeValue)],
    removes: &[&str],
) -> std::result::Result<(), UpdateFailure> {
    let mut request = store
        .dynamodb()
        .update_item()
        .table_name(store.table())
        .key("pk", s(run_pk(run_id)))
        .key("sk", s(key.group_sk()))
        .expression_attribute_names("#records", RECORDS)
        .expression_attribute_names("#id", &key.instance_id)
        // The record must exist: no new group is made by a path update (it could not be).
        .condition_expression("attribute_exists(#records.#id)");
    let mut set_clauses = Vec::with_capacity(sets.len());
    for (index, (name, value)) in sets.iter().enumerate() {
        set_clauses.push(format!("#records.#id.#s{index} = :s{index}"));
        request = request
            .expression_attribute_names(format!("#s{index}"), *name)
            .expression_attribute_values(format!(":s{index}"), value.clone());
    }
    let mut remove_clauses = Vec::with_capacity(removes.len());
    for (index, name) in removes.iter().enumerate() {
        remove_clauses.push(format!("#records.#id.#r{index}"));
        request = request.expression_attribute_names(format!("#r{index}"), *name);
    }
    let mut expression = String::new();
    if !set_clauses.is_empty() {
        expression.push_str(&format!("SET {}", set_clauses.join(", ")));
    }
    if !remove_clauses.is_empty() {
        expression.push_str(&format!(" REMOVE {}", remove_clauses.join(", ")));
    }
    match request.update_expression(expression.trim()).send().await {
        Ok(_) => Ok(()),
        Err(error) if error.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException") => {
            Err(UpdateFailure::NoSuchRecord)
        }
        Err(error) => Err(UpdateFailure::Other(crate::store::into_store_error(crate::aws::classify(
            "UpdateItem",
            &key.context(),
            error,
        )))),
    }
}

/// Makes the group (when missing) and the instance's record in it (when missing), keeping
/// whatever either already holds.
async fn create_record(store: &RunStore, run_id: &str, key: &RecordKey) -> Result<()> {
    store
        .dynamodb()
        .update_item()
        .table_name(store.table())
        .key("pk", s(run_pk(run_id)))
        .key("sk", s(key.group_sk()))
        .update_expression(
            "SET #records = if_not_exists(#records, :empty), wave = :wave, account = :account, \
             #region = :region, part = :part, expiresAt = if_not_exists(expiresAt, :expires)",
        )
        .expression_attribute_names("#records", RECORDS)
        .expression_attribute_names("#region", "region")
        .expression_attribute_values(":empty", AttributeValue::M(HashMap::new()))
        .expression_attribute_values(":wave", n(key.wave_index))
        .expression_attribute_values(":account", s(key.account.as_str()))
        .expression_attribute_values(":region", s(key.region.as_str()))
        .expression_attribute_values(":part", n(key.part))
        .expression_attribute_values(":expires", store.expires_at())
        .send()
        .await
        .aws_context("UpdateItem", || format!("the group of {}", key.context()))
        .map_err(crate::store::into_store_error)?;
    store
        .dynamodb()
        .update_item()
        .table_name(store.table())
        .key("pk", s(run_pk(run_id)))
        .key("sk", s(key.group_sk()))
        .update_expression("SET #records.#id = if_not_exists(#records.#id, :empty)")
        .expression_attribute_names("#records", RECORDS)
        .expression_attribute_names("#id", &key.instance_id)
        .expression_attribute_values(":empty", AttributeValue::M(HashMap::new()))
        .send()
        .await
        .aws_context("UpdateItem", || format!("the record of {}", key.context()))
        .map_err(crate::store::into_store_error)?;
    Ok(())
}

/// One instance's outcome, for [`record_outcomes`].
#[derive(Debug, Clone)]
pub struct OutcomeUpdate {
    pub key: RecordKey,
    pub outcome: InstanceOutcome,
    pub reason: Option<String>,
    /// More attributes to set on the record (command id, patch counts, ...).
    pub extra: Vec<(&'static str, AttributeValue)>,
}

/// Sets the outcomes of many instances at once: reads their groups (BatchGetItem, 100 a call),
/// sets each instance's outcome as [`record_outcome`] does, and writes the groups back whole
/// (BatchWriteItem, 25 a call): a call per 25 targets, not one per instance. For a batch's
/// verification: by then nothing else writes those groups (module doc). A group or record that
/// is missing is created with what is known.
pub async fn record_outcomes(store: &RunStore, run_id: &str, updates: Vec<OutcomeUpdate>) -> Result<()> {
    let pk = run_pk(run_id);
    let mut by_group: BTreeMap<String, Vec<OutcomeUpdate>> = BTreeMap::new();
    for update in updates {
        by_group.entry(update.key.group_sk()).or_default().push(update);
    }
    let keys: Vec<(String, String)> = by_group.keys().map(|sk| (pk.clone(), sk.clone())).collect();
    let mut existing: HashMap<String, Item> = store
        .get_items(&keys)
        .await?
        .into_iter()
        .filter_map(|item| Some((item.get("sk")?.as_s().ok()?.clone(), item)))
        .collect();
    let finished_at = n(crate::time::now_epoch_seconds());
    let mut groups = Vec::with_capacity(by_group.len());
    for (sk, updates) in by_group {
        let Some(first) = updates.first() else { continue };
        let mut group = existing.remove(&sk).unwrap_or_else(|| {
            let k = &first.key;
            group_item(run_id, k.wave_index, (&k.account, &k.region), k.part, HashMap::new(), store.expires_at())
        });
        let mut records = match group.remove(RECORDS) {
            Some(AttributeValue::M(records)) => records,
            _ => HashMap::new(),
        };
        for update in updates {
            let mut record = match records.remove(&update.key.instance_id) {
                Some(AttributeValue::M(record)) => record,
                _ => HashMap::new(),
            };
            record.insert("outcome".to_owned(), s(update.outcome.as_str()));
            record.insert("finishedAt".to_owned(), finished_at.clone());
            match update.reason {
                Some(reason) => record.insert("reason".to_owned(), s(reason)),
                None => record.remove("reason"),
            };
            for (name, value) in update.extra {
                record.insert(name.to_owned(), value);
            }
            records.insert(update.key.instance_id, AttributeValue::M(record));
        }
        group.insert(RECORDS.to_owned(), AttributeValue::M(records));
        groups.push(group);
    }
    store.put_items(groups).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountId {
        AccountId::parse("111111111111").unwrap()
    }

    #[test]
    fn parts_grow_with_instances_past_the_part_size() {
        assert_eq!(parts_for(0), 1);
        assert_eq!(parts_for(PART_SIZE), 1);
        assert_eq!(parts_for(PART_SIZE + 1), 2);
        assert_eq!(parts_for(10 * PART_SIZE), 10);
    }

    #[test]
    fn groups_hold_every_record_once_and_flatten_back() {
        let region = Region::new_unchecked("eu-west-1".to_owned());
        let records: Vec<(String, Item)> =
            (0..450).map(|i| (format!("i-{i:05}"), HashMap::from([("outcome".to_owned(), s("PENDING"))]))).collect();
        let groups = group_items("run", 2, (&account(), &region), records, n(1));
        assert_eq!(groups.len(), 3, "450 instances in parts of at most 200 on average");
        let flat: Vec<Item> = groups.iter().flat_map(flatten).collect();
        assert_eq!(flat.len(), 450);
        for record in &flat {
            let key = RecordKey::of_record(record).unwrap();
            assert_eq!(key, RecordKey::new(2, (&account(), &region), 3, &key.instance_id), "a writer finds it");
            assert_eq!(
                crate::store::text_attr(record, "sk"),
                format!("INSTANCE#111111111111#eu-west-1#{}", key.instance_id)
            );
            assert_eq!(crate::store::text_attr(record, "outcome"), "PENDING");
        }
        for group in &groups {
            let size: usize = group[RECORDS].as_m().unwrap().len();
            assert!(size < PART_SIZE + 60, "parts stay near the part size, got {size}");
        }
    }
}
