"""Browsing and amending through the real CLI: log, show, table, metrics, tag, note, rm."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import gitxp
from gitxp.cli import cli
from conftest import fsck, gitxp as run_gitxp, run_git


@pytest.fixture
def populated(git_repo: Path) -> Path:
    for i, lr in enumerate([0.1, 0.01, 0.001]):
        with gitxp.start(repo=str(git_repo), name="train" if i < 2 else "other", params={"lr": lr, "model": {"depth": i}}, log_hardware=False, capture_env=False) as xp:
            for s in range(10):
                xp.log_metric("loss", (1 - lr) / (s + 1), step=s)
            xp.log_metric("acc", 0.8 + i / 10)
    with pytest.raises(RuntimeError):
        with gitxp.start(repo=str(git_repo), name="bad", log_hardware=False, capture_env=False):
            raise RuntimeError("diverged")
    run_git(git_repo, "checkout", "-q", "-b", "feature")
    with gitxp.start(repo=str(git_repo), name="feat", log_hardware=False, capture_env=False):
        pass
    run_git(git_repo, "checkout", "-q", "main")
    return git_repo


def invoke(repo: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["-C", str(repo), *args])
    return r.exit_code, r.stdout, r.stderr


def test_log_current_branch_newest_first(populated: Path) -> None:
    code, out, _ = invoke(populated, "log")
    assert code == 0
    names = [ln.split("(")[1].rstrip(")") for ln in out.splitlines() if ln.startswith("experiment ")]
    assert names == ["bad", "other", "train", "train"]  # not `feat`, which ran on another branch
    assert "Params:  lr=0.001 model.depth=2" in out and "Status:  failed" in out


def test_log_options(populated: Path) -> None:
    _, out, _ = invoke(populated, "log", "--oneline", "--all")
    assert len(out.splitlines()) == 5 and out.splitlines()[0].split()[1] == "feat"
    _, out, _ = invoke(populated, "log", "--oneline", "-n", "2")
    assert len(out.splitlines()) == 2
    _, out, _ = invoke(populated, "log", "--oneline", "--status", "failed")
    assert [ln.split()[1] for ln in out.splitlines()] == ["bad"]
    _, out, _ = invoke(populated, "log", "--oneline", "--name", "tr*")
    assert [ln.split()[1] for ln in out.splitlines()] == ["train", "train"]
    _, out, _ = invoke(populated, "log", "--branch", "feature", "--format", "{name} {status}")
    assert out == "feat completed\n"
    _, out, _ = invoke(populated, "log", "--where", "params.lr < 0.05 and metrics.acc > 0.85", "--format", "{params.lr} {metrics.acc:.2f}")
    assert out == "0.001 1.00\n0.01 0.90\n"


def test_where_errors_are_usage_errors(populated: Path) -> None:
    r = run_gitxp(populated, "log", "--where", "__import__('os').system('echo hacked')", check=False)
    assert r.returncode == 2 and "hacked" not in r.stdout
    assert r.stderr.startswith("Error: bad --where expression at column 1")


def test_show(populated: Path) -> None:
    code, out, _ = invoke(populated, "show", "train")
    assert code == 0
    assert "(train)" in out and "lr" in out and "0.01" in out
    assert "loss" in out and any(ch in out for ch in "▁▂▃▄▅▆▇█")
    code, out, _ = invoke(populated, "show", "bad")
    assert "Error:    RuntimeError: diverged" in out


def test_unknown_and_ambiguous_refs(populated: Path) -> None:
    r = run_gitxp(populated, "show", "zzzz", check=False)
    assert r.returncode == 2 and r.stderr.startswith("Error: unknown experiment 'zzzz'")
    ids = [r.id for r in gitxp.open(str(populated)).experiments()]
    prefix = ids[0][:9]  # the date part: every experiment of the day matches
    r = run_gitxp(populated, "show", prefix, check=False)
    assert r.returncode == 2 and "ambiguous" in r.stderr.splitlines()[0]
    assert len(r.stderr.splitlines()) == 1 + len(ids)  # candidates listed after the error line


def test_table_formats(populated: Path) -> None:
    _, out, _ = invoke(populated, "table", "--format", "json", "--columns", "params.*,metrics.acc")
    rows = json.loads(out)
    assert len(rows) == 5 and set(rows[0]) == {"id", "name", "params.lr", "params.model.depth", "metrics.acc"}
    _, out, _ = invoke(populated, "table", "--format", "csv", "--where", "name == 'train'", "--sort", "params.lr")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["params.lr"] for r in rows] == ["0.01", "0.1"]
    _, out, _ = invoke(populated, "table", "--format", "markdown", "--columns", "metrics.acc")
    assert out.splitlines()[0] == "| id | name | metrics.acc |" and out.splitlines()[1] == "|---|---|---|"
    _, out, _ = invoke(populated, "table")
    assert out.splitlines()[0].split()[:3] == ["id", "name", "status"]


def test_table_shows_an_empty_mapping_as_missing_and_adds_no_column_for_it(git_repo: Path) -> None:
    with gitxp.start(repo=str(git_repo), name="a", params={"lr": 0.1, "opt": {}, "sched": {"kind": "cos", "args": {}}},
                     log_hardware=False, capture_env=False) as xp:
        xp.log_metric("loss", 0.5)
    with gitxp.start(repo=str(git_repo), name="b", params={"lr": 0.2, "opt": {"name": "sgd"}}, log_hardware=False, capture_env=False) as xp:
        xp.summary["best"] = {}
    _, out, _ = invoke(git_repo, "table", "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["a"]["params.opt"] is None and rows["a"]["params.sched.args"] is None and rows["a"]["params.sched.kind"] == "cos"
    assert rows["b"]["params.opt.name"] == "sgd" and rows["b"]["params.opt"] is None and rows["b"]["summary.best"] is None
    assert rows["a"]["metrics.loss"] == 0.5 and rows["b"]["metrics.loss"] is None
    assert not any(k.startswith("tags.") for k in rows["a"]), "no always-empty tags column"


def test_metrics_export(populated: Path, tmp_path: Path) -> None:
    _, out, _ = invoke(populated, "metrics", "train", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 11 and rows[0]["name"] == "acc" and rows[1]["name"] == "loss"
    dest = tmp_path / "m.parquet"
    code, _, _ = invoke(populated, "metrics", "train", "--format", "parquet", "-o", str(dest))
    import pyarrow.parquet as pq

    assert code == 0 and pq.read_table(dest).num_rows == 11


def test_tag_note_rm_are_commits(populated: Path) -> None:
    n0 = len(run_git(populated, "log", "--format=%s", "gitxp").splitlines())
    assert invoke(populated, "tag", "train", "reviewed=yes", "score=3")[0] == 0
    assert invoke(populated, "note", "train", "looks good")[0] == 0
    rec = gitxp.open(str(populated)).get("train")
    assert rec.tags == {"reviewed": "yes", "score": 3} and rec.meta["notes"] == "looks good"
    victim = gitxp.open(str(populated)).get("other").id
    assert invoke(populated, "rm", "other")[0] == 0
    assert victim not in [r.id for r in gitxp.open(str(populated)).experiments()]
    subjects = run_git(populated, "log", "--format=%s", "gitxp").splitlines()
    assert len(subjects) == n0 + 3 and all(s.startswith("gitxp: ") for s in subjects)
    assert subjects[0].startswith(f"gitxp: rm {victim}")
    # history keeps the removed experiment
    assert run_git(populated, "log", "--format=%H", "gitxp", "--", f"experiments/{victim[:4]}-{victim[4:6]}-{victim[6:8]}/{victim}") != ""
    fsck(populated)


def test_cache_follows_concurrent_writers(populated: Path) -> None:
    store = gitxp.open(str(populated))
    assert len(store.experiments()) == 5
    run_gitxp(populated, "start", "--no-hardware", "--name", "late", "--", "true")
    fresh = gitxp.open(str(populated))
    assert fresh.get("@").name == "late" and len(fresh.experiments()) == 6
    cache = populated / ".git" / "gitxp" / "cache"
    assert any(cache.iterdir())
    for p in cache.iterdir():
        p.unlink()  # the cache is derived: deleting it loses nothing
    assert len(gitxp.open(str(populated)).experiments()) == 6


WRITER = """
import sys, gitxp
for i in range(int(sys.argv[2])):
    with gitxp.start(repo=sys.argv[1], name=f"w{i}", params={"i": i}, log_hardware=False, capture_env=False, capture_code=False) as xp:
        xp.log_metric("loss", i)
    if i % 3 == 0:
        gitxp.open(sys.argv[1]).amend(xp.id, tags={"seen": i})
