//! PreEC2Inventory: for every account x region target of a wave, find the running instances that
//! match all of the run's tag filters and whether SSM manages them. First, a wave that follows
//! another checks its gate ([`ec2patch_core::wave_gate`]): closed, it inventories nothing.
//! For the SSM-managed instances it also reads their patch state (missing, failed, installed
//! patches), the "before" of the report's compliance.
//!
//! The full result (every target, every instance) is recorded: one S3 manifest per wave and one
//! DynamoDB item per instance and per target. The state machine only gets counts and a pointer,
//! so its payloads stay small however large the estate. A target that fails (role not
//! assumable, calls refused or throttled) is recorded with its reason; the others complete.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::types::Filter as Ec2Filter;
use aws_sdk_ssm::types::InstanceInformationStringFilter;
use ec2patch_core::aws::AwsResultExt;
use ec2patch_core::error_budget;
use ec2patch_core::instance_records;
use ec2patch_core::status::{InstanceOutcome, InventoryStatus};
use ec2patch_core::store::{self, Item, ObjectRef, n, s};
pub use ec2patch_core::wave::{
    BatchManifest, DiscoveredInstance, MAX_FAILURES_IN_SUMMARY, PatchCounts, SsmStatus, TargetFailure, TargetManifest,
    WaveInventory, WaveManifest,
};
use ec2patch_core::wave_gate;
use ec2patch_core::{Error, Hub, Result, RunPlan, TagFilter, Target, Wave};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;

/// DescribeInstanceInformation's `InstanceIds` filter takes at most 50 values.
const INSTANCE_IDS_PER_FILTER: usize = 50;
/// Attempts per target when its calls stay throttled or unavailable after the SDK's own retries
/// (0.5 s, 1 s, 2 s apart, plus jitter): across 1000 accounts a burst of throttling is normal, and a target
/// given up on is a target left unpatched this wave. Definite errors (denied role) fail at once.
const TARGET_ATTEMPTS: u32 = 4;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InventoryRequest {
    pub run_id: String,
    pub wave_index: usize,
}

