//! The simulator's own rules, each as S3 documents it: a behaviour the simulator lacks is a
//! place where the simulation proves nothing.

use std::time::Duration;

use s3fanout::core::object::{Access, Checksum, ChecksumAlgorithm};
use s3fanout::store::{
    CopyRange, CopyRequest, Directive, ObjectAt, Part, PartCopyRequest, ReplicaAttributes,
    WriteCondition,
};
use s3fanout::Store;
use s3fanout_sim::{checksum_of, checksum_with, Faults, NewObject, NoticeKind, SimStore};

const MIB: u64 = 1024 * 1024;

fn at<'a>(bucket: &'a str, key: &'a str) -> ObjectAt<'a> {
    ObjectAt {
        bucket,
        region: None,
        key,
    }
}

fn attributes(kms: bool) -> ReplicaAttributes {
    ReplicaAttributes {
        headers: Default::default(),
        metadata: Default::default(),
        storage_class: None,
        kms_key_id: kms.then(|| "key".to_string()),
        checksum: ChecksumAlgorithm::Crc64Nvme,
    }
}

fn store() -> SimStore {
    let store = SimStore::new(1, Faults::NONE);
    for bucket in ["src", "plain", "kms"] {
        store.create_bucket(bucket, true);
    }
    store.encrypt_by_default("kms");
    store
}

async fn copy(store: &SimStore, to: &str, kms: bool) -> Result<(), s3fanout::Failure> {
    let etag = store.object("src", "k").unwrap().etag;
    store
        .copy_object(&CopyRequest {
            source: at("src", "k"),
            source_etag: &etag,
            destination: at(to, "k"),
            attributes: &attributes(kms),
            directive: Directive::Replace,
            condition: WriteCondition::Any,
        })
        .await
        .map(|_| ())
}

/// S3 API reference, `Object` / ETag: "Objects created by the PUT Object, POST Object, or Copy
/// operation ... encrypted by SSE-C or SSE-KMS, have ETags that are not an MD5 digest of their
/// object data"; SSE-S3 single-part objects keep the digest. The full-object checksum does not
/// depend on the encryption ("Checking object integrity").
#[tokio::test(start_paused = true)]
async fn kms_etags_are_not_digests_and_differ_on_every_write() {
    let store = store();
    store.put("src", "k", NewObject::plain(100));
    let source = store.object("src", "k").unwrap();
    assert_eq!(source.etag, source.content.digest());
    copy(&store, "plain", false).await.unwrap();
    assert_eq!(store.object("plain", "k").unwrap().etag, source.etag);
    copy(&store, "kms", false).await.unwrap();
    let first = store.object("kms", "k").unwrap();
    copy(&store, "plain", true).await.unwrap();
    let keyed = store.object("plain", "k").unwrap();
    copy(&store, "kms", false).await.unwrap();
    let second = store.object("kms", "k").unwrap();
    for replica in [&first, &keyed, &second] {
        assert_ne!(replica.etag, source.etag);
        assert!(replica.kms);
        assert_eq!(replica.content, source.content);
        assert_eq!(replica.checksum, Some(checksum_of(&source.content)));
    }
    assert_ne!(first.etag, second.etag, "another ETag for the same bytes");
    let head = store.head(at("kms", "k"), None).await.unwrap().unwrap();
    let checksum = head.checksum.unwrap();
    assert_eq!(checksum.algorithm, ChecksumAlgorithm::Crc64Nvme);
    assert_eq!(Some(checksum.value), source.checksum);
}

/// Objects written before S3 stored a checksum with every object have none.
#[tokio::test(start_paused = true)]
async fn old_objects_have_no_checksum() {
    let store = store();
    store.put(
        "src",
        "k",
        NewObject {
            without_checksum: true,
            ..NewObject::plain(10)
        },
    );
    let head = store.head(at("src", "k"), None).await.unwrap().unwrap();
    assert_eq!(head.checksum, None);
}

