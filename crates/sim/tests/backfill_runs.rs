//! Backfill runs over the simulated store, with virtual time: self-continuing chains that stop
//! (no progress, hop limit, a second chain of the same run, a deleted marker), the summary
//! written where the operator says, the continuation's size with 1,024-byte keys, and verify
//! and dry run stopping at the deadline like sync.

use std::time::Duration;

use s3fanout::backfill::chain::RESERVED_PREFIX;
use s3fanout::backfill::{run_paged, BackfillRequest, Mode, StopReason, Summary};
use s3fanout::lambda::backfill::handle_invocation_as;
use s3fanout::store::ObjectAt;
use s3fanout::{Config, Deadline, Replicator, Store, Target};
use s3fanout_sim::{Faults, NewObject, SimStore};
use serde_json::{json, Value};
use tokio::time::Instant;

const SOURCE: &str = "src";
const OPS: &str = "ops-bucket";

fn target(i: usize) -> Target {
    Target {
        bucket: format!("rep-{i}"),
        region: format!("region-{i}"),
        prefix: String::new(),
        storage_class: None,
        kms_key_id: None,
    }
}

fn replicator(targets: usize, latency_ms: u64, concurrency: usize) -> Replicator<SimStore> {
    let store = SimStore::new(
        11,
        Faults {
            max_latency: Duration::from_millis(latency_ms),
            ..Faults::NONE
        },
    );
    store.create_bucket(SOURCE, false);
    store.create_bucket(OPS, false);
    let targets: Vec<Target> = (0..targets).map(target).collect();
    for t in &targets {
        store.create_bucket(&t.bucket, false);
    }
    let mut config = Config::new([SOURCE.to_string()], targets);
    config.concurrency = concurrency;
    Replicator::with_store(config, store)
}

fn fill(r: &Replicator<SimStore>, n: usize) {
    for i in 0..n {
        r.store()
            .put(SOURCE, &format!("k{i:04}"), NewObject::plain(10));
    }
}

/// One invocation of a run that does not split, as Lambda makes it: the answer as JSON, and
/// the next request.
async fn invoke(
    r: &Replicator<SimStore>,
    payload: &Value,
    deadline: Deadline,
    invocation: &str,
) -> (Value, Option<BackfillRequest>) {
    let (answer, mut next) = handle_invocation_as(r, payload, &deadline, invocation)
        .await
        .unwrap();
    assert!(
        next.len() <= 1,
        "one hop continues with one request: {next:?}"
    );
    (answer, next.pop())
}

fn window() -> Deadline {
    Deadline::after(Duration::from_millis(300), Duration::from_millis(50))
}

fn reason(answer: &Value) -> Option<StopReason> {
    serde_json::from_value(answer["stopped"]["reason"].clone()).ok()
}

fn marker(r: &Replicator<SimStore>, run_id: &str) -> Option<String> {
    r.store()
        .object("rep-0", &format!("{RESERVED_PREFIX}runs/{run_id}"))
        .map(|o| o.etag)
}

/// A chain that stops making progress stops continuing, says why, and keeps its continuation
/// so that an operator can resume it.
#[tokio::test(start_paused = true)]
async fn a_run_without_progress_stops_and_says_why() {
    let r = replicator(2, 30, 4);
    fill(&r, 60);
    let start = json!({"auto_continue": true, "run_id": "photos-2026"});
    let (first, next) = invoke(&r, &start, window(), "inv-0").await;
    let next = next.expect("the first hop made progress and continues");
    let hop = next.continuation.as_ref().unwrap().run.clone().unwrap();
    println!(
        "hop 0: done {}, copied {}, continues after {:?} as hop {}",
        first["done"],
        first["targets"]["rep-0"]["copied"],
        next.continuation.as_ref().unwrap().start_after,
        hop.hop
    );
    assert_eq!((hop.run_id.as_str(), hop.hop), ("photos-2026", 1));

    // The next hop gets no usable time at all: it cannot move.
    let no_time = Deadline::at(Instant::now(), Duration::from_millis(100));
    let payload = serde_json::to_value(&next).unwrap();
    let (second, after) = invoke(&r, &payload, no_time, "inv-1").await;
    println!(
        "hop 1: done {}, stopped {}",
        second["done"], second["stopped"]
    );
    assert!(after.is_none(), "a hop without progress must not continue");
    assert_eq!(reason(&second), Some(StopReason::NoProgress));
    let detail = second["stopped"]["detail"].as_str().unwrap();
    assert!(detail.contains("ended where it started"), "{detail}");
    assert_eq!(
        second["continuation"]["start_after"],
        payload["continuation"]["start_after"]
    );
    assert_eq!(second["run_id"], "photos-2026");

    // Resuming by hand with the reported continuation goes on to the end.
    let mut request: BackfillRequest = serde_json::from_value(json!({
        "auto_continue": true,
        "continuation": second["continuation"],
    }))
    .unwrap();
    let mut hops = 0;
    let summary = loop {
        hops += 1;
        assert!(hops < 50, "no convergence");
        let payload = serde_json::to_value(&request).unwrap();
        let (answer, next) = invoke(&r, &payload, window(), &format!("resume-{hops}")).await;
        match next {
            Some(next) => request = next,
            None => break answer,
        }
    };
    assert_eq!(summary["done"], true, "{summary}");
    for t in ["rep-0", "rep-1"] {
        assert_eq!(settled(&summary, t), (60, 60), "{summary}");
    }
}

