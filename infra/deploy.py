#!/usr/bin/env python3
"""Deploy s3fanout into an AWS account in one command, and remove it in one.

    infra/deploy.py deploy --source photos \
        --targets 'photos-usw2@us-west-2,photos-euw1@eu-west-1?storage_class=STANDARD_IA'
    infra/deploy.py destroy
    infra/deploy.py backfill

`deploy` uploads the zips of `make package` (or builds them with `--build`) to an
artifact bucket (created when none is given), creates every missing replica bucket
in its own region (infra/replica-bucket.yaml, one stack per bucket), deploys the
replication stack (infra/replication.yaml) with `TargetBuckets` derived from the
targets, sends the source bucket's events to it (merged into the notification
configuration the bucket already has), optionally deploys the failover chain and
the read alarms, and prints what it did and the next command. Run again, it
updates. `destroy` removes the stacks and the wiring; every bucket and object is
kept. `backfill` starts the first backfill asynchronously.

Credentials, region and endpoint come from the standard AWS environment
(AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...), read by boto3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.exceptions import ClientError, WaiterError

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
FUNCTIONS = ("replicate", "backfill", "canary")
# Lambda function names are at most 64 characters; the longest suffix is "-replicate".
MAX_STACK_NAME = 64 - len("-replicate")
# Parameters this script derives; giving them with --parameter would say a thing twice.
DERIVED_PARAMETERS = ("SourceBucketName", "ReplicaTargets", "TargetBuckets", "SourceWiring")
# Tag on the replication stack: whether this script turned on the source's EventBridge
# delivery (then `destroy` turns it off again; a bucket that had it keeps it).
TAG_ENABLED_EVENTBRIDGE = "s3fanout:enabled-eventbridge"
TAG_STACK = "s3fanout:stack"
# Tag on the replication stack: where the read alarms were deployed, for `destroy`.
TAG_READ_ALARMS_REGION = "s3fanout:read-alarms-region"
S3_NOTIFICATION_EVENTS = [
    "s3:ObjectCreated:*",
    "s3:ObjectRemoved:*",
    "s3:LifecycleExpiration:*",
    "s3:ObjectTagging:*",
    "s3:ObjectRestore:Completed",
]
FAILOVER_REGION = "us-east-1"  # Route 53 publishes HealthCheckStatus only there
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION_NAME = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")


class DeployError(Exception):
    """A problem the operator must fix; printed as one line, exit status 2."""


@dataclass(frozen=True)
class Target:
    """One entry of REPLICA_TARGETS: the string is passed on unchanged."""

    spec: str
    bucket: str
    region: str


def parse_targets(text: str) -> list[Target]:
    """Split REPLICA_TARGETS (`BUCKET@REGION?option=value&...`, comma-separated)."""
    targets = []
    for spec in (s.strip() for s in text.split(",")):
        if not spec:
            raise DeployError(f"--targets {text!r}: empty entry")
        location = spec.split("?", 1)[0]
        bucket, at, region = location.rpartition("@")
        if not at:
            raise DeployError(f"target {spec!r}: expected BUCKET@REGION (the region decides where its bucket is created)")
        if not BUCKET_NAME.match(bucket):
            raise DeployError(f"target {spec!r}: {bucket!r} is not a bucket name")
        if not REGION_NAME.match(region):
            raise DeployError(f"target {spec!r}: {region!r} is not a region name")
        targets.append(Target(spec, bucket, region))
    seen: set[str] = set()
    for target in targets:
        if target.bucket in seen:
            raise DeployError(f"target bucket {target.bucket!r} is listed twice")
        seen.add(target.bucket)
    return targets


def count(items, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def replica_stack_name(stack: str, bucket: str) -> str:
    return f"{stack}-replica-{bucket.replace('.', '-')}"[:128]


# --------------------------------------------------------------------------- AWS helpers


class Aws:
    """boto3 clients per service and region, from the standard environment."""

    def __init__(self, region: str | None):
        self.session = boto3.session.Session()
        self.region = region or self.session.region_name or os.environ.get("AWS_REGION")
        if not self.region:
            raise DeployError("no region: set AWS_REGION or pass --region")
        self._clients: dict[tuple[str, str], object] = {}

    def client(self, service: str, region: str | None = None):
        key = (service, region or self.region)
        if key not in self._clients:
            self._clients[key] = self.session.client(service, region_name=key[1])
        return self._clients[key]

    def account(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]


def error_code(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Code", "")


def bucket_exists(aws: Aws, bucket: str) -> bool:
    try:
        aws.client("s3").head_bucket(Bucket=bucket)
        return True
    except ClientError as err:
        if error_code(err) in ("404", "NoSuchBucket", "NotFound"):
            return False
        if error_code(err) in ("403", "Forbidden", "AccessDenied"):
            return True  # it exists, and belongs to another account (or refuses these credentials)
        raise DeployError(f"bucket {bucket!r}: {error_code(err) or err}") from err


def bucket_region(aws: Aws, bucket: str) -> str:
    location = aws.client("s3").get_bucket_location(Bucket=bucket).get("LocationConstraint")
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)


def describe_stack(aws: Aws, name: str, region: str) -> dict | None:
    try:
        stacks = aws.client("cloudformation", region).describe_stacks(StackName=name)["Stacks"]
    except ClientError as err:
        if "does not exist" in str(err):
            return None
        raise
    stack = stacks[0] if stacks else None
    if stack and stack["StackStatus"] == "DELETE_COMPLETE":
        return None
    return stack


def outputs_of(stack: dict) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def deploy_stack(
    aws: Aws,
    name: str,
    region: str,
    template: dict,
    parameters: dict[str, str],
    tags: dict[str, str],
    template_url: str | None = None,
) -> tuple[str, dict]:
    """Create the stack or update it; returns ("created" | "updated" | "unchanged", stack).

    On update, a template parameter not given keeps its previous value, so that running
    again with one more target changes nothing else."""
    cfn = aws.client("cloudformation", region)
    existing = describe_stack(aws, name, region)
    if existing and existing["StackStatus"] == "ROLLBACK_COMPLETE":
        # A stack whose creation failed cannot be updated, only deleted and created again.
        cfn.delete_stack(StackName=name)
        wait(cfn, "stack_delete_complete", name)
        existing = None
    body = {"TemplateURL": template_url} if template_url else {"TemplateBody": json.dumps(template, separators=(",", ":"))}
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
    tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
    if existing is None:
        cfn.create_stack(StackName=name, Parameters=params, Capabilities=CAPABILITIES, Tags=tag_list, **body)
        wait(cfn, "stack_create_complete", name)
        return "created", describe_stack(aws, name, region)
    # A parameter still at its default is left to the template's default; one set
    # earlier keeps its value.
    declared = template.get("Parameters", {})
    for p in existing.get("Parameters", []):
        key = p["ParameterKey"]
        if key in parameters or key not in declared:
            continue
        default = declared[key].get("Default")
        if default is None or p.get("ParameterValue") != str(default):
            params.append({"ParameterKey": key, "UsePreviousValue": True})
    try:
        cfn.update_stack(StackName=name, Parameters=params, Capabilities=CAPABILITIES, Tags=tag_list, **body)
    except ClientError as err:
        if "No updates are to be performed" in str(err):
            return "unchanged", existing
        raise
    wait(cfn, "stack_update_complete", name)
    return "updated", describe_stack(aws, name, region)


def wait(cfn, waiter: str, name: str) -> None:
    try:
        cfn.get_waiter(waiter).wait(StackName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 900})
    except WaiterError as err:
        reasons = [
            f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
            for e in cfn.describe_stack_events(StackName=name)["StackEvents"][:20]
            if "FAILED" in e.get("ResourceStatus", "")
        ]
        raise DeployError(f"stack {name}: {waiter} failed: {'; '.join(reasons) or err}") from err


def delete_stack(aws: Aws, name: str, region: str) -> bool:
    if describe_stack(aws, name, region) is None:
        return False
    cfn = aws.client("cloudformation", region)
    cfn.delete_stack(StackName=name)
    wait(cfn, "stack_delete_complete", name)
    return True


def load_template(name: str) -> dict:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse((INFRA / name).read_text())


# --------------------------------------------------------------------------- deploy steps


class Report:
    """What was done, printed at the end."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, what: str, name: str, detail: str = "") -> None:
        line = f"  {what:<10} {name}"
        self.lines.append(f"{line}  ({detail})" if detail else line)
        print(self.lines[-1], flush=True)


