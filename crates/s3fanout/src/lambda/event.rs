//! Normalises every way an S3 notification reaches a Lambda into a list of [`Change`]s.
//!
//! Shapes accepted: a direct S3 notification, SQS messages whose body is an S3 notification (or an
//! SNS envelope or an EventBridge event), an SNS event, and an EventBridge `Object Created` /
//! `Object Deleted` event. Parsing is lenient: only the fields replication needs are required,
//! because local S3 servers omit much of what AWS sends. SNS subscription handshakes that reach
//! a queue subscribed to a topic are ignored, like `s3:TestEvent`.

use aws_smithy_types::date_time::{DateTime, Format};
use serde::Deserialize;
use serde_json::Value;

use super::owed::{self, Owing};
use crate::core::change::{Change, ChangeKind, Written};
use crate::core::keys::decode_event_key;

/// An event that cannot be turned into changes.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("malformed event: {0}")]
pub struct EventError(pub String);

/// One SQS message and what it contained.
#[derive(Debug)]
pub struct SqsItem {
    /// The message id, reported back in `batchItemFailures` when the message fails.
    pub message_id: String,
    /// The receipt handle of this delivery, needed to change the message's visibility.
    pub receipt_handle: Option<String>,
    /// How many times the message has been received, this time included
    /// (`attributes.ApproximateReceiveCount`).
    pub receive_count: Option<u32>,
    /// ARN of the queue the message came from (`eventSourceARN`).
    pub queue_arn: Option<String>,
    /// The changes of its body, or why the body is unusable.
    pub changes: Result<Vec<Change>, EventError>,
    /// When the body is work owed to one target (from the retry queue): that target, and how
    /// long the work has waited. `None`: a notification, for every target.
    pub owing: Option<Owing>,
}

/// A Lambda invocation payload, classified by how it was delivered.
#[derive(Debug)]
pub enum Invocation {
    /// An SQS batch: each message succeeds or fails on its own.
    Sqs(Vec<SqsItem>),
    /// Direct S3, SNS or EventBridge delivery: the invocation succeeds or fails as a whole.
    Direct(Vec<Change>),
}

/// Classifies a Lambda payload and extracts its changes.
pub fn parse_invocation(payload: &Value) -> Result<Invocation, EventError> {
    let records = payload.get("Records").and_then(Value::as_array);
    let is_sqs = records.is_some_and(|r| {
        !r.is_empty()
            && r.iter()
                .all(|rec| rec.get("eventSource") == Some(&"aws:sqs".into()))
    });
    if is_sqs {
        let items = records
            .into_iter()
            .flatten()
            .enumerate()
            .map(parse_sqs_record)
            .collect::<Result<_, _>>()?;
        return Ok(Invocation::Sqs(items));
    }
    parse_notification(payload).map(Invocation::Direct)
}

fn parse_sqs_record((index, record): (usize, &Value)) -> Result<SqsItem, EventError> {
    let message_id = record
        .get("messageId")
        .and_then(Value::as_str)
        .ok_or_else(|| EventError(format!("SQS record {index} has no messageId")))?
        .to_string();
    let attribute = |name: &str| {
        record
            .get("attributes")
            .and_then(|a| a.get(name))
            .and_then(Value::as_str)
    };
    // When the notification itself carries no time, the moment SQS accepted it is the closest
    // earlier bound: the latency measured from it is never shorter than the true one by much.
    let sent = attribute("SentTimestamp").and_then(|t| t.parse::<u64>().ok());
    let mut owing = None;
    let changes = match record.get("body").and_then(Value::as_str) {
        None => Err(EventError(format!("SQS message {message_id} has no body"))),
        Some(body) => serde_json::from_str::<Value>(body)
            .map_err(|e| EventError(format!("SQS message {message_id}: body is not JSON: {e}")))
            .and_then(|v| match owed::parse(&v) {
                Some(work) => work.map(|work| {
                    let (from, changes) = work.split();
                    owing = Some(from);
                    changes
                }),
                None => parse_notification(&v),
            })
            .map_err(|e| EventError(format!("SQS message {message_id}: {}", e.0))),
    }
    .map(|changes| {
        changes
            .into_iter()
            .map(|mut change| {
                change.event_time = change.event_time.or(sent);
                change
            })
            .collect()
    });
    Ok(SqsItem {
        receipt_handle: record
            .get("receiptHandle")
            .and_then(Value::as_str)
            .map(str::to_string),
        receive_count: attribute("ApproximateReceiveCount").and_then(|c| c.parse().ok()),
        queue_arn: record
            .get("eventSourceARN")
            .and_then(Value::as_str)
            .map(str::to_string),
        message_id,
        changes,
        owing,
    })
}

