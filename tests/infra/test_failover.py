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
#
# Not modelled by moto's CloudFormation (checked in the template only, with an explicit skip):
# CloudFront distributions and origin access control, CloudWatch alarms, the Rules section.
# Not modelled by moto at all: health checkers probing the endpoints and Route 53 answering
# queries by health, so failover itself is asserted as the record chain it follows.


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


def link_name(name: str, i: int) -> str:
    return name if i == 1 else f"failover-{i}.{name}"


def deploy_chain(aws, zone: str, name: str, n: int, extra: dict | None = None) -> list[dict]:
    """One failover.yaml stack per replica, replica i answering link_name(name, i)."""
    stacks = []
    for i in range(1, n + 1):
        params = {
            "HostedZoneId": zone,
            "RecordName": link_name(name, i),
            "NextRecordName": link_name(name, i + 1) if i < n else "",
            "ReplicaEndpoint": f"d{i}.cloudfront.net",
        }
        params.update((extra or {}).get(i, {}))
        stack_name = f"failover-{name.split('.')[0]}-{i}"
        stacks.append(deploy(aws, stack_name, load_template("failover.yaml"), params))
    return stacks


@pytest.fixture(scope="module")
def chain_two(aws, hosted_zone) -> list[dict]:
    return deploy_chain(aws, hosted_zone, "assets.example.com", 2)


@pytest.fixture(scope="module")
def chain_five(aws, hosted_zone) -> list[dict]:
    return deploy_chain(
        aws,
        hosted_zone,
        "files.example.com",
        5,
        {
            1: {"BucketHealthEndpoint": "fanout-replica-1.s3-website-us-east-1.amazonaws.com"},
            2: {"AlarmTopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT_ID}:failover"},
        },
    )


def walk(recs: dict, name: str) -> list[tuple[str, dict]]:
    """Follows the SECONDARY answers from name: the order in which replicas take over."""
    order = []
    seen = set()
    while name not in seen:
        seen.add(name)
        order.append((name, recs[(name, "primary")]))
        nxt = recs.get((name, "next"))
        if nxt is None:
            break
        name = nxt["ResourceRecords"][0]["Value"]
    return order


def test_two_replicas(aws, hosted_zone, chain_two):
    recs = records(aws, hosted_zone)
    first, second = chain_two
    primary = recs[("assets.example.com", "primary")]
    secondary = recs[("assets.example.com", "next")]
    assert (primary["Failover"], secondary["Failover"]) == ("PRIMARY", "SECONDARY")
    assert primary["HealthCheckId"] == first["outputs"]["HealthCheckId"]
    assert [r["Value"] for r in primary["ResourceRecords"]] == ["d1.cloudfront.net"]
    assert [r["Value"] for r in secondary["ResourceRecords"]] == ["failover-2.assets.example.com"]
    assert "HealthCheckId" not in secondary
    last = recs[("failover-2.assets.example.com", "primary")]
    assert last["HealthCheckId"] == second["outputs"]["HealthCheckId"]
    assert ("failover-2.assets.example.com", "next") not in recs
    for rec in (primary, secondary, last):
        assert int(rec["TTL"]) == 60
    for stack, fqdn in ((first, "d1.cloudfront.net"), (second, "d2.cloudfront.net")):
        cfg = health_check(aws, stack["outputs"]["HealthCheckId"])
        assert cfg["Type"] == "HTTPS"
        assert cfg["FullyQualifiedDomainName"] == fqdn
        assert cfg["Port"] == 443
        assert cfg["ResourcePath"] == "/healthcheck.txt"
        assert cfg["RequestInterval"] == 30
        assert cfg["FailureThreshold"] == 3
        assert stack["outputs"]["Endpoint"] == fqdn
        assert "Health" not in stack["resources"] and "BucketHealthCheck" not in stack["resources"]


