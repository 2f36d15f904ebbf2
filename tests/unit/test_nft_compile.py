"""The security-group firewall IR and its nftables text, checked against the reference evaluator."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.netmodel.evaluator import Eni, Flow, GroupRules, evaluate
from taskvpc.netmodel.firewall_ir import (
    EniPort,
    FirewallModel,
    Packet,
    compile_ir,
    evaluate_ir,
)
from taskvpc.netmodel.nft_compile import (
    render,
    render_eni_chains,
    render_eni_delete,
    render_member_update,
)
from taskvpc.netmodel.security_groups import Rule

HOST_PORT = "tvpc-host"
HOST_IP = "169.254.100.1"
PROTO = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}


def packet_for(flow: Flow, iif: str, oif: str, mac: str, ct_state: str = "new") -> Packet:
    proto = PROTO.get(flow.protocol)
    return Packet(
        iif=iif,
        oif=oif,
        saddr=flow.src_ip,
        daddr=flow.dst_ip,
        ether_saddr=mac,
        protocol=int(flow.protocol) if proto is None else proto,
        dport=flow.dst_port,
        icmp_type=flow.icmp_type,
        icmp_code=flow.icmp_code,
        ct_state=ct_state,  # type: ignore[arg-type]
    )


def ref_enis(model: FirewallModel) -> list[Eni]:
    return [Eni(e.eni_id, (e.ip,), e.group_ids) for e in model.enis]


def port_of(model: FirewallModel, ip: str) -> tuple[str, str]:
    for e in model.enis:
        if e.ip == ip:
            return e.port, e.mac
    assert ip == HOST_IP
    return HOST_PORT, "02:aa:00:00:00:01"


def ir_allows(model: FirewallModel, flow: Flow, ct_state: str = "new") -> bool:
    iif, mac = port_of(model, flow.src_ip)
    oif, _ = port_of(model, flow.dst_ip)
    return evaluate_ir(compile_ir(model), packet_for(flow, iif, oif, mac, ct_state))


# --------------------------------------------------------------------------------------------------
# A small model, by hand


def small_model() -> FirewallModel:
    web = GroupRules(
        "sg-web",
        (
            Rule("ingress", "tcp", 80, 80, group_id="sg-app"),
            Rule("ingress", "icmp", 8, -1, cidr_ipv4="10.0.0.0/16"),
        ),
        (Rule("egress", "-1", None, None, cidr_ipv4="0.0.0.0/0"),),
    )
    app = GroupRules(
        "sg-app",
        (Rule("ingress", "tcp", 8000, 8100, cidr_ipv4="169.254.100.1/32"),),
        (Rule("egress", "tcp", 0, 65535, group_id="sg-web"),),
    )
    return FirewallModel(
        table="taskvpc",
        enis=(
            EniPort("eni-1", "tvpc1", "10.0.1.10", "02:00:00:00:00:01", ("sg-web",)),
            EniPort("eni-2", "tvpc2", "10.0.1.11", "02:00:00:00:00:02", ("sg-app",)),
            EniPort("eni-3", "tvpc3", "10.0.1.12", "02:00:00:00:00:03", ()),
        ),
        groups={"sg-web": web, "sg-app": app},
        host_port=HOST_PORT,
    )


GOLDEN = """\
add table inet taskvpc
delete table inet taskvpc
table inet taskvpc {
\tchain gout_sg_app {
\t\tip daddr @g_sg_web meta l4proto tcp goto to_task
\t}
\tchain gin_sg_app {
\t\tip saddr 169.254.100.1/32 tcp dport 8000-8100 accept
\t}
\tchain gout_sg_web {
\t\tmeta nfproto ipv4 goto to_task
\t}
\tchain gin_sg_web {
\t\tip saddr @g_sg_app tcp dport 80 accept
\t\tip saddr 10.0.0.0/16 icmp type 8 accept
\t}
\tchain cout_ {
\t\tdrop
\t}
\tchain cin_ {
\t\tdrop
\t}
\tchain cout_sg_app {
\t\tjump gout_sg_app
\t\tdrop
\t}
\tchain cin_sg_app {
\t\tjump gin_sg_app
\t\tdrop
\t}
\tchain cout_sg_web {
\t\tjump gout_sg_web
\t\tdrop
\t}
\tchain cin_sg_web {
\t\tjump gin_sg_web
\t\tdrop
\t}
\tchain egress_dispatch {
\t\tmeta mark set iifname map @port_combo meta mark vmap @combo_out
\t}
\tchain ingress_dispatch {
\t\tmeta mark set oifname map @port_combo meta mark vmap @combo_in
\t}
\tchain to_task {
\t\toifname vmap @ingress_ports
\t\toifname @task_ports jump ingress_dispatch
\t\tdrop
\t}
\tset g_sg_app {
\t\ttype ipv4_addr
\t\telements = { 10.0.1.11 }
\t}
\tset g_sg_web {
\t\ttype ipv4_addr
\t\telements = { 10.0.1.10 }
\t}
\tset task_ports {
\t\ttype ifname
\t\telements = { "tvpc1", "tvpc2", "tvpc3" }
\t}
\tset eni_addrs {
\t\ttype ifname . ipv4_addr . ether_addr
\t\telements = { "tvpc1" . 10.0.1.10 . 02:00:00:00:00:01, "tvpc2" . 10.0.1.11 . 02:00:00:00:00:02, "tvpc3" . 10.0.1.12 . 02:00:00:00:00:03 }
\t}
\tset self_ports {
\t\ttype ifname . ifname
\t\telements = { "tvpc1" . "tvpc1", "tvpc2" . "tvpc2", "tvpc3" . "tvpc3" }
\t}
\tmap egress_ports {
\t\ttype ifname : verdict
\t}
\tmap ingress_ports {
\t\ttype ifname : verdict
\t}
\tmap combo_out {
\t\ttype mark : verdict
\t\telements = { 44399118 : jump cout_sg_app, 397691247 : jump cout_sg_web, 2020055685 : jump cout_ }
\t}
\tmap combo_in {
\t\ttype mark : verdict
\t\telements = { 44399118 : jump cin_sg_app, 397691247 : jump cin_sg_web, 2020055685 : jump cin_ }
\t}
\tmap port_combo {
\t\ttype ifname : mark
\t\telements = { "tvpc1" : 397691247, "tvpc2" : 44399118, "tvpc3" : 2020055685 }
\t}
\tchain antispoof {
\t\ttype filter hook prerouting priority raw; policy accept;
\t\tiifname . ip saddr . ether saddr @eni_addrs accept
\t\tiifname @task_ports drop
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy drop;
\t\tct state established,related accept
\t\tct state invalid meta l4proto != { icmp, ipv6-icmp } drop
\t\toifname "tvpc-host" drop
\t\tiifname . oifname @self_ports accept
\t\tiifname vmap @egress_ports
\t\tiifname @task_ports jump egress_dispatch
\t\tiifname "tvpc-host" goto to_task
\t}
}
"""


def test_render_golden() -> None:
    assert render(compile_ir(small_model())) == GOLDEN


def test_member_update_text() -> None:
    text = render_member_update("taskvpc", "sg-web", ["10.0.1.20"], ["10.0.1.10", "10.0.1.9"])
    assert text == (
        "add set inet taskvpc g_sg_web { type ipv4_addr; }\n"
        "add element inet taskvpc g_sg_web { 10.0.1.9, 10.0.1.10 }\n"
        "delete element inet taskvpc g_sg_web { 10.0.1.9, 10.0.1.10 }\n"
        "add element inet taskvpc g_sg_web { 10.0.1.20 }\n"
    )
    with pytest.raises(ValueError):
        render_member_update("taskvpc", "sg-web", ["10.0.1.1"], ["10.0.1.1"])


def test_eni_chains_text() -> None:
    text = render_eni_chains(small_model(), "eni-2")
    assert text == (
        "add set inet taskvpc g_sg_web { type ipv4_addr; }\n"
        "add element inet taskvpc g_sg_web { 10.0.1.10 }\n"
        "add chain inet taskvpc gout_sg_app\n"
        "flush chain inet taskvpc gout_sg_app\n"
        "add chain inet taskvpc gin_sg_app\n"
        "flush chain inet taskvpc gin_sg_app\n"
        "add rule inet taskvpc gout_sg_app ip daddr @g_sg_web meta l4proto tcp goto to_task\n"
        "add rule inet taskvpc gin_sg_app ip saddr 169.254.100.1/32 tcp dport 8000-8100 accept\n"
        "add chain inet taskvpc cout_sg_app\n"
        "flush chain inet taskvpc cout_sg_app\n"
        "add chain inet taskvpc cin_sg_app\n"
        "flush chain inet taskvpc cin_sg_app\n"
        "add rule inet taskvpc cout_sg_app jump gout_sg_app\n"
        "add rule inet taskvpc cout_sg_app drop\n"
        "add rule inet taskvpc cin_sg_app jump gin_sg_app\n"
        "add rule inet taskvpc cin_sg_app drop\n"
        "add element inet taskvpc combo_out { 44399118 : jump cout_sg_app }\n"  # a new combination
        "add element inet taskvpc combo_in { 44399118 : jump cin_sg_app }\n"
        'add element inet taskvpc port_combo { "tvpc2" : 44399118 }\n'  # no dispatch rule rewritten
        'add element inet taskvpc task_ports { "tvpc2" }\n'
        'add element inet taskvpc eni_addrs { "tvpc2" . 10.0.1.11 . 02:00:00:00:00:02 }\n'
        'add element inet taskvpc self_ports { "tvpc2" . "tvpc2" }\n'
    )


def test_small_model_cases() -> None:
    m = small_model()
    # app -> web:80 allowed (app egress to sg-web, web ingress from sg-app); web -> app:80 not (app ingress)
    assert ir_allows(m, Flow("10.0.1.11", "10.0.1.10", "tcp", dst_port=80))
    assert not ir_allows(m, Flow("10.0.1.10", "10.0.1.11", "tcp", dst_port=80))
    # the host reaches app on 8000-8100 (ingress only); tasks never open flows to the host
    assert ir_allows(m, Flow(HOST_IP, "10.0.1.11", "tcp", dst_port=8050))
    assert not ir_allows(m, Flow(HOST_IP, "10.0.1.10", "tcp", dst_port=8050))
    assert not ir_allows(m, Flow("10.0.1.10", HOST_IP, "tcp", dst_port=22))
    # replies (and established flows after a revoke) pass whatever the rules say
    assert ir_allows(m, Flow("10.0.1.10", HOST_IP, "tcp", dst_port=22), ct_state="established")
    assert ir_allows(m, Flow("10.0.1.12", "10.0.1.11", "udp", dst_port=53), ct_state="established")
    assert not ir_allows(m, Flow("10.0.1.12", "10.0.1.11", "udp", dst_port=53), ct_state="invalid")
    # an ENI with no groups: nothing new in or out
    assert not ir_allows(m, Flow("10.0.1.12", "10.0.1.10", "icmp", icmp_type=8, icmp_code=0))
    assert not ir_allows(m, Flow("10.0.1.10", "10.0.1.12", "icmp", icmp_type=8, icmp_code=0))
    assert ir_allows(m, Flow("10.0.1.10", "10.0.1.10", "tcp", dst_port=1))  # to self


def test_spoofed_source_dropped() -> None:
    m = small_model()
    rs = compile_ir(m)
    flow = Flow("10.0.1.11", "10.0.1.10", "tcp", dst_port=80)
    assert evaluate_ir(rs, packet_for(flow, "tvpc2", "tvpc1", "02:00:00:00:00:02"))
    assert not evaluate_ir(rs, packet_for(flow, "tvpc2", "tvpc1", "02:00:00:00:00:99"))  # other MAC
    assert not evaluate_ir(rs, packet_for(flow, "tvpc3", "tvpc1", "02:00:00:00:00:02"))  # other port
    spoofed = Flow("10.0.1.99", "10.0.1.10", "tcp", dst_port=80)
    assert not evaluate_ir(rs, packet_for(spoofed, "tvpc2", "tvpc1", "02:00:00:00:00:02"))
    # spoofed packets are dropped before conntrack, even when they claim an established flow
    assert not evaluate_ir(
        rs, packet_for(flow, "tvpc2", "tvpc1", "02:00:00:00:00:99", ct_state="established")
    )


# --------------------------------------------------------------------------------------------------
# Property: the compiled IR agrees with the reference evaluator

GROUP_IDS = ["sg-a", "sg-b", "sg-c", "sg-d"]
CIDRS = ["0.0.0.0/0", "10.0.0.0/16", "10.0.1.0/28", "10.0.1.16/28", "169.254.100.1/32", "10.0.1.11/32"]


@st.composite
def rules(draw: st.DrawFn, direction: str) -> Rule:
    proto = draw(st.sampled_from(["tcp", "udp", "icmp", "-1", "47"]))
    lo: int | None
    hi: int | None
    if proto in ("tcp", "udp"):
        lo = draw(st.integers(0, 30))
        hi = draw(st.integers(lo, 40))
        if draw(st.booleans()) and draw(st.booleans()):
            lo, hi = 0, 65535
    elif proto == "icmp":
        lo = draw(st.sampled_from([-1, 0, 3, 8]))
        hi = -1 if lo == -1 else draw(st.sampled_from([-1, 0, 1]))
    else:
        lo = hi = None
    if draw(st.booleans()):
        return Rule(direction, proto, lo, hi, group_id=draw(st.sampled_from(GROUP_IDS)))  # type: ignore[arg-type]
    return Rule(direction, proto, lo, hi, cidr_ipv4=draw(st.sampled_from(CIDRS)))  # type: ignore[arg-type]


@st.composite
def models(draw: st.DrawFn) -> FirewallModel:
    groups: dict[str, GroupRules] = {}
    for gid in GROUP_IDS:
        if draw(st.integers(0, 5)) == 0:
            continue  # a group the ENIs name but with no entry: no rules
        ingress = tuple({r: None for r in draw(st.lists(rules("ingress"), max_size=4))})
        egress = tuple({r: None for r in draw(st.lists(rules("egress"), max_size=4))})
        groups[gid] = GroupRules(gid, ingress, egress)
    n = draw(st.integers(1, 5))
    enis = tuple(
        EniPort(
            f"eni-{i}",
            f"tvpc{i}",
            f"10.0.1.{10 + i}",
            f"02:00:00:00:00:{i:02x}",
            tuple(draw(st.lists(st.sampled_from(GROUP_IDS), max_size=3, unique=True))),
        )
        for i in range(n)
    )
    return FirewallModel("taskvpc", enis, groups, HOST_PORT, HOST_IP)


@st.composite
def flows(draw: st.DrawFn, model: FirewallModel) -> Flow:
    ips = [e.ip for e in model.enis]
    src = draw(st.sampled_from([*ips, HOST_IP]))
    dst = draw(st.sampled_from(ips))
    proto = draw(st.sampled_from(["tcp", "udp", "icmp", "47", "50"]))
    if proto in ("tcp", "udp"):
        return Flow(src, dst, proto, dst_port=draw(st.integers(0, 45)))
    if proto == "icmp":
        return Flow(
            src, dst, proto, icmp_type=draw(st.sampled_from([0, 3, 8])), icmp_code=draw(st.integers(0, 1))
        )
    return Flow(src, dst, proto)


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_ir_agrees_with_evaluator(data: st.DataObject) -> None:
    model = data.draw(models())
    ruleset = compile_ir(model)
    enis = ref_enis(model)
    for _ in range(8):
        flow = data.draw(flows(model))
        iif, mac = port_of(model, flow.src_ip)
        oif, _ = port_of(model, flow.dst_ip)
        expected = evaluate(flow, enis, model.groups).allowed
        assert evaluate_ir(ruleset, packet_for(flow, iif, oif, mac)) == expected, flow
        if iif != HOST_PORT:
            # the same packet with another source IP or MAC never passes
            assert not evaluate_ir(ruleset, packet_for(flow, iif, oif, "02:66:00:00:00:01"))
            other = Flow(
                "10.0.1.200", flow.dst_ip, flow.protocol, flow.dst_port, flow.icmp_type, flow.icmp_code
            )
            assert not evaluate_ir(ruleset, packet_for(other, iif, oif, mac))
            # and no NEW flow from a task reaches the host
            to_host = Flow(flow.src_ip, HOST_IP, flow.protocol, flow.dst_port, flow.icmp_type, flow.icmp_code)
            assert not evaluate_ir(ruleset, packet_for(to_host, iif, HOST_PORT, mac))


# --------------------------------------------------------------------------------------------------
# nft itself accepts the text (root and nft only; a throwaway netns, deleted afterwards)


@pytest.fixture
def netns() -> Iterator[str]:
    if shutil.which("nft") is None or shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root, nft and ip")
    name = "tvc" + secrets.token_hex(4)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def nft(ns: str, text: str, *, check_only: bool) -> None:
    args = ["ip", "netns", "exec", ns, "nft", *(["-c"] if check_only else []), "-f", "-"]
    proc = subprocess.run(args, input=text, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_nft_accepts_rendered_text(netns: str) -> None:
    model = small_model()
    wide = GroupRules(
        "sg-x",
        (
            Rule("ingress", "icmp", 3, 1, cidr_ipv6="::/0"),
            Rule("ingress", "icmpv6", 128, 0, group_id="sg-x"),
            Rule("ingress", "icmpv6", -1, -1, cidr_ipv6="fd00::/8"),
            Rule("ingress", "udp", 1000, 2000, cidr_ipv6="fd00::/8"),
            Rule("ingress", "47", None, None, cidr_ipv4="0.0.0.0/0"),
        ),
        (Rule("egress", "udp", 53, 53, cidr_ipv4="10.0.0.2/32"),),
    )
    model = FirewallModel(
        model.table,
        (*model.enis, EniPort("eni-4", "tvpc4", "10.0.1.13", "02:00:00:00:00:04", ("sg-x", "sg-web"))),
        {**model.groups, "sg-x": wide},
        HOST_PORT,
    )
    full = render(compile_ir(model))
    nft(netns, full, check_only=True)
    nft(netns, full, check_only=False)  # the incremental batches need the table
    nft(
        netns,
        render_member_update("taskvpc", "sg-web", ["10.0.1.30"], ["10.0.1.10", "10.0.1.31"]),
        check_only=False,
    )
    nft(netns, render_eni_chains(model, "eni-4"), check_only=False)
    nft(netns, render_eni_delete("taskvpc", model.enis[0]), check_only=False)
    nft(netns, render_eni_delete("taskvpc", model.enis[0]), check_only=False)  # idempotent
    nft(netns, full, check_only=False)  # atomic replace of an existing table
