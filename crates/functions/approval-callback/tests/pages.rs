//! Every page the callback can answer with, and the checks made before any record is read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::encodings::Body;
use ec2patch_approval_callback::{Deps, LinkParams, Page, handle, parse_params};
use ec2patch_core::approval::{Action, ApprovalDetails, ApprovalStatus, Decision, SigningKey};
use ec2patch_core::store::ObjectRef;
use ec2patch_core::test_util::offline_hub;
use ec2patch_core::time::now_epoch_seconds;
use serde_json::json;

fn key() -> SigningKey {
    SigningKey::new(b"an-approval-key-of-at-least-32-bytes!").unwrap()
}

fn details() -> ApprovalDetails {
    ApprovalDetails {
        run_id: "run-1".into(),
        wave_index: 0,
        wave_name: "<script>alert(1)</script>".into(),
        dry_run: false,
        accounts: vec!["222222222222".into()],
        accounts_total: 30,
        regions: vec!["us-east-1".into(), "eu-west-1".into()],
        targets: 60,
        targets_failed: 2,
        instances: 130,
        patchable: 120,
        offline: 4,
        unmanaged: 6,
        analysis: Some("Low risk & <b>routine</b>".into()),
        manifest: ObjectRef { bucket: "b".into(), key: "k".into() },
        link_expires_at: 1_900_000_000,
    }
}

fn params(action: Action) -> LinkParams {
    let id = "0123456789abcdef0123456789abcdef".to_owned();
    LinkParams { sig: key().sign(&id, action, 1_900_000_000), id, action, expires_at: 1_900_000_000 }
}

fn decision() -> Decision {
    Decision {
        status: ApprovalStatus::Approved,
        decided_by: "sso:ops@example.com".into(),
        decided_at: "2026-11-29T10:00:00Z".into(),
        source_ip: "10.0.0.1".into(),
    }
}

#[test]
fn the_confirmation_page_shows_the_wave_escaped_and_posts_both_signed_forms() {
    let page = Page::confirm(&details(), &params(Action::Approve), &key());
    assert_eq!(page.status, 200);
    // askama escapes with numeric references.
    assert!(page.html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "wave names are escaped");
    assert!(!page.html.contains("<script"), "no script, injected or ours");
    assert!(page.html.contains("Low risk &#38; &#60;b&#62;routine&#60;/b&#62;"), "analysis is escaped");
    assert!(page.html.contains("id=\"patchable\">120<"));
    assert!(page.html.contains("and 29 more"));
    assert!(page.html.contains("us-east-1, eu-west-1"));
    assert_eq!(page.html.matches("<form method=\"post\" action=\"callback\">").count(), 2);
    let p = params(Action::Approve);
    assert!(page.html.contains(&format!("value=\"{}\"", key().sign(&p.id, Action::Approve, p.expires_at))));
    assert!(page.html.contains(&format!("value=\"{}\"", key().sign(&p.id, Action::Reject, p.expires_at))));
    assert!(page.html.contains("Approve wave"));
}

#[test]
fn status_pages_have_their_codes_and_say_nothing_changed() {
    let cases = [
        (Page::bad_request(), 400, "not valid"),
        (Page::not_found(), 404, "No such approval"),
        (Page::already_decided(decision()), 409, "already approved by sso:ops@example.com"),
        (Page::expired(), 410, "expired"),
        (Page::method_not_allowed(), 405, "Method not allowed"),
        (Page::unavailable(false), 503, "Try again"),
    ];
    for (page, status, text) in cases {
        assert_eq!(page.status, status);
        assert!(page.html.contains(text), "{status}: {}", page.html);
        assert!(page.html.contains("Nothing was changed by this request."), "{status}");
    }
    // Where something was recorded, the page must not claim otherwise.
    for page in [Page::closed(), Page::unavailable(true)] {
        assert!(!page.html.contains("Nothing was changed"), "{}", page.html);
        assert!(page.html.contains("decision was recorded"));
    }
    let decided = Page::decided(&details(), &decision());
    assert_eq!(decided.status, 200);
    assert!(decided.html.contains("is approved") && decided.html.contains("The run continues"));
}

