//! What the send, poll and verify steps share: the command records that make sending
//! idempotent, and reading a command's per-instance status from SSM.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::aws::AwsResultExt;
use crate::hash;
use crate::plan::{AccountId, Region};
use crate::store::{Item, n, s};
use crate::{Error, Result};

pub const DOCUMENT: &str = "AWS-RunPatchBaseline";
/// SendCommand takes at most 50 instance ids.
pub const INSTANCES_PER_COMMAND: usize = 50;

/// One SendCommand for (at most 50 instances of) a target. Written as a claim before sending
/// and completed with the command id after, so a retried send never sends twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub sk: String,
    pub account: AccountId,
    pub region: Region,
    pub instance_ids: Vec<String>,
    pub claimed_at: u64,
    pub command_id: Option<String>,
    /// Every invocation once all have ended, as the poll that saw it listed them: later polls
    /// and PostEC2Verify read them here instead of asking the spoke's SSM again.
    #[serde(default)]
    pub final_invocations: Option<Vec<Invocation>>,
    /// How many groups the target's instance records are in
    /// ([`crate::instance_records::RecordKey`]), so the verification finds them without a read.
    #[serde(default = "one_part")]
    pub record_parts: u32,
}

fn one_part() -> u32 {
    1
}

impl CommandRecord {
    pub fn to_item(&self, pk: &str, expires_at: AttributeValue) -> Item {
        let mut item: Item = HashMap::from([
            ("pk".to_owned(), s(pk)),
            ("sk".to_owned(), s(&self.sk)),
            ("account".to_owned(), s(self.account.as_str())),
            ("region".to_owned(), s(self.region.as_str())),
            ("instanceIds".to_owned(), AttributeValue::Ss(self.instance_ids.clone())),
            ("claimedAt".to_owned(), n(self.claimed_at)),
            ("recordParts".to_owned(), n(self.record_parts)),
            ("expiresAt".to_owned(), expires_at),
        ]);
        if let Some(id) = &self.command_id {
            item.insert("commandId".to_owned(), s(id));
        }
        if let Some(json) = self.final_invocations.as_ref().and_then(|i| serde_json::to_string(i).ok()) {
            item.insert(FINAL_INVOCATIONS.to_owned(), s(json));
        }
        item
    }

    pub fn from_item(item: &Item) -> Result<Self> {
        let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned();
        let malformed = || Error::StateStoreFailed(format!("malformed command record {:?}", text("sk")));
        Ok(Self {
            sk: text("sk").ok_or_else(malformed)?,
            account: text("account").as_deref().and_then(AccountId::parse).ok_or_else(malformed)?,
            region: Region::new_unchecked(text("region").ok_or_else(malformed)?),
            instance_ids: item.get("instanceIds").and_then(|v| v.as_ss().ok()).cloned().unwrap_or_default(),
            claimed_at: item
                .get("claimedAt")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
            command_id: text("commandId"),
            // Unreadable ones are listed again: only a saving is lost.
            final_invocations: text(FINAL_INVOCATIONS).and_then(|json| serde_json::from_str(&json).ok()),
            record_parts: item
                .get("recordParts")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(one_part),
        })
    }

    /// Where the record of one of its instances lives.
    pub fn record_key(&self, wave_index: usize, instance_id: &str) -> crate::instance_records::RecordKey {
        crate::instance_records::RecordKey::new(
            wave_index,
            (&self.account, &self.region),
            self.record_parts,
            instance_id,
        )
    }

    pub fn context(&self) -> String {
        match &self.command_id {
            Some(id) => format!("account {} region {} command {id}", self.account, self.region),
            None => format!("account {} region {}", self.account, self.region),
        }
    }
}

/// The command record's attribute holding its final invocations (JSON).
const FINAL_INVOCATIONS: &str = "finalInvocations";

/// Puts commands' final invocations on their records, so that the batch's later polls and its
/// verification need no more SSM calls for them: each record (`item`, as read) written back whole
/// with them, 25 to a BatchWriteItem, rather than one UpdateItem per command. For a batch's poll:
/// by then nothing else writes its command records (the send is done, the polls of a batch run one
/// after the other, the verification comes after them).
pub async fn record_final_invocations(
    store: &crate::store::RunStore,
    finished: Vec<(Item, &CommandRecord, Vec<Invocation>)>,
) -> Result<()> {
    let mut items = Vec::with_capacity(finished.len());
    for (mut item, record, invocations) in finished {
        let json = serde_json::to_string(&invocations)
            .map_err(|e| Error::StateStoreFailed(format!("final invocations of {}: {e}", record.context())))?;
        item.insert(FINAL_INVOCATIONS.to_owned(), s(json));
        items.push(item);
    }
    store.put_items(items).await
}

