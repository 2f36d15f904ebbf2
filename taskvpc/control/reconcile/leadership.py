"""Which process runs each reconcile loop.

On SQLite there is one control-plane process, and it runs every loop (:class:`SoleProcess`). On
PostgreSQL several control planes may share the store; each loop is led by whichever holds the loop's
session-level advisory lock (``pg_try_advisory_lock``) on a connection kept for that alone
(:class:`AdvisoryLocks`). PostgreSQL releases a session's locks when the session ends, so when the leading
process dies (or its connection does), another process takes the lock on its next try, within a period.
Before each pass the leader checks that its session is alive: a session that is gone holds nothing.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Protocol

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

log = logging.getLogger("taskvpc.reconcile")

_LOCK_NAMESPACE = "taskvpc.reconcile."


class Leadership(Protocol):
    def leads(self, loop: str) -> bool:
        """Whether this process runs ``loop`` now (taking the lead if it is free)."""
        ...

    def release(self) -> None:
        """Give up every lead (on shutdown)."""
        ...


class SoleProcess:
    """The only control plane on the store: it leads every loop."""

    def leads(self, loop: str) -> bool:
        return True

    def release(self) -> None:
        pass


def lock_key(loop: str) -> int:
    """The loop's advisory lock: a signed 64-bit number derived from its name (stable across versions)."""
    digest = hashlib.sha256((_LOCK_NAMESPACE + loop).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLocks:
    """PostgreSQL session-level advisory locks, one per loop, held on one dedicated connection."""

    def __init__(self, url: str) -> None:
        # Not the request pool: this connection lives as long as the leadership does.
        self._engine = create_engine(url, poolclass=NullPool)
        self._connection: Connection | None = None
        self._held: set[str] = set()

    def leads(self, loop: str) -> bool:
        try:
            connection = self._connect()
            if loop in self._held:
                connection.exec_driver_sql("SELECT 1")  # the session (and so the lock) is still ours
                return True
            taken = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": lock_key(loop)})
            if taken.scalar():
                self._held.add(loop)
                log.info("reconcile: this process now leads loop %s", loop)
                return True
            return False
        except Exception:
            log.warning("reconcile: the leadership connection failed; leading nothing", exc_info=True)
            self._drop()
            return False

    def release(self) -> None:
        self._drop()
        self._engine.dispose()

    def _connect(self) -> Connection:
        if self._connection is None:
            self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    def _drop(self) -> None:
        """Close the session: PostgreSQL releases its locks with it."""
        connection, self._connection = self._connection, None
        self._held.clear()
        if connection is not None:
            try:
                connection.close()
            except Exception:
                connection.invalidate()
