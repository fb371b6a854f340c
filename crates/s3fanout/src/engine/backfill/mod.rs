//! Backfill: brings every target up to date with objects that existed before replication
//! started, with `aws s3 sync` semantics (dry run, delete, include/exclude), resumable across
//! invocations; and verify, the same comparison without writing anything.
//!
//! The source is listed once and every target alongside it; the sorted listings are merged a
//! page at a time, so memory is bounded by the page size. Each key at each target is then settled
//! by the same decision function as live replication: a listing showing equal size and ETag is
//! current where ETags are digests (a second run over synced buckets issues nothing but List
//! requests); otherwise (SSE-KMS, a copy by parts of a single-part source) the replica's headers
//! are read, and full-object checksums of both sides decide where they can.
//!
//! A self-continuing run is a chain of invocations ([`chain`]): each carries the run's id and
//! its hop number, claims its hop in a marker object with a conditional write, and the chain
//! stops when an invocation made no progress, at the hop limit, or when another chain of the
//! same run holds a later hop.

pub mod chain;
pub mod filter;
mod listing;
mod merge;
pub mod range;
pub mod split;

use std::collections::BTreeMap;

use futures::future::join_all;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use tokio::time::Instant;

use super::deadline::Deadline;
use super::replicator::{Job, LeftUpload, Replicator};
use crate::core::config::Target;
use crate::core::decide::{Purpose, ReplicaSeen, SourceSeen};
use crate::core::outcome::{Failure, FailureKind, Outcome};
use crate::store::Store;
use filter::{passes, Filter};
use listing::{Cursor, PAGE_SIZE};
use merge::{Merge, Merged};
use range::KeyRange;

/// What a run does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Copy what is missing or different (and delete extraneous objects when asked).
    #[default]
    Sync,
    /// Compare only; change nothing.
    Verify,
}

/// What verify compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// Size and ETag from the listings where ETags are digests; full-object checksums (a HEAD of
    /// each side) where they cannot tell.
    #[default]
    Listing,
    /// Headers, user metadata and tags as well: two HEADs and two tag reads per object.
    Full,
}

/// The backfill payload (also the command-line tool's options).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackfillRequest {
    /// `sync` (default) or `verify`.
    pub mode: Mode,
    /// Source bucket; may be left out when exactly one source is configured.
    pub source_bucket: Option<String>,
    /// Only keys under this prefix.
    pub prefix: String,
    /// Only these target buckets (default: all configured targets).
    pub targets: Option<Vec<String>>,
    /// Patterns to include (applied after `exclude`).
    pub include: Vec<String>,
    /// Patterns to exclude.
    pub exclude: Vec<String>,
    /// Ordered filters, applied after `exclude` and `include`, for full `aws s3 sync` ordering.
    pub filters: Vec<Filter>,
    /// Report what would be done without doing it.
    pub dry_run: bool,
    /// Verify: `listing` (default) compares what listings show (size and ETag, provenance where
    /// they cannot tell); `full` also reads headers, metadata and tags on both sides.
    pub compare: Compare,
    /// Delete replica objects that no longer exist at the source.
    pub delete: bool,
    /// Objects worked on at once (default: `COPY_CONCURRENCY`).
    pub concurrency: Option<usize>,
    /// When the invocation's time runs out, continue in a new invocation until done.
    pub auto_continue: bool,
    /// Set by a previous run that stopped before its end.
    pub continuation: Option<Continuation>,
    /// Names the run (letters, digits, `.`, `_`, `-`, `:`; at most 64). A self-continuing run
    /// started twice under one id proceeds once; by default the first invocation's request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Most self-continuations of one run (default [`chain::DEFAULT_MAX_HOPS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_hops: Option<u32>,
    /// `s3://bucket/prefix/`: where the summary is written, as `prefix/<run id>.json`, after
    /// every invocation of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary_to: Option<String>,
    /// Only keys in this range (a chain of a split run works on one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<KeyRange>,
    /// Split the run into this many chains working at once (at most [`range::MAX_CHAINS`]),
    /// at the common prefixes one level below `prefix`; needs `auto_continue` and
    /// `summary_to`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chains: Option<u32>,
    /// Split the run at these keys instead (sorted; each the first key of a range).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub split_at: Vec<String>,
    /// Set on each chain of a split run: the run it is part of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part_of: Option<split::PartOf>,
}

