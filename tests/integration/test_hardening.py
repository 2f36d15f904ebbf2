"""Every reproduction of issue #12 (items 2, 5, 6, 8): the service's own 4xx error, and nothing changed.

The requests are signed by botocore and handed to the ASGI application in process
(tests/support/inprocess_api.py) over a real SQLite store; ``changes_nothing`` compares every table
before and after.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskvpc.api.notify import Notifier
from tests.support.inprocess_api import ACCOUNT_ID, InProcessApi

FAMILY = "fam"


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[InProcessApi]:
    instance = InProcessApi(tmp_path)
    yield instance
    instance.close()


def container(**extra: Any) -> dict[str, Any]:
    return {"name": "web", "image": "busybox", "memory": 64, **extra}


def register(api: InProcessApi, family: str = FAMILY, **extra: Any) -> dict[str, Any]:
    status, body = api.ecs(
        "RegisterTaskDefinition", {"family": family, "containerDefinitions": [container()], **extra}
    )
    assert status == 200, body
    definition: dict[str, Any] = body["taskDefinition"]
    return definition


def refused(api: InProcessApi, call: Callable[[], tuple[int, Any]]) -> tuple[int, Any]:
    """Run ``call``; it must answer 4xx and leave every table as it was."""
    before = api.snapshot()
    status, body = call()
    assert 400 <= status < 500, (status, body)
    assert api.snapshot() == before
    return status, body


def ecs_error(api: InProcessApi, operation: str, payload: Any) -> tuple[str, str]:
    status, body = refused(api, lambda: api.ecs(operation, payload))
    assert status == 400
    return body["__type"], body.get("message", "")


def ec2_error(api: InProcessApi, action: str, **params: str) -> tuple[str, str]:
    _status, body = refused(api, lambda: api.ec2(action, **params))
    code = re.search(r"<Code>(.*?)</Code>", body)
    message = re.search(r"<Message>(.*?)</Message>", body, re.S)
    assert code is not None, body
    return code.group(1), message.group(1) if message else ""


def null_at(path: str) -> str:
    return f"1 validation error detected: Value null at '{path}' failed to satisfy constraint: Member must not be null"


# ---- item 2: null list items, validated before anything is written ---------------------------------


@pytest.mark.parametrize(
    ("operation", "payload", "path"),
    [
        (
            "RegisterTaskDefinition",
            {"family": FAMILY, "containerDefinitions": [container(environment=[None])]},
            "containerDefinitions.1.member.environment.1.member",
        ),
        (
            "RegisterTaskDefinition",
            {"family": FAMILY, "containerDefinitions": [container(mountPoints=[None])]},
            "containerDefinitions.1.member.mountPoints.1.member",
        ),
        (
            "RegisterTaskDefinition",
            {"family": FAMILY, "containerDefinitions": [container(ulimits=[None])]},
            "containerDefinitions.1.member.ulimits.1.member",
        ),
        (
            "RegisterTaskDefinition",
            {"family": FAMILY, "containerDefinitions": [container(linuxParameters={"tmpfs": [None]})]},
            "containerDefinitions.1.member.linuxParameters.tmpfs.1.member",
        ),
        (
            "RegisterTaskDefinition",
            {"family": FAMILY, "containerDefinitions": [container()], "placementConstraints": [None]},
            "placementConstraints.1.member",
        ),
        ("CreateCluster", {"clusterName": "c", "tags": [None]}, "tags.1.member"),
        (
            "TagResource",
            {"resourceArn": f"arn:aws:ecs:us-east-1:{ACCOUNT_ID}:cluster/default", "tags": [None]},
            "tags.1.member",
        ),
        (
            "RunTask",
            {
                "taskDefinition": FAMILY,
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": [None]}},
            },
            "networkConfiguration.awsvpcConfiguration.subnets.1.member",
        ),
        (
            "RunTask",
            {
                "taskDefinition": FAMILY,
                "networkConfiguration": {
                    "awsvpcConfiguration": {"subnets": ["subnet-1"], "securityGroups": [None]}
                },
            },
            "networkConfiguration.awsvpcConfiguration.securityGroups.1.member",
        ),
        (
            "RunTask",
            {"taskDefinition": FAMILY, "overrides": {"containerOverrides": [None]}},
            "overrides.containerOverrides.1.member",
        ),
        ("PutAttributes", {"attributes": [None]}, "attributes.1.member"),
        ("DeleteAttributes", {"attributes": [None]}, "attributes.1.member"),
        ("DescribeContainerInstances", {"containerInstances": [None]}, "containerInstances.1.member"),
        ("DescribeTasks", {"tasks": [None]}, "tasks.1.member"),
        ("DeleteTaskDefinitions", {"taskDefinitions": [None]}, "taskDefinitions.1.member"),
    ],
)
def test_null_list_items_are_refused_before_any_write(
    api: InProcessApi, operation: str, payload: dict[str, Any], path: str
) -> None:
    assert ecs_error(api, operation, payload) == ("InvalidParameterException", null_at(path))


def test_a_refused_registration_leaves_the_family_describable(api: InProcessApi) -> None:
    first = register(api)
    bad = {"family": FAMILY, "containerDefinitions": [container(environment=[None])]}
    for _retry in range(3):  # a client retrying on the error makes no revisions
        ecs_error(api, "RegisterTaskDefinition", bad)
    status, body = api.ecs("DescribeTaskDefinition", {"taskDefinition": FAMILY})
    assert status == 200
    assert body["taskDefinition"]["taskDefinitionArn"] == first["taskDefinitionArn"]


# ---- item 2: numbers, digits, sizes -----------------------------------------------------------------


def test_task_memory_of_thousands_of_digits(api: InProcessApi) -> None:
    payload = {"family": FAMILY, "memory": "9" * 5000, "containerDefinitions": [container()]}
    assert ecs_error(api, "RegisterTaskDefinition", payload) == (
        "ClientException",
        "Invalid 'memory' setting for task.",
    )


def test_container_memory_beyond_any_json_integer(api: InProcessApi) -> None:
    body = json.dumps({"family": FAMILY, "containerDefinitions": [container(memory=0)]}).replace(
        '"memory": 0', '"memory": ' + "9" * 5000
    )
    assert ecs_error(api, "RegisterTaskDefinition", body.encode())[0] == "SerializationException"


def test_container_memory_beyond_int32(api: InProcessApi) -> None:
    payload = {"family": FAMILY, "containerDefinitions": [container(memory=2**40)]}
    assert ecs_error(api, "RegisterTaskDefinition", payload) == (
        "InvalidParameterException",
        "1 validation error detected: Value '1099511627776' at 'containerDefinitions.1.member.memory' "
        "failed to satisfy constraint: Member must have value less than or equal to 2147483647",
    )


@pytest.mark.parametrize("revision", ["²", "\u0661", str(2**70), "0", "9" * 5000])  # \u0661: Arabic-Indic one
def test_revisions_that_are_no_number_are_not_found(api: InProcessApi, revision: str) -> None:
    register(api)
    for operation in ("DescribeTaskDefinition", "DeregisterTaskDefinition"):
        assert ecs_error(api, operation, {"taskDefinition": f"{FAMILY}:{revision}"})[0] == "ClientException"
    assert ecs_error(api, "DescribeTaskDefinition", {"taskDefinition": f"{FAMILY}:{revision}"}) == (
        "ClientException",
        "Unable to describe task definition.",
    )


def test_family_prefix_of_60_kb(api: InProcessApi) -> None:
    register(api)
    assert api.ecs("ListTaskDefinitionFamilies", {"familyPrefix": "f" * 60_000}) == (200, {"families": []})
    assert api.ecs("ListTaskDefinitions", {"familyPrefix": "f" * 60_000}) == (200, {"taskDefinitionArns": []})


def test_task_definitions_over_64_kib(api: InProcessApi) -> None:
    environment = [{"name": f"V{i}", "value": "x" * 1000} for i in range(70)]
    payload = {"family": FAMILY, "containerDefinitions": [container(environment=environment)]}
    code, message = ecs_error(api, "RegisterTaskDefinition", payload)
    assert code == "ClientException"
    assert re.fullmatch(r"Actual length: '\d+'\. Max allowed length is '65536' bytes\.", message)


def test_family_with_a_trailing_newline(api: InProcessApi) -> None:
    payload = {"family": "fam\n", "containerDefinitions": [container()]}
    assert ecs_error(api, "RegisterTaskDefinition", payload) == (
        "ClientException",
        "Family contains invalid characters.",
    )


@pytest.mark.parametrize("protocol", ["²", "9" * 5000, "1" * 30])
def test_ip_protocols_that_are_no_number(api: InProcessApi, protocol: str) -> None:
    code, message = ec2_error(
        api, "AuthorizeSecurityGroupIngress", GroupName="default", IpProtocol=protocol, CidrIp="0.0.0.0/0"
    )
    assert code == "InvalidParameterValue"
    assert message == f"Invalid value '{protocol}' for IP protocol. Unknown protocol."


def test_query_integers_and_indexes_of_thousands_of_digits(api: InProcessApi) -> None:
    digits = "9" * 5000
    assert ec2_error(api, "DescribeVpcs", MaxResults=digits) == (
        "InvalidParameterValue",
        f"Invalid value '{digits}' for maxResults.",
    )
    assert ec2_error(api, "DescribeSecurityGroups", **{f"GroupId.{digits}": "sg-12345678"}) == (
        "UnknownParameter",
        f"The parameter {digits} is not recognized",
    )


# ---- item 2: pagination tokens ----------------------------------------------------------------------


def _forged(document: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def test_forged_replayed_and_malformed_tokens(api: InProcessApi) -> None:
    for family in ("a", "b", "c"):
        register(api, family)
    status, page = api.ecs("ListTaskDefinitionFamilies", {"maxResults": 1})
    assert status == 200 and page["nextToken"]
    token = page["nextToken"]
    assert api.ecs("ListTaskDefinitionFamilies", {"maxResults": 1, "nextToken": token})[1]["families"] == [
        "b"
    ]
    bad = ("InvalidParameterException", "Invalid nextToken.")
    for operation, payload in [
        ("ListTaskDefinitions", {"nextToken": token}),  # replayed on another listing
        ("ListTaskDefinitionFamilies", {"nextToken": token, "familyPrefix": "a"}),  # other filters
        ("ListTaskDefinitionFamilies", {"nextToken": _forged([1, {}])}),
        ("ListTaskDefinitions", {"nextToken": _forged({"v": 1, "after": [FAMILY, 2**70]})}),
        ("ListClusters", {"nextToken": token}),
        ("ListTasks", {"nextToken": token}),
    ]:
        assert ecs_error(api, operation, payload) == bad, operation


def test_ec2_tokens_are_bound_to_their_listing(api: InProcessApi) -> None:
    status, body = api.ec2("DescribeSubnets", MaxResults="5")
    token = re.search(r"<nextToken>(.*?)</nextToken>", body)
    assert status == 200 and token is not None, body
    assert api.ec2("DescribeSubnets", MaxResults="5", NextToken=token.group(1))[0] == 200
    assert ec2_error(api, "DescribeSecurityGroups", MaxResults="5", NextToken=token.group(1)) == (
        "InvalidNextToken",
        f"The token '{token.group(1)}' is invalid.",
    )


# ---- item 5: ARNs of another partition, region or account -------------------------------------------


@pytest.mark.parametrize(
    "arn",
    [
        f"arn:aws-cn:ecs:us-east-1:{ACCOUNT_ID}:cluster/default",
        f"arn:aws:ecs:eu-west-1:{ACCOUNT_ID}:cluster/default",
        "arn:aws:ecs:us-east-1:210987654321:cluster/default",
    ],
)
def test_foreign_cluster_arns_are_not_local_clusters(api: InProcessApi, arn: str) -> None:
    assert api.ecs("CreateCluster", {"clusterName": "default"})[0] == 200
    assert ecs_error(api, "TagResource", {"resourceArn": arn, "tags": [{"key": "k", "value": "v"}]}) == (
        "InvalidParameterException",
        "The specified resource ARN is not in this region or account.",
    )
    status, body = api.ecs("DescribeClusters", {"clusters": [arn]})
    assert (status, body) == (200, {"clusters": [], "failures": [{"arn": arn, "reason": "MISSING"}]})
    assert ecs_error(api, "ListTasks", {"cluster": arn}) == ("ClusterNotFoundException", "Cluster not found.")


def test_foreign_task_definition_arns_are_not_found(api: InProcessApi) -> None:
    register(api)
    for arn in (
        f"arn:aws-us-gov:ecs:us-east-1:{ACCOUNT_ID}:task-definition/{FAMILY}:1",
        f"arn:aws:ecs:us-east-1:210987654321:task-definition/{FAMILY}:1",
    ):
        assert ecs_error(api, "DescribeTaskDefinition", {"taskDefinition": arn}) == (
            "ClientException",
            "Unable to describe task definition.",
        )
    local = f"arn:aws:ecs:us-east-1:{ACCOUNT_ID}:task-definition/{FAMILY}:1"
    assert api.ecs("DescribeTaskDefinition", {"taskDefinition": local})[0] == 200


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("cn-north-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("us-iso-east-1", "aws-iso"),
        ("us-east-1", "aws"),
    ],
)
def test_arns_carry_the_region_partition(api: InProcessApi, region: str, partition: str) -> None:
    status, body = api.query("sts", {"Action": "GetCallerIdentity", "Version": "2011-06-15"}, region=region)
    assert status == 200
    assert f"<Arn>arn:{partition}:iam::{ACCOUNT_ID}:root</Arn>" in body
    status, cluster = api.ecs("CreateCluster", {"clusterName": "c"}, region=region)
    assert cluster["cluster"]["clusterArn"] == f"arn:{partition}:ecs:{region}:{ACCOUNT_ID}:cluster/c"
    status, body = api.query("ec2", {"Action": "DescribeSubnets", "Version": "2016-11-15"}, region=region)
    assert f"<subnetArn>arn:{partition}:ec2:{region}:{ACCOUNT_ID}:subnet/" in body
    # an ARN the region itself wrote resolves; the same ARN in the commercial partition does not
    local = cluster["cluster"]["clusterArn"]
    assert api.ecs("DescribeClusters", {"clusters": [local]}, region=region)[1]["failures"] == []
    if partition != "aws":
        other = local.replace(f"arn:{partition}:", "arn:aws:")
        assert api.ecs("DescribeClusters", {"clusters": [other]}, region=region)[1]["clusters"] == []


# ---- item 6: long polls for unknown instances, agent registration types ------------------------------


def test_polls_for_unknown_instances_leave_nothing_behind(api: InProcessApi) -> None:
    for n in range(300):
        status, body = api.agent("GET", f"instances/{n:032x}/desired?after=0&wait=0")
        assert status == 404, body
    assert api.control_plane.notifier.watched() == 0


def test_a_held_event_is_still_woken() -> None:
    notifier = Notifier()
    held = notifier.event("i-1")
    assert notifier.event("i-1") is held  # shared by every poller of the key
    for n in range(1000):
        notifier.event(f"unknown-{n}")  # nobody holds these
    assert notifier.watched() == 1
    notifier.wake(["i-1"])
    assert held.is_set() and notifier.watched() == 0


@pytest.mark.parametrize(
    ("member", "value", "message"),
    [
        ("hostname", {}, "hostname must be a string."),
        ("subnetId", 1.5, "subnetId must be a string."),
        ("maxTaskEnis", 2**70, "maxTaskEnis must be an integer from 0 to 2147483647."),
    ],
)
def test_agent_registration_with_wrong_types(
    api: InProcessApi, member: str, value: Any, message: str
) -> None:
    payload = {
        "cluster": "default",
        "instanceId": "i-0123456789abcdef0",
        "resources": {"CPU": 1024, "MEMORY": 2048},
        "maxTaskEnis": 3,
        member: value,
    }
    status, body = refused(api, lambda: api.agent("POST", "register", payload))
    assert status == 400
    assert body["message"] == message


# ---- item 8: EC2 details ---------------------------------------------------------------------------


def test_group_id_filter_that_is_no_group_id(api: InProcessApi) -> None:
    params = {"Filter.1.Name": "group-id", "Filter.1.Value.1": "foobar"}
    assert ec2_error(api, "DescribeSecurityGroupRules", **params) == (
        "InvalidGroupId.Malformed",
        "The security group ID 'foobar' is malformed",
    )


def test_create_security_group_with_empty_description(api: InProcessApi) -> None:
    assert ec2_error(api, "CreateSecurityGroup", GroupName="g", GroupDescription="") == (
        "MissingParameter",
        "The request must contain the parameter GroupDescription",
    )


@pytest.mark.parametrize("member", ["GroupName", "GroupDescription"])
def test_non_ascii_group_names_and_descriptions(api: InProcessApi, member: str) -> None:
    params = {"GroupName": "g", "GroupDescription": "d", member: "grüße"}
    assert ec2_error(api, "CreateSecurityGroup", **params) == (
        "InvalidParameterValue",
        f"Value (grüße) for parameter {member} is invalid. Character sets beyond ASCII are not supported.",
    )


def test_rule_without_protocol(api: InProcessApi) -> None:
    expected = (
        "InvalidParameterValue",
        "Invalid value 'null' for protocol. VPC security group rules must specify protocols explicitly.",
    )
    assert (
        ec2_error(api, "AuthorizeSecurityGroupIngress", GroupName="default", CidrIp="10.0.0.0/8") == expected
    )
    params = {"GroupName": "default", "IpPermissions.1.IpRanges.1.CidrIp": "10.0.0.0/8"}
    assert ec2_error(api, "AuthorizeSecurityGroupIngress", **params) == expected


def _regions(body: str) -> dict[str, str]:
    """Region name -> opt-in status, from a DescribeRegions answer."""
    found = {}
    for item in re.findall(r"<item>(.*?)</item>", body):
        name = re.search(r"<regionName>(.*?)</regionName>", item)
        status = re.search(r"<optInStatus>(.*?)</optInStatus>", item)
        assert name is not None and status is not None, item
        found[name.group(1)] = status.group(1)
    return found


def test_describe_regions_knows_every_region(api: InProcessApi) -> None:
    status, body = api.ec2("DescribeRegions")
    enabled = _regions(body)
    assert status == 200 and "us-east-1" in enabled and "af-south-1" not in enabled
    assert set(enabled.values()) == {"opt-in-not-required"}
    status, body = api.ec2("DescribeRegions", **{"RegionName.1": "af-south-1", "RegionName.2": "us-east-1"})
    assert _regions(body) == {"af-south-1": "not-opted-in", "us-east-1": "opt-in-not-required"}
    everything = _regions(api.ec2("DescribeRegions", AllRegions="true")[1])
    assert {"af-south-1", "me-central-1", "mx-central-1", "us-east-1"} <= set(everything)
    assert set(everything) - set(enabled) == {n for n, s in everything.items() if s == "not-opted-in"}
    # the caller's own opt-in region is opted in, and listed without AllRegions
    status, body = api.query(
        "ec2", {"Action": "DescribeRegions", "Version": "2016-11-15"}, region="af-south-1"
    )
    assert _regions(body)["af-south-1"] == "opted-in"


def test_govcloud_zone_ids(api: InProcessApi) -> None:
    for region, prefix in (("us-gov-west-1", "usgw1"), ("us-gov-east-1", "usge1")):
        status, body = api.query(
            "ec2", {"Action": "DescribeAvailabilityZones", "Version": "2016-11-15"}, region=region
        )
        assert status == 200 and f"<zoneId>{prefix}-az1</zoneId>" in body, body


def test_describe_subnets_filter_aliases(api: InProcessApi) -> None:
    for name, value in (("availabilityZone", "us-east-1a"), ("availabilityZoneId", "use1-az1")):
        status, body = api.ec2("DescribeSubnets", **{"Filter.1.Name": name, "Filter.1.Value.1": value})
        assert status == 200
        assert re.findall(r"<availabilityZone>(.*?)</availabilityZone>", body) == ["us-east-1a"], body


# ---- found by the fuzzer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "payload"),
    [
        ("CreateCluster", {"clusterName": "c", "tags": [{"key": "k"}, {"key": "k", "value": "-1"}]}),
        (
            "RegisterTaskDefinition",
            {
                "family": FAMILY,
                "containerDefinitions": [container()],
                "tags": [{"key": "k", "value": "1"}, {"key": "k", "value": "2"}],
            },
        ),
    ],
)
def test_duplicate_tag_keys(api: InProcessApi, operation: str, payload: dict[str, Any]) -> None:
    assert ecs_error(api, operation, payload) == (
        "InvalidParameterException",
        "Tags contain duplicate keys; tag keys must be unique.",
    )


def test_delete_tags_naming_no_key(api: InProcessApi) -> None:
    group = re.search(r"<groupId>(.*?)</groupId>", api.ec2("DescribeSecurityGroups")[1])
    assert group is not None
    params = {"ResourceId.1": group.group(1), "Tag.1.Value": "default"}
    assert ec2_error(api, "DeleteTags", **params) == (
        "MissingParameter",
        "The request must contain the parameter key",
    )


def test_create_service_without_task_definition(api: InProcessApi) -> None:
    assert api.ecs("CreateCluster", {"clusterName": "default"})[0] == 200
    assert ecs_error(api, "CreateService", {"serviceName": "s", "desiredCount": 1}) == (
        "InvalidParameterException",
        "A task definition must be specified for a service scheduled by ECS.",
    )
