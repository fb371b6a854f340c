//! What replicas answered, and the errors a read ends with.

use std::fmt;
use std::time::Duration;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// One replica entry is malformed.
    #[error("invalid replica {entry:?}: {reason}")]
    Replica {
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The list names no replica at all.
    #[error("no replica configured")]
    NoReplicas,
    /// A setting is out of range.
    #[error("invalid setting {name}: {reason}")]
    Setting {
        /// The setting.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// What one replica answered to one attempt, when it was not the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 404: the key is not there (a lagging replica, or a key nobody has).
    Missing {
        /// S3 error code, when the answer had a body.
        code: Option<String>,
    },
    /// 503 SlowDown, 429 or 408: the replica asks to be left alone for a while.
    Throttled {
        /// HTTP status.
        status: u16,
        /// S3 error code.
        code: Option<String>,
    },
    /// Any other 5xx.
    ServerError {
        /// HTTP status.
        status: u16,
        /// S3 error code.
        code: Option<String>,
    },
    /// 412 to a read pinned to an ETag: this replica holds another version of the key now.
    OtherVersion {
        /// S3 error code.
        code: Option<String>,
    },
    /// 403 `InvalidObjectState` or `ObjectNotInActiveTierError`: this replica holds the object
    /// in an archive (S3 Glacier Flexible Retrieval, Deep Archive, or an Intelligent-Tiering
    /// archive access tier), unreadable until it is restored. Another replica may hold it in a
    /// readable class, so the read moves on.
    Archived {
        /// S3 error code.
        code: String,
        /// Where the object is archived, as the answer named it (`GLACIER`,
        /// `INTELLIGENT_TIERING ARCHIVE_ACCESS`), when it did.
        storage_class: Option<String>,
    },
    /// 403, 400 or another 4xx: the caller's problem, the same at every replica.
    Rejected {
        /// HTTP status (0 when the request could not even be built).
        status: u16,
        /// S3 error code.
        code: Option<String>,
        /// The message, when there was one.
        message: Option<String>,
    },
    /// No response head within the attempt timeout.
    Timeout(Duration),
    /// The connection failed or the response was unreadable.
    Connection(String),
    /// Not tried: the replica's circuit breaker is open after repeated failures.
    CircuitOpen,
    /// Not tried: the retry budget is spent, so this request may not add load.
    BudgetExhausted,
}

/// What to do after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try the next replica.
    Failover,
    /// Stop and hand the answer to the caller.
    Return,
}

/// Whether a 404 moves the read to the next replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingPolicy {
    /// A replica may lag behind the source: ask the next one.
    #[default]
    Failover,
    /// Replicas are trusted to be current: the first 404 is the answer.
    Fail,
}

impl Answer {
    /// Failover or return, given how 404s are treated.
    pub fn disposition(&self, missing: MissingPolicy) -> Disposition {
        match self {
            Answer::Rejected { .. } => Disposition::Return,
            Answer::Missing { .. } if missing == MissingPolicy::Fail => Disposition::Return,
            _ => Disposition::Failover,
        }
    }

    /// Whether the answer says the replica (or the way to it) is unwell, as opposed to an
    /// answer about the key; it drives the circuit breaker and the failure gauges.
    pub fn is_replica_failure(&self) -> bool {
        matches!(
            self,
            Answer::Throttled { .. }
                | Answer::ServerError { .. }
                | Answer::Timeout(_)
                | Answer::Connection(_)
                | Answer::CircuitOpen
        )
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code =
            |code: &Option<String>| code.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
        match self {
            Answer::Missing { code: c } => write!(f, "404{}", code(c)),
            Answer::Archived {
                code: c,
                storage_class,
            } => match storage_class {
                Some(class) => write!(f, "403 {c} (archived in {class}: restore it to read)"),
                None => write!(f, "403 {c} (archived: restore it to read)"),
            },
            Answer::OtherVersion { code: c } => write!(f, "412{} (another version)", code(c)),
            Answer::Throttled { status, code: c } | Answer::ServerError { status, code: c } => {
                write!(f, "{status}{}", code(c))
            }
            Answer::Rejected {
                status,
                code: c,
                message,
            } => {
                if *status == 0 {
                    write!(f, "request not sent")?;
                } else {
                    write!(f, "{status}{}", code(c))?;
                }
                if let Some(message) = message {
                    write!(f, " ({message})")?;
                }
                Ok(())
            }
            Answer::Timeout(after) => write!(f, "no response within {} ms", after.as_millis()),
            Answer::Connection(detail) => write!(f, "connection failed: {detail}"),
            Answer::CircuitOpen => write!(f, "not tried: circuit open after repeated failures"),
            Answer::BudgetExhausted => write!(f, "not tried: retry budget exhausted"),
        }
    }
}

/// One replica's part in a failed read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The replica, as `bucket@region`.
    pub replica: String,
    /// What it answered.
    pub answer: Answer,
}

/// How a read ended without the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadErrorKind {
    /// No replica gave any answer about the key: every one failed or was not tried.
    AllFailed,
    /// At least one replica answered 404 and none had the object.
    NotFound,
    /// A replica refused the request (403, 400): retrying elsewhere would not help.
    Rejected,
    /// Every replica answered, and those that hold the object hold it archived (the others
    /// do not have it, or not that version): it must be restored before it can be read.
    Archived,
    /// Resuming a body pinned to an ETag: every replica answered, and none holds that version
    /// any more (412 or 404).
    VersionGone,
}

/// A read that did not return the object, naming every replica and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// Why it ended.
    pub kind: ReadErrorKind,
    /// The key asked for.
    pub key: String,
    /// Every replica, in the order tried, with its answer.
    pub attempts: Vec<Attempt>,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ReadErrorKind::AllFailed => "every replica failed",
            ReadErrorKind::NotFound => "no replica has the key",
            ReadErrorKind::Rejected => "the request was refused",
            ReadErrorKind::Archived => "every replica holding the object has it archived",
            ReadErrorKind::VersionGone => "no replica still has the version being read",
        };
        write!(f, "{what} for {:?}: ", self.key)?;
        for (i, attempt) in self.attempts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", attempt.replica, attempt.answer)?;
        }
        Ok(())
    }
}

impl std::error::Error for ReadError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_and_bad_requests_are_returned_404_configurable() {
        let forbidden = Answer::Rejected {
            status: 403,
            code: Some("AccessDenied".into()),
            message: None,
        };
        assert_eq!(
            forbidden.disposition(MissingPolicy::Failover),
            Disposition::Return
        );
        let missing = Answer::Missing { code: None };
        assert_eq!(
            missing.disposition(MissingPolicy::Failover),
            Disposition::Failover
        );
        assert_eq!(
            missing.disposition(MissingPolicy::Fail),
            Disposition::Return
        );
        assert!(!missing.is_replica_failure());
        let slow = Answer::Throttled {
            status: 503,
            code: Some("SlowDown".into()),
        };
        assert_eq!(slow.disposition(MissingPolicy::Fail), Disposition::Failover);
        assert!(slow.is_replica_failure());
        let archived = Answer::Archived {
            code: "InvalidObjectState".into(),
            storage_class: Some("GLACIER".into()),
        };
        assert_eq!(
            archived.disposition(MissingPolicy::Fail),
            Disposition::Failover
        );
        assert!(
            !archived.is_replica_failure(),
            "an archived object says nothing about the replica's health"
        );
        assert_eq!(
            archived.to_string(),
            "403 InvalidObjectState (archived in GLACIER: restore it to read)"
        );
    }

    #[test]
    fn error_names_every_replica() {
        let err = ReadError {
            kind: ReadErrorKind::AllFailed,
            key: "a/b.txt".into(),
            attempts: vec![
                Attempt {
                    replica: "one@us-west-2".into(),
                    answer: Answer::ServerError {
                        status: 500,
                        code: Some("InternalError".into()),
                    },
                },
                Attempt {
                    replica: "two@eu-west-1".into(),
                    answer: Answer::Timeout(Duration::from_millis(1500)),
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "every replica failed for \"a/b.txt\": one@us-west-2: 500 InternalError; two@eu-west-1: no response within 1500 ms"
        );
    }
}
