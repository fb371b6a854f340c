"""Deploy the infra/ templates into moto's CloudFormation and check what they create.

moto does not run the SAM transform, so infra/replication.yaml is translated to
plain CloudFormation with samtranslator first (CodeUri rewritten to a placeholder
zip in a moto bucket). Where moto's CloudFormation does not create a resource
type or drops a property, the test checks the template instead and says so
with an explicit skip (see ``moto_gap``); everything moto does implement is
asserted on the deployed resources.
"""

from __future__ import annotations

import ast
import json
import os
from urllib.parse import unquote

import moto
import pytest
from moto.cloudformation.parsing import resource_class_from_type
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from conftest import ACCOUNT_ID, INFRA, REGION

MOTO = f"moto {moto.__version__}"

SOURCE = "fanout-source"
TARGET_EU = "fanout-replica-eu"
TARGET_LOCAL = "fanout-replica-local"
TARGET_LOCAL_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


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
        for resource in resources:
            if any(a.startswith("s3:") for a in actions):
                assert resource.startswith("arn:aws:s3:::"), resource
                bucket = resource[len("arn:aws:s3:::"):].split("/")[0]
                assert bucket and "*" not in bucket, resource


# --------------------------------------------------------------------------- stacks


@pytest.fixture(scope="module")
def translated(code_object) -> dict:
    return sam_to_cloudformation(*code_object)


@pytest.fixture(scope="module")
def full_stack(aws, translated) -> dict:
    """EventBridge wiring, two targets (one in this region, created here), deletes, KMS, alarms."""
    return deploy(
        aws,
        "fanout-full",
        translated,
        {
            "SourceBucketName": SOURCE,
            "SourceWiring": "EventBridge",
            "Target1Bucket": TARGET_EU,
            "Target1Region": "eu-west-1",
            "Target1StorageClass": "STANDARD_IA",
            "Target2Bucket": TARGET_LOCAL,
            "Target2Region": REGION,
            "Target2KmsKeyArn": TARGET_LOCAL_KEY,
            "ReplicateDeletes": "true",
            "CreateReplicaBuckets": "true",
            "ReservedConcurrency": "5",
            "AlarmTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:fanout-alarms",
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
            "Target1Bucket": TARGET_EU,
            "Target1Region": "eu-west-1",
            "FunctionTimeout": "900",
        },
    )


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


