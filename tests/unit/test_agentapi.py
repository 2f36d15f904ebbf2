"""The agent contract (taskvpc.agentapi): every value survives to_wire/from_wire, sections are pluggable,
the gateway is computed once, reports are read strictly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.agentapi import answer
from taskvpc.agentapi.answer import DesiredState, Instance, Section
from taskvpc.agentapi.credentials import TaskCredentials
from taskvpc.agentapi.flowlogs import FlowLogWatch
from taskvpc.agentapi.loadbalancers import DesiredLoadBalancer, HealthCheck, LbTarget, LbTargetGroup
from taskvpc.agentapi.network import (
    Eni,
    SecurityGroup,
    Subnet,
    Vpc,
    rule_from_wire,
    rule_to_wire,
    subnet_gateway,
)
from taskvpc.agentapi.overlay import OverlayVpc, RemoteMember
from taskvpc.agentapi.probes import Probe
from taskvpc.agentapi.reports import ContainerReport, Report, TaskReport, WireError
from taskvpc.agentapi.tasks import (
    Condition,
    Dependency,
    DesiredContainer,
    DesiredTask,
    DockerVolumeConfig,
    EnvironmentFile,
    HealthCheckSpec,
    LinuxParameters,
    MountPoint,
    Tmpfs,
    Ulimit,
    Volume,
    VolumeFrom,
    VolumeScope,
)
from taskvpc.domain.lifecycle import DesiredStatus
from taskvpc.netmodel.security_groups import Rule

ARN = "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef"

names = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True)
texts = st.text(max_size=6)
small = st.integers(min_value=1, max_value=4096)
durations = st.integers(min_value=0, max_value=600).map(float)

enis = st.builds(
    Eni,
    attachment_id=texts,
    network_interface_id=st.from_regex(r"eni-[0-9a-f]{17}", fullmatch=True),
    mac_address=st.just("0e:00:00:00:00:05"),
    private_ipv4_address=st.just("172.31.0.5"),
    prefix_length=st.integers(min_value=16, max_value=28),
    gateway=st.just("172.31.0.1"),
    subnet_id=texts,
    vpc_id=texts,
    private_dns_name=texts,
    security_group_ids=st.lists(names, max_size=3).map(tuple),
)
containers = st.builds(
    DesiredContainer,
    name=names,
    essential=st.booleans(),
    image=texts,
    entry_point=st.lists(texts, max_size=2).map(tuple),
    command=st.lists(texts, max_size=2).map(tuple),
    environment=st.lists(st.tuples(names, texts), max_size=2).map(tuple),
    working_directory=st.none() | names,
    user=st.none() | names,
    depends_on=st.lists(st.builds(Dependency, names, st.sampled_from(Condition)), max_size=2).map(tuple),
    health_check=st.none()
    | st.builds(
        HealthCheckSpec,
        st.lists(names, min_size=1, max_size=2).map(tuple),
        durations.map(lambda d: d + 1),
        durations.map(lambda d: d + 1),
        small,
        durations,
    ),
    stop_timeout=st.none() | durations,
    start_timeout=st.none() | durations,
    cpu=st.integers(min_value=0, max_value=4096),
    memory=st.none() | small,
    memory_reservation=st.none() | small,
    ulimits=st.lists(
        st.builds(Ulimit, names, st.integers(-1, 2**31), st.integers(-1, 2**31)), max_size=2
    ).map(tuple),
    readonly_root_filesystem=st.booleans(),
    privileged=st.booleans(),
    linux_parameters=st.builds(
        LinuxParameters,
        st.lists(names, max_size=2).map(tuple),
        st.lists(names, max_size=2).map(tuple),
        st.booleans(),
        st.lists(st.builds(Tmpfs, names, small, st.lists(names, max_size=2).map(tuple)), max_size=2).map(
            tuple
        ),
        st.none() | small,
    ),
    mount_points=st.lists(st.builds(MountPoint, names, names, st.booleans()), max_size=2).map(tuple),
    volumes_from=st.lists(st.builds(VolumeFrom, names, st.booleans()), max_size=2).map(tuple),
    environment_files=st.lists(st.builds(EnvironmentFile, names, names), max_size=2).map(tuple),
    repository_credentials=st.none() | names,
)
volumes = st.builds(
    Volume,
    name=names,
    source_path=st.none() | names,
    docker=st.none()
    | st.builds(
        DockerVolumeConfig,
        st.sampled_from(VolumeScope),
        st.booleans(),
        names,
        st.lists(st.tuples(names, names), max_size=2, unique_by=lambda p: p[0]).map(tuple),
        st.lists(st.tuples(names, names), max_size=2, unique_by=lambda p: p[0]).map(tuple),
    ),
    unsupported=st.none() | st.sampled_from(["efsVolumeConfiguration", "configuredAtLaunch"]),
)
tasks = st.builds(
    DesiredTask,
    arn=st.just(ARN),
    desired_status=st.sampled_from(DesiredStatus),
    containers=st.lists(containers, max_size=3).map(tuple),
    eni=st.none() | enis,
    stop_reason=st.none() | names,
    family=texts,
    revision=st.integers(min_value=0, max_value=99),
    volumes=st.lists(volumes, max_size=3).map(tuple),
    task_cpu=st.none() | small,
    task_memory=st.none() | small,
    network_mode=st.sampled_from(["awsvpc", "host"]),
    cpu=st.integers(min_value=0, max_value=4096),
    memory=st.integers(min_value=0, max_value=4096),
)
rules = st.one_of(
    st.builds(
        Rule,
        st.sampled_from(["ingress", "egress"]),
        st.just("tcp"),
        st.just(80),
        st.just(8080),
        cidr_ipv4=st.just("10.0.0.0/8"),
    ),
    st.builds(
        Rule, st.sampled_from(["ingress", "egress"]), st.just("-1"), st.none(), st.none(), group_id=names
    ),
    st.builds(Rule, st.just("ingress"), st.just("icmp"), st.just(8), st.just(-1), cidr_ipv6=st.just("::/0")),
    st.builds(
        Rule, st.just("egress"), st.just("udp"), st.just(53), st.just(53), prefix_list_id=st.just("pl-1")
    ),
)


def _over_the_wire(doc: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(doc))  # JSON, as HTTP carries it
    return loaded


@settings(max_examples=80, deadline=None)
@given(tasks)
def test_a_task_survives_the_wire(task: DesiredTask) -> None:
    assert DesiredTask.from_wire(_over_the_wire(task.to_wire())) == task


@settings(max_examples=60, deadline=None)
@given(st.lists(rules, max_size=4))
def test_security_groups_survive_the_wire(found: list[Rule]) -> None:
    group = SecurityGroup(
        "sg-1",
        "vpc-1",
        tuple(r for r in found if r.direction == "ingress"),
        tuple(r for r in found if r.direction == "egress"),
    )
    assert SecurityGroup.from_wire(_over_the_wire(group.to_wire())) == group
    for rule in found:
        assert rule_from_wire(rule_to_wire(rule)) == rule


SAMPLE_LB = DesiredLoadBalancer(
    "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/web/0123456789abcdef",
    "web",
    "application",
    Vpc("vpc-1", ("172.31.0.0/16",), (Subnet.of("subnet-1", "172.31.16.0/20", "us-east-1b"),)),
    listeners=({"ListenerArn": "arn:l", "Port": 80, "Protocol": "HTTP", "DefaultActions": []},),
    rules=(
        {"RuleArn": "arn:r", "ListenerArn": "arn:l", "Priority": "default", "Conditions": [], "Actions": []},
    ),
    target_groups=(
        LbTargetGroup(
            "arn:tg/web/1",
            "HTTP",
            80,
            HealthCheck(interval=5),
            (LbTarget("172.31.16.9", 80, "healthy"),),
            (("deregistration_delay.timeout_seconds", "300"),),
        ),
    ),
)


def test_a_whole_answer_survives_the_wire() -> None:
    eni = Eni.from_ec2(
        {
            "NetworkInterfaceId": "eni-0123456789abcdef0",
            "MacAddress": "0E:00:00:00:00:05",
            "PrivateIpAddress": "172.31.16.5",
            "SubnetId": "subnet-1",
            "VpcId": "vpc-1",
            "PrivateDnsName": "ip-172-31-16-5.ec2.internal",
            "Groups": [{"GroupId": "sg-1"}],
        },
        "172.31.16.0/20",
        "att-1",
    )
    assert (eni.gateway, eni.prefix_length, eni.subnet_cidr, eni.mac) == (
        "172.31.16.1",
        20,
        "172.31.16.0/20",
        "0e:00:00:00:00:05",
    )
    subnet = Subnet.of("subnet-1", "172.31.16.0/20", "us-east-1b")
    assert subnet.gateway == eni.gateway == subnet_gateway("172.31.16.0/20")
    state = DesiredState.of(
        7,
        True,
        instance=Instance("DRAINING", "arn:ci", "default"),
        vpcs=(Vpc("vpc-1", ("172.31.0.0/16",), (subnet,)),),
        tasks=(DesiredTask(ARN, DesiredStatus.RUNNING, (DesiredContainer("app"),), eni=eni),),
        securityGroups=(
            SecurityGroup("sg-1", "vpc-1", (Rule("ingress", "tcp", 80, 80, cidr_ipv4="0.0.0.0/0"),)),
        ),
        credentials=(
            TaskCredentials(ARN, "arn:aws:iam::1:role/r", "ASIA1", "s", "t", "2026-12-05T13:00:00Z"),
        ),
        flowLogs=(FlowLogWatch(eni.network_interface_id, 60, frozenset({"REJECT"}), ("action",)),),
        loadBalancers=(SAMPLE_LB,),
        probes=(Probe("p1", ARN, "172.31.16.6", 80),),
        overlay=(OverlayVpc("vpc-1", 9, (RemoteMember("eni-2", "172.31.0.9", "169.254.192.7", ("sg-1",)),)),),
    )
    back = DesiredState.from_wire(_over_the_wire(state.to_wire()))
    assert back == state
    assert back.instance_status == "DRAINING" and back.eni_groups() == {eni.network_interface_id: ("sg-1",)}
    assert set(back.security_groups["vpc-1"]) == {"sg-1"}


def test_the_gateway_sent_is_the_gateway_used() -> None:
    """The agent never recomputes it: an answer's gateway is what the task and router get."""
    doc = DesiredTask(ARN, DesiredStatus.RUNNING, ()).to_wire()
    doc["eni"] = {
        "networkInterfaceId": "eni-1",
        "privateIpv4Address": "10.0.0.9",
        "prefixLength": 24,
        "gateway": "10.0.0.254",
    }
    task = DesiredTask.from_wire(doc)
    assert task.eni is not None and task.eni.gateway == "10.0.0.254"
    subnet = Subnet.from_wire({"subnetId": "s", "cidrBlock": "10.0.0.0/24", "gateway": "10.0.0.254"})
    assert subnet is not None and subnet.gateway == "10.0.0.254"
    assert Subnet.from_wire({"subnetId": "s", "cidrBlock": "10.0.0.0/24"}) is None  # no guessing


