"""The AWS query protocols: ``ec2`` (EC2) and ``query`` (ELBv2, STS). Form in, XML out; no I/O.

Requests are ``application/x-www-form-urlencoded`` (POST body, or the query string of a GET) with
``Action`` and ``Version`` plus the operation's members flattened into dotted keys. The key rules mirror
botocore's ``QuerySerializer``/``EC2Serializer`` (``botocore/serialize.py``) so that
``decode_params`` returns exactly the dict the client handed to botocore:

* ``ec2``: a member's key is its ``queryName``, else its ``locationName`` capitalised, else its name;
  every list is ``Key.N`` (1-based); an empty list is not sent at all.
* ``query``: a member's key is its ``locationName``, else its name; a list is ``Key.member.N`` (the
  list member's ``locationName`` replaces ``member``) unless flattened; an empty list is ``Key=``;
  a map is ``Key.entry.N.key`` / ``Key.entry.N.value``.

Responses are what botocore's ``EC2QueryParser`` / ``QueryParser`` read back into the same dict:
EC2 answers ``<XResponse xmlns=".../doc/2016-11-15/"><requestId/>...members...</XResponse>`` with
lists as ``<fooSet><item/></fooSet>``; the query services wrap members in ``<XResult>`` and add
``<ResponseMetadata><RequestId/></ResponseMetadata>``, lists as ``<member/>``.

What the services do with bad input (sources are noted at each constant below):

* a repeated parameter: the first value wins (STS, probed against AWS);
* an unknown parameter: EC2 refuses it with ``UnknownParameter``; the query services ignore it;
* an unparseable scalar: EC2 answers ``InvalidParameterValue``; the Coral query services answer
  ``MalformedInput`` (numbers without a ``<Message>``, booleans with the xsd phrase).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote_plus

from taskvpc.domain.errors import ClientError
from taskvpc.wire.http import HttpRequest, HttpResponse
from taskvpc.wire.shapes import Member, Operation, ServiceSpec, Shape

# --------------------------------------------------------------------------------------------------
# Protocol constants. Each code/message carries where it comes from; "unconfirmed" marks our choice.
# --------------------------------------------------------------------------------------------------

# Responses: EC2 sends ``text/xml;charset=UTF-8``; STS (probed golden, see below) sends ``text/xml``.
EC2_CONTENT_TYPE: Final = "text/xml;charset=UTF-8"
QUERY_CONTENT_TYPE: Final = "text/xml"
_XML_DECL: Final = '<?xml version="1.0" encoding="UTF-8"?>\n'

# Dispatch errors of the Coral query services use the AWSFault namespace; modeled errors and
# ValidationError use the service's own namespace. Source: an STS oracle that pins AWS responses
# byte for byte (github.com, ``sts_oracle`` probes "unknown-action", "missing-version", ...).
AWS_FAULT_NAMESPACE: Final = "http://webservices.amazon.com/AWSFault/2005-15-09"
_AWS_FAULT_CODES: Final = frozenset({"InvalidAction", "MissingAction", "MalformedInput"})

# What an absent ``Version`` is called in the query services' InvalidAction message (same STS oracle:
# "Could not find operation GetCallerIdentity for version NO_VERSION_SPECIFIED").
NO_VERSION_SPECIFIED: Final = "NO_VERSION_SPECIFIED"

# Keys that are transport, not operation input: dispatch, SigV4 query auth, and legacy SigV2.
_TRANSPORT_KEYS: Final = frozenset(
    {
        "Action",
        "Version",
        "AWSAccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "Timestamp",
        "Expires",
        "SecurityToken",
    }
)

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_INTEGER_RE = re.compile(r"[+-]?[0-9]+")
_MAX_INT_DIGITS = 19  # 2**63 - 1 has 19 digits
_MAX_INDEX_DIGITS = 9  # unconfirmed: a longer list index is treated as an unknown parameter
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?Infinity|NaN")


def invalid_action(spec: ServiceSpec, action: str, version: str | None) -> ClientError:
    """The error for an Action the service does not have (or a Version it does not speak)."""
    if spec.protocol == "ec2":
        # EC2: boto/boto#1282, aws/aws-sdk-ruby#1636, cognitect-labs/aws-api#6 (real EC2 bodies):
        # <Code>InvalidAction</Code><Message>The action X is not valid for this web service.</Message>
        return ClientError("InvalidAction", f"The action {action} is not valid for this web service.")
    # STS, probed: InvalidAction "Could not find operation NoSuchAction for version 2011-06-15"; the
    # same for an unknown, empty or missing Version (NO_VERSION_SPECIFIED). ELBv2 is Coral too: assumed.
    shown = NO_VERSION_SPECIFIED if version is None else version
    return ClientError("InvalidAction", f"Could not find operation {action} for version {shown}")


def missing_action(spec: ServiceSpec) -> ClientError:
    """The error for a request without ``Action``.

    EC2: ``MissingAction`` is in AWS's common-errors list ("The request is missing an action or a
    required parameter."); the exact EC2 message is unconfirmed. The query services: real STS answers
    ``302`` to https://aws.amazon.com/iam (STS oracle "missing-action"), which no SDK can parse; we
    answer like an empty ``Action`` instead (unconfirmed, deliberate).
    """
    if spec.protocol == "ec2":
        return ClientError("MissingAction", "The request must contain the parameter Action")
    return invalid_action(spec, "", spec.api_version)


def no_such_version(version: str) -> ClientError:
    # EC2 checks Version before Action: ansible/ansible#37267 (ELBv2 Version sent to EC2):
    # "NoSuchVersion ... The requested version (2015-12-01) of service AmazonEC2 does not exist".
    return ClientError(
        "NoSuchVersion", f"The requested version ({version}) of service AmazonEC2 does not exist"
    )


def missing_version() -> ClientError:
    # EC2 without Version: unconfirmed; MissingParameter phrased like EC2's other MissingParameter errors.
    return ClientError("MissingParameter", "The request must contain the parameter Version")


def unknown_parameter(name: str) -> ClientError:
    # EC2, real bodies in aws/aws-cli#21, appoxy/aws#32, aws/aws-sdk-cpp#327, aws/aws-sdk-js#57:
    # <Code>UnknownParameter</Code><Message>The parameter instanceId is not recognized</Message>; the
    # name is the unrecognised key segment ("SriovNetSupport" for "SriovNetSupport.Value", "Item").
    return ClientError("UnknownParameter", f"The parameter {name} is not recognized")


def dry_run_error() -> ClientError:
    # EC2 API reference, "Error codes": DryRunOperation; message as the CLI prints it ("An error occurred
    # (DryRunOperation) when calling the RunInstances operation: Request would have succeeded, but
    # DryRun flag is set."); HTTP 412 Precondition Failed.
    return ClientError("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)


def ec2_invalid_value(value: str, name: str) -> ClientError:
    # EC2 phrasing seen in real responses: "Invalid value 'Must specify both from and to ports with
    # TCP/UDP.' for portRange." (chef-provisioning-aws#183). Its use for unparseable scalars: unconfirmed.
    return ClientError("InvalidParameterValue", f"Invalid value '{value}' for {name}.")


def malformed_input(message: str = "") -> ClientError:
    # Coral query services, probed: a non-numeric/out-of-int32 DurationSeconds gives 400 MalformedInput
    # with no <Message>; an empty one "missing value for decimal type" (STS oracle); a bad boolean
    # "boolean must follow xsd1.1 definition", an empty one "missing value for boolean type" (SES).
    return ClientError("MalformedInput", message)


def server_error(spec: ServiceSpec) -> ClientError:
    """Our own failure. EC2's server error code list: ``InternalError`` "An internal error has
    occurred"; the query services' common errors: ``InternalFailure`` (both HTTP 500)."""
    if spec.protocol == "ec2":
        return ClientError("InternalError", "An internal error has occurred", 500, sender_fault=False)
    return ClientError(
        "InternalFailure",
        "The request processing has failed because of an unknown error, exception or failure.",
        500,
        sender_fault=False,
    )


