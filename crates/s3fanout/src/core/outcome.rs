//! What happened to each object at each target, and why a request failed.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::change::Change;

/// Whether failed work may succeed later, needs a fix first, or simply ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The same request may succeed later without anyone changing anything (throttling, 5xx,
    /// timeouts, connection resets).
    Retryable,
    /// Someone must act first (permissions, a missing bucket, a limit S3 enforces).
    Permanent,
    /// Not done because the invocation's deadline came first; the next delivery continues.
    Deferred,
    /// Not tried: the target was seen unavailable and its breaker holds work until a probe
    /// finds it answering again; delivered again later, for that target alone.
    Held,
}

/// A request (or a whole step) that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// How to treat it.
    pub kind: FailureKind,
    /// The S3 error code (`SlowDown`, `AccessDenied`, `PreconditionFailed`, ...), when S3 sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The HTTP status, when a response arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What was attempted and what went wrong, for people.
    #[serde(rename = "error")]
    pub message: String,
}

impl Failure {
    /// A failure without an S3 response behind it.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            code: None,
            status: None,
            message: message.into(),
        }
    }

    /// Work not tried because `bucket`'s breaker is open.
    pub fn held(bucket: &str) -> Self {
        Self::new(
            FailureKind::Held,
            format!("s3://{bucket}: not tried, the target was seen unavailable; held until it answers again"),
        )
    }

    /// A permanent failure (configuration, limits).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Permanent, message)
    }

    /// A failure S3 answered with a status and an error code.
    pub fn from_response(status: Option<u16>, code: Option<&str>, message: String) -> Self {
        let kind = if is_retryable(status, code) {
            FailureKind::Retryable
        } else {
            FailureKind::Permanent
        };
        Failure {
            kind,
            code: code.map(str::to_string),
            status,
            message,
        }
    }

    /// Whether the work may be tried again without a fix (retryable or deferred).
    pub fn is_transient(&self) -> bool {
        self.kind != FailureKind::Permanent
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

    /// Whether S3 answered that a multipart upload does not exist (any more).
    pub fn is_missing_upload(&self) -> bool {
        self.code.as_deref() == Some("NoSuchUpload")
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Permanent errors need someone to act (permissions, missing bucket, bad request); the rest are
/// transient by S3's own documentation (throttling, internal errors, request timeouts).
pub fn is_retryable(status: Option<u16>, code: Option<&str>) -> bool {
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
            | "TokenRefreshRequired"
            | "ConditionalRequestConflict",
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
            | "EntityTooSmall"
            | "MetadataTooLarge"
            | "InvalidTag"
            | "MethodNotAllowed"
            | "NotImplemented"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch",
        ) => false,
        _ => matches!(status, Some(408 | 429) | Some(500..=599) | None),
    }
}

/// Why a change finished without any write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoreReason {
    /// A delete while `REPLICATE_DELETES` is false.
    DeletesNotPropagated,
}

impl IgnoreReason {
    /// For people.
    pub fn describe(self) -> &'static str {
        match self {
            IgnoreReason::DeletesNotPropagated => {
                "deletes are not propagated (REPLICATE_DELETES is false)"
            }
        }
    }
}

/// The result of replicating one change to one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The replica was written.
    Copied,
    /// The replica already held this exact source content; nothing was written.
    UpToDate,
    /// The replica was deleted (or was already absent).
    Deleted,
    /// The replica held the source's content; its tags were set to the source's.
    TagsUpdated,
    /// Finished: the source no longer has the content the event announced; the event for the
    /// newer content replicates it.
    SourceChanged,
    /// Finished: the source object no longer exists; its delete event covers it.
    SourceGone,
    /// Finished: a delete was announced but the source object exists again and the replica
    /// already holds it.
    SourceExists,
    /// Finished: the object is itself a replica written by this tool; copying it would loop.
    IsReplica,
    /// Finished without action, for the reason given.
    Ignored {
        /// Why nothing was done.
        reason: IgnoreReason,
    },
    /// Verify or dry run: the replica lacks the object (a sync would copy it).
    Missing,
    /// Verify or dry run: the replica differs from the source (a sync would copy it).
    Different,
    /// Verify or dry run: the replica holds an object the source does not have.
    Extraneous,
    /// Verify: nothing can prove that the replica holds the source's bytes, nor that it does
    /// not: no full-object checksum on one side (an object written before S3 stored one by
    /// default, a composite checksum), and ETags that cannot tell (SSE-KMS, another part
    /// layout). A sync leaves it, trusting the provenance it recorded.
    Unverifiable,
    /// Not copied yet: the source is archived and cannot be read until restored; the
    /// restore's `ObjectRestore:Completed` event replicates it. Not a failure: retrying
    /// before the restore cannot succeed.
    AwaitingRestore,
    /// Not done; reported so that the event is delivered again (unless permanent).
    Failed(Failure),
}

impl Outcome {
    /// Whether this outcome must make the event be delivered again.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }

    /// The failure, when this outcome is one.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Outcome::Failed(failure) => Some(failure),
            _ => None,
        }
    }

    /// A short name for logs and summaries.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Copied => "copied",
            Outcome::UpToDate => "up_to_date",
            Outcome::Deleted => "deleted",
            Outcome::TagsUpdated => "tags_updated",
            Outcome::SourceChanged => "source_changed",
            Outcome::SourceGone => "source_gone",
            Outcome::SourceExists => "source_exists",
            Outcome::IsReplica => "is_replica",
            Outcome::Ignored { .. } => "ignored",
            Outcome::Missing => "missing",
            Outcome::Different => "different",
            Outcome::Extraneous => "extraneous",
            Outcome::Unverifiable => "unverifiable",
            Outcome::AwaitingRestore => "awaiting_restore",
            Outcome::Failed(failure) if failure.kind == FailureKind::Deferred => "deferred",
            Outcome::Failed(failure) if failure.kind == FailureKind::Held => "held",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// One change at one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// Target bucket.
    pub bucket: String,
    /// Key written or deleted in the target bucket.
    pub key: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Time spent on this target.
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    /// Bytes of source content written to this target: the object's size when it was copied,
    /// 0 otherwise.
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes: u64,
    /// When the outcome was reached (wall clock): the end of the replication latency, whose
    /// start is the change's event time.
    #[serde(skip)]
    pub finished: SystemTime,
}

/// One change at every target.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeReport {
    /// The change as the event announced it.
    pub change: Change,
    /// One report per configured target.
    pub targets: Vec<TargetReport>,
}

impl ChangeReport {
    /// Whether any target failed, so that the change must be delivered again.
    pub fn failed(&self) -> bool {
        self.targets.iter().any(|t| t.outcome.is_failure())
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
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
        assert!(!is_retryable(Some(400), Some("MetadataTooLarge")));
        assert!(!is_retryable(Some(403), None));
        assert!(is_retryable(None, None));
    }

    #[test]
    fn failures_serialise_with_kind_and_code() {
        let failed = Outcome::Failed(Failure::from_response(
            Some(503),
            Some("SlowDown"),
            "CopyObject s3://b/k: SlowDown".into(),
        ));
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["outcome"], "failed");
        assert_eq!(json["kind"], "retryable");
        assert_eq!(json["code"], "SlowDown");
        assert_eq!(json["status"], 503);
        assert_eq!(json["error"], "CopyObject s3://b/k: SlowDown");
        let deferred = Outcome::Failed(Failure::new(FailureKind::Deferred, "later"));
        assert_eq!(deferred.name(), "deferred");
    }
}
