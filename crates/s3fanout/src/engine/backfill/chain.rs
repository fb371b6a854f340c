//! Self-continuing runs as chains of invocations that cannot run forever or twice.
//!
//! Every invocation of a self-continuing run carries the run's id and its hop number (0 for the
//! first). Before any work it claims its hop in the run's marker object, a small JSON document
//! in the first target under [`RESERVED_PREFIX`], with a conditional write: the first hop
//! creates the marker (`If-None-Match: *`), every later hop replaces exactly the marker its
//! predecessor wrote (`If-Match`). Of two chains of one run (a duplicated asynchronous event, a
//! start sent twice) only one can claim each hop; the other stops and says so. Lambda retries a
//! failed asynchronous invocation under the same request id, so a retry recognises its own
//! claim and goes on. Deleting the marker cancels the run at its next hop.

use serde::{Deserialize, Serialize};

use super::range::KeyRange;
use super::{BackfillError, BackfillRequest, Stop, StopReason};
use crate::core::config::Config;
use crate::core::outcome::Failure;
use crate::store::{ObjectAt, Store, WriteCondition};

/// Self-continuations a run may make unless its request says otherwise: at 15 minutes an
/// invocation, about ten days.
pub const DEFAULT_MAX_HOPS: u32 = 1000;

/// Keys under this prefix hold run state; backfill and verify neither copy nor compare them.
pub const RESERVED_PREFIX: &str = ".s3fanout/";

/// Where markers live, under [`RESERVED_PREFIX`].
const RUNS_PREFIX: &str = ".s3fanout/runs/";

/// Longest run id: it becomes part of object keys.
const MAX_RUN_ID: usize = 64;

/// Whether a key is reserved for run state.
pub fn is_reserved(key: &str) -> bool {
    key.starts_with(RESERVED_PREFIX)
}

/// A hop of a run, as a continuation carries it to the next invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// The run.
    pub run_id: String,
    /// The hop the next invocation claims.
    pub hop: u32,
    /// ETag of the marker as the previous hop wrote it: the next claim must replace exactly it.
    pub marker_etag: String,
}

/// What the marker object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    run_id: String,
    hop: u32,
    /// The invocation (Lambda request id) that claimed the hop.
    holder: String,
    /// A split run's ranges, as its first invocation chose them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ranges: Vec<KeyRange>,
}

/// A bucket and key prefix, from `s3://bucket/prefix/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryLocation {
    /// Bucket.
    pub bucket: String,
    /// Key prefix, empty or ending with `/`.
    pub prefix: String,
}

impl SummaryLocation {
    /// Parses `s3://bucket/prefix/` (the prefix may be left out; a missing final `/` is added).
    pub fn parse(text: &str) -> Result<Self, BackfillError> {
        let bad = |why: &str| BackfillError(format!("summary_to {text:?}: {why}"));
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| bad("expected s3://bucket/prefix/"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
        if !(3..=63).contains(&bucket.len()) || !bucket.chars().all(valid) {
            return Err(bad(&format!("{bucket:?} is not a bucket name")));
        }
        let mut prefix = prefix.to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(SummaryLocation {
            bucket: bucket.to_string(),
            prefix,
        })
    }

    /// The summary's key for a run.
    pub fn key(&self, run_id: &str) -> String {
        format!("{}{run_id}.json", self.prefix)
    }

    /// The summary's address for a run, as `s3://bucket/key`.
    pub fn url(&self, run_id: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(run_id))
    }
}

/// What one backfill invocation does about its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The run's id.
    pub run_id: String,
    /// This invocation's hop (0 for the first).
    pub hop: u32,
    /// The marker ETag the claim replaces; `None` for a run's first claim.
    pub previous: Option<String>,
    /// Most self-continuations.
    pub max_hops: u32,
    /// Where the summary goes.
    pub summary_to: Option<SummaryLocation>,
}

impl Plan {
    /// Reads the run's id, hop and limits from a request, checking each; `invocation_id` (the
    /// Lambda request id) names a run that names none.
    pub fn new(request: &BackfillRequest, invocation_id: &str) -> Result<Plan, BackfillError> {
        let carried = request.continuation.as_ref().and_then(|c| c.run.as_ref());
        let run_id = match (carried, &request.run_id) {
            (Some(hop), Some(named)) if hop.run_id != *named => {
                return Err(BackfillError(format!(
                    "run_id {named:?} differs from the continuation's run {:?}",
                    hop.run_id
                )))
            }
            (Some(hop), _) => hop.run_id.clone(),
            (None, Some(named)) => named.clone(),
            (None, None) => invocation_id.to_string(),
        };
        check_run_id(&run_id)?;
        let max_hops = request.max_hops.unwrap_or(DEFAULT_MAX_HOPS);
        if max_hops == 0 {
            return Err(BackfillError(
                "max_hops 0: must be at least 1 (the number of self-continuations allowed)".into(),
            ));
        }
        let summary_to = request
            .summary_to
            .as_deref()
            .map(SummaryLocation::parse)
            .transpose()?;
        Ok(Plan {
            run_id,
            hop: carried.map_or(0, |h| h.hop),
            previous: carried.map(|h| h.marker_etag.clone()),
            max_hops,
            summary_to,
        })
    }

    /// The marker's key.
    pub fn marker_key(&self) -> String {
        format!("{RUNS_PREFIX}{}", self.run_id)
    }
}

/// Where a run's marker (key `key`, see [`Plan::marker_key`]) lives: in the first configured
/// target, under the reserved prefix at the bucket's root, which a backfill lists only when
/// the target has no key prefix, and skips then.
pub fn marker_at<'a>(config: &'a Config, key: &'a str) -> Option<ObjectAt<'a>> {
    config.targets.first().map(|t| ObjectAt {
        bucket: &t.bucket,
        region: Some(&t.region),
        key,
    })
}

pub(crate) fn check_run_id(id: &str) -> Result<(), BackfillError> {
    // ':' for run ids made of a time, as the template's schedule makes them.
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if id.is_empty() || id.len() > MAX_RUN_ID || !id.chars().all(valid) {
        return Err(BackfillError(format!(
            "run_id {id:?}: use 1 to {MAX_RUN_ID} letters, digits, '.', '_', '-' or ':'"
        )));
    }
    Ok(())
}

/// Whether this invocation holds its hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// It does: the marker now has this ETag, which the next hop must replace.
    Held {
        /// The marker's ETag.
        etag: String,
    },
    /// It does not, and must stop.
    Refused(Stop),
}

/// Claims `plan`'s hop for invocation `holder` in the marker at `at`.
pub async fn claim<S: Store>(
    store: &S,
    at: ObjectAt<'_>,
    plan: &Plan,
    holder: &str,
) -> Result<Claim, Failure> {
    let mine = Marker {
        run_id: plan.run_id.clone(),
        hop: plan.hop,
        holder: holder.to_string(),
        ranges: Vec::new(),
    };
    let body = serde_json::to_vec(&mine).expect("marker serialises");
    let condition = match &plan.previous {
        None => WriteCondition::Absent,
        Some(etag) => WriteCondition::Matches(etag.clone()),
    };
    let failure = match store.put_small_object(at, &body, &condition).await {
        Ok(etag) => return Ok(Claim::Held { etag }),
        Err(f) if f.is_precondition_failed() || f.is_missing_object() => f,
        Err(f) => return Err(f),
    };
    // The marker is not what this hop expected: a retry of this very invocation may have
    // claimed it already (its answer was lost), or another chain did.
    let (found, etag, place) = match found_marker(store, at, &failure).await? {
        Ok(found) => found,
        Err(cancelled) => return Ok(Claim::Refused(cancelled)),
    };
    if found == mine {
        return Ok(Claim::Held { etag });
    }
    Ok(Claim::Refused(Stop {
        reason: StopReason::Superseded,
        detail: format!(
            "hop {} of run {} is not this chain's: {place} names hop {} of invocation {}",
            plan.hop, plan.run_id, found.hop, found.holder
        ),
    }))
}

/// The marker a claim refused with `failure` found, its ETag and its address; or, when the
/// marker is gone, the stop of a cancelled run.
async fn found_marker<S: Store>(
    store: &S,
    at: ObjectAt<'_>,
    failure: &Failure,
) -> Result<Result<(Marker, String, String), Stop>, Failure> {
    let place = format!("s3://{}/{}", at.bucket, at.key);
    let Some(current) = store.get_small_object(at).await? else {
        return Ok(Err(Stop {
            reason: StopReason::Cancelled,
            detail: format!("the run's marker {place} was deleted: the run is cancelled"),
        }));
    };
    let found: Marker = serde_json::from_slice(&current.body).map_err(|e| {
        Failure::permanent(format!(
            "{place} is not a run marker ({e}); it answered {}",
            failure.message
        ))
    })?;
    Ok(Ok((found, current.etag, place)))
}

/// Whether this invocation may start a split run's chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitClaim {
    /// It may, over these ranges: its own, or those an earlier attempt of this very
    /// invocation recorded (a listing read again may split differently, and chains of two
    /// splits could leave a gap between them).
    Held(Vec<KeyRange>),
    /// It may not: the run was split already, by another invocation.
    Refused(Stop),
}

/// Claims a split run (hop 0 of `plan`) for `holder`, recording `ranges` in the run's
/// marker at `at`, create-only.
pub async fn claim_split<S: Store>(
    store: &S,
    at: ObjectAt<'_>,
    plan: &Plan,
    holder: &str,
    ranges: Vec<KeyRange>,
) -> Result<SplitClaim, Failure> {
    let mine = Marker {
        run_id: plan.run_id.clone(),
        hop: 0,
        holder: holder.to_string(),
        ranges,
    };
    let body = serde_json::to_vec(&mine).expect("marker serialises");
    let failure = match store
        .put_small_object(at, &body, &WriteCondition::Absent)
        .await
    {
        Ok(_) => return Ok(SplitClaim::Held(mine.ranges)),
        Err(f) if f.is_precondition_failed() => f,
        Err(f) => return Err(f),
    };
    let (found, _, place) = match found_marker(store, at, &failure).await? {
        Ok(found) => found,
        Err(cancelled) => return Ok(SplitClaim::Refused(cancelled)),
    };
    if found.holder == mine.holder && found.hop == 0 && !found.ranges.is_empty() {
        return Ok(SplitClaim::Held(found.ranges));
    }
    Ok(SplitClaim::Refused(Stop {
        reason: StopReason::Superseded,
        detail: format!(
            "run {} was started already: {place} names hop {} of invocation {}",
            plan.run_id, found.hop, found.holder
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_locations_parse_or_name_the_value() {
        let at = SummaryLocation::parse("s3://ops-bucket/backfills").unwrap();
        assert_eq!(at.key("r1"), "backfills/r1.json");
        assert_eq!(at.url("r1"), "s3://ops-bucket/backfills/r1.json");
        assert_eq!(
            SummaryLocation::parse("s3://ops-bucket").unwrap().key("r"),
            "r.json"
        );
        for bad in ["ops-bucket/x", "s3://", "s3://Ops_Bucket/x", "https://b/x"] {
            let err = SummaryLocation::parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn plans_check_run_ids_and_hop_limits() {
        let request = BackfillRequest {
            run_id: Some("a/b".into()),
            ..Default::default()
        };
        let err = Plan::new(&request, "req").unwrap_err().to_string();
        assert!(err.contains("\"a/b\""), "{err}");
        let request = BackfillRequest {
            max_hops: Some(0),
            ..Default::default()
        };
        assert!(Plan::new(&request, "req")
            .unwrap_err()
            .to_string()
            .contains("max_hops 0"));
        let plan = Plan::new(&BackfillRequest::default(), "req-1").unwrap();
        assert_eq!((plan.run_id.as_str(), plan.hop), ("req-1", 0));
        assert_eq!(plan.max_hops, DEFAULT_MAX_HOPS);
        assert_eq!(plan.marker_key(), ".s3fanout/runs/req-1");
        assert!(is_reserved(&plan.marker_key()));
    }
}