# --------------------------------------------------------------------------------------------------
# Request side
# --------------------------------------------------------------------------------------------------


def parse_form(body: bytes, query_string: str) -> dict[str, str]:
    """Merge a GET query string and a form-encoded POST body into one dict; the first value wins.

    ``+`` is a space and ``%XX`` is decoded as UTF-8 (undecodable bytes become U+FFFD). A key without
    ``=`` has the empty value, as ``Foo=`` would (the query protocol's empty list).
    """
    form: dict[str, str] = {}
    if query_string:
        _parse_into(form, query_string)
    if body:
        _parse_into(form, body.decode("utf-8", "replace"))
    return form


def _parse_into(form: dict[str, str], text: str) -> None:
    for pair in text.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if "%" in key or "+" in key:
            key = unquote_plus(key, errors="replace")
        if key in form:
            continue
        if "%" in value or "+" in value:
            value = unquote_plus(value, errors="replace")
        form[key] = value


def operation_for_action(spec: ServiceSpec, form: Mapping[str, str]) -> Operation:
    """The operation named by ``Action`` (and allowed by ``Version``); ClientError otherwise."""
    action = form.get("Action")
    version = form.get("Version")
    if spec.protocol == "ec2":
        # EC2 looks at Version first (ansible/ansible#37267); we accept only the version botocore and
        # the CLI speak, since our XML is that version's (older versions: unconfirmed, refused).
        if version is None:
            raise missing_version()
        if version != spec.api_version:
            raise no_such_version(version)
        if action is None:
            raise missing_action(spec)
        operation = spec.operations.get(action)
        if operation is None:
            raise invalid_action(spec, action, version)
        return operation
    if action is None:
        raise missing_action(spec)
    operation = spec.operations.get(action) if version == spec.api_version else None
    if operation is None:
        raise invalid_action(spec, action, version)
    return operation


