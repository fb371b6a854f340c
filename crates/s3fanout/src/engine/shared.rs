//! Reads of a source shared by the targets of one change. After a write, a target may only
//! trust a read of the source that began after its write landed; targets whose writes landed
//! together share one such read instead of making one each.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, OnceCell};
use tokio::time::Instant;

/// The latest shared read of one kind, and when it began.
pub(crate) struct Fresh<T> {
    latest: Mutex<Option<Arc<Flight<T>>>>,
}

struct Flight<T> {
    began: Instant,
    value: OnceCell<T>,
}

impl<T: Clone> Fresh<T> {
    /// No read yet.
    pub fn new() -> Self {
        Fresh {
            latest: Mutex::new(None),
        }
    }

    /// The value of a read that began at `since` or later: the latest one if it did, else a new
    /// one made with `read`.
    pub async fn get<F, Fut>(&self, since: Instant, read: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let flight = {
            let mut latest = self.latest.lock().expect("never poisoned");
            match &*latest {
                Some(flight) if flight.began >= since => flight.clone(),
                _ => {
                    let flight = Arc::new(Flight {
                        began: Instant::now(),
                        value: OnceCell::new(),
                    });
                    *latest = Some(flight.clone());
                    flight
                }
            }
        };
        flight.value.get_or_init(read).await.clone()
    }
}

/// How long a target whose write landed waits for the other targets' writes, so that one read
/// of the source serves them all: copies to several regions land within a few round trips.
pub(crate) const GATHER: Duration = Duration::from_millis(250);

/// Writes of one change in flight.
pub(crate) struct Writes {
    count: watch::Sender<usize>,
}

/// One write in flight; it ends when dropped.
pub(crate) struct Writing<'a>(&'a Writes);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.count.send_modify(|n| *n -= 1);
    }
}

impl Writes {
    /// None in flight.
    pub fn new() -> Self {
        Writes {
            count: watch::Sender::new(0),
        }
    }

    /// Counts a write until the guard is dropped.
    pub fn start(&self) -> Writing<'_> {
        self.count.send_modify(|n| *n += 1);
        Writing(self)
    }

    /// Waits, at most `GATHER`, until no write of the change is in flight.
    pub async fn gathered(&self) {
        let mut count = self.count.subscribe();
        let _ = tokio::time::timeout(GATHER, count.wait_for(|n| *n == 0)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_read_serves_only_writes_that_landed_before_it_began() {
        let fresh = Fresh::new();
        let reads = AtomicU32::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            reads.load(Ordering::Relaxed)
        };
        let landed = Instant::now();
        let (a, b) = tokio::join!(fresh.get(landed, read), fresh.get(landed, read));
        assert_eq!((a, b), (1, 1), "one read for both");
        // A write that landed after that read began needs a new one.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let later = Instant::now();
        assert_eq!(fresh.get(later, read).await, 2);
        assert_eq!(
            fresh.get(landed, read).await,
            2,
            "the latest read serves older writes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gathering_waits_for_writes_in_flight_but_not_forever() {
        let writes = Writes::new();
        let started = Instant::now();
        writes.gathered().await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        let writing = writes.start();
        let finish = async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            drop(writing);
        };
        tokio::join!(writes.gathered(), finish);
        assert_eq!(started.elapsed(), Duration::from_millis(40));
        let _stuck = writes.start();
        let started = Instant::now();
        writes.gathered().await;
        assert_eq!(started.elapsed(), GATHER);
    }
}
