//! API Gateway HTTP API (payload format 2.0) in front of a local function: turns an HTTP request
//! into the event API Gateway's Lambda proxy integration sends, and the function's answer back
//! into an HTTP response.

use std::net::SocketAddr;

use base64::Engine;
use bytes::Bytes;
use hyper::http::request::Parts;
use serde_json::{Map, Value, json};

/// The API Gateway v2 event for `parts` + `body`, as the `$default` stage would send it.
pub fn event(parts: &Parts, body: &Bytes, peer: SocketAddr, account: &str) -> Value {
    let path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().unwrap_or_default().to_owned();
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            // Repeated headers are joined with commas, as API Gateway does.
            let joined = match headers.get(name.as_str()).and_then(Value::as_str) {
                Some(existing) => format!("{existing},{value}"),
                None => value.to_owned(),
            };
            headers.insert(name.as_str().to_owned(), Value::String(joined));
        }
    }
    let mut query = Map::new();
    for (key, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        let joined = match query.get(key.as_ref()).and_then(Value::as_str) {
            Some(existing) => format!("{existing},{value}"),
            None => value.into_owned(),
        };
        query.insert(key.into_owned(), Value::String(joined));
    }
    let user_agent = parts.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let route_key = format!("{} {path}", parts.method);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": account,
            "apiId": "local",
            "domainName": parts.headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("localhost"),
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": format!("local-{}", now.as_nanos()),
            "routeKey": route_key,
            "stage": "$default",
            "time": "",
            "timeEpoch": i64::try_from(now.as_millis()).unwrap_or(i64::MAX),
        },
        "isBase64Encoded": false,
    });
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !body.is_empty() {
        // API Gateway base64-encodes bodies it does not treat as text; do the same for forms so
        // the handler's decoding is exercised.
        event["body"] = Value::String(base64::engine::general_purpose::STANDARD.encode(body));
        event["isBase64Encoded"] = Value::Bool(true);
    }
    event
}

/// The HTTP answer for a function's API Gateway v2 response (`statusCode`, `headers`, `body`).
pub fn response(value: &Value) -> (u16, Vec<(String, String)>, Bytes) {
    let status = value.get("statusCode").and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok()).unwrap_or(502);
    let headers = value
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| h.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    let body = value.get("body").and_then(Value::as_str).unwrap_or_default();
    let body = if value.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
        Bytes::from(base64::engine::general_purpose::STANDARD.decode(body).unwrap_or_default())
    } else {
        Bytes::from(body.to_owned())
    };
    (status, headers, body)
}
