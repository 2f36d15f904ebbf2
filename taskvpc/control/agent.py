"""The agent API's use cases (docs/agent-api.md): register, desired state, report, deregister.

The control plane owns desired state, the agent known state. A poll or a report is a heartbeat. What
the agent reports is folded into each task's document by :func:`taskvpc.domain.tasks.apply_report`; the
ENI hooks run in the same transaction (attached: in-use; stopped: deleted and its address freed).
Errors are ``ClientError``s with an HTTP status; the API layer renders them as ``{"code", "message"}``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ecs import container_instances, task_state
from taskvpc.domain import tasks as taskdoc
from taskvpc.domain.errors import ClientError
from taskvpc.store import ec2_repo, tasks_repo

Row = dict[str, Any]
Doc = dict[str, Any]

_CLUSTER_NAME = re.compile(r"[a-zA-Z0-9_-]{1,255}")


def bad_request(message: str) -> ClientError:
    return ClientError("BadRequest", message, 400)


def _not_found(instance_id: str) -> ClientError:
    return ClientError("NotFound", f"No container instance {instance_id}.", 404)


def _instance(conn: Connection, ctx: RequestContext, instance_id: str) -> Row:
    row = tasks_repo.get_instance(conn, instance_id)
    if row is None or row["region"] != ctx.region:
        raise _not_found(instance_id)
    return row


# ---- register -------------------------------------------------------------------------------------


def _int(payload: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = payload.get(name, default)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise bad_request(f"{name} must be an integer.")
    return value


def _ports(resources: dict[str, Any], name: str) -> list[str]:
    values = resources.get(name) or []
    if not isinstance(values, list):
        raise bad_request(f"resources.{name} must be a list.")
    return [str(v) for v in values]


def register(ctx: RequestContext, payload: dict[str, Any]) -> dict[str, Any]:
    cluster = payload.get("cluster") or "default"
    if not isinstance(cluster, str) or not _CLUSTER_NAME.fullmatch(cluster):
        raise bad_request("cluster must be a cluster name.")
    instance_id = payload.get("instanceId")
    if not isinstance(instance_id, str):
        raise bad_request("instanceId is required.")
    resources = payload.get("resources") or {}
    attributes = payload.get("attributes") or {}
    if not isinstance(resources, dict) or not isinstance(attributes, dict):
        raise bad_request("resources and attributes must be objects.")
    cpu, memory = _int(resources, "CPU"), _int(resources, "MEMORY")
    if cpu is None or memory is None:
        raise bad_request("resources.CPU and resources.MEMORY are required.")
    instance_type = payload.get("instanceType")
    if instance_type is not None and not isinstance(instance_type, str):
        raise bad_request("instanceType must be a string.")
    capabilities = payload.get("capabilities") or []
    registration = container_instances.Registration(
        cluster=cluster,
        ec2_instance_id=instance_id,
        cpu=cpu,
        memory=memory,
        ports=_ports(resources, "PORTS"),
        ports_udp=_ports(resources, "PORTS_UDP"),
        eni_capacity=container_instances.eni_capacity_for(instance_type, _int(payload, "maxTaskEnis")),
        instance_type=instance_type,
        subnet_id=payload.get("subnetId"),
        attributes=[(str(k), None if v is None else str(v)) for k, v in attributes.items()],
        version_info={"agentVersion": str(payload["agentVersion"])} if payload.get("agentVersion") else {},
        hostname=payload.get("hostname"),
        capabilities=[str(c) for c in capabilities] if isinstance(capabilities, list) else [],
    )
    with ctx.db.transaction() as conn:
        row = container_instances.register(conn, ctx, registration)
    return {
        "containerInstanceArn": row["arn"],
        "availabilityZone": row["availability_zone"],
        "subnetId": row["subnet_id"],
        "vpcId": row["vpc_id"],
    }


# ---- desired state --------------------------------------------------------------------------------


def generation(ctx: RequestContext, instance_id: str, heartbeat: bool) -> int:
    """The instance's desired-state generation (what a waiting poll re-reads); optionally a heartbeat."""
    if heartbeat:
        with ctx.db.transaction() as conn:
            _instance(conn, ctx, instance_id)
            tasks_repo.set_heartbeat(conn, instance_id, ctx.now)
            found = tasks_repo.generation_of(conn, instance_id)
    else:
        with ctx.db.read() as conn:
            found = tasks_repo.generation_of(conn, instance_id)
    if found is None or found[2] != ctx.region:
        raise _not_found(instance_id)
    return found[0]


