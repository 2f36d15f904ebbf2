"""A small, fast view of a botocore service model (the ``service-2.json`` document as a dict).

The codecs walk these objects for every request, so they are plain slotted classes resolved once,
not botocore's lazily-resolved ``Shape`` objects. Loading the JSON document is the caller's job
(see ``taskvpc.api.service_models``); this module only interprets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, eq=False)
class Member:
    name: str
    shape: Shape
    location_name: str | None = None
    query_name: str | None = None
    flattened: bool = False
    xml_attribute: bool = False


@dataclass(slots=True, eq=False)
class Shape:
    name: str
    type: str
    members: dict[str, Member] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    enum: frozenset[str] | None = None
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    member: Member | None = None  # list element
    key: Member | None = None  # map key
    value: Member | None = None  # map value
    flattened: bool = False
    timestamp_format: str | None = None
    is_exception: bool = False
    error_code: str | None = None
    error_status: int | None = None
    sender_fault: bool = True
    sensitive: bool = False
    document: bool = False
    union: bool = False


@dataclass(slots=True, eq=False)
class Operation:
    name: str
    input: Shape | None
    output: Shape | None
    result_wrapper: str | None
    errors: tuple[Shape, ...]


@dataclass(slots=True, eq=False)
class ServiceSpec:
    name: str
    protocol: str  # 'json' | 'query' | 'ec2'
    api_version: str
    target_prefix: str | None
    json_version: str | None
    signing_name: str
    xml_namespace: str | None
    operations: dict[str, Operation]
    shapes: dict[str, Shape]

    @property
    def endpoint_prefix(self) -> str:
        return self.signing_name


def _member(name: str, ref: Mapping[str, Any], shapes: dict[str, Shape]) -> Member:
    return Member(
        name=name,
        shape=shapes[ref["shape"]],
        location_name=ref.get("locationName"),
        query_name=ref.get("queryName"),
        flattened=bool(ref.get("flattened", False)),
        xml_attribute=bool(ref.get("xmlAttribute", False)),
    )


def build_service_spec(name: str, document: Mapping[str, Any]) -> ServiceSpec:
    """Resolve a botocore service document into linked :class:`Shape` objects."""
    raw_shapes: Mapping[str, Mapping[str, Any]] = document["shapes"]
    shapes: dict[str, Shape] = {}
    for shape_name, raw in raw_shapes.items():
        error = raw.get("error", {})
        shapes[shape_name] = Shape(
            name=shape_name,
            type=raw["type"],
            required=frozenset(raw.get("required", ())),
            enum=frozenset(raw["enum"]) if "enum" in raw else None,
            min=raw.get("min"),
            max=raw.get("max"),
            pattern=raw.get("pattern"),
            flattened=bool(raw.get("flattened", False)),
            timestamp_format=raw.get("timestampFormat"),
            is_exception=bool(raw.get("exception", False)),
            error_code=error.get("code"),
            error_status=error.get("httpStatusCode"),
            sender_fault=bool(error.get("senderFault", True)),
            sensitive=bool(raw.get("sensitive", False)),
            document=bool(raw.get("document", False)),
            union=bool(raw.get("union", False)),
        )
    for shape_name, raw in raw_shapes.items():
        shape = shapes[shape_name]
        if raw["type"] == "structure":
            shape.members = {m: _member(m, ref, shapes) for m, ref in raw.get("members", {}).items()}
        elif raw["type"] == "list":
            shape.member = _member("member", raw["member"], shapes)
        elif raw["type"] == "map":
            shape.key = _member("key", raw["key"], shapes)
            shape.value = _member("value", raw["value"], shapes)

    operations: dict[str, Operation] = {}
    for op_name, raw_op in document["operations"].items():
        input_ref = raw_op.get("input")
        output_ref = raw_op.get("output")
        operations[op_name] = Operation(
            name=op_name,
            input=shapes[input_ref["shape"]] if input_ref else None,
            output=shapes[output_ref["shape"]] if output_ref else None,
            result_wrapper=output_ref.get("resultWrapper") if output_ref else None,
            errors=tuple(shapes[e["shape"]] for e in raw_op.get("errors", ())),
        )
    metadata = document["metadata"]
    return ServiceSpec(
        name=name,
        protocol=metadata["protocol"],
        api_version=metadata["apiVersion"],
        target_prefix=metadata.get("targetPrefix"),
        json_version=metadata.get("jsonVersion"),
        signing_name=metadata.get("signingName", metadata["endpointPrefix"]),
        xml_namespace=metadata.get("xmlNamespace"),
        operations=operations,
        shapes=shapes,
    )
