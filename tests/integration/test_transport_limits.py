"""The socket-level limits (issue #12, item 3): uvicorn with ``GuardedHttpToolsProtocol`` on loopback.

Each limit is tested on a server with small limits (fast), then the whole attack of ``bench/abuse.py``
runs, scaled down, against a real ``taskvpc up`` while a signed client measures its latency.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from bench.abuse import Attack, measure, started_server
from taskvpc.api.limits import Limits
from taskvpc.api.server import guarded_protocol
from tests.integration.server import free_port

SMALL = Limits(
    max_request_line=1024,
    max_head_bytes=4096,
    max_headers=20,
    head_timeout=0.5,
    body_timeout=0.5,
    keep_alive_timeout=1,
    max_connections=8,
)


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    chosen = free_port()
    config = uvicorn.Config(
        hello,
        host="127.0.0.1",
        port=chosen,
        loop="asyncio",
        http=guarded_protocol(SMALL),
        ws="none",
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=int(SMALL.keep_alive_timeout),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield chosen
    server.should_exit = True
    thread.join(timeout=10)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 5 s pass)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def test_a_complete_request_is_answered(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status(answer(sock)) == 200


def test_oversize_head_is_431_and_never_buffered(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):  # 4 MiB of one header, never terminated
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed as soon as the head outgrew its limit
        assert status(answer(sock)) in (431, 0)
    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192)
        assert status(answer(sock)) == 431


def test_too_many_headers_and_long_request_line(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(30)) + b"\r\n")
        assert status(answer(sock)) == 431
    with connect(port) as sock:
        sock.sendall(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status(answer(sock)) == 414


def test_bodies_over_the_protocols_limit_are_413(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 16777216\r\n\r\n"
        )
        assert status(answer(sock)) == 413  # before a byte of the body was sent
    with connect(port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.1\r\n")
        sock.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(20):
                sock.sendall(b"10000\r\n" + b"a" * 65536 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert status(answer(sock)) in (413, 0)


def test_slow_head_and_slow_body_are_cut(port: int) -> None:
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert status(answer(sock)) == 408
        assert 0.4 < time.monotonic() - started < 3
    with connect(port) as sock:  # nothing at all: the same deadline
        assert status(answer(sock)) == 408
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        assert answer(sock) == b""  # closed: the application saw a disconnect, not a request
        assert 0.4 < time.monotonic() - started < 3


def test_idle_keep_alive_is_closed(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        while not first.endswith(b"\r\n\r\nok"):
            first += sock.recv(65536)
        assert status(first) == 200
        started = time.monotonic()
        assert answer(sock) == b""
        assert 0.5 < time.monotonic() - started < 4


def test_connections_beyond_the_limit_are_503(port: int) -> None:
    held = [connect(port) for _ in range(SMALL.max_connections)]
    try:
        time.sleep(0.1)
        with connect(port) as extra:
            assert status(answer(extra)) == 503
    finally:
        for sock in held:
            sock.close()


def test_signed_requests_stay_fast_under_the_abuse_bench() -> None:
    """bench/abuse.py, scaled down: slowloris, endless headers and unsigned 16 MiB bodies at once.

    The done-when of issue #12 (p99 < 50 ms at 200/20/4) is measured by the bench itself; here the
    bound is looser, as other work shares the machine."""
    attack = Attack(slow=100, oversize=8, header_mib=4, bodies=4, body_mib=16, duration=10.5, warmup=1.5)
    with started_server() as (server_port, pid):
        result = measure(server_port, pid, attack)
    print(result.summary())
    assert result.signed_errors == 0 and result.signed_requests > 100
    assert result.p99_ms < 250, result.summary()
    assert result.rss_peak_mib < 200, result.summary()
    answers = result.attacker_answers
    assert answers.get("slow 408", 0) >= attack.slow // 2, answers
    assert answers.get("oversize 431", 0) > 0 and answers.get("body 413", 0) > 0, answers
    assert answers.get("body chunked 413", 0) + answers.get("body chunked reset", 0) > 0, answers
    assert result.slow_closed_after_s is not None and 9 < result.slow_closed_after_s < 12
