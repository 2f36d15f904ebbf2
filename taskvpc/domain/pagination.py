"""Opaque ``nextToken`` values: the key of the last item returned, so pages stay stable under writes."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from taskvpc.domain.errors import ClientError


def encode_token(position: Any) -> str:
    raw = json.dumps({"v": 1, "after": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str | None, error: ClientError) -> Any:
    """The position a token stands for; ``error`` (the service's own) when it is not one of ours."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise error from None
    if not isinstance(document, dict) or document.get("v") != 1 or "after" not in document:
        raise error
    return document["after"]


def page_size(max_results: int | None, default: int, limit: int) -> int:
    if max_results is None:
        return default
    return max(1, min(max_results, limit))