/// Where a stopped run resumes, and what it counted so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Continuation {
    /// The last key before which everything was processed.
    pub start_after: String,
    /// Keys after `start_after` already processed and counted, with the targets they were
    /// counted for (at most about a page): they are neither redone nor counted twice.
    #[serde(default)]
    pub done_after: BTreeMap<String, Vec<String>>,
    /// Keys whose copy by parts the deadline left open (the upload is resumed, or aborted
    /// if the source changed, when the key is settled again), with the parts their uploads
    /// were known to hold: finding more means parts landed after the deadline cut their
    /// answers, which is progress too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub open_uploads: BTreeMap<String, u64>,
    /// Counters up to that key.
    pub so_far: Summary,
    /// The run and hop this continuation continues, for self-continuing runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<chain::Hop>,
}

/// Counters for one target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCounts {
    /// Source objects (passing the filters) compared with this target.
    pub listed: u64,
    /// Copied (or, in a dry run, to be copied).
    pub copied: u64,
    /// Already current.
    pub up_to_date: u64,
    /// Deleted as extraneous (or, in a dry run, to be deleted).
    pub deleted: u64,
    /// Left alone because the source changed meanwhile (live replication covers it).
    pub skipped: u64,
    /// Failed; see `examples`.
    pub failed: u64,
    /// Bytes copied (or to be copied).
    pub bytes: u64,
    /// Verify: objects the replica lacks.
    pub missing: u64,
    /// Verify: objects whose replica differs.
    pub different: u64,
    /// Replica objects the source does not have (deleted only with `delete`).
    pub extraneous: u64,
    /// Verify: objects whose replica nothing can prove equal or different (no full-object
    /// checksum on one side, ETags that cannot tell).
    #[serde(default)]
    pub unverifiable: u64,
    /// Source objects in an archived storage class that the replica lacks: copied once
    /// restored (`s3:ObjectRestore:Completed` replicates them).
    #[serde(default)]
    pub awaiting_restore: u64,
    /// Objects that needed a repair: missing or different at the replica (copied, or to be
    /// copied), and replica objects the source does not have when the run deletes
    /// (`delete`): what the replica had drifted by. The `DriftFound` metric.
    #[serde(default)]
    pub drift_found: u64,
    /// Of those, repaired by this run (copied or deleted; never in a verify or dry run). The
    /// `DriftRepaired` metric.
    #[serde(default)]
    pub drift_repaired: u64,
}

/// One noteworthy object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// Target bucket.
    pub target: String,
    /// Key relative to the target's prefix.
    pub key: String,
    /// What about it: `failed: …`, `missing`, `different`, `extraneous`.
    pub what: String,
}

/// The result of a run (or of all runs so far, for a continued one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `sync` or `verify`.
    pub mode: Mode,
    /// Whether nothing was written because of `dry_run`.
    pub dry_run: bool,
    /// Source bucket.
    pub source_bucket: String,
    /// Prefix.
    pub prefix: String,
    /// Whether the whole listing was processed.
    pub done: bool,
    /// Source objects listed (passing the filters).
    pub source_objects: u64,
    /// Per target bucket.
    pub targets: BTreeMap<String, TargetCounts>,
    /// Up to 20 failures (or, for verify, drifted objects), with what happened.
    pub examples: Vec<Example>,
    /// List requests issued.
    pub list_requests: u64,
    /// Invocations the run took.
    pub invocations: u32,
    /// Wall time across invocations.
    pub duration_ms: u64,
    /// Parts copied by copies by parts, finished or not: a huge object moves a run forward
    /// a window at a time before it counts as copied.
    #[serde(default)]
    pub parts_copied: u64,
    /// Where to resume, when not done.
    pub continuation: Option<Box<Continuation>>,
    /// The run's id (self-continuing and Lambda runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Why a run that is not done does not continue, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stop>,
    /// A split run's chains, in the run's summary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chains: Vec<split::ChainReport>,
}

/// Why a run stopped continuing before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An invocation ended where it started: continuing would repeat it forever.
    NoProgress,
    /// The run reached its most self-continuations (`max_hops`).
    HopLimit,
    /// Another chain of the same run holds this hop or a later one.
    Superseded,
    /// The run's marker object was deleted: how an operator cancels a run.
    Cancelled,
}

/// A stop, with what an operator needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    /// Why.
    pub reason: StopReason,
    /// The details, as a sentence.
    pub detail: String,
}

