"""The local S3 server (tests/local_s3.py) answers as S3 documents.

Sources, cited per test:
- S3 user guide, "How to prevent object overwrites with conditional writes" (conditional-writes).
- S3 user guide, "How to perform conditional deletes" (conditional-deletes).
- S3 user guide, "Working with object metadata" (UsingMetadata): user-defined metadata in a PUT
  request header is limited to 2 KB, the sum of the bytes of the UTF-8 encoding of each key and
  value; S3 error code list: MetadataTooLarge, 400.
- S3 API reference, PutObjectTagging (and user guide, object-tagging): at most 10 tags per object;
  InvalidTag for a tag that fails validation. S3 answers 11 tags with 400 BadRequest "Object tags
  cannot be greater than 10".
- S3 API reference, CopyObject / UploadPartCopy: `x-amz-copy-source-if-match`, 412 on a mismatch.
- S3 API reference, ListMultipartUploads: `max-uploads` (at most 1,000), `key-marker`,
  `upload-id-marker`, `IsTruncated`, `NextKeyMarker`, `NextUploadIdMarker`; uploads sorted by
  key, and within a key by initiation time.
- S3 user guide, "Specifying server-side encryption with customer-provided keys (SSE-C)": GET and
  HEAD of an SSE-C object need the `x-amz-server-side-encryption-customer-*` headers, copies of
  one the `x-amz-copy-source-server-side-encryption-customer-*` headers.
- S3 user guide, "Checking object integrity": CRC64NVME checksums; CopyObject with
  `x-amz-checksum-algorithm` computes the new object's checksum. The CRC-64/NVME check value
  (of the bytes "123456789") is 0xAE8B14860A799888 (CRC catalogue, "CRC-64/NVME").
- S3 API reference, CompleteMultipartUpload: `x-amz-checksum-crc64nvme` ("The CRC64NVME checksum
  is always a full object checksum") and `x-amz-checksum-type`; S3 user guide, "Checking object
  integrity": a provided checksum that does not match the one S3 calculates rejects the request;
  S3 error code list: BadDigest, 400. API reference, CopyPartResult: `ChecksumCRC64NVME`, the
  part's checksum.
"""

from __future__ import annotations

from datetime import datetime, timezone
import urllib.request
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "local_s3.py"


def _python() -> str:
    """The interpreter that has moto installed."""
    for python in (Path(sys.executable), ROOT / ".venv" / "bin" / "python"):
        if (python.parent / "moto_server").exists():
            return str(python)
    pytest.fail("moto not found next to the Python interpreter nor in .venv/bin")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    """The wrapper, started as tests/with-local-s3.sh starts it, on a free loopback port."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("local_s3") / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [_python(), str(SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"local S3 server exited early:\n{log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"local S3 server did not start:\n{log_path.read_text()}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def s3(endpoint):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture
def bucket(s3):
    name = f"t-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=name)
    return name


def _error(excinfo) -> tuple[int, str]:
    response = excinfo.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def _body(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _exists(s3, bucket: str, key: str) -> bool:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
    return any(item["Key"] == key for item in listed)


def _multipart(s3, bucket: str, key: str, data: bytes) -> tuple[str, list[dict]]:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=data)["ETag"]
    return upload, [{"PartNumber": 1, "ETag": etag}]


def _open_uploads(s3, bucket: str) -> list[str]:
    return [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


# PutObject (moto enforces these itself; the wrapper must keep them).


def test_put_object_conditions(s3, bucket):
    """conditional-writes: PutObject with `If-None-Match: *` fails with 412 when the key exists and
    writes when it does not; `If-Match` writes when the ETag matches, fails with 412 when it
    differs and with 404 NoSuchKey when the key is missing. Without a header, PutObject
    overwrites."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"one", IfNoneMatch="*")
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="k", Body=b"two", IfNoneMatch="*")
    assert _error(excinfo) == (412, "PreconditionFailed")
    assert _body(s3, bucket, "k") == b"one"

    etag = s3.head_object(Bucket=bucket, Key="k")["ETag"]
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="k", Body=b"two", IfMatch='"0123456789abcdef"')
    assert _error(excinfo) == (412, "PreconditionFailed")
    assert _body(s3, bucket, "k") == b"one"

    s3.put_object(Bucket=bucket, Key="k", Body=b"two", IfMatch=etag)
    assert _body(s3, bucket, "k") == b"two"

    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="missing", Body=b"x", IfMatch=etag)
    assert _error(excinfo) == (404, "NoSuchKey")
    assert not _exists(s3, bucket, "missing")

    s3.put_object(Bucket=bucket, Key="k", Body=b"three")
    assert _body(s3, bucket, "k") == b"three"


