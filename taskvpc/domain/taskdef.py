"""RegisterTaskDefinition semantics: validation, the normalisations ECS applies, and what it derives.

Pure code (standard library only). The wire layer has already checked the request against botocore's
input shape (required members present, enums valid, types right); this module applies the rules the
service enforces on top of the shape, and builds the ``TaskDefinition`` body that DescribeTaskDefinition
returns, less what the store adds (``taskDefinitionArn``, ``revision``, ``status``, ``registeredAt``,
``registeredBy``) and less ``tags``.

Every refusal is a ``ClientException`` (HTTP 400), which is what ECS answers for all the messages seen in
public reports. Each message carries a comment with its source; ``# unconfirmed`` marks the ones written
by analogy because no public report of the exact text was found.

Sources (all public): ECS API model (botocore ``ecs/2014-11-13``), the ECS Developer Guide (DG), and
error texts quoted in GitHub issues, cited as ``owner/repo#number``. Derived fields follow real
``describe-task-definition`` outputs found in public repositories (see ``derive_requires_attributes``).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from taskvpc.domain.errors import ClientError, ecs_client_exception
from taskvpc.domain.units import parse_cpu_units, parse_memory_mib

# --------------------------------------------------------------------------------------------------
# Limits and tables

MAX_FAMILY_LENGTH: Final = 255
NAME_RE: Final = re.compile(
    r"^[A-Za-z0-9_-]{1,255}\Z"
)  # family and container names [API]; \Z: no trailing newline
# ECS keeps task cpu/memory as 32-bit integers; larger values are no real host's (unconfirmed message).
MAX_TASK_UNITS: Final = 2**31 - 1
# "Actual length: '66420'. Max allowed length is '65536' bytes." (ClientException, CloudTrail event quoted
# in awsdocs/amazon-ecs-developer-guide#149); measured here on the stored document as compact JSON.
MAX_TASK_DEFINITION_BYTES: Final = 65536
MAX_CONTAINERS: Final = 10  # "Container definitions per task definition" quota [DG service-quotas]
EC2_TASK_CPU_MIN: Final = 128  # [API RegisterTaskDefinitionRequest.cpu]
EC2_TASK_CPU_MAX: Final = 196608
MAX_PORT: Final = 65535
MAX_PORT_RANGES: Final = 100  # per container [API PortMapping.containerPortRange]
FARGATE_MAX_STOP_TIMEOUT: Final = 120  # [API ContainerDefinition.stopTimeout]

# Health check bounds and the defaults ECS stores when they are omitted [API HealthCheck; the defaults are
# echoed by DescribeTaskDefinition: eagletmt/hako#56 "DescribeTaskDefinition returns interval=30 even if
# RegisterTaskDefinition is called without it"].
HEALTH_CHECK_BOUNDS: Final[dict[str, tuple[int, int]]] = {
    "interval": (5, 300),
    "timeout": (2, 60),  # the current model says 2-60 (the brief's 2-120 is not what the model documents)
    "retries": (1, 10),
    "startPeriod": (0, 300),
}
HEALTH_CHECK_DEFAULTS: Final[dict[str, int]] = {"interval": 30, "timeout": 5, "retries": 3}

# Fargate task sizes: cpu -> valid memory (MiB) [API RegisterTaskDefinitionRequest.memory; DG
# task-cpu-memory-error.md].
FARGATE_SIZES: Final[dict[int, frozenset[int]]] = {
    256: frozenset({512, 1024, 2048}),
    512: frozenset(range(1024, 4096 + 1, 1024)),
    1024: frozenset(range(2048, 8192 + 1, 1024)),
    2048: frozenset(range(4096, 16384 + 1, 1024)),
    4096: frozenset(range(8192, 30720 + 1, 1024)),
    8192: frozenset(range(16384, 61440 + 1, 4096)),
    16384: frozenset(range(32768, 122880 + 1, 8192)),
}
FARGATE_WINDOWS_MIN_CPU: Final = 1024  # "The CPU units cannot be less than 1 vCPU when you use Windows
# containers on Fargate" [API RegisterTaskDefinitionRequest.memory]
FARGATE_WINDOWS_FAMILIES: Final = frozenset(
    {
        "WINDOWS_SERVER_2019_FULL",
        "WINDOWS_SERVER_2019_CORE",
        "WINDOWS_SERVER_2022_FULL",
        "WINDOWS_SERVER_2022_CORE",
    }
)  # [DG AWS_Fargate.md]
FARGATE_LOG_DRIVERS: Final = frozenset({"awslogs", "splunk", "awsfirelens"})  # [API LogConfiguration]

# Container-definition parameters Windows containers do not support [DG windows_task_definitions.md; API].
WINDOWS_UNSUPPORTED_CONTAINER_PARAMS: Final = (
    "disableNetworking",
    "dnsServers",
    "dnsSearchDomains",
    "extraHosts",
    "links",
    "linuxParameters",
    "privileged",
    "readonlyRootFilesystem",
    "user",
    "ulimits",
)
WINDOWS_UNSUPPORTED_TASK_PARAMS: Final = ("proxyConfiguration", "ipcMode", "pidMode")

CREDENTIAL_SPEC_PREFIXES: Final = ("credentialspec:", "credentialspecdomainless:")

_ECR_IMAGE_RE: Final = re.compile(r"^[^/]+\.dkr\.ecr(?:-fips)?\.[^/]+\.amazonaws\.com(?:\.cn)?/")
_PORT_RANGE_RE: Final = re.compile(r"^(\d+)-(\d+)$")

# Member order of the TaskDefinition, ContainerDefinition and PortMapping shapes in the API model, which
# is also the order DescribeTaskDefinition prints them in. Keys not listed keep their place at the end.
TASK_DEFINITION_KEY_ORDER: Final = (
    "taskDefinitionArn",
    "containerDefinitions",
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "revision",
    "volumes",
    "status",
    "requiresAttributes",
    "placementConstraints",
    "compatibilities",
    "runtimePlatform",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "inferenceAccelerators",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "registeredAt",
    "deregisteredAt",
    "deleteRequestedAt",
    "registeredBy",
    "ephemeralStorage",
    "enableFaultInjection",
)
CONTAINER_KEY_ORDER: Final = (
    "name",
    "image",
    "repositoryCredentials",
    "cpu",
    "memory",
    "memoryReservation",
    "links",
    "portMappings",
    "essential",
    "restartPolicy",
    "entryPoint",
    "command",
    "environment",
    "environmentFiles",
    "mountPoints",
    "volumesFrom",
    "linuxParameters",
    "secrets",
    "dependsOn",
    "startTimeout",
    "stopTimeout",
    "versionConsistency",
    "hostname",
    "user",
    "workingDirectory",
    "disableNetworking",
    "privileged",
    "readonlyRootFilesystem",
    "dnsServers",
    "dnsSearchDomains",
    "extraHosts",
    "dockerSecurityOptions",
    "interactive",
    "pseudoTerminal",
    "dockerLabels",
    "ulimits",
    "logConfiguration",
    "healthCheck",
    "systemControls",
    "resourceRequirements",
    "firelensConfiguration",
    "credentialSpecs",
)
PORT_MAPPING_KEY_ORDER: Final = (
    "containerPort",
    "hostPort",
    "protocol",
    "name",
    "appProtocol",
    "containerPortRange",
)
HEALTH_CHECK_KEY_ORDER: Final = ("command", "interval", "timeout", "retries", "startPeriod")

# Request members that are not part of the stored TaskDefinition body.
_NOT_STORED: Final = frozenset({"tags"})


# --------------------------------------------------------------------------------------------------
# Public API


def validate_registration(request: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a RegisterTaskDefinition request and return the TaskDefinition body ECS would store.

    Raises :class:`ClientError` (``ClientException``) with ECS's message on the first rule broken.
    The input is not modified.
    """
    req: dict[str, Any] = copy.deepcopy(dict(request))
    _check_family(req.get("family"))
    containers = _container_list(req.get("containerDefinitions"))
    for container in containers:
        _check_name_and_image(container)
    _check_unique_names(containers)

    task_cpu = _task_units(req, "cpu")
    task_memory = _task_units(req, "memory")
    mode = _network_mode(req)
    windows = _is_windows(req)
    required = [str(c) for c in _list(req.get("requiresCompatibilities"))]

    if "FARGATE" in required:
        _check_fargate_task(req, mode, task_cpu, task_memory, windows)
    if "EXTERNAL" in required and mode == "awsvpc":
        raise ecs_client_exception(
            "Tasks using the EXTERNAL launch type do not support network mode 'awsvpc'."  # unconfirmed
        )
    if task_cpu is not None and not EC2_TASK_CPU_MIN <= task_cpu <= EC2_TASK_CPU_MAX:
        raise _invalid_task_setting("cpu")

    names = {str(c["name"]) for c in containers}
    for container in containers:
        _normalise_container(container, mode, task_memory, windows)
    _check_ports_across_containers(containers, mode)
    _check_dependencies(containers, names)
    if not any(c["essential"] for c in containers):
        raise ecs_client_exception("Task definition does not have any essential container.")  # unconfirmed
    _check_task_resources(containers, task_cpu, task_memory)
    if windows:
        _check_windows_task(req)
    _check_volumes(req)
    _check_mount_points(req, containers)
    _check_execution_role(req, containers)

    body: dict[str, Any] = {k: v for k, v in req.items() if k not in _NOT_STORED}
    body["containerDefinitions"] = [_ordered(c, CONTAINER_KEY_ORDER) for c in containers]
    if task_cpu is not None:
        body["cpu"] = str(task_cpu)
    if task_memory is not None:
        body["memory"] = str(task_memory)
    body.setdefault("volumes", [])
    body.setdefault("placementConstraints", [])
    body.setdefault("enableFaultInjection", False)  # echoed since 2024 [describe outputs, e.g. 2026 ones]
    body["compatibilities"] = derive_compatibilities(body)
    missing = [c for c in required if c not in body["compatibilities"]]
    if missing:
        raise ecs_client_exception(
            f"Task definition does not support the requested compatibilities: {', '.join(missing)}."  # unconfirmed
        )
    attributes = derive_requires_attributes(body)
    # an empty list is not printed (aws/aws-cli awscli/examples/ecs/register-task-definition.rst)
    if attributes:
        body["requiresAttributes"] = attributes
    _check_size(body)
    return order_task_definition(body)


