//! The run input, in either shape the seed README documents, validated into one [`RunPlan`].
//!
//! - API shape: `{"waveId", "dryRun", "accounts", "regions", "tagFilters": {"PatchGroup": "default"}}`.
//! - EventBridge shape: `{"accountWaves": [{"accounts", "regions"}], "ec2": {"tagKey", "tagValue"},
//!   "snsTopicArn", "bedrock": {"agentId", "agentAliasId"}, "wavePauseSeconds", "abortOnIssues"}`.
//!
//! - Either shape may add `scheduledTime` (set by the wave rules), `changeCalendars` and
//!   `freezeWaitSeconds` (change freezes, see [`crate::change_freeze`]), `maxFailedInstances`,
//!   `maxFailedPercent` and `maxConcurrentBatches` (error budgets, see [`crate::error_budget`]).
//!
//! Both are one schema with every field optional; `accountWaves` excludes `accounts`/`regions`,
//! and `ec2` excludes `tagFilters`. Unknown fields are rejected, because a misspelt `dryRun` must
//! not patch production. Every error names the offending field by its JSON path.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

use crate::config::RunDefaults;
use crate::plan::{AccountId, BedrockAgent, Region, RunPlan, TagFilter, Wave};
use crate::regions;
use crate::wave_gate::WaveGate;
use crate::{Error, Result};