"""


def test_listing_from_the_cache_needs_no_yaml_parser(populated: Path) -> None:
    """gitxp.yaml is cached parsed by blob id (validated every time): a warm listing imports no YAML parser."""
    import subprocess
    import sys

    code = ("import sys, gitxp\ns = gitxp.open(sys.argv[1])\nrecs = s.experiments(limit=3)\n"
            "assert all(r.meta and r.params is not None for r in recs)\nprint('yaml' in sys.modules)")
    for expected in ("True", "False"):  # the first call builds the index from YAML, the second reads only caches
        r = subprocess.run([sys.executable, "-c", code, str(populated)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == expected


def test_cache_is_never_wrong_under_interleaved_writes(git_repo: Path) -> None:
    import subprocess
    import sys

    gitxp.open(str(git_repo)).ensure()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(git_repo), "25"])
    checks = 0
    while writer.poll() is None or checks < 3:
        store = gitxp.open(str(git_repo))
        recs = store.experiments()
        tip = store._index[0] if store._index else None
        if tip:
            listed = run_git(git_repo, "ls-tree", "-r", "-d", "--name-only", tip, "experiments").split()
            truth = {p.rsplit("/", 1)[1] for p in listed if p.count("/") == 2}
            assert {r.id for r in recs} == truth
            for r in recs:  # tags from amendments are never stale
                assert r.meta == gitxp.open(str(git_repo))._read_summary(r.tree, r.id)[0]
            checks += 1
        store.close()
    assert writer.wait() == 0 and checks >= 3
    assert len(gitxp.open(str(git_repo)).experiments()) == 25


def test_log_shows_running_experiments_first(git_repo: Path) -> None:
    import subprocess
    import sys
    import time

    script = "import time, gitxp\ngitxp.current().log_metric('x', 1)\ntime.sleep(6)\n"
    p = subprocess.Popen([sys.executable, "-m", "gitxp", "start", "--no-hardware", "--name", "slow", "--", sys.executable, "-c", script], cwd=git_repo, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        out = ""
        while time.time() < deadline and "running" not in out:
            time.sleep(0.3)
            out = run_gitxp(git_repo, "log", "--oneline").stdout
        first = out.splitlines()[0].split()
        assert first[1:3] == ["slow", "running"]
    finally:
        assert p.wait(timeout=60) == 0
    assert run_gitxp(git_repo, "log", "--oneline").stdout.split()[1:3] == ["slow", "completed"]


def test_listing_commands_run_without_the_cyclic_collector_others_keep_it(populated: Path) -> None:
    """A table of 20,000 experiments spent a fifth of its time in full collections that freed nothing."""
    import gc

    try:
        code, out, _ = invoke(populated, "table")
        assert code == 0 and "id" in out and not gc.isenabled()
        gc.enable()
        code, _, _ = invoke(populated, "tag", "@", "reviewed=yes")
        assert code == 0 and gc.isenabled()
    finally:
        gc.enable()


def test_the_console_entry_point_freezes_the_heap_before_python_exits(populated: Path) -> None:
    """Python's exit-time collection walked every live object (20 ms after `gitxp start`): main() freezes them first,
    whatever the command's exit status; exit handlers still run after it."""
    probe = ("import atexit, gc, os, sys; from gitxp.cli import main; "
             "atexit.register(lambda: os.write(2, b'frozen=%d' % (gc.get_freeze_count() > 0))); "
             "sys.argv = ['gitxp'] + sys.argv[1:]; main()")
    for args, status in ((["log", "--oneline", "-n", "1"], 0), (["show", "no-such-ref"], 2)):
        r = subprocess.run([sys.executable, "-c", probe, *args], cwd=populated, capture_output=True, text=True, timeout=120)
        assert r.returncode == status, r.stderr
        assert r.stderr.endswith("frozen=1"), r.stderr
    assert r.stderr.startswith("Error: ")


def test_listings_of_a_packed_store_exit_quietly(populated: Path, tmp_path: Path) -> None:
    """Without the cyclic GC, dulwich's repo (a cycle) once outlived its open pack files to interpreter
    teardown: every `table` of a store whose objects are packed printed "Exception ignored ...
    sys.meta_path is None" (a clone, or after `git gc`)."""
    run_git(populated, "gc", "-q")
    clone = tmp_path / "clone"
    run_git(tmp_path, "clone", "-q", str(populated), str(clone))
    run_git(clone, "fetch", "-q", "origin", "gitxp:gitxp")
    for repo in (populated, clone):
        for args in (["table"], ["table"], ["log", "-n", "2"], ["show", "@"], ["metrics", "@"], ["diff", "@", "@~1"]):
            r = run_gitxp(repo, *args)
            assert r.stdout and r.stderr == "", (repo.name, args, r.stderr)
