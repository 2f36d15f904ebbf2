"""VPC Flow Logs from real packets: the agent's collector (docs/logs.md, "Flow collection").

The desired state's ``flowLogs`` section names the task ENIs some flow log covers. For each VPC with
such an ENI, a thread in that VPC's router namespace (where every packet of its task ENIs is routed and
tracked) collects:

* ACCEPT: conntrack counters (``drivers.ctflows``): a read-and-zero dump when a window closes, plus
  the final counters of every DESTROY event in between;
* REJECT: the packets the ENI's security groups drop, logged by the router's table to NFLOG group 7
  (``drivers.nflog``; the log rule is in the table only for ENIs whose flow logs want REJECT:
  :meth:`FirewallSync.set_reject_logging`).

The pure :class:`~taskvpc.netmodel.flow_collect.FlowWindows` turns both into per-ENI records; each closed
window (the ENI's aggregation interval) goes to the control plane as a ``flowRecords`` report entry,
which writes the records into the flow logs' groups. Packet counts: conntrack counts what netfilter
sees, one TSO/GSO super-packet as one; the aggregator turns TCP counts into what a wire would carry
(``flow_collect.wire_counts``), so offloads stay on and collecting costs no throughput.

``TASKVPC_FLOW_LOG_INTERVAL`` (seconds) replaces every aggregation interval. It exists for tests and
benchmarks only: AWS allows 60 and 600 seconds, and a test cannot wait a minute per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from taskvpc.agent import netplan
from taskvpc.agent.drivers import conntrack, ctflows, netns, nflog
from taskvpc.agent.kvlog import kv
from taskvpc.agentapi.answer import INSTANCE, DesiredState
from taskvpc.agentapi.flowlogs import FLOW_LOGS, FlowRecords
from taskvpc.netmodel.firewall_ir import REJECT_LOG_GROUP
from taskvpc.netmodel.flow_collect import FlowWindows, Record, WatchedEni

log = logging.getLogger(__name__)

INTERVAL_OVERRIDE_ENV = "TASKVPC_FLOW_LOG_INTERVAL"
MAX_WAIT = 1.0  # seconds between looks at the stop flag and a changed watch list


def interval_override() -> float | None:
    """The test-only interval from the environment, None when unset or not a positive number."""
    try:
        value = float(os.environ.get(INTERVAL_OVERRIDE_ENV, ""))
    except ValueError:
        return None
    return value if value > 0 else None


@dataclass(frozen=True, slots=True)
class _Target:
    eni: WatchedEni
    task_id: str


def watched(state: DesiredState, override: float | None = None) -> dict[str, list[_Target]]:
    """Per VPC, the ENIs to collect for: those of the answer's tasks that a ``flowLogs`` entry names."""
    wanted = {w.eni_id: w for w in state[FLOW_LOGS]}
    if not wanted:  # the usual answer: no pass over every task of the host
        return {}
    cluster, instance_arn = state[INSTANCE].cluster, state[INSTANCE].container_instance_arn
    out: dict[str, list[_Target]] = {}
    for task in state.tasks:
        eni = task.eni
        if eni is None or eni.network_interface_id not in wanted:
            continue
        watch = wanted[eni.network_interface_id]
        fields: dict[str, object] = {
            "ecs-task-arn": task.arn,
            "ecs-task-id": task.task_id,
            "ecs-cluster-name": cluster or None,
            "ecs-container-instance-arn": instance_arn or None,
            "ecs-container-instance-id": instance_arn.rsplit("/", 1)[-1] or None,
        }
        target = WatchedEni(
            eni.network_interface_id,
            eni.private_ipv4_address,
            override or float(watch.aggregation_interval),
            "ACCEPT" in watch.traffic_types,
            "REJECT" in watch.traffic_types,
            fields,
        )
        out.setdefault(eni.vpc_id, []).append(_Target(target, task.task_id))
    return out


Emit = Callable[[FlowRecords], None]


