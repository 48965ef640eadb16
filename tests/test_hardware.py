"""The hardware sampler on real processes, real Parquet files, no mocks."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import gitxp as run_gitxp

from gitxp.run.hardware import HardwareSampler, gpu_info
from gitxp.run.hardware_parquet import finalize

# Burns at least 3 s of wall time and 1.5 s of its own CPU time (on a loaded
# machine the wall time stretches until it got that CPU), then writes the CPU
# seconds it used to the file named by argv[1].
BURN = (
    "import sys, time\nt = time.time()\n"
    "while time.time() - t < 3 or time.process_time() < 1.5: pass\n"
    "open(sys.argv[1], 'w').write(repr(time.process_time()))\n"
)
# The root waits while its child burns: proc_* must cover the whole tree.
PARENT = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {BURN!r}, sys.argv[1]])\n"


def _segments(d: Path) -> list[Path]:
    return sorted(d.glob("hardware-*.parquet"))


def test_sampler_measures_a_busy_process_tree(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    staging = tmp_path / "staging"
    sampler = HardwareSampler(staging, interval=0.2)  # flush_every defaults to 2 s
    sampler.start()
    used = tmp_path / "burn-cpu-seconds"
    child = subprocess.Popen([sys.executable, "-c", PARENT, str(used)])
    sampler.set_pid(child.pid)
    try:
        # Crash safety: samples reach disk within ~2 s while the run is alive.
        # Measured from the first sample, not from start(): a loaded machine
        # may delay the sampler's start (psutil, the GPU probe), which is not
        # time a sample waits in memory.
        deadline = time.monotonic() + 30
        while not _segments(staging) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _segments(staging), "no segment written within 30 s"
        assert child.poll() is None, "the child finished before the check meant anything"
        first = _segments(staging)[0]
        waited = first.stat().st_mtime - pq.read_table(first)["timestamp"][0].as_py().timestamp()
        assert 0 <= waited < 2.6, f"the first sample waited {waited:.2f} s in memory"
    finally:
        child.wait(timeout=30)
        sampler.stop()
    # No partial files are left behind by the temp-name + rename writes.
    assert not list(staging.glob("*.tmp"))

    dest = tmp_path / "hardware.parquet"
    assert finalize(staging, dest) is True
    assert not _segments(staging), "merged segments are removed"
    table = pq.read_table(dest)
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.num_rows >= 10
    ts = table["timestamp"].to_pylist()
    assert ts == sorted(ts)
    for name in ("cpu_percent", "memory_used_bytes", "memory_percent", "proc_cpu_percent",
                 "proc_rss_bytes", "disk_read_bytes_per_s", "disk_write_bytes_per_s",
                 "net_sent_bytes_per_s", "net_recv_bytes_per_s", "memory_available_bytes"):
        assert table.schema.field(name).type == pa.float64(), name
    # The CPU time the sampler saw in the tree (percent x interval, summed) is
    # the CPU time the grandchild says it used, whatever share of a core the
    # machine's load left it: only its start, its first interval (no
    # reference yet) and the part after the last sample go unseen. The root
    # alone (it waits) would account for almost none of it.
    seen = 0.0
    for prev, row in zip(ts, table.slice(1).to_pylist()):
        if not math.isnan(row["proc_cpu_percent"]):
            seen += row["proc_cpu_percent"] / 100 * (row["timestamp"] - prev).total_seconds()
    burned = float(used.read_text())
    assert burned >= 1.5
    assert 0.6 * burned <= seen <= 1.1 * burned + 0.2, (seen, burned)
    assert min(table["memory_used_bytes"].to_pylist()) > 0
    rss = [v for v in table["proc_rss_bytes"].to_pylist() if not math.isnan(v)]
    assert rss and max(rss) > 1_000_000  # a Python interpreter is megabytes
    # Rates have no reference on the first sample: NaN, not a made-up zero.
    assert math.isnan(table["disk_read_bytes_per_s"][0].as_py())

    gpu_cols = [c for c in table.column_names if c.startswith("gpu")]
    if gpu_info():
        assert "gpu0_util_percent" in gpu_cols and "gpu0_memory_total_bytes" in gpu_cols
    else:
        assert gpu_cols == []
        # No NVIDIA driver is the normal case on a CPU machine: no noise.
        assert "gitxp: hardware sampling" not in capfd.readouterr().err


def test_gone_process_gives_nan_not_an_exception(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(done.stdout)
    with HardwareSampler(tmp_path / "s", interval=0.05, pid=dead_pid) as sampler:
        time.sleep(0.3)
    assert sampler.samples >= 3
    assert finalize(tmp_path / "s", tmp_path / "hw.parquet")
    table = pq.read_table(tmp_path / "hw.parquet")
    assert all(math.isnan(v) for v in table["proc_rss_bytes"].to_pylist())
    assert all(v > 0 for v in table["memory_used_bytes"].to_pylist())


def test_finalize_without_samples_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "staging").mkdir()
    dest = tmp_path / "hardware.parquet"
    assert finalize(tmp_path / "staging", dest) is False
    assert not dest.exists()
    assert finalize(tmp_path / "missing", dest) is False


def test_corrupt_trailing_segment_is_skipped_and_numbering_resumes(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    with HardwareSampler(staging, interval=0.05, flush_every=0.1) as first:
        time.sleep(0.4)
    good = _segments(staging)
    assert len(good) >= 2
    rows = sum(pq.read_metadata(p).num_rows for p in good)
    assert rows == first.samples

    # A resumed run appends segments after the existing ones.
    with HardwareSampler(staging, interval=0.05) as second:
        time.sleep(0.1)
    after = _segments(staging)
    assert len(after) > len(good) and after[: len(good)] == good

    # What a crash mid-copy leaves: a truncated Parquet file at the end.
    data = after[-1].read_bytes()
    (staging / "hardware-999999.parquet").write_bytes(data[: len(data) // 2])
    dest = tmp_path / "hardware.parquet"
    assert finalize(staging, dest) is True
    assert pq.read_table(dest).num_rows == first.samples + second.samples


def _segment(path: Path, stamps: list[int], cols: dict[str, list[float]]) -> None:
    arrays = [pa.array(stamps, pa.timestamp("us", tz="UTC"))] + [pa.array(v, pa.float64()) for v in cols.values()]
    pq.write_table(pa.Table.from_arrays(arrays, names=["timestamp", *cols]), path)


def test_finalize_unifies_columns_sorts_and_is_idempotent(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    # Out of order on purpose, and a GPU that vanished in the second segment.
    _segment(staging / "hardware-000001.parquet", [3_000_000, 4_000_000], {"cpu_percent": [3.0, 4.0]})
    _segment(staging / "hardware-000000.parquet", [1_000_000, 2_000_000],
             {"cpu_percent": [1.0, 2.0], "gpu0_util_percent": [10.0, 20.0]})
    dest = tmp_path / "hardware.parquet"
    assert finalize(staging, dest, remove_segments=False)
    assert finalize(staging, dest, remove_segments=False)  # dest + same segments: no duplicates
    table = pq.read_table(dest)
    assert table.column_names == ["timestamp", "cpu_percent", "gpu0_util_percent"]
    assert table["cpu_percent"].to_pylist() == [1.0, 2.0, 3.0, 4.0]
    assert table["gpu0_util_percent"].to_pylist() == [10.0, 20.0, None, None]


def test_sampler_overhead_is_reported(tmp_path: Path) -> None:
    """CPU time of the thread is exposed for the benchmark; here only sanity."""
    with HardwareSampler(tmp_path / "s", interval=0.1) as sampler:
        time.sleep(0.5)
    assert sampler.samples >= 4
    assert 0 < sampler.cpu_time_s < 0.5 * 2  # far below the wall time of two cores
    print(f"sampler: {sampler.samples} samples, {sampler.cpu_time_s * 1000:.1f} ms CPU")


def test_gpu_info_is_a_list_of_plain_dicts() -> None:
    info = gpu_info()
    assert isinstance(info, list)
    for g in info:
        assert {"index", "name", "memory_total_bytes", "driver_version", "cuda_version"} <= set(g)


def test_bad_interval_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        HardwareSampler(tmp_path, interval=0)


def test_import_is_light() -> None:
    code = ("import sys; import gitxp.run.hardware; "
            "print(sorted(m for m in ('pyarrow', 'psutil', 'pynvml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ})
    assert out.stdout.strip() == "[]"


def test_a_short_run_writes_hardware_parquet_without_pyarrow(tmp_path: Path) -> None:
    """Segments are written by gitxp's own Parquet writer; a run of one segment finalises by adopting it.

    The sampler and finalize run where pyarrow (and numpy) cannot be imported at
    all; the file is then read by pyarrow and by DuckDB, two independent readers.
    """
    code = """
