//! ApprovalCallback: the `/callback` route of the hub's HTTP API (payload format 2.0).
//!
//! `GET` verifies the link and shows a confirmation page; it never changes anything, so a mail
//! scanner that fetches every link decides nothing. Only the page's `POST` decides: it verifies
//! again, records the decision with a conditional write (only `pending` -> `approved`/`rejected`,
//! only before the link expires) and then resumes or fails the waiting execution.
//!
//! Bad input gets a small page and a 4xx status, never a 500: tampered or incomplete link 400,
//! unknown approval 404, already decided 409, expired 410.

mod pages;

use std::collections::HashMap;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use base64::Engine;
use ec2patch_core::approval::{
    self, Action, ApprovalDetails, Decision, SigningKey, TaskToken, format_epoch, now_epoch_seconds,
};
use ec2patch_core::{Error, Hub, Result};
use http::Method;
use serde_json::json;

pub use pages::Page;

/// What the function needs beyond the hub: its signing key and Step Functions.
#[derive(Debug)]
pub struct Deps {
    pub key: SigningKey,
    pub sfn: aws_sdk_sfn::Client,
}

impl Deps {
    pub async fn load(hub: &Hub) -> Result<Self> {
        Ok(Self { key: hub.load_signing_key().await?, sfn: aws_sdk_sfn::Client::new(&hub.sdk) })
    }
}

/// The four values every link and form carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkParams {
    pub id: String,
    pub action: Action,
    pub expires_at: u64,
    pub sig: String,
}

/// Reads `id`, `action`, `exp` and `sig` from a query string or form body; `None` when any is
/// missing, repeated or malformed.
pub fn parse_params(encoded: &[u8]) -> Option<LinkParams> {
    let mut values: HashMap<String, String> = HashMap::new();
    for (key, value) in form_urlencoded::parse(encoded) {
        if values.insert(key.into_owned(), value.into_owned()).is_some() {
            return None;
        }
    }
    Some(LinkParams {
        id: values.get("id").filter(|id| approval::is_approval_id(id))?.clone(),
        action: Action::parse(values.get("action")?)?,
        expires_at: values.get("exp")?.parse().ok()?,
        sig: values.get("sig")?.clone(),
    })
}

pub async fn handle(hub: &Hub, deps: &Deps, event: ApiGatewayV2httpRequest) -> Result<ApiGatewayV2httpResponse> {
    let page = respond(hub, deps, &event).await;
    Ok(page.into_response())
}

async fn respond(hub: &Hub, deps: &Deps, event: &ApiGatewayV2httpRequest) -> Page {
    let method = event.request_context.http.method.clone();
    let encoded: Vec<u8> = if method == Method::POST {
        match body_bytes(event) {
            Some(bytes) => bytes,
            None => return Page::bad_request(),
        }
    } else if method == Method::GET || method == Method::HEAD {
        event.raw_query_string.clone().unwrap_or_default().into_bytes()
    } else {
        return Page::method_not_allowed();
    };
    let Some(params) = parse_params(&encoded) else {
        return Page::bad_request();
    };
    if !signature_ok(hub, deps, &params).await {
        tracing::warn!(approval_id = %params.id, "approval link with an invalid signature");
        return Page::bad_request();
    }
    if params.expires_at <= now_epoch_seconds() {
        return Page::expired();
    }
    let record = match load(hub, &params.id).await {
        Ok(Some(record)) => record,
        Ok(None) => return Page::not_found(),
        Err(error) => {
            tracing::error!(approval_id = %params.id, %error, "cannot read the approval");
            return Page::unavailable(false);
        }
    };
    if record.details.link_expires_at != params.expires_at {
        return Page::bad_request();
    }
    if method == Method::POST {
        decide(hub, deps, event, &params, record).await
    } else if let Some(decision) = record.decision {
        Page::already_decided(decision)
    } else {
        Page::confirm(&record.details, &params, &deps.key)
    }
}

