//! A minimal Lambda Runtime API (the part a function process talks to): it hands out one
//! invocation and records when the answer arrives. Enough for `lambda_runtime` (Rust) and
//! `awslambdaric` (Python), which speak the same protocol:
//!
//! - `GET  /2018-06-01/runtime/invocation/next`: the event, with the request id in
//!   `Lambda-Runtime-Aws-Request-Id`; later calls wait forever (the process is then measured and
//!   killed, as Lambda freezes an idle environment);
//! - `POST /2018-06-01/runtime/invocation/{id}/response` or `/error`: the answer;
//! - `POST /2018-06-01/runtime/init/error`: the function failed before asking for work.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const REQUEST_ID: &str = "ec2patch-bench-0001";

/// How the one invocation ended, and when the server saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub at: Instant,
    /// `response`, `error` or `init-error`.
    pub kind: &'static str,
    pub body: String,
}

#[derive(Debug)]
struct State {
    event: String,
    function_arn: String,
    handed_out: Mutex<bool>,
    answer: watch::Sender<Option<Answer>>,
}

/// One server per measured process: it serves a single invocation.
#[derive(Debug)]
pub struct RuntimeApi {
    addr: SocketAddr,
    answers: watch::Receiver<Option<Answer>>,
    task: JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RuntimeApi {
    pub async fn serve(event: &serde_json::Value, function_arn: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (sender, answers) = watch::channel(None);
        let state = Arc::new(State {
            event: event.to_string(),
            function_arn: function_arn.to_owned(),
            handed_out: Mutex::new(false),
            answer: sender,
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(state.clone(), request));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Self { addr, answers, task })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Waits for the invocation's answer.
    pub async fn answer(&mut self) -> anyhow::Result<Answer> {
        let answer = self.answers.wait_for(Option::is_some).await?;
        answer.clone().ok_or_else(|| anyhow::anyhow!("runtime API closed without an answer"))
    }
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path();
    let reply = |status: StatusCode, body: &str| {
        let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
        *response.status_mut() = status;
        response
    };
    if parts.method == Method::GET && path == "/2018-06-01/runtime/invocation/next" {
        let first = {
            let mut handed_out = state.handed_out.lock().unwrap_or_else(|p| p.into_inner());
            !std::mem::replace(&mut *handed_out, true)
        };
        if !first {
            // One invocation per process: the next one never comes.
            std::future::pending::<()>().await;
        }
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() + 300_000)
            .unwrap_or_default();
        let mut response = reply(StatusCode::OK, &state.event);
        let headers = response.headers_mut();
        for (name, value) in [
            ("lambda-runtime-aws-request-id", REQUEST_ID.to_owned()),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            ("lambda-runtime-invoked-function-arn", state.function_arn.clone()),
            ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned()),
            ("content-type", "application/json".to_owned()),
        ] {
            if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        return Ok(response);
    }
    let kind = if parts.method != Method::POST {
        None
    } else if path == format!("/2018-06-01/runtime/invocation/{REQUEST_ID}/response") {
        Some("response")
    } else if path == format!("/2018-06-01/runtime/invocation/{REQUEST_ID}/error") {
        Some("error")
    } else if path == "/2018-06-01/runtime/init/error" {
        Some("init-error")
    } else {
        None
    };
    match kind {
        Some(kind) => {
            let at = Instant::now();
            let body = String::from_utf8_lossy(&body).into_owned();
            state.answer.send_replace(Some(Answer { at, kind, body }));
            Ok(reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#))
        }
        None => Ok(reply(StatusCode::NOT_FOUND, "unknown runtime API path")),
    }
}
