"""Capacity providers: CreateCapacityProvider, UpdateCapacityProvider, DeleteCapacityProvider,
DescribeCapacityProviders, PutClusterCapacityProviders; and which launch type a RunTask/CreateService
request means (``launchType``, a ``capacityProviderStrategy``, or the cluster's default strategy).

``FARGATE`` and ``FARGATE_SPOT`` exist in every account (reserved). Auto Scaling group providers are
recorded and validated; there are no Auto Scaling groups here to scale, so tasks placed through one run
on the cluster's container instances and carry its name.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ecs import tagging, task_state
from taskvpc.control.ecs.clusters import DEFAULT_CLUSTER, cluster_name_of
from taskvpc.domain import capacity
from taskvpc.domain.arns import ecs_arn, foreign_arn, last_path_part, parse_arn
from taskvpc.domain.errors import ClientError, invalid_parameter
from taskvpc.domain.services import check_launch_choice
from taskvpc.store import ecs_repo, services_repo

Doc = dict[str, Any]

_LAUNCH_TYPES = ("EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES")


def _arn(ctx: RequestContext, name: str) -> str:
    return ecs_arn(ctx.region, ctx.account_id, f"capacity-provider/{name}")


def _reserved(ctx: RequestContext, name: str) -> Doc:
    return {"capacityProviderArn": _arn(ctx, name), "name": name, "status": "ACTIVE", "tags": []}


def _not_found() -> ClientError:
    return invalid_parameter("The specified capacity provider does not exist.")  # unconfirmed wording


def _find(conn: Connection, ctx: RequestContext, identifier: str) -> Doc | None:
    if foreign_arn(identifier, ctx.region, ctx.account_id):
        return None  # another partition's, region's or account's provider is not one of ours
    name = last_path_part(identifier)
    if name in capacity.FARGATE_PROVIDERS:
        return _reserved(ctx, name)
    found = services_repo.get_capacity_provider(conn, ctx.region, name)
    return found if found is not None and found["status"] == "ACTIVE" else None


# ---- which launch a request means ---------------------------------------------------------------------


def launch_choice(
    conn: Connection, ctx: RequestContext, cluster: Doc, params: dict[str, Any]
) -> tuple[str, list[Doc]]:
    """(launch type, normalised strategy: empty when a launch type was named)."""
    check_launch_choice(params)
    launch_type = params.get("launchType")
    strategy = params.get("capacityProviderStrategy") or []
    if not launch_type and not strategy:
        strategy = cluster.get("defaultCapacityProviderStrategy") or []
        launch_type = None if strategy else capacity.EC2
    if launch_type:
        if launch_type not in _LAUNCH_TYPES:
            raise invalid_parameter(f"Invalid launch type: {launch_type}.")  # unconfirmed
        if launch_type not in (capacity.EC2, capacity.FARGATE):
            raise ClientError(
                "UnsupportedFeatureException",
                f"taskvpc runs the EC2 and FARGATE launch types, not {launch_type}.",
            )
        return launch_type, []
    items = capacity.normalized_strategy(strategy)
    associated = set(cluster.get("capacityProviders") or [])
    for item in items:
        if item["capacityProvider"] not in associated:
            raise invalid_parameter(capacity.NOT_ASSOCIATED)
    fargate = items[0]["capacityProvider"] in capacity.FARGATE_PROVIDERS
    return (capacity.FARGATE if fargate else capacity.EC2), items


# ---- the API ------------------------------------------------------------------------------------------


def create_capacity_provider(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["name"]
    capacity.check_provider_name(name)
    group = params.get("autoScalingGroupProvider")
    if not group:
        raise ClientError(
            "UnsupportedFeatureException", "taskvpc records Auto Scaling group capacity providers only."
        )
    group_arn = parse_arn(str(group.get("autoScalingGroupArn", "")))
    if group_arn is None or group_arn.service != "autoscaling":  # in any partition
        raise invalid_parameter("The specified Auto Scaling group ARN is not valid.")  # unconfirmed wording
    new_tags = params.get("tags", [])
    tagging.check_new_tags(new_tags)
    provider: Doc = {
        "capacityProviderArn": _arn(ctx, name),
        "name": name,
        "status": "ACTIVE",
        "autoScalingGroupProvider": {
            "autoScalingGroupArn": group["autoScalingGroupArn"],
            "managedScaling": {
                "status": "DISABLED",
                "targetCapacity": 100,
                "minimumScalingStepSize": 1,
                "maximumScalingStepSize": 10000,
                "instanceWarmupPeriod": 300,
                **(group.get("managedScaling") or {}),
            },  # the defaults ECS fills in (API reference, ManagedScaling)
            "managedTerminationProtection": group.get("managedTerminationProtection", "DISABLED"),
            "managedDraining": group.get("managedDraining", "ENABLED"),
        },
        "tags": new_tags,
    }
    with ctx.db.transaction() as conn:
        existing = services_repo.get_capacity_provider(conn, ctx.region, name)
        if existing is not None and existing["status"] == "ACTIVE":
            raise ClientError(
                "ClientException", "The specified capacity provider already exists."
            )  # unconfirmed wording
        services_repo.put_capacity_provider(conn, ctx.region, provider, ctx.now)
        if new_tags:
            ecs_repo.put_tags(conn, ctx.region, provider["capacityProviderArn"], new_tags)
    return {"capacityProvider": provider}


def update_capacity_provider(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        provider = _find(conn, ctx, params["name"])
        if provider is None:
            raise _not_found()
        if provider["name"] in capacity.FARGATE_PROVIDERS:
            raise invalid_parameter(
                "The FARGATE and FARGATE_SPOT capacity providers cannot be updated."
            )  # unconfirmed
        change = params.get("autoScalingGroupProvider") or {}
        current = provider["autoScalingGroupProvider"]
        if change.get("managedScaling"):
            current["managedScaling"] = {**current["managedScaling"], **change["managedScaling"]}
        for member in ("managedTerminationProtection", "managedDraining"):
            if change.get(member):
                current[member] = change[member]
        provider["updateStatus"] = "UPDATE_COMPLETE"
        services_repo.put_capacity_provider(conn, ctx.region, provider, ctx.now)
    return {"capacityProvider": provider}


def _clusters_using(conn: Connection, ctx: RequestContext, name: str) -> bool:
    clusters = services_repo.active_clusters(conn, ctx.region)
    return any(name in (c.get("capacityProviders") or []) for c in clusters)


def delete_capacity_provider(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        provider = _find(conn, ctx, params["capacityProvider"])
        if provider is None:
            raise _not_found()
        if provider["name"] in capacity.FARGATE_PROVIDERS:
            raise invalid_parameter(
                "The FARGATE and FARGATE_SPOT capacity providers cannot be deleted."
            )  # unconfirmed
        if _clusters_using(conn, ctx, provider["name"]):
            raise ClientError(
                "ResourceInUseException",
                "The specified capacity provider is in use and cannot be removed.",
            )  # unconfirmed wording
        provider.update(status="INACTIVE", updateStatus="DELETE_COMPLETE")
        services_repo.put_capacity_provider(conn, ctx.region, provider, ctx.now)
    return {"capacityProvider": provider}


def describe_capacity_providers(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with_tags = "TAGS" in params.get("include", ())
    failures: list[dict[str, str]] = []
    with ctx.db.read() as conn:
        if params.get("capacityProviders"):
            found = []
            for identifier in params["capacityProviders"]:
                provider = _find(conn, ctx, identifier)
                if provider is None:
                    arn = identifier if identifier.startswith("arn:") else _arn(ctx, identifier)
                    failures.append({"arn": arn, "reason": "MISSING"})
                else:
                    found.append(provider)
        else:
            found = [_reserved(ctx, n) for n in sorted(capacity.FARGATE_PROVIDERS)]
            found += [
                p for p in services_repo.list_capacity_providers(conn, ctx.region) if p["status"] == "ACTIVE"
            ]
        if with_tags:
            for provider in found:
                provider["tags"] = ecs_repo.get_tags(conn, provider["capacityProviderArn"])
    if not with_tags:
        for provider in found:
            provider.pop("tags", None)
    return {"capacityProviders": found, "failures": failures}


def put_cluster_capacity_providers(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    names = list(params["capacityProviders"])
    strategy = capacity.normalized_strategy(params["defaultCapacityProviderStrategy"])
    cluster_name = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    with ctx.db.transaction() as conn:
        cluster = dict(task_state.lock(conn, ctx, cluster_name))
        for name in names:
            if _find(conn, ctx, name) is None:
                raise _not_found()
        for item in strategy:
            if item["capacityProvider"] not in names:
                raise invalid_parameter(capacity.NOT_ASSOCIATED)
        cluster.update(capacityProviders=names, defaultCapacityProviderStrategy=strategy)
        ecs_repo.put_cluster(conn, ctx.region, cluster, ctx.now)
        return {"cluster": {**cluster, "tags": ecs_repo.get_tags(conn, cluster["clusterArn"])}}
