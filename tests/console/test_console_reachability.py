"""The reachability page over the in-process transport: two tasks in different groups (a admits port 80
from b's members, b admits nothing), the matrix cells the rules decide, and "Run probes" reaching a fake
agent through the ``probes`` section and its ``probeResults`` coming back onto the page, a probe that
contradicts the rules flagged. (The real probes from real namespaces: tests/root/test_console_browser.py.)"""

from __future__ import annotations

import re
import time
from typing import Any

from taskvpc.agentapi.probes import ProbeResult, results_to_wire
from tests.console.support import Browser
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import InProcessServer

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


def test_matrix_shows_the_rules_and_the_probes(signed_in: Browser, server: InProcessServer) -> None:
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
    asked: list[dict[str, Any]] = []
    agent = _answering_agent(server, asked)
    try:
        register_web(ecs)
        subnet = default_subnets(ec2)["us-east-1a"]
        ids = {}
        for name, group in (("a", a), ("b", b)):
            [task] = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet, groups=[group]))[
                "tasks"
            ]
            agent.wait_for_task(task["taskArn"])
            ids[name] = task["taskArn"].rsplit("/", 1)[1]
        path = f"/console/vpcs/{vpc['VpcId']}/reachability"
        deadline = time.monotonic() + 10
        while len(cells := _cells((page := signed_in.get(path)).text)) < 2:  # ENIs attach as reported
            assert time.monotonic() < deadline, page.text
            time.sleep(0.05)
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
