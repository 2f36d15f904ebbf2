"""The awslogs driver's delivery cursors: the next event number each task container may send."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from taskvpc.store.schema import awslogs_cursors


def next_seq(conn: Connection, task_arn: str, container: str, *, lock: bool = False) -> int | None:
    c = awslogs_cursors.c
    query = select(c.next_seq).where(c.task_arn == task_arn, c.container == container)
    if lock:
        query = query.with_for_update()  # PostgreSQL: one delivery per container at a time
    value = conn.execute(query).scalar()
    return None if value is None else int(value)


def set_next_seq(conn: Connection, task_arn: str, container: str, value: int, *, exists: bool) -> None:
    c = awslogs_cursors.c
    if exists:
        conn.execute(
            update(awslogs_cursors)
            .where(c.task_arn == task_arn, c.container == container)
            .values(next_seq=value)
        )
    else:
        conn.execute(insert(awslogs_cursors).values(task_arn=task_arn, container=container, next_seq=value))
