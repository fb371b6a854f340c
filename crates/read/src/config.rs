//! How a reader behaves: failover rules, ordering, hedging, breaker, budget, timeouts.

use std::time::Duration;

use crate::breaker::BreakerConfig;
use crate::budget::BudgetConfig;
use crate::error::{ConfigError, MissingPolicy};
use crate::order::{ReplicaOrder, RotationStart};

/// Whether, and when, a second request is sent to another replica while the first is slow.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Hedge {
    /// One attempt at a time.
    #[default]
    Off,
    /// When the first attempt has no response head after the given percentile of recent
    /// times to first byte, the next replica is asked too and the first answer wins.
    AfterPercentile {
        /// Percentile of recent times to first byte (for example 90).
        percentile: f64,
        /// Never hedge earlier than this, however fast recent reads were.
        min_delay: Duration,
        /// Samples needed before hedging starts (the percentile means little before).
        min_samples: usize,
    },
}

/// Everything that tunes a reader; `Default` suits most uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadConfig {
    /// Whether a 404 moves the read to the next replica.
    pub missing: MissingPolicy,
    /// How the first replica of each request is chosen.
    pub order: ReplicaOrder,
    /// Where the rotation begins: a replica drawn at random by default, so that the first
    /// reads of short-lived processes spread over every replica too.
    pub start: RotationStart,
    /// Hedged requests.
    pub hedge: Hedge,
    /// Per-replica circuit breaker.
    pub breaker: BreakerConfig,
    /// Budget of extra attempts (failovers and hedges).
    pub budget: BudgetConfig,
    /// Time allowed for one attempt's response head (the body streams afterwards, unbounded).
    pub attempt_timeout: Duration,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Retries of one attempt by the SDK at the same replica before moving on (0: move on at
    /// once, which is usually faster than backing off).
    pub retries_per_replica: u32,
    /// Host name in the failure gauges (default: this machine's host name).
    pub host: Option<String>,
}

impl Default for ReadConfig {
    fn default() -> Self {
        ReadConfig {
            missing: MissingPolicy::default(),
            order: ReplicaOrder::default(),
            start: RotationStart::default(),
            hedge: Hedge::default(),
            breaker: BreakerConfig::default(),
            budget: BudgetConfig::default(),
            attempt_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            retries_per_replica: 0,
            host: None,
        }
    }
}

impl ReadConfig {
    /// The defaults with the `READ_*` settings of `lookup` applied (`READ_MISSING`,
    /// `READ_ORDER`, `READ_TIMEOUT_MS`, `READ_HEDGE_PERCENTILE`, `READ_RETRIES`).
    ///
    /// `READ_ORDER` is `latency` (the default: each request starts at the next replica in
    /// turn, near ones more often, beginning at a replica drawn at random), `round-robin`
    /// (every replica starts the same share, beginning at random) or `listed` (always in the
    /// order the replicas are listed: the first serves while it answers, the others are
    /// backups in turn).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = ReadConfig::default();
        if let Some(value) = lookup("READ_ORDER") {
            config.order = match value.trim() {
                "latency" => ReplicaOrder::default(),
                "round-robin" => ReplicaOrder::RoundRobin,
                "listed" => ReplicaOrder::Listed,
                other => {
                    return Err(setting(
                        "READ_ORDER",
                        other,
                        "latency, round-robin or listed",
                    ))
                }
            };
        }
        if let Some(value) = lookup("READ_MISSING") {
            config.missing = match value.trim() {
                "failover" => MissingPolicy::Failover,
                "fail" => MissingPolicy::Fail,
                other => return Err(setting("READ_MISSING", other, "failover or fail")),
            };
        }
        if let Some(value) = lookup("READ_TIMEOUT_MS") {
            let ms: u64 = value
                .trim()
                .parse()
                .ok()
                .filter(|ms| (1..=600_000).contains(ms))
                .ok_or_else(|| setting("READ_TIMEOUT_MS", &value, "milliseconds, 1 to 600000"))?;
            config.attempt_timeout = Duration::from_millis(ms);
        }
        if let Some(value) = lookup("READ_HEDGE_PERCENTILE") {
            let percentile: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|p: &f64| *p > 0.0 && *p < 100.0)
                .ok_or_else(|| {
                    setting(
                        "READ_HEDGE_PERCENTILE",
                        &value,
                        "a percentile between 0 and 100, e.g. 95",
                    )
                })?;
            config.hedge = Hedge::AfterPercentile {
                percentile,
                min_delay: Duration::from_millis(2),
                min_samples: 20,
            };
        }
        if let Some(value) = lookup("READ_RETRIES") {
            config.retries_per_replica = value
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= 10)
                .ok_or_else(|| setting("READ_RETRIES", &value, "0 to 10"))?;
        }
        Ok(config)
    }
}

fn setting(name: &'static str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Setting {
        name,
        reason: format!("{value:?} is not {expected}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn reads_settings_and_names_bad_ones() {
        let config = ReadConfig::from_lookup(lookup(&[
            ("READ_MISSING", "fail"),
            ("READ_TIMEOUT_MS", "1500"),
            ("READ_HEDGE_PERCENTILE", "90"),
        ]))
        .unwrap();
        assert_eq!(config.missing, MissingPolicy::Fail);
        assert_eq!(config.order, ReplicaOrder::default());
        assert_eq!(config.attempt_timeout, Duration::from_millis(1500));
        assert!(
            matches!(config.hedge, Hedge::AfterPercentile { percentile, .. } if percentile == 90.0)
        );
        for (name, value) in [
            ("READ_MISSING", "maybe"),
            ("READ_TIMEOUT_MS", "0"),
            ("READ_HEDGE_PERCENTILE", "100"),
            ("READ_RETRIES", "-1"),
            ("READ_ORDER", "fastest"),
        ] {
            let err = ReadConfig::from_lookup(lookup(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name) && err.contains(value), "{err}");
        }
        assert_eq!(
            ReadConfig::from_lookup(|_| None).unwrap(),
            ReadConfig::default()
        );
        for (value, order) in [
            ("latency", ReplicaOrder::default()),
            (" round-robin", ReplicaOrder::RoundRobin),
            ("listed", ReplicaOrder::Listed),
        ] {
            let config = ReadConfig::from_lookup(lookup(&[("READ_ORDER", value)])).unwrap();
            assert_eq!(config.order, order, "{value}");
        }
    }
}
