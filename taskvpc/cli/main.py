"""The ``taskvpc`` command: ``up`` runs the control plane, ``env`` prints the AWS environment for it."""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import sys
from pathlib import Path

from taskvpc.cli import config, image as image_cli

_ACCOUNT_ID = re.compile(r"\d{12}")
LOCAL_MAX_TASK_ENIS = 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taskvpc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the control plane (and, as root, the local agent)")
    up.add_argument("--host", default=config.DEFAULT_HOST)
    up.add_argument("--port", type=int, default=config.DEFAULT_PORT)
    up.add_argument("--state-dir", type=Path, default=None)
    up.add_argument("--database-url", default=None, help="default: SQLite in the state dir")
    up.add_argument("--no-agent", action="store_true", help="serve the control plane only")
    up.add_argument("--allow-reset", action="store_true", help="enable POST /_taskvpc/reset (tests)")
    up.add_argument(
        "--region", default=config.DEFAULT_REGION, help="region whose default VPC is created at start-up"
    )
    up.add_argument("--instance-type", default=None, help="instance type the local agent presents")
    up.add_argument("--max-task-enis", type=int, default=None, help="awsvpc tasks the local agent may host")
    up.add_argument(
        "--runtime",
        default="auto",
        choices=("auto", "runc", "process"),
        help="container runtime of the local agent (default auto: runc where installed, else process)",
    )
    up.add_argument(
        "--net-prefix", default=None, help="name prefix of the local agent's namespaces and links"
    )
    up.add_argument(
        "--stopped-task-retention",
        type=_seconds,
        default=3600.0,
        help="seconds a stopped task stays in DescribeTasks/ListTasks (ECS: at least an hour)",
    )
    up.add_argument(
        "--agent-timeout",
        type=_seconds,
        default=60.0,
        help="seconds without a poll after which agentConnected is false (keep it above 30)",
    )
    up.add_argument(
        "--attachment-timeout",
        type=_seconds,
        default=180.0,
        help="seconds a task ENI may wait for its agent before the task fails",
    )
    up.add_argument("--log-level", default="info")

    env = commands.add_parser("env", help="print exports that point the aws CLI and SDKs at taskvpc")
    env.add_argument("--state-dir", type=Path, default=None)
    env.add_argument("--region", default=None)
    env.add_argument("--endpoint", default=None)

    commands.add_parser("agent", help="run an agent on this host (taskvpc agent --help)", add_help=False)

    logs = commands.add_parser("logs", help="print a task's container output (on the host that ran it)")
    logs.add_argument("task", help="task id or ARN")
    logs.add_argument("container", nargs="?", default=None)
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new output until the containers end"
    )
    logs.add_argument("--state-dir", type=Path, default=None)

    demo = commands.add_parser("demo", help="run the seed's walkthrough against a running 'taskvpc up'")
    demo.add_argument("--state-dir", type=Path, default=None)
    demo.add_argument("--region", default=config.DEFAULT_REGION)
    demo.add_argument("--keep", action="store_true", help="leave the two tasks running")
    image_cli.add_parser(commands)

    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["agent"]:
        from taskvpc.agent.main import main as agent_main

        return agent_main(arguments[1:])
    args = parser.parse_args(arguments)
    if args.command == "up":
        return _up(args)
    if args.command == "image":
        return image_cli.run(args)
    if args.command == "logs":
        return _logs(args)
    if args.command == "demo":
        from taskvpc.cli.demo import main as demo_main

        return demo_main(args.state_dir or config.default_state_dir(), args.region, args.keep)
    return _env(args)


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


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


def _up(args: argparse.Namespace) -> int:
    import uvicorn

    from taskvpc.api.app import ControlPlane, Settings
    from taskvpc.api.asgi import Application
    from taskvpc.api.limits import Limits
    from taskvpc.api.server import guarded_protocol
    from taskvpc.control import reconcile
    from taskvpc.store.db import Database, sqlite_url

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    account_id = config.account_id()
    if not _ACCOUNT_ID.fullmatch(account_id):
        print(f"taskvpc: TASKVPC_ACCOUNT_ID must be 12 digits, not {account_id!r}", file=sys.stderr)
        return 2
    state_dir: Path = args.state_dir or config.default_state_dir()
    try:
        for note in config.ensure_private_state_dir(state_dir):
            print(f"taskvpc: {note}", file=sys.stderr)
    except config.StateDirError as error:
        print(f"taskvpc: {error}", file=sys.stderr)
        return 2
    credentials = config.load_or_create_credentials(state_dir)
    database = Database(args.database_url or sqlite_url(state_dir))
    database.migrate()
    endpoint = f"http://{args.host}:{args.port}"
    config.write_server_file(state_dir, endpoint)
    settings = Settings(
        account_id=account_id,
        access_key_id=credentials.access_key_id,
        secret_access_key=credentials.secret_access_key,
        allow_reset=args.allow_reset,
    )
    control_plane = ControlPlane(settings, database)
    control_plane.prepare_region(args.region)  # other regions get theirs on first use
    reconcile_settings = reconcile.Settings(
        stopped_task_retention=args.stopped_task_retention,
        agent_timeout=args.agent_timeout,
        attachment_timeout=args.attachment_timeout,
    )
    app = Application(
        control_plane, reconcile.build_runner(database, control_plane.context, reconcile_settings)
    )
    agent = None
    if not args.no_agent and os.geteuid() != 0:
        print("taskvpc: not root, so no agent can run here: serving the control plane only", file=sys.stderr)
    elif not args.no_agent:
        from taskvpc.cli.local_agent import LocalAgent

        agent_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        extra = ["--runtime", args.runtime, "--fargate-capacity"]  # the machine's own Fargate capacity
        if args.net_prefix:
            extra += ["--prefix", args.net_prefix]
        if args.instance_type:
            extra += ["--instance-type", args.instance_type]
        if args.max_task_enis is not None:
            extra += ["--max-task-enis", str(args.max_task_enis)]
        elif not args.instance_type:
            # A developer's host has no EC2 ENI limit; the kernel holds thousands of task networks.
            extra += ["--max-task-enis", str(LOCAL_MAX_TASK_ENIS)]
        agent = LocalAgent(f"http://{agent_host}:{args.port}", state_dir, credentials, args.region, extra)
        print(f"taskvpc: local agent (pid {agent.process.pid}) joins cluster 'default'", file=sys.stderr)
    print(f"taskvpc: control plane on {endpoint} (state in {state_dir})", file=sys.stderr)
    print(
        f'taskvpc: eval "$(taskvpc env --state-dir {shlex.quote(str(state_dir))})" to use it', file=sys.stderr
    )
    limits = Limits()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            loop="uvloop",
            # httptools with the head, body, time and connection limits an unauthenticated peer meets.
            http=guarded_protocol(limits),
            ws="none",
            timeout_keep_alive=int(limits.keep_alive_timeout),
            lifespan="on",
            access_log=False,
            log_level="warning",
            # Agents' long polls (up to 30 s) must not hold a shutdown up: cut them after 2 s.
            timeout_graceful_shutdown=2,
        )
    )
    try:
        server.run()
    finally:
        if agent is not None:
            agent.stop()
        database.dispose()
    return 0


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
