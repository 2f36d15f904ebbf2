"""Security group use cases: CreateSecurityGroup, DescribeSecurityGroups, DeleteSecurityGroup.

Rules are rows (``rules.py``), and so are ENI memberships, so "is this group in use" and "which groups
reference it" are queries, and a group cannot vanish under an ENI or a rule (foreign keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import describe, errors, ids, rules, tags
from taskvpc.domain.arns import ec2_arn
from taskvpc.netmodel import security_groups as sg
from taskvpc.store import ec2_repo

Doc = dict[str, Any]
DEFAULT_NAME = "default"
# The description EC2 gives every VPC's default group (describe-security-groups output).
DEFAULT_DESCRIPTION = "default VPC security group"
MAX_NAME = 255


def _doc(ctx: RequestContext, group_id: str, name: str, description: str, vpc_id: str) -> Doc:
    return {
        "GroupId": group_id,
        "GroupName": name,
        "Description": description,
        "VpcId": vpc_id,
        "OwnerId": ctx.account_id,
        "SecurityGroupArn": ec2_arn(ctx.region, ctx.account_id, f"security-group/{group_id}"),
    }


def new_default_group(conn: Connection, ctx: RequestContext, vpc_id: str) -> Doc:
    """A VPC's ``default`` group: all inbound from itself, all outbound (VPC User Guide)."""
    group = _doc(ctx, ids.new_id(ctx, "sg"), DEFAULT_NAME, DEFAULT_DESCRIPTION, vpc_id)
    inserted = ec2_repo.insert_group(conn, ctx.region, group, True, ctx.now)
    assert inserted, "a new VPC has no groups"
    ingress, egress = sg.default_group_rules(group["GroupId"], ctx.account_id)
    rules.add(conn, ctx, group["GroupId"], [*ingress, *egress])
    return group


def remove_group(conn: Connection, group_id: str) -> bool:
    """Delete a group, its rules and their tags; False when something points at it meanwhile."""
    for doc in ec2_repo.rules_of(conn, [group_id])[group_id]:
        ec2_repo.remove_tags(conn, doc["SecurityGroupRuleId"], None)
    ec2_repo.remove_tags(conn, group_id, None)
    return ec2_repo.delete_group(conn, group_id)


def require(conn: Connection, ctx: RequestContext, group_id: str) -> Doc:
    ids.check("sg", [group_id])
    group = ec2_repo.get_group(conn, ctx.region, group_id)
    if group is None:
        raise errors.not_found("sg", [group_id])
    return group


def by_name_in_default_vpc(conn: Connection, ctx: RequestContext, name: str) -> Doc:
    vpc = ec2_repo.default_vpc(conn, ctx.region)
    if vpc is None:
        raise errors.no_default_vpc()
    group = ec2_repo.group_by_name(conn, vpc["VpcId"], name)
    if group is None:
        raise errors.group_name_not_found(name, vpc["VpcId"])
    return group


def target(conn: Connection, ctx: RequestContext, params: Mapping[str, Any]) -> Doc:
    """The group a call names by ``GroupId``, else by ``GroupName`` (default VPC only, as on EC2)."""
    if params.get("GroupId"):
        return require(conn, ctx, params["GroupId"])
    if params.get("GroupName"):
        return by_name_in_default_vpc(conn, ctx, params["GroupName"])
    # "MissingParameter: The request must contain the parameter groupName or groupId" # unconfirmed
    raise errors.missing_parameter("groupName or groupId")


def view(conn: Connection, docs: list[Doc]) -> list[Doc]:
    group_ids = [doc["GroupId"] for doc in docs]
    by_group = rules.of_groups(conn, group_ids)
    by_tags = ec2_repo.tags_of(conn, group_ids)
    views = []
    for doc in docs:
        ingress, egress = rules.permissions(by_group[doc["GroupId"]])
        shown = {**doc, "IpPermissions": ingress, "IpPermissionsEgress": egress}
        if by_tags[doc["GroupId"]]:
            shown["Tags"] = by_tags[doc["GroupId"]]
        views.append(shown)
    return views


def _check_name(name: str) -> None:
    if name.lower() == DEFAULT_NAME:
        raise errors.group_name_reserved()
    if name.lower().startswith("sg-"):
        raise errors.group_name_sg_prefix(name)
    if not name or len(name) > MAX_NAME:
        # "Value (...) for parameter GroupName is invalid. ..." by analogy with the sg- text # unconfirmed
        raise errors.invalid_parameter_value(
            f"Value ({name}) for parameter GroupName is invalid. Group names must be 1 to 255 characters."
        )


def _check_charset(parameter: str, value: str) -> None:
    if not value.isascii():
        # "Value (...) for parameter GroupDescription is invalid. Character sets beyond ASCII are not
        # supported." (real EC2 answers quoted in many public deployment notes); the same for GroupName.
        raise errors.invalid_parameter_value(
            f"Value ({value}) for parameter {parameter} is invalid. Character sets beyond ASCII are not supported."
        )


