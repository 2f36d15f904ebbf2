"""Integration fixtures: the control plane per store backend, wiped between tests.

``server``/``api`` run it in this process (tests.integration.server.InProcessServer): the fast default.
``live_server``/``live_api`` start a real ``taskvpc up`` process, for the few tests about the process.
``TASKVPC_TEST_SERVER=process`` runs the in-process tests against real processes too (full fidelity).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fake_agent import FakeAgent
from tests.integration.server import InProcessServer, TaskvpcServer
from tests.support.pgserver import ThrowawayPostgres, postgres_enabled

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[ThrowawayPostgres | None]:
    if not postgres_enabled():
        yield None
        return
    with ThrowawayPostgres() as server:
        yield server


def _database_url(
    request: pytest.FixtureRequest, postgres: ThrowawayPostgres | None, prefix: str
) -> str | None:
    if request.param != "postgres":
        return None
    if postgres is None:
        pytest.skip("TASKVPC_TEST_POSTGRES=0")
    module = request.module.__name__.rpartition(".")[2]
    return postgres.create_database(f"{prefix}_{module}")


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres: ThrowawayPostgres | None,
) -> Iterator[InProcessServer | TaskvpcServer]:
    database_url = _database_url(request, postgres, "t")
    state_dir: Path = tmp_path_factory.mktemp(f"taskvpc-{request.param}")
    kind = TaskvpcServer if os.environ.get("TASKVPC_TEST_SERVER") == "process" else InProcessServer
    instance = kind(state_dir, database_url).start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def live_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres: ThrowawayPostgres | None,
) -> Iterator[TaskvpcServer]:
    database_url = _database_url(request, postgres, "live")
    state_dir: Path = tmp_path_factory.mktemp(f"taskvpc-live-{request.param}")
    instance = TaskvpcServer(state_dir, database_url).start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture()
def live_api(live_server: TaskvpcServer) -> TaskvpcServer:
    """The module's ``taskvpc up`` process, emptied for this test."""
    live_server.reset()
    return live_server


@pytest.fixture()
def api(server: InProcessServer) -> InProcessServer:
    """The module's server, emptied for this test."""
    server.reset()
    return server


@pytest.fixture()
def ecs(api: InProcessServer):  # type: ignore[no-untyped-def]
    return api.client("ecs")


@pytest.fixture()
def agents(api: InProcessServer) -> Iterator[Callable[..., FakeAgent]]:
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
def ec2(api: InProcessServer):  # type: ignore[no-untyped-def]
    return api.client("ec2")


@pytest.fixture()
def planes(
    postgres: ThrowawayPostgres | None, tmp_path: Path
) -> Iterator[tuple[TaskvpcServer, TaskvpcServer]]:
    """Two ``taskvpc up --no-agent`` processes on one PostgreSQL database (several control planes)."""
    if postgres is None:
        pytest.skip("TASKVPC_TEST_POSTGRES=0")
    url = postgres.create_database(f"planes_{uuid.uuid4().hex[:8]}")
    first = TaskvpcServer(tmp_path / "a", url)
    second = TaskvpcServer(tmp_path / "b", url)
    try:
        first.start()
        second.start()  # after the first: its migrations and default VPC are there already
        yield first, second
    finally:
        first.stop()
        second.stop()
