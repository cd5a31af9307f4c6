#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Error and paging paths of the per-target discovery, with the SDK's mock responses (the
//! emulator cannot be made to page or throttle on cue; the e2e tests cover the happy path).

use aws_sdk_ec2::operation::describe_instances::{DescribeInstancesError, DescribeInstancesOutput};
use aws_sdk_ec2::types::{Instance, Reservation, Tag};
use aws_sdk_ssm::operation::describe_instance_information::{
    DescribeInstanceInformationError, DescribeInstanceInformationOutput,
};
use aws_sdk_ssm::operation::describe_instance_patch_states::{
    DescribeInstancePatchStatesError, DescribeInstancePatchStatesOutput,
};
use aws_sdk_ssm::types::{InstanceInformation, InstancePatchState, PatchOperationType, PingStatus};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use ec2patch_core::store::ObjectRef;
use ec2patch_core::{AccountId, Region, TagFilter, Target};
use ec2patch_inventory::{
    DiscoveredInstance, MAX_FAILURES_IN_SUMMARY, PatchCounts, SsmStatus, TargetFailure, TargetManifest, WaveManifest,
    discover_target, summarize,
};

fn target() -> Target {
    Target { account: AccountId::parse("222222222222").unwrap(), region: Region::new_unchecked("eu-west-1") }
}

fn filters() -> Vec<TagFilter> {
    vec![TagFilter { key: "PatchGroup".into(), values: vec!["default".into()] }]
}

fn instance(id: &str, patch_group: Option<&str>) -> Instance {
    let mut tags = vec![Tag::builder().key("Name").value(format!("web-{id}")).build()];
    if let Some(group) = patch_group {
        tags.push(Tag::builder().key("PatchGroup").value(group).build());
    }
    Instance::builder().instance_id(id).platform_details("Linux/UNIX").set_tags(Some(tags)).build()
}

fn page(instances: Vec<Instance>, next: Option<&str>) -> DescribeInstancesOutput {
    DescribeInstancesOutput::builder()
        .reservations(Reservation::builder().set_instances(Some(instances)).build())
        .set_next_token(next.map(str::to_owned))
        .build()
}

fn info(id: &str, ping: PingStatus) -> InstanceInformation {
    InstanceInformation::builder().instance_id(id).ping_status(ping).build()
}

fn no_retries(conf: aws_sdk_ec2::config::Builder) -> aws_sdk_ec2::config::Builder {
    conf.retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
}

#[tokio::test]
async fn pages_through_instances_and_classifies_ssm_management() {
    let first = mock!(aws_sdk_ec2::Client::describe_instances)
        .match_requests(|req| {
            req.next_token().is_none()
                && req.filters().iter().any(|f| f.name() == Some("tag:PatchGroup") && f.values() == ["default"])
                && req.filters().iter().any(|f| f.name() == Some("instance-state-name") && f.values() == ["running"])
        })
        .then_output(|| page(vec![instance("i-1", Some("default")), instance("i-2", Some("default"))], Some("page-2")));
    let second = mock!(aws_sdk_ec2::Client::describe_instances)
        .match_requests(|req| req.next_token() == Some("page-2"))
        // An instance without the tag must not get in, even if an endpoint returns it.
        .then_output(|| page(vec![instance("i-3", Some("default")), instance("i-4", None)], None));
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&first, &second]);
    let ssm_info = mock!(aws_sdk_ssm::Client::describe_instance_information)
        .match_requests(|req| {
            req.filters().iter().any(|f| f.key() == "InstanceIds" && f.values() == ["i-1", "i-2", "i-3"])
        })
        .then_output(|| {
            DescribeInstanceInformationOutput::builder()
                .instance_information_list(info("i-1", PingStatus::Online))
                .instance_information_list(info("i-2", PingStatus::ConnectionLost))
                .build()
        });
    // Only the online instance's patch state is asked (compliance before patching).
    let patch_states = mock!(aws_sdk_ssm::Client::describe_instance_patch_states)
        .match_requests(|req| req.instance_ids() == ["i-1"])
        .then_output(|| {
            let state = InstancePatchState::builder()
                .instance_id("i-1")
                .patch_group("default")
                .baseline_id("pb-1")
                .operation_start_time(aws_smithy_types::DateTime::from_secs(0))
                .operation_end_time(aws_smithy_types::DateTime::from_secs(0))
                .operation(PatchOperationType::Scan)
                .missing_count(3)
                .failed_count(1)
                .installed_count(40)
                .build()
                .unwrap();
            DescribeInstancePatchStatesOutput::builder().instance_patch_states(state).build()
        });
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&ssm_info, &patch_states]);

    let instances = discover_target(&ec2, &ssm, &filters(), &target()).await.unwrap();
    assert_eq!(
        instances[0].patch_state,
        Some(PatchCounts { missing: 3, failed: 1, installed: 40, installed_pending_reboot: 0 })
    );
    assert!(instances[0].patch_state.is_some_and(|s| s.non_compliant()));
    assert_eq!((instances[1].patch_state, instances[2].patch_state), (None, None), "not online: not asked");
    let statuses: Vec<(&str, &SsmStatus)> = instances.iter().map(|i| (i.instance_id.as_str(), &i.ssm)).collect();
    assert_eq!(
        statuses,
        [
            ("i-1", &SsmStatus::Online),
            ("i-2", &SsmStatus::Offline { ping_status: "ConnectionLost".into() }),
            ("i-3", &SsmStatus::NotManaged),
        ]
    );
    assert_eq!(instances[0].name.as_deref(), Some("web-i-1"));
    assert_eq!(instances[2].skip_reason().as_deref(), Some("not managed by SSM"));
    assert_eq!((first.num_calls(), second.num_calls(), ssm_info.num_calls(), patch_states.num_calls()), (1, 1, 1, 1));
}