def decode_request(spec: ServiceSpec, request: HttpRequest) -> tuple[Operation, dict[str, Any]]:
    """Operation and converted (not validated) parameters of a query/EC2 request."""
    form = parse_form(request.body if request.method != "GET" else b"", request.query_string)
    operation = operation_for_action(spec, form)
    return operation, decode_params(spec, operation, form)


# A parsed form as a tree: ``{"Filter": {"1": {"Name": "x", "Value": {"1": "y"}}}}``.
_Node = str | dict[str, Any]
_SKIP: Final[Any] = object()


def decode_params(spec: ServiceSpec, op: Operation, form: Mapping[str, str]) -> dict[str, Any]:
    """The parameters botocore was given, rebuilt from the flat form; model member names as keys."""
    ec2 = spec.protocol == "ec2"
    tree: dict[str, Any] = {}
    for key, value in form.items():
        if key in _TRANSPORT_KEYS or key.startswith("X-Amz-"):
            continue
        _insert(tree, key, value)
    if op.input is None:
        if ec2 and tree:
            raise unknown_parameter(next(iter(tree)))
        return {}
    return _decode_structure(op.input, tree, ec2)


def _insert(tree: dict[str, Any], key: str, value: str) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            # A leaf where a branch is needed (``Foo=`` and ``Foo.member.1=x``): the branch wins.
            child = node[part] = {}
        node = child
    last = parts[-1]
    if last not in node:  # a leaf never replaces a branch
        node[last] = value


@dataclass(frozen=True, slots=True)
class _In:
    """How one wire key of a structure maps onto the model."""

    name: str  # model member name
    shape: Shape
    label: str  # the name EC2 uses in messages (locationName, else member name)
    flattened: bool


_INPUT_INDEX: dict[tuple[Shape, bool], dict[str, _In]] = {}


