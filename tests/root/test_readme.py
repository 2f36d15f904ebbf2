"""The README works as written: its command blocks marked ``readme-test`` run, in order, in one bash
session against a real `taskvpc up` (root, its local agent, a test-unique prefix and state dir), then
`up` is stopped as the README says (SIGINT) and the blocks marked ``readme-test-after-stop`` run.

The shell is a new user's: the checkout as working directory, a PATH without the venv (the README puts
it there), no AWS settings of the machine, ``set -euo pipefail`` so any failing command fails the test.
Only the state dir and prefix differ from the defaults, through ``TASKVPC_HOME`` and
``TASKVPC_NET_PREFIX``, so the blocks run verbatim.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, VENV_BIN
from tests.root import hostcheck
from tests.root.upserver import REPO, RootServer, kill_task_shims

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the walkthrough runs real tasks"),
]

FENCE = re.compile(r"^```sh (readme-test(?:-after-stop)?)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(markdown: str, marker: str) -> list[str]:
    return [body for kind, body in FENCE.findall(markdown) if kind == marker]


def test_blocks_are_found() -> None:
    text = (REPO / "README.md").read_text()
    assert len(blocks(text, "readme-test")) >= 2
    assert any("run-task" in b for b in blocks(text, "readme-test"))
    assert any("taskvpc down" in b for b in blocks(text, "readme-test-after-stop"))


def shell_env(state_dir: Path, prefix: str) -> dict[str, str]:
    path = [p for p in os.environ.get("PATH", "").split(":") if p and Path(p) != VENV_BIN]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TASKVPC_"))}
    return {
        **env,
        "PATH": ":".join(path) or "/usr/bin:/bin",
        "TASKVPC_HOME": str(state_dir),
        "TASKVPC_NET_PREFIX": prefix,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_PAGER": "",
    }


class Shell:
    """One bash session fed block by block, as a user types them into one terminal."""

    MARK = "__readme_block_done__"

    def __init__(self, env: dict[str, str], errors: Path) -> None:
        self.errors = errors
        self._stderr = open(errors, "w")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            ["bash"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.run(["set -euo pipefail"])

    def run(self, scripts: list[str]) -> str:
        """Run the blocks; their output (AssertionError with the session's output when one fails)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("\n".join(scripts) + f"\necho {self.MARK}\n")
        self.process.stdin.flush()
        lines = []
        for line in self.process.stdout:
            if line.rstrip("\n") == self.MARK:
                return "".join(lines)
            lines.append(line)
        raise AssertionError("".join(lines) + self.errors.read_text())

    def stderr(self) -> str:
        return self.errors.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._stderr.close()


@pytest.fixture()
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RootServer]:
    prefix = "tvr" + secrets.token_hex(2)
    # a short state dir: an ALB's HAProxy refuses a runtime-API socket path longer than 97 characters
    up = RootServer(tmp_path_factory.mktemp("readme") / "state", prefix)
    # credentials in the state dir, as a first `taskvpc up` leaves them (for `taskvpc env`), not in its
    # environment; the same keys the test's own clients sign with
    up.state_dir.mkdir(parents=True)
    descriptor = os.open(up.state_dir / "credentials.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_ACCESS_KEY}, handle)
    with_keys = up.env
    up.env = lambda: {  # type: ignore[method-assign]
        k: v
        for k, v in with_keys().items()
        if k not in ("TASKVPC_ACCESS_KEY_ID", "TASKVPC_SECRET_ACCESS_KEY")
    }
    try:
        yield up
    finally:
        up.stop()
        kill_task_shims(up.state_dir)
        hostcheck.unmount_under(up.state_dir)
        hostcheck.scrub(prefix)


def test_readme_command_blocks_run_green(server: RootServer) -> None:
    text = (REPO / "README.md").read_text()
    server.start()
    shell = Shell(shell_env(server.state_dir, server.prefix), server.state_dir.parent / "shell.err")
    try:
        # `taskvpc up` wrote its credentials and endpoint to the state dir: `taskvpc env` reads them there
        out = shell.run(blocks(text, "readme-test"))
        assert '"Account": "123456789012"' in out  # who am I
        assert "the local agent is in us-east-1a" in out
        assert out.splitlines().count("Amazon ECS Sample App") == 2  # the page from each task's own IP
        assert [n for n in hostcheck.namespaces(server.prefix) if "-t-" in n] == []  # both stopped

        assert server.process is not None
        server.process.send_signal(signal.SIGINT)  # Ctrl-C, as the README says
        assert server.process.wait(timeout=30) == 0
        server.process = None
        shell.run(blocks(text, "readme-test-after-stop"))
        assert f"taskvpc down: prefix {server.prefix}:" in shell.stderr()
    finally:
        shell.close()
    assert hostcheck.wait_clean(server.prefix) == []
