"""A stand-in task credential vendor (``TASKVPC_TASK_CREDENTIAL_VENDOR=tests.support.task_vendor:vend``):
session-shaped values with an hour to live that no SigV4 check accepts, for tests of the plumbing alone
(the default vendor is STS's ``vend_task_credentials``)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any


def vend(ctx: Any, task_arn: str, role_arn: str, *, conn: Any = None) -> tuple[str, str, str, datetime]:
    key = "ASIA" + secrets.token_hex(8).upper()
    return (
        key,
        secrets.token_urlsafe(30),
        "token-" + task_arn.rsplit("/", 1)[-1],
        datetime.now(UTC) + timedelta(hours=1),
    )
