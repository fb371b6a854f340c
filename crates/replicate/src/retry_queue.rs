//! The retry queue: where work owed to one target waits (`RETRY_QUEUE_URL`), posted with
//! `SendMessageBatch` ten messages at a time, each with its own delay.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use futures::future::join_all;
use s3fanout::lambda::owed::Mailbox;

/// Time allowed for one batch: past it, the deliveries are reported failed and come back whole.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// SQS's limit on entries per `SendMessageBatch`.
const BATCH: usize = 10;
/// SQS's longest message delay.
const MAX_DELAY: Duration = Duration::from_secs(900);

/// The retry queue, when the function has one.
#[derive(Debug, Clone)]
pub struct RetryQueue {
    client: Client,
    url: String,
}

impl RetryQueue {
    /// The queue named by `RETRY_QUEUE_URL`, with credentials, region and endpoint from the
    /// standard AWS environment; `None` when the variable is unset or empty.
    pub async fn from_env() -> Option<Self> {
        let url = std::env::var("RETRY_QUEUE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())?;
        let config = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(CALL_TIMEOUT)
                    .build(),
            )
            .load()
            .await;
        Some(Self::new(Client::new(&config), url))
    }

    /// Over a client and a queue URL.
    pub fn new(client: Client, url: String) -> Self {
        RetryQueue { client, url }
    }

    async fn send(&self, letters: &[(String, Duration)]) -> Vec<bool> {
        let entries: Vec<SendMessageBatchRequestEntry> = letters
            .iter()
            .enumerate()
            .filter_map(|(i, (body, delay))| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .delay_seconds(delay.min(&MAX_DELAY).as_secs() as i32)
                    .build()
                    .ok()
            })
            .collect();
        let mut accepted = vec![false; letters.len()];
        match self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => {
                for ok in output.successful() {
                    if let Some(slot) = ok
                        .id()
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| accepted.get_mut(i))
                    {
                        *slot = true;
                    }
                }
                for failed in output.failed() {
                    tracing::warn!(code = failed.code(), message = ?failed.message(),
                        "retry queue refused owed work; its deliveries fail and come back whole");
                }
            }
            Err(error) => tracing::warn!(
                error = %aws_sdk_sqs::error::DisplayErrorContext(&error),
                "could not post owed work; its deliveries fail and come back whole"
            ),
        }
        accepted
    }
}

impl Mailbox for RetryQueue {
    async fn post(&self, letters: &[(String, Duration)]) -> Vec<bool> {
        let batches = join_all(letters.chunks(BATCH).map(|chunk| self.send(chunk))).await;
        batches.into_iter().flatten().collect()
    }
}
