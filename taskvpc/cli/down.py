"""``taskvpc down``: stop every task of a prefix and remove everything taskvpc made for it on this host.

The host is searched, not the state dir (``taskvpc/agent/teardown.py``), so a damaged or deleted state
dir still comes down. ``--purge`` also deletes the state dir (database, credentials, images), after
every mount below it is gone. It refuses while an agent of the prefix runs: stop ``taskvpc up`` first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from taskvpc.cli import config
from taskvpc.cli.up import DEFAULT_NET_PREFIX, summary


def add_arguments(down: argparse.ArgumentParser) -> None:
    down.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the state dir 'taskvpc up' used (default: as for up)",
    )
    down.add_argument("--net-prefix", default=DEFAULT_NET_PREFIX, help="the name prefix 'taskvpc up' used")
    down.add_argument("--purge", action="store_true", help="also delete the state dir")
    down.add_argument(
        "--grace", type=float, default=3.0, help="seconds between SIGTERM and SIGKILL of the tasks"
    )


def run(args: argparse.Namespace) -> int:
    from taskvpc.agent.teardown import PrefixBusy, Scope, prefix_lock, teardown

    if os.geteuid() != 0:
        print("taskvpc down: needs root (namespaces, links, other users' processes)", file=sys.stderr)
        return 1
    state_dir: Path = args.state_dir or config.default_state_dir()
    try:
        with prefix_lock(args.net_prefix):  # held while we work: no agent of the prefix starts meanwhile
            result = teardown(Scope(args.net_prefix, state_dir), grace=args.grace)
    except PrefixBusy as exc:
        print(f"taskvpc down: {exc}: stop 'taskvpc up' (or that agent) first", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"taskvpc down: {exc}", file=sys.stderr)
        return 2
    print(f"taskvpc down: prefix {args.net_prefix}: {summary(result.found)} removed", file=sys.stderr)
    for problem in result.problems:
        print(f"taskvpc down: not removed: {problem}", file=sys.stderr)
    left = result.left
    if left is not None and not left.empty():
        print(f"taskvpc down: still there: {summary(left)}", file=sys.stderr)
        return 1
    if args.purge and state_dir.exists():
        shutil.rmtree(state_dir)
        print(f"taskvpc down: removed {state_dir}", file=sys.stderr)
    return 0
