//! Inventory fan-out: the real PreEC2Inventory handler over one wave of N accounts x regions,
//! (a) against the emulator's own capacity for the same calls (a tight concurrent client that
//! makes them with no logic in between), and (b) with the router delaying every AWS call by a
//! realistic latency, against a sequential loop making the same calls one after another.
//!
//! The estate is seeded once; the timed comparisons are repeated `runs` times (each run plans
//! runs of its own), and every figure is the median of the runs' ratios with their min and max.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_ec2::types::Filter;
use aws_sdk_ssm::types::InstanceInformationStringFilter;
use ec2patch_core::Hub;
use ec2patch_core::config::HubConfig;
use ec2patch_local::{EstateSpec, FaultRule, LocalStack, SeedKind};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use crate::coldstart::Spread;

#[derive(Debug, Clone)]
pub struct FanOutOptions {
    pub accounts: usize,
    /// Regions of the fan-out wave (the figure: 2).
    pub regions: Vec<String>,
    /// One more region seeded and inventoried once, for the 1000 x 3 inventory summary size
    /// (the largest state payload's growing part); `None` skips it.
    pub extra_region: Option<String>,
    pub instances_per_target: usize,
    pub latency: Duration,
    /// Accounts the sequential loop covers; its time is scaled to all accounts by the number of
    /// targets (every target makes the same calls, one at a time, so the loop is linear).
    pub sequential_accounts: usize,
    /// A second latency run with this inventory concurrency (the deployed default is 16).
    pub wider_concurrency: usize,
    /// How many times the timed comparisons are made.
    pub runs: usize,
}

/// One run of the timed comparisons.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FanOutRun {
    /// (a) The handler, and the tight client making the same calls (it goes first).
    pub inventory_seconds: f64,
    pub raw_seconds: f64,
    /// (b) With `latency_ms` added to every AWS call: the handler at the deployed concurrency
    /// and at `wider_concurrency`, and the sequential loop over the sample, scaled.
    pub inventory_latency_seconds: f64,
    pub inventory_latency_wider_seconds: f64,
    pub sequential_sample_seconds: f64,
    pub sequential_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FanOut {
    pub accounts: usize,
    pub regions: usize,
    pub targets: usize,
    pub instances: usize,
    pub concurrency: usize,
    pub seed_seconds: f64,
    /// Each run's times, in order. The `*_seconds` fields below are their medians; the calls are
    /// the first run's.
    pub runs: Vec<FanOutRun>,
    /// (a) The handler as is, and the tight client making the same calls.
    pub inventory_seconds: f64,
    pub inventory_calls: BTreeMap<String, u64>,
    pub raw_seconds: f64,
    pub raw_calls: BTreeMap<String, u64>,
    /// (b) With `latency_ms` added to every AWS call.
    pub latency_ms: u64,
    pub inventory_latency_seconds: f64,
    /// The same at `wider_concurrency` targets at once.
    pub wider_concurrency: usize,
    pub inventory_latency_wider_seconds: f64,
    pub sequential_sample_targets: usize,
    pub sequential_sample_seconds: f64,
    /// The sample's time x targets / sample targets.
    pub sequential_seconds: f64,
    /// The inventory's answer (a `WaveInventory`) over accounts x (regions + extra region), in
    /// bytes of JSON: what the state machine carries of a wave of that size.
    pub summary_bytes_all_regions: Option<usize>,
    pub summary_targets_all_regions: Option<usize>,
}

impl FanOut {
    /// The spread of one measurement over the runs.
    pub fn spread(&self, pick: fn(&FanOutRun) -> f64) -> Spread {
        Spread::of(self.runs.iter().map(pick))
    }

    /// The spread of each run's `value / baseline`.
    pub fn ratio(&self, value: fn(&FanOutRun) -> f64, baseline: fn(&FanOutRun) -> f64) -> Spread {
        Spread::of(self.runs.iter().map(|run| value(run) / baseline(run)))
    }
}