/// (listed, copied + up to date) for a target. A copy stopped in flight at a deadline may
/// still have completed on the server: the next hop finds it up to date.
fn settled(summary: &Value, target: &str) -> (u64, u64) {
    let counts = &summary["targets"][target];
    let n = |f: &str| counts[f].as_u64().unwrap_or(u64::MAX);
    (n("listed"), n("copied") + n("up_to_date"))
}

/// `max_hops` bounds a chain; the continuation resumes it with a higher limit.
#[tokio::test(start_paused = true)]
async fn the_hop_limit_stops_a_chain() {
    let r = replicator(2, 30, 4);
    fill(&r, 120);
    let mut payload = json!({"auto_continue": true, "max_hops": 2});
    let mut invocations = 0;
    let last = loop {
        invocations += 1;
        assert!(invocations < 10, "the hop limit did not stop the chain");
        let (answer, next) = invoke(&r, &payload, window(), &format!("inv-{invocations}")).await;
        match next {
            Some(next) => payload = serde_json::to_value(&next).unwrap(),
            None => break answer,
        }
    };
    println!(
        "stopped after {invocations} invocations: {}",
        last["stopped"]
    );
    assert_eq!(
        invocations, 3,
        "the first invocation and two self-continuations"
    );
    assert_eq!(reason(&last), Some(StopReason::HopLimit));
    assert_eq!(last["done"], false);
    assert_eq!(last["continuation"]["run"]["hop"], 3);

    let mut request: BackfillRequest = serde_json::from_value(json!({
        "auto_continue": true,
        "max_hops": 100,
        "continuation": last["continuation"],
    }))
    .unwrap();
    let summary = loop {
        invocations += 1;
        assert!(invocations < 60, "no convergence");
        let payload = serde_json::to_value(&request).unwrap();
        let (answer, next) = invoke(&r, &payload, window(), &format!("inv-{invocations}")).await;
        match next {
            Some(next) => request = next,
            None => break answer,
        }
    };
    assert_eq!(summary["done"], true, "{summary}");
    assert_eq!(summary["source_objects"], 120);
    assert_eq!(
        r.store().requests()["CopyObject"],
        240,
        "each copy made once"
    );
}

/// A duplicated event, a stale hop delivered late, and the start sent twice: only the chain
/// holding the latest hop goes on. A retry of the same invocation (Lambda keeps the request
/// id) recognises its own claim.
#[tokio::test(start_paused = true)]
async fn two_chains_of_one_run_cannot_both_proceed() {
    let r = replicator(1, 30, 4);
    fill(&r, 80);
    let start = json!({"auto_continue": true, "run_id": "nightly"});
    let (_, next) = invoke(&r, &start, window(), "a0").await;
    let hop1 = serde_json::to_value(next.unwrap()).unwrap();

    // The start sent again (a client retry): the run exists, this chain stops at once.
    let copies = r.store().requests()["CopyObject"];
    let (again, none) = invoke(&r, &start, window(), "b0").await;
    assert!(none.is_none());
    assert_eq!(reason(&again), Some(StopReason::Superseded), "{again}");
    assert_eq!(
        r.store().requests()["CopyObject"],
        copies,
        "refused before any work"
    );

    // Hop 1 delivered twice: the first claims it, the duplicate stops.
    let (first, next_a) = invoke(&r, &hop1, window(), "a1").await;
    assert!(first.get("stopped").is_none(), "{first}");
    let (duplicate, next_b) = invoke(&r, &hop1, window(), "b1").await;
    println!("duplicate hop: {}", duplicate["stopped"]["detail"]);
    assert_eq!(reason(&duplicate), Some(StopReason::Superseded));
    assert!(next_b.is_none());

    // Lambda's retry of a1 (same request id) holds its claim and continues.
    let (retry, next_retry) = invoke(&r, &hop1, window(), "a1").await;
    assert!(retry.get("stopped").is_none(), "{retry}");
    assert!(next_retry.is_some());

    // Hop 2 from a1 claims; the same hop 2 from a1's retry then finds it taken.
    let hop2 = serde_json::to_value(next_a.unwrap()).unwrap();
    let hop2_retry = serde_json::to_value(next_retry.unwrap()).unwrap();
    assert_eq!(hop2["continuation"]["run"]["hop"], 2);
    let (winner, _) = invoke(&r, &hop2, window(), "a2").await;
    assert!(winner.get("stopped").is_none(), "{winner}");
    let (loser, none) = invoke(&r, &hop2_retry, window(), "c2").await;
    assert_eq!(reason(&loser), Some(StopReason::Superseded), "{loser}");
    assert!(none.is_none());
}

/// Deleting a run's marker cancels the run at its next hop.
#[tokio::test(start_paused = true)]
async fn deleting_the_marker_cancels_the_run() {
    let r = replicator(1, 30, 4);
    fill(&r, 60);
    let (_, next) = invoke(&r, &json!({"auto_continue": true}), window(), "x0").await;
    assert!(
        marker(&r, "x0").is_some(),
        "the run is named after its first invocation"
    );
    assert!(r
        .store()
        .remove("rep-0", &format!("{RESERVED_PREFIX}runs/x0")));
    let payload = serde_json::to_value(next.unwrap()).unwrap();
    let (answer, next) = invoke(&r, &payload, window(), "x1").await;
    assert!(next.is_none());
    assert_eq!(reason(&answer), Some(StopReason::Cancelled), "{answer}");
}

