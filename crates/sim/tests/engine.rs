//! The engine without a server: the backfill merge across page boundaries, the continuation,
//! the SQS batch response and Batch Operations answers, over the simulated store.

use std::collections::BTreeMap;
use std::time::Duration;

use s3fanout::backfill::{run_paged, BackfillRequest, Compare, Mode, Summary};
use s3fanout::core::object::ContentHeaders;
use s3fanout::lambda::{backfill, invocation};
use s3fanout::{Change, Config, Deadline, Outcome, Replicator, Target};
use s3fanout_sim::{Faults, NewObject, SimStore};
use serde_json::json;

const SOURCE: &str = "src";

fn target(i: usize, prefix: &str) -> Target {
    Target {
        bucket: format!("rep-{i}"),
        region: format!("region-{i}"),
        prefix: prefix.into(),
        storage_class: None,
        kms_key_id: None,
    }
}

fn replicator(targets: Vec<Target>, faults: Faults) -> Replicator<SimStore> {
    let store = SimStore::new(7, faults);
    store.create_bucket(SOURCE, false);
    for t in &targets {
        store.create_bucket(&t.bucket, false);
    }
    let mut config = Config::new([SOURCE.to_string()], targets);
    config.replicate_deletes = true;
    Replicator::with_store(config, store)
}

/// An object's location, in no region in particular.
fn at<'a>(bucket: &'a str, key: &'a str) -> s3fanout::store::ObjectAt<'a> {
    s3fanout::store::ObjectAt {
        bucket,
        region: None,
        key,
    }
}

/// What a replica is written with: these headers and metadata, nothing else of its own.
fn replica_attributes(
    headers: &ContentHeaders,
    metadata: BTreeMap<String, String>,
) -> s3fanout::store::ReplicaAttributes {
    s3fanout::store::ReplicaAttributes {
        headers: headers.clone(),
        metadata,
        storage_class: None,
        kms_key_id: None,
        checksum: s3fanout::core::object::ChecksumAlgorithm::Crc64Nvme,
    }
}

async fn sync(r: &Replicator<SimStore>, request: BackfillRequest, page: u32) -> Summary {
    run_paged(r, &request, &Deadline::none(), &|_| {}, page)
        .await
        .unwrap()
}

/// S3 lists in UTF-8 binary order: `Z` < `a` < `é` < `日`; the merge must walk the same order
/// across every page boundary, with runs of keys only a replica has.
#[tokio::test(start_paused = true)]
async fn the_merge_crosses_every_page_boundary_in_s3_order() {
    for page in 1..=3 {
        let targets = vec![target(0, ""), target(1, "mirror/")];
        let r = replicator(targets.clone(), Faults::NONE);
        let store = r.store();
        let source_keys = ["Z", "a", "a/b", "é", "日", "日/z"];
        for key in source_keys {
            store.put(SOURCE, key, NewObject::plain(3));
        }
        // Replica-only runs: before, between and after the source's keys.
        for key in ["A0", "A1", "b0", "b1", "b2", "月", "龍1", "龍2"] {
            store.put("rep-0", key, NewObject::plain(1));
            store.put("rep-1", &format!("mirror/{key}"), NewObject::plain(1));
        }
        // Already current at one target, stale at the other.
        let current = store.object(SOURCE, "a").unwrap();
        store.put("rep-1", "mirror/é", NewObject::plain(9));

        let summary = sync(
            &r,
            BackfillRequest {
                delete: true,
                ..Default::default()
            },
            page,
        )
        .await;
        assert!(summary.done, "page {page}");
        assert_eq!(summary.source_objects, 6, "page {page}");
        for t in &targets {
            let counts = &summary.targets[&t.bucket];
            assert_eq!(counts.listed, 6, "page {page} {}", t.bucket);
            assert_eq!(counts.copied, 6, "page {page} {}", t.bucket);
            assert_eq!(counts.deleted, 8, "page {page} {}", t.bucket);
            assert_eq!(counts.failed, 0);
            let keys = store.keys(&t.bucket);
            let expected: Vec<String> = source_keys
                .iter()
                .map(|k| format!("{}{k}", t.prefix))
                .collect();
            assert_eq!(keys, expected, "page {page} {}", t.bucket);
        }
        assert_eq!(store.object("rep-0", "a").unwrap().content, current.content);
        // A second run is listings only, and every page is read once per listing.
        let before = store.requests();
        let again = sync(&r, BackfillRequest::default(), page).await;
        let after = store.requests();
        assert_eq!(again.targets["rep-0"].up_to_date, 6);
        assert_eq!(after.get("CopyObject"), before.get("CopyObject"));
        assert_eq!(after.get("HeadObject"), before.get("HeadObject"));
        let pages = |objects: u64| objects.div_ceil(page as u64).max(1);
        // A listing that ends exactly at a page boundary costs one more (empty) request.
        let lists = after["ListObjectsV2"] - before["ListObjectsV2"];
        assert!(
            (3 * pages(6)..=3 * (pages(6) + 1)).contains(&lists),
            "page {page}: {lists} List requests"
        );
    }
}

