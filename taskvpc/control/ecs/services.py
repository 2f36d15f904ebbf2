"""Service use cases: CreateService, UpdateService, DeleteService, DescribeServices, ListServices,
ListServicesByNamespace.

A service is its document (``services.body``), its deployments and its events. These calls only change
what is wanted (desired count, a new PRIMARY deployment, DRAINING); starting and stopping tasks is the
service scheduler's (:mod:`taskvpc.control.ecs.service_scheduler`), which runs each service's reconcile
pass shortly after. What a deployment launches is validated here with RunTask's own checks
(:func:`taskvpc.control.ecs.tasks.prepare_launch`), so a service refuses what RunTask would.

``loadBalancers`` are checked as ECS checks them (:func:`taskvpc.control.elbv2.service_targets.
check_load_balancers`) against the task definition the deployment runs; each deployment keeps the ones its
tasks register in (``_loadBalancers``, not shown), so changing them is a new deployment.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ecs import capacity_providers, tagging, task_state, tasks
from taskvpc.control.ecs.clusters import DEFAULT_CLUSTER, cluster_name_of
from taskvpc.control.elbv2 import service_targets
from taskvpc.domain import capacity, services as svc
from taskvpc.domain.arns import foreign_arn, last_path_part
from taskvpc.domain.errors import ClientError, invalid_parameter
from taskvpc.domain.pagination import Pager, is_str, page_size
from taskvpc.store import ecs_repo, services_repo

Row = dict[str, Any]
Doc = dict[str, Any]

_BAD_TOKEN = invalid_parameter("Invalid nextToken.")  # unconfirmed wording


def service_not_found() -> ClientError:
    return ClientError("ServiceNotFoundException", "Service not found.")  # real text


def service_not_active() -> ClientError:
    return ClientError("ServiceNotActiveException", "Service was not ACTIVE.")  # real text


def new_deployment_id(ctx: RequestContext) -> str:
    return svc.deployment_id(uuid.UUID(ctx.new_id()).int)


def check_launch(conn: Connection, ctx: RequestContext, cluster: Doc, name: str, launch: Doc) -> Doc:
    """RunTask's validation of what a deployment starts; the task definition's ARN resolved."""
    return _checked_launch(conn, ctx, cluster, name, launch)[0]


def _checked_launch(
    conn: Connection, ctx: RequestContext, cluster: Doc, name: str, launch: Doc
) -> tuple[Doc, Doc]:
    """:func:`check_launch` and the task definition it resolved."""
    prepared = tasks.prepare_launch(
        conn,
        ctx,
        cluster,
        {**launch, "group": f"service:{name}", "startedBy": svc.deployment_id(0)},
    )
    return {**launch, "taskDefinition": prepared.td["taskDefinitionArn"]}, prepared.td


def _grace_without_balancers() -> ClientError:
    # real text ([G9] in the ELBv2 notes: public CreateService output)
    return invalid_parameter(
        "Health check grace period is only valid for services configured to use load balancers"
    )


def _balancers(conn: Connection, ctx: RequestContext, given: Any, td: Doc) -> list[Doc]:
    if not given:
        return []
    if not isinstance(given, list):
        raise invalid_parameter("loadBalancers must be a list.")  # unconfirmed (the model types it)
    return service_targets.check_load_balancers(conn, ctx, given, td)


def find(conn: Connection, ctx: RequestContext, cluster: str, identifier: str) -> Row | None:
    if foreign_arn(identifier, ctx.region, ctx.account_id):
        return None  # another partition's, region's or account's service is not one of ours
    return services_repo.find_service(conn, ctx.region, cluster, last_path_part(identifier))


def _set_active_count(conn: Connection, ctx: RequestContext, cluster: Doc) -> None:
    count = services_repo.count_active(conn, ctx.region, cluster["clusterName"])
    if cluster.get("activeServicesCount") != count:
        ecs_repo.put_cluster(conn, ctx.region, {**cluster, "activeServicesCount": count}, ctx.now)


def view(conn: Connection, row: Row, with_tags: bool) -> Doc:
    doc = svc.service_view(row["body"])
    doc["deployments"] = [svc.service_view(d) for d in services_repo.deployments_of(conn, row["id"])]
    doc["events"] = services_repo.events_of(conn, row["id"], svc.MAX_EVENTS)
    if with_tags:
        doc["tags"] = ecs_repo.get_tags(conn, doc["serviceArn"])
    return doc


# ---- CreateService ----------------------------------------------------------------------------------


def create_service(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    svc.check_create(params)
    if not params.get("taskDefinition"):
        # optional in the model (EXTERNAL deployment controllers omit it), needed by ECS's own scheduler;
        # was a KeyError 500 (found by tests/unit/test_fuzz_api.py) # unconfirmed wording
        raise invalid_parameter("A task definition must be specified for a service scheduled by ECS.")
    name = params["serviceName"]
    new_tags = params.get("tags", [])
    tagging.check_new_tags(new_tags)
    configuration = svc.deployment_configuration(params.get("deploymentConfiguration"), None)
    daemon = params.get("schedulingStrategy") == svc.DAEMON
    if daemon and params.get("deploymentConfiguration", {}).get("maximumPercent") not in (None, 100):
        raise invalid_parameter(
            "The maximumPercent parameter is not valid for services using the DAEMON scheduling strategy."
        )  # unconfirmed wording
    if daemon:  # DAEMON: at most one task per instance; by default all may stop (API reference)
        given = params.get("deploymentConfiguration") or {}
        configuration.update(maximumPercent=100, minimumHealthyPercent=given.get("minimumHealthyPercent", 0))
    cluster_name = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    with ctx.db.transaction() as conn:
        cluster = task_state.lock(conn, ctx, cluster_name)
        existing = services_repo.find_service(conn, ctx.region, cluster_name, name)
        if existing is not None and existing["status"] == svc.ACTIVE:
            # real text (hashicorp/terraform-provider-aws#23462 and many more)
            raise invalid_parameter("Creation of service was not idempotent.")
        if existing is not None and existing["status"] == svc.DRAINING:
            raise invalid_parameter("Unable to Start a service that is still Draining.")  # unconfirmed
        launch, td = _checked_launch(conn, ctx, cluster, name, svc.launch_of(params))
        if params.get("role") and td.get("networkMode") == "awsvpc":
            # real text (public CreateService outputs): awsvpc services use ECS's service-linked role
            raise invalid_parameter(
                "You cannot specify an IAM role for services that require a service linked role."
            )
        balancers = _balancers(conn, ctx, params.get("loadBalancers"), td)
        if params.get("healthCheckGracePeriodSeconds") is not None and not balancers:
            raise _grace_without_balancers()
        launch_type, strategy = capacity_providers.launch_choice(conn, ctx, cluster, params)
        if strategy:  # given, or the cluster's default (which ECS copies onto the service)
            launch["capacityProviderStrategy"] = strategy
        else:
            launch["launchType"] = launch_type
        if launch_type == capacity.FARGATE:
            launch.setdefault("platformVersion", "LATEST")
            launch["platformFamily"] = capacity.PLATFORM_FAMILY
        doc: Doc = {
            "serviceArn": svc.service_arn(ctx.region, ctx.account_id, cluster_name, name),
            "serviceName": name,
            "clusterArn": cluster["clusterArn"],
            "loadBalancers": balancers,
            "serviceRegistries": [],
            "status": svc.ACTIVE,
            "desiredCount": 0 if daemon else params.get("desiredCount", 0),
            "runningCount": 0,
            "pendingCount": 0,
            **launch,
            "deploymentConfiguration": configuration,
            "createdAt": ctx.now,
            "createdBy": ctx.principal_arn,
            "placementConstraints": params.get("placementConstraints", []),
            "placementStrategy": params.get("placementStrategy", []),
            "schedulingStrategy": params.get("schedulingStrategy", svc.REPLICA),
            "deploymentController": {"type": "ECS"},
            "enableECSManagedTags": bool(params.get("enableECSManagedTags", False)),
            "propagateTags": params.get("propagateTags", "NONE"),
            "enableExecuteCommand": False,
            "_steady": False,
        }
        if balancers:  # ECS shows 0 for a service with load balancers that gave none
            doc["healthCheckGracePeriodSeconds"] = params.get("healthCheckGracePeriodSeconds") or 0
        row: Row = {
            "id": uuid.UUID(ctx.new_id()).hex,
            "region": ctx.region,
            "cluster": cluster_name,
            "name": name,
            "arn": doc["serviceArn"],
            "status": svc.ACTIVE,
            "created_at": ctx.now,
            "updated_at": ctx.now,
            "body": doc,
        }
        services_repo.insert_service(conn, row)
        deployment = svc.new_deployment(new_deployment_id(ctx), doc, svc.PRIMARY, ctx.now, launch)
        deployment["_loadBalancers"] = balancers
        services_repo.insert_deployment(conn, row, deployment, ctx.now)
        if new_tags:
            ecs_repo.put_tags(conn, ctx.region, doc["serviceArn"], new_tags)
        _set_active_count(conn, ctx, cluster)
        return {"service": view(conn, row, with_tags=True)}


# ---- UpdateService ----------------------------------------------------------------------------------


def update_service(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    svc.check_launch_choice(params)
    svc.check_common(params)
    if params.get("desiredCount") is not None:
        svc.check_desired_count(params["desiredCount"])
    cluster_name = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    with ctx.db.transaction() as conn:
        cluster = task_state.lock(conn, ctx, cluster_name)
        row = find(conn, ctx, cluster_name, params["service"])
        if row is None:
            raise service_not_found()
        if row["status"] != svc.ACTIVE:
            raise service_not_active()
        services_repo.lock_service(conn, row["id"])
        doc = row["body"]
        daemon = doc["schedulingStrategy"] == svc.DAEMON
        if daemon and params.get("desiredCount") is not None:
            raise invalid_parameter(
                "The daemon scheduling strategy does not support a desired count for services."
            )  # unconfirmed wording
        doc["deploymentConfiguration"] = svc.deployment_configuration(
            params.get("deploymentConfiguration"), doc["deploymentConfiguration"]
        )
        if params.get("desiredCount") is not None:
            doc["desiredCount"] = params["desiredCount"]
        for member in ("placementConstraints", "placementStrategy", "propagateTags", "enableECSManagedTags"):
            if params.get(member) is not None:
                doc[member] = params[member]
        wanted = {**svc.launch_of(doc), **svc.launch_of(params)}
        if params.get("capacityProviderStrategy"):
            wanted.pop("launchType", None)
            wanted["capacityProviderStrategy"] = capacity.normalized_strategy(
                params["capacityProviderStrategy"]
            )
        launch, td = _checked_launch(conn, ctx, cluster, doc["serviceName"], wanted)
        given = params.get("loadBalancers")
        balancers = doc.get("loadBalancers") or []
        if given is not None or launch["taskDefinition"] != doc.get("taskDefinition"):
            # checked again against a new task definition; kept as they are otherwise (a listener
            # removed since does not block a change of desiredCount)
            balancers = _balancers(conn, ctx, balancers if given is None else given, td)
        grace = params.get("healthCheckGracePeriodSeconds")
        if grace is not None and not balancers:
            raise _grace_without_balancers()
        moved = balancers != (doc.get("loadBalancers") or [])
        doc["loadBalancers"] = balancers
        if not balancers:
            doc.pop("healthCheckGracePeriodSeconds", None)
        elif grace is not None or "healthCheckGracePeriodSeconds" not in doc:
            doc["healthCheckGracePeriodSeconds"] = grace or 0
        if launch != svc.launch_of(doc) or moved or params.get("forceNewDeployment"):
            new_primary(conn, ctx, row, launch)
            doc["_steady"] = False
        for deployment in services_repo.deployments_of(conn, row["id"]):
            if deployment["status"] == svc.PRIMARY and deployment["desiredCount"] != doc["desiredCount"]:
                deployment.update(desiredCount=doc["desiredCount"], updatedAt=ctx.now)
                services_repo.save_deployment(conn, deployment)
                doc["_steady"] = False
        services_repo.save_service(conn, row, ctx.now)
        return {"service": view(conn, row, with_tags=False)}


def new_primary(conn: Connection, ctx: RequestContext, row: Row, launch: Doc) -> Doc:
    """Make ``launch`` the service's PRIMARY deployment; the one before becomes ACTIVE and drains."""
    doc = row["body"]
    for member in svc.DEPLOYMENT_MEMBERS:
        doc.pop(member, None)
    doc.update(launch)
    for deployment in services_repo.deployments_of(conn, row["id"]):
        if deployment["status"] == svc.PRIMARY:
            deployment.update(status=svc.ACTIVE, updatedAt=ctx.now)
            services_repo.save_deployment(conn, deployment)
    deployment = svc.new_deployment(new_deployment_id(ctx), doc, svc.PRIMARY, ctx.now, launch)
    deployment["_loadBalancers"] = doc.get("loadBalancers") or []
    services_repo.insert_deployment(conn, row, deployment, ctx.now)
    return deployment