/// The summary lands in the operator's bucket after every hop; markers under the reserved
/// prefix are neither copied nor reported by verify.
#[tokio::test(start_paused = true)]
async fn the_summary_is_written_where_the_operator_says() {
    let r = replicator(2, 30, 4);
    fill(&r, 60);
    let mut payload =
        json!({"auto_continue": true, "run_id": "r-1", "summary_to": "s3://ops-bucket/backfills"});
    let at = ObjectAt {
        bucket: OPS,
        region: None,
        key: "backfills/r-1.json",
    };
    let mut hops = 0;
    let answer = loop {
        hops += 1;
        assert!(hops < 50, "no convergence");
        let (answer, next) = invoke(&r, &payload, window(), &format!("s{hops}")).await;
        assert_eq!(
            answer["summary_object"],
            "s3://ops-bucket/backfills/r-1.json"
        );
        let written = r.store().get_small_object(at).await.unwrap().unwrap();
        let written: Summary = serde_json::from_slice(&written.body).unwrap();
        assert_eq!(written.invocations, hops, "written after every hop");
        match next {
            Some(next) => payload = serde_json::to_value(&next).unwrap(),
            None => break answer,
        }
    };
    assert!(hops > 1, "the window should have split the run");
    assert_eq!(answer["done"], true);
    let written = r.store().get_small_object(at).await.unwrap().unwrap();
    let written: Summary = serde_json::from_slice(&written.body).unwrap();
    assert!(written.done);
    assert_eq!(written.run_id.as_deref(), Some("r-1"));
    let counts = &written.targets["rep-1"];
    assert_eq!((counts.listed, counts.copied + counts.up_to_date), (60, 60));

    assert!(marker(&r, "r-1").is_some());
    let (verify, _) = invoke(&r, &json!({"mode": "verify"}), Deadline::none(), "v").await;
    assert_eq!(verify["targets"]["rep-0"]["extraneous"], 0, "{verify}");
    assert_eq!(verify["targets"]["rep-0"]["listed"], 60);
    assert!(r
        .store()
        .object("rep-1", &format!("{RESERVED_PREFIX}runs/r-1"))
        .is_none());

    for (field, value) in [
        ("summary_to", json!("ops-bucket/x")),
        ("run_id", json!("has space")),
        ("max_hops", json!(0)),
    ] {
        let payload = json!({ field: value });
        let err = handle_invocation_as(&r, &payload, &Deadline::none(), "bad")
            .await
            .unwrap_err()
            .to_string();
        println!("{field}: {err}");
        assert!(err.contains(field), "{err}");
        assert!(
            err.contains(&value.to_string()) || value.is_number(),
            "{err}"
        );
    }
}

/// The continuation names only keys with finished work: with 1,000 keys of 1,024 bytes and a
/// deadline in the middle of every page, it stays far below Lambda's 1 MB asynchronous payload.
#[tokio::test(start_paused = true)]
async fn the_continuation_stays_small_with_long_keys() {
    let r = replicator(3, 30, 32);
    for i in 0..1000 {
        let key = format!("{i:04}/{}", "x".repeat(1019));
        assert_eq!(key.len(), 1024);
        r.store().put(SOURCE, &key, NewObject::plain(10));
    }
    let mut payload = json!({"auto_continue": true});
    let mut sizes = Vec::new();
    let summary = loop {
        assert!(sizes.len() < 100, "no convergence");
        let deadline = Deadline::after(Duration::from_millis(1500), Duration::from_millis(300));
        let (answer, next) = invoke(&r, &payload, deadline, &format!("k{}", sizes.len())).await;
        match next {
            Some(next) => {
                let bytes = serde_json::to_vec(&next).unwrap();
                sizes.push(bytes.len());
                payload = serde_json::from_slice(&bytes).unwrap();
            }
            None => break answer,
        }
    };
    let largest = sizes.iter().copied().max().unwrap_or_default();
    println!(
        "{} continuations for 1,000 keys of 1,024 bytes to 3 targets; largest {largest} bytes ({:.1}% of 1 MB); sizes {sizes:?}",
        sizes.len(),
        largest as f64 / 10_485.76
    );
    assert!(
        sizes.len() >= 2,
        "the deadline should have stopped the run mid-way"
    );
    assert!(largest < 128 * 1024, "continuation of {largest} bytes");
    assert_eq!(summary["done"], true);
    assert_eq!(summary["source_objects"], 1000);
    for t in 0..3 {
        let counts = &summary["targets"][format!("rep-{t}")];
        assert_eq!(
            (counts["listed"].as_u64(), counts["copied"].as_u64()),
            (Some(1000), Some(1000)),
            "{counts}"
        );
    }
    assert_eq!(
        r.store().requests()["CopyObject"],
        3000,
        "each copy made once"
    );
}