# CopyObject, destination side.


def test_copy_object_if_none_match(s3, bucket):
    """conditional-writes: CopyObject with `If-None-Match: *` copies to a new key and fails with
    412 PreconditionFailed when an object exists under the destination key, leaving it as it
    was."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    s3.put_object(Bucket=bucket, Key="dst", Body=b"existing")

    s3.copy_object(Bucket=bucket, Key="new", CopySource=f"{bucket}/src", IfNoneMatch="*")
    assert _body(s3, bucket, "new") == b"source"

    with pytest.raises(ClientError) as excinfo:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", IfNoneMatch="*")
    assert _error(excinfo) == (412, "PreconditionFailed")
    assert _body(s3, bucket, "dst") == b"existing"


def test_copy_object_if_match(s3, bucket):
    """conditional-writes: CopyObject with `If-Match: <etag>` replaces the destination when its
    ETag matches, fails with 412 PreconditionFailed when it differs and with 404 NoSuchKey when
    no object exists under the destination key. Without a header, CopyObject overwrites."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    s3.put_object(Bucket=bucket, Key="dst", Body=b"existing")
    etag = s3.head_object(Bucket=bucket, Key="dst")["ETag"]

    with pytest.raises(ClientError) as excinfo:
        s3.copy_object(
            Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", IfMatch='"0123456789abcdef"'
        )
    assert _error(excinfo) == (412, "PreconditionFailed")
    assert _body(s3, bucket, "dst") == b"existing"

    with pytest.raises(ClientError) as excinfo:
        s3.copy_object(Bucket=bucket, Key="missing", CopySource=f"{bucket}/src", IfMatch=etag)
    assert _error(excinfo) == (404, "NoSuchKey")
    assert not _exists(s3, bucket, "missing")

    s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", IfMatch=etag)
    assert _body(s3, bucket, "dst") == b"source"

    s3.put_object(Bucket=bucket, Key="src", Body=b"changed")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src")
    assert _body(s3, bucket, "dst") == b"changed"


