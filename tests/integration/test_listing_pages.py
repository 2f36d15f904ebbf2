"""Listings paged in SQL, on both backends: paging through any listing with any MaxResults and filters
returns exactly the filtered set, in the listing's order, with no duplicates (hypothesis).

The expected sets are computed here from the unfiltered, unpaged answers with the filters' documented
meaning (exact values, ``*``/``?`` wildcards, tags), independently of where the server applies them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from taskvpc.control.ec2 import describe
from taskvpc.netmodel import filters
from taskvpc.store import ec2_repo
from tests.integration.ecs_support import register_web
from tests.integration.server import REGION

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _matches(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def _any(patterns: list[str], values: list[str]) -> bool:
    return any(_matches(p, v) for p in patterns for v in values)


def _pages(call: Callable[..., dict[str, Any]], key: str, token_name: str, **params: Any) -> list[Any]:
    """Every item of every page, asserting the pages are never empty but the last may be."""
    items: list[Any] = []
    token = None
    for _ in range(1000):
        answer = call(**params, **({token_name: token} if token else {}))
        items += answer[key]
        token = answer.get(token_name)
        if not token:
            return items
        assert answer[key], "a page that promises more is not empty"
    raise AssertionError("paging did not end")


# ---- EC2: security groups and their rules -----------------------------------------------------------


def _groups(ec2: Any) -> dict[str, Any]:
    """24 groups in two VPCs with names, descriptions, tags and rules to filter on."""
    other_vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    default_vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    made: list[str] = []
    for i in range(24):
        tags = [{"Key": "env", "Value": "prod" if i % 2 == 0 else "dev"}]
        if i % 5 == 0:
            tags.append({"Key": "team", "Value": f"t{i % 3}"})
        group_id = ec2.create_security_group(
            GroupName=f"{('web', 'db', 'cache')[i % 3]}-{i:02d}",
            Description=f"d{i % 3}",
            VpcId=other_vpc if i % 4 == 3 else default_vpc,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
        )["GroupId"]
        made.append(group_id)
        if i % 4 == 2:
            ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": 80,
                        "ToPort": 80,
                        "UserIdGroupPairs": [{"GroupId": made[i - 1]}],
                    }
                ],
            )
        if i % 3 == 0:
            ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[
                    {
                        "IpProtocol": "udp",
                        "FromPort": 53,
                        "ToPort": 53,
                        "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
                    }
                ],
            )
    return {"vpcs": [default_vpc, other_vpc], "groups": made}


def _group_filter(name: str, values: list[str], group: dict[str, Any], names: dict[str, str]) -> bool:
    tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
    if name.startswith("tag:"):
        return name[4:] in tags and _any(values, [tags[name[4:]]])
    ingress = group["IpPermissions"]
    candidates = {
        "group-id": [group["GroupId"]],
        "group-name": [group["GroupName"]],
        "vpc-id": [group["VpcId"]],
        "description": [group["Description"]],
        "tag-key": list(tags),
        "ip-permission.protocol": [p["IpProtocol"] for p in ingress],
        "ip-permission.group-name": [
            names[pair["GroupId"]] for p in ingress for pair in p["UserIdGroupPairs"]
        ],
    }[name]
    return _any(values, candidates)


def _group_filters(made: dict[str, Any]) -> st.SearchStrategy[list[dict[str, Any]]]:
    names = [f"{('web', 'db', 'cache')[i % 3]}-{i:02d}" for i in range(24)]
    one = st.one_of(
        st.tuples(
            st.just("group-name"),
            st.lists(st.sampled_from([*names, "web-*", "db-0?", "none"]), min_size=1, max_size=3),
        ),
        st.tuples(st.just("group-id"), st.lists(st.sampled_from(made["groups"]), min_size=1, max_size=4)),
        st.tuples(st.just("vpc-id"), st.lists(st.sampled_from(made["vpcs"]), min_size=1, max_size=2)),
        st.tuples(
            st.just("tag:env"), st.lists(st.sampled_from(["prod", "dev", "p*", "x"]), min_size=1, max_size=2)
        ),
        st.tuples(st.just("tag-key"), st.just(["team"])),
        st.tuples(
            st.just("description"), st.lists(st.sampled_from(["d0", "d1", "d*"]), min_size=1, max_size=2)
        ),
        st.tuples(st.just("ip-permission.protocol"), st.sampled_from([["tcp"], ["udp"], ["tcp", "udp"]])),
        st.tuples(
            st.just("ip-permission.group-name"),
            st.lists(st.sampled_from([*names, "*"]), min_size=1, max_size=2),
        ),
    )
    return st.lists(one, max_size=2).map(lambda pairs: [{"Name": n, "Values": v} for n, v in pairs])


def test_security_group_pages_are_the_filtered_set(ec2: Any) -> None:
    made = _groups(ec2)
    everything = ec2.describe_security_groups()["SecurityGroups"]
    assert len(everything) == 24 + 2  # and the two VPCs' default groups
    names = {g["GroupId"]: g["GroupName"] for g in everything}

    @PROPERTY
    @given(filters=_group_filters(made), max_results=st.integers(5, 30))
    def check(filters: list[dict[str, Any]], max_results: int) -> None:
        expected = [
            g["GroupId"]
            for g in everything
            if all(_group_filter(f["Name"], f["Values"], g, names) for f in filters)
        ]
        paged = _pages(
            ec2.describe_security_groups,
            "SecurityGroups",
            "NextToken",
            Filters=filters,
            MaxResults=max_results,
        )
        got = [g["GroupId"] for g in paged]
        assert got == sorted(expected), (filters, max_results)
        assert len(set(got)) == len(got)
        by_id = {g["GroupId"]: g for g in everything}
        assert all(g == by_id[g["GroupId"]] for g in paged)  # a page shows a group as the full answer does

    check()


def test_security_group_rule_pages_are_the_filtered_set(ec2: Any) -> None:
    made = _groups(ec2)
    everything = ec2.describe_security_group_rules()["SecurityGroupRules"]
    assert len(everything) == 26 * 1 + 2 + 6 + 8  # egress each, default ingress x2, tcp x6, udp x8

    @PROPERTY
    @given(
        group_ids=st.none() | st.lists(st.sampled_from(made["groups"]), min_size=1, max_size=5),
        max_results=st.integers(5, 30),
    )
    def check(group_ids: list[str] | None, max_results: int) -> None:
        filters = [{"Name": "group-id", "Values": group_ids}] if group_ids else []
        expected = sorted(
            r["SecurityGroupRuleId"] for r in everything if group_ids is None or r["GroupId"] in group_ids
        )
        paged = _pages(
            ec2.describe_security_group_rules,
            "SecurityGroupRules",
            "NextToken",
            Filters=filters,
            MaxResults=max_results,
        )
        got = [r["SecurityGroupRuleId"] for r in paged]
        assert got == expected

    check()


# ---- ECS: task definitions ---------------------------------------------------------------------------


def test_task_definition_pages_are_the_filtered_set(ecs: Any) -> None:
    registered: list[tuple[str, int, str]] = []
    for family in ("alpha", "beta", "gamma"):
        for _ in range(5):
            td = ecs.register_task_definition(
                family=family, containerDefinitions=[{"name": "c", "image": "busybox", "memory": 16}]
            )["taskDefinition"]
            registered.append((family, td["revision"], td["taskDefinitionArn"]))
    inactive = {arn for family, revision, arn in registered if revision in (2, 5) and family != "gamma"}
    inactive |= {arn for family, _r, arn in registered if family == "gamma"}
    for arn in inactive:
        ecs.deregister_task_definition(taskDefinition=arn)

    @PROPERTY
    @given(
        family=st.none() | st.sampled_from(["alpha", "beta", "gamma", "delta"]),
        status=st.sampled_from(["ACTIVE", "INACTIVE"]),
        descending=st.booleans(),
        max_results=st.integers(1, 20),
    )
    def check(family: str | None, status: str, descending: bool, max_results: int) -> None:
        params: dict[str, Any] = {
            "status": status,
            "sort": "DESC" if descending else "ASC",
            "maxResults": max_results,
        }
        if family:
            params["familyPrefix"] = family
        expected = [
            arn
            for f, _r, arn in sorted(registered, reverse=descending)
            if (family is None or f == family) and ((arn in inactive) == (status == "INACTIVE"))
        ]
        got = _pages(ecs.list_task_definitions, "taskDefinitionArns", "nextToken", **params)
        assert got == expected

    @PROPERTY
    @given(status=st.sampled_from(["ACTIVE", "INACTIVE", "ALL"]), max_results=st.integers(1, 5))
    def families(status: str, max_results: int) -> None:
        expected = {"ACTIVE": ["alpha", "beta"], "INACTIVE": ["gamma"], "ALL": ["alpha", "beta", "gamma"]}
        got = _pages(
            ecs.list_task_definition_families, "families", "nextToken", status=status, maxResults=max_results
        )
        assert got == expected[status]

    check()
    families()


# ---- filter values as SQL patterns ---------------------------------------------------------------------

_TEXT = st.text(alphabet="ab*?\\[]%_-É", max_size=6)


def test_sql_patterns_match_as_the_filters_do(api: Any, ec2: Any) -> None:
    """A value with wildcards and escapes selects in SQL (GLOB on SQLite, LIKE on PostgreSQL) exactly
    what the filter's own matcher accepts."""
    if api.control_plane is None:
        pytest.skip("needs the in-process server's store")
    db = api.control_plane.db
    vpc_id = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]

    @settings(max_examples=200, deadline=None)
    @given(value=_TEXT, pattern=_TEXT)
    def check(value: str, pattern: str) -> None:
        with db.transaction() as conn:
            ec2_repo.put_tags(conn, REGION, vpc_id, "vpc", [{"Key": "k", "Value": value}])
        for target in ("tag:k", "tag-value"):
            query = ec2_repo.PageQuery(matches=[ec2_repo.Match(target, [describe.sql_pattern(pattern)])])
            with db.read() as conn:
                selected = [d["VpcId"] for d in ec2_repo.page(conn, "vpcs", REGION, query)]
            assert (vpc_id in selected) == filters.value_matches(pattern, value), (target, pattern, value)

    check()