def test_five_replicas_chain(aws, hosted_zone, chain_five):
    recs = records(aws, hosted_zone)
    order = walk(recs, "files.example.com")
    assert [rec["ResourceRecords"][0]["Value"] for _, rec in order] == [
        f"d{i}.cloudfront.net" for i in range(1, 6)
    ]
    assert [name for name, _ in order] == [link_name("files.example.com", i) for i in range(1, 6)]
    for (name, primary), stack in zip(order, chain_five):
        assert primary["Failover"] == "PRIMARY" and int(primary["TTL"]) == 60
        assert primary["HealthCheckId"] == stack["outputs"]["HealthCheckId"]
        if name != link_name("files.example.com", 5):
            assert recs[(name, "next")]["Failover"] == "SECONDARY"
            assert int(recs[(name, "next")]["TTL"]) == 60
    # Five stacks, five PRIMARY and four SECONDARY records, six health checks (replica 1 has
    # a bucket check too) plus its calculated one.
    assert len([k for k in recs if k[0].endswith("files.example.com")]) == 9
    checks = [r for s in chain_five for r in s["resources"].values() if r["ResourceType"] == "AWS::Route53::HealthCheck"]
    assert len(checks) == 7


def test_calculated_check_needs_endpoint_and_bucket(aws, chain_five):
    first = chain_five[0]
    assert first["outputs"]["HealthCheckId"] == physical(first, "Health")
    assert health_check(aws, physical(first, "Health"))["Type"] == "CALCULATED"
    bucket = health_check(aws, physical(first, "BucketHealthCheck"))
    assert bucket["Type"] == "HTTP" and bucket["Port"] == 80
    assert bucket["FullyQualifiedDomainName"].startswith("fanout-replica-1.s3-website")
    for stack in chain_five[1:]:
        assert stack["outputs"]["HealthCheckId"] == physical(stack, "EndpointHealthCheck")
    template = load_template("failover.yaml")
    calc = template["Resources"]["Health"]["Properties"]["HealthCheckConfig"]
    assert calc["HealthThreshold"] == len(calc["ChildHealthChecks"]) == 2
    cfg = health_check(aws, physical(first, "Health"))
    expected = sorted(physical(first, k) for k in ("EndpointHealthCheck", "BucketHealthCheck"))
    moto_gap(
        sorted(cfg.get("ChildHealthChecks") or []),
        expected,
        [],
        "ChildHealthChecks/HealthThreshold of a CALCULATED AWS::Route53::HealthCheck are dropped by moto's CloudFormation; checked in the template",
    )
    assert cfg["HealthThreshold"] == 2


def test_health_alarm(chain_five):
    template = load_template("failover.yaml")
    alarms = alarm_definitions(template)
    assert set(alarms) == {"HealthAlarm"}
    props = alarms["HealthAlarm"]["Properties"]
    assert (props["Namespace"], props["MetricName"]) == ("AWS/Route53", "HealthCheckStatus")
    assert props["ComparisonOperator"] == "LessThanThreshold" and props["Threshold"] == 1
    assert props["AlarmActions"] == [{"Ref": "AlarmTopicArn"}]
    assert {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]} in template["Conditions"]["CreateAlarm"]["Fn::And"]
    if not moto_supports("AWS::CloudWatch::Alarm"):
        pytest.skip(f"{MOTO} does not implement AWS::CloudWatch::Alarm in CloudFormation; the alarm is checked in the template only")
    assert "HealthAlarm" in chain_five[1]["resources"]