def build() -> None:
    subprocess.run(["make", "-C", str(ROOT), "package"], check=True)


def code_zips(code_dir: Path) -> dict[str, Path]:
    zips = {fn: code_dir / fn / "bootstrap.zip" for fn in FUNCTIONS}
    missing = [str(p) for p in zips.values() if not p.is_file()]
    if missing:
        raise DeployError(f"no function zip at {', '.join(missing)}: run `make package` first, or pass --build")
    return zips


def ensure_artifact_bucket(aws: Aws, name: str | None, report: Report) -> str:
    bucket = name or f"s3fanout-artifacts-{aws.account()}-{aws.region}"
    if bucket_exists(aws, bucket):
        return bucket
    if name:
        raise DeployError(f"--artifact-bucket {name!r} does not exist")
    s3 = aws.client("s3")
    kwargs = {} if aws.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": aws.region}}
    s3.create_bucket(Bucket=bucket, **kwargs)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    report.add("created", f"s3://{bucket}", "artifact bucket: function zips")
    return bucket


def upload(aws: Aws, bucket: str, key: str, body: bytes) -> None:
    s3 = aws.client("s3")
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return  # content-addressed: the same key holds the same bytes
    except ClientError as err:
        if error_code(err) not in ("404", "NoSuchKey", "NotFound"):
            raise
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def upload_code(aws: Aws, bucket: str, stack: str, zips: dict[str, Path]) -> dict[str, dict]:
    """Upload each zip under a key named by its digest, so that new code is a new key
    and CloudFormation updates the function."""
    locations = {}
    for fn, path in zips.items():
        data = path.read_bytes()
        key = f"{stack}/{fn}-{hashlib.sha256(data).hexdigest()[:20]}.zip"
        upload(aws, bucket, key, data)
        locations[fn] = {"Bucket": bucket, "Key": key}
    return locations


