//! PollSsmCommand: how far one batch's patch commands have got, from one paginated
//! `ListCommandInvocations` per command (never one call per instance), and how long the state
//! machine should wait before asking again.
//!
//! The wait adapts to the commands' own progress: SSM runs a command's invocations
//! `MaxConcurrency` at a time (10 % by default), so once the first invocations have finished,
//! their finish times tell when the last will ([`estimated_end`]), and the next poll is placed
//! just after that. Until then (and for a command whose invocations all run at once) the wait
//! doubles from the first poll up to a cap. A 30-minute patch is seen within seconds of its
//! end in about five polls, where the doubling alone sees it up to 300 s late.

use ec2patch_core::approval::now_epoch_seconds;
use ec2patch_core::config::PatchSettings;
use ec2patch_core::patching::{self, CommandRecord};
use ec2patch_core::sessions::SessionCache;
use ec2patch_core::{Hub, Result, store};

/// Spoke credentials kept across polls in a warm container (a batch polls every few minutes).
static SESSIONS: SessionCache = SessionCache::new();
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

/// When a command whose invocations started at `start` (epoch seconds) ends, from the
/// `finished` of its `total` invocations that have, the last of them at `last_finish`: SSM runs
/// them in rounds of equal size, so the command's end is `total / finished` times the time its
/// finished ones took. `None` before any has finished, or when all have.
pub fn estimated_end(start: f64, last_finish: f64, finished: usize, total: usize) -> Option<f64> {
    if finished == 0 || finished >= total || last_finish < start {
        return None;
    }
    Some(start + (last_finish - start) * total as f64 / finished as f64)
}

/// The wait before the next poll: just after the estimated end of the batch (`end`, epoch
/// seconds) when every unfinished command has an estimate; the doubling schedule when none has;
/// the sooner of the two otherwise. A passed estimate (a command slower than its first rounds)
/// waits the initial interval. Never past the command deadline's first poll.
pub fn next_wait(
    settings: &PatchSettings,
    attempt: u32,
    now: f64,
    end: Option<f64>,
    unknown: bool,
    deadline: f64,
) -> u32 {
    let doubling = next_poll_seconds(settings, attempt);
    // SSM's status lags the instance by a moment: poll a little after the estimate.
    let margin = f64::from((settings.poll_initial_seconds / 6).max(1));
    let adaptive = end.map(|end| {
        if end + margin > now {
            ((end - now + margin).ceil()).min(f64::from(u32::MAX)) as u32
        } else {
            settings.poll_initial_seconds
        }
    });
    let wait = match (adaptive, unknown) {
        (Some(adaptive), false) => adaptive,
        (Some(adaptive), true) => adaptive.min(doubling),
        (None, _) => doubling,
    };
    let to_deadline = (deadline - now).max(0.0).ceil() as u32 + 1;
    wait.min(to_deadline.max(settings.poll_initial_seconds)).max(1)
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
    let sessions = SESSIONS.sessions(hub, &request.run_id);
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
    // The latest estimated end among commands with one, and whether any unfinished command has
    // none yet.
    let (mut end, mut unknown): (Option<f64>, bool) = (None, false);
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
        let unlisted = record.instance_ids.len().saturating_sub(invocations.len());
        result.in_progress += unlisted;
        let total = invocations.len() + unlisted;
        let finished: Vec<f64> = invocations.iter().filter(|i| i.is_terminal()).filter_map(|i| i.finished_at).collect();
        let terminal = invocations.iter().filter(|i| i.is_terminal()).count();
        if terminal < total {
            let start =
                invocations.iter().filter_map(|i| i.started_at).reduce(f64::min).unwrap_or(record.claimed_at as f64);
            let last = finished.iter().copied().reduce(f64::max).unwrap_or(start);
            match estimated_end(start, last, finished.len(), total) {
                Some(estimate) => end = Some(end.map_or(estimate, |e: f64| e.max(estimate))),
                None => unknown = true,
            }
        }
    }
    let started = records.iter().map(|r| r.claimed_at).min().unwrap_or_else(now_epoch_seconds);
    // Grace over the command timeout (a tenth of it, at most a minute): SSM normally reports
    // TimedOut itself first; this catches invocations that never report at all.
    let timeout = u64::from(hub.config.patching.command_timeout_seconds);
    let deadline = started + timeout + (timeout / 10).min(60);
    result.timed_out = result.in_progress > 0 && now_epoch_seconds() > deadline;
    result.done = result.in_progress == 0 || result.timed_out;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    result.next_poll_seconds = next_wait(&hub.config.patching, request.attempt + 1, now, end, unknown, deadline as f64);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_is_estimated_from_the_finished_rounds() {
        // 5 instances one at a time, 360 s each: the first ends at 360 s.
        assert_eq!(estimated_end(1000.0, 1360.0, 1, 5), Some(2800.0));
        // 50 instances 5 at a time, 180 s a round: two rounds done at 360 s.
        assert_eq!(estimated_end(0.0, 360.0, 10, 50), Some(1800.0));
        assert_eq!(estimated_end(0.0, 0.0, 0, 5), None, "nothing finished yet");
        assert_eq!(estimated_end(0.0, 1800.0, 5, 5), None, "all finished");
    }

    #[test]
    fn the_next_poll_follows_the_estimate() {
        let settings = PatchSettings::default();
        let deadline = 10_000.0;
        // Estimated end 1800 s, now 450 s: poll just after it (5 s margin), in one wait.
        assert_eq!(next_wait(&settings, 4, 450.0, Some(1800.0), false, deadline), 1355);
        // Nothing known yet: the doubling schedule.
        assert_eq!(next_wait(&settings, 2, 90.0, None, true, deadline), 120);
        // Some commands unknown: never later than the doubling would poll.
        assert_eq!(next_wait(&settings, 2, 90.0, Some(1800.0), true, deadline), 120);
        // The estimate passed without the batch being done: the initial interval.
        assert_eq!(next_wait(&settings, 6, 1900.0, Some(1800.0), false, deadline), 30);
        // Never past the deadline (by more than a second).
        assert_eq!(next_wait(&settings, 4, 450.0, Some(9000.0), false, 1000.0), 551);
    }

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
