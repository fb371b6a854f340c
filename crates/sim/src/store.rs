//! The simulated S3: buckets, objects, uploads, faults and another writer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use s3fanout::core::change::Written;
use s3fanout::core::decide::{MAX_PARTS, MAX_PART_BYTES, MIN_PART_BYTES};
use s3fanout::core::keys::MAX_KEY_BYTES;
use s3fanout::core::object::{
    Access, Checksum, ChecksumAlgorithm, ContentHeaders, Listed, ObjectHead, Tag,
};
use s3fanout::store::{
    CopiedPart, CopyRange, CopyRequest, Directive, Landed, ListFrom, ListPage, ObjectAt, Part,
    PartCopyRequest, ReplicaAttributes, SmallObject, Upload, WriteCondition,
};
use s3fanout::{Failure, FailureKind, Store};

use crate::content::{digest_of, Content};
use crate::rng::Rng;

/// S3's limit on user metadata: keys and values, in bytes.
const MAX_METADATA_BYTES: usize = 2048;
/// S3's limit on tags per object.
const MAX_TAGS: usize = 10;
/// Lines of trace kept for a failing run.
const TRACE_LINES: usize = 20_000;

/// What goes wrong, and how often.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Share of requests that fail (throttling, 500, reset, timeout).
    pub error_rate: f64,
    /// Each request waits up to this long before and after it takes effect.
    pub max_latency: Duration,
    /// Share of requests before which another client writes or deletes a source object.
    pub other_writer_rate: f64,
    /// Share of requests that are slow (S3's tail latency): up to 50 times `max_latency`.
    pub slow_rate: f64,
}

impl Faults {
    /// No faults, no latency, no other writer.
    pub const NONE: Faults = Faults {
        error_rate: 0.0,
        max_latency: Duration::ZERO,
        other_writer_rate: 0.0,
        slow_rate: 0.0,
    };
}

/// Created or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// `ObjectCreated:*`.
    Created,
    /// `ObjectRemoved:*`.
    Removed,
    /// `ObjectTagging:*`.
    Tagged,
    /// `ObjectRestore:Completed`: a restored copy of an archived object can be read.
    Restored,
}

/// An event notification a write to a notifying bucket produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Created or removed.
    pub kind: NoticeKind,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// ETag of the new object (created only).
    pub etag: Option<String>,
    /// Size of the new object.
    pub size: u64,
    /// Order of the writes.
    pub sequencer: u64,
    /// How a created object was written (its event's name: `ObjectCreated:Put`, `:Copy`,
    /// `:CompleteMultipartUpload`).
    pub written: Option<Written>,
}

impl Notice {
    /// The `eventName` of its S3 notification record.
    pub fn event_name(&self) -> &'static str {
        match (self.kind, self.written) {
            (NoticeKind::Created, Some(Written::Copied)) => "ObjectCreated:Copy",
            (NoticeKind::Created, Some(Written::Assembled)) => {
                "ObjectCreated:CompleteMultipartUpload"
            }
            (NoticeKind::Created, _) => "ObjectCreated:Put",
            (NoticeKind::Removed, _) => "ObjectRemoved:Delete",
            (NoticeKind::Tagged, _) => "ObjectTagging:Put",
            (NoticeKind::Restored, _) => "ObjectRestore:Completed",
        }
    }

    /// The `detail.reason` of its EventBridge event, for a creation.
    pub fn reason(&self) -> Option<&'static str> {
        match (self.kind, self.written) {
            (NoticeKind::Created, Some(Written::Uploaded)) => Some("PutObject"),
            (NoticeKind::Created, Some(Written::Copied)) => Some("CopyObject"),
            (NoticeKind::Created, Some(Written::Assembled)) => Some("CompleteMultipartUpload"),
            _ => None,
        }
    }
}

/// An object a client writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewObject {
    /// Bytes.
    pub size: u64,
    /// Part size, for an object uploaded by parts (as SDKs upload large files).
    pub parts: Option<u64>,
    /// Content headers.
    pub headers: ContentHeaders,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Storage class.
    pub storage_class: Option<String>,
    /// Written under SSE-KMS (besides a bucket whose default encryption is KMS).
    pub kms: bool,
    /// Written before S3 stored a full-object checksum with every object.
    pub without_checksum: bool,
    /// The algorithm of its full-object checksum (`None`: CRC64NVME, S3's default; SDKs send
    /// CRC32 by default).
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// Under SSE-KMS, the ETag S3 gives it: not a digest of its bytes, so nothing keeps it from
    /// equalling another object's (`None`: a fresh one, as S3 does).
    pub kms_etag: Option<String>,
    /// For an object uploaded by parts: how long before it completes its upload was
    /// initiated (its Last-Modified is then the initiation time).
    pub initiated_ago: Duration,
}

impl NewObject {
    /// `size` bytes of text with one metadata pair, as most tests need.
    pub fn plain(size: u64) -> Self {
        NewObject {
            size,
            headers: ContentHeaders {
                content_type: Some("text/plain".into()),
                ..Default::default()
            },
            metadata: BTreeMap::from([("k".to_string(), "v".to_string())]),
            ..Default::default()
        }
    }
}

/// An object as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimObject {
    /// Its bytes.
    pub content: Content,
    /// ETag without quotes.
    pub etag: String,
    /// Content headers.
    pub headers: ContentHeaders,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Storage class (`None`: STANDARD).
    pub storage_class: Option<String>,
    /// Part sizes, for objects made by a multipart upload.
    pub parts: Option<Vec<u64>>,
    /// When it was written (virtual milliseconds): for an object completed by a multipart
    /// upload, when that upload was initiated.
    pub written_ms: i64,
    /// Encrypted under SSE-KMS: its ETag is not a digest of its bytes.
    pub kms: bool,
    /// Its full-object checksum (CRC64NVME), when it has one.
    pub checksum: Option<String>,
    /// Whether a restored copy of it can be read (archived storage classes only).
    pub restored: bool,
}

impl SimObject {
    /// Whether CopyObject and UploadPartCopy refuse it: archived and not restored.
    pub fn archived(&self) -> bool {
        matches!(
            self.storage_class.as_deref(),
            Some("GLACIER" | "DEEP_ARCHIVE")
        ) && !self.restored
    }
}

/// The full-object checksum (CRC64NVME) of some bytes, symbolically: equal exactly when the
/// bytes are.
pub fn checksum_of(content: &Content) -> String {
    checksum_with(ChecksumAlgorithm::Crc64Nvme, content)
}

/// The full-object checksum of some bytes in `algorithm`, symbolically.
pub fn checksum_with(algorithm: ChecksumAlgorithm, content: &Content) -> String {
    format!("{}:{}", algorithm_name(algorithm), content.digest())
}

fn algorithm_name(algorithm: ChecksumAlgorithm) -> &'static str {
    match algorithm {
        ChecksumAlgorithm::Crc64Nvme => "crc64nvme",
        ChecksumAlgorithm::Crc32 => "crc32",
        ChecksumAlgorithm::Crc32C => "crc32c",
    }
}

/// The algorithm of a symbolic checksum.
fn algorithm_of(checksum: &str) -> ChecksumAlgorithm {
    match checksum.split_once(':').map(|(name, _)| name) {
        Some("crc32") => ChecksumAlgorithm::Crc32,
        Some("crc32c") => ChecksumAlgorithm::Crc32C,
        _ => ChecksumAlgorithm::Crc64Nvme,
    }
}