/// How long keys re-read after a signature mismatch are used before the next re-read: bounds
/// the SSM calls a stream of forged links can cause to one a minute per container.
const KEY_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// The last re-read of the keys after a mismatch: when, and the keys (`None`: the re-read
/// failed; a failure is remembered too, or forged links would each cost an SSM call while SSM
/// is failing).
type Reloaded = Option<(std::time::Instant, Option<SigningKey>)>;
static RELOADED_KEYS: std::sync::Mutex<Reloaded> = std::sync::Mutex::new(None);

/// Checks a link's signature against the keys loaded at cold start and, on a mismatch, against
/// the parameter's current keys: after a rotation (`<new>,<old>` in SSM) a warm container still
/// holding only the old key must accept links the new key signed.
async fn signature_ok(hub: &Hub, deps: &Deps, params: &LinkParams) -> bool {
    let verify = |key: &SigningKey| key.verify(&params.id, params.action, params.expires_at, &params.sig);
    match verify(&deps.key) {
        Ok(()) => return true,
        Err(approval::SignatureError::Malformed) => return false,
        Err(approval::SignatureError::Mismatch) => {}
    }
    let recent = {
        let guard = RELOADED_KEYS.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|(at, _)| at.elapsed() < KEY_RELOAD_INTERVAL).map(|(_, keys)| keys.clone())
    };
    let keys = match recent {
        Some(keys) => keys,
        None => {
            let keys = match hub.load_signing_key().await {
                Ok(keys) => Some(keys),
                Err(error) => {
                    tracing::error!(%error, "cannot re-read the approval link keys");
                    None
                }
            };
            *RELOADED_KEYS.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), keys.clone()));
            keys
        }
    };
    keys.is_some_and(|keys| verify(&keys).is_ok())
}

fn body_bytes(event: &ApiGatewayV2httpRequest) -> Option<Vec<u8>> {
    let body = event.body.as_deref().unwrap_or_default();
    if event.is_base64_encoded {
        base64::engine::general_purpose::STANDARD.decode(body).ok()
    } else {
        Some(body.as_bytes().to_vec())
    }
}

/// An approval as stored.
struct Record {
    details: ApprovalDetails,
    task_token: TaskToken,
    decision: Option<Decision>,
    notified: Option<String>,
}

async fn load(hub: &Hub, id: &str) -> Result<Option<Record>> {
    let Some(item) = hub.store.get_item(&approval::approval_pk(id), approval::APPROVAL_SK).await? else {
        return Ok(None);
    };
    let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned();
    let details: ApprovalDetails = serde_json::from_str(&text("details").unwrap_or_default())
        .map_err(|e| Error::StateStoreFailed(format!("approval {id} has unreadable details: {e}")))?;
    let status = text("status").unwrap_or_default();
    let decision = (status != approval::PENDING).then(|| Decision {
        status,
        decided_by: text("decidedBy").unwrap_or_default(),
        decided_at: text("decidedAt").unwrap_or_default(),
        source_ip: text("sourceIp").unwrap_or_default(),
    });
    Ok(Some(Record {
        details,
        task_token: TaskToken::new(text("taskToken").unwrap_or_default()),
        decision,
        notified: text("notified"),
    }))
}

/// Who decided: the identity API Gateway authenticated, if any (an SSO/JWT authorizer in front),
/// else whoever held the link.
fn decided_by(event: &ApiGatewayV2httpRequest) -> String {
    let authorizer = event.request_context.authorizer.as_ref();
    if let Some(claims) = authorizer.and_then(|a| a.jwt.as_ref()).map(|jwt| &jwt.claims)
        && let Some(who) = claims.get("email").or_else(|| claims.get("sub"))
    {
        return format!("sso:{who}");
    }
    if let Some(arn) = authorizer.and_then(|a| a.iam.as_ref()).and_then(|iam| iam.user_arn.clone()) {
        return format!("iam:{arn}");
    }
    "anonymous (holder of the emailed link)".to_owned()
}

