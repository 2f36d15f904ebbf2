"""The store hooks the ECS task lifecycle uses for ``awsvpc`` task ENIs, inside its own transaction.

Task ENIs are requester-managed, as ECS's are on EC2: ``RequesterManaged`` true, ``InterfaceType``
``interface``, ``Description`` ``arn:aws:ecs:<region>:<account>:attachment/<attachment id>`` (the
attachment id is the ECS attachment's UUID); a user may not delete or modify them through EC2.

    reserve_task_eni(conn, ctx, subnet_ids, group_ids, attachment_id) -> ENI   (status available)
    attach_task_eni(conn, ctx, eni_id, instance_or_host_id) -> ENI             (status in-use)
    release_task_eni(conn, ctx, eni_id) -> None                                (gone, address free)

They raise EC2's ``ClientError``s (unknown subnet or group, groups of another VPC, every subnet full:
``InsufficientFreeAddressesInSubnet``); the caller maps them to ECS's failure reasons.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import enis, errors, ids, subnets
from taskvpc.domain.arns import ecs_arn
from taskvpc.netmodel import ipam, security_groups as sg
from taskvpc.store import ec2_repo

Doc = dict[str, Any]
# Who EC2 names as the requester of an ECS-managed ENI. Real task ENIs show an AWS-owned principal whose
# exact value is not public # unconfirmed
ECS_REQUESTER_ID = "amazon-ecs"
TASK_DEVICE_INDEX = 1  # the instance's primary ENI is device 0 (DG, task networking)


def reserve_task_eni(
    conn: Connection, ctx: RequestContext, subnet_ids: list[str], group_ids: list[str], attachment_id: str
) -> Doc:
    """Create a task ENI in the first of ``subnet_ids`` with a free address; no groups: the VPC default."""
    ids.check("subnet", subnet_ids)
    ids.check("sg", group_ids)
    sg.check_groups_per_new_eni(len(set(group_ids)), ctx.account_id)
    candidates = [subnets.require(conn, ctx, subnet_id) for subnet_id in subnet_ids]
    if not candidates:
        raise errors.missing_parameter("subnetId")
    for subnet in candidates:
        if not enis.has_free_address(conn, ctx, subnet):
            continue
        groups = enis.check_groups(conn, ctx, subnet, group_ids)
        eni = enis.allocate(
            conn,
            ctx,
            subnet,
            groups,
            description=ecs_arn(ctx.region, ctx.account_id, f"attachment/{attachment_id}"),
            requester_id=ECS_REQUESTER_ID,
        )
        return enis.view(conn, ctx, [eni])[0]
    raise ipam.subnet_full()


def attach_task_eni(conn: Connection, ctx: RequestContext, eni_id: str, instance_or_host_id: str) -> Doc:
    """Mark the ENI attached (``in-use``) to the instance or host that runs the task."""
    eni = enis.require(conn, ctx, eni_id)
    if eni["Status"] != "in-use":
        eni["Status"] = "in-use"
        eni["Attachment"] = {
            "AttachTime": ctx.now,  # epoch seconds; the codec writes EC2's ISO form
            "AttachmentId": ids.new_id(ctx, "eni-attach"),
            "DeleteOnTermination": False,
            "DeviceIndex": TASK_DEVICE_INDEX,
            "NetworkCardIndex": 0,
            "InstanceId": instance_or_host_id,
            "InstanceOwnerId": ctx.account_id,
            "Status": "attached",
        }
        ec2_repo.update_eni(conn, eni)
    return enis.view(conn, ctx, [eni])[0]


def release_task_eni(conn: Connection, ctx: RequestContext, eni_id: str) -> None:
    """Delete the ENI and free its address; an ENI already gone is fine (teardown is idempotent)."""
    if ec2_repo.get_eni(conn, ctx.region, eni_id) is None:
        return
    ec2_repo.remove_tags(conn, eni_id, None)
    ec2_repo.delete_eni(conn, eni_id)