/// A run the deadline stops resumes where it stopped: nothing copied twice, nothing counted
/// twice, and the continuation names only keys with finished work.
#[tokio::test(start_paused = true)]
async fn a_stopped_run_continues_without_repeating_or_double_counting() {
    let targets = vec![target(0, ""), target(1, ""), target(2, "")];
    let r = replicator(
        targets,
        Faults {
            max_latency: Duration::from_millis(30),
            ..Faults::NONE
        },
    );
    let store = r.store();
    for i in 0..40 {
        store.put(SOURCE, &format!("k{i:03}"), NewObject::plain(10 + i));
    }
    let mut request = BackfillRequest {
        concurrency: Some(4),
        ..Default::default()
    };
    let mut invocations = 0;
    let summary = loop {
        invocations += 1;
        assert!(invocations < 100, "no progress");
        let deadline = Deadline::after(Duration::from_millis(400), Duration::from_millis(100));
        let summary = run_paged(&r, &request, &deadline, &|_| {}, 7)
            .await
            .unwrap();
        match &summary.continuation {
            Some(next) => {
                let size = serde_json::to_vec(next).unwrap().len();
                assert!(size < 64 * 1024, "continuation of {size} bytes");
                request.continuation = Some((**next).clone());
            }
            None => break summary,
        }
    };
    assert!(invocations > 2, "the deadline should have stopped the run");
    assert_eq!(summary.invocations as usize, invocations);
    assert_eq!(summary.source_objects, 40);
    // A copy whose check after landing the deadline stopped is found current by the next
    // invocation: counted up to date there, never copied twice.
    for counts in summary.targets.values() {
        assert_eq!(counts.listed, 40);
        assert_eq!(counts.copied + counts.up_to_date, 40, "{counts:?}");
        assert_eq!(counts.failed, 0);
    }
    assert_eq!(
        store.requests()["CopyObject"],
        120,
        "each object copied once per target"
    );
}

#[tokio::test(start_paused = true)]
async fn verify_and_dry_run_report_without_writing() {
    let r = replicator(vec![target(0, "")], Faults::NONE);
    let store = r.store();
    store.put(SOURCE, "missing", NewObject::plain(3));
    store.put(SOURCE, "different", NewObject::plain(3));
    store.put("rep-0", "different", NewObject::plain(4));
    store.put("rep-0", "extra", NewObject::plain(1));
    let before = store.requests();
    let verify = sync(
        &r,
        BackfillRequest {
            mode: Mode::Verify,
            ..Default::default()
        },
        1000,
    )
    .await;
    let counts = &verify.targets["rep-0"];
    assert_eq!(
        (counts.missing, counts.different, counts.extraneous),
        (1, 1, 1)
    );
    assert!(verify.has_problems());
    let dry = sync(
        &r,
        BackfillRequest {
            dry_run: true,
            delete: true,
            ..Default::default()
        },
        1000,
    )
    .await;
    let counts = &dry.targets["rep-0"];
    assert_eq!((counts.copied, counts.deleted), (2, 1));
    let after = store.requests();
    for op in ["CopyObject", "DeleteObject", "HeadObject"] {
        assert_eq!(after.get(op), before.get(op), "{op}");
    }
}

/// Exactly the failed messages are named, so that only they come back.
#[tokio::test(start_paused = true)]
async fn the_sqs_batch_response_names_exactly_the_failed_messages() {
    let r = replicator(vec![target(0, "")], Faults::NONE);
    r.store().put(SOURCE, "ok.txt", NewObject::plain(3));
    let record = |bucket: &str, key: &str| {
        json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]})
        .to_string()
    };
    let payload = json!({"Records": [
        {"eventSource": "aws:sqs", "messageId": "good", "body": record(SOURCE, "ok.txt")},
        {"eventSource": "aws:sqs", "messageId": "foreign", "body": record("other-bucket", "x")},
        {"eventSource": "aws:sqs", "messageId": "garbled", "body": "{not json"},
        {"eventSource": "aws:sqs", "messageId": "test", "body": json!({"Event": "s3:TestEvent"}).to_string()},
    ]});
    let response = invocation::handle(&r, &payload, &Deadline::none())
        .await
        .unwrap();
    let failed: Vec<&str> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["foreign", "garbled"]);
    assert!(r.store().object("rep-0", "ok.txt").is_some());
}

#[tokio::test(start_paused = true)]
async fn batch_operations_tasks_answer_per_outcome() {
    let r = replicator(vec![target(0, "")], Faults::NONE);
    r.store().put(SOURCE, "a b.txt", NewObject::plain(3));
    let event = json!({"invocationSchemaVersion": "2.0", "invocationId": "i",
    "job": {"id": "j", "userArguments": {}},
    "tasks": [
        {"taskId": "1", "s3Key": "a+b.txt", "s3VersionId": null, "s3Bucket": SOURCE},
        {"taskId": "2", "s3Key": "gone.txt", "s3VersionId": null, "s3Bucket": SOURCE},
    ]});
    let (response, next) = backfill::handle_invocation(&r, &event, &Deadline::none())
        .await
        .unwrap();
    assert!(next.is_empty());
    assert_eq!(response["results"][0]["resultCode"], "Succeeded");
    assert_eq!(response["results"][1]["resultCode"], "PermanentFailure");
    assert!(r.store().object("rep-0", "a b.txt").is_some());
}

