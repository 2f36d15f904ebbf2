"""Managed policies (customer managed, with up to five versions; AWS managed, read-only) and the inline
and attached policies of users and roles, which the two share."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.iam.common import (
    already_exists,
    check_path,
    checked_document,
    delete_conflict,
    iam_arn,
    limit_exceeded,
    no_such_entity,
    page,
    unique_id,
    wire_document,
)
from taskvpc.domain.errors import ClientError
from taskvpc.domain.iam.managed import AWS_MANAGED, BY_ARN
from taskvpc.store import iam_repo

MAX_VERSIONS = 5
MAX_MANAGED_PER_OWNER = 10  # IAM's default quota of managed policies attached to one user or role


def _policy_name_of_arn(account_id: str, arn: str) -> str | None:
    prefix = f"arn:aws:iam::{account_id}:policy/"
    return arn.rsplit("/", 1)[1] if arn.startswith(prefix) else None


def _not_found(arn: str) -> ClientError:
    return no_such_entity(f"Policy {arn} does not exist or is not attachable.")


def load_policy(conn: Connection, ctx: RequestContext, arn: str) -> dict[str, Any]:
    """The managed policy ``arn`` as GetPolicy shows it (AWS managed ones included)."""
    if arn in BY_ARN:
        managed = BY_ARN[arn]
        return {
            "PolicyName": managed.name,
            "PolicyId": managed.policy_id,
            "Arn": managed.arn,
            "Path": managed.path,
            "DefaultVersionId": "v1",
            "AttachmentCount": iam_repo.attachment_count(conn, arn),
            "PermissionsBoundaryUsageCount": 0,
            "IsAttachable": True,
            "Description": managed.description,
            "CreateDate": 1423000000.0,
            "UpdateDate": 1423000000.0,
        }
    name = _policy_name_of_arn(ctx.account_id, arn)
    policy = iam_repo.get_entity(conn, "policy", name) if name else None
    if policy is None or policy["Arn"] != arn:
        raise _not_found(arn)
    policy["AttachmentCount"] = iam_repo.attachment_count(conn, arn)
    return policy


def policy_document(conn: Connection, account_id: str, arn: str) -> str | None:
    """The default version's document of the managed policy ``arn``; None if it does not exist."""
    if arn in BY_ARN:
        return BY_ARN[arn].text
    name = _policy_name_of_arn(account_id, arn)
    policy = iam_repo.get_entity(conn, "policy", name) if name else None
    if policy is None:
        return None
    return iam_repo.get_document(conn, "policy", name or "", policy["DefaultVersionId"])


def create_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name, text = params["PolicyName"], params["PolicyDocument"]
    path = check_path(params.get("Path", "/"))
    checked_document(text)
    arn = iam_arn(ctx, "policy", name, path)
    policy = {
        "PolicyName": name,
        "PolicyId": unique_id("ANPA"),
        "Arn": arn,
        "Path": path,
        "DefaultVersionId": "v1",
        "PermissionsBoundaryUsageCount": 0,
        "IsAttachable": True,
        "CreateDate": ctx.now,
        "UpdateDate": ctx.now,
        "NextVersion": 2,
        "Tags": params.get("Tags") or [],
    }
    if params.get("Description"):
        policy["Description"] = params["Description"]
    with ctx.db.transaction() as conn:
        if not iam_repo.insert_entity(conn, "policy", name, arn, policy, ctx.now):
            raise already_exists(f"A policy called {name} already exists. Duplicate names are not allowed.")
        iam_repo.put_document(conn, "policy", name, "v1", text, ctx.now)
    return {"Policy": _shown(policy, 0)}


def _shown(policy: dict[str, Any], attachments: int) -> dict[str, Any]:
    shown = {k: v for k, v in policy.items() if k != "NextVersion"}
    shown["AttachmentCount"] = attachments
    return shown


def get_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.read() as conn:
        policy = load_policy(conn, ctx, params["PolicyArn"])
    return {"Policy": _shown(policy, policy["AttachmentCount"])}


