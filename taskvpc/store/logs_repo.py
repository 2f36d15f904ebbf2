"""CloudWatch Logs rows: groups, streams, events and group tags (times in epoch milliseconds).

Deletes remove children explicitly (SQLite does not enforce ``ON DELETE CASCADE`` without a pragma).
Event reads walk the ``(stream, timestamp, seq)`` and ``(group, timestamp, seq)`` indexes from a position,
so a page costs its own size whatever the stream's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, insert, or_, select, tuple_, update

from taskvpc.store.rawsql import fetch_all
from taskvpc.store.schema import log_events, log_group_tags, log_groups, log_streams

Row = dict[str, Any]
Position = tuple[int, int]  # (timestamp, seq)


# ---- groups -----------------------------------------------------------------------------------------


def get_group(conn: Connection, region: str, name: str) -> Row | None:
    g = log_groups.c
    row = conn.execute(select(log_groups).where(g.region == region, g.name == name)).mappings().first()
    return dict(row) if row else None


def insert_group(conn: Connection, values: Row) -> int:
    key = conn.execute(insert(log_groups).values(**values)).inserted_primary_key
    assert key is not None
    return int(key[0])


def delete_group(conn: Connection, group_id: int) -> None:
    conn.execute(delete(log_events).where(log_events.c.group_id == group_id))
    conn.execute(delete(log_streams).where(log_streams.c.group_id == group_id))
    conn.execute(delete(log_group_tags).where(log_group_tags.c.group_id == group_id))
    conn.execute(delete(log_groups).where(log_groups.c.id == group_id))


def list_groups(
    conn: Connection, region: str, prefix: str | None, after: str | None, limit: int | None
) -> list[Row]:
    g = log_groups.c
    query = select(log_groups).where(g.region == region).order_by(g.name)
    if prefix:
        # substr, not LIKE (names may hold "_") nor a range (PostgreSQL collations do not order by bytes).
        query = query.where(func.substr(g.name, 1, len(prefix)) == prefix)
    if after is not None:
        query = query.where(g.name > after)
    if limit is not None:
        query = query.limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]


def set_retention(conn: Connection, group_id: int, days: int | None) -> None:
    conn.execute(update(log_groups).where(log_groups.c.id == group_id).values(retention_days=days))


def stored_bytes(conn: Connection, group_id: int) -> int:
    total = conn.execute(
        select(func.coalesce(func.sum(log_streams.c.stored_bytes), 0)).where(
            log_streams.c.group_id == group_id
        )
    ).scalar_one()
    return int(total)


# ---- tags ---------------------------------------------------------------------------------------------


def get_tags(conn: Connection, group_id: int) -> dict[str, str]:
    t = log_group_tags.c
    return {r.key: r.value for r in conn.execute(select(t.key, t.value).where(t.group_id == group_id))}


def put_tags(conn: Connection, group_id: int, tags: dict[str, str]) -> None:
    t = log_group_tags.c
    if not tags:
        return
    conn.execute(delete(log_group_tags).where(t.group_id == group_id, t.key.in_(list(tags))))
    conn.execute(
        insert(log_group_tags), [{"group_id": group_id, "key": k, "value": v} for k, v in tags.items()]
    )


def delete_tags(conn: Connection, group_id: int, keys: Sequence[str]) -> None:
    t = log_group_tags.c
    conn.execute(delete(log_group_tags).where(t.group_id == group_id, t.key.in_(list(keys))))


# ---- streams ------------------------------------------------------------------------------------------


def get_stream(conn: Connection, group_id: int, name: str) -> Row | None:
    s = log_streams.c
    row = conn.execute(select(log_streams).where(s.group_id == group_id, s.name == name)).mappings().first()
    return dict(row) if row else None


def insert_stream(conn: Connection, group_id: int, name: str, created_at: int) -> int:
    values = {"group_id": group_id, "name": name, "created_at": created_at, "stored_bytes": 0}
    key = conn.execute(insert(log_streams).values(**values)).inserted_primary_key
    assert key is not None
    return int(key[0])


def delete_stream(conn: Connection, stream_id: int) -> None:
    conn.execute(delete(log_events).where(log_events.c.stream_id == stream_id))
    conn.execute(delete(log_streams).where(log_streams.c.id == stream_id))


def list_streams(
    conn: Connection,
    group_id: int,
    *,
    prefix: str | None,
    by_last_event: bool,
    descending: bool,
    after: list[Any] | None,
    limit: int,
) -> list[Row]:
    """One page of a group's streams: by name, or by (last event time, id); ``after`` is the last key."""
    s = log_streams.c
    query = select(log_streams).where(s.group_id == group_id)
    if prefix:
        query = query.where(func.substr(s.name, 1, len(prefix)) == prefix)
    if by_last_event:
        sort_key: Any = tuple_(func.coalesce(s.last_event_at, -1), s.id)
        order = [func.coalesce(s.last_event_at, -1), s.id]
    else:
        sort_key = s.name
        order = [s.name]
    if after is not None:
        bound = tuple_(*after) if by_last_event else after[0]
        query = query.where(sort_key < bound if descending else sort_key > bound)
    query = query.order_by(*(c.desc() if descending else c for c in order)).limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]


