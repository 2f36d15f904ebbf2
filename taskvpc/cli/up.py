"""``taskvpc up``: the control plane on uvicorn and, as root, the local agent beside it.

Start: the listening socket is bound first, so a busy port (or a prefix another agent holds) is refused
before anything is printed or started; then the database, the agent, and the banner.

Stop, on SIGINT or SIGTERM (handlers installed explicitly: a background job may start with SIGINT
ignored): the agent first (never restarted while stopping), then the agents' waiting long polls are
answered and uvicorn shuts down, so no request is cut off with a traceback. A second signal stops at
once. Running tasks stay for the next agent to adopt (the count is printed) unless
``--cleanup-on-exit`` asked for ``taskvpc down``'s teardown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from taskvpc.cli import config

_ACCOUNT_ID = re.compile(r"\d{12}")
DEFAULT_NET_PREFIX = "tvpc"
log = logging.getLogger("taskvpc.up")


def add_arguments(up: argparse.ArgumentParser) -> None:
    up.add_argument("--host", default=config.DEFAULT_HOST, help="address the control plane listens on")
    up.add_argument("--port", type=int, default=config.DEFAULT_PORT, help="port the control plane listens on")
    up.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="database, credentials, agent state (default: $TASKVPC_HOME, else /var/lib/taskvpc as root, "
        "else ~/.local/share/taskvpc)",
    )
    up.add_argument("--database-url", default=None, help="default: SQLite in the state dir")
    up.add_argument("--no-agent", action="store_true", help="serve the control plane only")
    up.add_argument("--allow-reset", action="store_true", help="enable POST /_taskvpc/reset (tests)")
    up.add_argument(
        "--region", default=config.DEFAULT_REGION, help="region whose default VPC is created at start-up"
    )
    up.add_argument("--instance-type", default=None, help="EC2 instance type the local agent presents")
    up.add_argument(
        "--max-task-enis",
        type=int,
        default=None,
        help="awsvpc tasks the local agent may host (default: as many as this host's memory holds, at least"
        " 1024, without --instance-type, else the type's limit)",
    )
    up.add_argument(
        "--cpu",
        type=int,
        default=None,
        help="CPU units the local agent registers (default: 1024 per core of this host)",
    )
    up.add_argument(
        "--memory",
        type=int,
        default=None,
        help="MiB of memory the local agent registers (default: this host's RAM minus 256)",
    )
    up.add_argument(
        "--runtime",
        default="auto",
        choices=("auto", "runc", "process"),
        help="container runtime of the local agent (auto: runc where installed, else process)",
    )
    up.add_argument(
        "--net-prefix",
        default=default_net_prefix(),
        help="name prefix of the local agent's namespaces and links (cgroup: taskvpc-<prefix>, or taskvpc "
        "for tvpc)",
    )
    up.add_argument(
        "--cleanup-on-exit",
        action="store_true",
        help="on stop, stop every task and remove its network as 'taskvpc down' does",
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
        "--host-loss-window",
        type=_seconds,
        default=5.0,
        help="seconds an EC2 instance's host (its namespace) may be gone before the instance is lost: "
        "terminated, its tasks stopped and replaced elsewhere",
    )
    up.add_argument(
        "--attachment-timeout",
        type=_seconds,
        default=180.0,
        help="seconds a task ENI may wait for its agent before the task fails",
    )
    up.add_argument("--log-level", default="info", help="logging level")


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def default_net_prefix() -> str:
    """``$TASKVPC_NET_PREFIX`` (a test suite's, or a second instance's), else ``tvpc``."""
    return os.environ.get("TASKVPC_NET_PREFIX") or DEFAULT_NET_PREFIX


def bind(host: str, port: int) -> socket.socket:
    """The control plane's listening socket (OSError when the address is taken or not ours)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def taskvpc_command() -> str:
    """How to run ``taskvpc`` from a shell: the bare name when the PATH finds this one, else its path."""
    mine = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    found = shutil.which("taskvpc")
    if found is not None and (mine is None or Path(found).resolve() == mine):
        return "taskvpc"
    if mine is not None and mine.name == "taskvpc" and mine.exists():
        return shlex.quote(str(mine))
    return shlex.quote(str(Path(sys.executable).parent / "taskvpc"))


