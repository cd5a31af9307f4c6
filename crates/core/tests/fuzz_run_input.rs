#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests ("fuzzing" on stable) for the run input parser, the first thing that reads
//! what an operator, a schedule or an attacker with `states:StartExecution` hands the hub.
//!
//! For arbitrary JSON values and for structured mutations of the two seed examples:
//! - `plan_run` never panics;
//! - every rejection is `InvalidInput` whose `field` names a place that exists in the input, or
//!   a required/defaulted field that is missing from it;
//! - every accepted input gives a plan that survives a JSON round trip and that re-plans to the
//!   very same plan from its canonical (EventBridge-shape, every value explicit) input.
//!
//! The cargo-fuzz targets in `fuzz/` check the same properties for millions of inputs; these
//! suites keep them in `cargo test` within a few seconds.

use ec2patch_core::config::{NamedWave, RunDefaults};
use ec2patch_core::input::plan_run;
use ec2patch_core::plan::BedrockAgent;
use ec2patch_core::{Error, RunPlan};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};

const API_EXAMPLE: &str = include_str!("../../../examples/run-input-api.json");
const EVENTBRIDGE_EXAMPLE: &str = include_str!("../../../examples/run-input-eventbridge.json");
const RUN_ID: &str = "fuzz-run-1";

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

/// Fields the parser may name although the input lacks them (required, or filled from defaults).
const MISSING_FIELDS: &[&str] =
    &["accountWaves", "accounts", "regions", "tagFilters", "tagKey", "tagValue", "agentId", "agentAliasId"];

/// Whether `field` names a place in `input` (see the module docs). Object keys may contain `.`
/// and `[` themselves, so each key is tried as a prefix instead of splitting the path first.
fn names_a_place_in(input: &Value, field: &str) -> bool {
    field == "$" || resolves(input, field)
}

fn resolves(value: &Value, rest: &str) -> bool {
    if rest.is_empty() {
        return true;
    }
    let descend = |child: &Value, after: &str| match after.as_bytes().first() {
        None => true,
        Some(b'.') => resolves(child, &after[1..]),
        Some(b'[') => resolves(child, after),
        Some(_) => false,
    };
    match value {
        Value::Object(map) => {
            map.iter().any(|(key, child)| rest.strip_prefix(key.as_str()).is_some_and(|after| descend(child, after)))
                || MISSING_FIELDS.contains(&rest)
        }
        Value::Array(items) => {
            let Some((digits, after)) = rest.strip_prefix('[').and_then(|inner| inner.split_once(']')) else {
                return false;
            };
            digits.parse::<usize>().ok().and_then(|index| items.get(index)).is_some_and(|child| descend(child, after))
        }
        _ => false,
    }
}

/// The plan written back as an EventBridge-shape input with every value explicit.
fn canonical_input(plan: &RunPlan) -> Value {
    let waves: Vec<Value> = plan
        .waves
        .iter()
        .map(|wave| json!({"name": wave.name, "accounts": wave.accounts, "regions": wave.regions}))
        .collect();
    let filters: Map<String, Value> =
        plan.tag_filters.iter().map(|filter| (filter.key.clone(), json!(filter.values))).collect();
    let mut input = json!({
        "accountWaves": waves,
        "tagFilters": filters,
        "dryRun": plan.dry_run,
        "wavePauseSeconds": plan.wave_pause_seconds,
        "abortOnIssues": plan.abort_on_issues,
    });
    if let Some(arn) = &plan.sns_topic_arn {
        input["snsTopicArn"] = json!(arn);
    }
    if let Some(agent) = &plan.bedrock {
        input["bedrock"] = json!({"agentId": agent.agent_id, "agentAliasId": agent.agent_alias_id});
    }
    input
}

