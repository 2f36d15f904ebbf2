"""Load balancers for real: requests/s through an ALB and an NLB against straight to a task, how fast
target (de)registration takes effect (and where that time goes), and rolling deploys under load.

Run as root on a machine with nothing else of taskvpc's running (it starts its own ``taskvpc up`` with a
private state dir and a unique name prefix, and removes everything it made at the end, even on failure),
under the shared lock on a shared machine:

    sudo flock /tmp/taskvpc-root.lock .venv/bin/python bench/lb.py [--seconds 3] [--connections 4]
        [--repeat 3] [--cycles 5] [--deploys 3] [--rate 1200] [--parts throughput,cycles,deploys]
        [--log server.log]

Three awsvpc tasks run busybox httpd on port 80 serving their own address (HTTP/1.0: one request per
connection, so every request is a new connection end to end); two are targets, the third is where the
load comes from when the host has no route to the VPC (another ``taskvpc up`` holds the host link
address). One ALB (HTTP:80 to both tasks, HTTP:81 to a group used for the (de)registration cycles, HTTP:82
to the service's group) and one NLB (the same on TCP), in the agent's AZ's default subnet; health checks
every 5 s (the minimum), deregistration delay 0 (2 s for the service's groups).

1. Throughput: ``--connections`` threads in this process, each sending GET / on a new connection after
   the previous answer, for ``--seconds``; straight to the tasks (round-robin), to the ALB, to the NLB,
   interleaved, ``--repeat`` times each; the median requests/s. A Python load generator (neither ``ab``
   nor ``wrk`` is installed here): it measures the path's per-request cost under the same client, not the
   data plane's ceiling.
2. Registration, per LB: task B is always in the :81 group; RegisterTargets(A) at t0, then one request at
   a time until A's address answers. Goal: one health-check interval + 50 ms.
3. Deregistration, per LB: DeregisterTargets(A) at t1 with two threads sending requests on; the latency is
   the start of the last request A answered, minus t1 (0 when none did). Goal: p99 50 ms. The server runs
   with ``TASKVPC_LB_TRACE=1``; its ``lbtrace`` marks give each stage's time after t1 (docs/elbv2.md,
   "Where the time goes").
   Cycles 2-3 repeat ``--cycles`` times.
4. Rolling deploys (``bench/lb_deploy.py``): a 4-task service in the :82 groups of both LBs; with a paced
   client at ``--rate`` requests/s through the ALB, then through the NLB, ``--deploys`` forced new
   deployments each; every request's outcome counted by kind, each deploy's duration.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import lb_deploy
from botocore.config import Config
from launch import KEY_ID, SECRET, cleanup, drain, free_port, percentile, start_server, wait_for_instance

from taskvpc.agent import netplan
from taskvpc.agent.drivers import netns
from taskvpc.agent.runtime.procs import cmdline

SCRIPT = (
    "mkdir -p www && ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1 > www/index.html && "
    "exec busybox httpd -f -p 80 -h www"
)
TASK_DEFINITION = {
    "family": "bench-lb",
    "networkMode": "awsvpc",
    "containerDefinitions": [
        {
            "name": "web",
            "image": "busybox",
            "essential": True,
            "memory": 32,
            "entryPoint": ["sh", "-c"],
            "command": [SCRIPT],
            "portMappings": [{"containerPort": 80}],
            "linuxParameters": {"initProcessEnabled": True},
        }
    ],
}
INTERVAL = 5
SERVICE, SERVICE_TASKS = "bench-lb-web", 4
DEPLOY_DRAIN = 2  # seconds a replaced task's targets drain: far longer than any request here


def request(address: str, port: int = 80, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of one GET / on a new connection; (0, "") when it fails."""
    try:
        with lb_deploy.connect(address, port, timeout) as sock:
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return 0, ""
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body.decode().strip()