async fn decide(hub: &Hub, deps: &Deps, event: &ApiGatewayV2httpRequest, params: &LinkParams, record: Record) -> Page {
    let decider = Decider {
        decided_by: decided_by(event),
        source_ip: event.request_context.http.source_ip.clone().unwrap_or_default(),
        user_agent: event.request_context.http.user_agent.clone().unwrap_or_default(),
    };
    let details = record.details.clone();
    match record_decision(hub, &deps.sfn, &params.id, params.action, &decider, record).await {
        DecisionOutcome::Decided { decision, delivery: Delivery::Resumed } => Page::decided(&details, &decision),
        DecisionOutcome::Decided { delivery: Delivery::TaskClosed, .. } => Page::closed(),
        DecisionOutcome::Decided { delivery: Delivery::Unavailable, .. } => Page::unavailable(true),
        DecisionOutcome::AlreadyDecided(earlier) => Page::already_decided(earlier),
        DecisionOutcome::Expired => Page::expired(),
        DecisionOutcome::NotFound => Page::not_found(),
        DecisionOutcome::Unavailable => Page::unavailable(false),
    }
}

/// Who decides, as the audit record keeps it: the callback's requester, or an operator's IAM
/// identity when the `ec2patch approve`/`reject` command decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    pub decided_by: String,
    pub source_ip: String,
    pub user_agent: String,
}

/// Whether the waiting execution heard the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// SendTaskSuccess/SendTaskFailure went through: the run goes on (or stops, on reject).
    Resumed,
    /// The execution had stopped waiting (timed out, stopped): recorded, without effect.
    TaskClosed,
    /// Step Functions could not be reached; deciding again re-delivers the recorded decision.
    Unavailable,
}

/// The result of one attempt to decide an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionOutcome {
    Decided {
        decision: Decision,
        delivery: Delivery,
    },
    /// Decided before (this attempt changed nothing); an undelivered earlier decision was re-sent.
    AlreadyDecided(Decision),
    Expired,
    NotFound,
    /// The records could not be read or written: nothing was decided.
    Unavailable,
}

/// Decides approval `id` the way the confirmation page's POST does (same conditional write, same
/// audit fields, same delivery to the waiting execution), for callers that are not the callback:
/// the operator CLI. The link's signature is not involved: the caller's IAM permissions on the
/// table and on Step Functions are the authorization.
pub async fn decide_approval(
    hub: &Hub,
    sfn: &aws_sdk_sfn::Client,
    id: &str,
    action: Action,
    decider: &Decider,
) -> DecisionOutcome {
    match load(hub, id).await {
        Ok(Some(record)) => record_decision(hub, sfn, id, action, decider, record).await,
        Ok(None) => DecisionOutcome::NotFound,
        Err(error) => {
            tracing::error!(approval_id = %id, %error, "cannot read the approval");
            DecisionOutcome::Unavailable
        }
    }
}

/// An approval waiting for a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApproval {
    pub id: String,
    pub details: ApprovalDetails,
}

/// The pending approvals in the table, the soonest to expire first. A filtered Scan: approvals are few
/// (one per wave and run, kept for the record TTL) and this is an operator command, not a hot path.
pub async fn pending_approvals(hub: &Hub) -> Result<Vec<PendingApproval>> {
    let mut pending = Vec::new();
    let mut pages = hub
        .store
        .dynamodb()
        .scan()
        .table_name(hub.store.table())
        // An unanswered approval stays `pending` after its wave stopped waiting: only live ones.
        .filter_expression("sk = :sk AND #status = :pending AND linkExpiresAt > :now")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":sk", AttributeValue::S(approval::APPROVAL_SK.to_owned()))
        .expression_attribute_values(":pending", AttributeValue::S(approval::PENDING.to_owned()))
        .expression_attribute_values(":now", AttributeValue::N(now_epoch_seconds().to_string()))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            Error::StateStoreFailed(format!(
                "scanning {} for pending approvals: {}",
                hub.store.table(),
                DisplayErrorContext(&e)
            ))
        })?;
        for item in page.items.unwrap_or_default() {
            let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok());
            let Some(id) = text("pk").and_then(|pk| pk.strip_prefix("APPROVAL#")) else { continue };
            let Some(details) = text("details") else { continue };
            match serde_json::from_str::<ApprovalDetails>(details) {
                Ok(details) => pending.push(PendingApproval { id: id.to_owned(), details }),
                Err(error) => tracing::warn!(%error, "skipping an approval with unreadable details"),
            }
        }
    }
    pending.sort_by_key(|p| p.details.link_expires_at);
    Ok(pending)
}

