"""The console's network view models: load balancers, rules, target health, flow logs and the VPC layout
(tree and picture) from API answers, without a server."""

from __future__ import annotations

from typing import Any

from hypothesis import given, strategies as st

from taskvpc.console import layout_views as lv, network_views as nv

LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/0123456789abcdef"
TG_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api-tg/fedcba9876543210"
TG2_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-tg/0011223344556677"


def test_names_and_the_eni_description_come_from_arns() -> None:
    assert nv.name_from_arn(LB_ARN) == "web"
    assert nv.name_from_arn(TG_ARN) == "api-tg"
    assert nv.name_from_arn("not-an-arn") == "not-an-arn"
    assert nv.eni_description(LB_ARN) == "ELB app/web/0123456789abcdef"


def test_conditions_read_as_sentences() -> None:
    assert nv.condition_text({"Field": "path-pattern", "PathPatternConfig": {"Values": ["/a/*", "/b"]}}) == (
        "path-pattern is /a/* or /b"
    )
    assert nv.condition_text({"Field": "host-header", "Values": ["x.example"]}) == "host-header is x.example"
    header = {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-Env", "Values": ["blue"]}}
    assert nv.condition_text(header) == "http-header X-Env is blue"
    query = {
        "Field": "query-string",
        "QueryStringConfig": {"Values": [{"Key": "v", "Value": "2"}, {"Value": "x"}]},
    }
    assert nv.condition_text(query) == "query-string is v=2 or x"


def test_actions_link_target_groups_and_describe_the_rest() -> None:
    assert nv.action_rows({"Type": "forward", "TargetGroupArn": TG_ARN}) == [("forward to api-tg", "api-tg")]
    weighted = {
        "Type": "forward",
        "ForwardConfig": {
            "TargetGroups": [
                {"TargetGroupArn": TG_ARN, "Weight": 80},
                {"TargetGroupArn": TG2_ARN, "Weight": 20},
            ]
        },
    }
    assert nv.action_rows(weighted) == [
        ("forward to api-tg (weight 80)", "api-tg"),
        ("forward to web-tg (weight 20)", "web-tg"),
    ]
    fixed = {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404", "MessageBody": "no"}}
    assert nv.action_rows(fixed) == [("fixed response 404 “no”", "")]
    redirect = {
        "Type": "redirect",
        "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"},
    }
    assert nv.action_rows(redirect) == [("redirect HTTP_301 to HTTPS://#{host}:443/#{path}?#{query}", "")]


def test_load_balancer_view_puts_eni_addresses_in_their_zones_and_rules_in_order() -> None:
    lb = {
        "LoadBalancerName": "web",
        "LoadBalancerArn": LB_ARN,
        "Type": "application",
        "Scheme": "internal",
        "State": {"Code": "active"},
        "DNSName": "internal-web-1.us-east-1.elb.amazonaws.com",
        "VpcId": "vpc-1",
        "SecurityGroups": ["sg-1"],
        "AvailabilityZones": [
            {"ZoneName": "us-east-1b", "SubnetId": "subnet-b"},
            {"ZoneName": "us-east-1a", "SubnetId": "subnet-a"},
        ],
    }
    enis = [
        {"NetworkInterfaceId": "eni-a", "SubnetId": "subnet-a", "PrivateIpAddress": "10.0.1.5"},
        {"NetworkInterfaceId": "eni-b", "SubnetId": "subnet-b", "PrivateIpAddress": "10.0.2.5"},
    ]
    rules = [
        {
            "Priority": "default",
            "Conditions": [],
            "Actions": [{"Type": "forward", "TargetGroupArn": TG2_ARN}],
        },
        {"Priority": "20", "Conditions": [{"Field": "host-header", "Values": ["b"]}], "Actions": []},
        {"Priority": "3", "Conditions": [{"Field": "host-header", "Values": ["a"]}], "Actions": []},
    ]
    listeners = [
        ({"ListenerArn": "l2", "Protocol": "HTTP", "Port": 8080}, []),
        ({"ListenerArn": "l1", "Protocol": "HTTP", "Port": 80}, rules),
    ]
    view = nv.load_balancer_view(lb, enis, listeners)
    assert (view.name, view.lb_type, view.scheme, view.state) == ("web", "application", "internal", "active")
    assert view.zones == (
        nv.ZoneRow("us-east-1a", "subnet-a", ("10.0.1.5",), ("eni-a",)),
        nv.ZoneRow("us-east-1b", "subnet-b", ("10.0.2.5",), ("eni-b",)),
    )
    assert [listener.port for listener in view.listeners] == ["80", "8080"]
    assert [rule.priority for rule in view.listeners[0].rules] == ["3", "20", "default"]
    assert view.listeners[0].rules[2].actions == (("forward to web-tg", "web-tg"),)


def test_target_rows_sort_and_keep_state_and_reason() -> None:
    rows = nv.target_rows(
        [
            {"Target": {"Id": "10.0.0.9", "Port": 80}, "TargetHealth": {"State": "healthy"}},
            {
                "Target": {"Id": "10.0.0.1", "Port": 80, "AvailabilityZone": "us-east-1a"},
                "TargetHealth": {
                    "State": "unhealthy",
                    "Reason": "Target.Timeout",
                    "Description": "timed out",
                },
            },
        ]
    )
    assert rows == [
        nv.TargetRow("10.0.0.1", "80", "us-east-1a", "unhealthy", "Target.Timeout", "timed out"),
        nv.TargetRow("10.0.0.9", "80", "", "healthy", "", ""),
    ]
    group = {
        "HealthCheckProtocol": "HTTP",
        "HealthCheckPath": "/h",
        "HealthCheckPort": "traffic-port",
        "HealthCheckIntervalSeconds": 30,
    }
    assert nv.health_check_text(group) == "HTTP /h on traffic-port every 30 s"


def test_flow_log_rows_know_the_resource_kind() -> None:
    rows = nv.flow_log_rows(
        [
            {"FlowLogId": "fl-2", "ResourceId": "vpc-1", "TrafficType": "ALL", "LogGroupName": "g"},
            {"FlowLogId": "fl-1", "ResourceId": "eni-1", "TrafficType": "REJECT", "LogGroupName": "h"},
        ]
    )
    assert [(r.flow_log_id, r.resource_kind, r.traffic_type, r.log_group) for r in rows] == [
        ("fl-1", "eni", "REJECT", "h"),
        ("fl-2", "vpc", "ALL", "g"),
    ]


# ---- the VPC layout ------------------------------------------------------------------------------------

INSTANCE = "arn:aws:ecs:us-east-1:123456789012:container-instance/default/abc"


def _task(task_id: str, eni: str, instance: str | None = INSTANCE) -> dict[str, Any]:
    task: dict[str, Any] = {
        "taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/default/{task_id}",
        "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/default",
        "lastStatus": "RUNNING",
        "attachments": [
            {"type": "ElasticNetworkInterface", "details": [{"name": "networkInterfaceId", "value": eni}]}
        ],
    }
    if instance:
        task["containerInstanceArn"] = instance
    return task


def test_layout_tree_puts_task_enis_under_their_instance_and_others_beside() -> None:
    vpc = {"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16"}
    subnets = [
        {
            "SubnetId": "subnet-b",
            "AvailabilityZone": "us-east-1b",
            "CidrBlock": "10.0.2.0/24",
            "VpcId": "vpc-1",
        },
        {
            "SubnetId": "subnet-a",
            "AvailabilityZone": "us-east-1a",
            "CidrBlock": "10.0.1.0/24",
            "VpcId": "vpc-1",
        },
        {
            "SubnetId": "subnet-x",
            "AvailabilityZone": "us-east-1a",
            "CidrBlock": "10.9.1.0/24",
            "VpcId": "vpc-9",
        },
    ]
    enis = [
        {"NetworkInterfaceId": "eni-2", "SubnetId": "subnet-a", "PrivateIpAddress": "10.0.1.20"},
        {"NetworkInterfaceId": "eni-1", "SubnetId": "subnet-a", "PrivateIpAddress": "10.0.1.10"},
        {
            "NetworkInterfaceId": "eni-lb",
            "SubnetId": "subnet-b",
            "PrivateIpAddress": "10.0.2.5",
            "Description": "ELB app/web/1",
            "Status": "in-use",
        },
        {"NetworkInterfaceId": "eni-3", "SubnetId": "subnet-b", "PrivateIpAddress": "10.0.2.30"},
    ]
    tasks = [_task("t1", "eni-1"), _task("t2", "eni-2"), _task("t3", "eni-3", instance=None)]
    instances = [{"containerInstanceArn": INSTANCE, "ec2InstanceId": "i-0abc"}]
    layout = lv.vpc_layout(vpc, subnets, enis, tasks, instances)
    assert [z.name for z in layout.zones] == ["us-east-1a", "us-east-1b"]
    [a] = layout.zones[0].subnets
    [host] = a.hosts
    assert (host.label, host.container_instance) == ("i-0abc", "abc")
    assert [(e.eni_id, e.ip, e.task_id, e.cluster) for e in host.enis] == [
        ("eni-1", "10.0.1.10", "t1", "default"),
        ("eni-2", "10.0.1.20", "t2", "default"),
    ]
    [b] = layout.zones[1].subnets
    assert [h.label for h in b.hosts] == [lv.NO_INSTANCE]
    assert [e.eni_id for e in b.other_enis] == ["eni-lb"]
    assert lv.eni_text(b.other_enis[0]) == "eni-lb 10.0.2.5 · ELB app/web/1"


def test_picture_links_task_lines_and_nests_its_boxes() -> None:
    layout = lv.vpc_layout(
        {"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16"},
        [{"SubnetId": "subnet-a", "AvailabilityZone": "us-east-1a", "CidrBlock": "10.0.1.0/24"}],
        [{"NetworkInterfaceId": "eni-1", "SubnetId": "subnet-a", "PrivateIpAddress": "10.0.1.10"}],
        [_task("0123456789abcdef0123456789abcdef", "eni-1")],
        [{"containerInstanceArn": INSTANCE, "ec2InstanceId": "i-0abc"}],
    )
    picture = lv.picture(layout)
    [link] = [label for label in picture.labels if label.href]
    assert link.href == "/clusters/default/tasks/0123456789abcdef0123456789abcdef"
    assert link.text == "eni-1 10.0.1.10 · task 01234567… RUNNING"
    assert [r.kind for r in picture.rects] == ["vpc", "zone", "subnet", "host"]


def test_an_empty_vpc_says_so() -> None:
    picture = lv.picture(lv.vpc_layout({"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16"}, [], [], [], []))
    assert [label.text for label in picture.labels][-1] == "No subnets in this VPC."


def _inside(inner: lv.Rect, outer: lv.Rect) -> bool:
    return (
        outer.x <= inner.x
        and outer.y <= inner.y
        and inner.x + inner.width <= outer.x + outer.width
        and inner.y + inner.height <= outer.y + outer.height
    )


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdef"), st.integers(0, 3), st.integers(0, 3), st.integers(0, 2)),
        min_size=1,
        max_size=6,
    )
)
def test_every_box_lies_inside_its_parent_and_siblings_do_not_overlap(
    shape: list[tuple[str, int, int, int]],
) -> None:
    """Any mix of zones, subnets, instances and ENIs: each box nests in the one it belongs to, and no two
    boxes of one kind overlap; every label lies inside the picture."""
    subnets, enis, tasks, instances = [], [], [], []
    for index, (zone, hosts, per_host, others) in enumerate(shape):
        subnet_id = f"subnet-{index}"
        subnets.append(
            {"SubnetId": subnet_id, "AvailabilityZone": f"us-east-1{zone}", "CidrBlock": "10.0.0.0/24"}
        )
        for other in range(others):
            enis.append(
                {
                    "NetworkInterfaceId": f"eni-o{index}-{other}",
                    "SubnetId": subnet_id,
                    "PrivateIpAddress": "x",
                }
            )
        for host in range(hosts):
            arn = f"{INSTANCE}-{index}-{host}"
            instances.append({"containerInstanceArn": arn, "ec2InstanceId": f"i-{index}{host}"})
            for n in range(per_host):
                eni = f"eni-{index}-{host}-{n}"
                enis.append({"NetworkInterfaceId": eni, "SubnetId": subnet_id, "PrivateIpAddress": "y"})
                tasks.append(_task(f"t{index}{host}{n}", eni, arn))
    picture = lv.picture(
        lv.vpc_layout({"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16"}, subnets, enis, tasks, instances)
    )
    vpc = picture.rects[0]
    assert (vpc.width, vpc.height) == (picture.width, picture.height)
    parents = {"zone": "vpc", "subnet": "zone", "host": "subnet"}
    for kind, parent_kind in parents.items():
        boxes = [r for r in picture.rects if r.kind == kind]
        parents_of_kind = [r for r in picture.rects if r.kind == parent_kind]
        for box in boxes:
            assert any(_inside(box, parent) for parent in parents_of_kind), (kind, box)
        for i, first in enumerate(boxes):
            for second in boxes[i + 1 :]:
                apart = (
                    first.x + first.width <= second.x
                    or second.x + second.width <= first.x
                    or first.y + first.height <= second.y
                    or second.y + second.height <= first.y
                )
                assert apart, (first, second)
    for label in picture.labels:  # every line fits inside its innermost box at the widths CHAR assumes
        holding = [
            r for r in picture.rects if r.x <= label.x < r.x + r.width and r.y < label.y <= r.y + r.height
        ]
        assert holding, label
        innermost = min(holding, key=lambda r: r.width * r.height)
        assert label.x + len(label.text) * lv.CHAR <= innermost.x + innermost.width, (label, innermost)


def test_service_view_names_and_links_its_target_groups() -> None:
    from taskvpc.console import views

    service = {
        "serviceName": "svc",
        "loadBalancers": [
            {"targetGroupArn": TG_ARN, "containerName": "app", "containerPort": 80},
            {"loadBalancerName": "classic", "containerName": "app", "containerPort": 81},
        ],
    }
    assert views.service_view(service).load_balancers == (
        ("api-tg → app:80", "api-tg"),
        ("classic → app:81", ""),
    )
