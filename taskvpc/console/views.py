"""What the console's pages show and send, as plain data: API answers in, rows out; form fields in, API
parameters out. No I/O, so every rule here is unit-tested without a server or a browser.

A form's mistake raises :class:`FormError` with a sentence for the user; the API's own validation still
runs on whatever a form produces (the console sends it through the same dispatch as a SigV4 request).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Doc = dict[str, Any]

NETWORK_MODES = ("awsvpc", "bridge", "host", "none")
LAUNCH_TYPES = ("EC2", "FARGATE", "EXTERNAL")
PROTOCOLS = ("tcp", "udp", "icmp", "-1")


def format_time(value: Any) -> str:
    """A use case's timestamp (epoch seconds, as the codecs take them) as UTC text; others as given."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


class FormError(ValueError):
    """A form field the console cannot turn into a request; the message is shown to the user."""


def resource_id(arn: str) -> str:
    """The last path element of an ARN (a task's id, a cluster's name)."""
    return arn.rsplit("/", 1)[-1]


def family_revision(arn: str) -> str:
    """``family:revision`` of a task definition ARN (or of ``family:revision`` itself)."""
    return arn.rsplit("/", 1)[-1]


# ---- tasks ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerRow:
    name: str
    image: str
    last_status: str
    exit_code: str
    reason: str


@dataclass(frozen=True, slots=True)
class TaskView:
    task_id: str
    arn: str
    cluster: str
    task_definition: str
    last_status: str
    desired_status: str
    launch_type: str
    stopped_reason: str
    stop_code: str
    health: str
    eni: dict[str, str]  # networkInterfaceId, macAddress, privateIPv4Address, subnetId, ... (attachment)
    attachment_status: str
    containers: tuple[ContainerRow, ...]
    security_groups: tuple[str, ...] = ()

    @property
    def stoppable(self) -> bool:
        return self.desired_status != "STOPPED"


