//! `make bench`: backfilling one bucket to three replicas with `s3fanout backfill` against
//! `aws s3 sync`, `s5cmd sync` and `rclone sync`, through the same local S3 server and the same
//! latency-adding proxy.
//!
//! For each tool: the wall time of a full first run (its runs for the three targets added up,
//! for the tools that sync one destination per run), a check that every target then holds every
//! object, the requests by kind and the most in flight at once, and the requests a second run
//! over the synced buckets makes (which should copy nothing). Every tool runs with its default
//! settings.
//!
//! The reference is the server's raw copy capacity: the bench sends one CopyObject per object
//! and target, at the backfill's concurrency, through the same proxy, with nothing else (no
//! listing, no read), from a process of its own as every tool runs in its own. A backfill can
//! only approach it; `reference time / backfill time` is the share of that capacity it
//! reaches. A second reference sends the same copies as the
//! backfill sends them (pinned to the listed ETag, create-only, metadata and tags copied, a
//! checksum computed): what the server spends on those conditions is part of any safe copy's
//! cost, and the share against it tells that cost apart from the backfill's own. The figures
//! are printed and written as the `backfill` section of `target/bench/results.json`.
//!
//! `BENCH_OBJECTS` (default 2000, which keeps the whole comparison near 7 minutes on two cores)
//! and `BENCH_LATENCY_MS` (default 10) change the workload; `BENCH_TOOLS` (comma-separated:
//! s3fanout,aws,s5cmd,rclone) runs only some tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fault_proxy::{FaultProxy, Rule};
use futures::StreamExt;
use integration::bench::{env_number, write_section, Kinds};
use integration::*;
use serde_json::json;

const TARGETS: usize = 3;
const REGION: &str = "us-east-1";
/// The share of the raw copy capacity the backfill should reach.
const GOAL_SHARE: f64 = 0.95;
/// How many times faster than three runs of `s5cmd sync` (one per target) it should be.
const GOAL_S5CMD: f64 = 1.15;
/// A run that takes longer is stopped and reported, so that the bench stays bounded.
const RUN_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Tool {
    S3fanout,
    AwsCli,
    S5cmd,
    Rclone,
}

impl Tool {
    const ALL: [Tool; 4] = [Tool::S3fanout, Tool::AwsCli, Tool::S5cmd, Tool::Rclone];

    fn id(self) -> &'static str {
        match self {
            Tool::S3fanout => "s3fanout",
            Tool::AwsCli => "aws",
            Tool::S5cmd => "s5cmd",
            Tool::Rclone => "rclone",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Tool::S3fanout => "s3fanout backfill (3 targets in one run)",
            Tool::AwsCli => "aws s3 sync (one run per target)",
            Tool::S5cmd => "s5cmd sync (one run per target)",
            Tool::Rclone => "rclone sync (one run per target)",
        }
    }
}

/// Where the tools are: the workspace's `.venv` (or `$VENV`), the bench's own directory for
/// `s3fanout`, `PATH` for rclone.
struct Paths {
    venv: PathBuf,
    s3fanout: PathBuf,
}

