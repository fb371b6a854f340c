//! A run split into chains that work at once, one per range of the key space, each with its
//! own marker and continuations, and one summary for the run.
//!
//! One chain copies at most what one invocation's concurrency allows. A split run's first
//! invocation chooses the ranges (at the common prefixes one level below the run's prefix, or
//! at keys the request names), records them in the run's marker create-only, and starts one
//! self-continuing chain per range, named `<run id>.<n>`. Every hop of every chain writes its
//! own summary, then the run's: the sum of every chain's latest, written with `If-Match` on
//! the summary it read, so that two chains finishing at once cannot leave an older sum behind.

use futures::future::join_all;
use serde::{Deserialize, Serialize};

use super::chain::{check_run_id, SummaryLocation};
use super::range::{between, boundaries_among, KeyRange, MAX_CHAINS};
use super::{BackfillError, BackfillRequest, Stop, Summary, TargetCounts};
use crate::engine::replicator::Replicator;
use crate::store::{ObjectAt, Store, WriteCondition};

/// Most common prefixes read to choose where a run splits.
const MAX_PREFIXES: usize = 100_000;

/// Attempts at writing the run's summary against other chains writing it too: each attempt
/// lost is another chain's write, so twice the most chains.
const COMBINE_ATTEMPTS: u32 = 2 * MAX_CHAINS;

/// Which chain of which run a request is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartOf {
    /// The split run's id.
    pub run_id: String,
    /// This chain's number, from 0.
    pub chain: u32,
    /// How many chains the run has.
    pub chains: u32,
}

/// A chain of a split run, as the run's summary reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    /// The chain's run id, also the name of its own summary.
    pub run_id: String,
    /// Whether its summary was found: a chain that has not finished a hop yet has none.
    pub reported: bool,
    /// Whether it went through its whole range.
    pub done: bool,
    /// Why it stopped before its end, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stop>,
}

/// Whether a request asks for a split run (and is not a chain of one already).
pub fn is_split(request: &BackfillRequest) -> bool {
    request.part_of.is_none()
        && request.continuation.is_none()
        && (request.chains.is_some_and(|n| n != 1) || !request.split_at.is_empty())
}

/// Checks what a split run needs, naming the value that is wrong.
pub fn check(request: &BackfillRequest) -> Result<SummaryLocation, BackfillError> {
    let bad = |message: String| Err(BackfillError(message));
    match request.chains {
        Some(0) => return bad("chains 0: a run needs at least one chain".into()),
        Some(n) if n > MAX_CHAINS => {
            return bad(format!(
                "chains {n}: at most {MAX_CHAINS} (each chain is one concurrent invocation writing to every target)"
            ))
        }
        Some(_) if !request.split_at.is_empty() => {
            return bad("chains and split_at: give one of them (split_at makes one chain more than its keys)".into())
        }
        _ => {}
    }
    if request.split_at.len() >= MAX_CHAINS as usize {
        return bad(format!(
            "split_at has {} keys: at most {} ({MAX_CHAINS} chains)",
            request.split_at.len(),
            MAX_CHAINS - 1
        ));
    }
    between(&request.split_at)?;
    if request.range.is_some() {
        return bad("range and a split: a split run chooses its chains' ranges".into());
    }
    if !request.auto_continue {
        return bad("a split run needs auto_continue: its chains continue on their own".into());
    }
    let Some(summary_to) = &request.summary_to else {
        return bad(
            "a split run needs summary_to: the run's summary is where its chains report".into(),
        );
    };
    SummaryLocation::parse(summary_to)
}

/// The ranges a split run's chains work on: between the request's `split_at` keys, or
/// between common prefixes one level below its prefix in the source, dealt out to `chains`.
pub async fn ranges<S: Store>(
    replicator: &Replicator<S>,
    request: &BackfillRequest,
) -> Result<Vec<KeyRange>, BackfillError> {
    if !request.split_at.is_empty() {
        return between(&request.split_at);
    }
    let source = super::source_bucket(replicator, request)?;
    let prefixes = replicator
        .store()
        .list_prefixes(
            &source,
            replicator.source_region(&source),
            &request.prefix,
            MAX_PREFIXES,
        )
        .await
        .map_err(|f| BackfillError(format!("listing where to split: {f}")))?;
    between(&boundaries_among(&prefixes, request.chains.unwrap_or(1)))
}

/// The chains' run ids, checked: each becomes part of an object key.
pub fn chain_ids(run_id: &str, chains: usize) -> Result<Vec<String>, BackfillError> {
    (0..chains)
        .map(|n| {
            let id = format!("{run_id}.{n}");
            check_run_id(&id).map(|_| id)
        })
        .collect()
}

