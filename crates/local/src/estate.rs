//! A simulated estate: spoke accounts x regions with tagged instances, some of them not
//! patchable, so every inventory rule has something to bite on.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::Context;
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use futures::StreamExt;

use ec2patch_core::sessions::SpokeSessions;
use ec2patch_core::{AccountId, Region};

/// The AMI id every simulated instance uses (moto does not validate AMIs by default).
const AMI: &str = "ami-0ec2a7c0ffee00001";

/// What kind of instance a seeded instance is, and so what the inventory must make of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SeedKind {
    /// Tagged, running, SSM agent online: patchable.
    Patchable,
    /// Tagged and running, but not registered with SSM (`ec2patch:sim:managed=false`).
    Unmanaged,
    /// Tagged and running, registered with SSM but its agent lost (`ec2patch:sim:ping=ConnectionLost`).
    Offline,
    /// Running but without the patch tag: must never be in a wave.
    Untagged,
    /// Tagged but stopped: not patched (only running instances are).
    Stopped,
    /// Patchable, but its AWS-RunPatchBaseline fails (`ec2patch:sim:patch-outcome=failed`).
    PatchFails,
    /// Patchable, but its command never finishes (`ec2patch:sim:patch-seconds=1000000`).
    PatchHangs,
}

impl SeedKind {
    /// Whether the inventory must list this instance (as patchable or with a skip reason).
    pub fn in_inventory(self) -> bool {
        matches!(
            self,
            SeedKind::Patchable | SeedKind::Unmanaged | SeedKind::Offline | SeedKind::PatchFails | SeedKind::PatchHangs
        )
    }
}

impl fmt::Display for SeedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How many instances of each kind to create in every account x region.
#[derive(Debug, Clone)]
pub struct EstateSpec {
    pub accounts: usize,
    pub regions: Vec<String>,
    pub per_target: BTreeMap<SeedKind, usize>,
    /// The last this-many accounts refuse the hub's AssumeRole (their instances exist).
    pub denied_accounts: usize,
    /// Targets seeded at once.
    pub concurrency: usize,
    /// Number the accounts from here (to seed more accounts into an existing estate).
    pub first_account: usize,
}

impl Default for EstateSpec {
    fn default() -> Self {
        Self {
            accounts: 3,
            regions: vec!["us-east-1".to_owned(), "eu-west-1".to_owned()],
            per_target: BTreeMap::from([
                (SeedKind::Patchable, 3),
                (SeedKind::Unmanaged, 1),
                (SeedKind::Offline, 1),
                (SeedKind::Untagged, 1),
                (SeedKind::Stopped, 1),
            ]),
            denied_accounts: 0,
            concurrency: 8,
            first_account: 0,
        }
    }
}

impl EstateSpec {
    /// What an operator's local stack shows (`ec2patch local demo` and `local up`): per account x
    /// region, `patchable` patchable instances, one SSM does not manage and one without the patch
    /// tag; the last `denied` accounts refuse the hub.
    pub fn operator(accounts: usize, regions: &[String], patchable: usize, denied: usize) -> Self {
        Self {
            accounts,
            regions: regions.to_vec(),
            per_target: BTreeMap::from([
                (SeedKind::Patchable, patchable),
                (SeedKind::Unmanaged, 1),
                (SeedKind::Untagged, 1),
            ]),
            denied_accounts: denied,
            ..Self::default()
        }
    }
}