/// A duplicate delivery writes nothing: its copies are refused (`If-None-Match: *`), and the
/// replica's provenance then shows it current.
#[tokio::test(start_paused = true)]
async fn a_duplicate_delivery_copies_nothing() {
    let r = replicator(vec![target(0, ""), target(1, "")], Faults::NONE);
    let etag = r.store().put(SOURCE, "k", NewObject::plain(3));
    let change = Change::created(SOURCE, "k").with_etag(etag);
    let first = r.apply(std::slice::from_ref(&change)).await;
    assert!(first[0]
        .targets
        .iter()
        .all(|t| t.outcome == Outcome::Copied));
    let copies = r.store().applied()["CopyObject"];
    let sent = r.store().requests()["CopyObject"];
    let second = r.apply(std::slice::from_ref(&change)).await;
    assert!(second[0]
        .targets
        .iter()
        .all(|t| t.outcome == Outcome::UpToDate));
    assert_eq!(r.store().applied()["CopyObject"], copies, "nothing written");
    assert_eq!(
        r.store().requests()["CopyObject"],
        sent + 2,
        "one refused per target"
    );
}

/// An in-place metadata change keeps the ETag and a tag change leaves the listing as it was:
/// a verify by listing cannot see them, a full verify reports both.
#[tokio::test(start_paused = true)]
async fn a_full_verify_reports_metadata_and_tag_drift() {
    let r = replicator(vec![target(0, "")], Faults::NONE);
    let store = r.store();
    for key in ["headers", "tags", "same"] {
        store.put(SOURCE, key, NewObject::plain(3));
    }
    sync(&r, BackfillRequest::default(), 1000).await;
    store.replace_metadata(
        SOURCE,
        "headers",
        ContentHeaders {
            content_type: Some("text/csv".into()),
            ..Default::default()
        },
        BTreeMap::from([("k".to_string(), "v".to_string())]),
    );
    store.set_tags(
        SOURCE,
        "tags",
        vec![s3fanout::core::object::Tag {
            key: "team".into(),
            value: "data lake".into(),
        }],
    );
    let verify = |compare| BackfillRequest {
        mode: Mode::Verify,
        compare,
        ..Default::default()
    };
    let by_listing = sync(&r, verify(Compare::Listing), 1000).await;
    assert_eq!(by_listing.targets["rep-0"].different, 0);
    let before = store.requests();
    let full = sync(&r, verify(Compare::Full), 1000).await;
    let counts = &full.targets["rep-0"];
    assert_eq!((counts.different, counts.up_to_date), (2, 1), "{counts:?}");
    let drifted: Vec<&str> = full.examples.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(drifted, ["headers", "tags"]);
    let after = store.requests();
    assert_eq!(
        after.get("CopyObject"),
        before.get("CopyObject"),
        "verify writes nothing"
    );
}

/// An object too large for one invocation is copied over many: each delivery resumes the upload
/// the previous one left at its deadline, and every part is copied once.
#[tokio::test(start_paused = true)]
async fn a_huge_object_is_copied_across_many_windows_each_part_once() {
    const MIB: u64 = 1024 * 1024;
    let r = {
        let store = SimStore::new(
            11,
            Faults {
                max_latency: Duration::from_millis(40),
                ..Faults::NONE
            },
        );
        store.create_bucket(SOURCE, false);
        store.create_bucket("rep-0", false);
        let mut config = Config::new([SOURCE.to_string()], vec![target(0, "")]);
        config.concurrency = 4;
        config.multipart_threshold = 5 * MIB;
        config.part_size = 5 * MIB;
        Replicator::with_store(config, store)
    };
    let size = 2 * 1024 * MIB;
    let parts = size.div_ceil(5 * MIB);
    let etag = r.store().put(SOURCE, "huge.bin", NewObject::plain(size));
    // Deliveries come later than the write's second (uploads begun within it are not resumed).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let change = Change::created(SOURCE, "huge.bin").with_etag(&etag);
    let mut windows = 0;
    loop {
        windows += 1;
        assert!(windows < 200, "no progress");
        let deadline = Deadline::after(Duration::from_millis(500), Duration::from_millis(100));
        let report = r
            .apply_before(std::slice::from_ref(&change), &deadline)
            .await;
        match &report[0].targets[0].outcome {
            Outcome::Copied => break,
            Outcome::Failed(f) if f.kind == s3fanout::FailureKind::Deferred => {}
            other => panic!("window {windows}: {other:?}"),
        }
        // Left open for the next delivery.
        assert_eq!(r.store().uploads("rep-0").len(), 1, "window {windows}");
    }
    let applied = r.store().applied();
    println!(
        "huge object: {parts} parts, {windows} windows, {} part copies took effect",
        applied["UploadPartCopy"]
    );
    assert!(windows >= 10, "{windows} windows");
    assert_eq!(applied["UploadPartCopy"], parts, "each part copied once");
    assert_eq!(applied["CreateMultipartUpload"], 1);
    assert!(r.store().uploads("rep-0").is_empty());
    let replica = r.store().object("rep-0", "huge.bin").unwrap();
    assert_eq!(
        replica.content,
        r.store().object(SOURCE, "huge.bin").unwrap().content
    );
}

