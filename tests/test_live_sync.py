"""Live runs (`gitxp start --sync`): two clones and a bare remote, the real CLI.

Clone A runs a script under `--sync --sync-interval 0.5`; clone B pulls and
sees the run with its metrics so far; the remote vanishes mid-run (renamed)
and the run goes on with one warning; at the end the final experiment
replaces the running one everywhere and the store holds it once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import fsck, gitxp, run_git

from gitxp.store import layout

SCRIPT = """\
import os, time, pathlib
import gitxp
xp = gitxp.current()
here = pathlib.Path(os.environ["LIVE_DIR"])
(here / "id").write_text(xp.id)
for i in range(3):
    xp.log_metric("loss", 1.0 / (i + 1), step=i)
xp.flush()
while not (here / "more").exists():
    time.sleep(0.05)
for i in range(3, 6):
    xp.log_metric("loss", 1.0 / (i + 1), step=i)
xp.flush()
while not (here / "end").exists():
    time.sleep(0.05)
"""


def _wait(what: str, check: object, timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()  # type: ignore[operator]
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _seen_by_b(b: Path, exp_id: str) -> str:
    gitxp(b, "pull")
    r = gitxp(b, "show", exp_id, check=False)
    return r.stdout if r.returncode == 0 else ""


def test_live_run_seen_from_another_clone_then_replaced_by_the_final(git_repo: Path, tmp_path: Path) -> None:
    bare = tmp_path / "remote.git"
    run_git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    a = git_repo
    run_git(a, "remote", "add", "origin", str(bare))
    run_git(a, "push", "-q", "origin", "main")
    b = tmp_path / "b"
    run_git(tmp_path, "clone", "-q", str(bare), str(b))
    live = tmp_path / "live"
    live.mkdir()
    (a / "live_train.py").write_text(SCRIPT)

    proc = subprocess.Popen(
        [sys.executable, "-m", "gitxp", "start", "--no-hardware", "--sync", "--sync-interval", "0.5", "--", sys.executable, "live_train.py"],
        cwd=a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "LIVE_DIR": str(live)},
    )
    try:
        exp_id = str(_wait("the run to start", lambda: (live / "id").exists() and (live / "id").read_text() or proc.poll() is not None and proc.communicate()))
        shown = str(_wait("B to see the running experiment", lambda: (lambda s: s if "running" in s and "loss" in s else "")(_seen_by_b(b, exp_id))))
        assert exp_id in shown
        day = layout.experiment_dir(exp_id).rsplit("/", 2)[-2]

        # More metrics: B sees them on a later pull, the run still `running`.
        (live / "more").write_text("")
        _wait("B to see steps 3-5", lambda: "0.1667" in _seen_by_b(b, exp_id) or "0.167" in _seen_by_b(b, exp_id))

        # The remote vanishes: the run goes on; one warning however many intervals fail.
        gone = tmp_path / "gone.git"
        bare.rename(gone)
        time.sleep(2.0)
        assert proc.poll() is None, proc.communicate()
        gone.rename(bare)
        time.sleep(1.0)
        (live / "end").write_text("")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    warnings = [ln for ln in err.splitlines() if "live sync" in ln and "failed" in ln]
    assert len(warnings) == 1, err
    assert "trying again in 0.5s" in warnings[0]
    assert "works again" in err

    # The final experiment replaced the running one: once in the store, everywhere.
    gitxp(b, "pull")
    final = gitxp(b, "show", exp_id).stdout
    assert "completed" in final and "running" not in final
    for repo in (a, b, bare):
        listing = run_git(repo, "ls-tree", "--name-only", f"gitxp:experiments/{day}/").split()
        assert listing == [exp_id], (repo, listing)
        meta = run_git(repo, "show", f"gitxp:experiments/{day}/{exp_id}/experiment.yaml")
        assert "status: completed" in meta
    import io

    import pyarrow.parquet as pq

    data = subprocess.run(["git", "show", f"gitxp:experiments/{day}/{exp_id}/metrics.parquet"], cwd=bare, capture_output=True, check=True).stdout
    table = pq.read_table(io.BytesIO(data))
    assert sorted(table.column("step").to_pylist()) == [0, 1, 2, 3, 4, 5]  # each row once after the merges
    # History holds the live snapshots before the final commit.
    subjects = run_git(bare, "log", "--format=%s", "gitxp")
    assert "running (live)" in subjects
    log = gitxp(a, "log", "--all", "--oneline").stdout
    assert log.count(exp_id.rsplit("-", 1)[-1][:8]) == 1
    fsck(bare)


def test_sync_interval_must_be_positive(git_repo: Path) -> None:
    r = gitxp(git_repo, "start", "--sync", "--sync-interval", "0", "--", "true", check=False)
    assert r.returncode == 2
    assert r.stderr.startswith("Error: --sync-interval") and "Traceback" not in r.stderr
