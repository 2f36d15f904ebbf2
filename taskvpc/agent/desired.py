"""What the control plane wants of one task, as the agent API's desired-state answer carries it.

Typed, frozen dataclasses (``DesiredTask``, ``DesiredContainer``, ``Eni``, volumes, Linux parameters)
parsed leniently from the wire (docs/agent-api.md): a missing or malformed value reads as absent, never
as an exception that would stop the agent. The planner (:mod:`taskvpc.agent.taskplan`) reads them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from taskvpc.agent.runtime import DEFAULT_STOP_TIMEOUT, HealthCheckSpec, Tmpfs, Ulimit
from taskvpc.agent.security import groups_from_wire
from taskvpc.domain.lifecycle import DesiredStatus, advance_desired
from taskvpc.domain.units import parse_cpu_units, parse_memory_mib
from taskvpc.netmodel.evaluator import GroupRules


class Condition(StrEnum):
    START = "START"
    COMPLETE = "COMPLETE"
    SUCCESS = "SUCCESS"
    HEALTHY = "HEALTHY"


@dataclass(frozen=True, slots=True)
class Dependency:
    container: str
    condition: Condition


class VolumeScope(StrEnum):
    TASK = "task"  # made when the task starts, removed with the task
    SHARED = "shared"  # kept across tasks on the host


@dataclass(frozen=True, slots=True)
class DockerVolumeConfig:
    """``dockerVolumeConfiguration`` of a task volume."""

    scope: VolumeScope = VolumeScope.TASK
    autoprovision: bool = False  # only for ``shared``: create it when it does not exist yet
    driver: str = "local"
    driver_opts: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Volume:
    """One entry of the task definition's ``volumes``.

    ``source_path`` is ``host.sourcePath`` (a bind mount); ``docker`` is ``dockerVolumeConfiguration``; with
    neither the volume is an empty task-scoped directory. ``unsupported`` names a configuration this agent
    cannot provide (``efsVolumeConfiguration``, ``fsxWindowsFileServerVolumeConfiguration``, ...).
    """

    name: str
    source_path: str | None = None
    docker: DockerVolumeConfig | None = None
    unsupported: str | None = None


@dataclass(frozen=True, slots=True)
class MountPoint:
    source_volume: str
    container_path: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class VolumeFrom:
    source_container: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class EnvironmentFile:
    value: str  # an S3 object ARN on ECS; here also an absolute host path (a taskvpc extension)
    type: str = "s3"


@dataclass(frozen=True, slots=True)
class LinuxParameters:
    capabilities_add: tuple[str, ...] = ()
    capabilities_drop: tuple[str, ...] = ()
    init_process_enabled: bool = False
    tmpfs: tuple[Tmpfs, ...] = ()
    shared_memory_size: int | None = None  # MiB


@dataclass(frozen=True, slots=True)
class DesiredContainer:
    name: str
    essential: bool = True
    image: str = ""
    entry_point: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    working_directory: str | None = None
    user: str | None = None
    depends_on: tuple[Dependency, ...] = ()
    health_check: HealthCheckSpec | None = None
    stop_timeout: float | None = None
    start_timeout: float | None = None
    cpu: int = 0  # CPU units
    memory: int | None = None  # MiB, hard limit
    memory_reservation: int | None = None  # MiB, soft limit
    ulimits: tuple[Ulimit, ...] = ()
    readonly_root_filesystem: bool = False
    privileged: bool = False
    linux_parameters: LinuxParameters = LinuxParameters()
    mount_points: tuple[MountPoint, ...] = ()
    volumes_from: tuple[VolumeFrom, ...] = ()
    environment_files: tuple[EnvironmentFile, ...] = ()
    repository_credentials: str | None = None  # ``repositoryCredentials.credentialsParameter``

    @property
    def effective_stop_timeout(self) -> float:
        return DEFAULT_STOP_TIMEOUT if self.stop_timeout is None else self.stop_timeout


@dataclass(frozen=True, slots=True)
class Eni:
    attachment_id: str
    network_interface_id: str
    mac_address: str
    private_ipv4_address: str
    prefix_length: int
    gateway: str
    subnet_id: str
    vpc_id: str
    private_dns_name: str = ""
    security_group_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DesiredTask:
    arn: str
    desired_status: DesiredStatus
    containers: tuple[DesiredContainer, ...]
    eni: Eni | None = None
    stop_reason: str | None = None
    family: str = ""
    revision: int = 0
    volumes: tuple[Volume, ...] = ()
    task_cpu: int | None = None  # task-level limits the containers share (None: no task-level limit)
    task_memory: int | None = None

    @property
    def task_id(self) -> str:
        return task_id_of(self.arn)

    def container(self, name: str) -> DesiredContainer | None:
        return next((c for c in self.containers if c.name == name), None)

    def advanced(self, newer: DesiredTask) -> DesiredTask:
        """``newer`` with the desired status only moving forward (a redundant or backward move ignored)."""
        status = advance_desired(self.desired_status, newer.desired_status)
        return replace(newer, desired_status=status, stop_reason=newer.stop_reason or self.stop_reason)

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> DesiredTask:
        """One entry of ``tasks`` in the agent API's desired-state answer (docs/agent-api.md)."""
        eni_doc = doc.get("eni")
        eni = None
        if isinstance(eni_doc, Mapping):
            eni = Eni(
                attachment_id=str(eni_doc.get("attachmentId", "")),
                network_interface_id=str(eni_doc.get("networkInterfaceId", "")),
                mac_address=str(eni_doc.get("macAddress", "")),
                private_ipv4_address=str(eni_doc.get("privateIpv4Address", "")),
                prefix_length=_int(eni_doc.get("prefixLength")) or 32,
                gateway=str(eni_doc.get("gateway", "")),
                subnet_id=str(eni_doc.get("subnetId", "")),
                vpc_id=str(eni_doc.get("vpcId", "")),
                private_dns_name=str(eni_doc.get("privateDnsName", "")),
                security_group_ids=_strings(eni_doc.get("securityGroupIds")),
            )
        try:
            status = DesiredStatus(str(doc.get("desiredStatus", "RUNNING")))
        except ValueError:
            status = DesiredStatus.RUNNING
        limits = doc.get("limits")
        limits = limits if isinstance(limits, Mapping) else {}
        stop_reason = doc.get("stopReason")
        task_id_of(str(doc["taskArn"]))  # refuse an answer whose task id could name a path outside ours
        return cls(
            arn=str(doc["taskArn"]),
            desired_status=status,
            containers=tuple(
                _container_from_wire(c) for c in _list(doc.get("containers")) if _container_name(c)
            ),
            eni=eni,
            stop_reason=stop_reason if isinstance(stop_reason, str) else None,
            family=str(doc.get("family", "")),
            revision=_int(doc.get("revision")) or 0,
            volumes=tuple(_volume_from_wire(v) for v in _list(doc.get("volumes")) if _named(v, "name")),
            task_cpu=_units(limits.get("cpu"), parse_cpu_units),
            task_memory=_units(limits.get("memory"), parse_memory_mib),
        )


