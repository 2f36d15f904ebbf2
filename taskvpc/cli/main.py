"""The ``taskvpc`` command: ``up`` runs the control plane, ``down`` removes what it made, ``env`` prints the
AWS environment for it."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from taskvpc.agent.helpformat import DefaultsHelpFormatter
from taskvpc.cli import config, down as down_cli, image as image_cli, up as up_cli

_FORMATTER = DefaultsHelpFormatter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taskvpc", description=__doc__, formatter_class=_FORMATTER)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser(
        "up", help="run the control plane (and, as root, the local agent)", formatter_class=_FORMATTER
    )
    up_cli.add_arguments(up)
    down = commands.add_parser(
        "down",
        help="stop every task of a prefix and remove its namespaces, links, routes, mounts, cgroups",
        formatter_class=_FORMATTER,
    )
    down_cli.add_arguments(down)

    env = commands.add_parser(
        "env", help="print exports that point the aws CLI and SDKs at taskvpc", formatter_class=_FORMATTER
    )
    env.add_argument("--state-dir", type=Path, default=None)
    env.add_argument("--region", default=None)
    env.add_argument("--endpoint", default=None)

    commands.add_parser("agent", help="run an agent on this host (taskvpc agent --help)", add_help=False)

    logs = commands.add_parser(
        "logs", help="print a task's container output (on the host that ran it)", formatter_class=_FORMATTER
    )
    logs.add_argument("task", help="task id or ARN")
    logs.add_argument("container", nargs="?", default=None)
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new output until the containers end"
    )
    logs.add_argument("--state-dir", type=Path, default=None)

    demo = commands.add_parser(
        "demo", help="run the seed's walkthrough against a running 'taskvpc up'", formatter_class=_FORMATTER
    )
    demo.add_argument("--state-dir", type=Path, default=None)
    demo.add_argument("--region", default=config.DEFAULT_REGION)
    demo.add_argument("--keep", action="store_true", help="leave the two tasks running")
    demo.add_argument(
        "--compare",
        action="store_true",
        help="first show two port-80 tasks conflicting in bridge mode (RESOURCE:PORTS)",
    )
    image_cli.add_parser(commands)

    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["agent"]:
        from taskvpc.agent.main import main as agent_main

        return agent_main(arguments[1:])
    args = parser.parse_args(arguments)
    if args.command == "up":
        return up_cli.run(args)
    if args.command == "down":
        return down_cli.run(args)
    if args.command == "image":
        return image_cli.run(args)
    if args.command == "logs":
        return _logs(args)
    if args.command == "demo":
        from taskvpc.cli.demo import main as demo_main

        return demo_main(args.state_dir or config.default_state_dir(), args.region, args.keep, args.compare)
    return _env(args)


def _logs(args: argparse.Namespace) -> int:
    from taskvpc.agent.runtime import read_logs

    state_dir: Path = args.state_dir or config.default_state_dir()
    task_id = args.task.rpartition("/")[2]
    if args.follow:
        return _follow_logs(state_dir / "agent" / "tasks" / task_id, args.container)
    try:
        sys.stdout.write(read_logs(state_dir / "agent", task_id, args.container))
    except (FileNotFoundError, KeyError, ValueError) as error:
        print(f"taskvpc logs: no output for task {task_id} here ({error})", file=sys.stderr)
        return 1
    return 0


def _follow_logs(task_dir: Path, container: str | None) -> int:
    """Print output as it comes (lines prefixed ``name | `` when following every container of the task),
    until each container has ended; containers that start later join in."""
    import time

    from taskvpc.agent.runtime.logs import LogFollower

    if not task_dir.is_dir():
        print(f"taskvpc logs: no task {task_dir.name} here", file=sys.stderr)
        return 1
    followers: dict[str, LogFollower] = {}
    partial: dict[str, bytes] = {}
    out = sys.stdout.buffer
    try:
        while True:
            names = (
                [container]
                if container
                else sorted(p.name for p in task_dir.iterdir() if (p / "log").exists())
            )
            for name in names:
                if name not in followers and (task_dir / name).is_dir():
                    followers[name] = LogFollower(task_dir / name)
            for name, follower in followers.items():
                data = partial.pop(name, b"") + follower.read()
                if container:
                    out.write(data)
                    continue
                *lines, rest = data.split(b"\n")
                out.writelines(name.encode() + b" | " + line + b"\n" for line in lines)
                if rest and follower.done:
                    out.write(name.encode() + b" | " + rest + b"\n")
                elif rest:
                    partial[name] = rest
            out.flush()
            if followers and all(f.done for f in followers.values()):
                return 0
            time.sleep(0.1)
    except KeyboardInterrupt:
        return 0
    finally:
        for follower in followers.values():
            follower.close()


def _env(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir or config.default_state_dir()
    credentials = config.read_credentials(state_dir)
    if credentials is None:
        print(f"taskvpc: no credentials in {state_dir}; run 'taskvpc up' first", file=sys.stderr)
        return 1
    region = args.region or os.environ.get("AWS_DEFAULT_REGION") or config.DEFAULT_REGION
    endpoint = args.endpoint or config.read_endpoint(state_dir)
    exports = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
        "AWS_DEFAULT_REGION": region,
    }
    for name, value in exports.items():
        print(f"export {name}={shlex.quote(value)}")
    # A session token from a real AWS login would be sent along and refused by taskvpc.
    print("unset AWS_SESSION_TOKEN AWS_SECURITY_TOKEN")
    return 0


if __name__ == "__main__":
    sys.exit(main())