#[derive(Debug, Default)]
struct Bucket {
    objects: BTreeMap<String, SimObject>,
    uploads: BTreeMap<String, SimUpload>,
    notify: bool,
    /// Default encryption SSE-KMS.
    kms: bool,
    /// Configured as a website (`PutBucketWebsite`): the only way S3 uses objects' website
    /// redirect locations.
    website: bool,
}

#[derive(Debug, Clone)]
struct SimUpload {
    key: String,
    headers: ContentHeaders,
    metadata: BTreeMap<String, String>,
    tags: Vec<Tag>,
    storage_class: Option<String>,
    /// Each part's bytes, ETag and checksum (in `checksum`'s algorithm).
    parts: BTreeMap<u32, (Content, String, String)>,
    initiated_ms: i64,
    kms: bool,
    /// The upload's full-object checksum algorithm (`x-amz-checksum-algorithm` with type
    /// `FULL_OBJECT`).
    checksum: ChecksumAlgorithm,
}

#[derive(Debug)]
struct OtherWriter {
    bucket: String,
    keys: Vec<String>,
    budget: u32,
}

#[derive(Debug)]
struct State {
    rng: Rng,
    faults: Faults,
    buckets: BTreeMap<String, Bucket>,
    notices: Vec<Notice>,
    trace: VecDeque<String>,
    next_id: u64,
    sequencer: u64,
    other: Option<OtherWriter>,
    requests: BTreeMap<&'static str, u64>,
    applied: BTreeMap<&'static str, u64>,
    next_upload: u64,
    epoch: tokio::time::Instant,
    /// The real bytes of objects written with `put_small_object`, by ETag (every other
    /// object's bytes are symbolic).
    small_bodies: BTreeMap<String, Vec<u8>>,
    /// Failures scripted by a test: once `trigger` has taken effect, the next `count`
    /// requests of `op` fail with 500.
    scripted: Vec<Scripted>,
    /// Whether two notifications of one key close in time may merge into one.
    lose_notices: bool,
    /// When each key's last notification was produced (virtual milliseconds), by bucket.
    last_notice_ms: BTreeMap<(String, String), i64>,
    /// Notifications lost to merging.
    lost: u64,
    /// Buckets whose region is unavailable: every request to them fails, as in a regional
    /// outage.
    unavailable: BTreeSet<String>,
    /// Requests sent to each bucket, by bucket.
    by_bucket: BTreeMap<String, u64>,
    /// Most writes a second per partitioned prefix, when S3's request-rate limit is modelled.
    prefix_write_limit: Option<u32>,
    /// Writes in the current virtual second, by bucket and partitioned prefix.
    prefix_writes: BTreeMap<(String, String), (u64, u32)>,
    /// Writes refused with `SlowDown` by that limit.
    slowed_down: u64,
}

/// Requests S3 counts against a prefix's write rate: "3,500 PUT/COPY/POST/DELETE".
const WRITES: [&str; 7] = [
    "PutObject",
    "CopyObject",
    "UploadPartCopy",
    "CreateMultipartUpload",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "DeleteObject",
];

/// The partitioned prefix a key's writes count against, as the model draws it: the key up to
/// its first `/` (the bucket's root for a key without one).
fn partition_of(key: &str) -> &str {
    key.find('/').map_or("", |end| &key[..=end])
}

/// Two writes of one key within this time may produce a single notification.
const MERGE_WINDOW_MS: i64 = 50;

/// A failure a test asks for.
#[derive(Debug)]
struct Scripted {
    trigger: Option<&'static str>,
    op: &'static str,
    count: u32,
}

/// The simulated S3. Clones share one S3, as two deployments' clients do.
#[derive(Debug, Clone)]
pub struct SimStore {
    state: std::sync::Arc<Mutex<State>>,
}

enum Fault {
    None,
    Before(Failure),
    After(Failure),
}

fn error(status: u16, code: &str, message: String) -> Failure {
    Failure::from_response(Some(status), Some(code), message)
}

fn metadata_bytes(metadata: &BTreeMap<String, String>) -> usize {
    metadata.iter().map(|(k, v)| k.len() + v.len()).sum()
}

impl State {
    /// `SlowDown` when this write is over its prefix's rate in the current virtual second.
    fn over_write_rate(&mut self, op: &str, place: &str, bucket: &str) -> Option<Failure> {
        let limit = self.prefix_write_limit?;
        if !WRITES.contains(&op) {
            return None;
        }
        let key = place
            .trim_start_matches("s3://")
            .split_once('/')
            .map_or("", |(_, key)| key);
        let second = (tokio::time::Instant::now() - self.epoch).as_secs();
        let slot = self
            .prefix_writes
            .entry((bucket.to_string(), partition_of(key).to_string()))
            .or_insert((second, 0));
        if slot.0 != second {
            *slot = (second, 0);
        }
        if slot.1 >= limit {
            self.slowed_down += 1;
            return Some(error(
                503,
                "SlowDown",
                format!("{op} {place}: SlowDown (HTTP 503): Please reduce your request rate."),
            ));
        }
        slot.1 += 1;
        None
    }

