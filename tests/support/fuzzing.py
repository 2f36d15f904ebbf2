"""Hypothesis strategies for the inputs of every operation taskvpc serves, made from botocore's shapes.

Two kinds of request come out of :func:`requests`: *model-shaped* ones, whose every value fits its shape
(type, enum, length, range), so they reach the handlers and exercise their own checks; and *hostile*
ones, where any value may instead be a null, the wrong type, a number far outside any range, a string
of non-ASCII digits, a huge string or a deep nesting. ECS gets JSON bodies; EC2 and STS get forms
flattened the way botocore's query serializers do, plus hostile keys (list indexes of thousands of
digits, "²"). The invariant the tests hold the server to is in ``tests/unit/test_fuzz_api.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st

from taskvpc.api.service_models import service_spec
from taskvpc.control.registry import SERVICES
from taskvpc.wire.shapes import Member, Shape
from tests.support.inprocess_api import ECS_TARGET, InProcessApi, TracebackCatcher

MAX_DEPTH = 5

# Values a client might plausibly send for identifiers, so some requests find what earlier ones made.
_PLAUSIBLE = [
    "default",
    "web",
    "fam",
    "fam:1",
    "fam:²",
    f"fam:{2**70}",
    "arn:aws:ecs:us-east-1:123456789012:cluster/default",
    "arn:aws-cn:ecs:cn-north-1:123456789012:cluster/default",
    "arn:aws:ecs:us-east-1:210987654321:task-definition/fam:1",
    "arn:aws:ecs:us-east-1:123456789012:task-definition/fam:1",
    "sg-12345678",
    "subnet-12345678",
    "vpc-12345678",
    "eni-12345678",
    "10.0.0.0/16",
    "0.0.0.0/0",
    "tcp",
    "-1",
    "awsvpc",
    "busybox",
    "us-east-1a",
]
HOSTILE_TEXT = [
    "²",
    "١٢",
    "\uff11\uff12",  # fullwidth digits
    "9" * 30,
    "9" * 5000,
    "-" + "9" * 5000,
    "",
    " ",
    "\x00",
    "\ud7ff\ufffe",
    "NaN",
    "Infinity",
    "1e999",
    "x" * 70_000,
    "grüße",
    "%s%n",
    "' OR 1=1 --",
    "[1, {}]",
]
_HOSTILE_JSON: list[Any] = [
    None,
    True,
    1.5,
    -1,
    0,
    2**31,
    2**63,
    2**64 - 1,
    -(2**63) - 1,
    1e308,
    [],
    {},
    [None],
    {"a": None},
    [[[[[[[[[[[]]]]]]]]]]],
    *HOSTILE_TEXT,
]


def served_operations(service: str) -> list[str]:
    (manifest,) = (m for m in SERVICES if m.model == service)
    return sorted(manifest.handlers)


def _text(shape: Shape) -> st.SearchStrategy[str]:
    if shape.enum is not None:
        return st.sampled_from(sorted(shape.enum))
    low = int(shape.min or 0)
    high = int(min(shape.max if shape.max is not None else 24, low + 24))
    free = st.text(min_size=low, max_size=max(low, high))
    plausible = [v for v in _PLAUSIBLE if low <= len(v) <= (shape.max or 1e9)]
    return st.one_of(st.sampled_from(plausible), free) if plausible else free


def _number(shape: Shape, bits: int) -> st.SearchStrategy[int]:
    low = -(2 ** (bits - 1)) if shape.min is None else int(shape.min)
    high = 2 ** (bits - 1) - 1 if shape.max is None else int(shape.max)
    return st.integers(min_value=low, max_value=high)


@dataclass
class _Builder:
    hostile: bool
    memo: dict[tuple[str, int], st.SearchStrategy[Any]]

    def value(self, shape: Shape, depth: int) -> st.SearchStrategy[Any]:
        key = (shape.name, depth)
        if key not in self.memo:
            self.memo[key] = st.deferred(lambda: self._build(shape, depth))
        valid = self.memo[key]
        if not self.hostile:
            return valid
        return st.one_of(valid, valid, valid, st.sampled_from(_HOSTILE_JSON))

    def _build(self, shape: Shape, depth: int) -> st.SearchStrategy[Any]:
        kind = shape.type
        if kind == "structure":
            if depth >= MAX_DEPTH:
                return st.just({})
            required = {
                n: self.value(m.shape, depth + 1) for n, m in shape.members.items() if n in shape.required
            }
            optional = {
                n: self.value(m.shape, depth + 1) for n, m in shape.members.items() if n not in shape.required
            }
            return st.fixed_dictionaries(required, optional=optional)
        if kind == "list":
            assert shape.member is not None
            if depth >= MAX_DEPTH:
                return st.just([])
            low = int(shape.min or 0)
            return st.lists(self.value(shape.member.shape, depth + 1), min_size=low, max_size=max(low, 3))
        if kind == "map":
            assert shape.key is not None and shape.value is not None
            return st.dictionaries(
                _text(shape.key.shape), self.value(shape.value.shape, depth + 1), max_size=3
            )
        if kind == "string":
            return _text(shape)
        if kind == "integer":
            return _number(shape, 32)
        if kind == "long":
            return _number(shape, 64)
        if kind == "boolean":
            return st.booleans()
        if kind in ("double", "float"):
            return st.floats(allow_nan=False, allow_infinity=False, width=32)
        if kind == "timestamp":
            return st.integers(min_value=0, max_value=2**32)
        if kind == "blob":
            return st.binary(max_size=8).map(lambda raw: raw.hex())
        return st.none()


def params_for(service: str, operation: str, hostile: bool) -> st.SearchStrategy[dict[str, Any]]:
    shape = service_spec(service).operations[operation].input
    if shape is None:
        return st.just({})
    whole = _Builder(hostile, {})._build(shape, 0)
    base = VALID.get((service, operation))
    if base is None:
        return whole
    return st.one_of(whole, _one_member_changed(shape, base, _Builder(hostile, {})))


def _one_member_changed(shape: Shape, base: dict[str, Any], builder: _Builder) -> st.SearchStrategy[Any]:
    """A request that works, with one top-level member replaced by a drawn value (or dropped): the
    handler's own checks and the paths past them (placement, ENIs, rules) get exercised."""
    names = sorted(shape.members)

    def change(name: str) -> st.SearchStrategy[dict[str, Any]]:
        member = builder.value(shape.members[name].shape, 1)
        dropped = {k: v for k, v in base.items() if k != name}
        return st.one_of(st.just(dropped), member.map(lambda value: {**base, name: value}))

    return st.one_of(st.just(dict(base)), st.sampled_from(names).flatmap(change))


