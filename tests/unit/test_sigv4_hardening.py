"""SigV4 hardening (issue #12): hostile dates and expiries, scope regions, unsigned x-amz-* headers, the
form-encoding ambiguity, presigned JSON bodies, and the body limits. Pure: no server, no I/O."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.api.limits import (
    AGENT_BODY_LIMIT,
    JSON_BODY_LIMIT,
    OTHER_BODY_LIMIT,
    QUERY_BODY_LIMIT,
    body_limit,
)
from taskvpc.domain.errors import ClientError
from taskvpc.domain.regions import ALL_REGIONS, is_region
from taskvpc.wire import presigned_json, query, sigv4
from taskvpc.wire.auth_errors import auth_error
from taskvpc.wire.http import HttpRequest
from taskvpc.wire.sigv4 import AuthFailure, verify

AKID = "AKIDTASKVPC0000001"
SECRET = "tH1s/is+a/Secret/Key0123456789abcdefghij"
T0 = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


def secret_for(key: str) -> str | None:
    return SECRET if key == AKID else None


def signed(request: HttpRequest, *, region: str = "us-east-1", service: str = "ecs") -> HttpRequest:
    return sigv4.sign_headers(
        request, access_key_id=AKID, secret=SECRET, region=region, service=service, now=T0
    )


def failure_of(request: HttpRequest, **kwargs: object) -> AuthFailure:
    with pytest.raises(AuthFailure) as raised:
        verify(request, secret_for, T0, **kwargs)  # type: ignore[arg-type]
    return raised.value


ECS = HttpRequest(
    "POST",
    "/",
    "",
    {
        "host": "ecs.local",
        "content-type": "application/x-amz-json-1.1",
        "x-amz-target": "AmazonEC2ContainerServiceV20141113.ListClusters",
    },
    b"{}",
)


# --------------------------------------------------------------------------------------------------
# Hostile dates and expiries are malformed signatures, never an exception of Python's


@pytest.mark.parametrize(
    "date",
    [
        "Fri, 31 Dec 9999 23:59:59 -2359",  # OverflowError converting to UTC
        "Mon, 01 Jan 0001 00:00:00 +2359",
        "Fri, 31 Dec 99999 23:59:59 GMT",
        "yesterday",
        "",
    ],
)
def test_hostile_date_header_is_malformed(date: str) -> None:
    request = signed(ECS)
    headers = {k: v for k, v in request.headers.items() if k != "x-amz-date"}
    headers["date"] = date
    failure = failure_of(HttpRequest("POST", "/", "", headers, b"{}"))
    error = auth_error(failure, "json", T0)
    if failure.kind == "expired":  # read as a date (year 0001 is taken as 2001), just not a current one
        assert (error.code, error.http_status) == ("InvalidSignatureException", 400)
        return
    assert failure.kind == "malformed"
    assert (error.code, error.http_status) == ("IncompleteSignatureException", 400)
    assert "RFC 1123" in error.message


def test_year_9999_at_minus_2359_is_malformed() -> None:
    request = signed(ECS)
    headers = {k: v for k, v in request.headers.items() if k != "x-amz-date"}
    headers["date"] = "Fri, 31 Dec 9999 23:59:59 -2359"
    assert failure_of(HttpRequest("POST", "/", "", headers, b"{}")).kind == "malformed"


@pytest.mark.parametrize("expires", ["9" * 4301, "1" + "0" * 5000, "604801", "0", "-5", "²", "1.5"])
def test_hostile_presigned_expiry_is_malformed(expires: str) -> None:
    request = sigv4.presign(
        HttpRequest("GET", "/", "Action=DescribeVpcs", {"host": "ec2.local"}),
        access_key_id=AKID,
        secret=SECRET,
        region="us-east-1",
        service="ec2",
        now=T0,
    )
    query_string = request.query_string.replace("X-Amz-Expires=3600", f"X-Amz-Expires={quote(expires)}")
    failure = failure_of(HttpRequest("GET", "/", query_string, request.headers))
    assert failure.kind == "malformed"
    assert "X-Amz-Expires must be a whole number" in auth_error(failure, "ec2", T0).message


# --------------------------------------------------------------------------------------------------
# The credential scope names a real region


def test_region_list_covers_every_partition() -> None:
    for region in ("us-east-1", "ap-east-2", "mx-central-1", "cn-north-1", "us-gov-west-1", "us-iso-east-1"):
        assert is_region(region)
    for region in ("", "<script>", "x" * 300, "US-EAST-1", "us-east-1 ", "local", "us-east-99"):
        assert not is_region(region)
    assert len(ALL_REGIONS) > 40


@pytest.mark.parametrize("region", ["", "<script>", "r" * 300, "US-EAST-1"])
def test_scope_region_must_be_real(region: str) -> None:
    request = signed(ECS, region=region)
    failure = failure_of(request, valid_region=is_region)
    assert failure.kind == "bad_signature"
    assert failure.aws_message == f"Credential should be scoped to a valid region, not '{region}'."
    error = auth_error(failure, "json", T0)
    assert (error.code, error.http_status) == ("InvalidSignatureException", 400)
    assert auth_error(failure, "ec2", T0).code == "AuthFailure"


@pytest.mark.parametrize("region", ["cn-northwest-1", "us-gov-east-1", "eu-isoe-west-1", "il-central-1"])
def test_every_partitions_regions_verify(region: str) -> None:
    assert verify(signed(ECS, region=region), secret_for, T0, valid_region=is_region).region == region


# --------------------------------------------------------------------------------------------------
# Every x-amz-* header sent is signed


def test_unsigned_target_is_refused() -> None:
    without_target = {k: v for k, v in ECS.headers.items() if k != "x-amz-target"}
    request = signed(HttpRequest("POST", "/", "", without_target, b"{}"))
    request.headers["x-amz-target"] = "AmazonEC2ContainerServiceV20141113.DeleteCluster"
    failure = failure_of(request)
    assert failure.kind == "bad_signature"
    assert failure.detail.endswith("not signed: x-amz-target")
    error = auth_error(failure, "json", T0)
    assert (error.code, error.message) == (
        "InvalidSignatureException",
        "There were headers present in the request which were not signed",
    )


def test_any_unsigned_amz_header_is_refused_and_signed_ones_verify() -> None:
    request = signed(HttpRequest("POST", "/", "", {**ECS.headers, "x-amz-meta": "1"}, b"{}"))
    assert verify(request, secret_for, T0).service == "ecs"
    request.headers["x-amz-extra"] = "2"
    assert "x-amz-extra" in failure_of(request).detail
    # Headers outside x-amz-* may go unsigned, as botocore leaves user-agent and x-amzn-trace-id.
    relaxed = signed(ECS)
    relaxed.headers.update({"user-agent": "x", "x-amzn-trace-id": "Root=1"})
    assert verify(relaxed, secret_for, T0)


# --------------------------------------------------------------------------------------------------
# A form is verified as it will be decoded: '+' is a space on both sides


def _presigned_form(body: str) -> HttpRequest:
    """Auth parameters in a form body, as a query client may send a presigned request."""
    presigned = sigv4.presign(
        HttpRequest("POST", "/", body, {"host": "ec2.local"}),
        access_key_id=AKID,
        secret=SECRET,
        region="us-east-1",
        service="ec2",
        now=T0,
    )
    # presign() hashed an empty body; form-body auth signs the pairs with an empty payload: same thing.
    assert hashlib.sha256(b"").hexdigest() == sigv4.EMPTY_SHA256
    return HttpRequest(
        "POST",
        "/",
        "",
        {"host": "ec2.local", "content-type": "application/x-www-form-urlencoded"},
        presigned.query_string.encode(),
    )


def test_plus_and_percent_2b_are_different_values_under_one_signature() -> None:
    request = _presigned_form("Action=CreateSecurityGroup&GroupName=mall%20eable")
    assert verify(request, secret_for, T0).presigned
    as_plus = HttpRequest(
        request.method, "/", "", request.headers, request.body.replace(b"mall%20eable", b"mall+eable")
    )
    assert verify(as_plus, secret_for, T0).presigned  # the same value, spelled as forms do
    assert query.parse_form(as_plus.body, "")["GroupName"] == "mall eable"
    as_2b = HttpRequest(
        request.method, "/", "", request.headers, request.body.replace(b"mall%20eable", b"mall%2Beable")
    )
    assert failure_of(as_2b).kind == "bad_signature"  # 'mall+eable' was never signed


_PIECES = ["a", " ", "+", "%2B", "%2b", "%20", "%41", "~", "%7E", "é"]
_RAW = st.lists(st.sampled_from(_PIECES), max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(first=_RAW, second=_RAW)
def test_property_equal_canonical_forms_decode_alike(first: str, second: str) -> None:
    """Two raw values that sign alike must decode alike, or a replayed body could say something else."""
    one, two = first.replace(" ", "%20"), second.replace(" ", "%20")
    canonical = sigv4.canonical_query_string
    if canonical([("V", one)]) == canonical([("V", two)]):
        assert query.parse_form(f"V={one}".encode(), "") == query.parse_form(f"V={two}".encode(), "")


# --------------------------------------------------------------------------------------------------
# Nothing of an unsigned body is parsed before its key is known


def test_form_auth_parameters_are_found_without_splitting_the_body() -> None:
    request = _presigned_form("Action=DescribeVpcs")
    assert sigv4.credential_scope(request) == sigv4.CredentialScope(AKID, "20260314", "us-east-1", "ec2")
    padded = HttpRequest("POST", "/", "", request.headers, request.body + b"&x=" + b"y&" * 300_000)
    assert failure_of(padded).kind == "bad_signature"  # found, then refused: the padding was not signed


# --------------------------------------------------------------------------------------------------
# botocore's presigned POST for a JSON operation carries the parameters in the URL


def test_presigned_json_body_from_query() -> None:
    from taskvpc.api.service_models import service_spec

    ecs = service_spec("ecs")
    body = presigned_json.body_from_query(
        ecs.operations["DescribeClusters"],
        "clusters=a&clusters=b%20c&include=TAGS&X-Amz-Algorithm=AWS4-HMAC-SHA256&unknown=1",
    )
    assert body == b'{"clusters":["a","b c"],"include":["TAGS"]}'
    assert (
        presigned_json.body_from_query(ecs.operations["ListClusters"], "maxResults=5") == b'{"maxResults":5}'
    )
    for bad in ("maxResults=" + "9" * 5000, "maxResults=%C2%B2", "maxResults=five"):
        with pytest.raises(ClientError) as raised:
            presigned_json.body_from_query(ecs.operations["ListClusters"], bad)
        assert raised.value.code == "SerializationException"
    with pytest.raises(ClientError, match="cannot be sent in a presigned URL"):
        presigned_json.body_from_query(ecs.operations["RunTask"], "overrides=%7B%7D")


# --------------------------------------------------------------------------------------------------
# Body limits per protocol


def test_body_limits_per_protocol() -> None:
    assert body_limit("/", {"content-type": "application/x-amz-json-1.1"}) == JSON_BODY_LIMIT
    assert (
        body_limit("/", {"content-type": "application/x-www-form-urlencoded; charset=utf-8"})
        == QUERY_BODY_LIMIT
    )
    assert body_limit("/_taskvpc/agent/v1/register", {"content-type": "application/json"}) == AGENT_BODY_LIMIT
    assert body_limit("/_taskvpc/health", {}) == OTHER_BODY_LIMIT
    assert OTHER_BODY_LIMIT < JSON_BODY_LIMIT < 16 * 1024 * 1024


def test_amz_dates_at_the_edges_of_time_are_expired_not_errors() -> None:
    for amz_date in ("99991231T235959Z", "00010101T000000Z"):
        request = signed(ECS)
        request.headers["x-amz-date"] = amz_date
        failure = failure_of(request)
        assert failure.kind == "expired"
        assert auth_error(failure, "query", T0).message.startswith("Signature ")
