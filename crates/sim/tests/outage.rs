//! A target region down for twelve hours under a steady workload, in virtual time: the queue,
//! the retry queue and the dead-letter queue modelled as SQS behaves (visibility timeout,
//! receive counts, `maxReceiveCount`, message delays), three execution environments each with
//! its own breakers. Nothing may be lost or dead-lettered, the healthy targets must not fall
//! behind, the down target must receive a bounded number of requests, and once it recovers
//! every change made meanwhile must reach it within 15 minutes.
//! `OUTAGE_HOURS=N` changes the outage's length.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use s3fanout::engine::breaker::BreakerSettings;
use s3fanout::lambda::invocation::{self, Handled};
use s3fanout::lambda::owed::Mailbox;
use s3fanout::{Config, Deadline, Replicator, Target};
use s3fanout_sim::{Faults, NewObject, Notice, Rng, SimStore};
use serde_json::{json, Value};
use tokio::time::Instant;

const SOURCE: &str = "source";
const DOWN: &str = "replica-0";
const KEYS: u64 = 300;
/// A write to the source every this often.
const WRITE_EVERY: Duration = Duration::from_secs(20);
/// The function's timeout is 300 s; the template sets the queue's visibility timeout to six
/// times that.
const VISIBILITY: Duration = Duration::from_secs(1800);
const MAX_RECEIVE_COUNT: u32 = 5;
/// Lambda's poller: a batch of at most ten messages, looked for every second.
const BATCH: usize = 10;
const TICK: Duration = Duration::from_secs(1);
const ENVIRONMENTS: usize = 3;

#[derive(Debug)]
struct Message {
    id: String,
    body: String,
    visible_at: Instant,
    receives: u32,
}

/// One SQS queue, with its dead-letter queue.
#[derive(Debug, Default)]
struct Queue {
    name: &'static str,
    messages: Vec<Message>,
    dead: Vec<Message>,
    next: u64,
    sent: u64,
}

impl Queue {
    fn named(name: &'static str) -> Self {
        Queue {
            name,
            ..Queue::default()
        }
    }

    fn send(&mut self, body: String, delay: Duration) {
        self.next += 1;
        self.sent += 1;
        self.messages.push(Message {
            id: format!("{}-{}", self.name, self.next),
            body,
            visible_at: Instant::now() + delay,
            receives: 0,
        });
    }

    /// A receive: visible messages become invisible for the visibility timeout; one received
    /// more than `maxReceiveCount` times moves to the dead-letter queue instead.
    fn receive(&mut self) -> Vec<(String, String, u32)> {
        let now = Instant::now();
        let mut batch = Vec::new();
        let mut i = 0;
        while i < self.messages.len() && batch.len() < BATCH {
            if self.messages[i].visible_at > now {
                i += 1;
                continue;
            }
            if self.messages[i].receives >= MAX_RECEIVE_COUNT {
                let dead = self.messages.remove(i);
                self.dead.push(dead);
                continue;
            }
            let m = &mut self.messages[i];
            m.receives += 1;
            m.visible_at = now + VISIBILITY;
            batch.push((m.id.clone(), m.body.clone(), m.receives));
            i += 1;
        }
        batch
    }

    fn delete(&mut self, id: &str) {
        self.messages.retain(|m| m.id != id);
    }

    fn make_visible_after(&mut self, id: &str, delay: Duration) {
        if let Some(m) = self.messages.iter_mut().find(|m| m.id == id) {
            m.visible_at = Instant::now() + delay;
        }
    }
}

/// The retry queue, as the function posts to it.
#[derive(Clone)]
struct RetryQueue(Arc<Mutex<Queue>>);

impl Mailbox for RetryQueue {
    async fn post(&self, letters: &[(String, Duration)]) -> Vec<bool> {
        let mut queue = self.0.lock().unwrap();
        for (body, delay) in letters {
            queue.send(body.clone(), (*delay).min(Duration::from_secs(900)));
        }
        vec![true; letters.len()]
    }
}

fn target(i: usize) -> Target {
    Target {
        bucket: format!("replica-{i}"),
        region: format!("region-{i}"),
        prefix: String::new(),
        storage_class: None,
        kms_key_id: None,
    }
}

fn notification(notice: &Notice) -> String {
    let name = notice.event_name();
    json!({"Records": [{"eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": name,
        "s3": {"bucket": {"name": notice.bucket}, "object": {
            "key": notice.key, "eTag": notice.etag, "size": notice.size,
            "sequencer": format!("{:016X}", notice.sequencer)}}}]})
    .to_string()
}

fn payload(queue: &str, batch: &[(String, String, u32)]) -> Value {
    json!({"Records": batch.iter().map(|(id, body, receives)| json!({
        "eventSource": "aws:sqs", "messageId": id, "receiptHandle": format!("handle-{id}"),
        "body": body, "attributes": {"ApproximateReceiveCount": receives.to_string()},
        "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{queue}"),
    })).collect::<Vec<_>>()})
}

