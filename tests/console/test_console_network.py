"""The console's network pages over the in-process ASGI transport: load balancers (zones with their ENIs'
addresses, listeners and rules), target groups with their targets' health live, flow logs, and the VPC
layout picture - each equal to what the API describes."""

from __future__ import annotations

import asyncio
import html
import time
from typing import Any

from taskvpc.control.elbv2 import targets as targets_module
from tests.console.support import Browser
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import ACCOUNT_ID, InProcessServer
from tests.support.inprocess import _asgi_headers


def _network(ec2: Any) -> dict[str, str]:
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    a = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]
    b = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.2.0/24", AvailabilityZone="us-east-1b")["Subnet"]
    sg = ec2.create_security_group(VpcId=vpc, GroupName="lb", Description="lb")["GroupId"]
    return {"vpc": vpc, "a": a["SubnetId"], "b": b["SubnetId"], "sg": sg}


def _balanced(server: InProcessServer) -> dict[str, Any]:
    """An internal ALB with an HTTP:80 listener: one path rule to ``api-tg``, default to ``web-tg``."""
    ec2, elbv2 = server.client("ec2"), server.client("elbv2")
    net = _network(ec2)
    lb = elbv2.create_load_balancer(
        Name="web", Subnets=[net["a"], net["b"]], SecurityGroups=[net["sg"]], Scheme="internal"
    )["LoadBalancers"][0]
    groups = {
        name: elbv2.create_target_group(
            Name=name,
            Protocol="HTTP",
            Port=8080,
            VpcId=net["vpc"],
            TargetType="ip",
            HealthCheckPath="/health",
        )["TargetGroups"][0]["TargetGroupArn"]
        for name in ("web-tg", "api-tg")
    }
    listener = elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": groups["web-tg"]}],
    )["Listeners"][0]
    elbv2.create_rule(
        ListenerArn=listener["ListenerArn"],
        Priority=10,
        Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/api/*"]}}],
        Actions=[{"Type": "forward", "TargetGroupArn": groups["api-tg"]}],
    )
    return {**net, "lb": lb, "groups": groups}


def test_load_balancer_pages_equal_describe(signed_in: Browser, server: InProcessServer) -> None:
    made = _balanced(server)
    lb = made["lb"]
    listing = signed_in.get("/console/load-balancers")
    assert listing.status == 200
    assert 'href="/console/load-balancers/web"' in listing.text and lb["DNSName"] in listing.text
    page = signed_in.get("/console/load-balancers/web")
    assert page.status == 200, page.text
    assert f'<dd id="lb-type">{lb["Type"]}</dd>' in page.text
    assert f'<dd id="lb-scheme">{lb["Scheme"]}</dd>' in page.text
    assert f'<span id="lb-state" class="status s-active">{lb["State"]["Code"]}</span>' in page.text
    assert f'<code id="lb-dns">{lb["DNSName"]}</code>' in page.text
    assert f'href="/console/security-groups/{made["sg"]}"' in page.text
    suffix = lb["LoadBalancerArn"].rsplit("/", 1)[1]
    enis = server.client("ec2").describe_network_interfaces(
        Filters=[{"Name": "description", "Values": [f"ELB app/web/{suffix}"]}]
    )["NetworkInterfaces"]
    assert len(enis) == 2
    for eni in enis:
        row = (
            f"<td>{eni['AvailabilityZone']}</td><td>{eni['SubnetId']}</td>"
            f"<td>{eni['NetworkInterfaceId']}</td><td>{eni['PrivateIpAddress']}</td>"
        )
        assert row in page.text
    # Rules in evaluation order: priority 10 before the default, with conditions and linked actions.
    text = html.unescape(page.text)
    assert "<h3>HTTP:80</h3>" in text
    assert text.index("<td>10</td>") < text.index("<td>default</td>")
    assert "path-pattern is /api/*" in text
    assert '<a href="/console/target-groups/api-tg">forward to api-tg</a>' in text
    assert '<a href="/console/target-groups/web-tg">forward to web-tg</a>' in text


def test_unknown_load_balancer_and_target_group_answer_as_the_api(signed_in: Browser) -> None:
    for path, code in (
        ("/console/load-balancers/nope", "LoadBalancerNotFound"),
        ("/console/target-groups/nope", "TargetGroupNotFound"),
        ("/console/vpcs/vpc-0123456789abcdef0", "InvalidVpcID.NotFound"),
    ):
        page = signed_in.get(path)
        assert 400 <= page.status < 500, (path, page.status)
        assert code in page.text and 'role="alert"' in page.text


def test_target_group_page_shows_health_and_its_stream_follows_it(
    signed_in: Browser, server: InProcessServer
) -> None:
    made = _balanced(server)
    arn = made["groups"]["web-tg"]
    elbv2 = server.client("elbv2")
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": "10.20.1.10"}])
    listing = signed_in.get("/console/target-groups")
    assert 'href="/console/target-groups/web-tg"' in listing.text
    assert 'href="/console/load-balancers/web"' in listing.text
    page = signed_in.get("/console/target-groups/web-tg")
    assert page.status == 200
    assert "HTTP /health on traffic-port" in page.text
    assert "<td>10.20.1.10</td><td>8080</td>" in page.text
    assert "initial</span></td><td>Elb.InitialHealthChecking</td>" in page.text
    assert 'sse-connect="/console/target-groups/web-tg/events" sse-swap="targets"' in page.text

    # The stream sends the targets now, then again when a health check reports a change.
    assert server.control_plane is not None and server.transport is not None
    plane, transport = server.control_plane, server.transport
    sent: list[bytes] = []
    changed, done = asyncio.Event(), asyncio.Event()

    async def open_stream() -> None:
        path = "/console/target-groups/web-tg/events"
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
            "query_string": b"",
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
                if len(sent) == 1:
                    ctx = plane.context("us-east-1", time.time())
                    assert targets_module.report_target_health(
                        ctx, arn, ("10.20.1.10", 8080), "healthy", None
                    )
                    changed.set()
                else:
                    done.set()

        await asyncio.wait_for(transport.app(scope, receive, send), 10)

    asyncio.run_coroutine_threadsafe(open_stream(), transport.loop).result(15)
    assert changed.is_set() and len(sent) == 2
    assert sent[0].startswith(b"event: targets\n") and b"Elb.InitialHealthChecking" in sent[0]
    assert b"healthy</span>" in sent[1] and b"InitialHealthChecking" not in sent[1]


def test_flow_logs_page_links_resource_and_log_group(signed_in: Browser, server: InProcessServer) -> None:
    ec2 = server.client("ec2")
    assert "No flow logs" in signed_in.get("/console/flow-logs").text
    net = _network(ec2)
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/flow-logs"
    [flow_id] = ec2.create_flow_logs(
        ResourceIds=[net["vpc"]],
        ResourceType="VPC",
        TrafficType="REJECT",
        LogGroupName="/vpc/flows",
        DeliverLogsPermissionArn=role,
    )["FlowLogIds"]
    page = signed_in.get("/console/flow-logs")
    assert page.status == 200
    assert f"<td>{flow_id}</td>" in page.text
    assert f'<a href="/console/vpcs/{net["vpc"]}">{net["vpc"]}</a>' in page.text
    assert "<td>REJECT</td>" in page.text
    assert '<a href="/console/log-groups//vpc/flows">/vpc/flows</a>' in page.text
    assert 'href="/console/flow-logs"' in page.text  # in the navigation


def test_vpc_layout_shows_zones_subnets_and_enis(signed_in: Browser, server: InProcessServer) -> None:
    ec2 = server.client("ec2")
    net = _network(ec2)
    eni = ec2.create_network_interface(SubnetId=net["a"], Description="by hand")["NetworkInterface"]
    listing = signed_in.get("/console/vpcs")
    assert f'href="/console/vpcs/{net["vpc"]}"' in listing.text
    page = signed_in.get(f"/console/vpcs/{net['vpc']}")
    assert page.status == 200, page.text
    assert '<svg id="vpc-layout"' in page.text and "<script" not in page.text.split("</head>", 1)[1]
    text = html.unescape(page.text)
    for shown in ("us-east-1a", "us-east-1b", f"{net['a']} · 10.20.1.0/24", f"{net['b']} · 10.20.2.0/24"):
        assert f">{shown}</text>" in text, shown
    assert f">{eni['NetworkInterfaceId']} {eni['PrivateIpAddress']} · by hand</text>" in text
    # Zone a is drawn left of zone b.
    assert text.index(">us-east-1a</text>") < text.index(">us-east-1b</text>")


def test_vpc_layout_places_a_task_eni_under_its_container_instance(
    signed_in: Browser, server: InProcessServer
) -> None:
    ec2, ecs = server.client("ec2"), server.client("ecs")
    agent = FakeAgent(server).start(auto=True)
    try:
        register_web(ecs)
        subnet = default_subnets(ec2)["us-east-1a"]
        [task] = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))["tasks"]
        agent.wait_for_task(task["taskArn"])
        deadline = time.monotonic() + 10
        while True:  # the ENI's details come with the agent's report, just after it saw the task
            [task] = ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"]
            if "networkInterfaceId" in str(task["attachments"]) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        [vpc] = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        page = signed_in.get(f"/console/vpcs/{vpc['VpcId']}")
    finally:
        agent.stop()
    assert page.status == 200, page.text
    task_id = task["taskArn"].rsplit("/", 1)[1]
    row = (
        f"<tr><td>us-east-1a</td><td>{subnet}</td><td>{agent.instance_id}</td>"
        f"<td>{details['networkInterfaceId']}</td><td>{details['privateIPv4Address']}</td>\n"
        f'<td><a href="/console/clusters/default/tasks/{task_id}">{task_id}</a>'
    )
    assert row in page.text, page.text[-3000:]
    # In the picture: the instance's box and the ENI's line linking to the task.
    text = html.unescape(page.text)
    assert f">{agent.instance_id}</text>" in text
    assert f'<a href="/console/clusters/default/tasks/{task_id}"><text class="t-eni"' in text
    assert f">{details['networkInterfaceId']} {details['privateIPv4Address']} · task {task_id[:8]}…" in text
