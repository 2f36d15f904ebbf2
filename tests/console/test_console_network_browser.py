"""The network pages in a real browser (Debian's chromium, Playwright) against `taskvpc up --no-agent`
with a fake agent: the load balancer, target group, flow log and VPC layout pages load with no console
error and nothing leaving loopback, the layout's SVG is drawn, and a target's health changes on the open
page without a reload. Screenshots go to the test's temporary directory, or to the directory
TASKVPC_CONSOLE_SCREENSHOTS names (`TASKVPC_CONSOLE_SCREENSHOTS=docs/console` refreshes the README's)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.chromium import browser_context
from tests.console.test_console_network import _balanced
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import ACCESS_KEY_ID, ACCOUNT_ID, SECRET_ACCESS_KEY, TaskvpcServer

REPO = Path(__file__).resolve().parents[2]


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
            task_id = arns[0].rsplit("/", 1)[1]
            page.locator(f'svg a[href$="/tasks/{task_id}"]').click()
            expect(page.locator("#last-status")).to_have_text("RUNNING")
            assert watch.errors == [] and watch.outside == []
    finally:
        agent.stop()