/// Claims commands before they are sent: up to 100 claims (of any targets: a batch's at once) in
/// one TransactWriteItems, each conditional on no claim being there. When one is there (a retried
/// send) the transaction writes nothing, and those claims go one by one, each returning the claim
/// already there. Returns each claim as recorded, and whether it was there before (then an
/// earlier attempt may have sent its command).
pub async fn claim_all(
    store: &crate::store::RunStore,
    run_id: &str,
    claims: Vec<CommandRecord>,
) -> Result<Vec<(CommandRecord, bool)>> {
    use aws_sdk_dynamodb::types::Put;
    let pk = crate::store::run_pk(run_id);
    let mut claimed = Vec::with_capacity(claims.len());
    let mut claims = claims.into_iter().peekable();
    while claims.peek().is_some() {
        let chunk: Vec<CommandRecord> = claims.by_ref().take(crate::store::TRANSACTION_LIMIT).collect();
        let items = chunk
            .iter()
            .map(|claim| {
                store.transact_put(
                    Put::builder()
                        .set_item(Some(claim.to_item(&pk, store.expires_at())))
                        .condition_expression("attribute_not_exists(pk)"),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let context = || format!("claims of {} commands of run {run_id}", chunk.len());
        if store.transact_write(items, context).await? {
            claimed.extend(chunk.into_iter().map(|claim| (claim, false)));
        } else {
            for claim in chunk {
                let item = claim.to_item(&pk, store.expires_at());
                claimed.push(match store.put_item_or_get_existing(item).await? {
                    None => (claim, false),
                    Some(existing) => (CommandRecord::from_item(&existing)?, true),
                });
            }
        }
    }
    Ok(claimed)
}

/// Completes claims with their command ids (and when they were sent), 25 records to a
/// BatchWriteItem: each record written whole, as [`claim_all`] made it plus the id. Nothing else
/// writes a batch's command records while its send runs.
pub async fn complete_all(store: &crate::store::RunStore, run_id: &str, sent: &[CommandRecord]) -> Result<()> {
    let pk = crate::store::run_pk(run_id);
    let sent_at = n(crate::time::now_epoch_seconds());
    let items = sent
        .iter()
        .map(|record| {
            let mut item = record.to_item(&pk, store.expires_at());
            item.insert("sentAt".to_owned(), sent_at.clone());
            item
        })
        .collect();
    store.put_items(items).await
}

/// The Comment a command is sent with: ties an SSM command back to its claim, so a send that
/// crashed between SendCommand and recording the id is found again instead of sent twice.
pub fn claim_comment(run_id: &str, sk: &str) -> String {
    let hash = hash::fnv1a(hash::FNV_OFFSET_BASIS, format!("{run_id}/{sk}").as_bytes());
    format!("ec2patch claim {hash:016x}")
}

/// One instance's view of a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invocation {
    pub instance_id: String,
    pub status: String,
    pub status_details: String,
    /// When the patch plugin started and finished on the instance (epoch seconds), as SSM
    /// reports them: PollSsmCommand estimates the command's end from them.
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
}

impl Invocation {
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "Success" | "Failed" | "TimedOut" | "Cancelled" | "Undeliverable" | "Terminated")
    }
}

/// Every invocation of a command, one paginated listing (never one call per instance), with
/// its plugin's start and finish times (`Details`: the same calls, longer answers).
pub async fn list_invocations(ssm: &aws_sdk_ssm::Client, command_id: &str, context: &str) -> Result<Vec<Invocation>> {
    let mut invocations = Vec::new();
    let mut pages = ssm.list_command_invocations().command_id(command_id).details(true).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.aws_context("ListCommandInvocations", || context.to_owned())?;
        for invocation in page.command_invocations() {
            let plugins = invocation.command_plugins();
            let epoch = |at: Option<&aws_smithy_types::DateTime>| at.map(aws_smithy_types::DateTime::as_secs_f64);
            invocations.push(Invocation {
                instance_id: invocation.instance_id().unwrap_or_default().to_owned(),
                status: invocation.status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                status_details: invocation.status_details().unwrap_or_default().to_owned(),
                started_at: plugins.iter().filter_map(|p| epoch(p.response_start_date_time())).reduce(f64::min),
                finished_at: plugins.iter().filter_map(|p| epoch(p.response_finish_date_time())).reduce(f64::max),
            });
        }
    }
    Ok(invocations)
}
