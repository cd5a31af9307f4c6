//! Secrets stay out of the logs, and the approval-link key rotates without breaking links.
//!
//! Every function runs in-process in the router, so one global tracing subscriber sees every
//! log line of a full run (plan, inventory, analyses, approval request and callback, send, poll,
//! verify, report), at DEBUG for every crate (stricter than Lambda's INFO default) in the JSON
//! layout Lambda uses. The test then looks for every secret the run handled: the task token of
//! each approval, the HMAC keys, the hub's secret access key, and the secret key and session
//! token of every spoke session STS issued.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sfn::types::ExecutionStatus;
use bytes::Bytes;
use ec2patch_core::approval::{self, Action, SigningKey};
use ec2patch_e2e::records::link_after;
use ec2patch_local::{EstateSpec, FaultRule, LocalStack, LocalStackOptions, SeedKind};
use http_body_util::Full;
use hyper::Request;
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;

const TIMEOUT: Duration = Duration::from_secs(150);

/// Every byte any log line wrote.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn param<'a>(link: &'a str, name: &str) -> &'a str {
    link.split_once('?').unwrap().1.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).unwrap()
}

async fn get(url: &str) -> u16 {
    let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    ec2patch_local::http::send(request).await.unwrap().status().as_u16()
}

async fn post(stack: &LocalStack, link: &str) -> u16 {
    let request = Request::post(format!("{}/callback", stack.router.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(link.split_once('?').unwrap().1.to_owned())))
        .unwrap();
    ec2patch_local::http::send(request).await.unwrap().status().as_u16()
}

async fn put_keys(stack: &LocalStack, value: &str) {
    aws_sdk_ssm::Client::new(&stack.sdk)
        .put_parameter()
        .name(stack.hub.config.hmac_key_parameter.clone().unwrap())
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}

async fn task_token(stack: &LocalStack, approval_id: &str) -> String {
    let item =
        stack.hub.store.get_item(&approval::approval_pk(approval_id), approval::APPROVAL_SK).await.unwrap().unwrap();
    item["taskToken"].as_s().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_run_logs_no_secret_and_rotated_keys_keep_mailed_links_working() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_writer(capture.clone())
        .finish();
    tracing_subscriber::util::SubscriberInitExt::try_init(subscriber).unwrap();

    let stack =
        LocalStack::start(LocalStackOptions { targets_per_batch: 1, ..LocalStackOptions::default() }).await.unwrap();
    let estate = stack
        .seed(&EstateSpec {
            accounts: 3,
            regions: vec!["us-east-1".to_owned()],
            per_target: [(SeedKind::Patchable, 2), (SeedKind::Unmanaged, 1)].into_iter().collect(),
            ..EstateSpec::default()
        })
        .await
        .unwrap();
    // Failures log their errors too: a spoke refusing the role, a throttled call.
    stack.router.faults().add(FaultRule::deny_assume_role(&estate.accounts[2]));
    stack.router.faults().add(FaultRule::error("ec2", "DescribeInstances", "RequestLimitExceeded", 503).first(1));
    let parameter = stack.hub.config.hmac_key_parameter.clone().unwrap();
    let old_keys = aws_sdk_ssm::Client::new(&stack.sdk)
        .get_parameter()
        .name(&parameter)
        .with_decryption(true)
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap()
        .value
        .unwrap();

    let input = json!({
        "accountWaves": [{"name": "one", "accounts": [estate.accounts[0], estate.accounts[2]]}, {"name": "two", "accounts": [estate.accounts[1]]}],
        "abortOnIssues": false
    });
    let arn = stack.start_execution("secrets-1", &input).await.unwrap();

    // Wave one's email is signed with the key of the day; the callback loads it (GET).
    let first = stack.wait_for_mail(1, TIMEOUT).await.unwrap().remove(0).message;
    let first_link = link_after(&first, "Approve:");
    assert_eq!(get(&first_link).await, 200);

    // Rotation: a new current key, the old one kept as previous.
    let new_key = format!("{}{}", approval::new_approval_id().unwrap(), approval::new_approval_id().unwrap());
    put_keys(&stack, &format!("{new_key},{old_keys}")).await;
    // The link mailed before the rotation still decides.
    assert_eq!(post(&stack, &first_link).await, 200, "a link signed with the previous key still works");

    // Wave two: a link signed with the new current key works too, although the callback's warm
    // container loaded only the old key (it re-reads the parameter on a mismatch).
    let mail = stack.wait_for_mail(3, TIMEOUT).await.unwrap();
    let second = mail.iter().find(|m| m.message.contains("wave \"two\"") && m.message.contains("Approve: ")).unwrap();
    let second_link = link_after(&second.message, "Approve:");
    let rotated = stack.hub.load_signing_key().await.unwrap();
    assert_eq!(rotated.key_count(), 2);
    let second_id = param(&second_link, "id").to_owned();
    let expires: u64 = param(&second_link, "exp").parse().unwrap();
    let new_link = rotated.link(&stack.router.url(), &second_id, Action::Approve, expires);
    assert_eq!(
        param(&new_link, "sig"),
        SigningKey::new(new_key.as_bytes()).unwrap().sign(&second_id, Action::Approve, expires)
    );
    assert_ne!(param(&new_link, "sig"), param(&second_link, "sig"), "new links use the new key");
    assert_eq!(get(&new_link).await, 200);
    // A key nobody has is still refused.
    let forged = SigningKey::new(&[7u8; 32]).unwrap().link(&stack.router.url(), &second_id, Action::Approve, expires);
    assert_eq!(get(&forged).await, 400);
    assert_eq!(post(&stack, &new_link).await, 200);

    let execution = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{:?} {:?}", execution.error, execution.cause);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // What must never be logged.
    let mut secrets: Vec<(String, String)> = Vec::new();
    for (label, link) in [("task token (wave one)", &first_link), ("task token (wave two)", &second_link)] {
        secrets.push((label.to_owned(), task_token(&stack, param(link, "id")).await));
    }
    for key in [&old_keys, &new_key] {
        secrets.push(("HMAC key".to_owned(), key.clone()));
    }
    secrets.push(("hub secret access key".to_owned(), stack.hub_credentials.secret_access_key().to_owned()));
    let issued = stack.router.issued_secrets();
    assert!(issued.len() >= 4, "spoke sessions were issued: {}", issued.len());
    secrets.extend(issued.into_iter().map(|s| ("spoke session secret or token".to_owned(), s)));
    // Approval links are bearer capabilities: their signatures stay out of logs too.
    for link in [&first_link, &second_link, &new_link] {
        secrets.push(("approval link signature".to_owned(), param(link, "sig").to_owned()));
    }

    let logs = capture.text();
    let lines = logs.lines().count();
    // The capture did see the run: every function's lines are there.
    for expected in [
        "run planned",
        "wave inventoried",
        "approval requested",
        "patch commands sent",
        "wave analysed",
        "target inventory failed",
    ] {
        assert!(logs.contains(expected), "no {expected:?} line among {lines} captured lines");
    }
    for (label, secret) in &secrets {
        assert!(secret.len() >= 16, "{label} looks too short to be a real secret: {}", secret.len());
        if let Some(at) = logs.find(secret.as_str()) {
            let line = logs[..at].rsplit('\n').next().unwrap_or_default();
            panic!("{label} appears in the logs, in the line starting: {}", &line[..line.len().min(300)]);
        }
    }
    println!("FIGURES | secrets in logs | {lines} log lines captured, {} secrets checked, 0 found", secrets.len());
}
