//! What a reader has learned about its replicas, shared by all its requests.

use std::time::{Duration, Instant};

use crate::breaker::{Admission, Breaker};
use crate::budget::RetryBudget;
use crate::config::{Hedge, ReadConfig};
use crate::error::Answer;
use crate::latency::{Ewma, Window};
use crate::order::{self, Candidate, Distance, ReplicaOrder, Rotation};

/// Samples of time to first byte kept for the hedging percentile.
const WINDOW: usize = 512;

#[derive(Debug, Clone)]
struct ReplicaHealth {
    latency: Ewma,
    breaker: Breaker,
    /// The last answer was a replica failure: drives the failure gauge.
    failing: bool,
}

/// Shared state of one reader; callers hold it behind a mutex for short, non-async sections.
#[derive(Debug)]
pub struct Health {
    replicas: Vec<ReplicaHealth>,
    rotation: Rotation,
    window: Window,
    budget: RetryBudget,
    /// Since the last emission.
    all_failed: u64,
    all_failed_total: u64,
}

impl Health {
    /// Fresh state for `n` replicas.
    pub fn new(n: usize, config: &ReadConfig, now: Instant) -> Self {
        Health {
            replicas: vec![
                ReplicaHealth {
                    latency: Ewma::default(),
                    breaker: Breaker::new(config.breaker),
                    failing: false,
                };
                n
            ],
            rotation: Rotation::starting_at(n, config.start.resolve(n)),
            window: Window::new(WINDOW),
            budget: RetryBudget::new(config.budget, now),
            all_failed: 0,
            all_failed_total: 0,
        }
    }

    /// Starts a request: fills the budget and returns the order to try the replicas in.
    pub fn begin(&mut self, config: &ReadConfig, now: Instant) -> Vec<usize> {
        self.budget.deposit(now);
        let candidates = self.candidates(now);
        let mut order = self.rotation.order(&candidates, config.order);
        // A hedged read that starts at a distant replica asks a near one at once (see
        // `distance`); without a token for that second request it would wait for the distant
        // one, so it starts at the nearest instead and the distant one waits its next turn.
        if config.hedge != Hedge::Off
            && order.len() > 1
            && self.distance(order[0], config.order, now) == Distance::Distant
            && !self.budget.can_withdraw(now)
        {
            order.rotate_left(1);
        }
        order
    }

    /// The order in which to ask for the rest of a body that broke at replica `cut`: the others
    /// fastest first (open breakers last), then `cut` itself, since the break is the freshest
    /// sign that it is unwell. Unlike `begin`, it neither turns the rotation nor fills the
    /// budget: it is not a new request.
    pub fn resume_order(&self, cut: usize, now: Instant) -> Vec<usize> {
        let candidates = self.candidates(now);
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by_key(|&i| {
            (
                i == cut,
                candidates[i].open,
                candidates[i].latency.unwrap_or(Duration::ZERO),
                i,
            )
        });
        order
    }

    fn candidates(&self, now: Instant) -> Vec<Candidate> {
        self.replicas
            .iter()
            .map(|r| Candidate {
                latency: r.latency.get(),
                open: r.breaker.is_open(now),
            })
            .collect()
    }

    /// Whether the replica is near the fastest one, by the ordering's thresholds.
    pub fn distance(&self, replica: usize, order: ReplicaOrder, now: Instant) -> Distance {
        let fastest = order::fastest(&self.candidates(now));
        order.distance(self.replicas[replica].latency.get(), fastest)
    }

    /// Asks the replica's breaker whether a request may go.
    pub fn admit(&mut self, replica: usize, now: Instant) -> Admission {
        self.replicas[replica].breaker.admit(now)
    }

    /// Takes a token for an extra attempt.
    pub fn withdraw(&mut self, now: Instant) -> bool {
        self.budget.withdraw(now)
    }

    /// Gives back a probe admission whose request was never answered.
    pub fn release(&mut self, replica: usize, admission: Admission, now: Instant) {
        if admission == Admission::Probe {
            self.replicas[replica].breaker.release_probe(now);
        }
    }

    /// Records what an attempt got: the object (`None`) or another answer.
    pub fn record(
        &mut self,
        replica: usize,
        answer: Option<&Answer>,
        ttfb: Duration,
        now: Instant,
    ) {
        let failed = answer.is_some_and(Answer::is_replica_failure);
        let health = &mut self.replicas[replica];
        health.breaker.record(failed, now);
        health.failing = failed;
        // A fast error says nothing about how near the replica is; a timeout does.
        if !failed || matches!(answer, Some(Answer::Timeout(_))) {
            health.latency.record(ttfb);
            self.window.record(ttfb);
        }
    }

    /// Records an attempt cancelled because another one answered first: it took at least
    /// `elapsed`, which keeps a slow replica's average from going stale while hedges hide it.
    pub fn record_cancelled(&mut self, replica: usize, elapsed: Duration) {
        let latency = &mut self.replicas[replica].latency;
        if latency.get().is_none_or(|avg| avg < elapsed) {
            latency.record(elapsed);
        }
    }

    /// Counts a request for which every replica failed.
    pub fn count_all_failed(&mut self) {
        self.all_failed += 1;
        self.all_failed_total += 1;
    }

    /// The hedging delay: the percentile of recent times to first byte, once enough are known.
    pub fn hedge_delay(
        &self,
        percentile: f64,
        min_delay: Duration,
        min_samples: usize,
    ) -> Option<Duration> {
        if self.window.len() < min_samples.max(1) {
            return None;
        }
        self.window.percentile(percentile).map(|p| p.max(min_delay))
    }

    /// Whether each replica is failing now (its last answer was a failure or its breaker is
    /// open).
    pub fn failing(&self, now: Instant) -> Vec<bool> {
        self.replicas
            .iter()
            .map(|r| r.failing || r.breaker.is_open(now))
            .collect()
    }

    /// Requests for which every replica failed, since the last call.
    pub fn take_all_failed(&mut self) -> u64 {
        std::mem::take(&mut self.all_failed)
    }

    /// Requests for which every replica failed, since the reader was made.
    pub fn all_failed_total(&self) -> u64 {
        self.all_failed_total
    }

    /// Average time to first byte per replica.
    pub fn latencies(&self) -> Vec<Option<Duration>> {
        self.replicas.iter().map(|r| r.latency.get()).collect()
    }
}
