//! The router in front of moto.
//!
//! moto's Step Functions interpreter calls every service at `localhost:$MOTO_PORT`, and so do
//! our handlers when they run locally: that port is this router. Lambda `Invoke` requests are
//! answered by our handler code in-process (see [`crate::functions`]); everything else is
//! forwarded to moto. On the way it counts calls per AWS operation and can inject faults.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::apigw;
use crate::calls::{self, CallInfo};
use crate::faults::{Decision, Fault, FaultPlan, Reset};
use crate::functions::FunctionHost;
use crate::http;

#[derive(Debug, Default)]
struct Accounts {
    /// Access key id -> account, learnt from hub keys and AssumeRole answers.
    by_access_key: HashMap<String, String>,
}

/// One SNS notification delivered to the local mailbox (an HTTP subscription of the topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub topic_arn: String,
    pub subject: Option<String>,
    pub message: String,
}

/// One AWS call as the router saw it (see [`Router::start_journal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// `service:Operation`, as [`Router::calls`] counts it.
    pub key: String,
    pub account: Option<String>,
    /// The request body (form parameters or JSON), lossily as text.
    pub body: String,
}

pub struct RouterState {
    moto_port: u16,
    hub_account: String,
    functions: Arc<dyn FunctionHost>,
    callback_function: String,
    mailbox: Mutex<Vec<Mail>>,
    faults: FaultPlan,
    calls: Mutex<BTreeMap<String, u64>>,
    /// Items carried by DynamoDB's batch and transaction calls, per operation.
    items: Mutex<BTreeMap<String, u64>>,
    /// Time spent waiting for moto's answers (nanoseconds, summed over calls).
    upstream_nanos: std::sync::atomic::AtomicU64,
    /// Every AWS call in the order the router saw it, while a test keeps a journal.
    journal: Mutex<Option<Vec<JournalEntry>>>,
    accounts: Mutex<Accounts>,
    /// Secret parts of the session credentials STS issued through the router (for tests that
    /// check no credential leaks, e.g. into logs).
    issued_secrets: Mutex<Vec<String>>,
}

impl std::fmt::Debug for RouterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterState").field("moto_port", &self.moto_port).finish_non_exhaustive()
    }
}

/// A running router; stops when dropped.
#[derive(Debug)]
pub struct Router {
    pub addr: SocketAddr,
    state: Arc<RouterState>,
    task: JoinHandle<()>,
}

impl Drop for Router {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Router {
    /// Serves on `listener`, forwarding to moto on `moto_port`. `/callback` is answered by
    /// `callback_function` (as API Gateway would), `/mailbox` collects SNS deliveries, Lambda
    /// invokes go to `functions`, everything else to moto.
    pub fn serve(
        listener: TcpListener,
        moto_port: u16,
        hub_account: &str,
        functions: Arc<dyn FunctionHost>,
        callback_function: &str,
    ) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        let state = Arc::new(RouterState {
            moto_port,
            hub_account: hub_account.to_owned(),
            functions,
            callback_function: callback_function.to_owned(),
            mailbox: Mutex::new(Vec::new()),
            faults: FaultPlan::default(),
            calls: Mutex::new(BTreeMap::new()),
            items: Mutex::new(BTreeMap::new()),
            upstream_nanos: std::sync::atomic::AtomicU64::new(0),
            journal: Mutex::new(None),
            accounts: Mutex::new(Accounts::default()),
            issued_secrets: Mutex::new(Vec::new()),
        });
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else { continue };
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| route(state.clone(), request, peer));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn faults(&self) -> &FaultPlan {
        &self.state.faults
    }

    /// Calls seen so far, keyed `service:Operation` (Lambda invokes as `lambda:Invoke:<function>`).
    pub fn calls(&self) -> BTreeMap<String, u64> {
        lock(&self.state.calls).clone()
    }