/// The properties every input must satisfy; `Ok(true)` when the input was accepted.
fn check(input: &Value) -> Result<bool, TestCaseError> {
    match plan_run(RUN_ID, input, &defaults()) {
        Ok(plan) => {
            let text = serde_json::to_string(&plan).unwrap();
            prop_assert_eq!(serde_json::from_str::<RunPlan>(&text).unwrap(), plan.clone(), "JSON round trip");
            let canonical = canonical_input(&plan);
            let again = plan_run(RUN_ID, &canonical, &defaults());
            prop_assert_eq!(again, Ok(plan), "canonical input {} re-plans identically", canonical);
            Ok(true)
        }
        Err(error @ Error::InvalidInput { .. }) => {
            let message = error.to_string();
            let Error::InvalidInput { field, reason } = error else { unreachable!() };
            prop_assert!(!reason.is_empty(), "a rejection says why");
            prop_assert!(message.contains(&format!("`{field}`")), "{}", message);
            prop_assert!(names_a_place_in(input, &field), "`{}` is not a place in {}", field, input);
            Ok(false)
        }
        Err(other) => Err(TestCaseError::fail(format!("expected InvalidInput for {input}, got {other:?}"))),
    }
}

fn examples() -> Vec<Value> {
    let rich = json!({
        "accountWaves": [
            {"name": "canary", "accounts": ["222222222222"], "regions": ["eu-west-1", "eu-central-1"]},
            {"accounts": ["333333333333", "444444444444"]}
        ],
        "tagFilters": {"PatchGroup": ["default", "linux"], "Environment": "production"},
        "dryRun": true,
        "wavePauseSeconds": 86400,
        "abortOnIssues": false,
        "bedrock": {"agentId": "AGENT_ID", "agentAliasId": "ALIAS_ID"}
    });
    vec![
        serde_json::from_str(API_EXAMPLE).unwrap(),
        serde_json::from_str(EVENTBRIDGE_EXAMPLE).unwrap(),
        rich,
        json!({"waveId": "wave2-standard"}),
    ]
}

/// Every field name of the schema, so that generated objects often hit real fields.
const FIELD_NAMES: &[&str] = &[
    "waveId",
    "dryRun",
    "accounts",
    "regions",
    "tagFilters",
    "accountWaves",
    "ec2",
    "snsTopicArn",
    "bedrock",
    "wavePauseSeconds",
    "abortOnIssues",
    "scheduledTime",
    "name",
    "tagKey",
    "tagValue",
    "agentId",
    "agentAliasId",
    "PatchGroup",
];

