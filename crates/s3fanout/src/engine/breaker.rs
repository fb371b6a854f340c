//! One breaker per target: after a target is seen unavailable, work for it is held (no request
//! is sent) and only one probe goes through at a time, after a pause that doubles while the
//! probes fail. A target down for hours then costs a bounded number of requests per execution
//! environment, whatever the number of changes waiting for it; what was held is delivered again
//! later for that target alone (see `lambda::owed`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::core::config::Target;
use crate::core::outcome::{Failure, FailureKind, Outcome};

/// When a breaker opens and how often it probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive changes that failed at a target as if it were unavailable before its
    /// breaker opens. Each of them already had the SDK's own attempts.
    pub threshold: u32,
    /// The pause before the first probe of an open breaker.
    pub first_probe: Duration,
    /// The longest pause between probes: with the delay of held work, it bounds how long after
    /// a target's recovery its waiting changes reach it.
    pub max_probe: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            threshold: 3,
            first_probe: Duration::from_secs(15),
            max_probe: Duration::from_secs(120),
        }
    }
}

/// Whether work for a target may send requests now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The target is taken to be available.
    Go,
    /// The breaker is open and this work is its probe: the only work in flight for the target.
    Probe,
    /// The breaker is open: send nothing, hold the work.
    Hold,
}

/// What the work at a target says about the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The target answered (a success, or a refusal that is not about availability).
    Answered,
    /// The target did not answer usefully: 5xx, throttling, timeouts, connection errors.
    Unavailable,
    /// Nothing learnt (the deadline stopped the work, or it was held).
    Unknown,
}

impl Health {
    /// What an outcome says about its target.
    pub fn of(outcome: &Outcome) -> Self {
        match outcome.failure() {
            None => Health::Answered,
            Some(failure) => Self::of_failure(failure),
        }
    }

    fn of_failure(failure: &Failure) -> Self {
        match failure.kind {
            FailureKind::Permanent => Health::Answered,
            FailureKind::Deferred | FailureKind::Held => Health::Unknown,
            FailureKind::Retryable => {
                // A request answered with a 4xx other than throttling (a conditional request
                // losing a race, for instance), or work the engine itself gave up on, shows
                // the target up.
                let throttled = matches!(
                    failure.code.as_deref(),
                    Some("SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout")
                );
                match (failure.status, failure.code.as_deref()) {
                    (Some(408 | 429 | 500..=599), _) | (None, None) => Health::Unavailable,
                    _ if throttled => Health::Unavailable,
                    _ => Health::Answered,
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { probe_at: Instant, pause: Duration },
    Probing { pause: Duration },
}

/// The breakers of every target of a process.
#[derive(Debug)]
pub struct Breakers {
    settings: BreakerSettings,
    states: Mutex<HashMap<(String, String), State>>,
}

fn id(target: &Target) -> (String, String) {
    (target.bucket.clone(), target.prefix.clone())
}

impl Breakers {
    /// Every breaker closed.
    pub fn new(settings: BreakerSettings) -> Self {
        Breakers {
            settings,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// Whether work for `target` may send requests now.
    pub fn admit(&self, target: &Target) -> Admission {
        let mut states = self.states.lock().expect("breaker lock");
        let state = states
            .entry(id(target))
            .or_insert(State::Closed { failures: 0 });
        match *state {
            State::Closed { .. } => Admission::Go,
            State::Probing { .. } => Admission::Hold,
            State::Open { probe_at, pause } => {
                if Instant::now() < probe_at {
                    Admission::Hold
                } else {
                    *state = State::Probing { pause };
                    Admission::Probe
                }
            }
        }
    }

    /// Records what admitted work found at `target`.
    pub fn record(&self, target: &Target, admission: Admission, health: Health) {
        let settings = self.settings;
        let mut states = self.states.lock().expect("breaker lock");
        let state = states
            .entry(id(target))
            .or_insert(State::Closed { failures: 0 });
        let reopen = |pause: Duration| State::Open {
            probe_at: Instant::now() + pause,
            pause,
        };
        *state = match (*state, admission, health) {
            (_, Admission::Hold, _) => return,
            (_, _, Health::Answered) => State::Closed { failures: 0 },
            // The probe learnt nothing: the next work may probe at once.
            (State::Probing { pause }, Admission::Probe, Health::Unknown) => State::Open {
                probe_at: Instant::now(),
                pause,
            },
            (State::Probing { pause }, Admission::Probe, Health::Unavailable) => {
                reopen((pause * 2).min(settings.max_probe))
            }
            (State::Closed { failures }, _, Health::Unavailable) => {
                if failures + 1 >= settings.threshold {
                    tracing::warn!(bucket = %target.bucket, prefix = %target.prefix,
                        "target unavailable: holding its work, probing it from now on");
                    reopen(settings.first_probe)
                } else {
                    State::Closed {
                        failures: failures + 1,
                    }
                }
            }
            // Work admitted before the breaker opened ends while it is open or probing: the
            // probe decides.
            (other, _, _) => other,
        };
    }

    /// Whether `target`'s breaker is open (or probing).
    pub fn is_open(&self, target: &Target) -> bool {
        let states = self.states.lock().expect("breaker lock");
        matches!(
            states.get(&id(target)),
            Some(State::Open { .. } | State::Probing { .. })
        )
    }
}

impl Default for Breakers {
    fn default() -> Self {
        Self::new(BreakerSettings::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            bucket: "replica".into(),
            region: "eu-west-1".into(),
            prefix: String::new(),
            storage_class: None,
            kms_key_id: None,
        }
    }

    fn down() -> Health {
        Health::of_failure(&Failure::from_response(
            Some(503),
            Some("SlowDown"),
            "x".into(),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_and_probes_one_at_a_time_with_a_growing_pause() {
        let breakers = Breakers::default();
        let t = target();
        for _ in 0..2 {
            assert_eq!(breakers.admit(&t), Admission::Go);
            breakers.record(&t, Admission::Go, down());
        }
        assert!(
            !breakers.is_open(&t),
            "two failures are under the threshold"
        );
        breakers.record(&t, Admission::Go, down());
        assert!(breakers.is_open(&t));
        assert_eq!(breakers.admit(&t), Admission::Hold);
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(breakers.admit(&t), Admission::Probe);
        assert_eq!(breakers.admit(&t), Admission::Hold, "one probe at a time");
        breakers.record(&t, Admission::Probe, down());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(breakers.admit(&t), Admission::Hold, "the pause doubled");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(breakers.admit(&t), Admission::Probe);
        breakers.record(&t, Admission::Probe, Health::Answered);
        assert_eq!(breakers.admit(&t), Admission::Go);
        assert!(!breakers.is_open(&t));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pause_between_probes_is_bounded() {
        let breakers = Breakers::default();
        let t = target();
        for _ in 0..3 {
            breakers.record(&t, Admission::Go, down());
        }
        let mut pauses = Vec::new();
        for _ in 0..8 {
            let started = Instant::now();
            while breakers.admit(&t) != Admission::Probe {
                tokio::time::advance(Duration::from_secs(1)).await;
            }
            pauses.push(started.elapsed().as_secs());
            breakers.record(&t, Admission::Probe, down());
        }
        assert_eq!(pauses, [15, 30, 60, 120, 120, 120, 120, 120]);
    }

    #[test]
    fn a_success_between_failures_keeps_the_breaker_closed() {
        let breakers = Breakers::default();
        let t = target();
        for _ in 0..10 {
            breakers.record(&t, Admission::Go, down());
            breakers.record(&t, Admission::Go, down());
            breakers.record(&t, Admission::Go, Health::Answered);
        }
        assert!(!breakers.is_open(&t));
    }

    #[test]
    fn refusals_and_lost_races_show_the_target_answering() {
        let refused = Failure::from_response(Some(403), Some("AccessDenied"), "x".into());
        assert_eq!(Health::of_failure(&refused), Health::Answered);
        let mut raced = Failure::from_response(Some(409), None, "x".into());
        raced.kind = FailureKind::Retryable;
        assert_eq!(Health::of_failure(&raced), Health::Answered);
        let reset = Failure::new(FailureKind::Retryable, "connection reset");
        assert_eq!(Health::of_failure(&reset), Health::Unavailable);
        let mut unsettled = Failure::new(FailureKind::Retryable, "kept changing");
        unsettled.code = Some("SourceKeptChanging".into());
        assert_eq!(Health::of_failure(&unsettled), Health::Answered);
        let late = Failure::new(FailureKind::Deferred, "deadline");
        assert_eq!(Health::of_failure(&late), Health::Unknown);
    }
}
