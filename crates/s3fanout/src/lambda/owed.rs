//! Work owed to one target: changes that failed there only transiently (the target unavailable,
//! throttling, the deadline), posted to the retry queue and tried later at that target alone.
//!
//! A change that failed at one target of four is not delivered again to the other three, and a
//! target down for hours keeps its changes waiting in the queue, where they neither expire (each
//! posting is a new message) nor reach the dead-letter queue: that receives only what can never
//! succeed (malformed messages, permanent refusals).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::EventError;
use crate::core::change::Change;
use crate::core::config::{Config, Target};

/// The field that tells owed work apart from a notification; its value is the format version.
pub const MARK: &str = "s3fanout_owed";
const VERSION: u32 = 1;

/// The first delay of work that failed transiently.
pub const FIRST_DELAY: Duration = Duration::from_secs(10);
/// The longest delay, and the delay of work held by an open breaker: with the breaker's
/// longest pause between probes, it bounds how long after a target's recovery its waiting
/// changes reach it (SQS allows at most 15 minutes).
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// Bodies stay well under SQS's 256 KiB message limit.
const MAX_BODY: usize = 200_000;

/// A target as owed work names it: a configuration may list one bucket under two prefixes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TargetName {
    /// Replica bucket.
    pub bucket: String,
    /// Key prefix in the bucket.
    #[serde(default)]
    pub prefix: String,
}

impl TargetName {
    /// The name of a configured target.
    pub fn of(target: &Target) -> Self {
        TargetName {
            bucket: target.bucket.clone(),
            prefix: target.prefix.clone(),
        }
    }

    /// The configured target of this name, if the configuration still has it.
    pub fn find<'c>(&self, config: &'c Config) -> Option<&'c Target> {
        config
            .targets
            .iter()
            .find(|t| t.bucket == self.bucket && t.prefix == self.prefix)
    }
}

/// Changes owed to one target, as one retry-queue message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwedWork {
    /// Format version ([`MARK`]).
    #[serde(rename = "s3fanout_owed")]
    pub version: u32,
    /// The target the changes are owed to.
    pub target: TargetName,
    /// When the oldest of these changes first failed at the target (ms since the Unix epoch).
    pub since_ms: u64,
    /// How many times this work was posted before.
    pub tries: u32,
    /// Whether the target's breaker held the work (nothing was sent to the target).
    #[serde(default)]
    pub held: bool,
    /// The changes, as first announced.
    pub changes: Vec<Change>,
}

impl OwedWork {
    /// How long the message waits in the queue before it is delivered.
    pub fn delay(&self) -> Duration {
        if self.held {
            return MAX_DELAY;
        }
        FIRST_DELAY
            .saturating_mul(1 << self.tries.min(16))
            .min(MAX_DELAY)
    }
}

/// Where delivered owed work comes from: its target, and how long it has waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owing {
    /// The target the changes are owed to.
    pub target: TargetName,
    /// When the oldest change first failed there (ms since the Unix epoch).
    pub since_ms: u64,
    /// Postings so far.
    pub tries: u32,
}

impl OwedWork {
    /// The work's origin, and its changes.
    pub fn split(self) -> (Owing, Vec<Change>) {
        let owing = Owing {
            target: self.target,
            since_ms: self.since_ms,
            tries: self.tries,
        };
        (owing, self.changes)
    }
}

/// Reads owed work from a message body; `None` when the body is not owed work.
pub fn parse(body: &Value) -> Option<Result<OwedWork, EventError>> {
    let version = body.get(MARK)?;
    if version.as_u64() != Some(u64::from(VERSION)) {
        return Some(Err(EventError(format!(
            "owed work of format {version}: this function reads format {VERSION}"
        ))));
    }
    Some(OwedWork::deserialize(body).map_err(|e| EventError(format!("owed work: {e}"))))
}

/// One failed change at one target, to be posted.
#[derive(Debug, Clone)]
pub struct Debt {
    /// The target.
    pub target: TargetName,
    /// The change.
    pub change: Change,
    /// When it first failed at the target (ms since the Unix epoch).
    pub since_ms: u64,
    /// Postings before this one.
    pub tries: u32,
    /// Whether the breaker held it.
    pub held: bool,
    /// Which delivery it came from (an index the caller gives).
    pub from: usize,
}

/// A message to post, and the deliveries whose debts it carries.
#[derive(Debug, Clone)]
pub struct Letter {
    /// The work.
    pub work: OwedWork,
    /// The message body.
    pub body: String,
    /// Indexes of the deliveries it carries debts of.
    pub from: Vec<usize>,
}

