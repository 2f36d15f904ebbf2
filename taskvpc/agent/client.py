"""The agent's side of the agent API (``docs/agent-api.md``): a small asyncio HTTP/1.1 client on h11.

h11 (already installed with uvicorn) does the protocol; this module owns the sockets. Two keep-alive
connections: one for the desired-state long poll, one for register/report/deregister, so a report never
waits behind a poll. Every request is SigV4-signed (service ``ecs``) with ``taskvpc.wire.sigv4``.

Connection errors, timeouts and 5xx answers are retried with exponential backoff and jitter (50 ms up to
5 s), forever: the agent must outlive a control-plane restart. Given several endpoints (control planes
sharing one store: a list, or a comma-separated string), each such failure moves every connection to the
next endpoint in turn, so the agent fails over to a live control plane within a retry. A 4xx answer raises :class:`AgentApiError`
(the caller decides); nothing else escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import h11

from taskvpc.agentapi import PREFIX
from taskvpc.agentapi.loadbalancers import TargetHealthReport
from taskvpc.agentapi.reports import Report
from taskvpc.wire.http import HttpRequest
from taskvpc.wire.sigv4 import sign_headers

log = logging.getLogger(__name__)

API_PREFIX = PREFIX.rstrip("/")
SERVICE = "ecs"
DEFAULT_REGION = "us-east-1"
MAX_WAIT = 30.0


class CredentialsLike(Protocol):
    @property
    def access_key_id(self) -> str: ...

    @property
    def secret_access_key(self) -> str: ...


@dataclass(frozen=True, slots=True)
class AgentCredentials:
    access_key_id: str
    secret_access_key: str


class AgentApiError(Exception):
    """A 4xx answer: the request itself was refused (bad signature, unknown instance, bad body)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class _ConnectionLost(Exception):
    pass


@dataclass(frozen=True, slots=True)
class RegisterAnswer:
    container_instance_arn: str
    availability_zone: str | None
    subnet_id: str | None
    vpc_id: str | None

    @property
    def instance_id(self) -> str:
        """The container instance id, as the agent API's URLs take it."""
        return self.container_instance_arn.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.05
    maximum: float = 5.0

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        return float(min(self.maximum, self.initial * 2**attempt) * (0.5 + rand() / 2))


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    netloc: str  # the Host header
    base: str  # a path prefix, if the control plane is served under one


def parse_endpoints(endpoints: str | Sequence[str]) -> list[Endpoint]:
    """``http://a:4599,http://b:4599`` or a list of URLs (``host:port`` alone means http)."""
    items = (
        endpoints.split(",") if isinstance(endpoints, str) else [e for x in endpoints for e in x.split(",")]
    )
    found = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        parts = urlsplit(item if "://" in item else f"http://{item}")
        if parts.scheme != "http":
            raise ValueError(f"only http:// endpoints are supported, got {item!r}")
        found.append(
            Endpoint(parts.hostname or "127.0.0.1", parts.port or 80, parts.netloc, parts.path.rstrip("/"))
        )
    if not found:
        raise ValueError("no control-plane endpoint given")
    return found