/// EventBridge keys are used as delivered; should the service ever deliver them form-encoded
/// instead, the decoded spelling names the object and is used.
#[tokio::test(start_paused = true)]
async fn eventbridge_keys_work_raw_or_form_encoded() {
    let r = replicator(vec![target(0, "")], Faults::NONE);
    r.store().put(SOURCE, "a+b c.txt", NewObject::plain(3));
    let event = |key: &str| {
        json!({"source": "aws.s3", "detail-type": "Object Created", "region": "us-east-1",
            "detail": {"bucket": {"name": SOURCE}, "object": {"key": key}}})
    };
    // As delivered: the key itself.
    invocation::handle(&r, &event("a+b c.txt"), &Deadline::none())
        .await
        .unwrap();
    assert!(r.store().object("rep-0", "a+b c.txt").is_some());
    // Form-encoded, as notification records carry keys: no object under that spelling, the
    // decoded one is used.
    r.store().remove("rep-0", "a+b c.txt");
    let out = invocation::handle(&r, &event("a%2Bb+c.txt"), &Deadline::none())
        .await
        .unwrap();
    assert_eq!(out["outcomes"], json!({"copied": 1}));
    assert!(r.store().object("rep-0", "a+b c.txt").is_some());
    assert!(r.store().object("rep-0", "a%2Bb+c.txt").is_none());
}

/// A backfill does not come back to a key it reported failed: when the check after its copy
/// fails transiently, it is tried again in place, so that a copy made from headers read before
/// an in-place change of the source is never left unchecked.
#[tokio::test(start_paused = true)]
async fn a_backfill_checks_its_copy_again_when_the_check_fails() {
    let r = replicator(vec![target(0, "")], Faults::NONE);
    let store = r.store();
    store.put(SOURCE, "k", NewObject::plain(10));
    store.put("rep-0", "k", NewObject::plain(3));
    store.fail_after("CopyObject", "HeadObject", 3);
    let summary = sync(&r, BackfillRequest::default(), 1000).await;
    let counts = &summary.targets["rep-0"];
    assert_eq!((counts.copied, counts.failed), (1, 0), "{counts:?}");
    assert_eq!(
        store.object("rep-0", "k").unwrap().content,
        store.object(SOURCE, "k").unwrap().content
    );
}

/// A copy by parts left open at a deadline is not resumed for another version of the source:
/// a source completed by a multipart upload has the Last-Modified of when that upload began,
/// older than the replica's upload although it replaced the source after it.
#[tokio::test(start_paused = true)]
async fn a_resumed_copy_by_parts_never_splices_two_versions() {
    const MIB: u64 = 1024 * 1024;
    let r = {
        let store = SimStore::new(
            3,
            Faults {
                max_latency: Duration::from_millis(40),
                ..Faults::NONE
            },
        );
        store.create_bucket(SOURCE, false);
        store.create_bucket("rep-0", false);
        let mut config = Config::new([SOURCE.to_string()], vec![target(0, "")]);
        config.concurrency = 1;
        config.multipart_threshold = 5 * MIB;
        config.part_size = 5 * MIB;
        Replicator::with_store(config, store)
    };
    let size = 200 * MIB;
    let v1 = r.store().put(SOURCE, "k", NewObject::plain(size));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = Change::created(SOURCE, "k").with_etag(&v1);
    let deadline = Deadline::after(Duration::from_millis(600), Duration::from_millis(100));
    let report = r
        .apply_before(std::slice::from_ref(&first), &deadline)
        .await;
    assert!(
        report[0].targets[0].outcome.is_failure(),
        "{:?}",
        report[0].targets[0].outcome
    );
    assert_eq!(r.store().uploads("rep-0").len(), 1, "left open");
    assert!(r.store().uploads("rep-0")[0].1 >= 1, "with parts of V1");
    // V2, of the same size and part layout, from an upload initiated before the replica's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v2 = r.store().put(
        SOURCE,
        "k",
        NewObject {
            parts: Some(5 * MIB),
            initiated_ago: Duration::from_secs(10),
            ..NewObject::plain(size)
        },
    );
    let second = Change::created(SOURCE, "k").with_etag(&v2);
    let report = r.apply(std::slice::from_ref(&second)).await;
    assert_eq!(report[0].targets[0].outcome, Outcome::Copied);
    let replica = r.store().object("rep-0", "k").unwrap();
    assert_eq!(
        replica.content,
        r.store().object(SOURCE, "k").unwrap().content,
        "the replica holds V2 only"
    );
    assert!(r.store().uploads("rep-0").is_empty());
}

/// An EventBridge delete of `a+b.txt` while `a b.txt` exists: whichever way the service encodes
/// the key, the replica of the deleted object goes and the other object's replica stays.
#[tokio::test(start_paused = true)]
async fn eventbridge_deletes_settle_each_spelling_on_its_own() {
    let r = replicator(vec![target(0, "")], Faults::NONE);
    let store = r.store();
    for key in ["a+b.txt", "a b.txt"] {
        store.put(SOURCE, key, NewObject::plain(3));
        store.put("rep-0", key, NewObject::plain(3));
    }
    let deleted = |key: &str| {
        json!({"source": "aws.s3", "detail-type": "Object Deleted", "region": "us-east-1",
            "detail": {"bucket": {"name": SOURCE}, "object": {"key": key}}})
    };
    // The raw key `a+b.txt` is deleted; its decoded spelling `a b.txt` still exists.
    store.remove(SOURCE, "a+b.txt");
    invocation::handle(&r, &deleted("a+b.txt"), &Deadline::none())
        .await
        .unwrap();
    assert!(
        store.object("rep-0", "a+b.txt").is_none(),
        "deleted replica"
    );
    assert!(store.object("rep-0", "a b.txt").is_some(), "kept replica");
    // The other way: `a b.txt` deleted, delivered form-encoded as `a+b.txt`.
    store.put(SOURCE, "a+b.txt", NewObject::plain(3));
    store.put("rep-0", "a+b.txt", NewObject::plain(3));
    store.remove(SOURCE, "a b.txt");
    invocation::handle(&r, &deleted("a+b.txt"), &Deadline::none())
        .await
        .unwrap();
    assert!(
        store.object("rep-0", "a b.txt").is_none(),
        "deleted replica"
    );
    assert!(store.object("rep-0", "a+b.txt").is_some(), "kept replica");
}

