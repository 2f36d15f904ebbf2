"""What an EC2 instance brings to its container instance when its agent registers: tags and trunking.

Tags (ECS agent configuration, DG "Amazon ECS container agent configuration"):

* ``ECS_CONTAINER_INSTANCE_TAGS`` - a JSON object of tags the container instance registers with;
* ``ECS_CONTAINER_INSTANCE_PROPAGATE_TAGS_FROM=ec2_instance`` - the EC2 instance's own tags are added as
  well (those whose key starts with ``aws:`` are not: they are reserved); a key in both takes the
  value ``ECS_CONTAINER_INSTANCE_TAGS`` gives it.

The agent reads both from ``ecs.config`` and sends them with its registration (``tags``, an object, and
``propagateTagsFrom``); :func:`registration_tags` turns them into the container instance's tags.

Trunking (``awsvpcTrunking``, DG ``container-instance-eni.md``): an instance launched after its account
(or the registering principal) opted in gets a trunk ENI, ECS's attribute ``ecs.awsvpc-trunk-id`` naming
it, and the type's higher task-ENI limit (``instance_types.trunk_task_capacity``: ``c5.large`` 2 -> 10).
Only types the guide lists, Linux only, and only at the first registration of the instance (ECS decides
when the instance registers; an instance registered before the opt-in keeps its limit until it is
replaced). The trunk ENI takes an address of the instance's subnet and is deleted when the container
instance is deregistered or the instance terminated. taskvpc has no VLAN branch interfaces: task ENIs
stay veth pairs, so the trunk ENI is bookkeeping that shows as ECS shows it (``InterfaceType`` ``trunk``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.domain import instance_types
from taskvpc.domain.arns import root_principal_arn
from taskvpc.store import ec2_repo, ecs_repo, instances_repo, tasks_repo

Doc = dict[str, Any]
TRUNK_ATTRIBUTE = "ecs.awsvpc-trunk-id"
PROPAGATE_FROM_INSTANCE = "ec2_instance"


class TagsRefused(ValueError):
    """The registration's tags are not what the agent contract allows (the caller answers 400)."""


def registration_tags(ctx: RequestContext, ec2_instance_id: str, payload: Doc) -> list[dict[str, str]]:
    """The container instance's tags: the EC2 instance's when propagation is asked, then the config's."""
    given = payload.get("tags") or {}
    propagate = payload.get("propagateTagsFrom") or "none"
    if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
        raise TagsRefused("tags must be an object of strings.")
    if propagate not in ("none", PROPAGATE_FROM_INSTANCE):
        raise TagsRefused("propagateTagsFrom must be ec2_instance or none.")
    merged: dict[str, str] = {}
    if propagate == PROPAGATE_FROM_INSTANCE:
        with ctx.db.read() as conn:
            docs = instances_repo.list_instances(conn, ctx.region, [ec2_instance_id])
        for tag in docs[0].get("Tags", []) if docs else []:
            if not tag["Key"].lower().startswith("aws:"):
                merged[tag["Key"]] = tag["Value"]
    merged.update({str(k): v for k, v in given.items()})
    return [{"key": key, "value": value} for key, value in merged.items()]


def trunking_enabled(conn: Connection, ctx: RequestContext) -> bool:
    """``awsvpcTrunking`` as it applies to the caller: its own setting, else the account default."""
    settings = {(p, n): v for p, n, v in ecs_repo.get_settings(conn, ctx.region) if n == "awsvpcTrunking"}
    own = settings.get((ctx.principal_arn, "awsvpcTrunking"))
    value = (
        own
        if own is not None
        else settings.get((root_principal_arn(ctx.account_id, ctx.region), "awsvpcTrunking"))
    )
    return value == "enabled"


def apply_trunking(
    conn: Connection,
    ctx: RequestContext,
    ec2_instance_id: str,
    attributes: dict[str, str | None],
    subnet: Doc,
    existing: Doc | None,
) -> int | None:
    """The trunking task-ENI limit of this registration (``ecs.awsvpc-trunk-id`` set in ``attributes``),
    or None when trunking does not apply. A re-registration keeps the trunk its first one got."""
    docs = instances_repo.list_instances(conn, ctx.region, [ec2_instance_id])
    capacity = instance_types.trunk_task_capacity(docs[0]["InstanceType"]) if docs else None
    if capacity is None or attributes.get("ecs.os-type") == "windows":
        return None
    if existing is not None:
        kept = [
            v
            for n, v, _c in tasks_repo.attributes_of(conn, [existing["id"]])[existing["id"]]
            if n == TRUNK_ATTRIBUTE
        ]
        if not kept or not kept[0]:
            return None  # registered before the opt-in: it keeps its limit
        attributes[TRUNK_ATTRIBUTE] = kept[0]
        return capacity
    if docs[0]["State"]["Name"] not in ("pending", "running") or not trunking_enabled(conn, ctx):
        return None
    attributes[TRUNK_ATTRIBUTE] = attach_trunk(conn, ctx, ec2_instance_id, subnet)
    return capacity


def attach_trunk(conn: Connection, ctx: RequestContext, ec2_instance_id: str, subnet: Doc) -> str:
    """A trunk ENI in the instance's subnet, attached to it; its id (the ``ecs.awsvpc-trunk-id``)."""
    from taskvpc.control.ec2 import enis

    docs = instances_repo.list_instances(conn, ctx.region, [ec2_instance_id])
    groups = [g["GroupId"] for g in docs[0]["SecurityGroups"]] if docs else []
    eni = enis.allocate(
        conn, ctx, subnet, groups, description="ECS trunk network interface", interface_type="trunk"
    )
    eni["Status"] = "in-use"
    eni["Attachment"] = {
        "AttachmentId": "eni-attach-" + eni["NetworkInterfaceId"][4:],
        "DeleteOnTermination": True,
        "DeviceIndex": 1,
        "InstanceId": ec2_instance_id,
        "InstanceOwnerId": ctx.account_id,
        "NetworkCardIndex": 0,
        "Status": "attached",
    }
    ec2_repo.update_eni(conn, eni)
    return str(eni["NetworkInterfaceId"])


def release_trunk(conn: Connection, container_instance_id: str) -> None:
    """Delete the container instance's trunk ENI, if it has one (deregistration, termination)."""
    for name, value, _custom in tasks_repo.attributes_of(conn, [container_instance_id])[
        container_instance_id
    ]:
        if name == TRUNK_ATTRIBUTE and value:
            ec2_repo.delete_eni(conn, value)
