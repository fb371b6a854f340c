//! Turns SDK errors into [`Failure`]s: S3's status and code, a message worth logging, and
//! whether trying again may help.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response;

use crate::core::outcome::{Failure, FailureKind};

/// Classifies an SDK error of `operation` on `location` (`s3://bucket/key`).
pub(crate) fn failure<E>(err: &SdkError<E, Response>, operation: &str, location: &str) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code();
    let detail = match err {
        // A service error is described by S3's own message; HEAD responses carry none.
        SdkError::ServiceError(_) => err
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| "the response carries no error details".into()),
        // Timeouts and connection failures need the whole chain to be understood.
        _ => DisplayErrorContext(err).to_string(),
    };
    let status_text = status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
    let message = format!(
        "{operation} {location}: {}{status_text}: {detail}",
        code.unwrap_or("error")
    );
    let mut failure = Failure::from_response(status, code, message);
    failure.kind = match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            FailureKind::Retryable
        }
        SdkError::ConstructionFailure(_) => FailureKind::Permanent,
        _ => failure.kind,
    };
    failure
}
