//! The read path against the local S3 server, each "region" behind its own fault-injecting
//! proxy (the replica's `endpoint` option).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, StorageClass};
use aws_sdk_s3::Client;
use fault_proxy::{ErrorReply, FaultProxy, Rule, Seen};
use s3fanout_read::{
    parse_replicas, Answer, ByteRange, MissingPolicy, ReadConfig, ReadErrorKind, Reader,
    ReplicaOrder, ResumeError, RotationStart,
};
use serde_json::Value;

const REGIONS: [&str; 3] = ["us-west-2", "eu-west-1", "ap-southeast-2"];

/// Three replica buckets holding the same objects, each region behind its own proxy.
struct Replicas {
    buckets: Vec<String>,
    proxies: Vec<FaultProxy>,
}

fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL_S3")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .expect("AWS_ENDPOINT_URL is not set: run through tests/with-local-s3.sh")
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

fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

impl Replicas {
    async fn new() -> Self {
        let mut buckets = Vec::new();
        let mut proxies = Vec::new();
        for region in REGIONS {
            let bucket = unique("read");
            client(region)
                .await
                .create_bucket()
                .bucket(&bucket)
                .create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(region))
                        .build(),
                )
                .send()
                .await
                .unwrap_or_else(|e| panic!("create {bucket}: {e:?}"));
            buckets.push(bucket);
            proxies.push(FaultProxy::start(&endpoint()).await.unwrap());
        }
        Replicas { buckets, proxies }
    }

    /// Puts `body` under `key` in the replicas listed.
    async fn put(&self, key: &str, body: &[u8], which: &[usize]) {
        for &i in which {
            client(REGIONS[i])
                .await
                .put_object()
                .bucket(&self.buckets[i])
                .key(key)
                .body(ByteStream::from(body.to_vec()))
                .send()
                .await
                .unwrap();
        }
    }

    /// Puts `body` under `key` in replica `i`, in the archive storage class `class`: the
    /// server refuses to GET it as S3 does until it is restored.
    async fn put_archived(&self, key: &str, body: &[u8], i: usize, class: StorageClass) {
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

    fn list(&self) -> String {
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

    async fn reader(&self, config: ReadConfig) -> Reader {
        let config = ReadConfig {
            host: Some("test-host".into()),
            ..config
        };
        Reader::new(parse_replicas(&self.list()).unwrap(), config)
            .await
            .unwrap()
    }

    fn down(&self, i: usize) {
        self.proxies[i].set_default_rule(Rule {
            down: true,
            ..Rule::default()
        });
    }

    /// GET requests each proxy saw since the last call.
    fn gets(&self) -> Vec<usize> {
        self.seen_gets().iter().map(Vec::len).collect()
    }

    /// The GET requests each proxy saw since the last call.
    fn seen_gets(&self) -> Vec<Vec<Seen>> {
        self.proxies
            .iter()
            .map(|p| {
                p.take_seen()
                    .into_iter()
                    .filter(|s| s.method == "GET")
                    .collect()
            })
            .collect()
    }

    /// Replica `i` answers every request with `status` and the S3 error `code`.
    fn answer(&self, i: usize, status: u16, code: &str) {
        self.proxies[i].set_default_rule(Rule {
            reply: Some(ErrorReply::new(status, code)),
            ..Rule::default()
        });
    }

    /// Replica `i` closes the connection after `bytes` bytes of every GET body.
    fn cut_bodies(&self, i: usize, bytes: u64) {
        self.proxies[i].set_default_rule(Rule {
            cut_body_after: Some(bytes),
            ..Rule::default()
        });
    }
}

/// Every request's first attempt goes to the next replica in turn, the first to replica 0.
fn round_robin() -> ReadConfig {
    ReadConfig {
        order: ReplicaOrder::RoundRobin,
        start: RotationStart::At(0),
        ..ReadConfig::default()
    }
}

/// 1 MiB in which every offset holds a different byte from its neighbours.
fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

async fn body(reader: &Reader, key: &str) -> Vec<u8> {
    let served = reader
        .get(key, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    served
        .output
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

/// The EMF lines a reader emits now, parsed.
fn emitted(reader: &Reader) -> Vec<Value> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    reader.emit_metrics(std::time::Duration::from_secs(60), &move |line: &str| {
        sink.lock()
            .unwrap()
            .push(serde_json::from_str::<Value>(line).unwrap())
    });
    let lines = lines.lock().unwrap().clone();
    lines
}

fn region_gauges(docs: &[Value]) -> HashMap<String, u64> {
    docs.iter()
        .filter(|d| d.get("ReadRegionFailing").is_some())
        .map(|d| {
            assert_eq!(d["Host"], "test-host");
            (
                d["Region"].as_str().unwrap().to_string(),
                d["ReadRegionFailing"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn all_failed(docs: &[Value]) -> u64 {
    docs.iter()
        .find_map(|d| d.get("ReadAllRegionsFailed"))
        .and_then(Value::as_u64)
        .unwrap()
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn healthy_reads_start_at_every_replica() {
    let replicas = Replicas::new().await;
    replicas.put("spread.txt", b"spread", &[0, 1, 2]).await;
    let reader = replicas.reader(ReadConfig::default()).await;
    for _ in 0..300 {
        assert_eq!(body(&reader, "spread.txt").await, b"spread");
    }
    let gets = replicas.gets();
    // Healthy: one request per read, so every request is a first attempt.
    assert_eq!(gets.iter().sum::<usize>(), 300, "{gets:?}");
    for (region, n) in REGIONS.iter().zip(&gets) {
        let share = *n as f64 / 300.0;
        println!(
            "{region}: {n} of 300 first attempts ({:.1}%)",
            share * 100.0
        );
        assert!((0.25..=0.42).contains(&share), "{region}: {gets:?}");
    }
    assert_eq!(region_gauges(&emitted(&reader)).values().sum::<u64>(), 0);
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn the_first_reads_of_fresh_readers_start_at_every_replica() {
    const READERS: usize = 120;
    let replicas = Replicas::new().await;
    replicas.put("first.txt", b"first", &[0, 1, 2]).await;
    replicas.gets();
    let mut firsts = [0usize; 3];
    for _ in 0..READERS {
        // One read per reader, as a program making one read per process does.
        let reader = replicas.reader(ReadConfig::default()).await;
        let served = reader.get("first.txt", None).await.unwrap();
        firsts[served.index] += 1;
        assert_eq!(
            &served.output.body.collect().await.unwrap().into_bytes()[..],
            b"first"
        );
    }
    assert_eq!(
        replicas.gets().iter().sum::<usize>(),
        READERS,
        "one GET each"
    );
    println!("first replica of {READERS} fresh readers: {firsts:?}");
    // About 40 each (standard deviation 5); a fixed start would give [120, 0, 0].
    assert!(firsts.iter().all(|&n| n >= 15), "{firsts:?}");

    // A pinned start: every fresh reader takes the same turns.
    for _ in 0..5 {
        let reader = replicas
            .reader(ReadConfig {
                start: RotationStart::At(2),
                ..ReadConfig::default()
            })
            .await;
        let mut served = Vec::new();
        for _ in 0..3 {
            served.push(reader.get("first.txt", None).await.unwrap().index);
        }
        assert_eq!(served, [2, 0, 1]);
    }
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_listed_order_reads_the_first_replica_and_fails_over_in_list_order() {
    let replicas = Replicas::new().await;
    replicas.put("listed.txt", b"listed", &[0, 1, 2]).await;
    let listed = ReadConfig {
        order: ReplicaOrder::Listed,
        ..ReadConfig::default()
    };
    let reader = replicas.reader(listed.clone()).await;
    replicas.gets();
    for _ in 0..20 {
        assert_eq!(body(&reader, "listed.txt").await, b"listed");
    }
    assert_eq!(replicas.gets(), [20, 0, 0]);
    replicas.down(0);
    let reader = replicas.reader(listed).await;
    for _ in 0..8 {
        let served = reader.get("listed.txt", None).await.unwrap();
        assert_eq!(served.index, 1);
    }
    // Replica 0 is asked until its breaker opens (5 failures), replica 2 never.
    assert_eq!(replicas.gets(), [5, 8, 0]);
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn one_region_down_every_read_succeeds_and_its_gauge_is_set() {
    let replicas = Replicas::new().await;
    replicas
        .put("one-down.txt", b"still here", &[0, 1, 2])
        .await;
    let reader = replicas.reader(ReadConfig::default()).await;
    replicas.down(1);
    for _ in 0..60 {
        let served = reader.get("one-down.txt", None).await.unwrap();
        assert_ne!(served.region, REGIONS[1]);
        let bytes = served.output.body.collect().await.unwrap().into_bytes();
        assert_eq!(&bytes[..], b"still here");
    }
    let gets = replicas.gets();
    println!("requests per region with {} down: {gets:?}", REGIONS[1]);
    assert!(gets[1] >= 1, "the down region was tried: {gets:?}");
    let gauges = reader.gauges();
    assert_eq!(gauges.all_failed, 0);
    let docs = emitted(&reader);
    let expected: HashMap<String, u64> = REGIONS
        .iter()
        .enumerate()
        .map(|(i, r)| (r.to_string(), u64::from(i == 1)))
        .collect();
    assert_eq!(region_gauges(&docs), expected);
    assert_eq!(all_failed(&docs), 0);
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn all_down_tries_each_replica_once_plus_retries_and_names_them() {
    let replicas = Replicas::new().await;
    replicas.put("all-down.txt", b"gone", &[0, 1, 2]).await;
    for (retries, expected_per_replica) in [(0, 1), (1, 2)] {
        let reader = replicas
            .reader(ReadConfig {
                retries_per_replica: retries,
                ..ReadConfig::default()
            })
            .await;
        for i in 0..3 {
            replicas.down(i);
        }
        replicas.gets();
        let err = reader.get("all-down.txt", None).await.unwrap_err();
        println!("{err}");
        assert_eq!(err.kind, ReadErrorKind::AllFailed);
        assert_eq!(
            replicas.gets(),
            [expected_per_replica; 3],
            "retries {retries}"
        );
        let text = err.to_string();
        for bucket in &replicas.buckets {
            assert!(text.contains(bucket), "{text}");
        }
        assert!(text.contains("503 ServiceUnavailable"), "{text}");
        assert_eq!(reader.gauges().all_failed, 1);
        let docs = emitted(&reader);
        assert_eq!(all_failed(&docs), 1);
        assert!(region_gauges(&docs).values().all(|v| *v == 1));
        // The counter covers one period: the next emission starts from zero.
        assert_eq!(all_failed(&emitted(&reader)), 0);
    }
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_lagging_replica_404_fails_over_unless_told_not_to() {
    let replicas = Replicas::new().await;
    replicas.put("lagging.txt", b"new", &[2]).await;
    let reader = replicas.reader(ReadConfig::default()).await;
    for _ in 0..6 {
        assert_eq!(body(&reader, "lagging.txt").await, b"new");
    }
    let strict = replicas
        .reader(ReadConfig {
            missing: MissingPolicy::Fail,
            start: RotationStart::At(0),
            ..ReadConfig::default()
        })
        .await;
    // The first read starts at replica 0, which does not have the key yet.
    let err = strict.get("lagging.txt", None).await.unwrap_err();
    assert_eq!((err.kind, err.attempts.len()), (ReadErrorKind::NotFound, 1));
    let err = reader.get("nobody-has-this", None).await.unwrap_err();
    assert_eq!((err.kind, err.attempts.len()), (ReadErrorKind::NotFound, 3));
    assert_eq!(
        reader.gauges().all_failed,
        0,
        "a missing key is not an outage"
    );
    assert!(!reader.gauges().regions.values().any(|f| *f));
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn head_and_ranges() {
    let replicas = Replicas::new().await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    replicas
        .put("dir/ranged object.bin", &data, &[0, 1, 2])
        .await;
    let reader = replicas.reader(ReadConfig::default()).await;
    replicas.down(0);
    for _ in 0..3 {
        let head = reader.head("dir/ranged object.bin").await.unwrap();
        assert_eq!(head.output.content_length(), Some(100_000));
    }
    let ranged = reader
        .get(
            "dir/ranged object.bin",
            Some(ByteRange::Inclusive {
                first: 10,
                last: 19,
            }),
        )
        .await
        .unwrap();
    let bytes = ranged.output.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], &data[10..20]);
    let tail = reader
        .get("dir/ranged object.bin", Some(ByteRange::Suffix(5)))
        .await
        .unwrap();
    assert_eq!(
        &tail.output.body.collect().await.unwrap().into_bytes()[..],
        &data[99_995..]
    );
    let err = reader.head("missing").await.unwrap_err();
    assert_eq!(err.kind, ReadErrorKind::NotFound);
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_403_comes_back_at_once_while_5xx_and_a_down_region_fail_over() {
    let replicas = Replicas::new().await;
    replicas.put("guarded.txt", b"guarded", &[0, 1, 2]).await;

    replicas.answer(0, 403, "AccessDenied");
    // A fresh round-robin reader starts at replica 0.
    let reader = replicas.reader(round_robin()).await;
    replicas.gets();
    let err = reader.get("guarded.txt", None).await.unwrap_err();
    println!("{err}");
    assert_eq!(err.kind, ReadErrorKind::Rejected);
    assert_eq!(err.attempts.len(), 1, "{err}");
    assert!(
        matches!(&err.attempts[0].answer, Answer::Rejected { status: 403, code: Some(code), .. } if code == "AccessDenied"),
        "{err}"
    );
    assert!(err.to_string().contains("403 AccessDenied"), "{err}");
    assert_eq!(replicas.gets(), [1, 0, 0], "no other replica was asked");
    let gauges = reader.gauges();
    assert!(
        !gauges.regions.values().any(|f| *f) && gauges.all_failed == 0,
        "a refusal is not a failing region: {gauges:?}"
    );
    let reader = replicas.reader(round_robin()).await;
    let err = reader.head("guarded.txt").await.unwrap_err();
    assert_eq!((err.kind, err.attempts.len()), (ReadErrorKind::Rejected, 1));
    assert!(matches!(
        err.attempts[0].answer,
        Answer::Rejected { status: 403, .. }
    ));

    for (case, fault) in [
        ("503 SlowDown", Some((503, "SlowDown"))),
        ("500 InternalError", Some((500, "InternalError"))),
        ("region down", None),
    ] {
        match fault {
            Some((status, code)) => replicas.answer(0, status, code),
            None => replicas.down(0),
        }
        let reader = replicas.reader(round_robin()).await;
        replicas.gets();
        let served = reader
            .get("guarded.txt", None)
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(served.region, REGIONS[1], "{case}");
        let bytes = served.output.body.collect().await.unwrap().into_bytes();
        assert_eq!(&bytes[..], b"guarded", "{case}");
        assert_eq!(replicas.gets(), [1, 1, 0], "{case}");
        assert!(
            reader.gauges().regions[REGIONS[0]],
            "{case}: region 0 is failing"
        );
    }
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_body_cut_mid_stream_resumes_from_the_next_byte_pinned_to_its_etag() {
    let replicas = Replicas::new().await;
    let data = pattern(1 << 20);
    replicas.put("big.bin", &data, &[0, 1, 2]).await;
    replicas.cut_bodies(0, 100_000);
    let reader = replicas.reader(round_robin()).await;
    replicas.gets();

    let served = reader.get("big.bin", None).await.unwrap();
    assert_eq!(served.region, REGIONS[0]);
    let etag = served.output.e_tag().unwrap().to_string();
    let bytes = served.output.body.collect().await.unwrap().into_bytes();
    assert_eq!(bytes.len(), data.len());
    assert!(bytes[..] == data[..], "the bytes differ from the object");
    let seen = replicas.seen_gets();
    assert_eq!(seen.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 0]);
    assert_eq!(seen[1][0].range.as_deref(), Some("bytes=100000-1048575"));
    assert_eq!(seen[1][0].if_match.as_deref(), Some(etag.as_str()));
    assert!(
        reader.gauges().regions[REGIONS[0]],
        "the break counts against region 0"
    );

    // A range: the rest is asked for from the next byte to the range's last.
    let reader = replicas.reader(round_robin()).await;
    let range = ByteRange::Inclusive {
        first: 1_000,
        last: 500_000,
    };
    let served = reader.get("big.bin", Some(range)).await.unwrap();
    let bytes = served.output.body.collect().await.unwrap().into_bytes();
    assert!(
        bytes[..] == data[1_000..=500_000],
        "the ranged bytes differ"
    );
    let seen = replicas.seen_gets();
    assert_eq!(seen[0][0].range.as_deref(), Some("bytes=1000-500000"));
    assert_eq!(seen[1][0].range.as_deref(), Some("bytes=101000-500000"));
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_cut_body_whose_version_is_gone_everywhere_ends_with_an_error_naming_it() {
    let replicas = Replicas::new().await;
    let data = pattern(1 << 20);
    replicas.put("moving.bin", &data, &[0, 1, 2]).await;
    replicas.cut_bodies(0, 100_000);
    let reader = replicas.reader(round_robin()).await;
    let served = reader.get("moving.bin", None).await.unwrap();
    let etag = served.output.e_tag().unwrap().to_string();
    let mut body = served.output.body;
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    // Every replica moves on to a new version while the old one is being read.
    replicas.put("moving.bin", b"version two", &[0, 1, 2]).await;
    replicas.gets();
    let mut delivered = first.len();
    let err = loop {
        match body.next().await {
            Some(Ok(chunk)) => delivered += chunk.len(),
            Some(Err(err)) => break err,
            None => panic!("the body ended without an error after {delivered} bytes"),
        }
    };
    assert_eq!(
        delivered, 100_000,
        "only the old version's bytes were delivered"
    );
    let resume = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<ResumeError>())
        .unwrap_or_else(|| panic!("not a resume error: {err:?}"));
    println!("{resume}");
    assert_eq!(resume.read.kind, ReadErrorKind::VersionGone);
    assert_eq!(
        (resume.delivered, resume.etag.as_str()),
        (100_000, etag.as_str())
    );
    assert_eq!(resume.read.attempts.len(), 3, "{resume}");
    assert!(
        resume
            .read
            .attempts
            .iter()
            .all(|a| matches!(a.answer, Answer::OtherVersion { .. })),
        "{resume}"
    );
    let text = resume.to_string();
    assert!(
        text.contains(&etag) && text.contains("no replica still has the version"),
        "{text}"
    );
    // The other replicas first, the one that broke last; each pinned to the old ETag.
    let seen = replicas.seen_gets();
    for gets in &seen {
        assert_eq!(gets.len(), 1, "{seen:?}");
        assert_eq!(gets[0].if_match.as_deref(), Some(etag.as_str()));
    }
    assert!(body.next().await.is_none(), "nothing after the error");
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn resuming_is_paid_from_the_retry_budget() {
    let replicas = Replicas::new().await;
    let data = pattern(1 << 20);
    replicas.put("budget.bin", &data, &[0, 1, 2]).await;
    for i in 0..3 {
        replicas.cut_bodies(i, 100_000);
    }
    let reader = replicas
        .reader(ReadConfig {
            budget: s3fanout_read::BudgetConfig {
                capacity: 3.0,
                per_request: 0.0,
                per_second: 0.0,
            },
            ..round_robin()
        })
        .await;
    replicas.gets();
    let served = reader.get("budget.bin", None).await.unwrap();
    let err = served.output.body.collect().await.unwrap_err();
    let resume = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<ResumeError>())
        .unwrap_or_else(|| panic!("not a resume error: {err:?}"));
    println!("{resume}");
    // Every replica cuts after 100,000 bytes: the first GET and 3 paid resumes deliver
    // 400,000 bytes, then no token is left.
    assert_eq!(resume.delivered, 400_000, "{resume}");
    assert_eq!(replicas.gets().iter().sum::<usize>(), 4);
    assert!(resume
        .read
        .attempts
        .iter()
        .all(|a| a.answer == Answer::BudgetExhausted));
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn an_archived_copy_fails_over_and_the_error_names_the_archived_ones() {
    let replicas = Replicas::new().await;
    replicas
        .put_archived("cold.txt", b"cold", 0, StorageClass::Glacier)
        .await;
    replicas.put("cold.txt", b"cold", &[1, 2]).await;
    let reader = replicas.reader(round_robin()).await;
    replicas.gets();
    let served = reader.get("cold.txt", None).await.unwrap();
    assert_eq!(served.region, REGIONS[1]);
    assert_eq!(
        &served.output.body.collect().await.unwrap().into_bytes()[..],
        b"cold"
    );
    assert_eq!(
        replicas.gets(),
        [1, 1, 0],
        "the archived copy was asked first"
    );
    let gauges = reader.gauges();
    assert!(
        !gauges.regions.values().any(|f| *f),
        "an archived object is not a failing region: {gauges:?}"
    );
    // HEAD is answered for an archived object: it tells its storage class.
    let head = replicas
        .reader(round_robin())
        .await
        .head("cold.txt")
        .await
        .unwrap();
    assert_eq!(head.output.storage_class(), Some(&StorageClass::Glacier));
    assert_eq!(head.index, 0);

    // Replica 1 archived in an Intelligent-Tiering archive tier (its answer injected), replica
    // 2 in Deep Archive: no replica can serve it.
    replicas
        .put_archived("cold.txt", b"cold", 2, StorageClass::DeepArchive)
        .await;
    replicas.answer(1, 403, "ObjectNotInActiveTierError");
    let reader = replicas.reader(round_robin()).await;
    let err = reader.get("cold.txt", None).await.unwrap_err();
    println!("{err}");
    assert_eq!(err.kind, ReadErrorKind::Archived);
    let [zero, one, two] = &err.attempts[..] else {
        panic!("three attempts: {err}")
    };
    assert_eq!(
        zero.answer,
        Answer::Archived {
            code: "InvalidObjectState".into(),
            storage_class: Some("GLACIER".into())
        }
    );
    assert_eq!(
        one.answer,
        Answer::Archived {
            code: "ObjectNotInActiveTierError".into(),
            storage_class: None
        }
    );
    assert_eq!(
        two.answer,
        Answer::Archived {
            code: "InvalidObjectState".into(),
            storage_class: Some("DEEP_ARCHIVE".into())
        }
    );
    let text = err.to_string();
    assert!(
        text.starts_with("every replica holding the object has it archived"),
        "{text}"
    );
    for (bucket, class) in replicas.buckets.iter().zip([
        "403 InvalidObjectState (archived in GLACIER: restore it to read)",
        "403 ObjectNotInActiveTierError (archived: restore it to read)",
        "403 InvalidObjectState (archived in DEEP_ARCHIVE: restore it to read)",
    ]) {
        assert!(text.contains(&format!("{bucket}@")), "{text}");
        assert!(text.contains(class), "{text}");
    }
    assert_eq!(reader.gauges().all_failed, 0, "not an outage");

    // With replica 1 down instead, the read failed, and the error still says which replicas
    // hold the object archived.
    replicas.down(1);
    let reader = replicas.reader(round_robin()).await;
    let err = reader.get("cold.txt", None).await.unwrap_err();
    println!("{err}");
    assert_eq!(err.kind, ReadErrorKind::AllFailed);
    let archived: Vec<&str> = err
        .attempts
        .iter()
        .filter(|a| matches!(a.answer, Answer::Archived { .. }))
        .map(|a| a.replica.as_str())
        .collect();
    assert_eq!(
        archived,
        [
            format!("{}@{}", replicas.buckets[0], REGIONS[0]),
            format!("{}@{}", replicas.buckets[2], REGIONS[2])
        ]
    );
    assert!(
        err.to_string().contains("archived in DEEP_ARCHIVE"),
        "{err}"
    );
    assert_eq!(reader.gauges().all_failed, 1);
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_cut_body_resumes_past_a_replica_that_holds_it_archived() {
    let replicas = Replicas::new().await;
    let data = pattern(1 << 20);
    replicas.put("half-cold.bin", &data, &[0, 2]).await;
    replicas
        .put_archived("half-cold.bin", &data, 1, StorageClass::Glacier)
        .await;
    replicas.cut_bodies(0, 100_000);
    let reader = replicas.reader(round_robin()).await;
    replicas.gets();
    let served = reader.get("half-cold.bin", None).await.unwrap();
    assert_eq!(served.index, 0);
    let bytes = served.output.body.collect().await.unwrap().into_bytes();
    assert!(bytes[..] == data[..], "the bytes differ from the object");
    let seen = replicas.seen_gets();
    assert_eq!(seen.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    for resumed in [&seen[1][0], &seen[2][0]] {
        assert_eq!(resumed.range.as_deref(), Some("bytes=100000-1048575"));
    }
}
