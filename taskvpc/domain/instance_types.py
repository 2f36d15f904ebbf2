"""EC2 instance types: vCPUs, memory and network-interface limits, for a container instance's capacity.

An ``awsvpc`` task takes one elastic network interface of its own, and the instance's primary interface
counts against the instance type's limit, so a container instance can host ``max ENIs - 1`` such tasks
without trunking (a ``c5.large`` has 3 ENIs, so 2 tasks). The agent registers that capacity; a user can
rehearse a real instance type's limit with ``--instance-type``.

Sources (checked; numbers copied, not derived):

* ``max_enis``: ``aws/amazon-vpc-cni-k8s`` ``pkg/vpc/vpc_ip_resource_limit.go`` (generated from
  DescribeInstanceTypes across 17 regions; ``ENILimit``), cross-checked for the older families against the
  EC2 User Guide table "IP addresses per network interface per instance type"
  (``awsdocs/amazon-ec2-user-guide`` ``doc_source/using-eni.md``). Note ``t3a.small`` has 2, not 3.
* ``trunk_tasks``: ECS Developer Guide ``container-instance-eni.md`` ("Supported Amazon EC2 instance
  types", column "Task limit with ENI trunking"); ``None`` where the type is not supported or not listed
  (all burstable ``t*`` types; ``c7i``/``m7i`` are newer than the archived guide; ``c5a.8xlarge`` and
  ``r5.8xlarge`` are named as unsupported there).
* ``vcpus`` / ``memory_mib``: EC2's published sizes (a ``large`` has 2 vCPUs; ``c`` families carry
  2 GiB per vCPU, ``m`` 4 GiB, ``r`` 8 GiB; burstable types have their own table). ECS registers
  ``CPU = vcpus * 1024``; the MEMORY an agent registers is this minus what the OS keeps, which is the
  agent's business.

``*.metal`` sizes are left out on purpose (their vCPU counts do not follow the size ladder).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InstanceType:
    name: str
    vcpus: int
    memory_mib: int
    max_enis: int
    trunk_tasks: int | None = None

    @property
    def cpu_units(self) -> int:
        """The CPU an ECS container instance of this type registers (1024 units per vCPU)."""
        return self.vcpus * 1024

    @property
    def task_eni_capacity(self) -> int:
        """``awsvpc`` tasks this type can host without trunking: every ENI but the primary one."""
        return self.max_enis - 1


# vCPUs by size for the non-burstable families.
_SIZE_VCPUS: dict[str, int] = {
    "medium": 1,
    "large": 2,
    "xlarge": 4,
    "2xlarge": 8,
    "4xlarge": 16,
    "8xlarge": 32,
    "9xlarge": 36,
    "12xlarge": 48,
    "16xlarge": 64,
    "18xlarge": 72,
    "24xlarge": 96,
    "32xlarge": 128,
    "48xlarge": 192,
}

# Burstable families: size -> (vCPUs, memory MiB). t2 has one vCPU below medium; t3/t3a/t4g have two.
_T2_SIZES: dict[str, tuple[int, int]] = {
    "nano": (1, 512),
    "micro": (1, 1024),
    "small": (1, 2048),
    "medium": (2, 4096),
    "large": (2, 8192),
    "xlarge": (4, 16384),
    "2xlarge": (8, 32768),
}
_T3_SIZES: dict[str, tuple[int, int]] = {
    "nano": (2, 512),
    "micro": (2, 1024),
    "small": (2, 2048),
    "medium": (2, 4096),
    "large": (2, 8192),
    "xlarge": (4, 16384),
    "2xlarge": (8, 32768),
}

# Family -> size -> max ENIs (ENILimit in vpc_ip_resource_limit.go).
# fmt: off
_ENIS: dict[str, dict[str, int]] = {
    "t2": {"nano": 2, "micro": 2, "small": 3, "medium": 3, "large": 3, "xlarge": 3, "2xlarge": 3},
    "t3": {"nano": 2, "micro": 2, "small": 3, "medium": 3, "large": 3, "xlarge": 4, "2xlarge": 4},
    "t3a": {"nano": 2, "micro": 2, "small": 2, "medium": 3, "large": 3, "xlarge": 4, "2xlarge": 4},
    "t4g": {"nano": 2, "micro": 2, "small": 3, "medium": 3, "large": 3, "xlarge": 4, "2xlarge": 4},
    "m5": {
        "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8,
        "12xlarge": 8, "16xlarge": 15, "24xlarge": 15,
    },
    "m5a": {
        "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8,
        "12xlarge": 8, "16xlarge": 15, "24xlarge": 15,
    },
    "m6a": {
        "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8, "12xlarge": 8,
        "16xlarge": 15, "24xlarge": 15, "32xlarge": 15, "48xlarge": 15,
    },
    "m6g": {
        "medium": 2, "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8,
        "12xlarge": 8, "16xlarge": 15,
    },
    "m6i": {
        "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8, "12xlarge": 8,
        "16xlarge": 15, "24xlarge": 15, "32xlarge": 15,
    },
    "m7g": {
        "medium": 2, "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8,
        "12xlarge": 8, "16xlarge": 15,
    },
    "m7i": {
        "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8, "12xlarge": 8,
        "16xlarge": 15, "24xlarge": 15, "48xlarge": 15,
    },
    "c5": {
        "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "9xlarge": 8,
        "12xlarge": 8, "18xlarge": 15, "24xlarge": 15,
    },
    "c5a": {
        "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8,
        "12xlarge": 8, "16xlarge": 15, "24xlarge": 15,
    },
    "c6a": {
        "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8, "12xlarge": 8,
        "16xlarge": 15, "24xlarge": 15, "32xlarge": 15, "48xlarge": 15,
    },
    "c6g": {
        "medium": 2, "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8,
        "12xlarge": 8, "16xlarge": 15,
    },
    "c6i": {
        "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8, "12xlarge": 8,
        "16xlarge": 15, "24xlarge": 15, "32xlarge": 15,
    },
    "c7g": {
        "medium": 2, "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8,
        "12xlarge": 8, "16xlarge": 15,
    },
    "c7i": {
        "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8, "12xlarge": 8,
        "16xlarge": 15, "24xlarge": 15, "48xlarge": 15,
    },
    "r5": {
        "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8,
        "12xlarge": 8, "16xlarge": 15, "24xlarge": 15,
    },
    "r5a": {
        "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8,
        "12xlarge": 8, "16xlarge": 15, "24xlarge": 15,
    },
    "r6a": {
        "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8, "12xlarge": 8,
        "16xlarge": 15, "24xlarge": 15, "32xlarge": 15, "48xlarge": 15,
    },
    "r6g": {
        "medium": 2, "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8,
        "12xlarge": 8, "16xlarge": 15,
    },
    "r6i": {
        "large": 3, "xlarge": 4, "2xlarge": 4, "4xlarge": 8, "8xlarge": 8, "12xlarge": 8,
        "16xlarge": 15, "24xlarge": 15, "32xlarge": 15,
    },
}
# fmt: on

# Trunking task limits (container-instance-eni.md). Three ladders cover the supported families.
# fmt: off
_TRUNK_5TH_GEN: dict[str, int] = {
    "large": 10, "xlarge": 20, "2xlarge": 40, "4xlarge": 60, "8xlarge": 60, "9xlarge": 60,
    "12xlarge": 60, "16xlarge": 120, "18xlarge": 120, "24xlarge": 120,
}
_TRUNK_GRAVITON: dict[str, int] = {
    "medium": 4, "large": 10, "xlarge": 20, "2xlarge": 40, "4xlarge": 60, "8xlarge": 60,
    "12xlarge": 60, "16xlarge": 120,
}
_TRUNK_6TH_GEN_X86: dict[str, int] = {
    "large": 10, "xlarge": 20, "2xlarge": 40, "4xlarge": 60, "8xlarge": 90, "12xlarge": 120,
    "16xlarge": 120, "24xlarge": 120, "32xlarge": 120, "48xlarge": 120,
}
# fmt: on
_TRUNK: dict[str, dict[str, int]] = {
    "m5": _TRUNK_5TH_GEN,
    "m5a": _TRUNK_5TH_GEN,
    "c5": _TRUNK_5TH_GEN,
    "c5a": _TRUNK_5TH_GEN,
    "r5": _TRUNK_5TH_GEN,
    "r5a": _TRUNK_5TH_GEN,
    "m6g": _TRUNK_GRAVITON,
    "c6g": _TRUNK_GRAVITON,
    "r6g": _TRUNK_GRAVITON,
    "m7g": _TRUNK_GRAVITON,
    "c7g": _TRUNK_GRAVITON,
    "m6a": _TRUNK_6TH_GEN_X86,
    "c6a": _TRUNK_6TH_GEN_X86,
    "r6a": _TRUNK_6TH_GEN_X86,
    "m6i": _TRUNK_6TH_GEN_X86,
    "c6i": _TRUNK_6TH_GEN_X86,
    "r6i": _TRUNK_6TH_GEN_X86,
}
# Named in the guide as not supporting trunking although their family does.
_TRUNK_EXCLUDED = frozenset({"c5a.8xlarge", "r5.8xlarge"})

_MIB_PER_VCPU: dict[str, int] = {"c": 2048, "m": 4096, "r": 8192}


def _build() -> dict[str, InstanceType]:
    table: dict[str, InstanceType] = {}
    for family, sizes in _ENIS.items():
        for size, enis in sizes.items():
            name = f"{family}.{size}"
            if family == "t2":
                vcpus, memory = _T2_SIZES[size]
            elif family.startswith("t"):
                vcpus, memory = _T3_SIZES[size]
            else:
                vcpus = _SIZE_VCPUS[size]
                memory = vcpus * _MIB_PER_VCPU[family[0]]
            trunk = None if name in _TRUNK_EXCLUDED else _TRUNK.get(family, {}).get(size)
            table[name] = InstanceType(name, vcpus, memory, enis, trunk)
    return table


INSTANCE_TYPES: dict[str, InstanceType] = _build()


def lookup(instance_type: str) -> InstanceType | None:
    """The instance type's limits, or ``None`` for a type this table does not know."""
    return INSTANCE_TYPES.get(instance_type)


def task_eni_capacity(instance_type: str) -> int | None:
    """``awsvpc`` tasks an instance of this type can host without trunking (max ENIs - 1), or ``None``."""
    known = INSTANCE_TYPES.get(instance_type)
    return None if known is None else known.task_eni_capacity


def trunk_task_capacity(instance_type: str) -> int | None:
    """``awsvpc`` tasks with ``awsvpcTrunking`` on, or ``None`` if unknown or unsupported for the type."""
    known = INSTANCE_TYPES.get(instance_type)
    return None if known is None else known.trunk_tasks
