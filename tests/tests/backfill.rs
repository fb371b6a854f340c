//! Backfill, verify and Batch Operations against the local S3 server.

use std::time::Duration;

use tokio::time::Instant;

use fault_proxy::{FaultProxy, Rule};
use integration::*;
use s3fanout::backfill::{self, BackfillRequest, Mode, Summary};
use s3fanout::{Deadline, Replicator, Target};
use serde_json::json;

const MIB: usize = 1024 * 1024;

fn keys(n: usize) -> Vec<String> {
    let mut keys: Vec<String> = (0..n).map(|i| format!("data/{i:03}.bin")).collect();
    keys.extend(
        [
            "with space.txt",
            "a+b=c&d?.txt",
            "100%.txt",
            "café/日本語.txt",
            "folder/",
        ]
        .map(String::from),
    );
    keys
}

async fn fill(setup: &Setup, keys: &[String]) {
    let src = setup.source_client();
    for key in keys {
        put_rich(&src, &setup.source, key, key.as_bytes()).await;
    }
}

/// Uploads an 11 MiB object in uniform 5 MiB parts, as SDKs and the CLI do.
async fn put_multipart(setup: &Setup, key: &str) -> String {
    put_in_parts(
        &setup.source_client(),
        &setup.source,
        key,
        &[5 * MIB, 5 * MIB, MIB],
    )
    .await
}

async fn run(replicator: &Replicator, request: BackfillRequest) -> Summary {
    backfill::run(replicator, &request, &Deadline::none(), &|_| {})
        .await
        .unwrap()
}