def _input_index(shape: Shape, ec2: bool) -> dict[str, _In]:
    index = _INPUT_INDEX.get((shape, ec2))
    if index is None:
        index = {}
        for name, member in shape.members.items():
            flattened = member.flattened or member.shape.flattened
            if ec2:
                wire = _ec2_name(member, name)
            elif flattened and member.shape.type == "list" and _list_item(member.shape).location_name:
                # QuerySerializer: a flattened list whose member has a name replaces the last segment.
                wire = _list_item(member.shape).location_name or name
            else:
                wire = member.location_name or name
            label = _ec2_label(member.location_name or name) if ec2 else member.location_name or name
            index[wire] = _In(name, member.shape, label, flattened)
        _INPUT_INDEX[(shape, ec2)] = index
    return index


def _ec2_name(member: Member, default: str) -> str:
    if member.query_name:
        return member.query_name
    if member.location_name:
        return member.location_name[0].upper() + member.location_name[1:]
    return default


def _ec2_label(name: str) -> str:
    """EC2 names parameters in its messages in lower camel case ("maxResults", "dryRun")."""
    return name[:1].lower() + name[1:]


def _list_item(shape: Shape) -> Member:
    assert shape.member is not None
    return shape.member


def _decode_structure(shape: Shape, node: dict[str, Any], ec2: bool) -> dict[str, Any]:
    index = _input_index(shape, ec2)
    out: dict[str, Any] = {}
    for segment, child in node.items():
        hit = index.get(segment)
        if hit is None:
            if ec2:
                raise unknown_parameter(segment)
            continue  # the query services ignore parameters they do not know
        value = _decode(hit.shape, child, ec2, segment, hit.label, hit.flattened)
        if value is not _SKIP:
            out[hit.name] = value
    return out


def _decode(shape: Shape, node: _Node, ec2: bool, wire: str, label: str, flattened: bool) -> Any:
    kind = shape.type
    if kind == "structure":
        if isinstance(node, dict):
            value = _decode_structure(shape, node, ec2)
            return value if value or ec2 else _SKIP  # only keys the query services ignore
        if ec2:
            raise unknown_parameter(wire)
        return _SKIP
    if kind == "list":
        return _decode_list(shape, node, ec2, wire, label, flattened)
    if kind == "map":
        return _decode_map(shape, node, ec2, wire, label, flattened)
    if isinstance(node, dict):
        if ec2:
            raise unknown_parameter(f"{wire}.{next(iter(node))}")
        return _SKIP
    return _SCALAR_DECODERS[kind](node, label, ec2)


def _indexed(node: dict[str, Any], ec2: bool) -> list[Any]:
    """The children of ``Key.1``, ``Key.2``, ... in numeric order."""
    numbered: list[tuple[int, Any]] = []
    for index, child in node.items():
        # A list position is a few ASCII digits (botocore numbers from 1); a longer one cannot be a
        # position in any list a request may carry, and int() of thousands of digits would raise.
        if index.isascii() and index.isdigit() and len(index) <= _MAX_INDEX_DIGITS:
            numbered.append((int(index), child))
        elif ec2:
            raise unknown_parameter(index)
    numbered.sort(key=lambda pair: pair[0])
    return [child for _, child in numbered]


def _decode_list(shape: Shape, node: _Node, ec2: bool, wire: str, label: str, flattened: bool) -> Any:
    item = _list_item(shape)
    if isinstance(node, str):
        if ec2:
            raise unknown_parameter(wire)
        # QuerySerializer sends an empty list as ``Key=``; any other bare value is not a list.
        return [] if node == "" else _SKIP
    if not ec2 and not flattened:
        inner = node.get(item.location_name or "member")
        if not isinstance(inner, dict):
            return [] if inner == "" else _SKIP
        node = inner
    item_label = (
        label if item.location_name is None else _ec2_label(item.location_name) if ec2 else item.location_name
    )
    out = []
    for child in _indexed(node, ec2):
        value = _decode(item.shape, child, ec2, wire, item_label, False)
        if value is not _SKIP:
            out.append(value)
    return out if out else _SKIP  # only keys the query services ignore


