//! `make bench`: figures for the replicate path against the local S3 server, printed as tables
//! and written as the `replicate` section of `target/bench/results.json`.
//!
//! Every request goes through the fault proxy, which adds a fixed latency (30 ms: one request
//! round trip) and records each request, so figures are told in requests and round trips:
//!
//! - fan-out (goals 1 and 2): one object below the multipart threshold, its event carrying its
//!   ETag and size, replicated to N = 1..8 targets; median time from invocation to all N
//!   replicas written, in round trips, and requests by kind, for a first delivery, a duplicate
//!   delivery and an overwrite (the replicas hold the previous version);
//! - multipart source (goal 4): 10 MiB uploaded in 2 parts, replicated to one target as the
//!   engine chooses, beside a single CopyObject of it sent by the bench, and a single-part
//!   10 MiB object: what the multipart threshold and the copy-method rule cost;
//! - batch (goal 5): one invocation with 10 SQS messages x 8 targets: the most requests in
//!   flight at the proxy against the configured concurrency, and objects per second;
//! - memory: peak RSS of a fresh process replicating 1 MiB, 100 MiB and 1 GiB;
//! - copy method: single CopyObject against parallel UploadPartCopy for a few sizes.
//!
//! Invocations go through the real Lambda handler (`invocation::handle`), which also prints
//! the metrics' log lines; the fan-out and batch measurements therefore run in a child process
//! whose standard output is kept away from the tables.
//!
//! Knobs: `BENCH_RTT_MS` (30), `BENCH_RUNS` (7), `BENCH_TARGETS` (1,2,3,4,5,6,7,8),
//! `BENCH_SIZES` (bytes: 1024,1048576), `BENCH_COPY_SIZES_MIB` (16,128,512; empty skips),
//! `BENCH_MEMORY` (1; 0 skips the memory figures).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use fault_proxy::{FaultProxy, Rule};
use integration::bench::{env_list, env_number, median, ms, num, write_section, Kinds};
use integration::*;
use s3fanout::core::config::{DEFAULT_CONCURRENCY, DEFAULT_DEADLINE_MARGIN};
use s3fanout::{Clients, Config, Deadline, Replicator, Target};
use serde_json::{json, Value};

const MIB: u64 = 1024 * 1024;
/// Marks the line a child process answers with.
const RESULT: &str = "BENCH-RESULT ";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("rss-child") => return rss_child(&args[2], &args[3], &args[4], &args[5]).await,
        Some("measure") => {
            let value = match args[2].as_str() {
                "fan-out" => fan_out().await,
                "batch" => batch().await,
                "multipart" => multipart_source().await,
                other => panic!("unknown measurement {other}"),
            };
            println!("{RESULT}{value}");
            return;
        }
        _ => {}
    }
    let mut section = serde_json::Map::new();
    section.insert("rtt_ms".into(), json!(rtt().as_millis() as u64));
    section.insert(
        "default_multipart_threshold".into(),
        json!(s3fanout::core::config::DEFAULT_MULTIPART_THRESHOLD),
    );
    section.insert("default_concurrency".into(), json!(DEFAULT_CONCURRENCY));
    section.insert("fan_out".into(), in_child("fan-out"));
    section.insert("multipart_source".into(), in_child("multipart"));
    section.insert("batch".into(), in_child("batch"));
    if env_number("BENCH_MEMORY", 1) != 0 {
        section.insert("memory".into(), memory().await);
    }
    section.insert("copy_method".into(), copy_method().await);
    write_section("replicate", &Value::Object(section));
}

/// The latency the proxy adds to every request: one round trip.
fn rtt() -> Duration {
    Duration::from_millis(env_number("BENCH_RTT_MS", 30) as u64)
}

fn runs() -> usize {
    env_number("BENCH_RUNS", 7).max(1)
}

