"""Truthful runs under accidents: failed artifact collection, a full disk, a stale ref lock, `git gc`.

Real failures only: a malformed GITXP_KEY, a real small tmpfs filled up by
the script (skipped, with the reason, where mount is not permitted), a
stale ``refs/heads/gitxp.lock`` as a killed git leaves it, and a real
``git gc --prune=now`` while a run is live.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import gitxp
from conftest import committed_repo, fsck, gitxp as run_gitxp, run_git


def newest_meta(repo: Path) -> dict:
    """experiment.yaml of the newest experiment, read with git itself."""
    paths = [p for p in run_git(repo, "ls-tree", "-r", "--name-only", "gitxp").splitlines() if p.endswith("/experiment.yaml")]
    metas = [yaml.safe_load(run_git(repo, "show", f"gitxp:{p}")) for p in paths]
    return max(metas, key=lambda m: m["created"])


def staged_runs(repo: Path) -> list[str]:
    d = repo / ".git" / "gitxp" / "runs"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def small_repo(small_fs: Path) -> Path:
    """A repository with one commit and an initialised store, inside the small filesystem."""
    repo = committed_repo(small_fs / "repo", {"train.py": "print('training')\n"})
    run_gitxp(repo, "init")
    return repo


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no `mount` command here: a full disk cannot be simulated with a real file system")
    if r.returncode != 0:
        pytest.skip(f"mounting a 2 MB tmpfs is not permitted here (needs root outside a restricted container): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def staging_on(repo: Path, fs: Path) -> None:
    """Put .git/gitxp (staging of live runs) on another file system, behind a symlink."""
    import shutil

    run_gitxp(repo, "init")
    src = repo / ".git" / "gitxp"
    shutil.move(str(src), str(fs / "gitxp"))
    src.symlink_to(fs / "gitxp")


FILL = "import os\nwith open({path!r}, 'wb') as f:\n    try:\n        while True:\n            f.write(b'x' * 65536); f.flush()\n    except OSError:\n        pass\n"


# ---------------------------------------------------------------- artifact collection fails


@pytest.mark.parametrize(("code", "exit_status", "recorded_exit"), [("exit 3", 3, 3), ("exit 0", 1, 0)])
def test_a_failed_artifact_collection_keeps_the_commands_exit_code(git_repo: Path, code: str, exit_status: int, recorded_exit: int) -> None:
    (git_repo / "s.txt").write_text("result\n")
    run_gitxp(git_repo, "init")
    r = run_gitxp(git_repo, "start", "--no-hardware", "--artifact", "s.txt", "--", "sh", "-c", code, check=False, env={"GITXP_KEY": "not-a-key"})
    assert r.returncode == exit_status, r.stderr
    assert "Traceback" not in r.stderr
    meta = newest_meta(git_repo)
    assert meta["status"] == "failed"
    assert meta["exit_code"] == recorded_exit
    assert len(meta["recording_errors"]) == 1 and "artifacts" in meta["recording_errors"][0] and "GITXP_KEY" in meta["recording_errors"][0]
    assert "GITXP_KEY" in r.stderr  # the user is told why
    assert staged_runs(git_repo) == []
    fsck(git_repo)


def test_disk_full_while_collecting_artifacts_keeps_the_commands_exit_code(git_repo: Path, small_fs: Path) -> None:
    staging_on(git_repo, small_fs)
    (git_repo / "s.txt").write_text("result\n")
    (git_repo / "fill.py").write_text(FILL.format(path=str(small_fs / "filler")) + "raise SystemExit(3)\n")
    r = run_gitxp(git_repo, "start", "--no-hardware", "--artifact", "s.txt", "--", sys.executable, "fill.py", check=False, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    meta = newest_meta(git_repo)
    assert (meta["status"], meta["exit_code"]) == ("failed", 3)
    assert any("No space left on device" in e for e in meta["recording_errors"]), meta
    fsck(git_repo)


def test_disk_full_everywhere_leaves_the_run_staged_for_recover(tmp_path: Path, small_fs: Path) -> None:
    repo = small_repo(small_fs)
    (tmp_path / "fill.py").write_text(FILL.format(path=str(small_fs / "filler")) + "raise SystemExit(3)\n")
    r = run_gitxp(repo, "start", "--no-hardware", "--no-code", "--", sys.executable, str(tmp_path / "fill.py"), check=False, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "No space left on device" in last and "gitxp recover" in last, r.stderr
    [run] = staged_runs(repo)
    (small_fs / "filler").unlink()
    hb = repo / ".git" / "gitxp" / "runs" / run / "heartbeat"
    os.utime(hb, (time.time() - 60, time.time() - 60))
    r = run_gitxp(repo, "recover")
    assert run in r.stdout
    meta = newest_meta(repo)
    assert meta["id"] == run
    fsck(repo)


def test_a_full_disk_before_the_run_is_one_line_and_runs_nothing(small_fs: Path) -> None:
    repo = small_repo(small_fs)
    subprocess.run([sys.executable, "-c", FILL.format(path=str(small_fs / "filler"))], check=True)
    r = run_gitxp(repo, "start", "--no-hardware", "--", "touch", str(small_fs.parent / "ran"), check=False, timeout=60)
    assert r.returncode == 1
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "No space left on device" in line and "free some disk space" in line
    assert not (small_fs.parent / "ran").exists()


# ---------------------------------------------------------------- output capture on a full disk


def test_output_capture_keeps_draining_when_the_disk_is_full(git_repo: Path, small_fs: Path) -> None:
    staging_on(git_repo, small_fs)
    script = "import sys\nfor i in range(60000):\n    sys.stdout.write('line %06d ' % i + 'x' * 90 + '\\n')\nprint('done', flush=True)\n"
    (git_repo / "loud.py").write_text(script)
    t0 = time.monotonic()
    r = run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "loud.py", check=False, timeout=60)
    assert time.monotonic() - t0 < 30
    assert r.returncode == 1, r.stderr[-2000:]  # the command succeeded, its record is incomplete
    assert r.stdout.count("\n") == 60001 and r.stdout.endswith("done\n")  # everything passed through
    assert "Traceback" not in r.stderr and "not recorded: output: capture stopped" in r.stderr
    meta = newest_meta(git_repo)
    assert meta["status"] == "failed" and meta["exit_code"] == 0
    assert any(e.startswith("output:") and "No space left on device" in e for e in meta["recording_errors"]), meta
    log = gitxp.open(str(git_repo)).get(meta["id"]).output()
    assert log is not None and log.startswith("line 000000 ")
    assert log.rstrip("\n").splitlines()[-1].startswith("[gitxp: output capture stopped after ")


# ---------------------------------------------------------------- stale ref lock


def test_a_stale_ref_lock_is_reported_within_seconds_and_the_run_is_kept(git_repo: Path) -> None:
    run_gitxp(git_repo, "init")
    lock = git_repo / ".git" / "refs" / "heads" / "gitxp.lock"
    lock.write_text("")
    os.utime(lock, (time.time() - 60, time.time() - 60))  # a git killed a minute ago
    t0 = time.monotonic()
    r = run_gitxp(git_repo, "start", "--no-hardware", "--", "sh", "-c", "exit 0", check=False, timeout=120)
    assert time.monotonic() - t0 < 20
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and str(lock) in last and "File exists" in last
    assert "remove" in last and "gitxp recover" in last
    first = r.stderr.splitlines()[0]
    assert first.startswith("gitxp: warning: ") and str(lock) in first  # said before the command ran, too
    assert "Traceback" not in r.stderr
    [run] = staged_runs(git_repo)
    lock.unlink()
    hb = git_repo / ".git" / "gitxp" / "runs" / run / "heartbeat"
    os.utime(hb, (time.time() - 60, time.time() - 60))
    r = run_gitxp(git_repo, "recover")
    assert run in r.stdout
    meta = newest_meta(git_repo)
    assert (meta["id"], meta["status"], meta["exit_code"]) == (run, "completed", 0)  # what happened, not "crashed"
    fsck(git_repo)


LOCKED_FINISH = """
import sys, gitxp
xp = gitxp.start(name="locked", log_hardware=False, capture_env=False, capture_code=False)
for i in range(30_000):
    xp.log_metric("loss", 1.0 / (i + 1), step=i)
    xp.log_metric("acc", i / 30_000)
