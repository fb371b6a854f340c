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
        if let Some(next) = next {
            response["continued"] = continuer.invoke(&next).await.map_err(|e| Diagnostic {
                error_type: "ContinuationFailed".into(),
                error_message: e,
            })?;
        }
        Ok::<Value, Diagnostic>(response)
    }))
    .await
}
