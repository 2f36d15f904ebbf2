"""What a task reads at 169.254.170.2: the metadata (v3, v4), stats and credentials documents, pure.

Built from the agent API's task values (``DesiredTask`` with its ENI), the worker's ``KnownTask`` and a few
host facts; the server (:mod:`taskvpc.agent.taskmeta_server`) only gathers them. Shapes follow ECS's task
metadata endpoint: v3 is the v2 container/task response; v4 adds the awsvpc network fields
(``AttachmentIndex``, ``MACAddress``, ``IPv4SubnetCIDRBlock``, ``PrivateDNSName``,
``SubnetGatewayIpv4Address`` with its prefix), ``VPCID`` and ``LaunchType``. Absent values are left out
(the agent's ``omitempty``). The network fields come from the same ``Eni`` value the control plane built
the task's ``attachments`` from, so they equal what DescribeTasks shows.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from taskvpc.agent.netplan import TASK_ENDPOINT_IP
from taskvpc.agent.taskplan import KnownContainer, KnownTask, Phase
from taskvpc.agentapi.credentials import TaskCredentials
from taskvpc.agentapi.tasks import DesiredContainer, DesiredTask
from taskvpc.domain.lifecycle import DesiredStatus

Doc = dict[str, Any]

ENDPOINT_IP = TASK_ENDPOINT_IP  # where every awsvpc task finds the agent (its VPC router answers on it)
_ID_NAMESPACE = uuid.UUID("6c1f1ad4-3b1e-4a55-9a52-8d6f0f3c2a10")

_CONTAINER_KNOWN = {
    Phase.PENDING: "NONE",
    Phase.STARTING: "CREATED",
    Phase.RUNNING: "RUNNING",
    Phase.STOPPING: "RUNNING",
    Phase.STOPPED: "STOPPED",
}


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the task's documents need from the agent beyond the task itself."""

    cluster: str = ""
    region: str = ""
    api_port: int | None = None  # the forwarded control-plane API at ENDPOINT_IP (None: not offered)
    container_ids: Mapping[str, str] = field(default_factory=dict)  # name -> runtime id
    container_images: Mapping[str, str] = field(default_factory=dict)  # name -> image id, when known


def endpoint_id(task_arn: str, container: str) -> str:
    """The container's id in ``/v3/<id>`` and ``/v4/<id>``: stable for the task's life (adoption too)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{task_arn}/{container}"))


def credentials_id(task_arn: str, secret: str) -> str:
    """The id in the task's credentials URI: unguessable without the agent's secret, stable per task."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"credentials/{secret}/{task_arn}"))


def cluster_arn(task_arn: str) -> str:
    """``arn:...:task/CLUSTER/ID`` -> ``arn:...:cluster/CLUSTER`` (what v4's ``Cluster`` shows)."""
    head, _, rest = task_arn.partition(":task/")
    return f"{head}:cluster/{rest.split('/')[0]}" if rest else ""


def rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    text = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def _drop_none(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if v is not None}


def _networks(task: DesiredTask, v4: bool) -> list[Doc] | None:
    eni = task.eni
    if eni is None:
        return None
    network: Doc = {"NetworkMode": task.network_mode, "IPv4Addresses": [eni.private_ipv4_address]}
    if v4:
        network |= {
            "AttachmentIndex": 0,
            "MACAddress": eni.mac_address,
            "IPv4SubnetCIDRBlock": eni.subnet_cidr,
            "PrivateDNSName": eni.private_dns_name or None,
            "SubnetGatewayIpv4Address": f"{eni.gateway}/{eni.prefix_length}",
        }
    return [_drop_none(network)]


def _labels(task: DesiredTask, cluster: str, name: str) -> Doc:
    return {
        "com.amazonaws.ecs.cluster": cluster,
        "com.amazonaws.ecs.container-name": name,
        "com.amazonaws.ecs.task-arn": task.arn,
        "com.amazonaws.ecs.task-definition-family": task.family,
        "com.amazonaws.ecs.task-definition-version": str(task.revision),
    }