/// Whether the replica in `bucket` holds the source's content of `key`.
fn current(store: &SimStore, bucket: &str, key: &str) -> bool {
    match (store.object(SOURCE, key), store.object(bucket, key)) {
        (Some(source), Some(replica)) => source.content == replica.content,
        (None, None) => true,
        _ => false,
    }
}

/// What a run measured.
#[derive(Debug)]
struct Figures {
    changes_during_outage: u64,
    dead_lettered: usize,
    catch_up: Duration,
    requests_to_down_per_hour: f64,
    requests_to_healthy_per_change: f64,
    healthy_behind_max: Duration,
    retry_messages: u64,
}

/// A run of the workload with `replica-0` unavailable for `outage` (or, without `take_down`,
/// the same workload and window with every target up).
async fn run(outage: Duration, breaker: BreakerSettings, take_down: bool) -> Figures {
    let store = SimStore::new(17, Faults::NONE);
    store.create_bucket(SOURCE, true);
    let targets: Vec<Target> = (0..3).map(target).collect();
    for t in &targets {
        store.create_bucket(&t.bucket, false);
    }
    let config = Config::new([SOURCE.to_string()], targets.clone());
    let environments: Vec<Replicator<SimStore>> = (0..ENVIRONMENTS)
        .map(|_| Replicator::with_store(config.clone(), store.clone()).with_breaker(breaker))
        .collect();
    let main = Arc::new(Mutex::new(Queue::named("events")));
    let retry = RetryQueue(Arc::new(Mutex::new(Queue::named("retry"))));
    let mut rng = Rng::new(5);

    let begin = Instant::now();
    let down_from = begin + Duration::from_secs(600);
    let down_until = down_from + outage;
    let writes_until = down_until + Duration::from_secs(1800);
    let give_up = writes_until + Duration::from_secs(3 * 3600);
    let mut next_write = begin;
    let mut written: BTreeMap<String, Instant> = BTreeMap::new();
    let mut changes_during_outage = 0;
    let mut is_down = false;
    let mut requests_at_down = 0;
    let mut requests_down = 0;
    let mut healthy_requests = 0u64;
    let mut healthy_at_down = 0u64;
    let mut healthy_behind_max = Duration::ZERO;
    // Keys whose replica in the down target was not current when it recovered.
    let mut behind_at_recovery: Option<Vec<String>> = None;
    let mut catch_up = None;
    let mut turn = 0;

    loop {
        let now = Instant::now();
        if !is_down && now >= down_from && now < down_until {
            store.set_unavailable(DOWN, take_down);
            is_down = true;
            requests_at_down = store.requests_to(DOWN);
            healthy_at_down = store.requests_to("replica-1") + store.requests_to("replica-2");
        }
        if is_down && now >= down_until {
            store.set_unavailable(DOWN, false);
            is_down = false;
            requests_down = store.requests_to(DOWN) - requests_at_down;
            healthy_requests =
                store.requests_to("replica-1") + store.requests_to("replica-2") - healthy_at_down;
            let keys = store.keys(SOURCE);
            behind_at_recovery = Some(
                keys.into_iter()
                    .filter(|k| !current(&store, DOWN, k))
                    .collect(),
            );
        }
        if now < writes_until && now >= next_write {
            let key = format!("k{:03}", rng.below(0..KEYS));
            let size = rng.below(1..4096);
            store.put(SOURCE, &key, NewObject::plain(size));
            written.insert(key, now);
            if is_down {
                changes_during_outage += 1;
            }
            next_write += WRITE_EVERY;
        }
        for notice in store.take_notices() {
            main.lock()
                .unwrap()
                .send(notification(&notice), Duration::ZERO);
        }
        // The event source mappings of both queues, each batch to the next environment.
        for (queue, name) in [(&main, "events"), (&retry.0, "retry")] {
            let batch = queue.lock().unwrap().receive();
            if batch.is_empty() {
                continue;
            }
            let replicator = &environments[turn % ENVIRONMENTS];
            turn += 1;
            let deadline = Deadline::after(Duration::from_secs(300), Duration::from_secs(10));
            let handled: Handled =
                invocation::handle_owing(replicator, &payload(name, &batch), &deadline, &retry)
                    .await
                    .expect("an SQS batch is always answered");
            let failed: Vec<&str> = handled.response["batchItemFailures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["itemIdentifier"].as_str().unwrap())
                .collect();
            let mut queue = queue.lock().unwrap();
            for (id, _, _) in &batch {
                if !failed.contains(&id.as_str()) {
                    queue.delete(id);
                }
            }
            for redelivery in &handled.redeliveries {
                queue.make_visible_after(&redelivery.message_id, redelivery.delay());
            }
        }
        // The healthy targets keep up: no write waits long for them.
        for (key, at) in &written {
            if ["replica-1", "replica-2"]
                .iter()
                .all(|b| current(&store, b, key))
            {
                continue;
            }
            healthy_behind_max = healthy_behind_max.max(now - *at);
        }
        written.retain(|key, _| {
            !["replica-1", "replica-2"]
                .iter()
                .all(|b| current(&store, b, key))
        });
        if let Some(behind) = &mut behind_at_recovery {
            behind.retain(|k| !current(&store, DOWN, k));
            if behind.is_empty() && catch_up.is_none() {
                catch_up = Some(now - down_until);
            }
        }
        let idle =
            main.lock().unwrap().messages.is_empty() && retry.0.lock().unwrap().messages.is_empty();
        if now >= writes_until && idle && catch_up.is_some() {
            break;
        }
        assert!(
            now < give_up,
            "no quiescence 3 h after the writes stopped: {} messages queued, {} to retry",
            main.lock().unwrap().messages.len(),
            retry.0.lock().unwrap().messages.len()
        );
        tokio::time::sleep(TICK).await;
    }
    for key in store.keys(SOURCE) {
        for t in &targets {
            assert!(
                current(&store, &t.bucket, &key),
                "{}/{key} differs from its source after quiescence",
                t.bucket
            );
        }
    }
    let dead_lettered = main.lock().unwrap().dead.len() + retry.0.lock().unwrap().dead.len();
    let retry_messages = retry.0.lock().unwrap().sent;
    Figures {
        changes_during_outage,
        dead_lettered,
        catch_up: catch_up.unwrap_or_default(),
        requests_to_down_per_hour: requests_down as f64 / outage.as_secs_f64() * 3600.0,
        requests_to_healthy_per_change: healthy_requests as f64
            / changes_during_outage as f64
            / 2.0,
        healthy_behind_max,
        retry_messages,
    }
}

fn hours() -> u64 {
    std::env::var("OUTAGE_HOURS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(12)
}

#[tokio::test(start_paused = true)]
async fn a_target_down_for_twelve_hours_loses_nothing_and_catches_up_within_fifteen_minutes() {
    let outage = Duration::from_secs(hours() * 3600);
    let figures = run(outage, BreakerSettings::default(), true).await;
    let baseline = run(outage, BreakerSettings::default(), false).await;
    println!(
        "outage of {} h: {} changes during it, {} dead-lettered, caught up {:.0} s after recovery, \
         {:.0} requests/hour to the down target, {:.2} requests per change per healthy target, \
         healthy targets at most {} s behind, {} retry-queue messages",
        hours(),
        figures.changes_during_outage,
        figures.dead_lettered,
        figures.catch_up.as_secs_f64(),
        figures.requests_to_down_per_hour,
        figures.requests_to_healthy_per_change,
        figures.healthy_behind_max.as_secs(),
        figures.retry_messages,
    );
    assert!(figures.changes_during_outage >= outage.as_secs() / WRITE_EVERY.as_secs() - 1);
    assert_eq!(figures.dead_lettered, 0, "nothing is dead-lettered");
    assert!(
        figures.catch_up <= Duration::from_secs(15 * 60),
        "every change made during the outage reaches the target within 15 minutes of its recovery: {:?}",
        figures.catch_up
    );
    // Three environments, each probing at most every two minutes once its pauses have grown:
    // 90 probes an hour, each a few requests.
    assert!(
        figures.requests_to_down_per_hour <= 600.0,
        "requests to the down target are bounded: {:.0}/h",
        figures.requests_to_down_per_hour
    );
    // The healthy targets get the requests they get without the outage: never the retries of
    // the down target's work.
    println!(
        "requests per change per healthy target: {:.2} during the outage, {:.2} without it",
        figures.requests_to_healthy_per_change, baseline.requests_to_healthy_per_change
    );
    assert!(
        figures.requests_to_healthy_per_change <= baseline.requests_to_healthy_per_change * 1.01,
        "the healthy targets are not re-read on the down target's retries: {:.2} against {:.2}",
        figures.requests_to_healthy_per_change,
        baseline.requests_to_healthy_per_change
    );
    assert_eq!(
        baseline.retry_messages, 0,
        "without an outage nothing waits"
    );
    assert!(
        figures.healthy_behind_max <= Duration::from_secs(10),
        "the healthy targets are not held back: {:?}",
        figures.healthy_behind_max
    );
}

#[tokio::test(start_paused = true)]
async fn without_its_breaker_the_down_target_gets_a_request_per_change_per_retry() {
    // The same outage, shorter, with a breaker that never opens: the requests to the down
    // target grow with the changes waiting for it, which is what the breaker bounds.
    let outage = Duration::from_secs(3600);
    let never = BreakerSettings {
        threshold: u32::MAX,
        ..BreakerSettings::default()
    };
    let unbounded = run(outage, never, true).await;
    let bounded = run(outage, BreakerSettings::default(), true).await;
    println!(
        "one hour down: {:.0} requests/hour to the down target without its breaker, {:.0} with it",
        unbounded.requests_to_down_per_hour, bounded.requests_to_down_per_hour
    );
    assert_eq!(unbounded.dead_lettered, 0);
    assert!(
        unbounded.requests_to_down_per_hour > 3.0 * bounded.requests_to_down_per_hour,
        "{unbounded:?} vs {bounded:?}"
    );
}
