//! The Bedrock path with the SDK's mock responses: a good answer, throttling, access denied, a
//! broken or malformed answer, an agent that never answers.
//!
//! `InvokeAgentOutput::completion` is an `EventReceiver` whose constructor is private to the SDK,
//! so a modeled output (`then_output`) cannot carry an answer. Instead every rule answers with an
//! HTTP response (`then_http_response`) whose body is event-stream frames written by
//! `aws-smithy-eventstream` (the crate the SDK reads them with): the SDK's own deserialisation, its
//! event-stream unmarshaller and its error parsing run exactly as against Bedrock, so the headers,
//! the base64 `bytes` of `chunk` events and the exception events are checked for real.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_bedrockagentruntime::Client;
use aws_sdk_bedrockagentruntime::config::retry::RetryConfig;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use ec2patch_bedrock_analysis::agent::{self, MAX_SESSION_ID_LEN};
use ec2patch_bedrock_analysis::rules::Thresholds;
use ec2patch_bedrock_analysis::{Analysis, MAX_REASON_CHARS, MAX_REASONS, Mode, Source, WaveData, analyze};
use ec2patch_core::plan::BedrockAgent;
use ec2patch_core::wave::{InstanceFailure, WaveOutcomes};

const SESSION: &str = "run-1-w0-postWave";
const TIMEOUT: Duration = Duration::from_secs(10);

fn bedrock_agent() -> BedrockAgent {
    BedrockAgent { agent_id: "AGENT12345".into(), agent_alias_id: "ALIAS12345".into() }
}

/// One failed instance in 40: the rules call that an issue.
fn wave() -> WaveData {
    WaveData::PostWave {
        outcomes: WaveOutcomes {
            run_id: "run-1".into(),
            wave_index: 0,
            wave_name: "wave1-critical".into(),
            attempted: 40,
            patched: 39,
            failed: 1,
            targets: 6,
            failures: vec![InstanceFailure {
                account: "222222222222".into(),
                region: "us-east-1".into(),
                instance_id: "i-0abc".into(),
                outcome: "FAILED".into(),
                reason: "yum lock held".into(),
            }],
            ..WaveOutcomes::default()
        },
    }
}

fn header(name: &'static str, value: &'static str) -> Header {
    Header::new(name, HeaderValue::String(value.into()))
}

