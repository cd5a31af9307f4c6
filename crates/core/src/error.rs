//! The one error type of ec2patch functions.
//!
//! Each variant has a stable name ([`Error::error_type`]) that becomes the Lambda error's
//! `errorType`, which the state machine keys `Retry` and `Catch` on. Renaming one is a breaking
//! change to `statemachine/orchestrator.asl.json`.

use lambda_runtime::Diagnostic;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The run input (or a handler's request) is malformed; `field` is a path such as
    /// `accountWaves[0].accounts[1]`.
    #[error("invalid input: `{field}` {reason}")]
    InvalidInput { field: String, reason: String },

    /// The spoke role could not be assumed (missing role, trust policy, ExternalId, SCP).
    #[error("cannot assume {role_arn} (account {account}): {message}")]
    AssumeRoleFailed { account: String, role_arn: String, message: String },

    /// AWS throttled us after the SDK's own retries; worth retrying later with back-off.
    #[error("throttled on {operation} ({context}): {message}")]
    Throttled { operation: String, context: String, message: String },

    /// AWS could not be reached or answered 5xx after the SDK's retries; transient.
    #[error("AWS unavailable on {operation} ({context}): {message}")]
    AwsUnavailable { operation: String, context: String, message: String },

    /// AWS refused the call for a reason retrying will not fix (access denied, validation, ...).
    #[error("{operation} failed ({context}): {code}: {message}")]
    AwsCallFailed { operation: String, context: String, code: String, message: String },

    /// Run state could not be written or read completely: nothing may be silently lost.
    #[error("state store: {0}")]
    StateStoreFailed(String),

    /// The run or record a request points at does not exist.
    #[error("not found: {0}")]
    NotFound(String),

    /// The hub's configuration (Lambda environment) is missing or malformed.
    #[error("configuration: {0}")]
    ConfigError(String),

    /// Another run holds the run lock of the same waves (and scheduled time): this run must not
    /// patch. Also raised when a run finds it lost its lock (its lease expired and a later run
    /// took over), so two runs never send patch commands for the same waves at once.
    #[error("duplicate run: {lock} is held by run {holder}: {reason}")]
    DuplicateRun { lock: String, holder: String, reason: String },

    #[error("change freeze: {calendars} CLOSED: {reason}")]
    ChangeFreeze { calendars: String, reason: String },

    /// The wave this wave follows did not pass its latest run within the gate's window
    /// ([`crate::wave_gate`]): the run stops before inventory, whatever `abortOnIssues` says.
    #[error("wave gate closed: wave {wave} follows {after}: {reason}")]
    WaveGateClosed { wave: String, after: String, reason: String },
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput { field: field.into(), reason: reason.into() }
    }

    /// The stable name the state machine matches in `ErrorEquals`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::InvalidInput { .. } => "InvalidInput",
            Error::AssumeRoleFailed { .. } => "AssumeRoleFailed",
            Error::Throttled { .. } => "Throttled",
            Error::AwsUnavailable { .. } => "AwsUnavailable",
            Error::AwsCallFailed { .. } => "AwsCallFailed",
            Error::StateStoreFailed(_) => "StateStoreFailed",
            Error::NotFound(_) => "NotFound",
            Error::ConfigError(_) => "ConfigError",
            Error::DuplicateRun { .. } => "DuplicateRun",
            Error::ChangeFreeze { .. } => "ChangeFreeze",
            Error::WaveGateClosed { .. } => "WaveGateClosed",
        }
    }

    /// Whether a later attempt may succeed (the state machine retries exactly these).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Throttled { .. } | Error::AwsUnavailable { .. })
    }
}

impl From<Error> for Diagnostic {
    fn from(error: Error) -> Self {
        Diagnostic { error_type: error.error_type().to_owned(), error_message: error.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_carry_stable_names_and_context() {
        let error = Error::AssumeRoleFailed {
            account: "222222222222".into(),
            role_arn: "arn:aws:iam::222222222222:role/PatchExecRole".into(),
            message: "AccessDenied".into(),
        };
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "AssumeRoleFailed");
        assert!(diagnostic.error_message.contains("222222222222"), "{}", diagnostic.error_message);

        let error = Error::invalid("accountWaves[0].accounts[1]", "must be a 12-digit account id");
        assert_eq!(Diagnostic::from(error).error_type, "InvalidInput");
    }

    #[test]
    fn only_throttling_and_unavailability_are_transient() {
        let throttled =
            Error::Throttled { operation: "DescribeInstances".into(), context: String::new(), message: String::new() };
        assert!(throttled.is_transient());
        assert!(!Error::invalid("x", "y").is_transient());
        assert!(!Error::StateStoreFailed("x".into()).is_transient());
    }

    #[test]
    fn a_duplicate_run_is_named_and_says_who_holds_the_lock() {
        let error = Error::DuplicateRun {
            lock: "RUNLOCK#wave-1#0123/AT#2026-11-29T18:00:00Z".into(),
            holder: "run-a".into(),
            reason: "its lease runs until 2026-11-29T20:00:00Z".into(),
        };
        assert!(!error.is_transient(), "a retry must not turn a duplicate into a second patch run");
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "DuplicateRun");
        assert!(diagnostic.error_message.contains("run-a"), "{}", diagnostic.error_message);
    }
}
