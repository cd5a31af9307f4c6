//! The state machine definition and its rendering.
//!
//! `statemachine/orchestrator.asl.json` is a template: `${name}` placeholders are filled by
//! Terraform's `templatefile` in a deployment and by [`render`] on the local stack, so the tests
//! execute exactly the definition that is deployed.

use std::collections::BTreeMap;

use crate::{Error, Result};

/// The template, as committed.
pub const ORCHESTRATOR_TEMPLATE: &str = include_str!("../../../statemachine/orchestrator.asl.json");

/// Waves with more patch batches than this run in the Distributed Map (`PatchTargetsDistributed`,
/// one child execution per batch) instead of the inline Map, whose iterations add their events to
/// the parent's history (at most 25,000 events per execution). The template's `PatchNeeded`
/// choice holds the same number; a test keeps the two equal.
pub const INLINE_MAP_MAX_BATCHES: u64 = 10;

/// Runs with more waves than this send every wave to the Distributed Map, whatever its size: the
/// inline waves of a longer run could fill the parent's history (the template's `PatchNeeded`
/// holds the same number; a test counts the worst case).
pub const INLINE_MAX_WAVES: u64 = 7;

/// Replaces every `${name}` with `values[name]`; a placeholder without a value is an error, as it
/// is for `templatefile`.
pub fn render(template: &str, values: &BTreeMap<&str, String>) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::ConfigError("unterminated ${ in state machine template".to_owned()))?;
        let name = &after[..end];
        let value = values
            .get(name)
            .ok_or_else(|| Error::ConfigError(format!("state machine template needs a value for ${{{name}}}")))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The placeholder names a template uses, so callers can check they supply all of them.
