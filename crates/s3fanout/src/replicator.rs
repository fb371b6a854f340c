//! The copy engine: applies changes to every target concurrently, by server-side copy.

use std::future::Future;
use std::time::Instant;

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use futures::future::join_all;
use tokio::sync::Semaphore;

use crate::client::Clients;
use crate::config::{Config, ConfigError, Target};
use crate::copy::{self, CopyPlan};
use crate::deadline::Deadline;
use crate::event::{Change, ChangeKind};
use crate::keys::MAX_KEY_BYTES;
use crate::outcome::{ChangeReport, Outcome, TargetReport};
use crate::provenance;
use crate::s3_error::S3Failure;

/// Replicates changes of the source buckets to every configured target.
#[derive(Debug)]
pub struct Replicator {
    config: Config,
    clients: Clients,
    limit: Semaphore,
}

/// The source object as it is now, pinned by its ETag.
struct Source<'a> {
    change: &'a Change,
    head: HeadObjectOutput,
    etag: String,
    /// Part size of a multipart source whose parts are all equal but the last: copying with the
    /// same parts gives the replica the source's ETag, which a listing can then compare. Read
    /// once, and only when some target needs a copy.
    layout: tokio::sync::OnceCell<Option<u64>>,
}

enum SourceState {
    Present(Box<HeadObjectOutput>),
    Missing,
    Failed(String, bool),
}

