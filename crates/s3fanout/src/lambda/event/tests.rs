use super::*;

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../tests/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn direct(value: &Value) -> Vec<Change> {
    match parse_invocation(value).unwrap() {
        Invocation::Direct(changes) => changes,
        other => panic!("expected a direct invocation, got {other:?}"),
    }
}

#[test]
fn direct_s3_notification_in_documented_shape() {
    let changes = direct(&fixture("s3-put.json"));
    assert_eq!(
        changes,
        vec![Change {
            kind: ChangeKind::Created,
            bucket: "source-bucket".into(),
            key: "photos/red flower + café.jpg".into(),
            region: Some("us-east-1".into()),
            etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
            size: Some(1024),
            sequencer: Some("0055AED6DCD90281E5".into()),
            version_id: Some("096fKKXTRTtl3on89fVO.nfljtsv6qko".into()),
            alternate_key: None,
            // eventTime 2026-11-21T20:10:00.000Z
            event_time: Some(1_795_291_800_000),
            written: Some(Written::Uploaded),
        }]
    );
}

#[test]
fn minimal_record_without_optional_fields_is_accepted() {
    let changes = direct(&fixture("s3-delete-minimal.json"));
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].kind, ChangeKind::Removed);
    assert_eq!(changes[0].key, "dir/a b");
    assert_eq!(changes[0].etag, None);
    assert_eq!(changes[0].sequencer, None);
}

#[test]
fn sqs_batch_keeps_each_message_apart() {
    let Invocation::Sqs(items) = parse_invocation(&fixture("sqs.json")).unwrap() else {
        panic!("expected SQS");
    };
    let ids: Vec<_> = items.iter().map(|i| i.message_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "msg-put",
            "msg-test",
            "msg-broken",
            "msg-sns",
            "msg-eventbridge"
        ]
    );

    let put = items[0].changes.as_ref().unwrap();
    assert_eq!(put[0].key, "a?b#c");
    assert_eq!(put[0].etag.as_deref(), Some("abc"));

    assert!(
        items[1].changes.as_ref().unwrap().is_empty(),
        "s3:TestEvent is ignored"
    );

    let broken = items[2].changes.as_ref().unwrap_err().to_string();
    assert!(
        broken.contains("msg-broken") && broken.contains("not JSON"),
        "{broken}"
    );

    let sns = items[3].changes.as_ref().unwrap();
    assert_eq!(
        (sns[0].kind, sns[0].key.as_str()),
        (ChangeKind::Created, "via sns")
    );

    let eb = items[4].changes.as_ref().unwrap();
    assert_eq!(
        (eb[0].kind, eb[0].key.as_str()),
        (ChangeKind::Removed, "gone")
    );
    assert_eq!(eb[0].region.as_deref(), Some("eu-west-1"));
}

#[test]
fn sns_event_unwraps_message_and_strips_etag_quotes() {
    let changes = direct(&fixture("sns.json"));
    assert_eq!(changes[0].key, "big/file.bin");
    assert_eq!(
        changes[0].etag.as_deref(),
        Some("9b2cf535f27731c974343645a3985328-2")
    );
}

#[test]
fn eventbridge_object_created() {
    let changes = direct(&fixture("eventbridge-created.json"));
    assert_eq!(changes[0].kind, ChangeKind::Created);
    assert_eq!(changes[0].key, "example-key");
    assert_eq!(
        changes[0].version_id.as_deref(),
        Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e")
    );
    assert_eq!(changes[0].region.as_deref(), Some("ca-central-1"));
}

/// EventBridge's `detail.object.key` is the key as written (guidance-for-medialake-on-aws PR #21
/// after real uploads of `%2B%20%%%.png` and `test+b.png`; moto sends it raw too), unlike
/// notification records; the decoded spelling is kept for the case it is not.
#[test]
fn eventbridge_keys_are_used_as_delivered() {
    let mut eb = fixture("eventbridge-created.json");
    eb["detail"]["object"]["key"] = "a+b %2B.txt".into();
    let changes = direct(&eb);
    assert_eq!(changes[0].key, "a+b %2B.txt");
    assert_eq!(changes[0].alternate_key.as_deref(), Some("a b +.txt"));
    eb["detail"]["object"]["key"] = "plain/key.txt".into();
    assert_eq!(direct(&eb)[0].alternate_key, None);
}