def load(addresses: list[str], connections: int, seconds: float) -> float:
    """Requests/s answered 200 by ``connections`` threads for ``seconds`` (each thread cycles addresses)."""
    counts = [0] * connections
    failures = [0] * connections
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        turn = index
        while time.monotonic() < stop:
            status, _ = request(addresses[turn % len(addresses)])
            turn += 1
            if status == 200:
                counts[index] += 1
            else:
                failures[index] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if sum(failures):
        print(f"{addresses}: {sum(failures)} failed requests", file=sys.stderr)
    return sum(counts) / (time.monotonic() - started)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def registration(elbv2: Any, tg: str, alb: str, target: str) -> float:
    """Seconds from RegisterTargets(target) to the first request it answers through the LB's :81."""
    started = time.perf_counter()
    elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": target}])
    deadline = started + 60
    while time.perf_counter() < deadline:
        if request(alb, 81)[1] == target:
            return time.perf_counter() - started
        time.sleep(0.005)
    raise SystemExit("a registered target never answered")


def deregistration(
    elbv2: Any, tg: str, alb: str, target: str, watch: float = 1.5
) -> tuple[float, float, float]:
    """Seconds from DeregisterTargets(target) to the start of the last request it answered (0 if none),
    how long the API call itself took, and the call's start on the wall clock (for the trace marks)."""
    stop = threading.Event()
    last = [0.0]
    started = [0.0]
    wall = [0.0]

    def worker() -> None:
        while not stop.is_set():
            sent = time.perf_counter()
            if request(alb, 81)[1] == target:
                last[0] = max(last[0], sent)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)  # both threads busy before the call
    started[0], wall[0] = time.perf_counter(), time.time()
    elbv2.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": target}])
    answered = time.perf_counter()
    time.sleep(watch)
    stop.set()
    for thread in threads:
        thread.join()
    return max(0.0, last[0] - started[0]), answered - started[0], wall[0]


def serving(address: str, port: int = 80) -> Callable[[], bool]:
    return lambda: request(address, port)[0] == 200


def healthy(elbv2: Any, tg: str, want: int) -> Callable[[], bool]:
    def check() -> bool:
        found = elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        return bool(sum(d["TargetHealth"]["State"] == "healthy" for d in found) == want)

    return check


def haproxy_pids(state_dir: Path) -> list[int]:
    return [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit()
        and (args := cmdline(int(p)))
        and args[0].endswith("haproxy")
        and str(state_dir) in " ".join(args)
    ]


