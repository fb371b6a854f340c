//! The storage port: exactly the S3 operations the engine uses, with the conditional headers
//! they carry. [`s3::S3Store`] implements it over aws-sdk-s3 (the only module that depends on
//! the SDK); an in-memory simulator implements it for tests.

pub mod clients;
pub mod s3;
mod s3_error;

use std::collections::BTreeMap;
use std::future::Future;

use crate::core::object::{Checksum, ChecksumAlgorithm, ContentHeaders, Listed, ObjectHead, Tag};
use crate::core::outcome::Failure;

/// An object in a bucket; `region` is the bucket's, when known (otherwise the store's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectAt<'a> {
    /// Bucket name.
    pub bucket: &'a str,
    /// Region of the bucket.
    pub region: Option<&'a str>,
    /// Object key.
    pub key: &'a str,
}

/// A condition on the object a write replaces (`If-Match` / `If-None-Match: *`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// Unconditional.
    Any,
    /// Only if no object exists under the key.
    Absent,
    /// Only if the object has this ETag (without quotes).
    Matches(String),
    /// Only if an object exists under the key (`If-Match: *`, deletes only): a delete of a
    /// missing key then answers 404 and announces nothing.
    Exists,
}

/// What a replica is written with, besides its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAttributes {
    /// Content headers, from the source.
    pub headers: ContentHeaders,
    /// User metadata: the source's plus provenance.
    pub metadata: BTreeMap<String, String>,
    /// Storage class to write in; `None` keeps the bucket's default.
    pub storage_class: Option<String>,
    /// SSE-KMS key; `None` keeps the bucket's default encryption.
    pub kms_key_id: Option<String>,
    /// The full-object checksum S3 computes from the bytes it writes (`x-amz-checksum-algorithm`
    /// on `CopyObject`; with checksum type `FULL_OBJECT` on `CreateMultipartUpload`): the
    /// source's own algorithm, so that the two compare, or CRC64NVME for a source without one.
    /// Computed afresh, it proves the copy; carried over it would prove nothing.
    pub checksum: ChecksumAlgorithm,
}

/// Where a `CopyObject` takes the replica's content headers and user metadata from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// From the request's attributes, provenance included (`MetadataDirective: REPLACE`).
    Replace,
    /// From the source as S3 reads it (`MetadataDirective: COPY`): nothing need be read first,
    /// but no provenance is added, and S3 copies neither the storage class (the attributes'
    /// applies, else the bucket's default) nor the website redirect location.
    Source,
}

/// What a `CopyObject` answered about the replica it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// The replica's ETag, without quotes.
    pub etag: String,
    /// Whether S3 encrypted it with SSE-KMS or DSSE-KMS (its ETag is then no digest).
    pub kms: bool,
}

/// One `CopyObject`: the source pinned to an ETag, the replica written with its attributes and
/// the source's tags.
#[derive(Debug, Clone)]
pub struct CopyRequest<'a> {
    /// The source object.
    pub source: ObjectAt<'a>,
    /// `x-amz-copy-source-if-match`.
    pub source_etag: &'a str,
    /// The replica.
    pub destination: ObjectAt<'a>,
    /// Its attributes.
    pub attributes: &'a ReplicaAttributes,
    /// Where its headers and metadata come from.
    pub directive: Directive,
    /// Condition on what the replica replaces.
    pub condition: WriteCondition,
}

/// One `UploadPartCopy`.
#[derive(Debug, Clone)]
pub struct PartCopyRequest<'a> {
    /// The source object.
    pub source: ObjectAt<'a>,
    /// `x-amz-copy-source-if-match`.
    pub source_etag: &'a str,
    /// The replica being uploaded.
    pub destination: ObjectAt<'a>,
    /// The upload.
    pub upload_id: &'a str,
    /// 1-based part number.
    pub part_number: u32,
    /// First byte (inclusive).
    pub first: u64,
    /// Last byte (inclusive).
    pub last: u64,
    /// Whether the request names the byte range.
    pub range: CopyRange,
}

/// Whether a part copy names its byte range: "You can copy a range only if the source object
/// is greater than 5 MB" (S3 API reference, UploadPartCopy), so a one-part copy of a smaller
/// source copies the whole object without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyRange {
    /// `x-amz-copy-source-range: bytes=first-last`.
    Bytes,
    /// No range: the part is the whole source.
    WholeObject,
}

/// A part of a multipart upload, as listed or as copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1-based part number.
    pub number: u32,
    /// Part ETag.
    pub etag: String,
    /// Bytes.
    pub size: u64,
    /// The part's checksum in the upload's algorithm, as `UploadPartCopy` or `ListParts`
    /// answered it (an upload created without a checksum algorithm has none): given back in
    /// `CompleteMultipartUpload`.
    pub checksum: Option<Checksum>,
}

/// What `UploadPartCopy` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedPart {
    /// Part ETag.
    pub etag: String,
    /// The part's checksum in the upload's algorithm.
    pub checksum: Option<Checksum>,
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Key it will create.
    pub key: String,
    /// Upload id.
    pub upload_id: String,
    /// When it was created, in milliseconds since the Unix epoch.
    pub initiated_ms: Option<i64>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects in key order (UTF-8 binary order, as S3 lists).
    pub objects: Vec<Listed>,
    /// Token for the next page; `None` at the end.
    pub next: Option<String>,
}

/// Where a listing continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFrom<'a> {
    /// After this key (or from the start).
    StartAfter(Option<&'a str>),
    /// With the token of the previous page.
    Token(&'a str),
}

/// The largest object [`Store::get_small_object`] reads.
pub const SMALL_OBJECT_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// A small object read whole (a run's marker, a summary): its bytes and ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallObject {
    /// The bytes.
    pub body: Vec<u8>,
    /// ETag without quotes.
    pub etag: String,
}

