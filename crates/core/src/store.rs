//! Where run state lives and how it is keyed.
//!
//! DynamoDB (one table, `pk`/`sk` strings, TTL attribute `expiresAt`):
//!
//! | pk             | sk                                         | what                                  |
//! |----------------|--------------------------------------------|---------------------------------------|
//! | `RUN#<runId>`  | `RUN`                                      | run record: status, wave count        |
//! | `RUN#<runId>`  | `WAVE#<nnn>`                               | a wave's inventory summary            |
//! | `RUN#<runId>`  | `TARGET#<nnn>#<account>#<region>`          | a target's inventory result or failure|
//! | `RUN#<runId>`  | `INSTANCES#<nnn>#<account>#<region>#<part>`| a target's instances and outcomes     |
//! | `RUN#<runId>`  | `COMMAND#<nnn>#<batch>#<acct>#<region>#<n>`| one SendCommand: claim, then its id   |
//! | `RUN#<runId>`  | `FAILURE#WAVE#<n>[#BATCH#<b>]`             | why a wave or batch was not patched   |
//!
//! S3: `runs/<runId>/plan.json` (the validated plan) and
//! `runs/<runId>/waves/<nnn>/manifest.json` (every target and instance of a wave), and
//! `runs/<runId>/waves/<nnn>/batches/<b>.json` (the patchable part, in Map-sized batches).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::builders::PutBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, PutRequest, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, WriteRequest,
};
use aws_sdk_s3::primitives::ByteStream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aws::AwsResultExt;
use crate::plan::{AccountId, Region, RunPlan};
use crate::{Error, Result};

/// DynamoDB's limit for one BatchWriteItem call.
pub const BATCH_WRITE_LIMIT: usize = 25;
/// DynamoDB's limit of items in one TransactWriteItems call.
pub const TRANSACTION_LIMIT: usize = 100;
/// DynamoDB's limit for one BatchGetItem call.
const BATCH_GET_LIMIT: usize = 100;
/// Rounds of re-sending unprocessed items before the write is declared failed.
const UNPROCESSED_ROUNDS: u32 = 8;

pub type Item = HashMap<String, AttributeValue>;

pub fn run_pk(run_id: &str) -> String {
    format!("RUN#{run_id}")
}

pub fn wave_sk(wave_index: usize) -> String {
    format!("WAVE#{wave_index:03}")
}

pub fn target_sk(wave_index: usize, account: &AccountId, region: &Region) -> String {
    format!("TARGET#{wave_index:03}#{account}#{region}")
}

pub fn plan_key(run_id: &str) -> String {
    format!("runs/{run_id}/plan.json")
}

pub fn manifest_key(run_id: &str, wave_index: usize) -> String {
    format!("runs/{run_id}/waves/{wave_index:03}/manifest.json")
}

/// One batch of a wave's patchable targets (what one patch Map iteration works on). The batch
/// number is not zero-padded: the Distributed Map reads it back from the key with
/// `States.StringToJson`, which refuses a number with leading zeros.
pub fn batch_key(run_id: &str, wave_index: usize, batch: usize) -> String {
    format!("runs/{run_id}/waves/{wave_index:03}/batches/{batch}.json")
}

/// The record of one SendCommand (at most 50 instances) for a target of a batch.
pub fn command_sk(wave_index: usize, batch: usize, account: &AccountId, region: &Region, chunk: usize) -> String {
    format!("COMMAND#{wave_index:03}#{batch:05}#{account}#{region}#{chunk:03}")
}

pub fn batch_commands_prefix(wave_index: usize, batch: usize) -> String {
    format!("COMMAND#{wave_index:03}#{batch:05}#")
}

/// A pointer to an S3 object, small enough to pass between states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

/// Reads and writes run state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RunStore {
    dynamodb: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
    table: String,
    bucket: String,
    ttl: Duration,
}

