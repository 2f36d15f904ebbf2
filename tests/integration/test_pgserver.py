"""The throwaway PostgreSQL server used by the store tests starts, serves and cleans up."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy

from tests.support.pgserver import (
    ENV_SWITCH,
    PostgresUnavailable,
    ThrowawayPostgres,
    pids_using,
    require_postgres,
)

pytestmark = pytest.mark.postgres


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _assert_gone(pid: int, root: Path) -> None:
    assert not _alive(pid), f"postmaster {pid} still running"
    assert pids_using(root) == [], "postgres backends left behind"
    assert not root.exists(), f"{root} not removed"


def test_start_query_create_database_stop() -> None:
    require_postgres()
    t0 = time.monotonic()
    pg = ThrowawayPostgres().start()
    started_in = time.monotonic() - t0
    try:
        pid, root = pg.pid, pg.root_dir
        assert pg.url == f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}/postgres"

        with psycopg.connect(pg.dsn()) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            assert conn.execute("show listen_addresses").fetchone() == ("127.0.0.1",)
            assert conn.execute("show fsync").fetchone() == ("off",)
            assert conn.execute("show unix_socket_directories").fetchone() == (str(root),)

        # The server never runs as root; as root it runs as the 'postgres' user.
        server_uid = os.stat(f"/proc/{pid}").st_uid
        assert server_uid != 0
        if os.geteuid() != 0:
            assert server_uid == os.geteuid()

        url = pg.create_database("pgserver_selftest")
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}/pgserver_selftest"
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text("select current_database()")).scalar() == (
                    "pgserver_selftest"
                )
        finally:
            engine.dispose()

        # Unix socket in the temp dir works too.
        with psycopg.connect(host=str(root), port=pg.port, user="postgres", dbname="pgserver_selftest"):
            pass

        random_url = pg.create_database()
        assert random_url.rsplit("/", 1)[1].startswith("t_")
    finally:
        pg.stop()

    _assert_gone(pid, root)
    pg.stop()  # idempotent
    assert started_in < 15, f"startup took {started_in:.1f}s"


def test_cleans_up_when_the_body_raises() -> None:
    require_postgres()
    with pytest.raises(RuntimeError, match="boom"), ThrowawayPostgres() as pg:
        pid, root = pg.pid, pg.root_dir
        raise RuntimeError("boom")
    _assert_gone(pid, root)


def test_switch_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SWITCH, "0")
    with pytest.raises(pytest.skip.Exception):
        require_postgres()


def test_missing_binaries_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PostgresUnavailable, match="initdb"):
        ThrowawayPostgres(bindir=tmp_path).start()
