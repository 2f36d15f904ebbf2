"""The agent's one network reconciler (agent/dataplane.py) over an in-memory driver and firewall."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from taskvpc.agent import netplan
from taskvpc.agent.dataplane import DataPlane, NetworkFailed
from taskvpc.agent.security import FirewallSync
from taskvpc.agentapi.network import Eni, Subnet, Vpc
from taskvpc.agentapi.tasks import DesiredTask
from taskvpc.domain.lifecycle import DesiredStatus
from tests.unit.test_firewall_sync import Loader
from tests.unit.test_netplan import FakeDriver

CFG = netplan.NetConfig()
VPC = "vpc-0123456789abcdef0"
OTHER = "vpc-00000000000000002"
SUBNET = Subnet.of("subnet-0a", "172.31.0.0/20")


def task(n: int, vpc: str = VPC) -> DesiredTask:
    eni = Eni(
        f"att-{n}",
        f"eni-{n:017x}",
        f"0e:00:00:00:00:{n:02x}",
        f"172.31.0.{n}",
        20,
        SUBNET.gateway,
        SUBNET.subnet_id,
        vpc,
        security_group_ids=("sg-1",),
    )
    return DesiredTask(
        f"arn:aws:ecs:us-east-1:000000000000:task/default/t{n}", DesiredStatus.RUNNING, (), eni
    )


def run(fn: Callable[[DataPlane, FakeDriver, Loader], Awaitable[None]]) -> None:
    async def main() -> None:
        driver, loader = FakeDriver(), Loader()
        plane = DataPlane(driver, CFG, netns_paths=False, firewall=FirewallSync(loader, CFG))
        plane.set_vpcs([Vpc(VPC, ("172.31.0.0/16",), (SUBNET,))])
        try:
            await fn(plane, driver, loader)
        finally:
            plane.close()

    asyncio.run(main())


def test_tasks_get_their_networks_rules_first_and_lose_them() -> None:
    async def body(plane: DataPlane, driver: FakeDriver, loader: Loader) -> None:
        await asyncio.gather(plane.ensure_task(task(5)), plane.ensure_task(task(6)))
        assert set(driver.tasks) == {"t5", "t6"} and driver.calls.count(f"ensure_vpc_router {VPC}") == 1
        assert driver.routers[VPC].router_addrs == {"172.31.0.1"}  # the gateway the answer sent
        loaded = "".join(b for _, b in loader.batches)
        assert all(netplan.eni_port(CFG, f"eni-{n:017x}") in loaded for n in (5, 6))
        calls = len(driver.calls)
        await plane.ensure_task(task(5))  # nothing to do: the host is known, no observation either
        assert len(driver.calls) == calls
        await plane.remove_task("t5")
        assert plane.firewall is not None and set(driver.tasks) == {"t6"}
        assert [e.eni_id for e in plane.firewall.model(VPC).enis] == [f"eni-{6:017x}"]
        await plane.remove_task("t6")
        assert VPC in driver.routers  # the answer still lists the VPC: its router stays
        plane.set_vpcs([])
        await plane.reconcile()
        assert driver.routers == {} and driver.access == {}

    run(body)


def test_a_failure_is_the_task_s_and_the_next_reconcile_looks_again() -> None:
    async def body(plane: DataPlane, driver: FakeDriver, loader: Loader) -> None:
        driver.fail.add("ensure_task_network t5")
        with pytest.raises(NetworkFailed, match="failed"):
            await plane.ensure_task(task(5))
        assert plane.known is None  # observe again next time
        driver.fail.clear()
        assert await plane.ensure_task(task(5)) is None  # netns_paths=False
        assert "t5" in driver.tasks
        loader.broken.add(VPC)  # the firewall refuses: no veth without its rules
        with pytest.raises(NetworkFailed):
            await plane.ensure_task(task(7))
        assert "t7" not in driver.tasks
        bad = task(8)
        assert bad.eni is not None
        with pytest.raises(NetworkFailed, match="fits no subnet"):  # a gateway the subnet does not have
            await plane.ensure_task(replace(bad, eni=replace(bad.eni, gateway="172.31.0.9")))

    run(body)


def test_at_start_strays_and_routers_nobody_needs_go_and_kept_tasks_wait() -> None:
    async def body(plane: DataPlane, driver: FakeDriver, loader: Loader) -> None:
        for n, vpc in ((5, VPC), (6, OTHER), (7, VPC)):
            driver.ensure_vpc_router(vpc, [SUBNET])
            driver.ensure_task_network(vpc, netplan.TaskEni.of(f"t{n}", task(n, vpc).eni))  # type: ignore[arg-type]
        driver.strays.append(netplan.Stray("netns", "tvpc-junk"))
        plane.set_vpcs([])
        await plane.observe()
        plane.want(task(5))  # adopted
        plane.keep("t6")  # not desired, containers still stopping
        await plane.reconcile()
        assert set(driver.tasks) == {"t5", "t6"} and set(driver.routers) == {VPC, OTHER}
        assert driver.strays == [] and "remove_stray tvpc-junk" in driver.calls
        assert plane.matches(task(5)) and not plane.matches(task(7))
        await plane.remove_task("t6")  # its containers are gone: now the network and its router go
        assert set(driver.tasks) == {"t5"} and set(driver.routers) == {VPC}

    run(body)


def test_host_access_of_another_owner_is_said_once_and_tasks_run_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(plane: DataPlane, driver: FakeDriver, loader: Loader) -> None:
        def taken(vpc_id: str, cidrs: object) -> None:
            driver.calls.append(f"ensure_host_access {vpc_id}")
            raise netplan.HostAccessConflict(
                "the host link address 169.254.100.1 is already on interface tvbh1"
            )

        driver.ensure_host_access = taken  # type: ignore[method-assign]
        with caplog.at_level("WARNING"):
            await plane.ensure_task(task(5))
            await plane.ensure_task(task(6))
            await plane.reconcile()
        assert set(driver.tasks) == {"t5", "t6"} and not plane.failures
        assert plane.host_access is False and driver.calls.count(f"ensure_host_access {VPC}") == 1
        said = [r.getMessage() for r in caplog.records if "no host access" in r.getMessage()]
        assert said == [
            "no host access (tasks still run): the host link address 169.254.100.1 is already on "
            "interface tvbh1"
        ]

    run(body)
