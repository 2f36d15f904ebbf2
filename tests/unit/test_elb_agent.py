"""The load balancers' agent side without root: placement, planning, HAProxy text, and real health checks
against HTTP servers on 127.0.0.1 (the checker's sockets come from a factory; in the agent it makes them
inside the LB's namespace)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from taskvpc.agent.drivers.haproxy import Haproxy
from taskvpc.agent.healthcheck import HealthChecker, matcher_accepts, probe, status_of
from taskvpc.agent.loadbalancers import haproxy_config, plan
from taskvpc.agentapi.loadbalancers import (
    DesiredLoadBalancer,
    HealthCheck,
    LbTarget,
    LbTargetGroup,
    TargetHealthEntry,
    TargetHealthReport,
)
from taskvpc.agentapi.network import Subnet, Vpc
from taskvpc.agentapi.reports import WireError
from taskvpc.control.elbv2.agent_section import choose_owner

LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/web/0123456789abcdef"
TG_ARN = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web/00000000000000aa"


def test_matcher_takes_codes_and_ranges() -> None:
    assert matcher_accepts("200", 200) and not matcher_accepts("200", 204)
    assert matcher_accepts("200,202", 202) and not matcher_accepts("200,202", 201)
    assert matcher_accepts("200-299", 250) and not matcher_accepts("200-299", 300)
    assert not matcher_accepts("nonsense", 200)


@given(st.integers(100, 599), st.integers(100, 599), st.integers(100, 599))
def test_a_range_matches_exactly_its_codes(low: int, high: int, status: int) -> None:
    assert matcher_accepts(f"{low}-{high}", status) == (low <= status <= high)


def test_status_line() -> None:
    assert status_of(b"HTTP/1.1 503 Service Unavailable\r\n") == 503
    assert status_of(b"HTTP/1.0 200 OK\r\n") == 200
    assert status_of(b"SSH-2.0-OpenSSH\r\n") is None


def test_placement_prefers_the_lbs_vpc_and_a_connected_agent_and_sticks() -> None:
    instances = [
        {"id": "a", "vpc_id": "vpc-other", "agent_connected": True},
        {"id": "b", "vpc_id": "vpc-1", "agent_connected": False},
        {"id": "c", "vpc_id": "vpc-1", "agent_connected": True},
    ]
    lb = {"VpcId": "vpc-1"}
    assert choose_owner(lb, instances) == "c"
    assert choose_owner({**lb, "_AgentInstanceId": "a"}, instances) == "a"  # recorded and still ACTIVE
    assert choose_owner({**lb, "_AgentInstanceId": "gone"}, instances) == "c"
    assert choose_owner({"VpcId": "vpc-9"}, instances) == "a"  # no agent in its VPC: the first connected
    assert choose_owner(lb, []) is None


def _lb(*targets: LbTarget) -> DesiredLoadBalancer:
    vpc = Vpc("vpc-1", ("10.0.0.0/16",), (Subnet.of("subnet-1", "10.0.1.0/24"),))
    listener = {"ListenerArn": "arn:l", "Port": 80, "Protocol": "HTTP"}
    rule = {
        "ListenerArn": "arn:l",
        "Priority": "default",
        "Conditions": [],
        "Actions": [{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": TG_ARN}]}}],
    }
    group = LbTargetGroup(TG_ARN, "HTTP", 80, HealthCheck(), tuple(targets))
    return DesiredLoadBalancer(LB_ARN, "web", "application", vpc, (), (listener,), (rule,), (group,))


def test_plan_ensures_the_desired_and_removes_what_else_is_found() -> None:
    lb = _lb()
    assert plan({lb.lb_id: lb}, {"00000000000000ff", lb.lb_id}) == ([lb.lb_id], ["00000000000000ff"])
    assert plan({}, set()) == ([], [])


def test_haproxy_config_serves_only_checked_targets() -> None:
    lb = _lb(
        LbTarget("10.0.1.5", 80, "initial"),
        LbTarget("10.0.1.6", 80, "healthy"),
        LbTarget("10.0.1.7", 80, "draining"),
    )
    local = {"10.0.1.5": "initial", "10.0.1.6": "healthy"}
    text = haproxy_config(lb, lambda tg, ip, port: local[ip], "/run/x.sock", {})
    assert "bind 0.0.0.0:80" in text and "stats socket /run/x.sock" in text
    assert "server t_10_0_1_5_80 10.0.1.5:80 disabled" in text  # initial: no traffic before a check passes
    assert "server t_10_0_1_6_80 10.0.1.6:80\n" in text
    assert "server t_10_0_1_7_80 10.0.1.7:80 weight 0" in text  # draining: connections kept, no new ones


def test_target_health_report_is_read_strictly() -> None:
    entry = TargetHealthEntry(TG_ARN, "10.0.1.5", 80, "unhealthy", "Target.Timeout")
    assert TargetHealthReport.from_wire(TargetHealthReport((entry,)).to_wire()).targets == (entry,)
    for bad in ({}, {"targets": [{"id": "x"}]}, {"targets": [{**entry.to_wire(), "port": "80"}]}):
        with pytest.raises(WireError):
            TargetHealthReport.from_wire(bad)


# ---------------------------------------------------------------------------------------------- probes


@asynccontextmanager
async def http_server(answer: Callable[[], bytes | None]) -> AsyncIterator[int]:
    """An HTTP server on 127.0.0.1; ``answer()`` gives the response, or None to say nothing at all."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        response = answer()
        if response is None:
            await asyncio.sleep(5)
        else:
            writer.write(response)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def _status(code: int) -> Callable[[], bytes]:
    return lambda: f"HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n".encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_probe_results() -> None:
    asyncio.run(_probe_results())


