"""FirewallSync: what the agent loads into each VPC router as ENIs come and go and groups change."""

from __future__ import annotations

import pytest

from taskvpc.agent import netplan
from taskvpc.agent.engine import DesiredState
from taskvpc.agent.security import FirewallSync
from taskvpc.agentapi.network import SecurityGroup
from taskvpc.netmodel.evaluator import GroupRules
from taskvpc.netmodel.firewall_ir import EniPort
from taskvpc.netmodel.security_groups import Rule

CFG = netplan.NetConfig(prefix="tvpc")
WEB = GroupRules(
    "sg-web",
    (Rule("ingress", "tcp", 80, 80, cidr_ipv4="0.0.0.0/0"),),
    (Rule("egress", "-1", None, None, cidr_ipv4="0.0.0.0/0"),),
)


class Loader:
    def __init__(self) -> None:
        self.batches: list[tuple[str, str]] = []
        self.forgotten: list[tuple[str, str]] = []
        self.fail_next = False
        self.broken: set[str] = set()  # VPCs whose router refuses everything

    def apply(self, vpc_id: str, nft_text: str) -> None:
        if self.fail_next or vpc_id in self.broken:
            self.fail_next = False
            raise RuntimeError("table gone")
        self.batches.append((vpc_id, nft_text))

    def forget_flows(self, vpc_id: str, ip: str) -> int:
        self.forgotten.append((vpc_id, ip))
        return 1


def eni(n: int, *groups: str) -> EniPort:
    eni_id = f"eni-{n:08x}"
    return EniPort(eni_id, netplan.eni_port(CFG, eni_id), f"10.0.0.{n}", f"0e:00:00:00:00:{n:02x}", groups)


def test_first_eni_loads_the_whole_table_then_updates_are_incremental() -> None:
    loader = Loader()
    sync = FirewallSync(loader, CFG)
    sync.set_desired({"vpc-1": {"sg-web": WEB}}, {})
    assert loader.batches == []  # no table until an ENI needs one
    sync.add_eni("vpc-1", eni(5, "sg-web"))
    [(vpc, whole)] = loader.batches
    assert vpc == "vpc-1" and "delete table inet taskvpc" in whole and "tcp dport 80" in whole
    sync.add_eni("vpc-1", eni(6, "sg-web"))
    incremental = loader.batches[-1][1]
    assert "delete table" not in incremental and "10.0.0.6" in incremental and "10.0.0.5 " not in incremental
    assert sync.updates == 2


def test_rule_changes_reach_only_vpcs_with_a_table() -> None:
    loader = Loader()
    sync = FirewallSync(loader, CFG)
    sync.add_eni("vpc-1", eni(5, "sg-web"))
    loader.batches.clear()
    tighter = GroupRules("sg-web", (Rule("ingress", "tcp", 443, 443, cidr_ipv4="10.0.0.0/8"),), WEB.egress)
    changed = sync.set_desired({"vpc-1": {"sg-web": tighter}, "vpc-2": {"sg-web": tighter}}, {})
    assert changed == ["vpc-1"]
    [(vpc, text)] = loader.batches
    assert vpc == "vpc-1" and "tcp dport 443" in text and "delete table" not in text
    assert sync.set_desired({"vpc-1": {"sg-web": tighter}}, {}) == []  # nothing new: nothing loaded


def test_desired_groups_of_an_eni_win_over_those_it_was_registered_with() -> None:
    loader = Loader()
    sync = FirewallSync(loader, CFG)
    sync.add_eni("vpc-1", eni(5))
    sync.set_desired({"vpc-1": {"sg-web": WEB}}, {eni(5).eni_id: ("sg-web",)})
    assert [e.group_ids for e in sync.model("vpc-1").enis] == [("sg-web",)]
    assert "tcp dport 80" in loader.batches[-1][1]


def test_a_failed_incremental_batch_reloads_the_whole_table() -> None:
    loader = Loader()
    sync = FirewallSync(loader, CFG)
    sync.add_eni("vpc-1", eni(5, "sg-web"))
    loader.fail_next = True
    sync.add_eni("vpc-1", eni(6, "sg-web"))
    assert "delete table inet taskvpc" in loader.batches[-1][1]
    assert {e.ip for e in sync.model("vpc-1").enis} == {"10.0.0.5", "10.0.0.6"}


def test_first_load_failure_is_raised() -> None:
    loader = Loader()
    loader.fail_next = True
    sync = FirewallSync(loader, CFG)
    with pytest.raises(RuntimeError):
        sync.add_eni("vpc-1", eni(5, "sg-web"))


def test_removing_by_eni_or_by_port() -> None:
    loader = Loader()
    sync = FirewallSync(loader, CFG)
    sync.add_eni("vpc-1", eni(5, "sg-web"))
    sync.add_eni("vpc-1", eni(6, "sg-web"))
    sync.remove_eni("vpc-1", eni(5).eni_id)
    gone = loader.batches[-1][1]
    assert f'delete element inet taskvpc port_combo {{ "{eni(5).port}" }}' in gone
    assert "delete chain" not in gone  # eni 6 still jumps to the chains of sg-web's combination
    sync.remove_port(None, eni(6).port)
    assert sync.model("vpc-1").enis == ()
    before = len(loader.batches)
    sync.remove_eni(None, "eni-ffffffff")  # unknown: nothing to do
    assert len(loader.batches) == before


