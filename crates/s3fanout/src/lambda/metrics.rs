//! Per-target metrics as CloudWatch Embedded Metric Format log lines, which Lambda turns into
//! metrics without any API call: `ReplicatedObjects`, `FailedCopies` and `DeferredCopies` (work
//! the invocation's deadline stopped, delivered again: not a failure), by `TargetBucket` and in
//! aggregate (no dimension).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::core::outcome::{ChangeReport, FailureKind, Outcome};

/// Namespace of the metrics.
pub const NAMESPACE: &str = "S3Fanout";

/// Writes one EMF line per target with the counts of these reports.
pub fn emit(reports: &[ChangeReport]) {
    for line in lines(reports) {
        println!("{line}");
    }
}

fn lines(reports: &[ChangeReport]) -> Vec<String> {
    let mut counts: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for target in reports.iter().flat_map(|r| r.targets.iter()) {
        let entry = counts.entry(target.bucket.as_str()).or_default();
        match &target.outcome {
            Outcome::Copied | Outcome::Deleted => entry.0 += 1,
            Outcome::Failed(f) if f.kind == FailureKind::Deferred => entry.2 += 1,
            Outcome::Failed(_) => entry.1 += 1,
            _ => {}
        }
    }
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    counts
        .into_iter()
        .map(|(bucket, (replicated, failed, deferred))| {
            json!({
                "_aws": {
                    "Timestamp": timestamp,
                    "CloudWatchMetrics": [{
                        "Namespace": NAMESPACE,
                        "Dimensions": [["TargetBucket"], []],
                        "Metrics": [
                            {"Name": "ReplicatedObjects", "Unit": "Count"},
                            {"Name": "FailedCopies", "Unit": "Count"},
                            {"Name": "DeferredCopies", "Unit": "Count"}
                        ]
                    }]
                },
                "TargetBucket": bucket,
                "ReplicatedObjects": replicated,
                "FailedCopies": failed,
                "DeferredCopies": deferred,
            })
            .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::change::Change;
    use crate::core::outcome::{Failure, TargetReport};
    use std::time::Duration;

    #[test]
    fn counts_per_target() {
        let change = Change::created("src", "k");
        let target = |bucket: &str, outcome| TargetReport {
            bucket: bucket.into(),
            key: "k".into(),
            outcome,
            duration: Duration::ZERO,
        };
        let failed = Outcome::Failed(Failure::new(FailureKind::Retryable, "x"));
        let deferred = Outcome::Failed(Failure::new(FailureKind::Deferred, "later"));
        let reports = vec![ChangeReport {
            change,
            targets: vec![
                target("a", Outcome::Copied),
                target("b", failed),
                target("a", Outcome::UpToDate),
                target("b", deferred),
            ],
        }];
        let lines: Vec<serde_json::Value> = lines(&reports)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
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
        assert_eq!(lines[0]["DeferredCopies"].as_u64(), Some(0));
        assert_eq!(
            lines[1]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            NAMESPACE
        );
    }
}
