"""The task definition form's init-process box: the seed's task definition runs its container with an init."""

from __future__ import annotations

from taskvpc.console import views


def test_init_process_box_sets_linux_parameters() -> None:
    base = {"family": ["f"], "containerName": ["c"], "image": ["i"]}
    [checked] = views.task_definition_from_form({**base, "initProcessEnabled": ["on"]}, "r")[
        "containerDefinitions"
    ]
    assert checked["linuxParameters"] == {"initProcessEnabled": True}
    [plain] = views.task_definition_from_form(base, "r")["containerDefinitions"]
    assert "linuxParameters" not in plain
