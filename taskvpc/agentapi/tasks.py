"""The ``tasks`` section of the desired-state answer: what the control plane wants of each task.

Typed, frozen values parsed leniently from the wire (see :mod:`taskvpc.agentapi.read`) and written back by
``to_wire``: ``from_wire(x.to_wire()) == x`` for every value. ``TaskSpec.from_wire`` refuses (ValueError)
only a task id or container name that could name a path outside the agent's state directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from taskvpc.agentapi import read
from taskvpc.agentapi.logdriver import LogConfiguration
from taskvpc.agentapi.network import Eni
from taskvpc.domain.lifecycle import DesiredStatus, advance_desired
from taskvpc.domain.units import parse_cpu_units, parse_memory_mib

Doc = dict[str, Any]

DEFAULT_STOP_TIMEOUT = 30.0  # what an absent stopTimeout means (ECS_CONTAINER_STOP_TIMEOUT's default)

_TASK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_CONTAINER_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")  # ECS's container name rule


def task_id_of(arn: str) -> str:
    """The task id (the ARN's last part); ValueError unless it is one (it names directories and cgroups)."""
    task_id = arn.rsplit("/", 1)[-1]
    if not _TASK_ID_RE.fullmatch(task_id):
        raise ValueError(f"not a task id: {task_id!r}")
    return task_id


def _drop_none(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if v is not None}


class Condition(StrEnum):
    START = "START"
    COMPLETE = "COMPLETE"
    SUCCESS = "SUCCESS"
    HEALTHY = "HEALTHY"


@dataclass(frozen=True, slots=True)
class Dependency:
    container: str
    condition: Condition


@dataclass(frozen=True, slots=True)
class HealthCheckSpec:
    """``healthCheck`` of a container definition, in seconds (Docker's defaults when absent)."""

    command: tuple[str, ...]
    interval: float = 30.0
    timeout: float = 5.0
    retries: int = 3
    start_period: float = 0.0

    def argv(self) -> list[str] | None:
        """``CMD-SHELL x`` -> ``sh -c x``; ``CMD a b`` -> ``a b``; ``NONE`` (or nothing) -> None."""
        if not self.command or self.command[0] == "NONE":
            return None
        kind, rest = self.command[0], list(self.command[1:])
        if kind == "CMD-SHELL":
            return ["/bin/sh", "-c", " ".join(rest)] if rest else None
        if kind == "CMD":
            return rest or None
        return list(self.command)

    @classmethod
    def from_wire(cls, value: Any) -> HealthCheckSpec | None:
        if not isinstance(value, Mapping) or not read.strings(value.get("command")):
            return None
        return cls(
            command=read.strings(value.get("command")),
            interval=read.seconds(value.get("interval")) or 30.0,
            timeout=read.seconds(value.get("timeout")) or 5.0,
            retries=read.positive(value.get("retries")) or 3,
            start_period=read.seconds(value.get("startPeriod")) or 0.0,
        )

    def to_wire(self) -> Doc:
        return {
            "command": list(self.command),
            "interval": self.interval,
            "timeout": self.timeout,
            "retries": self.retries,
            "startPeriod": self.start_period,
        }


@dataclass(frozen=True, slots=True)
class Ulimit:
    """``ulimits`` entry: ``name`` as in ECS (``nofile``, ``core``, ...), soft and hard limits."""

    name: str
    soft: int
    hard: int


@dataclass(frozen=True, slots=True)
class Tmpfs:
    """``linuxParameters.tmpfs`` entry: size in MiB, mount options as ECS lists them."""

    container_path: str
    size: int
    options: tuple[str, ...] = ()


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


_UNSUPPORTED_VOLUME_KINDS = (
    "efsVolumeConfiguration",
    "fsxWindowsFileServerVolumeConfiguration",
    "s3filesVolumeConfiguration",
)


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

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> Volume:
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
                autoprovision=read.flag(docker_doc.get("autoprovision")),
                driver=read.string(docker_doc.get("driver")) or "local",
                driver_opts=read.pairs(docker_doc.get("driverOpts")),
                labels=read.pairs(docker_doc.get("labels")),
            )
        source_path = read.string(read.mapping(doc.get("host")).get("sourcePath"))
        return cls(name=str(doc["name"]), source_path=source_path, docker=docker, unsupported=unsupported)

    def to_wire(self) -> Doc:
        doc: Doc = {"name": self.name}
        if self.source_path is not None:
            doc["host"] = {"sourcePath": self.source_path}
        if self.docker is not None:
            docker: Doc = {
                "scope": self.docker.scope.value,
                "autoprovision": self.docker.autoprovision,
                "driver": self.docker.driver,
            }
            if self.docker.driver_opts:
                docker["driverOpts"] = dict(self.docker.driver_opts)
            if self.docker.labels:
                docker["labels"] = dict(self.docker.labels)
            doc["dockerVolumeConfiguration"] = docker
        if self.unsupported == "configuredAtLaunch":
            doc["configuredAtLaunch"] = True
        elif self.unsupported is not None:
            doc[self.unsupported] = {"unsupported": True}  # the kind is all the agent needs: it refuses it
        return doc


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

    @classmethod
    def from_wire(cls, value: Any) -> LinuxParameters:
        if not isinstance(value, Mapping):
            return cls()
        capabilities = read.mapping(value.get("capabilities"))
        tmpfs = tuple(
            Tmpfs(str(t["containerPath"]), size, read.strings(t.get("mountOptions")))
            for t in read.mappings(value.get("tmpfs"))
            if read.named(t, "containerPath") and (size := read.positive(t.get("size"))) is not None
        )
        return cls(
            capabilities_add=read.strings(capabilities.get("add")),
            capabilities_drop=read.strings(capabilities.get("drop")),
            init_process_enabled=read.flag(value.get("initProcessEnabled")),
            tmpfs=tmpfs,
            shared_memory_size=read.positive(value.get("sharedMemorySize")),
        )

    def to_wire(self) -> Doc:
        return _drop_none(
            {
                "capabilities": {"add": list(self.capabilities_add), "drop": list(self.capabilities_drop)},
                "initProcessEnabled": self.init_process_enabled,
                "tmpfs": [
                    {"containerPath": t.container_path, "size": t.size}
                    | ({"mountOptions": list(t.options)} if t.options else {})
                    for t in self.tmpfs
                ],
                "sharedMemorySize": self.shared_memory_size,
            }
        )