def ensure_replica_buckets(aws: Aws, stack: str, targets: list[Target], report: Report) -> None:
    template = load_template("replica-bucket.yaml")
    for target in targets:
        name = replica_stack_name(stack, target.bucket)
        existing = describe_stack(aws, name, target.region)
        if existing is None and bucket_exists(aws, target.bucket):
            report.add("kept", f"s3://{target.bucket}", "existing bucket, not managed by this deploy")
            continue
        status, _ = deploy_stack(
            aws, name, target.region, template, {"BucketName": target.bucket}, {TAG_STACK: stack}
        )
        report.add(status, f"stack {name} ({target.region})", f"replica bucket s3://{target.bucket}")


def replication_template(code: dict[str, dict], translate_locally: bool, region: str) -> dict:
    template = load_template("replication.yaml")
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            uri = str(resource["Properties"]["CodeUri"])
            fn = next((f for f in FUNCTIONS if f"/{f}/" in uri), None)
            if fn is None:
                raise DeployError(f"replication.yaml: {logical_id} CodeUri {uri!r} names no known function")
            resource["Properties"]["CodeUri"] = code[fn]
    if translate_locally:
        # CloudFormation implementations without the SAM transform (moto's) get the
        # translation samtranslator makes, the one the service makes.
        from samtranslator.translator.transform import transform

        class NoManagedPolicies:
            def load(self):
                return {}

        os.environ["AWS_DEFAULT_REGION"] = region  # samtranslator's pseudo parameters
        template = transform(template, {}, NoManagedPolicies())
    return template


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    declared = load_template("replication.yaml")["Parameters"]
    parameters = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise DeployError(f"--parameter {pair!r}: expected KEY=VALUE")
        if key in DERIVED_PARAMETERS:
            raise DeployError(f"--parameter {key}: derived from --source, --targets and --wiring; give it there")
        if key not in declared:
            raise DeployError(f"--parameter {key}: infra/replication.yaml has no such parameter")
        parameters[key] = value
    return parameters


def notification_configuration(aws: Aws, bucket: str) -> dict:
    config = aws.client("s3").get_bucket_notification_configuration(Bucket=bucket)
    config.pop("ResponseMetadata", None)
    return config


def wiring_id(stack: str) -> str:
    return f"s3fanout-{stack}"


