"""Image references, parsed and normalised the way Docker does it (pure: no I/O).

``busybox``, ``library/busybox:latest`` and ``docker.io/library/busybox:latest`` name one image: a
reference without a registry means Docker Hub (``docker.io``), a Hub name without a slash lives in
``library/``, and a reference without tag or digest means ``:latest``. The first path component is a
registry only if it looks like a host (has a ``.`` or a ``:port``, or is ``localhost``); otherwise
``myuser/app`` would become a host called ``myuser``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_OFFICIAL_NAMESPACE = "library"
_MAX_NAME_LENGTH = 255

_HOST_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY = re.compile(rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


class InvalidReference(ValueError):
    """The text is not an image reference; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class ImageReference:
    registry: str  # "docker.io", "ghcr.io", "localhost:5000"
    repository: str  # "library/busybox", "org/app"
    tag: str | None  # None only when a digest pins the image
    digest: str | None = None  # "sha256:<64 hex>"

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        """The canonical form, the key the store files an image under."""
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}"

    @property
    def familiar(self) -> str:
        """What Docker prints: ``busybox:latest`` for the Hub's official images, the full name otherwise."""
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            name = self.repository.removeprefix(f"{_OFFICIAL_NAMESPACE}/")
        return f"{name}@{self.digest}" if self.digest else f"{name}:{self.tag}"

    def with_tag(self, tag: str) -> ImageReference:
        return ImageReference(self.registry, self.repository, tag, None)


def parse_reference(text: str) -> ImageReference:
    """``name``, ``name:tag``, ``registry[:port]/path/name:tag``, ``name@sha256:…`` (or ``:tag@sha256:…``)."""
    if not text or text != text.strip():
        raise InvalidReference(f"invalid image reference {text!r}")
    remainder, _, digest = text.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise InvalidReference(f"invalid digest {digest!r} in image reference {text!r}")
    tag = None
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidReference(f"invalid tag {tag!r} in image reference {text!r}")
    registry, repository = _split_registry(remainder, text)
    if len(f"{registry}/{repository}") > _MAX_NAME_LENGTH:
        raise InvalidReference(f"image name longer than {_MAX_NAME_LENGTH} characters: {text!r}")
    if tag is None and not digest:
        tag = DEFAULT_TAG
    return ImageReference(registry, repository, tag, digest or None)


def _split_registry(name: str, text: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and (any(c in first for c in ".:") or first == "localhost" or first != first.lower()):
        if not _REGISTRY.fullmatch(first):
            raise InvalidReference(f"invalid registry {first!r} in image reference {text!r}")
        registry, path = first, rest
    else:
        registry, path = DEFAULT_REGISTRY, name
    if registry in _HUB_ALIASES:
        registry = DEFAULT_REGISTRY
    components = path.split("/")
    for component in components:
        if not _COMPONENT.fullmatch(component):
            hint = " (repository names must be lowercase)" if component != component.lower() else ""
            raise InvalidReference(f"invalid image name {name!r} in reference {text!r}{hint}")
    if registry == DEFAULT_REGISTRY and len(components) == 1:
        path = f"{_OFFICIAL_NAMESPACE}/{path}"
    return registry, path
