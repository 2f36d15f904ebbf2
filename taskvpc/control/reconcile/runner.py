"""The runner of keyed, level-triggered reconcile loops.

A loop says which keys need work now (:meth:`Loop.pending`, from the store, never from events: a missed
wake-up costs one period, never a lost change) and reconciles one key (:meth:`Loop.reconcile`), which
re-reads the key inside its own transaction and does nothing if the key no longer needs work. The runner
calls each loop once per period, only while this process leads it (:mod:`.leadership`), one key per
transaction; a key whose reconcile raised is retried after an exponential backoff, a loop whose listing
raised is tried again after one.

Time comes from an injected clock, so a test moves it by hand and calls :meth:`Runner.run_due`; in
production :meth:`Runner.start` runs the same method in a thread of its own (the passes do blocking
store calls and must not hold up the event loop).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.reconcile.leadership import Leadership, SoleProcess
from taskvpc.store.db import Database

log = logging.getLogger("taskvpc.reconcile")


class Key(NamedTuple):
    region: str
    id: str


class Loop(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def period(self) -> float:
        """Seconds between passes."""
        ...

    def pending(self, conn: Connection, now: float) -> Sequence[Key]:
        """The keys that need work at ``now`` (read-only)."""
        ...

    def reconcile(self, conn: Connection, ctx: RequestContext, key: Key) -> bool:
        """Bring ``key`` to what it should be at ``ctx.now``, in the caller's transaction; True if it
        changed anything."""
        ...


MakeContext = Callable[[str, float], RequestContext]  # (region, now) -> a context for that region
Wake = Callable[[Iterable[str]], None]  # wake the long polls of these container instances


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay after the n-th failure in a row: ``base * 2**(n-1)``, at most ``cap``."""

    base: float = 1.0
    cap: float = 300.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.base * 2 ** max(failures - 1, 0)))


@dataclass(slots=True)
class _Retry:
    failures: int
    not_before: float


@dataclass(slots=True)
class _LoopState:
    loop: Loop
    next_due: float = 0.0
    failures: int = 0  # listing failures in a row
    retries: dict[Key, _Retry] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PassResult:
    led: bool  # False: another process leads this loop; nothing was done
    keys: int = 0  # keys listed
    changed: int = 0  # keys whose reconcile changed something
    failed: int = 0  # keys whose reconcile raised (retried after a backoff)


class Runner:
    def __init__(
        self,
        db: Database,
        loops: Sequence[Loop],
        make_context: MakeContext,
        *,
        clock: Callable[[], float] = time.time,
        leadership: Leadership | None = None,
        backoff: Backoff = Backoff(),
    ) -> None:
        names = [loop.name for loop in loops]
        if len(set(names)) != len(names):
            raise ValueError(f"loop names must be unique: {names}")
        self.db = db
        self.make_context = make_context
        self.clock = clock
        self.leadership = leadership or SoleProcess()
        self.backoff = backoff
        self.wake: Wake = lambda _ids: None
        self._states = {loop.name: _LoopState(loop) for loop in loops}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- one pass ---------------------------------------------------------------------------------

    def run_pass(self, name: str) -> PassResult:
        """One pass of loop ``name`` now, whether due or not (if this process leads it)."""
        state = self._states[name]
        loop = state.loop
        now = self.clock()
        if not self.leadership.leads(name):
            state.next_due = now + loop.period  # try to take the lead again next period
            return PassResult(led=False)
        try:
            with self.db.read() as conn:
                keys = list(loop.pending(conn, now))
        except Exception:
            state.failures += 1
            state.next_due = now + max(loop.period, self.backoff.delay(state.failures))
            log.exception("reconcile loop %s: listing failed", name)
            return PassResult(led=True)
        state.failures = 0
        state.retries = {k: r for k, r in state.retries.items() if k in keys}  # gone: forget it
        changed = failed = 0
        for key in keys:
            if self._stopping.is_set():
                break
            retry = state.retries.get(key)
            if retry is not None and retry.not_before > now:
                continue
            ctx = self.make_context(key.region, self.clock())
            try:
                with self.db.transaction() as conn:
                    changed += bool(loop.reconcile(conn, ctx, key))
            except Exception:
                failed += 1
                failures = retry.failures + 1 if retry else 1
                state.retries[key] = _Retry(failures, ctx.now + self.backoff.delay(failures))
                log.exception("reconcile loop %s: key %s failed (%d in a row)", name, key, failures)
                continue
            state.retries.pop(key, None)
            if ctx.notify:
                self._wake(ctx.notify)
        state.next_due = now + loop.period
        if changed or failed:
            log.info("reconcile loop %s: %d keys, %d changed, %d failed", name, len(keys), changed, failed)
        return PassResult(led=True, keys=len(keys), changed=changed, failed=failed)

    def run_due(self) -> float:
        """Run every loop whose pass is due at ``clock()``; the seconds until the next one is due."""
        for name, state in self._states.items():
            if self._stopping.is_set():
                break
            if state.next_due <= self.clock():
                self.run_pass(name)
        return (
            max(0.0, min(s.next_due for s in self._states.values()) - self.clock()) if self._states else 1.0
        )

    def _wake(self, instance_ids: Iterable[str]) -> None:
        try:
            self.wake(instance_ids)
        except Exception:  # the event loop is closing: the agents re-read within a second anyway
            log.debug("reconcile: could not wake long polls", exc_info=True)

    # ---- in a thread ------------------------------------------------------------------------------

    def start(self, wake: Wake | None = None) -> None:
        """Run the loops in a daemon thread until :meth:`stop`; ``wake`` must be safe from any thread."""
        if self._thread is not None:
            raise RuntimeError("the reconcile runner is already running")
        if wake is not None:
            self.wake = wake
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="taskvpc-reconcile", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the key under way, then give up the lead (another process takes it over)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("reconcile: the runner did not stop within %.0f s", timeout)
            self._thread = None
        self.leadership.release()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                idle = self.run_due()
            except Exception:  # run_pass catches the loops' errors; this is the leadership's or ours
                log.exception("reconcile: pass failed")
                idle = 1.0
            self._stopping.wait(min(idle, 1.0) if idle > 0 else 0.01)
