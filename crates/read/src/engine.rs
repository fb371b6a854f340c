//! One read across the replicas: the rotating first attempt, failover, hedging, the budget.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};

use crate::breaker::Admission;
use crate::config::{Hedge, ReadConfig};
use crate::error::{Answer, Attempt, Disposition, MissingPolicy, ReadError, ReadErrorKind};
use crate::health::Health;
use crate::order::Distance;

/// The object as one replica served it.
#[derive(Debug)]
pub struct Served<T> {
    /// Index of the replica in the reader's list.
    pub index: usize,
    /// The replica, as `bucket@region`.
    pub replica: String,
    /// Region of the replica.
    pub region: String,
    /// What S3 returned (for GET, the body is still streaming).
    pub output: T,
}

type AttemptFuture<'a, T> = Pin<Box<dyn Future<Output = (usize, Result<T, Answer>)> + Send + 'a>>;

struct Running {
    replica: usize,
    started: Instant,
    admission: Admission,
}

/// What a run of attempts is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A new request: its first attempt is free, the rotation picks where it starts.
    Fresh,
    /// The rest of a body that broke at replica `cut`: every attempt is extra load paid from
    /// the budget, and the other replicas are asked first.
    Resume {
        /// The replica whose body broke.
        cut: usize,
    },
}

/// Runs one request. `send(i)` performs the request at replica `i`.
pub async fn run<'a, T, F, Fut>(
    health: &Mutex<Health>,
    config: &ReadConfig,
    names: &[String],
    key: &str,
    start: Start,
    send: F,
) -> Result<(usize, T), ReadError>
where
    T: Send + 'a,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, Answer>> + Send + 'a,
{
    let (order, free_attempts) = match start {
        Start::Fresh => (lock(health).begin(config, Instant::now()), 1),
        Start::Resume { cut } => (lock(health).resume_order(cut, Instant::now()), 0),
    };
    let mut read = Read {
        health,
        config,
        pending: order.into_iter(),
        inflight: FuturesUnordered::new(),
        running: Vec::new(),
        attempts: Vec::new(),
        launched: 0,
        free_attempts,
        last_launch: Instant::now(),
    };
    let timeout = config.attempt_timeout;
    let launch = |i: usize| -> AttemptFuture<'a, T> {
        let attempt = send(i);
        Box::pin(async move {
            match tokio::time::timeout(timeout, attempt).await {
                Ok(result) => (i, result),
                Err(_) => (i, Err(Answer::Timeout(timeout))),
            }
        })
    };
    if !read.launch_next(&launch, names) {
        return Err(read.give_up(key));
    }
    loop {
        let hedge_at = read.hedge_deadline();
        tokio::select! {
            biased;
            Some((replica, result)) = read.inflight.next() => {
                match read.finish(replica, result, names) {
                    Step::Done(output) => return Ok((replica, output)),
                    Step::Stop => return Err(read.give_up(key)),
                    Step::Continue => {
                        if read.inflight.is_empty() && !read.launch_next(&launch, names) {
                            return Err(read.give_up(key));
                        }
                    }
                }
            }
            _ = sleep_until(hedge_at), if hedge_at.is_some() => {
                read.launch_next(&launch, names);
            }
        }
    }
}

enum Step<T> {
    Done(T),
    Stop,
    Continue,
}

struct Read<'h, 'a, T> {
    health: &'h Mutex<Health>,
    config: &'h ReadConfig,
    pending: std::vec::IntoIter<usize>,
    inflight: FuturesUnordered<AttemptFuture<'a, T>>,
    running: Vec<Running>,
    attempts: Vec<Attempt>,
    launched: usize,
    /// Attempts that cost no budget: the request itself, or none for a resume.
    free_attempts: usize,
    last_launch: Instant,
}

