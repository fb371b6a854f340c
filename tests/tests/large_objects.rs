//! Objects above the multipart threshold: copied by parallel UploadPartCopy with everything a
//! small object's replica gets, and never an incomplete upload left behind.

use std::time::Duration;

use tokio::time::Instant;

use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
use fault_proxy::{FaultProxy, Rule};
use integration::*;
use s3fanout::backfill::{self, BackfillRequest};
use s3fanout::{Config, Deadline, FailureKind, Outcome, Replicator};

const MIB: usize = 1024 * 1024;

fn multipart_config(setup: &Setup) -> Config {
    let mut config = setup.config();
    config.multipart_threshold = 5 * MIB as u64;
    config.part_size = 5 * MIB as u64;
    config
}

/// A replicator whose requests to `bucket` go through a fault proxy applying `rule`.
async fn through_proxy(config: Config, bucket: &str, rule: Rule) -> (FaultProxy, Replicator) {
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    proxy.set_rule(bucket, rule);
    let replicator = Replicator::new(config, clients_via(&proxy.endpoint(), 2).await);
    (proxy, replicator)
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn multipart_copy_preserves_headers_metadata_tags_class_and_encryption() {
    let mut setup = Setup::new(2).await;
    setup.targets[0].storage_class = Some("STANDARD_IA".into());
    setup.targets[1].kms_key_id = Some("arn:aws:kms:eu-west-1:123456789012:key/big".into());
    let key = "big/ümlaut + space.bin";
    let body: Vec<u8> = (0..12 * MIB + 7).map(|i| (i % 251) as u8).collect();
    let etag = put_rich(&setup.source_client(), &setup.source, key, &body).await;
    let replicator = setup.replicator(multipart_config(&setup)).await;

    let report = replicator
        .apply(&[created(&setup.source, key, Some(&etag))])
        .await;
    for t in &report[0].targets {
        assert_eq!(t.outcome, Outcome::Copied, "{}", t.bucket);
    }
    for target in &setup.targets {
        assert_replica(&setup, key, target).await;
        // CreateMultipartUpload carries the tags form-encoded: a space and a literal `+`
        // come through as they were.
        let tags = setup
            .target_client(target)
            .get_object_tagging()
            .bucket(&target.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        let value = |k: &str| {
            tags.tag_set()
                .iter()
                .find(|t| t.key() == k)
                .map(|t| t.value().to_string())
        };
        assert_eq!(value("class").as_deref(), Some("gold+plated"));
        assert_eq!(value("team").as_deref(), Some("data lake"));
        let head = setup
            .target_client(target)
            .head_object()
            .bucket(&target.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        assert!(
            head.e_tag().unwrap().ends_with("-3\""),
            "3 parts expected, ETag {:?}",
            head.e_tag()
        );
        assert_eq!(
            uploads_in_progress(&setup.clients, &target.bucket, &target.region).await,
            0
        );
    }
    let head0 = setup
        .target_client(&setup.targets[0])
        .head_object()
        .bucket(&setup.targets[0].bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(head0.storage_class(), Some(&StorageClass::StandardIa));
    let head1 = setup
        .target_client(&setup.targets[1])
        .head_object()
        .bucket(&setup.targets[1].bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head1.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(
        head1.ssekms_key_id(),
        setup.targets[1].kms_key_id.as_deref()
    );

    // The multipart replica's own ETag differs from the source's; provenance still says current.
    let again = replicator
        .apply(&[created(&setup.source, key, Some(&etag))])
        .await;
    assert!(
        again[0]
            .targets
            .iter()
            .all(|t| t.outcome == Outcome::UpToDate),
        "{again:?}"
    );
}

/// A part that fails: for the announced version, the upload is left for the change's retry,
/// which resumes it without copying the landed part again; for a change that announces no
/// version (nothing proves its retry comes back to this one), the upload is aborted.
#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_failing_part_leaves_the_upload_to_the_retry_or_aborts_it() {
    let setup = Setup::new(1).await;
    let target = &setup.targets[0];
    let etag = put_sized(&setup.source_client(), &setup.source, "big", 11 * MIB).await;
    let part_2_down = Rule {
        down: true,
        only_query: Some("partNumber=2".into()),
        ..Rule::default()
    };
    let (proxy, replicator) =
        through_proxy(multipart_config(&setup), &target.bucket, part_2_down).await;
    let failed = |report: &[s3fanout::ChangeReport]| match &report[0].targets[0].outcome {
        Outcome::Failed(failure) if failure.kind == FailureKind::Retryable => {
            assert!(failure.message.contains("UploadPartCopy"), "{failure:?}")
        }
        other => panic!("{other:?}"),
    };
    let aborted = |seen: &[fault_proxy::Seen]| {
        seen.iter()
            .any(|s| s.method == "DELETE" && s.query.contains("uploadId"))
    };

    // No version announced: aborted.
    failed(
        &replicator
            .apply(&[created(&setup.source, "big", None)])
            .await,
    );
    assert!(aborted(&proxy.take_seen()), "abort sent");
    assert_eq!(
        uploads_in_progress(&setup.clients, &target.bucket, &target.region).await,
        0
    );

    // The announced version: left open, then resumed. An upload is resumed only when it began
    // a second after the source was written (Last-Modified has whole seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    failed(
        &replicator
            .apply(&[created(&setup.source, "big", Some(&etag))])
            .await,
    );
    assert!(!aborted(&proxy.take_seen()), "no abort");
    assert_eq!(
        uploads_in_progress(&setup.clients, &target.bucket, &target.region).await,
        1
    );
    assert!(
        snapshot(&setup.target_client(target), &target.bucket, "big")
            .await
            .is_none()
    );
    // What the upload holds: the parts that landed before the failure stopped the others.
    let client = setup.target_client(target);
    let open = client
        .list_multipart_uploads()
        .bucket(&target.bucket)
        .send()
        .await
        .unwrap();
    let upload_id = open.uploads()[0].upload_id().unwrap().to_string();
    // A part the first attempt sent before it stopped may land at the server after the attempt
    // returned: what the upload holds is read once two reads apart agree.
    let list_parts = || async {
        client
            .list_parts()
            .bucket(&target.bucket)
            .key("big")
            .upload_id(&upload_id)
            .send()
            .await
            .unwrap()
            .parts()
            .iter()
            .filter_map(|p| p.part_number())
            .collect::<Vec<i32>>()
    };
    let mut held = list_parts().await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again = list_parts().await;
        if again == held {
            break;
        }
        held = again;
    }
    proxy.clear_rules();
    let report = replicator
        .apply(&[created(&setup.source, "big", Some(&etag))])
        .await;
    assert_eq!(report[0].targets[0].outcome, Outcome::Copied);
    let copied: Vec<(i32, String)> = proxy
        .take_seen()
        .into_iter()
        .filter(|s| s.method == "PUT" && s.query.contains("partNumber"))
        .map(|s| {
            let field = |name: &str| {
                s.query
                    .split('&')
                    .find_map(|p| p.strip_prefix(name))
                    .unwrap_or_default()
                    .to_string()
            };
            (field("partNumber=").parse().unwrap(), field("uploadId="))
        })
        .collect();
    // 11 MiB in parts of 5 MiB: parts 1 to 3. The retry resumes the same upload and copies
    // only what it lacks.
    let mut expected: Vec<i32> = (1..=3).filter(|n| !held.contains(n)).collect();
    let mut numbers: Vec<i32> = copied.iter().map(|(n, _)| *n).collect();
    expected.sort_unstable();
    numbers.sort_unstable();
    assert_eq!(numbers, expected, "held before the retry: {held:?}");
    assert!(copied.iter().all(|(_, id)| *id == upload_id), "{copied:?}");
    assert_replica(&setup, "big", target).await;
    assert_eq!(
        uploads_in_progress(&setup.clients, &target.bucket, &target.region).await,
        0
    );
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_source_overwritten_during_the_copy_is_not_half_copied() {
    let setup = Setup::new(1).await;
    let target = &setup.targets[0];
    let src = setup.source_client();
    let etag = put_sized(&src, &setup.source, "moving", 11 * MIB).await;
    // Parts wait long enough for the overwrite below to land first, even on a busy machine; an
    // overwrite landing before the source is read ends the same way, the event naming the old ETag.
    let (_proxy, replicator) = through_proxy(
        multipart_config(&setup),
        &target.bucket,
        Rule {
            latency: Duration::from_secs(3),
            only_query: Some("partNumber=".into()),
            ..Rule::default()
        },
    )
    .await;
    let changes = [created(&setup.source, "moving", Some(&etag))];
    let copy = replicator.apply(&changes);
    let overwrite = async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        put_sized(&src, &setup.source, "moving", 6 * MIB).await
    };
    let (report, _) = tokio::join!(copy, overwrite);
    // The parts of the old content fail (412) and are aborted; the replica is then brought to
    // the new content at once, never to a mix of both.
    assert_eq!(report[0].targets[0].outcome, Outcome::Copied);
    assert_eq!(
        uploads_in_progress(&setup.clients, &target.bucket, &target.region).await,
        0
    );
    assert_replica(&setup, "moving", target).await;
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn near_the_deadline_nothing_new_starts_and_the_rest_is_reported_for_retry() {
    let setup = Setup::new(1).await;
    let target = &setup.targets[0];
    let mut changes = Vec::new();
    for i in 0..12 {
        let key = format!("small-{i}");
        let etag = put(&setup.source_client(), &setup.source, &key, b"x").await;
        changes.push(created(&setup.source, &key, Some(&etag)));
    }
    let mut config = setup.config();
    config.concurrency = 2;
    let (_proxy, replicator) = through_proxy(
        config,
        &target.bucket,
        Rule {
            latency: Duration::from_millis(300),
            ..Rule::default()
        },
    )
    .await;

    let started = Instant::now();
    let deadline = Deadline::at(
        started + Duration::from_millis(1500),
        Duration::from_millis(1000),
    );
    let reports = replicator.apply_before(&changes, &deadline).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered before the deadline"
    );
    let copied = reports
        .iter()
        .filter(|r| r.targets[0].outcome == Outcome::Copied)
        .count();
    let refused = reports
        .iter()
        .filter(|r| matches!(&r.targets[0].outcome, Outcome::Failed(f) if f.kind == FailureKind::Deferred && f.message.contains("deadline")))
        .count();
    assert!(
        copied >= 1 && refused >= 1 && copied + refused == 12,
        "copied {copied}, refused {refused}"
    );

    // Redelivery without the deadline finishes the job.
    let reports = replicator.apply(&changes).await;
    assert!(reports.iter().all(|r| !r.failed()));
    for change in &changes {
        assert_replica(&setup, &change.key, target).await;
    }
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_multipart_copy_cut_by_the_deadline_is_resumed_by_the_next_delivery() {
    let setup = Setup::new(1).await;
    let target = &setup.targets[0];
    let etag = put_sized(&setup.source_client(), &setup.source, "slow", 11 * MIB).await;
    // An upload is resumed only when it began after the source's Last-Modified second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Parts 1 and 2 copy at once; part 3 hangs past the deadline.
    let (proxy, replicator) = through_proxy(
        multipart_config(&setup),
        &target.bucket,
        Rule {
            latency: Duration::from_secs(3),
            only_query: Some("partNumber=3".into()),
            ..Rule::default()
        },
    )
    .await;
    let started = Instant::now();
    let deadline = Deadline::at(
        started + Duration::from_millis(1500),
        Duration::from_millis(800),
    );
    let change = [created(&setup.source, "slow", Some(&etag))];
    let report = replicator.apply_before(&change, &deadline).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    match &report[0].targets[0].outcome {
        Outcome::Failed(failure) if failure.kind == FailureKind::Deferred => {
            assert!(failure.message.contains("stopped in flight"), "{failure:?}")
        }
        other => panic!("{other:?}"),
    }
    // Left open with the two parts that finished, for the next delivery.
    assert_eq!(
        uploads_in_progress(&setup.clients, &target.bucket, &target.region).await,
        1
    );

    proxy.clear_rules();
    proxy.take_seen();
    let report = replicator.apply(&change).await;
    assert_eq!(report[0].targets[0].outcome, Outcome::Copied);
    let seen = proxy.take_seen();
    let part_copies: Vec<&str> = seen
        .iter()
        .filter(|s| s.copy && s.query.contains("partNumber="))
        .map(|s| s.query.as_str())
        .collect();
    assert_eq!(
        part_copies.len(),
        1,
        "only the missing part: {part_copies:?}"
    );
    assert!(part_copies[0].contains("partNumber=3"), "{part_copies:?}");
    assert!(
        !seen.iter().any(|s| s.method == "POST"
            && s.query.contains("uploads")
            && !s.query.contains("uploadId")),
        "no new upload"
    );
    assert_eq!(
        uploads_in_progress(&setup.clients, &target.bucket, &target.region).await,
        0
    );
    assert_replica(&setup, "slow", target).await;
}

/// The same through a backfill: the invocation the deadline stops leaves the upload open and
/// returns a continuation; the next invocation copies only the missing part.
#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_backfill_copy_by_parts_cut_by_the_deadline_is_resumed_by_its_continuation() {
    let setup = Setup::new(1).await;
    let target = &setup.targets[0];
    put_sized(&setup.source_client(), &setup.source, "slow", 11 * MIB).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (proxy, replicator) = through_proxy(
        multipart_config(&setup),
        &target.bucket,
        Rule {
            latency: Duration::from_secs(3),
            only_query: Some("partNumber=3".into()),
            ..Rule::default()
        },
    )
    .await;
    let started = Instant::now();
    let deadline = Deadline::at(
        started + Duration::from_millis(1500),
        Duration::from_millis(800),
    );
    let first = backfill::run(&replicator, &BackfillRequest::default(), &deadline, &|_| {})
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(!first.done);
    assert!(first.stopped.is_none(), "{:?}", first.stopped);
    assert_eq!(first.parts_copied, 2, "{first:?}");
    assert_eq!(
        uploads_in_progress(&setup.clients, &target.bucket, &target.region).await,
        1
    );

    proxy.clear_rules();
    proxy.take_seen();
    let request = BackfillRequest {
        continuation: first.continuation.map(|c| *c),
        ..Default::default()
    };
    let second = backfill::run(&replicator, &request, &Deadline::none(), &|_| {})
        .await
        .unwrap();
    assert!(second.done, "{second:?}");
    assert_eq!(second.targets[&target.bucket].copied, 1, "{second:?}");
    assert_eq!(second.parts_copied, 3);
    let part_copies: Vec<String> = proxy
        .take_seen()
        .into_iter()
        .filter(|s| s.copy && s.query.contains("partNumber="))
        .map(|s| s.query)
        .collect();
    assert_eq!(
        part_copies.len(),
        1,
        "only the missing part: {part_copies:?}"
    );
    assert!(part_copies[0].contains("partNumber=3"), "{part_copies:?}");
    assert_eq!(
        uploads_in_progress(&setup.clients, &target.bucket, &target.region).await,
        0
    );
    assert_replica(&setup, "slow", target).await;
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_multipart_source_is_copied_with_its_own_parts_so_the_replica_keeps_its_etag() {
    let setup = Setup::new(2).await;
    let src = setup.source_client();
    // Uploaded in three parts of 6 MiB, 6 MiB and 1 MiB: above a threshold of 8 MiB.
    let etag = put_in_parts(&src, &setup.source, "mp", &[6 * MIB, 6 * MIB, MIB]).await;
    assert!(etag.ends_with("-3"));

    let mut config = setup.config();
    config.multipart_threshold = 8 * MIB as u64;
    let replicator = setup.replicator(config).await;
    let report = replicator
        .apply(&[created(&setup.source, "mp", Some(&etag))])
        .await;
    assert!(
        report[0]
            .targets
            .iter()
            .all(|t| t.outcome == Outcome::Copied),
        "{report:?}"
    );
    for target in &setup.targets {
        assert_replica(&setup, "mp", target).await;
        assert_eq!(
            head_etag(&setup.target_client(target), &target.bucket, "mp").await,
            etag
        );
    }
}

/// Below the threshold a multipart source is copied with one `CopyObject`: its replica's ETag
/// differs, its provenance shows it current, and a second delivery writes nothing.
#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_small_multipart_source_is_copied_in_one_request() {
    let setup = Setup::new(1).await;
    let target = &setup.targets[0];
    let etag = put_in_parts(&setup.source_client(), &setup.source, "mp", &[6 * MIB, MIB]).await;
    assert!(etag.ends_with("-2"));
    let (proxy, replicator) = through_proxy(setup.config(), &target.bucket, Rule::default()).await;
    // As S3 announces it: with its size.
    let mut change = [created(&setup.source, "mp", Some(&etag))];
    change[0].size = Some(7 * MIB as i64);
    let report = replicator.apply(&change).await;
    assert_eq!(report[0].targets[0].outcome, Outcome::Copied);
    let seen: Vec<_> = proxy
        .take_seen()
        .into_iter()
        .filter(|s| s.bucket == target.bucket)
        .collect();
    let kinds: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.query.as_str()))
        .collect();
    assert_eq!(seen.len(), 1, "one request to the target: {kinds:?}");
    assert!(seen[0].copy && seen[0].create_only, "{:?}", seen[0]);
    assert_replica(&setup, "mp", target).await;
    assert_ne!(
        head_etag(&setup.target_client(target), &target.bucket, "mp").await,
        etag
    );
    let again = replicator.apply(&change).await;
    assert_eq!(again[0].targets[0].outcome, Outcome::UpToDate);

    // What keeping its ETag would cost: a multipart upload with its own layout.
    let etag = put_in_parts(
        &setup.source_client(),
        &setup.source,
        "mp2",
        &[6 * MIB, MIB],
    )
    .await;
    let (proxy, replicator) =
        through_proxy(multipart_config(&setup), &target.bucket, Rule::default()).await;
    let report = replicator
        .apply(&[created(&setup.source, "mp2", Some(&etag))])
        .await;
    assert_eq!(report[0].targets[0].outcome, Outcome::Copied);
    let by_parts = proxy.take_seen().len();
    println!("a 7 MiB source in 2 parts to 1 target: 2 requests whole, {by_parts} by parts");
    assert!(by_parts >= 8, "{by_parts}");
    assert_eq!(
        head_etag(&setup.target_client(target), &target.bucket, "mp2").await,
        etag
    );
}
