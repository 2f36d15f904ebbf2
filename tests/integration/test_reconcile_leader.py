"""Two control planes on one PostgreSQL never run a reconcile loop at the same time, and when the one
that leads dies, the other takes over.

Each runner has its own engine and its own leadership connection, as two ``taskvpc up`` processes would;
the loop's every pass records (owner, start, end) in a table, taking a while, so two passes at once
would show as overlapping intervals. The dying leader is a real process killed with SIGKILL.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, text

from taskvpc.control.context import RequestContext
from taskvpc.control.identity import Principal
from taskvpc.control.reconcile import AdvisoryLocks, Key, Runner
from taskvpc.store.db import Database
from tests.support.pgserver import ThrowawayPostgres

PASS_SECONDS = 0.03  # each pass holds its key this long: time enough to overlap if leadership were broken
PERIOD = 0.01


@dataclass(frozen=True)
class RecordingLoop:
    owner: str
    name: str = "recording"
    period: float = PERIOD

    def pending(self, conn: Connection, now: float) -> Sequence[Key]:
        return [Key("us-east-1", "the-key")]

    def reconcile(self, conn: Connection, ctx: RequestContext, key: Key) -> bool:
        started = time.time()
        time.sleep(PASS_SECONDS)
        conn.execute(
            text("INSERT INTO passes (owner, started, ended) VALUES (:owner, :started, :ended)"),
            {"owner": self.owner, "started": started, "ended": time.time()},
        )
        return True


def _context_for(db: Database) -> Callable[[str, float], RequestContext]:
    def make(region: str, now: float) -> RequestContext:
        return RequestContext(
            region=region,
            account_id="123456789012",
            principal=Principal.root("123456789012"),
            now=now,
            request_id="reconcile",
            db=db,
            new_id=lambda: str(uuid.uuid4()),
        )

    return make


def _runner(url: str, owner: str) -> tuple[Runner, Database]:
    db = Database(url)  # an engine of its own, as another process would have
    return Runner(db, [RecordingLoop(owner)], _context_for(db), leadership=AdvisoryLocks(url)), db


def _child(url: str) -> None:
    """A control plane in another process: runs its loops until it is killed."""
    runner, _db = _runner(url, "child")
    runner.start()
    while True:
        time.sleep(1)


@pytest.fixture()
def database_url(postgres: ThrowawayPostgres | None) -> Iterator[str]:
    if postgres is None:
        pytest.skip("TASKVPC_TEST_POSTGRES=0")
    name = f"t_leader_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(name)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("CREATE TABLE passes (owner TEXT, started DOUBLE PRECISION, ended DOUBLE PRECISION)")
        )
    engine.dispose()
    yield url
    postgres.drop_database(name)


def _passes(url: str) -> list[tuple[str, float, float]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT owner, started, ended FROM passes ORDER BY started")).all()
    finally:
        engine.dispose()
    return [(str(o), float(s), float(e)) for o, s, e in rows]


def _assert_never_two_at_once(passes: list[tuple[str, float, float]]) -> None:
    for (owner_a, _start_a, end_a), (owner_b, start_b, _end_b) in itertools.pairwise(passes):
        assert start_b >= end_a, f"{owner_b}'s pass began before {owner_a}'s ended"


def _until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s")
        time.sleep(0.05)
    return value


def _count(url: str, owner: str) -> int:
    return sum(1 for o, _s, _e in _passes(url) if o == owner)


def test_two_control_planes_never_run_a_loop_at_once(database_url: str) -> None:
    first, first_db = _runner(database_url, "first")
    second, second_db = _runner(database_url, "second")
    try:
        first.start()
        second.start()  # both try for the lead at once, every 10 ms
        time.sleep(1.0)
        owners = {o for o, _s, _e in _passes(database_url)}
        assert len(owners) == 1, owners  # one leader, and it keeps the lead
        leader, follower_name = (first, "second") if owners == {"first"} else (second, "first")

        leader.stop()  # gives the lead up: the other takes it on its next try
        _until(lambda: _count(database_url, follower_name) >= 5)
    finally:
        first.stop()
        second.stop()
        first_db.dispose()
        second_db.dispose()
    passes = _passes(database_url)
    assert len(passes) >= 20
    _assert_never_two_at_once(passes)


def test_when_the_leader_dies_another_takes_over(database_url: str) -> None:
    child = multiprocessing.get_context("spawn").Process(target=_child, args=(database_url,), daemon=True)
    child.start()
    survivor, survivor_db = _runner(database_url, "survivor")
    try:
        _until(lambda: _count(database_url, "child") >= 3, timeout=60)  # it leads (a spawn takes a while)
        survivor.start()
        time.sleep(0.5)
        assert _count(database_url, "survivor") == 0  # the child still leads

        killed_at = time.time()
        child.kill()  # SIGKILL: no clean-up; PostgreSQL ends its session, and its locks with it
        child.join(10)
        _until(lambda: _count(database_url, "survivor") >= 3)
    finally:
        if child.is_alive():
            child.kill()
            child.join(10)
        survivor.stop()
        survivor_db.dispose()
    passes = _passes(database_url)
    survivors = [s for o, s, _e in passes if o == "survivor"]
    assert min(survivors) >= killed_at  # not one pass while the child was alive
    assert all(s < killed_at for o, s, _e in passes if o == "child")
    _assert_never_two_at_once(passes)