class _Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time; reconnects on demand."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._h11: h11.Connection | None = None
        self.lock = asyncio.Lock()

    async def _open(self) -> None:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader, self._writer, self._h11 = reader, writer, h11.Connection(h11.CLIENT)

    def retarget(self, host: str, port: int) -> None:
        """The next request connects to ``host:port`` (a kept-alive socket to the old one is closed then)."""
        self._host, self._port = host, port
        self._h11 = None  # _request reopens: close(), then _open() at the new address

    async def close(self) -> None:
        writer, self._writer, self._reader, self._h11 = self._writer, None, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> tuple[int, bytes]:
        try:
            return await self._request(method, target, headers, body)
        except BaseException:
            await asyncio.shield(self.close())
            raise

    async def _request(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> tuple[int, bytes]:
        if self._h11 is None or self._h11.our_state is not h11.IDLE:
            await self.close()
            await self._open()
        conn, reader, writer = self._h11, self._reader, self._writer
        assert conn is not None and reader is not None and writer is not None
        data = conn.send(h11.Request(method=method, target=target, headers=list(headers)))
        data += conn.send(h11.Data(data=body)) if body else b""
        data += conn.send(h11.EndOfMessage())
        writer.write(data)
        await writer.drain()
        status = 0
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                received = await reader.read(65536)
                if not received and conn.their_state is h11.SEND_RESPONSE:
                    raise _ConnectionLost("connection closed before the response")
                conn.receive_data(received)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise _ConnectionLost("connection closed")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self.close()
        return status, b"".join(chunks)


class AgentClient:
    """``register``, ``desired``, ``report`` and ``deregister`` against a control plane (one of several)."""

    def __init__(
        self,
        endpoint: str | Sequence[str],
        credentials: CredentialsLike,
        region: str = DEFAULT_REGION,
        *,
        backoff: Backoff | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.endpoints = parse_endpoints(endpoint)
        self._current = 0
        first = self.endpoints[0]
        self._credentials = credentials
        self._region = region
        self._backoff = backoff or Backoff()
        self._now = now
        self._poll = _Connection(first.host, first.port)
        self._main = _Connection(first.host, first.port)
        self._logs = _Connection(first.host, first.port)  # log shipping never delays a task's report
        self.closed = False

    @property
    def endpoint(self) -> Endpoint:
        """The control plane this client talks to now."""
        return self.endpoints[self._current]

    def _fail_over(self, failed: int) -> None:
        """After a failure at endpoint ``failed``: the next one (unless another call moved on already)."""
        if len(self.endpoints) < 2 or self._current != failed:
            return
        self._current = (failed + 1) % len(self.endpoints)
        target = self.endpoints[self._current]
        for conn in (self._poll, self._main, self._logs):
            conn.retarget(target.host, target.port)
        log.warning("agent api: failing over to %s", target.netloc)

    def unreachable(self, endpoint: Endpoint) -> None:
        """Another user of the endpoints (the tasks' API relay) could not reach ``endpoint``: move on as
        after a failed call of ours (nothing happens if it is not the current one any more)."""
        if endpoint in self.endpoints:
            self._fail_over(self.endpoints.index(endpoint))

    async def close(self) -> None:
        self.closed = True
        await self._poll.close()
        await self._main.close()
        await self._logs.close()

    # ------------------------------------------------------------------------------ API

    async def register(self, body: Mapping[str, Any]) -> RegisterAnswer:
        doc = await self._call(self._main, "POST", "/register", body=body)
        return RegisterAnswer(
            container_instance_arn=str(doc["containerInstanceArn"]),
            availability_zone=doc.get("availabilityZone"),
            subnet_id=doc.get("subnetId"),
            vpc_id=doc.get("vpcId"),
        )

    async def desired(
        self,
        instance_id: str,
        after: int,
        wait: float,
        *,
        since: int | None = None,
        have: str = "",
        keyed: str = "",
    ) -> dict[str, Any]:
        """The desired state after generation ``after``; with ``since`` (and ``have``, the held sections'
        digests; ``keyed``, the sections it merges by entry) a delta against that generation
        (``taskvpc.agentapi.delta``)."""
        wait = max(0.0, min(wait, MAX_WAIT))
        params: dict[str, Any] = {"after": after, "wait": f"{wait:g}"}
        if since is not None:
            params.update(since=since, have=have)
            if keyed:
                params["keyed"] = keyed
        query = urlencode(params)
        return await self._call(
            self._poll, "GET", f"/instances/{instance_id}/desired", query=query, timeout=wait + 15.0
        )

    async def report(self, instance_id: str, report: Report) -> dict[str, Any]:
        return await self._call(self._main, "POST", f"/instances/{instance_id}/report", body=report.to_wire())

    async def report_logs(self, instance_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A report carrying ``logEvents`` (``agentapi/logdriver.py``), on a connection of its own."""
        return await self._call(self._logs, "POST", f"/instances/{instance_id}/report", body=body)

    async def report_entries(self, instance_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A report body built by a feature's own module (e.g. ``agentapi.flowlogs.records_to_wire``)."""
        return await self._call(self._main, "POST", f"/instances/{instance_id}/report", body=body)

    async def target_health(self, instance_id: str, report: TargetHealthReport) -> dict[str, Any]:
        return await self._call(
            self._main, "POST", f"/instances/{instance_id}/target-health", body=report.to_wire()
        )

    async def deregister(self, instance_id: str) -> dict[str, Any]:
        return await self._call(self._main, "POST", f"/instances/{instance_id}/deregister", body={})

    # ------------------------------------------------------------------------------ plumbing

    def _signed(self, method: str, path: str, query: str, body: bytes) -> list[tuple[str, str]]:
        headers = {"host": self.endpoint.netloc}
        if body or method == "POST":
            headers["content-type"] = "application/json"
        request = HttpRequest(method=method, path=path, query_string=query, headers=headers, body=body)
        signed = sign_headers(
            request,
            access_key_id=self._credentials.access_key_id,
            secret=self._credentials.secret_access_key,
            region=self._region,
            service=SERVICE,
            now=self._now(),
        )
        out = list(signed.headers.items())
        out.append(("content-length", str(len(body))))
        return out

    async def _call(
        self,
        conn: _Connection,
        method: str,
        route: str,
        *,
        query: str = "",
        body: Mapping[str, Any] | None = None,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        payload = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        attempt = 0
        while True:
            used = self._current
            path = f"{self.endpoints[used].base}{API_PREFIX}{route}"
            target = f"{path}?{query}" if query else path
            try:
                async with conn.lock:
                    headers = self._signed(method, path, query, payload)
                    async with asyncio.timeout(timeout):  # not wait_for: 3.11's can swallow a cancel
                        status, data = await conn.request(method, target, headers, payload)
            except (OSError, TimeoutError, _ConnectionLost, h11.ProtocolError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= status < 300:
                    return _json(data)
                if 400 <= status < 500:
                    raise AgentApiError(status, _message(data))
                problem = f"HTTP {status}: {_message(data)}"
            if self.closed:
                raise AgentApiError(0, "client closed")
            self._fail_over(used)
            delay = self._backoff.delay(attempt)
            attempt += 1
            log.warning("agent api %s %s failed (%s); retrying in %.2fs", method, route, problem, delay)
            await asyncio.sleep(delay)


def _json(data: bytes) -> dict[str, Any]:
    if not data:
        return {}
    try:
        doc = json.loads(data)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _message(data: bytes) -> str:
    doc = _json(data)
    return str(doc.get("message") or doc.get("Message") or data[:200].decode(errors="replace"))
