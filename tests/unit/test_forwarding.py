"""ip_forward turned on for a bridge and put back by its removal (taskvpc/agent/drivers/forwarding.py),
on a file standing for the sysctl and a note directory of the test's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskvpc.agent.drivers import forwarding


@pytest.fixture()
def sysctl(tmp_path: Path) -> Path:
    path = tmp_path / "ip_forward"
    path.write_text("0\n")
    return path


def test_enable_notes_the_old_value_and_restore_puts_it_back(sysctl: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    assert forwarding.enable("tvx1", notes, str(sysctl)) is True
    assert sysctl.read_text() == "1"
    assert json.loads(forwarding.note_path("tvx1", notes).read_text())["previous"] == "0"
    assert forwarding.enable("tvx1", notes, str(sysctl)) is False  # on already: the note stays as it was
    assert forwarding.restore("tvx1", (), notes, str(sysctl)) == "ip_forward back to 0"
    assert sysctl.read_text() == "0"
    assert not forwarding.note_path("tvx1", notes).exists()
    assert forwarding.restore("tvx1", (), notes, str(sysctl)) is None  # twice is once


def test_forwarding_that_was_on_is_left_on(sysctl: Path, tmp_path: Path) -> None:
    sysctl.write_text("1\n")
    assert forwarding.enable("tvx1", tmp_path, str(sysctl)) is False
    assert forwarding.restore("tvx1", (), tmp_path, str(sysctl)) is None
    assert sysctl.read_text() == "1\n"


def test_another_bridge_of_the_namespace_inherits_the_note(sysctl: Path, tmp_path: Path) -> None:
    forwarding.enable("tvx1", tmp_path, str(sysctl))
    said = forwarding.restore("tvx1", ["tvx3", "tvx2"], tmp_path, str(sysctl))
    assert said == "ip_forward stays on for the bridge of prefix tvx2"
    assert sysctl.read_text() == "1"
    assert forwarding.note_path("tvx2", tmp_path).exists()
    assert forwarding.restore("tvx2", (), tmp_path, str(sysctl)) == "ip_forward back to 0"


def test_a_note_of_another_namespace_is_left_alone(sysctl: Path, tmp_path: Path) -> None:
    note = forwarding.note_path("tvx1", tmp_path)
    note.write_text(json.dumps({"previous": "0", "netns": forwarding.namespace_id() + 1}))
    sysctl.write_text("1")
    assert forwarding.restore("tvx1", (), tmp_path, str(sysctl)) is None
    assert sysctl.read_text() == "1" and note.exists()


@pytest.mark.parametrize("text", ["", "{", '{"previous": "0"}', '["x"]'])
def test_an_unreadable_note_is_dropped_and_nothing_written(sysctl: Path, tmp_path: Path, text: str) -> None:
    note = forwarding.note_path("tvx1", tmp_path)
    note.write_text(text)
    sysctl.write_text("1")
    assert forwarding.restore("tvx1", (), tmp_path, str(sysctl)) is None
    assert sysctl.read_text() == "1" and not note.exists()
