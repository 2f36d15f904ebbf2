"""The JSON 1.1 codec and model validation, checked against botocore's own serializer and parser."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import botocore.session
import pytest
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from hypothesis import given, strategies as st

from taskvpc.api.service_models import service_spec
from taskvpc.domain.errors import ClientError
from taskvpc.wire import json11
from taskvpc.wire.http import HttpRequest
from taskvpc.wire.validate import validate

SPEC = service_spec("ecs")
BOTO_MODEL = botocore.session.get_session().get_service_model("ecs")
TARGET = "AmazonEC2ContainerServiceV20141113."


def botocore_request(operation: str, params: dict[str, Any]) -> HttpRequest:
    serialized = create_serializer("json").serialize_to_request(params, BOTO_MODEL.operation_model(operation))
    headers = {k.lower(): v for k, v in serialized["headers"].items()}
    return HttpRequest("POST", "/", "", headers, serialized["body"])


def raw_request(operation: str, body: bytes) -> HttpRequest:
    return HttpRequest("POST", "/", "", {"x-amz-target": TARGET + operation}, body)


def decode_error(request: HttpRequest) -> ClientError:
    with pytest.raises(ClientError) as excinfo:
        json11.decode_request(SPEC, request)
    return excinfo.value


def test_botocore_serialized_request_decodes_to_the_same_params() -> None:
    params = {
        "family": "web",
        "networkMode": "awsvpc",
        "containerDefinitions": [
            {
                "name": "app",
                "image": "busybox",
                "memory": 128,
                "essential": True,
                "portMappings": [{"containerPort": 80, "protocol": "tcp"}],
                "dockerLabels": {"a": "b"},
                "healthCheck": {"command": ["CMD", "true"], "interval": 10},
            }
        ],
        "tags": [{"key": "k", "value": "v"}],
    }
    operation, decoded = json11.decode_request(SPEC, botocore_request("RegisterTaskDefinition", params))
    assert operation.name == "RegisterTaskDefinition"
    assert decoded == params


def test_unknown_members_and_nulls_are_dropped() -> None:
    body = json.dumps({"clusterName": "a", "bogus": 1, "tags": None}).encode()
    _, decoded = json11.decode_request(SPEC, raw_request("CreateCluster", body))
    assert decoded == {"clusterName": "a"}


def test_validation_messages_follow_coral() -> None:
    body = json.dumps({"resourceArn": "arn:x", "tags": [{"key": "k" * 129, "value": "v"}]}).encode()
    error = decode_error(raw_request("TagResource", body))
    assert (error.code, error.http_status) == ("InvalidParameterException", 400)
    assert error.message == (
        f"1 validation error detected: Value '{'k' * 129}' at 'tags.1.member.key' failed to satisfy "
        "constraint: Member must have length less than or equal to 128"
    )
    error = decode_error(raw_request("RegisterTaskDefinition", b"{}"))
    assert error.message.startswith("2 validation errors detected: ")
    assert "Value null at 'family' failed to satisfy constraint: Member must not be null" in error.message
    body = json.dumps({"family": "f", "containerDefinitions": [{"name": "a", "image": "b", "links": "x"}]})
    error = decode_error(raw_request("RegisterTaskDefinition", body.encode()))
    assert error.code == "SerializationException"
    assert error.message == "VALUE_STRING can not be converted to a List"


def test_unknown_target_and_malformed_body() -> None:
    assert decode_error(raw_request("Nope", b"{}")).code == "UnknownOperationException"
    missing = HttpRequest("POST", "/", "", {}, b"{}")
    assert decode_error(missing).code == "UnknownOperationException"
    assert decode_error(raw_request("ListClusters", b"[1]")).code == "SerializationException"
    assert decode_error(raw_request("ListClusters", b"{")).code == "SerializationException"


def test_result_parses_back_with_botocore() -> None:
    registered = dt.datetime(2026, 11, 27, 18, 0, 1, 500000, tzinfo=dt.UTC)
    result = {
        "taskDefinition": {
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1",
            "family": "web",
            "revision": 1,
            "status": "ACTIVE",
            "registeredAt": registered.timestamp(),
            "containerDefinitions": [{"name": "app", "image": "busybox", "cpu": 0, "essential": True}],
            "requiresAttributes": [{"name": "ecs.capability.task-eni"}],
            "internalOnly": "never on the wire",
        },
        "tags": [{"key": "k", "value": "v"}],
    }
    operation = SPEC.operations["DescribeTaskDefinition"]
    response = json11.encode_result(operation, result, "req-1")
    assert ("x-amzn-requestid", "req-1") in response.headers
    assert b"internalOnly" not in response.body
    parsed = create_parser("json").parse(
        {"status_code": 200, "headers": dict(response.headers), "body": response.body},
        BOTO_MODEL.operation_model("DescribeTaskDefinition").output_shape,
    )
    assert parsed["taskDefinition"]["registeredAt"] == registered
    assert (
        parsed["taskDefinition"]["containerDefinitions"] == result["taskDefinition"]["containerDefinitions"]
    )
    assert parsed["tags"] == result["tags"]


def test_error_parses_back_with_botocore() -> None:
    response = json11.encode_error(ClientError("ClusterNotFoundException", "Cluster not found."), "r")
    parsed = create_parser("json").parse(
        {"status_code": response.status, "headers": dict(response.headers), "body": response.body},
        BOTO_MODEL.operation_model("DescribeClusters").output_shape,
    )
    assert parsed["Error"] == {"Code": "ClusterNotFoundException", "Message": "Cluster not found."}
    assert response.status == 400


@given(st.text(max_size=200))
def test_tag_key_length_bounds_are_model_driven(key: str) -> None:
    shape = SPEC.operations["TagResource"].input
    assert shape is not None
    problems = validate(shape, {"resourceArn": "a", "tags": [{"key": key, "value": "v"}]})
    expected = ["min_length"] if not key else ["max_length"] if len(key) > 128 else []
    assert [p.kind for p in problems] == expected