open(".git/refs/heads/gitxp.lock", "w").close()  # a git killed mid-update, between the loop and the commit
try:
    xp.finish()
except gitxp.RunNotStoredError as exc:
    print(xp.id, file=sys.stderr)
    sys.exit(3)
"""


def test_points_kept_in_memory_for_the_commit_are_staged_when_it_fails(git_repo: Path) -> None:
    """The committing process writes its last second of points straight into metrics.parquet, never into a
    segment: when the commit then fails, they are staged before the error, and `gitxp recover` commits them all."""
    import pyarrow.parquet as pq

    run_gitxp(git_repo, "init")
    (git_repo / "locked.py").write_text(LOCKED_FINISH)
    r = subprocess.run([sys.executable, "locked.py"], cwd=git_repo, capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    run = r.stderr.strip().splitlines()[-1]
    assert staged_runs(git_repo) == [run]
    assert list((git_repo / ".git" / "gitxp" / "runs" / run / "metrics").glob("*.parquet"))  # the points, staged
    (git_repo / ".git" / "refs" / "heads" / "gitxp.lock").unlink()
    os.utime(git_repo / ".git" / "gitxp" / "runs" / run / "heartbeat", (time.time() - 60, time.time() - 60))
    assert run in run_gitxp(git_repo, "recover").stdout
    meta = newest_meta(git_repo)
    assert meta["id"] == run and meta["status"] == "completed"
    assert meta["metrics"]["loss"]["count"] == meta["metrics"]["acc"]["count"] == 30_000
    folder = next(p for p in run_git(git_repo, "ls-tree", "-r", "--name-only", "gitxp").splitlines() if run in p and p.endswith("metrics.parquet"))
    data = subprocess.run(["git", "show", f"gitxp:{folder}"], cwd=git_repo, capture_output=True, check=True).stdout
    (git_repo.parent / "m.parquet").write_bytes(data)
    table = pq.read_table(git_repo.parent / "m.parquet")
    assert table.num_rows == 60_000
    names = table.column("name").to_pylist()
    assert names == ["acc"] * 30_000 + ["loss"] * 30_000
    assert table.column("step").to_pylist() == list(range(30_000)) * 2
    fsck(git_repo)


def test_a_lock_held_briefly_by_a_live_git_is_waited_for(git_repo: Path) -> None:
    run_gitxp(git_repo, "init")
    lock = git_repo / ".git" / "refs" / "heads" / "gitxp.lock"
    lock.write_text("")
    remover = subprocess.Popen([sys.executable, "-c", f"import os, time; time.sleep(1.0); os.unlink({str(lock)!r})"])
    try:
        r = run_gitxp(git_repo, "start", "--no-hardware", "--", "sh", "-c", "exit 0", timeout=60)
    finally:
        remover.wait()
    assert r.returncode == 0
    assert newest_meta(git_repo)["status"] == "completed"


# ---------------------------------------------------------------- git gc during a run, recover


GC_SCRIPT = """
import os, sys, time, gitxp
xp = gitxp.current()
with open("model.bin", "wb") as f:
    f.write(os.urandom(4096))
