"""``taskvpc agent``: register this host as a container instance, then run what the control plane wants.

``run_agent`` is the whole agent as one coroutine: register (retrying until the control plane answers),
fetch the desired state once and adopt/clean the host with it (``Engine.adopt``), then long-poll for
changes and apply each one within milliseconds, while the reporter sends known state back. Cancelling it
stops the agent but not the containers: the next agent adopts them. An instance the control plane marks
INACTIVE (deregistered) has every task stopped, after which ``run_agent`` returns.

What it registers (docs/agent-api.md ``register``):

* ``ecs.os-type`` ``linux``, ``ecs.os-family`` ``LINUX``, ``ecs.cpu-architecture`` (``x86_64``/``arm64``),
  ``ecs.instance-type`` (when given), ``ecs.availability-zone`` (from the register answer: the agent
  registers again once it knows it), ``ecs.capability.task-eni``;
* the capabilities the runtime honours (the real agent registers many more; a task definition whose
  ``requiresAttributes`` names one we cannot honour is then refused placement with ``ATTRIBUTE``, as ECS
  would). Both runtimes: ``docker-remote-api`` 1.17 (``user``), 1.18 (``awsvpc``, ``logConfiguration``),
  1.21 (``memoryReservation``), 1.25 (``initProcessEnabled``: under ``process`` the shim forwards
  signals and the command is never a namespace's PID 1), 1.29 (``healthCheck.startPeriod``);
  ``logging-driver.json-file`` (output is captured per container); ``logging-driver.awslogs``,
  ``execution-role-awslogs`` and 1.28 (log ``mode``/``max-buffer-size``): ``logshipper.py`` ships the
  output through the agent API and the control plane checks the execution role's ``logs:*`` permissions,
  so no credentials are needed on the host; ``container-health-check``;
  ``container-ordering``; ``network.container-port-range``. Not ``env-files.s3``: ECS's environment
  files are S3 objects, and there is no S3 here (the engine reads an absolute host path instead; an
  operator who wants that puts the attribute on the instance with PutAttributes). ``runc`` adds 1.19,
  ``privileged-container`` and ``docker-plugin.local`` (docker volumes with the local driver). With real
  networks (the task endpoints at 169.254.170.2, ``taskmeta_server``): ``task-iam-role`` (the control
  plane drops it when its credential vendor is switched off). Left out on purpose: ``execution-role-ecr-pull``
  (no execution-role credentials are used: images come from the local store), ``ecr-auth``, log drivers
  other than json-file and awslogs, secrets, private registry authentication, EFS/FSx, FireLens, App Mesh,
  ``docker-remote-api`` 1.24 (sysctls);
* with ``runc``, the examples' image (``busybox:latest``, also tagged as ECR Public's busybox) made from
  the host's ``busybox-static`` when the image store lacks it;
* resources ``CPU`` (``--cpu``, else 1024 per core), ``MEMORY`` (``--memory`` MiB, else RAM minus a
  reserve of 256 MiB), ``PORTS`` (ECS's defaults: 22, 2375, 2376, 51678, 51679), ``PORTS_UDP`` (none).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskvpc.agent import gctune, instance_config, limits, logshipper as logship, netplan
from taskvpc.agent.apirelay import ApiRelay
from taskvpc.agent.client import AgentApiError, AgentClient, AgentCredentials, CredentialsLike
from taskvpc.agent.desiredview import DesiredView
from taskvpc.agent.drivers.vxlan import VxlanDriver
from taskvpc.agent.engine import DataPlane, DesiredState, Engine, Reporter
from taskvpc.agent.flowlogs import FlowLogCollector
from taskvpc.agent.helpformat import DefaultsHelpFormatter
from taskvpc.agent.loadbalancers import LoadBalancers, mark as lb_mark
from taskvpc.agent.logshipper import LogShipper
from taskvpc.agent.overlay import Overlay
from taskvpc.agent.prefix import EXIT_PREFIX_BUSY, PrefixBusy, cgroup_parent, prefix_lock
from taskvpc.agent.probes import Prober
from taskvpc.agent.runtime import create_runtime, resolve_runtime
from taskvpc.agent.security import FirewallSync
from taskvpc.agent.state import AgentState, load_state, prepare_state_dir, save_state
from taskvpc.agent.taskmeta_server import TaskEndpoints, load_secret
from taskvpc.agentapi.credentials import CREDENTIALS
from taskvpc.agentapi.flowlogs import FlowRecords, records_to_wire
from taskvpc.agentapi.overlay import UNDERLAY_ATTRIBUTE
from taskvpc.agentapi.probes import results_to_wire
from taskvpc.agentapi.reports import Report

log = logging.getLogger("taskvpc.agent")


def _version() -> str:
    try:
        return importlib.metadata.version("taskvpc")
    except importlib.metadata.PackageNotFoundError:
        return "0"


DEFAULT_STATE_DIR = "/var/lib/taskvpc/agent"
DEFAULT_ENDPOINT = "http://127.0.0.1:4599"
DEFAULT_REGION = "us-east-1"
MEMORY_RESERVE_MIB = 256
RESERVED_PORTS = [22, 2375, 2376, 51678, 51679]
POLL_WAIT = 20.0

_C = "com.amazonaws.ecs.capability."
_E = "ecs.capability."
CAPABILITY_ATTRIBUTES: tuple[str, ...] = (
    _C + "docker-remote-api.1.17",
    _C + "docker-remote-api.1.18",
    _C + "docker-remote-api.1.21",
    _C + "docker-remote-api.1.25",
    _C + "docker-remote-api.1.29",
    _C + "logging-driver.json-file",
    _C + "logging-driver.awslogs",  # logshipper.py: through the agent API, no credentials on the host
    _C + "docker-remote-api.1.28",  # log options mode / max-buffer-size (what ECS derives 1.28 from)
    _E + "execution-role-awslogs",  # the control plane checks the execution role's logs:* permissions
    _E + "container-health-check",
    _E + "container-ordering",
    _E + "network.container-port-range",
    _E + "task-eni",
)
# What the runc runtime adds: images, cgroup limits, privileged containers, volumes with the local driver.
RUNC_CAPABILITY_ATTRIBUTES: tuple[str, ...] = (
    _C + "docker-remote-api.1.19",
    _C + "privileged-container",
    _E + "docker-plugin.local",
)


def cpu_architecture() -> str:
    machine = platform.machine().lower()
    return {"aarch64": "arm64", "arm64": "arm64", "amd64": "x86_64"}.get(machine, machine or "x86_64")


def memory_mib(reserve: int = MEMORY_RESERVE_MIB) -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return max(0, int(line.split()[1]) // 1024 - reserve)
    except OSError:
        pass
    return 0


def resources(
    reserve: int = MEMORY_RESERVE_MIB, cpu: int | None = None, memory: int | None = None
) -> dict[str, Any]:
    """What the instance registers; ``cpu``/``memory`` (``--cpu``/``--memory``) replace the host's."""
    return {
        "CPU": (os.cpu_count() or 1) * 1024 if cpu is None else cpu,
        "MEMORY": memory_mib(reserve) if memory is None else memory,
        "PORTS": list(RESERVED_PORTS),
        "PORTS_UDP": [],
    }


