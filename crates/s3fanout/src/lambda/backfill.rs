//! The backfill function's payloads: a backfill or verify request, or a Batch Operations job.
//!
//! A self-continuing request (`auto_continue`) is one hop of a run: it claims its hop in the
//! run's marker before any work (see [`chain`]), and continues only when it moved, is under the
//! hop limit and still holds its hop. Its summary is written to `summary_to` after every hop.
//! When the run ends (done, or a self-continuing run that stops continuing), its last
//! invocation writes the run's drift metrics per target ([`metrics::drift_lines`]).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::Value;

use super::batch;
use super::event::EventError;
use super::invocation::InvocationError;
use super::metrics;
use crate::engine::backfill::chain::{self, Claim, Hop, Plan};
use crate::engine::backfill::{run, BackfillRequest, Stop, StopReason, Summary};
use crate::engine::deadline::Deadline;
use crate::engine::replicator::Replicator;
use crate::store::{ObjectAt, Store, WriteCondition};

/// [`handle_invocation_as`] for an invocation without a Lambda request id (local runs,
/// tests): each call is a distinct invocation.
pub async fn handle_invocation<S: Store>(
    replicator: &Replicator<S>,
    payload: &Value,
    deadline: &Deadline,
) -> Result<(Value, Option<BackfillRequest>), InvocationError> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let id = format!(
        "local-{}-{nanos}-{}",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed)
    );
    handle_invocation_as(replicator, payload, deadline, &id).await
}

/// What a backfill invocation answers, and the request to continue with when it stopped early
/// and `auto_continue` was asked. `invocation_id` is Lambda's request id, which Lambda keeps
/// when it retries a failed asynchronous invocation: a retry recognises its own claim.
pub async fn handle_invocation_as<S: Store>(
    replicator: &Replicator<S>,
    payload: &Value,
    deadline: &Deadline,
    invocation_id: &str,
) -> Result<(Value, Option<BackfillRequest>), InvocationError> {
    if batch::is_batch_event(payload) {
        return Ok((batch::handle(replicator, payload, deadline).await?, None));
    }
    let malformed = |message: String| InvocationError::Malformed(EventError(message));
    let request = BackfillRequest::deserialize(payload)
        .map_err(|e| malformed(format!("backfill payload: {e}")))?;
    let plan = Plan::new(&request, invocation_id).map_err(|e| malformed(e.to_string()))?;
    let config = replicator.config();
    let marker_key = plan.marker_key();

    let held = match (request.auto_continue, chain::marker_at(config, &marker_key)) {
        (true, Some(at)) => {
            let claim = chain::claim(replicator.store(), at, &plan, invocation_id)
                .await
                .map_err(|f| InvocationError::Failed(format!("claiming the run's hop: {f}")))?;
            match claim {
                Claim::Held { etag } => Some(etag),
                // The chain holding the hop owns the summary: this one only answers.
                Claim::Refused(stop) => {
                    let summary = refused(&request, &plan, stop);
                    log(&summary, &plan, None);
                    let response = serde_json::to_value(&summary).expect("summary serialises");
                    return Ok((response, None));
                }
            }
        }
        _ => None,
    };

    let mut summary = run(replicator, &request, deadline, &|_| {})
        .await
        .map_err(|e| InvocationError::Failed(e.to_string()))?;
    summary.run_id = Some(plan.run_id.clone());
    if let (Some(continuation), Some(etag)) = (summary.continuation.as_mut(), &held) {
        continuation.run = Some(Hop {
            run_id: plan.run_id.clone(),
            hop: plan.hop + 1,
            marker_etag: etag.clone(),
        });
    }
    let next = match (&summary.continuation, held.is_some(), &summary.stopped) {
        (Some(_), true, None) if plan.hop >= plan.max_hops => {
            summary.stopped = Some(Stop {
                reason: StopReason::HopLimit,
                detail: format!(
                    "{} self-continuations made (max_hops {}): resume with the continuation and a higher max_hops",
                    plan.hop, plan.max_hops
                ),
            });
            None
        }
        (Some(continuation), true, None) => Some(BackfillRequest {
            continuation: Some((**continuation).clone()),
            run_id: Some(plan.run_id.clone()),
            ..request
        }),
        _ => None,
    };
    // The run's end: the counts are the whole run's (a continuation carries them along).
    // A run without auto_continue that stopped early is resumed by hand, and not over yet.
    if next.is_none() && (summary.done || (held.is_some() && summary.stopped.is_some())) {
        metrics::emit_drift(&summary);
    }
    let mut response = serde_json::to_value(&summary).expect("summary serialises");
    let written = match &plan.summary_to {
        Some(location) => Some(write_summary(replicator, location, &plan, &summary).await),
        None => None,
    };
    match &written {
        Some(Ok(url)) => response["summary_object"] = Value::String(url.clone()),
        Some(Err(message)) => response["summary_error"] = Value::String(message.clone()),
        None => {}
    }
    log(&summary, &plan, written.as_ref());
    Ok((response, next))
}

/// The answer of a hop that may not run: where the run stood, and why this chain stops.
fn refused(request: &BackfillRequest, plan: &Plan, stop: Stop) -> Summary {
    let mut summary = request
        .continuation
        .as_ref()
        .map(|c| c.so_far.clone())
        .unwrap_or_default();
    summary.mode = request.mode;
    summary.dry_run = request.dry_run;
    summary.prefix = request.prefix.clone();
    summary.done = false;
    summary.run_id = Some(plan.run_id.clone());
    summary.stopped = Some(stop);
    summary
}

/// Writes the summary as JSON to `location`; answers its address, or why it could not be
/// written. A failure here does not fail the invocation: redoing the hop's work would not
/// help, and the log holds the summary too.
async fn write_summary<S: Store>(
    replicator: &Replicator<S>,
    location: &chain::SummaryLocation,
    plan: &Plan,
    summary: &Summary,
) -> Result<String, String> {
    let config = replicator.config();
    let key = location.key(&plan.run_id);
    let region = config
        .target(&location.bucket)
        .map(|t| t.region.as_str())
        .or_else(|| replicator.source_region(&location.bucket));
    let at = ObjectAt {
        bucket: &location.bucket,
        region,
        key: &key,
    };
    let body = serde_json::to_vec_pretty(summary).expect("summary serialises");
    replicator
        .store()
        .put_small_object(at, &body, &WriteCondition::Any)
        .await
        .map(|_| location.url(&plan.run_id))
        .map_err(|f| format!("writing the summary: {}", f.message))
}

fn log(summary: &Summary, plan: &Plan, written: Option<&Result<String, String>>) {
    let stopped = summary
        .stopped
        .as_ref()
        .map(|s| format!("{:?}: {}", s.reason, s.detail));
    let summary_object = match written {
        Some(Ok(url)) => Some(url.clone()),
        Some(Err(message)) => Some(message.clone()),
        None => None,
    };
    tracing::info!(
        run_id = %plan.run_id,
        hop = plan.hop,
        done = summary.done,
        stopped,
        source_objects = summary.source_objects,
        list_requests = summary.list_requests,
        summary_object,
        summary = %serde_json::to_string(&summary.targets).unwrap_or_default(),
        "backfill"
    );
}
