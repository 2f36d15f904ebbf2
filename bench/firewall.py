#!/usr/bin/env python3
"""Security-group firewall benchmark: what enforcement costs packets, and how fast rules change.

Run as root (it builds a VPC router and two task namespaces under a unique name prefix, and removes them):

    sudo .venv/bin/python bench/firewall.py [--reps 5] [--seconds 3] [--updates 300]
    sudo .venv/bin/python bench/firewall.py --difference 1000   # the proof-by-difference test, 1000 examples
    sudo .venv/bin/python bench/firewall.py --scale 100,5000     # one ENI's start+stop at 100 and 5,000 ENIs

Between task ``client`` and task ``server`` (one VPC, two subnets, routed by the VPC router) it measures, in
four modes interleaved ``--reps`` times: TCP throughput (``iperf3`` if installed, else a Python sender),
request/response latency on one connection (RR: 1 byte each way) and per new connection (CRR: connect,
1 byte each way, close: every one a NEW flow through the rules):

* ``none``: no firewall table at all;
* ``conntrack``: a table whose one rule reads ``ct state`` (the cost of connection tracking alone, which
  any stateful firewall pays);
* ``groups``: the compiled table with the two tasks' groups (the server admits the client's group on its
  ports, ten rules in all);
* ``full``: the same plus 1,000 more ENIs (map and set elements, chains; no veths) each with its own group
  of 10 rules (10,000 security-group rules, ~12,000 nft rules, 1,000 group sets).

Then, with the full table loaded, update latency through ``FirewallDriver.apply`` (model change -> text ->
nft transaction; p50/p99 over ``--updates``): a rule authorized in one ENI's group
(``render_group_chains``, and the agent's way, ``nft_update.render_update`` of the old and new models),
a rule of a group every ENI carries (still one chain), a group
member added and removed (``render_member_update``), a task ENI started and stopped (chains + elements,
``render_eni_delete``), and the whole-table load. Prints a markdown table.

``--scale N1,N2,...``: per N, a router table with N ENIs (no veths, 10 groups shared round-robin, each
with rules naming the next group, as tasks of a few services have) loaded through the agent's
``FirewallSync``; then ``--updates`` times one ENI started and stopped through it (``add_eni`` +
``remove_eni``, each one transaction through ``FirewallDriver.apply``, conntrack cleanup included), with
groups another ENI has (``same``: the common start) and with a combination new to the table (``new``).
Prints p50/p99 per N and the ratio of the medians to the first N's; ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.root.fwlab

from taskvpc.agent.drivers import netns  # noqa: E402
from taskvpc.netmodel.evaluator import GroupRules  # noqa: E402
from taskvpc.netmodel.firewall_ir import EniPort, FirewallModel, compile_ir  # noqa: E402
from taskvpc.netmodel.nft_compile import (  # noqa: E402
    render,
    render_eni_chains,
    render_eni_delete,
    render_group_chains,
    render_member_update,
)
from taskvpc.netmodel.nft_update import render_update  # noqa: E402
from taskvpc.netmodel.security_groups import Rule, new_group_egress  # noqa: E402
from tests.root import fwlab  # noqa: E402

IPERF_PORT, ECHO_PORT = 5201, 7000
ECHO_SERVER = r"""
import socket, sys, threading
def serve(conn):
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(64):
            conn.sendall(data)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(512)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


# -- models ----------------------------------------------------------------------------------------------


def base_model(lab: fwlab.Lab) -> FirewallModel:
    client, server = lab.enis
    noise = [Rule("ingress", "tcp", 9000 + i, 9000 + i, cidr_ipv4=f"192.0.2.{i}/32") for i in range(8)]
    groups = {
        "sg-client": GroupRules("sg-client", (), (new_group_egress(),)),
        "sg-server": GroupRules(
            "sg-server",
            (
                *noise,  # eight rules that do not match the client, before the two that do
                # the port after iperf3's is the Python sender's (when iperf3 is not installed)
                Rule("ingress", "tcp", IPERF_PORT, IPERF_PORT + 1, group_id="sg-client"),
                Rule("ingress", "tcp", ECHO_PORT, ECHO_PORT, group_id="sg-client"),
            ),
            (new_group_egress(),),
        ),
    }
    enis = (
        EniPort(client.eni_id, lab.port(client), client.ip, client.mac, ("sg-client",)),
        EniPort(server.eni_id, lab.port(server), server.ip, server.mac, ("sg-server",)),
    )
    return FirewallModel(lab.table, enis, groups, lab.host_port, fwlab.HOST_IP)