FARGATE_CAPACITY_ENV = "TASKVPC_FARGATE_CAPACITY"
UNDERLAY_ENV = "TASKVPC_UNDERLAY_ADDRESS"  # --underlay-address: registered, and the overlay's source
UNDERLAY_NETNS_ENV = "TASKVPC_UNDERLAY_NETNS"  # --underlay-netns: where that address and the sockets are


# What the agent's endpoints at 169.254.170.2 add (taskmeta_server): task role credentials. The control
# plane drops it at registration when its credential vendor is switched off (control/task_credentials.py).
TASK_ROLE_CAPABILITY_ATTRIBUTES: tuple[str, ...] = (_C + "task-iam-role",)


def attributes(
    instance_type: str | None,
    availability_zone: str | None,
    runtime: str = "process",
    endpoints: bool = False,
) -> dict[str, str | None]:
    attrs: dict[str, str | None] = {
        "ecs.os-type": "linux",
        "ecs.os-family": "LINUX",
        "ecs.cpu-architecture": cpu_architecture(),
    }
    if instance_type:
        attrs["ecs.instance-type"] = instance_type
    if availability_zone:
        attrs["ecs.availability-zone"] = availability_zone
    if os.environ.get(FARGATE_CAPACITY_ENV) == "1":
        attrs["taskvpc.fargate-capacity"] = None  # the control plane places FARGATE tasks here
    if os.environ.get(UNDERLAY_ENV):  # this host's VPC routers join the overlay (agent/overlay.py)
        attrs[UNDERLAY_ATTRIBUTE] = os.environ[UNDERLAY_ENV]
    for name in (*CAPABILITY_ATTRIBUTES, *(RUNC_CAPABILITY_ATTRIBUTES if runtime == "runc" else ())):
        attrs[name] = None
    for name in TASK_ROLE_CAPABILITY_ATTRIBUTES if endpoints else ():
        attrs[name] = None
    return attrs


