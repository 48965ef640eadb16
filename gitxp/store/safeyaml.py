"""PyYAML's safe loader, building the plain documents gitxp stores in one pass.

The C loader parses in C but builds every value in Python through a general
constructor (generators for recursive structures, a call per node and
scalar) and resolves each plain scalar by trying regular expressions: three
quarters of the time an experiment's files take to read, which made
checking a pulled 20,000-experiment store take 11 s. Stored files are
mappings, lists and the core scalars: :class:`Loader` builds those in one
recursive pass (with PyYAML's own scalar constructors, so a value is what
the safe loader makes of it) and remembers how a plain scalar resolved.
Anything else (another tag, a merge key ``<<``, an alias to a node being
built, an unhashable key) goes to PyYAML's constructor for the whole
document, so results and errors are always the safe loader's.
"""

from __future__ import annotations

from typing import Any

import yaml

_T = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ, _NULL, _BOOL, _INT, _FLOAT = (_T + t for t in ("str", "map", "seq", "null", "bool", "int", "float"))
#: Plain scalars whose resolution is remembered (keys and repeated values; numbers mostly differ).
_RESOLVED_MAX = 8192
_resolved: dict[str, str] = {}


class _Unusual(Exception):
    """A node the one-pass builder leaves to PyYAML's constructor."""


class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (C parser when built), with the fast path described in the module docstring."""

    #: Nesting depth of the last document built in one pass (lists and mappings; 0 for a scalar), None for another.
    depth: int | None = None
    _shared = False

    def construct_document(self, node: Any) -> Any:
        self.depth, self._shared = 0, False
        try:
            doc = self._build(node, {}, 1)
        except _Unusual:
            self.depth = None
            return super().construct_document(node)
        if self._shared:  # an alias nests its object deeper than where it was built: walk it
            self.depth = None
        return doc

    def _build(self, node: Any, building: dict[int, Any], depth: int) -> Any:
        tag = node.tag
        if tag == _STR:
            return node.value
        if tag == _MAP or tag == _SEQ:
            key = id(node)
            if key in building:  # an alias: the same object, as PyYAML gives; one being built is recursive
                if building[key] is None:
                    raise _Unusual
                self._shared = True
                return building[key]
            building[key] = None
            if depth > self.depth:  # type: ignore[operator]  # an int while building
                self.depth = depth
            if tag == _SEQ:
                out: Any = [self._build(child, building, depth + 1) for child in node.value]
            else:
                out = {}
                for k, v in node.value:
                    name = k.value if k.tag == _STR else self._build(k, building, depth + 1)
                    if name.__class__ is dict or name.__class__ is list:  # unhashable: PyYAML's error
                        raise _Unusual
                    out[name] = self._build(v, building, depth + 1)
            building[key] = out
            return out
        if tag == _FLOAT:
            return self.construct_yaml_float(node)
        if tag == _INT:
            return self.construct_yaml_int(node)
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return self.construct_yaml_bool(node)
        raise _Unusual

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0] and not self.yaml_path_resolvers:
            tag = _resolved.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
                if len(_resolved) < _RESOLVED_MAX:
                    _resolved[value] = tag
            return tag
        return super().resolve(kind, value, implicit)
