"""The console in a real browser (Debian's chromium driven by Playwright, no browser download) against
`taskvpc up` as root with its local agent: the seed's walkthrough by point and click, as one test.

A new user signs in (a wrong secret first), registers the seed's task definition
(examples/linux-simple-web.json) by the form (equal to DescribeTaskDefinition), makes a security group and
opens port 80 in its rule editor, runs TWO tasks from the Run task form and watches both reach RUNNING
on the open cluster page without a reload, opens each task and reads its ENI, IP and MAC (equal to
DescribeTasks and DescribeNetworkInterfaces), and fetches the page from each IP with curl from the host.
Then the reachability matrix: a third task in a group that admits nothing, "Run probes", and every cell
(the rules' verdict and the agent's real probe) equal to curl run from the source task's own network
namespace. Removing the port-80 rule in the editor closes the port to curl again; Stop task reaches
STOPPED on the open page. Throughout, the page logs no console error and requests nothing outside
loopback. Screenshots go to the test's temporary directory, or to the directory
TASKVPC_CONSOLE_SCREENSHOTS names (`TASKVPC_CONSOLE_SCREENSHOTS=docs/console` refreshes the README's).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from taskvpc.agent import netplan
from tests.console.chromium import browser_context
from tests.integration.server import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from tests.root.upserver import REPO, RootServer

pytestmark = [pytest.mark.root]

SEED = json.loads((REPO / "examples/linux-simple-web.json").read_text())
[SEED_CONTAINER] = SEED["containerDefinitions"]
PAGE = "Amazon ECS Sample App"


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


def _curl(url: str, netns: str | None = None) -> str | None:
    """The body from curl on the host (or in the network namespace at path ``netns``), or None when the connection is
    refused or times out."""
    command = ["curl", "-s", "--max-time", "2", url]
    if netns is not None:
        command = ["nsenter", f"--net={netns}", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
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


def _run_tasks(page: Any, endpoint: str, subnet: str, group: str, count: int) -> None:
    """The Run task form: the seed's task definition, ``count`` tasks, one subnet, one group."""
    page.goto(f"{endpoint}/console/task-definitions/linux-simple-web:1")
    page.get_by_role("link", name="Run task").click()
    page.get_by_label("Task definition").select_option("linux-simple-web:1")
    page.get_by_label("Desired tasks").fill(str(count))
    page.get_by_label("Subnets").select_option([subnet])
    page.get_by_label("Security groups").select_option([group])


def _new_group(page: Any, name: str, description: str) -> str:
    page.get_by_role("link", name="Security groups").click()
    page.get_by_text("New security group").click()
    page.get_by_label("Security group name").fill(name)
    page.get_by_label("Description").fill(description)
    page.get_by_role("button", name="Create security group").click()
    page.wait_for_url(re.compile(r".*/console/security-groups/sg-[0-9a-f]+$"))
    return str(page.url.rsplit("/", 1)[1])


