"""Live changes through the compiler's incremental batches, on real packets (no whole-table reload).

A rule revoked or authorized rewrites the chains of the group (``render_eni_chains``); a task gaining or
losing a group points its port at its new combination's chains and changes the group's member set
(``render_member_update``). New connections follow at once; an established connection survives a revoke,
as EC2 keeps tracked connections (its conntrack entry is accepted before any rule is read).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from taskvpc.netmodel.evaluator import Flow, GroupRules
from taskvpc.netmodel.firewall_ir import EniPort, FirewallModel, compile_ir
from taskvpc.netmodel.nft_compile import render, render_eni_chains, render_member_update
from taskvpc.netmodel.security_groups import Rule, new_group_egress
from tests.root import fwlab

pytestmark = [
    pytest.mark.root,
]

HELD_PORT = 900  # outside fwlab.PORTS: an echo server that keeps connections open
FROM_CLIENTS = Rule("ingress", "tcp", 1, 1000, group_id="sg-client")
WEB = GroupRules("sg-web", (FROM_CLIENTS,), (new_group_egress(),))
CLIENT = GroupRules("sg-client", (), (new_group_egress(),))


@pytest.fixture
def lab() -> Iterator[fwlab.Lab]:
    with fwlab.lab("tvl", 3, tag="lv") as made:
        yield made


@contextlib.contextmanager
def echo_server(lab: fwlab.Lab, index: int) -> Iterator[None]:
    listener = fwlab.sock_in(lab.tasks[index].fd, socket.SOCK_STREAM)
    listener.bind(("0.0.0.0", HELD_PORT))
    listener.listen(4)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                while data := conn.recv(64):
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=5)


def echo(sock: socket.socket, text: bytes) -> bool:
    try:
        sock.sendall(text)
        return sock.recv(64) == text
    except OSError:
        return False


def test_revoke_authorize_and_membership_follow_at_once(lab: fwlab.Lab) -> None:
    a, b, c = lab.enis  # a: a client, b: the web task, c: no group yet

    def model(web: GroupRules, c_groups: tuple[str, ...]) -> FirewallModel:
        carried = {a.eni_id: ("sg-client",), b.eni_id: ("sg-web",), c.eni_id: c_groups}
        enis = tuple(EniPort(e.eni_id, lab.port(e), e.ip, e.mac, carried[e.eni_id]) for e in lab.enis)
        return FirewallModel(lab.table, enis, {"sg-web": web, "sg-client": CLIENT}, lab.host_port)

    def reach(src: int) -> str:
        flow = Flow(lab.enis[src].ip, b.ip, "tcp", dst_port=7)
        return prober.run([fwlab.Probe(src, 1, flow)], 0.3)[0]

    apply = lambda text: lab.fw.apply(lab.vpc_id, text)  # noqa: E731
    apply(render(compile_ir(model(WEB, ()))))
    with fwlab.Prober(lab.nodes) as prober, echo_server(lab, 1):
        held = fwlab.sock_in(lab.tasks[0].fd, socket.SOCK_STREAM)
        held.settimeout(1.0)
        held.connect((b.ip, HELD_PORT))
        with held:
            assert echo(held, b"before")
            assert (reach(0), reach(2)) == ("ok", "timeout")

            apply(render_eni_chains(model(replace(WEB, ingress=()), ()), b.eni_id))  # revoked
            assert reach(0) == "timeout", "a new connection is cut"
            assert echo(held, b"after revoke"), "the established one keeps working"

            apply(render_eni_chains(model(WEB, ()), b.eni_id))  # authorized again
            assert reach(0) == "ok"

            joined = model(WEB, ("sg-client",))  # c joins sg-client: its chains and the group's set
            alone = model(WEB, ()).enis[2]
            apply(
                render_eni_chains(joined, c.eni_id, previous=alone)
                + render_member_update(lab.table, "sg-client", [c.ip], [])
            )
            assert reach(2) == "ok"

            left = model(WEB, ())
            apply(
                render_eni_chains(left, c.eni_id, previous=joined.enis[2])
                + render_member_update(lab.table, "sg-client", [], [c.ip])
            )
            assert reach(2) == "timeout"
            assert reach(0) == "ok" and echo(held, b"still")
