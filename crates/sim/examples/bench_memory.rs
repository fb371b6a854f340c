//! `make bench`: peak memory of a verify over 100,000 keys that only the replica has (a deleted
//! prefix whose deletes were not propagated) and over 100,000 keys that match, with 10,000 of
//! each for comparison: the merge holds one listing page per bucket, so the figures must not
//! grow with the number of keys.
//!
//! The buckets live in the simulated store, in this process. To measure the engine and not the
//! store, each scenario runs in a fresh child process that fills the store, resets the kernel's
//! peak-RSS mark (`/proc/self/clear_refs`), runs the verify, and reports the peak above the
//! resident size it started from.

use std::collections::BTreeMap;
use std::process::Command;

use s3fanout::backfill::{run, BackfillRequest, Mode};
use s3fanout::core::object::ContentHeaders;
use s3fanout::{Config, Deadline, Replicator, Target};
use s3fanout_sim::{Faults, NewObject, SimStore};

const SCENARIOS: [(&str, usize); 4] = [
    ("replica-only", 10_000),
    ("replica-only", 100_000),
    ("matching", 10_000),
    ("matching", 100_000),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        let keys = args[3].parse().expect("a number of keys");
        return child(&args[2], keys);
    }
    println!("## Memory: verify over the simulated store, peak RSS above the filled store\n");
    println!("| keys | kind | resident before | peak during verify | verify's own peak | List requests |");
    println!("|---|---|---|---|---|---|");
    let me = std::env::current_exe().expect("own path");
    for (kind, keys) in SCENARIOS {
        let out = Command::new(&me)
            .args(["child", kind, &keys.to_string()])
            .output()
            .expect("child runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{kind} {keys}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let fields: BTreeMap<&str, u64> = text
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
            .collect();
        let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
        println!(
            "| {keys} | {kind} | {} | {} | {} | {} |",
            mib(fields["before_kib"]),
            mib(fields["peak_kib"]),
            mib(fields["peak_kib"].saturating_sub(fields["before_kib"])),
            fields["lists"]
        );
    }
}

fn target() -> Target {
    Target {
        bucket: "rep".into(),
        region: "region-1".into(),
        prefix: String::new(),
        storage_class: None,
        kms_key_id: None,
    }
}

/// One scenario in this process: fill, reset the peak, verify, report.
fn child(kind: &str, keys: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = SimStore::new(1, Faults::NONE);
        store.create_bucket("src", false);
        store.create_bucket("rep", false);
        let config = Config::new(["src".to_string()], vec![target()]);
        let replicator = Replicator::with_store(config, store);
        let store = replicator.store();
        let object = || NewObject {
            size: 1024,
            headers: ContentHeaders {
                content_type: Some("application/octet-stream".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match kind {
            // Keys the source no longer has: a deleted prefix whose deletes did not propagate.
            "replica-only" => {
                for i in 0..keys {
                    store.put("rep", &format!("deleted/{i:07}.bin"), object());
                }
            }
            // Replicas made by a sync, so that every listing entry matches.
            "matching" => {
                for i in 0..keys {
                    store.put("src", &format!("kept/{i:07}.bin"), object());
                }
                let synced = run(
                    &replicator,
                    &BackfillRequest::default(),
                    &Deadline::none(),
                    &|_| {},
                )
                .await
                .expect("sync");
                assert_eq!(synced.targets["rep"].copied, keys as u64);
            }
            other => panic!("unknown scenario {other:?}"),
        }
        let before = reset_peak();
        let verify = BackfillRequest {
            mode: Mode::Verify,
            ..Default::default()
        };
        let summary = run(&replicator, &verify, &Deadline::none(), &|_| {})
            .await
            .expect("verify");
        let counts = &summary.targets["rep"];
        let expected = match kind {
            "replica-only" => counts.extraneous,
            _ => counts.up_to_date,
        };
        assert_eq!(expected, keys as u64, "{counts:?}");
        let peak = status_kib("VmHWM");
        println!(
            "before_kib={before} peak_kib={peak} lists={}",
            summary.list_requests
        );
    });
}

/// Resets the peak-RSS mark to the current resident size (Linux 4.0 and later); answers it.
/// Freed heap memory is returned to the kernel first: otherwise the verify could reuse pages
/// the filling left behind and its own peak would read too low.
fn reset_peak() -> u64 {
    release_free_heap();
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS mark");
    status_kib("VmRSS")
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_heap() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: glibc's malloc_trim only returns free memory to the kernel; it is safe to call
    // at any time from any thread.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() {}

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/self/status"))
}
