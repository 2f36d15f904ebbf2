"""The task-ENI store hooks and the requester-managed rules, on a real (SQLite) Database.

The use cases are called directly with a RequestContext, as the API layer calls them; the ECS task
lifecycle calls the hooks the same way, inside its own transaction.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import default_vpc, eni_attributes, enis, security_groups, subnets, vpcs
from taskvpc.control.ec2.task_enis import attach_task_eni, release_task_eni, reserve_task_eni
from taskvpc.control.identity import Principal
from taskvpc.domain.errors import ClientError
from taskvpc.store.db import Database, sqlite_url
from taskvpc.store.schema import metadata

ACCOUNT = "123456789012"
REGION = "us-east-1"
ATTACHMENT = "d9e7735a-16aa-4128-bc7a-b2d51e0a0b1c"


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url(tmp_path))
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture()
def ctx(db: Database) -> RequestContext:
    counter = itertools.count()
    context = RequestContext(
        region=REGION,
        account_id=ACCOUNT,
        principal=Principal.root(ACCOUNT),
        now=1_800_000_000.0,
        request_id="test",
        db=db,
        new_id=lambda: str(uuid.UUID(int=next(counter))),
    )
    default_vpc.ensure_region(context)
    return context


def _small_subnet(ctx: RequestContext, cidr: str = "10.0.0.0/28") -> tuple[str, str]:
    vpc_id = vpcs.create_vpc(ctx, {"CidrBlock": "10.0.0.0/16"})["Vpc"]["VpcId"]
    subnet_id = subnets.create_subnet(ctx, {"VpcId": vpc_id, "CidrBlock": cidr})["Subnet"]["SubnetId"]
    return vpc_id, subnet_id


def _raises(code: str, call: Any, *args: Any) -> ClientError:
    with pytest.raises(ClientError) as excinfo:
        call(*args)
    assert excinfo.value.code == code, excinfo.value
    return excinfo.value


def test_migrations_build_exactly_the_declared_schema(db: Database) -> None:
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diff == []


def test_reserve_attach_release(ctx: RequestContext) -> None:
    vpc_id, subnet_id = _small_subnet(ctx)
    with ctx.db.transaction() as conn:
        eni = reserve_task_eni(conn, ctx, [subnet_id], [], ATTACHMENT)
    assert eni["Status"] == "available"
    assert eni["RequesterManaged"] is True
    assert eni["RequesterId"]
    assert eni["InterfaceType"] == "interface"
    assert eni["Description"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:attachment/{ATTACHMENT}"
    assert eni["SubnetId"] == subnet_id and eni["VpcId"] == vpc_id
    assert [g["GroupName"] for g in eni["Groups"]] == ["default"]  # none given: the VPC's default group
    assert eni["PrivateIpAddress"].startswith("10.0.0.")
    with ctx.db.transaction() as conn:
        attached = attach_task_eni(conn, ctx, eni["NetworkInterfaceId"], "i-0123456789abcdef0")
    assert attached["Status"] == "in-use"
    assert attached["Attachment"]["InstanceId"] == "i-0123456789abcdef0"
    assert attached["Attachment"]["Status"] == "attached"
    assert attached["Attachment"]["DeviceIndex"] == 1
    assert attached["Attachment"]["AttachmentId"].startswith("eni-attach-")
    described = enis.describe_network_interfaces(ctx, {"NetworkInterfaceIds": [eni["NetworkInterfaceId"]]})
    assert described["NetworkInterfaces"][0]["Status"] == "in-use"
    described = enis.describe_network_interfaces(
        ctx, {"Filters": [{"Name": "requester-managed", "Values": ["true"]}]}
    )
    assert [e["NetworkInterfaceId"] for e in described["NetworkInterfaces"]] == [eni["NetworkInterfaceId"]]
    assert (
        subnets.describe_subnets(ctx, {"SubnetIds": [subnet_id]})["Subnets"][0]["AvailableIpAddressCount"]
        == 10
    )
    with ctx.db.transaction() as conn:
        release_task_eni(conn, ctx, eni["NetworkInterfaceId"])
        release_task_eni(conn, ctx, eni["NetworkInterfaceId"])  # already gone: fine
    assert (
        subnets.describe_subnets(ctx, {"SubnetIds": [subnet_id]})["Subnets"][0]["AvailableIpAddressCount"]
        == 11
    )
    assert enis.describe_network_interfaces(ctx, {})["NetworkInterfaces"] == []


def test_user_may_not_delete_or_modify_a_task_eni(ctx: RequestContext) -> None:
    vpc_id, subnet_id = _small_subnet(ctx)
    group_id = security_groups.create_security_group(
        ctx, {"GroupName": "t", "Description": "t", "VpcId": vpc_id}
    )["GroupId"]
    with ctx.db.transaction() as conn:
        eni_id = reserve_task_eni(conn, ctx, [subnet_id], [group_id], ATTACHMENT)["NetworkInterfaceId"]
    refused = _raises("AuthFailure", enis.delete_network_interface, ctx, {"NetworkInterfaceId": eni_id})
    assert refused.message == "You do not have permission to access the specified resource."
    for change in (
        {"Groups": [group_id]},
        {"SourceDestCheck": {"Value": False}},
        {"Description": {"Value": "x"}},
    ):
        _raises(
            "AuthFailure",
            eni_attributes.modify_network_interface_attribute,
            ctx,
            {"NetworkInterfaceId": eni_id, **change},
        )
    with ctx.db.transaction() as conn:
        attach_task_eni(conn, ctx, eni_id, "i-0123456789abcdef0")
    in_use = _raises(
        "InvalidParameterValue", enis.delete_network_interface, ctx, {"NetworkInterfaceId": eni_id}
    )
    assert in_use.message == f"Network interface '{eni_id}' is currently in use."
    # Its group is in use and its subnet has a dependency while the task ENI lives.
    _raises("DependencyViolation", security_groups.delete_security_group, ctx, {"GroupId": group_id})
    _raises("DependencyViolation", subnets.delete_subnet, ctx, {"SubnetId": subnet_id})
    with ctx.db.transaction() as conn:
        release_task_eni(conn, ctx, eni_id)
    security_groups.delete_security_group(ctx, {"GroupId": group_id})
    subnets.delete_subnet(ctx, {"SubnetId": subnet_id})


def test_reserve_picks_the_first_subnet_with_room(ctx: RequestContext) -> None:
    vpc_id, full = _small_subnet(ctx)
    spare = subnets.create_subnet(ctx, {"VpcId": vpc_id, "CidrBlock": "10.0.1.0/24"})["Subnet"]["SubnetId"]
    reserved = []
    with ctx.db.transaction() as conn:
        for n in range(11):
            reserved.append(reserve_task_eni(conn, ctx, [full, spare], [], f"attachment-{n}"))
        overflow = reserve_task_eni(conn, ctx, [full, spare], [], "attachment-11")
    assert {e["SubnetId"] for e in reserved} == {full}
    assert len({e["PrivateIpAddress"] for e in reserved}) == 11
    assert overflow["SubnetId"] == spare
    with ctx.db.transaction() as conn:
        error = _raises(
            "InsufficientFreeAddressesInSubnet", reserve_task_eni, conn, ctx, [full], [], "attachment-12"
        )
    assert error.message == "The specified subnet does not have enough free addresses to satisfy the request."


def test_reserve_checks_its_inputs(ctx: RequestContext) -> None:
    _, subnet_id = _small_subnet(ctx)
    with ctx.db.transaction() as conn:
        other_vpc_group = security_groups.by_name_in_default_vpc(conn, ctx, "default")["GroupId"]
    with ctx.db.transaction() as conn:
        _raises(
            "InvalidSubnetID.NotFound",
            reserve_task_eni,
            conn,
            ctx,
            ["subnet-0123456789abcdef0"],
            [],
            ATTACHMENT,
        )
        _raises("InvalidSubnetID.Malformed", reserve_task_eni, conn, ctx, ["nope"], [], ATTACHMENT)
        _raises("InvalidParameter", reserve_task_eni, conn, ctx, [subnet_id], [other_vpc_group], ATTACHMENT)
        _raises(
            "InvalidGroup.NotFound",
            reserve_task_eni,
            conn,
            ctx,
            [subnet_id],
            ["sg-0123456789abcdef0"],
            ATTACHMENT,
        )
