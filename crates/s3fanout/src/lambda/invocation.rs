//! Turns a Lambda payload into replication work and the response Lambda expects.
//!
//! SQS batches answer with `batchItemFailures` naming exactly the messages that failed, so that
//! only those are delivered again. Other sources (direct S3, SNS, EventBridge) fail the whole
//! invocation, which makes Lambda retry the event and, after that, send it to the configured
//! on-failure destination: nothing is swallowed.
//!
//! A failed SQS message would otherwise wait out the queue's visibility timeout (six times the
//! function's timeout) before it is tried again; the handler also names each failed message
//! with the delay after which it should come back ([`Redelivery`]), for the function to apply
//! with `ChangeMessageVisibility`.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use futures::future::join_all;
use serde_json::{json, Value};

use super::event::{parse_invocation, EventError, Invocation, SqsItem};
use super::metrics;
use super::owed::{self, Debt, Mailbox, NoMailbox, Owing, TargetName};
use crate::core::config::Config;
use crate::core::outcome::{ChangeReport, FailureKind, Outcome};
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

/// The first redelivery delay of a failed SQS message.
pub const FIRST_REDELIVERY: Duration = Duration::from_secs(10);
/// The longest redelivery delay: beyond it, a replica would wait longer than the lag the
/// alarms tolerate.
pub const MAX_REDELIVERY: Duration = Duration::from_secs(15 * 60);

/// How long a message received `receive_count` times stays invisible after failing:
/// [`FIRST_REDELIVERY`] doubled at each further receive, at most [`MAX_REDELIVERY`].
pub fn redelivery_delay(receive_count: u32) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(16);
    FIRST_REDELIVERY
        .saturating_mul(1 << doublings)
        .min(MAX_REDELIVERY)
}

/// A failed SQS message to make visible again after [`Redelivery::delay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redelivery {
    /// The message id (as in `batchItemFailures`).
    pub message_id: String,
    /// The receipt handle of this delivery.
    pub receipt_handle: String,
    /// Receives so far, this one included.
    pub receive_count: u32,
    /// ARN of the queue (`arn:aws:sqs:REGION:ACCOUNT:NAME`).
    pub queue_arn: String,
}

impl Redelivery {
    /// The visibility timeout to set on the message.
    pub fn delay(&self) -> Duration {
        redelivery_delay(self.receive_count)
    }

    fn of(item: &SqsItem) -> Option<Self> {
        // Without a receipt handle and a queue there is nothing to act on: the queue's own
        // visibility timeout applies.
        Some(Redelivery {
            message_id: item.message_id.clone(),
            receipt_handle: item.receipt_handle.clone()?,
            receive_count: item.receive_count.unwrap_or(1),
            queue_arn: item.queue_arn.clone()?,
        })
    }
}

/// What an invocation answers, and which failed SQS messages to bring back early.
#[derive(Debug)]
pub struct Handled {
    /// The response to return to Lambda.
    pub response: Value,
    /// Failed SQS messages, each with what `ChangeMessageVisibility` needs.
    pub redeliveries: Vec<Redelivery>,
}

/// Handles one invocation payload.
pub async fn handle<S: Store>(
    replicator: &Replicator<S>,
    payload: &Value,
    deadline: &Deadline,
) -> Result<Value, InvocationError> {
    handle_with_redeliveries(replicator, payload, deadline)
        .await
        .map(|handled| handled.response)
}

/// Handles one invocation payload; also names the failed SQS messages to make visible again
/// sooner than the queue's visibility timeout. Without a retry queue, a change that failed at
/// any target is delivered again whole.
pub async fn handle_with_redeliveries<S: Store>(
    replicator: &Replicator<S>,
    payload: &Value,
    deadline: &Deadline,
) -> Result<Handled, InvocationError> {
    handle_owing(replicator, payload, deadline, &NoMailbox).await
}

