#!/usr/bin/env python3
"""The local S3 protocol server for tests and the demo: moto's server, made to enforce the S3
rules below that moto 5.2.5 does not, so that tests see the answers S3 gives. Arguments are
moto_server's (`-H 127.0.0.1 -p PORT`).

What moto already does, and is left alone:
- PutObject: `If-None-Match: *` on an existing key and a mismatched `If-Match` answer 412
  PreconditionFailed; `If-Match` on a missing key answers 404 NoSuchKey.
- CompleteMultipartUpload: `If-None-Match: *` on an existing key answers 412.
- DeleteObject: `If-Match: <etag>` answers 412 on a mismatch and 404 NoSuchKey on a missing key.
- PutObjectTagging: more than 10 tags answer 400 BadRequest before anything changes.

What this wrapper adds:
- CopyObject and UploadPartCopy honour `x-amz-copy-source-if-match` (moto checks only
  `x-amz-copy-source-if-none-match`): 412 when the source's ETag differs.
- CopyObject honours `If-None-Match: *` and `If-Match: <etag>` on the destination, and
  CompleteMultipartUpload honours `If-Match: <etag>` (S3 user guide, "How to prevent object
  overwrites with conditional writes", page conditional-writes): 412 PreconditionFailed on a
  failed precondition, 404 NoSuchKey for `If-Match` on a missing key. moto ignores both.
- DeleteObject with `If-Match: *` deletes an existing object and answers 404 NoSuchKey for a
  missing one (S3 user guide, "How to perform conditional deletes", page conditional-deletes);
  moto compares `*` with the ETag and answers 412.
- User-defined metadata above 2 KB, counted as the UTF-8 bytes of every key (without the
  `x-amz-meta-` prefix) and value (S3 user guide, "Working with object metadata", page
  UsingMetadata), answers 400 MetadataTooLarge on PutObject, CopyObject with
  `x-amz-metadata-directive: REPLACE` and CreateMultipartUpload. moto stores any size.
- GetBucketNotificationConfiguration answers with the root element S3 documents,
  `NotificationConfiguration` (S3 API reference, GetBucketNotificationConfiguration, response
  syntax), also for a bucket that announces nothing, and shows an `EventBridgeConfiguration`
  once one is set; moto names the empty document `GetBucketNotificationResponse`, which
  aws-sdk-rust refuses, and leaves the EventBridge configuration it stored out of the answer,
  so a bucket sending its events to EventBridge would look as if it announced nothing.
- ListMultipartUploads gives each upload's real `Initiated` time (S3 API reference,
  ListMultipartUploads: "Date and time at which the multipart upload was initiated"); moto
  answers a fixed 2010-11-10 for every upload, which would make every upload look older than
  any object.
- ListParts answers with the root element S3 documents, `ListPartsResult` (S3 API reference,
  ListParts, response syntax); moto names it `ListPartsResponse`, which clients that check the
  document's root (aws-sdk-rust) refuse.
- More than 10 tags in `x-amz-tagging` ("Amazon S3 limits the maximum number of tags to 10 tags
  per object", S3 API reference, PutObjectTagging; user guide page object-tagging) answer
  400 BadRequest "Object tags cannot be greater than 10", the answer S3 gives to PutObjectTagging,
  and a tag moto's own validation refuses answers 400 InvalidTag, on PutObject, CopyObject with
  `x-amz-tagging-directive: REPLACE` and CreateMultipartUpload, before anything is written. moto
  checks these only after PutObject or CopyObject has stored the object, and for a multipart
  upload only when it completes (storing the object and then failing).
- ListMultipartUploads answers in pages as S3 documents (API reference, ListMultipartUploads):
  at most `max-uploads` uploads (1,000 when absent or larger), sorted by key and, within a key,
  by initiation time; `key-marker` / `upload-id-marker` continue after the upload they name;
  `IsTruncated`, `NextKeyMarker` and `NextUploadIdMarker` say where the next page starts.
  moto answers every upload in one page, never truncated, whatever the parameters.
- Objects written by PutObject with a customer-provided key (SSE-C) must be read with it
  (S3 user guide, "Specifying server-side encryption with customer-provided keys (SSE-C)":
  GET and HEAD requests must carry the `x-amz-server-side-encryption-customer-*` headers, and
  a copy of such an object the `x-amz-copy-source-server-side-encryption-customer-*` ones).
  Without them HeadObject answers 400 with no body, GetObject, CopyObject and UploadPartCopy
  400 InvalidRequest; with another key, 403. moto ignores SSE-C headers and serves the object
  to anyone.
- UploadPartCopy into an upload created with `x-amz-checksum-algorithm` answers the part's
  checksum in that algorithm (S3 API reference, CopyPartResult: `ChecksumCRC64NVME`, "the
  Base64 encoded, 64-bit CRC64NVME checksum of the part"); moto answers only the ETag.
- CompleteMultipartUpload with a full-object checksum (`x-amz-checksum-crc64nvme`, `-crc32` or
  `-crc32c` with `x-amz-checksum-type: FULL_OBJECT`, API reference CompleteMultipartUpload) is
  refused with 400 BadDigest when the assembled object has another checksum ("Checking object
  integrity" in the S3 user guide: a provided checksum that does not match the one S3 calculates
  rejects the request), and with 400 InvalidRequest when the upload was created with another
  algorithm or none; nothing is completed. moto ignores the declared checksum. (Not corrected:
  ListParts still answers parts without their checksums, so an upload resumed here completes
  without declaring one.)
- HeadObject with checksum mode of an object written in one part (PutObject, CopyObject) answers
  `x-amz-checksum-type: FULL_OBJECT` with its checksum ("For PutObject uploads, the checksum type
  is always FULL_OBJECT", API reference, PutObject / ChecksumType); moto leaves the type out,
  which makes a CRC32 or CRC32C look like a composite checksum.
- CRC64NVME checksums are real CRC-64/NVME values: moto computes them with awscrt and, when it
  is not installed, silently puts a CRC32 in their place, so the server refuses to start
  without awscrt (tests/requirements.txt installs it).
"""

