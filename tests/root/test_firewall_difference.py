"""Proof by difference: real packets through the compiled security groups agree with the reference evaluator.

Hypothesis draws security groups (TCP/UDP port ranges, ICMP types and codes, all-protocol ``-1``, protocol
253, CIDR peers around the tasks' real addresses, references to groups including a group's own, restricted
egress as well as AWS's allow-all), gives each of 3-6 tasks zero to three of them, and draws flows between
the tasks and from the host access address. For every flow the reference evaluator
(:func:`taskvpc.netmodel.evaluator.evaluate`) says allowed or not; the compiled table is loaded into the real
VPC router and a real packet is sent between the real task namespaces; both answers must be the same.

The namespaces are built once per module (six tasks in two subnets, and the *fake host* of
:mod:`tests.root.fwlab`: the access link's 169.254.100.1 lives in a namespace of the test, never in the
host's own). Per example only the table is replaced and the router's connection tracking flushed; all
flows of an example are probed in parallel, a dropped one is known after :data:`TIMEOUT`. Addresses and
MACs are fixed per task (they are part of the real veths); what varies per example is which tasks are in the
model, their groups, the rules and the flows. Flows *to* the host address are not drawn: the compiler
refuses every new flow from a task to the host whatever the egress rules say (``test_firewall_antispoof``
proves that), where the evaluator only knows about security groups.

``TASKVPC_FW_DIFF_EXAMPLES`` (default 80) and ``TASKVPC_FW_DIFF_FLOWS`` (flows per example, default 12) set
the size; ``python bench/firewall.py --difference 1000`` runs thousands of cases.
"""

from __future__ import annotations

import collections
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from taskvpc.netmodel.evaluator import Eni, Flow, GroupRules, evaluate
from taskvpc.netmodel.firewall_ir import EniPort, FirewallModel, Packet, compile_ir, trace_ir
from taskvpc.netmodel.nft_compile import render, trace_text
from taskvpc.netmodel.security_groups import Rule, new_group_egress
from tests.root import fwlab

pytestmark = [
    pytest.mark.root,
]

EXAMPLES = int(os.environ.get("TASKVPC_FW_DIFF_EXAMPLES", "80"))
FLOWS = int(os.environ.get("TASKVPC_FW_DIFF_FLOWS", "12"))
TASKS = 6
TIMEOUT = 0.25  # a denied probe is known after this long
RETRY_TIMEOUT = 1.5  # an expected-allowed probe that timed out is retried once (a busy machine is slow)
GROUP_IDS = tuple(f"sg-{c * 17}" for c in "abcd")
ICMP_KINDS = [(t, c) for t in (8, 0, 3, 11, 13) for c in (0, 1)] + [(3, 3)]  # no redirects, no PMTU
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1}


@dataclass
class Rig:
    lab: fwlab.Lab
    prober: fwlab.Prober
    cidrs: list[str]


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with fwlab.lab("tvd", TASKS, fake_host=True, tag="df") as lab, fwlab.Prober(lab.nodes) as prober:
        ips = [t.ip for t in lab.tasks]
        cidrs = [
            "0.0.0.0/0",
            "10.243.0.0/16",
            "10.243.0.0/20",  # the even tasks' subnet
            "10.243.16.0/20",  # the odd tasks' subnet
            "10.243.0.8/29",  # 10.243.0.8-15: tasks 0, 2 and 4
            "10.243.16.12/30",  # 10.243.16.12-15: tasks 3 and 5
            "169.254.100.1/32",  # the host
            "192.0.2.0/24",  # nobody
            *(f"{ip}/32" for ip in ips),
        ]
        # Without a table everything flows: every denial in the test is the rules'.
        everything = [
            fwlab.Probe(s, d, Flow(lab.nodes[s].ip, lab.nodes[d].ip, "tcp", dst_port=7))
            for s in range(len(lab.nodes))
            for d in range(TASKS)
            if s != d
        ]
        assert set(prober.run(everything, 2.0)) == {"ok"}
        yield Rig(lab, prober, cidrs)


# -- strategies ------------------------------------------------------------------------------------------


