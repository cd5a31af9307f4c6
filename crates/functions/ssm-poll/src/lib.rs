//! PollSsmCommand: how far one batch's patch commands have got, from one paginated
//! `ListCommandInvocations` per command (never one call per instance), and how long the state
//! machine should wait before asking again.
//!
//! The wait follows the commands' own progress. SSM runs a command's invocations
//! `MaxConcurrency` at a time (10 % by default), in rounds of about equal length, so once some
//! have finished, their finish times tell when the last will ([`estimated_end`]); the next poll
//! is placed just after that ([`next_wait`]). Until one has finished (and for a command whose
//! invocations all run at once) the wait doubles from the first poll up to a cap. So a
//! 30-minute patch costs a handful of polls, not one every 30 seconds, and is seen within
//! seconds of its end where rounds exist, not up to the cap late.

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

/// When a command ends whose invocations started at `start` (epoch seconds), from `finished`
/// of its `total` invocations that have, the last of them at `last_finish`: invocations run in
/// rounds of equal size and about equal length, so the command takes `total / finished` times
/// what its finished ones took. `None` before any has finished or once all have.
pub fn estimated_end(start: f64, last_finish: f64, finished: usize, total: usize) -> Option<f64> {
    if finished == 0 || finished >= total || last_finish <= start {
        return None;
    }
    Some(start + (last_finish - start) * total as f64 / finished as f64)
}

/// Polls the doubling schedule alone has made `elapsed` seconds after the commands were sent.
pub fn doubling_polls_by(settings: &PatchSettings, elapsed: f64) -> u32 {
    let (mut at, mut polls) = (0.0, 0);
    // A second's slack: a poll made on the schedule, a moment late, still counts as on it.
    while polls < u32::MAX {
        at += f64::from(next_poll_seconds(settings, polls));
        if at > elapsed + 1.0 {
            break;
        }
        polls += 1;
    }
    polls
}

/// When to poll the batch again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Polls made so far, this one included.
    pub polls: u32,
    /// Now, when the batch's commands were sent and when it times out (epoch seconds).
    pub now: f64,
    pub sent_at: f64,
    pub deadline: f64,
    /// The latest estimated end of the batch's unfinished commands, and whether one of them has
    /// no estimate yet.
    pub end: Option<f64>,
    pub unestimated: bool,
}

