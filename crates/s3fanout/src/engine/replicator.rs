//! The engine: applies changes to every target concurrently, each replica settled by the
//! decision function in a loop of reads and writes, every request through one guard.

use std::future::Future;
use std::time::SystemTime;

use futures::future::join_all;
use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;

use super::copy::{self, CopyError};
use super::deadline::Deadline;
use crate::core::change::{Change, ChangeKind};
use crate::core::config::{Config, ConfigError, Target};
use crate::core::decide::{
    decide, Action, Facts, Method, Need, Purpose, ReplicaSeen, Rules, Settled, SourceSeen,
};
use crate::core::object::{layout_of, parts_in_etag, Layout, ObjectHead};
use crate::core::outcome::{
    ChangeReport, Failure, FailureKind, IgnoreReason, Outcome, TargetReport,
};
use crate::core::provenance;
use crate::store::clients::Clients;
use crate::store::s3::S3Store;
use crate::store::{ObjectAt, Store, WriteCondition};

/// Reads and writes for one replica before the engine gives up on it settling (the source
/// changing faster than it can be copied): the change is then retried.
const MAX_STEPS: usize = 16;

/// Replicates changes of the source buckets to every configured target.
#[derive(Debug)]
pub struct Replicator<S = S3Store> {
    config: Config,
    store: S,
    /// Requests in flight.
    limit: Semaphore,
    /// Changes in progress: enough to keep every request slot busy, few enough that objects
    /// finish one after another instead of all advancing together and none finishing before
    /// the deadline.
    changes: Semaphore,
}

impl Replicator<S3Store> {
    /// Reads the configuration and AWS settings from the environment (cold start).
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        Ok(Self::new(config, Clients::from_env().await))
    }

    /// A replicator over S3 with these clients.
    pub fn new(config: Config, clients: Clients) -> Self {
        Self::with_store(config, S3Store::new(clients))
    }
}

/// One object being brought to its source's state at several targets: what is known of its
/// source, read once and shared by the targets.
pub(crate) struct Job<'a> {
    /// Why the engine looks at it.
    pub purpose: Purpose,
    /// Source bucket.
    pub bucket: &'a str,
    /// Source bucket's region, when known.
    pub region: Option<&'a str>,
    /// Key in the source bucket.
    pub key: &'a str,
    /// The ETag the change was announced with.
    pub announced: Option<&'a str>,
    /// What is known of the source before any read (a listing, or nothing).
    pub seen: SourceSeen,
    head: OnceCell<Result<SourceSeen, Failure>>,
    layout: OnceCell<Result<Layout, Failure>>,
}

impl<'a> Job<'a> {
    /// A job for `key` of `bucket`.
    pub fn new(
        purpose: Purpose,
        bucket: &'a str,
        region: Option<&'a str>,
        key: &'a str,
        announced: Option<&'a str>,
        seen: SourceSeen,
    ) -> Self {
        Job {
            purpose,
            bucket,
            region,
            key,
            announced,
            seen,
            head: OnceCell::new(),
            layout: OnceCell::new(),
        }
    }

    /// The source object's place.
    pub fn source(&self) -> ObjectAt<'_> {
        ObjectAt {
            bucket: self.bucket,
            region: self.region,
            key: self.key,
        }
    }
}

