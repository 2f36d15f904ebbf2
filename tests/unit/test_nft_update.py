"""Incremental firewall updates: old table + ``render_update(old, new)`` is the table ``new`` renders whole.

The pure checks run everywhere; the equivalence is checked against nft itself (root, a throwaway netns):
random pairs of models are loaded as old-then-update and as new-from-scratch, and the two tables, read
back as JSON and put in a canonical form (no handles, set elements sorted, empty sets ignored: a group
whose last member left keeps an empty set until the next whole load), must be identical.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from taskvpc.netmodel.evaluator import GroupRules
from taskvpc.netmodel.firewall_ir import EniPort, FirewallModel, compile_ir
from taskvpc.netmodel.nft_compile import render
from taskvpc.netmodel.nft_update import render_update
from taskvpc.netmodel.security_groups import Rule
from tests.unit.test_nft_compile import models, small_model

# ------------------------------------------------------------------------------------------ pure


def test_no_change_is_no_batch() -> None:
    model = small_model()
    assert render_update(model, model) == ""
    assert render_update(model, replace(model, groups=dict(model.groups))) == ""


def test_first_load_and_host_change_render_the_whole_table() -> None:
    model = small_model()
    whole = render(compile_ir(model))
    assert render_update(None, model) == whole
    moved = replace(model, host_port="tvpc-other")
    assert render_update(model, moved) == render(compile_ir(moved))


def test_a_new_task_touches_only_its_chains_and_its_groups_sets() -> None:
    model = small_model()
    newcomer = EniPort("eni-9", "tvpc9", "10.0.1.99", "02:00:00:00:00:99", (model.enis[0].group_ids[0],))
    text = render_update(model, replace(model, enis=(*model.enis, newcomer)))
    assert 'port_combo { "tvpc9" : ' in text and "chain" not in text  # its combination exists: elements only
    for other in model.enis:
        assert f'"{other.port}"' not in text
    assert "delete table" not in text
    assert "10.0.1.99" in text


def test_a_revoked_rule_rewrites_only_its_group_chain() -> None:
    model = small_model()
    gid = model.enis[0].group_ids[0]
    group = model.groups[gid]
    shrunk = GroupRules(gid, group.ingress[1:], group.egress)
    text = render_update(model, replace(model, groups={**model.groups, gid: shrunk}))
    assert f"flush chain inet taskvpc gin_{gid.replace('-', '_')}" in text
    assert "chain inet taskvpc in_" not in text and "chain inet taskvpc out_" not in text  # no ENI's
    assert "element" not in text  # no member, map or set change


def test_a_rule_change_costs_the_same_for_one_or_a_thousand_tasks() -> None:
    web = GroupRules("sg-web", (Rule("ingress", "tcp", 80, 80, cidr_ipv4="0.0.0.0/0"),), ())
    opened = GroupRules("sg-web", (*web.ingress, Rule("ingress", "tcp", 443, 443, cidr_ipv4="0.0.0.0/0")), ())

    def model(n: int, group: GroupRules) -> FirewallModel:
        enis = tuple(
            EniPort(
                f"eni-{i}",
                f"tvpc{i}",
                f"10.0.{i // 250}.{i % 250 + 2}",
                f"02:00:00:00:{i // 256:02x}:{i % 256:02x}",
                ("sg-web",),
            )
            for i in range(n)
        )
        return FirewallModel("taskvpc", enis, {"sg-web": group}, "tvpc-host")

    one = render_update(model(1, web), model(1, opened))
    thousand = render_update(model(1000, web), model(1000, opened))
    assert one == thousand and "tcp dport 443" in one


# ------------------------------------------------------------------------------------------ against nft


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    if shutil.which("nft") is None or shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root, nft and ip")
    name = "tvu" + secrets.token_hex(4)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def nft(ns: str, text: str) -> None:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr + "\n" + text


def canonical_table(ns: str, table: str) -> dict[str, Any]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", table],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    chains: dict[str, Any] = {}
    rules: dict[str, list[str]] = {}
    sets: dict[str, Any] = {}
    for item in json.loads(out)["nftables"]:
        kind, body = next(iter(item.items()))
        if kind == "chain":
            chains[body["name"]] = {k: body.get(k) for k in ("type", "hook", "prio", "policy")}
        elif kind == "rule":
            rules.setdefault(body["chain"], []).append(json.dumps(body["expr"], sort_keys=True))
        elif kind in ("set", "map"):
            elems = sorted(json.dumps(e, sort_keys=True) for e in body.get("elem", []))
            if elems:
                sets[body["name"]] = (kind, json.dumps(body["type"]), body.get("map"), elems)
    return {"chains": chains, "rules": rules, "sets": sets}


def reseated(model: FirewallModel, table: str) -> FirewallModel:
    return replace(model, table=table)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=models(), new=models(), keep=st.lists(st.booleans(), min_size=5, max_size=5))
def test_update_equals_whole_load(
    netns: str, old: FirewallModel, new: FirewallModel, keep: list[bool]
) -> None:
    # Make the pair realistic: some ENIs of ``old`` survive into ``new`` unchanged (a long-running task).
    survivors = tuple(e for e, k in zip(old.enis, keep, strict=False) if k)
    taken = {e.eni_id for e in survivors} | {e.ip for e in survivors} | {e.port for e in survivors}
    fresh = tuple(e for e in new.enis if not {e.eni_id, e.ip, e.port} & taken)
    new = replace(new, enis=survivors + fresh)
    nft(netns, render(compile_ir(reseated(new, "whole"))))
    nft(netns, render(compile_ir(reseated(old, "incr"))))
    update = render_update(reseated(old, "incr"), reseated(new, "incr"))
    if update:
        nft(netns, update)
    assert canonical_table(netns, "incr") == canonical_table(netns, "whole")


def test_update_survives_a_group_referencing_itself_and_a_reused_address(netns: str) -> None:
    web = GroupRules("sg-web", (Rule("ingress", "tcp", 80, 80, group_id="sg-web"),), ())
    a = EniPort("eni-a", "tvpca", "10.0.1.5", "02:00:00:00:00:0a", ("sg-web",))
    old = FirewallModel("incr", (a,), {"sg-web": web}, "tvpc-host")
    # task a stopped, task b got its address (IPAM reuses freed addresses)
    b = EniPort("eni-b", "tvpcb", "10.0.1.5", "02:00:00:00:00:0b", ("sg-web",))
    new = replace(old, enis=(b,))
    nft(netns, render(compile_ir(old)))
    nft(netns, render_update(old, new))
    nft(netns, render(compile_ir(replace(new, table="whole"))))
    assert canonical_table(netns, "incr") == canonical_table(netns, "whole")
