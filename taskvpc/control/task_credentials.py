"""Task role credentials for the agents: vended per task, kept, and vended again before they expire.

The vendor is IAM/STS's business: a :class:`TaskCredentialVendor` issues an assumed-role session
``assumed-role/ROLE/<task id>`` for a task. This module only decides *when* (none yet, or less than
:data:`REFRESH_BEFORE` left: botocore refreshes 15 minutes before ``Expiration``, so the agent must have
newer ones well before) and hands the current ones to the answer's ``credentials`` section
(``taskvpc.control.agent``). The agent serves them under the task's unchanging credentials URI.

The vendor is STS's ``vend_task_credentials`` unless ``set_vendor`` or
``TASKVPC_TASK_CREDENTIAL_VENDOR=module:function`` names another (``none``: no vendor). It is called on the
desired-state answer's own connection, inside a savepoint: the answer holds the write transaction (with
SQLite a second one would wait for it until the busy timeout), and a session the answer did not commit
must never be served. So what a vendor issued is kept here only once that transaction commits (the
engine's commit event), and a vendor's failure (a role that is gone, a trust policy that does not let
``ecs-tasks.amazonaws.com`` in) costs that task its credentials, never the whole answer.

With no vendor, no credentials are sent and the container instances' ``task-iam-role`` capability is
withheld at registration (:func:`withhold_attributes`), so a task with a role is not placed on an agent
that could not give it credentials.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, Engine, event

from taskvpc.agentapi.credentials import TaskCredentials
from taskvpc.control.context import RequestContext

log = logging.getLogger(__name__)

REFRESH_BEFORE = timedelta(minutes=30)
RETRY_REFUSED = 60.0  # seconds before a refused task is asked for again (not on every answer)
VENDOR_ENV = "TASKVPC_TASK_CREDENTIAL_VENDOR"
ROLE_CAPABILITIES = ("com.amazonaws.ecs.capability.task-iam-role",)
_PENDING = "taskvpc_task_credentials_pending"  # conn.info key: vended in a transaction not yet committed


class TaskCredentialVendor(Protocol):
    def __call__(
        self, ctx: RequestContext, task_arn: str, role_arn: str, *, conn: Connection
    ) -> tuple[str, str, str, datetime | str | float]:
        """(AccessKeyId, SecretAccessKey, Token, Expiration) of a session of ``role_arn`` for the task,
        written with ``conn`` (the caller's open transaction). Expiration: a datetime, RFC 3339 text or
        epoch seconds."""
        ...


@dataclass(frozen=True, slots=True)
class _Held:
    creds: TaskCredentials
    expires: datetime


_vendor: TaskCredentialVendor | None = None
_vendor_loaded = False
_held: dict[tuple[str, str], _Held] = {}
_refused: dict[tuple[str, str], float] = {}  # (task, role) -> when to try the vendor again
_lock = threading.Lock()


def set_vendor(vendor: TaskCredentialVendor | None) -> None:
    """Use ``vendor`` (None: none at all) instead of the default."""
    global _vendor, _vendor_loaded
    with _lock:
        _vendor, _vendor_loaded = vendor, True
        _held.clear()
        _refused.clear()


def use_default() -> None:
    """Back to the default: ``$TASKVPC_TASK_CREDENTIAL_VENDOR`` if set, else STS (chosen on next use)."""
    global _vendor, _vendor_loaded
    with _lock:
        _vendor, _vendor_loaded = None, False
        _held.clear()
        _refused.clear()


def _default() -> TaskCredentialVendor | None:
    spec = os.environ.get(VENDOR_ENV, "").strip()
    if spec.lower() == "none":
        return None
    if spec:
        module, _, name = spec.partition(":")
        found: TaskCredentialVendor = getattr(importlib.import_module(module), name)
        return found
    from taskvpc.control.sts import vend_task_credentials  # IAM/STS sits beside us, imported on use

    return vend_task_credentials


def vendor() -> TaskCredentialVendor | None:
    """The vendor set, else the default (loaded once)."""
    global _vendor, _vendor_loaded
    with _lock:
        if not _vendor_loaded:
            _vendor, _vendor_loaded = _default(), True
        return _vendor


def withhold_attributes(attributes: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """A registration's attributes without the role capabilities when no vendor could serve them."""
    if vendor() is not None:
        return attributes
    return [(k, v) for k, v in attributes if k not in ROLE_CAPABILITIES]


def _as_datetime(value: datetime | str | float) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def forget_expired(now: float) -> None:
    """Drop credentials past their expiry (a stopped task's go this way): once per answer, not per task."""
    moment = datetime.fromtimestamp(now, UTC)
    with _lock:
        for stale in [k for k, h in _held.items() if h.expires <= moment]:
            del _held[stale]
        for again in [k for k, at in _refused.items() if at <= now]:
            del _refused[again]


@event.listens_for(Engine, "commit")
def _keep_committed(conn: Connection) -> None:
    pending = conn.info.pop(_PENDING, None)
    if pending:
        with _lock:
            _held.update(pending)


@event.listens_for(Engine, "rollback")
def _drop_uncommitted(conn: Connection) -> None:
    conn.info.pop(_PENDING, None)


def current(ctx: RequestContext, task_arn: str, role_arn: str, conn: Connection) -> TaskCredentials | None:
    """The task's credentials, vended again (with ``conn``, the caller's open transaction) when they are
    near expiry; None without a vendor or when the vendor refused."""
    vend = vendor()
    if vend is None:
        return None
    now = datetime.fromtimestamp(ctx.now, UTC)
    key = (task_arn, role_arn)
    with _lock:
        held, refused_until = _held.get(key), _refused.get(key, 0.0)
    if held is not None and held.expires - now > REFRESH_BEFORE:
        return held.creds
    kept = held.creds if held is not None and held.expires > now else None
    if refused_until > ctx.now:
        return kept
    try:
        with conn.begin_nested():
            access_key, secret, token, expiration = vend(ctx, task_arn, role_arn, conn=conn)
    except Exception as error:  # this task goes without (its endpoint says so), the answer goes on
        log.warning("task credentials not vended task_arn=%s role_arn=%s: %s", task_arn, role_arn, error)
        with _lock:
            _refused[key] = ctx.now + RETRY_REFUSED
        return kept
    expires = _as_datetime(expiration)
    creds = TaskCredentials(
        task_arn=task_arn,
        role_arn=role_arn,
        access_key_id=access_key,
        secret_access_key=secret,
        token=token,
        expiration=expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    conn.info.setdefault(_PENDING, {})[key] = _Held(creds, expires)
    log.info("task credentials vended task_arn=%s role_arn=%s", task_arn, role_arn)
    return creds
