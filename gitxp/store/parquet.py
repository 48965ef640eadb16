"""Metric segments: columnar buffers → sorted Parquet segments → one sorted metrics.parquet.

The hot path (``Experiment.log_metric``) appends a step, a value and a time
to one metric's ``array`` buffers (:class:`Series`). A background thread
calls :func:`flush_series` at least every second, which hands those buffers
to Arrow as they are (no per-point conversion) and writes them as one small
Parquet *segment* in staging, sorted by name then step (atomic rename), so a
crash loses at most the last interval. Finishing streams the segments into
``metrics.parquet`` (:func:`write_merged`) — long format, sorted by name
then step, ``name`` dictionary-encoded — row group by row group, and
computes the per-metric summary kept in ``experiment.yaml``. Reading a
Parquet file from the store (untrusted) is :mod:`gitxp.store.parquet_checks`.
"""

from __future__ import annotations

import math
import os
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

SEGMENT_GLOB = "*.parquet"
#: Metric values one process stages for an experiment: checked at each flush,
#: and the next log_metric refused, so that with what arrives before that
#: check the file stays under the readers' MAX_PARQUET_ROWS.
MAX_METRIC_POINTS = 16_000_000
#: Steps are int64: the largest one a metrics file can hold.
MAX_STEP = 2**63 - 1
#: Timestamps (seconds since 1970) that timestamp[us] holds and every reader can show: years 1 to 9999.
MIN_TIME, MAX_TIME = -62_135_596_800.0, 253_402_300_799.0


def schema() -> Any:
    import pyarrow as pa

    return pa.schema([("name", pa.dictionary(pa.int32(), pa.string())), ("step", pa.int64()),
                      ("value", pa.float64()), ("timestamp", pa.timestamp("us", tz="UTC"))])


