//! Turns a Lambda payload into replication work and the response Lambda expects.
//!
//! SQS batches answer with `batchItemFailures` naming exactly the messages that failed, so that
//! only those are delivered again. Other sources (direct S3, SNS, EventBridge) fail the whole
//! invocation, which makes Lambda retry the event and, after that, send it to the configured
//! on-failure destination: nothing is swallowed.

use std::collections::BTreeMap;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use futures::future::join_all;
use serde_json::{json, Value};

use super::event::{parse_invocation, EventError, Invocation};
use super::metrics;
use crate::core::outcome::{ChangeReport, Outcome};
use crate::engine::deadline::Deadline;
use crate::engine::replicator::Replicator;
use crate::store::Store;

/// Why an invocation (as a whole) failed.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// The payload is not an event this function understands.
    #[error(transparent)]
    Malformed(#[from] EventError),
    /// Some copies failed; the message lists them.
    #[error("{0}")]
    Failed(String),
}

impl InvocationError {
    /// A stable name for the kind of failure (Lambda's `errorType`).
    pub fn kind(&self) -> &'static str {
        match self {
            InvocationError::Malformed(_) => "MalformedEvent",
            InvocationError::Failed(_) => "ReplicationFailed",
        }
    }
}

/// Handles one invocation payload.
pub async fn handle<S: Store>(
    replicator: &Replicator<S>,
    payload: &Value,
    deadline: &Deadline,
) -> Result<Value, InvocationError> {
    match parse_invocation(payload)? {
        Invocation::Sqs(items) => {
            let results = join_all(items.into_iter().map(|item| async move {
                let reports = match item.changes {
                    Ok(changes) => replicator.apply_before(&changes, deadline).await,
                    Err(error) => {
                        tracing::error!(message_id = %item.message_id, error = %error, "unusable SQS message");
                        return (item.message_id, Vec::new(), true);
                    }
                };
                let failed = reports.iter().any(ChangeReport::failed);
                (item.message_id, reports, failed)
            }))
            .await;
            let all: Vec<ChangeReport> = results
                .iter()
                .flat_map(|(_, r, _)| r.iter().cloned())
                .collect();
            metrics::emit(&all);
            let mut response = SqsBatchResponse::default();
            response.batch_item_failures = results
                .into_iter()
                .filter(|(_, _, failed)| *failed)
                .map(|(message_id, _, _)| {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = message_id;
                    failure
                })
                .collect();
            Ok(serde_json::to_value(response).expect("batch response serialises"))
        }
        Invocation::Direct(changes) => {
            let reports = replicator.apply_before(&changes, deadline).await;
            metrics::emit(&reports);
            let failures: Vec<String> = reports
                .iter()
                .flat_map(|r| r.targets.iter())
                .filter_map(|t| match &t.outcome {
                    Outcome::Failed(failure) => {
                        Some(format!("s3://{}/{}: {}", t.bucket, t.key, failure.message))
                    }
                    _ => None,
                })
                .collect();
            if failures.is_empty() {
                Ok(summary(&reports))
            } else {
                Err(InvocationError::Failed(format!(
                    "{} replica(s) failed: {}",
                    failures.len(),
                    failures.join("; ")
                )))
            }
        }
    }
}

/// Counts of outcomes, for the response of a direct invocation.
fn summary(reports: &[ChangeReport]) -> Value {
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for target in reports.iter().flat_map(|r| r.targets.iter()) {
        *outcomes.entry(target.outcome.name()).or_default() += 1;
    }
    json!({ "changes": reports.len(), "outcomes": outcomes })
}