def streams_by_id(conn: Connection, group_id: int) -> dict[int, str]:
    s = log_streams.c
    return {r.id: r.name for r in conn.execute(select(s.id, s.name).where(s.group_id == group_id))}


# ---- events -------------------------------------------------------------------------------------------


def put_events(
    conn: Connection, group_id: int, stream_id: int, events: Sequence[tuple[int, str]], ingestion: int
) -> None:
    if not events:
        return
    conn.execute(
        insert(log_events),
        [
            {
                "group_id": group_id,
                "stream_id": stream_id,
                "timestamp": ts,
                "ingestion_time": ingestion,
                "message": m,
            }
            for ts, m in events
        ],
    )
    size = sum(len(m.encode()) for _, m in events)
    first, last = min(ts for ts, _ in events), max(ts for ts, _ in events)
    s = log_streams.c
    conn.execute(
        update(log_streams)
        .where(s.id == stream_id)
        .values(
            first_event_at=case(
                (s.first_event_at.is_(None) | (s.first_event_at > first), first), else_=s.first_event_at
            ),
            last_event_at=case(
                (s.last_event_at.is_(None) | (s.last_event_at < last), last), else_=s.last_event_at
            ),
            last_ingestion_at=ingestion,
            stored_bytes=s.stored_bytes + size,
        )
    )


def read_stream(
    conn: Connection,
    stream_id: int,
    *,
    start: int | None,
    end: int | None,
    after: Position | None,
    before: Position | None,
    limit: int,
    newest_first: bool,
) -> list[Row]:
    """Events of one stream in [start, end), strictly after ``after`` / before ``before``, in position
    order (newest first when asked, for pages read backwards)."""
    e = log_events.c
    position = tuple_(e.timestamp, e.seq)
    query = select(e.seq, e.timestamp, e.ingestion_time, e.message).where(e.stream_id == stream_id)
    if start is not None:
        query = query.where(e.timestamp >= start)
    if end is not None:
        query = query.where(e.timestamp < end)
    if after is not None:
        query = query.where(position > tuple_(*after))
    if before is not None:
        query = query.where(position < tuple_(*before))
    if newest_first:
        query = query.order_by(e.timestamp.desc(), e.seq.desc())
    else:
        query = query.order_by(e.timestamp, e.seq)
    return [dict(r) for r in conn.execute(query.limit(limit)).mappings()]


def scan_group(
    conn: Connection,
    group_id: int,
    stream_ids: Sequence[int] | None,
    *,
    start: int | None,
    end: int | None,
    after: Position | None,
    limit: int,
) -> list[Row]:
    """Events of a group (or some of its streams) in position order, after ``after``."""
    e = log_events.c
    query = select(e.seq, e.stream_id, e.timestamp, e.ingestion_time, e.message).where(e.group_id == group_id)
    if stream_ids is not None:
        query = query.where(e.stream_id.in_(list(stream_ids)))
    if start is not None:
        query = query.where(e.timestamp >= start)
    if end is not None:
        query = query.where(e.timestamp < end)
    if after is not None:
        query = query.where(or_(e.timestamp > after[0], and_(e.timestamp == after[0], e.seq > after[1])))
    query = query.order_by(e.timestamp, e.seq).limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]


# ---- retention ----------------------------------------------------------------------------------------

DAY_MS = 86_400_000


def groups_past_retention(conn: Connection, now_ms: int, limit: int) -> list[tuple[str, str]]:
    """(region, group id) of groups holding an event older than their retention."""
    sql = (
        "SELECT g.region, g.id FROM log_groups g WHERE g.retention_days IS NOT NULL AND EXISTS ("
        "SELECT 1 FROM log_events e WHERE e.group_id = g.id AND e.timestamp < ? - g.retention_days * ?"
        ") ORDER BY g.id LIMIT ?"
    )
    return [(str(r), str(i)) for r, i in fetch_all(conn, sql, (now_ms, DAY_MS, limit))]


def delete_expired(conn: Connection, group_id: int, now_ms: int) -> int:
    """Delete the group's events older than its retention (re-read here); how many went."""
    days = conn.execute(select(log_groups.c.retention_days).where(log_groups.c.id == group_id)).scalar()
    if days is None:
        return 0
    e = log_events.c
    horizon = now_ms - int(days) * DAY_MS
    result = conn.execute(delete(log_events).where(e.group_id == group_id, e.timestamp < horizon))
    return int(result.rowcount or 0)