impl Paths {
    fn find() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the tests package sits in the workspace")
            .to_path_buf();
        let venv = std::env::var_os("VENV")
            .map(PathBuf::from)
            .map(|v| if v.is_absolute() { v } else { root.join(v) })
            .unwrap_or_else(|| root.join(".venv"));
        let exe = std::env::current_exe().expect("own path");
        let s3fanout = exe.with_file_name("s3fanout");
        Paths { venv, s3fanout }
    }

    /// The command for a tool, or why it cannot run.
    fn program(&self, tool: Tool) -> Result<PathBuf, String> {
        let path = match tool {
            Tool::S3fanout => self.s3fanout.clone(),
            Tool::AwsCli => self.venv.join("bin/aws"),
            Tool::S5cmd => self.venv.join("bin/s5cmd"),
            Tool::Rclone => return which("rclone").ok_or_else(|| "rclone not installed".into()),
        };
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!("not installed ({})", path.display()))
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// What one tool did.
enum Row {
    Measured {
        first: Duration,
        first_requests: Kinds,
        first_in_flight: usize,
        complete: Vec<usize>,
        noop: Duration,
        noop_requests: Kinds,
    },
    Failed(String),
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(REFERENCE_ARG) {
        return reference_process(&args[1..]).await;
    }
    let objects: usize = env_number("BENCH_OBJECTS", 2_000);
    let latency_ms: u64 = env_number("BENCH_LATENCY_MS", 10) as u64;
    let only: Option<Vec<String>> = std::env::var("BENCH_TOOLS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let tools: Vec<Tool> = Tool::ALL
        .into_iter()
        .filter(|t| only.as_ref().is_none_or(|o| o.iter().any(|n| n == t.id())))
        .collect();

    let clients = clients().await;
    let direct = clients.for_region(REGION);
    let source = unique("bfsrc");
    create_bucket(&clients, &source, REGION).await;
    let started = Instant::now();
    fill(&direct, &source, objects).await;
    eprintln!(
        "put {objects} objects into {source} in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    proxy.set_default_rule(Rule {
        latency: Duration::from_millis(latency_ms),
        ..Rule::default()
    });
    let paths = Paths::find();

    let concurrency = env_number(
        s3fanout::core::config::vars::COPY_CONCURRENCY,
        s3fanout::core::config::DEFAULT_CONCURRENCY,
    );
    let mut rows = Vec::new();
    let mut reference = None;
    let mut conditioned: Option<Reference> = None;
    for tool in tools {
        // The references run just before the backfill, on the server as the backfill finds it,
        // the raw one last.
        if tool == Tool::S3fanout {
            let copies = objects * TARGETS;
            eprintln!("reference: {copies} CopyObject requests as a backfill sends them...");
            conditioned = Some(
                raw_copies(&clients, &proxy, &source, concurrency, Requests::AsBackfill).await,
            );
            eprintln!(
                "reference: {copies} bare CopyObject requests at concurrency {concurrency}..."
            );
            reference =
                Some(raw_copies(&clients, &proxy, &source, concurrency, Requests::Bare).await);
        }
        let mut targets = Vec::new();
        for _ in 0..TARGETS {
            let bucket = unique(&format!("bf{}", tool.id()));
            create_bucket(&clients, &bucket, REGION).await;
            targets.push(bucket);
        }
        eprintln!("{}: first run...", tool.id());
        let row = match paths.program(tool) {
            Err(why) => Row::Failed(why),
            Ok(program) => measure(tool, &program, &proxy, &direct, &source, &targets).await,
        };
        rows.push((tool, row));
    }

