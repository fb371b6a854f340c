//! The invocation's deadline: no new request starts within the safety margin, and whatever is
//! still in flight near the end is stopped (multipart uploads aborted) and reported failed so it
//! is retried, rather than the function being killed mid-way by the timeout.

use std::time::{Duration, Instant};

use crate::outcome::Outcome;

/// When to stop starting and when to stop waiting.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    soft: Option<Instant>,
    hard: Option<Instant>,
    margin: Duration,
}

impl Deadline {
    /// No deadline (command-line runs, tests).
    pub fn none() -> Self {
        Deadline {
            soft: None,
            hard: None,
            margin: Duration::ZERO,
        }
    }

    /// A deadline at `at`: new requests stop `margin` before it, in-flight work a quarter of the
    /// margin before it, which leaves time to abort uploads and answer.
    pub fn at(at: Instant, margin: Duration) -> Self {
        Deadline {
            soft: Some(at.checked_sub(margin).unwrap_or_else(Instant::now)),
            hard: Some(at.checked_sub(margin / 4).unwrap_or_else(Instant::now)),
            margin,
        }
    }

    /// A deadline given as Lambda gives it: milliseconds since the Unix epoch.
    pub fn from_epoch_millis(deadline_ms: u64, margin: Duration) -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let remaining = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
        Self::at(Instant::now() + remaining, margin)
    }

    /// When in-flight work is stopped; far in the future without a deadline.
    pub fn hard(&self) -> Instant {
        self.hard
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600))
    }

    /// `Some(failure)` when no new request may start.
    pub fn refuse_new_work(&self) -> Option<Outcome> {
        match self.soft {
            Some(soft) if Instant::now() >= soft => Some(Outcome::Failed {
                retryable: true,
                error: format!(
                    "not started: less than {} ms left before the invocation deadline",
                    self.margin.as_millis()
                ),
            }),
            _ => None,
        }
    }

    /// The failure reported for work stopped in flight at the deadline.
    pub fn stopped_in_flight(&self) -> Outcome {
        Outcome::Failed {
            retryable: true,
            error: "stopped in flight at the invocation deadline".into(),
        }
    }
}
