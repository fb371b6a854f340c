"""The roles of infra/replication.yaml, tested for what they allow.

The template is deployed into a local server (iam_server.py: moto with the S3 corrections of
tests/local_s3.py) through its CloudFormation, which resolves parameters and conditions. Each
role's policies, as deployed, are given to an IAM user of its own, and IAM enforcement is then
switched on. The real function binaries (replicate, backfill, canary) run as Lambda runs them
(lambda_runtime.py), with the environment the stack gives each function and the access key of
its role's user; the replication queue is consumed under the replicate role, as the event
source mapping does. They replicate new, overwritten, tagged and deleted objects and an object
copied by parts, backfill with `delete` and `summary_to`, verify, run a Batch Operations task
and canary rounds; the Batch Operations role and the backfill role invoke the backfill function
(a DryRun invocation: Lambda checks the permission and runs nothing).

Every request they make is recorded by the server and must be allowed twice: by moto, and by
iam_eval.py, which applies the permissions the S3 API reference requires for each operation
(a copy reads its source, a 404 needs s3:ListBucket, conditions on s3:prefix...) to the same
policy documents. The writes they must not make are tried and must be refused with
AccessDenied: a write to a bucket that is not a target (by the functions, configured with one
too many targets, and directly), a DeleteObject on a replica by the replicate role when deletes
do not propagate, writes to the source by the replication roles, and canary writes outside the
canary prefix, and invocations of the replicate function. The request counts per role are
printed (pytest -s shows them).
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import zipfile
from collections import Counter
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCOUNT_ID, REGION, ROOT
from iam_eval import Policy, operation, required
from lambda_runtime import Function
from test_deploy import deploy, parse_policy_document, physical, sam_to_cloudformation

SOURCE = "lp-source"
TARGET_WEST = "lp-replica-west"  # us-west-2
TARGET_EU = "lp-replica-eu"  # eu-west-1, under a target prefix
NOT_A_TARGET = "lp-not-a-target"
BATCH_BUCKET = "lp-batch"
TARGETS = [f"{TARGET_WEST}@us-west-2", f"{TARGET_EU}@eu-west-1?prefix=mirror%2F"]
REPLICA_KEY = {TARGET_WEST: lambda k: k, TARGET_EU: lambda k: f"mirror/{k}"}
MIB = 1024 * 1024

ROLES = {
    "ReplicateRole": "replicate",
    "BackfillRole": "backfill",
    "CanaryRole": "canary",
    "BatchOperationsRole": "batch",
    "ReconciliationScheduleRole": "schedule",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """iam_server.py on a free port, with its request record."""

    def __init__(self, tmp: Path):
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.record = tmp / "requests.jsonl"
        self.log = open(tmp / "server.log", "wb")
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("iam_server.py")), str(self.record),
             "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + 120  # moto's first start imports every backend
        while True:
            assert self.proc.poll() is None, (tmp / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)

    def enforce_iam(self) -> None:
        """moto's switch: every request from now on is authorized against IAM."""
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
            headers={"Content-Type": "text/plain"},  # a form body would be parsed away
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert json.load(answer)["status"] == "ok"

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


class Identity:
    """An IAM user holding exactly one role's deployed policies."""

    def __init__(self, name: str, key: dict, statements: list[dict], endpoint: str):
        self.name = name
        self.key_id = key["AccessKeyId"]
        self.secret = key["SecretAccessKey"]
        self.policy = Policy(statements)
        self.endpoint = endpoint

    def client(self, service: str, region: str = REGION):
        return boto3.client(
            service, region_name=region, endpoint_url=self.endpoint,
            aws_access_key_id=self.key_id, aws_secret_access_key=self.secret,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }


def _policies_of_role(iam, role: str) -> dict[str, dict]:
    documents = {}
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        documents[name] = parse_policy_document(unquote(doc)) if isinstance(doc, str) else doc
    return documents


def _statements(documents: dict[str, dict]) -> list[dict]:
    out = []
    for doc in documents.values():
        out.extend(doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]])
    return out