def test_copy_source_if_match(s3, bucket):
    """CopyObject and UploadPartCopy API reference: `x-amz-copy-source-if-match` copies only when
    the source's ETag matches; otherwise 412 PreconditionFailed."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"s" * 10)
    etag = s3.head_object(Bucket=bucket, Key="src")["ETag"]

    with pytest.raises(ClientError) as excinfo:
        s3.copy_object(
            Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", CopySourceIfMatch='"0123"'
        )
    assert _error(excinfo) == (412, "PreconditionFailed")
    assert not _exists(s3, bucket, "dst")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", CopySourceIfMatch=etag)
    assert _body(s3, bucket, "dst") == b"s" * 10

    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    with pytest.raises(ClientError) as excinfo:
        s3.upload_part_copy(
            Bucket=bucket,
            Key="mp",
            UploadId=upload,
            PartNumber=1,
            CopySource=f"{bucket}/src",
            CopySourceIfMatch='"0123"',
        )
    assert _error(excinfo) == (412, "PreconditionFailed")
    part = s3.upload_part_copy(
        Bucket=bucket,
        Key="mp",
        UploadId=upload,
        PartNumber=1,
        CopySource=f"{bucket}/src",
        CopySourceIfMatch=etag,
    )["CopyPartResult"]["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part}]},
    )
    assert _body(s3, bucket, "mp") == b"s" * 10


# CompleteMultipartUpload.


def test_complete_multipart_upload_if_none_match(s3, bucket):
    """conditional-writes: CompleteMultipartUpload with `If-None-Match: *` completes to a new key
    and fails with 412 PreconditionFailed when an object exists under the key, which keeps its
    content; the upload stays open and can be aborted."""
    upload, parts = _multipart(s3, bucket, "new", b"parts")
    s3.complete_multipart_upload(
        Bucket=bucket, Key="new", UploadId=upload, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
    )
    assert _body(s3, bucket, "new") == b"parts"

    s3.put_object(Bucket=bucket, Key="k", Body=b"existing")
    upload, parts = _multipart(s3, bucket, "k", b"parts")
    with pytest.raises(ClientError) as excinfo:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=upload,
            MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )
    assert _error(excinfo) == (412, "PreconditionFailed")
    assert _body(s3, bucket, "k") == b"existing"
    assert upload in _open_uploads(s3, bucket)
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload)


def test_complete_multipart_upload_if_match(s3, bucket):
    """conditional-writes: CompleteMultipartUpload with `If-Match: <etag>` completes when the
    current object's ETag matches, fails with 412 PreconditionFailed when it differs and with
    404 NoSuchKey when the key is missing; nothing is written on failure. Without a header,
    CompleteMultipartUpload overwrites."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"existing")
    etag = s3.head_object(Bucket=bucket, Key="k")["ETag"]

    upload, parts = _multipart(s3, bucket, "k", b"parts")
    with pytest.raises(ClientError) as excinfo:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=upload,
            MultipartUpload={"Parts": parts},
            IfMatch='"0123456789abcdef"',
        )
    assert _error(excinfo) == (412, "PreconditionFailed")
    assert _body(s3, bucket, "k") == b"existing"

    s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload, MultipartUpload={"Parts": parts}, IfMatch=etag
    )
    assert _body(s3, bucket, "k") == b"parts"

    upload, parts = _multipart(s3, bucket, "missing", b"parts")
    with pytest.raises(ClientError) as excinfo:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="missing",
            UploadId=upload,
            MultipartUpload={"Parts": parts},
            IfMatch=etag,
        )
    assert _error(excinfo) == (404, "NoSuchKey")
    assert not _exists(s3, bucket, "missing")

    s3.complete_multipart_upload(
        Bucket=bucket, Key="missing", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    assert _body(s3, bucket, "missing") == b"parts"


# DeleteObject.


def test_delete_object_if_match(s3, bucket):
    """conditional-deletes: DeleteObject with `If-Match: <etag>` on a general purpose bucket
    deletes when the ETag matches (204), fails with 412 PreconditionFailed when it differs (the
    object stays) and with 404 NoSuchKey when the key is missing. Without a header, DeleteObject
    deletes."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    etag = s3.head_object(Bucket=bucket, Key="k")["ETag"]

    with pytest.raises(ClientError) as excinfo:
        s3.delete_object(Bucket=bucket, Key="k", IfMatch='"0123456789abcdef"')
    assert _error(excinfo) == (412, "PreconditionFailed")
    assert _exists(s3, bucket, "k")

    with pytest.raises(ClientError) as excinfo:
        s3.delete_object(Bucket=bucket, Key="missing", IfMatch=etag)
    assert _error(excinfo) == (404, "NoSuchKey")

    response = s3.delete_object(Bucket=bucket, Key="k", IfMatch=etag)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert not _exists(s3, bucket, "k")

    s3.put_object(Bucket=bucket, Key="plain", Body=b"data")
    s3.delete_object(Bucket=bucket, Key="plain")
    assert not _exists(s3, bucket, "plain")


def test_delete_object_if_match_any(s3, bucket):
    """conditional-deletes: DeleteObject with `If-Match: *` checks that the object exists: it
    deletes an existing object and answers 404 NoSuchKey for a missing key."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    response = s3.delete_object(Bucket=bucket, Key="k", IfMatch="*")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert not _exists(s3, bucket, "k")

    with pytest.raises(ClientError) as excinfo:
        s3.delete_object(Bucket=bucket, Key="k", IfMatch="*")
    assert _error(excinfo) == (404, "NoSuchKey")


# User-defined metadata: 2 KB.


def _metadata_of(total: int) -> dict[str, str]:
    """Two entries whose keys and values add up to `total` bytes."""
    return {"first": "a" * 1000, "second": "b" * (total - 1000 - len("first") - len("second"))}


def test_put_object_metadata_limit(s3, bucket):
    """UsingMetadata: user-defined metadata is limited to 2 KB, the UTF-8 bytes of keys and
    values; PutObject with 2,048 bytes is stored, with 2,049 bytes it fails with 400
    MetadataTooLarge and nothing is written."""
    s3.put_object(Bucket=bucket, Key="at-limit", Body=b"", Metadata=_metadata_of(2048))
    assert s3.head_object(Bucket=bucket, Key="at-limit")["Metadata"] == _metadata_of(2048)

    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="over", Body=b"", Metadata=_metadata_of(2049))
    assert _error(excinfo) == (400, "MetadataTooLarge")
    assert not _exists(s3, bucket, "over")