/// Extracts the changes of one notification in any of the non-SQS shapes.
pub fn parse_notification(value: &Value) -> Result<Vec<Change>, EventError> {
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    if value.get("source").and_then(Value::as_str) == Some("aws.s3")
        && value.get("detail-type").is_some()
    {
        return parse_eventbridge(value).map(|c| c.into_iter().collect());
    }
    match value.get("Type").and_then(Value::as_str) {
        Some("Notification") => return parse_embedded(value.get("Message"), "SNS notification"),
        // A queue subscribed to a topic receives the subscription handshake too; it carries no
        // object and must not be retried into the dead-letter queue.
        Some(kind @ ("SubscriptionConfirmation" | "UnsubscribeConfirmation")) => {
            let topic = value.get("TopicArn").and_then(Value::as_str).unwrap_or("");
            tracing::info!(
                message_type = kind,
                topic,
                "ignoring SNS subscription message"
            );
            return Ok(Vec::new());
        }
        _ => {}
    }
    let Some(records) = value.get("Records").and_then(Value::as_array) else {
        return Err(EventError(
            "expected an S3 notification (Records), an SNS or SQS event, or an EventBridge aws.s3 event".into(),
        ));
    };
    let mut changes = Vec::new();
    for (index, record) in records.iter().enumerate() {
        if record.get("EventSource").and_then(Value::as_str) == Some("aws:sns") {
            let message = record.get("Sns").and_then(|s| s.get("Message"));
            changes.extend(parse_embedded(message, &format!("SNS record {index}"))?);
        } else if record.get("s3").is_some() {
            changes.extend(
                parse_s3_record(record).map_err(|e| EventError(format!("record {index}: {e}")))?,
            );
        } else {
            return Err(EventError(format!(
                "record {index} is neither an S3 nor an SNS record"
            )));
        }
    }
    Ok(changes)
}

fn parse_embedded(message: Option<&Value>, what: &str) -> Result<Vec<Change>, EventError> {
    let text = message
        .and_then(Value::as_str)
        .ok_or_else(|| EventError(format!("{what} has no Message")))?;
    let inner: Value = serde_json::from_str(text)
        .map_err(|e| EventError(format!("{what}: Message is not JSON: {e}")))?;
    parse_notification(&inner).map_err(|e| EventError(format!("{what}: {}", e.0)))
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName")]
    event_name: String,
    #[serde(rename = "awsRegion", default)]
    aws_region: Option<String>,
    #[serde(rename = "eventTime", default)]
    event_time: Option<String>,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(default)]
    size: Option<i64>,
    #[serde(rename = "eTag", default)]
    e_tag: Option<String>,
    #[serde(rename = "versionId", default)]
    version_id: Option<String>,
    #[serde(default)]
    sequencer: Option<String>,
}