pub async fn handle(hub: &Hub, request: InventoryRequest) -> Result<WaveInventory> {
    let started_at = ec2patch_core::time::now_epoch_seconds();
    let plan = hub.store.load_plan(&request.run_id).await?;
    let wave = plan.waves.get(request.wave_index).ok_or_else(|| {
        Error::invalid(
            "waveIndex",
            format!("run {} has {} waves, got index {}", plan.run_id, plan.waves.len(), request.wave_index),
        )
    })?;
    let gate = check_gate(hub, &plan, wave, started_at).await?;
    let sessions = hub.read_only_spoke_sessions(&plan.run_id);
    let sessions = &sessions;
    let filters = &plan.tag_filters;
    let run_id = plan.run_id.as_str();
    let wave_index = request.wave_index;

    let mut records_of_wave: Vec<Item> = Vec::new();
    let mut targets: Vec<TargetManifest> = futures::stream::iter(wave.targets())
        .map(|target| async move {
            let mut attempt = 1;
            let result = loop {
                let result = async {
                    let config = sessions.config_for(&target.account, &target.region).await?;
                    discover_target(&aws_sdk_ec2::Client::new(&config), &aws_sdk_ssm::Client::new(&config), filters, &target)
                        .await
                }
                .await;
                match result {
                    Err(error) if error.is_transient() && attempt < TARGET_ATTEMPTS => {
                        // Jitter, so targets throttled together do not come back together.
                        let wait = Duration::from_millis(500 * 2u64.pow(attempt - 1) + fastrand::u64(0..250));
                        tracing::info!(account = %target.account, region = %target.region, attempt, %error, "target inventory throttled or unavailable; trying the target again");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    other => break other,
                }
            };
            let manifest = match result {
                Ok(instances) => TargetManifest {
                    account: target.account.to_string(),
                    region: target.region.to_string(),
                    failure: None,
                    record_parts: instance_records::parts_for(instances.len()),
                    instances,
                },
                Err(error) => {
                    tracing::warn!(account = %target.account, region = %target.region, error_type = error.error_type(), %error, "target inventory failed");
                    TargetManifest {
                        account: target.account.to_string(),
                        region: target.region.to_string(),
                        failure: Some(TargetFailure {
                            account: target.account.to_string(),
                            region: target.region.to_string(),
                            error_type: error.error_type().to_owned(),
                            message: error.to_string(),
                        }),
                        instances: Vec::new(),
                        record_parts: 1,
                    }
                }
            };
            let records = target_records(run_id, wave_index, &target, &manifest, hub.store.expires_at());
            Ok::<_, Error>((manifest, records))
        })
        .buffer_unordered(hub.config.inventory_concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .map(|(manifest, records)| {
            records_of_wave.extend(records);
            manifest
        })
        .collect();
    write_records(hub, records_of_wave).await?;
    targets.sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));

    let manifest = WaveManifest {
        run_id: plan.run_id.clone(),
        wave_index: request.wave_index,
        wave_name: wave.name.clone(),
        tag_filters: plan.tag_filters.clone(),
        targets,
    };
    let manifest_ref = hub.store.put_json(&store::manifest_key(&plan.run_id, request.wave_index), &manifest).await?;
    let batches = batch_manifests(&manifest, hub.config.patching.targets_per_batch);
    // One object per batch (a 1000-target wave has 100): written side by side, at the same
    // bound as the inventory's spoke calls, not one round trip after another.
    // By index: a borrowed item in a spawned-future stream trips the compiler's higher-ranked
    // lifetime inference (rust-lang/rust#102211).
    let (run_id, wave_index, batches_ref) = (plan.run_id.as_str(), request.wave_index, &batches);
    futures::stream::iter(0..batches.len())
        .map(|index| async move {
            let batch = &batches_ref[index];
            hub.store.put_json(&store::batch_key(run_id, wave_index, batch.batch), batch).await
        })
        .buffer_unordered(hub.config.inventory_concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    let mut summary = summarize(&manifest, manifest_ref);
    summary.batches = batches.len();
    summary.batch_indexes = (0..batches.len()).collect();
    record_wave(hub, &summary, started_at, gate).await?;
    tracing::info!(
        run_id = %summary.run_id, wave = summary.wave_index, targets = summary.targets, failed = summary.targets_failed,
        instances = summary.instances, patchable = summary.patchable, "wave inventoried"
    );
    Ok(summary)
}

/// Targets with at least one patchable instance, `per_batch` to a batch, in manifest order.
pub fn batch_manifests(manifest: &WaveManifest, per_batch: usize) -> Vec<BatchManifest> {
    let patchable: Vec<TargetManifest> = manifest
        .targets
        .iter()
        .filter(|t| t.failure.is_none())
        .map(|t| TargetManifest {
            instances: t.instances.iter().filter(|i| i.is_patchable()).cloned().collect(),
            ..t.clone()
        })
        .filter(|t| !t.instances.is_empty())
        .collect();
    patchable
        .chunks(per_batch.max(1))
        .enumerate()
        .map(|(batch, targets)| BatchManifest {
            run_id: manifest.run_id.clone(),
            wave_index: manifest.wave_index,
            batch,
            targets: targets.to_vec(),
        })
        .collect()
}

/// Lists the target's running instances matching every tag filter, and asks SSM which of them
/// it manages.
pub async fn discover_target(
    ec2: &aws_sdk_ec2::Client,
    ssm: &aws_sdk_ssm::Client,
    filters: &[TagFilter],
    target: &Target,
) -> Result<Vec<DiscoveredInstance>> {
    let context = || target.to_string();
    let mut request =
        ec2.describe_instances().filters(Ec2Filter::builder().name("instance-state-name").values("running").build());
    for filter in filters {
        request = request.filters(
            Ec2Filter::builder().name(format!("tag:{}", filter.key)).set_values(Some(filter.values.clone())).build(),
        );
    }
    let mut instances = Vec::new();
    let mut pages = request.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.aws_context("DescribeInstances", context)?;
        for instance in page.reservations().iter().flat_map(|r| r.instances()) {
            let Some(instance_id) = instance.instance_id() else { continue };
            // The filter already guarantees this; checking again keeps a misbehaving endpoint
            // (or emulator) from putting an untagged instance into a patch wave.
            if !matches_all(instance.tags(), filters) {
                continue;
            }
            instances.push(DiscoveredInstance {
                instance_id: instance_id.to_owned(),
                name: instance
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some("Name"))
                    .and_then(|t| t.value())
                    .map(str::to_owned),
                platform: instance.platform_details().unwrap_or("Linux/UNIX").to_owned(),
                instance_type: instance.instance_type().map(|t| t.as_str().to_owned()),
                availability_zone: instance.placement().and_then(|p| p.availability_zone()).map(str::to_owned),
                ssm: SsmStatus::NotManaged,
                patch_state: None,
            });
        }
    }

    let mut ping: HashMap<String, String> = HashMap::new();
    let ids: Vec<String> = instances.iter().map(|i| i.instance_id.clone()).collect();
    for chunk in ids.chunks(INSTANCE_IDS_PER_FILTER) {
        let mut pages = ssm
            .describe_instance_information()
            .filters(
                InstanceInformationStringFilter::builder()
                    .key("InstanceIds")
                    .set_values(Some(chunk.to_vec()))
                    .build()
                    .map_err(|e| Error::invalid("instanceIds", e.to_string()))?,
            )
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.aws_context("DescribeInstanceInformation", context)?;
            for info in page.instance_information_list() {
                if let Some(id) = info.instance_id() {
                    let status =
                        info.ping_status().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "Unknown".to_owned());
                    ping.insert(id.to_owned(), status);
                }
            }
        }
    }
    for instance in &mut instances {
        instance.ssm = match ping.get(&instance.instance_id).map(String::as_str) {
            Some("Online") => SsmStatus::Online,
            Some(other) => SsmStatus::Offline { ping_status: other.to_owned() },
            None => SsmStatus::NotManaged,
        };
    }
    let online: Vec<String> = instances.iter().filter(|i| i.is_patchable()).map(|i| i.instance_id.clone()).collect();
    let states = patch_states(ssm, &online, target).await;
    for instance in &mut instances {
        instance.patch_state = states.get(&instance.instance_id).copied();
    }
    instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(instances)
}

