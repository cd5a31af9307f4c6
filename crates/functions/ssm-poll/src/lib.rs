//! PollSsmCommand: how far one batch's patch commands have got, from one paginated
//! `ListCommandInvocations` per command (never one call per instance), and how long the state
//! machine should wait before asking again: the wait doubles from the first poll up to a cap,
//! so a 30-minute patch costs a handful of polls, not one every 30 seconds.

use ec2patch_core::config::PatchSettings;
use ec2patch_core::patching::{self, CommandRecord};
use ec2patch_core::time::now_epoch_seconds;
use ec2patch_core::{Hub, Result, store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollRequest {
    pub run_id: String,
    pub wave_index: usize,
    pub batch: usize,
    /// Polls made so far for this batch.
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollResult {
    pub batch: usize,
    /// Every invocation is terminal, or the batch timed out: go on to verify.
    pub done: bool,
    /// The batch ran past the command timeout; unfinished instances are recorded as timed out.
    pub timed_out: bool,
    pub invocations: usize,
    pub in_progress: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Commands whose account could not be reached to ask (verify records those instances).
    pub unreadable: usize,
    pub attempt: u32,
    pub next_poll_seconds: u32,
}

/// The wait after poll number `attempt` (0-based): initial x 2^attempt, at most the cap.
pub fn next_poll_seconds(settings: &PatchSettings, attempt: u32) -> u32 {
    settings
        .poll_initial_seconds
        .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .min(settings.poll_max_seconds)
}

pub async fn handle(hub: &Hub, request: PollRequest) -> Result<PollResult> {
    let pk = store::run_pk(&request.run_id);
    let records: Vec<CommandRecord> = hub
        .store
        .query_prefix(&pk, &store::batch_commands_prefix(request.wave_index, request.batch))
        .await?
        .iter()
        .map(CommandRecord::from_item)
        .collect::<Result<_>>()?;
    let sessions = hub.read_only_spoke_sessions(&request.run_id);
    let mut result = PollResult {
        batch: request.batch,
        done: false,
        timed_out: false,
        invocations: 0,
        in_progress: 0,
        succeeded: 0,
        failed: 0,
        unreadable: 0,
        attempt: request.attempt + 1,
        next_poll_seconds: next_poll_seconds(&hub.config.patching, request.attempt + 1),
    };
    for record in &records {
        let Some(command_id) = &record.command_id else { continue };
        let invocations = match sessions.config_for(&record.account, &record.region).await {
            Ok(config) => {
                patching::list_invocations(&aws_sdk_ssm::Client::new(&config), command_id, &record.context()).await?
            }
            Err(error) if error.is_transient() => return Err(error),
            Err(_) => {
                result.unreadable += 1;
                continue;
            }
        };
        for invocation in &invocations {
            result.invocations += 1;
            match invocation.status.as_str() {
                "Success" => result.succeeded += 1,
                _ if invocation.is_terminal() => result.failed += 1,
                _ => result.in_progress += 1,
            }
        }
        // An instance SSM has not even listed yet counts as still in progress.
        result.in_progress += record.instance_ids.len().saturating_sub(invocations.len());
    }
    let started = records.iter().map(|r| r.claimed_at).min().unwrap_or_else(now_epoch_seconds);
    // Grace over the command timeout (a tenth of it, at most a minute): SSM normally reports
    // TimedOut itself first; this catches invocations that never report at all.
    let timeout = u64::from(hub.config.patching.command_timeout_seconds);
    let deadline = started + timeout + (timeout / 10).min(60);
    result.timed_out = result.in_progress > 0 && now_epoch_seconds() > deadline;
    result.done = result.in_progress == 0 || result.timed_out;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let settings = PatchSettings::default();
        let waits: Vec<u32> = (0..8).map(|attempt| next_poll_seconds(&settings, attempt)).collect();
        assert_eq!(waits, [30, 60, 120, 240, 300, 300, 300, 300]);
        // A 30-minute patch: the polls needed until the waits add up to 1800 s.
        let mut elapsed = 0;
        let polls = (0..).take_while(|attempt| {
            elapsed += next_poll_seconds(&settings, *attempt);
            elapsed < 1800
        });
        assert_eq!(polls.count() + 1, 9, "9 polls instead of 60 at a fixed 30 s");
        assert_eq!(next_poll_seconds(&settings, 60), 300, "no overflow");
    }
}
