"""environmentFiles: ECS's line rules, precedence, and the honest failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskvpc.agent import envfiles
from taskvpc.agent.taskplan import EnvironmentFile


def test_lines_are_read_as_ecs_reads_them() -> None:
    text = (
        "# a comment\n"
        "A=1\n"
        "B = spaced \r\n"  # nothing trimmed but the carriage return
        "C=x=y\n"  # split at the first '='
        "EMPTY=\n"  # a value is required
        "=nokey\n"  # a name is required
        "no delimiter\n"
        " #not-a-comment=1\n"  # only a leading '#' is a comment
        'QUOTED="q"\n'  # quotes are kept
        "A=2\n"  # within a file the later line wins
        "LAST=no newline"
    )
    assert envfiles.parse_env_file(text) == {
        "A": "2",
        "B ": " spaced ",
        "C": "x=y",
        " #not-a-comment": "1",
        "QUOTED": '"q"',
        "LAST": "no newline",
    }


def test_environment_wins_and_the_first_file_wins_among_files() -> None:
    merged = envfiles.merge_environment(
        [("A", "env"), ("B", "env")],
        [{"B": "file1", "C": "file1"}, {"C": "file2", "D": "file2"}],
    )
    assert merged == (("A", "env"), ("B", "env"), ("C", "file1"), ("D", "file2"))


def test_host_files_are_read_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    first.write_text("X=1\n")
    second.write_text("X=2\nY=2\n")
    found = envfiles.read_env_files([EnvironmentFile(str(first)), EnvironmentFile(str(second))])
    assert found == [{"X": "1"}, {"X": "2", "Y": "2"}]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (
            "arn:aws:s3:::bucket/app.env",
            "ResourceInitializationError: failed to download env files: arn:aws:s3:::bucket/app.env: "
            "S3 is not available in taskvpc",
        ),
        (
            "relative/app.env",
            "ResourceInitializationError: failed to download env files: relative/app.env: "
            "not an S3 object ARN or an absolute path",
        ),
        ("/no/such/file.env", "ResourceInitializationError: failed to read env file /no/such/file.env: "),
    ],
)
def test_files_that_cannot_be_had_fail_the_task(value: str, reason: str) -> None:
    with pytest.raises(envfiles.EnvFileError) as info:
        envfiles.read_env_files([EnvironmentFile(value)])
    assert info.value.reason.startswith(reason)
