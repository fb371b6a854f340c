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
        let payload_len = payload.len();
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
        let hop = next.continuation.as_ref().and_then(|c| c.run.as_ref());
        tracing::info!(
            function,
            run_id = hop.map(|h| h.run_id.as_str()),
            hop = hop.map(|h| h.hop),
            start_after = ?next.continuation.as_ref().map(|c| &c.start_after),
            bytes = payload_len,
            "continued in a new invocation"
        );
        Ok(Value::Bool(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3fanout::backfill::chain::Hop;
    use s3fanout::backfill::{Continuation, Summary};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Accepts one HTTP request, answers 202 as Lambda does for `Event` invocations, and
    /// returns the request's head and body.
    async fn one_request(listener: TcpListener) -> (String, Vec<u8>) {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head, body_start) = loop {
            let n = stream.read(&mut chunk).await.unwrap();
            buffer.extend_from_slice(&chunk[..n]);
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break (String::from_utf8_lossy(&buffer[..end]).to_string(), end + 4);
            }
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buffer.len() < body_start + length {
            let n = stream.read(&mut chunk).await.unwrap();
            buffer.extend_from_slice(&chunk[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        (head, buffer[body_start..body_start + length].to_vec())
    }

    #[tokio::test]
    async fn continues_with_an_asynchronous_invocation_of_itself() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(one_request(listener));
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_lambda::config::Credentials::new(
                "k", "s", None, None, "test",
            ))
            .load()
            .await;
        let invoker = SelfInvoke {
            client: aws_sdk_lambda::Client::new(&config),
            function: Some("stack-backfill".into()),
        };
        let next = BackfillRequest {
            prefix: "photos/".into(),
            auto_continue: true,
            continuation: Some(Continuation {
                start_after: "photos/0999.jpg".into(),
                done_after: Default::default(),
                open_uploads: Default::default(),
                so_far: Summary::default(),
                run: Some(Hop {
                    run_id: "nightly".into(),
                    hop: 7,
                    marker_etag: "0123abcd".into(),
                }),
            }),
            run_id: Some("nightly".into()),
            ..Default::default()
        };
        assert_eq!(invoker.invoke(&next).await.unwrap(), Value::Bool(true));

        let (head, body) = server.await.unwrap();
        let request_line = head.lines().next().unwrap();
        assert!(
            request_line.starts_with("POST /2015-03-31/functions/stack-backfill/invocations"),
            "{request_line}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("x-amz-invocation-type: event"),
            "{head}"
        );
        let sent: BackfillRequest = serde_json::from_slice(&body).unwrap();
        assert_eq!(sent, next);
        // The run id and hop travel in the payload itself: nothing else links the hops.
        let raw: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(raw["continuation"]["run"]["run_id"], "nightly");
        assert_eq!(raw["continuation"]["run"]["hop"], 7);
    }

    #[tokio::test]
    async fn without_a_function_name_it_says_so() {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .load()
            .await;
        let invoker = SelfInvoke {
            client: aws_sdk_lambda::Client::new(&config),
            function: None,
        };
        let err = invoker
            .invoke(&BackfillRequest::default())
            .await
            .unwrap_err();
        assert!(err.contains("AWS_LAMBDA_FUNCTION_NAME"), "{err}");
    }
}
