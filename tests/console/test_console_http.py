"""The console over the in-process ASGI transport: sign-in, the session cookie, CSRF and Origin, the
redirect of a browser at ``/``, and that pages act as the signed-in principal (IAM applies)."""

from __future__ import annotations

import json
import re

from tests.console.support import Browser
from tests.integration.server import ACCESS_KEY_ID, InProcessServer


def test_a_browser_at_root_is_sent_to_the_console_and_api_clients_are_not(
    browser: Browser, server: InProcessServer
) -> None:
    page = browser.request("GET", "/", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert (page.status, page.header("location")) == (303, "/console/")
    # No Accept: text/html (curl, the SDKs): the API's answer, as before.
    status, _, body = browser.transport.request("GET", "/", {"accept": "*/*"})
    assert status == 400 and b"<Code>" in body
    # Signed requests to / keep working whatever they accept.
    sts = server.client("sts")
    assert sts.get_caller_identity()["Account"] == "123456789012"
    ecs = server.client("ecs")
    assert ecs.list_clusters()["clusterArns"] == []
    # A presigned GET to / is never redirected, even from a browser: the API answers it as without HTML.
    url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=60)
    as_browser = browser.transport.request("GET", url, {"accept": "text/html"})
    as_client = browser.transport.request("GET", url, {})
    assert as_browser[0] == as_client[0] != 303
    assert b"<ErrorResponse" in as_browser[2] or b"GetCallerIdentityResponse" in as_browser[2]


def test_signed_out_pages_lead_to_sign_in(browser: Browser) -> None:
    for path in ("/console/", "/console/clusters", "/console/security-groups"):
        page = browser.get(path)
        assert (page.status, page.header("location")) == (303, "/console/signin")
    page = browser.get("/console/signin")
    assert page.status == 200
    for label in ("Access key ID", "Secret access key", "Sign in"):
        assert label in page.text
    assert "'unsafe-inline'" not in (page.header("content-security-policy") or "")


def test_a_wrong_secret_or_unknown_key_gets_no_session(browser: Browser) -> None:
    for key, secret in ((ACCESS_KEY_ID, "wrong"), ("AKIANOBODY0000000000", "x"), ("", "")):
        page = browser.sign_in(key, secret)
        assert page.status == 200
        assert "not right" in page.text
        assert page.headers_named("set-cookie") == []
    assert browser.get("/console/clusters").status == 303


def test_the_session_cookie_is_signed_http_only_and_strict(browser: Browser) -> None:
    page = browser.sign_in()
    assert (page.status, page.header("location")) == (303, "/console/")
    [cookie] = page.headers_named("set-cookie")
    flags = [part.strip() for part in cookie.split(";")[1:]]
    assert {"HttpOnly", "SameSite=Strict", "Path=/console"} <= set(flags)
    assert "Secure" not in flags  # plain HTTP on loopback; set under TLS
    assert "taskvpc-test-secret" not in cookie  # the secret never leaves the server
    assert browser.get("/console/clusters").status == 200
    # A tampered cookie is no session.
    value = browser.cookies["taskvpc_console"]
    browser.cookies["taskvpc_console"] = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    assert browser.get("/console/clusters").status == 303


def test_changes_need_the_csrf_token_and_the_console_origin(
    signed_in: Browser, server: InProcessServer
) -> None:
    form = {"family": "csrf", "containerName": "app", "image": "busybox", "containerMemory": "64"}
    refused = [
        signed_in.post("/console/task-definitions", form, csrf=None),
        signed_in.post("/console/task-definitions", form, csrf="not-the-token"),
        signed_in.post("/console/task-definitions", form, origin="http://evil.example"),
        signed_in.post("/console/task-definitions", form, origin=None),
    ]
    assert [page.status for page in refused] == [403, 403, 403, 403]
    ecs = server.client("ecs")
    assert ecs.list_task_definition_families()["families"] == []
    # Without Origin, Fetch Metadata saying same-origin will do; the token in a header as htmx sends it too.
    token = signed_in.get("/console/task-definitions/new").csrf
    page = signed_in.post(
        "/console/task-definitions",
        form,
        origin=None,
        csrf=None,
        headers={"sec-fetch-site": "same-origin", "x-csrf-token": token},
    )
    assert (page.status, page.header("location")) == (303, "/console/task-definitions/csrf:1"), page.text[
        -1500:
    ]