async fn record_decision(
    hub: &Hub,
    sfn: &aws_sdk_sfn::Client,
    id: &str,
    action: Action,
    decider: &Decider,
    record: Record,
) -> DecisionOutcome {
    let now = now_epoch_seconds();
    let decision = Decision {
        status: action.decision().to_owned(),
        decided_by: decider.decided_by.clone(),
        decided_at: format_epoch(now),
        source_ip: decider.source_ip.clone(),
    };
    // Tells this request's own write apart from an earlier one: when the answer to the write is
    // lost (connection reset, 5xx) the SDK writes again and the condition fails on our own
    // decision, which must still be delivered and reported as decided, not as "already decided".
    let write_id = approval::new_approval_id().unwrap_or_else(|_| format!("{now}-{}", decision.decided_by));
    let written = hub
        .store
        .dynamodb()
        .update_item()
        .table_name(hub.store.table())
        .key("pk", AttributeValue::S(approval::approval_pk(id)))
        .key("sk", AttributeValue::S(approval::APPROVAL_SK.to_owned()))
        .update_expression(
            "SET #status = :decision, decidedBy = :by, decidedAt = :at, sourceIp = :ip, userAgent = :ua, notified = :no, decisionWrite = :write",
        )
        .condition_expression("#status = :pending AND linkExpiresAt > :now")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":decision", AttributeValue::S(decision.status.clone()))
        .expression_attribute_values(":by", AttributeValue::S(decision.decided_by.clone()))
        .expression_attribute_values(":at", AttributeValue::S(decision.decided_at.clone()))
        .expression_attribute_values(":ip", AttributeValue::S(decision.source_ip.clone()))
        .expression_attribute_values(":ua", AttributeValue::S(decider.user_agent.clone()))
        .expression_attribute_values(":no", AttributeValue::S("no".to_owned()))
        .expression_attribute_values(":pending", AttributeValue::S(approval::PENDING.to_owned()))
        .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
        .expression_attribute_values(":write", AttributeValue::S(write_id.clone()))
        .send()
        .await;
    if let Err(error) = written {
        let conditional = error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception());
        if !conditional {
            tracing::error!(approval_id = %id, error = %DisplayErrorContext(&error).to_string(), "cannot record the decision");
            return DecisionOutcome::Unavailable;
        }
        let ours = match hub.store.get_item(&approval::approval_pk(id), approval::APPROVAL_SK).await {
            Ok(Some(item)) => item.get("decisionWrite").and_then(|v| v.as_s().ok()) == Some(&write_id),
            _ => false,
        };
        if !ours {
            // Decided before (a replay, or the other button), or expired in between.
            return decided_before(hub, sfn, id).await;
        }
        tracing::info!(approval_id = %id, "the decision's write succeeded although its answer was lost");
    }
    deliver_decision(hub, sfn, id, decision, record).await
}

/// The answer when the approval was decided by an earlier request (or expired meanwhile).
async fn decided_before(hub: &Hub, sfn: &aws_sdk_sfn::Client, id: &str) -> DecisionOutcome {
    match load(hub, id).await {
        Ok(Some(Record { decision: Some(earlier), task_token, notified, details })) => {
            // The earlier decision was recorded but could not resume the execution: finish
            // that job now (the decision stands as recorded; this request adds nothing).
            if notified.as_deref() == Some("no") {
                let _ = notify(sfn, &task_token, id, &earlier, &details).await;
                mark_notified(hub, id, "yes").await;
            }
            DecisionOutcome::AlreadyDecided(earlier)
        }
        Ok(Some(_)) => DecisionOutcome::Expired,
        Ok(None) => DecisionOutcome::NotFound,
        Err(_) => DecisionOutcome::Unavailable,
    }
}