def phantom(i: int) -> EniPort:
    return EniPort(
        f"eni-{i:017x}",
        f"tvq{i:012x}",
        f"10.{100 + i // 250}.{i % 250}.{10 + i % 200}",
        f"02:42:00:00:{i // 256:02x}:{i % 256:02x}",
        (f"sg-p{i:05d}",),
    )


def full_model(base: FirewallModel, n: int = 1000) -> FirewallModel:
    """``base`` plus ``n`` ENIs, each with its own group of 9 ingress rules (CIDRs, ports, references to
    neighbours' groups) and one egress rule."""
    groups = dict(base.groups)
    for i in range(n):
        gid = f"sg-p{i:05d}"
        ingress = [
            Rule("ingress", "tcp", 80 + r, 80 + r, cidr_ipv4=f"10.{r}.{i % 250}.0/24") for r in range(6)
        ] + [Rule("ingress", "tcp", 8000, 8100, group_id=f"sg-p{(i + k) % n:05d}") for k in (1, 2)]
        ingress.append(Rule("ingress", "icmp", 8, -1, cidr_ipv4="10.0.0.0/8"))
        groups[gid] = GroupRules(gid, tuple(ingress), (new_group_egress(),))
    return replace(base, enis=(*base.enis, *(phantom(i) for i in range(n))), groups=groups)


def scale_eni(i: int, groups: tuple[str, ...]) -> EniPort:
    return replace(phantom(i), group_ids=groups)


def scale_rules(groups: int = 10) -> dict[str, GroupRules]:
    out = {}
    for k in range(groups):
        gid = f"sg-s{k}"
        ingress = (
            Rule("ingress", "tcp", 80, 80, group_id=f"sg-s{(k + 1) % groups}"),
            Rule("ingress", "tcp", 443, 443, cidr_ipv4="10.0.0.0/8"),
            Rule("ingress", "icmp", 8, -1, cidr_ipv4="10.0.0.0/8"),
        )
        out[gid] = GroupRules(gid, ingress, (new_group_egress(),))
    return out


def measure_scale(lab: fwlab.Lab, sizes: list[int], updates: int) -> dict[int, dict[str, list[float]]]:
    """Milliseconds for one ENI's start + stop through FirewallSync, with ``n`` ENIs in the table."""
    from taskvpc.agent.security import FirewallSync

    results: dict[int, dict[str, list[float]]] = {}
    for n in sizes:
        sync = FirewallSync(lab.fw, lab.cfg, table=lab.table)
        sync.set_desired({lab.vpc_id: scale_rules()}, {})
        sync.add_enis(lab.vpc_id, [scale_eni(i, (f"sg-s{i % 10}",)) for i in range(n)])
        times: dict[str, list[float]] = {"same": [], "new": []}
        for k in range(updates):
            for kind, groups in (("same", ("sg-s3",)), ("new", ("sg-s1", "sg-s2"))):
                eni = scale_eni(n + 1 + k % 50, groups)
                started = time.perf_counter()
                sync.add_eni(lab.vpc_id, eni)
                sync.remove_eni(lab.vpc_id, eni.eni_id)
                times[kind].append((time.perf_counter() - started) * 1000)
        results[n] = times
        lab.fw.remove(lab.vpc_id, lab.table)
        print(f"  {n} ENIs: same {pct(times['same'], 0.5):.2f} ms", file=sys.stderr)
    return results


def report_scale(results: dict[int, dict[str, list[float]]]) -> dict[str, object]:
    first = min(results)
    print(
        "\n| ENIs in the table | start+stop, groups another ENI has: p50 / p99 ms | vs first | "
        "new combination of groups: p50 / p99 ms | vs first |"
    )
    print("|---:|---:|---:|---:|---:|")
    out: dict[str, object] = {}
    for n, times in results.items():
        row = [f"| {n:,}"]
        for kind in ("same", "new"):
            p50, p99 = pct(times[kind], 0.5), pct(times[kind], 0.99)
            ratio = p50 / pct(results[first][kind], 0.5)
            row.append(f"{p50:.2f} / {p99:.2f} | {ratio:.2f}x")
            out[f"{kind}_{n}"] = {"p50_ms": p50, "p99_ms": p99, "ratio": ratio, "n": len(times[kind])}
        print(" | ".join(row) + " |")
    return out


