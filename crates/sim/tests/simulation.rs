//! Deterministic simulation: random workloads against the simulated S3, delivered through every
//! path (SQS, direct S3, SNS, EventBridge, backfill, Batch Operations), late, duplicated and
//! shuffled, several invocations interleaved, faults injected, short deadlines, everything
//! reported failed delivered again until nothing is left; then every replica must equal its
//! source. `SIM_SEEDS=N SIM_SEED=S` runs N seeds from S; a failing run prints its seed and trace.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use s3fanout::core::object::{ContentHeaders, Tag};
use s3fanout::core::provenance::{metadata_bytes, MAX_METADATA_BYTES, SOURCE_BUCKET, SOURCE_ETAG};
use s3fanout::lambda::owed::Mailbox;
use s3fanout::lambda::{backfill, invocation};
use s3fanout::{Config, Deadline, Replicator, Target};
use s3fanout_sim::{Faults, NewObject, Notice, NoticeKind, Rng, SimStore};
use serde_json::{json, Value};

const SOURCE: &str = "source";
/// A second source sharing the targets, with keys equal to the first's, in some seeds.
const SOURCE_B: &str = "source-b";
/// Every bucket a scenario may use: the sources and the targets.
const BUCKETS: [&str; 6] = [
    SOURCE,
    SOURCE_B,
    "replica-0",
    "replica-1",
    "replica-2",
    "replica-3",
];
const MIB: u64 = 1024 * 1024;
const KEYS: [&str; 8] = [
    "a.txt",
    "dir/b c+d.bin",
    "café/ü%41",
    "Zed",
    "z",
    "日本/x",
    "p+q",
    "p q",
];
/// Rounds of deliveries before a run must have quiesced: a bound that catches a livelock, not
/// slow convergence. A target failing one request in ten, whose breaker spaces its probes up to
/// two minutes apart, may need hundreds of rounds for a copy by parts of a Batch Operations
/// task (which starts again from scratch after a transient failure) to pass.
const MAX_ROUNDS: usize = 800;
const DEFAULT_SEEDS: u64 = 1000;

