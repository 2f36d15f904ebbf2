"""VPCs across hosts: the ``overlay`` section, VNIs, the VXLAN entries and underlay guard the agent plans,
and security groups split over two hosts agreeing with the reference evaluator (one host's egress rules,
the other's ingress rules, a group reference matching members on both)."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from taskvpc.agent import overlay
from taskvpc.agent.drivers.vxlan import SeenDevice, SeenOverlay
from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.overlay import OVERLAY, OverlayVpc, RemoteMember, assign_vnis, vtep_mac
from taskvpc.netmodel.evaluator import evaluate
from taskvpc.netmodel.firewall_ir import FirewallModel, RemotePeer, compile_ir, evaluate_ir
from taskvpc.netmodel.nft_update import render_update
from tests.unit.test_nft_compile import HOST_IP, HOST_PORT, flows, models, packet_for, ref_enis

VX = "tvpc-vx"
H1, H2 = "169.254.192.10", "169.254.192.20"


def test_section_round_trip_and_junk() -> None:
    vpc = OverlayVpc("vpc-1", 7, (RemoteMember("eni-1", "10.0.1.5", H2, ("sg-a",)),))
    state = DesiredState.of(3, overlay=(vpc,))
    back = DesiredState.from_wire(state.to_wire())
    assert back[OVERLAY] == (vpc,)
    junk = {
        "generation": 1,
        "overlay": [
            {"vpcId": "vpc-2", "vni": 1 << 24, "members": []},  # VNI out of range
            {"vpcId": "vpc-3", "vni": 9, "members": [{"eniId": "eni-x", "ip": "nope", "host": H1}, "x"]},
        ],
    }
    assert DesiredState.from_wire(junk)[OVERLAY] == (OverlayVpc("vpc-3", 9, ()),)
    assert DesiredState.from_wire({"generation": 1})[OVERLAY] == ()  # an older control plane


def test_vtep_mac_is_unicast_and_local() -> None:
    mac = vtep_mac("169.254.192.10")
    assert mac == "02:76:a9:fe:c0:0a"
    assert int(mac[:2], 16) & 1 == 0 and int(mac[:2], 16) & 2


def test_vnis_unique_and_stable() -> None:
    ids = ["vpc-00000000000000001", "vpc-01000000000000001", "vpc-0abc", "vpc-1234567890abcdef0"]
    vnis = assign_vnis(ids)
    assert len(set(vnis.values())) == len(ids) and all(1 <= v < 1 << 24 for v in vnis.values())
    assert assign_vnis(list(reversed(ids))) == vnis
    # ids whose digits collide modulo the VNI space still get distinct VNIs, the smaller id first
    a, b = "vpc-" + format(5, "017x"), "vpc-" + format(5 + (1 << 24) - 1, "017x")
    both = assign_vnis([b, a])
    assert both[a] != both[b] and both[a] == assign_vnis([a])[a]


def test_entries_skip_own_host_and_local_addresses() -> None:
    vpc = OverlayVpc(
        "vpc-1",
        5,
        (
            RemoteMember("eni-1", "10.0.1.5", H2),
            RemoteMember("eni-2", "10.0.2.6", H2),
            RemoteMember("eni-3", "10.0.1.7", H1),  # ours: never through the overlay
            RemoteMember("eni-4", "10.0.1.8", "169.254.192.30"),
        ),
    )
    want = overlay.entries(vpc, H1, local_ips={"10.0.1.8"})  # a stale member holding a local address
    assert want.routes == {"10.0.1.5", "10.0.2.6"}
    assert want.neighbours == {"10.0.1.5": vtep_mac(H2), "10.0.2.6": vtep_mac(H2)}
    assert want.fdb == {vtep_mac(H2): H2}


def test_batch_lines_converge() -> None:
    vpc = OverlayVpc("vpc-1", 5, (RemoteMember("eni-1", "10.0.1.5", H2),))
    want = overlay.entries(vpc, H1)
    device = SeenDevice(5, H1, vtep_mac(H1), 1500, True, False)
    seen = SeenOverlay(
        device,
        frozenset({"10.0.1.9"}),
        {"10.0.1.9": vtep_mac(H2), "10.0.1.5": "02:76:00:00:00:01"},
        {"02:76:00:00:00:01": "169.254.192.99"},
    )
    ip_lines, fdb = overlay.batch_lines(VX, want, seen)
    assert ip_lines == [
        f"route replace 10.0.1.5/32 dev {VX}",
        f"neigh replace 10.0.1.5 lladdr {vtep_mac(H2)} dev {VX} nud permanent",
        f"route del 10.0.1.9/32 dev {VX}",
        f"neigh del 10.0.1.9 dev {VX}",
    ]
    assert fdb == [
        f"fdb replace {vtep_mac(H2)} dev {VX} dst {H2} self permanent",
        f"fdb del 02:76:00:00:00:01 dev {VX} self",
    ]
    done = SeenOverlay(device, want.routes, dict(want.neighbours), dict(want.fdb))
    assert overlay.batch_lines(VX, want, done) == ([], [])
    assert overlay.device_matches(done, 5, H1, 1500)
    assert not overlay.device_matches(done, 6, H1, 1500)  # another VNI: the device is made again
    assert not overlay.device_matches(done, 5, H1, 1450)


def test_guard_admits_only_owned_sources() -> None:
    vpcs = [
        OverlayVpc("vpc-1", 5, (RemoteMember("e1", "10.0.1.5", H2), RemoteMember("e2", "10.0.1.6", H2))),
        OverlayVpc("vpc-2", 9, (RemoteMember("e3", "10.0.1.5", "169.254.192.30"),)),
    ]
    text = overlay.guard_text("tvpc_overlay", vpcs, H1)
    assert (
        f"ip saddr {H2} @th,96,24 5 @th,224,16 0x0800 @th,336,32 {{ 0x0a000105, 0x0a000106 }} accept" in text
    )
    assert "ip saddr 169.254.192.30 @th,96,24 9 @th,224,16 0x0800 @th,336,32 { 0x0a000105 } accept" in text
    assert text.rstrip().splitlines()[-3].strip() == "udp dport 4789 drop"
    assert text.startswith("table inet tvpc_overlay {}\ndelete table inet tvpc_overlay\n")


def test_overlay_port_change_reloads_table_and_members_update_sets() -> None:
    model = FirewallModel("taskvpc", (), {}, HOST_PORT, HOST_IP)
    with_overlay = FirewallModel("taskvpc", (), {}, HOST_PORT, HOST_IP, overlay_port=VX)
    assert render_update(model, with_overlay).startswith(render_update(None, with_overlay)[:40])


# --------------------------------------------------------------------------------------------------
# Property: two hosts, each with its router's table, agree with one evaluator over all the ENIs


def _split(model: FirewallModel, on_first: list[bool]) -> tuple[FirewallModel, FirewallModel]:
    first = tuple(e for e, here in zip(model.enis, on_first, strict=True) if here)
    second = tuple(e for e, here in zip(model.enis, on_first, strict=True) if not here)

    def host(local: tuple, remote: tuple) -> FirewallModel:  # type: ignore[type-arg]
        peers = tuple(RemotePeer(e.ip, e.group_ids) for e in remote)
        return FirewallModel(
            "taskvpc", local, model.groups, HOST_PORT, HOST_IP, overlay_port=VX, remote=peers
        )

    return host(first, second), host(second, first)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_two_hosts_agree_with_evaluator(data: st.DataObject) -> None:
    model = data.draw(models())
    on_first = data.draw(st.lists(st.booleans(), min_size=len(model.enis), max_size=len(model.enis)))
    one, two = _split(model, on_first)
    rulesets = {True: compile_ir(one), False: compile_ir(two)}
    where = {e.ip: (here, e.port, e.mac) for e, here in zip(model.enis, on_first, strict=True)}
    enis = ref_enis(model)
    for _ in range(8):
        flow = data.draw(flows(model))
        expected = evaluate(flow, enis, model.groups).allowed
        if flow.src_ip == HOST_IP:
            here, oif, _ = where[flow.dst_ip]
            assert (
                evaluate_ir(rulesets[here], packet_for(flow, HOST_PORT, oif, "02:aa:00:00:00:01")) == expected
            )
            # the host never reaches the other host's tasks through the overlay
            assert not evaluate_ir(rulesets[not here], packet_for(flow, HOST_PORT, VX, "02:aa:00:00:00:01"))
            continue
        src_host, iif, mac = where[flow.src_ip]
        dst_host, oif, _ = where[flow.dst_ip]
        if src_host == dst_host:
            assert evaluate_ir(rulesets[src_host], packet_for(flow, iif, oif, mac)) == expected, flow
            continue
        sent = evaluate_ir(rulesets[src_host], packet_for(flow, iif, VX, mac))
        received = evaluate_ir(rulesets[dst_host], packet_for(flow, VX, oif, vtep_mac(H1)))
        assert (sent and received) == expected, (flow, sent, received)
        # nothing that arrives from the overlay is sent back into it
        assert not evaluate_ir(rulesets[dst_host], packet_for(flow, VX, VX, vtep_mac(H1)))


# --------------------------------------------------------------------------------------------------
# The runner, against a driver that records


class FakeDriver:
    def __init__(self) -> None:
        self.routers: dict[str, int] = {}
        self.devices: dict[str, SeenOverlay] = {}
        self.calls: list[tuple[str, ...]] = []
        self.guard = ""

    def router_id(self, router_ns: str) -> int | None:
        return self.routers.get(router_ns)

    def underlay_mtu(self, address: str) -> int | None:
        return 1550

    def observe(self, router_ns: str, device: str) -> SeenOverlay:
        return self.devices.get(router_ns, SeenOverlay(None))

    def create_device(
        self, router_ns: str, device: str, vni: int, local: str, mac: str, mtu: int, port: int
    ) -> None:
        self.calls.append(("create", router_ns, str(vni), str(mtu)))
        self.devices[router_ns] = SeenOverlay(SeenDevice(vni, local, mac, mtu, True, False))

    def remove_device(self, router_ns: str, device: str) -> bool:
        self.calls.append(("remove", router_ns))
        return self.devices.pop(router_ns, None) is not None

    def batch(self, router_ns: str, ip_lines: list[str], fdb_lines: list[str]) -> None:
        self.calls.append(("batch", router_ns, *ip_lines, *fdb_lines))

    def load_guard(self, text: str) -> None:
        self.guard = text


class FakeFirewall:
    def __init__(self) -> None:
        self.overlay: dict[str, tuple[str | None, tuple[RemotePeer, ...]]] = {}

    def set_overlay(self, vpc_id: str, port: str | None, remote: tuple[RemotePeer, ...]) -> None:
        self.overlay[vpc_id] = (port, remote)


def test_runner_follows_answers_and_routers() -> None:
    from taskvpc.agent.netplan import NetConfig, router_netns

    cfg = NetConfig(prefix="tvpc")
    driver, firewall = FakeDriver(), FakeFirewall()
    runner = overlay.Overlay(object(), cfg, H1, firewall, driver)  # type: ignore[arg-type]
    vpc = OverlayVpc("vpc-0123456789abcdef0", 5, (RemoteMember("eni-1", "10.0.1.5", H2, ("sg-a",)),))
    runner.submit(DesiredState.of(1, overlay=(vpc,)))
    runner.reconcile()
    assert firewall.overlay["vpc-0123456789abcdef0"] == (
        "tvpc-vx",
        (RemotePeer("10.0.1.5", ("sg-a",)),),
    )  # rules first
    assert driver.calls == [] and "@th,96,24 5 " in driver.guard  # no router yet: nothing to make
    router = router_netns(cfg, "vpc-0123456789abcdef0")
    driver.routers[router] = 100  # the first task of the VPC made its router
    runner.reconcile()
    assert driver.calls[0] == ("create", router, "5", "1500")
    assert driver.calls[1][:3] == ("batch", router, f"route replace 10.0.1.5/32 dev {VX}")
    driver.calls.clear()
    runner.reconcile()
    assert driver.calls == []  # nothing new: nothing done
    driver.routers[router] = 101  # the router was made again in between
    runner.reconcile()
    assert [c[0] for c in driver.calls] == ["batch"] and driver.devices  # device kept here (fake)
    driver.calls.clear()
    runner.submit(DesiredState.of(2, overlay=()))
    runner.reconcile()
    assert driver.calls == [("remove", router)]
    assert firewall.overlay["vpc-0123456789abcdef0"] == (None, ())
    assert "@th" not in driver.guard


def test_local_tasks_touch_the_device_only_when_they_hold_a_members_address() -> None:
    """A task starting here redoes nothing for the VXLAN device (the single host on the underlay, `up`'s
    local agent, starts many); one holding a remote member's address (a task moving) drops its route."""
    from types import SimpleNamespace

    from taskvpc.agent.netplan import NetConfig, ObservedNetwork, ObservedTask, router_netns

    cfg, vpc_id = NetConfig(prefix="tvpc"), "vpc-0123456789abcdef0"
    network = SimpleNamespace(known=ObservedNetwork())
    driver = FakeDriver()
    runner = overlay.Overlay(network, cfg, H1, None, driver)
    router = router_netns(cfg, vpc_id)
    driver.routers[router] = 7
    runner.submit(
        DesiredState.of(1, overlay=(OverlayVpc(vpc_id, 5, (RemoteMember("eni-1", "10.0.1.5", H2),)),))
    )
    runner.reconcile()
    assert [c[0] for c in driver.calls] == ["create", "batch"]

    def local(*ips: str) -> ObservedNetwork:
        return ObservedNetwork(
            tasks={
                ip: ObservedTask(ip, "ns-" + ip, addrs=frozenset({ip + "/24"}), vpc_id=vpc_id) for ip in ips
            }
        )

    driver.calls.clear()
    network.known = local("10.0.1.9", "10.0.1.10")
    runner.reconcile()
    assert driver.calls == []  # nothing of the overlay changed
    network.known = local("10.0.1.9", "10.0.1.5")
    driver.devices[router] = SeenOverlay(
        SeenDevice(5, H1, vtep_mac(H1), 1500, True, False),
        frozenset({"10.0.1.5"}),
        {"10.0.1.5": vtep_mac(H2)},
    )
    runner.reconcile()
    assert driver.calls == [
        ("batch", router, f"route del 10.0.1.5/32 dev {VX}", f"neigh del 10.0.1.5 dev {VX}")
    ]