import re
import sys
from datetime import datetime, timezone
from importlib.util import find_spec
from urllib.parse import parse_qs, unquote, urlparse

from moto.s3.models import FakeMultipart
from moto.s3.exceptions import (
    BadRequest,
    InvalidArgumentError,
    InvalidTagError,
    MissingKey,
    PreconditionFailed,
    S3ClientError,
)
from moto.core.responses import ActionResult
from moto.s3.responses import S3Response
from moto.s3.utils import compute_checksum
from moto.server import main
from werkzeug.datastructures import Headers

# "Working with object metadata" (UsingMetadata): user-defined metadata in a PUT request header
# is limited to 2 KB, the sum of the bytes of the UTF-8 encoding of each key and value.
MAX_USER_METADATA_BYTES = 2 * 1024
# "Amazon S3 limits the maximum number of tags to 10 tags per object" (PutObjectTagging).
MAX_OBJECT_TAGS = 10
USER_METADATA_PREFIX = "x-amz-meta-"


class MetadataTooLarge(S3ClientError):
    """S3 error code list: MetadataTooLarge, 400 Bad Request."""

    code = "MetadataTooLarge"

    def __init__(self, size: int):
        super().__init__("Your metadata headers exceed the maximum allowed metadata size.")
        self.size = size
        self.max_size_allowed = MAX_USER_METADATA_BYTES


class BadDigest(S3ClientError):
    """S3 error code list: BadDigest, 400 Bad Request."""

    code = "BadDigest"

    def __init__(self, algorithm: str):
        super().__init__(f"The {algorithm} you specified did not match the calculated checksum.")


class ChecksumInvalidRequest(S3ClientError):
    """S3 error code list: InvalidRequest, 400 Bad Request."""

    code = "InvalidRequest"

    def __init__(self, message: str):
        super().__init__(message)


# Full-object checksums a completion may declare, by the name in `x-amz-checksum-<name>`.
FULL_OBJECT_ALGORITHMS = ("CRC64NVME", "CRC32", "CRC32C")


def _wire_bytes(text: str) -> bytes:
    # The HTTP layer decodes header bytes as ISO-8859-1; encoding back gives the bytes that were
    # sent (UTF-8 from a client that sends UTF-8). Text outside ISO-8859-1 is counted as UTF-8.
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _same_etag(wanted: str, etag: str) -> bool:
    # S3 accepts the ETag with or without its quotes.
    return wanted.strip().strip('"') == etag.strip('"')


