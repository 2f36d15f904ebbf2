"""The HTTP front door: uvicorn's httptools protocol, with the limits of ``api/limits.py`` on the socket.

uvicorn bounds neither the size of a request head (httptools buffers a header field until it ends, so
20 unterminated 20 MB headers cost 600 MiB) nor the time a peer may take to send it (a connection that
never completes a request is never closed). This subclass counts the bytes of each request head before
the parser sees them, and keeps one deadline per connection:

* from the connection (or the first byte of a keep-alive request) to the end of the head;
* from the end of the head to the end of the body (its size is checked against the protocol's limit
  on ``Content-Length`` before a byte of it is read, and as it arrives when chunked);
* idle time between requests is uvicorn's own ``timeout_keep_alive``.

A peer over a limit gets a short ``connection: close`` answer (431, 414, 413, 408 or 503) and the
connection is closed; no request reaches the application.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from taskvpc.api.limits import Limits, body_limit


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[Limits] = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # the next bytes belong to a request head
        self._head_bytes = 0
        self._body_bytes = 0
        self._body_limit = 0
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None

    # ---- connection ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections.")
            return
        self._arm(self.limits.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and not self._refused and self._head_bytes > self.limits.max_head_bytes:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Request header fields too large.")

    # ---- parser callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        if self._deadline is None:  # a keep-alive request: its head gets the same time as the first
            self._arm(self.limits.head_timeout)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        if len(self.url) > self.limits.max_request_line:
            self._refuse(HTTPStatus.REQUEST_URI_TOO_LONG, "Request line too long.")
            return
        if len(self.headers) > self.limits.max_headers:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many header fields.")
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in self.headers}
        path = self.url.partition(b"?")[0].decode("latin-1")
        self._body_limit = body_limit(path, headers)
        self._body_bytes = 0
        length = headers.get("content-length", "0").strip()
        if not length.isdigit() or len(length) > 12 or int(length) > self._body_limit:
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request body too large.")
            return
        self._arm(self.limits.body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self._body_limit:  # chunked: no Content-Length to check up front
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request body too large.")
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    # ---- deadlines and refusals ------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self._in_head:
            self._refuse(HTTPStatus.REQUEST_TIMEOUT, "Request head not received in time.")
        else:  # the application is waiting for the body: closing tells it the peer is gone
            self._refused = True
            self.transport.close()

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        self._refused = True
        self._disarm()
        if self.transport.is_closing():
            return
        body = orjson.dumps({"message": message})
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body)
        self.transport.close()


def guarded_protocol(limits: Limits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection (it passes no arguments of ours)."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
