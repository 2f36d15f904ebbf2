"""Task resources: what a task needs besides its containers, each with ``ensure``/``remove`` and a phase.

As ECS's agent does (``agent/taskresource``), the engine does not know what a task's resources are: each
kind registers a factory (:func:`register`, one line); the factories of a task make its resources (or
decline, returning None), the engine ensures them in registration order before any container starts and
removes them in reverse once every container has stopped, carrying on past errors. A resource's phase
moves through :data:`TRANSITIONS` only; a move the table lacks is a bug and raises.

Today's kinds: the task network (the data plane's reconciler, ``dataplane.DataPlane``) and the task's own
volumes. Credentials, log routing and load-balancer registration come the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from taskvpc.agent.dataplane import DataPlane
from taskvpc.agent.drivers.bridge import BridgeDriver
from taskvpc.agent.kvlog import kv
from taskvpc.agent.logshipper import AwslogsResource, LogShipper, wants_awslogs
from taskvpc.agent.volumes import VOLUME_NAME_RE, task_volume_dir
from taskvpc.agentapi.tasks import DesiredTask, VolumeScope

log = logging.getLogger(__name__)


class Phase(StrEnum):
    NONE = "NONE"
    CREATING = "CREATING"
    CREATED = "CREATED"
    FAILED = "FAILED"
    REMOVING = "REMOVING"
    REMOVED = "REMOVED"


class Event(StrEnum):
    ENSURE = "ENSURE"
    ENSURED = "ENSURED"
    FAILED = "FAILED"
    REMOVE = "REMOVE"
    REMOVED = "REMOVED"


TRANSITIONS: dict[tuple[Phase, Event], Phase] = {
    (Phase.NONE, Event.ENSURE): Phase.CREATING,
    (Phase.CREATING, Event.ENSURED): Phase.CREATED,
    (Phase.CREATING, Event.FAILED): Phase.FAILED,
    (Phase.FAILED, Event.ENSURE): Phase.CREATING,  # retried
    (Phase.CREATED, Event.ENSURE): Phase.CREATING,  # ensured again: idempotent
    (Phase.NONE, Event.REMOVE): Phase.REMOVING,  # never made: removing finds nothing (or an adopted one)
    (Phase.CREATED, Event.REMOVE): Phase.REMOVING,
    (Phase.FAILED, Event.REMOVE): Phase.REMOVING,  # half made: remove what there is
    (Phase.REMOVING, Event.REMOVED): Phase.REMOVED,
    (Phase.REMOVING, Event.FAILED): Phase.FAILED,
}


def advance(phase: Phase, event: Event) -> Phase:
    try:
        return TRANSITIONS[(phase, event)]
    except KeyError:
        raise ValueError(f"a task resource cannot go from {phase} on {event}") from None


class TaskResource(Protocol):
    name: str

    async def ensure(self) -> None: ...

    async def remove(self) -> None: ...


@dataclass(frozen=True)
class ResourceContext:
    """What a factory may use to make a task's resources."""

    task: DesiredTask
    network: DataPlane | None
    state_dir: Path
    logs: LogShipper | None = None  # the awslogs driver (logshipper.py)


ResourceFactory = Callable[[ResourceContext], TaskResource | None]
FACTORIES: list[ResourceFactory] = []


def register(factory: ResourceFactory) -> ResourceFactory:
    FACTORIES.append(factory)
    return factory


