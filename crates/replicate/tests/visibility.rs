//! Visibility changes against the local SQS server: a failed message comes back after its
//! backoff, long before the queue's own visibility timeout.

use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;
use replicate::visibility::Visibility;
use s3fanout::invocation::Redelivery;

/// The queue's own visibility timeout: what a failed message would wait without the change.
const QUEUE_VISIBILITY: Duration = Duration::from_secs(120);

async fn queue(client: &Client, name: &str) -> (String, String) {
    let url = client
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            QUEUE_VISIBILITY.as_secs().to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    (url, arn)
}

/// Receives one message, waiting up to `wait`; with its receive count.
async fn receive(client: &Client, url: &str, wait: Duration) -> Option<(String, String, u32)> {
    let started = Instant::now();
    while started.elapsed() < wait {
        let got = client
            .receive_message()
            .queue_url(url)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .unwrap();
        if let Some(message) = got.messages.unwrap_or_default().into_iter().next() {
            let count = message
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap();
            return Some((
                message.message_id.unwrap(),
                message.receipt_handle.unwrap(),
                count,
            ));
        }
    }
    None
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_failed_message_comes_back_after_its_backoff_not_the_queue_timeout() {
    // The local servers name themselves in S3FANOUT_TEST_SERVER. LocalStack is started for S3
    // only (tests/localstack_s3.py), so this test of SQS runs against moto alone (make test-rust).
    if std::env::var("S3FANOUT_TEST_SERVER").as_deref() == Ok("localstack") {
        eprintln!(
            "skipped on LocalStack: it serves S3 only; SQS visibility is tested against moto"
        );
        return;
    }
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let client = Client::new(&sdk);
    let name = format!("visibility-{}", std::process::id());
    let (url, arn) = queue(&client, &name).await;
    client
        .send_message()
        .queue_url(&url)
        .message_body("{}")
        .send()
        .await
        .unwrap();
    let (message_id, handle, count) = receive(&client, &url, Duration::from_secs(5))
        .await
        .expect("the message is received");
    assert_eq!(count, 1);

    let redelivery = Redelivery {
        message_id: message_id.clone(),
        receipt_handle: handle,
        receive_count: count,
        queue_arn: arn.clone(),
    };
    assert_eq!(redelivery.delay(), Duration::from_secs(10));
    let changed_at = Instant::now();
    let visibility = Visibility::from_env().await;
    assert_eq!(visibility.apply(&[redelivery]).await, 1);

    // Invisible for the backoff...
    assert_eq!(receive(&client, &url, Duration::from_secs(7)).await, None);
    // ...then back, long before the queue's own timeout.
    let (again, _, count) = receive(&client, &url, Duration::from_secs(20))
        .await
        .expect("the message comes back after its backoff");
    let after = changed_at.elapsed();
    assert_eq!(again, message_id);
    assert_eq!(count, 2);
    assert!(
        after >= Duration::from_secs(9) && after < QUEUE_VISIBILITY / 4,
        "back after {after:?}"
    );

    // A visibility change that fails is reported (and logged), never raised.
    let stale = Redelivery {
        message_id,
        receipt_handle: "not-a-receipt-handle".into(),
        receive_count: 2,
        queue_arn: arn,
    };
    let missing_queue = Redelivery {
        queue_arn: "arn:aws:sqs:us-east-1:123456789012:no-such-queue-here".into(),
        ..stale.clone()
    };
    assert_eq!(visibility.apply(&[stale, missing_queue]).await, 0);
    client.delete_queue().queue_url(&url).send().await.unwrap();
}
