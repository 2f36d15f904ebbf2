"""The control plane's task credentials: vended once, kept, vended again before expiry; role capabilities
withheld at registration while there is no vendor."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from taskvpc.control import task_credentials as tc

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
ARN, ROLE = "arn:aws:ecs:us-east-1:1:task/c/abc", "arn:aws:iam::1:role/app"


@pytest.fixture()
def calls() -> Iterator[list[str]]:
    made: list[str] = []

    def vend(ctx: Any, task_arn: str, role_arn: str) -> tuple[str, str, str, datetime]:
        made.append(task_arn)
        return f"ASIA{len(made)}", "secret", "token", T0 + timedelta(hours=1)

    tc.set_vendor(vend)
    yield made
    tc.set_vendor(None)


def _ctx(at: datetime) -> Any:
    return SimpleNamespace(now=at.timestamp())


def test_kept_then_rotated_before_expiry(calls: list[str]) -> None:
    first = tc.current(_ctx(T0), ARN, ROLE)
    assert first is not None and first.access_key_id == "ASIA1" and first.expiration == "2026-12-05T13:00:00Z"
    assert tc.current(_ctx(T0 + timedelta(minutes=29)), ARN, ROLE) == first  # 31 minutes left: kept
    rotated = tc.current(_ctx(T0 + timedelta(minutes=31)), ARN, ROLE)  # 29 left: vended again
    assert rotated is not None and rotated.access_key_id == "ASIA2" and rotated.role_arn == ROLE
    assert calls == [ARN, ARN]


def test_no_vendor_no_credentials_and_no_role_capabilities() -> None:
    tc.set_vendor(None)
    assert tc.current(_ctx(T0), ARN, ROLE) is None
    attrs = [("com.amazonaws.ecs.capability.task-iam-role", None), ("ecs.capability.task-eni", None)]
    assert tc.withhold_attributes(attrs) == [("ecs.capability.task-eni", None)]


def test_with_a_vendor_the_capabilities_stay(calls: list[str]) -> None:
    attrs = [("com.amazonaws.ecs.capability.task-iam-role", None)]
    assert tc.withhold_attributes(attrs) == attrs