/// Seeds the estate, runs the measurements, and leaves the router without latency.
pub async fn measure(stack: &LocalStack, options: &FanOutOptions) -> anyhow::Result<FanOut> {
    let mut seeded_regions = options.regions.clone();
    seeded_regions.extend(options.extra_region.clone());
    let seed_started = Instant::now();
    let estate = stack
        .seed(&EstateSpec {
            accounts: options.accounts,
            regions: seeded_regions.clone(),
            per_target: BTreeMap::from([(SeedKind::Patchable, options.instances_per_target)]),
            denied_accounts: 0,
            concurrency: 16,
            first_account: 10_000,
        })
        .await
        .context("seeding the fan-out estate")?;
    let seed_seconds = seed_started.elapsed().as_secs_f64();
    let targets: Vec<(String, String)> =
        estate.accounts.iter().flat_map(|a| options.regions.iter().map(move |r| (a.clone(), r.clone()))).collect();

    let concurrency = stack.hub.config.inventory_concurrency;
    let sample_accounts = &estate.accounts[..options.sequential_accounts.clamp(1, estate.accounts.len())];
    let sample: Vec<(String, String)> = targets.iter().filter(|(a, _)| sample_accounts.contains(a)).cloned().collect();
    let mut runs = Vec::new();
    let mut first_calls = None;
    for run in 0..options.runs.max(1) {
        // (a) The tight client first, so that whatever the emulator's growing state costs falls
        // on the handler, which runs second; then the real handler, in-process, as the router
        // would run it for the state machine. Each run writes records of its own (new run ids).
        let raw_started = Instant::now();
        stack.router.reset_calls();
        tight_client(stack, &targets, concurrency, &format!("raw-{run}")).await?;
        let raw_seconds = raw_started.elapsed().as_secs_f64();
        let raw_calls = stack.router.calls();
        let (inventory_seconds, inventory_calls, _) =
            inventory(stack, &stack.hub, &format!("bench-fanout-{run}"), &estate.accounts, &options.regions).await?;
        first_calls.get_or_insert((inventory_calls, raw_calls));

        // (b) Every AWS call 50 ms slower, as from a Lambda to AWS endpoints across regions.
        stack.router.faults().add(FaultRule::latency(options.latency));
        let result = async {
            let (latency_seconds, _, _) = inventory(
                stack,
                &stack.hub,
                &format!("bench-fanout-latency-{run}"),
                &estate.accounts,
                &options.regions,
            )
            .await?;
            // The same with more targets at once (EC2PATCH_INVENTORY_CONCURRENCY is a setting).
            let wider = Hub::new(
                stack.sdk.clone(),
                HubConfig { inventory_concurrency: options.wider_concurrency, ..stack.hub.config.clone() },
            );
            let (wider_seconds, _, _) = inventory(
                stack,
                &wider,
                &format!("bench-fanout-latency-wide-{run}"),
                &estate.accounts,
                &options.regions,
            )
            .await?;
            let started = Instant::now();
            tight_client(stack, &sample, 1, &format!("sequential-{run}")).await?;
            Ok::<_, anyhow::Error>((latency_seconds, wider_seconds, started.elapsed().as_secs_f64()))
        }
        .await;
        stack.router.faults().clear();
        let (latency_seconds, wider_seconds, sample_seconds) = result?;
        let sequential_seconds = sample_seconds * targets.len() as f64 / sample.len().max(1) as f64;
        eprintln!(
            "bench: fan-out run {}/{}: handler {inventory_seconds:.1} s vs tight client {raw_seconds:.1} s; with {} ms latency {latency_seconds:.1} s (concurrency {} {wider_seconds:.1} s) vs sequential {sequential_seconds:.1} s",
            run + 1,
            options.runs.max(1),
            options.latency.as_millis(),
            options.wider_concurrency
        );
        runs.push(FanOutRun {
            inventory_seconds,
            raw_seconds,
            inventory_latency_seconds: latency_seconds,
            inventory_latency_wider_seconds: wider_seconds,
            sequential_sample_seconds: sample_seconds,
            sequential_seconds,
        });
    }
    let (inventory_calls, raw_calls) = first_calls.unwrap_or_default();
    let median = |pick: fn(&FanOutRun) -> f64| Spread::of(runs.iter().map(pick)).median;

    let (summary_bytes, summary_targets) = match &options.extra_region {
        Some(_) => {
            let (_, _, summary) =
                inventory(stack, &stack.hub, "bench-fanout-all", &estate.accounts, &seeded_regions).await?;
            (Some(serde_json::to_vec(&summary)?.len()), Some(summary.targets))
        }
        None => (None, None),
    };
    Ok(FanOut {
        accounts: options.accounts,
        regions: options.regions.len(),
        targets: targets.len(),
        instances: targets.len() * options.instances_per_target,
        concurrency,
        seed_seconds,
        inventory_seconds: median(|r| r.inventory_seconds),
        inventory_calls,
        raw_seconds: median(|r| r.raw_seconds),
        raw_calls,
        latency_ms: u64::try_from(options.latency.as_millis()).unwrap_or(u64::MAX),
        inventory_latency_seconds: median(|r| r.inventory_latency_seconds),
        wider_concurrency: options.wider_concurrency,
        inventory_latency_wider_seconds: median(|r| r.inventory_latency_wider_seconds),
        sequential_sample_targets: sample.len(),
        sequential_sample_seconds: median(|r| r.sequential_sample_seconds),
        sequential_seconds: median(|r| r.sequential_seconds),
        runs,
        summary_bytes_all_regions: summary_bytes,
        summary_targets_all_regions: summary_targets,
    })
}

