"""What ``import`` reads: a root file system directory, an OCI image layout, a ``docker save`` tar, or
the ``dir:`` format ``skopeo copy`` writes (which ``pull`` uses because it keeps the registry's manifest).

Each is opened as a :class:`SourceImage`: the config blob, the manifest digest if there is one, and the
layers as streams to unpack with the digests they must have. A directory becomes a one-layer image by
tarring it (in a fixed order, so the same tree gives the same digests), which lets every source take the
same path into the layer cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from taskvpc.agent.images.model import ImageConfig, ImageError
from taskvpc.agent.images.refs import ImageReference, parse_reference

_INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
_REF_NAME = "org.opencontainers.image.ref.name"
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le"}


def host_architecture() -> str:
    machine = platform.machine()
    return _ARCHITECTURES.get(machine, machine)


@dataclass(frozen=True, slots=True)
class LayerSource:
    diff_id: str  # digest of the plain tar, from the config's rootfs.diff_ids
    blob_digest: str | None  # digest of the stored (maybe compressed) bytes, when the source names it
    open: Callable[[], contextlib.AbstractContextManager[IO[bytes]]]
    description: str


@dataclass(frozen=True, slots=True)
class SourceImage:
    config_blob: bytes
    manifest_digest: str | None
    layers: tuple[LayerSource, ...]


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@contextlib.contextmanager
def open_source(
    reference: ImageReference, source: Path, scratch: Path, config: ImageConfig | None
) -> Iterator[SourceImage]:
    """``scratch``: an empty directory the caller removes afterwards (a directory's tar goes there)."""
    if source.is_dir() and (source / "oci-layout").is_file():
        yield _oci_layout(reference, source)
    elif source.is_dir() and (source / "manifest.json").is_file() and (source / "version").is_file():
        yield _skopeo_directory(source)
    elif source.is_dir():
        yield _directory(source, scratch / "rootfs.tar", config or ImageConfig())
    elif source.is_file():
        with _docker_archive(reference, source) as image:
            yield image
    else:
        raise ImageError(f"{source}: no such directory or file")


def _load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:
        raise ImageError(f"{what} is not valid JSON: {error}") from error


def _layers_from_config(config_blob: bytes, count: int, what: str) -> list[str]:
    config = _load_json(config_blob, f"the image config in {what}")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != count:
        raise ImageError(f"{what}: the config lists {len(diff_ids)} layers but the image has {count}")
    return [str(d) for d in diff_ids]


# -- OCI image layout ---------------------------------------------------------------------------------


def _oci_layout(reference: ImageReference, layout: Path) -> SourceImage:
    def blob_path(digest: str) -> Path:
        algorithm, _, encoded = digest.partition(":")
        return layout / "blobs" / algorithm / encoded

    index = _load_json(_read(layout / "index.json"), f"{layout}/index.json")
    descriptor = _choose_in_layout(index.get("manifests") or [], reference, layout)
    while descriptor.get("mediaType") in _INDEX_TYPES:
        nested = _load_json(_read_blob(blob_path, descriptor, layout), f"index {descriptor['digest']}")
        descriptor = _choose_platform(nested.get("manifests") or [], layout)
    manifest_blob = _read_blob(blob_path, descriptor, layout)
    return _from_manifest(manifest_blob, blob_path, layout)


def _skopeo_directory(directory: Path) -> SourceImage:
    """What ``skopeo copy … dir:PATH`` writes: the registry's manifest byte for byte, blobs by hex."""
    manifest_blob = _read(directory / "manifest.json")
    return _from_manifest(manifest_blob, lambda digest: directory / digest.partition(":")[2], directory)


def _read_blob(blob_path: Callable[[str], Path], descriptor: dict[str, Any], where: Path) -> bytes:
    digest = str(descriptor.get("digest", ""))
    path = blob_path(digest)
    if not digest.startswith("sha256:") or "/" in digest or not path.is_file():
        raise ImageError(f"{where}: blob {digest or '(no digest)'} is missing")
    data = path.read_bytes()
    if sha256_digest(data) != digest:
        raise ImageError(f"{where}: blob {digest} is corrupt (digest mismatch)")
    return data


def _from_manifest(manifest_blob: bytes, blob_path: Callable[[str], Path], where: Path) -> SourceImage:
    manifest = _load_json(manifest_blob, f"{where}: the manifest")
    if manifest.get("mediaType") in _INDEX_TYPES or "layers" not in manifest:
        raise ImageError(f"{where}: the manifest is not a single-platform image manifest")
    config_blob = _read_blob(blob_path, manifest.get("config") or {}, where)
    layer_descriptors = manifest["layers"] or []
    diff_ids = _layers_from_config(config_blob, len(layer_descriptors), str(where))
    layers = []
    for number, (layer, diff_id) in enumerate(zip(layer_descriptors, diff_ids, strict=True), 1):
        media_type = str(layer.get("mediaType"))
        if "nondistributable" in media_type or "foreign" in media_type:
            raise ImageError(f"{where}: layer {number} is a foreign layer, which taskvpc cannot fetch")
        digest = str(layer.get("digest", ""))
        path = blob_path(digest)
        if not digest.startswith("sha256:") or "/" in digest or not path.is_file():
            raise ImageError(f"{where}: blob {digest or '(no digest)'} of layer {number} is missing")
        layers.append(LayerSource(diff_id, digest, _file_opener(path), f"layer {number}"))
    return SourceImage(config_blob, sha256_digest(manifest_blob), tuple(layers))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ImageError(f"cannot read {path}: {error.strerror}") from error


def _choose_in_layout(manifests: list[dict[str, Any]], reference: ImageReference, layout: Path) -> Any:
    named = [
        m for m in manifests if (m.get("annotations") or {}).get(_REF_NAME) in (reference.tag, str(reference))
    ]
    if len(named) == 1 or len(manifests) == 1:
        return (named or manifests)[0]
    names = sorted(str((m.get("annotations") or {}).get(_REF_NAME)) for m in manifests)
    if not manifests:
        raise ImageError(f"{layout}: the layout holds no image")
    raise ImageError(
        f"{layout} holds {len(manifests)} images ({', '.join(names)}): import it with one as the tag"
    )


def _choose_platform(manifests: list[dict[str, Any]], layout: Path) -> Any:
    architecture = host_architecture()
    for manifest in manifests:
        wanted = manifest.get("platform") or {}
        if wanted.get("os") == "linux" and wanted.get("architecture") == architecture:
            return manifest
    if len(manifests) == 1:
        return manifests[0]
    raise ImageError(f"{layout}: no image for linux/{architecture} in its index")


# -- docker save ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _docker_archive(reference: ImageReference, path: Path) -> Iterator[SourceImage]:
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by the with below, after the check)
    except (tarfile.TarError, OSError) as error:
        raise ImageError(f"{path} is neither a directory nor a docker-archive tar: {error}") from error
    with archive:

        def member_bytes(name: str) -> bytes:
            with _member(archive, name, path) as stream:
                return stream.read()

        entries = _load_json(member_bytes("manifest.json"), f"{path}: manifest.json")
        entry = _choose_in_archive(entries, reference, path)
        config_blob = member_bytes(str(entry["Config"]))
        layer_names = [str(name) for name in entry.get("Layers") or []]
        diff_ids = _layers_from_config(config_blob, len(layer_names), str(path))
        layers = tuple(
            LayerSource(diff_id, None, _member_opener(archive, name, path), f"layer {number} ({name})")
            for number, (name, diff_id) in enumerate(zip(layer_names, diff_ids, strict=True), 1)
        )
        # docker save has no registry manifest; the image is known by its config digest alone
        yield SourceImage(config_blob, None, layers)


