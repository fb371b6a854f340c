//! Time to first byte: a moving average per replica (for ordering) and a window of recent
//! samples across replicas (for the hedging delay).

use std::collections::VecDeque;
use std::time::Duration;

/// Exponentially weighted moving average of one replica's time to first byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ewma {
    micros: Option<f64>,
}

/// Weight of the newest sample: about the last ten requests dominate.
const ALPHA: f64 = 0.2;

impl Ewma {
    /// Adds a sample.
    pub fn record(&mut self, sample: Duration) {
        let x = sample.as_secs_f64() * 1e6;
        self.micros = Some(match self.micros {
            Some(avg) => avg + ALPHA * (x - avg),
            None => x,
        });
    }

    /// The average, once there is a sample.
    pub fn get(&self) -> Option<Duration> {
        self.micros.map(|m| Duration::from_secs_f64(m / 1e6))
    }
}

/// The last `capacity` samples, for percentiles.
#[derive(Debug, Clone)]
pub struct Window {
    samples: VecDeque<Duration>,
    capacity: usize,
}

impl Window {
    /// An empty window.
    pub fn new(capacity: usize) -> Self {
        Window {
            samples: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// Adds a sample, forgetting the oldest when full.
    pub fn record(&mut self, sample: Duration) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The `p`-th percentile (0–100, nearest rank), or `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<Duration> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * sorted.len() as f64).ceil() as usize;
        Some(sorted[rank.clamp(1, sorted.len()) - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ewma_follows_recent_samples() {
        let mut e = Ewma::default();
        assert_eq!(e.get(), None);
        e.record(100 * MS);
        assert_eq!(e.get(), Some(100 * MS));
        for _ in 0..30 {
            e.record(10 * MS);
        }
        let avg = e.get().unwrap();
        assert!(avg < 11 * MS && avg > 10 * MS, "{avg:?}");
    }

    #[test]
    fn percentiles_over_the_window() {
        let mut w = Window::new(100);
        assert_eq!(w.percentile(99.0), None);
        for i in 1..=200u32 {
            w.record(i * MS);
        }
        assert_eq!(w.len(), 100);
        assert_eq!(w.percentile(50.0), Some(150 * MS));
        assert_eq!(w.percentile(99.0), Some(199 * MS));
        assert_eq!(w.percentile(100.0), Some(200 * MS));
        assert_eq!(w.percentile(0.0), Some(101 * MS));
    }
}