/// Plans a one-wave run and times the PreEC2Inventory handler over it.
async fn inventory(
    stack: &LocalStack,
    hub: &Hub,
    run_id: &str,
    accounts: &[String],
    regions: &[String],
) -> anyhow::Result<(f64, BTreeMap<String, u64>, ec2patch_core::wave::WaveInventory)> {
    let plan: ec2patch_plan::PlanRequest = serde_json::from_value(json!({
        "runId": run_id,
        // A wave named after the run: the run lock keys runs by their waves, and these runs are
        // never ended by a state machine (which would release it).
        "input": {
            "accountWaves": [{"name": run_id, "accounts": accounts, "regions": regions}],
            "ec2": {"tagKey": "PatchGroup", "tagValue": "default"},
            "dryRun": true
        }
    }))?;
    ec2patch_plan::handle(hub, plan).await.with_context(|| format!("planning {run_id}"))?;
    stack.router.reset_calls();
    let started = Instant::now();
    let request: ec2patch_inventory::InventoryRequest =
        serde_json::from_value(json!({"runId": run_id, "waveIndex": 0}))?;
    let summary = ec2patch_inventory::handle(hub, request).await.with_context(|| format!("inventory of {run_id}"))?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        summary.targets_failed == 0,
        "{run_id}: {} targets failed: {:?}",
        summary.targets_failed,
        summary.failures
    );
    Ok((seconds, stack.router.calls(), summary))
}

