"""Reads and writes of IAM entities, their policy documents, access keys and STS sessions.

Plain functions over a Connection; IAM's rules live in taskvpc.control.iam. Every write that can change
what a principal may do bumps the IAM generation (``bump``), which caches of effective policies compare.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, delete, event, insert, update
from sqlalchemy.exc import IntegrityError

from taskvpc.store.rawsql import fetch_all, fetch_one
from taskvpc.store.schema import (
    iam_access_keys,
    iam_attachments,
    iam_documents,
    iam_entities,
    iam_generation,
    sts_sessions,
)


def _loads(text: str) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(text)
    return value


# ---- generation -----------------------------------------------------------------------------------


def generation(conn: Connection) -> int | None:
    row = fetch_one(conn, "SELECT generation FROM iam_generation WHERE id = 1", ())
    return int(row[0]) if row else None


# IAM changes committed by this process: a cache here sees its own process's changes at once, without a
# store read; the stored generation tells it about other processes' (see control/iam/credentials.py).
_committed = itertools.count(1)
_local_changes = 0
_CHANGED = "taskvpc_iam_changed"


def local_changes() -> int:
    return _local_changes


@event.listens_for(Engine, "commit")
def _on_commit(conn: Connection) -> None:
    global _local_changes
    if conn.info.pop(_CHANGED, False):
        _local_changes = next(_committed)


@event.listens_for(Engine, "rollback")
def _on_rollback(conn: Connection) -> None:
    conn.info.pop(_CHANGED, None)


def bump(conn: Connection) -> None:
    conn.info[_CHANGED] = True
    updated = conn.execute(
        update(iam_generation)
        .where(iam_generation.c.id == 1)
        .values(generation=iam_generation.c.generation + 1)
    )
    if updated.rowcount == 0:
        # A random start: after a wipe the counter restarts, and must not meet a value a cache saw before.
        conn.execute(insert(iam_generation).values(id=1, generation=secrets.randbits(52)))


# ---- users, roles, managed policies ---------------------------------------------------------------


def get_entity(conn: Connection, kind: str, name: str) -> dict[str, Any] | None:
    row = fetch_one(conn, "SELECT body FROM iam_entities WHERE kind = ? AND name = ?", (kind, name))
    return _loads(row[0]) if row else None


def get_entity_by_arn(conn: Connection, arn: str) -> tuple[str, dict[str, Any]] | None:
    row = fetch_one(conn, "SELECT kind, body FROM iam_entities WHERE arn = ?", (arn,))
    return (row[0], _loads(row[1])) if row else None


def insert_entity(conn: Connection, kind: str, name: str, arn: str, body: dict[str, Any], now: float) -> bool:
    """False when an entity of that kind and name (or that ARN) exists."""
    try:
        with conn.begin_nested():
            conn.execute(
                insert(iam_entities).values(
                    kind=kind, name=name, arn=arn, created_at=now, body=orjson.dumps(body).decode()
                )
            )
    except IntegrityError:
        return False
    bump(conn)
    return True


def update_entity(conn: Connection, kind: str, name: str, body: dict[str, Any]) -> None:
    conn.execute(
        update(iam_entities)
        .where(iam_entities.c.kind == kind, iam_entities.c.name == name)
        .values(body=orjson.dumps(body).decode())
    )
    bump(conn)


def delete_entity(conn: Connection, kind: str, name: str) -> None:
    conn.execute(delete(iam_entities).where(iam_entities.c.kind == kind, iam_entities.c.name == name))
    bump(conn)


def list_entities(conn: Connection, kind: str) -> list[dict[str, Any]]:
    rows = fetch_all(conn, "SELECT body FROM iam_entities WHERE kind = ? ORDER BY name", (kind,))
    return [_loads(row[0]) for row in rows]


# ---- documents: inline policies (user, role) and managed policy versions (policy) ------------------


def get_document(conn: Connection, owner_kind: str, owner: str, name: str) -> str | None:
    row = fetch_one(
        conn,
        "SELECT document FROM iam_documents WHERE owner_kind = ? AND owner = ? AND name = ?",
        (owner_kind, owner, name),
    )
    return str(row[0]) if row else None


def put_document(conn: Connection, owner_kind: str, owner: str, name: str, document: str, now: float) -> None:
    where = (
        iam_documents.c.owner_kind == owner_kind,
        iam_documents.c.owner == owner,
        iam_documents.c.name == name,
    )
    updated = conn.execute(update(iam_documents).where(*where).values(document=document))
    if updated.rowcount == 0:
        conn.execute(
            insert(iam_documents).values(
                owner_kind=owner_kind, owner=owner, name=name, document=document, created_at=now
            )
        )
    bump(conn)


def delete_document(conn: Connection, owner_kind: str, owner: str, name: str) -> bool:
    deleted = conn.execute(
        delete(iam_documents).where(
            iam_documents.c.owner_kind == owner_kind,
            iam_documents.c.owner == owner,
            iam_documents.c.name == name,
        )
    )
    bump(conn)
    return bool(deleted.rowcount)


def list_documents(conn: Connection, owner_kind: str, owner: str) -> list[tuple[str, str, float]]:
    """(name, document, created_at) of an owner's documents, by name."""
    rows = fetch_all(
        conn,
        "SELECT name, document, created_at FROM iam_documents WHERE owner_kind = ? AND owner = ? ORDER BY name",
        (owner_kind, owner),
    )
    return [(str(n), str(d), float(c)) for n, d, c in rows]


