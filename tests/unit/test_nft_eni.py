"""Per-ENI firewall batches (netmodel/nft_eni.py): one ENI's change names only that ENI and its groups, its
size does not grow with the ENIs in the VPC, and the bookkeeping after any sequence of changes is what a
whole load of the same model records."""

from __future__ import annotations

import copy
from dataclasses import replace

from hypothesis import given, settings, strategies as st

from taskvpc.netmodel.evaluator import GroupRules
from taskvpc.netmodel.firewall_ir import EniPort, combo_in_chain, combo_out_chain, compile_ir, free_number
from taskvpc.netmodel.nft_compile import render
from taskvpc.netmodel.nft_eni import TableState
from taskvpc.netmodel.security_groups import Rule, new_group_egress

WEB = GroupRules("sg-web", (Rule("ingress", "tcp", 80, 80, group_id="sg-web"),), (new_group_egress(),))
DB = GroupRules("sg-db", (Rule("ingress", "tcp", 5432, 5432, group_id="sg-web"),), (new_group_egress(),))
RULES = {"sg-web": WEB, "sg-db": DB}


def eni(n: int, *groups: str) -> EniPort:
    return EniPort(
        f"eni-{n:08x}",
        f"tvpc{n:08x}",
        f"10.0.{n // 250}.{n % 250 + 2}",
        f"0e:00:00:00:{n // 250:02x}:{n % 250:02x}",
        groups,
    )


def loaded(n: int) -> TableState:
    state = TableState("taskvpc", "tvpc-host", rules=dict(RULES))
    for i in range(n):
        state.add_eni(eni(i, "sg-web"))
    state.whole()
    return state


def test_a_task_starting_or_stopping_names_only_its_own_eni() -> None:
    state = loaded(50)
    newcomer = eni(999, "sg-web", "sg-db")
    added = state.add_eni(newcomer)
    assert "delete table" not in added and newcomer.ip in added and newcomer.port in added
    others = [eni(i) for i in range(50)]
    assert not any(e.ip + " " in added or e.ip + "\n" in added or e.port in added for e in others)
    assert "flush chain inet taskvpc gin_sg_web" not in added  # carried already
    assert "flush chain inet taskvpc gin_sg_db" in added  # new to the table
    combo = combo_in_chain(("sg-web", "sg-db"))
    assert f"flush chain inet taskvpc {combo}" in added  # the first ENI with these groups
    removed = state.remove_eni(newcomer.eni_id)
    assert f"delete chain inet taskvpc {combo}" in removed  # ... and the last
    assert "delete chain inet taskvpc gin_sg_db" in removed  # its last carrier left
    assert not any(e.port in removed for e in others)
    assert state.add_eni(eni(3, "sg-web")) == ""  # registered already, unchanged: nothing to load


def test_a_task_whose_groups_another_has_is_elements_only() -> None:
    """The common start and stop: no chain or rule at all, so libnftables has nothing but elements to
    add (and reads few chains back: one pair per combination of groups, not per ENI)."""
    state = loaded(50)
    started = state.add_eni(eni(777, "sg-web"))
    stopped = state.remove_eni(eni(777).eni_id)
    for batch in (started, stopped):
        assert batch and all(" element inet taskvpc " in line for line in batch.splitlines()), batch
    assert eni(777).port in started and eni(777).ip in started and eni(777).mac in started
    # sg-web's members, its port's combination number, task_ports, eni_addrs, self_ports
    assert started.count("\n") == 5
    number = state.numbers["c_sg_web"]
    assert f'add element inet taskvpc port_combo {{ "{eni(777).port}" : {number} }}' in started
    assert [(t.out_chain, t.in_chain, t.combo) for t in state.jumpers] == [
        (combo_out_chain(["sg-web"]), combo_in_chain(["sg-web"]), "c_sg_web")
    ]


def test_a_new_combination_is_its_chains_and_one_verdict_element_per_direction() -> None:
    """No dispatch rule is rewritten, whatever the number of combinations: the new combination's chains,
    its number in ``combo_out``/``combo_in``, the port's number in ``port_combo``; the stop takes them
    back out and frees the number."""
    state = TableState("taskvpc", "tvpc-host", rules={**RULES, **{f"sg-{i}": WEB for i in range(40)}})
    for i in range(40):
        state.add_eni(eni(i, f"sg-{i}"))
    state.whole()
    newcomer = eni(900, "sg-db", "sg-web")
    started = state.add_eni(newcomer)
    number = state.numbers["c_sg_db__sg_web"]
    assert number not in {n for c, n in state.numbers.items() if c != "c_sg_db__sg_web"}
    assert "dispatch" not in started and " rule inet taskvpc c" in started
    verdicts = [line for line in started.splitlines() if "combo_out" in line or "combo_in" in line]
    assert verdicts == [
        f"add element inet taskvpc combo_out {{ {number} : jump cout_sg_db__sg_web }}",
        f"add element inet taskvpc combo_in {{ {number} : jump cin_sg_db__sg_web }}",
    ]
    stopped = state.remove_eni(newcomer.eni_id)
    assert "dispatch" not in stopped and f"delete element inet taskvpc combo_out {{ {number} }}" in stopped
    assert stopped.index("delete element inet taskvpc combo_in") < stopped.index("delete chain")
    assert "c_sg_db__sg_web" not in state.numbers


