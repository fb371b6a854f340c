//! Lambda function: replicates S3 object events to every configured replica bucket.

use lambda_runtime::{run, service_fn, Diagnostic, Error, LambdaEvent};
use replicate::retry_queue::RetryQueue;
use replicate::visibility::Visibility;
use s3fanout::lambda::owed::NoMailbox;
use s3fanout::{invocation, Deadline, Replicator};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let replicator = &Replicator::from_env().await?;
    // Whether each target announces its changes, read once at cold start rather than by the
    // first delivery.
    replicator.prepare().await;
    let visibility = &Visibility::from_env().await;
    let retry_queue = &RetryQueue::from_env().await;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = Deadline::from_epoch_millis(
            event.context.deadline,
            replicator.config().deadline_margin,
        );
        // Work that failed only at some targets waits in the retry queue for those alone.
        let handled = match retry_queue {
            Some(queue) => {
                invocation::handle_owing(replicator, &event.payload, &deadline, queue).await
            }
            None => {
                invocation::handle_owing(replicator, &event.payload, &deadline, &NoMailbox).await
            }
        }
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
