"""Loads botocore's service documents once per process and resolves them into ``wire`` specs."""

from __future__ import annotations

from functools import cache

from botocore.loaders import Loader

from taskvpc.wire.shapes import ServiceSpec, build_service_spec

SERVICES = ("ecs", "ec2", "elbv2", "sts")


@cache
def service_spec(name: str) -> ServiceSpec:
    document = Loader().load_service_model(name, "service-2")
    return build_service_spec(name, document)