/// A source whose user metadata leaves no room for provenance converges in one delivery,
/// also when the target encrypts with SSE-KMS (the replica's ETag can then never match): the
/// check after the copy knows what it wrote, and later deliveries and syncs recognise the
/// replica by its full-object checksum.
#[tokio::test(start_paused = true)]
async fn a_source_without_room_for_provenance_converges_in_one_delivery() {
    for kms in [false, true] {
        let mut t = target(0, "");
        t.kms_key_id = kms.then(|| "key".to_string());
        let r = replicator(vec![t], Faults::NONE);
        let store = r.store();
        let mut full = NewObject::plain(1000);
        full.metadata.insert("big".into(), "m".repeat(2040));
        let etag = store.put(SOURCE, "k", full);
        let change = Change::created(SOURCE, "k").with_etag(&etag);
        let report = r.apply(std::slice::from_ref(&change)).await;
        assert_eq!(report[0].targets[0].outcome, Outcome::Copied, "kms {kms}");
        assert_eq!(store.applied()["CopyObject"], 1, "kms {kms}: one copy");
        let replica = store.object("rep-0", "k").unwrap();
        assert_eq!(replica.etag == etag, !kms, "kms {kms}");
        // A duplicate and a sync write nothing.
        let again = r.apply(std::slice::from_ref(&change)).await;
        assert_eq!(again[0].targets[0].outcome, Outcome::UpToDate, "kms {kms}");
        let summary = sync(&r, BackfillRequest::default(), 1000).await;
        assert_eq!(summary.targets["rep-0"].up_to_date, 1, "kms {kms}");
        assert_eq!(
            store.applied()["CopyObject"],
            1,
            "kms {kms}: still one copy"
        );
    }
}

/// An archived source waits for its restore without failing the invocation; its
/// `ObjectRestore:Completed` event copies it; a backfill and a verify count it apart.
#[tokio::test(start_paused = true)]
async fn archived_sources_are_replicated_when_their_restore_completes() {
    let r = replicator(vec![target(0, "")], Faults::NONE);
    let store = r.store();
    let etag = store.put(
        SOURCE,
        "cold",
        NewObject {
            storage_class: Some("GLACIER".into()),
            ..NewObject::plain(10)
        },
    );
    let created = json!({"Records": [{"eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": SOURCE}, "object": {"key": "cold", "eTag": etag, "size": 10}}}]});
    let out = invocation::handle(&r, &created, &Deadline::none())
        .await
        .expect("the invocation succeeds");
    assert_eq!(out["outcomes"], json!({"awaiting_restore": 1}));
    assert!(store.object("rep-0", "cold").is_none());
    let summary = sync(&r, BackfillRequest::default(), 1000).await;
    assert_eq!(summary.targets["rep-0"].awaiting_restore, 1);
    assert_eq!(summary.targets["rep-0"].failed, 0);
    let verify = backfill::handle_invocation(
        &r,
        &json!({"mode": "verify", "source_bucket": SOURCE}),
        &Deadline::none(),
    )
    .await
    .unwrap()
    .0;
    assert_eq!(
        verify["targets"]["rep-0"]["awaiting_restore"], 1,
        "{verify}"
    );
    assert_eq!(verify["targets"]["rep-0"]["missing"], 0, "{verify}");
    store.restore(SOURCE, "cold");
    let restored = json!({"Records": [{"eventName": "ObjectRestore:Completed",
        "s3": {"bucket": {"name": SOURCE}, "object": {"key": "cold", "eTag": etag, "size": 10}}}]});
    let out = invocation::handle(&r, &restored, &Deadline::none())
        .await
        .unwrap();
    assert_eq!(out["outcomes"], json!({"copied": 1}));
    let replica = store.object("rep-0", "cold").unwrap();
    assert_eq!(replica.storage_class.as_deref(), Some("GLACIER"));
}

fn kms_target(i: usize) -> Target {
    Target {
        kms_key_id: Some(format!("arn:aws:kms:region-{i}:1:key/k")),
        ..target(i, "")
    }
}

fn verify() -> BackfillRequest {
    BackfillRequest {
        mode: Mode::Verify,
        ..Default::default()
    }
}

