"""Task volumes on the host: ``volumes``, ``mountPoints`` and ``volumesFrom`` resolved to bind mounts.

:func:`plan_mounts` is pure (task + container + state dir -> mounts and the directories they need);
:func:`prepare` makes those directories; :func:`remove_task_volumes` deletes a task's own volumes.

Where each kind of volume lives (as ECS's agent provides them with Docker; here plain directories):

* ``host.sourcePath``: that host path, bind-mounted; created as a directory when it does not exist (what
  the Docker daemon does for a missing bind source).
* no ``host``/``dockerVolumeConfiguration`` (an "empty" volume), or ``dockerVolumeConfiguration`` with
  scope ``task``: ``<state>/tasks/<task-id>/.volumes/<name>``, shared by the task's containers, created
  when the first container that mounts it starts, deleted with the task's other state (``purge_task``).
  The leading dot keeps it apart from container directories (container names cannot contain '.').
* ``dockerVolumeConfiguration`` scope ``shared``: ``<state>/volumes/<name>``, kept across tasks. With
  ``autoprovision`` it is created when missing; without, it must exist already (make it with ``mkdir``),
  else the task fails with the ECS agent's words.
* Only driver ``local`` without ``driverOpts`` can be provided, and no EFS/FSx/S3 Files/EBS volumes: those
  fail the container's start with a reason that says so (placement normally keeps such tasks away, as
  their ``requiresAttributes`` name capabilities this agent does not register).

``volumesFrom`` gives a container every mount of the source container (transitively), read-only when the
entry says ``readOnly`` and otherwise as the source has it; the container's own ``mountPoints`` win over
them on the same path, as in Docker. Mounts are ordered parents first, so none hides another.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from taskvpc.agent.runtime import Mount, task_dir
from taskvpc.agent.taskplan import DesiredContainer, DesiredTask, Volume, VolumeScope

TASK_VOLUMES_DIR = ".volumes"
SHARED_VOLUMES_DIR = "volumes"
VOLUME_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")  # ECS's rule for volume names [API Volume.name]


class VolumeError(Exception):
    """A volume cannot be provided; ``reason`` is what the container's (and task's) stop reason says."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MountPlan:
    """What one container needs: its bind mounts and the host directories behind them."""

    mounts: tuple[Mount, ...] = ()
    create: tuple[Path, ...] = ()  # made (with parents) when absent
    require: tuple[tuple[str, Path], ...] = ()  # (volume name, path) that must exist already


def task_volume_dir(state_dir: Path, task_id: str, name: str) -> Path:
    return task_dir(state_dir, task_id) / TASK_VOLUMES_DIR / name


def shared_volume_dir(state_dir: Path, name: str) -> Path:
    return state_dir / SHARED_VOLUMES_DIR / name


@dataclass(frozen=True, slots=True)
class _Source:
    path: Path
    create: bool  # make it when absent; otherwise it has to exist


def _source(task: DesiredTask, volume: Volume, state_dir: Path) -> _Source:
    name = volume.name
    if not VOLUME_NAME_RE.fullmatch(name):
        raise VolumeError(f"CannotCreateContainerError: invalid volume name '{name}'")  # unconfirmed
    if volume.unsupported is not None:
        raise VolumeError(  # unconfirmed
            f"CannotCreateContainerError: volume '{name}': {volume.unsupported} is not supported by taskvpc"
        )
    if volume.source_path is not None:
        if not volume.source_path.startswith("/"):
            raise VolumeError(  # unconfirmed
                f"CannotCreateContainerError: volume '{name}': host.sourcePath "
                f"'{volume.source_path}' must be an absolute path"
            )
        return _Source(Path(volume.source_path), create=True)
    docker = volume.docker
    if docker is None or docker.scope is VolumeScope.TASK:
        _check_driver(volume)
        return _Source(task_volume_dir(state_dir, task.task_id, name), create=True)
    _check_driver(volume)
    return _Source(shared_volume_dir(state_dir, name), create=docker.autoprovision)


