"""The firewall driver on real namespaces, proved with real packets between real task namespaces.

A VPC router and three tasks are built with ``NetlinkDriver`` under a prefix unique to the test (``tvf``
+ 4 hex digits), in a test-only range (10.242.0.0/16). No host access link is made (its host address is
fixed and may be in use by another run): only task-to-task traffic, which the router forwards and the
``inet`` table's forward hook filters. The ``cfg`` fixture removes every namespace (the router's tables go
with it) and checks that nothing with the prefix is left in ``ip`` or the host's ``nft`` ruleset.
"""

from __future__ import annotations

import os
import secrets
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from taskvpc.agentapi.network import Subnet
from taskvpc.netmodel.evaluator import Eni, Flow, GroupRules, evaluate
from taskvpc.netmodel.firewall_ir import EniPort, FirewallModel, compile_ir
from taskvpc.netmodel.nft_compile import render
from taskvpc.netmodel.security_groups import Rule, new_group_egress, rules_from_permissions
from tests.root import fwlab, hostcheck

pytestmark = [
    pytest.mark.root,
]

if os.geteuid() == 0:
    from taskvpc.agent import netplan
    from taskvpc.agent.drivers import netns
    from taskvpc.agent.drivers.firewall import Backend, FirewallDriver, FirewallError
    from taskvpc.agent.drivers.netlink import NetlinkDriver
    from taskvpc.agent.netplan import NetConfig, TaskEni

SUBNET_A = Subnet.of("subnet-0a", "10.242.0.0/20")
SUBNET_B = Subnet.of("subnet-0b", "10.242.16.0/20")
TIMEOUT = 0.3  # a denied flow is dropped: the client gives up after this long

# TCP on each port given: greet with the task key, then echo lines until the peer closes (so one connection
# can be kept open across a rule change). UDP on 53: echo each datagram.
SERVER = r"""
import socket, sys, threading
name = sys.argv[1]
def serve(conn):
    with conn:
        conn.sendall(f"{name}\n".encode())
        f = conn.makefile("rb")
        for line in f:
            conn.sendall(line)
def tcp(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 53))
    while True:
        data, peer = u.recvfrom(2048)
        u.sendto(data, peer)
for p in sys.argv[2:]:
    threading.Thread(target=tcp, args=(int(p),), daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
import time; time.sleep(0.2)
print("ready", flush=True)
threading.Event().wait()
"""


@pytest.fixture
def cfg() -> Iterator[NetConfig]:
    config = NetConfig(prefix="tvf" + secrets.token_hex(2))
    try:
        yield config
    finally:
        hostcheck.scrub(config.prefix)
        left = hostcheck.wait_clean(config.prefix)
        assert not left, f"left behind: {left}"


@dataclass
class World:
    cfg: NetConfig
    vpc_id: str
    a: TaskEni  # 10.242.0.5
    b: TaskEni  # 10.242.0.6, same subnet as a
    c: TaskEni  # 10.242.16.7, the other subnet
    fw: FirewallDriver
    table: str

    def ns(self, eni: TaskEni) -> str:
        return netplan.task_netns(self.cfg, eni.task_key)

    def path(self, eni: TaskEni) -> str:
        return netns.path_of(self.ns(eni), self.cfg.netns_dir)

    def port(self, eni: TaskEni) -> str:
        return netplan.eni_port(self.cfg, eni.eni_id)


def _eni(n: int, ip: str, gateway: str) -> TaskEni:
    return fwlab.test_eni(n, ip, gateway, "fw")


