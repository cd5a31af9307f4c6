//! Completion seen promptly: how long after a batch's patch command finishes the hub sees it,
//! and how many polls that takes, for a 30-minute patch, in a time-scaled run.
//!
//! Every duration is divided by `scale`: each command lasts `patch_seconds / scale` real seconds
//! (the simulated instances' patch time, spread over the rounds SSM's `MaxConcurrency` makes),
//! and the hub's poll settings are divided the same way (30 s -> 3 s and 300 s -> 30 s at x10).
//! The real handlers plan, inventory and send; each batch then waits what PollSsmCommand
//! answers and polls again, as the state machine's Wait state does, until the batch is done. The
//! delay is the time from the batch's last invocation finishing (as SSM reports it) to the poll
//! that saw it, multiplied back by `scale`. The baseline is the doubling schedule alone (30 s
//! doubling to 300 s) over the same measured command durations.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_ec2::types::Tag;
use ec2patch_core::config::{HubConfig, PatchSettings};
use ec2patch_core::time::now_epoch_seconds_f64;
use ec2patch_core::{AccountId, Hub, Region};
use ec2patch_local::{EstateSpec, LocalStack, SeedKind};
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct PollingOptions {
    /// Time compression: real seconds x scale = the seconds reported.
    pub scale: u32,
    /// The simulated command duration (before scaling).
    pub patch_seconds: u32,
    /// Instances per target of each group of targets (one region; one target per batch).
    pub instances_per_target: Vec<usize>,
    pub targets_per_group: usize,
    /// First spoke account number (fresh accounts).
    pub first_account: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchPolling {
    pub batch: usize,
    pub instances: usize,
    pub polls: u32,
    /// From sending to the last invocation's finish (scaled back).
    pub command_seconds: f64,
    /// From that finish to the poll that saw it (scaled back).
    pub delay_seconds: f64,
    /// What the doubling schedule alone would have taken for the same command.
    pub doubling_polls: u32,
    pub doubling_delay_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Polling {
    pub scale: u32,
    pub patch_seconds: u32,
    pub batches: Vec<BatchPolling>,
    pub wall_seconds: f64,
}

/// SSM's rounds for `instances` at a `MaxConcurrency` percentage (at least one at a time).
fn rounds(instances: usize, max_concurrency: &str) -> usize {
    let percent: f64 = max_concurrency.trim_end_matches('%').parse().unwrap_or(10.0);
    let slots = ((instances as f64 * percent / 100.0) as usize).max(1);
    instances.div_ceil(slots)
}

/// The doubling schedule's polls and delay for a command that ends `seconds` after it is sent.
pub fn doubling(settings: &PatchSettings, seconds: f64) -> (u32, f64) {
    let (mut elapsed, mut attempt) = (0.0, 0);
    while elapsed < seconds {
        elapsed += f64::from(ec2patch_ssm_poll::next_poll_seconds(settings, attempt));
        attempt += 1;
    }
    (attempt, elapsed - seconds)
}

pub async fn measure(stack: &LocalStack, options: &PollingOptions) -> anyhow::Result<Polling> {
    let started = Instant::now();
    let scale = options.scale.max(1);
    // The deployed defaults (the local stack's own waits are cut to seconds for the tests).
    let deployed = PatchSettings::default();
    let settings = PatchSettings {
        // One target per batch: each batch is one command, so each delay is one command's.
        targets_per_batch: 1,
        poll_initial_seconds: (deployed.poll_initial_seconds / scale).max(1),
        poll_max_seconds: (deployed.poll_max_seconds / scale).max(1),
        ..deployed.clone()
    };
    let hub = Hub::new(stack.sdk.clone(), HubConfig { patching: settings.clone(), ..stack.hub.config.clone() });
    let command_seconds = f64::from(options.patch_seconds) / f64::from(scale);
    let region = stack.options.region.clone();

    // Seed each group, and give its instances the patch time that makes each command last
    // `command_seconds` at SSM's concurrency.
    let mut accounts = Vec::new();
    for (group, &instances) in options.instances_per_target.iter().enumerate() {
        let estate = stack
            .seed(&EstateSpec {
                accounts: options.targets_per_group,
                regions: vec![region.clone()],
                per_target: BTreeMap::from([(SeedKind::Patchable, instances)]),
                denied_accounts: 0,
                concurrency: 8,
                first_account: options.first_account + group * options.targets_per_group,
            })
            .await
            .context("seeding the polling estate")?;
        let per_instance = command_seconds / rounds(instances, &settings.max_concurrency) as f64;
        let sessions = stack.hub.spoke_sessions("bench-polling-seed");
        for account in &estate.accounts {
            let ids: Vec<String> =
                estate.instances.iter().filter(|i| &i.account == account).map(|i| i.instance_id.clone()).collect();
            let account_id = AccountId::parse(account).context("a seeded account id")?;
            let config = sessions.config_for(&account_id, &Region::new_unchecked(region.clone())).await?;
            aws_sdk_ec2::Client::new(&config)
                .create_tags()
                .set_resources(Some(ids))
                .tags(Tag::builder().key("ec2patch:sim:patch-seconds").value(format!("{per_instance:.3}")).build())
                .send()
                .await
                .with_context(|| format!("tagging the patch time in {account}"))?;
            accounts.push(account.clone());
        }
    }

    let run_id = format!("bench-polling-{}", options.first_account);
    let plan: ec2patch_plan::PlanRequest = serde_json::from_value(json!({
        "runId": run_id,
        "input": {
            "accountWaves": [{"name": run_id, "accounts": accounts, "regions": [region]}],
            "ec2": {"tagKey": "PatchGroup", "tagValue": "default"}
        }
    }))?;
    ec2patch_plan::handle(&hub, plan).await.context("planning the polling run")?;
    let inventory: ec2patch_inventory::InventoryRequest =
        serde_json::from_value(json!({"runId": run_id, "waveIndex": 0}))?;
    let inventory = ec2patch_inventory::handle(&hub, inventory).await.context("inventory of the polling run")?;

    let (hub, run_id, deployed) = (&hub, run_id.as_str(), &deployed);
    let results = futures::future::join_all((0..inventory.batches).map(|batch| async move {
        let send: ec2patch_ssm_send::SendRequest =
            serde_json::from_value(json!({"runId": run_id, "waveIndex": 0, "batch": batch}))?;
        let sent_at = now_epoch_seconds_f64();
        let sent = ec2patch_ssm_send::handle(hub, send).await.with_context(|| format!("sending batch {batch}"))?;
        let (mut wait, mut attempt, mut polls) = (sent.next_poll_seconds, sent.attempt, 0);
        let seen_at = loop {
            tokio::time::sleep(Duration::from_secs(u64::from(wait))).await;
            let poll: ec2patch_ssm_poll::PollRequest =
                serde_json::from_value(json!({"runId": run_id, "waveIndex": 0, "batch": batch, "attempt": attempt}))?;
            let result =
                ec2patch_ssm_poll::handle(hub, poll).await.with_context(|| format!("polling batch {batch}"))?;
            polls += 1;
            if result.done {
                anyhow::ensure!(
                    !result.timed_out,
                    "batch {batch} timed out: the simulated patch outlasted its timeout"
                );
                break now_epoch_seconds_f64();
            }
            (wait, attempt) = (result.next_poll_seconds, result.attempt);
        };
        let finished_at = last_finish(hub, run_id, batch).await?;
        let command = (finished_at - sent_at) * f64::from(scale);
        let (doubling_polls, doubling_delay) = doubling(deployed, command);
        Ok::<_, anyhow::Error>(BatchPolling {
            batch,
            instances: sent.instances,
            polls,
            command_seconds: command,
            delay_seconds: (seen_at - finished_at).max(0.0) * f64::from(scale),
            doubling_polls,
            doubling_delay_seconds: doubling_delay,
        })
    }))
    .await;
    let batches = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Polling { scale, patch_seconds: options.patch_seconds, batches, wall_seconds: started.elapsed().as_secs_f64() })
}

/// When the batch's last invocation finished, as SSM reports it (the plugins' finish times).
async fn last_finish(hub: &Hub, run_id: &str, batch: usize) -> anyhow::Result<f64> {
    let items = hub
        .store
        .query_prefix(&ec2patch_core::store::run_pk(run_id), &ec2patch_core::store::batch_commands_prefix(0, batch))
        .await?;
    let sessions = hub.read_only_spoke_sessions(run_id);
    let mut last: f64 = 0.0;
    for item in &items {
        let record = ec2patch_core::patching::CommandRecord::from_item(item)?;
        let Some(command_id) = &record.command_id else { continue };
        let config = sessions.config_for(&record.account, &record.region).await?;
        let ssm = aws_sdk_ssm::Client::new(&config);
        for invocation in ec2patch_core::patching::list_invocations(&ssm, command_id, &record.context()).await? {
            last = last.max(invocation.finished_at.unwrap_or_default());
        }
    }
    anyhow::ensure!(last > 0.0, "batch {batch} has no finished invocation");
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_doubling_baseline_polls_until_its_waits_pass_the_end() {
        let settings = PatchSettings::default();
        // Waits 30, 60, 120, 240, 300 x 5 add up to 1950 s: the 9th poll sees a 30-minute patch.
        assert_eq!(doubling(&settings, 1800.0), (9, 150.0));
        assert_eq!(doubling(&settings, 10.0), (1, 20.0));
    }

    #[test]
    fn rounds_follow_max_concurrency() {
        assert_eq!(rounds(1, "10%"), 1);
        assert_eq!(rounds(5, "10%"), 5, "one at a time");
        assert_eq!(rounds(20, "10%"), 10, "two at a time");
        assert_eq!(rounds(50, "10%"), 10);
    }
}
