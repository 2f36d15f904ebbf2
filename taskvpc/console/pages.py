"""The console's pages: one async function per route, each a few API calls as the user and a template.

URLs are stable per resource: ``/console/clusters/<name>``, ``.../tasks/<task id>``,
``/console/task-definitions/<family>:<revision>``, ``/console/security-groups/<id>``.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from taskvpc.console import views
from taskvpc.console.app import PREFIX, Console, Page, User
from taskvpc.console.http import Request, Response, event_stream
from taskvpc.domain.errors import ClientError

_MAX_PAGES = 10  # a list page shows at most this many API pages of resources


async def collect(
    console: Console, user: User, service: str, operation: str, params: dict[str, Any], key: str
) -> list[Any]:
    """Every item of a paginated list operation (up to _MAX_PAGES pages)."""
    items: list[Any] = []
    token_in, token_out = ("NextToken", "NextToken") if service == "ec2" else ("nextToken", "nextToken")
    for _ in range(_MAX_PAGES):
        answer = await console.call(user, service, operation, params)
        items.extend(answer.get(key, []))
        token = answer.get(token_out)
        if not token:
            break
        params = {**params, token_in: token}
    return items


def _back(request: Request, location: str) -> Response:
    return Response.redirect(PREFIX + location)


# ---- home and clusters -----------------------------------------------------------------------------


async def home(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    return _back(request, "/clusters")


async def clusters(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        arns = await collect(console, user, "ecs", "ListClusters", {}, "clusterArns")
        found = []
        for start in range(0, len(arns), 100):
            answer = await console.call(
                user, "ecs", "DescribeClusters", {"clusters": arns[start : start + 100]}
            )
            found.extend(answer["clusters"])
    except ClientError as error:
        return console.error_page(request, user, error)
    found.sort(key=lambda c: c["clusterName"])
    return console.page(request, user, "clusters.html", clusters=found)


async def _cluster_tasks(console: Console, user: User, cluster: str) -> list[views.TaskView]:
    arns: list[str] = []
    for status in ("RUNNING", "STOPPED"):
        answer = await console.call(
            user, "ecs", "ListTasks", {"cluster": cluster, "desiredStatus": status, "maxResults": 100}
        )
        arns.extend(answer["taskArns"])
    if not arns:
        return []
    answer = await console.call(user, "ecs", "DescribeTasks", {"cluster": cluster, "tasks": arns[:100]})
    tasks = sorted(answer["tasks"], key=lambda t: float(t.get("createdAt") or 0), reverse=True)
    return [views.task_view(task) for task in tasks]


async def cluster(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    name = match["cluster"]
    try:
        answer = await console.call(user, "ecs", "DescribeClusters", {"clusters": [name]})
        if not answer["clusters"]:
            raise ClientError("ClusterNotFoundException", f"Cluster {name} not found.", 400)
        tasks = await _cluster_tasks(console, user, name)
        services = await collect(console, user, "ecs", "ListServices", {"cluster": name}, "serviceArns")
    except ClientError as error:
        return console.error_page(request, user, error)
    return console.page(
        request,
        user,
        "cluster.html",
        cluster=answer["clusters"][0],
        tasks=tasks,
        services=[views.resource_id(arn) for arn in services],
    )


async def cluster_tasks_events(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response | None:
    name = match["cluster"]

    async def render() -> str:
        try:
            tasks = await _cluster_tasks(console, user, name)
        except ClientError as error:
            return console.fragment("_error_row.html", message=error.message, columns=5)
        return console.fragment("_tasks.html", tasks=tasks, cluster=name)

    assert request.send is not None and request.receive is not None
    await event_stream(request.send, request.receive, render, "tasks", stopping=lambda: console.stopping)
    return None


# ---- run task ----------------------------------------------------------------------------------------


async def _run_task_choices(console: Console, user: User) -> dict[str, Any]:
    task_definitions = await collect(
        console,
        user,
        "ecs",
        "ListTaskDefinitions",
        {"status": "ACTIVE", "sort": "DESC"},
        "taskDefinitionArns",
    )
    subnets = await collect(console, user, "ec2", "DescribeSubnets", {}, "Subnets")
    groups = await collect(console, user, "ec2", "DescribeSecurityGroups", {}, "SecurityGroups")
    vpcs = await collect(console, user, "ec2", "DescribeVpcs", {}, "Vpcs")
    default_vpc = next((v["VpcId"] for v in vpcs if v.get("IsDefault")), None)
    subnets.sort(key=lambda s: (s["VpcId"] != default_vpc, s["VpcId"], s["AvailabilityZone"], s["SubnetId"]))
    groups.sort(key=lambda g: (g["VpcId"] != default_vpc, g["VpcId"], g["GroupName"]))
    return {
        "task_definitions": [views.family_revision(arn) for arn in task_definitions],
        "subnets": subnets,
        "groups": groups,
        "default_vpc": default_vpc,
        "launch_types": views.LAUNCH_TYPES,
    }


async def run_task_form(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        choices = await _run_task_choices(console, user)
    except ClientError as error:
        return console.error_page(request, user, error)
    picked = request.query.get("taskDefinition", [""])[0]
    return console.page(
        request, user, "run_task.html", cluster=match["cluster"], error="", picked=picked, **choices
    )


async def run_task(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    name = match["cluster"]
    form = request.form
    try:
        params = views.run_task_params(name, form)
        answer = await console.call(user, "ecs", "RunTask", params)
        if answer.get("failures") and not answer.get("tasks"):
            failure = answer["failures"][0]
            raise views.FormError(
                f"RunTask failed: {failure.get('reason')} {failure.get('detail', '')}".strip()
            )
    except (ClientError, views.FormError) as error:
        message = f"{error.code}: {error.message}" if isinstance(error, ClientError) else str(error)
        try:
            choices = await _run_task_choices(console, user)
        except ClientError as inner:
            return console.error_page(request, user, inner)
        picked = (form.get("taskDefinition") or [""])[0]
        return console.page(
            request, user, "run_task.html", cluster=name, error=message, picked=picked, **choices
        )
    tasks = answer["tasks"]
    if len(tasks) == 1:
        return _back(request, f"/clusters/{quote(name)}/tasks/{views.resource_id(tasks[0]['taskArn'])}")
    return _back(request, f"/clusters/{quote(name)}")


# ---- one task ----------------------------------------------------------------------------------------


async def _task_view(console: Console, user: User, cluster: str, task_id: str) -> views.TaskView:
    answer = await console.call(user, "ecs", "DescribeTasks", {"cluster": cluster, "tasks": [task_id]})
    if not answer["tasks"]:
        raise ClientError("InvalidParameterException", f"Task {task_id} not found in cluster {cluster}.", 400)
    task = answer["tasks"][0]
    eni, _ = views.eni_details(task)
    groups: tuple[str, ...] = ()
    if eni.get("networkInterfaceId"):
        try:
            found = await console.call(
                user, "ec2", "DescribeNetworkInterfaces", {"NetworkInterfaceIds": [eni["networkInterfaceId"]]}
            )
            for interface in found["NetworkInterfaces"]:
                groups = tuple(g["GroupId"] for g in interface.get("Groups", []))
        except ClientError:
            pass  # the ENI is gone once the task stopped: its groups are no longer known
    return views.task_view(task, groups)


async def task(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        view = await _task_view(console, user, match["cluster"], match["task"])
    except ClientError as error:
        return console.error_page(request, user, error)
    return console.page(request, user, "task.html", task=view, cluster=match["cluster"])


async def task_events(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response | None:
    async def render() -> str:
        try:
            view = await _task_view(console, user, match["cluster"], match["task"])
        except ClientError as error:
            return console.fragment("_message.html", message=f"{error.code}: {error.message}")
        return console.fragment("_task.html", task=view, cluster=match["cluster"], user=user)

    assert request.send is not None and request.receive is not None
    await event_stream(request.send, request.receive, render, "task", stopping=lambda: console.stopping)
    return None


async def stop_task(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    params = {"cluster": match["cluster"], "task": match["task"], "reason": "Stopped in the console"}
    try:
        await console.call(user, "ecs", "StopTask", params)
    except ClientError as error:
        return console.error_page(request, user, error)
    return _back(request, f"/clusters/{quote(match['cluster'])}/tasks/{match['task']}")


# ---- services ----------------------------------------------------------------------------------------


async def _service_panel(console: Console, user: User, cluster: str, name: str) -> str:
    try:
        answer = await console.call(user, "ecs", "DescribeServices", {"cluster": cluster, "services": [name]})
        if not answer["services"]:
            raise ClientError("ServiceNotFoundException", f"Service {name} not found.", 400)
        service = answer["services"][0]
        arns = (
            await console.call(
                user, "ecs", "ListTasks", {"cluster": cluster, "serviceName": name, "maxResults": 100}
            )
        )["taskArns"]
        tasks: list[views.TaskView] = []
        if arns:
            described = await console.call(user, "ecs", "DescribeTasks", {"cluster": cluster, "tasks": arns})
            tasks = [views.task_view(t) for t in described["tasks"]]
    except ClientError as error:
        return console.fragment("_message.html", message=f"{error.code}: {error.message}")
    return console.fragment(
        "_service.html", service=views.service_view(service), tasks=tasks, cluster=cluster
    )


async def service(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    panel = await _service_panel(console, user, match["cluster"], match["service"])
    return console.page(
        request, user, "service.html", cluster=match["cluster"], name=match["service"], panel=panel
    )


async def service_events(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response | None:
    async def render() -> str:
        return await _service_panel(console, user, match["cluster"], match["service"])

    assert request.send is not None and request.receive is not None
    await event_stream(request.send, request.receive, render, "service", stopping=lambda: console.stopping)
    return None


# ---- task definitions ------------------------------------------------------------------------------


async def task_definitions(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        families = await collect(
            console, user, "ecs", "ListTaskDefinitionFamilies", {"status": "ALL"}, "families"
        )
    except ClientError as error:
        return console.error_page(request, user, error)
    return console.page(request, user, "task_definitions.html", families=sorted(families))


async def task_definition_family(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response:
    family = match["family"]
    revisions: list[tuple[str, str]] = []
    try:
        for status in ("ACTIVE", "INACTIVE"):
            params = {"familyPrefix": family, "status": status, "sort": "DESC"}
            arns = await collect(console, user, "ecs", "ListTaskDefinitions", params, "taskDefinitionArns")
            revisions += [
                (views.family_revision(a), status)
                for a in arns
                if views.family_revision(a).rpartition(":")[0] == family
            ]
    except ClientError as error:
        return console.error_page(request, user, error)
    revisions.sort(key=lambda r: int(r[0].rpartition(":")[2]), reverse=True)
    return console.page(request, user, "task_definition_family.html", family=family, revisions=revisions)


async def task_definition(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    name = f"{match['family']}:{match['revision']}"
    try:
        answer = await console.call(user, "ecs", "DescribeTaskDefinition", {"taskDefinition": name})
    except ClientError as error:
        return console.error_page(request, user, error)
    document = answer["taskDefinition"]
    return console.page(
        request,
        user,
        "task_definition.html",
        name=name,
        td=document,
        document=json.dumps(document, indent=2, sort_keys=True, default=str),
    )


async def new_task_definition(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response:
    return console.page(
        request, user, "task_definition_new.html", error="", form={}, modes=views.NETWORK_MODES
    )


async def register_task_definition(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response:
    form = request.form
    try:
        if (form.get("mode") or ["form"])[0] == "json":
            params = views.task_definition_from_json((form.get("json") or [""])[0])
        else:
            params = views.task_definition_from_form(form, console.region)
        answer = await console.call(user, "ecs", "RegisterTaskDefinition", params)
    except (ClientError, views.FormError) as error:
        message = f"{error.code}: {error.message}" if isinstance(error, ClientError) else str(error)
        flat = {key: values[0] for key, values in form.items() if values}
        return console.page(
            request, user, "task_definition_new.html", error=message, form=flat, modes=views.NETWORK_MODES
        )
    return _back(
        request, "/task-definitions/" + views.family_revision(answer["taskDefinition"]["taskDefinitionArn"])
    )


async def deregister_task_definition(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response:
    name = f"{match['family']}:{match['revision']}"
    try:
        await console.call(user, "ecs", "DeregisterTaskDefinition", {"taskDefinition": name})
    except ClientError as error:
        return console.error_page(request, user, error)
    return _back(request, f"/task-definitions/{name}")


# ---- security groups -----------------------------------------------------------------------------


async def security_groups(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        groups = await collect(console, user, "ec2", "DescribeSecurityGroups", {}, "SecurityGroups")
    except ClientError as error:
        return console.error_page(request, user, error)
    groups.sort(key=lambda g: (g["VpcId"], g["GroupName"]))
    return console.page(request, user, "security_groups.html", groups=groups)


async def _group(console: Console, user: User, group_id: str) -> dict[str, Any]:
    answer = await console.call(user, "ec2", "DescribeSecurityGroups", {"GroupIds": [group_id]})
    return dict(answer["SecurityGroups"][0])


async def _rules_response(
    console: Console, request: Request, user: User, group_id: str, error: str
) -> Response:
    try:
        group = await _group(console, user, group_id)
    except ClientError as failure:
        return console.error_page(request, user, failure)
    context: dict[str, Any] = {
        "group": group,
        "rules": views.rule_rows(group.get("IpPermissions", [])),
        "error": error,
    }
    if request.htmx:
        return Response.html(console.fragment("_rules.html", user=user, **context))
    if error:
        return console.page(request, user, "security_group.html", **context)
    return _back(request, f"/security-groups/{group_id}")


async def security_group(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        group = await _group(console, user, match["group"])
    except ClientError as error:
        return console.error_page(request, user, error)
    rules = views.rule_rows(group.get("IpPermissions", []))
    return console.page(request, user, "security_group.html", group=group, rules=rules, error="")


async def authorize_ingress(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    error = ""
    try:
        permission = views.permission_from_form(request.form)
        params = {"GroupId": match["group"], "IpPermissions": [permission]}
        await console.call(user, "ec2", "AuthorizeSecurityGroupIngress", params)
    except views.FormError as failure:
        error = str(failure)
    except ClientError as failure:
        error = f"{failure.code}: {failure.message}"
    return await _rules_response(console, request, user, match["group"], error)


async def revoke_ingress(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    error = ""
    try:
        permission = views.revoke_permission((request.form.get("rule") or [""])[0])
        params = {"GroupId": match["group"], "IpPermissions": [permission]}
        await console.call(user, "ec2", "RevokeSecurityGroupIngress", params)
    except views.FormError as failure:
        error = str(failure)
    except ClientError as failure:
        error = f"{failure.code}: {failure.message}"
    return await _rules_response(console, request, user, match["group"], error)


# ---- logs --------------------------------------------------------------------------------------------

_LOG_EVENTS = 200  # the newest events a stream's page shows


async def log_groups(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        groups = await collect(console, user, "logs", "DescribeLogGroups", {}, "logGroups")
    except ClientError as error:
        return console.error_page(request, user, error)
    return console.page(request, user, "log_groups.html", groups=groups, fmt=views.format_time)


async def _log_tail(console: Console, user: User, group: str, stream: str) -> str:
    params = {"logGroupName": group, "logStreamName": stream, "limit": _LOG_EVENTS, "startFromHead": False}
    try:
        answer = await console.call(user, "logs", "GetLogEvents", params)
    except ClientError as error:
        return console.fragment("_message.html", message=f"{error.code}: {error.message}")
    lines = [(views.format_time(e["timestamp"] / 1000), e["message"]) for e in answer.get("events", [])]
    return console.fragment("_log_lines.html", lines=lines)


async def log_group(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    group = match["group"]
    stream = request.query.get("stream", [""])[0]
    try:
        if stream:
            tail = await _log_tail(console, user, group, stream)
            return console.page(request, user, "log_stream.html", group=group, stream=stream, tail=tail)
        params = {"logGroupName": group, "orderBy": "LastEventTime", "descending": True}
        streams = await collect(console, user, "logs", "DescribeLogStreams", params, "logStreams")
    except ClientError as error:
        return console.error_page(request, user, error)
    return console.page(request, user, "log_group.html", group=group, streams=streams, fmt=views.format_time)


async def log_stream_events(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response | None:
    stream = request.query.get("stream", [""])[0]

    async def render() -> str:
        return await _log_tail(console, user, match["group"], stream)

    assert request.send is not None and request.receive is not None
    await event_stream(request.send, request.receive, render, "log", stopping=lambda: console.stopping)
    return None


_CLUSTER = r"/clusters/(?P<cluster>[A-Za-z0-9_-]{1,255})"
_TASK = _CLUSTER + r"/tasks/(?P<task>[0-9a-f]{32})"
_SERVICE = _CLUSTER + r"/services/(?P<service>[A-Za-z0-9_-]{1,255})"
_FAMILY = r"/task-definitions/(?P<family>[A-Za-z0-9_-]{1,255})"
_GROUP = r"/security-groups/(?P<group>sg-[0-9a-f]{1,17})"

ROUTES: list[tuple[str, re.Pattern[str], Page]] = [
    (method, re.compile(pattern), page)
    for method, pattern, page in [
        ("GET", r"/", home),
        ("GET", r"/clusters", clusters),
        ("GET", _CLUSTER, cluster),
        ("GET", _CLUSTER + r"/tasks/events", cluster_tasks_events),
        ("GET", _CLUSTER + r"/run-task", run_task_form),
        ("GET", _SERVICE, service),
        ("GET", _SERVICE + r"/events", service_events),
        ("POST", _CLUSTER + r"/run-task", run_task),
        ("GET", _TASK, task),
        ("GET", _TASK + r"/events", task_events),
        ("POST", _TASK + r"/stop", stop_task),
        ("GET", r"/task-definitions", task_definitions),
        ("GET", r"/task-definitions/new", new_task_definition),
        ("POST", r"/task-definitions", register_task_definition),
        ("GET", _FAMILY, task_definition_family),
        ("GET", _FAMILY + r":(?P<revision>[0-9]{1,9})", task_definition),
        ("POST", _FAMILY + r":(?P<revision>[0-9]{1,9})/deregister", deregister_task_definition),
        ("GET", r"/security-groups", security_groups),
        ("GET", _GROUP, security_group),
        ("POST", _GROUP + r"/ingress", authorize_ingress),
        ("POST", _GROUP + r"/ingress/revoke", revoke_ingress),
        ("GET", r"/log-groups", log_groups),
        ("GET", r"/log-events/(?P<group>[\.\-_/#A-Za-z0-9]{1,512})", log_stream_events),
        ("GET", r"/log-groups/(?P<group>[\.\-_/#A-Za-z0-9]{1,512})", log_group),
    ]
]
