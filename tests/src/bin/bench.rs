//! `make bench`: figures for the replicate path against the local S3 server.
//!
//! - fan-out: time to replicate one object to 1 and to 8 targets with ~30 ms injected per
//!   request (the fault proxy), median of several runs; the ratio shows whether targets are
//!   copied concurrently;
//! - memory: peak RSS of a fresh process that replicates one object of 1 MiB, 100 MiB and 1 GiB
//!   (median of runs); bytes never pass through the process, so it stays flat;
//! - copy method: single CopyObject against parallel UploadPartCopy for a few sizes, which the
//!   default multipart threshold is chosen from.

use std::time::{Duration, Instant};

use fault_proxy::{FaultProxy, Rule};
use integration::*;
use s3fanout::{Clients, Config, Replicator};

const MIB: u64 = 1024 * 1024;
const RUNS: usize = 7;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("rss-child") {
        return rss_child(&args[2], &args[3], &args[4], &args[5]).await;
    }
    fan_out().await;
    memory().await;
    copy_method().await;
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

async fn fan_out() {
    let setup = Setup::new(4).await;
    let mut targets = setup.targets.clone();
    for region in TARGET_REGIONS {
        let bucket = unique("fan");
        create_bucket(&setup.clients, &bucket, region).await;
        targets.push(target(&bucket, region));
    }
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    let src = setup.source_client();

    println!(
        "## Fan-out: time to replicate one object, median of {RUNS} runs
"
    );
    println!("| object | targets | requests | ~30 ms added per request | no added latency |");
    println!("|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for (label, size) in [("1 KiB", 1024usize), ("1 MiB", MIB as usize)] {
        let body = vec![7u8; size];
        let mut medians = Vec::new();
        for n in [1usize, 8] {
            let config = Config::new([setup.source.clone()], targets[..n].to_vec());
            let replicator = Replicator::new(config, clients_via(&proxy.endpoint(), 3).await);
            let mut cells = Vec::new();
            let mut requests = 0;
            for latency in [30, 0] {
                proxy.set_default_rule(Rule {
                    latency: Duration::from_millis(latency),
                    ..Rule::default()
                });
                let mut times = Vec::new();
                for run in 0..RUNS {
                    let key = format!("fan/{label}/{n}/{latency}/{run}");
                    let etag = put(&src, &setup.source, &key, &body).await;
                    proxy.take_seen();
                    let started = Instant::now();
                    let report = replicator
                        .apply(&[created(&setup.source, &key, Some(&etag))])
                        .await;
                    times.push(started.elapsed());
                    requests = proxy.take_seen().len();
                    assert!(!report[0].failed(), "{report:?}");
                }
                cells.push(median(times));
            }
            println!(
                "| {label} | {n} | {requests} | {} ms | {} ms |",
                cells[0].as_millis(),
                cells[1].as_millis()
            );
            medians.push(cells);
        }
        let total = medians[1][0].as_secs_f64() / medians[0][0].as_secs_f64();
        // The part due to the added latency alone, without the local server's own time.
        let latency = |m: &[Duration]| (m[0].saturating_sub(m[1])).as_secs_f64();
        ratios.push((label, total, latency(&medians[1]) / latency(&medians[0])));
    }
    println!();
    for (label, total, latency_part) in ratios {
        println!("- {label}: 8 targets / 1 target = {total:.2}x (goal: at most 1.2x); the added latency alone: {latency_part:.2}x");
    }
    println!();
}

async fn memory() {
    let setup = Setup::new(1).await;
    let src = setup.source_client();
    println!("## Memory: peak RSS of a fresh process replicating one object (median of 3 runs)\n");
    println!("| object | copy | peak RSS |");
    println!("|---|---|---|");
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
            samples.push(
                String::from_utf8(out.stdout)
                    .unwrap()
                    .trim()
                    .parse::<u64>()
                    .unwrap(),
            );
        }
        samples.sort();
        let method = if size > s3fanout::core::config::DEFAULT_MULTIPART_THRESHOLD {
            "multipart"
        } else {
            "CopyObject"
        };
        println!(
            "| {label} | {method} | {:.1} MiB |",
            samples[1] as f64 / 1024.0
        );
    }
    println!();
}

/// Uploads `size` bytes, in 64 MiB parts above that size.
async fn upload(client: &aws_sdk_s3::Client, bucket: &str, key: &str, size: u64) {
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

async fn copy_method() {
    let setup = Setup::new(1).await;
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    proxy.set_default_rule(Rule {
        latency: Duration::from_millis(30),
        ..Rule::default()
    });
    let src = setup.source_client();
    println!("## Copy method: single CopyObject vs parallel UploadPartCopy (64 MiB parts), ~30 ms per request, median of 3\n");
    println!("| object | CopyObject | multipart |");
    println!("|---|---|---|");
    for size in [16 * MIB, 128 * MIB, 512 * MIB] {
        let key = format!("method/{size}");
        // Single-part sources: multipart ones are always copied part by part, keeping their ETag.
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
            cells.push(format!("{} ms", median(times).as_millis()));
        }
        println!("| {} MiB | {} | {} |", size / MIB, cells[0], cells[1]);
    }
    println!();
}