def test_sign_out_ends_the_session(signed_in: Browser) -> None:
    page = signed_in.post("/console/signout", {})
    assert (page.status, page.header("location")) == (303, "/console/signin")
    [cookie] = page.headers_named("set-cookie")
    assert "Max-Age=0" in cookie
    assert signed_in.get("/console/clusters").status == 303
    # A change without a session is refused before anything else is looked at.
    form = {"family": "late", "containerName": "a", "image": "i", "containerMemory": "64", "csrf": "x"}
    assert signed_in.post("/console/task-definitions", form, csrf=None).status == 401


def test_task_definition_by_form_and_by_json_equal_describe(
    signed_in: Browser, server: InProcessServer
) -> None:
    form = {
        "family": "web",
        "networkMode": "awsvpc",
        "taskCpu": "256",
        "taskMemory": "512",
        "containerName": "app",
        "image": "busybox:latest",
        "containerCpu": "128",
        "containerMemory": "256",
        "portMappings": "80/tcp, 53/udp",
        "entryPoint": "sh,-c",
        "command": "exec httpd -f -p 80",
    }
    page = signed_in.post("/console/task-definitions", form)
    assert (page.status, page.header("location")) == (303, "/console/task-definitions/web:1")
    td = server.client("ecs").describe_task_definition(taskDefinition="web:1")["taskDefinition"]
    [container] = td["containerDefinitions"]
    assert (td["networkMode"], td["cpu"], td["memory"]) == ("awsvpc", "256", "512")
    assert (container["name"], container["image"], container["cpu"], container["memory"]) == (
        "app",
        "busybox:latest",
        128,
        256,
    )
    assert [(p["containerPort"], p["protocol"]) for p in container["portMappings"]] == [
        (80, "tcp"),
        (53, "udp"),
    ]
    assert (container["entryPoint"], container["command"]) == (["sh", "-c"], ["exec httpd -f -p 80"])
    shown = signed_in.get("/console/task-definitions/web:1")
    assert shown.status == 200 and "busybox:latest" in shown.text
    # The described document pasted back registers revision 2 with the same content.
    page = signed_in.post(
        "/console/task-definitions", {"mode": "json", "json": json.dumps({"taskDefinition": td}, default=str)}
    )
    assert (page.status, page.header("location")) == (303, "/console/task-definitions/web:2")
    again = server.client("ecs").describe_task_definition(taskDefinition="web:2")["taskDefinition"]
    assert again["containerDefinitions"] == td["containerDefinitions"]
    family = signed_in.get("/console/task-definitions/web")
    assert "web:1" in family.text and "web:2" in family.text
    page = signed_in.post("/console/task-definitions/web:1/deregister", {})
    assert page.status == 303
    described = server.client("ecs").describe_task_definition(taskDefinition="web:1")
    assert described["taskDefinition"]["status"] == "INACTIVE"


def test_bad_form_input_is_explained_and_changes_nothing(signed_in: Browser, server: InProcessServer) -> None:
    cases = [
        ({"family": "x", "containerName": "app", "image": "i", "portMappings": "http"}, "container port"),
        ({"family": "", "containerName": "app", "image": "i"}, "family"),
        ({"family": "bad family!", "containerName": "app", "image": "i"}, "ClientException"),
        ({"mode": "json", "json": "{not json"}, "does not parse"),
    ]
    for form, expected in cases:
        page = signed_in.post("/console/task-definitions", form)
        assert page.status == 200
        assert expected in page.text, page.text
    assert server.client("ecs").list_task_definition_families()["families"] == []


def test_an_iam_users_console_is_held_to_its_policies(browser: Browser, server: InProcessServer) -> None:
    iam = server.client("iam")
    iam.create_user(UserName="viewer")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["ecs:List*", "ecs:Describe*", "ec2:Describe*"], "Resource": "*"}
        ],
    }
    iam.put_user_policy(UserName="viewer", PolicyName="read", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="viewer")["AccessKey"]
    page = browser.sign_in(key["AccessKeyId"], key["SecretAccessKey"])
    assert page.status == 303
    assert "user/viewer" in browser.get("/console/clusters").text
    page = browser.post("/console/task-definitions", {"family": "web", "containerName": "a", "image": "i"})
    assert "AccessDenied" in page.text
    assert server.client("ecs").list_task_definition_families()["families"] == []
    # Deleting the key ends its console session at once.
    iam.delete_access_key(UserName="viewer", AccessKeyId=key["AccessKeyId"])
    assert browser.get("/console/clusters").status == 303