def create_security_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["GroupName"]
    description = params["Description"]
    if not description:
        # The model's GroupDescription is required; EC2 counts an empty one as missing (issue #12) # unconfirmed
        raise errors.missing_parameter("GroupDescription")
    _check_name(name)
    _check_charset("GroupName", name)
    _check_charset("GroupDescription", description)
    if len(description) > MAX_NAME:
        raise errors.invalid_parameter_value(
            f"Value ({description}) for parameter GroupDescription is invalid. "
            "Group descriptions must be 0 to 255 characters."  # unconfirmed
        )
    new_tags = tags.from_specs(params, "security-group")
    with ctx.db.transaction() as conn:
        if params.get("VpcId"):
            ids.check("vpc", [params["VpcId"]])
            vpc = ec2_repo.get_vpc(conn, ctx.region, params["VpcId"])
            if vpc is None:
                raise errors.not_found("vpc", [params["VpcId"]])
        else:
            vpc = ec2_repo.default_vpc(conn, ctx.region)
            if vpc is None:
                raise errors.no_default_vpc()
        describe.dry_run(params)
        group = _doc(ctx, ids.new_id(ctx, "sg"), name, description, vpc["VpcId"])
        if not ec2_repo.insert_group(conn, ctx.region, group, False, ctx.now):
            raise errors.group_duplicate(name, vpc["VpcId"])
        rules.add(conn, ctx, group["GroupId"], [sg.new_group_egress()])
        tags.attach(conn, ctx, group["GroupId"], new_tags)
    result: dict[str, Any] = {"GroupId": group["GroupId"], "SecurityGroupArn": group["SecurityGroupArn"]}
    if new_tags:
        result["Tags"] = new_tags
    return result


def _filter_values(doc: Doc) -> dict[str, Any]:
    values: dict[str, Any] = {
        "description": doc["Description"],
        "group-id": doc["GroupId"],
        "group-name": doc["GroupName"],
        "owner-id": doc["OwnerId"],
        "vpc-id": doc["VpcId"],
    }
    for prefix, member in (
        ("ip-permission.", "IpPermissions"),
        ("egress.ip-permission.", "IpPermissionsEgress"),
    ):
        perms = doc[member]
        values[prefix + "protocol"] = [p["IpProtocol"] for p in perms]
        values[prefix + "from-port"] = [p["FromPort"] for p in perms if "FromPort" in p]
        values[prefix + "to-port"] = [p["ToPort"] for p in perms if "ToPort" in p]
        values[prefix + "cidr"] = [r["CidrIp"] for p in perms for r in p["IpRanges"]]
        values[prefix + "ipv6-cidr"] = [r["CidrIpv6"] for p in perms for r in p["Ipv6Ranges"]]
        values[prefix + "prefix-list-id"] = [r["PrefixListId"] for p in perms for r in p["PrefixListIds"]]
        pairs = [pair for p in perms for pair in p["UserIdGroupPairs"]]
        values[prefix + "group-id"] = [pair["GroupId"] for pair in pairs]
        values[prefix + "user-id"] = [pair.get("UserId") for pair in pairs if pair.get("UserId")]
        values[prefix + "group-name"] = doc["_peer_names"].get(member, [])
    return values


_PERMISSION_FILTERS = (
    "cidr",
    "from-port",
    "group-id",
    "group-name",
    "ipv6-cidr",
    "prefix-list-id",
    "protocol",
    "to-port",
    "user-id",
)
LISTING = describe.Listing(
    prefix="sg",
    id_member="GroupId",
    supported_filters=(
        "description",
        "group-id",
        "group-name",
        "owner-id",
        "vpc-id",
        *(f"ip-permission.{name}" for name in _PERMISSION_FILTERS),
        *(f"egress.ip-permission.{name}" for name in _PERMISSION_FILTERS),
    ),
    filter_values=_filter_values,
    table="security_groups",
    columns={"group-id": "id", "group-name": "name", "vpc-id": "vpc_id"},
    bounded_columns=("id", "name"),
)
_PERMISSION_MEMBERS = ("IpPermissions", "IpPermissionsEgress")


def _described(conn: Connection, docs: list[Doc]) -> list[Doc]:
    """The groups as DescribeSecurityGroups shows them, with the names of the groups their rules name
    (what the ``ip-permission.group-name`` filters match)."""
    views = view(conn, docs)
    peers = ec2_repo.names_of_groups(
        conn,
        (
            pair["GroupId"]
            for doc in views
            for member in _PERMISSION_MEMBERS
            for p in doc[member]
            for pair in p["UserIdGroupPairs"]
        ),
    )
    for doc in views:
        doc["_peer_names"] = {
            member: [peers.get(pair["GroupId"], "") for p in doc[member] for pair in p["UserIdGroupPairs"]]
            for member in _PERMISSION_MEMBERS
        }
    return views


def describe_security_groups(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    requested = describe.check_request(LISTING, params, "GroupIds")
    names = params.get("GroupNames") or []
    if names:
        with ctx.db.read() as conn:
            named = [by_name_in_default_vpc(conn, ctx, name)["GroupId"] for name in names]
        requested = list(dict.fromkeys([*(requested or []), *named]))
    return describe.run(ctx, LISTING, params, requested, "SecurityGroups", _described)


def delete_security_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        group = target(conn, ctx, params)
        group_id = group["GroupId"]
        if group["GroupName"] == DEFAULT_NAME:
            raise errors.cannot_delete_default(group_id)
        describe.dry_run(params)  # DryRun answers once ids resolve; what uses the group is not looked at
        if ec2_repo.enis_with_group(conn, group_id) or ec2_repo.groups_referencing(conn, group_id):
            raise errors.group_has_dependent(group_id)
        if not remove_group(conn, group_id):
            raise errors.group_has_dependent(group_id)
    return {"Return": True, "GroupId": group_id}