    println!("## Backfill: one bucket of {objects} small objects to {TARGETS} target buckets\n");
    println!(
        "Same local S3 server (moto), every request through one proxy adding {latency_ms} ms; \
         tools at their default settings; replicas/s = {TARGETS} x {objects} replicas / first-run \
         time. The reference sends only the {} CopyObject requests, {concurrency} at a time. The \
         no-op run repeats the sync over the synced buckets.\n",
        TARGETS * objects
    );
    println!(
        "| tool | first run (s) | replicas/s | share of raw capacity | first-run requests (List / HEAD / copy / other) | \
         most in flight | targets complete | no-op run (s) | no-op List | no-op HEAD | no-op copy | no-op other |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let replicas = (TARGETS * objects) as f64;
    let mut json_tools = Vec::new();
    if let Some(r) = &reference {
        println!(
            "| raw CopyObject capacity (reference) | {:.1} | {:.0} | 1.00 | 0 / 0 / {} / 0 | {} | | | | | | |",
            r.elapsed.as_secs_f64(),
            replicas / r.elapsed.as_secs_f64(),
            r.copies,
            r.in_flight
        );
    }
    if let (Some(r), Some(c)) = (&reference, &conditioned) {
        println!(
            "| the same copies as a backfill sends them (pinned, create-only, checksum) | {:.1} | {:.0} | {:.2} | 0 / 0 / {} / 0 | {} | | | | | | |",
            c.elapsed.as_secs_f64(),
            replicas / c.elapsed.as_secs_f64(),
            r.elapsed.as_secs_f64() / c.elapsed.as_secs_f64(),
            c.copies,
            c.in_flight
        );
    }
    let mut rewrote_metadata = false;
    let mut times = std::collections::HashMap::new();
    for (tool, row) in rows {
        match row {
            Row::Failed(why) => {
                println!("| {} | {why} | | | | | | | | | | |", tool.label());
                json_tools.push(json!({ "id": tool.id(), "label": tool.label(), "error": why }));
            }
            Row::Measured {
                first,
                first_requests: f,
                first_in_flight,
                complete,
                noop,
                noop_requests: r,
            } => {
                rewrote_metadata |= tool == Tool::Rclone && r.copies() > 0.0;
                times.insert(tool, first.as_secs_f64());
                let all = complete.iter().all(|&n| n == objects);
                let share = reference
                    .as_ref()
                    .map(|c| c.elapsed.as_secs_f64() / first.as_secs_f64());
                let cell = if all {
                    format!("yes ({TARGETS} x {objects})")
                } else {
                    format!("NO: {complete:?} of {objects}")
                };
                println!(
                    "| {} | {:.1} | {:.0} | {} | {} / {} / {} / {} | {first_in_flight} | {cell} | {:.1} | {} | {} | {} | {} |",
                    tool.label(),
                    first.as_secs_f64(),
                    replicas / first.as_secs_f64(),
                    share.map(|s| format!("{s:.2}")).unwrap_or_default(),
                    f.list,
                    f.reads(),
                    f.copies(),
                    f.put + f.post + f.delete,
                    noop.as_secs_f64(),
                    r.list,
                    r.reads(),
                    r.copies(),
                    r.put + r.post + r.delete,
                );
                json_tools.push(json!({
                    "id": tool.id(), "label": tool.label(),
                    "first_s": round(first.as_secs_f64()),
                    "replicas_per_s": round(replicas / first.as_secs_f64()),
                    "share_of_raw_capacity": share.map(round),
                    "first_requests": f.json(),
                    "first_requests_per_replica": f.per(replicas).json(),
                    "max_in_flight": first_in_flight,
                    "complete": all, "replicas_found": complete,
                    "noop_s": round(noop.as_secs_f64()),
                    "noop_requests": r.json(),
                    "noop_listings_only": r.total() == r.list,
                }));
            }
        }
    }
    if rewrote_metadata {
        println!(
            "\nrclone's no-op copies copy each replica onto itself: by default it compares \
             modification times, which it keeps in metadata (HEAD on both sides per object), and \
             writes that metadata into replicas that lack it; they move no data."
        );
    }
    let ratio = |a: Tool, b: Tool| match (times.get(&a), times.get(&b)) {
        (Some(a), Some(b)) => Some(round(a / b)),
        _ => None,
    };
    let vs_reference = match (&reference, times.get(&Tool::S3fanout)) {
        (Some(r), Some(t)) => Some(round(r.elapsed.as_secs_f64() / t)),
        _ => None,
    };
    let vs_conditioned = match (&conditioned, times.get(&Tool::S3fanout)) {
        (Some(c), Some(t)) => Some(round(c.elapsed.as_secs_f64() / t)),
        _ => None,
    };
    let vs_s5cmd = ratio(Tool::S5cmd, Tool::S3fanout);
    println!(
        "\n- s3fanout backfill reaches {} of the raw copy capacity (goal: at least {GOAL_SHARE}) and \
         is {}x as fast as s5cmd sync run once per target (goal: at least {GOAL_S5CMD}x).",
        vs_reference.map(|v| format!("{v:.2}")).unwrap_or("-".into()),
        vs_s5cmd.map(|v| format!("{v:.2}")).unwrap_or("-".into()),
    );
    println!(
        "- It reaches {} of the capacity for copies carrying its conditions.",
        vs_conditioned
            .map(|v| format!("{v:.2}"))
            .unwrap_or("-".into()),
    );
    println!();
    write_section(
        "backfill",
        &json!({
            "objects": objects, "targets": TARGETS, "latency_ms": latency_ms,
            "concurrency": concurrency,
            "reference": reference.as_ref().map(|r| r.json(replicas)),
            "reference_as_backfill": conditioned.as_ref().map(|c| c.json(replicas)),
            "s3fanout_share_of_conditioned_capacity": vs_conditioned,
            "tools": json_tools,
            "s3fanout_share_of_raw_capacity": vs_reference,
            "s5cmd_time_over_s3fanout": vs_s5cmd,
            "aws_time_over_s3fanout": ratio(Tool::AwsCli, Tool::S3fanout),
            "rclone_time_over_s3fanout": ratio(Tool::Rclone, Tool::S3fanout),
            "goal_share": GOAL_SHARE, "goal_s5cmd": GOAL_S5CMD,
        }),
    );
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// What the reference copies carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requests {
    /// A bare CopyObject: bucket, key and copy source.
    Bare,
    /// The conditions and directives a backfill's copy carries: the source pinned to its
    /// listed ETag, create-only, metadata and tags copied, a checksum computed afresh. What
    /// the server spends on them is part of any safe copy's cost.
    AsBackfill,
}

impl Requests {
    fn arg(self) -> &'static str {
        match self {
            Requests::Bare => "bare",
            Requests::AsBackfill => "as-backfill",
        }
    }

