"""Security groups and their rules through boto3 (and the aws CLI), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.server import ACCOUNT_ID, Server, aws_error


def error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    code, message, _status = aws_error(excinfo)
    return code, message


@pytest.fixture()
def vpc_id(ec2: Any) -> str:
    return str(ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"])


SSH = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}


def test_create_group_names(ec2: Any, vpc_id: str) -> None:
    created = ec2.create_security_group(
        GroupName="web",
        Description="web servers",
        VpcId=vpc_id,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "Name", "Value": "web"}]}],
    )
    group_id = created["GroupId"]
    assert group_id.startswith("sg-") and len(group_id) == 20
    assert created["Tags"] == [{"Key": "Name", "Value": "web"}]
    assert created["SecurityGroupArn"] == f"arn:aws:ec2:us-east-1:{ACCOUNT_ID}:security-group/{group_id}"
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    assert group["IpPermissions"] == []
    assert group["IpPermissionsEgress"] == [
        {
            "IpProtocol": "-1",
            "UserIdGroupPairs": [],
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            "Ipv6Ranges": [],
            "PrefixListIds": [],
        }
    ]
    with pytest.raises(ClientError) as excinfo:
        ec2.create_security_group(GroupName="web", Description="again", VpcId=vpc_id)
    assert error(excinfo) == (
        "InvalidGroup.Duplicate",
        f"The security group 'web' already exists for VPC '{vpc_id}'",
    )
    ec2.create_security_group(GroupName="web", Description="same name, other VPC")  # default VPC: fine
    with pytest.raises(ClientError) as excinfo:
        ec2.create_security_group(GroupName="default", Description="x", VpcId=vpc_id)
    assert error(excinfo) == ("InvalidParameterValue", "Cannot use reserved security group name: default")
    with pytest.raises(ClientError) as excinfo:
        ec2.create_security_group(GroupName="sg-web", Description="x", VpcId=vpc_id)
    assert error(excinfo)[0] == "InvalidParameterValue"
    with pytest.raises(ClientError) as excinfo:
        ec2.describe_security_groups(GroupNames=["nope"])
    default_vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    assert error(excinfo) == (
        "InvalidGroup.NotFound",
        f"The security group 'nope' does not exist in default VPC '{default_vpc}'",
    )
    by_name = ec2.describe_security_groups(GroupNames=["web"])["SecurityGroups"]
    assert [(g["GroupName"], g["VpcId"]) for g in by_name] == [("web", default_vpc)]


def test_authorize_revoke_and_errors(ec2: Any, vpc_id: str) -> None:
    group_id = ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc_id)["GroupId"]
    peer_id = ec2.create_security_group(GroupName="lb", Description="lb", VpcId=vpc_id)["GroupId"]
    added = ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            SSH,
            {
                "IpProtocol": "tcp",
                "FromPort": 80,
                "ToPort": 80,
                "UserIdGroupPairs": [{"GroupId": peer_id, "Description": "from lb"}],
            },
        ],
    )
    assert added["Return"] is True
    rules = added["SecurityGroupRules"]
    assert len(rules) == 2
    assert all(
        r["SecurityGroupRuleId"].startswith("sgr-") and len(r["SecurityGroupRuleId"]) == 21 for r in rules
    )
    assert rules[0]["IsEgress"] is False and rules[0]["CidrIpv4"] == "0.0.0.0/0"
    assert rules[1]["ReferencedGroupInfo"] == {"GroupId": peer_id, "UserId": ACCOUNT_ID}
    assert rules[1]["Description"] == "from lb"

    with pytest.raises(ClientError) as excinfo:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[SSH])
    assert error(excinfo) == (
        "InvalidPermission.Duplicate",
        'the specified rule "peer: 0.0.0.0/0, TCP, from port: 22, to port: 22, ALLOW" already exists',
    )
    with pytest.raises(ClientError) as excinfo:  # the legacy flat form names the same rule
        ec2.authorize_security_group_ingress(
            GroupId=group_id, IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="0.0.0.0/0"
        )
    assert error(excinfo)[0] == "InvalidPermission.Duplicate"
    with pytest.raises(ClientError) as excinfo:
        ec2.revoke_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 23, "ToPort": 23, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
            ],
        )
    assert error(excinfo) == (
        "InvalidPermission.NotFound",
        "The specified rule does not exist in this security group.",
    )
    with pytest.raises(ClientError) as excinfo:
        ec2.revoke_security_group_egress(
            GroupId=group_id, SecurityGroupRuleIds=[rules[0]["SecurityGroupRuleId"]]
        )
    assert error(excinfo)[0] == "InvalidSecurityGroupRuleId.NotFound"  # it is an ingress rule

    revoked = ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=[SSH])
    assert [r["SecurityGroupRuleId"] for r in revoked["RevokedSecurityGroupRules"]] == [
        rules[0]["SecurityGroupRuleId"]
    ]
    revoked = ec2.revoke_security_group_ingress(
        GroupId=group_id, SecurityGroupRuleIds=[rules[1]["SecurityGroupRuleId"]]
    )
    assert revoked["RevokedSecurityGroupRules"][0]["ReferencedGroupId"] == peer_id
    assert ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissions"] == []

    egress = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])[
        "SecurityGroupRules"
    ]
    assert [(r["IsEgress"], r["IpProtocol"], r["FromPort"], r["ToPort"], r["CidrIpv4"]) for r in egress] == [
        (True, "-1", -1, -1, "0.0.0.0/0")
    ]
    ec2.revoke_security_group_egress(
        GroupId=group_id, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    assert ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissionsEgress"] == []


def test_rule_quota_and_modify(ec2: Any, vpc_id: str) -> None:
    group_id = ec2.create_security_group(GroupName="many", Description="many", VpcId=vpc_id)["GroupId"]
    ranges = [{"CidrIp": f"10.1.{i}.0/24"} for i in range(60)]
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": ranges}],
    )
    with pytest.raises(ClientError) as excinfo:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[SSH])
    assert error(excinfo) == (
        "RulesPerSecurityGroupLimitExceeded",
        "The maximum number of rules per security group has been reached.",
    )
    rule = ec2.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [group_id]}], MaxResults=5
    )["SecurityGroupRules"][0]
    ec2.modify_security_group_rules(
        GroupId=group_id,
        SecurityGroupRules=[
            {
                "SecurityGroupRuleId": rule["SecurityGroupRuleId"],
                "SecurityGroupRule": {
                    "IpProtocol": "udp",
                    "FromPort": 53,
                    "ToPort": 53,
                    "CidrIpv4": "192.168.0.0/16",
                    "Description": "dns",
                },
            }
        ],
    )
    changed = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rule["SecurityGroupRuleId"]])[
        "SecurityGroupRules"
    ][0]
    assert (changed["IpProtocol"], changed["FromPort"], changed["CidrIpv4"], changed["Description"]) == (
        "udp",
        53,
        "192.168.0.0/16",
        "dns",
    )


def test_delete_groups_in_use_referenced_default(ec2: Any, vpc_id: str) -> None:
    target = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc_id)["GroupId"]
    client = ec2.create_security_group(GroupName="client", Description="client", VpcId=vpc_id)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=target,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": client}]}
        ],
    )
    with pytest.raises(ClientError) as excinfo:
        ec2.delete_security_group(GroupId=client)  # referenced by db's rule
    assert error(excinfo) == ("DependencyViolation", f"resource {client} has a dependent object")
    ec2.delete_security_group(GroupId=target)  # a group that references another can go
    ec2.delete_security_group(GroupId=client)  # and then the referenced one can too

    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    used = ec2.create_security_group(GroupName="used", Description="used", VpcId=vpc_id)["GroupId"]
    eni_id = ec2.create_network_interface(SubnetId=subnet_id, Groups=[used])["NetworkInterface"][
        "NetworkInterfaceId"
    ]
    with pytest.raises(ClientError) as excinfo:
        ec2.delete_security_group(GroupId=used)
    assert error(excinfo) == ("DependencyViolation", f"resource {used} has a dependent object")
    ec2.delete_network_interface(NetworkInterfaceId=eni_id)
    assert ec2.delete_security_group(GroupId=used)["GroupId"] == used

    default = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]}]
    )
    default_id = default["SecurityGroups"][0]["GroupId"]
    with pytest.raises(ClientError) as excinfo:
        ec2.delete_security_group(GroupId=default_id)
    assert error(excinfo) == (
        "CannotDelete",
        f'the specified group: "{default_id}" name: "default" cannot be deleted by a user',
    )
    with pytest.raises(ClientError) as excinfo:
        ec2.delete_security_group(GroupName="default")  # the default VPC's, by name
    assert error(excinfo)[0] == "CannotDelete"


def test_aws_cli_rules(api: Server, ec2: Any, vpc_id: str) -> None:
    group_id = ec2.create_security_group(GroupName="cli", Description="cli", VpcId=vpc_id)["GroupId"]
    out = json.loads(
        api.aws(
            "ec2",
            "authorize-security-group-ingress",
            "--group-id",
            group_id,
            "--protocol",
            "tcp",
            "--port",
            "443",
            "--cidr",
            "10.9.0.0/16",
        ).stdout
    )
    assert out["Return"] is True and out["SecurityGroupRules"][0]["FromPort"] == 443
    failed = api.aws(
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        group_id,
        "--protocol",
        "tcp",
        "--port",
        "443",
        "--cidr",
        "10.9.0.0/16",
        check=False,
    )
    assert failed.returncode != 0
    assert "(InvalidPermission.Duplicate)" in failed.stderr
    rules = json.loads(
        api.aws(
            "ec2", "describe-security-group-rules", "--filters", f"Name=group-id,Values={group_id}"
        ).stdout
    )
    assert sorted(r["IsEgress"] for r in rules["SecurityGroupRules"]) == [False, True]
