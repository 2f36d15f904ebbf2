"""The console in a real browser (Debian's chromium driven by Playwright, no browser download) against
`taskvpc up` as root with its local agent: the seed's flow by point and click.

One test walks it in order, as a user would: sign in (a wrong secret first), create a task definition by
form (equal to DescribeTaskDefinition), make a security group, run the task and watch it reach RUNNING without a reload (its ENI, IP,
MAC and subnet equal DescribeTasks), open a port in the rule editor (curl from the host then answers) and
remove it again (curl fails), stop the task and watch STOPPED arrive. Throughout, the page logs no
console error and requests nothing outside loopback. Screenshots go to the test's temporary directory,
or to the directory TASKVPC_CONSOLE_SCREENSHOTS names (`TASKVPC_CONSOLE_SCREENSHOTS=docs/console`
refreshes the README's).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.console.chromium import browser_context
from tests.integration.server import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from tests.root.upserver import REPO, RootServer

pytestmark = [pytest.mark.root]

PORT = 8080
COMMAND = f"mkdir -p /www && echo console-ok > /www/index.html && exec busybox httpd -f -p {PORT} -h /www"


@pytest.fixture()
def browser_page() -> Iterator[tuple[Any, list[str], list[str]]]:
    """A fresh page, with the console errors and the non-loopback requests it made."""
    with browser_context() as (context, watch):
        yield watch.page(context), watch.errors, watch.outside


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    named = os.environ.get("TASKVPC_CONSOLE_SCREENSHOTS")
    folder = (REPO / named) if named else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _shot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _curl(url: str) -> str | None:
    """The body from curl on the host, or None when the connection is refused or times out."""
    done = subprocess.run(["curl", "-s", "--max-time", "2", url], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else None


def _until(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _local_subnet(server: RootServer) -> str:
    """The default subnet of the local agent's availability zone (RunTask places tasks there)."""
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    [instance] = ecs.describe_container_instances(
        cluster="default",
        containerInstances=ecs.list_container_instances(cluster="default")["containerInstanceArns"],
    )["containerInstances"]
    zone = next(a["value"] for a in instance["attributes"] if a["name"] == "ecs.availability-zone")
    [subnet] = ec2.describe_subnets(
        Filters=[
            {"Name": "default-for-az", "Values": ["true"]},
            {"Name": "availability-zone", "Values": [zone]},
        ]
    )["Subnets"]
    return str(subnet["SubnetId"])


