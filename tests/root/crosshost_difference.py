"""Proof by difference across hosts: real packets between tasks on two instances, over the VXLAN overlay,
agree with the reference evaluator (issue 18, item 3). Used by ``test_crosshost.py`` on its instances and
tasks (no setup of its own), so it adds only its examples' time.

Per example Hypothesis (derandomized: the same examples every run) draws ingress rules and egress rules (or
EC2's default allow-all) for the tasks' groups: TCP port ranges, all-protocol ``-1``, UDP (never matching a
TCP flow), CIDR peers around the tasks' real addresses and references to the groups. They are applied
through the EC2 API, as a user would. Two *sentinel* rules per example (a TCP port used by that example
only, each host's task sending to the other's) are written last: once both sentinel flows pass, both
agents apply a desired state that holds every rule of the example. Then every task on one host opens a TCP
connection to every task on the other at a drawn port (mostly one the rules open, when there is one, so
that allowed flows are not rare); the evaluator's verdict over DescribeSecurityGroups
(``console.reachability_views.group_rules``, the console's own reading of the API) must match: allowed is
an answer (the sample page on 80, a refusal elsewhere), denied is silence.

``TASKVPC_XH_DIFF_EXAMPLES`` (default 4) sets the number of examples.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from taskvpc.console.reachability_views import group_rules
from taskvpc.netmodel.evaluator import Eni, Flow, evaluate

EXAMPLES = int(os.environ.get("TASKVPC_XH_DIFF_EXAMPLES", "4"))
PORTS = (80, 81, 8081)  # 80: the sample page on every task; 8081: a listener on one; 81: nobody's
PORT_RANGES = ((80, 80), (81, 81), (8081, 8081), (80, 81), (0, 65535), (8000, 8100))
SENTINEL_BASE = 9100  # example k's sentinel port is 9100 + k: no drawn rule or flow uses it
SETTLE = 30.0  # how long both agents may take to apply an example's rules


@dataclass(frozen=True)
class Task:
    namespace: str
    ip: str
    groups: tuple[str, ...]
    host: str


Probe = Callable[[str, str, int], str]  # (namespace, ip, port) -> "open ...", "refused", "timeout", ...


def _passed(answer: str) -> bool | None:
    """An answer (handshake or refusal) means the SYN got through; silence means dropped; else unknown."""
    if answer.startswith("open") or answer == "refused":
        return True
    return False if answer == "timeout" else None


@st.composite
def _permission(draw: st.DrawFn, groups: Sequence[str], cidrs: Sequence[str]) -> dict[str, Any]:
    protocol = draw(st.sampled_from(["tcp", "tcp", "-1", "udp"]))
    perm: dict[str, Any] = {"IpProtocol": protocol}
    if protocol != "-1":
        perm["FromPort"], perm["ToPort"] = draw(st.sampled_from(PORT_RANGES))
    if draw(st.integers(0, 2)) == 0:
        perm["UserIdGroupPairs"] = [{"GroupId": draw(st.sampled_from(list(groups)))}]
    else:
        perm["IpRanges"] = [{"CidrIp": draw(st.sampled_from(list(cidrs)))}]
    return perm


def _unique(perms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """EC2 refuses the same permission twice in one call."""
    return list({repr(sorted(p.items())): p for p in perms}.values())


def _replace_rules(
    ec2: Any, group: str, ingress: list[dict[str, Any]], egress: list[dict[str, Any]] | None
) -> None:
    """The group's rules become ``ingress`` and ``egress`` (None: EC2's default allow-all egress)."""
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group]}])
    doomed_in = [r["SecurityGroupRuleId"] for r in rules["SecurityGroupRules"] if not r["IsEgress"]]
    doomed_out = [r["SecurityGroupRuleId"] for r in rules["SecurityGroupRules"] if r["IsEgress"]]
    if doomed_in:
        ec2.revoke_security_group_ingress(GroupId=group, SecurityGroupRuleIds=doomed_in)
    if doomed_out:
        ec2.revoke_security_group_egress(GroupId=group, SecurityGroupRuleIds=doomed_out)
    if ingress:
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=_unique(ingress))
    wanted = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}] if egress is None else egress
    if wanted:
        ec2.authorize_security_group_egress(GroupId=group, IpPermissions=_unique(wanted))


def _sentinel(ec2: Any, src: Task, dst: Task, port: int) -> None:
    """Let ``src`` open ``port`` on ``dst`` (its first groups' rules, a port no drawn rule names)."""
    perm = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
    ec2.authorize_security_group_egress(
        GroupId=src.groups[0], IpPermissions=[{**perm, "IpRanges": [{"CidrIp": f"{dst.ip}/32"}]}]
    )
    ec2.authorize_security_group_ingress(GroupId=dst.groups[0], IpPermissions=[{**perm, "IpRanges": [{"CidrIp": f"{src.ip}/32"}]}])  # fmt: skip


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.2)


