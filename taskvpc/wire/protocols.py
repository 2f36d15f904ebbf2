"""The wire protocols by name: how to read a request and write an answer for each (pure, no I/O).

``PROTOCOLS`` holds the protocols taskvpc serves (botocore's ``metadata.protocol`` names). A service's
manifest names one; the API layer never asks which protocol a request is in. ``unserved_error`` writes an
error in the shape any AWS protocol's SDK parses, so a client of a service taskvpc does not serve (S3,
SQS, Lambda, ...) shows a code and a message rather than a parse failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import orjson

from taskvpc.domain.errors import ClientError
from taskvpc.wire import json11, query
from taskvpc.wire.auth_errors import Protocol as AuthProtocol
from taskvpc.wire.http import HttpRequest, HttpResponse
from taskvpc.wire.shapes import ServiceSpec
from taskvpc.wire.validate import ec2_validation_error, query_validation_error, validate


@dataclass(frozen=True, slots=True)
class Codec:
    """One served protocol: request decoding, result and error encoding, and request recognition."""

    name: str
    auth: AuthProtocol  # which row family of ``auth_errors.AUTH_ERRORS`` its authentication errors use
    decode: Callable[[ServiceSpec, HttpRequest], tuple[str, dict[str, Any]]]
    encode_result: Callable[[ServiceSpec, str, dict[str, Any], str], HttpResponse]
    encode_error: Callable[[ServiceSpec, ClientError, str], HttpResponse]
    encode_server_error: Callable[[ServiceSpec, str], HttpResponse]
    # Before authentication (to choose the service whose shape an auth error takes), without parsing the
    # body: ``claims`` - the request names this service alone, whatever its credential scope says
    # (JSON's X-Amz-Target prefix); ``recognizes`` - it names an operation this service has (query's
    # Action, which several services may share).
    claims: Callable[[ServiceSpec, HttpRequest], bool]
    recognizes: Callable[[ServiceSpec, HttpRequest], bool]


# ---- JSON 1.1 (ECS) -----------------------------------------------------------------------------------


def _json_decode(spec: ServiceSpec, request: HttpRequest) -> tuple[str, dict[str, Any]]:
    operation, params = json11.decode_request(spec, request)
    return operation.name, params


def _json_result(spec: ServiceSpec, name: str, result: dict[str, Any], request_id: str) -> HttpResponse:
    return json11.encode_result(spec.operations[name], result, request_id)


def _json_error(spec: ServiceSpec, error: ClientError, request_id: str) -> HttpResponse:
    return json11.encode_error(error, request_id)


def _json_server_error(spec: ServiceSpec, request_id: str) -> HttpResponse:
    return json11.encode_server_error(request_id)


def _json_recognizes(spec: ServiceSpec, request: HttpRequest) -> bool:
    return request.headers.get("x-amz-target", "").partition(".")[0] == spec.target_prefix


# ---- query and EC2 query (STS, ELBv2; EC2) ------------------------------------------------------------


def _query_decode(spec: ServiceSpec, request: HttpRequest) -> tuple[str, dict[str, Any]]:
    form = query.parse_form(request.body, request.query_string)
    operation = query.operation_for_action(spec, form)
    params = query.decode_params(spec, operation, form)
    if operation.input is not None and (problems := validate(operation.input, params)):
        if spec.protocol == "ec2":
            raise ec2_validation_error(problems)
        raise query_validation_error(problems)
    return operation.name, params


def _query_result(spec: ServiceSpec, name: str, result: dict[str, Any], request_id: str) -> HttpResponse:
    return query.encode_result(spec, spec.operations[name], result, request_id)


# The Action of a query request, found by one scan (the form is only parsed once the signature holds).
_ACTION = re.compile(rb"(?:^|&)Action=([A-Za-z0-9]{1,64})(?:&|$)")


def _query_recognizes(spec: ServiceSpec, request: HttpRequest) -> bool:
    found = _ACTION.search(request.query_string.encode("latin-1", "replace")) or _ACTION.search(request.body)
    return found is not None and found.group(1).decode() in spec.operations


def _never(spec: ServiceSpec, request: HttpRequest) -> bool:
    return False


def _query_codec(name: str, auth: AuthProtocol) -> Codec:
    return Codec(
        name=name,
        auth=auth,
        decode=_query_decode,
        encode_result=_query_result,
        encode_error=query.encode_error,
        encode_server_error=query.encode_server_error,
        claims=_never,
        recognizes=_query_recognizes,
    )


PROTOCOLS: dict[str, Codec] = {
    "json": Codec(
        name="json",
        auth="json",
        decode=_json_decode,
        encode_result=_json_result,
        encode_error=_json_error,
        encode_server_error=_json_server_error,
        claims=_json_recognizes,
        recognizes=_json_recognizes,
    ),
    "query": _query_codec("query", "query"),
    "ec2": _query_codec("ec2", "ec2"),
}


# ---- errors for services taskvpc does not serve -------------------------------------------------------


def guess_protocol(request: HttpRequest) -> str:
    """The protocol a request for an unknown service is most likely in, from its shape alone."""
    headers = request.headers
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if headers.get("smithy-protocol") == "rpc-v2-cbor":
        return "smithy-rpc-v2-cbor"
    if "x-amz-target" in headers:
        return "json"
    if content_type == "application/x-www-form-urlencoded":
        return "query"
    if "json" in content_type:
        return "rest-json"
    return "rest-xml"


def unserved_error(protocol: str, error: ClientError, request_id: str) -> HttpResponse:
    """``error`` in the shape botocore's parser for ``protocol`` reads a code and a message from."""
    status = error.http_status
    ids = [("x-amzn-requestid", request_id)]
    if protocol in ("json", "rest-json"):
        # JSONParser reads __type; RestJSONParser prefers the x-amzn-errortype header.
        body = orjson.dumps({"__type": error.code, "message": error.message})
        errortype = [("x-amzn-errortype", error.code)] if protocol == "rest-json" else []
        content_type = "application/x-amz-json-1.1" if protocol == "json" else "application/json"
        return HttpResponse(status, body, [("content-type", content_type), *errortype, *ids])
    if protocol == "smithy-rpc-v2-cbor":
        body = _cbor_text_map({"__type": error.code, "message": error.message})
        headers = [("content-type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor"), *ids]
        return HttpResponse(status, body, headers)
    code, message, rid = (escape(text) for text in (error.code, error.message, request_id))
    if protocol == "ec2":
        xml = f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        xml += f"<RequestID>{rid}</RequestID></Response>"
    elif protocol == "query":
        xml = f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
        xml += f"</Error><RequestId>{rid}</RequestId></ErrorResponse>"
    else:  # rest-xml: S3's own error document (other rest-xml services' parser reads it too)
        xml = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{rid}</RequestId></Error>"
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + xml.encode()
    return HttpResponse(status, body, [("content-type", "application/xml"), *ids])


def _cbor_text_map(items: dict[str, str]) -> bytes:
    """A CBOR map of text strings (RFC 8949 major types 5 and 3): all an error body needs."""
    out = bytearray(_cbor_head(5, len(items)))
    for key, value in items.items():
        for text in (key, value):
            raw = text.encode()
            out += _cbor_head(3, len(raw)) + raw
    return bytes(out)


def _cbor_head(major: int, length: int) -> bytes:
    if length < 24:
        return bytes([major << 5 | length])
    if length < 0x100:
        return bytes([major << 5 | 24, length])
    if length < 0x10000:
        return bytes([major << 5 | 25]) + length.to_bytes(2, "big")
    return bytes([major << 5 | 26]) + length.to_bytes(4, "big")
