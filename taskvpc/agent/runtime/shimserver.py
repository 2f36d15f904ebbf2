"""Shims forked from one warm Python process instead of each started as a new interpreter.

A shim (``shim.py``) started with ``python -I -S`` costs about 3 MiB of private memory however little
it does: the interpreter's own start-up heap. Forked from a process that has already imported the shim,
it shares every page it does not write with that process: about 0.2 MiB private and 0.4 MiB PSS each
(measured on this project's VM), which is most of what a task costs a host. The fork is also quicker
than starting an interpreter.

Run as ``python -I -S -c <code> taskvpc-shim-server <fd> <padding> <python> -I -S -c <shim code>``, where
``<fd>`` is a ``SOCK_SEQPACKET`` socket whose other end the agent's ``forkshim.ShimForker`` keeps. Each request is a container directory (UTF-8)
with the shim's ready-pipe write end attached (``SCM_RIGHTS``), optionally followed by a NUL and the path of
a supervisor to exec in the forked child instead (the C one of ``cshim.py``: the child sets up what a shim
sets up -- session, stdio, ready fd -- and execs it); the answer is the new shim's pid as text
(``err <why>`` when it could not fork). The server exits when the agent's end closes (the agent ended):
the shims it forked do not need it, and the next agent starts a server of its own.

A forked shim is indistinguishable from an exec'd one: it starts a session of its own, writes its
stderr to ``shim.err``, and rewrites its command line (the ``/proc/<pid>/cmdline`` memory the padding
argument reserved) to the exec'd shim's ``python -I -S -c <code> taskvpc-shim <dir> <fd>``, which is how
the agent, ``taskvpc down`` and an agent after a restart recognise shims and tell whose they are.
SIGCHLD is ignored here, so the kernel reaps the shims when they end; each shim restores it at once.

The runc runtime's server (``TASKVPC_SHIM_MOUNTNS`` set) first moves into a clean mount namespace
(``mountns.py``), so a shim's and runc's mount work does not grow with the tasks on the host.
"""

from __future__ import annotations

import _signal
import contextlib
import ctypes
import gc
import os
import select  # noqa: F401  (imported for the shims: a log pump needs it, and here it is shared)
import socket
import sys
import traceback
from collections.abc import Callable

SERVER_TAG = "taskvpc-shim-server"
PADDING = 4096  # bytes of command line reserved for a shim's (its state dir path is in it)


def _argument_area() -> tuple[int, int]:
    """Address and size of this process's command-line memory (``/proc/self/stat`` fields 48, 49)."""
    with open("/proc/self/stat", "rb") as handle:
        fields = handle.read().rpartition(b")")[2].split()
    start, end = int(fields[45]), int(fields[46])
    return start, end - start


def set_cmdline(area: tuple[int, int], argv: list[str]) -> bool:
    """Make ``/proc/self/cmdline`` read ``argv`` (NUL-padded to the area); False when it does not fit."""
    data = b"\0".join(a.encode() for a in argv) + b"\0"
    address, size = area
    if len(data) > size:
        return False
    ctypes.memmove(address, data + b"\0" * (size - len(data)), size)
    return True


def _prepare_mounts(directory: str, ready_fd: int) -> bool:
    """Before exec'ing a supervisor: what the Python shim does itself before it starts runc, the
    container's overlay in a mount namespace of this process's own (``mountns``). False when that
    failed, reported as a shim reports a start that failed (``start_error``, ``err`` on the ready pipe)."""
    import marshal

    import mountns
    import shim

    with open(os.path.join(directory, "spec.bin"), "rb") as handle:
        spec = marshal.load(handle)
    if not spec.get("overlay"):
        return True
    try:
        mountns.private_rootfs(spec["overlay"], spec.get("detachUnder") or [])
    except OSError as exc:
        shim.write_atomic(os.path.join(directory, "start_error"), f"{exc}\n")
        with contextlib.suppress(OSError):
            os.write(ready_fd, f"err {exc}\n".encode())
        return False
    return True


def _child(
    conn: socket.socket,
    directory: str,
    ready_fd: int,
    argv: list[str],
    area: tuple[int, int],
    run: Callable[[str, int], int],
    exec_path: str = "",
) -> int:
    """In the forked process: become an ordinary shim of ``directory`` (with ``exec_path``: exec that
    supervisor, ``cshim.py``, as the shim of ``directory``)."""
    conn.close()
    os.setsid()
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)  # the shim waits for its command
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    err = os.open(os.path.join(directory, "shim.err"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(err, 1)
    os.dup2(err, 2)
    os.close(err)
    os.close(null)
    if exec_path:
        if not _prepare_mounts(directory, ready_fd):
            return 0
        try:
            os.set_inheritable(ready_fd, True)
            os.execv(exec_path, [exec_path, "taskvpc-shim", directory, str(ready_fd)])
        except OSError as exc:  # this child carries on as a Python shim
            os.write(2, f"shim server: cannot exec {exec_path}: {exc}\n".encode())
    if not set_cmdline(area, [*argv, "taskvpc-shim", directory, str(ready_fd)]):
        os.write(2, b"shim server: the shim's command line does not fit\n")
        return 1
    try:
        return int(run(directory, ready_fd) or 0)
    except BaseException:
        os.write(2, traceback.format_exc().encode())
        return 1


def serve(request_fd: int, shim_argv: list[str]) -> int:
    """Answer fork requests on ``request_fd`` until the agent's end closes. ``shim_argv``: an exec'd
    shim's command line up to its tag (``python -I -S -c <code>``), for the forked shims to show."""
    import mountns  # beside this file, as ``shim`` imports it: the shims share its module state
    import shim  # beside this file (the server runs without the package); loaded once, shared by all

    under = os.environ.pop(mountns.ENV_DETACH_UNDER, None)
    if under is not None:  # the runc runtime's server: shims start from a clean mount namespace
        try:
            mountns.enter_clean(under.split(os.pathsep))
        except OSError as exc:  # each shim then makes one itself (``mountns.private_rootfs``)
            sys.stderr.write(f"shim server: no clean mount namespace: {exc}\n")
    conn = socket.socket(fileno=request_fd)
    area = _argument_area()
    _signal.signal(_signal.SIGCHLD, _signal.SIG_IGN)  # the kernel reaps our children
    _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
    gc.freeze()  # what exists now is never touched by a child's collector: its pages stay shared
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(conn, 8192, 1)
        except InterruptedError:
            continue
        except OSError:
            return 0
        if not data:
            return 0  # the agent ended
        directory, _, exec_path = data.decode().partition("\0")
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            conn.send(b"err no ready fd")
            continue
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(fds[0])
            conn.send(f"err fork: {exc}".encode())
            continue
        if pid == 0:
            code = 1
            try:
                code = _child(conn, directory, fds[0], shim_argv, area, shim.run, exec_path)
            finally:
                os._exit(code)
        os.close(fds[0])
        try:
            conn.send(str(pid).encode())
        except OSError:
            return 0


def main(argv: list[str]) -> int:
    """``argv``: ``SERVER_TAG FD PADDING python -I -S -c CODE`` (the last part: what the forked shims show
    before their tag)."""
    if len(argv) < 4 or argv[0] != SERVER_TAG or not argv[1].isdigit():
        sys.stderr.write("usage: shimserver.py taskvpc-shim-server FD PADDING PYTHON ARG...\n")
        return 2
    return serve(int(argv[1]), argv[3:])
