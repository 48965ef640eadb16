"""The ``--where`` language's syntax tree and its evaluation: field resolution and comparison.

:mod:`gitxp.store.query` parses an expression into these nodes (its
docstring holds the grammar and the semantics); here a node is tested
against one record. Evaluation never raises: a missing field is ``null``,
values of different kinds are never equal and never ordered.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The per-metric statistics experiment.yaml keeps; ``metrics.acc`` means ``.last``.
METRIC_STATS = ("last", "min", "max", "count", "last_step")

_MISSING: Any = object()


# --------------------------------------------------------------------------- syntax tree


class Node:
    """A node of the parsed expression; evaluation never raises."""

    def evaluate(self, record: Mapping[str, Any]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def field_paths(self) -> set[str]:
        return set()


@dataclass(frozen=True)
class Field:
    """A field path such as ``params.optim.lr``; ``parts`` is the path split on dots."""

    path: str
    parts: tuple[str, ...]

    def resolve(self, record: Mapping[str, Any]) -> Any:
        root = self.parts[0]
        value = record.get(root, _MISSING) if isinstance(record, Mapping) else _MISSING
        if len(self.parts) == 1:
            return _normalize(value)
        if root == "inputs":  # a list of {name, ...}: reached by name
            from gitxp.store.inputs import by_name

            value = by_name(value)
        if not isinstance(value, Mapping):
            return _MISSING
        if root == "metrics":
            return _normalize(_metric(value, self.parts[1:]))
        return _normalize(_lookup(value, self.parts[1:]))


@dataclass(frozen=True)
class Literal:
    value: Any


Operand = Field | Literal


@dataclass(frozen=True)
class Compare(Node):
    op: str
    left: Operand
    right: Operand

    def evaluate(self, record: Mapping[str, Any]) -> bool:
        return _compare(self.op, _value(self.left, record), _value(self.right, record))

    def field_paths(self) -> set[str]:
        return {o.path for o in (self.left, self.right) if isinstance(o, Field)}


@dataclass(frozen=True)
class In(Node):
    operand: Operand
    choices: tuple[Any, ...]
    negate: bool

    def evaluate(self, record: Mapping[str, Any]) -> bool:
        value = _value(self.operand, record)
        found = any(_equal(value, choice) for choice in self.choices)
        return found != self.negate

    def field_paths(self) -> set[str]:
        return {self.operand.path} if isinstance(self.operand, Field) else set()


@dataclass(frozen=True)
class Not(Node):
    item: Node

    def evaluate(self, record: Mapping[str, Any]) -> bool:
        return not self.item.evaluate(record)

    def field_paths(self) -> set[str]:
        return self.item.field_paths()


@dataclass(frozen=True)
class _Group(Node):
    """A node over several conditions (``and``, ``or``): the fields it reads are theirs."""

    items: tuple[Node, ...]

    def field_paths(self) -> set[str]:
        return set().union(*(item.field_paths() for item in self.items))


@dataclass(frozen=True)
class And(_Group):
    def evaluate(self, record: Mapping[str, Any]) -> bool:
        return all(item.evaluate(record) for item in self.items)


@dataclass(frozen=True)
class Or(_Group):
    def evaluate(self, record: Mapping[str, Any]) -> bool:
        return any(item.evaluate(record) for item in self.items)


# --------------------------------------------------------------------------- evaluation


def _value(operand: Operand, record: Mapping[str, Any]) -> Any:
    return operand.resolve(record) if isinstance(operand, Field) else operand.value


def _lookup(mapping: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    """Walk ``parts`` through nested mappings (and list indices).

    A key that itself contains dots (``{"optim.lr": 0.1}``) is found too:
    the longest joined prefix that is a key wins.
    """
    if not parts:
        return mapping
    if isinstance(mapping, Mapping):
        for k in range(len(parts), 0, -1):
            key = ".".join(parts[:k])
            if key in mapping:
                found = _lookup(mapping[key], parts[k:])
                if found is not _MISSING:
                    return found
        return _MISSING
    if isinstance(mapping, list) and parts[0].isdigit() and int(parts[0]) < len(mapping):
        return _lookup(mapping[int(parts[0])], parts[1:])
    return _MISSING


def _metric(metrics: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    """``metrics.acc`` → the last value; ``metrics.acc.min`` → that statistic.

    The whole dotted name is tried as a metric name first, so a metric
    literally called ``val.acc`` is still reachable.
    """
    name = ".".join(parts)
    if name in metrics:
        entry = metrics[name]
        return entry.get("last", _MISSING) if isinstance(entry, Mapping) else entry
    if len(parts) >= 2 and parts[-1] in METRIC_STATS:
        entry = metrics.get(".".join(parts[:-1]), _MISSING)
        if isinstance(entry, Mapping):
            return entry.get(parts[-1], _MISSING)
    return _MISSING


def _normalize(value: Any) -> Any:
    """Datetimes become the ISO strings experiment.yaml holds, so both compare alike."""
    if isinstance(value, _dt.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, _dt.date):
        return value.isoformat()
    return value


def _kind(value: Any) -> str:
    if value is None or value is _MISSING:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _equal(left: Any, right: Any) -> bool:
    kind = _kind(left)
    if kind != _kind(right):
        return False
    if kind == "null":
        return True
    try:
        return bool(left == right)
    except Exception:  # an exotic value with a hostile __eq__ must not break a listing
        return False


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("==", "="):
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    kind = _kind(left)
    if kind not in ("number", "string") or kind != _kind(right):
        return False
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)
