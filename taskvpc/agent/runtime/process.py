"""The ``process`` runtime: each container is a supervised process in its task's network namespace.

No image is read: the command is ``entryPoint + command`` (an empty ``entryPoint`` runs ``command``
directly), with the container's ``environment``, ``user`` (``name``, ``uid``, ``name:group``,
``uid:gid``…, looked up on the host as Docker looks it up in the image) and ``workingDirectory``, which
is taken relative to a per-task root directory ``<state>/tasks/<task-id>/.root`` and created there when
missing (so ``/`` is that directory). The file system is otherwise the host's, and CPU/memory limits are
not enforced: both come with the ``runc`` runtime.

Each container runs under a shim (``shim.py``, in a session of its own), which survives the agent, keeps
the exit code, and forwards SIGTERM. Shims are forked by one warm shim server per agent
(``shimserver.py``, ``forkshim.py``: ~1.2 MiB private memory each instead of ~3.2 for a new
interpreter), else exec'd; either way they look the same in ``/proc``. ``stop`` sends SIGTERM, then SIGKILL to the command's process
group after the stop timeout. After an agent restart ``list_ours`` finds every container from its
directory, and ``status``/``wait``/``stop`` work on the found ones exactly as on new ones; a pid is only
ever signalled after its ``/proc`` start time (and, for a shim, its command line) proved it is ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import marshal
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskvpc.agent.runtime import (
    ContainerHandle,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    StartError,
    container_dir,
    forkshim,
    shim as shim_module,
    task_dir,
    with_detail,
)
from taskvpc.agent.runtime.procs import alive, cmdline, run_process, wait_pid

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    ShimChild = subprocess.Popen[bytes] | forkshim.ForkedShim

SHIM_PATH = os.path.abspath(shim_module.__file__)
SHIM_TAG = "taskvpc-shim"  # argv[1] of every shim: how list_ours recognises them in /proc
SHIM_MARKERS = (SHIM_TAG, SHIM_PATH, "taskvpc.agent.runtime.shim")
# ``python -I -S -c`` importing the shim by file name from its directory: no site (-S), and unlike a
# script run by path, the module's bytecode comes from __pycache__ instead of being compiled each time.
SHIM_CODE = (
    f"import sys; sys.path.append({os.path.dirname(SHIM_PATH)!r}); "
    "import shim; sys.exit(shim.main(sys.argv[2:]))"
)
DEFAULT_PATH = shim_module.DEFAULT_PATH
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"  # absolute: the container's PATH may lack it
TASK_ROOT = ".root"  # container names cannot contain '.', so this never clashes with one
# ECS_CONTAINER_START_TIMEOUT's default on Linux. It was 10 s here, and a host with ~3,000 tasks and a
# load of 15-22 took longer than that to answer; the timeout then printed as nothing (a bare
# ``CannotStartContainerError:``). A start that is only slow is not a failure.
START_TIMEOUT = 180.0
KILL_GRACE = 10.0
_STATE_FILES = ("spec.json", "spec.bin", "spec.cshim", "pid", "exit_code", "start_error", "shim.err")


@dataclass(frozen=True, slots=True)
class PidInfo:
    shim_pid: int
    shim_start: int | None
    pid: int
    start: int | None
    started_at: float | None
    runtime_id: str | None


@dataclass(frozen=True, slots=True)
class ResolvedUser:
    uid: int | None
    gid: int | None
    groups: list[int] | None
    home: str


def resolve_user(user: str | None) -> ResolvedUser:
    """ECS ``user`` (``user``, ``user:group``, ``uid``, ``uid:gid``, ``user:gid``, ``uid:group``).

    Unknown names fail with Docker's messages; an unknown numeric uid runs with gid 0, as Docker does.
    """
    if not user:
        return ResolvedUser(None, None, None, "/root")
    name, _, group = user.partition(":")
    entry: pwd.struct_passwd | None
    if name.isdigit():
        uid = int(name)
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            entry = None
    else:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise StartError(f"unable to find user {name}: no matching entries in passwd file") from None
        uid = entry.pw_uid
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise StartError(f"unable to find group {group}: no matching entries in group file") from None
    else:
        gid = entry.pw_gid if entry else 0
    groups = sorted(set(os.getgrouplist(entry.pw_name, gid))) if entry else [gid]
    return ResolvedUser(uid, gid, groups, entry.pw_dir if entry else "/")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _read_pid_info(directory: Path) -> PidInfo | None:
    text = _read_text(directory / "pid")
    if not text:
        return None
    try:
        doc = json.loads(text)
        return PidInfo(
            int(doc["shimPid"]),
            doc.get("shimStart"),
            int(doc["pid"]),
            doc.get("start"),
            doc.get("startedAt"),
            doc.get("runtimeId"),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _is_our_shim(pid: int, start: int | None, directory: Path) -> bool:
    if not alive(pid, start):
        return False
    args = cmdline(pid)
    return any(marker in args for marker in SHIM_MARKERS) and str(directory) in args


def _scan_shims(state_dir: Path) -> dict[str, tuple[int, int | None]]:
    """Live shims under ``state_dir`` found through ``/proc``: container dir -> (pid, start time)."""
    found: dict[str, tuple[int, int | None]] = {}
    prefix = str(state_dir / "tasks") + "/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        args = cmdline(int(entry))
        if not any(marker in args for marker in SHIM_MARKERS):
            continue
        for arg in args:
            if arg.startswith(prefix):
                found[arg] = (int(entry), shim_module.proc_start_time(int(entry)))
    return found


class ProcessRuntime:
    """``Runtime`` for plain processes; see the module docstring."""

    name = "process"

    def __init__(
        self, state_dir: Path, *, python: str | None = None, start_timeout: float = START_TIMEOUT
    ) -> None:
        self.state_dir = Path(state_dir).resolve()  # mountinfo shows resolved, absolute paths
        self.start_timeout = start_timeout
        self._python = python or sys.executable
        self._children: dict[str, ShimChild] = {}  # shims this agent started, to reap
        self._forker = (
            forkshim.ShimForker(self._python, [self._python, "-I", "-S", "-c", SHIM_CODE])
            if forkshim.enabled()
            else None
        )

    # ------------------------------------------------------------------------------ paths and state

    def _dir(self, handle: ContainerHandle | ContainerSpec) -> Path:
        return container_dir(self.state_dir, handle.task_id, handle.name)

    def _reap(self, directory: Path) -> None:
        child = self._children.get(str(directory))
        if child is not None and child.poll() is not None:
            del self._children[str(directory)]

    def status(self, handle: ContainerHandle) -> ContainerState:
        directory = self._dir(handle)
        self._reap(directory)
        state = self._finished(directory)
        if state is not None:
            return state
        info = _read_pid_info(directory)
        if info is None:
            if not (directory / "spec.json").exists():
                return ContainerState(ContainerStatus.EXITED, reason="no state on this host")
            if str(directory) in _scan_shims(self.state_dir):
                return ContainerState(ContainerStatus.UNKNOWN, reason="starting")
            return self._finished(directory) or ContainerState(ContainerStatus.CREATED)
        if _is_our_shim(info.shim_pid, info.shim_start, directory):
            return ContainerState(ContainerStatus.RUNNING, pid=info.pid, started_at=info.started_at)
        state = self._finished(directory, info)  # the shim may have just written it and exited
        if state is not None:
            return state
        if alive(info.pid, info.start):
            return ContainerState(
                ContainerStatus.UNKNOWN,
                pid=info.pid,
                started_at=info.started_at,
                reason="supervisor gone, process still running",
            )
        return ContainerState(
            ContainerStatus.EXITED,
            pid=info.pid,
            started_at=info.started_at,
            reason="exit code lost: supervisor ended before the container",
        )

    def _finished(self, directory: Path, info: PidInfo | None = None) -> ContainerState | None:
        code_text = _read_text(directory / "exit_code")
        if code_text is not None:
            info = info or _read_pid_info(directory)
            try:
                code: int | None = int(code_text.strip())
            except ValueError:
                code = None
            try:
                finished = (directory / "exit_code").stat().st_mtime
            except OSError:
                finished = None
            return ContainerState(
                ContainerStatus.EXITED,
                exit_code=code,
                pid=info.pid if info else None,
                started_at=info.started_at if info else None,
                finished_at=finished,
            )
        error = _read_text(directory / "start_error")
        if error is not None:
            return ContainerState(
                ContainerStatus.FAILED, reason=with_detail(f"CannotStartContainerError: {error.strip()}")
            )
        return None

    def list_ours(self) -> list[ContainerHandle]:
        handles = []
        for spec_path in sorted((self.state_dir / "tasks").glob("*/*/spec.json")):
            try:
                runtime_id = str(json.loads(spec_path.read_text()).get("runtimeId", ""))
            except (OSError, ValueError):
                runtime_id = ""
            handles.append(ContainerHandle(spec_path.parent.parent.name, spec_path.parent.name, runtime_id))
        return handles

    # ------------------------------------------------------------------------------ start

    def _prepare(self, spec: ContainerSpec, netns_path: str | None, log_path: str) -> dict[str, Any]:
        argv = spec.process_argv()
        if not argv:
            raise StartError("CannotStartContainerError: no command specified")
        try:
            user = resolve_user(spec.user)
        except StartError as exc:
            raise StartError(f"CannotCreateContainerError: {exc.reason}") from None
        base = task_dir(self.state_dir, spec.task_id)
        root = base / TASK_ROOT
        cwd = root / (spec.working_directory or "/").lstrip("/")
        cwd.mkdir(parents=True, exist_ok=True, mode=0o755)
        for path in (self.state_dir, self.state_dir / "tasks", base, root):
            # a container user other than root must be able to reach its working directory
            with contextlib.suppress(OSError):
                os.chmod(path, os.stat(path).st_mode | 0o111)
        env = {"PATH": DEFAULT_PATH, "HOME": user.home}
        env.update(dict(spec.environment))
        return {
            "argv": argv,
            "env": env,
            "cwd": str(cwd),
            "uid": user.uid,
            "gid": user.gid,
            "groups": user.groups,
            "netns": netns_path,
            "log": log_path,
            "runtimeId": secrets.token_hex(32),
            "taskArn": spec.task_arn,
            "name": spec.name,
            "image": spec.image,
        }

    async def start(self, spec: ContainerSpec, netns_path: str | None, log_path: str) -> ContainerHandle:
        prepared = time.monotonic()
        directory = self._dir(spec)
        handle = ContainerHandle(spec.task_id, spec.name)
        # a previous start's state only (the runc runtime has made and filled the directory just now:
        # clearing it again cost each start its cgroup and layer teardown on the event loop)
        if any((directory / name).exists() for name in _STATE_FILES):
            if self.status(handle).possibly_running:
                raise StartError(f"CannotStartContainerError: container {spec.name} is already running")
            self._clear(directory)
        directory.mkdir(parents=True, exist_ok=True)
        doc = self._prepare(spec, netns_path, log_path)
        (directory / "spec.json").write_text(json.dumps(doc))
        (directory / "spec.bin").write_bytes(marshal.dumps(doc))  # what the shim reads (no json import)
        handle = ContainerHandle(spec.task_id, spec.name, doc["runtimeId"])
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            child = self._spawn_shim(directory, write_fd)
        except OSError as exc:
            os.close(read_fd)
            raise StartError(f"CannotStartContainerError: cannot run the shim: {exc}") from None
        finally:
            os.close(write_fd)
        self._children[str(directory)] = child
        began = time.monotonic()
        spawn = began - prepared
        try:
            async with asyncio.timeout(self.start_timeout):
                message = await _read_all(read_fd)
        except TimeoutError:
            reason = timeout_reason(self.start_timeout, self._stuck(directory, child))
            stuck = process_tree(child.pid)[1:]  # the shim's own processes (a hung runc) go with it
            await asyncio.shield(self._kill_half_started(directory, child))
            for pid in stuck:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            raise StartError(reason) from None
        except BaseException:
            # cancelled or timed out half-way: leave no half-made container behind
            await asyncio.shield(self._kill_half_started(directory, child))
            raise
        finally:
            os.close(read_fd)
        took = time.monotonic() - began
        if took > SLOW_START:
            log.warning("slow container start container=%s seconds=%.2f", directory, took)
        if message.startswith("ok"):
            # the start's parts (agent/starttiming.py has the task's): ours (checks, files, the shim's fork),
            # then the shim's own work until it says ok (``runc``'s and the kernel's)
            log.info(
                "container start container=%s spawn_ms=%.1f ready_ms=%.1f",
                directory,
                spawn * 1000,
                took * 1000,
            )
            return handle
        await asyncio.shield(self._kill_half_started(directory, child))
        if message.startswith("err ") and message[4:].strip():
            raise StartError(f"CannotStartContainerError: {message[4:].strip()}")
        detail = _last_line(directory / "shim.err") or "it ended without a word"
        what = "the shim failed" if not message.startswith("err") else "the shim gave an empty error"
        raise StartError(f"CannotStartContainerError: {what}: {detail}")

    def _stuck(self, directory: Path, child: ShimChild) -> str:
        """What a start that timed out was waiting for: the shim's processes and where each sleeps in
        the kernel (logged in full; the short form goes in the reason)."""
        lines = describe_tree(child.pid)
        log.warning(
            "container start timed out container=%s processes=%s", directory, " | ".join(lines) or "-"
        )
        shim_err = _last_line(directory / "shim.err")
        parts = [lines[-1] if lines else "the shim has ended", *([f"shim: {shim_err}"] if shim_err else [])]
        return "; ".join(parts)

    def _spawn_shim(self, directory: Path, write_fd: int) -> ShimChild:
        """The shim of ``directory``: forked by the shim server (``forkshim``), else a new interpreter."""
        if self._forker is not None:
            forked = self._forker.fork(directory, write_fd)
            if forked is not None:
                return forked
        with open(directory / "shim.err", "ab") as err:
            return subprocess.Popen(
                [self._python, "-I", "-S", "-c", SHIM_CODE, SHIM_TAG, str(directory), str(write_fd)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                pass_fds=(write_fd,),
                start_new_session=True,
                cwd="/",
            )

    async def _kill_half_started(self, directory: Path, child: ShimChild) -> None:
        info = _read_pid_info(directory)
        if info is not None and alive(info.pid, info.start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(info.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        while child.poll() is None:
            await asyncio.sleep(0.005)
        self._children.pop(str(directory), None)

    # ------------------------------------------------------------------------------ wait and stop

    async def wait(self, handle: ContainerHandle) -> ContainerState:
        """Until the container has ended and its shim is gone too (nothing of it is left running)."""
        directory = self._dir(handle)
        while True:
            state = self.status(handle)
            if not state.possibly_running:
                info = _read_pid_info(directory)
                # (its start time proves it is our shim; an exiting process has no command line left)
                if info is not None and alive(info.shim_pid, info.shim_start):
                    with contextlib.suppress(TimeoutError):  # it has written the exit code: it is leaving
                        async with asyncio.timeout(KILL_GRACE):
                            await wait_pid(info.shim_pid, info.shim_start)
                self._reap(directory)
                return state
            info = _read_pid_info(directory)
            if info is None:  # a shim that has not written its pid yet
                await asyncio.sleep(0.02)
                continue
            if _is_our_shim(info.shim_pid, info.shim_start, directory):
                await wait_pid(info.shim_pid, info.shim_start)
                child = self._children.get(str(directory))
                if child is not None:
                    await _reap_child(child)
            else:
                await wait_pid(info.pid, info.start)

    async def stop(self, handle: ContainerHandle, timeout: float) -> int | None:
        directory = self._dir(handle)
        state = self.status(handle)
        if state.possibly_running:
            self._signal(directory, signal.SIGTERM, group=False)
            try:
                async with asyncio.timeout(max(timeout, 0.0)):
                    state = await self.wait(handle)
            except TimeoutError:
                self._signal(directory, signal.SIGKILL, group=True)
                try:
                    async with asyncio.timeout(KILL_GRACE):
                        state = await self.wait(handle)
                except TimeoutError:
                    self._kill_shim(directory)
                    state = await self.wait(handle)
        return state.exit_code

    def _signal(self, directory: Path, signum: int, *, group: bool) -> None:
        """SIGTERM goes through the shim (which forwards it); SIGKILL to the command's process group."""
        info = _read_pid_info(directory)
        if info is None:
            found = _scan_shims(self.state_dir).get(str(directory))
            if found is not None and _is_our_shim(found[0], found[1], directory):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(found[0], signal.SIGKILL if group else signum)
            return
        shim_alive = _is_our_shim(info.shim_pid, info.shim_start, directory)
        if not group and shim_alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.shim_pid, signum)
            return
        if alive(info.pid, info.start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if group:
                    os.killpg(info.pid, signum)
                else:
                    os.kill(info.pid, signum)

    def _kill_shim(self, directory: Path) -> None:
        info = _read_pid_info(directory)
        if info is not None and _is_our_shim(info.shim_pid, info.shim_start, directory):
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.shim_pid, signal.SIGKILL)

    # ------------------------------------------------------------------------------ exec, remove

    async def exec(self, handle: ContainerHandle, argv: Sequence[str], timeout: float) -> int | None:
        """Run ``argv`` in the container's namespace as its user, in its cwd, with its environment."""
        doc = json.loads((self._dir(handle) / "spec.json").read_text())
        prefix: list[str] = []
        if doc.get("netns") or doc.get("uid") is not None:
            prefix = [NSENTER]
            if doc.get("netns"):
                prefix.append(f"--net={doc['netns']}")
            if doc.get("uid") is not None:
                prefix += ["-S", str(doc["uid"]), "-G", str(doc["gid"] if doc["gid"] is not None else 0)]
            prefix.append("--")
        code, _ = await run_process([*prefix, *argv], timeout=timeout, env=doc["env"], cwd=doc["cwd"])
        return code

    async def remove(self, handle: ContainerHandle) -> None:
        """On a worker thread: a stop of hundreds of tasks at once spent 30-50% of the event loop in
        these unlinks, unmounts and ``runc delete`` runs, holding up every other task's start, stop
        and report. (A task's containers are removed one after the other, never two at once.)"""
        await asyncio.to_thread(self._remove, handle)

    def _remove(self, handle: ContainerHandle) -> None:
        directory = self._dir(handle)
        if not directory.exists():
            return
        if self.status(handle).possibly_running:
            raise RuntimeError(f"container {handle.task_id}/{handle.name} still runs")
        self._clear(directory)

    def _clear(self, directory: Path) -> None:
        for name in _STATE_FILES:
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()
        for stray in directory.glob("*.tmp*"):
            with contextlib.suppress(FileNotFoundError):
                stray.unlink()
        self._children.pop(str(directory), None)

    def purge_task(self, task_id: str) -> None:
        base = task_dir(self.state_dir, task_id)
        for spec_path in base.glob("*/spec.json"):
            if self.status(ContainerHandle(task_id, spec_path.parent.name)).possibly_running:
                raise RuntimeError(f"container {task_id}/{spec_path.parent.name} still runs")
        shutil.rmtree(base, ignore_errors=True)


