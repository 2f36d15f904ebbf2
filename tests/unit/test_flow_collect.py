"""Flow-log collection, the pure parts: conntrack deltas and dropped packets -> per-ENI records, windows,
NODATA/SKIPDATA; the REJECT log rule in the compiled table; the wire of the section and report entry;
the agent's netlink parsers on hand-built messages."""

from __future__ import annotations

import socket
import struct

from hypothesis import given, strategies as st

from taskvpc.agent.drivers import ctflows, nflog
from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.flowlogs import FLOW_LOGS, FlowLogWatch, FlowRecords, records_from_wire, watch_for
from taskvpc.netmodel.evaluator import GroupRules
from taskvpc.netmodel.firewall_ir import (
    EniPort,
    FirewallModel,
    Packet,
    compile_ir,
    evaluate_ir,
    in_chain,
    out_chain,
)
from taskvpc.netmodel.flow_collect import CtDelta, Drop, FlowWindows, WatchedEni, window_start
from taskvpc.netmodel.nft_compile import render
from taskvpc.netmodel.nft_update import render_update

A = WatchedEni("eni-0aaaaaaaaaaaaaaa1", "10.0.0.10", 60.0, True, True, {"ecs-task-id": "t1"})
B = WatchedEni("eni-0bbbbbbbbbbbbbbb2", "10.0.0.20", 60.0, True, False)
HOST = "169.254.100.1"
T0 = 1_700_000_040.0  # a multiple of 60


def curl(started: float | None = T0 + 1, stopped: float | None = None) -> CtDelta:
    return CtDelta(6, HOST, A.ip, 40000, 80, A.ip, HOST, 80, 40000, 6, 420, 5, 1200, started, stopped)


def test_one_connection_gives_two_unidirectional_records() -> None:
    windows = FlowWindows()
    windows.watch([A], T0 + 0.5)
    windows.add_conntrack(curl(), T0 + 3)
    assert windows.close_due(T0 + 59) == {}
    [(eni, (start, end, records))] = windows.close_due(T0 + 60).items()
    assert (eni, start, end) == (A.eni_id, int(T0), int(T0) + 60)
    by_direction = {r["flow-direction"]: r for r in records}
    inbound, outbound = by_direction["ingress"], by_direction["egress"]
    assert (inbound["srcaddr"], inbound["dstaddr"], inbound["srcport"], inbound["dstport"]) == (
        HOST,
        A.ip,
        40000,
        80,
    )
    assert (inbound["packets"], inbound["bytes"], inbound["protocol"]) == (6, 420, 6)
    assert (outbound["srcaddr"], outbound["dstaddr"], outbound["srcport"], outbound["dstport"]) == (
        A.ip,
        HOST,
        80,
        40000,
    )
    assert (outbound["packets"], outbound["bytes"]) == (5, 1200)
    assert {r["action"] for r in records} == {"ACCEPT"} and {r["log-status"] for r in records} == {"OK"}
    assert inbound["ecs-task-id"] == "t1" and inbound["start"] == int(T0) + 1


def test_deltas_of_one_flow_add_up_within_a_window() -> None:
    windows = FlowWindows()
    windows.watch([A], T0)
    windows.add_conntrack(curl(), T0 + 3)
    windows.add_conntrack(curl(stopped=T0 + 9), T0 + 10)
    records = windows.close_due(T0 + 60)[A.eni_id][2]
    inbound = next(r for r in records if r["flow-direction"] == "ingress")
    assert (inbound["packets"], inbound["bytes"]) == (12, 840)


def test_both_ends_local_each_get_their_records() -> None:
    windows = FlowWindows()
    windows.watch([A, B], T0)
    windows.add_conntrack(CtDelta(17, A.ip, B.ip, 5000, 53, B.ip, A.ip, 53, 5000, 1, 80, 1, 120), T0 + 1)
    closed = windows.close_due(T0 + 60)
    assert len(closed[A.eni_id][2]) == 2 and len(closed[B.eni_id][2]) == 2
    sent_by_a = next(r for r in closed[A.eni_id][2] if r["flow-direction"] == "egress")
    received_by_b = next(r for r in closed[B.eni_id][2] if r["flow-direction"] == "ingress")
    assert {k: sent_by_a[k] for k in ("srcaddr", "dstaddr", "packets", "bytes")} == {
        k: received_by_b[k] for k in ("srcaddr", "dstaddr", "packets", "bytes")
    }


