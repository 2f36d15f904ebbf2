"""`taskvpc up` as a user meets it: the banner, a busy port, stopping it, `--help`; the agent's flags."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import time
from pathlib import Path

from taskvpc.agent.main import build_parser, registration
from taskvpc.agent.state import AgentState
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import VENV_BIN, TaskvpcServer, free_port

TASKVPC = str(VENV_BIN / "taskvpc")


def _without_venv_path() -> dict[str, str]:
    """The environment of a shell that has not activated the venv (PATH without it)."""
    path = [p for p in os.environ.get("PATH", "").split(":") if p and Path(p) != VENV_BIN]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TASKVPC_"))}
    return {**env, "PATH": ":".join(path) or "/usr/bin:/bin"}


def _start(state_dir: Path, port: int, ignore_sigint: bool = False) -> subprocess.Popen[str]:
    def ignore() -> None:  # as a shell starts a background job: SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen(
        [TASKVPC, "up", "--no-agent", "--port", str(port), "--state-dir", str(state_dir)],
        env=_without_venv_path(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=ignore if ignore_sigint else None,
    )


def _wait_for_banner(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    lines = ""
    deadline = time.monotonic() + 30
    while "eval" not in lines:
        assert time.monotonic() < deadline and process.poll() is None, lines
        lines += process.stdout.readline()
    return lines


def test_sigint_stops_a_background_up_quietly_and_the_banner_command_works(tmp_path: Path) -> None:
    port = free_port()
    process = _start(tmp_path / "state", port, ignore_sigint=True)
    try:
        banner = _wait_for_banner(process)
        # the PATH has no taskvpc: the banner names this one by its path, and that command works
        assert f'eval "$({TASKVPC} env --state-dir {tmp_path / "state"})"' in banner
        command = banner.split('eval "$(')[1].split(')"')[0]
        exports = subprocess.run(
            ["bash", "-c", command], env=_without_venv_path(), capture_output=True, text=True, check=True
        ).stdout
        assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in exports
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "SIGINT: stopping" in out and "taskvpc: stopped" in out
    assert "Traceback" not in out and "Error" not in out


def test_sigterm_during_an_agents_long_poll_answers_it_and_logs_no_error(tmp_path: Path) -> None:
    """A waiting long poll is answered at once when `up` stops (it used to be cancelled after 2 s with
    'Exception in ASGI application' and a CancelledError traceback)."""
    server = TaskvpcServer(tmp_path / "state").start()
    try:
        agent = FakeAgent(server)
        agent.register()
        agent.poll(wait=0)  # the current generation: the next poll waits
        pool = concurrent.futures.ThreadPoolExecutor(1)
        poll = pool.submit(agent.poll, None, 25.0)
        time.sleep(0.5)
        started = time.monotonic()
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
        assert time.monotonic() - started < 1.9, "the poll held the stop up"
        assert poll.result(timeout=5)["changed"] is False
        pool.shutdown()
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log


def test_a_busy_port_is_refused_before_the_banner(tmp_path: Path) -> None:
    first = TaskvpcServer(tmp_path / "one").start()
    try:
        second = subprocess.run(
            [TASKVPC, "up", "--no-agent", "--port", str(first.port), "--state-dir", str(tmp_path / "two")],
            env=_without_venv_path(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        first.stop()
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{first.port}: Address already in use" in second.stderr
    assert "control plane on" not in second.stderr
    assert not (tmp_path / "two").exists(), "nothing made for a server that cannot start"


def test_help_shows_defaults() -> None:
    for command, expected in (
        (["up"], ["(default: 4599)", "(default: 127.0.0.1)", "(default: tvpc)", "--cleanup-on-exit"]),
        (["down"], ["(default: tvpc)", "--purge"]),
        (["agent"], ["--net-prefix PREFIX, --prefix PREFIX", "(default: tvpc)", "--cpu", "--memory"]),
        (["env"], ["--state-dir"]),
    ):
        text = subprocess.run(
            [TASKVPC, *command, "--help"], capture_output=True, text=True, check=True
        ).stdout
        for piece in expected:
            assert piece in " ".join(text.split()), (command, piece, text)


def test_agent_cpu_and_memory_replace_the_hosts_resources() -> None:
    args = build_parser().parse_args(["--net-prefix", "tvx", "--cpu", "2048", "--memory", "3000"])
    assert (args.prefix, args.cpu, args.memory) == ("tvx", 2048, 3000)
    state = AgentState(instance_id="i-0123456789abcdef0")
    body = registration(state, "default", None, None, "process", None, capacity=(2048, 3000))
    assert (body["resources"]["CPU"], body["resources"]["MEMORY"]) == (2048, 3000)
    host = registration(state, "default", None, None, "process", None)["resources"]
    assert host["CPU"] == (os.cpu_count() or 1) * 1024
    assert "ecs.capability.env-files.s3" not in body["attributes"]