# Requests that succeed against a seeded store (see :func:`seed`); "{subnet}" and "{group}" are filled
# in by ``seed`` with the default VPC's first subnet and default group.
VALID: dict[tuple[str, str], dict[str, Any]] = {}


def _valid_requests(subnet: str, group: str, instance_arn: str) -> dict[tuple[str, str], dict[str, Any]]:
    awsvpc = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}
    definition = {
        "family": "fam",
        "networkMode": "awsvpc",
        "containerDefinitions": [{"name": "web", "image": "busybox", "memory": 64}],
    }
    return {
        ("ecs", "RunTask"): {"taskDefinition": "fam", "networkConfiguration": awsvpc},
        ("ecs", "StartTask"): {
            "taskDefinition": "fam",
            "containerInstances": [instance_arn],
            "networkConfiguration": awsvpc,
        },
        ("ecs", "RegisterTaskDefinition"): definition,
        ("ecs", "CreateCluster"): {"clusterName": "made"},
        ("ecs", "PutAttributes"): {"attributes": [{"name": "a", "value": "b", "targetId": instance_arn}]},
        ("ecs", "UpdateContainerInstancesState"): {"containerInstances": [instance_arn], "status": "ACTIVE"},
        ("ec2", "AuthorizeSecurityGroupIngress"): {
            "GroupId": group,
            "IpPermissions": [
                {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "10.1.0.0/16"}]}
            ],
        },
        ("ec2", "CreateSecurityGroup"): {"GroupName": "made", "Description": "made here"},
        ("ec2", "CreateNetworkInterface"): {"SubnetId": subnet, "Groups": [group]},
        ("ec2", "CreateTags"): {"Resources": [group], "Tags": [{"Key": "k", "Value": "v"}]},
    }


# ---- the query protocols' forms ------------------------------------------------------------------


def _ec2_key(member: Member, name: str) -> str:
    if member.query_name:
        return member.query_name
    if member.location_name:
        return member.location_name[0].upper() + member.location_name[1:]
    return name


def _query_key(member: Member, name: str) -> str:
    return member.location_name or name


def flatten(shape: Shape, value: Any, ec2: bool, prefix: str = "") -> dict[str, str]:
    """``value`` as the form botocore would send for ``shape`` (values of the wrong type included)."""
    out: dict[str, str] = {}
    _flatten(shape, value, ec2, prefix, out)
    return out


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, float) else str(value)


def _flatten(shape: Shape, value: Any, ec2: bool, prefix: str, out: dict[str, str]) -> None:
    if value is None:
        return
    if shape.type == "structure" and isinstance(value, dict):
        for name, item in value.items():
            member = shape.members.get(name)
            if member is None:
                out[f"{prefix}.{name}" if prefix else str(name)] = _scalar(item)
                continue
            key = _ec2_key(member, name) if ec2 else _query_key(member, name)
            _flatten(member.shape, item, ec2, f"{prefix}.{key}" if prefix else key, out)
        return
    if shape.type == "list" and isinstance(value, list):
        assert shape.member is not None
        if not value and not ec2:
            out[prefix] = ""
        inner = prefix if ec2 else f"{prefix}.{shape.member.location_name or 'member'}"
        for index, item in enumerate(value, start=1):
            _flatten(shape.member.shape, item, ec2, f"{inner}.{index}", out)
        return
    if shape.type == "map" and isinstance(value, dict):
        for index, (key, item) in enumerate(value.items(), start=1):
            out[f"{prefix}.entry.{index}.key"] = _scalar(key)
            if item is not None:
                out[f"{prefix}.entry.{index}.value"] = _scalar(item)
        return
    if isinstance(value, list | dict):
        out[prefix + ".1"] = _scalar(value)  # a structure where a scalar belongs, or the reverse
        return
    out[prefix] = _scalar(value)


