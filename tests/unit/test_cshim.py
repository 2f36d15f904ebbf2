"""The C supervisor (``taskvpc-cshim``) keeps the Python shim's contract for detached OCI containers.

No root needed: a stand-in for ``runc run -d --pid-file F`` (``tests/support/fakeoci.py``: it forks
the container's command, writes its pid to ``F`` and exits) leaves the command to the supervisor as
runc leaves the container's init. Each behaviour is checked for both supervisors, so they cannot drift:
exit codes Docker's way, signals forwarded, runc's stderr as the start error, the oom count, the
rotated log, adoption by a new runtime after the agent was killed; then the C one's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from taskvpc.agent import teardown
from taskvpc.agent.runtime import ContainerHandle, ContainerStatus, StartError, cshim, forkshim
from taskvpc.agent.runtime.process import ProcessRuntime, _read_pid_info, _scan_shims
from taskvpc.agent.runtime.procs import cmdline
from tests.support.fakeoci import FakeOciRuntime, start

SUPERVISORS = ("c", "python")


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Built from the source under test (as ``make setup`` builds it), warnings as errors."""
    return str(cshim.build(tmp_path_factory.mktemp("cshim") / cshim.BINARY_NAME))


@pytest.fixture(params=SUPERVISORS)
def make_runtime(request: pytest.FixtureRequest, tmp_path: Path, binary: str) -> Iterator[Any]:
    made: list[FakeOciRuntime] = []

    def make(**options: Any) -> FakeOciRuntime:
        runtime = FakeOciRuntime(tmp_path, binary if request.param == "c" else None, **options)
        made.append(runtime)
        return runtime

    make.kind = request.param  # type: ignore[attr-defined]
    yield make
    for runtime in made:
        runtime.close()
    for pid_file in tmp_path.glob("tasks/*/*/pid"):  # nothing of a failed test keeps running
        info = _read_pid_info(pid_file.parent)
        if info is not None:
            for pid in (info.pid, info.shim_pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def supervisor_cmdline(runtime: ProcessRuntime, handle: ContainerHandle) -> list[str]:
    info = _read_pid_info(runtime._dir(handle))
    assert info is not None
    return cmdline(info.shim_pid)


def test_exit_code_output_and_the_files_of_the_contract(make_runtime: Any) -> None:
    async def scenario() -> None:
        runtime = make_runtime()
        handle = await start(runtime, "t1", "sh", "-c", "echo out; echo err >&2; sleep 0.2; exit 3")
        directory = runtime._dir(handle)
        shown = supervisor_cmdline(runtime, handle)
        assert "taskvpc-shim" in shown and str(directory) in shown
        if make_runtime.kind == "c":
            assert os.path.basename(shown[0]) == cshim.BINARY_NAME
            assert runtime._forker is not None and runtime._forker._server is not None
            assert parent_pid(int(doc_of(directory)["shimPid"])) == runtime._forker._server.pid  # forked
        doc = doc_of(directory)
        assert set(doc) == {"shimPid", "shimStart", "pid", "start", "startedAt", "runtimeId"}
        assert doc["runtimeId"] == "r" * 64 and doc["pid"] == int((directory / "init.pid").read_text())
        ended = await runtime.wait(handle)
        assert (ended.status, ended.exit_code) == (ContainerStatus.EXITED, 3)
        assert (directory / "exit_code").read_text() == "3\n"
        assert (runtime.state_dir / "t1.log").read_text() == "out\nerr\n"
        assert not (directory / "oom").exists()

    asyncio.run(scenario())


def doc_of(directory: Path) -> dict[str, Any]:
    return dict(json.loads((directory / "pid").read_text()))


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def test_without_a_shim_server_the_agent_spawns_the_c_supervisor_itself(
    tmp_path: Path, binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(forkshim.ENV_SWITCH, "0")

    async def scenario() -> None:
        runtime = FakeOciRuntime(tmp_path, binary)
        assert runtime._forker is None
        handle = await start(runtime, "t1", "sh", "-c", "echo hi; exit 9")
        assert parent_pid(doc_of(runtime._dir(handle))["shimPid"]) == os.getpid()
        assert (await runtime.wait(handle)).exit_code == 9
        assert (tmp_path / "t1.log").read_text() == "hi\n"

    asyncio.run(scenario())


def test_a_supervisor_that_cannot_be_exec_d_leaves_the_forked_child_a_python_shim(tmp_path: Path) -> None:
    async def scenario() -> None:
        missing = tmp_path / cshim.BINARY_NAME  # (the runtime would not pick it; the server is told to)
        runtime = FakeOciRuntime(tmp_path, str(missing))
        handle = await start(runtime, "t1", "sh", "-c", "exit 6")
        assert (await runtime.wait(handle)).exit_code == 6
        assert f"cannot exec {missing}" in (runtime._dir(handle) / "shim.err").read_text()
        runtime.close()

    asyncio.run(scenario())


def test_signals_are_forwarded_and_end_as_128_plus_n(make_runtime: Any) -> None:
    async def scenario() -> None:
        runtime = make_runtime()
        handle = await start(runtime, "t1", "sleep", "30")
        assert await runtime.stop(handle, 5) == 128 + signal.SIGTERM  # SIGTERM goes through the supervisor
        # a trap proves the supervisor forwarded the signal (not killed the process itself)
        handle = await start(runtime, "t2", "sh", "-c", "trap 'echo got-usr1; exit 7' USR1; sleep 30 & wait")
        info = _read_pid_info(runtime._dir(handle))
        assert info is not None
        await asyncio.sleep(0.2)  # the trap is set
        os.kill(info.shim_pid, signal.SIGUSR1)
        assert (await runtime.wait(handle)).exit_code == 7
        assert "got-usr1" in (runtime.state_dir / "t2.log").read_text()
        handle = await start(runtime, "t3", "sleep", "30")
        info = _read_pid_info(runtime._dir(handle))
        assert info is not None
        os.kill(info.pid, signal.SIGKILL)
        assert (await runtime.wait(handle)).exit_code == 137

    asyncio.run(scenario())


def test_start_errors_carry_the_runtime_s_stderr_or_why_it_could_not_run(make_runtime: Any) -> None:
    async def failed(runtime: FakeOciRuntime, task: str, argv: Sequence[str]) -> str:
        runtime.runc_argv[task] = list(argv)
        with pytest.raises(StartError) as raised:
            await start(runtime, task, "true")
        error = (runtime.state_dir / "tasks" / task / "app" / "start_error").read_text()
        assert error.strip() in raised.value.reason
        assert runtime.status(ContainerHandle(task, "app")).status is ContainerStatus.FAILED
        return error

    async def scenario() -> None:
        runtime = make_runtime()
        said = "echo 'warning: ignored' >&2; echo 'runc run failed: unable to start container process' >&2; exit 1"
        assert await failed(runtime, "t1", ["/bin/sh", "-c", said]) == (
            "runc run failed: unable to start container process\n"
        )
        assert await failed(runtime, "t2", ["/bin/sh", "-c", "exit 2"]) == (
            "the OCI runtime exited with code 2 and wrote nothing to stderr\n"
        )
        assert await failed(runtime, "t3", ["/bin/sh", "-c", "kill -9 $$"]) == (
            "the OCI runtime was killed by signal 9 and wrote nothing to stderr\n"
        )
        assert await failed(runtime, "t4", ["/nonexistent/runc"]) == (
            'exec: "/nonexistent/runc": no such file or directory\n'
        )
        no_pid = await failed(runtime, "t5", ["/bin/sh", "-c", "exit 0"])
        assert no_pid.startswith("no init pid from the OCI runtime: ")

    asyncio.run(scenario())


def test_what_the_container_leaves_behind_is_killed_and_its_exit_code_kept(make_runtime: Any) -> None:
    """A process that outlives the container's init holds the log pipe: the supervisor stops copying
    a second after the end, kills it (it was reparented to the supervisor) and records the code."""

    async def scenario() -> None:
        runtime = make_runtime()
        handle = await start(runtime, "t1", "sh", "-c", "sleep 60 & echo $! > stray.pid; exit 4")
        async with asyncio.timeout(10):
            assert (await runtime.wait(handle)).exit_code == 4
        stray = int((runtime._dir(handle) / "stray.pid").read_text())
        assert not Path(f"/proc/{stray}").exists()

    asyncio.run(scenario())


def test_an_oom_kill_count_is_recorded_when_the_container_ends(make_runtime: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        events = tmp_path / "memory.events"
        events.write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n")
        runtime = make_runtime(oomFile=str(events))
        handle = await start(runtime, "t1", "sh", "-c", "exit 137")
        assert (await runtime.wait(handle)).exit_code == 137
        assert (runtime._dir(handle) / "oom").read_text() == "2\n"
        events.write_text("oom 0\noom_kill 0\n")
        handle = await start(runtime, "t2", "true")
        await runtime.wait(handle)
        assert not (runtime._dir(handle) / "oom").exists()

    asyncio.run(scenario())


def test_the_log_is_rotated_at_log_max_bytes_keeping_log_max_files(make_runtime: Any) -> None:
    async def scenario() -> None:
        runtime = make_runtime(logMaxBytes=100, logMaxFiles=3)
        lines = "".join(f"line {n:03d} {'x' * 40}\n" for n in range(10))  # 10 x 50 bytes
        log = runtime.state_dir / "t1.log"
        log.write_text("old\n")  # appended to, counted towards the first file's size
        handle = await start(runtime, "t1", "printf", "%s", lines)
        assert (await runtime.wait(handle)).exit_code == 0
        files = [log.with_name(f"t1.log{suffix}") for suffix in ("", ".1", ".2")]
        assert not log.with_name("t1.log.3").exists()
        assert all(path.stat().st_size <= 100 for path in files)
        kept = "".join(path.read_text() for path in reversed(files))
        assert ("old\n" + lines).endswith(kept) and len(kept) >= 200

    asyncio.run(scenario())


AGENT = """
import asyncio, sys
sys.path.insert(0, {root!r})
from tests.support.fakeoci import FakeOciRuntime, start
from pathlib import Path
async def main():
    runtime = FakeOciRuntime(Path({state!r}), {binary!r})
    await start(runtime, "t1", "sleep", "30")
    print("started", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


def test_the_supervisor_outlives_an_agent_kill_9_and_is_adopted(make_runtime: Any) -> None:
    async def scenario() -> None:
        runtime = make_runtime()
        code = AGENT.format(
            root=str(Path(__file__).parents[2]), state=str(runtime.state_dir), binary=runtime.supervisor
        )
        agent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        try:
            assert agent.stdout is not None and agent.stdout.readline() == b"started\n"
        finally:
            agent.kill()  # kill -9: no clean-up of any kind
            agent.wait()
        handle = ContainerHandle("t1", "app")
        directory = runtime._dir(handle)
        assert runtime.list_ours() == [ContainerHandle("t1", "app", "r" * 64)]
        assert runtime.status(handle).status is ContainerStatus.RUNNING
        info = _read_pid_info(directory)
        assert info is not None
        assert _scan_shims(runtime.state_dir)[str(directory)][0] == info.shim_pid
        shown = cmdline(info.shim_pid)  # what ``taskvpc down`` looks for
        assert any(marker in arg for marker in teardown.SHIM_MARKERS for arg in shown)
        assert await runtime.stop(handle, 5) == 128 + signal.SIGTERM

    asyncio.run(scenario())


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("Pss:"))


def test_the_c_supervisor_costs_a_fraction_of_a_forked_python_shim(tmp_path: Path, binary: str) -> None:
    """With 8 of each running: PSS per C supervisor under 0.3 MiB and under a quarter of a Python one's."""

    async def per_supervisor(runtime: FakeOciRuntime, prefix: str) -> float:
        handles = [await start(runtime, f"{prefix}{n}", "sleep", "30") for n in range(8)]
        await asyncio.sleep(0.3)  # settled in their waits
        pids = [info.shim_pid for h in handles if (info := _read_pid_info(runtime._dir(h)))]
        used = sum(pss_kib(pid) for pid in pids) / len(handles)
        for handle in handles:
            await runtime.stop(handle, 5)
        runtime.close()
        return used

    async def scenario() -> None:
        c = await per_supervisor(FakeOciRuntime(tmp_path, binary), "c")
        python = await per_supervisor(FakeOciRuntime(tmp_path, None), "p")
        assert c < 300 and c * 4 < python, (c, python)

    asyncio.run(scenario())


def test_the_binary_is_found_built_named_or_switched_off(tmp_path: Path, binary: str) -> None:
    assert cshim.find_binary({cshim.ENV_SWITCH: "0"}) is None
    assert cshim.find_binary({cshim.ENV_SWITCH: binary}) == binary
    assert cshim.supports({"initPidFile": "/x/init.pid", "uid": None, "netns": None})
    assert not cshim.supports({"initPidFile": None})  # the process runtime: Python shims
    assert not cshim.supports({"initPidFile": "/x/init.pid", "uid": 1000})
    assert not cshim.supports({"initPidFile": "/x/init.pid", "newKey": 1})  # unknown
    assert cshim.supports({"initPidFile": "/x/init.pid", "overlay": ["l", "u", "w", "t"]})  # (server's child)
    spec = cshim.encode_spec({"argv": ["runc", "run"], "env": {"PATH": "/bin"}, "log": "/l", "oomFile": None})
    assert spec == b"arg\0runc\0arg\0run\0env\0PATH=/bin\0log\0/l\0"
    with pytest.raises(ValueError, match="NUL"):
        cshim.encode_spec({"argv": ["a\0b"], "log": "/l"})
