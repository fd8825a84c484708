"""First YAML document of a text, built straight from libyaml's events.

Parsing bundle manifests is most of `add`'s CPU time, and PyYAML spends it in its generic Python
constructor (nodes, then objects). Bundle YAML is plain maps, lists and scalars, so this builds
the objects from the C parser's event stream in one pass and resolves plain scalars with the
same YAML 1.1 rules. Anything unusual (explicit tags, merge keys, complex keys, undefined or
recursive aliases) returns `FALLBACK` so the caller uses PyYAML itself: results are always the
same as PyYAML's.

Hostile input is bounded the way go-yaml (opm's parser) bounds it: aliases may expand only within
go-yaml's ratio of aliased to decoded nodes ("document contains excessive aliasing", so a 489-byte
billion-laughs document fails in microseconds), and nesting is capped at `limits.MAX_DEPTH`.
`check_limits` applies the same budget to text that PyYAML will load.

Numbers follow Go's YAML -> JSON -> interface{} round trip: integral floats become ints. The
second value returned says whether the document is "plain" (only string keys, no floats left),
i.e. whether the C JSON encoder writes exactly Go's bytes for it.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (AliasEvent, DocumentEndEvent, DocumentStartEvent, MappingEndEvent, MappingStartEvent,
                         ScalarEvent, SequenceEndEvent, SequenceStartEvent)
from yaml.nodes import ScalarNode

from indexflow.catalog.limits import MAX_DEPTH
from indexflow.errors import CatalogError

try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML without libyaml: always use the slow path
    CParser = None

FALLBACK = object()
_STR = "tag:yaml.org,2002:str"
_CONSTRUCTOR = SafeConstructor()


class _Unusual(Exception):
    """The document uses a feature this reader leaves to PyYAML."""


class YamlLimitError(CatalogError):
    """A YAML document expands or nests beyond the budget (go-yaml's aliasing rule, MAX_DEPTH)."""


def _allowed_alias_ratio(decoded: int) -> float:
    """go-yaml's allowedAliasRatio: 99% aliased nodes up to 400k decoded, falling to 10% at 4M."""
    if decoded <= 400_000:
        return 0.99
    if decoded >= 4_000_000:
        return 0.10
    return 0.99 - 0.89 * (decoded - 400_000) / 3_600_000


class _Budget:
    """Decoded and alias-expanded node counts of one document, checked as go-yaml checks them."""

    def __init__(self) -> None:
        self.decoded = 0
        self.aliased = 0

    def node(self, size: int = 1, alias: bool = False) -> None:
        self.decoded += size
        if alias:
            self.aliased += size
            if self.aliased > 100 and self.decoded > 1000 and \
                    self.aliased / self.decoded > _allowed_alias_ratio(self.decoded):
                raise YamlLimitError("yaml: document contains excessive aliasing")

    @staticmethod
    def depth(depth: int) -> None:
        if depth > MAX_DEPTH:
            raise YamlLimitError(f"yaml: document nested more than {MAX_DEPTH} levels deep")


def check_limits(text: str, first_only: bool = False) -> None:
    """Raise YamlLimitError when a document of `text` (or only the first) aliases or nests too much.

    Works on parser events alone, so nothing is built; syntax errors propagate as yaml.YAMLError.
    """
    budget, stack, sizes = _Budget(), [], {}  # stack: [size, anchor] of open collections
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for event in yaml.parse(text, Loader=loader):
        kind = type(event)
        if kind is DocumentStartEvent:
            budget, stack, sizes = _Budget(), [], {}
        elif kind is DocumentEndEvent and first_only:
            return
        elif kind is AliasEvent:
            size = sizes.get(event.anchor, 1)
            budget.node(size, alias=True)
            if stack:
                stack[-1][0] += size
        elif kind in (ScalarEvent, SequenceStartEvent, MappingStartEvent):
            budget.node()
            if kind is ScalarEvent:
                _close(stack, sizes, 1, event.anchor)
            else:
                stack.append([1, event.anchor])
                budget.depth(len(stack))
        elif kind in (SequenceEndEvent, MappingEndEvent):
            size, anchor = stack.pop()
            _close(stack, sizes, size, anchor)


def _close(stack: list, sizes: dict, size: int, anchor: str | None) -> None:
    if anchor is not None:
        sizes[anchor] = size
    if stack:
        stack[-1][0] += size


def _resolvers() -> dict:
    """PyYAML's implicit resolvers without timestamps (Go keeps them as strings)."""
    return {k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
            for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


_RESOLVERS = _resolvers()
_WILDCARD = _RESOLVERS.get(None, [])


class _Builder:
    """Builds one document from events; `plain` turns False on floats or non-string keys."""

    def __init__(self) -> None:
        self.plain = True
        self.anchors: dict[str, tuple[Any, int]] = {}  # anchor -> (value, decoded size)
        self.budget = _Budget()

    def scalar(self, event: Any) -> Any:
        if event.tag is not None:
            raise _Unusual
        value = event.value
        if not event.implicit[0]:
            return value
        for tag, rx in _RESOLVERS.get(value[:1], []) + _WILDCARD:
            if rx.match(value):
                return self._typed(tag, value)
        return value

    def _typed(self, tag: str, value: str) -> Any:
        kind = tag.rpartition(":")[2]
        if kind == "null":
            return None
        if kind == "bool":
            return SafeConstructor.bool_values[value.lower()]
        if kind == "int":
            return _CONSTRUCTOR.construct_yaml_int(ScalarNode(tag, value))
        if kind == "float":
            number = _CONSTRUCTOR.construct_yaml_float(ScalarNode(tag, value))
            if number == number and abs(number) < 2**63 and number == int(number):
                return int(number)
            self.plain = False
            return number
        if kind == "str":
            return value
        raise _Unusual  # merge keys, value tags, ...


def _node(parser: Any, event: Any, builder: _Builder, depth: int = 0) -> Any:
    kind = type(event)
    budget = builder.budget
    if kind is AliasEvent:
        if event.anchor not in builder.anchors:
            raise _Unusual
        value, size = builder.anchors[event.anchor]
        budget.node(size, alias=True)  # the value is shared, never copied: counting bounds later encoders
        return value
    start = budget.decoded
    budget.node()
    if kind is ScalarEvent:
        value = builder.scalar(event)
    elif kind is SequenceStartEvent:
        if event.tag is not None:
            raise _Unusual
        budget.depth(depth + 1)
        value = []
        while type(item := parser.get_event()) is not SequenceEndEvent:
            value.append(_node(parser, item, builder, depth + 1))
    elif kind is MappingStartEvent:
        if event.tag is not None:
            raise _Unusual
        budget.depth(depth + 1)
        value = _mapping(parser, builder, depth + 1)
    else:
        raise _Unusual
    if event.anchor is not None:
        if event.anchor in builder.anchors:  # PyYAML refuses duplicate anchors
            raise _Unusual
        builder.anchors[event.anchor] = (value, budget.decoded - start)
    return value


def _mapping(parser: Any, builder: _Builder, depth: int) -> dict:
    value: dict = {}
    while type(key_event := parser.get_event()) is not MappingEndEvent:
        key = _node(parser, key_event, builder, depth)
        if isinstance(key, (dict, list)):
            raise _Unusual
        if not isinstance(key, str):
            builder.plain = False
        value[key] = _node(parser, parser.get_event(), builder, depth)
    return value


def load_first(text: str) -> tuple[Any, bool]:
    """(first document or None, plain) — or (FALLBACK, False) when PyYAML must decide.

    Raises yaml.YAMLError on syntax errors, as PyYAML would for the first document, and
    YamlLimitError when it aliases or nests beyond the budget.
    """
    if CParser is None:
        return FALLBACK, False
    parser = CParser(text)
    try:
        parser.get_event()  # stream start
        start = parser.get_event()
        if type(start) is not DocumentStartEvent:
            return None, True  # empty stream
        builder = _Builder()
        doc = _node(parser, parser.get_event(), builder)
        parser.get_event()  # document end, as PyYAML consumes it
        return doc, builder.plain
    except _Unusual:
        return FALLBACK, False
    finally:
        parser.dispose()
