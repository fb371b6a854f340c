//! The requests each kind of change sends, counted by a recording proxy in front of the local
//! S3 server: what the README's table of requests per change claims.

use fault_proxy::{FaultProxy, Seen};
use integration::*;
use s3fanout::{Outcome, Replicator};

/// (reads, copies, create-only copies, other) among the requests seen.
fn kinds(seen: &[Seen]) -> (usize, usize, usize, usize) {
    let reads = seen
        .iter()
        .filter(|s| matches!(s.method.as_str(), "HEAD" | "GET"))
        .count();
    let copies = seen.iter().filter(|s| s.copy).count();
    let create_only = seen.iter().filter(|s| s.copy && s.create_only).count();
    (reads, copies, create_only, seen.len() - reads - copies)
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn each_kind_of_change_sends_the_requests_the_readme_counts() {
    const N: usize = 3;
    let setup = Setup::new(N).await;
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    let replicator = Replicator::new(setup.config(), clients_via(&proxy.endpoint(), 1).await);
    let src = setup.source_client();
    // At cold start: one read of each target's notification configuration, which says its
    // replicas may be plain copies (no deployment copies back from a target that announces
    // nothing).
    proxy.take_seen();
    replicator.prepare().await;
    let seen = proxy.take_seen();
    println!("cold start: {:?}", kinds(&seen));
    assert_eq!(kinds(&seen), (N, 0, 0, 0), "{seen:?}");
    assert!(
        seen.iter().all(|s| s.query.contains("notification")),
        "{seen:?}"
    );
    let apply = |etag: String, size: usize| {
        let replicator = &replicator;
        let source = setup.source.clone();
        async move {
            let report = replicator
                .apply(&[uploaded(&source, "k", &etag, size)])
                .await;
            report[0]
                .targets
                .iter()
                .map(|t| t.outcome.clone())
                .collect::<Vec<_>>()
        }
    };

    // A new object: N plain copies made only if nothing is there, pinned to the announced
    // ETag, and one read of the source beside them; headers, metadata and tags are S3's own
    // copy of the source's.
    let etag = put(&src, &setup.source, "k", b"first").await;
    proxy.take_seen();
    assert!(apply(etag.clone(), 5)
        .await
        .iter()
        .all(|o| *o == Outcome::Copied));
    let seen = proxy.take_seen();
    println!("new object: {:?}", kinds(&seen));
    assert_eq!(kinds(&seen), (1, N, N, 0), "{seen:?}");
    for copy in seen.iter().filter(|s| s.copy) {
        assert_eq!(
            copy.amz.get("x-amz-metadata-directive").map(String::as_str),
            Some("COPY"),
            "{copy:?}"
        );
        assert_eq!(
            copy.amz
                .get("x-amz-copy-source-if-match")
                .map(|e| e.trim_matches('"')),
            Some(etag.trim_matches('"')),
            "{copy:?}"
        );
    }
    for target in &setup.targets {
        assert_replica(&setup, "k", target).await;
    }

    // The same event again: the copies are refused, the replicas read; nothing written.
    assert!(apply(etag, 5).await.iter().all(|o| *o == Outcome::UpToDate));
    let seen = proxy.take_seen();
    println!("duplicate: {:?}", kinds(&seen));
    assert_eq!(kinds(&seen), (1 + N, N, N, 0), "{seen:?}");

    // An overwrite: refused, read, copied, then checked with tags (source reads shared).
    let etag = put(&src, &setup.source, "k", b"second, longer").await;
    assert!(apply(etag, 14).await.iter().all(|o| *o == Outcome::Copied));
    let seen = proxy.take_seen();
    println!("overwrite: {:?}", kinds(&seen));
    assert_eq!(kinds(&seen), (1 + N + 2 + N, 2 * N, N, 0), "{seen:?}");
    for target in &setup.targets {
        assert_replica(&setup, "k", target).await;
    }

    // With deletes propagating, a created replica is checked: one more read of the source.
    let mut config = setup.config();
    config.replicate_deletes = true;
    let replicator = Replicator::new(config, clients_via(&proxy.endpoint(), 1).await);
    replicator.prepare().await;
    let etag = put(&src, &setup.source, "k2", b"third").await;
    proxy.take_seen();
    let report = replicator
        .apply(&[uploaded(&setup.source, "k2", &etag, 5)])
        .await;
    assert!(report[0]
        .targets
        .iter()
        .all(|t| t.outcome == Outcome::Copied));
    let seen = proxy.take_seen();
    println!("new object, deletes propagate: {:?}", kinds(&seen));
    assert_eq!(kinds(&seen), (2, N, N, 0), "{seen:?}");
}
