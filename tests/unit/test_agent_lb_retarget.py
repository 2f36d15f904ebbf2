"""A target change of a running load balancer reaches HAProxy before anything slow of the apply
(agent/loadbalancers.py, ``LoadBalancers.submit``): deregistration -> no new requests."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from taskvpc.agent import loadbalancers, netplan
from taskvpc.agent.healthcheck import HealthChecker
from taskvpc.agent.loadbalancers import LoadBalancers, retargetable, without_targets
from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.loadbalancers import (
    LOAD_BALANCERS,
    DesiredLoadBalancer,
    HealthCheck,
    LbTarget,
    LbTargetGroup,
    TargetHealthEntry,
    TargetHealthReport,
)
from taskvpc.agentapi.network import Eni, Vpc
from taskvpc.netmodel import elb_haproxy

TG = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/00000000000000aa"
LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/web/0123456789abcdef"
LISTENER = {
    "ListenerArn": LB_ARN.replace("loadbalancer", "listener") + "/1",
    "Port": 80,
    "Protocol": "HTTP",
    "DefaultActions": [{"Type": "forward", "TargetGroupArn": TG}],
}


def _lb(*targets: LbTarget, listeners: tuple[dict[str, Any], ...] = (LISTENER,)) -> DesiredLoadBalancer:
    eni = Eni(
        attachment_id="att-1",
        network_interface_id="eni-00000000000000001",
        mac_address="02:00:00:00:00:01",
        private_ipv4_address="10.0.1.9",
        prefix_length=24,
        gateway="10.0.1.1",
        subnet_id="subnet-1",
        vpc_id="vpc-1",
    )
    group = LbTargetGroup(TG, "HTTP", 80, HealthCheck(interval=5), tuple(targets))
    return DesiredLoadBalancer(
        arn=LB_ARN,
        name="web",
        type="application",
        vpc=Vpc("vpc-1"),
        enis=(eni,),
        listeners=listeners,
        target_groups=(group,),
    )


A, B = LbTarget("10.0.1.5", 80, "healthy"), LbTarget("10.0.1.6", 80, "healthy")


def test_a_change_of_targets_alone_is_retargetable() -> None:
    both, one = _lb(A, B), _lb(B)
    assert retargetable(both, one)
    assert retargetable(both, _lb(A, replace(B, state="draining", drain_seconds=3.0)))
    assert without_targets(both) == without_targets(one)
    assert not retargetable(both, both)  # nothing to do
    moved = {**LISTENER, "Port": 8080}
    assert not retargetable(both, _lb(B, listeners=(moved,)))  # a listener change needs the full apply
    assert not retargetable(both, replace(_lb(B), enis=()))


class _Haproxy:
    """Records runtime commands (the real driver talks to HAProxy's admin socket)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def runtime(self, commands: list[str]) -> list[str]:
        self.sent += commands
        return []


class _SlowNetwork:
    """A data plane whose thread is busy (another answer's security groups, say) until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0
        self.known = None

    def want_vpcs(self, vpcs: object) -> None:
        list(vpcs)  # type: ignore[call-overload]

    async def reconcile(self) -> None:
        self.calls += 1
        await self.release.wait()

    async def call(self, function: object, *args: object) -> object:
        self.calls += 1
        await self.release.wait()
        return []


def test_deregistration_reaches_haproxy_before_the_slow_part_of_the_apply(tmp_path: Path) -> None:
    asyncio.run(_deregistration_first(tmp_path))


async def _deregistration_first(tmp_path: Path) -> None:
    network = _SlowNetwork()

    async def send(report: object) -> None:
        return None

    lbs = LoadBalancers(network, netplan.NetConfig(prefix="tvt"), tmp_path, send)  # type: ignore[arg-type]
    before = _lb(A, B)
    checker = HealthChecker(lambda: None, changed=lambda tg: None, report=lambda e: None)  # type: ignore[arg-type,return-value]
    haproxy = _Haproxy()
    running = loadbalancers._Running(before, haproxy, checker)  # type: ignore[arg-type]
    running.structure = "loaded"
    running.servers = lbs._serving(running)
    lbs.running[before.lb_id] = running

    after = _lb(B)  # A deregistered (delay 0: gone from the answer)
    lbs.submit(DesiredState(2, True, {LOAD_BALANCERS.key: (after,)}))
    for _ in range(20):
        await asyncio.sleep(0.01)
        if haproxy.sent:
            break
    backend = elb_haproxy.backend_name(TG)
    name = elb_haproxy.server_name(elb_haproxy.Target(A.ip, A.port, "healthy"))
    assert haproxy.sent[0] == f"set server {backend}/{name} state maint", haproxy.sent
    assert not network.release.is_set() and network.calls >= 1  # the full apply still waits on the network
    assert running.lb == after
    network.release.set()
    await lbs.close()
    checker.close()


class _Known:
    routers = {"vpc-1": object()}


class _Network:
    """A data plane that takes ``delay`` seconds per call (its thread busy with other work)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.known = _Known()
        self.firewall = None

    def want_vpcs(self, vpcs: object) -> None:
        list(vpcs)  # type: ignore[call-overload]

    async def reconcile(self) -> None:
        await asyncio.sleep(self.delay)

    async def call(self, function: Any, *args: object) -> object:
        await asyncio.sleep(self.delay)
        return [] if getattr(function, "__name__", "") == "observe" else None


class _RecordingHaproxy(_Haproxy):
    """HAProxy as the agent drives it: a loaded configuration and the servers' runtime states."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.config: str | None = None
        self.admin_socket = directory / "admin.sock"
        self.state: dict[str, str] = {}

    def ensure(self, config: str, force: bool = False) -> bool:
        self.config = config
        self.state = {}
        for line in config.splitlines():
            parts = line.split()
            if parts[:1] == ["server"]:
                self.state[parts[1]] = "maint" if "disabled" in parts else "ready"
        return True

    def stop(self) -> bool:
        self.config = None
        return True

    def runtime(self, commands: list[str]) -> list[str]:
        super().runtime(commands)
        for command in commands:
            words = command.split()
            name = next(w for w in words if "/" in w).split("/")[1]
            if words[:2] == ["add", "server"]:
                self.state[name] = "maint"
            elif words[:2] == ["set", "server"]:
                self.state[name] = words[4]
            elif words[:2] == ["del", "server"]:
                self.state.pop(name, None)
        return []


def test_answers_in_quick_succession_end_with_listeners_loaded_and_targets_served(tmp_path: Path) -> None:
    """CreateLoadBalancer, CreateListener, RegisterTargets, DeregisterTargets answered while the network
    is slow: whatever interleaving of fast path and full apply, HAProxy ends with the listener and the
    one remaining target ready."""
    asyncio.run(_quick_succession(tmp_path))


async def _quick_succession(tmp_path: Path) -> None:
    network = _Network(delay=0.02)

    async def send(report: object) -> None:
        return None

    lbs = LoadBalancers(network, netplan.NetConfig(prefix="tvt"), tmp_path, send)  # type: ignore[arg-type]
    haproxy = _RecordingHaproxy(tmp_path)
    healthy: set[tuple[str, int]] = set()

    class Checker(HealthChecker):
        def state(self, key: tuple[str, str, int]) -> str:
            return "healthy" if key[1:] in healthy else "initial"

    checker = Checker(lambda: None, changed=lambda tg: None, report=lambda e: None)  # type: ignore[arg-type,return-value]
    empty = replace(_lb(), listeners=(), target_groups=())
    running = loadbalancers._Running(empty, haproxy, checker)  # type: ignore[arg-type]
    lbs.running[empty.lb_id] = running

    def answer(generation: int, lb: DesiredLoadBalancer) -> DesiredState:
        return DesiredState(generation, True, {LOAD_BALANCERS.key: (lb,)})

    initial = (replace(A, state="initial"), replace(B, state="initial"))
    steps = [empty, _lb(), _lb(*initial), _lb(A, B), _lb(B)]
    for generation, lb in enumerate(steps, start=1):
        if generation == 4:
            healthy.update({(A.ip, A.port), (B.ip, B.port)})
            lbs._servers_changed(lb.lb_id)  # the checker's verdicts
        lbs.submit(answer(generation, lb))
        await asyncio.sleep(0.005)  # answers come faster than a full apply
    for _ in range(100):
        await asyncio.sleep(0.02)
        if lbs._runner is not None and lbs._runner.done() and not lbs._syncs:
            break
    assert haproxy.config is not None and "bind 0.0.0.0:80" in haproxy.config, haproxy.config
    a_name = elb_haproxy.server_name(elb_haproxy.Target(A.ip, A.port, "healthy"))
    b_name = elb_haproxy.server_name(elb_haproxy.Target(B.ip, B.port, "healthy"))
    assert haproxy.state.get(b_name) == "ready", (haproxy.state, haproxy.sent)
    assert haproxy.state.get(a_name) in (None, "maint"), (haproxy.state, haproxy.sent)
    await lbs.close()
    checker.close()


def test_a_reload_is_done_only_when_a_new_worker_answers(tmp_path: Path) -> None:
    """Right after HAProxy's start the old worker's ``Uptime_sec`` is 0 too: only its pid tells the new
    worker apart (a runtime command the old one takes is lost with it)."""
    import socket
    import threading

    from taskvpc.agent.drivers.haproxy import Haproxy

    haproxy = Haproxy(tmp_path, "unused-netns")
    tmp_path.mkdir(exist_ok=True)
    answers = ["Pid: 100\nUptime_sec: 0\n"] * 3 + ["Pid: 200\nUptime_sec: 0\n"]
    served: list[str] = []
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(haproxy.admin_socket))
    server.listen(8)

    def serve() -> None:
        for answer in answers:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(answer.encode())
                served.append(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert haproxy._worker_pid() == "100"
    haproxy._wait_socket(fresh_after=0.0, other_than="100", timeout=5)
    assert served[-1].startswith("Pid: 200"), served  # not done while pid 100 answered
    assert len(served) == 4
    thread.join(timeout=2)
    server.close()


def test_a_change_of_targets_alone_needs_no_full_apply_once_the_last_one_is_done(tmp_path: Path) -> None:
    """After an answer's full apply finished, an answer that changes nothing but targets is the runtime
    commands alone: no apply (observe, the network thread) competes with them. A change of anything else
    in the answer, or an apply still running, gets the full apply."""
    asyncio.run(_no_full_apply(tmp_path))


async def _no_full_apply(tmp_path: Path) -> None:
    network = _Network(delay=0.0)

    async def send(report: object) -> None:
        return None

    lbs = LoadBalancers(network, netplan.NetConfig(prefix="tvt"), tmp_path, send)  # type: ignore[arg-type]
    haproxy = _RecordingHaproxy(tmp_path)
    checker = HealthChecker(lambda: None, changed=lambda tg: None, report=lambda e: None)  # type: ignore[arg-type,return-value]
    first = _lb(A, B)
    running = loadbalancers._Running(first, haproxy, checker)  # type: ignore[arg-type]
    lbs.running[first.lb_id] = running
    applied: list[int] = []
    real_apply = lbs.apply

    async def apply(state: DesiredState, sequence: int | None = None) -> None:
        applied.append(state.generation)
        await real_apply(state, sequence)

    lbs.apply = apply  # type: ignore[method-assign]

    async def settle() -> None:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if (lbs._runner is None or lbs._runner.done()) and not lbs._syncs:
                return

    vpcs = (Vpc("vpc-1"),)
    lbs.submit(DesiredState(1, True, {LOAD_BALANCERS.key: (first,), "vpcs": vpcs}))
    await settle()
    assert applied == [1] and haproxy.config is not None
    haproxy.sent.clear()

    lbs.submit(DesiredState(2, True, {LOAD_BALANCERS.key: (_lb(B),), "vpcs": vpcs}))  # A deregistered
    await settle()
    assert applied == [1], "a target change alone ran the full apply"
    name = elb_haproxy.server_name(elb_haproxy.Target(A.ip, A.port, "healthy"))
    assert haproxy.sent and haproxy.sent[0].endswith(f"/{name} state maint"), haproxy.sent
    assert running.lb == _lb(B)

    other = (Vpc("vpc-1"), Vpc("vpc-2"))  # another section changed too: the full apply runs
    lbs.submit(DesiredState(3, True, {LOAD_BALANCERS.key: (_lb(A, B),), "vpcs": other}))
    await settle()
    assert applied == [1, 3]
    await lbs.close()
    checker.close()


def test_a_verdict_is_reported_only_once_haproxy_serves_with_it(tmp_path: Path) -> None:
    """A target passing its first check while the ALB's HAProxy is still being started (a certificate
    made, the configuration checked): DescribeTargetHealth must not say healthy before requests get
    through, so the verdict reaches the control plane only after the load that puts it in force."""
    asyncio.run(_verdict_after_load(tmp_path))


async def _verdict_after_load(tmp_path: Path) -> None:
    network = _Network(delay=0.0)
    sent: list[tuple[float, list[str]]] = []
    loaded: list[float] = []
    loop = asyncio.get_running_loop()

    async def send(report: TargetHealthReport) -> None:
        sent.append((loop.time(), [f"{t.ip}:{t.state}" for t in report.targets]))

    lbs = LoadBalancers(network, netplan.NetConfig(prefix="tvt"), tmp_path, send)
    started = threading.Event()

    class SlowHaproxy(_RecordingHaproxy):
        def ensure(self, config: str, force: bool = False) -> bool:
            started.set()
            time.sleep(0.3)  # openssl, haproxy -c, the first worker's socket
            loaded.append(loop.time())
            return super().ensure(config, force)

    haproxy = SlowHaproxy(tmp_path)
    verdicts: dict[tuple[str, str, int], str] = {}

    class Checker(HealthChecker):
        def state(self, key: tuple[str, str, int]) -> str:
            return verdicts.get(key, "initial")

        def set_groups(self, groups: object) -> None:
            pass

    checker = Checker(lambda: None, changed=lambda tg: None, report=lambda e: None)  # type: ignore[arg-type,return-value]
    empty = replace(_lb(), listeners=(), target_groups=())
    running = loadbalancers._Running(empty, haproxy, checker)  # type: ignore[arg-type]
    lbs.running[empty.lb_id] = running
    lbs.submit(DesiredState(1, True, {LOAD_BALANCERS.key: (_lb(replace(A, state="initial")),)}))
    while not started.is_set():
        await asyncio.sleep(0.005)
    verdicts[(TG, A.ip, A.port)] = "healthy"  # the checker's first pass, during the load
    lbs._hold_report(empty.lb_id, TargetHealthEntry(TG, A.ip, A.port, "healthy"))
    lbs._servers_changed(empty.lb_id)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if sent:
            break
    assert loaded and sent == [(sent[0][0], [f"{A.ip}:healthy"])]
    assert sent[0][0] >= loaded[0], "reported healthy before HAProxy served"
    name = elb_haproxy.server_name(elb_haproxy.Target(A.ip, A.port, "healthy"))
    assert haproxy.state.get(name) == "ready", (haproxy.state, haproxy.sent)
    await lbs.close()
    checker.close()