#[tokio::test]
async fn a_refused_patch_state_call_leaves_compliance_unknown_not_the_target_failed() {
    let listing = mock!(aws_sdk_ec2::Client::describe_instances)
        .then_output(|| page(vec![instance("i-1", Some("default"))], None));
    let ec2 = mock_client!(aws_sdk_ec2, [&listing]);
    let ssm_info = mock!(aws_sdk_ssm::Client::describe_instance_information).then_output(|| {
        DescribeInstanceInformationOutput::builder().instance_information_list(info("i-1", PingStatus::Online)).build()
    });
    let denied = mock!(aws_sdk_ssm::Client::describe_instance_patch_states).then_error(|| {
        DescribeInstancePatchStatesError::generic(
            ErrorMetadata::builder().code("AccessDeniedException").message("not authorized").build(),
        )
    });
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&ssm_info, &denied]);
    let instances = discover_target(&ec2, &ssm, &filters(), &target()).await.unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].ssm, SsmStatus::Online, "still patchable");
    assert_eq!(instances[0].patch_state, None);
    assert_eq!(denied.num_calls(), 1);
}

#[tokio::test]
async fn asks_ssm_about_at_most_fifty_instances_per_call() {
    let ids: Vec<String> = (0..120).map(|i| format!("i-{i:03}")).collect();
    let listing_ids = ids.clone();
    let listing = mock!(aws_sdk_ec2::Client::describe_instances)
        .then_output(move || page(listing_ids.iter().map(|id| instance(id, Some("default"))).collect(), None));
    let ec2 = mock_client!(aws_sdk_ec2, [&listing]);
    let ssm_info = mock!(aws_sdk_ssm::Client::describe_instance_information)
        .match_requests(|req| req.filters().iter().all(|f| f.values().len() <= 50))
        .then_output(|| DescribeInstanceInformationOutput::builder().build());
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&ssm_info]);
    let instances = discover_target(&ec2, &ssm, &filters(), &target()).await.unwrap();
    assert_eq!(instances.len(), 120);
    assert_eq!(ssm_info.num_calls(), 3, "120 ids in chunks of 50");
}

#[tokio::test]
async fn throttling_is_reported_as_throttled_with_the_target() {
    let throttled = mock!(aws_sdk_ec2::Client::describe_instances).then_error(|| {
        DescribeInstancesError::generic(
            ErrorMetadata::builder().code("RequestLimitExceeded").message("Request limit exceeded.").build(),
        )
    });
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&throttled], no_retries);
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::Sequential, Vec::<&aws_smithy_mocks::Rule>::new());
    let error = discover_target(&ec2, &ssm, &filters(), &target()).await.unwrap_err();
    assert_eq!(error.error_type(), "Throttled");
    assert!(error.is_transient());
    let text = error.to_string();
    assert!(text.contains("DescribeInstances") && text.contains("account 222222222222 region eu-west-1"), "{text}");
}

