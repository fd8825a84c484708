"""Image references (`registry/namespace/repo[:tag][@digest]`) with Docker's defaults.

Parsing follows the distribution reference grammar: the first path component is a registry only
when it looks like a host (has a dot or a port, or is `localhost`); otherwise the image lives on
Docker Hub (`docker.io`, single names under `library/`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from indexflow.errors import RegistryError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_HOST = re.compile(r"^(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")


def _looks_like_host(part: str) -> bool:
    return ("." in part or ":" in part or part == "localhost") and bool(_HOST.match(part))


@dataclass(frozen=True)
class ImageRef:
    """One image: `registry` (host[:port]), `repository` (path), and a `tag` and/or `digest`."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ImageRef":
        """`quay.io/ns/repo:tag`, `repo@sha256:...`, `localhost:5000/x` ... -> ImageRef."""
        if not isinstance(text, str) or not text or text != text.strip():
            raise RegistryError(f"invalid image reference {text!r}: it is empty or has surrounding spaces")
        rest, _, digest = text.partition("@")
        registry, path = DOCKER_HUB, rest
        first, slash, remainder = rest.partition("/")
        if slash and _looks_like_host(first):
            registry, path = first, remainder
        tag = None
        if ":" in path.rsplit("/", 1)[-1]:
            path, tag = path.rsplit(":", 1)
        if registry in _HUB_ALIASES:
            registry = DOCKER_HUB
            if "/" not in path:
                path = f"library/{path}"
        ref = cls(registry, path, tag, digest or None)
        ref._check(text)
        return ref

    @classmethod
    def coerce(cls, ref: "ImageRef | str") -> "ImageRef":
        """Accept either form: callers hold pullspecs as strings as often as parsed refs."""
        return ref if isinstance(ref, ImageRef) else cls.parse(ref)

    def _check(self, text: str) -> None:
        if not self.repository or not all(_COMPONENT.match(c) for c in self.repository.split("/")):
            raise RegistryError(f"invalid image reference {text!r}: bad repository name {self.repository!r}")
        if self.tag is not None and not _TAG.match(self.tag):
            raise RegistryError(f"invalid image reference {text!r}: bad tag {self.tag!r}")
        if self.digest is not None and not _DIGEST.match(self.digest):
            raise RegistryError(f"invalid image reference {text!r}: bad digest {self.digest!r}")

    @property
    def name(self) -> str:
        """`registry/repository`, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host the API is served from (Docker Hub's API lives on another host than its name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What goes after `/manifests/`: the digest when pinned, else the tag (`latest` by default)."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str | None) -> "ImageRef":
        """Same image pinned to `digest` (the tag is kept for display, the digest wins on the wire)."""
        return replace(self, digest=digest)

    def with_tag(self, tag: str | None) -> "ImageRef":
        return replace(self, tag=tag)

    def pinned(self, digest: str) -> "ImageRef":
        """`repository@digest` (IIB's resolved form): the tag is dropped so strings compare by digest."""
        return replace(self, tag=None, digest=digest)

    def in_repository(self, repository: str) -> "ImageRef":
        """Same registry, another repository, no tag or digest (for blob operations)."""
        return ImageRef(self.registry, repository)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text
