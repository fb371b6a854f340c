//! Per-target metrics as CloudWatch Embedded Metric Format log lines, which Lambda turns into
//! metrics without any API call, by `TargetBucket` and in aggregate (no dimension):
//!
//! - `ReplicatedObjects`: replicas written or deleted;
//! - `FailedCopies`: failures (the change is delivered again);
//! - `DeferredCopies`: work the invocation's deadline stopped, delivered again: not a failure;
//! - `ReplicationLatency` (ms): from the event's time to the replica written or deleted, one
//!   value per object, so that CloudWatch computes percentiles over objects;
//! - `BytesReplicated`: bytes of source content copied;
//! - `AwaitingRestore`: objects not copied because they are archived (GLACIER, DEEP_ARCHIVE,
//!   an Intelligent-Tiering archive tier) until restored; the restore's event copies them.
//! - `HeldCopies`: work not sent because the target was seen unavailable (its breaker is
//!   open); it waits in the retry queue for that target.
//!
//! And, from an invocation that posted work to the retry queue or found a target held:
//!
//! - `TargetDown`: 1 while the target's breaker holds its work, else 0 (Maximum: down or not);
//! - `WaitingChanges`: changes posted to wait for the target. While it is down, each waiting
//!   change comes back every five minutes, so the sum over five minutes is how many wait;
//! - `OldestWaitingSeconds`: how long the oldest of them has waited (Maximum).
//!
//! The backfill function writes three more once per run, when the run ends (its last
//! invocation), from the run's summary ([`drift_lines`]):
//!
//! - `DriftFound`: objects a target had drifted by (missing, different, extraneous when the
//!   run deletes), the summary's `drift_found`;
//! - `DriftRepaired`: of those, repaired by the run (`drift_repaired`);
//! - `BackfillFailed`: objects the run could not check or repair (`failed`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::core::outcome::{ChangeReport, FailureKind, Outcome};
use crate::engine::backfill::Summary;

/// Namespace of the metrics.
pub const NAMESPACE: &str = "S3Fanout";

/// Values one EMF metric may carry in one line (CloudWatch's limit); more are split over lines.
const MAX_VALUES: usize = 100;

/// Writes the EMF lines of these reports: one per target, more when a target has many
/// latencies.
pub fn emit(reports: &[ChangeReport]) {
    for line in lines(reports, now_ms()) {
        write(line);
    }
}

/// Writes the EMF lines of a finished backfill run: one per target ([`drift_lines`]).
pub fn emit_drift(summary: &Summary) {
    for line in drift_lines(summary, now_ms()) {
        write(line);
    }
}

/// The EMF lines of a finished run, one per target: `DriftFound`, `DriftRepaired` and
/// `BackfillFailed` with the summary's `drift_found`, `drift_repaired` and `failed`.
pub fn drift_lines(summary: &Summary, timestamp: u64) -> Vec<String> {
    let metrics = || {
        vec![
            json!({"Name": "DriftFound", "Unit": "Count"}),
            json!({"Name": "DriftRepaired", "Unit": "Count"}),
            json!({"Name": "BackfillFailed", "Unit": "Count"}),
        ]
    };
    summary
        .targets
        .iter()
        .map(|(bucket, counts)| {
            let values = json!({
                "TargetBucket": bucket,
                "DriftFound": counts.drift_found,
                "DriftRepaired": counts.drift_repaired,
                "BackfillFailed": counts.failed,
            });
            document(timestamp, metrics(), values)
        })
        .collect()
}

thread_local! {
    static CAPTURED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// From now on, this thread's metric lines are kept for [`take_captured`] instead of being
/// written to standard output: for tests that check what an invocation emits.
pub fn capture() {
    CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
}

/// The lines kept since [`capture`] (or the last call), parsed; capturing goes on.
pub fn take_captured() -> Vec<Value> {
    CAPTURED.with(|c| {
        c.borrow_mut()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
            .iter()
            .map(|line| serde_json::from_str(line).expect("EMF lines are JSON"))
            .collect()
    })
}

fn write(line: String) {
    let line = CAPTURED.with(|c| match c.borrow_mut().as_mut() {
        Some(kept) => {
            kept.push(line);
            None
        }
        None => Some(line),
    });
    if let Some(line) = line {
        println!("{line}");
    }
}

#[derive(Default)]
struct Tally {
    replicated: u64,
    failed: u64,
    deferred: u64,
    refused: u64,
    awaiting_restore: u64,
    held: u64,
    bytes: u64,
    latencies: Vec<u64>,
}

fn lines(reports: &[ChangeReport], timestamp: u64) -> Vec<String> {
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for report in reports {
        for target in &report.targets {
            let tally = tallies.entry(target.bucket.as_str()).or_default();
            match &target.outcome {
                Outcome::Copied | Outcome::Deleted => {
                    tally.replicated += 1;
                    tally.bytes += target.bytes;
                    if let Some(event) = report.change.event_time {
                        // A source clock ahead of ours would make it negative: it is zero.
                        tally
                            .latencies
                            .push(epoch_ms(target.finished).saturating_sub(event));
                    }
                }
                Outcome::Failed(f) if f.kind == FailureKind::Deferred => tally.deferred += 1,
                Outcome::Failed(f) if f.kind == FailureKind::Held => tally.held += 1,
                Outcome::Failed(_) => tally.failed += 1,
                // Not copied because the object is a replica of another configured source.
                Outcome::IsReplica => tally.refused += 1,
                Outcome::AwaitingRestore => tally.awaiting_restore += 1,
                _ => {}
            }
        }
    }
    let mut lines = Vec::new();
    for (bucket, tally) in tallies {
        let mut chunks = tally.latencies.chunks(MAX_VALUES);
        let mut metrics = vec![
            json!({"Name": "ReplicatedObjects", "Unit": "Count"}),
            json!({"Name": "FailedCopies", "Unit": "Count"}),
            json!({"Name": "DeferredCopies", "Unit": "Count"}),
            json!({"Name": "RefusedLoops", "Unit": "Count"}),
            json!({"Name": "AwaitingRestore", "Unit": "Count"}),
            json!({"Name": "HeldCopies", "Unit": "Count"}),
            json!({"Name": "BytesReplicated", "Unit": "Bytes"}),
        ];
        let mut first = json!({
            "TargetBucket": bucket,
            "ReplicatedObjects": tally.replicated,
            "FailedCopies": tally.failed,
            "DeferredCopies": tally.deferred,
            "RefusedLoops": tally.refused,
            "AwaitingRestore": tally.awaiting_restore,
            "HeldCopies": tally.held,
            "BytesReplicated": tally.bytes,
        });
        if let Some(chunk) = chunks.next() {
            metrics.push(latency_metric());
            first["ReplicationLatency"] = json!(chunk);
        }
        lines.push(document(timestamp, metrics, first));
        for chunk in chunks {
            let values = json!({"TargetBucket": bucket, "ReplicationLatency": chunk});
            lines.push(document(timestamp, vec![latency_metric()], values));
        }
    }
    lines
}

/// What waits for one target after an invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waiting {
    /// The target's breaker holds its work.
    pub down: bool,
    /// Changes posted to wait for it.
    pub changes: u64,
    /// How long the oldest of them has waited (ms).
    pub oldest_ms: u64,
}

/// Writes the EMF lines of what waits for each target, when anything does or a target is held.
pub fn emit_waiting(waiting: &BTreeMap<&str, Waiting>) {
    for line in waiting_lines(waiting, now_ms()) {
        println!("{line}");
    }
}

fn waiting_lines(waiting: &BTreeMap<&str, Waiting>, timestamp: u64) -> Vec<String> {
    if waiting.values().all(|w| !w.down && w.changes == 0) {
        return Vec::new();
    }
    let metrics = vec![
        json!({"Name": "TargetDown", "Unit": "Count"}),
        json!({"Name": "WaitingChanges", "Unit": "Count"}),
        json!({"Name": "OldestWaitingSeconds", "Unit": "Seconds"}),
    ];
    waiting
        .iter()
        .map(|(bucket, w)| {
            let values = json!({
                "TargetBucket": bucket,
                "TargetDown": u8::from(w.down),
                "WaitingChanges": w.changes,
                "OldestWaitingSeconds": w.oldest_ms / 1000,
            });
            document(timestamp, metrics.clone(), values)
        })
        .collect()
}

fn latency_metric() -> Value {
    json!({"Name": "ReplicationLatency", "Unit": "Milliseconds"})
}

/// One EMF document: the metric declarations, then the dimension and the values.
fn document(timestamp: u64, metrics: Vec<Value>, mut values: Value) -> String {
    values["_aws"] = json!({
        "Timestamp": timestamp,
        "CloudWatchMetrics": [{
            "Namespace": NAMESPACE,
            "Dimensions": [["TargetBucket"], []],
            "Metrics": metrics,
        }]
    });
    values.to_string()
}

/// Now, in ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    epoch_ms(SystemTime::now())
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::change::Change;
    use crate::core::outcome::{Failure, TargetReport};
    use std::time::Duration;

    const EVENT: u64 = 1_767_225_600_000;

    fn target(bucket: &str, outcome: Outcome, bytes: u64, after_ms: u64) -> TargetReport {
        TargetReport {
            bucket: bucket.into(),
            key: "k".into(),
            outcome,
            duration: Duration::ZERO,
            bytes,
            finished: UNIX_EPOCH + Duration::from_millis(EVENT + after_ms),
        }
    }

    fn parse(lines: &[String]) -> Vec<Value> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn what_waits_is_reported_per_target_only_when_something_does() {
        let mut waiting = BTreeMap::new();
        waiting.insert("a", Waiting::default());
        waiting.insert("b", Waiting::default());
        assert!(waiting_lines(&waiting, 7).is_empty());
        waiting.insert(
            "b",
            Waiting {
                down: true,
                changes: 12,
                oldest_ms: 90_500,
            },
        );
        let lines = parse(&waiting_lines(&waiting, 7));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["TargetDown"], 0);
        assert_eq!(lines[1]["TargetBucket"], "b");
        assert_eq!(lines[1]["TargetDown"], 1);
        assert_eq!(lines[1]["WaitingChanges"], 12);
        assert_eq!(lines[1]["OldestWaitingSeconds"], 90);
    }

    #[test]
    fn counts_per_target() {
        let change = Change::created("src", "k");
        let failed = Outcome::Failed(Failure::new(FailureKind::Retryable, "x"));
        let deferred = Outcome::Failed(Failure::new(FailureKind::Deferred, "later"));
        let reports = vec![ChangeReport {
            change,
            targets: vec![
                target("a", Outcome::Copied, 0, 0),
                target("b", failed, 0, 0),
                target("a", Outcome::UpToDate, 0, 0),
                target("b", deferred, 0, 0),
                target("b", Outcome::IsReplica, 0, 0),
            ],
        }];
        let lines = parse(&lines(&reports, 7));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["TargetBucket"], "a");
        assert_eq!(
            (
                lines[0]["ReplicatedObjects"].as_u64(),
                lines[0]["FailedCopies"].as_u64()
            ),
            (Some(1), Some(0))
        );
        assert_eq!(
            (
                lines[1]["ReplicatedObjects"].as_u64(),
                lines[1]["FailedCopies"].as_u64()
            ),
            (Some(0), Some(1))
        );
        assert_eq!(lines[1]["DeferredCopies"].as_u64(), Some(1));
        assert_eq!(lines[1]["RefusedLoops"].as_u64(), Some(1));
        assert_eq!(lines[0]["RefusedLoops"].as_u64(), Some(0));
        assert_eq!(lines[0]["DeferredCopies"].as_u64(), Some(0));
        let declared = &lines[1]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], NAMESPACE);
        assert_eq!(lines[1]["_aws"]["Timestamp"], 7);
        // No event time: no latency, and no empty array declared.
        assert!(lines[0].get("ReplicationLatency").is_none());
        assert!(!declared["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Name"] == "ReplicationLatency"));
    }

    #[test]
    fn latency_per_object_and_bytes_per_target() {
        let mut timed = Change::created("src", "k");
        timed.event_time = Some(EVENT);
        let untimed = Change::created("src", "other");
        let reports = vec![
            ChangeReport {
                change: timed.clone(),
                targets: vec![
                    target("a", Outcome::Copied, 1000, 250),
                    target("b", Outcome::Copied, 1000, 900),
                ],
            },
            ChangeReport {
                change: timed,
                targets: vec![
                    target("a", Outcome::UpToDate, 0, 40),
                    // Finished "before" the event: clocks disagree; never negative.
                    TargetReport {
                        finished: UNIX_EPOCH + Duration::from_millis(EVENT - 5),
                        ..target("b", Outcome::Deleted, 0, 0)
                    },
                ],
            },
            ChangeReport {
                change: untimed,
                targets: vec![
                    target("a", Outcome::Copied, 24, 10),
                    target("b", Outcome::Copied, 24, 10),
                ],
            },
        ];
        let lines = parse(&lines(&reports, 7));
        assert_eq!(lines.len(), 2);
        let (a, b) = (&lines[0], &lines[1]);
        assert_eq!(a["ReplicationLatency"], json!([250]));
        assert_eq!(b["ReplicationLatency"], json!([900, 0]));
        assert_eq!(a["BytesReplicated"].as_u64(), Some(1024));
        assert_eq!(b["BytesReplicated"].as_u64(), Some(1024));
        let metrics = &a["_aws"]["CloudWatchMetrics"][0]["Metrics"];
        assert!(metrics
            .as_array()
            .unwrap()
            .contains(&json!({"Name": "ReplicationLatency", "Unit": "Milliseconds"})));
        assert!(metrics
            .as_array()
            .unwrap()
            .contains(&json!({"Name": "BytesReplicated", "Unit": "Bytes"})));
        assert_eq!(
            a["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["TargetBucket"], []])
        );
    }

    #[test]
    fn drift_per_target_from_the_summary() {
        use crate::engine::backfill::TargetCounts;
        let mut summary = Summary::default();
        summary.targets.insert(
            "a".into(),
            TargetCounts {
                drift_found: 3,
                drift_repaired: 2,
                failed: 1,
                ..TargetCounts::default()
            },
        );
        summary.targets.insert("b".into(), TargetCounts::default());
        let lines: Vec<Value> = drift_lines(&summary, 9)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let figures = |l: &Value| {
            (
                l["TargetBucket"].clone(),
                l["DriftFound"].as_u64(),
                l["DriftRepaired"].as_u64(),
                l["BackfillFailed"].as_u64(),
            )
        };
        assert_eq!(figures(&lines[0]), (json!("a"), Some(3), Some(2), Some(1)));
        assert_eq!(figures(&lines[1]), (json!("b"), Some(0), Some(0), Some(0)));
        let declared = &lines[0]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], NAMESPACE);
        assert_eq!(declared["Dimensions"], json!([["TargetBucket"], []]));
        assert_eq!(lines[0]["_aws"]["Timestamp"], 9);
    }

    #[test]
    fn many_latencies_are_split_over_lines_within_the_emf_limit() {
        let mut change = Change::created("src", "k");
        change.event_time = Some(EVENT);
        let reports: Vec<ChangeReport> = (0..250)
            .map(|i| ChangeReport {
                change: change.clone(),
                targets: vec![target("a", Outcome::Copied, 1, i)],
            })
            .collect();
        let lines = parse(&lines(&reports, 7));
        let sizes: Vec<usize> = lines
            .iter()
            .map(|l| l["ReplicationLatency"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        // Counts are in the first line only, so that they are not counted three times.
        assert_eq!(lines[0]["ReplicatedObjects"].as_u64(), Some(250));
        assert!(lines[1].get("ReplicatedObjects").is_none());
        assert_eq!(
            lines[2]["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "ReplicationLatency", "Unit": "Milliseconds"}])
        );
        let all: Vec<u64> = lines
            .iter()
            .flat_map(|l| l["ReplicationLatency"].as_array().unwrap().clone())
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(all, (0..250).collect::<Vec<u64>>());
    }
}
