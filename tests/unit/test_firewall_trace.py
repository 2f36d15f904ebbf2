"""Packets traced through the compiled ruleset, rule by rule, as nft would walk them (kube-proxy's idea).

Each test sends one synthetic packet through :func:`trace_ir` and compares the steps, printed as the rules
read in ``nft list ruleset`` (:func:`trace_text`), with what a reader expects the table to do.
"""

from __future__ import annotations

import dataclasses

from taskvpc.netmodel.evaluator import GroupRules
from taskvpc.netmodel.firewall_ir import EniPort, FirewallModel, Packet, compile_ir, evaluate_ir, trace_ir
from taskvpc.netmodel.nft_compile import trace_text
from taskvpc.netmodel.security_groups import Rule, new_group_egress

HOST = "169.254.100.1"
WEB = EniPort("eni-web", "tvpcw", "10.0.1.10", "02:00:00:00:00:0a", ("sg-web", "sg-ops"))
APP = EniPort("eni-app", "tvpca", "10.0.1.11", "02:00:00:00:00:0b", ("sg-app",))
BARE = EniPort("eni-bare", "tvpcb", "10.0.2.12", "02:00:00:00:00:0c", ())
GROUPS = {
    "sg-web": GroupRules(
        "sg-web",
        (
            Rule("ingress", "tcp", 80, 80, group_id="sg-app"),
            Rule("ingress", "icmp", 8, -1, cidr_ipv4="10.0.0.0/16"),
        ),
        (new_group_egress(),),
    ),
    "sg-ops": GroupRules("sg-ops", (Rule("ingress", "tcp", 22, 22, cidr_ipv4="10.0.2.0/24"),), ()),
    "sg-app": GroupRules(
        "sg-app",
        (Rule("ingress", "tcp", 8000, 8100, cidr_ipv4=f"{HOST}/32"),),
        (Rule("egress", "tcp", 0, 65535, group_id="sg-web"),),
    ),
}
MODEL = FirewallModel("taskvpc", (WEB, APP, BARE), GROUPS, host_port="tvpc-host", host_ip=HOST)
RULESET = compile_ir(MODEL)
ANTISPOOF_OK = "antispoof: iifname . ip saddr . ether saddr @eni_addrs accept"


def packet(src: EniPort | str, dst: EniPort | str, proto: int, **kw: object) -> Packet:
    """A NEW packet from ``src`` to ``dst`` (an ENI, or the host's address), routed by the router."""
    iif, saddr, mac = (
        (src.port, src.ip, src.mac) if isinstance(src, EniPort) else ("tvpc-host", src, "02:aa:0:0:0:1")
    )
    oif, daddr = (dst.port, dst.ip) if isinstance(dst, EniPort) else ("tvpc-host", dst)
    return Packet(iif, oif, saddr, daddr, mac, proto, **kw)  # type: ignore[arg-type]


def trace(pkt: Packet) -> list[str]:
    return trace_text(RULESET, trace_ir(RULESET, pkt))


def test_allowed_by_egress_then_ingress() -> None:
    assert trace(packet(APP, WEB, 6, dport=80)) == [
        ANTISPOOF_OK,
        "forward: iifname @task_ports jump egress_dispatch",
        "egress_dispatch: meta mark set iifname map @port_combo meta mark vmap @combo_out -> jump cout_sg_app",
        "cout_sg_app: jump gout_sg_app",
        "gout_sg_app: ip daddr @g_sg_web meta l4proto tcp goto to_task",
        "to_task: oifname @task_ports jump ingress_dispatch",
        "ingress_dispatch: meta mark set oifname map @port_combo meta mark vmap @combo_in -> jump cin_sg_web__sg_ops",
        "cin_sg_web__sg_ops: jump gin_sg_web",
        "gin_sg_web: ip saddr @g_sg_app tcp dport 80 accept",
    ]


