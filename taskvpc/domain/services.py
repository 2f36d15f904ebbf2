"""ECS services: request validation, the Service and Deployment documents, event texts. Pure.

The control plane keeps each service as the DescribeServices ``Service`` document (plus a few members
of its own whose names start with ``_``, never shown), each deployment as a ``Deployment`` document and
each event as a line. What the scheduler does with them is :mod:`taskvpc.scheduler.services`.

Sources: the ECS API reference (CreateService, UpdateService, DeploymentConfiguration,
ServiceDeploymentCircuitBreaker) and the developer guide's service event messages; messages quoted from
real outputs say so, the others are marked ``# unconfirmed``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from taskvpc.domain.arns import ecs_arn
from taskvpc.domain.errors import ClientError, invalid_parameter

Doc = dict[str, Any]

REPLICA = "REPLICA"
DAEMON = "DAEMON"
ACTIVE, DRAINING, INACTIVE = "ACTIVE", "DRAINING", "INACTIVE"
PRIMARY = "PRIMARY"  # a deployment's status; the older ones are ACTIVE until drained
IN_PROGRESS, COMPLETED, FAILED = "IN_PROGRESS", "COMPLETED", "FAILED"

DEFAULT_MINIMUM_HEALTHY_PERCENT = 100  # API reference, DeploymentConfiguration (REPLICA)
DEFAULT_MAXIMUM_PERCENT = 200  # API reference, DeploymentConfiguration (REPLICA)
MAX_EVENTS = 100  # DescribeServices shows the 100 newest events (developer guide, service events)
MAX_DESCRIBE = 10  # DescribeServices: "up to 10 services" (API reference)
MAX_DESIRED_COUNT = 10_000  # the service quota "tasks per service" (developer guide, quotas)
CIRCUIT_BREAKER_MIN, CIRCUIT_BREAKER_MAX = 3, 200  # API reference, ServiceDeploymentCircuitBreaker
MANAGED_TAG_CLUSTER = "aws:ecs:clusterName"  # enableECSManagedTags (developer guide, tagging)
MANAGED_TAG_SERVICE = "aws:ecs:serviceName"

_SERVICE_NAME = re.compile(r"[a-zA-Z0-9_-]{1,255}")
_PROPAGATE = ("TASK_DEFINITION", "SERVICE", "NONE")
_CONTROLLERS = ("ECS", "CODE_DEPLOY", "EXTERNAL")

# Members of CreateService/UpdateService that make a new deployment when they change (API reference,
# UpdateService: "a new deployment is triggered" by these).
DEPLOYMENT_MEMBERS = (
    "taskDefinition",
    "networkConfiguration",
    "launchType",
    "capacityProviderStrategy",
    "platformVersion",
    "platformFamily",
)


def service_arn(region: str, account_id: str, cluster: str, name: str) -> str:
    """Long format ``service/<cluster>/<name>``, as ECS writes it since 2018."""
    return ecs_arn(region, account_id, f"service/{cluster}/{name}")


def deployment_id(number: int) -> str:
    """``ecs-svc/`` and 19 digits, as real ``deployments[].id`` and service tasks' ``startedBy`` show."""
    return f"ecs-svc/{number % 10**19:019d}"


def circuit_breaker_threshold(desired_count: int) -> int:
    """Failed tasks that fail a deployment: 0.5 x desired, within [3, 200] (API reference). Rounded up
    # unconfirmed (the reference gives the formula, not the rounding)."""
    return min(CIRCUIT_BREAKER_MAX, max(CIRCUIT_BREAKER_MIN, math.ceil(0.5 * desired_count)))


def task_bounds(desired: int, minimum_healthy_percent: int, maximum_percent: int) -> tuple[int, int]:
    """(fewest healthy tasks, most tasks) a deployment keeps: the minimum rounded up, the maximum rounded
    down (API reference, DeploymentConfiguration)."""
    lowest = math.ceil(desired * minimum_healthy_percent / 100)
    highest = math.floor(desired * maximum_percent / 100)
    return lowest, highest


