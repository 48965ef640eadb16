"""pandas DataFrames of stored experiments, for analysis in a notebook.

``runs()`` is the rows of ``gitxp table`` (:mod:`gitxp.tables`) as a
DataFrame; ``histories()`` stacks the ``metrics.parquet`` of several
experiments into one long frame, the shape seaborn and ``groupby`` want.
pandas is an optional extra: without it these raise
:class:`~gitxp.errors.MissingDependencyError` naming ``gitxp[pandas]``.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from typing import Any

from .errors import MissingDependencyError, QueryError

__all__ = ["HISTORY_COLUMNS", "histories", "runs"]

HISTORY_COLUMNS = ("id", "name", "metric", "step", "value", "timestamp")


def _pandas(feature: str) -> Any:
    try:
        import pandas
    except ImportError:
        raise MissingDependencyError(feature, "pandas", "pandas") from None
    return pandas


def runs(where: str | None = None, *, repo: str | os.PathLike[str] = ".") -> Any:
    """One row per stored experiment, newest first (see :func:`gitxp.runs`)."""
    pd = _pandas("gitxp.runs()")
    from . import tables
    from .store import Store

    with Store.open(repo) as store:
        rows = [tables.row(r) for r in store.experiments(where=where)]
    columns = tables.select(rows, None) if rows else list(tables.BASE_COLUMNS)
    frame = pd.DataFrame(rows, columns=columns)
    frame["created"] = pd.to_datetime(frame["created"], utc=True, errors="coerce")
    return frame


def histories(refs_or_where: Any, metrics: str | Iterable[str] | None = None, *, repo: str | os.PathLike[str] = ".") -> Any:
    """Metric histories as one long frame (see :func:`gitxp.histories`)."""
    pd = _pandas("gitxp.histories()")
    import pyarrow as pa
    import pyarrow.compute as pc

    from .store import Store

    patterns = [metrics] if isinstance(metrics, str) else list(metrics) if metrics is not None else None
    parts = []
    with Store.open(repo) as store:
        for rec in _records(store, refs_or_where):
            t = rec.metrics()
            names = t.column("name").cast(pa.string())
            if patterns is not None:
                wanted = [n for n in pc.unique(names).to_pylist() if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
                mask = pc.is_in(names, value_set=pa.array(wanted, pa.string()))
                t, names = t.filter(mask), names.filter(mask)
            n = t.num_rows
            parts.append(pa.table({
                "id": pa.array([rec.id] * n, pa.string()),
                "name": pa.array([rec.name] * n, pa.string()),
                "metric": names,
                "step": t.column("step"),
                "value": t.column("value"),
                "timestamp": t.column("timestamp"),
            }))
    if not parts:
        return pd.DataFrame({c: [] for c in HISTORY_COLUMNS})
    return pa.concat_tables(parts).to_pandas()


def _records(store: Any, refs_or_where: Any) -> list[Any]:
    """Records from a --where expression, a ref, Records, refs or a runs() frame's ``id`` column."""
    from .query import parse
    from .store import Record

    if isinstance(refs_or_where, str):
        try:
            parse(refs_or_where)
        except QueryError:
            return [store.get(refs_or_where)]
        return list(store.experiments(where=refs_or_where))
    if isinstance(refs_or_where, Record):
        return [refs_or_where]
    columns = getattr(refs_or_where, "columns", None)
    if columns is not None and "id" in columns:  # a DataFrame from gitxp.runs()
        refs_or_where = list(refs_or_where["id"])
    return [r if isinstance(r, Record) else store.get(str(r)) for r in refs_or_where]
