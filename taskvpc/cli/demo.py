"""``taskvpc demo``: the seed's walkthrough against a running ``taskvpc up``, narrated.

Registers ``examples/linux-simple-web.json``, runs two copies in awsvpc mode in one subnet of the default
VPC, waits for them, fetches the sample page from each task's own IP on port 80 (both on the same
instance, both on port 80), and tells a new user what to look at. It is a client of the public APIs only.

``--compare`` first shows the "before": the same definition in ``bridge`` mode with ``hostPort`` 80.
The first task takes the instance's port 80 (and answers on http://127.0.0.1/ through the NAT mapping);
the second cannot be placed (``RESOURCE:PORTS``): one port 80 per instance. Then the awsvpc run shows two
port-80 tasks side by side, each on its own IP.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config

from taskvpc.cli import config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "linux-simple-web.json"
DEMO_GROUP = "taskvpc-demo-web"


def _clients(state_dir: Path, region: str) -> tuple[Any, Any]:
    credentials = config.read_credentials(state_dir)
    if credentials is None:
        raise SystemExit(f"taskvpc demo: no credentials in {state_dir}; is 'taskvpc up' running?")
    session = botocore.session.get_session()
    common = {
        "endpoint_url": config.read_endpoint(state_dir),
        "region_name": region,
        "aws_access_key_id": credentials.access_key_id,
        "aws_secret_access_key": credentials.secret_access_key,
        "config": Config(retries={"max_attempts": 2}),
    }
    return session.create_client("ecs", **common), session.create_client("ec2", **common)


def _say(text: str) -> None:
    print(text, flush=True)


def run_bridge_comparison(ecs: Any, definition: dict[str, Any]) -> bool:
    """Two port-80 tasks in bridge mode: the second fails placement. True when it went as described."""
    bridged = json.loads(json.dumps(definition))
    bridged["family"] = f"{definition['family']}-bridge"
    bridged["networkMode"] = "bridge"
    for container in bridged["containerDefinitions"]:
        for mapping in container.get("portMappings", []):
            mapping["hostPort"] = mapping["containerPort"]
    registered = ecs.register_task_definition(**bridged)["taskDefinition"]
    family_revision = f"{registered['family']}:{registered['revision']}"
    _say(f"0. before awsvpc: {family_revision} in bridge mode, hostPort 80, run twice")
    first = ecs.run_task(cluster="default", taskDefinition=family_revision)
    if not first["tasks"]:
        _say(f"   the first bridge task was not placed: {first['failures']}")
        return False
    arn = first["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})
    page = _fetch("http://127.0.0.1:80/")
    served = "Amazon ECS Sample App" in page
    _say(
        f"   first:  {arn.rpartition('/')[2]} RUNNING, holds the instance's port 80 -> GET http://127.0.0.1/ "
        f"{'served the sample page' if served else 'FAILED'}"
    )
    second = ecs.run_task(cluster="default", taskDefinition=family_revision)
    reasons = [f["reason"] for f in second.get("failures", [])]
    _say(
        f"   second: not placed, {', '.join(reasons) or 'placed?!'} (one port 80 per instance in bridge mode)"
    )
    for extra in second["tasks"]:
        ecs.stop_task(cluster="default", task=extra["taskArn"], reason="taskvpc demo finished")
    ecs.stop_task(cluster="default", task=arn, reason="taskvpc demo finished")
    ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})
    return served and reasons == ["RESOURCE:PORTS"]


def run_demo(state_dir: Path, region: str, keep: bool, example: Path = EXAMPLE, compare: bool = False) -> int:
    ecs, ec2 = _clients(state_dir, region)
    instances = ecs.list_container_instances(cluster="default").get("containerInstanceArns", [])
    if not instances:
        _say("taskvpc demo: no container instance in cluster 'default' yet: is 'taskvpc up' running as root?")
        return 1
    definition = json.loads(example.read_text())
    compared = run_bridge_comparison(ecs, definition) if compare else True
    registered = ecs.register_task_definition(**definition)["taskDefinition"]
    family_revision = f"{registered['family']}:{registered['revision']}"
    _say(f"1. registered {family_revision} (networkMode {registered['networkMode']})")

    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
    subnet = sorted(subnets, key=lambda s: s["AvailabilityZone"])[0]
    group_id = _demo_group(ec2, vpc["VpcId"])
    _say(f"2. subnet {subnet['SubnetId']} ({subnet['CidrBlock']}), security group {group_id} (tcp/80 open)")

    started = time.monotonic()
    run = ecs.run_task(
        cluster="default",
        taskDefinition=family_revision,
        count=2,
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": [subnet["SubnetId"]], "securityGroups": [group_id]}
        },
    )
    for failure in run.get("failures", []):
        _say(f"   placement failure: {failure}")
    arns = [task["taskArn"] for task in run["tasks"]]
    if not arns:
        return 1
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": 1})
    _say(f"3. {len(arns)} tasks RUNNING after {time.monotonic() - started:.2f} s")

    ok = True
    for task in ecs.describe_tasks(cluster="default", tasks=arns)["tasks"]:
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        address = details["privateIPv4Address"]
        page = _fetch(f"http://{address}/")
        title = "Amazon ECS Sample App" in page
        ok &= title
        _say(
            f"   {task['taskArn'].rpartition('/')[2]}  eni {details['networkInterfaceId']}  "
            f"mac {details['macAddress']}  ip {address}  -> GET http://{address}/ "
            f"{'served the sample page' if title else 'FAILED'}"
        )
    _say("4. look around:")
    _say("   aws ecs describe-tasks --cluster default --tasks <id>   # the ENI attachment and its details")
    _say("   aws ec2 describe-network-interfaces                     # the task ENIs, requester-managed")
    _say("   ip netns list                                           # one namespace per task, one router")
    _say("   taskvpc logs <task-id>                                  # each container's output")
    if not keep:
        for arn in arns:
            ecs.stop_task(cluster="default", task=arn, reason="taskvpc demo finished")
        ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": 1})
        _say("5. stopped both tasks; their namespaces, links and addresses are gone (--keep leaves them)")
    if compare:
        _say("   awsvpc: both tasks listen on port 80, each on its own IP; bridge: one port 80 per instance")
    return 0 if ok and compared else 1


def _demo_group(ec2: Any, vpc_id: str) -> str:
    found = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [DEMO_GROUP]}]
    )["SecurityGroups"]
    if found:
        return str(found[0]["GroupId"])
    group_id = str(
        ec2.create_security_group(GroupName=DEMO_GROUP, Description="taskvpc demo: web on 80", VpcId=vpc_id)[
            "GroupId"
        ]
    )
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    return group_id


def _fetch(url: str, attempts: int = 50) -> str:
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode(errors="replace"))
        except OSError:
            time.sleep(0.1)
    return ""


def main(state_dir: Path, region: str, keep: bool, compare: bool = False) -> int:
    try:
        return run_demo(state_dir, region, keep, compare=compare)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the narrated walkthrough reports, rather than dumps, what went wrong
        print(f"taskvpc demo: {error}", file=sys.stderr)
        return 1
