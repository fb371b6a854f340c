//! Server-side copy of one object to one target: one `CopyObject`, or `UploadPartCopy` parts in
//! parallel. Either way the replica gets the same headers, metadata, provenance, tags, storage
//! class and encryption, every request is pinned to the source ETag, and bytes never pass
//! through this process.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::deadline::Deadline;
use super::replicator::Replicator;
use crate::core::config::Target;
use crate::core::decide::{Method, Replaces, MIN_PART_BYTES};
use crate::core::object::{Checksum, ChecksumAlgorithm, ObjectHead};
use crate::core::outcome::{Failure, FailureKind};
use crate::core::provenance;
use crate::store::{
    CopyRange, CopyRequest, Directive, Landed, ObjectAt, Part, PartCopyRequest, ReplicaAttributes,
    Store, WriteCondition,
};

/// What a copy by parts does with its upload when something stops it before it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenStopped {
    /// Leave it open, stopped by the deadline or by a transient failure: the event's retry
    /// comes back to this key whatever stopped it, and resumes it, copying only the missing
    /// parts (a target failing one request in ten still sees every attempt make progress).
    LeaveOpen,
    /// Leave it open only at the deadline: the backfill's next invocation comes back to the
    /// key after a deadline, never to a key it reported failed.
    LeaveOpenAtDeadline,
    /// Abort it: it copies a version nothing will come back for (an event about another
    /// version, whose redelivery may find the source smaller and never look for uploads).
    Abort,
}

impl WhenStopped {
    /// Whether an upload stopped by `failure` is left open.
    fn leaves_open(self, failure: &Failure) -> bool {
        match self {
            WhenStopped::LeaveOpen => {
                failure.kind == FailureKind::Deferred || failure.is_transient()
            }
            WhenStopped::LeaveOpenAtDeadline => failure.kind == FailureKind::Deferred,
            WhenStopped::Abort => false,
        }
    }
}

/// What copies by parts of one object did, whether or not they completed.
#[derive(Debug, Default)]
pub(crate) struct PartsProgress {
    /// Parts copied (as answered).
    copied: AtomicU64,
    /// Parts found in uploads resumed.
    found: AtomicU64,
    /// Uploads completed.
    completed: AtomicU64,
    /// Whether the deadline left an upload open.
    left_open: AtomicBool,
}

impl PartsProgress {
    /// Parts copied.
    pub fn copied(&self) -> u64 {
        self.copied.load(Ordering::Relaxed)
    }

    /// Parts an earlier invocation left in the uploads resumed (some may have landed after
    /// its deadline cut their answers).
    pub fn found(&self) -> u64 {
        self.found.load(Ordering::Relaxed)
    }

    /// Uploads completed: the deadline may stop the check that follows.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Whether an upload was left open for a later invocation.
    pub fn left_open(&self) -> bool {
        self.left_open.load(Ordering::Relaxed)
    }
}

/// Attempts to abort an upload that failed: an upload left behind is billed storage.
const ABORT_ATTEMPTS: u32 = 10;

/// Why a copy did not happen.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// The source no longer has the ETag the copy was pinned to.
    SourceChanged,
    /// The source object is gone.
    SourceGone,
    /// The source was archived since it was read (403 `ObjectNotInActiveTierError`).
    SourceArchived,
    /// The upload was completed or aborted by another invocation copying the same object:
    /// what the replica holds now must be read again.
    Superseded,
    /// A resumed upload turned out to hold parts of another version of the source (its
    /// upload recorded another source ETag): the replica, as read, must be copied again.
    Spliced(Box<ObjectHead>),
    /// Anything else.
    Failed(Failure),
}

impl From<Failure> for CopyError {
    fn from(failure: Failure) -> Self {
        if failure.is_precondition_failed() {
            CopyError::SourceChanged
        } else if failure.code.as_deref() == Some("NoSuchKey") {
            CopyError::SourceGone
        } else if matches!(
            failure.code.as_deref(),
            Some("ObjectNotInActiveTierError" | "InvalidObjectState")
        ) {
            CopyError::SourceArchived
        } else if failure.is_missing_upload() {
            CopyError::Superseded
        } else {
            CopyError::Failed(failure)
        }
    }
}

/// Whether an upload in progress holds only parts of the source as `head` describes it: it was
/// created after the source was last written (so every part it received, each pinned to the
/// ETag of its day, came from this very version). Last-Modified has whole seconds, so the
/// upload must start at least a second after it.
fn resumable(initiated_ms: Option<i64>, head: &ObjectHead) -> bool {
    match (initiated_ms, head.last_modified_ms) {
        (Some(initiated), Some(written)) => initiated >= written + 1000,
        _ => false,
    }
}

