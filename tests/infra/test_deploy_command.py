"""`make deploy` / `make destroy` (infra/deploy.py) against moto's CloudFormation in
several regions: three targets in three regions, again with a fourth, then destroy.

The command runs as an operator runs it, a separate process with the standard AWS
environment pointing at the local server. moto's CloudFormation has no SAM transform,
so the command translates the template itself (--translate-locally); the function zips
are placeholders (the functions are not invoked here).
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import subprocess
import sys
import zipfile

import pytest

from conftest import ACCOUNT_ID, REGION, ROOT

DEPLOY = ROOT / "infra" / "deploy.py"
SOURCE = "cmd-source"
EXISTING_REPLICA = "cmd-replica-usw2"  # exists before the deploy: kept, not managed
TARGETS = [
    "cmd-replica-euw1@eu-west-1?storage_class=STANDARD_IA",
    f"{EXISTING_REPLICA}@us-west-2",
    "cmd-replica-apse2@ap-southeast-2?prefix=mirror%2F",
]
FOURTH = "cmd-replica-sae1@sa-east-1"


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory):
    """Placeholder zips where `make package` puts the real ones."""
    root = tmp_path_factory.mktemp("lambda")
    for fn in ("replicate", "backfill", "canary"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            info = zipfile.ZipInfo("bootstrap")
            info.external_attr = 0o755 << 16
            zf.writestr(info, f"#!/bin/sh\necho {fn}\n")
        (root / fn).mkdir()
        (root / fn / "bootstrap.zip").write_bytes(buf.getvalue())
    return root


def run(moto_endpoint, *args: str, expect: int = 0, command: list[str] | None = None) -> str:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("AWS_")
    } | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_endpoint,
    }
    proc = subprocess.run(
        command or [sys.executable, str(DEPLOY), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    output = proc.stdout + proc.stderr
    print(output)
    assert proc.returncode == expect, output
    return output


def notifications(s3, bucket: str) -> dict:
    config = s3.get_bucket_notification_configuration(Bucket=bucket)
    config.pop("ResponseMetadata", None)
    return config


def stack_or_none(aws, name: str, region: str):
    try:
        stack = aws("cloudformation", region).describe_stacks(StackName=name)["Stacks"][0]
    except Exception as err:  # moto answers ValidationError for a missing stack
        assert "does not exist" in str(err), err
        return None
    return None if stack["StackStatus"] == "DELETE_COMPLETE" else stack


def params_of(stack: dict) -> dict[str, str]:
    """Parameter values as CloudFormation answers them: moto renders a
    CommaDelimitedList as a Python list (`['a', 'b']`) where the service gives
    the string as passed (`a,b`)."""
    values = {}
    for p in stack["Parameters"]:
        value = p["ParameterValue"]
        if value.startswith("[") and value.endswith("]"):
            value = ",".join(ast.literal_eval(value))
        values[p["ParameterKey"]] = value
    return values


def queue_config(aws, name: str, events: list[str], prefix: str) -> dict:
    sqs = aws("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return {
        "Id": f"{name}-entry",
        "QueueArn": arn,
        "Events": events,
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
    }


@pytest.fixture(scope="module")
def source(aws):
    """The source bucket with a notification configuration of its own (another team's
    queue), and one replica bucket that already exists, holding an object."""
    s3 = aws("s3")
    s3.create_bucket(Bucket=SOURCE)
    existing = {
        "QueueConfigurations": [queue_config(aws, "cmd-other-team", ["s3:ObjectRestore:Completed"], "archive/")]
    }
    s3.put_bucket_notification_configuration(Bucket=SOURCE, NotificationConfiguration=existing)
    usw2 = aws("s3", "us-west-2")
    usw2.create_bucket(Bucket=EXISTING_REPLICA, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    usw2.put_object(Bucket=EXISTING_REPLICA, Key="kept.txt", Body=b"kept")
    return notifications(s3, SOURCE)


@pytest.fixture(scope="module")
def first_deploy(aws, moto_endpoint, source, code_dir):
    # The command as documented: make deploy.
    return run(
        moto_endpoint,
        command=[
            "make", "--no-print-directory", "deploy", "STACK=cmd", f"SOURCE={SOURCE}", f"TARGETS={','.join(TARGETS)}",
            f"DEPLOY_ARGS=--code-dir {code_dir} --translate-locally --parameter MaximumConcurrency=20",
        ],
    )


@pytest.fixture(scope="module")
def second_deploy(aws, moto_endpoint, first_deploy, code_dir):
    # MaximumConcurrency is not given again: the update keeps it.
    return run(
        moto_endpoint,
        "deploy", "--stack", "cmd", "--source", SOURCE, "--targets", ",".join([*TARGETS, FOURTH]),
        "--code-dir", str(code_dir), "--translate-locally",
    )


@pytest.fixture(scope="module")
def destroyed(aws, moto_endpoint, second_deploy):
    for region, bucket in (("eu-west-1", "cmd-replica-euw1"), ("sa-east-1", "cmd-replica-sae1")):
        aws("s3", region).put_object(Bucket=bucket, Key="replica.txt", Body=b"replica")
    return run(moto_endpoint, "destroy", "--stack", "cmd")


def test_three_targets_in_three_regions(aws, first_deploy, source):
    stack = stack_or_none(aws, "cmd", REGION)
    assert stack and stack["StackStatus"] == "CREATE_COMPLETE"
    params = params_of(stack)
    assert params["ReplicaTargets"] == ",".join(TARGETS)  # passed through unchanged
    assert params["TargetBuckets"] == "cmd-replica-euw1,cmd-replica-usw2,cmd-replica-apse2"
    assert params["SourceBucketName"] == SOURCE
    assert params["MaximumConcurrency"] == "20"
    # Missing replica buckets are created in their own regions, one stack each.
    for bucket, region in (("cmd-replica-euw1", "eu-west-1"), ("cmd-replica-apse2", "ap-southeast-2")):
        replica_stack = stack_or_none(aws, f"cmd-replica-{bucket}", region)
        assert replica_stack and replica_stack["StackStatus"] == "CREATE_COMPLETE", bucket
        location = aws("s3", region).get_bucket_location(Bucket=bucket)["LocationConstraint"]
        assert location == region
        assert f"stack cmd-replica-{bucket} ({region})" in first_deploy
    # The bucket that existed is left as it was: no stack claims it.
    assert stack_or_none(aws, f"cmd-replica-{EXISTING_REPLICA}", "us-west-2") is None
    assert f"kept       s3://{EXISTING_REPLICA}" in first_deploy
    # An artifact bucket was created, holding the three zips.
    artifacts = f"s3fanout-artifacts-{ACCOUNT_ID}-{REGION}"
    keys = [o["Key"] for o in aws("s3").list_objects_v2(Bucket=artifacts, Prefix="cmd/")["Contents"]]
    assert sorted(k.split("-")[0] for k in keys if k.endswith(".zip")) == ["cmd/backfill", "cmd/canary", "cmd/replicate"]
    assert "make backfill STACK=cmd" in first_deploy


def test_the_output_shown_in_the_docs_is_this_deploys(first_deploy):
    """docs/deploy.md shows what this first deploy printed, line for line."""
    guide = (ROOT / "docs" / "deploy.md").read_text()
    shown = guide.split("bucket already there, printed:\n\n```\n", 1)[1].split("```", 1)[0].splitlines()
    printed = [line for line in first_deploy.splitlines() if line.strip()]
    start = printed.index(shown[0])
    assert printed[start:start + len(shown)] == [line for line in shown if line.strip()]


def test_source_wiring_merges(aws, first_deploy, source):
    config = notifications(aws("s3"), SOURCE)
    assert config["QueueConfigurations"] == source["QueueConfigurations"]
    assert "EventBridgeConfiguration" in config
    assert "1 existing entry kept" in first_deploy


def test_backfill_starts_the_first_backfill(moto_endpoint, first_deploy):
    """The next command the deploy printed: the backfill function invoked asynchronously, a
    self-continuing sync of every key, its summary where asked."""
    output = run(
        moto_endpoint,
        command=["make", "--no-print-directory", "backfill", "STACK=cmd", "BACKFILL_ARGS=--summary-to s3://cmd-replica-euw1/summaries/"],
    )
    assert "backfill started: cmd-backfill (status 202)" in output
    payload = json.loads(output.split("payload ", 1)[1].splitlines()[0])
    assert payload == {"prefix": "", "auto_continue": True, "summary_to": "s3://cmd-replica-euw1/summaries/"}
    assert "written under s3://cmd-replica-euw1/summaries/" in output


def test_deploy_again_with_a_fourth_target(aws, second_deploy, source):
    stack = stack_or_none(aws, "cmd", REGION)
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    params = params_of(stack)
    assert params["ReplicaTargets"] == ",".join([*TARGETS, FOURTH])
    assert params["TargetBuckets"].split(",")[-1] == "cmd-replica-sae1"
    assert params["MaximumConcurrency"] == "20"  # kept from the first deploy
    assert stack_or_none(aws, "cmd-replica-cmd-replica-sae1", "sa-east-1")["StackStatus"] == "CREATE_COMPLETE"
    assert "created    stack cmd-replica-cmd-replica-sae1 (sa-east-1)" in second_deploy
    config = notifications(aws("s3"), SOURCE)
    assert config["QueueConfigurations"] == source["QueueConfigurations"]
    assert "EventBridgeConfiguration" in config


def test_destroy_keeps_buckets_objects_and_other_notifications(aws, destroyed, source):
    assert stack_or_none(aws, "cmd", REGION) is None
    for bucket, region in (("cmd-replica-euw1", "eu-west-1"), ("cmd-replica-sae1", "sa-east-1")):
        assert stack_or_none(aws, f"cmd-replica-{bucket}", region) is None
        assert aws("s3", region).get_object(Bucket=bucket, Key="replica.txt")["Body"].read() == b"replica"
    assert aws("s3", "us-west-2").get_object(Bucket=EXISTING_REPLICA, Key="kept.txt")["Body"].read() == b"kept"
    # The source's own entry survives; EventBridge, turned on by the deploy, is off again.
    assert notifications(aws("s3"), SOURCE) == source
    assert "s3://cmd-replica-euw1 kept" in destroyed


def test_s3_notification_wiring_keeps_other_entries(aws, moto_endpoint, code_dir):
    """Direct S3 -> SQS wiring adds one named queue entry and destroy removes just it; a
    bucket that had EventBridge on keeps it."""
    s3 = aws("s3")
    s3.create_bucket(Bucket="cmd-source-direct")
    # Another team's entry, for events of its own (S3 refuses two entries for the same event
    # type under overlapping prefixes).
    other = queue_config(aws, "cmd-direct-other", ["s3:ObjectRestore:Post"], "cold/")
    s3.put_bucket_notification_configuration(
        Bucket="cmd-source-direct",
        NotificationConfiguration={"QueueConfigurations": [other], "EventBridgeConfiguration": {}},
    )
    before = notifications(s3, "cmd-source-direct")
    run(
        moto_endpoint,
        "deploy", "--stack", "cmd-direct", "--source", "cmd-source-direct",
        "--targets", "cmd-direct-replica@eu-west-1", "--wiring", "S3Notification",
        "--code-dir", str(code_dir), "--translate-locally",
    )
    stack = stack_or_none(aws, "cmd-direct", REGION)
    queue_arn = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["QueueArn"]
    config = notifications(s3, "cmd-source-direct")
    ours = [q for q in config["QueueConfigurations"] if q["Id"] == "s3fanout-cmd-direct"]
    assert [q["QueueArn"] for q in ours] == [queue_arn]
    assert set(ours[0]["Events"]) == {
        "s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*", "s3:ObjectTagging:*",
        "s3:ObjectRestore:Completed",
    }
    # The same events as the stack's own wiring command says.
    command = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["SourceWiringCommand"]
    assert set(re.findall(r'"(s3:[A-Za-z]+:[*A-Za-z]+)"', command)) == set(ours[0]["Events"]), command
    assert other in config["QueueConfigurations"]
    run(moto_endpoint, "destroy", "--stack", "cmd-direct")
    assert notifications(s3, "cmd-source-direct") == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--targets", "no-region-here"], "target 'no-region-here': expected BUCKET@REGION"),
        (["--targets", "a-bucket@us-west-2,a-bucket@eu-west-1"], "target bucket 'a-bucket' is listed twice"),
        (["--targets", "rep-one@us-west-2", "--parameter", "TargetBuckets=rep-one"], "--parameter TargetBuckets: derived from"),
        (["--targets", "rep-one@us-west-2", "--parameter", "Nope=1"], "--parameter Nope: infra/replication.yaml has no such parameter"),
        (["--targets", "rep-one@us-west-2", "--stack", "x" * 55], "at most 54 characters"),
    ],
)
def test_bad_input_is_named(moto_endpoint, args, message):
    output = run(moto_endpoint, "deploy", "--source", "cmd-none", *args, expect=2)
    assert message in output


def test_missing_source_is_named(moto_endpoint, code_dir):
    output = run(
        moto_endpoint, "deploy", "--source", "cmd-no-such-source", "--targets", "rep-one@us-west-2",
        "--code-dir", str(code_dir), expect=2,
    )
    assert "--source 'cmd-no-such-source': no such bucket" in output


def test_failover_chain_and_read_alarms(aws, moto_endpoint, code_dir):
    """One failover stack per target, chained by name, in us-east-1; a shorter list of
    targets removes the tail of the chain; destroy removes all of it."""
    aws("s3").create_bucket(Bucket="cmd-source-read")
    zone = aws("route53").create_hosted_zone(Name="example.com", CallerReference="cmd-read")["HostedZone"]["Id"]
    zone = zone.split("/")[-1]

    def deploy_with(targets: list[str], endpoints: list[str]) -> str:
        return run(
            moto_endpoint,
            "deploy", "--stack", "cmd-read", "--source", "cmd-source-read", "--targets", ",".join(targets),
            "--code-dir", str(code_dir), "--translate-locally",
            "--failover-zone", zone, "--failover-record", "assets.example.com",
            *[arg for e in endpoints for arg in ("--failover-endpoint", e)],
            "--read-alarms-region", "eu-west-1",
        )

    deploy_with(["cmd-read-a@eu-west-1", "cmd-read-b@us-west-2"], ["a.example.net", "b.example.net"])
    first = stack_or_none(aws, "cmd-read-failover-1", "us-east-1")
    second = stack_or_none(aws, "cmd-read-failover-2", "us-east-1")
    assert params_of(first)["RecordName"] == "assets.example.com"
    assert params_of(first)["NextRecordName"] == "failover-2.assets.example.com"
    assert params_of(second)["RecordName"] == "failover-2.assets.example.com"
    assert params_of(second)["NextRecordName"] == ""
    assert params_of(second)["ReplicaEndpoint"] == "b.example.net"
    assert stack_or_none(aws, "cmd-read-read-alarms", "eu-west-1") is not None

    output = deploy_with(["cmd-read-a@eu-west-1"], ["a.example.net"])
    assert stack_or_none(aws, "cmd-read-failover-2", "us-east-1") is None
    assert "deleted    stack cmd-read-failover-2 (us-east-1)" in output
    assert params_of(stack_or_none(aws, "cmd-read-failover-1", "us-east-1"))["NextRecordName"] == ""

    # destroy finds the read alarms where deploy put them.
    output = run(moto_endpoint, "destroy", "--stack", "cmd-read")
    assert "deleted    stack cmd-read-read-alarms (eu-west-1)" in output
    assert stack_or_none(aws, "cmd-read-failover-1", "us-east-1") is None
    assert stack_or_none(aws, "cmd-read-read-alarms", "eu-west-1") is None


def test_failover_needs_one_endpoint_per_target(moto_endpoint, code_dir, aws):
    aws("s3").create_bucket(Bucket="cmd-source-fo")
    output = run(
        moto_endpoint,
        "deploy", "--stack", "cmd-fo", "--source", "cmd-source-fo", "--targets", "cmd-fo-a@eu-west-1,cmd-fo-b@us-west-2",
        "--code-dir", str(code_dir), "--translate-locally",
        "--failover-zone", "Z1", "--failover-record", "x.example.com", "--failover-endpoint", "a.example.net",
        expect=2,
    )
    assert "--failover-endpoint given 1 times for 2 targets" in output


def test_replica_bucket_grants_another_accounts_roles(aws):
    """A replica in another account: its bucket policy lets the replication stack's roles
    (ReplicationRoleArns) list, read, write, tag and delete, and only when roles are given."""
    from moto.cloudformation.parsing import resource_class_from_type
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "infra" / "replica-bucket.yaml").read_text())
    assert template["Conditions"]["GrantsRoles"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "ReplicationRoleArns"}]}, ""]}]
    }
    statements = template["Resources"]["ReplicaBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    granted = {}
    for stmt in statements[1:]:
        condition, grant, otherwise = stmt["Fn::If"]
        assert condition == "GrantsRoles" and otherwise == {"Ref": "AWS::NoValue"}
        assert grant["Effect"] == "Allow" and grant["Principal"] == {"AWS": {"Ref": "ReplicationRoleArns"}}
        granted[grant["Sid"]] = (set(grant["Action"]), grant["Resource"])
    # What replicate, backfill and canary do on a replica (infra/replication.yaml's grants).
    assert granted["ReplicationRolesList"] == (
        {"s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:GetBucketNotification", "s3:GetBucketWebsite"},
        {"Fn::GetAtt": ["ReplicaBucket", "Arn"]},
    )
    assert granted["ReplicationRolesWrite"][0] == {
        "s3:GetObject", "s3:GetObjectTagging", "s3:PutObject", "s3:PutObjectTagging",
        "s3:DeleteObjectTagging", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
    }
    assert granted["ReplicationRolesWrite"][1] == {"Fn::Sub": "${ReplicaBucket.Arn}/*"}

    roles = [f"arn:aws:iam::210987654321:role/s3fanout-{name}" for name in ("replicate", "backfill", "canary")]
    cfn = aws("cloudformation", "eu-west-1")
    cfn.create_stack(
        StackName="cmd-cross-account",
        TemplateBody=json.dumps(template),
        Parameters=[
            {"ParameterKey": "BucketName", "ParameterValue": "cmd-cross-account"},
            {"ParameterKey": "ReplicationRoleArns", "ParameterValue": ",".join(roles)},
        ],
    )
    cfn.get_waiter("stack_create_complete").wait(StackName="cmd-cross-account", WaiterConfig={"Delay": 1})
    assert aws("s3", "eu-west-1").head_bucket(Bucket="cmd-cross-account")
    if resource_class_from_type("AWS::S3::BucketPolicy") is None:
        pytest.skip("moto's CloudFormation does not create AWS::S3::BucketPolicy; the grants are checked in the template")
    policy = json.loads(aws("s3", "eu-west-1").get_bucket_policy(Bucket="cmd-cross-account")["Policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    for sid in ("ReplicationRolesList", "ReplicationRolesWrite"):
        principal = by_sid[sid]["Principal"]["AWS"]
        assert sorted(principal if isinstance(principal, list) else [principal]) == sorted(roles)
