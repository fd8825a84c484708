"""Ceilings on what one catalog file or one bundle may cost to read (hostile input, issue 10).

Generous defaults: real manifests are KBs to a few MB and a whole bundle rarely passes 10 MB. These
caps are read from the environment at each use, so an operator can raise them without a release:

- `INDEXFLOW_MAX_MANIFEST_BYTES` (default 64 MiB): one catalog file or bundle manifest;
- `INDEXFLOW_MAX_BUNDLE_BYTES` (default 256 MiB): all manifests/ and metadata/ files of one bundle;
- `INDEXFLOW_DB_QUERY_SECONDS` (default 600): the lifetime of one index.db connection (db.connect).

Parsing is bounded too: nesting deeper than `MAX_DEPTH` and YAML aliasing beyond go-yaml's budget
(see fastyaml.py) are refused with one sentence.
"""

from __future__ import annotations

import os

from indexflow.errors import CatalogError

DEFAULT_MAX_FILE_BYTES = 64 << 20
DEFAULT_MAX_BUNDLE_BYTES = 256 << 20
MAX_DEPTH = 200  # real manifests nest < 30 levels; PyYAML's composer recurses ~3 frames a level
DEFAULT_QUERY_SECONDS = 600.0  # a whole-corpus migrate runs in tens of seconds on one connection


def _env_bytes(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise CatalogError(f"{name}={text!r} is not a number of bytes") from None
    if value <= 0:
        raise CatalogError(f"{name} must be a positive number of bytes, not {value}")
    return value


def max_file_bytes() -> int:
    """Largest catalog file or manifest read (`INDEXFLOW_MAX_MANIFEST_BYTES`)."""
    return _env_bytes("INDEXFLOW_MAX_MANIFEST_BYTES", DEFAULT_MAX_FILE_BYTES)


def max_bundle_bytes() -> int:
    """Largest total of one bundle's manifests/ and metadata/ files (`INDEXFLOW_MAX_BUNDLE_BYTES`)."""
    return _env_bytes("INDEXFLOW_MAX_BUNDLE_BYTES", DEFAULT_MAX_BUNDLE_BYTES)


def query_seconds() -> float:
    """`INDEXFLOW_DB_QUERY_SECONDS`, or the default; a value that is not a positive number is one
    sentence (it used to fall back silently: a typo ran without the limit asked for, and a negative
    value or NaN made every query fail, or none)."""
    text = os.environ.get("INDEXFLOW_DB_QUERY_SECONDS", "").strip()
    if not text:
        return DEFAULT_QUERY_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:  # NaN included
        raise CatalogError(f"INDEXFLOW_DB_QUERY_SECONDS={excerpt(text)!r} is not a positive number of seconds")
    return seconds


def excerpt(text: str, limit: int = 120) -> str:
    """At most `limit` characters of untrusted text, control characters escaped, for an error message."""
    shown = text[:limit].encode("unicode_escape").decode("ascii")
    return shown + ("..." if len(text) > limit else "")