/// The S3 operations the engine needs. Every method answers S3's own error (status and code)
/// as a [`Failure`]; a HEAD of a missing key is `Ok(None)`.
pub trait Store: Send + Sync {
    /// `HeadObject`, or of one part with `part`. S3 answers a bare 404 for a missing bucket too,
    /// so `Ok(None)` may mean either: [`Store::bucket_exists`] tells them apart.
    fn head(
        &self,
        at: ObjectAt<'_>,
        part: Option<u32>,
    ) -> impl Future<Output = Result<Option<ObjectHead>, Failure>> + Send;

    /// `HeadBucket`: whether the bucket exists.
    fn bucket_exists(
        &self,
        bucket: &str,
        region: Option<&str>,
    ) -> impl Future<Output = Result<bool, Failure>> + Send;

    /// One page of `ListObjectsV2` under `prefix`.
    fn list_page(
        &self,
        bucket: &str,
        region: Option<&str>,
        prefix: &str,
        from: ListFrom<'_>,
        max_keys: u32,
    ) -> impl Future<Output = Result<ListPage, Failure>> + Send;

    /// The common prefixes one level below `prefix` (`ListObjectsV2` with `Delimiter: /`, every
    /// page), in listing order, at most `limit` of them: where a backfill splits its key space.
    fn list_prefixes(
        &self,
        bucket: &str,
        region: Option<&str>,
        prefix: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, Failure>> + Send;

    /// `CopyObject` with metadata replaced or copied (the request's directive), tags copied;
    /// answers what landed.
    fn copy_object(
        &self,
        request: &CopyRequest<'_>,
    ) -> impl Future<Output = Result<Landed, Failure>> + Send;

    /// `GetBucketNotificationConfiguration`: whether the bucket announces changes to anything
    /// (a queue, a topic, a function, EventBridge). A bucket that announces nothing cannot be
    /// the source of a deployment replicating back from it.
    fn sends_events(
        &self,
        bucket: &str,
        region: Option<&str>,
    ) -> impl Future<Output = Result<bool, Failure>> + Send;

    /// `GetBucketWebsite`: whether the bucket is configured as a website, the only way S3
    /// uses an object's website redirect location (`NoSuchWebsiteConfiguration`: it is not).
    fn serves_website(
        &self,
        bucket: &str,
        region: Option<&str>,
    ) -> impl Future<Output = Result<bool, Failure>> + Send;

    /// `CreateMultipartUpload` with the replica's attributes and tags, asking for a full-object
    /// checksum in the attributes' algorithm (`x-amz-checksum-algorithm`,
    /// `x-amz-checksum-type: FULL_OBJECT`); answers the upload id.
    fn create_upload(
        &self,
        at: ObjectAt<'_>,
        attributes: &ReplicaAttributes,
        tags: &[Tag],
    ) -> impl Future<Output = Result<String, Failure>> + Send;

    /// `UploadPartCopy`; answers the part's ETag and checksum.
    fn copy_part(
        &self,
        request: &PartCopyRequest<'_>,
    ) -> impl Future<Output = Result<CopiedPart, Failure>> + Send;

    /// `CompleteMultipartUpload`, each part with its checksum. With `whole`, the full-object
    /// checksum the assembled bytes must have (`x-amz-checksum-<algorithm>` with
    /// `x-amz-checksum-type: FULL_OBJECT`): S3 computes it and refuses to complete an upload
    /// whose bytes do not match (400 `BadDigest`), so a replica that is not the source's bytes
    /// never lands.
    fn complete_upload(
        &self,
        at: ObjectAt<'_>,
        upload_id: &str,
        parts: &[Part],
        whole: Option<&Checksum>,
        condition: &WriteCondition,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// `AbortMultipartUpload`.
    fn abort_upload(
        &self,
        at: ObjectAt<'_>,
        upload_id: &str,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// `ListParts` (all pages).
    fn list_parts(
        &self,
        at: ObjectAt<'_>,
        upload_id: &str,
    ) -> impl Future<Output = Result<Vec<Part>, Failure>> + Send;

    /// `ListMultipartUploads` for exactly this key.
    fn list_uploads(
        &self,
        at: ObjectAt<'_>,
    ) -> impl Future<Output = Result<Vec<Upload>, Failure>> + Send;

    /// `DeleteObject`, with `If-Match` when `condition` is [`WriteCondition::Matches`].
    fn delete(
        &self,
        at: ObjectAt<'_>,
        condition: &WriteCondition,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// `GetObjectTagging`.
    fn get_tags(&self, at: ObjectAt<'_>) -> impl Future<Output = Result<Vec<Tag>, Failure>> + Send;

    /// `PutObjectTagging`.
    fn put_tags(
        &self,
        at: ObjectAt<'_>,
        tags: &[Tag],
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// `PutObject` of a small JSON document (a run's marker, a summary) under `condition`;
    /// answers the new ETag. A failed condition is S3's 412, or 404 for `If-Match` on a
    /// missing key: conditional writes are how two chains of one backfill run tell which of
    /// them may go on.
    fn put_small_object(
        &self,
        at: ObjectAt<'_>,
        body: &[u8],
        condition: &WriteCondition,
    ) -> impl Future<Output = Result<String, Failure>> + Send;

    /// `GetObject` of a small object, whole; `Ok(None)` when the key does not exist.
    fn get_small_object(
        &self,
        at: ObjectAt<'_>,
    ) -> impl Future<Output = Result<Option<SmallObject>, Failure>> + Send;
}
