"""The console's own small slice of ASGI: a buffered request, responses, and a server-sent event stream.

The API's adapter (``api/asgi.py``) buffers every request and writes one answer; the console also needs
a response that stays open (SSE) and learns when its browser went away, so it speaks ASGI itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

log = logging.getLogger("taskvpc.console")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY_LIMIT = 1024 * 1024  # a pasted task definition fits (the API's JSON limit)

# Pages run scripts and styles from the console's own files only, and talk to nobody else.
SECURITY_HEADERS = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
]


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    scheme: str
    # The connection, for a page that answers with a stream (SSE) rather than one response.
    receive: Receive | None = None
    send: Send | None = None

    @property
    def form(self) -> dict[str, list[str]]:
        if not self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return {}
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    @property
    def htmx(self) -> bool:
        return self.headers.get("hx-request") == "true"


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def html(cls, text: str, status: int = 200) -> Response:
        headers = [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store")]
        return cls(status, text.encode(), headers + SECURITY_HEADERS)

    @classmethod
    def redirect(cls, location: str, status: int = 303) -> Response:
        return cls(status, b"", [("location", location), ("cache-control", "no-store")])

    @classmethod
    def text(cls, text: str, status: int) -> Response:
        return cls(status, text.encode(), [("content-type", "text/plain; charset=utf-8"), *SECURITY_HEADERS])


def headers_of(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


async def read_request(scope: Scope, receive: Receive) -> Request | None:
    """The buffered request; None when its body is over the limit or the client left."""
    headers = headers_of(scope)
    declared = headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > BODY_LIMIT:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > BODY_LIMIT:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return Request(
        method=str(scope["method"]),
        path=str(scope["path"]),
        query=parse_qs(scope.get("query_string", b"").decode("latin-1")),
        headers=headers,
        body=b"".join(chunks),
        scheme=str(scope.get("scheme", "http")),
    )


async def write(send: Send, response: Response) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def sse_message(event: str, data: str) -> bytes:
    """One server-sent event: every line of ``data`` gets its own ``data:`` field."""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {event}\n{lines}\n".encode()


async def event_stream(
    send: Send,
    receive: Receive,
    render: Callable[[], Awaitable[str]],
    event: str,
    *,
    interval: float = 0.25,
    ping: float = 15.0,
    stopping: Callable[[], bool] = lambda: False,
) -> None:
    """Send ``render()`` as ``event`` now and again whenever it changes (re-rendered every ``interval``
    seconds), with a comment every ``ping`` seconds, until the browser disconnects or the server stops."""
    headers = [
        (b"content-type", b"text/event-stream"),
        (b"cache-control", b"no-store"),
        (b"x-accel-buffering", b"no"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch())
    loop = asyncio.get_running_loop()
    last, last_sent = None, loop.time()
    try:
        while not gone.is_set() and not stopping():
            try:
                html = await render()
            except Exception:  # the response has started: end the stream; the browser reconnects
                log.exception("console event stream %s failed", event)
                break
            if html != last:
                await send(
                    {"type": "http.response.body", "body": sse_message(event, html), "more_body": True}
                )
                last, last_sent = html, loop.time()
            elif loop.time() - last_sent >= ping:
                await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
                last_sent = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gone.wait(), interval)
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()
