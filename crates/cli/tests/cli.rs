//! The `s3fanout` binary against the local S3 server that `make test` starts.

use std::process::{Command, Output};

use aws_sdk_s3::Client;
use integration::*;
use serde_json::Value;

/// Runs the binary with the setup's buckets as its configuration.
fn s3fanout(setup: &Setup, args: &[&str]) -> Output {
    let targets: Vec<String> = setup
        .targets
        .iter()
        .map(|t| format!("{}@{}", t.bucket, t.region))
        .collect();
    run_with_env(
        &[
            ("SOURCE_BUCKETS", setup.source.as_str()),
            ("REPLICA_TARGETS", &targets.join(",")),
        ],
        args,
    )
}

fn run_with_env(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_s3fanout"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("the s3fanout binary runs")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited normally")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn keys(client: &Client, bucket: &str) -> Vec<String> {
    let out = client
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

/// Puts `n` small objects of distinct sizes under `dir/` and returns their keys.
async fn put_many(setup: &Setup, dir: &str, n: usize) -> Vec<String> {
    let src = setup.source_client();
    let mut keys = Vec::new();
    for i in 0..n {
        let key = format!("{dir}/object {i:02}.txt");
        put(
            &src,
            &setup.source,
            &key,
            format!("body {i} {}", "x".repeat(i)).as_bytes(),
        )
        .await;
        keys.push(key);
    }
    keys
}

fn counts<'a>(summary: &'a Value, bucket: &str) -> &'a Value {
    &summary["targets"][bucket]
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn replicate_copies_an_awkward_key_to_every_target() {
    let setup = Setup::new(2).await;
    let key = "dir/a b+c ünïcødé €.txt";
    put_rich(&setup.source_client(), &setup.source, key, b"awkward").await;

    let out = s3fanout(&setup, &["replicate", &setup.source, key, "--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    let report = json(&out);
    let outcomes: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["copied", "copied"]);
    for target in &setup.targets {
        assert_replica(&setup, key, target).await;
    }

    // A second run finds the replicas current; the table names each target.
    let out = s3fanout(&setup, &["replicate", &setup.source, key]);
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    let table = text(&out.stdout);
    for target in &setup.targets {
        let line = table
            .lines()
            .find(|l| l.starts_with(&target.bucket))
            .unwrap_or_else(|| panic!("no row for {}: {table}", target.bucket));
        assert!(line.contains(key) && line.contains("up_to_date"), "{line}");
    }
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn replicate_of_a_missing_object_is_not_a_failure_but_a_foreign_bucket_is_refused() {
    let setup = Setup::new(1).await;
    let out = s3fanout(
        &setup,
        &["replicate", &setup.source, "never-written", "--json"],
    );
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    assert_eq!(json(&out)["targets"][0]["outcome"], "source_gone");

    let out = s3fanout(&setup, &["replicate", "some-other-bucket", "k"]);
    assert_eq!(code(&out), 2);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("SOURCE_BUCKETS"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn backfill_dry_run_reports_what_it_would_copy_and_writes_nothing() {
    let setup = Setup::new(2).await;
    put_many(&setup, "dry", 7).await;

    let out = s3fanout(&setup, &["backfill", "--dry-run", "--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    let summary = json(&out);
    assert_eq!(summary["dry_run"], true);
    assert_eq!(summary["source_objects"], 7);
    for target in &setup.targets {
        let c = counts(&summary, &target.bucket);
        assert_eq!(
            (c["listed"].as_u64(), c["copied"].as_u64()),
            (Some(7), Some(7))
        );
        assert!(keys(&setup.target_client(target), &target.bucket)
            .await
            .is_empty());
    }
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn backfill_copies_everything_then_verify_finds_no_drift() {
    let setup = Setup::new(2).await;
    let written = put_many(&setup, "bulk", 20).await;

    let out = s3fanout(&setup, &["backfill", "--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    let summary = json(&out);
    assert_eq!(summary["source_objects"], 20);
    for target in &setup.targets {
        let c = counts(&summary, &target.bucket);
        assert_eq!(c["copied"], 20, "{c}");
        assert_eq!(c["failed"], 0, "{c}");
        let mut replicas = keys(&setup.target_client(target), &target.bucket).await;
        replicas.sort();
        assert_eq!(replicas, written);
        assert_replica(&setup, &written[13], target).await;
    }

    let out = s3fanout(&setup, &["verify", "--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    let summary = json(&out);
    for target in &setup.targets {
        let c = counts(&summary, &target.bucket);
        assert_eq!(
            [
                &c["listed"],
                &c["up_to_date"],
                &c["missing"],
                &c["different"],
                &c["extraneous"]
            ],
            [20, 20, 0, 0, 0],
            "{c}"
        );
    }

    // The table form, and a second backfill that finds nothing to do.
    let out = s3fanout(&setup, &["backfill"]);
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("target") && table.contains("up to date"),
        "{table}"
    );
    for target in &setup.targets {
        let row: Vec<&str> = table
            .lines()
            .find(|l| l.starts_with(&target.bucket))
            .unwrap_or_else(|| panic!("no row for {}: {table}", target.bucket))
            .split_whitespace()
            .collect();
        // target, listed, copied, up to date, deleted, skipped, failed, bytes
        assert_eq!(&row[1..7], ["20", "0", "20", "0", "0", "0"], "{table}");
    }
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn verify_reports_missing_different_and_extraneous_replicas() {
    let setup = Setup::new(2).await;
    let written = put_many(&setup, "drift", 5).await;
    let out = s3fanout(&setup, &["backfill", "--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));

    let (first, second) = (&setup.targets[0], &setup.targets[1]);
    let first_client = setup.target_client(first);
    first_client
        .delete_object()
        .bucket(&first.bucket)
        .key(&written[1])
        .send()
        .await
        .unwrap();
    // Same size, other bytes: only the replica's recorded provenance can tell.
    let size = head_size(&setup.target_client(second), &second.bucket, &written[3]).await;
    put(
        &setup.target_client(second),
        &second.bucket,
        &written[3],
        &vec![b'!'; size],
    )
    .await;

    let out = s3fanout(&setup, &["verify", "--json"]);
    assert_eq!(code(&out), 1, "stderr: {}", text(&out.stderr));
    let summary = json(&out);
    let c = counts(&summary, &first.bucket);
    assert_eq!(
        [&c["missing"], &c["different"], &c["up_to_date"]],
        [1, 0, 4],
        "{c}"
    );
    let c = counts(&summary, &second.bucket);
    assert_eq!(
        [&c["missing"], &c["different"], &c["up_to_date"]],
        [0, 1, 4],
        "{c}"
    );
    let examples = summary["examples"].as_array().unwrap();
    assert!(examples
        .iter()
        .any(|e| e["key"] == written[1].as_str() && e["what"] == "missing"));
    assert!(examples
        .iter()
        .any(|e| e["key"] == written[3].as_str() && e["what"] == "different"));

    put(&first_client, &first.bucket, "drift/stray.txt", b"stray").await;
    let out = s3fanout(&setup, &["verify", "--json", "--target", &first.bucket]);
    assert_eq!(code(&out), 1, "stderr: {}", text(&out.stderr));
    let summary = json(&out);
    let c = counts(&summary, &first.bucket);
    assert_eq!([&c["missing"], &c["extraneous"]], [1, 1], "{c}");
    assert!(
        summary["targets"].get(&second.bucket).is_none(),
        "{summary}"
    );

    // verify wrote nothing: the same drift is still there.
    assert!(keys(&first_client, &first.bucket)
        .await
        .contains(&"drift/stray.txt".to_string()));
    assert!(!keys(&first_client, &first.bucket)
        .await
        .contains(&written[1]));
}

async fn head_size(client: &Client, bucket: &str, key: &str) -> usize {
    let head = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    head.content_length().unwrap() as usize
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn filters_apply_in_command_line_order() {
    let setup = Setup::new(1).await;
    let src = setup.source_client();
    for key in ["keep/a.log", "keep/b.txt", "other/c.log"] {
        put(&src, &setup.source, key, b"x").await;
    }
    // As with `aws s3 sync`, the later filter wins: everything is excluded, then keep/ is back.
    let out = s3fanout(
        &setup,
        &[
            "backfill",
            "--json",
            "--exclude",
            "*",
            "--include",
            "keep/*",
        ],
    );
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    let target = &setup.targets[0];
    let mut copied = keys(&setup.target_client(target), &target.bucket).await;
    copied.sort();
    assert_eq!(copied, ["keep/a.log", "keep/b.txt"]);
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn configuration_and_argument_errors_exit_2_with_one_line() {
    let setup = Setup::new(1).await;
    let out = run_with_env(
        &[
            ("SOURCE_BUCKETS", &setup.source),
            ("REPLICA_TARGETS", "no-region-given"),
        ],
        &["verify"],
    );
    assert_eq!(code(&out), 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("REPLICA_TARGETS") && stderr.contains("no-region-given"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(out.stdout.is_empty());

    let out = s3fanout(&setup, &["backfill", "--target", "not-a-target"]);
    assert_eq!(code(&out), 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("not-a-target") && stderr.contains("REPLICA_TARGETS"),
        "{stderr}"
    );

    let out = s3fanout(&setup, &["verify", "--delete"]);
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("--delete"));
}