def _agent_arguments(args: argparse.Namespace) -> list[str]:
    # --fargate-capacity: the machine's own Fargate capacity
    extra = ["--runtime", args.runtime, "--net-prefix", args.net_prefix, "--fargate-capacity"]
    if args.instance_type:
        extra += ["--instance-type", args.instance_type]
    if args.max_task_enis is not None:
        extra += ["--max-task-enis", str(args.max_task_enis)]
    elif not args.instance_type:
        # A developer's host has no EC2 ENI limit; the kernel holds thousands of task networks.
        from taskvpc.cli.local_agent import machine_task_enis

        extra += ["--max-task-enis", str(machine_task_enis())]
    if args.cpu is not None:
        extra += ["--cpu", str(args.cpu)]
    if args.memory is not None:
        extra += ["--memory", str(args.memory)]
    return extra


def _quiet_server(server_config: Any) -> Any:
    """uvicorn's server without its own signal handling (``up`` installs its own, see the docstring)."""
    import uvicorn

    class QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer(server_config)


class Stopper:
    """What a signal does: the agent first, then the waiting polls, then the server; twice: at once."""

    def __init__(self, server: Any, agent: Any, notifier: Any) -> None:
        self.server = server
        self.agent = agent
        self.notifier = notifier
        self.signal: int | None = None
        self._task: asyncio.Task[None] | None = None

    def request(self, signum: int) -> None:
        if self.signal is not None:
            print("taskvpc: stopping now", file=sys.stderr)
            self.server.force_exit = True
            self.server.should_exit = True
            return
        self.signal = signum
        print(f"taskvpc: {signal.Signals(signum).name}: stopping", file=sys.stderr)
        self._task = asyncio.get_running_loop().create_task(self._stop())

    async def _stop(self) -> None:
        try:
            if self.agent is not None:
                await asyncio.to_thread(self.agent.stop)
        finally:
            self.notifier.close()
            self.server.should_exit = True


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from taskvpc.agent.gctune import settle_after_startup
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
    # a signal while starting (migrations, the agent) is kept, and stops the server once it serves
    early: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: early.append(number))
    with_agent = not args.no_agent and os.geteuid() == 0
    if with_agent and (busy := _prefix_busy(args.net_prefix)):
        print(f"taskvpc: {busy}: stop it or pick another --net-prefix", file=sys.stderr)
        return 1
    try:
        listener = bind(args.host, args.port)
    except OSError as exc:
        hint = " (another 'taskvpc up'? pick another --port)" if exc.errno == errno.EADDRINUSE else ""
        print(f"taskvpc: cannot listen on {args.host}:{args.port}: {exc.strerror}{hint}", file=sys.stderr)
        return 1
    state_dir: Path = args.state_dir or config.default_state_dir()
    try:
        for note in config.ensure_private_state_dir(state_dir):
            print(f"taskvpc: {note}", file=sys.stderr)
    except config.StateDirError as error:
        print(f"taskvpc: {error}", file=sys.stderr)
        listener.close()
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
        control_plane,
        reconcile.build_runner(database, control_plane.context, reconcile_settings),
        region=args.region,
    )
    agent = None
    if not args.no_agent and not with_agent:
        print("taskvpc: not root, so no agent can run here: serving the control plane only", file=sys.stderr)
    elif with_agent:
        from taskvpc.cli.instances import ensure_local_underlay
        from taskvpc.cli.local_agent import LocalAgent

        agent_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        agent_endpoint = f"http://{agent_host}:{args.port}"
        # on the underlay as the EC2 instances are: its tasks and theirs share VPC subnets (instances.py)
        arguments = _agent_arguments(args)
        underlay = ensure_local_underlay(args.net_prefix, state_dir)
        if underlay is None:
            print(
                "taskvpc: the local agent is not on the underlay: its tasks reach no instance's",
                file=sys.stderr,
            )
        else:
            arguments += ["--underlay-address", underlay[0], "--underlay-netns", underlay[1]]
        agent = LocalAgent(agent_endpoint, state_dir, credentials, args.region, arguments)
        print(
            f"taskvpc: local agent (pid {agent.process.pid}, prefix {args.net_prefix}) joins cluster "
            "'default'",
            file=sys.stderr,
        )
    hosts = _instance_hosts(args, state_dir, credentials, control_plane, database) if with_agent else None
    command = taskvpc_command()
    state_flag = f" --state-dir {shlex.quote(str(state_dir))}"
    print(f"taskvpc: control plane on {endpoint} (state in {state_dir})", file=sys.stderr)
    print(f'taskvpc: eval "$({command} env{state_flag})" to use it; Ctrl-C stops', file=sys.stderr)
    limits = Limits()
    server = _quiet_server(
        uvicorn.Config(
            app,
            loop="uvloop",
            # httptools with the head, body, time and connection limits an unauthenticated peer meets.
            http=guarded_protocol(limits),
            ws="none",
            timeout_keep_alive=int(limits.keep_alive_timeout),
            lifespan="on",
            access_log=False,
            log_level="warning",
            # Other hosts' agents' long polls are answered at once on stop; anything else gets 2 s.
            timeout_graceful_shutdown=2,
        )
    )
    stopper = Stopper(server, agent, control_plane.notifier)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopper.request, signum)
        if early:
            stopper.request(early[0])
        await server.serve(sockets=[listener])

    settle_after_startup()  # the app, its tables and compiled statements live on: no collection walks them
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve())
    finally:
        if hosts is not None:
            hosts.stop()  # EC2 instances' agents; their hosts stay for the next up (or down)
        if agent is not None:
            agent.stop()
        listener.close()
        database.dispose()
    if agent is not None:
        _after_stop(args, state_dir, command)
    print("taskvpc: stopped", file=sys.stderr)
    return 0


