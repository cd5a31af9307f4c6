#![allow(clippy::unwrap_used, clippy::expect_used)]

//! SendSsmCommand's fence: without its run lock a run sends nothing. The plan in S3 is mocked
//! (the emulator runs only plans PlanRun wrote, which always carry the lock).

use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use ec2patch_core::config::RunDefaults;
use ec2patch_core::input::plan_run;
use ec2patch_core::store::{self, RunStore};
use ec2patch_core::test_util::{offline_config, offline_sdk};
use ec2patch_core::wave::{BatchManifest, DiscoveredInstance, SsmStatus, TargetManifest};
use ec2patch_core::{Error, Hub};
use ec2patch_ssm_send::{SendRequest, handle};
use serde_json::json;

fn object(value: &serde_json::Value) -> GetObjectOutput {
    GetObjectOutput::builder().body(ByteStream::from(serde_json::to_vec(value).unwrap())).build()
}

#[tokio::test]
async fn a_plan_without_its_run_lock_sends_nothing() {
    let plan = plan_run("run-1", &json!({"accounts": ["222222222222"]}), &RunDefaults::default()).unwrap();
    let batch = BatchManifest {
        run_id: "run-1".into(),
        wave_index: 0,
        batch: 0,
        targets: vec![TargetManifest {
            account: "222222222222".into(),
            region: "us-east-1".into(),
            failure: None,
            instances: vec![DiscoveredInstance {
                instance_id: "i-1".into(),
                name: None,
                platform: "Linux/UNIX".into(),
                instance_type: None,
                availability_zone: None,
                ssm: SsmStatus::Online,
                patch_state: None,
            }],
            record_parts: 1,
        }],
    };
    // A plan stored without `runLock`, as no PlanRun ever writes it.
    let plan_json = serde_json::to_value(&plan).unwrap();
    let batch_json = serde_json::to_value(&batch).unwrap();
    let get_plan = mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.key() == Some(store::plan_key("run-1").as_str()))
        .then_output(move || object(&plan_json));
    let get_batch = mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.key() == Some(store::batch_key("run-1", 0, 0).as_str()))
        .then_output(move || object(&batch_json));
    let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&get_plan, &get_batch]);
    // Any write (a lease renewal, a command claim, an outcome) would be a table call.
    let put = mock!(aws_sdk_dynamodb::Client::put_item).then_output(|| PutItemOutput::builder().build());
    let update = mock!(aws_sdk_dynamodb::Client::update_item).then_output(|| UpdateItemOutput::builder().build());
    let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &update]);
    let config = offline_config();
    let store = RunStore::new(dynamodb, s3, &config.table, &config.bucket, config.record_ttl_days);
    let hub = Hub::from_parts(config, offline_sdk(), store);

    let error = handle(&hub, SendRequest { run_id: "run-1".into(), wave_index: 0, batch: 0 }).await.unwrap_err();
    assert!(matches!(&error, Error::StateStoreFailed(message) if message.contains("no run lock")), "{error}");
    assert_eq!((put.num_calls(), update.num_calls()), (0, 0), "nothing renewed, claimed or recorded");
}