/// Aborts the uploads in progress for `destination` that cannot be resumed for the source as
/// it is now (`None`: the source is gone): left behind by a copy the deadline stopped, whose
/// change then found the source changed.
pub(crate) async fn abort_stale<S: Store>(
    store: &S,
    destination: ObjectAt<'_>,
    current: Option<&ObjectHead>,
) -> Result<(), Failure> {
    for upload in store.list_uploads(destination).await? {
        if current.is_some_and(|head| resumable(upload.initiated_ms, head)) {
            continue;
        }
        abort_upload(store, destination, &upload.upload_id).await?;
    }
    Ok(())
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
        // S3 computes the replica's checksum in the source's algorithm, so the two compare.
        checksum: head
            .checksum
            .as_ref()
            .map_or(ChecksumAlgorithm::Crc64Nvme, |c| c.algorithm),
    }
}

/// Where and how one copy writes.
pub(crate) struct Destination<'a> {
    /// The target the replica belongs to.
    pub target: &'a Target,
    /// The replica.
    pub at: ObjectAt<'a>,
    /// One request or parts.
    pub method: Method,
    /// What the copy may replace.
    pub replaces: Replaces,
    /// What a copy by parts stopped before it completes does with its upload.
    pub when_stopped: WhenStopped,
    /// What a copy by parts did, whether or not it completes.
    pub progress: &'a PartsProgress,
}

/// Copies the source (as `head` describes it) to the destination; a single `CopyObject`
/// answers what landed.
pub(crate) async fn copy<S: Store>(
    replicator: &Replicator<S>,
    source: ObjectAt<'_>,
    head: &ObjectHead,
    to: Destination<'_>,
    deadline: &Deadline,
) -> Result<Option<Landed>, CopyError> {
    let Destination {
        target,
        at: destination,
        method,
        replaces,
        when_stopped,
        progress,
    } = to;
    let attributes = attributes(source.bucket, head, target);
    match method {
        Method::Single => {
            let request = CopyRequest {
                source,
                source_etag: &head.etag,
                destination,
                attributes: &attributes,
                directive: Directive::Replace,
                condition: condition(replaces),
            };
            send(replicator, &request, deadline).await.map(Some)
        }
        Method::Plain => copy_plain(
            replicator,
            source,
            &head.etag,
            target,
            destination,
            replaces,
            deadline,
        )
        .await
        .map(Some),
        Method::Parts { part_size } => {
            let plan = Multipart {
                source,
                etag: &head.etag,
                checksum: head.checksum.as_ref(),
                size: head.size,
                destination,
                part_size,
                progress,
            };
            plan.run(replicator, head, &attributes, when_stopped, deadline)
                .await
                .map(|()| None)
        }
    }
}

/// A plain copy of the source as S3 reads it, pinned to `etag`: nothing of the source need
/// be known but its ETag. Its checksum is computed afresh in CRC64NVME, S3's default.
pub(crate) async fn copy_plain<S: Store>(
    replicator: &Replicator<S>,
    source: ObjectAt<'_>,
    etag: &str,
    target: &Target,
    destination: ObjectAt<'_>,
    replaces: Replaces,
    deadline: &Deadline,
) -> Result<Landed, CopyError> {
    let attributes = ReplicaAttributes {
        headers: Default::default(),
        metadata: Default::default(),
        storage_class: target.storage_class.clone(),
        kms_key_id: target.kms_key_id.clone(),
        checksum: ChecksumAlgorithm::Crc64Nvme,
    };
    let request = CopyRequest {
        source,
        source_etag: etag,
        destination,
        attributes: &attributes,
        directive: Directive::Source,
        condition: condition(replaces),
    };
    send(replicator, &request, deadline).await
}

/// One `CopyObject` through the engine's guard.
async fn send<S: Store>(
    replicator: &Replicator<S>,
    request: &CopyRequest<'_>,
    deadline: &Deadline,
) -> Result<Landed, CopyError> {
    replicator
        .call(deadline, replicator.store().copy_object(request))
        .await
        .map_err(CopyError::from)
}

fn condition(replaces: Replaces) -> WriteCondition {
    match replaces {
        Replaces::Nothing => WriteCondition::Absent,
        Replaces::Anything => WriteCondition::Any,
    }
}

/// One copy by parts.
struct Multipart<'a> {
    source: ObjectAt<'a>,
    etag: &'a str,
    /// The source's full-object checksum, when it has one: S3 completes the upload only if
    /// the assembled bytes have it.
    checksum: Option<&'a Checksum>,
    size: u64,
    destination: ObjectAt<'a>,
    part_size: u64,
    progress: &'a PartsProgress,
}

