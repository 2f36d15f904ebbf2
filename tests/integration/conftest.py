"""Integration fixtures: one real server per store backend, wiped between tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fake_agent import FakeAgent
from tests.integration.server import TaskvpcServer
from tests.support.pgserver import ThrowawayPostgres, postgres_enabled

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[ThrowawayPostgres | None]:
    if not postgres_enabled():
        yield None
        return
    with ThrowawayPostgres() as server:
        yield server


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres: ThrowawayPostgres | None,
) -> Iterator[TaskvpcServer]:
    database_url = None
    if request.param == "postgres":
        if postgres is None:
            pytest.skip("TASKVPC_TEST_POSTGRES=0")
        module = request.module.__name__.rpartition(".")[2]
        database_url = postgres.create_database(f"t_{module}")
    state_dir: Path = tmp_path_factory.mktemp(f"taskvpc-{request.param}")
    instance = TaskvpcServer(state_dir, database_url).start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture()
def api(server: TaskvpcServer) -> TaskvpcServer:
    """The module's server, emptied for this test."""
    server.reset()
    return server


@pytest.fixture()
def ecs(api: TaskvpcServer):  # type: ignore[no-untyped-def]
    return api.client("ecs")


@pytest.fixture()
def agents(api: TaskvpcServer) -> Iterator[Callable[..., FakeAgent]]:
    """Make fake agents (docs/agent-api.md) against the test's server; their pollers stop afterwards."""
    made: list[FakeAgent] = []

    def make(**options: Any) -> FakeAgent:
        agent = FakeAgent(api, **options)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.stop()


@pytest.fixture()
def ec2(api: TaskvpcServer):  # type: ignore[no-untyped-def]
    return api.client("ec2")
