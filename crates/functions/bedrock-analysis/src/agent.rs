//! Asking the run's Bedrock agent (`InvokeAgent`) and reading its answer.
//!
//! The prompt carries the wave's counts as JSON and the hub's thresholds, and asks for a reply
//! that is only a JSON object `{"issuesDetected": bool, "summary": str, "reasons": [str]}`. The
//! answer arrives as an event stream whose `chunk` events carry the text in parts; the parts are
//! concatenated, and the first JSON object with `issuesDetected` in the text is the answer
//! (models like to wrap JSON in prose or Markdown fences).

use aws_sdk_bedrockagentruntime::Client;
use aws_sdk_bedrockagentruntime::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockagentruntime::operation::invoke_agent::InvokeAgentError;
use aws_sdk_bedrockagentruntime::types::ResponseStream;
use aws_sdk_bedrockagentruntime::types::error::ResponseStreamError;
use ec2patch_core::Error;
use ec2patch_core::plan::BedrockAgent;
use serde_json::{Map, Value, json};

use crate::rules::Thresholds;
use crate::{Analysis, MAX_REASON_CHARS, MAX_REASONS, MAX_SUMMARY_CHARS, Mode, Source, WaveData, clean};

/// InvokeAgent's limit on `sessionId`.
pub const MAX_SESSION_ID_LEN: usize = 100;
/// An answer longer than this is not what was asked for; reading stops there.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Texts from the inventory and outcomes (error messages, reasons) are clipped to this in the prompt.
const PROMPT_TEXT_CHARS: usize = 300;
/// At most this many `{` are tried as the start of the answer's JSON object.
const JSON_START_ATTEMPTS: usize = 32;

/// The session id for one analysis: the run id, wave and mode, in the characters InvokeAgent
/// accepts (`[0-9a-zA-Z._:-]`, 2 to 100); the run id part is shortened, never the suffix.
pub fn session_id(run_id: &str, wave_index: usize, mode: Mode) -> String {
    let suffix = format!("-w{wave_index}-{}", mode.as_str());
    let room = MAX_SESSION_ID_LEN.saturating_sub(suffix.len());
    let mut id: String = run_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-') { c } else { '-' })
        .take(room)
        .collect();
    if id.is_empty() {
        id.push_str("run");
    }
    id.push_str(&suffix);
    id
}

/// The text sent as `inputText`.
pub fn prompt(data: &WaveData, thresholds: &Thresholds) -> String {
    let clip = |text: &str| clean(text, PROMPT_TEXT_CHARS);
    let (task, facts) = match data {
        WaveData::PrePatch { inventory: i, dry_run } => (
            "The wave below has not been patched yet. Assess the planned change from its inventory: say whether \
             anything should stop it (issuesDetected) and which risks the person approving it should know.",
            json!({
                "mode": "prePatch",
                "runId": i.run_id,
                "waveIndex": i.wave_index,
                "waveName": i.wave_name,
                "dryRun": dry_run,
                "targets": i.targets,
                "targetsUnreachable": i.targets_failed,
                "instances": i.instances,
                "patchable": i.patchable,
                "agentOffline": i.offline,
                "notManagedBySsm": i.unmanaged,
                "unreachableTargets": i.failures.iter().map(|f| json!({
                    "account": f.account,
                    "region": f.region,
                    "errorType": f.error_type,
                    "message": clip(&f.message),
                })).collect::<Vec<_>>(),
                "unreachableTargetsNotListed": i.failures_omitted,
            }),
        ),
        WaveData::PostWave { outcomes: o } => (
            "The wave below has been patched. Analyse its results: decide whether the rollout should stop \
             before the next wave (issuesDetected) and give the reasons.",
            json!({
                "mode": "postWave",
                "runId": o.run_id,
                "waveIndex": o.wave_index,
                "waveName": o.wave_name,
                "dryRun": o.dry_run,
                "attempted": o.attempted,
                "patched": o.patched,
                "failed": o.failed,
                "timedOut": o.timed_out,
                "skipped": o.skipped,
                "unreachable": o.unreachable,
                "unhealthy": o.unhealthy,
                "pendingReboot": o.pending_reboot,
                "targets": o.targets,
                "targetsUnreachable": o.targets_failed,
                "failedInstances": o.failures.iter().map(|f| json!({
                    "account": f.account,
                    "region": f.region,
                    "instanceId": f.instance_id,
                    "outcome": f.outcome,
                    "reason": clip(&f.reason),
                })).collect::<Vec<_>>(),
            }),
        ),
    };
    let policy = json!({
        "maxFailureRate": thresholds.max_failure_rate,
        "maxUnhealthy": thresholds.max_unhealthy,
        "unreachableIsIssue": thresholds.unreachable_is_issue,
        "pendingRebootIsIssue": false,
    });
    format!(
        "You review one wave of an EC2 patch run: ec2patch sends AWS-RunPatchBaseline through SSM to the \
         instances of each account/region target of a wave, then checks their health.\n\
         {task}\n\n\
         Wave data (JSON): {facts}\n\
         Operator policy (JSON; failure rate = (failed + timedOut) / attempted): {policy}\n\n\
         Reply with ONLY a JSON object, without Markdown or any other text, of exactly this form:\n\
         {{\"issuesDetected\": true or false, \"summary\": \"a few plain-text sentences\", \
         \"reasons\": [\"a short reason\"]}}\n\
         Keep the summary under {MAX_SUMMARY_CHARS} characters and give at most {MAX_REASONS} reasons of at most \
         {MAX_REASON_CHARS} characters each."
    )
}