def registration(
    state: AgentState,
    cluster: str,
    instance_type: str | None,
    max_task_enis: int | None,
    runtime: str,
    availability_zone: str | None,
    memory_reserve: int = MEMORY_RESERVE_MIB,
    capacity: tuple[int | None, int | None] = (None, None),
    endpoints: bool = False,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "cluster": cluster,
        "instanceId": state.instance_id,
        "hostname": socket.gethostname(),
        "resources": resources(memory_reserve, *capacity),
        "attributes": attributes(instance_type, availability_zone, runtime, endpoints),
        "agentVersion": f"taskvpc-{_version()}",
        "capabilities": [f"runtime:{runtime}"],
    }
    if instance_type:
        body["instanceType"] = instance_type
    if max_task_enis is not None:
        body["maxTaskEnis"] = max_task_enis
    return instance_config.CURRENT.apply(body)  # an EC2 instance's user data and launch


async def _register(
    client: AgentClient,
    state_dir: Path,
    state: AgentState,
    cluster: str,
    instance_type: str | None,
    max_task_enis: int | None,
    runtime: str,
    capacity: tuple[int | None, int | None] = (None, None),
    endpoints: bool = False,
) -> AgentState:
    zone = state.availability_zone if state.cluster == cluster else None
    body = registration(
        state, cluster, instance_type, max_task_enis, runtime, zone, capacity=capacity, endpoints=endpoints
    )
    answer = await client.register(body)
    if answer.availability_zone and answer.availability_zone != zone:
        az = answer.availability_zone
        body = registration(
            state, cluster, instance_type, max_task_enis, runtime, az, capacity=capacity, endpoints=endpoints
        )
        answer = await client.register(body)
    state = state.registered(cluster, answer.container_instance_arn, answer.availability_zone)
    save_state(state_dir, state)
    log.info(
        "registered container_instance_arn=%s availability_zone=%s instance_id=%s",
        answer.container_instance_arn,
        answer.availability_zone,
        state.instance_id,
    )
    return state


def _prepare_example_images(state_dir: Path) -> None:
    """The examples' busybox image (from the host's busybox-static), so they run with no registry."""
    from taskvpc.agent.images import ImageError, ImageStore
    from taskvpc.agent.images.busybox import ensure_example_images

    try:
        imported = ensure_example_images(ImageStore(state_dir / "images"))
    except (ImageError, OSError) as exc:
        log.warning("no example image: %s", exc)
        return
    if imported:
        log.info("example image imported as %s", ", ".join(imported))