def _container_name(value: Any) -> bool:
    """A container entry with a name ECS allows; ValueError for any other name (it names a directory)."""
    if not read.named(value, "name"):
        return False
    if not _CONTAINER_NAME_RE.fullmatch(value["name"]):
        raise ValueError(f"not a container name: {value['name']!r}")
    return True


@dataclass(frozen=True, slots=True)
class DesiredContainer:
    """One container definition, RunTask's ``containerOverrides`` applied."""

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
    log_configuration: LogConfiguration | None = None

    @property
    def effective_stop_timeout(self) -> float:
        return DEFAULT_STOP_TIMEOUT if self.stop_timeout is None else self.stop_timeout

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> DesiredContainer:
        depends = []
        for dep in read.mappings(doc.get("dependsOn")):
            try:
                depends.append(Dependency(str(dep["containerName"]), Condition(str(dep["condition"]))))
            except (KeyError, ValueError):
                continue
        ulimits = []
        for item in read.mappings(doc.get("ulimits")):
            soft, hard = read.integer(item.get("softLimit")), read.integer(item.get("hardLimit"))
            if read.string(item.get("name")) and soft is not None and hard is not None:
                ulimits.append(Ulimit(str(item["name"]), soft, hard))
        credentials = read.mapping(doc.get("repositoryCredentials"))
        return cls(
            name=str(doc["name"]),
            essential=read.flag(doc.get("essential"), True),
            image=read.text(doc.get("image")),
            entry_point=read.strings(doc.get("entryPoint")),
            command=read.strings(doc.get("command")),
            environment=tuple(
                (str(e["name"]), read.text(e.get("value")))
                for e in read.mappings(doc.get("environment"))
                if read.named(e, "name")
            ),
            working_directory=read.string(doc.get("workingDirectory")),
            user=read.string(doc.get("user")),
            depends_on=tuple(depends),
            health_check=HealthCheckSpec.from_wire(doc.get("healthCheck")),
            stop_timeout=read.seconds(doc.get("stopTimeout")),
            start_timeout=read.seconds(doc.get("startTimeout")),
            cpu=max(0, read.integer(doc.get("cpu")) or 0),
            memory=read.positive(doc.get("memory")),
            memory_reservation=read.positive(doc.get("memoryReservation")),
            ulimits=tuple(ulimits),
            readonly_root_filesystem=read.flag(doc.get("readonlyRootFilesystem")),
            privileged=read.flag(doc.get("privileged")),
            linux_parameters=LinuxParameters.from_wire(doc.get("linuxParameters")),
            mount_points=tuple(
                MountPoint(
                    read.string(m.get("sourceVolume")) or "",
                    str(m["containerPath"]),
                    read.flag(m.get("readOnly")),
                )
                for m in read.mappings(doc.get("mountPoints"))
                if read.named(m, "containerPath")
            ),
            volumes_from=tuple(
                VolumeFrom(str(v["sourceContainer"]), read.flag(v.get("readOnly")))
                for v in read.mappings(doc.get("volumesFrom"))
                if read.named(v, "sourceContainer")
            ),
            environment_files=tuple(
                EnvironmentFile(str(f["value"]), read.string(f.get("type")) or "s3")
                for f in read.mappings(doc.get("environmentFiles"))
                if read.named(f, "value")
            ),
            repository_credentials=read.string(credentials.get("credentialsParameter")),
            log_configuration=LogConfiguration.from_wire(doc.get("logConfiguration")),
        )

    def to_wire(self) -> Doc:
        return _drop_none(
            {
                "name": self.name,
                "essential": self.essential,
                "image": self.image,
                "entryPoint": list(self.entry_point),
                "command": list(self.command),
                "environment": [{"name": n, "value": v} for n, v in self.environment],
                "workingDirectory": self.working_directory,
                "user": self.user,
                "dependsOn": [
                    {"containerName": d.container, "condition": d.condition.value} for d in self.depends_on
                ],
                "healthCheck": self.health_check.to_wire() if self.health_check else None,
                "stopTimeout": self.stop_timeout,
                "startTimeout": self.start_timeout,
                "cpu": self.cpu,
                "memory": self.memory,
                "memoryReservation": self.memory_reservation,
                "ulimits": [{"name": u.name, "softLimit": u.soft, "hardLimit": u.hard} for u in self.ulimits],
                "readonlyRootFilesystem": self.readonly_root_filesystem,
                "privileged": self.privileged,
                "linuxParameters": self.linux_parameters.to_wire(),
                "mountPoints": [
                    {"sourceVolume": m.source_volume, "containerPath": m.container_path}
                    | ({"readOnly": True} if m.read_only else {})
                    for m in self.mount_points
                ],
                "volumesFrom": [
                    {"sourceContainer": v.source_container, "readOnly": v.read_only}
                    for v in self.volumes_from
                ],
                "environmentFiles": [{"value": f.value, "type": f.type} for f in self.environment_files],
                "repositoryCredentials": (
                    {"credentialsParameter": self.repository_credentials}
                    if self.repository_credentials
                    else None
                ),
                "logConfiguration": self.log_configuration.to_wire() if self.log_configuration else None,
            }
        )