xp.log_artifact("model.bin")
xp.log_metric("loss", 0.5)
open("ready", "w").close()
while not os.path.exists("go"):
    time.sleep(0.05)
"""


def test_git_gc_during_a_run_loses_nothing(git_repo: Path) -> None:
    run_gitxp(git_repo, "init")
    (git_repo / "gcme.py").write_text(GC_SCRIPT)
    (git_repo / "train.py").write_text("print('edited, not committed')\n")  # a dirty snapshot: new blobs
    p = subprocess.Popen([sys.executable, "-m", "gitxp", "start", "--no-hardware", "--", sys.executable, "gcme.py"], cwd=git_repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (git_repo / "ready").exists():
            assert p.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        [run] = staged_runs(git_repo)
        kept = run_git(git_repo, "for-each-ref", "--format=%(refname)", "refs/gitxp/runs/").split()
        assert len(kept) == 2 and all(ref.startswith(f"refs/gitxp/runs/{run}/") for ref in kept)  # code tree, artifact
        run_git(git_repo, "gc", "-q", "--prune=now")
        (git_repo / "go").touch()
        out, err = p.communicate(timeout=60)
    finally:
        (git_repo / "go").touch()  # never leave the script waiting
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    rec = gitxp.open(str(git_repo)).get(run)
    assert len(rec.read_artifact("model.bin")) == 4096
    assert rec.code_tree is not None
    assert run_git(git_repo, "show", f"{rec.code_tree}:train.py") == "print('edited, not committed')\n"
    assert run_git(git_repo, "for-each-ref", "refs/gitxp/runs/") == ""  # the protecting ref went with the staging
    fsck(git_repo)


DIE_SCRIPT = """
import os, sys, gitxp
xp = gitxp.start(name=sys.argv[1], log_hardware=False, capture_env=False)
xp.log_metric("loss", 0.25)
with open(sys.argv[1] + ".bin", "wb") as f:
    f.write(os.urandom(1000))
