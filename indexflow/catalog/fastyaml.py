"""First YAML document of a text, built straight from libyaml's events.

Parsing bundle manifests is most of `add`'s CPU time, and PyYAML spends it in its generic Python
constructor (nodes, then objects). Bundle YAML is plain maps, lists and scalars, so this builds
the objects from the C parser's event stream in one pass and resolves plain scalars with the
same YAML 1.1 rules. Anything unusual (explicit tags, merge keys, complex keys, undefined or
recursive aliases) returns `FALLBACK` so the caller uses PyYAML itself: results are always the
same as PyYAML's.

Numbers follow Go's YAML -> JSON -> interface{} round trip: integral floats become ints. The
second value returned says whether the document is "plain" (only string keys, no floats left),
i.e. whether the C JSON encoder writes exactly Go's bytes for it.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (AliasEvent, DocumentStartEvent, MappingEndEvent, MappingStartEvent, ScalarEvent,
                         SequenceEndEvent, SequenceStartEvent)
from yaml.nodes import ScalarNode

try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML without libyaml: always use the slow path
    CParser = None

FALLBACK = object()
_STR = "tag:yaml.org,2002:str"
_CONSTRUCTOR = SafeConstructor()


class _Unusual(Exception):
    """The document uses a feature this reader leaves to PyYAML."""


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
        self.anchors: dict[str, Any] = {}

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


def _node(parser: Any, event: Any, builder: _Builder) -> Any:
    kind = type(event)
    if kind is AliasEvent:
        if event.anchor not in builder.anchors:
            raise _Unusual
        return builder.anchors[event.anchor]
    if kind is ScalarEvent:
        value = builder.scalar(event)
    elif kind is SequenceStartEvent:
        if event.tag is not None:
            raise _Unusual
        value = []
        while type(item := parser.get_event()) is not SequenceEndEvent:
            value.append(_node(parser, item, builder))
    elif kind is MappingStartEvent:
        if event.tag is not None:
            raise _Unusual
        value = _mapping(parser, builder)
    else:
        raise _Unusual
    if event.anchor is not None:
        if event.anchor in builder.anchors:  # PyYAML refuses duplicate anchors
            raise _Unusual
        builder.anchors[event.anchor] = value
    return value


def _mapping(parser: Any, builder: _Builder) -> dict:
    value: dict = {}
    while type(key_event := parser.get_event()) is not MappingEndEvent:
        key = _node(parser, key_event, builder)
        if isinstance(key, (dict, list)):
            raise _Unusual
        if not isinstance(key, str):
            builder.plain = False
        value[key] = _node(parser, parser.get_event(), builder)
    return value


def load_first(text: str) -> tuple[Any, bool]:
    """(first document or None, plain) — or (FALLBACK, False) when PyYAML must decide.

    Raises yaml.YAMLError on syntax errors, as PyYAML would for the first document.
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
