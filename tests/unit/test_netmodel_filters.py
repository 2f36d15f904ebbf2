"""EC2 Describe* filters (taskvpc.netmodel.filters)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from taskvpc.domain.errors import ClientError
from taskvpc.netmodel.filters import FilterValue, check_filter_names, matches, value_matches

SUBNET: dict[str, FilterValue] = {
    "subnet-id": "subnet-0d0eab1bb3EXAMPLE",
    "vpc-id": "vpc-1a2b3c4d",
    "availability-zone": "us-east-1b",
    "cidr-block": "10.0.1.0/24",
    "default-for-az": False,
    "available-ip-address-count": 251,
    "ipv6-cidr-block-association.ipv6-cidr-block": None,
    "group-id": ["sg-1", "sg-2"],
}
TAGS = {"Name": "private-b", "env": "prod"}


def f(name: str, *values: str) -> dict[str, object]:
    return {"Name": name, "Values": list(values)}


def test_no_filters_match_everything() -> None:
    assert matches(None, SUBNET, TAGS)
    assert matches([], SUBNET, TAGS)


def test_and_across_filters_or_across_values() -> None:
    assert matches([f("vpc-id", "vpc-x", "vpc-1a2b3c4d")], SUBNET, TAGS)
    assert matches([f("vpc-id", "vpc-1a2b3c4d"), f("availability-zone", "us-east-1b")], SUBNET, TAGS)
    assert not matches([f("vpc-id", "vpc-1a2b3c4d"), f("availability-zone", "us-east-1a")], SUBNET, TAGS)
    assert not matches([f("vpc-id")], SUBNET, TAGS)  # no values: an empty OR


def test_multi_valued_attributes_and_missing_values() -> None:
    assert matches([f("group-id", "sg-2")], SUBNET, TAGS)
    assert not matches([f("group-id", "sg-3")], SUBNET, TAGS)
    assert not matches([f("ipv6-cidr-block-association.ipv6-cidr-block", "*")], SUBNET, TAGS)
    assert not matches([f("not-an-attribute", "*")], SUBNET, TAGS)


def test_booleans_and_numbers_compare_as_text() -> None:
    assert matches([f("default-for-az", "false")], SUBNET, TAGS)
    assert not matches([f("default-for-az", "true")], SUBNET, TAGS)
    assert not matches([f("default-for-az", "False")], SUBNET, TAGS)  # values are case-sensitive
    assert matches([f("available-ip-address-count", "251")], SUBNET, TAGS)


def test_wildcards() -> None:
    assert matches([f("availability-zone", "us-east-1?")], SUBNET, TAGS)
    assert matches([f("subnet-id", "subnet-*EXAMPLE")], SUBNET, TAGS)
    assert matches([f("cidr-block", "10.0.*")], SUBNET, TAGS)
    assert not matches([f("availability-zone", "us-east-?")], SUBNET, TAGS)
    assert not matches([f("cidr-block", "10.0")], SUBNET, TAGS)  # whole-value match
    assert not matches([f("cidr-block", "10?0?1?0/24")], {"cidr-block": "10.0.1.0/2"}, {})


@pytest.mark.parametrize(
    ("pattern", "value", "ok"),
    [
        (r"a\*b", "a*b", True),
        (r"a\*b", "axb", False),
        (r"a\?b", "a?b", True),
        (r"a\?b", "axb", False),
        ("a\\\\b", "a\\b", True),
        ("a\\b", "a\\b", True),  # a backslash before anything else is itself
        ("*", "", True),
        ("?", "", False),
        ("a.b", "axb", False),  # regex metacharacters are literal
        ("(x)[y]+", "(x)[y]+", True),
        ("multi*line", "multi\nline", True),
    ],
)
def test_value_matches(pattern: str, value: str, ok: bool) -> None:
    assert value_matches(pattern, value) is ok


def escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")


@given(st.text(max_size=20), st.text(max_size=20))
def test_escaped_pattern_matches_only_itself(a: str, b: str) -> None:
    assert value_matches(escape(a), a)
    assert value_matches(escape(a), b) == (a == b)
    assert value_matches(escape(a) + "*", b) == b.startswith(a)
    assert value_matches("*" + escape(a) + "*", b) == (a in b)


@given(st.text(alphabet="ab", max_size=6), st.text(alphabet="ab", max_size=6))
def test_question_mark_is_exactly_one_character(a: str, b: str) -> None:
    pattern = "?" * len(a)
    assert value_matches(pattern, b) == (len(b) == len(a))


def test_tag_filters() -> None:
    assert matches([f("tag:Name", "private-*")], SUBNET, TAGS)
    assert not matches([f("tag:Name", "public-*")], SUBNET, TAGS)
    assert not matches([f("tag:Owner", "*")], SUBNET, TAGS)  # the key must exist
    assert matches([f("tag:env", "dev", "prod")], SUBNET, TAGS)
    assert matches([f("tag-key", "env")], SUBNET, TAGS)
    assert not matches([f("tag-key", "prod")], SUBNET, TAGS)
    assert matches([f("tag-value", "prod")], SUBNET, TAGS)
    assert not matches([f("tag-value", "env")], SUBNET, TAGS)
    assert not matches([f("tag-key", "*")], SUBNET, {})


def test_unknown_filter_name() -> None:
    supported = {"subnet-id", "vpc-id"}
    check_filter_names(
        [f("vpc-id", "x"), f("tag:Name", "x"), f("tag-key", "x"), f("tag-value", "x")], supported
    )
    check_filter_names(None, supported)
    for bad in ("subnetid", "tag:", "VPC-ID"):
        with pytest.raises(ClientError) as e:
            check_filter_names([f("vpc-id", "x"), f(bad, "x")], supported)
        assert (e.value.code, e.value.message) == ("InvalidParameterValue", f"The filter '{bad}' is invalid")
    with pytest.raises(ClientError):
        check_filter_names([f("tag:Name", "x")], supported, tags=False)
