"""What RunInstances launches from: the ECS-optimized images and the instance types taskvpc knows.

Images are a fixed catalog named as AWS names the ECS-optimized AMIs (``al2023-ami-ecs-hvm-...``,
``Windows_Server-2022-English-Full-ECS_Optimized-...``). Their ids are derived from their names, so one
name has the same ``ami-`` id in every region, every database and every release of taskvpc. A Windows
image carries the ``ecs.os-family`` its container instance registers (ECS's values, e.g.
``WINDOWS_SERVER_2022_FULL``); instances of it register as Windows, and their tasks cannot run here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import describe
from taskvpc.domain import instance_types
from taskvpc.domain.errors import ClientError
from taskvpc.domain.pagination import Pager
from taskvpc.netmodel import filters

Doc = dict[str, Any]
_AMI_ID = re.compile(r"ami-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_CREATED = "2024-11-15T00:00:00.000Z"


@dataclass(frozen=True)
class Image:
    name: str
    architecture: str
    os_family: str  # what the container instance registers as ecs.os-family
    description: str

    @property
    def image_id(self) -> str:
        return "ami-" + hashlib.sha256(f"taskvpc-image:{self.name}".encode()).hexdigest()[:17]

    @property
    def windows(self) -> bool:
        return self.os_family.startswith("WINDOWS")


IMAGES: tuple[Image, ...] = (
    Image(
        "al2023-ami-ecs-hvm-2023.0.20241115-kernel-6.1-x86_64",
        "x86_64",
        "LINUX",
        "Amazon Linux AMI 2023.0.20241115 x86_64 ECS HVM EBS",
    ),
    Image(
        "al2023-ami-ecs-hvm-2023.0.20241115-kernel-6.1-arm64",
        "arm64",
        "LINUX",
        "Amazon Linux AMI 2023.0.20241115 arm64 ECS HVM EBS",
    ),
    Image(
        "amzn2-ami-ecs-hvm-2.0.20241115-x86_64-ebs",
        "x86_64",
        "LINUX",
        "Amazon Linux AMI 2.0.20241115 x86_64 ECS HVM GP2",
    ),
    Image(
        "Windows_Server-2022-English-Full-ECS_Optimized-2024.11.13",
        "x86_64",
        "WINDOWS_SERVER_2022_FULL",
        "Microsoft Windows Server 2022 Full optimized for ECS",
    ),
    Image(
        "Windows_Server-2019-English-Full-ECS_Optimized-2024.11.13",
        "x86_64",
        "WINDOWS_SERVER_2019_FULL",
        "Microsoft Windows Server 2019 Full optimized for ECS",
    ),
)
BY_ID = {image.image_id: image for image in IMAGES}
DEFAULT_LINUX = IMAGES[0]


def ami_malformed(value: str) -> ClientError:
    # 'Invalid id: "ami-xyz" (expecting "ami-...")' (InvalidAMIID.Malformed, CLI output in public repos)
    return ClientError("InvalidAMIID.Malformed", f'Invalid id: "{value}" (expecting "ami-...")')


def ami_not_found(values: list[str]) -> ClientError:
    # "The image id '[ami-0123456789abcdef0]' does not exist" (CLI output quoted in public repos)
    return ClientError("InvalidAMIID.NotFound", f"The image id '[{', '.join(values)}]' does not exist")


def require_image(image_id: str) -> Image:
    if not _AMI_ID.fullmatch(image_id):
        raise ami_malformed(image_id)
    image = BY_ID.get(image_id)
    if image is None:
        raise ami_not_found([image_id])
    return image


def image_doc(image: Image) -> Doc:
    doc: Doc = {
        "Architecture": image.architecture,
        "CreationDate": _CREATED,
        "ImageId": image.image_id,
        "ImageLocation": f"amazon/{image.name}",
        "ImageType": "machine",
        "Public": True,
        "OwnerId": "591542846629",  # the ECS-optimized AMIs' owner account # unconfirmed for Windows
        "PlatformDetails": "Windows" if image.windows else "Linux/UNIX",
        "UsageOperation": "RunInstances:0002" if image.windows else "RunInstances",
        "State": "available",
        "BlockDeviceMappings": [],
        "Description": image.description,
        "EnaSupport": True,
        "Hypervisor": "xen",
        "ImageOwnerAlias": "amazon",
        "Name": image.name,
        "RootDeviceName": "/dev/sda1" if image.windows else "/dev/xvda",
        "RootDeviceType": "ebs",
        "VirtualizationType": "hvm",
    }
    if image.windows:
        doc["Platform"] = "windows"
    return doc


_IMAGE_FILTERS = (
    "architecture",
    "image-id",
    "image-type",
    "is-public",
    "name",
    "owner-alias",
    "owner-id",
    "platform",
    "root-device-type",
    "state",
    "virtualization-type",
)


def _image_values(doc: Doc) -> dict[str, filters.FilterValue]:
    return {
        "architecture": doc["Architecture"],
        "image-id": doc["ImageId"],
        "image-type": doc["ImageType"],
        "is-public": doc["Public"],
        "name": doc["Name"],
        "owner-alias": doc["ImageOwnerAlias"],
        "owner-id": doc["OwnerId"],
        "platform": doc.get("Platform"),
        "root-device-type": doc["RootDeviceType"],
        "state": doc["State"],
        "virtualization-type": doc["VirtualizationType"],
    }


IMAGE_LISTING = describe.Listing("ami", "ImageId", _IMAGE_FILTERS, _image_values)


def describe_images(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    requested = list(params.get("ImageIds") or [])
    for image_id in requested:
        if not _AMI_ID.fullmatch(image_id):
            raise ami_malformed(image_id)
    filters.check_filter_names(params.get("Filters"), _IMAGE_FILTERS)
    describe.dry_run(params)
    missing = [image_id for image_id in dict.fromkeys(requested) if image_id not in BY_ID]
    if missing:
        raise ami_not_found(missing)
    owners = set(params.get("Owners") or ())
    docs = [image_doc(image) for image in IMAGES if not requested or image.image_id in requested]
    if owners:  # the catalog's images are Amazon's: "self" (this account) owns none of them
        docs = [d for d in docs if owners & {"amazon", d["OwnerId"]}]
    pager = Pager.of(ctx.page_key, "ec2:Images", ctx.region, ctx.account_id, params)
    chunk, token = describe.page(IMAGE_LISTING, describe.select(IMAGE_LISTING, docs, params), params, pager)
    result: dict[str, Any] = {"Images": chunk}
    if token is not None:
        result["NextToken"] = token
    return result


# ---- instance types -------------------------------------------------------------------------------


def architecture_of(type_name: str) -> str:
    """Graviton families (a ``g`` after the generation digit: ``m6g``, ``t4g``) are arm64."""
    family = type_name.split(".")[0]
    return "arm64" if re.fullmatch(r"[a-z]+\d+g[a-z]*", family) else "x86_64"


def type_doc(kind: instance_types.InstanceType) -> Doc:
    return {
        "InstanceType": kind.name,
        "CurrentGeneration": True,
        "SupportedUsageClasses": ["on-demand", "spot"],
        "SupportedRootDeviceTypes": ["ebs"],
        "SupportedVirtualizationTypes": ["hvm"],
        "BareMetal": False,
        "Hypervisor": "nitro",
        "ProcessorInfo": {"SupportedArchitectures": [architecture_of(kind.name)]},
        "VCpuInfo": {
            "DefaultVCpus": kind.vcpus,
            "DefaultCores": max(1, kind.vcpus // 2),
            "DefaultThreadsPerCore": 2 if kind.vcpus > 1 else 1,
        },
        "MemoryInfo": {"SizeInMiB": kind.memory_mib},
        "NetworkInfo": {
            "MaximumNetworkInterfaces": kind.max_enis,
            "MaximumNetworkCards": 1,
            "DefaultNetworkCardIndex": 0,
            "NetworkCards": [{"NetworkCardIndex": 0, "MaximumNetworkInterfaces": kind.max_enis}],
            "Ipv6Supported": False,
            "EnaSupport": "required",
        },
        "InstanceStorageSupported": False,
        "BurstablePerformanceSupported": kind.name.startswith("t"),
    }


_TYPE_FILTERS = (
    "instance-type",
    "current-generation",
    "vcpu-info.default-vcpus",
    "memory-info.size-in-mib",
    "network-info.maximum-network-interfaces",
    "processor-info.supported-architecture",
    "burstable-performance-supported",
)


def _type_values(doc: Doc) -> dict[str, filters.FilterValue]:
    return {
        "instance-type": doc["InstanceType"],
        "current-generation": doc["CurrentGeneration"],
        "vcpu-info.default-vcpus": doc["VCpuInfo"]["DefaultVCpus"],
        "memory-info.size-in-mib": doc["MemoryInfo"]["SizeInMiB"],
        "network-info.maximum-network-interfaces": doc["NetworkInfo"]["MaximumNetworkInterfaces"],
        "processor-info.supported-architecture": doc["ProcessorInfo"]["SupportedArchitectures"],
        "burstable-performance-supported": doc["BurstablePerformanceSupported"],
    }


TYPE_LISTING = describe.Listing("", "InstanceType", _TYPE_FILTERS, _type_values)


def invalid_instance_types(names: list[str]) -> ClientError:
    # "The following supplied instance types do not exist: [m5.foo]" (InvalidInstanceType, CLI output)
    return ClientError(
        "InvalidInstanceType", f"The following supplied instance types do not exist: [{', '.join(names)}]"
    )


def describe_instance_types(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    requested = list(params.get("InstanceTypes") or [])
    filters.check_filter_names(params.get("Filters"), _TYPE_FILTERS, tags=False)
    describe.dry_run(params)
    unknown = [name for name in dict.fromkeys(requested) if instance_types.lookup(name) is None]
    if unknown:
        raise invalid_instance_types(unknown)
    kinds = instance_types.INSTANCE_TYPES.values()
    docs = [type_doc(kind) for kind in kinds if not requested or kind.name in requested]
    pager = Pager.of(ctx.page_key, "ec2:InstanceTypes", ctx.region, ctx.account_id, params)
    chunk, token = describe.page(TYPE_LISTING, describe.select(TYPE_LISTING, docs, params), params, pager)
    result: dict[str, Any] = {"InstanceTypes": chunk}
    if token is not None:
        result["NextToken"] = token
    return result