def setup(ecs: Any, ec2: Any, elbv2: Any, state_dir: Path, prefix: str) -> dict[str, Any]:
    """Two tasks, an ALB and an NLB in front of them, the :81 group for the (de)registration cycles."""
    ecs.register_task_definition(**TASK_DEFINITION)
    [instance] = ecs.describe_container_instances(
        cluster="default",
        containerInstances=ecs.list_container_instances(cluster="default")["containerInstanceArns"],
    )["containerInstances"]
    zone = next(a["value"] for a in instance["attributes"] if a["name"] == "ecs.availability-zone")
    [subnet] = ec2.describe_subnets(
        Filters=[
            {"Name": "default-for-az", "Values": ["true"]},
            {"Name": "availability-zone", "Values": [zone]},
        ]
    )["Subnets"]
    group = ec2.create_security_group(GroupName="bench-lb", Description="http", VpcId=subnet["VpcId"])[
        "GroupId"
    ]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 82, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    run = ecs.run_task(
        cluster="default",
        taskDefinition="bench-lb",
        count=3,  # two targets, and a third whose namespace the load comes from when the host cannot
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": [subnet["SubnetId"]], "securityGroups": [group]}
        },
    )
    arns = [t["taskArn"] for t in run["tasks"]]
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": 1})
    tasks = []
    for task in ecs.describe_tasks(cluster="default", tasks=arns[:2])["tasks"]:
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        tasks.append(details["privateIPv4Address"])
    log = state_dir.parent / "server.log"
    if "no host access" in log.read_text(errors="replace"):  # another `taskvpc up` holds the host link
        task_key = arns[2].rsplit("/", 1)[1]
        fd = netns.open_ns(netplan.task_netns(netplan.NetConfig(prefix=prefix), task_key))
        assert fd is not None, "no namespace of the client task"
        lb_deploy.client_namespace = fd
        print(
            "the host has no route to the VPC: the load comes from a third task's namespace", file=sys.stderr
        )
    for ip in tasks:
        wait_for(serving(ip), 20, f"task {ip} serving")

    def target_group(name: str, protocol: str, drain: int = 0) -> str:
        arn = elbv2.create_target_group(
            Name=name,
            Protocol=protocol,
            Port=80,
            VpcId=subnet["VpcId"],
            TargetType="ip",
            HealthCheckIntervalSeconds=INTERVAL,
            HealthCheckTimeoutSeconds=2,
            HealthyThresholdCount=2,
            UnhealthyThresholdCount=2,
        )["TargetGroups"][0]["TargetGroupArn"]
        elbv2.modify_target_group_attributes(
            TargetGroupArn=arn,
            Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(drain)}],
        )
        return str(arn)

    def balancer(name: str, kind: str, subnets: list[str]) -> tuple[str, str]:
        """The LB's ARN and its address in the agent's AZ's subnet."""
        lb = elbv2.create_load_balancer(Name=name, Type=kind, Subnets=subnets, SecurityGroups=[group])[
            "LoadBalancers"
        ][0]
        path = lb["LoadBalancerArn"].split(":loadbalancer/")[1]
        found = ec2.describe_network_interfaces()["NetworkInterfaces"]
        [address] = [
            e["PrivateIpAddress"]
            for e in found
            if e.get("Description") == f"ELB {path}" and e["SubnetId"] == subnet["SubnetId"]
        ]
        return lb["LoadBalancerArn"], address

    other = next(
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        if s["AvailabilityZone"] != zone
    )
    alb_arn, alb = balancer("bench-alb", "application", [subnet["SubnetId"], other])
    nlb_arn, nlb = balancer("bench-nlb", "network", [subnet["SubnetId"]])
    web, cycles = target_group("web", "HTTP"), target_group("cycles", "HTTP")
    tcp, cycles_tcp = target_group("tcp", "TCP"), target_group("cycles-tcp", "TCP")
    svc_http, svc_tcp = (
        target_group(n, p, DEPLOY_DRAIN) for n, p in (("svc-http", "HTTP"), ("svc-tcp", "TCP"))
    )
    for lb_arn, port, protocol, tg in (
        (alb_arn, 80, "HTTP", web),
        (alb_arn, 81, "HTTP", cycles),
        (alb_arn, 82, "HTTP", svc_http),
        (nlb_arn, 80, "TCP", tcp),
        (nlb_arn, 81, "TCP", cycles_tcp),
        (nlb_arn, 82, "TCP", svc_tcp),
    ):
        elbv2.create_listener(
            LoadBalancerArn=lb_arn,
            Protocol=protocol,
            Port=port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
        )
    for tg in (web, tcp):
        elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": ip} for ip in tasks])
    for tg in (cycles, cycles_tcp):
        elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": tasks[1]}])
    for tg, want in ((web, 2), (tcp, 2), (cycles, 1), (cycles_tcp, 1)):
        wait_for(healthy(elbv2, tg, want), 60, "targets healthy")
    for name, address in (("ALB", alb), ("NLB", nlb)):
        try:
            wait_for(serving(address), 40, f"{name} at {address} serving")
        except SystemExit:
            explain(state_dir)
            raise
    return {
        "tasks": tasks,
        "alb": alb,
        "nlb": nlb,
        "cycles": {"ALB": cycles, "NLB": cycles_tcp},
        "service groups": [svc_http, svc_tcp],
        "lbs": [alb_arn, nlb_arn],
        "network": {"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]], "securityGroups": [group]}},
    }


def explain(state_dir: Path) -> None:
    """What HAProxy holds (configuration, servers) and the NLB tables, for a load balancer that does not
    serve."""
    for directory in sorted((state_dir / "agent" / "lbs").glob("*")):
        config = directory / "haproxy.cfg"
        print(f"--- {directory.name}", file=sys.stderr)
        if config.exists():
            print(config.read_text(), file=sys.stderr)
        admin = directory / "admin.sock"
        if admin.exists():
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                sock.connect(str(admin))
                sock.sendall(b"show servers state\n")
                print(sock.recv(65536).decode(errors="replace"), file=sys.stderr)
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    print(listing, file=sys.stderr)


def create_service(ecs: Any, made: dict[str, Any]) -> None:
    """The 4-task service in both service groups (:82 of the ALB and of the NLB), settled."""
    ecs.register_task_definition(**{**TASK_DEFINITION, "family": "bench-lb-svc"})
    ecs.create_service(
        cluster="default",
        serviceName=SERVICE,
        taskDefinition="bench-lb-svc",
        desiredCount=SERVICE_TASKS,
        deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200},
        networkConfiguration=made["network"],
        loadBalancers=[
            {"targetGroupArn": tg, "containerName": "web", "containerPort": 80}
            for tg in made["service groups"]
        ],
    )
    lb_deploy.wait_settled(ecs, SERVICE, SERVICE_TASKS, 120)


