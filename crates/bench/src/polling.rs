//! Completion seen promptly: how long after a patch command finishes the hub sees it, and how
//! many polls that takes, for a 30-minute patch, measured in a time-scaled run.
//!
//! Everything is divided by `scale` (30 by default): each command lasts `PATCH_SECONDS / scale`
//! real seconds (the simulated instances' patch time, spread over the rounds SSM's
//! `MaxConcurrency` makes), and the hub's poll settings are divided the same way (30 s -> 1 s,
//! 300 s -> 10 s). The real handlers plan, inventory and send; each batch then waits what
//! PollSsmCommand answers and polls again, as the state machine's Wait state does, until the
//! batch is done. The delay is the time between the last invocation of the batch finishing (as
//! SSM reports it) and the poll that saw it, multiplied back by `scale`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use aws_sdk_ec2::types::Tag;
use ec2patch_core::Hub;
use ec2patch_core::config::{HubConfig, PatchSettings};
use ec2patch_local::{EstateSpec, LocalStack, SeedKind};
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct PollingOptions {
    /// Time compression: real seconds x scale = the seconds reported.
    pub scale: u32,
    /// The simulated command duration (before scaling).
    pub patch_seconds: u32,
    /// Instances per target of each group of targets (one account per target, one region).
    pub instances_per_target: Vec<usize>,
    /// Targets per group.
    pub targets_per_group: usize,
    /// First spoke account number (fresh accounts).
    pub first_account: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchPolling {
    pub batch: usize,
    pub instances_per_target: usize,
    pub polls: u32,
    /// Command duration (scaled back), from sending to the last invocation's finish.
    pub command_seconds: f64,
    /// Finish -> the poll that saw it (scaled back).
    pub delay_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Polling {
    pub scale: u32,
    pub patch_seconds: u32,
    pub batches: Vec<BatchPolling>,
    pub wall_seconds: f64,
}

/// The sim's slots for `instances` at the hub's `MaxConcurrency` of a percentage (its rounding).
fn rounds(instances: usize, max_concurrency: &str) -> usize {
    let percent: f64 = max_concurrency.trim_end_matches('%').parse().unwrap_or(10.0);
    let slots = ((instances as f64 * percent / 100.0) as usize).max(1);
    instances.div_ceil(slots)
}

pub async fn measure(stack: &LocalStack, options: &PollingOptions) -> anyhow::Result<Polling> {
    let started = Instant::now();
    let scale = options.scale.max(1);
    let defaults = PatchSettings::default();
    let settings = PatchSettings {
        // One target per batch: each batch is one command, so each delay is one command's.
        targets_per_batch: 1,
        poll_initial_seconds: (defaults.poll_initial_seconds / scale).max(1),
        poll_max_seconds: (defaults.poll_max_seconds / scale).max(1),
        command_timeout_seconds: (defaults.command_timeout_seconds / scale).max(60),
        ..stack.hub.config.patching.clone()
    };
    let hub = Hub::new(stack.sdk.clone(), HubConfig { patching: settings.clone(), ..stack.hub.config.clone() });
    let command_real_seconds = f64::from(options.patch_seconds) / f64::from(scale);

    // Seed each group, and give its instances the patch time that makes each command last
    // `command_real_seconds` at SSM's concurrency.
    let mut accounts = Vec::new();
    let mut instances_of_account = BTreeMap::new();
    for (group, &instances) in options.instances_per_target.iter().enumerate() {
        let estate = stack
            .seed(&EstateSpec {
                accounts: options.targets_per_group,
                regions: vec![stack.options.region.clone()],
                per_target: BTreeMap::from([(SeedKind::Patchable, instances)]),
                denied_accounts: 0,
                concurrency: 8,
                first_account: options.first_account + group * options.targets_per_group,
            })
            .await
            .context("seeding the polling estate")?;
        let per_instance = command_real_seconds / rounds(instances, &settings.max_concurrency) as f64;
        let sessions = stack.hub.spoke_sessions("bench-polling");
        for account in &estate.accounts {
            let ids: Vec<String> =
                estate.instances.iter().filter(|i| &i.account == account).map(|i| i.instance_id.clone()).collect();
            let account_id = ec2patch_core::AccountId::parse(account).context("a seeded account id")?;
            let config =
                sessions.config_for(&account_id, &ec2patch_core::Region::new_unchecked(&stack.options.region)).await?;
            aws_sdk_ec2::Client::new(&config)
                .create_tags()
                .set_resources(Some(ids))
                .tags(Tag::builder().key("ec2patch:sim:patch-seconds").value(format!("{per_instance:.3}")).build())
                .send()
                .await
                .context("tagging the patch time")?;
            instances_of_account.insert(account.clone(), instances);
            accounts.push(account.clone());
        }
    }

    let run_id = format!("bench-polling-{}", options.first_account);
    let plan: ec2patch_plan::PlanRequest = serde_json::from_value(json!({
        "runId": run_id,
        "input": {
            "accountWaves": [{"name": run_id, "accounts": accounts, "regions": [stack.options.region]}],
            "ec2": {"tagKey": "PatchGroup", "tagValue": "default"}
        }
    }))?;
    ec2patch_plan::handle(&hub, plan).await.context("planning the polling run")?;
    let request: ec2patch_inventory::InventoryRequest =
        serde_json::from_value(json!({"runId": run_id, "waveIndex": 0}))?;
    let inventory = ec2patch_inventory::handle(&hub, request).await.context("inventory of the polling run")?;
    let manifests: Vec<ec2patch_inventory::BatchManifest> = {
        let mut all = Vec::new();
        for batch in 0..inventory.batches {
            all.push(
                hub.store
                    .get_json::<ec2patch_inventory::BatchManifest>(&ec2patch_core::store::batch_key(&run_id, 0, batch))
                    .await?,
            );
        }
        all
    };

    let (hub, run_id) = (&hub, run_id.as_str());
    let results = futures::future::join_all(manifests.iter().map(|manifest| async move {
        let batch = manifest.batch;
        let instances = manifest.targets.iter().map(|t| t.instances.len()).sum::<usize>();
        let send: ec2patch_ssm_send::SendRequest =
            serde_json::from_value(json!({"runId": run_id, "waveIndex": 0, "batch": batch}))?;
        let sent_at = SystemTime::now();
        let sent = ec2patch_ssm_send::handle(hub, send).await.context("sending")?;
        let mut wait = sent.next_poll_seconds;
        let mut attempt = sent.attempt;
        let mut polls = 0;
        let seen_at = loop {
            tokio::time::sleep(Duration::from_secs(u64::from(wait))).await;
            let poll: ec2patch_ssm_poll::PollRequest =
                serde_json::from_value(json!({"runId": run_id, "waveIndex": 0, "batch": batch, "attempt": attempt}))?;
            let result = ec2patch_ssm_poll::handle(hub, poll).await.context("polling")?;
            polls += 1;
            if result.done {
                break SystemTime::now();
            }
            (wait, attempt) = (result.next_poll_seconds, result.attempt);
        };
        let finished_at = last_finish(hub, run_id, batch).await?;
        let seconds = |from: SystemTime, to: SystemTime| {
            to.duration_since(from).map(|d| d.as_secs_f64()).unwrap_or(0.0) * f64::from(scale)
        };
        Ok::<_, anyhow::Error>(BatchPolling {
            batch,
            instances_per_target: instances,
            polls,
            command_seconds: seconds(sent_at, finished_at),
            delay_seconds: seconds(finished_at, seen_at),
        })
    }))
    .await;
    let batches = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Polling { scale, patch_seconds: options.patch_seconds, batches, wall_seconds: started.elapsed().as_secs_f64() })
}

/// When the batch's last invocation finished, as SSM reports it (the plugins' finish times).
async fn last_finish(hub: &Hub, run_id: &str, batch: usize) -> anyhow::Result<SystemTime> {
    let records = hub
        .store
        .query_prefix(&ec2patch_core::store::run_pk(run_id), &ec2patch_core::store::batch_commands_prefix(0, batch))
        .await?;
    let sessions = hub.spoke_sessions(run_id);
    let mut last = SystemTime::UNIX_EPOCH;
    for item in &records {
        let record = ec2patch_core::patching::CommandRecord::from_item(item)?;
        let Some(command_id) = &record.command_id else { continue };
        let config = sessions.config_for(&record.account, &record.region).await?;
        let mut pages = aws_sdk_ssm::Client::new(&config)
            .list_command_invocations()
            .command_id(command_id)
            .details(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for invocation in page.context("ListCommandInvocations")?.command_invocations() {
                for plugin in invocation.command_plugins() {
                    if let Some(at) = plugin.response_finish_date_time() {
                        let at = SystemTime::try_from(*at).unwrap_or(SystemTime::UNIX_EPOCH);
                        last = last.max(at);
                    }
                }
            }
        }
    }
    Ok(last)
}