/// A `chunk` event as Bedrock sends it: JSON `{"bytes": <base64 of the text>}`.
fn chunk(text: &str) -> Message {
    let payload = format!(r#"{{"bytes":"{}"}}"#, aws_smithy_types::base64::encode(text));
    Message::new(payload.into_bytes())
        .add_header(header(":message-type", "event"))
        .add_header(header(":event-type", "chunk"))
        .add_header(header(":content-type", "application/json"))
}

/// An exception event in the stream (Bedrock reports throttling this way too).
fn exception(kind: &'static str, message: &str) -> Message {
    Message::new(format!(r#"{{"message":"{message}"}}"#).into_bytes())
        .add_header(header(":message-type", "exception"))
        .add_header(header(":exception-type", kind))
        .add_header(header(":content-type", "application/json"))
}

fn stream_response(messages: &[Message]) -> HttpResponse {
    let mut body = Vec::new();
    for message in messages {
        aws_smithy_eventstream::frame::write_message_to(message, &mut body).unwrap();
    }
    with_stream_headers(HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::from(body)))
}

fn with_stream_headers(mut response: HttpResponse) -> HttpResponse {
    response.headers_mut().insert("content-type", "application/vnd.amazon.eventstream");
    response.headers_mut().insert("x-amzn-bedrock-agent-content-type", "application/json");
    response.headers_mut().insert("x-amz-bedrock-agent-session-id", SESSION);
    response
}

fn error_response(status: u16, code: &'static str, message: &str) -> HttpResponse {
    let mut response = HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(format!(r#"{{"message":"{message}"}}"#)),
    );
    response.headers_mut().insert("content-type", "application/json");
    response.headers_mut().insert("x-amzn-errortype", code);
    response
}

/// Three attempts with a negligible back-off, so the SDK's retries run without slowing the test.
fn quick_retries(conf: aws_sdk_bedrockagentruntime::config::Builder) -> aws_sdk_bedrockagentruntime::config::Builder {
    conf.retry_config(RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(1)))
}

async fn run(client: &Client, timeout: Duration) -> Analysis {
    analyze(Some(client), Some(&bedrock_agent()), &Thresholds::default(), timeout, &wave()).await
}

fn assert_rules_fallback(analysis: &Analysis) {
    assert_eq!(analysis.source, Source::Rules);
    assert!(analysis.issues_detected, "the rules see the failed instance");
    assert!(analysis.reasons.iter().any(|r| r.contains("i-0abc")), "{:?}", analysis.reasons);
}

#[tokio::test]
async fn a_well_formed_answer_is_the_analysis() {
    let answer = mock!(Client::invoke_agent)
        .match_requests(|request| {
            let prompt = request.input_text().unwrap_or_default();
            request.agent_id() == Some("AGENT12345")
                && request.agent_alias_id() == Some("ALIAS12345")
                && request.session_id() == Some(SESSION)
                && prompt.contains(r#""failed":1"#)
                && prompt.contains(r#""instanceId":"i-0abc""#)
                && prompt.contains("Reply with ONLY a JSON object")
        })
        .then_http_response(|| {
            // The answer split across chunks, wrapped in prose and a Markdown fence.
            stream_response(&[
                chunk("Here is my analysis:\n```json\n{\"issuesDetected\": true, \"summary\": \"One instance"),
                chunk(" failed: yum lock held on i-0abc.\\nRetry after clearing the lock.\", "),
                chunk("\"reasons\": [\"1 of 40 instances failed\", \"yum lock held on i-0abc\"]}\n```\nDone."),
            ])
        });
    let client = mock_client!(aws_sdk_bedrockagentruntime, [&answer]);
    let analysis = run(&client, TIMEOUT).await;
    assert_eq!(
        analysis,
        Analysis {
            source: Source::Bedrock,
            issues_detected: true,
            summary: "One instance failed: yum lock held on i-0abc. Retry after clearing the lock.".into(),
            reasons: vec!["1 of 40 instances failed".into(), "yum lock held on i-0abc".into()],
            agent_error: None,
        }
    );
    assert_eq!(answer.num_calls(), 1);
}

#[tokio::test]
async fn the_agent_cannot_clear_issues_the_rules_found() {
    let answer = mock!(Client::invoke_agent).then_http_response(|| {
        stream_response(&[chunk(r#"{"issuesDetected": false, "summary": "A known flaky host.", "reasons": []}"#)])
    });
    let client = mock_client!(aws_sdk_bedrockagentruntime, [&answer]);
    let analysis = run(&client, TIMEOUT).await;
    assert_eq!(analysis.source, Source::Bedrock);
    assert_eq!(analysis.summary, "A known flaky host.");
    assert!(analysis.issues_detected, "a failed instance stays an issue whatever the model says");
    assert_eq!(analysis.reasons, ["the rules found issues the agent did not flag"]);
}

#[tokio::test]
async fn throttling_after_the_sdk_retries_falls_back_to_the_rules() {
    let throttled = mock!(Client::invoke_agent)
        .sequence()
        .http_response(|| error_response(429, "ThrottlingException", "Rate exceeded."))
        .times(3)
        .build();
    let client = mock_client!(aws_sdk_bedrockagentruntime, RuleMode::Sequential, [&throttled], quick_retries);
    let analysis = run(&client, TIMEOUT).await;
    assert_rules_fallback(&analysis);
    assert_eq!(throttled.num_calls(), 3, "the SDK retried throttling before giving up");
    let error = analysis.agent_error.unwrap();
    assert!(error.contains("throttled on InvokeAgent"), "{error}");
    assert!(error.contains("agent AGENT12345 alias ALIAS12345") && error.contains("Rate exceeded."), "{error}");
}

#[tokio::test]
async fn throttling_inside_the_answer_stream_falls_back_to_the_rules() {
    let throttled = mock!(Client::invoke_agent)
        .then_http_response(|| stream_response(&[exception("throttlingException", "Your request rate is too high.")]));
    let client = mock_client!(aws_sdk_bedrockagentruntime, [&throttled]);
    let analysis = run(&client, TIMEOUT).await;
    assert_rules_fallback(&analysis);
    let error = analysis.agent_error.unwrap();
    assert!(error.contains("response stream") && error.contains("throttled"), "{error}");
    assert!(error.contains("Your request rate is too high."), "{error}");
}

#[tokio::test]
async fn access_denied_falls_back_to_the_rules() {
    let denied = mock!(Client::invoke_agent).then_http_response(|| {
        error_response(403, "AccessDeniedException", "not authorized to perform: bedrock:InvokeAgent")
    });
    let client = mock_client!(aws_sdk_bedrockagentruntime, RuleMode::Sequential, [&denied], quick_retries);
    let analysis = run(&client, TIMEOUT).await;
    assert_rules_fallback(&analysis);
    assert_eq!(denied.num_calls(), 1, "a refusal is not retried");
    let error = analysis.agent_error.unwrap();
    assert!(error.contains("AccessDeniedException") && error.contains("bedrock:InvokeAgent"), "{error}");
}

#[tokio::test]
async fn a_malformed_answer_falls_back_to_the_rules() {
    let prose = mock!(Client::invoke_agent).then_http_response(|| {
        stream_response(&[chunk("I think the wave went mostly fine, but one instance {failed}.")])
    });
    let client = mock_client!(aws_sdk_bedrockagentruntime, [&prose]);
    let analysis = run(&client, TIMEOUT).await;
    assert_rules_fallback(&analysis);
    let error = analysis.agent_error.unwrap();
    assert!(error.starts_with("the agent's answer is not JSON"), "{error}");
    assert!(error.contains("mostly fine"), "the start of the answer helps debugging: {error}");
}

#[tokio::test]
async fn json_without_issues_detected_falls_back_to_the_rules() {
    let vague = mock!(Client::invoke_agent)
        .then_http_response(|| stream_response(&[chunk(r#"{"summary": "Looks fine.", "reasons": []}"#)]));
    let client = mock_client!(aws_sdk_bedrockagentruntime, [&vague]);
    let analysis = run(&client, TIMEOUT).await;
    assert_rules_fallback(&analysis);
    assert_eq!(analysis.agent_error.as_deref(), Some("the agent's answer has no issuesDetected"));
}

#[tokio::test]
async fn an_empty_answer_falls_back_to_the_rules() {
    let silent = mock!(Client::invoke_agent).then_http_response(|| stream_response(&[]));
    let client = mock_client!(aws_sdk_bedrockagentruntime, [&silent]);
    let analysis = run(&client, TIMEOUT).await;
    assert_rules_fallback(&analysis);
    let error = analysis.agent_error.unwrap();
    assert!(error.contains("is empty"), "{error}");
}

/// A body that never yields a byte: Bedrock accepted the call but never answers.
struct Silence;

impl http_body::Body for Silence {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Poll::Pending
    }
}

#[tokio::test]
async fn an_agent_that_never_answers_times_out_into_the_rules() {
    let hanging = mock!(Client::invoke_agent).then_http_response(|| {
        with_stream_headers(HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::from_body_1_x(Silence)))
    });
    let client = mock_client!(aws_sdk_bedrockagentruntime, [&hanging]);
    let started = std::time::Instant::now();
    let analysis = run(&client, Duration::from_millis(200)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_rules_fallback(&analysis);
    let error = analysis.agent_error.unwrap();
    assert!(error.contains("did not answer within 0.2 s"), "{error}");
}

#[tokio::test]
async fn without_an_agent_bedrock_is_not_called() {
    let unused = mock!(Client::invoke_agent).then_http_response(|| stream_response(&[]));
    let client = mock_client!(aws_sdk_bedrockagentruntime, [&unused]);
    let analysis = analyze(Some(&client), None, &Thresholds::default(), TIMEOUT, &wave()).await;
    assert_rules_fallback(&analysis);
    assert_eq!(analysis.agent_error, None, "no agent configured is not an agent error");
    assert_eq!(unused.num_calls(), 0);

    let analysis = analyze(None, Some(&bedrock_agent()), &Thresholds::default(), TIMEOUT, &wave()).await;
    assert_rules_fallback(&analysis);
    assert!(analysis.agent_error.unwrap().contains("no Bedrock client"));
}

#[test]
fn answers_are_found_in_surrounding_text_and_clipped() {
    let text = format!(
        "Sure! {{not json}} and {{\"other\": 1}} then:\n```\n{{\"issuesDetected\": false, \"summary\": \"{}\", \
         \"reasons\": [\"{}\", 7, \"ok\", \"\", \"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\"]}}\n```",
        "s".repeat(2000),
        "r".repeat(500)
    );
    let analysis = agent::parse_answer(&text).unwrap();
    assert_eq!(analysis.source, Source::Bedrock);
    assert!(!analysis.issues_detected);
    assert_eq!(analysis.summary.chars().count(), 1500);
    assert!(analysis.summary.ends_with("..."));
    assert_eq!(analysis.reasons.len(), MAX_REASONS);
    assert_eq!(analysis.reasons[0].chars().count(), MAX_REASON_CHARS);
    assert_eq!(analysis.reasons[1], "ok", "non-strings and empty reasons are dropped");

    let error = agent::parse_answer(r#"{"issuesDetected": "maybe"}"#).unwrap_err();
    assert!(error.contains("not true or false"), "{error}");
    let analysis = agent::parse_answer(r#"{"issuesDetected": true}"#).unwrap();
    assert_eq!(analysis.summary, "The Bedrock agent reported issues but gave no summary.");
}

#[test]
fn session_ids_are_valid_and_distinct_per_wave_and_mode() {
    assert_eq!(agent::session_id("run-1", 0, Mode::PostWave), SESSION);
    assert_eq!(agent::session_id("nightly_2026_01", 3, Mode::PrePatch), "nightly-2026-01-w3-prePatch");
    let long = agent::session_id(&"x".repeat(200), 12, Mode::PrePatch);
    assert_eq!(long.len(), MAX_SESSION_ID_LEN);
    assert!(long.ends_with("-w12-prePatch"));
    assert!(long.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-')));
}