def test_the_seeds_flow_in_a_real_browser(
    root_server: RootServer, browser_page: tuple[Any, list[str], list[str]], shots: Path
) -> None:
    from playwright.sync_api import expect

    page, errors, outside = browser_page
    server = root_server
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    subnet = _local_subnet(server)

    # ---- sign-in: a browser at / lands on the sign-in page; a wrong secret is refused ------------------
    page.goto(server.endpoint + "/")
    assert urlsplit(page.url).path == "/console/signin"
    page.get_by_label("Access key ID").fill(ACCESS_KEY_ID)
    page.get_by_label("Secret access key").fill("not-the-secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not right")
    assert page.context.cookies() == []
    _shot(page, shots, "signin")
    page.get_by_label("Secret access key").fill(SECRET_ACCESS_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Clusters")).to_be_visible()
    [cookie] = page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/console")
    assert page.evaluate("document.cookie") == ""  # script cannot read the session
    _shot(page, shots, "clusters")

    # ---- a task definition by form, equal to DescribeTaskDefinition ---------------------------------
    page.get_by_role("link", name="Task definitions").click()
    page.get_by_role("link", name="Create new task definition").click()
    page.get_by_label("Task definition family").fill("console-web")
    page.get_by_label("Network mode").select_option("awsvpc")
    page.get_by_label("Container name").fill("web")
    page.get_by_label("Image", exact=True).fill("public.ecr.aws/docker/library/busybox:stable")
    page.get_by_label("Container memory (MiB)").fill("128")
    page.get_by_label("Port mappings").fill(f"{PORT}/tcp")
    page.get_by_label("Entry point").fill("sh,-c")
    page.get_by_label("Command").fill(COMMAND)
    _shot(page, shots, "task-definition-form")
    page.get_by_role("button", name="Create", exact=True).click()
    expect(page.get_by_role("heading", name="console-web:1")).to_be_visible()
    td = ecs.describe_task_definition(taskDefinition="console-web:1")["taskDefinition"]
    [container] = td["containerDefinitions"]
    assert td["networkMode"] == "awsvpc"
    assert (container["name"], container["image"], container["memory"]) == (
        "web",
        "public.ecr.aws/docker/library/busybox:stable",
        128,
    )
    assert container["portMappings"] == [{"containerPort": PORT, "hostPort": PORT, "protocol": "tcp"}]
    assert (container["entryPoint"], container["command"]) == (["sh", "-c"], [COMMAND])
    _shot(page, shots, "task-definition")

    # ---- a security group of its own, made in the console (no rules yet) -----------------------------
    page.get_by_role("link", name="Security groups").click()
    page.get_by_text("New security group").click()
    page.get_by_label("Security group name").fill("console-web")
    page.get_by_label("Description").fill("opened in the console")
    page.get_by_role("button", name="Create security group").click()
    page.wait_for_url(re.compile(r".*/console/security-groups/sg-[0-9a-f]+$"))
    group = page.url.rsplit("/", 1)[1]
    [made] = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    assert (made["GroupName"], made["IpPermissions"]) == ("console-web", [])

    # ---- run it; RUNNING arrives without a reload, the ENI matches DescribeTasks ----------------------
    page.goto(f"{server.endpoint}/console/task-definitions/console-web:1")
    page.get_by_role("link", name="Run task").click()
    page.get_by_label("Task definition").select_option("console-web:1")
    page.get_by_label("Subnets").select_option([subnet])
    page.get_by_label("Security groups").select_option([group])
    _shot(page, shots, "run-task")
    page.get_by_role("button", name="Run task").click()
    page.wait_for_url(re.compile(r".*/console/clusters/default/tasks/[0-9a-f]{32}$"))
    task_id = page.url.rsplit("/", 1)[1]
    page.evaluate("window.sameDocument = true")  # a reload or navigation would lose it
    expect(page.locator("#last-status")).to_have_text("RUNNING", timeout=60_000)
    assert page.evaluate("window.sameDocument === true")
    [task] = ecs.describe_tasks(cluster="default", tasks=[task_id])["tasks"]
    details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    expect(page.locator("#eni-id")).to_have_text(details["networkInterfaceId"])
    expect(page.locator("#eni-ip")).to_have_text(details["privateIPv4Address"])
    expect(page.locator("#eni-mac")).to_have_text(details["macAddress"])
    expect(page.locator("#eni-subnet")).to_have_text(details["subnetId"])
    expect(page.locator("#eni-groups")).to_have_text(group)
    assert details["subnetId"] == subnet
    _shot(page, shots, "task-running")

    # ---- the rule editor opens the port (curl from the host answers) and closes it again -------------
    url = f"http://{details['privateIPv4Address']}:{PORT}/"
    assert _curl(url) is None  # no rule yet: the group admits nothing
    page.get_by_role("link", name=group).click()
    page.get_by_label("Protocol").select_option("tcp")
    page.get_by_label("Port range").fill(str(PORT))
    page.get_by_label("Source").fill("169.254.100.1/32")  # the host's end of the VPC access link
    page.get_by_role("button", name="Add rule").click()
    remove = page.get_by_role("button", name=f"Remove tcp {PORT} from 169.254.100.1/32")
    expect(remove).to_be_visible()
    assert _until(lambda: _curl(url), timeout=10) == "console-ok\n"
    _shot(page, shots, "security-group")
    remove.click()
    expect(remove).to_have_count(0)
    assert _until(lambda: _curl(url) is None, timeout=10)
    assert ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"] == []

    # ---- stop it: STOPPED with its reason arrives on the open page -----------------------------------
    page.goto(f"{server.endpoint}/console/clusters/default/tasks/{task_id}")
    page.get_by_role("button", name="Stop task").click()
    page.wait_for_load_state()
    page.evaluate("window.sameDocument = true")
    expect(page.locator("#last-status")).to_have_text("STOPPED", timeout=60_000)
    assert page.evaluate("window.sameDocument === true")
    expect(page.locator("#stopped-reason")).to_contain_text("Stopped in the console")
    _shot(page, shots, "task-stopped")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.context.cookies() == []

    assert errors == [], f"browser console errors: {errors}"
    assert outside == [], f"requests that left loopback: {outside}"
    assert (shots / "task-running.png").stat().st_size > 0