async def _read_all(fd: int) -> str:
    """Read a non-blocking pipe until EOF."""
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            while True:
                data = os.read(fd, 4096)
                if not data:
                    if not done.done():
                        done.set_result(None)
                    return
                chunks.append(data)
        except BlockingIOError:
            return
        except OSError as exc:
            if not done.done():
                done.set_exception(exc)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return b"".join(chunks).decode(errors="replace")


async def _reap_child(child: ShimChild) -> None:
    deadline = time.monotonic() + 1.0
    while child.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.002)


SLOW_START = 5.0  # seconds: a start slower than this is logged (with how long it took)


def _last_line(path: Path) -> str:
    lines = (_read_text(path) or "").strip().splitlines()
    return lines[-1].strip() if lines else ""


def timeout_reason(seconds: float, detail: str) -> str:
    """ECS's words for a container that did not start in time (``DockerTimeoutError``), with ours."""
    minutes, secs = divmod(round(seconds), 60)
    waited = f"{minutes}m{secs}s" if minutes else f"{seconds:g}s"
    return f"DockerTimeoutError: Could not transition to started; timed out after waiting {waited}" + (
        f" ({detail})" if detail else ""
    )


def describe_tree(pid: int) -> list[str]:
    """``pid`` and its descendants, one ``pid comm state wchan [kernel stack top]`` line each, parents
    first (so the last is the deepest: usually what the start waits for)."""
    lines: list[str] = []
    for current in process_tree(pid):
        base = f"/proc/{current}"
        comm = (_read_text(Path(base, "comm")) or "").strip()
        if not comm:
            continue
        stat = (_read_text(Path(base, "stat")) or ")  ?").rpartition(")")[2].split()
        wchan = (_read_text(Path(base, "wchan")) or "").strip() or "-"
        try:
            stack = Path(base, "stack").read_text().split("\n")[0].split()[-1:]  # root only
        except OSError:
            stack = []
        lines.append(" ".join([str(current), comm, stat[0] if stat else "?", wchan, *stack]))
    return lines


def process_tree(pid: int, limit: int = 64) -> list[int]:
    """``pid`` and its descendants (through ``/proc/<pid>/task/*/children``), parents first."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < limit:
        current = todo.pop(0)
        if not os.path.isdir(f"/proc/{current}/task"):
            continue
        found.append(current)
        for task in sorted(os.listdir(f"/proc/{current}/task")):
            todo += [
                int(k) for k in (_read_text(Path(f"/proc/{current}/task/{task}/children")) or "").split()
            ]
    return found