def test_metadata_limit_counts_utf8_bytes(s3, bucket):
    """UsingMetadata: the size is the sum of the bytes in the UTF-8 encoding of each key and
    value, not of characters: 1 + 2 x 1,023 bytes pass, 1 + 2 x 1,024 bytes (1,025 characters)
    fail with 400 MetadataTooLarge."""

    def utf8_put(key: str, value: str) -> None:
        # boto3 accepts only ASCII metadata; the header goes out as a client that sends UTF-8
        # metadata sends it (each character's UTF-8 bytes, written as ISO-8859-1 text).
        def add_header(request, **_):
            request.headers["x-amz-meta-k"] = value.encode("utf-8").decode("latin-1")

        s3.meta.events.register("before-send.s3.PutObject", add_header)
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=b"")
        finally:
            s3.meta.events.unregister("before-send.s3.PutObject", add_header)

    utf8_put("fits", "é" * 1023)
    assert s3.head_object(Bucket=bucket, Key="fits")["Metadata"]["k"].encode("latin-1") == (
        "é" * 1023
    ).encode("utf-8")
    with pytest.raises(ClientError) as excinfo:
        utf8_put("over", "é" * 1024)
    assert _error(excinfo) == (400, "MetadataTooLarge")
    assert not _exists(s3, bucket, "over")


def test_copy_object_metadata_limit(s3, bucket):
    """UsingMetadata: CopyObject with `x-amz-metadata-directive: REPLACE` and more than 2 KB of
    user-defined metadata fails with 400 MetadataTooLarge; with COPY the source's metadata (within
    the limit) is kept."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"data", Metadata=_metadata_of(2048))

    with pytest.raises(ClientError) as excinfo:
        s3.copy_object(
            Bucket=bucket,
            Key="dst",
            CopySource=f"{bucket}/src",
            Metadata=_metadata_of(2049),
            MetadataDirective="REPLACE",
        )
    assert _error(excinfo) == (400, "MetadataTooLarge")
    assert not _exists(s3, bucket, "dst")

    s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource=f"{bucket}/src",
        Metadata=_metadata_of(2048),
        MetadataDirective="REPLACE",
    )
    s3.copy_object(Bucket=bucket, Key="copied", CopySource=f"{bucket}/src")
    assert s3.head_object(Bucket=bucket, Key="copied")["Metadata"] == _metadata_of(2048)


def test_create_multipart_upload_metadata_limit(s3, bucket):
    """UsingMetadata: CreateMultipartUpload with more than 2 KB of user-defined metadata fails
    with 400 MetadataTooLarge and opens no upload; 2 KB is accepted."""
    with pytest.raises(ClientError) as excinfo:
        s3.create_multipart_upload(Bucket=bucket, Key="over", Metadata=_metadata_of(2049))
    assert _error(excinfo) == (400, "MetadataTooLarge")
    assert _open_uploads(s3, bucket) == []

    upload = s3.create_multipart_upload(Bucket=bucket, Key="ok", Metadata=_metadata_of(2048))
    s3.abort_multipart_upload(Bucket=bucket, Key="ok", UploadId=upload["UploadId"])


# Tags: at most 10.


def _tagging(count: int) -> str:
    return "&".join(f"tag{i}=value%20{i}" for i in range(count))


def _tag_set(count: int) -> list[dict[str, str]]:
    return [{"Key": f"tag{i}", "Value": f"value {i}"} for i in range(count)]


def test_put_object_tag_limit(s3, bucket):
    """PutObjectTagging / object-tagging: at most 10 tags per object. PutObject with 10 tags in
    `x-amz-tagging` stores them; with 11 it fails with 400 BadRequest (S3's answer: "Object tags
    cannot be greater than 10") and stores nothing."""
    s3.put_object(Bucket=bucket, Key="ten", Body=b"", Tagging=_tagging(10))
    tags = s3.get_object_tagging(Bucket=bucket, Key="ten")["TagSet"]
    assert sorted(tags, key=lambda t: t["Key"]) == sorted(_tag_set(10), key=lambda t: t["Key"])

    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="eleven", Body=b"", Tagging=_tagging(11))
    assert _error(excinfo) == (400, "BadRequest")
    assert "cannot be greater than 10" in excinfo.value.response["Error"]["Message"]
    assert not _exists(s3, bucket, "eleven")


