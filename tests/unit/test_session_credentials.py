"""SigV4 with credential records: temporary keys need their session token and stop at their expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, strategies as st

from taskvpc.control.identity import Credential, Principal, StaticCredentials
from taskvpc.wire import sigv4
from taskvpc.wire.auth_errors import auth_error
from taskvpc.wire.http import HttpRequest

T0 = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
ACCOUNT = "123456789012"
ROOT = Credential("AKIAROOT000000000001", "root-secret-0000000000000000000000000000", Principal.root(ACCOUNT))
SESSION = Credential(
    "ASIASESSION000000001",
    "session-secret-00000000000000000000000000",
    Principal.assumed_role(ACCOUNT, "app", "task-1", "AROAEXAMPLE0000000001"),
    session_token="IQoJb3JpZ2luX2VjEXAMPLETOKEN",
    expires_at=T0 + timedelta(hours=1),
)
KEYS = StaticCredentials([ROOT, SESSION])


def _request(credential: Credential, token: str | None, at: datetime = T0) -> HttpRequest:
    body = b'{"cluster":"default"}'
    request = HttpRequest(
        "POST",
        "/",
        "",
        {
            "host": "127.0.0.1:8080",
            "content-type": "application/x-amz-json-1.1",
            "x-amz-target": "AmazonEC2ContainerServiceV20141113.ListTasks",
        },
        body,
    )
    return sigv4.sign_headers(
        request,
        access_key_id=credential.access_key_id,
        secret=credential.secret,
        region="us-east-1",
        service="ecs",
        now=at,
        session_token=token,
    )


def _failure(request: HttpRequest, now: datetime = T0) -> sigv4.AuthFailure:
    with pytest.raises(sigv4.AuthFailure) as excinfo:
        sigv4.verify(request, KEYS.resolve, now)
    return excinfo.value


def test_a_session_key_with_its_token_verifies() -> None:
    identity = sigv4.verify(_request(SESSION, SESSION.session_token), KEYS.resolve, T0)
    assert identity.access_key_id == SESSION.access_key_id
    assert KEYS.resolve(identity.access_key_id) == SESSION


@pytest.mark.parametrize("token", [None, "IQoJb3JpZ2luX2VjEXAMPLETOKEm", "", "IQoJb3JpZ2luX2VjEXAMPLETOKE"])
def test_a_session_key_without_its_exact_token_is_an_unknown_key(token: str | None) -> None:
    failure = _failure(_request(SESSION, token))
    assert failure.kind == "unknown_key"
    error = auth_error(failure, "query", T0)
    assert (error.code, error.message, error.http_status) == (
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
        403,
    )
    assert auth_error(failure, "json", T0).code == "UnrecognizedClientException"


def test_a_long_term_key_with_a_token_is_an_unknown_key() -> None:
    assert _failure(_request(ROOT, "IQoJb3JpZ2luX2VjEXAMPLETOKEN")).kind == "unknown_key"
    assert sigv4.verify(_request(ROOT, None), KEYS.resolve, T0).access_key_id == ROOT.access_key_id


def test_an_expired_session_is_refused_as_expired_token() -> None:
    assert SESSION.expires_at is not None
    late = SESSION.expires_at
    failure = _failure(_request(SESSION, SESSION.session_token, late), late)
    assert failure.kind == "expired_token"
    rows = {proto: auth_error(failure, proto, late) for proto in ("json", "query", "ec2")}
    assert {proto: (e.code, e.message, e.http_status) for proto, e in rows.items()} == {
        "json": ("ExpiredTokenException", "The security token included in the request is expired", 400),
        "query": ("ExpiredToken", "The security token included in the request is expired", 403),
        "ec2": ("RequestExpired", "Request has expired.", 400),
    }
    # One second before expiry it still works.
    early = late - timedelta(seconds=1)
    assert sigv4.verify(_request(SESSION, SESSION.session_token, early), KEYS.resolve, early)


def test_a_wrong_token_on_an_expired_session_is_still_invalid_not_expired() -> None:
    assert SESSION.expires_at is not None
    late = SESSION.expires_at + timedelta(seconds=5)
    assert _failure(_request(SESSION, "nope", late), late).kind == "unknown_key"


def test_presigned_session_requests_carry_the_token_in_the_query() -> None:
    request = HttpRequest(
        "GET", "/", "Action=GetCallerIdentity&Version=2011-06-15", {"host": "127.0.0.1:8080"}
    )
    signed = sigv4.presign(
        request,
        access_key_id=SESSION.access_key_id,
        secret=SESSION.secret,
        region="us-east-1",
        service="sts",
        now=T0,
        session_token=SESSION.session_token,
    )
    assert sigv4.verify(signed, KEYS.resolve, T0).presigned
    unsigned_token = sigv4.presign(
        request,
        access_key_id=SESSION.access_key_id,
        secret=SESSION.secret,
        region="us-east-1",
        service="sts",
        now=T0,
    )
    assert _failure(unsigned_token).kind == "unknown_key"


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40))
def test_no_other_token_is_accepted(token: str) -> None:
    if token != SESSION.session_token:
        assert _failure(_request(SESSION, token)).kind == "unknown_key"


def test_principals_are_spelled_as_sts_reports_them() -> None:
    assert Principal.root(ACCOUNT) == Principal(f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT, ACCOUNT)
    assert SESSION.principal.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/app/task-1"
    assert SESSION.principal.user_id == "AROAEXAMPLE0000000001:task-1"
    assert Principal.user(ACCOUNT, "dev", "AIDAEXAMPLE").arn == f"arn:aws:iam::{ACCOUNT}:user/dev"
    assert SESSION.temporary and not ROOT.temporary