def list_policies(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    scope = params.get("Scope", "All")
    prefix = params.get("PathPrefix", "/")
    with ctx.db.read() as conn:
        found: list[dict[str, Any]] = []
        if scope in ("All", "AWS"):
            found += [load_policy(conn, ctx, managed.arn) for managed in AWS_MANAGED]
        if scope in ("All", "Local"):
            for policy in iam_repo.list_entities(conn, "policy"):
                found.append(_shown(policy, iam_repo.attachment_count(conn, policy["Arn"])))
    found = [p for p in found if p["Path"].startswith(prefix)]
    if params.get("OnlyAttached"):
        found = [p for p in found if p["AttachmentCount"]]
    return page(found, params, "Policies")


def delete_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn = params["PolicyArn"]
    with ctx.db.transaction() as conn:
        if arn in BY_ARN:
            raise ClientError("AccessDenied", f"Cannot delete the AWS managed policy {arn}.", 403)
        policy = load_policy(conn, ctx, arn)
        if iam_repo.attachment_count(conn, arn):
            raise delete_conflict("Cannot delete a policy attached to entities.")
        if len(iam_repo.list_documents(conn, "policy", policy["PolicyName"])) > 1:
            raise delete_conflict(
                "This policy has more than one version. Before you delete a policy, you must "
                "delete the policy's versions. The default version is deleted with the policy."
            )
        iam_repo.delete_documents(conn, "policy", policy["PolicyName"])
        iam_repo.delete_entity(conn, "policy", policy["PolicyName"])
    return {}


# ---- versions ------------------------------------------------------------------------------------


def _customer_policy(conn: Connection, ctx: RequestContext, arn: str) -> dict[str, Any]:
    if arn in BY_ARN:
        raise ClientError("AccessDenied", f"Cannot modify the AWS managed policy {arn}.", 403)
    return load_policy(conn, ctx, arn)


def _version(policy: dict[str, Any], version_id: str, text: str, created: float) -> dict[str, Any]:
    return {
        "Document": wire_document(text),
        "VersionId": version_id,
        "IsDefaultVersion": version_id == policy["DefaultVersionId"],
        "CreateDate": created,
    }


def create_policy_version(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    text = params["PolicyDocument"]
    checked_document(text)
    with ctx.db.transaction() as conn:
        policy = _customer_policy(conn, ctx, params["PolicyArn"])
        name = policy["PolicyName"]
        if len(iam_repo.list_documents(conn, "policy", name)) >= MAX_VERSIONS:
            raise limit_exceeded(
                "A managed policy can have up to 5 versions. Before you create a new version, you must "
                "delete an existing version."
            )
        version_id = f"v{policy['NextVersion']}"
        policy["NextVersion"] += 1
        if params.get("SetAsDefault"):
            policy["DefaultVersionId"] = version_id
        policy["UpdateDate"] = ctx.now
        iam_repo.put_document(conn, "policy", name, version_id, text, ctx.now)
        iam_repo.update_entity(conn, "policy", name, policy)
    version = _version(policy, version_id, text, ctx.now)
    version.pop("Document")
    return {"PolicyVersion": version}


def get_policy_version(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn, version_id = params["PolicyArn"], params["VersionId"]
    with ctx.db.read() as conn:
        policy = load_policy(conn, ctx, arn)
        if arn in BY_ARN:
            text: str | None = BY_ARN[arn].text if version_id == "v1" else None
        else:
            text = iam_repo.get_document(conn, "policy", policy["PolicyName"], version_id)
    if text is None:
        raise no_such_entity(f"Policy {arn} version {version_id} does not exist or is not attachable.")
    return {"PolicyVersion": _version(policy, version_id, text, policy["CreateDate"])}


def list_policy_versions(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn = params["PolicyArn"]
    with ctx.db.read() as conn:
        policy = load_policy(conn, ctx, arn)
        if arn in BY_ARN:
            versions = [_version(policy, "v1", "", policy["CreateDate"])]
        else:
            rows = iam_repo.list_documents(conn, "policy", policy["PolicyName"])
            versions = [_version(policy, v, "", created) for v, _, created in rows]
    versions.sort(key=lambda v: int(v["VersionId"][1:]), reverse=True)
    for version in versions:
        version.pop("Document")
    return page(versions, params, "Versions")


def delete_policy_version(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn, version_id = params["PolicyArn"], params["VersionId"]
    with ctx.db.transaction() as conn:
        policy = _customer_policy(conn, ctx, arn)
        if version_id == policy["DefaultVersionId"]:
            raise delete_conflict("Cannot delete the default version of a policy.")
        if not iam_repo.delete_document(conn, "policy", policy["PolicyName"], version_id):
            raise no_such_entity(f"Policy {arn} version {version_id} does not exist or is not attachable.")
    return {}


def set_default_policy_version(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn, version_id = params["PolicyArn"], params["VersionId"]
    with ctx.db.transaction() as conn:
        policy = _customer_policy(conn, ctx, arn)
        if iam_repo.get_document(conn, "policy", policy["PolicyName"], version_id) is None:
            raise no_such_entity(f"Policy {arn} version {version_id} does not exist or is not attachable.")
        policy["DefaultVersionId"] = version_id
        policy["UpdateDate"] = ctx.now
        iam_repo.update_entity(conn, "policy", policy["PolicyName"], policy)
    return {}


# ---- inline and attached policies of users and roles ---------------------------------------------


def require_owner(conn: Connection, kind: str, name: str) -> dict[str, Any]:
    owner = iam_repo.get_entity(conn, kind, name)
    if owner is None:
        raise no_such_entity(f"The {kind} with name {name} cannot be found.")
    return owner


def put_inline(ctx: RequestContext, kind: str, owner: str, name: str, text: str) -> dict[str, Any]:
    checked_document(text)
    with ctx.db.transaction() as conn:
        require_owner(conn, kind, owner)
        iam_repo.put_document(conn, kind, owner, name, text, ctx.now)
    return {}


def get_inline(ctx: RequestContext, kind: str, owner: str, name: str) -> str:
    with ctx.db.read() as conn:
        require_owner(conn, kind, owner)
        text = iam_repo.get_document(conn, kind, owner, name)
    if text is None:
        raise no_such_entity(f"The {kind} policy with name {name} cannot be found.")
    return wire_document(text)


def delete_inline(ctx: RequestContext, kind: str, owner: str, name: str) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        require_owner(conn, kind, owner)
        if not iam_repo.delete_document(conn, kind, owner, name):
            raise no_such_entity(f"The {kind} policy with name {name} cannot be found.")
    return {}


def list_inline(ctx: RequestContext, kind: str, owner: str, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.read() as conn:
        require_owner(conn, kind, owner)
        names = [name for name, _, _ in iam_repo.list_documents(conn, kind, owner)]
    result = page([{"n": n} for n in names], params, "PolicyNames")
    result["PolicyNames"] = [item["n"] for item in result["PolicyNames"]]
    return result


def attach_policy(ctx: RequestContext, kind: str, owner: str, arn: str) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        require_owner(conn, kind, owner)
        load_policy(conn, ctx, arn)
        current = iam_repo.attached(conn, kind, owner)
        if arn not in current and len(current) >= MAX_MANAGED_PER_OWNER:
            what = "PolicyPerRole" if kind == "role" else "PolicyPerUser"
            raise limit_exceeded(f"Cannot exceed quota for {what}: {MAX_MANAGED_PER_OWNER}")
        iam_repo.attach(conn, kind, owner, arn)
    return {}


def detach_policy(ctx: RequestContext, kind: str, owner: str, arn: str) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        require_owner(conn, kind, owner)
        if not iam_repo.detach(conn, kind, owner, arn):
            raise no_such_entity(f"Policy {arn} was not found.")
    return {}


def list_attached(ctx: RequestContext, kind: str, owner: str, params: dict[str, Any]) -> dict[str, Any]:
    prefix = params.get("PathPrefix", "/")
    with ctx.db.read() as conn:
        require_owner(conn, kind, owner)
        arns = iam_repo.attached(conn, kind, owner)
    shown = [{"PolicyName": arn.rsplit("/", 1)[1], "PolicyArn": arn} for arn in arns]
    shown = [s for s in shown if _path_of(s["PolicyArn"]).startswith(prefix)]
    return page(shown, params, "AttachedPolicies")


def _path_of(arn: str) -> str:
    resource = arn.split(":", 5)[5]  # policy/service-role/Name
    return "/" + resource.partition("/")[2].rpartition("/")[0] + "/" if resource.count("/") > 1 else "/"
