"""The agent API's use cases (docs/agent-api.md): register, desired state, report, deregister.

The control plane owns desired state, the agent known state. A poll or a report is a heartbeat. What
the agent reports is folded into each task's document by :func:`taskvpc.domain.tasks.apply_report`; the
ENI hooks run in the same transaction (attached: in-use; stopped: deleted and its address freed).
Errors are ``ClientError``s with an HTTP status; the API layer renders them as ``{"code", "message"}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, TypeVar

from sqlalchemy import Connection

from taskvpc.agentapi import answer, delta
from taskvpc.agentapi.answer import Section
from taskvpc.agentapi.credentials import CREDENTIALS, TaskCredentials
from taskvpc.agentapi.flowlogs import FLOW_LOGS, FlowLogWatch, FlowRecords, records_from_wire
from taskvpc.agentapi.loadbalancers import LOAD_BALANCERS, DesiredLoadBalancer
from taskvpc.agentapi.logdriver import LOG_ACKS, deliveries_from_report
from taskvpc.agentapi.network import Eni, SecurityGroup, Subnet, Vpc
from taskvpc.agentapi.overlay import OVERLAY, OverlayVpc
from taskvpc.agentapi.probes import PROBES, Probe, ProbeResult, results_from_wire
from taskvpc.agentapi.reports import Report, TaskReport, WireError
from taskvpc.agentapi.tasks import DesiredTask
from taskvpc.control import agent_inputs, probes, task_credentials
from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import flow_logs, instances_ecs, overlay as ec2_overlay
from taskvpc.control.ecs import container_instances, tagging, task_state
from taskvpc.control.elbv2 import agent_section as elb_agent
from taskvpc.control.logs import delivery as log_delivery
from taskvpc.domain import tasks as taskdoc
from taskvpc.domain.errors import ClientError
from taskvpc.netmodel.security_groups import rule_from_doc
from taskvpc.store import ec2_repo, tasks_repo

Row = dict[str, Any]
Doc = dict[str, Any]
T = TypeVar("T")

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
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31
    ):
        raise bad_request(f"{name} must be an integer from 0 to 2147483647.")  # the store's int column
    return value


def _optional_str(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is not None and not isinstance(value, str):
        raise bad_request(f"{name} must be a string.")
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
    try:  # ECS_CONTAINER_INSTANCE_TAGS, ECS_CONTAINER_INSTANCE_PROPAGATE_TAGS_FROM (control/ec2/instances_ecs)
        tags = instances_ecs.registration_tags(ctx, instance_id, payload)
    except instances_ecs.TagsRefused as refused:
        raise bad_request(str(refused)) from None
    tagging.check_new_tags(tags)
    registration = container_instances.Registration(
        cluster=cluster,
        ec2_instance_id=instance_id,
        cpu=cpu,
        memory=memory,
        ports=_ports(resources, "PORTS"),
        ports_udp=_ports(resources, "PORTS_UDP"),
        eni_capacity=container_instances.eni_capacity_for(instance_type, _int(payload, "maxTaskEnis")),
        instance_type=instance_type,
        subnet_id=_optional_str(payload, "subnetId"),
        attributes=task_credentials.withhold_attributes(
            [(str(k), None if v is None else str(v)) for k, v in attributes.items()]
        ),
        version_info={"agentVersion": str(payload["agentVersion"])} if payload.get("agentVersion") else {},
        hostname=_optional_str(payload, "hostname"),
        capabilities=[str(c) for c in capabilities] if isinstance(capabilities, list) else [],
        tags=tags,
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


# Each section of the answer has one contributor here: a function of the instance's rows that returns the
# section's typed value. A capability that needs something on the agent registers its section
# (taskvpc.agentapi.answer.register_section) and its contributor (@contributes) and touches nothing else.


@dataclass
class AnswerSource:
    """What contributors read: the instance and its live tasks, in the answer's transaction.

    ``task_rows`` are the tasks whose entries the ``tasks`` section carries: every live task in a full
    answer, only those changed since the agent's generation in a delta (``taskvpc.agentapi.delta``).
    ``tasks`` (every live task) is read on first use; the other sections read ``inputs`` instead (each
    live task's ENI and role, kept between polls and brought up to date from the changed rows:
    ``agent_inputs``), so a delta reads the rows that changed, not every row of the instance.
    """

    conn: Connection
    ctx: RequestContext
    instance: Row
    loaded_tasks: list[Row] | None = None
    changed_tasks: list[Row] | None = None  # a delta: the live tasks changed since the agent's generation
    since: int | None = None  # a delta: the generation ``changed_tasks`` and ``removed`` are counted from
    removed: list[str] = field(default_factory=list)  # a delta: tasks that left the list after ``since``

    @cached_property
    def tasks(self) -> list[Row]:
        if self.loaded_tasks is not None:
            return self.loaded_tasks
        return tasks_repo.tasks_on_instance(self.conn, self.instance["id"])

    @property
    def task_rows(self) -> list[Row]:
        return self.tasks if self.changed_tasks is None else self.changed_tasks

    @cached_property
    def inputs(self) -> agent_inputs.TaskInputs:
        """Every live task's ENI (with its current groups: ModifyNetworkInterfaceAttribute may have changed
        them since RunTask) and role, as of the instance's generation."""
        return _inputs(self)

    @property
    def enis(self) -> Mapping[str, Eni]:
        """Each live task's ENI by task ARN."""
        return self.inputs.enis

    @cached_property
    def task_row_enis(self) -> dict[str, Eni]:
        return _enis_of(self.conn, self.task_rows)

    @cached_property
    def load_balancers(self) -> list[Doc]:
        """The load balancers this instance runs (their ENIs' groups and their own section read them)."""
        return elb_agent.owned_load_balancers(self.conn, self.ctx, self.instance["id"])


