"""A network load balancer's data plane: its listeners as one nftables table in the LB's namespace.

Where the NLB lives: in the LB namespace ``<prefix>-l-<lb id>`` holding its ENIs (``drivers/lbnet.py``, as
for an ALB), not as a DNAT in the VPC router. Flows reach the NLB's address through the ENI's router port,
so the NLB's security groups judge the clients' packets there; the table DNATs each new flow to a target
picked by ``numgen random`` over the healthy targets and SNATs it to the NLB's ENI address, so the flow
leaves through the NLB's port and the targets' groups judge it as coming from the NLB (a target group
rule that names the NLB's group admits it, and health checks come from the same addresses). That is ELB's
behaviour with ``preserve_client_ip.enabled = false``, the AWS default for ip targets over TCP, and the only mode
served yet (see docs/elbv2.md).

Every change (listeners, targets, a health verdict) replaces the table in one atomic ``nft -f`` batch
(``elb_nft.replace_batch``): a target left out of the maps gets no new flow while conntrack keeps the
flows it has (draining). When the control plane drops a draining target (its ``deregistration_delay`` ended) from a group
with ``deregistration_delay.connection_termination.enabled``, its conntrack entries in the namespace are
deleted (:func:`terminated`, :func:`forget_flows`): the next packet of such a flow, either way, is a new
flow the table sends elsewhere or refuses, and its sender gets a reset. The namespace forwards (``ip_forward``), which only an NLB's namespace needs. With several
ENIs each flow is marked with the ENI it arrived on, so it and its replies leave by that ENI (``lbnet.fwmark``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

from taskvpc.agent.drivers import conntrack, lbnet, netns
from taskvpc.agentapi.loadbalancers import DesiredLoadBalancer
from taskvpc.netmodel import elb_health, elb_nft

FORWARDING = {"net/ipv4/ip_forward": "1"}
TERMINATION = "deregistration_delay.connection_termination.enabled"


class NlbError(Exception):
    """``nft`` refused the NLB's batch; the message is its."""


def forwarded_groups(listener: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(target group ARN, weight) of a listener's forward action (``TargetGroupArn`` or ``ForwardConfig``)."""
    out: list[tuple[str, int]] = []
    for action in listener.get("DefaultActions") or []:
        if action.get("Type") != "forward":
            continue
        config = action.get("ForwardConfig") or {}
        groups = config.get("TargetGroups") or []
        if groups:
            out += [
                (str(g["TargetGroupArn"]), int(g.get("Weight", 1))) for g in groups if g.get("TargetGroupArn")
            ]
        elif action.get("TargetGroupArn"):
            out.append((str(action["TargetGroupArn"]), 1))
    return out


def listeners_of(
    lb: DesiredLoadBalancer, states: Callable[[str, str, int], str]
) -> list[elb_nft.NlbListener]:
    """The NLB's listeners with the targets new flows may go to (``elb_nft.pick_targets``: healthy ones, or
    all non-draining when none is). ``states`` gives the health checker's verdict of a target."""
    groups = {g.arn: g for g in lb.target_groups}
    out = []
    for listener in lb.listeners:
        backends: list[elb_nft.Backend] = []
        for arn, weight in forwarded_groups(listener):
            group = groups.get(arn)
            if group is None or weight <= 0:
                continue
            seen = [
                (
                    t.ip,
                    t.port,
                    elb_health.DRAINING if t.state == elb_health.DRAINING else states(arn, t.ip, t.port),
                )
                for t in group.targets
            ]
            backends += [elb_nft.Backend(b.address, b.port, weight) for b in elb_nft.pick_targets(seen)]
        port, protocol = listener.get("Port"), str(listener.get("Protocol") or "TCP")
        if isinstance(port, int) and protocol in ("TCP", "UDP", "TCP_UDP"):
            out.append(elb_nft.NlbListener(port, protocol, tuple(backends)))
    return out


def batch_for(lb: DesiredLoadBalancer, states: Callable[[str, str, int], str]) -> str:
    addresses = [e.private_ipv4_address for e in lb.enis]
    marks = [(f"eth{i}", lbnet.fwmark(i)) for i in range(len(lb.enis))] if len(lb.enis) > 1 else []
    return elb_nft.replace_batch(lb.lb_id, addresses, listeners_of(lb, states), marks)


def apply(ns_name: str, netns_dir: str, batch: str) -> None:
    """Load ``batch`` (one transaction) in the namespace, which is made to forward first."""
    fd = netns.open_ns(ns_name, netns_dir)
    if fd is None:
        raise NlbError(f"no namespace {ns_name}")
    try:
        netns.write_sysctls(fd, FORWARDING)
    finally:
        os.close(fd)
    path = netns.path_of(ns_name, netns_dir)
    proc = subprocess.run(
        ["nsenter", f"--net={path}", "nft", "-f", "-"],
        input=batch,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if proc.returncode != 0:
        raise NlbError(f"nft refused the NLB batch: {proc.stderr.strip()}")


def terminated(before: DesiredLoadBalancer, after: DesiredLoadBalancer) -> list[str]:
    """Target addresses whose flows end now: a target ``before`` held draining in a group that ``after`` has
    with connection termination enabled, gone from that group in ``after`` (its delay ended) and from every
    other group of ``after`` too (flows are forgotten by address)."""
    still = {t.ip for g in after.target_groups for t in g.targets}
    was = {g.arn: g for g in before.target_groups}
    out: set[str] = set()
    for group in after.target_groups:
        old = was.get(group.arn)
        if old is None or group.attribute(TERMINATION, "false") != "true":
            continue
        out |= {t.ip for t in old.targets if t.state == elb_health.DRAINING} - still
    return sorted(out)


def drain_ends(lb: DesiredLoadBalancer) -> dict[str, float]:
    """Seconds until each draining target's flows are to be terminated (groups with termination enabled;
    not an address that still serves another target, as flows are forgotten by address)."""
    live = {t.ip for g in lb.target_groups for t in g.targets if t.state != elb_health.DRAINING}
    out: dict[str, float] = {}
    for group in lb.target_groups:
        if group.attribute(TERMINATION, "false") != "true":
            continue
        for t in group.targets:
            if t.state == elb_health.DRAINING and t.drain_seconds is not None and t.ip not in live:
                out[t.ip] = max(out.get(t.ip, 0.0), t.drain_seconds)
    return out


def forget_flows(ns_name: str, netns_dir: str, addresses: list[str]) -> int:
    """Delete the namespace's conntrack entries naming any of ``addresses``; how many."""
    fd = netns.open_ns(ns_name, netns_dir)
    if fd is None:
        return 0
    try:
        with netns.netlink_socket_in(fd, conntrack.NETLINK_NETFILTER) as sock:
            sock.bind((0, 0))
            return sum(conntrack.forget_address(sock, ip) for ip in addresses)
    finally:
        os.close(fd)