def container_doc(
    task: DesiredTask, known: KnownTask, spec: DesiredContainer, host: HostFacts, *, v4: bool = True
) -> Doc:
    """One container's response (``/v4/<id>`` and the entries of ``/task``'s ``Containers``)."""
    kc: KnownContainer = known.container(spec.name)
    stopped = task.desired_status is DesiredStatus.STOPPED or kc.phase is Phase.STOPPED
    docker_id = host.container_ids.get(spec.name) or kc.runtime_id
    doc: Doc = {
        "DockerId": docker_id,
        "Name": spec.name,
        "DockerName": f"ecs-{task.family}-{task.revision}-{spec.name}",
        "Image": spec.image,
        "ImageID": host.container_images.get(spec.name),
        "Labels": _labels(task, host.cluster or cluster_arn(task.arn), spec.name),
        "DesiredStatus": "STOPPED" if stopped else "RUNNING",
        "KnownStatus": _CONTAINER_KNOWN[kc.phase],
        "Limits": _drop_none({"CPU": spec.cpu, "Memory": spec.memory}),
        "CreatedAt": rfc3339(kc.started_at),
        "StartedAt": rfc3339(kc.started_at),
        "ExitCode": kc.exit_code if kc.phase is Phase.STOPPED else None,
        "Type": "NORMAL",
        "Networks": _networks(task, v4),
    }
    if v4:
        doc["ContainerARN"] = (
            f"{task.arn.replace(':task/', ':container/', 1)}/{endpoint_id(task.arn, spec.name)}"
        )
        config = spec.log_configuration
        doc["LogDriver"] = config.driver if config is not None else "json-file"
        if config is not None and config.options:  # as ECS shows them (awslogs: with its stream)
            options = dict(config.options)
            if config.driver == "awslogs" and options.get("awslogs-stream-prefix"):
                options.setdefault(
                    "awslogs-stream", f"{options['awslogs-stream-prefix']}/{spec.name}/{task.task_id}"
                )
            doc["LogOptions"] = options
    return _drop_none(doc)


def task_doc(task: DesiredTask, known: KnownTask, host: HostFacts, *, v4: bool = True) -> Doc:
    """``/task``: the task and all its containers."""
    limits = _drop_none(
        {
            "CPU": task.task_cpu / 1024 if task.task_cpu is not None else None,
            "Memory": task.task_memory,
        }
    )
    doc: Doc = {
        "Cluster": host.cluster or cluster_arn(task.arn),
        "TaskARN": task.arn,
        "Family": task.family,
        "Revision": str(task.revision),
        "DesiredStatus": task.desired_status.value,
        "KnownStatus": known.status.value,
        "Limits": limits or None,
        "PullStartedAt": rfc3339(known.pull_started_at),
        "PullStoppedAt": rfc3339(known.pull_stopped_at),
        "AvailabilityZone": task.availability_zone or None,
        "LaunchType": task.launch_type,
        "Containers": [container_doc(task, known, c, host, v4=v4) for c in task.containers],
    }
    if v4:
        doc["VPCID"] = task.eni.vpc_id if task.eni is not None else None
    return _drop_none(doc)


def task_with_tags_doc(task: DesiredTask, known: KnownTask, host: HostFacts) -> Doc:
    """``/taskWithTags``: ``/task`` with the tags (none reach the agent yet: empty, as for an untagged task)."""
    return task_doc(task, known, host) | {"TaskTags": {}, "ContainerInstanceTags": {}}


# ---------------------------------------------------------------------------------------------- stats


@dataclass(frozen=True, slots=True)
class InterfaceCounters:
    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_dropped: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_dropped: int = 0


@dataclass(frozen=True, slots=True)
class StatsSample:
    """One reading of a container's cgroup and its task namespace's interfaces."""

    read_at: float
    cpu_total_ns: int = 0
    cpu_user_ns: int = 0
    cpu_system_ns: int = 0
    system_cpu_ns: int = 0  # the host's CPU time (/proc/stat), Docker's ``system_cpu_usage``
    online_cpus: int = 1
    memory_usage: int = 0
    memory_limit: int = 0
    memory_stats: Mapping[str, int] = field(default_factory=dict)
    pids: int = 0
    pids_limit: int | None = None
    networks: Mapping[str, InterfaceCounters] = field(default_factory=dict)


def _cpu(sample: StatsSample | None) -> Doc:
    if sample is None:
        return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}}
    return {
        "cpu_usage": {
            "total_usage": sample.cpu_total_ns,
            "usage_in_kernelmode": sample.cpu_system_ns,
            "usage_in_usermode": sample.cpu_user_ns,
        },
        "system_cpu_usage": sample.system_cpu_ns,
        "online_cpus": sample.online_cpus,
    }