fn parse_s3_record(record: &Value) -> Result<Option<Change>, String> {
    let record = S3Record::deserialize(record).map_err(|e| e.to_string())?;
    let name = record
        .event_name
        .strip_prefix("s3:")
        .unwrap_or(&record.event_name);
    let Some(kind) = kind_of_notification(name) else {
        tracing::info!(event = %record.event_name, "ignoring event that does not change object content");
        return Ok(None);
    };
    let object = record.s3.object;
    Ok(Some(Change {
        kind,
        bucket: record.s3.bucket.name,
        key: decode_event_key(&object.key).map_err(|e| e.to_string())?,
        region: non_empty(record.aws_region),
        etag: non_empty(object.e_tag).map(|t| t.trim_matches('"').to_string()),
        size: object.size,
        sequencer: non_empty(object.sequencer),
        version_id: non_empty(object.version_id),
        alternate_key: None,
        event_time: epoch_millis(record.event_time.as_deref()),
        written: (kind == ChangeKind::Created)
            .then(|| Written::from_name(name))
            .flatten(),
    }))
}

fn kind_of_notification(name: &str) -> Option<ChangeKind> {
    if name.starts_with("ObjectCreated:") {
        Some(ChangeKind::Created)
    } else if name.starts_with("ObjectRemoved:") || name.starts_with("LifecycleExpiration:") {
        Some(ChangeKind::Removed)
    } else if name.starts_with("ObjectTagging:") {
        Some(ChangeKind::Tagged)
    } else if name == "ObjectRestore:Completed" {
        // A restored copy of an archived object can now be copied.
        Some(ChangeKind::Created)
    } else {
        None
    }
}

#[derive(Deserialize)]
struct EbEvent {
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    time: Option<String>,
    detail: EbDetail,
}

#[derive(Deserialize)]
struct EbDetail {
    bucket: S3Bucket,
    object: EbObject,
    /// How an object was created (`PutObject`, `POST Object`, `CopyObject`,
    /// `CompleteMultipartUpload`).
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct EbObject {
    key: String,
    #[serde(default)]
    size: Option<i64>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(rename = "version-id", default)]
    version_id: Option<String>,
    #[serde(default)]
    sequencer: Option<String>,
}

fn parse_eventbridge(value: &Value) -> Result<Option<Change>, EventError> {
    let event =
        EbEvent::deserialize(value).map_err(|e| EventError(format!("EventBridge event: {e}")))?;
    let kind = match event.detail_type.as_str() {
        "Object Created" => ChangeKind::Created,
        "Object Deleted" => ChangeKind::Removed,
        "Object Tags Added" | "Object Tags Deleted" => ChangeKind::Tagged,
        "Object Restore Completed" => ChangeKind::Created,
        other => {
            tracing::info!(
                detail_type = other,
                "ignoring EventBridge event that does not change object content"
            );
            return Ok(None);
        }
    };
    let written = match event.detail_type.as_str() {
        "Object Created" => event.detail.reason.as_deref().and_then(Written::from_name),
        _ => None,
    };
    let object = event.detail.object;
    Ok(Some(Change {
        kind,
        bucket: event.detail.bucket.name,
        // EventBridge delivers the key itself (AWS's own samples stopped decoding it after
        // testing real uploads); its form-decoded spelling is kept in case it is not.
        alternate_key: decode_event_key(&object.key)
            .ok()
            .filter(|decoded| *decoded != object.key),
        key: object.key,
        region: non_empty(event.region),
        etag: non_empty(object.etag).map(|t| t.trim_matches('"').to_string()),
        size: object.size,
        sequencer: non_empty(object.sequencer),
        version_id: non_empty(object.version_id),
        event_time: epoch_millis(event.time.as_deref()),
        written,
    }))
}

/// An event's ISO 8601 time (`2026-01-01T00:00:00.000Z`) in milliseconds since the Unix epoch.
/// A time that does not parse only costs the latency metric of this change, never its
/// replication: it is logged and dropped.
fn epoch_millis(time: Option<&str>) -> Option<u64> {
    let time = time.filter(|t| !t.is_empty())?;
    match DateTime::from_str(time, Format::DateTime).map(|t| t.to_millis()) {
        Ok(Ok(millis)) => u64::try_from(millis).ok(),
        _ => {
            tracing::warn!(
                event_time = time,
                "event time is not an ISO 8601 date-time; no latency measured"
            );
            None
        }
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests;
