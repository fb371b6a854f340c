//! Turns SDK errors into a message worth logging and a retry decision.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response;

/// An S3 request that failed, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Failure {
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// S3 error code (`NoSuchBucket`, `SlowDown`, ...), when the response had one.
    pub code: Option<String>,
    /// Whether the same request may succeed later without anyone changing anything.
    pub retryable: bool,
    /// Full description, including the SDK's error chain.
    pub message: String,
}

impl S3Failure {
    /// Classifies an SDK error of any operation.
    pub fn from_sdk<E>(err: &SdkError<E, Response>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_string);
        let retryable = match err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ConstructionFailure(_) => false,
            _ => is_retryable(status, code.as_deref()),
        };
        let message = match err {
            // A service error is described by S3's own message; HEAD responses carry none.
            SdkError::ServiceError(_) => err
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| "the response carries no error details".into()),
            // Timeouts and connection failures need the whole chain to be understood.
            _ => DisplayErrorContext(err).to_string(),
        };
        S3Failure {
            status,
            code,
            retryable,
            message,
        }
    }

    /// Whether S3 answered that the object (not the bucket) does not exist.
    pub fn is_missing_object(&self) -> bool {
        match self.code.as_deref() {
            Some("NoSuchKey") | Some("NotFound") => true,
            // HEAD responses have no body, so no code: 404 alone means the key.
            None => self.status == Some(404),
            _ => false,
        }
    }

    /// Whether a conditional request found different content than required.
    pub fn is_precondition_failed(&self) -> bool {
        self.status == Some(412) || self.code.as_deref() == Some("PreconditionFailed")
    }

    /// A one-line description naming what was attempted.
    pub fn describe(&self, operation: &str, target: &str) -> String {
        let status = self
            .status
            .map(|s| format!(" (HTTP {s})"))
            .unwrap_or_default();
        let code = self.code.as_deref().unwrap_or("error");
        format!("{operation} {target}: {code}{status}: {}", self.message)
    }
}

/// Permanent errors need someone to act (permissions, missing bucket, bad request); the rest are
/// transient by S3's own documentation (throttling, internal errors, request timeouts).
fn is_retryable(status: Option<u16>, code: Option<&str>) -> bool {
    match code {
        Some(
            "SlowDown"
            | "InternalError"
            | "ServiceUnavailable"
            | "RequestTimeout"
            | "RequestTimeTooSkewed"
            | "OperationAborted"
            | "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "ExpiredToken"
            | "TokenRefreshRequired",
        ) => true,
        Some(
            "AccessDenied"
            | "NoSuchBucket"
            | "AllAccessDisabled"
            | "InvalidBucketName"
            | "InvalidRequest"
            | "InvalidArgument"
            | "InvalidObjectState"
            | "KMS.NotFoundException"
            | "KMS.DisabledException"
            | "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "KeyTooLongError"
            | "EntityTooLarge"
            | "MethodNotAllowed"
            | "NotImplemented"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch",
        ) => false,
        _ => matches!(status, Some(408 | 429) | Some(500..=599) | None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes_and_statuses() {
        assert!(is_retryable(Some(503), Some("SlowDown")));
        assert!(is_retryable(Some(500), None));
        assert!(is_retryable(Some(400), Some("RequestTimeout")));
        assert!(!is_retryable(Some(403), Some("AccessDenied")));
        assert!(!is_retryable(Some(404), Some("NoSuchBucket")));
        assert!(!is_retryable(Some(400), Some("InvalidArgument")));
        assert!(!is_retryable(Some(403), None));
        assert!(is_retryable(None, None));
    }
}
