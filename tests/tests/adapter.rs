//! The aws-sdk-s3 adapter over the wire: what each request carries and what the answers mean,
//! seen through a recording proxy in front of the local S3 server.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm as SdkChecksumAlgorithm, ChecksumMode};
use fault_proxy::{FaultProxy, Seen};
use integration::*;
use s3fanout::core::object::ChecksumAlgorithm;
use s3fanout::store::s3::S3Store;
use s3fanout::store::{
    CopyRange, CopyRequest, Directive, ObjectAt, PartCopyRequest, ReplicaAttributes, WriteCondition,
};
use s3fanout::{event, Config, FailureKind, Outcome, Replicator, Store};

const MIB: usize = 1024 * 1024;

/// A configuration read from the functions' own variables.
fn config_from(vars: &[(&str, String)]) -> Config {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Config::from_lookup(|name| vars.get(name).cloned()).expect("valid configuration")
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.amz.get(name).map(String::as_str)
}

fn payer(seen: &Seen) -> Option<&str> {
    header(seen, "x-amz-request-payer")
}

fn attributes() -> ReplicaAttributes {
    ReplicaAttributes {
        headers: Default::default(),
        metadata: BTreeMap::new(),
        storage_class: None,
        kms_key_id: None,
        checksum: s3fanout::core::object::ChecksumAlgorithm::Crc64Nvme,
    }
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn removing_every_source_tag_removes_the_replicas_tags_with_delete_object_tagging() {
    let setup = Setup::new(1).await;
    let target = &setup.targets[0];
    let src = setup.source_client();
    let etag = put_rich(&src, &setup.source, "tagged", b"with tags").await;
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    let replicator = Replicator::new(setup.config(), clients_via(&proxy.endpoint(), 1).await);
    let report = replicator
        .apply(&[created(&setup.source, "tagged", Some(&etag))])
        .await;
    assert_eq!(report[0].targets[0].outcome, Outcome::Copied);
    let replica = snapshot(&setup.target_client(target), &target.bucket, "tagged")
        .await
        .unwrap();
    assert_eq!(replica.tags.len(), 3, "{:?}", replica.tags);

    src.delete_object_tagging()
        .bucket(&setup.source)
        .key("tagged")
        .send()
        .await
        .unwrap();
    let changes = event::parse_notification(&notification(vec![s3_record(
        "ObjectTagging:Delete",
        &setup.source,
        "tagged",
        Some(&etag),
    )]))
    .unwrap();
    proxy.take_seen();
    let report = replicator.apply(&changes).await;
    assert_eq!(report[0].targets[0].outcome, Outcome::TagsUpdated);
    let seen = proxy.take_seen();
    let tagging_writes: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.bucket == target.bucket && s.query.contains("tagging"))
        .filter(|s| s.method != "GET")
        .collect();
    assert_eq!(
        tagging_writes
            .iter()
            .map(|s| s.method.as_str())
            .collect::<Vec<_>>(),
        ["DELETE"],
        "the tags are removed by DeleteObjectTagging, not an empty PutObjectTagging: {seen:?}"
    );
    let replica = snapshot(&setup.target_client(target), &target.bucket, "tagged")
        .await
        .unwrap();
    assert!(replica.tags.is_empty(), "{:?}", replica.tags);
    assert_eq!(replica.body, b"with tags");
}