def rows_to_table(rows: list[tuple[str, int, float, float]]) -> Any:
    """Rows of (name, step, value, unix seconds) → an Arrow table, column-wise.

    Timestamps stay Python floats on the hot path (``time.time()`` is the
    cheapest clock) and become microseconds here, vectorised.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    # one C-level pass over the tuples (4-5x faster than zip(*rows) + 4 arrays)
    st = pa.array(rows, type=pa.struct([("name", pa.string()), ("step", pa.int64()), ("value", pa.float64()), ("t", pa.float64())]))
    micros = pc.cast(pc.multiply(st.field("t"), 1e6), pa.int64(), safe=False)
    columns = [st.field("name").dictionary_encode(), st.field("step"), st.field("value"), micros.cast(pa.timestamp("us", tz="UTC"))]
    return pa.Table.from_arrays(columns, schema=schema())


class Series:
    """One metric's points not yet staged, as columns: what ``log_metric`` appends to.

    ``add`` holds the three arrays' bound ``append`` methods (steps,
    values, times), called with the time last; :meth:`take` therefore counts
    complete points by the times column, and the steps and values hold at
    least as many.
    Taking is a slice then a ``del`` of that prefix (each atomic under the
    GIL), so points appended meanwhile stay for the next flush. The default
    step follows the newest in ``steps``, or ``last_step`` (the newest
    taken) when a flush left none: no per-call bookkeeping of the last step.
    """

    __slots__ = ("steps", "values", "times", "add", "last_step")

    def __init__(self) -> None:
        self._empty()
        self.last_step = -1

    def _empty(self) -> None:
        self.steps = array("q")
        self.values = array("d")
        self.times = array("d")
        self.add = (self.steps.append, self.values.append, self.times.append)

    def next_step(self) -> int:
        """The step after the newest one logged."""
        try:
            return self.steps[-1] + 1
        except IndexError:  # none since the last flush (which may take them between a test and the read)
            return self.last_step + 1

    def __len__(self) -> int:
        return len(self.times)

    def last(self) -> tuple[int, float] | None:
        """(step, value) of the newest complete point, or None."""
        n = len(self.times)
        return (self.steps[n - 1], self.values[n - 1]) if n else None

    def take(self, final: bool = False) -> tuple[Any, Any, Any] | None:
        """The complete points, out of the buffers; ``final`` (logging has ended) hands over views of the buffers, uncopied."""
        n = len(self.times)
        if not n:
            return None
        if final:
            # views of exactly the n complete points: a call racing finish from another thread can append no
            # more (the arrays now export their buffers: BufferError, which log_metric reports as finished)
            views = (memoryview(self.steps)[:n], memoryview(self.values)[:n], memoryview(self.times)[:n])
            self._empty()
            self.last_step = views[0][-1]
            return views
        chunk = (self.steps[:n], self.values[:n], self.times[:n])
        self.last_step = chunk[0][-1]  # before the del: a default step racing it reads one or the other
        del self.steps[:n], self.values[:n], self.times[:n]
        return chunk

    def put_back(self, chunk: tuple[Any, Any, Any]) -> None:
        """Return a taken chunk in front (a failed write): the next flush retries it."""
        self.steps[0:0], self.values[0:0], self.times[0:0] = chunk


#: Metadata key of a segment: JSON list of [name, rows, first step, last step, row groups] in file order
#: (segments written before the row-group count hold one row group per name).
_SEGMENT_KEY = b"gitxp.series"
#: A segment with at most this many names gets one row group per name, read one at a time when merging.
_GROUPED_NAMES = 64
#: Rows per row group of the final metrics.parquet and, at most, of a metric in a segment: the merge holds
#: a few of these at a time, whatever the size of a flush.
MERGED_ROW_GROUP = 1 << 18
#: How metric files are encoded (standard encodings every reader has): the name as a dictionary; step and
#: timestamp, which grow steadily, as deltas (at 1 M points half the write time, a quarter of the size).
_ENCODING: dict[str, Any] = {"use_dictionary": ["name"], "column_encoding": {"step": "DELTA_BINARY_PACKED", "timestamp": "DELTA_BINARY_PACKED"}}


def _series_columns(chunks: list[tuple[Any, Any, Any]]) -> list[tuple[Any, Any, Any, Any]]:
    """Columns handed to Arrow as buffers (no per-point conversion); steps sorted per name if needed."""
    import pyarrow as pa
    import pyarrow.compute as pc

    million = from_buffer(pa.float64(), array("d", [1e6]))[0]  # not a Python scalar: see from_buffer
    stamp = pa.timestamp("us", tz="UTC")
    out = []
    for i, (steps, values, times) in enumerate(chunks):
        n = len(steps)
        st, va, ts = from_buffer(pa.int64(), steps, n), from_buffer(pa.float64(), values, n), from_buffer(pa.float64(), times, n)
        micros = pc.cast(pc.multiply(ts, million), pa.int64(), safe=False).cast(stamp)
        if n > 1 and not pc.all(pc.greater_equal(st.slice(1), st.slice(0, n - 1))).as_py():
            order = pc.sort_indices(st)  # stable: equal steps keep their logging order
            st, va, micros = pc.take(st, order), pc.take(va, order), pc.take(micros, order)
        out.append((st, va, micros, from_buffer(pa.int32(), array("i", [i]) * n)))
    return out


def from_buffer(arrow_type: Any, data: Any, n: int | None = None) -> Any:
    """An Arrow array over ``data`` (an ``array.array``, a contiguous numpy array or bytes of ``arrow_type``'s width).

    The one way gitxp builds arrays from values it holds: Arrow never converts
    a Python value here (``pa.array``/``pa.scalar`` import pandas on their first
    call, seconds on a busy machine, and impossible while Python exits).
    """
    import pyarrow as pa

    return pa.Array.from_buffers(arrow_type, len(data) if n is None else n, [None, pa.py_buffer(data)])


def strings(names: list[str]) -> Any:
    """A string array built from raw buffers, like :func:`from_buffer`."""
    from itertools import accumulate

    import pyarrow as pa

    encoded = [n.encode() for n in names]
    offsets = array("i", [0, *accumulate(len(b) for b in encoded)])
    return pa.Array.from_buffers(pa.string(), len(names), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def write_segment(seg_dir: Path, tag: str, names: list[str], chunks: list[tuple[Any, Any, Any]]) -> None:
    """One staged segment: sorted by (name, step), one row group per name when few, atomic rename."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    dictionary = strings(names)
    cols = _series_columns(chunks)
    grouped = len(names) <= _GROUPED_NAMES
    info = [[nm, len(c[0]), c[0][0].as_py() if len(c[0]) else 0, c[0][-1].as_py() if len(c[0]) else 0, -(-len(c[0]) // MERGED_ROW_GROUP) if grouped else 0]
            for nm, c in zip(names, cols)]
    sch = schema().with_metadata({_SEGMENT_KEY: json.dumps(info).encode()})
    tables = [pa.Table.from_arrays([pa.DictionaryArray.from_arrays(idx, dictionary), st, va, ts], schema=sch) for st, va, ts, idx in cols]
    name = f"{time.time_ns():020d}-{tag}.parquet"
    tmp = seg_dir / f".{name}.tmp"
    try:
        with pq.ParquetWriter(tmp, sch, compression="lz4", **_ENCODING) as w:  # staging: speed over size
            if grouped:
                for t in tables:
                    w.write_table(t, row_group_size=MERGED_ROW_GROUP)
            else:
                w.write_table(pa.concat_tables(tables), row_group_size=max(sum(t.num_rows for t in tables), 1))
        os.replace(tmp, seg_dir / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


#: Points taken out of their buffers and not staged, as finish hands them to :func:`write_merged`: (name, (steps, values, times)).
Pending = Sequence[tuple[str, tuple[Any, Any, Any]]]


def take_all(series: dict[str, Series], final: bool = False) -> list[tuple[str, Series, tuple[Any, Any, Any]]]:
    """Every metric's pending points, taken out of its buffers, in name order: (name, series, chunk)."""
    taken = []
    for name, s in sorted(list(series.items())):
        chunk = s.take(final)
        if chunk is not None:
            taken.append((name, s, chunk))
    return taken


def flush_series(series: dict[str, Series], seg_dir: Path, tag: str) -> int:
    """Write every metric's pending points as one segment; returns how many were written."""
    taken = take_all(series)
    if not taken:
        return 0
    try:
        write_segment(seg_dir, tag, [t[0] for t in taken], [t[2] for t in taken])
    except BaseException:
        for _name, s, chunk in taken:
            s.put_back(chunk)  # the next flush retries, nothing is dropped
        raise
    return sum(len(t[2][0]) for t in taken)


def read_parquet(source: Any) -> Any:
    """A whole Parquet file (path or buffer) as a table, without pyarrow's dataset scanner.

    ``pq.read_table``'s dataset scanner may leave read-ahead tasks on a C++
    thread when the process exits right after (std::terminate, exit 134 after
    correct output, 1 run in 50); a pooled decode did the same to ``gitxp show``
    in CI. ``ParquetFile.read(use_threads=False)`` runs on no such thread.
    """
    import pyarrow.parquet as pq

    with pq.ParquetFile(source) as pf:
        return pf.read(use_threads=False)


def read_segments(seg_dir: Path) -> Any:
    """All readable segments in write order; a torn last file (crash) is skipped."""
    import pyarrow as pa

    tables = []
    for p in sorted(seg_dir.glob(SEGMENT_GLOB)) if seg_dir.is_dir() else []:
        try:
            t = read_parquet(p)
        except (OSError, pa.ArrowInvalid):
            continue
        if t.num_rows:
            tables.append(t.select(["name", "step", "value", "timestamp"]).cast(schema()))
    return pa.concat_tables(tables) if tables else None


def merge(seg_dir: Path) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Merge segments into one table sorted by (name, step) plus per-metric stats.

    The sort works on dictionary codes re-ranked alphabetically rather than on
    decoded strings, which keeps memory near the size of the numeric columns.
    Rows with equal name and step keep their logging order (stable sort).
    """
    if not seg_dir.is_dir() or not any(seg_dir.glob(SEGMENT_GLOB)):
        return None, {}  # no metrics: don't pay for importing pyarrow
    table = read_segments(seg_dir)
    if table is None:
        return None, {}
    out = _merge_tables([table])
    return out, summarize(out)


def write_merged(seg_dir: Path, dest: Path, pending: Pending = ()) -> dict[str, dict[str, Any]] | None:
    """Stream the segments into ``dest`` (metrics.parquet) and return the per-metric summary (None: no metrics).

    ``pending`` ((name, chunk) as :func:`take_all` gives them) are points
    never staged, merged as the newest segment: a finishing run's last
    second goes straight into the file instead of through a segment written
    and read back (at 1 M points logged in under a second, a third of the
    finish).

    Each segment is already sorted by (name, step) and says in its footer
    which names it holds with their first and last steps, so a metric
    logged in step order (the usual case) is a concatenation of its runs in
    segment order: nothing is sorted, and a few row groups
    (:data:`MERGED_ROW_GROUP` rows each) are in memory, whatever the number
    of points. A metric whose runs overlap (steps logged
    out of order across flushes, or by two processes) is gathered and
    stably sorted on its own. Segments without the footer (a resumed run's
    previous file) are read whole. Same order, schema and summary as
    :func:`merge`.
    """
    paths = sorted(seg_dir.glob(SEGMENT_GLOB)) if seg_dir.is_dir() else []
    if not paths and not pending:
        return None  # no metrics: don't pay for importing pyarrow
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    segs = _segment_index(paths)
    if pending:
        segs.append(_memory_segment(pending))
    holders: dict[str, list[_Segment]] = {}  # name -> the segments holding it, in write order
    for seg in segs:
        for n in seg[1]:
            holders.setdefault(n, []).append(seg)
    names = sorted(holders)
    if not names:
        return None
    piece = _SegmentPieces(segs)
    summary: dict[str, dict[str, Any]] = {}
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with pq.ParquetWriter(tmp, schema(), compression="zstd", **_ENCODING) as w:
            out = _RowGroups(w, names, summary)
            jobs = [(seg, name, k) for name in names for seg in holders[name] for k in range(seg[1][name].pieces)]
            pieces = _read_ahead(lambda job: piece(*job), jobs)
            for code, name in enumerate(names):
                runs = holders[name]
                places = [seg[1][name] for seg in runs]
                count = sum(place.pieces for place in places)
                if all(places[i].first >= places[i - 1].last for i in range(1, len(places))):  # chained
                    for _ in range(count):
                        out.emit(code, next(pieces))
                else:
                    t = pa.concat_tables([next(pieces) for _ in range(count)])
                    out.emit(code, t.take(pc.sort_indices(t.column("step"))))  # stable: logging order kept on equal steps
            out.flush()
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {n: _finish_stats(summary[n]) for n in names if n in summary}


def _read_ahead(read: Callable[[Any], Any], jobs: list[Any], ahead: int = 2) -> Iterator[Any]:
    """``read(job)`` of each job in order, on a second thread up to ``ahead`` jobs early.

    Arrow reads and writes without the GIL: the next pieces of the merge are
    read while this one is encoded (at 1 M points, the reads' ~20 ms).
    """
    from gitxp.threads import Worker

    with Worker(read, "gitxp-merge-read") as reader:
        for job in jobs[:ahead]:
            reader.start(job)
        for i in range(len(jobs)):
            if i + ahead < len(jobs):
                reader.start(jobs[i + ahead])
            yield reader.result()


class _Place(NamedTuple):
    """Where a segment holds one metric: ``pieces`` row groups from ``group``, or (``group`` -1) ``rows`` rows from ``offset`` of the whole file."""

    group: int
    rows: int
    first: int  # step
    last: int
    offset: int
    pieces: int


#: (path, {name: its place}, its pieces when held in memory, else None)
_Segment = tuple[Path, dict[str, _Place], "dict[str, Any] | None"]


def _held(path: Path, pieces: dict[str, Any]) -> _Segment:
    """A segment whose pieces (each sorted by step) are in memory: a footerless file read whole, or points never staged."""
    entry = {n: _Place(-1, t.num_rows, t.column("step")[0].as_py(), t.column("step")[-1].as_py(), 0, 1) for n, t in pieces.items() if t.num_rows}
    return (path, entry, {n: pieces[n] for n in entry})


def _memory_segment(pending: Pending) -> _Segment:
    import pyarrow as pa

    columns = _series_columns([chunk for _name, chunk in pending])
    pieces = {name: pa.Table.from_arrays([st, va, ts], names=["step", "value", "timestamp"]) for (name, _), (st, va, ts, _i) in zip(pending, columns)}
    return _held(Path("<not staged>"), pieces)


def _segment_index(paths: list[Path]) -> list[_Segment]:
    """Where each segment holds each name, from its footer (a segment without one is read and split now)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    segs: list[_Segment] = []
    for p in paths:
        try:
            meta = pq.read_metadata(p)
            info = (meta.metadata or {}).get(_SEGMENT_KEY)
            if info is None:
                table = _merge_tables([read_parquet(p).select(["name", "step", "value", "timestamp"]).cast(schema())])
                segs.append(_held(p, _split_names(table)))
                continue
            rows = json.loads(info)
        except (OSError, pa.ArrowInvalid, ValueError):
            continue  # a torn file of a crash: skipped, as read_segments does
        groups = [row[4] if len(row) > 4 else 1 for row in rows]  # older segments: one row group per name
        grouped = all(groups) and meta.num_row_groups == sum(groups)
        entry, offset, group = {}, 0, 0
        for (name, n, first, last, *_), k in zip(rows, groups):
            entry[name] = _Place(group, n, first, last, offset, k) if grouped else _Place(-1, n, first, last, offset, 1)
            offset, group = offset + n, group + k
        segs.append((p, entry, None))
    return segs


class _SegmentPieces:
    """One metric's rows out of a segment: its ``k``-th row group, else a slice of the segment (read once, dropped after its last name)."""

    def __init__(self, segs: list[_Segment]) -> None:
        self.whole: dict[Path, Any] = {}
        self.last_name = {seg[0]: max(seg[1]) for seg in segs if seg[1]}

    def __call__(self, seg: _Segment, name: str, k: int) -> Any:
        import pyarrow.parquet as pq

        path, entry, legacy = seg
        if legacy is not None:
            return legacy[name]
        place = entry[name]
        cols = ["step", "value", "timestamp"]
        if place.group >= 0:
            with pq.ParquetFile(path) as pf:
                return pf.read_row_group(place.group + k, columns=cols, use_threads=False)
        if path not in self.whole:
            self.whole[path] = read_parquet(path).select(cols)
        t = self.whole[path].slice(place.offset, place.rows)
        if name == self.last_name[path]:
            self.whole.pop(path)
        return t


class _RowGroups:
    """metrics.parquet's rows, a metric's piece at a time, written MERGED_ROW_GROUP rows at a time; ``summary`` kept as they pass."""

    def __init__(self, writer: Any, names: list[str], summary: dict[str, dict[str, Any]]) -> None:
        self.writer, self.names, self.summary = writer, names, summary
        self.dictionary = strings(names)
        self.pending: list[Any] = []
        self.held = 0

    def emit(self, code: int, t: Any) -> None:
        for start in range(0, t.num_rows, MERGED_ROW_GROUP):  # a piece held whole (points never staged, an old segment) in bounded steps
            self._emit(code, t.slice(start, MERGED_ROW_GROUP))

    def _emit(self, code: int, t: Any) -> None:
        import pyarrow as pa

        t = t.cast(pa.schema([schema().field(c) for c in ("step", "value", "timestamp")]), safe=False)
        idx = from_buffer(pa.int32(), array("i", [code]) * t.num_rows)
        self.pending.append(pa.Table.from_arrays([pa.DictionaryArray.from_arrays(idx, self.dictionary), *t.columns], schema=schema()))
        self.held += t.num_rows
        _account(self.summary, self.names[code], t)
        if self.held >= MERGED_ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=max(self.held, 1))
            self.pending.clear()
            self.held = 0


def _merge_tables(tables: list[Any]) -> Any:
    """The in-memory sort of :func:`merge` over given tables."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.concat_tables(tables).unify_dictionaries().combine_chunks()
    names = table.column("name").chunk(0) if table.column("name").num_chunks else pa.array([], schema().field("name").type)
    dictionary = names.dictionary
    order = pc.sort_indices(dictionary)
    rank = pc.sort_indices(order).cast(pa.int32())  # rank[code] = alphabetical position
    codes = pc.take(rank, names.indices)
    keyed = pa.table({"k": codes, "step": table.column("step")})
    idx = pc.sort_indices(keyed, sort_keys=[("k", "ascending"), ("step", "ascending")])
    sorted_dict = pc.take(dictionary, order)
    new_names = pa.DictionaryArray.from_arrays(pc.take(codes, idx), sorted_dict)
    columns = [new_names, *(pc.take(table.column(c), idx) for c in ("step", "value", "timestamp"))]
    return pa.Table.from_arrays(columns, schema=schema())


def _split_names(table: Any) -> dict[str, Any]:
    """{name: its (step, value, timestamp) rows} of a table sorted by name."""
    import pyarrow.compute as pc

    out: dict[str, Any] = {}
    if table.num_rows == 0:
        return out
    column = table.column("name").combine_chunks()
    decoded = column.dictionary_decode() if hasattr(column, "dictionary") else column
    rest = table.select(["step", "value", "timestamp"])
    if table.num_rows == 1:
        return {decoded[0].as_py(): rest}
    start = 0
    changes = pc.not_equal(decoded.slice(1), decoded.slice(0, len(decoded) - 1))
    ends = [i + 1 for i in pc.indices_nonzero(changes).to_pylist()] + [len(decoded)]
    for end in ends:
        out[decoded[start].as_py()] = rest.slice(start, end - start)
        start = end
    return out


def _account(summary: dict[str, dict[str, Any]], name: str, t: Any) -> None:
    """Fold a piece of one metric (in step order) into its running summary."""
    import pyarrow.compute as pc

    values = t.column("value")
    mm = pc.min_max(values).as_py()
    s = summary.setdefault(name, {"min": None, "max": None, "count": 0})
    for key, pick in (("min", min), ("max", max)):
        v = mm[key]
        if v is None:
            continue
        if s[key] is None or (isinstance(s[key], float) and math.isnan(s[key])):
            s[key] = v
        elif not math.isnan(v):
            s[key] = pick(s[key], v)
    s["count"] += t.num_rows
    s["last"] = values[-1].as_py()
    s["last_step"] = t.column("step")[-1].as_py()


def _finish_stats(s: dict[str, Any]) -> dict[str, Any]:
    return {"last": _clean(s["last"]), "min": _clean(s["min"]), "max": _clean(s["max"]), "count": int(s["count"]), "last_step": int(s["last_step"])}


def summarize(table: Any) -> dict[str, dict[str, Any]]:
    """{name: {last, min, max, count, last_step}} over a sorted metric table.

    ``min``/``max`` ignore NaN (a diverged step should not hide the best
    value); ``last`` is the value at the highest step, NaN included.
    """
    import pyarrow as pa

    if table is None or table.num_rows == 0:
        return {}
    names = table.column("name").combine_chunks()
    if isinstance(names, pa.DictionaryArray):
        names = names.dictionary_decode()
    t = pa.table({"name": names, "step": table.column("step"), "value": table.column("value")})
    agg = t.group_by("name", use_threads=False).aggregate(
        [("value", "last"), ("value", "min"), ("value", "max"), ("value", "count"), ("step", "last")]
    )
    out: dict[str, dict[str, Any]] = {}
    for row in agg.to_pylist():
        out[row["name"]] = _finish_stats({"last": row["value_last"], "min": row["value_min"], "max": row["value_max"],
                                          "count": row["value_count"], "last_step": row["step_last"]})
    return dict(sorted(out.items()))


def _clean(v: float | None) -> float | None:
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return float("nan")
    return float(v)


def to_parquet_bytes(table: Any) -> bytes:
    """A metrics table (:func:`schema`) as the bytes of a ``metrics.parquet``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", **_ENCODING)
    return sink.getvalue().to_pybytes()
