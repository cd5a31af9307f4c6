#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The run input contract: both seed shapes parse, and every invalid input is refused with an
//! error naming the field.

use ec2patch_core::config::{NamedWave, RunDefaults};
use ec2patch_core::input::plan_run;
use ec2patch_core::plan::BedrockAgent;
use ec2patch_core::{Error, TagFilter};
use serde_json::{Value, json};

const API_EXAMPLE: &str = include_str!("../../../examples/run-input-api.json");
const EVENTBRIDGE_EXAMPLE: &str = include_str!("../../../examples/run-input-eventbridge.json");

fn defaults() -> RunDefaults {
    RunDefaults {
        waves: vec![NamedWave {
            name: "wave2-standard".into(),
            accounts: vec!["444444444444".into(), "555555555555".into()],
            organizational_units: Vec::new(),
            exclude_accounts: Vec::new(),
            regions: vec!["us-east-1".into()],
            after: None,
            gate_window_hours: None,
            snapshot: false,
        }],
        wave_pause_seconds: 300,
        // The hub the seed examples were written for (README's Quick Start names).
        sns_topic_arn: Some(HUB_TOPIC.into()),
        bedrock: Some(BedrockAgent { agent_id: "AGENT_ID".into(), agent_alias_id: "ALIAS_ID".into() }),
        ..RunDefaults::default()
    }
}

const HUB_TOPIC: &str = "arn:aws:sns:us-east-1:111111111111:ec2patch-PatchAlerts";

fn field_of(input: Value) -> (String, String) {
    match plan_run("run-1", &input, &defaults()) {
        Err(Error::InvalidInput { field, reason }) => (field, reason),
        other => panic!("expected InvalidInput for {input}, got {other:?}"),
    }
}

#[test]
fn waves_may_name_organizational_units_resolved_later_by_plan_run() {
    let input = json!({"accountWaves": [
        {"name": "prod", "organizationalUnits": ["ou-ab12-prod0001", "r-ab12"], "excludeAccounts": ["333333333333"]},
        {"name": "pinned", "accounts": ["222222222222"], "organizationalUnits": ["ou-ab12-sandbox1"]}
    ]});
    let plan = plan_run("org-run", &input, &defaults()).unwrap();
    assert_eq!(plan.waves[0].organizational_units, ["ou-ab12-prod0001", "r-ab12"]);
    assert_eq!(plan.waves[0].exclude_accounts[0].as_str(), "333333333333");
    // Nothing resolved yet: the OUs' accounts are added by PlanRun (crates/functions/plan).
    assert!(plan.waves[0].accounts.is_empty());
    assert_eq!(plan.waves[1].accounts[0].as_str(), "222222222222");
    // The plan keeps them, camelCase like the input.
    let stored = serde_json::to_value(&plan).unwrap();
    assert_eq!(stored["waves"][0]["organizationalUnits"][1], "r-ab12");
    assert_eq!(stored["waves"][0]["excludeAccounts"][0], "333333333333");
}

#[test]
fn api_shape_seed_example_parses_verbatim() {
    let input: Value = serde_json::from_str(API_EXAMPLE).unwrap();
    let plan = plan_run("manual-patch-1700000000", &input, &defaults()).unwrap();
    assert!(!plan.dry_run);
    assert_eq!(plan.waves.len(), 1);
    assert_eq!(plan.waves[0].name, "wave1-critical");
    assert_eq!(plan.waves[0].accounts[0].as_str(), "111111111111");
    assert_eq!(plan.waves[0].regions[0].as_str(), "us-east-1");
    assert_eq!(plan.tag_filters, vec![TagFilter { key: "PatchGroup".into(), values: vec!["default".into()] }]);
    assert_eq!(plan.wave_pause_seconds, 300, "omitted values come from the hub");
    assert!(plan.abort_on_issues);
}

