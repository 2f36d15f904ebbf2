"""Task-level ``cpu`` and ``memory`` strings, as RegisterTaskDefinition accepts and stores them.

The request may say ``"1024"``, ``"1 vCPU"``, ``"0.5 vcpu"`` (CPU units: 1 vCPU = 1024) or ``"2048"``,
``"2 GB"``, ``"2GB"`` (MiB: 1 GB = 1024 MiB). ECS converts them to integers when it registers the
definition and returns them as strings (the ``TaskDefinition`` shape keeps them as strings)
[API ``RegisterTaskDefinitionRequest.cpu``/``memory``; DG ``task-cpu-memory-error.md``].

``MiB``/``MB`` suffixes and ``GiB`` are accepted too (unconfirmed: the documentation names only bare
integers, ``vCPU`` and ``GB``). A value that does not come to a whole number of units is refused.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

VCPU_UNITS = 1024
GB_MIB = 1024

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_CPU_RE = re.compile(rf"^\s*{_NUMBER}\s*(vcpus?)?\s*$", re.IGNORECASE | re.ASCII)
_MEMORY_RE = re.compile(rf"^\s*{_NUMBER}\s*(gb|gib|mb|mib)?\s*$", re.IGNORECASE | re.ASCII)


def _whole(number: str, scale: int) -> int | None:
    try:
        value = Decimal(number) * scale
    except InvalidOperation:  # pragma: no cover - the regex only lets decimals through
        return None
    if value != value.to_integral_value():
        return None
    return int(value)


def parse_cpu_units(text: str) -> int | None:
    """CPU units for a task ``cpu`` string, or ``None`` if it is not a whole number of units."""
    match = _CPU_RE.match(text)
    if match is None:
        return None
    number, unit = match.group(1), match.group(2)
    if unit is None and not number.isdigit():
        return None  # a bare value is CPU units and must be an integer
    return _whole(number, VCPU_UNITS if unit else 1)


def parse_memory_mib(text: str) -> int | None:
    """MiB for a task ``memory`` string, or ``None`` if it is not a whole number of MiB."""
    match = _MEMORY_RE.match(text)
    if match is None:
        return None
    number, unit = match.group(1), (match.group(2) or "").lower()
    if unit in ("", "mb", "mib") and not number.isdigit():
        return None
    return _whole(number, GB_MIB if unit in ("gb", "gib") else 1)


def format_vcpu(units: int) -> str:
    """``units`` written the way a person would: ``1536`` -> ``"1.5 vCPU"``."""
    value = (Decimal(units) / VCPU_UNITS).normalize()
    return f"{value:f} vCPU"


def format_gb(mib: int) -> str:
    """``mib`` in GB: ``1536`` -> ``"1.5 GB"``."""
    value = (Decimal(mib) / GB_MIB).normalize()
    return f"{value:f} GB"
