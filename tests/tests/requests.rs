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
    let apply = |etag: String| {
        let replicator = &replicator;
        let source = setup.source.clone();
        async move {
            let report = replicator
                .apply(&[created(&source, "k", Some(&etag))])
                .await;
            report[0]
                .targets
                .iter()
                .map(|t| t.outcome.clone())
                .collect::<Vec<_>>()
        }
    };

    // A new object: one read, then N copies made only if nothing is there.
    let etag = put(&src, &setup.source, "k", b"first").await;
    proxy.take_seen();
    assert!(apply(etag.clone())
        .await
        .iter()
        .all(|o| *o == Outcome::Copied));
    let seen = proxy.take_seen();
    println!("new object: {:?}", kinds(&seen));
    assert_eq!(kinds(&seen), (1, N, N, 0), "{seen:?}");

    // The same event again: the copies are refused, the replicas read; nothing written.
    assert!(apply(etag).await.iter().all(|o| *o == Outcome::UpToDate));
    let seen = proxy.take_seen();
    println!("duplicate: {:?}", kinds(&seen));
    assert_eq!(kinds(&seen), (1 + N, N, N, 0), "{seen:?}");

    // An overwrite: refused, read, copied, then checked with tags (source reads shared).
    let etag = put(&src, &setup.source, "k", b"second, longer").await;
    assert!(apply(etag).await.iter().all(|o| *o == Outcome::Copied));
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
    let etag = put(&src, &setup.source, "k2", b"third").await;
    proxy.take_seen();
    let report = replicator
        .apply(&[created(&setup.source, "k2", Some(&etag))])
        .await;
    assert!(report[0]
        .targets
        .iter()
        .all(|t| t.outcome == Outcome::Copied));
    let seen = proxy.take_seen();
    println!("new object, deletes propagate: {:?}", kinds(&seen));
    assert_eq!(kinds(&seen), (2, N, N, 0), "{seen:?}");
}
