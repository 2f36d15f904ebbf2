"""The load balancers this agent runs: the ``loadBalancers`` section -> namespaces, HAProxy, health checks.

For each application load balancer of the latest answer (:func:`plan`, pure, says what to ensure and what
to remove):

1. its VPC's router (``DataPlane.want_vpcs``: the router routes every subnet of the VPC, whatever the
   instance's own AZ), and its ENIs registered with that VPC's firewall *before* their veths exist, with
   the LB's security groups (``security.FirewallSync``), so the LB's groups apply to its ENIs and rules
   that name the LB's group admit exactly its addresses;
2. its namespace with its ENIs (``drivers/lbnet.py``);
3. one HAProxy, master-worker (``drivers/haproxy.py``), whose configuration is compiled from the listeners,
   rules and target groups (``netmodel/elb_haproxy.py``). A change of listeners, rules or groups reloads
   it (hitless); a target change never does: servers are added in maintenance, made ``ready`` once the
   health checker passes them, ``drain`` (weight 0, connections kept) while deregistering, and deleted
   once the control plane drops them (after ``deregistration_delay``), all through the runtime API;
4. its health checker (``healthcheck.py``), whose verdicts go to HAProxy at once and to the control plane
   in batches (``POST …/target-health``).

Everything found on the host for a load balancer that is not desired goes (HAProxy first, then the
namespace, then the firewall registrations), at agent start as when DeleteLoadBalancer removes it from the
answer. A desired one found running is adopted: its namespace is repaired in place and its HAProxy
reloaded once with the configuration this agent computes.

A network load balancer gets the same namespace, ENIs and health checker, but no HAProxy: its listeners
are one nftables table in that namespace (``agent/nlb.py``), replaced atomically on every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from taskvpc.agent import netplan, nlb, nlb_tls
from taskvpc.agent.dataplane import DataPlane
from taskvpc.agent.drivers import netns
from taskvpc.agent.drivers.firewall import NftContext, libnftables
from taskvpc.agent.drivers.haproxy import Haproxy
from taskvpc.agent.drivers.lbnet import LbNetDriver, lb_netns
from taskvpc.agent.healthcheck import HealthChecker
from taskvpc.agent.kvlog import kv
from taskvpc.agent.runtime.procs import cmdline
from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.loadbalancers import (
    LOAD_BALANCERS,
    DesiredLoadBalancer,
    TargetHealthEntry,
    TargetHealthReport,
)
from taskvpc.netmodel import elb_haproxy, elb_health
from taskvpc.netmodel.firewall_ir import EniPort

log = logging.getLogger(__name__)

# Timing marks of a change on its way from the answer to HAProxy / nftables (docs/elbv2.md, "Where the time
# goes"), read by bench/lb.py; off unless TASKVPC_LB_TRACE is set (the control plane has the same switch).
trace = logging.getLogger("taskvpc.lbtrace")
if os.environ.get("TASKVPC_LB_TRACE"):
    trace.setLevel(logging.DEBUG)


def mark(stage: str, **fields: object) -> None:
    """One timing mark (wall clock: the control plane is another process) when tracing is on."""
    if trace.isEnabledFor(logging.DEBUG):
        trace.debug("lbtrace stage=%s t=%.6f %s", stage, time.time(), kv(**fields))


RETRY_DELAY = 2.0
REPORT_DELAY = 0.05  # verdicts of one round of checks go in one report


def served(state: DesiredState) -> dict[str, DesiredLoadBalancer]:
    """The answer's load balancers this agent serves, by LB id (application and network ones, with ENIs)."""
    return {lb.lb_id: lb for lb in state[LOAD_BALANCERS] if lb.type in ("application", "network") and lb.enis}


def without_targets(lb: DesiredLoadBalancer) -> DesiredLoadBalancer:
    """``lb`` with its groups' targets left out: what decides HAProxy's configuration and the LB's
    network, so two answers equal this way differ in targets alone (the runtime API's business)."""
    return replace(lb, target_groups=tuple(replace(g, targets=()) for g in lb.target_groups))


