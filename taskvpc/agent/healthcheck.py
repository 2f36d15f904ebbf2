"""The load balancers' health checker: ELB's checks, sent from inside the LB's namespace.

Each registered (not draining) target of a target group the LB forwards to gets one asyncio task that
probes it every ``interval`` seconds with the group's settings and steps ``netmodel.elb_health`` with the
result. Probes leave from the LB's own ENI addresses (their sockets are made inside the LB's namespace),
so the VPC router enforces the targets' security groups on them exactly as on the LB's traffic: a target
whose groups do not admit the LB's sees its SYN dropped, and the check times out (``Target.Timeout`` on
an ALB).

A probe: TCP connect within ``timeout`` (refused or reset: ``failed``; no answer: ``timeout``); for HTTP,
``GET <path>`` and the status line read within the same ``timeout``, matched against the group's matcher
(``200``, ``200,202``, ``200-299``; else ``code``). The first check runs at once (ELB: a new target needs
one passing check). Every state change is handed to ``changed`` (the HAProxy servers follow it) and to
``report`` (the control plane's DescribeTargetHealth).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from taskvpc.agent.kvlog import kv
from taskvpc.agentapi.loadbalancers import HealthCheck, LbTargetGroup, TargetHealthEntry
from taskvpc.netmodel import elb_health

log = logging.getLogger(__name__)

Key = tuple[str, str, int]  # (target group ARN, ip, port)
USER_AGENT = "ELB-HealthChecker/2.0"


def matcher_accepts(matcher: str, status: int) -> bool:
    """ELB's ``Matcher.HttpCode``: codes and ranges separated by commas."""
    for part in matcher.split(","):
        low, _, high = part.strip().partition("-")
        try:
            if int(low) <= status <= int(high or low):
                return True
        except ValueError:
            continue
    return False


def status_of(head: bytes) -> int | None:
    """The status code of an HTTP response's first line, or None when it is not one."""
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])


def request_bytes(path: str, host: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def policy_of(group: LbTargetGroup) -> elb_health.Policy:
    check = group.health_check
    return elb_health.Policy(
        healthy_threshold=check.healthy_threshold,
        unhealthy_threshold=check.unhealthy_threshold,
        application=group.protocol in ("HTTP", "HTTPS"),
    )


SocketFactory = Callable[[], socket.socket]


async def probe(make_socket: SocketFactory, ip: str, port: int, check: HealthCheck) -> elb_health.Event:
    """One health check; the ``pass``/``fail`` event it amounts to."""
    loop = asyncio.get_running_loop()
    sock = make_socket()
    sock.setblocking(False)
    try:
        async with asyncio.timeout(check.timeout):
            try:
                await loop.sock_connect(sock, (ip, port))
            except OSError:
                return elb_health.Event("fail", cause="failed")
            if check.protocol == "TCP":
                return elb_health.Event("pass")
            if check.protocol == "HTTPS":
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                reader, writer = await asyncio.open_connection(sock=sock, ssl=context, server_hostname=ip)
            else:
                reader, writer = await asyncio.open_connection(sock=sock)
            try:
                writer.write(request_bytes(check.path, f"{ip}:{port}"))
                await writer.drain()
                head = await reader.readuntil(b"\r\n")
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return elb_health.Event("fail", cause="failed")
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
    except TimeoutError:
        return elb_health.Event("fail", cause="timeout")
    finally:
        sock.close()
    status = status_of(head)
    if status is not None and matcher_accepts(check.matcher, status):
        return elb_health.Event("pass")
    return elb_health.Event("fail", cause="code", code=str(status) if status is not None else "")


@dataclass
class _Target:
    group: LbTargetGroup
    health: elb_health.Health
    task: asyncio.Task[None] | None = None


class HealthChecker:
    """The checks of one load balancer; see the module docstring."""

    def __init__(
        self,
        make_socket: SocketFactory,
        changed: Callable[[str], None],
        report: Callable[[TargetHealthEntry], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.make_socket = make_socket
        self.changed = changed
        self.report = report
        self.clock = clock
        self.targets: dict[Key, _Target] = {}

    def state(self, key: Key) -> str:
        target = self.targets.get(key)
        return target.health.state if target is not None else elb_health.INITIAL

    def set_groups(self, groups: Iterable[LbTargetGroup]) -> None:
        """Check every registered target of ``groups`` that is not draining; stop checking the rest. A
        target new to this checker starts from the control plane's state when that is a verdict (an
        agent restart keeps serving), else ``initial``."""
        wanted: dict[Key, tuple[LbTargetGroup, str]] = {}
        for group in groups:
            for t in group.targets:
                if t.state != elb_health.DRAINING:
                    wanted[(group.arn, t.ip, t.port)] = (group, t.state)
        for key in [k for k in self.targets if k not in wanted]:
            self._drop(key)
        for key, (group, known) in wanted.items():
            target = self.targets.get(key)
            if target is not None:
                if target.group.health_check != group.health_check or target.group.protocol != group.protocol:
                    self._drop(key)  # new settings: start over with them
                    target = None
                else:
                    target.group = group
            if target is None:
                seed = known if known in (elb_health.HEALTHY, elb_health.UNHEALTHY) else elb_health.INITIAL
                target = self.targets[key] = _Target(group, elb_health.Health(seed))
                target.task = asyncio.ensure_future(self._run(key))

    def _drop(self, key: Key) -> None:
        target = self.targets.pop(key, None)
        if target is not None and target.task is not None:
            target.task.cancel()

    def close(self) -> None:
        for key in list(self.targets):
            self._drop(key)

    async def _run(self, key: Key) -> None:
        _, ip, port = key
        while key in self.targets:
            target = self.targets[key]
            check = target.group.health_check
            started = self.clock()
            try:
                event = await probe(self.make_socket, ip, check.port_for(port), check)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the probe itself broke (no namespace): not the target's fault
                log.warning("health check failed to run %s", kv(target=f"{ip}:{port}", error=repr(exc)))
                await asyncio.sleep(check.interval)
                continue
            if self.targets.get(key) is not target:
                return
            before = target.health
            after = elb_health.step(before, event, policy_of(target.group))
            target.health = after
            if (after.state, after.reason, after.description) != (
                before.state,
                before.reason,
                before.description,
            ):
                self._changed(key, after, event)
            await asyncio.sleep(max(0.0, check.interval - (self.clock() - started)))

    def _changed(self, key: Key, health: elb_health.Health, event: elb_health.Event) -> None:
        tg_arn, ip, port = key
        code = event.code if health.reason == "Target.ResponseCodeMismatch" else None
        log.info("target health %s", kv(target=f"{ip}:{port}", state=health.state, reason=health.reason))
        if health.state != elb_health.INITIAL:  # initial is what the control plane shows until a verdict
            self.report(TargetHealthEntry(tg_arn, ip, port, health.state, health.reason, code))
        self.changed(tg_arn)
