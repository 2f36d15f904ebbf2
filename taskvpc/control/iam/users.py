"""IAM users, their policies and their access keys (the long-term ``AKIA...`` credentials)."""

from __future__ import annotations

from typing import Any

from taskvpc.control.context import RequestContext
from taskvpc.control.iam import policies
from taskvpc.control.iam.common import (
    already_exists,
    check_path,
    delete_conflict,
    iam_arn,
    limit_exceeded,
    new_secret,
    no_such_entity,
    page,
    tags_of,
    unique_id,
)
from taskvpc.domain.errors import ClientError
from taskvpc.store import iam_repo

MAX_KEYS_PER_USER = 2


def create_user(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["UserName"]
    path = check_path(params.get("Path", "/"))
    arn = iam_arn(ctx, "user", name, path)
    user: dict[str, Any] = {
        "Path": path,
        "UserName": name,
        "UserId": unique_id("AIDA"),
        "Arn": arn,
        "CreateDate": ctx.now,
    }
    if tags := tags_of(params):
        user["Tags"] = tags
    with ctx.db.transaction() as conn:
        if not iam_repo.insert_entity(conn, "user", name, arn, user, ctx.now):
            raise already_exists(f"User with name {name} already exists.")
    return {"User": user}


def _caller_user(ctx: RequestContext, params: dict[str, Any]) -> str:
    """The UserName parameter, or for a call without one the calling user (as IAM does)."""
    name = params.get("UserName")
    if name:
        return str(name)
    marker = ":user/"
    if marker in ctx.principal.arn:
        return ctx.principal.arn.rsplit("/", 1)[1]
    raise ClientError("ValidationError", "Must specify userName when calling with non-User credentials", 400)


def get_user(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.read() as conn:
        return {"User": policies.require_owner(conn, "user", _caller_user(ctx, params))}


def list_users(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    prefix = params.get("PathPrefix", "/")
    with ctx.db.read() as conn:
        users = [u for u in iam_repo.list_entities(conn, "user") if u["Path"].startswith(prefix)]
    for user in users:
        user.pop("Tags", None)
    return page(users, params, "Users")


def delete_user(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["UserName"]
    with ctx.db.transaction() as conn:
        policies.require_owner(conn, "user", name)
        if iam_repo.access_keys(conn, name):
            raise delete_conflict("Cannot delete entity, must delete access keys first.")
        if iam_repo.list_documents(conn, "user", name):
            raise delete_conflict("Cannot delete entity, must delete policies first.")
        if iam_repo.attached(conn, "user", name):
            raise delete_conflict("Cannot delete entity, must detach all policies first.")
        iam_repo.delete_entity(conn, "user", name)
    return {}


# ---- policies --------------------------------------------------------------------------------------


def put_user_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return policies.put_inline(
        ctx, "user", params["UserName"], params["PolicyName"], params["PolicyDocument"]
    )


def get_user_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    document = policies.get_inline(ctx, "user", params["UserName"], params["PolicyName"])
    return {"UserName": params["UserName"], "PolicyName": params["PolicyName"], "PolicyDocument": document}


def delete_user_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return policies.delete_inline(ctx, "user", params["UserName"], params["PolicyName"])


def list_user_policies(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return policies.list_inline(ctx, "user", params["UserName"], params)


def attach_user_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return policies.attach_policy(ctx, "user", params["UserName"], params["PolicyArn"])


def detach_user_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return policies.detach_policy(ctx, "user", params["UserName"], params["PolicyArn"])


def list_attached_user_policies(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return policies.list_attached(ctx, "user", params["UserName"], params)


# ---- access keys -----------------------------------------------------------------------------------


def create_access_key(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = _caller_user(ctx, params)
    key_id, secret = unique_id("AKIA", 16), new_secret()
    with ctx.db.transaction() as conn:
        policies.require_owner(conn, "user", name)
        if len(iam_repo.access_keys(conn, name)) >= MAX_KEYS_PER_USER:
            raise limit_exceeded(f"Cannot exceed quota for AccessKeysPerUser: {MAX_KEYS_PER_USER}")
        iam_repo.put_access_key(conn, key_id, name, secret, ctx.now)
    key = {
        "UserName": name,
        "AccessKeyId": key_id,
        "Status": "Active",
        "SecretAccessKey": secret,
        "CreateDate": ctx.now,
    }
    return {"AccessKey": key}


def _users_key(ctx: RequestContext, params: dict[str, Any]) -> tuple[str, str]:
    name, key_id = _caller_user(ctx, params), params["AccessKeyId"]
    return name, key_id


def list_access_keys(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = _caller_user(ctx, params)
    with ctx.db.read() as conn:
        policies.require_owner(conn, "user", name)
        keys = iam_repo.access_keys(conn, name)
    shown = [{"UserName": name, "AccessKeyId": k, "Status": s, "CreateDate": c} for k, s, c in keys]
    return page(shown, params, "AccessKeyMetadata")


def update_access_key(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name, key_id = _users_key(ctx, params)
    with ctx.db.transaction() as conn:
        found = iam_repo.access_key(conn, key_id)
        if found is None or found[0] != name:
            raise no_such_entity(f"The Access Key with id {key_id} cannot be found.")
        iam_repo.set_access_key_status(conn, key_id, params["Status"])
    return {}


def delete_access_key(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name, key_id = _users_key(ctx, params)
    with ctx.db.transaction() as conn:
        found = iam_repo.access_key(conn, key_id)
        if found is None or found[0] != name:
            raise no_such_entity(f"The Access Key with id {key_id} cannot be found.")
        iam_repo.delete_access_key(conn, key_id)
    return {}
