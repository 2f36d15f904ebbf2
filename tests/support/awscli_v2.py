"""The AWS CLI v2 (Debian's ``awscli``, /usr/bin/aws), for what only v2 has: ``aws logs tail``.

The venv's and pyenv's ``aws`` is v1, which has no ``logs tail``; Debian's package puts v2 at /usr/bin/aws
without changing what ``aws`` resolves to. v2.9.19 predates ``AWS_ENDPOINT_URL`` (2.13), so the endpoint
goes on the command line; everything else comes from the server's CLI environment.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Protocol

AWS_V2 = Path("/usr/bin/aws")
MISSING = "no AWS CLI v2 at /usr/bin/aws (Debian package awscli; `sudo make setup` installs it)"


def available() -> bool:
    return os.access(AWS_V2, os.X_OK)


class CliServer(Protocol):
    endpoint: str

    def aws_cli_env(self, region: str = ...) -> dict[str, str]: ...


def argv(server: CliServer, *args: str) -> list[str]:
    return [str(AWS_V2), "--endpoint-url", server.endpoint, *args]


def run(server: CliServer, *args: str, check: bool = True, **popen: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv(server, *args),
        env=server.aws_cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        **popen,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"aws (v2) {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result