/// Calls InvokeAgent and returns the concatenated text of the answer's chunks, or why not (for
/// `agentError`). The caller bounds it with the timeout.
pub async fn ask(
    client: &Client,
    agent: &BedrockAgent,
    session_id: &str,
    input_text: String,
) -> Result<String, String> {
    let context = format!("agent {} alias {}", agent.agent_id, agent.agent_alias_id);
    let mut output = client
        .invoke_agent()
        .agent_id(&agent.agent_id)
        .agent_alias_id(&agent.agent_alias_id)
        .session_id(session_id)
        .input_text(input_text)
        .send()
        .await
        .map_err(|error| invoke_error(&context, error))?;
    let mut text = Vec::new();
    let mut return_control = false;
    while let Some(event) = output.completion.recv().await.map_err(|error| stream_error(&context, error))? {
        match event {
            ResponseStream::Chunk(part) => {
                if let Some(bytes) = part.bytes {
                    text.extend_from_slice(bytes.as_ref());
                }
                if text.len() > MAX_ANSWER_BYTES {
                    return Err(format!("the answer of {context} is longer than {MAX_ANSWER_BYTES} bytes"));
                }
            }
            ResponseStream::ReturnControl(_) => return_control = true,
            _ => {}
        }
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(if return_control {
            format!("{context} asked to return control to the caller instead of answering (not supported)")
        } else {
            format!("the answer of {context} is empty")
        });
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// The SDK's own classification (throttling after its retries, unavailable, refused) in words.
fn invoke_error(context: &str, error: SdkError<InvokeAgentError>) -> String {
    let throttling = error.as_service_error().is_some_and(InvokeAgentError::is_throttling_exception);
    match ec2patch_core::aws::classify("InvokeAgent", context, error) {
        Error::AwsCallFailed { message, .. } if throttling => {
            Error::Throttled { operation: "InvokeAgent".to_owned(), context: context.to_owned(), message }.to_string()
        }
        error => error.to_string(),
    }
}

/// An exception event in the answer's stream, or a broken stream.
fn stream_error<R: std::fmt::Debug>(context: &str, error: SdkError<ResponseStreamError, R>) -> String {
    match error.as_service_error() {
        Some(service) => {
            let kind = if service.is_throttling_exception() {
                "throttled".to_owned()
            } else {
                service.code().map_or_else(|| "error".to_owned(), str::to_owned)
            };
            let message = service.message().map_or_else(|| DisplayErrorContext(service).to_string(), str::to_owned);
            format!("InvokeAgent response stream ({context}) failed: {kind}: {message}")
        }
        None => format!("reading the InvokeAgent response stream ({context}) failed: {}", DisplayErrorContext(&error)),
    }
}

/// Reads the agent's answer: the first JSON object in `text` that has `issuesDetected`.
pub fn parse_answer(text: &str) -> Result<Analysis, String> {
    let mut saw_object = false;
    let answer =
        text.match_indices('{').take(JSON_START_ATTEMPTS).filter_map(|(start, _)| first_object(&text[start..])).find(
            |object| {
                saw_object = true;
                object.contains_key("issuesDetected")
            },
        );
    let Some(answer) = answer else {
        return Err(if saw_object {
            "the agent's answer has no issuesDetected".to_owned()
        } else {
            format!("the agent's answer is not JSON: {:?}", clean(text, 120))
        });
    };
    let Some(issues_detected) = answer.get("issuesDetected").and_then(Value::as_bool) else {
        return Err("the agent's issuesDetected is not true or false".to_owned());
    };
    let summary = match answer.get("summary").and_then(Value::as_str).map(str::trim) {
        Some(summary) if !summary.is_empty() => summary.to_owned(),
        _ => format!(
            "The Bedrock agent reported {} but gave no summary.",
            if issues_detected { "issues" } else { "no issues" }
        ),
    };
    let reasons = match answer.get("reasons") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::String(reason)) => vec![reason.clone()],
        _ => Vec::new(),
    };
    Ok(Analysis::new(Source::Bedrock, issues_detected, &summary, reasons))
}

fn first_object(text: &str) -> Option<Map<String, Value>> {
    match serde_json::Deserializer::from_str(text).into_iter::<Value>().next() {
        Some(Ok(Value::Object(object))) => Some(object),
        _ => None,
    }
}