impl Summary {
    /// Whether something failed, or (verify) drifted.
    pub fn has_problems(&self) -> bool {
        let verify = self.mode == Mode::Verify;
        self.targets.values().any(|c| {
            c.failed > 0 || c.missing > 0 || c.different > 0 || (verify && c.extraneous > 0)
        })
    }

    fn note(&mut self, target: &str, key: &str, what: String) {
        if self.examples.len() < 20 {
            self.examples.push(Example {
                target: target.to_string(),
                key: key.to_string(),
                what,
            });
        }
    }
}

/// A run that could not start or could not list.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("backfill: {0}")]
pub struct BackfillError(pub String);

/// Keys worked on per round: the listings are read ahead by at most this many keys.
const BATCH: usize = PAGE_SIZE as usize;

/// Runs a backfill or verify until done or until `deadline` nears; `progress` sees the summary
/// after every round.
pub async fn run<S: Store>(
    replicator: &Replicator<S>,
    request: &BackfillRequest,
    deadline: &Deadline,
    progress: &(dyn Fn(&Summary) + Sync),
) -> Result<Summary, BackfillError> {
    run_paged(replicator, request, deadline, progress, PAGE_SIZE).await
}

/// [`run`] with listings of `page_size` keys per request.
pub async fn run_paged<S: Store>(
    replicator: &Replicator<S>,
    request: &BackfillRequest,
    deadline: &Deadline,
    progress: &(dyn Fn(&Summary) + Sync),
    page_size: u32,
) -> Result<Summary, BackfillError> {
    let started = Instant::now();
    let config = replicator.config();
    let source_bucket = source_bucket(replicator, request)?;
    let range = request.range.clone().unwrap_or_default();
    range.check()?;
    let targets: Vec<&Target> = match &request.targets {
        None => config.targets.iter().collect(),
        Some(names) => names
            .iter()
            .map(|name| {
                config.target(name).ok_or_else(|| {
                    BackfillError(format!(
                        "{name:?} is not a configured target (REPLICA_TARGETS)"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let filters: Vec<Filter> = request
        .exclude
        .iter()
        .map(|p| Filter::Exclude(p.clone()))
        .chain(request.include.iter().map(|p| Filter::Include(p.clone())))
        .chain(request.filters.iter().cloned())
        .collect();
    let purpose = match (request.mode, request.compare) {
        (Mode::Sync, _) if !request.dry_run => Purpose::Sync {
            delete: request.delete,
        },
        (Mode::Verify, Compare::Full) => Purpose::Audit,
        _ => Purpose::Check,
    };

    let (mut summary, mut resume, mut done_after, mut open_uploads) = match &request.continuation {
        Some(c) => (
            c.so_far.clone(),
            Some(c.start_after.clone()),
            c.done_after.clone(),
            c.open_uploads.clone(),
        ),
        None => (Summary::default(), None, BTreeMap::new(), BTreeMap::new()),
    };
    summary.mode = request.mode;
    summary.dry_run = request.dry_run;
    summary.source_bucket = source_bucket.clone();
    summary.prefix = request.prefix.clone();
    summary.invocations += 1;
    summary.continuation = None;
    summary.stopped = None;
    // Where this invocation starts, to tell at its end whether it moved at all.
    let started_at = (resume.clone().unwrap_or_default(), done_after.clone());
    // Parts copied and uploads completed: progress even when no key finished.
    let mut parts_moved = 0;
    for target in &targets {
        summary.targets.entry(target.bucket.clone()).or_default();
    }

    let source_region = replicator.source_region(&source_bucket);
    let source = Cursor::new(
        &source_bucket,
        source_region,
        "",
        &request.prefix,
        resume.as_deref(),
        &range,
        page_size,
    );
    let replicas = targets
        .iter()
        .map(|t| {
            Cursor::new(
                &t.bucket,
                Some(&t.region),
                &config.replica_prefix(t, &source_bucket),
                &request.prefix,
                resume.as_deref(),
                &range,
                page_size,
            )
        })
        .collect();
    let mut merge = Merge::new(source, replicas);
    let concurrency = request.concurrency.unwrap_or(config.concurrency).max(1);
    let context = Context {
        replicator,
        source_bucket: &source_bucket,
        source_region,
        targets: &targets,
        purpose,
    };
    let store = replicator.store();

    // Each batch is listed while the one before it is copied: the copies never wait for a
    // listing but the first. What a listing shows past the batch being copied lies past every
    // key that batch writes.
    let prefix = request.prefix.as_str();
    let mut listed = match deadline.passed_soft() {
        true => None,
        false => Some(next_batch(&mut merge, store, &filters, prefix, deadline).await),
    };
    while let Some(batch) = listed.take() {
        let (items, scanned) = match batch {
            Ok(listed) => listed,
            Err(failure) if failure.kind == FailureKind::Deferred => break,
            Err(failure) => return Err(BackfillError(failure.message)),
        };
        let Some(scanned) = scanned else {
            summary.done = true;
            break;
        };
        // Items finish in any order, so that one slow object never holds the others' slots.
        let (context, counted, open) = (&context, &done_after, &open_uploads);
        let acting = async {
            let mut results: Vec<(usize, Acted)> = futures::stream::iter(items.iter().enumerate())
                .map(|(index, item)| {
                    let skip = counted.get(&item.key);
                    let upload = match open.contains_key(&item.key) {
                        true => LeftUpload::MayBeOpen,
                        false => LeftUpload::Unknown,
                    };
                    async move { (index, context.act(item, skip, upload, deadline).await) }
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
            results.sort_by_key(|(index, _)| *index);
            context
                .redo_throttled(&items, &mut results, concurrency, deadline)
                .await;
            results
        };
        let listing = next_batch(&mut merge, store, &filters, prefix, deadline);
        let (results, next) = tokio::join!(acting, listing);
        listed = Some(next);
        let parts: u64 = results.iter().map(|(_, acted)| acted.parts_copied).sum();
        summary.parts_copied += parts;
        parts_moved += parts
            + results
                .iter()
                .map(|(_, acted)| acted.uploads_completed)
                .sum::<u64>();
        for (item, (_, acted)) in items.iter().zip(&results) {
            let known = open_uploads.get(&item.key).copied().unwrap_or(0);
            parts_moved += acted.parts_found.saturating_sub(known);
            if acted.left_open {
                let held = acted.parts_found + acted.parts_copied;
                open_uploads.insert(item.key.clone(), held.max(known));
            } else if acted.outcomes.iter().all(|(_, o)| !is_deferred(o)) {
                open_uploads.remove(&item.key);
            }
        }

        // Resume after the last key before the first item the deadline stopped. What finished
        // after it is counted now and remembered per key and target, so that it is neither
        // redone nor counted twice.
        //
        // Only keys with finished work are remembered, and only up to a budget, so that the
        // continuation stays far below Lambda's 1 MB asynchronous payload whatever the key
        // length and concurrency. Work past the budget is neither counted nor remembered: the
        // next invocation settles it again (finding it current) and counts it then.
        let mut stopped = false;
        let mut remembered: usize = done_after.iter().map(|(k, t)| remembered_size(k, t)).sum();
        for (item, (_, Acted { outcomes: done, .. })) in items.iter().zip(&results) {
            let finished: Vec<&(usize, Outcome)> =
                done.iter().filter(|(_, o)| !is_deferred(o)).collect();
            let first_time = !done_after.contains_key(&item.key);
            stopped |= finished.len() < done.len();
            if !stopped {
                tally(&mut summary, &targets, item, &finished, first_time, request);
                resume = Some(item.key.clone());
                continue;
            }
            if finished.is_empty() {
                continue;
            }
            let names: Vec<String> = finished
                .iter()
                .map(|(t, _)| targets[*t].bucket.clone())
                .collect();
            let added = remembered_size(&item.key, &names);
            if remembered + added > DONE_AFTER_BUDGET {
                continue;
            }
            remembered += added;
            tally(&mut summary, &targets, item, &finished, first_time, request);
            done_after
                .entry(item.key.clone())
                .or_default()
                .extend(names);
        }
        progress(&summary);
        if stopped {
            break;
        }
        resume = Some(scanned);
        let passed = resume.clone().unwrap_or_default();
        done_after.retain(|key, _| *key > passed);
        if deadline.passed_soft() {
            break;
        }
    }

    summary.list_requests += merge.requests();
    summary.duration_ms += started.elapsed().as_millis() as u64;
    if !summary.done {
        let start_after = resume.unwrap_or_default();
        // Parts copied are progress too: the upload stays open and the next invocation
        // copies only the parts still missing.
        if (&start_after, &done_after) == (&started_at.0, &started_at.1) && parts_moved == 0 {
            summary.stopped = Some(Stop {
                reason: StopReason::NoProgress,
                detail: format!(
                    "the invocation ended where it started (after {start_after:?}, {} keys done past it, no part copied, no upload completed): continuing would repeat it",
                    done_after.len()
                ),
            });
        }
        let so_far = Summary {
            stopped: None,
            ..summary.clone()
        };
        summary.continuation = Some(Box::new(Continuation {
            start_after,
            done_after,
            open_uploads,
            so_far,
            run: None,
        }));
    }
    Ok(summary)
}

/// The next batch of keys, merged from every listing, with the last key scanned (`None` at
/// the end). Bounded by keys scanned, not kept: a run of keys the filters exclude then moves
/// the resume point a batch at a time instead of being read whole within one deadline (and
/// never passed). Gives up at the deadline's hard stop; the next invocation lists again.
async fn next_batch<S: Store>(
    merge: &mut Merge,
    store: &S,
    filters: &[Filter],
    prefix: &str,
    deadline: &Deadline,
) -> Result<(Vec<Merged>, Option<String>), Failure> {
    deadline
        .bound(async {
            let mut items = Vec::new();
            let mut scanned = None;
            for _ in 0..BATCH {
                let Some(merged) = merge.next(store).await? else {
                    break;
                };
                scanned = Some(merged.key.clone());
                let relative = merged.key.strip_prefix(prefix).unwrap_or(&merged.key);
                // Run markers live under a reserved prefix of the first target.
                if passes(filters, relative) && !chain::is_reserved(&merged.key) {
                    items.push(merged);
                }
            }
            Ok((items, scanned))
        })
        .await
}

/// Most bytes of keys and target names a continuation remembers as done past its resume
/// point (a quarter of the 1 MB asynchronous payload limit).
const DONE_AFTER_BUDGET: usize = 256 * 1024;

/// What one remembered key costs in the continuation's JSON: the key as JSON escapes it (a
/// control character takes six bytes), the target names, brackets and separators.
fn remembered_size(key: &str, targets: &[String]) -> usize {
    let json = |text: &str| serde_json::to_string(text).map_or(6 * text.len() + 2, |s| s.len());
    json(key) + 3 + targets.iter().map(|t| json(t) + 1).sum::<usize>()
}

pub(crate) fn source_bucket<S: Store>(
    replicator: &Replicator<S>,
    request: &BackfillRequest,
) -> Result<String, BackfillError> {
    let sources = &replicator.config().source_buckets;
    let bucket = match &request.source_bucket {
        Some(bucket) => bucket.clone(),
        None if sources.len() == 1 => sources.iter().next().cloned().unwrap_or_default(),
        None => {
            return Err(BackfillError(format!(
                "source_bucket is required: several sources are configured ({})",
                sources.iter().cloned().collect::<Vec<_>>().join(",")
            )))
        }
    };
    if !sources.contains(&bucket) {
        return Err(BackfillError(format!(
            "bucket {bucket:?} is not a configured source (SOURCE_BUCKETS)"
        )));
    }
    Ok(bucket)
}

fn is_deferred(outcome: &Outcome) -> bool {
    outcome
        .failure()
        .is_some_and(|f| f.kind == FailureKind::Deferred)
}

/// What acting on one item did.
#[derive(Default)]
struct Acted {
    /// Per target (its index), what happened.
    outcomes: Vec<(usize, Outcome)>,
    /// Parts copied by copies by parts, finished or not.
    parts_copied: u64,
    /// Parts found in uploads an earlier invocation left open.
    parts_found: u64,
    /// Copies by parts completed (the check after them may not have been).
    uploads_completed: u64,
    /// Whether the deadline left a copy by parts open.
    left_open: bool,
}

/// Rounds in which a batch redoes the work S3 throttled, after pauses from
/// [`THROTTLE_PAUSE`], doubling.
const THROTTLE_ROUNDS: u32 = 8;

/// The first pause before throttled work is redone.
const THROTTLE_PAUSE: Duration = Duration::from_millis(500);

/// A share from 0 to 1 drawn from a key.
fn spread_of(key: &str) -> f64 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % 1000) as f64 / 1000.0
}

/// Whether S3 refused the work for its request rate (`503 SlowDown`, which is also how it
/// answers a cross-region copy past the available bandwidth), or the target's breaker held
/// it, opened by such answers or by an outage: work that waiting lets succeed.
fn is_throttled(outcome: &Outcome) -> bool {
    outcome
        .failure()
        .is_some_and(|f| f.code.as_deref() == Some("SlowDown") || f.kind == FailureKind::Held)
}

/// What a run needs to act on an item.
struct Context<'a, S> {
    replicator: &'a Replicator<S>,
    source_bucket: &'a str,
    source_region: Option<&'a str>,
    targets: &'a [&'a Target],
    purpose: Purpose,
}

impl<S: Store> Context<'_, S> {
    /// Redoes, after a pause, the work of a batch that S3 answered `SlowDown` after the
    /// client's own retries: a run past a prefix's request rate (several chains, a busy
    /// bucket) then slows down instead of counting keys as failed. Work the deadline stops
    /// is deferred to the next invocation, as any other.
    async fn redo_throttled(
        &self,
        items: &[Merged],
        results: &mut [(usize, Acted)],
        concurrency: usize,
        deadline: &Deadline,
    ) {
        let buckets: Vec<&str> = self.targets.iter().map(|t| t.bucket.as_str()).collect();
        let buckets = &buckets;
        for round in 0..THROTTLE_ROUNDS {
            let throttled: Vec<(usize, Vec<String>)> = results
                .iter()
                .filter_map(|(index, acted)| {
                    let slowed: Vec<usize> = acted
                        .outcomes
                        .iter()
                        .filter(|(_, o)| is_throttled(o))
                        .map(|(t, _)| *t)
                        .collect();
                    let others = (0..buckets.len())
                        .filter(|t| !slowed.contains(t))
                        .map(|t| buckets[t].to_string())
                        .collect();
                    (!slowed.is_empty()).then_some((*index, others))
                })
                .collect();
            if throttled.is_empty() || deadline.passed_soft() {
                return;
            }
            let pause = THROTTLE_PAUSE * 2u32.pow(round.min(5));
            let redone: Vec<(usize, Acted)> = futures::stream::iter(&throttled)
                .map(|(index, others)| async move {
                    let item = &items[*index];
                    // Spread over the pause (by the key, so that a run replays alike):
                    // chains throttled together must not come back together.
                    let spread = pause.mul_f64(0.5 + spread_of(&item.key));
                    let paused = deadline
                        .bound(async {
                            tokio::time::sleep(spread).await;
                            Ok(())
                        })
                        .await;
                    let acted = match paused {
                        Ok(()) => {
                            self.act(item, Some(others), LeftUpload::Unknown, deadline)
                                .await
                        }
                        // Stopped by the deadline: deferred, redone by the next invocation.
                        Err(stopped) => Acted {
                            outcomes: (0..buckets.len())
                                .filter(|t| !others.iter().any(|b| b == buckets[*t]))
                                .map(|t| (t, Outcome::Failed(stopped.clone())))
                                .collect(),
                            ..Acted::default()
                        },
                    };
                    (*index, acted)
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
            for (index, again) in redone {
                let acted = &mut results[index].1;
                for (target, outcome) in again.outcomes {
                    if let Some(slot) = acted.outcomes.iter_mut().find(|(t, _)| *t == target) {
                        slot.1 = outcome;
                    }
                }
                acted.parts_copied += again.parts_copied;
                acted.uploads_completed += again.uploads_completed;
                acted.left_open |= again.left_open;
            }
        }
    }

    /// Settles one key at every target that lists it or should (those in `skip` were done by
    /// an earlier invocation).
    async fn act(
        &self,
        item: &Merged,
        skip: Option<&Vec<String>>,
        upload: LeftUpload,
        deadline: &Deadline,
    ) -> Acted {
        // A full verify reads both sides: a listing shows neither headers, metadata nor tags.
        let full = self.purpose == Purpose::Audit;
        let (seen, announced) = match &item.source {
            Some(listed) if full => (SourceSeen::Unknown, Some(listed.etag.as_str())),
            Some(listed) => (
                SourceSeen::Listed {
                    etag: listed.etag.clone(),
                    size: listed.size,
                    storage_class: listed.storage_class.clone(),
                },
                Some(listed.etag.as_str()),
            ),
            None => (SourceSeen::NotListed, None),
        };
        let job = Job::new(
            self.purpose,
            self.source_bucket,
            self.source_region,
            &item.key,
            announced,
            seen,
        )
        .sized(item.source.as_ref().map(|l| l.size))
        .left(upload);
        let work = item
            .replicas
            .iter()
            .enumerate()
            .filter(|(t, replica)| {
                (item.source.is_some() || replica.is_some())
                    && !skip.is_some_and(|done| done.contains(&self.targets[*t].bucket))
            })
            .map(|(t, replica)| {
                let seen = match replica {
                    Some(_) if full => ReplicaSeen::Unknown,
                    Some(listed) => ReplicaSeen::Listed {
                        etag: listed.etag.clone(),
                        size: listed.size,
                    },
                    None => ReplicaSeen::Absent,
                };
                let job = &job;
                async move {
                    let target = self.targets[t];
                    let settled = self.replicator.settle(job, target, seen, deadline);
                    let outcome = self.replicator.guarded(target, settled).await;
                    (t, outcome)
                }
            });
        let outcomes = join_all(work).await;
        Acted {
            outcomes,
            parts_copied: job.parts_copied(),
            parts_found: job.parts_found(),
            uploads_completed: job.uploads_completed(),
            left_open: job.left_open(),
        }
    }
}

fn tally(
    summary: &mut Summary,
    targets: &[&Target],
    item: &Merged,
    done: &[&(usize, Outcome)],
    first_time: bool,
    request: &BackfillRequest,
) {
    if item.source.is_some() && first_time {
        summary.source_objects += 1;
    }
    let size = item.source.as_ref().map(|s| s.size).unwrap_or_default();
    let verify = request.mode == Mode::Verify;
    for (t, outcome) in done {
        let bucket = &targets[*t].bucket;
        let counts = summary.targets.entry(bucket.clone()).or_default();
        if item.source.is_some() {
            counts.listed += 1;
        }
        let (found, repaired) = drift(outcome, request);
        counts.drift_found += u64::from(found);
        counts.drift_repaired += u64::from(repaired);
        let note = match outcome {
            Outcome::UpToDate | Outcome::TagsUpdated => {
                counts.up_to_date += 1;
                None
            }
            // A dry run reports what a sync would copy as copied.
            Outcome::Copied | Outcome::Missing | Outcome::Different if !verify => {
                counts.copied += 1;
                counts.bytes += size;
                None
            }
            Outcome::Copied => {
                counts.copied += 1;
                counts.bytes += size;
                None
            }
            Outcome::Deleted => {
                counts.deleted += 1;
                None
            }
            Outcome::Extraneous if request.dry_run && request.delete => {
                counts.deleted += 1;
                None
            }
            Outcome::Extraneous => {
                counts.extraneous += 1;
                verify.then(|| "extraneous".to_string())
            }
            Outcome::Missing => {
                counts.missing += 1;
                Some("missing".to_string())
            }
            Outcome::AwaitingRestore => {
                counts.awaiting_restore += 1;
                Some("awaiting restore: archived, copied once restored".to_string())
            }
            Outcome::Different => {
                counts.different += 1;
                Some("different".to_string())
            }
            Outcome::Unverifiable => {
                counts.unverifiable += 1;
                Some(
                    "unverifiable: no full-object checksum on both sides, and ETags that cannot tell"
                        .to_string(),
                )
            }
            Outcome::SourceChanged
            | Outcome::SourceGone
            | Outcome::SourceExists
            | Outcome::IsReplica
            | Outcome::Ignored { .. } => {
                counts.skipped += 1;
                None
            }
            Outcome::Failed(failure) => {
                counts.failed += 1;
                Some(format!("failed: {}", failure.message))
            }
        };
        if let Some(what) = note {
            summary.note(bucket, &item.key, what);
        }
    }
}

/// Whether an outcome is drift the run found, and whether it repaired it. Extraneous objects
/// are drift only when the run deletes: without `delete`, replicas keep what the source
/// deleted on purpose. Archived objects awaiting a restore are counted apart
/// (`awaiting_restore`), failures too (`failed`).
fn drift(outcome: &Outcome, request: &BackfillRequest) -> (bool, bool) {
    let writes = request.mode == Mode::Sync && !request.dry_run;
    match outcome {
        Outcome::Copied | Outcome::Deleted => (true, writes),
        Outcome::Missing | Outcome::Different => (true, false),
        Outcome::Extraneous => (request.delete, false),
        _ => (false, false),
    }
}