/// A replica that a listing, a HEAD and even its provenance show current, but that holds other
/// bytes (written behind the engine's back under SSE-KMS, whose ETags are not digests and may
/// equal anything): verify compares full-object checksums and finds it `different`, and a sync
/// copies it again. Where ETags are digests, a listing alone proves a replica current: verify
/// reads nothing more.
#[tokio::test(start_paused = true)]
async fn a_replica_with_the_sources_etag_and_provenance_but_other_bytes_is_recopied() {
    let r = replicator(vec![kms_target(0), target(1, "")], Faults::NONE);
    let store = r.store();
    let etag = store.put(SOURCE, "k", NewObject::plain(100));
    store.put(SOURCE, "fine", NewObject::plain(50));
    let first = sync(&r, BackfillRequest::default(), 1000).await;
    assert_eq!(first.targets["rep-0"].copied, 2);
    let clean = sync(&r, verify(), 1000).await;
    assert_eq!(clean.targets["rep-0"].up_to_date, 2, "{clean:?}");
    assert_eq!(clean.targets["rep-1"].up_to_date, 2, "{clean:?}");

    let source = store.object(SOURCE, "k").unwrap();
    let mut metadata = source.metadata.clone();
    metadata.insert(s3fanout::provenance::SOURCE_ETAG.into(), etag.clone());
    metadata.insert(s3fanout::provenance::SOURCE_BUCKET.into(), SOURCE.into());
    store.put(
        "rep-0",
        "k",
        NewObject {
            kms: true,
            kms_etag: Some(etag.clone()),
            headers: source.headers.clone(),
            metadata,
            ..NewObject::plain(100)
        },
    );
    let forged = store.object("rep-0", "k").unwrap();
    assert_eq!(
        (forged.etag.as_str(), forged.content.len()),
        (etag.as_str(), 100)
    );
    assert_ne!(forged.content, source.content);

    let before = store.requests();
    let found = sync(&r, verify(), 1000).await;
    let after = store.requests();
    let counts = &found.targets["rep-0"];
    assert_eq!((counts.different, counts.up_to_date), (1, 1), "{counts:?}");
    assert_eq!(found.targets["rep-1"].up_to_date, 2);
    assert!(found
        .examples
        .iter()
        .any(|e| e.target == "rep-0" && e.key == "k" && e.what == "different"));
    // Two objects at the KMS target, each read on both sides; none at the other.
    let heads = after["HeadObject"] - before["HeadObject"];
    assert_eq!(heads, 4, "{after:?}");

    let fixed = sync(&r, BackfillRequest::default(), 1000).await;
    assert_eq!(fixed.targets["rep-0"].copied, 1, "{fixed:?}");
    assert_eq!(store.object("rep-0", "k").unwrap().content, source.content);
    let again = sync(&r, verify(), 1000).await;
    assert_eq!(again.targets["rep-0"].up_to_date, 2, "{again:?}");
    assert_eq!(again.targets["rep-0"].different, 0);
}

/// An object with no full-object checksum (written before S3 stored one by default) whose
/// replica is under SSE-KMS: nothing proves the replica's bytes, and verify counts it
/// `unverifiable` instead of passing it; a sync leaves it (its provenance is all there is).
/// With a source checksum in CRC32 (the SDKs' default), the replica's is computed in CRC32 too
/// and the two compare.
#[tokio::test(start_paused = true)]
async fn objects_without_checksums_on_a_kms_target_are_unverifiable() {
    let r = replicator(vec![kms_target(0), target(1, "")], Faults::NONE);
    let store = r.store();
    store.put(
        SOURCE,
        "old",
        NewObject {
            without_checksum: true,
            ..NewObject::plain(100)
        },
    );
    store.put(
        SOURCE,
        "crc32",
        NewObject {
            checksum_algorithm: Some(s3fanout::core::object::ChecksumAlgorithm::Crc32),
            ..NewObject::plain(100)
        },
    );
    sync(&r, BackfillRequest::default(), 1000).await;
    let summary = sync(&r, verify(), 1000).await;
    let kms = &summary.targets["rep-0"];
    assert_eq!(
        (kms.unverifiable, kms.up_to_date, kms.different),
        (1, 1, 0),
        "{kms:?}"
    );
    // Where ETags are digests, equal ones prove the bytes without any checksum.
    let plain = &summary.targets["rep-1"];
    assert_eq!((plain.unverifiable, plain.up_to_date), (0, 2), "{plain:?}");
    assert!(summary
        .examples
        .iter()
        .any(|e| e.key == "old" && e.what.starts_with("unverifiable")));
    assert!(!summary.has_problems());
    let before = store.requests();
    let again = sync(&r, BackfillRequest::default(), 1000).await;
    assert_eq!(again.targets["rep-0"].up_to_date, 2, "{again:?}");
    assert_eq!(store.requests().get("CopyObject"), before.get("CopyObject"));
}

