"""What a registry's answers must look like before any code relies on them.

Manifests, tag lists, `Link` headers, `Docker-Content-Digest` headers and redirect bodies come from
a server we do not control. Each is checked here, once, and anything malformed ends in one
RegistryError naming the image, so the client and its callers may index descriptors, build URLs and
cache paths from them without a KeyError, a traversal or an unbounded read.
"""

from __future__ import annotations

import json

import httpx

from indexflow.errors import RegistryError
from indexflow.registry import digests
from indexflow.registry.limits import CappedBody

MAX_REDIRECT_BODY = 1 << 20


def cap_redirect_body(response: httpx.Response) -> None:
    """httpx reads a redirect's body whole before following it: hold that body to a small cap."""
    if response.has_redirect_location:
        response.stream = CappedBody(response.stream, MAX_REDIRECT_BODY,  # type: ignore[arg-type]
                                     f"the redirect answer of {response.url.host}")


def header_digest(response: httpx.Response, where: str) -> str | None:
    """The `Docker-Content-Digest` a registry sent, checked (it becomes part of URLs and cache paths)."""
    digest = response.headers.get("Docker-Content-Digest")
    return digests.check(digest, f"{where}: Docker-Content-Digest") if digest else None


def check_manifest(raw: bytes, where: str) -> dict:
    """The manifest JSON after checking the shape we rely on: an object whose `config`, `layers` and
    `manifests` descriptors each have a valid digest and a non-negative integer size (so later code may
    index them); anything else is one RegistryError naming `where`."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise RegistryError(f"{where}: the manifest is not JSON") from None
    if not isinstance(body, dict):
        raise RegistryError(f"{where}: the manifest is not a JSON object")
    descriptors = [body["config"]] if "config" in body else []
    for key in ("layers", "manifests"):
        listed = body.get(key)
        if listed is not None and not isinstance(listed, list):
            raise RegistryError(f"{where}: the manifest's {key} is not a list")
        descriptors += listed or []
    for desc in descriptors:
        _check_descriptor(desc, where)
    return body


def _check_descriptor(desc: object, where: str) -> None:
    if not isinstance(desc, dict):
        raise RegistryError(f"{where}: the manifest lists a descriptor that is not an object")
    digests.check(desc.get("digest"), f"{where}: descriptor digest")
    size = desc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RegistryError(f"{where}: descriptor {desc['digest']} has size {str(size)[:40]!r}, not a byte count")
    for key, kind in (("annotations", dict), ("platform", dict), ("urls", list), ("mediaType", str)):
        if key in desc and not isinstance(desc[key], kind):
            raise RegistryError(f"{where}: descriptor {desc['digest']} has a malformed {key}")
    platform = desc.get("platform") or {}
    if not all(isinstance(platform.get(key, ""), str) for key in ("os", "architecture", "variant")):
        raise RegistryError(f"{where}: descriptor {desc['digest']} has a malformed platform")


def check_config(raw: bytes, where: str) -> dict:
    """The image config JSON after checking what we read from it: an object whose `architecture`
    is a string and whose `config.Labels` map strings to strings (a null label is "", as Go's
    decoder reads it; any other value is refused as Go's is), so labels may be compared and split."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise RegistryError(f"{where}: the config blob is not JSON") from None
    inner = body.get("config") if isinstance(body, dict) else None
    labels = inner.get("Labels") if isinstance(inner, dict) else None
    if (not isinstance(body, dict) or not isinstance(inner, (dict, type(None)))
            or not isinstance(labels, (dict, type(None))) or not isinstance(body.get("architecture", ""), str)):
        raise RegistryError(f"{where}: the config blob is not an image config (an object with a "
                            f"string architecture and a config.Labels map)")
    for name, value in (labels or {}).items():
        if value is None:
            labels[name] = ""
        elif not isinstance(value, str):
            raise RegistryError(f"{where}: the config blob's label {name[:80]!r} is not a string")
    return body


def tag_page(raw: bytes, where: str) -> list[str]:
    """The tags of one `tags/list` page (`"tags": null` is none); anything else is refused."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    tags = body.get("tags") if isinstance(body, dict) else 0
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RegistryError(f"{where}: the registry's tag list is not a JSON list of tags")
    return tags


def next_page(link: str, base: str, where: str) -> str:
    """The `rel="next"` URL of a `Link` header, absolute; one on another host is refused."""
    if 'rel="next"' not in link:
        return ""
    url = link[link.find("<") + 1:link.find(">")]
    if url.startswith("/"):
        return f"{base}{url}"
    if not url.startswith(f"{base}/"):
        raise RegistryError(f"{where}: the registry's tag list points its next page at another host")
    return url


