"""Parquet read from the store, checked by its footer first: pulled data is untrusted.

A metrics, hardware or table file is opened by its footer alone and refused
over a limit (size, uncompressed size, rows, columns, row groups) or with a
column of the wrong type, before one data page is read. The limits are
docs/format.md's "Validation limits"; gitxp's writers stay within them.
"""

from __future__ import annotations

from typing import Any

from gitxp.store.parquet import schema

#: Limits on a Parquet file read from the store (pulled data is untrusted),
#: checked in its footer before any data is read; what gitxp writes stays
#: within them. docs/format.md, "Validation limits", states them.
MAX_PARQUET_ROWS = 20_000_000
#: Uncompressed bytes of all column chunks together (a small file may inflate to gigabytes).
MAX_PARQUET_BYTES = 2**30
MAX_PARQUET_COLUMNS = 1024
MAX_PARQUET_ROW_GROUPS = 10_000


def _kind(what: str) -> str:
    return "metrics" if what.startswith("metrics") else "hardware" if what.startswith("hardware") else "table"


def _type_problem(kind: str, name: str, typ: Any) -> str | None:
    """Why column ``name`` of type ``typ`` does not belong in a ``kind`` file (None when it does)."""
    import pyarrow.types as t

    def stringy(x: Any) -> bool:
        return bool(t.is_string(x) or t.is_large_string(x) or (t.is_dictionary(x) and stringy(x.value_type)))

    if kind == "table" or (kind == "metrics" and name not in ("name", "step", "value", "timestamp")):
        return None
    if name == "timestamp":
        ok = t.is_timestamp(typ)
    elif kind == "metrics":
        ok = {"name": stringy, "step": t.is_integer, "value": lambda x: t.is_floating(x) or t.is_integer(x)}[name](typ)
    else:
        ok = t.is_floating(typ) or t.is_integer(typ) or t.is_null(typ)
    return None if ok else f"column {name!r} has type {typ}"


def check_parquet(data: bytes, *, what: str = "metrics.parquet", max_rows: int = MAX_PARQUET_ROWS, max_bytes: int = MAX_PARQUET_BYTES) -> Any:
    """Open a Parquet blob from the store by its footer only, refusing it when over a limit.

    Checks, before one data page is read: the file and its uncompressed
    size, row count, columns and row groups against the limits above, and
    the column types a metrics (``name`` text, ``step`` integer, ``value``
    number, ``timestamp``) or hardware file (``timestamp`` plus numbers)
    must have. Returns the open ``pyarrow.parquet.ParquetFile``.

    Raises:
        UnsafeDataError: not Parquet, over a limit, or mistyped.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gitxp.errors import UnsafeDataError

    hint = "the store may be damaged or hostile; see `git show`"
    if len(data) > max_bytes:
        raise UnsafeDataError(f"{what} is {len(data)} bytes, over the {max_bytes} byte limit", hint)
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        meta, schema = pf.metadata, pf.schema_arrow
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise UnsafeDataError(f"{what} is not valid Parquet", "the store may be damaged; see `git fsck`") from exc
    if meta.num_columns > MAX_PARQUET_COLUMNS:
        raise UnsafeDataError(f"{what} has {meta.num_columns} columns, over the {MAX_PARQUET_COLUMNS} column limit", hint)
    if meta.num_rows > max_rows or meta.num_rows < 0:
        raise UnsafeDataError(f"{what} has {meta.num_rows} rows, over the {max_rows} row limit", hint)
    if meta.num_row_groups > MAX_PARQUET_ROW_GROUPS:
        raise UnsafeDataError(f"{what} has {meta.num_row_groups} row groups, over the {MAX_PARQUET_ROW_GROUPS} limit", hint)
    size = 0
    per_column = meta.num_row_groups * meta.num_columns <= 100_000  # both are declared; take the larger when cheap
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        chunks = sum(max(rg.column(j).total_uncompressed_size, 0) for j in range(rg.num_columns)) if per_column else 0
        size += max(rg.total_byte_size, chunks, 0)
        if size > max_bytes:
            raise UnsafeDataError(f"{what} inflates to over {max_bytes} uncompressed bytes", hint)
    kind = _kind(what)
    want = {"metrics": ["name", "step", "value", "timestamp"], "hardware": ["timestamp"]}.get(kind, [])
    missing = [c for c in want if c not in schema.names]
    if missing:
        raise UnsafeDataError(f"{what} lacks columns {missing}", hint)
    for field in schema:
        problem = _type_problem(kind, field.name, field.type)
        if problem:
            raise UnsafeDataError(f"{what}: {problem}", hint)
    return pf


def _undecodable(what: str, exc: Exception) -> Any:
    """The error for a file whose footer passed but whose pages do not decode."""
    from gitxp.errors import UnsafeDataError

    return UnsafeDataError(f"{what} is not valid Parquet ({str(exc)[:80]})", "the store may be damaged; see `git fsck`")


def from_parquet_bytes(data: bytes, *, what: str = "metrics.parquet") -> Any:
    """Read a Parquet blob from the store, footer checked first (pulled data is untrusted).

    A metrics file comes back with exactly the four columns of
    :func:`schema`, in its types (a foreign writer's ``int32`` steps or
    plain-string names are cast).
    """
    import pyarrow as pa

    pf = check_parquet(data, what=what)
    try:
        table = pf.read(use_threads=False)  # see gitxp.store.parquet.read_parquet
        if _kind(what) == "metrics":
            table = table.select(["name", "step", "value", "timestamp"])
            if table.schema != schema():
                table = table.cast(schema(), safe=False)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise _undecodable(what, exc) from exc
    return table


def pull_problems(data: bytes, *, what: str = "metrics.parquet") -> list[str]:
    """What a pull refuses in a Parquet file: its footer (:func:`check_parquet`) and a metrics file's names.

    Only the ``name`` column's pages are read: a pull of 20,000 experiments
    must not decode every point of every run. The other columns are
    decoded, and refused when damaged, where they are read
    (:func:`from_parquet_bytes`), and that experiment is shown as damaged.

    Raises:
        UnsafeDataError: not Parquet, over a limit, mistyped, or names that do not decode.
    """
    import pyarrow as pa

    pf = check_parquet(data, what=what)
    if _kind(what) != "metrics":
        return []
    try:
        names = pf.read(columns=["name"], use_threads=False)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise _undecodable(what, exc) from exc
    return name_problems(names)


def name_problems(table: Any) -> list[str]:
    """Metric names in a metrics table that hold control characters (what pull refuses)."""
    from gitxp.store.layout import text_problem

    column = table.column("name").combine_chunks()
    names = column.dictionary if hasattr(column, "dictionary") else column.unique()
    return [f"metric name {n[:40]!r} has a {text_problem(n)}" for n in names.to_pylist() if isinstance(n, str) and text_problem(n)][:3]