def test_desired_state_parses_groups_and_skips_unreadable_rules() -> None:
    doc = {
        "generation": 3,
        "vpcs": [{"vpcId": "vpc-1", "subnets": []}],
        "securityGroups": [
            {
                "groupId": "sg-web",
                "vpcId": "vpc-1",
                "rules": [
                    {
                        "direction": "ingress",
                        "protocol": "tcp",
                        "fromPort": 80,
                        "toPort": 80,
                        "cidrIpv4": "0.0.0.0/0",
                    },
                    {
                        "direction": "ingress",
                        "protocol": "bogus",
                        "fromPort": 1,
                        "toPort": 1,
                        "cidrIpv4": "1.2.3.4/32",
                    },
                    {
                        "direction": "egress",
                        "protocol": "udp",
                        "fromPort": 53,
                        "toPort": 53,
                        "groupId": "sg-dns",
                    },
                ],
            },
            "garbage",
            {"groupId": 7},
        ],
        "tasks": [],
    }
    state = DesiredState.from_wire(doc)
    assert set(state.security_groups["vpc-1"]) == {"sg-web"}
    web = state.security_groups["vpc-1"]["sg-web"]
    assert web.ingress == (Rule("ingress", "tcp", 80, 80, cidr_ipv4="0.0.0.0/0"),)
    assert web.egress == (Rule("egress", "udp", 53, 53, group_id="sg-dns"),)
    assert [g for g, _ in state.skipped_rules()] == ["sg-web"]


def test_connections_of_an_address_are_forgotten_when_it_changes_hands() -> None:
    loader = Loader()
    sync = FirewallSync(loader, CFG)
    sync.add_eni("vpc-1", eni(5, "sg-web"))  # adopted: its own connections stay
    assert loader.forgotten == []
    sync.remove_eni("vpc-1", eni(5).eni_id)
    assert loader.forgotten == [("vpc-1", "10.0.0.5")]
    successor = EniPort(
        "eni-000000aa", netplan.eni_port(CFG, "eni-000000aa"), "10.0.0.5", "0e:00:00:00:00:aa", ()
    )
    sync.add_eni("vpc-1", successor, new_network=True)
    assert loader.forgotten[-1] == ("vpc-1", "10.0.0.5")


def test_a_stale_registration_of_the_same_address_gives_way() -> None:
    loader = Loader()
    sync = FirewallSync(loader, CFG)
    sync.add_eni("vpc-1", eni(5, "sg-web"))
    successor = EniPort(
        "eni-000000aa", netplan.eni_port(CFG, "eni-000000aa"), "10.0.0.5", "0e:00:00:00:00:aa", ()
    )
    sync.add_eni("vpc-1", successor, new_network=True)
    assert [e.eni_id for e in sync.model("vpc-1").enis] == ["eni-000000aa"]
    loader.fail_next = True  # a whole reload must still compile (no address used twice)
    sync.add_eni("vpc-1", eni(6, "sg-web"))
    assert "delete table" in loader.batches[-1][1]


def test_one_broken_vpc_does_not_keep_changes_from_the_others() -> None:
    loader = Loader()
    sync = FirewallSync(loader, CFG)
    sync.add_eni("vpc-1", eni(5, "sg-web"))
    sync.add_eni("vpc-2", eni(6, "sg-web"))
    loader.broken.add("vpc-1")
    tighter = GroupRules("sg-web", (), WEB.egress)
    assert sync.set_desired({"vpc-1": {"sg-web": tighter}, "vpc-2": {"sg-web": tighter}}, {}) == ["vpc-2"]
    loader.broken.clear()  # the router is back: the next desired state reloads it whole
    assert sync.set_desired({}, {}) == ["vpc-1"]
    assert "delete table" in loader.batches[-1][1] and loader.batches[-1][0] == "vpc-1"


def test_a_vpc_forgotten_keeps_its_desired_groups() -> None:
    loader = Loader()
    sync = FirewallSync(loader, CFG)
    sync.set_desired({"vpc-1": {"sg-web": WEB}}, {})
    sync.add_eni("vpc-1", eni(5, "sg-web"))
    sync.forget_vpc("vpc-1")  # router removed while a new task for it is on its way
    sync.add_eni("vpc-1", eni(6, "sg-web"))
    assert "tcp dport 80" in loader.batches[-1][1]


def test_rules_nft_would_refuse_are_skipped() -> None:
    doc = {
        "groupId": "sg-odd",
        "vpcId": "vpc-1",
        "rules": [
            {
                "direction": "ingress",
                "protocol": "tcp",
                "fromPort": -1,
                "toPort": -1,
                "cidrIpv4": "0.0.0.0/0",
            },
            {
                "direction": "ingress",
                "protocol": "tcp",
                "fromPort": 80,
                "toPort": 80,
                "cidrIpv4": "10.0.0.1/8",
            },
            {
                "direction": "ingress",
                "protocol": "icmp",
                "fromPort": 300,
                "toPort": -1,
                "cidrIpv4": "0.0.0.0/0",
            },
            {
                "direction": "sideways",
                "protocol": "tcp",
                "fromPort": 22,
                "toPort": 22,
                "cidrIpv4": "10.0.0.0/8",
            },
            {"direction": "ingress", "protocol": "tcp", "fromPort": 22, "toPort": 22},
            {
                "direction": "ingress",
                "protocol": "tcp",
                "fromPort": 22,
                "toPort": 22,
                "cidrIpv4": "10.0.0.0/8",
            },
        ],
    }
    group = SecurityGroup.from_wire(doc)
    assert group is not None and len(group.skipped) == 5
    assert group.ingress == (Rule("ingress", "tcp", 22, 22, cidr_ipv4="10.0.0.0/8"),)
