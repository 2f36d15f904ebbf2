"""The control plane's reconcile loops on a real (SQLite) store, with a clock moved by hand.

The ECS use cases are called as the API layer calls them; the runner's passes run when the test says so
(``run_due``), so an hour of retention takes no time at all.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import default_vpc, enis
from taskvpc.control.ecs import container_instances, task_definitions, task_state, tasks
from taskvpc.control.identity import Principal
from taskvpc.control.reconcile import Runner, Settings, build_runner
from taskvpc.domain import tasks as taskdoc
from taskvpc.domain.lifecycle import ENI_PROVISIONING_TIMEOUT_REASON
from taskvpc.store import ec2_repo, ecs_repo, reconcile_repo, tasks_repo
from taskvpc.store.db import MIGRATIONS, Database, sqlite_url

ACCOUNT = "123456789012"
REGION = "us-east-1"
T0 = 1_800_000_000.0
SETTINGS = Settings(stopped_task_retention=3600.0, agent_timeout=60.0, attachment_timeout=180.0)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class World:
    """A store with the default VPC, one connected container instance and a web task definition."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = Clock(T0)
        self.ids = itertools.count(1)
        self.woken: list[str] = []
        default_vpc.ensure_region(self.ctx())
        td = task_definitions.register_task_definition(
            self.ctx(),
            {
                "family": "web",
                "networkMode": "awsvpc",
                "cpu": "256",
                "memory": "512",
                "containerDefinitions": [{"name": "web", "image": "busybox", "essential": True}],
            },
        )
        registration = container_instances.Registration(
            cluster="default",
            ec2_instance_id="i-0123456789abcdef0",
            cpu=2048,
            memory=3768,
            eni_capacity=2,
            # what the task definition requires, as a real agent would register it
            attributes=[(a["name"], a.get("value")) for a in td["taskDefinition"]["requiresAttributes"]],
        )
        ctx = self.ctx()
        with db.transaction() as conn:
            self.instance = container_instances.register(conn, ctx, registration)
        self.poll()
        self.subnet = self.instance["subnet_id"]

    def ctx(self, region: str = REGION, now: float | None = None) -> RequestContext:
        return RequestContext(
            region=region,
            account_id=ACCOUNT,
            principal=Principal.root(ACCOUNT),
            now=self.clock() if now is None else now,
            request_id="test",
            db=self.db,
            new_id=lambda: str(uuid.UUID(int=next(self.ids))),
        )

    def runner(self, settings: Settings = SETTINGS) -> Runner:
        runner = build_runner(self.db, lambda region, now: self.ctx(region, now), settings, clock=self.clock)
        runner.wake = self.woken.extend
        return runner

    def poll(self) -> None:
        """The agent's poll, as far as the store sees it (a heartbeat)."""
        with self.db.transaction() as conn:
            tasks_repo.set_heartbeat(conn, self.instance["id"], self.clock())

    def run_task(self) -> dict[str, Any]:
        params = {
            "taskDefinition": "web",
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": [self.subnet]}},
        }
        answer = tasks.run_task(self.ctx(), params)
        assert answer["failures"] == [], answer
        task: dict[str, Any] = answer["tasks"][0]
        return task

    def describe(self, arn: str) -> dict[str, Any]:
        return tasks.describe_tasks(self.ctx(), {"tasks": [arn]})

    def container_instance(self) -> dict[str, Any]:
        answer = container_instances.describe_container_instances(
            self.ctx(), {"containerInstances": [self.instance["arn"]]}
        )
        found: dict[str, Any] = answer["containerInstances"][0]
        return found

    def free_addresses(self) -> int:
        with self.db.read() as conn:
            subnet = ec2_repo.get_subnet(conn, REGION, self.subnet)
            assert subnet is not None
            return enis.free_addresses(conn, subnet)


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    db = Database(sqlite_url(tmp_path))
    db.migrate()
    yield World(db)
    db.dispose()


def _stop_and_finish(world: World, arn: str) -> dict[str, Any]:
    """StopTask, then the instance goes away (forced deregistration): the task is STOPPED at once."""
    tasks.stop_task(world.ctx(), {"task": arn})
    container_instances.deregister_container_instance(
        world.ctx(), {"containerInstance": world.instance["arn"], "force": True}
    )
    stopped: dict[str, Any] = world.describe(arn)["tasks"][0]
    assert stopped["lastStatus"] == "STOPPED"
    return stopped


def test_a_stopped_task_is_purged_after_its_retention(world: World) -> None:
    arn = world.run_task()["taskArn"]
    ecs_tags = [{"key": "team", "value": "web"}]
    with world.db.transaction() as conn:
        ecs_repo.put_tags(conn, REGION, arn, ecs_tags)
    stopped = _stop_and_finish(world, arn)
    runner = world.runner()

    world.clock.advance(3599.0)  # one second short of an hour after stoppedAt
    runner.run_due()
    assert world.describe(arn)["tasks"][0]["taskArn"] == arn
    listed = tasks.list_tasks(world.ctx(), {"desiredStatus": "STOPPED"})["taskArns"]
    assert listed == [arn]

    world.clock.advance(10.0)  # the loop's next pass: at most a period (10 s) past the retention
    runner.run_due()
    described = world.describe(arn)
    assert described == {"tasks": [], "failures": [{"arn": arn, "reason": "MISSING"}]}
    assert tasks.list_tasks(world.ctx(), {"desiredStatus": "STOPPED"})["taskArns"] == []
    with world.db.read() as conn:
        assert ecs_repo.get_tags(conn, arn) == []
    assert stopped["stoppedAt"] == T0


