"""The database handle: engine set-up per backend, migrations on open, short transactions.

SQLite (the embedded default) runs in WAL mode with ``synchronous=NORMAL``: a committed transaction is in
the WAL file before the call returns, so a ``kill -9`` of the server loses no acknowledged write (only a
power cut could). PostgreSQL is the shared store when several hosts run agents.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import QueuePool

from taskvpc.store.schema import metadata

MIGRATIONS = Path(__file__).with_name("migrations")
# The database holds secrets (task definitions' environment): owner only, whatever the umask. SQLite
# gives the -wal and -shm files it creates the database file's own mode.
PRIVATE_FILE_MODE = 0o600
_SQLITE_FILE_PREFIX = "sqlite:///"


def sqlite_url(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / 'taskvpc.db'}"


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if url.startswith(_SQLITE_FILE_PREFIX) and ":memory:" not in url:
            _make_private(Path(url[len(_SQLITE_FILE_PREFIX) :].partition("?")[0]))
        self.engine = _make_engine(url)
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps and retries
        # (busy_timeout) in steps of up to 100 ms. This process's writers, on several worker threads, queue
        # on a lock of their own instead; the busy timeout is left for other processes on the same file.
        self._write_lock: threading.RLock | nullcontext[None] = (
            threading.RLock() if self.is_sqlite else nullcontext()
        )

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._write_lock, self.engine.begin() as connection:
            yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(taskvpc_read_only=True) as connection:
            yield connection
            connection.rollback()

    def dispose(self) -> None:
        self.engine.dispose()


def _make_private(database: Path) -> None:
    """Create the SQLite file 0600 before SQLite does (with the umask's mode), and close its companions."""
    descriptor = os.open(database, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        os.fchmod(descriptor, PRIVATE_FILE_MODE)
    finally:
        os.close(descriptor)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = database.with_name(database.name + suffix)
        if companion.exists():
            os.chmod(companion, PRIVATE_FILE_MODE)


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
    engine = create_engine(
        url,
        poolclass=QueuePool,
        pool_size=4,
        max_overflow=4,
        connect_args={"check_same_thread": False, "timeout": 30},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself (pysqlite's implicit transactions defer it wrongly).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock up front, so read-then-write transactions never deadlock.
        # Readers open no transaction: each SELECT sees one consistent WAL snapshot of its own and
        # runs beside the writer; a use case that needs several reads to agree uses transaction().
        if not connection.get_execution_options().get("taskvpc_read_only", False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def wipe(database: Database) -> None:
    """Delete every row of every table the project owns (the schema stays)."""
    with database.transaction() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