/// A copy by parts declares the source's full-object checksum on completion, so S3 itself
/// refuses an upload whose bytes are not the source's: here a resumed upload that holds a part
/// of another object (its provenance and start time say it may be resumed). The refusal is not
/// a success: the upload is aborted and the object copied afresh.
#[tokio::test(start_paused = true)]
async fn a_copy_by_parts_whose_bytes_are_not_the_sources_never_completes() {
    const MIB: u64 = 1024 * 1024;
    let r = replicator(vec![target(0, "")], Faults::NONE);
    let store = r.store();
    let etag = store.put(SOURCE, "big", NewObject::plain(100 * MIB));
    store.put(SOURCE, "other", NewObject::plain(100 * MIB));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let source = store.object(SOURCE, "big").unwrap();
    let mut metadata = source.metadata.clone();
    metadata.insert(s3fanout::provenance::SOURCE_ETAG.into(), etag.clone());
    metadata.insert(s3fanout::provenance::SOURCE_BUCKET.into(), SOURCE.into());
    let attributes = replica_attributes(&source.headers, metadata);
    use s3fanout::Store;
    let upload = store
        .create_upload(at("rep-0", "big"), &attributes, &[])
        .await
        .unwrap();
    let other = store.object(SOURCE, "other").unwrap();
    store
        .copy_part(&s3fanout::store::PartCopyRequest {
            source: at(SOURCE, "other"),
            source_etag: &other.etag,
            destination: at("rep-0", "big"),
            upload_id: &upload,
            part_number: 1,
            first: 0,
            last: 64 * MIB - 1,
            range: s3fanout::store::CopyRange::Bytes,
        })
        .await
        .unwrap();
    let before = store.requests();
    let summary = sync(&r, BackfillRequest::default(), 1000).await;
    let after = store.requests();
    assert_eq!(summary.targets["rep-0"].copied, 2, "{summary:?}");
    assert_eq!(summary.targets["rep-0"].failed, 0, "{summary:?}");
    let replica = store.object("rep-0", "big").unwrap();
    assert_eq!(replica.content, source.content);
    assert!(store.uploads("rep-0").is_empty(), "no upload left");
    let completes = after["CompleteMultipartUpload"]
        - before.get("CompleteMultipartUpload").copied().unwrap_or(0);
    assert_eq!(completes, 3, "two landed, and the one refused");
    assert!(
        store.trace().iter().any(|l| l.contains("BadDigest")),
        "the refusal is S3's"
    );
}

/// The same bytes written to a KMS source again get a new ETag: the replica, whose bytes
/// already match (equal checksums), is written again so that its provenance names the
/// source's current ETag, which later decisions that read only the provenance rely on.
#[tokio::test(start_paused = true)]
async fn the_same_bytes_written_again_under_kms_bring_the_replicas_provenance_to_the_new_etag() {
    let r = replicator(vec![target(0, "")], Faults::NONE);
    let store = r.store();
    store.encrypt_by_default(SOURCE);
    let first = store.put(SOURCE, "k", NewObject::plain(0));
    let created = |etag: &str| Change::created(SOURCE, "k").with_etag(etag);
    r.apply(&[created(&first)]).await;
    let second = store.put(SOURCE, "k", NewObject::plain(0));
    assert_ne!(first, second, "a KMS ETag differs on every write");
    let report = r.apply(&[created(&second)]).await;
    assert_eq!(report[0].targets[0].outcome, Outcome::Copied);
    let replica = store.object("rep-0", "k").unwrap();
    assert_eq!(
        replica.metadata.get(s3fanout::provenance::SOURCE_ETAG),
        Some(&second)
    );
    let again = r.apply(&[created(&second)]).await;
    assert_eq!(again[0].targets[0].outcome, Outcome::UpToDate);
}

/// An EventBridge change of `a+b` retried after `a+b` was deleted resolves to `a b`, the
/// spelling that still exists: a copy by parts an earlier attempt left open for `a+b` at its
/// deadline is aborted then, since no later change of `a+b` may ever come to it.
#[tokio::test(start_paused = true)]
async fn a_retried_eventbridge_change_aborts_the_upload_left_for_the_spelling_now_gone() {
    const MIB: u64 = 1024 * 1024;
    let mut config = Config::new([SOURCE.to_string()], vec![target(0, "")]);
    config.multipart_threshold = 5 * MIB;
    config.part_size = 5 * MIB;
    let store = SimStore::new(7, Faults::NONE);
    store.create_bucket(SOURCE, false);
    store.create_bucket("rep-0", false);
    let r = Replicator::with_store(config, store);
    let store = r.store();
    let etag = store.put(SOURCE, "a+b", NewObject::plain(20 * MIB));
    let source = store.object(SOURCE, "a+b").unwrap();
    let attributes = replica_attributes(&source.headers, source.metadata.clone());
    use s3fanout::Store;
    // What the first attempt left at its deadline.
    store
        .create_upload(at("rep-0", "a+b"), &attributes, &[])
        .await
        .unwrap();
    store.remove(SOURCE, "a+b");
    store.put(SOURCE, "a b", NewObject::plain(3));
    let event = json!({"source": "aws.s3", "detail-type": "Object Created", "region": "us-east-1",
        "detail": {"bucket": {"name": SOURCE}, "reason": "PutObject",
            "object": {"key": "a+b", "size": 20 * MIB, "etag": etag}}});
    invocation::handle(&r, &event, &Deadline::none())
        .await
        .unwrap();
    assert!(store.object("rep-0", "a b").is_some(), "the spelling found");
    assert!(
        store.uploads("rep-0").is_empty(),
        "{:?}",
        store.uploads("rep-0")
    );
}