def eni_details(task: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    """The task's ENI attachment details by name and the attachment's status ({} and "" without one)."""
    for attachment in task.get("attachments", []):
        if attachment.get("type") == "ElasticNetworkInterface":
            details = {str(d["name"]): str(d["value"]) for d in attachment.get("details", []) if "value" in d}
            return details, str(attachment.get("status", ""))
    return {}, ""


def task_view(task: Mapping[str, Any], security_groups: tuple[str, ...] = ()) -> TaskView:
    """A DescribeTasks task as the task page shows it."""
    eni, attachment_status = eni_details(task)
    containers = tuple(
        ContainerRow(
            name=str(c.get("name", "")),
            image=str(c.get("image", "")),
            last_status=str(c.get("lastStatus", "")),
            exit_code="" if c.get("exitCode") is None else str(c["exitCode"]),
            reason=str(c.get("reason", "")),
        )
        for c in task.get("containers", [])
    )
    return TaskView(
        task_id=resource_id(str(task["taskArn"])),
        arn=str(task["taskArn"]),
        cluster=resource_id(str(task.get("clusterArn", ""))),
        task_definition=family_revision(str(task.get("taskDefinitionArn", ""))),
        last_status=str(task.get("lastStatus", "")),
        desired_status=str(task.get("desiredStatus", "")),
        launch_type=str(task.get("launchType", "")),
        stopped_reason=str(task.get("stoppedReason", "")),
        stop_code=str(task.get("stopCode", "")),
        health=str(task.get("healthStatus", "")),
        eni=eni,
        attachment_status=attachment_status,
        containers=containers,
        security_groups=security_groups,
    )


# ---- services ------------------------------------------------------------------------------------------

MAX_EVENTS = 100  # the AWS console's Events tab shows the 100 newest


@dataclass(frozen=True, slots=True)
class DeploymentRow:
    deployment_id: str
    status: str
    rollout_state: str
    task_definition: str
    desired: int
    running: int
    pending: int
    failed: int
    updated_at: str


@dataclass(frozen=True, slots=True)
class ServiceView:
    name: str
    status: str
    task_definition: str
    desired: int
    running: int
    pending: int
    launch_type: str
    deployments: tuple[DeploymentRow, ...]
    events: tuple[tuple[str, str], ...]  # (createdAt, message), newest first
    load_balancers: tuple[tuple[str, str], ...]  # (target group → container:port, target group name)


def service_view(service: Mapping[str, Any]) -> ServiceView:
    """A DescribeServices service as its page shows it."""
    deployments = tuple(
        DeploymentRow(
            deployment_id=str(d.get("id", "")),
            status=str(d.get("status", "")),
            rollout_state=str(d.get("rolloutState", "")),
            task_definition=family_revision(str(d.get("taskDefinition", ""))),
            desired=int(d.get("desiredCount", 0)),
            running=int(d.get("runningCount", 0)),
            pending=int(d.get("pendingCount", 0)),
            failed=int(d.get("failedTasks", 0)),
            updated_at=format_time(d.get("updatedAt")),
        )
        for d in service.get("deployments", [])
    )
    newest = sorted(service.get("events", []), key=lambda e: _sortable(e.get("createdAt")), reverse=True)
    events = [(format_time(e.get("createdAt")), str(e.get("message", ""))) for e in newest[:MAX_EVENTS]]
    balancers = []
    for lb in service.get("loadBalancers", []):
        group = _target_group_name(str(lb.get("targetGroupArn", "")))
        shown = group or str(lb.get("targetGroupArn", lb.get("loadBalancerName", "")))
        target = f"{lb.get('containerName', '')}:{lb.get('containerPort', '')}"
        balancers.append((f"{shown} → {target}", group))
    return ServiceView(
        name=str(service.get("serviceName", "")),
        status=str(service.get("status", "")),
        task_definition=family_revision(str(service.get("taskDefinition", ""))),
        desired=int(service.get("desiredCount", 0)),
        running=int(service.get("runningCount", 0)),
        pending=int(service.get("pendingCount", 0)),
        launch_type=str(service.get("launchType", "")),
        deployments=deployments,
        events=tuple(events),
        load_balancers=tuple(balancers),
    )


# ---- run task ------------------------------------------------------------------------------------------


def run_task_params(cluster: str, form: Mapping[str, list[str]]) -> Doc:
    """RunTask's parameters from the run-task form (subnets and groups are multi-selects)."""
    task_definition = _one(form, "taskDefinition")
    if not task_definition:
        raise FormError("Choose a task definition.")
    params: Doc = {"cluster": cluster, "taskDefinition": task_definition}
    launch_type = _one(form, "launchType")
    if launch_type:
        if launch_type not in LAUNCH_TYPES:
            raise FormError(f"Unknown launch type {launch_type!r}.")
        params["launchType"] = launch_type
    count = _one(form, "count") or "1"
    if not count.isdigit() or not 1 <= int(count) <= 10:
        raise FormError("The number of tasks is a whole number from 1 to 10.")
    params["count"] = int(count)
    subnets = [s for s in form.get("subnets", []) if s]
    groups = [g for g in form.get("securityGroups", []) if g]
    if subnets or groups:
        if not subnets:
            raise FormError("Choose at least one subnet.")
        config: Doc = {"subnets": subnets}
        if groups:
            config["securityGroups"] = groups
        config["assignPublicIp"] = "ENABLED" if _one(form, "assignPublicIp") == "ENABLED" else "DISABLED"
        params["networkConfiguration"] = {"awsvpcConfiguration": config}
    return params


# ---- task definitions ----------------------------------------------------------------------------------


def parse_port_mappings(text: str) -> list[Doc]:
    """``"80, 8080/tcp, 53/udp"`` -> ECS portMappings."""
    mappings: list[Doc] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        port, _, protocol = item.partition("/")
        protocol = (protocol or "tcp").strip().lower()
        if not port.strip().isdigit() or not 1 <= int(port) <= 65535:
            raise FormError(f"Port mapping {item!r}: the container port is a number from 1 to 65535.")
        if protocol not in ("tcp", "udp"):
            raise FormError(f"Port mapping {item!r}: the protocol is tcp or udp.")
        mappings.append({"containerPort": int(port), "protocol": protocol})
    return mappings


def _words(text: str) -> list[str]:
    """A command or entry point, comma-separated as the AWS console takes it (``sh,-c``); a part that
    needs a comma of its own is written in the JSON form."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _positive(form: Mapping[str, list[str]], name: str, label: str) -> int | None:
    text = _one(form, name)
    if not text:
        return None
    if not text.isdigit() or int(text) == 0:
        raise FormError(f"{label} is a positive whole number.")
    return int(text)


def task_definition_from_form(form: Mapping[str, list[str]], region: str) -> Doc:
    """RegisterTaskDefinition's parameters from the one-container form."""
    family = _one(form, "family")
    name = _one(form, "containerName")
    image = _one(form, "image")
    if not family:
        raise FormError("Enter a task definition family.")
    if not name or not image:
        raise FormError("Enter the container's name and image.")
    network_mode = _one(form, "networkMode") or "awsvpc"
    if network_mode not in NETWORK_MODES:
        raise FormError(f"Unknown network mode {network_mode!r}.")
    container: Doc = {"name": name, "image": image, "essential": True}
    for key, label in (("cpu", "Container CPU units"), ("memory", "Container memory (MiB)")):
        value = _positive(form, f"container{key.capitalize()}", label)
        if value is not None:
            container[key] = value
    mappings = parse_port_mappings(_one(form, "portMappings"))
    if mappings:
        container["portMappings"] = mappings
    entry_point = _words(_one(form, "entryPoint"))
    if entry_point:
        container["entryPoint"] = entry_point
    command = _words(_one(form, "command"))
    if command:
        container["command"] = command
    if _one(form, "initProcessEnabled"):  # the seed's task definition runs an init process
        container["linuxParameters"] = {"initProcessEnabled": True}
    log_group = _one(form, "logGroup")
    if log_group:
        container["logConfiguration"] = {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": family,
            },
        }
    params: Doc = {"family": family, "networkMode": network_mode, "containerDefinitions": [container]}
    for key, label in (("cpu", "Task CPU units"), ("memory", "Task memory (MiB)")):
        value = _positive(form, f"task{key.capitalize()}", label)
        if value is not None:
            params[key] = str(value)
    for key in ("taskRoleArn", "executionRoleArn"):
        if arn := _one(form, key):
            params[key] = arn
    return params