# ---- ECS: tasks and container instances -----------------------------------------------------------------


def test_task_and_instance_pages_are_the_filtered_set(api: Any, agents: Any) -> None:
    ecs = api.client("ecs")
    for _ in range(4):
        agents(cpu=4096, memory=8192).start()
    launched: dict[str, list[str]] = {}
    for family in ("alpha", "beta"):
        register_web(ecs, family, network_mode="bridge", cpu=None, memory=None)
        launched[family] = [t["taskArn"] for t in ecs.run_task(taskDefinition=family, count=7)["tasks"]]
    stopped = launched["alpha"][:3]
    for arn in stopped:
        ecs.stop_task(task=arn)
    instances = sorted(ecs.list_container_instances()["containerInstanceArns"])
    assert len(instances) == 4

    @PROPERTY
    @given(
        family=st.none() | st.sampled_from(["alpha", "beta", "gamma"]),
        desired=st.sampled_from(["RUNNING", "STOPPED"]),
        max_results=st.integers(1, 16),
    )
    def check(family: str | None, desired: str, max_results: int) -> None:
        params: dict[str, Any] = {"desiredStatus": desired, "maxResults": max_results}
        if family:
            params["family"] = family
        expected = sorted(
            arn
            for f, arns in launched.items()
            for arn in arns
            if (family is None or f == family) and ((arn in stopped) == (desired == "STOPPED"))
        )
        assert _pages(ecs.list_tasks, "taskArns", "nextToken", **params) == expected
        got = _pages(
            ecs.list_container_instances, "containerInstanceArns", "nextToken", maxResults=max_results
        )
        assert got == instances

    check()
