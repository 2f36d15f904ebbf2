"""The console's server-sent event stream: the panel now, again only when it changes, ended by the
browser leaving; and the task page's stream served through the real application."""

from __future__ import annotations

import asyncio
from typing import Any

from taskvpc.console.http import event_stream, sse_message
from tests.console.support import Browser
from tests.integration.server import InProcessServer


def test_sse_message_gives_every_line_its_data_field() -> None:
    assert sse_message("task", "<p>\n1</p>") == b"event: task\ndata: <p>\ndata: 1</p>\n\n"


def test_stream_sends_changes_only_and_stops_when_the_browser_leaves() -> None:
    frames = iter(["a", "a", "b", "b", "b", "c"])
    sent: list[dict[str, Any]] = []
    left = asyncio.Event()

    async def render() -> str:
        value = next(frames, "c")
        if value == "c":
            left.set()
        return value

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(asyncio.wait_for(event_stream(send, receive, render, "task", interval=0.001), 5))
    assert sent[0]["status"] == 200
    assert (b"content-type", b"text/event-stream") in sent[0]["headers"]
    bodies = [m["body"] for m in sent[1:]]
    assert bodies == [sse_message("task", "a"), sse_message("task", "b"), sse_message("task", "c")]


def test_task_stream_through_the_application(signed_in: Browser, server: InProcessServer) -> None:
    """A task's stream answers with its panel first (here: the API's answer for an unknown task)."""
    transport = signed_in.transport
    headers = {
        "cookie": "; ".join(f"{k}={v}" for k, v in signed_in.cookies.items()),
        "accept": "text/event-stream",
    }
    server.client("ecs").create_cluster(clusterName="c1")
    scope_path = "/console/clusters/c1/tasks/" + "0" * 32 + "/events"
    sent: list[dict[str, Any]] = []
    first = asyncio.Event()

    async def call() -> None:
        from tests.support.inprocess import _asgi_headers

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": scope_path,
            "raw_path": scope_path.encode(),
            "query_string": b"",
            "headers": _asgi_headers(headers, transport.host),
            "client": ("127.0.0.1", 0),
            "server": (transport.host, 80),
        }
        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await first.wait()
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            sent.append(dict(message))
            if message.get("body"):
                first.set()

        await transport.app(scope, receive, send)

    asyncio.run_coroutine_threadsafe(call(), transport.loop).result(10)
    assert sent[0]["status"] == 200
    assert sent[1]["body"].startswith(b"event: task\ndata: ")
    assert b"not found" in sent[1]["body"]


def test_a_failing_render_ends_the_stream_instead_of_a_second_response(caplog: Any) -> None:
    sent: list[dict[str, Any]] = []

    async def render() -> str:
        raise RuntimeError("store went away")

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError

    async def send(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(asyncio.wait_for(event_stream(send, receive, render, "task"), 5))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[-1]["more_body"] is False
    assert "store went away" in caplog.text
