//! Backfill: brings every target up to date with objects that existed before replication
//! started, with `aws s3 sync` semantics (dry run, delete, include/exclude), resumable across
//! invocations; and verify, the same comparison without writing anything.
//!
//! The source is listed once and every target alongside it; the sorted listings are merged a
//! page at a time, so memory is bounded by the page size. A replica is current when its size and
//! ETag equal the source's: a listing shows both, so a second run over synced buckets issues
//! nothing but List requests. Where the ETags cannot match although the content does (SSE-KMS,
//! or a single-part source above the multipart threshold, whose replica has a multipart ETag),
//! one HeadObject reads the replica's recorded provenance (`fanout-source-etag`).

pub mod batch;
pub mod filter;
pub mod listing;

use std::collections::BTreeMap;
use std::time::Instant;

use futures::future::join_all;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::config::Target;
use crate::deadline::Deadline;
use crate::event::{Change, ChangeKind};
use crate::outcome::Outcome;
use crate::replicator::Replicator;
use filter::{passes, Filter};
use listing::{Listed, Lister};

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
    /// Delete replica objects that no longer exist at the source.
    pub delete: bool,
    /// Objects worked on at once (default: `COPY_CONCURRENCY`).
    pub concurrency: Option<usize>,
    /// When the invocation's time runs out, continue in a new invocation until done.
    pub auto_continue: bool,
    /// Set by a previous run that stopped before its end.
    pub continuation: Option<Continuation>,
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
    /// Counters up to that key.
    pub so_far: Summary,
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
    /// Where to resume, when not done.
    pub continuation: Option<Box<Continuation>>,
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

/// What to do for one key at one target, decided from the listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Same size and ETag.
    Current,
    /// The replica does not exist.
    Missing,
    /// The replica's size differs.
    Differs,
    /// Same size, different ETag: the replica's provenance decides.
    Check,
    /// The replica has a key the source does not.
    Extraneous,
}

/// What became of one key at one target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Done {
    Current,
    Copied,
    Deleted,
    Missing,
    Different,
    Extraneous,
    Skipped,
    Failed(String),
    /// Not done because the invocation's deadline neared: the next run does it.
    Stopped,
}

/// All the steps for one key, in key order.
struct Item {
    key: String,
    source: Option<Listed>,
    steps: Vec<(usize, Step)>,
}

