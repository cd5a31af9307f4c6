//! Real patch waves on the local stack: the committed state machine, executed by moto's
//! interpreter, calling the real handlers, patching a simulated estate (approval given through
//! the emailed link, GET then POST, as a person would). From each run: the execution history
//! (events, state transitions, each state's events, the largest state payload, Lambda task
//! durations) and the router's count of every AWS call.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent};
use ec2patch_local::{ApproveOptions, EstateSpec, LocalStack, SeedKind};
use serde::Serialize;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(900);

/// The patch Map's per-batch states (from the committed template), with their ASL types.
pub fn processor_states() -> anyhow::Result<BTreeMap<String, String>> {
    // Placeholders sit inside JSON strings, so the template parses as it is.
    let template: Value = serde_json::from_str(ec2patch_core::asl::ORCHESTRATOR_TEMPLATE)?;
    let states = template["States"]["PatchTargets"]["ItemProcessor"]["States"]
        .as_object()
        .context("the template has no PatchTargets processor")?;
    Ok(states.iter().map(|(name, state)| (name.clone(), state["Type"].as_str().unwrap_or("").to_owned())).collect())
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskTime {
    pub invocations: u64,
    pub total_millis: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveRun {
    pub run_id: String,
    pub accounts: usize,
    pub regions: usize,
    pub targets: usize,
    pub instances_per_target: usize,
    pub batches: usize,
    pub status: String,
    pub seconds: f64,
    pub history_events: usize,
    /// States entered (what Step Functions bills as transitions, near enough).
    pub transitions: usize,
    pub entered: BTreeMap<String, u64>,
    /// Events of the patch Map's iterations (in the Distributed Map, the children's own
    /// histories) and everything else (the parent's).
    pub iteration_events: usize,
    pub parent_events: usize,
    /// Events per state of each type, measured over the whole history.
    pub events_per_state: BTreeMap<String, f64>,
    /// Polls per batch (from each PollCommands input's `batch`).
    pub polls_per_batch: BTreeMap<u64, u64>,
    pub largest_payload_bytes: usize,
    pub largest_payload_state: String,
    /// Lambda task durations by state name (TaskScheduled to TaskSucceeded/Failed).
    pub task_times: BTreeMap<String, TaskTime>,
    pub aws_calls: BTreeMap<String, u64>,
    /// Items the DynamoDB batch and transaction calls carried (the router's count).
    pub dynamodb_items: BTreeMap<String, u64>,
    /// Bytes the functions logged during the run (see [`crate::bill::count_function_logs`]).
    pub log_bytes: u64,
    /// The wave's inventory summary as the state machine carries it (compact JSON).
    #[serde(skip)]
    pub inventory_summary: Option<String>,
}

/// Seeds `accounts` x `regions` with `instances` patchable instances each (fresh accounts from
/// `first_account`), runs one wave over them, approves it, and measures.
pub async fn run(
    stack: &LocalStack,
    run_id: &str,
    accounts: usize,
    regions: &[String],
    instances: usize,
    first_account: usize,
) -> anyhow::Result<WaveRun> {
    let estate = stack
        .seed(&EstateSpec {
            accounts,
            regions: regions.to_vec(),
            per_target: BTreeMap::from([(SeedKind::Patchable, instances)]),
            denied_accounts: 0,
            concurrency: 16,
            first_account,
        })
        .await
        .with_context(|| format!("seeding {run_id}"))?;
    stack.router.reset_calls();
    let logged_before = crate::bill::log_bytes();
    let started = Instant::now();
    let input = json!({
        "accountWaves": [{"name": "bench", "accounts": estate.accounts, "regions": regions}],
        "ec2": {"tagKey": "PatchGroup", "tagValue": "default"},
        "abortOnIssues": false
    });
    let arn = stack.start_execution(run_id, &input).await?;
    // Only this run's approvals: those of earlier runs on this stack are already decided.
    let execution = stack.approve_until_done(&arn, &ApproveOptions::new(TIMEOUT).for_run(run_id)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let aws_calls = stack.router.calls();
    let dynamodb_items = stack.router.items();
    let log_bytes = crate::bill::log_bytes() - logged_before;
    if execution.status != ExecutionStatus::Succeeded {
        bail!("{run_id} ended {:?}: {:?} {:?}", execution.status, execution.error, execution.cause);
    }
    let history = stack.history(&arn).await?;
    let targets = accounts * regions.len();
    let per_batch = stack.hub.config.patching.targets_per_batch.max(1);
    let mut run = analyse(&history, &processor_states()?)?;
    run.run_id = run_id.to_owned();
    run.accounts = accounts;
    run.regions = regions.len();
    run.targets = targets;
    run.instances_per_target = instances;
    run.batches = targets.div_ceil(per_batch);
    run.status = execution.status.as_str().to_owned();
    run.seconds = seconds;
    run.aws_calls = aws_calls;
    run.dynamodb_items = dynamodb_items;
    run.log_bytes = log_bytes;
    Ok(run)
}

/// Which state each event belongs to: its own name for StateEntered/Exited, else the state of
/// the event before it in its chain (`previousEventId`), so TaskScheduled/Started/Succeeded
/// belong to the Task state that scheduled them.
fn owners(history: &[HistoryEvent]) -> HashMap<i64, String> {
    let by_id: HashMap<i64, &HistoryEvent> = history.iter().map(|e| (e.id, e)).collect();
    let mut owner = HashMap::new();
    for event in history {
        let mut current = Some(event);
        for _ in 0..16 {
            let Some(e) = current else { break };
            let name = e
                .state_entered_event_details()
                .map(|d| d.name.clone())
                .or_else(|| e.state_exited_event_details().map(|d| d.name.clone()));
            if let Some(name) = name {
                // A StateExited before this event means it follows that state (e.g. the next
                // state's entry is handled above); map iterations belong to their Map.
                owner.insert(event.id, name);
                break;
            }
            current = by_id.get(&e.previous_event_id).copied();
        }
    }
    owner
}

pub fn analyse(history: &[HistoryEvent], processor: &BTreeMap<String, String>) -> anyhow::Result<WaveRun> {
    let owner = owners(history);
    let mut entered: BTreeMap<String, u64> = BTreeMap::new();
    let mut polls_per_batch: BTreeMap<u64, u64> = BTreeMap::new();
    let mut events_of_state: BTreeMap<String, u64> = BTreeMap::new();
    let (mut largest, mut largest_state) = (0, String::new());
    let mut iteration_events = 0;
    let mut inventory_summary = None;
    for event in history {
        let kind = event.r#type.as_str();
        if let Some(d) = event.state_entered_event_details() {
            *entered.entry(d.name.clone()).or_default() += 1;
            let size = d.input.as_deref().map_or(0, str::len);
            if size > largest {
                (largest, largest_state) = (size, format!("{} (input)", d.name));
            }
            if d.name == "PollCommands"
                && let Some(batch) = d
                    .input
                    .as_deref()
                    .and_then(|i| serde_json::from_str::<Value>(i).ok())
                    .and_then(|v| v["batch"].as_u64())
            {
                *polls_per_batch.entry(batch).or_default() += 1;
            }
        }
        if let Some(d) = event.state_exited_event_details() {
            if d.name == "Inventory"
                && let Some(output) = d.output.as_deref().and_then(|o| serde_json::from_str::<Value>(o).ok())
            {
                inventory_summary = Some(output["wave"]["inventory"].to_string());
            }
            let size = d.output.as_deref().map_or(0, str::len);
            if size > largest {
                (largest, largest_state) = (size, format!("{} (output)", d.name));
            }
        }
        if kind.starts_with("MapIteration") {
            iteration_events += 1;
        } else if let Some(name) = owner.get(&event.id) {
            *events_of_state.entry(name.clone()).or_default() += 1;
            if processor.contains_key(name) {
                iteration_events += 1;
            }
        }
    }
    // Events per state, by ASL type, over the processor's states (where the batch's cost is).
    let mut per_type: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (name, kind) in processor {
        let slot = per_type.entry(kind.clone()).or_default();
        slot.0 += events_of_state.get(name).copied().unwrap_or_default();
        slot.1 += entered.get(name).copied().unwrap_or_default();
    }
    let events_per_state =
        per_type.into_iter().filter(|(_, (_, n))| *n > 0).map(|(k, (e, n))| (k, e as f64 / n as f64)).collect();
    Ok(WaveRun {
        run_id: String::new(),
        accounts: 0,
        regions: 0,
        targets: 0,
        instances_per_target: 0,
        batches: 0,
        status: String::new(),
        seconds: 0.0,
        history_events: history.len(),
        transitions: entered.values().sum::<u64>() as usize,
        entered,
        iteration_events,
        parent_events: history.len() - iteration_events,
        events_per_state,
        polls_per_batch,
        largest_payload_bytes: largest,
        largest_payload_state: largest_state,
        task_times: task_times(history, &owner),
        aws_calls: BTreeMap::new(),
        dynamodb_items: BTreeMap::new(),
        log_bytes: 0,
        inventory_summary,
    })
}

/// Lambda task durations by state name: TaskScheduled to the task's TaskSucceeded/TaskFailed.
fn task_times(history: &[HistoryEvent], owner: &HashMap<i64, String>) -> BTreeMap<String, TaskTime> {
    let by_id: HashMap<i64, &HistoryEvent> = history.iter().map(|e| (e.id, e)).collect();
    let mut times: BTreeMap<String, TaskTime> = BTreeMap::new();
    for event in history {
        let kind = event.r#type.as_str();
        if kind != "TaskSucceeded" && kind != "TaskFailed" {
            continue;
        }
        // Walk back to the TaskScheduled of this task.
        let mut current = by_id.get(&event.previous_event_id).copied();
        let mut scheduled = None;
        for _ in 0..4 {
            let Some(e) = current else { break };
            if e.r#type.as_str() == "TaskScheduled" {
                scheduled = Some(e);
                break;
            }
            current = by_id.get(&e.previous_event_id).copied();
        }
        let (Some(scheduled), Some(name)) = (scheduled, owner.get(&event.id)) else { continue };
        let is_lambda = scheduled.task_scheduled_event_details().is_some_and(|d| d.resource_type == "lambda");
        if !is_lambda {
            continue;
        }
        let millis = (event.timestamp.as_secs_f64() - scheduled.timestamp.as_secs_f64()) * 1000.0;
        let slot = times.entry(name.clone()).or_insert(TaskTime { invocations: 0, total_millis: 0.0 });
        slot.invocations += 1;
        slot.total_millis += millis.max(0.0);
    }
    times
}
