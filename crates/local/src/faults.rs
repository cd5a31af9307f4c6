//! Fault injection at the router: AWS misbehaving on purpose, per operation and per account.
//!
//! Emulator gaps (throttling, denied roles, slow endpoints) are created here, as documented
//! rules, never as special cases in handlers.
//!
//! Effects: an AWS error (in the service's protocol), latency, a dropped connection
//! ([`Reset`]: before the call reaches moto, or after moto applied it and before the answer
//! leaves), or a canned answer (e.g. garbage with status 200). Our Lambda functions are matched
//! as service `lambda`, operation `Invoke:<function name>`: an error with a status >= 400 is the
//! Invoke API failing without running the handler (Step Functions reports `Lambda.<code>`); an
//! error with status 200 is a function error after the handler ran (Lambda's
//! `X-Amz-Function-Error: Unhandled`, error type = the code), e.g. `Sandbox.Timedout`, a handler
//! that did its work but ran out of time.

use std::sync::Mutex;
use std::time::Duration;

use crate::calls::CallInfo;

/// An AWS error to answer with instead of forwarding the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: String,
    pub message: String,
    pub status: u16,
}

/// Where a connection is dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// The call never reaches moto: safe to retry.
    BeforeForwarding,
    /// moto applies the call, then the answer is lost: a retry repeats a call that succeeded.
    AfterForwarding,
}

/// A fixed answer instead of moto's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannedResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// One rule: which calls it matches (unset fields match anything) and what happens to them.
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub service: Option<String>,
    pub operation: Option<String>,
    pub account: Option<String>,
    pub error: Option<Fault>,
    pub latency: Option<Duration>,
    /// Chance in [0, 1] that a matching call is affected.
    pub probability: f64,
    /// Let this many matching calls through before the rule applies.
    pub skip: u64,
    /// Then affect only this many matching calls.
    pub first_n: Option<u64>,
    /// Drop the connection instead of answering.
    pub reset: Option<Reset>,
    /// Answer with this instead of forwarding.
    pub response: Option<CannedResponse>,
    /// Only Lambda invocations whose JSON payload has this top-level field with this value
    /// (e.g. one batch of a Map); calls without a payload never match such a rule.
    pub payload_field: Option<(String, serde_json::Value)>,
}

impl FaultRule {
    /// Answer matching calls with the AWS error `code` and HTTP `status`.
    pub fn error(service: &str, operation: &str, code: &str, status: u16) -> Self {
        Self {
            service: Some(service.to_owned()),
            operation: Some(operation.to_owned()).filter(|o| o != "*"),
            account: None,
            error: Some(Fault {
                code: code.to_owned(),
                message: format!("{code} (injected by the ec2patch local stack)"),
                status,
            }),
            latency: None,
            probability: 1.0,
            skip: 0,
            first_n: None,
            reset: None,
            response: None,
            payload_field: None,
        }
    }

    /// Matching calls lose their connection (no answer at all), by default before moto sees
    /// them; see [`FaultRule::after_forwarding`].
    pub fn reset(service: &str, operation: &str) -> Self {
        Self { error: None, reset: Some(Reset::BeforeForwarding), ..Self::error(service, operation, "Reset", 0) }
    }

    /// The reset happens after moto applied the call: the caller cannot know it succeeded.
    pub fn after_forwarding(mut self) -> Self {
        if self.reset.is_some() {
            self.reset = Some(Reset::AfterForwarding);
        }
        self
    }

    /// Matching calls get `body` with `status` and `content_type` instead of moto's answer.
    pub fn respond(service: &str, operation: &str, status: u16, content_type: &str, body: &[u8]) -> Self {
        Self {
            error: None,
            response: Some(CannedResponse { status, content_type: content_type.to_owned(), body: body.to_vec() }),
            ..Self::error(service, operation, "Canned", status)
        }
    }

    /// Lambda's Invoke API fails for `function` (the full function name) with `code` (e.g.
    /// `ServiceException`, status 500): the handler does not run; Step Functions sees `Lambda.<code>`.
    pub fn lambda_service_error(function: &str, code: &str, status: u16) -> Self {
        Self::error("lambda", &format!("Invoke:{function}"), code, status)
    }

