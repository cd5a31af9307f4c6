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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub sk: String,
    pub account: AccountId,
    pub region: Region,
    pub instance_ids: Vec<String>,
    pub claimed_at: u64,
    pub command_id: Option<String>,
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
        })
    }

    pub fn context(&self) -> String {
        match &self.command_id {
            Some(id) => format!("account {} region {} command {id}", self.account, self.region),
            None => format!("account {} region {}", self.account, self.region),
        }
    }
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

/// One instance's view of a command.
#[derive(Debug, Clone, PartialEq)]
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