def _decode_map(shape: Shape, node: _Node, ec2: bool, wire: str, label: str, flattened: bool) -> Any:
    assert shape.key is not None and shape.value is not None
    if isinstance(node, str):
        if ec2:
            raise unknown_parameter(wire)
        return _SKIP
    if not flattened:
        inner = node.get("entry")
        if not isinstance(inner, dict):
            if ec2:
                raise unknown_parameter(next(iter(node)))
            return _SKIP
        node = inner
    if ec2:
        key_name = _ec2_name(shape.key, "key")
        value_name = _ec2_name(shape.value, "value")
    else:
        key_name = shape.key.location_name or "key"
        value_name = shape.value.location_name or "value"
    out: dict[Any, Any] = {}
    for entry in _indexed(node, ec2):
        if not isinstance(entry, dict) or key_name not in entry:
            if ec2:
                raise unknown_parameter(wire)
            continue
        key = _decode(shape.key.shape, entry[key_name], ec2, wire, label, False)
        if key is _SKIP or key in out:
            continue
        raw_value = entry.get(value_name)
        value = _SKIP if raw_value is None else _decode(shape.value.shape, raw_value, ec2, wire, label, False)
        if value is not _SKIP:
            out[key] = value
    return out


def _string(raw: str, label: str, ec2: bool) -> str:
    return raw


def _integer(raw: str, label: str, ec2: bool, bounds: tuple[int, int] = _INT32) -> int:
    # Leading zeros aside, more than 19 digits is outside every bound: refused without int(), which
    # raises on thousands of digits.
    if _INTEGER_RE.fullmatch(raw) and len(raw.lstrip("+-").lstrip("0")) <= _MAX_INT_DIGITS:
        value = int(raw)
        if bounds[0] <= value <= bounds[1]:
            return value
    if ec2:
        raise ec2_invalid_value(raw, label)
    raise malformed_input("" if raw else "missing value for decimal type")


def _long(raw: str, label: str, ec2: bool) -> int:
    return _integer(raw, label, ec2, _INT64)


def _float(raw: str, label: str, ec2: bool) -> float:
    if _FLOAT_RE.fullmatch(raw):
        return float(raw)
    if ec2:
        raise ec2_invalid_value(raw, label)
    raise malformed_input()


def _boolean(raw: str, label: str, ec2: bool) -> bool:
    if raw == "true":
        return True
    if raw == "false":
        return False
    if ec2:
        raise ec2_invalid_value(raw, label)
    # xsd:boolean also has 1 and 0 (SES, probed); anything else, even "TRUE", is MalformedInput.
    if raw == "1":
        return True
    if raw == "0":
        return False
    raise malformed_input(
        "boolean must follow xsd1.1 definition" if raw else "missing value for boolean type"
    )


def _timestamp(raw: str, label: str, ec2: bool) -> datetime:
    """ISO 8601 (botocore's query default, with or without microseconds) or epoch seconds; UTC."""
    try:
        if _FLOAT_RE.fullmatch(raw):
            return datetime.fromtimestamp(float(raw), UTC)
        value = datetime.fromisoformat(raw)
    except (ValueError, OverflowError, OSError):
        if ec2:
            raise ec2_invalid_value(raw, label) from None
        raise malformed_input() from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _blob(raw: str, label: str, ec2: bool) -> bytes:
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        if ec2:
            raise ec2_invalid_value(raw, label) from None
        raise malformed_input() from None


_SCALAR_DECODERS: Final[dict[str, Callable[[str, str, bool], Any]]] = {
    "string": _string,
    "character": _string,
    "integer": _integer,
    "long": _long,
    "float": _float,
    "double": _float,
    "boolean": _boolean,
    "timestamp": _timestamp,
    "blob": _blob,
}


# --------------------------------------------------------------------------------------------------
# Response side
# --------------------------------------------------------------------------------------------------