#[test]
fn simulation_of_random_workloads_converges() {
    let base = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    println!("simulation: {seeds} seeds from SIM_SEED={base}");
    let started = std::time::Instant::now();
    for seed in base..base.saturating_add(seeds) {
        if let Err(report) = run_seed(seed) {
            panic!("simulation failed for seed {seed} (reproduce: SIM_SEEDS=1 SIM_SEED={seed}):\n{report}");
        }
    }
    println!(
        "simulation: {seeds} seeds passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// One message as S3 would notify it.
#[derive(Debug, Clone)]
struct Message {
    id: String,
    notice: Notice,
}

/// Work owed to one target, waiting in the retry queue until `due`.
#[derive(Debug, Clone)]
struct Owed {
    id: String,
    body: String,
    due: tokio::time::Instant,
}

/// The retry queue as the function posts to it; it refuses some postings, so that a delivery
/// whose owed work could not be posted is seen failing whole.
struct RetryQueue {
    posted: std::sync::Mutex<Vec<(String, Duration)>>,
    rng: std::sync::Mutex<Rng>,
}

impl Mailbox for RetryQueue {
    async fn post(&self, letters: &[(String, Duration)]) -> Vec<bool> {
        let mut rng = self.rng.lock().unwrap();
        let mut posted = self.posted.lock().unwrap();
        letters
            .iter()
            .map(|letter| {
                let accepted = !rng.chance(0.1);
                if accepted {
                    posted.push(letter.clone());
                }
                accepted
            })
            .collect()
    }
}

/// A delivery path, chosen per invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Sqs,
    Direct,
    Sns,
    EventBridge,
}

struct Scenario {
    replicate_deletes: bool,
    /// Buckets whose default encryption is SSE-KMS (sources and targets).
    kms_buckets: Vec<String>,
    /// Buckets configured as websites (sources and targets).
    websites: Vec<String>,
    /// Targets that announce their changes (to some other consumer): their replicas must
    /// carry provenance, and their notices are not this deployment's to handle.
    announcing: Vec<String>,
    /// Whether two notifications of one key close in time may merge into one; a
    /// reconciliation (a sync) then runs before the replicas are compared.
    lose_notices: bool,
    /// Whether a second source shares the targets (each source then has its own prefix).
    two_sources: bool,
    targets: Vec<Target>,
    keys: Vec<String>,
    ops: Vec<Op>,
}

#[derive(Debug, Clone)]
enum Op {
    Put(String, Box<NewObject>),
    Delete(String),
    /// An in-place copy with new headers and metadata.
    Metadata(String, ContentHeaders, BTreeMap<String, String>),
    Tags(String, Vec<Tag>),
    /// A replica copied back into the source (its provenance comes along).
    Restore(String, String),
    /// An older version made current: the source has an object, a removal is announced.
    RollBack(String, Box<NewObject>),
    /// The same, in the second source.
    InOther(Box<Op>),
    /// A restore of an archived object completes.
    Thaw(String),
}

fn scenario(rng: &mut Rng, extra: &mut Rng) -> Scenario {
    let n_targets = rng.below(1..5) as usize;
    let targets = (0..n_targets)
        .map(|i| Target {
            bucket: format!("replica-{i}"),
            region: format!("region-{i}"),
            prefix: if i == 1 && rng.chance(0.5) {
                "mirror/".into()
            } else {
                String::new()
            },
            storage_class: rng.chance(0.3).then(|| "STANDARD_IA".to_string()),
            kms_key_id: extra.chance(0.2).then(|| format!("key-{i}")),
        })
        .collect();
    let n_keys = rng.below(2..KEYS.len() as u64 + 1) as usize;
    let keys: Vec<String> = KEYS[..n_keys].iter().map(|k| k.to_string()).collect();
    let ops: Vec<Op> = (0..rng.below(3..14))
        .map(|_| {
            let key = rng.pick(&keys).clone();
            if rng.chance(0.2) {
                return Op::Delete(key);
            }
            if rng.chance(0.1) {
                let id = rng.below(0..1000);
                let headers = ContentHeaders {
                    content_type: Some(format!("fixed/{id}")),
                    ..Default::default()
                };
                return Op::Metadata(
                    key,
                    headers,
                    BTreeMap::from([("fixed".into(), format!("f{id}"))]),
                );
            }
            if rng.chance(0.06) {
                let target = format!("replica-{}", rng.below(0..n_targets as u64));
                return Op::Restore(key, target);
            }
            if rng.chance(0.06) {
                let id = rng.below(0..1000);
                // Objects of a replica bucket promoted to be the source name their old source.
                let from = if rng.chance(0.5) {
                    "old-source"
                } else {
                    SOURCE
                };
                let metadata = BTreeMap::from([
                    (SOURCE_ETAG.to_string(), format!("e{id}")),
                    (SOURCE_BUCKET.to_string(), from.to_string()),
                ]);
                return Op::RollBack(
                    key,
                    Box::new(NewObject {
                        size: rng.below(1..50_000),
                        metadata,
                        ..Default::default()
                    }),
                );
            }
            if extra.chance(0.06) {
                return Op::Thaw(key);
            }
            if rng.chance(0.1) {
                let id = rng.below(0..1000);
                let tags = (0..rng.below(0..3))
                    .map(|t| Tag {
                        key: format!("k{t}"),
                        value: format!("set {id}+y"),
                    })
                    .collect();
                return Op::Tags(key, tags);
            }
            let (size, parts) = match rng.below(0..4) {
                0 | 1 => (rng.below(0..200 * 1024), None),
                // Single-part above the 5 MiB threshold: copied by parts.
                2 => (rng.below(6 * MIB..14 * MIB), None),
                // A multipart source: copied with its own layout.
                _ => (rng.below(10 * MIB..16 * MIB), Some(5 * MIB)),
            };
            let id = rng.below(0..1000);
            Op::Put(
                key,
                Box::new(NewObject {
                    size,
                    parts,
                    headers: ContentHeaders {
                        content_type: Some(format!("type/{id}")),
                        cache_control: rng.chance(0.5).then(|| "max-age=60".into()),
                        expires: rng.chance(0.2).then(|| "not a date".into()),
                        // Which a copy with the source's metadata never carries.
                        website_redirect: extra.chance(0.1).then(|| format!("/moved/{id}")),
                        ..Default::default()
                    },
                    // Now and then metadata that leaves no room for provenance under S3's 2 KB.
                    metadata: if rng.chance(0.1) {
                        BTreeMap::from([
                            ("owner".into(), format!("o{id}")),
                            ("big".into(), "m".repeat(2000)),
                        ])
                    } else {
                        BTreeMap::from([("owner".into(), format!("o{id}"))])
                    },
                    tags: (0..rng.below(0..3))
                        .map(|t| Tag {
                            key: format!("t{t}"),
                            value: format!("v {id}+x"),
                        })
                        .collect(),
                    storage_class: match extra.below(0..20) {
                        0 => Some("GLACIER".into()),
                        1 => Some("DEEP_ARCHIVE".into()),
                        _ => rng.chance(0.2).then(|| "STANDARD_IA".into()),
                    },
                    // A multipart upload that began a while before it completed: its
                    // Last-Modified is older than requests made meanwhile.
                    initiated_ago: Duration::from_millis(extra.below(0..3000)),
                    ..Default::default()
                }),
            )
        })
        .collect();
    let two_sources = rng.chance(0.3);
    let ops = if two_sources {
        // The second source writes and deletes the same keys, with other contents.
        ops.into_iter()
            .flat_map(|op| {
                let mirrored = match &op {
                    Op::Put(key, new) if rng.chance(0.5) => {
                        let mut other = (**new).clone();
                        other.size = rng.below(0..100_000);
                        Some(Op::InOther(Box::new(Op::Put(key.clone(), Box::new(other)))))
                    }
                    Op::Delete(key) if rng.chance(0.5) => {
                        Some(Op::InOther(Box::new(Op::Delete(key.clone()))))
                    }
                    _ => None,
                };
                std::iter::once(op).chain(mirrored)
            })
            .collect()
    } else {
        ops
    };
    let kms_buckets = BUCKETS
        .into_iter()
        .filter(|_| extra.chance(0.15))
        .map(str::to_string)
        .collect();
    let announcing = ["replica-0", "replica-1", "replica-2", "replica-3"]
        .into_iter()
        .filter(|_| extra.chance(0.25))
        .map(str::to_string)
        .collect();
    // Buckets configured as websites, where redirect locations must be replicated.
    let websites = BUCKETS
        .into_iter()
        .filter(|_| extra.chance(0.2))
        .map(str::to_string)
        .collect();
    Scenario {
        kms_buckets,
        websites,
        announcing,
        lose_notices: extra.chance(0.3),
        replicate_deletes: rng.chance(0.5),
        two_sources,
        targets,
        keys,
        ops,
    }
}

fn form_encode(key: &str) -> String {
    let mut out = String::new();
    for byte in key.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn s3_record(notice: &Notice) -> Value {
    let name = notice.event_name();
    let mut object =
        json!({"key": form_encode(&notice.key), "sequencer": format!("{:016X}", notice.sequencer)});
    if let Some(etag) = &notice.etag {
        object["eTag"] = etag.clone().into();
        object["size"] = notice.size.into();
    }
    json!({"eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": name,
        "s3": {"bucket": {"name": notice.bucket}, "object": object}})
}

fn eventbridge(notice: &Notice) -> Value {
    let detail_type = match notice.kind {
        NoticeKind::Created => "Object Created",
        NoticeKind::Removed => "Object Deleted",
        NoticeKind::Tagged => "Object Tags Added",
        NoticeKind::Restored => "Object Restore Completed",
    };
    let mut object = json!({"key": notice.key, "sequencer": format!("{:016X}", notice.sequencer)});
    if let Some(etag) = &notice.etag {
        object["etag"] = etag.clone().into();
        object["size"] = notice.size.into();
    }
    let mut detail = json!({"bucket": {"name": notice.bucket}, "object": object});
    if let Some(reason) = notice.reason() {
        detail["reason"] = reason.into();
    }
    json!({"source": "aws.s3", "detail-type": detail_type, "region": "us-east-1",
        "detail": detail})
}

fn payload(path: Path, messages: &[Message]) -> Value {
    match path {
        Path::Sqs => json!({"Records": messages.iter().map(|m| json!({
            "eventSource": "aws:sqs", "messageId": m.id,
            "body": json!({"Records": [s3_record(&m.notice)]}).to_string(),
        })).collect::<Vec<_>>()}),
        Path::Direct => {
            json!({"Records": messages.iter().map(|m| s3_record(&m.notice)).collect::<Vec<_>>()})
        }
        Path::Sns => json!({"Records": messages.iter().map(|m| json!({
            "EventSource": "aws:sns",
            "Sns": {"Message": json!({"Records": [s3_record(&m.notice)]}).to_string()},
        })).collect::<Vec<_>>()}),
        Path::EventBridge => eventbridge(&messages[0].notice),
    }
}

fn deadline(rng: &mut Rng) -> Deadline {
    match rng.below(0..10) {
        0 => Deadline::none(),
        1 | 2 => Deadline::after(
            Duration::from_millis(rng.below(20..400)),
            Duration::from_millis(rng.below(5..60)),
        ),
        _ => Deadline::after(Duration::from_secs(30), Duration::from_secs(2)),
    }
}

/// Work for one invocation.
enum Work {
    Events(Path, Vec<Message>),
    /// Owed work from the retry queue, an SQS batch.
    Owed(Vec<Owed>),
    Backfill(Value),
    BatchTask(&'static str, String),
}

/// What came back from one invocation: messages to deliver again, a backfill to continue.
enum Result_ {
    Redeliver(Vec<Message>),
    RedeliverOwed(Vec<Owed>),
    Continue(Vec<Value>),
    RetryTask(&'static str, String),
    Done,
}

/// The ids of the messages an SQS batch response reports failed.
fn failed_ids(value: &Value) -> Vec<&str> {
    value["batchItemFailures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect()
}

async fn invoke(
    replicator: &Replicator<SimStore>,
    work: Work,
    deadline: Deadline,
    retry: &RetryQueue,
) -> Result_ {
    // Which invocation made a request is what a failure's trace most often needs.
    replicator.store().note(match &work {
        Work::Owed(owed) => format!(
            "invoke: owed {:?}",
            owed.iter()
                .map(|o| {
                    let body: Value = serde_json::from_str(&o.body).unwrap_or_default();
                    let keys: Vec<_> = body["changes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| format!("{} {}", c["kind"], c["key"]))
                        .collect();
                    format!("{} to {}: {keys:?}", o.id, body["target"]["bucket"])
                })
                .collect::<Vec<_>>()
        ),
        Work::Events(path, messages) => format!(
            "invoke: {path:?} {:?}",
            messages
                .iter()
                .map(|m| format!("{} {} {}", m.id, m.notice.event_name(), m.notice.key))
                .collect::<Vec<_>>()
        ),
        Work::Backfill(request) => format!("invoke: backfill {request}"),
        Work::BatchTask(source, key) => format!("invoke: batch task s3://{source}/{key}"),
    });
    match work {
        Work::Owed(owed) => {
            let payload = json!({"Records": owed.iter().map(|o| json!({
                "eventSource": "aws:sqs", "messageId": o.id, "body": o.body,
            })).collect::<Vec<_>>()});
            let response = invocation::handle_owing(replicator, &payload, &deadline, retry).await;
            match response {
                Ok(handled) => {
                    let failed = failed_ids(&handled.response);
                    Result_::RedeliverOwed(
                        owed.into_iter()
                            .filter(|o| failed.contains(&o.id.as_str()))
                            .collect(),
                    )
                }
                Err(_) => Result_::RedeliverOwed(owed),
            }
        }
        Work::Events(path, messages) => {
            let response =
                invocation::handle_owing(replicator, &payload(path, &messages), &deadline, retry)
                    .await
                    .map(|handled| handled.response);
            match (path, response) {
                (Path::Sqs, Ok(value)) => {
                    let failed = failed_ids(&value);
                    Result_::Redeliver(
                        messages
                            .into_iter()
                            .filter(|m| failed.contains(&m.id.as_str()))
                            .collect(),
                    )
                }
                (_, Ok(_)) => Result_::Done,
                // Lambda retries a failed asynchronous invocation with the same event.
                (_, Err(_)) => Result_::Redeliver(messages),
            }
        }
        Work::Backfill(request) => {
            match backfill::handle_invocation(replicator, &request, &deadline).await {
                Ok((_, next)) if next.is_empty() => Result_::Done,
                // The next hop, or a split run's chains.
                Ok((_, next)) => Result_::Continue(
                    next.iter()
                        .map(|n| serde_json::to_value(n).expect("request serialises"))
                        .collect(),
                ),
                Err(_) => Result_::Continue(vec![request]),
            }
        }
        Work::BatchTask(source, key) => {
            let event = json!({"invocationSchemaVersion": "2.0", "invocationId": "inv",
                "job": {"id": "job", "userArguments": {}},
                "tasks": [{"taskId": "task", "s3Key": form_encode(&key), "s3VersionId": null, "s3Bucket": source}]});
            match backfill::handle_invocation(replicator, &event, &deadline).await {
                Ok((value, _)) if value["results"][0]["resultCode"] == "TemporaryFailure" => {
                    Result_::RetryTask(source, key)
                }
                Ok(_) => Result_::Done,
                Err(_) => Result_::RetryTask(source, key),
            }
        }
    }
}

fn run_seed(seed: u64) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(simulate(seed))
}

async fn simulate(seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    // Behaviours added later draw from their own stream, so that the rest of a seed's
    // scenario stays what it was.
    let mut extra = Rng::new(seed ^ 0x6b6d_735f_6c6f_7374);
    let scenario = scenario(&mut rng, &mut extra);
    let store = SimStore::new(
        seed,
        Faults {
            error_rate: 0.1,
            max_latency: Duration::from_millis(20),
            other_writer_rate: 0.03,
            slow_rate: 0.05,
        },
    );
    store.create_bucket(SOURCE, true);
    if scenario.two_sources {
        store.create_bucket(SOURCE_B, true);
    }
    for target in &scenario.targets {
        store.create_bucket(&target.bucket, scenario.announcing.contains(&target.bucket));
    }
    for bucket in &scenario.kms_buckets {
        store.encrypt_by_default(bucket);
    }
    for bucket in &scenario.websites {
        store.set_website(bucket, true);
    }
    if scenario.lose_notices {
        store.lose_racing_notices();
    }
    store.set_other_writer(SOURCE, scenario.keys.clone(), rng.below(0..6) as u32);
    let mut config = Config::new([SOURCE.to_string()], scenario.targets.clone());
    config.replicate_deletes = scenario.replicate_deletes;
    config.concurrency = rng.below(1..9) as usize;
    config.multipart_threshold = 5 * MIB;
    config.part_size = 5 * MIB;
    if scenario.two_sources {
        config.source_buckets.insert(SOURCE_B.into());
        config.source_prefixes.insert(SOURCE.into(), "a/".into());
        config.source_prefixes.insert(SOURCE_B.into(), "b/".into());
    }
    let replicator = Replicator::with_store(config, store);
    let store = replicator.store();
    store.note(format!(
        "seed {seed}: {} targets {:?}, deletes {}, keys {:?}, {} ops",
        scenario.targets.len(),
        scenario
            .targets
            .iter()
            .map(|t| (&t.bucket, &t.prefix, &t.storage_class))
            .collect::<Vec<_>>(),
        scenario.replicate_deletes,
        scenario.keys,
        scenario.ops.len()
    ));

    let retry = RetryQueue {
        posted: std::sync::Mutex::new(Vec::new()),
        rng: std::sync::Mutex::new(Rng::new(seed ^ 0x0072_6574_7279)),
    };
    let mut owed: Vec<Owed> = Vec::new();
    let mut ops = scenario.ops.clone().into_iter();
    let mut pending: Vec<Message> = Vec::new();
    let mut backfills: Vec<Value> = Vec::new();
    let mut tasks: Vec<(&str, String)> = Vec::new();
    let mut next_id = 0u64;
    let mut ops_done = false;
    for round in 0..MAX_ROUNDS {
        // The workload: zero to two client writes this round, made while this round's
        // invocations run; what they announce is delivered at once, concurrently too.
        let mut writes = Vec::new();
        for _ in 0..rng.below(0..3) {
            match ops.next() {
                Some(op) => writes.push((Duration::from_millis(rng.below(0..200)), op)),
                None => ops_done = true,
            }
        }
        let prompt_deadline = deadline(&mut rng);
        let prompt_path = *rng.pick(&[Path::Sqs, Path::Direct, Path::Sns]);
        let duplicate = rng.chance(0.15);
        let sources: &[&str] = if scenario.two_sources {
            &[SOURCE, SOURCE_B]
        } else {
            &[SOURCE]
        };
        // Backfills and Batch Operations tasks are part of the workload: they stop with it.
        if rng.chance(0.05) && !ops_done {
            let source = *rng.pick(sources);
            let mut request = json!({"source_bucket": source, "delete": scenario.replicate_deletes, "auto_continue": true});
            // Some runs split into chains, one per range of keys, that work at once.
            if rng.chance(0.5) {
                request["chains"] = json!(rng.below(2..5));
                request["summary_to"] = json!(format!(
                    "s3://{}/.s3fanout/summaries/",
                    scenario.targets[0].bucket
                ));
            }
            backfills.push(request);
        }
        if rng.chance(0.05) && !ops_done {
            tasks.push((*rng.pick(sources), rng.pick(&scenario.keys).clone()));
        }
        for notice in store.take_notices() {
            if scenario.announcing.contains(&notice.bucket) {
                continue;
            }
            let copies = if rng.chance(0.15) { 2 } else { 1 };
            for _ in 0..copies {
                next_id += 1;
                pending.push(Message {
                    id: format!("m{next_id}"),
                    notice: notice.clone(),
                });
            }
        }
        let now = tokio::time::Instant::now();
        for (body, delay) in retry.posted.lock().unwrap().drain(..) {
            next_id += 1;
            owed.push(Owed {
                id: format!("owed{next_id}"),
                body,
                due: now + delay,
            });
        }
        let idle =
            writes.is_empty() && pending.is_empty() && backfills.is_empty() && tasks.is_empty();
        if ops_done && idle && !owed.is_empty() && owed.iter().all(|o| o.due > now) {
            // Only owed work is left, and none of it is due: the queue's delay passes.
            let due = owed.iter().map(|o| o.due).min().expect("owed work");
            tokio::time::sleep_until(due).await;
            continue;
        }
        if ops_done && !idle {
            // Retries come back after a pause (Lambda's asynchronous retries, Batch Operations'
            // retried tasks, redeliveries): time passes between the rounds that only retry,
            // as it does for the breakers that hold an unavailable target's work.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        if ops_done && idle && owed.is_empty() {
            // Archived objects still waiting are restored: their restores' events must copy
            // them.
            if thaw_all(store, sources) {
                continue;
            }
            store.note(format!(
                "quiescent after {round} rounds ({} notifications lost)",
                store.lost_notices()
            ));
            if scenario.lose_notices {
                // Nothing is written any more: what the reconciliation finds, notifications lost.
                store.set_other_writer(SOURCE, Vec::new(), 0);
                reconcile(&replicator, &scenario).await?;
            }
            return check(&replicator, &scenario, seed).await;
        }
        // Up to three invocations at once, each taking some of what is pending, in any order;
        // the rest is late.
        rng.shuffle(&mut pending);
        let mut work = Vec::new();
        // Owed work that is due, in a batch of its own (the retry queue's mapping).
        let (due, waiting): (Vec<Owed>, Vec<Owed>) = owed.drain(..).partition(|o| o.due <= now);
        owed = waiting;
        if !due.is_empty() {
            let mut due = due;
            rng.shuffle(&mut due);
            let take = rng.below(1..11).min(due.len() as u64) as usize;
            owed.extend(due.drain(take..));
            work.push(Work::Owed(due));
        }
        for _ in 0..rng.below(1..4) {
            if let Some(request) =
                (!backfills.is_empty() && rng.chance(0.5)).then(|| backfills.remove(0))
            {
                work.push(Work::Backfill(request));
                continue;
            }
            if let Some((source, key)) =
                (!tasks.is_empty() && rng.chance(0.5)).then(|| tasks.remove(0))
            {
                work.push(Work::BatchTask(source, key));
                continue;
            }
            if pending.is_empty() {
                break;
            }
            let path = *rng.pick(&[
                Path::Sqs,
                Path::Sqs,
                Path::Direct,
                Path::Sns,
                Path::EventBridge,
            ]);
            let take = match path {
                Path::EventBridge => 1,
                _ => rng.below(1..11).min(pending.len() as u64) as usize,
            };
            work.push(Work::Events(path, pending.drain(..take).collect()));
        }
        let invocations: Vec<_> = work
            .into_iter()
            .map(|w| {
                let deadline = deadline(&mut rng);
                invoke(&replicator, w, deadline, &retry)
            })
            .collect();
        let first_id = next_id;
        next_id += 1000;
        let client = async {
            let mut made = false;
            for (delay, op) in writes {
                tokio::time::sleep(delay).await;
                apply(store, SOURCE, op);
                made = true;
            }
            let mut messages: Vec<Message> = store
                .take_notices()
                .into_iter()
                .filter(|notice| !scenario.announcing.contains(&notice.bucket))
                .enumerate()
                .map(|(i, notice)| Message {
                    id: format!("m{}", first_id + i as u64 + 1),
                    notice,
                })
                .collect();
            if duplicate {
                let again: Vec<Message> = messages
                    .iter()
                    .map(|m| Message {
                        id: format!("{}-again", m.id),
                        notice: m.notice.clone(),
                    })
                    .collect();
                messages.extend(again);
            }
            if !made || messages.is_empty() {
                return Result_::Redeliver(messages);
            }
            invoke(
                &replicator,
                Work::Events(prompt_path, messages),
                prompt_deadline,
                &retry,
            )
            .await
        };
        let (results, prompt) = futures::join!(join_all(invocations), client);
        for result in results.into_iter().chain([prompt]) {
            match result {
                Result_::Redeliver(messages) => pending.extend(messages),
                // A failed SQS message comes back after its visibility timeout.
                Result_::RedeliverOwed(again) => owed.extend(again.into_iter().map(|o| Owed {
                    due: tokio::time::Instant::now() + Duration::from_secs(10),
                    ..o
                })),
                Result_::Continue(requests) => backfills.extend(requests),
                Result_::RetryTask(source, key) => tasks.push((source, key)),
                Result_::Done => {}
            }
        }
    }
    Err(failure_report(
        store,
        &format!(
            "did not quiesce in {MAX_ROUNDS} rounds: {} events, {} owed work, {} backfills, {} tasks left; ops done: {ops_done}",
            pending.len(),
            owed.len(),
            backfills.len(),
            tasks.len()
        ),
    ))
}

fn apply(store: &SimStore, bucket: &str, op: Op) {
    match op {
        Op::Put(key, new) => {
            store.put(bucket, &key, *new);
        }
        Op::Delete(key) => {
            store.remove(bucket, &key);
        }
        Op::Metadata(key, headers, metadata) => {
            store.replace_metadata(bucket, &key, headers, metadata)
        }
        Op::Tags(key, tags) => store.set_tags(bucket, &key, tags),
        Op::Restore(key, target) => {
            // `aws s3 cp s3://replica/k s3://source/k`: content and metadata, provenance included.
            let candidates = ["mirror/a/", "mirror/", "a/", ""].map(|p| format!("{p}{key}"));
            for replica_key in candidates {
                if let Some(replica) = store.object(&target, &replica_key) {
                    let new = NewObject {
                        size: replica.content.len(),
                        headers: replica.headers,
                        metadata: replica.metadata,
                        tags: replica.tags,
                        ..Default::default()
                    };
                    store.put(bucket, &key, new);
                    break;
                }
            }
        }
        Op::RollBack(key, older) => store.roll_back(bucket, &key, *older),
        Op::Thaw(key) => {
            if store.object(bucket, &key).is_some_and(|o| o.archived()) {
                store.restore(bucket, &key);
            }
        }
        Op::InOther(op) => apply(store, SOURCE_B, *op),
    }
}

/// Restores every archived object of the sources; whether there was one.
fn thaw_all(store: &SimStore, sources: &[&str]) -> bool {
    let mut any = false;
    for &bucket in sources {
        for key in store.keys(bucket) {
            if store.object(bucket, &key).is_some_and(|o| o.archived()) {
                store.restore(bucket, &key);
                any = true;
            }
        }
    }
    any
}

/// The scheduled reconciliation: a sync of every source, as the template runs it, which finds
/// what lost notifications left behind.
async fn reconcile(replicator: &Replicator<SimStore>, scenario: &Scenario) -> Result<(), String> {
    let sources: &[&str] = if scenario.two_sources {
        &[SOURCE, SOURCE_B]
    } else {
        &[SOURCE]
    };
    for source in sources {
        let mut request = json!({"source_bucket": source, "delete": scenario.replicate_deletes, "auto_continue": true});
        for _ in 0..100 {
            match backfill::handle_invocation(replicator, &request, &Deadline::none()).await {
                Ok((_, next)) if next.is_empty() => break,
                Ok((_, next)) => {
                    request = serde_json::to_value(&next[0]).map_err(|e| e.to_string())?
                }
                // A failed run is tried again, as the schedule would the next time.
                Err(_) => {}
            }
        }
    }
    Ok(())
}

fn failure_report(store: &SimStore, what: &str) -> String {
    let trace = store.trace();
    // SIM_TRACE=N shows the last N steps (80 unless given).
    let lines = std::env::var("SIM_TRACE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(80);
    let tail = &trace[trace.len().saturating_sub(lines)..];
    format!("{what}\n--- last steps ---\n{}", tail.join("\n"))
}

/// After quiescence: every replica equals its source; no replica of a deleted object remains
/// when deletes propagate; no upload is left open; verify and a second sync agree.
async fn check(
    replicator: &Replicator<SimStore>,
    scenario: &Scenario,
    seed: u64,
) -> Result<(), String> {
    let store = replicator.store();
    let fail = |what: String| Err(failure_report(store, &format!("seed {seed}: {what}")));
    let sources: &[&str] = if scenario.two_sources {
        &[SOURCE, SOURCE_B]
    } else {
        &[SOURCE]
    };
    for &source_bucket in sources {
        let source_keys = store.keys(source_bucket);
        for target in &scenario.targets {
            for key in &scenario.keys {
                // Each source's replicas live under its own prefix when several share the targets.
                let replica_key = replicator.config().replica_key(target, source_bucket, key);
                let source = store.object(source_bucket, key);
                let replica = store.object(&target.bucket, &replica_key);
                match (source, replica) {
                    (Some(s), Some(r)) => {
                        if s.content != r.content {
                            return fail(format!(
                            "{}/{replica_key}: bytes differ from the source (etag {} vs source {})",
                            target.bucket, r.etag, s.etag
                        ));
                        }
                        // A redirect location is replicated where a bucket could use it (a
                        // website); elsewhere a replica may lack it.
                        let inert =
                            !store.is_website(source_bucket) && !store.is_website(&target.bucket);
                        let mut headers = r.headers.clone();
                        if inert && headers.website_redirect.is_none() {
                            headers.website_redirect = s.headers.website_redirect.clone();
                        }
                        if s.headers != headers {
                            return fail(format!(
                                "{}/{replica_key}: headers {:?} differ from {:?}",
                                target.bucket, r.headers, s.headers
                            ));
                        }
                        let mut expected = s.metadata.clone();
                        expected.insert(SOURCE_ETAG.into(), s.etag.clone());
                        expected.insert(SOURCE_BUCKET.into(), source_bucket.into());
                        if metadata_bytes(&expected) > MAX_METADATA_BYTES {
                            // No room for provenance: the source's metadata alone, and its
                            // ETag, or (under SSE-KMS, whose ETags never match) its checksum.
                            expected = s.metadata.clone();
                            let checksum = r.checksum.is_some() && r.checksum == s.checksum;
                            if r.etag != s.etag && !checksum {
                                return fail(format!("{}/{replica_key}: without provenance the replica must keep the ETag or the checksum ({} vs {})", target.bucket, r.etag, s.etag));
                            }
                        }
                        // A plain copy carries no provenance: only where its ETag (a digest
                        // equal to the source's) or its checksum shows it current, and only in
                        // a target that announces nothing (no deployment could copy it back).
                        let proven = (r.etag == s.etag && !r.kms && !s.kms)
                            || (r.checksum.is_some() && r.checksum == s.checksum);
                        let plain =
                            r.metadata == s.metadata && proven && !store.notifies(&target.bucket);
                        if r.metadata != expected && !plain {
                            return fail(format!(
                                "{}/{replica_key}: metadata {:?}, expected {:?}",
                                target.bucket, r.metadata, expected
                            ));
                        }
                        if s.tags != r.tags {
                            return fail(format!(
                                "{}/{replica_key}: tags {:?} differ from {:?}",
                                target.bucket, r.tags, s.tags
                            ));
                        }
                        let class = target.storage_class.clone().or(s.storage_class.clone());
                        if r.storage_class != class {
                            return fail(format!(
                                "{}/{replica_key}: storage class {:?}, expected {class:?}",
                                target.bucket, r.storage_class
                            ));
                        }
                        // Multipart sources above the threshold keep their ETag; smaller
                        // ones are copied in one request, and their provenance tells.
                        let copied_whole =
                            s.content.len() <= 5 * MIB && r.metadata.contains_key(SOURCE_ETAG);
                        let encrypted = r.kms || s.kms;
                        if s.parts.is_some() && !copied_whole && !encrypted && r.etag != s.etag {
                            return fail(format!("{}/{replica_key}: a multipart source's replica has etag {} instead of {}", target.bucket, r.etag, s.etag));
                        }
                    }
                    (Some(s), None) => {
                        return fail(format!(
                            "{}/{replica_key}: missing (source etag {})",
                            target.bucket, s.etag
                        ))
                    }
                    (None, Some(r)) if scenario.replicate_deletes => {
                        return fail(format!(
                            "{}/{replica_key}: replica of a deleted object remains (etag {})",
                            target.bucket, r.etag
                        ))
                    }
                    _ => {}
                }
            }
            let open = store.uploads(&target.bucket);
            if !open.is_empty() {
                return fail(format!(
                    "{}: multipart uploads left open: {open:?}",
                    target.bucket
                ));
            }
        }

        // Verify and a second sync, without faults, must agree with the comparison above.
        store.set_faults(Faults::NONE);
        // In an execution environment of their own: the run's breakers may still hold a
        // target its last faults made look unavailable.
        let replicator = &Replicator::with_store(replicator.config().clone(), store.clone());
        let before = store.requests();
        let verify = backfill::handle_invocation(
            replicator,
            &json!({"mode": "verify", "source_bucket": source_bucket}),
            &Deadline::none(),
        )
        .await
        .map_err(|e| format!("verify failed: {e}"))?
        .0;
        let sync = backfill::handle_invocation(
            replicator,
            &json!({"source_bucket": source_bucket, "delete": scenario.replicate_deletes}),
            &Deadline::none(),
        )
        .await
        .map_err(|e| format!("sync failed: {e}"))?
        .0;
        let after = store.requests();
        for target in &scenario.targets {
            let v = &verify["targets"][&target.bucket];
            let s = &sync["targets"][&target.bucket];
            let n = source_keys.len() as u64;
            let counts = |c: &Value, f: &str| c[f].as_u64().unwrap_or(u64::MAX);
            if counts(v, "listed") != n
                || counts(v, "missing") != 0
                || counts(v, "different") != 0
                || counts(v, "failed") != 0
            {
                return fail(format!(
                    "verify disagrees for {}: {v} ({n} source objects)",
                    target.bucket
                ));
            }
            if scenario.replicate_deletes && counts(v, "extraneous") != 0 {
                return fail(format!(
                    "verify found extraneous replicas in {}: {v}",
                    target.bucket
                ));
            }
            if counts(s, "copied") != 0 || counts(s, "up_to_date") != n || counts(s, "deleted") != 0
            {
                return fail(format!(
                    "a second sync of {} was not a no-op: {s}",
                    target.bucket
                ));
            }
        }
        for op in [
            "CopyObject",
            "UploadPartCopy",
            "CompleteMultipartUpload",
            "DeleteObject",
        ] {
            if after.get(op) != before.get(op) {
                return fail(format!("verify or the second sync sent {op}"));
            }
        }
    }
    Ok(())
}
