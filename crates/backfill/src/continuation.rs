//! Continues a backfill that ran out of time in a new, asynchronous invocation of this function.

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use s3fanout::backfill::BackfillRequest;
use serde_json::Value;

/// Invokes this function (`AWS_LAMBDA_FUNCTION_NAME`) asynchronously.
pub struct SelfInvoke {
    client: aws_sdk_lambda::Client,
    function: Option<String>,
}

impl SelfInvoke {
    /// Reads the function's own name and the AWS settings from the environment.
    pub async fn from_env() -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        SelfInvoke {
            client: aws_sdk_lambda::Client::new(&config),
            function: std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok(),
        }
    }

    /// Starts the next invocation; answers what to report about it.
    pub async fn invoke(&self, next: &BackfillRequest) -> Result<Value, String> {
        let function = self
            .function
            .as_deref()
            .ok_or("AWS_LAMBDA_FUNCTION_NAME is not set: cannot continue in a new invocation")?;
        let payload = serde_json::to_vec(next).map_err(|e| e.to_string())?;
        self.client
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "invoking {function} to continue: {}",
                    aws_sdk_lambda::error::DisplayErrorContext(e)
                )
            })?;
        tracing::info!(function, start_after = ?next.continuation.as_ref().map(|c| &c.start_after), "continued in a new invocation");
        Ok(Value::Bool(true))
    }
}