/// SSM's patch state of `ids` (50 per call). Compliance is reported, not acted on: a refused or
/// failing call leaves the states unknown (logged with the target) instead of failing a target
/// whose instances can be patched.
async fn patch_states(ssm: &aws_sdk_ssm::Client, ids: &[String], target: &Target) -> HashMap<String, PatchCounts> {
    let mut states = HashMap::new();
    for chunk in ids.chunks(INSTANCE_IDS_PER_FILTER) {
        let mut pages =
            ssm.describe_instance_patch_states().set_instance_ids(Some(chunk.to_vec())).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = match page.aws_context("DescribeInstancePatchStates", || target.to_string()) {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%target, %error, "patch states unknown: compliance before patching is not recorded");
                    return states;
                }
            };
            for state in page.instance_patch_states() {
                states.insert(
                    state.instance_id().to_owned(),
                    PatchCounts {
                        missing: state.missing_count(),
                        failed: state.failed_count(),
                        installed: state.installed_count(),
                        installed_pending_reboot: state.installed_pending_reboot_count().unwrap_or_default(),
                    },
                );
            }
        }
    }
    states
}

fn matches_all(tags: &[aws_sdk_ec2::types::Tag], filters: &[TagFilter]) -> bool {
    filters.iter().all(|filter| {
        tags.iter().any(|tag| {
            tag.key() == Some(filter.key.as_str()) && tag.value().is_some_and(|v| filter.values.iter().any(|f| f == v))
        })
    })
}

