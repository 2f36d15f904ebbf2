"""Work that grows with the store stays off the event loop, and oversized input is refused early.

A handler that does not return (it waits for the test) must not hold up a cheap request or an agent's
long poll: handlers run on worker threads, the agent API on threads of its own. Both backends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from taskvpc.control.registry import SERVICES
from tests.integration.conftest import BACKENDS
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import InProcessServer, Server, aws_error
from tests.support.pgserver import ThrowawayPostgres


class Blocked:
    """A DescribeAccountAttributes that waits until the test lets it go."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, ctx: Any, params: dict[str, Any]) -> Any:
        self.entered.set()
        assert self.release.wait(60), "the test never released the blocked request"
        return self.handler(ctx, params)


@pytest.fixture(scope="module", params=BACKENDS)
def blocked_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres: ThrowawayPostgres | None,
) -> Iterator[tuple[InProcessServer, Blocked]]:
    database_url = None
    if request.param == "postgres":
        if postgres is None:
            pytest.skip("TASKVPC_TEST_POSTGRES=0")
        database_url = postgres.create_database("t_scale_blocked")
    manifests = []
    blocked: Blocked | None = None
    for manifest in SERVICES:
        if manifest.model == "ec2":
            blocked = Blocked(manifest.handlers["DescribeAccountAttributes"])
            manifest = replace(manifest, handlers={**manifest.handlers, "DescribeAccountAttributes": blocked})
        manifests.append(manifest)
    assert blocked is not None
    state_dir: Path = tmp_path_factory.mktemp(f"taskvpc-blocked-{request.param}")
    server = InProcessServer(state_dir, database_url, host=f"blocked-{request.param}.inprocess").start(
        manifests
    )
    try:
        yield server, blocked
    finally:
        blocked.release.set()
        server.stop()


def test_a_request_that_does_not_return_holds_up_nothing(
    blocked_server: tuple[InProcessServer, Blocked],
) -> None:
    server, blocked = blocked_server
    ec2 = server.client("ec2")
    agent = FakeAgent(server)  # type: ignore[arg-type]  # the same surface as TaskvpcServer
    agent.register()
    generation = agent.poll(after=0)["generation"]
    answer: dict[str, Any] = {}
    slow = threading.Thread(target=lambda: answer.update(ec2.describe_account_attributes()))
    slow.start()
    try:
        assert blocked.entered.wait(30)
        # While it waits: a cheap request, an immediate desired-state answer and a long poll that runs out.
        assert server.client("ec2").describe_vpcs()["Vpcs"]
        assert agent.poll(after=0)["generation"] == generation
        waited = agent.poll(after=generation, wait=0.2)
        assert waited["changed"] is False
        assert slow.is_alive() and not answer, "the blocked request is still blocked"
    finally:
        blocked.release.set()
        slow.join(30)
    assert answer["AccountAttributes"], "and it answers once released"


def test_a_task_definition_over_64_kib_is_refused_and_not_stored(api: Server, ecs: Any) -> None:
    container = {"name": "c", "image": "busybox", "memory": 16}
    big = {**container, "environment": [{"name": f"V{i}", "value": "x" * 1000} for i in range(70)]}
    with pytest.raises(ClientError) as excinfo:
        ecs.register_task_definition(family="huge", containerDefinitions=[big])
    code, message, status = aws_error(excinfo)
    assert (code, status) == ("ClientException", 400)
    assert message.startswith("Actual length: '") and message.endswith(
        "'. Max allowed length is '65536' bytes."
    )
    assert ecs.list_task_definitions(familyPrefix="huge")["taskDefinitionArns"] == []
    # Just under the limit is fine.
    fits = {**container, "environment": [{"name": f"V{i}", "value": "x" * 1000} for i in range(60)]}
    registered = ecs.register_task_definition(family="huge", containerDefinitions=[fits])["taskDefinition"]
    assert registered["revision"] == 1
