"""Layer tars unpacked one by one into the cache, and a root file system assembled from cached layers.

A cached layer is the tar's content as it is, whiteout files (``.wh.NAME``, ``.wh..wh..opq``) included:
they only mean something against the layers below, which differ from image to image. ``assemble``
applies them while it stacks the layers into one directory, hard-linking every file from the cache (so
a file shared by ten images is on disk once; nobody may write to an image's rootfs, containers overlay
it).

Unpacking does not trust the tar: names are made relative and may not leave the directory or pass
through a symlink, hard links may only point at files of the same layer, and the bytes are checked
against the digests the manifest and config promise.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path
from typing import IO, Any, Protocol

from taskvpc.agent.images.model import ImageError

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"  # "hide everything below me in this directory"
_CHUNK = 1 << 20
_XATTR_PREFIX = "SCHILY.xattr."


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _HashingReader:
    """Passes reads through and hashes every byte, so a stream is verified as it is unpacked."""

    def __init__(self, inner: _Readable) -> None:
        self._inner = inner
        self._hasher = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        data = self._inner.read(size)
        self._hasher.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return f"sha256:{self._hasher.hexdigest()}"


class _Pushback(io.RawIOBase):
    """A stream whose first bytes were read to sniff the compression, given back before the rest."""

    def __init__(self, head: bytes, inner: _Readable) -> None:
        super().__init__()
        self._head = head
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._head[: len(buffer)] if self._head else self._inner.read(len(buffer))
        self._head = self._head[len(data) :] if self._head else b""
        buffer[: len(data)] = data
        return len(data)


def _decompressed(raw: _Readable, what: str) -> _Readable:
    head = raw.read(6)
    stream = io.BufferedReader(_Pushback(head, raw), _CHUNK)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if head.startswith(b"BZh"):
        return bz2.BZ2File(stream)
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(stream)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        raise ImageError(f"{what} is zstd-compressed, which taskvpc cannot unpack yet")
    return stream


def unpack_layer(blob: IO[bytes], dest: Path, diff_id: str, blob_digest: str | None, what: str) -> None:
    """Unpack one layer (plain or compressed tar) into the empty directory ``dest`` and check both
    digests: ``blob_digest`` of the bytes as stored (None when unknown), ``diff_id`` of the plain tar."""
    raw = _HashingReader(blob)
    try:
        plain = _HashingReader(_decompressed(raw, what))
        with tarfile.open(fileobj=plain, mode="r|") as archive:  # type: ignore[call-overload]
            directories: list[tuple[tarfile.TarInfo, Path]] = []
            for member in archive:
                _extract(archive, member, dest, directories)
            for member, path in reversed(directories):  # after their contents: mtime and read-only modes
                _set_attributes(member, path)
        plain.drain()  # end-of-archive padding belongs to the digest too
        raw.drain()
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as error:
        raise ImageError(f"{what} is not a readable layer tar: {error}") from error
    if blob_digest is not None and raw.digest != blob_digest:
        raise ImageError(f"{what} is corrupt: its digest is {raw.digest}, not {blob_digest}")
    if plain.digest != diff_id:
        raise ImageError(f"{what} is corrupt: its content digest is {plain.digest}, not {diff_id}")


def _member_path(dest: Path, name: str) -> Path | None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"layer entry {name!r} points outside the layer")
    if not parts:
        return None  # the layer's root itself
    parent = dest
    for part in parts[:-1]:
        parent = parent / part
        try:
            mode = parent.lstat().st_mode
        except FileNotFoundError:
            parent.mkdir(mode=0o755)
            continue
        if not stat.S_ISDIR(mode):
            raise ImageError(f"layer entry {name!r} goes through {part!r}, which is not a directory")
    return parent / parts[-1]


def _remove(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        remove_tree(path)
    else:
        path.unlink()


def remove_tree(path: Path) -> None:
    """``rmtree`` that also empties directories an image made read-only (which stops a non-root owner)."""

    def make_writable_and_retry(function: object, failed: str, _: object) -> None:
        os.chmod(os.path.dirname(failed), 0o700)
        if os.path.isdir(failed) and not os.path.islink(failed):
            remove_tree(Path(failed))
        else:
            os.unlink(failed)

    shutil.rmtree(path, onerror=make_writable_and_retry)


def _extract(
    archive: tarfile.TarFile,
    member: tarfile.TarInfo,
    dest: Path,
    directories: list[tuple[tarfile.TarInfo, Path]],
) -> None:
    path = _member_path(dest, member.name)
    if path is None:
        return
    if member.isdir():
        if not path.is_dir() or path.is_symlink():
            _remove(path)
            path.mkdir(mode=0o700)
        directories.append((member, path))
        return
    _remove(path)  # a later entry of the same name wins, as in tar
    if member.isreg():
        source = archive.extractfile(member)
        assert source is not None
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "wb") as target:
            shutil.copyfileobj(source, target, _CHUNK)
    elif member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        target_path = _member_path(dest, member.linkname)
        if (
            target_path is None
            or not target_path.exists()
            or target_path.is_symlink()
            or target_path.is_dir()
        ):
            raise ImageError(f"hard link {member.name!r} -> {member.linkname!r} has no file to link to")
        os.link(target_path, path, follow_symlinks=False)
        return  # shares the target's inode and attributes
    elif member.isfifo():
        os.mkfifo(path)
    elif member.ischr() or member.isblk():
        if os.geteuid() != 0:
            return  # only root can make device nodes; images rarely ship any (runc provides /dev)
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
    else:
        return  # GNU sparse/long-name headers are folded into members by tarfile; anything else is noise
    _set_attributes(member, path)


def _set_attributes(member: tarfile.TarInfo, path: Path) -> None:
    if os.geteuid() == 0:
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
        for key, value in member.pax_headers.items():
            name = key.removeprefix(_XATTR_PREFIX)
            # security.capability (ping) matters; trusted.* (overlayfs's own: opaque dirs, redirects) from
            # an untrusted layer would steer the overlay this rootfs becomes the lower layer of
            if key.startswith(_XATTR_PREFIX) and (name == "security.capability" or name.startswith("user.")):
                with contextlib.suppress(OSError):  # a file system without xattrs is no reason to fail
                    os.setxattr(path, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)  # after chown, which clears set-id bits
    os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def assemble(layers: list[Path], rootfs: Path) -> None:
    """Stack cached layers (lowest first) into ``rootfs``, an empty directory, applying whiteouts."""
    for layer in layers:
        _apply(layer, rootfs)


def _apply(source: Path, target: Path) -> None:
    with os.scandir(source) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    names = {entry.name for entry in entries}
    if OPAQUE_WHITEOUT in names:
        for child in os.listdir(target):
            _remove(target / child)
    for entry in entries:
        if entry.name.startswith(WHITEOUT_PREFIX) and not entry.name.startswith(WHITEOUT_PREFIX * 2):
            _remove(target / entry.name.removeprefix(WHITEOUT_PREFIX))
    for entry in entries:
        if entry.name.startswith(WHITEOUT_PREFIX):
            continue
        destination = target / entry.name
        if entry.is_dir(follow_symlinks=False):
            if destination.is_symlink() or not destination.is_dir():
                _remove(destination)
                destination.mkdir(mode=0o700)
            else:  # a lower layer's directory may be read-only; its final mode is set just below
                destination.chmod(0o700)
            _apply(Path(entry.path), destination)
            _copy_directory_attributes(entry.stat(follow_symlinks=False), destination)
        else:
            _remove(destination)
            os.link(entry.path, destination, follow_symlinks=False)


def _copy_directory_attributes(info: os.stat_result, path: Path) -> None:
    if os.geteuid() == 0:
        os.chown(path, info.st_uid, info.st_gid)
    os.chmod(path, stat.S_IMODE(info.st_mode))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