def test_distribution_with_origin_access_control():
    template = load_template("failover.yaml")
    resources = template["Resources"]
    oac = resources["OriginAccessControl"]["Properties"]["OriginAccessControlConfig"]
    assert (oac["OriginAccessControlOriginType"], oac["SigningBehavior"], oac["SigningProtocol"]) == ("s3", "always", "sigv4")
    dist = resources["Distribution"]
    assert dist["Condition"] == "CreateDistribution"
    origin = dist["Properties"]["DistributionConfig"]["Origins"][0]
    assert origin["OriginAccessControlId"]["Fn::If"][1] == {"Fn::GetAtt": ["OriginAccessControl", "Id"]}
    # The website variant has no OAC and speaks HTTP to the website endpoint.
    assert origin["CustomOriginConfig"]["Fn::If"][2]["OriginProtocolPolicy"] == "http-only"
    behaviour = dist["Properties"]["DistributionConfig"]["DefaultCacheBehavior"]
    assert behaviour["ViewerProtocolPolicy"] == "redirect-to-https"
    # The health check and the record follow the distribution when there is one.
    fqdn = resources["EndpointHealthCheck"]["Properties"]["HealthCheckConfig"]["FullyQualifiedDomainName"]
    assert fqdn == {"Fn::If": ["CreateDistribution", {"Fn::GetAtt": ["Distribution", "DomainName"]}, {"Ref": "ReplicaEndpoint"}]}
    assert resources["PrimaryRecord"]["Properties"]["ResourceRecords"] == [fqdn]
    if not moto_supports("AWS::CloudFront::Distribution"):
        pytest.skip(f"{MOTO} does not implement AWS::CloudFront::Distribution or OriginAccessControl in CloudFormation; checked in the template only")


def test_origin_group_alternative():
    template = load_template("failover.yaml")
    dist = template["Resources"]["OriginGroupDistribution"]
    assert dist["Condition"] == "IsOriginGroup"
    config = dist["Properties"]["DistributionConfig"]
    assert [o["Id"] for o in config["Origins"]] == ["primary", "secondary"]
    assert all(o["OriginAccessControlId"] == {"Fn::GetAtt": ["OriginAccessControl", "Id"]} for o in config["Origins"])
    group = config["OriginGroups"]["Items"][0]
    assert [m["OriginId"] for m in group["Members"]["Items"]] == ["primary", "secondary"]
    codes = group["FailoverCriteria"]["StatusCodes"]
    assert set(codes["Items"]) == {500, 502, 503, 504, 403, 404} and codes["Quantity"] == 6
    assert config["DefaultCacheBehavior"]["TargetOriginId"] == group["Id"]
    # Origin-group mode creates no Route 53 resources.
    for name in ("EndpointHealthCheck", "PrimaryRecord"):
        assert template["Resources"][name]["Condition"] == "IsDnsFailover"
    if not moto_supports("AWS::CloudFront::Distribution"):
        pytest.skip(f"{MOTO} does not implement AWS::CloudFront::Distribution in CloudFormation; the origin group is checked in the template only")


# --------------------------------------------------------------------------- read-alarms.yaml


def test_read_alarm_rules(aws):
    template = load_template("read-alarms.yaml")
    alarms = alarm_definitions(template)
    warning = alarms["RegionFailingOnManyHosts"]["Properties"]
    query = warning["Metrics"][0]["Expression"]["Fn::Sub"]
    assert "SUM(ReadRegionFailing)" in query and "SCHEMA(\"${Namespace}\", Region)" in query
    assert query.endswith("GROUP BY Region")
    assert warning["Threshold"] == {"Ref": "HostThreshold"}
    assert template["Parameters"]["HostThreshold"]["Default"] == 3
    assert warning["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    critical = alarms["AllRegionsFailedOnAnyHost"]["Properties"]
    query = critical["Metrics"][0]["Expression"]["Fn::Sub"]
    assert "SUM(ReadAllRegionsFailed)" in query and query.endswith("GROUP BY Host")
    assert (critical["Threshold"], critical["EvaluationPeriods"]) == (1, 1)
    for props in (warning, critical):
        assert props["Metrics"][0]["Period"] == 60
        assert props["TreatMissingData"] == "notBreaching"
    stack = deploy(aws, "read-alarms", template, {"CriticalTopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT_ID}:critical"})
    if not moto_supports("AWS::CloudWatch::Alarm"):
        pytest.skip(f"{MOTO} does not implement AWS::CloudWatch::Alarm in CloudFormation: the stack deploys, the alarms are checked in the template only")
    assert {"RegionFailingOnManyHosts", "AllRegionsFailedOnAnyHost"} <= set(stack["resources"])
