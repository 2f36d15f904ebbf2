"""Input validation against a botocore model: required members, types, enums, lengths and ranges.

:func:`validate` returns every :class:`Problem` it finds (it never raises), so each protocol can render
them the way its service does: the JSON services answer with the Coral phrasing
("1 validation error detected: Value 'x' at 'networkMode' failed to satisfy constraint: ..."), EC2 with
``MissingParameter``/``InvalidParameterValue``, the query services with ``ValidationError``.

Types are checked here too (a JSON number where the model says string, a list where it says structure);
such a mismatch is a ``type`` problem and the JSON codec renders it as ``SerializationException``.
Members the model does not know are dropped by the codecs before they get here, as AWS ignores them.

The check is total: a ``null`` list item or map value is a ``required`` problem (a handler never sees
one), and an integer the model leaves unbounded is still held to its type's range (``integer`` is 32
bits, ``long`` 64, as in the services' Java models), so no number a handler or the store cannot hold
gets past here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Literal

from taskvpc.domain.errors import ClientError
from taskvpc.wire.shapes import Shape

ProblemKind = Literal[
    "required", "type", "enum", "min_length", "max_length", "min_value", "max_value", "pattern"
]


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    path: str  # Coral path: 'containerDefinitions.1.member.name'
    value: Any
    limit: Any = None  # the bound, enum set, pattern or expected type name

    def constraint(self) -> str:
        if self.kind == "required":
            return "Member must not be null"
        if self.kind == "enum":
            return f"Member must satisfy enum value set: [{', '.join(sorted(self.limit))}]"
        if self.kind == "min_length":
            return f"Member must have length greater than or equal to {self.limit}"
        if self.kind == "max_length":
            return f"Member must have length less than or equal to {self.limit}"
        if self.kind == "min_value":
            return f"Member must have value greater than or equal to {_number(self.limit)}"
        if self.kind == "max_value":
            return f"Member must have value less than or equal to {_number(self.limit)}"
        if self.kind == "pattern":
            return f"Member must satisfy regular expression pattern: {self.limit}"
        return f"Member must be of type {self.limit}"

    def describe(self) -> str:
        if self.kind == "required":
            return f"Value null at '{self.path}' failed to satisfy constraint: {self.constraint()}"
        return f"Value {_render_value(self.value)} at '{self.path}' failed to satisfy constraint: {self.constraint()}"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _render_value(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    if isinstance(value, int | float):
        return f"'{_number(value)}'"
    if isinstance(value, list):
        return "'[" + ", ".join(str(v) for v in value) + "]'"
    return f"'{value}'"


@cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:  # a Java-only construct; AWS's own check still applies server-side, ours skips it
        return None


_INT_TYPES = ("integer", "long")
# The Java types behind the models' integer shapes; a value outside them is refused whatever min/max say.
_INT_BOUNDS = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_JSON_TYPE_NAMES = {
    "string": "String",
    "integer": "Integer",
    "long": "Long",
    "boolean": "Boolean",
    "double": "Double",
    "float": "Float",
    "timestamp": "Timestamp",
    "blob": "Blob",
    "structure": "Structure",
    "list": "List",
    "map": "Map",
}


def validate(shape: Shape, params: Any, path: str = "") -> list[Problem]:
    problems: list[Problem] = []
    _check(shape, params, path, problems)
    return problems


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check(shape: Shape, value: Any, path: str, out: list[Problem]) -> None:
    kind = shape.type
    if kind == "structure":
        if not isinstance(value, dict):
            out.append(Problem("type", path, value, "Structure"))
            return
        for name in shape.required:
            if value.get(name) is None:
                out.append(Problem("required", _join(path, name), None))
        for name, item in value.items():
            member = shape.members.get(name)
            if member is None or item is None:
                continue
            _check(member.shape, item, _join(path, name), out)
        return
    if kind == "list":
        if not isinstance(value, list):
            out.append(Problem("type", path, value, "List"))
            return
        _check_length(shape, len(value), value, path, out)
        assert shape.member is not None
        for index, item in enumerate(value, start=1):
            item_path = f"{path}.{index}.member"
            if item is None:
                # Coral phrasing for a null element (unconfirmed: ECS's answer to `[null]` not probed).
                out.append(Problem("required", item_path, None))
                continue
            _check(shape.member.shape, item, item_path, out)
        return
    if kind == "map":
        if not isinstance(value, dict):
            out.append(Problem("type", path, value, "Map"))
            return
        _check_length(shape, len(value), value, path, out)
        assert shape.key is not None and shape.value is not None
        for key, item in value.items():
            _check(shape.key.shape, key, f"{path}.key", out)
            if item is None:
                out.append(Problem("required", f"{path}.{key}.value", None))  # unconfirmed, as for lists
            else:
                _check(shape.value.shape, item, f"{path}.{key}.value", out)
        return
    if kind == "string":
        if not isinstance(value, str):
            out.append(Problem("type", path, value, "String"))
            return
        if shape.enum is not None and value not in shape.enum:
            out.append(Problem("enum", path, value, shape.enum))
            return
        _check_length(shape, len(value), value, path, out)
        if shape.pattern is not None:
            compiled = _compiled(shape.pattern)
            if compiled is not None and compiled.fullmatch(value) is None:
                out.append(Problem("pattern", path, value, shape.pattern))
        return
    if kind in _INT_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            out.append(Problem("type", path, value, _JSON_TYPE_NAMES[kind]))
            return
        low, high = _INT_BOUNDS[kind]
        if value < low:
            out.append(Problem("min_value", path, value, low if shape.min is None else max(shape.min, low)))
        elif value > high:
            out.append(Problem("max_value", path, value, high if shape.max is None else min(shape.max, high)))
        else:
            _check_range(shape, value, path, out)
        return
    if kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.append(Problem("type", path, value, _JSON_TYPE_NAMES[kind]))
            return
        _check_range(shape, value, path, out)
        return
    if kind == "boolean":
        if not isinstance(value, bool):
            out.append(Problem("type", path, value, "Boolean"))
        return
    if kind == "timestamp":
        if isinstance(value, bool) or not isinstance(value, int | float | datetime):
            out.append(Problem("type", path, value, "Timestamp"))
        return
    if kind == "blob" and not isinstance(value, bytes | str):
        out.append(Problem("type", path, value, "Blob"))


def _check_length(shape: Shape, length: int, value: Any, path: str, out: list[Problem]) -> None:
    if shape.min is not None and length < shape.min:
        out.append(Problem("min_length", path, value, int(shape.min)))
    elif shape.max is not None and length > shape.max:
        out.append(Problem("max_length", path, value, int(shape.max)))


def _check_range(shape: Shape, value: float, path: str, out: list[Problem]) -> None:
    if shape.min is not None and value < shape.min:
        out.append(Problem("min_value", path, value, shape.min))
    elif shape.max is not None and value > shape.max:
        out.append(Problem("max_value", path, value, shape.max))


def coral_message(problems: list[Problem]) -> str:
    """The message AWS's JSON services give: '2 validation errors detected: ...; ...'."""
    count = len(problems)
    noun = "error" if count == 1 else "errors"
    return f"{count} validation {noun} detected: " + "; ".join(p.describe() for p in problems)


def json_validation_error(problems: list[Problem]) -> ClientError:
    """ECS renders model violations as InvalidParameterException, type mismatches as SerializationException."""
    type_problems = [p for p in problems if p.kind == "type"]
    if type_problems:
        first = type_problems[0]
        return ClientError("SerializationException", _serialization_message(first))
    return ClientError("InvalidParameterException", coral_message(problems))


def _serialization_message(problem: Problem) -> str:
    found = problem.value
    if isinstance(found, bool):
        token = "VALUE_TRUE" if found else "VALUE_FALSE"
    elif isinstance(found, int | float):
        token = "VALUE_NUMBER_INT" if isinstance(found, int) else "VALUE_NUMBER_FLOAT"
    elif isinstance(found, str):
        token = "VALUE_STRING"
    elif isinstance(found, list):
        token = "START_ARRAY"
    elif isinstance(found, dict):
        token = "START_OBJECT"
    else:
        token = "VALUE_NULL"
    expected = problem.limit
    article = "an" if str(expected)[:1] in "AEIOU" else "a"
    return f"{token} can not be converted to {article} {expected}"


def ec2_validation_error(problems: list[Problem]) -> ClientError:
    """EC2 names a missing parameter, or the first bad value, in its own words."""
    for problem in problems:
        if problem.kind == "required":
            name = problem.path.rpartition(".")[2]
            return ClientError("MissingParameter", f"The request must contain the parameter {name}")
    first = problems[0]
    name = first.path.rpartition(".")[2] or first.path
    return ClientError(
        "InvalidParameterValue",
        f"Value ({first.value}) for parameter {name} is invalid. {first.constraint()}",
    )


def query_validation_error(problems: list[Problem]) -> ClientError:
    """The query services (ELBv2, STS) use the Coral phrasing under ``ValidationError``."""
    return ClientError("ValidationError", coral_message(problems))