def test_queues_encrypted(aws, full_stack):
    sqs = aws("sqs")
    attrs = sqs.get_queue_attributes(
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


# --------------------------------------------------------------------------- replication: Lambda


def test_functions(aws, full_stack, minimal_stack):
    lam = aws("lambda")
    for stack in (full_stack, minimal_stack):
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


def environment(lam, function_name: str) -> dict[str, str]:
    # moto keeps Number parameters as numbers where CloudFormation passes strings.
    env = lam.get_function_configuration(FunctionName=function_name)["Environment"]["Variables"]
    return {k: str(v) for k, v in env.items()}


def test_function_environment(aws, full_stack, minimal_stack):
    lam = aws("lambda")
    env = environment(lam, "fanout-full-replicate")
    assert env == {
        "SOURCE_BUCKETS": SOURCE,
        "REPLICA_TARGETS": (
            f"{TARGET_EU}@eu-west-1?storage_class=STANDARD_IA,"
            f"{TARGET_LOCAL}@{REGION}?kms_key_id=arn%3Aaws%3Akms%3A{REGION}%3A{ACCOUNT_ID}"
            "%3Akey%2F1234abcd-12ab-34cd-56ef-1234567890ab"
        ),
        "REPLICATE_DELETES": "true",
        "COPY_CONCURRENCY": "32",
    }
    assert environment(lam, "fanout-full-backfill") == env

    env = environment(lam, "fanout-min-replicate")
    assert env == {
        "SOURCE_BUCKETS": SOURCE,
        "REPLICA_TARGETS": f"{TARGET_EU}@eu-west-1",
        "REPLICATE_DELETES": "false",
        "COPY_CONCURRENCY": "32",
    }


def test_event_source_mapping(aws, full_stack, minimal_stack):
    lam = aws("lambda")
    for stack in (full_stack, minimal_stack):
        mappings = lam.list_event_source_mappings(FunctionName=f"{stack['name']}-replicate")[
            "EventSourceMappings"
        ]
        assert len(mappings) == 1
        esm = mappings[0]
        assert esm["EventSourceArn"] == stack["outputs"]["QueueArn"]
        assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert esm["BatchSize"] == 10
        assert esm["MaximumBatchingWindowInSeconds"] == 1
        assert not lam.list_event_source_mappings(FunctionName=f"{stack['name']}-backfill")[
            "EventSourceMappings"
        ]


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
        5,
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


def test_log_groups(aws, full_stack):
    logs = aws("logs")
    for suffix in ("replicate", "backfill"):
        name = f"/aws/lambda/fanout-full-{suffix}"
        groups = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
        assert [g["logGroupName"] for g in groups] == [name]
        assert groups[0]["retentionInDays"] == 30


# --------------------------------------------------------------------------- replication: IAM


def test_iam_least_privilege(aws, full_stack, minimal_stack):
    iam = aws("iam")
    for stack in (full_stack, minimal_stack):
        for logical_id, res in stack["resources"].items():
            if res["ResourceType"] == "AWS::IAM::Role":
                stmts = role_statements(iam, res["PhysicalResourceId"])
                assert stmts, logical_id
                assert_least_privilege(stmts)


def test_iam_replicate_role_full(aws, full_stack):
    iam = aws("iam")
    role = physical(full_stack, "ReplicateRole")
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    perms = allowed(role_statements(iam, role))

    src, eu, local = (f"arn:aws:s3:::{b}" for b in (SOURCE, TARGET_EU, TARGET_LOCAL))
    assert perms["s3:ListBucket"] == {src, eu, local}
    assert perms["s3:GetObject"] == {f"{src}/*", f"{eu}/*", f"{local}/*"}
    assert perms["s3:GetObjectTagging"] == {f"{src}/*", f"{eu}/*", f"{local}/*"}
    for action in (
        "s3:PutObject",
        "s3:PutObjectTagging",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    ):
        assert perms[action] == {f"{eu}/*", f"{local}/*"}, action
    for action in ("kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"):
        assert perms[action] == {TARGET_LOCAL_KEY}, action
    queue_arn = full_stack["outputs"]["QueueArn"]
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert perms[action] == {queue_arn}
    assert "lambda:InvokeFunction" not in perms
    assert perms["logs:PutLogEvents"] == {
        f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/aws/lambda/fanout-full-replicate:*"
    }


def test_iam_backfill_role(aws, full_stack):
    iam = aws("iam")
    perms = allowed(role_statements(iam, physical(full_stack, "BackfillRole")))
    own_arn = aws("lambda").get_function(FunctionName="fanout-full-backfill")["Configuration"][
        "FunctionArn"
    ]
    assert perms["lambda:InvokeFunction"] == {own_arn}
    assert perms["sqs:SendMessage"] == {full_stack["outputs"]["BackfillDeadLetterQueueArn"]}
    assert perms["s3:ListBucket"] == {f"arn:aws:s3:::{b}" for b in (SOURCE, TARGET_EU, TARGET_LOCAL)}
    assert f"arn:aws:s3:::{TARGET_EU}/*" in perms["s3:ListMultipartUploadParts"]
    assert not any(a.startswith("sqs:Receive") for a in perms)


def test_iam_minimal_has_no_optional_grants(aws, minimal_stack):
    iam = aws("iam")
    for role in ("ReplicateRole", "BackfillRole"):
        perms = allowed(role_statements(iam, physical(minimal_stack, role)))
        assert "s3:DeleteObject" not in perms
        assert not any(a.startswith("kms:") for a in perms)
        assert perms["s3:PutObject"] == {f"arn:aws:s3:::{TARGET_EU}/*"}
    assert "BatchOperationsRole" not in minimal_stack["resources"]
    assert "BatchOperationsRoleArn" not in minimal_stack["outputs"]


def test_iam_batch_operations_role(aws, full_stack):
    iam = aws("iam")
    role = physical(full_stack, "BatchOperationsRole")
    assert full_stack["outputs"]["BatchOperationsRoleArn"].endswith("/" + role)
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "batchoperations.s3.amazonaws.com"}
    perms = allowed(role_statements(iam, role))
    assert perms["lambda:InvokeFunction"] == {full_stack["outputs"]["BackfillFunctionArn"]}
    assert perms["s3:GetObject"] == {"arn:aws:s3:::fanout-batch/*"}
    assert perms["s3:PutObject"] == {"arn:aws:s3:::fanout-batch/*"}


# --------------------------------------------------------------------------- replication: wiring


def test_eventbridge_rule(aws, full_stack, minimal_stack):
    events = aws("events")
    rule_name = physical(full_stack, "SourceEventsRule")
    rule = events.describe_rule(Name=rule_name)
    assert rule["State"] == "ENABLED"
    pattern = json.loads(rule["EventPattern"])
    assert pattern == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created", "Object Deleted"],
        "detail": {"bucket": {"name": [SOURCE]}},
    }
    targets = events.list_targets_by_rule(Rule=rule_name)["Targets"]
    assert [t["Arn"] for t in targets] == [full_stack["outputs"]["QueueArn"]]
    assert "EventBridgeConfiguration" in full_stack["outputs"]["SourceWiringCommand"]

    assert "SourceEventsRule" not in minimal_stack["resources"]
    command = minimal_stack["outputs"]["SourceWiringCommand"]
    assert f"--bucket {SOURCE}" in command
    assert minimal_stack["outputs"]["QueueArn"] in command
    assert '"s3:ObjectCreated:*"' in command and "ObjectRemoved" not in command


# --------------------------------------------------------------------------- replication: buckets


def test_replica_bucket_in_stack_region(aws, full_stack, minimal_stack):
    s3 = aws("s3")
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert TARGET_LOCAL in names  # same region as the stack: created
    assert TARGET_EU not in names  # other region: infra/replica-bucket.yaml
    assert "ReplicaBucket1" not in full_stack["resources"]
    assert not any(k.startswith("ReplicaBucket") for k in minimal_stack["resources"])
    assert_replica_bucket(s3, TARGET_LOCAL, kms_key=TARGET_LOCAL_KEY)


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


