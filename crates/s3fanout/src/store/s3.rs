//! The storage port over aws-sdk-s3.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::{
    ChecksumAlgorithm as SdkChecksumAlgorithm, ChecksumMode, ChecksumType,
    CompletedMultipartUpload, CompletedPart, MetadataDirective, RequestPayer, ServerSideEncryption,
    StorageClass, Tagging, TaggingDirective,
};
use aws_sdk_s3::Client;

use super::clients::Clients;
use super::s3_error::{failure, list_failure};
use super::{
    CopiedPart, CopyRange, CopyRequest, Directive, Landed, ListFrom, ListPage, ObjectAt, Part,
    PartCopyRequest, ReplicaAttributes, SmallObject, Store, Upload, WriteCondition,
    SMALL_OBJECT_MAX_BYTES,
};
use crate::core::keys::copy_source;
use crate::core::object::{
    Access, Checksum, ChecksumAlgorithm, ContentHeaders, Listed, ObjectHead, Tag,
};
use crate::core::outcome::Failure;
use crate::core::provenance::bare_etag;

/// S3 through aws-sdk-s3, one client per region.
#[derive(Debug)]
pub struct S3Store {
    clients: Clients,
    /// Sent as `x-amz-expected-bucket-owner` (and `x-amz-source-expected-bucket-owner` on
    /// copies): S3 refuses the request with 403 when another account owns the bucket.
    owner: Option<String>,
    /// Owners of particular buckets, in place of `owner` for them.
    owners: BTreeMap<String, String>,
    /// Buckets whose requests carry `x-amz-request-payer: requester`.
    requester_pays: BTreeSet<String>,
    /// `max-uploads` of each ListMultipartUploads page; `None` leaves S3's (1,000).
    upload_page: Option<u32>,
    /// Attempt timeout of every request but copies.
    attempt: std::time::Duration,
}

impl S3Store {
    /// A store over these clients.
    pub fn new(clients: Clients) -> Self {
        S3Store {
            clients,
            owner: None,
            owners: BTreeMap::new(),
            requester_pays: BTreeSet::new(),
            upload_page: None,
            attempt: ATTEMPT_TIMEOUT,
        }
    }

    /// With another attempt timeout for the requests that are not copies.
    pub fn with_attempt_timeout(mut self, attempt: std::time::Duration) -> Self {
        self.attempt = attempt;
        self
    }

    /// A `ListObjectsV2` of `bucket` under `prefix`, with the bucket's owner and payer.
    fn list_objects(
        &self,
        bucket: &str,
        region: Option<&str>,
        prefix: &str,
    ) -> aws_sdk_s3::operation::list_objects_v2::builders::ListObjectsV2FluentBuilder {
        self.client(region)
            .list_objects_v2()
            .bucket(bucket)
            .set_expected_bucket_owner(self.owner(bucket))
            .set_request_payer(self.payer(&[bucket]))
            .prefix(prefix)
    }

    fn bounded(&self) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::config::Builder::default().timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(self.attempt)
                .build(),
        )
    }

    /// Requires every bucket, source and target, to belong to this account.
    pub fn with_expected_owner(mut self, account: Option<String>) -> Self {
        self.owner = account;
        self
    }

    /// Requires these buckets to belong to these accounts, whatever
    /// [`S3Store::with_expected_owner`] says for the others.
    pub fn with_expected_owners(mut self, owners: BTreeMap<String, String>) -> Self {
        self.owners = owners;
        self
    }

    /// Sends `x-amz-request-payer: requester` on every request to these buckets (Requester
    /// Pays buckets of another account refuse requests without it), and on every copy whose
    /// source or destination is one of them.
    pub fn with_requester_pays(mut self, buckets: BTreeSet<String>) -> Self {
        self.requester_pays = buckets;
        self
    }

    /// Reads ListMultipartUploads in pages of at most `uploads` uploads (S3's own page is
    /// 1,000, its maximum).
    pub fn with_upload_page_size(mut self, uploads: u32) -> Self {
        self.upload_page = Some(uploads.clamp(1, 1000));
        self
    }

    /// The account expected to own `bucket`.
    fn owner(&self, bucket: &str) -> Option<String> {
        self.owners.get(bucket).or(self.owner.as_ref()).cloned()
    }

    /// `x-amz-request-payer` of a request that reads or writes these buckets: one header
    /// covers a whole request, a copy's source and destination alike.
    fn payer(&self, buckets: &[&str]) -> Option<RequestPayer> {
        buckets
            .iter()
            .any(|b| self.requester_pays.contains(*b))
            .then_some(RequestPayer::Requester)
    }

    /// The clients, for callers that need S3 beyond the port (tests, tools).
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    fn client(&self, region: Option<&str>) -> Client {
        match region {
            Some(region) => self.clients.for_region(region),
            None => self.clients.for_region(&self.clients.default_region()),
        }
    }
}

/// How long one attempt of a request that is not a copy may take before the SDK retries it: a
/// stalled connection then costs one attempt, not the whole invocation. Copies can take
/// minutes (5 GiB in one request); the invocation's hard deadline bounds them.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

fn location(at: ObjectAt<'_>) -> String {
    format!("s3://{}/{}", at.bucket, at.key)
}

fn quoted(etag: &str) -> String {
    format!("\"{}\"", bare_etag(etag))
}

/// Sets on a CopyObject or CreateMultipartUpload request what a replica takes from its source
/// and its target: content headers, metadata, storage class and encryption. Expires is kept as
/// the raw header, because S3 stores any string there, not only valid dates.
macro_rules! with_attributes {
    ($request:expr, $attributes:expr) => {{
        let a: &ReplicaAttributes = $attributes;
        let h = &a.headers;
        let expires = h.expires.clone();
        let (sse, kms_key) = match &a.kms_key_id {
            Some(key) => (Some(ServerSideEncryption::AwsKms), Some(key.clone())),
            None => (None, None),
        };
        $request
            .set_content_type(h.content_type.clone())
            .set_cache_control(h.cache_control.clone())
            .set_content_encoding(h.content_encoding.clone())
            .set_content_disposition(h.content_disposition.clone())
            .set_content_language(h.content_language.clone())
            .set_website_redirect_location(h.website_redirect.clone())
            .set_metadata(Some(a.metadata.clone().into_iter().collect()))
            .set_storage_class(a.storage_class.as_deref().map(StorageClass::from))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .customize()
            .mutate_request(move |req| {
                if let Some(value) = &expires {
                    req.headers_mut().insert("Expires", value.clone());
                }
            })
    }};
}

/// Applies a write condition to any request builder with `if_match` / `if_none_match`.
macro_rules! with_condition {
    ($request:expr, $condition:expr) => {{
        match $condition {
            WriteCondition::Any => $request,
            WriteCondition::Absent => $request.if_none_match("*"),
            WriteCondition::Matches(etag) => $request.if_match(quoted(etag)),
            WriteCondition::Exists => $request.if_match("*"),
        }
    }};
}

fn object_head(out: &HeadObjectOutput) -> ObjectHead {
    let metadata: BTreeMap<String, String> = out
        .metadata()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    ObjectHead {
        etag: bare_etag(out.e_tag().unwrap_or_default()).to_string(),
        size: out.content_length().unwrap_or_default().max(0) as u64,
        headers: ContentHeaders {
            content_type: out.content_type().map(str::to_string),
            cache_control: out.cache_control().map(str::to_string),
            content_encoding: out.content_encoding().map(str::to_string),
            content_disposition: out.content_disposition().map(str::to_string),
            content_language: out.content_language().map(str::to_string),
            expires: out.expires_string().map(str::to_string),
            website_redirect: out.website_redirect_location().map(str::to_string),
        },
        metadata,
        storage_class: out.storage_class().map(|c| c.as_str().to_string()),
        parts_count: out.parts_count().and_then(|n| u32::try_from(n).ok()),
        last_modified_ms: out.last_modified().and_then(|t| t.to_millis().ok()),
        checksum: full_object_checksum(out),
        kms: matches!(
            out.server_side_encryption(),
            Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
        ),
        access: Access::from_headers(
            out.storage_class().map(|c| c.as_str()),
            out.restore(),
            out.archive_status().map(|a| a.as_str()),
        ),
    }
}

