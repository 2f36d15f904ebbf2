"""The VPC traffic graph's view models: which log groups to read, records parsed back with their format,
addresses mapped to task ENIs, edges summed, and the SVG layout - without a server."""

from __future__ import annotations

from typing import Any

from hypothesis import given, strategies as st

from taskvpc.console import traffic_views as tv
from taskvpc.netmodel import flow_logs as fl

VPC = "vpc-0a"
TASK_A = "0123456789abcdef0123456789abcdef"
TASK_B = "fedcba9876543210fedcba9876543210"
CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/prod"


def _task(task_id: str, eni: str) -> dict[str, Any]:
    return {
        "taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/prod/{task_id}",
        "clusterArn": CLUSTER,
        "attachments": [
            {
                "type": "ElasticNetworkInterface",
                "details": [{"name": "networkInterfaceId", "value": eni}],
            }
        ],
    }


ENIS = [
    {"NetworkInterfaceId": "eni-a", "PrivateIpAddress": "10.0.1.10"},
    {"NetworkInterfaceId": "eni-b", "PrivateIpAddress": "10.0.1.11"},
    {"NetworkInterfaceId": "eni-h", "PrivateIpAddress": "10.0.1.12", "Description": "by hand"},
    {"NetworkInterfaceId": "eni-l1", "PrivateIpAddress": "10.0.1.20", "Description": "ELB app/web/0123abcd"},
    {"NetworkInterfaceId": "eni-l2", "PrivateIpAddress": "10.0.2.20", "Description": "ELB app/web/0123abcd"},
]
TASKS = [_task(TASK_A, "eni-a"), _task(TASK_B, "eni-b")]
ADDRESSES = tv.address_nodes(ENIS, TASKS)


def _record(src: str, dst: str, action: str = "ACCEPT", size: int = 100, packets: int = 1) -> dict[str, str]:
    return {"srcaddr": src, "dstaddr": dst, "action": action, "bytes": str(size), "packets": str(packets)}


def test_records_read_back_with_their_format() -> None:
    fields = fl.parse_log_format(None)
    line = fl.format_flow_record(
        fields,
        {
            "interface-id": "eni-a",
            "srcaddr": "10.0.1.10",
            "dstaddr": "10.0.1.11",
            "bytes": 840,
            "packets": 3,
            "action": "ACCEPT",
            "log-status": "OK",
        },
    )
    record = fl.parse_flow_record(fields, line)
    assert record is not None
    assert record["version"] == "2" and record["srcaddr"] == "10.0.1.10" and record["bytes"] == "840"
    assert "srcport" not in record  # "-" means the field does not apply
    custom = fl.parse_log_format("${dstaddr} ${srcaddr} ${bytes}")
    assert fl.parse_flow_record(custom, "10.0.1.11 10.0.1.10 5") == {
        "dstaddr": "10.0.1.11",
        "srcaddr": "10.0.1.10",
        "bytes": "5",
    }
    assert fl.parse_flow_record(custom, "10.0.1.11 10.0.1.10") is None


def test_groups_to_read_are_the_vpcs_flow_logs_and_shared_groups_are_narrowed() -> None:
    flow_logs = [
        {"FlowLogId": "fl-1", "ResourceId": VPC, "LogGroupName": "/vpc/all", "LogFormat": fl.DEFAULT_FORMAT},
        {
            "FlowLogId": "fl-2",
            "ResourceId": "subnet-1",
            "LogGroupName": "/vpc/custom",
            "LogFormat": "${srcaddr} ${dstaddr}",
        },
        {"FlowLogId": "fl-3", "ResourceId": "eni-a", "LogGroupName": "/shared"},
        {"FlowLogId": "fl-4", "ResourceId": "vpc-other", "LogGroupName": "/shared"},
        {"FlowLogId": "fl-5", "ResourceId": "vpc-other", "LogGroupName": "/not-ours"},
        {"FlowLogId": "fl-6", "ResourceId": VPC, "LogGroupName": "/vpc/all", "LogFormat": fl.DEFAULT_FORMAT},
    ]
    reads = tv.groups_to_read(flow_logs, VPC, ["subnet-1"], ["eni-a", "eni-b"])
    assert reads == [
        tv.GroupRead("/vpc/all", fl.DEFAULT_FIELDS, None),
        tv.GroupRead("/vpc/custom", ("srcaddr", "dstaddr"), None),
        tv.GroupRead("/shared", fl.DEFAULT_FIELDS, frozenset({"eni-a", "eni-b"})),
    ]