def wire_source(aws: Aws, stack: str, source: str, wiring: str, queue_arn: str, report: Report) -> None:
    """Add this stack's entry to the source's notification configuration, keeping every
    other entry (put-bucket-notification-configuration replaces the whole document)."""
    config = notification_configuration(aws, source)
    before = json.dumps(config, sort_keys=True)
    ours = wiring_id(stack)
    queues = [q for q in config.get("QueueConfigurations", []) if q.get("Id") != ours]
    if wiring == "S3Notification":
        queues.append({"Id": ours, "QueueArn": queue_arn, "Events": list(S3_NOTIFICATION_EVENTS)})
    else:
        config["EventBridgeConfiguration"] = {}
    if queues:
        config["QueueConfigurations"] = queues
    else:
        config.pop("QueueConfigurations", None)
    if json.dumps(config, sort_keys=True) == before:
        report.add("unchanged", f"s3://{source} notifications", wiring)
        return
    try:
        aws.client("s3").put_bucket_notification_configuration(Bucket=source, NotificationConfiguration=config)
    except ClientError as err:
        raise DeployError(
            f"s3://{source}: the notification configuration with this stack's queue was refused "
            f"({error_code(err)}: {err.response['Error'].get('Message', '')}); an existing entry "
            "for the same events overlaps it: use --wiring EventBridge"
        ) from err
    kept = sum(len(config.get(k, [])) for k in ("QueueConfigurations", "TopicConfigurations", "LambdaFunctionConfigurations"))
    kept -= 1 if wiring == "S3Notification" else 0
    report.add("wired", f"s3://{source} notifications", f"{wiring}; {kept} existing {'entry' if kept == 1 else 'entries'} kept")


def unwire_source(aws: Aws, stack: str, source: str, eventbridge_ours: bool, report: Report) -> None:
    if not bucket_exists(aws, source):
        return
    config = notification_configuration(aws, source)
    before = json.dumps(config, sort_keys=True)
    queues = [q for q in config.get("QueueConfigurations", []) if q.get("Id") != wiring_id(stack)]
    if queues:
        config["QueueConfigurations"] = queues
    else:
        config.pop("QueueConfigurations", None)
    if eventbridge_ours:
        config.pop("EventBridgeConfiguration", None)
    if json.dumps(config, sort_keys=True) != before:
        aws.client("s3").put_bucket_notification_configuration(Bucket=source, NotificationConfiguration=config)
        report.add("unwired", f"s3://{source} notifications", "other entries kept")


def failover_stack_name(stack: str, index: int) -> str:
    return f"{stack}-failover-{index}"


def deploy_failover(aws: Aws, stack: str, args, targets: list[Target], report: Report) -> None:
    endpoints = args.failover_endpoint
    template = load_template("failover.yaml")
    names = [args.failover_record] + [f"failover-{i}.{args.failover_record}" for i in range(2, len(targets) + 1)]
    for i, endpoint in enumerate(endpoints):
        params = {
            "HostedZoneId": args.failover_zone,
            "RecordName": names[i],
            "NextRecordName": names[i + 1] if i + 1 < len(names) else "",
            "ReplicaEndpoint": endpoint,
        }
        if args.alarm_topic:
            params["AlarmTopicArn"] = args.alarm_topic
        name = failover_stack_name(stack, i + 1)
        status, _ = deploy_stack(aws, name, FAILOVER_REGION, template, params, {TAG_STACK: stack})
        report.add(status, f"stack {name} ({FAILOVER_REGION})", f"{names[i]} -> {endpoint}")
    # A chain that was longer before: its tail would answer for replicas no longer listed.
    index = len(targets) + 1
    while delete_stack(aws, failover_stack_name(stack, index), FAILOVER_REGION):
        report.add("deleted", f"stack {failover_stack_name(stack, index)} ({FAILOVER_REGION})")
        index += 1