impl RunStore {
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        s3: aws_sdk_s3::Client,
        table: &str,
        bucket: &str,
        ttl_days: u32,
    ) -> Self {
        Self {
            dynamodb,
            s3,
            table: table.to_owned(),
            bucket: bucket.to_owned(),
            ttl: Duration::from_secs(u64::from(ttl_days) * 86_400),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The `expiresAt` value (epoch seconds) for records written now.
    pub fn expires_at(&self) -> AttributeValue {
        AttributeValue::N((crate::time::now_epoch_seconds() + self.ttl.as_secs()).to_string())
    }

    pub async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<ObjectRef> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::StateStoreFailed(format!("cannot serialise s3://{}/{key}: {e}", self.bucket)))?;
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| store_error("PutObject", &format!("s3://{}/{key}", self.bucket), e))?;
        Ok(ObjectRef { bucket: self.bucket.clone(), key: key.to_owned() })
    }

    pub async fn put_html(&self, key: &str, html: &str) -> Result<ObjectRef> {
        self.put_text(key, "text/html; charset=utf-8", html).await
    }

    /// Stores `text` as `content_type` (the report's HTML and CSV).
    pub async fn put_text(&self, key: &str, content_type: &str, text: &str) -> Result<ObjectRef> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(text.as_bytes().to_vec()))
            .send()
            .await
            .map_err(|e| store_error("PutObject", &format!("s3://{}/{key}", self.bucket), e))?;
        Ok(ObjectRef { bucket: self.bucket.clone(), key: key.to_owned() })
    }

    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        let bytes = self.get_bytes(key).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::StateStoreFailed(format!("s3://{}/{key} is not what ec2patch wrote: {e}", self.bucket)))
    }

    /// An object ec2patch wrote as text (the report's HTML and CSV).
    pub async fn get_text(&self, key: &str) -> Result<String> {
        let bytes = self.get_bytes(key).await?;
        String::from_utf8(bytes)
            .map_err(|e| Error::StateStoreFailed(format!("s3://{}/{key} is not UTF-8 text: {e}", self.bucket)))
    }

    /// An object's bytes; a missing key is [`Error::NotFound`].
    pub async fn get_bytes(&self, key: &str) -> Result<Vec<u8>> {
        let object = self.s3.get_object().bucket(&self.bucket).key(key).send().await.map_err(|e| {
            if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                Error::NotFound(format!("s3://{}/{key}", self.bucket))
            } else {
                store_error("GetObject", &format!("s3://{}/{key}", self.bucket), e)
            }
        })?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| Error::StateStoreFailed(format!("reading s3://{}/{key}: {e}", self.bucket)))?
            .to_vec();
        Ok(bytes)
    }

    pub async fn load_plan(&self, run_id: &str) -> Result<RunPlan> {
        self.get_json(&plan_key(run_id)).await
    }

    pub async fn put_item(&self, item: Item) -> Result<()> {
        self.dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .aws_context("PutItem", || format!("table {}", self.table))
            .map_err(into_store_error)?;
        Ok(())
    }

    /// Puts `item` only if no item with its key exists.
    pub async fn put_item_if_absent(&self, item: Item) -> Result<()> {
        self.dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .aws_context("PutItem", || format!("table {} (new item)", self.table))
            .map_err(into_store_error)?;
        Ok(())
    }

    /// Puts `item` unless an item with its key exists, and then returns that one: one call, the
    /// failed condition carries the existing item (`ReturnValuesOnConditionCheckFailure`).
    pub async fn put_item_or_get_existing(&self, item: Item) -> Result<Option<Item>> {
        let key = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let (pk, sk) = (key("pk"), key("sk"));
        let result = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => match failed.item() {
                    Some(existing) => Ok(Some(existing.clone())),
                    // An answer without the item: read it.
                    None => self.get_item(&pk, &sk).await,
                },
                _ => Err(store_error("PutItem", &format!("table {} pk {pk} sk {sk} (new item)", self.table), error)),
            },
        }
    }

    pub async fn get_item(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .aws_context("GetItem", || format!("table {} pk {pk}", self.table))
            .map_err(into_store_error)?;
        Ok(output.item)
    }

    /// Deletes the item, if there is one.
    pub async fn delete_item(&self, pk: &str, sk: &str) -> Result<()> {
        self.dynamodb
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .send()
            .await
            .aws_context("DeleteItem", || format!("table {} pk {pk} sk {sk}", self.table))
            .map_err(into_store_error)?;
        Ok(())
    }

    pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    /// Writes every item, in batches of 25, re-sending what DynamoDB leaves unprocessed. Fails
    /// loudly, saying how many items were not written, rather than dropping any.
    pub async fn put_items(&self, items: Vec<Item>) -> Result<()> {
        let requests = items
            .into_iter()
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| Error::StateStoreFailed(e.to_string()))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<_>>()?;
        self.write_batches(requests).await
    }

    /// Deletes the items of `keys` (`(pk, sk)`) as [`Self::put_items`] writes: 25 to a
    /// BatchWriteItem, re-sending what is left unprocessed; a key without an item is no error.
    pub async fn delete_items(&self, keys: &[(String, String)]) -> Result<()> {
        let requests = keys
            .iter()
            .map(|(pk, sk)| {
                let delete = DeleteRequest::builder()
                    .set_key(Some(HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])))
                    .build()
                    .map_err(|e| Error::StateStoreFailed(e.to_string()))?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<_>>()?;
        self.write_batches(requests).await
    }

    async fn write_batches(&self, mut requests: Vec<WriteRequest>) -> Result<()> {
        while !requests.is_empty() {
            let rest = requests.split_off(requests.len().min(BATCH_WRITE_LIMIT));
            let mut batch = std::mem::replace(&mut requests, rest);
            let mut round = 0;
            while !batch.is_empty() {
                self.before_round(round, || format!("{} items", batch.len() + requests.len())).await?;
                let output = self
                    .dynamodb
                    .batch_write_item()
                    .request_items(&self.table, batch)
                    .send()
                    .await
                    .aws_context("BatchWriteItem", || format!("table {}", self.table))
                    .map_err(into_store_error)?;
                batch = output.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
                round += 1;
            }
        }
        Ok(())
    }

    /// `put` (its item and any condition) as one action of a [`Self::transact_write`] on this
    /// table.
    pub fn transact_put(&self, put: PutBuilder) -> Result<TransactWriteItem> {
        let put = put.table_name(&self.table).build().map_err(|e| Error::StateStoreFailed(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Writes `items` (at most [`TRANSACTION_LIMIT`]) in one TransactWriteItems: `Ok(true)` when
    /// written, `Ok(false)` when a condition (or a concurrent transaction) cancelled it, so nothing
    /// was written and the caller can go item by item; any other failure is an error naming
    /// `context`.
    pub async fn transact_write(
        &self,
        items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
        context: impl FnOnce() -> String,
    ) -> Result<bool> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        match self.dynamodb.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(TransactWriteItemsError::TransactionCanceledException(_))
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(into_store_error(crate::aws::classify("TransactWriteItems", &context(), error))),
        }
    }

    /// Reads the items of `keys` (`(pk, sk)`), 100 to a strongly consistent BatchGetItem,
    /// re-asking for what DynamoDB leaves unprocessed; keys without an item are left out.
    pub async fn get_items(&self, keys: &[(String, String)]) -> Result<Vec<Item>> {
        let mut items = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_LIMIT) {
            let key_items: Vec<Item> = chunk
                .iter()
                .map(|(pk, sk)| HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))]))
                .collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(key_items))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| Error::StateStoreFailed(e.to_string()))?,
            );
            let mut round = 0;
            while let Some(request) = pending.take() {
                self.before_round(round, || format!("{} keys", request.keys().len())).await?;
                let output = self
                    .dynamodb
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .aws_context("BatchGetItem", || format!("table {}", self.table))
                    .map_err(into_store_error)?;
                items.extend(output.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default());
                pending =
                    output.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys().is_empty());
                round += 1;
            }
        }
        Ok(items)
    }

    /// Before round `round` of re-sending what a batch call left unprocessed: waits longer each
    /// round, and gives up after [`UNPROCESSED_ROUNDS`], saying how much (`left`) was not done.
    async fn before_round(&self, round: u32, left: impl FnOnce() -> String) -> Result<()> {
        if round == UNPROCESSED_ROUNDS {
            return Err(Error::StateStoreFailed(format!(
                "{} still unprocessed by table {} after {UNPROCESSED_ROUNDS} rounds",
                left(),
                self.table
            )));
        }
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(50 << round.min(6))).await;
        }
        Ok(())
    }

    pub async fn query_prefix(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut pages = self
            .dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .expression_attribute_values(":prefix", AttributeValue::S(sk_prefix.to_owned()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.aws_context("Query", || format!("table {} pk {pk}", self.table)).map_err(into_store_error)?;
            items.extend(page.items.unwrap_or_default());
        }
        Ok(items)
    }
}

fn store_error<E>(
    operation: &str,
    context: &str,
    error: aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> Error
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    into_store_error(crate::aws::classify(operation, context, error))
}

/// Throttling stays retryable; anything else about run state is a store failure.
pub fn into_store_error(error: Error) -> Error {
    if error.is_transient() { error } else { Error::StateStoreFailed(error.to_string()) }
}

/// Small helpers for building items.
pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// An item's string attribute (`""` when absent or not a string).
pub fn text_attr(item: &Item, key: &str) -> String {
    item.get(key).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
}

/// An item's number attribute, parsed (`None` when absent, not a number or out of range).
pub fn number_attr<T: std::str::FromStr>(item: &Item, key: &str) -> Option<T> {
    item.get(key).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}
