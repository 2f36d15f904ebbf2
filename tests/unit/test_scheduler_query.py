"""Cluster query language (taskvpc.scheduler.query): parsing, refusing, evaluating."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskvpc.domain.errors import ClientError
from taskvpc.scheduler.model import InstanceSnapshot
from taskvpc.scheduler.placement import compile_expression
from taskvpc.scheduler.query import And, Compare, Not, Op, Or, QuerySyntaxError, matches, parse, tokenize


def instance(**kw: object) -> InstanceSnapshot:
    base: dict[str, object] = {
        "arn": "arn:aws:ecs:us-east-1:123456789012:container-instance/default/a",
        "instance_id": "i-abcd1234",
        "availability_zone": "us-east-1a",
        "remaining": {"CPU": 2048, "MEMORY": 4096},
        "task_eni_free": 2,
        "attributes": {"ecs.instance-type": "t2.small", "stack": "prod", "flag": None},
        "task_groups": {"service:production": 1, "family:web": 0},
        "running_tasks_count": 1,
        "agent_version": "1.14.5",
        "registered_at": datetime(2018, 2, 13, 12, 0, tzinfo=UTC),
    }
    base.update(kw)
    return InstanceSnapshot(**base)  # type: ignore[arg-type]


INST = instance()


# The Developer Guide's own examples (cluster-query-language.md, task-placement-constraints.md).
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("attribute:ecs.instance-type == t2.small", True),
        ("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", True),
        ("attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d", False),
        ("attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone == us-east-1a", True),
        ("task:group == service:production", True),
        ("not(task:group == database)", True),
        ("runningTasksCount == 1", True),
        ("agentVersion < 1.14.5", False),
        ("agentVersion < 1.14.6", True),
        ("registeredAt < 2018-02-13", False),
        ("registeredAt < 2018-02-14", True),
        ("ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']", True),
        ("attribute:ecs.instance-type in [t2.small, t2.medium]", True),
        ("attribute:stack != prod", False),
        ("attribute:ecs.instance-type =~ t2.*", True),
    ],
)
def test_guide_examples(expression: str, expected: bool) -> None:
    assert matches(expression, INST) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("attribute:stack exists", True),
        ("attribute:flag exists", True),  # an attribute with no value still exists
        ("attribute:missing !exists", True),
        ("attribute:missing not_exists", True),
        ("attribute:missing != prod", False),  # negatives need the attribute present [I]
        ("attribute:missing !in [a, b]", False),
        ("attribute:stack !in [dev, test]", True),
        ("attribute:stack not_in [prod]", False),
        ("attribute:stack equals prod", True),
        ("attribute:stack not_equals prod", False),
        ("attribute:stack matches pr.*", True),
        ("attribute:stack not_matches pr.*", False),
        ("attribute:stack !~ p", True),  # a whole-value match, like Java's Pattern.matches
        ("attribute:flag == x", False),
        ("agentConnected == true", True),
        ("agentConnected == TRUE", True),
        ("agentConnected != true", False),
        ("runningTasksCount greater_than_equal 1", True),
        ("runningTasksCount > 1", False),
        ("runningTasksCount <= 0", False),
        ("registeredAt >= 2018-02-13T12:00:00Z", True),
        ("registeredAt > 2018-02-13T12:00:00+00:00", False),
        ("registeredAt == 2018-02-13T12:00:00", True),
        ("agentVersion >= 1.14", True),
        ("agentVersion == 1.14.5", True),
        ("task:group != service:production", False),
        ("task:group in [a, service:production]", True),
        ("task:group =~ service:.*", True),
        ("task:group == family:web", False),  # zero tasks of that group is not hosting it
        ("task:group exists", True),
        ("ec2InstanceId =~ i-abcd.*", True),
        ('attribute:stack == "prod"', True),
        ("attribute:ecs.availability-zone == us-east-1a", True),  # falls back to the snapshot's AZ
    ],
)
def test_operators(expression: str, expected: bool) -> None:
    assert matches(expression, INST) is expected


def test_precedence_and_grouping() -> None:
    # and binds tighter than or
    assert matches("attribute:stack == dev and attribute:stack == dev or runningTasksCount == 1", INST)
    assert not matches("attribute:stack == dev and (attribute:stack == dev or runningTasksCount == 1)", INST)
    assert matches("!(attribute:stack == dev) && attribute:stack == prod || runningTasksCount == 9", INST)
    assert matches("not not attribute:stack == prod", INST)


def test_tree_shape() -> None:
    tree = parse("not(attribute:x == 1) or attribute:y exists and task:group == g")
    assert isinstance(tree, Or)
    assert isinstance(tree.items[0], Not)
    assert isinstance(tree.items[1], And)
    leaf = tree.items[1].items[1]
    assert leaf == Compare("task:group", Op.EQ, ("g",))


def test_tokens_without_spaces() -> None:
    kinds = [t.kind.value for t in tokenize("runningTasksCount>=1&&!(attribute:a!=b)")]
    assert kinds == ["word", "operator", "word", "&&", "!", "(", "word", "operator", "word", ")", "end"]
    assert matches("runningTasksCount>=1&&!(attribute:stack!=prod)", INST)


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "   ",
        "attribute:stack",
        "attribute:stack ==",
        "attribute: == x",
        "colour == red",
        "attribute:stack === prod",
        "attribute:stack = prod",
        "attribute:stack in prod",
        "attribute:stack in [a, b",
        "attribute:stack in []",
        "(attribute:stack == prod",
        "attribute:stack == prod)",
        "attribute:stack == prod and",
        "attribute:stack == 'prod",
        "attribute:stack =~ [unclosed",
        "runningTasksCount > many",
        "registeredAt < yesterday",
        "agentConnected > true",
        "task:group >= x",
        "ec2InstanceId exists",
        "attribute:stack == prod extra",
        "attribute:a == b & attribute:c == d",
    ],
)
def test_invalid_expressions(expression: str) -> None:
    with pytest.raises(QuerySyntaxError):
        parse(expression)
    with pytest.raises(ClientError) as info:
        compile_expression(expression)
    assert info.value.code == "InvalidParameterException"
    assert info.value.http_status == 400


def test_error_position_points_at_the_problem() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse("attribute:a == b or colour == red")
    assert info.value.position == len("attribute:a == b or ")


def test_expression_length_limit() -> None:
    long = "attribute:a == " + "x" * 2000
    with pytest.raises(ClientError):
        compile_expression(long)
    assert isinstance(compile_expression("attribute:a == x"), Compare)