def test_table_state_remote_members_incremental_equals_whole() -> None:
    from taskvpc.netmodel.evaluator import GroupRules
    from taskvpc.netmodel.firewall_ir import EniPort, group_members
    from taskvpc.netmodel.nft_eni import TableState
    from taskvpc.netmodel.security_groups import Rule

    web = GroupRules("sg-web", (Rule("ingress", "tcp", 80, 80, group_id="sg-app"),), ())
    state = TableState("taskvpc", HOST_PORT, HOST_IP, rules={"sg-web": web})
    state.overlay_port = VX
    state.whole()
    batch = state.add_eni(EniPort("eni-1", "tvpc1", "10.0.1.10", "02:00:00:00:00:01", ("sg-web",)))
    assert "g_sg_app" in batch  # the referenced group's set exists, empty so far
    first = (RemotePeer("10.0.2.20", ("sg-app",)), RemotePeer("10.0.2.21", ("sg-other",)))
    assert state.set_remote(first).strip() == "add element inet taskvpc g_sg_app { 10.0.2.20 }"
    second = (RemotePeer("10.0.2.22", ("sg-app",)),)
    lines = state.set_remote(second).splitlines()
    assert "add element inet taskvpc g_sg_app { 10.0.2.22 }" in lines
    assert "delete element inet taskvpc g_sg_app { 10.0.2.20 }" in lines
    assert state.set_remote(second) == ""
    assert state.members == {g: set(ips) for g, ips in group_members(state.model()).items()}
    assert 'iifname "tvpc-vx" goto to_task' in state.whole()