def _check_size(body: Mapping[str, Any]) -> None:
    size = len(json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    if size > MAX_TASK_DEFINITION_BYTES:
        raise ecs_client_exception(
            f"Actual length: '{size}'. Max allowed length is '{MAX_TASK_DEFINITION_BYTES}' bytes."
        )


def parse_revision(text: str) -> int | None:
    """A task definition revision written in ``family:revision``: ASCII digits, 1 to 2**31 - 1."""
    if not _REVISION_RE.fullmatch(text):
        return None
    number = int(text)
    return number if 1 <= number <= MAX_TASK_UNITS else None


_REVISION_RE = re.compile(r"[0-9]{1,10}")


def derive_compatibilities(td: Mapping[str, Any]) -> list[str]:
    """The launch types a (normalised) task definition is valid for, in ECS's order.

    Observed outputs: ``["EC2"]`` (bridge, before ECS Anywhere: aws-cli register-task-definition example),
    ``["EXTERNAL", "EC2"]`` (networkMode none, 2021), ``["EC2", "FARGATE"]`` (awsvpc, 2018-2024),
    ``["EC2", "MANAGED_INSTANCES", "FARGATE"]`` (awsvpc, 2026) and ``["EC2", "MANAGED_INSTANCES"]`` (awsvpc
    with cpu 512 / memory 717, not a Fargate size, 2026). ECS Anywhere does not support awsvpc [DG
    ecs-anywhere.md]. Managed Instances run Linux only, so a Windows ``runtimePlatform`` leaves it out.
    Whether Managed Instances appear for bridge/host/none is unconfirmed: they are listed there only when
    the definition requires them.
    """
    mode = td.get("networkMode") or "bridge"
    required = [str(c) for c in _list(td.get("requiresCompatibilities"))]
    if mode == "awsvpc":
        out = ["EC2"]
        if not _is_windows(td):
            out.append("MANAGED_INSTANCES")
        if not fargate_incompatibilities(td):
            out.append("FARGATE")
        return out
    out = ["EXTERNAL", "EC2"]
    if "MANAGED_INSTANCES" in required:
        out.append("MANAGED_INSTANCES")  # unconfirmed
    return out


def fargate_incompatibilities(td: Mapping[str, Any]) -> list[str]:
    """Why a normalised task definition cannot run on Fargate (empty when it can)."""
    why: list[str] = []
    if (td.get("networkMode") or "bridge") != "awsvpc":
        why.append("networkMode")
    cpu = _int_or_none(td.get("cpu"))
    memory = _int_or_none(td.get("memory"))
    if cpu is None or memory is None or memory not in FARGATE_SIZES.get(cpu, frozenset()):
        why.append("size")
    family = _os_family(td)
    if family is not None and family != "LINUX":
        if family not in FARGATE_WINDOWS_FAMILIES:
            why.append("operatingSystemFamily")
        if cpu is not None and cpu < FARGATE_WINDOWS_MIN_CPU:
            why.append("size")
    if td.get("ipcMode"):
        why.append("ipcMode")
    if td.get("pidMode") == "host":
        why.append("pidMode")
    if _list(td.get("placementConstraints")):
        why.append("placementConstraints")
    if _list(td.get("inferenceAccelerators")):
        why.append("inferenceAccelerators")
    for volume in _dicts(td.get("volumes")):
        if "dockerVolumeConfiguration" in volume:
            why.append("dockerVolumeConfiguration")
        if "fsxWindowsFileServerVolumeConfiguration" in volume:
            why.append("fsxWindowsFileServerVolumeConfiguration")
        host = volume.get("host")
        if isinstance(host, Mapping) and host.get("sourcePath"):
            why.append("sourcePath")
    for container in _dicts(td.get("containerDefinitions")):
        if container.get("privileged"):
            why.append("privileged")
        if _list(container.get("dockerSecurityOptions")):
            why.append("dockerSecurityOptions")
        linux = container.get("linuxParameters")
        if isinstance(linux, Mapping) and _list(linux.get("devices")):
            why.append("devices")
        stop = _int_or_none(container.get("stopTimeout"))
        if stop is not None and stop > FARGATE_MAX_STOP_TIMEOUT:
            why.append("stopTimeout")
        log = container.get("logConfiguration")
        if isinstance(log, Mapping) and log.get("logDriver") not in FARGATE_LOG_DRIVERS:
            why.append("logDriver")
    return why


# requiresAttributes ---------------------------------------------------------------------------------

_C: Final = "com.amazonaws.ecs.capability."
_E: Final = "ecs.capability."

# The order ECS prints requiresAttributes in, merged from real describe-task-definition outputs (in
# public repositories, 2019-2026). ECS keeps them in a hash set: for up to 12 attributes this is the
# observed order; with more, the table doubles and the four attributes in _MOVED_WHEN_RESIZED come
# last (seen in two outputs of 13 and 15 attributes). Attributes never observed keep first-seen order
# after the known ones.
REQUIRES_ATTRIBUTES_ORDER: Final = (
    _C + "logging-driver.awslogs",
    _E + "execution-role-awslogs",
    _C + "ecr-auth",
    _E + "pid-ipc-namespace-sharing",
    _E + "firelens.options.config.file",
    _E + "firelens.options.config.s3",
    _C + "docker-remote-api.1.17",
    _C + "docker-remote-api.1.19",
    _C + "docker-remote-api.1.21",
    _C + "docker-remote-api.1.28",
    _C + "logging-driver.awsfirelens",
    _E + "aws-appmesh",
    _E + "env-files.s3",
    _C + "task-iam-role",
    _E + "container-ordering",
    _E + "container-health-check",
    _E + "execution-role-ecr-pull",
    _E + "secrets.ssm.environment-variables",
    _E + "secrets.asm.environment-variables",
    _C + "docker-remote-api.1.18",
    _E + "task-eni",
    _C + "docker-remote-api.1.29",
    _E + "firelens.fluentbit",
    _E + "firelens.fluentd",
)
_MOVED_WHEN_RESIZED: Final = (
    _C + "logging-driver.awslogs",
    _C + "docker-remote-api.1.19",
    _E + "container-ordering",
    _E + "firelens.fluentbit",
)
_HASH_SET_THRESHOLD: Final = 12  # 16 buckets * 0.75 load factor


def derive_requires_attributes(td: Mapping[str, Any]) -> list[dict[str, str]]:
    """The container-instance attributes a (normalised) task definition requires, as ECS lists them.

    Rules confirmed by outputs: awsvpc -> docker-remote-api.1.18 + task-eni; taskRoleArn -> task-iam-role;
    ECR image -> ecr-auth (+ execution-role-ecr-pull with an execution role); awslogs ->
    logging-driver.awslogs + docker-remote-api.1.19 (+ execution-role-awslogs with an execution role);
    healthCheck -> container-health-check; dependsOn -> container-ordering; SSM secrets ->
    secrets.ssm.environment-variables; S3 environment files -> env-files.s3; pidMode/ipcMode ->
    pid-ipc-namespace-sharing; proxyConfiguration -> aws-appmesh; firelens -> firelens.<type>;
    host + extraHosts -> docker-remote-api.1.24 (aws/amazon-ecs-agent#620).
    Docker API versions inferred from which outputs carry them (each matches the Docker release that
    added the feature): user -> 1.17, memoryReservation -> 1.21, log option ``mode`` -> 1.28,
    ``awslogs-create-group`` or ``healthCheck.startPeriod`` -> 1.29, ``initProcessEnabled`` -> 1.25,
    systemControls -> 1.24; logConfiguration, dockerLabels and ulimits -> 1.18 (documented as needing it).
    Unobserved ones (efs, fsx, gmsa, private registry, docker plugins) use the agent's attribute names.
    """
    names: list[str] = []
    add = names.append
    mode = td.get("networkMode") or "bridge"
    execution_role = bool(td.get("executionRoleArn"))
    containers = list(_dicts(td.get("containerDefinitions")))
    for c in containers:
        log = c.get("logConfiguration")
        if isinstance(log, Mapping):
            driver = str(log.get("logDriver", ""))
            options = log.get("options") if isinstance(log.get("options"), Mapping) else {}
            assert isinstance(options, Mapping)
            add(_C + "logging-driver." + driver)
            add(_C + "docker-remote-api.1.18")
            if driver == "awslogs":
                add(_C + "docker-remote-api.1.19")
                if execution_role:
                    add(_E + "execution-role-awslogs")
                if str(options.get("awslogs-create-group", "")).lower() == "true":
                    add(_C + "docker-remote-api.1.29")
            if "mode" in options or "max-buffer-size" in options:
                add(_C + "docker-remote-api.1.28")
            for secret in _dicts(log.get("secretOptions")):
                add(_E + "secrets." + _secret_store(secret) + ".bootstrap.log-driver")
        image = str(c.get("image", ""))
        if _ECR_IMAGE_RE.match(image):
            add(_C + "ecr-auth")
            if execution_role:
                add(_E + "execution-role-ecr-pull")
        if c.get("repositoryCredentials"):
            add(_E + "private-registry-authentication.secretsmanager")
        if c.get("user"):
            add(_C + "docker-remote-api.1.17")
        if c.get("memoryReservation") is not None:
            add(_C + "docker-remote-api.1.21")
        if c.get("dockerLabels") or _list(c.get("ulimits")):
            add(_C + "docker-remote-api.1.18")
        if _list(c.get("systemControls")):
            add(_C + "docker-remote-api.1.24")
        if mode == "host" and _list(c.get("extraHosts")):
            add(_C + "docker-remote-api.1.24")
        linux = c.get("linuxParameters")
        if isinstance(linux, Mapping) and linux.get("initProcessEnabled"):
            add(_C + "docker-remote-api.1.25")
        for env_file in _dicts(c.get("environmentFiles")):
            add(_E + "env-files." + str(env_file.get("type", "s3")))
        for secret in _dicts(c.get("secrets")):
            add(_E + "secrets." + _secret_store(secret) + ".environment-variables")
        if _list(c.get("dependsOn")) or c.get("startTimeout") is not None or c.get("stopTimeout") is not None:
            add(_E + "container-ordering")
        health = c.get("healthCheck")
        if isinstance(health, Mapping):
            add(_E + "container-health-check")
            if health.get("startPeriod") is not None:
                add(_C + "docker-remote-api.1.29")
        firelens = c.get("firelensConfiguration")
        if isinstance(firelens, Mapping):
            add(_E + "firelens." + str(firelens.get("type", "")))
            fl_options = firelens.get("options")
            if isinstance(fl_options, Mapping) and fl_options.get("config-file-type"):
                add(_E + "firelens.options.config." + str(fl_options["config-file-type"]))
        for spec in _list(c.get("credentialSpecs")):
            domainless = str(spec).startswith("credentialspecdomainless:")
            add(_E + ("gmsa-domainless" if domainless else "gmsa"))
    if td.get("taskRoleArn"):
        add(_C + "task-iam-role")
        if mode == "host":
            add(_C + "task-iam-role-network-host")
    if td.get("pidMode") or td.get("ipcMode"):
        add(_E + "pid-ipc-namespace-sharing")
    if td.get("proxyConfiguration"):
        add(_E + "aws-appmesh")
    for volume in _dicts(td.get("volumes")):
        efs = volume.get("efsVolumeConfiguration")
        if isinstance(efs, Mapping):
            add(_E + "efs")
            if efs.get("authorizationConfig") or efs.get("transitEncryption") == "ENABLED":
                add(_E + "efsAuth")
        if volume.get("fsxWindowsFileServerVolumeConfiguration"):
            add(_E + "fsxWindowsFileServer")
        docker_volume = volume.get("dockerVolumeConfiguration")
        if isinstance(docker_volume, Mapping):
            add(_E + "docker-plugin." + str(docker_volume.get("driver") or "local"))
    if mode == "awsvpc":
        add(_C + "docker-remote-api.1.18")
        add(_E + "task-eni")
    return [{"name": n} for n in _ecs_attribute_order(names)]


def order_task_definition(td: Mapping[str, Any]) -> dict[str, Any]:
    """The task definition with its keys in the order ECS prints them (the store may call this too)."""
    return _ordered(td, TASK_DEFINITION_KEY_ORDER)


# --------------------------------------------------------------------------------------------------
# Task-level rules


def _check_family(family: Any) -> None:
    if not isinstance(family, str) or family == "":
        # aws-actions/amazon-ecs-deploy-task-definition#630
        raise ecs_client_exception("Family can not be blank.")
    if not NAME_RE.match(family):
        # aws/amazon-ecs-cli#37; the same text for more than 255 characters is unconfirmed
        raise ecs_client_exception("Family contains invalid characters.")


def _container_list(value: Any) -> list[dict[str, Any]]:
    containers = [c for c in _list(value) if isinstance(c, dict)]
    if not containers:
        # awsdocs/aws-cloudformation-user-guide#454
        raise ecs_client_exception("Container list cannot be empty.")
    if len(containers) > MAX_CONTAINERS:
        raise ecs_client_exception("Too many containers.")  # aws/amazon-ecs-cli#184
    return containers


def _check_name_and_image(container: Mapping[str, Any]) -> None:
    name = container.get("name")
    if not isinstance(name, str) or name == "":
        raise ecs_client_exception("Container.name should not be null or empty.")  # hashicorp/terraform#2888
    if not NAME_RE.match(name):
        raise ecs_client_exception("Container.name contains invalid characters.")  # ansible/ansible#22860
    image = container.get("image")
    if not isinstance(image, str) or image.strip() == "":
        raise ecs_client_exception("Container.image should not be null or empty.")  # aws/aws-cli#5924


def _check_unique_names(containers: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for container in containers:
        name = str(container["name"])
        if name in seen:
            # Shippable/support#2946
            raise ecs_client_exception("Container names must be unique within a Task Definition.")
        seen.add(name)


def _task_units(req: Mapping[str, Any], key: str) -> int | None:
    raw = req.get(key)
    if raw is None:
        return None
    text = str(raw)
    value = parse_cpu_units(text) if key == "cpu" else parse_memory_mib(text)
    if value is None or value <= 0 or value > MAX_TASK_UNITS:
        raise _invalid_task_setting(key)
    return value


def _invalid_task_setting(key: str) -> ClientError:
    # "Invalid 'cpu' setting for task." [DG task-cpu-memory-error.md]; the 'memory' twin is unconfirmed
    return ecs_client_exception(f"Invalid '{key}' setting for task.")


def _network_mode(req: Mapping[str, Any]) -> str:
    mode = req.get("networkMode")
    return str(mode) if mode else "bridge"  # omitted means bridge (Windows: the default/nat mode) [API]


def _check_fargate_task(
    req: Mapping[str, Any], mode: str, cpu: int | None, memory: int | None, windows: bool
) -> None:
    if mode != "awsvpc":
        # aws/amazon-ecs-cli#1145 (typographic quotes in the original)
        raise ecs_client_exception("Fargate only supports network mode \u2018awsvpc\u2019.")
    if cpu is None:
        # hackoregon/civic-devops#246
        raise ecs_client_exception("Fargate requires that 'cpu' be defined at the task level.")
    if memory is None:
        # aws/amazon-ecs-cli#982
        raise ecs_client_exception("Fargate requires that 'memory' be defined at the task level.")
    family = _os_family(req)
    if windows and family not in FARGATE_WINDOWS_FAMILIES:
        raise ecs_client_exception(
            f"Fargate does not support operating system family '{family}'."  # unconfirmed
        )
    if memory not in FARGATE_SIZES.get(cpu, frozenset()) or (windows and cpu < FARGATE_WINDOWS_MIN_CPU):
        # aws-games/cloud-game-development-toolkit#737 (2025); windows below 1 vCPU: unconfirmed
        raise ecs_client_exception(
            f"No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. "
            "See the Amazon ECS documentation for the valid values."
        )
    if req.get("ipcMode"):
        # cn-terraform/terraform-aws-ecs-fargate#2
        raise ecs_client_exception("Tasks using the Fargate launch type do not support ipcMode.")
    if req.get("pidMode") == "host":
        # unconfirmed
        raise ecs_client_exception("Tasks using the Fargate launch type do not support pidMode 'host'.")
    for container in _dicts(req.get("containerDefinitions")):
        name = container.get("name")
        if container.get("privileged"):
            raise ecs_client_exception(  # unconfirmed
                "Tasks using the Fargate launch type do not support privileged containers."
            )
        stop = _int_or_none(container.get("stopTimeout"))
        if stop is not None and stop > FARGATE_MAX_STOP_TIMEOUT:
            raise ecs_client_exception(  # unconfirmed
                f"Tasks using the Fargate launch type must have a stop timeout of at most "
                f"{FARGATE_MAX_STOP_TIMEOUT} seconds for container '{name}'."
            )
        log = container.get("logConfiguration")
        if isinstance(log, Mapping) and log.get("logDriver") not in FARGATE_LOG_DRIVERS:
            raise ecs_client_exception(  # unconfirmed
                f"{log.get('logDriver')} is not a valid log driver for tasks using the Fargate launch type."
            )


def _check_windows_task(req: Mapping[str, Any]) -> None:
    for param in WINDOWS_UNSUPPORTED_TASK_PARAMS:
        if req.get(param):
            raise _windows_unsupported(param)
    for volume in _dicts(req.get("volumes")):
        if "dockerVolumeConfiguration" in volume:
            raise _windows_unsupported("dockerVolumeConfiguration")


def _windows_unsupported(param: str) -> ClientError:
    # [DG windows_task_definitions.md lists them]; the text is unconfirmed (AWS Batch words it
    # "ReadonlyRootFilesystem parameter is not supported for Windows containers", aws/aws-cdk#29140)
    return ecs_client_exception(f"The '{param}' parameter is not supported for Windows containers.")


def _check_volumes(req: Mapping[str, Any]) -> None:
    for volume in _dicts(req.get("volumes")):
        fsx = volume.get("fsxWindowsFileServerVolumeConfiguration")
        if fsx is None:
            continue
        name = volume.get("name")
        if _os_family(req) == "LINUX":
            # FSx for Windows File Server volumes are for Windows task definitions only [DG wfsx-volumes.md];
            # a definition that leaves runtimePlatform out may still be for Windows, so only an explicit
            # LINUX is refused. The text is unconfirmed (written like the Windows-parameter ones).
            raise ecs_client_exception(
                "The 'fsxWindowsFileServerVolumeConfiguration' parameter is not supported for Linux containers."
            )
        auth = fsx.get("authorizationConfig") if isinstance(fsx, Mapping) else None
        fields = {
            "fileSystemId": fsx.get("fileSystemId") if isinstance(fsx, Mapping) else None,
            "rootDirectory": fsx.get("rootDirectory") if isinstance(fsx, Mapping) else None,
            "authorizationConfig.credentialsParameter": auth.get("credentialsParameter")
            if isinstance(auth, Mapping)
            else None,
            "authorizationConfig.domain": auth.get("domain") if isinstance(auth, Mapping) else None,
        }
        for field, value in fields.items():
            if not isinstance(value, str) or value == "":
                raise ecs_client_exception(  # unconfirmed; the four fields are required [API, DG]
                    f"Invalid FSx for Windows File Server volume '{name}': '{field}' must be specified."
                )


def _check_mount_points(req: Mapping[str, Any], containers: list[dict[str, Any]]) -> None:
    declared = {v.get("name") for v in _dicts(req.get("volumes"))}
    for container in containers:
        for point in _dicts(container.get("mountPoints")):
            source = point.get("sourceVolume")
            if source not in declared:
                # "Unknown volume 'root-RO'." ansible/ansible#35751; a missing name prints as 'null'
                # (blinkist/terraform-aws-airship-ecs-service#46)
                raise ecs_client_exception(f"Unknown volume '{'null' if source is None else source}'.")


def _check_execution_role(req: Mapping[str, Any], containers: list[dict[str, Any]]) -> None:
    if req.get("executionRoleArn"):
        return
    if any(c.get("repositoryCredentials") for c in containers):
        raise ecs_client_exception(  # sil-org/ecs-deploy#188
            "Private repository authentication requires that the task definition specify a value for executionRoleArn."
        )


def _check_task_resources(
    containers: list[dict[str, Any]], task_cpu: int | None, task_memory: int | None
) -> None:
    if task_cpu is not None and sum(_int_or_none(c.get("cpu")) or 0 for c in containers) > task_cpu:
        raise ecs_client_exception(  # klothoplatform/klotho#892
            "The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'."
        )
    if task_memory is None:
        return
    for c in containers:
        memory = _int_or_none(c.get("memory"))
        if memory is not None and memory > task_memory:
            # pulumi/pulumi-awsx#188, #1220
            raise ecs_client_exception(
                f"The 'memory' setting for container '{c['name']}' is greater than for the task."
            )
    reserved = 0
    for c in containers:
        reservation = _int_or_none(c.get("memoryReservation"))
        reserved += reservation if reservation is not None else (_int_or_none(c.get("memory")) or 0)
    if reserved > task_memory:
        raise ecs_client_exception(  # cloudnativedaysjp/dreamkast-infra#4766
            "The sum of all container 'memoryReservation' values cannot be greater than the value of the task 'memory'."
        )


# --------------------------------------------------------------------------------------------------
# Container-level rules and normalisation


def _normalise_container(c: dict[str, Any], mode: str, task_memory: int | None, windows: bool) -> None:
    name = str(c["name"])
    # Defaults DescribeTaskDefinition shows when they were omitted (aws-cli register-task-definition
    # example; many describe outputs): cpu 0, portMappings/environment/mountPoints/volumesFrom [],
    # essential true.
    c.setdefault("cpu", 0)
    c.setdefault("portMappings", [])
    c.setdefault("essential", True)
    c.setdefault("environment", [])
    c.setdefault("mountPoints", [])
    c.setdefault("volumesFrom", [])

    cpu = _int_or_none(c.get("cpu"))
    if cpu is None or cpu < 0:
        raise ecs_client_exception(f"Invalid 'cpu' setting for container '{name}'.")  # unconfirmed
    _check_container_memory(c, name, task_memory)
    if windows:
        for param in WINDOWS_UNSUPPORTED_CONTAINER_PARAMS:
            if _is_set(c.get(param)):
                raise _windows_unsupported(param)
    _check_network_rules(c, name, mode)
    c["portMappings"] = [_normalise_port_mapping(m, name, mode) for m in _dicts(c.get("portMappings"))]
    _check_port_ranges(c["portMappings"], name)
    if "healthCheck" in c and isinstance(c["healthCheck"], Mapping):
        c["healthCheck"] = _normalise_health_check(dict(c["healthCheck"]), name)
    _check_log_configuration(c)
    _check_credential_specs(c, name)
    _check_timeouts(c, name)


def _check_container_memory(c: Mapping[str, Any], name: str, task_memory: int | None) -> None:
    memory = _int_or_none(c.get("memory"))
    reservation = _int_or_none(c.get("memoryReservation"))
    if task_memory is None and memory is None and reservation is None:
        # aws/aws-cli#4453, cuttlesoft/ecs-deploy.py#17
        raise ecs_client_exception(
            f"Invalid setting for container '{name}'. At least one of 'memory' or 'memoryReservation' must be specified."
        )
    # Docker needs at least 6 MiB (4 MiB before 20.10) but ECS only documents that as advice; it requires
    # a positive value [aws/amazon-ecs-agent#876]. The text is unconfirmed.
    if memory is not None and memory <= 0:
        raise ecs_client_exception(f"Invalid 'memory' setting for container '{name}'.")  # unconfirmed
    if reservation is not None and reservation <= 0:
        # unconfirmed
        raise ecs_client_exception(f"Invalid 'memoryReservation' setting for container '{name}'.")
    if memory is not None and reservation is not None and reservation > memory:
        # memory >= memoryReservation [API; awsdocs/amazon-ecs-developer-guide#242]
        raise ecs_client_exception(  # unconfirmed
            f"The 'memoryReservation' setting for container '{name}' must be less than or equal to the "
            "'memory' setting."
        )


def _check_network_rules(c: Mapping[str, Any], name: str, mode: str) -> None:
    if mode != "bridge" and _list(c.get("links")):
        # "Links are not supported when networkMode=awsvpc." aws-observability/aws-otel-collector#1359;
        # the same text for host/none is unconfirmed (links are bridge-only [API])
        raise ecs_client_exception(f"Links are not supported when networkMode={mode}.")
    if mode == "awsvpc" and c.get("hostname"):
        # labd/ecs-deplojo#26
        raise ecs_client_exception("hostname is not supported on container when networkMode=awsvpc.")
    if mode == "awsvpc" and _list(c.get("extraHosts")):
        # extraHosts "isn't supported for ... tasks that use the awsvpc network mode" [API]; text unconfirmed
        raise ecs_client_exception("extraHosts is not supported on container when networkMode=awsvpc.")
    if mode == "none" and _list(c.get("portMappings")):
        # "If the network mode ... is set to none, then you can't specify port mappings" [API]; unconfirmed
        raise ecs_client_exception("Port mappings are not supported when networkMode=none.")


def _normalise_port_mapping(m: dict[str, Any], name: str, mode: str) -> dict[str, Any]:
    m = dict(m)
    m.setdefault("protocol", "tcp")  # the default, echoed by DescribeTaskDefinition [API; describe outputs]
    port_range = m.get("containerPortRange")
    if port_range is not None:
        if mode not in ("bridge", "awsvpc"):
            raise ecs_client_exception(  # [API PortMapping.containerPortRange]; unconfirmed
                f"Invalid 'containerPortRange' setting for container '{name}'. Port ranges are supported "
                "only when networkMode=bridge or networkMode=awsvpc."
            )
        if m.get("hostPort") is not None or m.get("containerPort") is not None:
            raise ecs_client_exception(  # "You do not specify a hostPortRange" [API]; unconfirmed
                f"Invalid 'containerPortRange' setting for container '{name}'. Do not specify 'containerPort' "
                "or 'hostPort' with 'containerPortRange'."
            )
        if _parse_port_range(port_range) is None:
            # unconfirmed
            raise ecs_client_exception(f"Invalid 'containerPortRange' setting for container '{name}'.")
        return _ordered(m, PORT_MAPPING_KEY_ORDER)

    container_port = _int_or_none(m.get("containerPort"))
    if container_port is None or not 1 <= container_port <= MAX_PORT:
        # aws/aws-cli#7288, hashicorp/terraform-provider-aws#37508
        raise ecs_client_exception(f"Invalid 'containerPort' setting for container '{name}'.")
    host_port = _int_or_none(m.get("hostPort"))
    if host_port is not None and not 0 <= host_port <= MAX_PORT:
        raise ecs_client_exception(f"Invalid 'hostPort' setting for container '{name}'.")  # unconfirmed
    if mode in ("awsvpc", "host"):
        if host_port not in (None, 0, container_port):
            # awsvpc text: pulumi/pulumi-awsx#935, aws/amazon-ecs-cli#1014; host: same rule [API], unconfirmed text
            raise ecs_client_exception(
                f"When networkMode={mode}, the host ports and container ports in port mappings must match."
            )
        m["hostPort"] = container_port  # stored as a static mapping [API PortMapping.hostPort]
    elif host_port is None:
        m["hostPort"] = 0  # bridge: 0 asks for a dynamic host port [API]; echoed as 0 (inferred)
    return _ordered(m, PORT_MAPPING_KEY_ORDER)


def _parse_port_range(text: Any) -> tuple[int, int] | None:
    match = _PORT_RANGE_RE.match(str(text))
    if match is None:
        return None
    start, end = int(match.group(1)), int(match.group(2))
    if not 1 <= start < end <= MAX_PORT:
        return None
    return start, end


def _check_port_ranges(mappings: list[dict[str, Any]], name: str) -> None:
    ranges = [m for m in mappings if m.get("containerPortRange") is not None]
    if len(ranges) > MAX_PORT_RANGES:
        raise ecs_client_exception(  # 100 per container [API]; unconfirmed text
            f"Invalid 'containerPortRange' setting for container '{name}'. A container can have at most "
            f"{MAX_PORT_RANGES} port ranges."
        )
    # "A port can only be included in one port mapping per container" / no overlapping ranges [API]
    taken: list[tuple[str, int, int]] = []
    for m in mappings:
        protocol = str(m.get("protocol", "tcp"))
        if m.get("containerPortRange") is not None:
            bounds = _parse_port_range(m["containerPortRange"])
            assert bounds is not None
            start, end = bounds
        else:
            start = end = int(m["containerPort"])
        for other_protocol, other_start, other_end in taken:
            if other_protocol == protocol and start <= other_end and other_start <= end:
                raise ecs_client_exception(  # unconfirmed
                    f"Invalid port mappings for container '{name}'. Container port {max(start, other_start)}/"
                    f"{protocol} is included in more than one port mapping."
                )
        taken.append((protocol, start, end))


def _check_ports_across_containers(containers: list[dict[str, Any]], mode: str) -> None:
    """awsvpc and host bind container ports on one network stack: a port/protocol can appear only once."""
    if mode not in ("awsvpc", "host"):
        return
    owner: dict[tuple[int, str], str] = {}
    for c in containers:
        for m in c["portMappings"]:
            if m.get("containerPort") is None:
                continue
            key = (int(m["containerPort"]), str(m.get("protocol", "tcp")))
            if key in owner and owner[key] != c["name"]:
                raise ecs_client_exception(  # unconfirmed
                    f"Container port {key[0]}/{key[1]} is used by more than one container "
                    f"('{owner[key]}' and '{c['name']}') when networkMode={mode}."
                )
            owner.setdefault(key, str(c["name"]))


def _normalise_health_check(health: dict[str, Any], name: str) -> dict[str, Any]:
    for key, default in HEALTH_CHECK_DEFAULTS.items():
        health.setdefault(key, default)
    for key, (low, high) in HEALTH_CHECK_BOUNDS.items():
        value = _int_or_none(health.get(key))
        if value is None:
            continue
        if value > high:
            # "Health check retries must be less than or equal to the maximum allowed value 10 for
            # container '...'" PostHog/posthog#8647; the other fields by analogy (unconfirmed)
            raise ecs_client_exception(
                f"Health check {key} must be less than or equal to the maximum allowed value {high} "
                f"for container '{name}'"
            )
        if value < low:
            raise ecs_client_exception(  # unconfirmed (mirror of the confirmed maximum message)
                f"Health check {key} must be greater than or equal to the minimum allowed value {low} "
                f"for container '{name}'"
            )
    return _ordered(health, HEALTH_CHECK_KEY_ORDER)


def _check_log_configuration(c: Mapping[str, Any]) -> None:
    log = c.get("logConfiguration")
    if not isinstance(log, Mapping) or log.get("logDriver") != "awslogs":
        return
    options = log.get("options") if isinstance(log.get("options"), Mapping) else {}
    assert isinstance(options, Mapping)
    missing = [k for k in ("awslogs-region", "awslogs-group") if not options.get(k)]
    if missing:
        # "Log driver awslogs requires options: awslogs-region, awslogs-group" klothoplatform/klotho#892;
        # listing only the missing ones is unconfirmed
        raise ecs_client_exception(f"Log driver awslogs requires options: {', '.join(missing)}")


def _check_credential_specs(c: Mapping[str, Any], name: str) -> None:
    specs = _list(c.get("credentialSpecs"))
    if len(specs) > 1:
        raise ecs_client_exception(  # "The maximum number of ARNs is 1" [API]; text unconfirmed
            f"Invalid 'credentialSpecs' setting for container '{name}'. At most 1 credential spec is allowed."
        )
    for spec in specs:
        text = str(spec)
        prefix = next((p for p in CREDENTIAL_SPEC_PREFIXES if text.startswith(p)), None)
        if prefix is None or not text[len(prefix) :].startswith("arn:"):
            raise ecs_client_exception(  # formats from [API ContainerDefinition.credentialSpecs]; unconfirmed
                f"Invalid 'credentialSpecs' setting for container '{name}'. Use credentialspec:<ARN> or "
                "credentialspecdomainless:<ARN>."
            )


def _check_timeouts(c: Mapping[str, Any], name: str) -> None:
    for key in ("startTimeout", "stopTimeout"):
        value = _int_or_none(c.get(key))
        if value is not None and value < 0:
            raise ecs_client_exception(f"Invalid '{key}' setting for container '{name}'.")  # unconfirmed


def _check_dependencies(containers: list[dict[str, Any]], names: set[str]) -> None:
    by_name = {str(c["name"]): c for c in containers}
    for c in containers:
        for dep in _dicts(c.get("dependsOn")):
            target = str(dep.get("containerName", ""))
            if target not in names:
                # the odd "+" is in ECS's text: dagster-io/dagster#6926, eagletmt/hako#99
                raise ecs_client_exception(
                    f"Cannot depend on container + '{target}' because it does not exist"
                )
            if target == c["name"]:
                raise ecs_client_exception(f"Container '{target}' cannot depend on itself.")  # unconfirmed
            if dep.get("condition") in ("SUCCESS", "COMPLETE") and by_name[target]["essential"]:
                raise ecs_client_exception(  # boto/boto3#2436
                    "A dependency container with SUCCESS or COMPLETE condition cannot be an essential container"
                )
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        state[name] = 1
        for dep in _dicts(by_name[name].get("dependsOn")):
            target = str(dep.get("containerName"))
            if state.get(target) == 1:
                raise ecs_client_exception("Container dependencies contain a cycle.")  # unconfirmed
            if state.get(target) is None:
                visit(target)
        state[name] = 2

    for name in by_name:
        if name not in state:
            visit(name)


# --------------------------------------------------------------------------------------------------
# Helpers


def os_type(td: Mapping[str, Any]) -> str:
    """The ``ecs.os-type`` of the instances that can run ``td``: ``windows`` for a Windows runtimePlatform."""
    return "windows" if _is_windows(td) else "linux"


def _is_windows(td: Mapping[str, Any]) -> bool:
    family = _os_family(td)
    return family is not None and family.startswith("WINDOWS_")


def _os_family(td: Mapping[str, Any]) -> str | None:
    platform = td.get("runtimePlatform")
    if not isinstance(platform, Mapping):
        return None
    family = platform.get("operatingSystemFamily")
    return str(family) if family else None


def _secret_store(secret: Mapping[str, Any]) -> str:
    # Any partition's Secrets Manager ARN (arn:aws-cn:secretsmanager:..., arn:aws-us-gov:...).
    value = str(secret.get("valueFrom", ""))
    return "asm" if value.startswith("arn:") and value.split(":")[2:3] == ["secretsmanager"] else "ssm"


def _ecs_attribute_order(names: Iterable[str]) -> list[str]:
    unique = list(dict.fromkeys(names))
    rank = {n: i for i, n in enumerate(REQUIRES_ATTRIBUTES_ORDER)}
    known = sorted((n for n in unique if n in rank), key=rank.__getitem__)
    ordered = known + [n for n in unique if n not in rank]
    if len(ordered) > _HASH_SET_THRESHOLD:
        moved = [n for n in _MOVED_WHEN_RESIZED if n in ordered]
        ordered = [n for n in ordered if n not in moved] + moved
    return ordered


def _ordered(d: Mapping[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    out = {k: d[k] for k in order if k in d}
    out.update((k, v) for k, v in d.items() if k not in out)
    return out


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    return (v for v in _list(value) if isinstance(v, dict))


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DECIMAL_INT_RE.fullmatch(value.strip()):
        return int(value)
    return None


# ASCII digits only (str.isdigit() admits "²", which int() refuses), at most 18 so int() is cheap and
# the value fits the store's 64-bit integers.
_DECIMAL_INT_RE = re.compile(r"-?[0-9]{1,18}")


def _is_set(value: Any) -> bool:
    """A parameter counts as used when it is true, non-empty, or any other non-null value."""
    if value is None or value is False:
        return False
    if isinstance(value, list | dict | str):
        return len(value) > 0
    return True