#[test]
fn eventbridge_shape_seed_example_parses_verbatim() {
    let input: Value = serde_json::from_str(EVENTBRIDGE_EXAMPLE).unwrap();
    let plan = plan_run("wave-run", &input, &defaults()).unwrap();
    assert_eq!(plan.waves.len(), 1);
    assert_eq!(plan.waves[0].name, "wave-1");
    let accounts: Vec<&str> = plan.waves[0].accounts.iter().map(|a| a.as_str()).collect();
    assert_eq!(accounts, ["222222222222", "333333333333"]);
    assert_eq!(plan.target_count(), 2);
    assert_eq!(plan.tag_filters, vec![TagFilter { key: "PatchGroup".into(), values: vec!["default".into()] }]);
    assert_eq!(plan.sns_topic_arn.as_deref(), Some("arn:aws:sns:us-east-1:111111111111:ec2patch-PatchAlerts"));
    assert_eq!(plan.bedrock.as_ref().map(|b| b.agent_id.as_str()), Some("AGENT_ID"));
    assert_eq!(plan.wave_pause_seconds, 0, "an explicit 0 overrides the hub's 300");
    assert!(plan.abort_on_issues);
}

#[test]
fn wave_id_alone_selects_a_wave_configured_on_the_hub() {
    let plan = plan_run("r", &json!({"waveId": "wave2-standard", "dryRun": true}), &defaults()).unwrap();
    assert!(plan.dry_run);
    assert_eq!(plan.waves[0].name, "wave2-standard");
    assert_eq!(plan.waves[0].accounts.len(), 2);
}

#[test]
fn several_waves_with_names_multi_value_tags_and_default_regions() {
    let plan = plan_run(
        "r",
        &json!({
            "accountWaves": [
                {"name": "canary", "accounts": ["222222222222"]},
                {"accounts": ["333333333333"], "regions": ["eu-west-1", "eu-central-1"]}
            ],
            "tagFilters": {"PatchGroup": ["default", "linux"], "Environment": "production"}
        }),
        &defaults(),
    )
    .unwrap();
    assert_eq!(plan.waves[0].name, "canary");
    assert_eq!(plan.waves[0].regions[0].as_str(), "us-east-1", "hub default region");
    assert_eq!(plan.waves[1].name, "wave-2");
    assert_eq!(plan.target_count(), 3);
    assert_eq!(plan.tag_filters.len(), 2);
    assert_eq!(plan.tag_filters[1].values, ["default", "linux"]);
}

#[test]
fn no_tag_filter_falls_back_to_the_hub_default() {
    let plan = plan_run("r", &json!({"accounts": ["222222222222"]}), &defaults()).unwrap();
    assert_eq!(plan.tag_filters, vec![TagFilter { key: "PatchGroup".into(), values: vec!["default".into()] }]);
    assert_eq!(plan.waves[0].name, "manual");
}

