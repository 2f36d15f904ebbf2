"""Container runtimes behind one small interface, chosen by a config string (as uvicorn picks its loops).

``process`` (``process.ProcessRuntime``) runs each container's command as a supervised process in the
task's network namespace; ``runc`` (an OCI runtime with images) slots in by adding one entry to
``RUNTIMES``: the engine only ever sees :class:`Runtime`.

Every runtime keeps its per-container state under ``<state>/tasks/<task-id>/<container>/`` (at least
``log``), and must find its containers again after an agent restart (``list_ours``), counting any
container whose state it cannot establish as possibly running (``ContainerStatus.UNKNOWN``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from taskvpc.agentapi.reports import HealthStatus as HealthStatus
from taskvpc.agentapi.tasks import (
    DEFAULT_STOP_TIMEOUT as DEFAULT_STOP_TIMEOUT,
    HealthCheckSpec as HealthCheckSpec,
    Tmpfs as Tmpfs,
    Ulimit as Ulimit,
)


class ContainerStatus(StrEnum):
    CREATED = "CREATED"  # state exists but it never ran (e.g. the agent died between the two)
    RUNNING = "RUNNING"
    EXITED = "EXITED"  # ended; ``exit_code`` set unless it could not be known
    FAILED = "FAILED"  # never started; ``reason`` says why
    UNKNOWN = "UNKNOWN"  # cannot tell (supervisor gone, process maybe alive): treat as running


@dataclass(frozen=True, slots=True)
class Mount:
    """A bind mount into the container, already resolved to a host path by the engine (volumes)."""

    source: str
    destination: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """What a runtime needs to start one container of one task.

    Limits are in ECS units: ``cpu`` in CPU units (1024 = one vCPU), memory sizes in MiB. ``task_cpu`` and
    ``task_memory`` are the task-level limits that all containers of the task share (None: unlimited).
    The ``process`` runtime honours only the first group of fields; ``runc`` honours all of them.
    """

    task_id: str
    name: str
    image: str = ""
    entry_point: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    working_directory: str | None = None
    user: str | None = None
    task_arn: str = ""
    # -- honoured by runtimes with images and cgroups (runc)
    cpu: int = 0
    memory: int | None = None  # hard limit, MiB
    memory_reservation: int | None = None  # soft limit, MiB
    task_cpu: int | None = None
    task_memory: int | None = None
    ulimits: tuple[Ulimit, ...] = ()
    readonly_root_filesystem: bool = False
    privileged: bool = False
    capabilities_add: tuple[str, ...] = ()
    capabilities_drop: tuple[str, ...] = ()
    init_process_enabled: bool = False
    tmpfs: tuple[Tmpfs, ...] = ()
    shared_memory_size: int | None = None  # MiB
    mounts: tuple[Mount, ...] = ()
    hostname: str | None = None
    repository_credentials: str | None = None  # ``repositoryCredentials.credentialsParameter``

    def process_argv(self) -> list[str]:
        """ECS semantics without an image to read: ``entryPoint + command``, or ``command`` alone."""
        return [*self.entry_point, *self.command]


@dataclass(frozen=True, slots=True)
class ContainerHandle:
    task_id: str
    name: str
    runtime_id: str = ""


@dataclass(frozen=True, slots=True)
class ContainerState:
    status: ContainerStatus
    exit_code: int | None = None
    reason: str | None = None
    pid: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    pull_started_at: float | None = None  # image pull (runtimes with images), epoch seconds
    pull_stopped_at: float | None = None

    @property
    def possibly_running(self) -> bool:
        return self.status in (ContainerStatus.RUNNING, ContainerStatus.UNKNOWN)


NO_DETAIL = "the runtime gave no reason (see the agent's log)"


def with_detail(reason: str) -> str:
    """``reason``, never without its text: ``CannotStartContainerError:`` alone (once seen at ~3,000
    tasks, from a timeout that printed as nothing) becomes ``CannotStartContainerError: <NO_DETAIL>``."""
    text = reason.strip()
    kind, sep, rest = text.partition(":")
    if not text:
        return f"CannotStartContainerError: {NO_DETAIL}"
    if (sep and not rest.strip()) or (not sep and kind.endswith("Error") and " " not in kind):
        return f"{kind}: {NO_DETAIL}"
    return text


def error_text(exc: BaseException) -> str:
    """An exception as a reason's text, never empty (``str(TimeoutError())`` is ``""``)."""
    text = str(exc).strip()
    return text if text else f"{type(exc).__name__} ({NO_DETAIL})"