def test_only_tasks_past_retention_are_purged_and_live_ones_never(world: World) -> None:
    live = world.run_task()["taskArn"]
    old = world.run_task()["taskArn"]
    tasks.stop_task(world.ctx(), {"task": old})
    world.clock.advance(100.0)
    runner = world.runner(Settings(stopped_task_retention=10.0, agent_timeout=1e6, attachment_timeout=1e6))
    # `old` is DEPROVISIONING (its agent has not reported): not STOPPED, so kept however long it waits
    runner.run_due()
    assert {t["taskArn"] for t in tasks.describe_tasks(world.ctx(), {"tasks": [live, old]})["tasks"]} == {
        live,
        old,
    }


def test_agent_connected_goes_false_when_the_agent_is_silent_and_true_when_it_polls(world: World) -> None:
    runner = world.runner()
    shown = world.container_instance()
    assert shown["agentConnected"] is True
    version = shown["version"]

    world.clock.advance(59.0)
    runner.run_due()
    assert world.container_instance()["agentConnected"] is True

    world.clock.advance(6.0)  # the next pass (a period, 6 s, later)
    runner.run_due()
    silent = world.container_instance()
    assert silent["agentConnected"] is False
    assert silent["version"] == version + 1  # a connection change is a state change of the instance
    # the scheduler sees it too: nothing is placed on a disconnected agent
    answer = tasks.run_task(
        world.ctx(),
        {
            "taskDefinition": "web",
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": [world.subnet]}},
        },
    )
    assert [f["reason"] for f in answer["failures"]] == ["AGENT"]

    runner.run_due()  # nothing more to do: no second bump
    assert world.container_instance()["version"] == version + 1
    world.poll()
    back = world.container_instance()
    assert back["agentConnected"] is True and back["version"] == version + 2
    world.poll()
    assert world.container_instance()["version"] == version + 2  # polls of a connected agent change nothing


def test_a_poll_between_listing_and_reconciling_keeps_the_agent_connected(world: World) -> None:
    """Level-triggered: the key is re-read in its transaction, so a stale listing changes nothing."""
    world.clock.advance(61.0)
    runner = world.runner()
    loop = next(s.loop for s in runner._states.values() if s.loop.name == "agent-connection")
    with world.db.read() as conn:
        keys = loop.pending(conn, world.clock())
    assert [k.id for k in keys] == [world.instance["id"]]
    world.poll()
    with world.db.transaction() as conn:
        assert loop.reconcile(conn, world.ctx(), keys[0]) is False
    assert world.container_instance()["agentConnected"] is True


def test_an_eni_never_attached_fails_the_task_and_frees_the_address(world: World) -> None:
    free_before = world.free_addresses()
    task = world.run_task()
    arn = task["taskArn"]
    assert task["attachments"][0]["status"] == "PRECREATED"
    with world.db.read() as conn:
        eni_id = tasks_repo.get_tasks_by_arn(conn, [arn])[0]["eni_id"]
    assert world.free_addresses() == free_before - 1
    generation = world.instance["generation"]
    runner = world.runner()

    world.clock.advance(179.0)
    world.poll()  # the agent is there, it just never attaches the ENI
    runner.run_due()
    assert world.describe(arn)["tasks"][0]["lastStatus"] == "PROVISIONING"

    world.clock.advance(10.0)  # the next pass
    world.poll()
    runner.run_due()
    stopped = world.describe(arn)["tasks"][0]
    assert stopped["lastStatus"] == "STOPPED" and stopped["desiredStatus"] == "STOPPED"
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert stopped["stoppedReason"] == ENI_PROVISIONING_TIMEOUT_REASON
    assert stopped["stoppedAt"] == world.clock()
    assert stopped["attachments"][0]["status"] == "DELETED"
    assert [c["lastStatus"] for c in stopped["containers"]] == ["STOPPED"]
    assert world.free_addresses() == free_before
    with world.db.read() as conn:
        assert ec2_repo.get_eni(conn, REGION, eni_id) is None
        instance = tasks_repo.get_instance(conn, world.instance["id"])
    assert instance is not None and instance["generation"] > generation and instance["eni_used"] == 0
    assert world.instance["id"] in world.woken  # its agent's long poll hears of it at once
    assert world.container_instance()["pendingTasksCount"] == 0

    # and like every stopped task, it is gone an hour later
    world.clock.advance(3601.0)
    world.poll()
    runner.run_due()
    assert world.describe(arn)["failures"] == [{"arn": arn, "reason": "MISSING"}]


