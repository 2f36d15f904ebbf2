"""A real ``taskvpc up`` process per store backend: what the in-process tests cannot show.

The smoke test walks a new user's first minutes through real HTTP and the real ``aws`` CLI; the others
need the process itself (kill -9, ``taskvpc env`` reading the state directory).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

from tests.integration.server import ACCOUNT_ID, VENV_BIN, TaskvpcServer


def test_smoke_over_real_http(live_api: TaskvpcServer) -> None:
    api = live_api
    identity = json.loads(api.aws("sts", "get-caller-identity").stdout)
    assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT_ID}:root"
    ecs = api.client("ecs")
    ecs.create_cluster(clusterName="smoke")
    assert ecs.describe_clusters(clusters=["smoke"])["clusters"][0]["status"] == "ACTIVE"
    vpcs = api.client("ec2").describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    assert len(vpcs) == 1
    # A service taskvpc does not serve: its own CLI command shows a readable error.
    listed = api.aws("s3", "ls", check=False)
    assert listed.returncode != 0
    assert (
        "(NotImplemented) when calling the ListBuckets operation: taskvpc does not serve s3" in listed.stderr
    )


def test_env_then_get_caller_identity(live_api: TaskvpcServer) -> None:
    api = live_api
    env = {**api.env(), "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    script = f'eval "$(taskvpc env --state-dir {api.state_dir})" && aws sts get-caller-identity'
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    identity = json.loads(result.stdout)
    assert identity["Account"] == ACCOUNT_ID
    assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT_ID}:root"


def test_kill_9_loses_no_acknowledged_write(live_api: TaskvpcServer) -> None:
    api = live_api
    ecs = api.client("ecs")
    acknowledged: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        client = api.client("ecs")
        while not stop.is_set():
            try:
                revision = client.register_task_definition(
                    family="durable",
                    containerDefinitions=[{"name": "c", "image": "busybox", "memory": 32}],
                )["taskDefinition"]["revision"]
            except Exception:  # the server died under us: that write was never acknowledged
                return
            acknowledged.append(revision)

    ecs.create_cluster(clusterName="before-crash")
    thread = threading.Thread(target=writer)
    thread.start()
    while len(acknowledged) < 25:
        thread.join(0.01)
    api.kill(signal.SIGKILL)
    stop.set()
    thread.join(30)
    api.start()

    ecs = api.client("ecs")
    assert ecs.describe_clusters(clusters=["before-crash"])["clusters"][0]["status"] == "ACTIVE"
    listed = [
        int(arn.rpartition(":")[2])
        for page in ecs.get_paginator("list_task_definitions").paginate(familyPrefix="durable")
        for arn in page["taskDefinitionArns"]
    ]
    assert set(acknowledged) <= set(listed)
    assert listed == list(range(1, len(listed) + 1))