def retargetable(before: DesiredLoadBalancer, after: DesiredLoadBalancer) -> bool:
    """Whether going from ``before`` to ``after`` is a change of targets only (:meth:`LoadBalancers.submit`
    applies those at once, ahead of the full apply)."""
    return before != after and without_targets(before) == without_targets(after)


def plan(desired: Mapping[str, DesiredLoadBalancer], found: set[str]) -> tuple[list[str], list[str]]:
    """(LB ids to ensure, LB ids to remove): every desired one; everything found that is not desired."""
    return sorted(desired), sorted(found - set(desired))


def haproxy_config(
    lb: DesiredLoadBalancer,
    states: Callable[[str, str, int], str],
    admin_socket: str,
    certificates: Mapping[str, str],
) -> str:
    targets = {
        g.arn: [
            elb_haproxy.Target(
                t.ip,
                t.port,
                elb_health.DRAINING if t.state == elb_health.DRAINING else states(g.arn, t.ip, t.port),
            )
            for t in g.targets
        ]
        for g in lb.target_groups
    }
    return elb_haproxy.compile_config(
        lb.listeners,
        lb.rules_by_listener(),
        [g.document() for g in lb.target_groups],
        targets,
        bind_address="0.0.0.0",  # every ENI address of the LB's namespace
        stats_socket=admin_socket,
        certificates=certificates,
    )


@dataclass
class _Running:
    lb: DesiredLoadBalancer
    haproxy: Haproxy
    checker: HealthChecker
    routed: str | None = None  # NLB: its table in the VPC router as loaded (client-IP-preserving listeners)
    servers: dict[str, list[tuple[elb_haproxy.Target, str]]] = field(default_factory=dict)  # as applied
    structure: str | None = None  # the configuration without servers, as last loaded
    drain_timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)  # NLB: address -> its end
    tls: str | None = None  # NLB: its TLS listeners' HAProxy configuration as loaded ("" none; None not yet)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sequence: int = 0  # which submitted answer ``lb`` comes from (LoadBalancers.submit counts them)
    nft: NftContext | None = None  # NLB: libnftables bound to the LB's namespace, after the first load


