//! Read-path figures against the local S3 server (run by `make bench`):
//! - latency of small GETs across 3 replicas, each "region" behind its own proxy: healthy,
//!   one region 200 ms slow without hedging (latency-aware and plain round-robin), and with
//!   hedging after the 90th percentile;
//! - peak RSS of a fresh process streaming a 1 MiB and a 1 GiB object through the reader.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration,
};
use aws_sdk_s3::Client;
use fault_proxy::{FaultProxy, Rule};
use s3fanout_read::{parse_replicas, Hedge, ReadConfig, Reader, ReplicaOrder};

const REGIONS: [&str; 3] = ["us-west-2", "eu-west-1", "ap-southeast-2"];
const MIB: u64 = 1024 * 1024;
const READS: usize = 1000;
const ROUNDS: usize = 3;
const SLOW: Duration = Duration::from_millis(200);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("stream-child") {
        stream_child(&args[2], &args[3]).await;
        return;
    }
    latency().await;
    if args.get(1).map(String::as_str) != Some("latency") {
        memory().await;
    }
}

fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").expect("run under tests/with-local-s3.sh")
}

async fn client(region: &str) -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .load()
        .await;
    Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    )
}

async fn bucket(region: &str, name: &str) -> Client {
    let client = client(region).await;
    let mut request = client.create_bucket().bucket(name);
    if region != "us-east-1" {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    request.send().await.expect("create bucket");
    client
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn latency() {
    let id = std::process::id();
    let mut list = Vec::new();
    let mut proxies = Vec::new();
    for (i, region) in REGIONS.iter().enumerate() {
        let name = format!("bench-read-{id}-{i}");
        let client = bucket(region, &name).await;
        client
            .put_object()
            .bucket(&name)
            .key("small.bin")
            .body(ByteStream::from(vec![7u8; 1024]))
            .send()
            .await
            .unwrap();
        let proxy = FaultProxy::start(&endpoint()).await.unwrap();
        list.push(format!(
            "{name}@{region}?endpoint={}",
            encode(&proxy.endpoint())
        ));
        proxies.push(proxy);
    }
    let replicas = parse_replicas(&list.join(",")).unwrap();
    let hedged = Hedge::AfterPercentile {
        percentile: 90.0,
        min_delay: Duration::from_millis(2),
        min_samples: 20,
    };
    let scenarios = [
        ("healthy", false, Hedge::Off, ReplicaOrder::default()),
        (
            "healthy, hedging after p90",
            false,
            hedged,
            ReplicaOrder::default(),
        ),
        (
            "one region +200 ms, no hedging, round-robin",
            true,
            Hedge::Off,
            ReplicaOrder::RoundRobin,
        ),
        (
            "one region +200 ms, no hedging, latency-aware",
            true,
            Hedge::Off,
            ReplicaOrder::default(),
        ),
        (
            "one region +200 ms, hedging after p90",
            true,
            hedged,
            ReplicaOrder::default(),
        ),
    ];
    println!("## Read latency: {READS} GETs of 1 KiB across 3 replicas (each region behind its own proxy), median of {ROUNDS} rounds\n");
    println!("| scenario | p50 | p99 | max | extra requests (hedges, failovers) |");
    println!("|---|---|---|---|---|");
    // Rounds interleave the scenarios, so that the machine's background noise spreads evenly.
    let mut results: Vec<Vec<[f64; 4]>> = vec![Vec::new(); scenarios.len()];
    for _ in 0..ROUNDS {
        for (i, (_, slow, hedge, order)) in scenarios.iter().enumerate() {
            proxies[0].set_default_rule(Rule {
                latency: if *slow { SLOW } else { Duration::ZERO },
                ..Rule::default()
            });
            let config = ReadConfig {
                hedge: *hedge,
                order: *order,
                host: Some("bench".into()),
                ..ReadConfig::default()
            };
            let reader = Reader::new(replicas.clone(), config).await.unwrap();
            // Warm-up: connections, and the latency averages and percentile window.
            for _ in 0..60 {
                read(&reader).await;
            }
            for proxy in &proxies {
                proxy.take_seen();
            }
            let mut times = Vec::with_capacity(READS);
            for _ in 0..READS {
                let started = Instant::now();
                read(&reader).await;
                times.push(started.elapsed());
            }
            let requests: usize = proxies.iter().map(|p| p.take_seen().len()).sum();
            times.sort();
            results[i].push([
                ms(percentile(&times, 50.0)),
                ms(percentile(&times, 99.0)),
                ms(*times.last().unwrap()),
                (requests - READS) as f64,
            ]);
        }
    }
    let median = |runs: &[[f64; 4]], k: usize| {
        let mut values: Vec<f64> = runs.iter().map(|r| r[k]).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let mut p99s = Vec::new();
    for ((label, ..), runs) in scenarios.iter().zip(&results) {
        println!(
            "| {label} | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} |",
            median(runs, 0),
            median(runs, 1),
            median(runs, 2),
            median(runs, 3)
        );
        p99s.push(median(runs, 1));
    }
    println!();
    println!(
        "p99 with one region slow / healthy p99 (no hedging): round-robin {:.2}x, latency-aware {:.2}x, hedged {:.2}x (goal: at most 1.5x); hedged slow / hedged healthy: {:.2}x\n",
        p99s[2] / p99s[0],
        p99s[3] / p99s[0],
        p99s[4] / p99s[0],
        p99s[4] / p99s[1]
    );
}

async fn read(reader: &Reader) {
    let served = reader.get("small.bin", None).await.expect("read");
    let body = served.output.body.collect().await.expect("body");
    assert_eq!(body.into_bytes().len(), 1024);
}

async fn memory() {
    let name = format!("bench-read-rss-{}", std::process::id());
    let client = bucket("us-east-1", &name).await;
    println!("## Memory: peak RSS of a fresh process streaming one object through the reader (median of 3 runs)\n");
    println!("| object | peak RSS | read at |");
    println!("|---|---|---|");
    for (label, size) in [("1 MiB", MIB), ("1 GiB", 1024 * MIB)] {
        let key = format!("rss/{label}");
        upload(&client, &name, &key, size).await;
        let mut samples = Vec::new();
        for _ in 0..3 {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["stream-child", &format!("{name}@us-east-1"), &key])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).unwrap();
            let mut fields = text.split_whitespace();
            let kib: u64 = fields.next().unwrap().parse().unwrap();
            let bytes: u64 = fields.next().unwrap().parse().unwrap();
            let secs: f64 = fields.next().unwrap().parse().unwrap();
            assert_eq!(bytes, size);
            samples.push((kib, secs));
        }
        samples.sort_by_key(|s| s.0);
        let (kib, secs) = samples[1];
        println!(
            "| {label} | {:.1} MiB | {:.0} MiB/s |",
            kib as f64 / 1024.0,
            size as f64 / MIB as f64 / secs
        );
    }
    println!();
}

/// Uploads `size` bytes of a repeating pattern, in 64 MiB parts above that size, so that the
/// bench itself never holds more than one part.
async fn upload(client: &Client, bucket: &str, key: &str, size: u64) {
    let part = 64 * MIB;
    let chunk = |n: u64| -> Vec<u8> { (0..n).map(|i| (i % 251) as u8).collect() };
    if size <= part {
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(chunk(size)))
            .send()
            .await
            .unwrap();
        return;
    }
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let mut parts = Vec::new();
    for (i, offset) in (0..size).step_by(part as usize).enumerate() {
        let number = i as i32 + 1;
        let out = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(chunk((size - offset).min(part))))
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// Streams one object through a reader and prints peak RSS (KiB), bytes and seconds.
async fn stream_child(replica: &str, key: &str) {
    let reader = Reader::new(parse_replicas(replica).unwrap(), ReadConfig::default())
        .await
        .unwrap();
    let started = Instant::now();
    let served = reader.get(key, None).await.unwrap();
    let mut body = served.output.body.into_async_read();
    let bytes = tokio::io::copy(&mut body, &mut tokio::io::sink())
        .await
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    println!("{} {bytes} {secs}", hwm.split_whitespace().nth(1).unwrap());
}
