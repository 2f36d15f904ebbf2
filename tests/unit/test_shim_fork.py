"""Shims forked by the shim server behave as exec'd ones and cost less memory (no root needed: no netns).

A forked shim must look like an exec'd one to everything that finds shims through ``/proc`` (the agent
after a restart, ``taskvpc down``): the same command line; exit codes, output and stop work as before;
a new runtime (an agent restart) adopts it; when the server is gone, the next start gets a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskvpc.agent.runtime import ContainerHandle, ContainerSpec, ContainerStatus, forkshim, shimserver
from taskvpc.agent.runtime.process import SHIM_CODE, SHIM_TAG, ProcessRuntime, _read_pid_info
from taskvpc.agent.runtime.procs import cmdline


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for pid_file in tmp_path.glob("tasks/*/*/pid"):  # nothing of a failed test keeps running
        info = _read_pid_info(pid_file.parent)
        if info is not None:
            for pid in (info.pid, info.shim_pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def private_dirty_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("Private_Dirty:"))


async def start(runtime: ProcessRuntime, task: str, *command: str) -> ContainerHandle:
    spec = ContainerSpec(task_id=task, name="app", command=command)
    return await runtime.start(spec, None, str(runtime.state_dir / f"{task}.log"))


def test_a_forked_shim_runs_stops_and_is_adopted_like_an_exec_d_one(state: Path) -> None:
    async def scenario() -> None:
        runtime = ProcessRuntime(state)
        assert runtime._forker is not None
        done = await start(runtime, "t1", "sh", "-c", "echo out; echo err >&2; exit 3")
        ended = await runtime.wait(done)
        assert (ended.status, ended.exit_code) == (ContainerStatus.EXITED, 3)
        assert (state / "t1.log").read_text() == "out\nerr\n"

        handle = await start(runtime, "t2", "sleep", "30")
        directory = runtime._dir(handle)
        info = _read_pid_info(directory)
        assert info is not None
        server = runtime._forker._server
        assert server is not None
        stat = Path(f"/proc/{info.shim_pid}/stat").read_text()
        assert stat.rpartition(")")[2].split()[1] == str(server.pid)  # forked, not exec'd by us
        shown = cmdline(info.shim_pid)
        assert shown[1:-1] == ["-I", "-S", "-c", SHIM_CODE, SHIM_TAG, str(directory)]
        assert shown[-1].isdigit()

        runtime._forker.close()  # the agent ends: the server goes, the shim stays
        assert server.poll() is not None
        adopted = ProcessRuntime(state)
        assert adopted.status(handle).status == ContainerStatus.RUNNING
        assert await adopted.stop(handle, 5) == 128 + signal.SIGTERM

        with pytest.raises(Exception, match='exec: "/nonexistent": no such file or directory'):
            await start(adopted, "t3", "/nonexistent")
        assert adopted._forker is not None and adopted._forker._server is not None
        adopted._forker._server.kill()  # a dead server: the next start makes a new one
        adopted._forker._server.wait()
        again = await start(adopted, "t4", "true")
        assert (await adopted.wait(again)).exit_code == 0
        adopted._forker.close()

    asyncio.run(scenario())


def test_a_forked_shim_costs_less_private_memory_than_an_exec_d_one(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def shim_memory(runtime: ProcessRuntime, task: str) -> int:
        handle = await start(runtime, task, "sleep", "30")
        info = _read_pid_info(runtime._dir(handle))
        assert info is not None
        await asyncio.sleep(0.2)  # settled in its wait
        used = private_dirty_kib(info.shim_pid)
        await runtime.stop(handle, 5)
        return used

    async def scenario() -> None:
        forked_runtime = ProcessRuntime(state)
        forked = await shim_memory(forked_runtime, "f1")
        assert forked_runtime._forker is not None
        forked_runtime._forker.close()
        monkeypatch.setenv(forkshim.ENV_SWITCH, "0")
        exec_runtime = ProcessRuntime(state)
        assert exec_runtime._forker is None
        executed = await shim_memory(exec_runtime, "e1")
        assert forked * 2 < executed, (forked, executed)

    asyncio.run(scenario())


def test_the_command_line_memory_takes_a_shorter_one_and_refuses_a_longer_one() -> None:
    buffer = bytearray(b"x" * 64)
    holder = (ctypes.c_char * len(buffer)).from_buffer(buffer)
    area = (ctypes.addressof(holder), len(buffer))
    assert shimserver.set_cmdline(area, ["a", "bc"])
    assert bytes(buffer) == b"a\0bc\0" + b"\0" * 59
    assert not shimserver.set_cmdline(area, ["y" * 64])
    assert bytes(buffer).startswith(b"a\0bc\0")
