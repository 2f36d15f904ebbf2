"""The default VPC a region gets the first time it is used, laid out as AWS lays one out.

``172.31.0.0/16``; one default subnet per availability zone (``172.31.0.0/20``, ``172.31.16.0/20``, ... in
zone order) with ``DefaultForAz`` and ``MapPublicIpOnLaunch`` true; the ``default`` security group (all
inbound from itself, all outbound); ``IsDefault`` true (VPC User Guide, "Default VPCs").

It is made once per region: an ``ec2_regions`` row records it, so a user who deletes the default VPC
does not get it back on the next request (as on AWS), and two server processes never both make one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import subnets, vpcs
from taskvpc.netmodel import ipam
from taskvpc.store import ec2_repo


def create_default_vpc(conn: Connection, ctx: RequestContext) -> dict[str, Any]:
    layout = ipam.default_vpc_layout(ctx.region)
    vpc = vpcs.new_vpc(conn, ctx, layout.cidr_block, is_default=True)
    for planned in layout.subnets:
        zone = ipam.AvailabilityZone(planned.availability_zone, planned.availability_zone_id)
        subnets.new_subnet(conn, ctx, vpc["VpcId"], planned.cidr_block, zone, default_for_az=True)
    return vpc


def ensure_region(ctx: RequestContext) -> None:
    """Give ``ctx.region`` its default VPC unless it has been set up before (idempotent, race-free)."""
    with ctx.db.read() as conn:
        if ec2_repo.region_ready(conn, ctx.region):
            return
    with ctx.db.transaction() as conn:
        if not ec2_repo.claim_region(conn, ctx.region, ctx.now):
            return  # another request or server process set the region up
        vpc = create_default_vpc(conn, ctx)
        ec2_repo.set_region_default_vpc(conn, ctx.region, vpc["VpcId"])
