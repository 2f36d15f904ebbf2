"""The AWS JSON 1.1 protocol (ECS): ``X-Amz-Target`` routing, body decoding, model-driven output.

Requests are ``POST /`` with ``X-Amz-Target: <targetPrefix>.<Operation>`` and a JSON object body.
Responses carry ``Content-Type: application/x-amz-json-1.1`` and ``x-amzn-RequestId``; errors are
``{"__type": code, "message": text}`` with the error's HTTP status.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson

from taskvpc.domain.errors import ClientError
from taskvpc.wire.http import HttpRequest, HttpResponse
from taskvpc.wire.shapes import Operation, ServiceSpec, Shape
from taskvpc.wire.validate import json_validation_error, validate

CONTENT_TYPE = "application/x-amz-json-1.1"


def operation_for_target(spec: ServiceSpec, target: str | None) -> Operation:
    prefix, _, name = (target or "").partition(".")
    operation = spec.operations.get(name) if prefix == spec.target_prefix else None
    if operation is None:
        # What Coral answers for a target it does not serve; botocore reads the code from __type.
        raise ClientError("UnknownOperationException", "")
    return operation


def decode_request(spec: ServiceSpec, request: HttpRequest) -> tuple[Operation, dict[str, Any]]:
    """Operation and validated parameters of a JSON 1.1 request; raises ClientError on bad input."""
    operation = operation_for_target(spec, request.headers.get("x-amz-target"))
    body = request.body.strip()
    if not body:
        params: Any = {}
    else:
        try:
            params = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ClientError("SerializationException", "Unable to parse the request body as JSON.") from None
    if not isinstance(params, dict):
        raise ClientError("SerializationException", "Start of list found where not expected")
    if operation.input is None:
        return operation, {}
    params = _prune(operation.input, params)
    problems = validate(operation.input, params)
    if problems:
        raise json_validation_error(problems)
    return operation, params


def _prune(shape: Shape, value: Any) -> Any:
    """Drop members the model does not know (AWS ignores them) and explicit nulls."""
    if shape.type == "structure" and isinstance(value, dict):
        if shape.document:
            return value
        members = shape.members
        return {k: _prune(members[k].shape, v) for k, v in value.items() if v is not None and k in members}
    if shape.type == "list" and isinstance(value, list):
        assert shape.member is not None
        item_shape = shape.member.shape
        if item_shape.type in ("structure", "list", "map"):
            return [_prune(item_shape, v) for v in value]
        return value
    if shape.type == "map" and isinstance(value, dict):
        assert shape.value is not None
        value_shape = shape.value.shape
        if value_shape.type in ("structure", "list", "map"):
            return {k: _prune(value_shape, v) for k, v in value.items()}
        return value
    return value


def to_wire(shape: Shape, value: Any) -> Any:
    """The JSON value botocore's parser expects for ``value`` under ``shape``; unknown members dropped."""
    kind = shape.type
    if kind == "structure":
        members = shape.members
        out: dict[str, Any] = {}
        for name, item in value.items():
            member = members.get(name)
            if member is None or item is None:
                continue
            out[name] = item if member.shape.type in _SCALARS else to_wire(member.shape, item)
        return out
    # A null inside a stored list or map is dropped rather than failing the answer: an answer is
    # encoded after its transaction committed, so nothing here may raise on what the store holds.
    if kind == "list":
        assert shape.member is not None
        item_shape = shape.member.shape
        if item_shape.type in _SCALARS:
            return [item for item in value if item is not None]
        return [to_wire(item_shape, item) for item in value if item is not None]
    if kind == "map":
        assert shape.value is not None
        value_shape = shape.value.shape
        if value_shape.type in _SCALARS:
            return {k: v for k, v in value.items() if v is not None}
        return {k: to_wire(value_shape, v) for k, v in value.items() if v is not None}
    if kind == "timestamp":
        return value.timestamp() if isinstance(value, datetime) else value
    if kind == "blob":
        raw = value.encode() if isinstance(value, str) else value
        return base64.b64encode(raw).decode()
    return value


# Types whose JSON form is the Python value itself.
_SCALARS = frozenset({"string", "integer", "long", "boolean", "double", "float"})


def encode_result(operation: Operation, result: dict[str, Any], request_id: str) -> HttpResponse:
    body = orjson.dumps(to_wire(operation.output, result)) if operation.output is not None else b"{}"
    return HttpResponse(200, body, _headers(request_id))


def encode_error(error: ClientError, request_id: str) -> HttpResponse:
    payload: dict[str, str] = {"__type": error.code}
    if error.message:
        payload["message"] = error.message
    return HttpResponse(error.http_status, orjson.dumps(payload), _headers(request_id))


def encode_server_error(request_id: str) -> HttpResponse:
    error = ClientError("ServerException", "An internal error occurred.", 500, sender_fault=False)
    return encode_error(error, request_id)


def _headers(request_id: str) -> list[tuple[str, str]]:
    return [("content-type", CONTENT_TYPE), ("x-amzn-requestid", request_id)]