xp.log_artifact(sys.argv[1] + ".bin")
xp.flush()
os._exit(9)
"""


def test_recover_commits_every_run_it_can_and_reports_the_rest(git_repo: Path) -> None:
    run_gitxp(git_repo, "init")
    (git_repo / "die.py").write_text(DIE_SCRIPT)
    for name in ("first", "broken", "third"):
        subprocess.run([sys.executable, "die.py", name], cwd=git_repo, check=False)
    base = git_repo / ".git" / "gitxp" / "runs"
    # Ids started in the same second sort by their random part: order by name.
    by_name = {yaml.safe_load((base / run / "meta.yaml").read_text())["name"]: run for run in staged_runs(git_repo)}
    runs = [by_name["first"], by_name["broken"], by_name["third"]]
    run_git(git_repo, "gc", "-q", "--prune=now")  # dead runs keep their objects too
    for run in runs:
        os.utime(base / run / "heartbeat", (time.time() - 60, time.time() - 60))
    broken = runs[1]
    (base / broken / "meta.yaml").write_text("{{{ not yaml\n")
    (base / broken / "owner.yaml").write_text("[[[ not yaml either\n")
    r = run_gitxp(git_repo, "recover", check=False)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stdout.count("(crashed)") == 2 and runs[0] in r.stdout and runs[2] in r.stdout
    errors = [ln for ln in r.stderr.splitlines() if broken in ln]
    assert len(errors) == 1 and "meta.yaml" in errors[0]
    store = gitxp.open(str(git_repo))
    for run, name in ((runs[0], "first"), (runs[2], "third")):
        rec = store.get(run)
        assert rec.status == "crashed" and len(rec.read_artifact(f"{name}.bin")) == 1000
    assert staged_runs(git_repo) == [broken]  # kept for a later try, with its objects
    kept = run_git(git_repo, "for-each-ref", "--format=%(refname)", "refs/gitxp/runs/").split()
    assert kept and all(ref.startswith(f"refs/gitxp/runs/{broken}/") for ref in kept)  # packed by gc, the others deleted
    fsck(git_repo)


def test_recover_commits_a_run_whose_artifact_objects_were_lost_and_says_so(git_repo: Path) -> None:
    run_gitxp(git_repo, "init")
    (git_repo / "die.py").write_text(DIE_SCRIPT)
    subprocess.run([sys.executable, "die.py", "lost"], cwd=git_repo, check=False)
    [run] = staged_runs(git_repo)
    for ref in run_git(git_repo, "for-each-ref", "--format=%(refname)", f"refs/gitxp/runs/{run}/").split():
        run_git(git_repo, "update-ref", "-d", ref)  # as before keep refs existed
    run_git(git_repo, "gc", "-q", "--prune=now")
    os.utime(git_repo / ".git" / "gitxp" / "runs" / run / "heartbeat", (time.time() - 60, time.time() - 60))
    r = run_gitxp(git_repo, "recover")
    assert f"recovered {run} (crashed)" in r.stdout
    meta = newest_meta(git_repo)
    assert meta["id"] == run and meta["metrics"]["loss"]["last"] == 0.25  # the metrics are kept
    [problem] = meta["recording_errors"]
    assert problem.startswith("artifacts: 'lost.bin' lost its stored object")
    fsck(git_repo)