#[tokio::test]
async fn sdk_retries_absorb_a_short_burst_of_throttling() {
    let burst = mock!(aws_sdk_ec2::Client::describe_instances)
        .sequence()
        .error(|| {
            DescribeInstancesError::generic(
                ErrorMetadata::builder().code("Throttling").message("Rate exceeded").build(),
            )
        })
        .output(|| page(vec![instance("i-1", Some("default"))], None))
        .build();
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&burst], |conf| conf
        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::standard().with_max_attempts(3)));
    let ssm_info = mock!(aws_sdk_ssm::Client::describe_instance_information).then_output(|| {
        DescribeInstanceInformationOutput::builder().instance_information_list(info("i-1", PingStatus::Online)).build()
    });
    let patch_states = mock!(aws_sdk_ssm::Client::describe_instance_patch_states)
        .then_output(|| DescribeInstancePatchStatesOutput::builder().build());
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&ssm_info, &patch_states]);
    let instances = discover_target(&ec2, &ssm, &filters(), &target()).await.unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(burst.num_calls(), 2);
}

#[tokio::test]
async fn a_refused_ssm_call_is_a_definite_failure_naming_the_operation() {
    let listing = mock!(aws_sdk_ec2::Client::describe_instances)
        .then_output(|| page(vec![instance("i-1", Some("default"))], None));
    let ec2 = mock_client!(aws_sdk_ec2, [&listing]);
    let denied = mock!(aws_sdk_ssm::Client::describe_instance_information).then_error(|| {
        DescribeInstanceInformationError::generic(
            ErrorMetadata::builder().code("AccessDeniedException").message("not authorized").build(),
        )
    });
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::Sequential, [&denied], |conf| conf
        .retry_config(aws_sdk_ssm::config::retry::RetryConfig::disabled()));
    let error = discover_target(&ec2, &ssm, &filters(), &target()).await.unwrap_err();
    assert_eq!(error.error_type(), "AwsCallFailed");
    assert!(
        error.to_string().contains("DescribeInstanceInformation")
            && error.to_string().contains("AccessDeniedException"),
        "{error}"
    );
}

#[test]
fn the_summary_counts_everything_but_lists_only_a_few_failures() {
    let failed = |n: usize| TargetManifest {
        account: format!("{:012}", 300_000_000_000u64 + n as u64),
        region: "us-east-1".into(),
        failure: Some(TargetFailure {
            account: format!("{:012}", 300_000_000_000u64 + n as u64),
            region: "us-east-1".into(),
            error_type: "AssumeRoleFailed".into(),
            message: "AccessDenied".into(),
        }),
        instances: vec![],
        record_parts: 1,
    };
    let instance = |id: &str, ssm: SsmStatus| DiscoveredInstance {
        instance_id: id.into(),
        name: None,
        platform: "Linux/UNIX".into(),
        instance_type: None,
        availability_zone: None,
        ssm,
        patch_state: None,
    };
    let mut targets: Vec<TargetManifest> = (0..25).map(failed).collect();
    targets.push(TargetManifest {
        account: "222222222222".into(),
        region: "us-east-1".into(),
        failure: None,
        instances: vec![
            instance("i-1", SsmStatus::Online),
            instance("i-2", SsmStatus::NotManaged),
            instance("i-3", SsmStatus::Offline { ping_status: "Inactive".into() }),
        ],
        record_parts: 1,
    });
    let manifest =
        WaveManifest { run_id: "r".into(), wave_index: 0, wave_name: "w".into(), tag_filters: filters(), targets };
    let summary = summarize(&manifest, ObjectRef { bucket: "b".into(), key: "k".into() });
    assert_eq!((summary.targets, summary.targets_failed), (26, 25));
    assert_eq!((summary.instances, summary.patchable, summary.unmanaged, summary.offline), (3, 1, 1, 1));
    assert_eq!(summary.failures.len(), MAX_FAILURES_IN_SUMMARY);
    assert_eq!(summary.failures_omitted, 15);
    assert!(serde_json::to_string(&summary).unwrap().len() < 4096);
}
