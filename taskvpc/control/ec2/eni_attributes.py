"""DescribeNetworkInterfaceAttribute and ModifyNetworkInterfaceAttribute (description, groups, source/dest
check, attachment). Requester-managed ENIs (task ENIs) cannot be modified by a user.
"""

from __future__ import annotations

from typing import Any

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import dataplane, describe, enis, errors, ids, subnets
from taskvpc.domain.errors import ClientError
from taskvpc.netmodel import security_groups as sg
from taskvpc.store import ec2_repo


def describe_network_interface_attribute(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    attribute = params.get("Attribute")
    if attribute is None:
        raise errors.missing_parameter("attribute")  # unconfirmed: the model leaves it optional
    with ctx.db.read() as conn:
        eni = enis.view(conn, ctx, [enis.require(conn, ctx, params["NetworkInterfaceId"])])[0]
    describe.dry_run(params)
    result: dict[str, Any] = {"NetworkInterfaceId": eni["NetworkInterfaceId"]}
    if attribute == "description":
        result["Description"] = {"Value": eni["Description"]}
    elif attribute == "groupSet":
        result["Groups"] = eni["Groups"]
    elif attribute == "sourceDestCheck":
        result["SourceDestCheck"] = {"Value": eni["SourceDestCheck"]}
    elif attribute == "attachment":
        if eni.get("Attachment"):
            result["Attachment"] = eni["Attachment"]
    else:  # associatePublicIpAddress: no public addresses in taskvpc
        result["AssociatePublicIpAddress"] = False
    return result


_MODIFIABLE = ("Description", "SourceDestCheck", "Groups", "Attachment")
_MODIFY_UNSUPPORTED = (
    "EnaSrdSpecification",
    "EnablePrimaryIpv6",
    "ConnectionTrackingSpecification",
    "AssociatePublicIpAddress",
    "AssociatedSubnetIds",
)


def modify_network_interface_attribute(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    for member in _MODIFY_UNSUPPORTED:
        if member in params:
            raise ClientError("UnsupportedOperation", f"taskvpc does not support {member} yet.")
    given = [member for member in _MODIFIABLE if member in params]
    if len(given) != 1:
        # EC2 API reference: "You can modify only one attribute at a time." Code and text # unconfirmed
        raise ClientError("InvalidParameterCombination", "Only one attribute can be modified at a time")
    member = given[0]
    group_ids = list(params.get("Groups") or [])
    ids.check("sg", group_ids)
    with ctx.db.transaction() as conn:
        eni = enis.require(conn, ctx, params["NetworkInterfaceId"])
        if eni["RequesterManaged"]:
            raise errors.requester_managed(eni["NetworkInterfaceId"])
        if member == "Groups":
            if not group_ids:
                raise errors.missing_parameter("groupId")  # unconfirmed
            sg.check_groups_per_eni(len(set(group_ids)))
            subnet = subnets.require(conn, ctx, eni["SubnetId"])
            checked = enis.check_groups(conn, ctx, subnet, group_ids)
            describe.dry_run(params)
            ec2_repo.set_eni_groups(conn, ctx.region, eni["NetworkInterfaceId"], checked)
            dataplane.security_changed(conn, ctx, [eni["NetworkInterfaceId"]])
            return {}
        if member == "Attachment":
            attachment = eni.get("Attachment")
            change = params["Attachment"] or {}
            if attachment is None or change.get("AttachmentId") != attachment["AttachmentId"]:
                # "InvalidAttachmentID.NotFound" (EC2 errors doc) # unconfirmed wording
                raise ClientError(
                    "InvalidAttachmentID.NotFound",
                    f"The network interface attachment ID '{change.get('AttachmentId')}' does not exist",
                )
            describe.dry_run(params)
            if "DeleteOnTermination" in change:
                attachment["DeleteOnTermination"] = bool(change["DeleteOnTermination"])
        else:
            value = (params[member] or {}).get("Value")
            if member == "SourceDestCheck" and not isinstance(value, bool):
                raise errors.missing_parameter("sourceDestCheck")  # unconfirmed
            describe.dry_run(params)
            eni[member] = value if value is not None else ""
        ec2_repo.update_eni(conn, eni)
    return {}
