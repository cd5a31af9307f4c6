//! CheckChangeFreeze: right before a wave's first patch command, asks `ssm:GetCalendarState` (in
//! the hub) for the run's Change Calendars and says whether to patch, wait, or stop the run with
//! `ChangeFreeze`. The rule is [`ec2patch_core::change_freeze`]; this is its AWS side.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_ssm::types::CalendarState as SsmCalendarState;
use aws_smithy_types::date_time::{DateTime, Format};
use ec2patch_core::aws::AwsResultExt;
use ec2patch_core::change_freeze::{self, CalendarState, FreezeVerdict};
use ec2patch_core::store::{self, n, s};
use ec2patch_core::time::now_epoch_seconds;
use ec2patch_core::{Error, Hub, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FreezeRequest {
    pub run_id: String,
    pub wave_index: usize,
}

pub async fn handle(hub: &Hub, request: FreezeRequest) -> Result<FreezeVerdict> {
    let plan = hub.store.load_plan(&request.run_id).await?;
    let now = now_epoch_seconds();
    // Dry runs change nothing: a freeze does not stop a Scan (the state machine does not even
    // ask for one; this is the same rule, should it).
    if plan.change_calendars.is_empty() || plan.dry_run {
        return Ok(FreezeVerdict { open: true, wait_seconds: 0, state: "OPEN".to_owned(), next_open: None });
    }
    let calendars = plan.change_calendars.join(", ");
    let state = calendar_state(hub, &plan.change_calendars, &calendars).await?;
    let since = if state.open { now } else { closed_since(hub, &request, now).await? };
    match change_freeze::decide(&state, since, now, plan.freeze_wait_seconds) {
        Ok(verdict) => {
            tracing::info!(run_id = %request.run_id, wave = request.wave_index, calendars, state = verdict.state,
                wait_seconds = verdict.wait_seconds, next_open = ?verdict.next_open, "change calendars checked");
            Ok(verdict)
        }
        Err(stop) => {
            tracing::warn!(run_id = %request.run_id, wave = request.wave_index, calendars, reason = stop.reason,
                "change freeze: the run stops");
            Err(Error::ChangeFreeze { calendars, reason: stop.reason })
        }
    }
}

/// The run's calendars together: CLOSED when any is.
async fn calendar_state(hub: &Hub, names: &[String], calendars: &str) -> Result<CalendarState> {
    let context = || format!("change calendars {calendars} in the hub");
    let output = aws_sdk_ssm::Client::new(&hub.sdk)
        .get_calendar_state()
        .set_calendar_names(Some(names.to_vec()))
        .send()
        .await
        .aws_context("GetCalendarState", context)?;
    let next_transition = match output.next_transition_time() {
        None | Some("") => None,
        Some(time) => Some(
            DateTime::from_str(time, Format::DateTime).ok().and_then(|t| u64::try_from(t.secs()).ok()).ok_or_else(
                || Error::AwsCallFailed {
                    operation: "GetCalendarState".into(),
                    context: context(),
                    code: "UnreadableNextTransitionTime".into(),
                    message: format!("NextTransitionTime {time:?} is not an ISO 8601 time"),
                },
            )?,
        ),
    };
    Ok(CalendarState { open: output.state() == Some(&SsmCalendarState::Open), next_transition })
}

/// When this wave first found the calendars closed: written once (`if_not_exists`), so the
/// allowance counts from the first check however often the check is retried or repeated.
async fn closed_since(hub: &Hub, request: &FreezeRequest, now: u64) -> Result<u64> {
    let sk = format!("FREEZE#WAVE#{:03}", request.wave_index);
    let output = hub
        .store
        .dynamodb()
        .update_item()
        .table_name(hub.store.table())
        .key("pk", s(store::run_pk(&request.run_id)))
        .key("sk", s(&sk))
        .update_expression(
            "SET closedSince = if_not_exists(closedSince, :now), lastCheckedAt = :now, expiresAt = :expires",
        )
        .expression_attribute_values(":now", n(now))
        .expression_attribute_values(":expires", hub.store.expires_at())
        .return_values(ReturnValue::AllNew)
        .send()
        .await
        .aws_context("UpdateItem", || format!("run {} {sk}", request.run_id))
        .map_err(store::into_store_error)?;
    Ok(output
        .attributes()
        .and_then(|item| item.get("closedSince"))
        .and_then(|value: &AttributeValue| value.as_n().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(now))
}
