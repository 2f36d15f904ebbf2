"""Task definitions: families, revisions, create by form or JSON, deregister."""

from __future__ import annotations

import json
import re

from taskvpc.console import views
from taskvpc.console.app import Console, User
from taskvpc.console.http import Request, Response
from taskvpc.console.pages.common import back, collect
from taskvpc.domain.errors import ClientError

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
    return back(
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
    return back(request, f"/task-definitions/{name}")
