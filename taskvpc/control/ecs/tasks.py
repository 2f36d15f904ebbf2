"""Task use cases: RunTask, StartTask, StopTask, DescribeTasks, ListTasks.

RunTask validates as ECS does (messages beside each check, ``# unconfirmed`` where no real output was
found), places with the pure scheduler over a snapshot of the cluster taken under the cluster's lock, and
creates each placed task in ``PROVISIONING`` with its ENI reserved in a subnet of the chosen instance's AZ
(``reserve_task_eni``). What then happens to a task is the agent's to report (``taskvpc.control.agent``).
When nothing fits, the answer is ``failures`` (one per instance, with the reason it failed on), not an
error. ``clientToken`` makes RunTask idempotent per cluster for 24 hours (the API reference).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from sqlalchemy import Connection

from taskvpc.agentapi.network import Eni
from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import security_groups, subnets as ec2_subnets
from taskvpc.control.ec2.task_enis import reserve_task_eni
from taskvpc.control.ecs import capacity_providers, container_instances, tagging, task_roles, task_state
from taskvpc.control.ecs.clusters import DEFAULT_CLUSTER, cluster_name_of
from taskvpc.control.ecs.task_definitions import find_task_definition
from taskvpc.domain import capacity, tasks as taskdoc
from taskvpc.domain.arns import container_arn, foreign_arn, last_path_part, match_identifiers, task_arn
from taskvpc.domain.errors import ClientError, ecs_client_exception, invalid_parameter
from taskvpc.domain.lifecycle import StopCode, TaskEvent
from taskvpc.domain.pagination import Pager, is_str, page_size
from taskvpc.domain.taskdef import FARGATE_SIZES, os_type
from taskvpc.scheduler import (
    PlacementFailure,
    TaskRequest,
    constraints_from_api,
    instance_failure,
    place,
    required_from_api,
    strategies_from_api,
)
from taskvpc.scheduler.model import InstanceSnapshot
from taskvpc.scheduler.ports import HostPorts, PortNeeds, bind as bind_ports, port_needs
from taskvpc.store import ecs_repo, services_repo, tasks_repo

Row = dict[str, Any]
Doc = dict[str, Any]

MAX_COUNT = 10  # RunTask count (API reference)
MAX_START_INSTANCES = 10  # StartTask containerInstances (API reference)
MAX_SUBNETS = 16
MAX_SECURITY_GROUPS = 5
MAX_DESCRIBE = 100
MAX_CLIENT_TOKEN = 64  # "up to 64 ASCII characters in the range of 33-126" (API reference, idempotency)
TOKEN_TTL = 24 * 3600.0
_BAD_TOKEN = invalid_parameter("Invalid nextToken.")  # unconfirmed wording
_TASK_NOT_FOUND = "The referenced task was not found."  # real text (StopTask outputs in public code)
NO_FARGATE_CAPACITY = (
    "No Fargate capacity is registered in this cluster: start an agent as Fargate capacity "
    "(taskvpc up does, as root)."
)  # taskvpc's own: AWS always has Fargate capacity


# ---- validation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """A validated ``awsvpcConfiguration``: its subnets (EC2 documents), groups, VPC and AZs."""

    subnets: list[Doc]
    group_ids: list[str]
    vpc_id: str

    @property
    def availability_zones(self) -> frozenset[str]:
        return frozenset(s["AvailabilityZone"] for s in self.subnets)


def _network(
    conn: Connection, ctx: RequestContext, td: Doc, params: dict[str, Any], launch_type: str = "EC2"
) -> Network | None:
    mode = td.get("networkMode") or "bridge"
    configuration = params.get("networkConfiguration")
    if mode != taskdoc.AWSVPC:
        if configuration:
            # real text (DataDog/test-infra-definitions#57, muya/amazon-ecs-run-task#7)
            raise invalid_parameter(
                "Network Configuration is not valid for the given networkMode of this task definition."
            )
        return None
    awsvpc = (configuration or {}).get("awsvpcConfiguration")
    if not awsvpc:
        # real text for CreateService (tryretool/retool-onpremise#84); RunTask's wording inferred
        raise invalid_parameter(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified."
        )
    subnet_ids = list(awsvpc.get("subnets") or [])
    group_ids = list(awsvpc.get("securityGroups") or [])
    if not subnet_ids:
        raise invalid_parameter("subnets can not be empty.")  # real text (awslabs/fargatecli#73)
    if len(subnet_ids) > MAX_SUBNETS:
        # ECS's "<member> can have at most <n> items." form (seen for taskIds) # unconfirmed here
        raise invalid_parameter(f"subnets can have at most {MAX_SUBNETS} items.")
    if len(group_ids) > MAX_SECURITY_GROUPS:
        raise invalid_parameter(f"securityGroups can have at most {MAX_SECURITY_GROUPS} items.")  # as above
    if awsvpc.get("assignPublicIp") == "ENABLED" and launch_type != capacity.FARGATE:
        # real text (hashicorp/waypoint#643, aws/aws-cdk#13348)
        raise invalid_parameter("Assign public IP is not supported for this launch type.")
    subnets: list[Doc] = []
    for subnet_id in dict.fromkeys(subnet_ids):
        try:
            subnets.append(ec2_subnets.require(conn, ctx, subnet_id))
        except ClientError as error:
            # real form: "Error retrieving subnet information for [subnet-a, subnet-b]: The subnet ID
            # 'subnet-b' does not exist (ErrorCode: InvalidSubnetID.NotFound)" (public CDK/CLI outputs)
            raise invalid_parameter(
                f"Error retrieving subnet information for [{', '.join(subnet_ids)}]: "
                f"{error.message} (ErrorCode: {error.code})"
            ) from None
    vpc_ids = list(dict.fromkeys(s["VpcId"] for s in subnets))
    if len(vpc_ids) > 1:
        raise invalid_parameter("The subnets must all belong to the same VPC.")  # unconfirmed wording
    for group_id in dict.fromkeys(group_ids):
        try:
            group = security_groups.require(conn, ctx, group_id)
        except ClientError as error:
            # the same form for groups (a real output quoted in public notes, InvalidGroup.NotFound)
            raise invalid_parameter(
                f"Error retrieving security group information for [{', '.join(group_ids)}]: "
                f"{error.message} (ErrorCode: {error.code})"
            ) from None
        if group["VpcId"] != vpc_ids[0]:
            raise invalid_parameter(
                f"Security group {group_id} and subnet {subnets[0]['SubnetId']} belong to different networks."
            )  # EC2's text for the same mistake; ECS's own wording unconfirmed
    return Network(subnets, list(dict.fromkeys(group_ids)), vpc_ids[0])


def _check_launch_type(td: Doc, launch_type: str, overrides: Doc) -> None:
    if launch_type not in td.get("compatibilities", ["EC2"]):
        # real form: "Task definition does not support launch_type FARGATE." (public outputs)
        raise invalid_parameter(f"Task definition does not support launch_type {launch_type}.")
    if launch_type == capacity.FARGATE and (overrides.get("cpu") or overrides.get("memory")):
        cpu, memory = taskdoc.task_limits(td, overrides)
        if cpu is None or memory is None or memory not in FARGATE_SIZES.get(cpu, frozenset()):
            # the RegisterTaskDefinition text for the same sizes (taskdef._check_fargate_task)
            raise invalid_parameter(
                f"No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. "
                "See the Amazon ECS documentation for the valid values."
            )


def _require_task_definition(conn: Connection, ctx: RequestContext, identifier: str) -> Doc:
    try:
        td = find_task_definition(conn, ctx, identifier)
    except ClientError:
        td = None
    if td is None:
        raise ecs_client_exception("TaskDefinition not found.")  # real text (many public Go clients match it)
    return td


@dataclass
class Launch:
    """What one RunTask/StartTask call creates, validated."""

    cluster: Doc
    td: Doc
    network: Network | None
    overrides: Doc
    containers: list[Doc]
    cpu: int
    memory: int
    group: str
    started_by: str | None
    tags: list[dict[str, str]]
    service_name: str | None = None  # tasks a service's scheduler starts (ListTasks serviceName)
    launch_type: str = "EC2"
    strategy: list[Doc] = field(default_factory=list)  # capacityProviderStrategy, normalised
    capacity_provider: str | None = None  # of the tasks being created now
    platform_version: str | None = None  # FARGATE: the resolved platform version
    ports: PortNeeds = field(default_factory=PortNeeds)  # host ports of a bridge/host task


_STARTED_BY = re.compile(r"[A-Za-z0-9_/-]{1,128}")  # "up to 128 letters, numbers, hyphens, /, _" (API)
_GROUP_MAX = 255  # the group column; ECS documents no limit # unconfirmed


def _check_request(params: dict[str, Any]) -> None:
    started_by = params.get("startedBy")
    if started_by is not None and not _STARTED_BY.fullmatch(started_by):
        raise invalid_parameter(
            "startedBy can be up to 128 letters (uppercase and lowercase), numbers, hyphens, "
            "forward slashes, and underscores."
        )  # unconfirmed wording (the API reference's description)
    group = params.get("group")
    if group is not None and not 1 <= len(group) <= _GROUP_MAX:
        raise invalid_parameter(f"group can be up to {_GROUP_MAX} characters.")  # unconfirmed wording
    if params.get("enableExecuteCommand"):
        raise ClientError("UnsupportedFeatureException", "taskvpc does not support ECS Exec yet.")


def prepare_launch(conn: Connection, ctx: RequestContext, cluster: Doc, params: dict[str, Any]) -> Launch:
    """Validate what RunTask/StartTask (or a service's deployment, in the same shape) asks to start."""
    _check_request(params)
    td = _require_task_definition(conn, ctx, params["taskDefinition"])
    launch_type, strategy = capacity_providers.launch_choice(conn, ctx, cluster, params)
    overrides = params.get("overrides", {})
    _check_launch_type(td, launch_type, overrides)
    platform_version = capacity.resolve_platform_version(launch_type, params.get("platformVersion"))
    network = _network(conn, ctx, td, params, launch_type)
    taskdoc.check_overrides(td, overrides)
    containers = taskdoc.effective_containers(td, overrides)
    cpu, memory = taskdoc.task_resources(td, overrides, containers)
    tags = params.get("tags", [])
    tagging.check_new_tags(tags)
    return Launch(
        cluster=cluster,
        td=td,
        network=network,
        overrides=overrides,
        containers=containers,
        cpu=cpu,
        memory=memory,
        group=params.get("group") or f"family:{td['family']}",
        started_by=params.get("startedBy"),
        tags=tags,
        launch_type=launch_type,
        strategy=strategy,
        platform_version=platform_version,
        ports=port_needs(td.get("networkMode") or "bridge", containers),
    )


def _held_ports(
    launch: Launch, assignments: Sequence[str], snaps: Mapping[str, InstanceSnapshot]
) -> dict[str, HostPorts]:
    """The host ports of each instance that got a task of a bridge/host ``launch``, before the tasks'
    dynamic ports are chosen: what its snapshot held, and every task's static ports of this call."""
    if not launch.ports:
        return {}
    held: dict[str, HostPorts] = {}
    for arn in assignments:
        if arn not in held:
            held[arn] = snaps[arn].ports.copy()
            for protocol, port in launch.ports.static:
                held[arn].add(protocol, port)
    return held


# ---- creating tasks -------------------------------------------------------------------------------


def _eni_spec(eni: Doc, subnet: Doc) -> Doc:
    attachment_id = eni["Description"].rsplit("/", 1)[-1]
    return Eni.from_ec2(eni, subnet["CidrBlock"], attachment_id).to_wire()


def _create_task(
    conn: Connection,
    ctx: RequestContext,
    launch: Launch,
    instance: Row,
    architecture: str | None,
    held_ports: HostPorts | None = None,
) -> Row:
    cluster_name = launch.cluster["clusterName"]
    task_id = ctx.new_id().replace("-", "")
    arn = task_arn(ctx.region, ctx.account_id, cluster_name, task_id)
    limit_cpu, limit_memory = taskdoc.task_limits(launch.td, launch.overrides)
    spec: Doc = {
        "family": launch.td["family"],
        "revision": launch.td["revision"],
        "networkMode": launch.td.get("networkMode") or "bridge",
        "cpu": launch.cpu,
        "memory": launch.memory,
        "limits": {"cpu": limit_cpu, "memory": limit_memory},  # task-level only (None: not set)
        "volumes": launch.td.get("volumes", []),
        "containers": launch.containers,
        "eni": None,
        # the roles the agent's 169.254.170.2 serves (RunTask's overrides win, as ECS applies them)
        "taskRoleArn": launch.overrides.get("taskRoleArn") or launch.td.get("taskRoleArn"),
        "executionRoleArn": launch.overrides.get("executionRoleArn") or launch.td.get("executionRoleArn"),
    }
    attachment_id = subnet_id = eni_id = None
    failure: str | None = None
    if launch.network is not None:
        attachment_id = ctx.new_id()
        in_zone = [
            s for s in launch.network.subnets if s["AvailabilityZone"] == instance["availability_zone"]
        ]
        subnet_id = in_zone[0]["SubnetId"]
        try:
            eni = reserve_task_eni(
                conn, ctx, [s["SubnetId"] for s in in_zone], launch.network.group_ids, attachment_id
            )
        except ClientError as error:
            # ECS creates the task and it stops with the EC2 error # unconfirmed wording
            failure = (
                "Unexpected EC2 error while attempting to Create Network Interface in subnet "
                f"'{subnet_id}': {error.code}"
            )
        else:
            eni_id, subnet_id = eni["NetworkInterfaceId"], eni["SubnetId"]
            subnet = next(s for s in in_zone if s["SubnetId"] == subnet_id)
            spec["eni"] = _eni_spec(eni, subnet)
    body = taskdoc.new_task(
        taskdoc.NewTask(
            task_arn=arn,
            cluster_arn=launch.cluster["clusterArn"],
            task_definition=launch.td,
            overrides=launch.overrides,
            containers=launch.containers,
            container_arns=[
                container_arn(ctx.region, ctx.account_id, cluster_name, task_id, ctx.new_id())
                for _ in launch.containers
            ],
            container_instance_arn=instance["arn"],
            availability_zone=instance["availability_zone"],
            cpu=launch.cpu,
            memory=launch.memory,
            group=launch.group,
            created_at=ctx.now,
            started_by=launch.started_by,
            attachment_id=attachment_id,
            subnet_id=subnet_id,
            cpu_architecture=architecture,
        )
    )
    if launch.launch_type == capacity.FARGATE:
        body = _as_fargate(body, launch)
    elif launch.capacity_provider:
        body["capacityProviderName"] = launch.capacity_provider
    if held_ports is not None:  # bridge/host: the host ports it binds (dynamic ones chosen now)
        bindings = bind_ports(spec["networkMode"], launch.containers, held_ports)
        spec["networkBindings"] = bindings
        for container, bound in zip(body["containers"], bindings, strict=True):
            if bound:
                container["networkBindings"] = bound
    if failure is not None:
        taskdoc.request_stop(body, TaskEvent.FAILED_TO_START, StopCode.TASK_FAILED_TO_START, failure, ctx.now)
        taskdoc.finish(body, ctx.now)
    task: Row = {
        "id": task_id,
        "region": ctx.region,
        "cluster": cluster_name,
        "arn": arn,
        "container_instance_id": instance["id"],
        "family": launch.td["family"],
        "task_group": launch.group,
        "started_by": launch.started_by,
        "service_name": launch.service_name,
        "launch_type": launch.launch_type,
        "desired_status": body["desiredStatus"],
        "last_status": body["lastStatus"],
        "version": body["version"],
        "cpu": launch.cpu,
        "memory": launch.memory,
        "eni_id": eni_id,
        "created_at": ctx.now,
        "updated_at": ctx.now,
        "body": body,
        "spec": spec,
    }
    tasks_repo.insert_task(conn, task)
    if launch.tags:
        ecs_repo.put_tags(conn, ctx.region, arn, launch.tags)
    return task


def _as_fargate(body: Doc, launch: Launch) -> Doc:
    """What DescribeTasks shows of a Fargate task: no container instance, the platform it runs on."""
    body.pop("containerInstanceArn", None)
    body.update(
        launchType=capacity.FARGATE,
        capacityProviderName=launch.capacity_provider or capacity.FARGATE,
        platformVersion=launch.platform_version,
        platformFamily=capacity.PLATFORM_FAMILY,
        ephemeralStorage={"sizeInGiB": capacity.EPHEMERAL_STORAGE_GIB},
    )
    return taskdoc.sort_task(body)


def _after_changes(conn: Connection, ctx: RequestContext, cluster: str, instance_ids: set[str]) -> None:
    """Recompute usage of the instances touched, wake their agents, recompute the cluster's counters."""
    for instance_id in instance_ids:
        row = tasks_repo.get_instance(conn, instance_id)
        if row is not None:
            tasks_repo.refresh_usage(conn, row)
            tasks_repo.bump_generation(conn, instance_id)
            ctx.notify.add(instance_id)
    task_state.refresh_cluster(conn, ctx, cluster)


after_changes = _after_changes  # the service scheduler's name for it


def task_view(conn: Connection, task: Row, with_tags: bool) -> Doc:
    doc = {key: value for key, value in task["body"].items() if not key.startswith("_")}
    if with_tags:
        doc["tags"] = ecs_repo.get_tags(conn, task["arn"])
    return doc


# ---- RunTask --------------------------------------------------------------------------------------


def _request_hash(params: dict[str, Any]) -> str:
    material = {k: v for k, v in params.items() if k != "clientToken"}
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _token_key(cluster: str, token: str) -> str:
    return hashlib.sha256(f"{cluster}\0{token}".encode()).hexdigest()


def _check_token(token: str | None) -> None:
    if token is not None and (
        not 1 <= len(token) <= MAX_CLIENT_TOKEN or any(not 33 <= ord(ch) <= 126 for ch in token)
    ):
        raise invalid_parameter(
            f"clientToken must be 1 to {MAX_CLIENT_TOKEN} ASCII characters in the range 33-126."
        )  # unconfirmed wording


def run_task(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    count = params.get("count", 1)
    if not 1 <= count <= MAX_COUNT:
        raise invalid_parameter(f"count must be between 1 and {MAX_COUNT}.")  # unconfirmed wording
    token = params.get("clientToken")
    _check_token(token)
    cluster_name = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    with ctx.db.transaction() as conn:
        cluster = task_state.lock(conn, ctx, cluster_name)
        request_hash = _request_hash(params)
        if token is not None:
            key = _token_key(cluster_name, token)
            tasks_repo.purge_tokens(conn, "RunTask", ctx.now - TOKEN_TTL)
            seen = tasks_repo.get_token(conn, ctx.region, "RunTask", key)
            if seen is not None:
                stored_hash, response = seen
                if stored_hash != request_hash:
                    raise ClientError(
                        "ConflictException",
                        "The request could not be processed due to conflicts. The provided clientToken "
                        "is already in use with a different RunTask request.",
                    )  # wording from the API reference's description of ConflictException
                replayed = tasks_repo.get_tasks_by_arn(conn, response["taskArns"])
                return {
                    "tasks": [task_view(conn, t, True) for t in replayed],
                    "failures": response["failures"],
                }
        launch = prepare_launch(conn, ctx, cluster, params)
        task_roles.check_task_roles(conn, ctx, cluster_name, launch.td, launch.overrides)
        created, placement_failures = place_tasks(
            conn,
            ctx,
            launch,
            count,
            params.get("placementConstraints", []),
            params.get("placementStrategy", []),
        )
        failures = [f.to_api() for f in placement_failures]
        _after_changes(conn, ctx, cluster_name, {t["container_instance_id"] for t in created})
        if token is not None:
            response = {"taskArns": [t["arn"] for t in created], "failures": failures}
            tasks_repo.put_token(conn, ctx.region, "RunTask", key, request_hash, response, ctx.now)
        return {"tasks": [task_view(conn, t, True) for t in created], "failures": failures}


def place_tasks(
    conn: Connection,
    ctx: RequestContext,
    launch: Launch,
    count: int,
    constraints: list[Doc],
    strategies: list[Doc],
) -> tuple[list[Row], tuple[PlacementFailure, ...]]:
    """Place ``count`` tasks of ``launch`` on the cluster's instances and create those placed (RunTask and
    the service scheduler). Raises InvalidParameterException when the cluster has no instance at all."""
    if launch.strategy and launch.capacity_provider is None:
        providers = capacity.split(launch.strategy, count, {})
        created: list[Row] = []
        failures: tuple[PlacementFailure, ...] = ()
        for provider in dict.fromkeys(providers):
            part, failed = place_tasks(
                conn, ctx, replace(launch, capacity_provider=provider), providers.count(provider),
                constraints, strategies,
            )  # fmt: skip
            created += part
            failures += failed
        return created, failures
    cluster_name = launch.cluster["clusterName"]
    request = TaskRequest(
        cpu=launch.cpu,
        memory=launch.memory,
        needs_eni=launch.network is not None,
        required_attributes=required_from_api(launch.td.get("requiresAttributes", [])),
        os_type=os_type(launch.td),
        placement_constraints=constraints_from_api(
            [*launch.td.get("placementConstraints", []), *constraints]
        ),
        placement_strategy=strategies_from_api(strategies),
        allowed_azs=launch.network.availability_zones if launch.network else None,
        group=launch.group,
        count=count,
        ports=launch.ports,
    )
    rows = tasks_repo.list_instances(conn, ctx.region, cluster_name, statuses=["ACTIVE", "DRAINING"])
    snaps = container_instances.snapshots(conn, ctx, cluster_name, rows, with_ports=bool(launch.ports))
    if launch.launch_type == capacity.FARGATE:
        snaps = [s for s in snaps if capacity.FARGATE_CAPACITY_ATTRIBUTE in s.attributes]
        if not snaps:
            raise invalid_parameter(NO_FARGATE_CAPACITY)
    placement = place(request, snaps, random.Random(ctx.new_id()))
    by_arn = {row["arn"]: row for row in rows}
    by_snap = {s.arn: s for s in snaps}
    held = _held_ports(launch, placement.assignments, by_snap)
    created = [
        _create_task(
            conn, ctx, launch, by_arn[arn], by_snap[arn].attributes.get("ecs.cpu-architecture"), held.get(arn)
        )
        for arn in placement.assignments
    ]
    return created, placement.failures


# ---- StartTask ------------------------------------------------------------------------------------


def start_task(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    identifiers = params["containerInstances"]
    if not identifiers:
        raise invalid_parameter("containerInstances can not be empty.")  # unconfirmed, as "subnets ..."
    if len(identifiers) > MAX_START_INSTANCES:
        raise invalid_parameter(
            f"containerInstances can have at most {MAX_START_INSTANCES} items."
        )  # patterned
    cluster_name = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    with ctx.db.transaction() as conn:
        cluster = task_state.lock(conn, ctx, cluster_name)
        launch = prepare_launch(conn, ctx, cluster, {**params, "launchType": "EC2"})  # instances: EC2
        task_roles.check_task_roles(conn, ctx, cluster_name, launch.td, launch.overrides)
        request = TaskRequest(
            cpu=launch.cpu,
            memory=launch.memory,
            needs_eni=launch.network is not None,
            required_attributes=required_from_api(launch.td.get("requiresAttributes", [])),
            os_type=os_type(launch.td),
            allowed_azs=launch.network.availability_zones if launch.network else None,
            group=launch.group,
            ports=launch.ports,
        )
        found, missing = container_instances.find_instances(conn, ctx, cluster_name, identifiers)
        snaps = {
            s.arn: s
            for s in container_instances.snapshots(
                conn, ctx, cluster_name, list(found.values()), with_ports=bool(launch.ports)
            )
        }
        created: list[Row] = []
        failures: list[dict[str, str]] = []
        for identifier in identifiers:
            row = found.get(identifier)
            if row is None:
                failures.append({"arn": missing[identifier], "reason": "MISSING"})
                continue
            if row["status"] == "INACTIVE":
                failures.append({"arn": row["arn"], "reason": "INACTIVE"})
                continue
            snap = snaps[row["arn"]]
            failure = instance_failure(request, snap)
            if failure is not None:
                failures.append(failure.to_api())
                continue
            held = _held_ports(launch, [snap.arn], snaps)
            created.append(
                _create_task(
                    conn, ctx, launch, row, snap.attributes.get("ecs.cpu-architecture"), held.get(snap.arn)
                )
            )
            snap.remaining["CPU"] -= launch.cpu
            snap.remaining["MEMORY"] -= launch.memory
            if request.needs_eni:
                snap.task_eni_free -= 1
        _after_changes(conn, ctx, cluster_name, {t["container_instance_id"] for t in created})
        return {"tasks": [task_view(conn, t, True) for t in created], "failures": failures}


# ---- StopTask, DescribeTasks, ListTasks -----------------------------------------------------------


def _find_tasks(
    conn: Connection, ctx: RequestContext, cluster: str, identifiers: list[str]
) -> tuple[dict[str, Row], dict[str, str]]:
    rows = tasks_repo.get_tasks(conn, ctx.region, cluster, [last_path_part(i) for i in identifiers])
    return match_identifiers(
        identifiers, rows, lambda id_: task_arn(ctx.region, ctx.account_id, cluster, id_)
    )


def stop_task(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    cluster_name = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    with ctx.db.transaction() as conn:
        task_state.lock(conn, ctx, cluster_name)
        found, _missing = _find_tasks(conn, ctx, cluster_name, [params["task"]])
        task = found.get(params["task"])
        if task is None:
            raise invalid_parameter(_TASK_NOT_FOUND)
        before, counted = task_state.snapshot(task), task_state.counted(task)
        reason = params.get("reason")
        if taskdoc.request_stop(
            task["body"], TaskEvent.STOP_REQUESTED, StopCode.USER_INITIATED, reason, ctx.now
        ):
            task_state.save(conn, ctx, task, before)
            # one task changed: its own share of the counters, not a recount of every task (O(tasks))
            task_state.count_change(conn, ctx, cluster_name, task, counted)
            if task["container_instance_id"]:
                tasks_repo.bump_generation(conn, task["container_instance_id"])
                ctx.notify.add(task["container_instance_id"])
        return {"task": task_view(conn, task, True)}


def describe_tasks(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    identifiers = params["tasks"]
    if len(identifiers) > MAX_DESCRIBE:
        raise invalid_parameter(f"taskIds can have at most {MAX_DESCRIBE} items.")  # real text
    cluster_name = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    with_tags = "TAGS" in params.get("include", ())
    with ctx.db.read() as conn:
        task_state.require_cluster(conn, ctx, cluster_name)
        found, missing = _find_tasks(conn, ctx, cluster_name, identifiers)
        described = [task_view(conn, found[i], with_tags) for i in dict.fromkeys(identifiers) if i in found]
    failures = [{"arn": arn, "reason": "MISSING"} for arn in missing.values()]
    return {"tasks": described, "failures": failures}


def list_tasks(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    cluster_name = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    pager = Pager.of(ctx.page_key, "ecs:ListTasks", ctx.region, ctx.account_id, params)
    after = pager.decode(params.get("nextToken"), _BAD_TOKEN, is_str)
    limit = page_size(params.get("maxResults"), 100, 100)
    with ctx.db.read() as conn:
        task_state.require_cluster(conn, ctx, cluster_name)
        service_name = None
        if params.get("serviceName"):
            service = services_repo.find_service(
                conn, ctx.region, cluster_name, last_path_part(params["serviceName"])
            )
            if service is None:
                raise ClientError("ServiceNotFoundException", "Service not found.")  # real text
            service_name = service["name"]
        instance_id = None
        if params.get("containerInstance"):
            if foreign_arn(params["containerInstance"], ctx.region, ctx.account_id):
                return {"taskArns": []}  # another account's or region's instance runs nothing here
            instance_id = last_path_part(params["containerInstance"])
        arns = tasks_repo.list_task_arns(
            conn,
            ctx.region,
            cluster_name,
            desired_status=params.get("desiredStatus", "RUNNING"),
            instance_id=instance_id,
            family=params.get("family"),
            started_by=params.get("startedBy"),
            service_name=service_name,
            launch_type=params.get("launchType"),
            after=after,
            limit=limit + 1,
        )
    result: dict[str, Any] = {"taskArns": arns[:limit]}
    if len(arns) > limit:
        result["nextToken"] = pager.encode(arns[limit - 1])
    return result