/// Verify and dry run stop at the soft deadline like sync: every invocation returns before
/// its deadline, and the continuations add up to exactly one comparison per key.
#[tokio::test(start_paused = true)]
async fn verify_and_dry_run_stop_at_the_deadline_like_sync() {
    for (mode, dry_run) in [(Mode::Verify, false), (Mode::Sync, true)] {
        let r = replicator(1, 30, 4);
        for i in 0..200 {
            let key = format!("k{i:04}");
            r.store().put(SOURCE, &key, NewObject::plain(10));
            // Same size, other bytes: settling each key needs a HEAD of the replica.
            r.store().put("rep-0", &key, NewObject::plain(10));
        }
        let mut request = BackfillRequest {
            mode,
            dry_run,
            ..Default::default()
        };
        let mut invocations = 0;
        let summary = loop {
            invocations += 1;
            assert!(invocations < 100, "{mode:?}: no convergence");
            let started = Instant::now();
            let remaining = Duration::from_millis(500);
            let deadline = Deadline::after(remaining, Duration::from_millis(100));
            let summary = run_paged(&r, &request, &deadline, &|_| {}, 1000)
                .await
                .unwrap();
            assert!(
                started.elapsed() < remaining,
                "{mode:?}: ran {:?} past a {remaining:?} deadline",
                started.elapsed()
            );
            match summary.continuation.clone() {
                Some(next) => request.continuation = Some(*next),
                None => break summary,
            }
        };
        println!("{mode:?} (dry run {dry_run}): {invocations} invocations");
        assert!(
            invocations > 2,
            "{mode:?}: the deadline should have split the run"
        );
        let counts = &summary.targets["rep-0"];
        assert_eq!(counts.listed, 200, "{mode:?}");
        match mode {
            Mode::Verify => assert_eq!(counts.different, 200),
            Mode::Sync => assert_eq!(counts.copied, 200, "a dry run counts what it would copy"),
        }
        let requests = r.store().requests();
        assert_eq!(requests.get("CopyObject"), None, "{mode:?} wrote");
    }
}

/// A backfill of an object whose copy by parts needs many invocations leaves the upload open
/// at each deadline; the next hop resumes it, copying only the missing parts, and the parts
/// count as progress so that the chain never stops for lack of it.
#[tokio::test(start_paused = true)]
async fn a_huge_object_is_backfilled_across_many_hops_each_part_once() {
    const MIB: u64 = 1024 * 1024;
    let r = {
        let store = SimStore::new(
            11,
            Faults {
                max_latency: Duration::from_millis(40),
                ..Faults::NONE
            },
        );
        for bucket in [SOURCE, "rep-0", "rep-1"] {
            store.create_bucket(bucket, false);
        }
        let mut config = Config::new([SOURCE.to_string()], vec![target(0), target(1)]);
        config.concurrency = 4;
        config.multipart_threshold = 5 * MIB;
        config.part_size = 5 * MIB;
        Replicator::with_store(config, store)
    };
    let size = 2 * 1024 * MIB;
    let parts = size.div_ceil(5 * MIB);
    r.store().put(SOURCE, "a-small", NewObject::plain(10));
    r.store().put(SOURCE, "huge.bin", NewObject::plain(size));
    r.store().put(SOURCE, "z-small", NewObject::plain(10));
    // Uploads begun within the source's own second are not resumed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut payload = json!({"auto_continue": true, "run_id": "huge"});
    let mut hops = 0;
    let summary = loop {
        hops += 1;
        assert!(hops < 200, "no convergence");
        let deadline = Deadline::after(Duration::from_millis(500), Duration::from_millis(100));
        let (answer, next) = invoke(&r, &payload, deadline, &format!("inv-{hops}")).await;
        match next {
            Some(next) => {
                // Open for the next hop, one per target at most.
                assert!(r.store().uploads("rep-0").len() <= 1, "hop {hops}");
                payload = serde_json::to_value(&next).unwrap();
            }
            None => break answer,
        }
    };
    if std::env::var("SIM_TRACE").is_ok() {
        let trace = r.store().trace();
        println!("{}", trace[trace.len().saturating_sub(60)..].join("\n"));
    }
    let applied = r.store().applied();
    println!(
        "huge object backfilled: {parts} parts to 2 targets, {hops} invocations, {} part copies took effect, parts_copied {}",
        applied["UploadPartCopy"], summary["parts_copied"]
    );
    assert_eq!(summary["done"], true, "{summary}");
    assert!(summary["stopped"].is_null(), "{summary}");
    assert!(hops >= 10, "{hops} invocations");
    assert_eq!(
        applied["UploadPartCopy"],
        2 * parts,
        "each part copied once"
    );
    assert_eq!(applied["CreateMultipartUpload"], 2);
    // Counted as answered: a part the hard deadline cut may have landed unseen.
    let counted = summary["parts_copied"].as_u64().unwrap();
    assert!(counted > 0 && counted <= 2 * parts, "{counted}");
    for t in ["rep-0", "rep-1"] {
        assert!(r.store().uploads(t).is_empty(), "{t}: upload left");
        assert_eq!(settled(&summary, t), (3, 3), "{summary}");
        let replica = r.store().object(t, "huge.bin").unwrap();
        assert_eq!(
            replica.content,
            r.store().object(SOURCE, "huge.bin").unwrap().content
        );
    }
}

