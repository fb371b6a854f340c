//! What happened to each object at each target.

use std::time::Duration;

use serde::Serialize;

use crate::event::Change;

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
    /// Finished: the source no longer has the content the event announced; the event for the
    /// newer content replicates it.
    SourceChanged,
    /// Finished: the source object no longer exists; its delete event covers it.
    SourceGone,
    /// Finished: a delete was announced but the source object exists again; its create event
    /// covers it, and deleting the replica would lose it.
    SourceExists,
    /// Finished: the object is itself a replica written by this tool; copying it would loop.
    IsReplica,
    /// Finished without action, for the reason given (for example deletes are not propagated).
    Ignored {
        /// Why nothing was done.
        reason: String,
    },
    /// Not done; reported so that the event is delivered again.
    Failed {
        /// Whether trying again may succeed (throttling, 5xx, timeouts) or needs a fix first.
        retryable: bool,
        /// What failed, with the S3 error code and message.
        error: String,
    },
}

impl Outcome {
    /// Whether this outcome must make the event be delivered again.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }

    /// A short name for logs and summaries.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Copied => "copied",
            Outcome::UpToDate => "up_to_date",
            Outcome::Deleted => "deleted",
            Outcome::SourceChanged => "source_changed",
            Outcome::SourceGone => "source_gone",
            Outcome::SourceExists => "source_exists",
            Outcome::IsReplica => "is_replica",
            Outcome::Ignored { .. } => "ignored",
            Outcome::Failed { .. } => "failed",
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

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}
