//! The canary's settings, from the same environment as the replicate function plus `CANARY_*`.

use std::time::Duration;

use s3fanout_read::{parse_replicas, Replica};

/// A setting the canary cannot work with; the message names the variable and the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{name}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// What the canary writes, where it looks, and when a replica counts as stale.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryConfig {
    /// Bucket the canary objects are written to: the replicated source.
    pub source_bucket: String,
    /// Its region, when configured (`BUCKET@REGION`); otherwise the function's.
    pub source_region: Option<String>,
    /// Every replica, read one by one.
    pub replicas: Vec<Replica>,
    /// How long a round waits for the new canary to appear at every replica.
    pub wait: Duration,
    /// Time between two looks at a replica that does not have it yet.
    pub poll: Duration,
    /// A replica whose lag reaches this is stale (`CanaryStale` 1).
    pub stale_after: Duration,
    /// Canary objects kept in the source (the newest); older ones are deleted. They also bound
    /// how far back a stale replica's lag can be measured: `keep` rounds.
    pub keep: usize,
}

/// Settings read from the environment, with their defaults.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(40);
/// Default time between two looks at a replica.
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);
/// Default stale threshold: 15 minutes, what S3 Replication Time Control promises for 99.99%
/// of objects.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(15 * 60);
/// Default number of canary objects kept: at one a minute, a little more than the stale
/// threshold, so that a stale replica's lag is still measured when it crosses it.
pub const DEFAULT_KEEP: usize = 20;

impl CanaryConfig {
    /// Reads `CANARY_SOURCE` (default: the first of `SOURCE_BUCKETS`), `REPLICA_TARGETS`,
    /// `CANARY_WAIT_MS`, `CANARY_POLL_MS`, `CANARY_STALE_AFTER_MS` and `CANARY_KEEP`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let buckets = lookup("SOURCE_BUCKETS").unwrap_or_default();
        let sources = buckets
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(|entry| Source::parse("SOURCE_BUCKETS", entry))
            .collect::<Result<Vec<_>, _>>()?;
        let source = match lookup("CANARY_SOURCE").filter(|v| !v.trim().is_empty()) {
            Some(entry) => {
                let named = Source::parse("CANARY_SOURCE", entry.trim())?;
                // A source configured with a prefix of its own keeps its replicas under it.
                let configured = sources.iter().find(|s| s.bucket == named.bucket);
                Source {
                    region: named
                        .region
                        .or_else(|| configured.and_then(|s| s.region.clone())),
                    prefix: configured.map(|s| s.prefix.clone()).unwrap_or_default(),
                    ..named
                }
            }
            None => sources.into_iter().next().ok_or_else(|| ConfigError {
                name: "SOURCE_BUCKETS",
                value: buckets.clone(),
                reason: "names no bucket (or set CANARY_SOURCE)".into(),
            })?,
        };
        let targets = lookup("REPLICA_TARGETS").unwrap_or_default();
        let mut replicas = parse_replicas(&targets).map_err(|e| ConfigError {
            name: "REPLICA_TARGETS",
            value: targets.clone(),
            reason: e.to_string(),
        })?;
        for replica in &mut replicas {
            replica.prefix.push_str(&source.prefix);
        }
        let millis = |name: &'static str, default: Duration, min: u64| {
            let Some(value) = lookup(name) else {
                return Ok(default);
            };
            match value.trim().parse::<u64>() {
                Ok(ms) if ms >= min => Ok(Duration::from_millis(ms)),
                _ => Err(ConfigError {
                    name,
                    value,
                    reason: format!("expected a number of milliseconds, at least {min}"),
                }),
            }
        };
        let keep = match lookup("CANARY_KEEP") {
            None => DEFAULT_KEEP,
            Some(value) => match value.trim().parse::<usize>() {
                // The previous canary is read back: at least two are kept.
                Ok(n) if (2..=1000).contains(&n) => n,
                _ => {
                    return Err(ConfigError {
                        name: "CANARY_KEEP",
                        value,
                        reason: "expected a count from 2 to 1000".into(),
                    })
                }
            },
        };
        Ok(CanaryConfig {
            source_bucket: source.bucket,
            source_region: source.region,
            replicas,
            wait: millis("CANARY_WAIT_MS", DEFAULT_WAIT, 0)?,
            poll: millis("CANARY_POLL_MS", DEFAULT_POLL, 10)?,
            stale_after: millis("CANARY_STALE_AFTER_MS", DEFAULT_STALE_AFTER, 1)?,
            keep,
        })
    }

    /// From the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// One `SOURCE_BUCKETS` entry: `BUCKET[@REGION][?prefix=P]`.