/// The Last-Modified of an object completed by a multipart upload is when the upload was
/// initiated (public reports: treeverse/lakeFS issue 8303), not when it completed.
#[tokio::test(start_paused = true)]
async fn multipart_objects_are_dated_by_their_upload_initiation() {
    let store = store();
    tokio::time::sleep(Duration::from_secs(100)).await;
    store.put("src", "single", NewObject::plain(10));
    store.put(
        "src",
        "parts",
        NewObject {
            parts: Some(5 * MIB),
            initiated_ago: Duration::from_secs(30),
            ..NewObject::plain(12 * MIB)
        },
    );
    let single = store
        .head(at("src", "single"), None)
        .await
        .unwrap()
        .unwrap();
    let parts = store.head(at("src", "parts"), None).await.unwrap().unwrap();
    let (single, parts) = (
        single.last_modified_ms.unwrap(),
        parts.last_modified_ms.unwrap(),
    );
    assert_eq!(single - parts, 30_000, "written together, dated 30 s apart");
}

/// "If two writes are made to a single non-versioned object at the same time, it is possible
/// that only a single event notification will be sent" (S3 user guide, "Amazon S3 Event
/// Notifications"). Writes far apart are each announced.
#[tokio::test(start_paused = true)]
async fn racing_notifications_of_one_key_may_merge() {
    let store = store();
    store.lose_racing_notices();
    store.put("src", "k", NewObject::plain(1));
    store.put("src", "k", NewObject::plain(2));
    store.put("src", "other", NewObject::plain(3));
    let notices = store.take_notices();
    assert_eq!(notices.iter().filter(|n| n.key == "k").count(), 1);
    assert_eq!(notices.iter().filter(|n| n.key == "other").count(), 1);
    assert_eq!(store.lost_notices(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    store.put("src", "k", NewObject::plain(4));
    assert_eq!(store.take_notices().len(), 1, "a write later is announced");
}

/// CopyObject and UploadPartCopy of an object in GLACIER or DEEP_ARCHIVE answer 403
/// `ObjectNotInActiveTierError` until it is restored (S3 API reference, CopyObject); HeadObject
/// shows it; `s3:ObjectRestore:Completed` announces the restore (S3 user guide, "Event
/// notification types").
#[tokio::test(start_paused = true)]
async fn archived_objects_are_copied_only_once_restored() {
    let store = store();
    store.put(
        "src",
        "k",
        NewObject {
            storage_class: Some("DEEP_ARCHIVE".into()),
            ..NewObject::plain(10)
        },
    );
    store.take_notices();
    let head = store.head(at("src", "k"), None).await.unwrap().unwrap();
    assert_eq!(head.access, Access::Archived);
    let refused = copy(&store, "plain", false).await.unwrap_err();
    assert_eq!(refused.status, Some(403));
    assert_eq!(refused.code.as_deref(), Some("ObjectNotInActiveTierError"));
    store.restore("src", "k");
    let notices = store.take_notices();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].kind, NoticeKind::Restored);
    let head = store.head(at("src", "k"), None).await.unwrap().unwrap();
    assert_eq!(head.access, Access::Ready);
    copy(&store, "plain", false).await.unwrap();
}

/// "You can copy a range only if the source object is greater than 5 MB" (S3 API reference,
/// UploadPartCopy): a range of a smaller source is refused, the whole of it is not.
#[tokio::test(start_paused = true)]
async fn part_copies_of_small_sources_take_no_range() {
    let store = store();
    store.put("src", "k", NewObject::plain(MIB));
    let etag = store.object("src", "k").unwrap().etag;
    let upload = store
        .create_upload(at("plain", "k"), &attributes(false), &[])
        .await
        .unwrap();
    let part = |range| PartCopyRequest {
        source: at("src", "k"),
        source_etag: &etag,
        destination: at("plain", "k"),
        upload_id: &upload,
        part_number: 1,
        first: 0,
        last: MIB - 1,
        range,
    };
    let refused = store.copy_part(&part(CopyRange::Bytes)).await.unwrap_err();
    assert_eq!(refused.code.as_deref(), Some("InvalidRequest"));
    store
        .copy_part(&part(CopyRange::WholeObject))
        .await
        .unwrap();
}

