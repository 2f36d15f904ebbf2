"""IAM and STS through real boto3 clients, on SQLite and PostgreSQL: users held to their policies in
every service, roles assumed by their trust policies, temporary credentials that expire, IAM's errors."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from taskvpc.control import task_credentials
from taskvpc.control.sts import vend_task_credentials
from tests.integration.server import ACCOUNT_ID, REGION, InProcessServer, aws_error

ALLOW_LIST_CLUSTERS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*"}],
}
TRUST_ACCOUNT = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
            "Action": "sts:AssumeRole",
        }
    ],
}
TRUST_ECS_TASKS = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:*"}},
        }
    ],
}


def _client(api: InProcessServer, service: str, key: str, secret: str, token: str | None = None) -> Any:
    made = boto3.client(
        service,
        endpoint_url=api.endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(retries={"max_attempts": 1}),
    )
    return api.attach(made)


def _user(api: InProcessServer, name: str, *policies: dict[str, Any]) -> tuple[str, str]:
    iam = api.client("iam")
    iam.create_user(UserName=name)
    for index, policy in enumerate(policies):
        iam.put_user_policy(UserName=name, PolicyName=f"p{index}", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def _denied(action: str, resource: str, who: str, reason: str = "") -> str:
    reason = reason or f"because no identity-based policy allows the {action} action"
    return f"User: {who} is not authorized to perform: {action} on resource: {resource} {reason}"


def test_a_user_is_held_to_its_policies_in_every_service(api: InProcessServer) -> None:
    key = _user(api, "bob", ALLOW_LIST_CLUSTERS)
    bob = f"arn:aws:iam::{ACCOUNT_ID}:user/bob"
    assert _client(api, "sts", *key).get_caller_identity()["Arn"] == bob
    assert _client(api, "ecs", *key).list_clusters()["clusterArns"] == []
    cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/web"
    with pytest.raises(ClientError) as raised:
        _client(api, "ecs", *key).create_cluster(clusterName="web")
    assert aws_error(raised) == ("AccessDeniedException", _denied("ecs:CreateCluster", cluster, bob), 400)
    with pytest.raises(ClientError) as raised:
        _client(api, "ec2", *key).describe_vpcs()
    text = "You are not authorized to perform this operation. " + _denied("ec2:DescribeVpcs", "*", bob)
    assert aws_error(raised) == ("UnauthorizedOperation", text, 403)
    with pytest.raises(ClientError) as raised:
        _client(api, "elbv2", *key).describe_load_balancers()
    assert aws_error(raised) == (
        "AccessDenied",
        _denied("elasticloadbalancing:DescribeLoadBalancers", "*", bob),
        403,
    )
    with pytest.raises(ClientError) as raised:
        _client(api, "iam", *key).create_user(UserName="eve")
    assert aws_error(raised) == (
        "AccessDenied",
        _denied("iam:CreateUser", f"arn:aws:iam::{ACCOUNT_ID}:user/eve", bob),
        403,
    )
    with pytest.raises(ClientError) as raised:
        _client(api, "logs", *key).create_log_group(logGroupName="app")
    assert aws_error(raised) == ("AccessDeniedException", _denied("logs:CreateLogGroup", "*", bob), 400)
    with pytest.raises(ClientError) as raised:
        _client(api, "sts", *key).assume_role(
            RoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/any", RoleSessionName="bob"
        )
    assert aws_error(raised)[:2] == (
        "AccessDenied",
        f"User: {bob} is not authorized to perform: sts:AssumeRole on resource: "
        f"arn:aws:iam::{ACCOUNT_ID}:role/any",
    )
    assert api.client("ecs").list_clusters()["clusterArns"] == []  # the denied create changed nothing
    assert api.client("logs").describe_log_groups()["logGroups"] == []
    assert api.client("iam").list_users()["Users"][0]["UserName"] == "bob"


def test_explicit_deny_wins_over_a_managed_allow_and_changes_apply_at_once(api: InProcessServer) -> None:
    deny = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "ecs:DeleteCluster", "Resource": "*"}],
    }
    key = _user(api, "ops", deny)
    iam = api.client("iam")
    iam.attach_user_policy(UserName="ops", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    ecs = _client(api, "ecs", *key)
    ecs.create_cluster(clusterName="web")
    with pytest.raises(ClientError) as raised:
        ecs.delete_cluster(cluster="web")
    cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/web"
    who = f"arn:aws:iam::{ACCOUNT_ID}:user/ops"
    reason = "with an explicit deny in an identity-based policy"
    assert aws_error(raised) == (
        "AccessDeniedException",
        _denied("ecs:DeleteCluster", cluster, who, reason),
        400,
    )
    iam.delete_user_policy(UserName="ops", PolicyName="p0")
    ecs.delete_cluster(cluster="web")
    iam.detach_user_policy(UserName="ops", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    with pytest.raises(ClientError):
        ecs.list_clusters()


def test_a_role_is_assumed_by_its_trust_policy_and_acts_by_its_own_policies(api: InProcessServer) -> None:
    iam = api.client("iam")
    role = iam.create_role(RoleName="lister", AssumeRolePolicyDocument=json.dumps(TRUST_ACCOUNT))["Role"]
    assert role["AssumeRolePolicyDocument"] == TRUST_ACCOUNT and role["RoleId"].startswith("AROA")
    iam.put_role_policy(RoleName="lister", PolicyName="list", PolicyDocument=json.dumps(ALLOW_LIST_CLUSTERS))
    key = _user(api, "dev")
    with pytest.raises(ClientError) as raised:  # trusting the account defers to the user's own policies
        _client(api, "sts", *key).assume_role(RoleArn=role["Arn"], RoleSessionName="s1")
    who = f"arn:aws:iam::{ACCOUNT_ID}:user/dev"
    assert aws_error(raised) == (
        "AccessDenied",
        f"User: {who} is not authorized to perform: sts:AssumeRole on resource: {role['Arn']}",
        403,
    )
    allow = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role["Arn"]}],
    }
    iam.put_user_policy(UserName="dev", PolicyName="assume", PolicyDocument=json.dumps(allow))
    assumed = _client(api, "sts", *key).assume_role(RoleArn=role["Arn"], RoleSessionName="deploy-1")
    creds = assumed["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and creds["SessionToken"]
    arn = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/lister/deploy-1"
    assert assumed["AssumedRoleUser"] == {"AssumedRoleId": f"{role['RoleId']}:deploy-1", "Arn": arn}
    session = (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    identity = _client(api, "sts", *session).get_caller_identity()
    assert (identity["Arn"], identity["UserId"]) == (arn, f"{role['RoleId']}:deploy-1")
    _client(api, "ecs", *session).list_clusters()
    with pytest.raises(ClientError) as raised:
        _client(api, "ecs", *session).create_cluster(clusterName="x")
    cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/x"
    assert aws_error(raised) == ("AccessDeniedException", _denied("ecs:CreateCluster", cluster, arn), 400)
    # A wrong or missing session token is an invalid token, whatever the service.
    with pytest.raises(ClientError) as raised:
        _client(api, "sts", creds["AccessKeyId"], creds["SecretAccessKey"], "wrong").get_caller_identity()
    assert aws_error(raised) == (
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
        403,
    )
    with pytest.raises(ClientError) as raised:
        _client(api, "ecs", creds["AccessKeyId"], creds["SecretAccessKey"]).list_clusters()
    assert aws_error(raised)[0] == "UnrecognizedClientException"


def test_session_policies_narrow_an_assumed_role(api: InProcessServer) -> None:
    iam = api.client("iam")
    role = iam.create_role(RoleName="admin", AssumeRolePolicyDocument=json.dumps(TRUST_ACCOUNT))["Role"]
    iam.attach_role_policy(RoleName="admin", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    creds = api.client("sts").assume_role(
        RoleArn=role["Arn"], RoleSessionName="narrow", Policy=json.dumps(ALLOW_LIST_CLUSTERS)
    )["Credentials"]
    session = (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    _client(api, "ecs", *session).list_clusters()
    with pytest.raises(ClientError) as raised:
        _client(api, "ec2", *session).describe_vpcs()
    assert "because no session policy allows the ec2:DescribeVpcs action" in aws_error(raised)[1]


def test_assume_role_duration_and_trust_errors(api: InProcessServer) -> None:
    iam, sts = api.client("iam"), api.client("sts")
    role = iam.create_role(RoleName="short", AssumeRolePolicyDocument=json.dumps(TRUST_ACCOUNT))["Role"]
    with pytest.raises(ClientError) as raised:
        sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1", DurationSeconds=7200)
    assert aws_error(raised) == (
        "ValidationError",
        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        400,
    )
    iam.update_role(RoleName="short", MaxSessionDuration=7200)
    assert sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1", DurationSeconds=7200)["Credentials"]
    ecs_only = iam.create_role(RoleName="task", AssumeRolePolicyDocument=json.dumps(TRUST_ECS_TASKS))["Role"]
    with pytest.raises(ClientError) as raised:  # even root cannot assume a role that trusts only ECS tasks
        sts.assume_role(RoleArn=ecs_only["Arn"], RoleSessionName="s1")
    assert aws_error(raised)[0] == "AccessDenied"
    with pytest.raises(ClientError) as raised:
        sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/nope", RoleSessionName="s1")
    assert aws_error(raised)[0] == "AccessDenied"


def test_expired_session_credentials_are_refused(api: InProcessServer) -> None:
    api.client("iam").create_role(RoleName="task", AssumeRolePolicyDocument=json.dumps(TRUST_ECS_TASKS))
    assert api.control_plane is not None
    task = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task/web/0123456789abcdef0123456789abcdef"
    past = api.control_plane.context(REGION, time.time() - 7200)
    key, secret, token, _ = vend_task_credentials(past, task, f"arn:aws:iam::{ACCOUNT_ID}:role/task", 3600)
    with pytest.raises(ClientError) as raised:
        _client(api, "sts", key, secret, token).get_caller_identity()
    assert aws_error(raised) == ("ExpiredToken", "The security token included in the request is expired", 403)


def test_task_role_credentials_act_as_the_task(api: InProcessServer) -> None:
    iam = api.client("iam")
    role = iam.create_role(RoleName="web-task", AssumeRolePolicyDocument=json.dumps(TRUST_ECS_TASKS))["Role"]
    iam.put_role_policy(
        RoleName="web-task", PolicyName="list", PolicyDocument=json.dumps(ALLOW_LIST_CLUSTERS)
    )
    assert api.control_plane is not None
    ctx = api.control_plane.context(REGION, time.time())
    task = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task/web/0123456789abcdef0123456789abcdef"
    key, secret, token, expiration = vend_task_credentials(ctx, task, role["Arn"])
    assert key.startswith("ASIA") and expiration >= ctx.now + 3600
    identity = _client(api, "sts", key, secret, token).get_caller_identity()
    assert (
        identity["Arn"] == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/web-task/0123456789abcdef0123456789abcdef"
    )
    _client(api, "ecs", key, secret, token).list_clusters()
    with pytest.raises(ClientError):
        _client(api, "ecs", key, secret, token).create_cluster(clusterName="x")
    user_role = iam.create_role(RoleName="not-for-tasks", AssumeRolePolicyDocument=json.dumps(TRUST_ACCOUNT))[
        "Role"
    ]
    from taskvpc.domain.errors import ClientError as DomainError

    with pytest.raises(DomainError) as refused:
        vend_task_credentials(ctx, task, user_role["Arn"])
    assert refused.value.message.startswith(f"ECS was unable to assume the role '{user_role['Arn']}'")


def test_pass_role_is_checked_when_a_task_definition_names_a_role(api: InProcessServer) -> None:
    register = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ecs:RegisterTaskDefinition", "Resource": "*"}],
    }
    key = _user(api, "deployer", register)
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/web-task"
    ecs = _client(api, "ecs", *key)
    containers = [{"name": "c", "image": "busybox", "memory": 32}]
    with pytest.raises(ClientError) as raised:
        ecs.register_task_definition(family="web", taskRoleArn=role, containerDefinitions=containers)
    who = f"arn:aws:iam::{ACCOUNT_ID}:user/deployer"
    assert aws_error(raised) == ("AccessDeniedException", _denied("iam:PassRole", role, who), 400)
    api.client("iam").attach_user_policy(
        UserName="deployer", PolicyArn="arn:aws:iam::aws:policy/AmazonECS_FullAccess"
    )
    assert ecs.register_task_definition(family="web", taskRoleArn=role, containerDefinitions=containers)


def test_iam_errors(api: InProcessServer) -> None:
    iam = api.client("iam")
    iam.create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps(TRUST_ACCOUNT))
    cases = [
        (
            lambda: iam.create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps(TRUST_ACCOUNT)),
            ("EntityAlreadyExists", "Role with name r already exists.", 409),
        ),
        (
            lambda: iam.get_role(RoleName="nope"),
            ("NoSuchEntity", "The role with name nope cannot be found.", 404),
        ),
        (
            lambda: iam.create_role(RoleName="bad", AssumeRolePolicyDocument="{"),
            ("MalformedPolicyDocument", "This policy contains invalid Json", 400),
        ),
        (
            lambda: iam.create_role(RoleName="bad", AssumeRolePolicyDocument=json.dumps(ALLOW_LIST_CLUSTERS)),
            ("MalformedPolicyDocument", "Has prohibited field Resource", 400),
        ),
        (
            lambda: iam.put_role_policy(
                RoleName="r", PolicyName="p", PolicyDocument=json.dumps(TRUST_ACCOUNT)
            ),
            ("MalformedPolicyDocument", "Policy document should not specify a principal.", 400),
        ),
        (
            lambda: iam.get_role_policy(RoleName="r", PolicyName="p"),
            ("NoSuchEntity", "The role policy with name p cannot be found.", 404),
        ),
        (
            lambda: iam.attach_role_policy(RoleName="r", PolicyArn=f"arn:aws:iam::{ACCOUNT_ID}:policy/none"),
            (
                "NoSuchEntity",
                f"Policy arn:aws:iam::{ACCOUNT_ID}:policy/none does not exist or is not attachable.",
                404,
            ),
        ),
    ]
    for call, expected in cases:
        with pytest.raises(ClientError) as raised:
            call()
        assert aws_error(raised) == expected
    assert iam.list_roles()["Roles"][0]["RoleName"] == "r"
    iam.put_role_policy(RoleName="r", PolicyName="p", PolicyDocument=json.dumps(ALLOW_LIST_CLUSTERS))
    assert iam.get_role_policy(RoleName="r", PolicyName="p")["PolicyDocument"] == ALLOW_LIST_CLUSTERS
    assert iam.list_role_policies(RoleName="r")["PolicyNames"] == ["p"]
    with pytest.raises(ClientError) as raised:
        iam.delete_role(RoleName="r")
    assert aws_error(raised) == ("DeleteConflict", "Cannot delete entity, must delete policies first.", 409)
    iam.delete_role_policy(RoleName="r", PolicyName="p")
    exec_policy = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
    iam.attach_role_policy(RoleName="r", PolicyArn=exec_policy)
    assert iam.list_attached_role_policies(RoleName="r")["AttachedPolicies"] == [
        {"PolicyName": "AmazonECSTaskExecutionRolePolicy", "PolicyArn": exec_policy}
    ]
    with pytest.raises(ClientError) as raised:
        iam.delete_role(RoleName="r")
    assert aws_error(raised) == (
        "DeleteConflict",
        "Cannot delete entity, must detach all policies first.",
        409,
    )
    iam.detach_role_policy(RoleName="r", PolicyArn=exec_policy)
    iam.tag_role(RoleName="r", Tags=[{"Key": "team", "Value": "web"}])
    assert iam.get_role(RoleName="r")["Role"]["Tags"] == [{"Key": "team", "Value": "web"}]
    iam.delete_role(RoleName="r")
    assert iam.list_roles()["Roles"] == []


def test_managed_policy_versions(api: InProcessServer) -> None:
    iam = api.client("iam")
    arn = iam.create_policy(PolicyName="lister", PolicyDocument=json.dumps(ALLOW_LIST_CLUSTERS))["Policy"][
        "Arn"
    ]
    assert arn == f"arn:aws:iam::{ACCOUNT_ID}:policy/lister"
    with pytest.raises(ClientError) as raised:
        iam.create_policy(PolicyName="lister", PolicyDocument=json.dumps(ALLOW_LIST_CLUSTERS))
    assert aws_error(raised)[0] == "EntityAlreadyExists"
    for _ in range(4):
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(ALLOW_LIST_CLUSTERS))
    with pytest.raises(ClientError) as raised:
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(ALLOW_LIST_CLUSTERS))
    assert aws_error(raised)[0] == "LimitExceeded"
    versions = [v["VersionId"] for v in iam.list_policy_versions(PolicyArn=arn)["Versions"]]
    assert versions == ["v5", "v4", "v3", "v2", "v1"]
    with pytest.raises(ClientError) as raised:
        iam.delete_policy_version(PolicyArn=arn, VersionId="v1")
    assert aws_error(raised) == ("DeleteConflict", "Cannot delete the default version of a policy.", 409)
    iam.set_default_policy_version(PolicyArn=arn, VersionId="v3")
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v3"
    version = iam.get_policy_version(PolicyArn=arn, VersionId="v3")["PolicyVersion"]
    assert version["IsDefaultVersion"] and version["Document"] == ALLOW_LIST_CLUSTERS
    iam.create_user(UserName="u")
    iam.attach_user_policy(UserName="u", PolicyArn=arn)
    with pytest.raises(ClientError) as raised:
        iam.delete_policy(PolicyArn=arn)
    assert aws_error(raised) == ("DeleteConflict", "Cannot delete a policy attached to entities.", 409)
    aws = {p["PolicyName"] for p in iam.list_policies(Scope="AWS")["Policies"]}
    assert {
        "AmazonECSTaskExecutionRolePolicy",
        "AmazonEC2ContainerServiceforEC2Role",
        "ReadOnlyAccess",
    } <= aws


def test_access_keys(api: InProcessServer) -> None:
    key, secret = _user(api, "k", ALLOW_LIST_CLUSTERS)
    iam = api.client("iam")
    iam.create_access_key(UserName="k")
    with pytest.raises(ClientError) as raised:
        iam.create_access_key(UserName="k")
    assert aws_error(raised) == ("LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: 2", 409)
    assert len(iam.list_access_keys(UserName="k")["AccessKeyMetadata"]) == 2
    iam.update_access_key(UserName="k", AccessKeyId=key, Status="Inactive")
    with pytest.raises(ClientError) as raised:
        _client(api, "sts", key, secret).get_caller_identity()
    assert aws_error(raised)[0] == "InvalidClientTokenId"
    with pytest.raises(ClientError) as raised:
        iam.delete_user(UserName="k")
    assert aws_error(raised) == (
        "DeleteConflict",
        "Cannot delete entity, must delete access keys first.",
        409,
    )
    iam.delete_access_key(UserName="k", AccessKeyId=key)
    with pytest.raises(ClientError) as raised:
        iam.delete_access_key(UserName="k", AccessKeyId=key)
    assert aws_error(raised) == ("NoSuchEntity", f"The Access Key with id {key} cannot be found.", 404)


def test_get_session_token_keeps_the_users_identity_and_policies(api: InProcessServer) -> None:
    key = _user(api, "tok", ALLOW_LIST_CLUSTERS)
    creds = _client(api, "sts", *key).get_session_token(DurationSeconds=900)["Credentials"]
    session = (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    assert creds["AccessKeyId"].startswith("ASIA")
    assert _client(api, "sts", *session).get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT_ID}:user/tok"
    _client(api, "ecs", *session).list_clusters()
    with pytest.raises(ClientError) as raised:
        _client(api, "ecs", *session).create_cluster(clusterName="x")
    assert aws_error(raised)[0] == "AccessDeniedException"
    with pytest.raises(ClientError) as raised:  # session credentials cannot mint more
        _client(api, "sts", *session).get_session_token()
    assert aws_error(raised)[0] == "AccessDenied"


def test_another_hosts_iam_change_is_seen_through_the_stored_generation(
    api: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two servers on one store: a change committed elsewhere (here: written to the store directly,
    without this process's commit hook) reaches this server's cache once it re-reads the generation."""
    from taskvpc.control.iam import credentials
    from taskvpc.store import iam_repo

    key = _user(api, "far", ALLOW_LIST_CLUSTERS)
    ecs = _client(api, "ecs", *key)
    ecs.list_clusters()  # cached now
    assert api.control_plane is not None
    db = api.control_plane.db
    local = iam_repo.local_changes()
    with db.engine.connect() as conn:  # "another host": no commit hook marks this process's cache stale
        conn.exec_driver_sql("DELETE FROM iam_documents WHERE owner = 'far'")
        conn.exec_driver_sql("UPDATE iam_generation SET generation = generation + 1")
        conn.commit()
    monkeypatch.setattr(credentials, "RECHECK_SECONDS", 0.0)
    assert iam_repo.local_changes() == local  # so only the stored generation can tell
    with pytest.raises(ClientError) as raised:
        ecs.list_clusters()
    assert aws_error(raised)[0] == "AccessDeniedException"


