"""An NLB's TLS listeners: HAProxy in TCP mode, in the NLB's namespace (``elb_haproxy.compile_tls_config``).

nftables cannot terminate TLS, so a TLS listener is not a DNAT (``agent/nlb.py`` leaves it out of the
table): its port is bound by one HAProxy per NLB (the same driver, files and adoption as an ALB's, see
``drivers/haproxy.py``), started only while the NLB has a TLS listener and stopped when the last one goes.
It decrypts with the listener's certificate (made locally per certificate ARN, marked as such: taskvpc
has no ACM) and passes the stream to a target picked among the ones the NLB's table would pick (healthy,
or all when none is), plain for a TCP target group, re-encrypted for a TLS one. Connections leave from the
NLB's own address, as the SNATed TCP flows do, so the targets' groups judge them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from taskvpc.agent import nlb
from taskvpc.agent.drivers.haproxy import Haproxy
from taskvpc.agentapi.loadbalancers import DesiredLoadBalancer
from taskvpc.netmodel import elb_haproxy, elb_health, elb_nft

States = Callable[[str, str, int], str]


def certificate_arns(lb: DesiredLoadBalancer) -> list[str]:
    """The certificate ARNs of the NLB's TLS listeners, each once, in listener order."""
    arns = [
        str(c["CertificateArn"])
        for li in lb.listeners
        if li.get("Protocol") == "TLS"
        for c in li.get("Certificates") or []
    ]
    return list(dict.fromkeys(arns))


def listeners_of(
    lb: DesiredLoadBalancer, states: States, certificates: Mapping[str, str]
) -> list[elb_haproxy.TlsListener]:
    """The NLB's TLS listeners with the servers new connections may go to; ``certificates``: ARN -> file."""
    groups = {g.arn: g for g in lb.target_groups}
    out = []
    for listener in lb.listeners:
        if listener.get("Protocol") != "TLS" or not listener.get("Certificates"):
            continue
        forwarded = []
        for arn, weight in nlb.forwarded_groups(listener):
            group = groups.get(arn)
            if group is None:
                continue
            seen = [
                (
                    t.ip,
                    t.port,
                    elb_health.DRAINING if t.state == elb_health.DRAINING else states(arn, t.ip, t.port),
                )
                for t in group.targets
            ]
            servers = tuple((b.address, b.port) for b in elb_nft.pick_targets(seen))
            forwarded.append(elb_haproxy.TlsGroup(arn, weight, group.protocol == "TLS", servers))
        certificate = certificates[str(listener["Certificates"][0]["CertificateArn"])]
        out.append(elb_haproxy.TlsListener(int(listener["Port"]), certificate, tuple(forwarded)))
    return out


def ensure(haproxy: Haproxy, lb: DesiredLoadBalancer, states: States, loaded: str | None) -> str:
    """HAProxy serving the NLB's TLS listeners, or stopped when it has none; the configuration now loaded
    ("" when none). ``loaded`` is what this agent loaded last (None: nothing yet, so a master found running,
    an adopted one, is reloaded once with this configuration). Blocking: run it in a thread."""
    arns = certificate_arns(lb)
    if not arns:
        if loaded != "":
            haproxy.stop()
        return ""
    name = f"{lb.name}.elb.taskvpc.internal"
    certificates = {arn: haproxy.certificate(arn, name, i) for i, arn in enumerate(arns)}
    config = elb_haproxy.compile_tls_config(
        listeners_of(lb, states, certificates), stats_socket=str(haproxy.admin_socket)
    )
    if config != loaded:
        haproxy.ensure(config, force=loaded is None)
    return config
