"""The reachability matrix's pure view model: the rules' verdict per cell (the reference evaluator's, with
the deciding rules), the probe beside it, and the flag when they disagree."""

from __future__ import annotations

from typing import Any

from hypothesis import given, strategies as st

from taskvpc.console import reachability_views as rv

VPC_TASK = "arn:aws:ecs:us-east-1:123456789012:task/default/"


def _task(n: int, eni: str, ip: str, status: str = "RUNNING") -> dict[str, Any]:
    return {
        "taskArn": f"{VPC_TASK}{n:032x}",
        "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/default",
        "containerInstanceArn": "arn:aws:ecs:us-east-1:123456789012:container-instance/default/" + "a" * 32,
        "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1",
        "lastStatus": status,
        "attachments": [
            {
                "type": "ElasticNetworkInterface",
                "status": "ATTACHED",
                "details": [
                    {"name": "networkInterfaceId", "value": eni},
                    {"name": "privateIPv4Address", "value": ip},
                ],
            }
        ],
    }


def _eni(eni: str, ip: str, *groups: str) -> dict[str, Any]:
    return {
        "NetworkInterfaceId": eni,
        "PrivateIpAddress": ip,
        "PrivateIpAddresses": [{"PrivateIpAddress": ip, "Primary": True}],
        "Groups": [{"GroupId": g} for g in groups],
    }


ALL_OUT = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
GROUPS = [
    {  # a admits port 80 from members of b only
        "GroupId": "sg-a",
        "IpPermissions": [
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": "sg-b"}]}
        ],
        "IpPermissionsEgress": ALL_OUT,
    },
    {"GroupId": "sg-b", "IpPermissions": [], "IpPermissionsEgress": ALL_OUT},  # b admits nothing
]
TD = {"containerDefinitions": [{"portMappings": [{"containerPort": 80, "protocol": "tcp"}]}]}
PORTS = {"arn:aws:ecs:us-east-1:123456789012:task-definition/web:1": rv.tcp_ports(TD)}


def _setup() -> tuple[list[rv.Endpoint], list[dict[str, Any]]]:
    enis = [_eni("eni-a", "172.31.0.10", "sg-a"), _eni("eni-b", "172.31.0.11", "sg-b")]
    tasks = [
        _task(1, "eni-a", "172.31.0.10"),
        _task(2, "eni-b", "172.31.0.11"),
        _task(3, "eni-x", "10.0.0.1"),
    ]
    return rv.endpoints(tasks, enis, PORTS), enis


def _cell(m: rv.Matrix, source: str, destination: str) -> rv.Cell:
    [cell] = [c for c in m.cells if c.source.eni_id == source and c.destination.eni_id == destination]
    return cell


def test_tcp_ports_keep_tcp_mappings_once_in_order() -> None:
    td = {
        "containerDefinitions": [
            {"portMappings": [{"containerPort": 8080}, {"containerPort": 53, "protocol": "udp"}]},
            {"portMappings": [{"containerPort": 80, "protocol": "tcp"}, {"containerPort": 8080}]},
            {"name": "sidecar"},
        ]
    }
    assert rv.tcp_ports(td) == (8080, 80)


def test_endpoints_are_the_vpcs_running_task_enis_ordered_by_group() -> None:
    endpoints, _ = _setup()
    assert [(e.eni_id, e.groups, e.ports) for e in endpoints] == [
        ("eni-a", ("sg-a",), (80,)),
        ("eni-b", ("sg-b",), (80,)),
    ]  # task 3's ENI is not the VPC's
    assert endpoints[0].instance_id == "a" * 32
    assert endpoints[0].href == f"/clusters/default/tasks/{1:032x}"


def test_rules_verdict_with_the_deciding_rules_and_self_cells() -> None:
    endpoints, enis = _setup()
    m = rv.matrix(endpoints, enis, rv.group_rules(GROUPS), lambda *_: None)
    assert len(m.columns) == 2 and len(m.rows) == 2
    b_to_a = _cell(m, "eni-b", "eni-a")
    assert b_to_a.allowed and b_to_a.state == "allowed"
    assert b_to_a.why == "sg-b: all to 0.0.0.0/0; sg-a: tcp 80 from sg-b"
    a_to_b = _cell(m, "eni-a", "eni-b")
    assert not a_to_b.allowed and a_to_b.state == "denied"
    assert "eni-b has no ingress rule" in a_to_b.why
    own = _cell(m, "eni-a", "eni-a")
    assert own.self_traffic and own.allowed and own.probe is None
    assert [c.destination.eni_id for c in m.to_probe()] == ["eni-b", "eni-a"]
    assert (m.probed, m.disagreements) == (0, 0)


def test_probes_agree_or_are_flagged() -> None:
    endpoints, enis = _setup()
    seen = {
        (endpoints[1].task_arn, "172.31.0.10", 80): rv.Probed(
            "connected", 0.4, 1.0
        ),  # b -> a: as the rules say
        (endpoints[0].task_arn, "172.31.0.11", 80): rv.Probed("refused", 0.3, 1.0),  # a -> b: got through!
    }
    m = rv.matrix(endpoints, enis, rv.group_rules(GROUPS), lambda *key: seen.get(key))
    assert _cell(m, "eni-b", "eni-a").reached is True and not _cell(m, "eni-b", "eni-a").disagrees
    flagged = _cell(m, "eni-a", "eni-b")
    assert flagged.reached is True and flagged.disagrees and flagged.state == "mismatch"
    assert (m.probed, m.disagreements) == (2, 1)


def test_a_timeout_agrees_with_denied_and_an_error_says_nothing() -> None:
    endpoints, enis = _setup()
    for outcome, reached in (("timeout", False), ("error", None)):
        m = rv.matrix(
            endpoints, enis, rv.group_rules(GROUPS), lambda *_, o=outcome: rv.Probed(o, 1000.0, 0.0)
        )
        cell = _cell(m, "eni-a", "eni-b")
        assert cell.reached is reached and not cell.disagrees


def test_unreadable_permissions_add_no_rule() -> None:
    groups = rv.group_rules(
        [{"GroupId": "sg-z", "IpPermissions": [{"IpProtocol": "bogus"}], "IpPermissionsEgress": ALL_OUT}]
    )
    assert groups["sg-z"].ingress == () and len(groups["sg-z"].egress) == 1


@given(st.sets(st.integers(min_value=1, max_value=65535), min_size=1, max_size=4), st.booleans())
def test_every_cell_is_one_of_three_states(ports: set[int], open_all: bool) -> None:
    """Property: a cell is allowed iff the rules allow it; the matrix is square in tasks x ports."""
    enis = [_eni("eni-a", "172.31.0.10", "sg-o"), _eni("eni-b", "172.31.0.11", "sg-o")]
    ingress = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "172.31.0.0/16"}]}] if open_all else []
    groups = rv.group_rules([{"GroupId": "sg-o", "IpPermissions": ingress, "IpPermissionsEgress": ALL_OUT}])
    td = {"containerDefinitions": [{"portMappings": [{"containerPort": p} for p in sorted(ports)]}]}
    endpoints = rv.endpoints(
        [_task(1, "eni-a", "172.31.0.10"), _task(2, "eni-b", "172.31.0.11")],
        enis,
        {"arn:aws:ecs:us-east-1:123456789012:task-definition/web:1": rv.tcp_ports(td)},
    )
    m = rv.matrix(endpoints, enis, groups, lambda *_: None)
    assert len(m.cells) == 2 * 2 * len(ports)
    for cell in m.cells:
        assert cell.state in ("allowed", "denied")
        assert cell.allowed == (open_all or cell.self_traffic)