/// A copy by parts for an event, stopped by a part that failed transiently, keeps its upload:
/// the change's retry resumes it and copies only the parts still missing, so that a target
/// failing some requests still sees every attempt make progress.
#[tokio::test(start_paused = true)]
async fn an_event_copy_by_parts_stopped_by_a_failure_is_resumed_by_the_retry() {
    const MIB: u64 = 1024 * 1024;
    let mut config = Config::new([SOURCE.to_string()], vec![target(0, "")]);
    config.multipart_threshold = 5 * MIB;
    config.part_size = 5 * MIB;
    config.concurrency = 1;
    let store = SimStore::new(7, Faults::NONE);
    store.create_bucket(SOURCE, false);
    store.create_bucket("rep-0", false);
    let r = Replicator::with_store(config, store);
    let store = r.store();
    let etag = store.put(SOURCE, "big", NewObject::plain(40 * MIB));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let change = Change::created(SOURCE, "big").with_etag(&etag);
    // The first part lands; the next one fails.
    store.fail_after("UploadPartCopy", "UploadPartCopy", 1);
    let first = r.apply(std::slice::from_ref(&change)).await;
    assert!(first[0].targets[0].outcome.is_failure());
    let open = store.uploads("rep-0");
    assert_eq!(open.len(), 1, "left open: {open:?}");
    let (_, held) = open[0];
    assert!(held >= 1, "with the parts copied: {open:?}");
    let before = store.requests().get("UploadPartCopy").copied().unwrap_or(0);
    let second = r.apply(std::slice::from_ref(&change)).await;
    assert_eq!(second[0].targets[0].outcome, Outcome::Copied);
    let copied = store.requests()["UploadPartCopy"] - before;
    assert_eq!(copied, 8 - held as u64, "only the missing parts");
    assert_eq!(
        store.object("rep-0", "big").unwrap().content,
        store.object(SOURCE, "big").unwrap().content
    );
    assert!(store.uploads("rep-0").is_empty());
}

/// A sync copies what its listing shows plain: one `CopyObject` per target, no provenance.
/// Where neither bucket is configured as a website (the only place S3 uses redirect
/// locations) nothing else is read; otherwise the source's `HeadObject` runs beside the
/// copies and what `COPY` left out (a website redirect) is written a second time. A listed
/// storage class the copy would not keep is copied from the source's headers at once.
#[tokio::test(start_paused = true)]
async fn a_sync_copies_plain_from_its_listing_and_writes_again_what_copy_left_out() {
    for website in [false, true] {
        let r = {
            let store = SimStore::new(7, Faults::NONE);
            store.create_bucket(SOURCE, false);
            store.set_website(SOURCE, website);
            let targets = vec![target(0, ""), target(1, "")];
            for t in &targets {
                store.create_bucket(&t.bucket, false);
            }
            // Deletes off: a create needs no check after it, so the requests are the copy's own.
            Replicator::with_store(Config::new([SOURCE.to_string()], targets), store)
        };
        let store = r.store();
        let mut tagged = NewObject::plain(10);
        tagged.tags = vec![s3fanout::core::object::Tag {
            key: "t".into(),
            value: "v".into(),
        }];
        tagged.metadata.insert("owner".into(), "me".into());
        store.put(SOURCE, "plain", tagged);
        let mut redirect = NewObject::plain(10);
        redirect.headers.website_redirect = Some("/elsewhere".into());
        store.put(SOURCE, "redirect", redirect);
        let mut ia = NewObject::plain(10);
        ia.storage_class = Some("STANDARD_IA".into());
        store.put(SOURCE, "ia", ia);
        let before = store.requests();
        let summary = sync(&r, BackfillRequest::default(), 1000).await;
        let after = store.requests();
        let made = |kind: &str| {
            after.get(kind).copied().unwrap_or(0) - before.get(kind).copied().unwrap_or(0)
        };
        for t in ["rep-0", "rep-1"] {
            assert_eq!(summary.targets[t].copied, 3, "{summary:?}");
            for key in ["plain", "redirect", "ia"] {
                let (s, mut c) = (
                    store.object(SOURCE, key).unwrap(),
                    store.object(t, key).unwrap(),
                );
                if !website {
                    assert_eq!(c.headers.website_redirect, None, "{t}/{key}: not copied");
                    c.headers.website_redirect = s.headers.website_redirect.clone();
                }
                assert_eq!(
                    (&c.content, &c.headers, &c.tags, &c.storage_class),
                    (&s.content, &s.headers, &s.tags, &s.storage_class),
                    "{t}/{key}"
                );
            }
            let plain = store.object(t, "plain").unwrap();
            assert_eq!(
                plain.metadata,
                store.object(SOURCE, "plain").unwrap().metadata,
                "no provenance"
            );
        }
        assert_eq!(made("GetBucketNotificationConfiguration"), 2, "{after:?}");
        // Read at once for the source and the first target; a website among them settles it.
        assert_eq!(
            made("GetBucketWebsite"),
            if website { 2 } else { 3 },
            "{after:?}"
        );
        if website {
            // One HEAD per object, beside the plain copies or before the copy of `ia`; the
            // second write of `redirect` is an overwrite, checked with both sides' tags.
            assert_eq!(made("HeadObject"), 3 + 1, "{after:?}");
            assert_eq!(made("GetObjectTagging"), 1 + 2, "{after:?}");
            // Per target: plain copies of `plain` and `redirect`, the second write of
            // `redirect`, one copy of `ia`.
            assert_eq!(made("CopyObject"), 2 * 4, "{after:?}");
        } else {
            // Only `ia` is read: its class is one the copy would not keep.
            assert_eq!(made("HeadObject"), 1, "{after:?}");
            assert_eq!(made("GetObjectTagging"), 0, "{after:?}");
            assert_eq!(made("CopyObject"), 2 * 3, "{after:?}");
            let replica = store.object("rep-0", "redirect").unwrap();
            assert!(!replica
                .metadata
                .contains_key(s3fanout::provenance::SOURCE_ETAG));
        }
    }
}
