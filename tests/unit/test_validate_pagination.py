"""Pagination tokens: opaque, MAC'd, bound to their listing; anything else is the service's error."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, strategies as st

from taskvpc.domain.errors import ClientError
from taskvpc.domain.pagination import Pager, derive_key, is_int, is_pair, is_str

KEY = derive_key("secret")
BAD = ClientError("InvalidParameterException", "Invalid nextToken.")
PARAMS = {"cluster": "default", "maxResults": 10, "nextToken": "x"}


def pager(operation: str = "ecs:ListTasks", region: str = "us-east-1", **params: Any) -> Pager:
    return Pager.of(KEY, operation, region, "123456789012", {**PARAMS, **params})


def refused(pages: Pager, token: str, valid: Any = lambda _: True) -> str:
    with pytest.raises(ClientError) as caught:
        pages.decode(token, BAD, valid)
    return caught.value.code


positions = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)


@given(positions)
def test_tokens_round_trip(position: Any) -> None:
    assert pager().decode(pager().encode(position), BAD) == position


def test_page_size_and_token_members_do_not_bind() -> None:
    token = pager(maxResults=5).encode("a")
    assert pager(maxResults=100, nextToken=token).decode(token, BAD) == "a"


@pytest.mark.parametrize(
    "other",
    [
        pager(operation="ecs:ListContainerInstances"),
        pager(region="eu-west-1"),
        pager(cluster="other"),
        pager(desiredStatus="STOPPED"),
        Pager.of(derive_key("another installation"), "ecs:ListTasks", "us-east-1", "123456789012", PARAMS),
        Pager.of(KEY, "ecs:ListTasks", "us-east-1", "210987654321", PARAMS),
    ],
)
def test_a_token_is_refused_on_another_listing(other: Pager) -> None:
    assert refused(other, pager().encode("arn:aws:ecs:us-east-1:123456789012:task/default/1")) == BAD.code


def _unsigned(document: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "!!!",
        "e30",
        "bm90IGpzb24",
        _unsigned([1, {}]),  # the shape the fuzzer sent
        _unsigned({"v": 1, "after": ["fam", 2**70]}),  # the old unsigned format, forged
        "A" * 40,
        "é",
    ],
)
def test_forged_and_malformed_tokens_are_refused(token: str) -> None:
    assert refused(pager(), token) == BAD.code


def test_an_edited_token_is_refused() -> None:
    token = pager().encode(["fam", 3])
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-2] ^= 1
    assert refused(pager(), base64.urlsafe_b64encode(bytes(raw)).decode()) == BAD.code


def test_a_position_of_the_wrong_shape_is_refused() -> None:
    token = pager().encode([1, {}])
    assert refused(pager(), token, is_pair(is_str, is_int)) == BAD.code
    assert refused(pager(), pager().encode(2**70), is_int) == BAD.code
    assert pager().decode(pager().encode(["f", 2]), BAD, is_pair(is_str, is_int)) == ["f", 2]


def test_no_token_is_the_first_page() -> None:
    assert pager().decode(None, BAD) is None
    assert pager().decode("", BAD) is None