def test_addresses_map_to_tasks_load_balancers_and_other_enis() -> None:
    a = ADDRESSES["10.0.1.10"]
    assert (a.key, a.label, a.kind, a.href) == (
        "eni-a",
        f"task {TASK_A[:8]}",
        "task",
        f"/clusters/prod/tasks/{TASK_A}",
    )
    assert ADDRESSES["10.0.1.20"] == ADDRESSES["10.0.2.20"]  # one node per load balancer
    assert ADDRESSES["10.0.1.20"].label == "LB web" and ADDRESSES["10.0.1.20"].href == "/load-balancers/web"
    assert ADDRESSES["10.0.1.12"].kind == "eni" and ADDRESSES["10.0.1.12"].label == "eni-h"


def test_edges_sum_per_pair_and_action_and_outside_is_one_node() -> None:
    records = [
        _record("10.0.1.10", "10.0.1.11", size=600, packets=4),
        _record("10.0.1.10", "10.0.1.11", size=400, packets=6),
        _record("10.0.1.11", "10.0.1.10", "REJECT", size=50),
        _record("203.0.113.9", "10.0.1.10", size=77),
        _record("198.51.100.1", "10.0.1.20", size=5),
        {"interface-id": "eni-a", "log-status": "NODATA"},
        {"srcaddr": "10.0.1.10", "dstaddr": "10.0.1.11", "action": "ACCEPT"},  # no counts: not traffic
        _record("10.0.3.3", "10.0.1.11", size=9),  # in the VPC, no ENI now (a stopped task's)
        _record("not-an-ip", "10.0.1.11", size=1),
    ]
    graph = tv.traffic_graph(records, ADDRESSES, ["10.0.0.0/16"])
    assert graph.records == 7
    assert [n.key for n in graph.nodes] == ["eni-a", "eni-b", "lb:web", "former", "outside"]
    assert tv.Edge("former", "eni-b", "ACCEPT", 9, 1, 1) in graph.edges
    assert tv.Edge("outside", "eni-b", "ACCEPT", 1, 1, 1) in graph.edges
    assert graph.edges[0] == tv.Edge("eni-a", "eni-b", "ACCEPT", 1000, 10, 2)
    assert tv.Edge("eni-b", "eni-a", "REJECT", 50, 1, 1) in graph.edges
    assert tv.Edge("outside", "eni-a", "ACCEPT", 77, 1, 1) in graph.edges
    assert tv.Edge("outside", "lb:web", "ACCEPT", 5, 1, 1) in graph.edges
    assert graph.node("lb:web").label == "LB web"


def test_window_is_one_the_page_offers() -> None:
    assert tv.window_minutes("60") == 60
    assert tv.window_minutes("") == tv.DEFAULT_WINDOW
    assert tv.window_minutes("7") == tv.DEFAULT_WINDOW
    assert tv.window_minutes("-5") == tv.DEFAULT_WINDOW
    assert tv.human_bytes(512) == "512 B" and tv.human_bytes(2048) == "2.0 KiB"


_ADDRESS = st.sampled_from(
    ["10.0.1.10", "10.0.1.11", "10.0.1.12", "10.0.1.20", "10.0.2.20", "203.0.113.9", "8.8.8.8"]
)
_RECORD = st.builds(
    _record,
    _ADDRESS,
    _ADDRESS,
    st.sampled_from(["ACCEPT", "REJECT"]),
    st.integers(0, 10**9),
    st.integers(0, 10**6),
)


@given(st.lists(_RECORD, max_size=40))
def test_every_edge_joins_drawn_nodes_and_totals_are_the_records_sums(records: list[dict[str, str]]) -> None:
    graph = tv.traffic_graph(records, ADDRESSES, ["10.0.0.0/16"])
    picture = tv.traffic_picture(graph)
    drawn = {dot.node.key: dot for dot in picture.dots}
    assert len(drawn) == len(graph.nodes)
    assert len(picture.lines) == len(graph.edges)
    for line in picture.lines:
        source, destination = drawn[line.edge.source], drawn[line.edge.destination]
        assert (line.x1, line.y1, line.x2, line.y2) == (source.x, source.y, destination.x, destination.y)
    for dot in picture.dots:
        assert 0 <= dot.x <= picture.width and 0 <= dot.y <= picture.height
    assert sum(e.bytes for e in graph.edges) == sum(int(r["bytes"]) for r in records)
    assert sum(e.packets for e in graph.edges) == sum(int(r["packets"]) for r in records)
    assert sum(e.records for e in graph.edges) == graph.records == len(records)
    for action in ("ACCEPT", "REJECT"):
        assert sum(e.bytes for e in graph.edges if e.action == action) == sum(
            int(r["bytes"]) for r in records if r["action"] == action
        )
    assert len({(e.source, e.destination, e.action) for e in graph.edges}) == len(graph.edges)
