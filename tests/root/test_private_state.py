"""Private state (issue #12, item 1): another local user reads nothing of taskvpc's state, whatever the umask.

``taskvpc up`` runs as root with its local agent, under umask 000, on a state dir that already exists
with mode 0755 in a directory everyone may traverse; user ``nobody`` then tries to read the database a
task definition's secret was just written to.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import VENV_BIN
from tests.root import hostcheck
from tests.root.upserver import RootServer, kill_task_shims

pytestmark = [
    pytest.mark.root,
]

SECRET_VALUE = "s3cr3t-" + secrets.token_hex(8)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def as_nobody(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["su", "nobody", "-s", "/bin/sh", "-c", command], capture_output=True, text=True, timeout=30
    )


@pytest.fixture()
def open_base() -> Iterator[Path]:
    """A directory under /tmp that every user may traverse (pytest's tmp_path is private already)."""
    base = Path(tempfile.mkdtemp(prefix="taskvpc-private-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_nobody_cannot_read_the_state(open_base: Path) -> None:
    state = open_base / "state"
    state.mkdir()
    os.chmod(state, 0o755)  # as an older taskvpc left it
    prefix = "tvp" + secrets.token_hex(2)
    server = RootServer(state, prefix)
    previous = os.umask(0)
    try:
        server.start()
    finally:
        os.umask(previous)
    try:
        server.client("ecs").register_task_definition(
            family="private",
            containerDefinitions=[
                {
                    "name": "app",
                    "image": "busybox:latest",
                    "memory": 32,
                    "environment": [{"name": "TOKEN", "value": SECRET_VALUE}],
                }
            ],
        )
        assert mode(state) == 0o700
        for name in ("taskvpc.db", "taskvpc.db-wal", "taskvpc.db-shm", "server.json"):
            assert mode(state / name) == 0o600, name
        refused = as_nobody(f"cat {state}/taskvpc.db")
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
        assert SECRET_VALUE not in refused.stdout
        grep = as_nobody(f"grep -r {SECRET_VALUE} {state}")
        assert grep.returncode != 0 and SECRET_VALUE not in grep.stdout
        # The secret really is in there, where root (and only root) reads it.
        assert any(
            SECRET_VALUE.encode() in (state / name).read_bytes() for name in ("taskvpc.db", "taskvpc.db-wal")
        )
        assert f"state dir {state} was mode 755; made it 700" in server.log_path.read_text()
    finally:
        server.stop()
        kill_task_shims(state)
        hostcheck.unmount_under(state)
        hostcheck.scrub(prefix)
        assert not hostcheck.wait_clean(prefix)


def test_a_state_dir_of_another_user_is_refused(open_base: Path) -> None:
    state = open_base / "theirs"
    state.mkdir()
    shutil.chown(state, "nobody")
    result = subprocess.run(
        [str(VENV_BIN / "taskvpc"), "up", "--no-agent", "--port", "1", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"taskvpc: state dir {state} belongs to uid 65534, not to this user (0): "
        "refusing to keep secrets where its owner can read them"
    )
    assert list(state.iterdir()) == []  # nothing written there
