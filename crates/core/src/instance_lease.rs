//! One run per instance: a lease in DynamoDB taken before `AWS-RunPatchBaseline` is sent.
//!
//! The run lock ([`crate::run_lock`]) keeps two runs of the *same* waves apart; two runs whose
//! waves differ (another tag filter, another wave rule listing the same account) can still reach
//! the same instance. SendSsmCommand therefore takes, per instance, one conditional `PutItem`:
//!
//! | pk                                     | sk      | attributes                              |
//! |----------------------------------------|---------|-----------------------------------------|
//! | `LEASE#<account>#<region>#<instanceId>` | `LEASE` | `runId`, `leaseUntil`, `expiresAt` (TTL) |
//!
//! - The put succeeds when nobody holds the instance, the holder's lease has run out, or the
//!   holder is this run (a retried send) or a run this one resumes (it died between leasing and
//!   sending: the resume adopts its commands). Otherwise DynamoDB returns the holder
//!   (`ReturnValuesOnConditionCheckFailure`) and the instance is skipped with the reason
//!   `BusyInAnotherRun <runId>`.
//! - The lease lasts the command timeout plus the run lock's margin (longer than any function's
//!   timeout), so a run that crashed never blocks an instance for longer than its command could
//!   have run.
//! - PostEC2Verify releases the lease (a delete conditional on still being the holder) once the
//!   instance's outcome is recorded; an instance whose batch never reached verification is freed
//!   when its lease runs out.
//! - A batch's leases are taken, and released, up to 100 in one `TransactWriteItems`
//!   ([`acquire_all`], [`release_all`]): the same conditions, a call per 100 instances instead of
//!   one per instance. When any condition fails (an instance is busy, a lease was taken over) the
//!   transaction changes nothing, and those 100 go one by one, which names each holder.
//! - Dry runs (`Scan`) change nothing on the instance: they neither take nor respect leases.

use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem};

use crate::Result;
use crate::plan::{AccountId, Region};
use crate::store::{RunStore, n, s};
use crate::time::now_epoch_seconds;

/// The sort key of every lease item.
pub const LEASE_SK: &str = "LEASE";

/// The reason recorded on an instance skipped because another run holds it.
pub fn busy_reason(holder_run_id: &str) -> String {
    format!("BusyInAnotherRun {holder_run_id}")
}

pub fn lease_pk(account: &AccountId, region: &Region, instance_id: &str) -> String {
    format!("LEASE#{account}#{region}#{instance_id}")
}

/// What [`acquire`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This run holds the instance until the given epoch second.
    Held { until: u64 },
    /// Another run holds it (a live lease): the instance must not be sent a command.
    Busy { holder_run_id: String, until: u64 },
}

/// One instance: its account, region and id.
pub type InstanceKey<'a> = (&'a AccountId, &'a Region, &'a str);

/// The condition a lease is taken under, and its values: free, run out, or held by this run or
/// one it resumes.
fn acquire_condition(run_id: &str, resumes: &[String], now: u64) -> (String, Vec<(String, AttributeValue)>) {
    let mut values = vec![(":run".to_owned(), s(run_id)), (":now".to_owned(), n(now))];
    let mut own_runs = vec![":run".to_owned()];
    for (index, resumed) in resumes.iter().enumerate() {
        let name = format!(":resumed{index}");
        values.push((name.clone(), s(resumed)));
        own_runs.push(name);
    }
    (format!("attribute_not_exists(pk) OR leaseUntil < :now OR runId IN ({})", own_runs.join(", ")), values)
}

fn lease_item(run_id: &str, (account, region, instance_id): InstanceKey<'_>, until: u64) -> crate::store::Item {
    std::collections::HashMap::from([
        ("pk".to_owned(), s(lease_pk(account, region, instance_id))),
        ("sk".to_owned(), s(LEASE_SK)),
        ("runId".to_owned(), s(run_id)),
        ("account".to_owned(), s(account.as_str())),
        ("region".to_owned(), s(region.as_str())),
        ("instanceId".to_owned(), s(instance_id)),
        ("leaseUntil".to_owned(), n(until)),
        // TTL removes forgotten leases a day after they ran out (TTL deletion is lazy: the
        // condition, not the TTL, decides whether a lease is live).
        ("expiresAt".to_owned(), n(until + 86_400)),
    ])
}