impl<'a, T> Read<'_, 'a, T> {
    /// Starts the next replica that the breakers and the budget allow; false when none is left.
    fn launch_next(
        &mut self,
        launch: &impl Fn(usize) -> AttemptFuture<'a, T>,
        names: &[String],
    ) -> bool {
        for replica in self.pending.by_ref() {
            let now = Instant::now();
            let mut health = lock(self.health);
            let admission = health.admit(replica, now);
            if admission == Admission::Refused {
                self.attempts
                    .push(attempt(names, replica, Answer::CircuitOpen));
                continue;
            }
            // The first attempt is the request itself; every further one is extra load.
            if self.launched >= self.free_attempts && !health.withdraw(now) {
                health.release(replica, admission, now);
                self.attempts
                    .push(attempt(names, replica, Answer::BudgetExhausted));
                continue;
            }
            drop(health);
            self.inflight.push(launch(replica));
            self.running.push(Running {
                replica,
                started: now,
                admission,
            });
            self.launched += 1;
            self.last_launch = now;
            return true;
        }
        false
    }

    /// When to send a hedge, if one may be sent.
    fn hedge_deadline(&self) -> Option<Instant> {
        let Hedge::AfterPercentile {
            percentile,
            min_delay,
            min_samples,
        } = self.config.hedge
        else {
            return None;
        };
        if self.inflight.len() != 1 || self.pending.len() == 0 {
            return None;
        }
        let health = lock(self.health);
        let delay = health.hedge_delay(percentile, min_delay, min_samples)?;
        // A distant replica taking its share of first attempts (which keeps its average
        // current) is hedged at once: no reader waits for it. Only distance by the ordering's
        // thresholds counts, not an average above the delay: one stall lifts a near replica's
        // average above a percentile of a few milliseconds, and hedging it at once would double
        // the load for the next several reads.
        let running = self.running.first()?;
        if health.distance(running.replica, self.config.order, Instant::now()) == Distance::Distant
        {
            return Some(running.started);
        }
        Some(self.last_launch + delay)
    }

    fn finish(&mut self, replica: usize, result: Result<T, Answer>, names: &[String]) -> Step<T> {
        let now = Instant::now();
        let position = self.running.iter().position(|r| r.replica == replica);
        let started = position.map_or(now, |p| self.running.swap_remove(p).started);
        let ttfb = now.saturating_duration_since(started);
        let mut health = lock(self.health);
        match result {
            Ok(output) => {
                health.record(replica, None, ttfb, now);
                // The others are dropped with `inflight`: their requests are cancelled.
                for other in self.running.drain(..) {
                    health.record_cancelled(
                        other.replica,
                        now.saturating_duration_since(other.started),
                    );
                    health.release(other.replica, other.admission, now);
                }
                Step::Done(output)
            }
            Err(answer) => {
                health.record(replica, Some(&answer), ttfb, now);
                let disposition = answer.disposition(self.config.missing);
                self.attempts.push(attempt(names, replica, answer));
                if disposition == Disposition::Return {
                    for other in self.running.drain(..) {
                        health.release(other.replica, other.admission, now);
                    }
                    return Step::Stop;
                }
                Step::Continue
            }
        }
    }

    fn give_up(&mut self, key: &str) -> ReadError {
        let answers = || self.attempts.iter().map(|a| &a.answer);
        let kind = if answers().any(|a| matches!(a, Answer::Rejected { .. })) {
            ReadErrorKind::Rejected
        } else if self.config.missing == MissingPolicy::Fail
            && answers().any(|a| matches!(a, Answer::Missing { .. }))
        {
            // The 404 that stopped the read is trusted, whatever the replicas before it said.
            ReadErrorKind::NotFound
        } else if answers().any(|a| matches!(a, Answer::Archived { .. })) {
            // Archived only when every replica answered; one that could not be asked may
            // hold the object readable.
            if answers().all(|a| {
                matches!(
                    a,
                    Answer::Archived { .. } | Answer::Missing { .. } | Answer::OtherVersion { .. }
                )
            }) {
                ReadErrorKind::Archived
            } else {
                ReadErrorKind::AllFailed
            }
        } else if answers().any(|a| matches!(a, Answer::OtherVersion { .. })) {
            // Only when every replica answered is the version known to be gone; one that
            // could not be asked may still hold it.
            if answers().all(|a| matches!(a, Answer::OtherVersion { .. } | Answer::Missing { .. }))
            {
                ReadErrorKind::VersionGone
            } else {
                ReadErrorKind::AllFailed
            }
        } else if answers().any(|a| matches!(a, Answer::Missing { .. })) {
            ReadErrorKind::NotFound
        } else {
            ReadErrorKind::AllFailed
        };
        if kind == ReadErrorKind::AllFailed {
            lock(self.health).count_all_failed();
            tracing::warn!(key, attempts = ?self.attempts, "every replica failed");
        }
        ReadError {
            kind,
            key: key.to_string(),
            attempts: std::mem::take(&mut self.attempts),
        }
    }
}