#[test]
fn every_response_forbids_framing_caching_and_scripts() {
    let response = Page::expired().into_response();
    assert_eq!(response.status_code, 410);
    let header = |name: &str| response.headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(header("x-frame-options"), "DENY");
    assert!(header("cache-control").contains("no-store"));
    assert!(header("content-security-policy").contains("default-src 'none'"));
    assert!(header("content-security-policy").contains("frame-ancestors 'none'"));
    assert!(!header("content-security-policy").contains("script-src"), "no script source is allowed");
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert!(matches!(response.body, Some(Body::Text(ref html)) if html.contains("expired")));
}

#[test]
fn parameters_must_all_be_present_once_and_well_formed() {
    let id = "0123456789abcdef0123456789abcdef";
    let good = format!("id={id}&action=approve&exp=5&sig=abc");
    assert_eq!(parse_params(good.as_bytes()).unwrap().action, Action::Approve);
    for bad in [
        "action=approve&exp=5&sig=abc".to_owned(),
        format!("id={id}&exp=5&sig=abc"),
        format!("id={id}&action=approve&sig=abc"),
        format!("id={id}&action=approve&exp=5"),
        format!("id={id}&action=APPROVE&exp=5&sig=abc"),
        format!("id={id}&action=approve&exp=-5&sig=abc"),
        format!("id={id}x&action=approve&exp=5&sig=abc"),
        format!("id={id}&action=approve&exp=5&sig=abc&sig=def"),
        String::new(),
    ] {
        assert!(parse_params(bad.as_bytes()).is_none(), "{bad}");
    }
}

fn event(method: &str, query: &str, body: Option<&str>) -> ApiGatewayV2httpRequest {
    serde_json::from_value(json!({
        "version": "2.0",
        "routeKey": format!("{method} /callback"),
        "rawPath": "/callback",
        "rawQueryString": query,
        "headers": {},
        "requestContext": {"http": {"method": method, "path": "/callback", "sourceIp": "192.0.2.1", "userAgent": "test"}, "timeEpoch": 0},
        "body": body,
        "isBase64Encoded": false
    }))
    .unwrap()
}

#[tokio::test]
async fn forged_incomplete_and_expired_links_are_answered_without_reading_any_record() {
    let hub = offline_hub();
    let sdk = hub.sdk.clone();
    let deps = Deps::new(key(), aws_sdk_sfn::Client::new(&sdk));
    let id = "0123456789abcdef0123456789abcdef";
    let future = now_epoch_seconds() + 600;
    let past = now_epoch_seconds() - 1;
    let signed = |action: Action, exp: u64| {
        format!("id={id}&action={}&exp={exp}&sig={}", action.as_str(), key().sign(id, action, exp))
    };
    let forged = format!("id={id}&action=approve&exp={future}&sig={}", key().sign(id, Action::Reject, future));
    let cases = [
        (event("GET", &forged, None), 400),
        (event("POST", "", Some(&forged)), 400),
        (event("GET", "id=1", None), 400),
        (event("GET", &signed(Action::Approve, past), None), 410),
        (event("POST", "", Some(&signed(Action::Reject, past))), 410),
        (event("DELETE", &signed(Action::Approve, future), None), 405),
    ];
    for (request, status) in cases {
        let response = handle(&hub, &deps, request).await.unwrap();
        assert_eq!(response.status_code, status);
    }
    // A valid, unexpired link reaches the store; with no store reachable the answer is a clear
    // 503 page, never a 500.
    let response = handle(&hub, &deps, event("GET", &signed(Action::Approve, future), None)).await.unwrap();
    assert_eq!(response.status_code, 503);
}
