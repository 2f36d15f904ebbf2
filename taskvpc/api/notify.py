"""Wake-ups for the agents' long polls, within this server process.

A poll waiting on an instance holds that instance's :class:`asyncio.Event`; a request that changed the
instance's desired state wakes it once its transaction committed. The poller takes the event *before*
it reads the generation, so a change that commits after the read still wakes it. Other server processes
(several hosts on one PostgreSQL) are not reached this way: their pollers re-read the generation every
second as well.

The map holds its events weakly: an event lives only while a poll holds it, so polls for ids that never
get a wake-up (unknown ones, say) leave nothing behind once they answered.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable


class Notifier:
    def __init__(self) -> None:
        self._events: weakref.WeakValueDictionary[str, asyncio.Event] = weakref.WeakValueDictionary()
        self.closing = False  # the server is stopping: waiting polls answer at once

    def close(self) -> None:
        """Answer every waiting poll now (``unchanged``), and every later one without waiting."""
        self.closing = True
        self.wake_all()

    def event(self, key: str) -> asyncio.Event:
        """The event the next :meth:`wake` of ``key`` sets (shared by every poller of ``key``); keep a
        reference while waiting on it, as a poll does: an event nobody holds is forgotten."""
        event = self._events.get(key)
        if event is None:
            event = asyncio.Event()
            self._events[key] = event
        return event

    def wake(self, keys: Iterable[str]) -> None:
        for key in keys:
            event = self._events.pop(key, None)
            if event is not None:
                event.set()

    def wake_all(self) -> None:
        self.wake(list(self._events.keys()))

    def watched(self) -> int:
        """How many keys have an event now (each held by a waiting poll); tests check it drops to zero."""
        return len(self._events)
