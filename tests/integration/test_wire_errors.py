"""Raw HTTP against the real server: authentication, malformed input and unknown operations.

Every client mistake gets AWS's code and status for its protocol; none is ever a 500.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.integration.server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, Server

ECS_TARGET = "AmazonEC2ContainerServiceV20141113."


def send(
    server: Server,
    body: bytes,
    headers: dict[str, str],
    *,
    sign: bool = True,
    service: str = "ecs",
    secret: str = SECRET_ACCESS_KEY,
    key: str = ACCESS_KEY_ID,
    when: float | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    request = AWSRequest(method="POST", url=server.endpoint + "/", data=body, headers=headers)
    if sign:
        signer = SigV4Auth(Credentials(key, secret), service, REGION)
        if when is not None:
            # botocore stamps the time itself; shift it to test skew handling.
            import datetime as dt
            from unittest import mock

            fixed = dt.datetime.fromtimestamp(when, dt.UTC).replace(tzinfo=None)
            with mock.patch("botocore.auth.datetime.datetime") as clock:
                clock.now.return_value = fixed
                clock.utcnow.return_value = fixed
                clock.strptime = dt.datetime.strptime
                signer.add_auth(request)
        else:
            signer.add_auth(request)
    prepared = request.prepare()
    return server.http("POST", "/", dict(prepared.headers), body)


def ecs_call(server: Server, operation: str, payload: Any = None, **kwargs: Any) -> tuple[int, Any]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload or {}).encode()
    headers = {"X-Amz-Target": ECS_TARGET + operation, "Content-Type": "application/x-amz-json-1.1"}
    status, raw, response_headers = send(server, body, headers, **kwargs)
    assert response_headers["content-type"] == "application/x-amz-json-1.1"
    assert response_headers.get("x-amzn-requestid")
    return status, json.loads(raw)


def query_call(server: Server, service: str, params: dict[str, str], **kwargs: Any) -> tuple[int, str]:
    body = urlencode(params).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    status, raw, _ = send(server, body, headers, service=service, **kwargs)
    return status, raw.decode()


def test_ecs_auth_failures(api: Server) -> None:
    assert ecs_call(api, "ListClusters", sign=False) == (
        400,
        {"__type": "MissingAuthenticationTokenException", "message": "Missing Authentication Token"},
    )
    status, body = ecs_call(api, "ListClusters", secret="not-the-secret")
    assert (status, body["__type"]) == (400, "InvalidSignatureException")
    assert body["message"].startswith("The request signature we calculated does not match")
    status, body = ecs_call(api, "ListClusters", key="AKIAUNKNOWNKEY000000")
    assert (status, body) == (
        400,
        {
            "__type": "UnrecognizedClientException",
            "message": "The security token included in the request is invalid.",
        },
    )
    status, body = ecs_call(api, "ListClusters", when=time.time() - 16 * 60)
    assert (status, body["__type"]) == (400, "InvalidSignatureException")
    assert body["message"].startswith("Signature expired:")
    assert ecs_call(api, "ListClusters", when=time.time() - 14 * 60)[0] == 200


def test_ec2_and_sts_auth_failures(api: Server) -> None:
    params = {"Action": "GetCallerIdentity", "Version": "2011-06-15"}
    status, body = query_call(api, "sts", params, secret="wrong")
    assert status == 403 and "<Code>SignatureDoesNotMatch</Code>" in body
    status, body = query_call(api, "sts", params)
    assert status == 200 and "<Arn>arn:aws:iam::123456789012:root</Arn>" in body
    ec2 = {"Action": "DescribeVpcs", "Version": "2016-11-15"}
    status, body = query_call(api, "ec2", ec2, secret="wrong")
    assert status == 401 and "<Code>AuthFailure</Code>" in body and "<RequestID>" in body
    status, body = query_call(api, "ec2", ec2, sign=False)
    assert status == 400 and "<Code>MissingParameter</Code>" in body


def test_ecs_malformed_input(api: Server) -> None:
    status, body = ecs_call(api, "CreateCluster", b"{not json")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body = ecs_call(api, "CreateCluster", {"clusterName": 5})
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body = ecs_call(api, "ListTaskDefinitions", {"sort": "SIDEWAYS"})
    assert (status, body["__type"]) == (400, "InvalidParameterException")
    assert body["message"] == (
        "1 validation error detected: Value 'SIDEWAYS' at 'sort' failed to satisfy constraint: "
        "Member must satisfy enum value set: [ASC, DESC]"
    )
    status, body = ecs_call(api, "RegisterTaskDefinition", {"family": "x"})
    assert (status, body["__type"]) == (400, "InvalidParameterException")
    assert (
        "Value null at 'containerDefinitions' failed to satisfy constraint: Member must not be null"
        in body["message"]
    )
    status, body = ecs_call(api, "NoSuchOperation", {})
    assert (status, body["__type"]) == (400, "UnknownOperationException")


def test_ec2_unknown_action(api: Server) -> None:
    status, body = query_call(api, "ec2", {"Action": "LaunchRockets", "Version": "2016-11-15"})
    assert status == 400
    assert "<Code>InvalidAction</Code>" in body
    assert "The action LaunchRockets is not valid for this web service." in body


def test_unimplemented_operation_says_so(api: Server) -> None:
    status, body = ecs_call(
        api, "ListServiceDeployments", {"service": "web"}
    )  # services exist; this does not
    assert status == 501 and body["__type"] == "NotImplemented"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    operation=st.sampled_from(
        ["CreateCluster", "RegisterTaskDefinition", "DescribeClusters", "ListTaskDefinitions"]
    ),
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    ["family", "clusterName", "containerDefinitions", "clusters", "name", "memory", "x"]
                ),
                children,
                max_size=4,
            )
        ),
        max_leaves=12,
    ),
)
def test_garbage_never_gets_a_500(api: Server, operation: str, payload: Any) -> None:
    status, body = ecs_call(api, operation, json.dumps(payload).encode())
    assert status < 500, body
    if status >= 400:
        assert body["__type"] in {
            "SerializationException",
            "InvalidParameterException",
            "ClientException",
            "ClusterNotFoundException",
        }


@pytest.mark.parametrize("path", ["/_taskvpc/health"])
def test_health(api: Server, path: str) -> None:
    assert api.http("GET", path, {})[0] == 200
