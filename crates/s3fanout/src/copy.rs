//! Server-side copy of one object to one target: a single `CopyObject` up to the multipart
//! threshold, `UploadPartCopy` in parallel parts above it. Either way the replica gets the same
//! headers, metadata, provenance, tags, storage class and encryption, and bytes never pass
//! through this process.

use std::time::Instant;

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, MetadataDirective, ServerSideEncryption, StorageClass,
    TaggingDirective,
};
use aws_sdk_s3::Client;
use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use crate::config::Target;
use crate::deadline::Deadline;
use crate::keys::copy_source;
use crate::outcome::Outcome;
use crate::provenance;
use crate::s3_error::S3Failure;

/// S3's smallest part (but the last).
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// S3's largest part, and the largest single `CopyObject`.
pub const MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// S3's largest part count.
pub const MAX_PARTS: u64 = 10_000;

/// Sets on a CopyObject or CreateMultipartUpload request what a replica takes from its source
/// and its target: content headers, storage class and encryption. Expires is kept as the raw
/// header, because S3 stores any string there, not only valid dates.
macro_rules! with_replica_headers {
    ($request:expr, $plan:expr) => {{
        let head = $plan.head;
        let (sse, kms_key) = $plan.kms();
        let expires = head.expires_string().map(str::to_string);
        $request
            .set_content_type(head.content_type().map(str::to_string))
            .set_cache_control(head.cache_control().map(str::to_string))
            .set_content_encoding(head.content_encoding().map(str::to_string))
            .set_content_disposition(head.content_disposition().map(str::to_string))
            .set_content_language(head.content_language().map(str::to_string))
            .set_website_redirect_location(head.website_redirect_location().map(str::to_string))
            .set_storage_class($plan.storage_class())
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

/// One object to copy to one target.
pub(crate) struct CopyPlan<'a> {
    pub source_bucket: &'a str,
    pub source_key: &'a str,
    /// Source ETag without quotes; every request is pinned to it.
    pub etag: &'a str,
    pub head: &'a HeadObjectOutput,
    pub target: &'a Target,
    pub key: &'a str,
}

impl CopyPlan<'_> {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.target.bucket, self.key)
    }

    fn source(&self) -> String {
        copy_source(self.source_bucket, self.source_key, None)
    }

    fn if_match(&self) -> String {
        format!("\"{}\"", self.etag)
    }

    fn metadata(&self) -> std::collections::HashMap<String, String> {
        provenance::replica_metadata(self.head.metadata(), self.source_bucket, self.etag)
    }

    fn storage_class(&self) -> Option<StorageClass> {
        self.target
            .storage_class
            .clone()
            .or_else(|| self.head.storage_class().cloned())
    }

    fn kms(&self) -> (Option<ServerSideEncryption>, Option<String>) {
        match &self.target.kms_key_id {
            Some(key) => (Some(ServerSideEncryption::AwsKms), Some(key.clone())),
            None => (None, None),
        }
    }

    fn size(&self) -> u64 {
        self.head.content_length().unwrap_or_default().max(0) as u64
    }
}

/// Part size for an object: the configured size, grown so the object fits in 10,000 parts.
pub fn part_size(object_size: u64, configured: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let needed = object_size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    configured.max(needed).clamp(MIN_PART_BYTES, MAX_PART_BYTES)
}

/// Copies with one `CopyObject` request.
pub(crate) async fn single(client: &Client, plan: &CopyPlan<'_>) -> Outcome {
    let request = client
        .copy_object()
        .bucket(&plan.target.bucket)
        .key(plan.key)
        .copy_source(plan.source())
        .copy_source_if_match(plan.if_match())
        .metadata_directive(MetadataDirective::Replace)
        .set_metadata(Some(plan.metadata()))
        .tagging_directive(TaggingDirective::Copy);
    let result = with_replica_headers!(request, plan).send().await;
    match result {
        Ok(_) => Outcome::Copied,
        Err(err) => copy_failure(&S3Failure::from_sdk(&err), "CopyObject", &plan.location()),
    }
}

/// The part count of a multipart object, from its ETag (`"<md5>-<parts>"`).
pub fn parts_in_etag(etag: &str) -> Option<u64> {
    let (_, parts) = etag.trim_matches('"').rsplit_once('-')?;
    parts.parse().ok()
}

/// Copies by multipart upload with parts of `part_size` copied in parallel; any failure aborts
/// the upload so that no incomplete upload is left behind.
pub(crate) async fn multipart(
    client: &Client,
    plan: &CopyPlan<'_>,
    part_size: u64,
    limit: &Semaphore,
    deadline: &Deadline,
) -> Outcome {
    let location = plan.location();
    // CreateMultipartUpload cannot copy tags: read them from the source and set them here.
    let tagging = {
        let _permit = limit.acquire().await.expect("semaphore is never closed");
        match client
            .get_object_tagging()
            .bucket(plan.source_bucket)
            .key(plan.source_key)
            .send()
            .await
        {
            Ok(out) => encode_tags(out.tag_set()),
            Err(err) => {
                let source = format!("s3://{}/{}", plan.source_bucket, plan.source_key);
                return copy_failure(&S3Failure::from_sdk(&err), "GetObjectTagging", &source);
            }
        }
    };
    let created = {
        let _permit = limit.acquire().await.expect("semaphore is never closed");
        let request = client
            .create_multipart_upload()
            .bucket(&plan.target.bucket)
            .key(plan.key)
            .set_metadata(Some(plan.metadata()))
            .set_tagging((!tagging.is_empty()).then_some(tagging));
        with_replica_headers!(request, plan).send().await
    };
    let upload_id = match created {
        Ok(out) => out.upload_id().unwrap_or_default().to_string(),
        Err(err) => {
            return copy_failure(
                &S3Failure::from_sdk(&err),
                "CreateMultipartUpload",
                &location,
            )
        }
    };

    let work = copy_parts_and_complete(client, plan, &upload_id, part_size, limit, deadline);
    let outcome = match tokio::time::timeout_at(deadline.hard().into(), work).await {
        Ok(Ok(())) => return Outcome::Copied,
        Ok(Err(outcome)) => outcome,
        Err(_) => deadline.stopped_in_flight(),
    };
    abort(client, plan, &upload_id).await;
    outcome
}

