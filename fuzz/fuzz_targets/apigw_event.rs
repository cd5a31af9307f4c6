//! The API Gateway HTTP API (payload 2.0) event the callback Lambda receives.
//!
//! The first byte picks the shape of the input:
//! - even: the rest is the whole event as JSON (whatever decodes must be answered with a 4xx page);
//! - odd: the rest fills the attacker-controlled fields of an otherwise valid event (method,
//!   query, body, base64 flag, headers, path, cookies), optionally carrying a genuine but expired
//!   link. The event must decode, and the answer must be exactly the documented status: 405 for
//!   other methods, 400 for a bad body or link, 410 for a genuine expired link.
//!
//! Neither path may reach the store (the offline hub would answer 503 after its retries).

#![no_main]

use std::sync::LazyLock;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ec2patch_approval_callback::{Deps, handle, parse_params};
use ec2patch_core::Hub;
use ec2patch_core::approval::Action;
use ec2patch_core::time::now_epoch_seconds;
use ec2patch_fuzz::{KEY, offline_hub};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

struct Callback {
    hub: Hub,
    deps: Deps,
    runtime: tokio::runtime::Runtime,
}

static CALLBACK: LazyLock<Callback> = LazyLock::new(|| {
    let hub = offline_hub();
    let deps = Deps::new(KEY.clone(), aws_sdk_sfn::Client::new(&hub.sdk));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => panic!("no tokio runtime: {error}"),
    };
    Callback { hub, deps, runtime }
});

const METHODS: &[&str] = &["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "PROPFIND"];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let Ok(event) = serde_json::from_slice::<ApiGatewayV2httpRequest>(rest) else { return };
        let status = answer(event);
        assert!(matches!(status, 400 | 405), "an unsigned event got {status}");
    } else {
        let (event, expected) = structured_event(mode, rest);
        let decoded = serde_json::from_value::<ApiGatewayV2httpRequest>(event.clone());
        let Ok(decoded) = decoded else {
            panic!("a valid event with odd field values must decode: {decoded:?}\n{event}")
        };
        assert_eq!(answer(decoded), expected, "{event}");
    }
});

fn answer(event: ApiGatewayV2httpRequest) -> i64 {
    let callback = &*CALLBACK;
    match callback.runtime.block_on(handle(&callback.hub, &callback.deps, event)) {
        Ok(response) => response.status_code,
        Err(error) => panic!("the handler answers every request with a page, got {error}"),
    }
}

/// An event with fuzzed field values, and the status the documented rules give for it.
fn structured_event(mode: u8, rest: &[u8]) -> (Value, i64) {
    let mut fields = rest.split(|&b| b == 0xff);
    let mut next = || fields.next().unwrap_or_default();
    let method = METHODS[usize::from(next().first().copied().unwrap_or_default()) % METHODS.len()];
    let mut query = String::from_utf8_lossy(next()).into_owned();
    let mut body = String::from_utf8_lossy(next()).into_owned();
    let header = printable(next());
    let path = String::from_utf8_lossy(next()).into_owned();
    let cookie = printable(next());
    let base64_body = mode & 2 != 0;
    let with_headers = mode & 4 == 0;

    // A genuine link whose expiry has passed: the signature checks out, so only the expiry
    // check stands between it and the store.
    if mode & 8 != 0 {
        let id = "0123456789abcdef0123456789abcdef";
        let action = if mode & 16 == 0 { Action::Approve } else { Action::Reject };
        let expires_at = u64::from(u32::from_le_bytes([mode, 1, 2, 3])) % now_epoch_seconds();
        let link = KEY.link("https://hub.example", id, action, expires_at);
        let signed = link.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
        query = signed.clone();
        body = if base64_body { STANDARD.encode(&signed) } else { signed };
    }

    let encoded: Option<Vec<u8>> = match method {
        "POST" if base64_body => STANDARD.decode(&body).ok(),
        "POST" => Some(body.clone().into_bytes()),
        "GET" | "HEAD" => Some(query.clone().into_bytes()),
        _ => None,
    };
    let expected = match (method, encoded) {
        ("GET" | "HEAD" | "POST", Some(encoded)) => match parse_params(&encoded) {
            Some(p) if KEY.verify(&p.id, p.action, p.expires_at, &p.sig).is_ok() => {
                if p.expires_at <= now_epoch_seconds() { 410 } else { 503 }
            }
            _ => 400,
        },
        ("POST", None) => 400,
        _ => 405,
    };

    let mut event = json!({
        "version": "2.0",
        "routeKey": "ANY /callback",
        "rawPath": path,
        "rawQueryString": query,
        "cookies": [cookie],
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": header},
            "timeEpoch": 0
        },
        "body": body,
        "isBase64Encoded": base64_body
    });
    if with_headers {
        event["headers"] = json!({"content-type": header, "user-agent": header, "cookie": cookie});
    }
    (event, expected)
}

/// Header values as API Gateway forwards them: no control characters.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().filter(|c| !c.is_control()).collect()
}