def namespace(spec: ServiceSpec) -> str:
    """The service's XML namespace as AWS writes it (always with the trailing slash)."""
    ns = spec.xml_namespace or f"http://{spec.endpoint_prefix}.amazonaws.com/doc/{spec.api_version}/"
    return ns if ns.endswith("/") else ns + "/"


def encode_result(
    spec: ServiceSpec, op: Operation, result: Mapping[str, Any], request_id: str
) -> HttpResponse:
    """The 200 response AWS sends for ``result`` (a dict shaped like the operation's output)."""
    out: list[str] = []
    name = op.name
    rid = _escape(request_id)
    if spec.protocol == "ec2":
        out.append(f'{_XML_DECL}<{name}Response xmlns="{namespace(spec)}"><requestId>{rid}</requestId>')
        if op.output is not None:
            _emit_members(out, op.output, result)
        else:
            # EC2 answers an operation without output (DeleteVpc, DeleteSubnet, ...) with
            # <return>true</return> (EC2 API reference example responses); botocore ignores it.
            out.append("<return>true</return>")
        out.append(f"</{name}Response>")
        return HttpResponse(200, "".join(out).encode(), _headers(spec, request_id))
    out.append(f'<{name}Response xmlns="{namespace(spec)}">')
    if op.output is not None:
        wrapper = op.result_wrapper
        if wrapper:
            out.append(f"<{wrapper}>")
        _emit_members(out, op.output, result)
        if wrapper:
            out.append(f"</{wrapper}>")
    out.append(f"<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></{name}Response>")
    return HttpResponse(200, "".join(out).encode(), _headers(spec, request_id))


def encode_error(spec: ServiceSpec, err: ClientError, request_id: str) -> HttpResponse:
    """The error document each protocol sends, with the error's HTTP status."""
    rid = _escape(request_id)
    code = _escape(err.code)
    message = f"<Message>{_escape(err.message)}</Message>" if err.message else ""
    if spec.protocol == "ec2":
        # Real EC2 error bodies (appoxy/aws#32, boto/boto#1282) have exactly this shape.
        body = (
            f"{_XML_DECL}<Response><Errors><Error><Code>{code}</Code>{message}</Error></Errors>"
            f"<RequestID>{rid}</RequestID></Response>"
        )
    else:
        ns = AWS_FAULT_NAMESPACE if err.code in _AWS_FAULT_CODES else namespace(spec)
        kind = "Sender" if err.sender_fault else "Receiver"
        body = (
            f'<ErrorResponse xmlns="{ns}"><Error><Type>{kind}</Type><Code>{code}</Code>{message}</Error>'
            f"<RequestId>{rid}</RequestId></ErrorResponse>"
        )
    return HttpResponse(err.http_status, body.encode(), _headers(spec, request_id))


def encode_server_error(spec: ServiceSpec, request_id: str) -> HttpResponse:
    return encode_error(spec, server_error(spec), request_id)


def _headers(spec: ServiceSpec, request_id: str) -> list[tuple[str, str]]:
    content_type = EC2_CONTENT_TYPE if spec.protocol == "ec2" else QUERY_CONTENT_TYPE
    return [("content-type", content_type), ("x-amzn-requestid", request_id)]


@dataclass(frozen=True, slots=True)
class _Out:
    """How one structure member is written: its element name and, for lists/maps, the layout."""

    tag: str
    shape: Shape
    flattened: bool


_OUTPUT_INDEX: dict[Shape, dict[str, _Out]] = {}


def _output_index(shape: Shape) -> dict[str, _Out]:
    index = _OUTPUT_INDEX.get(shape)
    if index is None:
        index = {}
        for name, member in shape.members.items():
            if member.xml_attribute:
                continue  # none in ec2/elbv2/sts outputs; not written
            flattened = member.flattened or member.shape.flattened
            tag = member.location_name or name
            if flattened and member.shape.type == "list" and _list_item(member.shape).location_name:
                # BaseXMLResponseParser._member_key_name: a flattened list is keyed by its item's name.
                tag = _list_item(member.shape).location_name or tag
            index[name] = _Out(tag, member.shape, flattened)
        _OUTPUT_INDEX[shape] = index
    return index


