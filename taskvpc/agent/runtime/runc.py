"""The ``runc`` runtime: each container is an OCI bundle run by ``runc`` (or ``crun``) in its task's netns.

Per container, ``<state>/tasks/<task-id>/<container>/`` is the bundle and the shim's directory:

* ``config.json`` (:func:`oci.build_spec`), ``rootfs/`` an overlay mount (lower: the image's shared,
  read-only unpacked root; ``upper/`` and ``work/`` here), ``pull.json`` (pull start/stop times);
* the shim's files (``spec.json``/``spec.bin``/``spec.cshim``, ``pid``, ``exit_code``,
  ``start_error``; see ``shim.py``), plus ``oom`` (the OOM kill count, when there was one),
  ``init.pid`` and ``runc.log`` (runc's warnings);
* ``log``, ``log.1``, ... the container's stdout and stderr, rotated by the shim (``log_max_files`` files
  of ``log_max_bytes``).

Start: resolve (or pull) the image, create the task's cgroup with the task-level limits
(``cgroups.setup_task``), write ``config.json``, then start the container's supervisor --
``taskvpc-cshim`` (``cshim.py``, 0.1 MiB each) when ``make setup`` built it, else the ``process``
runtime's Python shim (1.35 MiB), the same files either way. Its process first mounts the overlay in a
mount namespace of its own (``mountns.py``: not on the host, so a start's mount work does not grow with
the host's tasks; for the C one the shim server's child does it before the exec), then runs ``runc run
-d --pid-file`` there (runc joins the task's netns from the spec, by a path through the agent's root:
``/proc/<pid>/root/run/netns/<name>``), becomes the parent of the container's init when runc exits (it
is a child subreaper), records its exit code Docker's way (``128 + n`` for signal n) and copies its
output into the rotated log. ``start`` returns once the container runs: 40 ms at the median on a 2-core
VM, of which the shim's start is ~12 and ``runc run -d`` ~25 (``bench/runc_start.py``). runc keeps its
state under ``<state>/runc`` (``--root``), so this runtime never sees anyone else's containers. Also per
container: ``hosts``,
``hostname`` and ``resolv.conf`` (bind-mounted at ``/etc``, as Docker does).

``initProcessEnabled`` bind-mounts the host's static ``tini`` (Debian package ``tini``:
``/usr/bin/tini-static``; ``docker-init`` also works) at ``/sbin/docker-init``; without one on the host
such a container fails to start with a clear reason rather than run without its init.

Status, wait and adoption after an agent restart are the ``process`` runtime's (same shim, same files).
``stop`` signals the container's init (SIGTERM; SIGKILL after the timeout), after checking its ``/proc``
start time; SIGKILL of a PID namespace's init ends every process in it. ``exec`` is ``runc exec``.
``remove`` runs ``runc delete --force``, deletes the writable layer (the overlay ended with the shim's
mount namespace), the container's cgroup and, with the task's last container, the task's cgroup (only a task
with task-level limits has one: ``oci.has_task_cgroup``). An OOM kill (``oom_kill`` of the container's memory cgroup,
read by the shim when the init ends) shows as ECS shows it: reason
``OutOfMemoryError: Container killed due to memory usage`` and exit code 137.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from taskvpc.agent.images import ImageNotFound, ImageStore, InvalidReference, parse_reference
from taskvpc.agent.runtime import (
    NO_DETAIL,
    ContainerHandle,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    StartError,
    cgroups,
    cshim,
    mountns,
    oci,
    task_dir,
    with_detail,
)
from taskvpc.agent.runtime.process import DEFAULT_PATH, ProcessRuntime, _read_pid_info, _read_text
from taskvpc.agent.runtime.procs import alive, run_process

if TYPE_CHECKING:
    from taskvpc.agent.runtime.process import ShimChild

OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
DEFAULT_CGROUP_PARENT = "taskvpc"
DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_LOG_MAX_FILES = 5
INIT_BINARIES = ("tini-static", "docker-init")  # static, so they run in any image
MNT_DETACH = 2
_RUNC_FILES = (
    "config.json",
    "pull.json",
    "oom",
    "fail_reason",
    "init.pid",
    "runc.log",
    "hosts",
    "hostname",
    "resolv.conf",
)
_LAYER_DIRS = ("upper", "work")


class ImageSource(Protocol):
    """What the runtime needs of an image store (``taskvpc.agent.images.ImageStore`` by default; tests
    pass their own): ``resolve(ref)`` returns an object with ``rootfs`` (a directory) and ``config``
    (``oci.ImageDefaults``), or raises ``ImageNotFound`` (or a ``LookupError``). An optional
    ``pull(ref)`` is tried when the image is not there, as ECS pulls images it does not have."""

    def resolve(self, reference: str) -> Any: ...


def find_oci_runtime() -> str | None:
    return shutil.which("runc") or shutil.which("crun")


def find_init() -> str | None:
    for name in INIT_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


def bounding_capabilities() -> set[str] | None:
    """The capabilities this process may hand on (its bounding set), by name."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                return {name for bit, name in enumerate(oci.ALL_CAPABILITIES) if mask >> bit & 1}
    except (OSError, ValueError):
        pass
    return None


