"""Lenient readers for values arriving over the agent API.

A member of the wrong type reads as absent and a malformed list entry is skipped, so odd input from the
other end never stops the agent (the control plane validated it already). Only what could do harm if
misread (an id that names a directory) is refused, by the callers, with ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def mappings(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in as_list(value) if isinstance(v, Mapping)]


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def named(value: Any, key: str) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get(key), str) and value[key] != ""


def strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in as_list(value) if isinstance(v, str | int | float))


def string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def text(value: Any, default: str = "") -> str:
    """A scalar as text; anything else (an object, a list, null) reads as ``default``."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return default


def flag(value: Any, default: bool = False) -> bool:
    return value if isinstance(value, bool) else default


def integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            return None
    return None


def positive(value: Any) -> int | None:
    number = integer(value)
    return number if number is not None and number > 0 else None


def units(value: Any, parse: Callable[[str], int | None]) -> int | None:
    """A task-level ``cpu``/``memory``: an integer, or a string such as ``"1 vCPU"``/``"0.5 GB"``."""
    if isinstance(value, str):
        parsed = parse(value)
        return parsed if parsed is not None and parsed > 0 else None
    return positive(value)


def seconds(value: Any) -> float | None:
    """A duration: finite and not negative, else absent (a NaN stop timeout would never expire)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        return ()
    return tuple((str(k), str(v)) for k, v in value.items())