#[test]
fn invalid_inputs_name_the_field() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!([]), "$", "JSON object"),
        (
            json!({"accountWaves": [{"accounts": ["12345"], "regions": ["us-east-1"]}]}),
            "accountWaves[0].accounts[0]",
            "12-digit",
        ),
        (
            json!({"accountWaves": [{"accounts": ["22222222222a"], "regions": ["us-east-1"]}]}),
            "accountWaves[0].accounts[0]",
            "12-digit",
        ),
        (
            json!({"accountWaves": [{"accounts": ["222222222222"], "regions": ["us-east-9"]}]}),
            "accountWaves[0].regions[0]",
            "known AWS region",
        ),
        (json!({"accounts": ["222222222222"], "regions": ["mars-1"]}), "regions[0]", "known AWS region"),
        (json!({"accountWaves": []}), "accountWaves", "at least one wave"),
        (
            json!({"accountWaves": [{"accounts": [], "regions": ["us-east-1"]}]}),
            "accountWaves[0].accounts",
            "at least one account",
        ),
        (
            json!({"accountWaves": [{"accounts": ["222222222222"], "regions": []}]}),
            "accountWaves[0].regions",
            "at least one region",
        ),
        (json!({"accounts": ["222222222222"], "wavePauseSeconds": -5}), "wavePauseSeconds", "zero or more"),
        (json!({"accounts": ["222222222222"], "wavePauseSeconds": 100000}), "wavePauseSeconds", "at most"),
        (json!({"accounts": ["222222222222"], "wavePauseSeconds": "soon"}), "wavePauseSeconds", "invalid type"),
        (json!({"accounts": ["222222222222"], "dryrun": true}), "dryrun", "not a known field"),
        (
            json!({"accountWaves": [{"accounts": ["222222222222"], "region": ["us-east-1"]}]}),
            "accountWaves[0].region",
            "not a known field",
        ),
        (json!({"accounts": ["222222222222"], "dryRun": "yes"}), "dryRun", "invalid type"),
        (json!({"accounts": ["222222222222"], "ec2": {"tagKey": "PatchGroup"}}), "ec2.tagValue", "required"),
        (json!({"accounts": ["222222222222"], "tagFilters": {}}), "tagFilters", "at least one tag"),
        (
            json!({"accounts": ["222222222222"], "tagFilters": {"PatchGroup": 3}}),
            "tagFilters.PatchGroup",
            "string or a list",
        ),
        (
            json!({"accounts": ["222222222222"], "tagFilters": {"PatchGroup": []}}),
            "tagFilters.PatchGroup",
            "at least one tag value",
        ),
        (
            json!({"accounts": ["222222222222"], "tagFilters": {"aws:cloudformation": "x"}}),
            "tagFilters.aws:cloudformation",
            "reserved",
        ),
        (
            json!({"accounts": ["222222222222"], "ec2": {"tagKey": "A", "tagValue": "b"}, "tagFilters": {"A": "b"}}),
            "ec2",
            "cannot be combined",
        ),
        (
            json!({"accountWaves": [{"accounts": ["222222222222"]}], "accounts": ["333333333333"]}),
            "accounts",
            "cannot be combined",
        ),
        (json!({"accounts": ["222222222222", "222222222222"]}), "accounts[1]", "repeats accounts[0]"),
        (
            json!({"accountWaves": [{"accounts": ["222222222222"]}, {"accounts": ["222222222222"]}]}),
            "accountWaves[1].accounts",
            "already in wave 1 (wave-1)",
        ),
        // Organizations targeting: ids checked before any call; accounts or OUs required.
        (json!({"accountWaves": [{"regions": ["us-east-1"]}]}), "accountWaves[0].accounts", "organizationalUnits"),
        (json!({"organizationalUnits": ["Prod"]}), "organizationalUnits[0]", "must be an OU id"),
        (
            json!({"organizationalUnits": ["ou-ab12-abcdefgh", "ou-ab12-abcdefgh"]}),
            "organizationalUnits[1]",
            "repeats ou-ab12-abcdefgh",
        ),
        (
            json!({"accountWaves": [{"organizationalUnits": ["r-ab12"], "excludeAccounts": ["12"]}]}),
            "accountWaves[0].excludeAccounts[0]",
            "12-digit",
        ),
        (
            json!({"accounts": ["222222222222"], "excludeAccounts": ["222222222222"]}),
            "excludeAccounts[0]",
            "also listed in accounts",
        ),
        (
            json!({"accountWaves": [{"organizationalUnits": ["r-ab12"]}], "organizationalUnits": ["r-ab12"]}),
            "organizationalUnits",
            "cannot be combined",
        ),
        (json!({"accounts": ["222222222222"], "snsTopicArn": "my-topic"}), "snsTopicArn", "SNS topic ARN"),
        (json!({"accounts": ["222222222222"], "bedrock": {"agentId": "A"}}), "bedrock.agentAliasId", "required"),
        (
            json!({"accounts": ["222222222222"], "bedrock": {"agentId": "", "agentAliasId": "B"}}),
            "bedrock.agentId",
            "1-100",
        ),
        // Only the hub's own topic and agent: its functions may use no other.
        (
            json!({"accounts": ["222222222222"], "snsTopicArn": "arn:aws:sns:us-east-1:111111111111:other"}),
            "snsTopicArn",
            "is not this hub's topic arn:aws:sns:us-east-1:111111111111:ec2patch-PatchAlerts",
        ),
        (
            json!({"accounts": ["222222222222"], "bedrock": {"agentId": "AGENT_ID", "agentAliasId": "OTHER"}}),
            "bedrock",
            "is not this hub's agent (AGENT_ID alias ALIAS_ID)",
        ),
        (json!({"waveId": "no-such-wave"}), "waveId", "no wave configured"),
        (json!({"waveId": "bad name!", "accounts": ["222222222222"]}), "waveId", "letters, digits"),
        (json!({"dryRun": true}), "accountWaves", "is required"),
        (
            json!({"accountWaves": [{"name": "", "accounts": ["222222222222"]}]}),
            "accountWaves[0].name",
            "letters, digits",
        ),
    ];
    assert!(cases.len() >= 10);
    for (input, field, reason) in cases {
        let (got_field, got_reason) = field_of(input.clone());
        assert_eq!(got_field, field, "field for {input}");
        assert!(got_reason.contains(reason), "reason for {input}: {got_reason:?} lacks {reason:?}");
    }
}