def conntrack_only(table: str) -> str:
    """A table whose only work is connection tracking: what any stateful firewall costs at least."""
    chain = "type filter hook forward priority filter; policy accept;\n ct state established,related accept"
    return f"add table inet {table}\ndelete table inet {table}\ntable inet {table} {{\nchain forward {{\n{chain}\n}}\n}}\n"


# -- traffic ---------------------------------------------------------------------------------------------


def in_ns(lab: fwlab.Lab, index: int, *cmd: str, stdout: int | None = None) -> subprocess.Popen[str]:
    path = netns.path_of(lab.tasks[index].name, lab.cfg.netns_dir)
    return subprocess.Popen(["nsenter", f"--net={path}", *cmd], text=True, stdout=stdout)


def throughput_iperf(lab: fwlab.Lab, seconds: float) -> float:
    client = in_ns(
        lab,
        0,
        "iperf3",
        "-c",
        lab.enis[1].ip,
        "-p",
        str(IPERF_PORT),
        "-t",
        str(seconds),
        "-J",
        stdout=subprocess.PIPE,
    )
    out, _ = client.communicate(timeout=seconds + 30)
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9


def throughput_python(lab: fwlab.Lab, seconds: float) -> float:
    """One TCP stream, 1 MiB writes from the client task, counted by a reader in the server task."""
    listener = fwlab.sock_in(lab.tasks[1].fd, socket.SOCK_STREAM)
    listener.bind((lab.enis[1].ip, IPERF_PORT + 1))
    listener.listen(1)
    received = [0]

    def read() -> None:
        conn, _ = listener.accept()
        buf = bytearray(1 << 20)
        with conn:
            while n := conn.recv_into(buf):
                received[0] += n

    reader = threading.Thread(target=read)
    reader.start()
    with fwlab.sock_in(lab.tasks[0].fd, socket.SOCK_STREAM) as sender:
        sender.connect((lab.enis[1].ip, IPERF_PORT + 1))
        chunk = bytes(1 << 20)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            sender.sendall(chunk)
    reader.join()
    listener.close()
    return received[0] * 8 / (time.perf_counter() - start) / 1e9


