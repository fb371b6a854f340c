"""Deploy infra/failover.yaml into moto's CloudFormation and check what it creates.

Where moto's CloudFormation does not create a resource type or drops a
property, the test checks the template instead and says so with an explicit
skip (see ``moto_gap``).
"""

from __future__ import annotations

import json

import moto
import pytest
from moto.cloudformation.parsing import resource_class_from_type
from samtranslator.yaml_helper import yaml_parse

from conftest import ACCOUNT_ID, INFRA, REGION

MOTO = f"moto {moto.__version__}"


# --------------------------------------------------------------------------- helpers


def load_template(name: str) -> dict:
    return yaml_parse((INFRA / name).read_text())


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


def alarm_definitions(template: dict) -> dict[str, dict]:
    return {
        k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"
    }


# --------------------------------------------------------------------------- failover.yaml


@pytest.fixture(scope="module")
def hosted_zone(aws) -> str:
    zone = aws("route53").create_hosted_zone(Name="example.com", CallerReference="s3fanout-test")
    return zone["HostedZone"]["Id"].split("/")[-1]


def records(aws, zone_id: str) -> dict[tuple[str, str], dict]:
    rrsets = aws("route53").list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return {
        (r["Name"].rstrip("."), r["SetIdentifier"]): r
        for r in rrsets
        if r["Type"] == "CNAME" and "SetIdentifier" in r
    }


def health_check(aws, hc_id: str) -> dict:
    return aws("route53").get_health_check(HealthCheckId=hc_id)["HealthCheck"]["HealthCheckConfig"]


def test_failover_two_replicas(aws, hosted_zone):
    stack = deploy(
        aws,
        "failover-two",
        load_template("failover.yaml"),
        {
            "HostedZoneId": hosted_zone,
            "RecordName": "assets.example.com",
            "Replica1Endpoint": "d111111abcdef8.cloudfront.net",
            "Replica2Endpoint": "d222222abcdef8.cloudfront.net",
        },
    )
    hc1, hc2 = stack["outputs"]["Replica1HealthCheckId"], stack["outputs"]["Replica2HealthCheckId"]
    for hc_id, fqdn in ((hc1, "d111111abcdef8.cloudfront.net"), (hc2, "d222222abcdef8.cloudfront.net")):
        cfg = health_check(aws, hc_id)
        assert cfg["Type"] == "HTTPS"
        assert cfg["FullyQualifiedDomainName"] == fqdn
        assert cfg["Port"] == 443
        assert cfg["ResourcePath"] == "/healthcheck.txt"
        assert cfg["RequestInterval"] == 30
        assert cfg["FailureThreshold"] == 3

    recs = records(aws, hosted_zone)
    primary = recs[("assets.example.com", "replica-1")]
    secondary = recs[("assets.example.com", "standby")]
    assert primary["Failover"] == "PRIMARY" and secondary["Failover"] == "SECONDARY"
    assert primary["HealthCheckId"] == hc1 and secondary["HealthCheckId"] == hc2
    for rec, value in ((primary, "d111111abcdef8.cloudfront.net"), (secondary, "d222222abcdef8.cloudfront.net")):
        assert int(rec["TTL"]) == 60
        assert [r["Value"] for r in rec["ResourceRecords"]] == [value]
    assert not any(name.startswith("failover-") for name, _ in recs)
    assert "Replica3HealthCheckId" not in stack["outputs"]


@pytest.fixture(scope="module")
def failover_four(aws, hosted_zone) -> dict:
    return deploy(
        aws,
        "failover-four",
        load_template("failover.yaml"),
        {
            "HostedZoneId": hosted_zone,
            "RecordName": "files.example.com",
            "ReplicaCount": "4",
            "Replica1Endpoint": "d1.cloudfront.net",
            "Replica1BucketEndpoint": "fanout-replica-1.s3-website-us-east-1.amazonaws.com",
            "Replica2Endpoint": "d2.cloudfront.net",
            "Replica3Endpoint": "d3.cloudfront.net",
            "Replica4Endpoint": "d4.cloudfront.net",
            "AlarmTopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT_ID}:failover",
        },
    )