_HOSTILE_KEYS = st.sampled_from(
    [
        "GroupId.²",
        "GroupId." + "9" * 5000,
        "Filter.1.Value." + "9" * 40,
        "Filter." + "9" * 12 + ".Name",
        "MaxResults",
        "DryRun",
        "NextToken",
        "IpProtocol",
        "Foo.1.Bar",
        "",
    ]
)


def _form(service: str, operation: str, params: dict[str, Any]) -> dict[str, str]:
    spec = service_spec(service)
    shape = spec.operations[operation].input
    return flatten(shape, params, spec.protocol == "ec2") if shape else {}


def form_for(service: str, operation: str, hostile: bool) -> st.SearchStrategy[dict[str, str]]:
    spec = service_spec(service)
    shape = spec.operations[operation].input
    ec2 = spec.protocol == "ec2"
    header = {"Action": operation, "Version": spec.api_version}
    params = params_for(service, operation, hostile)
    forms = params.map(lambda value: {**header, **(flatten(shape, value, ec2) if shape else {})})
    if not hostile:
        return forms
    extra = st.dictionaries(_HOSTILE_KEYS, st.sampled_from(HOSTILE_TEXT), max_size=2)
    return st.tuples(forms, extra).map(lambda pair: {**pair[1], **pair[0]} if pair[1] else pair[0])


# ---- a store with something in it ------------------------------------------------------------------


def seed(api: InProcessApi) -> None:
    """Make what the plausible identifiers name (a cluster, an awsvpc task definition, a container
    instance, the default VPC's subnets and groups), so fuzzed requests reach past the not-found
    checks into placement, ENIs and rules. Call before the strategies are first built."""
    assert api.ecs("CreateCluster", {"clusterName": "default"})[0] == 200
    definition = {
        "family": "fam",
        "networkMode": "awsvpc",
        "containerDefinitions": [{"name": "web", "image": "busybox", "memory": 64}],
    }
    assert api.ecs("RegisterTaskDefinition", definition)[0] == 200
    registration = {
        "cluster": "default",
        "instanceId": "i-0123456789abcdef0",
        "resources": {"CPU": 4096, "MEMORY": 8192},
        "maxTaskEnis": 4,
    }
    status, body = api.agent("POST", "register", registration)
    assert status == 200, body
    instance_arn = body["containerInstanceArn"]
    subnets = sorted(set(re.findall(r"<subnetId>(.*?)</subnetId>", api.ec2("DescribeSubnets")[1])))
    groups = sorted(set(re.findall(r"<groupId>(.*?)</groupId>", api.ec2("DescribeSecurityGroups")[1])))
    _PLAUSIBLE.extend([instance_arn, *subnets, *groups])
    VALID.update(_valid_requests(subnets[0], groups[0], instance_arn))
    for (service, operation), params in VALID.items():  # each really works, once
        if service == "ecs":
            assert api.ecs(operation, params)[0] == 200, (operation, params)
        else:
            form = {"Action": operation, "Version": "2016-11-15", **_form(service, operation, params)}
            assert api.query(service, form)[0] == 200, (operation, params)


# ---- requests and the invariant --------------------------------------------------------------------

_FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def requests(service: str) -> st.SearchStrategy[tuple[str, Any]]:
    """(operation, payload): any served operation, with a model-shaped or a hostile payload."""

    def for_operation(operation: str) -> st.SearchStrategy[tuple[str, Any]]:
        build = params_for if service == "ecs" else form_for
        payloads = st.one_of(build(service, operation, False), build(service, operation, True))
        return payloads.map(lambda payload: (operation, payload))

    return st.sampled_from(served_operations(service)).flatmap(for_operation)


def send(api: InProcessApi, service: str, operation: str, payload: Any) -> tuple[int, bytes]:
    if service == "ecs":
        headers = {"X-Amz-Target": ECS_TARGET + operation, "Content-Type": "application/x-amz-json-1.1"}
        status, body, _ = api.send(json.dumps(payload).encode(), headers, service="ecs")
    else:
        status, body, _ = api.send(urlencode(payload).encode(), _FORM, service=service)
    return status, body


def check(api: InProcessApi, catcher: TracebackCatcher, service: str, operation: str, payload: Any) -> None:
    """One request against the invariant: no 5xx but 501, no traceback logged, and a refused request
    leaves every table as it was. The assertion message names the request."""
    catcher.records.clear()
    before = api.snapshot()
    status, body = send(api, service, operation, payload)
    shown = f"{service} {operation} {str(payload)[:600]!r} -> {status} {body[:400]!r}"
    assert status < 500 or status == 501, shown
    assert not catcher.records, f"traceback logged: {shown}\n{catcher.records[0].getMessage()}"
    if status >= 400:
        assert api.snapshot() == before, f"a refused request changed the store: {shown}"
