"""The agent client over several control planes: endpoints parsed from a list or a comma string, and a
request that fails at one endpoint (a closed port, a 5xx) is retried at the next, for real sockets."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from taskvpc.agent.client import AgentApiError, AgentClient, AgentCredentials, Backoff, parse_endpoints

CREDENTIALS = AgentCredentials("AKIAFAILOVER00000001", "secret")


def test_endpoints_from_a_list_or_a_comma_string() -> None:
    one = parse_endpoints("http://127.0.0.1:4599, 10.0.0.2:80/base")
    two = parse_endpoints(["http://127.0.0.1:4599", "10.0.0.2:80/base"])
    assert one == two
    assert [(e.host, e.port, e.netloc, e.base) for e in one] == [
        ("127.0.0.1", 4599, "127.0.0.1:4599", ""),
        ("10.0.0.2", 80, "10.0.0.2:80", "/base"),
    ]
    with pytest.raises(ValueError):
        parse_endpoints(" , ")
    with pytest.raises(ValueError):
        parse_endpoints("https://x:1")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _serve(status: int, seen: list[str]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        await reader.readexactly(length)
        seen.append(head.split(b" ")[1].decode())
        body = json.dumps(
            {"containerInstanceArn": "arn:aws:ecs:us-east-1:1:container-instance/c/abc"}
        ).encode()
        writer.write(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n" % (status, len(body)) + body)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_a_failed_endpoint_fails_over_to_the_next() -> None:
    async def run() -> None:
        broken_seen: list[str] = []
        good_seen: list[str] = []
        broken = await _serve(503, broken_seen)  # answers, but cannot serve
        good = await _serve(200, good_seen)
        ports = [_closed_port(), broken.sockets[0].getsockname()[1], good.sockets[0].getsockname()[1]]
        client = AgentClient(
            [f"http://127.0.0.1:{p}" for p in ports],
            CREDENTIALS,
            backoff=Backoff(initial=0.001, maximum=0.01),
        )
        try:
            answer = await asyncio.wait_for(client.register({"cluster": "default"}), 10)
        finally:
            await client.close()
            broken.close()
            good.close()
        assert answer.instance_id == "abc"
        assert client.endpoint.port == ports[2]  # it stays on the one that answers
        assert len(broken_seen) == 1 and len(good_seen) == 1

    asyncio.run(run())


def test_a_refusal_does_not_fail_over() -> None:
    async def run() -> None:
        seen: list[str] = []
        refusing = await _serve(403, seen)
        other: list[str] = []
        spare = await _serve(200, other)
        client = AgentClient(
            [f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}" for s in (refusing, spare)], CREDENTIALS
        )
        try:
            with pytest.raises(AgentApiError):
                await client.register({"cluster": "default"})
        finally:
            await client.close()
            refusing.close()
            spare.close()
        assert len(seen) == 1 and other == []  # a 4xx is the request's fault: no other endpoint is asked

    asyncio.run(run())


def test_the_agent_takes_endpoints_repeated_or_as_a_list() -> None:
    from taskvpc.agent.main import build_parser

    args = build_parser().parse_args(["--endpoint", "http://a:1", "--endpoint", "http://b:2,http://c:3"])
    assert [e.netloc for e in parse_endpoints(args.endpoint)] == ["a:1", "b:2", "c:3"]
    assert build_parser().parse_args([]).endpoint is None  # then $TASKVPC_ENDPOINT or the default
