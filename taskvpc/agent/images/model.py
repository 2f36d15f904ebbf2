"""What the store hands out (an :class:`Image` with its run-time :class:`ImageConfig`) and its errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ImageError(Exception):
    """An image could not be imported, pulled or read. The message reads well after
    ``CannotPullContainerError: `` (ECS's stopped reason for a task whose image could not be had)."""


class ImageNotFound(ImageError):
    """No image is stored under this reference."""

    def __init__(self, reference: str) -> None:
        super().__init__(f"image {reference} not found in the local image store")
        self.reference = reference


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an OCI image config (``config`` in the config blob) a runtime needs to start it."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    user: str | None = None

    @classmethod
    def from_oci(cls, document: Mapping[str, Any]) -> ImageConfig:
        """From a whole config blob (OCI or Docker: both keep these under ``config``)."""
        config = document.get("config") or {}
        env = []
        for entry in config.get("Env") or ():
            key, _, value = str(entry).partition("=")
            env.append((key, value))
        return cls(
            entrypoint=tuple(str(a) for a in config.get("Entrypoint") or ()),
            cmd=tuple(str(a) for a in config.get("Cmd") or ()),
            env=tuple(env),
            working_dir=config.get("WorkingDir") or None,
            user=config.get("User") or None,
        )

    def to_oci(self) -> dict[str, Any]:
        """The ``config`` object of an OCI image config that :meth:`from_oci` reads back as ``self``."""
        document: dict[str, Any] = {}
        if self.entrypoint:
            document["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            document["Cmd"] = list(self.cmd)
        if self.env:
            document["Env"] = [f"{key}={value}" for key, value in self.env]
        if self.working_dir:
            document["WorkingDir"] = self.working_dir
        if self.user:
            document["User"] = self.user
        return document


@dataclass(frozen=True, slots=True)
class Image:
    reference: str  # canonical: "docker.io/library/busybox:latest"
    digest: str  # the manifest digest when the source had one (pull, OCI layout), else the config digest
    id: str  # the config digest ("image ID"): equal for the same image from any source
    rootfs: Path  # unpacked root file system shared by every container of the image: read-only
    config: ImageConfig
    layers: tuple[str, ...] = ()  # diff IDs (digests of the uncompressed layer tars), lowest first