#[test]
fn a_bedrock_agent_is_refused_by_a_hub_without_one_and_the_hub_topic_is_accepted() {
    let no_agent = RunDefaults { bedrock: None, ..defaults() };
    let input = json!({"accounts": ["222222222222"], "bedrock": {"agentId": "AGENT_ID", "agentAliasId": "ALIAS_ID"}});
    match plan_run("run-1", &input, &no_agent) {
        Err(Error::InvalidInput { field, reason }) => {
            assert_eq!(field, "bedrock");
            assert!(reason.contains("this hub has no Bedrock agent"), "{reason}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let input = json!({"accounts": ["222222222222"], "snsTopicArn": HUB_TOPIC});
    let plan = plan_run("run-1", &input, &defaults()).unwrap();
    assert_eq!(plan.sns_topic_arn.as_deref(), Some(HUB_TOPIC));
}

#[test]
fn too_many_waves_are_refused() {
    let waves: Vec<Value> = (0..51).map(|i| json!({"accounts": [format!("{:012}", 100_000_000_000u64 + i)]})).collect();
    let (field, reason) = field_of(json!({"accountWaves": waves}));
    assert_eq!(field, "accountWaves");
    assert!(reason.contains("at most 50"), "{reason}");
}

#[test]
fn bad_run_ids_are_refused() {
    let error = plan_run("has space", &json!({"accounts": ["222222222222"]}), &defaults()).unwrap_err();
    assert!(matches!(error, Error::InvalidInput { ref field, .. } if field == "runId"), "{error}");
}

#[test]
fn error_messages_read_well() {
    let error = plan_run("r", &json!({"accountWaves": [{"accounts": ["12345"]}]}), &defaults()).unwrap_err();
    assert_eq!(error.error_type(), "InvalidInput");
    assert_eq!(
        error.to_string(),
        "invalid input: `accountWaves[0].accounts[0]` must be a 12-digit AWS account id, got \"12345\""
    );
}

#[test]
fn change_calendars_add_to_the_hubs_and_are_validated() {
    let hub = RunDefaults { change_calendars: vec!["HubFreeze".into()], freeze_wait_seconds: 600, ..defaults() };
    let input = json!({
        "accounts": ["222222222222"],
        "changeCalendars": ["PatchFreeze", "HubFreeze", "arn:aws:ssm:us-east-1:111111111111:document/Holidays"]
    });
    let plan = plan_run("run-1", &input, &hub).unwrap();
    assert_eq!(
        plan.change_calendars,
        ["HubFreeze", "PatchFreeze", "arn:aws:ssm:us-east-1:111111111111:document/Holidays"],
        "the hub's first, no repeats"
    );
    assert_eq!(plan.freeze_wait_seconds, 600, "the hub's default");
    let plan = plan_run("run-1", &json!({"accounts": ["222222222222"], "freezeWaitSeconds": 0}), &hub).unwrap();
    assert_eq!((plan.change_calendars.len(), plan.freeze_wait_seconds), (1, 0), "an input cannot drop the hub's");

    for (input, field, reason) in [
        (
            json!({"accounts": ["222222222222"], "changeCalendars": ["no spaces"]}),
            "changeCalendars[0]",
            "Change Calendar name",
        ),
        (
            json!({"accounts": ["222222222222"], "changeCalendars": ["ok-name", "arn:aws:s3:::bucket"]}),
            "changeCalendars[1]",
            "document ARN",
        ),
        (json!({"accounts": ["222222222222"], "freezeWaitSeconds": -5}), "freezeWaitSeconds", "must be 0 to 604800"),
        (json!({"accounts": ["222222222222"], "freezeWaitSeconds": 604_801}), "freezeWaitSeconds", "one week"),
    ] {
        let (got_field, got_reason) = field_of(input);
        assert_eq!(got_field, field);
        assert!(got_reason.contains(reason), "{got_reason}");
    }
    let eleven: Vec<String> = (0..11).map(|n| format!("Freeze{n}")).collect();
    let (field, reason) = field_of(json!({"accounts": ["222222222222"], "changeCalendars": eleven}));
    assert_eq!(field, "changeCalendars");
    assert!(reason.contains("at most 10"), "{reason}");
}

#[test]
fn error_budgets_come_from_the_input_or_the_hub_and_are_bounded() {
    use ec2patch_core::error_budget::ErrorBudget;
    let hub = RunDefaults {
        error_budget: ErrorBudget { max_failed_instances: Some(5), max_failed_percent: None },
        max_concurrent_batches: Some(4),
        ..defaults()
    };
    let plan = plan_run("run-1", &json!({"accounts": ["222222222222"]}), &hub).unwrap();
    assert_eq!(plan.error_budget, ErrorBudget { max_failed_instances: Some(5), max_failed_percent: None });
    assert_eq!(plan.max_concurrent_batches, Some(4));
    let input = json!({"accounts": ["222222222222"], "maxFailedInstances": 1, "maxFailedPercent": 10, "maxConcurrentBatches": 2});
    let plan = plan_run("run-1", &input, &hub).unwrap();
    assert_eq!(plan.error_budget, ErrorBudget { max_failed_instances: Some(1), max_failed_percent: Some(10) });
    assert_eq!(plan.max_concurrent_batches, Some(2));

    for (input, field) in [
        (json!({"accounts": ["222222222222"], "maxFailedPercent": 101}), "maxFailedPercent"),
        (json!({"accounts": ["222222222222"], "maxFailedInstances": -1}), "maxFailedInstances"),
        (json!({"accounts": ["222222222222"], "maxConcurrentBatches": 0}), "maxConcurrentBatches"),
        (json!({"accounts": ["222222222222"], "maxConcurrentBatches": 1001}), "maxConcurrentBatches"),
    ] {
        assert_eq!(field_of(input).0, field);
    }
}

#[test]
fn wave_gates_are_validated_and_overrides_say_who() {
    let wave = |extra: Value| {
        let mut wave = json!({"name": "production", "accounts": ["222222222222"]});
        wave.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"accountWaves": [wave]})
    };
    let plan = plan_run("run-1", &wave(json!({"after": "canary"})), &defaults()).unwrap();
    let gate = plan.waves[0].gate.clone().unwrap();
    assert_eq!((gate.after.as_str(), gate.window_hours), ("canary", 168), "one week unless the wave says");
    let plan = plan_run("run-1", &wave(json!({"after": "canary", "gateWindowHours": 24})), &defaults()).unwrap();
    assert_eq!(plan.waves[0].gate.as_ref().unwrap().window_hours, 24);
    assert!(!plan.ignore_gates);

    for (extra, field, says) in [
        (json!({"after": "production"}), "accountWaves[0].after", "cannot follow itself"),
        (json!({"after": "can ary"}), "accountWaves[0].after", "letters, digits"),
        (json!({"after": "canary", "gateWindowHours": 0}), "accountWaves[0].gateWindowHours", "1 to 8784"),
        (json!({"after": "canary", "gateWindowHours": 9000}), "accountWaves[0].gateWindowHours", "1 to 8784"),
        (json!({"gateWindowHours": 24}), "accountWaves[0].gateWindowHours", "needs `after`"),
    ] {
        let (got, reason) = field_of(wave(extra.clone()));
        assert_eq!(got, field, "{extra}");
        assert!(reason.contains(says), "{extra}: {reason}");
    }

    // A gate on a wave of the same run would wait for itself: waves of one run go in order.
    let same_run = json!({"accountWaves": [
        {"name": "canary", "accounts": ["222222222222"]},
        {"name": "production", "accounts": ["333333333333"], "after": "canary"}
    ]});
    let (field, reason) = field_of(same_run);
    assert_eq!(field, "accountWaves[1].after");
    assert!(reason.contains("this same run"), "{reason}");

    // ignoreGates must say who overrides.
    let mut input = wave(json!({"after": "canary"}));
    input["ignoreGates"] = json!(true);
    let (field, reason) = field_of(input.clone());
    assert_eq!(field, "startedBy");
    assert!(reason.contains("required with ignoreGates"), "{reason}");
    input["startedBy"] = json!("arn:aws:iam::111111111111:user/oncall");
    let plan = plan_run("run-1", &input, &defaults()).unwrap();
    assert!(plan.ignore_gates);
    assert_eq!(plan.started_by.as_deref(), Some("arn:aws:iam::111111111111:user/oncall"));
    input["startedBy"] = json!("  ");
    assert_eq!(field_of(input).0, "startedBy");

    // A wave configured on the hub brings its gate to a `waveId` run.
    let mut hub = defaults();
    hub.waves[0].after = Some("canary".into());
    hub.waves[0].gate_window_hours = Some(48);
    let plan = plan_run("run-1", &json!({"waveId": "wave2-standard"}), &hub).unwrap();
    assert_eq!(plan.waves[0].gate.as_ref().map(|g| (g.after.as_str(), g.window_hours)), Some(("canary", 48)));
}

#[test]
fn snapshots_are_asked_per_wave_and_kept_in_the_plan() {
    let input = json!({"accountWaves": [
        {"name": "protected", "accounts": ["222222222222"], "snapshot": true},
        {"name": "plain", "accounts": ["333333333333"]}
    ]});
    let plan = plan_run("snap-run", &input, &defaults()).unwrap();
    assert!(plan.waves[0].snapshot);
    assert!(!plan.waves[1].snapshot);
    let stored = serde_json::to_value(&plan).unwrap();
    assert_eq!(stored["waves"][0]["snapshot"], true);
    assert!(stored["waves"][1].get("snapshot").is_none(), "false is left out: {stored}");
    // The API shape says it for its one wave, a configured wave included.
    let api = json!({"accounts": ["222222222222"], "snapshot": true});
    assert!(plan_run("snap-api", &api, &defaults()).unwrap().waves[0].snapshot);
    let configured = json!({"waveId": "wave2-standard", "snapshot": true});
    assert!(plan_run("snap-configured", &configured, &defaults()).unwrap().waves[0].snapshot);
    // Invalid: not a boolean, or top-level next to accountWaves (which say it per wave).
    let (field, reason) = field_of(json!({"accountWaves": [{"accounts": ["222222222222"], "snapshot": "yes"}]}));
    assert_eq!(field, "accountWaves[0].snapshot", "{reason}");
    let (field, reason) = field_of(json!({"accountWaves": [{"accounts": ["222222222222"]}], "snapshot": true}));
    assert_eq!(field, "snapshot");
    assert!(reason.contains("accountWaves"), "{reason}");
}
