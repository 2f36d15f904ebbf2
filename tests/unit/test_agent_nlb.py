"""The NLB data plane's pure part: listeners and health verdicts -> the nft batch (agent/nlb.py)."""

from __future__ import annotations

from taskvpc.agent import nlb
from taskvpc.agentapi.loadbalancers import DesiredLoadBalancer, HealthCheck, LbTarget, LbTargetGroup
from taskvpc.agentapi.network import Eni, Vpc
from taskvpc.netmodel import elb_nft

TG = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/tcp/00000000000000aa"
TG2 = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/tcp2/00000000000000bb"


def _eni(ip: str, n: int) -> Eni:
    return Eni(
        attachment_id=f"att-{n}",
        network_interface_id=f"eni-{n:017x}",
        mac_address=f"02:00:00:00:00:{n:02x}",
        private_ipv4_address=ip,
        prefix_length=24,
        gateway="10.0.1.1",
        subnet_id="subnet-1",
        vpc_id="vpc-1",
    )


def _lb(listeners: list[dict[str, object]], groups: list[LbTargetGroup]) -> DesiredLoadBalancer:
    return DesiredLoadBalancer(
        arn="arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/net/tcp/0123456789abcdef",
        name="tcp",
        type="network",
        vpc=Vpc("vpc-1"),
        enis=(_eni("10.0.1.9", 1), _eni("10.0.2.9", 2)),
        listeners=tuple(listeners),
        target_groups=tuple(groups),
    )


def _group(arn: str, *targets: LbTarget) -> LbTargetGroup:
    return LbTargetGroup(arn, "TCP", 80, HealthCheck(protocol="TCP"), targets)


def test_only_healthy_targets_take_new_flows_and_draining_never() -> None:
    group = _group(
        TG,
        LbTarget("10.0.1.5", 80, "healthy"),
        LbTarget("10.0.1.6", 80, "healthy"),
        LbTarget("10.0.1.7", 80, "healthy"),
        LbTarget("10.0.1.8", 80, "draining"),
    )
    verdicts = {"10.0.1.5": "healthy", "10.0.1.6": "unhealthy", "10.0.1.7": "initial", "10.0.1.8": "healthy"}
    lb = _lb(
        [{"Port": 80, "Protocol": "TCP", "DefaultActions": [{"Type": "forward", "TargetGroupArn": TG}]}],
        [group],
    )
    [listener] = nlb.listeners_of(lb, lambda tg, ip, port: verdicts[ip])
    assert listener.targets == (elb_nft.Backend("10.0.1.5", 80),)
    batch = nlb.batch_for(lb, lambda tg, ip, port: verdicts[ip])
    # Both ENI addresses serve the listener, each SNATing to itself.
    for address in ("10.0.1.9", "10.0.2.9"):
        assert (
            f"ip daddr {address} tcp dport 80 dnat ip to numgen random mod 1 map {{ 0 : 10.0.1.5 . 80 }}"
            in batch
        )
        assert f"snat ip to {address}" in batch
    assert batch.startswith(f"table ip {elb_nft.table_name('0123456789abcdef')}\ndelete table")


def test_all_unhealthy_fails_open_and_weights_follow_forward_config() -> None:
    a = _group(TG, LbTarget("10.0.1.5", 80, "initial"), LbTarget("10.0.1.6", 80, "initial"))
    b = _group(TG2, LbTarget("10.0.1.7", 81, "initial"))
    forward = {
        "Type": "forward",
        "ForwardConfig": {
            "TargetGroups": [{"TargetGroupArn": TG, "Weight": 3}, {"TargetGroupArn": TG2, "Weight": 1}]
        },
    }
    lb = _lb([{"Port": 53, "Protocol": "TCP_UDP", "DefaultActions": [forward]}], [a, b])
    [listener] = nlb.listeners_of(lb, lambda tg, ip, port: "unhealthy")
    assert listener.targets == (
        elb_nft.Backend("10.0.1.5", 80, 3),
        elb_nft.Backend("10.0.1.6", 80, 3),
        elb_nft.Backend("10.0.1.7", 81, 1),
    )


def test_tls_and_unknown_listeners_are_not_compiled() -> None:
    lb = _lb([{"Port": 443, "Protocol": "TLS", "DefaultActions": []}], [])
    assert nlb.listeners_of(lb, lambda tg, ip, port: "healthy") == []


def _terminating(arn: str, enabled: bool, *targets: LbTarget) -> LbTargetGroup:
    attributes = ((nlb.TERMINATION, "true" if enabled else "false"),)
    return LbTargetGroup(arn, "TCP", 80, HealthCheck(protocol="TCP"), targets, attributes)


def test_flows_are_terminated_only_when_a_draining_target_leaves_a_terminating_group() -> None:
    listener = {"Port": 80, "Protocol": "TCP", "DefaultActions": [{"Type": "forward", "TargetGroupArn": TG}]}
    live, gone, shared = (LbTarget("10.0.1.5", 80, "healthy"), LbTarget("10.0.1.6", 80, "draining"),
                          LbTarget("10.0.1.7", 80, "draining"))  # fmt: skip
    before = _lb(
        [listener],
        [_terminating(TG, True, live, gone, shared), _group(TG2, LbTarget("10.0.1.7", 81, "healthy"))],
    )
    after = _lb([listener], [_terminating(TG, True, live), _group(TG2, LbTarget("10.0.1.7", 81, "healthy"))])
    # 10.0.1.7 still serves another group: its flows are forgotten by address, so they are kept.
    assert nlb.terminated(before, after) == ["10.0.1.6"]
    assert nlb.terminated(before, before) == []  # still draining: the delay has not ended
    disabled = _lb([listener], [_terminating(TG, False, live)])
    assert nlb.terminated(before, disabled) == []
    # A target dropped while it was still serving (not drained) is no deregistration delay ending.
    assert (
        nlb.terminated(
            _lb([listener], [_terminating(TG, True, live)]), _lb([listener], [_terminating(TG, True)])
        )
        == []
    )


