"""The front door in process (issue #12, items 3 and 4): the real ASGI application on a real SQLite store,
driven by boto3 (its requests are handed to the app instead of a socket) and by hand-made requests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import orjson
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError as BotoClientError

from taskvpc.api.app import ControlPlane, Settings
from taskvpc.api.asgi import Application
from taskvpc.api.limits import QUERY_BODY_LIMIT
from taskvpc.store.db import Database, sqlite_url
from taskvpc.wire import query, sigv4
from taskvpc.wire.http import HttpRequest

AKID = "AKIATESTTRANSPORT001"
SECRET = "transport-test-secret-000000000000000000"
ACCOUNT = "123456789012"
HOST = "taskvpc.local"
ECS_TARGET = "AmazonEC2ContainerServiceV20141113."

Reply = tuple[int, dict[str, str], bytes]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    database = Database(sqlite_url(tmp_path))
    database.migrate()
    yield Application(ControlPlane(Settings(ACCOUNT, AKID, SECRET), database))
    database.dispose()


async def _call(app: Application, request: HttpRequest, chunks: list[bytes] | None = None) -> Reply | None:
    scope = {
        "type": "http",
        "method": request.method,
        "path": request.path,
        "raw_path": request.path.encode(),
        "query_string": request.query_string.encode(),
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()],
    }
    pending = [{"type": "http.request", "body": c, "more_body": True} for c in chunks or []]
    pending.append({"type": "http.request", "body": request.body, "more_body": False})
    if chunks is not None and request.body == b"":
        pending[-1] = {"type": "http.disconnect"}  # the peer goes away mid-body
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if not sent:
        return None
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def call(app: Application, request: HttpRequest, chunks: list[bytes] | None = None) -> Reply:
    reply = asyncio.run(_call(app, request, chunks))
    assert reply is not None
    return reply


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def to_http(prepared: AWSPreparedRequest) -> HttpRequest:
    url = urlsplit(prepared.url)
    headers = {
        k.lower(): (v.decode() if isinstance(v, bytes) else str(v)) for k, v in prepared.headers.items()
    }
    headers.setdefault("host", url.netloc)
    body = prepared.body or b""
    return HttpRequest(
        prepared.method,
        url.path or "/",
        url.query,
        headers,
        body if isinstance(body, bytes) else body.encode(),
    )


def client(app: Application, service: str, region: str = "us-east-1") -> Any:
    """A boto3 client whose requests the application answers in process."""
    made = boto3.client(
        service,
        region_name=region,
        endpoint_url=f"http://{HOST}",
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}),
    )

    def answer(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        status, headers, body = call(app, to_http(request))
        return AWSResponse(request.url, status, headers, _Raw(body))

    made.meta.events.register("before-send", answer)
    return made


def signed(request: HttpRequest, *, region: str = "us-east-1", service: str = "ecs") -> HttpRequest:
    return sigv4.sign_headers(
        request, access_key_id=AKID, secret=SECRET, region=region, service=service, now=datetime.now(UTC)
    )


def ecs_request(operation: str, body: bytes = b"{}") -> HttpRequest:
    headers = {
        "host": HOST,
        "content-type": "application/x-amz-json-1.1",
        "x-amz-target": ECS_TARGET + operation,
    }
    return HttpRequest("POST", "/", "", headers, body)


def error_of(reply: Reply) -> tuple[int, str, str]:
    status, _, body = reply
    if body.startswith(b"{"):
        document = orjson.loads(body)
        return status, document["__type"].rpartition("#")[2], document.get("message", "")
    text = body.decode()
    code = text.split("<Code>")[1].split("</Code>")[0]
    return status, code, text.split("<Message>")[1].split("</Message>")[0]


def boto_error(raised: pytest.ExceptionInfo[BotoClientError]) -> tuple[int, str, str]:
    response = raised.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


# --------------------------------------------------------------------------------------------------


def test_boto3_in_process_round_trip(app: Application) -> None:
    ecs = client(app, "ecs")
    ecs.create_cluster(clusterName="web")
    assert ecs.list_clusters()["clusterArns"] == [f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/web"]


def test_unsigned_form_body_is_refused_before_it_is_parsed(
    app: Application, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_parsing(*_: Any) -> Any:
        raise AssertionError("the form was parsed before the signature was checked")

    monkeypatch.setattr(query, "parse_form", no_parsing)
    body = b"Action=DescribeVpcs&Version=2016-11-15&" + b"a=b&" * (QUERY_BODY_LIMIT // 4 - 16)
    headers = {"host": HOST, "content-type": "application/x-www-form-urlencoded"}
    assert error_of(call(app, HttpRequest("POST", "/", "", headers, body))) == (
        400,
        "MissingParameter",
        "The request must contain the parameter AWSAccessKeyId",
    )
    # Signed with a wrong secret: the raw body's hash is compared, the form still never parsed.
    forged = sigv4.sign_headers(
        HttpRequest("POST", "/", "", headers, body),
        access_key_id=AKID,
        secret="not-the-secret",
        region="us-east-1",
        service="ec2",
        now=datetime.now(UTC),
    )
    assert error_of(call(app, forged))[:2] == (401, "AuthFailure")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_hostile_date_and_expiry_are_auth_errors(app: Application, caplog: pytest.LogCaptureFixture) -> None:
    request = signed(ecs_request("ListClusters"))
    headers = {k: v for k, v in request.headers.items() if k != "x-amz-date"}
    headers["date"] = "Fri, 31 Dec 9999 23:59:59 -2359"
    status, code, message = error_of(call(app, HttpRequest("POST", "/", "", headers, b"{}")))
    assert (status, code) == (400, "IncompleteSignatureException") and "RFC 1123" in message

    presigned = sigv4.presign(
        HttpRequest("GET", "/", "Action=DescribeVpcs&Version=2016-11-15", {"host": HOST}),
        access_key_id=AKID,
        secret=SECRET,
        region="us-east-1",
        service="ec2",
        now=datetime.now(UTC),
    )
    long_expiry = presigned.query_string.replace("X-Amz-Expires=3600", "X-Amz-Expires=" + "9" * 4400)
    status, code, _ = error_of(call(app, HttpRequest("GET", "/", long_expiry, {"host": HOST})))
    assert (status, code) == (400, "IncompleteSignature")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("region", ["", "<script>", "r" * 300, "us-east-99"])
def test_scope_region_must_be_a_real_region(app: Application, region: str) -> None:
    before = set(app.control_plane.regions_ready)
    status, code, message = error_of(call(app, signed(ecs_request("ListClusters"), region=region)))
    assert (status, code) == (400, "InvalidSignatureException")
    assert message == f"Credential should be scoped to a valid region, not '{region}'."
    assert app.control_plane.regions_ready == before  # no default VPC laid out for it


def test_every_partition_is_served(app: Application) -> None:
    for region in ("cn-north-1", "us-gov-west-1", "ap-east-2"):
        assert client(app, "ecs", region).list_clusters()["clusterArns"] == []
    with pytest.raises(BotoClientError) as raised:
        client(app, "ecs", "mars-north-1").list_clusters()
    assert boto_error(raised) == (
        400,
        "InvalidSignatureException",
        "Credential should be scoped to a valid region, not 'mars-north-1'.",
    )


def test_scope_service_must_be_the_endpoints(app: Application) -> None:
    status, code, message = error_of(call(app, signed(ecs_request("ListClusters"), service="ec2")))
    assert (status, code, message) == (
        400,
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'ecs'.",
    )
    form = HttpRequest(
        "POST",
        "/",
        "",
        {"host": HOST, "content-type": "application/x-www-form-urlencoded"},
        b"Action=DescribeVpcs&Version=2016-11-15",
    )
    assert error_of(call(app, signed(form, service="s3")))[:2] == (401, "AuthFailure")


def test_target_and_every_amz_header_must_be_signed(app: Application) -> None:
    ecs = client(app, "ecs")
    ecs.create_cluster(clusterName="keep")
    unsigned_target = signed(
        HttpRequest(
            "POST",
            "/",
            "",
            {"host": HOST, "content-type": "application/x-amz-json-1.1"},
            b'{"cluster":"keep"}',
        )
    )
    unsigned_target.headers["x-amz-target"] = ECS_TARGET + "DeleteCluster"
    assert error_of(call(app, unsigned_target)) == (
        400,
        "InvalidSignatureException",
        "There were headers present in the request which were not signed",
    )
    extra = signed(ecs_request("ListClusters"))
    extra.headers["x-amz-anything"] = "1"
    assert error_of(call(app, extra))[:2] == (400, "InvalidSignatureException")
    assert ecs.describe_clusters(clusters=["keep"])["clusters"][0]["status"] == "ACTIVE"


def _presigned_post(url: str, operation: str) -> HttpRequest:
    parts = urlsplit(url)
    headers = {
        "host": parts.netloc,
        "content-type": "application/x-amz-json-1.1",
        "x-amz-target": ECS_TARGET + operation,
    }
    return HttpRequest("POST", parts.path or "/", parts.query, headers, b"")


def test_botocore_presigned_ecs_posts_are_accepted(app: Application) -> None:
    ecs = client(app, "ecs")
    for name in ("web", "batch"):
        ecs.create_cluster(clusterName=name)
    url = ecs.generate_presigned_url(
        "describe_clusters", Params={"clusters": ["web", "batch"], "include": ["TAGS"]}, HttpMethod="POST"
    )
    status, _, body = call(app, _presigned_post(url, "DescribeClusters"))
    assert status == 200, body
    assert sorted(c["clusterName"] for c in orjson.loads(body)["clusters"]) == ["batch", "web"]

    url = ecs.generate_presigned_url("list_clusters", Params={"maxResults": 1}, HttpMethod="POST")
    status, _, body = call(app, _presigned_post(url, "ListClusters"))
    assert status == 200 and len(orjson.loads(body)["clusterArns"]) == 1 and "nextToken" in orjson.loads(body)

    # The URL is bound to its operation: another target is not what was signed.
    assert error_of(call(app, _presigned_post(url, "DeleteCluster")))[:2] == (
        400,
        "InvalidSignatureException",
    )
    tampered = _presigned_post(url.replace("maxResults=1", "maxResults=2"), "ListClusters")
    assert error_of(call(app, tampered))[:2] == (400, "InvalidSignatureException")


def test_a_form_says_what_was_signed(app: Application) -> None:
    """A signature over the group name 'mall eable' cannot create 'mall+eable' (issue #12's replay)."""
    pairs = "Action=CreateSecurityGroup&Version=2016-11-15&GroupName=mall%20eable&GroupDescription=d"
    presigned = sigv4.presign(
        HttpRequest("POST", "/", pairs, {"host": HOST}),
        access_key_id=AKID,
        secret=SECRET,
        region="us-east-1",
        service="ec2",
        now=datetime.now(UTC),
    )
    form = {"host": HOST, "content-type": "application/x-www-form-urlencoded"}
    replayed = presigned.query_string.replace("mall%20eable", "mall%2Beable").encode()
    assert error_of(call(app, HttpRequest("POST", "/", "", form, replayed)))[:2] == (401, "AuthFailure")
    spelled_as_forms_do = presigned.query_string.replace("mall%20eable", "mall+eable").encode()
    status, _, body = call(app, HttpRequest("POST", "/", "", form, spelled_as_forms_do))
    assert status == 200, body
    groups = client(app, "ec2").describe_security_groups()["SecurityGroups"]
    assert "mall eable" in {g["GroupName"] for g in groups}
    assert "mall+eable" not in {g["GroupName"] for g in groups}


def test_body_limits_and_disconnects(app: Application) -> None:
    headers = {"host": HOST, "content-type": "application/x-www-form-urlencoded"}
    too_large = {**headers, "content-length": str(QUERY_BODY_LIMIT + 1)}
    assert call(app, HttpRequest("POST", "/", "", too_large, b""))[0] == 413
    chunked = [b"a" * 65536] * (QUERY_BODY_LIMIT // 65536 + 1)
    assert call(app, HttpRequest("POST", "/", "", headers, b"x"), chunked)[0] == 413
    # A peer that leaves mid-body gets no answer, and its partial request is never handled.
    assert asyncio.run(_call(app, signed(ecs_request("CreateCluster", b"")), [b'{"clusterName":'])) is None
    assert client(app, "ecs").list_clusters()["clusterArns"] == []