    /// `function`'s handler runs (its side effects happen) but the invocation ends as Lambda ends
    /// one that ran out of time: a function error `Sandbox.Timedout`.
    pub fn lambda_timeout(function: &str) -> Self {
        let mut rule = Self::error("lambda", &format!("Invoke:{function}"), "Sandbox.Timedout", 200);
        if let Some(error) = &mut rule.error {
            error.message = "Task timed out after 3.00 seconds (injected by the ec2patch local stack)".to_owned();
        }
        rule
    }

    /// `AssumeRole` into `account` is refused, as a missing role or a wrong ExternalId would be.
    pub fn deny_assume_role(account: &str) -> Self {
        Self::error("sts", "AssumeRole", "AccessDenied", 403).for_account(account)
    }

    /// Delay every call (all services) by `latency`: a realistic network for benchmarks.
    pub fn latency(latency: Duration) -> Self {
        Self {
            service: None,
            operation: None,
            account: None,
            error: None,
            latency: Some(latency),
            probability: 1.0,
            skip: 0,
            first_n: None,
            reset: None,
            response: None,
            payload_field: None,
        }
    }

    pub fn for_account(mut self, account: &str) -> Self {
        self.account = Some(account.to_owned());
        self
    }

    /// Only Lambda invocations whose payload's `field` equals `value`, e.g.
    /// `lambda_service_error(..).when_payload("batch", json!(3))` fails one batch of a Map.
    pub fn when_payload(mut self, field: &str, value: serde_json::Value) -> Self {
        self.payload_field = Some((field.to_owned(), value));
        self
    }

    pub fn after(mut self, calls: u64) -> Self {
        self.skip = calls;
        self
    }

    pub fn first(mut self, calls: u64) -> Self {
        self.first_n = Some(calls);
        self
    }

    pub fn with_probability(mut self, probability: f64) -> Self {
        self.probability = probability.clamp(0.0, 1.0);
        self
    }

    fn matches(&self, call: &CallInfo, payload: Option<&serde_json::Value>) -> bool {
        let field = |want: &Option<String>, got: Option<&str>| want.as_deref().is_none_or(|w| Some(w) == got);
        let payload_matches =
            self.payload_field.as_ref().is_none_or(|(name, value)| payload.and_then(|p| p.get(name)) == Some(value));
        field(&self.service, Some(&call.service))
            && field(&self.operation, Some(&call.operation))
            && field(&self.account, call.account.as_deref())
            && payload_matches
    }
}

/// What happens to one call: an optional delay, then an optional error, reset or canned answer
/// (the first matching rule's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub latency: Option<Duration>,
    pub error: Option<Fault>,
    pub reset: Option<Reset>,
    pub response: Option<CannedResponse>,
}

#[derive(Debug)]
pub struct FaultPlan {
    rules: Mutex<Vec<(FaultRule, u64)>>,
    rng: Mutex<fastrand::Rng>,
}

impl Default for FaultPlan {
    fn default() -> Self {
        // Seeded: a failing fault scenario reproduces.
        Self { rules: Mutex::new(Vec::new()), rng: Mutex::new(fastrand::Rng::with_seed(0x0ec2_9a7c)) }
    }
}

