"""The console's pure parts: view models from API answers, API parameters from forms, the session cookie."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from taskvpc.console import session as sessions, views


def _form(**fields: str | list[str]) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in fields.items()}


TASK = {
    "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/default/0123456789abcdef0123456789abcdef",
    "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/default",
    "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
    "lastStatus": "STOPPED",
    "desiredStatus": "STOPPED",
    "stoppedReason": "Essential container in task exited",
    "stopCode": "EssentialContainerExited",
    "launchType": "EC2",
    "attachments": [
        {
            "type": "ElasticNetworkInterface",
            "status": "DELETED",
            "details": [
                {"name": "subnetId", "value": "subnet-1"},
                {"name": "networkInterfaceId", "value": "eni-1"},
                {"name": "macAddress", "value": "0e:00:00:00:00:01"},
                {"name": "privateIPv4Address", "value": "172.31.0.10"},
            ],
        }
    ],
    "containers": [
        {"name": "app", "image": "busybox", "lastStatus": "STOPPED", "exitCode": 0, "reason": "done"}
    ],
}


def test_task_view_reads_the_eni_containers_and_reasons() -> None:
    view = views.task_view(TASK, ("sg-1",))
    assert view.task_id == "0123456789abcdef0123456789abcdef"
    assert (view.cluster, view.task_definition) == ("default", "web:3")
    assert view.eni == {
        "subnetId": "subnet-1",
        "networkInterfaceId": "eni-1",
        "macAddress": "0e:00:00:00:00:01",
        "privateIPv4Address": "172.31.0.10",
    }
    assert view.attachment_status == "DELETED"
    assert [(c.name, c.exit_code, c.reason) for c in view.containers] == [("app", "0", "done")]
    assert view.stopped_reason.startswith("Essential") and not view.stoppable
    pending = views.task_view(
        {**TASK, "desiredStatus": "RUNNING", "attachments": [], "containers": [{"name": "a"}]}
    )
    assert pending.eni == {} and pending.stoppable and pending.containers[0].exit_code == ""


def test_run_task_params() -> None:
    form = _form(
        taskDefinition="web:1",
        launchType="EC2",
        count="2",
        subnets=["subnet-a", "subnet-b"],
        securityGroups=["sg-1"],
        assignPublicIp="ENABLED",
    )
    assert views.run_task_params("default", form) == {
        "cluster": "default",
        "taskDefinition": "web:1",
        "launchType": "EC2",
        "count": 2,
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": ["subnet-a", "subnet-b"],
                "securityGroups": ["sg-1"],
                "assignPublicIp": "ENABLED",
            }
        },
    }
    assert "networkConfiguration" not in views.run_task_params("c", _form(taskDefinition="web"))
    for bad in (
        _form(taskDefinition=""),
        _form(taskDefinition="w", count="0"),
        _form(taskDefinition="w", launchType="MOON"),
        _form(taskDefinition="w", securityGroups=["sg-1"]),
    ):
        with pytest.raises(views.FormError):
            views.run_task_params("c", bad)


def test_task_definition_from_form() -> None:
    form = _form(
        family="web",
        networkMode="awsvpc",
        taskCpu="256",
        taskMemory="512",
        containerName="app",
        image="busybox",
        containerMemory="128",
        portMappings="80, 53/udp",
        entryPoint="sh,-c",
        command="httpd -f -p 80",
        logGroup="/ecs/web",
        taskRoleArn="arn:aws:iam::1:role/r",
    )
    assert views.task_definition_from_form(form, "us-east-1") == {
        "family": "web",
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "512",
        "taskRoleArn": "arn:aws:iam::1:role/r",
        "containerDefinitions": [
            {
                "name": "app",
                "image": "busybox",
                "essential": True,
                "memory": 128,
                "portMappings": [
                    {"containerPort": 80, "protocol": "tcp"},
                    {"containerPort": 53, "protocol": "udp"},
                ],
                "entryPoint": ["sh", "-c"],
                "command": ["httpd -f -p 80"],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/ecs/web",
                        "awslogs-region": "us-east-1",
                        "awslogs-stream-prefix": "web",
                    },
                },
            }
        ],
    }
    for bad in ("0", "70000", "80/sctp", "eighty"):
        with pytest.raises(views.FormError):
            views.parse_port_mappings(bad)
    with pytest.raises(views.FormError):
        views.task_definition_from_form(_form(family="f", containerName="a", image="i", taskMemory="-1"), "r")
    with pytest.raises(views.FormError):
        views.task_definition_from_form(_form(family="f", containerName="a", image="i", networkMode="x"), "r")


def test_pasted_description_loses_the_members_only_a_description_has() -> None:
    text = (
        '{"taskDefinition": {"family": "f", "revision": 2, "status": "ACTIVE", "containerDefinitions": []}}'
    )
    assert views.task_definition_from_json(text) == {"family": "f", "containerDefinitions": []}
    for bad in ("[1]", "{", ""):
        with pytest.raises(views.FormError):
            views.task_definition_from_json(bad)


def test_rule_rows_one_per_source_and_each_revokes_itself() -> None:
    permissions = [
        {
            "IpProtocol": "tcp",
            "FromPort": 80,
            "ToPort": 80,
            "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "web"}, {"CidrIp": "10.0.0.0/8"}],
            "UserIdGroupPairs": [{"GroupId": "sg-2", "UserId": "1"}],
        },
        {"IpProtocol": "-1", "IpRanges": [], "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
        {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "1.2.3.4/32"}]},
        {"IpProtocol": "udp", "FromPort": 1000, "ToPort": 2000, "IpRanges": [{"CidrIp": "1.2.3.4/32"}]},
    ]
    rows = views.rule_rows(permissions)
    assert [(r.protocol, r.ports, r.source, r.description) for r in rows] == [
        ("tcp", "80", "0.0.0.0/0", "web"),
        ("tcp", "80", "10.0.0.0/8", ""),
        ("tcp", "80", "sg-2", ""),
        ("All", "All", "::/0", ""),
        ("icmp", "All", "1.2.3.4/32", ""),
        ("udp", "1000-2000", "1.2.3.4/32", ""),
    ]
    assert rows[0].revoke == {
        "IpProtocol": "tcp",
        "FromPort": 80,
        "ToPort": 80,
        "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
    }
    assert views.revoke_permission(rows[2].revoke_json) == {
        "IpProtocol": "tcp",
        "FromPort": 80,
        "ToPort": 80,
        "UserIdGroupPairs": [{"GroupId": "sg-2"}],
    }


def test_permission_from_form() -> None:
    assert views.permission_from_form(_form(protocol="tcp", ports="8000-8080", source="0.0.0.0/0")) == {
        "IpProtocol": "tcp",
        "FromPort": 8000,
        "ToPort": 8080,
        "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
    }
    assert views.permission_from_form(
        _form(protocol="udp", ports="53", source="sg-1", description="dns")
    ) == {
        "IpProtocol": "udp",
        "FromPort": 53,
        "ToPort": 53,
        "UserIdGroupPairs": [{"GroupId": "sg-1", "Description": "dns"}],
    }
    assert views.permission_from_form(_form(protocol="-1", source="::/0")) == {
        "IpProtocol": "-1",
        "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
    }
    for bad in (
        _form(protocol="tcp", ports="", source="0.0.0.0/0"),
        _form(protocol="tcp", ports="80"),
        _form(protocol="gre", ports="1", source="0.0.0.0/0"),
        _form(protocol="tcp", ports="1-x", source="s"),
    ):
        with pytest.raises(views.FormError):
            views.permission_from_form(bad)


KEY = b"k" * 32


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40), st.integers(0, 2**40))
def test_session_round_trips_and_any_change_breaks_it(key_id: str, csrf: str, issued: int) -> None:
    session = sessions.Session(key_id, csrf, issued)
    value = sessions.encode(session, KEY)
    assert sessions.decode(value, KEY, issued + 1) == session
    assert sessions.decode(value, b"x" * 32, issued + 1) is None
    assert sessions.decode(value, KEY, issued + sessions.MAX_AGE) is None  # expired
    assert sessions.decode(value, KEY, issued - 1) is None  # from the future
    payload, _, mac = value.partition(".")
    assert sessions.decode(payload + "." + mac[::-1], KEY, issued + 1) in (
        None,
        session if mac == mac[::-1] else None,
    )
    assert ";" not in value and " " not in value and "," not in value


def test_cookie_flags_and_origin_rules() -> None:
    cookie = sessions.set_cookie("v", secure=False)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert "Secure" in sessions.set_cookie("v", secure=True)
    assert sessions.cookie_value("a=1; taskvpc_console=abc.def; b=2") == "abc.def"
    assert sessions.cookie_value("a=1") is None
    host = {"host": "127.0.0.1:4599"}
    assert sessions.same_origin({**host, "origin": "http://127.0.0.1:4599"}, "http")
    assert not sessions.same_origin({**host, "origin": "http://evil.example"}, "http")
    assert not sessions.same_origin({**host, "origin": "null"}, "http")
    assert sessions.same_origin({**host, "sec-fetch-site": "same-origin"}, "http")
    assert not sessions.same_origin({**host, "sec-fetch-site": "cross-site"}, "http")
    assert not sessions.same_origin(host, "http")
    session = sessions.Session("k", "token", 0)
    assert sessions.csrf_matches(session, "token")
    assert not sessions.csrf_matches(session, "other") and not sessions.csrf_matches(session, None)


def test_service_view_newest_events_first_and_times_in_utc() -> None:
    service = {
        "serviceName": "svc",
        "status": "ACTIVE",
        "taskDefinition": "arn:aws:ecs:us-east-1:1:task-definition/w:2",
        "desiredCount": 2,
        "runningCount": 1,
        "pendingCount": 1,
        "deployments": [
            {
                "id": "ecs-svc/1",
                "status": "PRIMARY",
                "rolloutState": "IN_PROGRESS",
                "taskDefinition": "arn:aws:ecs:us-east-1:1:task-definition/w:2",
                "desiredCount": 2,
                "runningCount": 1,
                "pendingCount": 1,
                "updatedAt": 0,
            },
        ],
        "events": [{"createdAt": float(i), "message": f"m{i}"} for i in range(150)],
    }
    view = views.service_view(service)
    assert (view.task_definition, view.desired, view.running) == ("w:2", 2, 1)
    [deployment] = view.deployments
    assert (deployment.rollout_state, deployment.updated_at) == ("IN_PROGRESS", "1970-01-01 00:00:00 UTC")
    assert len(view.events) == views.MAX_EVENTS
    assert view.events[0][1] == "m149" and view.events[-1][1] == "m50"
