#!/usr/bin/env python3
"""The local S3 server of tests/local_s3.py, able to deploy the templates (the CloudFormation
correction of conftest.py) and recording every request it authorizes.

    iam_server.py RECORD.jsonl -H 127.0.0.1 -p PORT

IAM policies are enforced once `/moto-api/reset-auth` is posted `0` (moto's switch; until then
every request passes, which lets a test create buckets, deploy a stack and create users). From
then on, each request is written to RECORD.jsonl as one JSON object: the access key that signed
it, method, path, query, the headers that decide which permissions S3 checks, the IAM action and
resource moto checked, whether moto allowed it, and the HTTP status and error code answered.

Where moto departs from what AWS documents, it is corrected here, for the same reason
local_s3.py corrects others:
- moto checks HeadBucket against an action `s3:HeadBucket`, which IAM does not have; S3 checks
  `s3:ListBucket` ("To use this operation, you must have permissions to perform the
  s3:ListBucket action", S3 API reference, HeadBucket). A role granted s3:ListBucket would be
  refused every HeadBucket.
- moto checks Lambda's Invoke as `lambda:Invoke` on resource `*`; IAM's action is
  `lambda:InvokeFunction` on the function's ARN (Service Authorization Reference, AWS Lambda),
  so a grant on one function could never pass.
- Invoke with `InvocationType: DryRun` runs the function in moto (which needs Docker); Lambda
  only checks the parameters and "that the user or role has permission to invoke the
  function" (Lambda API reference, Invoke) and answers 204.
- moto checks SQS's batch actions as `sqs:SendMessageBatch`, `sqs:DeleteMessageBatch` and
  `sqs:ChangeMessageVisibilityBatch`; SQS has no such permissions: "setting permissions for
  SendMessage, DeleteMessage, or ChangeMessageVisibility sets permissions for the
  corresponding batch versions of the actions" (Amazon SQS Developer Guide, "Amazon SQS batch
  actions"). A role granted sqs:SendMessage would be refused every SendMessageBatch.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qsl, unquote

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import conftest  # noqa: E402  (the CloudFormation correction, shared with the deploy tests)

exec(conftest._MOTO_SERVER_SHIM.replace("sys.exit(main())", ""))  # patches moto's parsing only

import local_s3  # noqa: E402,F401  (its corrections of moto's S3 apply on import)
from moto import settings  # noqa: E402
from moto.awslambda.responses import LambdaResponse  # noqa: E402
from moto.core.authorization import ActionAuthenticatorMixin  # noqa: E402
from moto.moto_server.werkzeug_app import DomainDispatcherApplication  # noqa: E402
from moto.s3 import responses as s3_responses  # noqa: E402
from moto.sqs.responses import SQSResponse  # noqa: E402

s3_responses.ACTION_MAP["BUCKET"]["HEAD"]["DEFAULT"] = "ListBucket"
# moto authorizes DeleteObjectTagging as s3:DeleteObject; S3 requires s3:DeleteObjectTagging
# ("To use this operation, you must have permission to perform the s3:DeleteObjectTagging
# action", DeleteObjectTagging in the Amazon S3 API Reference).
s3_responses.ACTION_MAP["KEY"]["DELETE"]["tagging"] = "DeleteObjectTagging"


def _is_invoke(response) -> bool:
    return response.method == "POST" and response.path.rstrip("/").endswith("/invocations")


def _invoke_resource(self) -> str:
    if not _is_invoke(self):
        return "*"
    name = unquote(self.path.rstrip("/").rsplit("/", 2)[-2])
    if name.startswith("arn:"):
        return name
    return f"arn:aws:lambda:{self.region}:{self.current_account}:function:{name}"


def _authorize_invoke(original):
    def authorize(self, resource="*"):
        if _is_invoke(self):
            self._get_action = lambda: "InvokeFunction"  # this request's instance only
            try:
                return original(self, resource)
            finally:
                del self._get_action
        return original(self, resource)

    return authorize


def _dry_run(invoke):
    def answer(self):
        if self.headers.get("X-Amz-Invocation-Type") == "DryRun":
            return 204, {"status": 204}, ""
        return invoke(self)

    return answer


# SQS authorizes a batch action with its single action's permission.
SQS_BATCH_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _authorize_sqs_batch(original):
    def authorize(self, resource="*"):
        single = SQS_BATCH_ACTIONS.get(self._get_action())
        if single is None:
            return original(self, resource)
        self._get_action = lambda: single  # this request's instance only: moto dispatches on it
        try:
            return original(self, resource)
        finally:
            del self._get_action

    return authorize


SQSResponse._authenticate_and_authorize_normal_action = _authorize_sqs_batch(
    SQSResponse._authenticate_and_authorize_normal_action
)
LambdaResponse._determine_resource = _invoke_resource
LambdaResponse._authenticate_and_authorize_normal_action = _authorize_invoke(
    LambdaResponse._authenticate_and_authorize_normal_action
)
LambdaResponse.invoke = _dry_run(LambdaResponse.invoke)

# Headers that change which permissions S3 requires, or which say what a request was.
RECORDED_HEADERS = (
    "x-amz-copy-source",
    "x-amz-copy-source-if-match",
    "x-amz-metadata-directive",
    "x-amz-tagging-directive",
    "x-amz-tagging",
    "if-match",
    "if-none-match",
    "x-amz-target",
    "content-type",
)
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/([^/]+)/")
_CODE = re.compile(rb"<Code>([^<]+)</Code>|\"__type\"\s*:\s*\"([^\"]+)\"")

_current = threading.local()
_lock = threading.Lock()
_record_file = None


def _authorize(original):
    def authorize(self, iam_request_cls, resource="*"):
        enforced = (
            ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT
        )
        entry = getattr(_current, "entry", None)
        try:
            original(self, iam_request_cls, resource)
        except Exception:
            if entry is not None and enforced:
                entry["checks"].append(
                    {"action": _action(self), "resource": resource, "allowed": False}
                )
            raise
        if entry is not None and enforced:
            entry["checks"].append({"action": _action(self), "resource": resource, "allowed": True})

    return authorize


def _action(response) -> str:
    try:
        action = response._get_action()
    except Exception:  # an action moto cannot name is recorded as such
        return "?"
    return action[0] if isinstance(action, list) else str(action)


def _record(app_call):
    def call(self, environ, start_response):
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        found = _CREDENTIAL.search(authorization)
        entry = {
            "key": found.group(1) if found else None,
            "region": found.group(2) if found else None,
            "service": found.group(3) if found else None,
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("RAW_URI", environ.get("PATH_INFO", "")).split("?", 1)[0],
            "query": dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)),
            "headers": {
                name: environ[f"HTTP_{name.upper().replace('-', '_')}"]
                for name in RECORDED_HEADERS
                if f"HTTP_{name.upper().replace('-', '_')}" in environ
            },
            "checks": [],
        }
        _current.entry = entry
        status_seen: list[str] = []

        def recording_start_response(status, headers, exc_info=None):
            status_seen.append(status)
            return start_response(status, headers, exc_info)

        try:
            body = b"".join(app_call(self, environ, recording_start_response))
        finally:
            _current.entry = None
        status = int(status_seen[0].split()[0]) if status_seen else 500
        entry["status"] = status
        if status >= 400:
            code = _CODE.search(body[:4096])
            entry["code"] = next((g.decode() for g in code.groups() if g), None) if code else None
        if entry["checks"] and _record_file is not None:
            with _lock:
                _record_file.write(json.dumps(entry) + "\n")
                _record_file.flush()
        return [body]

    return call


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authorize(
    ActionAuthenticatorMixin._authenticate_and_authorize_action
)
DomainDispatcherApplication.__call__ = _record(DomainDispatcherApplication.__call__)

if __name__ == "__main__":
    _record_file = open(sys.argv[1], "a", encoding="utf-8")
    from moto.server import main

    main(sys.argv[2:])