/// CopyObject with `x-amz-checksum-algorithm` makes S3 compute the new object's checksum in that
/// algorithm from the bytes it writes ("Checking object integrity" in the S3 user guide; API
/// reference, CopyObject: "x-amz-checksum-algorithm ... the algorithm that you want Amazon S3 to
/// use to create the checksum for the object"); HeadObject reports it, and reports SSE-KMS
/// (`x-amz-server-side-encryption: aws:kms`).
#[tokio::test(start_paused = true)]
async fn copies_compute_the_checksum_in_the_algorithm_asked() {
    let store = store();
    store.put(
        "src",
        "k",
        NewObject {
            checksum_algorithm: Some(ChecksumAlgorithm::Crc32),
            ..NewObject::plain(100)
        },
    );
    let source = store.head(at("src", "k"), None).await.unwrap().unwrap();
    assert_eq!(
        source.checksum.as_ref().unwrap().algorithm,
        ChecksumAlgorithm::Crc32
    );
    assert!(!source.kms);
    store
        .copy_object(&CopyRequest {
            source: at("src", "k"),
            source_etag: &source.etag,
            destination: at("kms", "k"),
            attributes: &ReplicaAttributes {
                checksum: ChecksumAlgorithm::Crc32,
                ..attributes(false)
            },
            directive: Directive::Replace,
            condition: WriteCondition::Any,
        })
        .await
        .unwrap();
    let replica = store.head(at("kms", "k"), None).await.unwrap().unwrap();
    assert!(replica.kms);
    assert_ne!(replica.etag, source.etag);
    assert_eq!(
        replica.checksum, source.checksum,
        "same bytes, same algorithm"
    );
    copy(&store, "plain", false).await.unwrap();
    let other = store.head(at("plain", "k"), None).await.unwrap().unwrap();
    assert_eq!(
        other.checksum.unwrap().algorithm,
        ChecksumAlgorithm::Crc64Nvme,
        "computed afresh in the algorithm asked, not carried over"
    );
}

/// A multipart upload created with a full-object checksum algorithm answers each part's
/// checksum (CopyPartResult: "The Base64 encoded, 64-bit CRC64NVME checksum of the part");
/// CompleteMultipartUpload needs every part's checksum and parts numbered from 1 without gaps
/// (CompletedPart: "when an additional checksum ... is applied to each part, the PartNumber must
/// start at 1 and the part numbers must be consecutive"); a full-object checksum declared with
/// the completion (`x-amz-checksum-crc64nvme`, `x-amz-checksum-type: FULL_OBJECT`, API reference
/// CompleteMultipartUpload) is compared with the one S3 computes over the assembled object, and
/// a mismatch rejects the request ("Checking object integrity" in the S3 user guide: "If the
/// values don't match, the request is rejected"; 400 `BadDigest`, "The Content-MD5 or checksum
/// value that you specified did not match what the server received", S3 error codes). The
/// upload stays, uncompleted.
#[tokio::test(start_paused = true)]
async fn a_completion_declaring_other_bytes_is_refused() {
    let store = store();
    store.put("src", "k", NewObject::plain(12 * MIB));
    store.put("src", "other", NewObject::plain(12 * MIB));
    let source = store.object("src", "k").unwrap();
    let upload = store
        .create_upload(at("plain", "k"), &attributes(false), &[])
        .await
        .unwrap();
    let mut parts = Vec::new();
    for (number, first, last) in [(1, 0, 6 * MIB - 1), (2, 6 * MIB, 12 * MIB - 1)] {
        let copied = store
            .copy_part(&PartCopyRequest {
                source: at("src", "k"),
                source_etag: &source.etag,
                destination: at("plain", "k"),
                upload_id: &upload,
                part_number: number,
                first,
                last,
                range: CopyRange::Bytes,
            })
            .await
            .unwrap();
        let part = source.content.range(first, last);
        assert_eq!(
            copied.checksum,
            Some(Checksum {
                algorithm: ChecksumAlgorithm::Crc64Nvme,
                value: checksum_with(ChecksumAlgorithm::Crc64Nvme, &part),
            })
        );
        parts.push(Part {
            number,
            etag: copied.etag,
            size: last + 1 - first,
            checksum: copied.checksum,
        });
    }
    let listed = store.list_parts(at("plain", "k"), &upload).await.unwrap();
    assert_eq!(listed, parts, "ListParts answers the checksums too");
    let complete = |parts: Vec<Part>, whole: Option<Checksum>| {
        let store = store.clone();
        let upload = upload.clone();
        async move {
            store
                .complete_upload(
                    at("plain", "k"),
                    &upload,
                    &parts,
                    whole.as_ref(),
                    &WriteCondition::Any,
                )
                .await
        }
    };
    let crc = |value: String| Checksum {
        algorithm: ChecksumAlgorithm::Crc64Nvme,
        value,
    };
    let other = store.object("src", "other").unwrap();
    let refused = complete(parts.clone(), Some(crc(checksum_of(&other.content))))
        .await
        .unwrap_err();
    assert_eq!(
        (refused.status, refused.code.as_deref()),
        (Some(400), Some("BadDigest"))
    );
    assert!(store.object("plain", "k").is_none(), "nothing landed");
    let unchecked: Vec<Part> = parts
        .iter()
        .map(|p| Part {
            checksum: None,
            ..p.clone()
        })
        .collect();
    let refused = complete(unchecked, None).await.unwrap_err();
    assert_eq!(refused.code.as_deref(), Some("InvalidRequest"));
    let refused = complete(parts[1..].to_vec(), None).await.unwrap_err();
    assert_eq!(refused.code.as_deref(), Some("InvalidPartOrder"));
    let crc32 = Checksum {
        algorithm: ChecksumAlgorithm::Crc32,
        value: checksum_with(ChecksumAlgorithm::Crc32, &source.content),
    };
    let refused = complete(parts.clone(), Some(crc32)).await.unwrap_err();
    assert_eq!(refused.code.as_deref(), Some("InvalidRequest"));
    complete(parts, Some(crc(checksum_of(&source.content))))
        .await
        .unwrap();
    let replica = store.object("plain", "k").unwrap();
    assert_eq!(replica.content, source.content);
    assert_eq!(replica.checksum, Some(checksum_of(&source.content)));
}

