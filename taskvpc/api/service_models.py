"""Service models: botocore's documents loaded once per process and resolved into ``wire`` specs.

``served`` pairs each manifest with its spec and protocol codec; ``unserved_protocol`` names the protocol
of a service taskvpc does not serve, from botocore's model of it, so its error can be written in a shape
that service's SDK reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache

from botocore.loaders import Loader

from taskvpc.control.manifest import ServiceManifest
from taskvpc.wire.protocols import PROTOCOLS, Codec
from taskvpc.wire.shapes import ServiceSpec, build_service_spec

_LOADER = Loader()
_SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@cache
def service_spec(name: str) -> ServiceSpec:
    """botocore's model of ``name`` as a spec."""
    return build_service_spec(name, _LOADER.load_service_model(name, "service-2"))


@dataclass(frozen=True, slots=True)
class ServedService:
    manifest: ServiceManifest
    spec: ServiceSpec
    codec: Codec


def served(manifests: Iterable[ServiceManifest]) -> dict[str, ServedService]:
    """The services by SigV4 signing name; refuses a manifest that disagrees with its model."""
    by_signing_name: dict[str, ServedService] = {}
    for manifest in manifests:
        if manifest.document is not None:
            spec = build_service_spec(manifest.model, manifest.document)
        else:
            spec = service_spec(manifest.model)
        if spec.protocol != manifest.protocol or manifest.protocol not in PROTOCOLS:
            raise ValueError(
                f"{manifest.model}: manifest protocol {manifest.protocol!r}, model {spec.protocol!r}"
            )
        if unknown := set(manifest.handlers) - set(spec.operations):
            raise ValueError(f"{manifest.model}: handlers for operations not in the model: {sorted(unknown)}")
        if manifest.signing_name in by_signing_name:
            raise ValueError(f"two services sign as {manifest.signing_name!r}")
        by_signing_name[manifest.signing_name] = ServedService(manifest, spec, PROTOCOLS[manifest.protocol])
    return by_signing_name


@lru_cache(maxsize=256)
def unserved_protocol(signing_name: str) -> str | None:
    """The protocol botocore's model of a service signing as ``signing_name`` uses; None if unknown.

    Most services sign with their model's name (s3, sqs, lambda, logs); for the others the caller falls
    back to the request's shape.
    """
    if not _SERVICE_NAME.fullmatch(signing_name):
        return None
    if signing_name not in _LOADER.list_available_services("service-2"):
        return None
    metadata = _LOADER.load_service_model(signing_name, "service-2")["metadata"]
    if metadata.get("signingName", metadata.get("endpointPrefix")) != signing_name:
        return None
    # botocore uses the first protocol of ``protocols`` it supports; ``protocol`` is the older field.
    protocols = metadata.get("protocols") or [metadata.get("protocol")]
    return str(protocols[0])