def test_several_enis_mark_their_flows_single_one_does_not() -> None:
    listener = {"Port": 80, "Protocol": "TCP", "DefaultActions": [{"Type": "forward", "TargetGroupArn": TG}]}
    lb = _lb([listener], [_group(TG, LbTarget("10.0.1.5", 80, "healthy"))])
    batch = nlb.batch_for(lb, lambda tg, ip, port: "healthy")
    assert '"eth0" : 100, "eth1" : 101' in batch
    single = DesiredLoadBalancer(
        lb.arn, lb.name, lb.type, lb.vpc, lb.enis[:1], lb.listeners, (), lb.target_groups
    )
    assert "ct mark" not in nlb.batch_for(single, lambda tg, ip, port: "healthy")


def test_drain_ends_are_timed_for_terminating_groups_only() -> None:
    draining = LbTarget("10.0.1.6", 80, "draining", 2.5)
    listener = {"Port": 80, "Protocol": "TCP", "DefaultActions": [{"Type": "forward", "TargetGroupArn": TG}]}
    assert nlb.drain_ends(_lb([listener], [_terminating(TG, True, draining)])) == {"10.0.1.6": 2.5}
    assert nlb.drain_ends(_lb([listener], [_terminating(TG, False, draining)])) == {}
    still = _terminating(TG2, False, LbTarget("10.0.1.6", 81, "healthy"))
    assert nlb.drain_ends(_lb([listener], [_terminating(TG, True, draining), still])) == {}


def _preserving(arn: str, protocol: str, preserve: str | None, *targets: LbTarget) -> LbTargetGroup:
    attributes = () if preserve is None else ((nlb.PRESERVE, preserve),)
    return LbTargetGroup(arn, protocol, 80, HealthCheck(protocol="TCP"), targets, attributes)


def _forward(port: int, protocol: str, *arns: str) -> dict[str, object]:
    groups = [{"TargetGroupArn": arn, "Weight": 1} for arn in arns]
    return {
        "Port": port,
        "Protocol": protocol,
        "DefaultActions": [{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}],
    }


def test_preserving_listeners_go_to_the_router_table_without_snat() -> None:
    target = LbTarget("10.0.1.5", 80, "healthy")
    lb = _lb(
        [_forward(80, "TCP", TG), _forward(81, "TCP", TG2)],
        [_preserving(TG, "TCP", "true", target), _preserving(TG2, "TCP", "false", target)],
    )
    healthy = lambda tg, ip, port: "healthy"  # noqa: E731
    in_lb, in_router = nlb.batch_for(lb, healthy), nlb.router_batch_for(lb, healthy)
    # The LB namespace keeps the SNATed listener only; the router DNATs the preserving one, no SNAT.
    assert "tcp dport 81 dnat" in in_lb and "tcp dport 80 dnat" not in in_lb
    assert "snat ip to 10.0.1.9" in in_lb
    for address in ("10.0.1.9", "10.0.2.9"):
        assert (
            f"ip daddr {address} tcp dport 80 dnat ip to numgen random mod 1 map {{ 0 : 10.0.1.5 . 80 }}"
            in in_router
        )
    assert "tcp dport 81" not in in_router
    assert "snat" not in in_router and "ct mark" not in in_router  # the router routes every flow itself
    assert in_router.startswith(f"table ip {elb_nft.table_name('0123456789abcdef')}\ndelete table")


def test_without_preserving_listeners_the_router_table_is_deleted() -> None:
    lb = _lb(
        [_forward(80, "TCP", TG)], [_preserving(TG, "TCP", "false", LbTarget("10.0.1.5", 80, "healthy"))]
    )
    assert nlb.router_batch_for(lb, lambda tg, ip, port: "healthy") == elb_nft.delete_batch(
        "0123456789abcdef"
    )


def test_preserve_defaults_per_protocol_and_needs_every_forwarded_group() -> None:
    # ELB's defaults for ip targets when the answer carries no attribute: UDP and TCP_UDP preserve, TCP not.
    assert nlb.preserves_client_ip(_preserving(TG, "UDP", None))
    assert nlb.preserves_client_ip(_preserving(TG, "TCP_UDP", None))
    assert not nlb.preserves_client_ip(_preserving(TG, "TCP", None))
    assert not nlb.preserves_client_ip(_preserving(TG, "UDP", "false"))
    udp = _lb([_forward(53, "UDP", TG)], [_preserving(TG, "UDP", None, LbTarget("10.0.1.5", 53, "healthy"))])
    [listener] = nlb.listeners_of(udp, lambda tg, ip, port: "healthy")
    assert listener.preserve_client_ip
    assert "udp dport 53 dnat" in nlb.router_batch_for(udp, lambda tg, ip, port: "healthy")
    # Weighted over a preserving and a non-preserving group: one table must take the listener, the SNAT one.
    mixed = _lb(
        [_forward(80, "TCP", TG, TG2)],
        [_preserving(TG, "TCP", "true"), _preserving(TG2, "TCP", "false")],
    )
    assert [li.preserve_client_ip for li in nlb.listeners_of(mixed, lambda tg, ip, port: "healthy")] == [
        False
    ]