/// An archived object can be copied once its restore completes (S3 user guide, "Event
/// notification types": `s3:ObjectRestore:Completed`; EventBridge "Object Restore
/// Completed"); the restore's start and the expiry of the restored copy change nothing.
#[test]
fn restores_that_complete_replicate_the_object() {
    let record = |name: &str| {
        serde_json::json!({"Records":[{"eventName": name,
            "s3":{"bucket":{"name":"b"},"object":{"key":"k","eTag":"e","size":3}}}]})
    };
    let completed = direct(&record("ObjectRestore:Completed"));
    assert_eq!(completed[0].kind, ChangeKind::Created);
    assert_eq!(completed[0].etag.as_deref(), Some("e"));
    assert!(direct(&record("ObjectRestore:Post")).is_empty());
    assert!(direct(&record("ObjectRestore:Delete")).is_empty());
    let mut eb = fixture("eventbridge-created.json");
    eb["detail-type"] = "Object Restore Completed".into();
    assert_eq!(direct(&eb)[0].kind, ChangeKind::Created);
    eb["detail-type"] = "Object Restore Initiated".into();
    assert!(direct(&eb).is_empty());
}

#[test]
fn events_that_do_not_change_content_are_ignored() {
    let mut eb = fixture("eventbridge-created.json");
    eb["detail-type"] = "Object Restore Expired".into();
    assert!(direct(&eb).is_empty());
    // Tag changes are changes: replicas take the new tags.
    eb["detail-type"] = "Object Tags Added".into();
    assert_eq!(direct(&eb)[0].kind, ChangeKind::Tagged);
    let tagging = serde_json::json!({"Records":[{"eventName":"ObjectTagging:Put",
        "s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]});
    assert_eq!(direct(&tagging)[0].kind, ChangeKind::Tagged);
    let test_event = serde_json::json!({"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"});
    assert!(direct(&test_event).is_empty());
}

#[test]
fn malformed_events_get_precise_errors() {
    let cases = [
        (
            serde_json::json!({"hello": "world"}),
            "expected an S3 notification",
        ),
        (
            serde_json::json!({"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{}}}]}),
            "record 0: missing field `key`",
        ),
        (
            serde_json::json!({"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%FF"}}}]}),
            "not valid form-URL-encoded UTF-8",
        ),
        (
            serde_json::json!({"Records":[{"foo":1}]}),
            "record 0 is neither an S3 nor an SNS record",
        ),
        (
            serde_json::json!({"Records":[{"EventSource":"aws:sns","Sns":{"Message":"nope"}}]}),
            "SNS record 0: Message is not JSON",
        ),
        (
            serde_json::json!({"source":"aws.s3","detail-type":"Object Created","detail":{}}),
            "EventBridge event: missing field `bucket`",
        ),
        (
            serde_json::json!({"Records":[{"eventSource":"aws:sqs","body":"{}"}]}),
            "SQS record 0 has no messageId",
        ),
    ];
    for (event, expected) in cases {
        let message = parse_invocation(&event).unwrap_err().to_string();
        assert!(
            message.contains(expected),
            "{message:?} should contain {expected:?}"
        );
    }
}

#[test]
fn event_times_come_from_each_shape_with_the_sqs_send_time_as_fallback() {
    assert_eq!(
        direct(&fixture("eventbridge-created.json"))[0].event_time,
        Some(1_795_291_200_000),
        "EventBridge time 2026-11-21T20:00:00Z"
    );
    let Invocation::Sqs(items) = parse_invocation(&fixture("sqs.json")).unwrap() else {
        panic!("expected SQS");
    };
    // The S3 record in msg-put has no eventTime: SentTimestamp stands in.
    assert_eq!(
        items[0].changes.as_ref().unwrap()[0].event_time,
        Some(1_545_082_649_183)
    );
    // No time anywhere: none.
    assert_eq!(items[3].changes.as_ref().unwrap()[0].event_time, None);

    // A notification's own time wins over the queue's.
    let mut sqs = fixture("sqs.json");
    let mut body: Value =
        serde_json::from_str(sqs["Records"][0]["body"].as_str().unwrap()).unwrap();
    body["Records"][0]["eventTime"] = "2026-01-01T00:00:00.250Z".into();
    sqs["Records"][0]["body"] = body.to_string().into();
    let Invocation::Sqs(items) = parse_invocation(&sqs).unwrap() else {
        panic!("expected SQS");
    };
    assert_eq!(
        items[0].changes.as_ref().unwrap()[0].event_time,
        Some(1_767_225_600_250)
    );
}

#[test]
fn an_unreadable_event_time_costs_the_measurement_not_the_change() {
    let mut put = fixture("s3-put.json");
    put["Records"][0]["eventTime"] = "yesterday".into();
    let changes = direct(&put);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].event_time, None);
}