def test_a_clash_of_preferred_numbers_takes_the_next_free_one() -> None:
    state = loaded(2)
    taken = state.numbers["c_sg_web"]
    first = free_number("c_sg_db", ())
    state.numbers["c_other"] = first  # as if another combination held sg-db's preferred number
    state.add_eni(eni(70, "sg-db"))
    assert state.numbers["c_sg_db"] not in (first, taken) and state.numbers["c_sg_db"] > 0
    assert f"{state.numbers['c_sg_db']} : jump cout_sg_db" in state.whole()  # a whole load keeps it


def test_a_logging_eni_has_chains_of_its_own() -> None:
    """Flow logs name the ENI in the log prefix: an ENI whose REJECTs are logged jumps to its own chains."""
    state = loaded(3)
    logged = replace(eni(800, "sg-web"), log_rejects=True)
    added = state.add_eni(logged)
    assert 'log prefix "eni-00000320 in"' in added and "flush chain inet taskvpc in_eni_00000320" in added
    quiet = state.set_log_rejects(logged.eni_id, False)
    assert "delete chain inet taskvpc in_eni_00000320" in quiet
    number = state.numbers["c_sg_web"]
    assert f'add element inet taskvpc port_combo {{ "{logged.port}" : {number} }}' in quiet
    assert "flush chain" not in quiet.replace("flush chain inet taskvpc in_eni", "-").replace(
        "flush chain inet taskvpc out_eni", "-"
    )


def test_the_batch_does_not_grow_with_the_enis_in_the_vpc() -> None:
    small, big = loaded(5), loaded(500)
    one, other = small.add_eni(eni(9000, "sg-web")), big.add_eni(eni(9000, "sg-web"))
    assert one == other
    assert small.remove_eni(eni(9000).eni_id) == big.remove_eni(eni(9000).eni_id)


def test_a_group_change_touches_the_sets_it_joins_and_leaves() -> None:
    state = loaded(20)
    moved = state.set_groups(eni(4).eni_id, ("sg-db",))
    assert f"delete element inet taskvpc g_sg_web {{ {eni(4).ip} }}" in moved
    assert f"add element inet taskvpc g_sg_db {{ {eni(4).ip} }}" in moved
    assert "eni_00000005" not in moved
    tighter = replace(WEB, ingress=())
    ruled = state.set_rules({**RULES, "sg-web": tighter})
    assert "flush chain inet taskvpc gin_sg_web" in ruled and "eni_" not in ruled


OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.integers(0, 7),
            st.lists(st.sampled_from(["sg-web", "sg-db", "sg-x"]), max_size=2),
        ),
        st.tuples(st.just("remove"), st.integers(0, 7), st.just([])),
        st.tuples(
            st.just("groups"), st.integers(0, 7), st.lists(st.sampled_from(["sg-web", "sg-db"]), max_size=2)
        ),
        st.tuples(st.just("log"), st.integers(0, 7), st.just([])),
        st.tuples(st.just("rules"), st.integers(0, 1), st.just([])),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_bookkeeping_after_any_changes_is_what_a_whole_load_records(
    ops: list[tuple[str, int, list[str]]],
) -> None:
    state = TableState("taskvpc", "tvpc-host", rules=dict(RULES))
    state.whole()
    for op, n, groups in ops:
        if op == "add":
            state.add_eni(eni(n, *groups))
        elif op == "remove":
            state.remove_eni(eni(n).eni_id)
        elif op == "groups":
            state.set_groups(eni(n).eni_id, tuple(groups))
        elif op == "log":
            if (e := state.enis.get(eni(n).eni_id)) is not None:
                state.set_log_rejects(e.eni_id, not e.log_rejects)
        else:
            state.set_rules(RULES if n else {**RULES, "sg-web": replace(WEB, ingress=())})
    model = state.model()
    render(compile_ir(model))  # the state is a table nft would take
    reference = copy.deepcopy(state)
    reference.whole()
    assert state.chains == reference.chains
    assert state.jumpers == reference.jumpers  # target chains loaded: exactly those the ENIs jump to
    assert state.numbers == reference.numbers  # a whole load keeps the numbers
    assert set(state.numbers) == {t.combo for t in state.jumpers if t.combo is not None}
    assert len(set(state.numbers.values())) == len(state.numbers)
    assert {g: m for g, m in state.members.items() if m or g in state.carriers} == {
        g: m for g, m in reference.members.items() if m or g in reference.carriers
    }
    assert set(reference.members) <= set(state.members)  # every set a rule or an ENI needs exists
    carried = {g for e in model.enis for g in e.group_ids}
    assert set(state.carriers) == carried
    assert all(state.by_ip[e.ip] == e.eni_id for e in model.enis) and len(state.by_ip) == len(model.enis)