async fn listing(setup: &Setup, target: &Target) -> Vec<(String, String)> {
    let out = setup
        .target_client(target)
        .list_objects_v2()
        .bucket(&target.bucket)
        .send()
        .await
        .unwrap();
    out.contents()
        .iter()
        .map(|o| (o.key().unwrap().to_string(), o.e_tag().unwrap().to_string()))
        .collect()
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn sync_copies_what_is_missing_or_different_and_deletes_only_when_asked() {
    let mut setup = Setup::new(2).await;
    setup.targets[1].prefix = "mirror/".into();
    let keys = keys(20);
    fill(&setup, &keys).await;
    put_multipart(&setup, "big/multipart.bin").await;
    let (t0, t1) = (setup.targets[0].clone(), setup.targets[1].clone());
    // A stale replica of one key and an object the source does not have.
    put(
        &setup.target_client(&t0),
        &t0.bucket,
        &keys[0],
        b"stale content",
    )
    .await;
    put(&setup.target_client(&t0), &t0.bucket, "old/gone.txt", b"x").await;

    let replicator = setup.replicator(setup.config()).await;
    let summary = run(&replicator, BackfillRequest::default()).await;
    assert!(summary.done);
    assert_eq!(summary.source_objects, 26);
    for t in [&t0, &t1] {
        let counts = &summary.targets[&t.bucket];
        assert_eq!(
            (counts.listed, counts.copied, counts.failed, counts.deleted),
            (26, 26, 0, 0),
            "{}",
            t.bucket
        );
    }
    for key in keys.iter().chain([&"big/multipart.bin".to_string()]) {
        assert_replica(&setup, key, &t0).await;
        assert_replica(&setup, key, &t1).await;
    }
    assert!(
        listing(&setup, &t0)
            .await
            .iter()
            .any(|(k, _)| k == "old/gone.txt"),
        "kept without delete"
    );

    let summary = run(
        &replicator,
        BackfillRequest {
            delete: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(summary.targets[&t0.bucket].deleted, 1);
    assert_eq!(summary.targets[&t0.bucket].up_to_date, 26);
    assert!(!listing(&setup, &t0)
        .await
        .iter()
        .any(|(k, _)| k == "old/gone.txt"));
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_second_run_over_synced_buckets_issues_only_list_requests() {
    let setup = Setup::new(3).await;
    let keys = keys(30);
    fill(&setup, &keys).await;
    put_multipart(&setup, "big/multipart.bin").await;
    // Above the threshold a multipart source keeps its ETag, which a listing compares (at or
    // below it, its replica is one CopyObject and a sync reads its provenance).
    let mut config = setup.config();
    config.multipart_threshold = 8 * MIB as u64;
    let replicator = setup.replicator(config.clone()).await;
    let first = run(&replicator, BackfillRequest::default()).await;
    assert_eq!(
        first.targets.values().map(|c| c.copied).sum::<u64>(),
        3 * 36
    );

    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    let observed = Replicator::new(config, clients_via(&proxy.endpoint(), 3).await);
    let second = run(&observed, BackfillRequest::default()).await;
    let seen = proxy.take_seen();
    for counts in second.targets.values() {
        assert_eq!((counts.up_to_date, counts.copied), (36, 0));
    }
    assert_eq!(seen.len() as u64, second.list_requests);
    assert!(
        seen.iter()
            .all(|s| s.method == "GET" && s.query.contains("list-type=2")),
        "only ListObjectsV2: {:?}",
        seen.iter()
            .filter(|s| !s.query.contains("list-type=2"))
            .collect::<Vec<_>>()
    );
    assert_eq!(seen.len(), 4, "one page for the source and each target");
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn dry_run_changes_nothing_and_reports_what_it_would_do() {
    let setup = Setup::new(2).await;
    let keys = keys(10);
    fill(&setup, &keys).await;
    let t0 = setup.targets[0].clone();
    put(&setup.target_client(&t0), &t0.bucket, "extra", b"x").await;
    let before: Vec<_> =
        futures::future::join_all(setup.targets.iter().map(|t| listing(&setup, t))).await;

    let replicator = setup.replicator(setup.config()).await;
    let summary = run(
        &replicator,
        BackfillRequest {
            dry_run: true,
            delete: true,
            ..Default::default()
        },
    )
    .await;
    assert!(summary.dry_run);
    assert_eq!(summary.targets[&t0.bucket].copied, 15);
    assert_eq!(summary.targets[&t0.bucket].deleted, 1);
    let after: Vec<_> =
        futures::future::join_all(setup.targets.iter().map(|t| listing(&setup, t))).await;
    assert_eq!(before, after);
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn include_and_exclude_follow_aws_s3_sync_rules() {
    let setup = Setup::new(1).await;
    let src = setup.source_client();
    for key in [
        "pics/a.jpg",
        "pics/b.png",
        "pics/tmp/c.jpg",
        "docs/d.jpg",
        "e.txt",
    ] {
        put(&src, &setup.source, key, b"x").await;
    }
    let replicator = setup.replicator(setup.config()).await;
    let request = BackfillRequest {
        prefix: "pics/".into(),
        exclude: vec!["*".into()],
        include: vec!["*.jpg".into()],
        filters: vec![backfill::filter::Filter::Exclude("tmp/*".into())],
        ..Default::default()
    };
    let summary = run(&replicator, request).await;
    assert_eq!(summary.source_objects, 1);
    let t = &setup.targets[0];
    let keys: Vec<String> = listing(&setup, t)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["pics/a.jpg"]);
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_deadline_forces_continuations_that_converge_without_double_counting() {
    let setup = Setup::new(2).await;
    let keys = keys(40);
    fill(&setup, &keys).await;
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    proxy.set_default_rule(Rule {
        latency: Duration::from_millis(40),
        ..Rule::default()
    });
    let mut config = setup.config();
    config.concurrency = 4;
    let replicator = Replicator::new(config, clients_via(&proxy.endpoint(), 3).await);

    let mut request = BackfillRequest {
        auto_continue: true,
        ..Default::default()
    };
    let summary = loop {
        let started = Instant::now();
        let deadline = Deadline::at(
            started + Duration::from_millis(900),
            Duration::from_millis(400),
        );
        let summary = backfill::run(&replicator, &request, &deadline, &|_| {})
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "stopped before the deadline"
        );
        match &summary.continuation {
            None => break summary,
            Some(continuation) => {
                assert!(summary.invocations < 60, "no convergence");
                request.continuation = Some((**continuation).clone());
            }
        }
    };
    assert!(summary.done);
    assert!(
        summary.invocations > 2,
        "the deadline should have split the run: {}",
        summary.invocations
    );
    for counts in summary.targets.values() {
        // Each object counted once. A copy stopped in flight at the deadline may still have
        // completed on the server, or landed before its check after landing could run; the
        // next invocation then finds it up to date.
        assert_eq!((counts.listed, counts.failed), (45, 0), "{counts:?}");
        assert_eq!(counts.copied + counts.up_to_date, 45, "{counts:?}");
        assert!(counts.copied >= 30, "{counts:?}");
    }
    for key in &keys {
        for t in &setup.targets {
            assert_replica(&setup, key, t).await;
        }
    }
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn verify_reports_each_kind_of_drift_and_changes_nothing() {
    let setup = Setup::new(2).await;
    let keys = keys(10);
    fill(&setup, &keys).await;
    let replicator = setup.replicator(setup.config()).await;
    run(&replicator, BackfillRequest::default()).await;
    let clean = run(
        &replicator,
        BackfillRequest {
            mode: Mode::Verify,
            ..Default::default()
        },
    )
    .await;
    assert!(!clean.has_problems(), "{clean:?}");

    let t = setup.targets[1].clone();
    let client = setup.target_client(&t);
    client
        .delete_object()
        .bucket(&t.bucket)
        .key(&keys[0])
        .send()
        .await
        .unwrap();
    put(
        &client,
        &t.bucket,
        &keys[1],
        b"other bytes of a different size",
    )
    .await;
    let same_size = "X".repeat(keys[2].len());
    put(&client, &t.bucket, &keys[2], same_size.as_bytes()).await;
    put(&client, &t.bucket, "extraneous.txt", b"x").await;
    let before = listing(&setup, &t).await;

    let drift = run(
        &replicator,
        BackfillRequest {
            mode: Mode::Verify,
            ..Default::default()
        },
    )
    .await;
    let counts = &drift.targets[&t.bucket];
    assert_eq!(
        (counts.missing, counts.different, counts.extraneous),
        (1, 2, 1),
        "{counts:?}"
    );
    assert_eq!(drift.targets[&setup.targets[0].bucket].up_to_date, 15);
    assert!(drift.has_problems());
    let noted: Vec<(&str, &str)> = drift
        .examples
        .iter()
        .map(|e| (e.key.as_str(), e.what.as_str()))
        .collect();
    assert!(noted.contains(&(keys[0].as_str(), "missing")), "{noted:?}");
    assert!(
        noted.contains(&("extraneous.txt", "extraneous")),
        "{noted:?}"
    );
    assert_eq!(listing(&setup, &t).await, before, "verify wrote nothing");
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn overlapping_backfills_and_live_replication_do_not_corrupt_anything() {
    let setup = Setup::new(2).await;
    let keys = keys(40);
    fill(&setup, &keys).await;
    let replicator = setup.replicator(setup.config()).await;
    let live = async {
        for key in keys.iter().take(10) {
            let etag = put_rich(
                &setup.source_client(),
                &setup.source,
                key,
                b"rewritten while backfilling",
            )
            .await;
            let report = replicator
                .apply(&[created(&setup.source, key, Some(&etag))])
                .await;
            assert!(!report[0].failed());
        }
    };
    let (a, b, ()) = tokio::join!(
        run(&replicator, BackfillRequest::default()),
        run(&replicator, BackfillRequest::default()),
        live
    );
    for summary in [&a, &b] {
        assert!(
            summary.targets.values().all(|c| c.failed == 0),
            "{summary:?}"
        );
    }
    // One more pass settles whatever the overlap left for later, then everything is equal.
    run(&replicator, BackfillRequest::default()).await;
    for key in &keys {
        for t in &setup.targets {
            assert_replica(&setup, key, t).await;
        }
    }
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn bad_requests_are_refused_with_a_clear_message() {
    let setup = Setup::new(1).await;
    let replicator = setup.replicator(setup.config()).await;
    let none = Deadline::none();
    let err = backfill::run(
        &replicator,
        &BackfillRequest {
            source_bucket: Some("nope-bucket".into()),
            ..Default::default()
        },
        &none,
        &|_| {},
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("\"nope-bucket\" is not a configured source"),
        "{err}"
    );
    let err = backfill::run(
        &replicator,
        &BackfillRequest {
            targets: Some(vec!["other".into()]),
            ..Default::default()
        },
        &none,
        &|_| {},
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("\"other\" is not a configured target"),
        "{err}"
    );
    let err = s3fanout::lambda::backfill::handle_invocation(
        &replicator,
        &json!({"prefx": "typo"}),
        &none,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `prefx`"), "{err}");
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn batch_operations_tasks_of_both_schemas_are_answered_per_task() {
    let setup = Setup::new(2).await;
    let src = setup.source_client();
    for key in ["a b+c.txt", "café/ü.txt"] {
        put_rich(&src, &setup.source, key, key.as_bytes()).await;
    }
    let replicator = setup.replicator(setup.config()).await;
    let encode = |k: &str| form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>();
    let v1 = json!({
        "invocationSchemaVersion": "1.0",
        "invocationId": "inv-1",
        "job": { "id": "job-1" },
        "tasks": [
            { "taskId": "t1", "s3Key": encode("a b+c.txt"), "s3VersionId": null, "s3BucketArn": format!("arn:aws:s3:::{}", setup.source) },
            { "taskId": "t2", "s3Key": encode("does not exist"), "s3VersionId": null, "s3BucketArn": format!("arn:aws:s3:::{}", setup.source) }
        ]
    });
    let (response, next) =
        s3fanout::lambda::backfill::handle_invocation(&replicator, &v1, &Deadline::none())
            .await
            .unwrap();
    assert!(next.is_empty());
    assert_eq!(response["invocationSchemaVersion"], "1.0");
    assert_eq!(response["invocationId"], "inv-1");
    assert_eq!(response["treatMissingKeysAs"], "PermanentFailure");
    assert_eq!(response["results"][0]["taskId"], "t1");
    assert_eq!(
        response["results"][0]["resultCode"], "Succeeded",
        "{response}"
    );
    assert_eq!(response["results"][1]["resultCode"], "PermanentFailure");
    assert!(response["results"][1]["resultString"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
    for t in &setup.targets {
        assert_replica(&setup, "a b+c.txt", t).await;
    }

    let only = &setup.targets[1].bucket;
    let v2 = json!({
        "invocationSchemaVersion": "2.0",
        "invocationId": "inv-2",
        "job": { "id": "job-2", "userArguments": { "targets": only } },
        "tasks": [ { "taskId": "t3", "s3Bucket": setup.source, "s3Key": encode("café/ü.txt"), "s3VersionId": null } ]
    });
    let (response, _) =
        s3fanout::lambda::backfill::handle_invocation(&replicator, &v2, &Deadline::none())
            .await
            .unwrap();
    assert_eq!(response["invocationSchemaVersion"], "2.0");
    assert_eq!(
        response["results"][0]["resultCode"], "Succeeded",
        "{response}"
    );
    assert_replica(&setup, "café/ü.txt", &setup.targets[1]).await;
    let t0 = &setup.targets[0];
    assert!(
        snapshot(&setup.target_client(t0), &t0.bucket, "café/ü.txt")
            .await
            .is_none(),
        "only the named target"
    );

    // A down target is a temporary failure, which Batch Operations retries.
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    proxy.set_rule(
        &t0.bucket,
        Rule {
            down: true,
            ..Rule::default()
        },
    );
    let flaky = Replicator::new(setup.config(), clients_via(&proxy.endpoint(), 2).await);
    let (response, _) = s3fanout::lambda::backfill::handle_invocation(
        &flaky,
        &v2.clone().tap_targets(&t0.bucket),
        &Deadline::none(),
    )
    .await
    .unwrap();
    assert_eq!(
        response["results"][0]["resultCode"], "TemporaryFailure",
        "{response}"
    );
}

trait TapTargets {
    fn tap_targets(self, bucket: &str) -> Self;
}

impl TapTargets for serde_json::Value {
    fn tap_targets(mut self, bucket: &str) -> Self {
        self["job"]["userArguments"]["targets"] = bucket.into();
        self
    }
}

/// Two different 128-byte messages with the same MD5 (Wang and Yu's collision, as published by
/// Peter Selinger's "MD5 Collision Demo"): where the ETag is the MD5, they list alike.
const COLLIDING: [&str; 2] = [
    "d131dd02c5e6eec4693d9a0698aff95c2fcab58712467eab4004583eb8fb7f8955ad340609f4b30283e488832571415a085125e8f7cdc99fd91dbdf280373c5bd8823e3156348f5bae6dacd436c919c6dd53e2b487da03fd02396306d248cda0e99f33420f577ee8ce54b67080a80d1ec69821bcb6a8839396f9652b6ff72a70",
    "d131dd02c5e6eec4693d9a0698aff95c2fcab50712467eab4004583eb8fb7f8955ad340609f4b30283e4888325f1415a085125e8f7cdc99fd91dbd7280373c5bd8823e3156348f5bae6dacd436c919c6dd53e23487da03fd02396306d248cda0e99f33420f577ee8ce54b67080280d1ec69821bcb6a8839396f965ab6ff72a70",
];

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Verify compares full-object checksums where ETags cannot tell (a target under SSE-KMS): a
/// replica written behind the engine's back with the source's size, ETag and provenance but
/// other bytes is found `different` and copied again by a sync; an object written without any
/// checksum cannot be proven and is counted `unverifiable`. At the target without KMS the listing
/// alone decides, with no HEAD.
#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn verify_compares_checksums_where_etags_cannot_tell() {
    let mut setup = Setup::new(2).await;
    setup.targets[0].kms_key_id = Some("arn:aws:kms:us-west-2:123456789012:key/verify".into());
    let (kms, plain) = (setup.targets[0].clone(), setup.targets[1].clone());
    let src = setup.source_client();
    let (a, b) = (unhex(COLLIDING[0]), unhex(COLLIDING[1]));
    assert_ne!(a, b);
    let etag = put(&src, &setup.source, "collide.bin", &a).await;
    put(&src, &setup.source, "fine.txt", b"fine").await;
    // Written without a checksum, as objects were before S3 stored one with every object.
    let unchecked = aws_sdk_s3::Client::from_conf(
        src.config()
            .to_builder()
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .build(),
    );
    put(&unchecked, &setup.source, "old.txt", b"old").await;
    // S3 (since December 2024) and LocalStack store a CRC64NVME with every new object even when
    // the request carries none; moto does not, which stands in for an object from before.
    let old = src
        .head_object()
        .bucket(&setup.source)
        .key("old.txt")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    let unchecked_old =
        u64::from(old.checksum_crc64_nvme().is_none() && old.checksum_crc32().is_none());
    let replicator = setup.replicator(setup.config()).await;
    let synced = run(&replicator, BackfillRequest::default()).await;
    assert_eq!(synced.targets[&kms.bucket].copied, 3, "{synced:?}");

    // Behind the engine's back: the other message, with the replica's own metadata (its
    // provenance too) and encryption.
    let kms_client = setup.target_client(&kms);
    let replica = kms_client
        .head_object()
        .bucket(&kms.bucket)
        .key("collide.bin")
        .send()
        .await
        .unwrap();
    kms_client
        .put_object()
        .bucket(&kms.bucket)
        .key("collide.bin")
        .set_metadata(replica.metadata().cloned())
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
        .ssekms_key_id(kms.kms_key_id.clone().unwrap())
        .body(aws_sdk_s3::primitives::ByteStream::from(b.clone()))
        .send()
        .await
        .unwrap();
    let forged = kms_client
        .head_object()
        .bucket(&kms.bucket)
        .key("collide.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.e_tag().unwrap().trim_matches('"'), etag, "same ETag");
    assert_eq!(forged.content_length(), Some(128), "same size");
    assert_eq!(
        forged.metadata().unwrap().get("fanout-source-etag"),
        Some(&etag),
        "same provenance"
    );

    let verify = BackfillRequest {
        mode: Mode::Verify,
        ..Default::default()
    };
    let found = run(&replicator, verify.clone()).await;
    let (at_kms, at_plain) = (&found.targets[&kms.bucket], &found.targets[&plain.bucket]);
    println!(
        "wire verify at the KMS target: different {}, unverifiable {}, up to date {}; at the plain target: different {}, unverifiable {}, up to date {}",
        at_kms.different,
        at_kms.unverifiable,
        at_kms.up_to_date,
        at_plain.different,
        at_plain.unverifiable,
        at_plain.up_to_date
    );
    assert_eq!(
        (at_kms.different, at_kms.unverifiable, at_kms.up_to_date),
        (1, unchecked_old, 2 - unchecked_old),
        "{found:?}"
    );
    assert_eq!(
        (
            at_plain.different,
            at_plain.unverifiable,
            at_plain.up_to_date
        ),
        (0, 0, 3),
        "{found:?}"
    );
    assert!(found
        .examples
        .iter()
        .any(|e| e.key == "collide.bin" && e.what == "different"));
    assert_eq!(
        found
            .examples
            .iter()
            .any(|e| e.key == "old.txt" && e.what.starts_with("unverifiable")),
        unchecked_old == 1
    );

    let fixed = run(&replicator, BackfillRequest::default()).await;
    assert_eq!(fixed.targets[&kms.bucket].copied, 1, "{fixed:?}");
    assert_eq!(fixed.targets[&plain.bucket].copied, 0, "{fixed:?}");
    let body = snapshot(&kms_client, &kms.bucket, "collide.bin")
        .await
        .expect("the replica")
        .body;
    assert_eq!(body, a, "the source's bytes again");
    let again = run(&replicator, verify).await;
    let at_kms = &again.targets[&kms.bucket];
    assert_eq!(
        (at_kms.different, at_kms.unverifiable, at_kms.up_to_date),
        (0, unchecked_old, 3 - unchecked_old),
        "{again:?}"
    );
}
