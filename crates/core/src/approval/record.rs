//! The approval record: `pk = APPROVAL#<id>`, `sk = APPROVAL`, written pending by
//! SendApprovalRequest and decided once, conditionally, by the callback or the CLI.
//!
//! Written with it, an entry in the index of pending approvals (`pk = APPROVALS#PENDING`,
//! `sk = <linkExpiresAt, 10 digits>#<id>`): the approval monitor finds the live approvals with
//! one Query of that small partition instead of a Scan of the whole table every five minutes
//! (which on a fleet's table reads every instance record). The record stays the truth: an
//! entry only says where to look, and the monitor drops the entries of decided approvals.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::{ApprovalDetails, TaskToken};
use crate::store::{Item, n, s};
use crate::{Error, Result};

/// Approval records: `pk = APPROVAL#<id>`, `sk = APPROVAL`.
pub fn approval_pk(id: &str) -> String {
    format!("APPROVAL#{id}")
}

pub const APPROVAL_SK: &str = "APPROVAL";

/// The partition of the pending-approval index.
pub const PENDING_INDEX_PK: &str = "APPROVALS#PENDING";

/// An index entry's sort key: by link expiry, so a Query reads only approvals still open.
pub fn pending_index_sk(link_expires_at: u64, id: &str) -> String {
    format!("{link_expires_at:010}#{id}")
}

/// The sort keys above which the entries of approvals whose links are still valid at `now` lie
/// (`#~` sorts after `#` and any hex id, so links expiring exactly at `now` are left out).
pub fn pending_index_floor(now: u64) -> String {
    format!("{now:010}#~")
}

/// Under the run (`pk = RUN#<run>`), the pointer to a wave's approval: `APPROVAL#<wave 000>`.
pub fn run_approval_sk(wave_index: usize) -> String {
    format!("APPROVAL#{wave_index:03}")
}

/// An approval's status. Only `pending` may change, once, to `approved` or `rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [ApprovalStatus::Pending, ApprovalStatus::Approved, ApprovalStatus::Rejected]
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

impl fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a recorded decision reached the waiting execution (`notified` on the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notified {
    /// Recorded, not delivered yet: a replayed POST (or the same CLI command) delivers it.
    No,
    /// SendTaskSuccess/SendTaskFailure went through.
    Yes,
    /// The execution had stopped waiting: nothing left to deliver.
    TaskClosed,
}

impl Notified {
    pub fn as_str(self) -> &'static str {
        match self {
            Notified::No => "no",
            Notified::Yes => "yes",
            Notified::TaskClosed => "task-closed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Notified::No, Notified::Yes, Notified::TaskClosed].into_iter().find(|n| n.as_str() == value)
    }
}

/// A recorded decision, shown on the "already decided" page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub status: ApprovalStatus,
    pub decided_by: String,
    pub decided_at: String,
    pub source_ip: String,
}

/// An approval as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    pub id: String,
    pub details: ApprovalDetails,
    pub task_token: TaskToken,
    /// `None` while pending.
    pub decision: Option<Decision>,
    /// `None` while pending.
    pub notified: Option<Notified>,
}

impl ApprovalRecord {
    /// A new, pending approval.
    pub fn pending(id: &str, task_token: TaskToken, details: ApprovalDetails) -> Self {
        Self { id: id.to_owned(), details, task_token, decision: None, notified: None }
    }

    pub fn status(&self) -> ApprovalStatus {
        self.decision.as_ref().map_or(ApprovalStatus::Pending, |d| d.status)
    }

    /// The item, with the time it was requested and its TTL attribute.
    pub fn to_item(&self, requested_at: u64, expires_at: AttributeValue) -> Result<Item> {
        let details_json = serde_json::to_string(&self.details).map_err(|e| Error::StateStoreFailed(e.to_string()))?;
        let mut item: Item = HashMap::from([
            ("pk".to_owned(), s(approval_pk(&self.id))),
            ("sk".to_owned(), s(APPROVAL_SK)),
            ("approvalId".to_owned(), s(&self.id)),
            ("runId".to_owned(), s(&self.details.run_id)),
            ("waveIndex".to_owned(), n(self.details.wave_index)),
            ("status".to_owned(), s(self.status().as_str())),
            ("taskToken".to_owned(), s(self.task_token.expose())),
            ("details".to_owned(), s(details_json)),
            ("linkExpiresAt".to_owned(), n(self.details.link_expires_at)),
            ("requestedAt".to_owned(), n(requested_at)),
            ("expiresAt".to_owned(), expires_at),
        ]);
        if let Some(decision) = &self.decision {
            item.insert("decidedBy".to_owned(), s(&decision.decided_by));
            item.insert("decidedAt".to_owned(), s(&decision.decided_at));
            item.insert("sourceIp".to_owned(), s(&decision.source_ip));
        }
        if let Some(notified) = self.notified {
            item.insert("notified".to_owned(), s(notified.as_str()));
        }
        Ok(item)
    }