/// Takes the leases on all `instances` (of any targets: a batch's at once) for `run_id`, 100 to
/// a transaction; returns each instance's [`Lease`] in the order given.
pub async fn acquire_all(
    store: &RunStore,
    run_id: &str,
    resumes: &[String],
    instances: &[InstanceKey<'_>],
    lease_seconds: u64,
) -> Result<Vec<Lease>> {
    let mut leases = Vec::with_capacity(instances.len());
    for chunk in instances.chunks(crate::store::TRANSACTION_LIMIT) {
        let now = now_epoch_seconds();
        let until = now + lease_seconds;
        let (condition, values) = acquire_condition(run_id, resumes, now);
        let items = chunk
            .iter()
            .map(|instance| {
                store.transact_put(
                    Put::builder()
                        .set_item(Some(lease_item(run_id, *instance, until)))
                        .condition_expression(&condition)
                        .set_expression_attribute_values(Some(values.iter().cloned().collect())),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let context = || {
            let targets: std::collections::BTreeSet<String> =
                chunk.iter().map(|(account, region, _)| format!("{account}/{region}")).collect();
            let targets: Vec<String> = targets.into_iter().collect();
            format!("leases of {} instances (in {}) for run {run_id}", chunk.len(), targets.join(", "))
        };
        if store.transact_write(items, context).await? {
            leases.extend(chunk.iter().map(|_| Lease::Held { until }));
        } else {
            for instance in chunk {
                leases.push(acquire(store, run_id, resumes, *instance, lease_seconds).await?);
            }
        }
    }
    Ok(leases)
}

/// Releases `run_id`'s leases on `instances`, 100 to a transaction; as [`release`], a lease
/// another run holds now or that is gone is left alone.
pub async fn release_all(store: &RunStore, run_id: &str, instances: &[InstanceKey<'_>]) -> Result<()> {
    for chunk in instances.chunks(crate::store::TRANSACTION_LIMIT) {
        let items = chunk
            .iter()
            .map(|(account, region, id)| {
                let delete = Delete::builder()
                    .table_name(store.table())
                    .key("pk", s(lease_pk(account, region, id)))
                    .key("sk", s(LEASE_SK))
                    .condition_expression("runId = :run")
                    .expression_attribute_values(":run", s(run_id))
                    .build()
                    .map_err(|e| crate::Error::StateStoreFailed(e.to_string()))?;
                Ok(TransactWriteItem::builder().delete(delete).build())
            })
            .collect::<Result<Vec<_>>>()?;
        let context = || format!("releasing {} leases of run {run_id}", chunk.len());
        if !store.transact_write(items, context).await? {
            for instance in chunk {
                release(store, run_id, *instance).await?;
            }
        }
    }
    Ok(())
}

/// Takes (or renews) the lease on one instance for `run_id`, for `lease_seconds`. `resumes` are
/// the runs this one resumes: their leases are taken over.
pub async fn acquire(
    store: &RunStore,
    run_id: &str,
    resumes: &[String],
    (account, region, instance_id): (&AccountId, &Region, &str),
    lease_seconds: u64,
) -> Result<Lease> {
    let now = now_epoch_seconds();
    let until = now + lease_seconds;
    let (condition, values) = acquire_condition(run_id, resumes, now);
    let put = store
        .dynamodb()
        .put_item()
        .table_name(store.table())
        .set_item(Some(lease_item(run_id, (account, region, instance_id), until)))
        .set_expression_attribute_values(Some(values.into_iter().collect()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    let context = || format!("lease of instance {instance_id} (account {account} region {region}) for run {run_id}");
    match put.condition_expression(condition).send().await {
        Ok(_) => Ok(Lease::Held { until }),
        Err(error) => match error.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                let item = failed.item();
                let text = |key: &str| item.and_then(|i| i.get(key)).and_then(|v| v.as_s().ok()).cloned();
                let number =
                    |key: &str| item.and_then(|i| i.get(key)).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok());
                Ok(Lease::Busy {
                    holder_run_id: text("runId").unwrap_or_else(|| "an unknown run".to_owned()),
                    until: number("leaseUntil").unwrap_or_default(),
                })
            }
            _ => Err(crate::store::into_store_error(crate::aws::classify("PutItem", &context(), error))),
        },
    }
}

/// Releases `run_id`'s lease on one instance; a lease another run holds (ours ran out and was
/// taken) or that is already gone is left alone.
pub async fn release(
    store: &RunStore,
    run_id: &str,
    (account, region, instance_id): (&AccountId, &Region, &str),
) -> Result<()> {
    let result = store
        .dynamodb()
        .delete_item()
        .table_name(store.table())
        .key("pk", s(lease_pk(account, region, instance_id)))
        .key("sk", s(LEASE_SK))
        .condition_expression("runId = :run")
        .expression_attribute_values(":run", AttributeValue::S(run_id.to_owned()))
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(error) => match error.as_service_error() {
            Some(DeleteItemError::ConditionalCheckFailedException(_)) => Ok(()),
            _ => {
                let context =
                    format!("releasing the lease of instance {instance_id} (account {account} region {region})");
                Err(crate::store::into_store_error(crate::aws::classify("DeleteItem", &context, error)))
            }
        },
    }
}

/// Which run holds an instance now (a live lease), if any: for `ec2patch` and tests.
pub async fn holder(
    store: &RunStore,
    (account, region, instance_id): (&AccountId, &Region, &str),
) -> Result<Option<(String, u64)>> {
    let Some(item) = store.get_item(&lease_pk(account, region, instance_id), LEASE_SK).await? else {
        return Ok(None);
    };
    let run = item.get("runId").and_then(|v| v.as_s().ok()).cloned();
    let until: u64 = item.get("leaseUntil").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(run.filter(|_| until >= now_epoch_seconds()).map(|run| (run, until)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skip_reason_names_the_holder() {
        assert_eq!(busy_reason("wave2-20261203"), "BusyInAnotherRun wave2-20261203");
    }

    #[test]
    fn leases_are_keyed_by_instance_not_by_run() {
        let account = AccountId::parse("123456789012").unwrap();
        let region = Region::new_unchecked("eu-west-1");
        assert_eq!(lease_pk(&account, &region, "i-0abc"), "LEASE#123456789012#eu-west-1#i-0abc");
    }
}