def test_icmp_has_ports_zero_and_metadata_is_not_logged() -> None:
    windows = FlowWindows()
    windows.watch([A], T0)
    windows.add_conntrack(CtDelta(1, HOST, A.ip, 7, 8, A.ip, HOST, 7, 0, 3, 252, 3, 252), T0 + 1)
    windows.add_conntrack(
        CtDelta(6, A.ip, "169.254.170.2", 1, 80, "169.254.170.2", A.ip, 80, 1, 5, 500, 5, 500), T0 + 1
    )
    records = windows.close_due(T0 + 60)[A.eni_id][2]
    assert len(records) == 2
    assert {(r["srcport"], r["dstport"], r["protocol"]) for r in records} == {(0, 0, 1)}


def test_reject_on_the_refusing_eni_and_accept_egress_on_a_local_sender() -> None:
    windows = FlowWindows()
    windows.watch([A, B], T0)
    for attempt in range(4):  # a SYN and three retransmissions
        windows.add_drop(Drop(A.eni_id, "in", 6, B.ip, A.ip, 41000, 22, 60, 0x02, T0 + 1 + attempt))
    closed = windows.close_due(T0 + 60)
    [reject] = closed[A.eni_id][2]
    assert (reject["action"], reject["packets"], reject["bytes"], reject["tcp-flags"]) == (
        "REJECT",
        4,
        240,
        2,
    )
    assert (reject["srcaddr"], reject["dstport"], reject["flow-direction"]) == (B.ip, 22, "ingress")
    assert (reject["start"], reject["end"]) == (int(T0) + 1, int(T0) + 5)
    [sent] = closed[B.eni_id][2]
    assert (sent["action"], sent["packets"], sent["flow-direction"]) == ("ACCEPT", 4, "egress")


def test_traffic_types_are_respected() -> None:
    accept_only = WatchedEni(A.eni_id, A.ip, 60.0, True, False)
    windows = FlowWindows()
    windows.watch([accept_only], T0)
    windows.add_drop(Drop(A.eni_id, "in", 6, HOST, A.ip, 1, 22, 60, 2, T0 + 1))
    assert windows.close_due(T0 + 60)[A.eni_id][2][0]["log-status"] == "NODATA"
    reject_only = WatchedEni(A.eni_id, A.ip, 60.0, False, True)
    windows.watch([reject_only], T0 + 60)
    windows.add_conntrack(curl(), T0 + 61)
    assert windows.close_due(T0 + 120)[A.eni_id][2][0]["log-status"] == "NODATA"


def test_nodata_and_skipdata_windows() -> None:
    windows = FlowWindows()
    windows.watch([A], T0 + 10)
    assert windows.close_due(T0 + 60)[A.eni_id] == (
        int(T0),
        int(T0) + 60,
        [{"ecs-task-id": "t1", "start": int(T0), "end": int(T0) + 60, "log-status": "NODATA"}],
    )
    windows.add_conntrack(curl(), T0 + 70)
    windows.lost()
    [skipped] = windows.close_due(T0 + 120)[A.eni_id][2]
    assert skipped["log-status"] == "SKIPDATA" and "packets" not in skipped
    assert windows.close_due(T0 + 180)[A.eni_id][2][0]["log-status"] == "NODATA"  # lost ends with its window


def test_forced_close_and_unwatched_enis() -> None:
    windows = FlowWindows()
    windows.watch([A, B], T0)
    windows.add_conntrack(curl(), T0 + 5)
    closed = windows.close_due(T0 + 7, force=True, only=[A.eni_id])
    assert set(closed) == {A.eni_id} and closed[A.eni_id][1] == int(T0) + 7
    windows.watch([B], T0 + 8)
    assert set(windows.enis) == {B.eni_id}
    windows.add_conntrack(curl(), T0 + 9)  # A is not watched any more: nothing recorded
    assert windows.close_due(T0 + 60)[B.eni_id][2][0]["log-status"] == "NODATA"


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 10**7)), min_size=1, max_size=30))
def test_totals_are_the_sum_of_deltas(deltas: list[tuple[int, int]]) -> None:
    windows = FlowWindows()
    windows.watch([A], T0)
    for index, (packets, octets) in enumerate(deltas):
        windows.add_conntrack(
            CtDelta(17, HOST, A.ip, 40000, 53, A.ip, HOST, 53, 40000, packets, octets, 0, 0), T0 + index
        )
    records = windows.close_due(T0 + 60)[A.eni_id][2]
    inbound = [r for r in records if r.get("flow-direction") == "ingress"]
    expected = sum(p for p, _ in deltas if p > 0)
    if expected == 0:
        assert records[0]["log-status"] == "NODATA"
    else:
        assert inbound[0]["packets"] == expected
        assert inbound[0]["bytes"] == sum(o for p, o in deltas if p > 0)