class RouterCollector:
    """One VPC router's collection thread (see the module docstring)."""

    def __init__(
        self, cfg: netplan.NetConfig, vpc_id: str, emit: Emit, clock: Callable[[], float] = time.time
    ):
        self.cfg = cfg
        self.vpc_id = vpc_id
        self._emit = emit
        self._clock = clock
        self._lock = threading.Lock()
        self._targets: list[_Target] = []
        self._changed = True
        self._stop = threading.Event()
        self._windows = FlowWindows()
        self.ticks = 0
        self._thread = threading.Thread(target=self._run, name=f"taskvpc-flows-{vpc_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def set_targets(self, targets: list[_Target]) -> None:
        with self._lock:
            self._targets = list(targets)
            self._changed = True

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    # -- the thread --------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._collect()
            except Exception as exc:  # a socket error: start again; the open windows end as SKIPDATA
                log.warning("flow collection failed %s", kv(vpc_id=self.vpc_id, error=repr(exc)))
                self._windows.lost()
                self._flush()
                self._stop.wait(1.0)

    def _collect(self) -> None:
        name = netplan.router_netns(self.cfg, self.vpc_id)
        fd = netns.open_ns(name, self.cfg.netns_dir)
        while fd is None:  # the router comes with the VPC's first task
            if self._stop.wait(MAX_WAIT):
                return
            fd = netns.open_ns(name, self.cfg.netns_dir)
        try:
            ctflows.enable_accounting(fd)
            with contextlib.ExitStack() as stack:
                events = stack.enter_context(ctflows.destroy_socket(fd))
                dumper = stack.enter_context(netns.netlink_socket_in(fd, conntrack.NETLINK_NETFILTER))
                dumper.bind((0, 0))
                drops = stack.enter_context(nflog.open_group(fd, REJECT_LOG_GROUP))
                self._loop(events, dumper, drops, lambda: _same_namespace(fd, name, self.cfg.netns_dir))
        finally:
            os.close(fd)

    def _loop(
        self, events: socket.socket, dumper: socket.socket, drops: socket.socket, alive: Callable[[], bool]
    ) -> None:
        """Until stopped, or until the router namespace is removed (our sockets would keep it, and the
        veths in it, alive)."""
        ctflows.dump_and_zero(dumper)  # what was counted before we watched belongs to no window
        while not self._stop.is_set():
            if not alive():
                self._flush(force=True)
                return
            self._update_targets()
            wait = min(MAX_WAIT, max(0.0, self._next_due() - self._clock()))
            readable, _, _ = select.select([events, drops], [], [], wait)
            now = self._clock()
            if events in readable:
                deltas, lost = ctflows.read_events(events)
                for delta in deltas:
                    self._windows.add_conntrack(delta, now)
                if lost:
                    self._windows.lost()
            if drops in readable:
                dropped, lost = nflog.read_drops(drops)
                for drop in dropped:
                    self._windows.add_drop(drop)
                if lost:
                    self._windows.lost()
            if now >= self._next_due():
                for delta in ctflows.dump_and_zero(dumper):
                    self._windows.add_conntrack(delta, now)
                self._flush()
            self.ticks += 1
        for delta in ctflows.dump_and_zero(dumper):  # stopping: what the open windows saw goes out
            self._windows.add_conntrack(delta, self._clock())
        self._flush(force=True)

    def _next_due(self) -> float:
        enis = self._windows.enis
        due = [self._windows.window_end(eni_id) for eni_id in enis]
        return min(due, default=self._clock() + MAX_WAIT)

    def _update_targets(self) -> None:
        with self._lock:
            if not self._changed:
                return
            targets, self._changed = list(self._targets), False
        now = self._clock()
        gone = set(self._windows.enis) - {t.eni.eni_id for t in targets}
        if gone:
            self._flush(force=True, only=gone)
        self._windows.watch([t.eni for t in targets], now)

    def _flush(self, *, force: bool = False, only: set[str] | None = None) -> None:
        closed = self._windows.close_due(self._clock(), force=force, only=only)
        for eni_id, (start, end, records) in closed.items():
            self._emit(FlowRecords(eni_id, start, end, tuple(_wire(r) for r in records)))


def _same_namespace(fd: int, name: str, netns_dir: str) -> bool:
    """Whether ``name`` still names the namespace ``fd`` is (not removed, not remade)."""
    try:
        seen = os.stat(os.path.join(netns_dir, name))
    except OSError:
        return False
    own = os.fstat(fd)
    return (seen.st_dev, seen.st_ino) == (own.st_dev, own.st_ino)


def _wire(record: Record) -> dict[str, str | int | float | None]:
    return {k: v if isinstance(v, str | int | float) or v is None else str(v) for k, v in record.items()}


class FlowLogCollector:
    """Every router's collector, the reject-logging set of the firewall, and the reports' sender."""

    def __init__(
        self,
        cfg: netplan.NetConfig,
        send: Callable[[tuple[FlowRecords, ...]], Awaitable[object]],
        set_reject_logging: Callable[[frozenset[str]], Awaitable[object]] | None = None,
        override: float | None = None,
    ) -> None:
        self.cfg = cfg
        self._send = send
        self._set_reject_logging = set_reject_logging
        self._override = override if override is not None else interval_override()
        self._routers: dict[str, RouterCollector] = {}
        self._queue: asyncio.Queue[FlowRecords] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._rejects: frozenset[str] = frozenset()
        self.sent = 0

    def _emit(self, entry: FlowRecords) -> None:  # called from router threads
        self._loop.call_soon_threadsafe(self._queue.put_nowait, entry)

    async def set_desired(self, state: DesiredState) -> None:
        """Start, change or stop the routers' collection for an answer; never raises (it is logged: the
        agent's tasks matter more than their flow records)."""
        try:
            await self._set_desired(state)
        except Exception as exc:
            log.error("flow log collection not updated %s", kv(error=repr(exc)))

    async def _set_desired(self, state: DesiredState) -> None:
        by_vpc = watched(state, self._override)
        for vpc_id, collector in list(self._routers.items()):
            if vpc_id not in by_vpc:
                await asyncio.to_thread(collector.stop)
                del self._routers[vpc_id]
        for vpc_id, targets in by_vpc.items():
            if vpc_id not in self._routers:
                self._routers[vpc_id] = RouterCollector(self.cfg, vpc_id, self._emit)
                self._routers[vpc_id].start()
            self._routers[vpc_id].set_targets(targets)
        rejects = frozenset(t.eni.eni_id for ts in by_vpc.values() for t in ts if t.eni.reject)
        if rejects != self._rejects and self._set_reject_logging is not None:
            await self._set_reject_logging(rejects)
        self._rejects = rejects

    async def run(self) -> None:
        """Send closed windows as they come, whatever is waiting in one report."""
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._send(tuple(batch))
                self.sent += len(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused (4xx): these records are lost, say so
                log.error("flow records refused %s", kv(entries=len(batch), error=repr(exc)))

    async def close(self) -> None:
        for collector in self._routers.values():
            await asyncio.to_thread(collector.stop)
        self._routers.clear()
        batch = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if batch:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await self._send(tuple(batch))
