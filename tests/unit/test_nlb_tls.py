"""An NLB's TLS listeners -> HAProxy in TCP mode (agent/nlb_tls.py, elb_haproxy.compile_tls_config); HAProxy
itself accepts the configuration with a certificate made as the agent makes it (no root needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from taskvpc.agent import nlb_tls
from taskvpc.agent.drivers.haproxy import Haproxy
from taskvpc.agentapi.loadbalancers import DesiredLoadBalancer, HealthCheck, LbTarget, LbTargetGroup
from taskvpc.agentapi.network import Vpc
from taskvpc.netmodel import elb_haproxy

TG = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/tcp/00000000000000aa"
TLS_TG = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/tls/00000000000000bb"
CERT = "arn:aws:acm:us-east-1:000000000000:certificate/11111111-2222-3333-4444-555555555555"


def _listener(protocol: str, port: int, tg: str, cert: bool = True) -> dict[str, object]:
    doc: dict[str, object] = {
        "ListenerArn": f"arn:listener/{port}",
        "Protocol": protocol,
        "Port": port,
        "DefaultActions": [{"Type": "forward", "TargetGroupArn": tg}],
    }
    if cert:
        doc["Certificates"] = [{"CertificateArn": CERT}]
    return doc


def _lb(*listeners: dict[str, object]) -> DesiredLoadBalancer:
    plain = LbTargetGroup(
        TG,
        "TCP",
        80,
        HealthCheck(protocol="TCP"),
        (
            LbTarget("10.0.1.5", 80, "healthy"),
            LbTarget("10.0.1.6", 80, "unhealthy"),
            LbTarget("10.0.1.7", 80, "draining"),
        ),
    )
    tls = LbTargetGroup(
        TLS_TG, "TLS", 443, HealthCheck(protocol="TCP"), (LbTarget("10.0.1.8", 443, "unhealthy"),)
    )
    return DesiredLoadBalancer(
        arn="arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/net/tls/0123456789abcdef",
        name="tls",
        type="network",
        vpc=Vpc("vpc-1"),
        enis=(),
        listeners=listeners,
        target_groups=(plain, tls),
    )


def _states(tg: str, ip: str, port: int) -> str:
    return {"10.0.1.5": "healthy", "10.0.1.6": "unhealthy", "10.0.1.8": "unhealthy"}.get(ip, "initial")


def test_only_tls_listeners_get_haproxy_and_their_servers_follow_nlb_picking() -> None:
    lb = _lb(_listener("TCP", 80, TG, cert=False), _listener("TLS", 443, TG), _listener("TLS", 8443, TLS_TG))
    assert nlb_tls.certificate_arns(lb) == [CERT]
    assert nlb_tls.certificate_arns(_lb(_listener("TCP", 80, TG, cert=False))) == []
    found = nlb_tls.listeners_of(lb, _states, {CERT: "/x/cert-0.pem"})
    assert [(li.port, li.certificate) for li in found] == [(443, "/x/cert-0.pem"), (8443, "/x/cert-0.pem")]
    # healthy only (the unhealthy and the draining one take no new connection); all when none is healthy
    assert found[0].groups == (elb_haproxy.TlsGroup(TG, 1, False, (("10.0.1.5", 80),)),)
    assert found[1].groups == (elb_haproxy.TlsGroup(TLS_TG, 1, True, (("10.0.1.8", 443),)),)


def test_tls_config_terminates_and_reencrypts_only_tls_groups() -> None:
    lb = _lb(_listener("TLS", 443, TG), _listener("TLS", 8443, TLS_TG))
    text = elb_haproxy.compile_tls_config(
        nlb_tls.listeners_of(lb, _states, {CERT: "/c.pem"}), stats_socket="/s"
    )
    assert "    bind 0.0.0.0:443 ssl crt /c.pem" in text
    assert f"    default_backend {elb_haproxy.backend_name(TG)}" in text
    assert "    server t_10_0_1_5_80 10.0.1.5:80\n" in text
    assert "    server t_10_0_1_8_443 10.0.1.8:443 ssl verify none\n" in text
    assert "mode http" not in text


def test_weighted_groups_pick_by_one_draw() -> None:
    listener = elb_haproxy.TlsListener(
        443,
        "/c.pem",
        (elb_haproxy.TlsGroup(TG, 3, False, ()), elb_haproxy.TlsGroup(TLS_TG, 1, True, ())),
    )
    text = elb_haproxy.compile_tls_config([listener], stats_socket="/s")
    assert "tcp-request content set-var(sess.pick443) rand(4)" in text
    assert "{ var(sess.pick443) -m int ge 0 } { var(sess.pick443) -m int lt 3 }" in text
    assert "{ var(sess.pick443) -m int ge 3 } { var(sess.pick443) -m int lt 4 }" in text


@pytest.mark.skipif(
    shutil.which("haproxy") is None or shutil.which("openssl") is None, reason="haproxy/openssl not installed"
)
def test_haproxy_accepts_the_tls_configuration_with_a_locally_made_certificate(tmp_path: Path) -> None:
    driver = Haproxy(tmp_path / "lb", "unused")
    pem = driver.certificate(CERT, "tls.elb.taskvpc.internal", 0)
    assert driver.certificate(CERT, "tls.elb.taskvpc.internal", 0) == pem  # made once
    subject = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-in", pem], capture_output=True, text=True, check=True
    ).stdout
    assert "taskvpc self-signed (no ACM)" in subject and "tls.elb.taskvpc.internal" in subject
    lb = _lb(_listener("TLS", 443, TG), _listener("TLS", 8443, TLS_TG))
    config = tmp_path / "nlb.cfg"
    config.write_text(
        elb_haproxy.compile_tls_config(
            nlb_tls.listeners_of(lb, _states, {CERT: pem}), stats_socket=str(tmp_path / "admin.sock")
        )
    )
    result = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr
