"""Per-ENI firewall updates on real nftables: a task starting or stopping touches only its own ENI's
elements (and its groups' sets; chains only for a combination of groups new to the table, or gone with
its last ENI); the other rules keep their kernel handles, so nothing was flushed and reloaded. The table
built by updates is the one a whole load would make."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from taskvpc.agent.security import FirewallSync
from taskvpc.netmodel.evaluator import GroupRules
from taskvpc.netmodel.firewall_ir import EniPort, combo_in_chain, combo_out_chain, compile_ir, group_set
from taskvpc.netmodel.nft_compile import render
from taskvpc.netmodel.security_groups import Rule, new_group_egress
from tests.root import fwlab

pytestmark = [
    pytest.mark.root,
]

WEB = GroupRules("sg-web", (Rule("ingress", "tcp", 80, 80, group_id="sg-web"),), (new_group_egress(),))
DB = GroupRules("sg-db", (Rule("ingress", "tcp", 5432, 5432, group_id="sg-web"),), (new_group_egress(),))


class Recorder:
    """The driver, keeping every batch loaded."""

    def __init__(self, lab: fwlab.Lab) -> None:
        self.lab = lab
        self.batches: list[str] = []

    def apply(self, vpc_id: str, nft_text: str) -> None:
        self.batches.append(nft_text)
        self.lab.fw.apply(vpc_id, nft_text)

    def forget_flows(self, vpc_id: str, ip: str) -> int:
        return self.lab.fw.forget_flows(vpc_id, ip)


@pytest.fixture
def lab() -> Iterator[fwlab.Lab]:
    with fwlab.lab("tve", 3, tag="pe", net=238) as made:
        yield made


def listing(lab: fwlab.Lab, table: str) -> list[dict[str, Any]]:
    items = json.loads(_run_json(lab, table)).get("nftables", [])
    return [i for i in items if "metainfo" not in i]


def _run_json(lab: fwlab.Lab, table: str) -> str:
    from taskvpc.agent.drivers.firewall import NFT_CTX_OUTPUT_HANDLE, NFT_CTX_OUTPUT_JSON

    rc, out, err = lab.fw._run(
        lab.vpc_id, f"list table inet {table}\n", NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE
    )
    assert rc == 0, err
    return out


def rule_handles(items: list[dict[str, Any]], chain: str) -> list[int]:
    return [i["rule"]["handle"] for i in items if "rule" in i and i["rule"]["chain"] == chain]


def set_elements(items: list[dict[str, Any]], name: str) -> list[Any]:
    for item in items:
        for kind in ("set", "map"):
            if kind in item and item[kind]["name"] == name:
                return sorted(json.dumps(e, sort_keys=True) for e in item[kind].get("elem", []))
    raise KeyError(name)


def shape(items: list[dict[str, Any]]) -> list[str]:
    """The table without handles, table names and element order: what two equal tables share."""
    out = []
    for item in items:
        ((kind, body),) = item.items()
        body = {
            k: v for k, v in body.items() if k not in ("handle", "table") and (kind, k) != ("table", "name")
        }
        if "elem" in body:
            body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
        out.append(kind + " " + json.dumps(body, sort_keys=True))
    return sorted(out)


def test_one_enis_update_touches_only_that_eni(lab: fwlab.Lab) -> None:
    loader = Recorder(lab)
    sync = FirewallSync(loader, lab.cfg, table=lab.table)
    sync.set_desired({lab.vpc_id: {"sg-web": WEB, "sg-db": DB}}, {})
    a, b, c = (
        EniPort(e.eni_id, lab.port(e), e.ip, e.mac, groups)
        for e, groups in zip(lab.enis, [("sg-web",), ("sg-web", "sg-db"), ("sg-web",)], strict=True)
    )
    sync.add_eni(lab.vpc_id, a)  # the first: the whole table
    sync.add_eni(lab.vpc_id, b)
    before = listing(lab, lab.table)
    web, web_db = ("sg-web",), ("sg-web", "sg-db")
    kept = {
        name: rule_handles(before, name)
        for name in (
            combo_in_chain(web),
            combo_out_chain(web),
            combo_in_chain(web_db),
            combo_out_chain(web_db),
            "gin_sg_web",
            "gout_sg_web",
            "gin_sg_db",
        )
    }
    assert all(kept.values())

    sync.add_eni(lab.vpc_id, c)  # a task starts, with the groups of another: elements only
    added = loader.batches[-1]
    assert c.ip in added and a.ip not in added and b.ip not in added
    assert lab.port(lab.enis[0]) not in added and lab.port(lab.enis[1]) not in added
    assert all(" element " in line for line in added.splitlines()), added
    during = listing(lab, lab.table)
    assert {name: rule_handles(during, name) for name in kept} == kept
    assert set_elements(during, group_set("sg-web")) == sorted(json.dumps(ip) for ip in (a.ip, b.ip, c.ip))

    sync.remove_eni(lab.vpc_id, b.eni_id)  # a task stops: the last of its combination, the last of sg-db
    removed = loader.batches[-1]
    assert b.ip in removed and a.ip not in removed and c.ip not in removed
    after = listing(lab, lab.table)
    assert {n: rule_handles(after, n) for n in (combo_in_chain(web), combo_out_chain(web), "gin_sg_web")} == {
        n: kept[n] for n in (combo_in_chain(web), combo_out_chain(web), "gin_sg_web")
    }
    assert rule_handles(after, combo_in_chain(web_db)) == [] and rule_handles(after, "gin_sg_db") == []
    assert set_elements(after, group_set("sg-web")) == sorted(json.dumps(ip) for ip in (a.ip, c.ip))

    # A flow log wants c's REJECTs: c gets chains of its own (the log prefix names it), then loses them.
    sync.set_reject_logging(frozenset({c.eni_id}))
    logged = listing(lab, lab.table)
    assert rule_handles(logged, f"in_{c.eni_id.replace('-', '_')}")
    shared = (combo_in_chain(web), combo_out_chain(web), "gin_sg_web", "gout_sg_web")
    assert {n: rule_handles(logged, n) for n in shared} == {n: kept[n] for n in shared}

    assert_same_as_a_whole_load(lab, sync)  # what the updates built


def assert_same_as_a_whole_load(lab: fwlab.Lab, sync: FirewallSync) -> None:
    """The router's table holds what a whole load of ``sync``'s model makes (loaded beside it, compared,
    removed)."""
    whole_table = lab.table + "w"
    lab.fw.apply(lab.vpc_id, render(compile_ir(replace(sync.model(lab.vpc_id), table=whole_table))))
    try:
        assert shape(listing(lab, lab.table)) == shape(listing(lab, whole_table))
    finally:
        lab.fw.remove(lab.vpc_id, whole_table)


def test_any_sequence_of_changes_builds_the_whole_tables_contents(lab: fwlab.Lab) -> None:
    """Random starts, stops, group changes and flow-log switches (combinations appearing and going, ENIs
    moving between shared chains and their own), each one batch on real nft: never refused, and the
    table they build is what a whole load of the same model makes."""
    rng = random.Random(1313)
    loader = Recorder(lab)
    sync = FirewallSync(loader, lab.cfg, table=lab.table)
    sync.set_desired({lab.vpc_id: {"sg-web": WEB, "sg-db": DB}}, {})
    pool = [("sg-web",), ("sg-db",), ("sg-web", "sg-db"), ("sg-db", "sg-web"), ()]
    enis = [
        EniPort(f"eni-{i:08x}", f"{lab.cfg.prefix}q{i}", f"10.238.9.{10 + i}", f"0e:00:00:00:09:{i:02x}", ())
        for i in range(8)
    ]
    sync.add_eni(lab.vpc_id, replace(enis[0], group_ids=("sg-web",)))  # the whole table
    # Two new combinations in one transaction: a verdict element each per direction, no dispatch rule.
    sync.add_enis(lab.vpc_id, [replace(enis[1], group_ids=pool[1]), replace(enis[2], group_ids=pool[2])])
    assert loader.batches[-1].count(f"add element inet {lab.table} combo_in {{") == 2
    assert "dispatch" not in loader.batches[-1]
    logged: set[str] = set()
    for _ in range(60):
        e = rng.choice(enis)
        op = rng.random()
        if op < 0.4:
            sync.add_eni(lab.vpc_id, replace(e, group_ids=rng.choice(pool)))
        elif op < 0.6:
            sync.remove_eni(lab.vpc_id, e.eni_id)
        elif op < 0.8:
            sync.set_desired({}, {e.eni_id: rng.choice(pool)})
        else:
            logged ^= {e.eni_id}
            sync.set_reject_logging(frozenset(logged))
    assert len(loader.batches) > 30 and sync.model(lab.vpc_id).enis
    assert not any(b.startswith("add table") for b in loader.batches[1:]), "an update was refused"
    assert_same_as_a_whole_load(lab, sync)