def _file_opener(path: Path) -> Callable[[], contextlib.AbstractContextManager[IO[bytes]]]:
    return lambda: path.open("rb")


def _member_opener(
    archive: tarfile.TarFile, name: str, path: Path
) -> Callable[[], contextlib.AbstractContextManager[IO[bytes]]]:
    return lambda: _member(archive, name, path)


def _member(archive: tarfile.TarFile, name: str, path: Path) -> contextlib.AbstractContextManager[IO[bytes]]:
    try:
        stream = archive.extractfile(name)
    except KeyError:
        stream = None
    if stream is None:
        raise ImageError(f"{path} lacks {name}: not a complete docker-archive tar")
    return stream


def _choose_in_archive(entries: Any, reference: ImageReference, path: Path) -> Any:
    if not isinstance(entries, list) or not entries:
        raise ImageError(f"{path}: manifest.json lists no image")

    def tags(entry: dict[str, Any]) -> set[str]:
        found = set()
        for tag in entry.get("RepoTags") or ():
            with contextlib.suppress(ValueError):
                found.add(str(parse_reference(str(tag))))
        return found

    matching = [e for e in entries if str(reference) in tags(e)]
    if len(matching) == 1 or len(entries) == 1:
        return (matching or entries)[0]
    raise ImageError(f"{path} holds {len(entries)} images and none is tagged {reference.familiar}")


# -- a root file system directory --------------------------------------------------------------------


def _directory(rootfs: Path, tar_path: Path, config: ImageConfig) -> SourceImage:
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as archive:
        for path in _walk_sorted(rootfs):
            info = archive.gettarinfo(str(path), arcname=path.relative_to(rootfs).as_posix())
            if info is None:
                continue  # sockets: nothing a tar can hold
            info.uname = info.gname = ""  # numeric ids only: the image has its own /etc/passwd
            if info.isreg():
                with path.open("rb") as content:
                    archive.addfile(info, content)
            else:
                archive.addfile(info)
    diff_id = _file_digest(tar_path)
    document = {
        "architecture": host_architecture(),
        "os": "linux",
        "config": config.to_oci(),
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_blob = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    layer = LayerSource(diff_id, None, _file_opener(tar_path), f"the tar of {rootfs}")
    return SourceImage(config_blob, None, (layer,))


def _walk_sorted(top: Path) -> Iterator[Path]:
    for child in sorted(top.iterdir(), key=lambda p: p.name):
        yield child
        if child.is_dir() and not child.is_symlink():
            yield from _walk_sorted(child)


def _file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"