/// An SSE-KMS object's ETag is not a digest of its bytes (S3 API reference, `Object` / ETag), so
/// nothing in S3 keeps it from equalling another object's: a client may hold one with a source's
/// ETag and size but other bytes. Only the full-object checksum tells them apart.
#[tokio::test(start_paused = true)]
async fn a_kms_etag_may_equal_another_objects() {
    let store = store();
    let etag = store.put("src", "k", NewObject::plain(100));
    store.put(
        "kms",
        "k",
        NewObject {
            kms_etag: Some(etag.clone()),
            ..NewObject::plain(100)
        },
    );
    let source = store.head(at("src", "k"), None).await.unwrap().unwrap();
    let replica = store.head(at("kms", "k"), None).await.unwrap().unwrap();
    assert_eq!((&replica.etag, replica.size), (&source.etag, source.size));
    assert_ne!(replica.checksum, source.checksum);
}

/// `MetadataDirective: COPY` takes the content headers and user metadata from the source as S3
/// reads it, and tags with `TaggingDirective: COPY`, but "x-amz-website-redirect-location ...
/// This value is unique to each object and is not copied when using the
/// x-amz-metadata-directive header" (CopyObject API reference), and the storage class is the
/// request's, else STANDARD (user guide, "Copying objects": "you can change the storage class
/// ... when you copy"). The answer names the replica's ETag and its encryption.
#[tokio::test(start_paused = true)]
async fn a_copy_with_the_source_directive_keeps_headers_and_metadata_but_not_the_redirect_or_class()
{
    use s3fanout::core::object::{ContentHeaders, Tag};
    use std::collections::BTreeMap;
    let store = store();
    let etag = store.put(
        "src",
        "k",
        NewObject {
            headers: ContentHeaders {
                content_type: Some("text/plain".into()),
                website_redirect: Some("/elsewhere".into()),
                ..Default::default()
            },
            metadata: BTreeMap::from([("a".to_string(), "1".to_string())]),
            storage_class: Some("STANDARD_IA".into()),
            ..NewObject::plain(10)
        },
    );
    store.set_tags(
        "src",
        "k",
        vec![Tag {
            key: "t".into(),
            value: "v".into(),
        }],
    );
    for (to, kms) in [("plain", false), ("kms", true)] {
        let landed = store
            .copy_object(&CopyRequest {
                source: at("src", "k"),
                source_etag: &etag,
                destination: at(to, "k"),
                attributes: &attributes(false),
                directive: Directive::Source,
                condition: WriteCondition::Absent,
            })
            .await
            .unwrap();
        let replica = store.object(to, "k").unwrap();
        assert_eq!(landed.etag, replica.etag);
        assert_eq!(landed.kms, kms, "{to}");
        assert_eq!(
            replica.etag == etag,
            !kms,
            "{to}: a digest only without KMS"
        );
        assert_eq!(replica.headers.content_type.as_deref(), Some("text/plain"));
        assert_eq!(replica.headers.website_redirect, None, "never copied");
        assert_eq!(
            replica.storage_class, None,
            "STANDARD unless the request names one"
        );
        assert_eq!(replica.metadata.get("a").map(String::as_str), Some("1"));
        assert_eq!(replica.tags.len(), 1);
    }
}