def _check_driver(volume: Volume) -> None:
    docker = volume.docker
    if docker is not None and (docker.driver != "local" or docker.driver_opts):
        raise VolumeError(  # unconfirmed
            f"CannotCreateContainerError: volume '{volume.name}': driver '{docker.driver}'"
            f"{' with driverOpts' if docker.driver_opts else ''} is not supported by taskvpc "
            "(only 'local' without driverOpts)"
        )


def _normalised(container_path: str) -> str:
    return str(PurePosixPath("/") / container_path.strip()) if container_path.strip() else "/"


def _depth(mount: Mount) -> int:
    return len(PurePosixPath(mount.destination).parts)


def plan_mounts(task: DesiredTask, container: str, state_dir: Path) -> MountPlan:
    """The mounts of ``container`` (a name in ``task``) and the directories to create; raises VolumeError."""
    volumes = {v.name: v for v in task.volumes}
    mounts: dict[str, Mount] = {}
    create: dict[Path, None] = {}
    require: dict[str, Path] = {}

    def own_mounts(spec: DesiredContainer) -> list[Mount]:
        found: list[Mount] = []
        seen: set[str] = set()
        for point in spec.mount_points:
            volume = volumes.get(point.source_volume)
            if volume is None:
                # RegisterTaskDefinition refuses this ("Unknown volume 'x'."); an odd desired state still can't
                raise VolumeError(f"CannotCreateContainerError: Unknown volume '{point.source_volume}'.")
            destination = _normalised(point.container_path)
            if destination in seen:
                # Docker's wording (daemon/volumes.go) # unconfirmed as ECS shows it
                raise VolumeError(
                    f"CannotCreateContainerError: Error response from daemon: Duplicate mount point: {destination}"
                )
            seen.add(destination)
            source = _source(task, volume, state_dir)
            if source.create:
                create[source.path] = None
            else:
                require[volume.name] = source.path
            found.append(Mount(str(source.path), destination, point.read_only))
        return found

    def all_mounts(name: str, visiting: frozenset[str]) -> list[Mount]:
        spec = task.container(name)
        if spec is None:
            raise VolumeError(  # unconfirmed
                f"CannotCreateContainerError: volumesFrom: no container named '{name}' in the task"
            )
        inherited: dict[str, Mount] = {}
        for source in spec.volumes_from:
            if source.source_container in visiting:
                continue  # a cycle adds nothing new
            for mount in all_mounts(source.source_container, visiting | {source.source_container}):
                read_only = mount.read_only or source.read_only
                inherited[mount.destination] = Mount(mount.source, mount.destination, read_only)
        for mount in own_mounts(spec):
            inherited[mount.destination] = mount  # the container's own mount points win
        return list(inherited.values())

    for mount in all_mounts(container, frozenset({container})):
        mounts[mount.destination] = mount
    ordered = sorted(mounts.values(), key=_depth)  # stable: parents before children
    return MountPlan(tuple(ordered), tuple(create), tuple(require.items()))


def prepare(plan: MountPlan) -> None:
    """Make the directories the plan needs; check the ones that must exist. Raises VolumeError."""
    for name, path in plan.require:
        if not path.is_dir():
            # the ECS agent's text (agent/api/task/task.go addSharedVolumes); its prefix in a stop reason is
            # unconfirmed
            raise VolumeError(
                "ResourceInitializationError: initialize volume: volume detection failed, "
                f"volume '{name}' does not exist and autoprovision is set to false"
            )
    for path in plan.create:
        if os.path.lexists(path):
            continue  # an existing file or directory is used as it is (a bind source may be a file)
        try:
            path.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise VolumeError(  # unconfirmed
                f"CannotCreateContainerError: cannot create volume directory {path}: {exc.strerror or exc}"
            ) from None


def remove_task_volumes(state_dir: Path, task_id: str) -> None:
    """Delete the task's own volumes (task scope and empty ones); shared and host volumes stay."""
    shutil.rmtree(task_dir(state_dir, task_id) / TASK_VOLUMES_DIR, ignore_errors=True)