class TaskResources:
    """One task's resources and their phases; the worker that owns the task is the only caller."""

    def __init__(self, ctx: ResourceContext) -> None:
        made = (factory(ctx) for factory in FACTORIES)
        self.resources = [r for r in made if r is not None]
        self.phases = {r.name: Phase.NONE for r in self.resources}

    def get(self, name: str) -> TaskResource | None:
        return next((r for r in self.resources if r.name == name), None)

    def _move(self, resource: TaskResource, event: Event) -> None:
        self.phases[resource.name] = advance(self.phases[resource.name], event)

    async def ensure(self) -> None:
        """Each resource in order; the first failure raises (the worker retries, then fails the task)."""
        for resource in self.resources:
            self._move(resource, Event.ENSURE)
            try:
                await resource.ensure()
            except Exception:
                self._move(resource, Event.FAILED)
                raise
            self._move(resource, Event.ENSURED)

    async def remove(self) -> None:
        """In reverse order, carrying on past errors; raises the first one at the end."""
        first: Exception | None = None
        for resource in reversed(self.resources):
            if self.phases[resource.name] is Phase.REMOVED:
                continue
            self._move(resource, Event.REMOVE)
            try:
                await resource.remove()
            except Exception as exc:
                self._move(resource, Event.FAILED)
                log.error("resource removal failed %s", kv(resource=resource.name, error=repr(exc)))
                first = first or exc
                continue
            self._move(resource, Event.REMOVED)
        if first is not None:
            raise first


# ---------------------------------------------------------------------------------------------- kinds


class NetworkResource:
    """The task's ENI in its own namespace, through the one network reconciler."""

    name = "network"

    def __init__(self, network: DataPlane, task: DesiredTask) -> None:
        self.network = network
        self.task = task
        self.netns_path: str | None = None

    async def ensure(self) -> None:
        self.netns_path = await self.network.ensure_task(self.task)

    async def remove(self) -> None:
        await self.network.remove_task(self.task.task_id)


@register
def _network(ctx: ResourceContext) -> TaskResource | None:
    if ctx.network is None or ctx.task.eni is None:
        return None  # the host's network
    return NetworkResource(ctx.network, ctx.task)


class BridgedNetwork:
    """A ``bridge`` task's namespace on the instance's bridge with its NAT port mappings, or a ``none``
    task's namespace with loopback only (``drivers/bridge.py``)."""

    name = "network"

    def __init__(self, driver: BridgeDriver, task: DesiredTask) -> None:
        self.driver = driver
        self.task = task
        self.netns_path: str | None = None

    async def ensure(self) -> None:
        if self.task.network_mode == "none":
            self.netns_path = await asyncio.to_thread(self.driver.ensure_isolated, self.task.task_id)
        else:
            self.netns_path = await asyncio.to_thread(
                self.driver.ensure_task, self.task.task_id, self.task.port_bindings
            )

    async def remove(self) -> None:
        await asyncio.to_thread(self.driver.remove_task, self.task.task_id, self.task.port_bindings)


@register
def _bridged(ctx: ResourceContext) -> TaskResource | None:
    if ctx.network is None or ctx.task.eni is not None or ctx.task.network_mode not in ("bridge", "none"):
        return None
    return BridgedNetwork(BridgeDriver(ctx.network.cfg), ctx.task)


class TaskVolumes:
    """The task's own volumes (no configuration, or ``dockerVolumeConfiguration`` scope ``task``): made
    before any container starts, so every container sees the same directory. Removing them is left to
    log pruning (``Engine.prune_logs``): they stay inspectable with the task's logs, as documented."""

    name = "volumes"

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs

    async def ensure(self) -> None:
        for path in self.dirs:
            path.mkdir(parents=True, exist_ok=True)

    async def remove(self) -> None:
        return None  # see the class docstring


@register
def _volumes(ctx: ResourceContext) -> TaskResource | None:
    own = [
        task_volume_dir(ctx.state_dir, ctx.task.task_id, v.name)
        for v in ctx.task.volumes
        if VOLUME_NAME_RE.fullmatch(v.name)  # any other name is refused when a container mounts it
        and v.source_path is None
        and v.unsupported is None
        and (v.docker is None or (v.docker.scope is VolumeScope.TASK and v.docker.driver == "local"))
    ]
    return TaskVolumes(own) if own else None


@register
def _awslogs(ctx: ResourceContext) -> TaskResource | None:
    return AwslogsResource(ctx.logs, ctx.task) if ctx.logs is not None and wants_awslogs(ctx.task) else None
