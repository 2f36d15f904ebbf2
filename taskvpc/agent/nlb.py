"""A network load balancer's data plane: its listeners as nftables tables, in the LB's namespace and (for
listeners that preserve the client's address) in the VPC's router.

Where the NLB lives: in the LB namespace ``<prefix>-l-<lb id>`` holding its ENIs (``drivers/lbnet.py``, as
for an ALB). Flows reach the NLB's address through the ENI's router port, so the NLB's security groups
judge the clients' packets there; the table DNATs each new flow to a target picked by ``numgen random``
over the healthy targets and SNATs it to the NLB's ENI address, so the flow leaves through the NLB's port
and the targets' groups judge it as coming from the NLB (a target group rule that names the NLB's group
admits it, and health checks come from the same addresses). That is ELB's behaviour with
``preserve_client_ip.enabled = false``, the AWS default for ip targets over TCP.

With ``preserve_client_ip.enabled = true`` (the default for UDP and TCP_UDP groups) the target must see
the client's own address, and its replies must still be un-DNATed by the conntrack entry that DNATed the
flow. A flow DNATed in the LB namespace without SNAT would reach the target, but the target's reply would
go to the client straight from the router, never crossing that entry (and the LB's port would carry
packets with foreign sources, which the router's anti-spoofing and strict reverse-path check drop). So
such listeners are compiled into a second table, ``tvnlb_<lb id>`` in the VPC's router namespace, that
DNATs new flows to the NLB's addresses there (prerouting, before the router's forward filter): the flow
goes from the client's port straight to the target's, the target's security groups judge it with the
client's address (as on AWS), and the reply passes the router's conntrack on its way back. Differences
from ELB: those flows do not cross the NLB's ENI, so the NLB's own security groups do not filter them, and
connection termination forgets only the LB namespace's flows. A listener preserves when every group it
forwards to does. :func:`remove_router_tables` drops the router table with the LB.

Every change (listeners, targets, a health verdict) replaces the tables in one atomic ``nft -f`` batch each
(``elb_nft.replace_batch``): a target left out of the maps gets no new flow while conntrack keeps the
flows it has (draining). When the control plane drops a draining target (its ``deregistration_delay`` ended) from a group
with ``deregistration_delay.connection_termination.enabled``, its conntrack entries in the namespace are
deleted (:func:`terminated`, :func:`forget_flows`): the next packet of such a flow, either way, is a new
flow the table sends elsewhere or refuses, and its sender gets a reset. The namespace forwards (``ip_forward``), which only an NLB's namespace needs. With several
ENIs each flow is marked with the ENI it arrived on, so it and its replies leave by that ENI (``lbnet.fwmark``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

from taskvpc.agent import netplan
from taskvpc.agent.drivers import conntrack, lbnet, netns
from taskvpc.agentapi.loadbalancers import DesiredLoadBalancer, LbTargetGroup
from taskvpc.netmodel import elb_health, elb_nft

FORWARDING = {"net/ipv4/ip_forward": "1"}
TERMINATION = "deregistration_delay.connection_termination.enabled"
PRESERVE = "preserve_client_ip.enabled"
PRESERVING_PROTOCOLS = ("UDP", "TCP_UDP")  # ELB's default for ip targets: preserve for these only


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


def preserves_client_ip(group: LbTargetGroup) -> bool:
    """The group's ``preserve_client_ip.enabled``; ELB's default for ip targets when the answer lacks it."""
    default = "true" if group.protocol in PRESERVING_PROTOCOLS else "false"
    return group.attribute(PRESERVE, default) == "true"


def listeners_of(
    lb: DesiredLoadBalancer, states: Callable[[str, str, int], str]
) -> list[elb_nft.NlbListener]:
    """The NLB's listeners with the targets new flows may go to (``elb_nft.pick_targets``: healthy ones, or
    all non-draining when none is). ``states`` gives the health checker's verdict of a target. A listener
    preserves the client's address when every group it forwards to does."""
    groups = {g.arn: g for g in lb.target_groups}
    out = []
    for listener in lb.listeners:
        backends: list[elb_nft.Backend] = []
        preserve: list[bool] = []
        for arn, weight in forwarded_groups(listener):
            group = groups.get(arn)
            if group is None or weight <= 0:
                continue
            preserve.append(preserves_client_ip(group))
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
            out.append(elb_nft.NlbListener(port, protocol, tuple(backends), bool(preserve) and all(preserve)))
    return out


def batch_for(lb: DesiredLoadBalancer, states: Callable[[str, str, int], str]) -> str:
    """The LB namespace's table: the listeners that do not preserve the client's address (DNAT + SNAT)."""
    addresses = [e.private_ipv4_address for e in lb.enis]
    marks = [(f"eth{i}", lbnet.fwmark(i)) for i in range(len(lb.enis))] if len(lb.enis) > 1 else []
    listeners = [li for li in listeners_of(lb, states) if not li.preserve_client_ip]
    return elb_nft.replace_batch(lb.lb_id, addresses, listeners, marks)


def router_batch_for(lb: DesiredLoadBalancer, states: Callable[[str, str, int], str]) -> str:
    """The router's table for the NLB: the listeners that preserve the client's address (DNAT only); a
    batch deleting it when there are none."""
    listeners = [li for li in listeners_of(lb, states) if li.preserve_client_ip]
    if not listeners:
        return elb_nft.delete_batch(lb.lb_id)
    return elb_nft.replace_batch(lb.lb_id, [e.private_ipv4_address for e in lb.enis], listeners)


def ensure_router_table(
    cfg: netplan.NetConfig,
    lb: DesiredLoadBalancer,
    states: Callable[[str, str, int], str],
    loaded: str | None,
) -> str:
    """Load the NLB's router table (:func:`router_batch_for`) in its VPC's router unless ``loaded`` (what
    was loaded last) is the same; what is loaded now."""
    batch = router_batch_for(lb, states)
    if batch != loaded:
        apply(netplan.router_netns(cfg, lb.vpc.vpc_id), cfg.netns_dir, batch, forward=False)
    return batch


def remove_router_tables(cfg: netplan.NetConfig, lb_id: str) -> None:
    """Drop the NLB's table from every router namespace of ours on the host (absent: nothing to do; the LB
    being gone, its VPC may be unknown)."""
    for name in netns.list_names(cfg.netns_dir):
        parsed = netplan.parse_netns(cfg, name)
        if parsed is not None and parsed[0] == "router":
            with contextlib.suppress(NlbError):  # a router going away meanwhile takes the table with it
                apply(name, cfg.netns_dir, elb_nft.delete_batch(lb_id), forward=False)


def apply(ns_name: str, netns_dir: str, batch: str, forward: bool = True) -> None:
    """Load ``batch`` (one transaction) in the namespace, made to forward first when ``forward`` (a router
    already does)."""
    fd = netns.open_ns(ns_name, netns_dir)
    if fd is None:
        raise NlbError(f"no namespace {ns_name}")
    try:
        if forward:
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
