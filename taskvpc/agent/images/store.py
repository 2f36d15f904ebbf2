"""The local image store: references -> images -> cached layers, all under one directory.

Layout under ``root`` (the agent's state dir + ``/images``)::

    refs.json             {"docker.io/library/busybox:latest": {"id": "sha256:…", "digest": "sha256:…"}}
    images/<id hex>/      config.json (the config blob as imported), image.json (its layers), rootfs/
    layers/<diff hex>/    one unpacked layer, keyed by the digest of its plain tar, whiteouts kept
    tmp/                  staging: everything is built here and renamed into place when complete
    downloads/            pulls in progress (outside the lock)
    lock                  flock held by writers (import, remove), so processes and threads take turns

Readers take no lock: ``refs.json`` is replaced by rename and an image directory appears by rename only
once complete, so a ``resolve`` sees the old state or the new one, never half of either.

``remove`` deletes the reference at once. An image left without references is deleted unless a mount
still uses its rootfs (see ``usage``): then it is kept, and collected by a later ``import`` or
``remove`` once its containers are gone. Layers go when no stored image lists them; a running
container never notices, because the rootfs holds its own hard links to their files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from taskvpc.agent.images.layers import assemble, remove_tree, unpack_layer
from taskvpc.agent.images.model import Image, ImageConfig, ImageError, ImageNotFound
from taskvpc.agent.images.pull import PULL_TIMEOUT, skopeo_copy
from taskvpc.agent.images.refs import ImageReference, InvalidReference, parse_reference
from taskvpc.agent.images.sources import SourceImage, open_source, sha256_digest
from taskvpc.agent.images.usage import rootfs_in_use

log = logging.getLogger("taskvpc.agent.images")
Record = dict[str, str]  # {"id": config digest, "digest": manifest or config digest}
# aliases: inside ImageStore, ``list`` is the method
_Images = list[Image]
_Paths = list[Path]
_Strings = list[str]


def _hex(digest: str) -> str:
    algorithm, _, encoded = digest.partition(":")
    if algorithm != "sha256" or len(encoded) != 64 or not all(c in "0123456789abcdef" for c in encoded):
        raise ImageError(f"unsupported digest {digest!r}")
    return encoded


def parse(reference: str) -> ImageReference:
    try:
        return parse_reference(reference)
    except InvalidReference as error:
        raise ImageError(str(error)) from None


class ImageStore:
    def __init__(self, root: Path, *, in_use: Callable[[Path], bool] = rootfs_in_use) -> None:
        self.root = root
        self._in_use = in_use
        self._refs = root / "refs.json"
        self._images = root / "images"
        self._layers = root / "layers"
        self._tmp = root / "tmp"
        self._downloads = root / "downloads"

    # -- reading ---------------------------------------------------------------------------------------

    def resolve(self, reference: str) -> Image:
        wanted = parse(reference)
        # A retag can replace the image (and collect the old one) between reading refs.json and the
        # image's files; refs.json is always written before that collection, so reading again finds
        # the new image.
        for _ in range(3):
            record = self._find(wanted, self._read_refs())
            if record is None:
                break
            image = self._image(str(wanted), record)
            if image is not None:
                return image
        raise ImageNotFound(wanted.familiar)

    @classmethod
    def _find(cls, wanted: ImageReference, refs: dict[str, Record]) -> Record | None:
        return next((r for key, r in sorted(refs.items()) if cls._matches(wanted, key, r)), None)

    @staticmethod
    def _matches(wanted: ImageReference, key: str, record: Record) -> bool:
        """``key`` is ``wanted``; or ``wanted`` pins a digest and ``key`` names that image in its repository."""
        if key == str(wanted):
            return True
        if not wanted.digest:
            return False
        return parse_reference(key).name == wanted.name and wanted.digest in (record["digest"], record["id"])

    def list(self) -> _Images:
        images = (self._image(key, record) for key, record in sorted(self._read_refs().items()))
        return [image for image in images if image is not None]

    def _read_refs(self) -> dict[str, Record]:
        try:
            document: dict[str, Record] = json.loads(self._refs.read_bytes())
        except FileNotFoundError:
            return {}
        return document

    def _image(self, reference: str, record: Record) -> Image | None:
        directory = self._images / _hex(record["id"])
        try:
            config = json.loads((directory / "config.json").read_bytes())
            layers = json.loads((directory / "image.json").read_bytes())["layers"]
        except FileNotFoundError:
            return None  # removed between reading refs.json and here
        return Image(
            reference=reference,
            digest=record["digest"],
            id=record["id"],
            rootfs=directory / "rootfs",
            config=ImageConfig.from_oci(config),
            layers=tuple(layers),
        )

    # -- writing ---------------------------------------------------------------------------------------

    def import_source(self, reference: str, source: Path, config: ImageConfig | None = None) -> Image:
        """Store ``source`` (rootfs directory, OCI layout, docker-archive tar, skopeo ``dir:``) under
        ``reference``. ``config`` is the run-time config of a rootfs directory (which carries none)."""
        wanted = parse(reference)
        with (
            self._locked(),
            self._scratch() as scratch,
            open_source(wanted, source, scratch, config) as image,
        ):
            record = self._store(image)
            if wanted.digest and wanted.digest not in (record["digest"], record["id"]):
                raise ImageError(f"{source} is {record['digest']}, not {wanted.digest}")
            refs = self._read_refs()
            refs[str(wanted)] = record
            self._write_refs(refs)
            self._collect_garbage(refs)
        log.info("image stored", extra={"reference": str(wanted), "image_id": record["id"]})
        return self.resolve(str(wanted))

    def pull(self, reference: str, credentials: tuple[str, str] | None = None) -> Image:
        """Fetch ``reference`` from its registry with skopeo (``credentials``: user name and password),
        then import it. A failure raises ImageError saying why, fit for ``CannotPullContainerError``."""
        wanted = parse(reference)
        self._downloads.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._downloads) as download:
            skopeo_copy(wanted, Path(download) / "image", credentials)
            return self.import_source(str(wanted), Path(download) / "image")

    def remove(self, reference: str) -> bool:
        """Forget ``reference``; False if no such reference. See the module doc for what happens to
        the image's files."""
        wanted = parse(reference)
        with self._locked():
            refs = self._read_refs()
            keys = [key for key, record in refs.items() if self._matches(wanted, key, record)]
            for key in keys:
                del refs[key]
            if keys:
                self._write_refs(refs)
            self._collect_garbage(refs)
        return bool(keys)

    def kept_images(self) -> _Strings:
        """IDs of images no reference names any more, kept because a container still uses them."""
        referenced = {record["id"] for record in self._read_refs().values()}
        present = {f"sha256:{path.name}" for path in self._listing(self._images)}
        return sorted(present - referenced)

    def _store(self, image: SourceImage) -> Record:
        image_id = sha256_digest(image.config_blob)
        final = self._images / _hex(image_id)
        diff_ids = [layer.diff_id for layer in image.layers]
        if not final.exists():
            for layer in image.layers:
                cached = self._layers / _hex(layer.diff_id)
                if cached.exists():
                    continue
                with self._scratch() as staging, layer.open() as blob:
                    unpack_layer(blob, staging, layer.diff_id, layer.blob_digest, layer.description)
                    os.rename(staging, cached)
            with self._scratch() as staging:
                (staging / "rootfs").mkdir(mode=0o755)
                assemble([self._layers / _hex(d) for d in diff_ids], staging / "rootfs")
                (staging / "config.json").write_bytes(image.config_blob)
                (staging / "image.json").write_text(json.dumps({"id": image_id, "layers": diff_ids}))
                os.rename(staging, final)
        return {"id": image_id, "digest": image.manifest_digest or image_id}

    def _write_refs(self, refs: dict[str, Record]) -> None:
        staging = self._tmp / "refs.json.new"
        staging.write_text(json.dumps(refs, indent=1, sort_keys=True))
        os.replace(staging, self._refs)

    def _collect_garbage(self, refs: dict[str, Record]) -> None:
        referenced = {_hex(record["id"]) for record in refs.values()}
        needed_layers: set[str] = set()
        for directory in self._listing(self._images):
            if directory.name in referenced or self._in_use(directory / "rootfs"):
                layers: _Strings = json.loads((directory / "image.json").read_bytes())["layers"]
                needed_layers.update(_hex(d) for d in layers)
            else:
                self._delete(directory)
        for layer in self._listing(self._layers):
            if layer.name not in needed_layers:
                self._delete(layer)

    def _delete(self, path: Path) -> None:
        """Move out of sight first, so nobody finds a half-deleted image or layer under its name."""
        doomed = Path(tempfile.mkdtemp(dir=self._tmp)) / path.name
        os.rename(path, doomed)
        remove_tree(doomed.parent)

    @staticmethod
    def _listing(directory: Path) -> _Paths:
        try:
            return sorted(directory.iterdir())
        except FileNotFoundError:
            return []

    def _staging_dir(self) -> Path:
        path = Path(tempfile.mkdtemp(dir=self._tmp))
        path.chmod(0o755)  # containers whose user is not root must be able to walk into the rootfs
        return path

    @contextlib.contextmanager
    def _scratch(self) -> Iterator[Path]:
        """A staging directory, removed afterwards unless it was renamed into place."""
        path = self._staging_dir()
        try:
            yield path
        finally:
            if path.exists():
                remove_tree(path)

    def _remove_leftovers(self) -> None:
        """Under the lock no other writer runs, so tmp/ only holds what a crash left; a download is
        left over once it is older than any pull may take."""
        for leftover in self._listing(self._tmp):
            if leftover.is_dir() and not leftover.is_symlink():
                remove_tree(leftover)
            else:
                leftover.unlink()
        for download in self._listing(self._downloads):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - download.stat().st_mtime > 2 * PULL_TIMEOUT:
                    remove_tree(download)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        for directory in (self.root, self._tmp, self._layers, self._images):
            directory.mkdir(parents=True, exist_ok=True)
        with (self.root / "lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self._remove_leftovers()
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def describe(image: Image) -> dict[str, Any]:
    """A JSON-ready summary (``taskvpc image ls --json``)."""
    return {
        "reference": image.reference,
        "name": parse_reference(image.reference).familiar,
        "digest": image.digest,
        "id": image.id,
        "rootfs": str(image.rootfs),
        "layers": list(image.layers),
        "config": image.config.to_oci(),
    }
