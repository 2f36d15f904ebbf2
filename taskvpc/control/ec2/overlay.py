"""The control plane's side of VPCs spanning hosts: the ``overlay`` section and waking the peers.

A host takes part once its agent registered an underlay address (the container instance attribute
``taskvpc.underlay-address``, ``taskvpc/agentapi/overlay.py``). For such a host, :func:`section` lists,
per VPC in which it has a task ENI, the VPC's VNI and the task ENIs of that VPC on every *other* live
host with an underlay address, with their current security groups.

When a task ENI appears on or leaves a host (the agent attached it, or it was released), the other
overlay hosts of the region must hear it: :func:`members_changed` bumps their generations, which
answers their waiting polls. Hosts without an underlay are not woken: most deployments have one host,
and a region-wide bump per task would cost every agent an answer for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select, update

from taskvpc.agentapi.network import Eni
from taskvpc.agentapi.overlay import UNDERLAY_ATTRIBUTE, OverlayVpc, RemoteMember, assign_vnis
from taskvpc.control.context import RequestContext
from taskvpc.store import ec2_repo
from taskvpc.store.ecs_repo import loads
from taskvpc.store.schema import container_instance_attributes, container_instances, tasks


def underlay_hosts(conn: Connection, region: str, *, live_only: bool = True) -> dict[str, str]:
    """Container instances of ``region`` (live ones: not INACTIVE) with an underlay address: id -> it."""
    a, c = container_instance_attributes.c, container_instances.c
    where = [a.region == region, a.name == UNDERLAY_ATTRIBUTE]
    if live_only:
        where.append(c.status != "INACTIVE")
    rows = conn.execute(
        select(a.instance_id, a.value).join(container_instances, c.id == a.instance_id).where(*where)
    )
    return {str(r.instance_id): str(r.value) for r in rows if r.value}


def section(
    conn: Connection, ctx: RequestContext, instance_id: str, local: Iterable[Eni]
) -> tuple[OverlayVpc, ...]:
    """What ``instance_id`` must know of the other hosts of its tasks' VPCs (``local``: its ENIs)."""
    hosts = underlay_hosts(conn, ctx.region)
    if instance_id not in hosts:
        return ()
    vpc_ids = sorted({e.vpc_id for e in local})
    if not vpc_ids:
        return ()
    members: dict[str, list[tuple[Eni, str]]] = {v: [] for v in vpc_ids}
    others = sorted(set(hosts) - {instance_id})
    t = tasks.c
    rows = conn.execute(  # one query, whatever the number of hosts: live tasks holding an ENI there
        select(t.container_instance_id, t.spec).where(
            t.container_instance_id.in_(others),
            t.last_status != "STOPPED",
            t.desired_status != "STOPPED",
            t.eni_id.is_not(None),
        )
    )
    for row in rows:
        doc = loads(row.spec).get("eni")
        if not doc:
            continue
        eni = Eni.from_wire(doc)
        if eni.vpc_id in members:
            members[eni.vpc_id].append((eni, hosts[str(row.container_instance_id)]))
    groups = ec2_repo.eni_groups(
        conn, [e.network_interface_id for found in members.values() for e, _ in found]
    )
    vnis = assign_vnis([v["VpcId"] for v in ec2_repo.list_vpcs(conn, ctx.region)] + vpc_ids)
    return tuple(
        OverlayVpc(
            vpc_id,
            vnis[vpc_id],
            tuple(
                RemoteMember(
                    eni.network_interface_id,
                    eni.private_ipv4_address,
                    address,
                    tuple(groups.get(eni.network_interface_id) or eni.security_group_ids),
                )
                for eni, address in sorted(members[vpc_id], key=lambda m: m[0].network_interface_id)
            ),
        )
        for vpc_id in vpc_ids
    )


def members_changed(conn: Connection, ctx: RequestContext, instance_id: str | None) -> None:
    """A task ENI appeared on or left ``instance_id``: wake the region's other overlay hosts."""
    if instance_id is None:
        return
    hosts = underlay_hosts(conn, ctx.region, live_only=False)  # a host being deregistered counts
    if instance_id not in hosts:
        return
    others = sorted(set(underlay_hosts(conn, ctx.region)) - {instance_id})
    if others:
        c = container_instances.c
        conn.execute(update(container_instances).where(c.id.in_(others)).values(generation=c.generation + 1))
        ctx.notify.update(others)
