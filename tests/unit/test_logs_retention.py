"""The log-retention loop on a real (SQLite) store with a clock moved by hand."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskvpc.control.context import RequestContext
from taskvpc.control.identity import Principal
from taskvpc.control.logs import events, groups, streams
from taskvpc.control.reconcile import build_runner
from taskvpc.store.db import Database, sqlite_url

ACCOUNT = "123456789012"
REGION = "us-east-1"
T0 = 1_800_000_000.0
DAY = 86_400.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url(tmp_path))
    database.migrate()
    yield database
    database.dispose()


def test_expired_events_are_deleted_and_the_rest_kept(db: Database) -> None:
    clock = Clock()
    ids = itertools.count(1)

    def ctx(region: str = REGION, now: float | None = None) -> RequestContext:
        return RequestContext(
            region=region,
            account_id=ACCOUNT,
            principal=Principal.root(ACCOUNT),
            now=clock() if now is None else now,
            request_id="test",
            db=db,
            new_id=lambda: str(uuid.UUID(int=next(ids))),
        )

    def messages(group: str) -> list[str]:
        page = events.get_log_events(
            ctx(), {"logGroupName": group, "logStreamName": "s", "startFromHead": True}
        )
        return [e["message"] for e in page["events"]]

    for group in ("kept-forever", "one-day"):
        groups.create_log_group(ctx(), {"logGroupName": group})
        streams.create_log_stream(ctx(), {"logGroupName": group, "logStreamName": "s"})
        batch: list[dict[str, Any]] = [
            {"timestamp": int((T0 - 3600) * 1000), "message": "old"},
            {"timestamp": int(T0 * 1000), "message": "new"},
        ]
        events.put_log_events(ctx(), {"logGroupName": group, "logStreamName": "s", "logEvents": batch})
    groups.put_retention_policy(ctx(), {"logGroupName": "one-day", "retentionInDays": 1})
    runner = build_runner(db, ctx, clock=clock)

    clock.now = T0 + DAY - 3601  # "old" is one second short of a day old
    runner.run_due()
    assert messages("one-day") == ["old", "new"]

    clock.now = T0 + DAY - 3599 + 120  # past the loop's next pass
    runner.run_due()
    assert messages("one-day") == ["new"]
    assert messages("kept-forever") == ["old", "new"]

    groups.delete_retention_policy(ctx(), {"logGroupName": "one-day"})
    clock.now = T0 + 30 * DAY
    runner.run_due()
    assert messages("one-day") == ["new"]