/// The first request of every chain of run `run_id` over `ranges`.
pub fn chain_requests(
    request: &BackfillRequest,
    run_id: &str,
    ranges: &[KeyRange],
) -> Result<Vec<BackfillRequest>, BackfillError> {
    let ids = chain_ids(run_id, ranges.len())?;
    Ok(ranges
        .iter()
        .zip(ids)
        .enumerate()
        .map(|(n, (range, id))| BackfillRequest {
            run_id: Some(id),
            range: Some(range.clone()),
            chains: None,
            split_at: Vec::new(),
            continuation: None,
            part_of: Some(PartOf {
                run_id: run_id.to_string(),
                chain: n as u32,
                chains: ranges.len() as u32,
            }),
            ..request.clone()
        })
        .collect())
}

/// Writes the run's summary from every chain's latest at `location`; answers its address.
pub async fn combine<S: Store>(
    replicator: &Replicator<S>,
    location: &SummaryLocation,
    part_of: &PartOf,
    base: &Summary,
) -> Result<String, String> {
    let store = replicator.store();
    let region = summary_region(replicator, &location.bucket);
    let key = location.key(&part_of.run_id);
    let at = ObjectAt {
        bucket: &location.bucket,
        region,
        key: &key,
    };
    let ids = chain_ids(&part_of.run_id, part_of.chains as usize).map_err(|e| e.to_string())?;
    for _ in 0..COMBINE_ATTEMPTS {
        // The run's summary first, then the chains': a write that succeeds has read every
        // chain's summary written before the one it replaces.
        let current = store
            .get_small_object(at)
            .await
            .map_err(|f| format!("reading the run's summary: {}", f.message))?;
        let reads = ids.iter().map(|id| async move {
            let part_key = location.key(id);
            let part_at = ObjectAt {
                key: &part_key,
                ..at
            };
            let part = store
                .get_small_object(part_at)
                .await
                .map_err(|f| format!("reading chain {id}'s summary: {}", f.message))?;
            let parsed = part
                .map(|p| serde_json::from_slice::<Summary>(&p.body))
                .transpose()
                .map_err(|e| format!("{} is not a summary: {e}", location.url(id)))?;
            Ok::<_, String>((id.clone(), parsed))
        });
        let parts = join_all(reads)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, String>>()?;
        let sum = sum_of(&part_of.run_id, base, &parts);
        let body = serde_json::to_vec_pretty(&sum).expect("summary serialises");
        let condition = match current {
            Some(found) => WriteCondition::Matches(found.etag),
            None => WriteCondition::Absent,
        };
        match store.put_small_object(at, &body, &condition).await {
            Ok(_) => return Ok(location.url(&part_of.run_id)),
            Err(f) if f.is_precondition_failed() => continue,
            Err(f) => return Err(format!("writing the run's summary: {}", f.message)),
        }
    }
    Err(format!(
        "writing the run's summary: another chain wrote it first {COMBINE_ATTEMPTS} times"
    ))
}

/// Where a summary bucket is: a target's region, or a source's.
pub(crate) fn summary_region<'a, S: Store>(
    replicator: &'a Replicator<S>,
    bucket: &str,
) -> Option<&'a str> {
    replicator
        .config()
        .target(bucket)
        .map(|t| t.region.as_str())
        .or_else(|| replicator.source_region(bucket))
}

/// The run's summary: every chain's counts added, done when every chain is.
pub fn sum_of(run_id: &str, base: &Summary, parts: &[(String, Option<Summary>)]) -> Summary {
    let mut sum = Summary {
        mode: base.mode,
        dry_run: base.dry_run,
        source_bucket: base.source_bucket.clone(),
        prefix: base.prefix.clone(),
        run_id: Some(run_id.to_string()),
        done: !parts.is_empty(),
        // The split itself, then every chain's.
        invocations: 1,
        ..Summary::default()
    };
    for (id, part) in parts {
        let Some(part) = part else {
            sum.done = false;
            sum.chains.push(ChainReport {
                run_id: id.clone(),
                reported: false,
                done: false,
                stopped: None,
            });
            continue;
        };
        sum.done &= part.done;
        sum.source_objects += part.source_objects;
        sum.list_requests += part.list_requests;
        sum.invocations += part.invocations;
        sum.parts_copied += part.parts_copied;
        // The chains run at once: the run takes as long as its longest.
        sum.duration_ms = sum.duration_ms.max(part.duration_ms);
        for (target, counts) in &part.targets {
            sum.targets.entry(target.clone()).or_default().add(counts);
        }
        for example in &part.examples {
            if sum.examples.len() < 20 {
                sum.examples.push(example.clone());
            }
        }
        if sum.stopped.is_none() {
            sum.stopped = part.stopped.as_ref().map(|stop| Stop {
                reason: stop.reason,
                detail: format!("chain {id}: {}", stop.detail),
            });
        }
        sum.chains.push(ChainReport {
            run_id: id.clone(),
            reported: true,
            done: part.done,
            stopped: part.stopped.clone(),
        });
    }
    sum
}

