"""Who is calling, as boto3 sees it: the root key, temporary session credentials with their token, expiry.

The control plane resolves the access key to a credential record (taskvpc.control.identity); requests then
act as its principal, which STS GetCallerIdentity reports.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from taskvpc.control.identity import Credential, Principal, StaticCredentials
from tests.integration.server import (
    ACCESS_KEY_ID,
    ACCOUNT_ID,
    REGION,
    SECRET_ACCESS_KEY,
    InProcessServer,
    aws_error,
)

ROLE = Principal.assumed_role(ACCOUNT_ID, "web-task", "a1b2c3", "AROATASKVPCWEB000001")
SESSION = Credential(
    "ASIATASKVPCSESSION01",
    "session-secret-for-tests-000000000000000",
    ROLE,
    session_token="FwoGZXIvYXdzEXAMPLE//session+token==",
    expires_at=datetime.now(UTC) + timedelta(hours=1),
)
EXPIRED = Credential(
    "ASIATASKVPCEXPIRED01",
    "expired-secret-for-tests-000000000000000",
    ROLE,
    session_token="FwoGZXIvYXdzEXPIRED",
    expires_at=datetime.fromtimestamp(time.time() - 60, UTC),
)
INVALID = ("InvalidClientTokenId", "The security token included in the request is invalid.", 403)
EXPIRED_TOKEN = ("ExpiredToken", "The security token included in the request is expired", 403)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    root = Credential(ACCESS_KEY_ID, SECRET_ACCESS_KEY, Principal.root(ACCOUNT_ID))
    keys = StaticCredentials([root, SESSION, EXPIRED])
    instance = InProcessServer(tmp_path_factory.mktemp("identities"), credentials=keys, host="id.inprocess")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def client(server: InProcessServer, service: str, credential: Credential, token: str | None) -> Any:
    made = boto3.client(
        service,
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=credential.access_key_id,
        aws_secret_access_key=credential.secret,
        aws_session_token=token,
        config=Config(retries={"max_attempts": 1}),
    )
    return server.attach(made)


def test_root_credentials_are_the_account_root(server: InProcessServer) -> None:
    identity = server.client("sts").get_caller_identity()
    assert (identity["UserId"], identity["Account"], identity["Arn"]) == (
        ACCOUNT_ID,
        ACCOUNT_ID,
        f"arn:aws:iam::{ACCOUNT_ID}:root",
    )


def test_session_credentials_act_as_their_principal(server: InProcessServer) -> None:
    sts = client(server, "sts", SESSION, SESSION.session_token)
    identity = sts.get_caller_identity()
    assert (identity["UserId"], identity["Account"], identity["Arn"]) == (
        "AROATASKVPCWEB000001:a1b2c3",
        ACCOUNT_ID,
        f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/web-task/a1b2c3",
    )
    ecs = client(server, "ecs", SESSION, SESSION.session_token)
    family = ecs.register_task_definition(
        family="who", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 32}]
    )["taskDefinition"]
    assert family["registeredBy"] == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/web-task/a1b2c3"


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEXAMPLE//session+token=!", "someone-elses"])
def test_session_credentials_need_their_exact_token(server: InProcessServer, token: str | None) -> None:
    with pytest.raises(ClientError) as excinfo:
        client(server, "sts", SESSION, token).get_caller_identity()
    assert aws_error(excinfo) == INVALID
    with pytest.raises(ClientError) as excinfo:
        client(server, "ecs", SESSION, token).list_clusters()
    assert aws_error(excinfo) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
        400,
    )
    with pytest.raises(ClientError) as excinfo:
        client(server, "ec2", SESSION, token).describe_vpcs()
    assert aws_error(excinfo)[:2] == (
        "AuthFailure",
        "AWS was not able to validate the provided access credentials",
    )


def test_the_root_key_with_a_token_is_refused(server: InProcessServer) -> None:
    root = Credential(ACCESS_KEY_ID, SECRET_ACCESS_KEY, Principal.root(ACCOUNT_ID))
    with pytest.raises(ClientError) as excinfo:
        client(server, "sts", root, "FwoGZXIvYXdzEXAMPLE").get_caller_identity()
    assert aws_error(excinfo) == INVALID


def test_expired_session_credentials_are_refused(server: InProcessServer) -> None:
    with pytest.raises(ClientError) as excinfo:
        client(server, "sts", EXPIRED, EXPIRED.session_token).get_caller_identity()
    assert aws_error(excinfo) == EXPIRED_TOKEN
    with pytest.raises(ClientError) as excinfo:
        client(server, "ecs", EXPIRED, EXPIRED.session_token).list_clusters()
    assert aws_error(excinfo) == (
        "ExpiredTokenException",
        "The security token included in the request is expired",
        400,
    )
    with pytest.raises(ClientError) as excinfo:
        client(server, "ec2", EXPIRED, EXPIRED.session_token).describe_vpcs()
    assert aws_error(excinfo) == ("RequestExpired", "Request has expired.", 400)
