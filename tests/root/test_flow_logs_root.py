"""VPC Flow Logs from real packets: `taskvpc up` as root, a sample task, a flow log on its ENI.

An HTTP GET from the host to the task shows as two ACCEPT records (ingress and egress) with the
connection's addresses, ports, protocol, and packet and byte counts that match the exchange (IP headers
included, one packet per MSS-sized segment); a connection to a port the task's group does not open
shows as one REJECT record with the SYNs sent. Records arrive within the aggregation interval plus a few
seconds; idle windows write NODATA. The aggregation interval is shortened to 2 s with the test-only
``TASKVPC_FLOW_LOG_INTERVAL`` (AWS allows 60 and 600).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from taskvpc.agent import netplan
from tests.integration.server import ACCOUNT_ID
from tests.root.upserver import RootServer, run_sample_tasks

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real namespaces, links and processes"),
]

INTERVAL = 2
HOST = "169.254.100.1"
FORMAT = (
    "${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} "
    "${bytes} ${start} ${end} ${action} ${log-status} ${flow-direction} ${tcp-flags}"
)
NAMES = FORMAT.replace("${", "").replace("}", "").split()


@pytest.fixture()
def short_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKVPC_FLOW_LOG_INTERVAL", str(INTERVAL))


def _records(server: RootServer, eni_id: str) -> list[dict[str, str]]:
    logs = server.client("logs")
    try:
        events = logs.get_log_events(logGroupName="flows", logStreamName=eni_id, startFromHead=True)["events"]
    except logs.exceptions.ResourceNotFoundException:
        return []
    return [dict(zip(NAMES, e["message"].split(), strict=True)) for e in events]


def _wait(found: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


def _http_get(ip: str) -> tuple[int, int, int]:
    """(our source port, request bytes, response bytes) of one HTTP/1.0 GET to ``ip``:80."""
    with socket.create_connection((ip, 80), timeout=5) as sock:
        port = sock.getsockname()[1]
        request = f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode()
        sock.sendall(request)
        received = 0
        while chunk := sock.recv(65536):
            received += len(chunk)
    return port, len(request), received


def _refused_connect(ip: str, port: int) -> int:
    sock = socket.socket()
    sock.settimeout(1.5)
    sock.bind(("0.0.0.0", 0))
    source = sock.getsockname()[1]
    with sock, pytest.raises(OSError):
        sock.connect((ip, port))  # dropped by the group: no answer at all
    return source


def test_accept_and_reject_records_of_real_connections(short_windows: None, root_server: RootServer) -> None:
    server = root_server
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    [arn] = run_sample_tasks(server)
    try:
        [task] = ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"]
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        eni_id, ip = details["networkInterfaceId"], details["privateIPv4Address"]
        vpc_id = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0][
            "VpcId"
        ]
        made = ec2.create_flow_logs(
            ResourceType="NetworkInterface",
            ResourceIds=[eni_id],
            TrafficType="ALL",
            LogGroupName="flows",
            DeliverLogsPermissionArn=f"arn:aws:iam::{ACCOUNT_ID}:role/flow-logs",
            MaxAggregationInterval=60,
            LogFormat=FORMAT,
        )
        assert made["Unsuccessful"] == []

        # collecting: the REJECT log rule is in the router's table, and an idle window has written NODATA
        router = f"/run/netns/{netplan.router_netns(netplan.NetConfig(prefix=server.prefix), vpc_id)}"

        def ruleset() -> str:
            return subprocess.run(
                ["nsenter", f"--net={router}", "nft", "list", "table", "inet", "taskvpc"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout

        _wait(lambda: f'log prefix "{eni_id} in" group 7' in ruleset(), 15, "REJECT log rule")
        nodata = _wait(
            lambda: [r for r in _records(server, eni_id) if r["log-status"] == "NODATA"], 20, "NODATA"
        )
        assert nodata[0]["interface-id"] == eni_id and nodata[0]["srcaddr"] == "-"
        port, request_bytes, response_bytes = _http_get(ip)
        refused_port = _refused_connect(ip, 22)
        done = time.monotonic()

        def flow(action: str, src: str, dst: str, sport: int, dport: int) -> list[dict[str, str]]:
            return [
                r
                for r in _records(server, eni_id)
                if (r["action"], r["srcaddr"], r["dstaddr"], r["srcport"], r["dstport"])
                == (action, src, dst, str(sport), str(dport))
            ]

        def settled() -> bool:  # the connection's records so far, and a window closed after it ended
            latest = max((int(r["end"]) for r in _records(server, eni_id)), default=0)
            return bool(flow("REJECT", HOST, ip, refused_port, 22)) and latest >= int(time.time()) - INTERVAL

        _wait(lambda: flow("ACCEPT", HOST, ip, port, 80) and settled(), INTERVAL * 2 + 8, "records")
        assert time.monotonic() - done < INTERVAL * 2 + 8  # within the interval (+ the window it ended in)
        time.sleep(
            INTERVAL + 1
        )  # the connection's last packets (its FIN in TIME_WAIT) are in a closed window

        inbound = flow("ACCEPT", HOST, ip, port, 80)
        outbound = flow("ACCEPT", ip, HOST, 80, port)
        assert inbound and outbound
        for record in (*inbound, *outbound):
            assert (record["account-id"], record["interface-id"], record["protocol"]) == (
                ACCOUNT_ID,
                eni_id,
                "6",
            )
            assert record["log-status"] == "OK" and int(record["start"]) <= int(record["end"])
        assert {r["flow-direction"] for r in inbound} == {"ingress"}
        assert {r["flow-direction"] for r in outbound} == {"egress"}
        in_packets, in_bytes = sum(int(r["packets"]) for r in inbound), sum(int(r["bytes"]) for r in inbound)
        out_packets, out_bytes = (
            sum(int(r["packets"]) for r in outbound),
            sum(int(r["bytes"]) for r in outbound),
        )
        # host -> task: SYN, ACK, the request, ACKs, FIN; every packet 40-60 bytes of IP+TCP headers
        assert 4 <= in_packets <= 10
        assert request_bytes + 40 * in_packets <= in_bytes <= request_bytes + 60 * in_packets
        # task -> host: SYN-ACK, the response in MSS-sized segments, FIN
        segments = -(-response_bytes // 1448)
        assert segments + 2 <= out_packets <= segments + 6
        assert response_bytes + 40 * out_packets <= out_bytes <= response_bytes + 60 * out_packets

        # one record per window: the SYN and its retransmission (1 s later) may fall in two 2 s windows
        rejects = flow("REJECT", HOST, ip, refused_port, 22)
        assert 1 <= len(rejects) <= 2
        assert {(r["flow-direction"], r["tcp-flags"]) for r in rejects} == {("ingress", "2")}  # SYN
        packets = sum(int(r["packets"]) for r in rejects)
        assert 1 <= packets <= 3 and sum(int(r["bytes"]) for r in rejects) == 60 * packets
        assert not flow("ACCEPT", HOST, ip, refused_port, 22)  # a refused connection is never ACCEPT
        assert not flow("ACCEPT", ip, HOST, 22, refused_port)
    finally:  # the fixture requires every container gone
        ecs.stop_task(cluster="default", task=arn)
        ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})
