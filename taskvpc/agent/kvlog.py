"""``key=value`` log fields, the agent's one log format (None values left out)."""

from __future__ import annotations

from typing import Any


def kv(**fields: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
