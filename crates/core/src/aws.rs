//! Turning AWS SDK errors into [`Error`]s that say which call failed, where, and whether a retry
//! can help.

use std::error::Error as StdError;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::Error;

/// Error codes AWS services use for rate limiting.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "SlowDown",
    "BandwidthLimitExceeded",
];

pub fn is_throttling_code(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
}

/// Classifies an SDK error: throttling, unavailability (timeouts, connection failures, 5xx) or a
/// definite failure, keeping the operation and the caller's context (account, region, ids).
pub fn classify<E>(operation: &str, context: &str, error: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let status = error.raw_response().map(|response| response.status().as_u16());
    let code = error.code().map(str::to_owned);
    let message = error.message().map(str::to_owned).unwrap_or_else(|| DisplayErrorContext(&error).to_string());
    let (operation, context) = (operation.to_owned(), context.to_owned());
    match (&error, code) {
        (_, Some(code)) if is_throttling_code(&code) => Error::Throttled { operation, context, message },
        (SdkError::TimeoutError(_) | SdkError::DispatchFailure(_), _) => {
            Error::AwsUnavailable { operation, context, message }
        }
        (_, code) if status.is_some_and(|status| status >= 500) => {
            let message = match code {
                Some(code) => format!("{code}: {message}"),
                None => message,
            };
            Error::AwsUnavailable { operation, context, message }
        }
        (SdkError::ResponseError(_), None) => Error::AwsUnavailable { operation, context, message },
        (_, code) => {
            Error::AwsCallFailed { operation, context, code: code.unwrap_or_else(|| "Unknown".to_owned()), message }
        }
    }
}

/// `.aws_context("DescribeInstances", || format!("account {a} region {r}"))` on an SDK result.
pub trait AwsResultExt<T> {
    fn aws_context(self, operation: &str, context: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T, E> AwsResultExt<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    fn aws_context(self, operation: &str, context: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|error| classify(operation, &context(), error))
    }
}