/// An upload a backfill's invocation left open is aborted when the next invocation finds the
/// key settled some other way (here the source was overwritten with a small object, which the
/// next invocation copies in one request).
#[tokio::test(start_paused = true)]
async fn an_upload_left_open_is_aborted_when_the_key_settles_otherwise() {
    const MIB: u64 = 1024 * 1024;
    let r = {
        let store = SimStore::new(
            11,
            Faults {
                max_latency: Duration::from_millis(40),
                ..Faults::NONE
            },
        );
        for bucket in [SOURCE, "rep-0"] {
            store.create_bucket(bucket, false);
        }
        let mut config = Config::new([SOURCE.to_string()], vec![target(0)]);
        config.concurrency = 4;
        config.multipart_threshold = 5 * MIB;
        config.part_size = 5 * MIB;
        Replicator::with_store(config, store)
    };
    r.store()
        .put(SOURCE, "huge.bin", NewObject::plain(1024 * MIB));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deadline = || Deadline::after(Duration::from_millis(500), Duration::from_millis(100));
    let (_, next) = invoke(&r, &json!({"auto_continue": true}), deadline(), "inv-0").await;
    let next = next.expect("continues");
    assert_eq!(r.store().uploads("rep-0").len(), 1);
    let open = &next.continuation.as_ref().unwrap().open_uploads;
    assert!(open.contains_key("huge.bin"), "{open:?}");

    r.store().put(SOURCE, "huge.bin", NewObject::plain(10));
    let payload = serde_json::to_value(&next).unwrap();
    let (answer, next) = invoke(&r, &payload, deadline(), "inv-1").await;
    assert!(next.is_none(), "{answer}");
    assert_eq!(answer["done"], true, "{answer}");
    assert!(
        r.store().uploads("rep-0").is_empty(),
        "the upload for the old version is aborted"
    );
    assert_eq!(
        r.store().object("rep-0", "huge.bin").unwrap().content,
        r.store().object(SOURCE, "huge.bin").unwrap().content
    );
}

/// The template's schedule: one run per scheduled time, the run id made of that time.
fn scheduled(time: &str) -> Value {
    json!({
        "mode": "sync",
        "auto_continue": true,
        "delete": true,
        "run_id": format!("reconcile-{time}"),
        "summary_to": "s3://ops-bucket/reconcile/",
    })
}

/// One scheduled run to its end, as Lambda would run its chain; answers the last hop's
/// answer, the drift metrics emitted at each hop, and the requests made, by kind.
async fn scheduled_run(
    r: &Replicator<SimStore>,
    time: &str,
    window: fn() -> Deadline,
) -> (
    Value,
    Vec<Vec<Value>>,
    std::collections::BTreeMap<String, u64>,
) {
    let before = r.store().requests();
    s3fanout::lambda::metrics::capture();
    let mut payload = scheduled(time);
    let mut emitted = Vec::new();
    for hop in 0.. {
        assert!(hop < 50, "no convergence");
        let (answer, next) = invoke(r, &payload, window(), &format!("{time}-req-{hop}")).await;
        emitted.push(s3fanout::lambda::metrics::take_captured());
        match next {
            Some(next) => payload = serde_json::to_value(&next).unwrap(),
            None => {
                let requests = r
                    .store()
                    .requests()
                    .into_iter()
                    .map(|(kind, n)| (kind.to_string(), n - before.get(kind).unwrap_or(&0)))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                return (answer, emitted, requests);
            }
        }
    }
    unreachable!()
}

/// (DriftFound, DriftRepaired, BackfillFailed) per target, from the EMF lines.
fn drift_figures(lines: &[Value]) -> Vec<(String, u64, u64, u64)> {
    lines
        .iter()
        .map(|l| {
            let n = |name: &str| l[name].as_u64().unwrap();
            (
                l["TargetBucket"].as_str().unwrap().to_string(),
                n("DriftFound"),
                n("DriftRepaired"),
                n("BackfillFailed"),
            )
        })
        .collect()
}