@st.composite
def rules(draw: st.DrawFn, direction: str, cidrs: list[str]) -> Rule:
    proto = draw(st.sampled_from(["tcp", "udp", "icmp", "-1", str(fwlab.OTHER_PROTO)]))
    lo: int | None = None
    hi: int | None = None
    if proto in ("tcp", "udp"):
        lo = draw(st.integers(0, 31))
        hi = draw(st.sampled_from([lo, min(lo + 3, 65535), draw(st.integers(lo, 31)), 65535]))
    elif proto == "icmp":
        lo = draw(st.sampled_from([-1, 0, 3, 8, 11, 13]))
        hi = -1 if lo == -1 else draw(st.sampled_from([-1, 0, 1]))
    if draw(st.integers(0, 2)) == 0:
        peer = {"group_id": draw(st.sampled_from(GROUP_IDS))}
    else:
        peer = {"cidr_ipv4": draw(st.sampled_from(cidrs))}
    return Rule(direction, proto, lo, hi, **peer)  # type: ignore[arg-type]


@st.composite
def groups(draw: st.DrawFn, cidrs: list[str]) -> dict[str, GroupRules]:
    out = {}
    for gid in GROUP_IDS:
        ingress = tuple(dict.fromkeys(draw(st.lists(rules("ingress", cidrs), max_size=4))))
        if draw(st.integers(0, 2)) > 0:
            egress: tuple[Rule, ...] = (new_group_egress(),)  # AWS's default: everything out
        else:
            egress = tuple(dict.fromkeys(draw(st.lists(rules("egress", cidrs), max_size=3))))
        out[gid] = GroupRules(gid, ingress, egress)
    return out


def _traffic(draw: st.DrawFn, protocol: str, lo: int | None, hi: int | None) -> dict[str, object]:
    """Protocol, port or ICMP type/code of a flow; inside ``lo``-``hi`` (a rule's) where they say."""
    if protocol == "-1":
        protocol = draw(st.sampled_from(["tcp", "udp", "icmp", str(fwlab.OTHER_PROTO)]))
        lo = hi = None
    if protocol in ("tcp", "udp"):
        ports = [p for p in fwlab.PORTS if lo is None or hi is None or lo <= p <= hi] or list(fwlab.PORTS)
        return {"protocol": protocol, "dst_port": draw(st.sampled_from(ports))}
    if protocol == "icmp":
        kinds = [k for k in ICMP_KINDS if lo in (None, -1, k[0]) and hi in (None, -1, k[1])] or ICMP_KINDS
        kind, code = draw(st.sampled_from(kinds))
        return {"protocol": protocol, "icmp_type": kind, "icmp_code": code}
    return {"protocol": protocol}


def _peer_is(rule: Rule, ip: str, model: FirewallModel) -> bool:
    if rule.cidr_ipv4 is not None:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(rule.cidr_ipv4)
    return any(ip == e.ip and rule.group_id in e.group_ids for e in model.enis)


@st.composite
def flows(draw: st.DrawFn, lab: fwlab.Lab, model: FirewallModel) -> fwlab.Probe:
    """A flow between two tasks of the model, or from the host to one; most are shaped like an ingress
    rule of the destination, from a source its peer matches (so that many are allowed)."""
    n = len(model.enis)
    dst = draw(st.integers(0, n - 1))
    sources = [s for s in [*range(n), len(lab.tasks)] if s != dst]  # len(lab.tasks): the fake host
    hints = [r for g in model.enis[dst].group_ids if g in model.groups for r in model.groups[g].ingress]
    if hints and draw(st.integers(0, 3)) > 0:
        rule = draw(st.sampled_from(hints))
        traffic = _traffic(draw, rule.protocol, rule.from_port, rule.to_port)
        sources = [s for s in sources if _peer_is(rule, lab.nodes[s].ip, model)] or sources
    else:
        traffic = _traffic(draw, "-1", None, None)
    src = draw(st.sampled_from(sources))
    return fwlab.Probe(src, dst, Flow(lab.nodes[src].ip, lab.nodes[dst].ip, **traffic))  # type: ignore[arg-type]


def _rounds(probes: list[fwlab.Probe]) -> list[list[int]]:
    """Probe indexes split so that no round holds a flow and its reverse of a protocol without ports.

    Conntrack keys protocol 253 on the addresses only: b -> a sent while a -> b is tracked is that flow's
    reply (established), so both in one round would test conntrack, not the rules. TCP/UDP (ephemeral
    source ports) and ICMP echo (random ids) never collide.
    """
    rounds: list[list[int]] = []
    keys: list[set[tuple[str, str]]] = []
    for i, probe in enumerate(probes):
        flow = probe.flow
        key = (flow.src_ip, flow.dst_ip) if flow.protocol == str(fwlab.OTHER_PROTO) else None
        r = next((r for r, seen in enumerate(keys) if key is None or key[::-1] not in seen), len(rounds))
        if r == len(rounds):
            rounds.append([])
            keys.append(set())
        rounds[r].append(i)
        if key is not None:
            keys[r].add(key)
    return rounds