pub fn placeholders(template: &str) -> Vec<String> {
    let mut names: Vec<String> =
        template.split("${").skip(1).filter_map(|part| part.split('}').next()).map(str::to_owned).collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_rejects_missing_values() {
        let values = BTreeMap::from([("fn", "arn:x".to_owned())]);
        assert_eq!(render(r#"{"a":"${fn}","b":"$.x"}"#, &values).unwrap(), r#"{"a":"arn:x","b":"$.x"}"#);
        let error = render(r#"{"a":"${other}"}"#, &values).unwrap_err();
        assert!(error.to_string().contains("${other}"), "{error}");
    }

    #[test]
    fn the_committed_template_renders_to_valid_json() {
        let values: BTreeMap<&str, String> = BTreeMap::new();
        let names = placeholders(ORCHESTRATOR_TEMPLATE);
        assert!(!names.is_empty());
        let owned: Vec<(String, String)> = names.iter().map(|n| (n.clone(), format!("value-of-{n}"))).collect();
        let values: BTreeMap<&str, String> =
            values.into_iter().chain(owned.iter().map(|(k, v)| (k.as_str(), v.clone()))).collect();
        let rendered = render(ORCHESTRATOR_TEMPLATE, &values).unwrap();
        let json: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        assert!(json["States"].is_object());
    }

    use serde_json::Value;

    /// The committed template rendered with a value for every placeholder, as JSON.
    fn rendered() -> Value {
        let owned: Vec<(String, String)> = placeholders(ORCHESTRATOR_TEMPLATE)
            .into_iter()
            .map(|n| {
                let value = if n.ends_with("_arn") {
                    format!("arn:aws:lambda:us-east-1:111111111111:function:{n}")
                } else {
                    format!("value-of-{n}")
                };
                (n, value)
            })
            .collect();
        let values: BTreeMap<&str, String> = owned.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        serde_json::from_str(&render(ORCHESTRATOR_TEMPLATE, &values).unwrap()).unwrap()
    }

    #[test]
    fn large_waves_go_to_the_distributed_map_and_small_ones_stay_inline() {
        let definition = rendered();
        let choice = &definition["States"]["PatchNeeded"];
        let rules = choice["Choices"].as_array().unwrap();
        // The first matching rule wins, so the Distributed Map's rules must come first.
        assert_eq!(rules[0]["Variable"], "$.wave.inventory.batches");
        assert_eq!(rules[0]["NumericGreaterThan"], INLINE_MAP_MAX_BATCHES);
        assert_eq!(rules[0]["Next"], "PatchTargetsDistributed");
        assert_eq!(rules[1]["And"][0]["Variable"], "$.run.waveCount");
        assert_eq!(rules[1]["And"][0]["NumericGreaterThan"], INLINE_MAX_WAVES);
        assert_eq!(rules[1]["And"][1]["Variable"], "$.wave.inventory.batches");
        assert_eq!(rules[1]["And"][1]["NumericGreaterThan"], 0);
        assert_eq!(rules[1]["Next"], "PatchTargetsDistributed");
        assert_eq!(rules[2]["Variable"], "$.wave.inventory.batches");
        assert_eq!(rules[2]["NumericGreaterThan"], 0);
        assert_eq!(rules[2]["Next"], "PatchTargets");
        assert_eq!(choice["Default"], "SummarizeWave", "a wave with nothing to patch skips both");

        // The inline Map iterates over the small list of batch indexes, never over instances.
        let inline = &definition["States"]["PatchTargets"];
        assert_eq!(inline["ItemProcessor"]["ProcessorConfig"]["Mode"], "INLINE");
        assert_eq!(inline["ItemsPath"], "$.wave.inventory.batchIndexes");
        assert_eq!(inline["ResultPath"], Value::Null);
    }

    /// A run may have up to [`crate::input::MAX_WAVES`] waves and an execution at most 25,000
    /// history events. Inline waves put every poll of every batch into the parent's history, so a
    /// run of more than [`INLINE_MAX_WAVES`] waves sends every wave to the Distributed Map, whose
    /// children keep their own histories. Worst case counted here: every batch polled for the
    /// whole default command timeout, every state's events (Task 5, Map 6, others 2).
    #[test]
    fn no_run_can_outgrow_the_execution_history() {
        const BUDGET: u64 = 20_000; // 5,000 events left for retries (3 events each)
        let definition = rendered();
        let states = &definition["States"];
        let events = |state: &Value| match state["Type"].as_str() {
            Some("Task") => 5,
            Some("Map") => 6, // entered, started, (map run started, succeeded), succeeded, exited
            _ => 2,
        };
        // Polls of one batch: the wait doubles from the initial value up to the cap until the
        // command timeout has passed (PollSsmCommand's schedule), plus the final poll. Its
        // adaptive waits never make more polls by any moment than this schedule
        // (`ec2patch_ssm_poll::next_wait`), so this is the most a batch can have.
        let settings = crate::config::PatchSettings::default();
        let (mut waited, mut wait, mut polls) = (0_u64, u64::from(settings.poll_initial_seconds), 1_u64);
        while waited < u64::from(settings.command_timeout_seconds) {
            waited += wait;
            polls += 1;
            wait = (wait * 2).min(u64::from(settings.poll_max_seconds));
        }
        let processor = &states["PatchTargets"]["ItemProcessor"]["States"];
        let per_batch = 2 // iteration started, succeeded
            + events(&processor["SendCommands"])
            + polls * (events(&processor["WaitForCommands"]) + events(&processor["PollCommands"]) + events(&processor["CommandsFinished"]))
            + events(&processor["VerifyBatch"]);
        let wave_path = [
            "HasMoreWaves",
            "Inventory",
            "PrePatchAnalysis",
            "ApprovalNeeded",
            "RequestApproval",
            "PatchNeeded",
            "PatchTargets",
            "SummarizeWave",
            "AnalyzeWave",
            "NotifyWave",
            "PublishWaveSummary",
            "IssuesFound",
            "AdvanceWave",
            "PauseBeforeNextWave",
            "WavePause",
        ];
        let per_wave: u64 = wave_path.iter().map(|name| events(&states[*name])).sum();
        let run: u64 = ["PlanRun", "HasMoreWaves", "WriteReport", "ReleaseRunLock", "RunComplete"]
            .iter()
            .map(|name| events(&states[*name]))
            .sum::<u64>()
            + 2; // execution started, succeeded
        let inline_wave = per_wave + INLINE_MAP_MAX_BATCHES * per_batch;
        assert!(polls > 20, "{polls} polls: the default schedule is 30 s doubling to 300 s over 2 hours");
        assert!(run + INLINE_MAX_WAVES * inline_wave <= BUDGET, "{} events", run + INLINE_MAX_WAVES * inline_wave);
        assert!(run + (INLINE_MAX_WAVES + 1) * inline_wave > BUDGET, "the bound is the largest that fits");
        // Every wave through the Distributed Map: the parent holds only the wave's own states.
        let max_waves = crate::input::MAX_WAVES as u64;
        assert!(run + max_waves * per_wave <= BUDGET, "{} events", run + max_waves * per_wave);
    }

    #[test]
    fn the_distributed_map_reads_batches_from_s3_and_writes_results_there() {
        let definition = rendered();
        let map = &definition["States"]["PatchTargetsDistributed"];
        assert_eq!(map["Type"], "Map");
        assert_eq!(map["ItemProcessor"]["ProcessorConfig"]["Mode"], "DISTRIBUTED");
        // Patching waits for up to the command timeout (hours): Express children stop at 5 minutes.
        assert_eq!(map["ItemProcessor"]["ProcessorConfig"]["ExecutionType"], "STANDARD");

        // Items: the wave's batch objects, listed under the prefix PreEC2Inventory writes them to.
        let reader = &map["ItemReader"];
        assert_eq!(reader["Resource"], "arn:aws:states:::s3:listObjectsV2");
        assert_eq!(reader["Parameters"]["Bucket.$"], "$.wave.inventory.manifest.bucket");
        let prefix = reader["Parameters"]["Prefix.$"].as_str().unwrap();
        assert!(prefix.starts_with("States.Format('runs/{}/waves/{}/batches/', $.run.runId,"), "{prefix}");
        // The wave's zero-padded number is taken from the manifest key: runs/<id>/waves/<nnn>/manifest.json.
        let manifest_key = crate::store::manifest_key("run-1", 7);
        assert_eq!(manifest_key.split('/').nth(3), Some("007"));
        assert!(prefix.contains("States.ArrayGetItem(States.StringSplit($.wave.inventory.manifest.key, '/'), 3)"));

        // Each child gets what an inline iteration gets; its batch number is read from its
        // object's key (the 6th path segment, before the dot), never from the item's position.
        let batch_key = crate::store::batch_key("run-1", 7, 12);
        assert_eq!(batch_key.split('/').nth(5), Some("12.json"), "not zero-padded: StringToJson reads it");
        let mut selector = definition["States"]["PatchTargets"]["ItemSelector"].clone();
        assert_eq!(selector["batch.$"], "$$.Map.Item.Value");
        selector["batch.$"] = Value::from(
            "States.StringToJson(States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(\
             States.StringSplit($$.Map.Item.Value.Key, '/'), 5), '.'), 0))",
        );
        assert_eq!(map["ItemSelector"], selector);
        assert!(!map.to_string().contains("Map.Item.Index"));

        // Results go to S3, and nothing comes back into the parent's state.
        assert_eq!(map["ResultWriter"]["Resource"], "arn:aws:states:::s3:putObject");
        assert_eq!(map["ResultWriter"]["Parameters"]["Bucket.$"], "$.wave.inventory.manifest.bucket");
        assert_eq!(map["ResultPath"], Value::Null);
        assert!(map.get("ResultSelector").is_none() && map.get("OutputPath").is_none());
        assert_eq!(map["Next"], "SummarizeWave");
        // Reading the items or writing the results is retried; then the failure is recorded and
        // the wave summarized (instances of unfinished batches end FAILED).
        assert_eq!(
            map["Retry"][0]["ErrorEquals"],
            serde_json::json!(["States.ItemReaderFailed", "States.ResultWriterFailed"])
        );
        assert_eq!(map["Catch"][0]["ErrorEquals"][0], "States.ALL");
        assert_eq!(map["Catch"][0]["Next"], "RecordPatchFailure");
        assert_eq!(definition["States"]["RecordPatchFailure"]["Next"], "SummarizeWave");
        // Tolerated failures: every batch finishes even if a child fails unexpectedly.
        assert_eq!(map["ToleratedFailurePercentage"], 100);
        // How many children at once: PlanRun's figure (at most 100, lowered by maxConcurrentBatches).
        assert_eq!(map["MaxConcurrencyPath"], "$.run.distributedBatchConcurrency");
    }

    /// Every failure path of the run ends recorded: no Task that records a failure, and neither
    /// patch Map, can end the execution on its own (holding the run lock, with no report).
    #[test]
    fn failure_paths_are_caught_and_records_expire() {
        let definition = rendered();
        let states = &definition["States"];
        for name in
            ["PatchTargets", "PatchTargetsDistributed", "RecordPatchFailure", "RecordWaveFailure", "RecordWaveIssues"]
        {
            let catch = &states[name]["Catch"][0];
            assert_eq!(catch["ErrorEquals"][0], "States.ALL", "{name}");
            assert!(catch["Next"].is_string(), "{name}");
        }
        for (map, prefix) in [("PatchTargets", ""), ("PatchTargetsDistributed", "Child")] {
            let processor = &states[map]["ItemProcessor"]["States"];
            let record = &processor[format!("{prefix}RecordBatchFailure")];
            assert_eq!(record["Catch"][0]["Next"], format!("{prefix}BatchFailureNotRecorded"), "{map}");
            // Up to 100 children retry together: spread their retries.
            for (name, state) in processor.as_object().unwrap() {
                for retry in state["Retry"].as_array().into_iter().flatten() {
                    assert_eq!(retry["JitterStrategy"], "FULL", "{map}.{name}");
                }
            }
        }
        // Every item the state machine writes itself carries the TTL attribute the functions set.
        let mut puts = Vec::new();
        collect_put_items(&definition, &mut puts);
        assert!(puts.len() >= 7, "{puts:?}");
        for (name, item) in puts {
            let ttl = &item["expiresAt"]["N.$"];
            assert!(ttl == "$.run.lock.expiresAt" || ttl == "$.expiresAt", "{name}: {item}");
        }
        for map in ["PatchTargets", "PatchTargetsDistributed"] {
            assert_eq!(states[map]["ItemSelector"]["expiresAt.$"], "$.run.lock.expiresAt");
        }
    }

    fn collect_put_items<'a>(value: &'a Value, found: &mut Vec<(&'a str, &'a Value)>) {
        if let Some(states) = value["States"].as_object() {
            for (name, state) in states {
                if state["Resource"] == "arn:aws:states:::dynamodb:putItem" {
                    found.push((name, &state["Parameters"]["Item"]));
                }
                if state["Type"] == "Map" {
                    collect_put_items(&state["ItemProcessor"], found);
                }
            }
        }
    }

    /// A run input that is not a JSON object (`[1,2,3]`, `"text"`) must end `InvalidInput`: the
    /// Catch cannot put the error into such an input, so it replaces the input with the error.
    #[test]
    fn a_plan_failure_replaces_the_input_whatever_its_shape() {
        let definition = rendered();
        let states = &definition["States"];
        assert_eq!(definition["StartAt"], "PlanRun");
        let catches = states["PlanRun"]["Catch"].as_array().unwrap();
        assert_eq!(catches[0]["ErrorEquals"][0], "InvalidInput");
        assert_eq!(catches[0]["Next"], "InvalidRunInput");
        for catch in catches {
            assert_eq!(catch["ResultPath"], "$");
        }
        assert_eq!(states["InvalidRunInput"]["Error"], "InvalidInput");
        assert_eq!(states["InvalidRunInput"]["CausePath"], "$.Cause");
        assert_eq!(
            (&states["PlanFailed"]["ErrorPath"], &states["PlanFailed"]["CausePath"]),
            (&Value::from("$.Error"), &Value::from("$.Cause"))
        );
        assert_eq!(states["PlanRun"]["Parameters"]["Payload"]["input.$"], "$", "the input goes whole to PlanRun");
    }

    #[test]
    fn the_distributed_children_run_exactly_the_inline_steps() {
        let definition = rendered();
        let inline = &definition["States"]["PatchTargets"]["ItemProcessor"];
        let child = &definition["States"]["PatchTargetsDistributed"]["ItemProcessor"];
        let renamed = |name: &str| format!("Child{name}");
        assert_eq!(child["StartAt"], renamed(inline["StartAt"].as_str().unwrap()));
        let inline_states = inline["States"].as_object().unwrap();
        let child_states = child["States"].as_object().unwrap();
        assert_eq!(inline_states.len(), child_states.len());
        for (name, state) in inline_states {
            // Same state with every transition renamed: the two paths cannot drift apart.
            let mut expected = state.clone();
            rename_transitions(&mut expected, &renamed);
            assert_eq!(child_states.get(&renamed(name)), Some(&expected), "{name}");
        }
    }

    fn rename_transitions(value: &mut Value, renamed: &dyn Fn(&str) -> String) {
        match value {
            Value::Object(map) => {
                for (key, field) in map.iter_mut() {
                    match (key.as_str(), field.as_str()) {
                        ("Next" | "Default", Some(target)) => *field = Value::from(renamed(target)),
                        _ => rename_transitions(field, renamed),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| rename_transitions(item, renamed)),
            _ => {}
        }
    }

    #[test]
    fn state_names_are_unique_and_every_transition_stays_in_its_scope() {
        let definition = rendered();
        let mut names = Vec::new();
        check_scope(&definition, &mut names);
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate state names in {names:?}");
    }

    /// Every `StartAt`/`Next`/`Default` names a state of the same scope (a Map's processor is a
    /// scope of its own); collects every state name.
    fn check_scope(scope: &Value, names: &mut Vec<String>) {
        let states = scope["States"].as_object().unwrap();
        assert!(states.contains_key(scope["StartAt"].as_str().unwrap()), "StartAt {}", scope["StartAt"]);
        for (name, state) in states {
            names.push(name.clone());
            let mut targets: Vec<&Value> = vec![&state["Next"], &state["Default"]];
            for list in ["Choices", "Catch"] {
                if let Some(rules) = state[list].as_array() {
                    targets.extend(rules.iter().map(|r| &r["Next"]));
                }
            }
            for target in targets.into_iter().filter_map(Value::as_str) {
                assert!(states.contains_key(target), "{name} -> {target}: not in its scope");
            }
            if state["Type"] == "Map" {
                check_scope(&state["ItemProcessor"], names);
            }
        }
    }
}