/// The scheduled reconciliation: each day's run is a run of its own and runs fully; a second
/// delivery of the same scheduled invocation, or Lambda's retry of it once the chain moved on,
/// starts no second chain. The run's end, and only it, writes the drift metrics per target,
/// with the figures the summary object holds; on synced buckets they are zero and the run
/// lists and writes its run state, nothing else.
#[tokio::test(start_paused = true)]
async fn a_scheduled_reconciliation_reports_drift_per_target_at_the_end_of_each_run() {
    let r = replicator(3, 30, 4);
    fill(&r, 60);

    // Day 1: nothing was replicated (every notification lost): 60 objects drifted per target.
    let day1 = "2026-05-01T03:00:00Z";
    // Room for the listing of four buckets and a round of copies in each invocation: a
    // window that only fits the listing would stop the run for want of progress.
    let short = || Deadline::after(Duration::from_millis(450), Duration::from_millis(50));
    let (answer, emitted, _) = scheduled_run(&r, day1, short).await;
    assert_eq!(answer["done"], true, "{answer}");
    assert!(emitted.len() > 1, "the window should have split the run");
    assert!(
        emitted[..emitted.len() - 1].iter().all(Vec::is_empty),
        "only the run's end emits: {emitted:?}"
    );
    let figures = drift_figures(emitted.last().unwrap());
    println!("day 1 (nothing replicated): {figures:?}");
    assert_eq!(figures.len(), 3);
    for (bucket, found, repaired, failed) in &figures {
        // A copy the deadline cut after it landed is found current by the next hop.
        let counts = &answer["targets"][bucket];
        assert_eq!(Some(*found), counts["copied"].as_u64(), "{answer}");
        assert_eq!((found, failed), (repaired, &0));
        assert_eq!(
            counts["copied"].as_u64().unwrap() + counts["up_to_date"].as_u64().unwrap(),
            60
        );
    }
    let at = ObjectAt {
        bucket: OPS,
        region: None,
        key: &format!("reconcile/reconcile-{day1}.json"),
    };
    let written = r.store().get_small_object(at).await.unwrap().unwrap();
    let written: Summary = serde_json::from_slice(&written.body).unwrap();
    assert_eq!(
        written.run_id.as_deref(),
        Some(&*format!("reconcile-{day1}"))
    );
    for (bucket, found, repaired, failed) in &figures {
        let counts = &written.targets[bucket];
        assert_eq!(
            (counts.drift_found, counts.drift_repaired, counts.failed),
            (*found, *repaired, *failed),
            "the summary object says what the metrics say"
        );
    }

    // The same scheduled invocation delivered again (a new request id) and Lambda's retry of
    // its first invocation (the same request id), after the chain moved on: both stop at once.
    let copies = r.store().requests()["CopyObject"];
    s3fanout::lambda::metrics::capture();
    for request_id in ["duplicate-delivery", &format!("{day1}-req-0")] {
        let (again, next) = invoke(&r, &scheduled(day1), window(), request_id).await;
        assert!(next.is_none(), "{again}");
        assert_eq!(reason(&again), Some(StopReason::Superseded), "{again}");
    }
    assert_eq!(r.store().requests()["CopyObject"], copies);
    assert!(s3fanout::lambda::metrics::take_captured().is_empty());

    // Day 2, in sync: no drift, listings and the run's own state only.
    let (answer, emitted, requests) =
        scheduled_run(&r, "2026-05-02T03:00:00Z", Deadline::none).await;
    assert_eq!(answer["done"], true, "{answer}");
    let figures = drift_figures(emitted.last().unwrap());
    println!("day 2 (in sync): {figures:?}, requests {requests:?}");
    assert!(
        figures.iter().all(|f| (f.1, f.2, f.3) == (0, 0, 0)),
        "{figures:?}"
    );
    let hops = emitted.len() as u64;
    assert_eq!(
        requests.keys().map(String::as_str).collect::<Vec<_>>(),
        ["ListObjectsV2", "PutObject"],
        "{requests:?}"
    );
    // A marker claim and a summary per hop.
    assert_eq!(requests["PutObject"], 2 * hops, "{requests:?}");

    // Day 3: a replica object deleted by hand, another edited, an extraneous one added, and a
    // source object whose notification was lost.
    assert!(r.store().remove("rep-0", "k0007"));
    r.store().put("rep-1", "k0011", NewObject::plain(12));
    r.store().put("rep-2", "stray", NewObject::plain(3));
    r.store()
        .put(SOURCE, "k0060-unannounced", NewObject::plain(10));
    let (answer, emitted, requests) =
        scheduled_run(&r, "2026-05-03T03:00:00Z", Deadline::none).await;
    assert_eq!(answer["done"], true, "{answer}");
    let figures = drift_figures(emitted.last().unwrap());
    println!("day 3 (drifted): {figures:?}, requests {requests:?}");
    assert_eq!(
        figures,
        [
            ("rep-0".to_string(), 2, 2, 0),
            ("rep-1".to_string(), 2, 2, 0),
            ("rep-2".to_string(), 2, 2, 0),
        ]
    );
    assert_eq!(answer["targets"]["rep-2"]["deleted"], 1, "{answer}");
    let (verify, _) = invoke(
        &r,
        &json!({"mode": "verify", "delete": true}),
        Deadline::none(),
        "v",
    )
    .await;
    for i in 0..3 {
        let counts = &verify["targets"][format!("rep-{i}")];
        assert_eq!(
            (
                counts["missing"].as_u64(),
                counts["different"].as_u64(),
                counts["extraneous"].as_u64()
            ),
            (Some(0), Some(0), Some(0)),
            "{verify}"
        );
    }
}

/// Runs every request and what it continues with, all chains at once, each invocation with
/// its own id; answers the number of invocations.
async fn drive(r: &Replicator<SimStore>, first: Vec<BackfillRequest>) -> usize {
    let mut pending = first;
    let mut invocations = 0;
    while !pending.is_empty() {
        assert!(invocations < 400, "no convergence");
        let calls = pending.drain(..).map(|request| {
            invocations += 1;
            let id = format!("chain-call-{invocations}");
            async move {
                let payload = serde_json::to_value(&request).unwrap();
                // Long enough for a chain's claim, listings and summaries, and some copies.
                let window = Deadline::after(Duration::from_secs(1), Duration::from_millis(50));
                handle_invocation_as(r, &payload, &window, &id)
                    .await
                    .unwrap()
                    .1
            }
        });
        pending = futures::future::join_all(calls.collect::<Vec<_>>())
            .await
            .into_iter()
            .flatten()
            .collect();
    }
    invocations
}

async fn read_summary(r: &Replicator<SimStore>, key: &str) -> Option<Summary> {
    let at = ObjectAt {
        bucket: OPS,
        region: None,
        key,
    };
    let object = r.store().get_small_object(at).await.unwrap()?;
    Some(serde_json::from_slice(&object.body).unwrap())
}

/// A split run starts one chain per range of common prefixes; the chains work at once, each
/// with its own marker and continuations, and the run's summary is the sum of theirs, done
/// when all are, even as chains finish at the same moment.
#[tokio::test(start_paused = true)]
async fn a_split_run_copies_every_range_at_once_and_sums_its_chains() {
    let r = replicator(2, 30, 4);
    let mut keys = vec!["a-top".to_string(), "zz-top".to_string()];
    for p in 0..8 {
        keys.extend((0..25).map(|k| format!("p{p}/k{k:02}")));
    }
    for key in &keys {
        r.store().put(SOURCE, key, NewObject::plain(10));
    }
    let payload = json!({"auto_continue": true, "run_id": "split-1", "chains": 4,
        "summary_to": "s3://ops-bucket/backfills"});
    let (answer, chains) = handle_invocation_as(&r, &payload, &window(), "start")
        .await
        .unwrap();
    assert_eq!(chains.len(), 4, "{answer}");
    assert_eq!(answer["chains"][1]["run_id"], "split-1.1");
    assert_eq!(answer["chains"][1]["range"]["from"], "p2/");
    assert_eq!(
        answer["run_summary_object"],
        "s3://ops-bucket/backfills/split-1.json"
    );
    let before = read_summary(&r, "backfills/split-1.json").await.unwrap();
    assert!(!before.done && before.chains.iter().all(|c| !c.reported));
    assert_eq!(before.source_bucket, SOURCE, "the configured source, named");
    assert!(marker(&r, "split-1").is_some() && marker(&r, "split-1.0").is_none());

    let invocations = drive(&r, chains).await;
    assert!(
        invocations > 4,
        "the window should have made the chains continue"
    );
    let run = read_summary(&r, "backfills/split-1.json").await.unwrap();
    assert!(run.done, "{run:?}");
    assert_eq!(run.chains.len(), 4);
    assert_eq!(
        run.invocations as usize,
        invocations + 1,
        "the split's and the chains'"
    );
    let mut listed = 0;
    for (n, chain) in run.chains.iter().enumerate() {
        assert!(chain.reported && chain.done, "{chain:?}");
        let own = read_summary(&r, &format!("backfills/split-1.{n}.json"))
            .await
            .unwrap();
        assert!(own.done);
        listed += own.targets["rep-0"].listed;
        assert!(marker(&r, &format!("split-1.{n}")).is_some());
    }
    for target in ["rep-0", "rep-1"] {
        let counts = &run.targets[target];
        // A copy whose answer the deadline cut is found current by the next hop.
        let settled = counts.copied + counts.up_to_date;
        assert_eq!((counts.listed, settled), (202, 202), "{counts:?}");
        for key in &keys {
            assert!(r.store().object(target, key).is_some(), "{target}/{key}");
        }
    }
    assert_eq!(listed, 202, "every key in exactly one chain");
}

/// The scheduled reconciliation split into chains, as the template's `ReconcileChains` sends
/// it: the chains repair the drift of their ranges at once, each emits the drift metrics of
/// its own range at its end, and together those are the run's summary; the same scheduled
/// invocation delivered again starts nothing.
#[tokio::test(start_paused = true)]
async fn a_scheduled_reconciliation_in_chains_reports_their_drift_together() {
    let r = replicator(2, 30, 4);
    let keys: Vec<String> = (0..6)
        .flat_map(|p| (0..10).map(move |k| format!("p{p}/k{k:02}")))
        .collect();
    for key in &keys {
        r.store().put(SOURCE, key, NewObject::plain(10));
    }
    let time = "2026-05-01T03:00:00Z";
    let mut payload = scheduled(time);
    payload["chains"] = json!(3);
    s3fanout::lambda::metrics::capture();
    let (answer, chains) = handle_invocation_as(&r, &payload, &window(), "start")
        .await
        .unwrap();
    assert_eq!(chains.len(), 3, "{answer}");
    assert_eq!(answer["chains"][2]["run_id"], format!("reconcile-{time}.2"));
    drive(&r, chains).await;
    let figures = drift_figures(&s3fanout::lambda::metrics::take_captured());
    assert_eq!(
        figures.len(),
        6,
        "each chain's end, per target: {figures:?}"
    );

    let run = read_summary(&r, &format!("reconcile/reconcile-{time}.json"))
        .await
        .unwrap();
    assert!(run.done && run.chains.iter().all(|c| c.done), "{run:?}");
    for target in ["rep-0", "rep-1"] {
        let counts = &run.targets[target];
        let of_target = figures.iter().filter(|f| f.0 == target);
        let (found, repaired, failed) =
            of_target.fold((0, 0, 0), |(a, b, c), f| (a + f.1, b + f.2, c + f.3));
        assert_eq!(
            (found, repaired, failed),
            (counts.drift_found, counts.drift_repaired, counts.failed),
            "the chains' metrics add up to the run's summary"
        );
        // A copy whose answer the deadline cut is found current by the next hop.
        assert_eq!(counts.listed, 60, "{counts:?}");
        assert_eq!(counts.copied + counts.up_to_date, 60, "{counts:?}");
        assert!(found > 0 && failed == 0, "{counts:?}");
        for key in &keys {
            assert!(r.store().object(target, key).is_some(), "{target}/{key}");
        }
    }

    let copies = r.store().requests()["CopyObject"];
    let (again, next) = invoke(&r, &payload, window(), "duplicate-delivery").await;
    assert!(next.is_none(), "{again}");
    assert_eq!(reason(&again), Some(StopReason::Superseded), "{again}");
    assert_eq!(r.store().requests()["CopyObject"], copies);
}

