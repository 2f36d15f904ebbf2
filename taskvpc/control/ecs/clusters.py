"""Cluster use cases: CreateCluster, DescribeClusters, ListClusters, DeleteCluster, UpdateCluster(Settings)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ecs import tagging
from taskvpc.domain.arns import cluster_arn, parse_arn
from taskvpc.domain.errors import ClientError, cluster_not_found, invalid_parameter
from taskvpc.domain.pagination import Pager, is_str, page_size
from taskvpc.store import ecs_repo

_CLUSTER_NAME = re.compile(r"[a-zA-Z0-9_-]{1,255}")
DEFAULT_CLUSTER = "default"


def cluster_name_of(ctx: RequestContext, identifier: str) -> str:
    """Name from a cluster name or ARN (``arn:aws:ecs:r:a:cluster/NAME``).

    The ARN of another partition, region or account stays whole: no cluster has a ``:`` in its name,
    so it is not found, as on ECS, and never taken for the local cluster of the same name.
    """
    if identifier.startswith("arn:"):
        arn = parse_arn(identifier)
        if arn is None or arn.resource_type != "cluster" or not arn.resource_id:
            raise invalid_parameter(
                f"Invalid identifier: Unexpected number of separators: {identifier}"
            )  # unconfirmed
        return arn.resource_id if arn.is_local(ctx.region, ctx.account_id) else identifier
    return identifier


def require_active_cluster(conn: Connection, ctx: RequestContext, identifier: str | None) -> dict[str, Any]:
    cluster = ecs_repo.get_cluster(conn, ctx.region, cluster_name_of(ctx, identifier or DEFAULT_CLUSTER))
    if cluster is None or cluster["status"] != "ACTIVE":
        raise cluster_not_found()
    return cluster


def new_cluster(ctx: RequestContext, name: str) -> dict[str, Any]:
    return {
        "clusterArn": cluster_arn(ctx.region, ctx.account_id, name),
        "clusterName": name,
        "status": "ACTIVE",
        "registeredContainerInstancesCount": 0,
        "runningTasksCount": 0,
        "pendingTasksCount": 0,
        "activeServicesCount": 0,
        "statistics": [],
        "settings": [{"name": "containerInsights", "value": "disabled"}],
        "capacityProviders": [],
        "defaultCapacityProviderStrategy": [],
    }


def create_cluster(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params.get("clusterName", DEFAULT_CLUSTER)
    if not _CLUSTER_NAME.fullmatch(name):
        raise invalid_parameter(
            "Cluster name can contain up to 255 letters (uppercase and lowercase), numbers, underscores, "
            "and hyphens."  # unconfirmed wording
        )
    new_tags = params.get("tags", [])
    tagging.check_new_tags(new_tags)
    with ctx.db.transaction() as conn:
        existing = ecs_repo.get_cluster(conn, ctx.region, name)
        if existing is not None and existing["status"] == "ACTIVE":
            # ECS answers a repeated CreateCluster with the cluster as it is.
            return {"cluster": _with_tags(conn, existing)}
        cluster = new_cluster(ctx, name)
        for member in ("configuration", "serviceConnectDefaults"):
            if member in params:
                cluster[member] = params[member]
        if "settings" in params:
            cluster["settings"] = _merge_settings(cluster["settings"], params["settings"])
        if "capacityProviders" in params:
            cluster["capacityProviders"] = params["capacityProviders"]
        if "defaultCapacityProviderStrategy" in params:
            cluster["defaultCapacityProviderStrategy"] = params["defaultCapacityProviderStrategy"]
        ecs_repo.put_cluster(conn, ctx.region, cluster, ctx.now)
        ecs_repo.put_tags(conn, ctx.region, cluster["clusterArn"], new_tags)
        return {"cluster": _with_tags(conn, cluster)}


def ensure_cluster(conn: Connection, ctx: RequestContext, name: str) -> dict[str, Any]:
    """The named cluster, created when missing: ECS creates ``default`` on first use."""
    cluster = ecs_repo.get_cluster(conn, ctx.region, name)
    if cluster is None or cluster["status"] != "ACTIVE":
        cluster = new_cluster(ctx, name)
        ecs_repo.put_cluster(conn, ctx.region, cluster, ctx.now)
    return cluster


def describe_clusters(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    identifiers = params.get("clusters") or [DEFAULT_CLUSTER]
    include = set(params.get("include", ()))
    names = [cluster_name_of(ctx, identifier) for identifier in identifiers]
    found: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    with ctx.db.read() as conn:
        by_name = ecs_repo.get_clusters(conn, ctx.region, names)
        for identifier, name in zip(identifiers, names, strict=True):
            cluster = by_name.get(name)
            if cluster is None:
                arn = (
                    identifier
                    if identifier.startswith("arn:")
                    else cluster_arn(ctx.region, ctx.account_id, name)
                )
                failures.append({"arn": arn, "reason": "MISSING"})
                continue
            found.append(_view(conn, cluster, include))
    return {"clusters": found, "failures": failures}


def _view(conn: Connection, cluster: dict[str, Any], include: set[str]) -> dict[str, Any]:
    """What DescribeClusters shows: the optional parts only when ``include`` asks for them."""
    view = dict(cluster)
    if "SETTINGS" not in include:
        view.pop("settings", None)
    if "STATISTICS" not in include:
        view.pop("statistics", None)
    if "CONFIGURATIONS" not in include:
        view.pop("configuration", None)
    if "TAGS" in include:
        view["tags"] = ecs_repo.get_tags(conn, cluster["clusterArn"])
    return view


def _with_tags(conn: Connection, cluster: dict[str, Any]) -> dict[str, Any]:
    return {**cluster, "tags": ecs_repo.get_tags(conn, cluster["clusterArn"])}


def list_clusters(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    pager = Pager.of(ctx.page_key, "ecs:ListClusters", ctx.region, ctx.account_id, params)
    after = pager.decode(
        params.get("nextToken"), invalid_parameter("Invalid nextToken."), is_str
    )  # unconfirmed
    limit = page_size(params.get("maxResults"), 100, 100)
    with ctx.db.read() as conn:
        arns = ecs_repo.list_cluster_arns(conn, ctx.region, after, limit + 1)
    result: dict[str, Any] = {"clusterArns": arns[:limit]}
    if len(arns) > limit:
        result["nextToken"] = pager.encode(arns[limit - 1])
    return result


def delete_cluster(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        cluster = require_active_cluster(conn, ctx, params["cluster"])
        if cluster["registeredContainerInstancesCount"]:
            raise ClientError(
                "ClusterContainsContainerInstancesException",
                "The Cluster cannot be deleted while Container Instances are active or draining.",
            )
        if cluster["activeServicesCount"]:
            raise ClientError(
                "ClusterContainsServicesException",
                "The Cluster cannot be deleted while Services are active.",
            )
        if cluster["runningTasksCount"] or cluster["pendingTasksCount"]:
            raise ClientError(
                "ClusterContainsTasksException",
                "The Cluster cannot be deleted while Tasks are active.",
            )
        cluster = {**cluster, "status": "INACTIVE"}
        ecs_repo.put_cluster(conn, ctx.region, cluster, ctx.now)
        return {"cluster": _with_tags(conn, cluster)}


def update_cluster(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        cluster = dict(require_active_cluster(conn, ctx, params["cluster"]))
        if "settings" in params:
            cluster["settings"] = _merge_settings(cluster.get("settings", []), params["settings"])
        for member in ("configuration", "serviceConnectDefaults"):
            if member in params:
                cluster[member] = params[member]
        ecs_repo.put_cluster(conn, ctx.region, cluster, ctx.now)
        return {"cluster": _with_tags(conn, cluster)}


def update_cluster_settings(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        cluster = dict(require_active_cluster(conn, ctx, params["cluster"]))
        cluster["settings"] = _merge_settings(cluster.get("settings", []), params["settings"])
        ecs_repo.put_cluster(conn, ctx.region, cluster, ctx.now)
        return {"cluster": _with_tags(conn, cluster)}


_SETTING_VALUES = {"containerInsights": ("enabled", "disabled", "enhanced")}


def _merge_settings(current: list[dict[str, str]], changes: list[dict[str, str]]) -> list[dict[str, str]]:
    merged = {setting["name"]: setting["value"] for setting in current}
    for change in changes:
        name, value = change.get("name"), change.get("value")
        if name is None or value is None:
            raise invalid_parameter("Cluster setting name and value must both be specified.")  # unconfirmed
        allowed = _SETTING_VALUES.get(name)
        if allowed is not None and value not in allowed:
            raise invalid_parameter(
                f"Invalid value '{value}' for cluster setting '{name}'. "  # unconfirmed wording
                f"Valid values are: {', '.join(allowed)}."
            )
        merged[name] = value
    return [{"name": name, "value": value} for name, value in merged.items()]