    pub fn reset_calls(&self) {
        lock(&self.state.calls).clear();
        lock(&self.state.items).clear();
        self.state.upstream_nanos.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long the emulator took to answer the calls since the last reset, summed (calls in
    /// flight together each count): the part of a caller's time that is the emulator's.
    pub fn upstream_time(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.state.upstream_nanos.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Items the DynamoDB batch and transaction calls since the last reset carried, per
    /// `dynamodb:<Operation>` (`BatchWriteItem`, `BatchGetItem`, `TransactWriteItems`): what
    /// DynamoDB bills, where a call counts only once.
    pub fn items(&self) -> BTreeMap<String, u64> {
        lock(&self.state.items).clone()
    }

    /// Starts (or restarts, empty) a journal of every AWS call from now on, in arrival order, with
    /// its request body: for tests that check what was called before what.
    pub fn start_journal(&self) {
        *lock(&self.state.journal) = Some(Vec::new());
    }

    /// The journal so far (empty when none was started).
    pub fn journal(&self) -> Vec<JournalEntry> {
        lock(&self.state.journal).clone().unwrap_or_default()
    }

    /// Every SNS notification delivered to the mailbox so far, oldest first.
    pub fn mailbox(&self) -> Vec<Mail> {
        lock(&self.state.mailbox).clone()
    }

    /// The secret access keys and session tokens of every session AssumeRole issued so far.
    pub fn issued_secrets(&self) -> Vec<String> {
        lock(&self.state.issued_secrets).clone()
    }

    /// Tells the router which account an access key belongs to.
    pub fn register_access_key(&self, access_key: &str, account: &str) {
        lock(&self.state.accounts).by_access_key.insert(access_key.to_owned(), account.to_owned());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

type RouterResponse = Response<Full<Bytes>>;

/// Returned instead of a response to make hyper close the connection without answering (an
/// injected connection reset).
fn dropped_connection() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset (injected by the ec2patch local stack)")
}

async fn route(
    state: Arc<RouterState>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Result<RouterResponse, std::io::Error> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => return Ok(plain(StatusCode::BAD_REQUEST, format!("cannot read request body: {error}"))),
    };
    match parts.uri.path() {
        "/callback" => return Ok(callback(&state, &parts, &body, peer).await),
        "/mailbox" if parts.method == Method::POST => return Ok(deliver(&state, &body)),
        _ => {}
    }
    if parts.method == Method::POST
        && let Some(function) = calls::lambda_invoke_target(parts.uri.path())
    {
        let call = CallInfo::lambda_invoke(&function, &state.hub_account);
        count(&state, &call.key());
        // Lambda payloads are JSON: rules may match a field of it (one batch of a Map).
        let payload = serde_json::from_slice::<serde_json::Value>(&body).ok();
        let decision = state.faults.decide_with_payload(&call, payload.as_ref());
        return apply_faults(&call, decision, invoke(&state, &function, &body)).await;
    }
    let call =
        calls::describe(&parts, &body, &state.hub_account, |key| lock(&state.accounts).by_access_key.get(key).cloned());
    count(&state, &call.key());
    if let Some(items) = calls::dynamodb_items(&call, &body) {
        *lock(&state.items).entry(call.key()).or_default() += items;
    }
    if let Some(journal) = lock(&state.journal).as_mut() {
        journal.push(JournalEntry {
            key: call.key(),
            account: call.account.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    let decision = state.faults.decide(&call);
    apply_faults(&call, decision, forward(&state, parts, body, &call)).await
}

/// The one place a fault decision takes effect on a call: delay it, drop its connection (before
/// `upstream` sees it, or after), or answer with the injected error or canned answer instead of
/// `upstream` (moto, or our handler for a Lambda invoke).
async fn apply_faults(
    call: &CallInfo,
    decision: Option<Decision>,
    upstream: impl Future<Output = RouterResponse>,
) -> Result<RouterResponse, std::io::Error> {
    let Some(decision) = decision else { return Ok(upstream.await) };
    if let Some(latency) = decision.latency {
        tokio::time::sleep(latency).await;
    }
    if decision.reset == Some(Reset::BeforeForwarding) {
        return Err(dropped_connection());
    }
    // A Lambda error with a status below 400 is a function error: the handler runs first.
    let function_error = decision.error.as_ref().filter(|e| call.is_lambda_invoke() && e.status < 400);
    if let Some(error) = decision.error.as_ref().filter(|_| function_error.is_none()) {
        return Ok(fault_response(call, error));
    }
    if let Some(canned) = &decision.response {
        let mut response = Response::new(Full::new(Bytes::from(canned.body.clone())));
        *response.status_mut() = StatusCode::from_u16(canned.status).unwrap_or(StatusCode::OK);
        if let Ok(value) = HeaderValue::from_str(&canned.content_type) {
            response.headers_mut().insert("content-type", value);
        }
        return Ok(response);
    }
    let response = upstream.await;
    if decision.reset == Some(Reset::AfterForwarding) {
        return Err(dropped_connection());
    }
    if let Some(error) = function_error {
        // The handler ran (its side effects stand), but the invocation ends as a function
        // error, as Lambda ends one that ran out of time.
        return Ok(json_response(
            StatusCode::OK,
            &json!({"errorType": error.code, "errorMessage": error.message}),
            Some("Unhandled"),
        ));
    }
    Ok(response)
}

async fn invoke(state: &RouterState, function: &str, payload: &[u8]) -> RouterResponse {
    let payload: Value = if payload.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(payload) {
            Ok(value) => value,
            Err(error) => {
                return lambda_error(StatusCode::BAD_REQUEST, "InvalidRequestContentException", &error.to_string());
            }
        }
    };
    match state.functions.invoke(calls::short_name(function), payload) {
        None => {
            lambda_error(StatusCode::NOT_FOUND, "ResourceNotFoundException", &format!("Function not found: {function}"))
        }
        Some(future) => match future.await {
            Ok(output) => json_response(StatusCode::OK, &output, None),
            // Lambda reports a handler error as a successful Invoke with this header.
            Err(diagnostic) => json_response(
                StatusCode::OK,
                &json!({"errorType": diagnostic.error_type, "errorMessage": diagnostic.error_message}),
                Some("Unhandled"),
            ),
        },
    }
}

/// The hub's HTTP API route: the request as an API Gateway v2 event to ApprovalCallback.
async fn callback(
    state: &RouterState,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    peer: SocketAddr,
) -> RouterResponse {
    count(state, "apigateway:/callback");
    let event = apigw::event(parts, body, peer, &state.hub_account);
    let Some(future) = state.functions.invoke(&state.callback_function, event) else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the callback function is not deployed".to_owned());
    };
    match future.await {
        Ok(answer) => {
            let (status, headers, body) = apigw::response(&answer);
            let mut response = Response::new(Full::new(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) =
                    (hyper::header::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value))
                {
                    response.headers_mut().insert(name, value);
                }
            }
            response
        }
        // API Gateway answers a failed integration with 500 and this body.
        Err(_) => json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!({"message": "Internal Server Error"}), None),
    }
}

/// An SNS HTTP(S) delivery: keep notifications, acknowledge everything.
fn deliver(state: &RouterState, body: &Bytes) -> RouterResponse {
    if let Ok(message) = serde_json::from_slice::<Value>(body)
        && message.get("Type").and_then(Value::as_str) == Some("Notification")
    {
        lock(&state.mailbox).push(Mail {
            topic_arn: message.get("TopicArn").and_then(Value::as_str).unwrap_or_default().to_owned(),
            subject: message.get("Subject").and_then(Value::as_str).map(str::to_owned),
            message: message.get("Message").and_then(Value::as_str).unwrap_or_default().to_owned(),
        });
    }
    plain(StatusCode::OK, String::new())
}

fn lambda_error(status: StatusCode, kind: &str, message: &str) -> RouterResponse {
    let mut response = json_response(status, &json!({"Type": "User", "message": message}), None);
    if let Ok(value) = HeaderValue::from_str(kind) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    // Lambda names every answer's request; moto's interpreter reads it when it reports an
    // Invoke API error (Lambda.<code>), and fails with KeyError('RequestId') without it.
    response.headers_mut().insert("x-amzn-requestid", HeaderValue::from_static("ec2patch-local-invoke"));
    response
}

fn json_response(status: StatusCode, body: &Value, function_error: Option<&str>) -> RouterResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(kind) = function_error.and_then(|k| HeaderValue::from_str(k).ok()) {
        response.headers_mut().insert("x-amz-function-error", kind);
    }
    response
}

fn plain(status: StatusCode, text: String) -> RouterResponse {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}

fn count(state: &RouterState, key: &str) {
    *lock(&state.calls).entry(key.to_owned()).or_default() += 1;
}

async fn forward(
    state: &RouterState,
    parts: hyper::http::request::Parts,
    body: Bytes,
    call: &CallInfo,
) -> RouterResponse {
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(format!("http://127.0.0.1:{}{path_and_query}", state.moto_port));
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection" | "expect") {
            builder = builder.header(name, value);
        }
    }
    // moto's interpreter signs with a fixed key that moto maps to its default account; in AWS
    // the state machine acts in the hub account, so say so.
    if call.account.as_deref() == Some(state.hub_account.as_str()) && !parts.headers.contains_key("x-moto-account-id") {
        builder = builder.header("x-moto-account-id", state.hub_account.as_str());
    }
    let request = match builder.body(Full::new(body)) {
        Ok(request) => request,
        Err(error) => return plain(StatusCode::BAD_REQUEST, error.to_string()),
    };
    let asked = std::time::Instant::now();
    let response = http::send(request).await;
    let waited = u64::try_from(asked.elapsed().as_nanos()).unwrap_or(u64::MAX);
    state.upstream_nanos.fetch_add(waited, std::sync::atomic::Ordering::Relaxed);
    let response = match response {
        Ok(response) => response,
        Err(error) => return plain(StatusCode::BAD_GATEWAY, format!("moto unreachable: {error}")),
    };
    // Learn which account the new session's key acts in, for per-account faults and counts.
    let body_text = String::from_utf8_lossy(response.body());
    if call.operation == "AssumeRole"
        && response.status().is_success()
        && let (Some(key), Some(account)) = (http::xml_text(&body_text, "AccessKeyId"), &call.account)
    {
        lock(&state.accounts).by_access_key.insert(key.to_owned(), account.clone());
        let mut secrets = lock(&state.issued_secrets);
        for tag in ["SecretAccessKey", "SessionToken"] {
            if let Some(secret) = http::xml_text(&body_text, tag) {
                secrets.push(secret.to_owned());
            }
        }
    }
    let (parts, body) = response.into_parts();
    let mut out = Response::new(Full::new(body));
    *out.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection") {
            out.headers_mut().append(name, value.clone());
        }
    }
    out
}

