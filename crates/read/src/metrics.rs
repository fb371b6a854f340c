//! Failure gauges as CloudWatch Embedded Metric Format.
//!
//! Every interval each host writes, per replica region, `ReadRegionFailing` (1 when a replica in
//! that region is failing, else 0) with the dimension sets {Region, Host} and {Region}, and
//! `ReadAllRegionsFailed` (requests for which every replica failed since the last emission)
//! with {Host} and no dimension. Timestamps are aligned to the interval, so each host puts
//! exactly one value into each period: the {Region} series' Sum over a period is then the
//! number of hosts that see the region failing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

/// CloudWatch namespace of the read-path metrics.
pub const NAMESPACE: &str = "S3Fanout";
/// Gauge: 1 when the host sees the region failing.
pub const REGION_FAILING: &str = "ReadRegionFailing";
/// Counter: requests for which every replica failed.
pub const ALL_REGIONS_FAILED: &str = "ReadAllRegionsFailed";

/// Receives one EMF document (one JSON line, without the newline) at a time.
pub type MetricsSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The failure state of one reader at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gauges {
    /// Per replica region: whether a replica there is failing.
    pub regions: BTreeMap<String, bool>,
    /// Requests for which every replica failed, in the period being reported.
    pub all_failed: u64,
}

/// Renders the gauges of `host` as EMF lines, stamped `timestamp_ms`.
pub fn emf_lines(host: &str, timestamp_ms: u64, gauges: &Gauges) -> Vec<String> {
    let mut lines: Vec<String> = gauges
        .regions
        .iter()
        .map(|(region, failing)| {
            json!({
                "_aws": {
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": NAMESPACE,
                        "Dimensions": [["Region", "Host"], ["Region"]],
                        "Metrics": [{"Name": REGION_FAILING, "Unit": "Count"}],
                    }],
                },
                "Region": region,
                "Host": host,
                REGION_FAILING: u8::from(*failing),
            })
            .to_string()
        })
        .collect();
    lines.push(
        json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Host"], []],
                    "Metrics": [{"Name": ALL_REGIONS_FAILED, "Unit": "Count"}],
                }],
            },
            "Host": host,
            ALL_REGIONS_FAILED: gauges.all_failed,
        })
        .to_string(),
    );
    lines
}

/// Milliseconds since the Unix epoch, rounded down to a multiple of `interval`.
pub fn aligned_now_ms(interval: Duration) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let step = (interval.as_millis() as u64).max(1);
    now - now % step
}

/// Time until the next multiple of `interval` since the Unix epoch.
pub fn until_next_boundary(interval: Duration) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let step = (interval.as_millis() as u64).max(1);
    Duration::from_millis(step - now % step)
}

/// This machine's host name, for the `Host` dimension.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn gauges(failing: &[(&str, bool)], all_failed: u64) -> Gauges {
        Gauges {
            regions: failing.iter().map(|(r, f)| (r.to_string(), *f)).collect(),
            all_failed,
        }
    }

    fn parse(lines: &[String]) -> Vec<Value> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn region_values(docs: &[Value]) -> Vec<(String, u64)> {
        docs.iter()
            .filter(|d| d.get(REGION_FAILING).is_some())
            .map(|d| {
                (
                    d["Region"].as_str().unwrap().to_string(),
                    d[REGION_FAILING].as_u64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn one_region_failing() {
        let lines = emf_lines(
            "web-1",
            1_700_000_040_000,
            &gauges(
                &[
                    ("eu-west-1", true),
                    ("us-east-1", false),
                    ("us-west-2", false),
                ],
                0,
            ),
        );
        let docs = parse(&lines);
        assert_eq!(
            region_values(&docs),
            [
                ("eu-west-1".into(), 1),
                ("us-east-1".into(), 0),
                ("us-west-2".into(), 0)
            ]
        );
        let first = &docs[0];
        assert_eq!(first["Host"], "web-1");
        assert_eq!(first["_aws"]["Timestamp"], 1_700_000_040_000u64);
        let directive = &first["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "S3Fanout");
        assert_eq!(
            directive["Dimensions"],
            json!([["Region", "Host"], ["Region"]])
        );
        assert_eq!(directive["Metrics"][0]["Name"], "ReadRegionFailing");
        let counter = docs.last().unwrap();
        assert_eq!(counter[ALL_REGIONS_FAILED], 0);
        assert_eq!(
            counter["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Host"], []])
        );
    }

    #[test]
    fn several_regions_failing() {
        let docs = parse(&emf_lines(
            "web-2",
            0,
            &gauges(
                &[
                    ("eu-west-1", true),
                    ("us-east-1", false),
                    ("us-west-2", true),
                ],
                0,
            ),
        ));
        let failing: Vec<_> = region_values(&docs)
            .into_iter()
            .filter(|(_, v)| *v == 1)
            .collect();
        assert_eq!(failing, [("eu-west-1".into(), 1), ("us-west-2".into(), 1)]);
        assert_eq!(docs.last().unwrap()[ALL_REGIONS_FAILED], 0);
    }

    #[test]
    fn every_region_failing() {
        let docs = parse(&emf_lines(
            "web-3",
            0,
            &gauges(
                &[
                    ("eu-west-1", true),
                    ("us-east-1", true),
                    ("us-west-2", true),
                ],
                4,
            ),
        ));
        assert!(region_values(&docs).iter().all(|(_, v)| *v == 1));
        let counter = docs.last().unwrap();
        assert_eq!(counter[ALL_REGIONS_FAILED], 4);
        assert_eq!(counter["Host"], "web-3");
    }

    #[test]
    fn timestamps_align_to_the_interval() {
        let interval = Duration::from_secs(60);
        assert_eq!(aligned_now_ms(interval) % 60_000, 0);
        assert!(until_next_boundary(interval) <= interval);
        assert!(!host_name().is_empty());
    }
}