/// `GetBucketNotificationConfiguration` answers what the bucket announces; a bucket that
/// announces nothing has an empty configuration (S3 API reference).
#[tokio::test(start_paused = true)]
async fn a_bucket_tells_whether_it_announces_changes() {
    let store = SimStore::new(1, Faults::NONE);
    store.create_bucket("loud", true);
    store.create_bucket("quiet", false);
    assert!(store.sends_events("loud", None).await.unwrap());
    assert!(!store.sends_events("quiet", None).await.unwrap());
    assert_eq!(
        store
            .sends_events("missing", None)
            .await
            .unwrap_err()
            .status,
        Some(404)
    );
}

/// `GetBucketWebsite` answers a bucket's website configuration, or 404
/// `NoSuchWebsiteConfiguration` when it has none (S3 API reference, GetBucketWebsite); S3 uses
/// an object's `x-amz-website-redirect-location` only "if the bucket is configured as a
/// website" (S3 API reference, PutObject), and a copy with a metadata directive never carries
/// it (CopyObject: "not copied when using the x-amz-metadata-directive header").
#[tokio::test(start_paused = true)]
async fn a_bucket_tells_whether_it_serves_as_a_website() {
    let store = SimStore::new(1, Faults::NONE);
    store.create_bucket("site", false);
    store.create_bucket("plain", false);
    store.set_website("site", true);
    assert!(store.serves_website("site", None).await.unwrap());
    assert!(!store.serves_website("plain", None).await.unwrap());
    store.set_website("site", false);
    assert!(!store.serves_website("site", None).await.unwrap());
    assert_eq!(
        store
            .serves_website("missing", None)
            .await
            .unwrap_err()
            .status,
        Some(404)
    );
}

/// Each creation is announced with how it was written: `ObjectCreated:Put` for a client's
/// upload, `:Copy` for `CopyObject`, `:CompleteMultipartUpload` for an upload by parts
/// (user guide, "Event notification types and destinations").
#[tokio::test(start_paused = true)]
async fn creations_are_announced_with_how_they_were_written() {
    use s3fanout::core::change::Written;
    let store = store();
    store.put("src", "k", NewObject::plain(10));
    store.put(
        "src",
        "big",
        NewObject {
            parts: Some(5 * MIB),
            ..NewObject::plain(11 * MIB)
        },
    );
    copy(&store, "plain", false).await.unwrap();
    let written: Vec<_> = store
        .take_notices()
        .into_iter()
        .filter(|n| n.kind == NoticeKind::Created)
        .map(|n| (n.bucket, n.key, n.written))
        .collect();
    assert_eq!(
        written,
        vec![
            ("src".into(), "k".into(), Some(Written::Uploaded)),
            ("src".into(), "big".into(), Some(Written::Assembled)),
            ("plain".into(), "k".into(), Some(Written::Copied)),
        ]
    );
}

/// "Your application can achieve at least 3,500 PUT/COPY/POST/DELETE or 5,500 GET/HEAD
/// requests per second per partitioned Amazon S3 prefix"; past it S3 answers `503 Slow Down`
/// (S3 User Guide, Best practices design patterns: optimizing Amazon S3 performance; S3 API
/// reference, Error responses: SlowDown). Reads do not count against writes, and each prefix
/// has its own rate.
#[tokio::test(start_paused = true)]
async fn a_prefix_takes_3500_writes_a_second_and_slows_down_past_them() {
    let store = SimStore::new(1, Faults::NONE);
    store.create_bucket("b", false);
    store.limit_prefix_writes(3500);
    let write = |key: String| {
        let store = &store;
        async move {
            store
                .put_small_object(at("b", &key), b"x", &WriteCondition::Any)
                .await
        }
    };
    for i in 0..3500 {
        write(format!("logs/{i}")).await.unwrap();
    }
    let refused = write("logs/one-more".into()).await.unwrap_err();
    assert_eq!(
        (refused.status, refused.code.as_deref()),
        (Some(503), Some("SlowDown"))
    );
    assert!(refused.is_transient(), "{refused:?}");
    write("photos/0".into()).await.expect("another prefix");
    store
        .get_small_object(at("b", "logs/0"))
        .await
        .expect("a read is not a write");
    assert_eq!(store.slowed_down(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    write("logs/next-second".into())
        .await
        .expect("the next second");
}
