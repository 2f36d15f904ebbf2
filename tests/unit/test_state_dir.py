"""The state dir and the database files are private whatever the umask (issue #12, item 1)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from taskvpc.cli import config
from taskvpc.store.db import Database, sqlite_url


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o000, 0o022, 0o277])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def test_a_new_state_dir_is_0700(tmp_path: Path, umask: int) -> None:
    state = tmp_path / "a" / "state"
    assert config.ensure_private_state_dir(state) == []
    assert mode(state) == 0o700


def test_an_open_state_dir_and_its_secrets_are_closed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o755)
    for name in ("credentials.json", "taskvpc.db", "taskvpc.db-wal"):
        (state / name).write_text("x")
        os.chmod(state / name, 0o644)
    notes = config.ensure_private_state_dir(state)
    assert notes[0] == f"state dir {state} was mode 755; made it 700"
    assert len(notes) == 4
    assert mode(state) == 0o700
    assert {mode(state / n) for n in ("credentials.json", "taskvpc.db", "taskvpc.db-wal")} == {0o600}
    assert config.ensure_private_state_dir(state) == []  # nothing left to fix


def test_a_file_is_not_a_state_dir(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    with pytest.raises(config.StateDirError, match="is not a directory"):
        config.ensure_private_state_dir(tmp_path / "state")


@pytest.mark.parametrize("database_umask", [0o000, 0o022, 0o077])
def test_database_files_are_0600(tmp_path: Path, database_umask: int) -> None:
    state = tmp_path / "state"
    config.ensure_private_state_dir(state)
    previous = os.umask(database_umask)
    database = Database(sqlite_url(state))
    try:
        with database.transaction() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        for name in ("taskvpc.db", "taskvpc.db-wal", "taskvpc.db-shm"):
            assert mode(state / name) == 0o600, name
    finally:
        database.dispose()
        os.umask(previous)
    config.write_server_file(state, "http://127.0.0.1:1")
    assert mode(state / config.SERVER_FILE) == 0o600
