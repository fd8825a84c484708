"""Content digests as registries use them: `sha256:<64 hex>` or `sha512:<128 hex>`, always verified.

A digest from a manifest is untrusted text that ends up in URLs and file names, so it is checked
against the grammar before use; an algorithm we cannot verify is refused rather than trusted.
"""

from __future__ import annotations

import hashlib
import re

from indexflow.errors import RegistryError

_HEX = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


def check(digest: object, where: str) -> str:
    """`digest` if it is a well-formed sha256 or sha512 digest, else one RegistryError naming `where`."""
    match = _DIGEST.match(digest) if isinstance(digest, str) else None
    if match is None:
        raise RegistryError(f"{where}: {str(digest)[:80]!r} is not a content digest")
    algorithm, hexpart = match.groups()
    if algorithm not in _HEX:
        raise RegistryError(f"{where}: digest algorithm {algorithm[:20]!r} is not supported (sha256 or sha512)")
    if len(hexpart) != _HEX[algorithm] or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise RegistryError(f"{where}: {digest[:80]!r} is not a valid {algorithm} digest")
    return digest


def hasher(digest: str, where: str):  # noqa: ANN201 - a hashlib object
    """A fresh hash object of `digest`'s algorithm (checked first)."""
    return hashlib.new(check(digest, where).split(":", 1)[0])


def matches(digest: str, hashed: object) -> bool:
    """Whether the finished hash object `hashed` (from `hasher(digest)`) gives `digest`."""
    return f"{digest.split(':', 1)[0]}:{hashed.hexdigest()}" == digest  # type: ignore[attr-defined]


def of(digest: str, data: bytes, where: str) -> bool:
    """Whether `data` has `digest`."""
    h = hasher(digest, where)
    h.update(data)
    return matches(digest, h)
