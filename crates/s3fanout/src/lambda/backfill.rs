//! The backfill function's payloads: a backfill or verify request, or a Batch Operations job.

use serde::Deserialize;

use super::batch;
use super::event::EventError;
use super::invocation::InvocationError;
use crate::engine::backfill::{run, BackfillRequest};
use crate::engine::deadline::Deadline;
use crate::engine::replicator::Replicator;
use crate::store::Store;

/// What a backfill invocation answers, and the request to continue with when it stopped early
/// and `auto_continue` was asked.
pub async fn handle_invocation<S: Store>(
    replicator: &Replicator<S>,
    payload: &serde_json::Value,
    deadline: &Deadline,
) -> Result<(serde_json::Value, Option<BackfillRequest>), InvocationError> {
    if batch::is_batch_event(payload) {
        return Ok((batch::handle(replicator, payload, deadline).await?, None));
    }
    let request = BackfillRequest::deserialize(payload)
        .map_err(|e| InvocationError::Malformed(EventError(format!("backfill payload: {e}"))))?;
    let summary = run(replicator, &request, deadline, &|_| {})
        .await
        .map_err(|e| InvocationError::Failed(e.to_string()))?;
    tracing::info!(
        done = summary.done,
        source_objects = summary.source_objects,
        list_requests = summary.list_requests,
        summary = %serde_json::to_string(&summary.targets).unwrap_or_default(),
        "backfill"
    );
    let next = match (&summary.continuation, request.auto_continue) {
        (Some(continuation), true) => Some(BackfillRequest {
            continuation: Some((**continuation).clone()),
            ..request
        }),
        _ => None,
    };
    let response = serde_json::to_value(&summary).expect("summary serialises");
    Ok((response, next))
}
