"""A JSON or YAML file that a person or another system wrote, read into data or refused in one sentence.

Mode maps, the setup config and batch files are small documents, but whoever writes them can also
write a billion-laughs alias bomb, nesting that exhausts Python's parsers (a RecursionError
traceback), bytes that are not UTF-8, or a key twice (both parsers silently keep the last, so the
file would not mean what it says). Each of those is one sentence naming the file. YAML is held to
the budget of bundle manifests (catalog/fastyaml.py: go-yaml's aliasing ratio, `MAX_DEPTH`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from indexflow.catalog.fastyaml import YamlLimitError, check_limits
from indexflow.catalog.limits import excerpt
from indexflow.errors import IndexflowError

MAX_BYTES = 4 << 20
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _RepeatedKey(Exception):
    """A mapping of the document holds this key twice."""


def load(path: Path, what: str, error: type[IndexflowError], max_bytes: int = MAX_BYTES) -> Any:
    """The document of `path` (JSON, else YAML; an empty file is None), or
    `error` with one sentence naming `what` and `path`."""
    where = f"{what} {path}"
    try:
        with path.open("rb") as fh:  # the cap is on what is read: a stat says 0 for /dev/zero or a pipe
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot read {where} ({exc.strerror or exc.__class__.__name__})") from None
    if len(raw) > max_bytes:
        raise error(f"{where} is larger than {max_bytes >> 20} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"cannot read {where} (not UTF-8 text)") from None
    try:
        return _parse(text)
    except _RepeatedKey as exc:
        raise error(f"{where} gives {excerpt(str(exc.args[0]))!r} more than once") from None
    except YamlLimitError as exc:
        raise error(f"{where}: {exc}") from None
    except RecursionError:
        raise error(f"{where} nests too deeply") from None
    except yaml.YAMLError as exc:
        raise error(f"{where} is not valid YAML ({excerpt(str(exc).splitlines()[0])})") from None


def _parse(text: str) -> Any:
    """JSON when the text is JSON (exact, and fast for the ci_meta.json shape), else YAML (which
    includes flow mappings like `{a: b}` that are not JSON)."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text, object_pairs_hook=_unique_pairs)
        except json.JSONDecodeError:
            pass
    check_limits(text)
    loader = _LOADER(text)
    try:  # what yaml.load does, with the composed node checked before it is built
        node = loader.get_single_node()
        _no_repeated_keys(node)
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _RepeatedKey(key)
        seen[key] = value
    return seen


def _no_repeated_keys(root: yaml.Node | None) -> None:
    """Raise _RepeatedKey for a scalar key given twice in any mapping of a composed YAML document
    (each node once: aliases make the node graph share nodes, or even loop back)."""
    todo, seen = ([root] if root is not None else []), set()
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in keys:
                        raise _RepeatedKey(key.value)
                    keys.add(key.value)
                todo.append(value)
        elif isinstance(node, yaml.SequenceNode):
            todo += node.value
