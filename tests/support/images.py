"""Builds real image sources for the image store's tests: layer tars, OCI layouts, docker-archive tars.

Everything is made here with tarfile and json, so the tests need no registry, docker or skopeo.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


def digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass
class Layer:
    """A layer tar built entry by entry; ``tar`` is the plain tar (its digest is the diff ID)."""

    entries: list[tarfile.TarInfo] = field(default_factory=list)
    contents: dict[str, bytes] = field(default_factory=dict)

    def dir(self, name: str, mode: int = 0o755) -> Layer:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 1_700_000_000
        self.entries.append(info)
        return self

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0) -> Layer:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid, info.gid, info.mtime = len(data), mode, uid, gid, 1_700_000_000
        self.entries.append(info)
        self.contents[f"{len(self.entries)}"] = data
        return self

    def symlink(self, name: str, target: str) -> Layer:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        self.entries.append(info)
        return self

    def hardlink(self, name: str, target: str) -> Layer:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.LNKTYPE, target
        self.entries.append(info)
        return self

    def whiteout(self, name: str) -> Layer:
        directory, _, base = name.rpartition("/")
        return self.file(f"{directory}/.wh.{base}" if directory else f".wh.{base}")

    def opaque(self, directory: str) -> Layer:
        return self.file(f"{directory}/.wh..wh..opq")

    @property
    def tar(self) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for number, info in enumerate(self.entries, 1):
                data = self.contents.get(str(number))
                archive.addfile(info, io.BytesIO(data) if data is not None else None)
        return buffer.getvalue()

    @property
    def diff_id(self) -> str:
        return digest(self.tar)


def config_blob(
    layers: list[Layer], cmd: list[str] | None = None, diff_ids: list[str] | None = None
) -> bytes:
    """An image config; ``diff_ids`` overrides what the layers really hash to (to make a lying one)."""
    document = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": cmd or ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/srv", "User": "nobody"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids or [layer.diff_id for layer in layers]},
    }
    return json.dumps(document).encode()


def _write_blob(layout: Path, data: bytes) -> dict[str, object]:
    blob = layout / "blobs" / "sha256" / digest(data).partition(":")[2]
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    return {"digest": digest(data), "size": len(data)}


def oci_layout(
    layout: Path,
    layers: list[Layer],
    ref_name: str = "latest",
    compress: bool = True,
    cmd: list[str] | None = None,
) -> str:
    """Write an OCI image layout holding one image; return its manifest digest."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    config = _write_blob(layout, config_blob(layers, cmd))
    descriptors = []
    for layer in layers:
        data = gzip.compress(layer.tar, mtime=0) if compress else layer.tar
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
        descriptors.append({"mediaType": media, **_write_blob(layout, data)})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": descriptors,
        }
    ).encode()
    descriptor = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **_write_blob(layout, manifest)}
    descriptor["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))
    return digest(manifest)


def layer_blob_path(layout: Path, layer: Layer, compress: bool = True) -> Path:
    data = gzip.compress(layer.tar, mtime=0) if compress else layer.tar
    return layout / "blobs" / "sha256" / digest(data).partition(":")[2]


def docker_archive(
    path: Path,
    layers: list[Layer],
    repo_tags: list[str],
    cmd: list[str] | None = None,
    leave_out_layer: int | None = None,
    claimed_diff_ids: list[str] | None = None,
) -> str:
    """Write a ``docker save`` tar (the classic layout: <id>/layer.tar); return the config digest."""
    config = config_blob(layers, cmd, claimed_diff_ids)
    config_name = f"{digest(config).partition(':')[2]}.json"
    members = {config_name: config}
    layer_names = []
    for number, layer in enumerate(layers):
        name = f"{layer.diff_id.partition(':')[2]}/layer.tar"
        layer_names.append(name)
        if number != leave_out_layer:
            members[name] = layer.tar
    members["manifest.json"] = json.dumps(
        [{"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names}]
    ).encode()
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return digest(config)


def skopeo_dir(directory: Path, layers: list[Layer]) -> str:
    """What ``skopeo copy docker://… dir:DIR`` writes for a Docker v2 schema 2 image; returns the
    manifest digest (which the registry would show)."""
    directory.mkdir(parents=True)
    (directory / "version").write_text("Directory Transport Version: 1.1\n")

    def blob(data: bytes) -> dict[str, object]:
        (directory / digest(data).partition(":")[2]).write_bytes(data)
        return {"digest": digest(data), "size": len(data)}

    config = blob(config_blob(layers))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    **blob(gzip.compress(layer.tar)),
                }
                for layer in layers
            ],
        },
        indent=3,
    ).encode()
    (directory / "manifest.json").write_bytes(manifest)
    return digest(manifest)
