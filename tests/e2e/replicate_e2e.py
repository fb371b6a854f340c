#!/usr/bin/env python3
"""Replicates real S3 notifications with the real replicate function, and backfills
pre-existing objects with the real backfill function.

The local S3 server (AWS_ENDPOINT_URL) delivers the source bucket's notifications to an SQS
queue; this script takes the queue's messages, hands them to the function running under
`cargo lambda watch` as an SQS event (`cargo lambda invoke --data-file`), deletes the messages
the function did not report as failed, and checks that every replica is byte-identical to its
source, with the same headers, metadata and tags. A direct S3 event in the shape AWS documents
and a delete are replicated the same way. Objects that existed before notifications were set
up are copied by the backfill function, checked by its verify mode and by an S3 Batch
Operations task. Prints what each replica holds; exits 1 on any difference.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote_plus

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
REPLICA_REGIONS = ["us-west-2", "eu-west-1", "ap-southeast-2"]
HEADERS = ["ContentType", "CacheControl", "ContentEncoding", "ContentDisposition", "ContentLanguage", "ExpiresString"]
PROVENANCE = {"fanout-source-etag", "fanout-source-bucket"}

PRE_EXISTING = ["archive/2019/report one.pdf", "archive/a+b.csv", "archive/ünïcode.txt", "archive/batch me.txt"]

KEYS = [
    "reports/2026/summary.csv",
    "with space.txt",
    "a+b=c&d.txt",
    "100% done?.txt",
    "hash#tag.txt",
    "café/日本語/✓.txt",
    "folder/",
    "empty.bin",
    "long/" + "k" * 1019,
]


def s3(region="us-east-1"):
    return boto3.client("s3", region_name=region, endpoint_url=ENDPOINT, config=Config(s3={"addressing_style": "path"}))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def short(key, width=34):
    text = key if len(key) <= width else key[: width - 9] + f"…({len(key)}B)"
    return text


class Function:
    """The replicate function under `cargo lambda watch`."""

    def __init__(self, env):
        self.port = free_port()
        self.env_file = tempfile.NamedTemporaryFile("w", suffix=".env", delete=False)
        for name, value in env.items():
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            self.env_file.write(f'{name}="{escaped}"\n')
        self.env_file.close()
        self.log = open(Path(tempfile.gettempdir()) / f"cargo-lambda-watch-{self.port}.log", "w")
        cmd = [cargo_lambda(), "lambda", "watch", "--ignore-changes", "--quiet",
               "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port), "--env-file", self.env_file.name]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env=tool_env())

    def invoke(self, payload, function="replicate"):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(payload, f)
        cmd = [cargo_lambda(), "lambda", "invoke", function, "--invoke-address", "127.0.0.1",
               "--invoke-port", str(self.port), "--data-file", f.name, "--output-format", "json"]
        for attempt in range(600):
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=tool_env())
            if done.returncode == 0:
                return json.loads(done.stdout)
            # The server answers once it is up and the function compiled; before that, retry.
            if "Connection refused" in done.stderr or "error sending request" in done.stderr:
                if self.proc.poll() is not None:
                    sys.exit(f"cargo lambda watch exited; see {self.log.name}")
                time.sleep(0.5)
                continue
            return {"error": done.stderr.strip()}
        sys.exit("the function did not start in time")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.unlink(self.env_file.name)


def cargo_lambda():
    return str(ROOT / ".venv" / "bin" / "cargo-lambda")


def tool_env():
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    return env


def put_object(client, bucket, key, index):
    body = b"" if key.endswith("/") or key == "empty.bin" else f"{key}\n".encode() * (index + 1)
    client.put_object(
        Bucket=bucket, Key=key, Body=body,
        ContentType="text/plain; charset=utf-8", CacheControl="max-age=300",
        ContentDisposition=f"attachment; filename=\"object-{index}\"", ContentLanguage="en",
        Metadata={"origin": "demo", "index": str(index)}, Tagging=f"class=demo&n={index}",
    )


def drain(sqs, queue_url, expected, timeout=30):
    messages, deadline = [], time.time() + timeout
    while time.time() < deadline:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        messages += got
        records = sum(len(json.loads(m["Body"]).get("Records", [])) for m in messages)
        if records >= expected:
            break
    return messages


def sqs_event(messages, queue_arn):
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
        "messageAttributes": {}, "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn, "awsRegion": "us-east-1"} for m in messages]}


def deliver(function, sqs, queue_url, queue_arn, messages):
    """Invokes the function with batches of 10, as the SQS event source does; returns failures."""
    failures = []
    for i in range(0, len(messages), 10):
        batch = messages[i:i + 10]
        response = function.invoke(sqs_event(batch, queue_arn))
        if "batchItemFailures" not in response:
            sys.exit(f"unexpected response: {response}")
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        failures += failed
        for m in batch:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return failures


def describe(client, bucket, key):
    head = client.head_object(Bucket=bucket, Key=key)
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    tags = sorted((t["Key"], t["Value"]) for t in client.get_object_tagging(Bucket=bucket, Key=key)["TagSet"])
    return body, {h: head.get(h) for h in HEADERS}, head.get("Metadata", {}), tags, head["ETag"].strip('"')


def run_canary(env, sqs, queue_url, queue_arn, replicas, rounds=2):
    """The canary in local mode: it writes its object to the source and measures when each
    replica has it, while its notification travels queue -> replicate function -> replicas as
    above; the second round also reads the first round's canary back from every replica."""
    print("\ncanary (local mode): lag from the canary's write to each replica having it")
    function = Function(env)
    canary_env = {**tool_env(), **env, "CANARY_WAIT_MS": "30000", "CANARY_POLL_MS": "100", "RUST_LOG": "warn"}
    build = subprocess.run(["cargo", "build", "--quiet", "-p", "canary"], cwd=ROOT, env=canary_env)
    if build.returncode != 0:
        function.stop()
        return ["canary: build failed"]
    canary = subprocess.Popen(["cargo", "run", "--quiet", "-p", "canary", "--", "--local", "--rounds", str(rounds),
                               "--interval-ms", "1000"], cwd=ROOT, env=canary_env, stdout=subprocess.PIPE, text=True)
    failed = []
    try:
        # Deliver the canary's notifications as the event source mapping would, until it is done.
        while canary.poll() is None:
            messages = drain(sqs, queue_url, expected=1, timeout=0.5)
            failed += deliver(function, sqs, queue_url, queue_arn, messages)
        output = canary.stdout.read()
    finally:
        function.stop()
    print("  " + output.rstrip().replace("\n", "\n  "))
    problems = [f"canary message {m} failed" for m in failed]
    lines = [line for line in output.splitlines() if line.strip().startswith("s3://")]
    if canary.returncode != 0 or len(lines) != rounds * len(replicas):
        problems.append(f"canary: exit {canary.returncode}, output {output!r}")
    problems += [f"canary: {line.strip()}" for line in lines if "not there" in line or "STALE" in line or "FAILED" in line]
    if not [line for line in lines if "read back intact" in line]:
        problems.append("canary: no previous canary was read back")
    return problems


