"""``aws logs tail`` of the real AWS CLI v2 (/usr/bin/aws, a subprocess) against a real ``taskvpc up``.

v2.9.19 tails with FilterLogEvents (``interleaved``, ``startTime`` from ``--since``), and ``--follow``
polls every 5 s with ``startTime`` set to the newest timestamp it printed, dropping events whose
``eventId`` it already showed: so the ids must be stable across calls, or lines print twice.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import TaskvpcServer
from tests.support import awscli_v2

pytestmark = pytest.mark.skipif(not awscli_v2.available(), reason=awscli_v2.MISSING)
GROUP = "/ecs/tail"


@pytest.fixture(scope="module")
def tail_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaskvpcServer]:
    """One SQLite ``taskvpc up`` (both stores are covered by test_logs.py; this is about the CLI)."""
    state_dir: Path = tmp_path_factory.mktemp("taskvpc-tail")
    instance = TaskvpcServer(state_dir).start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture()
def live_api(tail_server: TaskvpcServer) -> TaskvpcServer:
    tail_server.reset()
    return tail_server


def put(api: TaskvpcServer, stream: str, events: list[tuple[int, str]]) -> None:
    body = [{"timestamp": ts, "message": message} for ts, message in events]
    api.client("logs").put_log_events(logGroupName=GROUP, logStreamName=stream, logEvents=body)


def make_group(api: TaskvpcServer) -> int:
    logs = api.client("logs")
    logs.create_log_group(logGroupName=GROUP)
    for stream in ("web/1", "worker/1"):
        logs.create_log_stream(logGroupName=GROUP, logStreamName=stream)
    now = int(time.time() * 1000)
    put(api, "web/1", [(now - 3 * 3600_000, "GET /old 200"), (now - 3000, "GET / 200")])
    put(api, "worker/1", [(now - 2000, '{"level": "error", "job": 7}')])
    put(api, "web/1", [(now - 1000, "GET /missing 404")])
    return now


def test_tail_formats_since_and_filters(live_api: TaskvpcServer) -> None:
    now = make_group(live_api)
    tail = awscli_v2.run(live_api, "logs", "tail", GROUP, "--since", "1h").stdout.splitlines()
    # detailed (the default): ISO timestamp, stream name, message; both streams interleaved by time
    assert [line.split(" ", 2)[1:] for line in tail] == [
        ["web/1", "GET / 200"],
        ["worker/1", '{"level": "error", "job": 7}'],
        ["web/1", "GET /missing 404"],
    ]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((now - 3000) / 1000))
    assert tail[0].startswith(stamp)
    short = awscli_v2.run(
        live_api, "logs", "tail", GROUP, "--since", "4h", "--format", "short",
        "--filter-pattern", "GET", "--log-stream-names", "web/1",
    ).stdout.splitlines()  # fmt: skip
    assert [line.split(" ", 1)[1] for line in short] == ["GET /old 200", "GET / 200", "GET /missing 404"]
    json_filtered = awscli_v2.run(
        live_api, "logs", "tail", GROUP, "--since", "1h", "--format", "detailed",
        "--filter-pattern", '{ $.level = "error" }',
    ).stdout.splitlines()  # fmt: skip
    assert [line.split(" ", 1)[1] for line in json_filtered] == ['worker/1 {"level": "error", "job": 7}']
    bad = awscli_v2.run(live_api, "logs", "tail", GROUP, "--filter-pattern", "{ bad", check=False)
    assert bad.returncode != 0 and "InvalidParameterException" in bad.stderr
    missing = awscli_v2.run(live_api, "logs", "tail", "/ecs/nope", check=False)
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr


def test_tail_follow_shows_new_lines_once(live_api: TaskvpcServer) -> None:
    make_group(live_api)
    follower = subprocess.Popen(
        awscli_v2.argv(live_api, "logs", "tail", GROUP, "--follow", "--since", "1m", "--format", "short"),
        env=live_api.aws_cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        shown = [follower.stdout.readline().rstrip("\n").split(" ", 1)[1] for _ in range(3)]
        assert shown == ["GET / 200", '{"level": "error", "job": 7}', "GET /missing 404"]
        # same timestamp as a line already shown, and a newer one: each printed exactly once
        now = int(time.time() * 1000)
        put(live_api, "web/1", [(now, "GET /new 200"), (now, "GET /new 201")])
        put(live_api, "worker/1", [(now + 1, "job 8 done")])
        shown = [follower.stdout.readline().rstrip("\n").split(" ", 1)[1] for _ in range(3)]
        assert shown == ["GET /new 200", "GET /new 201", "job 8 done"]
    finally:
        follower.kill()
        _, errors = follower.communicate(timeout=30)
    assert "Error" not in errors
