//! The engine: applies changes to every target concurrently, each replica settled by the
//! decision function in a loop of reads and writes, every request through one guard.

use std::future::Future;
use std::time::SystemTime;

use futures::future::join_all;
use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;

use super::breaker::{Admission, BreakerSettings, Breakers, Health};
use super::copy::{self, CopyError, Destination, PartsProgress, WhenStopped};
use super::deadline::Deadline;
use super::shared::{Fresh, Writes};
use super::websites::Websites;
use crate::core::change::{Change, ChangeKind, Written};
use crate::core::config::{Config, ConfigError, Target};
use crate::core::decide::{
    after_copy, decide, Action, AfterCopy, Echo, Facts, Method, Need, Purpose, Redirects, Replaces,
    ReplicaSeen, Rules, Scope, Settled, SourceSeen,
};
use crate::core::object::{layout_of, parts_in_etag, Layout, ObjectHead, Tag};
use crate::core::outcome::{
    ChangeReport, Failure, FailureKind, IgnoreReason, Outcome, TargetReport,
};
use crate::core::provenance;
use crate::store::clients::Clients;
use crate::store::s3::S3Store;
use crate::store::{ObjectAt, Store, WriteCondition};

/// Where a request stands in the work on one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Deciding what to do: nothing starts after the soft deadline.
    Starting,
    /// Checking a write that already landed.
    Finishing,
}

/// Further attempts of a read that checks a landed write, and the first pause between them
/// (doubled each time).
const CHECK_ATTEMPTS: u32 = 4;
const CHECK_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Reads and writes for one replica before the engine gives up on it settling (the source
/// changing faster than it can be copied): the change is then retried.
const MAX_STEPS: usize = 64;

/// How long what a target's notification configuration said is trusted: a target that starts
/// announcing its changes gets replicas with provenance within this time.
const ECHO_TTL: std::time::Duration = std::time::Duration::from_secs(300);

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
    /// One per target: work for a target seen unavailable is held instead of sent.
    breakers: Breakers,
    /// Per target bucket: whether it announces its changes, and when that was read.
    echoes: std::sync::Mutex<std::collections::HashMap<String, (Instant, Echo)>>,
    /// One read of a notification configuration at a time, so that changes arriving together
    /// share it.
    echo_reads: tokio::sync::Mutex<()>,
    /// Per bucket: whether it is configured as a website.
    websites: Websites,
}

impl Replicator<S3Store> {
    /// Reads the configuration and AWS settings from the environment (cold start).
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        Ok(Self::new(config, Clients::from_env().await))
    }

    /// A replicator over S3 with these clients.
    pub fn new(config: Config, clients: Clients) -> Self {
        let store = S3Store::new(clients)
            .with_expected_owner(config.expected_owner.clone())
            .with_expected_owners(config.expected_owners.clone())
            .with_requester_pays(config.requester_pays.clone());
        Self::with_store(config, store)
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
    /// The size the change was announced with.
    pub announced_size: Option<u64>,
    /// How the announced object was written, when the announcement says.
    pub written: Option<Written>,
    /// What is known of the source before any read (a listing, or nothing).
    pub seen: SourceSeen,
    head: OnceCell<Result<SourceSeen, Failure>>,
    layout: OnceCell<Result<Layout, Failure>>,
    /// What copies by parts of this job did, even when the deadline stopped them: a run that
    /// copied parts moved forward although no object finished.
    parts: PartsProgress,
    /// Whether an earlier invocation may have left an upload open for this key.
    pub upload: LeftUpload,
    /// When the job began: reads before a write may be shared from then on.
    began: Instant,
    /// Source headers read again after writes, shared by the targets.
    fresh_head: Fresh<Result<SourceSeen, Failure>>,
    /// Source tags, shared by the targets.
    fresh_tags: Fresh<Result<Vec<Tag>, Failure>>,
    /// Writes of this job in flight.
    writes: Writes,
}