def main():
    run = uuid.uuid4().hex[:6]
    source, replicas = f"demo-source-{run}", [(f"demo-replica-{r}-{run}", r) for r in REPLICA_REGIONS]
    src = s3()
    src.create_bucket(Bucket=source)
    for bucket, region in replicas:
        s3(region).create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=ENDPOINT)
    queue_url = sqs.create_queue(QueueName=f"replicate-{run}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # Objects from before replication was set up: only a backfill copies them.
    for i, key in enumerate(PRE_EXISTING):
        put_object(src, source, key, 100 + i)
    src.put_bucket_notification_configuration(Bucket=source, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
    drain(sqs, queue_url, expected=1, timeout=1)  # a possible s3:TestEvent; the function ignores those too

    env = {
        "SOURCE_BUCKETS": source,
        "REPLICA_TARGETS": ",".join(f"{b}@{r}" for b, r in replicas),
        "REPLICATE_DELETES": "true",
        "AWS_ENDPOINT_URL": ENDPOINT,
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": "us-east-1",
        "RUST_LOG": "info,replicate=debug",
    }
    function = Function(env)
    problems = []
    try:
        print(f"source s3://{source}; replicas: " + ", ".join(f"s3://{b} ({r})" for b, r in replicas))
        for i, key in enumerate(KEYS):
            put_object(src, source, key, i)

        # A direct S3 notification in the documented shape, for one of the objects.
        direct = json.loads((ROOT / "tests" / "events" / "s3-put.json").read_text())
        obj = direct["Records"][0]["s3"]
        head = src.head_object(Bucket=source, Key=KEYS[0])
        obj["bucket"].update(name=source, arn=f"arn:aws:s3:::{source}")
        obj["object"].update(key=quote_plus(KEYS[0]), size=head["ContentLength"], eTag=head["ETag"].strip('"'))
        response = function.invoke(direct)
        print(f"direct S3 event for {KEYS[0]!r}: {json.dumps(response)}")
        if response.get("outcomes") != {"copied": len(replicas)}:
            problems.append(f"direct S3 event: {response}")

        messages = drain(sqs, queue_url, expected=len(KEYS))
        failed = deliver(function, sqs, queue_url, queue_arn, messages)
        print(f"SQS: {len(messages)} notification message(s) from the server delivered, {len(failed)} reported failed")
        problems += [f"message {m} failed" for m in failed]

        # A delete propagates from the real ObjectRemoved notification.
        deleted = KEYS[1]
        src.delete_object(Bucket=source, Key=deleted)
        messages = drain(sqs, queue_url, expected=1)
        failed = deliver(function, sqs, queue_url, queue_arn, messages)
        print(f"SQS: delete of {deleted!r} delivered, {len(failed)} reported failed")
        problems += [f"delete message {m} failed" for m in failed]

        # Backfill the pre-existing objects (all but one, left for Batch Operations), then verify.
        response = function.invoke({"prefix": "archive/", "exclude": ["batch me.txt"]}, "backfill")
        copied = {t: c.get("copied") for t, c in response.get("targets", {}).items()}
        print(f"backfill: {response.get('source_objects')} pre-existing objects, copied per replica: {copied}")
        if response.get("done") is not True or set(copied.values()) != {len(PRE_EXISTING) - 1}:
            problems.append(f"backfill: {response}")
        task = {"invocationSchemaVersion": "2.0", "invocationId": "demo", "job": {"id": "demo-job", "userArguments": {}},
                "tasks": [{"taskId": "t1", "s3Bucket": source, "s3Key": quote_plus("archive/batch me.txt"), "s3VersionId": None}]}
        response = function.invoke(task, "backfill")
        result = response.get("results", [{}])[0]
        print(f"Batch Operations task: {result.get('resultCode')}: {result.get('resultString')}")
        if result.get("resultCode") != "Succeeded":
            problems.append(f"batch operations: {response}")
        response = function.invoke({"mode": "verify"}, "backfill")
        drift = {t: {k: c[k] for k in ("missing", "different", "extraneous")} for t, c in response.get("targets", {}).items()}
        print(f"verify: {response.get('source_objects')} source objects; drift per replica: {drift}")
        if any(any(d.values()) for d in drift.values()) or not drift:
            problems.append(f"verify: {response}")
    finally:
        function.stop()

    expected = [k for k in KEYS + PRE_EXISTING if k != deleted]
    sources = {k: describe(src, source, k) for k in expected}
    print()
    header = f"{'object':<36}" + "".join(f"{r:>16}" for _, r in replicas)
    print(header)
    print("-" * len(header))
    for key in expected:
        body, headers, metadata, tags, etag = sources[key]
        cells = []
        for bucket, region in replicas:
            try:
                r_body, r_headers, r_metadata, r_tags, r_etag = describe(s3(region), bucket, key)
            except src.exceptions.ClientError as e:
                problems.append(f"{bucket}/{key}: {e}")
                cells.append("missing")
                continue
            want_meta = dict(metadata, **{"fanout-source-etag": etag, "fanout-source-bucket": source})
            # A plain copy (a client's upload to a target that announces nothing) carries the
            # source's metadata alone; its ETag, equal to the source's, shows it current.
            if r_metadata == metadata and r_etag == etag:
                want_meta = metadata
            diffs = [name for name, a, b in [("bytes", r_body, body), ("headers", r_headers, headers),
                                             ("metadata", r_metadata, want_meta), ("tags", r_tags, tags)] if a != b]
            if diffs:
                problems.append(f"{bucket}/{key}: differs in {', '.join(diffs)}")
            cells.append("DIFFERS" if diffs else f"✓ {len(r_body)} B")
        print(f"{short(key):<36}" + "".join(f"{c:>16}" for c in cells))
    print(f"{short(deleted) + ' (deleted)':<36}" + "".join(
        f"{'✓ gone' if 'Contents' not in s3(r).list_objects_v2(Bucket=b, Prefix=deleted) else 'STILL THERE':>16}"
        for b, r in replicas))
    for bucket, region in replicas:
        listed = [o["Key"] for o in s3(region).list_objects_v2(Bucket=bucket).get("Contents", [])]
        if sorted(listed) != sorted(expected):
            problems.append(f"{bucket} holds {sorted(listed)}, expected {sorted(expected)}")
    print("-" * len(header))
    print(f"{'objects in replica':<36}" + "".join(
        f"{len(s3(r).list_objects_v2(Bucket=b).get('Contents', [])):>16}" for b, r in replicas))
    problems += run_canary(env, sqs, queue_url, queue_arn, replicas)
    if problems:
        print("\nFAILED:\n  " + "\n  ".join(problems))
        print("e2e: 0 passed, 1 failed")
        return 1
    print(f"\nall {len(expected)} objects identical in {len(replicas)} replicas (bytes, headers, metadata, tags); "
          f"delete propagated; {len(PRE_EXISTING)} pre-existing objects backfilled; verify found no drift")
    print("e2e: 1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