    fn from_arg(arg: &str) -> Self {
        match arg {
            "bare" => Requests::Bare,
            "as-backfill" => Requests::AsBackfill,
            other => panic!("requests {other:?}: bare or as-backfill"),
        }
    }
}

/// The raw copy capacity of the server behind the proxy.
struct Reference {
    copies: usize,
    elapsed: Duration,
    in_flight: usize,
}

impl Reference {
    /// As `results.json` holds it.
    fn json(&self, replicas: f64) -> serde_json::Value {
        json!({
            "copies": self.copies, "seconds": round(self.elapsed.as_secs_f64()),
            "replicas_per_s": round(replicas / self.elapsed.as_secs_f64()),
            "max_in_flight": self.in_flight,
        })
    }
}

/// Sends one CopyObject per source object and target, `concurrency` at a time, through the
/// proxy, into fresh targets: the most a backfill of this bucket could do. The copies are sent
/// by a process of their own, as every tool runs in its own process: the bench's process also
/// runs the proxy, and on a small machine a client sharing it would be slowed down by it.
async fn raw_copies(
    clients: &s3fanout::Clients,
    proxy: &FaultProxy,
    source: &str,
    concurrency: usize,
    requests: Requests,
) -> Reference {
    let mut targets = Vec::new();
    for _ in 0..TARGETS {
        let bucket = unique("bfraw");
        create_bucket(clients, &bucket, REGION).await;
        targets.push(bucket);
    }
    proxy.take_seen();
    proxy.take_max_in_flight();
    let exe = std::env::current_exe().expect("the bench's own path");
    let output = Command::new(exe)
        .arg(REFERENCE_ARG)
        .arg(proxy.endpoint())
        .arg(source)
        .arg(concurrency.to_string())
        .arg(requests.arg())
        .args(&targets)
        .stderr(Stdio::inherit())
        .output()
        .expect("start the reference's process");
    assert!(output.status.success(), "the reference's copies failed");
    let answer = String::from_utf8_lossy(&output.stdout);
    let (copies, seconds) = answer
        .trim()
        .split_once(' ')
        .and_then(|(c, s)| Some((c.parse::<usize>().ok()?, s.parse::<f64>().ok()?)))
        .unwrap_or_else(|| panic!("the reference answered {answer:?}"));
    // More requests than copies would be the SDK's retries: the server refused some.
    let sent = proxy.take_seen().len();
    if sent != copies {
        eprintln!("reference: {sent} requests for {copies} copies (retries)");
    }
    Reference {
        copies,
        elapsed: Duration::from_secs_f64(seconds),
        in_flight: proxy.take_max_in_flight(),
    }
}

