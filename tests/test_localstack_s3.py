"""LocalStack's S3 with the corrections of tests/localstack_s3.py answers as S3 documents.

Run through tests/with-localstack.sh (`make test-localstack`): the corrected server is the one it
started (AWS_ENDPOINT_URL); these tests start LocalStack without the corrections beside it, to
show that each departure corrected is still there (when an upgrade fixes one, its correction and
the test that shows it go).

Sources, cited per test:
- S3 API reference, CopyObject: `x-amz-tagging-directive` COPY (the default): "the object tags
  are copied from the source object".
- S3 user guide, "How to prevent object overwrites with conditional writes" (conditional-writes):
  a write with `If-None-Match: *` onto an existing key, or `If-Match` with another ETag, fails
  with 412 Precondition Failed, and `If-Match` on a missing key with 404 NoSuchKey; a failed
  write does not change the object.
- S3 API reference, CopyObject / UploadPartCopy: `x-amz-copy-source-if-match`, 412 on a mismatch.
- S3 API reference, UploadPartCopy: `x-amz-copy-source-range` "bytes=first-last", where first
  and last are the zero-based byte offsets to copy; S3 error code list: InvalidArgument (400),
  InvalidRange (416), for a range the object cannot satisfy.
- S3 user guide, "How to perform conditional deletes" (conditional-deletes).
- S3 user guide, "Specifying server-side encryption with customer-provided keys (SSE-C)": a copy
  of an object stored with a customer-provided key must carry the key in the
  `x-amz-copy-source-server-side-encryption-customer-*` headers; without them S3 answers 400
  InvalidRequest.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ResponseStreamingError

ROOT = Path(__file__).resolve().parents[1]
SHIM = ROOT / "tests" / "localstack_s3.py"
VENV = Path(os.environ.get("LOCALSTACK_VENV", ROOT / ".venv-localstack"))
OTHER_REGION = "eu-west-1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _running(endpoint: str) -> bool:
    import json

    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=2) as answer:
            return json.load(answer)["services"].get("s3") == "running"
    except OSError:
        return False


@pytest.fixture(scope="module")
def corrected():
    """The server tests/with-localstack.sh started: LocalStack with the corrections."""
    if os.environ.get("S3FANOUT_TEST_SERVER") != "localstack":
        pytest.fail("run these tests through tests/with-localstack.sh (make test-localstack)")
    return os.environ["AWS_ENDPOINT_URL"]


@pytest.fixture(scope="module")
def plain():
    """LocalStack without the corrections (`localstack_s3.py --plain`), on a free port."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="localstack-plain-") as scratch:
        log_path = Path(scratch) / "server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(VENV / "bin" / "python"), str(SHIM), "--plain", "--port", str(port),
                 "--root", str(Path(scratch) / "root")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        endpoint = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while not _running(endpoint):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"plain LocalStack did not start:\n{log_path.read_text()}")
                time.sleep(0.2)
            yield endpoint
        finally:
            # Its shutdown can hang; its data is scratch.
            proc.kill()
            proc.wait(timeout=30)


def _client(endpoint: str, region: str = "us-east-1"):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def _bucket(s3, region: str = "us-east-1") -> str:
    name = f"t-{uuid.uuid4().hex[:20]}"
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    return name