def _parse(doc: Any) -> DesiredState | None:
    """A desired-state answer, or None (logged) when it cannot be read: the agent never acts on a
    half-understood answer (a task left out of it would be stopped) and never dies of one."""
    try:
        if not isinstance(doc, dict):
            raise TypeError(f"an answer is an object, not {type(doc).__name__}")
        state = DesiredState.from_wire(doc)
    except Exception as exc:
        log.error("unreadable desired state ignored: %r", exc)
        return None
    for group_id, error in state.skipped_rules():  # a newer control plane's rule kind, or nonsense
        log.warning("unreadable rule skipped group=%s error=%s", group_id, error)
    return state


async def _first_answer(client: AgentClient, instance_id: str) -> DesiredState:
    # after=-1: any generation is news, so the first answer always carries the full desired state
    # (adoption removes whatever it does not list, so it must never see an empty "unchanged" answer)
    wait = 0.0
    while True:
        answer = _parse(await client.desired(instance_id, -1, wait))
        if answer is not None and answer.changed:
            return answer
        wait = POLL_WAIT if answer is not None else 0.0
        if answer is None:
            await asyncio.sleep(1.0)


async def run_agent(
    endpoint: str,
    cluster: str,
    state_dir: str | os.PathLike[str],
    credentials: CredentialsLike,
    prefix: str = "tvpc",
    instance_type: str | None = None,
    max_task_enis: int | None = None,
    runtime: str = "auto",
    *,
    region: str = DEFAULT_REGION,
    network_driver: netplan.NetworkDriver | None = None,
    netns_paths: bool = True,
    host_access: bool = True,
    ready: Callable[[Engine], None] | None = None,
    cpu: int | None = None,
    memory: int | None = None,
) -> None:
    """Run the agent until cancelled (or until the instance is deregistered); see the module docstring.

    ``network_driver`` replaces the netlink driver (tests); ``netns_paths=False`` runs containers in the
    host's namespace (with a fake driver). ``ready`` is called with the engine once the first desired
    state has been adopted. ``cpu``/``memory`` replace the host's in the registered resources.
    """
    capacity = (cpu, memory)
    path = Path(state_dir).resolve()
    prepare_state_dir(path)
    state = load_state(path)
    runtime = resolve_runtime(runtime)
    # cgroups of this agent's containers: /taskvpc/<task>/<container>, or /taskvpc-<prefix>/... for an
    # agent with its own name prefix (tests, several agents on one host)
    parent = instance_config.CURRENT.cgroup_parent or cgroup_parent(prefix)  # an instance's: inside its own
    options = {"cgroup_parent": parent} if runtime == "runc" else {}
    the_runtime = create_runtime(runtime, path, **options)
    if runtime == "runc":
        _prepare_example_images(path)
    owned_driver = None
    firewall_driver = None
    firewall = None
    cfg = netplan.NetConfig(prefix=prefix)
    if network_driver is None:
        from taskvpc.agent.drivers.firewall import FirewallDriver
        from taskvpc.agent.drivers.netlink import NetlinkDriver

        owned_driver = network_driver = NetlinkDriver(cfg)
        firewall_driver = FirewallDriver(cfg)  # security groups are always enforced on real networks
        firewall = FirewallSync(firewall_driver, cfg)
    network = DataPlane(
        network_driver, cfg, host_access=host_access, netns_paths=netns_paths, firewall=firewall
    )
    client = AgentClient(endpoint, credentials, region)
    engine: Engine | None = None
    flows: FlowLogCollector | None = None
    lbs: LoadBalancers | None = None
    prober: Prober | None = None
    overlay: Overlay | None = None
    try:
        state = await _register(
            client,
            path,
            state,
            cluster,
            instance_type,
            max_task_enis,
            runtime,
            capacity,
            owned_driver is not None,
        )
        assert state.container_instance_arn is not None
        instance_id = state.container_instance_arn.rsplit("/", 1)[-1]

        async def send(report: Report) -> None:
            await client.report(instance_id, report)

        reporter = Reporter(send)
        engine = Engine(the_runtime, network, reporter)
        engine.logs = LogShipper(the_runtime.state_dir, logship.sender(client, lambda: instance_id))
        if owned_driver is not None:  # real router namespaces: the tasks' 169.254.170.2
            engine.endpoints = _endpoints(engine, cfg, path, client, region)
            flows = _flow_logs(client, lambda: instance_id, cfg, network, firewall)
            engine.spawn(flows.run(), "flow-logs")
            prober = Prober(
                network.netns_path, lambda r: client.report_entries(instance_id, results_to_wire(r))
            )
        engine.spawn(reporter.run(), "reporter")
        answer = await _first_answer(client, instance_id)
        if engine.endpoints is not None:
            engine.endpoints.set_credentials(answer[CREDENTIALS])
        if owned_driver is not None:  # load balancers run on real networks (agent/loadbalancers.py)
            lbs = LoadBalancers(network, cfg, path, lambda r: client.target_health(instance_id, r))
            lbs.want_vpcs(answer)
        if owned_driver is not None and os.environ.get(UNDERLAY_ENV):  # VPCs across hosts (VXLAN)
            vxlan = VxlanDriver(cfg.netns_dir, os.environ.get(UNDERLAY_NETNS_ENV) or None)
            overlay = Overlay(network, cfg, os.environ[UNDERLAY_ENV], firewall, vxlan)
            overlay.submit(answer)
            engine.spawn(overlay.run(), "overlay")
        await engine.adopt(answer)
        if flows is not None:
            await flows.set_desired(answer)
        if lbs is not None:
            lbs.submit(answer)
        if ready is not None:
            ready(engine)
        generation = answer.generation
        view = DesiredView(_parse)  # deltas against the answer held (agent/desiredview.py)
        view.hold(answer)
        while answer.instance_status != "INACTIVE":
            try:
                doc = await client.desired(
                    instance_id, generation, POLL_WAIT, **view.poll_arguments(generation)
                )
            except AgentApiError as exc:  # never fatal once running: log, back off, try again
                log.warning("desired state refused (%s)", exc)
                await asyncio.sleep(1.0)
                if exc.status in (403, 404):  # the control plane forgot us, or our keys: register again
                    try:
                        state = await _register(
                            client,
                            path,
                            state,
                            cluster,
                            instance_type,
                            max_task_enis,
                            runtime,
                            capacity,
                            owned_driver is not None,
                        )
                    except AgentApiError as again:
                        log.error("registering again failed (%s)", again)
                        await asyncio.sleep(4.0)
                        continue
                    assert state.container_instance_arn is not None
                    instance_id = state.container_instance_arn.rsplit("/", 1)[-1]
                    view.drop()  # a delta is against one instance's generations: the full state first
                continue
            lb_mark("received", generation=doc.get("generation") if isinstance(doc, dict) else None)
            parsed = view.take(doc)
            if parsed is None:  # act on nothing we cannot read; the next change brings a new answer
                if view.state is None:  # a delta that did not add up: ask for the full state at once
                    generation = -1
                    continue
                await asyncio.sleep(1.0)
                continue
            answer = parsed
            if answer.generation < generation and not answer.changed:
                generation = -1  # the control plane's counter went back: ask for the full state again
                continue
            generation = answer.generation
            if lbs is not None and answer.changed:  # first: a target change goes to HAProxy at once
                lbs.submit(answer)
            if engine.endpoints is not None:  # every answer carries the current credentials
                engine.endpoints.set_credentials(answer[CREDENTIALS])
            engine.apply(answer, view.changes)  # a delta: its changed tasks alone
            if prober is not None:  # the console's reachability probes (agent/probes.py)
                prober.submit(answer)
            if flows is not None:
                await flows.set_desired(answer)
            if overlay is not None and answer.changed:
                overlay.submit(answer)
        log.info("container instance deregistered: stopping every task")
        engine.stop_all()
        await engine.wait_idle()
    finally:
        if prober is not None:
            await prober.close()
        if flows is not None:
            await flows.close()
        if lbs is not None:
            await lbs.close()
        if engine is not None:
            if engine.endpoints is not None:
                engine.endpoints.close()
            await engine.close()
        else:
            network.close()
        await client.close()
        if owned_driver is not None:
            with contextlib.suppress(Exception):
                owned_driver.close()
        if firewall_driver is not None:
            with contextlib.suppress(Exception):
                firewall_driver.close()


