"""Experiments as rows: flattening params/metrics into columns for tables and exports."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gitxp.store import layout

if TYPE_CHECKING:
    from gitxp.store.record import Record

BASE_COLUMNS = ("id", "name", "status", "created", "duration_s")


#: Values that are never mappings: checked first, since an ABC check of a number is slow (a table of 20,000 makes ~700,000).
_SCALARS = (str, int, float, type(None))


def _mapping(value: Any) -> bool:
    return isinstance(value, dict) or (not isinstance(value, _SCALARS) and isinstance(value, Mapping))


_SCALAR_CLASSES = layout.SCALAR_CLASSES
_KEEP: Any = object()


def flatten(prefix: str, value: Any, out: dict[str, Any], empty: Any = _KEEP) -> None:
    """``value``'s leaves into ``out`` under dotted keys (``prefix.a.b``); an empty mapping is kept, or stored as ``empty``."""
    if _mapping(value) and value:
        for k, v in value.items():
            if v.__class__ in _SCALAR_CLASSES:  # most values: set here, not by a call per value
                out[f"{prefix}.{k}"] = v
            else:
                flatten(f"{prefix}.{k}", v, out, empty)
    else:
        out[prefix] = value if empty is _KEEP or not _mapping(value) else empty


def row(record: Record) -> dict[str, Any]:
    """One flat row: base columns, ``params.*``, ``metrics.<name>`` (last), ``summary.*``, ``tags.*``.

    An empty mapping reads as missing (None): no always-empty column.
    """
    meta = record.meta
    get = meta.get
    out: dict[str, Any] = {c: get(c) for c in BASE_COLUMNS}
    out["id"] = record.id
    params = record.params
    if params and _mapping(params):
        flatten("params", params, out, None)
    metrics = get("metrics")
    if metrics and _mapping(metrics):
        for name, stats in metrics.items():
            out[f"metrics.{name}"] = stats.get("last") if _mapping(stats) else stats
    for group in ("summary", "tags"):
        values = get(group)
        if values and _mapping(values):
            flatten(group, values, out, None)
    return out


#: Column groups in the order a table shows them; within a group, first seen first.
GROUPS = ("params.", "metrics.", "summary.", "tags.")
_METRIC_STAT = re.compile(r"metrics\.(.+)\.(last|min|max|count|last_step)")


def _group(name: str) -> int:
    return next((i + 1 for i, g in enumerate(GROUPS) if name.startswith(g)), 0 if name in BASE_COLUMNS else len(GROUPS) + 1)


def select(rows: list[dict[str, Any]], columns: Iterable[str] | None, records: Sequence[Record] | None = None) -> list[str]:
    """Column names: base, then params, metrics, summary, tags; ``columns`` are globs; id and name always first.

    ``metrics.<name>.<last|min|max|count|last_step>`` (as ``--where`` takes
    it) adds that statistic to ``rows`` when ``records`` are given. A name
    that matches no column is an error (a typo must not silently drop a
    column); so is a glob, unless it is inside a group that may just be
    empty here (``tags.*``).

    Raises:
        UsageError: a column that no experiment has.
    """
    seen: dict[str, None] = {}
    for r in rows:
        for k in r:
            seen.setdefault(k, None)
    names = sorted(seen, key=_group)  # stable: first-seen order within a group
    if columns:
        pats = [p.strip() for c in columns for p in c.split(",") if p.strip()]
        chosen: list[str] = []
        for pat in pats:
            hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
            stat = _METRIC_STAT.fullmatch(pat)
            if not hits and stat and records is not None:
                metric, which = stat.groups()
                found = False
                for r, rec in zip(rows, records):
                    s = (rec.meta.get("metrics") or {}).get(metric)
                    r[pat] = s.get(which) if isinstance(s, Mapping) else None
                    found = found or isinstance(s, Mapping)
                if found:
                    hits = [pat]
            if not hits and (not any(c in pat for c in "*?[") or not pat.startswith(GROUPS)):
                from gitxp.errors import UsageError

                close = [n for n in names if n.split(".")[-1] == pat.split(".")[-1]] or names
                raise UsageError(f"no column {pat!r} in these experiments",
                                 f"choose from: {', '.join(close[:12])}{' …' if len(close) > 12 else ''}")
            chosen += hits
        names = list(dict.fromkeys(["id", "name", *chosen]))
    return names


def experiments_table(records: Iterable[Record], columns: Iterable[str] | None = None) -> Any:
    """A pyarrow Table, one row per experiment; mixed-type columns become strings."""
    import pyarrow as pa

    records = list(records)
    rows = [row(r) for r in records]
    names = select(rows, columns, records) if rows else list(BASE_COLUMNS)
    arrays = {}
    for n in names:
        values = [r.get(n) for r in rows]
        try:
            arrays[n] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[n] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(arrays)