@pytest.fixture
def world(cfg: NetConfig) -> Iterator[World]:
    with NetlinkDriver(cfg) as net, FirewallDriver(cfg) as fw:
        w = World(
            cfg,
            "vpc-" + secrets.token_hex(9)[:17],
            _eni(1, "10.242.0.5", "10.242.0.1"),
            _eni(2, "10.242.0.6", "10.242.0.1"),
            _eni(3, "10.242.16.7", "10.242.16.1"),
            fw,
            cfg.prefix + "sg",
        )
        net.ensure_vpc_router(w.vpc_id, [SUBNET_A, SUBNET_B])
        for eni in (w.a, w.b, w.c):
            net.ensure_task_network(w.vpc_id, eni)
        procs: list[subprocess.Popen[str]] = []
        try:
            for eni in (w.a, w.b, w.c):
                proc = subprocess.Popen(
                    [
                        "nsenter",
                        f"--net={w.path(eni)}",
                        sys.executable,
                        "-c",
                        SERVER,
                        eni.task_key,
                        "80",
                        "81",
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                procs.append(proc)
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            yield w
        finally:
            for proc in procs:
                proc.kill()  # by PID: only the processes started here
                proc.wait(timeout=5)


# -- packets -----------------------------------------------------------------------------------------


def _sock_in(w: World, eni: TaskEni, kind: int, proto: int = 0) -> socket.socket:
    fd = netns.open_ns(w.ns(eni), w.cfg.netns_dir)
    assert fd is not None
    try:
        with netns.entered(fd):
            return socket.socket(socket.AF_INET, kind, proto)
    finally:
        os.close(fd)


def connect(w: World, src: TaskEni, dst: TaskEni, port: int, bind: str | None = None) -> socket.socket | None:
    """An open TCP connection from ``src`` to ``dst`` that got the server's greeting, or None (denied)."""
    sock = _sock_in(w, src, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        if bind is not None:
            sock.bind((bind, 0))
        sock.connect((dst.ip, port))
        assert sock.makefile().readline().strip() == dst.task_key
        return sock
    except (TimeoutError, ConnectionRefusedError, OSError):
        sock.close()
        return None


def tcp_ok(w: World, src: TaskEni, dst: TaskEni, port: int, bind: str | None = None) -> bool:
    sock = connect(w, src, dst, port, bind)
    if sock is None:
        return False
    sock.close()
    return True


def echo(sock: socket.socket, text: str) -> bool:
    try:
        sock.sendall(text.encode() + b"\n")
        return sock.makefile().readline().strip() == text
    except (TimeoutError, OSError):
        return False


def udp_ok(w: World, src: TaskEni, dst: TaskEni, port: int = 53) -> bool:
    with _sock_in(w, src, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        token = secrets.token_bytes(8)
        sock.sendto(token, (dst.ip, port))
        try:
            data, peer = sock.recvfrom(2048)
        except TimeoutError:
            return False
        return data == token and peer[0] == dst.ip


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def ping_ok(w: World, src: TaskEni, dst: TaskEni) -> bool:
    """One ICMP echo request from ``src`` (a raw socket in its namespace): did ``dst`` answer?"""
    ident = secrets.randbits(16)
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    payload = secrets.token_bytes(16)
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, 1) + payload
    with _sock_in(w, src, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.sendto(packet, (dst.ip, 0))
        deadline = time.monotonic() + TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, peer = sock.recvfrom(2048)
            except TimeoutError:
                return False
            icmp = data[(data[0] & 0x0F) * 4 :]
            kind, _, _, rid, _ = struct.unpack("!BBHHH", icmp[:8])
            if peer[0] == dst.ip and kind == 0 and rid == ident:
                return True
        return False


def in_task(w: World, eni: TaskEni, *cmd: str) -> subprocess.CompletedProcess[str]:
    """A root process inside the task's network namespace."""
    return subprocess.run(
        ["nsenter", f"--net={w.path(eni)}", *cmd], capture_output=True, text=True, check=False, timeout=10
    )


# -- rulesets ----------------------------------------------------------------------------------------


def ruleset(w: World, *rules: str) -> str:
    """The whole table, replaced atomically: declare (so flush cannot fail), flush, then redefine."""
    body = "\n".join(f"        {rule}" for rule in rules)
    return f"""table inet {w.table} {{}}
flush table inet {w.table}
table inet {w.table} {{
    chain forward {{
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        ct state invalid drop
        iifname "{w.port(w.a)}" ip saddr != {w.a.ip} counter drop comment "spoof-a"
        iifname "{w.port(w.b)}" ip saddr != {w.b.ip} counter drop comment "spoof-b"
        iifname "{w.port(w.c)}" ip saddr != {w.c.ip} counter drop comment "spoof-c"
{body}
    }}
}}
"""


def a_to_b_80(w: World) -> str:
    return f'ip saddr {w.a.ip} ip daddr {w.b.ip} tcp dport 80 counter accept comment "a-b-80"'


# -- tests -------------------------------------------------------------------------------------------


def test_no_table_everything_flows(world: World) -> None:
    """The baseline: without a table the router forwards everything (so every denial below is the rules')."""
    w = world
    assert w.fw.list_tables(w.vpc_id) == []
    assert tcp_ok(w, w.a, w.b, 80) and tcp_ok(w, w.c, w.b, 81) and tcp_ok(w, w.b, w.a, 80)
    assert udp_ok(w, w.b, w.c) and ping_ok(w, w.b, w.c)


def test_tcp_allowed_and_denied_replies_by_conntrack(world: World) -> None:
    w = world
    w.fw.apply(w.vpc_id, ruleset(w, a_to_b_80(w)))
    assert w.fw.list_tables(w.vpc_id) == [w.table]
    sock = connect(w, w.a, w.b, 80)
    assert sock is not None, "a -> b:80 is allowed"
    with sock:
        # Replies (b -> a) match no rule of their own: only conntrack lets them through, both ways, repeatedly.
        assert echo(sock, "one") and echo(sock, "two")
    start = time.monotonic()
    assert not tcp_ok(w, w.a, w.b, 81), "another port of the same peer is denied"
    assert time.monotonic() - start < TIMEOUT + 0.5
    assert not tcp_ok(w, w.c, w.b, 80), "another source is denied"
    assert not tcp_ok(w, w.b, w.a, 80), "the reverse direction is not a reply: denied"
    (counter,) = [c for c in w.fw.counters(w.vpc_id, w.table) if c.comment == "a-b-80"]
    assert counter.packets == 1, "only the first packet of the allowed flow reaches the rule"
    assert "a-b-80" in w.fw.list_ruleset(w.vpc_id)


def test_udp_and_icmp_allowed_and_denied(world: World) -> None:
    w = world
    w.fw.apply(
        w.vpc_id,
        ruleset(
            w,
            f"ip saddr {w.a.ip} ip daddr {w.c.ip} udp dport 53 accept",
            f"ip saddr {w.a.ip} ip daddr {w.c.ip} icmp type echo-request accept",
        ),
    )
    assert udp_ok(w, w.a, w.c), "a -> c udp/53 allowed, the reply passes by conntrack"
    assert not udp_ok(w, w.b, w.c), "b -> c udp/53 denied"
    assert not udp_ok(w, w.c, w.a), "c -> a udp/53 is not a reply: denied"
    assert ping_ok(w, w.a, w.c), "a pings c: allowed, echo-reply passes by conntrack"
    assert not ping_ok(w, w.b, w.c), "b pings c: denied"
    assert not ping_ok(w, w.c, w.a), "c pings a: denied"
    assert not tcp_ok(w, w.a, w.c, 80), "udp and icmp rules do not open tcp"


def test_task_root_cannot_see_or_change_router_rules(world: World) -> None:
    w = world
    w.fw.apply(w.vpc_id, ruleset(w, a_to_b_80(w)))
    listed = in_task(w, w.c, "nft", "list", "ruleset")
    assert listed.returncode == 0 and w.table not in listed.stdout and "a-b-80" not in listed.stdout
    gone = in_task(w, w.c, "nft", "delete", "table", "inet", w.table)
    assert gone.returncode != 0, "the router's table does not exist in the task's namespace"
    assert in_task(w, w.c, "nft", "flush", "ruleset").returncode == 0
    opened = in_task(
        w,
        w.c,
        "nft",
        "add table inet x; add chain inet x forward { type filter hook forward priority -10; policy accept; }",
    )
    assert opened.returncode == 0, opened.stderr
    # The task's own tables filter only its own namespace: the router still denies c -> b and allows a -> b.
    assert not tcp_ok(w, w.c, w.b, 80)
    assert tcp_ok(w, w.a, w.b, 80)
    assert w.fw.list_tables(w.vpc_id) == [w.table]
    assert "a-b-80" in w.fw.list_ruleset(w.vpc_id)


def test_revoke_cuts_new_connections_established_keep_working(world: World) -> None:
    """EC2's behaviour for tracked flows: revoking a rule stops new connections; an established one
    keeps working (its conntrack entry matches ``ct state established`` before any rule). Authorizing again
    restores new connections."""
    w = world
    w.fw.apply(w.vpc_id, ruleset(w, a_to_b_80(w)))
    held = connect(w, w.a, w.b, 80)
    assert held is not None
    with held:
        assert echo(held, "before")
        w.fw.apply(w.vpc_id, ruleset(w))  # the accept rule revoked
        assert not tcp_ok(w, w.a, w.b, 80), "a new connection is cut"
        assert echo(held, "after"), "the established connection keeps working"
        w.fw.apply(w.vpc_id, ruleset(w, a_to_b_80(w)))  # authorized again
        assert tcp_ok(w, w.a, w.b, 80)
        assert echo(held, "still")


def test_forged_source_is_dropped(world: World) -> None:
    """A task that sends with an address that is not its ENI's is dropped even where the rules would allow
    that address: strict rp_filter in the router, and the per-port ``ip saddr !=`` rule behind it."""
    w = world
    spoofed = "10.242.0.99"
    w.fw.apply(w.vpc_id, ruleset(w, f"ip daddr {w.b.ip} tcp dport 80 accept"))  # any source may reach b:80
    assert tcp_ok(w, w.a, w.b, 80)
    added = in_task(w, w.a, "ip", "addr", "add", f"{spoofed}/32", "dev", "eth0")
    assert added.returncode == 0, added.stderr
    assert not tcp_ok(w, w.a, w.b, 80, bind=spoofed), "an unused address of the subnet"
    added = in_task(w, w.a, "ip", "addr", "add", f"{w.c.ip}/32", "dev", "eth0")
    assert added.returncode == 0, added.stderr
    assert not tcp_ok(w, w.a, w.b, 80, bind=w.c.ip), "another task's address"
    assert tcp_ok(w, w.a, w.b, 80, bind=w.a.ip), "its own address still works"


def test_apply_errors_remove_and_missing_router(world: World) -> None:
    w = world
    with pytest.raises(FirewallError, match="syntax error"):
        w.fw.apply(w.vpc_id, f"table inet {w.table} {{\n chain forward {{\n bogus\n }}\n}}\n")
    assert w.fw.list_tables(w.vpc_id) == [], "a refused transaction changes nothing"
    w.fw.apply(w.vpc_id, ruleset(w))
    assert w.fw.remove(w.vpc_id, w.table) is True
    assert w.fw.remove(w.vpc_id, w.table) is False, "already absent is success"
    assert w.fw.list_tables(w.vpc_id) == []
    other = "vpc-" + secrets.token_hex(4)
    assert w.fw.remove(other, w.table) is False and w.fw.list_tables(other) == []
    with pytest.raises(FirewallError, match="no router"):
        w.fw.apply(other, ruleset(w))


def test_compiled_security_groups_agree_with_the_evaluator_on_real_packets(world: World) -> None:
    """The compiler's ruleset, loaded by the driver, lets through exactly what the reference evaluator allows."""
    w = world
    owner = "123456789012"
    web, client, other = "sg-0000000000000000a", "sg-0000000000000000b", "sg-0000000000000000c"

    def rules(direction: str, permissions: list[dict[str, object]]) -> tuple[Rule, ...]:
        return tuple(rules_from_permissions(direction, permissions, owner_id=owner))  # type: ignore[arg-type]

    from_client = [
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": client}]}
    ]
    from_subnet_a = [
        {"IpProtocol": "tcp", "FromPort": 81, "ToPort": 81, "IpRanges": [{"CidrIp": "10.242.0.0/20"}]}
    ]
    groups = {
        web: GroupRules(web, rules("ingress", from_client), (new_group_egress(),)),  # tcp/80 from `client`
        client: GroupRules(client, (), (new_group_egress(),)),
        other: GroupRules(other, rules("ingress", from_subnet_a), ()),  # tcp/81 from subnet A, nothing out
    }
    carried = {w.a.eni_id: (client,), w.b.eni_id: (web,), w.c.eni_id: (other,)}
    model = FirewallModel(
        table=w.table,
        enis=tuple(EniPort(e.eni_id, w.port(e), e.ip, e.mac, carried[e.eni_id]) for e in (w.a, w.b, w.c)),
        groups=groups,
        host_port=f"{w.cfg.prefix}-host",
    )
    w.fw.apply(w.vpc_id, render(compile_ir(model)))
    enis = [Eni(e.eni_id, (e.ip,), carried[e.eni_id]) for e in (w.a, w.b, w.c)]
    cases = [(w.a, w.b, 80), (w.a, w.b, 81), (w.c, w.b, 80), (w.a, w.c, 81), (w.b, w.c, 81), (w.c, w.a, 80)]
    outcomes = []
    for src, dst, port in cases:
        expected = evaluate(Flow(src.ip, dst.ip, "tcp", port), enis, groups).allowed
        assert tcp_ok(w, src, dst, port) == expected, (
            f"{src.ip} -> {dst.ip}:{port}: evaluator says {expected}"
        )
        outcomes.append(expected)
    assert outcomes == [True, False, False, True, True, False]


def _hundred_eni_table(table: str, version: int) -> str:
    """A shared table for 100 ENIs: per-ENI chains dispatched by verdict maps keyed on the task address."""
    lines = [f"table inet {table} {{}}", f"flush table inet {table}", f"table inet {table} {{"]
    ins, outs = [], []
    for i in range(100):
        ip = f"10.242.{i // 200 + 1}.{i % 200 + 10}"
        for way, key in (("in", "ip saddr"), ("out", "ip daddr")):
            lines.append(f"    chain eni{i}_{way} {{")
            for r in range(5):
                lines.append(
                    f"        {key} 10.{r}.{version % 250}.0/24 tcp dport {{ 80, 443, {8000 + r} }} accept"
                )
            lines.append("    }")
        ins.append(f"{ip} : jump eni{i}_in")
        outs.append(f"{ip} : jump eni{i}_out")
    lines += [
        "    map to_eni { type ipv4_addr : verdict; elements = { " + ", ".join(ins) + " } }",
        "    map from_eni { type ipv4_addr : verdict; elements = { " + ", ".join(outs) + " } }",
        "    chain forward {",
        "        type filter hook forward priority 0; policy drop;",
        "        ct state established,related accept",
        "        ip saddr vmap @from_eni",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _p50_p99(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


@pytest.mark.parametrize("backend", ["libnftables", "nsenter"])
def test_apply_latency_100_enis(world: World, backend: Backend) -> None:
    """A 100-ENI table (1,000 rules, 200 chains, two verdict maps): 20 whole-table replacements, then 20
    incremental updates of one ENI (its inbound chain rewritten, its map entry replaced)."""
    w = world
    with FirewallDriver(w.cfg, backend=backend) as fw:
        full = []
        for version in range(20):
            text = _hundred_eni_table(w.table, version)
            start = time.perf_counter()
            fw.apply(w.vpc_id, text)
            full.append((time.perf_counter() - start) * 1000)
        one = []
        for version in range(20):
            i = version * 5
            ip = f"10.242.{i // 200 + 1}.{i % 200 + 10}"
            rules = "\n".join(
                f"ip saddr 10.{r}.{version}.0/24 tcp dport {{ 80, 443 }} accept" for r in range(5)
            )
            text = (
                f"flush chain inet {w.table} eni{i}_in\n"
                f"table inet {w.table} {{\n chain eni{i}_in {{\n{rules}\n }}\n}}\n"
                f"delete element inet {w.table} to_eni {{ {ip} }}\n"
                f"add element inet {w.table} to_eni {{ {ip} : jump eni{i}_in }}\n"
            )
            start = time.perf_counter()
            fw.apply(w.vpc_id, text)
            one.append((time.perf_counter() - start) * 1000)
        assert fw.list_tables(w.vpc_id) == [w.table]
    (f50, f99), (o50, o99) = _p50_p99(full), _p50_p99(one)
    print(
        f"\n{backend}: whole 100-ENI table p50 {f50:.1f} ms p99 {f99:.1f} ms; "
        f"one-ENI update p50 {o50:.1f} ms p99 {o99:.1f} ms"
    )
    assert f99 < 2000 and o99 < 1000