/// Strings that sit on a rule's edge: ids, regions, tag keys, unicode look-alikes, separators.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            " ",
            "111111111111",
            "11111111111",
            "1111111111111",
            "２２２２２２２２２２２２",
            "us-east-1",
            "US-EAST-1",
            "us-east-1 ",
            "aws:reserved",
            "wave2-standard",
            "wave-1",
            "manual",
            "a`b",
            "a.b",
            "a[0]",
            "[0]",
            ".",
            "$",
            "\u{0}",
            "\u{202e}evil",
            "é",
            "🦀",
            "arn:aws:sns:us-east-1:111111111111:t",
            "arn:aws:sns:us-east-1:111111111111:",
            "arn:aws-cn:sns:x:111111111111:t:extra",
            "2026-11-29T03:00:00Z",
            "2026-11-29T03:00:00.999999999+14:00",
            "+275760-09-13T00:00:00Z",
            "9999-12-31T23:59:60Z",
        ])
        .prop_map(str::to_owned),
        prop::sample::select(FIELD_NAMES.to_vec()).prop_map(str::to_owned),
        any::<String>(),
        "[0-9]{11,13}",
        "[a-z]{2}-[a-z]{4,9}-[0-9]",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!(0),
            json!(-1),
            json!(1),
            json!(86_400),
            json!(86_401),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(u32::MAX),
            json!(u64::from(u32::MAX) + 1),
            json!(-0.0),
            json!(0.5),
            json!(1e308),
            json!(f64::MIN_POSITIVE),
            json!(300.0),
        ]),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        tricky_string().prop_map(Value::String),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((tricky_string(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Where a value sits in a document: object keys and array indices.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn places(value: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                at.push(Step::Key(key.clone()));
                places(child, at, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                at.push(Step::Index(index));
                places(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(value: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(value, |value, step| match step {
        Step::Key(key) => &mut value[key.as_str()],
        Step::Index(index) => &mut value[*index],
    })
}

/// One structured change to a document.
#[derive(Debug, Clone)]
enum Mutation {
    /// Remove the value (an object's field or an array's element).
    Drop,
    /// Copy the value to a sibling key or append it again to its array.
    Duplicate(String),
    /// Replace the value with another (often of another type).
    Replace(Value),
    /// Replace the value with a string of `len` copies of `unit`.
    Huge(char, usize),
    /// Add an unknown or known field to the object.
    Insert(String, Value),
    /// Wrap the value in `depth` arrays or objects.
    Nest(usize, bool),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => Just(Mutation::Drop),
        1 => tricky_string().prop_map(Mutation::Duplicate),
        4 => any_json().prop_map(Mutation::Replace),
        3 => leaf().prop_map(Mutation::Replace),
        1 => (prop::sample::select(vec!['1', 'a', 'é', '🦀', '\u{0}', '"']), 1usize..70_000)
            .prop_map(|(unit, len)| Mutation::Huge(unit, len)),
        2 => (tricky_string(), any_json()).prop_map(|(key, value)| Mutation::Insert(key, value)),
        1 => (1usize..200, any::<bool>()).prop_map(|(depth, arrays)| Mutation::Nest(depth, arrays)),
    ]
}

fn apply(document: &mut Value, target: Index, mutation: &Mutation) {
    let mut all = Vec::new();
    places(document, &mut Vec::new(), &mut all);
    let path = target.get(&all).clone();
    match mutation {
        Mutation::Drop | Mutation::Duplicate(_) => {
            let Some((last, parent_path)) = path.split_last() else { return };
            let parent = at_mut(document, parent_path);
            match (parent, last, mutation) {
                (Value::Object(map), Step::Key(key), Mutation::Drop) => {
                    map.remove(key);
                }
                (Value::Array(items), Step::Index(index), Mutation::Drop) => {
                    items.remove(*index);
                }
                (Value::Object(map), Step::Key(key), Mutation::Duplicate(new_key)) => {
                    let copy = map[key].clone();
                    map.insert(new_key.clone(), copy);
                }
                (Value::Array(items), Step::Index(index), Mutation::Duplicate(_)) => {
                    let copy = items[*index].clone();
                    items.push(copy);
                }
                _ => {}
            }
        }
        Mutation::Replace(value) => *at_mut(document, &path) = value.clone(),
        Mutation::Huge(unit, len) => *at_mut(document, &path) = Value::String(unit.to_string().repeat(*len)),
        Mutation::Insert(key, value) => {
            if let Value::Object(map) = at_mut(document, &path) {
                map.insert(key.clone(), value.clone());
            }
        }
        Mutation::Nest(depth, arrays) => {
            let slot = at_mut(document, &path);
            let mut value = slot.take();
            for _ in 0..*depth {
                value = if *arrays { Value::Array(vec![value]) } else { json!({ "accounts": value }) };
            }
            *slot = value;
        }
    }
}

fn config(cases: u32) -> Config {
    // No regression files in the source tree: failures found here become named tests below.
    Config { cases, failure_persistence: None, ..Config::default() }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn arbitrary_json_is_planned_or_refused_by_name(input in any_json()) {
        check(&input)?;
    }

    #[test]
    fn mutated_examples_are_planned_or_refused_by_name(
        example in 0usize..4,
        edits in prop::collection::vec((any::<Index>(), mutation()), 1..4),
    ) {
        let mut input = examples()[example].clone();
        for (target, mutation) in &edits {
            apply(&mut input, *target, mutation);
        }
        // The Lambda runtime parses the payload text with serde_json, whose recursion limit
        // (128) bounds the nesting any real input can have; go through text the same way.
        let text = serde_json::to_string(&input).unwrap();
        match serde_json::from_str::<Value>(&text) {
            Ok(parsed) => { check(&parsed)?; }
            Err(error) => prop_assert!(error.to_string().contains("recursion limit"), "{}", error),
        }
    }

}

proptest! {
    #![proptest_config(config(256))]

    /// Valid inputs built from parts: accepted, and planned as written.
    #[test]
    fn generated_valid_inputs_are_accepted(
        waves in prop::collection::btree_set(100_000_000_000u64..999_999_999_999, 1..12),
        per_wave in 1usize..4,
        regions in prop::sample::subsequence(vec!["us-east-1", "eu-west-1", "ap-south-1", "sa-east-1"], 1..4),
        pause in 0i64..=86_400,
        dry_run in any::<bool>(),
        tag_value in "[A-Za-z0-9 _.:/=+@-]{1,256}",
    ) {
        let accounts: Vec<String> = waves.iter().map(|id| format!("{id:012}")).collect();
        let account_waves: Vec<Value> =
            accounts.chunks(per_wave).map(|chunk| json!({"accounts": chunk, "regions": regions})).collect();
        let input = json!({
            "accountWaves": account_waves,
            "ec2": {"tagKey": "PatchGroup", "tagValue": tag_value},
            "wavePauseSeconds": pause,
            "dryRun": dry_run,
        });
        prop_assert!(check(&input)?, "accepted");
        let plan = plan_run(RUN_ID, &input, &defaults()).unwrap();
        prop_assert_eq!(plan.target_count(), accounts.len() * regions.len());
        prop_assert_eq!(i64::from(plan.wave_pause_seconds), pause);
        prop_assert_eq!(plan.dry_run, dry_run);
        prop_assert_eq!(&plan.tag_filters[0].values[0], &tag_value);
    }
}

#[test]
fn the_path_check_itself_tells_places_from_non_places() {
    let input = json!({"accountWaves": [{"accounts": ["1"]}], "tagFilters": {"a.b": "x", "c[0]": "y"}});
    for place in
        ["$", "accountWaves", "accountWaves[0]", "accountWaves[0].accounts[0]", "tagFilters.a.b", "tagFilters.c[0]"]
    {
        assert!(names_a_place_in(&input, place), "{place}");
    }
    for missing in ["accountWaves[0].regions", "regions", "tagFilters.tagKey"] {
        assert!(names_a_place_in(&input, missing), "missing but required: {missing}");
    }
    for not_a_place in
        ["accountWaves[1]", "accountWaves[0].accounts[1]", "dryRun.x", "accountWaves.x", "tagFilters.a.c"]
    {
        assert!(!names_a_place_in(&input, not_a_place), "{not_a_place}");
    }
}

#[test]
fn every_example_passes_the_properties() {
    for example in examples() {
        assert!(check(&example).unwrap(), "{example}");
    }
}

/// Found by `arbitrary_json_is_planned_or_refused_by_name`: an unknown field whose name holds a
/// backtick was reported as `a`b.a` (the name cut at the backtick, appended to the full path).
#[test]
fn an_unknown_field_with_a_backtick_is_named_whole() {
    for (input, expected) in [
        (json!({"waveId": "wave2-standard", "a`b": null}), "a`b"),
        (json!({"accountWaves": [{"accounts": ["222222222222"], "x`y`": 1}]}), "accountWaves[0].x`y`"),
    ] {
        match plan_run(RUN_ID, &input, &defaults()) {
            Err(Error::InvalidInput { field, reason }) => {
                assert_eq!(field, expected);
                assert!(reason.contains("not a known field"), "{reason}");
            }
            other => panic!("expected InvalidInput for {input}, got {other:?}"),
        }
    }
}
