//! Error classification through the real SDK client with mocked HTTP responses.

use aws_sdk_s3::operation::copy_object::CopyObjectOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::Client;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use s3fanout::{
    Change, ChangeKind, Clients, Config, Deadline, FailureKind, Outcome, Replicator, Target,
};

fn s3_error(status: u16, code: &str) -> HttpResponse {
    let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{code} from test</Message></Error>");
    HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body))
}

fn target(bucket: &str) -> Target {
    Target {
        bucket: bucket.into(),
        region: "us-west-2".into(),
        prefix: String::new(),
        storage_class: None,
        kms_key_id: None,
    }
}

fn created(bucket: &str, key: &str) -> Change {
    Change {
        kind: ChangeKind::Created,
        bucket: bucket.into(),
        key: key.into(),
        region: None,
        etag: Some("abc".into()),
        size: Some(3),
        sequencer: None,
        version_id: None,
        alternate_key: None,
        event_time: None,
        written: None,
    }
}

fn replicator(rules: &[&Rule], targets: &[&str]) -> Replicator {
    let client: Client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, rules);
    let mut config = Config::new(
        ["src".to_string()],
        targets.iter().map(|b| target(b)).collect(),
    );
    config.replicate_deletes = true;
    Replicator::new(config, Clients::fixed(client))
}

#[tokio::test]
async fn each_target_gets_its_own_outcome_and_retry_decision() {
    let head_source = mock!(Client::head_object)
        .match_requests(|r| r.bucket() == Some("src"))
        .then_output(|| {
            HeadObjectOutput::builder()
                .e_tag("\"abc\"")
                .content_length(3)
                .metadata("owner", "a")
                .build()
        });
    let head_targets = mock!(Client::head_object)
        .match_requests(|r| r.bucket() != Some("src"))
        .then_http_response(|| s3_error(404, "NotFound"));
    // The copy source must be percent-encoded and pinned to the ETag; provenance must be added.
    let copy_ok = mock!(Client::copy_object)
        .match_requests(|r| {
            r.bucket() == Some("good")
                && r.copy_source() == Some("src/a%20b%2Bc%3F")
                && r.copy_source_if_match() == Some("\"abc\"")
                && r.metadata().is_some_and(|m| {
                    m.get("fanout-source-etag").map(String::as_str) == Some("abc")
                        && m.get("owner").map(String::as_str) == Some("a")
                })
        })
        .then_output(|| CopyObjectOutput::builder().build());
    let copy_denied = mock!(Client::copy_object)
        .match_requests(|r| r.bucket() == Some("denied"))
        .then_http_response(|| s3_error(403, "AccessDenied"));
    let copy_slow = mock!(Client::copy_object)
        .match_requests(|r| r.bucket() == Some("slow"))
        .then_http_response(|| s3_error(503, "SlowDown"));
    let copy_changed = mock!(Client::copy_object)
        .match_requests(|r| r.bucket() == Some("changed"))
        .then_http_response(|| s3_error(412, "PreconditionFailed"));

    let replicator = replicator(
        &[
            &head_source,
            &head_targets,
            &copy_ok,
            &copy_denied,
            &copy_slow,
            &copy_changed,
        ],
        &["good", "denied", "slow", "changed"],
    );
    let report = replicator
        .apply_change(&created("src", "a b+c?"), &Deadline::none())
        .await;
    let outcomes: Vec<_> = report
        .targets
        .iter()
        .map(|t| (t.bucket.as_str(), &t.outcome))
        .collect();

    assert_eq!(outcomes[0], ("good", &Outcome::Copied));
    match outcomes[1].1 {
        Outcome::Failed(failure) if failure.kind == FailureKind::Permanent => {
            assert_eq!(failure.code.as_deref(), Some("AccessDenied"));
            assert!(
                failure
                    .message
                    .contains("CopyObject s3://denied/a b+c?: AccessDenied (HTTP 403)"),
                "{failure:?}"
            )
        }
        other => panic!("denied: {other:?}"),
    }
    assert!(
        matches!(
            outcomes[2].1,
            Outcome::Failed(failure) if failure.kind == FailureKind::Retryable
                && failure.code.as_deref() == Some("SlowDown")
        ),
        "{:?}",
        outcomes[2]
    );
    // 412 on every copy while the source's HEAD keeps its ETag: the engine reads again and
    // retries within bounds, then reports the change for a later delivery.
    match outcomes[3].1 {
        Outcome::Failed(failure) if failure.kind == FailureKind::Retryable => {
            assert!(failure.message.contains("kept changing"), "{failure:?}")
        }
        other => panic!("changed: {other:?}"),
    }
    assert!(report.failed());
    assert_eq!(copy_ok.num_calls(), 1);
}