import sys
from pathlib import Path
from gitxp import shutdown
with shutdown.imports_blocked(("pyarrow", "numpy"), "in this test"):
    from gitxp.run.hardware import HardwareSampler
    from gitxp.run.hardware_parquet import finalize
    out = Path(sys.argv[1])
    with HardwareSampler(out / "hw", interval=0.05, flush_every=60):
        import time; time.sleep(0.3)
    assert finalize(out / "hw", out / "hardware.parquet")
print("pyarrow" in sys.modules, "numpy" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
    assert not list((tmp_path / "hw").glob("hardware-*.parquet"))  # adopted, not copied and left
    table = pq.read_table(tmp_path / "hardware.parquet")
    assert table.num_rows >= 3
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert all(table.schema.field(n).type == pa.float64() for n in table.column_names[1:])
    assert table.column_names[:5] == ["timestamp", "cpu_percent", "memory_used_bytes", "memory_available_bytes", "memory_percent"]
    stamps = table.column("timestamp").to_pylist()
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert all(0 <= v <= 100 * (os.cpu_count() or 1) for v in table.column("cpu_percent").to_pylist() if not math.isnan(v))
    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(f"select count(*), min(memory_used_bytes) > 0 from '{tmp_path / 'hardware.parquet'}'").fetchall()
    assert rows == [(table.num_rows, True)]
    kinds = dict((r[0], r[1]) for r in duckdb.sql(f"describe select * from '{tmp_path / 'hardware.parquet'}'").fetchall())
    assert kinds["timestamp"] == "TIMESTAMP WITH TIME ZONE" and kinds["cpu_percent"] == "DOUBLE"


def test_a_wrapped_command_still_imports_numpy(git_repo: Path) -> None:
    """The wrapper runs without numpy (its pyarrow is leaner); the command it runs is untouched by that."""
    done = run_gitxp(git_repo, "start", "--", sys.executable, "-c", "import numpy; print('numpy', numpy.__name__)")
    assert done.returncode == 0, done.stderr
    assert "numpy numpy" in done.stdout
