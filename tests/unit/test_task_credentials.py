"""The control plane's task credentials: vended once, kept, vended again before expiry, on the caller's
transaction and kept only once it commits; role capabilities withheld at registration while there is no
vendor; STS's vendor is the default."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from taskvpc.control import task_credentials as tc
from taskvpc.control.sts import vend_task_credentials
from taskvpc.store.db import Database, sqlite_url

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
ARN, ROLE = "arn:aws:ecs:us-east-1:1:task/c/abc", "arn:aws:iam::1:role/app"


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url(tmp_path))
    yield database
    database.dispose()


@pytest.fixture()
def calls() -> Iterator[list[Any]]:
    made: list[Any] = []

    def vend(ctx: Any, task_arn: str, role_arn: str, *, conn: Any) -> tuple[str, str, str, float]:
        made.append((task_arn, conn))
        return f"ASIA{len(made)}", "secret", "token", (T0 + timedelta(hours=1)).timestamp()

    tc.set_vendor(vend)
    yield made
    tc.use_default()


def _ctx(at: datetime) -> Any:
    return SimpleNamespace(now=at.timestamp())


def _current(db: Database, at: datetime) -> Any:
    with db.transaction() as conn:
        return tc.current(_ctx(at), ARN, ROLE, conn)


def test_kept_then_rotated_before_expiry(db: Database, calls: list[Any]) -> None:
    first = _current(db, T0)
    assert first is not None and first.access_key_id == "ASIA1" and first.expiration == "2026-12-05T13:00:00Z"
    assert _current(db, T0 + timedelta(minutes=29)) == first  # 31 minutes left: kept
    rotated = _current(db, T0 + timedelta(minutes=31))  # 29 left: vended again
    assert rotated is not None and rotated.access_key_id == "ASIA2" and rotated.role_arn == ROLE
    assert [arn for arn, _ in calls] == [ARN, ARN]


def test_vended_on_the_callers_connection_and_kept_only_once_committed(
    db: Database, calls: list[Any]
) -> None:
    with pytest.raises(RuntimeError), db.transaction() as conn:
        assert tc.current(_ctx(T0), ARN, ROLE, conn) is not None
        assert calls[0][1] is conn
        raise RuntimeError("the answer failed after the credentials section")
    again = _current(db, T0)  # the rolled-back session is not served: vended anew
    assert again is not None and again.access_key_id == "ASIA2"
    assert _current(db, T0) == again and len(calls) == 2


def test_a_vendor_that_refuses_costs_that_task_only_and_is_asked_again_a_minute_later(db: Database) -> None:
    asked: list[float] = []

    def refuse(ctx: Any, task_arn: str, role_arn: str, *, conn: Any) -> Any:
        asked.append(ctx.now)
        conn.exec_driver_sql("CREATE TABLE half_done (x INTEGER)")  # undone with the savepoint
        raise ValueError("no such role")

    tc.set_vendor(refuse)
    try:
        with db.transaction() as conn:
            assert tc.current(_ctx(T0), ARN, ROLE, conn) is None
            assert (
                conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").scalar()
                == 0
            )
        assert _current(db, T0 + timedelta(seconds=59)) is None and len(asked) == 1  # not on every answer
        assert _current(db, T0 + timedelta(seconds=61)) is None and len(asked) == 2
    finally:
        tc.use_default()


def test_no_vendor_no_credentials_and_no_role_capabilities(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(tc.VENDOR_ENV, "none")
    tc.use_default()
    try:
        assert _current(db, T0) is None
        attrs = [("com.amazonaws.ecs.capability.task-iam-role", None), ("ecs.capability.task-eni", None)]
        assert tc.withhold_attributes(attrs) == [("ecs.capability.task-eni", None)]
    finally:
        monkeypatch.delenv(tc.VENDOR_ENV)
        tc.use_default()


def test_sts_is_the_default_and_the_capabilities_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tc.VENDOR_ENV, raising=False)
    tc.use_default()
    assert tc.vendor() is vend_task_credentials
    attrs = [("com.amazonaws.ecs.capability.task-iam-role", None)]
    assert tc.withhold_attributes(attrs) == attrs


def test_expiration_forms() -> None:
    expected = datetime(2026, 12, 5, 13, 0, tzinfo=UTC)
    for value in (expected, "2026-12-05T13:00:00Z", expected.timestamp(), int(expected.timestamp())):
        assert tc._as_datetime(value) == expected