def deploy(args) -> int:
    stack = args.stack
    if not re.match(r"^[A-Za-z][A-Za-z0-9-]*$", stack) or len(stack) > MAX_STACK_NAME:
        raise DeployError(
            f"--stack {stack!r}: letters, digits and '-', starting with a letter, at most {MAX_STACK_NAME} "
            "characters (the function names <stack>-replicate, -backfill, -canary must fit 64)"
        )
    targets = parse_targets(args.targets)
    parameters = parse_parameters(args.parameter)
    if bool(args.failover_zone) != bool(args.failover_record):
        raise DeployError("--failover-zone and --failover-record go together")
    if args.failover_zone and len(args.failover_endpoint) != len(targets):
        raise DeployError(
            f"--failover-endpoint given {len(args.failover_endpoint)} times for {len(targets)} targets: "
            "one endpoint per target, in order"
        )
    aws = Aws(args.region)
    report = Report()
    print(f"s3fanout deploy: stack {stack} in {aws.region}, source s3://{args.source}, {count(targets, 'target')}", flush=True)

    if not bucket_exists(aws, args.source):
        raise DeployError(f"--source {args.source!r}: no such bucket (the source must exist)")
    source_region = bucket_region(aws, args.source)
    if source_region != aws.region:
        raise DeployError(f"--source {args.source!r} is in {source_region}; deploy in that region (--region {source_region})")
    if args.source in {t.bucket for t in targets}:
        raise DeployError(f"--source {args.source!r} is also a target: it would replicate into itself")

    if args.build:
        build()
    zips = code_zips(Path(args.code_dir))
    artifacts = ensure_artifact_bucket(aws, args.artifact_bucket, report)
    code = upload_code(aws, artifacts, stack, zips)

    ensure_replica_buckets(aws, stack, targets, report)

    existing = describe_stack(aws, stack, aws.region)
    previous_tags = {t["Key"]: t["Value"] for t in (existing or {}).get("Tags", [])}
    eventbridge_ours = previous_tags.get(TAG_ENABLED_EVENTBRIDGE) == "true" or (
        args.wiring == "EventBridge" and "EventBridgeConfiguration" not in notification_configuration(aws, args.source)
    )
    replication_tags = {TAG_STACK: stack, TAG_ENABLED_EVENTBRIDGE: "true" if eventbridge_ours else "false"}
    alarms_region = args.read_alarms_region or previous_tags.get(TAG_READ_ALARMS_REGION)
    if alarms_region:
        replication_tags[TAG_READ_ALARMS_REGION] = alarms_region
    template = replication_template(code, args.translate_locally, aws.region)
    body = json.dumps(template, separators=(",", ":")).encode()
    template_url = None
    if len(body) > 51_200:  # CloudFormation's limit for a template passed inline
        key = f"{stack}/replication-{hashlib.sha256(body).hexdigest()[:20]}.json"
        upload(aws, artifacts, key, body)
        template_url = f"https://{artifacts}.s3.{aws.region}.amazonaws.com/{key}"
    status, replication = deploy_stack(
        aws,
        stack,
        aws.region,
        template,
        {
            "SourceBucketName": args.source,
            "ReplicaTargets": ",".join(t.spec for t in targets),
            "TargetBuckets": ",".join(t.bucket for t in targets),
            "SourceWiring": args.wiring,
            **parameters,
        },
        replication_tags,
        template_url,
    )
    report.add(status, f"stack {stack} ({aws.region})", f"replication: {count(targets, 'target')}")
    outputs = outputs_of(replication)
    wire_source(aws, stack, args.source, args.wiring, outputs["QueueArn"], report)

    if args.failover_zone:
        deploy_failover(aws, stack, args, targets, report)
    if args.read_alarms_region:
        params = {}
        if args.alarm_topic:
            params = {"WarningTopicArn": args.alarm_topic, "CriticalTopicArn": args.alarm_topic}
        name = f"{stack}-read-alarms"
        status, _ = deploy_stack(aws, name, args.read_alarms_region, load_template("read-alarms.yaml"), params, {TAG_STACK: stack})
        report.add(status, f"stack {name} ({args.read_alarms_region})", "read alarms")

    print()
    print(f"replicate: {outputs.get('ReplicateFunctionName')}  backfill: {outputs.get('BackfillFunctionName')}  "
          f"dashboard: {outputs.get('DashboardName')}")
    print("New objects replicate from now on. Copy the objects the source already holds (a first backfill):")
    print(f"  make backfill STACK={stack}" + (f" AWS_REGION={aws.region}" if args.region else ""))
    return 0


