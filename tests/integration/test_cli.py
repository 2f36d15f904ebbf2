"""The `aws` CLI (its own driver, in process) and `taskvpc up`'s first start: a new user's first steps.

``taskvpc env`` against a running server is in test_live_server.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from tests.integration.server import ACCOUNT_ID, VENV_BIN, Server, TaskvpcServer

REPO = Path(__file__).resolve().parents[2]


def test_aws_cli_seed_example(api: Server) -> None:
    example = REPO / "examples" / "windows-simple-iis.json"
    registered = json.loads(
        api.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{example}").stdout
    )["taskDefinition"]
    assert registered["family"] == "windows-simple-iis"
    assert registered["revision"] == 1
    described = json.loads(
        api.aws("ecs", "describe-task-definition", "--task-definition", "windows-simple-iis:1").stdout
    )["taskDefinition"]
    assert described == registered
    assert described["networkMode"] == "awsvpc"
    assert described["containerDefinitions"][0]["portMappings"][0]["hostPort"] == 80


def test_aws_cli_linux_example_and_clusters(api: Server) -> None:
    example = REPO / "examples" / "linux-simple-web.json"
    api.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{example}")
    api.aws("ecs", "create-cluster", "--cluster-name", "cli")
    clusters = json.loads(api.aws("ecs", "list-clusters").stdout)["clusterArns"]
    assert clusters == [f"arn:aws:ecs:us-east-1:{ACCOUNT_ID}:cluster/cli"]
    failed = api.aws("ecs", "describe-task-definition", "--task-definition", "nope", check=False)
    assert failed.returncode != 0
    assert "(ClientException) when calling the DescribeTaskDefinition operation" in failed.stderr


def test_first_start_creates_private_credentials(tmp_path: Path) -> None:
    server = TaskvpcServer(tmp_path / "state")
    server.env = lambda: {  # type: ignore[method-assign]
        k: v for k, v in os.environ.items() if not k.startswith(("TASKVPC_", "AWS_"))
    }
    server.start()
    try:
        credentials = tmp_path / "state" / "credentials.json"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        saved = json.loads(credentials.read_text())
        assert saved["access_key_id"].startswith("AKIA") and len(saved["secret_access_key"]) == 40
        exports = subprocess.run(
            [str(VENV_BIN / "taskvpc"), "env", "--state-dir", str(tmp_path / "state")],
            env=server.env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"export AWS_ACCESS_KEY_ID={saved['access_key_id']}" in exports
        assert f"export AWS_ENDPOINT_URL={server.endpoint}" in exports
        env = {**server.env(), "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
        script = f"{exports}\naws sts get-caller-identity"
        result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["Account"] == "000000000000"
        # The same state dir keeps the same credentials across restarts.
        server.kill(signal.SIGTERM)
        server.start()
        assert json.loads(credentials.read_text()) == saved
    finally:
        server.stop()


def test_reset_is_refused_without_flag_or_signature(api: Server) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{api.endpoint}/_taskvpc/reset", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=10)
    assert excinfo.value.code == 403
