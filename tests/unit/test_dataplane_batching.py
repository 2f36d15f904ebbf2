"""Tasks starting or stopping together share reconciles: the data plane's work per task does not grow
with how many tasks start at once (each reconcile plans every wanted task)."""

from __future__ import annotations

import asyncio
import time

from taskvpc.agent import netplan
from taskvpc.agent.dataplane import DataPlane
from tests.unit.test_agent_dataplane import CFG, Loader, run, task
from tests.unit.test_netplan import FakeDriver


def test_ten_tasks_starting_together_share_reconciles_and_all_get_their_networks() -> None:
    async def body(plane: DataPlane, driver: FakeDriver, loader: Loader) -> None:
        await plane.ensure_task(task(3))  # the router and its firewall table are there
        before, loads = plane.reconciles, len(loader.batches)
        await asyncio.gather(*(plane.ensure_task(task(n)) for n in range(10, 20)))
        assert set(driver.tasks) == {"t3", *(f"t{n}" for n in range(10, 20))}
        assert plane.reconciles - before == 1  # one for all (not the first alone, then the others)
        assert len(loader.batches) == loads + 1  # so one firewall transaction for the ten ENIs
        before = plane.reconciles
        await asyncio.gather(*(plane.remove_task(f"t{n}") for n in range(10, 20)))
        assert set(driver.tasks) == {"t3"}
        assert plane.reconciles - before == 1

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


def test_networks_made_or_removed_in_one_reconcile_share_one_firewall_transaction() -> None:
    # (libnftables reads the table's chains back before each transaction: one per ENI grew with the host)
    async def body(plane: DataPlane, driver: FakeDriver, loader: Loader) -> None:
        await plane.ensure_task(task(3))  # the router and its table are there; then ten at once
        loads = len(loader.batches)
        calls_at_load: list[int] = []
        apply = loader.apply

        def recording(vpc_id: str, text: str) -> None:
            calls_at_load.append(len(driver.calls))
            apply(vpc_id, text)

        loader.apply = recording  # type: ignore[method-assign,assignment]
        calls = len(driver.calls)
        for n in range(10, 20):
            plane.want(task(n))
        await plane.reconcile()
        assert set(driver.tasks) == {"t3", *(f"t{n}" for n in range(10, 20))}
        assert len(loader.batches) == loads + 1  # one transaction for the ten
        assert calls_at_load == [calls]  # loaded before any of their veths was made
        text = loader.batches[-1][1]
        assert all(netplan.eni_port(CFG, f"eni-{n:017x}") in text for n in range(10, 20))
        assert {ip for _, ip in loader.forgotten} >= {f"172.31.0.{n}" for n in range(10, 20)}

        loader.forgotten.clear()
        for n in range(10, 20):
            plane.unwant(f"t{n}")
        await plane.reconcile()
        assert set(driver.tasks) == {"t3"}
        assert len(loader.batches) == loads + 2  # and one to unregister them, once their veths went
        assert calls_at_load[-1] == len(driver.calls)
        assert sorted(ip for _, ip in loader.forgotten) == sorted(f"172.31.0.{n}" for n in range(10, 20))
        assert netplan.eni_port(CFG, f"eni-{3:017x}") not in loader.batches[-1][1]

    run(body)


def test_tasks_sharing_a_reconcile_all_return_in_the_same_turn_of_the_loop() -> None:
    # Queued on the lock, they passed it one per turn, each behind whatever the earlier ones did next in
    # the loop (a container start's synchronous part): the tenth task's network was late by nine of them.
    async def body(plane: DataPlane, driver: FakeDriver, loader: Loader) -> None:
        await plane.ensure_task(task(3))
        turns = 0
        returned: list[int] = []

        async def ticker() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        async def start(n: int) -> None:
            await plane.ensure_task(task(n))
            returned.append(turns)
            time.sleep(0.002)  # the container start the network was for, in the loop's thread

        ticking = asyncio.ensure_future(ticker())
        try:
            await asyncio.gather(*(start(n) for n in range(10, 20)))
        finally:
            ticking.cancel()
        assert len(returned) == 10 and max(returned) - min(returned) <= 1, returned

    run(body)