struct Source {
    bucket: String,
    region: Option<String>,
    prefix: String,
}

impl Source {
    fn parse(name: &'static str, entry: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError {
            name,
            value: entry.to_string(),
            reason: reason.to_string(),
        };
        let (location, options) = entry.split_once('?').unwrap_or((entry, ""));
        let (bucket, region) = match location.split_once('@') {
            Some((bucket, region)) => (bucket, Some(region)),
            None => (location, None),
        };
        if bucket.is_empty() || region == Some("") {
            return Err(invalid("expected BUCKET or BUCKET@REGION"));
        }
        let mut prefix = String::new();
        for pair in options.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("prefix", value)) => {
                    prefix = percent_encoding::percent_decode_str(value)
                        .decode_utf8()
                        .map_err(|_| invalid("the prefix is not percent-encoded UTF-8"))?
                        .into_owned()
                }
                _ => return Err(invalid("unknown option (known: prefix)")),
            }
        }
        Ok(Source {
            bucket: bucket.to_string(),
            region: region.map(str::to_string),
            prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<CanaryConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CanaryConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn reads_the_replicate_functions_settings() {
        let c = config(&[
            ("SOURCE_BUCKETS", " photos@eu-west-1 ,videos"),
            (
                "REPLICA_TARGETS",
                "photos-usw2@us-west-2,photos-apse2@ap-southeast-2?prefix=mirror%2F&storage_class=STANDARD_IA",
            ),
        ])
        .unwrap();
        assert_eq!(c.source_bucket, "photos");
        assert_eq!(c.source_region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.replicas.len(), 2);
        assert_eq!(c.replicas[1].prefix, "mirror/");
        assert_eq!(
            (c.wait, c.poll, c.stale_after, c.keep),
            (
                DEFAULT_WAIT,
                DEFAULT_POLL,
                DEFAULT_STALE_AFTER,
                DEFAULT_KEEP
            )
        );
        let c = config(&[
            ("SOURCE_BUCKETS", "photos"),
            ("CANARY_SOURCE", "canary-src"),
            ("REPLICA_TARGETS", "r1b@us-west-2"),
            ("CANARY_WAIT_MS", "2000"),
            ("CANARY_STALE_AFTER_MS", "60000"),
            ("CANARY_KEEP", "3"),
        ])
        .unwrap();
        assert_eq!(
            (c.source_bucket.as_str(), c.source_region),
            ("canary-src", None)
        );
        assert_eq!(c.wait, Duration::from_secs(2));
        assert_eq!(c.stale_after, Duration::from_secs(60));
        assert_eq!(c.keep, 3);
        // A source with a prefix of its own in every target.
        let c = config(&[
            (
                "SOURCE_BUCKETS",
                "photos?prefix=photos%2F,videos@eu-west-1?prefix=videos%2F",
            ),
            ("CANARY_SOURCE", "videos"),
            ("REPLICA_TARGETS", "r1b@us-west-2?prefix=mirror%2F"),
        ])
        .unwrap();
        assert_eq!(c.source_bucket, "videos");
        assert_eq!(c.source_region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.replicas[0].key("k"), "mirror/videos/k");
    }

    #[test]
    fn bad_values_are_named() {
        let base = [
            ("SOURCE_BUCKETS", "src"),
            ("REPLICA_TARGETS", "r1b@us-west-2"),
        ];
        for (name, value, reason) in [
            ("CANARY_KEEP", "1", "from 2 to 1000"),
            ("CANARY_WAIT_MS", "soon", "milliseconds"),
            ("CANARY_POLL_MS", "0", "at least 10"),
            ("SOURCE_BUCKETS", " , ", "names no bucket"),
            ("CANARY_SOURCE", "src@", "BUCKET@REGION"),
            ("SOURCE_BUCKETS", "src?colour=red", "unknown option"),
            ("REPLICA_TARGETS", "nope", "BUCKET@REGION"),
        ] {
            let mut vars = base.to_vec();
            vars.retain(|(n, _)| *n != name);
            vars.push((name, value));
            let error = config(&vars).unwrap_err().to_string();
            assert!(
                error.contains(name)
                    && error.contains(&format!("{value:?}"))
                    && error.contains(reason),
                "{error}"
            );
        }
    }
}
