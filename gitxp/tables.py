"""Experiments as rows: flattening params/metrics into columns for tables and exports."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

BASE_COLUMNS = ("id", "name", "status", "created", "duration_s")


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def row(record: Any) -> dict[str, Any]:
    """One flat row: base columns, ``params.*``, ``metrics.<name>`` (last), ``summary.*``, ``tags.*``."""
    meta = record.meta
    out: dict[str, Any] = {c: meta.get(c) for c in BASE_COLUMNS}
    out["id"] = record.id
    flatten("params", dict(record.params), out)
    for name, stats in (meta.get("metrics") or {}).items():
        out[f"metrics.{name}"] = stats.get("last") if isinstance(stats, Mapping) else stats
    flatten("summary", dict(meta.get("summary") or {}), out)
    flatten("tags", dict(meta.get("tags") or {}), out)
    for k in [k for k, v in out.items() if isinstance(v, Mapping) and not v]:
        out[k] = None
    return out


def select(rows: list[dict[str, Any]], columns: Iterable[str] | None) -> list[str]:
    """Column names in a stable order; ``columns`` are globs; id and name always come first."""
    seen: dict[str, None] = {}
    for r in rows:
        for k in r:
            seen.setdefault(k, None)
    names = list(seen)
    if columns:
        pats = [p.strip() for c in columns for p in c.split(",") if p.strip()]
        chosen = [n for p in pats for n in names if fnmatch.fnmatchcase(n, p)]
        names = list(dict.fromkeys(["id", "name", *chosen]))
    return names


def experiments_table(records: Iterable[Any], columns: Iterable[str] | None = None) -> Any:
    """A pyarrow Table, one row per experiment; mixed-type columns become strings."""
    import pyarrow as pa

    rows = [row(r) for r in records]
    names = select(rows, columns) if rows else list(BASE_COLUMNS)
    arrays = {}
    for n in names:
        values = [r.get(n) for r in rows]
        try:
            arrays[n] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[n] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(arrays)
