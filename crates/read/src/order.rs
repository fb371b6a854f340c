//! The order in which one request tries the replicas.
//!
//! The first replica rotates across requests (smooth weighted round-robin), so every copy
//! serves traffic every day and a broken one is noticed before it is needed. With
//! latency-aware ordering, replicas whose average time to first byte is close to the fastest
//! one's ("near") get a larger weight than distant ones, which keep a small share so that
//! their average stays current. The remaining replicas follow fastest first.
//!
//! The rotation of a new reader begins at a replica drawn at random, so that programs making
//! one read per process (a command run per request) spread their first attempts too, instead
//! of all starting at the first replica listed. A listed order pins the order instead.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How the first replica of each request is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaOrder {
    /// Every replica starts the same share of requests.
    RoundRobin,
    /// Near replicas start `near_weight` times as many requests as distant ones.
    LatencyAware {
        /// A replica is near when its average is within this factor of the fastest one's,
        /// plus `slack` (so that noise between equally near replicas does not count).
        factor_percent: u32,
        /// Absolute tolerance added to the factor.
        slack: Duration,
        /// Weight of a near replica; a distant one weighs 1.
        near_weight: u32,
    },
    /// Always the order in which the replicas are listed: the first serves every request
    /// while its breaker is closed, the others are backups, tried in list order. Nothing
    /// rotates, so the backups serve no traffic until they are needed.
    Listed,
}

/// Where the rotation of a new reader begins. A listed order ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RotationStart {
    /// A replica drawn at random when the reader is made.
    #[default]
    Random,
    /// This replica (its index in the list): every reader then takes the same turns, as
    /// tests and reproducible runs need.
    At(usize),
}

impl RotationStart {
    /// The index where a rotation over `n` replicas begins.
    pub fn resolve(self, n: usize) -> usize {
        match self {
            _ if n == 0 => 0,
            RotationStart::At(index) => index % n,
            // The remainder's bias is below 2^-60 for any realistic number of replicas.
            RotationStart::Random => (random_u64() % n as u64) as usize,
        }
    }
}

/// 64 random bits from the operating system. Should it fail (no entropy source at all), the
/// standard library's per-process random hash keys, mixed with the clock, still differ from
/// one process to the next.
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

const NEAR_FACTOR_PERCENT: u32 = 150;
const NEAR_SLACK: Duration = Duration::from_millis(20);

impl Default for ReplicaOrder {
    fn default() -> Self {
        ReplicaOrder::LatencyAware {
            factor_percent: NEAR_FACTOR_PERCENT,
            slack: NEAR_SLACK,
            near_weight: 10,
        }
    }
}

/// What the orderer knows about one replica.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Average time to first byte, when known.
    pub latency: Option<Duration>,
    /// Whether its breaker would refuse a request now.
    pub open: bool,
}

/// Smooth weighted round-robin state (as in nginx): the starts of consecutive requests
/// interleave instead of coming in runs. Ties for the first attempt go to the replica nearest
/// after the rotation's start in list order, so that equal weights take turns from the start
/// on; ties among the backups go to the one nearest after the first attempt's, so that each
/// replica is the first backup as often as the others.
#[derive(Debug, Clone)]
pub struct Rotation {
    current: Vec<i64>,
    start: usize,
}

impl Rotation {
    /// State for `n` replicas, beginning at the first.
    pub fn new(n: usize) -> Self {
        Self::starting_at(n, 0)
    }

    /// State for `n` replicas, beginning at replica `start` (modulo `n`).
    pub fn starting_at(n: usize, start: usize) -> Self {
        Rotation {
            current: vec![0; n],
            start: if n == 0 { 0 } else { start % n },
        }
    }

    /// The replica's place in the list read from `from`, wrapping around.
    fn rank(&self, i: usize, from: usize) -> usize {
        let n = self.current.len();
        (i + n - from) % n
    }

