"""Task-level cgroups on the host, for cgroup v1 and v2.

runc creates (and ``runc delete`` removes) a container's own cgroup ``/<parent>/<task-id>/<container>``
and limits only that one; the intermediate ``/<parent>/<task-id>`` it merely creates. The task's
``cpu``/``memory`` limits belong on that intermediate cgroup, so the runtime creates it first with its
limits (:func:`setup_task`) and removes it when the task's last container goes (:func:`remove`). A task
without task-level limits has no such level: its containers' cgroups are ``/<parent>/<task-id>.<name>``
(``oci.cgroups_path``), one memory cgroup per container rather than two.

* **v1** (a hierarchy per controller under ``/sys/fs/cgroup``): ``memory/<parent>/<task>`` gets
  ``memory.limit_in_bytes``, ``cpu/<parent>/<task>`` ``cpu.cfs_quota_us``/``cpu.cfs_period_us``; runc
  creates the task directory in the other hierarchies, and :func:`remove` removes it from all.
* **v2** (``/sys/fs/cgroup`` is cgroup2): ``<parent>/<task>`` gets ``memory.max`` and ``cpu.max`` after
  the ``cpu``, ``memory`` and ``pids`` controllers are enabled in the parents' ``cgroup.subtree_control``.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from taskvpc.agent.runtime.oci import task_cgroup_limits

CGROUP_ROOT = Path("/sys/fs/cgroup")
V2_CONTROLLERS = ("cpu", "memory", "pids")


def is_unified(root: Path = CGROUP_ROOT) -> bool:
    """True when ``root`` is a cgroup2 mount (the unified hierarchy only)."""
    return (root / "cgroup.controllers").exists()


def hierarchies(root: Path = CGROUP_ROOT) -> list[Path]:
    """Every hierarchy a cgroup path exists in: ``root`` itself on v2, each mounted one on v1."""
    if is_unified(root):
        return [root]
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def _rel(path: str) -> str:
    return path.strip("/")


def setup_task(
    task_path: str, task_cpu: int | None, task_memory: int | None, root: Path = CGROUP_ROOT
) -> None:
    """Create the task's cgroup with its limits (idempotent); nothing when the task has no limits."""
    unified = is_unified(root)
    limits = task_cgroup_limits(task_cpu, task_memory, unified=unified)
    if not limits:
        return
    if unified:
        _enable_controllers(root, _rel(task_path))
        directory = root / _rel(task_path)
        directory.mkdir(parents=True, exist_ok=True)
        for name, value in limits[""].items():
            (directory / name).write_text(value)
        return
    for controller, files in limits.items():
        directory = root / controller / _rel(task_path)
        directory.mkdir(parents=True, exist_ok=True)
        for name, value in files.items():
            (directory / name).write_text(value)


def _enable_controllers(root: Path, rel: str) -> None:
    """On v2, enable our controllers in ``root`` and every ancestor of ``rel`` (not ``rel`` itself)."""
    current = root
    for part in [p for p in rel.split("/") if p]:
        available = (current / "cgroup.controllers").read_text().split()
        enabled = (current / "cgroup.subtree_control").read_text().split()
        for controller in V2_CONTROLLERS:
            if controller in available and controller not in enabled:
                with contextlib.suppress(OSError):
                    (current / "cgroup.subtree_control").write_text(f"+{controller}")
        current = current / part
        current.mkdir(exist_ok=True)


def oom_file(container_path: str, root: Path = CGROUP_ROOT) -> Path:
    """The file whose ``oom_kill`` line counts the OOM kills in a container's cgroup."""
    if is_unified(root):
        return root / _rel(container_path) / "memory.events"
    return root / "memory" / _rel(container_path) / "memory.oom_control"


def release_memory(path: str, root: Path = CGROUP_ROOT) -> None:
    """Reclaim the page cache still charged to cgroup ``path`` (and its removed descendants) once its
    processes have ended, before it is removed.

    A removed memory cgroup lingers, dying and invisible, for as long as a page charged to it stays
    cached: here the file-system metadata its container wrote (runc's mount points and copy-ups in the
    writable layer). Each dying one keeps its shrinker map (~0.8 MiB on this host, see README "Kernel
    memory per task"): after a few 5,000-task runs 8,300 of them held 7.3 GB of unreclaimable kernel
    memory, released only under memory pressure. v1 has ``memory.force_empty`` for exactly this;
    v2 ``memory.reclaim``. Best effort: a cgroup with processes, or no memory controller, is left as is.
    """
    unified = is_unified(root)
    directory = root / _rel(path) if unified else root / "memory" / _rel(path)
    try:
        if unified:
            current = (directory / "memory.current").read_text().strip()
            if current != "0":
                _write_control(directory / "memory.reclaim", current)
        else:
            _write_control(directory / "memory.force_empty", "0")
    except OSError:
        pass  # gone already, busy (EBUSY: processes left), EAGAIN (v2: not all reclaimed), no controller


def _write_control(path: Path, text: str) -> None:
    """Write a cgroup's control file, never creating one (a directory without it is no cgroup of ours)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
            raise


def remove(path: str, root: Path = CGROUP_ROOT) -> None:
    """Remove cgroup ``path`` and its (empty) descendants from every hierarchy; busy ones stay."""
    if not _rel(path):
        raise ValueError("refusing to remove the root cgroup")
    for hierarchy in hierarchies(root):
        top = hierarchy / _rel(path)
        if not top.is_dir():
            continue
        if hierarchy.name == "memory" or hierarchy == root:
            release_memory(path, root)
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda e: -e[0].count("/")):
            _rmdir(Path(dirpath))


def has_processes(path: str, root: Path = CGROUP_ROOT) -> bool:
    """Whether a process is in cgroup ``path`` or below it. One hierarchy is enough: a container's
    processes are in every hierarchy's cgroup of that path."""
    for top in existing(path, root)[:1]:
        for dirpath, _dirs, _files in os.walk(top):
            with contextlib.suppress(OSError):
                if (Path(dirpath) / "cgroup.procs").read_text().strip():
                    return True
    return False


def existing(path: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """The directories of cgroup ``path`` that exist, in any hierarchy (for leftover checks)."""
    return [h / _rel(path) for h in hierarchies(root) if (h / _rel(path)).exists()]
