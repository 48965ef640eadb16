"""A small Parquet writer for the files gitxp writes where importing pyarrow costs more than the data.

The hardware sampler stages a few rows every two seconds: timestamps and
float64 readings. Importing pyarrow for that (60-110 ms, half of it numpy)
lay on the path of every short wrapped command. These files are written
here instead, by the standard library: one row group, one uncompressed
data page (v1) per column, PLAIN values, OPTIONAL columns whose definition
levels are a single RLE run (no nulls: a missing reading is NaN), the
footer in Thrift's compact protocol. pyarrow, DuckDB and Spark read them
like their own; what pyarrow reads back is the schema pyarrow itself would
have written (``timestamp[us, tz=UTC]``, ``double``). Anything larger or
richer (merging, dictionaries, compression) stays with pyarrow.

Format: https://github.com/apache/parquet-format (``parquet.thrift``).
"""

from __future__ import annotations

import os
import sys
from array import array
from collections.abc import Sequence
from pathlib import Path

__all__ = ["CREATED_BY", "TIMESTAMP_US", "FLOAT64", "write"]

#: The ``created_by`` of files written here: how :func:`written_here` recognises them.
CREATED_BY = b"gitxp plainparquet 1"
TIMESTAMP_US = "timestamp[us, UTC]"  # array('q') of microseconds since 1970
FLOAT64 = "float64"  # array('d')

_MAGIC = b"PAR1"
# compact-protocol field types
_TRUE, _FALSE, _I32, _I64, _BINARY, _LIST, _STRUCT = 1, 2, 5, 6, 8, 9, 12
# parquet.thrift enums
_INT64, _DOUBLE = 2, 5
_OPTIONAL = 1
_TIMESTAMP_MICROS = 10
_PLAIN, _RLE = 0, 3
_UNCOMPRESSED = 0
_DATA_PAGE = 0


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


def _list(kind: int, items: Sequence[bytes]) -> bytes:
    head = bytes([(len(items) << 4) | kind]) if len(items) < 15 else bytes([0xF0 | kind]) + _varint(len(items))
    return head + b"".join(items)


def _struct(*fields: tuple[int, int, object]) -> bytes:
    """A compact-protocol struct of ``(field id, type, value)`` in increasing id order; values already encoded except ints and bools."""
    out = bytearray()
    last = 0
    for fid, kind, value in fields:
        if kind in (_TRUE, _FALSE):
            kind = _TRUE if value else _FALSE
        out.append(((fid - last) << 4) | kind)  # every id here is at most 15 past the previous one
        last = fid
        if kind in (_I32, _I64):
            out += _zigzag(value)  # type: ignore[arg-type]
        elif kind == _BINARY:
            out += _varint(len(value)) + value  # type: ignore[arg-type, operator]
        elif kind in (_LIST, _STRUCT):
            out += value  # type: ignore[arg-type]
    out.append(0)
    return bytes(out)


def _le(values: array) -> bytes:  # type: ignore[type-arg]
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()


def write(path: str | os.PathLike[str], columns: Sequence[tuple[str, str, array]]) -> None:  # type: ignore[type-arg]
    """Write ``columns`` — ``(name, TIMESTAMP_US or FLOAT64, values)``, all of one length — to ``path``.

    Written to a temporary name and renamed, so a crash never leaves half a file.
    """
    rows = len(columns[0][2]) if columns else 0
    if any(len(values) != rows for _, _, values in columns):
        raise ValueError("every column needs the same number of values")
    # definition levels: all 1 (no nulls), one RLE run of bit width 1, behind its 4-byte length
    run = _varint(rows << 1) + b"\x01"
    levels = len(run).to_bytes(4, "little") + run
    body = [b"PAR1"]
    offset = len(_MAGIC)
    chunks, schema = [], [_struct((4, _BINARY, b"schema"), (5, _I32, len(columns)))]
    total = 0
    for name, kind, values in columns:
        if kind == TIMESTAMP_US:
            physical, typecode = _INT64, "q"
            logical = _struct((8, _STRUCT, _struct((1, _TRUE, True), (2, _STRUCT, _struct((2, _STRUCT, _struct()))))))
            extra: tuple[tuple[int, int, object], ...] = ((6, _I32, _TIMESTAMP_MICROS), (10, _STRUCT, logical))
        elif kind == FLOAT64:
            physical, typecode, extra = _DOUBLE, "d", ()
        else:
            raise ValueError(f"unknown column kind {kind!r}")
        if values.typecode != typecode:
            raise ValueError(f"column {name!r} needs array({typecode!r}) values")
        key = name.encode("utf-8")
        schema.append(_struct((1, _I32, physical), (3, _I32, _OPTIONAL), (4, _BINARY, key), *extra))
        page = levels + _le(values)
        header = _struct(
            (1, _I32, _DATA_PAGE), (2, _I32, len(page)), (3, _I32, len(page)),
            (5, _STRUCT, _struct((1, _I32, rows), (2, _I32, _PLAIN), (3, _I32, _RLE), (4, _I32, _RLE))),
        )
        size = len(header) + len(page)
        meta = _struct(
            (1, _I32, physical), (2, _LIST, _list(_I32, [_zigzag(_PLAIN), _zigzag(_RLE)])), (3, _LIST, _list(_BINARY, [_varint(len(key)) + key])),
            (4, _I32, _UNCOMPRESSED), (5, _I64, rows), (6, _I64, size), (7, _I64, size), (9, _I64, offset),
        )
        chunks.append(_struct((2, _I64, offset), (3, _STRUCT, meta)))
        body += (header, page)
        offset += size
        total += size
    group = _struct((1, _LIST, _list(_STRUCT, chunks)), (2, _I64, total), (3, _I64, rows))
    footer = _struct(
        (1, _I32, 1), (2, _LIST, _list(_STRUCT, schema)), (3, _I64, rows), (4, _LIST, _list(_STRUCT, [group])), (6, _BINARY, CREATED_BY),
    )
    body += (footer, len(footer).to_bytes(4, "little"), _MAGIC)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(b"".join(body))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def written_here(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a whole file of this writer (its footer names :data:`CREATED_BY`)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size < 12:
                return False
            f.seek(size - 8)
            tail = f.read(8)
            length = int.from_bytes(tail[:4], "little")
            if tail[4:] != _MAGIC or not 0 < length <= size - 12:
                return False
            f.seek(size - 8 - length)
            footer = f.read(length)
            f.seek(0)
            return f.read(4) == _MAGIC and _varint(len(CREATED_BY)) + CREATED_BY in footer
    except OSError:
        return False
