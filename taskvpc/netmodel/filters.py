"""EC2 ``Describe*`` filters: ``Filters=[{"Name": ..., "Values": [...]}, ...]``.

* Several filters are ANDed; the values of one filter are ORed.
* Values may use ``*`` (any run of characters) and ``?`` (one character); ``\\*``, ``\\?`` and ``\\\\``
  stand for a literal ``*``, ``?`` and backslash [EC2 API ``Filter`` and CLI filtering docs]. Matching is
  case-sensitive and over the whole value.
* ``tag:<Key>`` matches resources whose tag ``Key`` has a matching value; ``tag-key`` matches any tag
  key; ``tag-value`` any tag value.
* A resource attribute may have several values (a list: any one matching is enough), none (``None`` or an
  empty list: never matches), or be a boolean or integer, compared as ``"true"``/``"false"`` or decimal.
* A filter with no values matches nothing (it is an empty OR).

Filter names are checked separately by :func:`check_filter_names` (EC2 refuses an unknown name);
:func:`matches` treats a name it has no value for as not matching.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from functools import lru_cache
from typing import Any

from taskvpc.domain.errors import ClientError

FilterValue = Sequence[str] | str | bool | int | None
TAG_FILTERS = frozenset({"tag-key", "tag-value"})


def invalid_filter(name: str) -> ClientError:
    # "An error occurred (InvalidParameterValue) when calling the DescribeInstances operation: The filter
    # 'subnetid' is invalid" (public CLI transcript); aws/aws-fpga docs show the same for DescribeFpgaImages.
    return ClientError("InvalidParameterValue", f"The filter '{name}' is invalid")


def check_filter_names(
    filters: Sequence[Mapping[str, Any]] | None, supported: Collection[str], *, tags: bool = True
) -> None:
    """Refuse the first filter whose name is not in ``supported``.

    With ``tags`` (the default; most EC2 resources are taggable) ``tag:<Key>``, ``tag-key`` and
    ``tag-value`` are accepted as well.
    """
    for f in filters or ():
        name = str(f.get("Name", ""))
        if name in supported:
            continue
        if tags and (name in TAG_FILTERS or (name.startswith("tag:") and len(name) > 4)):
            continue
        raise invalid_filter(name)


@lru_cache(maxsize=1024)
def _pattern(value: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value) and value[i + 1] in "*?\\":
            out.append(re.escape(value[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def value_matches(pattern: str, value: str) -> bool:
    """Does one filter value (with ``*``/``?`` wildcards) match one attribute value?"""
    return _pattern(pattern).fullmatch(value) is not None


def _as_strings(value: FilterValue) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _one_filter(
    name: str, patterns: Sequence[str], values: Mapping[str, FilterValue], tags: Mapping[str, str]
) -> bool:
    if name.startswith("tag:"):
        key = name[4:]
        candidates = [tags[key]] if key in tags else []
    elif name == "tag-key":
        candidates = list(tags)
    elif name == "tag-value":
        candidates = list(tags.values())
    elif name in values:
        candidates = _as_strings(values[name])
    else:
        return False
    return any(value_matches(p, c) for p in patterns for c in candidates)


def matches(
    filters: Sequence[Mapping[str, Any]] | None,
    values: Mapping[str, FilterValue],
    tags: Mapping[str, str],
) -> bool:
    """Does a resource with attribute ``values`` and ``tags`` pass every filter?"""
    for f in filters or ():
        patterns = [str(v) for v in (f.get("Values") or ())]
        if not _one_filter(str(f.get("Name", "")), patterns, values, tags):
            return False
    return True
