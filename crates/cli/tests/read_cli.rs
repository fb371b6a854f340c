//! `s3fanout get` and `s3fanout head` against the local S3 server, each region behind its own
//! fault-injecting proxy.

use std::process::{Command, Output};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, StorageClass};
use aws_sdk_s3::Client;
use fault_proxy::{FaultProxy, Rule};

const REGIONS: [&str; 3] = ["us-west-2", "eu-west-1", "ap-southeast-2"];

struct Replicas {
    buckets: Vec<String>,
    proxies: Vec<FaultProxy>,
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

impl Replicas {
    async fn new(key: &str, body: &[u8]) -> Self {
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .expect("AWS_ENDPOINT_URL is not set: run through tests/with-local-s3.sh");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let mut buckets = Vec::new();
        let mut proxies = Vec::new();
        for (i, region) in REGIONS.iter().enumerate() {
            let bucket = format!("read-cli-{}-{nanos}-{i}", std::process::id());
            let client = client(region).await;
            client
                .create_bucket()
                .bucket(&bucket)
                .create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(*region))
                        .build(),
                )
                .send()
                .await
                .unwrap();
            client
                .put_object()
                .bucket(&bucket)
                .key(key)
                .body(ByteStream::from(body.to_vec()))
                .metadata("owner", "team-a")
                .send()
                .await
                .unwrap();
            buckets.push(bucket);
            proxies.push(FaultProxy::start(&endpoint).await.unwrap());
        }
        Replicas { buckets, proxies }
    }

    fn read_replicas(&self) -> String {
        self.buckets
            .iter()
            .zip(REGIONS)
            .zip(&self.proxies)
            .map(|((bucket, region), proxy)| {
                let endpoint: String = percent_encoding::utf8_percent_encode(
                    &proxy.endpoint(),
                    percent_encoding::NON_ALPHANUMERIC,
                )
                .collect();
                format!("{bucket}@{region}?endpoint={endpoint}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stores replica `i`'s copy of `key` again, in an archive storage class.
    async fn archive(&self, i: usize, key: &str, body: &[u8], class: StorageClass) {
        client(REGIONS[i])
            .await
            .put_object()
            .bucket(&self.buckets[i])
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .storage_class(class)
            .send()
            .await
            .unwrap();
    }

    fn down(&self, i: usize) {
        self.proxies[i].set_default_rule(Rule {
            down: true,
            ..Rule::default()
        });
    }

    /// Runs the binary with these replicas, off the runtime that drives the proxies.
    async fn s3fanout(&self, args: &[&str]) -> Output {
        self.s3fanout_with(&[], args).await
    }

    /// Runs the binary with these replicas and the variables `env`.
    async fn s3fanout_with(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let replicas = self.read_replicas();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_s3fanout"))
                .args(&args)
                .env("READ_REPLICAS", replicas)
                .envs(env)
                .output()
                .expect("the s3fanout binary runs")
        })
        .await
        .unwrap()
    }

    /// GET requests each proxy saw since the last call.
    fn gets(&self) -> Vec<usize> {
        self.proxies
            .iter()
            .map(|p| p.take_seen().iter().filter(|s| s.method == "GET").count())
            .collect()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn transcript(args: &[&str], out: &Output) {
    println!(
        "$ s3fanout {}\n{}{}[exit {}]\n",
        args.join(" "),
        text(&out.stdout),
        text(&out.stderr),
        out.status.code().unwrap_or(-1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local S3 server (make test)"]
async fn get_and_head_survive_one_region_down() {
    let key = "dir/a b+c.txt";
    let replicas = Replicas::new(key, b"hello from every region").await;
    replicas.down(0);
    let dir = std::env::temp_dir().join(format!("read-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("out.txt");
    let metrics = dir.join("metrics.jsonl");
    let _ = std::fs::remove_file(&metrics);
    for _ in 0..3 {
        let args = [
            "get",
            key,
            "-o",
            file.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
        ];
        let out = replicas
            .s3fanout_with(&[("READ_ORDER", "listed")], &args)
            .await;
        transcript(&args, &out);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(std::fs::read(&file).unwrap(), b"hello from every region");
    }
    // In the listed order every run starts at the down region and fails over, so every run
    // reports that region failing.
    let lines = std::fs::read_to_string(&metrics).unwrap();
    let failing: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|d| d["ReadRegionFailing"] == 1)
        .collect();
    assert_eq!(failing.len(), 3, "{lines}");
    assert!(failing.iter().all(|d| d["Region"] == REGIONS[0]), "{lines}");

    let out = replicas.s3fanout(&["get", key]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"hello from every region");

    let args = ["head", key];
    let out = replicas.s3fanout(&args).await;
    transcript(&args, &out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("size            23"), "{stdout}");
    assert!(stdout.contains("x-amz-meta-owner"), "{stdout}");
    assert!(!stdout.contains(&replicas.buckets[0]), "{stdout}");

    let args = ["get", "no such key"];
    let out = replicas.s3fanout(&args).await;
    transcript(&args, &out);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no replica has the key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local S3 server (make test)"]
async fn get_and_head_give_up_naming_every_replica() {
    let key = "gone.txt";
    let replicas = Replicas::new(key, b"x").await;
    for i in 0..3 {
        replicas.down(i);
    }
    for args in [&["get", key, "--metrics-file", "-"][..], &["head", key]] {
        let out = replicas.s3fanout(args).await;
        transcript(args, &out);
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("every replica failed"), "{stderr}");
        for bucket in &replicas.buckets {
            assert!(stderr.contains(bucket), "{stderr}");
        }
        assert!(out.stdout.is_empty());
    }
    let out = replicas
        .s3fanout(&["get", key, "--metrics-file", "-"])
        .await;
    assert!(text(&out.stderr).contains("\"ReadAllRegionsFailed\":1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local S3 server (make test)"]
async fn bad_configuration_exits_2() {
    let out = tokio::task::spawn_blocking(|| {
        Command::new(env!("CARGO_BIN_EXE_s3fanout"))
            .args(["get", "k"])
            .env("READ_REPLICAS", "not-a-replica")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    transcript(&["get", "k"], &out);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not-a-replica"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local S3 server (make test)"]
async fn get_resumes_a_body_cut_mid_stream() {
    let key = "big.bin";
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let replicas = Replicas::new(key, &data).await;
    // In the listed order the read starts at replica 0.
    replicas.proxies[0].set_default_rule(Rule {
        cut_body_after: Some(300_000),
        ..Rule::default()
    });
    let dir = std::env::temp_dir().join(format!("read-cli-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("big.bin");
    let args = ["get", key, "-o", file.to_str().unwrap()];
    let out = replicas
        .s3fanout_with(&[("READ_ORDER", "listed")], &args)
        .await;
    transcript(&args, &out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(std::fs::read(&file).unwrap() == data, "the file differs");
    let resumed: Vec<_> = replicas.proxies[1..]
        .iter()
        .flat_map(|p| p.take_seen())
        .filter_map(|s| s.range)
        .collect();
    assert_eq!(resumed, ["bytes=300000-1048575"]);
    assert_eq!(replicas.proxies[0].take_seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local S3 server (make test)"]
async fn separate_get_processes_start_at_every_replica_unless_the_order_is_listed() {
    const PROCESSES: usize = 120;
    let key = "asset.css";
    let replicas = Replicas::new(key, b"body { color: red }").await;
    replicas.gets();
    let mut firsts = [0usize; 3];
    for _ in 0..PROCESSES {
        let out = replicas.s3fanout(&["get", key]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(out.stdout, b"body { color: red }");
        // Every replica is healthy: the one GET a process sends is its first attempt.
        let gets = replicas.gets();
        assert_eq!(gets.iter().sum::<usize>(), 1, "{gets:?}");
        firsts[gets.iter().position(|&n| n == 1).unwrap()] += 1;
    }
    println!("first replica of {PROCESSES} separate `s3fanout get` processes:");
    for (region, n) in REGIONS.iter().zip(firsts) {
        println!(
            "  {region:<15} {n:>3} ({:.1}%)",
            n as f64 * 100.0 / PROCESSES as f64
        );
    }
    // About 40 each (standard deviation 5.2); a fixed start would give [120, 0, 0].
    assert!(firsts.iter().all(|&n| n >= 15), "{firsts:?}");

    for _ in 0..10 {
        let out = replicas
            .s3fanout_with(&[("READ_ORDER", "listed")], &["get", key])
            .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    assert_eq!(replicas.gets(), [10, 0, 0], "the listed order is pinned");

    let args = ["get", key];
    let out = replicas
        .s3fanout_with(&[("READ_ORDER", "nearest-first")], &args)
        .await;
    transcript(&args, &out);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("READ_ORDER") && stderr.contains("nearest-first"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local S3 server (make test)"]
async fn get_passes_over_archived_copies_and_names_them_when_none_is_left() {
    let key = "report.pdf";
    let body = b"quarterly figures";
    let replicas = Replicas::new(key, body).await;
    replicas.archive(0, key, body, StorageClass::Glacier).await;
    let listed = [("READ_ORDER", "listed")];
    let dir = std::env::temp_dir().join(format!("read-cli-cold-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("report.pdf");
    let args = ["get", key, "-o", file.to_str().unwrap()];
    let out = replicas.s3fanout_with(&listed, &args).await;
    transcript(&args, &out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&file).unwrap(), body);
    assert!(
        text(&out.stderr).contains(&format!("from {}@{}", replicas.buckets[1], REGIONS[1])),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(replicas.gets(), [1, 1, 0]);

    replicas
        .archive(1, key, body, StorageClass::DeepArchive)
        .await;
    replicas.archive(2, key, body, StorageClass::Glacier).await;
    let args = ["get", key];
    let out = replicas.s3fanout_with(&listed, &args).await;
    transcript(&args, &out);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("every replica holding the object has it archived"),
        "{stderr}"
    );
    for (bucket, class) in replicas
        .buckets
        .iter()
        .zip(["GLACIER", "DEEP_ARCHIVE", "GLACIER"])
    {
        assert!(
            stderr.contains(&format!("{bucket}@"))
                && stderr.contains(&format!("403 InvalidObjectState (archived in {class}")),
            "{stderr}"
        );
    }
}