impl<S: Store> Replicator<S> {
    /// A replicator over any store.
    pub fn with_store(config: Config, store: S) -> Self {
        let limit = Semaphore::new(config.concurrency);
        let changes = Semaphore::new((config.concurrency / config.targets.len().max(1)).max(1));
        Replicator {
            config,
            store,
            limit,
            changes,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The region of a source bucket as configured (`BUCKET@REGION`); `None`: the store's own.
    pub fn source_region(&self, bucket: &str) -> Option<&str> {
        self.config.source_regions.get(bucket).map(String::as_str)
    }

    fn rules(&self) -> Rules {
        Rules {
            replicate_deletes: self.config.replicate_deletes,
            multipart_threshold: self.config.multipart_threshold,
            part_size: self.config.part_size,
        }
    }

    /// Every request the engine makes goes through here: a concurrency permit, no start after
    /// the soft deadline, and nothing waited for beyond the hard one.
    pub(crate) async fn call<T>(
        &self,
        deadline: &Deadline,
        work: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        let _permit = self
            .limit
            .acquire()
            .await
            .expect("semaphore is never closed");
        if let Some(refused) = deadline.refuse_new_work() {
            return Err(refused);
        }
        deadline.bound(work).await
    }

    /// Applies all changes concurrently (bounded by the configured concurrency).
    pub async fn apply(&self, changes: &[Change]) -> Vec<ChangeReport> {
        self.apply_before(changes, &Deadline::none()).await
    }

    /// Applies all changes concurrently, stopping in time for `deadline`: what was not done is
    /// reported deferred.
    pub async fn apply_before(&self, changes: &[Change], deadline: &Deadline) -> Vec<ChangeReport> {
        join_all(changes.iter().map(|c| self.apply_change(c, deadline))).await
    }

    /// Applies one change to every target; one target's failure never stops the others.
    pub async fn apply_change(&self, change: &Change, deadline: &Deadline) -> ChangeReport {
        let targets: Vec<&Target> = self.config.targets.iter().collect();
        self.apply_to(change, &targets, deadline).await
    }

    /// Applies one change to the given targets.
    pub async fn apply_to(
        &self,
        change: &Change,
        targets: &[&Target],
        deadline: &Deadline,
    ) -> ChangeReport {
        let started = Instant::now();
        let _slot = self
            .changes
            .acquire()
            .await
            .expect("semaphore is never closed");
        if let Some(failure) = self.reject_source(&change.bucket) {
            let outcome = Outcome::Failed(failure);
            return ChangeReport {
                change: change.clone(),
                targets: targets
                    .iter()
                    .map(|t| report(change, t, started, outcome.clone()))
                    .collect(),
            };
        }
        let region = change
            .region
            .as_deref()
            .or_else(|| self.source_region(&change.bucket));
        let (key, seen) = match self.spelling(change, region, deadline).await {
            Ok(resolved) => resolved,
            Err(failure) => {
                let outcome = Outcome::Failed(failure);
                return ChangeReport {
                    change: change.clone(),
                    targets: targets
                        .iter()
                        .map(|t| report(change, t, started, outcome.clone()))
                        .collect(),
                };
            }
        };
        let job = Job::new(
            Purpose::Replicate(change.kind),
            &change.bucket,
            region,
            key,
            // A delete announces no content: whatever the source holds now is what counts.
            match change.kind {
                ChangeKind::Created => change.etag.as_deref(),
                ChangeKind::Removed => None,
            },
            seen,
        );
        let work = targets.iter().map(|target| async {
            let outcome = self
                .settle(&job, target, ReplicaSeen::Unknown, deadline)
                .await;
            let bytes = copied_bytes(&job, &outcome);
            TargetReport {
                bytes,
                ..report(change, target, started, outcome)
            }
        });
        ChangeReport {
            change: change.clone(),
            targets: join_all(work).await,
        }
    }

    /// The key to use, when the change offers two spellings: the one under which the source
    /// has an object (the first when neither has), with what the reads found.
    async fn spelling<'c>(
        &self,
        change: &'c Change,
        region: Option<&str>,
        deadline: &Deadline,
    ) -> Result<(&'c str, SourceSeen), Failure> {
        let Some(alternate) = change.alternate_key.as_deref() else {
            return Ok((&change.key, SourceSeen::Unknown));
        };
        for key in [change.key.as_str(), alternate] {
            let at = ObjectAt {
                bucket: &change.bucket,
                region,
                key,
            };
            if let Some(head) = self.call(deadline, self.store.head(at, None)).await? {
                if key == alternate {
                    tracing::warn!(bucket = %change.bucket, delivered = %change.key, key,
                        "no object under the key as delivered; its form-decoded spelling exists and is used");
                }
                return Ok((key, SourceSeen::Headed(Box::new(head))));
            }
        }
        // Neither spelling has an object: the usual read tells a missing bucket apart.
        Ok((&change.key, SourceSeen::Unknown))
    }

    /// A failure for changes of buckets that are not configured sources.
    pub fn reject_source(&self, bucket: &str) -> Option<Failure> {
        if self.config.source_buckets.contains(bucket) {
            return None;
        }
        let allowed: Vec<_> = self
            .config
            .source_buckets
            .iter()
            .map(String::as_str)
            .collect();
        Some(Failure::permanent(format!(
            "bucket {bucket:?} is not an allowed source (SOURCE_BUCKETS={}); not replicated",
            allowed.join(",")
        )))
    }

    /// Brings one replica to its source's state: decide, read or write what the decision asks,
    /// decide again, until it settles.
    pub(crate) async fn settle(
        &self,
        job: &Job<'_>,
        target: &Target,
        replica: ReplicaSeen,
        deadline: &Deadline,
    ) -> Outcome {
        let replica_key = target.replica_key(job.key);
        let replica_at = ObjectAt {
            bucket: &target.bucket,
            region: Some(&target.region),
            key: &replica_key,
        };
        let rules = self.rules();
        let mut purpose = job.purpose;
        let mut source = job.seen.clone();
        let mut replica = replica;
        let mut layout = None;
        let mut announced = job.announced;
        // After a write, what was read before is stale: the source is read again, unshared.
        let mut wrote: Option<Outcome> = None;
        for _ in 0..MAX_STEPS {
            let facts = Facts {
                source: &source,
                layout,
                replica: &replica,
                announced,
            };
            match decide(purpose, &facts, target, job.key, &rules) {
                Action::Read(Need::SourceHead) => {
                    let read = match wrote {
                        Some(_) => self.read_source(job, deadline).await,
                        None => job
                            .head
                            .get_or_init(|| self.read_source(job, deadline))
                            .await
                            .clone(),
                    };
                    match read {
                        Ok(seen) => source = seen,
                        Err(failure) => return Outcome::Failed(failure),
                    }
                }
                Action::Read(Need::SourceLayout) => {
                    let SourceSeen::Headed(head) = &source else {
                        return internal("the layout was asked before the source's headers");
                    };
                    let read = match wrote {
                        Some(_) => self.read_layout(job, head, deadline).await,
                        None => job
                            .layout
                            .get_or_init(|| self.read_layout(job, head, deadline))
                            .await
                            .clone(),
                    };
                    match read {
                        Ok(read) => layout = Some(read),
                        Err(failure) => return Outcome::Failed(failure),
                    }
                }
                Action::Read(Need::ReplicaHead) => {
                    match self.call(deadline, self.store.head(replica_at, None)).await {
                        Ok(Some(head)) => replica = ReplicaSeen::Headed(Box::new(head)),
                        Ok(None) => replica = ReplicaSeen::Absent,
                        Err(failure) => return Outcome::Failed(failure),
                    }
                }
                Action::Copy(method) => {
                    let SourceSeen::Headed(head) = &source else {
                        return internal("a copy was decided without the source's headers");
                    };
                    let written = copy::copy(
                        self,
                        job.source(),
                        head,
                        target,
                        replica_at,
                        method,
                        deadline,
                    )
                    .await;
                    match written {
                        Ok(()) => {}
                        Err(CopyError::SourceChanged) => {
                            return wrote.unwrap_or(Outcome::SourceChanged)
                        }
                        Err(CopyError::SourceGone) => return wrote.unwrap_or(Outcome::SourceGone),
                        Err(CopyError::Failed(failure)) => return Outcome::Failed(failure),
                    }
                    wrote = Some(Outcome::Copied);
                    if method == Method::Single {
                        // One request read and wrote at once: nothing older can land after it.
                        return Outcome::Copied;
                    }
                    // A copy by parts read its source over many requests and landed later: if
                    // the source changed meanwhile, a newer replica may have landed before it.
                    replica = ReplicaSeen::Headed(Box::new(copied(head)));
                    source = SourceSeen::Unknown;
                    layout = None;
                    announced = None;
                    purpose = Purpose::Replicate(ChangeKind::Removed);
                }
                Action::Delete => {
                    let deleted = self
                        .call(
                            deadline,
                            self.store.delete(replica_at, &WriteCondition::Any),
                        )
                        .await;
                    if let Err(failure) = deleted {
                        return Outcome::Failed(failure);
                    }
                    wrote = Some(Outcome::Deleted);
                    // An object written at the source since it was read keeps its replica:
                    // read the source again and copy it back if so.
                    replica = ReplicaSeen::Absent;
                    source = SourceSeen::Unknown;
                    layout = None;
                    announced = None;
                    purpose = Purpose::Replicate(ChangeKind::Removed);
                }
                Action::Done(settled) => {
                    return wrote.unwrap_or_else(|| settled_outcome(job.purpose, settled))
                }
                Action::Refuse(refusal) => {
                    return Outcome::Failed(Failure::permanent(refusal.describe()))
                }
            }
        }
        Outcome::Failed(Failure::new(
            FailureKind::Retryable,
            format!(
                "s3://{}/{}: the source kept changing while its replica was written; retried later",
                job.bucket, job.key
            ),
        ))
    }

    async fn read_source(&self, job: &Job<'_>, deadline: &Deadline) -> Result<SourceSeen, Failure> {
        if let Some(head) = self
            .call(deadline, self.store.head(job.source(), None))
            .await?
        {
            return Ok(SourceSeen::Headed(Box::new(head)));
        }
        // A missing source bucket must never pass for deleted objects (their replicas would go).
        let exists = self
            .call(deadline, self.store.bucket_exists(job.bucket, job.region))
            .await?;
        if exists {
            Ok(SourceSeen::Absent)
        } else {
            Err(Failure {
                code: Some("NoSuchBucket".into()),
                status: Some(404),
                ..Failure::permanent(format!("source bucket {:?} does not exist", job.bucket))
            })
        }
    }

    /// The part size of a multipart source, when its parts are uniform (as every SDK and the CLI
    /// upload them).
    async fn read_layout(
        &self,
        job: &Job<'_>,
        head: &ObjectHead,
        deadline: &Deadline,
    ) -> Result<Layout, Failure> {
        let Some(parts) = parts_in_etag(&head.etag) else {
            return Ok(Layout::Irregular);
        };
        let first = self
            .call(deadline, self.store.head(job.source(), Some(1)))
            .await?;
        // Gone or overwritten meanwhile: the copy's pinned ETag will tell.
        Ok(match first {
            Some(part) => layout_of(head.size, parts, part.size),
            None => Layout::Irregular,
        })
    }
}

/// What a replica written from `head` is known to hold.
fn copied(head: &ObjectHead) -> ObjectHead {
    let mut replica = ObjectHead {
        etag: String::new(),
        size: head.size,
        ..Default::default()
    };
    replica
        .metadata
        .insert(provenance::SOURCE_ETAG.into(), head.etag.clone());
    replica
}

fn settled_outcome(purpose: Purpose, settled: Settled) -> Outcome {
    match settled {
        Settled::UpToDate if purpose == Purpose::Replicate(ChangeKind::Removed) => {
            Outcome::SourceExists
        }
        Settled::UpToDate => Outcome::UpToDate,
        Settled::SourceGone => Outcome::SourceGone,
        Settled::SourceChanged => Outcome::SourceChanged,
        Settled::IsReplica => Outcome::IsReplica,
        Settled::DeletesOff => Outcome::Ignored {
            reason: IgnoreReason::DeletesNotPropagated,
        },
        Settled::BothAbsent => Outcome::Deleted,
        Settled::Kept | Settled::Extraneous => Outcome::Extraneous,
        Settled::Missing => Outcome::Missing,
        Settled::Different => Outcome::Different,
    }
}

fn internal(what: &str) -> Outcome {
    Outcome::Failed(Failure::permanent(format!("internal error: {what}")))
}

pub(crate) fn report(
    change: &Change,
    target: &Target,
    started: Instant,
    outcome: Outcome,
) -> TargetReport {
    let duration = started.elapsed();
    let key = target.replica_key(&change.key);
    let duration_ms = duration.as_millis() as u64;
    match &outcome {
        Outcome::Failed(failure) => tracing::error!(
            source_bucket = %change.bucket, key = %change.key, target = %target.bucket,
            outcome = outcome.name(), kind = ?failure.kind, code = failure.code.as_deref().unwrap_or(""),
            error = %failure.message, duration_ms, "replication failed"
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
        bytes: 0,
        finished: SystemTime::now(),
    }
}

/// The size of the source content a target received: the source's headers the copy was made
/// from (read once per change, or while resolving the key's spelling), when it was copied.
fn copied_bytes(job: &Job<'_>, outcome: &Outcome) -> u64 {
    if !matches!(outcome, Outcome::Copied) {
        return 0;
    }
    match (job.head.get(), &job.seen) {
        (Some(Ok(SourceSeen::Headed(head))), _) | (_, SourceSeen::Headed(head)) => head.size,
        _ => 0,
    }
}