def _instance_hosts(
    args: argparse.Namespace, state_dir: Path, credentials: Any, control_plane: Any, database: Any
) -> Any:
    """The supervisor of EC2 instances' hosts (taskvpc/cli/instances.py); on PostgreSQL it supervises
    only while it holds the lead (several ``up`` may share the store, one supervises)."""
    import time

    from taskvpc.cli.instances import InstanceHosts, Launch
    from taskvpc.control.reconcile import AdvisoryLocks

    target = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    launch = Launch(args.port, state_dir, args.net_prefix, credentials, args.region, args.runtime, target)
    return InstanceHosts(
        launch,
        lambda region: control_plane.context(region, time.time()),
        loss_window=args.host_loss_window,
        leadership=None if database.is_sqlite else AdvisoryLocks(database.url),
    )


def _prefix_busy(prefix: str, patience: float = 10.0) -> str | None:
    """Why no agent of ``prefix`` can start here, if so; an agent that is still stopping (its ``up``
    was killed a moment ago) gets ``patience`` seconds to let go."""
    import time

    from taskvpc.agent.prefix import PrefixBusy, prefix_lock

    deadline = time.monotonic() + patience
    while True:
        try:
            with prefix_lock(prefix):
                return None
        except PrefixBusy as exc:
            if time.monotonic() > deadline:
                return str(exc)
            time.sleep(0.2)
        except OSError:
            return None  # no /run to lock in: the agent says so itself


def _after_stop(args: argparse.Namespace, state_dir: Path, command: str) -> None:
    from taskvpc.agent.teardown import Scope, scan, teardown

    scope = Scope(args.net_prefix, state_dir)
    if args.cleanup_on_exit:
        from taskvpc.cli.down import record_stopped
        from taskvpc.cli.instances import remove_all

        removed = remove_all(args.net_prefix, state_dir)
        print(f"taskvpc: --cleanup-on-exit: {removed} instance host(s) removed", file=sys.stderr)

        result = teardown(scope)
        print(f"taskvpc: --cleanup-on-exit: {summary(result.found)} removed", file=sys.stderr)
        for restored in result.restored:
            print(f"taskvpc: {restored}", file=sys.stderr)
        for problem in result.problems:
            print(f"taskvpc: not removed: {problem}", file=sys.stderr)
        print(f"taskvpc: {record_stopped(state_dir, args.database_url)}", file=sys.stderr)
        return
    count = len(scan(scope).task_ids)
    if count:
        down = f"{command} down --state-dir {shlex.quote(str(state_dir))}"
        if args.net_prefix != default_net_prefix():
            down += f" --net-prefix {args.net_prefix}"
        print(
            f"taskvpc: {count} task(s) keep running for the next 'taskvpc up' to adopt; "
            f"'{down}' stops them and removes their networks",
            file=sys.stderr,
        )


def summary(found: Any) -> str:
    counts = [
        (len(found.task_ids), "task(s)"),
        (len(found.processes), "process(es)"),
        (len(found.namespaces), "namespace(s)"),
        (len(found.host_links), "host link(s)"),
        (len(found.mounts), "mount(s)"),
        (len(found.cgroups), "cgroup(s)"),
    ]
    return ", ".join(f"{n} {what}" for n, what in counts if n) or "nothing"