def _check_user_metadata(headers) -> None:
    size = 0
    for name, value in headers.items():
        if name.lower().startswith(USER_METADATA_PREFIX):
            size += len(_wire_bytes(name[len(USER_METADATA_PREFIX) :]))
            size += len(_wire_bytes(value))
    if size > MAX_USER_METADATA_BYTES:
        raise MetadataTooLarge(size)


def _check_header_tags(response: S3Response) -> None:
    # The same checks moto's backend makes when it applies tags, made before the write.
    tags = response._tagging_from_headers(response.headers)
    if not tags:
        return
    tags_input = response.backend.tagger.convert_dict_to_tags_input(tags)
    if len(tags_input) > MAX_OBJECT_TAGS:
        raise BadRequest("Object tags cannot be greater than 10")
    if any(key.startswith("aws") for key in tags):
        raise InvalidTagError("Your TagKey cannot be prefixed with aws:")
    message = response.backend.tagger.validate_tags(tags_input)
    if message:
        raise InvalidTagError(message)


def _check_destination(response: S3Response, bucket: str, key: str, if_none_match: bool) -> None:
    """`If-Match` / `If-None-Match: *` against the current object at the destination
    ("conditional-writes"): 404 NoSuchKey for `If-Match` on a missing key, else 412."""
    if_match = response.headers.get("If-Match")
    current = response.backend.get_object(bucket, key)
    if if_match:
        if current is None:
            raise MissingKey(key=key)
        if not _same_etag(if_match, current.etag):
            raise PreconditionFailed("If-Match")
    if if_none_match and response.headers.get("If-None-Match") == "*" and current is not None:
        raise PreconditionFailed("If-None-Match")


def _enforce_copy_source_if_match(handler):
    def checked(self):
        wanted = self.headers.get("x-amz-copy-source-if-match")
        source = self.headers.get("x-amz-copy-source")
        if wanted and source:
            if isinstance(source, bytes):
                source = source.decode("utf-8")
            parsed = urlparse(source)
            bucket, key = unquote(parsed.path).lstrip("/").split("/", 1)
            version = parse_qs(parsed.query).get("versionId", [None])[0]
            current = self.backend.get_object(bucket, key, version_id=version)
            if current is not None and not _same_etag(wanted, current.etag):
                raise PreconditionFailed(failed_condition="x-amz-copy-source-If-Match")
        return handler(self)

    return checked


def _enforce_put_object_limits(handler):
    # moto already checks PutObject's If-Match / If-None-Match.
    def checked(self):
        _check_user_metadata(self.headers)
        _check_header_tags(self)
        return handler(self)

    return checked


def _enforce_copy_object_destination(handler):
    def checked(self):
        if (self.headers.get("x-amz-metadata-directive") or "").upper() == "REPLACE":
            _check_user_metadata(self.headers)
        if (self.headers.get("x-amz-tagging-directive") or "").upper() == "REPLACE":
            _check_header_tags(self)
        _check_destination(self, self.bucket_name, self.parse_key_name(), if_none_match=True)
        return handler(self)

    return checked


def _enforce_post_object(handler):
    def checked(self, request, body, bucket_name, query, key_name):
        if body == b"" and "uploads" in query:
            # CreateMultipartUpload: S3 refuses metadata and tags here, not at completion.
            _check_user_metadata(self.headers)
            _check_header_tags(self)
        elif query.get("uploadId"):
            # CompleteMultipartUpload. moto checks `If-None-Match: *` itself; `If-Match` is
            # added. A repeated completion of the upload that made the current object is left
            # to moto, which answers it as the first completion.
            current = self.backend.get_object(bucket_name, key_name)
            repeated = (
                current is not None
                and current.multipart is not None
                and current.multipart.id == query["uploadId"][0]
            )
            if not repeated:
                _check_destination(self, bucket_name, key_name, if_none_match=False)
                _check_full_object_checksum(self, body, bucket_name, query["uploadId"][0])
        return handler(self, request, body, bucket_name, query, key_name)

    return checked


