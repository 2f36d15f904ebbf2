"""A container that cannot start always says why: never a bare ``CannotStartContainerError:``.

At ~3,030 tasks a start took longer than the runtime's 10 s start timeout, and the ``TimeoutError``
(whose text is empty) reached ECS as ``CannotStartContainerError:`` with nothing after it. These tests
drive the real process runtime with shims that hang or die (real processes, no root needed) and the
reason builders with the empty inputs that produced it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from taskvpc.agent.runtime import NO_DETAIL, ContainerSpec, StartError, error_text, with_detail
from taskvpc.agent.runtime.process import START_TIMEOUT, ProcessRuntime, describe_tree, timeout_reason
from taskvpc.agent.runtime.runc import RuncRuntime, runc_log_error, start_reason

pytestmark = pytest.mark.timeout(60)


class HangingShim(ProcessRuntime):
    """A "shim" that holds the ready pipe open and never answers (as a runc that never returns)."""

    def _spawn_shim(self, directory: Path, write_fd: int) -> subprocess.Popen[bytes]:
        self.sleep = f"30.{os.getpid()}{time.monotonic_ns() % 10**6}"  # a unique command line to find
        self.shim = subprocess.Popen(
            ["sh", "-c", f"sleep {self.sleep}; true"], pass_fds=(write_fd,), start_new_session=True
        )
        return self.shim


class SilentShim(ProcessRuntime):
    """A "shim" that ends at once and writes nothing anywhere."""

    def _spawn_shim(self, directory: Path, write_fd: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["true"], start_new_session=True)


def running(cmdline: bytes) -> list[int]:
    """Live (not zombie) processes with exactly this command line."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/cmdline").read_bytes() != cmdline:
                    continue
                state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                continue
            if state != "Z":
                found.append(int(entry))
    return found


def spec(task: str) -> ContainerSpec:
    return ContainerSpec(task_id=task, name="app", command=("sleep", "30"))


def test_the_default_start_timeout_is_ecs_s_not_10_seconds() -> None:
    assert START_TIMEOUT == 180.0  # ECS_CONTAINER_START_TIMEOUT on Linux: 3m


def test_a_start_that_times_out_says_so_and_what_it_waited_for(tmp_path: Path) -> None:
    runtime = HangingShim(tmp_path, start_timeout=0.5)

    async def scenario() -> StartError:
        with pytest.raises(StartError) as info:
            await runtime.start(spec("t1"), None, str(tmp_path / "t1.log"))
        return info.value

    began = time.monotonic()
    error = asyncio.run(scenario())
    assert time.monotonic() - began < 15
    assert error.reason.startswith(
        "DockerTimeoutError: Could not transition to started; timed out after waiting 0.5s ("
    )
    assert "sleep" in error.reason  # the process the start was waiting on, found under the shim
    assert runtime.shim.poll() is not None  # and the half-started shim was killed and reaped,
    deadline = time.monotonic() + 5  # (a SIGKILL takes effect a moment later)
    while running(f"sleep\0{runtime.sleep}\0".encode()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not running(f"sleep\0{runtime.sleep}\0".encode())  # with what it had started (the sleep)


def test_a_shim_that_ends_without_a_word_gives_a_reason(tmp_path: Path) -> None:
    async def scenario() -> StartError:
        with pytest.raises(StartError) as info:
            await SilentShim(tmp_path).start(spec("t2"), None, str(tmp_path / "t2.log"))
        return info.value

    reason = asyncio.run(scenario()).reason
    assert reason == "CannotStartContainerError: the shim failed: it ended without a word"


def test_an_empty_start_error_file_still_reads_as_a_reason(tmp_path: Path) -> None:
    runtime = ProcessRuntime(tmp_path)
    directory = tmp_path / "tasks" / "t3" / "app"
    directory.mkdir(parents=True)
    (directory / "start_error").write_text("\n")
    state = runtime._finished(directory)
    assert state is not None
    assert state.reason == f"CannotStartContainerError: {NO_DETAIL}"


def test_runc_reads_its_log_when_the_shim_has_only_an_exit_status(tmp_path: Path) -> None:
    runtime = RuncRuntime(tmp_path, oci_runtime="/bin/false")
    directory = tmp_path / "tasks" / "t4" / "app"
    directory.mkdir(parents=True)
    (directory / "start_error").write_text("the OCI runtime exited with code 1 and wrote nothing to stderr\n")
    entries = [
        {"level": "warning", "msg": "a warning", "time": "t"},
        {"level": "error", "msg": "unable to apply cgroup configuration: no space left on device"},
        {"level": "info", "msg": "later chatter"},
    ]
    (directory / "runc.log").write_text("".join(json.dumps(e) + "\n" for e in entries) + "not json\n")
    state = runtime._finished(directory)
    assert state is not None and state.reason is not None
    assert state.reason.startswith("CannotStartContainerError: the OCI runtime exited with code 1")
    assert state.reason.endswith("runc: unable to apply cgroup configuration: no space left on device")


def test_runc_log_error_prefers_the_last_error() -> None:
    assert runc_log_error(Path("/nonexistent/runc.log")) == ""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", f"CannotStartContainerError: {NO_DETAIL}"),
        ("   ", f"CannotStartContainerError: {NO_DETAIL}"),
        ("CannotStartContainerError: ", f"CannotStartContainerError: {NO_DETAIL}"),
        ("CannotStartContainerError:", f"CannotStartContainerError: {NO_DETAIL}"),
        ("CannotStartContainerError", f"CannotStartContainerError: {NO_DETAIL}"),
        ("CannotPullContainerError: x: not found", "CannotPullContainerError: x: not found"),
        ("unable to find user bob: no matching entries", "unable to find user bob: no matching entries"),
    ],
)
def test_a_reason_is_never_a_bare_prefix(raw: str, expected: str) -> None:
    assert with_detail(raw) == expected
    assert StartError(raw).reason == expected


def test_runc_start_reasons_are_never_bare() -> None:
    assert start_reason("") == f"CannotStartContainerError: {NO_DETAIL}"
    assert start_reason("permission denied") == "CannotStartContainerError: permission denied"
    timed_out = timeout_reason(180.0, "")
    assert timed_out == "DockerTimeoutError: Could not transition to started; timed out after waiting 3m0s"
    assert start_reason(timed_out) == timed_out


def test_an_exception_without_text_is_named() -> None:
    assert error_text(TimeoutError()) == f"TimeoutError ({NO_DETAIL})"
    assert error_text(OSError(24, "Too many open files")) == "[Errno 24] Too many open files"


def test_describe_tree_finds_the_deepest_process() -> None:
    child = subprocess.Popen(["sh", "-c", "sleep 30; true"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = describe_tree(child.pid)
            if len(lines) == 2 and lines[1].split()[1] == "sleep":  # (forked, then exec'd)
                break
            time.sleep(0.01)
        assert [line.split()[:2] for line in lines] == [
            [str(child.pid), "sh"],
            [lines[1].split()[0], "sleep"],
        ]
        assert describe_tree(2**22 + 7) == []  # no such process
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