/// After this request recorded `decision`: resume (or fail) the waiting execution.
async fn deliver_decision(
    hub: &Hub,
    sfn: &aws_sdk_sfn::Client,
    id: &str,
    decision: Decision,
    record: Record,
) -> DecisionOutcome {
    // The decision ends the wait: the hub's PendingApprovals alarm watches this go back to 0.
    ec2patch_core::metrics::emit(
        Some(&record.details.wave_name),
        &[
            ec2patch_core::metrics::Metric::count("PendingApprovals", 0),
            ec2patch_core::metrics::Metric::count("ApprovalsDecided", 1),
        ],
    );
    tracing::info!(approval_id = %id, run_id = %record.details.run_id, wave = record.details.wave_index,
        decision = %decision.status, decided_by = %decision.decided_by, "approval decided");
    let delivery = match notify(sfn, &record.task_token, id, &decision, &record.details).await {
        Ok(()) => {
            mark_notified(hub, id, "yes").await;
            Delivery::Resumed
        }
        Err(Notify::TaskClosed) => {
            mark_notified(hub, id, "task-closed").await;
            Delivery::TaskClosed
        }
        Err(Notify::Unavailable) => Delivery::Unavailable,
    };
    DecisionOutcome::Decided { decision, delivery }
}

enum Notify {
    /// The execution stopped waiting (timed out, stopped): the decision cannot take effect.
    TaskClosed,
    /// Step Functions could not be reached; a later POST of the same form retries.
    Unavailable,
}

async fn notify(
    sfn: &aws_sdk_sfn::Client,
    token: &TaskToken,
    id: &str,
    decision: &Decision,
    details: &ApprovalDetails,
) -> Result<(), Notify> {
    let result = if decision.status == Action::Approve.decision() {
        let output = json!({
            "decision": decision.status,
            "approvalId": id,
            "decidedBy": decision.decided_by,
            "decidedAt": decision.decided_at,
        });
        sfn.send_task_success()
            .task_token(token.expose())
            .output(output.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| notify_error(&e))
    } else {
        sfn.send_task_failure()
            .task_token(token.expose())
            .error("ApprovalRejected")
            .cause(format!(
                "wave {} of run {} rejected by {} at {} (approval {id})",
                details.wave_name, details.run_id, decision.decided_by, decision.decided_at
            ))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| notify_error(&e))
    };
    result.map_err(|(closed, message)| {
        tracing::warn!(approval_id = %id, %message, closed, "cannot resume the execution");
        if closed { Notify::TaskClosed } else { Notify::Unavailable }
    })
}

/// Whether the execution stopped waiting (the decision can no longer take effect), and why.
fn notify_error<E: ProvideErrorMetadata + std::error::Error>(error: &E) -> (bool, String) {
    let closed = matches!(error.code(), Some("TaskTimedOut" | "TaskDoesNotExist" | "InvalidToken"));
    (closed, DisplayErrorContext(error).to_string())
}

async fn mark_notified(hub: &Hub, id: &str, value: &str) {
    let result = hub
        .store
        .dynamodb()
        .update_item()
        .table_name(hub.store.table())
        .key("pk", AttributeValue::S(approval::approval_pk(id)))
        .key("sk", AttributeValue::S(approval::APPROVAL_SK.to_owned()))
        .update_expression("SET notified = :value")
        .expression_attribute_values(":value", AttributeValue::S(value.to_owned()))
        .send()
        .await;
    if let Err(error) = result {
        // The decision stands; a replayed POST re-sends the (idempotent) task outcome.
        tracing::warn!(approval_id = %id, error = %DisplayErrorContext(&error).to_string(), "cannot mark the approval notified");
    }
}