def delete_service(ecs: Any) -> None:
    with contextlib.suppress(Exception):
        ecs.update_service(cluster="default", service=SERVICE, desiredCount=0)
        ecs.delete_service(cluster="default", service=SERVICE, force=True)


STAGES = ("committed", "poll-woken", "answered", "received", "submitted", "haproxy-runtime", "nft-loaded")


def trace_marks(log: Path) -> list[tuple[float, str, str]]:
    """(wall time, stage, the rest) of every ``lbtrace`` mark in the server's log."""
    marks = []
    for line in log.read_text(errors="replace").splitlines():
        found = re.search(r"lbtrace stage=(\S+) t=([0-9.]+)(.*)", line)
        if found:
            marks.append((float(found.group(2)), found.group(1), found.group(3).strip()))
    return sorted(marks)


def breakdown(marks: list[tuple[float, str, str]], starts: list[float], last: str) -> dict[str, Any]:
    """For each deregistration (wall start), ms from the DeregisterTargets call's start to the first mark
    of each stage after it, in order, ending at ``last`` (the data plane's own change); medians and max."""
    order = [s for s in STAGES if s not in ("haproxy-runtime", "nft-loaded")] + [last]
    per_stage: dict[str, list[float]] = {stage: [] for stage in order}
    for start in starts:
        at = start
        for stage in order:
            found = next((t for t, name, _ in marks if name == stage and t >= at), None)
            if found is None or found - start > 5:
                break
            per_stage[stage].append(1000 * (found - start))
            at = found
    return {
        stage: {"p50": round(statistics.median(v), 1), "max": round(max(v), 1), "n": len(v)}
        for stage, v in per_stage.items()
        if v
    }


