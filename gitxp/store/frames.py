"""pandas DataFrames of stored experiments, for analysis in a notebook.

``runs()`` is the rows of ``gitxp table`` (:mod:`gitxp.store.tables`) as a
DataFrame; ``histories()`` stacks the ``metrics.parquet`` of several
experiments into one long frame, the shape seaborn and ``groupby`` want.
pandas is an optional extra: without it these raise
:class:`~gitxp.errors.MissingDependencyError` naming ``gitxp[pandas]``.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gitxp.errors import MissingDependencyError, QueryError

if TYPE_CHECKING:
    from gitxp.store.record import Record
    from gitxp.store.store import Store

__all__ = ["HISTORY_COLUMNS", "histories", "history_table", "runs"]

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
    from gitxp.store import tables
    from gitxp.store.store import Store

    with Store.open(repo) as store:
        rows = [tables.row(r) for r in store.experiments(where=where, decoded=True)]
    columns = tables.select(rows, None) if rows else list(tables.BASE_COLUMNS)
    frame = pd.DataFrame(rows, columns=columns)
    frame["created"] = pd.to_datetime(frame["created"], utc=True, errors="coerce")
    return frame


def histories(refs_or_where: Any, metrics: str | Iterable[str] | None = None, *, repo: str | os.PathLike[str] = ".") -> Any:
    """Metric histories as one long frame (see :func:`gitxp.histories`)."""
    _pandas("gitxp.histories()")
    from gitxp.store.store import Store

    with Store.open(repo) as store:
        table = history_table(_records(store, refs_or_where), metrics)
    return table.to_pandas()


def history_table(records: Iterable[Record], metrics: str | Iterable[str] | None = None, *, hardware: bool = False) -> Any:
    """The long ``id, name, metric, step, value, timestamp`` pyarrow Table of ``records``.

    ``metrics`` are names or globs. With ``hardware``, a pattern that
    matches no metric of an experiment is looked for among its hardware
    columns (``cpu_percent``): one row per sample, ``step`` its index, so
    ``gitxp metrics``/``gitxp plot -m cpu_percent`` draw it like a metric.
    Without pandas: the CLI's exports use it too.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    patterns = [metrics] if isinstance(metrics, str) else list(metrics) if metrics is not None else None
    parts = []

    def part(rec: Record, names: Any, t: Any, step: Any) -> Any:
        n = t.num_rows
        return pa.table({
            "id": pa.array([rec.id] * n, pa.string()),
            "name": pa.array([rec.name] * n, pa.string()),
            "metric": names,
            "step": step,
            "value": t.column("value").cast(pa.float64()),
            "timestamp": t.column("timestamp").cast(pa.timestamp("us", tz="UTC")),
        })

    for rec in records:
        t = rec.metrics()
        names = t.column("name").cast(pa.string())
        found: list[str] = pc.unique(names).to_pylist()
        if patterns is not None:
            wanted = [n for n in found if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
            mask = pc.is_in(names, value_set=pa.array(wanted, pa.string()))
            t, names = t.filter(mask), names.filter(mask)
        parts.append(part(rec, names, t, t.column("step").cast(pa.int64())))
        rest = [p for p in patterns or () if not any(fnmatch.fnmatchcase(n, p) for n in found)]
        hw = rec.hardware() if hardware and rest else None
        if hw is not None and "timestamp" in hw.column_names:
            for col in hw.column_names:
                if col != "timestamp" and any(fnmatch.fnmatchcase(col, p) for p in rest) and (pa.types.is_integer(hw.column(col).type) or pa.types.is_floating(hw.column(col).type)):
                    n = hw.num_rows
                    sub = pa.table({"value": hw.column(col), "timestamp": hw.column("timestamp")})
                    parts.append(part(rec, pa.array([col] * n, pa.string()), sub, pa.array(range(n), pa.int64())))
    if not parts:
        return pa.table({"id": pa.array([], pa.string()), "name": pa.array([], pa.string()), "metric": pa.array([], pa.string()),
                         "step": pa.array([], pa.int64()), "value": pa.array([], pa.float64()),
                         "timestamp": pa.array([], pa.timestamp("us", tz="UTC"))})
    return pa.concat_tables(parts)


def _records(store: Store, refs_or_where: Any) -> list[Record]:
    """Records from a --where expression, a ref, Records, refs or a runs() frame's ``id`` column."""
    from gitxp.store.query import parse
    from gitxp.store.record import Record

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