def _error(excinfo) -> tuple[int, str]:
    response = excinfo.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def _tags(s3, bucket: str, key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


def _read(s3, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None when the answer breaks off before its Content-Length."""
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ResponseStreamingError:
        return None


# Tags on a copy to another region.


def _copy_across_regions(endpoint: str) -> dict[str, str]:
    """Copies a tagged object to a bucket in another region; the copy's tags."""
    east, west = _client(endpoint), _client(endpoint, OTHER_REGION)
    source, destination = _bucket(east), _bucket(west, OTHER_REGION)
    east.put_object(Bucket=source, Key="k", Body=b"tagged", Tagging="team=blue&tier=gold")
    west.copy_object(Bucket=destination, Key="k", CopySource={"Bucket": source, "Key": "k"})
    return _tags(west, destination, "k")


# Expires on a copy with the source's metadata.


def _copied_expires(endpoint: str):
    """Copies an object stored with Expires, metadata directive COPY; the copy's Expires."""
    from datetime import datetime, timezone

    s3 = _client(endpoint)
    source, destination = _bucket(s3), _bucket(s3)
    expires = datetime(2033, 12, 1, 16, 0, tzinfo=timezone.utc)
    s3.put_object(Bucket=source, Key="k", Body=b"x", Expires=expires, CacheControl="max-age=60")
    s3.copy_object(Bucket=destination, Key="k", CopySource={"Bucket": source, "Key": "k"})
    head = s3.head_object(Bucket=destination, Key="k")
    assert head.get("CacheControl") == "max-age=60"
    return head.get("Expires"), expires


def test_copy_with_the_source_metadata_keeps_its_expires(corrected):
    """CopyObject: with `x-amz-metadata-directive: COPY` (the default) the copy has the source's
    metadata, `Expires` among its headers."""
    got, expires = _copied_expires(corrected)
    assert got == expires


def test_plain_localstack_loses_expires_on_a_copy(plain):
    got, _ = _copied_expires(plain)
    assert got is None


def test_copy_to_another_region_keeps_the_source_tags(corrected):
    """CopyObject: with the default tagging directive (COPY) the copy has the source's tags,
    whatever the regions of the two buckets."""
    assert _copy_across_regions(corrected) == {"team": "blue", "tier": "gold"}


def test_plain_localstack_loses_tags_on_a_copy_to_another_region(plain):
    assert _copy_across_regions(plain) == {}


def test_copy_with_replaced_tags_to_another_region(corrected):
    """CopyObject: with `x-amz-tagging-directive: REPLACE` the copy has the tags of the request
    (none when it names none), not the source's."""
    east, west = _client(corrected), _client(corrected, OTHER_REGION)
    source, destination = _bucket(east), _bucket(west, OTHER_REGION)
    east.put_object(Bucket=source, Key="k", Body=b"tagged", Tagging="team=blue")
    copy = {"Bucket": source, "Key": "k"}
    west.copy_object(
        Bucket=destination, Key="k", CopySource=copy, TaggingDirective="REPLACE", Tagging="x=1"
    )
    assert _tags(west, destination, "k") == {"x": "1"}
    west.copy_object(Bucket=destination, Key="n", CopySource=copy, TaggingDirective="REPLACE")
    assert _tags(west, destination, "n") == {}


def test_copy_in_one_region_keeps_the_source_tags(corrected):
    """CopyObject (COPY directive) within one region, and over an object that had other tags."""
    s3 = _client(corrected)
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="src", Body=b"a", Tagging="team=blue")
    s3.put_object(Bucket=bucket, Key="dst", Body=b"b", Tagging="old=1")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert _tags(s3, bucket, "dst") == {"team": "blue"}


# A failed conditional copy.


def _failed_conditional_copies(endpoint: str) -> list[tuple[int, str, bytes | None]]:
    """CopyObject over an existing object with `If-None-Match: *`, then with `If-Match` naming
    another ETag: each answer, and what the destination holds after it."""
    s3 = _client(endpoint)
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="src", Body=b"the source")
    s3.put_object(Bucket=bucket, Key="dst", Body=b"the destination, as it was")
    results = []
    for condition in ({"IfNoneMatch": "*"}, {"IfMatch": '"0123456789abcdef0123456789abcdef"'}):
        with pytest.raises(ClientError) as excinfo:
            s3.copy_object(
                Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}, **condition
            )
        results.append((*_error(excinfo), _read(s3, bucket, "dst")))
        # The next case starts from the destination as it was.
        s3.put_object(Bucket=bucket, Key="dst", Body=b"the destination, as it was")
    return results


def test_failed_conditional_copy_leaves_the_destination_as_it_was(corrected):
    """conditional-writes: CopyObject with a destination condition that fails answers 412 and
    leaves the object under the destination key unchanged."""
    assert _failed_conditional_copies(corrected) == [
        (412, "PreconditionFailed", b"the destination, as it was"),
        (412, "PreconditionFailed", b"the destination, as it was"),
    ]


def test_plain_localstack_overwrites_the_destination_of_a_failed_conditional_copy(plain):
    # The answer is right, but the source's bytes were written under the old object's length:
    # the read breaks off.
    for status, code, held in _failed_conditional_copies(plain):
        assert (status, code) == (412, "PreconditionFailed")
        assert held != b"the destination, as it was"


def test_conditional_copies_that_hold(corrected):
    """conditional-writes: `If-None-Match: *` onto a missing key and `If-Match` with the current
    ETag copy; `If-Match` on a missing key answers 404 NoSuchKey."""
    s3 = _client(corrected)
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="src", Body=b"the source", Tagging="team=blue")
    copy = {"Bucket": bucket, "Key": "src"}
    s3.copy_object(Bucket=bucket, Key="new", CopySource=copy, IfNoneMatch="*")
    assert _read(s3, bucket, "new") == b"the source"
    assert _tags(s3, bucket, "new") == {"team": "blue"}

    s3.put_object(Bucket=bucket, Key="dst", Body=b"old")
    etag = s3.head_object(Bucket=bucket, Key="dst")["ETag"]
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=copy, IfMatch=etag)
    assert _read(s3, bucket, "dst") == b"the source"

    with pytest.raises(ClientError) as excinfo:
        s3.copy_object(Bucket=bucket, Key="missing", CopySource=copy, IfMatch=etag)
    assert _error(excinfo) == (404, "NoSuchKey")