def test_windows_are_aligned() -> None:
    assert window_start(T0 + 59.9, 60) == T0 and window_start(T0 + 60, 60) == T0 + 60


# ---- the compiled table ------------------------------------------------------------------------------


def _model(log_a: bool) -> FirewallModel:
    web = GroupRules("sg-web", (), ())  # admits nothing, sends nothing
    return FirewallModel(
        table="taskvpc",
        enis=(
            EniPort(A.eni_id, "tvpca1", A.ip, "02:00:00:00:00:01", ("sg-web",), log_a),
            EniPort(B.eni_id, "tvpcb2", B.ip, "02:00:00:00:00:02", ("sg-web",)),
        ),
        groups={"sg-web": web},
        host_port="tvpc-host",
    )


def test_reject_log_rule_only_for_watched_enis_and_verdicts_unchanged() -> None:
    logged, plain = compile_ir(_model(True)), compile_ir(_model(False))
    text = render(logged)
    assert f'log prefix "{A.eni_id} in" group 7 snaplen 64' in text
    assert f'log prefix "{A.eni_id} out" group 7 snaplen 64' in text
    assert "limit rate 100/second burst 200 packets" in text
    assert B.eni_id + " in" not in text and "log" not in render(plain)
    for chain in (in_chain(A.eni_id), out_chain(A.eni_id)):
        rules = logged.chain(chain).rules
        assert rules[-2].log is not None and rules[-1].verdict == "drop"  # log, then the same drop
    packet = Packet("tvpc-host", "tvpca1", HOST, A.ip, "02:00:00:00:00:99", 6, dport=22)
    assert evaluate_ir(logged, packet) is False and evaluate_ir(plain, packet) is False


def test_turning_reject_logging_on_reloads_only_that_enis_chains() -> None:
    update = render_update(_model(False), _model(True))
    assert out_chain(A.eni_id) in update and "log prefix" in update
    assert out_chain(B.eni_id) not in update
    assert render_update(_model(True), _model(True)) == ""


# ---- the wire ----------------------------------------------------------------------------------------


def test_watch_union_and_section_round_trip() -> None:
    watch = watch_for("eni-1", ["REJECT", "ALL"], [600, 60], [("srcaddr", "action"), ("action", "bytes")])
    assert watch == FlowLogWatch("eni-1", 60, frozenset({"ACCEPT", "REJECT"}), ("srcaddr", "action", "bytes"))
    state = DesiredState.of(1, flowLogs=(watch,))
    assert DesiredState.from_wire(state.to_wire())[FLOW_LOGS] == (watch,)
    assert DesiredState.from_wire({"generation": 1, "flowLogs": [{"eniId": "x"}]})[FLOW_LOGS] == ()


def test_records_round_trip() -> None:
    entry = FlowRecords("eni-1", 60, 120, ({"packets": 3, "srcaddr": "10.0.0.1", "tcp-flags": None},))
    assert records_from_wire({"flowRecords": [entry.to_wire()]}) == (entry,)
    assert records_from_wire({"tasks": []}) == ()


# ---- the netlink parsers -----------------------------------------------------------------------------


