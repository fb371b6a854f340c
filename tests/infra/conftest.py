"""Fixtures for deploying the infra/ templates into a local moto server."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"


# moto's CloudFormation resolves `Ref: AWS::NoValue` inside a list to null and
# keeps it, where CloudFormation removes the item (the idiom for an optional
# policy statement: `- !If [Cond, {...}, !Ref AWS::NoValue]`). The server is
# started with this difference corrected, and the two below; everything else is moto as is.
_MOTO_SERVER_SHIM = """
import sys
from moto.cloudformation import parsing
from moto.server import main

_clean_json = parsing.clean_json


def _is_no_value(raw):
    return isinstance(raw, dict) and (raw.get("Ref") == "AWS::NoValue" or "Fn::If" in raw)


def clean_json(resource_json, resources_map):
    cleaned = _clean_json(resource_json, resources_map)
    if isinstance(resource_json, list) and isinstance(cleaned, list):
        return [
            value
            for value, raw in zip(cleaned, resource_json)
            if not (value is None and _is_no_value(raw))
        ]
    return cleaned


parsing.clean_json = clean_json

# moto keeps a bucket's EventBridgeConfiguration but leaves it out of
# GetBucketNotificationConfiguration, whose answer S3 documents to include it
# (Amazon S3 API Reference, GetBucketNotificationConfiguration: "EventBridgeConfiguration
# - Enables delivery of events to Amazon EventBridge"); a merge of the configuration
# would then drop it.
from moto.s3 import responses as s3_responses

_get_notification = s3_responses.S3Response.get_bucket_notification


def get_bucket_notification(self):
    config = self.backend.get_bucket_notification_configuration(self.bucket_name)
    if config is None or config.event_bridge is None:
        return _get_notification(self)
    serialized = self.serialized

    def with_event_bridge(result):
        if isinstance(getattr(result, "result", None), dict):
            result.result["EventBridgeConfiguration"] = {}
        return serialized(result)

    self.serialized = with_event_bridge
    try:
        return _get_notification(self)
    finally:
        del self.serialized


s3_responses.S3Response.get_bucket_notification = get_bucket_notification

# moto reads a TemplateURL whose host starts with "s3" as path-style, so the virtual-hosted
# URL of a bucket named s3fanout-... (https://s3fanout-x.s3.REGION.amazonaws.com/KEY, the
# form deploy.py gives CloudFormation for a template above 51,200 bytes) names the wrong bucket.
from urllib.parse import urlparse
from moto.cloudformation import responses as cfn_responses

_get_stack_from_s3_url = cfn_responses.get_stack_from_s3_url


def get_stack_from_s3_url(template_url, account_id, partition):
    host = urlparse(template_url).netloc
    if ".s3." in host and not host.startswith("s3."):
        bucket = host.split(".s3.", 1)[0]
        template_url = f"https://s3.amazonaws.com/{bucket}{urlparse(template_url).path}"
    return _get_stack_from_s3_url(template_url, account_id=account_id, partition=partition)


cfn_responses.get_stack_from_s3_url = get_stack_from_s3_url
sys.argv[0] = "moto_server"
sys.exit(main())
"""


def _moto_server_command() -> list[str]:
    """The interpreter that has moto's server installed, running the shim."""
    for python in (Path(sys.executable), ROOT / ".venv" / "bin" / "python"):
        if (python.parent / "moto_server").exists():
            return [str(python), "-c", _MOTO_SERVER_SHIM]
    pytest.fail("moto_server not found next to the Python interpreter nor in .venv/bin")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    """Start moto's server on a free loopback port for the whole session."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
    )
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*_moto_server_command(), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto_server exited early:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start:\n{log_path.read_text()}")
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def aws(moto_endpoint, monkeypatch_session):
    """Factory of boto3 clients talking to the moto server."""
    monkeypatch_session.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch_session.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch_session.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch_session.delenv("AWS_PROFILE", raising=False)

    def client(service: str, region: str = REGION):
        return boto3.client(service, region_name=region, endpoint_url=moto_endpoint)

    return client


@pytest.fixture(scope="session")
def monkeypatch_session():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="session")
def code_object(aws):
    """A placeholder Lambda deployment package in a moto bucket: (bucket, key)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        zf.writestr(info, "#!/bin/sh\necho placeholder\n")
    s3 = aws("s3")
    bucket = "s3fanout-test-artifacts"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="placeholder/bootstrap.zip", Body=buf.getvalue())
    return bucket, "placeholder/bootstrap.zip"