impl TargetCounts {
    /// Adds another chain's counts.
    pub fn add(&mut self, other: &TargetCounts) {
        let TargetCounts {
            listed,
            copied,
            up_to_date,
            deleted,
            skipped,
            failed,
            bytes,
            missing,
            different,
            extraneous,
            unverifiable,
            awaiting_restore,
            drift_found,
            drift_repaired,
        } = other;
        self.listed += listed;
        self.copied += copied;
        self.up_to_date += up_to_date;
        self.deleted += deleted;
        self.skipped += skipped;
        self.failed += failed;
        self.bytes += bytes;
        self.missing += missing;
        self.different += different;
        self.extraneous += extraneous;
        self.unverifiable += unverifiable;
        self.awaiting_restore += awaiting_restore;
        self.drift_found += drift_found;
        self.drift_repaired += drift_repaired;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chains: Option<u32>, split_at: &[&str]) -> BackfillRequest {
        BackfillRequest {
            chains,
            split_at: split_at.iter().map(|k| k.to_string()).collect(),
            auto_continue: true,
            summary_to: Some("s3://ops-bucket/backfills".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_split_names_what_it_lacks_or_exceeds() {
        assert!(check(&split(Some(4), &[])).is_ok());
        assert!(is_split(&split(Some(4), &[])) && is_split(&split(None, &["m"])));
        assert!(!is_split(&split(Some(1), &[])) && !is_split(&BackfillRequest::default()));
        let err = |r: BackfillRequest| check(&r).unwrap_err().to_string();
        assert!(err(split(Some(0), &[])).contains("chains 0"));
        assert!(err(split(Some(65), &[])).contains("chains 65: at most 64"));
        assert!(err(split(Some(2), &["m"])).contains("chains and split_at"));
        assert!(err(split(None, &["m", "a"])).contains("\"m\""));
        let mut request = split(Some(4), &[]);
        request.auto_continue = false;
        assert!(err(request).contains("auto_continue"));
        let mut request = split(Some(4), &[]);
        request.summary_to = None;
        assert!(err(request).contains("summary_to"));
        let long = "r".repeat(63);
        let e = chain_ids(&long, 2).unwrap_err().to_string();
        assert!(e.contains(&format!("{long}.0")), "{e}");
    }

    #[test]
    fn chains_cover_their_ranges_and_name_their_run() {
        let request = split(Some(3), &[]);
        let ranges = between(&["b/".to_string(), "d/".to_string()]).unwrap();
        let chains = chain_requests(&request, "nightly", &ranges).unwrap();
        assert_eq!(chains.len(), 3);
        for (n, chain) in chains.iter().enumerate() {
            assert_eq!(
                chain.run_id.as_deref(),
                Some(format!("nightly.{n}").as_str())
            );
            assert_eq!(chain.range.as_ref(), Some(&ranges[n]));
            assert_eq!(
                chain.part_of.as_ref().map(|p| (p.chain, p.chains)),
                Some((n as u32, 3))
            );
            assert!(!is_split(chain) && chain.auto_continue);
        }
    }

    #[test]
    fn the_run_sums_its_chains_and_is_done_when_all_are() {
        let part = |copied, done| {
            let mut s = Summary {
                done,
                source_objects: copied,
                duration_ms: 10 * copied,
                ..Summary::default()
            };
            s.targets.entry("t".into()).or_default().copied = copied;
            s
        };
        let parts = vec![
            ("r.0".to_string(), Some(part(3, true))),
            ("r.1".to_string(), Some(part(5, true))),
        ];
        let sum = sum_of("r", &Summary::default(), &parts);
        assert!(sum.done);
        assert_eq!((sum.source_objects, sum.targets["t"].copied), (8, 8));
        assert_eq!(sum.duration_ms, 50);
        let waiting = vec![parts[0].clone(), ("r.1".to_string(), None)];
        let sum = sum_of("r", &Summary::default(), &waiting);
        assert!(!sum.done && !sum.chains[1].reported);
        let unfinished = vec![parts[0].clone(), ("r.1".to_string(), Some(part(1, false)))];
        assert!(!sum_of("r", &Summary::default(), &unfinished).done);
    }
}