class LoadBalancers:
    def __init__(
        self,
        network: DataPlane,
        cfg: netplan.NetConfig,
        state_dir: Path,
        send: Callable[[TargetHealthReport], Awaitable[object]],
    ) -> None:
        self.network = network
        self.cfg = cfg
        self.dir = state_dir / "lbs"
        self.send = send
        self.lbnet = LbNetDriver(cfg)
        self.running: dict[str, _Running] = {}
        self._pending: tuple[int, DesiredState] | None = None
        self._last: DesiredState | None = None  # the latest answer submitted
        self._submitted = 0  # answers submitted so far: a newer one's targets are never undone
        self._runner: asyncio.Task[None] | None = None
        self._reports: dict[tuple[str, str, int], TargetHealthEntry] = {}
        # Verdicts not yet in force in their LB's data plane (its HAProxy or table not loaded since), held
        # back from the control plane: DescribeTargetHealth says healthy only once requests get through.
        self._unapplied: dict[str, dict[tuple[str, str, int], TargetHealthEntry]] = {}
        self._reporter: asyncio.Task[None] | None = None
        self._eni_vpcs: dict[str, str] = {}  # ENI id -> VPC id, registered with the firewall
        self.failures: dict[str, str] = {}  # LB id -> why its last ensure failed
        self._syncs: set[asyncio.Task[None]] = set()

    # -- desired state -----------------------------------------------------------------------------

    def want_vpcs(self, state: DesiredState) -> None:
        """The routers the load balancers need (before the data plane's first reconcile removes them)."""
        self.network.want_vpcs(lb.vpc for lb in served(state).values())

    def submit(self, state: DesiredState) -> None:
        """Apply ``state`` soon; answers arriving meanwhile are coalesced (only the latest counts).

        A load balancer already running whose answer changes only targets (a registration, a
        deregistration, the control plane's health view) has them applied at once, ahead of everything
        else of the apply (the LB's network, health bookkeeping, other LBs): deregistration -> no new
        requests is the latency users see (docs/elbv2.md, "Where the time goes")."""
        mark("submitted", generation=state.generation)
        self._submitted += 1
        sequence = self._submitted
        desired = served(state)
        quick = {
            lb_id: (running, lb)
            for lb_id, lb in desired.items()
            if (running := self.running.get(lb_id)) is not None and retargetable(running.lb, lb)
        }
        for running, lb in quick.values():
            self._spawn(self._retarget(running, lb, sequence, state))
        previous, self._last = self._last, state
        if quick and self._applied_but_targets(previous, state, desired):
            return  # the targets were all that changed, and they are applied above
        self._apply_later(sequence, state)

    def _apply_later(self, sequence: int, state: DesiredState) -> None:
        self._pending = (sequence, state)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.ensure_future(self._drain())

    def _applied_but_targets(
        self, previous: DesiredState | None, state: DesiredState, desired: Mapping[str, DesiredLoadBalancer]
    ) -> bool:
        """Whether the full apply would find nothing to do beyond the targets: the last answer's apply is
        done and held (no runner, no failure), every LB runs and differs in targets alone (or not at all),
        and no other section of the answer changed (the merged copy keeps unchanged sections as they
        were, so comparing them is cheap). A target change then costs the agent the runtime commands
        alone, not an apply competing with them (observe, the network thread)."""
        if previous is None or self.failures or self._pending is not None:
            return False
        if self._runner is not None and not self._runner.done():
            return False
        if set(desired) != set(self.running):
            return False
        if any(
            not (r.lb == lb or retargetable(r.lb, lb))
            for r, lb in ((self.running[i], lb) for i, lb in desired.items())
        ):
            return False
        keys = (set(state.sections) | set(previous.sections)) - {LOAD_BALANCERS.key}
        return all(state.sections.get(k) == previous.sections.get(k) for k in keys)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._syncs.add(task)
        task.add_done_callback(self._syncs.discard)

    async def _retarget(
        self, running: _Running, lb: DesiredLoadBalancer, sequence: int, state: DesiredState
    ) -> None:
        """Only ``lb``'s targets changed: to HAProxy through its runtime API (ALB) or into the NLB's
        table, then the health checker follows."""
        async with running.lock:
            if self.running.get(lb.lb_id) is not running or sequence < running.sequence:
                return
            if not retargetable(running.lb, lb):  # the full apply got there first, or more changed since
                return
            ended = nlb.terminated(running.lb, lb) if lb.type == "network" else []
            running.lb, running.sequence = lb, sequence  # no await in between: each change is seen once
            try:
                with self._reporting(running):
                    if lb.type == "network":
                        await self._load_nlb(running)
                    elif running.structure is not None and not await self._sync_servers(running):
                        await self._load_alb(running)
            except Exception as exc:  # a full apply tries again (the latest answer's, if one is due)
                log.warning("targets not applied %s", kv(lb=lb.arn, error=repr(exc)))
                if self._pending is None and sequence == self._submitted:  # never an older answer's
                    self._apply_later(sequence, state)
            running.checker.set_groups(lb.target_groups)
            if lb.type == "network":
                self._time_drains(running)
                if ended:
                    await self._forget(running, ended)

    async def _drain(self) -> None:
        while self._pending is not None:
            (sequence, state), self._pending = self._pending, None
            try:
                await self.apply(state, sequence)
            except Exception:
                log.exception("load balancers: apply failed")
                self.failures["*"] = "apply failed"
            if self.failures and self._pending is None:  # try again until it holds or news arrive
                await asyncio.sleep(RETRY_DELAY)
                self._pending = self._pending or (sequence, state)

    async def apply(self, state: DesiredState, sequence: int | None = None) -> None:
        """Ensure every desired LB, remove the rest; ``sequence`` is the answer's number from :meth:`submit`
        (an LB that already holds a newer answer's targets is left to that answer's own apply)."""
        if sequence is None:
            self._submitted += 1
            sequence = self._submitted
        mark("apply", generation=state.generation)
        self.failures.clear()
        desired = served(state)
        vpcs = {lb.vpc.vpc_id: lb.vpc for lb in desired.values()}
        self.network.want_vpcs(vpcs.values())
        known = self.network.known
        if known is None or not set(vpcs) <= set(known.routers):
            await self.network.reconcile()  # the routers first (only when one is missing: a reconcile
            # clears the data plane's per-task failures, which a task's own ensure then reads)
        found = set(await self.network.call(self.lbnet.observe)) | set(self.running)
        if self.dir.is_dir():
            found |= {p.name for p in self.dir.iterdir() if p.is_dir()}
        ensure, remove = plan(desired, found)
        for lb_id in remove:
            await self._remove(lb_id)
        for lb_id in ensure:
            try:
                await self._ensure(desired[lb_id], sequence)
                self.failures.pop(lb_id, None)
            except Exception as exc:
                self.failures[lb_id] = repr(exc)
                log.error("load balancer failed %s", kv(lb=desired[lb_id].arn, error=repr(exc)))
        if remove:
            await self.network.reconcile()  # a router only the removed LBs needed goes

    # -- ensure ------------------------------------------------------------------------------------

    def _register_enis(self, lb: DesiredLoadBalancer) -> None:
        """On the network thread: the LB's ENIs in their VPC's firewall, with the LB's groups."""
        firewall = self.network.firewall
        if firewall is None:
            return
        for eni in lb.enis:
            port = EniPort(
                eni.network_interface_id,
                netplan.eni_port(self.cfg, eni.network_interface_id),
                eni.private_ipv4_address,
                eni.mac,
                eni.security_group_ids,
            )
            firewall.add_eni(lb.vpc.vpc_id, port)
            firewall.set_desired({}, {eni.network_interface_id: eni.security_group_ids})
            self._eni_vpcs[eni.network_interface_id] = lb.vpc.vpc_id

    def _unregister_enis(self, eni_ids: list[str]) -> None:
        firewall = self.network.firewall
        for eni_id in eni_ids:
            vpc_id = self._eni_vpcs.pop(eni_id, None)
            if firewall is not None:
                firewall.remove_eni(vpc_id, eni_id)

    async def _ensure(self, lb: DesiredLoadBalancer, sequence: int = 0) -> None:
        known = self.network.known
        if known is None or lb.vpc.vpc_id not in known.routers:
            raise RuntimeError(f"no router for {lb.vpc.vpc_id} yet")
        running = self.running.get(lb.lb_id)
        if running is None:
            haproxy = Haproxy(self.dir / lb.lb_id, lb_netns(self.cfg, lb.lb_id))
            checker = HealthChecker(
                self._socket_factory(lb.lb_id),
                changed=partial(self._servers_changed, lb.lb_id),
                report=partial(self._hold_report, lb.lb_id),
            )
            running = self.running[lb.lb_id] = _Running(lb, haproxy, checker)
        elif sequence < running.sequence:
            return  # a newer answer's targets are applied already; that answer's own apply follows
        old_enis = {e.network_interface_id for e in running.lb.enis} - {
            e.network_interface_id for e in lb.enis
        }
        ended = nlb.terminated(running.lb, lb) if lb.type == "network" else []
        running.lb, running.sequence = lb, max(sequence, running.sequence)
        # The LB's network outside the lock: a health verdict or a newer answer's targets reach HAProxy
        # meanwhile (only this one apply ever changes the network).
        await self.network.call(self._register_enis, lb)  # rules before the veths
        await self.network.call(self.lbnet.ensure, lb.lb_id, lb.vpc.vpc_id, lb.enis)
        if old_enis:
            await self.network.call(self._unregister_enis, sorted(old_enis))
        async with running.lock:
            current = running.lb  # this answer's, or a newer one's whose targets went first
            running.checker.set_groups(current.target_groups)
            with self._reporting(running):
                await self._load(running)
            if current.type == "network":
                self._time_drains(running)
            if ended:  # after the table left them out: a forgotten flow must not find them again
                await self._forget(running, ended)

    def _time_drains(self, running: _Running) -> None:
        """Terminate a draining target's flows when its delay ends (``nlb.drain_ends``); a target no longer
        draining (re-registered, or gone: :func:`nlb.terminated` then did it) loses its timer."""
        ends = nlb.drain_ends(running.lb)
        for ip in set(running.drain_timers) - set(ends):
            running.drain_timers.pop(ip).cancel()
        loop = asyncio.get_running_loop()
        for ip, seconds in ends.items():
            if ip not in running.drain_timers:  # one that fired stays, so it is not armed again
                running.drain_timers[ip] = loop.call_later(seconds, self._drain_ended, running, ip)

    def _drain_ended(self, running: _Running, ip: str) -> None:
        async def forget() -> None:
            async with running.lock:
                if self.running.get(running.lb.lb_id) is running:
                    await self._forget(running, [ip])

        self._spawn(forget())

    async def _forget(self, running: _Running, addresses: list[str]) -> None:
        ns = lb_netns(self.cfg, running.lb.lb_id)
        try:
            count = await asyncio.to_thread(nlb.forget_flows, ns, self.cfg.netns_dir, addresses)
        except OSError as exc:  # the flows then end by themselves; the next drain tries again
            log.warning("nlb flows not terminated %s", kv(lb=running.lb.arn, error=repr(exc)))
            return
        log.info("nlb flows terminated %s", kv(lb=running.lb.arn, targets=",".join(addresses), flows=count))

    async def _load(self, running: _Running) -> None:
        if running.lb.type == "network":
            await self._load_nlb(running)
        else:
            await self._load_alb(running)

    async def _load_nlb(self, running: _Running) -> None:
        """The NLB's table, replaced when what it would hold changed (one atomic batch)."""
        running.routed = await asyncio.to_thread(
            nlb.ensure_router_table, self.cfg, running.lb, self._state_of(running), running.routed
        )
        batch = nlb.batch_for(running.lb, self._state_of(running))
        if batch != running.structure:
            await asyncio.to_thread(self._replace_table, running, batch)
            mark("nft-loaded", lb=running.lb.lb_id)
            running.structure = batch
        running.tls = await asyncio.to_thread(
            nlb_tls.ensure, running.haproxy, running.lb, self._state_of(running), running.tls
        )

    def _replace_table(self, running: _Running, batch: str) -> None:
        """The first load (and any after the namespace was remade) goes through ``nlb.apply``, which also
        makes the namespace forward; later ones through libnftables in this process, bound to the LB's
        namespace: a tenth of an ``nft`` process's time (drivers/firewall.py), and a target change is
        exactly such a load."""
        ns = lb_netns(self.cfg, running.lb.lb_id)
        ctx = running.nft
        if ctx is not None and ctx.alive(self.cfg.netns_dir, ns):
            code, _, error = ctx.run(batch)
            if code != 0:
                raise nlb.NlbError(f"nft refused the NLB batch: {error.strip()}")
            return
        if ctx is not None:
            ctx.close()
            running.nft = None
        nlb.apply(ns, self.cfg.netns_dir, batch)
        lib = libnftables()
        fd = netns.open_ns(ns, self.cfg.netns_dir) if lib is not None else None
        if lib is not None and fd is not None:
            running.nft = NftContext(lib, fd)

    async def _load_alb(self, running: _Running) -> None:
        """HAProxy with the LB's configuration: reloaded when listeners/rules/groups changed (or on its
        first load by this agent), else only the servers that changed, through the runtime API."""
        lb, haproxy = running.lb, running.haproxy
        if not lb.listeners:  # HAProxy will not run without one (nor would the LB accept anything)
            await asyncio.to_thread(haproxy.stop)
            running.structure, running.servers = None, {}
            return
        certificates = await asyncio.to_thread(self._certificates, lb, haproxy)
        admin = str(haproxy.admin_socket)
        bare = without_targets(lb)
        structure = haproxy_config(bare, self._state_of(running), admin, certificates)
        for _ in range(2):  # a runtime command HAProxy refused: reload once more, which settles it
            if structure != running.structure:
                await self._reload(running, structure, certificates)
            if await self._sync_servers(running):
                return

    async def _reload(self, running: _Running, structure: str, certificates: Mapping[str, str]) -> None:
        """HAProxy (re)started with the whole configuration, its servers as the checker has them now."""
        lb, haproxy = running.lb, running.haproxy
        # One snapshot of the verdicts for both the file and what we then hold HAProxy to carry: verdicts
        # arriving during the reload are applied right after it, through the runtime API.
        snapshot = {
            (g.arn, t.ip, t.port): running.checker.state((g.arn, t.ip, t.port))
            for g in lb.target_groups
            for t in g.targets
        }

        def frozen(tg: str, ip: str, port: int) -> str:
            return snapshot.get((tg, ip, port), elb_health.INITIAL)

        config = haproxy_config(lb, frozen, str(haproxy.admin_socket), certificates)
        await asyncio.to_thread(haproxy.ensure, config, True)  # adopted ones too
        running.structure = structure
        running.servers = self._serving(running, frozen)

    def _state_of(self, running: _Running) -> Callable[[str, str, int], str]:
        return lambda tg, ip, port: running.checker.state((tg, ip, port))

    def _serving(
        self, running: _Running, states: Callable[[str, str, int], str] | None = None
    ) -> dict[str, list[tuple[elb_haproxy.Target, str]]]:
        states = states or self._state_of(running)
        return {
            g.arn: elb_haproxy.serving(
                [
                    elb_haproxy.Target(
                        t.ip,
                        t.port,
                        elb_health.DRAINING
                        if t.state == elb_health.DRAINING
                        else states(g.arn, t.ip, t.port),
                    )
                    for t in g.targets
                ]
            )
            for g in running.lb.target_groups
        }

    async def _sync_servers(self, running: _Running) -> bool:
        """The servers' changes through the runtime API; False when HAProxy refused one (its servers are
        then unknown: ``structure`` is cleared, so the next load reloads the whole configuration)."""
        after = self._serving(running)
        commands = []
        for tg_arn, servers in after.items():
            backend = elb_haproxy.backend_name(tg_arn)
            commands += elb_haproxy.runtime_commands(backend, running.servers.get(tg_arn, []), servers)
        if not commands:
            return True
        problems = await asyncio.to_thread(running.haproxy.runtime, commands)
        mark(
            "haproxy-runtime",
            lb=running.lb.lb_id,
            commands=len(commands),
            first=commands[0].replace(" ", "_"),
        )
        running.servers = after
        if problems:
            running.structure = None
            log.warning("haproxy runtime %s", kv(lb=running.lb.arn, problems="; ".join(problems)))
            return False
        return True

    def _servers_changed(self, lb_id: str, tg_arn: str = "") -> None:
        running = self.running.get(lb_id)
        if running is None:
            return

        async def sync() -> None:
            async with running.lock:
                if self.running.get(lb_id) is not running:
                    return
                try:
                    with self._reporting(running):
                        if running.lb.type == "network":
                            await self._load_nlb(running)
                        elif running.structure is not None and not await self._sync_servers(running):
                            await self._load_alb(running)
                except Exception as exc:  # the next answer (or verdict) tries again
                    log.warning("verdicts not applied %s", kv(lb=running.lb.arn, error=repr(exc)))

        self._spawn(sync())

    @staticmethod
    def _certificates(lb: DesiredLoadBalancer, haproxy: Haproxy) -> dict[str, str]:
        arns = [str(c["CertificateArn"]) for li in lb.listeners for c in li.get("Certificates") or []]
        name = f"{lb.name}.elb.taskvpc.internal"
        return {arn: haproxy.certificate(arn, name, i) for i, arn in enumerate(dict.fromkeys(arns))}

    def _socket_factory(self, lb_id: str) -> Callable[[], socket.socket]:
        path = netns.path_of(lb_netns(self.cfg, lb_id), self.cfg.netns_dir)

        def make() -> socket.socket:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                with netns.entered(fd):  # a socket keeps the namespace it was made in
                    return socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            finally:
                os.close(fd)

        return make

    # -- health reports ----------------------------------------------------------------------------

    def _hold_report(self, lb_id: str, entry: TargetHealthEntry) -> None:
        """A verdict of ``lb_id``'s checker: reported once the LB's data plane applied it
        (:meth:`_applied`; the checker asks for that sync right after this)."""
        self._unapplied.setdefault(lb_id, {})[(entry.target_group_arn, entry.ip, entry.port)] = entry

    @contextlib.contextmanager
    def _reporting(self, running: _Running) -> Iterator[None]:
        """Around a load of ``running``'s data plane, which puts the checker's verdicts in force: the
        verdicts held when it began are reported if it succeeded and left the LB serving (an ALB's HAProxy
        running with its listeners, the HTTPS ones bound, so the first request right after ``healthy`` is
        served; an NLB's table and its TLS listeners' HAProxy loaded), else held on. Verdicts arriving
        meanwhile wait for the load their own arrival asks for."""
        lb_id = running.lb.lb_id
        taken = self._unapplied.pop(lb_id, {})
        done = False
        try:
            yield
            done = True
        finally:
            serving = running.structure is not None and (
                running.lb.type != "network" or running.tls is not None
            )
            if done and serving and self.running.get(lb_id) is running:
                if taken:
                    self._reports.update(taken)
                    if self._reporter is None or self._reporter.done():
                        self._reporter = asyncio.ensure_future(self._send_reports())
            elif taken and self.running.get(lb_id) is running:
                self._unapplied[lb_id] = {**taken, **self._unapplied.get(lb_id, {})}

    async def _send_reports(self) -> None:
        delay = REPORT_DELAY
        while self._reports:
            await asyncio.sleep(delay)
            batch, self._reports = self._reports, {}
            try:
                await self.send(TargetHealthReport(tuple(batch.values())))
                delay = REPORT_DELAY
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the newest verdicts and try again
                log.warning("target health report failed %s", kv(error=repr(exc)))
                self._reports = {**batch, **self._reports}
                delay = min(5.0, delay * 4)

    # -- remove ------------------------------------------------------------------------------------

    async def _remove(self, lb_id: str) -> None:
        running = self.running.pop(lb_id, None)
        self._unapplied.pop(lb_id, None)
        if running is not None:
            running.checker.close()
            for timer in running.drain_timers.values():
                timer.cancel()
            async with running.lock:  # no load is using the context while it is freed
                if running.nft is not None:
                    running.nft.close()
                    running.nft = None
        haproxy = running.haproxy if running else Haproxy(self.dir / lb_id, lb_netns(self.cfg, lb_id))
        await asyncio.to_thread(haproxy.stop)
        await asyncio.to_thread(self._kill_inside, lb_id)
        await self.network.call(self.lbnet.remove, lb_id)
        await asyncio.to_thread(nlb.remove_router_tables, self.cfg, lb_id)  # an NLB's, if any
        if running is not None:
            await self.network.call(self._unregister_enis, [e.network_interface_id for e in running.lb.enis])
        log.info("load balancer removed %s", kv(lb_id=lb_id))

    def _kill_inside(self, lb_id: str) -> None:
        """HAProxy processes left in the LB's namespace without a pid file of ours (a lost state dir)."""
        try:
            target = os.stat(netns.path_of(lb_netns(self.cfg, lb_id), self.cfg.netns_dir))
        except OSError:
            return
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                st = os.stat(f"/proc/{entry}/ns/net")
            except OSError:
                continue
            args = cmdline(int(entry))
            if (
                (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino)
                and args
                and Path(args[0]).name == "haproxy"
            ):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry), signal.SIGKILL)

    async def close(self) -> None:
        """Stop checking (HAProxy keeps serving: the next agent adopts it, as tasks are adopted)."""
        for running in self.running.values():
            running.checker.close()
            for timer in running.drain_timers.values():
                timer.cancel()
        for task in (self._runner, self._reporter):
            if task is not None:
                task.cancel()