# ---- validation -------------------------------------------------------------------------------------


def check_service_name(name: str) -> None:
    if not _SERVICE_NAME.fullmatch(name):
        raise invalid_parameter(
            "Service name can contain up to 255 letters (uppercase and lowercase), numbers, underscores, "
            "and hyphens."
        )  # unconfirmed wording (the API reference's description)


def check_desired_count(count: Any) -> None:
    if not isinstance(count, int) or not 0 <= count <= MAX_DESIRED_COUNT:
        raise invalid_parameter(
            f"desiredCount must be between 0 and {MAX_DESIRED_COUNT}."
        )  # unconfirmed wording


def deployment_configuration(given: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> Doc:
    """The service's ``deploymentConfiguration``: ``given`` over ``current`` over the defaults, checked."""
    merged: Doc = {
        "deploymentCircuitBreaker": {"enable": False, "rollback": False},
        "maximumPercent": DEFAULT_MAXIMUM_PERCENT,
        "minimumHealthyPercent": DEFAULT_MINIMUM_HEALTHY_PERCENT,
    }
    for source in (current or {}, given or {}):
        for key, value in source.items():
            if value is not None:
                merged[key] = dict(value) if isinstance(value, dict) else value
    low, high = merged["minimumHealthyPercent"], merged["maximumPercent"]
    if not 0 <= low <= 100:
        raise invalid_parameter("minimumHealthyPercent must be between 0 and 100.")  # unconfirmed wording
    if high < 100 or high < low:
        raise invalid_parameter(
            "maximumPercent must be at least 100 and not less than minimumHealthyPercent."
        )  # unconfirmed wording
    if merged.get("strategy") not in (None, "ROLLING"):
        raise ClientError(
            "UnsupportedFeatureException",
            f"taskvpc supports the ROLLING deployment strategy only, not {merged['strategy']}.",
        )
    return merged


def check_create(params: Mapping[str, Any]) -> None:
    """What CreateService refuses before it looks at the store."""
    check_service_name(params["serviceName"])
    strategy = params.get("schedulingStrategy", REPLICA)
    if strategy == DAEMON:
        if params.get("desiredCount") is not None:
            raise invalid_parameter(
                "The daemon scheduling strategy does not support a desired count for services."
            )  # unconfirmed wording
        if params.get("placementStrategy"):
            raise invalid_parameter(
                "The daemon scheduling strategy does not support placement strategies."
            )  # unconfirmed wording
    else:
        check_desired_count(params.get("desiredCount", 0))
    check_launch_choice(params)
    controller = (params.get("deploymentController") or {}).get("type", "ECS")
    if controller not in _CONTROLLERS:
        raise invalid_parameter(f"Invalid deploymentController type: {controller}.")  # unconfirmed
    if controller != "ECS":
        raise ClientError(
            "UnsupportedFeatureException",
            f"taskvpc supports the ECS deployment controller only, not {controller}.",
        )
    check_common(params)


def check_launch_choice(params: Mapping[str, Any]) -> None:
    if params.get("launchType") and params.get("capacityProviderStrategy"):
        # real text (terraform-linters/tflint-ruleset-aws#349, pulumi/pulumi-awsx#599)
        raise invalid_parameter(
            "Specifying both a launch type and capacity provider strategy is not supported. "
            "Remove one and try again."
        )


def check_common(params: Mapping[str, Any]) -> None:
    """Members CreateService and UpdateService share."""
    propagate = params.get("propagateTags")
    if propagate is not None and propagate not in _PROPAGATE:
        raise invalid_parameter(f"Invalid propagateTags value: {propagate}.")  # unconfirmed
    grace = params.get("healthCheckGracePeriodSeconds")
    if grace is not None and not 0 <= grace <= 2_147_483_647:
        raise invalid_parameter(
            "healthCheckGracePeriodSeconds must be between 0 and 2147483647."
        )  # unconfirmed wording
    for member in (  # loadBalancers: checked by the control plane against ELBv2
        "serviceRegistries",
        "serviceConnectConfiguration",
        "volumeConfigurations",
    ):
        if params.get(member):
            raise ClientError(
                "UnsupportedFeatureException", f"taskvpc does not support {member} on services yet."
            )
    if params.get("enableExecuteCommand"):
        raise ClientError("UnsupportedFeatureException", "taskvpc does not support ECS Exec yet.")


# ---- documents --------------------------------------------------------------------------------------


def new_deployment(
    ident: str, service: Mapping[str, Any], status: str, now: float, launch: Mapping[str, Any]
) -> Doc:
    """A Deployment document for ``launch`` (taskDefinition, networkConfiguration, launch choice)."""
    doc: Doc = {
        "id": ident,
        "status": status,
        "taskDefinition": launch["taskDefinition"],
        "desiredCount": service["desiredCount"],
        "pendingCount": 0,
        "runningCount": 0,
        "failedTasks": 0,
        "createdAt": now,
        "updatedAt": now,
        "rolloutState": IN_PROGRESS,
        "rolloutStateReason": "ECS deployment " + ident + " in progress.",  # real text (DescribeServices)
    }
    for member in ("launchType", "capacityProviderStrategy", "platformVersion", "platformFamily"):
        if launch.get(member):
            doc[member] = launch[member]
    if launch.get("networkConfiguration"):
        doc["networkConfiguration"] = launch["networkConfiguration"]
    return doc


def launch_of(doc: Mapping[str, Any]) -> Doc:
    """The members of a service or deployment that define what its tasks are."""
    return {k: doc[k] for k in DEPLOYMENT_MEMBERS if doc.get(k) is not None}


def service_view(doc: Mapping[str, Any]) -> Doc:
    """The document without the control plane's own members."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def managed_tags(cluster: str, service: str) -> list[dict[str, str]]:
    return [{"key": MANAGED_TAG_CLUSTER, "value": cluster}, {"key": MANAGED_TAG_SERVICE, "value": service}]


# ---- event texts (developer guide, "Amazon ECS service event messages"; real outputs) ----------------


def event_started(service: str, task_ids: list[str]) -> str:
    tasks = " ".join(f"(task {t})" for t in task_ids)
    return f"(service {service}) has started {len(task_ids)} tasks: {tasks}."


def event_stopped(service: str, task_ids: list[str]) -> str:
    tasks = " ".join(f"(task {t})" for t in task_ids)
    return f"(service {service}) has stopped {len(task_ids)} running tasks: {tasks}."


def event_steady(service: str) -> str:
    return f"(service {service}) has reached a steady state."


def event_deployment_completed(service: str, ident: str) -> str:
    return f"(service {service}) (deployment {ident}) deployment completed."


def event_deployment_failed(service: str, ident: str) -> str:
    return f"(service {service}) (deployment {ident}) deployment failed: tasks failed to start."


def event_rolling_back(service: str, ident: str) -> str:
    return f"(service {service}) rolling back to deployment {ident}."


def event_unable_to_place(service: str, reason: str) -> str:
    """``reason`` is the sentence after "Reason:" / "The closest matching ..." (developer guide)."""
    return (
        f"(service {service}) was unable to place a task because no container instance met all of its "
        f"requirements. {reason} For more information, see the Troubleshooting section."
    )


ROLLOUT_COMPLETED_REASON = "ECS deployment {id} completed."  # real text (DescribeServices outputs)
ROLLOUT_FAILED_REASON = "ECS deployment circuit breaker: tasks failed to start."  # unconfirmed wording
ROLLOUT_ROLLED_BACK_REASON = (
    "ECS deployment circuit breaker: rolling back to deploymentId {id}."  # unconfirmed wording
)
SCALING_STOP_REASON = "Scaling activity initiated by (deployment {id})"  # real stoppedReason (public outputs)
UNHEALTHY_STOP_REASON = "Task failed container health checks"  # real stoppedReason (public outputs)