async def _probe_results() -> None:
    check = HealthCheck(timeout=1)
    async with http_server(_status(200)) as port:
        assert (await probe(socket.socket, "127.0.0.1", port, check)).kind == "pass"
    async with http_server(_status(500)) as port:
        event = await probe(socket.socket, "127.0.0.1", port, check)
        assert (event.kind, event.cause, event.code) == ("fail", "code", "500")
        assert (await probe(socket.socket, "127.0.0.1", port, HealthCheck(matcher="200-599"))).kind == "pass"
    async with http_server(lambda: None) as port:
        event = await probe(socket.socket, "127.0.0.1", port, check)
        assert (event.kind, event.cause) == ("fail", "timeout")
    event = await probe(socket.socket, "127.0.0.1", _free_port(), check)
    assert (event.kind, event.cause) == ("fail", "failed")


def test_checker_passes_a_good_target_at_once_and_fails_a_bad_one_after_the_threshold() -> None:
    asyncio.run(_checker())


async def _checker() -> None:
    reports: list[TargetHealthEntry] = []
    changed: list[str] = []
    async with http_server(_status(200)) as good, http_server(_status(503)) as bad:
        checker = HealthChecker(socket.socket, changed.append, reports.append)
        group = LbTargetGroup(
            TG_ARN,
            "HTTP",
            80,
            HealthCheck(interval=0, timeout=1, unhealthy_threshold=3),
            (LbTarget("127.0.0.1", good, "initial"), LbTarget("127.0.0.1", bad, "initial")),
        )
        checker.set_groups([group])
        for _ in range(200):
            if len(reports) >= 2:
                break
            await asyncio.sleep(0.01)
        assert checker.state((TG_ARN, "127.0.0.1", good)) == "healthy"
        assert checker.state((TG_ARN, "127.0.0.1", bad)) == "unhealthy"
        by_port = {r.port: r for r in reports}
        assert by_port[good] == TargetHealthEntry(TG_ARN, "127.0.0.1", good, "healthy")
        assert by_port[bad] == TargetHealthEntry(
            TG_ARN, "127.0.0.1", bad, "unhealthy", "Target.ResponseCodeMismatch", "503"
        )
        assert changed and set(changed) == {TG_ARN}
        # Draining targets are no longer checked.
        checker.set_groups(
            [
                LbTargetGroup(
                    TG_ARN, "HTTP", 80, group.health_check, (LbTarget("127.0.0.1", good, "draining"),)
                )
            ]
        )
        assert checker.targets == {}
        checker.close()


@pytest.mark.skipif(shutil.which("haproxy") is None or shutil.which("openssl") is None, reason="no haproxy")
def test_https_listener_gets_a_self_signed_certificate_haproxy_accepts(tmp_path: Path) -> None:
    haproxy = Haproxy(tmp_path / "lb", "unused-netns")
    arn = "arn:aws:acm:us-east-1:1:certificate/abc"
    pem = haproxy.certificate(arn, "web.elb.taskvpc.internal", 0)
    assert haproxy.certificate(arn, "web.elb.taskvpc.internal", 0) == pem  # made once
    text = Path(pem).read_text()
    assert "BEGIN CERTIFICATE" in text and "PRIVATE KEY" in text
    lb = _lb(LbTarget("10.0.1.6", 80, "healthy"))
    https = {**lb.listeners[0], "Protocol": "HTTPS", "Port": 443, "Certificates": [{"CertificateArn": arn}]}
    rule = {**lb.rules[0], "ListenerArn": "arn:l"}
    lb = replace(lb, listeners=(https,), rules=(rule,))
    config = haproxy_config(lb, lambda tg, ip, port: "healthy", str(tmp_path / "admin.sock"), {arn: pem})
    assert f"bind 0.0.0.0:443 ssl crt {pem}" in config
    (tmp_path / "h.cfg").write_text(config)
    check = subprocess.run(
        ["haproxy", "-c", "-q", "-f", str(tmp_path / "h.cfg")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
