"""The ALB rule compiler: the winner is chosen by priority before any action, parsed back from the text;
and HAProxy itself accepts the configuration (``haproxy -c``, no root, when haproxy is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from taskvpc.netmodel import elb_haproxy as hx
from taskvpc.netmodel.elb_haproxy import Target

LB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/0123456789abcdef"
LISTENER = LB.replace(":loadbalancer/", ":listener/") + "/aaaaaaaaaaaaaaaa"
TG_A = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/a/1111111111111111"
TG_B = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/b/2222222222222222"


def _forward(*weighted: tuple[str, int]) -> list[dict[str, Any]]:
    groups = [{"TargetGroupArn": arn, "Weight": weight} for arn, weight in weighted]
    return [{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}]


RULES = [
    {"Priority": "default", "Conditions": [], "Actions": _forward((TG_A, 1))},
    {
        "Priority": "20",
        "Conditions": [{"Field": "host-header", "Values": ["*.example.com", "api.test"]}],
        "Actions": [
            {
                "Type": "redirect",
                "RedirectConfig": {
                    "StatusCode": "HTTP_301",
                    "Protocol": "HTTPS",
                    "Port": "443",
                    "Host": "#{host}",
                    "Path": "/#{path}",
                    "Query": "#{query}",
                },
            }
        ],
    },
    {
        "Priority": "5",
        "Conditions": [
            {"Field": "path-pattern", "Values": ["/api/*"]},
            {"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["GET", "HEAD"]}},
        ],
        "Actions": _forward((TG_A, 80), (TG_B, 20)),
    },
    {
        "Priority": "7",
        "Conditions": [
            {
                "Field": "query-string",
                "QueryStringConfig": {"Values": [{"Key": "v", "Value": "it's?"}, {"Value": "x*"}]},
            },
            {"Field": "source-ip", "SourceIpConfig": {"Values": ["10.0.0.0/8"]}},
            {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-Env", "Values": ["dev"]}},
        ],
        "Actions": [
            {
                "Type": "fixed-response",
                "FixedResponseConfig": {
                    "StatusCode": "418",
                    "ContentType": "text/plain",
                    "MessageBody": "short and stout",
                },
            }
        ],
    },
]
LISTENERS = [{"ListenerArn": LISTENER, "Port": 8080, "Protocol": "HTTP"}]
GROUPS = [{"TargetGroupArn": TG_A, "Protocol": "HTTP"}, {"TargetGroupArn": TG_B, "Protocol": "HTTP"}]
TARGETS = {
    TG_A: [
        Target("10.0.1.5", 80, "healthy"),
        Target("10.0.1.6", 80, "initial"),
        Target("10.0.1.7", 80, "draining"),
    ],
    TG_B: [Target("10.0.2.5", 80, "unhealthy"), Target("10.0.2.6", 80, "unhealthy")],
}


def _config() -> str:
    return hx.compile_config(
        LISTENERS, {LISTENER: RULES}, GROUPS, TARGETS, bind_address="127.0.0.1", stats_socket="/tmp/x.sock"
    )


def _frontend_lines(text: str) -> list[str]:
    block = text.split("frontend l8080\n", 1)[1].split("\nbackend ", 1)[0]
    return [line.strip() for line in block.splitlines()]


def test_winner_chain_is_in_priority_order_and_precedes_every_action() -> None:
    lines = _frontend_lines(_config())
    chain = [i for i, line in enumerate(lines) if line.startswith("http-request set-var(txn.rule)")]
    keys = [re.search(r"str\((\w+)\)", lines[i]).group(1) for i in chain]  # type: ignore[union-attr]
    assert keys == ["r5", "r7", "r20", "default"]
    assert all("if !rule_chosen" in lines[i] for i in chain)
    acting = [
        i
        for i, line in enumerate(lines)
        if line.startswith(("http-request return", "http-request redirect", "http-request set-var(txn.pick"))
    ]
    assert acting and min(acting) > max(chain)  # HAProxy runs http-request rules in order: choose first
    assert lines[chain[0]] == "http-request set-var(txn.rule) str(r5) if !rule_chosen r5_c0 r5_c1"
    assert lines[chain[-1]] == "http-request set-var(txn.rule) str(default) if !rule_chosen"


def test_conditions_or_values_and_and_conditions() -> None:
    lines = _frontend_lines(_config())
    host = [line for line in lines if line.startswith("acl r20_c0 ")]
    assert host == [
        "acl r20_c0 req.hdr(host),field(1,:) -m reg -i '^.*\\.example\\.com$'",
        "acl r20_c0 req.hdr(host),field(1,:) -m reg -i '^api\\.test$'",
    ]
    assert "acl r5_c1 method -m str 'GET'" in lines and "acl r5_c1 method -m str 'HEAD'" in lines
    assert "acl r7_c0 url_param(v) -m reg -i '^it'\\''s.$'" in lines
    assert "acl r7_c1 src 10.0.0.0/8" in lines
    assert "acl r7_c2 req.hdr(X-Env) -m reg -i '^dev$'" in lines


def test_actions_weighted_forward_fixed_response_redirect() -> None:
    lines = _frontend_lines(_config())
    when = "{ var(txn.rule) -m str r5 }"
    assert f"http-request set-var(txn.pick_r5) rand(100) if {when}" in lines
    assert (
        f"use_backend tg_1111111111111111 if {when} {{ var(txn.pick_r5) -m int ge 0 }} {{ var(txn.pick_r5) -m int lt 80 }}"
        in lines
    )
    assert (
        f"use_backend tg_2222222222222222 if {when} {{ var(txn.pick_r5) -m int ge 80 }} {{ var(txn.pick_r5) -m int lt 100 }}"
        in lines
    )
    assert (
        "http-request return status 418 content-type 'text/plain' string 'short and stout' if { var(txn.rule) -m str r7 }"
        in lines
    )
    redirects = [line for line in lines if line.startswith("http-request redirect")]
    assert redirects[0].startswith(
        "http-request redirect location 'https://%[req.hdr(host),field(1,:)]:443/%[path,regsub(^/,)]?%[query]' code 301"
    )
    assert "use_backend tg_1111111111111111 if { var(txn.rule) -m str default }" in lines


def test_servers_are_health_gated_and_fail_open() -> None:
    text = _config()
    a = text.split("backend tg_1111111111111111\n", 1)[1].split("backend ", 1)[0]
    assert "server t_10_0_1_5_80 10.0.1.5:80\n" in a
    assert "server t_10_0_1_6_80 10.0.1.6:80 disabled" in a  # initial: no traffic until a check passes
    assert "server t_10_0_1_7_80 10.0.1.7:80 weight 0" in a  # draining keeps its connections only
    b = text.split("backend tg_2222222222222222\n", 1)[1]
    assert "disabled" not in b  # every target unhealthy: ELB fails open


def test_runtime_commands_add_disabled_then_ready_and_delete_only_in_maintenance() -> None:
    before = hx.serving([Target("10.0.1.5", 80, "healthy")])
    after = hx.serving([Target("10.0.1.5", 80, "draining"), Target("10.0.1.8", 80, "healthy")])
    assert hx.runtime_commands("tg_x", before, after) == [
        "set server tg_x/t_10_0_1_5_80 state drain",
        "add server tg_x/t_10_0_1_8_80 10.0.1.8:80 disabled",
        "set server tg_x/t_10_0_1_8_80 state ready",
    ]
    assert hx.runtime_commands("tg_x", after, hx.serving([Target("10.0.1.8", 80, "healthy")])) == [
        "set server tg_x/t_10_0_1_5_80 state maint",
        "shutdown sessions server tg_x/t_10_0_1_5_80",
        "del server tg_x/t_10_0_1_5_80",
    ]


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (apt package haproxy)")
def test_haproxy_accepts_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "alb.cfg"
    config.write_text(_config().replace("/tmp/x.sock", str(tmp_path / "admin.sock")))
    result = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr
    # The winner chain exists precisely so HAProxy has no action-ordering complaint to make.
    assert "use_backend" not in result.stderr
