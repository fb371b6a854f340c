//! The replicate path end to end against the local S3 server: real events in, replicas checked.

use integration::*;
use s3fanout::invocation::handle;
use s3fanout::{Deadline, Outcome, Target};
use serde_json::json;

/// Keys of every class that breaks naive encoding.
fn awkward_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "plain.txt",
        "with space.txt",
        "a+b.txt",
        "100%.txt",
        "%41%2F.txt",
        "what?.txt",
        "hash#tag.txt",
        "and&more=yes.txt",
        "café/日本語/✓ emoji 🎉.txt",
        "folder/",
        "nested/dir/file",
        "empty",
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    keys.push(format!("long/{}", "k".repeat(1024 - 5)));
    keys
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn replicates_awkward_keys_with_headers_metadata_and_tags() {
    let setup = Setup::new(3).await;
    let src = setup.source_client();
    let mut records = Vec::new();
    for key in awkward_keys() {
        let body: &[u8] = if key == "empty" || key.ends_with('/') {
            b""
        } else {
            key.as_bytes()
        };
        let etag = put_rich(&src, &setup.source, &key, body).await;
        records.push(s3_record(
            "ObjectCreated:Put",
            &setup.source,
            &key,
            Some(&etag),
        ));
    }
    let replicator = setup.replicator(setup.config()).await;
    let response = handle(&replicator, &notification(records), &Deadline::none())
        .await
        .expect("no failure");
    assert_eq!(response["outcomes"]["copied"], 3 * awkward_keys().len());

    for key in awkward_keys() {
        for target in &setup.targets {
            assert_replica(&setup, &key, target).await;
        }
    }

    // The same events again (at-least-once delivery) write nothing.
    let records: Vec<_> = awkward_keys()
        .iter()
        .map(|k| s3_record("ObjectCreated:Put", &setup.source, k, None))
        .collect();
    let again = handle(&replicator, &notification(records), &Deadline::none())
        .await
        .unwrap();
    assert_eq!(
        again["outcomes"],
        json!({ "up_to_date": 3 * awkward_keys().len() })
    );
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn target_options_prefix_storage_class_and_kms_apply() {
    let mut setup = Setup::new(2).await;
    setup.targets[0].prefix = "mirror/".into();
    setup.targets[0].storage_class = Some("STANDARD_IA".into());
    setup.targets[1].kms_key_id = Some("arn:aws:kms:eu-west-1:123456789012:key/test-key".into());
    let src = setup.source_client();
    let etag = put_rich(&src, &setup.source, "doc one.txt", b"hello").await;
    let replicator = setup.replicator(setup.config()).await;
    let event = notification(vec![s3_record(
        "ObjectCreated:Put",
        &setup.source,
        "doc one.txt",
        Some(&etag),
    )]);
    handle(&replicator, &event, &Deadline::none())
        .await
        .unwrap();

    assert_replica(&setup, "doc one.txt", &setup.targets[0]).await;
    let head = setup
        .target_client(&setup.targets[0])
        .head_object()
        .bucket(&setup.targets[0].bucket)
        .key("mirror/doc one.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.storage_class(),
        Some(&aws_sdk_s3::types::StorageClass::StandardIa)
    );

    let head = setup
        .target_client(&setup.targets[1])
        .head_object()
        .bucket(&setup.targets[1].bucket)
        .key("doc one.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms)
    );
    assert_eq!(head.ssekms_key_id(), setup.targets[1].kms_key_id.as_deref());
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_prefix_that_makes_the_key_too_long_fails_that_target_only() {
    let mut setup = Setup::new(2).await;
    setup.targets[1].prefix = "p/".into();
    let key = "x".repeat(1024);
    let etag = put(&setup.source_client(), &setup.source, &key, b"1").await;
    let replicator = setup.replicator(setup.config()).await;
    let err = handle(
        &replicator,
        &notification(vec![s3_record(
            "ObjectCreated:Put",
            &setup.source,
            &key,
            Some(&etag),
        )]),
        &Deadline::none(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("1 replica(s) failed") && err.contains("1026 bytes"),
        "{err}"
    );
    assert_replica(&setup, &key, &setup.targets[0]).await;
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn stale_missing_and_replica_events_are_finished_not_copied() {
    let setup = Setup::new(1).await;
    let src = setup.source_client();
    let replicator = setup.replicator(setup.config()).await;
    let target = &setup.targets[0];

    let old = put(&src, &setup.source, "changed", b"v1").await;
    put(&src, &setup.source, "changed", b"v2").await;
    let report = replicator
        .apply(&changes(&setup, "changed", Some(&old)))
        .await;
    // An event for content that changed since still brings the replica to the source as it is
    // now (an earlier attempt of it may have landed an older copy); the newer event then finds
    // the replica current.
    assert_eq!(report[0].targets[0].outcome, Outcome::Copied);
    assert_replica(&setup, "changed", target).await;
    let again = replicator
        .apply(&changes(&setup, "changed", Some(&old)))
        .await;
    assert_eq!(again[0].targets[0].outcome, Outcome::SourceChanged);

    let report = replicator
        .apply(&changes(&setup, "never-existed", None))
        .await;
    assert_eq!(report[0].targets[0].outcome, Outcome::SourceGone);

    // An object whose provenance names another configured source is a replica of it: copying
    // it onward would loop.
    let mut config = setup.config();
    config.source_buckets.insert("another-source".into());
    let guarded = setup.replicator(config).await;
    let put_with_provenance = |key: &'static str, from: String| {
        let src = src.clone();
        let bucket = setup.source.clone();
        async move {
            src.put_object()
                .bucket(&bucket)
                .key(key)
                .metadata(s3fanout::provenance::SOURCE_ETAG, "abc")
                .metadata(s3fanout::provenance::SOURCE_BUCKET, from)
                .body(b"x".to_vec().into())
                .send()
                .await
                .unwrap();
        }
    };
    put_with_provenance("looped", "another-source".into()).await;
    let report = guarded.apply(&changes(&setup, "looped", None)).await;
    assert_eq!(report[0].targets[0].outcome, Outcome::IsReplica);

    // A replica copied back into its own source (a restore), or found in a replica bucket
    // promoted to be the source (its provenance names a bucket no longer configured), is data.
    put_with_provenance("restored", setup.source.clone()).await;
    put_with_provenance("promoted", "old-source-gone".into()).await;
    for key in ["restored", "promoted"] {
        let report = guarded.apply(&changes(&setup, key, None)).await;
        assert_eq!(report[0].targets[0].outcome, Outcome::Copied, "{key}");
        assert_replica(&setup, key, target).await;
    }
}

fn changes(setup: &Setup, key: &str, etag: Option<&str>) -> Vec<s3fanout::Change> {
    let event = notification(vec![s3_record(
        "ObjectCreated:Put",
        &setup.source,
        key,
        etag,
    )]);
    match s3fanout::event::parse_invocation(&event).unwrap() {
        s3fanout::event::Invocation::Direct(changes) => changes,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn unknown_buckets_fail_clearly_and_others_still_complete() {
    let mut setup = Setup::new(2).await;
    setup.targets.push(target(&unique("missing"), "eu-west-1"));
    let etag = put(&setup.source_client(), &setup.source, "k", b"data").await;
    let replicator = setup.replicator(setup.config()).await;
    let report = replicator.apply(&changes(&setup, "k", Some(&etag))).await;
    assert_eq!(report[0].targets[0].outcome, Outcome::Copied);
    assert_eq!(report[0].targets[1].outcome, Outcome::Copied);
    match &report[0].targets[2].outcome {
        Outcome::Failed(failure) if failure.kind == s3fanout::FailureKind::Permanent => {
            assert!(failure.message.contains("NoSuchBucket"), "{failure:?}")
        }
        other => panic!("{other:?}"),
    }

    // An allowed source bucket that does not exist.
    let mut config = setup.config();
    let ghost = unique("ghost");
    config.source_buckets.insert(ghost.clone());
    let replicator = setup.replicator(config).await;
    let event = notification(vec![s3_record("ObjectCreated:Put", &ghost, "k", None)]);
    let err = handle(&replicator, &event, &Deadline::none())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("source bucket \"{ghost}\" does not exist")),
        "{err}"
    );
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn events_from_buckets_that_are_not_sources_are_rejected() {
    let setup = Setup::new(1).await;
    let other = unique("other");
    create_bucket(&setup.clients, &other, "us-east-1").await;
    put(&setup.clients.for_region("us-east-1"), &other, "k", b"x").await;
    let replicator = setup.replicator(setup.config()).await;
    let err = handle(
        &replicator,
        &notification(vec![s3_record("ObjectCreated:Put", &other, "k", None)]),
        &Deadline::none(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("bucket \"{other}\" is not an allowed source")),
        "{err}"
    );
    let t = &setup.targets[0];
    assert!(snapshot(&setup.target_client(t), &t.bucket, "k")
        .await
        .is_none());
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn deletes_propagate_only_when_configured_and_only_when_the_source_is_gone() {
    let setup = Setup::new(2).await;
    let src = setup.source_client();
    for key in ["gone one", "back+again"] {
        let etag = put(&src, &setup.source, key, b"x").await;
        let replicator = setup.replicator(setup.config()).await;
        handle(
            &replicator,
            &notification(vec![s3_record(
                "ObjectCreated:Put",
                &setup.source,
                key,
                Some(&etag),
            )]),
            &Deadline::none(),
        )
        .await
        .unwrap();
    }
    src.delete_object()
        .bucket(&setup.source)
        .key("gone one")
        .send()
        .await
        .unwrap();
    let deletes = notification(vec![
        s3_record("ObjectRemoved:Delete", &setup.source, "gone one", None),
        s3_record("ObjectRemoved:Delete", &setup.source, "back+again", None),
    ]);

    let disabled = setup.replicator(setup.config()).await;
    let out = handle(&disabled, &deletes, &Deadline::none())
        .await
        .unwrap();
    // A delete whose source has the object again brings the replicas to it, whether deletes
    // propagate or not; here they already hold it.
    assert_eq!(out["outcomes"], json!({ "ignored": 2, "source_exists": 2 }));
    let present = |t: &Target, key: &'static str| {
        let client = setup.target_client(t);
        let bucket = t.bucket.clone();
        async move { snapshot(&client, &bucket, key).await.is_some() }
    };
    assert!(present(&setup.targets[0], "gone one").await);

    let mut config = setup.config();
    config.replicate_deletes = true;
    let enabled = setup.replicator(config).await;
    let out = handle(&enabled, &deletes, &Deadline::none()).await.unwrap();
    assert_eq!(out["outcomes"], json!({ "deleted": 2, "source_exists": 2 }));
    for t in &setup.targets {
        assert!(!present(t, "gone one").await, "deleted from {}", t.bucket);
        assert!(present(t, "back+again").await, "kept in {}", t.bucket);
    }
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn sqs_batch_reports_exactly_the_failed_messages() {
    let setup = Setup::new(2).await;
    let src = setup.source_client();
    let good = put(&src, &setup.source, "good key", b"good").await;
    let other = unique("notsource");
    let bodies = vec![
        notification(vec![s3_record(
            "ObjectCreated:Put",
            &setup.source,
            "good key",
            Some(&good),
        )]),
        json!("this is not json"),
        json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": setup.source}),
        notification(vec![s3_record("ObjectCreated:Put", &other, "k", None)]),
    ];
    let replicator = setup.replicator(setup.config()).await;
    let response = handle(&replicator, &sqs_event(&bodies), &Deadline::none())
        .await
        .unwrap();
    assert_eq!(
        response,
        json!({ "batchItemFailures": [ { "itemIdentifier": "m1" }, { "itemIdentifier": "m3" } ] })
    );
    for t in &setup.targets {
        assert_replica(&setup, "good key", t).await;
    }
}