def stats_doc(sample: StatsSample, previous: StatsSample | None, name: str, docker_id: str) -> Doc:
    """A container's ``/stats`` in Docker's stats shape (``precpu_stats`` from the previous reading)."""
    networks = {
        ifname: {
            "rx_bytes": c.rx_bytes,
            "rx_packets": c.rx_packets,
            "rx_errors": c.rx_errors,
            "rx_dropped": c.rx_dropped,
            "tx_bytes": c.tx_bytes,
            "tx_packets": c.tx_packets,
            "tx_errors": c.tx_errors,
            "tx_dropped": c.tx_dropped,
        }
        for ifname, c in sorted(sample.networks.items())
    }
    doc: Doc = {
        "read": rfc3339(sample.read_at),
        "preread": rfc3339(previous.read_at) if previous is not None else "0001-01-01T00:00:00Z",
        "name": name,
        "id": docker_id,
        "num_procs": 0,
        "pids_stats": _drop_none({"current": sample.pids, "limit": sample.pids_limit}),
        "cpu_stats": _cpu(sample),
        "precpu_stats": _cpu(previous),
        "memory_stats": {
            "usage": sample.memory_usage,
            "limit": sample.memory_limit,
            "stats": dict(sample.memory_stats),
        },
        "networks": networks,
    }
    if previous is not None and sample.read_at > previous.read_at:
        elapsed = sample.read_at - previous.read_at
        doc["network_rate_stats"] = {
            "rx_bytes_per_sec": _rate(sample, previous, "rx_bytes", elapsed),
            "tx_bytes_per_sec": _rate(sample, previous, "tx_bytes", elapsed),
        }
    return doc


def _rate(now: StatsSample, before: StatsSample, attr: str, elapsed: float) -> float:
    total_now: int = sum(getattr(c, attr) for c in now.networks.values())
    total_before: int = sum(getattr(c, attr) for c in before.networks.values())
    return max(0.0, (total_now - total_before) / elapsed)


def parse_net_dev(text: str, skip: Sequence[str] = ("lo",)) -> dict[str, InterfaceCounters]:
    """``/proc/<pid>/net/dev`` (the namespace of that process) -> counters per interface."""
    counters: dict[str, InterfaceCounters] = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) < 16 or name.strip() in skip:
            continue
        n = [int(f) for f in fields]
        counters[name.strip()] = InterfaceCounters(n[0], n[1], n[2], n[3], n[8], n[9], n[10], n[11])
    return counters


def parse_flat_keyed(text: str) -> dict[str, int]:
    """A cgroup v2 flat-keyed file (``cpu.stat``, ``memory.stat``): ``key value`` per line."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


# ---------------------------------------------------------------------------------------------- credentials


def credentials_doc(creds: TaskCredentials) -> Doc:
    """What GET ``$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` answers (botocore's container provider reads it)."""
    return {
        "RoleArn": creds.role_arn,
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.token,
        "Expiration": creds.expiration,
    }


# ---------------------------------------------------------------------------------------------- environment


def container_env(
    task: DesiredTask,
    name: str,
    environment: Sequence[tuple[str, str]],
    host: HostFacts,
    credentials_uri: str | None,
) -> list[tuple[str, str]]:
    """The container's environment with what ECS's agent injects: the metadata URIs always (for an awsvpc
    task), the credentials URI when the task has a role, and (unless the definition sets them) the region
    and taskvpc's API as ``AWS_ENDPOINT_URL``."""
    if task.eni is None:
        return list(environment)
    cid = endpoint_id(task.arn, name)
    base = f"http://{ENDPOINT_IP}"
    injected: list[tuple[str, str]] = [
        ("ECS_CONTAINER_METADATA_URI_V4", f"{base}/v4/{cid}"),
        ("ECS_CONTAINER_METADATA_URI", f"{base}/v3/{cid}"),
    ]
    if credentials_uri is not None and task.task_role_arn:
        injected.append(("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", credentials_uri))
    defaults: list[tuple[str, str]] = []
    if host.region:
        defaults += [("AWS_REGION", host.region), ("AWS_DEFAULT_REGION", host.region)]
    if host.api_port is not None:
        defaults.append(("AWS_ENDPOINT_URL", f"http://{ENDPOINT_IP}:{host.api_port}"))
    own = {k for k, _ in environment}
    injected_names = {k for k, _ in injected}
    kept = [(k, v) for k, v in environment if k not in injected_names]
    return kept + injected + [(k, v) for k, v in defaults if k not in own]
