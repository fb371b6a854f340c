//! Lambda function: replicates S3 object events to every configured replica bucket.

use lambda_runtime::{run, service_fn, Diagnostic, Error, LambdaEvent};
use replicate::visibility::Visibility;
use s3fanout::{invocation, Deadline, Replicator};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let replicator = &Replicator::from_env().await?;
    let visibility = &Visibility::from_env().await;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = Deadline::from_epoch_millis(
            event.context.deadline,
            replicator.config().deadline_margin,
        );
        let handled = invocation::handle_with_redeliveries(replicator, &event.payload, &deadline)
            .await
            .map_err(|e| Diagnostic {
                error_type: e.kind().into(),
                error_message: e.to_string(),
            })?;
        // Failed messages come back after a backoff rather than the queue's long timeout.
        visibility.apply(&handled.redeliveries).await;
        Ok::<_, Diagnostic>(handled.response)
    }))
    .await
}