def cycles(elbv2: Any, tg: str, address: str, target: str, count: int) -> dict[str, Any]:
    """``count`` register/deregister cycles of ``target`` in ``tg`` behind ``address``:81."""
    registered, deregistered, calls, starts = [], [], [], []
    for _ in range(count):
        registered.append(registration(elbv2, tg, address, target))
        gone, call, wall = deregistration(elbv2, tg, address, target)
        deregistered.append(gone)
        calls.append(call)
        starts.append(wall)
        wait_for(
            lambda: all(
                d["Target"]["Id"] != target
                for d in elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
            ),
            30,
            "deregistered target gone",
        )
    return {
        "register → first request ms": {
            "p50": round(1000 * statistics.median(registered), 1),
            "max": round(1000 * max(registered), 1),
            "runs": [round(1000 * s, 1) for s in registered],
        },
        "deregister → last request ms": {
            "p50": round(1000 * statistics.median(deregistered), 1),
            "p99": round(1000 * percentile(deregistered, 0.99), 1),
            "runs": [round(1000 * s, 1) for s in deregistered],
            "API call p50": round(1000 * statistics.median(calls), 1),
        },
        "starts": starts,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--deploys", type=int, default=3, help="rolling deploys through each LB")
    parser.add_argument("--rate", type=float, default=1200.0, help="requests/s during the deploys")
    parser.add_argument("--log", type=Path, help="keep a copy of the server's log here")
    parser.add_argument(
        "--parts", default="throughput,cycles,deploys", help="which parts to run (comma-separated)"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if os.geteuid() != 0:
        print("bench/lb.py needs root (it runs the agent)", file=sys.stderr)
        return 1
    os.environ["TASKVPC_LB_TRACE"] = "1"  # the timing marks (control plane and agent) in server.log
    prefix = "tvn" + secrets.token_hex(2)
    port = free_port()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="taskvpc-lb-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        server = start_server(state, prefix, port)
        lbs: list[str] = []
        common: dict[str, Any] = {
            "endpoint_url": f"http://127.0.0.1:{port}",
            "region_name": "us-east-1",
            "aws_access_key_id": KEY_ID,
            "aws_secret_access_key": SECRET,
            "config": Config(retries={"max_attempts": 1}),
        }
        ecs, ec2, elbv2 = (boto3.client(s, **common) for s in ("ecs", "ec2", "elbv2"))
        try:
            wait_for_instance(ecs)
            made = setup(ecs, ec2, elbv2, state, prefix)
            result["client"] = "host" if lb_deploy.client_namespace is None else "a task of the VPC"
            lbs = made["lbs"]
            tasks, alb, nlb = made["tasks"], made["alb"], made["nlb"]
            addresses = {"ALB": alb, "NLB": nlb}
            if "throughput" in parts:
                paths = {"direct to the tasks": tasks, "through the ALB": [alb], "through the NLB": [nlb]}
                rates: dict[str, list[float]] = {label: [] for label in paths}
                for _ in range(args.repeat):
                    for label, targets in paths.items():
                        rates[label].append(load(targets, args.connections, args.seconds))
                result["requests/s"] = {label: round(statistics.median(r)) for label, r in rates.items()}
                result["requests/s runs"] = rates
            if "cycles" in parts:
                for kind, last in (("ALB", "haproxy-runtime"), ("NLB", "nft-loaded")):
                    found = cycles(elbv2, made["cycles"][kind], addresses[kind], tasks[0], args.cycles)
                    marks = trace_marks(Path(tmp) / "server.log")
                    found["deregister breakdown ms"] = breakdown(marks, found.pop("starts"), last)
                    result[f"{kind} cycles"] = found
            if "deploys" in parts:
                create_service(ecs, made)
                for kind in ("ALB", "NLB"):
                    client = lb_deploy.PacedClient(addresses[kind], 82, args.rate)
                    result[f"{kind} rolling deploys"] = lb_deploy.rolling_deploys(
                        ecs, SERVICE, SERVICE_TASKS, client, args.deploys
                    )
        except BaseException as exc:
            result["stopped by"] = repr(exc)
            raise
        finally:
            print(json.dumps(result, indent=2), flush=True)  # what was measured, even when a part failed
            try:
                if "deploys" in parts:
                    delete_service(ecs)
                if lbs:
                    elbv2.delete_load_balancer(LoadBalancerArn=lbs[0])
                    elbv2.delete_load_balancer(LoadBalancerArn=lbs[1])
                    wait_for(lambda: not haproxy_pids(state), 15, "ALB stopped")
                drain(ecs, state)
            finally:
                server.terminate()
                server.wait(timeout=60)
                if args.log:
                    shutil.copy(Path(tmp) / "server.log", args.log)
                for pid in haproxy_pids(state):  # an LB that outlived the server (by pid: ours only)
                    os.kill(pid, signal.SIGKILL)
                cleanup(prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