/// The checksum of a HEAD that covers the whole object whatever its part layout: CRC64NVME is
/// always of type `FULL_OBJECT`; CRC32 and CRC32C only when S3 says so (multipart uploads
/// otherwise have composite ones, checksums of the parts' checksums, `…-N`).
fn full_object_checksum(out: &HeadObjectOutput) -> Option<Checksum> {
    let full = out.checksum_type() == Some(&ChecksumType::FullObject);
    let candidates = [
        (
            ChecksumAlgorithm::Crc64Nvme,
            out.checksum_crc64_nvme(),
            true,
        ),
        (ChecksumAlgorithm::Crc32C, out.checksum_crc32_c(), full),
        (ChecksumAlgorithm::Crc32, out.checksum_crc32(), full),
    ];
    candidates
        .into_iter()
        .find_map(|(algorithm, value, whole)| match value {
            Some(value) if whole && !value.is_empty() && !value.contains('-') => Some(Checksum {
                algorithm,
                value: value.to_string(),
            }),
            _ => None,
        })
}

/// The SDK's name of an algorithm.
fn sdk_algorithm(algorithm: ChecksumAlgorithm) -> SdkChecksumAlgorithm {
    match algorithm {
        ChecksumAlgorithm::Crc64Nvme => SdkChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Crc32 => SdkChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C => SdkChecksumAlgorithm::Crc32C,
    }
}

/// A part's checksum, in whichever algorithm its upload has.
fn part_checksum(
    crc64nvme: Option<&str>,
    crc32: Option<&str>,
    crc32c: Option<&str>,
) -> Option<Checksum> {
    [
        (ChecksumAlgorithm::Crc64Nvme, crc64nvme),
        (ChecksumAlgorithm::Crc32, crc32),
        (ChecksumAlgorithm::Crc32C, crc32c),
    ]
    .into_iter()
    .find_map(|(algorithm, value)| match value {
        Some(value) if !value.is_empty() => Some(Checksum {
            algorithm,
            value: value.to_string(),
        }),
        _ => None,
    })
}

/// Adds `x-amz-request-payer` to a request whose operation has no such parameter in the SDK
/// (HeadBucket, DeleteObjectTagging): S3 reads the header on every request to a Requester
/// Pays bucket.
fn requester_pays_header(
    payer: Option<RequestPayer>,
) -> impl Fn(&mut aws_smithy_runtime_api::client::orchestrator::HttpRequest) + Send + Sync + 'static
{
    move |req| {
        if let Some(payer) = &payer {
            req.headers_mut()
                .insert("x-amz-request-payer", payer.as_str().to_string());
        }
    }
}

impl Store for S3Store {
    async fn head(
        &self,
        at: ObjectAt<'_>,
        part: Option<u32>,
    ) -> Result<Option<ObjectHead>, Failure> {
        let result = self
            .client(at.region)
            .head_object()
            .bucket(at.bucket)
            .set_expected_bucket_owner(self.owner(at.bucket))
            .set_request_payer(self.payer(&[at.bucket]))
            .key(at.key)
            .set_part_number(part.map(|p| p as i32))
            .checksum_mode(ChecksumMode::Enabled)
            .customize()
            .config_override(self.bounded())
            .send()
            .await;
        match result {
            Ok(out) => {
                let mut head = object_head(&out);
                // A part's checksum is not the object's.
                if part.is_some() {
                    head.checksum = None;
                }
                Ok(Some(head))
            }
            Err(err) => {
                let failure = failure(&err, "HeadObject", &location(at));
                if failure.is_missing_object() {
                    Ok(None)
                } else {
                    Err(failure)
                }
            }
        }
    }