/// The calls the inventory makes, with nothing in between: per account AssumeRole (once), per
/// target DescribeInstances (running + tag filter), DescribeInstanceInformation (the ids),
/// DescribeInstancePatchStates (the ids); then the same records (a target record + one per
/// instance) packed across targets 25 to a BatchWriteItem, and the wave's objects (manifest,
/// batches) and record. `concurrency` targets (and writes) at a time.
async fn tight_client(
    stack: &LocalStack,
    targets: &[(String, String)],
    concurrency: usize,
    label: &str,
) -> anyhow::Result<()> {
    let sts = aws_sdk_sts::Client::new(&stack.sdk);
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let table = stack.hub.config.table.clone();
    let external_id = stack.hub.config.external_id.clone();
    // One AssumeRole per account, all first (the handler assumes lazily, once per account).
    let mut accounts: Vec<&String> = targets.iter().map(|(a, _)| a).collect();
    accounts.dedup();
    let assumed: Vec<anyhow::Result<(String, Credentials)>> = futures::stream::iter(accounts)
        .map(|account| {
            let (sts, external_id) = (&sts, external_id.clone());
            async move {
                let output = sts
                    .assume_role()
                    .role_arn(format!("arn:aws:iam::{account}:role/PatchExecRole"))
                    .role_session_name(format!("ec2patch-bench-{label}"))
                    .set_external_id(external_id)
                    .send()
                    .await
                    .with_context(|| format!("AssumeRole {account}"))?;
                let c = output.credentials.context("AssumeRole returned no credentials")?;
                let credentials =
                    Credentials::new(c.access_key_id, c.secret_access_key, Some(c.session_token), None, "bench");
                Ok((account.clone(), credentials))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let credentials: HashMap<String, Credentials> = assumed.into_iter().collect::<anyhow::Result<_>>()?;
    let (dynamodb, table, credentials) = (&dynamodb, &table, &credentials);
    let results: Vec<anyhow::Result<(serde_json::Value, Vec<WriteRequest>)>> =
        futures::stream::iter(targets.iter().enumerate())
            .map(|(index, (account, region))| async move {
                let creds = credentials.get(account).context("no credentials for the account")?.clone();
                let config: SdkConfig = stack
                    .sdk
                    .to_builder()
                    .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(creds))
                    .region(aws_config::Region::new(region.clone()))
                    .build();
                let ec2 = aws_sdk_ec2::Client::new(&config);
                let described = ec2
                    .describe_instances()
                    .filters(Filter::builder().name("instance-state-name").values("running").build())
                    .filters(Filter::builder().name("tag:PatchGroup").values("default").build())
                    .send()
                    .await
                    .with_context(|| format!("DescribeInstances {account} {region}"))?;
                let ids: Vec<String> = described
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .filter_map(|i| i.instance_id().map(str::to_owned))
                    .collect();
                aws_sdk_ssm::Client::new(&config)
                    .describe_instance_information()
                    .filters(
                        InstanceInformationStringFilter::builder()
                            .key("InstanceIds")
                            .set_values(Some(ids.clone()))
                            .build()?,
                    )
                    .send()
                    .await
                    .with_context(|| format!("DescribeInstanceInformation {account} {region}"))?;
                // The patch state before (compliance), as the handler reads it for the SSM-online
                // instances (all of them here; at most 50 per call, as many as a target has).
                if !ids.is_empty() {
                    aws_sdk_ssm::Client::new(&config)
                        .describe_instance_patch_states()
                        .set_instance_ids(Some(ids.clone()))
                        .send()
                        .await
                        .with_context(|| format!("DescribeInstancePatchStates {account} {region}"))?;
                }
                let pk = format!("RUN#bench-{label}");
                let item = |sk: String| -> anyhow::Result<WriteRequest> {
                    let attributes: HashMap<String, AttributeValue> = [
                        ("pk", pk.clone()),
                        ("sk", sk),
                        ("account", account.clone()),
                        ("region", region.clone()),
                        ("platform", "Linux/UNIX".to_owned()),
                        ("ssm", "ONLINE".to_owned()),
                        ("outcome", "PENDING".to_owned()),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), AttributeValue::S(v)))
                    .collect();
                    Ok(WriteRequest::builder()
                        .put_request(PutRequest::builder().set_item(Some(attributes)).build()?)
                        .build())
                };
                // The target's record and its instances' records in one group item, as the
                // handler keeps them (instance_records).
                let record = |outcome: &str| {
                    AttributeValue::M(HashMap::from([
                        ("platform".to_owned(), AttributeValue::S("Linux/UNIX".to_owned())),
                        ("ssm".to_owned(), AttributeValue::S("ONLINE".to_owned())),
                        ("outcome".to_owned(), AttributeValue::S(outcome.to_owned())),
                    ]))
                };
                let mut group = item(format!("INSTANCES#{index}"))?;
                if let Some(put) = group.put_request.as_mut() {
                    let records = ids.iter().map(|id| (id.clone(), record("PENDING"))).collect();
                    put.item.insert("records".to_owned(), AttributeValue::M(records));
                }
                let writes = vec![item(format!("TARGET#{index}"))?, group];
                Ok((json!({"account": account, "region": region, "instances": ids}), writes))
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    let mut manifest: Vec<serde_json::Value> = Vec::with_capacity(results.len());
    let mut writes: Vec<WriteRequest> = Vec::new();
    for result in results {
        let (target, target_writes) = result?;
        manifest.push(target);
        writes.extend(target_writes);
    }
    // The records packed across targets, 25 to a call, as the handler writes them.
    let batches: Vec<anyhow::Result<()>> = futures::stream::iter(writes.chunks(25))
        .map(|chunk| async move {
            dynamodb
                .batch_write_item()
                .request_items(table.clone(), chunk.to_vec())
                .send()
                .await
                .context("BatchWriteItem")?;
            Ok(())
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    batches.into_iter().collect::<anyhow::Result<()>>()?;

    // The wave's objects: the manifest, one object per batch of targets, and the wave record.
    let s3 = aws_sdk_s3::Client::from_conf(ec2patch_core::hub::s3_config(&stack.sdk));
    let bucket = stack.hub.config.bucket.clone();
    let per_batch = stack.hub.config.patching.targets_per_batch.max(1);
    let mut objects = vec![(format!("bench/{label}/manifest.json"), serde_json::to_vec(&manifest)?)];
    for (batch, targets) in manifest.chunks(per_batch).enumerate() {
        objects.push((format!("bench/{label}/batches/{batch:05}.json"), serde_json::to_vec(targets)?));
    }
    let (s3, bucket) = (&s3, &bucket);
    let puts: Vec<anyhow::Result<()>> = futures::stream::iter(objects)
        .map(|(key, body)| async move {
            s3.put_object()
                .bucket(bucket)
                .key(&key)
                .body(body.into())
                .send()
                .await
                .with_context(|| format!("PutObject {key}"))?;
            Ok(())
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    puts.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    dynamodb
        .put_item()
        .table_name(table.clone())
        .item("pk", AttributeValue::S(format!("RUN#bench-{label}")))
        .item("sk", AttributeValue::S("WAVE#000".to_owned()))
        .send()
        .await
        .context("PutItem (wave)")?;
    Ok(())
}