def test_second_group_of_an_eni_adds_its_rules() -> None:
    assert trace(packet(BARE, WEB, 6, dport=22))[-1:] == ["cout_: drop"], "bare has no egress rule"
    with_egress = dataclasses.replace(BARE, group_ids=("sg-web",))
    model = dataclasses.replace(MODEL, enis=(WEB, APP, with_egress))
    rs = compile_ir(model)
    assert trace_text(rs, trace_ir(rs, packet(with_egress, WEB, 6, dport=22)))[-4:] == [
        "cin_sg_web__sg_ops: jump gin_sg_web",
        "gin_sg_web: end",  # sg-web does not allow 22 ...
        "cin_sg_web__sg_ops: jump gin_sg_ops",
        "gin_sg_ops: ip saddr 10.0.2.0/24 tcp dport 22 accept",  # ... the ENI's second group does
    ]


def test_denied_by_ingress_ends_in_the_enis_drop() -> None:
    assert trace(packet(APP, WEB, 6, dport=81)) == [
        ANTISPOOF_OK,
        "forward: iifname @task_ports jump egress_dispatch",
        "egress_dispatch: meta mark set iifname map @port_combo meta mark vmap @combo_out -> jump cout_sg_app",
        "cout_sg_app: jump gout_sg_app",
        "gout_sg_app: ip daddr @g_sg_web meta l4proto tcp goto to_task",
        "to_task: oifname @task_ports jump ingress_dispatch",
        "ingress_dispatch: meta mark set oifname map @port_combo meta mark vmap @combo_in -> jump cin_sg_web__sg_ops",
        "cin_sg_web__sg_ops: jump gin_sg_web",
        "gin_sg_web: end",
        "cin_sg_web__sg_ops: jump gin_sg_ops",
        "gin_sg_ops: end",
        "cin_sg_web__sg_ops: drop",
    ]


def test_denied_by_restricted_egress_never_reaches_ingress() -> None:
    assert trace(packet(APP, BARE, 17, dport=53)) == [
        ANTISPOOF_OK,
        "forward: iifname @task_ports jump egress_dispatch",
        "egress_dispatch: meta mark set iifname map @port_combo meta mark vmap @combo_out -> jump cout_sg_app",
        "cout_sg_app: jump gout_sg_app",
        "gout_sg_app: end",
        "cout_sg_app: drop",
    ]


def test_icmp_type_rule() -> None:
    assert trace(packet(APP, WEB, 1, icmp_type=8, icmp_code=0))[-1] == "cout_sg_app: drop", "egress: tcp only"
    assert trace(packet(BARE, WEB, 1, icmp_type=8, icmp_code=0))[-1] == "cout_: drop"
    open_bare = dataclasses.replace(BARE, group_ids=("sg-web",))
    rs = compile_ir(dataclasses.replace(MODEL, enis=(WEB, APP, open_bare)))
    steps = trace_text(rs, trace_ir(rs, packet(open_bare, WEB, 1, icmp_type=8, icmp_code=0)))
    assert steps[-1] == "gin_sg_web: ip saddr 10.0.0.0/16 icmp type 8 accept"
    steps = trace_text(rs, trace_ir(rs, packet(open_bare, WEB, 1, icmp_type=0, icmp_code=0)))
    assert steps[-1] == "cin_sg_web__sg_ops: drop", "an echo reply is another type"


def test_forged_mac_or_address_dies_in_antispoof() -> None:
    forged_mac = dataclasses.replace(packet(APP, WEB, 6, dport=80), ether_saddr="02:00:00:00:00:99")
    forged_ip = dataclasses.replace(packet(APP, WEB, 6, dport=80), saddr="10.0.1.99")
    for pkt in (forged_mac, forged_ip, dataclasses.replace(forged_mac, ct_state="established")):
        assert trace(pkt) == ["antispoof: iifname @task_ports drop"]


def test_ipv6_from_a_task_dies_in_antispoof() -> None:
    """ENIs are IPv4: whatever IPv6 source a task uses (link-local included), its port drops the packet."""
    for saddr in ("fe80::1", "fd00::a"):
        ipv6 = dataclasses.replace(packet(APP, WEB, 6, dport=80), saddr=saddr, daddr="fd00::b")
        assert trace(ipv6) == ["antispoof: iifname @task_ports drop"]


def test_replies_pass_on_conntrack_before_any_rule() -> None:
    reply = packet(WEB, APP, 6, dport=40000, ct_state="established")
    assert trace(reply) == [ANTISPOOF_OK, "forward: ct state established,related accept"]