/// Runs a measurement in a child process; its tables reach the terminal (standard error), its
/// standard output (the handler's metric lines) is read only for the result line.
fn in_child(name: &str) -> Value {
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .args(["measure", name])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("start the measurement");
    assert!(out.status.success(), "measurement {name} failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(RESULT))
        .unwrap_or_else(|| panic!("measurement {name} gave no result"));
    serde_json::from_str(line).expect("result JSON")
}

/// Lambda always runs with a deadline; this one is the longest an invocation can have.
fn deadline() -> Deadline {
    Deadline::at(
        tokio::time::Instant::now() + Duration::from_secs(900),
        DEFAULT_DEADLINE_MARGIN,
    )
}

/// An S3 notification of a created object as S3 sends it (ETag, size and a sequencer that
/// grows), inside one SQS message.
fn record(bucket: &str, key: &str, etag: &str, size: u64, event: &str) -> Value {
    static SEQUENCER: AtomicU64 = AtomicU64::new(0);
    let mut r = s3_record(event, bucket, key, Some(etag));
    r["s3"]["object"]["size"] = size.into();
    let n = SEQUENCER.fetch_add(1, Ordering::Relaxed) + 1;
    r["s3"]["object"]["sequencer"] = format!("{n:018X}").into();
    r
}

/// One invocation through the Lambda handler; every message must succeed.
async fn invoke(replicator: &Replicator, payload: &Value) {
    let out = s3fanout::invocation::handle(replicator, payload, &deadline())
        .await
        .expect("invocation");
    let failed = out["batchItemFailures"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert_eq!(failed, 0, "failed messages: {out}");
}

/// `n` target buckets, cycling through the test regions.
async fn make_targets(clients: &Clients, n: usize, prefix: &str) -> Vec<Target> {
    let mut targets = Vec::new();
    for i in 0..n {
        let region = TARGET_REGIONS[i % TARGET_REGIONS.len()];
        let bucket = unique(prefix);
        create_bucket(clients, &bucket, region).await;
        targets.push(target(&bucket, region));
    }
    targets
}

fn latency_rule(latency: Duration) -> Rule {
    Rule {
        latency,
        ..Rule::default()
    }
}

/// Distinct content per run and version, so that every first delivery and overwrite copies.
fn body(size: usize, run: usize, version: usize) -> Vec<u8> {
    let mut b = vec![(run * 7 + version) as u8; size];
    let tag = format!("{run}/{version}");
    b[..tag.len().min(size)].copy_from_slice(&tag.as_bytes()[..tag.len().min(size)]);
    b
}

/// Times and requests of one kind of delivery over the runs.
#[derive(Default)]
struct Series {
    times: Vec<Duration>,
    kinds: Kinds,
    totals: Vec<f64>,
}

impl Series {
    fn push(&mut self, elapsed: Duration, kinds: Kinds) {
        self.times.push(elapsed);
        self.totals.push(kinds.total());
        self.kinds = self.kinds.add(&kinds);
    }

    fn median(&self) -> Duration {
        median(self.times.clone())
    }

    fn requests(&self) -> Kinds {
        self.kinds.per(self.times.len() as f64)
    }

    fn json(&self, rtt: Duration) -> Value {
        let m = self.median();
        let min = self.totals.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = self.totals.iter().cloned().fold(0.0, f64::max);
        json!({
            "median_ms": ms(m),
            "round_trips": round(m.as_secs_f64() / rtt.as_secs_f64()),
            "requests": self.requests().json(),
            "requests_min": min, "requests_max": max,
            "runs": self.times.len(),
        })
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Goals 1 and 2: latency and requests for N = 1..8 targets.
async fn fan_out() -> Value {
    let rtt = rtt();
    let runs = runs();
    let ns = env_list("BENCH_TARGETS", &[1, 2, 3, 4, 5, 6, 7, 8]);
    let sizes = env_list("BENCH_SIZES", &[1024, MIB as usize]);
    let setup = Setup::new(0).await;
    let max_n = ns.iter().copied().max().unwrap_or(1);
    let targets = make_targets(&setup.clients, max_n, "fan").await;
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    let src = setup.source_client();
    let source = setup.source.as_str();

    eprintln!(
        "## Fan-out: one object to N targets, event with ETag and size, {} ms added per request, median of {runs} runs\n",
        rtt.as_millis()
    );
    eprintln!("| object | N | first delivery | round trips | requests (read / copy / other) | duplicate: requests, copies | overwrite | overwrite requests |");
    eprintln!("|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for &size in &sizes {
        for &n in &ns {
            let config = Config::new([setup.source.clone()], targets[..n].to_vec());
            let replicator = Replicator::new(config, clients_via(&proxy.endpoint(), 3).await);
            // A warm function: connections open and anything learnt once per process known.
            let warm = format!("warm/{size}/{n}");
            let etag = put(&src, source, &warm, &body(size, 99, 0)).await;
            invoke(
                &replicator,
                &sqs_event(&[notification(vec![record(
                    source,
                    &warm,
                    &etag,
                    size as u64,
                    "ObjectCreated:Put",
                )])]),
            )
            .await;

            let (mut first, mut duplicate, mut overwrite, mut bare, mut bare_overwrite) = (
                Series::default(),
                Series::default(),
                Series::default(),
                Series::default(),
                Series::default(),
            );
            // A client's upload announced by its event, with the ETag and size.
            let uploaded = |key: &str, etag: &str| {
                sqs_event(&[notification(vec![record(
                    source,
                    key,
                    etag,
                    size as u64,
                    "ObjectCreated:Put",
                )])])
            };
            for run in 0..runs {
                let key = format!("fan/{size}/{n}/{run}");
                let etag = put(&src, source, &key, &body(size, run, 0)).await;
                let event = uploaded(&key, &etag);
                proxy.set_default_rule(latency_rule(rtt));
                measure(&proxy, &replicator, &event, source, &mut first).await;
                measure(&proxy, &replicator, &event, source, &mut duplicate).await;
                let etag = put(&src, source, &key, &body(size, run, 1)).await;
                let event = uploaded(&key, &etag);
                measure(&proxy, &replicator, &event, source, &mut overwrite).await;
                for t in &targets[..n] {
                    let replica = head_etag(&setup.target_client(t), &t.bucket, &key).await;
                    assert_eq!(replica, etag, "replica of {key} in {}", t.bucket);
                }
                // The same first delivery and overwrite with no added latency: what remains is
                // the local server's own time, so the added latency alone tells the critical path.
                proxy.set_default_rule(Rule::default());
                let key = format!("fan0/{size}/{n}/{run}");
                let etag = put(&src, source, &key, &body(size, run, 0)).await;
                let event = uploaded(&key, &etag);
                measure(&proxy, &replicator, &event, source, &mut bare).await;
                let etag = put(&src, source, &key, &body(size, run, 1)).await;
                let event = uploaded(&key, &etag);
                measure(&proxy, &replicator, &event, source, &mut bare_overwrite).await;
            }
            let latency_only =
                first.median().saturating_sub(bare.median()).as_secs_f64() / rtt.as_secs_f64();
            let overwrite_latency_only = overwrite
                .median()
                .saturating_sub(bare_overwrite.median())
                .as_secs_f64()
                / rtt.as_secs_f64();
            // Any write on a duplicate is a copy made for nothing (tags included). A create-only
            // copy writes nothing on a replica that exists, as on a duplicate every replica does.
            let dup_copies = duplicate.kinds.copies() - duplicate.kinds.create_only
                + duplicate.kinds.put
                + duplicate.kinds.post;
            eprintln!(
                "| {} | {n} | {:.0} ms | {:.2} ({:.2} from the added latency alone) | {} | {}, {} | {:.0} ms | {} |",
                size_label(size),
                ms(first.median()),
                first.median().as_secs_f64() / rtt.as_secs_f64(),
                latency_only,
                first.requests().short(),
                num(duplicate.requests().total()),
                if dup_copies > 0.0 { "COPIED" } else { "none" },
                ms(overwrite.median()),
                overwrite.requests().short(),
            );
            let mut first_json = first.json(rtt);
            first_json["no_added_latency_ms"] = ms(bare.median()).into();
            first_json["latency_only_round_trips"] = round(latency_only).into();
            let mut overwrite_json = overwrite.json(rtt);
            overwrite_json["no_added_latency_ms"] = ms(bare_overwrite.median()).into();
            overwrite_json["latency_only_round_trips"] = round(overwrite_latency_only).into();
            let mut dup_json = duplicate.json(rtt);
            dup_json["copies_made"] = (dup_copies > 0.0).into();
            rows.push(json!({
                "size": size, "targets": n,
                "first": first_json,
                "duplicate": dup_json,
                "overwrite": overwrite_json,
            }));
        }
    }
    eprintln!();
    let mut ratios = Vec::new();
    for &size in &sizes {
        let at = |n: usize| {
            rows.iter()
                .find(|r| r["size"] == size && r["targets"] == n)
                .and_then(|r| r["first"]["median_ms"].as_f64())
        };
        let latency_only = |n: usize| {
            rows.iter()
                .find(|r| r["size"] == size && r["targets"] == n)
                .and_then(|r| r["first"]["latency_only_round_trips"].as_f64())
        };
        if let (Some(one), Some(most)) = (at(1), at(max_n)) {
            let alone = match (latency_only(1), latency_only(max_n)) {
                (Some(a), Some(b)) if a > 0.0 => Some(round(b / a)),
                _ => None,
            };
            eprintln!(
                "- {}: {max_n} targets / 1 target = {:.2}x in all, {} from the added latency alone",
                size_label(size),
                most / one,
                alone.map_or("-".into(), |a| format!("{a:.2}x")),
            );
            ratios.push(
                json!({ "size": size, "targets": max_n, "ratio": round(most / one),
                "ratio_latency_only": alone }),
            );
        }
    }
    eprintln!();
    // The goals: one round trip is the limit (a copy per target, all at once); an overwrite
    // at most 3 round trips and 2N + 2 requests.
    json!({ "rows": rows, "ratio_most_over_one": ratios,
            "goal_round_trips_one_target": 1.3, "goal_round_trips_most_targets": 1.5,
            "goal_overwrite_round_trips": 3, "goal_overwrite_requests": "2N + 2" })
}

async fn measure(
    proxy: &FaultProxy,
    replicator: &Replicator,
    event: &Value,
    source: &str,
    series: &mut Series,
) {
    proxy.take_seen();
    let started = Instant::now();
    invoke(replicator, event).await;
    let elapsed = started.elapsed();
    series.push(elapsed, Kinds::count(&proxy.take_seen(), Some(source)));
}

fn size_label(size: usize) -> String {
    if size >= MIB as usize && size.is_multiple_of(MIB as usize) {
        format!("{} MiB", size / MIB as usize)
    } else if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// Goal 4: a small multipart source, as the engine copies it and as one CopyObject would.
async fn multipart_source() -> Value {
    let rtt = rtt();
    let runs = runs().min(5);
    let setup = Setup::new(1).await;
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    proxy.set_default_rule(latency_rule(rtt));
    let src = setup.source_client();
    let source = setup.source.as_str();
    let t = &setup.targets[0];
    let replicator = Replicator::new(setup.config(), clients_via(&proxy.endpoint(), 3).await);
    let via_proxy = clients_via(&proxy.endpoint(), 3).await;
    let size = 10 * MIB;
    let half = (5 * MIB) as usize;

    eprintln!(
        "## A 10 MiB source to one target, {} ms added per request, median of {runs} runs\n",
        rtt.as_millis()
    );
    eprintln!("| source | how | time | round trips | requests | replica keeps the source's ETag |");
    eprintln!("|---|---|---|---|---|---|");
    let mut cases = Vec::new();
    for (label, parts) in [("2 parts of 5 MiB", 2usize), ("single part", 1)] {
        let mut engine = Series::default();
        let mut single = Series::default();
        let mut etag_kept = true;
        for run in 0..runs {
            let key = format!("mp/{parts}/{run}");
            let etag = if parts == 2 {
                put_in_parts(&src, source, &key, &[half, half]).await
            } else {
                put_sized(&src, source, &key, size as usize).await
            };
            let event_name = if parts == 2 {
                "ObjectCreated:CompleteMultipartUpload"
            } else {
                "ObjectCreated:Put"
            };
            let event = sqs_event(&[notification(vec![record(
                source, &key, &etag, size, event_name,
            )])]);
            // The engine, with its defaults.
            proxy.take_seen();
            let started = Instant::now();
            invoke(&replicator, &event).await;
            engine.push(
                started.elapsed(),
                Kinds::count(&proxy.take_seen(), Some(source)),
            );
            let replica = head_etag(&setup.target_client(t), &t.bucket, &key).await;
            etag_kept &= replica == etag;
            // The reference: one CopyObject of the same source, sent by the bench.
            let copy_source = format!("{source}/{key}");
            proxy.take_seen();
            let started = Instant::now();
            via_proxy
                .for_region(&t.region)
                .copy_object()
                .bucket(&t.bucket)
                .key(format!("single/{key}"))
                .copy_source(copy_source)
                .send()
                .await
                .expect("CopyObject");
            single.push(
                started.elapsed(),
                Kinds::count(&proxy.take_seen(), Some(source)),
            );
        }
        let method = if engine.kinds.part_copy > 0.0 {
            "UploadPartCopy"
        } else {
            "CopyObject"
        };
        let rt = |s: &Series| s.median().as_secs_f64() / rtt.as_secs_f64();
        eprintln!(
            "| 10 MiB, {label} | s3fanout ({method}) | {:.0} ms | {:.2} | {} | {} |",
            ms(engine.median()),
            rt(&engine),
            engine.requests().short(),
            if etag_kept { "yes" } else { "no" }
        );
        eprintln!(
            "| 10 MiB, {label} | one CopyObject (bench) | {:.0} ms | {:.2} | {} | {} |",
            ms(single.median()),
            rt(&single),
            single.requests().short(),
            if parts == 1 { "yes" } else { "no" }
        );
        let ratio = engine.requests().total() / single.requests().total().max(1.0);
        let mut e = engine.json(rtt);
        e["method"] = method.into();
        e["etag_preserved"] = etag_kept.into();
        cases.push(json!({
            "label": label, "size": size, "parts": parts,
            "engine": e, "single_copy_object": single.json(rtt),
            "requests_ratio": round(ratio),
        }));
    }
    eprintln!(
        "\nEngine rule: every source up to MULTIPART_THRESHOLD ({} MiB by default), multipart \
         ones included, by one CopyObject (provenance then shows the replica current); above it \
         a multipart source with its own part layout, so that its replica keeps the ETag. The \
         method the engine chose for each source is named above.\n",
        s3fanout::core::config::DEFAULT_MULTIPART_THRESHOLD / MIB
    );
    json!({ "cases": cases })
}

/// Goal 5: one invocation with a batch of 10 SQS messages, each one object, to 8 targets.
async fn batch() -> Value {
    let rtt = rtt();
    let runs = runs().min(3);
    let messages = env_number("BENCH_BATCH", 10);
    let setup = Setup::new(0).await;
    let targets = make_targets(&setup.clients, 8, "batch").await;
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    proxy.set_default_rule(latency_rule(rtt));
    let src = setup.source_client();
    let source = setup.source.as_str();

    eprintln!(
        "## One invocation: {messages} SQS messages x 8 targets, {} ms added per request, median of {runs} runs\n",
        rtt.as_millis()
    );
    eprintln!("| configured concurrency | most requests in flight | time | objects/s | replicas/s | requests per object |");
    eprintln!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for concurrency in [DEFAULT_CONCURRENCY, 8] {
        let mut config = Config::new([setup.source.clone()], targets.clone());
        config.concurrency = concurrency;
        let replicator = Replicator::new(config, clients_via(&proxy.endpoint(), 3).await);
        let mut series = Series::default();
        let mut peak = 0;
        for run in 0..=runs {
            let mut bodies = Vec::new();
            for i in 0..messages {
                let key = format!("batch/{concurrency}/{run}/{i}");
                let etag = put(&src, source, &key, &body(1024, run, i)).await;
                bodies.push(notification(vec![record(
                    source,
                    &key,
                    &etag,
                    1024,
                    "ObjectCreated:Put",
                )]));
            }
            let payload = sqs_event(&bodies);
            proxy.take_seen();
            proxy.take_max_in_flight();
            let started = Instant::now();
            invoke(&replicator, &payload).await;
            let elapsed = started.elapsed();
            let in_flight = proxy.take_max_in_flight();
            let kinds = Kinds::count(&proxy.take_seen(), Some(source));
            // The first run warms connections up and is not counted.
            if run > 0 {
                series.push(elapsed, kinds);
                peak = peak.max(in_flight);
            }
        }
        let m = series.median().as_secs_f64();
        let per_object = series.requests().per(messages as f64);
        eprintln!(
            "| {concurrency} | {peak} | {:.0} ms | {:.1} | {:.1} | {} |",
            ms(series.median()),
            messages as f64 / m,
            (messages * 8) as f64 / m,
            per_object.short()
        );
        let mut j = series.json(rtt);
        j["concurrency"] = concurrency.into();
        j["max_in_flight"] = peak.into();
        j["objects_per_s"] = round(messages as f64 / m).into();
        j["replicas_per_s"] = round((messages * 8) as f64 / m).into();
        j["requests_per_object"] = per_object.json();
        rows.push(j);
    }
    eprintln!();
    json!({ "messages": messages, "targets": 8, "rows": rows })
}

async fn memory() -> Value {
    let setup = Setup::new(1).await;
    let src = setup.source_client();
    eprintln!("## Memory: peak RSS of a fresh process replicating one object (median of 3 runs)\n");
    eprintln!("| object | copy | peak RSS |");
    eprintln!("|---|---|---|");
    let mut rows = Vec::new();
    for (label, size) in [
        ("1 MiB", MIB),
        ("100 MiB", 100 * MIB),
        ("1 GiB", 1024 * MIB),
    ] {
        let key = format!("rss/{label}");
        upload(&src, &setup.source, &key, size).await;
        let mut samples = Vec::new();
        for run in 0..3 {
            let exe = std::env::current_exe().unwrap();
            let out = std::process::Command::new(exe)
                .args([
                    "rss-child",
                    &setup.source,
                    &key,
                    &setup.targets[0].bucket,
                    &format!("{run}/"),
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // The last line: the handler's metric lines come before it.
            let text = String::from_utf8(out.stdout).unwrap();
            samples.push(text.lines().last().unwrap().trim().parse::<u64>().unwrap());
        }
        samples.sort();
        let method = if size > s3fanout::core::config::DEFAULT_MULTIPART_THRESHOLD {
            "multipart"
        } else {
            "CopyObject"
        };
        let mib = samples[1] as f64 / 1024.0;
        eprintln!("| {label} | {method} | {mib:.1} MiB |");
        rows.push(json!({ "size": size, "method": method, "peak_rss_mib": round(mib) }));
    }
    eprintln!();
    json!({ "rows": rows })
}

/// Uploads `size` bytes, in 64 MiB parts above that size.
async fn upload(client: &Client, bucket: &str, key: &str, size: u64) {
    let part = 64 * MIB;
    if size <= part {
        put_sized(client, bucket, key, size as usize).await;
        return;
    }
    let parts: Vec<usize> = (0..size.div_ceil(part))
        .map(|n| (size - n * part).min(part) as usize)
        .collect();
    put_in_parts(client, bucket, key, &parts).await;
}

/// Replicates one object with the function's defaults and prints this process's peak RSS in KiB.
async fn rss_child(source: &str, key: &str, target_bucket: &str, prefix: &str) {
    let mut t = target(target_bucket, TARGET_REGIONS[0]);
    t.prefix = prefix.to_string();
    let replicator = Replicator::new(
        Config::new([source.to_string()], vec![t]),
        Clients::from_env().await,
    );
    let report = replicator.apply(&[created(source, key, None)]).await;
    assert!(!report[0].failed(), "{report:?}");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    println!("{}", hwm.split_whitespace().nth(1).unwrap());
}

async fn copy_method() -> Value {
    let sizes = env_list("BENCH_COPY_SIZES_MIB", &[16, 128, 512]);
    if std::env::var("BENCH_COPY_SIZES_MIB").is_ok_and(|v| v.trim().is_empty()) {
        return json!({ "rows": [] });
    }
    let setup = Setup::new(1).await;
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    proxy.set_default_rule(latency_rule(rtt()));
    let src = setup.source_client();
    eprintln!(
        "## Copy method: single CopyObject vs parallel UploadPartCopy (64 MiB parts), {} ms per request, median of 3\n",
        rtt().as_millis()
    );
    eprintln!("| object | CopyObject | multipart |");
    eprintln!("|---|---|---|");
    let mut rows = Vec::new();
    for size in sizes.into_iter().map(|s| s as u64 * MIB) {
        let key = format!("method/{size}");
        // Single-part sources: multipart ones are copied by the engine's own rule.
        put_sized(&src, &setup.source, &key, size as usize).await;
        let mut cells = Vec::new();
        for threshold in [5 * 1024 * MIB, 5 * MIB] {
            let mut times = Vec::new();
            for run in 0..3 {
                // A fresh prefix per run, so that every run copies.
                let mut config = Config::new([setup.source.clone()], setup.targets.clone());
                config.multipart_threshold = threshold;
                config.targets[0].prefix = format!("{threshold}/{run}/");
                let replicator = Replicator::new(config, clients_via(&proxy.endpoint(), 3).await);
                let started = Instant::now();
                let report = replicator
                    .apply(&[created(&setup.source, &key, None)])
                    .await;
                times.push(started.elapsed());
                assert!(!report[0].failed(), "{report:?}");
            }
            cells.push(median(times));
        }
        eprintln!(
            "| {} MiB | {:.0} ms | {:.0} ms |",
            size / MIB,
            ms(cells[0]),
            ms(cells[1])
        );
        rows.push(
            json!({ "size": size, "copy_object_ms": ms(cells[0]), "multipart_ms": ms(cells[1]) }),
        );
    }
    eprintln!();
    json!({ "rows": rows })
}