/// Runs a backfill or verify until done or until `deadline` nears; `progress` sees the summary
/// after every page.
pub async fn run(
    replicator: &Replicator,
    request: &BackfillRequest,
    deadline: &Deadline,
    progress: &(dyn Fn(&Summary) + Sync),
) -> Result<Summary, BackfillError> {
    let started = Instant::now();
    let config = replicator.config();
    let source_bucket = match &request.source_bucket {
        Some(bucket) => bucket.clone(),
        None if config.source_buckets.len() == 1 => config
            .source_buckets
            .iter()
            .next()
            .cloned()
            .unwrap_or_default(),
        None => {
            return Err(BackfillError(format!(
                "source_bucket is required: several sources are configured ({})",
                config
                    .source_buckets
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(",")
            )))
        }
    };
    if !config.source_buckets.contains(&source_bucket) {
        return Err(BackfillError(format!(
            "bucket {source_bucket:?} is not a configured source (SOURCE_BUCKETS)"
        )));
    }
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
    let write = request.mode == Mode::Sync && !request.dry_run;

    let (mut summary, mut resume, mut done_after) = match &request.continuation {
        Some(c) => (
            c.so_far.clone(),
            Some(c.start_after.clone()),
            c.done_after.clone(),
        ),
        None => (Summary::default(), None, BTreeMap::new()),
    };
    summary.mode = request.mode;
    summary.dry_run = request.dry_run;
    summary.source_bucket = source_bucket.clone();
    summary.prefix = request.prefix.clone();
    summary.invocations += 1;
    summary.continuation = None;
    for target in &targets {
        summary.targets.entry(target.bucket.clone()).or_default();
    }

    let source_region = replicator.source_region(&source_bucket);
    let mut source = Lister::new(
        replicator.client(&source_region),
        &source_bucket,
        "",
        &request.prefix,
        resume.as_deref(),
    );
    let mut replicas: Vec<Lister> = targets
        .iter()
        .map(|t| {
            Lister::new(
                replicator.client(&t.region),
                &t.bucket,
                &t.prefix,
                &request.prefix,
                resume.as_deref(),
            )
        })
        .collect();
    let concurrency = request.concurrency.unwrap_or(config.concurrency).max(1);
    let relative = |key: &str| {
        key.strip_prefix(request.prefix.as_str())
            .unwrap_or(key)
            .to_string()
    };
    let context = Context {
        replicator,
        source_bucket: &source_bucket,
        source_region: &source_region,
        targets: &targets,
        mode: request.mode,
        write,
        delete: request.delete,
        deadline,
    };

    loop {
        if deadline.refuse_new_work().is_some() {
            break;
        }
        // Listing gives up at the deadline's hard stop too; the next invocation lists again.
        let listed = tokio::time::timeout_at(deadline.hard().into(), async {
            let page = source.next_page().await?;
            let upper = page.as_ref().and_then(|p| p.last()).map(|l| l.key.clone());
            let replica_entries = join_all(
                replicas
                    .iter_mut()
                    .map(|r| r.take_through(upper.as_deref())),
            )
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, String>((page, upper, replica_entries))
        })
        .await;
        let (page, upper, listed) = match listed {
            Ok(result) => result.map_err(BackfillError)?,
            Err(_) => break,
        };
        let mut items = merge(page.unwrap_or_default(), listed, |key| {
            passes(&filters, &relative(key))
        });
        for item in &mut items {
            if let Some(counted) = done_after.get(&item.key) {
                item.steps
                    .retain(|(t, _)| !counted.contains(&targets[*t].bucket));
            }
        }
        let results: Vec<Vec<(usize, Done)>> = futures::stream::iter(items.iter())
            .map(|item| context.act(item))
            .buffered(concurrency)
            .collect()
            .await;

        // Resume after the last key before the first item the deadline stopped. What finished
        // after it is counted now and remembered per key and target, so that it is neither
        // redone nor counted twice.
        let mut stopped = false;
        for (item, done) in items.iter().zip(&results) {
            let finished: Vec<(usize, Done)> = done
                .iter()
                .filter(|(_, d)| *d != Done::Stopped)
                .cloned()
                .collect();
            let first_time = !done_after.contains_key(&item.key);
            tally(&mut summary, &targets, item, &finished, first_time);
            stopped |= finished.len() < done.len();
            if stopped {
                done_after
                    .entry(item.key.clone())
                    .or_default()
                    .extend(finished.iter().map(|(t, _)| targets[*t].bucket.clone()));
            } else {
                resume = Some(item.key.clone());
            }
        }
        progress(&summary);
        if stopped {
            break;
        }
        match upper {
            None => {
                summary.done = true;
                break;
            }
            Some(upper) => resume = Some(upper),
        }
        let passed = resume.clone().unwrap_or_default();
        done_after.retain(|key, _| *key > passed);
    }

    summary.list_requests += source.requests + replicas.iter().map(|r| r.requests).sum::<u64>();
    summary.duration_ms += started.elapsed().as_millis() as u64;
    if !summary.done {
        let so_far = summary.clone();
        summary.continuation = Some(Box::new(Continuation {
            start_after: resume.unwrap_or_default(),
            done_after,
            so_far,
        }));
    }
    Ok(summary)
}

