//! Two deployments that are each other's targets (east -> west and west -> east, deployed
//! separately, as two-way replication is set up), under faults, duplicates, late deliveries and
//! short deadlines, with SSE-KMS ETags that never match across buckets: every run must quiesce
//! (no copy back and forth) and end with both sides holding the same objects. Each key is
//! written at one side, its home. `TWO_WAY_SEEDS=N TWO_WAY_SEED=S` runs N seeds from S.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use s3fanout::core::object::ContentHeaders;
use s3fanout::lambda::invocation;
use s3fanout::{Config, Deadline, Replicator, Target};
use s3fanout_sim::{Faults, NewObject, Notice, Rng, SimStore};
use serde_json::{json, Value};

const SIDES: [&str; 2] = ["east", "west"];
const MIB: u64 = 1024 * 1024;
const MAX_ROUNDS: usize = 300;

#[test]
fn two_deployments_replicating_to_each_other_converge_without_looping() {
    let base = env("TWO_WAY_SEED").unwrap_or(1);
    let seeds = env("TWO_WAY_SEEDS").unwrap_or(200);
    let mut copies = 0;
    for seed in base..base + seeds {
        match run(seed) {
            Ok(n) => copies += n,
            Err(report) => panic!(
                "two-way run failed for seed {seed} (reproduce: TWO_WAY_SEEDS=1 TWO_WAY_SEED={seed}):\n{report}"
            ),
        }
    }
    println!("two-way: {seeds} seeds from {base} passed, {copies} copies in all");
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn run(seed: u64) -> Result<u64, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?
        .block_on(simulate(seed))
}

fn record(notice: &Notice) -> Value {
    let name = notice.event_name();
    let mut object = json!({"key": notice.key, "sequencer": format!("{:016X}", notice.sequencer)});
    if let Some(etag) = &notice.etag {
        object["eTag"] = etag.clone().into();
        object["size"] = notice.size.into();
    }
    json!({"eventSource": "aws:s3", "eventName": name,
        "s3": {"bucket": {"name": notice.bucket}, "object": object}})
}

async fn simulate(seed: u64) -> Result<u64, String> {
    let mut rng = Rng::new(seed);
    let store = SimStore::new(
        seed,
        Faults {
            error_rate: 0.1,
            max_latency: Duration::from_millis(20),
            other_writer_rate: 0.0,
            slow_rate: 0.05,
        },
    );
    for side in SIDES {
        store.create_bucket(side, true);
        if rng.chance(0.5) {
            store.encrypt_by_default(side);
        }
    }
    let deletes = rng.chance(0.5);
    let deployment = |from: &str, to: &str, rng: &mut Rng| {
        let target = Target {
            bucket: to.to_string(),
            region: format!("{to}-1"),
            prefix: String::new(),
            storage_class: None,
            kms_key_id: rng.chance(0.3).then(|| format!("key-{to}")),
        };
        let mut config = Config::new([from.to_string()], vec![target]);
        config.replicate_deletes = deletes;
        config.multipart_threshold = 5 * MIB;
        config.part_size = 5 * MIB;
        config.concurrency = rng.below(1..6) as usize;
        Replicator::with_store(config, store.clone())
    };
    let replicators = [
        deployment("east", "west", &mut rng),
        deployment("west", "east", &mut rng),
    ];
    // Each key has a home where clients write it.
    let keys: Vec<(String, usize)> = (0..rng.below(2..6))
        .map(|i| (format!("k{i}"), rng.below(0..2) as usize))
        .collect();
    let mut writes = rng.below(3..12);
    let mut pending: Vec<Notice> = Vec::new();
    for round in 0..MAX_ROUNDS {
        if writes > 0 && rng.chance(0.6) {
            writes -= 1;
            let (key, home) = rng.pick(&keys).clone();
            let side = SIDES[home];
            match rng.below(0..6) {
                0 => {
                    store.remove(side, &key);
                }
                1 => store.replace_metadata(
                    side,
                    &key,
                    ContentHeaders {
                        content_type: Some(format!("fixed/{round}")),
                        ..Default::default()
                    },
                    BTreeMap::from([("fixed".into(), round.to_string())]),
                ),
                n => {
                    let size = if n == 2 {
                        rng.below(6 * MIB..12 * MIB)
                    } else {
                        rng.below(1..100_000)
                    };
                    store.put(
                        side,
                        &key,
                        NewObject {
                            parts: (n == 3 && size > 5 * MIB).then_some(5 * MIB),
                            ..NewObject::plain(size)
                        },
                    );
                }
            }
        }
        for notice in store.take_notices() {
            if rng.chance(0.15) {
                pending.push(notice.clone());
            }
            pending.push(notice);
        }
        if writes == 0 && pending.is_empty() {
            store.set_faults(Faults::NONE);
            let copies = store.applied().get("CopyObject").copied().unwrap_or(0);
            return check(&store, &keys, deletes).map(|()| copies);
        }
        rng.shuffle(&mut pending);
        let take = rng.below(0..pending.len() as u64 + 1) as usize;
        let batch: Vec<Notice> = pending.drain(..take).collect();
        let invocations = batch.chunks(3).map(|chunk| {
            let side = SIDES
                .iter()
                .position(|s| *s == chunk[0].bucket)
                .unwrap_or(0);
            let mine: Vec<&Notice> = chunk.iter().filter(|n| n.bucket == SIDES[side]).collect();
            let others: Vec<Notice> = chunk
                .iter()
                .filter(|n| n.bucket != SIDES[side])
                .cloned()
                .collect();
            let payload = json!({"Records": mine.iter().map(|n| record(n)).collect::<Vec<_>>()});
            let deadline = if rng.chance(0.2) {
                Deadline::after(
                    Duration::from_millis(rng.below(30..300)),
                    Duration::from_millis(10),
                )
            } else {
                Deadline::none()
            };
            let replicator = &replicators[side];
            let retry: Vec<Notice> = mine.iter().map(|n| (*n).clone()).collect();
            async move {
                let failed = invocation::handle(replicator, &payload, &deadline)
                    .await
                    .is_err();
                let mut again = others;
                if failed {
                    again.extend(retry);
                }
                again
            }
        });
        for again in join_all(invocations).await {
            pending.extend(again);
        }
        if writes == 0 && !pending.is_empty() {
            // Lambda retries a failed asynchronous invocation after a pause (a minute, then
            // two): time passes for the breakers that hold a target's work.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
    Err(format!(
        "did not quiesce in {MAX_ROUNDS} rounds: copies back and forth?\n{}",
        tail(&store)
    ))
}

fn tail(store: &SimStore) -> String {
    let trace = store.trace();
    trace[trace.len().saturating_sub(60)..].join("\n")
}

fn check(store: &SimStore, keys: &[(String, usize)], deletes: bool) -> Result<(), String> {
    for (key, home) in keys {
        let origin = store.object(SIDES[*home], key);
        let copy = store.object(SIDES[1 - home], key);
        match (&origin, &copy) {
            (Some(o), Some(c)) => {
                if o.content != c.content || o.headers != c.headers {
                    return Err(format!("{key}: the sides differ\n{}", tail(store)));
                }
                if o.metadata.contains_key(s3fanout::provenance::SOURCE_ETAG) {
                    return Err(format!(
                        "{key}: the origin at {} was rewritten by a copy from its replica\n{}",
                        SIDES[*home],
                        tail(store)
                    ));
                }
            }
            (Some(_), None) => return Err(format!("{key}: missing at {}", SIDES[1 - home])),
            (None, Some(_)) if deletes => {
                return Err(format!(
                    "{key}: deleted at {}, still at {}\n{}",
                    SIDES[*home],
                    SIDES[1 - home],
                    tail(store)
                ))
            }
            _ => {}
        }
    }
    Ok(())
}