def _check_full_object_checksum(response: S3Response, body: bytes, bucket: str, upload_id: str):
    """A full-object checksum declared on CompleteMultipartUpload must be the assembled
    object's, in the algorithm the upload was created with."""
    if (response.headers.get("x-amz-checksum-type") or "").upper() != "FULL_OBJECT":
        return
    multipart = response.backend.get_bucket(bucket).multiparts.get(upload_id)
    if multipart is None:
        return  # moto answers NoSuchUpload
    created = (multipart.metadata.get("x-amz-checksum-algorithm") or "").upper()
    for algorithm in FULL_OBJECT_ALGORITHMS:
        declared = response.headers.get(f"x-amz-checksum-{algorithm.lower()}")
        if not declared:
            continue
        if created != algorithm:
            raise ChecksumInvalidRequest(
                f"The upload was created using the {created or 'null'} checksum algorithm, "
                f"but a {algorithm} full object checksum was given."
            )
        assembled = b"".join(
            multipart.parts[number].value
            for number, _ in response._complete_multipart_body(body)
            if number in multipart.parts
        )
        if compute_checksum(assembled, algorithm).decode() != declared:
            raise BadDigest(algorithm)


def _part_copy_checksum(handler):
    """UploadPartCopy answers the part's checksum when its upload has an algorithm."""

    def answered(self):
        status, headers, body = handler(self)
        if status != 200:
            return status, headers, body
        multipart = self.backend.get_bucket(self.bucket_name).multiparts.get(
            self._get_param("uploadId")
        )
        algorithm = (
            (multipart.metadata.get("x-amz-checksum-algorithm") or "").upper() if multipart else ""
        )
        part = multipart.parts.get(self._get_int_param("partNumber")) if multipart else None
        if algorithm not in FULL_OBJECT_ALGORITHMS or part is None:
            return status, headers, body
        value = compute_checksum(part.value, algorithm).decode()
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        element = f"Checksum{algorithm}"
        text = text.replace("</ETag>", f"</ETag><{element}>{value}</{element}>", 1)
        encoded = text.encode("utf-8")
        headers["content-length"] = str(len(encoded))
        return status, headers, encoded if isinstance(body, bytes) else text

    return answered


def _full_object_type_on_head(handler):
    """A one-part object's checksum is of type FULL_OBJECT; moto sets the type only for
    objects completed by a multipart upload."""

    def typed(self, *args, **kwargs):
        status, headers, body = handler(self, *args, **kwargs)
        named = {name.lower() for name in headers}
        values = [
            name for name in named
            if name.startswith("x-amz-checksum-") and name not in ("x-amz-checksum-type",
                                                                   "x-amz-checksum-mode")
        ]
        if values and "x-amz-checksum-type" not in named:
            headers["x-amz-checksum-type"] = "FULL_OBJECT"
        return status, headers, body

    return typed


def _enforce_delete_if_match_any(handler):
    # moto checks `If-Match: <etag>`; `If-Match: *` means "the object exists".
    def checked(self):
        if (self.headers.get("If-Match") or "").strip() == "*":
            key = self.parse_key_name()
            if self.backend.get_object(self.bucket_name, key) is None:
                raise MissingKey(key=key)
            # The object exists, so the condition holds: delete as without it.
            original = self.headers
            self.headers = Headers(original)
            self.headers.remove("If-Match")
            try:
                return handler(self)
            finally:
                self.headers = original
        return handler(self)

    return checked


S3Response.copy_object = _enforce_copy_object_destination(
    _enforce_copy_source_if_match(S3Response.copy_object)
)
S3Response.upload_part_copy = _part_copy_checksum(
    _enforce_copy_source_if_match(S3Response.upload_part_copy)
)
S3Response.put_object = _enforce_put_object_limits(S3Response.put_object)
S3Response._key_response_post = _enforce_post_object(S3Response._key_response_post)
S3Response.delete_object = _enforce_delete_if_match_any(S3Response.delete_object)