def default_nofile() -> tuple[int, int]:
    """ECS's default ``nofile``, lowered to this process's hard limit (raising it needs CAP_SYS_RESOURCE)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return oci.DEFAULT_NOFILE
    soft_default, hard_default = oci.DEFAULT_NOFILE
    return min(soft_default, hard), min(hard_default, hard)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount_points() -> set[str]:
    points = set()
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            field = line.split()[4]
            points.add(field.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\"))
    return points


def unmount(target: Path) -> None:
    """Detach ``target`` (and anything stacked on it) when it is a mount point. Asks the kernel, not
    ``mountinfo`` (whose length grows with every container on the host): EINVAL means no mount there."""
    libc = _libc()
    while libc.umount2(str(target).encode(), MNT_DETACH) == 0:
        pass  # one more may be stacked below
    err = ctypes.get_errno()
    if err not in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def _image_file(rootfs: Path, relative: str) -> str:
    """A file of the image (``etc/passwd``), never followed out of the image by a symlink."""
    base = os.path.realpath(rootfs)
    path = os.path.realpath(os.path.join(base, relative))
    if not path.startswith(base + os.sep):
        return ""
    try:
        with open(path, errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def start_reason(raw: str) -> str:
    """runc's error as ECS shows a failed ``docker start`` (``CannotStartContainerError: …``); never
    a bare prefix."""
    raw = raw.strip()
    for prefix in ("runc run failed: ", "runc create failed: "):
        if raw.startswith(prefix):
            return (
                "CannotStartContainerError: Error response from daemon: failed to create shim task: "
                f"OCI runtime create failed: runc create failed: {raw[len(prefix) :]}: unknown"
            )
    if raw.startswith(("Cannot", "DockerTimeoutError")):
        return with_detail(raw)
    return with_detail(f"CannotStartContainerError: {raw}")


def runc_log_error(path: Path) -> str:
    """The last error runc wrote to its ``--log`` (JSON lines), else its last message; "" if none."""
    last = ""
    for line in reversed((_read_text(path) or "").splitlines()[-50:]):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or not str(entry.get("msg") or "").strip():
            continue
        if entry.get("level") in ("error", "fatal", "panic"):
            return str(entry["msg"]).strip()
        last = last or str(entry["msg"]).strip()
    return last


def _not_found(exc: BaseException) -> bool:
    return isinstance(exc, ImageNotFound | LookupError | FileNotFoundError)


class RuncRuntime(ProcessRuntime):
    """``Runtime`` with OCI containers; see the module docstring."""

    name = "runc"

    def __init__(
        self,
        state_dir: Path,
        *,
        images: ImageSource | None = None,
        oci_runtime: str | None = None,
        cgroup_parent: str = DEFAULT_CGROUP_PARENT,
        init_binary: str | None = None,
        log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
        log_max_files: int = DEFAULT_LOG_MAX_FILES,
        python: str | None = None,
    ) -> None:
        super().__init__(state_dir, python=python)
        self.oci_runtime = oci_runtime or find_oci_runtime()
        self.runc_root = self.state_dir / "runc"
        self.cgroup_parent = cgroup_parent.strip("/")
        self.init_binary = init_binary or find_init()
        self.log_max_bytes = log_max_bytes
        self.log_max_files = log_max_files
        self._images = images
        self._caps = bounding_capabilities()
        self._nofile = default_nofile()
        self._pulled: dict[str, Any] = {}  # container dir -> image, from ``start`` to ``_prepare``
        self._cshim = cshim.find_binary()  # the C supervisor, else Python shims
        if self._forker is not None:  # its shims start from a clean mount namespace (``mountns``)
            self._forker.server_env[mountns.ENV_DETACH_UNDER] = str(self.state_dir / "tasks")

    # ------------------------------------------------------------------------------ names

    @staticmethod
    def container_id(task_id: str, name: str) -> str:
        return f"{task_id}.{name}"

    def _id(self, directory: Path) -> str:
        return self.container_id(directory.parent.name, directory.name)

    def _runc(self, *args: str) -> list[str]:
        assert self.oci_runtime is not None
        return [self.oci_runtime, "--root", str(self.runc_root), *args]

    def _empty_dir(self) -> Path:
        """The empty directory bind-mounted read-only over ``/sys/firmware`` (``oci.firmware_mask``)."""
        path = self.state_dir / "empty"
        if not path.is_dir():
            path.mkdir(mode=0o555, parents=True, exist_ok=True)
        return path

    def _task_cgroup(self, task_id: str) -> str:
        return oci.task_cgroup_path(self.cgroup_parent, task_id)

    # ------------------------------------------------------------------------------ images

    def image_store(self) -> ImageSource:
        if self._images is None:
            self._images = ImageStore(self.state_dir / "images")
        return self._images

    def _resolve_or_pull(self, reference: str) -> Any:
        """The image, from the store or else pulled into it; StartError with ECS's reason if neither."""
        try:
            ref = str(parse_reference(reference))
        except InvalidReference as exc:
            raise StartError(f"CannotPullContainerError: invalid reference format: {exc}") from None
        not_found = (
            "CannotPullContainerError: pull image manifest has been retried 1 time(s): "
            f"failed to resolve ref {ref}: {ref}: not found"
        )
        store = self.image_store()
        try:
            return store.resolve(reference)
        except Exception as exc:
            if not _not_found(exc):
                raise StartError(f"CannotPullContainerError: {exc}") from None
        pull = getattr(store, "pull", None)
        if pull is None:
            raise StartError(not_found)
        try:
            pull(reference)  # (repositoryCredentials: resolving the secret is the engine's part)
            return store.resolve(reference)
        except Exception as exc:
            raise StartError(not_found if _not_found(exc) else f"CannotPullContainerError: {exc}") from None

    async def _pull(self, spec: ContainerSpec, directory: Path) -> Any:
        started = time.time()
        try:
            return await asyncio.to_thread(self._resolve_or_pull, spec.image)
        except StartError as exc:
            (directory / "fail_reason").write_text(exc.reason + "\n")
            raise
        finally:
            doc = {"pullStartedAt": started, "pullStoppedAt": time.time()}
            (directory / "pull.json").write_text(json.dumps(doc))

    # ------------------------------------------------------------------------------ start

    async def start(self, spec: ContainerSpec, netns_path: str | None, log_path: str) -> ContainerHandle:
        if self.oci_runtime is None:
            raise StartError("CannotStartContainerError: no OCI runtime (runc or crun) on this host")
        directory = self._dir(spec)
        if directory.exists():
            if self.status(ContainerHandle(spec.task_id, spec.name)).possibly_running:
                raise StartError(f"CannotStartContainerError: container {spec.name} is already running")
            self._clear(directory)
            self._forget(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._pulled[str(directory)] = await self._pull(spec, directory)
        try:
            return await super().start(spec, netns_path, log_path)
        except BaseException as exc:
            if isinstance(exc, StartError) and not (directory / "fail_reason").exists():
                exc = StartError(self._failure(directory, exc.reason))
                (directory / "fail_reason").write_text(exc.reason + "\n")
            self._teardown(directory)
            if isinstance(exc, StartError):
                raise exc from None
            raise
        finally:
            self._pulled.pop(str(directory), None)

    @staticmethod
    def _failure(directory: Path, reason: str) -> str:
        """Why a start failed, in ECS's words: what the shim recorded (runc's stderr), else the
        runtime's reason, with what runc logged when neither says more than its exit status."""
        if reason.startswith("DockerTimeoutError"):
            logged = runc_log_error(directory / "runc.log")
            return reason + (f" (runc: {logged})" if logged else "")
        raw = _start_error(directory) or reason
        if "wrote nothing" in raw or raw.endswith(NO_DETAIL):
            logged = runc_log_error(directory / "runc.log")
            raw = f"{raw}; runc: {logged}" if logged else raw
        return start_reason(raw)

    def _prepare(self, spec: ContainerSpec, netns_path: str | None, log_path: str) -> dict[str, Any]:
        """Build the bundle (called by ``ProcessRuntime.start``); the shim's spec."""
        directory = self._dir(spec)
        image = self._pulled[str(directory)]
        lower = Path(image.rootfs)
        runtime_id = os.urandom(32).hex()
        hostname = spec.hostname or runtime_id[:12]
        etc_files = self._write_etc_files(directory, hostname, netns_path)
        try:
            config = oci.build_spec(
                spec,
                getattr(image, "config", None) or oci.NoImageDefaults(),
                netns_path=mountns.host_path(netns_path) if netns_path else None,  # (seen from the shim's)
                cgroups_parent=self.cgroup_parent,
                hostname=hostname,
                passwd=_image_file(lower, "etc/passwd"),
                group=_image_file(lower, "etc/group"),
                init_path=self.init_binary,
                available_caps=self._caps,
                default_nofile=self._nofile,
                etc_files=etc_files,
                empty_dir=str(self._empty_dir()),
            )
        except oci.SpecError as exc:
            reason = f"CannotCreateContainerError: Error response from daemon: {exc.reason}"
            (directory / "fail_reason").write_text(reason + "\n")
            raise StartError(reason) from None
        # config.json first: it tells a concurrent ``remove`` of a sibling to keep the task's cgroup
        (directory / "config.json").write_text(json.dumps(config, indent=1))
        try:
            cgroups.setup_task(self._task_cgroup(spec.task_id), spec.task_cpu, spec.task_memory)
            for name in (*_LAYER_DIRS, "rootfs"):
                (directory / name).mkdir(exist_ok=True)
            overlay = [str(p) for p in (lower, directory / "upper", directory / "work", directory / "rootfs")]
            mountns.overlay_options(*overlay[:3])  # (the shim mounts it, in its own mount namespace)
        except OSError as exc:
            reason = f"CannotStartContainerError: {exc}"
            (directory / "fail_reason").write_text(reason + "\n")
            raise StartError(reason) from None
        container_path = config["linux"]["cgroupsPath"]
        return {
            "argv": self._runc(
                "--log",
                str(directory / "runc.log"),
                "--log-format",
                "json",
                "run",
                "--detach",
                "--pid-file",
                str(directory / "init.pid"),
                "--bundle",
                str(directory),
                self._id(directory),
            ),
            "env": {"PATH": DEFAULT_PATH},
            "cwd": str(directory),
            "uid": None,
            "gid": None,
            "groups": None,
            "netns": None,  # runc joins it (config.json)
            "netnsPath": netns_path,
            "overlay": overlay,
            "detachUnder": [str(self.state_dir / "tasks")],
            "log": log_path,
            "logMaxBytes": self.log_max_bytes,
            "logMaxFiles": self.log_max_files,
            "initPidFile": str(directory / "init.pid"),
            "oomFile": str(cgroups.oom_file(container_path)),
            "runtimeId": runtime_id,
            "containerId": self._id(directory),
            "taskArn": spec.task_arn,
            "name": spec.name,
            "image": spec.image,
            "imageDigest": str(getattr(image, "digest", "") or ""),
        }

    def _spawn_shim(self, directory: Path, write_fd: int) -> ShimChild:
        """The container's supervisor: the C one (``cshim.py``) when built, else the Python shim."""
        launched = cshim.launch(self._cshim, directory, write_fd, self._forker)
        return launched or super()._spawn_shim(directory, write_fd)

    @staticmethod
    def _write_etc_files(directory: Path, hostname: str, netns_path: str | None) -> list[tuple[str, str]]:
        """``hosts``, ``hostname`` and ``resolv.conf`` for the container; the resolver configuration is
        the namespace's own (``/etc/netns/<name>/resolv.conf``, as ``ip netns exec`` uses) if it has one,
        else the host's."""
        host_resolv = Path("/etc/resolv.conf")
        if netns_path and netns_path.startswith("/run/netns/"):
            own = Path("/etc/netns", Path(netns_path).name, "resolv.conf")
            host_resolv = own if own.is_file() else host_resolv
        files = {
            "hosts": oci.hosts_file(hostname),
            "hostname": hostname + "\n",
            "resolv.conf": oci.resolv_conf(_read_text(host_resolv) or ""),
        }
        for name, text in files.items():
            (directory / name).write_text(text)
        return [(f"/etc/{name}", str(directory / name)) for name in files]

    # ------------------------------------------------------------------------------ state

    def _finished(self, directory: Path, info: Any = None) -> ContainerState | None:
        failed = _read_text(directory / "fail_reason")
        if failed is not None:
            return ContainerState(ContainerStatus.FAILED, reason=failed.strip())
        state = super()._finished(directory, info)
        if state is None:
            return None
        if state.status is ContainerStatus.FAILED:
            state = dataclasses.replace(state, reason=self._failure(directory, state.reason or ""))
        elif (directory / "oom").exists():
            state = dataclasses.replace(state, reason=OOM_REASON)
        return state

    def status(self, handle: ContainerHandle) -> ContainerState:
        state = super().status(handle)
        text = _read_text(self._dir(handle) / "pull.json")
        if text:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                doc = json.loads(text)
                state = dataclasses.replace(
                    state, pull_started_at=doc["pullStartedAt"], pull_stopped_at=doc["pullStoppedAt"]
                )
        return state

    def list_ours(self) -> list[ContainerHandle]:
        handles = {(h.task_id, h.name): h for h in super().list_ours()}
        for path in sorted((self.state_dir / "tasks").glob("*/*/config.json")):
            if "." in path.parent.name:
                continue
            key = (path.parent.parent.name, path.parent.name)
            handles.setdefault(key, ContainerHandle(*key))
        return [handles[key] for key in sorted(handles)]

    # ------------------------------------------------------------------------------ signals, exec

    def _signal(self, directory: Path, signum: int, *, group: bool) -> None:
        """Signal the container's init (SIGKILL to it ends the whole PID namespace)."""
        info = _read_pid_info(directory)
        if info is not None and alive(info.pid, info.start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, signum)
            return
        super()._signal(directory, signum, group=group)

    async def exec(self, handle: ContainerHandle, argv: Sequence[str], timeout: float) -> int | None:
        """``runc exec``: the container's namespaces, cgroup, user, cwd, env and capabilities.

        runc starts the process in a session of its own inside the container, so on timeout (or
        cancellation) killing runc is not enough: its process group is killed too.
        """
        directory = self._dir(handle)
        pid_file = directory / f"exec-{os.urandom(6).hex()}.pid"
        args = self._runc("exec", "--pid-file", str(pid_file), self._id(directory), *argv)
        code: int | None = None
        try:
            code, _ = await run_process(args, timeout=timeout)
        finally:
            if code is None:
                info = _read_pid_info(directory)
                _kill_exec(pid_file, info.pid if info else None)
            with contextlib.suppress(FileNotFoundError):
                pid_file.unlink()
        return code

    # ------------------------------------------------------------------------------ remove

    def _remove(self, handle: ContainerHandle) -> None:
        directory = self._dir(handle)
        super()._remove(handle)  # refuses a running container; ``_clear`` tears the bundle down
        self._forget(directory)
        self._remove_task_cgroup_if_last(directory)

    def _clear(self, directory: Path) -> None:
        super()._clear(directory)
        self._teardown(directory)

    def _teardown(self, directory: Path) -> None:
        """Delete runc's container and the writable layer (the container has ended). The overlay went
        with its shim's mount namespace; one on the host is an older agent's, unmounted here."""
        container_id = self._id(directory)
        paths = oci.container_cgroup_paths(self.cgroup_parent, directory.parent.name, directory.name)
        if self.oci_runtime and (self.runc_root / container_id).exists():
            # before the cgroup is removed: else its cached pages keep it alive (cgroups.py)
            for path in paths:  # (whichever layout its task had; the other is not there)
                cgroups.release_memory(path)
            if any(cgroups.has_processes(path) for path in paths):
                # a start that failed half-way (runc's init waiting in "created") or a container still
                # running: runc kills what is left in its cgroup and deletes it
                subprocess.run(
                    self._runc("delete", "--force", container_id), capture_output=True, check=False
                )
            else:
                # What ``runc delete`` does for an ended container of ours (own PID namespace, so the
                # kernel ended every process with its init; no hooks): its state directory, then its
                # cgroups (below). Not a runc process per container, which reads the host's whole mount
                # table (a mount per task): 14 % of the machine while 2,000 of 5,000 tasks stopped at
                # once (perf record -a).
                shutil.rmtree(self.runc_root / container_id, ignore_errors=True)
        unmount(directory / "rootfs")
        for name in _LAYER_DIRS:
            shutil.rmtree(directory / name, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError, OSError):
            (directory / "rootfs").rmdir()
        for path in paths:
            cgroups.remove(path)

    def _forget(self, directory: Path) -> None:
        for name in _RUNC_FILES:
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()

    def _remove_task_cgroup_if_last(self, directory: Path) -> None:
        """The task's own cgroup level, when its last container goes (a task without limits has none)."""
        siblings = [p for p in directory.parent.glob("*/config.json") if p.parent != directory]
        if not siblings:
            cgroups.remove(self._task_cgroup(directory.parent.name))

    def purge_task(self, task_id: str) -> None:
        base = task_dir(self.state_dir, task_id)
        # (container names have no '.': ``.root``, ``.volumes`` and the like are not containers)
        directories = [p for p in base.iterdir() if p.is_dir() and "." not in p.name] if base.is_dir() else []
        for directory in directories:
            has_state = (directory / "config.json").exists() or (directory / "spec.json").exists()
            if has_state and self.status(ContainerHandle(task_id, directory.name)).possibly_running:
                raise RuntimeError(f"container {task_id}/{directory.name} still runs")
        for directory in directories:
            self._teardown(directory)
        cgroups.remove(self._task_cgroup(task_id))
        mounted = [p for p in _mount_points() if p.startswith(str(base) + "/")]
        if mounted:  # never delete through a mount
            raise RuntimeError(f"task {task_id} still has mounts: {mounted}")
        super().purge_task(task_id)


def _kill_exec(pid_file: Path, init_pid: int | None) -> None:
    """SIGKILL the process group of an exec'd process (runc made it a session leader), once its PID
    namespace proved it is still the container's process."""
    try:
        pid = int(pid_file.read_text().strip())
        namespace = os.readlink(f"/proc/{pid}/ns/pid")
        if (
            init_pid is None
            or namespace != os.readlink(f"/proc/{init_pid}/ns/pid")
            or namespace == os.readlink("/proc/self/ns/pid")  # both pids reused by host processes
        ):
            return
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _start_error(directory: Path) -> str | None:
    text = _read_text(directory / "start_error")
    return text.strip() if text else None
