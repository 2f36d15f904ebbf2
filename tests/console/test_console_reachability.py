"""The reachability page over the in-process transport: two tasks in different groups (a admits port 80
from b's members, b admits nothing), the matrix cells the rules decide, and "Run probes" reaching a fake
agent through the ``probes`` section and its ``probeResults`` coming back onto the page, a probe that
contradicts the rules flagged. (The real probes from real namespaces: tests/root/test_console_browser.py.)"""

from __future__ import annotations

import asyncio
import importlib
import re
import time
from typing import Any

import pytest

from taskvpc.agentapi.probes import ProbeResult, results_to_wire
from taskvpc.control.probes import BOOK
from tests.console.support import Browser
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import InProcessServer
from tests.support.inprocess import _asgi_headers

# The page module (the package re-exports its page function under the same name).
reachability_page = importlib.import_module("taskvpc.console.pages.reachability")

_CELL = re.compile(
    r'<td class="r-(?P<state>\w+)" data-source="(?P<src>\w+)" data-destination="(?P<dst>\w+)" '
    r'data-port="(?P<port>\d+)" data-rules="(?P<rules>\w+)" data-probe="(?P<probe>\w*)"'
)


def _cells(text: str) -> dict[tuple[str, str], dict[str, str]]:
    return {(m["src"], m["dst"]): m.groupdict() for m in _CELL.finditer(text)}


def _answering_agent(server: InProcessServer, asked: list[dict[str, Any]]) -> FakeAgent:
    """A fake agent that runs tasks and says every probe it is given connected."""
    agent = FakeAgent(server)
    react = agent._react

    def react_and_probe(answer: dict[str, Any]) -> None:
        react(answer)
        fresh = [p for p in answer.get("probes", []) if p not in asked]
        if fresh:
            asked.extend(fresh)
            results = tuple(ProbeResult(p["probeId"], "connected", 0.2) for p in fresh)
            agent.request("POST", f"/instances/{agent.id}/report", results_to_wire(results))

    agent._react = react_and_probe  # type: ignore[method-assign]
    return agent.start(auto=True, wait=1.0)


def _two_groups(server: InProcessServer, agent: FakeAgent) -> tuple[str, dict[str, str]]:
    """Task "a" in a group admitting port 80 from group b's members, task "b" in b (admits nothing):
    (the default VPC's id, {name: task id})."""
    ec2, ecs = server.client("ec2"), server.client("ecs")
    [vpc] = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    a = ec2.create_security_group(GroupName="a", Description="a", VpcId=vpc["VpcId"])["GroupId"]
    b = ec2.create_security_group(GroupName="b", Description="b", VpcId=vpc["VpcId"])["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=a,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": b}]}
        ],
    )
    register_web(ecs)
    subnet = default_subnets(ec2)["us-east-1a"]
    ids = {}
    for name, group in (("a", a), ("b", b)):
        [task] = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet, groups=[group]))[
            "tasks"
        ]
        agent.wait_for_task(task["taskArn"])
        ids[name] = task["taskArn"].rsplit("/", 1)[1]
    return str(vpc["VpcId"]), ids


def _wait_for_cells(browser: Browser, path: str) -> Any:
    deadline = time.monotonic() + 10
    while len(_cells((page := browser.get(path)).text)) < 2:  # ENIs attach as the agent reports
        assert time.monotonic() < deadline, page.text
        time.sleep(0.05)
    return page


def test_matrix_shows_the_rules_and_the_probes(signed_in: Browser, server: InProcessServer) -> None:
    asked: list[dict[str, Any]] = []
    agent = _answering_agent(server, asked)
    try:
        vpc_id, ids = _two_groups(server, agent)
        path = f"/console/vpcs/{vpc_id}/reachability"
        page = _wait_for_cells(signed_in, path)
        cells = _cells(page.text)
        assert page.status == 200
        assert cells[(ids["b"], ids["a"])]["rules"] == "allowed"
        assert cells[(ids["a"], ids["b"])]["rules"] == "denied"
        assert all(c["probe"] == "" for c in cells.values())
        assert "sg-" in page.text and "not probed" in page.text

        probed = signed_in.post(path + "/probe", {})
        assert probed.status == 303 and probed.header("location") == path
        assert {(p["taskArn"].rsplit("/", 1)[1], p["port"]) for p in asked} == {
            (ids["a"], 80),
            (ids["b"], 80),
        }
        after = signed_in.get(path)
        cells = _cells(after.text)
        agreed = cells[(ids["b"], ids["a"])]
        assert (agreed["state"], agreed["rules"], agreed["probe"]) == ("allowed", "allowed", "connected")
        flagged = cells[(ids["a"], ids["b"])]
        assert (flagged["state"], flagged["rules"], flagged["probe"]) == ("mismatch", "denied", "connected")
        assert "1 where the probe and the rules disagree" in after.text
        assert signed_in.post(path + "/probe", {}, csrf=None).status == 403  # no token: nothing asked
    finally:
        agent.stop()


def test_an_unknown_vpc_is_the_ec2_error(signed_in: Browser) -> None:
    page = signed_in.get("/console/vpcs/vpc-0123456789abcdef0/reachability")
    assert page.status == 400 and "InvalidVpcID.NotFound" in page.text


def test_an_empty_vpc_explains_itself(signed_in: Browser, server: InProcessServer) -> None:
    [vpc] = server.client("ec2").describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    page = signed_in.get(f"/console/vpcs/{vpc['VpcId']}/reachability")
    assert page.status == 200 and 'id="reachability-empty"' in page.text


def test_the_stream_sends_the_panel_and_again_when_a_probe_answers(
    signed_in: Browser, server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = FakeAgent(server).start(auto=True, wait=1.0)
    try:
        vpc_id, ids = _two_groups(server, agent)
        page = _wait_for_cells(signed_in, f"/console/vpcs/{vpc_id}/reachability")
    finally:
        agent.stop()
    assert f'sse-connect="/console/vpcs/{vpc_id}/reachability/events" sse-swap="reachability"' in page.text
    monkeypatch.setattr(reachability_page, "_REFRESH", 0.1)
    transport = server.transport
    assert transport is not None
    [b_task] = server.client("ecs").describe_tasks(tasks=[ids["b"]])["tasks"]
    [a_cell] = [c for c in _cells(page.text).values() if c["src"] == ids["b"] and c["dst"] == ids["a"]]
    a_ip = re.search(rf"{ids['a'][:8]}</a> :80<br><small>([0-9.]+)", page.text)
    assert a_ip is not None and a_cell["probe"] == ""
    instance = b_task["containerInstanceArn"].rsplit("/", 1)[1]
    sent: list[str] = []
    done = asyncio.Event()

    async def open_stream() -> None:
        path = f"/console/vpcs/{vpc_id}/reachability/events"
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
                sent.append(body.decode())
                if len(sent) == 1:  # b's agent answers a probe to a:80
                    probe = BOOK.add(instance, b_task["taskArn"], a_ip[1], 80, time.time())
                    BOOK.record(instance, [ProbeResult(probe.probe_id, "connected", 0.7)], time.time())
                else:
                    done.set()

        await asyncio.wait_for(transport.app(scope, receive, send), 10)

    asyncio.run_coroutine_threadsafe(open_stream(), transport.loop).result(15)
    assert len(sent) == 2
    assert sent[0].startswith("event: reachability\n") and "not probed" in sent[0]
    assert 'data-probe="connected"' in sent[1] and "probe: connected 0.7 ms" in sent[1]
