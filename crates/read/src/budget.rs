//! The retry budget: a token bucket that every request fills a little and every extra attempt
//! (failover or hedge) drains, so that during an outage retries stay a bounded share of the
//! traffic instead of multiplying it by the number of replicas.

use std::time::Instant;

/// The size and refill of the retry budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Tokens the bucket holds (and starts with): the burst of extra attempts allowed.
    pub capacity: f64,
    /// Tokens each request adds: the long-run ratio of extra attempts to requests.
    pub per_request: f64,
    /// Tokens added per second whatever the traffic, so that a quiet client can still fail over.
    pub per_second: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            capacity: 20.0,
            per_request: 0.2,
            per_second: 2.0,
        }
    }
}

/// A token bucket of extra attempts.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    config: BudgetConfig,
    tokens: f64,
    refilled: Instant,
}

impl RetryBudget {
    /// A full bucket.
    pub fn new(config: BudgetConfig, now: Instant) -> Self {
        RetryBudget {
            config,
            tokens: config.capacity,
            refilled: now,
        }
    }

    /// A new request started.
    pub fn deposit(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens + self.config.per_request).min(self.config.capacity);
    }

    /// Takes one token for an extra attempt; false when the budget is spent.
    pub fn withdraw(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether `withdraw` would succeed now, without taking the token.
    pub fn can_withdraw(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    /// Tokens left (for tests and diagnostics).
    pub fn tokens(&self) -> f64 {
        self.tokens
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled);
        self.refilled = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.config.per_second)
            .min(self.config.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bounds_extra_attempts_to_a_share_of_requests() {
        let t0 = Instant::now();
        let config = BudgetConfig {
            capacity: 5.0,
            per_request: 0.1,
            per_second: 0.0,
        };
        let mut budget = RetryBudget::new(config, t0);
        // During an outage every request wants two extra attempts.
        let mut extra = 0;
        for _ in 0..1000 {
            budget.deposit(t0);
            for _ in 0..2 {
                if budget.withdraw(t0) {
                    extra += 1;
                }
            }
        }
        // The burst (5) plus 10% of 1000 requests, not 2000.
        assert!((100..=106).contains(&extra), "{extra}");
    }

    #[test]
    fn refills_with_time_up_to_capacity() {
        let t0 = Instant::now();
        let config = BudgetConfig {
            capacity: 2.0,
            per_request: 0.0,
            per_second: 1.0,
        };
        let mut budget = RetryBudget::new(config, t0);
        assert!(budget.withdraw(t0) && budget.withdraw(t0));
        assert!(!budget.withdraw(t0));
        assert!(budget.withdraw(t0 + Duration::from_secs(1)));
        assert!(!budget.withdraw(t0 + Duration::from_secs(1)));
        let later = t0 + Duration::from_secs(100);
        budget.deposit(later);
        assert_eq!(budget.tokens(), 2.0);
    }
}