def rr(lab: fwlab.Lab, count: int) -> list[float]:
    with fwlab.sock_in(lab.tasks[0].fd, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect((lab.enis[1].ip, ECHO_PORT))
        times = []
        for _ in range(count):
            start = time.perf_counter()
            sock.sendall(b"x")
            sock.recv(64)
            times.append((time.perf_counter() - start) * 1e6)
    return times


def crr(lab: fwlab.Lab, count: int) -> list[float]:
    times = []
    for _ in range(count):
        sock = fwlab.sock_in(lab.tasks[0].fd, socket.SOCK_STREAM)
        start = time.perf_counter()
        with sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect((lab.enis[1].ip, ECHO_PORT))
            sock.sendall(b"x")
            sock.recv(64)
        times.append((time.perf_counter() - start) * 1e6)
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the run ---------------------------------------------------------------------------------------------


def measure_traffic(
    lab: fwlab.Lab, args: argparse.Namespace, texts: dict[str, str | None]
) -> dict[str, dict[str, list[float]]]:
    use_iperf = shutil.which("iperf3") is not None
    results: dict[str, dict[str, list[float]]] = {m: {"gbps": [], "rr": [], "crr": []} for m in texts}
    for rep in range(args.reps):
        order = list(texts)[rep % len(texts) :] + list(texts)[: rep % len(texts)]  # rotate the position
        for mode in order:
            text = texts[mode]
            if text is None:
                lab.fw.remove(lab.vpc_id, lab.table)
            else:
                lab.fw.apply(lab.vpc_id, text)
            lab.flush_conntrack()
            gbps = throughput_iperf(lab, args.seconds) if use_iperf else throughput_python(lab, args.seconds)
            results[mode]["gbps"].append(gbps)
            results[mode]["rr"] += rr(lab, args.rr)
            results[mode]["crr"] += crr(lab, args.crr)
            print(f"  rep {rep + 1} {mode:>6}: {gbps:.2f} Gbit/s", file=sys.stderr)
    return results


def measure_updates(lab: fwlab.Lab, full: FirewallModel, n: int) -> dict[str, list[float]]:
    """Milliseconds from a model change to the committed nft transaction (text rendered inside the clock)."""
    out: dict[str, list[float]] = {"rule": [], "agent": [], "fleet": [], "member": [], "eni": [], "table": []}

    def timed(key: str, make: Callable[[], str]) -> None:
        start = time.perf_counter()
        lab.fw.apply(lab.vpc_id, make())
        out[key].append((time.perf_counter() - start) * 1000)

    group = full.groups["sg-server"]

    def toggled(k: int) -> FirewallModel:
        """Rule k authorized (even k) or revoked again (odd k): the group never grows past 11 rules."""
        extra = Rule("ingress", "tcp", 20000 + k // 2, 20000 + k // 2, cidr_ipv4=f"10.{k % 250}.0.0/16")
        rules = (*group.ingress, extra) if k % 2 == 0 else group.ingress
        return replace(full, groups={**full.groups, "sg-server": replace(group, ingress=rules)})

    for k in range(n):
        timed("rule", partial(render_group_chains, toggled(k), "sg-server"))
    previous = full
    for k in range(n):  # the same changes as the agent makes them: a diff of two models
        model = toggled(k)
        timed("agent", partial(render_update, previous, model))
        previous = model
    for k in range(n):
        ip = f"10.99.{k // 200}.{k % 200 + 10}"
        timed("member", partial(render_member_update, lab.table, "sg-client", [ip], []))
        timed("member", partial(render_member_update, lab.table, "sg-client", [], [ip]))
    for k in range(n // 2):
        eni = replace(phantom(5000 + k), group_ids=("sg-p00001",))
        started = replace(full, enis=(*full.enis, eni))
        add = partial(render_member_update, lab.table, "sg-p00001", [eni.ip], [])
        timed("eni", lambda m=started, e=eni, add=add: render_eni_chains(m, e.eni_id) + add())  # type: ignore[misc]
        remove = partial(render_member_update, lab.table, "sg-p00001", [], [eni.ip])
        timed("eni", lambda e=eni, remove=remove: render_eni_delete(lab.table, e) + remove())  # type: ignore[misc]
    # A group every one of the 1,000 ENIs carries (a service's tasks): a rule change in it is still one
    # group chain, whatever the number of tasks.
    fleet_rules = GroupRules("sg-fleet", (Rule("ingress", "tcp", 9000, 9000, cidr_ipv4="10.0.0.0/8"),), ())
    fleet = replace(
        full,
        enis=tuple(replace(e, group_ids=(*e.group_ids, "sg-fleet")) for e in full.enis),
        groups={**full.groups, "sg-fleet": fleet_rules},
    )
    lab.fw.apply(lab.vpc_id, render_update(full, fleet))
    previous = fleet
    for k in range(n):
        extra = Rule("ingress", "tcp", 30000 + k // 2, 30000 + k // 2, cidr_ipv4="10.0.0.0/8")
        rules = (*fleet_rules.ingress, extra) if k % 2 == 0 else fleet_rules.ingress
        model = replace(fleet, groups={**fleet.groups, "sg-fleet": replace(fleet_rules, ingress=rules)})
        timed("fleet", partial(render_update, previous, model))
        previous = model
    for _ in range(5):
        timed("table", lambda: render(compile_ir(fleet)))
    return out


def report(
    results: dict[str, dict[str, list[float]]], updates: dict[str, list[float]], full: FirewallModel
) -> None:
    ruleset = compile_ir(full)
    nft_rules = sum(len(c.rules) for c in ruleset.chains)
    sg_rules = sum(len(g.ingress) + len(g.egress) for g in full.groups.values())
    print(
        f"\nTwo tasks through the VPC router; full table: {len(full.enis)} ENIs, {sg_rules:,} security-group rules, "
        f"{nft_rules:,} nft rules, {len(ruleset.sets)} sets\n"
    )
    print(
        "| firewall | TCP Gbit/s (median) | vs none (median of rounds) | RR p50 / p99 µs | CRR p50 / p99 µs |"
    )
    print("|---|---:|---:|---:|---:|")
    names = {
        "none": "no table",
        "conntrack": "connection tracking only (no rules)",
        "groups": "the two tasks' groups",
        "full": "+ 1,000 ENIs, 10,000 rules",
    }
    for mode, r in results.items():
        gbps = statistics.median(r["gbps"])
        # each round measured every mode once: compare within a round, so load that drifts cancels out
        ratio = statistics.median(x / n for x, n in zip(r["gbps"], results["none"]["gbps"], strict=True))
        print(
            f"| {names[mode]} | {gbps:.2f} | {ratio:.0%} | {pct(r['rr'], 0.5):.0f} / {pct(r['rr'], 0.99):.0f} "
            f"| {pct(r['crr'], 0.5):.0f} / {pct(r['crr'], 0.99):.0f} |"
        )
    print("\n| update (full table loaded, through FirewallDriver.apply) | n | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    labels = {
        "rule": "authorize or revoke a rule: its group's chain rewritten",
        "agent": "the same through nft_update.render_update (diff of two models)",
        "fleet": "a rule of a group all 1,002 ENIs carry (render_update)",
        "member": "group member added or removed",
        "eni": "task ENI started or stopped (chains, maps, sets)",
        "table": "whole table replaced",
    }
    for key, times in updates.items():
        print(f"| {labels[key]} | {len(times)} | {pct(times, 0.5):.1f} | {pct(times, 0.99):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=5, help="rounds over the four modes (default 5)")
    parser.add_argument("--seconds", type=float, default=3.0, help="throughput window per measurement")
    parser.add_argument("--rr", type=int, default=3000, help="request/response round trips per measurement")
    parser.add_argument("--crr", type=int, default=500, help="new connections per measurement")
    parser.add_argument("--updates", type=int, default=300, help="updates of each kind")
    parser.add_argument(
        "--difference", type=int, metavar="N", help="only run the difference test, N examples"
    )
    parser.add_argument("--scale", metavar="N1,N2", help="only one ENI's start+stop at these table sizes")
    parser.add_argument("--json", metavar="PATH", help="with --scale: write the numbers there")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: it builds network namespaces and nftables tables")
    if args.difference:
        env = {**os.environ, "TASKVPC_FW_DIFF_EXAMPLES": str(args.difference)}
        test = "tests/root/test_firewall_difference.py"
        raise SystemExit(
            subprocess.call([sys.executable, "-m", "pytest", "-q", "-s", test], cwd=ROOT, env=env)
        )
    if args.scale:
        with fwlab.lab("tvb", 0, tag="bs") as lab:
            scaled = report_scale(measure_scale(lab, [int(n) for n in args.scale.split(",")], args.updates))
        if args.json:
            Path(args.json).write_text(json.dumps(scaled, indent=1) + "\n")
        return
    with fwlab.lab("tvb", 2, tag="bn") as lab:
        servers = [in_ns(lab, 1, sys.executable, "-c", ECHO_SERVER, str(ECHO_PORT), stdout=subprocess.PIPE)]
        if shutil.which("iperf3"):
            servers.append(in_ns(lab, 1, "iperf3", "-s", "-p", str(IPERF_PORT), stdout=subprocess.DEVNULL))
        else:
            print("iperf3 not installed: a Python sender measures throughput", file=sys.stderr)
        try:
            assert servers[0].stdout is not None and servers[0].stdout.readline().strip() == "ready"
            time.sleep(0.3)  # iperf3 binds its port
            base = base_model(lab)
            full = full_model(base)
            full_text = render(compile_ir(full))
            texts = {"none": None, "conntrack": conntrack_only(lab.table)}
            texts |= {"groups": render(compile_ir(base)), "full": full_text}
            results = measure_traffic(lab, args, texts)
            lab.fw.apply(lab.vpc_id, full_text)
            updates = measure_updates(lab, full, args.updates)
        finally:
            for proc in servers:
                proc.kill()  # by PID: only what this run started
                proc.wait(timeout=5)
    report(results, updates, full)


if __name__ == "__main__":
    main()
