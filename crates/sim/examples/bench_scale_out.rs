//! `make bench`: a split backfill's throughput against its number of chains, in the simulated
//! store with virtual time, S3's per-prefix write rate (3,500 a second) enforced at every
//! target, and each request taking up to `LATENCY_MS` before and after it takes effect.
//!
//! Two key layouts: keys spread over 16 top-level prefixes (the run splits at the common
//! prefixes, `chains`), and every key under one prefix (the run splits at keys named in the
//! request, `split_at`, as an S3 Inventory would list them). Every chain runs through the
//! backfill function's handler: its claim, listings, copies, continuations and summaries. What
//! is not modelled: Lambda's start-up time per invocation, and S3 partitioning a prefix
//! further as its load grows (which only raises the one-prefix ceiling).
//!
//! Prints a table and writes `$BENCH_DIR/scale_out.json`.

use std::time::Duration;

use s3fanout::backfill::{BackfillRequest, Summary};
use s3fanout::lambda::backfill::handle_invocation_as;
use s3fanout::store::ObjectAt;
use s3fanout::{Config, Deadline, Replicator, Store, Target};
use s3fanout_sim::{Faults, NewObject, SimStore};
use serde_json::{json, Value};

const PREFIXES: usize = 16;
const KEYS_PER_PREFIX: usize = 1_000;
const TARGETS: usize = 3;
const LATENCY_MS: u64 = 40;
const PREFIX_WRITES_PER_SECOND: u32 = 3_500;
const CHAINS: [u32; 5] = [1, 2, 4, 8, 16];
/// The backfill function's `COPY_CONCURRENCY`: copies in flight per execution environment.
const CONCURRENCY: usize = 256;
const SOURCE: &str = "source";

