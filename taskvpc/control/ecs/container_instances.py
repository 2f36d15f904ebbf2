"""Container instance use cases: RegisterContainerInstance, DeregisterContainerInstance,
ListContainerInstances, DescribeContainerInstances, UpdateContainerInstancesState; and what the agent API
and the task use cases share about instances (registration, views, scheduler snapshots).

An instance's resources are columns: what it registered, what its live tasks use (recomputed from them),
its task-ENI capacity (the instance type's ENIs minus the primary, or the agent's ``maxTaskEnis``).
``agentConnected`` is true from its agent's poll on, until the agent reconciler finds the agent silent
for ``AGENT_TIMEOUT`` (``taskvpc.control.reconcile.loops.AgentSilence``); an instance that registered
but whose agent never polled is not connected, as a real one whose agent never opened its ACS session.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import instances_ecs, subnets as ec2_subnets
from taskvpc.control.ecs import tagging, task_state
from taskvpc.control.ecs.clusters import DEFAULT_CLUSTER, cluster_name_of, ensure_cluster
from taskvpc.domain import instance_types, lifecycle
from taskvpc.domain.arns import container_instance_arn, last_path_part, match_identifiers
from taskvpc.domain.errors import ClientError, invalid_parameter
from taskvpc.domain.lifecycle import ContainerInstanceEvent, ContainerInstanceStatus
from taskvpc.domain.pagination import Pager, is_str, page_size
from taskvpc.scheduler import InstanceSnapshot, compile_expression, ports
from taskvpc.scheduler.ports import HostPorts
from taskvpc.store import ec2_repo, ecs_repo, tasks_repo

Row = dict[str, Any]
Doc = dict[str, Any]

AGENT_TIMEOUT = 60.0  # seconds without a poll after which agentConnected is false (docs/agent-api.md)
MAX_DESCRIBE = 100
_BAD_TOKEN = invalid_parameter("Invalid nextToken.")  # unconfirmed wording
_EC2_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
FORCED_DEREGISTRATION_REASON = "Container instance deregistered"  # unconfirmed: ECS's text is not public


# ---- reading --------------------------------------------------------------------------------------


def agent_connected(row: Row, now: float) -> bool:
    """As last decided by a poll (connected) or the agent reconciler (silent too long)."""
    return row["status"] != "INACTIVE" and bool(row["agent_connected"])


def find_instances(
    conn: Connection, ctx: RequestContext, cluster: str, identifiers: list[str]
) -> tuple[dict[str, Row], dict[str, str]]:
    """(identifier -> row for those found, identifier -> the ARN to name in a MISSING failure)."""
    rows = tasks_repo.get_instances(conn, ctx.region, cluster, [last_path_part(i) for i in identifiers])
    return match_identifiers(
        identifiers, rows, lambda id_: container_instance_arn(ctx.region, ctx.account_id, cluster, id_)
    )


def require_instance(conn: Connection, ctx: RequestContext, cluster: str, identifier: str) -> Row:
    found, _missing = find_instances(conn, ctx, cluster, [identifier])
    if identifier not in found:
        raise ClientError(
            "InvalidParameterException",
            f"Referenced container instance {last_path_part(identifier)} not found.",  # unconfirmed
        )
    return found[identifier]


def _resource(name: str, value: int | list[str]) -> Doc:
    if isinstance(value, list):
        return {
            "name": name,
            "type": "STRINGSET",
            "doubleValue": 0.0,
            "longValue": 0,
            "integerValue": 0,
            "stringSetValue": value,
        }
    return {"name": name, "type": "INTEGER", "doubleValue": 0.0, "longValue": 0, "integerValue": value}


def remaining_resources(row: Row, held: HostPorts | None = None) -> list[Doc]:
    """CPU and MEMORY left; ``PORTS``/``PORTS_UDP`` list the ports in use (reserved and the tasks'), as
    ECS's ``remainingResources`` does, when ``held`` is given."""
    remaining = []
    for resource in row["body"]["registeredResources"]:
        if resource["name"] == "CPU":
            resource = {**resource, "integerValue": row["cpu_registered"] - row["cpu_used"]}
        elif resource["name"] == "MEMORY":
            resource = {**resource, "integerValue": row["memory_registered"] - row["memory_used"]}
        elif held is not None and resource["name"] in ("PORTS", "PORTS_UDP"):
            in_use = held.used.get("tcp" if resource["name"] == "PORTS" else "udp", set())
            resource = {**resource, "stringSetValue": [str(p) for p in sorted(in_use)]}
        remaining.append(resource)
    return remaining


def _attribute_view(name: str, value: str | None) -> Doc:
    return {"name": name} if value is None else {"name": name, "value": value}


def view(
    conn: Connection,
    ctx: RequestContext,
    row: Row,
    attributes: list[tuple[str, str | None, bool]] | None = None,
    include: frozenset[str] = frozenset({"TAGS"}),
) -> Doc:
    """The ``ContainerInstance`` shape, in the order real outputs print it."""
    if attributes is None:
        attributes = tasks_repo.attributes_of(conn, [row["id"]])[row["id"]]
    connected = agent_connected(row, ctx.now)
    doc: Doc = {
        "containerInstanceArn": row["arn"],
        "ec2InstanceId": row["ec2_instance_id"],
        "version": row["version"],
        "versionInfo": row["body"].get("versionInfo", {}),
        "remainingResources": remaining_resources(row, host_ports(conn, row)),
        "registeredResources": row["body"]["registeredResources"],
        "status": row["status"],
        "agentConnected": connected,
        "runningTasksCount": row["running_count"],
        "pendingTasksCount": row["pending_count"],
        "attributes": [_attribute_view(name, value) for name, value, _custom in attributes],
        "registeredAt": row["registered_at"],
        "attachments": [],
    }
    if "TAGS" in include:
        doc["tags"] = ecs_repo.get_tags(conn, row["arn"])
    if "CONTAINER_INSTANCE_HEALTH" in include:
        state = "OK" if connected else "INSUFFICIENT_DATA"
        heartbeat = row["agent_heartbeat"] or row["registered_at"]
        doc["healthStatus"] = {
            "overallStatus": state,
            "details": [
                {
                    "type": "CONTAINER_RUNTIME",
                    "status": state,
                    "lastUpdated": heartbeat,
                    "lastStatusChange": row["registered_at"],
                }
            ],
        }
    return doc


def snapshot(
    row: Row, attributes: list[tuple[str, str | None, bool]], groups: dict[str, int], now: float
) -> InstanceSnapshot:
    """The instance as the scheduler sees it."""
    return InstanceSnapshot(
        arn=row["arn"],
        instance_id=row["ec2_instance_id"],
        availability_zone=row["availability_zone"],
        remaining={
            "CPU": row["cpu_registered"] - row["cpu_used"],
            "MEMORY": row["memory_registered"] - row["memory_used"],
        },
        task_eni_free=row["eni_capacity"] - row["eni_used"],
        status=row["status"],
        agent_connected=agent_connected(row, now),
        attributes={name: value for name, value, _custom in attributes},
        task_groups=dict(groups),
        running_tasks_count=row["running_count"],
        pending_tasks_count=row["pending_count"],
        agent_version=row["body"].get("versionInfo", {}).get("agentVersion"),
        registered_at=datetime.fromtimestamp(row["registered_at"], UTC),
    )


def snapshots(
    conn: Connection,
    ctx: RequestContext,
    cluster: str,
    rows: list[Row] | None = None,
    *,
    with_ports: bool = False,
) -> list[InstanceSnapshot]:
    """The instances as the scheduler sees them; ``with_ports`` adds the host ports each one holds (a
    query per instance: only for tasks that need host ports)."""
    if rows is None:
        rows = tasks_repo.list_instances(conn, ctx.region, cluster, statuses=["ACTIVE", "DRAINING"])
    attributes = tasks_repo.attributes_of(conn, [r["id"] for r in rows])
    groups = tasks_repo.group_counts(conn, ctx.region, cluster)
    found = [snapshot(r, attributes[r["id"]], groups.get(r["id"], {}), ctx.now) for r in rows]
    if with_ports:
        for snap, row in zip(found, rows, strict=True):
            snap.ports = host_ports(conn, row)
    return found


def host_ports(conn: Connection, row: Row) -> HostPorts:
    """The ports an instance holds: those it registered as reserved, and its live tasks' bindings."""
    held = HostPorts()
    for resource in row["body"]["registeredResources"]:
        protocol = {"PORTS": "tcp", "PORTS_UDP": "udp"}.get(resource["name"])
        if protocol is None:
            continue
        for port in resource.get("stringSetValue") or []:
            with contextlib.suppress(ValueError):
                held.add(protocol, int(port))
    for task in tasks_repo.tasks_on_instance(conn, row["id"]):
        for container in task["body"]["containers"]:
            ports.held_by(container.get("networkBindings") or [], held)
    return held


# ---- registration ---------------------------------------------------------------------------------


@dataclass
class Registration:
    """What registering an instance takes, from the agent API or RegisterContainerInstance."""

    cluster: str
    ec2_instance_id: str
    cpu: int
    memory: int
    eni_capacity: int
    ports: list[str] = field(default_factory=list)
    ports_udp: list[str] = field(default_factory=list)
    instance_type: str | None = None
    subnet_id: str | None = None
    availability_zone: str | None = None  # when no subnet is given: the default subnet of this AZ
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    version_info: Doc = field(default_factory=dict)
    hostname: str | None = None
    capabilities: list[str] = field(default_factory=list)
    tags: list[dict[str, str]] = field(default_factory=list)
    existing_arn: str | None = None


def eni_capacity_for(instance_type: str | None, max_task_enis: int | None) -> int:
    """The instance's task-ENI slots: the explicit number, else its type's ENIs minus the primary one."""
    if max_task_enis is not None:
        if max_task_enis < 0:
            raise invalid_parameter("maxTaskEnis must not be negative.")
        return max_task_enis
    capacity = instance_types.task_eni_capacity(instance_type) if instance_type else None
    if capacity is None:
        raise invalid_parameter(
            f"Unknown instance type {instance_type!r}: give maxTaskEnis (the task ENIs it can hold)."
        )
    return capacity


def _instance_subnet(conn: Connection, ctx: RequestContext, reg: Registration) -> Doc:
    """The instance's primary subnet: the one named, else the default VPC's default subnet of its AZ."""
    if reg.subnet_id:
        return ec2_subnets.require(conn, ctx, reg.subnet_id)
    default_vpc = ec2_repo.default_vpc(conn, ctx.region)
    candidates = ec2_repo.list_subnets(conn, ctx.region, vpc_id=default_vpc["VpcId"]) if default_vpc else []
    candidates = sorted((s for s in candidates if s.get("DefaultForAz")), key=lambda s: s["AvailabilityZone"])
    if reg.availability_zone:
        candidates = [s for s in candidates if s["AvailabilityZone"] == reg.availability_zone]
    if not candidates:
        raise invalid_parameter(
            "No default subnet for the container instance: name its subnet (subnetId)."  # taskvpc's own
        )
    return candidates[0]


def register(conn: Connection, ctx: RequestContext, reg: Registration) -> Row:
    """Register (or, for the same EC2 instance or ARN, re-register) a container instance."""
    if not _EC2_INSTANCE_ID.fullmatch(reg.ec2_instance_id):
        raise invalid_parameter(f"Invalid EC2 instance id: {reg.ec2_instance_id}")  # unconfirmed
    if reg.cluster == DEFAULT_CLUSTER:
        ensure_cluster(conn, ctx, DEFAULT_CLUSTER)  # ECS creates `default` on first use
    task_state.lock(conn, ctx, reg.cluster)
    subnet = _instance_subnet(conn, ctx, reg)
    existing: Row | None
    if reg.existing_arn:
        existing = tasks_repo.get_instance(conn, last_path_part(reg.existing_arn))
        if existing is None or existing["status"] == "INACTIVE" or existing["cluster"] != reg.cluster:
            # real text (agent logs): "ClientException: Referenced container instance <id> not registered."
            raise ClientError(
                "ClientException",
                f"Referenced container instance {last_path_part(reg.existing_arn)} not registered.",
            )
    else:
        existing = tasks_repo.find_by_ec2_instance(conn, ctx.region, reg.cluster, reg.ec2_instance_id)
    attributes = dict(reg.attributes)
    # ECS derives these from EC2, whatever the agent says: the instance's primary subnet decides.
    attributes["ecs.availability-zone"] = subnet["AvailabilityZone"]
    attributes["ecs.subnet-id"] = subnet["SubnetId"]
    attributes["ecs.vpc-id"] = subnet["VpcId"]
    if reg.instance_type:
        attributes.setdefault("ecs.instance-type", reg.instance_type)
    trunk = instances_ecs.apply_trunking(conn, ctx, reg.ec2_instance_id, attributes, subnet, existing)
    eni_capacity = reg.eni_capacity if trunk is None else trunk  # awsvpcTrunking (control/ec2/instances_ecs)
    body: Doc = {
        "registeredResources": [
            _resource("CPU", reg.cpu),
            _resource("MEMORY", reg.memory),
            _resource("PORTS", reg.ports),
            _resource("PORTS_UDP", reg.ports_udp),
        ],
        "versionInfo": reg.version_info,
        "hostname": reg.hostname,
        "capabilities": reg.capabilities,
        "instanceType": reg.instance_type,
    }
    columns = {
        "availability_zone": subnet["AvailabilityZone"],
        "subnet_id": subnet["SubnetId"],
        "vpc_id": subnet["VpcId"],
        "cpu_registered": reg.cpu,
        "memory_registered": reg.memory,
        "eni_capacity": eni_capacity,
        "body": body,
    }
    if existing is not None:
        row = existing
        tasks_repo.update_instance(conn, row["id"], **columns)
        tasks_repo.bump_generation(conn, row["id"])
    else:
        instance_id = ctx.new_id().replace("-", "")
        row = {
            "id": instance_id,
            "region": ctx.region,
            "cluster": reg.cluster,
            "arn": container_instance_arn(ctx.region, ctx.account_id, reg.cluster, instance_id),
            "ec2_instance_id": reg.ec2_instance_id,
            "status": ContainerInstanceStatus.ACTIVE.value,
            "agent_heartbeat": None,
            "registered_at": ctx.now,
            "version": 1,
            "generation": 1,
            "cpu_used": 0,
            "memory_used": 0,
            "eni_used": 0,
            "running_count": 0,
            "pending_count": 0,
            **columns,
        }
        tasks_repo.insert_instance(conn, row)
    tasks_repo.delete_all_attributes(conn, row["id"], custom=False)
    custom = {
        name for name, _v, is_custom in tasks_repo.attributes_of(conn, [row["id"]])[row["id"]] if is_custom
    }
    tasks_repo.put_attributes(
        conn, row, [(k, v) for k, v in attributes.items() if k not in custom], custom=False
    )
    if reg.tags:
        ecs_repo.put_tags(conn, ctx.region, row["arn"], reg.tags)
    fresh = tasks_repo.get_instance(conn, row["id"])
    assert fresh is not None
    tasks_repo.refresh_usage(conn, fresh)
    task_state.refresh_cluster(conn, ctx, reg.cluster)
    ctx.notify.add(fresh["id"])
    return fresh


def _resources_from_api(items: list[Doc], instance_type: str | None) -> tuple[int, int, list[str], list[str]]:
    by_name = {r.get("name"): r for r in items}
    known = instance_types.lookup(instance_type) if instance_type else None
    cpu = by_name.get("CPU", {}).get("integerValue")
    memory = by_name.get("MEMORY", {}).get("integerValue")
    if cpu is None or memory is None:
        if known is None:
            raise invalid_parameter("totalResources must include CPU and MEMORY.")  # unconfirmed
        cpu = known.cpu_units if cpu is None else cpu
        memory = known.memory_mib if memory is None else memory
    ports = [str(p) for p in by_name.get("PORTS", {}).get("stringSetValue", [])]
    ports_udp = [str(p) for p in by_name.get("PORTS_UDP", {}).get("stringSetValue", [])]
    return int(cpu), int(memory), ports, ports_udp


def register_container_instance(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """The public call: what the ECS agent sends, with its EC2 instance identity document.

    taskvpc has no EC2 instances and no key to check ``instanceIdentityDocumentSignature`` with: the
    document is taken as the caller states it (the caller holds the root credentials anyway). Its
    ``instanceId``, ``availabilityZone`` and ``instanceType`` say which instance, where, and how many task
    ENIs it can hold; the primary subnet is the ``ecs.subnet-id`` attribute if given, else the default
    subnet of its AZ.
    """
    document_text = params.get("instanceIdentityDocument")
    if not document_text:
        raise invalid_parameter("An instance identity document is required.")  # unconfirmed wording
    try:
        document = orjson.loads(document_text)
    except orjson.JSONDecodeError:
        raise invalid_parameter("The instance identity document is not valid JSON.") from None  # unconfirmed
    if not isinstance(document, dict) or not isinstance(document.get("instanceId"), str):
        raise invalid_parameter("The instance identity document has no instanceId.")  # unconfirmed
    instance_type = document.get("instanceType")
    attributes = [(a["name"], a.get("value")) for a in params.get("attributes", [])]
    tags = params.get("tags", [])
    tagging.check_new_tags(tags)
    cpu, memory, ports, ports_udp = _resources_from_api(params.get("totalResources", []), instance_type)
    reg = Registration(
        cluster=cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER),
        ec2_instance_id=document["instanceId"],
        cpu=cpu,
        memory=memory,
        ports=ports,
        ports_udp=ports_udp,
        eni_capacity=eni_capacity_for(instance_type, None),
        instance_type=instance_type,
        subnet_id=dict(attributes).get("ecs.subnet-id"),
        availability_zone=document.get("availabilityZone"),
        attributes=attributes,
        version_info=params.get("versionInfo", {}),
        tags=tags,
        existing_arn=params.get("containerInstanceArn"),
    )
    with ctx.db.transaction() as conn:
        row = _wrap_subnet_errors(lambda: register(conn, ctx, reg))
        return {"containerInstance": view(conn, ctx, row)}


def _wrap_subnet_errors(action: Any) -> Row:
    try:
        row: Row = action()
    except ClientError as error:
        if error.code.startswith("InvalidSubnetID"):
            raise invalid_parameter(f"{error.message} (ErrorCode: {error.code})") from None
        raise
    return row


# ---- deregistration -------------------------------------------------------------------------------


def deregister(conn: Connection, ctx: RequestContext, row: Row, force: bool) -> Row:
    """INACTIVE; without ``force`` refused while tasks should run on it; with it, they are stopped."""
    if row["status"] == "INACTIVE":
        return row
    live = tasks_repo.tasks_on_instance(conn, row["id"])
    if not force and any(t["desired_status"] == "RUNNING" for t in live):
        # moto and real CLI scripts that match this text (InvalidParameterException)
        raise invalid_parameter("Found running tasks on the instance.")
    task_state.force_stop_all(conn, ctx, row, FORCED_DEREGISTRATION_REASON)
    instances_ecs.release_trunk(conn, row["id"])  # ECS deletes the trunk ENI on deregistration
    status = lifecycle.next_instance_status(
        ContainerInstanceStatus(row["status"]), ContainerInstanceEvent.DEREGISTER
    )
    tasks_repo.update_instance(conn, row["id"], status=status.value, agent_heartbeat=None)
    tasks_repo.bump_generation(conn, row["id"])
    fresh = tasks_repo.get_instance(conn, row["id"])
    assert fresh is not None
    tasks_repo.refresh_usage(conn, fresh)
    task_state.refresh_cluster(conn, ctx, row["cluster"])
    ctx.notify.add(row["id"])
    return fresh


def deregister_container_instance(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    cluster = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    with ctx.db.transaction() as conn:
        task_state.lock(conn, ctx, cluster)
        row = require_instance(conn, ctx, cluster, params["containerInstance"])
        row = deregister(conn, ctx, row, bool(params.get("force", False)))
        return {"containerInstance": view(conn, ctx, row)}


# ---- listing and describing -----------------------------------------------------------------------


def list_container_instances(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    cluster = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    pager = Pager.of(ctx.page_key, "ecs:ListContainerInstances", ctx.region, ctx.account_id, params)
    after = pager.decode(params.get("nextToken"), _BAD_TOKEN, is_str)
    limit = page_size(params.get("maxResults"), 100, 100)
    expression = compile_expression(params["filter"]) if params.get("filter") else None
    status = params.get("status")
    statuses = (
        [status] if status else ["REGISTERING", "REGISTRATION_FAILED", "ACTIVE", "DRAINING", "DEREGISTERING"]
    )
    with ctx.db.read() as conn:
        task_state.require_cluster(conn, ctx, cluster)
        # Without a filter expression the page is the SQL's; with one, every instance is evaluated.
        rows = tasks_repo.list_instances(
            conn, ctx.region, cluster, statuses=statuses, after=after, limit=None if expression else limit + 1
        )
        if expression is not None:
            rows = [
                row
                for row, snap in zip(rows, snapshots(conn, ctx, cluster, rows), strict=True)
                if expression.evaluate(snap)
            ]
    arns = [row["arn"] for row in rows]
    result: dict[str, Any] = {"containerInstanceArns": arns[:limit]}
    if len(arns) > limit:
        result["nextToken"] = pager.encode(arns[limit - 1])
    return result


def describe_container_instances(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    cluster = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    identifiers = params["containerInstances"]
    if len(identifiers) > MAX_DESCRIBE:
        raise invalid_parameter(f"containerInstances can have at most {MAX_DESCRIBE} items.")  # patterned
    include = frozenset(params.get("include", ()))
    with ctx.db.read() as conn:
        task_state.require_cluster(conn, ctx, cluster)
        found, missing = find_instances(conn, ctx, cluster, identifiers)
        attributes = tasks_repo.attributes_of(conn, [r["id"] for r in found.values()])
        described = [
            view(conn, ctx, found[i], attributes[found[i]["id"]], include) for i in identifiers if i in found
        ]
    failures = [{"arn": arn, "reason": "MISSING"} for arn in missing.values()]
    return {"containerInstances": described, "failures": failures}


def update_container_instances_state(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    cluster = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    status = params["status"]
    events = {"ACTIVE": ContainerInstanceEvent.ACTIVATE, "DRAINING": ContainerInstanceEvent.DRAIN}
    if status not in events:
        raise invalid_parameter(
            f"Container instances cannot be updated to status {status}; use ACTIVE or DRAINING."  # unconfirmed
        )
    identifiers = params["containerInstances"]
    if len(identifiers) > 10:
        raise invalid_parameter("containerInstances can have at most 10 items.")  # patterned, unconfirmed
    updated: list[Doc] = []
    failures: list[dict[str, str]] = []
    with ctx.db.transaction() as conn:
        task_state.lock(conn, ctx, cluster)
        found, missing = find_instances(conn, ctx, cluster, identifiers)
        for identifier in identifiers:
            row = found.get(identifier)
            if row is None:
                failures.append({"arn": missing[identifier], "reason": "MISSING"})
                continue
            current = ContainerInstanceStatus(row["status"])
            if not lifecycle.CONTAINER_INSTANCE.allows(current, events[status]):
                failures.append({"arn": row["arn"], "reason": current.value})  # e.g. INACTIVE [I]
                continue
            target = lifecycle.next_instance_status(current, events[status])
            if target is not current:
                tasks_repo.update_instance(conn, row["id"], status=target.value)
                tasks_repo.bump_generation(conn, row["id"])
                ctx.notify.add(row["id"])
            fresh = tasks_repo.get_instance(conn, row["id"])
            assert fresh is not None
            updated.append(view(conn, ctx, fresh))
        task_state.refresh_cluster(conn, ctx, cluster)
    return {"containerInstances": updated, "failures": failures}
