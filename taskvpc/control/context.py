"""What every use case is handed: who asks, where, when, and the store to act on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from taskvpc.control.identity import Principal
from taskvpc.store.db import Database


@dataclass(frozen=True, slots=True)
class RequestContext:
    region: str
    account_id: str
    principal: Principal  # resolved from the request's access key by SigV4 verification
    now: float  # epoch seconds, taken once per request so one call sees one time
    request_id: str
    db: Database
    new_id: Callable[[], str]  # a fresh UUID string; injected so tests can fix it
    # Container instances whose desired state this request changed: the API layer wakes their agents'
    # long polls once the use case has returned (and so committed).
    notify: set[str] = field(default_factory=set)
    # The key that MACs pagination tokens (taskvpc.domain.pagination); the API layer always passes one.
    page_key: bytes = b""

    @property
    def principal_arn(self) -> str:
        return self.principal.arn
