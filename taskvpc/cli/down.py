"""``taskvpc down``: stop every task of a prefix and remove everything taskvpc made for it on this host.

The host is searched, not the state dir (``taskvpc/agent/teardown.py``), so a damaged or deleted state
dir still comes down. Then the control plane's record follows (:func:`record_stopped`): the tasks of
the local instance and of every EC2 instance's host are stopped in its database as a StopTask and the
agent's STOPPED report would, so the next ``taskvpc up`` does not start them again (it boots the
instances that were ``running``, empty). ``--purge`` also deletes the state dir (database,
credentials, images), after every mount below it is gone. It refuses while an agent of the prefix
runs: stop ``taskvpc up`` first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from taskvpc.cli import config
from taskvpc.cli.up import default_net_prefix, summary


def add_arguments(down: argparse.ArgumentParser) -> None:
    down.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the state dir 'taskvpc up' used (default: as for up)",
    )
    down.add_argument("--net-prefix", default=default_net_prefix(), help="the name prefix 'taskvpc up' used")
    down.add_argument(
        "--database-url", default=None, help="the one 'taskvpc up' used (default: SQLite in the state dir)"
    )
    down.add_argument("--purge", action="store_true", help="also delete the state dir")
    down.add_argument(
        "--grace", type=float, default=3.0, help="seconds between SIGTERM and SIGKILL of the tasks"
    )


def run(args: argparse.Namespace) -> int:
    from taskvpc.agent.prefix import PrefixBusy, prefix_lock
    from taskvpc.agent.teardown import Scope, teardown

    if os.geteuid() != 0:
        print("taskvpc down: needs root (namespaces, links, other users' processes)", file=sys.stderr)
        return 1
    state_dir: Path = args.state_dir or config.default_state_dir()
    try:
        with prefix_lock(args.net_prefix):  # held while we work: no agent of the prefix starts meanwhile
            from taskvpc.cli.instances import remove_all

            instances = remove_all(args.net_prefix, state_dir)  # EC2 instances' hosts and their tasks
            print(f"taskvpc down: {instances} instance host(s) removed", file=sys.stderr)
            result = teardown(Scope(args.net_prefix, state_dir), grace=args.grace)
    except PrefixBusy as exc:
        print(f"taskvpc down: {exc}: stop 'taskvpc up' (or that agent) first", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"taskvpc down: {exc}", file=sys.stderr)
        return 2
    print(f"taskvpc down: prefix {args.net_prefix}: {summary(result.found)} removed", file=sys.stderr)
    for restored in result.restored:
        print(f"taskvpc down: {restored}", file=sys.stderr)
    for problem in result.problems:
        print(f"taskvpc down: not removed: {problem}", file=sys.stderr)
    left = result.left
    if left is not None and not left.empty():
        print(f"taskvpc down: still there: {summary(left)}", file=sys.stderr)
        return 1
    if not args.purge:
        print(f"taskvpc down: {record_stopped(state_dir, args.database_url)}", file=sys.stderr)
    if args.purge and state_dir.exists():
        shutil.rmtree(state_dir)
        print(f"taskvpc down: removed {state_dir}", file=sys.stderr)
    return 0


STOP_REASON = "taskvpc down: stopped on the host"  # taskvpc's own


def record_stopped(state_dir: Path, database_url: str | None) -> str:
    """Stop the tasks of every host of ``state_dir`` (the local agent's, and each EC2 instance's) in the
    control plane's database; what was done. The instances stay ``running``: the next ``taskvpc up``
    boots their hosts again, with no task to start (``taskvpc/cli/instances.py``)."""
    from taskvpc.agent.state import STATE_FILE, load_state
    from taskvpc.store.db import Database, sqlite_url

    agent_dirs = [state_dir / "agent", *sorted((state_dir / "instances").glob("*/agent"))]
    arns = [load_state(d).container_instance_arn for d in agent_dirs if (d / STATE_FILE).exists()]
    url = database_url or (sqlite_url(state_dir) if (state_dir / "taskvpc.db").exists() else None)
    if not any(arns) or url is None:
        return "no local container instance on record: the control plane's tasks were left as they are"
    database = Database(url)
    try:
        return "; ".join(_record_host(database, arn) for arn in arns if arn is not None)
    finally:
        database.dispose()


def _record_host(database: Any, arn: str) -> str:
    import time

    from taskvpc.api.app import ControlPlane, Settings
    from taskvpc.control import agent as agent_api
    from taskvpc.control.ecs import tasks as ecs_tasks
    from taskvpc.domain.errors import ClientError
    from taskvpc.store import reconcile_repo, tasks_repo

    region, instance_id = arn.split(":")[3], arn.rsplit("/", 1)[-1]
    try:
        plane = ControlPlane(Settings(config.account_id(), "", "", False), database)
        ctx = plane.context(region, time.time())
        with database.read() as conn:
            tasks = tasks_repo.tasks_on_instance(conn, instance_id)
        reports = []
        for task in tasks:
            with contextlib.suppress(ClientError):  # a task StopTask no longer finds is stopped already
                ecs_tasks.stop_task(
                    ctx, {"cluster": task["cluster"], "task": task["arn"], "reason": STOP_REASON}
                )
            containers = [{"name": c["name"], "status": "STOPPED"} for c in task["spec"]["containers"]]
            reports.append({"taskArn": task["arn"], "knownStatus": "STOPPED", "containers": containers})
        if reports:
            agent_api.report(ctx, instance_id, {"tasks": reports})
        with database.transaction() as conn:  # no agent runs here now: the instance is disconnected
            reconcile_repo.mark_disconnected(conn, instance_id, heard_before=time.time() + 1)
    except ClientError as exc:
        return f"the control plane's record of {arn} was not updated ({exc})"
    return f"{len(reports)} task(s) recorded STOPPED on {arn}"