def _binaries() -> dict[str, Path]:
    # Its output is captured: a child sharing pytest's stdout may leave it non-blocking.
    built = subprocess.run(
        ["cargo", "build", "-p", "replicate", "-p", "backfill", "-p", "canary", "--bins"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    return {name: target / "debug" / name for name in ("replicate", "backfill", "canary")}


class QueueConsumer:
    """The event source mapping, under the replicate role: receives the replication queue's
    messages, invokes the function with them, deletes the ones it did not report failed."""

    def __init__(self, function: Function, identity: Identity, queue_url: str, queue_arn: str):
        self.function = function
        self.sqs = identity.client("sqs")
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.failures: list[dict] = []
        self.errors: list[str] = []
        self.batches = 0
        self._stop = threading.Event()
        self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._once()
            except Exception as exc:  # noqa: BLE001 (reported by the test that stops it)
                self.errors.append(repr(exc))
                time.sleep(0.5)

    def _once(self) -> None:
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
            AttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": self.queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
        answer = self.function.invoke({"Records": records}, timeout_s=120)
        self.batches += 1
        failed = {f["itemIdentifier"] for f in (answer or {}).get("batchItemFailures", [])}
        self.failures.extend(r for r in records if r["messageId"] in failed)
        for m in messages:
            if m["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _wait(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _code(call) -> str | None:
    try:
        call()
    except ClientError as err:
        return err.response["Error"]["Code"]
    return None


def _replica(s3_admin, bucket: str, key: str):
    try:
        return s3_admin.head_object(Bucket=bucket, Key=REPLICA_KEY[bucket](key))
    except ClientError as err:
        if err.response["Error"]["Code"] in ("404", "NoSuchKey"):
            return None
        raise


def _tags(s3_admin, bucket: str, key: str) -> dict:
    return {t["Key"]: t["Value"] for t in s3_admin.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


def _in_sync(s3_admin, key: str, tags: dict | None = None) -> bool:
    source = s3_admin.head_object(Bucket=SOURCE, Key=key)
    for bucket in (TARGET_WEST, TARGET_EU):
        replica = _replica(s3_admin, bucket, key)
        if replica is None or replica["ContentLength"] != source["ContentLength"]:
            return False
        if replica["Metadata"].get("fanout-source-etag", replica["ETag"].strip('"')) != source["ETag"].strip('"'):
            return False
        if tags is not None and _tags(s3_admin, bucket, REPLICA_KEY[bucket](key)) != tags:
            return False
    return True


# --------------------------------------------------------------------------- the run


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Deploys, creates the role users, runs every function under enforcement; yields what
    happened."""
    tmp = tmp_path_factory.mktemp("least-privilege")
    binaries = _binaries()
    server = Server(tmp)
    functions: list[Function] = []
    consumers: list[QueueConsumer] = []
    try:
        yield _run(server, binaries, tmp, functions, consumers)
    finally:
        for consumer in consumers:
            consumer.stop()
        for function in functions:
            function.stop()
        server.stop()


def _run(server: Server, binaries, tmp: Path, functions: list, consumers: list) -> dict:
    def setup_client(service, region=REGION):
        return boto3.client(
            service, region_name=region, endpoint_url=server.endpoint,
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=Config(s3={"addressing_style": "path"}),
        )

    # ---- before enforcement: buckets, objects that predate replication, stacks, users.
    s3 = setup_client("s3")
    for bucket, region in ((SOURCE, REGION), (TARGET_WEST, "us-west-2"), (TARGET_EU, "eu-west-1"),
                           (NOT_A_TARGET, REGION), (BATCH_BUCKET, REGION), ("lp-artifacts", REGION)):
        kwargs = {} if region == REGION else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        setup_client("s3", region).create_bucket(Bucket=bucket, **kwargs)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bootstrap", "#!/bin/sh\n")
    s3.put_object(Bucket="lp-artifacts", Key="bootstrap.zip", Body=buf.getvalue())
    for key in ("old/one.txt", "old/two words.txt", "old/batch+me.txt", "docs/gone.txt"):
        s3.put_object(Bucket=SOURCE, Key=key, Body=f"{key}\n".encode() * 3, ContentType="text/plain",
                      Metadata={"origin": "before"}, Tagging="era=old")
    s3.put_object(Bucket=SOURCE, Key="big/resume.bin", Body=os.urandom(11 * MIB))
    # Uploads in progress that the copies by parts find: one from before its source was
    # written (aborted as stale), one from after, with a part that does not fit the copy's
    # layout (its parts are listed, then it is aborted).
    s3.create_multipart_upload(Bucket=TARGET_EU, Key="mirror/big/blob.bin")
    time.sleep(1.2)
    upload = s3.create_multipart_upload(Bucket=TARGET_WEST, Key="big/resume.bin")["UploadId"]
    s3.upload_part(Bucket=TARGET_WEST, Key="big/resume.bin", UploadId=upload, PartNumber=1, Body=b"p" * MIB)
    # Replica objects the source does not have: a backfill with `delete` removes them.
    s3.put_object(Bucket=TARGET_WEST, Key="old/extraneous.txt", Body=b"x")
    s3.put_object(Bucket=TARGET_EU, Key="mirror/old/extraneous.txt", Body=b"x")

    template = sam_to_cloudformation("lp-artifacts", "bootstrap.zip")
    aws = lambda service, region=REGION: setup_client(service, region)  # noqa: E731
    common = {
        "SourceBucketName": SOURCE,
        "SourceWiring": "S3Notification",
        "ReplicaTargets": ",".join(TARGETS),
        "TargetBuckets": f"{TARGET_WEST},{TARGET_EU}",
        "CreateBatchOperationsRole": "true",
        "BatchOperationsBucket": BATCH_BUCKET,
    }
    stack = deploy(aws, "lp", template, {**common, "ReplicateDeletes": "false"})
    stack_deletes = deploy(aws, "lpdel", template, {**common, "ReplicateDeletes": "true", "EnableCanary": "false",
                                                    "CreateBatchOperationsRole": "false"})
    iam = setup_client("iam")
    lam = setup_client("lambda")

    def user(name: str, documents: dict[str, dict]) -> Identity:
        iam.create_user(UserName=name)
        for policy_name, doc in documents.items():
            iam.put_user_policy(UserName=name, PolicyName=policy_name, PolicyDocument=json.dumps(doc))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return Identity(name, key, _statements(documents), server.endpoint)

    admin = user("lp-admin", {"all": {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]}})
    roles: dict[str, Identity] = {}
    for logical, short in ROLES.items():
        documents = _policies_of_role(iam, physical(stack, logical))
        assert documents, logical
        roles[short] = user(f"lp-{short}", documents)
    roles["replicate-deletes"] = user(
        "lp-replicate-deletes", _policies_of_role(iam, physical(stack_deletes, "ReplicateRole")))

    # The environment each function gets from its stack.
    stack_env = {
        name: lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
        for name in ("lp-replicate", "lp-backfill", "lp-canary", "lpdel-replicate")
    }

    queue_url = stack["outputs"]["QueueUrl"]
    queue_arn = stack["outputs"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=SOURCE,
        NotificationConfiguration={"QueueConfigurations": [{
            "QueueArn": queue_arn,
            "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:ObjectTagging:*"],
        }]},
    )
    # Copies by parts above 5 MiB, the smallest threshold the functions accept.
    parts = {"MULTIPART_THRESHOLD": "5MiB", "MULTIPART_PART_SIZE": "5MiB"}

    def start(binary: str, stack_name: str, identity: Identity, extra=None) -> Function:
        env = {**stack_env[f"{stack_name}-{binary}"], **parts, **identity.env(), **(extra or {})}
        fn = Function(binaries[binary], env, f"{stack_name}-{binary}", tmp / f"{identity.name}-{binary}-{len(functions)}.log")
        functions.append(fn)
        return fn

    admin_s3 = admin.client("s3")
    sqs_admin = admin.client("sqs")
    # Setup notifications (s3:TestEvent) are not part of the run.
    sqs_admin.purge_queue(QueueUrl=queue_url)
    server.enforce_iam()
    result: dict = {"server": server, "roles": roles, "admin": admin, "denials": [], "stack": stack}

    def denied(who: Identity, what: str, call):
        code = _code(call)
        result["denials"].append((who.name, what, code))

    # ---- replicate: new, overwritten, tagged, deleted, copied by parts.
    replicate = start("replicate", "lp", roles["replicate"])
    consumer = QueueConsumer(replicate, roles["replicate"], queue_url, queue_arn)
    consumers.append(consumer)
    admin_s3.put_object(Bucket=SOURCE, Key="docs/new file.txt", Body=b"first\n", ContentType="text/plain",
                        Metadata={"owner": "lp"}, Tagging="stage=one")
    _wait(lambda: _in_sync(admin_s3, "docs/new file.txt", {"stage": "one"}), "a new object's replicas")
    admin_s3.put_object(Bucket=SOURCE, Key="docs/new file.txt", Body=b"second, longer\n", ContentType="text/plain",
                        Tagging="stage=two")
    _wait(lambda: _in_sync(admin_s3, "docs/new file.txt", {"stage": "two"}), "an overwrite's replicas")
    admin_s3.put_object_tagging(Bucket=SOURCE, Key="docs/new file.txt",
                                Tagging={"TagSet": [{"Key": "stage", "Value": "three"}]})
    _wait(lambda: _in_sync(admin_s3, "docs/new file.txt", {"stage": "three"}), "a tag change's replicas")
    # Removing every tag of the source removes the replicas' tags (DeleteObjectTagging).
    admin_s3.delete_object_tagging(Bucket=SOURCE, Key="docs/new file.txt")
    _wait(lambda: _in_sync(admin_s3, "docs/new file.txt", {}), "a tag removal's replicas")
    admin_s3.put_object(Bucket=SOURCE, Key="docs/gone.txt", Body=b"short-lived\n")
    _wait(lambda: _in_sync(admin_s3, "docs/gone.txt"), "a second object's replicas")
    admin_s3.put_object(Bucket=SOURCE, Key="big/blob.bin", Body=os.urandom(11 * MIB), Tagging="size=big")
    _wait(lambda: _in_sync(admin_s3, "big/blob.bin", {"size": "big"}), "replicas copied by parts", timeout=120)
    admin_s3.delete_object(Bucket=SOURCE, Key="docs/gone.txt")
    # Deletes do not propagate: the replicas stay (the event is ignored after a HeadObject).
    _wait(lambda: not _queue_depth(sqs_admin, queue_url), "the delete event")
    result["kept_after_delete"] = [_replica(admin_s3, b, "docs/gone.txt") is not None for b in (TARGET_WEST, TARGET_EU)]

    # ---- denials of the replicate role.
    rep_s3 = roles["replicate"].client("s3")
    denied(roles["replicate"], "DeleteObject on a replica (deletes not propagated)",
           lambda: rep_s3.delete_object(Bucket=TARGET_WEST, Key="docs/gone.txt"))
    denied(roles["replicate"], "PutObject to a bucket that is not a target",
           lambda: rep_s3.put_object(Bucket=NOT_A_TARGET, Key="x", Body=b"x"))
    denied(roles["replicate"], "CopyObject to a bucket that is not a target",
           lambda: rep_s3.copy_object(Bucket=NOT_A_TARGET, Key="x", CopySource={"Bucket": SOURCE, "Key": "old/one.txt"}))
    denied(roles["replicate"], "PutObject to the source",
           lambda: rep_s3.put_object(Bucket=SOURCE, Key="x", Body=b"x"))
    # Work held for a target goes to the retry queue as one SendMessageBatch; SQS authorizes
    # batch actions with the single action's permission (iam_server.py's correction). Sent here
    # as the function sends it, since the function sends one only when a target is held, and
    # taken back as a batch.
    retry_url = stack["outputs"]["RetryQueueUrl"]
    rep_sqs = roles["replicate"].client("sqs")
    sent = rep_sqs.send_message_batch(QueueUrl=retry_url, Entries=[{"Id": "0", "MessageBody": "{}"}])
    result["retry_batch_sent"] = [e["Id"] for e in sent.get("Successful", [])]
    taken = _wait(lambda: rep_sqs.receive_message(QueueUrl=retry_url, WaitTimeSeconds=1).get("Messages"),
                  "the retry batch")
    deleted = rep_sqs.delete_message_batch(QueueUrl=retry_url, Entries=[
        {"Id": "0", "ReceiptHandle": taken[0]["ReceiptHandle"]}])
    result["retry_batch_deleted"] = [e["Id"] for e in deleted.get("Successful", [])]
    consumer.stop()
    consumers.remove(consumer)
    result["consumer"] = {"failures": consumer.failures, "errors": consumer.errors, "batches": consumer.batches}

    # The function configured with one target too many (not in TargetBuckets): its copy there
    # is refused, the message is reported failed and made visible again sooner.
    misconfigured = start("replicate", "lp", roles["replicate"], {
        "REPLICA_TARGETS": ",".join([*TARGETS, f"{NOT_A_TARGET}@{REGION}"])})
    admin_s3.put_object(Bucket=SOURCE, Key="docs/for-three.txt", Body=b"three targets\n")
    rep_sqs = roles["replicate"].client("sqs")
    messages = _wait(lambda: rep_sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1,
                                                       AttributeNames=["All"]).get("Messages"), "the event")
    m = messages[0]
    answer = misconfigured.invoke({"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
        "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": REGION}]}, timeout_s=60)
    result["misconfigured"] = answer
    result["misconfigured_log"] = misconfigured.log_path

    # ---- replicate with deletes propagated (the other stack's role): a delete is allowed.
    replicate_deletes = start("replicate", "lpdel", roles["replicate-deletes"])
    delete_event = {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
        "eventTime": "2026-01-01T00:00:00.000Z", "eventName": "ObjectRemoved:Delete",
        "s3": {"bucket": {"name": SOURCE, "arn": f"arn:aws:s3:::{SOURCE}"},
               "object": {"key": quote_plus("docs/gone.txt"), "sequencer": "0A"}}}]}
    result["delete_answer"] = replicate_deletes.invoke(delete_event, timeout_s=60)
    result["gone_after_delete"] = [_replica(admin_s3, b, "docs/gone.txt") is None for b in (TARGET_WEST, TARGET_EU)]

    # ---- backfill with delete and summary_to, verify, a Batch Operations task.
    backfill = start("backfill", "lp", roles["backfill"])
    result["backfill"] = backfill.invoke({
        "delete": True, "auto_continue": True, "run_id": "lp-run",
        "summary_to": f"s3://{TARGET_WEST}/.s3fanout/summaries/"}, timeout_s=300)
    result["backfill_elsewhere"] = backfill.invoke({
        "prefix": "old/", "summary_to": f"s3://{NOT_A_TARGET}/summaries/"}, timeout_s=300)
    result["verify"] = backfill.invoke({"mode": "verify", "compare": "full"}, timeout_s=300)
    # What the reconciliation's schedule sends: its summary goes to the first target.
    result["reconcile"] = backfill.invoke({
        "mode": "sync", "auto_continue": True, "delete": False,
        "run_id": "reconcile-2026-05-01T03:00:00Z",
        "summary_to": f"s3://{TARGET_WEST}/.s3fanout/reconcile/"}, timeout_s=300)
    admin_s3.put_object(Bucket=BATCH_BUCKET, Key="manifests/job.csv", Body=f"{SOURCE},old/batch%2Bme.txt\n".encode())
    admin_s3.delete_object(Bucket=TARGET_WEST, Key="old/batch+me.txt")
    result["batch"] = backfill.invoke({
        "invocationSchemaVersion": "2.0", "invocationId": str(uuid.uuid4()),
        "job": {"id": "lp-job", "userArguments": {}},
        "tasks": [{"taskId": "t1", "s3Bucket": SOURCE, "s3Key": quote("old/batch+me.txt"), "s3VersionId": None}],
    }, timeout_s=120)
    bf_s3 = roles["backfill"].client("s3")
    denied(roles["backfill"], "PutObject to the source",
           lambda: bf_s3.put_object(Bucket=SOURCE, Key="x", Body=b"x"))
    denied(roles["backfill"], "DeleteObject in the source",
           lambda: bf_s3.delete_object(Bucket=SOURCE, Key="old/one.txt"))
    denied(roles["backfill"], "PutObject to a bucket that is not a target",
           lambda: bf_s3.put_object(Bucket=NOT_A_TARGET, Key="x", Body=b"x"))

    # ---- Batch Operations role: its manifest, its report, and nothing of the replicas.
    batch_s3 = roles["batch"].client("s3")
    result["manifest"] = batch_s3.get_object(Bucket=BATCH_BUCKET, Key="manifests/job.csv")["Body"].read()
    batch_s3.put_object(Bucket=BATCH_BUCKET, Key="reports/job-lp/report.json", Body=b"{}")
    batch_s3.get_bucket_location(Bucket=BATCH_BUCKET)
    denied(roles["batch"], "GetObject from the source",
           lambda: batch_s3.get_object(Bucket=SOURCE, Key="old/one.txt"))
    denied(roles["batch"], "PutObject to a replica",
           lambda: batch_s3.put_object(Bucket=TARGET_WEST, Key="x", Body=b"x"))

    # ---- invoking the backfill function: Batch Operations and the backfill's own continuation
    # (a DryRun checks the permission without running it).
    outputs = stack["outputs"]
    result["invokes"] = [
        roles["batch"].client("lambda").invoke(FunctionName="lp-backfill", InvocationType="DryRun", Payload=b"{}")["StatusCode"],
        roles["backfill"].client("lambda").invoke(FunctionName="lp-backfill", InvocationType="DryRun", Payload=b"{}")["StatusCode"],
        roles["schedule"].client("lambda").invoke(FunctionName="lp-backfill", InvocationType="DryRun", Payload=b"{}")["StatusCode"],
    ]
    for name in ("batch", "backfill", "schedule"):
        denied(roles[name], "Invoke of the replicate function", lambda name=name: roles[name].client("lambda").invoke(
            FunctionName="lp-replicate", InvocationType="DryRun", Payload=b"{}"))

    # ---- canary rounds, with the replicate function consuming the queue meanwhile.
    consumer = QueueConsumer(start("replicate", "lp", roles["replicate"]), roles["replicate"], queue_url, queue_arn)
    consumers.append(consumer)
    canary = start("canary", "lp", roles["canary"], {"CANARY_KEEP": "2", "CANARY_WAIT_MS": "30000"})
    result["canary"] = [canary.invoke({"source": "aws.events"}, timeout_s=60) for _ in range(3)]
    can_s3 = roles["canary"].client("s3")
    denied(roles["canary"], "PutObject to the source outside _s3fanout-canary/",
           lambda: can_s3.put_object(Bucket=SOURCE, Key="docs/x.txt", Body=b"x"))
    denied(roles["canary"], "DeleteObject in the source outside _s3fanout-canary/",
           lambda: can_s3.delete_object(Bucket=SOURCE, Key="old/one.txt"))
    denied(roles["canary"], "GetObject of a replica that is not a canary",
           lambda: can_s3.get_object(Bucket=TARGET_WEST, Key="old/one.txt"))
    denied(roles["canary"], "PutObject to a replica",
           lambda: can_s3.put_object(Bucket=TARGET_WEST, Key="_s3fanout-canary/1", Body=b"x"))
    _wait(lambda: not _queue_depth(sqs_admin, queue_url), "the canary events", timeout=60)
    consumer.stop()
    consumers.remove(consumer)
    result["canary_consumer"] = {"failures": consumer.failures, "errors": consumer.errors}
    return result


def _queue_depth(sqs, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def _by_role(world) -> dict[str, list[dict]]:
    names = {identity.key_id: name for name, identity in world["roles"].items()}
    grouped: dict[str, list[dict]] = {name: [] for name in world["roles"]}
    for record in world["server"].requests():
        if record["key"] in names:
            grouped[names[record["key"]]].append(record)
    return grouped


def _is_expected_denial(role: str, record: dict) -> bool:
    """The writes the roles are made to try and must not be allowed."""
    if record["service"] == "lambda":
        return any(c["resource"].endswith(":function:lp-replicate") for c in record["checks"])
    bucket = record["path"].lstrip("/").split("/")[0]
    op = operation(record)
    if bucket == NOT_A_TARGET:
        return True
    if role in ("replicate", "backfill") and bucket == SOURCE and op in ("PutObject", "DeleteObject"):
        return True
    if role == "replicate" and op == "DeleteObject":
        return True
    if role == "canary" and bucket == TARGET_WEST and op == "GetObject" and "_s3fanout-canary/" not in record["path"]:
        return True
    if role == "canary" and op in ("PutObject", "DeleteObject") and not (
        bucket == SOURCE and record["path"].split("/", 2)[2].startswith("_s3fanout-canary/")
    ):
        return True
    if role == "batch" and bucket in (SOURCE, TARGET_WEST):
        return True
    return False


# --------------------------------------------------------------------------- the checks


def test_functions_did_their_work(world):
    admin_s3 = world["admin"].client("s3")
    assert world["consumer"]["errors"] == [] and world["consumer"]["failures"] == []
    assert world["kept_after_delete"] == [True, True], "deletes are not propagated by the lp stack"
    assert world["delete_answer"] == {"changes": 1, "outcomes": {"deleted": 2}}, world["delete_answer"]
    assert world["gone_after_delete"] == [True, True]
    backfill = world["backfill"]
    assert backfill["done"] is True, backfill
    assert backfill["summary_object"] == f"s3://{TARGET_WEST}/.s3fanout/summaries/lp-run.json", backfill
    per_target = backfill["targets"]
    assert all(t["failed"] == 0 for t in per_target.values()), per_target
    assert all(t["deleted"] >= 1 for t in per_target.values()), per_target
    assert all(t["copied"] >= 3 for t in per_target.values()), per_target
    summary = json.loads(admin_s3.get_object(Bucket=TARGET_WEST, Key=".s3fanout/summaries/lp-run.json")["Body"].read())
    assert summary["run_id"] == "lp-run"
    for key in ("old/one.txt", "old/two words.txt", "big/blob.bin", "big/resume.bin"):
        assert _in_sync(admin_s3, key), key
    for bucket in (TARGET_WEST, TARGET_EU):
        assert admin_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], bucket
    reconcile = world["reconcile"]
    assert reconcile["done"] is True and "summary_error" not in reconcile, reconcile
    assert reconcile["summary_object"] == f"s3://{TARGET_WEST}/.s3fanout/reconcile/reconcile-2026-05-01T03:00:00Z.json"
    assert all(t["drift_found"] == 0 and t["failed"] == 0 for t in reconcile["targets"].values()), reconcile
    verify = world["verify"]
    assert verify["done"] is True
    assert all(t["missing"] == 0 and t["different"] == 0 and t["extraneous"] == 0
               for t in verify["targets"].values()), verify["targets"]
    batch = world["batch"]
    assert [r["resultCode"] for r in batch["results"]] == ["Succeeded"], batch
    assert _replica(admin_s3, TARGET_WEST, "old/batch+me.txt") is not None
    assert world["manifest"].startswith(SOURCE.encode())
    for round_ in world["canary"]:
        assert [t["measured"] for t in round_["targets"]] == [True, True], round_
    assert [t["read_back"] for t in world["canary"][2]["targets"]] == ["ok", "ok"], world["canary"]
    assert world["canary"][2]["deleted"] >= 1, "the canary keeps 2 and deletes older ones"
    assert world["canary_consumer"]["errors"] == [] and world["canary_consumer"]["failures"] == []


def test_non_target_bucket_is_refused_to_the_functions(world):
    """A target missing from TargetBuckets: the function's copy there is AccessDenied, the
    message is reported failed, and nothing reaches that bucket."""
    answer = world["misconfigured"]
    assert len(answer["batchItemFailures"]) == 1, answer
    log = world["misconfigured_log"].read_text()
    assert "AccessDenied" in log, log[-3000:]
    records = [r for r in world["server"].requests() if r["path"].startswith(f"/{NOT_A_TARGET}/")]
    assert records and all(r["status"] == 403 and r["code"] == "AccessDenied" for r in records), records
    writes = {operation(r) for r in records}
    assert "CopyObject" in writes and "PutObject" in writes, writes
    # A summary_to outside the targets cannot be written: the run says so and is not failed.
    assert "AccessDenied" in world["backfill_elsewhere"]["summary_error"], world["backfill_elsewhere"]
    admin_s3 = world["admin"].client("s3")
    assert admin_s3.list_objects_v2(Bucket=NOT_A_TARGET)["KeyCount"] == 0


def test_writes_they_must_not_make_are_denied(world):
    print("\ndenials checked (pytest -s shows them):\n  " + "\n  ".join(
        f"{who}: {what}: {code}" for who, what, code in world["denials"]))
    for who, what, code in world["denials"]:
        # moto answers Lambda's errors in the XML of the query protocols, which the Lambda
        # client cannot parse: it sees the status only. The server's record of the same
        # request names the code (test_every_request_allowed_and_every_denial_expected).
        lambda_status = what.startswith("Invoke") and code == "403"
        assert code in ("AccessDenied", "AccessDeniedException") or lambda_status, (who, what, code)
    assert (world["retry_batch_sent"], world["retry_batch_deleted"]) == (["0"], ["0"]), "sqs:SendMessage and sqs:DeleteMessage grant the batches"
    assert world["invokes"] == [204, 204, 204], "Batch Operations, the backfill and the schedule may invoke the backfill"
    names = {what for _, what, _ in world["denials"]}
    assert "DeleteObject on a replica (deletes not propagated)" in names
    # With deletes not propagated, the function itself never tries one: the only DeleteObject
    # under the replicate role is the refused attempt above.
    deletes = [r for r in _by_role(world)["replicate"] if operation(r) == "DeleteObject"]
    assert [(r["status"], r["code"]) for r in deletes] == [(403, "AccessDenied")], deletes
    admin_s3 = world["admin"].client("s3")
    assert admin_s3.head_object(Bucket=SOURCE, Key="old/one.txt")["ContentLength"] > 0


def test_every_request_allowed_and_every_denial_expected(world):
    """moto's verdict and the documented permissions agree on every request of every role."""
    report = []
    for role, records in _by_role(world).items():
        policy = world["roles"][role].policy
        assert records, f"{role} made no request"
        counts = Counter()
        denials = Counter()
        batches = Counter()
        for record in records:
            op = operation(record)
            needs = required(record)
            if op == "HeadBucket":  # iam_server.py's correction: S3 checks s3:ListBucket
                assert [c["action"] for c in record["checks"]] == ["ListBucket"], record
            target = record["headers"].get("x-amz-target", "")
            if target.endswith("Batch"):  # iam_server.py's correction: SQS checks the single action
                assert [c["action"] for c in record["checks"]] == [target.rsplit(".", 1)[-1][:-5]], record
                batches[target.rsplit(".", 1)[-1]] += 1
            moto_allowed = all(c["allowed"] for c in record["checks"])
            documented = [str(n) for n in needs if not policy.allows(n)]
            if _is_expected_denial(role, record):
                assert not moto_allowed and record["code"] in ("AccessDenied", "AccessDeniedException"), record
                assert documented, f"{role} {op} should be refused by the policy: {record}"
                denials[f"{op} {record['code']}"] += 1
            else:
                assert moto_allowed, f"{role} was refused {op}: {record}"
                assert not documented, f"{role} {op} lacks {documented}: {record}"
                counts[op] += 1
        if role == "replicate":
            assert batches["SendMessageBatch"] and batches["DeleteMessageBatch"], batches
        report.append(f"{role}: allowed {dict(sorted(counts.items()))}; denied {dict(sorted(denials.items()))}")
    print("\nrequests per role under enforcement:\n  " + "\n  ".join(report))


def test_grants_are_used(world):
    """Every S3 grant of the functions' roles is exercised by some request, except the ones a
    path of this run cannot reach, which are named here."""
    unreached = {
        # The parts of an upload in progress are listed only when it may be resumed: begun
        # after its source was written (by an invocation the deadline stopped). The backfill
        # lists them (the same code).
        "replicate": {"s3:ListMultipartUploadParts"},
        # A replica's tags are removed when its source has none left: the replicate run
        # above removes them (the same code); this backfill finds no such replica.
        "backfill": {"s3:DeleteObjectTagging"},
        "canary": set(),
        # Batch Operations reads a manifest by version when the job names its version id.
        "batch": {"s3:GetObjectVersion"},
    }
    for role, records in _by_role(world).items():
        if role not in unreached:
            continue
        used = {n.action for r in records if not _is_expected_denial(role, r) for n in required(r)}
        granted = {a for a in world["roles"][role].policy.granted_actions() if a.startswith("s3:")}
        assert granted - used <= unreached[role], f"{role}: granted, never needed: {granted - used - unreached[role]}"
    deleting = _by_role(world)["replicate-deletes"]
    assert any(operation(r) == "DeleteObject" and r["status"] == 204 for r in deleting), deleting


def test_what_the_lambda_service_does_with_the_roles(world):
    """Requests the Lambda service makes under a role (logs, the backfill's dead-letter queue,
    the invocations), and a condition moto does not evaluate, judged on the deployed documents
    with the documented rules: the service's own requests do not pass through this server, and
    moto ignores conditions on s3:prefix."""
    from iam_eval import Need

    roles, outputs = world["roles"], world["stack"]["outputs"]
    account = f"{REGION}:{ACCOUNT_ID}"
    backfill_arn, replicate_arn = outputs["BackfillFunctionArn"], outputs["ReplicateFunctionArn"]
    allows = {name: roles[name].policy.allows for name in roles}
    assert allows["backfill"](Need("lambda:InvokeFunction", backfill_arn))
    assert not allows["backfill"](Need("lambda:InvokeFunction", replicate_arn))
    assert allows["batch"](Need("lambda:InvokeFunction", backfill_arn))
    assert not allows["batch"](Need("lambda:InvokeFunction", replicate_arn))
    assert allows["schedule"](Need("lambda:InvokeFunction", backfill_arn))
    assert not allows["schedule"](Need("lambda:InvokeFunction", replicate_arn))
    assert allows["schedule"](Need("sqs:SendMessage", outputs["BackfillDeadLetterQueueArn"]))
    assert not allows["schedule"](Need("sqs:SendMessage", outputs["QueueArn"]))
    assert not roles["schedule"].policy.granted_actions() - {"lambda:InvokeFunction", "sqs:SendMessage"}
    assert allows["backfill"](Need("sqs:SendMessage", outputs["BackfillDeadLetterQueueArn"]))
    assert not allows["backfill"](Need("sqs:SendMessage", outputs["QueueArn"]))
    assert not allows["replicate"](Need("sqs:SendMessage", outputs["QueueArn"]))
    for role, function in (("replicate", "lp-replicate"), ("backfill", "lp-backfill"), ("canary", "lp-canary")):
        stream = f"arn:aws:logs:{account}:log-group:/aws/lambda/{function}:log-stream:2026/01/01/[$LATEST]0a"
        other = f"arn:aws:logs:{account}:log-group:/aws/lambda/lp-other:log-stream:x"
        for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
            assert allows[role](Need(action, stream)), (role, action)
            assert not allows[role](Need(action, other)), (role, action)
    # The canary lists only its own prefix of the source, reads only canaries of the replicas.
    source = f"arn:aws:s3:::{SOURCE}"
    assert allows["canary"](Need("s3:ListBucket", source, (("s3:prefix", "_s3fanout-canary/"),)))
    for prefix in ("", "docs/", "_s3fanout-canary"):
        assert not allows["canary"](Need("s3:ListBucket", source, (("s3:prefix", prefix),))), prefix
    assert allows["canary"](Need("s3:GetObject", f"arn:aws:s3:::{TARGET_EU}/mirror/_s3fanout-canary/1"))
    assert not allows["canary"](Need("s3:GetObject", f"arn:aws:s3:::{TARGET_WEST}/old/one.txt"))
    assert not allows["canary"](Need("s3:GetObject", f"{source}/old/one.txt"))
