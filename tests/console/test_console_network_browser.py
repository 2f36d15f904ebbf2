"""The network pages in a real browser (Debian's chromium, Playwright) against `taskvpc up --no-agent`
with a fake agent: the load balancer, target group, flow log, VPC layout and traffic pages load with no console
error and nothing leaving loopback, the layout's SVG is drawn, and a target's health changes on the open
page without a reload. Screenshots go to the test's temporary directory, or to the directory
TASKVPC_CONSOLE_SCREENSHOTS names (`TASKVPC_CONSOLE_SCREENSHOTS=docs/console` refreshes the README's)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.chromium import browser_context
from tests.console.test_console_network import _balanced
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import ACCESS_KEY_ID, ACCOUNT_ID, SECRET_ACCESS_KEY, TaskvpcServer

REPO = Path(__file__).resolve().parents[2]


def _task_ips(ecs: Any, arns: list[str]) -> list[str]:
    """The tasks' private IPs, once the agent's report has attached their ENIs."""
    deadline = time.monotonic() + 10
    while True:
        tasks = {t["taskArn"]: t for t in ecs.describe_tasks(tasks=arns)["tasks"]}
        details = [{d["name"]: d.get("value") for d in tasks[a]["attachments"][0]["details"]} for a in arns]
        if all(d.get("privateIPv4Address") for d in details) or time.monotonic() > deadline:
            return [str(d.get("privateIPv4Address")) for d in details]
        time.sleep(0.05)


def _flow_records(
    server: TaskvpcServer, vpc: str, ips: list[str], flows: list[tuple[int, int, str, int]], stream: str = "1"
) -> None:
    """Default-format records of flows (source index, destination index, action, bytes) in a VPC flow
    log's group, made with the first call."""
    ec2, logs = server.client("ec2"), server.client("logs")
    group = "/vpc/default-flows"
    if stream == "1":
        logs.create_log_group(logGroupName=group)
        ec2.create_flow_logs(
            ResourceIds=[vpc],
            ResourceType="VPC",
            TrafficType="ALL",
            LogGroupName=group,
            DeliverLogsPermissionArn=f"arn:aws:iam::{ACCOUNT_ID}:role/flow-logs",
        )
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time())
    lines = [
        f"2 {ACCOUNT_ID} eni-x {ips[a]} {ips[b]} 40000 80 6 3 {size} {now} {now} {action} OK"
        for a, b, action, size in flows
    ]
    events = [{"timestamp": now * 1000, "message": line} for line in lines]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


@pytest.fixture()
def live_server(tmp_path: Path) -> Iterator[TaskvpcServer]:
    server = TaskvpcServer(tmp_path / "state").start()
    try:
        yield server
    finally:
        server.stop()


def test_network_pages_in_a_browser(live_server: TaskvpcServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    named = os.environ.get("TASKVPC_CONSOLE_SCREENSHOTS")
    shots = (REPO / named) if named else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    made = _balanced(live_server)  # type: ignore[arg-type]
    elbv2, ec2, ecs = (live_server.client(name) for name in ("elbv2", "ec2", "ecs"))
    target_group = made["groups"]["web-tg"]
    elbv2.register_targets(TargetGroupArn=target_group, Targets=[{"Id": "10.20.1.10"}, {"Id": "10.20.2.10"}])
    live_server.client("logs").create_log_group(logGroupName="/vpc/flows")  # else made on first delivery
    ec2.create_flow_logs(
        ResourceIds=[made["vpc"]],
        ResourceType="VPC",
        TrafficType="ALL",
        LogGroupName="/vpc/flows",
        DeliverLogsPermissionArn=f"arn:aws:iam::{ACCOUNT_ID}:role/flow-logs",
    )
    agent = FakeAgent(live_server).start(auto=True)
    try:
        register_web(ecs)
        subnet = default_subnets(ec2)["us-east-1a"]
        arns = [
            t["taskArn"]
            for t in ecs.run_task(taskDefinition="web", count=2, networkConfiguration=awsvpc(subnet))["tasks"]
        ]
        for arn in arns:
            agent.wait_for_task(arn)
        [default_vpc] = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        with browser_context() as (context, watch):
            page = watch.page(context)
            page.goto(live_server.endpoint + "/console/signin")
            page.get_by_label("Access key ID").fill(ACCESS_KEY_ID)
            page.get_by_label("Secret access key").fill(SECRET_ACCESS_KEY)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Clusters")).to_be_visible()

            page.get_by_role("navigation").get_by_role("link", name="Load balancers").click()
            page.get_by_role("link", name="web", exact=True).click()
            expect(page.locator("#lb-state")).to_have_text("active")
            expect(page.locator("#lb-zones tbody tr")).to_have_count(2)
            page.screenshot(path=str(shots / "load-balancer.png"), full_page=True)

            page.get_by_role("link", name="forward to web-tg").click()
            targets = page.locator("#targets")
            expect(targets).to_contain_text("Elb.InitialHealthChecking")
            elbv2.deregister_targets(TargetGroupArn=target_group, Targets=[{"Id": "10.20.1.10"}])
            expect(targets.locator("tr", has_text="10.20.1.10")).to_contain_text("draining")  # no reload
            page.screenshot(path=str(shots / "target-group.png"), full_page=True)

            page.get_by_role("navigation").get_by_role("link", name="Flow logs").click()
            page.get_by_role("link", name="/vpc/flows").click()
            expect(page.get_by_role("heading", name="/vpc/flows")).to_be_visible()

            page.goto(live_server.endpoint + f"/console/vpcs/{default_vpc['VpcId']}")
            svg = page.locator("#vpc-layout")
            expect(svg).to_be_visible()
            box = svg.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 100
            expect(page.locator("#vpc-enis tbody tr")).to_have_count(2)
            page.screenshot(path=str(shots / "vpc-layout.png"), full_page=True)
            # The traffic between the two tasks, from records put in a flow log's group; a new record
            # reaches the open page without a reload.
            ips = _task_ips(ecs, arns)
            _flow_records(
                live_server, default_vpc["VpcId"], ips, [(0, 1, "ACCEPT", 4200), (1, 0, "REJECT", 60)]
            )
            page.get_by_role("link", name="Traffic between task ENIs").click()
            expect(page.locator("#traffic-graph")).to_be_visible()
            edges = page.locator("#traffic-edges tbody tr")
            expect(edges).to_have_count(2)
            expect(page.locator("#traffic-edges tr.a-accept")).to_contain_text("4200")
            _flow_records(live_server, default_vpc["VpcId"], ips, [(0, 1, "ACCEPT", 800)], stream="2")
            expect(page.locator("#traffic-edges tr.a-accept")).to_contain_text("5000", timeout=15_000)
            page.screenshot(path=str(shots / "vpc-traffic.png"), full_page=True)
            page.go_back()
            task_id = arns[0].rsplit("/", 1)[1]
            page.locator(f'svg a[href$="/tasks/{task_id}"]').click()
            expect(page.locator("#last-status")).to_have_text("RUNNING")
            assert watch.errors == [] and watch.outside == []
    finally:
        agent.stop()
