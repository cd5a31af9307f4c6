//! Change freezes: a wave sends no patch command while an SSM Change Calendar is CLOSED.
//!
//! Before a wave's first command, the state machine asks CheckChangeFreeze (only when the run
//! names calendars: the hub's `EC2PATCH_CHANGE_CALENDARS` plus the input's `changeCalendars`).
//! It calls `ssm:GetCalendarState` in the hub for all of them at once (CLOSED when any is) and
//! applies [`decide`]:
//!
//! - OPEN: patch.
//! - CLOSED, and the wave has waited less than `freezeWaitSeconds` since it first found the
//!   calendar closed (kept on the wave's record, so waits survive retries): wait until the
//!   calendar's next transition or the end of the allowance, whichever is first, then ask again.
//! - CLOSED past the allowance (at once with the default 0): the run stops with `ChangeFreeze`,
//!   the reason naming the calendars and when they open next. The wave is recorded as failed
//!   and the run stops whatever `abortOnIssues` says: later waves would meet the same freeze.
//!
//! The check is made once per wave, right before patching (after the approval, which may have
//! waited hours); a freeze that starts while a wave's batches are running does not recall
//! commands already sent.

use serde::{Deserialize, Serialize};

use crate::time::format_epoch;

/// The longest single wait between two checks: a calendar edited while a wave waits (a freeze
/// lifted early) is noticed within this.
pub const MAX_WAIT_SECONDS: u64 = 900;

/// What GetCalendarState answered for the run's calendars together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarState {
    pub open: bool,
    /// When the combined state next changes (epoch seconds), if it ever does.
    pub next_transition: Option<u64>,
}

/// What the wave does now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FreezeVerdict {
    /// Patch now.
    pub open: bool,
    /// Seconds to wait before asking again (0 when open).
    pub wait_seconds: u64,
    /// `OPEN` or `CLOSED`, for the history.
    pub state: String,
    /// When the calendars open next (RFC 3339), when known.
    pub next_open: Option<String>,
}

/// Why the run stops: the calendars are closed and the wave may wait no longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeStop {
    pub reason: String,
}

/// Applies the rule above. `since` is when the wave first found the calendars closed.
pub fn decide(
    state: &CalendarState,
    since: u64,
    now: u64,
    freeze_wait_seconds: u32,
) -> Result<FreezeVerdict, FreezeStop> {
    let next_open = state.next_transition.map(format_epoch);
    if state.open {
        return Ok(FreezeVerdict { open: true, wait_seconds: 0, state: "OPEN".to_owned(), next_open: None });
    }
    let deadline = since + u64::from(freeze_wait_seconds);
    if now >= deadline {
        let opens = match &next_open {
            Some(time) => format!("opens at {time}"),
            None => "has no scheduled end".to_owned(),
        };
        let waited = if freeze_wait_seconds == 0 {
            "freezeWaitSeconds is 0".to_owned()
        } else {
            format!("waited {} s of freezeWaitSeconds {freeze_wait_seconds}", now.saturating_sub(since))
        };
        return Err(FreezeStop { reason: format!("the freeze {opens}; {waited}, so no patch command was sent") });
    }
    let until = state.next_transition.map_or(deadline, |next| next.min(deadline));
    let wait_seconds = until.saturating_sub(now).clamp(1, MAX_WAIT_SECONDS);
    Ok(FreezeVerdict { open: false, wait_seconds, state: "CLOSED".to_owned(), next_open })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn closed(next: Option<u64>) -> CalendarState {
        CalendarState { open: false, next_transition: next }
    }

    #[test]
    fn open_calendars_patch_at_once() {
        let verdict = decide(&CalendarState { open: true, next_transition: Some(NOW + 60) }, NOW, NOW, 0).unwrap();
        assert!(verdict.open);
        assert_eq!(verdict.wait_seconds, 0);
    }

    #[test]
    fn closed_without_an_allowance_stops_naming_the_next_open_time() {
        let stop = decide(&closed(Some(NOW + 3600)), NOW, NOW, 0).unwrap_err();
        assert!(stop.reason.contains(&format_epoch(NOW + 3600)), "{}", stop.reason);
        assert!(stop.reason.contains("freezeWaitSeconds is 0"), "{}", stop.reason);
        let stop = decide(&closed(None), NOW, NOW, 0).unwrap_err();
        assert!(stop.reason.contains("has no scheduled end"), "{}", stop.reason);
    }

    #[test]
    fn closed_within_the_allowance_waits_for_the_opening_or_the_deadline() {
        // Opens in 30 s, may wait 10 minutes: wait 30 s.
        let verdict = decide(&closed(Some(NOW + 30)), NOW, NOW, 600).unwrap();
        assert_eq!((verdict.open, verdict.wait_seconds), (false, 30));
        assert_eq!(verdict.next_open, Some(format_epoch(NOW + 30)));
        // Opens in 2 hours, may wait 10 minutes (5 already waited): wait the 5 left.
        assert_eq!(decide(&closed(Some(NOW + 7200)), NOW - 300, NOW, 600).unwrap().wait_seconds, 300);
        // Long waits are split, so an edited calendar is seen.
        assert_eq!(decide(&closed(None), NOW, NOW, 86_400).unwrap().wait_seconds, MAX_WAIT_SECONDS);
        // The allowance used up: stop, saying how long it waited.
        let stop = decide(&closed(Some(NOW + 7200)), NOW - 600, NOW, 600).unwrap_err();
        assert!(stop.reason.contains("waited 600 s of freezeWaitSeconds 600"), "{}", stop.reason);
    }
}
