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
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use base64::Engine;
use ec2patch_core::approval::decide::{self, Decider, DecisionOutcome, Delivery};
use ec2patch_core::approval::{self, Action, ApprovalRecord, SigningKey};
use ec2patch_core::time::now_epoch_seconds;
use ec2patch_core::{Hub, Result};
use http::Method;

pub use pages::Page;

/// How long keys re-read after a signature mismatch are used before the next re-read: bounds
/// the SSM calls a stream of forged links can cause to one a minute per container.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// What the function needs beyond the hub: its signing key, Step Functions, and the keys last
/// re-read after a signature mismatch.
#[derive(Debug)]
pub struct Deps {
    pub key: SigningKey,
    pub sfn: aws_sdk_sfn::Client,
    reloaded: ReloadedKeys,
}

/// The last re-read of the keys after a mismatch: when, and the keys (`None`: the re-read
/// failed; a failure is remembered too, or forged links would each cost an SSM call while SSM
/// is failing). Per container, as the function's dependencies are.
#[derive(Debug, Default)]
struct ReloadedKeys(Mutex<Option<(Instant, Option<SigningKey>)>>);

impl ReloadedKeys {
    /// The keys re-read less than [`KEY_RELOAD_INTERVAL`] ago, if any re-read was made then.
    fn recent(&self) -> Option<Option<SigningKey>> {
        let guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|(at, _)| at.elapsed() < KEY_RELOAD_INTERVAL).map(|(_, keys)| keys.clone())
    }

    fn remember(&self, keys: Option<SigningKey>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), keys));
    }
}

impl Deps {
    pub fn new(key: SigningKey, sfn: aws_sdk_sfn::Client) -> Self {
        Self { key, sfn, reloaded: ReloadedKeys::default() }
    }

    pub async fn load(hub: &Hub) -> Result<Self> {
        Ok(Self::new(hub.load_signing_key().await?, aws_sdk_sfn::Client::new(&hub.sdk)))
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
    let record = match decide::load(&hub.store, &params.id).await {
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
        post_decision(hub, deps, event, &params, record).await
    } else if let Some(decision) = record.decision {
        Page::already_decided(decision)
    } else {
        Page::confirm(&record.details, &params, &deps.key)
    }
}

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
    let keys = match deps.reloaded.recent() {
        Some(keys) => keys,
        None => {
            let keys = match hub.load_signing_key().await {
                Ok(keys) => Some(keys),
                Err(error) => {
                    tracing::error!(%error, "cannot re-read the approval link keys");
                    None
                }
            };
            deps.reloaded.remember(keys.clone());
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

/// The confirmation page's POST: decides (see [`ec2patch_core::approval::decide`]) and answers
/// with the page for the outcome.
async fn post_decision(
    hub: &Hub,
    deps: &Deps,
    event: &ApiGatewayV2httpRequest,
    params: &LinkParams,
    record: ApprovalRecord,
) -> Page {
    let decider = Decider {
        decided_by: decided_by(event),
        source_ip: event.request_context.http.source_ip.clone().unwrap_or_default(),
        user_agent: event.request_context.http.user_agent.clone().unwrap_or_default(),
    };
    let details = record.details.clone();
    match decide::decide_loaded(&hub.store, &deps.sfn, record, params.action, &decider).await {
        DecisionOutcome::Decided { decision, delivery: Delivery::Resumed } => Page::decided(&details, &decision),
        DecisionOutcome::Decided { delivery: Delivery::TaskClosed, .. } => Page::closed(),
        DecisionOutcome::Decided { delivery: Delivery::Unavailable, .. } => Page::unavailable(true),
        DecisionOutcome::AlreadyDecided(earlier) => Page::already_decided(earlier),
        DecisionOutcome::Expired => Page::expired(),
        DecisionOutcome::NotFound => Page::not_found(),
        DecisionOutcome::Unavailable => Page::unavailable(false),
    }
}