    /// The record's entry in the index of pending approvals, with the record's TTL attribute.
    pub fn pending_index_item(&self, expires_at: AttributeValue) -> Item {
        HashMap::from([
            ("pk".to_owned(), s(PENDING_INDEX_PK)),
            ("sk".to_owned(), s(pending_index_sk(self.details.link_expires_at, &self.id))),
            ("approvalId".to_owned(), s(&self.id)),
            ("expiresAt".to_owned(), expires_at),
        ])
    }

    /// Reads approval `id`'s item; a record whose details or status cannot be read is an error.
    pub fn from_item(id: &str, item: &Item) -> Result<Self> {
        let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned();
        let details: ApprovalDetails = serde_json::from_str(&text("details").unwrap_or_default())
            .map_err(|e| Error::StateStoreFailed(format!("approval {id} has unreadable details: {e}")))?;
        let status_text = text("status").unwrap_or_default();
        let status = ApprovalStatus::parse(&status_text)
            .ok_or_else(|| Error::StateStoreFailed(format!("approval {id} has an unknown status {status_text:?}")))?;
        let decision = (status != ApprovalStatus::Pending).then(|| Decision {
            status,
            decided_by: text("decidedBy").unwrap_or_default(),
            decided_at: text("decidedAt").unwrap_or_default(),
            source_ip: text("sourceIp").unwrap_or_default(),
        });
        Ok(Self {
            id: id.to_owned(),
            details,
            task_token: TaskToken::new(text("taskToken").unwrap_or_default()),
            decision,
            notified: text("notified").as_deref().and_then(Notified::parse),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::ObjectRef;

    /// A wave's approval details, for the tests of this module and of `decide`.
    pub(crate) fn details() -> ApprovalDetails {
        ApprovalDetails {
            run_id: "run-1".into(),
            wave_index: 1,
            wave_name: "fleet".into(),
            dry_run: false,
            accounts: vec!["222222222222".into()],
            accounts_total: 1,
            regions: vec!["us-east-1".into()],
            targets: 1,
            targets_failed: 0,
            instances: 3,
            patchable: 3,
            offline: 0,
            unmanaged: 0,
            analysis: None,
            manifest: ObjectRef { bucket: "b".into(), key: "k".into() },
            link_expires_at: 1_900_000_000,
        }
    }

    #[test]
    fn a_record_survives_its_item_pending_and_decided() {
        let pending = ApprovalRecord::pending(&"a".repeat(32), TaskToken::new("token".into()), details());
        let item = pending.to_item(1_800_000_000, n(1_900_000_000u64)).unwrap();
        assert_eq!(item.get("status").and_then(|v| v.as_s().ok()).map(String::as_str), Some("pending"));
        assert_eq!(ApprovalRecord::from_item(&pending.id, &item).unwrap(), pending);

        let decided = ApprovalRecord {
            decision: Some(Decision {
                status: ApprovalStatus::Rejected,
                decided_by: "iam:arn:aws:iam::1:user/x".into(),
                decided_at: "2026-11-29T10:00:00Z".into(),
                source_ip: "cli".into(),
            }),
            notified: Some(Notified::TaskClosed),
            ..pending
        };
        let item = decided.to_item(1_800_000_000, n(1_900_000_000u64)).unwrap();
        assert_eq!(ApprovalRecord::from_item(&decided.id, &item).unwrap(), decided);
    }

    #[test]
    fn unreadable_records_are_errors_naming_the_approval() {
        let pending = ApprovalRecord::pending("abc", TaskToken::new("t".into()), details());
        let mut item = pending.to_item(1, n(2)).unwrap();
        item.insert("status".into(), s("maybe"));
        let error = ApprovalRecord::from_item("abc", &item).unwrap_err().to_string();
        assert!(error.contains("abc") && error.contains("maybe"), "{error}");
        item.insert("details".into(), s("{"));
        assert!(ApprovalRecord::from_item("abc", &item).unwrap_err().to_string().contains("unreadable details"));
    }

    #[test]
    fn index_entries_sort_by_expiry_and_only_open_links_lie_above_the_floor() {
        let id = "0123456789abcdef0123456789abcdef";
        let at = |expiry: u64| pending_index_sk(expiry, id);
        assert!(at(999) < at(1_000) && at(1_000) < at(1_000_000_000), "zero-padded: text order is time order");
        let floor = pending_index_floor(1_000);
        assert!(at(1_001) > floor, "open one second more");
        assert!(at(1_000) < floor && at(999) < floor, "expired at or before now");
        let entry = ApprovalRecord::pending(id, TaskToken::new("t".into()), details()).pending_index_item(n(7));
        assert_eq!(entry.get("pk").and_then(|v| v.as_s().ok()).map(String::as_str), Some(PENDING_INDEX_PK));
        assert_eq!(entry.get("sk").and_then(|v| v.as_s().ok()), Some(&pending_index_sk(1_900_000_000, id)));
    }

    #[test]
    fn statuses_read_back_what_they_write() {
        for status in [ApprovalStatus::Pending, ApprovalStatus::Approved, ApprovalStatus::Rejected] {
            assert_eq!(ApprovalStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        for notified in [Notified::No, Notified::Yes, Notified::TaskClosed] {
            assert_eq!(Notified::parse(notified.as_str()), Some(notified));
        }
    }
}
