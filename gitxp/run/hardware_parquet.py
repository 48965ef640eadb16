"""The Parquet side of hardware sampling: segments written, merged and read.

:class:`gitxp.run.hardware.HardwareSampler` hands each flush's samples to
:func:`write_segment`; :func:`finalize` merges the segments into the
experiment's ``hardware.parquet`` (``gitxp recover`` calls it too) and
:func:`read` gives the samples so far (``gitxp ui`` shows them live).
pyarrow is imported inside the functions, never at import time.
"""

from __future__ import annotations

import os
import re
import shutil
from array import array as _array
from pathlib import Path
from typing import Any

from gitxp.run.hardware import _NAN, _SEGMENT_RE, BASE_COLUMNS, GPU_FIELDS, SEGMENT_GLOB
from gitxp.store import plainparquet

__all__ = ["finalize", "read", "write_segment"]


def write_segment(out_dir: Path, seq: int, rows: list[dict[str, float]], times: list[int]) -> None:
    """Write one flush's samples as ``hardware-<seq>.parquet``, atomically, without pyarrow.

    A few rows every two seconds do not pay for importing pyarrow
    (:mod:`gitxp.store.plainparquet` writes them): rows sorted by time with
    exact duplicate times dropped and columns in :func:`finalize`'s order,
    so a run's only segment already is its ``hardware.parquet``.
    """
    seen = dict.fromkeys(BASE_COLUMNS)
    for r in rows:
        seen.update(dict.fromkeys(r))
    names = [n for n in _column_order(["timestamp", *seen]) if n != "timestamp"]
    order = sorted(range(len(rows)), key=times.__getitem__)
    order = [i for j, i in enumerate(order) if j == 0 or times[i] != times[order[j - 1]]]
    columns: list[tuple[str, str, Any]] = [("timestamp", plainparquet.TIMESTAMP_US, _array("q", [times[i] for i in order]))]
    columns += [(k, plainparquet.FLOAT64, _array("d", [rows[i].get(k, _NAN) for i in order])) for k in names]
    out_dir.mkdir(parents=True, exist_ok=True)
    plainparquet.write(out_dir / f"hardware-{seq:06d}.parquet", columns)


def _column_order(names: list[str]) -> list[str]:
    def key(name: str) -> tuple[int, int, int, str]:
        if name == "timestamp":
            return (0, 0, 0, name)
        if name in BASE_COLUMNS:
            return (1, BASE_COLUMNS.index(name), 0, name)
        m = re.match(r"^gpu(\d+)_(.*)$", name)
        if m:
            field = m.group(2)
            pos = GPU_FIELDS.index(field) if field in GPU_FIELDS else len(GPU_FIELDS)
            return (2, int(m.group(1)), pos, field)
        return (3, 0, 0, name)

    return sorted(names, key=key)


def finalize(out_dir: Path, dest: Path, *, remove_segments: bool = True) -> bool:
    """Merge the segments in ``out_dir`` into ``dest`` (hardware.parquet).

    Rows are sorted by timestamp and exact duplicate timestamps dropped, so
    calling it twice, or after a crash between writing ``dest`` and removing
    the segments, gives the same file. Segments with different column sets
    (a GPU that appeared or vanished) are unified; missing values are null.
    A segment that cannot be read (a crash mid-write of an old version, a
    truncated copy) is skipped. If ``dest`` already exists (a resumed run)
    its rows are kept and the new segments appended.

    Args:
        out_dir: where :class:`HardwareSampler` wrote ``hardware-*.parquet``.
        dest: the file to write, atomically (temporary name + ``os.replace``).
        remove_segments: delete the merged segments once ``dest`` is written.

    Returns:
        True when ``dest`` holds samples; False (and nothing written) when
        there were none.
    """
    out_dir = Path(out_dir)
    dest = Path(dest)
    segments = sorted(p for p in out_dir.glob(SEGMENT_GLOB) if _SEGMENT_RE.match(p.name)) if out_dir.is_dir() else []
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    if len(segments) == 1 and not dest.exists() and plainparquet.written_here(segments[0]):
        # a run shorter than one flush: its only segment, sorted and ordered as below, is the file (no pyarrow)
        shutil.copyfile(segments[0], tmp)
    else:
        table = read(out_dir, dest if dest.exists() else None)
        if table is None:
            return False
        import pyarrow.parquet as pq

        pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, dest)
    if remove_segments:
        for seg in segments:
            try:
                seg.unlink()
            except OSError:
                pass
    return True


def read(out_dir: Path, dest: Path | None = None) -> Any:
    """The samples so far: ``dest``'s rows (if given) plus the segments in ``out_dir``.

    Sorted by timestamp with exact duplicate timestamps dropped; None when
    there are none. :func:`finalize` writes this; ``gitxp ui`` shows it live.
    """
    out_dir = Path(out_dir)
    if dest is None and not (out_dir.is_dir() and any(out_dir.glob(SEGMENT_GLOB))):
        return None  # nothing sampled (e.g. --no-hardware): don't import pyarrow
    import pyarrow as pa

    from gitxp.store.parquet import read_parquet

    segments = sorted(p for p in out_dir.glob(SEGMENT_GLOB) if _SEGMENT_RE.match(p.name)) if out_dir.is_dir() else []
    tables = []
    if dest is not None:
        try:
            tables.append(read_parquet(dest))
        except Exception:
            pass
    for seg in segments:
        try:
            t = read_parquet(seg)
        except Exception:
            continue
        if "timestamp" in t.column_names and t.num_rows:
            tables.append(t)
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None
    table = pa.concat_tables(tables, promote_options="permissive")
    table = table.select(_column_order(table.column_names))
    if _strictly_increasing(table["timestamp"]):
        return table  # the usual case (segments follow each other): no pyarrow.compute, 0.1-0.25 s to import
    import pyarrow.compute as pc

    table = table.sort_by("timestamp")
    if table.num_rows > 1:
        ts = table["timestamp"]
        keep = pc.not_equal(ts.slice(1), ts.slice(0, table.num_rows - 1))
        first = pa.Array.from_buffers(pa.bool_(), 1, [None, pa.py_buffer(b"\x01")])  # not pa.array([True]): it imports pandas
        keep = pa.concat_arrays([first, keep.combine_chunks()])
        table = table.filter(keep)
    return table


def _strictly_increasing(column: Any) -> bool:
    """True when a timestamp column, read straight from its buffers, only grows (so needs no sort or dedup)."""
    last = None
    for chunk in column.chunks:
        if chunk.null_count or chunk.type.bit_width != 64:
            return False
        values = memoryview(chunk.buffers()[1]).cast("q")[chunk.offset : chunk.offset + len(chunk)]
        if len(values) == 0:
            continue
        if last is not None and values[0] <= last:
            return False
        if any(values[i] >= values[i + 1] for i in range(len(values) - 1)):
            return False
        last = values[-1]
    return True
