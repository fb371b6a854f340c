//! Server-side copy of one object to one target: one `CopyObject`, or `UploadPartCopy` parts in
//! parallel. Either way the replica gets the same headers, metadata, provenance, tags, storage
//! class and encryption, every request is pinned to the source ETag, and bytes never pass
//! through this process.

use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::deadline::Deadline;
use super::replicator::Replicator;
use crate::core::config::Target;
use crate::core::decide::Method;
use crate::core::object::ObjectHead;
use crate::core::outcome::{Failure, FailureKind};
use crate::core::provenance;
use crate::store::{
    CopyRequest, ObjectAt, Part, PartCopyRequest, ReplicaAttributes, Store, WriteCondition,
};

/// Attempts to abort an upload that failed: an upload left behind is billed storage.
const ABORT_ATTEMPTS: u32 = 10;

/// Why a copy did not happen.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// The source no longer has the ETag the copy was pinned to.
    SourceChanged,
    /// The source object is gone.
    SourceGone,
    /// Anything else.
    Failed(Failure),
}

impl From<Failure> for CopyError {
    fn from(failure: Failure) -> Self {
        if failure.is_precondition_failed() {
            CopyError::SourceChanged
        } else if failure.code.as_deref() == Some("NoSuchKey") {
            CopyError::SourceGone
        } else {
            CopyError::Failed(failure)
        }
    }
}

/// What the replica of `head` is written with at `target`.
fn attributes(source_bucket: &str, head: &ObjectHead, target: &Target) -> ReplicaAttributes {
    ReplicaAttributes {
        headers: head.headers.clone(),
        metadata: provenance::replica_metadata(&head.metadata, source_bucket, &head.etag),
        storage_class: target
            .storage_class
            .clone()
            .or_else(|| head.storage_class.clone()),
        kms_key_id: target.kms_key_id.clone(),
    }
}

/// Copies the source (as `head` describes it) to `destination` by `method`.
pub(crate) async fn copy<S: Store>(
    replicator: &Replicator<S>,
    source: ObjectAt<'_>,
    head: &ObjectHead,
    target: &Target,
    destination: ObjectAt<'_>,
    method: Method,
    deadline: &Deadline,
) -> Result<(), CopyError> {
    let attributes = attributes(source.bucket, head, target);
    match method {
        Method::Single => {
            let request = CopyRequest {
                source,
                source_etag: &head.etag,
                destination,
                attributes: &attributes,
                condition: WriteCondition::Any,
            };
            let store = replicator.store();
            replicator
                .call(deadline, store.copy_object(&request))
                .await
                .map_err(CopyError::from)
        }
        Method::Parts { part_size } => {
            let plan = Multipart {
                source,
                etag: &head.etag,
                size: head.size,
                destination,
                part_size,
            };
            plan.run(replicator, &attributes, deadline).await
        }
    }
}

/// One copy by parts.
struct Multipart<'a> {
    source: ObjectAt<'a>,
    etag: &'a str,
    size: u64,
    destination: ObjectAt<'a>,
    part_size: u64,
}

impl Multipart<'_> {
    /// Creates the upload, copies the parts, completes it; any failure aborts the upload so
    /// that none is left behind.
    async fn run<S: Store>(
        &self,
        replicator: &Replicator<S>,
        attributes: &ReplicaAttributes,
        deadline: &Deadline,
    ) -> Result<(), CopyError> {
        let store = replicator.store();
        // CreateMultipartUpload cannot copy tags: read them from the source and set them here.
        let tags = replicator
            .call(deadline, store.get_tags(self.source))
            .await?;
        let created = replicator
            .call(
                deadline,
                store.create_upload(self.destination, attributes, &tags),
            )
            .await;
        let upload_id = match created {
            Ok(upload_id) => upload_id,
            Err(failure) => {
                // A timeout or a reset may have lost the answer of an upload S3 did create.
                if failure.is_transient() {
                    self.abort_orphans(store).await;
                }
                return Err(failure.into());
            }
        };
        let result = self
            .parts_and_complete(replicator, &upload_id, deadline)
            .await;
        if let Err(error) = result {
            return Err(match self.abort(store, &upload_id).await {
                Ok(()) => error,
                Err(abort_failure) => CopyError::Failed(abort_failure),
            });
        }
        Ok(())
    }

    async fn parts_and_complete<S: Store>(
        &self,
        replicator: &Replicator<S>,
        upload_id: &str,
        deadline: &Deadline,
    ) -> Result<(), CopyError> {
        let store = replicator.store();
        let count = self.size.div_ceil(self.part_size).max(1);
        let copy_part = |number: u64| async move {
            let first = (number - 1) * self.part_size;
            let last = (first + self.part_size).min(self.size).saturating_sub(1);
            let request = PartCopyRequest {
                source: self.source,
                source_etag: self.etag,
                destination: self.destination,
                upload_id,
                part_number: number as u32,
                first,
                last,
            };
            let etag = replicator.call(deadline, store.copy_part(&request)).await?;
            Ok::<_, Failure>(Part {
                number: number as u32,
                etag,
                size: last + 1 - first,
            })
        };
        // Parts run concurrently; the engine's guard bounds requests across all copies. The
        // first failure stops the rest.
        let mut parts: Vec<Part> = stream::iter(1..=count)
            .map(copy_part)
            .buffer_unordered(count.min(64) as usize)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.number);
        replicator
            .call(
                deadline,
                store.complete_upload(self.destination, upload_id, &parts, &WriteCondition::Any),
            )
            .await?;
        Ok(())
    }

    /// Aborts every upload in progress for this replica key: after a creation whose answer was
    /// lost, the upload it may have made is unknown. An upload another invocation is running
    /// for the same key fails its next part and is retried.
    async fn abort_orphans<S: Store>(&self, store: &S) {
        for attempt in 1..=ABORT_ATTEMPTS {
            match store.list_uploads(self.destination).await {
                Ok(uploads) => {
                    for upload in uploads {
                        if let Err(failure) = self.abort(store, &upload.upload_id).await {
                            tracing::error!(error = %failure.message, "orphaned upload left open");
                        }
                    }
                    return;
                }
                Err(failure) => {
                    tracing::warn!(bucket = %self.destination.bucket, key = %self.destination.key,
                        attempt, error = %failure.message, "listing uploads to clean up failed");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
            }
        }
    }

    /// Aborts the upload, retrying: an upload left behind is billed storage. Runs past the
    /// deadline's soft stop on purpose (the margin leaves room for it).
    async fn abort<S: Store>(&self, store: &S, upload_id: &str) -> Result<(), Failure> {
        let mut last = None;
        for attempt in 1..=ABORT_ATTEMPTS {
            match store.abort_upload(self.destination, upload_id).await {
                Ok(()) => return Ok(()),
                Err(failure) if failure.is_missing_upload() || failure.status == Some(404) => {
                    return Ok(())
                }
                Err(failure) => {
                    tracing::warn!(bucket = %self.destination.bucket, key = %self.destination.key,
                        upload_id, attempt, error = %failure.message, "abort of multipart upload failed");
                    last = Some(failure);
                }
            }
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
        }
        let failure = last.unwrap_or_else(|| Failure::new(FailureKind::Retryable, "abort failed"));
        Err(Failure::new(
            FailureKind::Retryable,
            format!(
                "multipart upload {upload_id} of s3://{}/{} could not be aborted ({}); a lifecycle rule for incomplete uploads removes it",
                self.destination.bucket, self.destination.key, failure.message
            ),
        ))
    }
}
