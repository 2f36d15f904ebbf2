"""Real clients against the real ASGI application, in this process: no server process, no socket.

:class:`AsgiTransport` runs the application on an event loop in a daemon thread (so agents' long polls
and the notifier behave as in ``taskvpc up``) and answers blocking calls from any thread. Two adapters put
unmodified clients on it:

* botocore: a ``before-send`` handler turns the prepared request into an ASGI call and hands botocore an
  ``AWSResponse`` (botocore then skips its HTTP session); :meth:`AsgiTransport.attach` registers it on a
  client or a session;
* urllib: while a transport is open, ``urllib.request.urlopen`` answers ``http://<its host>/...`` from it
  and leaves every other URL to the normal handler (the fake agent and raw-HTTP tests use urllib).

Each open transport has its own host name, so two control planes (two "hosts" on one database) can run
side by side. Opening and closing a transport runs the application's ASGI lifespan, as uvicorn does (the
control plane's reconcile loops start and stop with it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import io
import threading
import urllib.error
import urllib.request
import urllib.response
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from taskvpc.api.asgi import Application

HOST = "taskvpc.inprocess"  # transports' host names end in .inprocess

# Open transports by host name: what the urllib handler and the botocore hook route to.
_OPEN: dict[str, AsgiTransport] = {}


class _Body:
    """What ``AWSResponse`` reads its content from (``raw.stream()``)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


class AsgiTransport:
    def __init__(self, app: Application, host: str = HOST) -> None:
        self.app = app
        self.host = host
        self.endpoint = f"http://{host}"
        if host in _OPEN:
            raise ValueError(f"a transport for {host} is already open")
        self.loop = asyncio.new_event_loop()
        self._startup: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"asgi-{host}", daemon=True)
        self._thread.start()
        self._lifespan: asyncio.Queue[dict[str, Any]] | None = None
        self._lifespan_task = asyncio.run_coroutine_threadsafe(self._run_lifespan(), self.loop)
        concurrent.futures.wait(
            [self._startup, self._lifespan_task], timeout=30, return_when=concurrent.futures.FIRST_COMPLETED
        )
        if self._lifespan_task.done():
            self._lifespan_task.result()  # the application failed to start: raise its error here
        self._startup.result(0)
        if not _OPEN:
            urllib.request.install_opener(urllib.request.build_opener(_UrllibHandler()))
        _OPEN[host] = self

    async def _run_lifespan(self) -> None:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._lifespan = inbox
        await inbox.put({"type": "lifespan.startup"})

        async def send(message: Any) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._startup.set_result(None)

        await self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)

    def close(self) -> None:
        _OPEN.pop(self.host, None)
        if not _OPEN:
            urllib.request.install_opener(None)  # type: ignore[arg-type]
        inbox = self._lifespan
        if inbox is not None:
            self.loop.call_soon_threadsafe(inbox.put_nowait, {"type": "lifespan.shutdown"})
            self._lifespan_task.result(30)

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    # ---- one HTTP exchange ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str | bytes],
        body: bytes = b"",
        timeout: float | None = 60,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, headers, body) of one request; ``target`` is a path with its query, or a full URL."""
        parts = urlsplit(target)
        raw_path = parts.path or "/"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": "http",
            "path": unquote(raw_path),
            "raw_path": raw_path.encode("latin-1"),
            "query_string": parts.query.encode("latin-1"),
            "headers": _asgi_headers(headers, parts.netloc or self.host),
            "client": ("127.0.0.1", 0),
            "server": (self.host, 80),
        }
        future = asyncio.run_coroutine_threadsafe(self._call(scope, body), self.loop)
        return future.result(timeout)

    async def _call(self, scope: dict[str, Any], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # a client that never disconnects
            raise AssertionError("unreachable")

        async def send(message: Any) -> None:
            sent.append(dict(message))

        await self.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        out_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])]
        payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return int(start["status"]), out_headers, payload

    # ---- botocore ---------------------------------------------------------------------------------

    def before_send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        if urlsplit(request.url).hostname != self.host:
            return None
        body = request.body
        if body is None:
            data = b""
        elif isinstance(body, bytes | bytearray):
            data = bytes(body)
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body.read()
        status, headers, payload = self.request(request.method, request.url, dict(request.headers), data)
        return AWSResponse(request.url, status, dict(headers), _Body(payload))

    def attach(self, client_or_session: Any) -> Any:
        """Route a boto3/botocore client's (or a whole session's) requests for this host here."""
        events = getattr(client_or_session, "meta", None)
        emitter = events.events if events is not None else client_or_session.get_component("event_emitter")
        emitter.register("before-send", self.before_send)
        return client_or_session


def _asgi_headers(headers: Mapping[str, str | bytes], host: str) -> list[tuple[bytes, bytes]]:
    """Headers as a server receives them: bytes, with the ``Host`` an HTTP client adds from the URL."""
    out = [
        (name.lower().encode("latin-1"), value if isinstance(value, bytes) else str(value).encode("latin-1"))
        for name, value in headers.items()
    ]
    if not any(name == b"host" for name, _ in out):
        out.append((b"host", host.encode("latin-1")))
    return out


class _UrllibHandler(urllib.request.HTTPHandler):
    """``http://`` for an open transport's host answered in process; anything else over the network."""

    def http_open(self, req: urllib.request.Request) -> Any:
        transport = _OPEN.get(req.host)
        if transport is None:
            if req.host.endswith(".inprocess"):  # a transport that was closed: as a server that is gone
                raise urllib.error.URLError(ConnectionRefusedError(f"{req.host} is closed"))
            return super().http_open(req)
        data = req.data if isinstance(req.data, bytes) else b""
        try:
            status, headers, payload = transport.request(
                req.get_method(), req.full_url, dict(req.header_items()), data, req.timeout
            )
        except (concurrent.futures.CancelledError, TimeoutError, RuntimeError) as error:
            # The transport closed (or timed out) under a waiting call: a dropped connection to urllib.
            raise urllib.error.URLError(ConnectionResetError(str(error) or type(error).__name__)) from None
        message = http.client.HTTPMessage()
        for name, value in headers:
            message[name] = value
        response = urllib.response.addinfourl(io.BytesIO(payload), message, req.full_url, status)
        response.msg = http.client.responses.get(status, "")
        return response