pub fn summarize(manifest: &WaveManifest, manifest_ref: ObjectRef) -> WaveInventory {
    let instances = manifest.targets.iter().flat_map(|t| &t.instances);
    let count = |pred: &dyn Fn(&DiscoveredInstance) -> bool| instances.clone().filter(|i| pred(i)).count();
    let failures: Vec<TargetFailure> = manifest.targets.iter().filter_map(|t| t.failure.clone()).collect();
    WaveInventory {
        run_id: manifest.run_id.clone(),
        wave_index: manifest.wave_index,
        wave_name: manifest.wave_name.clone(),
        targets: manifest.targets.len(),
        targets_failed: failures.len(),
        instances: instances.clone().count(),
        patchable: count(&DiscoveredInstance::is_patchable),
        offline: count(&|i| matches!(i.ssm, SsmStatus::Offline { .. })),
        unmanaged: count(&|i| i.ssm == SsmStatus::NotManaged),
        failures_omitted: failures.len().saturating_sub(MAX_FAILURES_IN_SUMMARY),
        failures: failures.into_iter().take(MAX_FAILURES_IN_SUMMARY).collect(),
        manifest: manifest_ref,
        batches: 0,
        batch_indexes: Vec::new(),
    }
}

/// Writes the wave's records 25 to a BatchWriteItem packed across targets (a target of a few
/// instances costs a fraction of a call, not one of its own), `inventory_concurrency` calls at
/// a time.
async fn write_records(hub: &Hub, mut records: Vec<Item>) -> Result<()> {
    let mut chunks = Vec::with_capacity(records.len().div_ceil(store::BATCH_WRITE_LIMIT));
    while !records.is_empty() {
        let rest = records.split_off(records.len().min(store::BATCH_WRITE_LIMIT));
        chunks.push(std::mem::replace(&mut records, rest));
    }
    futures::stream::iter(chunks)
        .map(|chunk| hub.store.put_items(chunk))
        .buffer_unordered(hub.config.inventory_concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// One item for the target and its instance records, a group per part
/// ([`instance_records`]). Instances SSM cannot patch get their final outcome (`skipped` with
/// the reason) now; patchable ones start as `pending`.
fn target_records(
    run_id: &str,
    wave_index: usize,
    target: &Target,
    manifest: &TargetManifest,
    expires_at: AttributeValue,
) -> Vec<Item> {
    let pk = store::run_pk(run_id);
    let mut target_item: Item = HashMap::from([
        ("pk".to_owned(), s(&pk)),
        ("sk".to_owned(), s(store::target_sk(wave_index, &target.account, &target.region))),
        ("wave".to_owned(), n(wave_index)),
        ("account".to_owned(), s(target.account.as_str())),
        ("region".to_owned(), s(target.region.as_str())),
        ("instances".to_owned(), n(manifest.instances.len())),
        ("patchable".to_owned(), n(manifest.instances.iter().filter(|i| i.is_patchable()).count())),
        ("expiresAt".to_owned(), expires_at.clone()),
    ]);
    match &manifest.failure {
        Some(failure) => {
            target_item.insert("status".to_owned(), s(InventoryStatus::Failed.as_str()));
            target_item.insert("errorType".to_owned(), s(&failure.error_type));
            target_item.insert("error".to_owned(), s(&failure.message));
        }
        None => {
            target_item.insert("status".to_owned(), s(InventoryStatus::Inventoried.as_str()));
        }
    }
    let mut items = vec![target_item];
    if manifest.instances.is_empty() {
        return items;
    }
    let records = manifest
        .instances
        .iter()
        .map(|instance| {
            let mut record: Item = HashMap::from([
                ("platform".to_owned(), s(&instance.platform)),
                ("ssm".to_owned(), s(ssm_label(&instance.ssm))),
            ]);
            if let Some(name) = &instance.name {
                record.insert("name".to_owned(), s(name));
            }
            if let Some(state) = &instance.patch_state {
                record.insert("missingBefore".to_owned(), n(state.missing));
                record.insert("failedBefore".to_owned(), n(state.failed));
                record.insert("installedBefore".to_owned(), n(state.installed));
            }
            match instance.skip_reason() {
                Some(reason) => {
                    record.insert("outcome".to_owned(), s(InstanceOutcome::Skipped.as_str()));
                    record.insert("reason".to_owned(), s(reason));
                }
                None => {
                    record.insert("outcome".to_owned(), s(InstanceOutcome::Pending.as_str()));
                }
            }
            (instance.instance_id.clone(), record)
        })
        .collect();
    items.extend(instance_records::group_items(
        run_id,
        wave_index,
        (&target.account, &target.region),
        records,
        expires_at,
    ));
    items
}

fn ssm_label(status: &SsmStatus) -> &str {
    match status {
        SsmStatus::Online => "Online",
        SsmStatus::Offline { ping_status } => ping_status,
        SsmStatus::NotManaged => "NotManaged",
    }
}

/// The wave's gate ([`wave_gate`]), checked before anything is inventoried: closed fails the wave
/// with `WaveGateClosed` (the run stops), unless the run ignores gates; then what the gate found
/// and who overrode it go on the wave's record. `None`: the wave has no gate.
async fn check_gate(hub: &Hub, plan: &RunPlan, wave: &Wave, now: u64) -> Result<Option<String>> {
    let Some(gate) = &wave.gate else { return Ok(None) };
    if plan.dry_run {
        return Ok(Some(format!("not checked (dry run): follows {}", gate.after)));
    }
    match wave_gate::check(&hub.store, &wave.name, gate, now).await {
        Ok(open) => Ok(Some(open)),
        Err(closed @ Error::WaveGateClosed { .. }) if plan.ignore_gates => {
            let who = plan.started_by.as_deref().unwrap_or("an unnamed caller");
            tracing::warn!(run_id = %plan.run_id, wave = %wave.name, started_by = who, %closed, "wave gate closed, ignored (ignoreGates)");
            Ok(Some(format!("ignored by {who} (ignoreGates): {closed}")))
        }
        Err(error) => Err(error),
    }
}

async fn record_wave(hub: &Hub, summary: &WaveInventory, started_at: u64, gate: Option<String>) -> Result<()> {
    let mut item: Item = HashMap::from([
        ("pk".to_owned(), s(store::run_pk(&summary.run_id))),
        ("sk".to_owned(), s(store::wave_sk(summary.wave_index))),
        ("waveName".to_owned(), s(&summary.wave_name)),
        ("status".to_owned(), s(InventoryStatus::Inventoried.as_str())),
        ("targets".to_owned(), n(summary.targets)),
        ("targetsFailed".to_owned(), n(summary.targets_failed)),
        ("instances".to_owned(), n(summary.instances)),
        ("patchable".to_owned(), n(summary.patchable)),
        ("offline".to_owned(), n(summary.offline)),
        ("unmanaged".to_owned(), n(summary.unmanaged)),
        ("manifestKey".to_owned(), AttributeValue::S(summary.manifest.key.clone())),
        ("startedAt".to_owned(), n(started_at)),
        // PostEC2Verify sets each verified batch's failures here (error budgets).
        (error_budget::BATCH_FAILURES_ATTRIBUTE.to_owned(), AttributeValue::M(HashMap::new())),
        ("expiresAt".to_owned(), hub.store.expires_at()),
    ]);
    if let Some(gate) = gate {
        item.insert("gate".to_owned(), s(gate));
    }
    hub.store.put_item(item).await
}