def test_the_seeds_walkthrough_in_a_real_browser(
    root_server: RootServer, browser_page: tuple[Any, list[str], list[str]], shots: Path
) -> None:
    from playwright.sync_api import expect

    page, errors, outside = browser_page
    server = root_server
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    subnet = _local_subnet(server)
    cfg = netplan.NetConfig(prefix=server.prefix)

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

    # ---- the seed's task definition by form, equal to DescribeTaskDefinition ---------------------------
    page.get_by_role("link", name="Task definitions").click()
    page.get_by_role("link", name="Create new task definition").click()
    page.get_by_label("Task definition family").fill(SEED["family"])
    page.get_by_label("Network mode").select_option(SEED["networkMode"])
    page.get_by_label("Task CPU units").fill(SEED["cpu"])
    page.get_by_label("Task memory (MiB)").fill(SEED["memory"])
    page.get_by_label("Container name").fill(SEED_CONTAINER["name"])
    page.get_by_label("Image", exact=True).fill(SEED_CONTAINER["image"])
    page.get_by_label("Container CPU units").fill(str(SEED_CONTAINER["cpu"]))
    page.get_by_label("Container memory (MiB)").fill(str(SEED_CONTAINER["memory"]))
    page.get_by_label("Port mappings").fill("80/tcp")
    page.get_by_label("Entry point").fill(",".join(SEED_CONTAINER["entryPoint"]))
    page.get_by_label("Command").fill(SEED_CONTAINER["command"][0])
    page.get_by_label("Init process").check()
    _shot(page, shots, "task-definition-form")
    page.get_by_role("button", name="Create", exact=True).click()
    expect(page.get_by_role("heading", name="linux-simple-web:1")).to_be_visible()
    td = ecs.describe_task_definition(taskDefinition="linux-simple-web:1")["taskDefinition"]
    assert {k: td[k] for k in ("family", "networkMode", "cpu", "memory")} == {
        k: SEED[k] for k in ("family", "networkMode", "cpu", "memory")
    }
    [container] = td["containerDefinitions"]
    for key in ("name", "image", "cpu", "memory", "essential", "entryPoint", "command", "linuxParameters"):
        assert container[key] == SEED_CONTAINER[key], key
    assert container["portMappings"] == [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}]
    _shot(page, shots, "task-definition")

    # ---- a group of its own with port 80 opened in the rule editor --------------------------------------
    web = _new_group(page, "web", "sample page")
    [made] = ec2.describe_security_groups(GroupIds=[web])["SecurityGroups"]
    assert (made["GroupName"], made["IpPermissions"]) == ("web", [])
    page.get_by_label("Protocol").select_option("tcp")
    page.get_by_label("Port range").fill("80")
    page.get_by_label("Source").fill("0.0.0.0/0")
    page.get_by_role("button", name="Add rule").click()
    remove = page.get_by_role("button", name="Remove tcp 80 from 0.0.0.0/0")
    expect(remove).to_be_visible()
    _shot(page, shots, "security-group")

    # ---- two tasks from the Run task form; both reach RUNNING on the open cluster page --------------------
    _run_tasks(page, server.endpoint, subnet, web, 2)
    _shot(page, shots, "run-task")
    page.get_by_role("button", name="Run task").click()
    page.wait_for_url(re.compile(r".*/console/clusters/default$"))
    page.evaluate("window.sameDocument = true")  # a reload or navigation would lose it
    expect(page.locator(".status.s-running")).to_have_count(2, timeout=60_000)
    assert page.evaluate("window.sameDocument === true")
    links = page.locator("a[href*='/console/clusters/default/tasks/']")
    task_ids = sorted(str(h).rsplit("/", 1)[1] for h in links.evaluate_all("els => els.map(e => e.href)"))
    assert len(task_ids) == 2

    # ---- each task's page: ENI, IP and MAC as DescribeTasks and DescribeNetworkInterfaces give them ------
    described = ecs.describe_tasks(cluster="default", tasks=task_ids)["tasks"]
    ips = {}
    for task in sorted(described, key=lambda t: t["taskArn"]):
        task_id = task["taskArn"].rsplit("/", 1)[1]
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        [eni] = ec2.describe_network_interfaces(NetworkInterfaceIds=[details["networkInterfaceId"]])[
            "NetworkInterfaces"
        ]
        assert (eni["PrivateIpAddress"], eni["MacAddress"], eni["SubnetId"]) == (
            details["privateIPv4Address"],
            details["macAddress"],
            subnet,
        )
        page.goto(f"{server.endpoint}/console/clusters/default")
        page.get_by_role("link", name=task_id).click()
        expect(page.locator("#last-status")).to_have_text("RUNNING")
        expect(page.locator("#eni-id")).to_have_text(eni["NetworkInterfaceId"])
        expect(page.locator("#eni-ip")).to_have_text(eni["PrivateIpAddress"])
        expect(page.locator("#eni-mac")).to_have_text(eni["MacAddress"])
        expect(page.locator("#eni-subnet")).to_have_text(subnet)
        expect(page.locator("#eni-groups")).to_have_text(web)
        ips[task_id] = eni["PrivateIpAddress"]
    _shot(page, shots, "task-running")

    # ---- the page from each task's own IP, fetched by curl on the host ------------------------------------
    for ip in ips.values():
        assert PAGE in (_until(lambda ip=ip: _curl(f"http://{ip}/"), timeout=10) or "")

    # ---- reachability: a third task in a group that admits nothing; probes equal curl in the netns -------
    closed = _new_group(page, "closed", "admits nothing")
    _run_tasks(page, server.endpoint, subnet, closed, 1)
    page.get_by_role("button", name="Run task").click()
    page.wait_for_url(re.compile(r".*/console/clusters/default/tasks/[0-9a-f]{32}$"))
    closed_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#last-status")).to_have_text("RUNNING", timeout=60_000)
    ips[closed_id] = page.locator("#eni-ip").inner_text()
    page.get_by_role("link", name="VPCs").click()
    page.get_by_role("link", name=str(made["VpcId"])).click()
    page.get_by_role("link", name="Reachability between tasks").click()
    page.get_by_role("button", name="Run probes").click()
    page.wait_for_url(re.compile(r".*/reachability$"))
    cells = page.locator("#reachability-matrix td[data-rules]")
    expect(cells).to_have_count(6)  # 3 tasks x 3 ports, less the 3 to themselves
    expect(page.locator("#reachability-matrix td[data-probe='']")).to_have_count(0)
    found = cells.evaluate_all(
        "els => els.map(e => [e.dataset.source, e.dataset.destination, e.dataset.rules, e.dataset.probe])"
    )
    for source, destination, rules, probe in found:
        reached = probe in ("connected", "refused")
        curled = _curl(
            f"http://{ips[destination]}/", netns=f"{cfg.netns_dir}/{netplan.task_netns(cfg, source)}"
        )
        assert reached == (curled is not None) == (rules == "allowed"), (source, destination, rules, probe)
        assert (rules == "allowed") == (destination != closed_id)  # "closed" admits nothing; "web" port 80
    expect(page.locator("#reachability-summary")).to_contain_text("0 where the probe and the rules disagree")
    _shot(page, shots, "reachability")

    # ---- the rule editor closes port 80 again: curl from the host fails ----------------------------------
    page.goto(f"{server.endpoint}/console/security-groups/{web}")
    remove.click()
    expect(remove).to_have_count(0)
    first = ips[task_ids[0]]
    assert _until(lambda: _curl(f"http://{first}/") is None, timeout=10)
    assert ec2.describe_security_groups(GroupIds=[web])["SecurityGroups"][0]["IpPermissions"] == []

    # ---- stop one: STOPPED with its reason arrives on the open page -------------------------------------
    page.goto(f"{server.endpoint}/console/clusters/default/tasks/{task_ids[0]}")
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

    others = [task_ids[1], closed_id]  # stopped before `taskvpc up` ends: their mounts go with them
    for task_id in others:
        ecs.stop_task(cluster="default", task=task_id)
    ecs.get_waiter("tasks_stopped").wait(
        cluster="default", tasks=others, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    assert errors == [], f"browser console errors: {errors}"
    assert outside == [], f"requests that left loopback: {outside}"
    assert (shots / "task-running.png").stat().st_size > 0