def test_an_attached_eni_is_not_timed_out(world: World) -> None:
    arn = world.run_task()["taskArn"]
    with world.db.transaction() as conn:
        task = tasks_repo.get_tasks_by_arn(conn, [arn])[0]
        instance = tasks_repo.get_instance(conn, world.instance["id"])
        assert instance is not None
        before = task_state.snapshot(task)
        eni = task_state.eni_details(task["spec"])
        assert eni is not None
        taskdoc.mark_attached(task["body"], eni, world.clock())
        task_state.attach(conn, world.ctx(), task, instance)
        task_state.save(conn, world.ctx(), task, before)
    world.clock.advance(1000.0)
    world.poll()
    world.runner().run_due()
    assert world.describe(arn)["tasks"][0]["lastStatus"] == "PENDING"


def test_a_task_stopped_before_its_eni_was_attached_is_finished_by_the_timeout(world: World) -> None:
    arn = world.run_task()["taskArn"]
    tasks.stop_task(world.ctx(), {"task": arn, "reason": "not needed"})
    assert world.describe(arn)["tasks"][0]["lastStatus"] == "DEPROVISIONING"
    world.clock.advance(181.0)
    world.poll()
    world.runner().run_due()
    stopped = world.describe(arn)["tasks"][0]
    assert stopped["lastStatus"] == "STOPPED"
    assert (stopped["stopCode"], stopped["stoppedReason"]) == ("UserInitiated", "not needed")


def test_a_key_that_fails_is_retried_after_a_backoff(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = world.run_task()["taskArn"]
    _stop_and_finish(world, arn)
    world.clock.advance(3601.0)
    runner = world.runner()
    real = reconcile_repo.delete_stopped_task
    calls: list[str] = []

    def flaky(conn: Any, task_id: str, stopped_before: float) -> bool:
        calls.append(task_id)
        if len(calls) == 1:
            raise RuntimeError("the store hiccuped")
        return real(conn, task_id, stopped_before)

    monkeypatch.setattr(reconcile_repo, "delete_stopped_task", flaky)
    result = runner.run_pass("stopped-task-purge")
    assert (result.keys, result.failed) == (1, 1)
    assert world.describe(arn)["tasks"] != []  # the failed transaction changed nothing
    assert runner.run_pass("stopped-task-purge").keys == 1 and len(calls) == 1  # backing off: not tried
    world.clock.advance(1.0)
    result = runner.run_pass("stopped-task-purge")
    assert (result.changed, result.failed) == (1, 0)
    assert world.describe(arn)["failures"][0]["reason"] == "MISSING"


def test_migration_0004_backfills_what_the_loops_read(tmp_path: Path) -> None:
    """A store from before the reconcilers: stopped tasks get their stop time, polled instances count as
    connected (until the agent loop's first pass decides)."""
    db = Database(sqlite_url(tmp_path))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
    instance = {
        "region": REGION, "cluster": "default", "ec2_instance_id": "i-0123456789abcdef0", "status": "ACTIVE",
        "registered_at": T0, "version": 1, "generation": 1, "availability_zone": "us-east-1a",
        "subnet_id": "subnet-1", "vpc_id": "vpc-1", "cpu_registered": 1, "memory_registered": 1,
        "eni_capacity": 1, "cpu_used": 0, "memory_used": 0, "eni_used": 0, "running_count": 0,
        "pending_count": 0, "body": "{}",
    }  # fmt: skip
    task = {
        "region": REGION, "cluster": "default", "family": "web", "task_group": "family:web",
        "launch_type": "EC2", "desired_status": "STOPPED", "version": 5, "cpu": 1, "memory": 1,
        "created_at": T0, "body": "{}", "spec": "{}",
    }  # fmt: skip
    with db.engine.begin() as conn:
        for id_, heartbeat, status in (
            ("polled", T0, "ACTIVE"),
            ("never", None, "ACTIVE"),
            ("gone", T0, "INACTIVE"),
        ):
            conn.execute(
                text(
                    "INSERT INTO container_instances (id, arn, agent_heartbeat, "
                    + ", ".join(instance)
                    + ") VALUES (:id, :id, :heartbeat, "
                    + ", ".join(f":{k}" for k in instance)
                    + ")"
                ),
                {**instance, "id": id_, "heartbeat": heartbeat, "status": status},
            )
        for id_, last in (("stopped", "STOPPED"), ("running", "RUNNING")):
            conn.execute(
                text(
                    "INSERT INTO tasks (id, arn, last_status, updated_at, "
                    + ", ".join(task)
                    + ") VALUES (:id, :id, :last, :updated, "
                    + ", ".join(f":{k}" for k in task)
                    + ")"
                ),
                {**task, "id": id_, "last": last, "updated": T0 + 7},
            )
    db.migrate()
    with db.engine.connect() as conn:
        connected = dict(conn.execute(text("SELECT id, agent_connected FROM container_instances")).all())
        stopped_at = dict(conn.execute(text("SELECT id, stopped_at FROM tasks")).all())
    db.dispose()
    assert {k: bool(v) for k, v in connected.items()} == {"polled": True, "never": False, "gone": False}
    assert stopped_at == {"stopped": T0 + 7, "running": None}
