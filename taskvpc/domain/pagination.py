"""Opaque, tamper-proof ``nextToken`` values bound to the listing that issued them.

A token carries the position after which the next page starts (the key of the last item returned, so
pages stay stable under writes) and a MAC (HMAC-SHA256 with the installation's key) over that position
*and* the listing it belongs to: the operation, the region and account, and the request's filters. So a
token cannot be forged, edited, or replayed on another operation, region or set of filters: each of those
is the service's own invalid-token error, never a position a handler did not write.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from taskvpc.domain.errors import ClientError

_VERSION = 2
_MAC_BYTES = 16
# Request members that move through a listing rather than define it.
PAGING_MEMBERS = frozenset({"nextToken", "maxResults", "NextToken", "MaxResults", "DryRun"})


def derive_key(secret: str) -> bytes:
    """A token key for an installation that was given none: derived from its secret access key, so
    every server with the same credentials accepts the others' tokens and restarts keep them valid."""
    return hmac.new(secret.encode(), b"taskvpc page tokens v2", hashlib.sha256).digest()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True, slots=True)
class Pager:
    """The tokens of one listing: ``Pager.of(key, "ecs:ListTasks", region, account, params)``."""

    key: bytes
    scope: bytes  # what a token is bound to besides its position

    @classmethod
    def of(
        cls,
        key: bytes,
        operation: str,
        region: str,
        account_id: str,
        params: Mapping[str, Any],
        ignore: Collection[str] = PAGING_MEMBERS,
    ) -> Pager:
        filters = {name: value for name, value in params.items() if name not in ignore}
        return cls(key, _canonical([operation, region, account_id, filters]))

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self.key, self.scope + b"\n" + payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, position: Any) -> str:
        payload = _canonical([_VERSION, position])
        return base64.urlsafe_b64encode(self._mac(payload) + payload).decode().rstrip("=")

    def decode(
        self, token: str | None, error: ClientError, valid: Callable[[Any], bool] = lambda _: True
    ) -> Any:
        """The position ``token`` stands for (None without a token); ``error`` (the service's own) when
        it is not one this listing issued, or its position is not what ``valid`` expects."""
        if not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise error from None
        mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise error
        try:
            document = json.loads(payload)
        except ValueError:  # pragma: no cover - a MAC'd payload is always ours
            raise error from None
        if not (isinstance(document, list) and len(document) == 2 and document[0] == _VERSION):
            raise error
        if not valid(document[1]):
            raise error
        return document[1]


def is_str(value: Any) -> bool:
    return isinstance(value, str)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def is_pair(first: Callable[[Any], bool], second: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A predicate for a two-item position such as ``[family, revision]``."""
    return lambda value: isinstance(value, list) and len(value) == 2 and first(value[0]) and second(value[1])


def page_size(max_results: int | None, default: int, limit: int) -> int:
    if max_results is None:
        return default
    return max(1, min(max_results, limit))
