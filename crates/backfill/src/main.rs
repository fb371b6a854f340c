//! Lambda function: backfill and verify replicas, and S3 Batch Operations tasks.

mod continuation;

use lambda_runtime::{run, service_fn, Diagnostic, Error, LambdaEvent};
use s3fanout::lambda::backfill;
use s3fanout::{Deadline, Replicator};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let replicator = &Replicator::from_env().await?;
    let continuer = &continuation::SelfInvoke::from_env().await;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let margin = replicator.config().deadline_margin;
        let deadline = Deadline::from_epoch_millis(event.context.deadline, margin);
        let (mut response, next) = backfill::handle_invocation_as(
            replicator,
            &event.payload,
            &deadline,
            &event.context.request_id,
        )
        .await
        .map_err(|e| Diagnostic {
            error_type: e.kind().into(),
            error_message: e.to_string(),
        })?;
        // A split run's chains, or the next hop. A chain that could not be started fails
        // the invocation, whose retry starts them all again: those already started are
        // refused by their own markers.
        let started = futures::future::join_all(next.iter().map(|n| continuer.invoke(n))).await;
        if let Some(e) = started.iter().find_map(|s| s.as_ref().err()) {
            return Err(Diagnostic {
                error_type: "ContinuationFailed".into(),
                error_message: e.clone(),
            });
        }
        if !started.is_empty() {
            response["continued"] = Value::Bool(true);
        }
        Ok::<Value, Diagnostic>(response)
    }))
    .await
}
