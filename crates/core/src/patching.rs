//! What the send, poll and verify steps share: the command records that make sending
//! idempotent, and reading a command's per-instance status from SSM.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::aws::AwsResultExt;
use crate::hash;
use crate::plan::{AccountId, Region};
use crate::status::InstanceOutcome;
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
        })
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

/// Puts a command's final invocations on its record (one UpdateItem, once per command), so that
/// the batch's later polls and its verification need no more SSM calls for it.
pub async fn record_final_invocations(
    store: &crate::store::RunStore,
    run_id: &str,
    record: &CommandRecord,
    invocations: &[Invocation],
) -> Result<()> {
    let json = serde_json::to_string(invocations)
        .map_err(|e| Error::StateStoreFailed(format!("final invocations of {}: {e}", record.context())))?;
    store
        .dynamodb()
        .update_item()
        .table_name(store.table())
        .key("pk", s(crate::store::run_pk(run_id)))
        .key("sk", s(&record.sk))
        .update_expression("SET #final = :final")
        .expression_attribute_names("#final", FINAL_INVOCATIONS)
        .expression_attribute_values(":final", s(json))
        .send()
        .await
        .aws_context("UpdateItem", || format!("final invocations of {}", record.context()))
        .map_err(crate::store::into_store_error)?;
    Ok(())
}

/// The Comment a command is sent with: ties an SSM command back to its claim, so a send that
/// crashed between SendCommand and recording the id is found again instead of sent twice.
pub fn claim_comment(run_id: &str, sk: &str) -> String {
    let hash = hash::fnv1a(hash::FNV_OFFSET_BASIS, format!("{run_id}/{sk}").as_bytes());
    format!("ec2patch claim {hash:016x}")
}

/// Sets an instance's outcome (and any extra attributes) on its record.
pub async fn record_outcome(
    store: &crate::store::RunStore,
    run_id: &str,
    (account, region, instance_id): (&AccountId, &Region, &str),
    outcome: InstanceOutcome,
    reason: Option<&str>,
    extra: &[(&str, AttributeValue)],
) -> Result<()> {
    let mut expression = "SET outcome = :outcome, finishedAt = :at".to_owned();
    let mut request = store
        .dynamodb()
        .update_item()
        .table_name(store.table())
        .key("pk", s(crate::store::run_pk(run_id)))
        .key("sk", s(crate::store::instance_sk(account, region, instance_id)))
        .expression_attribute_values(":outcome", s(outcome.as_str()))
        .expression_attribute_values(":at", n(crate::time::now_epoch_seconds()));
    match reason {
        Some(reason) => {
            expression.push_str(", reason = :reason");
            request = request.expression_attribute_values(":reason", s(reason));
        }
        None => expression.push_str(" REMOVE reason"),
    }
    let mut sets = String::new();
    for (index, (name, value)) in extra.iter().enumerate() {
        sets.push_str(&format!(", #x{index} = :x{index}"));
        request = request
            .expression_attribute_names(format!("#x{index}"), *name)
            .expression_attribute_values(format!(":x{index}"), value.clone());
    }
    // SET clauses must precede REMOVE.
    let expression = match expression.split_once(" REMOVE ") {
        Some((set, remove)) => format!("{set}{sets} REMOVE {remove}"),
        None => format!("{expression}{sets}"),
    };
    request
        .update_expression(expression)
        .send()
        .await
        .aws_context("UpdateItem", || format!("instance {instance_id} (account {account} region {region})"))
        .map_err(crate::store::into_store_error)?;
    Ok(())
}

/// One instance's outcome, for [`record_outcomes`].
#[derive(Debug, Clone)]
pub struct OutcomeUpdate {
    pub account: AccountId,
    pub region: Region,
    pub instance_id: String,
    pub outcome: InstanceOutcome,
    pub reason: Option<String>,
    /// More attributes to set on the record (command id, patch counts, ...).
    pub extra: Vec<(&'static str, AttributeValue)>,
}

/// Sets the outcomes of many instances at once: reads their records (BatchGetItem, 100 a call),
/// sets each one's outcome as [`record_outcome`] does, and writes them back whole
/// (BatchWriteItem, 25 a call), instead of one UpdateItem per instance. For a batch's verification:
/// by then nothing else writes those records (the send and its snapshots are done, the polls
/// write none). A record that is missing is created with its key and where it is.
pub async fn record_outcomes(store: &crate::store::RunStore, run_id: &str, updates: Vec<OutcomeUpdate>) -> Result<()> {
    let pk = crate::store::run_pk(run_id);
    let keys: Vec<(String, String)> = updates
        .iter()
        .map(|u| (pk.clone(), crate::store::instance_sk(&u.account, &u.region, &u.instance_id)))
        .collect();
    let mut existing: HashMap<String, Item> = store
        .get_items(&keys)
        .await?
        .into_iter()
        .filter_map(|item| Some((item.get("sk")?.as_s().ok()?.clone(), item)))
        .collect();
    let finished_at = n(crate::time::now_epoch_seconds());
    let items = updates
        .into_iter()
        .zip(keys)
        .map(|(update, (_, sk))| {
            let mut item = existing.remove(&sk).unwrap_or_else(|| {
                HashMap::from([
                    ("pk".to_owned(), s(&pk)),
                    ("sk".to_owned(), s(&sk)),
                    ("account".to_owned(), s(update.account.as_str())),
                    ("region".to_owned(), s(update.region.as_str())),
                    ("instanceId".to_owned(), s(&update.instance_id)),
                    ("expiresAt".to_owned(), store.expires_at()),
                ])
            });
            item.insert("outcome".to_owned(), s(update.outcome.as_str()));
            item.insert("finishedAt".to_owned(), finished_at.clone());
            match update.reason {
                Some(reason) => item.insert("reason".to_owned(), s(reason)),
                None => item.remove("reason"),
            };
            for (name, value) in update.extra {
                item.insert(name.to_owned(), value);
            }
            item
        })
        .collect();
    store.put_items(items).await
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
