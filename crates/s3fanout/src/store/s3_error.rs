//! Turns SDK errors into [`Failure`]s: S3's status and code, a message worth logging, and
//! whether trying again may help.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response;

use crate::core::outcome::{Failure, FailureKind};

/// A failed `ListObjectsV2` of `bucket` under `prefix`, naming a missing bucket plainly.
pub(crate) fn list_failure<E>(err: &SdkError<E, Response>, bucket: &str, prefix: &str) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut f = failure(err, "ListObjectsV2", &format!("s3://{bucket}/{prefix}"));
    if f.code.as_deref() == Some("NoSuchBucket") {
        f.message = format!("bucket {bucket:?} does not exist");
    }
    f
}

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
    let region_hint = err
        .raw_response()
        .is_some_and(|r| r.headers().get("x-amz-bucket-region").is_some());
    if needs_customer_key(operation, status, code, err.message(), region_hint) {
        failure.kind = FailureKind::Permanent;
        let answer = match (code, err.message()) {
            (Some(code), Some(message)) => format!("{code}{status_text}: {message}"),
            _ => format!("HTTP {} with no details", status.unwrap_or(400)),
        };
        // A copy's location is its destination: the key it lacks is the source's.
        let object = match operation {
            "CopyObject" | "UploadPartCopy" => "the source object",
            _ => "the object",
        };
        failure.message = format!(
            "{operation} {location}: {object} is encrypted with a customer-provided key (SSE-C), which replication cannot copy without the key (S3 answered {answer})"
        );
        return failure;
    }
    if operation == "UploadPartCopy" && range_refused(status, code, err.message()) {
        // Every part's range is computed from the size of the version the copy is pinned to
        // (its ETag is sent as `x-amz-copy-source-if-match`), so the source can refuse it only
        // when it is another, smaller object now. S3 checks the range before the ETag: such a
        // source answers a range error, not the 412 an overwrite of the same size gets. Read
        // as that 412 (the source changed), the copy starts over from the source as it is now,
        // where a range error would fail the replica for good.
        failure.code = Some("PreconditionFailed".into());
        failure.message = format!(
            "{operation} {location}: the source is no longer the version the copy is pinned to (S3 refused the part's range: {}{status_text}: {detail})",
            code.unwrap_or("error")
        );
        return failure;
    }
    failure.kind = match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            FailureKind::Retryable
        }
        SdkError::ConstructionFailure(_) => FailureKind::Permanent,
        _ => failure.kind,
    };
    failure
}

/// Whether S3 refused to read an object encrypted with a customer-provided key (SSE-C)
/// because the request did not carry the key. HeadObject answers a bare 400 (no body, so no
/// code); a HEAD signed for another region is a 400 too, but names the bucket's region in
/// `x-amz-bucket-region`. CopyObject, UploadPartCopy and GetObject answer 400 InvalidRequest
/// "The object was stored using a form of Server Side Encryption. The correct parameters must
/// be provided to retrieve the object."
fn needs_customer_key(
    operation: &str,
    status: Option<u16>,
    code: Option<&str>,
    message: Option<&str>,
    region_hint: bool,
) -> bool {
    if status != Some(400) {
        return false;
    }
    match operation {
        "HeadObject" => matches!(code, None | Some("BadRequest")) && !region_hint,
        _ => {
            code == Some("InvalidRequest")
                && message.is_some_and(|m| {
                    m.to_ascii_lowercase()
                        .contains("stored using a form of server side encryption")
                })
        }
    }
}

/// Whether S3 refused an UploadPartCopy's `x-amz-copy-source-range` as beyond the source:
/// 400 InvalidArgument "Range specified is not valid for source object of size: N" for a range
/// that ends past the source's end, InvalidRequest "The specified copy range is invalid for the
/// source object size" for one that starts past it, or InvalidRange (416, "The requested range
/// cannot be satisfied", S3 error code list). A malformed range ("must be of the form
/// bytes=first-last") is not one.
fn range_refused(status: Option<u16>, code: Option<&str>, message: Option<&str>) -> bool {
    if status == Some(416) || code == Some("InvalidRange") {
        return true;
    }
    let message = message.unwrap_or_default().to_ascii_lowercase();
    status == Some(400)
        && matches!(code, Some("InvalidArgument" | "InvalidRequest"))
        && message.contains("range")
        && message.contains("source object")
}

#[cfg(test)]
mod tests {
    use super::{needs_customer_key, range_refused};

    #[test]
    fn part_ranges_refused_as_beyond_the_source_are_told_apart() {
        let beyond = Some("Range specified is not valid for source object of size: 6291456");
        assert!(range_refused(Some(400), Some("InvalidArgument"), beyond));
        assert!(range_refused(
            Some(400),
            Some("InvalidRequest"),
            Some("The specified copy range is invalid for the source object size")
        ));
        assert!(range_refused(Some(416), Some("InvalidRange"), None));
        assert!(range_refused(Some(416), None, None));
        // A malformed range, an SSE-C refusal, another argument: not a source that changed.
        assert!(!range_refused(
            Some(400),
            Some("InvalidArgument"),
            Some("The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy")
        ));
        assert!(!range_refused(
            Some(400),
            Some("InvalidRequest"),
            Some("The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.")
        ));
        assert!(!range_refused(
            Some(400),
            Some("InvalidArgument"),
            Some("Part number must be an integer between 1 and 10000, inclusive")
        ));
        assert!(!range_refused(Some(403), Some("AccessDenied"), beyond));
    }

    #[test]
    fn customer_key_refusals_are_told_apart() {
        let stored = Some("The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.");
        assert!(needs_customer_key(
            "HeadObject",
            Some(400),
            None,
            None,
            false
        ));
        // The same bare 400, with the bucket's region named: a request signed for another one.
        assert!(!needs_customer_key(
            "HeadObject",
            Some(400),
            None,
            None,
            true
        ));
        assert!(!needs_customer_key(
            "HeadObject",
            Some(403),
            None,
            None,
            false
        ));
        assert!(needs_customer_key(
            "CopyObject",
            Some(400),
            Some("InvalidRequest"),
            stored,
            false
        ));
        assert!(needs_customer_key(
            "UploadPartCopy",
            Some(400),
            Some("InvalidRequest"),
            stored,
            false
        ));
        assert!(!needs_customer_key(
            "CopyObject",
            Some(400),
            Some("InvalidRequest"),
            Some("The specified copy source is larger than the maximum allowable size"),
            false
        ));
        assert!(!needs_customer_key(
            "CopyObject",
            Some(400),
            Some("InvalidArgument"),
            stored,
            false
        ));
    }
}
