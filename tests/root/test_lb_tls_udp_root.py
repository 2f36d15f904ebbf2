"""UDP, TCP_UDP and TLS listeners of an NLB and an HTTPS listener of an ALB, for real: `taskvpc up` as root.

One `taskvpc up` for the module, with the ``process`` runtime so a task can be a Python program (the
examples' busybox image has no UDP server). Each task serves its own address over HTTP on 80, echoes
datagrams on udp/5000 and udp/5001 and lines on tcp/5001, prefixed with its address. The NLB has a UDP
listener (a UDP group checked over TCP on port 80, as ELB requires: UDP is no health-check protocol),
a TCP_UDP one, and a TLS one (terminated by HAProxy in the NLB's namespace, forwarding plain TCP); the ALB
an HTTPS listener. Datagrams and TLS requests from the host reach both tasks and their answers come back;
the certificate served is the locally made one (subject ``taskvpc self-signed (no ACM)``).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from taskvpc.agent.runtime.procs import cmdline
from tests.root import hostcheck
from tests.root.lbfixtures import haproxy_pids, health, wait_for
from tests.root.upserver import RootServer, kill_task_shims

pytestmark = [pytest.mark.root]

MARKER = "lbp-" + secrets.token_hex(4)  # in our tasks' command lines: teardown kills them by pid
CERTIFICATE = "arn:aws:acm:us-east-1:000000000000:certificate/0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7"
SCRIPT = r"""
import socket, sys, threading, http.server
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
probe.connect(("10.255.255.254", 9))  # no packet: only picks the source address, the task's own
ME = probe.getsockname()[0]