# Parsing is lenient: a member of the wrong type reads as absent and a malformed list entry is skipped,
# so odd input from the control plane never stops the agent (the control plane validated it already).


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in _list(value) if isinstance(v, Mapping)]


def _named(value: Any, key: str) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get(key), str) and value[key] != ""


def _container_name(value: Any) -> bool:
    """A container entry with a name ECS allows; ValueError for any other name (it names a directory)."""
    if not _named(value, "name"):
        return False
    if not _CONTAINER_NAME_RE.fullmatch(value["name"]):
        raise ValueError(f"not a container name: {value['name']!r}")
    return True


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in _list(value) if isinstance(v, str | int | float))


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _flag(value: Any, default: bool = False) -> bool:
    return value if isinstance(value, bool) else default


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            return None
    return None


def _positive(value: Any) -> int | None:
    number = _int(value)
    return number if number is not None and number > 0 else None


def _units(value: Any, parse: Callable[[str], int | None]) -> int | None:
    """A task-level ``cpu``/``memory``: an integer, or a string such as ``"1 vCPU"``/``"0.5 GB"``."""
    if isinstance(value, str):
        parsed = parse(value)
        return parsed if parsed is not None and parsed > 0 else None
    return _positive(value)


def _seconds(value: Any) -> float | None:
    """A duration: finite and not negative, else absent (a NaN stop timeout would never expire)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        return ()
    return tuple((str(k), str(v)) for k, v in value.items())


_UNSUPPORTED_VOLUME_KINDS = (
    "efsVolumeConfiguration",
    "fsxWindowsFileServerVolumeConfiguration",
    "s3filesVolumeConfiguration",
)


def _volume_from_wire(doc: Mapping[str, Any]) -> Volume:
    name = str(doc["name"])
    unsupported = next((k for k in _UNSUPPORTED_VOLUME_KINDS if doc.get(k)), None)
    if unsupported is None and doc.get("configuredAtLaunch") is True:
        unsupported = "configuredAtLaunch"
    docker_doc = doc.get("dockerVolumeConfiguration")
    docker = None
    if isinstance(docker_doc, Mapping):
        try:
            scope = VolumeScope(str(docker_doc.get("scope") or "task"))
        except ValueError:
            scope = VolumeScope.TASK
        docker = DockerVolumeConfig(
            scope=scope,
            autoprovision=_flag(docker_doc.get("autoprovision")),
            driver=_string(docker_doc.get("driver")) or "local",
            driver_opts=_pairs(docker_doc.get("driverOpts")),
            labels=_pairs(docker_doc.get("labels")),
        )
    host = doc.get("host")
    source_path = _string(host.get("sourcePath")) if isinstance(host, Mapping) else None
    return Volume(name=name, source_path=source_path, docker=docker, unsupported=unsupported)


def _health_check(value: Any) -> HealthCheckSpec | None:
    if not isinstance(value, Mapping) or not _strings(value.get("command")):
        return None
    return HealthCheckSpec(
        command=_strings(value.get("command")),
        interval=_seconds(value.get("interval")) or 30.0,
        timeout=_seconds(value.get("timeout")) or 5.0,
        retries=_positive(value.get("retries")) or 3,
        start_period=_seconds(value.get("startPeriod")) or 0.0,
    )


def _ulimits(value: Any) -> tuple[Ulimit, ...]:
    found = []
    for item in _mappings(value):
        soft, hard = _int(item.get("softLimit")), _int(item.get("hardLimit"))
        if _string(item.get("name")) and soft is not None and hard is not None:
            found.append(Ulimit(str(item["name"]), soft, hard))
    return tuple(found)


def _linux_parameters(value: Any) -> LinuxParameters:
    if not isinstance(value, Mapping):
        return LinuxParameters()
    capabilities = value.get("capabilities")
    capabilities = capabilities if isinstance(capabilities, Mapping) else {}
    tmpfs = tuple(
        Tmpfs(str(t["containerPath"]), size, _strings(t.get("mountOptions")))
        for t in _mappings(value.get("tmpfs"))
        if _named(t, "containerPath") and (size := _positive(t.get("size"))) is not None
    )
    return LinuxParameters(
        capabilities_add=_strings(capabilities.get("add")),
        capabilities_drop=_strings(capabilities.get("drop")),
        init_process_enabled=_flag(value.get("initProcessEnabled")),
        tmpfs=tmpfs,
        shared_memory_size=_positive(value.get("sharedMemorySize")),
    )


def _container_from_wire(doc: Mapping[str, Any]) -> DesiredContainer:
    depends = []
    for dep in _mappings(doc.get("dependsOn")):
        try:
            depends.append(Dependency(str(dep["containerName"]), Condition(str(dep["condition"]))))
        except (KeyError, ValueError):
            continue
    env = tuple(
        (str(e["name"]), str(e.get("value", "")))
        for e in _mappings(doc.get("environment"))
        if _named(e, "name")
    )
    credentials = doc.get("repositoryCredentials")
    return DesiredContainer(
        name=str(doc["name"]),
        essential=_flag(doc.get("essential"), True),
        image=str(doc.get("image") or ""),
        entry_point=_strings(doc.get("entryPoint")),
        command=_strings(doc.get("command")),
        environment=env,
        working_directory=_string(doc.get("workingDirectory")),
        user=_string(doc.get("user")),
        depends_on=tuple(depends),
        health_check=_health_check(doc.get("healthCheck")),
        stop_timeout=_seconds(doc.get("stopTimeout")),
        start_timeout=_seconds(doc.get("startTimeout")),
        cpu=max(0, _int(doc.get("cpu")) or 0),
        memory=_positive(doc.get("memory")),
        memory_reservation=_positive(doc.get("memoryReservation")),
        ulimits=_ulimits(doc.get("ulimits")),
        readonly_root_filesystem=_flag(doc.get("readonlyRootFilesystem")),
        privileged=_flag(doc.get("privileged")),
        linux_parameters=_linux_parameters(doc.get("linuxParameters")),
        mount_points=tuple(
            MountPoint(
                _string(m.get("sourceVolume")) or "", str(m["containerPath"]), _flag(m.get("readOnly"))
            )
            for m in _mappings(doc.get("mountPoints"))
            if _named(m, "containerPath")
        ),
        volumes_from=tuple(
            VolumeFrom(str(v["sourceContainer"]), _flag(v.get("readOnly")))
            for v in _mappings(doc.get("volumesFrom"))
            if _named(v, "sourceContainer")
        ),
        environment_files=tuple(
            EnvironmentFile(str(f["value"]), str(f.get("type") or "s3"))
            for f in _mappings(doc.get("environmentFiles"))
            if _named(f, "value")
        ),
        repository_credentials=(
            _string(credentials.get("credentialsParameter")) if isinstance(credentials, Mapping) else None
        ),
    )


_TASK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_CONTAINER_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")  # ECS's container name rule


def task_id_of(arn: str) -> str:
    """The task id (the ARN's last part); ValueError unless it is one (it names directories and cgroups)."""
    task_id = arn.rsplit("/", 1)[-1]
    if not _TASK_ID_RE.fullmatch(task_id):
        raise ValueError(f"not a task id: {task_id!r}")
    return task_id


# ---------------------------------------------------------------------------------------------- the whole answer


@dataclass(frozen=True, slots=True)
class VpcSpec:
    vpc_id: str
    subnets: tuple[tuple[str, str], ...]  # (subnet id, CIDR)

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> VpcSpec:
        subnets = tuple(
            (str(s.get("subnetId", "")), str(s["cidrBlock"]))
            for s in doc.get("subnets") or ()
            if isinstance(s, Mapping) and s.get("cidrBlock")
        )
        return cls(str(doc["vpcId"]), subnets)

    def with_subnet(self, subnet_id: str, cidr: str) -> VpcSpec:
        if any(c == cidr for _, c in self.subnets):
            return self
        return replace(self, subnets=(*self.subnets, (subnet_id, cidr)))


@dataclass(frozen=True, slots=True)
class DesiredState:
    generation: int
    changed: bool
    instance_status: str
    vpcs: tuple[VpcSpec, ...]
    tasks: tuple[DesiredTask, ...]
    security_groups: Mapping[str, Mapping[str, GroupRules]] = field(default_factory=dict)  # by VPC id

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> DesiredState:
        instance = doc.get("instance") or {}
        return cls(
            generation=int(doc.get("generation") or 0),
            changed=bool(doc.get("changed", True)),
            instance_status=str(instance.get("status") or "ACTIVE"),
            vpcs=tuple(VpcSpec.from_wire(v) for v in doc.get("vpcs") or () if isinstance(v, Mapping)),
            tasks=tuple(DesiredTask.from_wire(t) for t in doc.get("tasks") or () if isinstance(t, Mapping)),
            security_groups={
                str(v["vpcId"]): groups_from_wire(v.get("securityGroups") or ())
                for v in doc.get("vpcs") or ()
                if isinstance(v, Mapping) and "vpcId" in v
            },
        )

    def eni_groups(self) -> dict[str, tuple[str, ...]]:
        """Each task ENI's current security groups."""
        return {t.eni.network_interface_id: t.eni.security_group_ids for t in self.tasks if t.eni is not None}
