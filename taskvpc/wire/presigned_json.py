"""The JSON body of a presigned JSON 1.1 request, rebuilt from its query string (pure).

botocore's ``generate_presigned_url`` for a JSON-protocol operation (``SigV4QueryAuth``) moves the
serialized body into the URL: each top-level member becomes ``name=value`` (a list one pair per item,
in order) and the body is sent empty. Only what survives that move is read back: strings, numbers,
booleans and lists of those. A structure or map member cannot be carried (botocore writes Python's
``repr`` of it), so naming one is the service's ``SerializationException``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

import orjson

from taskvpc.domain.errors import ClientError
from taskvpc.wire.shapes import Operation, Shape

_SCALARS = frozenset({"string", "integer", "long", "boolean", "double", "float"})
_MAX_DIGITS = 20  # a long has at most 19 digits and a sign; longer is refused without calling int()


def body_from_query(operation: Operation, query: str) -> bytes:
    """The JSON document the presigned URL's operation parameters stand for."""
    members = operation.input.members if operation.input is not None else {}
    document: dict[str, Any] = {}
    for pair in query.split("&"):
        raw_key, _, raw_value = pair.partition("=")
        key = unquote_plus(raw_key)
        member = members.get(key)
        if member is None:  # X-Amz-* auth parameters, and members the model does not know (ignored)
            continue
        shape = member.shape
        value = unquote_plus(raw_value)
        if shape.type == "list" and shape.member is not None and shape.member.shape.type in _SCALARS:
            document.setdefault(key, []).append(_scalar(shape.member.shape, key, value))
        elif shape.type in _SCALARS:
            document.setdefault(key, _scalar(shape, key, value))
        else:
            raise _serialization(f"'{key}' cannot be sent in a presigned URL")
    return orjson.dumps(document)


def _scalar(shape: Shape, key: str, value: str) -> Any:
    if shape.type == "boolean":
        if value.lower() not in ("true", "false"):
            raise _serialization(f"'{key}' must be true or false")
        return value.lower() == "true"
    if shape.type in ("integer", "long"):
        digits = value.removeprefix("-")
        if not digits.isascii() or not digits.isdigit() or len(value) > _MAX_DIGITS:
            raise _serialization(f"'{key}' must be a whole number")
        return int(value)
    if shape.type in ("double", "float"):
        try:
            number = float(value) if len(value) <= 64 else float("nan")
        except ValueError:
            number = float("nan")
        if number != number or number in (float("inf"), float("-inf")):
            raise _serialization(f"'{key}' must be a number")
        return number
    return value


def _serialization(detail: str) -> ClientError:
    return ClientError("SerializationException", f"Unable to read the presigned request: {detail}.")