def _emit_members(out: list[str], shape: Shape, value: Mapping[str, Any]) -> None:
    index = _output_index(shape)
    for name, item in value.items():
        if item is None:
            continue
        field = index.get(name)
        if field is None:
            continue  # not in the model: dropped, as the JSON codec does
        if field.flattened and field.shape.type == "list":
            item_shape = _list_item(field.shape).shape
            for element in item:
                _emit(out, field.tag, item_shape, element)
        elif field.flattened and field.shape.type == "map":
            _emit_map_entries(out, field.tag, field.shape, item)
        else:
            _emit(out, field.tag, field.shape, item)


def _emit(out: list[str], tag: str, shape: Shape, value: Any) -> None:
    kind = shape.type
    if kind == "string":
        out.append(f"<{tag}>{_escape(value if isinstance(value, str) else str(value))}</{tag}>")
    elif kind == "structure":
        out.append(f"<{tag}>")
        _emit_members(out, shape, value)
        out.append(f"</{tag}>")
    elif kind == "list":
        item = _list_item(shape)
        item_tag = item.location_name or "member"
        item_shape = item.shape
        out.append(f"<{tag}>")
        if item_shape.type == "string":
            out.extend(f"<{item_tag}>{_string_text(element)}</{item_tag}>" for element in value)
        else:
            for element in value:
                _emit(out, item_tag, item_shape, element)
        out.append(f"</{tag}>")
    elif kind == "map":
        out.append(f"<{tag}>")
        _emit_map_entries(out, "entry", shape, value)
        out.append(f"</{tag}>")
    else:
        out.append(f"<{tag}>{_SCALAR_ENCODERS[kind](value)}</{tag}>")


def _emit_map_entries(out: list[str], tag: str, shape: Shape, value: Mapping[Any, Any]) -> None:
    assert shape.key is not None and shape.value is not None
    key_tag = shape.key.location_name or "key"
    value_tag = shape.value.location_name or "value"
    for key, item in value.items():
        if item is None:
            continue
        out.append(f"<{tag}>")
        _emit(out, key_tag, shape.key.shape, key)
        _emit(out, value_tag, shape.value.shape, item)
        out.append(f"</{tag}>")


def _boolean_text(value: Any) -> str:
    return "true" if value else "false"


def _number_text(value: Any) -> str:
    return str(int(value))


def _float_text(value: Any) -> str:
    return repr(float(value))


def _timestamp_text(value: Any) -> str:
    """ISO 8601 in UTC with milliseconds, as EC2 writes it: ``2026-11-27T18:00:00.000Z``."""
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    elif isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        return _escape(str(value))
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _blob_text(value: Any) -> str:
    raw = value.encode() if isinstance(value, str) else bytes(value)
    return base64.b64encode(raw).decode("ascii")


def _string_text(value: Any) -> str:
    return _escape(value if isinstance(value, str) else str(value))


_SCALAR_ENCODERS: Final[dict[str, Callable[[Any], str]]] = {
    "string": _string_text,
    "character": _string_text,
    "boolean": _boolean_text,
    "integer": _number_text,
    "long": _number_text,
    "float": _float_text,
    "double": _float_text,
    "timestamp": _timestamp_text,
    "blob": _blob_text,
}

# Characters that must not appear raw in XML character data: the markup characters, CR (a parser
# would turn it into LF), and those XML 1.0 cannot carry at all (C0 controls, lone surrogates,
# U+FFFE/U+FFFF), which become U+FFFD since no escape can represent them.
_XML_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_REPLACEMENTS: Final = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"}


def _escape_char(match: re.Match[str]) -> str:
    return _XML_REPLACEMENTS.get(match.group(), "\ufffd")


def _escape(text: str) -> str:
    if _XML_SPECIAL.search(text) is None:
        return text
    return _XML_SPECIAL.sub(_escape_char, text)
