"""gitxp's own small Parquet writer, read back by two independent readers (pyarrow and DuckDB)."""

from __future__ import annotations

import math
import random
from array import array
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gitxp.store import plainparquet


def _columns(rows: int, floats: int) -> list[tuple[str, str, array]]:  # type: ignore[type-arg]
    rng = random.Random(rows)
    stamps = array("q", sorted(rng.randrange(1_600_000_000_000_000, 1_900_000_000_000_000) for _ in range(rows)))
    cols: list[tuple[str, str, array]] = [("timestamp", plainparquet.TIMESTAMP_US, stamps)]  # type: ignore[type-arg]
    specials = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]
    for j in range(floats):
        cols.append((f"gpu{j}_util_percent", plainparquet.FLOAT64, array("d", (specials[i % 6] if j == 0 and i < 6 else rng.uniform(-1e9, 1e9) for i in range(rows)))))
    return cols


@pytest.mark.parametrize(("rows", "floats"), [(1, 1), (3, 13), (100_000, 30)])
def test_written_file_reads_back_exactly(tmp_path: Path, rows: int, floats: int) -> None:
    cols = _columns(rows, floats)
    path = tmp_path / "h.parquet"
    plainparquet.write(path, cols)
    assert plainparquet.written_here(path)
    table = pq.read_table(path)
    assert table.schema == pa.schema([("timestamp", pa.timestamp("us", tz="UTC"))] + [(n, pa.float64()) for n, _, _ in cols[1:]])
    assert table.column("timestamp").cast(pa.int64()).to_pylist() == list(cols[0][2])
    for name, _, values in cols[1:]:
        got = table.column(name).to_pylist()
        assert [repr(v) for v in got] == [repr(v) for v in values]  # NaN, infinities and -0.0 bit for bit
    assert pq.ParquetFile(path).metadata.created_by == plainparquet.CREATED_BY.decode()
    duckdb = pytest.importorskip("duckdb")
    assert duckdb.sql(f"select count(*), min(epoch_us(timestamp)) from '{path}'").fetchall() == [(rows, min(cols[0][2]))]


def test_bad_columns_are_refused_and_nothing_is_left(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="same number"):
        plainparquet.write(tmp_path / "a.parquet", [("t", plainparquet.TIMESTAMP_US, array("q", [1, 2])), ("x", plainparquet.FLOAT64, array("d", [1.0]))])
    with pytest.raises(ValueError, match="array"):
        plainparquet.write(tmp_path / "a.parquet", [("x", plainparquet.FLOAT64, array("q", [1]))])
    with pytest.raises(ValueError, match="kind"):
        plainparquet.write(tmp_path / "a.parquet", [("x", "int8", array("b", [1]))])
    assert list(tmp_path.iterdir()) == []


def test_written_here_only_for_whole_files_of_this_writer(tmp_path: Path) -> None:
    ours = tmp_path / "ours.parquet"
    plainparquet.write(ours, _columns(10, 2))
    theirs = tmp_path / "theirs.parquet"
    pq.write_table(pq.read_table(ours), theirs)
    torn = tmp_path / "torn.parquet"
    torn.write_bytes(ours.read_bytes()[:-3])
    assert plainparquet.written_here(ours)
    assert not plainparquet.written_here(theirs)
    assert not plainparquet.written_here(torn)
    assert not plainparquet.written_here(tmp_path / "missing.parquet")
