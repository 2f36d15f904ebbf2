"""The real ``aws`` CLI (a subprocess) against a real ``taskvpc up`` process: logs in and out."""

from __future__ import annotations

import json
import time

from tests.integration.server import TaskvpcServer


def test_aws_cli_logs_round_trip(live_api: TaskvpcServer) -> None:
    api = live_api
    api.aws("logs", "create-log-group", "--log-group-name", "/ecs/live")
    api.aws("logs", "create-log-stream", "--log-group-name", "/ecs/live", "--log-stream-name", "web/1")
    now = int(time.time() * 1000)
    events = [{"timestamp": now - 2, "message": "GET / 200"}, {"timestamp": now - 1, "message": "GET /x 404"}]
    put = api.aws(
        "logs",
        "put-log-events",
        "--log-group-name",
        "/ecs/live",
        "--log-stream-name",
        "web/1",
        "--log-events",
        json.dumps(events),
    )
    assert "rejectedLogEventsInfo" not in json.loads(put.stdout)
    got = json.loads(
        api.aws(
            "logs", "get-log-events", "--log-group-name", "/ecs/live", "--log-stream-name", "web/1"
        ).stdout
    )
    assert [e["message"] for e in got["events"]] == ["GET / 200", "GET /x 404"]
    assert got["nextForwardToken"].startswith("f/")
    found = json.loads(
        api.aws(
            "logs",
            "filter-log-events",
            "--log-group-name",
            "/ecs/live",
            "--filter-pattern",
            "[verb, path, status = 4*]",
        ).stdout
    )
    assert [(e["logStreamName"], e["message"]) for e in found["events"]] == [("web/1", "GET /x 404")]
    missing = api.aws(
        "logs", "get-log-events", "--log-group-name", "/nope", "--log-stream-name", "s", check=False
    )
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr
