"""Performance work must not change behaviour: busy days, listings, metrics at scale (issue 12)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest

from conftest import fsck, run_git

from gitxp.store import layout
from gitxp.plumbing.repo import TREE_MODE, Entry, Repo
from gitxp.store.store import Store


def _ids_of_one_day(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    day = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    return [f"{day + dt.timedelta(seconds=rng.randrange(86400)):%Y%m%d-%H%M%S}-{rng.getrandbits(48):012x}" for _ in range(n)]


def test_busy_day_tree_is_spliced_in_git_order(git_repo: Path) -> None:
    """Commits into a day folder of fixed-size records (appends, inserts in the middle, replace, remove) give git's tree."""
    store = Store(Repo(git_repo))
    ids = _ids_of_one_day(60)
    for i, exp_id in enumerate(ids):  # random order: most land in the middle, not at the end
        store.commit_experiment(exp_id, {layout.EXPERIMENT_FILE: f"id: {exp_id}\nname: n{i}\nstatus: completed\n".encode()}, f"gitxp: {exp_id} n{i} completed\n")
    store.commit_experiment(ids[5], {layout.PARAMS_FILE: b"lr: 0.1\n"}, f"gitxp: {ids[5]} n5 completed\n")  # an existing entry replaced
    store.amend(ids[7], remove=True)
    day = f"{layout.EXPERIMENTS_DIR}/{layout.id_day(ids[0])}"
    listed = run_git(git_repo, "ls-tree", "--name-only", f"gitxp:{day}").split()
    assert listed == sorted(set(ids) - {ids[7]})
    assert run_git(git_repo, "show", f"gitxp:{day}/{ids[5]}/params.yaml").strip() == "lr: 0.1"
    # the spliced tree hashes exactly as git builds it from its own listing
    raw = run_git(git_repo, "ls-tree", f"gitxp:{day}")
    assert run_git(git_repo, "mktree", input=raw.encode()).strip() == run_git(git_repo, "rev-parse", f"gitxp:{day}").strip()
    fsck(git_repo)
    assert {r.id for r in Store(Repo(git_repo)).experiments()} == set(ids) - {ids[7]}


def test_day_tree_with_a_foreign_entry_takes_the_slow_path(git_repo: Path) -> None:
    """A day folder holding anything but same-length subtrees (a file, another name length) is rewritten by the general path, still in git's order."""
    repo = Repo(git_repo)
    store = Store(repo)
    ids = _ids_of_one_day(5, seed=1)
    store.commit_experiment(ids[0], {layout.EXPERIMENT_FILE: b"name: a\n"}, f"gitxp: {ids[0]} a completed\n")
    day = f"{layout.EXPERIMENTS_DIR}/{layout.id_day(ids[0])}"
    extra = repo.write_tree([Entry("x", 0o100644, repo.write_blob(b"x"))])

    def add(tip: str | None, tree: str | None) -> tuple[str, str]:
        return repo.update_tree(tree, {f"{day}/zz": Entry("zz", TREE_MODE, extra), f"{day}/README": Entry("README", 0o100644, repo.write_blob(b"hi"))}), "gitxp: foreign\n"

    repo.commit_to_branch(store.branch, add)
    for exp_id in ids[1:]:
        store.commit_experiment(exp_id, {layout.EXPERIMENT_FILE: b"name: b\n"}, f"gitxp: {exp_id} b completed\n")
    listed = run_git(git_repo, "ls-tree", "--name-only", f"gitxp:{day}").split()
    assert set(listed) == set(ids) | {"zz", "README"}
    raw = run_git(git_repo, "ls-tree", f"gitxp:{day}")
    assert run_git(git_repo, "mktree", input=raw.encode()).strip() == run_git(git_repo, "rev-parse", f"gitxp:{day}").strip()
    fsck(git_repo)