def _inputs(source: AnswerSource) -> agent_inputs.TaskInputs:
    instance_id, generation = source.instance["id"], source.instance["generation"]
    kept = agent_inputs.copies(source.ctx.db)
    found = _brought_up_to_date(source, kept.get(instance_id), generation)
    if found is None:  # a full answer, nothing kept, or a copy that does not add up: every live row
        enis = source.task_row_enis if source.changed_tasks is None else _enis_of(source.conn, source.tasks)
        found = agent_inputs.TaskInputs.of(generation, source.tasks, enis)
    kept.put(instance_id, found)
    return found


def _brought_up_to_date(
    source: AnswerSource, held: agent_inputs.TaskInputs | None, generation: int
) -> agent_inputs.TaskInputs | None:
    """``held`` as of ``generation`` from the rows changed since it, or None when it cannot be."""
    if held is None or held.generation > generation or source.changed_tasks is None:
        return None
    assert source.since is not None
    instance_id = source.instance["id"]
    if held.generation >= source.since:  # the delta's changes are a superset of those since ``held``
        changed, enis, removed = source.changed_tasks, source.task_row_enis, source.removed
    else:
        changed, removed = tasks_repo.tasks_changed_since(source.conn, instance_id, held.generation)
        enis = _enis_of(source.conn, changed)
    if held.generation == generation and not changed and not removed:
        return held  # nothing since: no task can have stopped (and been purged) without a new generation
    found = held.updated(generation, changed, enis, removed)
    if len(found.live) != tasks_repo.live_task_count(source.conn, instance_id):
        return None  # rows went without a trace (stopped and purged since ``held``)
    return found


def _enis_of(conn: Connection, tasks: list[Row]) -> dict[str, Eni]:
    enis = {t["arn"]: Eni.from_wire(t["spec"]["eni"]) for t in tasks if t["spec"].get("eni")}
    current = ec2_repo.eni_groups(conn, [e.network_interface_id for e in enis.values()])
    return {
        arn: replace(eni, security_group_ids=tuple(current[eni.network_interface_id]))
        if current.get(eni.network_interface_id)
        else eni
        for arn, eni in enis.items()
    }


Contributor = Callable[[AnswerSource], Any]
CONTRIBUTORS: dict[str, tuple[Section[Any], Contributor]] = {}


def contributes(section: Section[T]) -> Callable[[Callable[[AnswerSource], T]], Callable[[AnswerSource], T]]:
    def register(build: Callable[[AnswerSource], T]) -> Callable[[AnswerSource], T]:
        if section.key in CONTRIBUTORS:
            raise ValueError(f"section {section.key!r} has a contributor already")
        CONTRIBUTORS[section.key] = (section, build)
        return build

    return register


@contributes(answer.INSTANCE)
def _instance_section(source: AnswerSource) -> answer.Instance:
    row = source.instance
    return answer.Instance(row["status"], row["arn"], row["cluster"])


@contributes(answer.TASKS)
def _tasks_section(source: AnswerSource) -> tuple[DesiredTask, ...]:
    tasks = []
    for task in source.task_rows:
        body, spec = task["body"], task["spec"]
        desired = taskdoc.agent_desired_status(body)  # RUNNING while its targets drain
        stopping = desired == "STOPPED"
        entry = {
            "taskArn": task["arn"],
            "desiredStatus": desired,
            "stopReason": body.get("stoppedReason") if stopping else None,
            "family": spec["family"],
            "revision": spec["revision"],
            "networkMode": spec["networkMode"],
            "cpu": spec["cpu"],
            "memory": spec["memory"],
            "limits": spec.get("limits") or {},  # rows from before it: unknown
            "volumes": spec.get("volumes") or [],
            "containers": spec["containers"],
            "taskRoleArn": spec.get("taskRoleArn"),
            "executionRoleArn": spec.get("executionRoleArn"),
            "launchType": body.get("launchType"),
            "availabilityZone": body.get("availabilityZone"),
            "portBindings": [b for bound in spec.get("networkBindings") or [] for b in bound],
        }
        tasks.append(replace(DesiredTask.from_wire(entry), eni=source.task_row_enis.get(task["arn"])))
    return tuple(tasks)