def _record_initiated(init):
    def recorded(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.initiated = datetime.now(timezone.utc)

    return recorded


def _list_parts_result(handler):
    def renamed(self):
        status, headers, body = handler(self)
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        text = text.replace("<ListPartsResponse", "<ListPartsResult", 1)
        text = text.replace("</ListPartsResponse>", "</ListPartsResult>", 1)
        return status, headers, text.encode("utf-8") if isinstance(body, bytes) else text

    return renamed


def _notification_configuration(handler):
    def renamed(self):
        status, headers, body = handler(self)
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        wrong = "GetBucketNotificationResponse"
        text = text.replace(f"<{wrong}", "<NotificationConfiguration", 1)
        text = text.replace(f"</{wrong}>", "</NotificationConfiguration>", 1)
        config = self.backend.get_bucket_notification_configuration(self.bucket_name)
        if config is not None and config.event_bridge is not None:
            # An empty document (<NotificationConfiguration .../>) is opened up first.
            text = re.sub(
                r"<NotificationConfiguration([^>]*)/>",
                r"<NotificationConfiguration\1></NotificationConfiguration>",
                text,
            )
            text = text.replace(
                "</NotificationConfiguration>",
                "<EventBridgeConfiguration></EventBridgeConfiguration></NotificationConfiguration>",
                1,
            )
        return status, headers, text.encode("utf-8") if isinstance(body, bytes) else text

    return renamed


# S3 API reference, ListMultipartUploads: "1,000 is the maximum number of uploads that can be
# returned in a response."
MAX_UPLOADS = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _list_multipart_uploads(self):
    """moto's answer (same fields), paged as S3 pages it, with each upload's real `Initiated`."""
    query = self.querystring
    prefix = query.get("prefix", [""])[0] or ""
    key_marker = query.get("key-marker", [""])[0] or ""
    id_marker = query.get("upload-id-marker", [""])[0] or ""
    raw_max = query.get("max-uploads", [str(MAX_UPLOADS)])[0]
    try:
        max_uploads = int(raw_max)
    except ValueError:
        raise InvalidArgumentError(
            "Provided max-uploads not an integer or within integer range",
            "max-uploads",
            raw_max,
        )
    max_uploads = min(max(max_uploads, 0), MAX_UPLOADS)
    uploads = [
        u
        for u in self.backend.list_multipart_uploads(self.bucket_name).values()
        if u.key_name.startswith(prefix)
    ]
    uploads.sort(key=lambda u: (u.key_name.encode("utf-8"), getattr(u, "initiated", _EPOCH), u.id))
    if key_marker:
        marker = key_marker.encode("utf-8")
        position = next(
            (
                i
                for i, u in enumerate(uploads)
                if id_marker and u.key_name == key_marker and u.id == id_marker
            ),
            None,
        )
        if position is not None:
            uploads = uploads[position + 1 :]
        else:
            uploads = [
                u
                for u in uploads
                if u.key_name.encode("utf-8") > marker
                or (id_marker and u.key_name == key_marker and u.id > id_marker)
            ]
    page, truncated = uploads[:max_uploads], len(uploads) > max_uploads
    listed = [
        {
            "Key": upload.key_name,
            "UploadId": upload.id,
            "Initiator": {
                "ID": f"arn:aws:iam::{self.current_account}:user/user1-11111a31-17b5-4fb7-9df5-b111111f13de",
                "DisplayName": "user1-11111a31-17b5-4fb7-9df5-b111111f13de",
            },
            "Owner": {
                "ID": "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a",
                "DisplayName": "webfile",
            },
            "StorageClass": "STANDARD",
            "Initiated": _stamp(getattr(upload, "initiated", _EPOCH)),
            "ChecksumAlgorithm": upload.metadata.get("x-amz-checksum-algorithm"),
            "ChecksumType": upload.metadata.get("x-amz-checksum-type"),
        }
        for upload in page
    ]
    result = {
        "Bucket": self.bucket_name,
        "KeyMarker": key_marker,
        "UploadIdMarker": id_marker,
        "MaxUploads": max_uploads,
        "IsTruncated": truncated,
        "Uploads": listed,
    }
    if prefix:
        result["Prefix"] = prefix
    if page:
        result["NextKeyMarker"] = page[-1].key_name
        result["NextUploadIdMarker"] = page[-1].id
    self.data["Action"] = "ListMultipartUploads"
    return self.serialized(ActionResult(result))


FakeMultipart.__init__ = _record_initiated(FakeMultipart.__init__)
S3Response.list_parts = _list_parts_result(S3Response.list_parts)
S3Response.get_bucket_notification = _notification_configuration(
    S3Response.get_bucket_notification
)
S3Response.list_multipart_uploads = _list_multipart_uploads

# SSE-C. The header names and answers of the user guide page "Specifying server-side
# encryption with customer-provided keys (SSE-C)" (ServerSideEncryptionCustomerKeys).
SSE_C_KEY_MD5 = "x-amz-server-side-encryption-customer-key-MD5"
COPY_SOURCE_SSE_C_KEY_MD5 = "x-amz-copy-source-server-side-encryption-customer-key-MD5"
SSE_C_MESSAGE = (
    "The object was stored using a form of Server Side Encryption. The correct parameters "
    "must be provided to retrieve the object."
)


class CustomerKeyRequired(S3ClientError):
    """400 InvalidRequest: the object is SSE-C and the request does not carry its key."""

    code = "InvalidRequest"

    def __init__(self):
        super().__init__(SSE_C_MESSAGE)


class CustomerKeyDenied(S3ClientError):
    """403 AccessDenied: the request carries another key than the object's."""

    code = "AccessDenied"

    def __init__(self):
        super().__init__("Access Denied")


def _customer_key_of(key) -> str | None:
    return getattr(key, "sse_customer_key_md5", None) if key is not None else None


def _key_check(stored: str | None, given: str | None) -> str:
    """"ok", "missing" or "other" key, for an object stored with `stored`."""
    if stored is None:
        return "ok"
    if not given:
        return "missing"
    return "ok" if given.strip() == stored else "other"


def _source_of_copy(response: S3Response):
    source = response.headers.get("x-amz-copy-source")
    if isinstance(source, bytes):
        source = source.decode("utf-8")
    parsed = urlparse(source)
    bucket, key = unquote(parsed.path).lstrip("/").split("/", 1)
    version = parse_qs(parsed.query).get("versionId", [None])[0]
    return response.backend.get_object(bucket, key, version_id=version)


def _record_customer_key(handler):
    def recorded(self):
        result = handler(self)
        md5 = self.headers.get(SSE_C_KEY_MD5)
        if md5:
            stored = self.backend.get_object(self.bucket_name, self.parse_key_name())
            if stored is not None:
                stored.sse_customer_key_md5 = md5.strip()
        return result

    return recorded


def _head_needs_customer_key(handler):
    def checked(self, bucket_name, query, key_name, headers):
        version = query.get("versionId", [None])[0]
        try:
            current = self.backend.get_object(bucket_name, key_name, version_id=version)
        except Exception:  # noqa: BLE001 moto's own handler answers for missing buckets
            current = None
        verdict = _key_check(_customer_key_of(current), headers.get(SSE_C_KEY_MD5))
        if verdict == "missing":
            return 400, {}, ""
        if verdict == "other":
            return 403, {}, ""
        return handler(self, bucket_name, query, key_name, headers)

    return checked


def _get_needs_customer_key(handler):
    def checked(self):
        version = self.querystring.get("versionId", [None])[0]
        current = self.backend.get_object(self.bucket_name, self.parse_key_name(), version_id=version)
        verdict = _key_check(_customer_key_of(current), self.headers.get(SSE_C_KEY_MD5))
        if verdict == "missing":
            raise CustomerKeyRequired()
        if verdict == "other":
            raise CustomerKeyDenied()
        return handler(self)

    return checked


def _copy_needs_customer_key(handler):
    def checked(self):
        if self.headers.get("x-amz-copy-source"):
            verdict = _key_check(
                _customer_key_of(_source_of_copy(self)), self.headers.get(COPY_SOURCE_SSE_C_KEY_MD5)
            )
            if verdict == "missing":
                raise CustomerKeyRequired()
            if verdict == "other":
                raise CustomerKeyDenied()
        return handler(self)

    return checked


S3Response.put_object = _record_customer_key(S3Response.put_object)
S3Response.head_object = _head_needs_customer_key(_full_object_type_on_head(S3Response.head_object))
S3Response.get_object = _get_needs_customer_key(S3Response.get_object)
S3Response.copy_object = _copy_needs_customer_key(S3Response.copy_object)
S3Response.upload_part_copy = _copy_needs_customer_key(S3Response.upload_part_copy)

if __name__ == "__main__":
    if find_spec("awscrt") is None:
        sys.exit(
            "local_s3.py: awscrt is not installed, and without it moto labels a CRC32 as CRC64NVME; "
            "install tests/requirements.txt (make setup)"
        )
    main(sys.argv[1:])