def test_copy_source_if_match(corrected):
    """CopyObject: `x-amz-copy-source-if-match` with another ETag than the source's answers 412
    and writes nothing (LocalStack does this itself; the corrections must keep it)."""
    s3 = _client(corrected)
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="src", Body=b"the source")
    s3.put_object(Bucket=bucket, Key="dst", Body=b"kept")
    with pytest.raises(ClientError) as excinfo:
        s3.copy_object(
            Bucket=bucket,
            Key="dst",
            CopySource={"Bucket": bucket, "Key": "src"},
            CopySourceIfMatch='"0123456789abcdef0123456789abcdef"',
        )
    assert _error(excinfo) == (412, "PreconditionFailed")
    assert _read(s3, bucket, "dst") == b"kept"


# UploadPartCopy of an SSE-C source.

SSE_C_KEY = b"k" * 32
SSE_C = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSE_C_KEY}
COPY_SOURCE_SSE_C = {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": SSE_C_KEY}


def _part_copy_of_sse_c_source(endpoint: str, **key) -> tuple[int, str] | None:
    """UploadPartCopy of an SSE-C object: the error answered, or None when the part was copied."""
    s3 = _client(endpoint)
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="secret", Body=b"hidden", **SSE_C)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
    try:
        s3.upload_part_copy(
            Bucket=bucket,
            Key="parts",
            UploadId=upload,
            PartNumber=1,
            CopySource={"Bucket": bucket, "Key": "secret"},
            **key,
        )
    except ClientError as err:
        return err.response["ResponseMetadata"]["HTTPStatusCode"], err.response["Error"]["Code"]
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="parts", UploadId=upload)
    return None


def test_upload_part_copy_of_an_sse_c_source_needs_its_key(corrected):
    """SSE-C: UploadPartCopy of an object stored with a customer-provided key answers 400
    InvalidRequest without the key's copy-source headers and 403 AccessDenied with another key;
    with the key, the part is copied."""
    assert _part_copy_of_sse_c_source(corrected) == (400, "InvalidRequest")
    other = {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": b"o" * 32}
    assert _part_copy_of_sse_c_source(corrected, **other) == (403, "AccessDenied")
    assert _part_copy_of_sse_c_source(corrected, **COPY_SOURCE_SSE_C) is None


def test_plain_localstack_copies_parts_of_an_sse_c_source_without_its_key(plain):
    assert _part_copy_of_sse_c_source(plain) is None


# Departures left alone: the engine copes with LocalStack's answers as they are.


def test_upload_part_copy_of_a_range_beyond_a_shrunk_source(corrected):
    """UploadPartCopy: a range past the end of the source is refused (400 InvalidArgument, the
    answer S3 gives), even when `x-amz-copy-source-if-match` names an older ETag: the range is
    checked first. This is what a copy by parts meets when the source was overwritten by a
    smaller object; the engine reads it as a changed source, as it reads the 412 moto answers."""
    s3 = _client(corrected)
    bucket = _bucket(s3)
    old = s3.put_object(Bucket=bucket, Key="src", Body=b"x" * 200)["ETag"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"x" * 100)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    with pytest.raises(ClientError) as excinfo:
        s3.upload_part_copy(
            Bucket=bucket,
            Key="dst",
            UploadId=upload,
            PartNumber=1,
            CopySource={"Bucket": bucket, "Key": "src"},
            CopySourceRange="bytes=0-199",
            CopySourceIfMatch=old,
        )
    assert _error(excinfo) == (400, "InvalidArgument")
    assert excinfo.value.response["Error"]["ArgumentName"] == "x-amz-copy-source-range"
    # Within the source's size, the ETag decides.
    with pytest.raises(ClientError) as excinfo:
        s3.upload_part_copy(
            Bucket=bucket,
            Key="dst",
            UploadId=upload,
            PartNumber=1,
            CopySource={"Bucket": bucket, "Key": "src"},
            CopySourceRange="bytes=0-99",
            CopySourceIfMatch=old,
        )
    assert _error(excinfo) == (412, "PreconditionFailed")


def test_delete_object_if_match_is_not_implemented(corrected):
    """conditional-deletes: S3 deletes with `If-Match` (412 on another ETag); LocalStack answers
    501 NotImplemented on general purpose buckets and deletes nothing. The engine then deletes
    without the condition (its documented fallback for servers without conditional deletes)."""
    s3 = _client(corrected)
    bucket = _bucket(s3)
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"kept")["ETag"]
    with pytest.raises(ClientError) as excinfo:
        s3.delete_object(Bucket=bucket, Key="k", IfMatch=etag)
    assert _error(excinfo) == (501, "NotImplemented")
    assert _read(s3, bucket, "k") == b"kept"