impl Replicator {
    /// Reads the configuration and AWS settings from the environment (cold start).
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        Ok(Self::new(config, Clients::from_env().await))
    }

    /// Builds a replicator from parts.
    pub fn new(config: Config, clients: Clients) -> Self {
        let limit = Semaphore::new(config.concurrency);
        Replicator {
            config,
            clients,
            limit,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The S3 client for a region.
    pub fn client(&self, region: &str) -> aws_sdk_s3::Client {
        self.clients.for_region(region)
    }

    /// The region of a source bucket: as configured (`BUCKET@REGION`), else the process's own.
    pub fn source_region(&self, bucket: &str) -> String {
        self.config
            .source_regions
            .get(bucket)
            .cloned()
            .unwrap_or_else(|| self.clients.default_region())
    }

    /// Whether the replica of `key` in `target` records `source_etag` as its provenance.
    pub async fn replica_is_current(
        &self,
        target: &Target,
        key: &str,
        source_etag: &str,
    ) -> Result<bool, String> {
        let replica_key = target.replica_key(key);
        let _permit = self
            .limit
            .acquire()
            .await
            .expect("semaphore is never closed");
        match self
            .clients
            .for_region(&target.region)
            .head_object()
            .bucket(&target.bucket)
            .key(&replica_key)
            .send()
            .await
        {
            Ok(head) => Ok(provenance::recorded_etag(head.metadata())
                == Some(provenance::bare_etag(source_etag))),
            Err(err) => {
                let failure = S3Failure::from_sdk(&err);
                if failure.is_missing_object() {
                    Ok(false)
                } else {
                    Err(failure.describe(
                        "HeadObject",
                        &format!("s3://{}/{}", target.bucket, replica_key),
                    ))
                }
            }
        }
    }

    /// Applies all changes concurrently (bounded by the configured concurrency).
    pub async fn apply(&self, changes: &[Change]) -> Vec<ChangeReport> {
        self.apply_before(changes, &Deadline::none()).await
    }

    /// Applies all changes concurrently, stopping in time for `deadline`: what was not done is
    /// reported failed (retryable).
    pub async fn apply_before(&self, changes: &[Change], deadline: &Deadline) -> Vec<ChangeReport> {
        join_all(changes.iter().map(|c| self.apply_change(c, deadline))).await
    }

    /// Applies one change to every target; one target's failure never stops the others.
    pub async fn apply_change(&self, change: &Change, deadline: &Deadline) -> ChangeReport {
        let all: Vec<&Target> = self.config.targets.iter().collect();
        match change.kind {
            ChangeKind::Created => {
                let checked: Vec<(&Target, bool)> = all.iter().map(|t| (*t, true)).collect();
                self.copy_to_targets(change, &checked, deadline).await
            }
            ChangeKind::Removed if !self.config.replicate_deletes => {
                let reason = "deletes are not propagated (REPLICATE_DELETES is false)".to_string();
                same_for(change, &all, Instant::now(), Outcome::Ignored { reason })
            }
            ChangeKind::Removed => self.delete_from_targets(change, &all, deadline).await,
        }
    }

    /// Copies the current source object to the given targets. With `true` beside a target, the
    /// replica is read first and left alone when its provenance says it is current; with
    /// `false` (the caller already knows it is missing or different) it is copied directly.
    pub async fn copy_to_targets(
        &self,
        change: &Change,
        targets: &[(&Target, bool)],
        deadline: &Deadline,
    ) -> ChangeReport {
        let started = Instant::now();
        let names: Vec<&Target> = targets.iter().map(|(t, _)| *t).collect();
        if let Some(outcome) = self.reject_source(change) {
            return same_for(change, &names, started, outcome);
        }
        let head = match self.head_source(change, deadline).await {
            SourceState::Present(head) => head,
            SourceState::Missing => return same_for(change, &names, started, Outcome::SourceGone),
            SourceState::Failed(error, retryable) => {
                return same_for(
                    change,
                    &names,
                    started,
                    Outcome::Failed { retryable, error },
                )
            }
        };
        let etag = provenance::bare_etag(head.e_tag().unwrap_or_default()).to_string();
        if change
            .etag
            .as_deref()
            .is_some_and(|announced| provenance::bare_etag(announced) != etag)
        {
            return same_for(change, &names, started, Outcome::SourceChanged);
        }
        if provenance::is_replica(head.metadata()) {
            return same_for(change, &names, started, Outcome::IsReplica);
        }
        let source = Source {
            change,
            head: *head,
            etag,
            layout: tokio::sync::OnceCell::new(),
        };
        let copies = targets.iter().map(|(target, check)| {
            self.timed(
                change,
                target,
                started,
                self.copy_to(target, &source, *check, deadline),
            )
        });
        ChangeReport {
            change: change.clone(),
            targets: join_all(copies).await,
        }
    }

    /// Deletes an object from the given targets, once the source is confirmed not to have it
    /// (an object written again since the delete must keep its replicas).
    pub async fn delete_from_targets(
        &self,
        change: &Change,
        targets: &[&Target],
        deadline: &Deadline,
    ) -> ChangeReport {
        let started = Instant::now();
        if let Some(outcome) = self.reject_source(change) {
            return same_for(change, targets, started, outcome);
        }
        match self.head_source(change, deadline).await {
            SourceState::Missing => {}
            SourceState::Present(_) => {
                return same_for(change, targets, started, Outcome::SourceExists)
            }
            SourceState::Failed(error, retryable) => {
                return same_for(
                    change,
                    targets,
                    started,
                    Outcome::Failed { retryable, error },
                )
            }
        }
        let deletes = targets.iter().map(|target| {
            self.timed(
                change,
                target,
                started,
                self.delete_from(target, &change.key, deadline),
            )
        });
        ChangeReport {
            change: change.clone(),
            targets: join_all(deletes).await,
        }
    }

    /// A failure for changes of buckets that are not configured sources.
    fn reject_source(&self, change: &Change) -> Option<Outcome> {
        if self.config.source_buckets.contains(&change.bucket) {
            return None;
        }
        let allowed: Vec<_> = self
            .config
            .source_buckets
            .iter()
            .map(String::as_str)
            .collect();
        Some(Outcome::Failed {
            retryable: false,
            error: format!(
                "bucket {:?} is not an allowed source (SOURCE_BUCKETS={}); not replicated",
                change.bucket,
                allowed.join(",")
            ),
        })
    }

    /// Reads the source's headers, giving up at the deadline's hard stop.
    async fn head_source(&self, change: &Change, deadline: &Deadline) -> SourceState {
        let work = self.head_source_unbounded(change, deadline);
        match tokio::time::timeout_at(deadline.hard().into(), work).await {
            Ok(state) => state,
            Err(_) => match deadline.stopped_in_flight() {
                Outcome::Failed { error, retryable } => SourceState::Failed(error, retryable),
                _ => unreachable!("stopped_in_flight is a failure"),
            },
        }
    }

    async fn head_source_unbounded(&self, change: &Change, deadline: &Deadline) -> SourceState {
        let region = change
            .region
            .clone()
            .unwrap_or_else(|| self.source_region(&change.bucket));
        let client = self.clients.for_region(&region);
        let _permit = self
            .limit
            .acquire()
            .await
            .expect("semaphore is never closed");
        if let Some(Outcome::Failed { error, retryable }) = deadline.refuse_new_work() {
            return SourceState::Failed(error, retryable);
        }
        let result = client
            .head_object()
            .bucket(&change.bucket)
            .key(&change.key)
            .send()
            .await;
        let failure = match result {
            Ok(head) => return SourceState::Present(Box::new(head)),
            Err(err) => S3Failure::from_sdk(&err),
        };
        let location = format!("s3://{}/{}", change.bucket, change.key);
        if !failure.is_missing_object() {
            return SourceState::Failed(
                failure.describe("HeadObject", &location),
                failure.retryable,
            );
        }
        // HEAD answers a bare 404 for a missing bucket too; only the bucket check tells them apart.
        match client.head_bucket().bucket(&change.bucket).send().await {
            Ok(_) => SourceState::Missing,
            Err(err) => {
                let bucket_failure = S3Failure::from_sdk(&err);
                let error = if bucket_failure.status == Some(404) {
                    format!("source bucket {:?} does not exist", change.bucket)
                } else {
                    bucket_failure.describe("HeadBucket", &change.bucket)
                };
                SourceState::Failed(error, bucket_failure.retryable)
            }
        }
    }

    async fn copy_to(
        &self,
        target: &Target,
        source: &Source<'_>,
        check: bool,
        deadline: &Deadline,
    ) -> Outcome {
        let key = target.replica_key(&source.change.key);
        if key.len() > MAX_KEY_BYTES {
            return permanent(format!(
                "replica key is {} bytes with prefix {:?}: above S3's {MAX_KEY_BYTES}-byte limit",
                key.len(),
                target.prefix
            ));
        }
        let client = self.clients.for_region(&target.region);
        let location = format!("s3://{}/{}", target.bucket, key);
        let plan = CopyPlan {
            source_bucket: &source.change.bucket,
            source_key: &source.change.key,
            etag: &source.etag,
            head: &source.head,
            target,
            key: &key,
        };
        let size = source.head.content_length().unwrap_or_default().max(0) as u64;
        let permit = self
            .limit
            .acquire()
            .await
            .expect("semaphore is never closed");
        if let Some(refused) = deadline.refuse_new_work() {
            return refused;
        }
        let checked = tokio::time::timeout_at(deadline.hard().into(), async {
            if !check {
                return None;
            }
            match client
                .head_object()
                .bucket(&target.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(replica)
                    if provenance::recorded_etag(replica.metadata()) == Some(&source.etag) =>
                {
                    Some(Outcome::UpToDate)
                }
                Ok(_) => None,
                Err(err) => {
                    let failure = S3Failure::from_sdk(&err);
                    (!failure.is_missing_object())
                        .then(|| failed(&failure, "HeadObject", &location))
                }
            }
        });
        match checked.await {
            Ok(Some(outcome)) => return outcome,
            Ok(None) => {}
            Err(_) => return deadline.stopped_in_flight(),
        }
        // Multipart copies take permits of their own (for the layout read and for each part).
        drop(permit);
        let layout = match copy::parts_in_etag(&source.etag) {
            Some(_) => {
                *source
                    .layout
                    .get_or_init(|| self.source_layout(source.change, &source.head, &source.etag))
                    .await
            }
            None => None,
        };
        if layout.is_some() || size > self.config.multipart_threshold {
            let part_size = layout.unwrap_or_else(|| copy::part_size(size, self.config.part_size));
            return copy::multipart(&client, &plan, part_size, &self.limit, deadline).await;
        }
        let _permit = self
            .limit
            .acquire()
            .await
            .expect("semaphore is never closed");
        match tokio::time::timeout_at(deadline.hard().into(), copy::single(&client, &plan)).await {
            Ok(outcome) => outcome,
            Err(_) => deadline.stopped_in_flight(),
        }
    }

    /// The part size of a multipart source, when its parts are uniform (as every SDK and the CLI
    /// upload them); `None` for single-part sources or when it cannot be told.
    async fn source_layout(
        &self,
        change: &Change,
        head: &HeadObjectOutput,
        etag: &str,
    ) -> Option<u64> {
        let parts = copy::parts_in_etag(etag)?;
        let size = head.content_length().unwrap_or_default().max(0) as u64;
        if size == 0 {
            return None;
        }
        let region = change
            .region
            .clone()
            .unwrap_or_else(|| self.source_region(&change.bucket));
        let _permit = self
            .limit
            .acquire()
            .await
            .expect("semaphore is never closed");
        let first = self
            .clients
            .for_region(&region)
            .head_object()
            .bucket(&change.bucket)
            .key(&change.key)
            .part_number(1)
            .send()
            .await
            .ok()?;
        let part = first.content_length().unwrap_or_default().max(0) as u64;
        (part >= copy::MIN_PART_BYTES.min(size) && size.div_ceil(part) == parts).then_some(part)
    }

    async fn delete_from(&self, target: &Target, source_key: &str, deadline: &Deadline) -> Outcome {
        let key = target.replica_key(source_key);
        let client = self.clients.for_region(&target.region);
        let _permit = self
            .limit
            .acquire()
            .await
            .expect("semaphore is never closed");
        if let Some(refused) = deadline.refuse_new_work() {
            return refused;
        }
        match client
            .delete_object()
            .bucket(&target.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Outcome::Deleted,
            Err(err) => failed(
                &S3Failure::from_sdk(&err),
                "DeleteObject",
                &format!("s3://{}/{}", target.bucket, key),
            ),
        }
    }

    async fn timed(
        &self,
        change: &Change,
        target: &Target,
        started: Instant,
        work: impl Future<Output = Outcome>,
    ) -> TargetReport {
        let outcome = work.await;
        report(change, target, started, outcome)
    }
}

fn same_for(
    change: &Change,
    targets: &[&Target],
    started: Instant,
    outcome: Outcome,
) -> ChangeReport {
    ChangeReport {
        change: change.clone(),
        targets: targets
            .iter()
            .map(|target| report(change, target, started, outcome.clone()))
            .collect(),
    }
}

fn report(change: &Change, target: &Target, started: Instant, outcome: Outcome) -> TargetReport {
    let duration = started.elapsed();
    let key = target.replica_key(&change.key);
    let duration_ms = duration.as_millis() as u64;
    match &outcome {
        Outcome::Failed { retryable, error } => tracing::error!(
            source_bucket = %change.bucket, key = %change.key, target = %target.bucket,
            outcome = outcome.name(), retryable, error = %error, duration_ms, "replication failed"
        ),
        _ => tracing::info!(
            source_bucket = %change.bucket, key = %change.key, target = %target.bucket,
            outcome = outcome.name(), duration_ms, "replicated"
        ),
    }
    TargetReport {
        bucket: target.bucket.clone(),
        key,
        outcome,
        duration,
    }
}

fn permanent(error: String) -> Outcome {
    Outcome::Failed {
        retryable: false,
        error,
    }
}

fn failed(failure: &S3Failure, operation: &str, location: &str) -> Outcome {
    Outcome::Failed {
        retryable: failure.retryable,
        error: failure.describe(operation, location),
    }
}