def test_security_group_rule_editor_adds_and_removes_a_rule(
    signed_in: Browser, server: InProcessServer
) -> None:
    ec2 = server.client("ec2")
    group = ec2.create_security_group(GroupName="web", Description="d")["GroupId"]
    path = f"/console/security-groups/{group}"
    page = signed_in.post(
        path + "/ingress",
        {"protocol": "tcp", "ports": "8080", "source": "10.0.0.0/8"},
        headers={"hx-request": "true"},
    )
    assert page.status == 200 and '<section id="rules">' in page.text and "<html" not in page.text
    [permission] = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    assert (permission["FromPort"], permission["ToPort"], permission["IpRanges"]) == (
        8080,
        8080,
        [{"CidrIp": "10.0.0.0/8"}],
    )
    rule = re.search(r'name="rule" value="([^"]+)"', page.text)
    assert rule is not None
    import html

    page = signed_in.post(path + "/ingress/revoke", {"rule": html.unescape(rule.group(1))})
    assert (page.status, page.header("location")) == (303, path)
    assert ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"] == []
    # The API's own refusal shows in the editor.
    page = signed_in.post(
        path + "/ingress", {"protocol": "tcp", "ports": "80", "source": "sg-00000000000000000"}
    )
    assert page.status == 200 and "InvalidGroup.NotFound" in page.text


def test_run_task_form_errors_show_on_the_form(signed_in: Browser, server: InProcessServer) -> None:
    server.client("ecs").create_cluster(clusterName="c1")
    page = signed_in.get("/console/clusters/c1/run-task")
    assert page.status == 200 and "Run task" in page.text and "Subnets" in page.text
    page = signed_in.post("/console/clusters/c1/run-task", {"taskDefinition": "nope:1"})
    assert page.status == 200 and "ClientException: TaskDefinition not found." in page.text


def test_pages_answer_for_unknown_resources_without_a_server_error(signed_in: Browser) -> None:
    for path in (
        "/console/clusters/nope",
        "/console/security-groups/sg-0123456789abcdef0",
        "/console/task-definitions/nope:3",
        "/console/nowhere",
    ):
        page = signed_in.get(path)
        assert 400 <= page.status < 500, (path, page.status)
        assert 'role="alert"' in page.text


def test_service_page_shows_deployments_and_events(signed_in: Browser, server: InProcessServer) -> None:
    ecs = server.client("ecs")
    ecs.create_cluster(clusterName="c1")
    ecs.register_task_definition(family="w", containerDefinitions=[{"name": "a", "image": "i", "memory": 64}])
    deployment = ecs.create_service(cluster="c1", serviceName="svc", taskDefinition="w", desiredCount=1)
    assert 'href="/console/clusters/c1/services/svc"' in signed_in.get("/console/clusters/c1").text
    page = signed_in.get("/console/clusters/c1/services/svc")
    assert page.status == 200
    assert deployment["service"]["deployments"][0]["id"] in page.text
    assert "PRIMARY" in page.text and 'sse-connect="/console/clusters/c1/services/svc/events"' in page.text


def test_log_groups_streams_and_events(signed_in: Browser, server: InProcessServer) -> None:
    logs = server.client("logs")
    logs.create_log_group(logGroupName="/ecs/web")
    logs.create_log_stream(logGroupName="/ecs/web", logStreamName="web/app/abc")
    import time

    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName="/ecs/web",
        logStreamName="web/app/abc",
        logEvents=[{"timestamp": now, "message": "hello <from> the task"}],
    )
    assert 'href="/console/log-groups//ecs/web"' in signed_in.get("/console/log-groups").text
    group = signed_in.get("/console/log-groups//ecs/web")
    assert group.status == 200 and "web/app/abc" in group.text
    stream = signed_in.get("/console/log-groups//ecs/web?stream=web/app/abc")
    assert stream.status == 200 and "hello &lt;from&gt; the task" in stream.text
    assert 'sse-connect="/console/log-events//ecs/web?stream=web/app/abc"' in stream.text
    missing = signed_in.get("/console/log-groups//ecs/none")
    assert missing.status == 400 and "ResourceNotFoundException" in missing.text


def test_create_security_group_in_the_console(signed_in: Browser, server: InProcessServer) -> None:
    ec2 = server.client("ec2")
    [vpc] = ec2.describe_vpcs()["Vpcs"]
    page = signed_in.post(
        "/console/security-groups", {"name": "web", "description": "port 80", "vpc": vpc["VpcId"]}
    )
    assert page.status == 303
    group_id = page.header("location").rsplit("/", 1)[1]
    [group] = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    assert (group["GroupName"], group["Description"], group["VpcId"]) == ("web", "port 80", vpc["VpcId"])
    again = signed_in.post(
        "/console/security-groups", {"name": "web", "description": "x", "vpc": vpc["VpcId"]}
    )
    assert again.status == 200 and "InvalidGroup.Duplicate" in again.text