/// The argument that makes this program the reference's process.
const REFERENCE_ARG: &str = "--reference-copies";

/// The reference's process: `--reference-copies PROXY SOURCE CONCURRENCY REQUESTS TARGET...`.
/// Lists the source directly, then times the copies sent through the proxy; prints the number
/// of copies and the seconds they took.
async fn reference_process(args: &[String]) {
    let [proxy, source, concurrency, requests, targets @ ..] = args else {
        panic!("{REFERENCE_ARG} PROXY SOURCE CONCURRENCY REQUESTS TARGET...: got {args:?}");
    };
    let concurrency: usize = concurrency.parse().expect("a concurrency");
    let requests = Requests::from_arg(requests);
    let direct = clients().await.for_region(REGION);
    let mut keys = Vec::new();
    let mut pages = direct
        .list_objects_v2()
        .bucket(source)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.expect("list the source");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| Some((o.key()?.to_string(), o.e_tag()?.to_string()))),
        );
    }
    let client = clients_via(proxy, 3).await.for_region(REGION);
    let jobs: Vec<(&(String, String), &String)> = keys
        .iter()
        .flat_map(|k| targets.iter().map(move |t| (k, t)))
        .collect();
    let copies = jobs.len();
    let started = Instant::now();
    futures::stream::iter(jobs)
        .map(|((key, etag), target)| {
            let client = client.clone();
            async move {
                // The keys are plain ASCII without reserved characters: no encoding needed.
                let copy = client
                    .copy_object()
                    .bucket(target)
                    .key(key)
                    .copy_source(format!("{source}/{key}"));
                let copy = match requests {
                    Requests::Bare => copy,
                    Requests::AsBackfill => copy
                        .copy_source_if_match(etag)
                        .if_none_match("*")
                        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Copy)
                        .tagging_directive(aws_sdk_s3::types::TaggingDirective::Copy)
                        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc64Nvme),
                };
                copy.send()
                    .await
                    .unwrap_or_else(|e| panic!("copy {key}: {e:?}"));
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    println!("{copies} {}", started.elapsed().as_secs_f64());
}