/// An AWS-shaped error in the protocol the service speaks, so SDKs parse it as AWS would send it.
fn fault_response(call: &CallInfo, fault: &Fault) -> RouterResponse {
    if call.is_lambda_invoke() {
        // The Invoke API itself fails: the handler never runs.
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return lambda_error(status, &fault.code, &fault.message);
    }
    let request_id = FAULT_REQUEST_ID;
    let (content_type, body) = match call.service.as_str() {
        "ec2" => (
            "text/xml",
            format!(
                "<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>",
                fault.code, fault.message
            ),
        ),
        "sts" | "iam" | "sns" | "sqs" | "cloudwatch" => (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
                fault.code, fault.message
            ),
        ),
        "s3" => (
            "application/xml",
            format!(
                "<Error><Code>{}</Code><Message>{}</Message><RequestId>{request_id}</RequestId></Error>",
                fault.code, fault.message
            ),
        ),
        _ => ("application/x-amz-json-1.1", json!({"__type": fault.code, "message": fault.message}).to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_REQUEST);
    response.headers_mut().insert("content-type", HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&fault.code) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    // AWS names the request of every answer; moto's ASL interpreter reads it when a service
    // integration (the state machine's own dynamodb:putItem) fails, and dies with
    // KeyError('RequestId') instead of raising the state's error without it.
    response.headers_mut().insert("x-amzn-requestid", HeaderValue::from_static(FAULT_REQUEST_ID));
    response
}

/// The request id of every injected fault.
const FAULT_REQUEST_ID: &str = "ec2patch-injected-fault";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_injected_fault_names_its_request_as_aws_does() {
        let fault = Fault { code: "InternalServerError".to_owned(), message: "injected".to_owned(), status: 500 };
        for (service, operation) in [("dynamodb", "PutItem"), ("s3", "PutObject"), ("ec2", "DescribeInstances")] {
            let call = CallInfo {
                service: service.to_owned(),
                operation: operation.to_owned(),
                account: Some("111111111111".to_owned()),
            };
            let response = fault_response(&call, &fault);
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(response.headers()["x-amzn-requestid"], FAULT_REQUEST_ID, "{service}");
            assert_eq!(response.headers()["x-amzn-errortype"], "InternalServerError", "{service}");
        }
    }
}