@contributes(answer.VPCS)
def _vpcs_section(source: AnswerSource) -> tuple[Vpc, ...]:
    """The instance's own VPC and the VPCs of its tasks' ENIs, with all their subnets."""
    vpc_ids = list(dict.fromkeys([source.instance["vpc_id"], *source.inputs.vpc_ids]))
    region = source.ctx.region
    vpcs = []
    for vpc in ec2_repo.list_vpcs(source.conn, region, vpc_ids):
        blocks = [a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet", [])] or [vpc["CidrBlock"]]
        subnets = sorted(
            ec2_repo.list_subnets(source.conn, region, vpc_id=vpc["VpcId"]), key=lambda s: s["CidrBlock"]
        )
        vpcs.append(
            Vpc(
                vpc["VpcId"],
                tuple(blocks),
                tuple(Subnet.of(s["SubnetId"], s["CidrBlock"], s["AvailabilityZone"]) for s in subnets),
            )
        )
    return tuple(vpcs)


@contributes(answer.SECURITY_GROUPS)
def _security_groups_section(source: AnswerSource) -> tuple[SecurityGroup, ...]:
    """Every group the task ENIs carry, with all its rules: what the agent compiles into nftables."""
    carried = dict(source.inputs.carried_groups)  # group id -> VPC id
    carried.update(elb_agent.carried_groups(source.load_balancers))  # the LB ENIs' groups too
    rules = ec2_repo.rules_of(source.conn, sorted(carried))
    groups = []
    for group_id in sorted(carried):
        parsed = [rule_from_doc(r) for r in rules[group_id]]
        groups.append(
            SecurityGroup(
                group_id,
                carried[group_id],
                tuple(r for r in parsed if r.direction == "ingress"),
                tuple(r for r in parsed if r.direction == "egress"),
            )
        )
    return tuple(groups)


@contributes(CREDENTIALS)
def _credentials_section(source: AnswerSource) -> tuple[TaskCredentials, ...]:
    """The current role credentials of each running task with a ``taskRoleArn`` (see task_credentials)."""
    task_credentials.forget_expired(source.ctx.now)
    out = []
    for arn, role in source.inputs.roles.items():
        creds = task_credentials.current(source.ctx, arn, role, source.conn)
        if creds is not None:
            out.append(creds)
    return tuple(out)


@contributes(FLOW_LOGS)
def _flow_logs_section(source: AnswerSource) -> tuple[FlowLogWatch, ...]:
    """The instance's task ENIs that some flow log covers, and what those flow logs want."""
    return flow_logs.watches(source.conn, source.ctx, list(source.enis.values()))


@contributes(LOAD_BALANCERS)
def _load_balancers_section(source: AnswerSource) -> tuple[DesiredLoadBalancer, ...]:
    """The load balancers this instance runs (control/elbv2/agent_section.py picks one agent per LB)."""
    return elb_agent.load_balancers_for(source.conn, source.ctx, source.load_balancers)


@contributes(PROBES)
def _probes_section(source: AnswerSource) -> tuple[Probe, ...]:
    """The reachability probes the console asked this instance's agent to run (control/probes.py)."""
    return probes.BOOK.pending_for(source.instance["id"], source.ctx.now)


@contributes(OVERLAY)
def _overlay_section(source: AnswerSource) -> tuple[OverlayVpc, ...]:
    """The members of this host's VPCs on other hosts, for VXLAN (control/ec2/overlay.py)."""
    return ec2_overlay.section(source.conn, source.ctx, source.instance["id"], source.enis.values())


def desired_state(
    ctx: RequestContext,
    instance_id: str,
    after: int,
    since: int | None = None,
    have: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The answer to a poll: generation and every contributed section (a heartbeat too).

    With ``since`` (the generation the agent holds) a delta (``taskvpc.agentapi.delta``): the tasks
    changed after it, those gone, and the other sections whose digest differs from ``have``. A ``since``
    ahead of the instance's generation (the store was replaced) gets the full state.
    """
    with ctx.db.transaction() as conn:
        row = _instance(conn, ctx, instance_id)
        tasks_repo.set_heartbeat(conn, instance_id, ctx.now)
        current = row["generation"]
        if since is not None and not 0 <= since <= current:
            since = None
        if since is None:
            source = AnswerSource(conn, ctx, row, tasks_repo.tasks_on_instance(conn, instance_id))
            removed: list[str] = []
            count = 0
        else:
            changed_rows, removed = tasks_repo.tasks_changed_since(conn, instance_id, since)
            source = AnswerSource(conn, ctx, row, changed_tasks=changed_rows, since=since, removed=removed)
            count = len(source.inputs.live)  # checked against the store's count when brought up to date
        whole = {
            key: section.to_wire(build(source))
            for key, (section, build) in CONTRIBUTORS.items()
            if key != answer.TASKS.key
        }
        tasks = answer.TASKS.to_wire(_tasks_section(source))
        return delta.write_answer(
            current,
            current > after,
            whole,
            tasks=tasks,
            since=since,
            removed=removed,
            task_count=count,
            have=have,
        )


# ---- report ---------------------------------------------------------------------------------------


def parse_report(payload: dict[str, Any]) -> list[TaskReport]:
    try:
        return list(Report.from_wire(payload).tasks)
    except WireError as error:
        raise bad_request(str(error)) from None


def _flow_records(payload: dict[str, Any]) -> tuple[FlowRecords, ...]:
    try:
        return records_from_wire(payload)
    except WireError as error:
        raise bad_request(str(error)) from None


def _probe_results(payload: dict[str, Any]) -> tuple[ProbeResult, ...]:
    try:
        return results_from_wire(payload)
    except WireError as error:
        raise bad_request(str(error)) from None


def report(ctx: RequestContext, instance_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    reports = parse_report(payload)
    flows = _flow_records(payload)  # read before anything is written: a malformed entry changes nothing
    probed = _probe_results(payload)
    if probed:  # held in memory (control/probes.py): answered probes leave the section
        probes.BOOK.record(instance_id, probed, ctx.now)
    logs = _log_events(ctx, instance_id, payload)  # the awslogs driver's events: their own transactions
    if flows:  # their own transactions too; never holding up a task's state
        flow_logs.deliver_reported(ctx, instance_id, flows)
    if (logs or flows or probed) and not reports:
        return {"generation": generation(ctx, instance_id, heartbeat=False), **logs}
    with ctx.db.transaction() as conn:
        row = _instance(conn, ctx, instance_id)
        tasks_repo.lock_cluster(conn, ctx.region, row["cluster"])
        tasks_repo.set_heartbeat(conn, instance_id, ctx.now)
        by_arn = {t["arn"]: t for t in tasks_repo.get_tasks_by_arn(conn, [r.task_arn for r in reports])}
        desired_changed = released = False
        total = [0] * len(tasks_repo.USAGE_COLUMNS)
        for item in reports:
            task = by_arn.get(item.task_arn)
            if task is None or task["container_instance_id"] != instance_id:
                continue  # not ours to report on (or gone): ignored, as backward moves are
            before = task_state.snapshot(task)
            counted = task_state.counted(task)
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
                released |= bool(task["eni_id"])
                task_state.release(conn, ctx, task, announce=False)
            desired_changed |= effects.desired_changed or effects.release_eni
            if task_state.save(conn, ctx, task, before):
                change = task_state.change_of(task, counted)
                total = [a + b for a, b in zip(total, change, strict=True)]
        # the reported tasks' share of the usage and counters, not a recount of every live task of the
        # instance and the cluster per batch of reports
        task_state.apply_counts(conn, ctx, row["cluster"], instance_id, total)
        if released:  # the other overlay hosts woken once for the whole report
            ec2_overlay.members_changed(conn, ctx, instance_id)
        if desired_changed:
            tasks_repo.bump_generation(conn, instance_id)
            ctx.notify.add(instance_id)
        found = tasks_repo.generation_of(conn, instance_id)
        assert found is not None
        return {"generation": found[0], **logs}


def _log_events(ctx: RequestContext, instance_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The report's ``logEvents`` delivered (control/logs/delivery.py): ``{"logAcks": [...]}``, or {}."""
    try:
        deliveries = deliveries_from_report(payload)
    except WireError as error:
        raise bad_request(str(error)) from None
    if not deliveries:
        return {}
    return {LOG_ACKS: [ack.to_wire() for ack in log_delivery.deliver(ctx, instance_id, deliveries)]}


# ---- deregister -----------------------------------------------------------------------------------


def deregister(ctx: RequestContext, instance_id: str) -> dict[str, Any]:
    """The agent leaves for good: its instance goes INACTIVE, anything left on it is stopped."""
    with ctx.db.transaction() as conn:
        row = _instance(conn, ctx, instance_id)
        tasks_repo.lock_cluster(conn, ctx.region, row["cluster"])
        row = container_instances.deregister(conn, ctx, row, force=True)
    agent_inputs.copies(ctx.db).drop(instance_id)  # its tasks are gone: no poll will bring it up to date
    return {"containerInstanceArn": row["arn"], "status": row["status"]}