#[tokio::test]
async fn source_errors_fail_every_target() {
    let head_source =
        mock!(Client::head_object).then_http_response(|| s3_error(500, "InternalError"));
    let replicator = replicator(&[&head_source], &["t1", "t2"]);
    let report = replicator
        .apply_change(&created("src", "k"), &Deadline::none())
        .await;
    assert_eq!(report.targets.len(), 2);
    for t in &report.targets {
        match &t.outcome {
            Outcome::Failed(failure) if failure.kind == FailureKind::Retryable => assert!(
                failure.message.contains("HeadObject s3://src/k"),
                "{failure:?}"
            ),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn delete_is_skipped_when_source_exists_again() {
    let head_source = mock!(Client::head_object)
        .then_output(|| HeadObjectOutput::builder().e_tag("\"x\"").build());
    let delete = mock!(Client::delete_object).then_http_response(|| s3_error(500, "InternalError"));
    let replicator = replicator(&[&head_source, &delete], &["t1"]);
    let mut change = created("src", "k");
    change.kind = ChangeKind::Removed;
    let report = replicator.apply_change(&change, &Deadline::none()).await;
    assert_eq!(report.targets[0].outcome, Outcome::SourceExists);
    assert_eq!(delete.num_calls(), 0);
}

/// With an expected owner, every request names it, so that a bucket deleted and re-created by
/// another account answers 403 instead of receiving (or giving) data.
#[tokio::test]
async fn every_request_names_the_expected_bucket_owner() {
    const OWNER: &str = "111122223333";
    let head = mock!(Client::head_object)
        .match_requests(|r| r.expected_bucket_owner() == Some(OWNER) && r.bucket() == Some("src"))
        .then_output(|| {
            HeadObjectOutput::builder()
                .e_tag("\"abc\"")
                .content_length(3)
                .build()
        });
    let head_replica = mock!(Client::head_object)
        .match_requests(|r| r.expected_bucket_owner() == Some(OWNER) && r.bucket() == Some("t1"))
        .then_http_response(|| s3_error(404, "NotFound"));
    let copy = mock!(Client::copy_object)
        .match_requests(|r| {
            r.expected_bucket_owner() == Some(OWNER)
                && r.expected_source_bucket_owner() == Some(OWNER)
        })
        .then_output(|| CopyObjectOutput::builder().build());
    let client: Client = mock_client!(
        aws_sdk_s3,
        RuleMode::MatchAny,
        &[&head, &head_replica, &copy]
    );
    let mut config = Config::new(["src".to_string()], vec![target("t1")]);
    config.expected_owner = Some(OWNER.into());
    config.replicate_deletes = true;
    let replicator = Replicator::new(config, Clients::fixed(client));
    let report = replicator
        .apply_change(&created("src", "k"), &Deadline::none())
        .await;
    assert_eq!(report.targets[0].outcome, Outcome::Copied);
    // A created object is copied without reading the replica; with deletes propagating, the
    // source is read again after the copy lands.
    assert_eq!((head.num_calls(), copy.num_calls()), (2, 1));
    assert_eq!(head_replica.num_calls(), 0);
    // A tag change reads the replica first.
    let mut change = created("src", "k");
    change.kind = ChangeKind::Tagged;
    let report = replicator.apply_change(&change, &Deadline::none()).await;
    assert_eq!(report.targets[0].outcome, Outcome::Copied);
    assert_eq!(head_replica.num_calls(), 1);
    assert_eq!((head.num_calls(), copy.num_calls()), (4, 2));
}

/// HeadObject of an object encrypted with a customer-provided key answers a bare 400 (no body)
/// when the key is missing: the failure is permanent and says why, unless the 400 names the
/// bucket's region (a request signed for another region).
#[tokio::test]
async fn a_bare_400_on_the_source_head_names_sse_c() {
    let sse_c = mock!(Client::head_object)
        .match_requests(|r| r.key() == Some("secret"))
        .then_http_response(|| {
            HttpResponse::new(StatusCode::try_from(400).unwrap(), SdkBody::empty())
        });
    let elsewhere = mock!(Client::head_object)
        .match_requests(|r| r.key() == Some("elsewhere"))
        .then_http_response(|| {
            let mut response =
                HttpResponse::new(StatusCode::try_from(400).unwrap(), SdkBody::empty());
            response
                .headers_mut()
                .insert("x-amz-bucket-region", "eu-west-1");
            response
        });
    let replicator = replicator(&[&sse_c, &elsewhere], &["t1"]);
    let report = replicator
        .apply_change(&created("src", "secret"), &Deadline::none())
        .await;
    match &report.targets[0].outcome {
        Outcome::Failed(failure) => {
            assert_eq!(failure.kind, FailureKind::Permanent, "{failure:?}");
            assert!(
                failure.message.contains(
                    "HeadObject s3://src/secret: the object is encrypted with a customer-provided key (SSE-C), which replication cannot copy without the key"
                ),
                "{failure:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let report = replicator
        .apply_change(&created("src", "elsewhere"), &Deadline::none())
        .await;
    match &report.targets[0].outcome {
        Outcome::Failed(failure) => {
            assert!(!failure.message.contains("SSE-C"), "{failure:?}")
        }
        other => panic!("{other:?}"),
    }
}

/// Per-bucket owners and Requester Pays buckets, as the configuration gives them, reach each
/// request: a copy names the source's owner apart from the destination's, and says who pays
/// when either bucket is Requester Pays.
#[tokio::test]
async fn each_bucket_has_its_own_owner_and_payer() {
    let head = mock!(Client::head_object)
        .match_requests(|r| {
            r.bucket() == Some("src")
                && r.expected_bucket_owner() == Some("444455556666")
                && r.request_payer().is_some()
        })
        .then_output(|| {
            HeadObjectOutput::builder()
                .e_tag("\"abc\"")
                .content_length(3)
                .build()
        });
    let copy_other = mock!(Client::copy_object)
        .match_requests(|r| {
            r.bucket() == Some("rep-1")
                && r.expected_bucket_owner() == Some("111122223333")
                && r.expected_source_bucket_owner() == Some("444455556666")
                && r.request_payer().is_some()
        })
        .then_output(|| CopyObjectOutput::builder().build());
    let copy_own = mock!(Client::copy_object)
        .match_requests(|r| {
            r.bucket() == Some("rep-2")
                && r.expected_bucket_owner() == Some("123456789012")
                && r.expected_source_bucket_owner() == Some("444455556666")
                && r.request_payer().is_some()
        })
        .then_output(|| CopyObjectOutput::builder().build());
    let client: Client = mock_client!(
        aws_sdk_s3,
        RuleMode::MatchAny,
        &[&head, &copy_other, &copy_own]
    );
    let vars = [
        (
            "SOURCE_BUCKETS",
            "src?expected_owner=444455556666&request_payer=requester",
        ),
        (
            "REPLICA_TARGETS",
            "rep-1@us-west-2?expected_owner=111122223333,rep-2@us-west-2",
        ),
        ("EXPECTED_BUCKET_OWNER", "123456789012"),
    ];
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    let replicator = Replicator::new(config, Clients::fixed(client));
    let report = replicator
        .apply_change(&created("src", "k"), &Deadline::none())
        .await;
    for t in &report.targets {
        assert_eq!(t.outcome, Outcome::Copied, "{}", t.bucket);
    }
    assert_eq!(
        (
            head.num_calls(),
            copy_other.num_calls(),
            copy_own.num_calls()
        ),
        (1, 1, 1)
    );
}