def test_only_the_root_key_may_reset(api: InProcessServer) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key, secret = _user(
        api,
        "resetter",
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
    )
    request = AWSRequest(method="POST", url=f"{api.endpoint}/_taskvpc/reset", data=b"")
    SigV4Auth(Credentials(key, secret), "ecs", REGION).add_auth(request)
    status, body, _ = api.http("POST", "/_taskvpc/reset", dict(request.prepare().headers))
    assert status == 403 and b"only the root key" in body
    assert api.client("iam").get_user(UserName="resetter")["User"]["UserName"] == "resetter"


def test_expired_sessions_are_purged_after_their_grace(api: InProcessServer) -> None:
    from taskvpc.control.iam.session_purge import ExpiredSessionPurge

    api.client("iam").create_role(RoleName="task", AssumeRolePolicyDocument=json.dumps(TRUST_ECS_TASKS))
    assert api.control_plane is not None
    plane = api.control_plane
    task = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task/web/0123456789abcdef0123456789abcdef"
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/task"
    old = vend_task_credentials(plane.context(REGION, time.time() - 3 * 3600), task, role, 3600)
    recent = vend_task_credentials(plane.context(REGION, time.time() - 1800), task, role, 900)
    live = vend_task_credentials(plane.context(REGION, time.time()), task, role, 3600)
    loop = ExpiredSessionPurge(grace=3600)
    with plane.db.transaction() as conn:
        due = loop.pending(conn, time.time())
        assert [key.id for key in due] == [old[0]]  # expired an hour ago or more: not the recent one
        assert loop.reconcile(conn, plane.context(REGION, time.time()), due[0])
    with pytest.raises(ClientError) as raised:
        _client(api, "sts", *old[:3]).get_caller_identity()
    assert aws_error(raised)[0] == "InvalidClientTokenId"
    with pytest.raises(ClientError) as raised:
        _client(api, "sts", *recent[:3]).get_caller_identity()
    assert aws_error(raised)[0] == "ExpiredToken"
    assert (
        _client(api, "sts", *live[:3])
        .get_caller_identity()["Arn"]
        .endswith("/task/0123456789abcdef0123456789abcdef")
    )


def test_iam_keys_never_reach_the_agent_api(api: InProcessServer) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from taskvpc.api.agent_api import PREFIX

    admin = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    key, secret = _user(api, "agentish", admin)
    url = f"{api.endpoint}{PREFIX}register"
    request = AWSRequest(method="POST", url=url, data=b"{}", headers={"content-type": "application/json"})
    SigV4Auth(Credentials(key, secret), "ecs", REGION).add_auth(request)
    status, body, _ = api.http("POST", f"{PREFIX}register", dict(request.prepare().headers), b"{}")
    assert (status, json.loads(body)) == (403, {"message": "agent request refused: unknown_key"})


def _role_for_tasks(api: InProcessServer, name: str, policy: dict[str, Any]) -> str:
    iam = api.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST_ECS_TASKS))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return str(arn)


def test_a_running_tasks_answer_carries_sts_credentials_that_act_as_the_task(
    api: InProcessServer, agents: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STS is the default vendor: the desired-state answer (which holds the write transaction) vends on
    its own connection - on SQLite a second transaction would wait for it - and the credentials it sends
    are a real session of the role, kept across answers."""
    from tests.integration.ecs_support import awsvpc, default_subnets, register_web

    role = _role_for_tasks(api, "web-task", ALLOW_LIST_CLUSTERS)
    agent = agents().start(auto=True)
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs, taskRoleArn=role)
    subnet = default_subnets(ec2)["us-east-1a"]
    run = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))
    assert run["failures"] == []  # placed: the agent's task-iam-role capability is kept
    arn = run["tasks"][0]["taskArn"]
    task_id = arn.rsplit("/", 1)[-1]
    started = time.monotonic()
    answer = agent.poll(after=-1)
    assert time.monotonic() - started < 5  # no wait for a second write transaction
    [creds] = [c for c in answer["credentials"] if c["taskArn"] == arn]
    assert creds["roleArn"] == role and creds["accessKeyId"].startswith("ASIA")
    expires = datetime.strptime(creds["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert expires.timestamp() > time.time() + 5 * 3600  # ECS's hours, rotated 30 minutes before
    assert agent.poll(after=-1)["credentials"] == answer["credentials"]  # kept, not vended per answer
    keys = (creds["accessKeyId"], creds["secretAccessKey"], creds["sessionToken"])
    identity = _client(api, "sts", *keys).get_caller_identity()
    assert identity["Arn"] == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/web-task/{task_id}"
    assert _client(api, "ecs", *keys).list_clusters()["clusterArns"]
    who = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/web-task/{task_id}"
    with pytest.raises(ClientError) as raised:
        _client(api, "ecs", *keys).create_cluster(clusterName="x")
    cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/x"
    assert aws_error(raised) == ("AccessDeniedException", _denied("ecs:CreateCluster", cluster, who), 400)

    # near expiry (here: the refresh window made longer than the session), the next answer carries a
    # new session of the same task; the old one stays valid until its own expiry
    monkeypatch.setattr(task_credentials, "REFRESH_BEFORE", timedelta(hours=7))
    [rotated] = [c for c in agent.poll(after=-1)["credentials"] if c["taskArn"] == arn]
    assert rotated["accessKeyId"] != creds["accessKeyId"] and rotated["roleArn"] == role
    fresh = (rotated["accessKeyId"], rotated["secretAccessKey"], rotated["sessionToken"])
    assert _client(api, "sts", *fresh).get_caller_identity()["Arn"] == who
    assert _client(api, "sts", *keys).get_caller_identity()["Arn"] == who


def test_a_role_ecs_cannot_assume_gives_no_credentials_and_spoils_no_answer(
    api: InProcessServer, agents: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A role deleted after launch: that task goes without credentials (its endpoint answers 503), the
    answer goes on, and the vendor is asked again later. (The launch itself refuses a role ECS could not
    assume: tests/integration/test_task_role_launch.py.)"""
    from tests.integration.ecs_support import awsvpc, default_subnets, register_web

    monkeypatch.setattr(task_credentials, "RETRY_REFUSED", 0.0)  # asked again on the next answer
    agent = agents()
    agent.register()
    agent.poll(after=-1)  # connected, but no poller: nothing is vended before the role is gone
    ecs, ec2, iam = api.client("ecs"), api.client("ec2"), api.client("iam")
    iam.create_role(RoleName="gone", AssumeRolePolicyDocument=json.dumps(TRUST_ECS_TASKS))
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/gone"
    register_web(ecs, taskRoleArn=role)
    subnet = default_subnets(ec2)["us-east-1a"]
    arn = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))["tasks"][0]["taskArn"]
    iam.delete_role(RoleName="gone")
    answer = agent.poll(after=-1)
    assert [t["taskArn"] for t in answer["tasks"]] == [arn] and answer["credentials"] == []
    iam.create_role(RoleName="gone", AssumeRolePolicyDocument=json.dumps(TRUST_ECS_TASKS))
    [creds] = agent.poll(after=-1)["credentials"]  # the retry finds the role again
    assert (creds["taskArn"], creds["roleArn"]) == (arn, role)


