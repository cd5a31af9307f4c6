#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests ("fuzzing" on stable) for what the callback reads from the internet: query
//! strings and form bodies, the link signature, and the API Gateway HTTP API event around them.
//!
//! Properties: nothing panics; a link verifies only with exactly the signature the hub issued
//! for its id, action and expiry (any tampering fails, a genuine link verifies); every request
//! the handler can answer without the store gets a documented status (400 bad or tampered link,
//! 405 method, 410 genuine but expired), never a 500. The offline hub's clients point at a
//! closed port and it has no key parameter to re-read, so no case can reach AWS.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ec2patch_approval_callback::{Deps, LinkParams, handle, parse_params};
use ec2patch_core::Hub;
use ec2patch_core::approval::{Action, SignatureError, SigningKey, is_approval_id};
use ec2patch_core::test_util::offline_hub;
use ec2patch_core::time::now_epoch_seconds;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};

fn key() -> SigningKey {
    SigningKey::new(b"an-approval-key-of-at-least-32-bytes!").unwrap()
}

fn config(cases: u32) -> Config {
    // No regression files in the source tree: failures found here become named tests.
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// The form encoding, with every byte's spelling chosen by `styles`: literal where allowed,
/// `%XX` in upper or lower case, `+` for a space. A parser must read all of them alike.
fn encode(text: &str, styles: &[u8]) -> String {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(text.len() * 3);
    for (i, byte) in text.bytes().enumerate() {
        let style = styles.get(i % styles.len().max(1)).copied().unwrap_or_default() % 3;
        let plain = byte.is_ascii_alphanumeric() || b"-._*".contains(&byte);
        let digits = match (byte, style, plain) {
            (b' ', 0, _) => {
                out.push('+');
                continue;
            }
            (_, 0, true) => {
                out.push(char::from(byte));
                continue;
            }
            (_, 1, _) => UPPER,
            _ => LOWER,
        };
        out.push('%');
        out.push(char::from(digits[usize::from(byte >> 4)]));
        out.push(char::from(digits[usize::from(byte & 15)]));
    }
    out
}

fn query(pairs: &[(String, String)], styles: &[u8]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k, styles), encode(v, styles))).collect::<Vec<_>>().join("&")
}

/// The documented rule, stated on the decoded pairs: each of `id`, `action`, `exp`, `sig` once,
/// no key repeated at all, and each value well-formed.
fn expected_params(pairs: &[(String, String)]) -> Option<LinkParams> {
    let keys: std::collections::HashSet<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    if keys.len() != pairs.len() {
        return None;
    }
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let id = get("id").filter(|id| is_approval_id(id))?;
    let action = Action::parse(&get("action")?)?;
    let expires_at = get("exp")?.parse().ok()?;
    Some(LinkParams { id, action, expires_at, sig: get("sig")? })
}

fn approval_id() -> impl Strategy<Value = String> {
    "[0-9a-f]{32}"
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![Just(Action::Approve), Just(Action::Reject)]
}

fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["id", "action", "exp", "sig"]).prop_map(str::to_owned),
        1 => prop::sample::select(vec!["", "ID", "id ", "sig[]", "x", "exp\u{0}", "%", "&", "="]).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        approval_id(),
        prop::sample::select(vec![
            "approve",
            "reject",
            "APPROVE",
            "approve ",
            "",
            "0",
            "-1",
            "+5",
            "0005",
            "18446744073709551615",
            "18446744073709551616",
            "1e9",
            "%",
            "%%",
            "%G1",
            "%e9",
            "%C3%A9",
            "%00",
            "+",
            "é",
            "🦀",
            "&",
            "=",
        ])
        .prop_map(str::to_owned),
        "[A-Za-z0-9_-]{43}",
        any::<String>(),
        (1usize..20_000).prop_map(|n| "A".repeat(n)),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    /// Any bytes: a parse either fails or yields values that verify only with their own
    /// issued signature.
    #[test]
    fn arbitrary_bytes_never_parse_into_a_verifying_forgery(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Some(params) = parse_params(&bytes) {
            let issued = key().sign(&params.id, params.action, params.expires_at);
            let verified = key().verify(&params.id, params.action, params.expires_at, &params.sig).is_ok();
            prop_assert_eq!(verified, params.sig == issued);
        }
    }

    /// Query strings and form bodies built from pairs (repeated keys, garbage escapes, overlong
    /// values, every spelling of each byte) parse exactly as the documented rule says.
    #[test]
    fn encoded_pairs_parse_by_the_rule(
        pairs in prop::collection::vec((key_name(), value()), 0..7),
        styles in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        let encoded = query(&pairs, &styles);
        prop_assert_eq!(parse_params(encoded.as_bytes()), expected_params(&pairs), "{}", encoded);
    }

    /// Raw percent-encoding garbage around a genuine link: never a panic, and whatever still
    /// verifies carries the genuine values.
    #[test]
    fn escape_garbage_never_verifies_other_values(
        id in approval_id(),
        action in action(),
        exp in any::<u64>(),
        garbage in "(%|%[0-9A-Fa-f]|%[G-Zg-z][0-9]|%[0-9A-F]{2}|[&=+;#?])*",
        position in any::<prop::sample::Index>(),
    ) {
        let link = key().link("https://hub.example", &id, action, exp);
        let query = link.split_once('?').unwrap().1;
        let at = position.index(query.len() + 1);
        let edited = format!("{}{garbage}{}", &query[..at], &query[at..]);
        if let Some(params) = parse_params(edited.as_bytes())
            && key().verify(&params.id, params.action, params.expires_at, &params.sig).is_ok()
        {
            prop_assert_eq!((params.id, params.action, params.expires_at), (id, action, exp));
        }
    }

    /// A genuine link verifies; changing its id, action or expiry, or any character of its
    /// signature, never does, and each failure is the named error for what is wrong.
    #[test]
    fn tampered_links_never_verify(
        id in approval_id(),
        other_id in approval_id(),
        action in action(),
        exp in any::<u64>(),
        other_exp in any::<u64>(),
        position in 0usize..43,
        replacement in prop::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.%".to_vec()),
        other_sig in prop_oneof!["[A-Za-z0-9_-]{43}", any::<String>(), (1usize..70_000).prop_map(|n| "A".repeat(n))],
    ) {
        let key = key();
        let sig = key.sign(&id, action, exp);
        let link = key.link("https://hub.example", &id, action, exp);
        let params = parse_params(link.split_once('?').unwrap().1.as_bytes()).unwrap();
        prop_assert_eq!(&params, &LinkParams { id: id.clone(), action, expires_at: exp, sig: sig.clone() });
        prop_assert_eq!(key.verify(&id, action, exp, &sig), Ok(()));

        let flipped = if action == Action::Approve { Action::Reject } else { Action::Approve };
        prop_assert_eq!(key.verify(&id, flipped, exp, &sig), Err(SignatureError::Mismatch));
        if other_id != id {
            prop_assert_eq!(key.verify(&other_id, action, exp, &sig), Err(SignatureError::Mismatch));
        }
        if other_exp != exp {
            prop_assert_eq!(key.verify(&id, action, other_exp, &sig), Err(SignatureError::Mismatch));
        }

        let mut tampered = sig.clone().into_bytes();
        tampered[position] = replacement;
        let tampered = String::from_utf8(tampered).unwrap();
        if tampered != sig {
            let result = key.verify(&id, action, exp, &tampered);
            // The 43rd character carries 2 unused bits: a change there that keeps the 32 bytes
            // is a non-canonical spelling, which is refused as malformed rather than accepted.
            let decodes_to_32 = URL_SAFE_NO_PAD.decode(&tampered).is_ok_and(|bytes| bytes.len() == 32);
            let expected = if decodes_to_32 { SignatureError::Mismatch } else { SignatureError::Malformed };
            prop_assert_eq!(result, Err(expected), "{}", tampered);
        }
        if other_sig != sig {
            prop_assert!(key.verify(&id, action, exp, &other_sig).is_err());
        }
    }
}

struct Callback {
    hub: Hub,
    deps: Deps,
    runtime: tokio::runtime::Runtime,
}

impl Callback {
    fn new() -> Self {
        let hub = offline_hub();
        let deps = Deps::new(key(), aws_sdk_sfn::Client::new(&hub.sdk));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Self { hub, deps, runtime }
    }

    fn status(&self, event: ApiGatewayV2httpRequest) -> i64 {
        self.runtime.block_on(handle(&self.hub, &self.deps, event)).unwrap().status_code
    }
}

const METHODS: &[&str] = &["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "PROPFIND"];

/// What the documented rules answer for a request, before any record is read.
fn expected_status(method: &str, query: &str, body: &str, base64_body: bool) -> i64 {
    let encoded = match method {
        "POST" if base64_body => STANDARD.decode(body).ok(),
        "POST" => Some(body.as_bytes().to_vec()),
        "GET" | "HEAD" => Some(query.as_bytes().to_vec()),
        _ => return 405,
    };
    match encoded.and_then(|bytes| parse_params(&bytes)) {
        Some(p) if key().verify(&p.id, p.action, p.expires_at, &p.sig).is_ok() => {
            if p.expires_at <= now_epoch_seconds() { 410 } else { 503 }
        }
        _ => 400,
    }
}

fn event_json(method: &str, query: &str, body: &str, base64_body: bool, header: &str, headers: bool) -> Value {
    let mut event = json!({
        "version": "2.0",
        "routeKey": "ANY /callback",
        "rawPath": "/callback",
        "rawQueryString": query,
        "cookies": [format!("c={header}")],
        "requestContext": {
            "http": {"method": method, "path": "/callback", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": header},
            "timeEpoch": 0
        },
        "body": body,
        "isBase64Encoded": base64_body
    });
    if headers {
        event["headers"] = json!({"content-type": "application/x-www-form-urlencoded", "user-agent": header});
    }
    event
}

/// Printable text, as API Gateway forwards header values (it refuses control characters).
fn header_text() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.chars().filter(|c| !c.is_control()).collect())
}