def _explain(rig: Rig, model: FirewallModel, probe: fwlab.Probe, expected: str, got: str) -> str:
    lab, flow = rig.lab, probe.flow
    ports = {e.ip: (e.port, e.mac) for e in model.enis}
    iif, mac = ports.get(flow.src_ip, (lab.host_port, "02:00:00:00:00:00"))
    packet = Packet(
        iif=iif,
        oif=ports[flow.dst_ip][0],
        saddr=flow.src_ip,
        daddr=flow.dst_ip,
        ether_saddr=mac,
        protocol=PROTO_NUMBERS.get(flow.protocol, fwlab.OTHER_PROTO),
        dport=flow.dst_port,
        icmp_type=flow.icmp_type,
        icmp_code=flow.icmp_code,
    )
    rs = compile_ir(model)
    trace = "\n".join(f"    {line}" for line in trace_text(rs, trace_ir(rs, packet)))
    groups = "\n".join(f"    {eni.eni_id} {eni.ip}: {eni.group_ids}" for eni in model.enis)
    return (
        f"{flow}: evaluator {expected}, real packet {got}\nENIs:\n{groups}\nIR trace (as a NEW packet):\n{trace}\n"
        f"ruleset:\n{render(compile_ir(model))}"
    )


def test_real_packets_agree_with_the_evaluator(rig: Rig) -> None:
    lab = rig.lab
    stats: collections.Counter[str] = collections.Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking would resend thousands of packets
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        n = data.draw(st.integers(3, TASKS), label="tasks")
        rules_by_group = data.draw(groups(rig.cidrs), label="groups")
        some = st.lists(st.sampled_from(GROUP_IDS), min_size=1, max_size=3, unique=True)
        none: st.SearchStrategy[list[str]] = st.just([])
        carried = [
            tuple(data.draw(none if data.draw(st.integers(0, 9)) == 0 else some, label=f"groups of {i}"))
            for i in range(n)
        ]
        model = FirewallModel(
            table=lab.table,
            enis=tuple(
                EniPort(e.eni_id, lab.port(e), e.ip, e.mac, carried[i]) for i, e in enumerate(lab.enis[:n])
            ),
            groups=rules_by_group,
            host_port=lab.host_port,
            host_ip=fwlab.HOST_IP,
        )
        probes = data.draw(st.lists(flows(lab, model), min_size=FLOWS, max_size=FLOWS), label="flows")
        enis = [Eni(e.eni_id, (e.ip,), e.group_ids) for e in model.enis]
        expected = [evaluate(p.flow, enis, rules_by_group).allowed for p in probes]

        lab.fw.apply(lab.vpc_id, render(compile_ir(model)))
        got = [""] * len(probes)
        for batch in _rounds(probes):
            lab.flush_conntrack()
            for i, res in zip(batch, rig.prober.run([probes[i] for i in batch], TIMEOUT), strict=True):
                got[i] = res
        slow = [i for i, (want, res) in enumerate(zip(expected, got, strict=True)) if want and res != "ok"]
        if slow:
            for i, res in zip(slow, rig.prober.run([probes[i] for i in slow], RETRY_TIMEOUT), strict=True):
                got[i] = res
        for probe, want, res in zip(probes, expected, got, strict=True):
            stats["allowed" if want else "denied"] += 1
            if want != (res == "ok") or res not in ("ok", "timeout"):
                want_text = "allows" if want else "denies"
                raise AssertionError(_explain(rig, model, probe, want_text, res))
        stats["examples"] += 1

    check()
    print(f"\ndifference: {dict(stats)}")
    cases = stats["allowed"] + stats["denied"]
    assert cases >= EXAMPLES * FLOWS * 0.9
    if EXAMPLES >= 20:  # a few examples may all come out one way
        assert min(stats["allowed"], stats["denied"]) > cases // 10, (
            f"both outcomes must be exercised: {stats}"
        )