/// Merges a page of source objects with each target's entries up to the page's last key.
fn merge(
    page: Vec<Listed>,
    replicas: Vec<Vec<Listed>>,
    included: impl Fn(&str) -> bool,
) -> Vec<Item> {
    let mut replicas: Vec<BTreeMap<String, Listed>> = replicas
        .into_iter()
        .map(|entries| entries.into_iter().map(|e| (e.key.clone(), e)).collect())
        .collect();
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    for object in page.into_iter().filter(|o| included(&o.key)) {
        let steps = replicas
            .iter_mut()
            .enumerate()
            .map(|(t, entries)| {
                let step = match entries.remove(&object.key) {
                    None => Step::Missing,
                    Some(r) if r.size != object.size => Step::Differs,
                    Some(r) if r.etag == object.etag => Step::Current,
                    Some(_) => Step::Check,
                };
                (t, step)
            })
            .collect();
        items.insert(
            object.key.clone(),
            Item {
                key: object.key.clone(),
                source: Some(object),
                steps,
            },
        );
    }
    for (t, rest) in replicas.into_iter().enumerate() {
        for key in rest.into_keys().filter(|k| included(k)) {
            items
                .entry(key.clone())
                .or_insert_with(|| Item {
                    key,
                    source: None,
                    steps: Vec::new(),
                })
                .steps
                .push((t, Step::Extraneous));
        }
    }
    items.into_values().collect()
}

/// What a run needs to act on an item.
struct Context<'a> {
    replicator: &'a Replicator,
    source_bucket: &'a str,
    source_region: &'a str,
    targets: &'a [&'a Target],
    mode: Mode,
    write: bool,
    delete: bool,
    deadline: &'a Deadline,
}

impl Context<'_> {
    /// Carries out (or, for verify and dry runs, only determines) the steps of one item.
    async fn act(&self, item: &Item) -> Vec<(usize, Done)> {
        let mut done = Vec::new();
        let mut copies: Vec<(usize, bool)> = Vec::new();
        let mut deletes: Vec<usize> = Vec::new();
        for &(t, step) in &item.steps {
            match step {
                Step::Current => done.push((t, Done::Current)),
                Step::Missing | Step::Differs => copies.push((t, false)),
                Step::Check => copies.push((t, true)),
                Step::Extraneous if self.mode == Mode::Sync && self.delete => deletes.push(t),
                Step::Extraneous => done.push((t, Done::Extraneous)),
            }
        }
        if !self.write {
            for (t, check) in copies {
                let step = item.steps.iter().find(|(i, _)| *i == t).map(|(_, s)| *s);
                let current = match (check, &item.source) {
                    (true, Some(source)) => {
                        self.replicator
                            .replica_is_current(self.targets[t], &item.key, &source.etag)
                            .await
                    }
                    _ => Ok(false),
                };
                let result = match (current, self.mode, step) {
                    (Err(error), _, _) => Done::Failed(error),
                    (Ok(true), _, _) => Done::Current,
                    (Ok(false), Mode::Sync, _) => Done::Copied,
                    (Ok(false), Mode::Verify, Some(Step::Missing)) => Done::Missing,
                    (Ok(false), Mode::Verify, _) => Done::Different,
                };
                done.push((t, result));
            }
            let extraneous = if self.mode == Mode::Verify {
                Done::Extraneous
            } else {
                Done::Deleted
            };
            done.extend(deletes.into_iter().map(|t| (t, extraneous.clone())));
            return done;
        }
        let change = |kind| Change {
            kind,
            bucket: self.source_bucket.to_string(),
            key: item.key.clone(),
            region: Some(self.source_region.to_string()),
            etag: item.source.as_ref().map(|s| s.etag.clone()),
            size: item.source.as_ref().map(|s| s.size),
            sequencer: None,
            version_id: None,
        };
        if !copies.is_empty() {
            let plan: Vec<(&Target, bool)> = copies
                .iter()
                .map(|&(t, check)| (self.targets[t], check))
                .collect();
            let report = self
                .replicator
                .copy_to_targets(&change(ChangeKind::Created), &plan, self.deadline)
                .await;
            for (&(t, _), r) in copies.iter().zip(report.targets) {
                done.push((t, Done::from(r.outcome)));
            }
        }
        if !deletes.is_empty() {
            let plan: Vec<&Target> = deletes.iter().map(|&t| self.targets[t]).collect();
            let report = self
                .replicator
                .delete_from_targets(&change(ChangeKind::Removed), &plan, self.deadline)
                .await;
            for (&t, r) in deletes.iter().zip(report.targets) {
                done.push((t, Done::from(r.outcome)));
            }
        }
        done
    }
}

impl From<Outcome> for Done {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Copied => Done::Copied,
            Outcome::UpToDate => Done::Current,
            Outcome::Deleted => Done::Deleted,
            ref failed @ Outcome::Failed { ref error, .. } => {
                if Deadline::stopped(failed) {
                    Done::Stopped
                } else {
                    Done::Failed(error.clone())
                }
            }
            Outcome::SourceChanged
            | Outcome::SourceGone
            | Outcome::SourceExists
            | Outcome::IsReplica
            | Outcome::Ignored { .. } => Done::Skipped,
        }
    }
}

fn tally(
    summary: &mut Summary,
    targets: &[&Target],
    item: &Item,
    done: &[(usize, Done)],
    first_time: bool,
) {
    let summary_mode = summary.mode;
    if item.source.is_some() && first_time {
        summary.source_objects += 1;
    }
    let size = item
        .source
        .as_ref()
        .map(|s| s.size.max(0) as u64)
        .unwrap_or_default();
    for (t, result) in done {
        let bucket = &targets[*t].bucket;
        let counts = summary.targets.entry(bucket.clone()).or_default();
        if item.source.is_some() {
            counts.listed += 1;
        }
        let note = match result {
            Done::Current => {
                counts.up_to_date += 1;
                None
            }
            Done::Copied => {
                counts.copied += 1;
                counts.bytes += size;
                None
            }
            Done::Deleted => {
                counts.deleted += 1;
                None
            }
            Done::Skipped => {
                counts.skipped += 1;
                None
            }
            Done::Missing => {
                counts.missing += 1;
                Some("missing".to_string())
            }
            Done::Different => {
                counts.different += 1;
                Some("different".to_string())
            }
            Done::Extraneous => {
                counts.extraneous += 1;
                (summary_mode == Mode::Verify).then(|| "extraneous".to_string())
            }
            Done::Failed(error) => {
                counts.failed += 1;
                Some(format!("failed: {error}"))
            }
            Done::Stopped => None,
        };
        if let Some(what) = note {
            summary.note(bucket, &item.key, what);
        }
    }
}

/// What a backfill invocation answers, and the request to continue with when it stopped early
/// and `auto_continue` was asked.
pub async fn handle_invocation(
    replicator: &Replicator,
    payload: &serde_json::Value,
    deadline: &Deadline,
) -> Result<(serde_json::Value, Option<BackfillRequest>), crate::invocation::InvocationError> {
    use crate::invocation::InvocationError;
    if batch::is_batch_event(payload) {
        return Ok((batch::handle(replicator, payload, deadline).await?, None));
    }
    let request = BackfillRequest::deserialize(payload).map_err(|e| {
        InvocationError::Malformed(crate::event::EventError(format!("backfill payload: {e}")))
    })?;
    let summary = run(replicator, &request, deadline, &|_| {})
        .await
        .map_err(|e| InvocationError::Failed(e.to_string()))?;
    tracing::info!(
        done = summary.done,
        source_objects = summary.source_objects,
        list_requests = summary.list_requests,
        summary = %serde_json::to_string(&summary.targets).unwrap_or_default(),
        "backfill"
    );
    let next = match (&summary.continuation, request.auto_continue) {
        (Some(continuation), true) => Some(BackfillRequest {
            continuation: Some((**continuation).clone()),
            ..request
        }),
        _ => None,
    };
    let response = serde_json::to_value(&summary).expect("summary serialises");
    Ok((response, next))
}