proptest! {
    #![proptest_config(config(1000))]

    /// An otherwise valid event with any method, query, body, base64 flag and header values,
    /// with or without headers, sometimes carrying a genuine link that has expired: it decodes,
    /// and is answered with exactly the documented status.
    #[test]
    fn events_with_any_field_values_get_the_documented_status(
        method in prop::sample::select(METHODS.to_vec()),
        query in prop_oneof![any::<String>(), value()],
        body in prop_oneof![any::<String>(), value(), "[A-Za-z0-9+/]{0,64}={0,2}"],
        base64_body in any::<bool>(),
        header in header_text(),
        headers in any::<bool>(),
        genuine in prop::option::of((approval_id(), action(), 0u64..1_700_000_000)),
    ) {
        let (query, body) = match genuine {
            Some((id, action, exp)) => {
                let link = key().link("https://hub.example", &id, action, exp);
                let signed = link.split_once('?').unwrap().1.to_owned();
                let body = if base64_body { STANDARD.encode(&signed) } else { signed.clone() };
                (signed, body)
            }
            None => (query, body),
        };
        let event = event_json(method, &query, &body, base64_body, &header, headers);
        let decoded: ApiGatewayV2httpRequest = serde_json::from_value(event.clone()).unwrap();
        let expected = expected_status(method, &query, &body, base64_body);
        prop_assert!(matches!(expected, 400 | 405 | 410), "no generated case reaches the store");
        prop_assert_eq!(CALLBACK.with(|c| c.status(decoded)), expected, "{}", event);
    }

    /// Any JSON in any one field of a valid event: if it still decodes as an HTTP API event,
    /// the answer is a 4xx page (the runtime, not the handler, answers what does not decode).
    #[test]
    fn any_json_in_any_field_is_answered_with_a_4xx(
        field in prop::sample::select(vec![
            "/version", "/routeKey", "/rawPath", "/rawQueryString", "/cookies", "/headers", "/body",
            "/isBase64Encoded", "/requestContext", "/requestContext/http", "/requestContext/http/method",
            "/requestContext/http/sourceIp", "/requestContext/authorizer", "/queryStringParameters",
            "/pathParameters", "/stageVariables",
        ]),
        replacement in any_json(),
    ) {
        let mut event = event_json("GET", "id=1", "", false, "test", true);
        match event.pointer_mut(field) {
            Some(slot) => *slot = replacement,
            None => {
                let (parent, name) = field.rsplit_once('/').unwrap();
                event.pointer_mut(parent).unwrap()[name] = replacement;
            }
        }
        if let Ok(decoded) = serde_json::from_value::<ApiGatewayV2httpRequest>(event) {
            let status = CALLBACK.with(|c| c.status(decoded));
            prop_assert!(matches!(status, 400 | 405), "{}", status);
        }
    }
}

thread_local! {
    static CALLBACK: Callback = Callback::new();
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        prop::sample::select(vec!["GET", "POST", "id=1", "2.0", "192.0.2.1", "not an ip"]).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        any::<String>(),
                        prop::sample::select(vec!["http", "method", "jwt", "claims", "iam"]).prop_map(str::to_owned)
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

#[test]
fn every_spelling_of_a_genuine_link_parses_to_it() {
    let id = "0123456789abcdef0123456789abcdef".to_owned();
    let sig = key().sign(&id, Action::Reject, 1_900_000_000);
    let pairs = vec![
        ("id".to_owned(), id.clone()),
        ("action".to_owned(), "reject".to_owned()),
        ("exp".to_owned(), "1900000000".to_owned()),
        ("sig".to_owned(), sig.clone()),
    ];
    let genuine = LinkParams { id, action: Action::Reject, expires_at: 1_900_000_000, sig };
    for styles in [[0u8], [1], [2]] {
        assert_eq!(parse_params(query(&pairs, &styles).as_bytes()), Some(genuine.clone()), "{styles:?}");
    }
}

#[test]
fn a_genuine_expired_link_by_form_post_in_base64_gets_410_and_a_garbled_body_400() {
    let callback = Callback::new();
    let id = "0123456789abcdef0123456789abcdef";
    let link = key().link("https://hub.example", id, Action::Approve, 1_000);
    let signed = link.split_once('?').unwrap().1;
    let post = |body: &str, base64_body: bool| {
        serde_json::from_value(event_json("POST", "", body, base64_body, "t", false)).unwrap()
    };
    assert_eq!(callback.status(post(&STANDARD.encode(signed), true)), 410);
    assert_eq!(callback.status(post(signed, false)), 410);
    assert_eq!(callback.status(post("not base64!", true)), 400);
    assert_eq!(callback.status(post(signed, true)), 400, "a plain body flagged as base64");
}