def _flow_logs(
    client: AgentClient,
    instance_id: Callable[[], str],
    cfg: netplan.NetConfig,
    network: DataPlane,
    firewall: FirewallSync | None,
) -> FlowLogCollector:
    """The flow-log collector: records go out as ``flowRecords`` reports; REJECT logging is loaded by the
    firewall on the data plane's thread, like every other change of its tables."""

    async def send(entries: tuple[FlowRecords, ...]) -> None:
        await client.report_entries(instance_id(), records_to_wire(entries))

    async def set_reject_logging(eni_ids: frozenset[str]) -> None:
        if firewall is not None:
            await network.call(firewall.set_reject_logging, eni_ids)

    return FlowLogCollector(cfg, send, set_reject_logging)


def _endpoints(
    engine: Engine, cfg: netplan.NetConfig, state_dir: Path, client: AgentClient, region: str
) -> TaskEndpoints:
    """The tasks' 169.254.170.2; the API relay goes to the control plane ``client`` uses (``apirelay``)."""
    api = ApiRelay(client)
    return TaskEndpoints(engine, cfg, secret=load_secret(state_dir), region=region, api=api)


# ---------------------------------------------------------------------------------------------- CLI


def _credentials(args: argparse.Namespace) -> AgentCredentials | None:
    key_id = os.environ.get("TASKVPC_ACCESS_KEY_ID")
    secret = os.environ.get("TASKVPC_SECRET_ACCESS_KEY")
    if key_id and secret:
        return AgentCredentials(key_id, secret)
    candidates = []
    if args.credentials_file:
        candidates.append(Path(args.credentials_file))
    if home := os.environ.get("TASKVPC_HOME"):
        candidates.append(Path(home) / "credentials.json")
    candidates.append(Path("/var/lib/taskvpc/credentials.json"))
    for candidate in candidates:
        try:
            doc = json.loads(candidate.read_text())
            return AgentCredentials(str(doc["access_key_id"]), str(doc["secret_access_key"]))
        except (OSError, ValueError, KeyError):
            continue
    key_id = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key_id and secret:
        return AgentCredentials(key_id, secret)
    return None


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog="taskvpc agent",
        description=__doc__.split("\n")[0],
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--cluster", default="default", help="cluster to join")
    parser.add_argument(
        "--endpoint",
        action="append",
        help="control plane URL; repeat it (or give a comma list) for control planes sharing one store, "
        "tried in turn on failure ($TASKVPC_ENDPOINT sets the default)",
    )
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="the agent's state")
    parser.add_argument(
        "--instance-type", help="EC2 instance type to present (drives the task-ENI limit); default none"
    )
    parser.add_argument("--max-task-enis", type=int, help="awsvpc tasks this instance may host")
    parser.add_argument("--cpu", type=int, help="CPU units to register (default: 1024 per core of this host)")
    parser.add_argument(
        "--memory",
        type=int,
        help=f"MiB of memory to register (default: this host's RAM minus {MEMORY_RESERVE_MIB})",
    )
    parser.add_argument(
        "--runtime",
        default="auto",
        choices=("auto", "runc", "process"),
        help="container runtime (auto: runc where runc or crun is installed, else process)",
    )
    parser.add_argument(
        "--net-prefix",
        "--prefix",
        dest="prefix",
        default="tvpc",
        help="name prefix of namespaces and links (cgroup: taskvpc-<prefix>, or taskvpc for tvpc)",
    )
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_DEFAULT_REGION", DEFAULT_REGION),
        help="region of the control plane ($AWS_DEFAULT_REGION sets the default)",
    )
    parser.add_argument("--credentials-file", help="JSON with access_key_id/secret_access_key")
    parser.add_argument("--no-host-access", action="store_true", help="no routes from the host to tasks")
    parser.add_argument("--fargate-capacity", action="store_true", help="also run FARGATE launch-type tasks")
    parser.add_argument("--log-level", default="INFO", help="logging level")
    parser.add_argument(
        "--ecs-config", help="an /etc/ecs/ecs.config (an instance's user data; ECS_CLUSTER wins)"
    )
    parser.add_argument(
        "--subnet-id", help="the instance's primary subnet (default: the AZ's default subnet)"
    )
    parser.add_argument("--os-family", help="ECS os-family to register (WINDOWS_*: a Windows instance)")
    parser.add_argument("--cgroup-parent", help="cgroup of the tasks (an instance's: inside the instance's)")
    parser.add_argument(
        "--underlay-address",
        help="this host's address that other hosts reach (UDP 4789): its VPC routers join the VXLAN overlay",
    )
    parser.add_argument(
        "--underlay-netns",
        help="the network namespace holding --underlay-address (default: the agent's own), e.g. taskvpc up's",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    instance_config.CURRENT = instance_config.load(
        args.ecs_config, args.subnet_id, args.os_family, args.cgroup_parent
    )
    args.cluster = instance_config.CURRENT.cluster or args.cluster
    if args.fargate_capacity:
        os.environ[FARGATE_CAPACITY_ENV] = "1"  # read by attributes() when registering
    if args.underlay_address:
        os.environ[UNDERLAY_ENV] = args.underlay_address
    if args.underlay_netns:
        os.environ[UNDERLAY_NETNS_ENV] = args.underlay_netns
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if os.geteuid() != 0:
        print(
            "taskvpc agent: needs root (network namespaces, links, processes of other users)", file=sys.stderr
        )
        return 1
    limits.raise_open_files()  # a pidfd per container: 1,024 stopped a host at ~1,005 tasks
    credentials = _credentials(args)
    if credentials is None:
        print(
            "taskvpc agent: no credentials: set TASKVPC_ACCESS_KEY_ID/TASKVPC_SECRET_ACCESS_KEY "
            "or pass --credentials-file",
            file=sys.stderr,
        )
        return 1

    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        await run_agent(
            ",".join(args.endpoint or [os.environ.get("TASKVPC_ENDPOINT", DEFAULT_ENDPOINT)]),
            args.cluster,
            args.state_dir,
            credentials,
            prefix=args.prefix,
            instance_type=args.instance_type,
            max_task_enis=args.max_task_enis,
            runtime=args.runtime,
            region=args.region,
            host_access=not args.no_host_access,
            cpu=args.cpu,
            memory=args.memory,
            ready=lambda _: gctune.settle_after_startup(),  # what adoption made lives on: freeze it
        )

    try:
        with prefix_lock(args.prefix):  # one live agent per prefix: another would remove our tasks
            asyncio.run(run())
    except PrefixBusy as exc:
        print(f"taskvpc agent: {exc}", file=sys.stderr)
        return EXIT_PREFIX_BUSY
    except asyncio.CancelledError:
        log.info("agent stopped (containers keep running; the next agent adopts them)")
    except AgentApiError as exc:
        print(f"taskvpc agent: the control plane refused us: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"taskvpc agent: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