/// Handles one invocation payload. Work that failed only transiently at some targets is posted
/// to `mailbox` (the retry queue) as work owed to those targets alone, and the delivery
/// succeeds; a delivery fails (and is delivered again whole) when it is unusable, when a target
/// refused it permanently, or when its owed work could not be posted.
pub async fn handle_owing<S: Store, M: Mailbox>(
    replicator: &Replicator<S>,
    payload: &Value,
    deadline: &Deadline,
    mailbox: &M,
) -> Result<Handled, InvocationError> {
    let config = replicator.config();
    match parse_invocation(payload)? {
        Invocation::Sqs(items) => {
            let runs = join_all(
                items
                    .iter()
                    .map(|item| run_item(replicator, item, deadline)),
            )
            .await;
            let all: Vec<ChangeReport> = runs
                .iter()
                .flat_map(|r| r.reports.iter().cloned())
                .collect();
            metrics::emit(&all);
            let mut failed: Vec<bool> = runs.iter().map(|r| r.unusable).collect();
            let mut debts = Vec::new();
            for (index, (item, run)) in items.iter().zip(&runs).enumerate() {
                if run.unusable {
                    continue;
                }
                if run.reports.iter().any(refused) {
                    failed[index] = true;
                    continue;
                }
                debts.extend(debts_of(config, index, item.owing.as_ref(), &run.reports));
            }
            for from in post(replicator, mailbox, debts).await {
                failed[from] = true;
            }
            let mut response = SqsBatchResponse::default();
            let mut redeliveries = Vec::new();
            for (item, failed) in items.iter().zip(failed) {
                if !failed {
                    continue;
                }
                redeliveries.extend(Redelivery::of(item));
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = item.message_id.clone();
                response.batch_item_failures.push(failure);
            }
            Ok(Handled {
                response: serde_json::to_value(response).expect("batch response serialises"),
                redeliveries,
            })
        }
        Invocation::Direct(changes) => {
            let reports = replicator.apply_before(&changes, deadline).await;
            metrics::emit(&reports);
            let owed_ok = if reports.iter().any(refused) {
                false
            } else {
                post(replicator, mailbox, debts_of(config, 0, None, &reports))
                    .await
                    .is_empty()
            };
            let failures: Vec<String> = reports
                .iter()
                .flat_map(|r| r.targets.iter())
                .filter_map(|t| match &t.outcome {
                    Outcome::Failed(failure) if !owed_ok || !failure.is_transient() => {
                        Some(format!("s3://{}/{}: {}", t.bucket, t.key, failure.message))
                    }
                    _ => None,
                })
                .collect();
            if failures.is_empty() {
                Ok(Handled {
                    response: summary(&reports),
                    redeliveries: Vec::new(),
                })
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

/// What one SQS message gave.
struct ItemRun {
    reports: Vec<ChangeReport>,
    /// The body could not be used: the message fails as a whole.
    unusable: bool,
}

async fn run_item<S: Store>(
    replicator: &Replicator<S>,
    item: &SqsItem,
    deadline: &Deadline,
) -> ItemRun {
    let changes = match &item.changes {
        Ok(changes) => changes,
        Err(error) => {
            tracing::error!(message_id = %item.message_id, error = %error, "unusable SQS message");
            return ItemRun {
                reports: Vec::new(),
                unusable: true,
            };
        }
    };
    let reports = match &item.owing {
        None => replicator.apply_before(changes, deadline).await,
        Some(owing) => match owing.target.find(replicator.config()) {
            Some(target) => {
                let only = [target];
                join_all(
                    changes
                        .iter()
                        .map(|c| replicator.apply_to(c, &only, deadline)),
                )
                .await
            }
            None => {
                // Nothing is owed to a target the configuration no longer has.
                tracing::warn!(bucket = %owing.target.bucket, prefix = %owing.target.prefix,
                    changes = changes.len(), "work owed to a target that is no longer configured: dropped");
                Vec::new()
            }
        },
    };
    ItemRun {
        reports,
        unusable: false,
    }
}

/// Whether a target refused a change for good: someone must act first.
fn refused(report: &ChangeReport) -> bool {
    report
        .targets
        .iter()
        .any(|t| t.outcome.failure().is_some_and(|f| !f.is_transient()))
}

/// The transient failures of one delivery, as debts to their targets.
fn debts_of(
    config: &Config,
    from: usize,
    owing: Option<&Owing>,
    reports: &[ChangeReport],
) -> Vec<Debt> {
    let now = metrics::now_ms();
    // A report names its targets in the order the work was given them.
    let targets: Vec<TargetName> = match owing {
        Some(owing) => vec![owing.target.clone()],
        None => config.targets.iter().map(TargetName::of).collect(),
    };
    let mut debts = Vec::new();
    for report in reports {
        for (target, at) in targets.iter().cloned().zip(&report.targets) {
            let Some(failure) = at.outcome.failure() else {
                continue;
            };
            debts.push(Debt {
                target,
                change: report.change.clone(),
                since_ms: owing.map_or(now, |o| o.since_ms),
                tries: owing.map_or(0, |o| o.tries + 1),
                held: failure.kind == FailureKind::Held,
                from,
            });
        }
    }
    debts
}

/// Posts debts as owed work; answers the deliveries whose debts could not be posted. Emits,
/// per target, whether it is held and how many changes wait for it.
async fn post<S: Store, M: Mailbox>(
    replicator: &Replicator<S>,
    mailbox: &M,
    debts: Vec<Debt>,
) -> Vec<usize> {
    let letters = owed::letters(debts);
    let bodies: Vec<(String, Duration)> = letters
        .iter()
        .map(|l| (l.body.clone(), l.work.delay()))
        .collect();
    let accepted = if bodies.is_empty() {
        Vec::new()
    } else {
        mailbox.post(&bodies).await
    };
    let mut unposted = Vec::new();
    let mut waiting: BTreeMap<&str, metrics::Waiting> = BTreeMap::new();
    for target in &replicator.config().targets {
        let entry = waiting.entry(target.bucket.as_str()).or_default();
        entry.down |= replicator.holds(target);
    }
    let now = metrics::now_ms();
    for (index, letter) in letters.iter().enumerate() {
        if accepted.get(index).copied().unwrap_or(false) {
            let entry = waiting
                .entry(letter.work.target.bucket.as_str())
                .or_default();
            entry.changes += letter.work.changes.len() as u64;
            entry.oldest_ms = entry
                .oldest_ms
                .max(now.saturating_sub(letter.work.since_ms));
        } else {
            unposted.extend(letter.from.iter().copied());
        }
    }
    metrics::emit_waiting(&waiting);
    unposted.sort_unstable();
    unposted.dedup();
    unposted
}

/// Counts of outcomes, for the response of a direct invocation.
fn summary(reports: &[ChangeReport]) -> Value {
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for target in reports.iter().flat_map(|r| r.targets.iter()) {
        *outcomes.entry(target.outcome.name()).or_default() += 1;
    }
    json!({ "changes": reports.len(), "outcomes": outcomes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivery_backs_off_by_receive_count_up_to_a_cap() {
        let secs: Vec<u64> = [0, 1, 2, 3, 4, 5, 6, 7, 50, u32::MAX]
            .map(|n| redelivery_delay(n).as_secs())
            .to_vec();
        assert_eq!(secs, [10, 10, 20, 40, 80, 160, 320, 640, 900, 900]);
    }

    #[test]
    fn only_messages_with_a_handle_and_a_queue_are_redelivered_early() {
        let item = |handle: Option<&str>, arn: Option<&str>, count| SqsItem {
            message_id: "m".into(),
            receipt_handle: handle.map(str::to_string),
            receive_count: count,
            queue_arn: arn.map(str::to_string),
            changes: Ok(Vec::new()),
            owing: None,
        };
        let arn = "arn:aws:sqs:eu-west-1:123456789012:q";
        let redelivery = Redelivery::of(&item(Some("h"), Some(arn), Some(3))).unwrap();
        assert_eq!(redelivery.delay(), Duration::from_secs(40));
        assert_eq!(redelivery.queue_arn, arn);
        assert_eq!(
            Redelivery::of(&item(Some("h"), Some(arn), None))
                .unwrap()
                .receive_count,
            1
        );
        assert_eq!(Redelivery::of(&item(None, Some(arn), Some(1))), None);
        assert_eq!(Redelivery::of(&item(Some("h"), None, Some(1))), None);
    }
}