/// An SSE-C key as its headers carry it: the 32 bytes `0123456789abcdef0123456789abcdef` in
/// base64, and the base64 of their MD5.
const SSE_C_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const SSE_C_KEY_MD5: &str = "hRasmdxgYDKV3nvbahU1MA==";

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn an_sse_c_source_fails_for_good_naming_the_customer_key() {
    let setup = Setup::new(1).await;
    let target = &setup.targets[0];
    let src = setup.source_client();
    let out = src
        .put_object()
        .bucket(&setup.source)
        .key("secret")
        .body(ByteStream::from_static(b"customer-encrypted"))
        .sse_customer_algorithm("AES256")
        .sse_customer_key(SSE_C_KEY)
        .sse_customer_key_md5(SSE_C_KEY_MD5)
        .send()
        .await
        .unwrap();
    let etag = out.e_tag().unwrap().trim_matches('"').to_string();

    let replicator = setup.replicator(setup.config()).await;
    let report = replicator
        .apply(&[created(&setup.source, "secret", Some(&etag))])
        .await;
    match &report[0].targets[0].outcome {
        Outcome::Failed(failure) => {
            println!("{}", failure.message);
            assert_eq!(failure.kind, FailureKind::Permanent, "{failure:?}");
            assert!(
                failure
                    .message
                    .contains("encrypted with a customer-provided key (SSE-C)"),
                "{failure:?}"
            );
            assert!(failure.message.contains("HeadObject"), "{failure:?}");
        }
        other => panic!("an SSE-C source cannot be copied: {other:?}"),
    }

    // The copies themselves, should a source be copied without being read first.
    let store = S3Store::new(clients().await);
    let source = ObjectAt {
        bucket: &setup.source,
        region: Some("us-east-1"),
        key: "secret",
    };
    let destination = ObjectAt {
        bucket: &target.bucket,
        region: Some(&target.region),
        key: "secret",
    };
    let attributes = attributes();
    let failure = store
        .copy_object(&CopyRequest {
            source,
            source_etag: &etag,
            destination,
            attributes: &attributes,
            directive: Directive::Replace,
            condition: WriteCondition::Any,
        })
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Permanent, "{failure:?}");
    println!("{}", failure.message);
    assert!(failure.message.contains("CopyObject"), "{failure:?}");
    assert!(failure.message.contains("(SSE-C)"), "{failure:?}");
    let upload = store
        .create_upload(destination, &attributes, &[])
        .await
        .unwrap();
    let failure = store
        .copy_part(&PartCopyRequest {
            source,
            source_etag: &etag,
            destination,
            upload_id: &upload,
            part_number: 1,
            first: 0,
            last: 5,
            range: CopyRange::WholeObject,
        })
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Permanent, "{failure:?}");
    assert!(failure.message.contains("UploadPartCopy"), "{failure:?}");
    assert!(failure.message.contains("(SSE-C)"), "{failure:?}");
    store.abort_upload(destination, &upload).await.unwrap();
    assert!(
        snapshot(&setup.target_client(target), &target.bucket, "secret")
            .await
            .is_none(),
        "nothing was written"
    );
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn requester_pays_buckets_get_the_header_on_every_request() {
    let setup = Setup::new(2).await;
    let (paid, free) = (&setup.targets[0], &setup.targets[1]);
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    let src = setup.source_client();
    let source_etag = put_rich(&src, &setup.source, "k", b"paid for").await;

    // One target is Requester Pays, the source and the other target are not.
    let config = config_from(&[
        ("SOURCE_BUCKETS", setup.source.clone()),
        (
            "REPLICA_TARGETS",
            format!(
                "{}@{}?request_payer=requester,{}@{}",
                paid.bucket, paid.region, free.bucket, free.region
            ),
        ),
        ("REPLICATE_DELETES", "true".into()),
    ]);
    assert_eq!(config.requester_pays, BTreeSet::from([paid.bucket.clone()]));
    let replicator = Replicator::new(config, clients_via(&proxy.endpoint(), 1).await);
    let report = replicator
        .apply(&[created(&setup.source, "k", Some(&source_etag))])
        .await;
    assert!(report[0]
        .targets
        .iter()
        .all(|t| t.outcome == Outcome::Copied));
    let seen = proxy.take_seen();
    assert!(seen.iter().any(|s| s.bucket == paid.bucket && s.copy));
    for s in &seen {
        let expected = (s.bucket == paid.bucket).then_some("requester");
        assert_eq!(payer(s), expected, "{s:?}");
    }

    // The source Requester Pays: every read of it, and every copy from it, says who pays.
    let config = config_from(&[
        (
            "SOURCE_BUCKETS",
            format!("{}?request_payer=requester", setup.source),
        ),
        (
            "REPLICA_TARGETS",
            format!("{}@{}", free.bucket, free.region),
        ),
    ]);
    let clients = clients_via(&proxy.endpoint(), 1).await;
    let replicator = Replicator::new(config, clients);
    let etag = put(&src, &setup.source, "k2", b"second").await;
    let report = replicator
        .apply(&[created(&setup.source, "k2", Some(&etag))])
        .await;
    assert_eq!(report[0].targets[0].outcome, Outcome::Copied);
    let seen = proxy.take_seen();
    assert!(seen.iter().any(|s| s.copy), "{seen:?}");
    for s in &seen {
        let expected = (s.bucket == setup.source || s.copy).then_some("requester");
        assert_eq!(payer(s), expected, "{s:?}");
    }

    // The requests the SDK models without the parameter carry it too, and so does every other
    // request of the port.
    let store = S3Store::new(clients_via(&proxy.endpoint(), 1).await)
        .with_requester_pays(BTreeSet::from([paid.bucket.clone()]));
    let at = ObjectAt {
        bucket: &paid.bucket,
        region: Some(&paid.region),
        key: "k",
    };
    assert!(store
        .bucket_exists(&paid.bucket, Some(&paid.region))
        .await
        .unwrap());
    assert!(store.head(at, None).await.unwrap().is_some());
    assert_eq!(store.get_tags(at).await.unwrap().len(), 3);
    store.put_tags(at, &[]).await.unwrap();
    store
        .list_page(
            &paid.bucket,
            Some(&paid.region),
            "",
            s3fanout::store::ListFrom::StartAfter(None),
            10,
        )
        .await
        .unwrap();
    let upload = store.create_upload(at, &attributes(), &[]).await.unwrap();
    assert_eq!(store.list_uploads(at).await.unwrap().len(), 1);
    assert!(store.list_parts(at, &upload).await.unwrap().is_empty());
    store.abort_upload(at, &upload).await.unwrap();
    let small = ObjectAt { key: "doc", ..at };
    store
        .put_small_object(small, b"{}", &WriteCondition::Absent)
        .await
        .unwrap();
    assert!(store.get_small_object(small).await.unwrap().is_some());
    store.delete(small, &WriteCondition::Any).await.unwrap();
    let seen = proxy.take_seen();
    assert_eq!(seen.len(), 12, "{seen:?}");
    for s in &seen {
        assert_eq!(payer(s), Some("requester"), "{s:?}");
    }
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn each_bucket_is_sent_its_own_expected_owner() {
    const GLOBAL: &str = "123456789012";
    const SOURCE_OWNER: &str = "444455556666";
    const OTHER_ACCOUNT: &str = "111122223333";
    let setup = Setup::new(2).await;
    let (other, own) = (&setup.targets[0], &setup.targets[1]);
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    let src = setup.source_client();
    let etag = put(&src, &setup.source, "k", b"owned").await;
    let config = config_from(&[
        (
            "SOURCE_BUCKETS",
            format!("{}?expected_owner={SOURCE_OWNER}", setup.source),
        ),
        (
            "REPLICA_TARGETS",
            format!(
                "{}@{}?expected_owner={OTHER_ACCOUNT},{}@{}",
                other.bucket, other.region, own.bucket, own.region
            ),
        ),
        ("EXPECTED_BUCKET_OWNER", GLOBAL.into()),
        ("REPLICATE_DELETES", "true".into()),
    ]);
    let replicator = Replicator::new(config, clients_via(&proxy.endpoint(), 1).await);
    let report = replicator
        .apply(&[created(&setup.source, "k", Some(&etag))])
        .await;
    assert!(report[0]
        .targets
        .iter()
        .all(|t| t.outcome == Outcome::Copied));
    let seen = proxy.take_seen();
    let owner_of = |bucket: &str| match bucket {
        b if b == setup.source => SOURCE_OWNER,
        b if b == other.bucket => OTHER_ACCOUNT,
        _ => GLOBAL,
    };
    assert_eq!(seen.iter().filter(|s| s.copy).count(), 2, "{seen:?}");
    for s in &seen {
        assert_eq!(
            header(s, "x-amz-expected-bucket-owner"),
            Some(owner_of(&s.bucket)),
            "{s:?}"
        );
        let source_owner = header(s, "x-amz-source-expected-bucket-owner");
        assert_eq!(source_owner, s.copy.then_some(SOURCE_OWNER), "{s:?}");
    }
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn uploads_of_a_key_are_found_on_every_page() {
    let clients = clients().await;
    let bucket = unique("uploads");
    create_bucket(&clients, &bucket, "us-east-1").await;
    let client = clients.for_region("us-east-1");
    let create = |key: &'static str| {
        let client = client.clone();
        let bucket = bucket.clone();
        async move {
            client
                .create_multipart_upload()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap()
                .upload_id()
                .unwrap()
                .to_string()
        }
    };
    let mut own = Vec::new();
    for _ in 0..5 {
        own.push(create("k").await);
    }
    for key in ["j", "k/1", "k/2", "k/3", "kz"] {
        create(key).await;
    }
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    let store = S3Store::new(clients_via(&proxy.endpoint(), 1).await).with_upload_page_size(2);
    let at = ObjectAt {
        bucket: &bucket,
        region: Some("us-east-1"),
        key: "k",
    };
    let found: Vec<String> = store
        .list_uploads(at)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.upload_id)
        .collect();
    assert_eq!(
        BTreeSet::from_iter(found.iter()),
        BTreeSet::from_iter(own.iter())
    );
    assert_eq!(found.len(), 5);
    // Pages [k, k], [k, k], [k, k/1]: the third shows a later key, so no fourth is read.
    let pages = proxy
        .take_seen()
        .iter()
        .filter(|s| s.query.contains("uploads"))
        .count();
    assert_eq!(pages, 3);

    // S3's own page of 1,000, with the key's uploads beyond it.
    for _ in 0..997 {
        own.push(create("k").await);
    }
    let store = S3Store::new(clients_via(&proxy.endpoint(), 1).await);
    let found = store.list_uploads(at).await.unwrap();
    assert_eq!(found.len(), 1002);
    let found: BTreeSet<String> = found.into_iter().map(|u| u.upload_id).collect();
    assert_eq!(found, BTreeSet::from_iter(own.iter().cloned()));
    let pages = proxy
        .take_seen()
        .iter()
        .filter(|s| s.query.contains("uploads"))
        .count();
    assert_eq!(pages, 2);
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_replicas_checksum_is_computed_from_the_bytes_it_received() {
    let setup = Setup::new(1).await;
    let target = &setup.targets[0];
    let src = setup.source_client();
    let body = b"the same bytes, twice".to_vec();
    let mut etags = Vec::new();
    // One source with the SDK's CRC64NVME, one with a CRC32 only.
    for (key, algorithm) in [
        ("crc64", SdkChecksumAlgorithm::Crc64Nvme),
        ("crc32", SdkChecksumAlgorithm::Crc32),
    ] {
        let out = src
            .put_object()
            .bucket(&setup.source)
            .key(key)
            .checksum_algorithm(algorithm)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
        etags.push((key, out.e_tag().unwrap().trim_matches('"').to_string()));
    }
    let source_crc64 = src
        .head_object()
        .bucket(&setup.source)
        .key("crc64")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap()
        .checksum_crc64_nvme()
        .expect("the SDK sent a CRC64NVME")
        .to_string();

    let replicator = setup.replicator(setup.config()).await;
    let changes: Vec<_> = etags
        .iter()
        .map(|(key, etag)| created(&setup.source, key, Some(etag)))
        .collect();
    for report in replicator.apply(&changes).await {
        assert_eq!(report.targets[0].outcome, Outcome::Copied, "{report:?}");
    }

    let store = S3Store::new(clients().await);
    let source_head = store
        .head(
            ObjectAt {
                bucket: &setup.source,
                region: Some("us-east-1"),
                key: "crc64",
            },
            None,
        )
        .await
        .unwrap()
        .unwrap();
    let checksum = source_head.checksum.expect("a full-object checksum");
    assert_eq!(checksum.algorithm, ChecksumAlgorithm::Crc64Nvme);
    assert_eq!(checksum.value, source_crc64);
    let source_crc32 = store
        .head(
            ObjectAt {
                bucket: &setup.source,
                region: Some("us-east-1"),
                key: "crc32",
            },
            None,
        )
        .await
        .unwrap()
        .unwrap()
        .checksum
        .expect("a full-object CRC32");
    assert_eq!(source_crc32.algorithm, ChecksumAlgorithm::Crc32);
    // Each replica's checksum is computed afresh, in its source's algorithm: they compare.
    for (key, expected) in [("crc64", checksum.clone()), ("crc32", source_crc32)] {
        let replica = store
            .head(
                ObjectAt {
                    bucket: &target.bucket,
                    region: Some(&target.region),
                    key,
                },
                None,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(replica.checksum, Some(expected), "{key}");
    }
}

/// A copy by parts asks for a full-object CRC64NVME (`CreateMultipartUpload` with
/// `x-amz-checksum-algorithm: CRC64NVME` and `x-amz-checksum-type: FULL_OBJECT`), gets each
/// part's checksum back from `UploadPartCopy`, and declares the source's checksum on completion
/// (`x-amz-checksum-crc64nvme`, `x-amz-checksum-type: FULL_OBJECT`): other bytes are refused
/// with 400 BadDigest, and nothing lands; the source's complete.
#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_copy_by_parts_declares_the_sources_full_object_checksum() {
    let setup = Setup::new(1).await;
    let target = setup.targets[0].clone();
    let src = setup.source_client();
    let body: Vec<u8> = (0..6 * MIB).map(|i| (i % 251) as u8).collect();
    src.put_object()
        .bucket(&setup.source)
        .key("big")
        .checksum_algorithm(SdkChecksumAlgorithm::Crc64Nvme)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let proxy = FaultProxy::start(&local_endpoint()).await.unwrap();
    let store = S3Store::new(clients_via(&proxy.endpoint(), 1).await);
    let source = ObjectAt {
        bucket: &setup.source,
        region: Some("us-east-1"),
        key: "big",
    };
    let destination = ObjectAt {
        bucket: &target.bucket,
        region: Some(&target.region),
        key: "big",
    };
    let head = store.head(source, None).await.unwrap().unwrap();
    let whole = head.checksum.clone().expect("a CRC64NVME");
    assert_eq!(whole.algorithm, ChecksumAlgorithm::Crc64Nvme);
    let upload = store
        .create_upload(destination, &attributes(), &[])
        .await
        .unwrap();
    let mut parts = Vec::new();
    for (number, first, last) in [(1, 0, 5 * MIB - 1), (2, 5 * MIB, 6 * MIB - 1)] {
        let copied = store
            .copy_part(&PartCopyRequest {
                source,
                source_etag: &head.etag,
                destination,
                upload_id: &upload,
                part_number: number,
                first: first as u64,
                last: last as u64,
                range: CopyRange::Bytes,
            })
            .await
            .unwrap();
        assert_eq!(
            copied.checksum.as_ref().map(|c| c.algorithm),
            Some(ChecksumAlgorithm::Crc64Nvme),
            "{copied:?}"
        );
        parts.push(s3fanout::store::Part {
            number,
            etag: copied.etag,
            size: (last + 1 - first) as u64,
            checksum: copied.checksum,
        });
    }
    let created = proxy
        .take_seen()
        .into_iter()
        .find(|s| s.method == "POST" && s.query.contains("uploads"))
        .expect("CreateMultipartUpload");
    assert_eq!(
        header(&created, "x-amz-checksum-algorithm"),
        Some("CRC64NVME")
    );
    assert_eq!(header(&created, "x-amz-checksum-type"), Some("FULL_OBJECT"));
    let other = s3fanout::core::object::Checksum {
        algorithm: ChecksumAlgorithm::Crc64Nvme,
        value: "AAAAAAAAAAA=".into(),
    };
    let refused = store
        .complete_upload(
            destination,
            &upload,
            &parts,
            Some(&other),
            &WriteCondition::Any,
        )
        .await
        .unwrap_err();
    println!("{}", refused.message);
    assert_eq!(
        (refused.status, refused.code.as_deref()),
        (Some(400), Some("BadDigest"))
    );
    assert!(store.head(destination, None).await.unwrap().is_none());
    store
        .complete_upload(
            destination,
            &upload,
            &parts,
            Some(&whole),
            &WriteCondition::Any,
        )
        .await
        .unwrap();
    let completes: Vec<Seen> = proxy
        .take_seen()
        .into_iter()
        .filter(|s| s.method == "POST" && s.query.contains("uploadId"))
        .collect();
    assert_eq!(completes.len(), 2);
    assert_eq!(
        header(&completes[1], "x-amz-checksum-crc64nvme"),
        Some(whole.value.as_str())
    );
    assert_eq!(
        header(&completes[1], "x-amz-checksum-type"),
        Some("FULL_OBJECT")
    );
    let replica = store.head(destination, None).await.unwrap().unwrap();
    assert_eq!(replica.checksum, Some(whole));
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_part_range_beyond_a_source_that_shrank_reads_as_a_changed_source() {
    // A copy by parts pinned to a 6 MiB source, which is then overwritten by a 1 MiB one. S3
    // checks a part's range before its `x-amz-copy-source-if-match`, so parts past the new end
    // answer a range error rather than 412: either way, the source changed (the copy starts
    // over from it as it is now), never a failure for good.
    let setup = Setup::new(1).await;
    let target = &setup.targets[0];
    let src = setup.source_client();
    let etag = put_sized(&src, &setup.source, "shrinks", 6 * MIB).await;
    put_sized(&src, &setup.source, "shrinks", MIB).await;
    let store = S3Store::new(clients().await);
    let source = ObjectAt {
        bucket: &setup.source,
        region: Some("us-east-1"),
        key: "shrinks",
    };
    let destination = ObjectAt {
        bucket: &target.bucket,
        region: Some(&target.region),
        key: "shrinks",
    };
    let upload = store
        .create_upload(destination, &attributes(), &[])
        .await
        .unwrap();
    // Ends past the new end; starts past it; within it (the ETag decides: 412).
    let ranges = [
        (0, 5 * MIB as u64 - 1),
        (5 * MIB as u64, 6 * MIB as u64 - 1),
        (0, MIB as u64 - 1),
    ];
    for (number, (first, last)) in ranges.into_iter().enumerate() {
        let failure = store
            .copy_part(&PartCopyRequest {
                source,
                source_etag: &etag,
                destination,
                upload_id: &upload,
                part_number: number as u32 + 1,
                first,
                last,
                range: CopyRange::Bytes,
            })
            .await
            .unwrap_err();
        println!("{}", failure.message);
        assert!(
            failure.is_precondition_failed(),
            "bytes={first}-{last}: {failure:?}"
        );
        assert!(failure.message.contains("UploadPartCopy"), "{failure:?}");
    }
    store.abort_upload(destination, &upload).await.unwrap();
}

/// A bucket's website configuration, as the backfill reads it: none (`GetBucketWebsite`
/// answers 404 `NoSuchWebsiteConfiguration`), then one.
#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_bucket_without_a_website_configuration_serves_no_website() {
    use aws_sdk_s3::types::{IndexDocument, WebsiteConfiguration};
    let clients = clients().await;
    let bucket = unique("site");
    create_bucket(&clients, &bucket, "us-east-1").await;
    let store = S3Store::new(integration::clients().await);
    assert!(!store
        .serves_website(&bucket, Some("us-east-1"))
        .await
        .unwrap());
    clients
        .for_region("us-east-1")
        .put_bucket_website()
        .bucket(&bucket)
        .website_configuration(
            WebsiteConfiguration::builder()
                .index_document(
                    IndexDocument::builder()
                        .suffix("index.html")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(store
        .serves_website(&bucket, Some("us-east-1"))
        .await
        .unwrap());
    let missing = store
        .serves_website(&unique("no-such-bucket"), Some("us-east-1"))
        .await
        .unwrap_err();
    assert_eq!(missing.status, Some(404), "{missing:?}");
}

/// The common prefixes one level below a prefix, from a delimited listing read to its end
/// (pages of 1,000 at most, as S3 answers them), where a split backfill divides its keys.
#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_delimited_listing_shows_each_common_prefix_once() {
    let clients = clients().await;
    let bucket = unique("prefixes");
    create_bucket(&clients, &bucket, "us-east-1").await;
    let client = clients.for_region("us-east-1");
    for key in [
        "top",
        "photos/a/1",
        "photos/a/2",
        "photos/b/1",
        "photos/c",
        "logs/x",
    ] {
        integration::put(&client, &bucket, key, b"x").await;
    }
    let store = S3Store::new(integration::clients().await);
    let region = Some("us-east-1");
    let root = store.list_prefixes(&bucket, region, "", 100).await.unwrap();
    assert_eq!(root, ["logs/", "photos/"]);
    let below = store
        .list_prefixes(&bucket, region, "photos/", 100)
        .await
        .unwrap();
    assert_eq!(below, ["photos/a/", "photos/b/"]);
    let first = store
        .list_prefixes(&bucket, region, "photos/", 1)
        .await
        .unwrap();
    assert_eq!(first, ["photos/a/"]);
}