def check_difference(
    ec2: Any, tasks: Mapping[str, Task], cidrs: Sequence[str], probe: Probe
) -> collections.Counter[str]:
    """Run the examples (module docstring); the count of allowed and denied cross-host flows checked."""
    groups = sorted({g for t in tasks.values() for g in t.groups})
    names = sorted(tasks)
    pairs = [(s, d) for s in names for d in names if tasks[s].host != tasks[d].host]
    assert pairs, "the tasks must be on two hosts"
    anchor_a, anchor_b = pairs[0]  # the sentinels' tasks, one on each host
    enis = [Eni(name, (t.ip,), t.groups) for name, t in tasks.items()]
    stats: collections.Counter[str] = collections.Counter()
    pool = ThreadPoolExecutor(max_workers=len(pairs))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: every step re-sends packets
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def example(data: st.DataObject) -> None:
        sentinel = SENTINEL_BASE + stats["examples"]
        for group in groups:
            ingress = data.draw(
                st.lists(_permission(groups, cidrs), min_size=1, max_size=3), label=f"ingress {group}"
            )
            default_egress = data.draw(st.integers(0, 2), label=f"default egress {group}") > 0
            egress = (
                None
                if default_egress
                else data.draw(st.lists(_permission(groups, cidrs), max_size=2), label=f"egress {group}")
            )
            _replace_rules(ec2, group, ingress, egress)
        _sentinel(ec2, tasks[anchor_a], tasks[anchor_b], sentinel)
        _sentinel(ec2, tasks[anchor_b], tasks[anchor_a], sentinel)
        for src, dst in ((anchor_a, anchor_b), (anchor_b, anchor_a)):
            _wait_for(
                lambda s=src, d=dst: _passed(probe(tasks[s].namespace, tasks[d].ip, sentinel)) is True,
                SETTLE,
                f"example {stats['examples']}: sentinel {src} -> {dst}:{sentinel}",
            )
        rules = group_rules(ec2.describe_security_groups(GroupIds=groups)["SecurityGroups"])
        ports = []
        for src, dst in pairs:  # mostly a port the rules open, if any: both outcomes get exercised
            flow = Flow(tasks[src].ip, tasks[dst].ip, "tcp")
            open_ports = [p for p in PORTS if evaluate(replace(flow, dst_port=p), enis, rules).allowed]
            pick = open_ports if open_ports and data.draw(st.integers(0, 3), label="prefer open") else PORTS
            ports.append(data.draw(st.sampled_from(pick), label=f"port {src}->{dst}"))
        flows = [
            Flow(tasks[s].ip, tasks[d].ip, "tcp", port) for (s, d), port in zip(pairs, ports, strict=True)
        ]
        expected = [evaluate(flow, enis, rules).allowed for flow in flows]
        answers = list(
            pool.map(lambda pd: probe(tasks[pd[0][0]].namespace, tasks[pd[0][1]].ip, pd[1]), zip(pairs, ports, strict=True))
        )  # fmt: skip
        for i, (want, answer) in enumerate(zip(expected, answers, strict=True)):
            if want and _passed(answer) is False:  # a busy machine: one more try before calling it dropped
                answers[i] = probe(tasks[pairs[i][0]].namespace, tasks[pairs[i][1]].ip, ports[i])
        for (src, dst), port, want, answer in zip(pairs, ports, expected, answers, strict=True):
            stats["allowed" if want else "denied"] += 1
            assert _passed(answer) is want, (
                f"{src} {tasks[src].ip} {tasks[src].groups} -> {dst} {tasks[dst].ip} {tasks[dst].groups} "
                f"tcp/{port}: evaluator {'allows' if want else 'denies'}, real packet {answer!r}\n"
                f"rules: {rules}"
            )
        stats["examples"] += 1

    try:
        example()
    finally:
        pool.shutdown()
    return stats