/// Puts `n` objects of a few hundred bytes, spread over a few prefixes, many at once.
async fn fill(client: &aws_sdk_s3::Client, bucket: &str, n: usize) {
    futures::stream::iter(0..n)
        .map(|i| {
            let key = format!("data/{:02}/object-{i:05}.txt", i % 20);
            let body = format!("{i}:{}", "abcdefghij".repeat(20 + i % 30));
            async move { put(client, bucket, &key, body.as_bytes()).await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
}

/// Objects in a bucket, listed directly (not through the proxy).
async fn count(client: &aws_sdk_s3::Client, bucket: &str) -> usize {
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .into_paginator()
        .send();
    let mut n = 0;
    while let Some(page) = pages.next().await {
        n += page.expect("list a target").contents().len();
    }
    n
}

async fn measure(
    tool: Tool,
    program: &Path,
    proxy: &FaultProxy,
    direct: &aws_sdk_s3::Client,
    source: &str,
    targets: &[String],
) -> Row {
    let endpoint = proxy.endpoint();
    proxy.take_seen();
    proxy.take_max_in_flight();
    let first = match sync(tool, program, &endpoint, source, targets).await {
        Ok(elapsed) => elapsed,
        Err(why) => return Row::Failed(format!("first run failed: {why}")),
    };
    let first_requests = Kinds::count(&proxy.take_seen(), Some(source));
    let first_in_flight = proxy.take_max_in_flight();
    let mut complete = Vec::new();
    for target in targets {
        complete.push(count(direct, target).await);
    }
    eprintln!(
        "{}: first run {:.1} s, targets hold {complete:?}; no-op run...",
        tool.id(),
        first.as_secs_f64()
    );
    let noop = match sync(tool, program, &endpoint, source, targets).await {
        Ok(elapsed) => elapsed,
        Err(why) => return Row::Failed(format!("no-op run failed: {why}")),
    };
    let noop_requests = Kinds::count(&proxy.take_seen(), Some(source));
    Row::Measured {
        first,
        first_requests,
        first_in_flight,
        complete,
        noop,
        noop_requests,
    }
}

/// One full sync of `source` to every target with a tool; the time of all its runs.
async fn sync(
    tool: Tool,
    program: &Path,
    endpoint: &str,
    source: &str,
    targets: &[String],
) -> Result<Duration, String> {
    let commands: Vec<Command> = match tool {
        Tool::S3fanout => {
            let mut c = Command::new(program);
            let replicas: Vec<String> = targets.iter().map(|t| format!("{t}@{REGION}")).collect();
            c.args(["backfill", "--json"])
                .env("SOURCE_BUCKETS", source)
                .env("REPLICA_TARGETS", replicas.join(","))
                .env("AWS_ENDPOINT_URL", endpoint)
                .env_remove("AWS_ENDPOINT_URL_S3");
            vec![c]
        }
        Tool::AwsCli => targets
            .iter()
            .map(|t| {
                let mut c = Command::new(program);
                c.args([
                    "s3",
                    "sync",
                    &format!("s3://{source}"),
                    &format!("s3://{t}"),
                ])
                .args(["--endpoint-url", endpoint, "--only-show-errors"]);
                c
            })
            .collect(),
        Tool::S5cmd => targets
            .iter()
            .map(|t| {
                let mut c = Command::new(program);
                c.args(["--endpoint-url", endpoint, "sync"])
                    .arg(format!("s3://{source}/*"))
                    .arg(format!("s3://{t}/"));
                c
            })
            .collect(),
        Tool::Rclone => targets
            .iter()
            .map(|t| {
                let mut c = Command::new(program);
                c.args(["sync", &format!("s3:{source}"), &format!("s3:{t}")])
                    .arg("--s3-no-check-bucket")
                    .env("RCLONE_CONFIG_S3_TYPE", "s3")
                    .env("RCLONE_CONFIG_S3_PROVIDER", "Other")
                    .env("RCLONE_CONFIG_S3_ENV_AUTH", "false")
                    .env(
                        "RCLONE_CONFIG_S3_ACCESS_KEY_ID",
                        std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default(),
                    )
                    .env(
                        "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY",
                        std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
                    )
                    .env("RCLONE_CONFIG_S3_ENDPOINT", endpoint)
                    .env("RCLONE_CONFIG_S3_REGION", REGION)
                    .env("RCLONE_CONFIG_S3_FORCE_PATH_STYLE", "true")
                    // rclone will not start with a CA bundle it cannot load; plain HTTP needs none.
                    .env_remove("AWS_CA_BUNDLE");
                c
            })
            .collect(),
    };
    let mut total = Duration::ZERO;
    for command in commands {
        total += tokio::task::spawn_blocking(move || run_bounded(command))
            .await
            .map_err(|e| e.to_string())??;
    }
    Ok(total)
}

/// Runs a command to its end or to `RUN_LIMIT`; its output is kept only to explain a failure.
fn run_bounded(mut command: Command) -> Result<Duration, String> {
    let log = std::env::temp_dir().join(format!("bench-backfill-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let elapsed = started.elapsed();
            if status.success() {
                return Ok(elapsed);
            }
            let stderr = std::fs::read_to_string(&log).unwrap_or_default();
            let last = stderr.lines().last().unwrap_or("").trim().to_string();
            return Err(format!("{status}: {last}"));
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("stopped after {} s", RUN_LIMIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