    /// The replicas in the order one request tries them: the rotating first choice, then the
    /// others fastest first (unknown latency counts as fast, to learn it, and equal ones in
    /// list order after the first); replicas whose breaker is open come last. A listed order keeps the list's order, open breakers last.
    pub fn order(&mut self, candidates: &[Candidate], ordering: ReplicaOrder) -> Vec<usize> {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        if ordering == ReplicaOrder::Listed {
            order.sort_by_key(|&i| (candidates[i].open, i));
            return order;
        }
        let weights = weights(candidates, ordering);
        let total: i64 = weights.iter().sum();
        if total == 0 {
            return order;
        }
        for (current, weight) in self.current.iter_mut().zip(&weights) {
            *current += weight;
        }
        let first = (0..candidates.len())
            .filter(|&i| weights[i] > 0)
            .max_by_key(|&i| (self.current[i], std::cmp::Reverse(self.rank(i, self.start))))
            .unwrap_or(0);
        self.current[first] -= total;
        order.sort_by_key(|&i| {
            (
                i != first,
                candidates[i].open,
                candidates[i].latency.unwrap_or(Duration::ZERO),
                self.rank(i, first),
            )
        });
        order
    }
}

/// How far a replica is from the fastest one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distance {
    /// Within the ordering's factor and slack of the fastest replica, or not measured yet.
    Near,
    /// Slower than that: it keeps a small share of first attempts, and a hedged read that
    /// starts there asks a near replica at once.
    Distant,
}

impl ReplicaOrder {
    /// Whether a replica whose average is `latency` is near the `fastest` one. Round-robin and
    /// listed orders do not weigh replicas by distance, but hedging still needs to tell a
    /// distant replica from noise, so they use the latency-aware default's thresholds.
    pub fn distance(self, latency: Option<Duration>, fastest: Option<Duration>) -> Distance {
        let (factor_percent, slack) = match self {
            ReplicaOrder::LatencyAware {
                factor_percent,
                slack,
                ..
            } => (factor_percent, slack),
            ReplicaOrder::RoundRobin | ReplicaOrder::Listed => (NEAR_FACTOR_PERCENT, NEAR_SLACK),
        };
        match (latency, fastest) {
            (Some(latency), Some(fastest)) if latency > fastest * factor_percent / 100 + slack => {
                Distance::Distant
            }
            _ => Distance::Near,
        }
    }
}

/// The smallest average among replicas whose breaker is closed.
pub fn fastest(candidates: &[Candidate]) -> Option<Duration> {
    candidates
        .iter()
        .filter(|c| !c.open)
        .filter_map(|c| c.latency)
        .min()
}

fn weights(candidates: &[Candidate], ordering: ReplicaOrder) -> Vec<i64> {
    let fastest = fastest(candidates);
    candidates
        .iter()
        .map(|c| match (ordering, c.open) {
            (_, true) => 0,
            (ReplicaOrder::RoundRobin | ReplicaOrder::Listed, false) => 1,
            (ReplicaOrder::LatencyAware { near_weight, .. }, false) => {
                match ordering.distance(c.latency, fastest) {
                    Distance::Near => i64::from(near_weight.max(1)),
                    Distance::Distant => 1,
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firsts(candidates: &[Candidate], ordering: ReplicaOrder, n: usize) -> Vec<usize> {
        let mut rotation = Rotation::new(candidates.len());
        let mut counts = vec![0; candidates.len()];
        for _ in 0..n {
            counts[rotation.order(candidates, ordering)[0]] += 1;
        }
        counts
    }

    fn at(ms: u64) -> Candidate {
        Candidate {
            latency: Some(Duration::from_millis(ms)),
            open: false,
        }
    }

    #[test]
    fn equally_near_replicas_take_turns() {
        let candidates = [at(5), at(9), at(20)];
        let mut rotation = Rotation::new(3);
        let starts: Vec<usize> = (0..6)
            .map(|_| rotation.order(&candidates, ReplicaOrder::default())[0])
            .collect();
        assert_eq!(starts, [0, 1, 2, 0, 1, 2]);
        assert_eq!(
            firsts(&candidates, ReplicaOrder::RoundRobin, 300),
            [100, 100, 100]
        );
    }

    #[test]
    fn distant_replicas_keep_a_share() {
        let candidates = [at(200), at(5), at(6)];
        let counts = firsts(&candidates, ReplicaOrder::default(), 210);
        assert_eq!(counts, [10, 100, 100]);
    }

    #[test]
    fn open_breakers_go_last_and_do_not_start() {
        let mut candidates = [at(5), at(6), at(7)];
        candidates[0].open = true;
        let counts = firsts(&candidates, ReplicaOrder::default(), 100);
        assert_eq!(counts, [0, 50, 50]);
        let mut rotation = Rotation::new(3);
        assert_eq!(
            rotation.order(&candidates, ReplicaOrder::default()),
            [1, 2, 0]
        );
    }

    #[test]
    fn failover_order_is_fastest_first_after_the_start() {
        let candidates = [at(50), at(5), at(300)];
        let mut rotation = Rotation::new(3);
        let order = rotation.order(&candidates, ReplicaOrder::RoundRobin);
        assert_eq!(order, [0, 1, 2]);
        let order = rotation.order(&candidates, ReplicaOrder::RoundRobin);
        assert_eq!(order, [1, 0, 2]);
        let order = rotation.order(&candidates, ReplicaOrder::RoundRobin);
        assert_eq!(order, [2, 1, 0]);
    }

    #[test]
    fn turns_begin_at_the_start_and_ties_follow_it() {
        let unknown = [Candidate {
            latency: None,
            open: false,
        }; 3];
        for ordering in [ReplicaOrder::default(), ReplicaOrder::RoundRobin] {
            let mut rotation = Rotation::starting_at(3, 2);
            let orders: Vec<Vec<usize>> =
                (0..3).map(|_| rotation.order(&unknown, ordering)).collect();
            assert_eq!(orders, [[2, 0, 1], [0, 1, 2], [1, 2, 0]], "{ordering:?}");
        }
        let mut rotation = Rotation::starting_at(3, 1);
        let starts: Vec<usize> = (0..6)
            .map(|_| rotation.order(&[at(5), at(9), at(20)], ReplicaOrder::default())[0])
            .collect();
        assert_eq!(starts, [1, 2, 0, 1, 2, 0]);
        // Weights still decide: a distant replica does not start first just because the
        // rotation begins there.
        let counts = {
            let mut rotation = Rotation::starting_at(3, 0);
            let mut counts = [0; 3];
            for _ in 0..210 {
                counts[rotation.order(&[at(200), at(5), at(6)], ReplicaOrder::default())[0]] += 1;
            }
            counts
        };
        assert_eq!(counts, [10, 100, 100]);
    }

    #[test]
    fn a_listed_order_is_pinned() {
        let mut candidates = [at(300), at(5), at(6)];
        let mut rotation = Rotation::starting_at(3, 2);
        for _ in 0..5 {
            assert_eq!(rotation.order(&candidates, ReplicaOrder::Listed), [0, 1, 2]);
        }
        candidates[0].open = true;
        assert_eq!(rotation.order(&candidates, ReplicaOrder::Listed), [1, 2, 0]);
    }

    #[test]
    fn a_random_start_lands_on_every_replica() {
        let mut counts = [0usize; 3];
        for _ in 0..300 {
            counts[RotationStart::Random.resolve(3)] += 1;
        }
        // Each count is about 100 (standard deviation 8): a fixed start gives [300, 0, 0].
        assert!(counts.iter().all(|&n| n >= 50), "{counts:?}");
        assert_eq!(RotationStart::At(1).resolve(3), 1);
        assert_eq!(RotationStart::At(4).resolve(3), 1);
        assert_eq!(RotationStart::Random.resolve(0), 0);
        assert_eq!(RotationStart::Random.resolve(1), 0);
    }

    #[test]
    fn all_open_keeps_index_order() {
        let candidates = [Candidate {
            latency: None,
            open: true,
        }; 2];
        assert_eq!(
            Rotation::new(2).order(&candidates, ReplicaOrder::default()),
            [0, 1]
        );
    }
}
