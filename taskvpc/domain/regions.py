"""The AWS region names, per partition: what a SigV4 credential scope may name.

The list is AWS's (the regions of botocore 1.44's ``endpoints.json``, every partition). A region outside
it is refused at the front door ("Credential should be scoped to a valid region"), so a typo or a
``<script>`` never lays out a default VPC of its own. Opt-in regions are listed (AWS accepts requests
for them once enabled; taskvpc treats every account as having enabled them).
"""

from __future__ import annotations

REGIONS_BY_PARTITION: dict[str, tuple[str, ...]] = {
    "aws": (
        "af-south-1",
        "ap-east-1",
        "ap-east-2",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-south-1",
        "ap-south-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ap-southeast-5",
        "ap-southeast-6",
        "ap-southeast-7",
        "ca-central-1",
        "ca-west-1",
        "eu-central-1",
        "eu-central-2",
        "eu-north-1",
        "eu-south-1",
        "eu-south-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "il-central-1",
        "me-central-1",
        "me-south-1",
        "mx-central-1",
        "sa-east-1",
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
    ),
    "aws-cn": ("cn-north-1", "cn-northwest-1"),
    "aws-us-gov": ("us-gov-east-1", "us-gov-west-1"),
    "aws-iso": ("us-iso-east-1", "us-iso-west-1"),
    "aws-iso-b": ("us-isob-east-1", "us-isob-west-1"),
    "aws-iso-e": ("eu-isoe-west-1",),
    "aws-iso-f": ("us-isof-east-1", "us-isof-south-1"),
    "aws-eusc": ("eusc-de-east-1",),
}

ALL_REGIONS: frozenset[str] = frozenset(
    region for regions in REGIONS_BY_PARTITION.values() for region in regions
)


def is_region(name: str) -> bool:
    """Whether ``name`` is an AWS region of any partition (exact, lower-case, as SigV4 scopes name it)."""
    return name in ALL_REGIONS