/// The `n`th simulated spoke account id (12 digits, never the hub's 111111111111).
pub fn spoke_account(n: usize) -> String {
    format!("{:012}", 200_000_000_000u64 + n as u64 + 1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededInstance {
    pub account: String,
    pub region: String,
    pub instance_id: String,
    pub kind: SeedKind,
}

#[derive(Debug, Clone, Default)]
pub struct Estate {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    /// Accounts whose role the hub cannot assume.
    pub denied: Vec<String>,
    pub instances: Vec<SeededInstance>,
}

impl Estate {
    /// The instances a correct inventory lists: right kind, in an account it can reach.
    pub fn expected_inventory(&self) -> impl Iterator<Item = &SeededInstance> {
        self.instances.iter().filter(|i| i.kind.in_inventory() && !self.denied.contains(&i.account))
    }
}

/// Creates the estate's instances in each spoke account, acting as that account's role.
pub async fn seed(sessions: &SpokeSessions, spec: &EstateSpec) -> anyhow::Result<Estate> {
    let accounts: Vec<String> = (spec.first_account..spec.first_account + spec.accounts).map(spoke_account).collect();
    seed_accounts(sessions, accounts, spec).await
}

/// Like [`seed`], in the given accounts (`spec.accounts` and `spec.first_account` are not used):
/// `ec2patch local up` seeds the account ids the README's examples name.
pub async fn seed_accounts(
    sessions: &SpokeSessions,
    accounts: Vec<String>,
    spec: &EstateSpec,
) -> anyhow::Result<Estate> {
    let targets: Vec<(String, String)> =
        accounts.iter().flat_map(|a| spec.regions.iter().map(move |r| (a.clone(), r.clone()))).collect();
    let results: Vec<anyhow::Result<Vec<SeededInstance>>> = futures::stream::iter(targets)
        .map(|(account, region)| async move { seed_target(sessions, spec, &account, &region).await })
        .buffer_unordered(spec.concurrency.max(1))
        .collect()
        .await;
    let mut instances = Vec::new();
    for result in results {
        instances.extend(result?);
    }
    instances.sort_by(|a, b| (&a.account, &a.region, &a.instance_id).cmp(&(&b.account, &b.region, &b.instance_id)));
    let denied = accounts.iter().rev().take(spec.denied_accounts).cloned().collect();
    Ok(Estate { accounts, regions: spec.regions.clone(), denied, instances })
}

async fn seed_target(
    sessions: &SpokeSessions,
    spec: &EstateSpec,
    account: &str,
    region: &str,
) -> anyhow::Result<Vec<SeededInstance>> {
    let account_id = AccountId::parse(account).context("spoke account id")?;
    let config = sessions.config_for(&account_id, &Region::new_unchecked(region)).await?;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let mut seeded = Vec::new();
    for (&kind, &count) in &spec.per_target {
        if count == 0 {
            continue;
        }
        let mut tags =
            vec![tag("Name", &format!("{account}-{region}-{kind}")), tag("ec2patch:sim:kind", &kind.to_string())];
        if kind != SeedKind::Untagged {
            tags.push(tag("PatchGroup", "default"));
        }
        match kind {
            SeedKind::Unmanaged => tags.push(tag("ec2patch:sim:managed", "false")),
            SeedKind::Offline => tags.push(tag("ec2patch:sim:ping", "ConnectionLost")),
            SeedKind::PatchFails => tags.push(tag("ec2patch:sim:patch-outcome", "failed")),
            SeedKind::PatchHangs => tags.push(tag("ec2patch:sim:patch-seconds", "1000000")),
            _ => {}
        }
        let count = i32::try_from(count).context("instance count")?;
        let output = ec2
            .run_instances()
            .image_id(AMI)
            .instance_type(InstanceType::T3Micro)
            .min_count(count)
            .max_count(count)
            .tag_specifications(
                TagSpecification::builder().resource_type(ResourceType::Instance).set_tags(Some(tags)).build(),
            )
            .send()
            .await
            .with_context(|| format!("RunInstances in account {account} region {region}"))?;
        let ids: Vec<String> = output.instances().iter().filter_map(|i| i.instance_id().map(str::to_owned)).collect();
        if kind == SeedKind::Stopped {
            ec2.stop_instances()
                .set_instance_ids(Some(ids.clone()))
                .send()
                .await
                .with_context(|| format!("StopInstances in account {account} region {region}"))?;
        }
        seeded.extend(ids.into_iter().map(|instance_id| SeededInstance {
            account: account.to_owned(),
            region: region.to_owned(),
            instance_id,
            kind,
        }));
    }
    Ok(seeded)
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}
