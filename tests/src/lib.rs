//! Helpers for tests that run against the local S3 server started by `make test`
//! (`AWS_ENDPOINT_URL` points at it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration,
    Tag,
};
use aws_sdk_s3::Client;
use s3fanout::{Clients, Config, Replicator, Target};
use serde_json::{json, Value};

pub mod bench;

/// S3 clients for the local server, one per region.
pub async fn clients() -> Clients {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok() || std::env::var("AWS_ENDPOINT_URL_S3").is_ok(),
        "AWS_ENDPOINT_URL is not set: run these tests through `make test`, which starts the local S3 server"
    );
    Clients::from_env().await
}

/// S3 clients that reach the local server through `endpoint` (a fault proxy), retrying each
/// request up to `max_attempts` times with a short backoff so that fault tests stay fast.
pub async fn clients_via(endpoint: &str, max_attempts: u32) -> Clients {
    clients().await;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(max_attempts)
                .with_initial_backoff(std::time::Duration::from_millis(20))
                .with_max_backoff(std::time::Duration::from_millis(200)),
        )
        .load()
        .await;
    Clients::new(config, true)
}

/// The local server's endpoint.
pub fn local_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL_S3")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .expect("AWS_ENDPOINT_URL is not set: run these tests through `make test`")
}

/// Multipart uploads in progress in a bucket (there must be none after any copy, failed or not).
pub async fn uploads_in_progress(clients: &Clients, bucket: &str, region: &str) -> usize {
    let out = clients
        .for_region(region)
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.uploads().len()
}

/// A bucket name no other test uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// Creates a bucket in a region.
pub async fn create_bucket(clients: &Clients, name: &str, region: &str) {
    let client = clients.for_region(region);
    let mut request = client.create_bucket().bucket(name);
    if region != "us-east-1" {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
}

/// A source bucket and `n` target buckets in distinct regions, with a replicator for them.
pub struct Setup {
    /// S3 clients.
    pub clients: Clients,
    /// Source bucket (us-east-1).
    pub source: String,
    /// Configured targets.
    pub targets: Vec<Target>,
}

/// Regions used for targets, in order.
pub const TARGET_REGIONS: [&str; 4] = ["us-west-2", "eu-west-1", "ap-southeast-2", "us-east-2"];

impl Setup {
    /// Creates the buckets.
    pub async fn new(n_targets: usize) -> Self {
        let clients = clients().await;
        let source = unique("src");
        create_bucket(&clients, &source, "us-east-1").await;
        let mut targets = Vec::new();
        for region in TARGET_REGIONS.iter().take(n_targets) {
            let bucket = unique("rep");
            create_bucket(&clients, &bucket, region).await;
            targets.push(target(&bucket, region));
        }
        Setup {
            clients,
            source,
            targets,
        }
    }

    /// The configuration replicating `source` to the targets.
    pub fn config(&self) -> Config {
        Config::new([self.source.clone()], self.targets.clone())
    }

    /// A replicator over this setup with the given configuration.
    pub async fn replicator(&self, config: Config) -> Replicator {
        Replicator::new(config, clients().await)
    }

    /// Client for the source bucket.
    pub fn source_client(&self) -> Client {
        self.clients.for_region("us-east-1")
    }

    /// Client for a target bucket.
    pub fn target_client(&self, target: &Target) -> Client {
        self.clients.for_region(&target.region)
    }
}

/// A target without options.
pub fn target(bucket: &str, region: &str) -> Target {
    Target {
        bucket: bucket.to_string(),
        region: region.to_string(),
        prefix: String::new(),
        storage_class: None,
        kms_key_id: None,
    }
}

/// Puts an object with all the headers replication must preserve, and tags.
pub async fn put_rich(client: &Client, bucket: &str, key: &str, body: &[u8]) -> String {
    let out = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .content_type("text/plain; charset=utf-8")
        .cache_control("max-age=60")
        .content_encoding("identity")
        .content_disposition("attachment; filename=\"x.txt\"")
        .content_language("en-GB")
        .metadata("owner", "team-a")
        .metadata("note", "hello world")
        // A tag value with a space and one with a literal `+` (form-encoded in x-amz-tagging).
        .tagging("class=gold%2Bplated&team=data+lake&tier=1")
        .customize()
        .mutate_request(|req| {
            req.headers_mut()
                .insert("Expires", "Thu, 01 Dec 2033 16:00:00 GMT");
        })
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e:?}"));
    out.e_tag().unwrap().trim_matches('"').to_string()
}

/// Puts a plain object and returns its ETag without quotes.
pub async fn put(client: &Client, bucket: &str, key: &str, body: &[u8]) -> String {
    let out = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e:?}"));
    out.e_tag().unwrap().trim_matches('"').to_string()
}

/// Everything about an object that a replica must reproduce.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    /// Bytes.
    pub body: Vec<u8>,
    /// Content-Type, Cache-Control, Content-Encoding, Content-Disposition, Content-Language, Expires.
    pub headers: [Option<String>; 6],
    /// User metadata.
    pub metadata: HashMap<String, String>,
    /// Tags, sorted.
    pub tags: Vec<(String, String)>,
}