/// The wait before the next poll: just after the estimated end when every unfinished command
/// has one; the doubling schedule when none has; the sooner of the two when only some have. An
/// estimate that has passed (a command slower than its first rounds) waits the initial
/// interval. Two bounds: the batch never has more polls by any moment than the doubling
/// schedule alone would have had (so the history budget of a batch polled until its timeout
/// stands: see `ec2patch_core::asl`), and no wait runs past the deadline by more than the
/// initial interval.
pub fn next_wait(settings: &PatchSettings, progress: &Progress) -> u32 {
    let doubling = next_poll_seconds(settings, progress.polls);
    // SSM reports an invocation's end a moment after the instance: poll a little after it.
    let margin = f64::from((settings.poll_initial_seconds / 6).max(1));
    let adaptive = progress.end.map(|end| {
        if end + margin > progress.now {
            (end + margin - progress.now).ceil().min(f64::from(u32::MAX)) as u32
        } else {
            settings.poll_initial_seconds
        }
    });
    let wait = match (adaptive, progress.unestimated) {
        (Some(adaptive), false) => adaptive,
        (Some(adaptive), true) => adaptive.min(doubling),
        (None, _) => doubling,
    };
    let elapsed_then = progress.now - progress.sent_at + f64::from(wait);
    let wait =
        if wait < doubling && progress.polls + 1 > doubling_polls_by(settings, elapsed_then) { doubling } else { wait };
    let to_deadline = (progress.deadline - progress.now).max(0.0).ceil().min(f64::from(u32::MAX)) as u32;
    wait.min(to_deadline.saturating_add(1).max(settings.poll_initial_seconds)).max(1)
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
    let items = hub.store.query_prefix(&pk, &store::batch_commands_prefix(request.wave_index, request.batch)).await?;
    let records: Vec<CommandRecord> = items.iter().map(CommandRecord::from_item).collect::<Result<_>>()?;
    // Commands seen ending in this poll, their invocations kept on their records at the end.
    let mut finished = Vec::new();
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
    // The latest estimated end among unfinished commands, and whether one has none yet.
    let (mut end, mut unestimated): (Option<f64>, bool) = (None, false);
    for (item, record) in items.iter().zip(&records) {
        let Some(command_id) = &record.command_id else { continue };
        let invocations = if let Some(kept) = &record.final_invocations {
            // An earlier poll saw this command end: nothing more to ask the spoke.
            kept.clone()
        } else {
            let config = match sessions.config_for(&record.account, &record.region).await {
                Ok(config) => config,
                Err(error) if error.is_transient() => return Err(error),
                Err(_) => {
                    result.unreadable += 1;
                    unestimated = true;
                    continue;
                }
            };
            let invocations =
                patching::list_invocations(&aws_sdk_ssm::Client::new(&config), command_id, &record.context()).await?;
            let listed_all = invocations.len() >= record.instance_ids.len();
            if listed_all && invocations.iter().all(patching::Invocation::is_terminal) {
                finished.push((item.clone(), record, invocations.clone()));
            }
            invocations
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
        let terminal = invocations.iter().filter(|i| i.is_terminal()).count();
        if terminal < invocations.len() + unlisted {
            // Invocations that ended without running (undeliverable) take no round.
            let finished: Vec<f64> =
                invocations.iter().filter(|i| i.is_terminal()).filter_map(|i| i.finished_at).collect();
            let total = invocations.len() + unlisted - (terminal - finished.len());
            let start =
                invocations.iter().filter_map(|i| i.started_at).reduce(f64::min).unwrap_or(record.claimed_at as f64);
            let last_finish = finished.iter().copied().reduce(f64::max).unwrap_or(start);
            match estimated_end(start, last_finish, finished.len(), total) {
                Some(estimate) => end = Some(end.map_or(estimate, |end: f64| end.max(estimate))),
                None => unestimated = true,
            }
        }
    }
    patching::record_final_invocations(&hub.store, finished).await?;
    let started = records.iter().map(|r| r.claimed_at).min().unwrap_or_else(now_epoch_seconds);
    // Grace over the command timeout (a tenth of it, at most a minute): SSM normally reports
    // TimedOut itself first; this catches invocations that never report at all.
    let timeout = u64::from(hub.config.patching.command_timeout_seconds);
    let deadline = started + timeout + (timeout / 10).min(60);
    result.timed_out = result.in_progress > 0 && now_epoch_seconds() > deadline;
    result.done = result.in_progress == 0 || result.timed_out;
    let progress = Progress {
        polls: request.attempt + 1,
        now: ec2patch_core::time::now_epoch_seconds_f64(),
        sent_at: started as f64,
        deadline: deadline as f64,
        end,
        unestimated,
    };
    result.next_poll_seconds = next_wait(&hub.config.patching, &progress);
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

    #[test]
    fn the_end_is_estimated_from_the_finished_rounds() {
        // 5 instances one at a time, 360 s each: the first ends 360 s after the start.
        assert_eq!(estimated_end(1000.0, 1360.0, 1, 5), Some(2800.0));
        // 50 instances 5 at a time, 180 s a round: the first round done.
        assert_eq!(estimated_end(0.0, 180.0, 5, 50), Some(1800.0));
        assert_eq!(estimated_end(0.0, 0.0, 0, 5), None, "nothing finished yet");
        assert_eq!(estimated_end(0.0, 1800.0, 5, 5), None, "all finished");
    }

    fn at(polls: u32, now: f64, end: Option<f64>, unestimated: bool) -> Progress {
        Progress { polls, now, sent_at: 0.0, deadline: 10_000.0, end, unestimated }
    }

    #[test]
    fn the_next_poll_follows_the_estimate_and_never_oversleeps_the_deadline() {
        let settings = PatchSettings::default();
        // Estimated end at 1800 s, at the third poll (210 s): one wait to just after it (5 s).
        assert_eq!(next_wait(&settings, &at(3, 210.0, Some(1800.0), false)), 1595);
        // Nothing known: the doubling schedule.
        assert_eq!(next_wait(&settings, &at(2, 90.0, None, true)), 120);
        // Some commands without an estimate: never later than the doubling would poll.
        assert_eq!(next_wait(&settings, &at(2, 90.0, Some(1800.0), true)), 120);
        // An estimate soon: sooner than the doubling (the 8th poll by 1805 s, as doubling's).
        assert_eq!(next_wait(&settings, &at(7, 1790.0, Some(1800.0), true)), 15);
        // The estimate passed and the batch is not done: the initial interval.
        assert_eq!(next_wait(&settings, &at(4, 1900.0, Some(1800.0), false)), 30);
        // Never far past the deadline, where the batch times out.
        assert_eq!(next_wait(&settings, &at(3, 9_000.0, Some(20_000.0), false)), 1001);
        assert_eq!(next_wait(&settings, &at(3, 9_990.0, Some(20_000.0), false)), 30);
    }

    #[test]
    fn early_polls_never_outnumber_the_doubling_schedules() {
        let settings = PatchSettings::default();
        // Doubling polls at 30, 90, 210, 450, 750, ... s.
        assert_eq!(doubling_polls_by(&settings, 0.0), 0);
        assert_eq!(doubling_polls_by(&settings, 90.0), 2);
        assert_eq!(doubling_polls_by(&settings, 448.0), 3);
        assert_eq!(doubling_polls_by(&settings, 449.5), 4, "a second late still counts");
        assert_eq!(doubling_polls_by(&settings, 1800.0), 8);
        // A passed estimate at the 5th poll by 460 s: a 6th by 490 s would be one more than
        // doubling's 4, so the doubling wait instead.
        assert_eq!(next_wait(&settings, &at(5, 460.0, Some(400.0), false)), 300);
        // An estimate that keeps slipping cannot make a poll every 30 s: after any sequence of
        // waits, the polls by a moment are at most the doubling schedule's.
        let (mut now, mut polls) = (f64::from(settings.poll_initial_seconds), 0);
        while now < 7_200.0 {
            polls += 1; // a poll at `now`
            assert!(polls <= doubling_polls_by(&settings, now), "{polls} polls by {now} s");
            now += f64::from(next_wait(&settings, &at(polls, now, Some(now - 1.0), false)));
        }
    }
}
