"""RegisterTaskDefinition semantics (taskvpc.domain.taskdef): one test per rule, accept and refuse."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters
from hypothesis import given, strategies as st

from taskvpc.domain.errors import ClientError
from taskvpc.domain.taskdef import (
    FARGATE_SIZES,
    derive_compatibilities,
    derive_requires_attributes,
    validate_registration,
)
from taskvpc.domain.units import format_gb, format_vcpu, parse_cpu_units, parse_memory_mib

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
C = "com.amazonaws.ecs.capability."
E = "ecs.capability."
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1"
EXEC_ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"


def container(**kw: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "web", "image": "nginx", "memory": 128}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def request(*containers: dict[str, Any], **kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"family": "fam", "containerDefinitions": list(containers) or [container()]}
    r.update(kw)
    return {k: v for k, v in r.items() if v is not None}


def refuse(req: dict[str, Any], message: str) -> None:
    with pytest.raises(ClientError) as info:
        validate_registration(req)
    assert info.value.code == "ClientException"
    assert info.value.http_status == 400
    assert info.value.message == message


def attrs(td: dict[str, Any]) -> list[str]:
    return [a["name"] for a in td.get("requiresAttributes", [])]


# ---------------------------------------------------------------------------------------------------
# Examples: valid botocore input, registerable unchanged


@pytest.mark.parametrize("name", ["windows-simple-iis.json", "linux-simple-web.json"])
def test_examples_are_valid_botocore_input_and_register(name: str) -> None:
    doc = json.loads((EXAMPLES / name).read_text())
    model = botocore.session.get_session().get_service_model("ecs")
    validate_parameters(doc, model.operation_model("RegisterTaskDefinition").input_shape)
    original = copy.deepcopy(doc)
    td = validate_registration(doc)
    assert doc == original  # the request is not modified
    assert td["family"] == doc["family"]
    assert td["networkMode"] == "awsvpc"
    assert td["containerDefinitions"][0]["portMappings"] == [
        {"containerPort": 80, "hostPort": 80, "protocol": "tcp"}
    ]
    expected = {C + "docker-remote-api.1.18", E + "task-eni"}
    if name == "linux-simple-web.json":  # initProcessEnabled needs 1.25
        expected.add(C + "docker-remote-api.1.25")
    assert set(attrs(td)) == expected
    # the stored body is valid output for boto3/aws-cli too
    out = model.operation_model("DescribeTaskDefinition").output_shape.members["taskDefinition"]
    assert set(td) <= set(out.members)


def test_windows_seed_registers_unchanged() -> None:
    doc = json.loads((EXAMPLES / "windows-simple-iis.json").read_text())
    td = validate_registration(doc)
    assert td["cpu"] == "1024" and td["memory"] == "1024"
    assert td["compatibilities"] == ["EC2", "MANAGED_INSTANCES"]  # 1024/1024 is not a Fargate size
    assert "requiresCompatibilities" not in td and "runtimePlatform" not in td


def test_linux_example_is_fargate_compatible() -> None:
    td = validate_registration(json.loads((EXAMPLES / "linux-simple-web.json").read_text()))
    assert td["compatibilities"] == ["EC2", "MANAGED_INSTANCES", "FARGATE"]


# ---------------------------------------------------------------------------------------------------
# Stored body: defaults ECS fills, keys it leaves out


def test_defaults_filled_like_describe_task_definition() -> None:
    td = validate_registration({"family": "sleep360", "containerDefinitions": [container(name="sleep")]})
    c = td["containerDefinitions"][0]
    assert c == {
        "name": "sleep",
        "image": "nginx",
        "cpu": 0,
        "memory": 128,
        "portMappings": [],
        "essential": True,
        "environment": [],
        "mountPoints": [],
        "volumesFrom": [],
    }
    assert list(c) == [
        "name",
        "image",
        "cpu",
        "memory",
        "portMappings",
        "essential",
        "environment",
        "mountPoints",
        "volumesFrom",
    ]
    assert td["volumes"] == [] and td["placementConstraints"] == []
    assert td["enableFaultInjection"] is False
    assert "networkMode" not in td and "requiresAttributes" not in td
    for key in ("taskDefinitionArn", "revision", "status", "registeredAt", "registeredBy", "tags"):
        assert key not in td


def test_tags_are_not_stored_in_the_body() -> None:
    td = validate_registration(request(tags=[{"key": "k", "value": "v"}]))
    assert "tags" not in td


def test_given_values_kept_as_given() -> None:
    c = container(essential=False, cpu=10, environment=[{"name": "A", "value": "1"}])
    td = validate_registration(request(c, container(name="main")))
    assert td["containerDefinitions"][0]["essential"] is False
    assert td["containerDefinitions"][0]["cpu"] == 10
    assert td["containerDefinitions"][0]["environment"] == [{"name": "A", "value": "1"}]


# ---------------------------------------------------------------------------------------------------
# family


@pytest.mark.parametrize("family", ["a", "web_1-x", "A" * 255])
def test_family_accepted(family: str) -> None:
    assert validate_registration(request(family=family))["family"] == family


def test_family_blank() -> None:
    refuse(request(family=""), "Family can not be blank.")


@pytest.mark.parametrize("family", ["my family", "web:1", "a.b", "A" * 256])
def test_family_invalid(family: str) -> None:
    refuse(request(family=family), "Family contains invalid characters.")


# ---------------------------------------------------------------------------------------------------
# containers: list, names, images, essential


def test_container_list_empty() -> None:
    refuse({"family": "f", "containerDefinitions": []}, "Container list cannot be empty.")


def test_container_list_at_most_ten() -> None:
    ten = [container(name=f"c{i}") for i in range(10)]
    assert len(validate_registration(request(*ten))["containerDefinitions"]) == 10
    refuse(request(*ten, container(name="c10")), "Too many containers.")


def test_container_name_required() -> None:
    refuse(request(container(name=None)), "Container.name should not be null or empty.")
    refuse(request(container(name="")), "Container.name should not be null or empty.")


def test_container_name_invalid() -> None:
    refuse(request(container(name="my app")), "Container.name contains invalid characters.")
    refuse(request(container(name="x" * 256)), "Container.name contains invalid characters.")


def test_container_image_required() -> None:
    refuse(request(container(image=None)), "Container.image should not be null or empty.")
    refuse(request(container(image=" ")), "Container.image should not be null or empty.")


def test_duplicate_container_names() -> None:
    refuse(request(container(), container()), "Container names must be unique within a Task Definition.")


def test_at_least_one_essential_container() -> None:
    assert validate_registration(request(container(essential=False), container(name="b")))
    refuse(
        request(container(essential=False), container(name="b", essential=False)),
        "Task definition does not have any essential container.",
    )


# ---------------------------------------------------------------------------------------------------
# container memory and cpu


def test_container_memory_required_without_task_memory() -> None:
    refuse(
        request(container(memory=None)),
        "Invalid setting for container 'web'. At least one of 'memory' or 'memoryReservation' must be specified.",
    )
    assert validate_registration(request(container(memory=None, memoryReservation=64)))
    assert validate_registration(request(container(memory=None), memory="512"))


def test_memory_reservation_not_above_memory() -> None:
    assert validate_registration(request(container(memory=128, memoryReservation=128)))
    refuse(
        request(container(memory=128, memoryReservation=256)),
        "The 'memoryReservation' setting for container 'web' must be less than or equal to the 'memory' setting.",
    )


def test_container_memory_positive() -> None:
    refuse(request(container(memory=0)), "Invalid 'memory' setting for container 'web'.")
    refuse(
        request(container(memory=None, memoryReservation=0)),
        "Invalid 'memoryReservation' setting for container 'web'.",
    )


def test_container_cpu_not_negative() -> None:
    refuse(request(container(cpu=-1)), "Invalid 'cpu' setting for container 'web'.")


def test_container_memory_above_task_memory() -> None:
    refuse(
        request(container(memory=1024), memory="512"),
        "The 'memory' setting for container 'web' is greater than for the task.",
    )


def test_sum_of_reservations_above_task_memory() -> None:
    two = [
        container(name="a", memory=None, memoryReservation=300),
        container(name="b", memory=None, memoryReservation=300),
    ]
    refuse(
        request(*two, memory="512"),
        "The sum of all container 'memoryReservation' values cannot be greater than the value of the task 'memory'.",
    )


def test_sum_of_container_cpu_above_task_cpu() -> None:
    assert validate_registration(request(container(cpu=256), cpu="256"))
    refuse(
        request(container(cpu=512), cpu="256"),
        "The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'.",
    )


# ---------------------------------------------------------------------------------------------------
# task cpu / memory


@pytest.mark.parametrize(
    ("cpu", "memory", "stored"),
    [
        ("1024", "2048", ("1024", "2048")),
        ("1 vCPU", "2 GB", ("1024", "2048")),
        ("0.5 vcpu", "1GB", ("512", "1024")),
        (".25 vCPU", "512", ("256", "512")),
        ("2vCPU", "512 MiB", ("2048", "512")),
    ],
)
def test_task_cpu_memory_units_converted(cpu: str, memory: str, stored: tuple[str, str]) -> None:
    td = validate_registration(request(container(memory=None), cpu=cpu, memory=memory))
    assert (td["cpu"], td["memory"]) == stored


@pytest.mark.parametrize("cpu", ["abc", "1.5", "0.3 vCPU", "0", "-128", "127", "196609"])
def test_task_cpu_invalid(cpu: str) -> None:
    refuse(request(cpu=cpu), "Invalid 'cpu' setting for task.")


@pytest.mark.parametrize("cpu", ["128", "196608"])
def test_task_cpu_ec2_range_bounds(cpu: str) -> None:
    assert validate_registration(request(container(), cpu=cpu))["cpu"] == cpu


@pytest.mark.parametrize("memory", ["lots", "1.5", "0", "0.0001 GB"])
def test_task_memory_invalid(memory: str) -> None:
    refuse(request(memory=memory), "Invalid 'memory' setting for task.")


# ---------------------------------------------------------------------------------------------------
# Fargate


def fargate(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "512",
    }
    base.update(kw)
    return request(container(memory=None), **base)


def test_fargate_accepted() -> None:
    td = validate_registration(fargate())
    assert td["requiresCompatibilities"] == ["FARGATE"]
    assert "FARGATE" in td["compatibilities"]


def test_fargate_requires_awsvpc() -> None:
    refuse(fargate(networkMode="bridge"), "Fargate only supports network mode \u2018awsvpc\u2019.")
    refuse(fargate(networkMode=None), "Fargate only supports network mode \u2018awsvpc\u2019.")


def test_fargate_requires_task_cpu_and_memory() -> None:
    refuse(fargate(cpu=None), "Fargate requires that 'cpu' be defined at the task level.")
    refuse(fargate(memory=None), "Fargate requires that 'memory' be defined at the task level.")


@pytest.mark.parametrize(("cpu", "memory"), [(c, m) for c, ms in FARGATE_SIZES.items() for m in sorted(ms)])
def test_fargate_every_valid_size(cpu: int, memory: int) -> None:
    assert validate_registration(fargate(cpu=str(cpu), memory=str(memory)))["memory"] == str(memory)


@pytest.mark.parametrize(
    ("cpu", "memory"),
    [
        ("256", "256"),
        ("256", "3072"),
        ("512", "512"),
        ("1024", "1024"),
        ("2048", "4608"),
        ("8192", "18432"),
        ("16384", "36864"),
        ("128", "512"),
    ],
)
def test_fargate_invalid_size(cpu: str, memory: str) -> None:
    refuse(
        fargate(cpu=cpu, memory=memory),
        f"No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. "
        "See the Amazon ECS documentation for the valid values.",
    )


def test_fargate_size_uses_converted_units() -> None:
    assert validate_registration(fargate(cpu="1 vCPU", memory="2 GB"))["cpu"] == "1024"


def test_fargate_ipc_mode() -> None:
    refuse(fargate(ipcMode="task"), "Tasks using the Fargate launch type do not support ipcMode.")


def test_fargate_windows_families() -> None:
    ok = {"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE"}
    assert validate_registration(fargate(runtimePlatform=ok, cpu="1024", memory="2048"))
    refuse(
        fargate(
            runtimePlatform={"operatingSystemFamily": "WINDOWS_SERVER_2016_FULL"}, cpu="1024", memory="2048"
        ),
        "Fargate does not support operating system family 'WINDOWS_SERVER_2016_FULL'.",
    )
    refuse(
        fargate(runtimePlatform=ok),
        "No Fargate configuration exists for given values: 256 CPU, 512 memory. "
        "See the Amazon ECS documentation for the valid values.",
    )


# ---------------------------------------------------------------------------------------------------
# network modes and port mappings


def test_awsvpc_host_port_filled_and_equal_accepted() -> None:
    c = container(
        portMappings=[{"containerPort": 80}, {"containerPort": 53, "hostPort": 53, "protocol": "udp"}]
    )
    td = validate_registration(request(c, networkMode="awsvpc"))
    assert td["containerDefinitions"][0]["portMappings"] == [
        {"containerPort": 80, "hostPort": 80, "protocol": "tcp"},
        {"containerPort": 53, "hostPort": 53, "protocol": "udp"},
    ]


def test_awsvpc_host_port_must_match() -> None:
    c = container(portMappings=[{"containerPort": 80, "hostPort": 8080}])
    refuse(
        request(c, networkMode="awsvpc"),
        "When networkMode=awsvpc, the host ports and container ports in port mappings must match.",
    )


def test_host_mode_host_port_must_match() -> None:
    c = container(portMappings=[{"containerPort": 80, "hostPort": 8080}])
    refuse(
        request(c, networkMode="host"),
        "When networkMode=host, the host ports and container ports in port mappings must match.",
    )
    ok = validate_registration(request(container(portMappings=[{"containerPort": 80}]), networkMode="host"))
    assert ok["containerDefinitions"][0]["portMappings"][0]["hostPort"] == 80


def test_bridge_host_port_dynamic_or_static() -> None:
    c = container(portMappings=[{"containerPort": 80}, {"containerPort": 81, "hostPort": 8081}])
    td = validate_registration(request(c))
    assert [m["hostPort"] for m in td["containerDefinitions"][0]["portMappings"]] == [0, 8081]


def test_awsvpc_no_links() -> None:
    refuse(
        request(container(links=["db"]), networkMode="awsvpc"),
        "Links are not supported when networkMode=awsvpc.",
    )
    assert validate_registration(request(container(links=["db"]), container(name="db")))


def test_awsvpc_no_hostname() -> None:
    refuse(
        request(container(hostname="h"), networkMode="awsvpc"),
        "hostname is not supported on container when networkMode=awsvpc.",
    )
    assert validate_registration(request(container(hostname="h")))


def test_awsvpc_no_extra_hosts() -> None:
    eh = [{"hostname": "a", "ipAddress": "10.0.0.1"}]
    refuse(
        request(container(extraHosts=eh), networkMode="awsvpc"),
        "extraHosts is not supported on container when networkMode=awsvpc.",
    )
    assert validate_registration(request(container(extraHosts=eh)))


def test_none_mode_no_port_mappings() -> None:
    refuse(
        request(container(portMappings=[{"containerPort": 80}]), networkMode="none"),
        "Port mappings are not supported when networkMode=none.",
    )


@pytest.mark.parametrize("port", [0, 65536, None])
def test_container_port_range(port: int | None) -> None:
    m: dict[str, Any] = {} if port is None else {"containerPort": port}
    refuse(request(container(portMappings=[m])), "Invalid 'containerPort' setting for container 'web'.")


def test_host_port_range() -> None:
    refuse(
        request(container(portMappings=[{"containerPort": 80, "hostPort": 70000}])),
        "Invalid 'hostPort' setting for container 'web'.",
    )


def test_duplicate_container_ports_in_one_container() -> None:
    c = container(portMappings=[{"containerPort": 80}, {"containerPort": 80}])
    refuse(
        request(c, networkMode="awsvpc"),
        "Invalid port mappings for container 'web'. Container port 80/tcp is included in more than one port mapping.",
    )
    same_port_other_protocol = container(
        portMappings=[{"containerPort": 53}, {"containerPort": 53, "protocol": "udp"}]
    )
    assert validate_registration(request(same_port_other_protocol, networkMode="awsvpc"))


def test_duplicate_container_ports_across_containers_awsvpc() -> None:
    a = container(name="a", portMappings=[{"containerPort": 80}])
    b = container(name="b", portMappings=[{"containerPort": 80}])
    refuse(
        request(a, b, networkMode="awsvpc"),
        "Container port 80/tcp is used by more than one container ('a' and 'b') when networkMode=awsvpc.",
    )
    assert validate_registration(request(a, b))  # bridge: separate network namespaces


def test_container_port_range_accepted_awsvpc_and_bridge() -> None:
    for mode in ("awsvpc", "bridge"):
        td = validate_registration(
            request(container(portMappings=[{"containerPortRange": "8000-8100"}]), networkMode=mode)
        )
        m = td["containerDefinitions"][0]["portMappings"][0]
        assert m == {
            "protocol": "tcp",
            "containerPortRange": "8000-8100",
        }  # no hostPort in the stored mapping


@pytest.mark.parametrize("text", ["8000", "8100-8000", "0-10", "1-65536", "a-b", "80-80"])
def test_container_port_range_format(text: str) -> None:
    refuse(
        request(container(portMappings=[{"containerPortRange": text}])),
        "Invalid 'containerPortRange' setting for container 'web'.",
    )


def test_container_port_range_only_bridge_or_awsvpc() -> None:
    refuse(
        request(container(portMappings=[{"containerPortRange": "8000-8100"}]), networkMode="host"),
        "Invalid 'containerPortRange' setting for container 'web'. Port ranges are supported only when "
        "networkMode=bridge or networkMode=awsvpc.",
    )


def test_container_port_range_not_with_host_port() -> None:
    refuse(
        request(container(portMappings=[{"containerPortRange": "8000-8100", "hostPort": 8000}])),
        "Invalid 'containerPortRange' setting for container 'web'. Do not specify 'containerPort' or 'hostPort' "
        "with 'containerPortRange'.",
    )


def test_container_port_ranges_at_most_100_and_no_overlap() -> None:
    hundred = [{"containerPortRange": f"{1000 + 10 * i}-{1005 + 10 * i}"} for i in range(100)]
    assert validate_registration(request(container(portMappings=hundred)))
    refuse(
        request(container(portMappings=[*hundred, {"containerPortRange": "5000-5001"}])),
        "Invalid 'containerPortRange' setting for container 'web'. A container can have at most 100 port ranges.",
    )
    refuse(
        request(container(portMappings=[{"containerPortRange": "8000-8100"}, {"containerPort": 8050}])),
        "Invalid port mappings for container 'web'. Container port 8050/tcp is included in more than one port mapping.",
    )


# ---------------------------------------------------------------------------------------------------
# Windows


WINDOWS = {"operatingSystemFamily": "WINDOWS_SERVER_2019_CORE", "cpuArchitecture": "X86_64"}


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("disableNetworking", True),
        ("dnsServers", ["10.0.0.2"]),
        ("dnsSearchDomains", ["corp"]),
        ("extraHosts", [{"hostname": "a", "ipAddress": "10.0.0.1"}]),
        ("links", ["db"]),
        ("linuxParameters", {"initProcessEnabled": True}),
        ("privileged", True),
        ("readonlyRootFilesystem", True),
        ("user", "ContainerUser"),
        ("ulimits", [{"name": "nofile", "softLimit": 1, "hardLimit": 1}]),
    ],
)
def test_windows_unsupported_container_params(param: str, value: Any) -> None:
    refuse(
        request(container(**{param: value}), runtimePlatform=WINDOWS),
        f"The '{param}' parameter is not supported for Windows containers.",
    )
    assert validate_registration(request(container(**{param: value})))  # fine without a Windows platform


def test_windows_false_or_empty_values_are_fine() -> None:
    c = container(privileged=False, readonlyRootFilesystem=False, dnsServers=[], links=[])
    assert validate_registration(request(c, runtimePlatform=WINDOWS, networkMode="awsvpc"))


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("ipcMode", "task"),
        ("pidMode", "task"),
        ("proxyConfiguration", {"type": "APPMESH", "containerName": "web"}),
    ],
)
def test_windows_unsupported_task_params(param: str, value: Any) -> None:
    refuse(
        request(runtimePlatform=WINDOWS, **{param: value}),
        f"The '{param}' parameter is not supported for Windows containers.",
    )


def test_windows_docker_volumes_unsupported() -> None:
    vols = [{"name": "v", "dockerVolumeConfiguration": {"scope": "task"}}]
    refuse(
        request(runtimePlatform=WINDOWS, volumes=vols),
        "The 'dockerVolumeConfiguration' parameter is not supported for Windows containers.",
    )


# ---------------------------------------------------------------------------------------------------
# credentialSpecs, FSx volumes, private registries


def test_credential_specs() -> None:
    ok = "credentialspecdomainless:arn:aws:ssm:us-east-1:123456789012:parameter/gmsa"
    td = validate_registration(request(container(credentialSpecs=[ok]), runtimePlatform=WINDOWS))
    assert E + "gmsa-domainless" in attrs(td)
    assert validate_registration(
        request(container(credentialSpecs=["credentialspec:arn:aws:s3:::bucket/spec.json"]))
    )
    refuse(
        request(container(credentialSpecs=[ok, ok])),
        "Invalid 'credentialSpecs' setting for container 'web'. At most 1 credential spec is allowed.",
    )
    for bad in ("arn:aws:ssm:us-east-1:1:parameter/x", "credentialspec:file://spec.json"):
        refuse(
            request(container(credentialSpecs=[bad])),
            "Invalid 'credentialSpecs' setting for container 'web'. Use credentialspec:<ARN> or credentialspecdomainless:<ARN>.",
        )


def fsx_volume(**auth: Any) -> list[dict[str, Any]]:
    authorization = {
        "credentialsParameter": "arn:aws:secretsmanager:us-east-1:1:secret:x",
        "domain": "corp.example.com",
    }
    authorization.update(auth)
    cfg = {"fileSystemId": "fs-0123", "rootDirectory": "share", "authorizationConfig": authorization}
    return [{"name": "v", "fsxWindowsFileServerVolumeConfiguration": cfg}]


def test_fsx_volume() -> None:
    td = validate_registration(request(volumes=fsx_volume(), runtimePlatform=WINDOWS))
    assert E + "fsxWindowsFileServer" in attrs(td)
    refuse(
        request(volumes=fsx_volume(domain="")),
        "Invalid FSx for Windows File Server volume 'v': 'authorizationConfig.domain' must be specified.",
    )


def test_private_registry_needs_execution_role() -> None:
    creds = {"credentialsParameter": "arn:aws:secretsmanager:us-east-1:1:secret:x"}
    refuse(
        request(container(repositoryCredentials=creds)),
        "Private repository authentication requires that the task definition specify a value for executionRoleArn.",
    )
    assert validate_registration(request(container(repositoryCredentials=creds), executionRoleArn=EXEC_ROLE))


def test_awslogs_requires_region_and_group() -> None:
    log = {"logDriver": "awslogs", "options": {"awslogs-stream-prefix": "ecs"}}
    refuse(
        request(container(logConfiguration=log)),
        "Log driver awslogs requires options: awslogs-region, awslogs-group",
    )


# ---------------------------------------------------------------------------------------------------
# dependsOn and healthCheck


def test_depends_on_unknown_container() -> None:
    c = container(dependsOn=[{"containerName": "ghost", "condition": "START"}])
    refuse(request(c), "Cannot depend on container + 'ghost' because it does not exist")


def test_depends_on_itself() -> None:
    refuse(
        request(container(dependsOn=[{"containerName": "web", "condition": "START"}])),
        "Container 'web' cannot depend on itself.",
    )


def test_depends_on_cycle() -> None:
    a = container(name="a", dependsOn=[{"containerName": "b", "condition": "START"}])
    b = container(name="b", dependsOn=[{"containerName": "a", "condition": "START"}])
    refuse(request(a, b), "Container dependencies contain a cycle.")


def test_depends_on_success_needs_non_essential() -> None:
    app = container(name="app", dependsOn=[{"containerName": "init", "condition": "SUCCESS"}])
    refuse(
        request(app, container(name="init")),
        "A dependency container with SUCCESS or COMPLETE condition cannot be an essential container",
    )
    td = validate_registration(request(app, container(name="init", essential=False)))
    assert E + "container-ordering" in attrs(td)


def test_health_check_defaults_filled() -> None:
    td = validate_registration(request(container(healthCheck={"command": ["CMD-SHELL", "true"]})))
    assert td["containerDefinitions"][0]["healthCheck"] == {
        "command": ["CMD-SHELL", "true"],
        "interval": 30,
        "timeout": 5,
        "retries": 3,
    }


@pytest.mark.parametrize(
    ("field", "low", "high"),
    [("interval", 5, 300), ("timeout", 2, 60), ("retries", 1, 10), ("startPeriod", 0, 300)],
)
def test_health_check_bounds(field: str, low: int, high: int) -> None:
    def hc(value: int) -> dict[str, Any]:
        return request(container(healthCheck={"command": ["CMD", "true"], field: value}))

    assert validate_registration(hc(low)) and validate_registration(hc(high))
    refuse(
        hc(high + 1),
        f"Health check {field} must be less than or equal to the maximum allowed value {high} for container 'web'",
    )
    refuse(
        hc(low - 1),
        f"Health check {field} must be greater than or equal to the minimum allowed value {low} for container 'web'",
    )


# ---------------------------------------------------------------------------------------------------
# Derivations, checked against real describe-task-definition outputs


def test_derivation_streamlit_2020() -> None:
    # a public streamlit-on-Fargate guide (2020): awsvpc, FARGATE, ECR image, execution role, port 8501
    td = validate_registration(
        request(
            {
                "name": "streamlit-example",
                "image": ECR,
                "essential": True,
                "portMappings": [{"containerPort": 8501}],
            },
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            executionRoleArn=EXEC_ROLE,
        )
    )
    assert attrs(td) == [
        C + "ecr-auth",
        E + "execution-role-ecr-pull",
        C + "docker-remote-api.1.18",
        E + "task-eni",
    ]
    assert td["containerDefinitions"][0]["portMappings"] == [
        {"containerPort": 8501, "hostPort": 8501, "protocol": "tcp"}
    ]


def test_derivation_console_awslogs_2026() -> None:
    # renter-web (2026): awslogs with create-group, S3 env file, task role, EC2 with cpu 512 / memory 717
    log = {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": "/ecs/x",
            "awslogs-create-group": "true",
            "awslogs-region": "ap-south-1",
            "awslogs-stream-prefix": "ecs",
        },
    }
    c = container(
        image=ECR,
        memory=None,
        portMappings=[
            {
                "containerPort": 8000,
                "hostPort": 8000,
                "protocol": "tcp",
                "name": "server-8000-tcp",
                "appProtocol": "http",
            }
        ],
        environmentFiles=[{"value": "arn:aws:s3:::bucket/renter.env", "type": "s3"}],
        logConfiguration=log,
        systemControls=[],
    )
    td = validate_registration(
        request(
            c,
            taskRoleArn="arn:aws:iam::1:role/S3Role",
            executionRoleArn=EXEC_ROLE,
            networkMode="awsvpc",
            requiresCompatibilities=["EC2"],
            runtimePlatform={"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
            cpu="512",
            memory="717",
        )
    )
    assert attrs(td) == [
        C + "logging-driver.awslogs",
        E + "execution-role-awslogs",
        C + "ecr-auth",
        C + "docker-remote-api.1.19",
        E + "env-files.s3",
        C + "task-iam-role",
        E + "execution-role-ecr-pull",
        C + "docker-remote-api.1.18",
        E + "task-eni",
        C + "docker-remote-api.1.29",
    ]
    assert td["compatibilities"] == ["EC2", "MANAGED_INSTANCES"]


def test_derivation_thirteen_attributes_2019() -> None:
    # rails_on_docker (2019): 13 attributes, so awslogs, 1.19 and container-ordering come last
    log = {
        "logDriver": "awslogs",
        "options": {"awslogs-group": "/ecs/task", "awslogs-region": "r", "awslogs-stream-prefix": "ecs"},
    }
    health = {"command": ["CMD-SHELL", "true"], "interval": 5, "timeout": 5, "retries": 5, "startPeriod": 10}
    nginx = container(
        name="nginx",
        image=ECR,
        memory=None,
        portMappings=[{"containerPort": 80}],
        volumesFrom=[{"sourceContainer": "app", "readOnly": True}],
        dependsOn=[{"containerName": "app", "condition": "HEALTHY"}],
        logConfiguration=log,
        healthCheck=health,
    )
    app = container(
        name="app",
        image=ECR,
        memory=None,
        memoryReservation=500,
        secrets=[{"name": "S", "valueFrom": "rails.app.secret"}],
        logConfiguration=log,
        healthCheck=health,
    )
    td = validate_registration(
        request(
            nginx,
            app,
            taskRoleArn=EXEC_ROLE,
            executionRoleArn=EXEC_ROLE,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="512",
            memory="1024",
        )
    )
    assert attrs(td) == [
        E + "execution-role-awslogs",
        C + "ecr-auth",
        C + "docker-remote-api.1.21",
        C + "task-iam-role",
        E + "container-health-check",
        E + "execution-role-ecr-pull",
        E + "secrets.ssm.environment-variables",
        C + "docker-remote-api.1.18",
        E + "task-eni",
        C + "docker-remote-api.1.29",
        C + "logging-driver.awslogs",
        C + "docker-remote-api.1.19",
        E + "container-ordering",
    ]
    assert td["compatibilities"] == ["EC2", "MANAGED_INSTANCES", "FARGATE"]


def test_derivation_non_blocking_logs_2024() -> None:
    # day1ireland (2024): awslogs mode=non-blocking -> 1.28
    log = {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": "g",
            "mode": "non-blocking",
            "awslogs-create-group": "true",
            "max-buffer-size": "25m",
            "awslogs-region": "us-east-1",
        },
    }
    td = validate_registration(
        request(
            container(image=ECR, logConfiguration=log, portMappings=[{"containerPort": 80}]),
            executionRoleArn=EXEC_ROLE,
            networkMode="awsvpc",
        )
    )
    assert attrs(td) == [
        C + "logging-driver.awslogs",
        E + "execution-role-awslogs",
        C + "ecr-auth",
        C + "docker-remote-api.1.19",
        C + "docker-remote-api.1.28",
        E + "execution-role-ecr-pull",
        C + "docker-remote-api.1.18",
        E + "task-eni",
        C + "docker-remote-api.1.29",
    ]


def test_compatibilities_non_awsvpc() -> None:
    assert validate_registration(request())["compatibilities"] == ["EXTERNAL", "EC2"]
    assert derive_compatibilities({"networkMode": "none", "containerDefinitions": []}) == ["EXTERNAL", "EC2"]


def test_compatibilities_awsvpc_without_size_is_not_fargate() -> None:
    td = {"networkMode": "awsvpc", "containerDefinitions": []}
    assert derive_compatibilities(td) == ["EC2", "MANAGED_INSTANCES"]
    assert derive_compatibilities({**td, "cpu": "256", "memory": "512"}) == [
        "EC2",
        "MANAGED_INSTANCES",
        "FARGATE",
    ]
    windows = {**td, "cpu": "1024", "memory": "2048", "runtimePlatform": WINDOWS}
    assert derive_compatibilities(windows) == ["EC2", "FARGATE"]
    privileged = {**td, "cpu": "256", "memory": "512", "containerDefinitions": [{"privileged": True}]}
    assert derive_compatibilities(privileged) == ["EC2", "MANAGED_INSTANCES"]


def test_external_not_with_awsvpc() -> None:
    refuse(
        request(networkMode="awsvpc", requiresCompatibilities=["EXTERNAL"]),
        "Tasks using the EXTERNAL launch type do not support network mode 'awsvpc'.",
    )
    assert validate_registration(request(requiresCompatibilities=["EXTERNAL"]))["compatibilities"] == [
        "EXTERNAL",
        "EC2",
    ]


def test_requires_attributes_misc() -> None:
    assert derive_requires_attributes({"containerDefinitions": [{"image": "nginx"}]}) == []
    td = {
        "networkMode": "host",
        "taskRoleArn": "r",
        "pidMode": "task",
        "containerDefinitions": [
            {"image": "nginx", "user": "1000", "extraHosts": [{"hostname": "a", "ipAddress": "1.1.1.1"}]}
        ],
        "volumes": [
            {"name": "e", "efsVolumeConfiguration": {"fileSystemId": "fs-1", "transitEncryption": "ENABLED"}}
        ],
    }
    names = [a["name"] for a in derive_requires_attributes(td)]
    for expected in (
        C + "task-iam-role",
        C + "task-iam-role-network-host",
        E + "pid-ipc-namespace-sharing",
        C + "docker-remote-api.1.17",
        C + "docker-remote-api.1.24",
        E + "efs",
        E + "efsAuth",
    ):
        assert expected in names
    assert len(names) == len(set(names))


# ---------------------------------------------------------------------------------------------------
# Properties

_port = st.integers(min_value=1, max_value=65535)


@st.composite
def awsvpc_requests(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=4))
    ports = draw(st.lists(_port, min_size=0, max_size=3 * n, unique=True))
    containers = []
    for i in range(n):
        mine = ports[i::n]
        mappings = []
        for p in mine:
            m: dict[str, Any] = {"containerPort": p}
            if draw(st.booleans()):
                m["hostPort"] = p
            if draw(st.booleans()):
                m["protocol"] = draw(st.sampled_from(["tcp", "udp"]))
            mappings.append(m)
        containers.append(
            {
                "name": f"c{i}",
                "image": "busybox",
                "memory": draw(st.integers(6, 512)),
                "portMappings": mappings,
            }
        )
    return {
        "family": draw(st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)),
        "networkMode": "awsvpc",
        "containerDefinitions": containers,
    }


@given(awsvpc_requests())
def test_property_awsvpc_host_port_equals_container_port(req: dict[str, Any]) -> None:
    td = validate_registration(req)
    for c in td["containerDefinitions"]:
        for m in c["portMappings"]:
            assert m["hostPort"] == m["containerPort"]
            assert m["protocol"] in ("tcp", "udp")
    assert {"name": E + "task-eni"} in td["requiresAttributes"]
    assert td["compatibilities"][0] == "EC2" and "EXTERNAL" not in td["compatibilities"]


@given(st.integers(min_value=1, max_value=200_000))
def test_property_cpu_units_round_trip(units: int) -> None:
    assert parse_cpu_units(str(units)) == units
    assert parse_cpu_units(format_vcpu(units)) == units
    assert parse_cpu_units(format_vcpu(units).lower().replace(" ", "")) == units


@given(st.integers(min_value=1, max_value=200_000))
def test_property_memory_round_trip(mib: int) -> None:
    assert parse_memory_mib(str(mib)) == mib
    assert parse_memory_mib(format_gb(mib)) == mib
    assert parse_memory_mib(f"{mib} MiB") == mib


@given(st.sampled_from(sorted(FARGATE_SIZES)), st.data())
def test_property_fargate_sizes_in_any_unit(cpu: int, data: st.DataObject) -> None:
    memory = data.draw(st.sampled_from(sorted(FARGATE_SIZES[cpu])))
    td = validate_registration(fargate(cpu=format_vcpu(cpu), memory=format_gb(memory)))
    assert (td["cpu"], td["memory"]) == (str(cpu), str(memory))