/// A split is made once: a retry of the first invocation (Lambda keeps its request id) starts
/// the chains over the ranges it recorded, though the bucket changed meanwhile; another start
/// of the run is refused; a request that cannot split says which value is wrong.
#[tokio::test(start_paused = true)]
async fn a_split_is_made_once_and_bad_splits_are_named() {
    let r = replicator(1, 0, 4);
    for p in ["a/", "c/"] {
        r.store()
            .put(SOURCE, &format!("{p}k"), NewObject::plain(10));
    }
    let payload = json!({"auto_continue": true, "run_id": "once", "chains": 8,
        "summary_to": "s3://ops-bucket/backfills"});
    let (first, chains) = handle_invocation_as(&r, &payload, &Deadline::none(), "inv-a")
        .await
        .unwrap();
    assert_eq!(chains.len(), 2, "one chain per prefix: {first}");
    r.store().put(SOURCE, "b/k", NewObject::plain(10));
    let (retry, again) = handle_invocation_as(&r, &payload, &Deadline::none(), "inv-a")
        .await
        .unwrap();
    assert_eq!(retry["chains"], first["chains"]);
    assert_eq!(again, chains);
    let (other, none) = handle_invocation_as(&r, &payload, &Deadline::none(), "inv-b")
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(other["stopped"]["reason"], "superseded", "{other}");

    for (field, value, said) in [
        ("chains", json!(65), "chains 65: at most 64"),
        ("chains", json!(0), "chains 0"),
        (
            "split_at",
            json!(["m", "c"]),
            "\"m\" must sort before \"c\"",
        ),
        ("summary_to", Value::Null, "needs summary_to"),
        ("auto_continue", json!(false), "needs auto_continue"),
    ] {
        let mut bad = json!({"auto_continue": true, "run_id": "bad", "chains": 2,
            "summary_to": "s3://ops-bucket/backfills"});
        bad[field] = value;
        if field == "split_at" {
            bad.as_object_mut().unwrap().remove("chains");
        }
        let err = handle_invocation_as(&r, &bad, &Deadline::none(), "bad")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(said), "{field}: {err}");
    }
    assert!(marker(&r, "bad").is_none(), "a bad split claims nothing");
}

/// A run past a prefix's write rate slows down instead of failing keys: what S3 answered
/// `SlowDown` (or the target's breaker then held) is redone after a pause, in the same
/// invocation.
#[tokio::test(start_paused = true)]
async fn a_throttled_run_slows_down_and_copies_every_key() {
    let r = replicator(2, 10, 32);
    fill(&r, 300);
    r.store().limit_prefix_writes(50);
    let (answer, next) = invoke(&r, &json!({}), Deadline::none(), "throttled").await;
    assert!(next.is_none());
    assert!(r.store().slowed_down() > 0, "the limit should have bitten");
    for target in ["rep-0", "rep-1"] {
        let counts = &answer["targets"][target];
        assert_eq!(counts["failed"], 0, "{answer}");
        assert_eq!(counts["copied"], 300, "{answer}");
    }
}

/// The next batch is listed while the batch before it is copied: the copies never wait for a
/// listing but the first.
#[tokio::test(start_paused = true)]
async fn the_next_batch_is_listed_while_the_last_is_copied() {
    let r = replicator(3, 20, 64);
    fill(&r, 2500);
    let request: BackfillRequest = serde_json::from_value(json!({})).unwrap();
    let deadline = Deadline::after(Duration::from_secs(900), Duration::from_secs(10));
    let summary = run_paged(&r, &request, &deadline, &|_| {}, 1000)
        .await
        .unwrap();
    assert!(summary.done, "{summary:?}");
    let trace = r.store().trace();
    let source_listings: Vec<usize> = (0..trace.len())
        .filter(|&i| trace[i].contains(&format!(" ListObjectsV2 s3://{SOURCE}/:")))
        .collect();
    assert_eq!(
        source_listings.len(),
        3,
        "pages of 1,000 keys: {source_listings:?}"
    );
    // The last copy of each of the first two batches, keys k0000..k0999 and k1000..k1999.
    let last_copy_before = |bound: &str| {
        (0..trace.len())
            .filter(|&i| {
                trace[i].contains(" CopyObject s3://rep-")
                    && trace[i]
                        .split('/')
                        .nth(3)
                        .is_some_and(|key| key.split(':').next().is_some_and(|k| k < bound))
            })
            .max()
            .unwrap()
    };
    for (page, bound) in [(1, "k1000"), (2, "k2000")] {
        let last = last_copy_before(bound);
        assert!(
            source_listings[page] < last,
            "page {} was listed at step {} of the trace, after the batch before it was copied (its last copy at step {last})",
            page + 1,
            source_listings[page]
        );
    }
}