def udp(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    while True:
        data, peer = sock.recvfrom(2048)
        sock.sendto(ME.encode() + b" " + data, peer)

def tcp(port):
    server = socket.create_server(("0.0.0.0", port))
    while True:
        conn, _ = server.accept()
        with conn:
            conn.sendall(ME.encode() + b" " + conn.recv(2048))

class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ME.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

for target, port in ((udp, 5000), (udp, 5001), (tcp, 5001)):
    threading.Thread(target=target, args=(port,), daemon=True).start()
http.server.ThreadingHTTPServer(("0.0.0.0", 80), Page).serve_forever()
"""


def _task_definition(marker: str) -> dict[str, Any]:
    return {
        "family": "lb-protocols",
        "networkMode": "awsvpc",
        "cpu": "128",
        "memory": "128",
        "containerDefinitions": [
            {
                "name": "echo",
                "image": "busybox",
                "entryPoint": ["python3", "-c"],
                "command": [SCRIPT, marker],  # the marker finds our processes (teardown kills by pid)
                "essential": True,
                "portMappings": [
                    {"containerPort": 80, "protocol": "tcp"},
                    {"containerPort": 5000, "protocol": "udp"},
                    {"containerPort": 5001, "protocol": "udp"},
                ],
            }
        ],
    }


def _pids_with(marker: str) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and marker in (cmdline(int(p)) or [])]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RootServer]:
    prefix = "tvp" + secrets.token_hex(2)
    up = RootServer(tmp_path_factory.mktemp("lbp") / "state", prefix, extra_args=("--runtime", "process"))
    try:
        yield up.start()
    finally:
        up.stop()
        kill_task_shims(up.state_dir)
        for pid in haproxy_pids(up.state_dir) + _pids_with(MARKER):
            os.kill(pid, signal.SIGKILL)
        hostcheck.unmount_under(up.state_dir)
        hostcheck.scrub(prefix)
        left = hostcheck.wait_clean(prefix)
        assert not left, f"left behind: {left}"


def _permissions(*rules: tuple[str, int, int]) -> list[dict[str, Any]]:
    return [
        {"IpProtocol": p, "FromPort": low, "ToPort": high, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        for p, low, high in rules
    ]


def datagram(address: str, port: int, payload: bytes) -> bytes:
    """One datagram from a new socket (a new flow, so the NLB picks a target again); the answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(payload, (address, port))
        return sock.recvfrom(2048)[0]


def line(address: str, port: int, payload: bytes) -> bytes:
    with socket.create_connection((address, port), timeout=3) as conn:
        conn.sendall(payload)
        return conn.recv(2048)


def https_get(address: str, port: int = 443) -> tuple[str, bytes]:
    """(the served certificate's subject, the page) of ``GET /`` over TLS, the certificate not verified."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, port), timeout=3) as raw, context.wrap_socket(raw) as conn:
        der = conn.getpeercert(binary_form=True)
        conn.sendall(b"GET / HTTP/1.0\r\nHost: lb\r\n\r\n")
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    subject = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
        input=der,
        capture_output=True,
        check=True,
    ).stdout.decode()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    return subject, body


def _answers_tls(address: str) -> bool:
    try:
        https_get(address)
        return True
    except OSError:
        return False


def test_udp_tcp_udp_tls_and_https_listeners_carry_real_traffic(server: RootServer) -> None:
    ecs, ec2, elbv2 = server.client("ecs"), server.client("ec2"), server.client("elbv2")
    ecs.register_task_definition(**_task_definition(MARKER))
    [instance] = ecs.describe_container_instances(
        cluster="default",
        containerInstances=ecs.list_container_instances(cluster="default")["containerInstanceArns"],
    )["containerInstances"]
    zone = next(a["value"] for a in instance["attributes"] if a["name"] == "ecs.availability-zone")
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    home = next(s for s in subnets if s["AvailabilityZone"] == zone)
    other = next(s for s in subnets if s["AvailabilityZone"] != zone)
    vpc_id = home["VpcId"]

    lb_sg = ec2.create_security_group(GroupName="lbs", Description="lbs", VpcId=vpc_id)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=lb_sg, IpPermissions=_permissions(("tcp", 443, 443), ("tcp", 5001, 5001), ("udp", 5000, 5001))
    )
    behind = ec2.create_security_group(GroupName="behind", Description="behind", VpcId=vpc_id)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=behind,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": lb_sg}]},
            {"IpProtocol": "tcp", "FromPort": 5001, "ToPort": 5001, "UserIdGroupPairs": [{"GroupId": lb_sg}]},
            {"IpProtocol": "udp", "FromPort": 5000, "ToPort": 5001, "UserIdGroupPairs": [{"GroupId": lb_sg}]},
            # UDP and TCP_UDP groups preserve the client's address (ELB's default): admit the clients too
            *_permissions(("udp", 5000, 5001), ("tcp", 5001, 5001)),
        ],
    )
    run = ecs.run_task(
        cluster="default",
        taskDefinition="lb-protocols",
        count=2,
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": [home["SubnetId"]], "securityGroups": [behind]}
        },
    )
    assert run["failures"] == []
    arns = [t["taskArn"] for t in run["tasks"]]
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": 1})
    tasks = sorted(
        {d["name"]: d["value"] for d in t["attachments"][0]["details"]}["privateIPv4Address"]
        for t in ecs.describe_tasks(cluster="default", tasks=arns)["tasks"]
    )

    checks = {
        "HealthCheckIntervalSeconds": 5,
        "HealthCheckTimeoutSeconds": 2,
        "HealthyThresholdCount": 2,
        "UnhealthyThresholdCount": 2,
    }

    def group(name: str, protocol: str, port: int, **extra: Any) -> str:
        return str(
            elbv2.create_target_group(
                Name=name, Protocol=protocol, Port=port, VpcId=vpc_id, TargetType="ip", **checks, **extra
            )["TargetGroups"][0]["TargetGroupArn"]
        )

    udp = group("udp", "UDP", 5000, HealthCheckProtocol="TCP", HealthCheckPort="80")
    both = group("tcp-udp", "TCP_UDP", 5001)
    web = group("web", "TCP", 80)
    page = group("page", "HTTP", 80)

    nlb = elbv2.create_load_balancer(
        Name="protocols", Type="network", Subnets=[home["SubnetId"]], SecurityGroups=[lb_sg]
    )["LoadBalancers"][0]
    alb = elbv2.create_load_balancer(
        Name="secure", Subnets=[home["SubnetId"], other["SubnetId"]], SecurityGroups=[lb_sg]
    )["LoadBalancers"][0]
    tls = {"Certificates": [{"CertificateArn": CERTIFICATE}]}
    for lb, protocol, port, tg, extra in (
        (nlb, "UDP", 5000, udp, {}),
        (nlb, "TCP_UDP", 5001, both, {}),
        (nlb, "TLS", 443, web, tls),
        (alb, "HTTPS", 443, page, tls),
    ):
        elbv2.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"],
            Protocol=protocol,
            Port=port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
            **extra,
        )
    for tg in (udp, both, web, page):
        elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": ip} for ip in tasks])

    def healthy() -> bool:
        return all(
            sorted(ip for ip, h in health(elbv2, tg).items() if h["State"] == "healthy") == tasks
            for tg in (udp, both, web, page)
        )

    try:
        wait_for(healthy, 40, "every target healthy")
    except AssertionError:
        print({tg: health(elbv2, tg) for tg in (udp, both, web, page)})
        print(server.log_path.read_text(errors="replace")[-6000:])
        raise

    [nlb_address] = [
        a["PrivateIPv4Address"]
        for z in elbv2.describe_load_balancers(LoadBalancerArns=[nlb["LoadBalancerArn"]])["LoadBalancers"][0][
            "AvailabilityZones"
        ]
        for a in z.get("LoadBalancerAddresses", [])
    ]
    path = alb["LoadBalancerArn"].split(":loadbalancer/")[1]
    alb_addresses = sorted(
        e["PrivateIpAddress"]
        for e in ec2.describe_network_interfaces(
            Filters=[{"Name": "description", "Values": [f"ELB {path}"]}]
        )["NetworkInterfaces"]
    )
    assert len(alb_addresses) == 2

    # UDP: every datagram is answered by a task, both tasks answer (a new flow per datagram).
    for port in (5000, 5001):
        answers = [datagram(nlb_address, port, f"ping {n}".encode()) for n in range(16)]
        assert {a.split(b" ", 1)[1] for a in answers} == {f"ping {n}".encode() for n in range(16)}
        assert sorted({a.split(b" ", 1)[0].decode() for a in answers}) == tasks, (port, answers)
    # TCP on the TCP_UDP listener's port.
    answers = [line(nlb_address, 5001, b"hello") for _ in range(12)]
    assert sorted({a.split(b" ", 1)[0].decode() for a in answers}) == tasks

    # TLS terminated by the NLB (HAProxy in its namespace) and HTTPS by the ALB, with the local certificate.
    for address in [nlb_address, *alb_addresses]:
        # No wait: a verdict reaches DescribeTargetHealth only once the LB serves with it (the HTTPS
        # listeners bound), so the first request after `healthy` is answered (once refused in ~6 runs
        # when verdicts were reported before HAProxy's first load).
        assert _answers_tls(address), f"TLS on {address} right after healthy"
        seen = set()
        for _ in range(10):
            subject, body = https_get(address)
            assert "taskvpc self-signed (no ACM)" in subject, subject
            seen.add(body.decode())
        assert sorted(seen) == tasks, (address, seen)
    nlb_ns = f"{server.prefix}-l-{nlb['LoadBalancerArn'].rsplit('/', 1)[1]}"
    router = f"{server.prefix}-r-{vpc_id.removeprefix('vpc-')}"
    rules = "".join(  # the UDP groups preserve the client's address (ELB's default): DNAT in the router
        subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "list", "ruleset"], capture_output=True, text=True
        ).stdout
        for ns in (nlb_ns, router)
    )
    dnats = [line for line in rules.splitlines() if "dnat" in line]
    assert not [d for d in dnats if "dport 443" in d]  # TLS is no DNAT: HAProxy in the NLB's namespace has it
    assert [d for d in dnats if "udp dport 5000" in d] and [d for d in dnats if "udp dport 5001" in d], dnats

    # Deleting both leaves no namespace and no HAProxy (the NLB's TLS one included).
    assert len({_netns_of(p) for p in haproxy_pids(server.state_dir)}) == 2
    for lb in (nlb, alb):
        elbv2.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
    wait_for(
        lambda: (
            not [n for n in hostcheck.namespaces(server.prefix) if "-l-" in n]
            and not haproxy_pids(server.state_dir)
        ),
        20,
        "load balancers removed",
    )


def _netns_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino
