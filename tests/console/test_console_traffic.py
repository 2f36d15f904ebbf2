"""The VPC traffic page over the in-process ASGI transport: flow-log records written into the flow log's
log group (PutLogEvents, in the flow log's custom format) show up as edges between the tasks' ENIs with
their totals, the window selects which records count, and the live stream sends the same panel."""

from __future__ import annotations

import asyncio
import html
import importlib
import ipaddress
import time
from typing import Any

import pytest

from taskvpc.control.ec2.flow_logs import deliver_flow_records
from taskvpc.netmodel import flow_logs as fl
from tests.console.support import Browser
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import ACCOUNT_ID, InProcessServer
from tests.support.inprocess import _asgi_headers

FORMAT = "${interface-id} ${srcaddr} ${dstaddr} ${packets} ${bytes} ${action} ${log-status}"
GROUP = "/vpc/traffic"
# The page module (the package re-exports its page function under the same name).
traffic_page = importlib.import_module("taskvpc.console.pages.traffic")


def _two_tasks(server: InProcessServer) -> tuple[str, list[dict[str, Any]]]:
    """Two running awsvpc tasks in the default VPC: (its id, [{task, eni, ip}, ...])."""
    ec2, ecs = server.client("ec2"), server.client("ecs")
    agent = FakeAgent(server).start(auto=True)
    try:
        register_web(ecs)
        subnet = default_subnets(ec2)["us-east-1a"]
        started = ecs.run_task(taskDefinition="web", count=2, networkConfiguration=awsvpc(subnet))["tasks"]
        for task in started:
            agent.wait_for_task(task["taskArn"])
        deadline = time.monotonic() + 10
        while True:  # the ENI's details come when the agent reports it attached
            described = ecs.describe_tasks(tasks=[t["taskArn"] for t in started])["tasks"]
            if all("networkInterfaceId" in str(t["attachments"]) for t in described):
                break
            assert time.monotonic() < deadline, described
            time.sleep(0.05)
    finally:
        agent.stop()
    [vpc] = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    tasks = []
    for task in sorted(described, key=lambda t: t["taskArn"]):
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        tasks.append(
            {
                "task": task["taskArn"].rsplit("/", 1)[1],
                "eni": details["networkInterfaceId"],
                "ip": details["privateIPv4Address"],
            }
        )
    return vpc["VpcId"], tasks


def _put(server: InProcessServer, stream: str, records: list[tuple[int, dict[str, object]]]) -> None:
    logs = server.client("logs")
    logs.create_log_stream(logGroupName=GROUP, logStreamName=stream)
    fields = fl.parse_log_format(FORMAT)
    events = [{"timestamp": at, "message": fl.format_flow_record(fields, r)} for at, r in records]
    logs.put_log_events(
        logGroupName=GROUP, logStreamName=stream, logEvents=sorted(events, key=lambda e: e["timestamp"])
    )


