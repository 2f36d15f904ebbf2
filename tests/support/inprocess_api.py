"""The control plane's ASGI application called in process with botocore-signed requests.

No socket and no server process: each request is signed by botocore's own SigV4 signer and handed to
the ASGI callable on one event loop, so thousands of requests (the fuzzer's) take seconds. The store is
a real SQLite file; :meth:`InProcessApi.snapshot` reads every table so a test can require that a refused
request changed nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
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
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        self.loop.close()
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
        wire_headers = [(b"host", b"127.0.0.1:4599")]
        for name, value in prepared.headers.items():
            raw = value if isinstance(value, bytes) else str(value).encode("latin-1")
            wire_headers.append((name.lower().encode("latin-1"), raw))
        return self.loop.run_until_complete(self._asgi(method, path, body, wire_headers))

    def raw(self, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> Response:
        return self.loop.run_until_complete(self._asgi(method, path, body, headers))

    async def _asgi(
        self, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> Response:
        path_part, _, query_string = path.partition("?")
        scope = {
            "type": "http",
            "method": method,
            "path": path_part,
            "raw_path": path.encode("latin-1"),
            "query_string": query_string.encode("latin-1"),
            "headers": headers,
        }
        sent = False
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        response_headers = {k.decode().lower(): v.decode() for k, v in started.get("headers", [])}
        return started["status"], b"".join(chunks), response_headers

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