def _vpcs(conn: Connection, ctx: RequestContext, vpc_ids: list[str]) -> list[Doc]:
    vpcs = []
    for vpc in ec2_repo.list_vpcs(conn, ctx.region, vpc_ids):
        blocks = [a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet", [])] or [vpc["CidrBlock"]]
        subnets = [
            {
                "subnetId": s["SubnetId"],
                "cidrBlock": s["CidrBlock"],
                "availabilityZone": s["AvailabilityZone"],
                "gateway": str(ipaddress.ip_network(s["CidrBlock"]).network_address + 1),
            }
            for s in sorted(
                ec2_repo.list_subnets(conn, ctx.region, vpc_id=vpc["VpcId"]), key=lambda s: s["CidrBlock"]
            )
        ]
        vpcs.append({"vpcId": vpc["VpcId"], "cidrBlocks": blocks, "subnets": subnets})
    return vpcs


def _task_entry(task: Row) -> Doc:
    body, spec = task["body"], task["spec"]
    stopping = body["desiredStatus"] == "STOPPED"
    return {
        "taskArn": task["arn"],
        "desiredStatus": body["desiredStatus"],
        "stopReason": body.get("stoppedReason") if stopping else None,
        "family": spec["family"],
        "revision": spec["revision"],
        "networkMode": spec["networkMode"],
        "cpu": spec["cpu"],
        "memory": spec["memory"],
        "limits": spec.get("limits") or {"cpu": None, "memory": None},  # rows from before it: unknown
        "volumes": spec.get("volumes") or [],
        "eni": spec.get("eni"),
        "containers": spec["containers"],
    }


def desired_state(ctx: RequestContext, instance_id: str, after: int) -> dict[str, Any]:
    """The answer to a poll: generation, the instance's status, its VPCs and its tasks (a heartbeat too)."""
    with ctx.db.transaction() as conn:
        row = _instance(conn, ctx, instance_id)
        tasks_repo.set_heartbeat(conn, instance_id, ctx.now)
        live = tasks_repo.tasks_on_instance(conn, instance_id)
        vpc_ids = list(
            dict.fromkeys([row["vpc_id"], *(t["spec"]["eni"]["vpcId"] for t in live if t["spec"].get("eni"))])
        )
        tasks = [_task_entry(t) for t in live]
        vpcs = _vpcs(conn, ctx, vpc_ids)
        _add_security(conn, vpcs, tasks)
        return {
            "generation": row["generation"],
            "changed": row["generation"] > after,
            "instance": {
                "status": row["status"],
                "containerInstanceArn": row["arn"],
                "cluster": row["cluster"],
            },
            "vpcs": vpcs,
            "tasks": tasks,
        }


_RULE_FIELDS = (
    "IsEgress",
    "IpProtocol",
    "FromPort",
    "ToPort",
    "CidrIpv4",
    "CidrIpv6",
    "PrefixListId",
    "ReferencedGroupInfo",
)


def _add_security(conn: Connection, vpcs: list[Doc], tasks: list[Doc]) -> None:
    """Each task ENI's current groups (ModifyNetworkInterfaceAttribute may have changed them since RunTask)
    and, per VPC, the rules of every group those ENIs carry: what the agent compiles into nftables."""
    enis = {t["eni"]["networkInterfaceId"]: t["eni"] for t in tasks if t.get("eni")}
    current = ec2_repo.eni_groups(conn, list(enis))
    carried: dict[str, set[str]] = {}
    for eni_id, eni in enis.items():
        if current.get(eni_id):
            eni["securityGroupIds"] = current[eni_id]
        carried.setdefault(eni["vpcId"], set()).update(eni.get("securityGroupIds") or ())
    all_groups = sorted(set().union(*carried.values())) if carried else []
    rules = ec2_repo.rules_of(conn, all_groups)
    for vpc in vpcs:
        vpc["securityGroups"] = [
            {
                "groupId": group_id,
                "rules": [{k: r[k] for k in _RULE_FIELDS if k in r} for r in rules[group_id]],
            }
            for group_id in sorted(carried.get(vpc["vpcId"], ()))
        ]


# ---- report ---------------------------------------------------------------------------------------


def _opt(item: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = item.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise bad_request(f"{name} has the wrong type.")
    return value


def parse_report(payload: dict[str, Any]) -> list[taskdoc.TaskReport]:
    items = payload.get("tasks")
    if not isinstance(items, list):
        raise bad_request("tasks must be a list.")
    reports = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("taskArn"), str):
            raise bad_request("each task needs a taskArn.")
        containers = item.get("containers") or []
        if not isinstance(containers, list):
            raise bad_request("containers must be a list.")
        parsed = []
        for c in containers:
            if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                raise bad_request("each container needs a name.")
            parsed.append(
                taskdoc.ContainerReport(
                    name=c["name"],
                    status=_opt(c, "status", str),
                    runtime_id=_opt(c, "runtimeId", str),
                    exit_code=_opt(c, "exitCode", int),
                    reason=_opt(c, "reason", str),
                    health_status=_opt(c, "healthStatus", str),
                )
            )
        pull_started = _opt(item, "pullStartedAt", (int, float))
        pull_stopped = _opt(item, "pullStoppedAt", (int, float))
        reports.append(
            taskdoc.TaskReport(
                task_arn=item["taskArn"],
                known_status=_opt(item, "knownStatus", str),
                attachment_status=_opt(item, "attachmentStatus", str),
                pull_started_at=float(pull_started) if pull_started else None,
                pull_stopped_at=float(pull_stopped) if pull_stopped else None,
                reason=_opt(item, "reason", str),
                containers=tuple(parsed),
            )
        )
    return reports


def report(ctx: RequestContext, instance_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    reports = parse_report(payload)
    with ctx.db.transaction() as conn:
        row = _instance(conn, ctx, instance_id)
        tasks_repo.lock_cluster(conn, ctx.region, row["cluster"])
        tasks_repo.set_heartbeat(conn, instance_id, ctx.now)
        by_arn = {t["arn"]: t for t in tasks_repo.get_tasks_by_arn(conn, [r.task_arn for r in reports])}
        changed = desired_changed = False
        for item in reports:
            task = by_arn.get(item.task_arn)
            if task is None or task["container_instance_id"] != instance_id:
                continue  # not ours to report on (or gone): ignored, as backward moves are
            before = task_state.snapshot(task)
            containers = task["spec"]["containers"]
            effects = taskdoc.apply_report(
                task["body"],
                item,
                ctx.now,
                essential={c["name"]: bool(c.get("essential", True)) for c in containers},
                health_checked=[
                    c["name"] for c in containers if c.get("healthCheck") and c.get("essential", True)
                ],
                eni=task_state.eni_details(task["spec"]),
            )
            if effects.attach_eni:
                task_state.attach(conn, ctx, task, row)
            if effects.release_eni:
                task_state.release(conn, ctx, task)
            desired_changed |= effects.desired_changed or effects.release_eni
            changed |= task_state.save(conn, ctx, task, before)
        if changed:
            tasks_repo.refresh_usage(conn, row)
            task_state.refresh_cluster(conn, ctx, row["cluster"])
        if desired_changed:
            tasks_repo.bump_generation(conn, instance_id)
            ctx.notify.add(instance_id)
        found = tasks_repo.generation_of(conn, instance_id)
        assert found is not None
        return {"generation": found[0]}


# ---- deregister -----------------------------------------------------------------------------------


def deregister(ctx: RequestContext, instance_id: str) -> dict[str, Any]:
    """The agent leaves for good: its instance goes INACTIVE, anything left on it is stopped."""
    with ctx.db.transaction() as conn:
        row = _instance(conn, ctx, instance_id)
        tasks_repo.lock_cluster(conn, ctx.region, row["cluster"])
        row = container_instances.deregister(conn, ctx, row, force=True)
        return {"containerInstanceArn": row["arn"], "status": row["status"]}
