"""Task role credentials for the agents: vended per task, kept, and vended again before they expire.

The vendor is IAM/STS's business: a :class:`TaskCredentialVendor` issues an assumed-role session
``assumed-role/ROLE/<task id>`` for a task. This module only decides *when* (none yet, or less than
:data:`REFRESH_BEFORE` left: botocore refreshes 15 minutes before ``Expiration``, so the agent must have
newer ones well before) and hands the current ones to the answer's ``credentials`` section
(``taskvpc.control.agent``). The agent serves them under the task's unchanging credentials URI.

Plugging in the vendor: ``set_vendor(vend_task_credentials)`` where the control plane is assembled (the
IAM/STS branch's ``vend_task_credentials(ctx, task_arn, role_arn)`` has this protocol's signature), or, for
a process such as ``taskvpc up``, ``TASKVPC_TASK_CREDENTIAL_VENDOR=module:function``. With no vendor, no
credentials are sent and the container instances' ``task-iam-role`` capability is withheld at
registration (:func:`withhold_attributes`), so a task with a role is not placed on an agent that could not
give it credentials.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from taskvpc.agentapi.credentials import TaskCredentials
from taskvpc.control.context import RequestContext

log = logging.getLogger(__name__)

REFRESH_BEFORE = timedelta(minutes=30)
VENDOR_ENV = "TASKVPC_TASK_CREDENTIAL_VENDOR"
ROLE_CAPABILITIES = ("com.amazonaws.ecs.capability.task-iam-role", "ecs.capability.execution-role-ecr-pull")


class TaskCredentialVendor(Protocol):
    def __call__(
        self, ctx: RequestContext, task_arn: str, role_arn: str
    ) -> tuple[str, str, str, datetime | str]:
        """(AccessKeyId, SecretAccessKey, Token, Expiration) of a session of ``role_arn`` for the task."""
        ...


@dataclass(frozen=True, slots=True)
class _Held:
    creds: TaskCredentials
    expires: datetime


_vendor: TaskCredentialVendor | None = None
_vendor_loaded = False
_held: dict[tuple[str, str], _Held] = {}
_lock = threading.Lock()


def set_vendor(vendor: TaskCredentialVendor | None) -> None:
    global _vendor, _vendor_loaded
    with _lock:
        _vendor, _vendor_loaded = vendor, True
        _held.clear()


def vendor() -> TaskCredentialVendor | None:
    """The vendor set, else the one ``$TASKVPC_TASK_CREDENTIAL_VENDOR`` names (loaded once)."""
    global _vendor, _vendor_loaded
    with _lock:
        if not _vendor_loaded:
            _vendor_loaded = True
            spec = os.environ.get(VENDOR_ENV)
            if spec:
                module, _, name = spec.partition(":")
                _vendor = getattr(importlib.import_module(module), name)
        return _vendor


def withhold_attributes(attributes: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """A registration's attributes without the role capabilities when no vendor could serve them."""
    if vendor() is not None:
        return attributes
    return [(k, v) for k, v in attributes if k not in ROLE_CAPABILITIES]


def _as_datetime(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def forget_expired(now: float) -> None:
    """Drop credentials past their expiry (a stopped task's go this way): once per answer, not per task."""
    moment = datetime.fromtimestamp(now, UTC)
    with _lock:
        for stale in [k for k, h in _held.items() if h.expires <= moment]:
            del _held[stale]


def current(ctx: RequestContext, task_arn: str, role_arn: str) -> TaskCredentials | None:
    """The task's credentials, vended again when they are near expiry; None without a vendor."""
    vend = vendor()
    if vend is None:
        return None
    now = datetime.fromtimestamp(ctx.now, UTC)
    key = (task_arn, role_arn)
    with _lock:
        held = _held.get(key)
    if held is not None and held.expires - now > REFRESH_BEFORE:
        return held.creds
    access_key, secret, token, expiration = vend(ctx, task_arn, role_arn)
    expires = _as_datetime(expiration)
    creds = TaskCredentials(
        task_arn=task_arn,
        role_arn=role_arn,
        access_key_id=access_key,
        secret_access_key=secret,
        token=token,
        expiration=expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    with _lock:
        _held[key] = _Held(creds, expires)
    log.info("task credentials vended task_arn=%s role_arn=%s", task_arn, role_arn)
    return creds