def test_failover_four_replicas_chain(aws, hosted_zone, failover_four):
    out = failover_four["outputs"]
    recs = records(aws, hosted_zone)
    chain = {
        "files.example.com": ("replica-1", "d1.cloudfront.net", "standby", "failover-2.files.example.com"),
        "failover-2.files.example.com": ("replica-2", "d2.cloudfront.net", "standby", "failover-3.files.example.com"),
        "failover-3.files.example.com": ("replica-3", "d3.cloudfront.net", "replica-4", "d4.cloudfront.net"),
    }
    for name, (p_id, p_value, s_id, s_value) in chain.items():
        primary, secondary = recs[(name, p_id)], recs[(name, s_id)]
        assert (primary["Failover"], secondary["Failover"]) == ("PRIMARY", "SECONDARY")
        assert int(primary["TTL"]) == 60 and int(secondary["TTL"]) == 60
        assert [r["Value"] for r in primary["ResourceRecords"]] == [p_value]
        assert [r["Value"] for r in secondary["ResourceRecords"]] == [s_value]
    assert recs[("files.example.com", "replica-1")]["HealthCheckId"] == out["Replica1HealthCheckId"]
    assert recs[("failover-2.files.example.com", "replica-2")]["HealthCheckId"] == out["Replica2HealthCheckId"]
    assert recs[("failover-3.files.example.com", "replica-4")]["HealthCheckId"] == out["Replica4HealthCheckId"]
    assert recs[("files.example.com", "standby")]["HealthCheckId"] == physical(failover_four, "StandbyHealth2")
    assert recs[("failover-2.files.example.com", "standby")]["HealthCheckId"] == physical(failover_four, "StandbyHealth3")

    # Replica 1 has a bucket endpoint too: its record uses the CALCULATED check.
    assert out["Replica1HealthCheckId"] == physical(failover_four, "Replica1Health")
    assert health_check(aws, out["Replica1HealthCheckId"])["Type"] == "CALCULATED"
    bucket_hc = health_check(aws, physical(failover_four, "Replica1BucketHealthCheck"))
    assert bucket_hc["Type"] == "HTTP" and bucket_hc["Port"] == 80
    assert bucket_hc["FullyQualifiedDomainName"].startswith("fanout-replica-1.s3-website")
    for i in (2, 3, 4):
        assert out[f"Replica{i}HealthCheckId"] == physical(failover_four, f"Replica{i}EndpointHealthCheck")
        assert f"Replica{i}Health" not in failover_four["resources"]


def test_failover_calculated_children(aws, failover_four):
    template = load_template("failover.yaml")
    calc = template["Resources"]["Replica1Health"]["Properties"]["HealthCheckConfig"]
    assert calc["HealthThreshold"] == len(calc["ChildHealthChecks"]) == 2
    standby = template["Resources"]["StandbyHealth2"]["Properties"]["HealthCheckConfig"]
    assert standby["HealthThreshold"] == 1
    cfg = health_check(aws, physical(failover_four, "Replica1Health"))
    expected = sorted(
        physical(failover_four, f"Replica1{kind}HealthCheck") for kind in ("Endpoint", "Bucket")
    )
    moto_gap(
        sorted(cfg.get("ChildHealthChecks") or []),
        expected,
        [],
        "ChildHealthChecks/HealthThreshold of a CALCULATED AWS::Route53::HealthCheck are dropped by moto's CloudFormation; checked in the template",
    )
    assert cfg["HealthThreshold"] == 2


def test_failover_alarms(failover_four):
    template = load_template("failover.yaml")
    alarms = alarm_definitions(template)
    assert set(alarms) == {f"Replica{i}HealthAlarm" for i in range(1, 5)}
    for alarm in alarms.values():
        props = alarm["Properties"]
        assert (props["Namespace"], props["MetricName"]) == ("AWS/Route53", "HealthCheckStatus")
        assert props["ComparisonOperator"] == "LessThanThreshold" and props["Threshold"] == 1
    assert template["Conditions"]["CreateAlarms"]["Fn::And"][1] == {
        "Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]
    }
    if not moto_supports("AWS::CloudWatch::Alarm"):
        pytest.skip(f"{MOTO} does not implement AWS::CloudWatch::Alarm in CloudFormation; alarms checked in the template only")
    assert {f"Replica{i}HealthAlarm" for i in range(1, 5)} <= set(failover_four["resources"])