@dataclass(frozen=True, slots=True)
class PortBinding:
    """One host port of a ``bridge`` task: the control plane chose ``host_port`` at placement."""

    container_port: int
    host_port: int
    protocol: str = "tcp"

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> PortBinding | None:
        container, host = read.integer(doc.get("containerPort")), read.integer(doc.get("hostPort"))
        protocol = read.text(doc.get("protocol"), "tcp")
        if not (container and host and 0 < container < 65536 and 0 < host < 65536):
            return None
        return cls(container, host, protocol if protocol in ("tcp", "udp") else "tcp")

    def to_wire(self) -> Doc:
        return {"containerPort": self.container_port, "hostPort": self.host_port, "protocol": self.protocol}


@dataclass(frozen=True, slots=True)
class DesiredTask:
    """One entry of ``tasks``: a task placed on this instance and what should become of it."""

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
    network_mode: str = "awsvpc"
    cpu: int = 0  # what the task reserves on the instance (placement)
    memory: int = 0
    task_role_arn: str | None = None  # the role whose credentials the containers get (169.254.170.2)
    execution_role_arn: str | None = None
    launch_type: str = "EC2"
    availability_zone: str = ""
    port_bindings: tuple[PortBinding, ...] = ()  # bridge mode: NAT port mappings on the instance

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
        try:
            status = DesiredStatus(str(doc.get("desiredStatus", "RUNNING")))
        except ValueError:
            status = DesiredStatus.RUNNING
        limits = read.mapping(doc.get("limits"))
        arn = str(doc["taskArn"])
        task_id_of(arn)  # refuse an answer whose task id could name a path outside ours
        eni_doc = doc.get("eni")
        return cls(
            arn=arn,
            desired_status=status,
            containers=tuple(
                DesiredContainer.from_wire(c)
                for c in read.as_list(doc.get("containers"))
                if _container_name(c)
            ),
            eni=Eni.from_wire(eni_doc) if isinstance(eni_doc, Mapping) else None,
            stop_reason=read.string(doc.get("stopReason")),
            family=read.text(doc.get("family")),
            revision=read.integer(doc.get("revision")) or 0,
            volumes=tuple(
                Volume.from_wire(v) for v in read.as_list(doc.get("volumes")) if read.named(v, "name")
            ),
            task_cpu=read.units(limits.get("cpu"), parse_cpu_units),
            task_memory=read.units(limits.get("memory"), parse_memory_mib),
            network_mode=read.string(doc.get("networkMode")) or "awsvpc",
            cpu=max(0, read.integer(doc.get("cpu")) or 0),
            memory=max(0, read.integer(doc.get("memory")) or 0),
            task_role_arn=read.string(doc.get("taskRoleArn")),
            execution_role_arn=read.string(doc.get("executionRoleArn")),
            launch_type=read.string(doc.get("launchType")) or "EC2",
            availability_zone=read.text(doc.get("availabilityZone")),
            port_bindings=tuple(
                b for b in map(PortBinding.from_wire, read.mappings(doc.get("portBindings"))) if b is not None
            ),
        )

    def to_wire(self) -> Doc:
        return {
            "taskArn": self.arn,
            "desiredStatus": self.desired_status.value,
            "stopReason": self.stop_reason,
            "family": self.family,
            "revision": self.revision,
            "networkMode": self.network_mode,
            "cpu": self.cpu,
            "memory": self.memory,
            "limits": {"cpu": self.task_cpu, "memory": self.task_memory},
            "volumes": [v.to_wire() for v in self.volumes],
            "eni": self.eni.to_wire() if self.eni else None,
            "containers": [c.to_wire() for c in self.containers],
            "taskRoleArn": self.task_role_arn,
            "executionRoleArn": self.execution_role_arn,
            "launchType": self.launch_type,
            "availabilityZone": self.availability_zone,
            "portBindings": [b.to_wire() for b in self.port_bindings],
        }