def test_traffic_page_draws_the_edges_between_task_enis(signed_in: Browser, server: InProcessServer) -> None:
    vpc, (a, b) = _two_tasks(server)
    ec2, logs = server.client("ec2"), server.client("logs")
    empty = signed_in.get(f"/console/vpcs/{vpc}/traffic")
    assert empty.status == 200, empty.text
    assert 'id="traffic-empty"' in empty.text
    ec2.create_flow_logs(
        ResourceIds=[vpc],
        ResourceType="VPC",
        TrafficType="ALL",
        LogGroupName=GROUP,
        LogFormat=FORMAT,
        DeliverLogsPermissionArn=f"arn:aws:iam::{ACCOUNT_ID}:role/flow-logs",
    )
    logs.create_log_group(logGroupName=GROUP)
    now = int(time.time() * 1000)
    ok = {"log-status": "OK"}
    [cidr] = [v["CidrBlock"] for v in ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"]]
    former = str(ipaddress.ip_network(cidr)[-2])
    _put(
        server,
        a["eni"],
        [
            (
                now - 60_000,
                {
                    **ok,
                    "interface-id": a["eni"],
                    "srcaddr": a["ip"],
                    "dstaddr": b["ip"],
                    "packets": 4,
                    "bytes": 600,
                    "action": "ACCEPT",
                },
            ),
            (
                now - 30_000,
                {
                    **ok,
                    "interface-id": a["eni"],
                    "srcaddr": a["ip"],
                    "dstaddr": b["ip"],
                    "packets": 6,
                    "bytes": 400,
                    "action": "ACCEPT",
                },
            ),
            (
                now - 30 * 60_000,
                {
                    **ok,
                    "interface-id": a["eni"],
                    "srcaddr": a["ip"],
                    "dstaddr": b["ip"],
                    "packets": 1,
                    "bytes": 9000,
                    "action": "ACCEPT",
                },
            ),
            (now - 20_000, {"interface-id": a["eni"], "log-status": "NODATA"}),
        ],
    )
    _put(
        server,
        b["eni"],
        [
            (
                now - 10_000,
                {
                    **ok,
                    "interface-id": b["eni"],
                    "srcaddr": b["ip"],
                    "dstaddr": a["ip"],
                    "packets": 2,
                    "bytes": 120,
                    "action": "REJECT",
                },
            ),
            (
                now - 10_000,
                {
                    **ok,
                    "interface-id": b["eni"],
                    "srcaddr": "203.0.113.9",
                    "dstaddr": b["ip"],
                    "packets": 1,
                    "bytes": 77,
                    "action": "ACCEPT",
                },
            ),
            (  # from an address of the VPC no ENI has now (a stopped task's)
                now - 10_000,
                {**ok, "srcaddr": former, "dstaddr": b["ip"], "packets": 1, "bytes": 5, "action": "ACCEPT"},
            ),
        ],
    )
    page = signed_in.get(f"/console/vpcs/{vpc}/traffic")
    assert page.status == 200, page.text
    text = html.unescape(page.text)
    assert '<svg id="traffic-graph"' in text and "<script" not in text.split("</head>", 1)[1]
    label_a, label_b = f"task {a['task'][:8]}", f"task {b['task'][:8]}"
    # The last 15 minutes: the two recent records of a -> b summed; the old one left out.
    row = (
        f'<tr class="a-accept"><td>{label_a} <small>{a["ip"]}</small></td>'
        f"<td>{label_b} <small>{b['ip']}</small></td><td>ACCEPT</td><td>1000</td><td>10</td><td>2</td></tr>"
    )
    assert row in text, text[-3000:]
    assert (
        f'<tr class="a-reject"><td>{label_b} <small>{b["ip"]}</small></td>'
        f"<td>{label_a} <small>{a['ip']}</small></td><td>REJECT</td><td>120</td><td>2</td><td>1</td></tr>"
    ) in text
    assert "<td>outside <small>not an ENI of the VPC</small></td>" in text
    assert "<td>former ENIs <small>VPC addresses no ENI has now</small></td>" in text
    assert "5 records read." in text
    assert f'<a href="/console/clusters/default/tasks/{a["task"]}"><text class="t-node"' in text
    assert text.count('<path class="e-accept"') == 3 and text.count('<path class="e-reject"') == 1
    # A wider window takes the old record too.
    wider = html.unescape(signed_in.get(f"/console/vpcs/{vpc}/traffic?minutes=60").text)
    assert "<td>ACCEPT</td><td>10000</td><td>11</td><td>3</td>" in wider
    assert "<strong>60 min</strong>" in wider
    # Linked from the VPC page and the flow-logs page.
    assert f'href="/console/vpcs/{vpc}/traffic"' in signed_in.get(f"/console/vpcs/{vpc}").text
    assert f'href="/console/vpcs/{vpc}/traffic"' in signed_in.get("/console/flow-logs").text


def test_traffic_page_of_an_unknown_vpc_answers_as_the_api(signed_in: Browser) -> None:
    page = signed_in.get("/console/vpcs/vpc-0123456789abcdef0/traffic")
    assert page.status == 400, page.status
    assert "InvalidVpcID.NotFound" in page.text


def test_traffic_stream_sends_the_panel_and_again_when_records_arrive(
    signed_in: Browser, server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vpc, (a, b) = _two_tasks(server)
    server.client("ec2").create_flow_logs(
        ResourceIds=[vpc],
        ResourceType="VPC",
        TrafficType="ACCEPT",
        LogGroupName=GROUP,
        LogFormat=FORMAT,
        DeliverLogsPermissionArn=f"arn:aws:iam::{ACCOUNT_ID}:role/flow-logs",
    )
    page = signed_in.get(f"/console/vpcs/{vpc}/traffic?minutes=5")
    assert f'sse-connect="/console/vpcs/{vpc}/traffic/events?minutes=5" sse-swap="traffic"' in page.text
    monkeypatch.setattr(traffic_page, "_REFRESH", 0.1)
    assert server.control_plane is not None and server.transport is not None
    plane, transport = server.control_plane, server.transport
    sent: list[bytes] = []
    done = asyncio.Event()

    async def open_stream() -> None:
        path = f"/console/vpcs/{vpc}/traffic/events"
        headers = {
            "cookie": "; ".join(f"{k}={v}" for k, v in signed_in.cookies.items()),
            "accept": "text/event-stream",
        }
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"minutes=5",
            "headers": _asgi_headers(headers, transport.host),
            "client": ("127.0.0.1", 0),
            "server": (transport.host, 80),
        }
        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            body = message.get("body", b"")
            if body and body.startswith(b"event:"):
                sent.append(body)
                if len(sent) == 1:  # the agent reports a flow: delivered as the flow log's records
                    now = time.time()
                    record = {"srcaddr": a["ip"], "dstaddr": b["ip"], "packets": 3, "bytes": 321}
                    written = deliver_flow_records(
                        plane.context("us-east-1", now),
                        a["eni"],
                        [
                            {
                                **record,
                                "action": "ACCEPT",
                                "start": int(now),
                                "end": int(now),
                                "log-status": "OK",
                            }
                        ],
                    )
                    assert written == 1
                else:
                    done.set()

        await asyncio.wait_for(transport.app(scope, receive, send), 10)

    asyncio.run_coroutine_threadsafe(open_stream(), transport.loop).result(15)
    assert len(sent) == 2
    assert sent[0].startswith(b"event: traffic\n") and b'id="traffic-empty"' in sent[0]
    second = html.unescape(sent[1].decode())
    assert "<td>ACCEPT</td><td>321</td><td>3</td><td>1</td>" in second
    assert f"task {a['task'][:8]}" in second and '<svg id="traffic-graph"' in second