def _nla(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _tuple(src: str, dst: str, sport: int, dport: int) -> bytes:
    ip = _nla(1, _nla(1, socket.inet_aton(src)) + _nla(2, socket.inet_aton(dst)))
    proto = _nla(
        2, _nla(1, bytes([6])) + _nla(2, struct.pack("!H", sport)) + _nla(3, struct.pack("!H", dport))
    )
    return ip + proto


def test_conntrack_entry_parse() -> None:
    payload = (
        _nla(1 | 0x8000, _tuple(HOST, A.ip, 40000, 80))
        + _nla(2 | 0x8000, _tuple(A.ip, HOST, 80, 40000))
        + _nla(9 | 0x8000, _nla(1, struct.pack("!Q", 6)) + _nla(2, struct.pack("!Q", 420)))
        + _nla(10 | 0x8000, _nla(1, struct.pack("!Q", 5)) + _nla(2, struct.pack("!Q", 1200)))
        + _nla(20 | 0x8000, _nla(1, struct.pack("!Q", int((T0 + 1) * 1e9))))
    )
    delta = ctflows.parse_entry(payload)
    assert delta == curl()


def test_nflog_packet_parse() -> None:
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 60, 1, 0, 64, 6, 0, socket.inet_aton(B.ip), socket.inet_aton(A.ip)
    )
    tcp = struct.pack("!HHIIBBHHH", 41000, 22, 1, 0, 0xA0, 0x02, 64240, 0, 0)
    payload = _nla(10, f"{A.eni_id} in".encode() + b"\0") + _nla(9, ip + tcp)
    drop = nflog.parse_packet(payload, T0)
    assert drop == Drop(A.eni_id, "in", 6, B.ip, A.ip, 41000, 22, 60, 0x02, T0)
    assert nflog.parse_packet(_nla(10, b"other\0") + _nla(9, ip + tcp), T0) is None


def test_the_agent_watches_only_covered_enis_of_its_tasks() -> None:
    from taskvpc.agent.flowlogs import watched
    from taskvpc.agentapi.answer import Instance
    from taskvpc.agentapi.network import Eni
    from taskvpc.agentapi.tasks import DesiredContainer, DesiredStatus, DesiredTask

    def task(n: int) -> DesiredTask:
        arn = f"arn:aws:ecs:us-east-1:1:task/default/{n:032x}"
        eni = Eni(
            "att", f"eni-{n:017x}", "0e:00:00:00:00:01", f"10.0.0.{n}", 24, "10.0.0.1", "subnet-1", "vpc-1"
        )
        return DesiredTask(arn, DesiredStatus.RUNNING, (DesiredContainer("app"),), eni=eni)

    covered, other = task(5), task(6)
    assert covered.eni is not None
    state = DesiredState.of(
        3,
        instance=Instance("ACTIVE", "arn:aws:ecs:us-east-1:1:container-instance/default/ci1", "default"),
        tasks=(covered, other),
        flowLogs=(FlowLogWatch(covered.eni.network_interface_id, 600, frozenset({"REJECT"})),),
    )
    [target] = watched(state)["vpc-1"]
    assert (target.eni.ip, target.eni.interval, target.eni.accept, target.eni.reject) == (
        "10.0.0.5",
        600,
        False,
        True,
    )
    assert (
        target.eni.fields["ecs-task-arn"] == covered.arn
        and target.eni.fields["ecs-cluster-name"] == "default"
    )
    assert target.eni.fields["ecs-container-instance-id"] == "ci1"
    assert watched(state, override=2.0)["vpc-1"][0].eni.interval == 2.0


def test_wire_counts_undo_segmentation_offloads() -> None:
    from taskvpc.netmodel.flow_collect import wire_counts

    # measured here: 200,000,000 bytes sent with GSO on; 3,107 sk_buffs of 200,161,572 bytes at the router,
    # against 138,210 packets of 207,186,928 bytes with offloads off (the wire's count)
    packets, octets = wire_counts(6, 3107, 200_161_572)
    assert abs(packets - 138_210) / 138_210 < 0.001 and abs(octets - 207_186_928) / 207_186_928 < 0.0001
    assert wire_counts(6, 138_210, 207_186_928) == (138_210, 207_186_928)  # already wire-sized: unchanged
    assert wire_counts(17, 3, 9000) == (3, 9000) and wire_counts(6, 0, 0) == (0, 0)


@given(st.lists(st.integers(0, 1448), min_size=1, max_size=200))
def test_wire_sized_tcp_counts_are_left_alone(payloads: list[int]) -> None:
    from taskvpc.netmodel.flow_collect import wire_counts

    packets, octets = len(payloads), sum(p + 52 for p in payloads)
    assert wire_counts(6, packets, octets) == (packets, octets)
