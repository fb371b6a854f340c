//! The invocation's deadline: no new request starts within the safety margin, and whatever is
//! still in flight near the end is stopped (multipart uploads aborted) and reported failed so it
//! is retried, rather than the function being killed mid-way by the timeout.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::core::outcome::{Failure, FailureKind};

/// When to stop starting and when to stop waiting. Times are tokio's, so that a simulation
/// with a paused clock runs deadlines exactly and without sleeping.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    soft: Option<Instant>,
    hard: Option<Instant>,
    margin: Duration,
    /// The whole invocation's working time, from its start to the soft stop.
    window: Option<Duration>,
}

impl Deadline {
    /// No deadline (command-line runs, tests).
    pub fn none() -> Self {
        Deadline {
            soft: None,
            hard: None,
            margin: Duration::ZERO,
            window: None,
        }
    }

    /// A deadline at `at`: new requests stop `margin` before it, in-flight work a quarter of the
    /// margin before it, which leaves time to abort uploads and answer.
    pub fn at(at: Instant, margin: Duration) -> Self {
        let soft = at.checked_sub(margin).unwrap_or_else(Instant::now);
        Deadline {
            soft: Some(soft),
            hard: Some(at.checked_sub(margin / 4).unwrap_or_else(Instant::now)),
            margin,
            window: Some(soft.saturating_duration_since(Instant::now())),
        }
    }

    /// A deadline `remaining` from now.
    pub fn after(remaining: Duration, margin: Duration) -> Self {
        Self::at(Instant::now() + remaining, margin.min(remaining / 4))
    }

    /// A deadline given as Lambda gives it: milliseconds since the Unix epoch. The margin is at
    /// most a quarter of the time left, so that a function with a short timeout still works.
    /// A value that cannot be a point in time (local emulators send a duration) means no
    /// deadline is known.
    pub fn from_epoch_millis(deadline_ms: u64, margin: Duration) -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        const DAY_MS: u64 = 24 * 3600 * 1000;
        if deadline_ms + DAY_MS < now_ms {
            tracing::warn!(
                deadline_ms,
                "invocation deadline is not a time since the epoch; running without one"
            );
            return Self::none();
        }
        Self::after(
            Duration::from_millis(deadline_ms.saturating_sub(now_ms)),
            margin,
        )
    }

    /// `Some(failure)` when no new request may start.
    pub fn refuse_new_work(&self) -> Option<Failure> {
        match self.soft {
            Some(soft) if Instant::now() >= soft => Some(Failure::new(
                FailureKind::Deferred,
                format!(
                    "not started: less than {} ms left before the invocation deadline",
                    self.margin.as_millis()
                ),
            )),
            _ => None,
        }
    }

    /// How long this invocation may work in all (from its start to the soft stop).
    pub fn window(&self) -> Option<Duration> {
        self.window
    }

    /// Whether no new request may start.
    pub fn passed_soft(&self) -> bool {
        self.refuse_new_work().is_some()
    }

    /// The failure reported for work stopped in flight at the deadline.
    pub fn stopped_in_flight(&self) -> Failure {
        Failure::new(
            FailureKind::Deferred,
            "stopped in flight at the invocation deadline",
        )
    }

    /// Runs `work` until the hard stop; work still running then is dropped and reported deferred.
    pub async fn bound<T>(
        &self,
        work: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        match self.hard {
            None => work.await,
            Some(hard) => match tokio::time::timeout_at(hard, work).await {
                Ok(result) => result,
                Err(_) => Err(self.stopped_in_flight()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch_ms_in(d: Duration) -> u64 {
        (std::time::SystemTime::now() + d)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[test]
    fn short_invocations_keep_three_quarters_of_their_time() {
        let deadline = Deadline::from_epoch_millis(
            epoch_ms_in(Duration::from_secs(3)),
            Duration::from_secs(10),
        );
        assert!(
            deadline.refuse_new_work().is_none(),
            "a 3 s invocation can start work"
        );
        assert!(deadline.margin <= Duration::from_millis(750));
    }

    #[test]
    fn a_deadline_that_is_not_a_point_in_time_means_none() {
        let deadline = Deadline::from_epoch_millis(600_000, Duration::from_secs(10));
        assert!(deadline.refuse_new_work().is_none());
        assert!(deadline.soft.is_none());
    }

    #[test]
    fn long_invocations_use_the_configured_margin() {
        let deadline = Deadline::from_epoch_millis(
            epoch_ms_in(Duration::from_secs(900)),
            Duration::from_secs(10),
        );
        assert_eq!(deadline.margin, Duration::from_secs(10));
    }

    #[test]
    fn past_the_soft_deadline_work_is_refused_as_retryable() {
        let deadline = Deadline::at(
            Instant::now() + Duration::from_millis(5),
            Duration::from_millis(10),
        );
        let refused = deadline.refuse_new_work().expect("past the soft deadline");
        assert_eq!(refused.kind, FailureKind::Deferred);
        assert!(refused.message.contains("deadline"));
        assert!(Deadline::none().refuse_new_work().is_none());
    }
}
