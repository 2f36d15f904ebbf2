"""IAM roles: the trust policy that says who may assume them, and the policies they grant."""

from __future__ import annotations

from typing import Any

from taskvpc.control.context import RequestContext
from taskvpc.control.iam import policies
from taskvpc.control.iam.common import (
    already_exists,
    check_path,
    checked_document,
    delete_conflict,
    iam_arn,
    merge_tags,
    page,
    tags_of,
    unique_id,
    wire_document,
)
from taskvpc.store import iam_repo

DEFAULT_MAX_SESSION = 3600


def _shown(role: dict[str, Any]) -> dict[str, Any]:
    shown = dict(role)
    shown["AssumeRolePolicyDocument"] = wire_document(role["AssumeRolePolicyDocument"])
    if not shown.get("Tags"):
        shown.pop("Tags", None)
    return shown


def create_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name, trust = params["RoleName"], params["AssumeRolePolicyDocument"]
    path = check_path(params.get("Path", "/"))
    checked_document(trust, "trust")
    arn = iam_arn(ctx, "role", name, path)
    role: dict[str, Any] = {
        "Path": path,
        "RoleName": name,
        "RoleId": unique_id("AROA"),
        "Arn": arn,
        "CreateDate": ctx.now,
        "AssumeRolePolicyDocument": trust,
        "MaxSessionDuration": params.get("MaxSessionDuration", DEFAULT_MAX_SESSION),
        "Tags": tags_of(params),
        "RoleLastUsed": {},
    }
    if params.get("Description") is not None:
        role["Description"] = params["Description"]
    with ctx.db.transaction() as conn:
        if not iam_repo.insert_entity(conn, "role", name, arn, role, ctx.now):
            raise already_exists(f"Role with name {name} already exists.")
    return {"Role": _shown(role)}


def get_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.read() as conn:
        role = policies.require_owner(conn, "role", params["RoleName"])
    return {"Role": _shown(role)}


def list_roles(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    prefix = params.get("PathPrefix", "/")
    with ctx.db.read() as conn:
        roles = [_shown(r) for r in iam_repo.list_entities(conn, "role") if r["Path"].startswith(prefix)]
    for role in roles:  # ListRoles leaves out tags and last use
        role.pop("Tags", None)
        role.pop("RoleLastUsed", None)
    return page(roles, params, "Roles")


def _change(ctx: RequestContext, name: str, change: dict[str, Any]) -> None:
    with ctx.db.transaction() as conn:
        role = policies.require_owner(conn, "role", name)
        iam_repo.update_entity(conn, "role", name, role | change)


def update_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    change: dict[str, Any] = {k: params[k] for k in ("Description", "MaxSessionDuration") if k in params}
    _change(ctx, params["RoleName"], change)
    return {}


def update_assume_role_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    checked_document(params["PolicyDocument"], "trust")
    _change(ctx, params["RoleName"], {"AssumeRolePolicyDocument": params["PolicyDocument"]})
    return {}


def delete_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["RoleName"]
    with ctx.db.transaction() as conn:
        policies.require_owner(conn, "role", name)
        if iam_repo.list_documents(conn, "role", name):
            raise delete_conflict("Cannot delete entity, must delete policies first.")
        if iam_repo.attached(conn, "role", name):
            raise delete_conflict("Cannot delete entity, must detach all policies first.")
        iam_repo.delete_entity(conn, "role", name)
    return {}


def tag_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        role = policies.require_owner(conn, "role", params["RoleName"])
        role["Tags"] = merge_tags(role.get("Tags", []), tags_of(params))
        iam_repo.update_entity(conn, "role", params["RoleName"], role)
    return {}


def untag_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    gone = set(params["TagKeys"])
    with ctx.db.transaction() as conn:
        role = policies.require_owner(conn, "role", params["RoleName"])
        role["Tags"] = [t for t in role.get("Tags", []) if t["Key"] not in gone]
        iam_repo.update_entity(conn, "role", params["RoleName"], role)
    return {}


def list_role_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.read() as conn:
        role = policies.require_owner(conn, "role", params["RoleName"])
    return page(role.get("Tags", []), params, "Tags")


# ---- the role's policies -------------------------------------------------------------------------


def put_role_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return policies.put_inline(
        ctx, "role", params["RoleName"], params["PolicyName"], params["PolicyDocument"]
    )


def get_role_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    document = policies.get_inline(ctx, "role", params["RoleName"], params["PolicyName"])
    return {"RoleName": params["RoleName"], "PolicyName": params["PolicyName"], "PolicyDocument": document}


def delete_role_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return policies.delete_inline(ctx, "role", params["RoleName"], params["PolicyName"])


def list_role_policies(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return policies.list_inline(ctx, "role", params["RoleName"], params)


def attach_role_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return policies.attach_policy(ctx, "role", params["RoleName"], params["PolicyArn"])


def detach_role_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return policies.detach_policy(ctx, "role", params["RoleName"], params["PolicyArn"])


def list_attached_role_policies(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return policies.list_attached(ctx, "role", params["RoleName"], params)