# RegisterTaskDefinition's output carries members its input does not take.
_DESCRIBED_ONLY = (
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
    "deleteRequestedAt",
)


def task_definition_from_json(text: str) -> Doc:
    """RegisterTaskDefinition's parameters from pasted JSON: the CLI's --cli-input-json document, or a
    DescribeTaskDefinition answer (its ``taskDefinition``, less the members only a description has)."""
    try:
        doc = json.loads(text)
    except ValueError as error:
        raise FormError(f"The JSON does not parse: {error}.") from None
    if not isinstance(doc, dict):
        raise FormError("The JSON must be an object with family and containerDefinitions.")
    if isinstance(doc.get("taskDefinition"), dict):
        doc = doc["taskDefinition"]
    return {key: value for key, value in doc.items() if key not in _DESCRIBED_ONLY}


# ---- security groups -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleRow:
    """One source of one ingress permission: what the editor lists and can remove."""

    protocol: str
    ports: str
    source: str
    description: str
    revoke: Doc = field(compare=False)  # the IpPermission that removes exactly this row

    @property
    def revoke_json(self) -> str:
        return json.dumps(self.revoke, sort_keys=True)


def _ports(permission: Mapping[str, Any]) -> str:
    protocol = str(permission.get("IpProtocol", ""))
    if protocol == "-1":
        return "All"
    low, high = permission.get("FromPort"), permission.get("ToPort")
    if protocol in ("icmp", "1"):
        return "All" if low in (None, -1) else f"type {low}" + ("" if high in (None, -1) else f" code {high}")
    if low is None:
        return "All"
    return str(low) if low == high else f"{low}-{high}"


