"""The task engine: one asyncio worker per task applies ``taskplan.plan_task`` through the drivers.

* Desired state arrives as the agent API's answers (:meth:`Engine.apply`); desired status only moves
  forward, a redundant move is ignored, and a task the control plane forgets is stopped.
* Each :class:`TaskWorker` owns its task's known state (no one else changes it). It plans, records the
  plan's decisions, launches the plan's I/O (network, container start/stop) as asyncio tasks, and plans
  again on every change: an I/O result, a container exit, a health change, new desired state. Work therefore
  starts within a loop iteration of arriving.
* Reports go through :class:`~taskvpc.agent.reporter.Reporter`: the latest report per task, sent in
  batches; the STOPPED report's acknowledgement lets a worker forget its task.
* On start (:meth:`Engine.adopt`, with the first desired-state answer): everything of ours on the host is
  observed (the data plane's ``observe``, the runtime's ``list_ours``); desired tasks are adopted with what
  was found (a container in an unknown state counts as running); containers of tasks that are not desired
  are stopped, then their networks removed; the data plane's first reconcile removes strays and routers
  no task needs.
* Teardown runs in reverse (containers, then the network) and keeps going after errors.

The network goes through :class:`~taskvpc.agent.dataplane.DataPlane`, the one network reconciler (a pure
``netplan.plan`` applied through a ``netplan.NetworkDriver``, ``drivers.netlink.NetlinkDriver`` for real,
and the VPC routers' firewalls), the containers through a :class:`~taskvpc.agent.runtime.Runtime`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from taskvpc.agent import instance_config, netplan, taskplan as tp
from taskvpc.agent.containerspec import build_container_spec
from taskvpc.agent.dataplane import DataPlane as DataPlane
from taskvpc.agent.desiredview import TaskChanges
from taskvpc.agent.kvlog import kv
from taskvpc.agent.logshipper import LogShipper
from taskvpc.agent.reporter import REPORT_INTERVAL as REPORT_INTERVAL, Reporter as Reporter
from taskvpc.agent.runtime import (
    ContainerHandle,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    HealthStatus,
    Runtime,
    StartError,
    container_dir,
    error_text,
)
from taskvpc.agent.runtime.health import HealthMonitor
from taskvpc.agent.starttiming import StartTiming
from taskvpc.agent.taskresource import BridgedNetwork, NetworkResource, ResourceContext, TaskResources
from taskvpc.agent.volumes import remove_task_volumes
from taskvpc.agentapi.answer import DesiredState as DesiredState
from taskvpc.agentapi.network import Vpc
from taskvpc.domain.lifecycle import DesiredStatus

if TYPE_CHECKING:
    from taskvpc.agent.taskmeta_server import TaskEndpoints

log = logging.getLogger(__name__)

T = TypeVar("T")

NETWORK_REMOVE_ATTEMPTS = 5
ORPHAN_STOP_TIMEOUT = 10.0
LOG_RETENTION = 3600.0  # a stopped task's container logs are kept this long (``taskvpc logs``)


async def _wait_for(awaitable: Awaitable[T], timeout: float) -> T:
    """``asyncio.wait_for`` that never swallows a cancellation (3.11's can, when both race)."""
    async with asyncio.timeout(timeout):
        return await awaitable


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
    entry: tp.DesiredTask | None = None  # the desired-state entry last handed to update()
    timing: StartTiming | None = None  # a new task's start phases, logged once RUNNING is acknowledged

    def __post_init__(self) -> None:
        self.wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._watchers: dict[str, list[asyncio.Task[None]]] = {}
        self._resources: TaskResources | None = None
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
                kv(
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
                log.exception("worker action failed %s", kv(task_arn=self.arn))
            finally:
                self.wake.set()

        task = asyncio.ensure_future(wrapped())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def _dispatch(self, action: tp.Action) -> None:
        handler = _HANDLERS.get(type(action))
        if handler is not None:
            handler(self, action)

    def _on_ensure_network(self, action: tp.EnsureNetwork) -> None:
        self._spawn(self._ensure_resources(action.attempt))

    def _on_start(self, action: tp.StartContainer) -> None:
        self._spawn(self._start(action.name))

    def _on_stop(self, action: tp.StopContainer) -> None:
        self._spawn(self._stop(action.name, action.timeout))

    def _on_remove_network(self, action: tp.RemoveNetwork) -> None:
        self._spawn(self._remove_resources())

    def _on_report(self, action: tp.Report) -> None:
        if self.timing is not None and action.report.known_status == tp.TaskView.RUNNING.value:
            self.timing.running_reported()
        self.engine.reporter.submit(action.report, self._acked)

    def _on_begin_stop(self, action: tp.BeginStop) -> None:
        log.info("stopping %s", kv(task_arn=self.arn, reason=action.reason, code=action.code.value))

    def _on_cancel(self, action: tp.CancelContainer) -> None:
        self._unwatch(action.name)

    def _on_status(self, action: tp.SetStatus) -> None:
        log.info("known %s", kv(task_arn=self.arn, known=action.status.value))

    def _acked(self, report: tp.TaskReport) -> None:
        if self.timing is not None and report.known_status == tp.TaskView.RUNNING.value:
            self.timing.log_acked(self.arn)
            self.timing = None
        if report.known_status == tp.TaskView.STOPPED.value and not self.known.stopped_acked:
            self.known = replace(self.known, stopped_acked=True)
            self.wake.set()

    # ------------------------------------------------------------------------------ network

    @property
    def resources(self) -> TaskResources:
        """The task's resources (taskresource.py), made the first time they are needed."""
        if self._resources is None:
            engine = self.engine
            ctx = ResourceContext(self.desired, engine.network, engine.runtime.state_dir, engine.logs)
            self._resources = TaskResources(ctx)
        return self._resources

    async def _ensure_resources(self, attempt: int) -> None:
        """The planner's ``EnsureNetwork``: every task resource (the network first) before any container."""
        if attempt:
            await asyncio.sleep(min(2.0, 0.1 * 2 ** (attempt - 1)))
        try:
            await self.resources.ensure()
            endpoints, eni = self.engine.endpoints, self.desired.eni
            if endpoints is not None and eni is not None:  # 169.254.170.2 before any container
                await endpoints.ensure_vpc(eni.vpc_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("resources failed %s", kv(task_arn=self.arn, attempt=attempt + 1, error=repr(exc)))
            self.known = tp.network_failed(self.known, str(exc) or type(exc).__name__)
            return
        network = self.resources.get("network")
        self.netns_path = (
            network.netns_path if isinstance(network, NetworkResource | BridgedNetwork) else None
        )
        self.known = tp.network_ready(self.known)
        if self.timing is not None:
            self.timing.network_ready()

    async def _remove_resources(self) -> None:
        """The planner's ``RemoveNetwork``: every task resource, in reverse, once the containers stopped."""
        for attempt in range(NETWORK_REMOVE_ATTEMPTS):
            try:
                await self.resources.remove()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep going: a later agent start removes whatever is left
                log.error(
                    "resource removal failed %s", kv(task_arn=self.arn, attempt=attempt + 1, error=repr(exc))
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
        if refusal := instance_config.CURRENT.container_refusal():  # a Windows instance
            raise StartError(refusal)
        spec = build_container_spec(self.desired, name, self.engine.runtime.state_dir)
        endpoints = self.engine.endpoints
        return spec if endpoints is None else endpoints.container_spec(self.desired, spec)

    async def _start(self, name: str) -> None:
        runtime = self.engine.runtime
        log_path = str(container_dir(runtime.state_dir, self.desired.task_id, name) / "log")
        began = time.monotonic()
        try:
            handle = await runtime.start(self._container_spec(name), self.netns_path, log_path)
        except StartError as exc:
            log.warning("start failed %s", kv(task_arn=self.arn, container=name, reason=exc.reason))
            self._record_pull(ContainerHandle(self.desired.task_id, name))  # a failed pull has its times too
            self.known = tp.container_start_failed(self.known, name, exc.reason)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = f"CannotStartContainerError: {error_text(exc)}"
            log.exception("start failed %s", kv(task_arn=self.arn, container=name))
            self.known = tp.container_start_failed(self.known, name, reason)
            return
        self.handles[name] = handle
        if self.timing is not None:
            self.timing.container_started(name, time.monotonic() - began)
        state = runtime.status(handle)
        started_at = state.started_at or self.engine.clock()
        self.known = tp.image_pulled(self.known, state.pull_started_at, state.pull_stopped_at)
        self.known = tp.container_started(self.known, name, handle.runtime_id, started_at)
        log.info("started %s", kv(task_arn=self.arn, container=name, pid=state.pid))
        self._watch(name, handle)

    def _watch(self, name: str, handle: ContainerHandle) -> None:
        """Wait for the container's end; run its health checks meanwhile."""
        runtime = self.engine.runtime
        tasks: list[asyncio.Task[None]] = []

        async def waiter() -> None:
            state = await runtime.wait(handle)
            self.known = tp.container_exited(self.known, name, state.exit_code, state.reason)
            log.info("exited %s", kv(task_arn=self.arn, container=name, exit_code=state.exit_code))
            for task in self._watchers.pop(name, []):
                if task is not asyncio.current_task():
                    task.cancel()
            self.wake.set()

        tasks.append(asyncio.ensure_future(waiter()))
        spec = self.desired.container(name)
        if spec is not None and spec.health_check is not None and spec.health_check.argv() is not None:

            def changed(status: HealthStatus) -> None:
                self.known = tp.container_health(self.known, name, status)
                log.info("health %s", kv(task_arn=self.arn, container=name, health=status.value))
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
            log.error("stop failed %s", kv(task_arn=self.arn, container=name, error=repr(exc)))
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
                log.warning("remove failed %s", kv(task_arn=self.arn, container=name, error=repr(exc)))
        log.info("forgotten %s", kv(task_arn=self.arn))
        self.engine.worker_done(self)


# What each of the planner's actions makes the worker do: one entry per action type (a decision without
# I/O, such as ``Forget``, is handled in ``run``).
_HANDLERS: dict[type, Callable[[TaskWorker, Any], None]] = {
    tp.EnsureNetwork: TaskWorker._on_ensure_network,
    tp.StartContainer: TaskWorker._on_start,
    tp.StopContainer: TaskWorker._on_stop,
    tp.RemoveNetwork: TaskWorker._on_remove_network,
    tp.Report: TaskWorker._on_report,
    tp.BeginStop: TaskWorker._on_begin_stop,
    tp.CancelContainer: TaskWorker._on_cancel,
    tp.SetStatus: TaskWorker._on_status,
}


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
        # how many workers use each VPC (the one each started with): a finished task checks its own VPC,
        # not every other worker's, before closing that VPC's 169.254.170.2 listener
        self._vpc_users: collections.Counter[str] = collections.Counter()
        self._vpc_of: dict[str, str] = {}
        self.finished: set[str] = set()  # tasks reported STOPPED and forgotten: ignore if still listed
        self.instance_status = "ACTIVE"
        self.vpcs: dict[str, Vpc] = {}
        self.adopted = False
        self._background: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self.endpoints: TaskEndpoints | None = None  # 169.254.170.2 (taskmeta_server), real networks only
        self.logs: LogShipper | None = None  # the awslogs driver (logshipper.py)

    # ------------------------------------------------------------------------------ plumbing

    def spawn(self, coro: Awaitable[None], what: str) -> asyncio.Task[None]:
        async def wrapped() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed", what)

        def done(task: asyncio.Task[None]) -> None:
            self._background.discard(task)
            if task.cancelled() and inspect.iscoroutine(coro):
                coro.close()  # cancelled before it began (at close): it never will

        task = asyncio.ensure_future(wrapped())
        self._background.add(task)
        task.add_done_callback(done)
        return task

    async def _reconcile_network(self) -> None:
        if self.network is not None:
            await self.network.reconcile()

    def worker_done(self, worker: TaskWorker) -> None:
        if self.workers.get(worker.arn) is worker:
            del self.workers[worker.arn]
            self._uncount_vpc(worker.arn)
        self.finished.add(worker.arn)
        if self.endpoints is not None:
            self.endpoints.forget_unused(self._vpc_users)
        self._changed.set()

    def _uncount_vpc(self, arn: str) -> None:
        vpc_id = self._vpc_of.pop(arn, None)
        if vpc_id is not None:
            self._vpc_users[vpc_id] -= 1
            if self._vpc_users[vpc_id] <= 0:
                del self._vpc_users[vpc_id]

    def vpcs_in_use(self) -> set[str]:
        """The VPCs of the workers' ENIs (those they started with)."""
        return set(self._vpc_users)

    def _start_worker(self, worker: TaskWorker) -> None:
        self._uncount_vpc(worker.arn)  # a worker replaced under the same arn: its count goes with it
        self.workers[worker.arn] = worker
        if worker.desired.eni is not None:
            self._vpc_of[worker.arn] = worker.desired.eni.vpc_id
            self._vpc_users[worker.desired.eni.vpc_id] += 1
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
        if self.logs is not None:
            await self.logs.close()
        if self.network is not None:
            self.network.close()

    # ------------------------------------------------------------------------------ desired state

    def _set_vpcs(self, state: DesiredState) -> bool:
        """Record the desired VPCs; whether they changed (a router may have to go)."""
        before = self.vpcs
        self.vpcs = {v.vpc_id: v for v in state.vpcs}
        if self.network is not None:
            self.network.set_vpcs(state.vpcs)
        return before != self.vpcs

    def apply(self, state: DesiredState, changes: TaskChanges | None = None) -> None:
        """A desired-state answer after adoption: new workers, forward moves, forgotten tasks stopped.

        ``changes``: the tasks the answer changed, when it was a delta (``DesiredView.changes``): only they
        are looked at, not every task of the host (None: every task, as after a full answer)."""
        if not state.changed:
            return
        was_inactive = self.instance_status == "INACTIVE"
        self.instance_status = state.instance_status
        vpcs_changed = self._set_vpcs(state)
        inactive = state.instance_status == "INACTIVE"
        if inactive and not was_inactive:
            changes = None  # every task is to stop
        if self.network is not None:
            changed_tasks = None if changes is None else changes.tasks
            self.spawn(self.network.set_security(state, changed_tasks), "security groups")
        if changes is None:
            self._apply_tasks(state.tasks, inactive)
        else:
            self._apply_changes(changes, inactive)
        if vpcs_changed and self.network is not None:  # a VPC no task needs loses its router
            self.spawn(self._reconcile_network(), "network")

    def _apply_changes(self, changes: TaskChanges, inactive: bool) -> None:
        """A delta's changed and removed tasks; the others are as the last answer left them."""
        self.finished.difference_update(changes.removed)
        self._update_or_start(changes.tasks, inactive)
        for arn in changes.removed:
            worker = self.workers.get(arn)
            if worker is not None:
                worker.update(replace(worker.desired, desired_status=DesiredStatus.STOPPED))

    def _apply_tasks(self, tasks: tuple[tp.DesiredTask, ...], inactive: bool) -> None:
        """Every task listed; workers of tasks not listed are stopped."""
        listed = {t.arn for t in tasks}
        self.finished &= listed
        self._update_or_start(tasks, inactive)
        for arn, worker in list(self.workers.items()):
            if arn not in listed or inactive:
                worker.update(replace(worker.desired, desired_status=DesiredStatus.STOPPED))

    def _update_or_start(self, tasks: tuple[tp.DesiredTask, ...], inactive: bool) -> None:
        for desired in tasks:
            if desired.arn in self.finished:
                continue
            if inactive:
                desired = replace(desired, desired_status=DesiredStatus.STOPPED)
            worker = self.workers.get(desired.arn)
            if worker is not None:
                if worker.entry is not desired:  # a delta keeps an unchanged entry: nothing to wake for
                    worker.entry = desired
                    worker.update(desired)
            else:
                log.info("new task %s", kv(task_arn=desired.arn, desired=desired.desired_status.value))
                worker = TaskWorker(self, desired, tp.KnownTask(desired.arn), timing=StartTiming.begin())
                self._start_worker(worker)

    def stop_all(self) -> None:
        for worker in self.workers.values():
            worker.update(replace(worker.desired, desired_status=DesiredStatus.STOPPED))

    # ------------------------------------------------------------------------------ adoption

    async def adopt(self, state: DesiredState) -> None:
        """The first answer: adopt what is desired, remove what is not (see the module docstring)."""
        self.instance_status = state.instance_status
        self._set_vpcs(state)
        network = self.network
        observed = await network.observe() if network is not None else netplan.ObservedNetwork()
        if network is not None:
            await network.set_security(state)
        found: dict[str, dict[str, ContainerHandle]] = {}
        for handle in self.runtime.list_ours():
            found.setdefault(handle.task_id, {})[handle.name] = handle
        inactive = state.instance_status == "INACTIVE"
        desired = {
            t.task_id: replace(t, desired_status=DesiredStatus.STOPPED) if inactive else t
            for t in state.tasks
        }
        orphans = sorted((set(found) | set(observed.tasks)) - set(desired))
        if network is not None:
            for task_id, task in desired.items():
                if task_id in observed.tasks or task.desired_status is DesiredStatus.RUNNING:
                    network.want(task)
            for task_id in orphans:
                network.keep(task_id)  # until its containers are stopped
            await network.reconcile()  # strays and undesired routers go; adopted ENIs get their rules

        for task_id, task in desired.items():
            known = tp.KnownTask(task.arn)
            handles = found.pop(task_id, {})
            for name, handle in handles.items():
                status = self.runtime.status(handle)
                known = known.with_container(_known_from_runtime(name, status, handle.runtime_id))
            worker = TaskWorker(self, task, known, handles=dict(handles))
            if (
                network is not None
                and task_id in observed.tasks
                and network.matches(task)
                and task_id not in network.failures
            ):
                worker.known = tp.network_ready(worker.known)
                worker.netns_path = network.netns_path(task_id)
            log.info(
                "adopted %s",
                kv(
                    task_arn=task.arn,
                    desired=task.desired_status.value,
                    containers=",".join(f"{n}:{c.phase.value}" for n, c in known.containers.items()) or None,
                    network=worker.known.network.value,
                ),
            )
            if self.logs is not None:  # adopted: awslogs goes on from each container's cursor
                self.logs.resume(task)
            self._start_worker(worker)

        endpoints = self.endpoints
        if endpoints is not None:  # adopted networks skip EnsureNetwork: their VPCs' 169.254.170.2 now
            for vpc_id in sorted(
                {t.eni.vpc_id for t in desired.values() if t.eni and t.task_id in observed.tasks}
            ):
                self.spawn(endpoints.ensure_vpc(vpc_id), f"task endpoints {vpc_id}")
        for task_id in orphans:
            self.spawn(self._remove_orphan(task_id, found.get(task_id, {})), "orphan")
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
                    log.warning("log pruning failed %s", kv(task_id=entry.name, error=repr(exc)))
        return pruned

    async def _remove_orphan(self, task_id: str, handles: Mapping[str, ContainerHandle]) -> None:
        """A task that is not desired: stop its containers, then remove its network (errors don't stop us)."""
        log.info("removing undesired task %s", kv(task_id=task_id, containers=len(handles) or None))

        async def stop(handle: ContainerHandle) -> None:
            try:
                if self.runtime.status(handle).possibly_running:
                    await self.runtime.stop(handle, ORPHAN_STOP_TIMEOUT)
                await self.runtime.remove(handle)
            except Exception as exc:
                log.error(
                    "orphan stop failed %s", kv(task_id=task_id, container=handle.name, error=repr(exc))
                )

        await asyncio.gather(*(stop(h) for h in handles.values()))
        if self.network is not None:
            try:
                await self.network.remove_task(task_id)
            except Exception as exc:  # the next reconcile tries again
                log.error("orphan network removal failed %s", kv(task_id=task_id, error=repr(exc)))
