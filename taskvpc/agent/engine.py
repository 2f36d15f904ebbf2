"""The task engine: one asyncio worker per task applies ``taskplan.plan_task`` through the drivers.

* Desired state arrives as the agent API's answers (:meth:`Engine.apply`); desired status only moves
  forward, a redundant move is ignored, and a task the control plane forgets is stopped.
* Each :class:`TaskWorker` owns its task's known state (no one else changes it). It plans, records the
  plan's decisions, launches the plan's I/O (network, container start/stop) as asyncio tasks, and plans
  again on every change: an I/O result, a container exit, a health change, new desired state. Work therefore
  starts within a loop iteration of arriving.
* Reports go through :class:`Reporter`: the latest report per task, sent in batches, at most one batch per
  ~50 ms; the STOPPED report's acknowledgement lets a worker forget its task.
* On start (:meth:`Engine.adopt`, with the first desired-state answer): everything of ours on the host is
  observed (the data plane's ``observe``, the runtime's ``list_ours``); desired tasks are adopted with what
  was found (a container in an unknown state counts as running); containers and networks of tasks that
  are not desired are stopped and removed, and so are strays.
* Teardown runs in reverse (containers, then the network) and keeps going after errors.

The data plane is the colleague's ``netplan.NetworkDriver`` (``drivers.netlink.NetlinkDriver`` for real);
:class:`DataPlane` runs its synchronous calls on one dedicated thread, keeping the event loop free.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from taskvpc.agent import netplan, taskplan as tp
from taskvpc.agent.containerspec import build_container_spec
from taskvpc.agent.runtime import (
    ContainerHandle,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    HealthStatus,
    Runtime,
    StartError,
    container_dir,
)
from taskvpc.agent.runtime.health import HealthMonitor
from taskvpc.agent.security import FirewallSync, groups_from_wire
from taskvpc.agent.volumes import remove_task_volumes
from taskvpc.domain.lifecycle import DesiredStatus
from taskvpc.netmodel.evaluator import GroupRules
from taskvpc.netmodel.firewall_ir import EniPort

log = logging.getLogger(__name__)

T = TypeVar("T")

REPORT_INTERVAL = 0.05
NETWORK_REMOVE_ATTEMPTS = 5
ORPHAN_STOP_TIMEOUT = 10.0
LOG_RETENTION = 3600.0  # a stopped task's container logs are kept this long (``taskvpc logs``)


async def _wait_for(awaitable: Awaitable[T], timeout: float) -> T:
    """``asyncio.wait_for`` that never swallows a cancellation (3.11's can, when both race)."""
    async with asyncio.timeout(timeout):
        return await awaitable


def _kv(**fields: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)


# ---------------------------------------------------------------------------------------------- desired state


@dataclass(frozen=True, slots=True)
class VpcSpec:
    vpc_id: str
    subnets: tuple[tuple[str, str], ...]  # (subnet id, CIDR)

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> VpcSpec:
        subnets = tuple(
            (str(s.get("subnetId", "")), str(s["cidrBlock"]))
            for s in doc.get("subnets") or ()
            if isinstance(s, Mapping) and s.get("cidrBlock")
        )
        return cls(str(doc["vpcId"]), subnets)

    def with_subnet(self, subnet_id: str, cidr: str) -> VpcSpec:
        if any(c == cidr for _, c in self.subnets):
            return self
        return replace(self, subnets=(*self.subnets, (subnet_id, cidr)))


@dataclass(frozen=True, slots=True)
class DesiredState:
    generation: int
    changed: bool
    instance_status: str
    vpcs: tuple[VpcSpec, ...]
    tasks: tuple[tp.DesiredTask, ...]
    security_groups: Mapping[str, Mapping[str, GroupRules]] = field(default_factory=dict)  # by VPC id

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> DesiredState:
        instance = doc.get("instance") or {}
        return cls(
            generation=int(doc.get("generation") or 0),
            changed=bool(doc.get("changed", True)),
            instance_status=str(instance.get("status") or "ACTIVE"),
            vpcs=tuple(VpcSpec.from_wire(v) for v in doc.get("vpcs") or () if isinstance(v, Mapping)),
            tasks=tuple(
                tp.DesiredTask.from_wire(t) for t in doc.get("tasks") or () if isinstance(t, Mapping)
            ),
            security_groups={
                str(v["vpcId"]): groups_from_wire(v.get("securityGroups") or ())
                for v in doc.get("vpcs") or ()
                if isinstance(v, Mapping) and "vpcId" in v
            },
        )

    def eni_groups(self) -> dict[str, tuple[str, ...]]:
        """Each task ENI's current security groups."""
        return {t.eni.network_interface_id: t.eni.security_group_ids for t in self.tasks if t.eni is not None}


def _eni_subnet(eni: tp.Eni) -> str:
    return str(ipaddress.IPv4Interface(f"{eni.private_ipv4_address}/{eni.prefix_length}").network)


def task_eni(task: tp.DesiredTask) -> netplan.TaskEni | None:
    if task.eni is None:
        return None
    return netplan.TaskEni(
        eni_id=task.eni.network_interface_id,
        mac=task.eni.mac_address.lower(),
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
        self._vpcs: dict[str, VpcSpec] = {}  # desired, from the control plane
        self._ensured: dict[str, VpcSpec] = {}  # as last ensured on the host
        self._locks: dict[str, asyncio.Lock] = {}

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def netns_path(self, task_id: str) -> str | None:
        if not self._netns_paths:
            return None
        return f"{self.cfg.netns_dir}/{netplan.task_netns(self.cfg, task_id)}"

    def set_vpcs(self, vpcs: Iterable[VpcSpec]) -> None:
        self._vpcs = {v.vpc_id: v for v in vpcs}

    def vpc_for(self, task: tp.DesiredTask) -> VpcSpec:
        assert task.eni is not None
        vpc = self._vpcs.get(task.eni.vpc_id) or VpcSpec(task.eni.vpc_id, ())
        return vpc.with_subnet(task.eni.subnet_id, _eni_subnet(task.eni))

    async def observe(self) -> netplan.ObservedNetwork:
        return await self.call(self.driver.observe)

    async def ensure_vpc(self, vpc: VpcSpec) -> None:
        lock = self._locks.setdefault(vpc.vpc_id, asyncio.Lock())
        async with lock:
            if self._ensured.get(vpc.vpc_id) == vpc:
                return
            await self.call(self.driver.ensure_vpc_router, vpc.vpc_id, vpc.subnets)
            if self.host_access:
                try:
                    await self.call(self.driver.ensure_host_access, vpc.vpc_id, [c for _, c in vpc.subnets])
                except Exception as exc:  # tasks still work; only the host cannot reach them
                    log.error("host access failed %s", _kv(vpc_id=vpc.vpc_id, error=repr(exc)))
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

    def _eni_port(self, task: tp.DesiredTask) -> EniPort:
        assert task.eni is not None
        return EniPort(
            eni_id=task.eni.network_interface_id,
            port=netplan.eni_port(self.cfg, task.eni.network_interface_id),
            ip=task.eni.private_ipv4_address,
            mac=task.eni.mac_address.lower(),
            group_ids=task.eni.security_group_ids,
        )

    async def set_security(self, state: DesiredState) -> None:
        """The desired groups and ENI memberships; VPCs with a table get the difference loaded."""
        if self.firewall is not None:
            await self.call(self.firewall.set_desired, state.security_groups, state.eni_groups())

    async def protect_task(self, task: tp.DesiredTask) -> None:
        """Register the task's ENI with its VPC's firewall (its rules loaded, the table made if new)."""
        if self.firewall is not None and task.eni is not None:
            await self.call(self.firewall.add_eni, task.eni.vpc_id, self._eni_port(task))

    async def ensure_task(self, task: tp.DesiredTask) -> str | None:
        eni = task_eni(task)
        if eni is None or task.eni is None:
            return None  # no ENI: the host's network
        vpc = self.vpc_for(task)
        try:
            await self.ensure_vpc(vpc)
            await self.protect_task(task)  # rules first: the ENI never carries traffic without them
            await self.call(self.driver.ensure_task_network, task.eni.vpc_id, eni)
        except Exception:
            self._ensured.pop(vpc.vpc_id, None)  # the retry re-ensures the router (it may have gone)
            raise
        return self.netns_path(task.task_id)

    async def remove_task(
        self, task_id: str, seen: netplan.ObservedTask | None = None, task: tp.DesiredTask | None = None
    ) -> None:
        ip = None
        if seen is not None and len(seen.addrs) == 1:
            ip = next(iter(seen.addrs)).partition("/")[0]
        await self.call(
            self.driver.remove_task_network,
            task_id,
            seen.vpc_id if seen else None,
            seen.port if seen else None,
            ip,
        )
        if self.firewall is None:
            return
        if task is not None and task.eni is not None:  # its rules go once its veth is gone
            await self.call(self.firewall.remove_eni, task.eni.vpc_id, task.eni.network_interface_id)
        elif seen is not None and seen.port is not None:
            await self.call(self.firewall.remove_port, seen.vpc_id, seen.port)

    async def remove_stray(self, stray: netplan.Stray) -> None:
        await self.call(self.driver.remove_stray, stray)


# ---------------------------------------------------------------------------------------------- reporter


AckCallback = Callable[[tp.TaskReport], None]


class Reporter:
    """Latest report per task, sent in batches, one request in flight at a time.

    Routine changes (PENDING, a health change, a non-essential container's exit) go out at most once per
    ``interval`` (50 ms), and linger that long to join a batch, so the PENDING report of a task that runs
    20 ms later is usually never sent on its own. A task *reaching* RUNNING or STOPPED is news on the
    critical path (RunTask to RUNNING is measured): its batch goes out as soon as the previous request
    has completed, carrying everything else pending with it; under a burst the single in-flight request
    does the batching. A failed batch is retried with backoff, newer reports for its tasks winning.
    """

    def __init__(
        self,
        send: Callable[[list[dict[str, Any]]], Awaitable[Any]],
        *,
        interval: float = REPORT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._interval = interval
        self._clock = clock
        self._pending: dict[str, tuple[tp.TaskReport, AckCallback | None]] = {}
        self._since: float | None = None  # when the oldest pending report came in
        self._sent_status: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._last = -1e9
        self.batches = 0

    def submit(self, report: tp.TaskReport, on_ack: AckCallback | None = None) -> None:
        self._pending[report.task_arn] = (report, on_ack)
        if self._since is None:
            self._since = self._clock()
        self._wake.set()

    @property
    def idle(self) -> bool:
        return not self._pending

    def _urgent(self) -> bool:
        return any(
            r.known_status != tp.TaskView.PENDING.value and self._sent_status.get(arn) != r.known_status
            for arn, (r, _) in self._pending.items()
        )

    def _due(self) -> float:
        """Seconds until the pending batch goes out (at once when it carries news)."""
        if self._urgent():
            return 0.0
        allowed = self._last + self._interval
        if self._since is not None:
            allowed = max(allowed, self._since + self._interval)
        return allowed - self._clock()

    async def run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            if not self._pending:
                await self._wake.wait()
                continue
            due = self._due()
            if due > 0:
                with contextlib.suppress(TimeoutError):  # an urgent report may bring it forward
                    async with asyncio.timeout(due):
                        await self._wake.wait()
                continue
            batch, self._pending, self._since = self._pending, {}, None
            self._last = self._clock()
            try:
                await self._send([report.to_wire() for report, _ in batch.values()])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("report failed %s", _kv(tasks=len(batch), error=repr(exc)))
                for arn, item in batch.items():
                    self._pending.setdefault(arn, item)  # a newer report for the task wins
                self._since = self._since or self._clock()
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                continue
            failures = 0
            self.batches += 1
            for arn, (report, on_ack) in batch.items():
                self._sent_status[arn] = report.known_status
                if report.known_status == tp.TaskView.STOPPED.value:
                    self._sent_status.pop(arn, None)
                if on_ack is not None:
                    on_ack(report)


# ---------------------------------------------------------------------------------------------- worker


def _known_from_runtime(name: str, state: ContainerState, runtime_id: str) -> tp.KnownContainer:
    """A container found on the host, as the planner sees it (unknown counts as running)."""
    if state.status is ContainerStatus.CREATED:
        return tp.KnownContainer(name)
    if state.status is ContainerStatus.FAILED:
        return tp.KnownContainer(name, phase=tp.Phase.STOPPED, reason=state.reason)
    if state.status is ContainerStatus.EXITED:
        return tp.KnownContainer(
            name,
            phase=tp.Phase.STOPPED,
            started=True,
            exit_code=state.exit_code,
            reason=state.reason,
            runtime_id=runtime_id or None,
            started_at=state.started_at,
        )
    return tp.KnownContainer(
        name,
        phase=tp.Phase.RUNNING,
        started=True,
        runtime_id=runtime_id or None,
        started_at=state.started_at,
        unknown=state.status is ContainerStatus.UNKNOWN,
    )


@dataclass(eq=False)
class TaskWorker:
    """The one owner of a task's known state; see the module docstring."""

    engine: Engine
    desired: tp.DesiredTask
    known: tp.KnownTask
    handles: dict[str, ContainerHandle] = field(default_factory=dict)
    netns_path: str | None = None
    seen_network: netplan.ObservedTask | None = None

    def __post_init__(self) -> None:
        self.wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._watchers: dict[str, list[asyncio.Task[None]]] = {}
        self.done = False

    @property
    def arn(self) -> str:
        return self.desired.arn

    def update(self, desired: tp.DesiredTask) -> None:
        before = self.desired.desired_status
        self.desired = self.desired.advanced(desired)
        if self.desired.desired_status != before:
            log.info(
                "desired %s",
                _kv(
                    task_arn=self.arn,
                    desired=self.desired.desired_status.value,
                    known=self.known.status.value,
                ),
            )
        self.wake.set()

    # ------------------------------------------------------------------------------ loop

    async def run(self) -> None:
        try:
            for name, handle in self.handles.items():
                if self.known.container(name).phase is tp.Phase.RUNNING:
                    self._watch(name, handle)
            while True:
                self.wake.clear()
                actions = tp.plan_task(self.desired, self.known, self.engine.clock())
                for action in actions:
                    self.known = tp.apply_decision(self.known, action)
                    if isinstance(action, tp.Forget):
                        await self._forget()
                        return
                    self._dispatch(action)
                if any(tp.is_decision(a) for a in actions):
                    continue  # decided something without I/O: plan again at once (cascades)
                deadline = tp.next_deadline(self.desired, self.known)
                if deadline is None:
                    await self.wake.wait()
                else:  # a dependency's startTimeout: plan again when it expires
                    with contextlib.suppress(TimeoutError):
                        await _wait_for(self.wake.wait(), max(0.0, deadline - self.engine.clock()) + 0.001)
        finally:
            for task in [*self._inflight, *(t for ts in self._watchers.values() for t in ts)]:
                task.cancel()
            self.done = True

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def wrapped() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker action failed %s", _kv(task_arn=self.arn))
            finally:
                self.wake.set()

        task = asyncio.ensure_future(wrapped())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def _dispatch(self, action: tp.Action) -> None:
        if isinstance(action, tp.EnsureNetwork):
            self._spawn(self._ensure_network(action.attempt))
        elif isinstance(action, tp.StartContainer):
            self._spawn(self._start(action.name))
        elif isinstance(action, tp.StopContainer):
            self._spawn(self._stop(action.name, action.timeout))
        elif isinstance(action, tp.RemoveNetwork):
            self._spawn(self._remove_network())
        elif isinstance(action, tp.Report):
            self.engine.reporter.submit(action.report, self._acked)
        elif isinstance(action, tp.BeginStop):
            log.info("stopping %s", _kv(task_arn=self.arn, reason=action.reason, code=action.code.value))
        elif isinstance(action, tp.CancelContainer):
            self._unwatch(action.name)
        elif isinstance(action, tp.SetStatus):
            log.info("known %s", _kv(task_arn=self.arn, known=action.status.value))

    def _acked(self, report: tp.TaskReport) -> None:
        if report.known_status == tp.TaskView.STOPPED.value and not self.known.stopped_acked:
            self.known = replace(self.known, stopped_acked=True)
            self.wake.set()

    # ------------------------------------------------------------------------------ network

    async def _ensure_network(self, attempt: int) -> None:
        if attempt:
            await asyncio.sleep(min(2.0, 0.1 * 2 ** (attempt - 1)))
        try:
            self.netns_path = await self.engine.ensure_task_network(self.desired)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("network failed %s", _kv(task_arn=self.arn, attempt=attempt + 1, error=repr(exc)))
            self.known = tp.network_failed(self.known, str(exc) or type(exc).__name__)
            return
        self.known = tp.network_ready(self.known)

    async def _remove_network(self) -> None:
        for attempt in range(NETWORK_REMOVE_ATTEMPTS):
            try:
                await self.engine.remove_task_network(self.desired.task_id, self.seen_network, self.desired)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep going: a later agent start removes whatever is left
                log.error(
                    "network removal failed %s", _kv(task_arn=self.arn, attempt=attempt + 1, error=repr(exc))
                )
                await asyncio.sleep(0.1 * 2**attempt)
        self.known = tp.network_removed(self.known)

    # ------------------------------------------------------------------------------ containers

    def _record_pull(self, handle: ContainerHandle) -> None:
        """The task's pullStartedAt/pullStoppedAt from what the runtime knows of the container's pull."""
        try:
            state = self.engine.runtime.status(handle)
        except Exception:  # a container that never got as far as the runtime: nothing was pulled
            return
        self.known = tp.image_pulled(self.known, state.pull_started_at, state.pull_stopped_at)

    def _container_spec(self, name: str) -> ContainerSpec:
        """Everything the runtime needs (volume directories made, env files read); raises StartError."""
        return build_container_spec(self.desired, name, self.engine.runtime.state_dir)

    async def _start(self, name: str) -> None:
        runtime = self.engine.runtime
        log_path = str(container_dir(runtime.state_dir, self.desired.task_id, name) / "log")
        try:
            handle = await runtime.start(self._container_spec(name), self.netns_path, log_path)
        except StartError as exc:
            log.warning("start failed %s", _kv(task_arn=self.arn, container=name, reason=exc.reason))
            self._record_pull(ContainerHandle(self.desired.task_id, name))  # a failed pull has its times too
            self.known = tp.container_start_failed(self.known, name, exc.reason)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = f"CannotStartContainerError: {exc}"
            log.exception("start failed %s", _kv(task_arn=self.arn, container=name))
            self.known = tp.container_start_failed(self.known, name, reason)
            return
        self.handles[name] = handle
        state = runtime.status(handle)
        started_at = state.started_at or self.engine.clock()
        self.known = tp.image_pulled(self.known, state.pull_started_at, state.pull_stopped_at)
        self.known = tp.container_started(self.known, name, handle.runtime_id, started_at)
        log.info("started %s", _kv(task_arn=self.arn, container=name, pid=state.pid))
        self._watch(name, handle)

    def _watch(self, name: str, handle: ContainerHandle) -> None:
        """Wait for the container's end; run its health checks meanwhile."""
        runtime = self.engine.runtime
        tasks: list[asyncio.Task[None]] = []

        async def waiter() -> None:
            state = await runtime.wait(handle)
            self.known = tp.container_exited(self.known, name, state.exit_code, state.reason)
            log.info("exited %s", _kv(task_arn=self.arn, container=name, exit_code=state.exit_code))
            for task in self._watchers.pop(name, []):
                if task is not asyncio.current_task():
                    task.cancel()
            self.wake.set()

        tasks.append(asyncio.ensure_future(waiter()))
        spec = self.desired.container(name)
        if spec is not None and spec.health_check is not None and spec.health_check.argv() is not None:

            def changed(status: HealthStatus) -> None:
                self.known = tp.container_health(self.known, name, status)
                log.info("health %s", _kv(task_arn=self.arn, container=name, health=status.value))
                self.wake.set()

            started_at = self.known.container(name).started_at
            monitor = HealthMonitor.for_container(
                runtime, handle, spec.health_check, changed, started_at=started_at
            )
            tasks.append(asyncio.ensure_future(monitor.run()))
        self._watchers[name] = tasks

    def _unwatch(self, name: str) -> None:
        for task in self._watchers.pop(name, []):
            task.cancel()

    async def _stop(self, name: str, timeout: float) -> None:
        handle = self.handles.get(name) or ContainerHandle(self.desired.task_id, name)
        try:
            code = await self.engine.runtime.stop(handle, timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("stop failed %s", _kv(task_arn=self.arn, container=name, error=repr(exc)))
            await asyncio.sleep(0.5)
            kc = self.known.container(name)
            if kc.phase is tp.Phase.STOPPING:  # try again on the next plan
                self.known = self.known.with_container(replace(kc, phase=tp.Phase.RUNNING))
            return
        state = self.engine.runtime.status(handle)
        self.known = tp.container_exited(self.known, name, code, state.reason)
        self._unwatch(name)

    async def _forget(self) -> None:
        runtime = self.engine.runtime
        for name in [c.name for c in self.desired.containers] + list(self.known.containers):
            handle = self.handles.get(name) or ContainerHandle(self.desired.task_id, name)
            try:
                await runtime.remove(handle)
            except Exception as exc:
                log.warning("remove failed %s", _kv(task_arn=self.arn, container=name, error=repr(exc)))
        log.info("forgotten %s", _kv(task_arn=self.arn))
        self.engine.worker_done(self)


# ---------------------------------------------------------------------------------------------- engine


class Engine:
    """Workers per task, the data plane, the runtime and the reporter; see the module docstring."""

    def __init__(
        self,
        runtime: Runtime,
        network: DataPlane | None,
        reporter: Reporter,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runtime = runtime
        self.network = network
        self.reporter = reporter
        self.clock = clock
        self.workers: dict[str, TaskWorker] = {}
        self.finished: set[str] = set()  # tasks reported STOPPED and forgotten: ignore if still listed
        self.instance_status = "ACTIVE"
        self.vpcs: dict[str, VpcSpec] = {}
        self.adopted = False
        self._background: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------------------ plumbing

    def spawn(self, coro: Awaitable[None], what: str) -> asyncio.Task[None]:
        async def wrapped() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed", what)

        task = asyncio.ensure_future(wrapped())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def ensure_task_network(self, task: tp.DesiredTask) -> str | None:
        if self.network is None:
            return None
        return await self.network.ensure_task(task)

    async def remove_task_network(
        self, task_id: str, seen: netplan.ObservedTask | None, task: tp.DesiredTask | None = None
    ) -> None:
        if self.network is not None:
            await self.network.remove_task(task_id, seen, task)

    def worker_done(self, worker: TaskWorker) -> None:
        if self.workers.get(worker.arn) is worker:
            del self.workers[worker.arn]
        self.finished.add(worker.arn)
        self._changed.set()

    def _start_worker(self, worker: TaskWorker) -> None:
        self.workers[worker.arn] = worker
        self.spawn(worker.run(), f"worker {worker.arn}")

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Until no worker is left and every report went out (tests, shutdown)."""

        async def idle() -> None:
            while self.workers or not self.reporter.idle:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._changed.wait()

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await idle()

    async def close(self) -> None:
        """Stop working (containers keep running: the next agent adopts them)."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.network is not None:
            self.network.close()

    # ------------------------------------------------------------------------------ desired state

    def _set_vpcs(self, state: DesiredState) -> list[str]:
        """Record the desired VPCs; the ones that went away (to remove once no task uses them)."""
        gone = [v for v in self.vpcs if v not in {s.vpc_id for s in state.vpcs}]
        self.vpcs = {v.vpc_id: v for v in state.vpcs}
        if self.network is not None:
            self.network.set_vpcs(state.vpcs)
        return gone

    def apply(self, state: DesiredState) -> None:
        """A desired-state answer after adoption: new workers, forward moves, forgotten tasks stopped."""
        if not state.changed:
            return
        self.instance_status = state.instance_status
        gone_vpcs = self._set_vpcs(state)
        if self.network is not None:
            self.spawn(self.network.set_security(state), "security groups")
        listed = {t.arn for t in state.tasks}
        self.finished &= listed
        inactive = state.instance_status == "INACTIVE"
        for desired in state.tasks:
            if desired.arn in self.finished:
                continue
            if inactive:
                desired = replace(desired, desired_status=DesiredStatus.STOPPED)
            worker = self.workers.get(desired.arn)
            if worker is not None:
                worker.update(desired)
            else:
                log.info("new task %s", _kv(task_arn=desired.arn, desired=desired.desired_status.value))
                self._start_worker(TaskWorker(self, desired, tp.KnownTask(desired.arn)))
        for arn, worker in list(self.workers.items()):
            if arn not in listed or inactive:
                worker.update(replace(worker.desired, desired_status=DesiredStatus.STOPPED))
        if gone_vpcs and self.network is not None:
            self.spawn(self._remove_vpcs_when_unused(gone_vpcs), "vpc removal")

    async def _remove_vpcs_when_unused(self, vpc_ids: Sequence[str]) -> None:
        assert self.network is not None
        for vpc_id in vpc_ids:
            while any(
                w.desired.eni is not None and w.desired.eni.vpc_id == vpc_id for w in self.workers.values()
            ):
                await asyncio.sleep(0.2)
            if vpc_id in self.vpcs:
                continue
            try:
                await self.network.remove_vpc(vpc_id)
            except Exception as exc:
                log.error("vpc removal failed %s", _kv(vpc_id=vpc_id, error=repr(exc)))

    def stop_all(self) -> None:
        for worker in self.workers.values():
            worker.update(replace(worker.desired, desired_status=DesiredStatus.STOPPED))

    # ------------------------------------------------------------------------------ adoption

    async def adopt(self, state: DesiredState) -> None:
        """The first answer: adopt what is desired, remove what is not (see the module docstring)."""
        self.instance_status = state.instance_status
        self._set_vpcs(state)
        observed = await self.network.observe() if self.network is not None else netplan.ObservedNetwork()
        if self.network is not None:
            await self.network.set_security(state)
        found: dict[str, dict[str, ContainerHandle]] = {}
        for handle in self.runtime.list_ours():
            found.setdefault(handle.task_id, {})[handle.name] = handle
        desired = {t.task_id: t for t in state.tasks}
        inactive = state.instance_status == "INACTIVE"

        for task_id, task in desired.items():
            if inactive:
                task = replace(task, desired_status=DesiredStatus.STOPPED)
            known = tp.KnownTask(task.arn)
            handles = found.pop(task_id, {})
            for name, handle in handles.items():
                status = self.runtime.status(handle)
                known = known.with_container(_known_from_runtime(name, status, handle.runtime_id))
            seen = observed.tasks.get(task_id)
            worker = TaskWorker(self, task, known, handles=dict(handles), seen_network=seen)
            if seen is not None and self.network is not None and self._network_matches(task, seen, observed):
                try:  # its table is reloaded whole (the first load of the VPC since we started)
                    await self.network.protect_task(task)
                    worker.known = tp.network_ready(worker.known)
                    worker.netns_path = self.network.netns_path(task_id)
                except Exception as exc:  # the worker's EnsureNetwork retries (and loads the rules)
                    log.error("firewall adoption failed %s", _kv(task_arn=task.arn, error=repr(exc)))
            log.info(
                "adopted %s",
                _kv(
                    task_arn=task.arn,
                    desired=task.desired_status.value,
                    containers=",".join(f"{n}:{c.phase.value}" for n, c in known.containers.items()) or None,
                    network=worker.known.network.value,
                ),
            )
            self._start_worker(worker)

        orphans = set(found) | (set(observed.tasks) - set(desired))
        cleanups = [
            self.spawn(
                self._remove_orphan(task_id, found.get(task_id, {}), observed.tasks.get(task_id)), "orphan"
            )
            for task_id in sorted(orphans)
        ]
        if self.network is not None:
            for stray in observed.strays:
                log.info("removing stray %s", _kv(kind=stray.kind, name=stray.name))
                try:
                    await self.network.remove_stray(stray)
                except Exception as exc:
                    log.error("stray removal failed %s", _kv(name=stray.name, error=repr(exc)))
            undesired_vpcs = (set(observed.routers) | set(observed.host_access)) - set(self.vpcs)
            undesired_vpcs -= {t.eni.vpc_id for t in desired.values() if t.eni is not None}
            if undesired_vpcs:
                self.spawn(self._remove_vpcs_after(cleanups, sorted(undesired_vpcs)), "vpc removal")
        self.spawn(self._prune_logs_forever(), "log pruning")
        self.adopted = True

    async def _prune_logs_forever(self) -> None:
        while True:
            self.prune_logs()
            await asyncio.sleep(LOG_RETENTION / 4)

    def prune_logs(self, now: float | None = None) -> list[str]:
        """Delete the kept logs of tasks that ended more than ``LOG_RETENTION`` seconds ago."""
        now = self.clock() if now is None else now
        active = {w.desired.task_id for w in self.workers.values()}
        busy = {h.task_id for h in self.runtime.list_ours()}
        pruned = []
        tasks_dir = self.runtime.state_dir / "tasks"
        for entry in tasks_dir.iterdir() if tasks_dir.is_dir() else ():
            if entry.name in active or entry.name in busy or not entry.is_dir():
                continue
            try:
                newest = max([entry.stat().st_mtime, *(p.stat().st_mtime for p in entry.glob("*/log"))])
            except OSError:
                continue
            if now - newest > LOG_RETENTION:
                try:
                    self.runtime.purge_task(entry.name)
                    remove_task_volumes(self.runtime.state_dir, entry.name)
                    pruned.append(entry.name)
                except Exception as exc:
                    log.warning("log pruning failed %s", _kv(task_id=entry.name, error=repr(exc)))
        return pruned

    def _network_matches(
        self, task: tp.DesiredTask, seen: netplan.ObservedTask, observed: netplan.ObservedNetwork
    ) -> bool:
        eni = task_eni(task)
        if eni is None or task.eni is None or self.network is None:
            return False
        try:
            return netplan.task_matches(
                self.network.cfg,
                netplan.DesiredTask(task.eni.vpc_id, eni),
                seen,
                observed.routers.get(task.eni.vpc_id),
            )
        except ValueError:
            return False

    async def _remove_orphan(
        self, task_id: str, handles: Mapping[str, ContainerHandle], seen: netplan.ObservedTask | None
    ) -> None:
        """A task that is not desired: stop its containers, then remove its network (errors don't stop us)."""
        log.info("removing undesired task %s", _kv(task_id=task_id, containers=len(handles) or None))

        async def stop(handle: ContainerHandle) -> None:
            try:
                if self.runtime.status(handle).possibly_running:
                    await self.runtime.stop(handle, ORPHAN_STOP_TIMEOUT)
                await self.runtime.remove(handle)
            except Exception as exc:
                log.error(
                    "orphan stop failed %s", _kv(task_id=task_id, container=handle.name, error=repr(exc))
                )

        await asyncio.gather(*(stop(h) for h in handles.values()))
        if self.network is not None and seen is not None:
            try:
                await self.network.remove_task(task_id, seen)
            except Exception as exc:
                log.error("orphan network removal failed %s", _kv(task_id=task_id, error=repr(exc)))

    async def _remove_vpcs_after(
        self, cleanups: Sequence[asyncio.Task[None]], vpc_ids: Sequence[str]
    ) -> None:
        await asyncio.gather(*cleanups, return_exceptions=True)
        await self._remove_vpcs_when_unused(vpc_ids)
