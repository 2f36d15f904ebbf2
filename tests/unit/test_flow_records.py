"""Flow log records: AWS's own example lines, log formats, and which flow logs see an ENI (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from taskvpc.netmodel import flow_logs as fl

# The default-format examples of the Amazon VPC User Guide, "Flow log record examples"
# (https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-records-examples.html).
SSH = {
    "account-id": "123456789010",
    "interface-id": "eni-1235b8ca123456789",
    "srcaddr": "172.31.16.139",
    "dstaddr": "172.31.16.21",
    "srcport": 20641,
    "dstport": 22,
    "protocol": 6,
    "packets": 20,
    "bytes": 4249,
    "start": 1418530010,
    "end": 1418530070,
    "action": "ACCEPT",
    "log-status": "OK",
}
RDP = {
    **SSH,
    "srcaddr": "172.31.9.69",
    "dstaddr": "172.31.9.12",
    "srcport": 49761,
    "dstport": 3389,
    "action": "REJECT",
}
AWS_EXAMPLES = [
    (SSH, "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK"),
    (RDP, "2 123456789010 eni-1235b8ca123456789 172.31.9.69 172.31.9.12 49761 3389 6 20 4249 1418530010 1418530070 REJECT OK"),
    (
        fl.status_record("NODATA", SSH, 1431280876, 1431280934),
        "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA",
    ),
    (
        fl.status_record("SKIPDATA", {**SSH, "interface-id": "eni-11111111aaaaaaaaa"}, 1431280876, 1431280934),
        "2 123456789010 eni-11111111aaaaaaaaa - - - - - - - 1431280876 1431280934 - SKIPDATA",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("record", "line"), AWS_EXAMPLES)
def test_default_format_matches_the_user_guide(record: dict[str, object], line: str) -> None:
    assert fl.format_flow_record(fl.DEFAULT_FIELDS, record) == line


def test_default_format_text() -> None:
    assert fl.DEFAULT_FORMAT == (
        "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} "
        "${packets} ${bytes} ${start} ${end} ${action} ${log-status}"
    )
    assert fl.parse_log_format(None) == fl.DEFAULT_FIELDS
    assert fl.parse_log_format(fl.DEFAULT_FORMAT) == fl.DEFAULT_FIELDS


def test_custom_format_version_is_its_highest_field() -> None:
    fields = fl.parse_log_format(
        "${version} ${vpc-id} ${srcaddr} ${tcp-flags} ${flow-direction} ${traffic-path}"
    )
    record = {"vpc-id": "vpc-1", "srcaddr": "10.0.0.1", "tcp-flags": 19, "flow-direction": "ingress"}
    assert fl.format_flow_record(fields, record) == "5 vpc-1 10.0.0.1 19 ingress -"
    assert fl.format_flow_record(fl.parse_log_format("${version} ${ecs-task-id}"), {}) == "7 -"
    assert fl.format_flow_record(fl.parse_log_format("${version} ${subnet-id}"), {}) == "3 -"


@pytest.mark.parametrize(
    "text", ["", "   ", "${nope}", "${srcaddr}${dstaddr}", "srcaddr", "${srcaddr} dstaddr", "${}"]
)
def test_bad_log_formats(text: str) -> None:
    with pytest.raises(fl.LogFormatError):
        fl.parse_log_format(text)


@given(st.lists(st.sampled_from(sorted(fl.FIELD_VERSIONS)), min_size=1, max_size=12), st.data())
def test_a_line_has_one_token_per_field(fields: list[str], data: st.DataObject) -> None:
    record = {
        name: data.draw(
            st.one_of(st.none(), st.integers(0, 2**32), st.from_regex(r"[a-z0-9.:-]{1,12}", fullmatch=True))
        )
        for name in fields
    }
    tokens = fl.format_flow_record(fields, record).split(" ")
    assert len(tokens) == len(fields)
    for name, token in zip(fields, tokens, strict=True):
        value = record[name]
        if name == "version" and value is None:
            assert token == str(fl.format_version(fields))
        else:
            assert token == ("-" if value is None else str(value))


def target(resource: str, traffic: str = "ALL") -> fl.FlowLogTarget:
    return fl.FlowLogTarget(f"fl-{resource}", resource, traffic, "g", fl.DEFAULT_FIELDS)


def test_flow_logs_on_the_eni_its_subnet_and_its_vpc_apply() -> None:
    logs = [target("eni-a"), target("subnet-a"), target("vpc-a"), target("eni-b"), target("subnet-b")]
    found = fl.applicable(logs, "eni-a", "subnet-a", "vpc-a")
    assert [f.resource_id for f in found] == ["eni-a", "subnet-a", "vpc-a"]


def test_traffic_type_selects_records_but_status_records_always_go() -> None:
    accept, reject = target("eni-a", "ACCEPT"), target("eni-a", "REJECT")
    assert fl.wants(accept, SSH) and not fl.wants(reject, SSH)
    assert fl.wants(reject, RDP) and not fl.wants(accept, RDP)
    nodata = fl.status_record("NODATA", SSH, 1, 2)
    assert fl.wants(accept, nodata) and fl.wants(reject, nodata) and fl.wants(target("x"), SSH)