def test_pass_role_is_checked_when_a_task_with_a_role_is_launched(api: InProcessServer) -> None:
    from tests.integration.ecs_support import awsvpc, default_subnets, register_web

    role = _role_for_tasks(api, "web-task", ALLOW_LIST_CLUSTERS)  # one ECS could assume
    api.client("ecs").create_cluster(clusterName="default")
    register_web(api.client("ecs"), taskRoleArn=role)  # by root
    launch = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["ecs:RunTask", "ecs:CreateService"], "Resource": "*"},
            {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
        ],
    }
    key = _user(api, "launcher", launch)
    ecs = _client(api, "ecs", *key)
    who = f"arn:aws:iam::{ACCOUNT_ID}:user/launcher"
    subnet = default_subnets(api.client("ec2"))["us-east-1a"]
    with pytest.raises(ClientError) as raised:
        ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))
    assert aws_error(raised) == ("AccessDeniedException", _denied("iam:PassRole", role, who), 400)
    with pytest.raises(ClientError) as raised:
        ecs.create_service(
            serviceName="s", taskDefinition="web:1", desiredCount=0, networkConfiguration=awsvpc(subnet)
        )
    assert aws_error(raised) == ("AccessDeniedException", _denied("iam:PassRole", role, who), 400)
    assert api.client("ecs").list_tasks()["taskArns"] == []  # nothing was launched
    pass_role = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": role,
                "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            }
        ],
    }
    api.client("iam").put_user_policy(
        UserName="launcher", PolicyName="pass", PolicyDocument=json.dumps(pass_role)
    )
    assert ecs.create_service(
        serviceName="s", taskDefinition="web:1", desiredCount=0, networkConfiguration=awsvpc(subnet)
    )["service"]["taskDefinition"].endswith("web:1")