async fn copy_parts_and_complete(
    client: &Client,
    plan: &CopyPlan<'_>,
    upload_id: &str,
    part: u64,
    limit: &Semaphore,
    deadline: &Deadline,
) -> Result<(), Outcome> {
    let size = plan.size();
    let count = size.div_ceil(part).max(1);
    let location = plan.location();
    let copy_part = |number: u64| {
        let location = &location;
        async move {
            let _permit = limit.acquire().await.expect("semaphore is never closed");
            if let Some(outcome) = deadline.refuse_new_work() {
                return Err(outcome);
            }
            let first = (number - 1) * part;
            let last = (first + part).min(size).saturating_sub(1);
            let started = Instant::now();
            let out = client
                .upload_part_copy()
                .bucket(&plan.target.bucket)
                .key(plan.key)
                .upload_id(upload_id)
                .part_number(number as i32)
                .copy_source(plan.source())
                .copy_source_if_match(plan.if_match())
                .copy_source_range(format!("bytes={first}-{last}"))
                .send()
                .await
                .map_err(|err| {
                    copy_failure(&S3Failure::from_sdk(&err), "UploadPartCopy", location)
                })?;
            tracing::debug!(key = %plan.key, part = number, duration_ms = started.elapsed().as_millis() as u64, "part copied");
            let etag = out
                .copy_part_result()
                .and_then(|r| r.e_tag())
                .unwrap_or_default();
            Ok(CompletedPart::builder()
                .part_number(number as i32)
                .e_tag(etag)
                .build())
        }
    };
    // Parts run concurrently; the shared semaphore bounds requests across all copies. The first
    // failure stops the rest.
    let mut parts: Vec<CompletedPart> = stream::iter(1..=count)
        .map(copy_part)
        .buffer_unordered(count.min(64) as usize)
        .try_collect()
        .await?;
    parts.sort_by_key(|p| p.part_number());

    let _permit = limit.acquire().await.expect("semaphore is never closed");
    client
        .complete_multipart_upload()
        .bucket(&plan.target.bucket)
        .key(plan.key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|err| {
            copy_failure(
                &S3Failure::from_sdk(&err),
                "CompleteMultipartUpload",
                &location,
            )
        })?;
    Ok(())
}

/// Aborts an upload, retrying a few times: an upload left behind is billed storage.
async fn abort(client: &Client, plan: &CopyPlan<'_>, upload_id: &str) {
    for attempt in 1..=3 {
        let result = client
            .abort_multipart_upload()
            .bucket(&plan.target.bucket)
            .key(plan.key)
            .upload_id(upload_id)
            .send()
            .await;
        match result {
            Ok(_) => return,
            Err(err) => {
                let failure = S3Failure::from_sdk(&err);
                tracing::warn!(target = %plan.target.bucket, key = %plan.key, upload_id, attempt,
                    error = %failure.message, "abort of multipart upload failed");
                if failure.status == Some(404) {
                    return;
                }
            }
        }
    }
    tracing::error!(target = %plan.target.bucket, key = %plan.key, upload_id,
        "multipart upload could not be aborted; a lifecycle rule for incomplete uploads will remove it");
}

fn encode_tags(tags: &[aws_sdk_s3::types::Tag]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for tag in tags {
        out.append_pair(tag.key(), tag.value());
    }
    out.finish()
}

/// Maps a copy error: a changed or missing source finishes the change, anything else fails it.
fn copy_failure(failure: &S3Failure, operation: &str, location: &str) -> Outcome {
    if failure.is_precondition_failed() {
        Outcome::SourceChanged
    } else if failure.code.as_deref() == Some("NoSuchKey") {
        Outcome::SourceGone
    } else {
        Outcome::Failed {
            retryable: failure.retryable,
            error: failure.describe(operation, location),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn reads_part_count_from_etag() {
        assert_eq!(
            parts_in_etag("\"9b2cf535f27731c974343645a3985328-12\""),
            Some(12)
        );
        assert_eq!(parts_in_etag("9b2cf535f27731c974343645a3985328"), None);
    }

    #[test]
    fn part_sizes_stay_within_s3_limits() {
        assert_eq!(part_size(100 * MIB, 64 * MIB), 64 * MIB);
        assert_eq!(part_size(100 * MIB, MIB), MIN_PART_BYTES);
        // 5 TiB in 10,000 parts needs parts of at least 525 MiB (rounded up to whole MiB).
        let five_tib = 5 * 1024 * 1024 * MIB;
        let part = part_size(five_tib, 64 * MIB);
        assert!(five_tib.div_ceil(part) <= MAX_PARTS);
        assert_eq!(part, 525 * MIB);
        assert_eq!(part_size(10 * MIB, 8 * 1024 * 1024 * MIB), MAX_PART_BYTES);
    }
}
