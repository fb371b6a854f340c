"""Deploy the replication templates into moto's CloudFormation and check what they create.

moto does not run the SAM transform, so infra/replication.yaml is translated to
plain CloudFormation with samtranslator first (CodeUri rewritten to a placeholder
zip in a moto bucket). Where moto's CloudFormation does not create a resource
type or drops a property, the test checks the template instead and says so
with an explicit skip (see ``moto_gap``); everything moto does implement is
asserted on the deployed resources. The one correction made to moto (it keeps
`AWS::NoValue` list items as null where CloudFormation drops them) is in conftest.

The replication stack is deployed with 1, 3 and 6 targets.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import unquote

import moto
import pytest
from moto.cloudformation.parsing import resource_class_from_type
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from conftest import ACCOUNT_ID, INFRA, REGION, ROOT

MOTO = f"moto {moto.__version__}"

SOURCE = "fanout-source"


def kms_key(region: str, key_id: str) -> str:
    return f"arn:aws:kms:{region}:{ACCOUNT_ID}:key/{key_id}"


# Three targets: a storage class, a kms_key_id (percent-encoded as the function
# reads it), and a bucket whose default encryption is a customer key with no
# kms_key_id configured (its key only appears in TargetKmsKeyArns).
TARGET_EU = "fanout-replica-eu"
TARGET_LOCAL = "fanout-replica-local"
TARGET_AP = "fanout-replica-ap"
TARGET_LOCAL_KEY = kms_key(REGION, "1234abcd-12ab-34cd-56ef-1234567890ab")
TARGET_AP_BUCKET_KEY = kms_key("ap-southeast-2", "bucket-default-key")
SOURCE_KEYS = [kms_key(REGION, "source-key-old"), kms_key(REGION, "source-key-new")]
THREE_TARGETS = [
    f"{TARGET_EU}@eu-west-1?storage_class=STANDARD_IA",
    f"{TARGET_LOCAL}@{REGION}?kms_key_id=arn%3Aaws%3Akms%3A{REGION}%3A{ACCOUNT_ID}"
    "%3Akey%2F1234abcd-12ab-34cd-56ef-1234567890ab",
    f"{TARGET_AP}@ap-southeast-2?prefix=mirror%2F",
]
SIX_REGIONS = ["eu-west-1", "eu-central-1", "us-west-2", "ap-southeast-2", "ap-northeast-1", "sa-east-1"]
SIX_BUCKETS = [f"fanout-six-{region}" for region in SIX_REGIONS]


# --------------------------------------------------------------------------- helpers


def load_template(name: str) -> dict:
    return yaml_parse((INFRA / name).read_text())


class _NoManagedPolicies:
    """The templates name their own roles; SAM needs no managed policy ARNs."""

    def load(self):
        return {}


def sam_to_cloudformation(code_bucket: str, code_key: str) -> dict:
    template = load_template("replication.yaml")
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = {"Bucket": code_bucket, "Key": code_key}
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    return transform(template, {}, _NoManagedPolicies())


def moto_supports(resource_type: str) -> bool:
    return resource_class_from_type(resource_type) is not None


def moto_gap(actual, expected, moto_default, reason: str) -> None:
    """Assert a deployed value; skip (with the reason) only when moto left its default."""
    if actual == expected:
        return
    if actual == moto_default:
        pytest.skip(f"{MOTO}: {reason}")
    assert actual == expected


def deploy(aws, name: str, template: dict, params: dict, region: str = REGION) -> dict:
    cfn = aws("cloudformation", region)
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    cfn.get_waiter("stack_create_complete").wait(
        StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    resources = {
        r["LogicalResourceId"]: r
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=name)
        for r in page["StackResourceSummaries"]
    }
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return {"name": name, "resources": resources, "outputs": outputs, "region": region}


def physical(stack: dict, logical_id: str) -> str:
    return stack["resources"][logical_id]["PhysicalResourceId"]


def queue_arn(aws, stack: dict, logical_id: str) -> str:
    url = physical(stack, logical_id)
    return aws("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]


def role_statements(iam, role_name: str) -> list[dict]:
    statements = []
    for policy_name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
        if isinstance(doc, str):
            doc = parse_policy_document(unquote(doc))
        stmts = doc["Statement"]
        statements.extend(stmts if isinstance(stmts, list) else [stmts])
    return statements


def parse_policy_document(text: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # moto renders the inline Policies of an AWS::IAM::Role created by
        # CloudFormation as a Python dict repr instead of JSON.
        return ast.literal_eval(text)


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def allowed(statements: list[dict]) -> dict[str, set[str]]:
    """action -> set of resources, over the Allow statements."""
    result: dict[str, set[str]] = {}
    for stmt in statements:
        if stmt.get("Effect") != "Allow":
            continue
        for action in as_list(stmt["Action"]):
            result.setdefault(action, set()).update(as_list(stmt["Resource"]))
    return result


def role_perms(aws, stack: dict, role_logical_id: str) -> dict[str, set[str]]:
    return allowed(role_statements(aws("iam"), physical(stack, role_logical_id)))


def assert_least_privilege(statements: list[dict]) -> None:
    for stmt in statements:
        assert "NotAction" not in stmt and "NotResource" not in stmt, stmt
        actions = as_list(stmt["Action"])
        resources = as_list(stmt["Resource"])
        if stmt.get("Effect") != "Allow":
            continue
        for action in actions:
            assert action != "*" and not action.endswith(":*"), f"wildcard action {action}"
        if any(a.startswith(("s3:", "kms:", "lambda:", "sqs:", "logs:")) for a in actions):
            assert "*" not in resources, f"'*' resource for {actions}"
            assert "" not in resources, f"empty resource for {actions}"
        for resource in resources:
            if any(a.startswith("s3:") for a in actions):
                assert resource.startswith("arn:aws:s3:::"), resource
                bucket = resource[len("arn:aws:s3:::"):].split("/")[0]
                assert bucket and "*" not in bucket, resource
        if any(a.startswith("kms:") for a in actions):
            # KMS keys only through S3, never directly.
            assert stmt["Condition"] == {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}}


def bucket_arns(buckets) -> set[str]:
    return {f"arn:aws:s3:::{b}" for b in buckets}


def object_arns(buckets) -> set[str]:
    return {f"arn:aws:s3:::{b}/*" for b in buckets}


_SUB_VAR = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")


def references(value) -> set[str]:
    """Logical IDs a template fragment refers to (Ref, Fn::GetAtt, ${X} in Fn::Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                template = inner[0] if isinstance(inner, list) else inner
                found.update(_SUB_VAR.findall(template))
                found.update(references(inner[1:] if isinstance(inner, list) else []))
            else:
                found.update(references(inner))
    elif isinstance(value, list):
        for inner in value:
            found.update(references(inner))
    return found


def created_before(template: dict, logical_id: str) -> set[str]:
    """Every resource CloudFormation must finish before creating this one."""
    resources = template["Resources"]
    seen: set[str] = set()
    todo = [logical_id]
    while todo:
        resource = resources[todo.pop()]
        direct = set(as_list(resource.get("DependsOn", []))) | references(
            resource.get("Properties", {})
        )
        for dep in direct & set(resources):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def policies_of_role(template: dict, role: str) -> set[str]:
    """The AWS::IAM::Policy resources attached to a role (in any branch of an Fn::If)."""
    return {
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Policy"
        and role in references(resource["Properties"]["Roles"])
    }


# --------------------------------------------------------------------------- stacks


@pytest.fixture(scope="module")
def translated(code_object) -> dict:
    return sam_to_cloudformation(*code_object)


@pytest.fixture(scope="module")
def full_stack(aws, translated) -> dict:
    """EventBridge wiring, three targets, deletes, KMS on both sides, load settings, alarms."""
    return deploy(
        aws,
        "fanout-full",
        translated,
        {
            "SourceBucketName": SOURCE,
            "SourceKmsKeyArns": ",".join(SOURCE_KEYS),
            "SourceWiring": "EventBridge",
            "ReplicaTargets": ",".join(THREE_TARGETS),
            "TargetBuckets": f"{TARGET_EU},{TARGET_LOCAL},{TARGET_AP}",
            "TargetKmsKeyArns": f"{TARGET_LOCAL_KEY},{TARGET_AP_BUCKET_KEY}",
            "ReplicateDeletes": "true",
            "ReservedConcurrency": "25",
            "MaximumConcurrency": "20",
            "AlarmTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:fanout-alarms",
            "ReplicationLatencyAlarmMs": "300000",
            "CreateBatchOperationsRole": "true",
            "BatchOperationsBucket": "fanout-batch",
        },
    )


@pytest.fixture(scope="module")
def minimal_stack(aws, translated) -> dict:
    """Direct S3 -> SQS wiring, one target, defaults otherwise (longer timeout)."""
    return deploy(
        aws,
        "fanout-min",
        translated,
        {
            "SourceBucketName": SOURCE,
            "SourceWiring": "S3Notification",
            "ReplicaTargets": f"{TARGET_EU}@eu-west-1",
            "TargetBuckets": TARGET_EU,
            "FunctionTimeout": "900",
            "ReconcileSchedule": "cron(30 3 * * ? *)",
            "ReconcileChains": "16",
        },
    )


@pytest.fixture(scope="module")
def six_stack(aws, translated) -> dict:
    """Six targets in six regions, direct S3 -> SQS wiring with deletes."""
    return deploy(
        aws,
        "fanout-six",
        translated,
        {
            "SourceBucketName": SOURCE,
            "SourceWiring": "S3Notification",
            "ReplicaTargets": ",".join(f"{b}@{r}" for b, r in zip(SIX_BUCKETS, SIX_REGIONS)),
            "TargetBuckets": ",".join(SIX_BUCKETS),
            "ReplicateDeletes": "true",
            "EnableCanary": "false",
            "ReconcileSchedule": "off",
        },
    )


@pytest.fixture(scope="module")
def all_stacks(full_stack, minimal_stack, six_stack) -> list[dict]:
    return [minimal_stack, full_stack, six_stack]


# --------------------------------------------------------------------------- replication: SQS


def test_queue_redrive_and_visibility(aws, full_stack, minimal_stack):
    sqs = aws("sqs")
    for stack, timeout in ((full_stack, 300), (minimal_stack, 900)):
        queue_url = stack["outputs"]["QueueUrl"]
        assert queue_url == physical(stack, "ReplicationQueue")
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        assert int(attrs["VisibilityTimeout"]) == 6 * timeout
        assert int(attrs["MessageRetentionPeriod"]) == 1209600
        redrive = json.loads(attrs["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == stack["outputs"]["DeadLetterQueueArn"]
        assert int(redrive["maxReceiveCount"]) == 5

        dlq_url = physical(stack, "DeadLetterQueue")
        dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
        assert dlq["QueueArn"] == stack["outputs"]["DeadLetterQueueArn"]
        assert "RedrivePolicy" not in dlq
        assert int(dlq["MessageRetentionPeriod"]) == 1209600


def test_queues_encrypted(aws, translated, full_stack):
    queues = [k for k, v in translated["Resources"].items() if v["Type"] == "AWS::SQS::Queue"]
    assert set(queues) == {
        "ReplicationQueue",
        "DeadLetterQueue",
        "BackfillDeadLetterQueue",
        "EventsDeadLetterQueue",
        "RetryQueue",
    }
    retry = translated["Resources"]["RetryQueue"]["Properties"]
    # Owed work waits through a long outage: the longest retention SQS allows, and the
    # same dead-letter queue for what keeps failing.
    assert retry["MessageRetentionPeriod"] == 1209600
    assert retry["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    for logical_id in queues:
        assert translated["Resources"][logical_id]["Properties"]["SqsManagedSseEnabled"] is True
    attrs = aws("sqs").get_queue_attributes(
        QueueUrl=full_stack["outputs"]["QueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    moto_gap(
        attrs.get("SqsManagedSseEnabled"),
        "true",
        None,
        "AWS::SQS::Queue SqsManagedSseEnabled is not passed through by moto's CloudFormation",
    )


def test_queue_policy(translated, full_stack):
    policy = translated["Resources"]["ReplicationQueuePolicy"]["Properties"]["PolicyDocument"]
    choice, eventbridge, s3 = policy["Statement"][0]["Fn::If"]
    assert choice == "UseEventBridge"
    assert eventbridge["Principal"] == {"Service": "events.amazonaws.com"}
    assert eventbridge["Action"] == "sqs:SendMessage"
    assert eventbridge["Condition"]["ArnEquals"]["aws:SourceArn"] == {
        "Fn::GetAtt": ["SourceEventsRule", "Arn"]
    }
    assert s3["Principal"] == {"Service": "s3.amazonaws.com"}
    assert s3["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert "aws:SourceArn" in s3["Condition"]["ArnLike"]
    deny = policy["Statement"][1]
    assert deny["Effect"] == "Deny" and deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    if not moto_supports("AWS::SQS::QueuePolicy"):
        pytest.skip(f"{MOTO} does not implement AWS::SQS::QueuePolicy in CloudFormation; policy checked in the template only")
    assert "ReplicationQueuePolicy" in full_stack["resources"]


def test_eventbridge_dead_letter_queue_policy(translated, full_stack, minimal_stack):
    resource = translated["Resources"]["EventsDeadLetterQueuePolicy"]
    assert resource["Condition"] == "UseEventBridge"
    assert resource["Properties"]["Queues"] == [{"Ref": "EventsDeadLetterQueue"}]
    allow, deny = resource["Properties"]["PolicyDocument"]["Statement"]
    assert allow["Effect"] == "Allow"
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Resource"] == {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}
    assert allow["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["SourceEventsRule", "Arn"]}}
    }
    assert deny["Effect"] == "Deny" and deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    assert "EventsDeadLetterQueue" in full_stack["resources"]
    assert "EventsDeadLetterQueue" not in minimal_stack["resources"]
    if not moto_supports("AWS::SQS::QueuePolicy"):
        pytest.skip(f"{MOTO} does not implement AWS::SQS::QueuePolicy in CloudFormation; policy checked in the template only")
    assert "EventsDeadLetterQueuePolicy" in full_stack["resources"]


# --------------------------------------------------------------------------- replication: Lambda


def test_functions(aws, all_stacks):
    lam = aws("lambda")
    for stack in all_stacks:
        for suffix, timeout in (("replicate", None), ("backfill", 900)):
            name = f"{stack['name']}-{suffix}"
            cfg = lam.get_function_configuration(FunctionName=name)
            assert cfg["Runtime"] == "provided.al2023"
            assert cfg["Handler"] == "bootstrap"
            assert cfg["MemorySize"] == 1024
            if timeout:
                assert cfg["Timeout"] == timeout
            assert cfg["Role"].endswith("/" + physical(stack, f"{suffix.capitalize()}Role"))
        assert stack["outputs"]["ReplicateFunctionName"] == f"{stack['name']}-replicate"
        assert stack["outputs"]["BackfillFunctionName"] == f"{stack['name']}-backfill"
    assert lam.get_function_configuration(FunctionName="fanout-full-replicate")["Timeout"] == 300
    assert lam.get_function_configuration(FunctionName="fanout-min-replicate")["Timeout"] == 900


def test_replication_role_arns_output(aws, all_stacks):
    """`ReplicationRoleArns`, what a replica-bucket.yaml stack in another account grants: the
    roles of the replicate, backfill and canary functions (no canary role without the canary)."""
    iam = aws("iam")
    for stack in all_stacks:
        roles = ["ReplicateRole", "BackfillRole"] + (["CanaryRole"] if "CanaryRole" in stack["resources"] else [])
        expected = [iam.get_role(RoleName=physical(stack, r))["Role"]["Arn"] for r in roles]
        assert stack["outputs"]["ReplicationRoleArns"].split(",") == expected, stack["name"]


def test_code_is_what_make_package_builds():
    """One build path: the template deploys the zips `make package` writes."""
    template = load_template("replication.yaml")
    infra_mk = (INFRA / "infra.mk").read_text()
    assert "--output-format zip" in infra_mk
    for logical_id, binary in (
        ("ReplicateFunction", "replicate"),
        ("BackfillFunction", "backfill"),
        ("CanaryFunction", "canary"),
    ):
        resource = template["Resources"][logical_id]
        assert resource["Properties"]["CodeUri"] == f"../target/lambda/{binary}/bootstrap.zip"
        assert "BuildMethod" not in resource.get("Metadata", {})
        assert f"--bin {binary}" in infra_mk
        crate = ROOT / "crates" / binary / "Cargo.toml"
        assert re.search(rf'^name = "{binary}"', crate.read_text(), re.M), crate


def test_packaged_template_deploys(aws, moto_endpoint, tmp_path):
    """The documented path: `aws cloudformation package` uploads the zips the
    template names, and the packaged template deploys."""
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "replication.yaml").write_text((INFRA / "replication.yaml").read_text())
    for binary in ("replicate", "backfill", "canary"):
        zip_dir = tmp_path / "target" / "lambda" / binary
        zip_dir.mkdir(parents=True)
        with zipfile.ZipFile(zip_dir / "bootstrap.zip", "w") as zf:
            zf.writestr("bootstrap", f"#!/bin/sh\necho {binary}\n")
    aws("s3").create_bucket(Bucket="fanout-packaging")
    cli = Path(sys.executable).parent / "aws"
    if not cli.exists():
        pytest.skip(f"no AWS CLI next to {sys.executable}")
    packaged = tmp_path / "packaged.yaml"
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_endpoint, "AWS_DEFAULT_REGION": REGION}
    subprocess.run(
        [
            str(cli), "cloudformation", "package",
            "--template-file", str(tmp_path / "infra" / "replication.yaml"),
            "--s3-bucket", "fanout-packaging",
            "--output-template-file", str(packaged),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    template = yaml_parse(packaged.read_text())
    uris = {
        logical_id: template["Resources"][logical_id]["Properties"]["CodeUri"]
        for logical_id in ("ReplicateFunction", "BackfillFunction", "CanaryFunction")
    }
    assert all(uri.startswith("s3://fanout-packaging/") for uri in uris.values()), uris
    assert uris["ReplicateFunction"] != uris["BackfillFunction"]
    stack = deploy(
        aws,
        "fanout-packaged",
        transform(template, {}, _NoManagedPolicies()),
        {
            "SourceBucketName": SOURCE,
            "ReplicaTargets": f"{TARGET_EU}@eu-west-1",
            "TargetBuckets": TARGET_EU,
        },
    )
    code = aws("lambda").get_function(FunctionName="fanout-packaged-replicate")["Code"]
    assert stack["outputs"]["ReplicateFunctionName"] == "fanout-packaged-replicate"
    assert code["RepositoryType"] == "S3"


def environment(lam, function_name: str) -> dict[str, str]:
    # moto keeps Number parameters as numbers where CloudFormation passes strings.
    env = lam.get_function_configuration(FunctionName=function_name)["Environment"]["Variables"]
    return {k: str(v) for k, v in env.items()}


def test_function_environment(aws, full_stack, minimal_stack, six_stack):
    lam = aws("lambda")
    env = environment(lam, "fanout-full-replicate")
    # Only replicate posts work owed to a target that is down.
    assert env.pop("RETRY_QUEUE_URL") == full_stack["outputs"]["RetryQueueUrl"]
    assert env == {
        "SOURCE_BUCKETS": SOURCE,
        "REPLICA_TARGETS": ",".join(THREE_TARGETS),
        "REPLICATE_DELETES": "true",
        "COPY_CONCURRENCY": "32",
        "AWS_RETRY_MODE": "adaptive",
        "AWS_MAX_ATTEMPTS": "5",
    }
    assert environment(lam, "fanout-full-backfill") == env

    env = environment(lam, "fanout-min-replicate")
    assert env.pop("RETRY_QUEUE_URL") == minimal_stack["outputs"]["RetryQueueUrl"]
    assert env == {
        "SOURCE_BUCKETS": SOURCE,
        "REPLICA_TARGETS": f"{TARGET_EU}@eu-west-1",
        "REPLICATE_DELETES": "false",
        "COPY_CONCURRENCY": "32",
        "AWS_RETRY_MODE": "adaptive",
        "AWS_MAX_ATTEMPTS": "5",
    }

    targets = environment(lam, "fanout-six-replicate")["REPLICA_TARGETS"].split(",")
    assert targets == [f"{b}@{r}" for b, r in zip(SIX_BUCKETS, SIX_REGIONS)]


def test_event_source_mapping(aws, translated, all_stacks):
    mappings = [
        k for k, v in translated["Resources"].items() if v["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    assert mappings == ["ReplicationQueueMapping", "RetryQueueMapping"]
    lam = aws("lambda")
    for stack in all_stacks:
        mappings = lam.list_event_source_mappings(FunctionName=f"{stack['name']}-replicate")[
            "EventSourceMappings"
        ]
        assert len(mappings) == 2
        queue_arn = stack["outputs"]["QueueArn"]
        (esm,) = [m for m in mappings if m["EventSourceArn"] == queue_arn]
        (retry,) = [m for m in mappings if m["EventSourceArn"] != queue_arn]
        # At most two invocations drain work waiting after an outage.
        assert retry["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert int(retry["ScalingConfig"]["MaximumConcurrency"]) == 2
        assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert esm["BatchSize"] == 10
        assert esm["MaximumBatchingWindowInSeconds"] == 1
        expected = 20 if stack["name"] == "fanout-full" else 10
        assert int(esm["ScalingConfig"]["MaximumConcurrency"]) == expected
        assert not lam.list_event_source_mappings(FunctionName=f"{stack['name']}-backfill")[
            "EventSourceMappings"
        ]


def test_mapping_and_functions_wait_for_every_policy(translated):
    """Nothing runs before every grant of its role is attached (IAM::Policy
    resources are not dependencies of the role they attach to)."""
    replicate_policies = policies_of_role(translated, "ReplicateRole")
    backfill_policies = policies_of_role(translated, "BackfillRole")
    assert replicate_policies >= {"ReplicaAccessPolicy", "ReplicaDeletePolicy"}
    assert backfill_policies == {
        "ReplicaAccessPolicy", "ReplicaDeletePolicy", "TargetNotificationsPolicy",
        "BucketWebsitesPolicy",
    }
    mapping = created_before(translated, "ReplicationQueueMapping")
    assert {"ReplicateFunction", "ReplicateRole", "ReplicationQueue"} <= mapping
    assert replicate_policies <= mapping
    assert replicate_policies <= created_before(translated, "ReplicateFunction")
    assert backfill_policies <= created_before(translated, "BackfillFunction")


def test_reserved_concurrency(aws, full_stack, minimal_stack):
    lam = aws("lambda")
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(
        FunctionName="fanout-min-replicate"
    )
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(
        FunctionName="fanout-full-backfill"
    )
    got = lam.get_function_concurrency(FunctionName="fanout-full-replicate").get(
        "ReservedConcurrentExecutions"
    )
    moto_gap(
        None if got is None else int(got),
        25,
        None,
        "ReservedConcurrentExecutions of AWS::Lambda::Function is not applied by moto's CloudFormation",
    )


def test_function_architecture(aws, translated, full_stack):
    for logical_id in ("ReplicateFunction", "BackfillFunction"):
        assert translated["Resources"][logical_id]["Properties"]["Architectures"] == ["arm64"]
    cfg = aws("lambda").get_function_configuration(FunctionName="fanout-full-replicate")
    moto_gap(
        cfg.get("Architectures"),
        ["arm64"],
        ["x86_64"],
        "Architectures of AWS::Lambda::Function is ignored by moto's CloudFormation (defaults to x86_64); arm64 checked in the template",
    )


def test_backfill_dead_letter_queue(aws, translated, full_stack):
    dlq_arn = full_stack["outputs"]["BackfillDeadLetterQueueArn"]
    assert dlq_arn.endswith(":" + physical(full_stack, "BackfillDeadLetterQueue").rsplit("/", 1)[1])
    props = translated["Resources"]["BackfillFunction"]["Properties"]
    assert props["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": ["BackfillDeadLetterQueue", "Arn"]}}
    cfg = aws("lambda").get_function_configuration(FunctionName="fanout-full-backfill")
    moto_gap(
        cfg.get("DeadLetterConfig", {}).get("TargetArn"),
        dlq_arn,
        None,
        "DeadLetterConfig of AWS::Lambda::Function is ignored by moto's CloudFormation; checked in the template",
    )


def test_backfill_may_invoke_itself(translated):
    """Self-continuation is a loop of one function: Lambda's recursive loop detection would
    stop it after about 16 hops; the function bounds its chains itself (max_hops)."""
    props = translated["Resources"]["BackfillFunction"]["Properties"]
    assert props["RecursiveLoop"] == "Allow"
    assert "RecursiveLoop" not in translated["Resources"]["ReplicateFunction"]["Properties"]


def test_log_groups(aws, full_stack):
    logs = aws("logs")
    for suffix in ("replicate", "backfill"):
        name = f"/aws/lambda/fanout-full-{suffix}"
        groups = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
        assert [g["logGroupName"] for g in groups] == [name]
        assert groups[0]["retentionInDays"] == 30


# --------------------------------------------------------------------------- replication: IAM


def test_iam_least_privilege(aws, all_stacks):
    iam = aws("iam")
    for stack in all_stacks:
        for logical_id, res in stack["resources"].items():
            if res["ResourceType"] == "AWS::IAM::Role":
                stmts = role_statements(iam, res["PhysicalResourceId"])
                assert stmts, logical_id
                assert_least_privilege(stmts)


def test_iam_targets_from_the_list(aws, all_stacks):
    """Every target of the list, and nothing else, for 1, 3 and 6 targets."""
    expected = {
        "fanout-min": [TARGET_EU],
        "fanout-full": [TARGET_EU, TARGET_LOCAL, TARGET_AP],
        "fanout-six": SIX_BUCKETS,
    }
    for stack in all_stacks:
        targets = expected[stack["name"]]
        for role in ("ReplicateRole", "BackfillRole"):
            perms = role_perms(aws, stack, role)
            assert perms["s3:ListBucket"] == bucket_arns([SOURCE, *targets])
            # A copy by parts cut by the deadline is found again to be resumed.
            assert perms["s3:ListBucketMultipartUploads"] == bucket_arns(targets)
            assert perms["s3:GetObject"] == object_arns([SOURCE, *targets])
            assert perms["s3:GetObjectTagging"] == object_arns([SOURCE, *targets])
            for action in (
                "s3:PutObject",
                "s3:PutObjectTagging",
                # Removing every tag of a replica is a DeleteObjectTagging.
                "s3:DeleteObjectTagging",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ):
                assert perms[action] == object_arns(targets), (stack["name"], role, action)
            assert not any(a.startswith("s3:") and a not in {
                "s3:ListBucket", "s3:ListBucketMultipartUploads",
                "s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectVersion",
                "s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObjectTagging",
                "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:DeleteObject",
                "s3:GetBucketNotification", "s3:GetBucketWebsite",
            } for a in perms), perms
            # Both make plain copies: they read the targets' notification configurations.
            assert perms.get("s3:GetBucketNotification") == bucket_arns(targets), (
                stack["name"], role, perms)
            # The backfill alone copies from its listing where no bucket is a website.
            websites = perms.get("s3:GetBucketWebsite")
            if role == "BackfillRole":
                assert websites == bucket_arns([SOURCE, *targets]), (stack["name"], perms)
            else:
                assert websites is None, (stack["name"], role, perms)


def test_iam_replicate_role(aws, full_stack):
    iam = aws("iam")
    role = physical(full_stack, "ReplicateRole")
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    perms = allowed(role_statements(iam, role))
    queue = full_stack["outputs"]["QueueArn"]
    retry = aws("sqs").get_queue_attributes(
        QueueUrl=full_stack["outputs"]["RetryQueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    for action in (
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    ):
        assert perms[action] == {queue, retry}, action
    assert "lambda:InvokeFunction" not in perms
    # It posts work owed to a target that is down, to the retry queue only.
    assert perms["sqs:SendMessage"] == {retry}
    assert perms["logs:PutLogEvents"] == {
        f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/aws/lambda/fanout-full-replicate:*"
    }


def test_iam_delete_grants(aws, all_stacks):
    """Backfill's `delete` option needs s3:DeleteObject whatever ReplicateDeletes says;
    replicate gets it only when deletions are propagated."""
    targets = {
        "fanout-min": [TARGET_EU],
        "fanout-full": [TARGET_EU, TARGET_LOCAL, TARGET_AP],
        "fanout-six": SIX_BUCKETS,
    }
    for stack in all_stacks:
        objects = object_arns(targets[stack["name"]])
        assert role_perms(aws, stack, "BackfillRole")["s3:DeleteObject"] == objects
        replicate = role_perms(aws, stack, "ReplicateRole")
        if stack["name"] == "fanout-min":  # ReplicateDeletes=false
            assert "s3:DeleteObject" not in replicate
        else:
            assert replicate["s3:DeleteObject"] == objects


def test_iam_kms(aws, full_stack, minimal_stack):
    """Several source keys; target keys include a bucket default key that no
    kms_key_id names; both only through S3."""
    iam = aws("iam")
    for role in ("ReplicateRole", "BackfillRole"):
        statements = role_statements(iam, physical(full_stack, role))
        kms = [s for s in statements if any(a.startswith("kms:") for a in as_list(s["Action"]))]
        by_sid = {s["Sid"]: s for s in kms}
        assert set(by_sid) == {"DecryptSourceObjects", "EncryptReplicas"}
        assert as_list(by_sid["DecryptSourceObjects"]["Action"]) == ["kms:Decrypt"]
        assert set(as_list(by_sid["DecryptSourceObjects"]["Resource"])) == set(SOURCE_KEYS)
        assert set(as_list(by_sid["EncryptReplicas"]["Action"])) == {"kms:GenerateDataKey", "kms:Decrypt"}
        assert set(as_list(by_sid["EncryptReplicas"]["Resource"])) == {
            TARGET_LOCAL_KEY,
            TARGET_AP_BUCKET_KEY,
        }
        for stmt in kms:
            assert stmt["Condition"] == {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}}
        assert not any(
            a.startswith("kms:") for a in role_perms(aws, minimal_stack, role)
        ), "no KMS grant without keys"


def test_iam_backfill_role(aws, full_stack, minimal_stack):
    for stack in (full_stack, minimal_stack):
        perms = role_perms(aws, stack, "BackfillRole")
        own_arn = aws("lambda").get_function(FunctionName=f"{stack['name']}-backfill")[
            "Configuration"
        ]["FunctionArn"]
        assert perms["lambda:InvokeFunction"] == {own_arn}
        assert perms["sqs:SendMessage"] == {stack["outputs"]["BackfillDeadLetterQueueArn"]}
        assert not any(a.startswith("sqs:Receive") for a in perms)


def test_iam_batch_operations_role(aws, full_stack, minimal_stack):
    iam = aws("iam")
    role = physical(full_stack, "BatchOperationsRole")
    assert full_stack["outputs"]["BatchOperationsRoleArn"].endswith("/" + role)
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "batchoperations.s3.amazonaws.com"}
    perms = allowed(role_statements(iam, role))
    assert perms["lambda:InvokeFunction"] == {full_stack["outputs"]["BackfillFunctionArn"]}
    assert perms["s3:GetObject"] == {"arn:aws:s3:::fanout-batch/*"}
    assert perms["s3:PutObject"] == {"arn:aws:s3:::fanout-batch/*"}
    assert "BatchOperationsRole" not in minimal_stack["resources"]
    assert "BatchOperationsRoleArn" not in minimal_stack["outputs"]


# --------------------------------------------------------------------------- replication: wiring


def test_eventbridge_rule(aws, full_stack, minimal_stack):
    events = aws("events")
    rule_name = physical(full_stack, "SourceEventsRule")
    rule = events.describe_rule(Name=rule_name)
    assert rule["State"] == "ENABLED"
    # "Object Deleted" carries DeleteObject and lifecycle expirations alike
    # (detail.reason); a reason filter would drop the expirations. Deletes arrive whatever
    # ReplicateDeletes says (a delete may make an older version current), tag changes too,
    # and restores of archived objects, which can be copied only once restored.
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.s3"],
        "detail-type": [
            "Object Created",
            "Object Deleted",
            "Object Tags Added",
            "Object Tags Deleted",
            "Object Restore Completed",
        ],
        "detail": {"bucket": {"name": [SOURCE]}},
    }
    [target] = events.list_targets_by_rule(Rule=rule_name)["Targets"]
    assert target["Arn"] == full_stack["outputs"]["QueueArn"]
    assert target["DeadLetterConfig"] == {"Arn": queue_arn(aws, full_stack, "EventsDeadLetterQueue")}
    assert target["DeadLetterConfig"]["Arn"] != full_stack["outputs"]["DeadLetterQueueArn"]
    assert {k: int(v) for k, v in target["RetryPolicy"].items()} == {
        "MaximumRetryAttempts": 185,
        "MaximumEventAgeInSeconds": 86400,
    }
    assert full_stack["outputs"]["EventsDeadLetterQueueUrl"] == physical(
        full_stack, "EventsDeadLetterQueue"
    )
    assert "SourceEventsRule" not in minimal_stack["resources"]


def test_source_wiring_command(full_stack, minimal_stack, six_stack):
    assert "EventBridgeConfiguration" in full_stack["outputs"]["SourceWiringCommand"]

    # Deletes and tag changes are wired whether deletes propagate or not.
    for stack in (minimal_stack, six_stack):
        command = stack["outputs"]["SourceWiringCommand"]
        assert f"--bucket {SOURCE}" in command
        assert stack["outputs"]["QueueArn"] in command
        configuration = json.loads(command.split("--notification-configuration ", 1)[1].strip("'"))
        assert configuration["QueueConfigurations"][0]["Events"] == [
            "s3:ObjectCreated:*",
            "s3:ObjectRemoved:*",
            "s3:LifecycleExpiration:*",
            "s3:ObjectTagging:*",
            "s3:ObjectRestore:Completed",
        ]


# --------------------------------------------------------------------------- replication: alarms


def alarm_definitions(template: dict) -> dict[str, dict]:
    return {
        k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"
    }


ALARM_ACTIONS = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}


def test_replication_alarm_definitions(translated):
    alarms = alarm_definitions(translated)
    assert set(alarms) == {
        "FailedCopiesAlarm",
        "ReplicationLatencyAlarm",
        "DeadLetterQueueAlarm",
        "EventsDeadLetterQueueAlarm",
        "BackfillDeadLetterQueueAlarm",
        "QueueAgeAlarm",
        "ReplicateErrorsAlarm",
        "BackfillErrorsAlarm",
        "CanaryLagAlarm",
        "CanaryStaleAlarm",
        "CanaryReadFailedAlarm",
        "DriftFoundAlarm",
        "TargetDownAlarm",
    }
    down = alarms["TargetDownAlarm"]["Properties"]
    assert (down["MetricName"], down["Statistic"], down["Threshold"]) == ("TargetDown", "Maximum", 0)
    for alarm_id, alarm in alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == ALARM_ACTIONS
        assert props["ComparisonOperator"] == "GreaterThanThreshold"
        # A canary that stopped reporting is itself alarming.
        expected = "breaching" if alarm_id == "CanaryStaleAlarm" else "notBreaching"
        assert props["TreatMissingData"] == expected, alarm_id
        if props["Namespace"] == "S3Fanout":
            assert props["MetricName"] in {
                "FailedCopies", "ReplicationLatency", "ReplicationLag", "CanaryStale", "CanaryReadFailed",
                "DriftFound", "TargetDown",
            }
            # Aggregate over all targets (the maximum of any target): no dimension.
            assert "Dimensions" not in props, alarm_id
        if alarm_id.startswith("Canary"):
            assert alarm["Condition"] == "CanaryEnabled"

    lag = alarms["CanaryLagAlarm"]["Properties"]
    assert (lag["MetricName"], lag["Statistic"]) == ("ReplicationLag", "Maximum")
    assert lag["Threshold"] == {"Ref": "ReplicationLatencyAlarmMs"}
    for alarm_id, metric in (("CanaryStaleAlarm", "CanaryStale"), ("CanaryReadFailedAlarm", "CanaryReadFailed")):
        props = alarms[alarm_id]["Properties"]
        assert (props["MetricName"], props["Statistic"], props["Threshold"]) == (metric, "Maximum", 0)

    # Aggregate over all targets: no dimension.
    failed = alarms["FailedCopiesAlarm"]["Properties"]
    assert (failed["Namespace"], failed["MetricName"]) == ("S3Fanout", "FailedCopies")
    assert "Dimensions" not in failed
    assert (failed["Statistic"], failed["Threshold"]) == ("Sum", 0)

    latency = alarms["ReplicationLatencyAlarm"]["Properties"]
    assert (latency["Namespace"], latency["MetricName"]) == ("S3Fanout", "ReplicationLatency")
    assert "Dimensions" not in latency
    assert latency["Statistic"] == "Maximum"
    assert latency["Threshold"] == {"Ref": "ReplicationLatencyAlarmMs"}
    assert translated["Parameters"]["ReplicationLatencyAlarmMs"]["Default"] == 900000

    for alarm_id, queue in (
        ("DeadLetterQueueAlarm", "DeadLetterQueue"),
        ("EventsDeadLetterQueueAlarm", "EventsDeadLetterQueue"),
        ("BackfillDeadLetterQueueAlarm", "BackfillDeadLetterQueue"),
    ):
        props = alarms[alarm_id]["Properties"]
        assert (props["Namespace"], props["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
        assert (props["Statistic"], props["Threshold"]) == ("Maximum", 0)
    assert alarms["EventsDeadLetterQueueAlarm"]["Condition"] == "UseEventBridge"

    age = alarms["QueueAgeAlarm"]["Properties"]
    assert age["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert age["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["ReplicationQueue", "QueueName"]}}]
    assert age["Threshold"] == {"Ref": "OldestMessageAgeAlarmSeconds"}
    # Once per run, a day apart: the alarm stays up until the next run; any drift fires it.
    drift = alarms["DriftFoundAlarm"]["Properties"]
    assert (drift["Namespace"], drift["MetricName"], drift["Statistic"]) == ("S3Fanout", "DriftFound", "Sum")
    assert (drift["Period"], drift["EvaluationPeriods"]) == (86400, 1)
    assert drift["Threshold"] == 0
    assert "Condition" not in alarms["DriftFoundAlarm"], "any backfill run reports drift"

    errors = alarms["ReplicateErrorsAlarm"]["Properties"]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")


def test_replication_alarms_deployed(aws, full_stack):
    if not moto_supports("AWS::CloudWatch::Alarm"):
        pytest.skip(f"{MOTO} does not implement AWS::CloudWatch::Alarm in CloudFormation; alarms checked in the template only")
    alarms = {a["AlarmName"]: a for a in aws("cloudwatch").describe_alarms()["MetricAlarms"]}
    assert alarms["fanout-full-replication-latency"]["Threshold"] == 300000
    assert alarms["fanout-full-failed-copies"]["Dimensions"] == []
    drift = alarms["fanout-full-drift-found"]
    assert (drift["MetricName"], drift["Threshold"], drift["Period"]) == ("DriftFound", 0, 86400)


# --------------------------------------------------------------------------- replication: dashboard


def dashboard(aws, stack: dict) -> dict:
    name = stack["outputs"]["DashboardName"]
    assert name == f"{stack['name']}-{REGION}"
    return json.loads(aws("cloudwatch").get_dashboard(DashboardName=name)["DashboardBody"])


def widget_metrics(body: dict) -> list:
    return [m for w in body["widgets"] if w["type"] == "metric" for m in w["properties"]["metrics"]]


def test_dashboard(aws, translated, full_stack, minimal_stack):
    body = dashboard(aws, full_stack)
    metrics = widget_metrics(body)
    expressions = " ".join(m[0]["expression"] for m in metrics if isinstance(m[0], dict))
    for name in (
        "ReplicatedObjects", "FailedCopies", "DeferredCopies", "ReplicationLatency", "BytesReplicated",
        "ReplicationLag", "CanaryStale", "CanaryReadFailed",
    ):
        assert f"SEARCH('{{S3Fanout,TargetBucket}} MetricName=\"{name}\"'" in expressions, name

    for name in ("DriftFound", "DriftRepaired", "BackfillFailed"):
        assert f'MetricName="{name}"' in expressions, name
    plain = [m for m in metrics if isinstance(m[0], str)]
    queues = {
        tuple(m[1:4])
        for m in plain
        if m[0] == "AWS/SQS"
    }
    name_of = lambda logical_id: physical(full_stack, logical_id).rsplit("/", 1)[1]  # noqa: E731
    assert ("ApproximateNumberOfMessagesVisible", "QueueName", name_of("ReplicationQueue")) in queues
    assert ("ApproximateAgeOfOldestMessage", "QueueName", name_of("ReplicationQueue")) in queues
    for dlq in ("DeadLetterQueue", "BackfillDeadLetterQueue", "EventsDeadLetterQueue"):
        assert ("ApproximateNumberOfMessagesVisible", "QueueName", name_of(dlq)) in queues, dlq
    lambda_metrics = {(m[1], m[3]) for m in plain if m[0] == "AWS/Lambda"}
    for function in ("fanout-full-replicate", "fanout-full-backfill"):
        for metric in ("Errors", "Duration", "Throttles"):
            assert (metric, function) in lambda_metrics

    thresholds = {
        w["properties"]["title"]: w["properties"]["annotations"]["horizontal"][0]["value"]
        for w in body["widgets"]
        if "annotations" in w.get("properties", {})
    }
    assert thresholds["Replication latency per target (p99, ms)"] == 300000
    assert thresholds["Age of the oldest message (s)"] == 900
    assert thresholds["Function duration (ms)"] == 300000
    assert thresholds["Replication lag per target, measured by the canary (ms)"] == 300000

    # The alarm widget lists exactly the stack's alarms.
    [alarm_widget] = [w for w in body["widgets"] if w["type"] == "alarm"]
    prefix = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:"
    names = {
        alarm["Properties"]["AlarmName"]["Fn::Sub"].replace("${AWS::StackName}", "fanout-full")
        for alarm in alarm_definitions(translated).values()
    }
    assert set(alarm_widget["properties"]["alarms"]) == {prefix + n for n in names}

    # Without EventBridge wiring there is no EventBridge dead-letter queue to show.
    body = dashboard(aws, minimal_stack)
    labels = [m[-1].get("label") for m in widget_metrics(body) if isinstance(m[0], str)]
    assert "EventBridge" not in labels and "replication" in labels
    [alarm_widget] = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert not any(a.endswith("-events-dlq") for a in alarm_widget["properties"]["alarms"])
    assert len(alarm_widget["properties"]["alarms"]) == len(names) - 1


# --------------------------------------------------------------------------- replication: canary


def test_canary_function(aws, translated, full_stack, minimal_stack, six_stack):
    """Every minute, with the stack's source and targets, and its stale threshold the latency
    alarm's; not deployed when disabled."""
    lam = aws("lambda")
    for stack, stale_ms in ((full_stack, "300000"), (minimal_stack, "900000")):
        name = f"{stack['name']}-canary"
        assert stack["outputs"]["CanaryFunctionName"] == name
        cfg = lam.get_function_configuration(FunctionName=name)
        assert (cfg["Runtime"], cfg["Handler"], cfg["Timeout"]) == ("provided.al2023", "bootstrap", 60)
        assert cfg["Role"].endswith("/" + physical(stack, "CanaryRole"))
        env = environment(lam, name)
        assert env["CANARY_STALE_AFTER_MS"] == stale_ms
        assert env["CANARY_WAIT_MS"] == "40000"
        assert env["SOURCE_BUCKETS"] == SOURCE
        assert env["REPLICA_TARGETS"] == environment(lam, f"{stack['name']}-replicate")["REPLICA_TARGETS"]
    # The canary's wait fits in its timeout with room for the read-back.
    props = translated["Resources"]["CanaryFunction"]["Properties"]
    assert int(props["Environment"]["Variables"]["CANARY_WAIT_MS"]) <= (props["Timeout"] - 15) * 1000
    [schedule] = [
        r for r in translated["Resources"].values()
        if r["Type"] == "AWS::Events::Rule" and r.get("Condition") == "CanaryEnabled"
    ]
    assert schedule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert schedule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["CanaryFunction", "Arn"]}
    if moto_supports("AWS::Events::Rule"):
        rules = aws("events").list_rule_names_by_target(
            TargetArn=lam.get_function_configuration(FunctionName="fanout-full-canary")["FunctionArn"]
        )["RuleNames"]
        assert len(rules) == 1

    assert not any(r.startswith("Canary") for r in six_stack["resources"]), "disabled"
    assert "CanaryFunctionName" not in six_stack["outputs"]
    six = dashboard(aws, six_stack)
    [alarm_widget] = [w for w in six["widgets"] if w["type"] == "alarm"]
    assert not any("-canary-" in a for a in alarm_widget["properties"]["alarms"])


def test_iam_canary_role(aws, full_stack, minimal_stack):
    """Its own objects in the source only; read access to the canary objects of each target
    (under any target prefix), and listing there so that a missing object is a 404."""
    for stack, targets in ((full_stack, [TARGET_EU, TARGET_LOCAL, TARGET_AP]), (minimal_stack, [TARGET_EU])):
        statements = role_statements(aws("iam"), physical(stack, "CanaryRole"))
        perms = allowed(statements)
        source_canaries = {f"arn:aws:s3:::{SOURCE}/_s3fanout-canary/*"}
        assert perms["s3:PutObject"] == source_canaries
        assert perms["s3:DeleteObject"] == source_canaries
        assert perms["s3:GetObject"] == {f"arn:aws:s3:::{b}/*_s3fanout-canary/*" for b in targets}
        assert perms["s3:ListBucket"] == bucket_arns([SOURCE, *targets])
        [list_source] = [
            s for s in statements
            if s.get("Sid") == "ListSourceCanaries" or as_list(s["Resource"]) == [f"arn:aws:s3:::{SOURCE}"]
        ]
        assert list_source["Condition"] == {"StringLike": {"s3:prefix": "_s3fanout-canary/*"}}
        assert {a for a in perms if a.startswith("s3:")} == {
            "s3:PutObject", "s3:DeleteObject", "s3:GetObject", "s3:ListBucket",
        }
    full = role_perms(aws, full_stack, "CanaryRole")
    assert full["kms:GenerateDataKey"] == set(SOURCE_KEYS)
    assert full["kms:Decrypt"] == set(SOURCE_KEYS) | {TARGET_LOCAL_KEY, TARGET_AP_BUCKET_KEY}
    assert not any(a.startswith("kms:") for a in role_perms(aws, minimal_stack, "CanaryRole"))


# --------------------------------------------------------------------------- replica-bucket.yaml


def assert_replica_bucket(s3, name: str, kms_key: str | None) -> None:
    rule = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0]
    sse = rule["ApplyServerSideEncryptionByDefault"]
    if kms_key:
        assert sse == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key}
    else:
        assert sse == {"SSEAlgorithm": "AES256"}
    assert "Status" not in s3.get_bucket_versioning(Bucket=name)


def bucket_hardening_in_template(bucket: dict) -> None:
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert "VersioningConfiguration" not in props
    rule = props["LifecycleConfiguration"]["Rules"][0]
    assert rule["Status"] == "Enabled" and "AbortIncompleteMultipartUpload" in rule
    assert bucket["DeletionPolicy"] == "Retain"


def assert_bucket_hardening_deployed(s3, name: str) -> None:
    """Public access block, ownership controls and lifecycle of a deployed bucket."""
    try:
        pab = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    except s3.exceptions.ClientError as err:
        if err.response["Error"]["Code"] != "NoSuchPublicAccessBlockConfiguration":
            raise
        pytest.skip(
            f"{MOTO}: AWS::S3::Bucket PublicAccessBlockConfiguration, OwnershipControls and "
            "LifecycleConfiguration are not applied by moto's CloudFormation (only "
            "BucketEncryption and Tags are); checked in the template"
        )
    assert pab == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    ownership = s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"]
    assert ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    assert lifecycle[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7


def assert_tls_only_policy(policy: dict) -> None:
    stmt = policy["Statement"][0]
    assert stmt["Effect"] == "Deny" and stmt["Principal"] == "*"
    assert stmt["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert len(stmt["Resource"]) == 2


RB_KEY = kms_key("eu-west-1", "abcd")


@pytest.fixture(scope="module")
def replica_bucket_stacks(aws) -> dict:
    """infra/replica-bucket.yaml in another region (SSE-S3 and SSE-KMS) and in the
    replication stack's own region: the one definition of a replica bucket."""
    template = load_template("replica-bucket.yaml")
    return {
        "sse-s3": deploy(aws, "replica-eu", template, {"BucketName": "fanout-rb-eu"}, region="eu-west-1"),
        "sse-kms": deploy(
            aws,
            "replica-eu-kms",
            template,
            {"BucketName": "fanout-rb-eu-kms", "KmsKeyArn": RB_KEY},
            region="eu-west-1",
        ),
        "local": deploy(aws, "replica-local", template, {"BucketName": "fanout-rb-local"}),
    }


def test_replication_stack_creates_no_bucket(translated, all_stacks):
    assert not any(r["Type"] == "AWS::S3::Bucket" for r in translated["Resources"].values())
    for stack in all_stacks:
        assert not any(
            r["ResourceType"].startswith("AWS::S3::") for r in stack["resources"].values()
        )


def test_replica_bucket_template(aws, replica_bucket_stacks):
    s3 = aws("s3", "eu-west-1")
    assert s3.get_bucket_location(Bucket="fanout-rb-eu")["LocationConstraint"] == "eu-west-1"
    assert_replica_bucket(s3, "fanout-rb-eu", kms_key=None)
    assert_replica_bucket(s3, "fanout-rb-eu-kms", kms_key=RB_KEY)
    assert_replica_bucket(aws("s3"), "fanout-rb-local", kms_key=None)
    outputs = {k: v["outputs"] for k, v in replica_bucket_stacks.items()}
    assert outputs["sse-s3"]["TargetSpec"] == "fanout-rb-eu@eu-west-1"
    assert outputs["local"]["TargetSpec"] == f"fanout-rb-local@{REGION}"
    assert outputs["sse-kms"]["BucketArn"] == "arn:aws:s3:::fanout-rb-eu-kms"
    assert outputs["sse-kms"]["KmsKeyArn"] == RB_KEY
    assert "KmsKeyArn" not in outputs["sse-s3"]


def test_replica_bucket_template_policy(aws, replica_bucket_stacks):
    template = load_template("replica-bucket.yaml")
    assert_tls_only_policy(template["Resources"]["ReplicaBucketPolicy"]["Properties"]["PolicyDocument"])
    if not moto_supports("AWS::S3::BucketPolicy"):
        pytest.skip(f"{MOTO} does not implement AWS::S3::BucketPolicy in CloudFormation; TLS-only policy checked in the template only")
    s3 = aws("s3", "eu-west-1")
    assert_tls_only_policy(json.loads(s3.get_bucket_policy(Bucket="fanout-rb-eu")["Policy"]))


def test_replica_bucket_hardening(aws, replica_bucket_stacks):
    bucket_hardening_in_template(load_template("replica-bucket.yaml")["Resources"]["ReplicaBucket"])
    assert_bucket_hardening_deployed(aws("s3", "eu-west-1"), "fanout-rb-eu")
    assert_bucket_hardening_deployed(aws("s3"), "fanout-rb-local")


# --------------------------------------------------------------------------- replication: reconciliation


def schedule_input(props: dict, deletes: str, summary_bucket: str, chains: str = "1") -> dict:
    """The payload the schedule sends, as EventBridge Scheduler fills it in."""
    template, variables = props["Target"]["Input"]["Fn::Sub"]
    assert variables == {"SummaryBucket": {"Fn::Select": [0, {"Ref": "TargetBuckets"}]}}
    text = (template.replace("${ReplicateDeletes}", deletes).replace("${SummaryBucket}", summary_bucket)
            .replace("${ReconcileChains}", chains))
    return json.loads(text.replace("<aws.scheduler.scheduled-time>", "2026-05-01T03:00:00Z"))


def test_reconcile_schedule(aws, translated, full_stack, minimal_stack, six_stack):
    """On by default, daily; a sync of every target that continues itself, deletes as live
    replication does, writes its summary to the first target and is named by its scheduled
    time; retried, then dead-lettered; absent when off."""
    param = translated["Parameters"]["ReconcileSchedule"]
    assert param["Default"] == "rate(1 day)"
    pattern = re.compile(param["AllowedPattern"])
    for good in ("rate(1 day)", "rate(12 hours)", "cron(30 3 * * ? *)", "off"):
        assert pattern.match(good), good
    for bad in ("daily", "rate(1 day", "on", ""):
        assert not pattern.match(bad), bad
    assert translated["Conditions"]["ReconcileEnabled"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ReconcileSchedule"}, "off"]}]}

    schedule = translated["Resources"]["ReconciliationSchedule"]
    assert (schedule["Type"], schedule["Condition"]) == ("AWS::Scheduler::Schedule", "ReconcileEnabled")
    props = schedule["Properties"]
    assert props["ScheduleExpression"] == {"Ref": "ReconcileSchedule"}
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = props["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["BackfillFunction", "Arn"]}
    assert target["RoleArn"] == {"Fn::GetAtt": ["ReconciliationScheduleRole", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["BackfillDeadLetterQueue", "Arn"]}}
    # Scheduler's default retries (185 attempts over 24 hours): a late one keeps its run id.
    assert "RetryPolicy" not in target
    payload = schedule_input(props, "true", TARGET_EU)
    assert payload == {
        "auto_continue": True, "chains": 1, "delete": True,
        "run_id": "reconcile-2026-05-01T03:00:00Z",
        "summary_to": f"s3://{TARGET_EU}/.s3fanout/reconcile/",
    }
    assert schedule_input(props, "false", TARGET_EU)["delete"] is False
    # Split at the top-level prefixes, within the backfill function's limit of 64 chains.
    chains = translated["Parameters"]["ReconcileChains"]
    assert (chains["Type"], chains["Default"], chains["MinValue"], chains["MaxValue"]) == ("Number", 1, 1, 64)
    assert schedule_input(props, "true", TARGET_EU, "16")["chains"] == 16
    assert not {"mode", "targets", "source_bucket"} & set(payload), "a sync of every target of the one source"

    for stack in (full_stack, minimal_stack):
        assert "ReconciliationScheduleRole" in stack["resources"]
    assert not any(r.startswith("ReconciliationSchedule") for r in six_stack["resources"]), "off"

    if not moto_supports("AWS::Scheduler::Schedule"):
        pytest.skip(f"{MOTO} does not implement AWS::Scheduler::Schedule in CloudFormation; schedule checked in the template only")
    scheduler = aws("scheduler")
    for stack, expression, deletes, chains in ((full_stack, "rate(1 day)", True, 1),
                                               (minimal_stack, "cron(30 3 * * ? *)", False, 16)):
        deployed = scheduler.get_schedule(Name=physical(stack, "ReconciliationSchedule"))
        assert deployed["ScheduleExpression"] == expression
        assert deployed["Target"]["Arn"] == stack["outputs"]["BackfillFunctionArn"]
        sent = json.loads(deployed["Target"]["Input"].replace("<aws.scheduler.scheduled-time>", "T"))
        assert (sent["delete"], sent["summary_to"]) == (deletes, f"s3://{TARGET_EU}/.s3fanout/reconcile/")
        assert sent["chains"] == chains


def test_iam_reconcile_schedule_role(aws, full_stack, minimal_stack):
    """The schedule invokes the backfill function and dead-letters to its queue: nothing else."""
    iam = aws("iam")
    for stack in (full_stack, minimal_stack):
        role = physical(stack, "ReconciliationScheduleRole")
        trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
        if isinstance(trust, str):
            trust = parse_policy_document(unquote(trust))
        assert trust["Statement"][0]["Principal"] == {"Service": "scheduler.amazonaws.com"}
        assert trust["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}
        statements = role_statements(iam, role)
        assert_least_privilege(statements)
        assert allowed(statements) == {
            "lambda:InvokeFunction": {stack["outputs"]["BackfillFunctionArn"]},
            "sqs:SendMessage": {stack["outputs"]["BackfillDeadLetterQueueArn"]},
        }