def rule_rows(permissions: list[Mapping[str, Any]]) -> list[RuleRow]:
    """DescribeSecurityGroups' IpPermissions, one row per source (CIDR, IPv6 CIDR or group)."""
    rows: list[RuleRow] = []
    for permission in permissions:
        base = {k: permission[k] for k in ("IpProtocol", "FromPort", "ToPort") if k in permission}
        protocol = "All" if base.get("IpProtocol") == "-1" else str(base.get("IpProtocol", ""))
        ports = _ports(permission)
        for cidr in permission.get("IpRanges", []):
            revoke = {**base, "IpRanges": [{"CidrIp": cidr["CidrIp"]}]}
            rows.append(RuleRow(protocol, ports, cidr["CidrIp"], cidr.get("Description", ""), revoke))
        for cidr in permission.get("Ipv6Ranges", []):
            revoke = {**base, "Ipv6Ranges": [{"CidrIpv6": cidr["CidrIpv6"]}]}
            rows.append(RuleRow(protocol, ports, cidr["CidrIpv6"], cidr.get("Description", ""), revoke))
        for pair in permission.get("UserIdGroupPairs", []):
            revoke = {**base, "UserIdGroupPairs": [{"GroupId": pair["GroupId"]}]}
            rows.append(RuleRow(protocol, ports, pair["GroupId"], pair.get("Description", ""), revoke))
    return rows


def permission_from_form(form: Mapping[str, list[str]]) -> Doc:
    """One IpPermission from the rule editor's row: protocol, port range, source (CIDR or group id)."""
    protocol = _one(form, "protocol") or "tcp"
    if protocol not in PROTOCOLS:
        raise FormError(f"Unknown protocol {protocol!r}.")
    source = _one(form, "source")
    if not source:
        raise FormError("Enter a source: a CIDR block (0.0.0.0/0) or a security group id (sg-...).")
    permission: Doc = {"IpProtocol": protocol}
    ports = _one(form, "ports")
    if protocol in ("tcp", "udp"):
        low, dash, high = ports.partition("-")
        if not low.strip().isdigit() or (dash and not high.strip().isdigit()):
            raise FormError("The port range is a port (80) or a range (8000-8080).")
        permission["FromPort"], permission["ToPort"] = int(low), int(high if dash else low)
    elif protocol == "icmp":
        permission["FromPort"], permission["ToPort"] = -1, -1
    description = _one(form, "description")
    if source.startswith("sg-"):
        pair: Doc = {"GroupId": source}
        if description:
            pair["Description"] = description
        permission["UserIdGroupPairs"] = [pair]
    elif ":" in source:
        ipv6: Doc = {"CidrIpv6": source}
        if description:
            ipv6["Description"] = description
        permission["Ipv6Ranges"] = [ipv6]
    else:
        ipv4: Doc = {"CidrIp": source}
        if description:
            ipv4["Description"] = description
        permission["IpRanges"] = [ipv4]
    return permission


def revoke_permission(text: str) -> Doc:
    """The IpPermission a rule row's remove button carries (its RuleRow.revoke_json)."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise FormError("That rule could not be read; reload the page.") from None
    if not isinstance(doc, dict) or "IpProtocol" not in doc:
        raise FormError("That rule could not be read; reload the page.")
    return doc


def _target_group_name(arn: str) -> str:
    """``web-tg`` of ``arn:...:targetgroup/web-tg/<id>``; "" for anything else (a Classic LB's name)."""
    return arn.split("/")[-2] if ":targetgroup/" in arn and arn.count("/") >= 2 else ""


def _sortable(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _one(form: Mapping[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0].strip()
