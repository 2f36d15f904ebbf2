"""The agent's one network reconciler: what the host should carry -> ``netplan.plan`` -> the driver.

Desired network = the VPCs of the latest answer (and of every task with a network), the task networks
the engine wants (a task's network is a task resource: ``want`` when it is ensured, ``unwant`` when it is
removed), and the task namespaces found on the host that must stay a while longer (``keep``: a task that is
not desired, while its containers are being stopped). Everything else with our prefix goes: undesired task
networks, access links, routers, strays.

Each :meth:`DataPlane.reconcile` plans against the host as last known (observed at start, then updated by
``netplan.assume`` after each successful action) and applies the plan through the driver on one thread of
its own (the event loop stays free); after any failure the next reconcile observes the host again. Reconciles
run one at a time; whoever asks while one runs gets the next one, which covers its change too.

A reconcile plans every task only when the host was (re)observed, a plan failed, or the VPCs changed;
otherwise only the tasks wanted, unwanted or kept since the last plan (``netplan.plan``'s ``only``): the
others are as the last plan left them, so a task start or stop costs the same on a host of ten tasks or
of thousands. The subnets of the wanted tasks (which VPCs get routers) are counted as tasks come and go.

Security groups: a task's ENI is registered with its VPC's firewall (``security.FirewallSync``) before its
veth exists (a failure there skips the network: never traffic without rules), and unregistered once the
veth is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from taskvpc.agent import netplan
from taskvpc.agent.kvlog import kv
from taskvpc.agent.security import FirewallSync
from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.network import Eni, Subnet, Vpc
from taskvpc.agentapi.tasks import DesiredTask
from taskvpc.netmodel.firewall_ir import EniPort

log = logging.getLogger(__name__)

T = TypeVar("T")


class NetworkFailed(Exception):
    """A task's network could not be made or removed in this reconcile (the reason is the driver's)."""


class DataPlane:
    """The network reconciler; see the module docstring."""

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
        self._vpcs: dict[str, Vpc] = {}  # the latest answer's
        self._lb_vpcs: dict[str, Vpc] = {}  # routers the load balancers need (agent/loadbalancers.py)
        self._wanted: dict[str, DesiredTask] = {}  # by task id
        self._desired_tasks: dict[str, tuple[Eni, netplan.DesiredTask]] = {}  # by task id, for its ENI
        self._keep: set[str] = set()
        self._changed_keys: set[str] = set()  # tasks wanted, unwanted or kept since the last plan
        self._plan_all = True  # the next plan looks at every task (the host was observed, a plan failed)
        # the subnet each wanted task's ENI adds to its VPC (task id -> (VPC id, subnet)), and how many
        # wanted tasks are in each (VPC id, subnet id): which routers are needed, without a pass over them all
        self._subnet_of: dict[str, tuple[str, Subnet]] = {}
        self._subnet_users: dict[tuple[str, str], tuple[int, Subnet]] = {}
        self._registered: dict[str, tuple[str, str]] = {}  # firewall: ENI id -> (VPC id, task id)
        self._by_task: dict[str, set[str]] = {}  # the same, by task id (a stop must not scan them all)
        self._known: netplan.ObservedNetwork | None = None  # the host as last observed and changed since
        self.failures: dict[str, str] = {}  # task id -> why its last ensure/remove failed
        self.reconciles = 0
        self.planned_tasks = 0  # tasks the plans held (a full plan: every wanted task; else the changed)
        self._lock = asyncio.Lock()
        self._released = asyncio.Event()  # set (and replaced) whenever the lock's holder lets go
        self._change = 0  # counts ensure_task/remove_task changes of the wanted tasks
        self._reconciled_change = 0  # the last change a finished reconcile had in its plan

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def known(self) -> netplan.ObservedNetwork | None:
        """The host as last observed and changed since (None: observe it before the next plan)."""
        return self._known

    @known.setter
    def known(self, value: netplan.ObservedNetwork | None) -> None:
        # a host known anew (observed, forgotten after a failure, set by a test): every task planned again
        self._known = value
        self._plan_all = True

    def netns_path(self, task_id: str) -> str | None:
        if not self._netns_paths:
            return None
        return f"{self.cfg.netns_dir}/{netplan.task_netns(self.cfg, task_id)}"

    # -- what is desired ---------------------------------------------------------------------------

    def set_vpcs(self, vpcs: Iterable[Vpc]) -> None:
        new = {v.vpc_id: v for v in vpcs}
        if new != self._vpcs:  # the subnets every task is checked against changed
            self._plan_all = True
        self._vpcs = new

    def want_vpcs(self, vpcs: Iterable[Vpc]) -> None:
        """Routers for these VPCs (with all their subnets) whether or not a task needs them."""
        new = {v.vpc_id: v for v in vpcs}
        if new != self._lb_vpcs:
            self._plan_all = True
        self._lb_vpcs = new

    def want(self, task: DesiredTask) -> None:
        if task.eni is not None:
            self._wanted[task.task_id] = task
            self._keep.discard(task.task_id)
            self._changed_keys.add(task.task_id)
            self._count_subnet(task.task_id, task.eni)

    def unwant(self, task_id: str) -> None:
        self._wanted.pop(task_id, None)
        self._desired_tasks.pop(task_id, None)
        self._keep.discard(task_id)
        self._changed_keys.add(task_id)
        self._count_subnet(task_id, None)

    def keep(self, task_id: str) -> None:
        """Leave a task namespace found on the host alone until :meth:`unwant`."""
        self._keep.add(task_id)
        self._changed_keys.add(task_id)

    def _count_subnet(self, task_id: str, eni: Eni | None) -> None:
        """The wanted task ``task_id`` is in ``eni``'s subnet now (None: not wanted any more)."""
        old = self._subnet_of.pop(task_id, None)
        if old is not None:
            key = (old[0], old[1].subnet_id)
            users, subnet = self._subnet_users[key]
            if users > 1:
                self._subnet_users[key] = (users - 1, subnet)
            else:
                del self._subnet_users[key]
        if eni is not None:
            try:
                self._desired_task(task_id, eni)
            except ValueError:  # never planned (its reconcile says why): adds no subnet, as before
                return
            subnet = Subnet(eni.subnet_id, eni.subnet_cidr, eni.gateway)
            self._subnet_of[task_id] = (eni.vpc_id, subnet)
            key = (eni.vpc_id, eni.subnet_id)
            users, first = self._subnet_users.get(key, (0, subnet))
            self._subnet_users[key] = (users + 1, first)

    def desired(self, only: Collection[str] | None = None) -> netplan.DesiredNetwork:
        """Routers are made for the VPCs of wanted tasks (with the answer's subnets); the answer's other
        VPCs keep their router if there is one. ``only``: the tasks to hold (every wanted one if None)."""
        vpcs: dict[str, Vpc] = dict(self._lb_vpcs)
        for (vpc_id, _), (_, subnet) in self._subnet_users.items():  # once per subnet, not per task
            vpc = vpcs.get(vpc_id) or self._vpcs.get(vpc_id) or Vpc(vpc_id)
            vpcs[vpc_id] = vpc.with_subnet(subnet)
        tasks = []
        keep = set(self._keep)  # plus wanted tasks this reconcile cannot plan for: left as they are
        if only is None:
            wanted = sorted(self._wanted.items())
        else:
            wanted = sorted((k, self._wanted[k]) for k in only if k in self._wanted)
        for task_id, task in wanted:
            eni = task.eni
            assert eni is not None
            try:
                desired_task = self._desired_task(task_id, eni)
            except ValueError as exc:
                self.failures[task_id] = str(exc)
                keep.add(task_id)
                continue
            tasks.append(desired_task)
        desired_vpcs = []
        for vpc in vpcs.values():
            cidrs = tuple(s.cidr_block for s in vpc.subnets) if self.host_access else ()
            try:
                desired_vpcs.append(netplan.DesiredVpc(vpc.vpc_id, vpc.subnets, cidrs))
            except ValueError as exc:
                log.error("vpc ignored %s", kv(vpc_id=vpc.vpc_id, error=str(exc)))
        usable = {v.vpc_id: v for v in desired_vpcs}
        with contextlib.suppress(ValueError):  # all fit (the usual case): no task checked on its own
            return netplan.DesiredNetwork(
                tuple(usable.values()), tuple(tasks), frozenset(keep), frozenset(self._vpcs) - set(usable)
            )
        checked = []
        for t in tasks:
            try:  # one task whose ENI fits no subnet must not hold up the others
                netplan.DesiredNetwork(tuple(v for v in desired_vpcs if v.vpc_id == t.vpc_id), (t,))
            except ValueError as exc:
                self.failures[t.eni.task_key] = str(exc)
                keep.add(t.eni.task_key)
                continue
            checked.append(t)
        return netplan.DesiredNetwork(
            tuple(usable.values()), tuple(checked), frozenset(keep), frozenset(self._vpcs) - set(usable)
        )

    def _desired_task(self, task_id: str, eni: Eni) -> netplan.DesiredTask:
        """The task's checked ENI, made once per ENI (every reconcile plans every wanted task)."""
        cached = self._desired_tasks.get(task_id)
        if cached is not None and cached[0] == eni:
            return cached[1]
        made = netplan.DesiredTask(eni.vpc_id, netplan.TaskEni.of(task_id, eni))
        self._desired_tasks[task_id] = (eni, made)
        return made

    # -- reconcile ---------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _held(self) -> AsyncIterator[None]:
        """The lock; its release wakes every ``_reconcile_since`` waiting for the holder to finish."""
        async with self._lock:
            try:
                yield
            finally:
                self._released.set()
                self._released = asyncio.Event()

    async def observe(self) -> netplan.ObservedNetwork:
        async with self._held():
            known = self.known = await self.call(self.driver.observe)
            return known

    async def _reconcile_since(self, change: int) -> None:
        """A reconcile that began after change ``change`` of the wanted tasks: one that already ran while
        we waited counts (tasks starting or stopping together share one reconcile)."""
        # one turn of the loop first: the other tasks of the same answer, whose workers run in this turn
        # too, want theirs before the plan is made. Else the first planned alone and the rest waited for
        # it: two reconciles (two firewall transactions, each longer the more ENIs the host has) per batch
        await asyncio.sleep(0)
        while self._reconciled_change < change:
            if self._lock.locked():
                # wait for the holder's end, all of us at once: queued on the lock we would pass it one
                # per turn of the loop, each behind the container starts the earlier ones began
                await self._released.wait()
                continue
            async with self._held():
                if self._reconciled_change < change:
                    await self._reconcile()
                return

    def _changed(self) -> int:
        self._change += 1
        return self._change

    async def reconcile(self) -> netplan.ApplyReport:
        async with self._held():
            return await self._reconcile()

    async def _reconcile(self) -> netplan.ApplyReport:
        covers = self._change  # every want/unwant made so far is in this reconcile's plan
        report = await self._reconcile_once()
        self._reconciled_change = covers  # (not after an exception: then each waiter tries itself)
        return report

    async def _reconcile_once(self) -> netplan.ApplyReport:
        if self.known is None:
            self.known = await self.call(self.driver.observe)
        known = self.known
        assert known is not None
        only: set[str] | None = None if self._plan_all else self._changed_keys
        self._changed_keys, self._plan_all = set(), False
        try:
            if only is None:
                self.failures.clear()  # this reconcile's outcome is the one that counts
            else:
                for task_id in only:  # the others' outcome stays that of the plan that last looked at them
                    self.failures.pop(task_id, None)
            desired = self.desired(only)
            actions = netplan.plan(self.cfg, desired, known, only)
            self.planned_tasks += len(desired.tasks)
            await self._register_adopted(desired, actions)
            self.reconciles += 1
            if not actions:
                return netplan.ApplyReport()
            report = await self.call(self._apply, desired, actions)
        except BaseException:
            self._plan_all = True  # what was not carried out is looked at again, with everything else
            raise
        for action, error in report.failed:
            if isinstance(error, netplan.HostAccessConflict) and self.host_access:
                # another owner's link or route is there: say so once and carry on without host access
                log.warning("no host access (tasks still run): %s", error)
                self.host_access = False
                continue
            key = _task_key(action)
            if key is not None:
                self.failures[key] = str(error) or type(error).__name__
            log.error("network action failed %s", kv(action=type(action).__name__, error=repr(error)))
        for action in report.done:
            key = _task_key(action)
            if key is not None:
                self.failures.pop(key, None)
        if report.failed:
            self.known = None  # look again next time
        return report

    def _apply(self, desired: netplan.DesiredNetwork, actions: list[netplan.Action]) -> netplan.ApplyReport:
        """On the network thread: every action, the firewall kept in step, the known host updated.

        The firewall changes of one plan go in one nftables transaction per VPC where they can: the new
        networks' ENIs are registered together before any of their veths is made, and the removed ones
        unregistered together once every veth of the plan is gone (each transaction costs more with
        every ENI of the VPC, see ``FirewallSync.add_enis``)."""
        batched = self._register_new(desired, actions)
        gone: dict[str, list[str]] = {}  # VPC id -> ENI ids whose veths went in this plan
        succeeded: list[netplan.Action] = []  # the known host follows them once, after the plan

        def before(action: netplan.Action) -> None:
            if isinstance(action, netplan.EnsureTaskNetwork) and self.firewall is not None:
                if action.eni.eni_id not in batched:  # (the batch failed: this ENI on its own)
                    port = self._eni_port(action.vpc_id, action.eni, desired)
                    self.firewall.add_eni(action.vpc_id, port, new_network=True)  # rules first
                self._register(action.eni.eni_id, action.vpc_id, action.eni.task_key)

        def after(action: netplan.Action) -> None:
            succeeded.append(action)
            if self.firewall is None:
                return
            if isinstance(action, netplan.RemoveTaskNetwork):  # the veth is gone: its rules can go
                for eni_id in sorted(self._by_task.get(action.task_key, ())):
                    vpc_id, _ = self._registered[eni_id]
                    self._unregister(eni_id)
                    gone.setdefault(vpc_id, []).append(eni_id)
            elif isinstance(action, netplan.RemoveVpcRouter):
                self.firewall.forget_vpc(action.vpc_id)
                for eni_id in [e for e, r in self._registered.items() if r[0] == action.vpc_id]:
                    self._unregister(eni_id)
                gone.pop(action.vpc_id, None)

        try:
            report = netplan.apply(actions, self.driver, before=before, after=after)
        finally:
            assert self._known is not None  # (not the setter: the known host follows, it is not new)
            self._known = netplan.assume_all(self.cfg, self._known, succeeded)  # one copy, not one per action
        self._unregister_gone(gone)
        return report

    def _register_new(self, desired: netplan.DesiredNetwork, actions: list[netplan.Action]) -> set[str]:
        """The ENIs of the plan's new networks registered with the firewall, one transaction per VPC;
        the ENI ids done (none of a VPC whose batch failed: each is then tried on its own)."""
        if self.firewall is None:
            return set()
        by_vpc: dict[str, list[EniPort]] = {}
        # an address a removed network of this plan frees goes on its own, after that removal (its old
        # flows are forgotten once its veth is gone, as they always were)
        freed = {a.ip for a in actions if isinstance(a, netplan.RemoveTaskNetwork)}
        if None in freed:  # a removal of unknown address: nothing batched
            return set()
        for action in actions:
            if isinstance(action, netplan.EnsureTaskNetwork) and action.eni.ip not in freed:
                port = self._eni_port(action.vpc_id, action.eni, desired)
                by_vpc.setdefault(action.vpc_id, []).append(port)
        done: set[str] = set()
        for vpc_id, ports in by_vpc.items():
            if len(ports) < 2:
                continue  # one ENI: ``before`` registers it as ever
            try:
                self.firewall.add_enis(vpc_id, ports)
            except Exception as exc:
                log.warning("firewall batch failed, one ENI at a time %s", kv(vpc_id=vpc_id, error=repr(exc)))
                continue
            done.update(p.eni_id for p in ports)
        return done

    def _unregister_gone(self, gone: dict[str, list[str]]) -> None:
        if self.firewall is None:
            return
        for vpc_id, eni_ids in gone.items():
            try:
                self.firewall.remove_enis(vpc_id, eni_ids)
            except Exception as exc:  # their veths are gone: stale rules match no port; retried one by one
                log.warning("firewall batch removal failed %s", kv(vpc_id=vpc_id, error=repr(exc)))
                for eni_id in eni_ids:
                    try:
                        self.firewall.remove_eni(vpc_id, eni_id)
                    except Exception as one:
                        log.error("firewall removal failed %s", kv(eni_id=eni_id, error=repr(one)))

    def _register(self, eni_id: str, vpc_id: str, task_key: str) -> None:
        self._unregister(eni_id)
        self._registered[eni_id] = (vpc_id, task_key)
        self._by_task.setdefault(task_key, set()).add(eni_id)

    def _unregister(self, eni_id: str) -> None:
        old = self._registered.pop(eni_id, None)
        if old is not None:
            mine = self._by_task.get(old[1])
            if mine is not None:
                mine.discard(eni_id)
                if not mine:
                    del self._by_task[old[1]]

    def _eni_port(self, vpc_id: str, eni: netplan.TaskEni, desired: netplan.DesiredNetwork) -> EniPort:
        task = self._wanted.get(eni.task_key)
        groups = task.eni.security_group_ids if task is not None and task.eni is not None else ()
        return EniPort(eni.eni_id, netplan.eni_port(self.cfg, eni.eni_id), eni.ip, eni.mac, groups)

    async def _register_adopted(self, desired: netplan.DesiredNetwork, actions: list[netplan.Action]) -> None:
        """A wanted task whose network already exists (found at start) gets its rules loaded too."""
        if self.firewall is None:
            return
        making = {a.eni.task_key for a in actions if isinstance(a, netplan.EnsureTaskNetwork)}
        for t in desired.tasks:
            if t.eni.task_key in making or self._registered.get(t.eni.eni_id) == (t.vpc_id, t.eni.task_key):
                continue
            try:
                await self.call(self.firewall.add_eni, t.vpc_id, self._eni_port(t.vpc_id, t.eni, desired))
                self._register(t.eni.eni_id, t.vpc_id, t.eni.task_key)
            except Exception as exc:  # its network counts as failed: the worker retries
                self.failures[t.eni.task_key] = f"firewall: {exc!r}"
                log.error("firewall registration failed %s", kv(task_id=t.eni.task_key, error=repr(exc)))

    # -- for the engine ----------------------------------------------------------------------------

    def matches(self, task: DesiredTask) -> bool:
        """Whether the host, as known, carries the task's network as desired."""
        if task.eni is None or self.known is None:
            return False
        try:
            wanted = netplan.DesiredTask(task.eni.vpc_id, netplan.TaskEni.of(task.task_id, task.eni))
        except ValueError:
            return False
        seen = self.known.tasks.get(task.task_id)
        return netplan.task_matches(self.cfg, wanted, seen, self.known.routers.get(task.eni.vpc_id))

    async def set_security(self, state: DesiredState, changed: Iterable[DesiredTask] | None = None) -> None:
        """The desired groups and ENI memberships; VPCs with a table get the difference loaded.
        ``changed``: the only tasks whose ENI's groups may differ from the last call's (a delta's tasks;
        None: every task of ``state``)."""
        if self.firewall is not None:
            if changed is None:
                eni_groups = state.eni_groups()
            else:
                eni_groups = {t.eni.network_interface_id: t.eni.security_group_ids for t in changed if t.eni}
            await self.call(self.firewall.set_desired, state.security_groups, eni_groups)

    async def ensure_task(self, task: DesiredTask) -> str | None:
        """The task's network (none without an ENI: the host's); raises NetworkFailed."""
        if task.eni is None:
            return None
        self.want(task)
        await self._reconcile_since(self._changed())
        if task.task_id in self.failures:
            raise NetworkFailed(self.failures[task.task_id])
        return self.netns_path(task.task_id)

    async def remove_task(self, task_id: str) -> None:
        """No network for the task any more; raises NetworkFailed while some of it is left."""
        self.unwant(task_id)
        await self._reconcile_since(self._changed())
        if task_id in self.failures:
            raise NetworkFailed(self.failures[task_id])


def _task_key(action: netplan.Action) -> str | None:
    if isinstance(action, netplan.EnsureTaskNetwork):
        return action.eni.task_key
    if isinstance(action, netplan.RemoveTaskNetwork):
        return action.task_key
    return None
