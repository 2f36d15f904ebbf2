"""Which roles a launch gives its task (what the launch-time trust check looks at)."""

from __future__ import annotations

from taskvpc.control.ecs.task_roles import roles_of, unable_to_assume

TASK = "arn:aws:iam::123456789012:role/task"
EXEC = "arn:aws:iam::123456789012:role/exec"
OTHER = "arn:aws:iam::123456789012:role/other"


def test_overrides_win_and_each_role_is_checked_once() -> None:
    assert roles_of({}, {}) == []
    assert roles_of({"taskRoleArn": TASK, "executionRoleArn": EXEC}, {}) == [TASK, EXEC]
    assert roles_of({"taskRoleArn": TASK}, {"taskRoleArn": OTHER}) == [OTHER]
    assert roles_of({"executionRoleArn": EXEC}, {"executionRoleArn": OTHER}) == [OTHER]
    assert roles_of({"taskRoleArn": TASK, "executionRoleArn": TASK}, {}) == [TASK]
    assert roles_of({"taskRoleArn": ""}, {"taskRoleArn": None}) == []


def test_the_refusal_is_ecs_invalid_parameter_with_its_text() -> None:
    error = unable_to_assume(TASK)
    assert error.code == "InvalidParameterException"
    assert error.message == (
        f"ECS was unable to assume the role '{TASK}' that was provided for this task. Please verify that "
        "the role being passed has the proper trust relationship and permissions and that your IAM user "
        "has permissions to pass this role."
    )
