//! Self-continuing backfill runs against the local S3 server: the conditional writes that let
//! only one chain of a run proceed, on real requests, and a whole chain with its summary.

use std::time::Duration;

use integration::*;
use s3fanout::backfill::chain::RESERVED_PREFIX;
use s3fanout::backfill::BackfillRequest;
use s3fanout::lambda::backfill::handle_invocation_as;
use s3fanout::store::{ObjectAt, WriteCondition};
use s3fanout::{Deadline, Store};
use serde_json::{json, Value};

/// `If-None-Match: *` and `If-Match` on PutObject as S3 documents them: 412 when the condition
/// fails, 404 for `If-Match` on a missing key.
#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn small_objects_honour_write_conditions_over_the_wire() {
    let setup = Setup::new(1).await;
    let replicator = setup.replicator(setup.config()).await;
    let store = replicator.store();
    let target = &setup.targets[0];
    let at = |key: &'static str| ObjectAt {
        bucket: &target.bucket,
        region: Some(&target.region),
        key,
    };
    let marker = at(".s3fanout/runs/wire");

    assert_eq!(store.get_small_object(marker).await.unwrap(), None);
    let first = store
        .put_small_object(marker, b"{\"hop\":0}", &WriteCondition::Absent)
        .await
        .unwrap();
    let again = store
        .put_small_object(marker, b"{\"hop\":0}", &WriteCondition::Absent)
        .await
        .unwrap_err();
    assert!(again.is_precondition_failed(), "{again:?}");

    let second = store
        .put_small_object(
            marker,
            b"{\"hop\":1}",
            &WriteCondition::Matches(first.clone()),
        )
        .await
        .unwrap();
    assert_ne!(first, second);
    let stale = store
        .put_small_object(marker, b"{\"hop\":1}", &WriteCondition::Matches(first))
        .await
        .unwrap_err();
    assert!(stale.is_precondition_failed(), "{stale:?}");

    let read = store.get_small_object(marker).await.unwrap().unwrap();
    assert_eq!(read.body, b"{\"hop\":1}");
    assert_eq!(read.etag, second);

    let missing = store
        .put_small_object(
            at(".s3fanout/runs/none"),
            b"{}",
            &WriteCondition::Matches(second),
        )
        .await
        .unwrap_err();
    assert!(
        missing.is_missing_object() || missing.is_precondition_failed(),
        "{missing:?}"
    );
}

/// A chain over the local server: hops split by a short deadline, a duplicated hop stopped,
/// the summary written to the operator's bucket, the marker left out of verify.
#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_chain_claims_each_hop_once_and_writes_its_summary() {
    let setup = Setup::new(2).await;
    let src = setup.source_client();
    for i in 0..90 {
        put(&src, &setup.source, &format!("k{i:03}"), b"data").await;
    }
    let ops = unique("ops");
    create_bucket(&setup.clients, &ops, "us-east-1").await;
    let mut config = setup.config();
    config.concurrency = 2;
    let replicator = setup.replicator(config).await;

    let summary_to = format!("s3://{ops}/backfills/");
    let mut payload =
        json!({"auto_continue": true, "run_id": "wire-run", "summary_to": summary_to});
    let mut hops = 0;
    let mut duplicate_checked = false;
    let last: Value = loop {
        hops += 1;
        assert!(hops < 60, "no convergence");
        let deadline = Deadline::after(Duration::from_millis(600), Duration::from_millis(150));
        let (answer, next) =
            handle_invocation_as(&replicator, &payload, &deadline, &format!("inv-{hops}"))
                .await
                .unwrap();
        assert_eq!(
            answer["summary_object"],
            format!("{summary_to}{}.json", answer["run_id"].as_str().unwrap()),
            "{answer}"
        );
        let Some(next) = next.into_iter().next() else {
            break answer;
        };
        let next = serde_json::to_value(&next).unwrap();
        if !duplicate_checked {
            // The same hop delivered twice: the first delivery claims it, the second stops.
            let (claimed, _) =
                handle_invocation_as(&replicator, &next, &deadline_now(), "first-delivery")
                    .await
                    .unwrap();
            assert!(
                claimed
                    .get("stopped")
                    .is_none_or(|s| s["reason"] == "no_progress"),
                "{claimed}"
            );
            let (duplicate, again) =
                handle_invocation_as(&replicator, &next, &deadline_now(), "second-delivery")
                    .await
                    .unwrap();
            assert_eq!(duplicate["stopped"]["reason"], "superseded", "{duplicate}");
            assert!(again.is_empty());
            duplicate_checked = true;
            // The chain goes on from a fresh start under another run id.
            payload =
                json!({"auto_continue": true, "run_id": "wire-run-2", "summary_to": summary_to});
            continue;
        }
        payload = next;
    };
    assert!(duplicate_checked, "the deadline should have split the run");
    assert_eq!(last["done"], true, "{last}");

    let body = setup
        .source_client()
        .get_object()
        .bucket(&ops)
        .key("backfills/wire-run-2.json")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let written: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(written["done"], true);
    assert_eq!(written["run_id"], "wire-run-2");

    let verify: BackfillRequest = serde_json::from_value(json!({"mode": "verify"})).unwrap();
    let (report, _) = handle_invocation_as(
        &replicator,
        &serde_json::to_value(&verify).unwrap(),
        &Deadline::none(),
        "verify",
    )
    .await
    .unwrap();
    let first = &setup.targets[0].bucket;
    assert_eq!(report["targets"][first]["extraneous"], 0, "{report}");
    assert_eq!(report["targets"][first]["missing"], 0, "{report}");
    let markers = setup
        .target_client(&setup.targets[0])
        .list_objects_v2()
        .bucket(first)
        .prefix(RESERVED_PREFIX)
        .send()
        .await
        .unwrap();
    assert_eq!(markers.contents().len(), 2, "one marker per run");
}

/// A deadline that leaves no time: the hop claims and stops at once.
fn deadline_now() -> Deadline {
    Deadline::at(tokio::time::Instant::now(), Duration::from_millis(100))
}