def test_invalid_tcp_dropped_but_stray_icmp_is_judged_by_the_rules() -> None:
    assert trace(packet(APP, WEB, 6, dport=80, ct_state="invalid")) == [
        ANTISPOOF_OK,
        "forward: ct state invalid meta l4proto != { icmp, ipv6-icmp } drop",
    ]
    # An echo request the evaluator allows, that conntrack cannot place (say it quotes no flow): rules decide.
    open_bare = dataclasses.replace(BARE, group_ids=("sg-web",))
    rs = compile_ir(dataclasses.replace(MODEL, enis=(WEB, APP, open_bare)))
    stray = packet(open_bare, WEB, 1, icmp_type=8, icmp_code=0, ct_state="invalid")
    assert trace_text(rs, trace_ir(rs, stray))[-1] == "gin_sg_web: ip saddr 10.0.0.0/16 icmp type 8 accept"


def test_tasks_never_open_flows_to_the_host() -> None:
    assert trace(packet(WEB, HOST, 6, dport=22)) == [ANTISPOOF_OK, 'forward: oifname "tvpc-host" drop']
    assert trace(packet(WEB, HOST, 6, dport=22, ct_state="established"))[-1] == (
        "forward: ct state established,related accept"
    )


def test_host_is_judged_by_the_destinations_ingress_only() -> None:
    assert trace(packet(HOST, APP, 6, dport=8080)) == [
        "antispoof: policy accept",
        'forward: iifname "tvpc-host" goto to_task',
        "to_task: oifname @task_ports jump ingress_dispatch",
        "ingress_dispatch: meta mark set oifname map @port_combo meta mark vmap @combo_in -> jump cin_sg_app",
        "cin_sg_app: jump gin_sg_app",
        "gin_sg_app: ip saddr 169.254.100.1/32 tcp dport 8000-8100 accept",
    ]
    assert trace(packet(HOST, WEB, 6, dport=80))[-1] == "cin_sg_web__sg_ops: drop"


def test_traffic_to_self_never_meets_a_group() -> None:
    assert trace(packet(BARE, BARE, 6, dport=1)) == [
        ANTISPOOF_OK,
        "forward: iifname . oifname @self_ports accept",
    ]


def test_per_packet_work_does_not_grow_with_other_enis() -> None:
    """The same packet takes the same steps (same chains, same rule positions) with 1,000 more ENIs, each
    with a group of its own (1,000 more combinations of groups) and its rules, in the table: dispatch is a
    port's combination number from a map then its chains from a verdict map, group membership a set
    lookup."""
    own = {
        f"sg-x{i}": GroupRules(f"sg-x{i}", (Rule("ingress", "tcp", 80, 80, group_id="sg-app"),), ())
        for i in range(1000)
    }
    crowd = tuple(
        EniPort(
            f"eni-x{i}",
            f"tvx{i}",
            f"10.1.{i // 250}.{i % 250 + 2}",
            f"02:01:00:00:{i // 256:02x}:{i % 256:02x}",
            (f"sg-x{i}",),
        )
        for i in range(1000)
    )
    model = dataclasses.replace(MODEL, enis=(WEB, APP, BARE, *crowd), groups={**GROUPS, **own})
    big = compile_ir(model)
    assert len(big.maps[-1].elements) == 1003  # a combination each
    for pkt in (
        packet(APP, WEB, 6, dport=80),
        packet(APP, WEB, 6, dport=81),
        packet(HOST, APP, 6, dport=8000),
        packet(WEB, BARE, 6, dport=80),
    ):
        assert trace_ir(big, pkt) == trace_ir(RULESET, pkt)
        assert evaluate_ir(big, pkt) == evaluate_ir(RULESET, pkt)


def test_a_port_not_registered_is_never_reachable() -> None:
    """A live veth the firewall does not know yet (an adopted task before its registration, an orphan
    being removed) gets no new flow, from the host or from a task whose egress allows everything."""
    ghost = EniPort("eni-ghost", "tvpcg", "10.0.1.99", "02:00:00:00:00:99", ("sg-web",))
    assert trace(packet(HOST, ghost, 6, dport=80))[-2:] == [
        'forward: iifname "tvpc-host" goto to_task',
        "to_task: drop",
    ]
    assert trace(packet(WEB, ghost, 6, dport=80))[-1] == "to_task: drop"
