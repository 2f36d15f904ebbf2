"""The tasks' API relay (``taskvpc.agent.apirelay``) over real sockets: each task connection goes to the
control plane the agent's client uses now, moves on (and moves the client on) when that one refuses the
connection, and gives up quietly when none accepts it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from taskvpc.agent.apirelay import ApiRelay
from taskvpc.agent.client import AgentClient, AgentCredentials

CREDENTIALS = AgentCredentials("AKIARELAY00000000001", "secret")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _upstream(name: bytes, accepted: list[bytes]) -> asyncio.Server:
    """A stand-in control plane: answers what it was sent, prefixed with its name, then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(name)
        data = await reader.read()  # the task half-closed: the relay forwarded its end of stream
        writer.write(name + b":" + data)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def _ask(relay_port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
    writer.write(payload)
    writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def _with_relay(ports: list[int], body: Callable[[AgentClient, int], Awaitable[None]]) -> None:
    """Run ``body(client, relay_port)`` with a relay for a client of ``ports`` listening on 127.0.0.1."""
    client = AgentClient([f"http://127.0.0.1:{p}" for p in ports], CREDENTIALS)
    relay = ApiRelay(client, connect_timeout=3.0)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await relay.serve(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        assert relay.port == ports[0]  # what tasks are told: the first endpoint's port
        await body(client, _port(server))
    finally:
        server.close()
        await client.close()


def test_follows_the_clients_current_endpoint() -> None:
    async def run() -> None:
        accepted: list[bytes] = []
        a, b = await _upstream(b"a", accepted), await _upstream(b"b", accepted)

        async def body(client: AgentClient, relay_port: int) -> None:
            assert await _ask(relay_port, b"GET / HTTP/1.1\r\n\r\n") == b"a:GET / HTTP/1.1\r\n\r\n"
            client.unreachable(client.endpoint)  # the agent's own call failed there: it moved on
            assert await _ask(relay_port, b"second") == b"b:second"
            assert accepted == [b"a", b"b"]  # the relay went straight to b, as the client does

        try:
            await _with_relay([_port(a), _port(b)], body)
        finally:
            a.close()
            b.close()

    asyncio.run(run())


def test_a_refused_endpoint_moves_the_relay_and_the_client_on() -> None:
    async def run() -> None:
        accepted: list[bytes] = []
        b = await _upstream(b"b", accepted)
        dead = _closed_port()

        async def body(client: AgentClient, relay_port: int) -> None:
            assert client.endpoint.port == dead
            assert await _ask(relay_port, b"call") == b"b:call"  # one connection, and it worked
            assert client.endpoint.port == _port(b)  # the agent's next call goes there too
            assert await _ask(relay_port, b"again") == b"b:again"

        try:
            await _with_relay([dead, _port(b)], body)
        finally:
            b.close()
        assert accepted == [b"b", b"b"]

    asyncio.run(run())


def test_no_control_plane_closes_the_tasks_connection() -> None:
    async def body(client: AgentClient, relay_port: int) -> None:
        assert await _ask(relay_port, b"call") == b""  # closed, nothing relayed: the SDK retries

    asyncio.run(_with_relay([_closed_port(), _closed_port()], body))