/// Waves a run may have: each costs at least one approval and one pause.
pub const MAX_WAVES: usize = 50;
/// Longest pause between waves: one day (a longer one is a schedule, not a pause).
pub const MAX_WAVE_PAUSE_SECONDS: i64 = 86_400;
const MAX_TAG_FILTERS: usize = 10;
/// Change calendars a run may name (GetCalendarState takes them in one call).
const MAX_CHANGE_CALENDARS: usize = 10;
/// Longest wait for a closed change calendar to open: one week.
pub const MAX_FREEZE_WAIT_SECONDS: i64 = 7 * 86_400;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RunInput {
    wave_id: Option<String>,
    dry_run: Option<bool>,
    accounts: Option<Vec<String>>,
    /// AWS Organizations targeting (API shape): OUs whose accounts join `accounts`.
    organizational_units: Option<Vec<String>>,
    exclude_accounts: Option<Vec<String>>,
    regions: Option<Vec<String>>,
    tag_filters: Option<BTreeMap<String, TagValues>>,
    account_waves: Option<Vec<AccountWaveInput>>,
    ec2: Option<Ec2Input>,
    sns_topic_arn: Option<String>,
    bedrock: Option<BedrockInput>,
    wave_pause_seconds: Option<i64>,
    abort_on_issues: Option<bool>,
    /// When the schedule fired (ISO 8601, the EventBridge event's `time`): keys the run lock,
    /// so a second delivery of the same event is refused (see [`scheduled_time`]).
    scheduled_time: Option<String>,
    /// SSM Change Calendars to respect beyond the hub's (names or ARNs, hub account).
    change_calendars: Option<Vec<String>>,
    freeze_wait_seconds: Option<i64>,
    /// The wave's error budget (see [`crate::error_budget`]).
    max_failed_instances: Option<i64>,
    max_failed_percent: Option<i64>,
    max_concurrent_batches: Option<i64>,
    /// Let a manual run through closed wave gates; requires `startedBy` (see [`crate::wave_gate`]).
    ignore_gates: Option<bool>,
    /// Who started the run (an IAM ARN or a person), kept in the run's record.
    started_by: Option<String>,
    /// Pre-patch snapshots for the API shape's one wave (`accountWaves` say it per wave).
    snapshot: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TagValues {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AccountWaveInput {
    name: Option<String>,
    #[serde(default)]
    accounts: Vec<String>,
    /// OU or root ids: their accounts, nested OUs included, join the wave at PlanRun.
    organizational_units: Option<Vec<String>>,
    exclude_accounts: Option<Vec<String>>,
    regions: Option<Vec<String>>,
    /// The wave this one follows across runs ([`crate::wave_gate`]).
    after: Option<String>,
    gate_window_hours: Option<i64>,
    /// Snapshot each instance's volumes before patching it ([`crate::snapshots`]).
    snapshot: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Ec2Input {
    tag_key: String,
    tag_value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BedrockInput {
    agent_id: String,
    agent_alias_id: String,
}

/// Validates `input` (either shape) and fills omitted values from the hub's `defaults`.
pub fn plan_run(run_id: &str, input: &Value, defaults: &RunDefaults) -> Result<RunPlan> {
    if !input.is_object() {
        return Err(Error::invalid("$", "the run input must be a JSON object"));
    }
    let input: RunInput = serde_path_to_error::deserialize(input).map_err(|error| {
        let path = error.path().to_string();
        serde_error(&path, &error.into_inner().to_string())
    })?;
    validate_run_id(run_id)?;
    if let Some(time) = &input.scheduled_time {
        normalize_scheduled_time(time)?;
    }

    let waves = waves(&input, defaults)?;
    let tag_filters = tag_filters(&input, defaults)?;
    let (ignore_gates, started_by) = gate_override(&input)?;

    // The functions may publish only to the hub's topic and invoke only the hub's agent (their
    // IAM policies name exactly those): another one would pass here and then fail at
    // SendApprovalRequest (AccessDenied) or silently fall back to the rules. So an input may
    // repeat the hub's values, never name others.
    let sns_topic_arn = match input.sns_topic_arn {
        Some(arn) => {
            let arn = validate_topic_arn(arn)?;
            match &defaults.sns_topic_arn {
                Some(hub) if *hub != arn => {
                    return Err(Error::invalid(
                        "snsTopicArn",
                        format!(
                            "{arn} is not this hub's topic {hub}, the only one it may publish to; omit snsTopicArn"
                        ),
                    ));
                }
                _ => Some(arn),
            }
        }
        None => defaults.sns_topic_arn.clone(),
    };
    let bedrock = match input.bedrock {
        Some(agent) => {
            let agent = BedrockAgent {
                agent_id: validate_identifier("bedrock.agentId", agent.agent_id)?,
                agent_alias_id: validate_identifier("bedrock.agentAliasId", agent.agent_alias_id)?,
            };
            match &defaults.bedrock {
                Some(hub) if *hub == agent => Some(agent),
                Some(hub) => {
                    return Err(Error::invalid(
                        "bedrock",
                        format!(
                            "agent {} alias {} is not this hub's agent ({} alias {}), the only one it may invoke; omit bedrock",
                            agent.agent_id, agent.agent_alias_id, hub.agent_id, hub.agent_alias_id
                        ),
                    ));
                }
                None => {
                    return Err(Error::invalid(
                        "bedrock",
                        format!(
                            "this hub has no Bedrock agent (Terraform's bedrock_agent_id), so agent {} cannot be invoked; omit bedrock for the rule-based analysis",
                            agent.agent_id
                        ),
                    ));
                }
            }
        }
        None => defaults.bedrock.clone(),
    };
    let wave_pause_seconds = match input.wave_pause_seconds {
        None => defaults.wave_pause_seconds,
        Some(seconds) if seconds < 0 => {
            return Err(Error::invalid("wavePauseSeconds", format!("must be zero or more, got {seconds}")));
        }
        Some(seconds) if seconds > MAX_WAVE_PAUSE_SECONDS => {
            return Err(Error::invalid(
                "wavePauseSeconds",
                format!("must be at most {MAX_WAVE_PAUSE_SECONDS} (one day), got {seconds}"),
            ));
        }
        Some(seconds) => u32::try_from(seconds).map_err(|_| Error::invalid("wavePauseSeconds", "is out of range"))?,
    };

    let change_calendars = change_calendars(input.change_calendars, &defaults.change_calendars)?;
    let freeze_wait_seconds = match input.freeze_wait_seconds {
        None => defaults.freeze_wait_seconds,
        Some(seconds) if !(0..=MAX_FREEZE_WAIT_SECONDS).contains(&seconds) => {
            return Err(Error::invalid(
                "freezeWaitSeconds",
                format!("must be 0 to {MAX_FREEZE_WAIT_SECONDS} (one week), got {seconds}"),
            ));
        }
        Some(seconds) => u32::try_from(seconds).map_err(|_| Error::invalid("freezeWaitSeconds", "is out of range"))?,
    };

    let bounded = |field: &str, value: Option<i64>, max: i64| -> Result<Option<u32>> {
        match value {
            None => Ok(None),
            Some(n) if (0..=max).contains(&n) => Ok(u32::try_from(n).ok()),
            Some(n) => Err(Error::invalid(field, format!("must be a whole number from 0 to {max}, got {n}"))),
        }
    };
    let error_budget = crate::error_budget::ErrorBudget {
        max_failed_instances: bounded("maxFailedInstances", input.max_failed_instances, i64::from(u32::MAX))?
            .or(defaults.error_budget.max_failed_instances),
        max_failed_percent: bounded("maxFailedPercent", input.max_failed_percent, 100)?
            .and_then(|n| u8::try_from(n).ok())
            .or(defaults.error_budget.max_failed_percent),
    };
    let max_concurrent_batches = match bounded("maxConcurrentBatches", input.max_concurrent_batches, 1000)? {
        Some(0) => return Err(Error::invalid("maxConcurrentBatches", "must be at least 1, got 0")),
        Some(n) => Some(n),
        None => defaults.max_concurrent_batches,
    };

    Ok(RunPlan {
        run_id: run_id.to_owned(),
        dry_run: input.dry_run.unwrap_or(false),
        waves,
        tag_filters,
        sns_topic_arn,
        bedrock,
        wave_pause_seconds,
        abort_on_issues: input.abort_on_issues.unwrap_or(defaults.abort_on_issues),
        snapshot_id: snapshot_id(run_id),
        change_calendars,
        freeze_wait_seconds,
        error_budget,
        max_concurrent_batches,
        ignore_gates,
        started_by,
    })
}

/// `startedBy`, and `ignoreGates` (which must say who overrides the gates).
fn gate_override(input: &RunInput) -> Result<(bool, Option<String>)> {
    let started_by = match &input.started_by {
        None => None,
        Some(who) => {
            let who = who.trim();
            if who.is_empty() || who.len() > 256 || who.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "startedBy",
                    "must be 1-256 printable characters (an IAM ARN or a person's name)",
                ));
            }
            Some(who.to_owned())
        }
    };
    let ignore_gates = input.ignore_gates.unwrap_or(false);
    if ignore_gates && started_by.is_none() {
        return Err(Error::invalid(
            "startedBy",
            "is required with ignoreGates: who overrides the wave gates is kept in the run's record (ec2patch start fills it with your IAM identity)",
        ));
    }
    Ok((ignore_gates, started_by))
}

/// A wave's gate from `after` and `gateWindowHours` at `at` (a field path prefix).
fn wave_gate(at: &str, name: &str, after: Option<&str>, window_hours: Option<i64>) -> Result<Option<WaveGate>> {
    let field = |leaf: &str| if at.is_empty() { leaf.to_owned() } else { format!("{at}.{leaf}") };
    let Some(after) = after else {
        if window_hours.is_some() {
            return Err(Error::invalid(
                field("gateWindowHours"),
                "needs `after`: the wave whose runs it looks back at",
            ));
        }
        return Ok(None);
    };
    let after = validate_name(&field("after"), after)?;
    if after == name {
        return Err(Error::invalid(field("after"), format!("wave {name} cannot follow itself")));
    }
    let max = i64::from(crate::wave_gate::MAX_WINDOW_HOURS);
    let window_hours = match window_hours {
        None => crate::wave_gate::DEFAULT_WINDOW_HOURS,
        Some(hours) if (1..=max).contains(&hours) => u32::try_from(hours).unwrap_or(crate::wave_gate::MAX_WINDOW_HOURS),
        Some(hours) => {
            return Err(Error::invalid(
                field("gateWindowHours"),
                format!("must be a whole number of hours from 1 to {max} (366 days), got {hours}"),
            ));
        }
    };
    Ok(Some(WaveGate { after, window_hours }))
}

/// The hub's calendars, then the input's (an input adds calendars, it cannot drop the hub's).
fn change_calendars(input: Option<Vec<String>>, hub: &[String]) -> Result<Vec<String>> {
    let mut calendars: Vec<String> = hub.to_vec();
    for (index, name) in input.unwrap_or_default().into_iter().enumerate() {
        let field = format!("changeCalendars[{index}]");
        let name = validate_calendar_name(&field, name)?;
        if !calendars.contains(&name) {
            calendars.push(name);
        }
    }
    if calendars.len() > MAX_CHANGE_CALENDARS {
        return Err(Error::invalid(
            "changeCalendars",
            format!("at most {MAX_CHANGE_CALENDARS} calendars (the hub's and the input's), got {}", calendars.len()),
        ));
    }
    Ok(calendars)
}

/// An SSM document name (3-128 of letters, digits, `_`, `-`, `.`) or a document ARN.
fn validate_calendar_name(field: &str, value: String) -> Result<String> {
    let name_ok = |name: &str| {
        (3..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    };
    let ok = match value.strip_prefix("arn:") {
        None => name_ok(&value),
        Some(rest) => {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            parts.len() == 5
                && parts[0].starts_with("aws")
                && parts[1] == "ssm"
                && !parts[2].is_empty()
                && AccountId::parse(parts[3]).is_some()
                && parts[4].strip_prefix("document/").is_some_and(name_ok)
        }
    };
    if ok {
        Ok(value)
    } else {
        Err(Error::invalid(
            field,
            format!(
                "must be a Change Calendar name (3-128 letters, digits, '_', '-', '.') or its SSM document ARN, got {value:?}"
            ),
        ))
    }
}

/// The run input's `scheduledTime`, normalised to `YYYY-MM-DDThh:mm:ssZ` (so `...:00Z` and
/// `...:00.000Z` key the same lock), or `None` for a run started by hand. Call after
/// [`plan_run`] accepted the input.
pub fn scheduled_time(input: &Value) -> Result<Option<String>> {
    match input.get("scheduledTime") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(time)) => normalize_scheduled_time(time).map(Some),
        Some(other) => Err(Error::invalid("scheduledTime", format!("must be an ISO 8601 time string, got {other}"))),
    }
}

