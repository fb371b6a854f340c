//! Brings failed SQS messages back sooner than the queue's visibility timeout: one
//! `ChangeMessageVisibility` per failed message, with the delay the handler chose from its
//! receive count. A visibility change that fails only means the message waits for the queue's
//! own timeout: it is logged and never fails the invocation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::Client;
use futures::future::join_all;
use s3fanout::invocation::Redelivery;

/// Time allowed for one visibility change: the invocation is otherwise done and must answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// An SQS queue named by its ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueArn {
    /// Partition (`aws`, `aws-cn`, `aws-us-gov`).
    pub partition: String,
    /// Region of the queue.
    pub region: String,
    /// Account that owns the queue.
    pub account: String,
    /// Queue name.
    pub name: String,
}

impl QueueArn {
    /// Parses `arn:PARTITION:sqs:REGION:ACCOUNT:NAME`.
    pub fn parse(arn: &str) -> Result<Self, String> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            ["arn", partition, "sqs", region, account, name]
                if !partition.is_empty()
                    && !region.is_empty()
                    && !account.is_empty()
                    && !name.is_empty() =>
            {
                Ok(QueueArn {
                    partition: partition.to_string(),
                    region: region.to_string(),
                    account: account.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!(
                "{arn:?} is not an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)"
            )),
        }
    }

    /// The queue's URL. SQS takes the account and name from its path; the request itself goes
    /// to the endpoint the SDK resolves (`AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL` or the
    /// region's), so the host here is the canonical one whatever the endpoint.
    pub fn url(&self) -> String {
        let suffix = if self.partition == "aws-cn" {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!(
            "https://sqs.{}.{suffix}/{}/{}",
            self.region, self.account, self.name
        )
    }
}

/// SQS clients, one per queue region, for visibility changes.
#[derive(Debug)]
pub struct Visibility {
    base: SdkConfig,
    clients: Mutex<HashMap<String, Client>>,
}

impl Visibility {
    /// Credentials, region and endpoint from the standard AWS environment.
    pub async fn from_env() -> Self {
        let base = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(CALL_TIMEOUT)
                    .build(),
            )
            .load()
            .await;
        Self::new(base)
    }

    /// Over an explicit SDK configuration.
    pub fn new(base: SdkConfig) -> Self {
        Visibility {
            base,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, region: &str) -> Client {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                // From the shared configuration, so that the SDK applies AWS_ENDPOINT_URL_SQS
                // (or AWS_ENDPOINT_URL) itself.
                let config = aws_sdk_sqs::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()))
                    .build();
                Client::from_conf(config)
            })
            .clone()
    }

    /// Sets each message's visibility timeout to its redelivery delay, all at once; returns how
    /// many changes succeeded. Failures are logged.
    pub async fn apply(&self, redeliveries: &[Redelivery]) -> usize {
        let done = join_all(redeliveries.iter().map(|r| self.change(r))).await;
        done.into_iter().filter(|ok| *ok).count()
    }

    async fn change(&self, redelivery: &Redelivery) -> bool {
        let delay = redelivery.delay();
        let queue = match QueueArn::parse(&redelivery.queue_arn) {
            Ok(queue) => queue,
            Err(error) => {
                tracing::warn!(message_id = %redelivery.message_id, %error,
                    "cannot shorten the visibility of a failed message");
                return false;
            }
        };
        let sent = self
            .client(&queue.region)
            .change_message_visibility()
            .queue_url(queue.url())
            .receipt_handle(&redelivery.receipt_handle)
            .visibility_timeout(i32::try_from(delay.as_secs()).unwrap_or(i32::MAX))
            .send()
            .await;
        match sent {
            Ok(_) => {
                tracing::info!(message_id = %redelivery.message_id, queue = %queue.name,
                    receive_count = redelivery.receive_count, delay_s = delay.as_secs(),
                    "failed message comes back after a backoff");
                true
            }
            Err(error) => {
                tracing::warn!(message_id = %redelivery.message_id, queue = %queue.name,
                    error = %aws_sdk_sqs::error::DisplayErrorContext(&error),
                    "could not shorten the visibility of a failed message; the queue's visibility timeout applies");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_from_arns() {
        let queue = QueueArn::parse("arn:aws:sqs:eu-west-1:123456789012:replicate-q").unwrap();
        assert_eq!(
            queue.url(),
            "https://sqs.eu-west-1.amazonaws.com/123456789012/replicate-q"
        );
        let china = QueueArn::parse("arn:aws-cn:sqs:cn-north-1:123456789012:q").unwrap();
        assert_eq!(
            china.url(),
            "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q"
        );
    }

    #[test]
    fn bad_arns_are_named() {
        for arn in [
            "",
            "arn:aws:sns:us-east-1:123456789012:topic",
            "arn:aws:sqs:us-east-1:123456789012",
            "arn:aws:sqs::123456789012:q",
        ] {
            let error = QueueArn::parse(arn).unwrap_err();
            assert!(error.contains(&format!("{arn:?}")), "{error}");
        }
    }
}