    fn log(&mut self, line: String) {
        if self.trace.len() == TRACE_LINES {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    fn bucket(&mut self, name: &str, op: &str) -> Result<&mut Bucket, Failure> {
        self.buckets.get_mut(name).ok_or_else(|| {
            error(
                404,
                "NoSuchBucket",
                format!("{op} s3://{name}: NoSuchBucket (HTTP 404): The specified bucket does not exist"),
            )
        })
    }

    fn fault(&mut self, op: &str, place: &str) -> Fault {
        if let Some(script) = self
            .scripted
            .iter_mut()
            .find(|s| s.trigger.is_none() && s.op == op && s.count > 0)
        {
            script.count -= 1;
            return Fault::Before(error(
                500,
                "InternalError",
                format!("{op} {place}: InternalError (HTTP 500): scripted"),
            ));
        }
        if !self.rng.chance(self.faults.error_rate) {
            return Fault::None;
        }
        let which = self.rng.below(0..4);
        let failure = match which {
            0 => error(
                503,
                "SlowDown",
                format!("{op} {place}: SlowDown (HTTP 503): Please reduce your request rate."),
            ),
            1 => error(
                500,
                "InternalError",
                format!(
                    "{op} {place}: InternalError (HTTP 500): We encountered an internal error."
                ),
            ),
            2 => Failure::new(
                FailureKind::Retryable,
                format!("{op} {place}: connection reset by peer"),
            ),
            _ => Failure::new(
                FailureKind::Retryable,
                format!("{op} {place}: timed out waiting for the response"),
            ),
        };
        // A reset or a timeout may come after S3 did the work: the response is what was lost.
        if which >= 2 && self.rng.chance(0.5) {
            Fault::After(failure)
        } else {
            Fault::Before(failure)
        }
    }

    /// Announces a change, unless it merges with the key's previous notification: "If two
    /// writes are made to a single non-versioned object at the same time, it is possible that
    /// only a single event notification will be sent" (S3 user guide, "Amazon S3 Event
    /// Notifications"). Either of the two may be the one left.
    fn announce(&mut self, notice: Notice) {
        let now = self.now_ms();
        let place = (notice.bucket.clone(), notice.key.clone());
        let previous = self.last_notice_ms.insert(place, now);
        let racing = previous.is_some_and(|at| now - at <= MERGE_WINDOW_MS);
        if self.lose_notices && racing {
            let waiting = self
                .notices
                .iter()
                .rposition(|n| n.bucket == notice.bucket && n.key == notice.key);
            if let Some(index) = waiting {
                self.lost += 1;
                if self.rng.chance(0.5) {
                    self.log(format!(
                        "notification of s3://{}/{} lost (merged with the one before)",
                        notice.bucket, notice.key
                    ));
                    return;
                }
                self.log(format!(
                    "notification of s3://{}/{} lost (merged with the one after)",
                    notice.bucket, notice.key
                ));
                self.notices.remove(index);
            }
        }
        self.notices.push(notice);
    }

    fn put_object(&mut self, bucket: &str, key: &str, mut object: SimObject, written: Written) {
        self.put_object_at(
            bucket,
            key,
            {
                object.written_ms = self.now_ms();
                object
            },
            written,
        );
    }

    /// Stores an object whose Last-Modified is already set.
    fn put_object_at(&mut self, bucket: &str, key: &str, object: SimObject, written: Written) {
        let notice = Notice {
            kind: NoticeKind::Created,
            bucket: bucket.to_string(),
            key: key.to_string(),
            etag: Some(object.etag.clone()),
            size: object.content.len(),
            sequencer: self.next_sequencer(),
            written: Some(written),
        };
        let Some(b) = self.buckets.get_mut(bucket) else {
            return;
        };
        let notify = b.notify;
        b.objects.insert(key.to_string(), object);
        if notify {
            self.announce(notice);
        }
    }

    fn remove_object(&mut self, bucket: &str, key: &str) -> bool {
        let sequencer = self.next_sequencer();
        let Some(b) = self.buckets.get_mut(bucket) else {
            return false;
        };
        let existed = b.objects.remove(key).is_some();
        if b.notify {
            self.announce(Notice {
                kind: NoticeKind::Removed,
                bucket: bucket.to_string(),
                key: key.to_string(),
                etag: None,
                size: 0,
                sequencer,
                written: None,
            });
        }
        existed
    }

    /// Virtual milliseconds since the epoch of this store (a fixed, plausible date).
    fn now_ms(&self) -> i64 {
        1_790_000_000_000 + self.epoch.elapsed().as_millis() as i64
    }

    fn next_sequencer(&mut self) -> u64 {
        self.sequencer += 1;
        self.sequencer
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The ETag of a single-part write: the digest of its bytes, or under SSE-KMS a value that
    /// is not, and differs on every write of the same bytes (S3 API reference, `Object`:
    /// "Objects created by the PUT Object, POST Object, or Copy operation ... encrypted by
    /// SSE-C or SSE-KMS, have ETags that are not an MD5 digest of their object data").
    fn etag_for(&mut self, content: &Content, kms: bool) -> String {
        if kms {
            let id = self.fresh_id();
            digest_of(&format!("kms-{id}"))
        } else {
            content.digest()
        }
    }

    fn bucket_kms(&self, bucket: &str) -> bool {
        self.buckets.get(bucket).is_some_and(|b| b.kms)
    }

    /// Another client writes or deletes a source object, between two of the engine's steps.
    fn maybe_other_write(&mut self) {
        if !self.rng.chance(self.faults.other_writer_rate) {
            return;
        }
        let Some(other) = &mut self.other else {
            return;
        };
        if other.budget == 0 || other.keys.is_empty() {
            return;
        }
        other.budget -= 1;
        let bucket = other.bucket.clone();
        let key = other.keys[self.rng.below(0..other.keys.len() as u64) as usize].clone();
        if self.rng.chance(0.3) {
            self.log(format!("other client: delete s3://{bucket}/{key}"));
            self.remove_object(&bucket, &key);
        } else {
            // Small objects copy in one request; larger ones by parts, over many requests.
            let size = if self.rng.chance(0.5) {
                self.rng.below(1..3 * 1024 * 1024)
            } else {
                self.rng.below(6 * 1024 * 1024..12 * 1024 * 1024)
            };
            let id = self.fresh_id();
            let content = Content::fresh(id, size);
            let kms = self.bucket_kms(&bucket);
            let object = SimObject {
                etag: self.etag_for(&content, kms),
                checksum: Some(checksum_of(&content)),
                content,
                headers: ContentHeaders {
                    content_type: Some(format!("text/v{id}")),
                    ..Default::default()
                },
                metadata: BTreeMap::from([("writer".to_string(), format!("other-{id}"))]),
                tags: vec![],
                storage_class: None,
                parts: None,
                written_ms: 0,
                kms,
                restored: false,
            };
            self.log(format!(
                "other client: put s3://{bucket}/{key} ({size} B, etag {})",
                object.etag
            ));
            self.put_object(&bucket, &key, object, Written::Uploaded);
        }
    }

    fn head_of(&self, object: &SimObject) -> ObjectHead {
        ObjectHead {
            etag: object.etag.clone(),
            size: object.content.len(),
            headers: object.headers.clone(),
            metadata: object.metadata.clone(),
            storage_class: object.storage_class.clone(),
            parts_count: None,
            // S3's Last-Modified header has whole seconds.
            last_modified_ms: Some(object.written_ms - object.written_ms % 1000),
            checksum: object.checksum.as_ref().map(|value| Checksum {
                algorithm: algorithm_of(value),
                value: value.clone(),
            }),
            kms: object.kms,
            access: if object.archived() {
                Access::Archived
            } else {
                Access::Ready
            },
        }
    }

    /// The object a write replaces must satisfy the write's condition.
    fn check_condition(
        &self,
        bucket: &str,
        key: &str,
        condition: &WriteCondition,
        op: &str,
    ) -> Result<(), Failure> {
        let current = self.buckets.get(bucket).and_then(|b| b.objects.get(key));
        let place = format!("s3://{bucket}/{key}");
        match (condition, current) {
            (WriteCondition::Any, _) => Ok(()),
            (WriteCondition::Exists, Some(_)) => Ok(()),
            (WriteCondition::Exists, None) => Err(error(
                404,
                "NoSuchKey",
                format!("{op} {place}: NoSuchKey (HTTP 404): If-Match: * on a missing key"),
            )),
            (WriteCondition::Absent, None) => Ok(()),
            (WriteCondition::Absent, Some(_)) => Err(error(
                412,
                "PreconditionFailed",
                format!("{op} {place}: PreconditionFailed (HTTP 412): If-None-Match: * and the key exists"),
            )),
            (WriteCondition::Matches(_), None) => Err(error(
                404,
                "NoSuchKey",
                format!("{op} {place}: NoSuchKey (HTTP 404): If-Match on a missing key"),
            )),
            (WriteCondition::Matches(etag), Some(object)) if object.etag == *etag => Ok(()),
            (WriteCondition::Matches(_), Some(_)) => Err(error(
                412,
                "PreconditionFailed",
                format!("{op} {place}: PreconditionFailed (HTTP 412): If-Match does not match"),
            )),
        }
    }

    /// The source of a copy, pinned to an ETag.
    fn copy_source(
        &mut self,
        source: ObjectAt<'_>,
        etag: &str,
        op: &str,
    ) -> Result<SimObject, Failure> {
        let place = format!("s3://{}/{}", source.bucket, source.key);
        let bucket = self.bucket(source.bucket, op)?;
        let object = bucket.objects.get(source.key).cloned().ok_or_else(|| {
            error(
                404,
                "NoSuchKey",
                format!("{op} {place}: NoSuchKey (HTTP 404): The specified key does not exist."),
            )
        })?;
        if object.etag != etag {
            return Err(error(
                412,
                "PreconditionFailed",
                format!("{op} {place}: PreconditionFailed (HTTP 412): x-amz-copy-source-if-match"),
            ));
        }
        if object.archived() {
            return Err(error(
                403,
                "ObjectNotInActiveTierError",
                format!("{op} {place}: ObjectNotInActiveTierError (HTTP 403): The source object of the COPY action is not in the active tier and is only stored in Amazon S3 Glacier."),
            ));
        }
        Ok(object)
    }
}

fn check_key(key: &str, op: &str) -> Result<(), Failure> {
    if key.len() > MAX_KEY_BYTES {
        return Err(error(
            400,
            "KeyTooLongError",
            format!(
                "{op}: KeyTooLongError (HTTP 400): key of {} bytes",
                key.len()
            ),
        ));
    }
    Ok(())
}

fn check_metadata(metadata: &BTreeMap<String, String>, op: &str) -> Result<(), Failure> {
    let bytes = metadata_bytes(metadata);
    if bytes > MAX_METADATA_BYTES {
        return Err(error(
            400,
            "MetadataTooLarge",
            format!(
                "{op}: MetadataTooLarge (HTTP 400): {bytes} bytes of user metadata, above 2 KB"
            ),
        ));
    }
    Ok(())
}

fn check_tags(tags: &[Tag], op: &str) -> Result<(), Failure> {
    if tags.len() > MAX_TAGS {
        return Err(error(
            400,
            "BadRequest",
            format!("{op}: BadRequest (HTTP 400): {} tags, above 10", tags.len()),
        ));
    }
    for tag in tags {
        let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
        if tag.key.len() > 128 || tag.value.len() > 256 || !tag.value.chars().all(allowed) {
            return Err(error(
                400,
                "InvalidTag",
                format!("{op}: InvalidTag (HTTP 400): {:?}={:?}", tag.key, tag.value),
            ));
        }
    }
    Ok(())
}

impl SimStore {
    /// A store whose randomness all comes from `seed`.
    pub fn new(seed: u64, faults: Faults) -> Self {
        SimStore {
            state: std::sync::Arc::new(Mutex::new(State {
                rng: Rng::new(seed),
                faults,
                buckets: BTreeMap::new(),
                notices: Vec::new(),
                trace: VecDeque::new(),
                next_id: 0,
                sequencer: 0,
                other: None,
                requests: BTreeMap::new(),
                applied: BTreeMap::new(),
                next_upload: 0,
                epoch: tokio::time::Instant::now(),
                small_bodies: BTreeMap::new(),
                scripted: Vec::new(),
                lose_notices: false,
                last_notice_ms: BTreeMap::new(),
                lost: 0,
                unavailable: BTreeSet::new(),
                by_bucket: BTreeMap::new(),
                prefix_write_limit: None,
                prefix_writes: BTreeMap::new(),
                slowed_down: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Limits writes (PUT, COPY, POST, DELETE) to `per_second` a second per partitioned prefix
    /// of each bucket, answering `503 SlowDown` past it, as S3 does: "your application can
    /// achieve at least 3,500 PUT/COPY/POST/DELETE or 5,500 GET/HEAD requests per second per
    /// partitioned Amazon S3 prefix" (S3 User Guide, Best practices design patterns:
    /// optimizing Amazon S3 performance). A prefix here is a key's first path segment; S3
    /// partitions further as load grows, which the model leaves out: it errs slow.
    pub fn limit_prefix_writes(&self, per_second: u32) {
        self.lock().prefix_write_limit = Some(per_second);
    }

    /// Writes refused by [`SimStore::limit_prefix_writes`] so far.
    pub fn slowed_down(&self) -> u64 {
        self.lock().slowed_down
    }

    /// Creates a bucket; writes to a notifying bucket produce [`Notice`]s.
    pub fn create_bucket(&self, name: &str, notify: bool) {
        self.lock().buckets.insert(
            name.to_string(),
            Bucket {
                notify,
                ..Bucket::default()
            },
        );
    }

    /// Makes SSE-KMS the default encryption of a bucket: every object written to it from now
    /// on has an ETag that is not a digest of its bytes.
    pub fn encrypt_by_default(&self, bucket: &str) {
        if let Some(b) = self.lock().buckets.get_mut(bucket) {
            b.kms = true;
        }
    }

    /// Lets two notifications of one key produced within 50 ms merge into one, as S3 may.
    pub fn lose_racing_notices(&self) {
        self.lock().lose_notices = true;
    }

    /// Notifications lost to merging so far.
    pub fn lost_notices(&self) -> u64 {
        self.lock().lost
    }

    /// Restores an archived object, as `RestoreObject` does once the restore completes: a
    /// copy can be read, and a notifying bucket announces `ObjectRestore:Completed`.
    pub fn restore(&self, bucket: &str, key: &str) {
        let mut state = self.lock();
        state.log(format!("client: restore of s3://{bucket}/{key} completed"));
        let sequencer = state.next_sequencer();
        let Some(b) = state.buckets.get_mut(bucket) else {
            return;
        };
        let notify = b.notify;
        let Some(object) = b.objects.get_mut(key) else {
            return;
        };
        object.restored = true;
        let notice = Notice {
            kind: NoticeKind::Restored,
            bucket: bucket.to_string(),
            key: key.to_string(),
            etag: Some(object.etag.clone()),
            size: object.content.len(),
            sequencer,
            written: None,
        };
        if notify {
            state.announce(notice);
        }
    }

    /// Once a request of `trigger` has taken effect, the next `count` requests of `op` fail
    /// with 500 InternalError before they take effect.
    pub fn fail_after(&self, trigger: &'static str, op: &'static str, count: u32) {
        self.lock().scripted.push(Scripted {
            trigger: Some(trigger),
            op,
            count,
        });
    }

    /// Makes a bucket's region unavailable, or available again: while it is, every request to
    /// the bucket fails before taking effect with 503 ServiceUnavailable or a timeout, the
    /// errors a client sees in a regional outage (S3 documents 503 for "Service is unable to
    /// handle request"; AWS's summary of the us-east-1 S3 event of 2017-02-28 describes
    /// requests failing for about four hours).
    pub fn set_unavailable(&self, bucket: &str, unavailable: bool) {
        let mut state = self.lock();
        state.log(format!("client: s3://{bucket} unavailable: {unavailable}"));
        if unavailable {
            state.unavailable.insert(bucket.to_string());
        } else {
            state.unavailable.remove(bucket);
        }
    }

    /// Requests sent to `bucket` so far (served or failed).
    pub fn requests_to(&self, bucket: &str) -> u64 {
        self.lock()
            .by_bucket
            .get(bucket)
            .copied()
            .unwrap_or_default()
    }

    /// Changes the faults from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Lets another client write or delete these keys of `bucket`, at most `budget` times.
    pub fn set_other_writer(&self, bucket: &str, keys: Vec<String>, budget: u32) {
        self.lock().other = Some(OtherWriter {
            bucket: bucket.to_string(),
            keys,
            budget,
        });
    }

    /// A fresh content id.
    pub fn fresh_id(&self) -> u64 {
        self.lock().fresh_id()
    }

    /// Writes an object as a client would (no faults).
    pub fn put(&self, bucket: &str, key: &str, new: NewObject) -> String {
        let NewObject {
            size,
            parts,
            headers,
            metadata,
            tags,
            storage_class,
            kms,
            without_checksum,
            checksum_algorithm,
            kms_etag,
            initiated_ago,
        } = new;
        let mut state = self.lock();
        let kms = kms || state.bucket_kms(bucket);
        let id = state.fresh_id();
        let content = Content::fresh(id, size);
        let multipart = parts.is_some_and(|p| p > 0);
        let (etag, parts) = match parts {
            Some(part) if part > 0 => {
                let count = size.div_ceil(part).max(1);
                let sizes: Vec<u64> = (0..count)
                    .map(|i| part.min(size - i * part.min(size)))
                    .collect();
                let mut etags = String::new();
                let mut at = 0;
                for s in &sizes {
                    let part = content.range(at, at + s - 1);
                    etags.push_str(&state.etag_for(&part, kms));
                    at += s;
                }
                (format!("{}-{count}", digest_of(&etags)), Some(sizes))
            }
            _ => (state.etag_for(&content, kms), None),
        };
        let etag = match kms_etag {
            Some(chosen) => {
                assert!(
                    kms,
                    "only an SSE-KMS object's ETag is not a digest of its bytes"
                );
                chosen
            }
            None => etag,
        };
        // "Last-Modified ... for a multipart upload, is the date the upload was initiated"
        // (public reports: treeverse/lakeFS issue 8303): an upload that began before another
        // writer's request can complete after it with an older Last-Modified.
        let initiated = if multipart {
            initiated_ago.as_millis() as i64
        } else {
            0
        };
        let object = SimObject {
            checksum: (!without_checksum).then(|| {
                checksum_with(
                    checksum_algorithm.unwrap_or(ChecksumAlgorithm::Crc64Nvme),
                    &content,
                )
            }),
            content,
            etag: etag.clone(),
            headers,
            metadata,
            tags,
            storage_class,
            parts,
            written_ms: state.now_ms() - initiated,
            kms,
            restored: false,
        };
        state.log(format!(
            "client: put s3://{bucket}/{key} ({size} B, etag {etag}{})",
            if kms { ", SSE-KMS" } else { "" }
        ));
        let written = if object.parts.is_some() {
            Written::Assembled
        } else {
            Written::Uploaded
        };
        state.put_object_at(bucket, key, object, written);
        etag
    }

    /// Makes an older version current, as deleting the latest version of a versioned bucket
    /// does: the object is there, and what is announced is a removal.
    pub fn roll_back(&self, bucket: &str, key: &str, older: NewObject) {
        self.put(bucket, key, older);
        let mut state = self.lock();
        let last = state.notices.last();
        if !last.is_some_and(|n| n.key == key && n.bucket == bucket) {
            return;
        }
        let Some(notice) = state.notices.pop() else {
            return;
        };
        state.log(format!(
            "client: rolled s3://{bucket}/{key} back (a removal is announced)"
        ));
        let sequencer = state.next_sequencer();
        state.notices.push(Notice {
            kind: NoticeKind::Removed,
            etag: None,
            size: 0,
            sequencer,
            written: None,
            ..notice
        });
    }

    /// Configures a bucket as a website, or removes its website configuration.
    pub fn set_website(&self, bucket: &str, website: bool) {
        if let Some(b) = self.lock().buckets.get_mut(bucket) {
            b.website = website;
        }
    }

    /// Whether a bucket is configured as a website.
    pub fn is_website(&self, bucket: &str) -> bool {
        self.lock().buckets.get(bucket).is_some_and(|b| b.website)
    }

    /// Whether a bucket announces its changes.
    pub fn notifies(&self, bucket: &str) -> bool {
        self.lock().buckets.get(bucket).is_some_and(|b| b.notify)
    }

    /// Deletes an object as a client would; whether it existed.
    pub fn remove(&self, bucket: &str, key: &str) -> bool {
        let mut state = self.lock();
        state.log(format!("client: delete s3://{bucket}/{key}"));
        state.remove_object(bucket, key)
    }

    /// Sets an object's tags as a client would; a notifying bucket announces it.
    pub fn set_tags(&self, bucket: &str, key: &str, tags: Vec<Tag>) {
        let mut state = self.lock();
        state.log(format!("client: tags of s3://{bucket}/{key} := {tags:?}"));
        let sequencer = state.next_sequencer();
        let Some(b) = state.buckets.get_mut(bucket) else {
            return;
        };
        let Some(object) = b.objects.get_mut(key) else {
            return;
        };
        object.tags = tags;
        let notice = Notice {
            kind: NoticeKind::Tagged,
            bucket: bucket.to_string(),
            key: key.to_string(),
            etag: Some(object.etag.clone()),
            size: object.content.len(),
            sequencer,
            written: None,
        };
        if b.notify {
            state.announce(notice);
        }
    }

    /// Replaces an object's headers and metadata in place, as `CopyObject` of an object onto
    /// itself does: same bytes, and the same ETag unless the object was made by parts (the copy
    /// is a single-part object).
    pub fn replace_metadata(
        &self,
        bucket: &str,
        key: &str,
        headers: ContentHeaders,
        metadata: BTreeMap<String, String>,
    ) {
        let mut state = self.lock();
        let Some(mut object) = state
            .buckets
            .get(bucket)
            .and_then(|b| b.objects.get(key).cloned())
        else {
            return;
        };
        state.log(format!(
            "client: in-place copy of s3://{bucket}/{key} with new metadata"
        ));
        object.headers = headers;
        object.metadata = metadata;
        let kms = object.kms || state.bucket_kms(bucket);
        object.etag = state.etag_for(&object.content, kms);
        object.kms = kms;
        object.parts = None;
        state.put_object(bucket, key, object, Written::Copied);
    }

    /// An object, as it is now.
    pub fn object(&self, bucket: &str, key: &str) -> Option<SimObject> {
        self.lock()
            .buckets
            .get(bucket)
            .and_then(|b| b.objects.get(key).cloned())
    }

    /// Every key of a bucket.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.lock()
            .buckets
            .get(bucket)
            .map(|b| b.objects.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Multipart uploads in progress in a bucket, as `(key, parts uploaded)`.
    pub fn uploads(&self, bucket: &str) -> Vec<(String, usize)> {
        self.lock()
            .buckets
            .get(bucket)
            .map(|b| {
                b.uploads
                    .values()
                    .map(|u| (u.key.clone(), u.parts.len()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Notices produced since the last call.
    pub fn take_notices(&self) -> Vec<Notice> {
        std::mem::take(&mut self.lock().notices)
    }

    /// The last steps, for a failing run's report.
    pub fn trace(&self) -> Vec<String> {
        self.lock().trace.iter().cloned().collect()
    }

    /// Adds a line to the trace.
    pub fn note(&self, line: String) {
        self.lock().log(line);
    }

    /// Requests that took effect so far, per operation.
    pub fn applied(&self) -> BTreeMap<&'static str, u64> {
        self.lock().applied.clone()
    }

    /// Requests served so far, per operation.
    pub fn requests(&self) -> BTreeMap<&'static str, u64> {
        self.lock().requests.clone()
    }

    async fn latency(&self) {
        let max = self.lock().faults.max_latency;
        if max.is_zero() {
            tokio::task::yield_now().await;
            return;
        }
        let ms = {
            let mut state = self.lock();
            let max_ms = max.as_millis() as u64;
            let slow_rate = state.faults.slow_rate;
            if state.rng.chance(slow_rate) {
                state.rng.below(max_ms * 10..max_ms * 50 + 1)
            } else {
                state.rng.below(0..max_ms + 1)
            }
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// One request: latency, maybe another client's write, maybe a fault, the effect, latency.
    async fn request<T: std::fmt::Debug>(
        &self,
        op: &'static str,
        place: String,
        effect: impl FnOnce(&mut State) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        self.latency().await;
        let result = {
            let mut state = self.lock();
            *state.requests.entry(op).or_default() += 1;
            let bucket = place
                .trim_start_matches("s3://")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            *state.by_bucket.entry(bucket.clone()).or_default() += 1;
            state.maybe_other_write();
            let fault = if let Some(slow) = state.over_write_rate(op, &place, &bucket) {
                Fault::Before(slow)
            } else if state.unavailable.contains(&bucket) {
                let failure = if state.rng.chance(0.5) {
                    error(
                        503,
                        "ServiceUnavailable",
                        format!("{op} {place}: ServiceUnavailable (HTTP 503): Service is unable to handle request."),
                    )
                } else {
                    Failure::new(
                        FailureKind::Retryable,
                        format!("{op} {place}: timed out waiting for the response"),
                    )
                };
                Fault::Before(failure)
            } else {
                state.fault(op, &place)
            };
            let apply = |state: &mut State| {
                let result = effect(state);
                if result.is_ok() {
                    *state.applied.entry(op).or_default() += 1;
                    for script in &mut state.scripted {
                        if script.trigger == Some(op) {
                            script.trigger = None;
                        }
                    }
                }
                result
            };
            let result = match fault {
                Fault::Before(failure) => Err(failure),
                Fault::None => apply(&mut state),
                Fault::After(failure) => apply(&mut state).and(Err(failure)),
            };
            let now = tokio::time::Instant::now();
            let shown = match &result {
                Ok(value) => {
                    let mut shown = format!("ok {value:?}");
                    shown.truncate(100);
                    shown
                }
                Err(failure) => format!("err {}", failure.message),
            };
            state.log(format!("{now:?} {op} {place}: {shown}"));
            result
        };
        self.latency().await;
        result
    }
}

fn place(at: ObjectAt<'_>) -> String {
    format!("s3://{}/{}", at.bucket, at.key)
}

impl Store for SimStore {
    async fn head(
        &self,
        at: ObjectAt<'_>,
        part: Option<u32>,
    ) -> Result<Option<ObjectHead>, Failure> {
        self.request("HeadObject", place(at), |state| {
            // S3 answers a missing bucket with a bare 404, like a missing key.
            let Some(bucket) = state.buckets.get(at.bucket) else {
                return Ok(None);
            };
            let Some(object) = bucket.objects.get(at.key).cloned() else {
                return Ok(None);
            };
            let mut head = state.head_of(&object);
            if let Some(number) = part {
                match &object.parts {
                    Some(sizes) => {
                        let size = sizes.get(number as usize - 1).copied().ok_or_else(|| {
                            error(
                                416,
                                "InvalidPartNumber",
                                format!(
                                    "HeadObject {}: part {number} of {}",
                                    place(at),
                                    sizes.len()
                                ),
                            )
                        })?;
                        head.size = size;
                        head.parts_count = Some(sizes.len() as u32);
                    }
                    None if number == 1 => {}
                    None => {
                        return Err(error(
                            416,
                            "InvalidPartNumber",
                            format!(
                                "HeadObject {}: part {number} of a single-part object",
                                place(at)
                            ),
                        ))
                    }
                }
            }
            Ok(Some(head))
        })
        .await
    }

    async fn bucket_exists(&self, bucket: &str, _region: Option<&str>) -> Result<bool, Failure> {
        self.request("HeadBucket", format!("s3://{bucket}"), |state| {
            Ok(state.buckets.contains_key(bucket))
        })
        .await
    }

    async fn list_prefixes(
        &self,
        bucket: &str,
        _region: Option<&str>,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, Failure> {
        // One request stands for every page: the pages of a delimited listing are not what
        // the simulation tests.
        self.request(
            "ListObjectsV2",
            format!("s3://{bucket}/{prefix}"),
            |state| {
                let b = state.bucket(bucket, "ListObjectsV2")?;
                let mut prefixes: Vec<String> = Vec::new();
                for key in b.objects.keys() {
                    let Some(rest) = key.strip_prefix(prefix) else {
                        continue;
                    };
                    if let Some(end) = rest.find('/') {
                        let common = format!("{prefix}{}", &rest[..=end]);
                        if prefixes.last() != Some(&common) {
                            prefixes.push(common);
                        }
                    }
                }
                prefixes.truncate(limit);
                Ok(prefixes)
            },
        )
        .await
    }

    async fn list_page(
        &self,
        bucket: &str,
        _region: Option<&str>,
        prefix: &str,
        from: ListFrom<'_>,
        max_keys: u32,
    ) -> Result<ListPage, Failure> {
        let after = match from {
            ListFrom::StartAfter(after) => after.map(str::to_string),
            ListFrom::Token(token) => Some(token.to_string()),
        };
        self.request(
            "ListObjectsV2",
            format!("s3://{bucket}/{prefix}"),
            |state| {
                let b = state.bucket(bucket, "ListObjectsV2")?;
                let mut objects = Vec::new();
                let mut more = false;
                for (key, object) in &b.objects {
                    if !key.starts_with(prefix) || after.as_ref().is_some_and(|a| key <= a) {
                        continue;
                    }
                    if objects.len() == max_keys as usize {
                        more = true;
                        break;
                    }
                    objects.push(Listed {
                        key: key.clone(),
                        etag: object.etag.clone(),
                        size: object.content.len(),
                        storage_class: object.storage_class.clone(),
                    });
                }
                let next = more
                    .then(|| objects.last().map(|l: &Listed| l.key.clone()))
                    .flatten();
                Ok(ListPage { objects, next })
            },
        )
        .await
    }

    async fn copy_object(&self, request: &CopyRequest<'_>) -> Result<Landed, Failure> {
        let at = request.destination;
        // S3 reads the source when the copy begins and writes the replica when it ends: a
        // source overwritten or deleted in between is still copied as it was, and the
        // destination's condition holds at the end. Everything else may happen meanwhile.
        self.latency().await;
        let read = {
            let mut state = self.lock();
            state.copy_source(request.source, request.source_etag, "CopyObject")
        };
        // Copying takes a while: long enough, at times, for whole other changes to be handled.
        let spans = self.lock().rng.below(0..6);
        for _ in 0..spans {
            self.latency().await;
        }
        self.request("CopyObject", place(at), |state| {
            check_key(at.key, "CopyObject")?;
            let source = read?;
            if source.content.len() > MAX_PART_BYTES {
                return Err(error(400, "InvalidRequest", format!(
                    "CopyObject {}: InvalidRequest (HTTP 400): The specified copy source is larger than the maximum allowable size for a copy source: {MAX_PART_BYTES}",
                    place(at)
                )));
            }
            let (headers, metadata) = match request.directive {
                Directive::Replace => (
                    request.attributes.headers.clone(),
                    request.attributes.metadata.clone(),
                ),
                // MetadataDirective COPY: the source's headers and metadata as read, but never
                // its website redirect location ("This value is unique to each object and is
                // not copied when using the x-amz-metadata-directive header", CopyObject API
                // reference), and no storage class but the request's (the S3 user guide,
                // "Copying objects": the storage class is set on the copy, else STANDARD).
                Directive::Source => (
                    ContentHeaders {
                        website_redirect: None,
                        ..source.headers.clone()
                    },
                    source.metadata.clone(),
                ),
            };
            check_metadata(&metadata, "CopyObject")?;
            state.bucket(at.bucket, "CopyObject")?;
            state.check_condition(at.bucket, at.key, &request.condition, "CopyObject")?;
            let kms = request.attributes.kms_key_id.is_some() || state.bucket_kms(at.bucket);
            let etag = state.etag_for(&source.content, kms);
            let object = SimObject {
                etag: etag.clone(),
                // Computed afresh from the bytes copied (x-amz-checksum-algorithm).
                checksum: Some(checksum_with(request.attributes.checksum, &source.content)),
                content: source.content,
                headers,
                metadata,
                tags: source.tags,
                storage_class: request.attributes.storage_class.clone(),
                parts: None,
                written_ms: 0,
                kms,
                restored: false,
            };
            state.put_object(at.bucket, at.key, object, Written::Copied);
            Ok(Landed { etag, kms })
        })
        .await
    }

    async fn serves_website(&self, bucket: &str, _region: Option<&str>) -> Result<bool, Failure> {
        self.request("GetBucketWebsite", format!("s3://{bucket}"), |state| {
            Ok(state.bucket(bucket, "GetBucketWebsite")?.website)
        })
        .await
    }

    async fn sends_events(&self, bucket: &str, _region: Option<&str>) -> Result<bool, Failure> {
        self.request(
            "GetBucketNotificationConfiguration",
            format!("s3://{bucket}"),
            |state| {
                Ok(state
                    .bucket(bucket, "GetBucketNotificationConfiguration")?
                    .notify)
            },
        )
        .await
    }

    async fn create_upload(
        &self,
        at: ObjectAt<'_>,
        attributes: &ReplicaAttributes,
        tags: &[Tag],
    ) -> Result<String, Failure> {
        self.request("CreateMultipartUpload", place(at), |state| {
            check_key(at.key, "CreateMultipartUpload")?;
            check_metadata(&attributes.metadata, "CreateMultipartUpload")?;
            check_tags(tags, "CreateMultipartUpload")?;
            state.next_upload += 1;
            let id = format!("upload-{}", state.next_upload);
            let initiated_ms = state.now_ms();
            let kms = attributes.kms_key_id.is_some() || state.bucket_kms(at.bucket);
            let bucket = state.bucket(at.bucket, "CreateMultipartUpload")?;
            bucket.uploads.insert(
                id.clone(),
                SimUpload {
                    key: at.key.to_string(),
                    headers: attributes.headers.clone(),
                    metadata: attributes.metadata.clone(),
                    tags: tags.to_vec(),
                    storage_class: attributes.storage_class.clone(),
                    parts: BTreeMap::new(),
                    initiated_ms,
                    kms,
                    checksum: attributes.checksum,
                },
            );
            Ok(id)
        })
        .await
    }

    async fn copy_part(&self, request: &PartCopyRequest<'_>) -> Result<CopiedPart, Failure> {
        let at = request.destination;
        self.request(
            "UploadPartCopy",
            format!("{} part {}", place(at), request.part_number),
            |state| {
                if !(1..=MAX_PARTS as u32).contains(&request.part_number) {
                    return Err(error(
                        400,
                        "InvalidArgument",
                        format!(
                            "UploadPartCopy: part number {} outside 1..=10000",
                            request.part_number
                        ),
                    ));
                }
                let source =
                    state.copy_source(request.source, request.source_etag, "UploadPartCopy")?;
                let len = request.last + 1 - request.first;
                if request.last >= source.content.len() || request.first > request.last {
                    return Err(error(
                        400,
                        "InvalidRange",
                        format!(
                            "UploadPartCopy: bytes={}-{} of {} bytes",
                            request.first,
                            request.last,
                            source.content.len()
                        ),
                    ));
                }
                if len > MAX_PART_BYTES {
                    return Err(error(
                        400,
                        "InvalidRequest",
                        format!("UploadPartCopy: a part of {len} bytes is above 5 GiB"),
                    ));
                }
                // "You can copy a range only if the source object is greater than 5 MB" (S3
                // API reference, UploadPartCopy): read strictly, 5 MiB.
                let whole = request.first == 0 && request.last + 1 == source.content.len();
                if source.content.len() <= MIN_PART_BYTES && !(whole && request.range == CopyRange::WholeObject) {
                    return Err(error(
                        400,
                        "InvalidRequest",
                        format!(
                            "UploadPartCopy: InvalidRequest (HTTP 400): a range of a source of {} bytes; ranges need a source larger than 5 MB",
                            source.content.len()
                        ),
                    ));
                }
                let content = source.content.range(request.first, request.last);
                let (kms, algorithm) = state
                    .buckets
                    .get(at.bucket)
                    .and_then(|b| b.uploads.get(request.upload_id))
                    .map_or((false, ChecksumAlgorithm::Crc64Nvme), |u| (u.kms, u.checksum));
                let etag = state.etag_for(&content, kms);
                // "The Base64 encoded, 64-bit CRC64NVME checksum of the part" (CopyPartResult):
                // the part's own checksum, in the upload's algorithm.
                let checksum = checksum_with(algorithm, &content);
                let bucket = state.bucket(at.bucket, "UploadPartCopy")?;
                let upload = bucket.uploads.get_mut(request.upload_id).ok_or_else(|| {
                    error(
                        404,
                        "NoSuchUpload",
                        format!("UploadPartCopy {}: NoSuchUpload (HTTP 404)", place(at)),
                    )
                })?;
                upload
                    .parts
                    .insert(request.part_number, (content, etag.clone(), checksum.clone()));
                Ok(CopiedPart {
                    etag,
                    checksum: Some(Checksum {
                        algorithm,
                        value: checksum,
                    }),
                })
            },
        )
        .await
    }

    async fn complete_upload(
        &self,
        at: ObjectAt<'_>,
        upload_id: &str,
        parts: &[Part],
        whole: Option<&Checksum>,
        condition: &WriteCondition,
    ) -> Result<(), Failure> {
        self.request("CompleteMultipartUpload", place(at), |state| {
            let op = "CompleteMultipartUpload";
            let upload = state
                .bucket(at.bucket, op)?
                .uploads
                .get(upload_id)
                .cloned()
                .ok_or_else(|| {
                    error(
                        404,
                        "NoSuchUpload",
                        format!("{op} {}: NoSuchUpload (HTTP 404)", place(at)),
                    )
                })?;
            if parts.is_empty() || parts.windows(2).any(|w| w[0].number >= w[1].number) {
                return Err(error(
                    400,
                    "InvalidPartOrder",
                    format!("{op}: parts must be ascending and non-empty"),
                ));
            }
            // "When an additional checksum ... is applied to each part, the PartNumber must
            // start at 1 and the part numbers must be consecutive" (CompletedPart).
            if parts.iter().zip(1..).any(|(p, n)| p.number != n) {
                return Err(error(
                    400,
                    "InvalidPartOrder",
                    format!("{op}: parts of an upload with checksums must be numbered 1, 2, …"),
                ));
            }
            let mut content = Content::default();
            let mut sizes = Vec::new();
            let mut etags = String::new();
            for (i, part) in parts.iter().enumerate() {
                let (bytes, etag, checksum) = upload.parts.get(&part.number).ok_or_else(|| {
                    error(
                        400,
                        "InvalidPart",
                        format!("{op}: part {} was not uploaded", part.number),
                    )
                })?;
                if *etag != part.etag {
                    return Err(error(
                        400,
                        "InvalidPart",
                        format!("{op}: part {} ETag differs", part.number),
                    ));
                }
                // An upload created with a checksum algorithm needs each part's checksum.
                match &part.checksum {
                    None => {
                        return Err(error(
                            400,
                            "InvalidRequest",
                            format!(
                                "{op}: InvalidRequest (HTTP 400): the upload was created with a {} checksum; the checksum of part {} is missing",
                                algorithm_name(upload.checksum),
                                part.number
                            ),
                        ))
                    }
                    Some(given) if given.value != *checksum => {
                        return Err(error(
                            400,
                            "InvalidPart",
                            format!("{op}: part {} checksum differs", part.number),
                        ))
                    }
                    Some(_) => {}
                }
                if i + 1 < parts.len() && bytes.len() < MIN_PART_BYTES {
                    return Err(error(
                        400,
                        "EntityTooSmall",
                        format!(
                            "{op}: EntityTooSmall (HTTP 400): part {} has {} bytes, below 5 MiB",
                            part.number,
                            bytes.len()
                        ),
                    ));
                }
                content.append(bytes);
                sizes.push(bytes.len());
                etags.push_str(etag);
            }
            // The declared full-object checksum must be the assembled object's ("Checking object
            // integrity" in the S3 user guide: a provided checksum that does not match the one
            // S3 calculates rejects the request; CompleteMultipartUpload,
            // `x-amz-checksum-crc64nvme` and `x-amz-checksum-type`).
            let assembled = checksum_with(upload.checksum, &content);
            if let Some(whole) = whole {
                if whole.algorithm != upload.checksum {
                    return Err(error(
                        400,
                        "InvalidRequest",
                        format!(
                            "{op}: InvalidRequest (HTTP 400): a {} checksum declared for an upload created with {}",
                            algorithm_name(whole.algorithm),
                            algorithm_name(upload.checksum)
                        ),
                    ));
                }
                if whole.value != assembled {
                    return Err(error(
                        400,
                        "BadDigest",
                        format!(
                            "{op} {}: BadDigest (HTTP 400): the {} you specified did not match the calculated checksum",
                            place(at),
                            algorithm_name(whole.algorithm)
                        ),
                    ));
                }
            }
            state.check_condition(at.bucket, at.key, condition, op)?;
            let object = SimObject {
                etag: format!("{}-{}", digest_of(&etags), parts.len()),
                // The upload's full-object checksum, computed by S3 over the assembled bytes.
                checksum: Some(assembled),
                content,
                headers: upload.headers,
                metadata: upload.metadata,
                tags: upload.tags,
                storage_class: upload.storage_class,
                parts: Some(sizes),
                // Last-Modified of a multipart object is when its upload was initiated.
                written_ms: upload.initiated_ms,
                kms: upload.kms,
                restored: false,
            };
            state.bucket(at.bucket, op)?.uploads.remove(upload_id);
            state.put_object_at(at.bucket, at.key, object, Written::Assembled);
            Ok(())
        })
        .await
    }

    async fn abort_upload(&self, at: ObjectAt<'_>, upload_id: &str) -> Result<(), Failure> {
        self.request("AbortMultipartUpload", place(at), |state| {
            state
                .bucket(at.bucket, "AbortMultipartUpload")?
                .uploads
                .remove(upload_id)
                .map(|_| ())
                .ok_or_else(|| {
                    error(
                        404,
                        "NoSuchUpload",
                        format!(
                            "AbortMultipartUpload {}: NoSuchUpload (HTTP 404)",
                            place(at)
                        ),
                    )
                })
        })
        .await
    }

    async fn list_parts(&self, at: ObjectAt<'_>, upload_id: &str) -> Result<Vec<Part>, Failure> {
        self.request("ListParts", place(at), |state| {
            let upload = state
                .bucket(at.bucket, "ListParts")?
                .uploads
                .get(upload_id)
                .ok_or_else(|| {
                    error(
                        404,
                        "NoSuchUpload",
                        format!("ListParts {}: NoSuchUpload (HTTP 404)", place(at)),
                    )
                })?;
            Ok(upload
                .parts
                .iter()
                .map(|(number, (content, etag, checksum))| Part {
                    number: *number,
                    etag: etag.clone(),
                    size: content.len(),
                    checksum: Some(Checksum {
                        algorithm: upload.checksum,
                        value: checksum.clone(),
                    }),
                })
                .collect())
        })
        .await
    }

    async fn list_uploads(&self, at: ObjectAt<'_>) -> Result<Vec<Upload>, Failure> {
        self.request("ListMultipartUploads", place(at), |state| {
            Ok(state
                .bucket(at.bucket, "ListMultipartUploads")?
                .uploads
                .iter()
                .filter(|(_, u)| u.key == at.key)
                .map(|(id, u)| Upload {
                    key: u.key.clone(),
                    upload_id: id.clone(),
                    initiated_ms: Some(u.initiated_ms),
                })
                .collect())
        })
        .await
    }

    async fn delete(&self, at: ObjectAt<'_>, condition: &WriteCondition) -> Result<(), Failure> {
        self.request("DeleteObject", place(at), |state| {
            state.bucket(at.bucket, "DeleteObject")?;
            if !matches!(condition, WriteCondition::Any) {
                state.check_condition(at.bucket, at.key, condition, "DeleteObject")?;
            }
            state.remove_object(at.bucket, at.key);
            Ok(())
        })
        .await
    }

    async fn get_tags(&self, at: ObjectAt<'_>) -> Result<Vec<Tag>, Failure> {
        self.request("GetObjectTagging", place(at), |state| {
            let bucket = state.bucket(at.bucket, "GetObjectTagging")?;
            bucket
                .objects
                .get(at.key)
                .map(|o| o.tags.clone())
                .ok_or_else(|| {
                    error(
                        404,
                        "NoSuchKey",
                        format!("GetObjectTagging {}: NoSuchKey (HTTP 404)", place(at)),
                    )
                })
        })
        .await
    }

    async fn put_tags(&self, at: ObjectAt<'_>, tags: &[Tag]) -> Result<(), Failure> {
        self.request("PutObjectTagging", place(at), |state| {
            check_tags(tags, "PutObjectTagging")?;
            let bucket = state.bucket(at.bucket, "PutObjectTagging")?;
            let object = bucket.objects.get_mut(at.key).ok_or_else(|| {
                error(
                    404,
                    "NoSuchKey",
                    format!("PutObjectTagging {}: NoSuchKey (HTTP 404)", place(at)),
                )
            })?;
            object.tags = tags.to_vec();
            Ok(())
        })
        .await
    }

    async fn put_small_object(
        &self,
        at: ObjectAt<'_>,
        body: &[u8],
        condition: &WriteCondition,
    ) -> Result<String, Failure> {
        self.request("PutObject", place(at), |state| {
            check_key(at.key, "PutObject")?;
            state.bucket(at.bucket, "PutObject")?;
            state.check_condition(at.bucket, at.key, condition, "PutObject")?;
            let id = state.fresh_id();
            let content = Content::fresh(id, body.len() as u64);
            let kms = state.bucket_kms(at.bucket);
            let etag = state.etag_for(&content, kms);
            state.small_bodies.insert(etag.clone(), body.to_vec());
            let content_copy = content.clone();
            let object = SimObject {
                content,
                etag: etag.clone(),
                headers: ContentHeaders {
                    content_type: Some("application/json".into()),
                    ..Default::default()
                },
                metadata: BTreeMap::new(),
                tags: Vec::new(),
                storage_class: None,
                parts: None,
                written_ms: 0,
                checksum: Some(checksum_of(&content_copy)),
                kms,
                restored: false,
            };
            state.put_object(at.bucket, at.key, object, Written::Uploaded);
            Ok(etag)
        })
        .await
    }

    async fn get_small_object(&self, at: ObjectAt<'_>) -> Result<Option<SmallObject>, Failure> {
        self.request("GetObject", place(at), |state| {
            let bucket = state.bucket(at.bucket, "GetObject")?;
            let Some(object) = bucket.objects.get(at.key) else {
                return Ok(None);
            };
            let etag = object.etag.clone();
            // An object written otherwise has symbolic bytes only: it reads as empty.
            let body = state.small_bodies.get(&etag).cloned().unwrap_or_default();
            Ok(Some(SmallObject { body, etag }))
        })
        .await
    }
}