#[test]
fn sqs_items_carry_what_a_visibility_change_needs() {
    let Invocation::Sqs(items) = parse_invocation(&fixture("sqs.json")).unwrap() else {
        panic!("expected SQS");
    };
    assert_eq!(
        items[0].receipt_handle.as_deref(),
        Some("AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a")
    );
    assert_eq!(items[0].receive_count, Some(1));
    assert_eq!(
        items[0].queue_arn.as_deref(),
        Some("arn:aws:sqs:us-east-1:123456789012:replicate")
    );
    assert_eq!(
        (items[1].receipt_handle.as_deref(), items[1].receive_count),
        (None, None)
    );
}

#[test]
fn sns_subscription_handshakes_in_a_queue_are_ignored() {
    for kind in ["SubscriptionConfirmation", "UnsubscribeConfirmation"] {
        let handshake = serde_json::json!({
            "Type": kind,
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:s3-events",
            "Message": "You have chosen to subscribe to the topic arn:aws:sns:us-east-1:123456789012:s3-events.",
            "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
            "Timestamp": "2026-01-01T00:00:00.000Z",
        });
        let sqs = serde_json::json!({"Records": [{
            "messageId": "msg-handshake", "receiptHandle": "h", "body": handshake.to_string(),
            "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:replicate",
        }]});
        let Invocation::Sqs(items) = parse_invocation(&sqs).unwrap() else {
            panic!("expected SQS");
        };
        assert_eq!(items[0].changes, Ok(Vec::new()), "{kind} is not a failure");
        // Any other SNS message type without Records is still refused.
        let mut unknown = handshake.clone();
        unknown["Type"] = "Something".into();
        assert!(parse_notification(&unknown).is_err());
    }
}

/// How an object was written comes from the notification's event name or EventBridge's
/// `detail.reason`; only a client's upload may be copied before its headers are read.
#[test]
fn how_a_created_object_was_written_is_kept() {
    let written = |name: &str| {
        let record = serde_json::json!({"Records":[{"eventName": name,
            "s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]});
        direct(&record)[0].written
    };
    assert_eq!(written("ObjectCreated:Put"), Some(Written::Uploaded));
    assert_eq!(written("ObjectCreated:Post"), Some(Written::Uploaded));
    assert_eq!(written("s3:ObjectCreated:Copy"), Some(Written::Copied));
    assert_eq!(
        written("ObjectCreated:CompleteMultipartUpload"),
        Some(Written::Assembled)
    );
    assert_eq!(written("ObjectRestore:Completed"), None);
    let mut eb = fixture("eventbridge-created.json");
    let reason = eb["detail"]["reason"].as_str().map(str::to_string);
    assert_eq!(
        reason.as_deref(),
        Some("PutObject"),
        "as AWS's sample shows"
    );
    assert_eq!(direct(&eb)[0].written, Some(Written::Uploaded));
    eb["detail"]["reason"] = "CopyObject".into();
    assert_eq!(direct(&eb)[0].written, Some(Written::Copied));
    eb["detail"]["reason"] = "Something new".into();
    assert_eq!(direct(&eb)[0].written, None);
}