/// Whether an earlier invocation may have left a copy by parts open for a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LeftUpload {
    /// Not known to: events about large objects are checked anyway.
    #[default]
    Unknown,
    /// A backfill's earlier invocation did: when the key settles, uploads that cannot be
    /// resumed for the source as it is are aborted.
    MayBeOpen,
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
            announced_size: None,
            written: None,
            seen,
            head: OnceCell::new(),
            layout: OnceCell::new(),
            parts: PartsProgress::default(),
            upload: LeftUpload::Unknown,
            began: Instant::now(),
            fresh_head: Fresh::new(),
            fresh_tags: Fresh::new(),
            writes: Writes::new(),
        }
    }

    /// Parts copied so far for this job (copies by parts only).
    pub fn parts_copied(&self) -> u64 {
        self.parts.copied()
    }

    /// Parts found in uploads this job resumed.
    pub fn parts_found(&self) -> u64 {
        self.parts.found()
    }

    /// Copies by parts of this job completed.
    pub fn uploads_completed(&self) -> u64 {
        self.parts.completed()
    }

    /// Whether a copy by parts of this job was left open at the deadline.
    pub fn left_open(&self) -> bool {
        self.parts.left_open()
    }

    /// With the size the change was announced with.
    pub fn sized(mut self, size: Option<u64>) -> Self {
        self.announced_size = size;
        self
    }

    /// Announced as written this way.
    pub fn written(mut self, written: Option<Written>) -> Self {
        self.written = written;
        self
    }

    /// Knowing whether an earlier invocation may have left an upload open for the key.
    pub fn left(mut self, upload: LeftUpload) -> Self {
        self.upload = upload;
        self
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
            breakers: Breakers::default(),
            echoes: Default::default(),
            echo_reads: tokio::sync::Mutex::new(()),
            websites: Websites::default(),
        }
    }

    /// Reads, for every target at once, whether it announces its changes (at cold start, so
    /// that first deliveries need not wait for it).
    pub async fn prepare(&self) {
        let deadline = Deadline::none();
        join_all(
            self.config
                .targets
                .iter()
                .map(|target| self.read_echo(target, &deadline)),
        )
        .await;
    }

    /// The source's tags, read after `since` (shared by the job's targets).
    async fn source_tags(
        &self,
        job: &Job<'_>,
        phase: Phase,
        since: Instant,
        deadline: &Deadline,
    ) -> Result<Vec<Tag>, Failure> {
        job.fresh_tags
            .get(since, || {
                self.checking(phase, deadline, || {
                    self.call_in(phase, deadline, self.store.get_tags(job.source()))
                })
            })
            .await
    }

    /// The replica's tags, when `wanted`.
    async fn replica_tags(
        &self,
        replica_at: ObjectAt<'_>,
        phase: Phase,
        deadline: &Deadline,
        wanted: bool,
    ) -> Option<Result<Vec<Tag>, Failure>> {
        if !wanted {
            return None;
        }
        let read = self.checking(phase, deadline, || {
            self.call_in(phase, deadline, self.store.get_tags(replica_at))
        });
        Some(read.await)
    }

    /// Whether website redirect locations can matter between the job's source and `target`.
    async fn redirects(&self, job: &Job<'_>, target: &Target, deadline: &Deadline) -> Redirects {
        let buckets = [
            (job.bucket, job.region),
            (target.bucket.as_str(), Some(target.region.as_str())),
        ];
        self.websites.redirects(self, &buckets, deadline).await
    }

    /// Whether `target` announces its changes, as last read (at most [`ECHO_TTL`] ago).
    async fn echo(&self, target: &Target, deadline: &Deadline) -> Echo {
        if let Some(echo) = self.known_echo(target) {
            return echo;
        }
        let _one = self.echo_reads.lock().await;
        match self.known_echo(target) {
            Some(echo) => echo,
            None => self.read_echo(target, deadline).await,
        }
    }

    fn known_echo(&self, target: &Target) -> Option<Echo> {
        let echoes = self.echoes.lock().expect("never poisoned");
        echoes
            .get(&target.bucket)
            .filter(|(read, _)| read.elapsed() < ECHO_TTL)
            .map(|(_, echo)| *echo)
    }

    /// Reads a target's notification configuration. A failure (no permission to read it, a
    /// deadline) counts as announcing: replicas then carry provenance, which is always safe.
    async fn read_echo(&self, target: &Target, deadline: &Deadline) -> Echo {
        let read = self
            .call(
                deadline,
                self.store
                    .sends_events(&target.bucket, Some(&target.region)),
            )
            .await;
        let echo = match read {
            Ok(false) => Echo::Silent,
            Ok(true) => Echo::Possible,
            Err(failure) => {
                tracing::warn!(target = %target.bucket, error = %failure.message,
                    "the target's notification configuration could not be read; its replicas carry provenance");
                Echo::Possible
            }
        };
        self.echoes
            .lock()
            .expect("never poisoned")
            .insert(target.bucket.clone(), (Instant::now(), echo));
        echo
    }

    /// With other breaker settings (shorter pauses in tests).
    pub fn with_breaker(mut self, settings: BreakerSettings) -> Self {
        self.breakers = Breakers::new(settings);
        self
    }

    /// Whether work for `target` is held because the target was seen unavailable.
    pub fn holds(&self, target: &Target) -> bool {
        self.breakers.is_open(target)
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

    fn rules(&self, deadline: &Deadline) -> Rules {
        Rules {
            replicate_deletes: self.config.replicate_deletes,
            multipart_threshold: self.config.multipart_threshold,
            part_size: self.config.part_size,
            window: deadline.window(),
        }
    }

    /// Every request the engine makes goes through here: a concurrency permit, no start after
    /// the soft deadline, and nothing waited for beyond the hard one.
    pub(crate) async fn call<T>(
        &self,
        deadline: &Deadline,
        work: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        self.call_in(Phase::Starting, deadline, work).await
    }

    /// A read that checks a write which landed: it may start after the soft deadline.
    pub(crate) async fn call_in_finishing<T>(
        &self,
        deadline: &Deadline,
        work: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        self.call_in(Phase::Finishing, deadline, work).await
    }

    /// [`Replicator::call`] for a request of the given phase: reads that finish a write may
    /// start after the soft deadline (the margin leaves room for them), only the hard one
    /// bounds them.
    async fn call_in<T>(
        &self,
        phase: Phase,
        deadline: &Deadline,
        work: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        let _permit = self
            .limit
            .acquire()
            .await
            .expect("semaphore is never closed");
        if phase == Phase::Starting {
            if let Some(refused) = deadline.refuse_new_work() {
                return Err(refused);
            }
        }
        deadline.bound(work).await
    }

    /// A read, tried again in place when it checks a write that landed and fails transiently:
    /// a backfill does not come back to a key it reported failed, so a write it made (which
    /// may carry headers read before an in-place change of the source) must not be left
    /// unchecked. Other reads fail at once; the change is retried as a whole.
    async fn checking<T, F, Fut>(
        &self,
        phase: Phase,
        deadline: &Deadline,
        read: F,
    ) -> Result<T, Failure>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut attempt = 0;
        loop {
            match read().await {
                Err(failure)
                    if phase == Phase::Finishing
                        && failure.kind == FailureKind::Retryable
                        && attempt < CHECK_ATTEMPTS =>
                {
                    attempt += 1;
                    let pause = CHECK_PAUSE * 2u32.pow(attempt - 1);
                    let slept = deadline
                        .bound(async {
                            tokio::time::sleep(pause).await;
                            Ok(())
                        })
                        .await;
                    if slept.is_err() {
                        return Err(failure);
                    }
                }
                other => return other,
            }
        }
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
                    .map(|t| report(&self.config, change, t, started, outcome.clone()))
                    .collect(),
            };
        }
        let region = change
            .region
            .as_deref()
            .or_else(|| self.source_region(&change.bucket));
        if let (ChangeKind::Removed, Some(alternate)) = (change.kind, &change.alternate_key) {
            return self
                .remove_both_spellings(change, alternate, region, targets, deadline, started)
                .await;
        }
        let (key, seen) = match self.spelling(change, region, deadline).await {
            Ok(resolved) => resolved,
            Err(failure) => {
                let outcome = Outcome::Failed(failure);
                return ChangeReport {
                    change: change.clone(),
                    targets: targets
                        .iter()
                        .map(|t| report(&self.config, change, t, started, outcome.clone()))
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
                ChangeKind::Created | ChangeKind::Tagged => change.etag.as_deref(),
                ChangeKind::Removed => None,
            },
            seen,
        )
        .sized(change.size.and_then(|s| u64::try_from(s).ok()))
        .written(change.written);
        // The key as delivered had no object, its other spelling did: an earlier attempt may
        // have found the object under the delivered spelling and left a copy by parts open
        // for it at its deadline, which nothing else would ever visit.
        let stray = (key != change.key
            && change
                .etag
                .as_deref()
                .is_some_and(|etag| self.by_parts(etag, job.announced_size)))
        .then_some(change.key.as_str());
        let work = targets.iter().map(|target| async {
            let outcome = self
                .guarded(target, async {
                    let outcome = self
                        .settle(&job, target, ReplicaSeen::Unknown, deadline)
                        .await;
                    match (stray, &outcome) {
                        (None, _) | (_, Outcome::Failed(_)) => outcome,
                        (Some(delivered), _) => {
                            let replica_key =
                                self.config.replica_key(target, job.bucket, delivered);
                            let replica_at = ObjectAt {
                                bucket: &target.bucket,
                                region: Some(&target.region),
                                key: &replica_key,
                            };
                            match copy::abort_stale(&self.store, replica_at, None).await {
                                Ok(()) => outcome,
                                Err(failure) => Outcome::Failed(failure),
                            }
                        }
                    }
                })
                .await;
            let bytes = copied_bytes(&job, &outcome);
            TargetReport {
                bytes,
                ..report(&self.config, change, target, started, outcome)
            }
        });
        ChangeReport {
            change: change.clone(),
            targets: join_all(work).await,
        }
    }

    /// Work for one target, through its breaker: held without a request while the target is
    /// seen unavailable, and what it finds recorded.
    pub(crate) async fn guarded(
        &self,
        target: &Target,
        work: impl Future<Output = Outcome>,
    ) -> Outcome {
        let admission = self.breakers.admit(target);
        if admission == Admission::Hold {
            return Outcome::Failed(Failure::held(&target.bucket));
        }
        let outcome = work.await;
        self.breakers
            .record(target, admission, Health::of(&outcome));
        outcome
    }

    /// A delete delivered with two spellings of its key: each spelling's replica is brought to
    /// the source on its own (a replica whose spelling the source lacks goes, the other stays),
    /// so that neither way the service may encode keys leaves a replica of a deleted object.
    async fn remove_both_spellings(
        &self,
        change: &Change,
        alternate: &str,
        region: Option<&str>,
        targets: &[&Target],
        deadline: &Deadline,
        started: Instant,
    ) -> ChangeReport {
        let purpose = Purpose::Replicate(ChangeKind::Removed);
        let jobs = [change.key.as_str(), alternate].map(|key| {
            Job::new(
                purpose,
                &change.bucket,
                region,
                key,
                None,
                SourceSeen::Unknown,
            )
        });
        let work = targets.iter().map(|target| async {
            let [delivered, decoded] = &jobs;
            let both = async {
                let (a, b) = futures::join!(
                    self.settle(delivered, target, ReplicaSeen::Unknown, deadline),
                    self.settle(decoded, target, ReplicaSeen::Unknown, deadline)
                );
                match (a, b) {
                    (failed @ Outcome::Failed(_), _) | (_, failed @ Outcome::Failed(_)) => failed,
                    (_, Outcome::Deleted) => Outcome::Deleted,
                    (first, _) => first,
                }
            };
            let outcome = self.guarded(target, both).await;
            report(&self.config, change, target, started, outcome)
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
        // Boxed: the loop's future is large, and one is alive per object and target, nested
        // in what runs them (a test's thread has a small stack).
        Box::pin(self.settle_loop(job, target, replica, deadline)).await
    }

    async fn settle_loop(
        &self,
        job: &Job<'_>,
        target: &Target,
        replica: ReplicaSeen,
        deadline: &Deadline,
    ) -> Outcome {
        let replica_key = self.config.replica_key(target, job.bucket, job.key);
        let replica_at = ObjectAt {
            bucket: &target.bucket,
            region: Some(&target.region),
            key: &replica_key,
        };
        let rules = self.rules(deadline);
        let mut purpose = job.purpose;
        let mut source = job.seen.clone();
        let mut replica = replica;
        let mut layout = None;
        let mut announced = job.announced;
        let mut source_tags: Option<Vec<Tag>> = None;
        let mut replica_tags: Option<Vec<Tag>> = None;
        let mut wrote: Option<Outcome> = None;
        // Whether a copy found the replica there although it was not expected to be.
        let mut create_refused = false;
        // Writes that failed in a way that may have landed all the same.
        let mut unsure = 0;
        // After a write (or a copy refused because the source moved on), what was read before
        // is stale: the source is read again, unshared, and the reads may finish the work past
        // the soft deadline.
        let mut phase = Phase::Starting;
        // Since when reads must have begun to be trusted: the job's start, then the last write.
        let mut since = job.began;
        // How the object was written, while a plain copy may still be tried.
        let mut written = job.written;
        // Only where a plain copy may be made: a client's upload announced, or a listed object
        // a listing shows no replica of.
        let may_copy_plain = match (job.purpose, &job.seen, &replica) {
            (Purpose::Replicate(ChangeKind::Created), _, _) => written == Some(Written::Uploaded),
            (Purpose::Sync { .. }, SourceSeen::Listed { etag, size, .. }, ReplicaSeen::Absent) => {
                self.config.source_buckets.len() == 1
                    && *size <= self.config.multipart_threshold
                    && parts_in_etag(etag).is_none()
            }
            _ => false,
        };
        let echo = if may_copy_plain {
            self.echo(target, deadline).await
        } else {
            Echo::Possible
        };
        // A backfill and a full verify hold replicas to the website redirect location only
        // where a bucket could use it: an object listed may then be copied plain without a
        // read of its own. Events copy it always. Read only where it decides something, so
        // that a run over synced buckets stays listings only.
        let redirects = match job.purpose {
            Purpose::Sync { .. } if may_copy_plain && echo == Echo::Silent => {
                self.redirects(job, target, deadline).await
            }
            Purpose::Audit => self.redirects(job, target, deadline).await,
            _ => Redirects::Possible,
        };
        for _ in 0..MAX_STEPS {
            let facts = Facts {
                source: &source,
                layout,
                replica: &replica,
                announced,
                bucket: job.bucket,
                sources: &self.config.source_buckets,
                source_tags: source_tags.as_deref(),
                replica_tags: replica_tags.as_deref(),
                announced_size: job.announced_size,
                written,
                echo,
                redirects,
            };
            match decide(purpose, &facts, target, &replica_key, &rules) {
                Action::Read(Need::SourceHead) => {
                    let read = match phase {
                        Phase::Finishing => {
                            job.writes.gathered().await;
                            let head = job.fresh_head.get(since, || {
                                self.checking(phase, deadline, || {
                                    self.read_source(job, phase, deadline)
                                })
                            });
                            // A check with tags reads both sides' tags next, unless the source
                            // moved on: read at once, one round trip instead of three.
                            if purpose == Purpose::Recheck(Scope::ContentAndTags)
                                && source_tags.is_none()
                                && replica_exists(&replica)
                            {
                                let (head, tags, theirs) = tokio::join!(
                                    head,
                                    self.source_tags(job, phase, since, deadline),
                                    self.replica_tags(
                                        replica_at,
                                        phase,
                                        deadline,
                                        replica_tags.is_none()
                                    ),
                                );
                                // A read that failed is made again when it is needed.
                                source_tags = tags.ok();
                                if let Some(Ok(tags)) = theirs {
                                    replica_tags = Some(tags);
                                }
                                head
                            } else {
                                head.await
                            }
                        }
                        Phase::Starting => job
                            .head
                            .get_or_init(|| self.read_source(job, Phase::Starting, deadline))
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
                    let read = match phase {
                        Phase::Finishing => self.read_layout(job, head, deadline).await,
                        Phase::Starting => job
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
                    let read = self.checking(phase, deadline, || {
                        self.call_in(phase, deadline, self.store.head(replica_at, None))
                    });
                    match read.await {
                        Ok(Some(head)) => replica = ReplicaSeen::Headed(Box::new(head)),
                        Ok(None) => replica = ReplicaSeen::Absent,
                        Err(failure) => return Outcome::Failed(failure),
                    }
                }
                Action::Read(Need::SourceTags) => {
                    if phase == Phase::Finishing {
                        job.writes.gathered().await;
                    }
                    // The replica's tags are compared next: read at once where it exists.
                    let wanted = replica_tags.is_none() && replica_exists(&replica);
                    let (read, theirs) = tokio::join!(
                        self.source_tags(job, phase, since, deadline),
                        self.replica_tags(replica_at, phase, deadline, wanted),
                    );
                    if let Some(Ok(tags)) = theirs {
                        replica_tags = Some(tags);
                    }
                    match read {
                        Ok(tags) => source_tags = Some(tags),
                        Err(failure) if failure.is_missing_object() => source = SourceSeen::Unknown,
                        Err(failure) => return Outcome::Failed(failure),
                    }
                }
                Action::Read(Need::ReplicaTags) => {
                    let read = self.checking(phase, deadline, || {
                        self.call_in(phase, deadline, self.store.get_tags(replica_at))
                    });
                    match read.await {
                        Ok(tags) => replica_tags = Some(tags),
                        Err(failure) if failure.is_missing_object() => {
                            replica = ReplicaSeen::Absent
                        }
                        Err(failure) => return Outcome::Failed(failure),
                    }
                }
                Action::SetTags => {
                    let tags = source_tags.take().unwrap_or_default();
                    let writing = job.writes.start();
                    let set = self
                        .call(deadline, self.store.put_tags(replica_at, &tags))
                        .await;
                    drop(writing);
                    match set {
                        Ok(()) => {}
                        Err(failure) if failure.is_missing_object() => {
                            replica = ReplicaSeen::Absent;
                            continue;
                        }
                        Err(failure) if maybe_landed(&failure, &mut unsure) => {
                            // Tags from a source read earlier may have landed: a redelivery
                            // would find the content current and never look at tags again.
                            replica_tags = None;
                            source = SourceSeen::Unknown;
                            layout = None;
                            announced = None;
                            phase = Phase::Finishing;
                            since = Instant::now();
                            purpose = Purpose::Recheck(Scope::ContentAndTags);
                            continue;
                        }
                        Err(failure) => return Outcome::Failed(failure),
                    }
                    wrote = Some(Outcome::TagsUpdated);
                    // Tagging cannot be made conditional: read the source again, and if its
                    // content or tags changed meanwhile, bring the replica to them.
                    replica_tags = Some(tags);
                    source = SourceSeen::Unknown;
                    layout = None;
                    announced = None;
                    phase = Phase::Finishing;
                    since = Instant::now();
                    purpose = Purpose::Recheck(Scope::ContentAndTags);
                }
                Action::Copy(Method::Plain, replaces) => {
                    let Some(etag) = announced else {
                        return internal("a plain copy was decided without an announced ETag");
                    };
                    let writing = job.writes.start();
                    // What the listing showed is all the copy needs: nothing is read.
                    let from_listing = redirects == Redirects::Inert
                        && matches!(source, SourceSeen::Listed { .. });
                    // Boxed: the loop's future stays small (copies by parts nest deeply).
                    let landed = Box::pin(async {
                        let copy = copy::copy_plain(
                            self,
                            job.source(),
                            etag,
                            target,
                            replica_at,
                            replaces,
                            deadline,
                        );
                        if from_listing {
                            return copy.await;
                        }
                        // Beside the copy: what `COPY` could not carry shows in the headers.
                        let beside = job
                            .head
                            .get_or_init(|| self.read_source(job, Phase::Starting, deadline));
                        tokio::join!(copy, beside).0
                    })
                    .await;
                    drop(writing);
                    // Whatever happens next, a plain copy is not tried again.
                    written = None;
                    match landed {
                        Ok(landed) => {
                            wrote = Some(Outcome::Copied);
                            replica = ReplicaSeen::Plain {
                                etag: landed.etag,
                                kms: landed.kms,
                            };
                            // The headers read beside the copy decide now (or the listing,
                            // where it showed all the copy needs). Should that read have been
                            // stopped (the deadline), they are read again past the soft
                            // deadline: a copy that landed is never left unchecked.
                            match job.head.get() {
                                _ if from_listing => {}
                                Some(Ok(seen)) => source = seen.clone(),
                                _ => {
                                    source = SourceSeen::Unknown;
                                    phase = Phase::Finishing;
                                    since = job.began;
                                }
                            }
                            if let AfterCopy::Recheck(scope) =
                                after_copy(Method::Plain, replaces, &rules)
                            {
                                source = SourceSeen::Unknown;
                                layout = None;
                                announced = None;
                                phase = Phase::Finishing;
                                since = Instant::now();
                                purpose = Purpose::Recheck(scope);
                            }
                        }
                        // The replica is there, or the source moved on: decide from the
                        // source as read beside the copy, and the replica read.
                        Err(CopyError::SourceChanged) => {
                            replica = ReplicaSeen::Exists;
                            create_refused = true;
                        }
                        Err(CopyError::Failed(failure)) if maybe_landed(&failure, &mut unsure) => {
                            replica = ReplicaSeen::Unknown;
                            replica_tags = None;
                            source = SourceSeen::Unknown;
                            source_tags = None;
                            layout = None;
                            announced = None;
                            phase = Phase::Finishing;
                            since = Instant::now();
                            purpose = Purpose::Recheck(Scope::ContentAndTags);
                        }
                        Err(CopyError::Failed(failure)) if failure.is_transient() => {
                            return Outcome::Failed(failure)
                        }
                        // Gone, archived, or refused (an SSE-C source, a permission): the
                        // usual way, from the source's headers read again.
                        Err(_) => {
                            source = SourceSeen::Unknown;
                            layout = None;
                            phase = Phase::Finishing;
                            since = Instant::now();
                        }
                    }
                }
                Action::Copy(method, replaces) => {
                    let SourceSeen::Headed(head) = &source else {
                        return internal("a copy was decided without the source's headers");
                    };
                    let to = Destination {
                        target,
                        at: replica_at,
                        method,
                        replaces,
                        // An event's retry cleans up only after the announced version, and
                        // only when it is above the threshold (a small source copied by parts
                        // to keep its ETag has few parts to lose).
                        when_stopped: match job.purpose {
                            Purpose::Replicate(_)
                                if job.announced != Some(head.etag.as_str())
                                    || head.size <= self.config.multipart_threshold =>
                            {
                                WhenStopped::Abort
                            }
                            Purpose::Replicate(_) => WhenStopped::LeaveOpen,
                            _ => WhenStopped::LeaveOpenAtDeadline,
                        },
                        progress: &job.parts,
                    };
                    let writing = job.writes.start();
                    let result = copy::copy(self, job.source(), head, to, deadline).await;
                    drop(writing);
                    match result {
                        Ok(_) => {}
                        // 412 answers both conditions alike: the replica found there (read it
                        // first), or the source moved on (read it again if the replica is not
                        // the reason).
                        Err(CopyError::SourceChanged) if replaces == Replaces::Nothing => {
                            // Whatever else, the replica is read before the next decision; the
                            // source too once a create was refused before.
                            replica = ReplicaSeen::Exists;
                            if create_refused {
                                source = SourceSeen::Unknown;
                                layout = None;
                                phase = Phase::Finishing;
                                since = Instant::now();
                            }
                            create_refused = true;
                            continue;
                        }
                        Err(
                            CopyError::SourceChanged
                            | CopyError::SourceGone
                            | CopyError::SourceArchived,
                        ) => {
                            // The source moved on since it was read: decide again from what
                            // it holds now (the replica may hold an older copy of this change).
                            source = SourceSeen::Unknown;
                            layout = None;
                            phase = Phase::Finishing;
                            since = Instant::now();
                            continue;
                        }
                        Err(CopyError::Spliced(landed)) => {
                            // What landed is known: decide from it (it differs, and is
                            // copied again from scratch).
                            replica = ReplicaSeen::Headed(landed);
                            source = SourceSeen::Unknown;
                            layout = None;
                            phase = Phase::Finishing;
                            since = Instant::now();
                            continue;
                        }
                        Err(CopyError::Superseded) => {
                            // Another invocation completed or aborted the same upload.
                            replica = ReplicaSeen::Unknown;
                            source = SourceSeen::Unknown;
                            layout = None;
                            phase = Phase::Finishing;
                            since = Instant::now();
                            continue;
                        }
                        Err(CopyError::Failed(failure))
                            if method == Method::Single && maybe_landed(&failure, &mut unsure) =>
                        {
                            // The copy may have landed, with tags as they were when it began:
                            // read both sides again, tags too.
                            replica = ReplicaSeen::Unknown;
                            replica_tags = None;
                            source = SourceSeen::Unknown;
                            source_tags = None;
                            layout = None;
                            announced = None;
                            phase = Phase::Finishing;
                            since = Instant::now();
                            purpose = Purpose::Recheck(Scope::ContentAndTags);
                            continue;
                        }
                        Err(CopyError::Failed(failure)) => return Outcome::Failed(failure),
                    }
                    let scope = match after_copy(method, replaces, &rules) {
                        AfterCopy::Settled | AfterCopy::Compare => {
                            return self
                                .finish(job, replica_at, &source, Settled::UpToDate)
                                .await
                                .map_or_else(Outcome::Failed, |_| Outcome::Copied);
                        }
                        AfterCopy::Recheck(scope) => scope,
                    };
                    wrote = Some(Outcome::Copied);
                    replica = ReplicaSeen::Headed(Box::new(copied(head, job.bucket)));
                    source = SourceSeen::Unknown;
                    layout = None;
                    announced = None;
                    phase = Phase::Finishing;
                    since = Instant::now();
                    source_tags = None;
                    replica_tags = None;
                    purpose = Purpose::Recheck(scope);
                }
                Action::Delete => {
                    let writing = job.writes.start();
                    let deleted = self.delete_replica(replica_at, deadline).await;
                    drop(writing);
                    if let Err(failure) = deleted {
                        return Outcome::Failed(failure);
                    }
                    // Undoing a plain copy of this very job leaves the replica as it was found.
                    wrote = match replica {
                        ReplicaSeen::Plain { .. } => None,
                        _ => Some(Outcome::Deleted),
                    };
                    // An object written at the source since it was read keeps its replica:
                    // read the source again and copy it back if so.
                    replica = ReplicaSeen::Absent;
                    source = SourceSeen::Unknown;
                    layout = None;
                    announced = None;
                    phase = Phase::Finishing;
                    since = Instant::now();
                    purpose = Purpose::Recheck(Scope::Content);
                }
                Action::Done(settled) => {
                    return match self.finish(job, replica_at, &source, settled).await {
                        Ok(()) => wrote.unwrap_or_else(|| settled_outcome(job.purpose, settled)),
                        Err(failure) => Outcome::Failed(failure),
                    };
                }
                Action::Refuse(refusal) => {
                    return Outcome::Failed(Failure::permanent(refusal.describe()))
                }
            }
        }
        let mut failure = Failure::new(
            FailureKind::Retryable,
            format!(
                "s3://{}/{}: the source kept changing while its replica was written; retried later",
                job.bucket, job.key
            ),
        );
        // Not about the target's availability: its breaker must not count it.
        failure.code = Some("SourceKeptChanging".into());
        Outcome::Failed(failure)
    }

    /// Deletes a replica only if it exists (`If-Match: *`): deleting a missing key would
    /// announce a removal all the same, and two deployments that are each other's targets
    /// would then send deletes of a key back and forth forever. A server that refuses
    /// conditional deletes (501) gets a plain one.
    async fn delete_replica(
        &self,
        replica_at: ObjectAt<'_>,
        deadline: &Deadline,
    ) -> Result<(), Failure> {
        let deleted = self
            .call(
                deadline,
                self.store.delete(replica_at, &WriteCondition::Exists),
            )
            .await;
        match deleted {
            Err(failure) if failure.is_missing_object() => Ok(()),
            Err(failure) if failure.status == Some(501) => {
                self.call(
                    deadline,
                    self.store.delete(replica_at, &WriteCondition::Any),
                )
                .await
            }
            other => other,
        }
    }

    /// Cleans up what a settled replica no longer needs: uploads an earlier invocation left.
    async fn finish(
        &self,
        job: &Job<'_>,
        replica_at: ObjectAt<'_>,
        source: &SourceSeen,
        settled: Settled,
    ) -> Result<(), Failure> {
        match self.left_upload(job, source, settled) {
            Some(keep) => copy::abort_stale(&self.store, replica_at, keep).await,
            None => Ok(()),
        }
    }

    /// When an event settles (or a backfill's key an earlier invocation left a copy by parts
    /// open for), an earlier delivery may have left an upload open at its deadline that
    /// nothing will resume: `Some` with the source version an
    /// upload may still be for (`None` inside: none), when uploads must be looked for.
    fn left_upload<'h>(
        &self,
        job: &Job<'_>,
        source: &'h SourceSeen,
        settled: Settled,
    ) -> Option<Option<&'h ObjectHead>> {
        let marked = job.upload == LeftUpload::MayBeOpen;
        if !matches!(job.purpose, Purpose::Replicate(_)) && !marked {
            return None;
        }
        let head = match source {
            SourceSeen::Headed(head) => Some(&**head),
            _ => None,
        };
        let large = marked
            || head.is_some_and(|h| self.by_parts(&h.etag, Some(h.size)))
            || job
                .announced
                .is_some_and(|etag| self.by_parts(etag, job.announced_size));
        match settled {
            // The replica is current, or the object is gone: any upload for it is superfluous.
            Settled::UpToDate | Settled::BothAbsent | Settled::DeletesOff => large.then_some(None),
            // A newer version may be being copied by parts right now: keep its upload, unless
            // the source as it is now is not copied by parts at all.
            Settled::SourceChanged | Settled::SourceGone => {
                let by_parts_now = head.filter(|h| self.by_parts(&h.etag, Some(h.size)));
                large.then_some(by_parts_now)
            }
            // Anything else (the object gone while deletes do not propagate, found after a
            // write; a replica of another source): no upload of this key is needed either.
            _ => large.then_some(None),
        }
    }

    /// Whether a source of this ETag and size is copied by parts: above the threshold (a
    /// multipart source announced without its size may be).
    fn by_parts(&self, etag: &str, size: Option<u64>) -> bool {
        match size {
            Some(size) => size > self.config.multipart_threshold,
            None => parts_in_etag(etag).is_some(),
        }
    }

    async fn read_source(
        &self,
        job: &Job<'_>,
        phase: Phase,
        deadline: &Deadline,
    ) -> Result<SourceSeen, Failure> {
        if let Some(head) = self
            .call_in(phase, deadline, self.store.head(job.source(), None))
            .await?
        {
            return Ok(SourceSeen::Headed(Box::new(head)));
        }
        // A missing source bucket must never pass for deleted objects (their replicas would go).
        let exists = self
            .call_in(
                phase,
                deadline,
                self.store.bucket_exists(job.bucket, job.region),
            )
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

/// What a replica written from `head` of `bucket` is known to hold: the source's bytes as of
/// its ETag (pinned by the copy), so it is named by that ETag and checksum whatever ETag S3
/// gave the replica (under SSE-KMS, or without room for provenance, no other sign would show
/// it current, and the check after the copy would copy again and again).
fn copied(head: &ObjectHead, bucket: &str) -> ObjectHead {
    ObjectHead {
        etag: head.etag.clone(),
        size: head.size,
        headers: head.headers.clone(),
        metadata: provenance::replica_metadata(&head.metadata, bucket, &head.etag),
        checksum: head.checksum.clone(),
        ..Default::default()
    }
}

/// Writes whose failure leaves unknown whether they landed that are checked in place before
/// the change is given up for a retry.
const UNSURE_WRITES: u32 = 2;

/// Whether the replica is known to exist, so that reading its tags is not wasted.
fn replica_exists(replica: &ReplicaSeen) -> bool {
    matches!(
        replica,
        ReplicaSeen::Headed(_) | ReplicaSeen::Plain { .. } | ReplicaSeen::Listed { .. }
    )
}

/// Whether a failed write may have landed (a reset, a timeout, a 5xx) and is to be checked
/// now, counting it: a retry of the change would not look at everything it may have changed.
fn maybe_landed(failure: &Failure, unsure: &mut u32) -> bool {
    if failure.kind != FailureKind::Retryable || *unsure >= UNSURE_WRITES {
        return false;
    }
    *unsure += 1;
    true
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
        Settled::AwaitingRestore => Outcome::AwaitingRestore,
        Settled::Different => Outcome::Different,
        Settled::Unverifiable => Outcome::Unverifiable,
    }
}

fn internal(what: &str) -> Outcome {
    Outcome::Failed(Failure::permanent(format!("internal error: {what}")))
}

fn report(
    config: &Config,
    change: &Change,
    target: &Target,
    started: Instant,
    outcome: Outcome,
) -> TargetReport {
    let duration = started.elapsed();
    let key = config.replica_key(target, &change.bucket, &change.key);
    let duration_ms = duration.as_millis() as u64;
    match &outcome {
        Outcome::Failed(failure) => tracing::error!(
            source_bucket = %change.bucket, key = %change.key, target = %target.bucket,
            outcome = outcome.name(), kind = ?failure.kind, code = failure.code.as_deref().unwrap_or(""),
            error = %failure.message, duration_ms, "replication failed"
        ),
        Outcome::AwaitingRestore => tracing::warn!(
            source_bucket = %change.bucket, key = %change.key, target = %target.bucket,
            outcome = outcome.name(), duration_ms,
            "not replicated yet: the object is archived; its restore's event replicates it"
        ),
        Outcome::IsReplica => tracing::warn!(
            source_bucket = %change.bucket, key = %change.key, target = %target.bucket,
            outcome = outcome.name(), duration_ms,
            "not replicated: the object is a replica of another configured source"
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