def test_replica_bucket_policy_in_template(translated):
    for i in range(1, 5):
        res = translated["Resources"][f"ReplicaBucket{i}Policy"]
        assert res["Condition"] == f"CreateReplica{i}"
        assert_tls_only_policy(res["Properties"]["PolicyDocument"])
        assert translated["Resources"][f"ReplicaBucket{i}"]["DeletionPolicy"] == "Retain"
    if not moto_supports("AWS::S3::BucketPolicy"):
        pytest.skip(f"{MOTO} does not implement AWS::S3::BucketPolicy in CloudFormation; TLS-only policy checked in the template only")


# --------------------------------------------------------------------------- replication: alarms


def alarm_definitions(template: dict) -> dict[str, dict]:
    return {
        k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"
    }


def test_replication_alarm_definitions(translated):
    alarms = alarm_definitions(translated)
    assert set(alarms) == {
        "DeadLetterQueueAlarm",
        "BackfillDeadLetterQueueAlarm",
        "QueueAgeAlarm",
        "ReplicateErrorsAlarm",
        "BackfillErrorsAlarm",
        "FailedCopiesTarget1Alarm",
        "FailedCopiesTarget2Alarm",
        "FailedCopiesTarget3Alarm",
        "FailedCopiesTarget4Alarm",
    }
    dlq = alarms["DeadLetterQueueAlarm"]["Properties"]
    assert (dlq["Namespace"], dlq["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    age = alarms["QueueAgeAlarm"]["Properties"]
    assert age["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert age["Threshold"] == {"Ref": "OldestMessageAgeAlarmSeconds"}
    errors = alarms["ReplicateErrorsAlarm"]["Properties"]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    for i in range(1, 5):
        alarm = alarms[f"FailedCopiesTarget{i}Alarm"]
        props = alarm["Properties"]
        assert (props["Namespace"], props["MetricName"]) == ("S3Fanout", "FailedCopies")
        assert props["Dimensions"] == [{"Name": "TargetBucket", "Value": {"Ref": f"Target{i}Bucket"}}]
        assert alarm.get("Condition") == (None if i == 1 else f"HasTarget{i}")
        assert props["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }


def test_replication_alarms_deployed(aws, full_stack):
    if not moto_supports("AWS::CloudWatch::Alarm"):
        pytest.skip(f"{MOTO} does not implement AWS::CloudWatch::Alarm in CloudFormation; alarms checked in the template only")
    alarms = aws("cloudwatch").describe_alarms()["MetricAlarms"]
    failed = [a for a in alarms if a["MetricName"] == "FailedCopies"]
    assert {a["Dimensions"][0]["Value"] for a in failed} >= {TARGET_EU, TARGET_LOCAL}


# --------------------------------------------------------------------------- replica-bucket.yaml


@pytest.fixture(scope="module")
def replica_bucket_stacks(aws) -> dict:
    """infra/replica-bucket.yaml deployed in another region, with SSE-S3 and with SSE-KMS."""
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
    }


RB_KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT_ID}:key/abcd"


def test_replica_bucket_template(aws, replica_bucket_stacks):
    s3 = aws("s3", "eu-west-1")
    assert s3.get_bucket_location(Bucket="fanout-rb-eu")["LocationConstraint"] == "eu-west-1"
    assert_replica_bucket(s3, "fanout-rb-eu", kms_key=None)
    assert_replica_bucket(s3, "fanout-rb-eu-kms", kms_key=RB_KEY)
    assert replica_bucket_stacks["sse-s3"]["outputs"]["TargetSpec"] == "fanout-rb-eu@eu-west-1"
    assert replica_bucket_stacks["sse-kms"]["outputs"]["BucketArn"] == "arn:aws:s3:::fanout-rb-eu-kms"


def test_replica_bucket_template_policy(aws, replica_bucket_stacks):
    template = load_template("replica-bucket.yaml")
    assert_tls_only_policy(template["Resources"]["ReplicaBucketPolicy"]["Properties"]["PolicyDocument"])
    if not moto_supports("AWS::S3::BucketPolicy"):
        pytest.skip(f"{MOTO} does not implement AWS::S3::BucketPolicy in CloudFormation; TLS-only policy checked in the template only")
    s3 = aws("s3", "eu-west-1")
    assert_tls_only_policy(json.loads(s3.get_bucket_policy(Bucket="fanout-rb-eu")["Policy"]))


def test_replica_bucket_hardening(aws, translated, full_stack, replica_bucket_stacks):
    for i in range(1, 5):
        bucket_hardening_in_template(translated["Resources"][f"ReplicaBucket{i}"])
    bucket_hardening_in_template(load_template("replica-bucket.yaml")["Resources"]["ReplicaBucket"])
    assert_bucket_hardening_deployed(aws("s3"), TARGET_LOCAL)
    assert_bucket_hardening_deployed(aws("s3", "eu-west-1"), "fanout-rb-eu")
