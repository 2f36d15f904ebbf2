"""The long-running processes' collector settings after start-up (agent/gctune.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from taskvpc.agent import gctune


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.mark.usefixtures("restored_gc")
def test_startup_objects_are_frozen_and_young_collections_spaced_out() -> None:
    gc.set_threshold(700, 10, 10)
    kept = [Node() for _ in range(10)]  # start-up state that lives on
    gctune.settle_after_startup()
    assert gc.get_freeze_count() >= len(kept)  # no collection walks them any more
    assert gc.get_threshold() == (gctune.YOUNG_THRESHOLD, 10, 10)
    gctune.settle_after_startup()  # again (an agent that adopts twice): the same settings
    assert gc.get_threshold() == (gctune.YOUNG_THRESHOLD, 10, 10)


@pytest.mark.usefixtures("restored_gc")
def test_cycles_made_after_start_up_are_still_collected_on_their_own() -> None:
    gctune.settle_after_startup()
    node = Node()
    ref = weakref.ref(node)
    del node
    assert ref() is not None  # a cycle: reference counting alone does not free it
    allocated = [[] for _ in range(3 * gctune.YOUNG_THRESHOLD)]  # enough for a young collection
    assert ref() is None and allocated
