//! The scheduled reconciliation against the local S3 server, with the payload the template's
//! schedule sends: on synced buckets it lists and writes its own run state, nothing else; on
//! drifted replicas (objects deleted, edited and added behind the engine's back, a source
//! object whose notification was lost) it repairs every one, and its drift metrics and its
//! summary object say so per target. Run with `--nocapture` to see the figures.

use std::collections::BTreeMap;

use fault_proxy::{FaultProxy, Seen};
use integration::*;
use s3fanout::backfill::Summary;
use s3fanout::lambda::backfill::handle_invocation_as;
use s3fanout::lambda::metrics;
use s3fanout::{Deadline, Replicator};
use serde_json::{json, Value};

/// What the template's schedule sends (ReplicateDeletes=true), on the given day.
fn scheduled(day: &str, summary_bucket: &str) -> Value {
    json!({
        "mode": "sync",
        "auto_continue": true,
        "delete": true,
        "run_id": format!("reconcile-{day}T03:00:00Z"),
        "summary_to": format!("s3://{summary_bucket}/.s3fanout/reconcile/"),
    })
}

/// The S3 operation of a request, from what the proxy saw.
fn kind(seen: &Seen) -> &'static str {
    let query = seen.query.as_str();
    match seen.method.as_str() {
        "GET" if query.contains("list-type=2") => "ListObjectsV2",
        "GET" if query.contains("uploads") => "ListMultipartUploads",
        "GET" if query.contains("tagging") => "GetObjectTagging",
        "GET" => "GetObject",
        "HEAD" => "HeadObject/HeadBucket",
        "PUT" if seen.copy => "CopyObject",
        "PUT" if query.contains("tagging") => "PutObjectTagging",
        "PUT" => "PutObject",
        "DELETE" => "DeleteObject",
        _ => "other",
    }
}

fn by_kind(seen: &[Seen]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for s in seen {
        *counts.entry(kind(s)).or_default() += 1;
    }
    counts
}

/// Runs the scheduled invocation to the end of its chain; the last answer and the drift
/// metrics its end emitted, as (target, DriftFound, DriftRepaired, BackfillFailed).
async fn run(replicator: &Replicator, payload: Value) -> (Value, Vec<(String, u64, u64, u64)>) {
    metrics::capture();
    let mut payload = payload;
    for hop in 0..20 {
        let (answer, next) = handle_invocation_as(
            replicator,
            &payload,
            &Deadline::none(),
            &format!("req-{hop}"),
        )
        .await
        .unwrap();
        let Some(next) = next.into_iter().next() else {
            let figures = metrics::take_captured()
                .iter()
                .map(|l| {
                    let n = |name: &str| l[name].as_u64().unwrap();
                    let target = l["TargetBucket"].as_str().unwrap().to_string();
                    (
                        target,
                        n("DriftFound"),
                        n("DriftRepaired"),
                        n("BackfillFailed"),
                    )
                })
                .collect();
            return (answer, figures);
        };
        payload = serde_json::to_value(next).unwrap();
    }
    panic!("the run did not end");
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_reconciliation_lists_only_when_in_sync_and_repairs_drift_no_event_announced() {
    let setup = Setup::new(3).await;
    let src = setup.source_client();
    for i in 0..30 {
        put(&src, &setup.source, &format!("k{i:03}"), b"some data").await;
    }
    let first = setup.targets[0].bucket.clone();
    let direct = setup.replicator(setup.config()).await;
    let (answer, figures) = run(&direct, scheduled("2026-05-01", &first)).await;
    assert_eq!(answer["done"], true, "{answer}");
    println!("day 1, nothing replicated yet: (target, DriftFound, DriftRepaired, BackfillFailed) {figures:?}");
    assert!(
        figures.iter().all(|f| (f.1, f.2, f.3) == (30, 30, 0)),
        "{figures:?}"
    );

    // Day 2, in sync: listings, and the run's marker and summary.
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    let observed = Replicator::new(setup.config(), clients_via(&proxy.endpoint(), 3).await);
    let (answer, figures) = run(&observed, scheduled("2026-05-02", &first)).await;
    let seen = proxy.take_seen();
    let kinds = by_kind(&seen);
    println!("day 2, in sync: requests by kind {kinds:?}; drift {figures:?}");
    assert_eq!(answer["done"], true, "{answer}");
    assert!(
        figures.iter().all(|f| (f.1, f.2, f.3) == (0, 0, 0)),
        "{figures:?}"
    );
    assert_eq!(
        kinds,
        BTreeMap::from([("ListObjectsV2", 4), ("PutObject", 2)]),
        "one page per bucket; the marker's claim and the summary: {seen:?}"
    );
    assert_eq!(answer["list_requests"], 4);
    let data_writes: Vec<_> = seen
        .iter()
        .filter(|s| s.method != "GET" && s.bucket != first)
        .collect();
    assert!(data_writes.is_empty(), "{data_writes:?}");

    // Day 3: drift behind the engine's back.
    let [t0, t1, t2] = [0, 1, 2].map(|i| setup.targets[i].clone());
    setup
        .target_client(&t0)
        .delete_object()
        .bucket(&t0.bucket)
        .key("k007")
        .send()
        .await
        .unwrap();
    put(
        &setup.target_client(&t1),
        &t1.bucket,
        "k011",
        b"edited by hand",
    )
    .await;
    put(
        &setup.target_client(&t2),
        &t2.bucket,
        "stray",
        b"not in the source",
    )
    .await;
    put(
        &src,
        &setup.source,
        "late/unannounced",
        b"its notification was lost",
    )
    .await;
    let (answer, figures) = run(&observed, scheduled("2026-05-03", &first)).await;
    let kinds = by_kind(&proxy.take_seen());
    println!("day 3, drifted: drift {figures:?}; requests by kind {kinds:?}");
    for target in &setup.targets {
        println!("  {}: {}", target.bucket, answer["targets"][&target.bucket]);
    }
    assert_eq!(answer["done"], true, "{answer}");
    let expected: Vec<_> = [&t0, &t1, &t2]
        .iter()
        .map(|t| (t.bucket.clone(), 2, 2, 0))
        .collect();
    let mut figures = figures;
    figures.sort();
    let mut expected = expected;
    expected.sort();
    assert_eq!(figures, expected);
    assert_eq!(answer["targets"][&t2.bucket]["deleted"], 1, "{answer}");
    for key in ["k007", "k011", "late/unannounced"] {
        for target in &setup.targets {
            assert_replica(&setup, key, target).await;
        }
    }
    let stray = setup
        .target_client(&t2)
        .head_object()
        .bucket(&t2.bucket)
        .key("stray")
        .send()
        .await;
    assert!(stray.is_err(), "the extraneous object is deleted");

    // The summary object says what the metrics say.
    let summary = snapshot(
        &setup.target_client(&t0),
        &first,
        ".s3fanout/reconcile/reconcile-2026-05-03T03:00:00Z.json",
    )
    .await
    .expect("the run's summary")
    .body;
    let summary: Summary = serde_json::from_slice(&summary).unwrap();
    for (bucket, found, repaired, failed) in &figures {
        let counts = &summary.targets[bucket];
        assert_eq!(
            (counts.drift_found, counts.drift_repaired, counts.failed),
            (*found, *repaired, *failed)
        );
    }
}
