"""Process helpers for runtimes: identity checks through ``/proc``, waiting on any pid, and subprocesses
that are killed and waited for when cancelled (trio's ``run_process`` rule).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence

from taskvpc.agent.runtime.shim import proc_start_time

__all__ = ["alive", "cmdline", "proc_start_time", "run_process", "wait_pid"]


def _stat(pid: int) -> tuple[bytes, int] | None:
    """(state letter, start time) from ``/proc/<pid>/stat``, None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        fields = data[data.rindex(b")") + 2 :].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int | None, start: int | None) -> bool:
    """True when ``pid`` runs and is the process that had start time ``start`` (never a recycled pid).

    A zombie does not count: it has ended, only its parent has not collected it yet.
    """
    if not pid or start is None:
        return False
    stat = _stat(pid)
    return stat is not None and stat[1] == start and stat[0] not in (b"Z", b"X")


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


async def wait_pid(pid: int, start: int | None, poll: float = 0.05) -> None:
    """Return once process ``pid`` (with start time ``start``) has ended; works for any process.

    A pidfd becomes readable when the process exits, whoever its parent is; when pidfds are not
    available this polls ``/proc``. Zombies count as ended.
    """
    if not alive(pid, start):
        return
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        while alive(pid, start):
            await asyncio.sleep(poll)
        return
    try:
        if not alive(pid, start):  # ended (or recycled) between the check and the open
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not done.done():
                done.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await done
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)


async def run_process(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    capture: bool = False,
) -> tuple[int | None, bytes]:
    """Run ``argv`` in a session of its own; ``(exit code, output)``, exit code None on timeout.

    On timeout or cancellation the whole process group is SIGKILLed and reaped before this returns or
    re-raises, so nothing half-run is left behind.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if capture else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.STDOUT if capture else asyncio.subprocess.DEVNULL,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):  # not wait_for: in 3.11 it can swallow a cancellation
            output, _ = await proc.communicate()
        return proc.returncode, output or b""
    except TimeoutError:
        await _kill_and_reap(proc)
        return None, b""
    except BaseException:
        await asyncio.shield(_kill_and_reap(proc))
        raise


async def _kill_and_reap(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()
