//! A per-replica circuit breaker: a replica that keeps failing is left alone for a while, so
//! that reads stop paying its timeout and it is not hammered while it recovers.

use std::time::{Duration, Instant};

/// When a breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive replica failures that open the breaker.
    pub failures_to_open: u32,
    /// How long it stays open before one probe request is let through.
    pub cooldown: Duration,
    /// The cooldown doubles after each failed probe, up to this.
    pub max_cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures_to_open: 5,
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        cooldown: Duration,
    },
    /// One probe is in flight; everyone else keeps away until it answers.
    Probing {
        cooldown: Duration,
    },
}

/// The breaker of one replica.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
}

/// Whether a request may go to the replica now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go ahead.
    Allowed,
    /// Half-open: this request is the probe.
    Probe,
    /// Open, or a probe is already out.
    Refused,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            state: State::Closed { failures: 0 },
        }
    }

    /// Asks to send a request; a probe admission must be followed by `record`.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            State::Closed { .. } => Admission::Allowed,
            State::Open { until, cooldown } if now >= until => {
                self.state = State::Probing { cooldown };
                Admission::Probe
            }
            State::Open { .. } | State::Probing { .. } => Admission::Refused,
        }
    }

    /// Whether the breaker would refuse a request now (without claiming the probe).
    pub fn is_open(&self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => false,
            State::Open { until, .. } => now < until,
            State::Probing { .. } => true,
        }
    }

    /// Records the outcome of a request that was sent.
    pub fn record(&mut self, failed: bool, now: Instant) {
        self.state = match (self.state, failed) {
            (_, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) => {
                let failures = failures + 1;
                if failures >= self.config.failures_to_open {
                    self.open(now, self.config.cooldown)
                } else {
                    State::Closed { failures }
                }
            }
            (State::Probing { cooldown }, true) => {
                self.open(now, (cooldown * 2).min(self.config.max_cooldown))
            }
            // A request admitted before the breaker opened: it changes nothing.
            (open @ State::Open { .. }, true) => open,
        };
    }

    /// Gives the probe back when its request was cancelled before it answered.
    pub fn release_probe(&mut self, now: Instant) {
        if let State::Probing { cooldown } = self.state {
            self.state = State::Open {
                until: now,
                cooldown,
            };
        }
    }

    fn open(&self, now: Instant, cooldown: Duration) -> State {
        State::Open {
            until: now + cooldown,
            cooldown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failures_to_open: 3,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(30),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let now = Instant::now();
        let mut b = breaker();
        b.record(true, now);
        b.record(true, now);
        b.record(false, now);
        b.record(true, now);
        b.record(true, now);
        assert_eq!(b.admit(now), Admission::Allowed);
        b.record(true, now);
        assert_eq!(b.admit(now), Admission::Refused);
        assert!(b.is_open(now));
    }

    #[test]
    fn one_probe_after_cooldown_then_closes_or_backs_off() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..3 {
            b.record(true, t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.admit(t1), Admission::Probe);
        assert_eq!(b.admit(t1), Admission::Refused, "only one probe at a time");
        b.record(true, t1);
        // The failed probe doubles the cooldown.
        assert_eq!(b.admit(t1 + Duration::from_secs(19)), Admission::Refused);
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(b.admit(t2), Admission::Probe);
        b.record(true, t2);
        // Capped at max_cooldown.
        assert_eq!(b.admit(t2 + Duration::from_secs(30)), Admission::Probe);
        b.record(false, t2 + Duration::from_secs(30));
        assert_eq!(b.admit(t2 + Duration::from_secs(30)), Admission::Allowed);
    }

    #[test]
    fn a_cancelled_probe_is_given_back() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..3 {
            b.record(true, t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.admit(t1), Admission::Probe);
        b.release_probe(t1);
        assert_eq!(b.admit(t1), Admission::Probe);
    }
}
