"""The questions the page asks, answered as plain JSON-ready data.

Thin over the library so that ``gitxp ui`` and the CLI answer the same way:
listings come from :meth:`Store.experiments` (the index cache), filters from
:func:`gitxp.store.query.compile_filter`, refs from :func:`gitxp.store.resolve.resolve`,
running experiments from staging (:meth:`Store.running`, metric segments
merged as :func:`gitxp.store.parquet.merge` does at finish), the code diff from
:func:`gitxp.review.diff.source_diff`. :mod:`gitxp.ui.server` only routes HTTP to
the methods of :class:`Api` and turns :class:`ApiError` into a status code.

Everything returned is data for ``json.dumps``; the dicts of experiments come
from :mod:`gitxp.review.jsonview` (shared with ``--format json``), whose
:func:`~gitxp.review.jsonview.to_json` maps NaN and infinities to ``null`` (JSON has
none) so a diverged run never breaks the page.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from gitxp.store import layout
from gitxp.store import staging
from gitxp.errors import AmbiguousRefError, GitxpError, RefError
from gitxp.review.jsonview import detail_fields, environment_summary, row, to_json  # the one serialiser, shared with --format json

if TYPE_CHECKING:
    from gitxp.store.record import Record
    from gitxp.store.store import Store

#: Points per series unless the page asks otherwise (a chart is ~1,000 px wide).
DEFAULT_MAX_POINTS = 2000
#: The tail of output.log sent to the page.
OUTPUT_TAIL_BYTES = 64 * 1024
#: Diff lines sent to the page; a huge generated file should not freeze it.
MAX_DIFF_LINES = 5000
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


class ApiError(GitxpError):
    """A request the API cannot answer; ``status`` is the HTTP status to send."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        self.status = status
        super().__init__(message, hint)


def parse_int(text: str | None, name: str, *, default: int | None, minimum: int = 0) -> int | None:
    """A query parameter as an int ≥ ``minimum``, or 400."""
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name}={text[:40]!r} is not an integer", f"pass a whole number, e.g. {name}=100") from None
    if value < minimum:
        raise ApiError(400, f"{name} must be at least {minimum}, got {value}")
    return value