# ---- DeleteService ----------------------------------------------------------------------------------


def delete_service(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    cluster_name = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    with ctx.db.transaction() as conn:
        cluster = task_state.lock(conn, ctx, cluster_name)
        row = find(conn, ctx, cluster_name, params["service"])
        if row is None:
            raise service_not_found()
        if row["status"] != svc.ACTIVE:
            raise service_not_active()
        doc = row["body"]
        if doc["schedulingStrategy"] == svc.REPLICA and doc["desiredCount"] > 0 and not params.get("force"):
            # real text (public DeleteService outputs)
            raise invalid_parameter("The service cannot be stopped while it is scaled above 0.")
        doc.update(status=svc.DRAINING, desiredCount=0, _steady=False)
        services_repo.save_service(conn, row, ctx.now)
        _set_active_count(conn, ctx, cluster)
        return {"service": view(conn, row, with_tags=False)}


# ---- DescribeServices, ListServices, ListServicesByNamespace ----------------------------------------


def describe_services(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    identifiers = params["services"]
    if len(identifiers) > svc.MAX_DESCRIBE:
        raise invalid_parameter(f"services can have at most {svc.MAX_DESCRIBE} items.")  # patterned
    cluster_name = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    with_tags = "TAGS" in params.get("include", ())
    found: list[Doc] = []
    failures: list[dict[str, str]] = []
    with ctx.db.read() as conn:
        task_state.require_cluster(conn, ctx, cluster_name)
        for identifier in dict.fromkeys(identifiers):
            row = find(conn, ctx, cluster_name, identifier)
            if row is None or (identifier.startswith("arn:") and identifier != row["arn"]):
                arn = identifier
                if not identifier.startswith("arn:"):
                    arn = svc.service_arn(ctx.region, ctx.account_id, cluster_name, identifier)
                failures.append({"arn": arn, "reason": "MISSING"})
                continue
            found.append(view(conn, row, with_tags))
    return {"services": found, "failures": failures}


def list_services(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    cluster_name = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    pager = Pager.of(ctx.page_key, "ecs:ListServices", ctx.region, ctx.account_id, params)
    after = pager.decode(params.get("nextToken"), _BAD_TOKEN, is_str)
    limit = page_size(params.get("maxResults"), 10, 100)  # default 10, at most 100 (API reference)
    with ctx.db.read() as conn:
        task_state.require_cluster(conn, ctx, cluster_name)
        arns = services_repo.list_service_arns(
            conn,
            ctx.region,
            cluster_name,
            launch_type=params.get("launchType"),
            scheduling_strategy=params.get("schedulingStrategy"),
            after=after,
            limit=limit + 1,
        )
    result: dict[str, Any] = {"serviceArns": arns[:limit]}
    if len(arns) > limit:
        result["nextToken"] = pager.encode(arns[limit - 1])
    return result


def list_services_by_namespace(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    # Service Connect namespaces (Cloud Map) do not exist here, so every namespace is unknown.
    raise ClientError("NamespaceNotFoundException", "Namespace not found.")  # unconfirmed wording