def test_put_object_invalid_tag(s3, bucket):
    """PutObjectTagging special errors: InvalidTag (400) for a tag that fails validation, here a
    key of 129 characters (tag keys are at most 128); PutObject stores nothing."""
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"", Tagging=f"{'k' * 129}=v")
    assert _error(excinfo) == (400, "InvalidTag")
    assert not _exists(s3, bucket, "bad")


def test_create_multipart_upload_tag_limit(s3, bucket):
    """object-tagging: CreateMultipartUpload with 11 tags in `x-amz-tagging` fails with 400
    BadRequest and opens no upload (not at completion, after the parts were sent)."""
    with pytest.raises(ClientError) as excinfo:
        s3.create_multipart_upload(Bucket=bucket, Key="eleven", Tagging=_tagging(11))
    assert _error(excinfo) == (400, "BadRequest")
    assert _open_uploads(s3, bucket) == []

    upload = s3.create_multipart_upload(Bucket=bucket, Key="ten", Tagging=_tagging(10))["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="ten", UploadId=upload, PartNumber=1, Body=b"p")[
        "ETag"
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="ten",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert len(s3.get_object_tagging(Bucket=bucket, Key="ten")["TagSet"]) == 10


def test_copy_object_tag_limit(s3, bucket):
    """object-tagging: CopyObject with `x-amz-tagging-directive: REPLACE` and 11 tags fails with
    400 BadRequest and writes nothing."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"data")
    with pytest.raises(ClientError) as excinfo:
        s3.copy_object(
            Bucket=bucket,
            Key="dst",
            CopySource=f"{bucket}/src",
            Tagging=_tagging(11),
            TaggingDirective="REPLACE",
        )
    assert _error(excinfo) == (400, "BadRequest")
    assert not _exists(s3, bucket, "dst")


def test_put_object_tagging_limit(s3, bucket):
    """PutObjectTagging: at most 10 tags per object; 11 fail with 400 BadRequest and the
    object's tags stay as they were."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"", Tagging="a=1")
    with pytest.raises(ClientError) as excinfo:
        s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": _tag_set(11)})
    assert _error(excinfo) == (400, "BadRequest")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [{"Key": "a", "Value": "1"}]

    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": _tag_set(10)})
    assert len(s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"]) == 10


def test_list_multipart_uploads_gives_the_real_initiated_time(s3, bucket):
    """ListMultipartUploads answers, per upload, "Initiated: Date and time at which the multipart
    upload was initiated" (S3 API reference, ListMultipartUploads). An upload made now must not
    look older than an object written a moment before it."""
    s3.put_object(Bucket=bucket, Key="written-first", Body=b"x")
    written = s3.head_object(Bucket=bucket, Key="written-first")["LastModified"]
    first = s3.create_multipart_upload(Bucket=bucket, Key="up/a")["UploadId"]
    second = s3.create_multipart_upload(Bucket=bucket, Key="up/b")["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket, Prefix="up/")["Uploads"]
    by_id = {u["UploadId"]: u["Initiated"] for u in listed}
    assert set(by_id) == {first, second}
    now = datetime.now(timezone.utc)
    for initiated in by_id.values():
        # Last-Modified has whole seconds; the upload began after it, and not in the future.
        assert initiated >= written
        assert abs((now - initiated).total_seconds()) < 60
    assert by_id[first] <= by_id[second]


def test_list_parts_answers_a_list_parts_result(s3, bucket, endpoint):
    """ListParts' response document is `ListPartsResult` (S3 API reference, ListParts,
    response syntax), with each uploaded part's number and size."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="parts", UploadId=upload, PartNumber=1, Body=b"x" * 10)
    raw = urllib.request.urlopen(f"{endpoint}/{bucket}/parts?uploadId={upload}").read().decode()
    assert "<ListPartsResult" in raw and "</ListPartsResult>" in raw, raw
    parts = s3.list_parts(Bucket=bucket, Key="parts", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 10)]


def test_list_multipart_uploads_pages(s3, bucket):
    """ListMultipartUploads: at most `max-uploads` per answer, sorted by key then initiation
    time; `IsTruncated` with `NextKeyMarker` / `NextUploadIdMarker` until the last page, and the
    markers continue after the upload they name. moto answers everything in one page."""
    created = []
    for key in ["up/a", "up/a", "up/a", "up/b", "up/b", "up/c"]:
        created.append((key, s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]))
        time.sleep(0.002)
    s3.create_multipart_upload(Bucket=bucket, Key="other")
    pages, markers = [], {}
    while True:
        page = s3.list_multipart_uploads(Bucket=bucket, Prefix="up/", MaxUploads=2, **markers)
        assert page["MaxUploads"] == 2
        pages.append([(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])])
        if not page["IsTruncated"]:
            break
        markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
        assert len(pages) < 10, pages
    assert pages == [created[0:2], created[2:4], created[4:6]]
    after_a = s3.list_multipart_uploads(Bucket=bucket, Prefix="up/", KeyMarker="up/a")
    assert [u["Key"] for u in after_a["Uploads"]] == ["up/b", "up/b", "up/c"]
    assert s3.list_multipart_uploads(Bucket=bucket, MaxUploads=5000)["MaxUploads"] == 1000


SSE_C_KEY = b"0123456789abcdef0123456789abcdef"


def test_sse_c_objects_need_their_key(s3, bucket):
    """SSE-C: HEAD and GET of an object stored with a customer-provided key must carry the key
    (HEAD without it: 400 and no body; GET: 400 InvalidRequest); a copy of it must carry it in
    the `x-amz-copy-source-server-side-encryption-customer-*` headers (CopyObject and
    UploadPartCopy without them: 400 InvalidRequest). moto serves the object to anyone."""
    key = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSE_C_KEY}
    copy_key = {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": SSE_C_KEY}
    s3.put_object(Bucket=bucket, Key="secret", Body=b"hidden", **key)
    s3.put_object(Bucket=bucket, Key="plain", Body=b"open")

    with pytest.raises(ClientError) as excinfo:
        s3.head_object(Bucket=bucket, Key="secret")
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as excinfo:
        s3.head_object(Bucket=bucket, Key="secret", SSECustomerAlgorithm="AES256",
                       SSECustomerKey=b"f" * 32)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert s3.head_object(Bucket=bucket, Key="secret", **key)["ContentLength"] == 6
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="secret")
    assert _error(excinfo) == (400, "InvalidRequest")
    assert s3.get_object(Bucket=bucket, Key="secret", **key)["Body"].read() == b"hidden"

    source = {"Bucket": bucket, "Key": "secret"}
    with pytest.raises(ClientError) as excinfo:
        s3.copy_object(Bucket=bucket, Key="copy", CopySource=source)
    assert _error(excinfo) == (400, "InvalidRequest")
    assert not _exists(s3, bucket, "copy")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
    with pytest.raises(ClientError) as excinfo:
        s3.upload_part_copy(Bucket=bucket, Key="parts", UploadId=upload, PartNumber=1,
                            CopySource=source)
    assert _error(excinfo) == (400, "InvalidRequest")
    s3.copy_object(Bucket=bucket, Key="copy", CopySource=source, **copy_key)
    assert _body(s3, bucket, "copy") == b"hidden"

    # Objects without SSE-C, and an overwrite without it, are read as before.
    assert s3.head_object(Bucket=bucket, Key="plain")["ContentLength"] == 4
    s3.put_object(Bucket=bucket, Key="secret", Body=b"public now")
    assert _body(s3, bucket, "secret") == b"public now"


def test_copy_computes_a_real_crc64nvme(s3, bucket):
    """CopyObject with `x-amz-checksum-algorithm: CRC64NVME` stores the CRC-64/NVME of the bytes,
    which HEAD returns with checksum mode: for "123456789", 0xAE8B14860A799888. Without awscrt
    moto stores a CRC32 under that name."""
    import base64

    s3.put_object(Bucket=bucket, Key="digits", Body=b"123456789", ChecksumAlgorithm="CRC32")
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "digits"},
                   ChecksumAlgorithm="CRC64NVME")
    head = s3.head_object(Bucket=bucket, Key="copy", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == base64.b64encode(
        (0xAE8B14860A799888).to_bytes(8, "big")).decode()


def test_one_part_objects_have_full_object_checksums(s3, bucket):
    """HeadObject with checksum mode of a PutObject's object answers its checksum with
    `x-amz-checksum-type: FULL_OBJECT` ("For PutObject uploads, the checksum type is always
    FULL_OBJECT", API reference, PutObject / ChecksumType); moto leaves the type out."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"123456789", ChecksumAlgorithm="CRC32")
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == "y/Q5Jg=="
    assert head["ChecksumType"] == "FULL_OBJECT"


def test_a_completion_declaring_another_full_object_checksum_is_refused(s3, bucket):
    """A copy by parts created with CRC64NVME and type FULL_OBJECT: each UploadPartCopy answers
    the part's checksum, and CompleteMultipartUpload declaring a full-object CRC64NVME other than
    the assembled object's answers 400 BadDigest and completes nothing; the right one completes,
    and HEAD shows it. A declared algorithm other than the upload's answers 400 InvalidRequest.
    moto checks none of it."""
    import base64
    from awscrt import checksums

    mib = 1024 * 1024
    data = bytes(range(256)) * (6 * mib // 256)
    s3.put_object(Bucket=bucket, Key="source", Body=data)
    crc = lambda b: base64.b64encode(checksums.crc64nvme(b).to_bytes(8, "big")).decode()
    upload = s3.create_multipart_upload(Bucket=bucket, Key="copy", ChecksumAlgorithm="CRC64NVME",
                                        ChecksumType="FULL_OBJECT")["UploadId"]
    parts = []
    for number, (first, last) in enumerate([(0, 5 * mib - 1), (5 * mib, 6 * mib - 1)], 1):
        result = s3.upload_part_copy(Bucket=bucket, Key="copy", UploadId=upload,
                                     PartNumber=number,
                                     CopySource={"Bucket": bucket, "Key": "source"},
                                     CopySourceRange=f"bytes={first}-{last}")["CopyPartResult"]
        assert result["ChecksumCRC64NVME"] == crc(data[first:last + 1])
        parts.append({"PartNumber": number, "ETag": result["ETag"],
                      "ChecksumCRC64NVME": result["ChecksumCRC64NVME"]})
    with pytest.raises(ClientError) as excinfo:
        s3.complete_multipart_upload(Bucket=bucket, Key="copy", UploadId=upload,
                                     MultipartUpload={"Parts": parts},
                                     ChecksumCRC64NVME=crc(b"other bytes"),
                                     ChecksumType="FULL_OBJECT")
    assert _error(excinfo) == (400, "BadDigest")
    with pytest.raises(ClientError) as excinfo:
        s3.head_object(Bucket=bucket, Key="copy")
    assert _error(excinfo)[0] == 404
    with pytest.raises(ClientError) as excinfo:
        s3.complete_multipart_upload(Bucket=bucket, Key="copy", UploadId=upload,
                                     MultipartUpload={"Parts": parts},
                                     ChecksumCRC32="AAAAAA==", ChecksumType="FULL_OBJECT")
    assert _error(excinfo) == (400, "InvalidRequest")
    s3.complete_multipart_upload(Bucket=bucket, Key="copy", UploadId=upload,
                                 MultipartUpload={"Parts": parts},
                                 ChecksumCRC64NVME=crc(data), ChecksumType="FULL_OBJECT")
    head = s3.head_object(Bucket=bucket, Key="copy", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == crc(data)
    assert _body(s3, bucket, "copy") == data


def test_notification_configuration_answers_its_documented_root(s3, bucket, endpoint):
    """GetBucketNotificationConfiguration's response document is `NotificationConfiguration`
    (S3 API reference, GetBucketNotificationConfiguration, response syntax), empty for a bucket
    that announces nothing, and shows an EventBridge configuration once one is set."""
    raw = urllib.request.urlopen(f"{endpoint}/{bucket}?notification").read().decode()
    assert "<NotificationConfiguration" in raw, raw
    assert "GetBucketNotification" not in raw, raw
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    raw = urllib.request.urlopen(f"{endpoint}/{bucket}?notification").read().decode()
    assert "<NotificationConfiguration" in raw and "EventBridgeConfiguration" in raw, raw
    config = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert "EventBridgeConfiguration" in config, config
