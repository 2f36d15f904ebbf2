"""The data plane as the engine sees it: the network driver's synchronous calls on one thread of their
own (the event loop stays free), VPC routers ensured once and on demand, and each task ENI's security
groups registered with the VPC's firewall before its veth exists (``security.FirewallSync``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from taskvpc.agent import netplan
from taskvpc.agent.kvlog import kv
from taskvpc.agent.security import FirewallSync
from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.network import Subnet, Vpc
from taskvpc.agentapi.tasks import DesiredTask
from taskvpc.netmodel.firewall_ir import EniPort

log = logging.getLogger(__name__)

T = TypeVar("T")


def task_eni(task: DesiredTask) -> netplan.TaskEni | None:
    if task.eni is None:
        return None
    return netplan.TaskEni(
        eni_id=task.eni.network_interface_id,
        mac=task.eni.mac,
        ip=task.eni.private_ipv4_address,
        prefix_len=task.eni.prefix_length,
        gateway=task.eni.gateway,
        task_key=task.task_id,
    )


# ---------------------------------------------------------------------------------------------- data plane


class DataPlane:
    """Async face of a ``netplan.NetworkDriver``: one thread for its calls; VPCs ensured once, on demand."""

    def __init__(
        self,
        driver: netplan.NetworkDriver,
        cfg: netplan.NetConfig,
        *,
        host_access: bool = True,
        netns_paths: bool = True,
        firewall: FirewallSync | None = None,
    ) -> None:
        self.driver = driver
        self.cfg = cfg
        self.firewall = firewall
        self.host_access = host_access
        self._netns_paths = netns_paths
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskvpc-net")
        self._vpcs: dict[str, Vpc] = {}  # desired, from the control plane
        self._ensured: dict[str, Vpc] = {}  # as last ensured on the host
        self._locks: dict[str, asyncio.Lock] = {}

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def netns_path(self, task_id: str) -> str | None:
        if not self._netns_paths:
            return None
        return f"{self.cfg.netns_dir}/{netplan.task_netns(self.cfg, task_id)}"

    def set_vpcs(self, vpcs: Iterable[Vpc]) -> None:
        self._vpcs = {v.vpc_id: v for v in vpcs}

    def vpc_for(self, task: DesiredTask) -> Vpc:
        assert task.eni is not None
        vpc = self._vpcs.get(task.eni.vpc_id) or Vpc(task.eni.vpc_id)
        return vpc.with_subnet(Subnet(task.eni.subnet_id, task.eni.subnet_cidr, task.eni.gateway))

    async def observe(self) -> netplan.ObservedNetwork:
        return await self.call(self.driver.observe)

    async def ensure_vpc(self, vpc: Vpc) -> None:
        lock = self._locks.setdefault(vpc.vpc_id, asyncio.Lock())
        async with lock:
            if self._ensured.get(vpc.vpc_id) == vpc:
                return
            await self.call(
                self.driver.ensure_vpc_router, vpc.vpc_id, [(s.subnet_id, s.cidr_block) for s in vpc.subnets]
            )
            if self.host_access:
                try:
                    await self.call(
                        self.driver.ensure_host_access, vpc.vpc_id, [s.cidr_block for s in vpc.subnets]
                    )
                except Exception as exc:  # tasks still work; only the host cannot reach them
                    log.error("host access failed %s", kv(vpc_id=vpc.vpc_id, error=repr(exc)))
            self._ensured[vpc.vpc_id] = vpc

    async def remove_vpc(self, vpc_id: str) -> None:
        lock = self._locks.setdefault(vpc_id, asyncio.Lock())
        async with lock:
            self._ensured.pop(vpc_id, None)
            with contextlib.suppress(Exception):
                await self.call(self.driver.remove_host_access, vpc_id)
            await self.call(self.driver.remove_vpc_router, vpc_id)
            if self.firewall is not None:
                await self.call(self.firewall.forget_vpc, vpc_id)

    def _eni_port(self, task: DesiredTask) -> EniPort:
        assert task.eni is not None
        return EniPort(
            eni_id=task.eni.network_interface_id,
            port=netplan.eni_port(self.cfg, task.eni.network_interface_id),
            ip=task.eni.private_ipv4_address,
            mac=task.eni.mac,
            group_ids=task.eni.security_group_ids,
        )

    async def set_security(self, state: DesiredState) -> None:
        """The desired groups and ENI memberships; VPCs with a table get the difference loaded."""
        if self.firewall is not None:
            await self.call(self.firewall.set_desired, state.security_groups, state.eni_groups())

    async def protect_task(self, task: DesiredTask, *, new_network: bool = False) -> None:
        """Register the task's ENI with its VPC's firewall (its rules loaded, the table made if new);
        ``new_network``: its address may have served another task (forget that one's connections)."""
        if self.firewall is not None and task.eni is not None:
            port = self._eni_port(task)
            await self.call(partial(self.firewall.add_eni, task.eni.vpc_id, port, new_network=new_network))

    async def ensure_task(self, task: DesiredTask) -> str | None:
        eni = task_eni(task)
        if eni is None or task.eni is None:
            return None  # no ENI: the host's network
        vpc = self.vpc_for(task)
        try:
            await self.ensure_vpc(vpc)
            # rules first: the ENI never carries traffic without them
            await self.protect_task(task, new_network=True)
            await self.call(self.driver.ensure_task_network, task.eni.vpc_id, eni)
        except Exception:
            self._ensured.pop(vpc.vpc_id, None)  # the retry re-ensures the router (it may have gone)
            raise
        return self.netns_path(task.task_id)

    async def remove_task(
        self, task_id: str, seen: netplan.ObservedTask | None = None, task: DesiredTask | None = None
    ) -> None:
        ip = None
        if seen is not None and len(seen.addrs) == 1:
            ip = next(iter(seen.addrs)).partition("/")[0]
        try:
            await self.call(
                self.driver.remove_task_network,
                task_id,
                seen.vpc_id if seen else None,
                seen.port if seen else None,
                ip,
            )
        finally:  # even if a veth is left: an unregistered port gets no new flow (``to_task`` drops)
            if self.firewall is not None and task is not None and task.eni is not None:
                await self.call(self.firewall.remove_eni, task.eni.vpc_id, task.eni.network_interface_id)
            elif self.firewall is not None and seen is not None and seen.port is not None:
                await self.call(self.firewall.remove_port, seen.vpc_id, seen.port)

    async def remove_stray(self, stray: netplan.Stray) -> None:
        await self.call(self.driver.remove_stray, stray)
