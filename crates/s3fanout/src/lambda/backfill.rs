//! The backfill function's payloads: a backfill or verify request, or a Batch Operations job.
//!
//! A self-continuing request (`auto_continue`) is one hop of a run: it claims its hop in the
//! run's marker before any work (see [`chain`]), and continues only when it moved, is under the
//! hop limit and still holds its hop. Its summary is written to `summary_to` after every hop.
//! When the run ends (done, or a self-continuing run that stops continuing), its last
//! invocation writes the run's drift metrics per target ([`metrics::drift_lines`]).
//!
//! A split run (`chains`, `split_at`) answers the chains to start instead of working itself
//! ([`split`]); each chain writes the run's summary beside its own after every hop.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::Value;

use super::batch;
use super::event::EventError;
use super::invocation::InvocationError;
use super::metrics;
use crate::engine::backfill::chain::{self, Claim, Hop, Plan, SplitClaim};
use crate::engine::backfill::{self as backfill, split};
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
) -> Result<(Value, Vec<BackfillRequest>), InvocationError> {
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

/// What a backfill invocation answers, and the requests to invoke next: the continuation when
/// it stopped early and `auto_continue` was asked, or a split run's chains. `invocation_id` is Lambda's request id, which Lambda keeps
/// when it retries a failed asynchronous invocation: a retry recognises its own claim.
pub async fn handle_invocation_as<S: Store>(
    replicator: &Replicator<S>,
    payload: &Value,
    deadline: &Deadline,
    invocation_id: &str,
) -> Result<(Value, Vec<BackfillRequest>), InvocationError> {
    if batch::is_batch_event(payload) {
        return Ok((
            batch::handle(replicator, payload, deadline).await?,
            Vec::new(),
        ));
    }
    let malformed = |message: String| InvocationError::Malformed(EventError(message));
    let request = BackfillRequest::deserialize(payload)
        .map_err(|e| malformed(format!("backfill payload: {e}")))?;
    let plan = Plan::new(&request, invocation_id).map_err(|e| malformed(e.to_string()))?;
    let config = replicator.config();
    let marker_key = plan.marker_key();
    if split::is_split(&request) {
        return start_split(replicator, &request, &plan, invocation_id).await;
    }

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
                    return Ok((response, Vec::new()));
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
            ..request.clone()
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
    // After its own summary: a chain's sum read after it includes it.
    if let (Some(location), Some(part_of), Some(Ok(_))) =
        (&plan.summary_to, &request.part_of, &written)
    {
        match split::combine(replicator, location, part_of, &summary).await {
            Ok(url) => response["run_summary_object"] = Value::String(url),
            Err(message) => response["run_summary_error"] = Value::String(message),
        }
    }
    log(&summary, &plan, written.as_ref());
    Ok((response, next.into_iter().collect()))
}

/// The first invocation of a split run: chooses the ranges, records them in the run's
/// marker, writes the run's first summary, and answers the chains to start.
async fn start_split<S: Store>(
    replicator: &Replicator<S>,
    request: &BackfillRequest,
    plan: &Plan,
    invocation_id: &str,
) -> Result<(Value, Vec<BackfillRequest>), InvocationError> {
    let malformed = |message: String| InvocationError::Malformed(EventError(message));
    let location = split::check(request).map_err(|e| malformed(e.to_string()))?;
    let ranges = split::ranges(replicator, request)
        .await
        .map_err(|e| InvocationError::Failed(e.to_string()))?;
    // Checked before the claim: a run whose chains could not be named must not be claimed.
    split::chain_ids(&plan.run_id, ranges.len()).map_err(|e| malformed(e.to_string()))?;
    let marker_key = plan.marker_key();
    let at = chain::marker_at(replicator.config(), &marker_key)
        .ok_or_else(|| malformed("a split run needs a configured target for its marker".into()))?;
    let claim = chain::claim_split(replicator.store(), at, plan, invocation_id, ranges)
        .await
        .map_err(|f| InvocationError::Failed(format!("claiming the split run: {f}")))?;
    let ranges = match claim {
        SplitClaim::Held(ranges) => ranges,
        SplitClaim::Refused(stop) => {
            let summary = refused(request, plan, stop);
            log(&summary, plan, None);
            let response = serde_json::to_value(&summary).expect("summary serialises");
            return Ok((response, Vec::new()));
        }
    };
    let chains = split::chain_requests(request, &plan.run_id, &ranges)
        .map_err(|e| malformed(e.to_string()))?;
    let base = Summary {
        mode: request.mode,
        dry_run: request.dry_run,
        // A summary names the source even when the request left it to the configuration.
        source_bucket: backfill::source_bucket(replicator, request)
            .map_err(|e| malformed(e.to_string()))?,
        prefix: request.prefix.clone(),
        ..Summary::default()
    };
    let first = chains[0]
        .part_of
        .clone()
        .expect("a chain is part of its run");
    let written = split::combine(replicator, &location, &first, &base).await;
    let mut response = serde_json::json!({
        "run_id": plan.run_id,
        "chains": chains
            .iter()
            .map(|c| serde_json::json!({"run_id": c.run_id, "range": c.range}))
            .collect::<Vec<_>>(),
    });
    match written {
        Ok(url) => response["run_summary_object"] = Value::String(url),
        Err(message) => response["run_summary_error"] = Value::String(message),
    }
    tracing::info!(run_id = %plan.run_id, chains = chains.len(), "backfill split");
    Ok((response, chains))
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
    let key = location.key(&plan.run_id);
    let region = split::summary_region(replicator, &location.bucket);
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
