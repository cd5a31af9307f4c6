//! Reading what a run recorded in DynamoDB, and the approval emails, for the assertions.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use ec2patch_core::store::{self, Item};
use ec2patch_local::LocalStack;

/// A record with its attributes in name order (readable in assertion messages).
pub type Record = BTreeMap<String, AttributeValue>;

/// A record's attributes, as the SDK returns them (`Item`) or sorted ([`Record`]).
pub trait Attributes {
    fn attribute(&self, name: &str) -> Option<&AttributeValue>;
}

impl Attributes for Item {
    fn attribute(&self, name: &str) -> Option<&AttributeValue> {
        self.get(name)
    }
}

impl Attributes for Record {
    fn attribute(&self, name: &str) -> Option<&AttributeValue> {
        self.get(name)
    }
}

impl<T: Attributes> Attributes for &T {
    fn attribute(&self, name: &str) -> Option<&AttributeValue> {
        (**self).attribute(name)
    }
}

/// A text attribute, borrowed; empty when absent or not text.
pub fn text_str<'a>(item: &'a impl Attributes, name: &str) -> &'a str {
    item.attribute(name).and_then(|v| v.as_s().ok()).map(String::as_str).unwrap_or_default()
}

/// A text attribute; empty when absent or not text.
pub fn text(item: &impl Attributes, name: &str) -> String {
    text_str(item, name).to_owned()
}

/// The run's records whose sort key starts with `sk_prefix` (`TARGET#`, `COMMAND#`, ...).
pub async fn records(stack: &LocalStack, run_id: &str, sk_prefix: &str) -> Vec<Record> {
    stack
        .hub
        .store
        .query_prefix(&store::run_pk(run_id), sk_prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|item| item.into_iter().collect())
        .collect()
}

/// The run's instance records, one per instance as the groups hold them
/// ([`ec2patch_core::instance_records::query`]), in wave, account, region, instance order.
pub async fn instance_list(stack: &LocalStack, run_id: &str) -> Vec<Record> {
    ec2patch_core::instance_records::query(&stack.hub.store, run_id)
        .await
        .unwrap()
        .into_iter()
        .map(|item| item.into_iter().collect())
        .collect()
}

/// The run's instance records by instance id.
pub async fn instance_records(stack: &LocalStack, run_id: &str) -> BTreeMap<String, Item> {
    ec2patch_core::instance_records::query(&stack.hub.store, run_id)
        .await
        .unwrap()
        .into_iter()
        .map(|item: HashMap<String, AttributeValue>| (text(&item, "instanceId"), item))
        .collect()
}

/// The link after `label` (e.g. `Approve:`) in an email; panics, showing the email, when none.
pub fn link_after(mail: &str, label: &str) -> String {
    ec2patch_local::approvals::link_after(mail, label).unwrap_or_else(|| panic!("no {label} link in:\n{mail}"))
}