def delete_documents(conn: Connection, owner_kind: str, owner: str) -> None:
    conn.execute(
        delete(iam_documents).where(iam_documents.c.owner_kind == owner_kind, iam_documents.c.owner == owner)
    )
    bump(conn)


# ---- attachments -----------------------------------------------------------------------------------


def attach(conn: Connection, owner_kind: str, owner: str, policy_arn: str) -> None:
    try:
        with conn.begin_nested():
            conn.execute(
                insert(iam_attachments).values(owner_kind=owner_kind, owner=owner, policy_arn=policy_arn)
            )
    except IntegrityError:
        return  # attaching twice is not an error on AWS
    bump(conn)


def detach(conn: Connection, owner_kind: str, owner: str, policy_arn: str) -> bool:
    deleted = conn.execute(
        delete(iam_attachments).where(
            iam_attachments.c.owner_kind == owner_kind,
            iam_attachments.c.owner == owner,
            iam_attachments.c.policy_arn == policy_arn,
        )
    )
    bump(conn)
    return bool(deleted.rowcount)


def attached(conn: Connection, owner_kind: str, owner: str) -> list[str]:
    rows = fetch_all(
        conn,
        "SELECT policy_arn FROM iam_attachments WHERE owner_kind = ? AND owner = ? ORDER BY policy_arn",
        (owner_kind, owner),
    )
    return [str(row[0]) for row in rows]


def attachment_count(conn: Connection, policy_arn: str) -> int:
    row = fetch_one(conn, "SELECT COUNT(*) FROM iam_attachments WHERE policy_arn = ?", (policy_arn,))
    return int(row[0]) if row else 0


# ---- access keys -----------------------------------------------------------------------------------


def put_access_key(conn: Connection, key_id: str, user: str, secret: str, now: float) -> None:
    conn.execute(
        insert(iam_access_keys).values(
            access_key_id=key_id, user_name=user, secret=secret, status="Active", created_at=now
        )
    )
    bump(conn)


def access_key(conn: Connection, key_id: str) -> tuple[str, str, str] | None:
    """(user name, secret, status) of an access key."""
    row = fetch_one(
        conn, "SELECT user_name, secret, status FROM iam_access_keys WHERE access_key_id = ?", (key_id,)
    )
    return (str(row[0]), str(row[1]), str(row[2])) if row else None


def access_keys(conn: Connection, user: str) -> list[tuple[str, str, float]]:
    """(key id, status, created_at) of a user's keys."""
    rows = fetch_all(
        conn,
        "SELECT access_key_id, status, created_at FROM iam_access_keys WHERE user_name = ? ORDER BY created_at",
        (user,),
    )
    return [(str(k), str(s), float(c)) for k, s, c in rows]


def set_access_key_status(conn: Connection, key_id: str, status: str) -> None:
    conn.execute(
        update(iam_access_keys).where(iam_access_keys.c.access_key_id == key_id).values(status=status)
    )
    bump(conn)


def delete_access_key(conn: Connection, key_id: str) -> None:
    conn.execute(delete(iam_access_keys).where(iam_access_keys.c.access_key_id == key_id))
    bump(conn)


# ---- STS sessions ----------------------------------------------------------------------------------


def put_session(
    conn: Connection, key_id: str, secret: str, token: str, expires_at: float, body: dict[str, Any]
) -> None:
    conn.execute(
        insert(sts_sessions).values(
            access_key_id=key_id,
            secret=secret,
            session_token=token,
            expires_at=expires_at,
            body=orjson.dumps(body).decode(),
        )
    )


def session(conn: Connection, key_id: str) -> tuple[str, str, float, dict[str, Any]] | None:
    """(secret, token, expires_at, body) of an STS session."""
    row = fetch_one(
        conn,
        "SELECT secret, session_token, expires_at, body FROM sts_sessions WHERE access_key_id = ?",
        (key_id,),
    )
    return (str(row[0]), str(row[1]), float(row[2]), _loads(row[3])) if row else None


def delete_expired_session(conn: Connection, key_id: str, expired_before: float) -> bool:
    deleted = conn.execute(
        delete(sts_sessions).where(
            sts_sessions.c.access_key_id == key_id, sts_sessions.c.expires_at < expired_before
        )
    )
    return bool(deleted.rowcount)