impl FaultPlan {
    pub fn add(&self, rule: FaultRule) {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).push((rule, 0));
    }

    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The combined effect of every matching rule on `call` (the first error wins).
    pub fn decide(&self, call: &CallInfo) -> Option<Decision> {
        self.decide_with_payload(call, None)
    }

    /// [`FaultPlan::decide`] for a Lambda invocation with its JSON payload.
    pub fn decide_with_payload(&self, call: &CallInfo, payload: Option<&serde_json::Value>) -> Option<Decision> {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        if rules.is_empty() {
            return None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mut decision = Decision::default();
        for (rule, seen) in rules.iter_mut() {
            if !rule.matches(call, payload) {
                continue;
            }
            let index = *seen;
            *seen += 1;
            if index < rule.skip || rule.first_n.is_some_and(|n| index - rule.skip >= n) {
                continue;
            }
            if rule.probability < 1.0 && rng.f64() >= rule.probability {
                continue;
            }
            if let Some(latency) = rule.latency {
                decision.latency = Some(decision.latency.unwrap_or_default() + latency);
            }
            if decision.error.is_none() && decision.reset.is_none() && decision.response.is_none() {
                decision.error = rule.error.clone();
                decision.reset = rule.reset;
                decision.response = rule.response.clone();
            }
        }
        (decision != Decision::default()).then_some(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(service: &str, operation: &str, account: &str) -> CallInfo {
        CallInfo { service: service.into(), operation: operation.into(), account: Some(account.into()) }
    }

    #[test]
    fn rules_match_by_operation_and_account_and_count() {
        let plan = FaultPlan::default();
        plan.add(FaultRule::deny_assume_role("333333333333"));
        plan.add(FaultRule::error("ec2", "DescribeInstances", "RequestLimitExceeded", 503).first(2));
        assert!(plan.decide(&call("sts", "AssumeRole", "222222222222")).is_none());
        assert_eq!(
            plan.decide(&call("sts", "AssumeRole", "333333333333")).unwrap().error.unwrap().code,
            "AccessDenied"
        );
        assert!(plan.decide(&call("ec2", "DescribeInstances", "1")).is_some());
        assert!(plan.decide(&call("ec2", "DescribeInstances", "1")).is_some());
        assert!(plan.decide(&call("ec2", "DescribeInstances", "1")).is_none(), "only the first two");
    }

    #[test]
    fn after_lets_calls_through_first() {
        let plan = FaultPlan::default();
        plan.add(FaultRule::error("s3", "PutObject", "AccessDenied", 403).after(1).first(1));
        let put = call("s3", "PutObject", "1");
        let outcomes: Vec<bool> = (0..3).map(|_| plan.decide(&put).is_some()).collect();
        assert_eq!(outcomes, [false, true, false]);
    }

    #[test]
    fn probability_is_roughly_honoured_and_reproducible() {
        let plan = FaultPlan::default();
        plan.add(FaultRule::error("ec2", "*", "Throttling", 400).with_probability(0.3));
        let hits = (0..1000).filter(|_| plan.decide(&call("ec2", "DescribeInstances", "1")).is_some()).count();
        assert!((200..400).contains(&hits), "{hits}");
    }

    #[test]
    fn resets_and_canned_answers_are_decisions_too() {
        let plan = FaultPlan::default();
        plan.add(FaultRule::reset("dynamodb", "PutItem").after_forwarding().first(1));
        plan.add(FaultRule::respond("bedrock", "InvokeAgent", 200, "text/plain", b"garbage"));
        let put = call("dynamodb", "PutItem", "1");
        assert_eq!(plan.decide(&put).unwrap().reset, Some(Reset::AfterForwarding));
        assert!(plan.decide(&put).is_none(), "first(1)");
        let answer = plan.decide(&call("bedrock", "InvokeAgent", "1")).unwrap().response.unwrap();
        assert_eq!((answer.status, answer.body.as_slice()), (200, b"garbage".as_slice()));
        let timeout = FaultRule::lambda_timeout("ec2patch-SendSsmCommand");
        assert_eq!(timeout.operation.as_deref(), Some("Invoke:ec2patch-SendSsmCommand"));
        assert_eq!(timeout.error.unwrap().status, 200, "a function error, not an Invoke API error");
    }

    #[test]
    fn a_payload_rule_matches_only_invocations_with_that_field() {
        let plan = FaultPlan::default();
        plan.add(
            FaultRule::lambda_service_error("ec2patch-SendSsmCommand", "ServiceException", 500)
                .when_payload("batch", serde_json::json!(3)),
        );
        let invoke = call("lambda", "Invoke:ec2patch-SendSsmCommand", "1");
        let batch = |n: u64| serde_json::json!({"runId": "r", "batch": n});
        assert!(plan.decide_with_payload(&invoke, Some(&batch(2))).is_none());
        assert!(plan.decide_with_payload(&invoke, Some(&batch(3))).is_some());
        assert!(plan.decide(&invoke).is_none(), "no payload, no match");
    }

    #[test]
    fn latency_applies_to_everything() {
        let plan = FaultPlan::default();
        plan.add(FaultRule::latency(Duration::from_millis(50)));
        let decision = plan.decide(&call("ssm", "SendCommand", "1")).unwrap();
        assert_eq!(decision.latency, Some(Duration::from_millis(50)));
        assert!(decision.error.is_none());
    }
}