fn normalize_scheduled_time(time: &str) -> Result<String> {
    use aws_smithy_types::date_time::{DateTime, Format};
    let parsed = DateTime::from_str(time.trim(), Format::DateTime).map_err(|_| {
        Error::invalid(
            "scheduledTime",
            format!("must be an ISO 8601 UTC time such as 2026-11-29T03:00:00Z, got {time:?}"),
        )
    })?;
    DateTime::from_secs(parsed.secs())
        .fmt(Format::DateTime)
        .map_err(|e| Error::invalid("scheduledTime", format!("is out of range: {e}")))
}

/// A UUID-shaped id derived from the run id (deterministic, so a retried plan is identical).
fn snapshot_id(run_id: &str) -> String {
    let hex = crate::hash::fingerprint_128(run_id.as_bytes());
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// serde reports unknown and missing fields at the enclosing object; name the field itself.
fn serde_error(path: &str, message: &str) -> Error {
    // serde_path_to_error already ends the path with an unknown field's name, but stops at the
    // enclosing object for a missing one.
    let join = |name: &str| {
        if path == "." || path.is_empty() {
            name.to_owned()
        } else if path == name || path.ends_with(&format!(".{name}")) {
            path.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let quoted = |prefix: &str| message.strip_prefix(prefix).and_then(|rest| rest.split('`').next()).map(str::to_owned);
    if let Some(name) = quoted("unknown field `") {
        // The path already ends with the whole name; the message's quoting cannot be trusted
        // for it, because a name containing a backtick (``a`b``) would be cut short there.
        let field = if path == "." || path.is_empty() { name } else { path.to_owned() };
        return Error::invalid(field, "is not a known field (check its spelling; see docs/api.md)");
    }
    if let Some(name) = quoted("missing field `") {
        return Error::invalid(join(&name), "is required");
    }
    let field = if path == "." { "$".to_owned() } else { path.to_owned() };
    let reason = if message.starts_with("data did not match any variant") {
        "must be a string or a list of strings".to_owned()
    } else {
        // serde's own wording, e.g. "invalid type: string \"yes\", expected a boolean".
        format!("is malformed: {}", message.split(" at line ").next().unwrap_or(message))
    };
    Error::invalid(field, reason)
}

fn validate_run_id(run_id: &str) -> Result<()> {
    let ok = !run_id.is_empty()
        && run_id.len() <= 80
        && run_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("runId", format!("must be 1-80 letters, digits, '-' or '_', got {run_id:?}")))
    }
}

fn waves(input: &RunInput, defaults: &RunDefaults) -> Result<Vec<Wave>> {
    if input.account_waves.is_some() {
        for (field, present) in [
            ("accounts", input.accounts.is_some()),
            ("organizationalUnits", input.organizational_units.is_some()),
            ("excludeAccounts", input.exclude_accounts.is_some()),
            ("waveId", input.wave_id.is_some()),
            ("snapshot", input.snapshot.is_some()),
        ] {
            if present {
                return Err(Error::invalid(
                    field,
                    "cannot be combined with `accountWaves` (put accounts inside each wave)",
                ));
            }
        }
    }
    let default_regions = || -> Vec<(String, String)> {
        match &input.regions {
            Some(regions) => regions.iter().enumerate().map(|(i, r)| (format!("regions[{i}]"), r.clone())).collect(),
            None => defaults.regions.iter().map(|r| ("regions".to_owned(), r.clone())).collect(),
        }
    };
    let mut waves = Vec::new();
    if let Some(account_waves) = &input.account_waves {
        if account_waves.is_empty() {
            return Err(Error::invalid("accountWaves", "must list at least one wave"));
        }
        if account_waves.len() > MAX_WAVES {
            return Err(Error::invalid(
                "accountWaves",
                format!("must list at most {MAX_WAVES} waves, got {}", account_waves.len()),
            ));
        }
        for (index, wave) in account_waves.iter().enumerate() {
            let at = format!("accountWaves[{index}]");
            let name = match &wave.name {
                Some(name) => validate_name(&format!("{at}.name"), name)?,
                None => format!("wave-{}", index + 1),
            };
            let regions = match &wave.regions {
                Some(regions) => {
                    regions.iter().enumerate().map(|(i, r)| (format!("{at}.regions[{i}]"), r.clone())).collect()
                }
                None => default_regions(),
            };
            let targeting = Targeting {
                accounts: &wave.accounts,
                organizational_units: wave.organizational_units.as_deref().unwrap_or_default(),
                exclude_accounts: wave.exclude_accounts.as_deref().unwrap_or_default(),
            };
            let mut planned = wave_from(&at, name, &targeting, &regions, defaults)?;
            planned.gate = wave_gate(&at, &planned.name, wave.after.as_deref(), wave.gate_window_hours)?;
            planned.snapshot = wave.snapshot.unwrap_or(false);
            waves.push(planned);
        }
        // Waves of one run already go in order (abortOnIssues decides between them); a gate
        // looks at *earlier runs*, which a wave of this run has not finished yet.
        for (index, wave) in waves.iter().enumerate() {
            if let Some(gate) = &wave.gate
                && waves.iter().any(|other| other.name == gate.after)
            {
                return Err(Error::invalid(
                    format!("accountWaves[{index}].after"),
                    format!(
                        "names wave {} of this same run; waves of one run already go in order (abortOnIssues): `after` names the wave of another schedule",
                        gate.after
                    ),
                ));
            }
        }
    } else if input.accounts.is_some() || input.organizational_units.is_some() {
        let name = match &input.wave_id {
            Some(id) => validate_name("waveId", id)?,
            None => "manual".to_owned(),
        };
        let targeting = Targeting {
            accounts: input.accounts.as_deref().unwrap_or_default(),
            organizational_units: input.organizational_units.as_deref().unwrap_or_default(),
            exclude_accounts: input.exclude_accounts.as_deref().unwrap_or_default(),
        };
        let mut planned = wave_from("", name, &targeting, &default_regions(), defaults)?;
        planned.snapshot = input.snapshot.unwrap_or(false);
        waves.push(planned);
    } else if let Some(id) = &input.wave_id {
        let configured = defaults.waves.iter().find(|wave| &wave.name == id).ok_or_else(|| {
            let known: Vec<&str> = defaults.waves.iter().map(|w| w.name.as_str()).collect();
            Error::invalid(
                "waveId",
                format!("names no wave configured on the hub (known: {known:?}) and no `accounts` were given"),
            )
        })?;
        let regions = match &input.regions {
            Some(_) => default_regions(),
            None => configured.regions.iter().map(|r| ("regions".to_owned(), r.clone())).collect(),
        };
        if input.exclude_accounts.is_some() {
            return Err(Error::invalid(
                "excludeAccounts",
                "needs `accounts` or `organizationalUnits` in the input (a configured wave keeps its own excludeAccounts)",
            ));
        }
        let targeting = Targeting {
            accounts: &configured.accounts,
            organizational_units: &configured.organizational_units,
            exclude_accounts: &configured.exclude_accounts,
        };
        let mut planned = wave_from("", configured.name.clone(), &targeting, &regions, defaults)?;
        planned.gate =
            wave_gate("", &planned.name, configured.after.as_deref(), configured.gate_window_hours.map(i64::from))?;
        // An explicit `snapshot` in the input wins for this run (kept in the plan and report).
        planned.snapshot = input.snapshot.unwrap_or(configured.snapshot);
        waves.push(planned);
    } else {
        return Err(Error::invalid(
            "accountWaves",
            "is required (or `accounts`, `organizationalUnits`, or a `waveId` configured on the hub)",
        ));
    }
    check_one_wave_per_target(&waves)?;
    Ok(waves)
}

/// One account x region in two waves would be patched twice: refused, naming the later wave.
/// PlanRun checks again once the OUs are resolved.
pub fn check_one_wave_per_target(waves: &[Wave]) -> Result<()> {
    let mut seen: HashMap<(AccountId, Region), usize> = HashMap::new();
    for (index, wave) in waves.iter().enumerate() {
        for target in wave.targets() {
            // Targets within one wave are distinct (accounts and regions are), so a hit is an
            // earlier wave.
            if let Some(first) = seen.insert((target.account.clone(), target.region.clone()), index) {
                return Err(Error::invalid(
                    format!("accountWaves[{index}].accounts"),
                    format!(
                        "{target} is already in wave {} ({}); a target may be patched by one wave only",
                        first + 1,
                        waves[first].name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Which accounts a wave names: listed ones, OUs to resolve, and exclusions.
struct Targeting<'a> {
    accounts: &'a [String],
    organizational_units: &'a [String],
    exclude_accounts: &'a [String],
}

/// OUs one wave may name (each costs a few Organizations calls at PlanRun).
pub const MAX_ORGANIZATIONAL_UNITS: usize = 50;

/// An OU id (`ou-` + root part + `-` + OU part) or a root id (`r-...`), as Organizations
/// writes them.
pub fn is_organizational_unit_id(id: &str) -> bool {
    let part = |p: &str, min: usize| {
        (min..=32).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if let Some(rest) = id.strip_prefix("ou-") {
        rest.split_once('-').is_some_and(|(root, ou)| part(root, 4) && part(ou, 8))
    } else if let Some(root) = id.strip_prefix("r-") {
        part(root, 4)
    } else {
        false
    }
}

fn wave_from(
    at: &str,
    name: String,
    targeting: &Targeting<'_>,
    regions: &[(String, String)],
    defaults: &RunDefaults,
) -> Result<Wave> {
    let field = |name: &str| if at.is_empty() { name.to_owned() } else { format!("{at}.{name}") };
    let accounts = targeting.accounts;
    let ous = targeting.organizational_units;
    if accounts.is_empty() && ous.is_empty() {
        return Err(Error::invalid(
            field("accounts"),
            "must list at least one account (or name `organizationalUnits` to patch their accounts)",
        ));
    }
    if ous.len() > MAX_ORGANIZATIONAL_UNITS {
        return Err(Error::invalid(
            field("organizationalUnits"),
            format!("must list at most {MAX_ORGANIZATIONAL_UNITS} OUs, got {}", ous.len()),
        ));
    }
    let mut organizational_units: Vec<String> = Vec::with_capacity(ous.len());
    for (i, ou) in ous.iter().enumerate() {
        let path = field(&format!("organizationalUnits[{i}]"));
        if !is_organizational_unit_id(ou) {
            return Err(Error::invalid(
                path,
                format!("must be an OU id (ou-xxxx-xxxxxxxx) or a root id (r-xxxx), got {ou:?}"),
            ));
        }
        if organizational_units.contains(ou) {
            return Err(Error::invalid(path, format!("repeats {ou}")));
        }
        organizational_units.push(ou.clone());
    }
    let mut exclude_accounts: Vec<AccountId> = Vec::with_capacity(targeting.exclude_accounts.len());
    for (i, account) in targeting.exclude_accounts.iter().enumerate() {
        let path = field(&format!("excludeAccounts[{i}]"));
        let id = AccountId::parse(account).ok_or_else(|| {
            Error::invalid(path.clone(), format!("must be a 12-digit AWS account id, got {account:?}"))
        })?;
        if accounts.contains(account) {
            return Err(Error::invalid(path, format!("{account} is also listed in accounts: list it in one place")));
        }
        exclude_accounts.push(id);
    }
    let mut parsed: Vec<AccountId> = Vec::with_capacity(accounts.len());
    for (i, account) in accounts.iter().enumerate() {
        let id = AccountId::parse(account).ok_or_else(|| {
            Error::invalid(
                field(&format!("accounts[{i}]")),
                format!("must be a 12-digit AWS account id, got {account:?}"),
            )
        })?;
        if let Some(first) = parsed.iter().position(|seen| seen == &id) {
            return Err(Error::invalid(
                field(&format!("accounts[{i}]")),
                format!("repeats accounts[{first}] ({account})"),
            ));
        }
        parsed.push(id);
    }
    if regions.is_empty() {
        return Err(Error::invalid(field("regions"), "must list at least one region"));
    }
    let mut parsed_regions: Vec<Region> = Vec::with_capacity(regions.len());
    for (path, region) in regions {
        if !regions::is_known(region, &defaults.extra_regions) {
            return Err(Error::invalid(
                path.clone(),
                format!(
                    "{region:?} is not a known AWS region (new regions can be allowed with EC2PATCH_EXTRA_REGIONS)"
                ),
            ));
        }
        let region = Region::new_unchecked(region.clone());
        if parsed_regions.contains(&region) {
            return Err(Error::invalid(path.clone(), format!("repeats region {region}")));
        }
        parsed_regions.push(region);
    }
    let mut wave = Wave::new(name, parsed, parsed_regions);
    wave.organizational_units = organizational_units;
    wave.exclude_accounts = exclude_accounts;
    Ok(wave)
}

fn tag_filters(input: &RunInput, defaults: &RunDefaults) -> Result<Vec<TagFilter>> {
    let filters: Vec<(String, String, Vec<String>)> = match (&input.tag_filters, &input.ec2) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid("ec2", "cannot be combined with `tagFilters`; use one of them"));
        }
        (Some(map), None) => map
            .iter()
            .map(|(key, values)| {
                let values = match values {
                    TagValues::One(value) => vec![value.clone()],
                    TagValues::Many(values) => values.clone(),
                };
                (format!("tagFilters.{key}"), key.clone(), values)
            })
            .collect(),
        (None, Some(ec2)) => vec![("ec2.tagKey".to_owned(), ec2.tag_key.clone(), vec![ec2.tag_value.clone()])],
        (None, None) => vec![("tagFilters".to_owned(), defaults.tag_key.clone(), vec![defaults.tag_value.clone()])],
    };
    // Without a filter a run would patch every running instance of every account: refuse.
    if filters.is_empty() {
        return Err(Error::invalid(
            "tagFilters",
            "must contain at least one tag (an empty filter would match every instance)",
        ));
    }
    if filters.len() > MAX_TAG_FILTERS {
        return Err(Error::invalid("tagFilters", format!("may contain at most {MAX_TAG_FILTERS} tags")));
    }
    filters
        .into_iter()
        .map(|(path, key, values)| {
            if key.is_empty() || key.chars().count() > 128 {
                return Err(Error::invalid(path, "tag key must be 1-128 characters"));
            }
            if key.starts_with("aws:") {
                return Err(Error::invalid(path, "tag keys starting with `aws:` are reserved by AWS"));
            }
            if values.is_empty() {
                return Err(Error::invalid(path, "must list at least one tag value"));
            }
            if let Some(value) = values.iter().find(|v| v.is_empty() || v.chars().count() > 256) {
                return Err(Error::invalid(path, format!("tag value {value:?} must be 1-256 characters")));
            }
            Ok(TagFilter { key, values })
        })
        .collect()
}

fn validate_name(field: &str, name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(Error::invalid(field, format!("must be 1-64 letters, digits, '-', '_' or '.', got {name:?}")))
    }
}

fn validate_identifier(field: &str, value: String) -> Result<String> {
    let ok = !value.is_empty()
        && value.len() <= 100
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(value)
    } else {
        Err(Error::invalid(field, format!("must be 1-100 letters, digits, '_' or '-', got {value:?}")))
    }
}

fn validate_topic_arn(arn: String) -> Result<String> {
    let parts: Vec<&str> = arn.split(':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && !parts[3].is_empty()
        && AccountId::parse(parts[4]).is_some()
        && !parts[5].is_empty();
    if ok {
        Ok(arn)
    } else {
        Err(Error::invalid(
            "snsTopicArn",
            format!("must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>), got {arn:?}"),
        ))
    }
}
