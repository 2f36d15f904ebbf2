"""What IAM's use cases share: ids, ARNs, IAM's errors, documents as IAM writes them, Marker paging."""

from __future__ import annotations

import secrets
import string
from typing import Any
from urllib.parse import quote

from taskvpc.control.context import RequestContext
from taskvpc.domain.arns import PARTITION
from taskvpc.domain.errors import ClientError
from taskvpc.domain.iam.document import MAX_DOCUMENT_CHARS, Policy, PolicyKind, parse_policy

_ID_ALPHABET = string.ascii_uppercase + string.digits


def unique_id(prefix: str, length: int = 17) -> str:
    """IAM's unique ids: AIDA (user), AROA (role), ANPA (managed policy), AKIA/ASIA (access keys, 16)."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def new_secret() -> str:
    alphabet = string.ascii_letters + string.digits + "+/"
    return "".join(secrets.choice(alphabet) for _ in range(40))


def iam_arn(ctx: RequestContext, kind: str, name: str, path: str = "/") -> str:
    return f"arn:{PARTITION}:iam::{ctx.account_id}:{kind}{path}{name}"


def no_such_entity(message: str) -> ClientError:
    return ClientError("NoSuchEntity", message, 404)


def already_exists(message: str) -> ClientError:
    return ClientError("EntityAlreadyExists", message, 409)


def delete_conflict(message: str) -> ClientError:
    return ClientError("DeleteConflict", message, 409)


def limit_exceeded(message: str) -> ClientError:
    return ClientError("LimitExceeded", message, 409)


def invalid_input(message: str) -> ClientError:
    return ClientError("InvalidInput", message, 400)


def checked_document(text: str, kind: PolicyKind = "identity") -> Policy:
    """``text`` parsed as IAM would accept it (MalformedPolicyDocument, LimitExceeded otherwise)."""
    policy = parse_policy(text, kind)
    compact = "".join(text.split())
    if len(compact) > MAX_DOCUMENT_CHARS[kind]:
        what = (
            "Cannot exceed quota for ACLSizePerRole"
            if kind == "trust"
            else "Cannot exceed quota for PolicySize"
        )
        raise limit_exceeded(f"{what}: {MAX_DOCUMENT_CHARS[kind]}")
    return policy


def wire_document(text: str) -> str:
    """Policy documents travel URL-encoded in IAM's answers (botocore decodes them)."""
    return quote(text, safe="")


def check_path(path: str) -> str:
    if not (path.startswith("/") and path.endswith("/")):
        raise ClientError(
            "ValidationError",
            "The specified value for path is invalid. It must begin and end with / and contain only "
            "alphanumeric characters and/or / characters.",
            400,
        )
    return path


def page(items: list[dict[str, Any]], params: dict[str, Any], key: str) -> dict[str, Any]:
    """IAM paging: ``MaxItems`` (default 100) per page, ``Marker`` the position of the next one."""
    start = 0
    marker = params.get("Marker")
    if marker is not None:
        if not marker.isdigit():
            raise invalid_input("Invalid Marker.")
        start = int(marker)
    limit = params.get("MaxItems") or 100
    chunk = items[start : start + limit]
    result: dict[str, Any] = {key: chunk, "IsTruncated": start + limit < len(items)}
    if result["IsTruncated"]:
        result["Marker"] = str(start + limit)
    return result


def tags_of(params: dict[str, Any]) -> list[dict[str, str]]:
    tags = params.get("Tags") or []
    if len(tags) > 50:
        raise limit_exceeded("Cannot exceed quota for TagsPerRole: 50")
    return [{"Key": t["Key"], "Value": t.get("Value", "")} for t in tags]


def merge_tags(current: list[dict[str, str]], new: list[dict[str, str]]) -> list[dict[str, str]]:
    merged = {t["Key"]: t["Value"] for t in current}
    merged.update({t["Key"]: t["Value"] for t in new})
    if len(merged) > 50:
        raise limit_exceeded("Cannot exceed quota for TagsPerRole: 50")
    return [{"Key": k, "Value": v} for k, v in merged.items()]
