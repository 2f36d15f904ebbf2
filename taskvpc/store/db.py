"""The database handle: engine set-up per backend, migrations on open, short transactions.

SQLite (the embedded default) runs in WAL mode with ``synchronous=NORMAL``: a committed transaction is in
the WAL file before the call returns, so a ``kill -9`` of the server loses no acknowledged write (only a
power cut could). PostgreSQL is the shared store when several hosts run agents.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import QueuePool

from taskvpc.store.schema import metadata

MIGRATIONS = Path(__file__).with_name("migrations")


def sqlite_url(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / 'taskvpc.db'}"


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = _make_engine(url)

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(taskvpc_read_only=True) as connection:
            yield connection
            connection.rollback()

    def dispose(self) -> None:
        self.engine.dispose()


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