def destroy(args) -> int:
    aws = Aws(args.region)
    report = Report()
    stack = args.stack
    print(f"s3fanout destroy: stack {stack} in {aws.region} (buckets and objects are kept)", flush=True)
    replication = describe_stack(aws, stack, aws.region)
    if replication is None:
        raise DeployError(f"no stack {stack!r} in {aws.region}")
    params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in replication.get("Parameters", [])}
    tags = {t["Key"]: t["Value"] for t in replication.get("Tags", [])}
    # The targets as the functions have them (REPLICA_TARGETS), read before the stack goes.
    try:
        function = outputs_of(replication)["ReplicateFunctionName"]
        variables = aws.client("lambda").get_function_configuration(FunctionName=function)["Environment"]["Variables"]
        targets = variables["REPLICA_TARGETS"]
    except (KeyError, ClientError):
        # A stack whose function is gone still has its parameter.
        targets = params["ReplicaTargets"]
    # The wiring goes first: events sent to a deleted queue would be lost, not queued.
    unwire_source(aws, stack, params["SourceBucketName"], tags.get(TAG_ENABLED_EVENTBRIDGE) == "true", report)
    alarms_region = args.read_alarms_region or tags.get(TAG_READ_ALARMS_REGION) or aws.region
    if delete_stack(aws, f"{stack}-read-alarms", alarms_region):
        report.add("deleted", f"stack {stack}-read-alarms ({alarms_region})")
    index = 1
    while delete_stack(aws, failover_stack_name(stack, index), FAILOVER_REGION):
        report.add("deleted", f"stack {failover_stack_name(stack, index)} ({FAILOVER_REGION})")
        index += 1
    delete_stack(aws, stack, aws.region)
    report.add("deleted", f"stack {stack} ({aws.region})", "functions, queues, alarms, dashboard")
    for target in parse_targets(targets):
        name = replica_stack_name(stack, target.bucket)
        if delete_stack(aws, name, target.region):
            report.add("deleted", f"stack {name} ({target.region})", f"s3://{target.bucket} kept")
    return 0


def backfill(args) -> int:
    aws = Aws(args.region)
    stack = describe_stack(aws, args.stack, aws.region)
    if stack is None:
        raise DeployError(f"no stack {args.stack!r} in {aws.region}")
    function = outputs_of(stack)["BackfillFunctionName"]
    payload = {"prefix": args.prefix, "auto_continue": True}
    if args.summary_to:
        payload["summary_to"] = args.summary_to
    # Asynchronously: a synchronous invoke waits up to 15 minutes, longer than a client
    # waits for an answer before sending the request again (and starting a second run).
    answer = aws.client("lambda").invoke(
        FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode()
    )
    print(f"backfill started: {function} (status {answer['StatusCode']}), payload {json.dumps(payload)}")
    print(f"its summary is logged to /aws/lambda/{function}" + (f" and written under {args.summary_to}" if args.summary_to else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infra/deploy.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--stack", default="s3fanout", help="replication stack name (default s3fanout)")
        p.add_argument("--region", help="the source's region (default: the AWS environment's)")

    d = sub.add_parser("deploy", help="create or update everything")
    common(d)
    d.add_argument("--source", required=True, help="existing source bucket, in --region")
    d.add_argument("--targets", required=True, help="REPLICA_TARGETS: BUCKET@REGION[?option=value&...],...")
    d.add_argument("--wiring", choices=["EventBridge", "S3Notification"], default="EventBridge")
    d.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE",
                   help="another infra/replication.yaml parameter (repeatable)")
    d.add_argument("--artifact-bucket", help="bucket for the function zips (default: created, s3fanout-artifacts-ACCOUNT-REGION)")
    d.add_argument("--code-dir", default=str(ROOT / "target" / "lambda"), help="where make package put <function>/bootstrap.zip")
    d.add_argument("--build", action="store_true", help="run make package first")
    d.add_argument("--translate-locally", action="store_true",
                   help="translate the SAM template with samtranslator (for a CloudFormation without the transform, such as moto's)")
    d.add_argument("--failover-zone", help="Route 53 hosted zone id: deploy the failover chain")
    d.add_argument("--failover-record", help="the name readers use, e.g. assets.example.com")
    d.add_argument("--failover-endpoint", action="append", default=[], help="one per target, in order (repeatable)")
    d.add_argument("--read-alarms-region", help="deploy infra/read-alarms.yaml in this region")
    d.add_argument("--alarm-topic", help="SNS topic ARN for the failover and read alarms")
    d.set_defaults(run=deploy)

    x = sub.add_parser("destroy", help="remove the stacks and the wiring; keep every bucket and object")
    common(x)
    x.add_argument("--read-alarms-region", help="where the read alarms were deployed (default: where deploy put them)")
    x.set_defaults(run=destroy)

    b = sub.add_parser("backfill", help="start the first backfill (asynchronously)")
    common(b)
    b.add_argument("--prefix", default="")
    b.add_argument("--summary-to", help="s3://bucket/prefix/ for the summary")
    b.set_defaults(run=backfill)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except DeployError as err:
        print(f"deploy.py: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
