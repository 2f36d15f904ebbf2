"""The model validator and the query decoder are total: nulls, out-of-range numbers, non-ASCII digits and
numbers of thousands of digits are problems or the service's errors, never exceptions of ours."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, strategies as st

from taskvpc.api.service_models import service_spec
from taskvpc.domain.errors import ClientError
from taskvpc.wire import json11, query
from taskvpc.wire.http import HttpRequest
from taskvpc.wire.validate import validate

ECS = service_spec("ecs")
EC2 = service_spec("ec2")


def problems(operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    shape = ECS.operations[operation].input
    assert shape is not None
    return [(p.kind, p.path) for p in validate(shape, params)]


def test_null_list_items_and_map_values_are_problems() -> None:
    container = {"name": "c", "image": "i", "environment": [None], "dockerLabels": {"a": None}}
    assert problems("RegisterTaskDefinition", {"family": "f", "containerDefinitions": [container]}) == [
        ("required", "containerDefinitions.1.member.environment.1.member"),
        ("required", "containerDefinitions.1.member.dockerLabels.a.value"),
    ]
    assert problems("DescribeTasks", {"tasks": ["t", None]}) == [("required", "tasks.2.member")]


@given(
    st.integers(min_value=2**31, max_value=2**64) | st.integers(max_value=-(2**31) - 1, min_value=-(2**64))
)
def test_integers_are_held_to_32_bits(value: int) -> None:
    kinds = problems("ListClusters", {"maxResults": value})
    assert kinds in ([("max_value", "maxResults")], [("min_value", "maxResults")])


def test_model_bounds_still_apply_inside_the_type_range() -> None:
    assert problems("ListClusters", {"maxResults": 5}) == []


def _ec2(params: dict[str, str]) -> dict[str, Any]:
    form = {"Action": "DescribeVpcs", "Version": EC2.api_version, **params}
    request = HttpRequest("POST", "/", "", {}, urlencode(form).encode())
    return query.decode_request(EC2, request)[1]


@pytest.mark.parametrize("raw", ["9" * 5000, "-" + "9" * 5000, "²", "\uff11", str(2**31), "1e3"])
def test_query_integers_out_of_range_are_invalid_values(raw: str) -> None:
    with pytest.raises(ClientError) as caught:
        _ec2({"MaxResults": raw})
    assert caught.value.code == "InvalidParameterValue"
    assert caught.value.message == f"Invalid value '{raw}' for maxResults."


def test_leading_zeros_do_not_count_as_digits() -> None:
    assert _ec2({"MaxResults": "0" * 40 + "7"}) == {"MaxResults": 7}


@pytest.mark.parametrize("index", ["9" * 5000, "²", "1" * 10])
def test_list_indexes_that_are_no_position(index: str) -> None:
    with pytest.raises(ClientError) as caught:
        _ec2({f"VpcId.{index}": "vpc-12345678"})
    assert caught.value.code == "UnknownParameter"


def test_json_nulls_in_lists_are_invalid_parameters() -> None:
    request = HttpRequest(
        "POST",
        "/",
        "",
        {"x-amz-target": "AmazonEC2ContainerServiceV20141113.DescribeClusters"},
        b'{"clusters": [null]}',
    )
    with pytest.raises(ClientError) as caught:
        json11.decode_request(ECS, request)
    assert caught.value.code == "InvalidParameterException"
    assert "Value null at 'clusters.1.member'" in caught.value.message


def test_encoding_never_fails_on_a_stored_null() -> None:
    operation = ECS.operations["DescribeTaskDefinition"]
    stored = {
        "taskDefinition": {"family": "f", "containerDefinitions": [{"name": "c", "environment": [None]}]}
    }
    response = json11.encode_result(operation, stored, "rid")
    assert response.status == 200
    assert b'"environment":[]' in response.body
