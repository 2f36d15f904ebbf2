"""ASGI adapter: buffers each request into an ``HttpRequest`` and writes back an ``HttpResponse``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from taskvpc.api.agent_api import PREFIX as AGENT_PREFIX, AgentApi
from taskvpc.api.app import ControlPlane
from taskvpc.api.limits import body_limit
from taskvpc.console import PREFIX as CONSOLE_PREFIX, Console, wants_console
from taskvpc.control.reconcile import Runner
from taskvpc.wire.http import HttpRequest, HttpResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HEALTH = HttpResponse(200, b'{"status":"ok"}', [("content-type", "application/json")])
_TOO_LARGE = HttpResponse(
    413, b'{"message":"request body too large"}', [("content-type", "application/json")]
)


class Application:
    def __init__(
        self, control_plane: ControlPlane, reconcilers: Runner | None = None, region: str = "us-east-1"
    ) -> None:
        self.control_plane = control_plane
        self.agent_api = AgentApi(control_plane)
        self.console = Console(control_plane, region)  # the web console acts in ``region``
        self.reconcilers = reconcilers  # started and stopped with the server (the ASGI lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self._start, self._stop)
            return
        if scope["type"] != "http":
            return
        headers = _headers(scope)
        path = _path(scope)
        if path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"):
            await self.console(scope, receive, send)  # it streams (SSE), so it reads its own body
            return
        query_string = scope.get("query_string", b"").decode("latin-1")
        if wants_console(scope["method"], path, headers, query_string):  # a person's browser at /
            await _write_response(send, HttpResponse(303, b"", [("location", CONSOLE_PREFIX + "/")]))
            return
        limit = body_limit(path, headers)
        declared = headers.get("content-length", "0")
        if not declared.isdigit() or len(declared) > 12 or int(declared) > limit:
            await _write_response(send, _TOO_LARGE)
            return
        try:
            body = await _read_body(receive, limit)
        except _PeerGone:
            return  # never act on a truncated request; nobody is left to answer
        if body is None:  # a chunked body outgrew the limit
            await _write_response(send, _TOO_LARGE)
            return
        request = HttpRequest(
            method=scope["method"],
            path=path,
            query_string=query_string,
            headers=headers,
            body=body,
        )
        if request.path == "/_taskvpc/health":
            response = _HEALTH
        elif request.path == "/_taskvpc/reset" and request.method == "POST":
            response = await self.control_plane.reset(request)
        elif request.path.startswith(AGENT_PREFIX):
            response = await self.agent_api.handle(request)
        else:
            response = await self.control_plane.handle_aws(request)
        await _write_response(send, response)

    async def _start(self) -> None:
        if self.reconcilers is not None:
            loop, notifier = asyncio.get_running_loop(), self.control_plane.notifier

            def wake(instance_ids: Iterable[str]) -> None:  # from the runner's thread
                loop.call_soon_threadsafe(notifier.wake, tuple(instance_ids))

            self.reconcilers.start(wake)

    async def _stop(self) -> None:
        if self.reconcilers is not None:
            # Joined here, not in a worker thread: nothing is served any more, the join takes the key
            # under way (milliseconds), and yielding now would let the long polls uvicorn has just
            # cancelled answer 500 before the process ends.
            self.reconcilers.stop()


class _PeerGone(Exception):
    """The client disconnected before its request's body was complete."""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it grows past ``limit`` bytes; raises _PeerGone on a disconnect."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _PeerGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _path(scope: Scope) -> str:
    raw_path = scope.get("raw_path")
    return raw_path.decode("latin-1").partition("?")[0] if raw_path else str(scope["path"])


async def _write_response(send: Send, response: HttpResponse) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def _lifespan(
    receive: Receive, send: Send, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