fn attempt(names: &[String], replica: usize, answer: Answer) -> Attempt {
    Attempt {
        replica: names
            .get(replica)
            .cloned()
            .unwrap_or_else(|| format!("replica {replica}")),
        answer,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The lock, even if a panic elsewhere poisoned it: the state stays usable.
pub fn lock(health: &Mutex<Health>) -> std::sync::MutexGuard<'_, Health> {
    health
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerConfig;
    use crate::budget::BudgetConfig;
    use crate::order::{ReplicaOrder, RotationStart};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("r{i}@region-{i}")).collect()
    }

    fn config() -> ReadConfig {
        ReadConfig {
            order: ReplicaOrder::RoundRobin,
            start: RotationStart::At(0),
            ..ReadConfig::default()
        }
    }

    fn unavailable() -> Answer {
        Answer::Throttled {
            status: 503,
            code: Some("ServiceUnavailable".into()),
        }
    }

    /// Replica behaviours for a fake backend.
    #[derive(Clone)]
    enum Fake {
        Ok(Duration),
        Fail(Answer),
    }

    async fn read(
        health: &Mutex<Health>,
        config: &ReadConfig,
        fakes: &[Fake],
        calls: &AtomicUsize,
    ) -> Result<(usize, usize), ReadError> {
        let names = names(fakes.len());
        let send = |i: usize| {
            calls.fetch_add(1, Ordering::SeqCst);
            let fake = fakes[i].clone();
            async move {
                match fake {
                    Fake::Ok(delay) => {
                        tokio::time::sleep(delay).await;
                        Ok(i)
                    }
                    Fake::Fail(answer) => Err(answer),
                }
            }
        };
        run(health, config, &names, "k", Start::Fresh, send).await
    }

    fn health(n: usize, config: &ReadConfig) -> Mutex<Health> {
        Mutex::new(Health::new(n, config, Instant::now()))
    }

    #[tokio::test]
    async fn starts_rotate_and_failures_move_on() {
        let config = config();
        let h = health(3, &config);
        let calls = AtomicUsize::new(0);
        let fakes = [Fake::Ok(MS), Fake::Fail(unavailable()), Fake::Ok(MS)];
        let mut served = Vec::new();
        for _ in 0..3 {
            served.push(read(&h, &config, &fakes, &calls).await.unwrap().0);
        }
        // The second request started at the failing replica and moved on to the one not yet
        // measured (unknown latency counts as near, to learn it).
        assert_eq!(served, [0, 2, 2]);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(lock(&h).failing(Instant::now()), [false, true, false]);
    }

    #[tokio::test]
    async fn gives_up_after_each_replica_once_naming_all() {
        let config = config();
        let h = health(3, &config);
        let calls = AtomicUsize::new(0);
        let fakes = [
            Fake::Fail(unavailable()),
            Fake::Fail(Answer::Connection("connection refused".into())),
            Fake::Fail(Answer::ServerError {
                status: 500,
                code: None,
            }),
        ];
        let err = read(&h, &config, &fakes, &calls).await.unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(err.kind, ReadErrorKind::AllFailed);
        let named: Vec<&str> = err.attempts.iter().map(|a| a.replica.as_str()).collect();
        assert_eq!(named, ["r0@region-0", "r1@region-1", "r2@region-2"]);
        assert_eq!(lock(&h).all_failed_total(), 1);
    }

    #[tokio::test]
    async fn forbidden_is_returned_at_once_and_404_follows_the_policy() {
        let mut config = config();
        let forbidden = Answer::Rejected {
            status: 403,
            code: Some("AccessDenied".into()),
            message: None,
        };
        let h = health(2, &config);
        let calls = AtomicUsize::new(0);
        let err = read(&h, &config, &[Fake::Fail(forbidden), Fake::Ok(MS)], &calls)
            .await
            .unwrap_err();
        assert_eq!(
            (err.kind, calls.load(Ordering::SeqCst)),
            (ReadErrorKind::Rejected, 1)
        );

        let missing = Fake::Fail(Answer::Missing { code: None });
        let h = health(2, &config);
        let ok = read(&h, &config, &[missing.clone(), Fake::Ok(MS)], &calls).await;
        assert_eq!(ok.unwrap().0, 1, "a lagging replica's 404 fails over");
        config.missing = MissingPolicy::Fail;
        let h = health(2, &config);
        let err = read(&h, &config, &[missing.clone(), Fake::Ok(MS)], &calls)
            .await
            .unwrap_err();
        assert_eq!((err.kind, err.attempts.len()), (ReadErrorKind::NotFound, 1));
        let h = health(2, &config);
        config.missing = MissingPolicy::Failover;
        let err = read(&h, &config, &[missing.clone(), missing], &calls)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ReadErrorKind::NotFound);
        assert_eq!(
            lock(&h).all_failed_total(),
            0,
            "a missing key is not an outage"
        );
    }

    fn archived() -> Answer {
        Answer::Archived {
            code: "InvalidObjectState".into(),
            storage_class: Some("DEEP_ARCHIVE".into()),
        }
    }

    #[tokio::test]
    async fn an_archived_copy_fails_over_and_the_error_names_each_archived_one() {
        let config = config();
        let h = health(3, &config);
        let calls = AtomicUsize::new(0);
        let one_archived = [Fake::Fail(archived()), Fake::Ok(MS), Fake::Ok(MS)];
        assert_eq!(read(&h, &config, &one_archived, &calls).await.unwrap().0, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            lock(&h).failing(Instant::now()),
            [false; 3],
            "an archived object is not a failing replica"
        );

        let h = health(3, &config);
        let all_archived = [
            Fake::Fail(archived()),
            Fake::Fail(Answer::Missing { code: None }),
            Fake::Fail(Answer::Archived {
                code: "ObjectNotInActiveTierError".into(),
                storage_class: None,
            }),
        ];
        let err = read(&h, &config, &all_archived, &calls).await.unwrap_err();
        assert_eq!(err.kind, ReadErrorKind::Archived);
        assert_eq!(
            err.to_string(),
            "every replica holding the object has it archived for \"k\": \
             r0@region-0: 403 InvalidObjectState (archived in DEEP_ARCHIVE: restore it to read); \
             r1@region-1: 404; \
             r2@region-2: 403 ObjectNotInActiveTierError (archived: restore it to read)"
        );
        assert_eq!(lock(&h).all_failed_total(), 0, "not an outage");

        let h = health(3, &config);
        let archived_or_down = [
            Fake::Fail(archived()),
            Fake::Fail(unavailable()),
            Fake::Fail(archived()),
        ];
        let err = read(&h, &config, &archived_or_down, &calls)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ReadErrorKind::AllFailed, "{err}");
        let archived: Vec<&str> = err
            .attempts
            .iter()
            .filter(|a| matches!(a.answer, Answer::Archived { .. }))
            .map(|a| a.replica.as_str())
            .collect();
        assert_eq!(archived, ["r0@region-0", "r2@region-2"]);
        assert_eq!(lock(&h).all_failed_total(), 1);

        // A trusted 404 is the answer, even after an archived copy.
        let strict = ReadConfig {
            missing: MissingPolicy::Fail,
            ..config.clone()
        };
        let h = health(3, &strict);
        let err = read(&h, &strict, &all_archived, &calls).await.unwrap_err();
        assert_eq!((err.kind, err.attempts.len()), (ReadErrorKind::NotFound, 2));
    }

    #[tokio::test]
    async fn breaker_skips_a_replica_that_keeps_failing() {
        let mut config = config();
        config.breaker = BreakerConfig {
            failures_to_open: 2,
            cooldown: Duration::from_secs(60),
            max_cooldown: Duration::from_secs(60),
        };
        let h = health(2, &config);
        let calls = AtomicUsize::new(0);
        let fakes = [Fake::Fail(unavailable()), Fake::Ok(MS)];
        for _ in 0..4 {
            assert_eq!(read(&h, &config, &fakes, &calls).await.unwrap().0, 1);
        }
        // Requests 1 and 3 started at replica 0 (2 failures: open); 2 and 4 at replica 1.
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        for _ in 0..4 {
            read(&h, &config, &fakes, &calls).await.unwrap();
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            10,
            "replica 0 is no longer asked"
        );
        let h2 = health(2, &config);
        let all_down = [Fake::Fail(unavailable()), Fake::Fail(unavailable())];
        for _ in 0..2 {
            let _ = read(&h2, &config, &all_down, &calls).await;
        }
        let err = read(&h2, &config, &all_down, &calls).await.unwrap_err();
        assert!(
            err.attempts.iter().all(|a| a.answer == Answer::CircuitOpen),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_budget_stops_retries_multiplying_an_outage() {
        let mut config = config();
        config.budget = BudgetConfig {
            capacity: 3.0,
            per_request: 0.1,
            per_second: 0.0,
        };
        config.breaker.failures_to_open = u32::MAX;
        let h = health(3, &config);
        let calls = AtomicUsize::new(0);
        let down = [
            Fake::Fail(unavailable()),
            Fake::Fail(unavailable()),
            Fake::Fail(unavailable()),
        ];
        let mut last = None;
        for _ in 0..100 {
            last = Some(read(&h, &config, &down, &calls).await.unwrap_err());
        }
        // 100 first attempts, the burst of 3 and about 10% more, instead of 300 requests.
        let calls = calls.load(Ordering::SeqCst);
        assert!((100..=116).contains(&calls), "{calls}");
        let last = last.unwrap();
        assert_eq!(
            last.attempts.len(),
            3,
            "every replica is still named: {last}"
        );
        assert!(last
            .attempts
            .iter()
            .any(|a| a.answer == Answer::BudgetExhausted));
    }

    #[tokio::test]
    async fn a_hedge_rescues_a_slow_first_attempt() {
        let mut config = config();
        config.hedge = Hedge::AfterPercentile {
            percentile: 90.0,
            min_delay: MS,
            min_samples: 5,
        };
        let h = health(2, &config);
        for _ in 0..20 {
            lock(&h).record(1, None, 2 * MS, Instant::now());
        }
        let calls = AtomicUsize::new(0);
        let fakes = [Fake::Ok(300 * MS), Fake::Ok(2 * MS)];
        let started = Instant::now();
        // Round-robin: the first request starts at the slow replica 0.
        let (served, _) = read(&h, &config, &fakes, &calls).await.unwrap();
        assert_eq!(served, 1);
        assert!(started.elapsed() < 150 * MS, "{:?}", started.elapsed());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // The slow replica's cancelled attempt still counts against its average.
        assert!(lock(&h).latencies()[0].is_some());

        config.hedge = Hedge::Off;
        let h = health(2, &config);
        let started = Instant::now();
        assert_eq!(read(&h, &config, &fakes, &calls).await.unwrap().0, 0);
        assert!(started.elapsed() >= 300 * MS);
    }

    #[tokio::test]
    async fn a_replica_known_to_be_slow_is_hedged_at_once() {
        let mut config = config();
        config.hedge = Hedge::AfterPercentile {
            percentile: 90.0,
            min_delay: MS,
            min_samples: 5,
        };
        let h = health(2, &config);
        for _ in 0..20 {
            lock(&h).record(1, None, 20 * MS, Instant::now());
        }
        lock(&h).record(0, None, 300 * MS, Instant::now());
        let calls = AtomicUsize::new(0);
        let fakes = [Fake::Ok(300 * MS), Fake::Ok(2 * MS)];
        let started = Instant::now();
        assert_eq!(read(&h, &config, &fakes, &calls).await.unwrap().0, 1);
        // Without the shortcut the hedge would wait for the 20 ms percentile.
        assert!(started.elapsed() < 15 * MS, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_near_replica_slowed_by_one_stall_is_not_hedged_at_once() {
        let mut config = config();
        config.hedge = Hedge::AfterPercentile {
            percentile: 90.0,
            min_delay: 5 * MS,
            min_samples: 5,
        };
        let h = health(2, &config);
        for replica in [0, 1] {
            for _ in 0..20 {
                lock(&h).record(replica, None, 2 * MS, Instant::now());
            }
        }
        // One stall: replica 0's average is now about 8 ms, above the 5 ms hedge delay, yet it
        // is still near the other (within 1.5x + 20 ms).
        lock(&h).record(0, None, 30 * MS, Instant::now());
        assert!(lock(&h).latencies()[0].unwrap() > 5 * MS);
        let calls = AtomicUsize::new(0);
        let fakes = [Fake::Ok(MS), Fake::Ok(MS)];
        assert_eq!(read(&h, &config, &fakes, &calls).await.unwrap().0, 0);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "answered before the delay: no second request"
        );
    }

    #[tokio::test]
    async fn a_hedged_read_does_not_start_at_a_distant_replica_without_a_token_to_hedge() {
        let mut config = config();
        config.hedge = Hedge::AfterPercentile {
            percentile: 90.0,
            min_delay: MS,
            min_samples: 5,
        };
        config.budget = BudgetConfig {
            capacity: 0.0,
            per_request: 0.0,
            per_second: 0.0,
        };
        let h = health(2, &config);
        for _ in 0..20 {
            lock(&h).record(1, None, 2 * MS, Instant::now());
        }
        lock(&h).record(0, None, 300 * MS, Instant::now());
        let calls = AtomicUsize::new(0);
        let fakes = [Fake::Ok(300 * MS), Fake::Ok(2 * MS)];
        let started = Instant::now();
        // Round-robin would start at the distant replica 0; with no token to hedge it at once
        // the read would wait 300 ms there.
        assert_eq!(read(&h, &config, &fakes, &calls).await.unwrap().0, 1);
        assert!(started.elapsed() < 100 * MS, "{:?}", started.elapsed());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_timeout_moves_on() {
        let mut config = config();
        config.attempt_timeout = 50 * MS;
        let h = health(2, &config);
        let calls = AtomicUsize::new(0);
        let fakes = [Fake::Ok(Duration::from_secs(10)), Fake::Ok(MS)];
        assert_eq!(read(&h, &config, &fakes, &calls).await.unwrap().0, 1);
        assert_eq!(lock(&h).failing(Instant::now()), [true, false]);
    }
}