impl<'a> Multipart<'a> {
    /// Resumes an upload an earlier invocation left for this source, or creates one; copies
    /// the missing parts; completes it. A failure aborts the upload so that none is left
    /// behind, unless `when_stopped` leaves it open for the next attempt.
    async fn run<S: Store>(
        &self,
        replicator: &Replicator<S>,
        head: &ObjectHead,
        attributes: &ReplicaAttributes,
        when_stopped: WhenStopped,
        deadline: &Deadline,
    ) -> Result<(), CopyError> {
        let store = replicator.store();
        let (upload_id, done) = match self.find_resumable(replicator, head, deadline).await? {
            Some(found) => found,
            None => (
                self.create(replicator, attributes, deadline).await?,
                Vec::new(),
            ),
        };
        let resumed = !done.is_empty();
        let result = self
            .parts_and_complete(replicator, &upload_id, done, deadline)
            .await;
        match result {
            Ok(()) if resumed => self.one_version(replicator, deadline).await,
            Ok(()) => Ok(()),
            Err(CopyError::Failed(failure)) if when_stopped.leaves_open(&failure) => {
                self.progress.left_open.store(true, Ordering::Relaxed);
                tracing::info!(bucket = %self.destination.bucket, key = %self.destination.key,
                    upload_id, "copy by parts continues in the next attempt");
                Err(CopyError::Failed(failure))
            }
            Err(CopyError::Superseded) => Err(CopyError::Superseded),
            Err(error) => Err(
                match abort_upload(store, self.destination, &upload_id).await {
                    Ok(()) => error,
                    Err(abort_failure) => CopyError::Failed(abort_failure),
                },
            ),
        }
    }

    /// Proves that a resumed upload, now complete, holds one version of the source: the
    /// provenance it was created with names the ETag its new parts were pinned to. An upload's
    /// Initiated time cannot prove it alone: a source completed by a multipart upload has the
    /// Last-Modified of when that upload began, which may be older than the replica's upload
    /// although it replaced the source after it (parts of both would then be spliced).
    async fn one_version<S: Store>(
        &self,
        replicator: &Replicator<S>,
        deadline: &Deadline,
    ) -> Result<(), CopyError> {
        let store = replicator.store();
        let landed = replicator
            .call_in_finishing(deadline, store.head(self.destination, None))
            .await?;
        match landed {
            Some(head) if head.recorded_etag() == Some(provenance::bare_etag(self.etag)) => Ok(()),
            Some(head) => {
                tracing::warn!(bucket = %self.destination.bucket, key = %self.destination.key,
                    recorded = head.recorded_etag().unwrap_or(""), source_etag = self.etag,
                    "a resumed copy by parts held parts of another version; copied again");
                Err(CopyError::Spliced(Box::new(head)))
            }
            // Replaced or deleted at once by another invocation: read again.
            None => Err(CopyError::Superseded),
        }
    }

    /// An upload in progress for this source version and part size, with the parts it holds;
    /// uploads that cannot be resumed are aborted.
    async fn find_resumable<S: Store>(
        &self,
        replicator: &Replicator<S>,
        head: &ObjectHead,
        deadline: &Deadline,
    ) -> Result<Option<(String, Vec<Part>)>, Failure> {
        let store = replicator.store();
        let uploads = replicator
            .call(deadline, store.list_uploads(self.destination))
            .await?;
        let mut found = None;
        // Only provenance on the upload can prove which version its parts are of.
        let provable = provenance::fits(&head.metadata, self.source.bucket, &head.etag);
        for upload in uploads {
            if found.is_none() && provable && resumable(upload.initiated_ms, head) {
                let parts = replicator
                    .call(
                        deadline,
                        store.list_parts(self.destination, &upload.upload_id),
                    )
                    .await;
                match parts {
                    Ok(parts) if self.fits_layout(&parts) => {
                        self.progress
                            .found
                            .fetch_add(parts.len() as u64, Ordering::Relaxed);
                        found = Some((upload.upload_id, parts));
                        continue;
                    }
                    Ok(_) => {}
                    Err(failure) if failure.is_missing_upload() => continue,
                    Err(failure) => return Err(failure),
                }
            }
            abort_upload(store, self.destination, &upload.upload_id).await?;
        }
        Ok(found)
    }

    /// Whether parts already uploaded are the parts this copy would make.
    fn fits_layout(&self, parts: &[Part]) -> bool {
        let count = self.size.div_ceil(self.part_size).max(1);
        parts.iter().all(|p| {
            let number = u64::from(p.number);
            let expected = if number == count {
                self.size - (count - 1) * self.part_size
            } else {
                self.part_size
            };
            (1..=count).contains(&number) && p.size == expected
        })
    }

    async fn create<S: Store>(
        &self,
        replicator: &Replicator<S>,
        attributes: &ReplicaAttributes,
        deadline: &Deadline,
    ) -> Result<String, CopyError> {
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
        match created {
            Ok(upload_id) => Ok(upload_id),
            Err(failure) => {
                // A timeout or a reset may have lost the answer of an upload S3 did create.
                if failure.is_transient() {
                    self.abort_orphans(store).await;
                }
                Err(failure.into())
            }
        }
    }