/// Reads an object fully, or `None` when it does not exist.
pub async fn snapshot(client: &Client, bucket: &str, key: &str) -> Option<Snapshot> {
    let out = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return None,
        Err(e) => panic!("get {bucket}/{key}: {e:?}"),
    };
    let headers = [
        out.content_type().map(str::to_string),
        out.cache_control().map(str::to_string),
        out.content_encoding().map(str::to_string),
        out.content_disposition().map(str::to_string),
        out.content_language().map(str::to_string),
        out.expires_string().map(str::to_string),
    ];
    let metadata = out.metadata().cloned().unwrap_or_default();
    let body = out.body.collect().await.unwrap().into_bytes().to_vec();
    let tagging = client
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let mut tags: Vec<(String, String)> = tagging
        .tag_set()
        .iter()
        .map(|t: &Tag| (t.key().to_string(), t.value().to_string()))
        .collect();
    tags.sort();
    Some(Snapshot {
        body,
        headers,
        metadata,
        tags,
    })
}

/// Asserts that a replica reproduces its source: bytes, headers, tags, and user metadata plus
/// the provenance keys.
pub async fn assert_replica(setup: &Setup, key: &str, target: &Target) {
    let source = snapshot(&setup.source_client(), &setup.source, key)
        .await
        .unwrap_or_else(|| panic!("source {key:?} is missing"));
    let replica_key = target.replica_key(key);
    let replica = snapshot(&setup.target_client(target), &target.bucket, &replica_key)
        .await
        .unwrap_or_else(|| panic!("replica {replica_key:?} is missing in {}", target.bucket));
    assert_eq!(
        replica.body, source.body,
        "body of {key:?} in {}",
        target.bucket
    );
    assert_eq!(
        replica.headers, source.headers,
        "headers of {key:?} in {}",
        target.bucket
    );
    assert_eq!(
        replica.tags, source.tags,
        "tags of {key:?} in {}",
        target.bucket
    );
    let mut expected = source.metadata.clone();
    let etag = head_etag(&setup.source_client(), &setup.source, key).await;
    expected.insert(s3fanout::provenance::SOURCE_ETAG.into(), etag.clone());
    expected.insert(
        s3fanout::provenance::SOURCE_BUCKET.into(),
        setup.source.clone(),
    );
    // A plain copy (a client's upload to a target that announces nothing) carries the
    // source's metadata alone: its ETag, equal to the source's, shows it current.
    let plain = replica.metadata == source.metadata
        && head_etag(&setup.target_client(target), &target.bucket, &replica_key).await == etag;
    if !plain {
        assert_eq!(
            replica.metadata, expected,
            "metadata of {key:?} in {}",
            target.bucket
        );
    }
}

/// The ETag of an object, without quotes.
pub async fn head_etag(client: &Client, bucket: &str, key: &str) -> String {
    let head = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    head.e_tag().unwrap().trim_matches('"').to_string()
}

/// An S3 notification record as AWS sends it (key form-URL-encoded).
pub fn s3_record(event_name: &str, bucket: &str, key: &str, etag: Option<&str>) -> Value {
    let encoded: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
    let mut object = json!({ "key": encoded, "size": 0, "sequencer": "0A" });
    if let Some(etag) = etag {
        object["eTag"] = etag.into();
    }
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "eventName": event_name,
        "userIdentity": { "principalId": "AWS:EXAMPLE" },
        "requestParameters": { "sourceIPAddress": "127.0.0.1" },
        "responseElements": {},
        "s3": { "s3SchemaVersion": "1.0", "configurationId": "replicate",
                "bucket": { "name": bucket, "arn": format!("arn:aws:s3:::{bucket}") },
                "object": object }
    })
}

/// A created-object change, as an event announces it.
pub fn created(bucket: &str, key: &str, etag: Option<&str>) -> s3fanout::Change {
    s3fanout::Change {
        kind: s3fanout::ChangeKind::Created,
        bucket: bucket.to_string(),
        key: key.to_string(),
        region: None,
        etag: etag.map(str::to_string),
        size: None,
        sequencer: None,
        version_id: None,
        alternate_key: None,
        event_time: None,
        written: None,
    }
}

/// A created-object change as an event of a client's `PutObject` announces it: ETag, size and
/// how it was written.
pub fn uploaded(bucket: &str, key: &str, etag: &str, size: usize) -> s3fanout::Change {
    s3fanout::Change {
        size: Some(size as i64),
        written: Some(s3fanout::core::change::Written::Uploaded),
        ..created(bucket, key, Some(etag))
    }
}

/// Puts an object of `size` bytes (a repeating pattern, so that offsets matter).
pub async fn put_sized(client: &Client, bucket: &str, key: &str, size: usize) -> String {
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    put(client, bucket, key, &body).await
}

/// Uploads an object as a multipart upload with parts of the given sizes (as SDKs and the CLI
/// upload large files); returns its ETag (`…-N`) without quotes.
pub async fn put_in_parts(
    client: &Client,
    bucket: &str,
    key: &str,
    part_sizes: &[usize],
) -> String {
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap();
    let mut parts = Vec::new();
    for (i, size) in part_sizes.iter().enumerate() {
        let number = i as i32 + 1;
        let body: Vec<u8> = (0..*size).map(|b| ((b + i) % 251) as u8).collect();
        let out = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap_or_else(|e| panic!("upload part {number} of {bucket}/{key}: {e:?}"));
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    let done = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    done.e_tag().unwrap().trim_matches('"').to_string()
}

/// An S3 notification with the given records.
pub fn notification(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

/// An SQS event whose messages carry the given bodies, with ids `m0`, `m1`, ...
pub fn sqs_event(bodies: &[Value]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let body = match body {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            json!({ "messageId": format!("m{i}"), "body": body, "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1" })
        })
        .collect();
    json!({ "Records": records })
}