def downsample(values: Any, max_points: int) -> Any:
    """Indices (sorted) of at most ``max_points`` points that keep the curve's shape.

    The series is cut into ``max_points // 4`` equal buckets and each keeps
    its first, last, minimum and maximum point, so spikes and the ends survive
    (NaN is never a minimum or maximum). Below 4 points, evenly spaced ones.
    """
    import numpy as np

    n = len(values)
    if n <= max_points:
        return np.arange(n)
    if max_points < 4:
        return _sorted_unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
    buckets = max_points // 4
    size = -(-n // buckets)
    v = np.asarray(values, dtype=np.float64)
    full = n // size  # whole buckets, looked at as a (full, size) view: no copy of a million points
    if np.isnan(v).any():
        lo_src, hi_src = np.where(np.isnan(v), np.inf, v), np.where(np.isnan(v), -np.inf, v)
    else:
        lo_src = hi_src = v
    start = np.arange(full, dtype=np.int64) * size
    parts = [start, start + size - 1, start + lo_src[: full * size].reshape(full, size).argmin(axis=1), start + hi_src[: full * size].reshape(full, size).argmax(axis=1)]
    if full * size < n:  # the short last bucket
        a = full * size
        parts.append(np.array([a, n - 1, a + int(lo_src[a:].argmin()), a + int(hi_src[a:].argmax())], dtype=np.int64))
    return _sorted_unique(np.concatenate(parts))


def _sorted_unique(idx: Any) -> Any:
    """``np.unique`` of an int array without its first call's import of ``numpy.ma`` (~25 ms of a UI request)."""
    import numpy as np

    idx = np.sort(idx)
    return idx[np.concatenate(([True], idx[1:] != idx[:-1]))] if len(idx) else idx


def _floats(arr: Any) -> list[Any]:
    import numpy as np

    out = arr.tolist()
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        out = [x if x is not None and math.isfinite(x) else None for x in out]
    return out


def _series(name: str, step: Any, value: Any, micros_at: Callable[[Any], Any], max_points: int) -> dict[str, Any]:
    """One reduced series; ``micros_at(kept positions)`` gives their times; timestamps are Unix seconds (floats, ms precision)."""
    import numpy as np

    keep = downsample(value, max_points)
    ts = micros_at(keep).astype(np.float64) / 1e6
    return {"name": name, "step": step[keep].tolist(), "value": _floats(value[keep]), "timestamp": _floats(np.round(ts, 3))}


def _numpy(column: Any, dtype: str) -> Any:
    """A numeric Arrow array as numpy, zero-copy from its buffer.

    ``Array.to_numpy`` would import pandas (a second or more) just to look;
    a flat fixed-width buffer needs nothing but numpy.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    want = {"float64": pa.float64(), "int64": pa.int64(), "int32": pa.int32()}[dtype]
    if column.type != want:
        column = column.cast(want, safe=False)
    if column.null_count:
        column = pc.fill_null(column, float("nan") if dtype == "float64" else 0)
    return np.frombuffer(column.buffers()[1], dtype=dtype, count=len(column), offset=column.offset * want.bit_width // 8)


def metric_series(table: Any, names: list[str] | None, max_points: int) -> list[dict[str, Any]]:
    """Series per metric name of a long ``name, step, value, timestamp`` table, in name order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from gitxp.store.parquet import from_buffer

    if table is None or table.num_rows == 0:
        return []
    # memory touched here is what a first request costs (fresh pages: 60 MB took 0.15 s at times here):
    # codes stay int32, rows are found by their ends, and times are read only for the kept points
    col = table.column("name").combine_chunks()
    if isinstance(col, pa.DictionaryArray):
        dictionary, codes = col.dictionary.to_pylist(), _numpy(col.indices, "int32")
    else:
        dictionary = pc.unique(col).to_pylist()
        codes = _numpy(pc.index_in(col, value_set=pa.array(dictionary, col.type)), "int32")
    step = _numpy(table.column("step"), "int64")
    value = _numpy(table.column("value"), "float64")
    stamps = table.column("timestamp")
    wanted = sorted(str(n) for n in dictionary if n is not None) if names is None else names
    out = []
    for name in wanted:
        code = [i for i, n in enumerate(dictionary) if n == name]
        mask = codes == code[0] if len(code) == 1 else np.isin(codes, code)
        count = int(np.count_nonzero(mask))
        if not count:
            continue
        first, last = int(mask.argmax()), len(mask) - 1 - int(mask[::-1].argmax())
        rows: Any = None
        pick: Any = slice(first, last + 1)  # one run of rows, as stores keep them: views, no copies
        if last - first + 1 != count:
            pick = rows = np.flatnonzero(mask)
        s = step[pick]
        if len(s) > 1 and np.any(s[1:] < s[:-1]):
            pick = rows = np.arange(len(step))[pick][np.argsort(s, kind="stable")]  # stores are sorted; pulled ones may not be

        def micros_at(keep: Any, rows: Any = rows, first: int = first) -> Any:
            at = np.ascontiguousarray(keep + first if rows is None else rows[keep], dtype=np.int64)
            return _numpy(pc.take(stamps, from_buffer(pa.int64(), at)), "int64")

        out.append(_series(name, step[pick], value[pick], micros_at, max_points))
    return out


def hardware_series(table: Any, max_points: int) -> list[dict[str, Any]]:
    """One series per hardware column; ``step`` is the sample's index."""
    import numpy as np
    import pyarrow as pa

    if table is None or table.num_rows == 0 or "timestamp" not in table.column_names:
        return []
    ts = _numpy(table.column("timestamp").combine_chunks(), "int64")
    steps = np.arange(table.num_rows, dtype=np.int64)
    out = []
    for name in table.column_names:
        col = table.column(name)
        if name == "timestamp" or not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            continue
        out.append(_series(name, steps, _numpy(col.combine_chunks(), "float64"), ts.__getitem__, max_points))
    return out


class Api:
    """The store as the page sees it; one per server, safe to call from many threads.

    Calls are serialised (the store and its index cache are not thread-safe
    and every call is short); listings of the stored experiments are kept,
    JSON-encoded row by row, per (tip, where), so a warm listing costs a
    join of bytes.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.RLock()
        self._rows: OrderedDict[tuple[str | None, str | None], tuple[list[dict[str, Any]], list[bytes]]] = OrderedDict()
        self._live: dict[str, tuple[tuple[str, ...], Any, dict[str, Any]]] = {}
        self._tables: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._index: tuple[str | None, list[Record], dict[str, Record]] | None = None

    # ------------------------------------------------------------ listing

    def experiments(self, *, where: str | None = None, limit: int | None = None, offset: int = 0) -> dict[str, Any]:
        """``{"total", "experiments"}``: running ones first, then the store's, newest first.

        Raises:
            ApiError: 400 for a ``where`` that does not parse (the QueryError's message).
        """
        total, live, stored, _ = self._listing(where, limit, offset)
        return {"total": total, "experiments": live + stored}

    def experiments_json(self, *, where: str | None = None, limit: int | None = None, offset: int = 0) -> bytes:
        """:meth:`experiments` as JSON bytes; the store's rows are encoded once per tip."""
        total, live, _, encoded = self._listing(where, limit, offset)
        items = [to_json(r) for r in live] + encoded
        return b'{"total":%d,"experiments":[' % total + b",".join(items) + b"]}"

    def _listing(self, where: str | None, limit: int | None, offset: int) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]], list[bytes]]:
        """(total, live rows in the window, stored rows in the window, those encoded)."""
        from gitxp.errors import QueryError
        from gitxp.store.query import compile_filter

        where = where.strip() if where and where.strip() else None
        try:
            keep = compile_filter(where)
        except QueryError as exc:
            raise ApiError(400, str(exc)) from exc
        with self._lock:
            live = []
            for rec in self.store.running():
                summary = self._live_metrics(rec.id)[1]
                if where is None or keep({**rec.as_dict(), "metrics": summary}):
                    live.append(row(rec, summary))
            rows, encoded = self._stored_rows(where)
        total = len(live) + len(rows)
        end = total if limit is None else offset + limit
        lo, hi = max(offset - len(live), 0), max(end - len(live), 0)
        return total, live[offset:end], rows[lo:hi], encoded[lo:hi]

    def _stored_rows(self, where: str | None) -> tuple[list[dict[str, Any]], list[bytes]]:
        key = (self.store.tip, where)
        cached = self._rows.get(key)
        if cached is None:
            rows = [row(r) for r in self.store.experiments(where=where, decoded=True)]
            cached = (rows, [to_json(r) for r in rows])
            self._rows[key] = cached
            while len(self._rows) > 8:
                self._rows.popitem(last=False)
        else:
            self._rows.move_to_end(key)
        return cached

    def warm(self) -> None:
        """What the first requests would otherwise pay: imports, the listing, its JSON.

        Run in a background thread once the server accepts requests.
        """
        import numpy  # noqa: F401
        import pyarrow.compute  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        with self._lock:
            self._stored_rows(None)
            self._records()

    # ------------------------------------------------------------ one experiment

    def _resolve(self, ref: str) -> tuple[Record, staging.RunDir | None]:
        """(record, staged run or None); 404 for an unknown ref, 400 for an ambiguous one."""
        from gitxp.store.resolve import resolve

        running = self.store.running()
        records, by_id = self._records()
        try:
            rec = by_id.get(ref) if not running else None
            rec = rec or resolve([*running, *records], ref, self.store.aliases() if ref.startswith("alias/") else None)
        except AmbiguousRefError as exc:
            raise ApiError(400, str(exc)) from exc
        except RefError as exc:
            raise ApiError(404, str(exc)) from exc
        run = staging.run_dir(self.store.repo.gitxp_dir, rec.id) if not rec.tree else None
        return rec, run

    def _records(self) -> tuple[list[Record], dict[str, Record]]:
        """The store's records newest first and by id, built once per tip (20,000 of them cost a quarter second)."""
        tip = self.store.tip
        if self._index is None or self._index[0] != tip:
            records = self.store.index()
            self._index = (tip, records, {r.id: r for r in records})
        return self._index[1], self._index[2]

    def _live_metrics(self, exp_id: str) -> tuple[Any, dict[str, Any]]:
        """(table, summary) of a running experiment's segments, re-merged only when they changed."""
        from gitxp.store import parquet as metrics

        seg_dir = staging.run_dir(self.store.repo.gitxp_dir, exp_id).path / "metrics"
        try:
            names = tuple(sorted(p.name for p in seg_dir.glob(metrics.SEGMENT_GLOB)))
        except OSError:
            names = ()
        cached = self._live.get(exp_id)
        if cached is not None and cached[0] == names:
            return cached[1], cached[2]
        table, summary = metrics.merge(seg_dir) if names else (None, {})
        self._live = {k: v for k, v in self._live.items() if k != exp_id}
        self._live[exp_id] = (names, table, summary)
        while len(self._live) > 32:
            self._live.pop(next(iter(self._live)))
        return table, summary

    def experiment(self, ref: str) -> dict[str, Any]:
        """Everything the experiment page shows (README: "Browse in a web page", /api/experiments/REF)."""
        with self._lock:
            rec, run = self._resolve(ref)
            return self._detail(rec, run)

    def _detail(self, rec: Record, run: staging.RunDir | None) -> dict[str, Any]:
        meta = rec.meta
        problems: list[str] = []
        summary = self._live_metrics(rec.id)[1] if run is not None else None
        out = row(rec, summary)
        out.update(detail_fields(meta), running=run is not None)
        src = out["source"]

        def section(name: str, fn: Any, default: Any) -> Any:
            try:
                return fn()
            except (GitxpError, TypeError, ValueError, AttributeError, KeyError) as exc:  # hostile or damaged data: say so, show the rest
                problems.append(f"{name}: {exc}")
                return default

        out["environment"] = section("environment", lambda: self._environment(rec, run), None)
        out["artifacts"] = section("artifacts", lambda: self._artifacts(rec, run), [])
        out["tables"] = section("tables", lambda: rec.tables() if run is None else [], [])
        out["output_tail"] = section("output", lambda: self._output_tail(rec, run), None)
        out["code"] = section("code", lambda: self._code(rec, run, src), None)
        out["has_hardware"] = section("hardware", lambda: (run.path / "hardware").is_dir() if run is not None else rec.entry(layout.HARDWARE_FILE) is not None, False)
        out["problems"] = problems
        return out

    def _environment(self, rec: Record, run: staging.RunDir | None) -> dict[str, Any] | None:
        if run is not None:
            p = run.path / layout.ENVIRONMENT_FILE
            env = layout.load_yaml(p.read_bytes(), what=f"staged {layout.ENVIRONMENT_FILE}") if p.exists() else None
        else:
            env = rec.environment
        return environment_summary(env)

    def _artifacts(self, rec: Record, run: staging.RunDir | None) -> list[dict[str, Any]]:
        if run is not None:
            return []  # collected when the run ends
        from gitxp.review.jsonview import artifact_list

        return artifact_list(rec)

    def _output_tail(self, rec: Record, run: staging.RunDir | None) -> dict[str, Any] | None:
        if run is not None:
            p = run.path / layout.OUTPUT_FILE
            try:
                with open(p, "rb") as f:
                    size = f.seek(0, 2)
                    f.seek(max(0, size - OUTPUT_TAIL_BYTES))
                    data = f.read()
            except OSError:
                return None
        else:
            blob = rec.read_file(layout.OUTPUT_FILE)
            if blob is None:
                return None
            size, data = len(blob), blob[-OUTPUT_TAIL_BYTES:]
        text = _ANSI_RE.sub("", data.decode("utf-8", "replace"))
        if size > len(data):
            text = text.split("\n", 1)[-1]  # start at a whole line
        return {"text": text, "bytes": size, "truncated": size > len(data)}

    def _code(self, rec: Record, run: staging.RunDir | None, src: Mapping[str, Any]) -> dict[str, Any] | None:
        from gitxp.review import diff as review

        repo = self.store.repo
        code: review.CodeSource = rec
        if run is not None:
            tree = src.get("tree")
            code = SimpleNamespace(code_tree=tree if isinstance(tree, str) and repo.has_object(tree) else None, source=src)
        diffs = review.source_diff(repo, code)
        if diffs is None:
            why = "no code snapshot" if code.code_tree is None else "the source commit is not in this repository"
            return {"available": False, "why": why, "files": [], "stat": ""}
        budget = MAX_DIFF_LINES
        files = []
        for d in diffs:
            lines = [ln.rstrip("\n") for ln in "".join(d.lines).splitlines()][2:] if budget > 0 else []
            cut = len(lines) > budget
            lines = lines[: max(budget, 0)]
            budget -= len(lines)
            files.append({"path": d.path, "status": d.status, "binary": d.binary, "insertions": d.insertions, "deletions": d.deletions, "lines": lines, "truncated": cut or (not lines and bool(d.lines))})
        return {"available": True, "base": src.get("commit"), "files": files, "stat": review.format_stat(diffs)}

    # ------------------------------------------------------------ series

    def metrics(self, ref: str, *, name: str | None = None, max_points: int = DEFAULT_MAX_POINTS) -> dict[str, Any]:
        """``{"series": [...]}`` for one metric or all (404 when ``name`` was never logged)."""
        with self._lock:
            rec, run = self._resolve(ref)
            table = self._live_metrics(rec.id)[0] if run is not None else self._table(rec, "metrics", rec.metrics)
        series = metric_series(table, [name] if name is not None else None, max_points)
        if name is not None and not series:
            known = sorted(self._metric_names(rec, run))
            raise ApiError(404, f"experiment {rec.id} has no metric {name!r}", f"it has: {', '.join(known[:20]) or 'none'}")
        return {"id": rec.id, "series": series}

    def _metric_names(self, rec: Record, run: staging.RunDir | None) -> list[str]:
        return list((self._live_metrics(rec.id)[1] if run is not None else rec.metric_summary) or {})

    def hardware(self, ref: str, *, max_points: int = DEFAULT_MAX_POINTS) -> dict[str, Any]:
        """``{"series": [...]}``, one per hardware column (empty without samples)."""
        from gitxp.run import hardware_parquet

        with self._lock:
            rec, run = self._resolve(ref)
            table = hardware_parquet.read(run.path / "hardware") if run is not None else self._table(rec, "hardware", rec.hardware)
        return {"id": rec.id, "series": hardware_series(table, max_points)}

    def _table(self, rec: Record, what: str, load: Any) -> Any:
        """A stored experiment's Parquet table; the last few stay decoded (compare views re-ask)."""
        key = (rec.id, rec.tree, what)
        if key in self._tables:
            self._tables.move_to_end(key)
            return self._tables[key]
        table = load()
        self._tables[key] = table
        while len(self._tables) > 6:
            self._tables.popitem(last=False)
        return table
