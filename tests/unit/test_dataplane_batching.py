"""Tasks starting or stopping together share reconciles: the data plane's work per task does not grow
with how many tasks start at once (each reconcile plans every wanted task)."""

from __future__ import annotations

import asyncio

from taskvpc.agent.dataplane import DataPlane
from tests.unit.test_agent_dataplane import Loader, run, task
from tests.unit.test_netplan import FakeDriver


def test_ten_tasks_starting_together_share_reconciles_and_all_get_their_networks() -> None:
    async def body(plane: DataPlane, driver: FakeDriver, loader: Loader) -> None:
        await plane.reconcile()
        before = plane.reconciles
        await asyncio.gather(*(plane.ensure_task(task(n)) for n in range(10, 20)))
        assert set(driver.tasks) == {f"t{n}" for n in range(10, 20)}
        assert plane.reconciles - before <= 2  # the first, then one for all that waited behind it
        before = plane.reconciles
        await asyncio.gather(*(plane.remove_task(f"t{n}") for n in range(10, 20)))
        assert driver.tasks == {}
        assert plane.reconciles - before <= 2

    run(body)


def test_a_change_made_after_a_reconcile_began_gets_a_reconcile_of_its_own() -> None:
    async def body(plane: DataPlane, driver: FakeDriver, loader: Loader) -> None:
        await plane.ensure_task(task(3))
        first = plane.reconciles
        await plane.ensure_task(task(4))  # nothing running: this one cannot be covered by an earlier one
        assert plane.reconciles == first + 1 and "t4" in driver.tasks
        await plane.remove_task("t3")
        assert plane.reconciles == first + 2 and "t3" not in driver.tasks

    run(body)