    async fn bucket_exists(&self, bucket: &str, region: Option<&str>) -> Result<bool, Failure> {
        match self
            .client(region)
            .head_bucket()
            .bucket(bucket)
            .set_expected_bucket_owner(self.owner(bucket))
            .customize()
            .mutate_request(requester_pays_header(self.payer(&[bucket])))
            .config_override(self.bounded())
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) => {
                let failure = failure(&err, "HeadBucket", bucket);
                if failure.status == Some(404) {
                    Ok(false)
                } else {
                    Err(failure)
                }
            }
        }
    }

    async fn list_prefixes(
        &self,
        bucket: &str,
        region: Option<&str>,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, Failure> {
        let mut prefixes = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_objects(bucket, region, prefix)
                .delimiter("/")
                .set_continuation_token(token.take())
                .customize()
                .config_override(self.bounded())
                .send()
                .await
                .map_err(|err| list_failure(&err, bucket, prefix))?;
            prefixes.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            token = page.next_continuation_token().map(str::to_string);
            if prefixes.len() >= limit || token.is_none() {
                prefixes.truncate(limit);
                return Ok(prefixes);
            }
        }
    }

    async fn list_page(
        &self,
        bucket: &str,
        region: Option<&str>,
        prefix: &str,
        from: ListFrom<'_>,
        max_keys: u32,
    ) -> Result<ListPage, Failure> {
        let mut request = self
            .list_objects(bucket, region, prefix)
            .max_keys(max_keys as i32);
        request = match from {
            ListFrom::Token(token) => request.continuation_token(token),
            ListFrom::StartAfter(after) => request.set_start_after(after.map(str::to_string)),
        };
        let page = request
            .customize()
            .config_override(self.bounded())
            .send()
            .await
            .map_err(|err| list_failure(&err, bucket, prefix))?;
        let objects = page
            .contents()
            .iter()
            .map(|o| Listed {
                key: o.key().unwrap_or_default().to_string(),
                etag: bare_etag(o.e_tag().unwrap_or_default()).to_string(),
                size: o.size().unwrap_or_default().max(0) as u64,
                storage_class: o
                    .storage_class()
                    .map(|c| c.as_str().to_string())
                    .filter(|c| c != "STANDARD"),
            })
            .collect();
        let next = match page.is_truncated() {
            Some(true) => page.next_continuation_token().map(str::to_string),
            _ => None,
        };
        Ok(ListPage { objects, next })
    }

    async fn copy_object(&self, request: &CopyRequest<'_>) -> Result<Landed, Failure> {
        let at = request.destination;
        let builder = self
            .client(at.region)
            .copy_object()
            .bucket(at.bucket)
            .set_expected_bucket_owner(self.owner(at.bucket))
            .set_request_payer(self.payer(&[request.source.bucket, at.bucket]))
            .key(at.key)
            .copy_source(copy_source(request.source.bucket, request.source.key, None))
            .copy_source_if_match(quoted(request.source_etag))
            .set_expected_source_bucket_owner(self.owner(request.source.bucket))
            .tagging_directive(TaggingDirective::Copy)
            // Without it S3 carries the source's checksum over: computed afresh from the bytes
            // written, the replica's checksum proves the copy.
            .checksum_algorithm(sdk_algorithm(request.attributes.checksum));
        let builder = with_condition!(builder, &request.condition);
        let sent = match request.directive {
            Directive::Replace => {
                with_attributes!(
                    builder.metadata_directive(MetadataDirective::Replace),
                    request.attributes
                )
                .send()
                .await
            }
            Directive::Source => {
                let a = request.attributes;
                let (sse, kms_key) = match &a.kms_key_id {
                    Some(key) => (Some(ServerSideEncryption::AwsKms), Some(key.clone())),
                    None => (None, None),
                };
                builder
                    .metadata_directive(MetadataDirective::Copy)
                    .set_storage_class(a.storage_class.as_deref().map(StorageClass::from))
                    .set_server_side_encryption(sse)
                    .set_ssekms_key_id(kms_key)
                    .send()
                    .await
            }
        };
        let out = sent.map_err(|err| failure(&err, "CopyObject", &location(at)))?;
        Ok(Landed {
            etag: out
                .copy_object_result()
                .and_then(|r| r.e_tag())
                .map(|e| bare_etag(e).to_string())
                .unwrap_or_default(),
            kms: matches!(
                out.server_side_encryption(),
                Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
            ),
        })
    }

    async fn sends_events(&self, bucket: &str, region: Option<&str>) -> Result<bool, Failure> {
        let out = self
            .client(region)
            .get_bucket_notification_configuration()
            .bucket(bucket)
            .set_expected_bucket_owner(self.owner(bucket))
            .send()
            .await
            .map_err(|err| failure(&err, "GetBucketNotificationConfiguration", bucket))?;
        Ok(!out.topic_configurations().is_empty()
            || !out.queue_configurations().is_empty()
            || !out.lambda_function_configurations().is_empty()
            || out.event_bridge_configuration().is_some())
    }

    async fn serves_website(&self, bucket: &str, region: Option<&str>) -> Result<bool, Failure> {
        let out = self
            .client(region)
            .get_bucket_website()
            .bucket(bucket)
            .set_expected_bucket_owner(self.owner(bucket))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(err) => {
                let failure = failure(&err, "GetBucketWebsite", bucket);
                if failure.code.as_deref() == Some("NoSuchWebsiteConfiguration") {
                    Ok(false)
                } else {
                    Err(failure)
                }
            }
        }
    }

    async fn create_upload(
        &self,
        at: ObjectAt<'_>,
        attributes: &ReplicaAttributes,
        tags: &[Tag],
    ) -> Result<String, Failure> {
        let tagging = encode_tags(tags);
        let builder = self
            .client(at.region)
            .create_multipart_upload()
            .bucket(at.bucket)
            .set_expected_bucket_owner(self.owner(at.bucket))
            .set_request_payer(self.payer(&[at.bucket]))
            .key(at.key)
            .set_tagging((!tagging.is_empty()).then_some(tagging))
            // A full-object checksum, independent of the part layout like the source's: each
            // part's checksum comes back with it, and the completion can declare the whole.
            .checksum_algorithm(sdk_algorithm(attributes.checksum))
            .checksum_type(ChecksumType::FullObject);
        let out = with_attributes!(builder, attributes)
            .config_override(self.bounded())
            .send()
            .await
            .map_err(|err| failure(&err, "CreateMultipartUpload", &location(at)))?;
        out.upload_id().map(str::to_string).ok_or_else(|| {
            Failure::new(
                crate::core::outcome::FailureKind::Retryable,
                format!(
                    "CreateMultipartUpload {}: no upload id in the answer",
                    location(at)
                ),
            )
        })
    }

    async fn copy_part(&self, request: &PartCopyRequest<'_>) -> Result<CopiedPart, Failure> {
        let at = request.destination;
        let out = self
            .client(at.region)
            .upload_part_copy()
            .bucket(at.bucket)
            .set_expected_bucket_owner(self.owner(at.bucket))
            .set_request_payer(self.payer(&[request.source.bucket, at.bucket]))
            .key(at.key)
            .upload_id(request.upload_id)
            .part_number(request.part_number as i32)
            .copy_source(copy_source(request.source.bucket, request.source.key, None))
            .copy_source_if_match(quoted(request.source_etag))
            .set_expected_source_bucket_owner(self.owner(request.source.bucket))
            .set_copy_source_range(match request.range {
                CopyRange::Bytes => Some(format!("bytes={}-{}", request.first, request.last)),
                CopyRange::WholeObject => None,
            })
            .send()
            .await
            .map_err(|err| failure(&err, "UploadPartCopy", &location(at)))?;
        let result = out.copy_part_result();
        Ok(CopiedPart {
            etag: result
                .and_then(|r| r.e_tag())
                .unwrap_or_default()
                .to_string(),
            checksum: result.and_then(|r| {
                part_checksum(
                    r.checksum_crc64_nvme(),
                    r.checksum_crc32(),
                    r.checksum_crc32_c(),
                )
            }),
        })
    }

    async fn complete_upload(
        &self,
        at: ObjectAt<'_>,
        upload_id: &str,
        parts: &[Part],
        whole: Option<&Checksum>,
        condition: &WriteCondition,
    ) -> Result<(), Failure> {
        let completed: Vec<CompletedPart> = parts
            .iter()
            .map(|p| {
                let part = CompletedPart::builder()
                    .part_number(p.number as i32)
                    .e_tag(&p.etag);
                let value = p.checksum.as_ref().map(|c| c.value.clone());
                match p.checksum.as_ref().map(|c| c.algorithm) {
                    Some(ChecksumAlgorithm::Crc64Nvme) => part.set_checksum_crc64_nvme(value),
                    Some(ChecksumAlgorithm::Crc32) => part.set_checksum_crc32(value),
                    Some(ChecksumAlgorithm::Crc32C) => part.set_checksum_crc32_c(value),
                    None => part,
                }
                .build()
            })
            .collect();
        let builder = self
            .client(at.region)
            .complete_multipart_upload()
            .bucket(at.bucket)
            .set_expected_bucket_owner(self.owner(at.bucket))
            .set_request_payer(self.payer(&[at.bucket]))
            .key(at.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            );
        // "Checking object integrity" (S3 user guide): a full-object checksum given with the
        // completion is compared with the one S3 computes over the assembled object, and a
        // mismatch rejects the request (CompleteMultipartUpload: `x-amz-checksum-crc64nvme`,
        // `x-amz-checksum-type: FULL_OBJECT`).
        let builder = match whole {
            Some(whole) => {
                let value = Some(whole.value.clone());
                match whole.algorithm {
                    ChecksumAlgorithm::Crc64Nvme => builder.set_checksum_crc64_nvme(value),
                    ChecksumAlgorithm::Crc32 => builder.set_checksum_crc32(value),
                    ChecksumAlgorithm::Crc32C => builder.set_checksum_crc32_c(value),
                }
                .checksum_type(ChecksumType::FullObject)
            }
            None => builder,
        };
        with_condition!(builder, condition)
            .send()
            .await
            .map(|_| ())
            .map_err(|err| failure(&err, "CompleteMultipartUpload", &location(at)))
    }

    async fn abort_upload(&self, at: ObjectAt<'_>, upload_id: &str) -> Result<(), Failure> {
        self.client(at.region)
            .abort_multipart_upload()
            .bucket(at.bucket)
            .set_expected_bucket_owner(self.owner(at.bucket))
            .set_request_payer(self.payer(&[at.bucket]))
            .key(at.key)
            .upload_id(upload_id)
            .customize()
            .config_override(self.bounded())
            .send()
            .await
            .map(|_| ())
            .map_err(|err| failure(&err, "AbortMultipartUpload", &location(at)))
    }

    async fn list_parts(&self, at: ObjectAt<'_>, upload_id: &str) -> Result<Vec<Part>, Failure> {
        let client = self.client(at.region);
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = client
                .list_parts()
                .bucket(at.bucket)
                .set_expected_bucket_owner(self.owner(at.bucket))
                .set_request_payer(self.payer(&[at.bucket]))
                .key(at.key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .customize()
                .config_override(self.bounded())
                .send()
                .await
                .map_err(|err| failure(&err, "ListParts", &location(at)))?;
            parts.extend(out.parts().iter().map(|p| Part {
                number: p.part_number().unwrap_or_default().max(0) as u32,
                etag: p.e_tag().unwrap_or_default().to_string(),
                size: p.size().unwrap_or_default().max(0) as u64,
                checksum: part_checksum(
                    p.checksum_crc64_nvme(),
                    p.checksum_crc32(),
                    p.checksum_crc32_c(),
                ),
            }));
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_string()),
                _ => return Ok(parts),
            }
        }
    }

    async fn list_uploads(&self, at: ObjectAt<'_>) -> Result<Vec<Upload>, Failure> {
        let client = self.client(at.region);
        let mut uploads = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let out = client
                .list_multipart_uploads()
                .bucket(at.bucket)
                .set_expected_bucket_owner(self.owner(at.bucket))
                .set_request_payer(self.payer(&[at.bucket]))
                .prefix(at.key)
                .set_max_uploads(self.upload_page.map(|n| n as i32))
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .customize()
                .config_override(self.bounded())
                .send()
                .await
                .map_err(|err| failure(&err, "ListMultipartUploads", &location(at)))?;
            uploads.extend(
                out.uploads()
                    .iter()
                    .filter(|u| u.key() == Some(at.key))
                    .map(|u| Upload {
                        key: at.key.to_string(),
                        upload_id: u.upload_id().unwrap_or_default().to_string(),
                        initiated_ms: u.initiated().and_then(|t| t.to_millis().ok()),
                    }),
            );
            // Uploads come in key order, and every key under the prefix sorts after the key
            // itself: once a later key shows, the key's own uploads have all been seen.
            let passed = out
                .uploads()
                .iter()
                .any(|u| u.key().is_some_and(|k| k > at.key));
            match (out.is_truncated(), out.next_key_marker()) {
                (Some(true), Some(next)) if !passed && next <= at.key => {
                    key_marker = Some(next.to_string());
                    id_marker = out.next_upload_id_marker().map(str::to_string);
                }
                _ => return Ok(uploads),
            }
        }
    }

    async fn delete(&self, at: ObjectAt<'_>, condition: &WriteCondition) -> Result<(), Failure> {
        let builder = self
            .client(at.region)
            .delete_object()
            .bucket(at.bucket)
            .set_expected_bucket_owner(self.owner(at.bucket))
            .set_request_payer(self.payer(&[at.bucket]))
            .key(at.key);
        let builder = match condition {
            WriteCondition::Matches(etag) => builder.if_match(quoted(etag)),
            WriteCondition::Exists => builder.if_match("*"),
            WriteCondition::Any | WriteCondition::Absent => builder,
        };
        builder
            .customize()
            .config_override(self.bounded())
            .send()
            .await
            .map(|_| ())
            .map_err(|err| failure(&err, "DeleteObject", &location(at)))
    }

    async fn get_tags(&self, at: ObjectAt<'_>) -> Result<Vec<Tag>, Failure> {
        let out = self
            .client(at.region)
            .get_object_tagging()
            .bucket(at.bucket)
            .set_expected_bucket_owner(self.owner(at.bucket))
            .set_request_payer(self.payer(&[at.bucket]))
            .key(at.key)
            .customize()
            .config_override(self.bounded())
            .send()
            .await
            .map_err(|err| failure(&err, "GetObjectTagging", &location(at)))?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| Tag {
                key: t.key().to_string(),
                value: t.value().to_string(),
            })
            .collect())
    }

    async fn put_tags(&self, at: ObjectAt<'_>, tags: &[Tag]) -> Result<(), Failure> {
        if tags.is_empty() {
            // PutObjectTagging with an empty TagSet removes every tag on S3, but some
            // S3-compatible servers refuse it; DeleteObjectTagging means the same everywhere.
            return self
                .client(at.region)
                .delete_object_tagging()
                .bucket(at.bucket)
                .set_expected_bucket_owner(self.owner(at.bucket))
                .key(at.key)
                .customize()
                .mutate_request(requester_pays_header(self.payer(&[at.bucket])))
                .config_override(self.bounded())
                .send()
                .await
                .map(|_| ())
                .map_err(|err| failure(&err, "DeleteObjectTagging", &location(at)));
        }
        let set = tags
            .iter()
            .map(|t| {
                aws_sdk_s3::types::Tag::builder()
                    .key(&t.key)
                    .value(&t.value)
                    .build()
                    .map_err(|e| Failure::permanent(format!("tag {:?}: {e}", t.key)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(set))
            .build()
            .map_err(|e| Failure::permanent(format!("tagging: {e}")))?;
        self.client(at.region)
            .put_object_tagging()
            .bucket(at.bucket)
            .set_expected_bucket_owner(self.owner(at.bucket))
            .set_request_payer(self.payer(&[at.bucket]))
            .key(at.key)
            .tagging(tagging)
            .customize()
            .config_override(self.bounded())
            .send()
            .await
            .map(|_| ())
            .map_err(|err| failure(&err, "PutObjectTagging", &location(at)))
    }

    async fn put_small_object(
        &self,
        at: ObjectAt<'_>,
        body: &[u8],
        condition: &WriteCondition,
    ) -> Result<String, Failure> {
        let request = self
            .client(at.region)
            .put_object()
            .bucket(at.bucket)
            .set_expected_bucket_owner(self.owner(at.bucket))
            .set_request_payer(self.payer(&[at.bucket]))
            .key(at.key)
            .content_type("application/json")
            .body(aws_sdk_s3::primitives::ByteStream::from(body.to_vec()));
        let out = with_condition!(request, condition)
            .customize()
            .config_override(self.bounded())
            .send()
            .await
            .map_err(|err| failure(&err, "PutObject", &location(at)))?;
        Ok(bare_etag(out.e_tag().unwrap_or_default()).to_string())
    }

    async fn get_small_object(&self, at: ObjectAt<'_>) -> Result<Option<SmallObject>, Failure> {
        let result = self
            .client(at.region)
            .get_object()
            .bucket(at.bucket)
            .set_expected_bucket_owner(self.owner(at.bucket))
            .set_request_payer(self.payer(&[at.bucket]))
            .key(at.key)
            .customize()
            .config_override(self.bounded())
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(err) => {
                let failure = failure(&err, "GetObject", &location(at));
                return if failure.is_missing_object() {
                    Ok(None)
                } else {
                    Err(failure)
                };
            }
        };
        // Only documents this code writes are read this way: anything large is not one.
        let size = out.content_length().unwrap_or_default().max(0) as u64;
        if size > SMALL_OBJECT_MAX_BYTES {
            return Err(Failure::permanent(format!(
                "GetObject {}: {size} bytes, not a small document (at most {SMALL_OBJECT_MAX_BYTES})",
                location(at)
            )));
        }
        let etag = bare_etag(out.e_tag().unwrap_or_default()).to_string();
        let body = out.body.collect().await.map_err(|err| {
            Failure::new(
                crate::core::outcome::FailureKind::Retryable,
                format!("GetObject {}: reading the body: {err}", location(at)),
            )
        })?;
        Ok(Some(SmallObject {
            body: body.into_bytes().to_vec(),
            etag,
        }))
    }
}

/// Tags as the `x-amz-tagging` header carries them: form-URL-encoded pairs.
fn encode_tags(tags: &[Tag]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for tag in tags {
        out.append_pair(&tag.key, &tag.value);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that accepts connections and never answers: each attempt gives up after the
    /// attempt timeout, so the request fails (retryable) instead of hanging the invocation.
    #[tokio::test]
    async fn a_stalled_connection_costs_the_attempt_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "k", "s", None, None, "t",
            ))
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
            .load()
            .await;
        let store = S3Store::new(Clients::new(config, true))
            .with_attempt_timeout(std::time::Duration::from_millis(300));
        let started = std::time::Instant::now();
        let at = ObjectAt {
            bucket: "b",
            region: Some("us-east-1"),
            key: "k",
        };
        let failure = store.head(at, None).await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(
            failure.kind,
            crate::core::outcome::FailureKind::Retryable,
            "{failure:?}"
        );
        assert!(
            took >= std::time::Duration::from_millis(600)
                && took < std::time::Duration::from_secs(10),
            "two attempts of 300 ms, took {took:?}"
        );
    }

    #[test]
    fn tags_are_form_encoded_for_the_header() {
        let tags = [
            Tag {
                key: "team name".into(),
                value: "a+b c".into(),
            },
            Tag {
                key: "k".into(),
                value: "x=y&z".into(),
            },
        ];
        let encoded = encode_tags(&tags);
        assert_eq!(encoded, "team+name=a%2Bb+c&k=x%3Dy%26z");
        let back: Vec<(String, String)> = form_urlencoded::parse(encoded.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(back[0], ("team name".into(), "a+b c".into()));
    }
}
