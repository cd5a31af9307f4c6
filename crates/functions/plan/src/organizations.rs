//! AWS Organizations targeting: a wave may name OUs (or a root) instead of, or besides, account
//! ids. PlanRun resolves them once, before the run lock is taken, into the wave's `accounts`,
//! and the stored plan keeps where each account came from ([`AccountSource`]) and which ones
//! were left out ([`LeftOutAccount`]): every later step, a resumed run and the report see the
//! same list, however the organization changes meanwhile.
//!
//! Rules: nested OUs count (the walk is recursive); only `ACTIVE` accounts are patched
//! (`SUSPENDED` and `PENDING_CLOSURE` ones are recorded as left out); `excludeAccounts` wins over
//! every OU; an account an OU brings into a later wave that an earlier wave already patches is
//! left out of the later one (so "the canary OU, then the root" means "then everything else"),
//! while the same account *listed* in two waves stays an error; a wave whose OUs resolve to no
//! account is an error naming the field.

use std::collections::{BTreeSet, VecDeque};

use aws_sdk_organizations::Client;
use aws_sdk_organizations::types::{AccountStatus, ChildType};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use ec2patch_core::plan::{AccountSource, LeftOutAccount};
use ec2patch_core::sessions;
use ec2patch_core::{AccountId, Error, Hub, Result, RunPlan};

/// OUs visited per wave at most: a guard against an organization walk that never ends.
const MAX_OUS_VISITED: usize = 5_000;

/// An account found under an OU: its id, status and the OU it sits in directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundAccount {
    pub account: AccountId,
    pub status: String,
    pub parent: String,
}

/// The Organizations client PlanRun reads with: the hub's own role, or the role Terraform's
/// `organizations_role_arn` names (in the management or a delegated administrator account).
pub async fn client(hub: &Hub, run_id: &str) -> Result<Client> {
    match &hub.config.organizations_role_arn {
        None => Ok(Client::new(&hub.sdk)),
        Some(role_arn) => {
            let config = sessions::assume_role_config(&hub.sdk, role_arn, &format!("ec2patch-plan-{run_id}")).await?;
            Ok(Client::new(&config))
        }
    }
}

/// Resolves every wave's `organizationalUnits` into its `accounts`. `field` names a wave's
/// input path (`accountWaves[0]`, or "" for the API shape) for errors.
pub async fn resolve(client: &Client, plan: &mut RunPlan, field: impl Fn(usize) -> String) -> Result<()> {
    // Accounts of earlier waves, for "an OU does not bring back what an earlier wave patches".
    let mut earlier: Vec<(BTreeSet<AccountId>, String)> = Vec::new();
    for (index, wave) in plan.waves.iter_mut().enumerate() {
        if !wave.organizational_units.is_empty() {
            let at = field(index);
            let path = |leaf: &str| if at.is_empty() { leaf.to_owned() } else { format!("{at}.{leaf}") };
            let mut sources: Vec<AccountSource> = wave
                .accounts
                .iter()
                .map(|account| AccountSource { account: account.clone(), from: "accounts".to_owned(), parent: None })
                .collect();
            let mut left_out: Vec<LeftOutAccount> = Vec::new();
            for (i, ou) in wave.organizational_units.iter().enumerate() {
                let found = accounts_under(client, ou, &path(&format!("organizationalUnits[{i}]"))).await?;
                for FoundAccount { account, status, parent } in found {
                    let already =
                        sources.iter().any(|s| s.account == account) || left_out.iter().any(|l| l.account == account);
                    if already {
                        continue;
                    }
                    let reason = if wave.exclude_accounts.contains(&account) {
                        Some("excluded (excludeAccounts)".to_owned())
                    } else if status != AccountStatus::Active.as_str() {
                        Some(status)
                    } else {
                        earlier
                            .iter()
                            .enumerate()
                            .find(|(_, (accounts, _))| accounts.contains(&account))
                            .map(|(n, (_, name))| format!("in an earlier wave ({}. {name})", n + 1))
                    };
                    match reason {
                        Some(reason) => left_out.push(LeftOutAccount { account, reason, parent }),
                        None => sources.push(AccountSource { account, from: ou.clone(), parent: Some(parent) }),
                    }
                }
            }
            if sources.is_empty() {
                return Err(Error::invalid(
                    path("organizationalUnits"),
                    format!("resolved to no account to patch ({} left out: {})", left_out.len(), summarize(&left_out)),
                ));
            }
            wave.accounts = sources.iter().map(|s| s.account.clone()).collect();
            wave.account_sources = sources;
            wave.left_out = left_out;
        }
        earlier.push((wave.accounts.iter().cloned().collect(), wave.name.clone()));
    }
    ec2patch_core::input::check_one_wave_per_target(&plan.waves)
}

/// Every account under `ou`, nested OUs included, breadth first; `field` names the OU in
/// errors.
pub async fn accounts_under(client: &Client, ou: &str, field: &str) -> Result<Vec<FoundAccount>> {
    let mut found = Vec::new();
    let mut queue = VecDeque::from([ou.to_owned()]);
    let mut visited = 0;
    while let Some(parent) = queue.pop_front() {
        visited += 1;
        if visited > MAX_OUS_VISITED {
            return Err(Error::invalid(field, format!("{ou} holds more than {MAX_OUS_VISITED} OUs")));
        }
        let mut accounts = client.list_accounts_for_parent().parent_id(&parent).into_paginator().send();
        while let Some(page) = accounts.next().await {
            let page = page.map_err(|e| organizations_error("ListAccountsForParent", &parent, field, e))?;
            for account in page.accounts.unwrap_or_default() {
                let Some(id) = account.id.as_deref().and_then(AccountId::parse) else { continue };
                let status = account.status.map_or_else(|| "UNKNOWN".to_owned(), |s| s.as_str().to_owned());
                found.push(FoundAccount { account: id, status, parent: parent.clone() });
            }
        }
        let mut children =
            client.list_children().parent_id(&parent).child_type(ChildType::OrganizationalUnit).into_paginator().send();
        while let Some(page) = children.next().await {
            let page = page.map_err(|e| organizations_error("ListChildren", &parent, field, e))?;
            queue.extend(page.children.unwrap_or_default().into_iter().filter_map(|child| child.id));
        }
    }
    Ok(found)
}

/// An OU that does not exist is the input's fault (InvalidInput naming the field); anything
/// else (access denied, throttling, no organization) is classified like every AWS error, with the
/// OU as context.
fn organizations_error<E>(operation: &str, parent: &str, field: &str, error: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = error.code().unwrap_or_default();
    if matches!(code, "ParentNotFoundException" | "InvalidInputException") {
        let message = error.message().unwrap_or_default();
        return Error::invalid(
            field,
            format!("{parent} is not an OU or root of this organization ({code}: {message})"),
        );
    }
    ec2patch_core::aws::classify(operation, &format!("parent {parent} ({field})"), error)
}

/// `2 SUSPENDED, 1 excluded (excludeAccounts)`.
fn summarize(left_out: &[LeftOutAccount]) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for account in left_out {
        *counts.entry(account.reason.as_str()).or_default() += 1;
    }
    if counts.is_empty() {
        return "the OUs hold no accounts".to_owned();
    }
    counts.iter().map(|(reason, n)| format!("{n} {reason}")).collect::<Vec<_>>().join(", ")
}