def _log(series: dict, name: str, step: int, value: float, t: float) -> None:
    from gitxp.store import parquet as metrics

    add_step, add_value, add_time = series.setdefault(name, metrics.Series()).add
    add_step(step)
    add_value(value)
    add_time(t)


@pytest.mark.parametrize("row_group", [None, 7])
def test_streamed_merge_matches_the_in_memory_sort(tmp_path: Path, row_group: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """write_merged gives merge()'s rows, order, schema and summary: in-order, out-of-order, two processes, many names,
    a previous file, and the points a finishing run never staged (merged from memory as the newest segment);
    with row groups of 7 rows, a metric spans several row groups of a segment and pieces held whole are emitted in steps."""
    import math
    import shutil
    import time

    from gitxp.store import parquet as metrics

    if row_group:
        monkeypatch.setattr(metrics, "MERGED_ROW_GROUP", row_group)

    from gitxp.store import parquet_checks

    rng = random.Random(3)
    for trial in range(16):
        seg = tmp_path / f"t{trial}"
        seg.mkdir()
        if trial % 4 == 3:  # a resumed run's previous metrics.parquet: no segment footer
            prev = metrics.rows_to_table([("loss", s, 1.0 / (s + 1), 1e9 + s) for s in range(40)] + [("acc", 0, 0.1, 1e9)])
            (seg / "00000000000000000000-previous.parquet").write_bytes(metrics.to_parquet_bytes(metrics._merge_tables([prev])))
        names = rng.choice([1, 3, 80])  # 80 > one row group per name
        for flush in range(rng.randint(1, 5) if trial < 14 else 0):  # the last two: nothing staged, all in memory
            for tag in ("a", "b")[: rng.randint(1, 2)]:
                series: dict = {}
                for k in range(rng.randint(0, 60)):
                    step = rng.randrange(40) if rng.random() < 0.2 else 100 * flush + k
                    _log(series, f"m{rng.randrange(names)}", step, rng.choice([math.nan, rng.random(), -rng.random()]), 1.7e9 + k)
                metrics.flush_series(series, seg, tag)
                time.sleep(0.002)
        if row_group and trial < 14:
            import pyarrow.parquet as pq

            metas = [pq.read_metadata(f) for f in seg.glob("*-[ab].parquet")]
            spread = [m for m in metas if m.num_rows > row_group and m.num_row_groups > 1]
            assert spread or not any(m.num_rows > row_group for m in metas)  # the multi-row-group layout is what is read here
        # the owner's last points, never staged: the reference stages them as the newest segment
        tail = [(f"m{rng.randrange(names)}", rng.randrange(40) if rng.random() < 0.3 else 1000 + k, rng.random(), 1.8e9 + k)
                for k in range(rng.randint(0, 50) if trial % 3 or trial >= 14 else 0)]
        staged, held = {}, {}
        for row in tail:
            _log(staged, *row)
            _log(held, *row)
        reference = tmp_path / f"r{trial}"
        shutil.copytree(seg, reference)
        metrics.flush_series(staged, reference, "z")
        ref, ref_summary = metrics.merge(reference)
        out = tmp_path / f"m{trial}.parquet"
        summary = metrics.write_merged(seg, out, [(name, chunk) for name, _s, chunk in metrics.take_all(held)])
        if ref is None:
            assert not summary
            continue
        got = parquet_checks.from_parquet_bytes(out.read_bytes())
        assert got.schema == metrics.schema()
        same = lambda x, y: x == y or (x != x and y != y)  # noqa: E731 - NaN equals NaN here
        assert len(got) == len(ref)
        for a, b in zip(ref.to_pylist(), got.to_pylist()):
            assert all(same(a[k], b[k]) for k in a), (a, b)
        assert ref_summary.keys() == summary.keys()
        for name, stats in ref_summary.items():
            assert all(same(v, summary[name][k]) for k, v in stats.items()), (name, stats, summary[name])
        assert len(got) == len(tail) + len(metrics.merge(seg)[0] or []) and not any(len(s) for s in held.values())


def test_segments_staged_by_an_earlier_version_still_merge(tmp_path: Path) -> None:
    """A run staged before segments recorded their row-group count (one row group per name, four fields a name)
    is still committed right by `gitxp recover` after an upgrade."""
    import json

    import pyarrow.parquet as pq

    from gitxp.store import parquet as metrics

    seg = tmp_path / "metrics"
    seg.mkdir()
    series: dict = {}
    for k in range(30):
        _log(series, "loss", k, 1.0 / (k + 1), 1.7e9 + k)
        _log(series, "acc", k, k / 30, 1.7e9 + k)
    metrics.flush_series(series, seg, "old")
    [path] = seg.glob("*.parquet")
    table = pq.read_table(path)
    rows = json.loads(table.schema.metadata[b"gitxp.series"])
    old = table.replace_schema_metadata({b"gitxp.series": json.dumps([r[:4] for r in rows]).encode()})
    with pq.ParquetWriter(path, old.schema) as w:
        start = 0
        for _name, n, *_ in rows:
            w.write_table(old.slice(start, n), row_group_size=n)
            start += n
    assert pq.read_metadata(path).num_row_groups == 2
    for k in range(30, 40):
        _log(series, "loss", k, 1.0 / (k + 1), 1.8e9 + k)
    metrics.flush_series(series, seg, "new")
    out = tmp_path / "metrics.parquet"
    summary = metrics.write_merged(seg, out)
    got = pq.read_table(out)
    assert got.column("name").to_pylist() == ["acc"] * 30 + ["loss"] * 40
    assert got.column("step").to_pylist() == list(range(30)) + list(range(40))
    assert summary is not None and summary["loss"]["count"] == 40 and summary["loss"]["last_step"] == 39


KILLED_SCRIPT = """
import sys, time, gitxp
xp = gitxp.start(name="killed", log_hardware=False, capture_env=False, capture_code=False)
print(xp.id, flush=True)
i = 0
while True:
    xp.log_metric("loss", 1.0 / (i + 1), step=i)
    xp.log_metric("acc", i * 1e-6)
    i += 1
    if i % 1000 == 0:
        time.sleep(0.01)
"""


def test_api_kill_9_loses_at_most_the_flush_interval(git_repo: Path) -> None:
    """The columnar buffers reach staging every second: kill -9 of an API run, recover, at most ~2 s lost, in order."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import gitxp

    (git_repo / "killed.py").write_text(KILLED_SCRIPT)
    p = subprocess.Popen([sys.executable, "killed.py"], cwd=git_repo, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    exp_id = p.stdout.readline().strip()
    from gitxp.store import staging

    segments = staging.run_dir(git_repo / ".git" / "gitxp", exp_id).path / "metrics"
    deadline = time.monotonic() + 60
    while not list(segments.glob("*.parquet")) and time.monotonic() < deadline:  # a loaded machine imports pyarrow slowly
        time.sleep(0.05)
    time.sleep(2.5)  # more than one flush interval after the first
    killed_at = time.time()
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(7)  # the heartbeat goes stale
    assert "crashed" in gitxp(git_repo, "recover").stdout
    rec = Store(Repo(git_repo)).get(exp_id)
    assert rec.status == "crashed"
    m = rec.metrics()
    names = m.column("name").to_pylist()
    steps = m.column("step").to_pylist()
    assert names == sorted(names) and set(names) == {"acc", "loss"}
    for n in ("acc", "loss"):
        s = [st for nm, st in zip(names, steps) if nm == n]
        assert s == list(range(len(s))) and len(s) > 1000  # every point up to the last flush, in step order
    last = max(t.timestamp() for t in m.column("timestamp").to_pylist())
    assert killed_at - last < 3.0  # at most ~2 s lost
    assert rec.metric_summary["loss"]["count"] == names.count("loss")
    fsck(git_repo)