/// How the keys are laid out.
#[derive(Clone, Copy)]
enum Layout {
    Spread,
    OnePrefix,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Spread => "16 prefixes, split at common prefixes",
            Layout::OnePrefix => "1 prefix, split at named keys",
        }
    }

    fn key(self, n: usize) -> String {
        match self {
            Layout::Spread => format!("p{:02}/k{:05}", n % PREFIXES, n / PREFIXES),
            Layout::OnePrefix => format!("all/k{n:05}"),
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let objects = PREFIXES * KEYS_PER_PREFIX;
    println!(
        "## Backfill scale-out (simulation, virtual time): {objects} objects to {TARGETS} targets, up to {LATENCY_MS} ms before and after each request, {PREFIX_WRITES_PER_SECOND} writes/s per prefix, COPY_CONCURRENCY {CONCURRENCY}\n"
    );
    println!("| layout | chains | time | copies/s | speed-up | SlowDown answers | invocations |");
    println!("|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for layout in [Layout::Spread, Layout::OnePrefix] {
        let mut one = None;
        for chains in CHAINS {
            let row = runtime.block_on(measure(layout, chains));
            let rate = row["copies_per_s"].as_f64().unwrap_or_default();
            let base = *one.get_or_insert(rate);
            println!(
                "| {} | {chains} | {:.1} s | {rate:.0} | {:.2}x | {} | {} |",
                layout.name(),
                row["seconds"].as_f64().unwrap_or_default(),
                rate / base,
                row["slowed_down"],
                row["invocations"]
            );
            rows.push(row);
        }
    }
    let section = json!({
        "objects": objects,
        "targets": TARGETS,
        "latency_ms": LATENCY_MS,
        "prefix_writes_per_second": PREFIX_WRITES_PER_SECOND,
        "concurrency": CONCURRENCY,
        "rows": rows,
    });
    if let Ok(dir) = std::env::var("BENCH_DIR") {
        std::fs::create_dir_all(&dir).expect("bench directory");
        let path = format!("{dir}/scale_out.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&section).expect("json"))
            .expect("writing the section");
        println!("\nwrote {path}");
    }
}

async fn measure(layout: Layout, chains: u32) -> Value {
    let store = SimStore::new(
        7,
        Faults {
            max_latency: Duration::from_millis(LATENCY_MS),
            ..Faults::NONE
        },
    );
    store.create_bucket(SOURCE, false);
    let targets: Vec<Target> = (0..TARGETS)
        .map(|i| Target {
            bucket: format!("replica-{i}"),
            region: format!("region-{i}"),
            prefix: String::new(),
            storage_class: None,
            kms_key_id: None,
        })
        .collect();
    for t in &targets {
        store.create_bucket(&t.bucket, false);
    }
    let objects = PREFIXES * KEYS_PER_PREFIX;
    for n in 0..objects {
        store.put(SOURCE, &layout.key(n), NewObject::plain(1024));
    }
    store.limit_prefix_writes(PREFIX_WRITES_PER_SECOND);
    let mut config = Config::new([SOURCE.to_string()], targets);
    config.concurrency = CONCURRENCY;
    // What the run's summary and replicas are read through at the end.
    let replicator = Replicator::with_store(config.clone(), store.clone());

    let mut request = json!({"auto_continue": true, "run_id": "scale",
        "summary_to": "s3://replica-0/.s3fanout/summaries/"});
    match layout {
        Layout::Spread => request["chains"] = json!(chains),
        Layout::OnePrefix => {
            let mut keys: Vec<String> = (0..objects).map(|n| layout.key(n)).collect();
            keys.sort();
            let every = objects / chains as usize;
            request["split_at"] = json!((1..chains as usize)
                .map(|i| keys[i * every].clone())
                .collect::<Vec<_>>());
        }
    }
    let started = tokio::time::Instant::now();
    let mut pending: Vec<Value> = vec![request];
    let mut invocations = 0u64;
    while !pending.is_empty() {
        let calls: Vec<_> = pending
            .drain(..)
            .map(|payload| {
                invocations += 1;
                let id = format!("invocation-{invocations}");
                // Every chain runs in an execution environment of its own: its own
                // concurrency, caches and clients, one S3.
                let replicator = Replicator::with_store(config.clone(), store.clone());
                async move {
                    // Lambda's 15 minutes, less the function's margin.
                    let window = Deadline::after(
                        Duration::from_secs(900),
                        replicator.config().deadline_margin,
                    );
                    let (_, next) = handle_invocation_as(&replicator, &payload, &window, &id)
                        .await
                        .expect("the invocation runs");
                    next
                }
            })
            .collect();
        pending = futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .map(|next: BackfillRequest| serde_json::to_value(next).expect("request"))
            .collect();
    }
    let seconds = started.elapsed().as_secs_f64();
    let at = ObjectAt {
        bucket: "replica-0",
        region: None,
        key: ".s3fanout/summaries/scale.json",
    };
    let summary = replicator
        .store()
        .get_small_object(at)
        .await
        .expect("the run's summary reads")
        .expect("the run's summary exists");
    let summary: Summary = serde_json::from_slice(&summary.body).expect("a summary");
    assert!(summary.done, "{} chains: {summary:?}", chains);
    let copies: u64 = summary.targets.values().map(|c| c.copied).sum();
    let settled: u64 = summary
        .targets
        .values()
        .map(|c| c.copied + c.up_to_date)
        .sum();
    assert_eq!(settled, (objects * TARGETS) as u64, "{summary:?}");
    for t in 0..TARGETS {
        let keys = replicator.store().keys(&format!("replica-{t}"));
        let replicas = keys.iter().filter(|k| !k.starts_with(".s3fanout/")).count();
        assert_eq!(replicas, objects, "replica-{t}");
    }
    json!({
        "layout": layout.name(),
        "chains": chains,
        "chains_started": summary.chains.len().max(1),
        "seconds": seconds,
        "copies": copies,
        "copies_per_s": settled as f64 / seconds,
        "slowed_down": replicator.store().slowed_down(),
        "failed": summary.targets.values().map(|c| c.failed).sum::<u64>(),
        "invocations": invocations,
        "requests": replicator.store().requests(),
    })
}
