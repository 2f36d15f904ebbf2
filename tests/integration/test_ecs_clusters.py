"""Cluster operations through boto3 against a real server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.integration.server import ACCOUNT_ID, REGION, Server, aws_error as error_of


def arn(name: str, region: str = REGION) -> str:
    return f"arn:aws:ecs:{region}:{ACCOUNT_ID}:cluster/{name}"


def test_create_describe_list_delete(ecs) -> None:  # type: ignore[no-untyped-def]
    created = ecs.create_cluster(clusterName="alpha", tags=[{"key": "team", "value": "net"}])["cluster"]
    assert created["clusterArn"] == arn("alpha")
    assert created["status"] == "ACTIVE"
    assert created["registeredContainerInstancesCount"] == 0
    assert created["tags"] == [{"key": "team", "value": "net"}]

    described = ecs.describe_clusters(clusters=["alpha", arn("alpha"), "nope"], include=["TAGS", "SETTINGS"])
    assert [c["clusterName"] for c in described["clusters"]] == ["alpha", "alpha"]
    assert described["clusters"][0]["tags"] == [{"key": "team", "value": "net"}]
    assert described["clusters"][0]["settings"] == [{"name": "containerInsights", "value": "disabled"}]
    assert described["failures"] == [{"arn": arn("nope"), "reason": "MISSING"}]
    plain = ecs.describe_clusters(clusters=["alpha"])["clusters"][0]
    assert "tags" not in plain and "settings" not in plain

    ecs.create_cluster(clusterName="beta")
    assert sorted(ecs.list_clusters()["clusterArns"]) == [arn("alpha"), arn("beta")]

    deleted = ecs.delete_cluster(cluster="alpha")["cluster"]
    assert deleted["status"] == "INACTIVE"
    assert ecs.list_clusters()["clusterArns"] == [arn("beta")]
    assert ecs.describe_clusters(clusters=["alpha"])["clusters"][0]["status"] == "INACTIVE"
    with pytest.raises(ClientError) as excinfo:
        ecs.delete_cluster(cluster="alpha")
    assert error_of(excinfo) == ("ClusterNotFoundException", "Cluster not found.", 400)


def test_create_cluster_is_idempotent_and_default_name(ecs) -> None:  # type: ignore[no-untyped-def]
    first = ecs.create_cluster()["cluster"]
    assert first["clusterName"] == "default"
    second = ecs.create_cluster(clusterName="default")["cluster"]
    assert second["clusterArn"] == first["clusterArn"]
    assert ecs.describe_clusters()["clusters"][0]["clusterName"] == "default"


def test_list_clusters_paginates(ecs) -> None:  # type: ignore[no-untyped-def]
    names = [f"c{i:02d}" for i in range(7)]
    for name in names:
        ecs.create_cluster(clusterName=name)
    seen: list[str] = []
    page = ecs.list_clusters(maxResults=3)
    while True:
        assert len(page["clusterArns"]) <= 3
        seen += page["clusterArns"]
        if "nextToken" not in page:
            break
        page = ecs.list_clusters(maxResults=3, nextToken=page["nextToken"])
    assert seen == sorted(arn(n) for n in names)
    paginator = ecs.get_paginator("list_clusters")
    assert [a for p in paginator.paginate(PaginationConfig={"PageSize": 2}) for a in p["clusterArns"]] == seen


def test_update_cluster_settings(ecs) -> None:  # type: ignore[no-untyped-def]
    ecs.create_cluster(clusterName="gamma")
    updated = ecs.update_cluster_settings(
        cluster="gamma", settings=[{"name": "containerInsights", "value": "enabled"}]
    )["cluster"]
    assert updated["settings"] == [{"name": "containerInsights", "value": "enabled"}]
    updated = ecs.update_cluster(
        cluster="gamma", configuration={"executeCommandConfiguration": {"logging": "DEFAULT"}}
    )["cluster"]
    assert updated["configuration"] == {"executeCommandConfiguration": {"logging": "DEFAULT"}}
    got = ecs.describe_clusters(clusters=["gamma"], include=["SETTINGS", "CONFIGURATIONS"])["clusters"][0]
    assert got["settings"] == [{"name": "containerInsights", "value": "enabled"}]
    assert got["configuration"]["executeCommandConfiguration"]["logging"] == "DEFAULT"
    with pytest.raises(ClientError) as excinfo:
        ecs.update_cluster_settings(
            cluster="missing", settings=[{"name": "containerInsights", "value": "enabled"}]
        )
    assert error_of(excinfo)[0] == "ClusterNotFoundException"


def test_state_is_per_region(api: Server) -> None:
    east = api.client("ecs", region="us-east-1")
    west = api.client("ecs", region="eu-west-1")
    east.create_cluster(clusterName="east-only")
    assert east.list_clusters()["clusterArns"] == [arn("east-only")]
    assert west.list_clusters()["clusterArns"] == []
    west.create_cluster(clusterName="east-only")
    assert west.list_clusters()["clusterArns"] == [arn("east-only", "eu-west-1")]


def test_tags_on_clusters(ecs) -> None:  # type: ignore[no-untyped-def]
    cluster_arn = ecs.create_cluster(clusterName="tagged")["cluster"]["clusterArn"]
    ecs.tag_resource(resourceArn=cluster_arn, tags=[{"key": "a", "value": "1"}, {"key": "b", "value": "2"}])
    ecs.tag_resource(resourceArn=cluster_arn, tags=[{"key": "a", "value": "3"}])
    assert ecs.list_tags_for_resource(resourceArn=cluster_arn)["tags"] == [
        {"key": "a", "value": "3"},
        {"key": "b", "value": "2"},
    ]
    ecs.untag_resource(resourceArn=cluster_arn, tagKeys=["a"])
    assert ecs.list_tags_for_resource(resourceArn=cluster_arn)["tags"] == [{"key": "b", "value": "2"}]
    with pytest.raises(ClientError) as excinfo:
        ecs.list_tags_for_resource(resourceArn=arn("ghost"))
    assert error_of(excinfo)[0] == "ClusterNotFoundException"
