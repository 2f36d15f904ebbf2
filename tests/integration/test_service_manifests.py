"""Services are manifests: a toy service is one manifest plus one registration; services taskvpc does not
serve answer in their own SDK's error shape (botocore's parsers read a code and a message)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from taskvpc.api.service_models import served
from taskvpc.control.context import RequestContext
from taskvpc.control.manifest import ServiceManifest
from taskvpc.control.registry import SERVICES
from taskvpc.store import schema
from tests.integration.server import (
    ACCESS_KEY_ID,
    ACCOUNT_ID,
    REGION,
    SECRET_ACCESS_KEY,
    InProcessServer,
    Server,
    aws_error,
)

# ---- a toy service: its model, its one use case and its manifest are all it needs -------------------

TOY_MODEL: dict[str, Any] = {
    "version": "2.0",
    "metadata": {
        "apiVersion": "2024-01-01",
        "endpointPrefix": "toy",
        "jsonVersion": "1.1",
        "protocol": "json",
        "protocols": ["json"],
        "serviceFullName": "Toy Service",
        "serviceId": "Toy",
        "signatureVersion": "v4",
        "signingName": "toy",
        "targetPrefix": "Toy_20240101",
        "uid": "toy-2024-01-01",
    },
    "operations": {
        "Greet": {
            "name": "Greet",
            "http": {"method": "POST", "requestUri": "/"},
            "input": {"shape": "GreetRequest"},
            "output": {"shape": "GreetResponse"},
        },
        "Wave": {"name": "Wave", "http": {"method": "POST", "requestUri": "/"}},
    },
    "shapes": {
        "GreetRequest": {
            "type": "structure",
            "required": ["name"],
            "members": {"name": {"shape": "Name"}},
        },
        "GreetResponse": {"type": "structure", "members": {"greeting": {"shape": "String"}}},
        "Name": {"type": "string", "min": 1, "max": 16},
        "String": {"type": "string"},
    },
}


def greet(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"greeting": f"hello {params['name']} from {ctx.principal.arn} in {ctx.region}"}


TOY = ServiceManifest(
    model="toy",
    signing_name="toy",
    protocol="json",
    regional=False,
    handlers={"Greet": greet},
    document=TOY_MODEL,
)


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    state = tmp_path_factory.mktemp("toy")
    server = InProcessServer(state, host="toy.inprocess").start(services=(*SERVICES, TOY))  # the one line
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def toy_client(toy_server: InProcessServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A botocore client generated from the toy model, as for any AWS service."""
    models = tmp_path_factory.mktemp("models")
    (models / "toy" / "2024-01-01").mkdir(parents=True)
    (models / "toy" / "2024-01-01" / "service-2.json").write_text(json.dumps(TOY_MODEL))
    session = botocore.session.get_session()
    session.get_component("data_loader").search_paths.insert(0, str(models))
    client = session.create_client(
        "toy",
        endpoint_url=toy_server.endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 1}),
    )
    return toy_server.attach(client)


def test_a_toy_service_is_one_manifest_and_one_registration(
    toy_client: Any, toy_server: InProcessServer
) -> None:
    greeting = toy_client.greet(name="ada")["greeting"]
    assert greeting == f"hello ada from arn:aws:iam::{ACCOUNT_ID}:root in {REGION}"
    # The model validates its input like every other JSON service's ...
    with pytest.raises(ClientError) as excinfo:
        toy_client.greet(name="x" * 17)
    code, message, status = aws_error(excinfo)
    assert (code, status) == ("InvalidParameterException", 400)
    assert "Member must have length less than or equal to 16" in message
    # ... an operation without a use case says so, and the other services still answer.
    with pytest.raises(ClientError) as excinfo:
        toy_client.wave()
    assert aws_error(excinfo) == ("NotImplemented", "taskvpc does not implement the Wave operation yet.", 501)
    assert toy_server.client("sts").get_caller_identity()["Account"] == ACCOUNT_ID


def test_a_manifest_that_contradicts_its_model_is_refused() -> None:
    with pytest.raises(ValueError, match="manifest protocol 'query', model 'json'"):
        served([ServiceManifest("toy", "toy", "query", False, {}, document=TOY_MODEL)])
    with pytest.raises(ValueError, match="not in the model: \\['Dance'\\]"):
        served([ServiceManifest("toy", "toy", "json", False, {"Dance": greet}, document=TOY_MODEL)])
    with pytest.raises(ValueError, match="two services sign as 'toy'"):
        served([TOY, TOY])


def test_every_table_belongs_to_exactly_one_service() -> None:
    owners: dict[str, list[str]] = {}
    for manifest in SERVICES:
        for table in manifest.tables:
            owners.setdefault(table, []).append(manifest.model)
    assert {table: names for table, names in owners.items() if len(names) > 1} == {}
    assert set(owners) == set(schema.metadata.tables)


# ---- services taskvpc does not serve -----------------------------------------------------------------

# (service, call, kwargs): one per protocol family botocore speaks.
UNSERVED = [
    ("s3", "list_buckets", {}),  # rest-xml
    ("sqs", "list_queues", {}),  # json 1.0 (query-compatible)
    ("lambda", "list_functions", {}),  # rest-json
    ("sns", "list_topics", {}),  # query (IAM, the query example before, is served now)
    ("cloudwatch", "list_metrics", {}),  # smithy rpc-v2 cbor
    ("dynamodb", "list_tables", {}),  # json 1.0
]


@pytest.mark.parametrize(("service", "call", "kwargs"), UNSERVED, ids=[s for s, _, _ in UNSERVED])
def test_unserved_services_answer_in_their_own_shape(
    api: Server, service: str, call: str, kwargs: dict[str, Any]
) -> None:
    client = api.client(service)
    with pytest.raises(ClientError) as excinfo:
        getattr(client, call)(**kwargs)
    signing_name = client.meta.service_model.signing_name
    assert aws_error(excinfo) == ("NotImplemented", f"taskvpc does not serve {signing_name}", 501)


def test_aws_s3_ls_shows_a_readable_error(api: Server) -> None:
    listed = api.aws("s3", "ls", check=False)
    assert listed.returncode != 0
    assert (
        "(NotImplemented) when calling the ListBuckets operation: taskvpc does not serve s3" in listed.stderr
    )


def test_a_service_without_a_botocore_model_is_answered_by_the_request_shape(api: Server) -> None:
    """An unknown signing name: the error follows the request's shape (here JSON with X-Amz-Target)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method="POST",
        url=api.endpoint + "/",
        data=b"{}",
        headers={"X-Amz-Target": "Nope_1.Go", "Content-Type": "application/x-amz-json-1.0"},
    )
    SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY), "nope-svc", REGION).add_auth(request)
    status, body, headers = api.http("POST", "/", dict(request.prepare().headers), b"{}")
    assert status == 501
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert json.loads(body) == {"__type": "NotImplemented", "message": "taskvpc does not serve nope-svc"}


def test_model_path_is_never_a_file_path() -> None:
    """A signing name is looked up among botocore's service names only, never joined into a path."""
    from taskvpc.api.service_models import unserved_protocol

    assert unserved_protocol("../../etc") is None
    assert unserved_protocol("s3") == "rest-xml"
    assert unserved_protocol("monitoring") is None  # signs as monitoring, modelled as cloudwatch