    async fn parts_and_complete<S: Store>(
        &self,
        replicator: &Replicator<S>,
        upload_id: &str,
        done: Vec<Part>,
        deadline: &Deadline,
    ) -> Result<(), CopyError> {
        let store = replicator.store();
        let count = self.size.div_ceil(self.part_size).max(1);
        let have: std::collections::BTreeSet<u64> =
            done.iter().map(|p| u64::from(p.number)).collect();
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
                range: if count == 1 && self.size <= MIN_PART_BYTES {
                    CopyRange::WholeObject
                } else {
                    CopyRange::Bytes
                },
            };
            let copied = replicator.call(deadline, store.copy_part(&request)).await?;
            self.progress.copied.fetch_add(1, Ordering::Relaxed);
            Ok::<_, Failure>(Part {
                number: number as u32,
                etag: copied.etag,
                size: last + 1 - first,
                checksum: copied.checksum,
            })
        };
        // Parts run concurrently; the engine's guard bounds requests across all copies. The
        // first failure stops the rest.
        let missing: Vec<u64> = (1..=count).filter(|n| !have.contains(n)).collect();
        let width = missing.len().clamp(1, 64);
        let copied: Vec<Part> = stream::iter(missing)
            .map(copy_part)
            .buffer_unordered(width)
            .try_collect()
            .await?;
        let mut parts = done;
        parts.extend(copied);
        parts.sort_by_key(|p| p.number);
        let whole = self.whole(&parts);
        let completed = replicator
            .call(
                deadline,
                store.complete_upload(
                    self.destination,
                    upload_id,
                    &parts,
                    whole,
                    &WriteCondition::Any,
                ),
            )
            .await;
        match completed {
            Ok(()) => {}
            Err(failure) if refused_digest(&failure) => {
                // The assembled bytes are not the source's as it was read: never a success.
                // The upload is aborted and the source read again, then copied afresh.
                tracing::warn!(bucket = %self.destination.bucket, key = %self.destination.key,
                    upload_id, error = %failure.message,
                    "S3 refused to complete a copy by parts whose bytes are not the source's; copied again");
                return Err(CopyError::SourceChanged);
            }
            Err(failure) => return Err(failure.into()),
        }
        self.progress.completed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The full-object checksum to declare on completion: the source's, when every part
    /// carries a checksum of its algorithm (an upload an earlier version of this tool created
    /// without one cannot be completed with it).
    fn whole(&self, parts: &[Part]) -> Option<&'a Checksum> {
        let whole = self.checksum?;
        parts
            .iter()
            .all(|p| {
                p.checksum
                    .as_ref()
                    .is_some_and(|c| c.algorithm == whole.algorithm)
            })
            .then_some(whole)
    }

    /// Aborts every upload in progress for this replica key: after a creation whose answer was
    /// lost, the upload it may have made is unknown. An upload another invocation is running
    /// for the same key fails its next part and is retried.
    async fn abort_orphans<S: Store>(&self, store: &S) {
        for attempt in 1..=ABORT_ATTEMPTS {
            match store.list_uploads(self.destination).await {
                Ok(uploads) => {
                    for upload in uploads {
                        if let Err(failure) =
                            abort_upload(store, self.destination, &upload.upload_id).await
                        {
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
}

/// Whether `CompleteMultipartUpload` refused the declared full-object checksum: 400
/// `BadDigest` when the assembled bytes have another one ("Checking object integrity" in the S3
/// user guide: a provided checksum that does not match the one S3 calculates rejects the
/// request), or `InvalidRequest` about the checksum (an upload whose checksum type or algorithm
/// does not fit the declared one).
fn refused_digest(failure: &Failure) -> bool {
    match failure.code.as_deref() {
        Some("BadDigest") => true,
        Some("InvalidRequest") => failure.message.to_ascii_lowercase().contains("checksum"),
        _ => false,
    }
}

/// Aborts an upload, retrying: an upload left behind is billed storage. Runs past the
/// deadline's soft stop on purpose (the margin leaves room for it).
async fn abort_upload<S: Store>(
    store: &S,
    destination: ObjectAt<'_>,
    upload_id: &str,
) -> Result<(), Failure> {
    let mut last = None;
    for attempt in 1..=ABORT_ATTEMPTS {
        match store.abort_upload(destination, upload_id).await {
            Ok(()) => return Ok(()),
            Err(failure) if failure.is_missing_upload() || failure.status == Some(404) => {
                return Ok(())
            }
            Err(failure) => {
                tracing::warn!(bucket = %destination.bucket, key = %destination.key,
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
            destination.bucket, destination.key, failure.message
        ),
    ))
}
