#!/usr/bin/env python3
"""API throughput with policy enforcement on (an IAM user, an assumed-role session) against the root
key (never evaluated), on the real control plane in this process.

Each request is signed once and replayed: the loop measures the server's work (SigV4 verification,
credential resolution, policy evaluation, the handler, encoding), not a client's. Identities are
interleaved round by round so that machine noise hits them alike; the median requests per CPU-second of
this process over ``--repeat`` rounds is reported with each identity's ratio to root (CPU time, because
the machine is shared: wall-clock rates swing with other load). Goal: enforced >= 80% of root.

    .venv/bin/python bench/iam.py --seconds 3 --repeat 5 [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from taskvpc.api.app import ControlPlane, Settings
from taskvpc.control.ecs.clusters import create_cluster
from taskvpc.control.iam import policies, roles, users
from taskvpc.control.sts import assume_role
from taskvpc.store.db import Database, sqlite_url
from taskvpc.wire import sigv4
from taskvpc.wire.http import HttpRequest

ACCOUNT, REGION = "123456789012", "us-east-1"
ROOT_KEY, ROOT_SECRET = "AKIATASKVPCBENCHROOT", "bench-root-secret-0000000000000000000000"
TARGET = "AmazonEC2ContainerServiceV20141113."
# A realistic policy: a few statements, wildcards, a condition, a deny that does not match.
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["ecs:Describe*", "ecs:List*"], "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": "ec2:Describe*",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestedRegion": REGION}},
        },
        {"Effect": "Deny", "Action": "ecs:Delete*", "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": "iam:Get*",
            "Resource": f"arn:aws:iam::{ACCOUNT}:user/${{aws:username}}",
        },
    ],
}
OPERATIONS = {
    "DescribeClusters": ("ecs", {"clusters": ["bench-0", "bench-1"]}),
    "ListClusters": ("ecs", {}),
    "DescribeVpcs": ("ec2", {}),
}


def _request(
    service: str, operation: str, params: dict[str, Any], key: str, secret: str, token: str | None
) -> HttpRequest:
    if service == "ecs":
        body = json.dumps(params).encode()
        headers = {
            "host": "bench",
            "content-type": "application/x-amz-json-1.1",
            "x-amz-target": TARGET + operation,
        }
    else:
        body = f"Action={operation}&Version=2016-11-15".encode()
        headers = {"host": "bench", "content-type": "application/x-www-form-urlencoded; charset=utf-8"}
    request = HttpRequest("POST", "/", "", headers, body)
    return sigv4.sign_headers(
        request,
        access_key_id=key,
        secret=secret,
        region=REGION,
        service=service,
        now=datetime.now(UTC),
        session_token=token,
    )


def _setup(plane: ControlPlane) -> dict[str, tuple[str, str, str | None]]:
    ctx = plane.context(REGION, time.time())
    for name in ("bench-0", "bench-1"):
        create_cluster(ctx, {"clusterName": name})
    users.create_user(ctx, {"UserName": "bench"})
    policies.put_inline(ctx, "user", "bench", "p", json.dumps(POLICY))
    key = users.create_access_key(ctx, {"UserName": "bench"})["AccessKey"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}],
    }
    role = roles.create_role(ctx, {"RoleName": "bench", "AssumeRolePolicyDocument": json.dumps(trust)})[
        "Role"
    ]
    policies.put_inline(ctx, "role", "bench", "p", json.dumps(POLICY))
    creds = assume_role(ctx, {"RoleArn": role["Arn"], "RoleSessionName": "bench"})["Credentials"]
    return {
        "root": (ROOT_KEY, ROOT_SECRET, None),
        "user": (key["AccessKeyId"], key["SecretAccessKey"], None),
        "assumed-role": (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]),
    }


async def _measure(plane: ControlPlane, request: HttpRequest, seconds: float) -> float:
    """Requests per CPU-second of this process (the server's work; other load on the machine barely
    moves it, unlike wall-clock ops/s)."""
    count, deadline = 0, time.perf_counter() + seconds
    started = time.process_time()
    while time.perf_counter() < deadline:
        for _ in range(20):
            response = await plane.handle_aws(request)
            if response.status != 200:
                raise SystemExit(f"unexpected {response.status}: {response.body[:300]!r}")
        count += 20
    return count / (time.process_time() - started)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="taskvpc-bench-iam-"))
    db = Database(args.database_url or sqlite_url(state))
    db.migrate()
    plane = ControlPlane(Settings(ACCOUNT, ROOT_KEY, ROOT_SECRET), db)
    plane.prepare_region(REGION)
    identities = _setup(plane)
    results: dict[str, dict[str, float]] = {}
    for operation, (service, params) in OPERATIONS.items():
        signed = {who: _request(service, operation, params, *cred) for who, cred in identities.items()}
        samples: dict[str, list[float]] = {who: [] for who in signed}
        for request in signed.values():  # warm caches and code paths
            await _measure(plane, request, 0.3)
        for round_ in range(args.repeat):
            order = list(signed)[round_ % 3 :] + list(signed)[: round_ % 3]
            for who in order:
                samples[who].append(await _measure(plane, signed[who], args.seconds))
        results[operation] = {who: statistics.median(values) for who, values in samples.items()}
    db.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    results = asyncio.run(_run(args))
    print(f"{'operation':<18}{'identity':<14}{'req/CPU-s':>10}{'vs root':>10}")
    for operation, by_who in results.items():
        for who, rate in by_who.items():
            print(f"{operation:<18}{who:<14}{rate:>10.0f}{rate / by_who['root']:>10.0%}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
