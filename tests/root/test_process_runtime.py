"""The ``process`` runtime with real processes in a real network namespace.

Each test gets a namespace named ``tvt<hex>-p`` (made with ``ip netns add``, deleted in teardown) and a
state directory of its own; teardown asserts that no process of ours is left (no shim, nothing in the
namespace) and kills, by pid, anything a failed test left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskvpc.agent.runtime import (
    ContainerHandle,
    ContainerSpec,
    ContainerStatus,
    HealthCheckSpec,
    HealthStatus,
    StartError,
    create_runtime,
    read_logs,
)
from taskvpc.agent.runtime.health import HealthMonitor
from taskvpc.agent.runtime.process import TASK_ROOT, ProcessRuntime
from taskvpc.agent.runtime.procs import alive, cmdline, proc_start_time
from tests.root import hostcheck

pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(120),
]

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Env:
    netns: str  # /run/netns/<name>
    name: str
    state: Path

    def runtime(self) -> ProcessRuntime:
        runtime = create_runtime("process", self.state)
        assert isinstance(runtime, ProcessRuntime)
        return runtime

    def log(self, task: str, name: str) -> str:
        return str(self.state / "tasks" / task / name / "log")

    def root(self, task: str) -> Path:
        return self.state / "tasks" / task / TASK_ROOT


@pytest.fixture()
def env() -> Iterator[Env]:
    name = f"tvt{secrets.token_hex(2)}-p"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    # not under pytest's 0700 tmp: a container user other than root must reach its working directory
    state = Path(tempfile.mkdtemp(prefix="tvt-state-"))
    os.chmod(state, 0o711)
    env = Env(f"/run/netns/{name}", name, state)
    try:
        yield env
    finally:
        left = hostcheck.our_pids(state, env.netns)
        described = {pid: " ".join(cmdline(pid)) for pid in left}
        for pid in left:  # only processes of this test: shims of its state dir, or in its namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while hostcheck.our_pids(state, env.netns) and time.monotonic() < deadline:
            time.sleep(0.02)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(state, ignore_errors=True)
        assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not left, f"processes left behind: {described}"


def spec(task: str, name: str, script: str, **extra: object) -> ContainerSpec:
    return ContainerSpec(task_id=task, name=name, command=("sh", "-c", script), **extra)  # type: ignore[arg-type]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- tests


def test_container_runs_in_the_namespace_with_env_cwd_and_user(env: Env) -> None:
    rt = env.runtime()
    inode = os.stat(env.netns).st_ino
    script = 'readlink /proc/self/ns/net; id -u; id -g; pwd; echo "$GREETING $HOME"; echo oops >&2'

    async def main() -> None:
        handle = await rt.start(
            spec(
                "t1",
                "app",
                script,
                environment=(("GREETING", "hello"),),
                working_directory="/srv/www",
                user="nobody",
            ),
            env.netns,
            env.log("t1", "app"),
        )
        state = await rt.wait(handle)
        assert state.status is ContainerStatus.EXITED and state.exit_code == 0
        numeric = await rt.start(
            spec("t1", "num", "id -u; id -g; pwd", user="1234:4321"), env.netns, env.log("t1", "num")
        )
        assert (await rt.wait(numeric)).exit_code == 0

    run(main())
    lines = read_logs(env.state, "t1", "app").splitlines()
    assert lines[0] == f"net:[{inode}]"
    assert lines[1:3] == ["65534", "65534"]
    assert lines[3] == str(env.root("t1") / "srv" / "www")
    assert lines[4] == "hello /nonexistent"
    assert "oops" in lines  # stderr too
    assert read_logs(env.state, "t1", "num").splitlines() == ["1234", "4321", str(env.root("t1"))]
    assert "==> app <==" in read_logs(env.state, "t1")


def test_entry_point_and_command(env: Env) -> None:
    rt = env.runtime()

    async def main() -> None:
        both = ContainerSpec(
            "t1", "both", entry_point=("sh", "-c"), command=("echo $0 $1", "first", "second")
        )
        handle = await rt.start(both, env.netns, env.log("t1", "both"))
        assert (await rt.wait(handle)).exit_code == 0
        only = ContainerSpec("t1", "only", command=("echo", "plain"))
        handle = await rt.start(only, env.netns, env.log("t1", "only"))
        assert (await rt.wait(handle)).exit_code == 0

    run(main())
    assert read_logs(env.state, "t1", "both").strip() == "first second"
    assert read_logs(env.state, "t1", "only").strip() == "plain"


def test_exit_codes(env: Env) -> None:
    rt = env.runtime()

    async def main() -> None:
        exits = await rt.start(spec("t2", "exits", "exit 7"), env.netns, env.log("t2", "exits"))
        killed = await rt.start(spec("t2", "killed", "kill -KILL $$"), env.netns, env.log("t2", "killed"))
        assert (await rt.wait(exits)).exit_code == 7
        assert (await rt.wait(killed)).exit_code == 137
        assert rt.status(exits).status is ContainerStatus.EXITED

    run(main())


def test_start_failures_use_docker_wording(env: Env) -> None:
    rt = env.runtime()

    async def main() -> None:
        with pytest.raises(StartError) as info:
            await rt.start(
                ContainerSpec("t3", "a", command=("no-such-cmd-x",)), env.netns, env.log("t3", "a")
            )
        assert info.value.reason == (
            'CannotStartContainerError: exec: "no-such-cmd-x": executable file not found in $PATH'
        )
        with pytest.raises(StartError) as info:
            await rt.start(spec("t3", "b", "true", user="no-such-user-x"), env.netns, env.log("t3", "b"))
        assert "unable to find user no-such-user-x: no matching entries in passwd file" in info.value.reason
        with pytest.raises(StartError) as info:
            await rt.start(ContainerSpec("t3", "c"), env.netns, env.log("t3", "c"))
        assert "no command specified" in info.value.reason
        assert rt.status(ContainerHandle("t3", "a")).status is ContainerStatus.FAILED

    run(main())


def test_stop_sends_sigterm_then_sigkill_to_the_process_group(env: Env) -> None:
    rt = env.runtime()
    stubborn = "trap '' TERM; sleep 300 & echo $! > bg; while :; do sleep 0.05; done"

    async def main() -> None:
        polite = await rt.start(spec("t4", "polite", "exec sleep 300"), env.netns, env.log("t4", "polite"))
        hard = await rt.start(spec("t4", "hard", stubborn), env.netns, env.log("t4", "hard"))
        bg_file = env.root("t4") / "bg"
        while not bg_file.exists() or not bg_file.read_text().strip():
            await asyncio.sleep(0.01)
        bg = int(bg_file.read_text())
        bg_start = proc_start_time(bg)
        began = time.monotonic()
        assert await rt.stop(polite, 5) == 143
        assert time.monotonic() - began < 2
        began = time.monotonic()
        assert await rt.stop(hard, 0.5) == 137
        took = time.monotonic() - began
        assert 0.5 <= took < 3, took
        assert not alive(bg, bg_start)  # the whole process group went
        assert await rt.stop(hard, 0.5) == 137  # stopping a stopped container is harmless

    run(main())


def test_nothing_escapes_when_the_container_ends(env: Env) -> None:
    """A descendant that left the process group (setsid) still dies with its container."""
    rt = env.runtime()

    async def main() -> None:
        handle = await rt.start(
            spec("t5", "app", "setsid sleep 300 & echo $! > escaped; sleep 0.2; exit 0"),
            env.netns,
            env.log("t5", "app"),
        )
        escaped_file = env.root("t5") / "escaped"
        while not escaped_file.exists() or not escaped_file.read_text().strip():
            await asyncio.sleep(0.01)
        escaped = int(escaped_file.read_text())
        start = proc_start_time(escaped)
        assert alive(escaped, start)
        assert (await rt.wait(handle)).exit_code == 0
        assert not alive(escaped, start)

    run(main())


AGENT = textwrap.dedent(
    """
    import asyncio, sys, time
    sys.path.insert(0, {repo!r})
    from taskvpc.agent.runtime import ContainerSpec
    from taskvpc.agent.runtime.process import ProcessRuntime

    async def main():
        rt = ProcessRuntime({state!r})
        spec = ContainerSpec("t6", "app", command=("sh", "-c",
            "echo started; while [ ! -f stop ]; do sleep 0.02; done; exit 5"))
        handle = await rt.start(spec, {netns!r}, {log!r})
        print("ready", flush=True)
        await asyncio.sleep(300)

    asyncio.run(main())
    """
)


def test_shim_survives_a_kill_9_of_the_agent_and_is_adopted(env: Env) -> None:
    code = AGENT.format(repo=str(REPO), state=str(env.state), netns=env.netns, log=env.log("t6", "app"))
    agent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None
        assert agent.stdout.readline().strip() == "ready"
        first = ProcessRuntime(env.state)
        handle = first.list_ours()[0]
        state = first.status(handle)
        assert state.status is ContainerStatus.RUNNING and state.pid is not None
        agent.send_signal(signal.SIGKILL)
        agent.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            agent.kill()
        agent.wait()

    rt = ProcessRuntime(env.state)  # a new agent
    handles = rt.list_ours()
    assert [(h.task_id, h.name) for h in handles] == [("t6", "app")]
    assert handles[0].runtime_id == handle.runtime_id
    assert rt.status(handles[0]).status is ContainerStatus.RUNNING

    async def main() -> None:
        waiter = asyncio.ensure_future(rt.wait(handles[0]))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        (env.root("t6") / "stop").touch()
        state = await asyncio.wait_for(waiter, 10)
        assert state.status is ContainerStatus.EXITED and state.exit_code == 5  # the real exit code
        await rt.remove(handles[0])

    run(main())
    assert "started" in read_logs(env.state, "t6", "app")
    assert rt.list_ours() == []


def test_recycled_pid_is_never_signalled(env: Env) -> None:
    """A pid file whose process is gone (its pid maybe reused) reads as exited and is not signalled."""
    rt = env.runtime()
    directory = env.state / "tasks" / "t7" / "app"
    directory.mkdir(parents=True)
    (directory / "spec.json").write_text('{"runtimeId": "x", "env": {}, "cwd": "/"}')
    # pid 1 exists, but its start time is not the one recorded: it is not ours
    (directory / "pid").write_text('{"shimPid": 1, "shimStart": 1, "pid": 1, "start": 1, "startedAt": 0}')
    handle = ContainerHandle("t7", "app")
    state = rt.status(handle)
    assert state.status is ContainerStatus.EXITED and state.exit_code is None
    assert run(rt.stop(handle, 0.1)) is None  # nothing signalled, nothing waited for


def test_health_checks_run_in_the_container_namespace(env: Env) -> None:
    rt = env.runtime()
    inode = os.stat(env.netns).st_ino

    async def main() -> None:
        handle = await rt.start(
            spec("t8", "db", "exec sleep 300", environment=(("MARK", "ok"),), user="nobody"),
            env.netns,
            env.log("t8", "db"),
        )
        seen: list[HealthStatus] = []
        check = HealthCheckSpec(
            (
                "CMD-SHELL",
                f'[ "$(readlink /proc/self/ns/net)" = "net:[{inode}]" ] && [ "$MARK" = ok ] && test -f healthy',
            ),
            interval=0.1,
            timeout=2,
            retries=2,
        )
        monitor = HealthMonitor.for_container(rt, handle, check, seen.append)
        runner = asyncio.ensure_future(monitor.run())
        try:
            await asyncio.sleep(0.35)
            assert seen == [HealthStatus.UNHEALTHY]  # two failures
            (env.root("t8") / "healthy").touch()
            await asyncio.sleep(0.3)
            assert seen[-1] is HealthStatus.HEALTHY
            (env.root("t8") / "healthy").unlink()
            await asyncio.sleep(0.4)
            assert seen[-1] is HealthStatus.UNHEALTHY
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        # CMD form, as the container's user
        assert await rt.exec(handle, ["sh", "-c", 'test "$(id -u)" = 65534'], 2) == 0
        # a probe that outlives its timeout is killed, with everything it started
        began = time.monotonic()
        assert await rt.exec(handle, ["sh", "-c", "sleep 300 & sleep 300"], 0.3) is None
        assert time.monotonic() - began < 2
        assert await rt.stop(handle, 1) == 143

    run(main())


def test_health_start_period_and_unknown(env: Env) -> None:
    rt = env.runtime()

    async def main() -> None:
        handle = await rt.start(spec("t9", "app", "exec sleep 300"), env.netns, env.log("t9", "app"))
        seen: list[HealthStatus] = []
        check = HealthCheckSpec(("CMD", "false"), interval=0.1, timeout=1, retries=1, start_period=0.5)
        monitor = HealthMonitor.for_container(rt, handle, check, seen.append)
        assert monitor.status is HealthStatus.UNKNOWN
        runner = asyncio.ensure_future(monitor.run())
        try:
            await asyncio.sleep(0.35)
            assert seen == []  # failures inside the start period do not count
            await asyncio.sleep(0.5)
            assert seen == [HealthStatus.UNHEALTHY]
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        await rt.stop(handle, 1)

    run(main())


# ---------------------------------------------------------------------------------------------- the agent


def _netns_of(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def _curl_from(netns: str, url: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        out = subprocess.run(
            ["nsenter", f"--net={netns}", "curl", "-s", "--max-time", "2", url],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0 or time.monotonic() > deadline:
            return out.stdout
        time.sleep(0.05)


def test_agent_runs_tasks_on_the_real_data_plane_and_adopts_them_after_a_restart() -> None:
    """The whole agent (engine, real netlink driver, process runtime) against the fake control plane."""
    from taskvpc.agent.engine import Engine
    from taskvpc.agent.main import run_agent
    from tests.unit.test_agent_engine import CREDS, FakeControlPlane, container

    prefix = f"tvt{secrets.token_hex(2)}"
    state = Path(tempfile.mkdtemp(prefix="tvt-agent-"))
    os.chmod(state, 0o711)
    web = "mkdir -p www && echo hello-$N > www/index.html && exec python3 -m http.server 80 -d www"

    async def main() -> None:
        server = await FakeControlPlane().start()
        agent: asyncio.Task[None] | None = None

        async def start_agent() -> asyncio.Task[None]:
            ready: asyncio.Future[Engine] = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(
                run_agent(
                    server.endpoint,
                    "default",
                    state,
                    CREDS,
                    prefix=prefix,
                    runtime="process",
                    host_access=False,
                    ready=ready.set_result,
                )
            )
            await asyncio.wait({ready, task}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()
            return task

        async def kill(task: asyncio.Task[None]) -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        try:
            agent = await start_agent()
            arns = []
            for i in range(2):
                env = [{"name": "N", "value": str(i)}]
                arns.append(
                    await server.run_task(
                        f"{i:032x}", [container("web", web, environment=env)], eni_last=20 + i
                    )
                )
            for arn in arns:
                await server.wait_for(arn, "RUNNING")
            ns = [f"/run/netns/{prefix}-t-{i:032x}" for i in range(2)]
            assert await asyncio.to_thread(_curl_from, ns[1], "http://172.31.0.20/") == "hello-0\n"
            assert await asyncio.to_thread(_curl_from, ns[0], "http://172.31.0.21/") == "hello-1\n"
            inode = os.stat(ns[0]).st_ino

            await kill(agent)  # as after kill -9: containers and namespaces stay
            agent = await start_agent()
            await asyncio.sleep(0.2)
            assert os.stat(ns[0]).st_ino == inode  # adopted, not re-created
            assert await asyncio.to_thread(_curl_from, ns[1], "http://172.31.0.20/") == "hello-0\n"

            for arn in arns:
                await server.stop_task(arn)
            for arn in arns:
                stopped = await server.wait_for(arn, "STOPPED")
                assert stopped["containers"][0]["exitCode"] == 143
            assert [n for n in _netns_of(prefix) if "-t-" in n] == []
            assert hostcheck.our_pids(state, f"/run/netns/{prefix}-r-0123456789abcdef0") == []
        finally:
            if agent is not None:
                await kill(agent)
            await server.close()

    try:
        asyncio.run(main())
    finally:
        left = _netns_of(prefix)
        for name in left:
            for pid in subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True
            ).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], check=False)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        shutil.rmtree(state, ignore_errors=True)
        assert _netns_of(prefix) == []
        assert left == [f"{prefix}-r-0123456789abcdef0"]  # only the VPC router, still desired
