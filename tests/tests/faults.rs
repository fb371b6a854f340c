//! Replication under injected faults and disorderly delivery: the final state of every replica
//! equals its source, whatever happened on the way.

use std::collections::HashSet;
use std::time::Duration;

use fault_proxy::{FaultProxy, Rule};
use futures::stream::{self, StreamExt};
use integration::*;
use std::sync::Mutex;
use std::time::Instant;

use s3fanout::engine::breaker::BreakerSettings;
use s3fanout::invocation::{handle, handle_owing};
use s3fanout::lambda::owed::Mailbox;
use s3fanout::{Deadline, Outcome, Replicator};
use serde_json::Value;

/// Delivers `bodies` as SQS batches of 10, `parallel` invocations at a time; returns the bodies
/// of the messages reported failed, which SQS would deliver again.
async fn deliver(replicator: &Replicator, bodies: Vec<Value>, parallel: usize) -> Vec<Value> {
    let batches: Vec<Vec<Value>> = bodies.chunks(10).map(<[Value]>::to_vec).collect();
    stream::iter(batches)
        .map(|batch| async move {
            let response = handle(replicator, &sqs_event(&batch), &Deadline::none())
                .await
                .unwrap();
            let failed: HashSet<String> = response["batchItemFailures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
                .collect();
            batch
                .into_iter()
                .enumerate()
                .filter(|(i, _)| failed.contains(&format!("m{i}")))
                .map(|(_, body)| body)
                .collect::<Vec<_>>()
        })
        .buffer_unordered(parallel)
        .concat()
        .await
}

/// Redelivers until nothing fails; returns how many messages failed in each round.
async fn until_converged(replicator: &Replicator, mut pending: Vec<Value>) -> Vec<usize> {
    let mut failures = Vec::new();
    while !pending.is_empty() {
        assert!(
            failures.len() < 20,
            "no convergence after 20 deliveries: {failures:?}"
        );
        pending = deliver(replicator, pending, 4).await;
        failures.push(pending.len());
    }
    failures
}

async fn assert_all_replicas(setup: &Setup, keys: &[String]) {
    stream::iter(keys)
        .for_each_concurrent(16, |key| async move {
            for target in &setup.targets {
                assert_replica(setup, key, target).await;
            }
        })
        .await;
}

async fn put_many(setup: &Setup, keys: &[String]) -> Vec<Value> {
    let src = setup.source_client();
    stream::iter(keys)
        .map(|key| {
            let src = src.clone();
            async move {
                let etag = put_rich(&src, &setup.source, key, key.as_bytes()).await;
                notification(vec![s3_record(
                    "ObjectCreated:Put",
                    &setup.source,
                    key,
                    Some(&etag),
                )])
            }
        })
        .buffered(16)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local S3 server (make test)"]
async fn ten_percent_random_faults_over_1000_objects_converge_with_redelivery() {
    let setup = Setup::new(3).await;
    let keys: Vec<String> = (0..1000)
        .map(|i| format!("faults/{i:04} a+b %{i}"))
        .collect();
    let bodies = put_many(&setup, &keys).await;

    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    proxy.set_default_rule(Rule {
        error_rate: 0.05,
        reset_rate: 0.05,
        ..Rule::default()
    });
    // One attempt per request, so that the engine sees every fault: most it settles in place
    // (a check after a write is read again), the rest must be redelivered, as SQS would.
    let replicator = Replicator::new(setup.config(), clients_via(&proxy.endpoint(), 1).await);
    let failures = until_converged(&replicator, bodies).await;

    let seen = proxy.take_seen();
    let faulted = seen.iter().filter(|s| s.faulted).count();
    let share = faulted as f64 / seen.len() as f64;
    assert!(
        (0.07..0.13).contains(&share),
        "injected {faulted} faults in {} requests",
        seen.len()
    );
    assert!(
        failures[0] > 0,
        "some messages must have failed at first: {failures:?}"
    );
    proxy.clear_rules();
    assert_all_replicas(&setup, &keys).await;
    for target in &setup.targets {
        assert_eq!(
            uploads_in_progress(&setup.clients, &target.bucket, &target.region).await,
            0
        );
    }
    println!("random faults: {faulted} injected in {} requests; failed messages per delivery: {failures:?}", seen.len());
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn one_target_down_does_not_hold_back_the_others() {
    let setup = Setup::new(3).await;
    let down = setup.targets[2].bucket.clone();
    let keys: Vec<String> = (0..40).map(|i| format!("down/{i}")).collect();
    let bodies = put_many(&setup, &keys).await;

    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    proxy.set_rule(
        &down,
        Rule {
            down: true,
            ..Rule::default()
        },
    );
    let replicator = Replicator::new(setup.config(), clients_via(&proxy.endpoint(), 2).await);

    // The same invocation completes the healthy targets and names only the down one: failed
    // while its breaker is closed, then held without a request once it opens.
    let changes: Vec<_> = bodies
        .iter()
        .flat_map(|b| match s3fanout::event::parse_invocation(b).unwrap() {
            s3fanout::event::Invocation::Direct(c) => c,
            _ => unreachable!(),
        })
        .collect();
    let reports = replicator.apply(&changes).await;
    for report in &reports {
        assert_eq!(report.targets[0].outcome, Outcome::Copied);
        assert_eq!(report.targets[1].outcome, Outcome::Copied);
        match &report.targets[2].outcome {
            Outcome::Failed(failure) if failure.kind == s3fanout::FailureKind::Retryable => {
                assert!(failure.message.contains("HTTP 503"), "{failure:?}")
            }
            Outcome::Failed(failure) if failure.kind == s3fanout::FailureKind::Held => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(replicator.holds(&setup.targets[2]));
    let replicator = Replicator::new(setup.config(), clients_via(&proxy.endpoint(), 2).await)
        .with_breaker(never_opens());
    for key in &keys {
        assert_replica(&setup, key, &setup.targets[0]).await;
        assert_replica(&setup, key, &setup.targets[1]).await;
    }

    // Through SQS every message is reported failed while the target is down...
    let failed = deliver(&replicator, bodies, 2).await;
    assert_eq!(failed.len(), keys.len());

    // ...and once it is back, redelivery copies to it alone: the healthy targets get only
    // create-only copies, which S3 refuses since their replicas exist.
    proxy.clear_rules();
    proxy.take_seen();
    assert!(deliver(&replicator, failed, 2).await.is_empty());
    let copies: Vec<_> = proxy.take_seen().into_iter().filter(|s| s.copy).collect();
    let (to_down, to_healthy): (Vec<_>, Vec<_>) = copies.iter().partition(|s| s.bucket == down);
    assert_eq!(to_down.len(), keys.len());
    assert!(
        to_healthy.iter().all(|s| s.create_only),
        "healthy targets were not overwritten: {to_healthy:?}"
    );
    assert_all_replicas(&setup, &keys).await;
}

/// A small deterministic generator for shuffling.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

async fn replica_version(setup: &Setup, target: &s3fanout::Target, key: &str) -> Option<usize> {
    let snap = snapshot(&setup.target_client(target), &target.bucket, key).await?;
    let text = String::from_utf8(snap.body).unwrap();
    Some(text.trim_start_matches("version ").parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local S3 server (make test)"]
async fn a_key_overwritten_100_times_with_shuffled_duplicated_events_ends_current_and_never_rolls_back(
) {
    let setup = Setup::new(3).await;
    let key = "hot/key with spaces+plus";
    let replicator = setup.replicator(setup.config()).await;
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Value>();

    let writer = async {
        let src = setup.source_client();
        for version in 0..100 {
            let etag = put(
                &src,
                &setup.source,
                key,
                format!("version {version:03}").as_bytes(),
            )
            .await;
            let mut record = s3_record("ObjectCreated:Put", &setup.source, key, Some(&etag));
            record["s3"]["object"]["sequencer"] = format!("{version:016X}").into();
            sender.send(notification(vec![record])).unwrap();
            // Slow enough that many versions are replicated while later ones are written.
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        drop(sender);
    };

    let processor = async {
        let mut rng = Lcg(7);
        let mut all = Vec::new();
        let mut highest = vec![0usize; setup.targets.len()];
        let mut outcomes = Vec::new();
        let mut redeliver = Vec::new();
        let mut open = true;
        while open {
            let mut batch = Vec::new();
            // Take what has arrived (at least one event, unless the writer is done).
            match receiver.recv().await {
                Some(event) => batch.push(event),
                None => open = false,
            }
            while let Ok(event) = receiver.try_recv() {
                batch.push(event);
            }
            all.extend(batch.iter().cloned());
            // Duplicate some, add a few stale ones from earlier, shuffle.
            for i in 0..batch.len() {
                if rng.below(3) == 0 {
                    batch.push(batch[i].clone());
                }
            }
            for _ in 0..2 {
                if !all.is_empty() {
                    batch.push(all[rng.below(all.len())].clone());
                }
            }
            rng.shuffle(&mut batch);
            let no_deadline = Deadline::none();
            let reports = futures::future::join_all(
                batch
                    .iter()
                    .map(|event| handle(&replicator, event, &no_deadline)),
            )
            .await;
            // A change that chases a source overwritten faster than it can be copied gives up
            // with a retryable failure; Lambda delivers the event again, here after the writes.
            for (event, report) in batch.iter().zip(reports) {
                match report {
                    Ok(out) => outcomes.push(out["outcomes"].clone()),
                    Err(err) => {
                        assert!(err.to_string().contains("kept changing"), "{err}");
                        redeliver.push(event.clone());
                    }
                }
            }
            for (i, target) in setup.targets.iter().enumerate() {
                if let Some(version) = replica_version(&setup, target, key).await {
                    assert!(
                        version >= highest[i],
                        "{} rolled back from {} to {version}",
                        target.bucket,
                        highest[i]
                    );
                    highest[i] = version;
                }
            }
        }
        // What failed is delivered again, then every event once more, after the last write.
        for event in &redeliver {
            outcomes.push(
                handle(&replicator, event, &Deadline::none()).await.unwrap()["outcomes"].clone(),
            );
        }
        rng.shuffle(&mut all);
        for event in &all {
            outcomes.push(
                handle(&replicator, event, &Deadline::none()).await.unwrap()["outcomes"].clone(),
            );
        }
        outcomes
    };

    let ((), outcomes) = tokio::join!(writer, processor);
    let count = |name: &str| {
        outcomes
            .iter()
            .map(|o| o[name].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert!(
        count("source_changed") >= 99 * 3,
        "stale events recognised: {}",
        count("source_changed")
    );
    // More than the final version was replicated, so the roll-back check above had work to check.
    assert!(
        count("copied") > 3,
        "intermediate versions replicated: {}",
        count("copied")
    );
    for target in &setup.targets {
        assert_eq!(replica_version(&setup, target, key).await, Some(99));
        assert_replica(&setup, key, target).await;
    }
    println!(
        "overwrites: copied {}, up_to_date {}, source_changed {}",
        count("copied"),
        count("up_to_date"),
        count("source_changed")
    );
}

/// A breaker that never opens: every delivery reaches the target.
fn never_opens() -> BreakerSettings {
    BreakerSettings {
        threshold: u32::MAX,
        ..BreakerSettings::default()
    }
}

/// The retry queue with its delays divided by `SPEED_UP`.
#[derive(Default)]
struct FastRetryQueue {
    waiting: Mutex<Vec<(Instant, String, u32)>>,
}

const SPEED_UP: u32 = 100;

impl Mailbox for FastRetryQueue {
    async fn post(&self, letters: &[(String, Duration)]) -> Vec<bool> {
        let mut waiting = self.waiting.lock().unwrap();
        for (body, delay) in letters {
            waiting.push((Instant::now() + *delay / SPEED_UP, body.clone(), 0));
        }
        vec![true; letters.len()]
    }
}

impl FastRetryQueue {
    /// Delivers what is due, as the retry queue's event source mapping does; failed messages
    /// come back a second later; one received five times is dead-lettered. Answers how many
    /// were dead-lettered.
    async fn deliver_due(&self, replicator: &Replicator) -> usize {
        let due: Vec<(Instant, String, u32)> = {
            let mut waiting = self.waiting.lock().unwrap();
            let now = Instant::now();
            let (due, rest) = waiting.drain(..).partition(|(at, _, _)| *at <= now);
            *waiting = rest;
            due
        };
        let mut dead = 0;
        for batch in due.chunks(10) {
            let bodies: Vec<Value> = batch
                .iter()
                .map(|(_, b, _)| Value::String(b.clone()))
                .collect();
            let handled = handle_owing(replicator, &sqs_event(&bodies), &Deadline::none(), self)
                .await
                .unwrap();
            let failed: Vec<&str> = handled.response["batchItemFailures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["itemIdentifier"].as_str().unwrap())
                .collect();
            for (i, (_, body, receives)) in batch.iter().enumerate() {
                if failed.contains(&format!("m{i}").as_str()) {
                    if receives + 1 >= 5 {
                        dead += 1;
                    } else {
                        self.waiting.lock().unwrap().push((
                            Instant::now() + Duration::from_secs(1),
                            body.clone(),
                            receives + 1,
                        ));
                    }
                }
            }
        }
        dead
    }

    fn len(&self) -> usize {
        self.waiting.lock().unwrap().len()
    }
}

async fn replica_current(setup: &Setup, target: &s3fanout::Target, key: &str) -> bool {
    let source = snapshot(&setup.source_client(), &setup.source, key).await;
    let replica = snapshot(
        &setup.target_client(target),
        &target.bucket,
        &target.replica_key(key),
    )
    .await;
    matches!((source, replica), (Some(s), Some(r)) if s.body == r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local S3 server (make test)"]
async fn a_target_down_under_a_steady_workload_catches_up_from_the_retry_queue_on_recovery() {
    // On the wire, timers compressed: the breaker probes after 50 ms, then at most every
    // 500 ms; the retry queue's delays (10 s to 5 minutes) are divided by 100.
    let setup = Setup::new(3).await;
    let down = setup.targets[2].clone();
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    let replicator = Replicator::new(setup.config(), clients_via(&proxy.endpoint(), 2).await)
        .with_breaker(BreakerSettings {
            threshold: 3,
            first_probe: Duration::from_millis(50),
            max_probe: Duration::from_millis(500),
        });
    let retry = FastRetryQueue::default();
    let src = setup.source_client();
    proxy.set_rule(
        &down.bucket,
        Rule {
            down: true,
            ..Rule::default()
        },
    );
    proxy.take_seen();
    let outage = Instant::now();
    let mut keys = Vec::new();
    let mut dead = 0;
    let mut healthy_behind = 0;
    // 120 writes of 80 keys, 50 ms apart, each delivered at once through the queue.
    for i in 0..120 {
        let key = format!("outage/{:03}", i % 80);
        let etag = put_rich(&src, &setup.source, &key, format!("version {i}").as_bytes()).await;
        let body = notification(vec![s3_record(
            "ObjectCreated:Put",
            &setup.source,
            &key,
            Some(&etag),
        )]);
        let handled = handle_owing(&replicator, &sqs_event(&[body]), &Deadline::none(), &retry)
            .await
            .unwrap();
        assert_eq!(
            handled.response["batchItemFailures"]
                .as_array()
                .unwrap()
                .len(),
            0,
            "a change that failed only at the down target is acknowledged"
        );
        for target in &setup.targets[..2] {
            if !replica_current(&setup, target, &key).await {
                healthy_behind += 1;
            }
        }
        dead += retry.deliver_due(&replicator).await;
        if !keys.contains(&key) {
            keys.push(key);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outage_secs = outage.elapsed().as_secs_f64();
    let to_down = proxy
        .take_seen()
        .iter()
        .filter(|s| s.bucket == down.bucket)
        .count();
    proxy.clear_rules();
    let recovered = Instant::now();
    let mut behind = keys.clone();
    while !behind.is_empty() {
        assert!(
            recovered.elapsed() < Duration::from_secs(60),
            "{} keys still behind a minute after recovery; {} waiting",
            behind.len(),
            retry.len()
        );
        dead += retry.deliver_due(&replicator).await;
        let mut still = Vec::new();
        for key in behind {
            if !replica_current(&setup, &down, &key).await {
                still.push(key);
            }
        }
        behind = still;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let catch_up = recovered.elapsed();
    println!(
        "wire outage of {outage_secs:.1} s (120 changes, delays / {SPEED_UP}): {dead} dead-lettered, \
         {to_down} requests to the down target ({:.1}/s), caught up {:.1} s after recovery, \
         healthy replicas behind after their delivery: {healthy_behind}",
        to_down as f64 / outage_secs,
        catch_up.as_secs_f64()
    );
    assert_eq!(dead, 0);
    assert_eq!(
        healthy_behind, 0,
        "the healthy targets are current after each delivery"
    );
    // Without the breaker, every change costs the down target requests (120 changes, plus the
    // retries of each); with it, a probe at most every 500 ms.
    assert!(
        (to_down as f64) < outage_secs * 2.0 * 4.0 + 12.0,
        "{to_down} requests to the down target in {outage_secs:.1} s"
    );
    // The longest compressed delay (5 minutes / 100 = 3 s) and the longest pause between
    // probes (500 ms) bound the catch-up, with the copies themselves (80 keys, on a local
    // server that may be slow).
    assert!(catch_up < Duration::from_secs(30), "{catch_up:?}");
    assert_all_replicas(&setup, &keys).await;
}
