"""What S3 checks for a request, and what an identity policy answers: an evaluation with the
rules AWS documents, next to moto's own (which checks one action per request and ignores
conditions).

`operation(record)` names the S3 operation of a request recorded by iam_server.py;
`required(record)` lists the (action, resource, context) every one of which the caller must be
allowed, as the S3 API reference states for that operation:

- CopyObject and UploadPartCopy: `s3:PutObject` on the destination and `s3:GetObject` on the
  source ("you must have s3:GetObject permission to read the source object that is being
  copied ... s3:PutObject permission to write the object copy to the destination bucket");
- PutObject with `x-amz-tagging`: also `s3:PutObjectTagging` ("To successfully set the tag-set
  with your PutObject request, you must have the s3:PutObjectTagging"); the same is required
  here of CreateMultipartUpload with tags, and of a CopyObject that copies tags
  (`x-amz-tagging-directive: COPY`, the default), which also reads the source's tags
  (`s3:GetObjectTagging`): stricter than the one permission stated, never looser;
- a conditional write with `If-Match`: also `s3:GetObject` on the key;
- HeadBucket: `s3:ListBucket`; ListObjectsV2: `s3:ListBucket` with the `s3:prefix` condition key;
- HeadObject and GetObject that answer 404: also `s3:ListBucket` on the bucket ("If you don't
  have the s3:ListBucket permission, Amazon S3 returns an HTTP status code 403 Access Denied
  error" for a key that does not exist).

`Policy(statements).allows(action, resource, context)` applies Allow and Deny statements with
`Action`/`NotAction`, `Resource`/`NotResource` wildcards and the string conditions the
templates use; a condition on a key the request does not carry does not match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote


def _split(path: str) -> tuple[str, str]:
    bucket, _, key = path.lstrip("/").partition("/")
    return unquote(bucket), unquote(key)


def _object(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _bucket(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def operation(record: dict) -> str:
    """The S3 operation (or, for another service, the action moto named)."""
    if record.get("service") != "s3":
        actions = [c["action"] for c in record["checks"]]
        return actions[0] if actions else "?"
    method, query, headers = record["method"], record["query"], record["headers"]
    bucket, key = _split(record["path"])
    if not key:
        if method == "HEAD":
            return "HeadBucket"
        if method == "GET" and "uploads" in query:
            return "ListMultipartUploads"
        if method == "GET" and query.get("list-type") == "2":
            return "ListObjectsV2"
        if method == "GET" and "location" in query:
            return "GetBucketLocation"
        if method == "GET" and "notification" in query:
            return "GetBucketNotificationConfiguration"
        if method == "GET" and "website" in query:
            return "GetBucketWebsite"
        if method == "GET":
            return "ListObjects"
        return f"{method} bucket"
    copy = "x-amz-copy-source" in headers
    if method == "HEAD":
        return "HeadObject"
    if method == "GET":
        if "tagging" in query:
            return "GetObjectTagging"
        if "uploadId" in query:
            return "ListParts"
        return "GetObject"
    if method == "PUT":
        if "tagging" in query:
            return "PutObjectTagging"
        if "partNumber" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        if "tagging" in query:
            return "DeleteObjectTagging"
        return "DeleteObject"
    return f"{method} object"


@dataclass(frozen=True)
class Need:
    """One permission a request needs."""

    action: str
    resource: str
    context: tuple = field(default=())

    def __str__(self) -> str:
        extra = f" {dict(self.context)}" if self.context else ""
        return f"{self.action} on {self.resource}{extra}"


def required(record: dict) -> list[Need]:
    """Every permission S3 checks for the recorded request."""
    if record.get("service") != "s3":
        return [Need(f"{record['service']}:{c['action']}", c["resource"]) for c in record["checks"]]
    op = operation(record)
    headers = record["headers"]
    bucket, key = _split(record["path"])
    obj = _object(bucket, key)
    needs: list[Need] = []
    if op in ("HeadBucket", "ListObjects", "ListObjectsV2"):
        context = (("s3:prefix", record["query"].get("prefix", "")),) if op != "HeadBucket" else ()
        needs.append(Need("s3:ListBucket", _bucket(bucket), context))
    elif op == "ListMultipartUploads":
        needs.append(Need("s3:ListBucketMultipartUploads", _bucket(bucket)))
    elif op == "GetBucketLocation":
        needs.append(Need("s3:GetBucketLocation", _bucket(bucket)))
    elif op == "GetBucketNotificationConfiguration":
        # "you must be the bucket owner or have the s3:GetBucketNotification permission"
        # (S3 API reference, GetBucketNotificationConfiguration).
        needs.append(Need("s3:GetBucketNotification", _bucket(bucket)))
    elif op == "GetBucketWebsite":
        # "This GET action requires the S3:GetBucketWebsite permission" (S3 API reference,
        # GetBucketWebsite).
        needs.append(Need("s3:GetBucketWebsite", _bucket(bucket)))
    elif op in ("HeadObject", "GetObject"):
        version = "versionId" in record["query"]
        needs.append(Need("s3:GetObjectVersion" if version else "s3:GetObject", obj))
        if record.get("status") == 404:
            needs.append(Need("s3:ListBucket", _bucket(bucket)))
    elif op == "GetObjectTagging":
        needs.append(Need("s3:GetObjectTagging", obj))
    elif op == "PutObjectTagging":
        needs.append(Need("s3:PutObjectTagging", obj))
    elif op == "DeleteObjectTagging":
        needs.append(Need("s3:DeleteObjectTagging", obj))
    elif op == "ListParts":
        needs.append(Need("s3:ListMultipartUploadParts", obj))
    elif op == "AbortMultipartUpload":
        needs.append(Need("s3:AbortMultipartUpload", obj))
    elif op == "DeleteObject":
        needs.append(Need("s3:DeleteObjectVersion" if "versionId" in record["query"] else "s3:DeleteObject", obj))
    elif op in ("PutObject", "CopyObject", "UploadPart", "UploadPartCopy", "CreateMultipartUpload", "CompleteMultipartUpload"):
        needs.append(Need("s3:PutObject", obj))
        if "x-amz-tagging" in headers:
            needs.append(Need("s3:PutObjectTagging", obj))
        if "if-match" in headers:
            needs.append(Need("s3:GetObject", obj))
    else:
        raise AssertionError(f"no permission rule for {op}: {record}")
    if op in ("CopyObject", "UploadPartCopy"):
        source = unquote(headers["x-amz-copy-source"])
        source, _, version = source.partition("?versionId=")
        src_bucket, src_key = _split(source)
        read = "s3:GetObjectVersion" if version else "s3:GetObject"
        needs.append(Need(read, _object(src_bucket, src_key)))
        if op == "CopyObject" and headers.get("x-amz-tagging-directive", "COPY").upper() == "COPY":
            needs.append(Need("s3:GetObjectTagging", _object(src_bucket, src_key)))
            needs.append(Need("s3:PutObjectTagging", obj))
    return needs


def _matches(pattern: str, value: str, case: bool = True) -> bool:
    regex = "^" + re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + "$"
    return re.match(regex, value, 0 if case else re.IGNORECASE) is not None


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


_CONDITIONS = {
    "StringEquals": lambda want, got: got == want,
    "StringLike": lambda want, got: _matches(want, got),
    "ArnEquals": lambda want, got: got == want,
    "ArnLike": lambda want, got: _matches(want, got),
}


class Policy:
    """The statements of every policy of one identity."""

    def __init__(self, statements: list[dict]):
        self.statements = statements

    def _applies(self, stmt: dict, need: Need) -> bool:
        if "Action" in stmt:
            hit = any(_matches(a, need.action, case=False) for a in _as_list(stmt["Action"]))
        else:
            hit = not any(_matches(a, need.action, case=False) for a in _as_list(stmt["NotAction"]))
        if not hit:
            return False
        if "Resource" in stmt:
            hit = any(_matches(r, need.resource) for r in _as_list(stmt["Resource"]))
        else:
            hit = not any(_matches(r, need.resource) for r in _as_list(stmt["NotResource"]))
        if not hit:
            return False
        context = dict(need.context)
        for operator, keys in stmt.get("Condition", {}).items():
            test = _CONDITIONS.get(operator)
            if test is None:
                raise AssertionError(f"condition operator {operator} is not evaluated here")
            for name, wanted in keys.items():
                if name not in context:
                    return False
                if not any(test(w, context[name]) for w in _as_list(wanted)):
                    return False
        return True

    def allows(self, need: Need) -> bool:
        matching = [s for s in self.statements if self._applies(s, need)]
        if any(s["Effect"] == "Deny" for s in matching):
            return False
        return any(s["Effect"] == "Allow" for s in matching)

    def granted_actions(self) -> set[str]:
        return {a for s in self.statements if s["Effect"] == "Allow" for a in _as_list(s.get("Action", []))}
