"""``environmentFiles``: variables from files, merged under the container's ``environment``.

ECS downloads each file from S3 and reads it line by line (amazon-ecs-agent
``agent/taskresource/envFiles/envfile.go``): a line starting with ``#`` is a comment; a line with ``=``
is split at the first ``=`` and used only when both sides are non-empty (nothing is trimmed or unquoted);
anything else is ignored; within one file a later line wins. Merging (``MergeEnvironmentVariablesFromEnvfiles``):
the ``environment`` parameter wins over every file, and among files the first one that sets a name wins.

taskvpc has no S3: a file given as an S3 object ARN fails the task honestly. As a taskvpc extension, an
absolute path on the agent's host is read directly (the ``type`` stays ``s3``, the only value the API
accepts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from taskvpc.agent.taskplan import EnvironmentFile

S3_ARN_PREFIX = "arn:"  # arn:aws:s3:::bucket/key (and the other partitions)


class EnvFileError(Exception):
    """An environment file cannot be read; ``reason`` is the task's stop reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_env_file(text: str) -> dict[str, str]:
    """``NAME=VALUE`` lines as ECS's agent reads them (see the module docstring)."""
    variables: dict[str, str] = {}
    for line in text.split("\n"):
        line = line.removesuffix("\r")  # Go's bufio.ScanLines drops a trailing carriage return
        if line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        if name and value:
            variables[name] = value
    return variables


def merge_environment(
    environment: Iterable[tuple[str, str]], files: Iterable[dict[str, str]]
) -> tuple[tuple[str, str], ...]:
    """``environment`` first (it wins), then each file's variables whose names are not set yet."""
    merged = list(environment)
    seen = {name for name, _ in merged}
    for variables in files:
        for name, value in variables.items():
            if name not in seen:
                seen.add(name)
                merged.append((name, value))
    return tuple(merged)


def _read_host_file(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def read_env_files(
    files: Sequence[EnvironmentFile], read: Callable[[str], str] = _read_host_file
) -> list[dict[str, str]]:
    """Each file's variables, in order. Raises :class:`EnvFileError` with the reason the task stops with."""
    found = []
    for env_file in files:
        value = env_file.value
        if value.startswith(S3_ARN_PREFIX):
            raise EnvFileError(  # unconfirmed: ECS's wording when a download fails
                f"ResourceInitializationError: failed to download env files: {value}: "
                "S3 is not available in taskvpc (give an absolute path on the container instance instead)"
            )
        if not value.startswith("/"):
            raise EnvFileError(  # unconfirmed
                f"ResourceInitializationError: failed to download env files: {value}: "
                "not an S3 object ARN or an absolute path on the container instance"
            )
        try:
            found.append(parse_env_file(read(value)))
        except OSError as exc:
            raise EnvFileError(  # unconfirmed
                f"ResourceInitializationError: failed to read env file {value}: {exc.strerror or exc}"
            ) from None
    return found