class StartError(Exception):
    """The container could not be started. ``reason`` is what ECS shows (``CannotStartContainerError: …``),
    never a bare prefix (:func:`with_detail`)."""

    def __init__(self, reason: str) -> None:
        reason = with_detail(reason)
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class Runtime(Protocol):
    name: str
    state_dir: Path

    async def start(self, spec: ContainerSpec, netns_path: str | None, log_path: str) -> ContainerHandle:
        """Start the container; return once it runs. Raises :class:`StartError`."""
        ...

    async def stop(self, handle: ContainerHandle, timeout: float) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; wait for the end; the exit code if known."""
        ...

    def status(self, handle: ContainerHandle) -> ContainerState: ...

    async def wait(self, handle: ContainerHandle) -> ContainerState:
        """Return once the container is no longer running (at once if it is not)."""
        ...

    def list_ours(self) -> list[ContainerHandle]:
        """Every container this runtime has state for on the host, running or not."""
        ...

    async def remove(self, handle: ContainerHandle) -> None:
        """Forget a container that no longer runs (its log is kept). Absent already is success."""
        ...

    async def exec(self, handle: ContainerHandle, argv: Sequence[str], timeout: float) -> int | None:
        """Run ``argv`` as the container would (namespace, user, cwd, env); None on timeout."""
        ...

    def purge_task(self, task_id: str) -> None:
        """Delete everything kept for a task, logs included (none of its containers may run)."""
        ...


RUNTIMES: Mapping[str, str] = {
    "process": "taskvpc.agent.runtime.process:ProcessRuntime",
    "runc": "taskvpc.agent.runtime.runc:RuncRuntime",
}


def resolve_runtime(name: str) -> str:
    """``auto``: ``runc`` where an OCI runtime (runc or crun) is installed and we are root, else ``process``."""
    if name != "auto":
        return name
    from taskvpc.agent.runtime.runc import find_oci_runtime

    return "runc" if os.geteuid() == 0 and find_oci_runtime() else "process"


def create_runtime(name: str, state_dir: str | os.PathLike[str], **options: Any) -> Runtime:
    """The runtime a config string names (``process`` or ``runc``), with its own ``options``."""
    try:
        target = RUNTIMES[name]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; choose one of {', '.join(sorted(RUNTIMES))}") from None
    module_name, _, attr = target.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    runtime: Runtime = factory(Path(state_dir), **options)
    return runtime


def task_dir(state_dir: Path, task_id: str) -> Path:
    return state_dir / "tasks" / task_id


def container_dir(state_dir: Path, task_id: str, name: str) -> Path:
    return task_dir(state_dir, task_id) / name


def read_logs(state_dir: str | os.PathLike[str], task_id: str, container: str | None = None) -> str:
    """A container's captured stdout+stderr (all containers of the task, headed by name, when None)."""
    from taskvpc.agent.runtime.logs import read_container_log

    base = task_dir(Path(state_dir), task_id)
    if container is not None:
        return read_container_log(base / container)
    parts = []
    for entry in sorted(base.iterdir()) if base.is_dir() else []:
        if (entry / "log").is_file():
            parts.append(f"==> {entry.name} <==\n{read_container_log(entry)}")
    return "\n".join(parts)
