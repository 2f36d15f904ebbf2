"""A reconcile loop that deletes STS sessions past their expiry (they can no longer authenticate:
SigV4 answers ExpiredToken from the record until it is gone, then InvalidClientTokenId, as AWS does for
a token it no longer knows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.reconcile.runner import Key
from taskvpc.store import iam_repo
from taskvpc.store.rawsql import fetch_all

# Expired sessions stay answerable as expired for this long before they are deleted.
GRACE_SECONDS = 3600.0
BATCH = 500


@dataclass(frozen=True, slots=True)
class ExpiredSessionPurge:
    grace: float = GRACE_SECONDS
    period: float = 60.0
    name: str = "sts-session-purge"

    def pending(self, conn: Connection, now: float) -> Sequence[Key]:
        sql = "SELECT access_key_id FROM sts_sessions WHERE expires_at < ? ORDER BY expires_at LIMIT ?"
        return [Key("global", str(row[0])) for row in fetch_all(conn, sql, (now - self.grace, BATCH))]

    def reconcile(self, conn: Connection, ctx: RequestContext, key: Key) -> bool:
        return iam_repo.delete_expired_session(conn, key.id, ctx.now - self.grace)
