"""The control plane's ASGI application called in process with botocore-signed requests.

No socket and no server process: each request is signed by botocore's own SigV4 signer and handed to the
ASGI application through the suite's one in-process transport (tests/support/inprocess.py), so thousands
of requests (the fuzzer's) take seconds. The store is a real SQLite file; :meth:`InProcessApi.snapshot`
reads every table so a test can require that a refused request changed nothing.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sqlalchemy import select

from taskvpc.agentapi import PREFIX as AGENT_PREFIX
from taskvpc.api.app import ControlPlane, Settings
from taskvpc.api.asgi import Application
from taskvpc.store.db import Database, sqlite_url
from taskvpc.store.schema import metadata
from tests.support.inprocess import AsgiTransport

ACCOUNT_ID = "123456789012"
ACCESS_KEY_ID = "AKIDINPROCESS0000001"
SECRET_ACCESS_KEY = "inprocess/secret/key/0123456789abcdefghij"
REGION = "us-east-1"
ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
ENDPOINT = "http://127.0.0.1:4599"

Response = tuple[int, bytes, dict[str, str]]


class InProcessApi:
    def __init__(self, state_dir: Path) -> None:
        self.db = Database(sqlite_url(state_dir))
        self.db.migrate()
        settings = Settings(ACCOUNT_ID, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
        self.control_plane = ControlPlane(settings, self.db)
        self.control_plane.prepare_region(REGION)
        self.app = Application(self.control_plane)
        self.transport = AsgiTransport(self.app, host=f"api-{secrets.token_hex(4)}.inprocess")

    def close(self) -> None:
        self.transport.close()
        self.db.dispose()

    # ---------------------------------------------------------------------------------------------

    def send(
        self,
        body: bytes,
        headers: dict[str, str],
        *,
        service: str,
        region: str = REGION,
        path: str = "/",
        sign: bool = True,
        method: str = "POST",
    ) -> Response:
        request = AWSRequest(method=method, url=ENDPOINT + path, data=body, headers=headers)
        if sign:
            SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY), service, region).add_auth(request)
        prepared = request.prepare()
        # The full URL: the transport sends its host (127.0.0.1:4599) as the Host header that was signed.
        status, response_headers, payload = self.transport.request(
            method, ENDPOINT + path, dict(prepared.headers.items()), body
        )
        return status, payload, {name.lower(): value for name, value in response_headers}

    def ecs(self, operation: str, payload: Any = None, **kwargs: Any) -> tuple[int, Any]:
        """An ECS JSON 1.1 call; ``payload`` may be raw bytes. Returns (status, decoded JSON body)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload or {}).encode()
        headers = {"X-Amz-Target": ECS_TARGET + operation, "Content-Type": "application/x-amz-json-1.1"}
        status, raw, _ = self.send(body, headers, service="ecs", **kwargs)
        return status, json.loads(raw)

    def query(self, service: str, params: dict[str, str], **kwargs: Any) -> tuple[int, str]:
        """An EC2/STS query call with ``params`` as the form. Returns (status, XML text)."""
        body = urlencode(params).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        status, raw, _ = self.send(body, headers, service=service, **kwargs)
        return status, raw.decode()

    def ec2(self, action: str, **params: str) -> tuple[int, str]:
        return self.query("ec2", {"Action": action, "Version": "2016-11-15", **params})

    def agent(self, method: str, route: str, payload: Any = None) -> tuple[int, Any]:
        """A signed call of the agent API (docs/agent-api.md): ``route`` after its versioned prefix."""
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body else {}
        path = AGENT_PREFIX + route
        status, raw, _ = self.send(body, headers, service="ecs", path=path, method=method)
        return status, json.loads(raw)

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, sorted: equal snapshots mean the store did not change."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        with self.db.read() as connection:
            for table in metadata.sorted_tables:
                rows = connection.execute(select(table)).all()
                out[table.name] = sorted((tuple(row) for row in rows), key=repr)
        return out


class TracebackCatcher(logging.Handler):
    """Collects every log record that carries an exception (a traceback the server logged)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)
