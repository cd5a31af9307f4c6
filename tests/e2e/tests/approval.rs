//! The approval gate on the local stack: the email, the confirmation page a scanner can fetch
//! without effect, the POST that decides, and every way a link can be wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::types::ExecutionStatus;
use bytes::Bytes;
use ec2patch_core::approval::{self, Action, SigningKey};
use ec2patch_e2e::records::{link_after, text};
use ec2patch_local::{EstateSpec, LocalStack, LocalStackOptions, SeedKind};
use http_body_util::Full;
use hyper::Request;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(120);

struct Page {
    status: u16,
    headers: hyper::HeaderMap,
    body: String,
}

async fn get(url: &str) -> Page {
    let request =
        Request::get(url).header("user-agent", "SafeLinks-Scanner/1.0").body(Full::new(Bytes::new())).unwrap();
    into_page(ec2patch_local::http::send(request).await.unwrap())
}

/// Submits a form the way the confirmation page's buttons do.
async fn post(base: &str, form: &str) -> Page {
    let request = Request::post(format!("{base}/callback"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("user-agent", "Mozilla/5.0 (e2e test)")
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap();
    into_page(ec2patch_local::http::send(request).await.unwrap())
}

fn into_page(response: hyper::Response<Bytes>) -> Page {
    Page {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: String::from_utf8_lossy(response.body()).into_owned(),
    }
}

/// A link's query string: exactly what the page's form for that action posts.
fn form_of(link: &str) -> String {
    link.split_once('?').unwrap().1.to_owned()
}

/// One account, one region, two patchable instances; returns the stack and the run's first email.
async fn start_run(
    run_id: &str,
    options: LocalStackOptions,
    waves: usize,
    abort_on_issues: bool,
) -> (LocalStack, String, String) {
    let stack = LocalStack::start(options).await.unwrap();
    let estate = stack
        .seed(&EstateSpec {
            accounts: waves,
            regions: vec!["us-east-1".to_owned()],
            per_target: BTreeMap::from([(SeedKind::Patchable, 2), (SeedKind::Unmanaged, 1)]),
            ..EstateSpec::default()
        })
        .await
        .unwrap();
    let account_waves: Vec<Value> =
        estate.accounts.iter().map(|a| json!({"name": format!("wave-{a}"), "accounts": [a]})).collect();
    let input = json!({"accountWaves": account_waves, "abortOnIssues": abort_on_issues});
    let arn = stack.start_execution(run_id, &input).await.unwrap();
    let mail = stack.wait_for_mail(1, TIMEOUT).await.unwrap().remove(0);
    (stack, arn, mail.message)
}

async fn approval_item(stack: &LocalStack, approval_id: &str) -> BTreeMap<String, AttributeValue> {
    stack
        .hub
        .store
        .get_item(&approval::approval_pk(approval_id), approval::APPROVAL_SK)
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .collect()
}

fn approval_id_of(link: &str) -> String {
    form_of(link).split('&').find_map(|kv| kv.strip_prefix("id=")).unwrap().to_owned()
}

async fn status_now(stack: &LocalStack, arn: &str) -> ExecutionStatus {
    stack.sfn().describe_execution().execution_arn(arn).send().await.unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_never_decides_and_the_post_from_the_page_approves_once() {
    let (stack, arn, mail) = start_run("approve-1", LocalStackOptions::default(), 1, true).await;
    let approve = link_after(&mail, "Approve:");
    let reject = link_after(&mail, "Reject:");
    assert!(approve.starts_with(&format!("{}/callback?id=", stack.router.url())), "{approve}");
    assert!(reject.contains("&action=reject&"), "{reject}");
    let id = approval_id_of(&approve);
    assert_eq!(approval_id_of(&reject), id);

    // The task token stays in DynamoDB: never in the email (text or links).
    let item = approval_item(&stack, &id).await;
    let token = text(&item, "taskToken");
    assert!(token.len() > 20, "the record holds the token");
    assert!(
        !mail.contains(&token) && !mail.to_lowercase().contains("tasktoken"),
        "token leaked into the email:\n{mail}"
    );
    assert!(mail.contains("2 will run AWS-RunPatchBaseline"), "{mail}");
    assert!(mail.contains("1 not managed by SSM"), "{mail}");

    // A scanner (or a person) fetching the links any number of times decides nothing.
    for link in [&approve, &reject, &approve, &approve] {
        let page = get(link).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("Nothing has been decided yet"), "{}", page.body);
        assert!(page.body.contains("id=\"patchable\">2<"), "the page shows what will be patched");
        assert!(!page.body.contains(&token));
        assert!(!page.body.contains("<script"), "no scripts");
        assert_eq!(page.headers["x-frame-options"], "DENY");
        assert_eq!(page.headers["cache-control"], "no-store, max-age=0");
        assert!(page.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status_now(&stack, &arn).await, ExecutionStatus::Running, "GETs must not resume the run");
    assert_eq!(text(&approval_item(&stack, &id).await, "status"), "pending");

    // The page's Approve button: a POST of the form.
    let page = post(&stack.router.url(), &form_of(&approve)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("is approved"), "{}", page.body);
    let execution = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?}", execution.cause);
    let output: Value = serde_json::from_str(execution.output.as_deref().unwrap()).unwrap();
    assert_eq!(output["lastWave"]["approval"]["decision"], "approved", "{output}");
    assert_eq!(output["lastWave"]["approval"]["approvalId"], id.as_str());

    let item = approval_item(&stack, &id).await;
    assert_eq!(text(&item, "status"), "approved");
    assert_eq!(text(&item, "sourceIp"), "127.0.0.1");
    assert_eq!(text(&item, "userAgent"), "Mozilla/5.0 (e2e test)");
    assert!(text(&item, "decidedBy").contains("anonymous"), "{item:?}");
    assert_eq!(text(&item, "notified"), "yes");
    let decided_at = text(&item, "decidedAt");

    // Replays of either form change nothing and say what was decided.
    for link in [&approve, &reject] {
        let page = post(&stack.router.url(), &form_of(link)).await;
        assert_eq!(page.status, 409, "{}", page.body);
        assert!(page.body.contains("already approved"), "{}", page.body);
    }
    let page = get(&approve).await;
    assert_eq!(page.status, 409);
    let item = approval_item(&stack, &id).await;
    assert_eq!((text(&item, "status"), text(&item, "decidedAt")), ("approved".to_owned(), decided_at));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reject_stops_the_wave_with_approval_rejected() {
    let (stack, arn, mail) = start_run("reject-1", LocalStackOptions::default(), 2, true).await;
    let reject = link_after(&mail, "Reject:");
    assert_eq!(get(&reject).await.status, 200);
    let page = post(&stack.router.url(), &form_of(&reject)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("is rejected") && page.body.contains("will not be patched"), "{}", page.body);

    let execution = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert_eq!(execution.error.as_deref(), Some("ApprovalRejected"));
    assert!(execution.cause.unwrap_or_default().contains("rejected by"));
    let item = approval_item(&stack, &approval_id_of(&reject)).await;
    assert_eq!(text(&item, "status"), "rejected");
    let failures =
        stack.hub.store.query_prefix(&ec2patch_core::store::run_pk("reject-1"), "FAILURE#WAVE#").await.unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["errorType"].as_s().unwrap(), "ApprovalRejected");
    let history = stack.history(&arn).await.unwrap();
    let inventories =
        history.iter().filter_map(|e| e.state_entered_event_details.as_ref()).filter(|d| d.name == "Inventory").count();
    assert_eq!(inventories, 1, "abortOnIssues: the second wave is not started");
    let mail = stack.router.mailbox();
    let subjects: Vec<&str> = mail.iter().filter_map(|m| m.subject.as_deref()).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects[0].starts_with("[ec2patch] Approve wave"), "{subjects:?}");
    assert_eq!(subjects[1], "[ec2patch] run stopped: ApprovalRejected", "no approval is requested for the second wave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_links_get_clear_pages_and_change_nothing() {
    let (stack, arn, mail) = start_run("tamper-1", LocalStackOptions::default(), 1, true).await;
    let approve = link_after(&mail, "Approve:");
    let base = stack.router.url();
    let id = approval_id_of(&approve);
    let params: BTreeMap<String, String> = form_of(&approve)
        .split('&')
        .map(|kv| kv.split_once('=').unwrap())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let link = |id: &str, action: &str, exp: &str, sig: &str| {
        format!("{base}/callback?id={id}&action={action}&exp={exp}&sig={sig}")
    };
    let (exp, sig) = (params["exp"].clone(), params["sig"].clone());
    let mut flipped = sig.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let other_id = approval::new_approval_id().unwrap();

    // The hub's key, to build correctly signed links for the 404 and 410 cases.
    let parameter = stack.hub.config.hmac_key_parameter.clone().unwrap();
    let key = SigningKey::load(&aws_sdk_ssm::Client::new(&stack.sdk), &parameter).await.unwrap();
    let past = ec2patch_core::time::now_epoch_seconds() - 10;

    let cases: Vec<(String, u16, &str)> = vec![
        (link(&id, "approve", &exp, &flipped), 400, "modified sig"),
        (link(&other_id, "approve", &exp, &sig), 400, "modified id"),
        (link(&id, "reject", &exp, &sig), 400, "modified action"),
        (link(&id, "approve", &(exp.parse::<u64>().unwrap() + 3600).to_string(), &sig), 400, "modified expiry"),
        (format!("{base}/callback?id={id}&action=approve&exp={exp}"), 400, "missing sig"),
        (format!("{base}/callback"), 400, "no parameters"),
        (link("../../etc/passwd", "approve", &exp, &sig), 400, "malformed id"),
        (link(&id, "delete", &exp, &sig), 400, "unknown action"),
        (format!("{}&id={id}", link(&id, "approve", &exp, &sig)), 400, "repeated parameter"),
        (key.link(&base, &other_id, Action::Approve, exp.parse().unwrap()), 404, "unknown id, valid signature"),
        (key.link(&base, &id, Action::Approve, past), 410, "expired"),
    ];
    for (url, status, what) in &cases {
        let page = get(url).await;
        assert_eq!(page.status, *status, "GET {what}: {}", page.body);
        assert!(page.body.contains("Nothing was changed"), "GET {what}: {}", page.body);
        let posted = post(&base, url.split_once('?').map(|(_, q)| q).unwrap_or_default()).await;
        assert_eq!(posted.status, *status, "POST {what}: {}", posted.body);
    }
    let request = Request::put(format!("{base}/callback?{}", form_of(&approve))).body(Full::new(Bytes::new())).unwrap();
    assert_eq!(ec2patch_local::http::send(request).await.unwrap().status().as_u16(), 405);

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status_now(&stack, &arn).await, ExecutionStatus::Running);
    assert_eq!(text(&approval_item(&stack, &id).await, "status"), "pending");
    // The real link still works after all that.
    assert_eq!(post(&base, &form_of(&approve)).await.status, 200);
    assert_eq!(stack.wait_for_execution(&arn, TIMEOUT).await.unwrap().status, ExecutionStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nobody_deciding_ends_the_wave_at_the_timeout() {
    let options = LocalStackOptions { approval_timeout_seconds: 3, ..LocalStackOptions::default() };
    // abortOnIssues off: the unapproved wave is recorded and skipped, and the run goes on.
    let (stack, arn, mail) = start_run("timeout-1", options, 2, false).await;
    let approve = link_after(&mail, "Approve:");
    let mail = stack.wait_for_mail(2, TIMEOUT).await.unwrap();
    assert_eq!(mail.len(), 2, "the second wave asks too");
    let execution = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    let failures =
        stack.hub.store.query_prefix(&ec2patch_core::store::run_pk("timeout-1"), "FAILURE#WAVE#").await.unwrap();
    let recorded: Vec<(&str, &str)> =
        failures.iter().map(|f| (f["sk"].as_s().unwrap().as_str(), f["errorType"].as_s().unwrap().as_str())).collect();
    assert_eq!(recorded, [("FAILURE#WAVE#0", "States.Timeout"), ("FAILURE#WAVE#1", "States.Timeout")]);
    // The links died with the wait.
    let page = get(&approve).await;
    assert_eq!(page.status, 410, "{}", page.body);
    assert_eq!(post(&stack.router.url(), &form_of(&approve)).await.status, 410);
    assert_eq!(text(&approval_item(&stack, &approval_id_of(&approve)).await, "status"), "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_skips_the_approval() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let estate = stack
        .seed(&EstateSpec { accounts: 1, regions: vec!["us-east-1".to_owned()], ..EstateSpec::default() })
        .await
        .unwrap();
    let arn = stack.start_execution("dry-1", &json!({"accounts": estate.accounts, "dryRun": true})).await.unwrap();
    assert_eq!(stack.wait_for_execution(&arn, TIMEOUT).await.unwrap().status, ExecutionStatus::Succeeded);
    let mail = stack.router.mailbox();
    assert!(mail.iter().all(|m| !m.message.contains("Approve: ")), "no approval request: {mail:?}");
    assert_eq!(mail.len(), 1, "only the wave summary");
}
