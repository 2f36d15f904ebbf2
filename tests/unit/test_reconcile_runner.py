"""The reconcile runner's mechanics with toy loops on a real (SQLite) store: periods, leadership, backoff
of failing keys and listings, wake-ups, and the thread's start and stop."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.identity import Principal
from taskvpc.control.reconcile import Backoff, Key, Runner, lock_key, period_for
from taskvpc.store.db import Database, sqlite_url


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ToyLoop:
    keys: list[Key] = field(default_factory=lambda: [Key("us-east-1", "a")])
    failing: set[str] = field(default_factory=set)
    listing_fails: bool = False
    name: str = "toy"
    period: float = 5.0
    listed: int = 0
    seen: list[tuple[str, float]] = field(default_factory=list)

    def pending(self, conn: Connection, now: float) -> Sequence[Key]:
        self.listed += 1
        if self.listing_fails:
            raise RuntimeError("listing failed")
        return list(self.keys)

    def reconcile(self, conn: Connection, ctx: RequestContext, key: Key) -> bool:
        self.seen.append((key.id, ctx.now))
        if key.id in self.failing:
            raise RuntimeError(f"{key.id} failed")
        ctx.notify.add(f"instance-of-{key.id}")
        return True


class Follower:
    """Leadership held by another process."""

    def __init__(self) -> None:
        self.released = False

    def leads(self, loop: str) -> bool:
        return False

    def release(self) -> None:
        self.released = True


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url(tmp_path))
    database.migrate()
    yield database
    database.dispose()


def _runner(db: Database, loop: ToyLoop, clock: Clock, **options: object) -> Runner:
    def make(region: str, now: float) -> RequestContext:
        return RequestContext(
            region, "123456789012", Principal.root("123456789012"), now, "r", db, lambda: str(uuid.uuid4())
        )

    return Runner(db, [loop], make, clock=clock, **options)  # type: ignore[arg-type]


def test_a_loop_runs_once_per_period(db: Database) -> None:
    clock, loop = Clock(), ToyLoop()
    runner = _runner(db, loop, clock)
    assert runner.run_due() == 5.0
    clock.now += 4.9
    runner.run_due()
    assert loop.listed == 1
    clock.now += 0.1
    runner.run_due()
    assert loop.listed == 2 and [t for _k, t in loop.seen] == [1000.0, 1005.0]


def test_a_follower_runs_nothing(db: Database) -> None:
    clock, loop, follower = Clock(), ToyLoop(), Follower()
    runner = _runner(db, loop, clock, leadership=follower)
    assert runner.run_pass("toy").led is False
    assert loop.listed == 0 and loop.seen == []
    runner.stop()
    assert follower.released


def test_a_failing_key_backs_off_exponentially_while_others_go_on(db: Database) -> None:
    clock = Clock()
    loop = ToyLoop(keys=[Key("us-east-1", "bad"), Key("us-east-1", "good")], failing={"bad"}, period=1.0)
    woken: list[str] = []
    runner = _runner(db, loop, clock, backoff=Backoff(base=2.0, cap=5.0))
    runner.wake = woken.extend
    tried_at = []
    for _ in range(12):
        result = runner.run_pass("toy")
        assert result.led and result.keys == 2
        tried_at += [t for k, t in loop.seen if k == "bad"]
        loop.seen.clear()
        clock.now += 1.0
    assert tried_at == [1000.0, 1002.0, 1006.0, 1011.0]  # after 2, 4, then the cap of 5 seconds
    assert woken == ["instance-of-good"] * 12  # only committed keys wake their agents
    loop.keys = [Key("us-east-1", "good")]  # "bad" needs no work any more: its backoff is forgotten
    runner.run_pass("toy")
    loop.keys.append(Key("us-east-1", "bad"))
    loop.failing.clear()
    assert runner.run_pass("toy").changed == 2


def test_a_failing_listing_backs_the_loop_off(db: Database) -> None:
    clock, loop = Clock(), ToyLoop(listing_fails=True, period=1.0)
    runner = _runner(db, loop, clock, backoff=Backoff(base=4.0, cap=60.0))
    runner.run_due()
    clock.now += 3.9
    runner.run_due()
    assert loop.listed == 1  # backing off: 4 s, not the period of 1 s
    clock.now += 0.1
    runner.run_due()
    assert loop.listed == 2
    loop.listing_fails = False
    clock.now += 8.0
    runner.run_due()
    assert loop.listed == 3 and loop.seen


def test_a_wake_that_fails_does_not_stop_the_pass(db: Database) -> None:
    loop = ToyLoop(keys=[Key("us-east-1", "a"), Key("us-east-1", "b")])
    runner = _runner(db, loop, Clock())

    def closed_loop(_ids: object) -> None:
        raise RuntimeError("Event loop is closed")

    runner.wake = closed_loop
    assert runner.run_pass("toy").changed == 2


def test_the_thread_runs_the_loops_and_stops(db: Database) -> None:
    ran = threading.Event()

    @dataclass
    class Signalling(ToyLoop):
        def reconcile(self, conn: Connection, ctx: RequestContext, key: Key) -> bool:
            ran.set()
            return super().reconcile(conn, ctx, key)

    loop = Signalling(period=0.05)
    runner = _runner(db, loop, time.time)  # type: ignore[arg-type]
    woken: list[str] = []
    runner.start(woken.extend)
    with pytest.raises(RuntimeError):
        runner.start()
    assert ran.wait(5)
    runner.stop()
    count = len(loop.seen)
    time.sleep(0.2)
    assert len(loop.seen) == count  # stopped: no more passes
    assert woken[0] == "instance-of-a"


def test_settings_helpers() -> None:
    assert period_for(3600) == 10.0 and period_for(60) == 6.0 and period_for(0.5) == 0.2
    assert lock_key("stopped-task-purge") == lock_key("stopped-task-purge")
    assert lock_key("stopped-task-purge") != lock_key("agent-connection")
    assert -(2**63) <= lock_key("x") < 2**63
    assert [Backoff(1.0, 10.0).delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    with pytest.raises(ValueError):
        Runner(None, [ToyLoop(), ToyLoop()], lambda r, n: None)  # type: ignore[arg-type]
