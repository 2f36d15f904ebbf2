"""EC2 instances: RunInstances and DescribeInstances (state changes are in ``instances_state.py``).

An instance is a row whose document is the EC2 ``Instance`` shape. RunInstances writes it ``pending``
with a primary ENI (an address from the subnet, attached at device index 0); the host supervisor of
``taskvpc up`` (``taskvpc/cli/instances.py``) makes the host and moves it to ``running``. Every
instance carries the tag ``taskvpc:kernel=shared``: it is a network namespace, a cgroup and an agent
process on the machine that runs ``taskvpc up``, sharing that machine's kernel.

Launched without a ``SubnetId``, an instance goes to a default subnet of the default VPC; the
instances of one call are spread over those subnets in AZ order (EC2 would put them all in one AZ;
spreading is what an ECS cluster wants and what ``--count 3`` demonstrates here).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import describe, enis, errors, ids, instances_catalog as catalog, subnets
from taskvpc.domain import ecs_config, instance_types
from taskvpc.domain.errors import ClientError
from taskvpc.domain.pagination import Pager
from taskvpc.netmodel import filters
from taskvpc.store import ec2_repo, instances_repo

Doc = dict[str, Any]
INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
STATE_CODES = {
    "pending": 0,
    "running": 16,
    "shutting-down": 32,
    "terminated": 48,
    "stopping": 64,
    "stopped": 80,
}
KERNEL_TAG = {"Key": "taskvpc:kernel", "Value": "shared"}
MAX_USER_DATA = 16 * 1024  # bytes before base64, as EC2 allows
MAX_COUNT = 20  # taskvpc's own bound per call: each instance is a process on this machine


def state(name: str) -> Doc:
    return {"Code": STATE_CODES[name], "Name": name}


def iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def instance_malformed(value: str) -> ClientError:
    # 'Invalid id: "i-xyz"' (InvalidInstanceID.Malformed; CLI output quoted in public repos)
    return ClientError("InvalidInstanceID.Malformed", f'Invalid id: "{value}"')


def instance_not_found(values: list[str]) -> ClientError:
    # "The instance ID 'i-0123' does not exist"; several: "The instance IDs 'i-1, i-2' do not exist"
    if len(values) == 1:
        return ClientError("InvalidInstanceID.NotFound", f"The instance ID '{values[0]}' does not exist")
    return ClientError("InvalidInstanceID.NotFound", f"The instance IDs '{', '.join(values)}' do not exist")


def check_ids(values: list[str]) -> None:
    for value in values:
        if not INSTANCE_ID.fullmatch(value):
            raise instance_malformed(value)


def require_all(docs: list[Doc], requested: list[str]) -> None:
    found = {doc["InstanceId"] for doc in docs}
    missing = [i for i in dict.fromkeys(requested) if i not in found]
    if missing:
        raise instance_not_found(missing)


def user_data_text(encoded: str | None) -> str:
    """The user data as text (the CLI and SDKs send it base64-encoded)."""
    if not encoded:
        return ""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        # "Invalid BASE64 encoding of user data." (InvalidParameterValue; CLI output in public repos)
        raise errors.invalid_parameter_value("Invalid BASE64 encoding of user data.") from None
    if len(raw) > MAX_USER_DATA:
        # "User data is limited to 16384 bytes" (InvalidParameterValue) # unconfirmed
        raise errors.invalid_parameter_value("User data is limited to 16384 bytes")
    return raw.decode("utf-8", errors="replace")


# ---- RunInstances ---------------------------------------------------------------------------------


def _counts(params: dict[str, Any]) -> tuple[int, int]:
    low, high = params.get("MinCount"), params.get("MaxCount")
    if low is None or high is None:
        raise errors.missing_parameter("MinCount" if low is None else "MaxCount")
    if low < 1 or high < 1:
        # "Value (0) for parameter minCount is invalid. ..." # unconfirmed
        raise errors.invalid_parameter_value(f"Value ({min(low, high)}) for parameter minCount is invalid.")
    if low > high:
        # "Invalid value for parameter MaxCount: 1, must be greater than or equal to MinCount" # unconfirmed
        raise errors.invalid_parameter_value(
            f"Invalid value for parameter MaxCount: {high}, must be greater than or equal to MinCount"
        )
    if low > MAX_COUNT:
        # EC2's answer when the account's vCPU quota is short # unconfirmed text
        raise ClientError(
            "InstanceLimitExceeded",
            f"You have requested more instances ({low}) than your current instance limit of {MAX_COUNT} "
            "allows for the specified instance type (taskvpc runs each instance on this machine).",
        )
    return low, min(high, MAX_COUNT)


def _interface_spec(params: dict[str, Any]) -> tuple[str | None, list[str], str | None]:
    """(subnet, groups, private IP) from SubnetId/SecurityGroupIds or NetworkInterfaces[0]."""
    subnet_id = params.get("SubnetId")
    group_ids = list(params.get("SecurityGroupIds") or [])
    private_ip = params.get("PrivateIpAddress")
    interfaces = params.get("NetworkInterfaces") or []
    if interfaces:
        if subnet_id or group_ids:
            # "Network interfaces and an instance-level subnet ID may not be specified on the same
            # request" (InvalidParameterCombination; CLI output quoted in public repos)
            raise ClientError(
                "InvalidParameterCombination",
                "Network interfaces and an instance-level subnet ID may not be specified on the same request"
                if subnet_id
                else "Network interfaces and an instance-level security groups may not be specified on "
                "the same request",
            )
        if len(interfaces) > 1 or interfaces[0].get("NetworkInterfaceId"):
            raise ClientError(
                "UnsupportedOperation", "taskvpc launches an instance with one new network interface only."
            )
        first = interfaces[0]
        subnet_id = first.get("SubnetId")
        group_ids = list(first.get("Groups") or [])
        private_ip = first.get("PrivateIpAddress") or private_ip
    if params.get("SecurityGroups"):
        raise ClientError(
            "UnsupportedOperation", "taskvpc takes security groups by id (SecurityGroupIds), not by name."
        )
    if subnet_id is not None:
        ids.check("subnet", [subnet_id])
    ids.check("sg", group_ids)
    return subnet_id, group_ids, private_ip


def _subnets_for(conn: Connection, ctx: RequestContext, subnet_id: str | None, count: int) -> list[Doc]:
    if subnet_id is not None:
        return [subnets.require(conn, ctx, subnet_id)] * count
    default_vpc = ec2_repo.default_vpc(conn, ctx.region)
    if default_vpc is None:
        raise errors.no_default_vpc()
    candidates = ec2_repo.list_subnets(conn, ctx.region, vpc_id=default_vpc["VpcId"])
    defaults = sorted((s for s in candidates if s.get("DefaultForAz")), key=lambda s: s["AvailabilityZone"])
    if not defaults:
        raise errors.no_default_vpc()
    return [defaults[n % len(defaults)] for n in range(count)]


def _instance_doc(
    ctx: RequestContext,
    params: dict[str, Any],
    image: catalog.Image,
    kind: instance_types.InstanceType,
    index: int,
    eni: Doc,
    tags: list[dict[str, str]],
    user_data: str,
) -> Doc:
    instance_id = ids.new_id(ctx, "i")
    groups = [{"GroupId": g["GroupId"], "GroupName": g["GroupName"]} for g in eni["Groups"]]
    doc: Doc = {
        "AmiLaunchIndex": index,
        "ImageId": image.image_id,
        "InstanceId": instance_id,
        "InstanceType": kind.name,
        "LaunchTime": iso(ctx.now),
        "Monitoring": {"State": "disabled"},
        "Placement": {"AvailabilityZone": eni["AvailabilityZone"], "GroupName": "", "Tenancy": "default"},
        "PrivateDnsName": eni["PrivateDnsName"],
        "PrivateIpAddress": eni["PrivateIpAddress"],
        "ProductCodes": [],
        "PublicDnsName": "",
        "State": state("pending"),
        "StateTransitionReason": "",
        "SubnetId": eni["SubnetId"],
        "VpcId": eni["VpcId"],
        "Architecture": image.architecture,
        "BlockDeviceMappings": [],
        "ClientToken": params.get("ClientToken") or "",
        "EbsOptimized": False,
        "EnaSupport": True,
        "Hypervisor": "xen",
        "NetworkInterfaces": [],
        "RootDeviceName": "/dev/xvda",
        "RootDeviceType": "ebs",
        "SecurityGroups": groups,
        "SourceDestCheck": True,
        "Tags": [*tags, KERNEL_TAG],
        "VirtualizationType": "hvm",
        "CpuOptions": {"CoreCount": max(1, kind.vcpus // 2), "ThreadsPerCore": 2 if kind.vcpus > 1 else 1},
        "PlatformDetails": "Windows" if image.windows else "Linux/UNIX",
        "UsageOperation": "RunInstances:0002" if image.windows else "RunInstances",
        # taskvpc's own, never shown (keys starting with "_" are dropped from answers)
        "_UserData": user_data,
        "_OsFamily": image.os_family,
        "_Cluster": ecs_config.cluster(ecs_config.parse(user_data)),
        "_PrimaryEni": eni["NetworkInterfaceId"],
        "_Region": ctx.region,
    }
    if image.windows:
        doc["Platform"] = "windows"
    if params.get("KeyName"):
        doc["KeyName"] = params["KeyName"]
    return doc


def _interface_view(eni: Doc, instance_id: str, now: float, groups: list[Doc]) -> Doc:
    return {
        "Attachment": {
            "AttachTime": iso(now),
            "AttachmentId": "eni-attach-" + eni["NetworkInterfaceId"][4:],
            "DeleteOnTermination": True,
            "DeviceIndex": 0,
            "Status": "attached",
            "NetworkCardIndex": 0,
        },
        "Description": "",
        "Groups": groups,
        "Ipv6Addresses": [],
        "MacAddress": eni["MacAddress"],
        "NetworkInterfaceId": eni["NetworkInterfaceId"],
        "OwnerId": eni["OwnerId"],
        "PrivateDnsName": eni["PrivateDnsName"],
        "PrivateIpAddress": eni["PrivateIpAddress"],
        "PrivateIpAddresses": eni["PrivateIpAddresses"],
        "SourceDestCheck": True,
        "Status": "in-use",
        "SubnetId": eni["SubnetId"],
        "VpcId": eni["VpcId"],
        "InterfaceType": "interface",
    }


def _tags(params: dict[str, Any]) -> list[dict[str, str]]:
    from taskvpc.control.ec2 import tags as ec2_tags

    found: list[dict[str, str]] = []
    for spec in params.get("TagSpecifications") or ():
        kind = spec.get("ResourceType")
        if kind not in ("instance", "volume", "network-interface"):
            raise errors.invalid_parameter_value(
                f"'{kind}' is not a valid taggable resource type for this operation."  # unconfirmed
            )
        if kind == "instance":  # volumes: there are none; interface tags: not kept (taskvpc's own)
            found.extend(ec2_tags.check_tags(spec.get("Tags") or []))
    return [tag for tag in found if tag["Key"] != KERNEL_TAG["Key"]]  # that one is ours to say


def run_instances(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    low, high = _counts(params)
    image = catalog.require_image(params.get("ImageId") or catalog.DEFAULT_LINUX.image_id)
    # EC2 defaults to m1.small, a type taskvpc has no limits for; t3.micro is the nearest it knows
    type_name = params.get("InstanceType") or "t3.micro"
    kind = instance_types.lookup(type_name)
    if kind is None:
        # "Invalid value 'c5.foo' for InstanceType." (InvalidParameterValue; CLI output) # unconfirmed case
        raise errors.invalid_parameter_value(f"Invalid value '{type_name}' for InstanceType.")
    subnet_id, group_ids, private_ip = _interface_spec(params)
    if private_ip and high > 1:
        raise ClientError(
            "InvalidParameterCombination",  # unconfirmed text
            "Cannot specify a private IP address when launching more than one instance.",
        )
    tags = _tags(params)
    user_data = user_data_text(params.get("UserData"))
    token = params.get("ClientToken")
    with ctx.db.transaction() as conn:
        if token:
            earlier = instances_repo.by_client_token(conn, ctx.region, token)
            if earlier:  # the same request again: the same reservation, nothing new
                return _reservation(sorted(earlier, key=lambda d: d["AmiLaunchIndex"]))
        placed = _subnets_for(conn, ctx, subnet_id, high)
        if sum(enis.free_addresses(conn, s) for s in {s["SubnetId"]: s for s in placed}.values()) < low:
            # "There are not enough free addresses in subnet 'subnet-...' to satisfy the requested number
            # of instances." (InsufficientFreeAddressesInSubnet; EC2 errors doc)
            raise ClientError(
                "InsufficientFreeAddressesInSubnet",
                f"There are not enough free addresses in subnet '{placed[0]['SubnetId']}' to satisfy the "
                "requested number of instances.",
            )
        describe.dry_run(params)
        reservation_id = ids.new_id(ctx, "r")
        docs = []
        for index, subnet in enumerate(placed):
            groups = enis.check_groups(conn, ctx, subnet, group_ids)
            eni = enis.allocate(
                conn,
                ctx,
                subnet,
                groups,
                description="Primary network interface",
                requested_ip=private_ip,
            )
            eni_view = enis.view(conn, ctx, [eni])[0]
            doc = _instance_doc(ctx, params, image, kind, index, eni_view, tags, user_data)
            doc["_ReservationId"] = reservation_id
            doc["_PrefixLength"] = int(subnet["CidrBlock"].split("/")[1])
            interface = _interface_view(eni_view, doc["InstanceId"], ctx.now, doc["SecurityGroups"])
            doc["NetworkInterfaces"] = [interface]
            eni["Status"] = "in-use"
            eni["Attachment"] = {**interface["Attachment"], "InstanceId": doc["InstanceId"]}
            eni["Attachment"]["InstanceOwnerId"] = ctx.account_id
            ec2_repo.update_eni(conn, eni)
            instances_repo.insert_instance(conn, ctx.region, doc, token, ctx.now)
            docs.append(doc)
    return _reservation(docs, ctx.account_id)


def _reservation(docs: list[Doc], owner: str | None = None) -> dict[str, Any]:
    first = docs[0]
    account = owner or first["NetworkInterfaces"][0]["OwnerId"]
    return {
        "ReservationId": first["_ReservationId"],
        "OwnerId": account,
        "Groups": [],
        "Instances": [shown(doc) for doc in docs],
    }


def shown(doc: Doc) -> Doc:
    return {key: value for key, value in doc.items() if not key.startswith("_")}


# ---- DescribeInstances ----------------------------------------------------------------------------


def _filter_values(doc: Doc) -> dict[str, filters.FilterValue]:
    interfaces = doc.get("NetworkInterfaces") or []
    return {
        "availability-zone": doc["Placement"]["AvailabilityZone"],
        "image-id": doc["ImageId"],
        "instance-id": doc["InstanceId"],
        "instance-state-code": str(doc["State"]["Code"]),
        "instance-state-name": doc["State"]["Name"],
        "instance-type": doc["InstanceType"],
        "network-interface.network-interface-id": [i["NetworkInterfaceId"] for i in interfaces],
        "platform": doc.get("Platform"),
        "private-ip-address": doc.get("PrivateIpAddress"),
        "reservation-id": doc["_ReservationId"],
        "subnet-id": doc.get("SubnetId"),
        "vpc-id": doc.get("VpcId"),
        "instance.group-id": [g["GroupId"] for g in doc["SecurityGroups"]],
        "client-token": doc.get("ClientToken"),
    }


_FILTERS = (
    "availability-zone",
    "image-id",
    "instance-id",
    "instance-state-code",
    "instance-state-name",
    "instance-type",
    "network-interface.network-interface-id",
    "platform",
    "private-ip-address",
    "reservation-id",
    "subnet-id",
    "vpc-id",
    "instance.group-id",
    "client-token",
)
LISTING = describe.Listing("i", "InstanceId", _FILTERS, _filter_values)


def describe_instances(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    requested = list(params.get("InstanceIds") or [])
    check_ids(requested)
    filters.check_filter_names(params.get("Filters"), _FILTERS)
    limit = params.get("MaxResults")
    if limit is not None and requested:
        # "The parameter instancesSet cannot be used with the parameter maxResults"
        # (InvalidParameterCombination; CLI output quoted in public repos)
        raise ClientError(
            "InvalidParameterCombination",
            "The parameter instancesSet cannot be used with the parameter maxResults",
        )
    if limit is not None and not 5 <= limit <= 1000:
        # "Value ( 2 ) for parameter maxResults is invalid. Expecting a value between 5 and 1000."
        raise errors.invalid_parameter_value(
            f"Value ( {limit} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000."
        )
    describe.dry_run(params)
    with ctx.db.read() as conn:
        docs = instances_repo.list_instances(conn, ctx.region, requested or None)
    require_all(docs, requested)
    pager = Pager.of(ctx.page_key, "ec2:Reservations", ctx.region, ctx.account_id, params)
    chunk, token = describe.page(LISTING, describe.select(LISTING, docs, params), params, pager)
    reservations: dict[str, list[Doc]] = {}
    for doc in chunk:
        reservations.setdefault(doc["_ReservationId"], []).append(doc)
    result: dict[str, Any] = {
        "Reservations": [
            {
                "ReservationId": rid,
                "OwnerId": ctx.account_id,
                "Groups": [],
                "Instances": [shown(d) for d in members],
            }
            for rid, members in reservations.items()
        ]
    }
    if token is not None:
        result["NextToken"] = token
    return result
