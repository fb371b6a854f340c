//! The canary's metrics as CloudWatch Embedded Metric Format lines, namespace `S3Fanout`, by
//! `TargetBucket`, by `TargetRegion` and in aggregate (no dimension, so that one alarm on the
//! maximum covers every target):
//!
//! - `ReplicationLag` (ms): from the canary's write to the replica having it (a lower bound
//!   when it did not arrive within the round);
//! - `CanaryStale`: 1 when that lag reached the stale threshold, else 0;
//! - `CanaryReadFailed`: 1 when the previous canary could not be read back from the replica
//!   with the bytes written, else 0 (absent when there was no previous canary).

use serde_json::json;

use crate::Round;

/// Namespace of the metrics (the replicate function's too).
pub const NAMESPACE: &str = "S3Fanout";

/// One EMF line per target.
pub fn lines(round: &Round, timestamp_ms: u64) -> Vec<String> {
    round
        .targets
        .iter()
        .map(|target| {
            let mut metrics = vec![
                json!({"Name": "ReplicationLag", "Unit": "Milliseconds"}),
                json!({"Name": "CanaryStale", "Unit": "Count"}),
            ];
            let mut line = json!({
                "TargetBucket": target.bucket,
                "TargetRegion": target.region,
                "ReplicationLag": target.lag_ms,
                "CanaryStale": u8::from(target.stale),
            });
            if let Some(read) = &target.read_back {
                metrics.push(json!({"Name": "CanaryReadFailed", "Unit": "Count"}));
                line["CanaryReadFailed"] = u8::from(read.is_err()).into();
            }
            line["_aws"] = json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["TargetBucket"], ["TargetRegion"], []],
                    "Metrics": metrics,
                }]
            });
            line.to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TargetRound;
    use serde_json::Value;

    #[test]
    fn one_line_per_target_with_lag_stale_and_read_back() {
        let target = |bucket: &str, lag_ms, stale: bool, read_back| TargetRound {
            bucket: bucket.into(),
            region: "eu-west-1".into(),
            lag_ms,
            measured: !stale,
            stale,
            read_back,
        };
        let round = Round {
            key: "_s3fanout-canary/1".into(),
            written_ms: 1,
            targets: vec![
                target("a", 850, false, Some(Ok(()))),
                target("b", 960_000, true, Some(Err("404".into()))),
                target("c", 900, false, None),
            ],
            deleted: 0,
        };
        let lines: Vec<Value> = lines(&round, 42)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        let values = |l: &Value| {
            (
                l["ReplicationLag"].clone(),
                l["CanaryStale"].clone(),
                l["CanaryReadFailed"].clone(),
            )
        };
        assert_eq!(values(&lines[0]), (json!(850), json!(0), json!(0)));
        assert_eq!(values(&lines[1]), (json!(960_000), json!(1), json!(1)));
        assert!(lines[2].get("CanaryReadFailed").is_none());
        let declared = &lines[2]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Metrics"].as_array().unwrap().len(), 2);
        assert_eq!(declared["Namespace"], NAMESPACE);
        assert_eq!(
            declared["Dimensions"],
            json!([["TargetBucket"], ["TargetRegion"], []])
        );
        assert_eq!(lines[1]["TargetBucket"], "b");
        assert_eq!(lines[1]["_aws"]["Timestamp"], 42);
    }
}