@dataclass(frozen=True)
class Toy:
    colour: str


def test_a_section_registered_with_one_line_travels_and_older_readers_ignore_it() -> None:
    toy: Section[Toy | None] = answer.register_section(
        Section(
            "toy",
            lambda v: Toy(v["colour"]) if isinstance(v, dict) else None,
            lambda t: t and {"colour": t.colour},
            lambda: None,
        )
    )
    try:
        doc = DesiredState.of(3, toy=Toy("green")).to_wire()
        assert doc["toy"] == {"colour": "green"}
        assert DesiredState.from_wire(doc)[toy] == Toy("green")
        assert DesiredState.from_wire({"generation": 3})[toy] is None
        with pytest.raises(ValueError):
            answer.register_section(toy)
    finally:
        del answer.SECTIONS["toy"]
    assert DesiredState.from_wire(doc).tasks == ()  # a section nobody knows is ignored


def test_reports_survive_the_wire_and_malformed_ones_are_refused() -> None:
    report = Report.of(
        [
            TaskReport(
                ARN,
                "RUNNING",
                "ATTACHED",
                1.5,
                2.5,
                None,
                (ContainerReport("app", "RUNNING", "r1", health_status="HEALTHY"),),
            ),
            TaskReport(ARN + "x", "STOPPED", reason="Essential container in task exited"),
        ]
    )
    assert Report.from_wire(_over_the_wire(report.to_wire())) == report
    bad: Any
    for bad in (
        {"tasks": 5},
        {"tasks": [{"knownStatus": "RUNNING"}]},
        {"tasks": [{"taskArn": "a", "containers": [{"status": "RUNNING"}]}]},
        {"tasks": [{"taskArn": "a", "containers": 5}]},
        {"tasks": [{"taskArn": "a", "pullStartedAt": "soon"}]},
        {"tasks": [{"taskArn": "a", "containers": [{"name": "x", "exitCode": True}]}]},
        [],
    ):
        with pytest.raises(WireError):
            Report.from_wire(bad)
