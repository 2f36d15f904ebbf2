"""From a desired task's container to the runtime's :class:`ContainerSpec`.

:func:`to_container_spec` is the pure mapping; :func:`build_container_spec` adds the host work it needs
(volume directories, environment files) and turns what cannot be provided into a :class:`StartError`
whose reason the task stops with.

Not mapped on purpose: ``hostname`` (RegisterTaskDefinition refuses it under ``awsvpc``; the runtime keeps
its own default), ``linuxParameters.devices``/``maxSwap``/``swappiness`` (no ``ContainerSpec`` field yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from taskvpc.agent import envfiles, volumes
from taskvpc.agent.runtime import ContainerSpec, Mount, StartError
from taskvpc.agent.taskplan import DesiredTask


def to_container_spec(
    task: DesiredTask,
    name: str,
    mounts: Sequence[Mount] = (),
    environment: Sequence[tuple[str, str]] | None = None,
) -> ContainerSpec:
    """``name``'s definition as a ContainerSpec; ``environment`` replaces the definition's when given
    (with its environment files merged in)."""
    spec = task.container(name)
    if spec is None:
        raise KeyError(name)
    linux = spec.linux_parameters
    return ContainerSpec(
        task_id=task.task_id,
        name=name,
        image=spec.image,
        entry_point=spec.entry_point,
        command=spec.command,
        environment=tuple(spec.environment if environment is None else environment),
        working_directory=spec.working_directory,
        user=spec.user,
        task_arn=task.arn,
        cpu=spec.cpu,
        memory=spec.memory,
        memory_reservation=spec.memory_reservation,
        task_cpu=task.task_cpu,
        task_memory=task.task_memory,
        ulimits=spec.ulimits,
        readonly_root_filesystem=spec.readonly_root_filesystem,
        privileged=spec.privileged,
        capabilities_add=linux.capabilities_add,
        capabilities_drop=linux.capabilities_drop,
        init_process_enabled=linux.init_process_enabled,
        tmpfs=linux.tmpfs,
        shared_memory_size=linux.shared_memory_size,
        mounts=tuple(mounts),
        hostname=None,
        repository_credentials=spec.repository_credentials,
    )


def build_container_spec(task: DesiredTask, name: str, state_dir: Path) -> ContainerSpec:
    """The ContainerSpec to start ``name`` with, its volume directories made. Raises StartError."""
    spec = task.container(name)
    if spec is None:
        raise StartError(f"CannotStartContainerError: no container named '{name}' in the task")
    try:
        plan = volumes.plan_mounts(task, name, state_dir)
        volumes.prepare(plan)
        files = envfiles.read_env_files(spec.environment_files)
    except (volumes.VolumeError, envfiles.EnvFileError) as exc:
        raise StartError(exc.reason) from None
    environment = envfiles.merge_environment(spec.environment, files)
    return to_container_spec(task, name, plan.mounts, environment)