/// Groups debts by target (and whether they were held) into messages under SQS's size limit:
/// work waiting through a long outage gathers into a few messages instead of one per change.
pub fn letters(debts: Vec<Debt>) -> Vec<Letter> {
    let mut groups: BTreeMap<(TargetName, bool), Vec<Debt>> = BTreeMap::new();
    for debt in debts {
        groups
            .entry((debt.target.clone(), debt.held))
            .or_default()
            .push(debt);
    }
    let mut letters = Vec::new();
    for ((target, held), debts) in groups {
        // The most tried of them sets the delay.
        let tries = debts.iter().map(|d| d.tries).max().unwrap_or_default();
        let mut chunk: Vec<Debt> = Vec::new();
        let mut size = 0;
        for debt in debts {
            let change_size = serde_json::to_string(&debt.change).map_or(0, |s| s.len()) + 1;
            if !chunk.is_empty() && size + change_size > MAX_BODY {
                letters.push(letter(&target, held, tries, std::mem::take(&mut chunk)));
                size = 0;
            }
            size += change_size;
            chunk.push(debt);
        }
        if !chunk.is_empty() {
            letters.push(letter(&target, held, tries, chunk));
        }
    }
    letters
}

fn letter(target: &TargetName, held: bool, tries: u32, debts: Vec<Debt>) -> Letter {
    let since_ms = debts.iter().map(|d| d.since_ms).min().unwrap_or_default();
    let mut from: Vec<usize> = debts.iter().map(|d| d.from).collect();
    from.sort_unstable();
    from.dedup();
    let work = OwedWork {
        version: VERSION,
        target: target.clone(),
        since_ms,
        tries,
        held,
        changes: debts.into_iter().map(|d| d.change).collect(),
    };
    let body = serde_json::to_string(&work).expect("owed work serialises");
    Letter { work, body, from }
}

/// Where owed work is posted: the retry queue.
pub trait Mailbox: Sync {
    /// Posts each body after its delay; answers, for each, whether it was accepted.
    fn post(&self, letters: &[(String, Duration)]) -> impl Future<Output = Vec<bool>> + Send;
}

/// No retry queue: failed deliveries are reported failed and delivered again whole.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMailbox;

impl Mailbox for NoMailbox {
    async fn post(&self, letters: &[(String, Duration)]) -> Vec<bool> {
        vec![false; letters.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn debt(bucket: &str, key: &str, from: usize, held: bool) -> Debt {
        Debt {
            target: TargetName {
                bucket: bucket.into(),
                prefix: String::new(),
            },
            change: Change::created("src", key).with_etag("e"),
            since_ms: 1000 + from as u64,
            tries: 0,
            held,
            from,
        }
    }

    #[test]
    fn debts_are_grouped_per_target_and_read_back() {
        let letters = letters(vec![
            debt("a", "k1", 0, false),
            debt("b", "k1", 0, true),
            debt("a", "k2", 1, false),
        ]);
        assert_eq!(letters.len(), 2);
        let a = &letters[0];
        assert_eq!(a.work.target.bucket, "a");
        assert_eq!(a.from, [0, 1]);
        assert_eq!(a.work.since_ms, 1000);
        let read = parse(&serde_json::from_str(&a.body).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(read, a.work);
        assert_eq!(read.changes.len(), 2);
        assert_eq!(
            letters[1].work.delay(),
            MAX_DELAY,
            "held work waits longest"
        );
    }

    #[test]
    fn large_debts_are_split_under_the_message_limit() {
        let key = "k".repeat(1000);
        let debts = (0..500)
            .map(|i| debt("a", &format!("{key}{i}"), i, false))
            .collect();
        let letters = letters(debts);
        assert!(letters.len() > 1);
        assert!(letters.iter().all(|l| l.body.len() < 256 * 1024));
        let total: usize = letters.iter().map(|l| l.work.changes.len()).sum();
        assert_eq!(total, 500);
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let delays: Vec<u64> = (0..8)
            .map(|tries| {
                let mut work = letters(vec![debt("a", "k", 0, false)]).remove(0).work;
                work.tries = tries;
                work.delay().as_secs()
            })
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn notifications_are_not_owed_work_and_other_formats_are_refused() {
        assert!(parse(&json!({"Records": []})).is_none());
        let err = parse(&json!({"s3fanout_owed": 2})).unwrap().unwrap_err();
        assert!(err.0.contains("format 2"), "{err}");
        let err = parse(&json!({"s3fanout_owed": 1, "target": {}}))
            .unwrap()
            .unwrap_err();
        assert!(err.0.contains("owed work"), "{err}");
    }
}
