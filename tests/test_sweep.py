"""`gitxp sweep` and `gitxp.sweep()`: parent/children, skip, failures, split, queue claims, killed workers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

from conftest import ROOT, fsck, gitxp, run_git

from gitxp.store.store import Store

EXAMPLE = ROOT / "examples" / "sweep"
CMD = ["python", "train.py", "--lr", "{lr}", "--batch", "{batch}", "--epochs", "{epochs}"]
FAST = ["--no-hardware", "--no-code"]


def setup(repo: Path) -> Path:
    for f in ("grid.yaml", "train.py"):
        shutil.copy(EXAMPLE / f, repo / f)
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", "sweep example")
    return repo


def children(repo: Path) -> tuple[list, list]:
    """(parents, children) of every sweep in the store."""
    recs = Store.open(repo).index()
    return [r for r in recs if "sweep_file" in r.tags], [r for r in recs if "sweep_index" in r.tags]


def popen(repo: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gitxp", *args], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def test_dry_run_prints_exact_commands_and_runs_nothing(git_repo: Path) -> None:
    repo = setup(git_repo)
    r = gitxp(repo, "sweep", "grid.yaml", "--dry-run", "--", *CMD)
    assert "python train.py --lr 0.1 --batch 16 --epochs 3" in r.stdout
    assert "python train.py --lr 0.01 --batch 32 --epochs 3" in r.stdout
    assert r.stdout.count("python train.py") == 4
    r = gitxp(repo, "sweep", "grid.yaml", "--dry-run", "--split", "1/2", "--", *CMD)
    assert [line.split()[0] for line in r.stdout.splitlines() if line.startswith("#")] == ["#1", "#3"]
    assert run_git(repo, "branch", "--list", "gitxp") == ""


def test_sweep_creates_parent_and_children_and_rerun_skips(git_repo: Path) -> None:
    repo = setup(git_repo)
    r = gitxp(repo, "sweep", "grid.yaml", "--no-hardware", "--", *CMD)
    parents, kids = children(repo)
    assert len(parents) == 1 and len(kids) == 4
    parent = parents[0]
    assert parent.name == "grid" and parent.status == "completed" and dict(parent.params) == {"epochs": 3}, (r.stderr, parent.summary, [k.status for k in kids])
    assert parent.summary["completed"] == 4
    assert {(k.params["lr"], k.params["batch"]) for k in kids} == {(0.1, 16), (0.1, 32), (0.01, 16), (0.01, 32)}
    assert all(k.meta["parent"] == parent.id and k.tags["sweep"] == parent.id and k.name == "grid" for k in kids)
    assert sorted(k.tags["sweep_index"] for k in kids) == [0, 1, 2, 3]
    assert all(k.metric_summary["loss"]["last"] < 1 for k in kids)
    assert "completed" in r.stdout and "loss" in r.stdout
    log = run_git(repo, "log", "--oneline", "gitxp")
    assert log.count(" grid completed") == 5 and log.count(f"{parent.id} grid completed") == 1

    r = gitxp(repo, "sweep", "grid.yaml", "--no-hardware", "--", *CMD)
    assert "skipped 4" in r.stderr and r.stdout.count("skipped") == 4
    parents2, kids2 = children(repo)
    assert [p.id for p in parents2] == [parent.id] and len(kids2) == 4  # the parent is reused
    assert {k: parents2[0].summary[k] for k in ("configurations", "completed", "failed", "ran", "skipped")} == {
        "configurations": 4, "completed": 4, "failed": 0, "ran": 0, "skipped": 4}
    fsck(repo)


def test_failure_does_not_stop_others_and_fail_fast_stops(git_repo: Path) -> None:
    repo = setup(git_repo)
    r = gitxp(repo, "sweep", "grid.yaml", *FAST, "--", *CMD, "--fail-above", "0.05", check=False)
    assert r.returncode == 1, r.stderr
    _, kids = children(repo)
    assert Counter(k.status for k in kids) == {"failed": 2, "completed": 2}
    assert children(repo)[0][0].status == "failed"

    r = gitxp(repo, "sweep", "grid.yaml", "--name", "ff", "--fail-fast", *FAST, "--", *CMD, "--fail-above", "0.05", check=False)
    assert r.returncode == 1 and "fail-fast" in r.stderr
    ff = [k for k in children(repo)[1] if k.name == "ff"]
    assert len(ff) == 1 and ff[0].status == "failed"
    assert r.stdout.count("not run") == 3


def test_split_slices_partition_and_share_one_parent(git_repo: Path) -> None:
    repo = setup(git_repo)
    procs = [popen(repo, "sweep", "grid.yaml", "--split", f"{i}/2", *FAST, "--", *CMD) for i in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    parents, kids = children(repo)
    assert len(parents) == 1
    assert sorted(k.tags["sweep_index"] for k in kids) == [0, 1, 2, 3]
    assert {k.meta["parent"] for k in kids} == {parents[0].id}
    assert parents[0].summary["completed"] == 4  # whoever finished last wrote the counts


def test_two_queue_workers_run_each_configuration_once(git_repo: Path) -> None:
    repo = setup(git_repo)
    procs = [popen(repo, "sweep", "grid.yaml", "--queue", *FAST, "--", *CMD) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    parents, kids = children(repo)
    assert len(parents) == 1
    assert Counter(k.tags["sweep_index"] for k in kids) == {0: 1, 1: 1, 2: 1, 3: 1}
    assert all(k.status == "completed" for k in kids)
    fsck(repo)


def test_killed_queue_worker_configuration_is_retried(git_repo: Path) -> None:
    repo = setup(git_repo)
    (repo / "slow.py").write_text(textwrap.dedent("""
        import os, sys, time
        open("started", "w").close()
        while os.path.exists("hold"):
            time.sleep(0.05)
        print("ran", sys.argv[1])
    """))
    (repo / "hold").write_text("")
    args = ["sweep", "grid.yaml", "--queue", "--claim-timeout", "2", *FAST, "--", "python", "slow.py", "{lr}-{batch}"]
    first = popen(repo, *args)
    deadline = time.monotonic() + 60
    while not (repo / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (repo / "started").exists(), "the first worker never started configuration 0"
    claims = list((repo / ".git" / "gitxp" / "queue").glob("*/0.claim"))
    assert len(claims) == 1
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    (repo / "hold").unlink()

    r = gitxp(repo, *args)
    parents, kids = children(repo)
    # the dead worker's child got SIGTERM with it (interrupted); its parent session is recorded as crashed
    assert [k.status for k in kids if k.status != "completed"] == ["interrupted"]
    assert [s["status"] for s in parents[0].meta["sessions"]] == ["crashed", "completed"]
    done = Counter(k.tags["sweep_index"] for k in kids if k.status == "completed")
    assert done == {0: 1, 1: 1, 2: 1, 3: 1}, r.stderr
    assert len(parents) == 1 and parents[0].status == "completed"
    assert not list(claims[0].parent.glob("*.claim"))
    fsck(repo)


def test_malformed_inputs_are_one_line_errors_with_exit_2(git_repo: Path) -> None:
    repo = setup(git_repo)
    (repo / "bad.yaml").write_text("grid:\n  - lr: []\n")
    (repo / "broken.yaml").write_text("grid: [\n")
    cases = [
        (["bad.yaml", "--", "python", "train.py"], "empty list"),
        (["broken.yaml", "--", "python", "train.py"], "broken.yaml"),
        (["grid.yaml", "--", "python", "train.py", "--lr", "{nope}"], "unknown placeholder {nope}"),
        (["grid.yaml", "--split", "2/2", "--", *CMD], "--split"),
        (["missing.yaml", "--", *CMD], "missing.yaml"),
        (["grid.yaml", "--", "no-such-program-xyz"], "command not found"),
        (["grid.yaml", "-q", "--", *CMD], "No such option '-q'"),
    ]
    for args, needle in cases:
        r = gitxp(repo, "sweep", *args, check=False)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:") and needle in lines[0], (args, r.stderr)
    assert run_git(repo, "branch", "--list", "gitxp") == ""


def test_python_api_runs_functions_in_parallel(git_repo: Path) -> None:
    repo = setup(git_repo)
    script = textwrap.dedent("""
        import gitxp
        from gitxp import sweep

        def fit(xp, params):
            assert gitxp.current() is xp
            xp.log_metric("score", params["lr"] * params["batch"])
            if params["lr"] > 0.05 and params["batch"] == 32:
                raise RuntimeError("boom")

        table = sweep(fit, {"seed": 1, "grid": {"lr": [0.1, 0.01], "batch": [16, 32]}}, jobs=2, capture_code=False, capture_env=False)
        print(table.num_rows, sorted(table.column("status").to_pylist()))
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0] == "4 ['completed', 'completed', 'completed', 'failed']"
    parents, kids = children(repo)
    assert len(parents) == 1 and parents[0].name == "fit" and len(kids) == 4
    assert {k.meta["parent"] for k in kids} == {parents[0].id}
    fsck(repo)


def test_api_sweep_example_runs_and_skips_what_completed(git_repo: Path) -> None:
    """examples/sweep/api_sweep.py as the README shows it: four children, then a second run that skips them."""
    example = EXAMPLE / "api_sweep.py"
    first = subprocess.run([sys.executable, str(example)], cwd=git_repo, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    rows = first.stdout.strip().splitlines()
    assert len(rows) == 4 and all("'status': 'completed'" in r for r in rows)
    again = subprocess.run([sys.executable, str(example)], cwd=git_repo, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout == first.stdout, again.stderr
    parents, kids = children(git_repo)
    assert len(kids) == 4 and len(parents) == 1 and parents[0].summary.get("skipped") == 4
    fsck(git_repo)


def test_python_api_children_never_inherit_a_lock_held_by_another_thread(tmp_path: Path) -> None:
    """A child forked while another thread is mid-import waits for that import forever (CI hung so)."""
    (tmp_path / "slowmod.py").write_text(textwrap.dedent("""
        import threading, time
        if threading.current_thread().name == "importer":
            time.sleep(4)  # holds slowmod's import lock this long; a child imports it at once
        VALUE = 42
    """))
    script = textwrap.dedent("""
        import sys, threading, time
        from gitxp.sweeps.forker import Forker

        def target(spec):
            import slowmod
            print("child imported", slowmod.VALUE, spec["n"], flush=True)

        forker = Forker(target)
        threading.Thread(target=lambda: __import__("slowmod"), name="importer").start()
        time.sleep(0.5)  # the import is now half done, its lock held
        t0 = time.monotonic()
        codes = [forker.run({"n": n}) for n in (1, 2)]
        print("codes", codes, "fast", time.monotonic() - t0 < 3, flush=True)
        forker.close()
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ['PYTHONPATH']}"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["child imported 42 1", "child imported 42 2", "codes [0, 0] fast True"]


def test_forker_reports_a_killed_server_instead_of_waiting_forever(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import os, signal, sys, threading, time
        from gitxp.sweeps.forker import Forker

        forker = Forker(lambda spec: time.sleep(spec["s"]))
        assert forker.run({"s": 0}) == 0
        codes, children = [], []
        waiting = threading.Thread(target=lambda: codes.append(forker.run({"s": 60}, children.append)))
        waiting.start()
        while not children:
            time.sleep(0.05)
        os.kill(forker.pid, signal.SIGKILL)  # the server, while a child runs
        waiting.join(20)
        codes.append(forker.run({"s": 0}))  # and a child asked for after
        os.kill(children[0].pid, signal.SIGKILL)  # the orphan
        print(codes, flush=True)
        forker.close()
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"[{-signal.SIGKILL}, {-signal.SIGKILL}]"


SLOW_API_SWEEP = """
import os, sys, time
from gitxp import sweep

def fit(xp, params):
    for step in range(10_000):
        xp.log_metric("loss", 1 / (step + 1), step=step)
        if step == 2:
            open(f"started-{params['lr']}", "w").close()
        time.sleep(0.01)

sweep(fit, {"grid": {"lr": [0.1, 0.2, 0.3]}}, jobs=2, capture_code=False, capture_env=False)
print("sweep returned", flush=True)
# this sweep's own mark, for pgrep: {mark}
"""


def _start_slow_api_sweep(repo: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", SLOW_API_SWEEP.replace("{mark}", str(repo))], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(list(repo.glob("started-*"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.05)
    return proc


def test_python_api_sweep_interrupted_records_running_children_interrupted(git_repo: Path) -> None:
    repo = setup(git_repo)
    proc = _start_slow_api_sweep(repo)
    proc.send_signal(signal.SIGINT)  # to the sweep alone, as `kill -INT`; it forwards to its children
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "sweep returned" in out, err
    parents, kids = children(repo)
    assert [p.status for p in parents] == ["interrupted"]
    assert sorted(k.status for k in kids) == ["interrupted", "interrupted"]  # the third never started
    fsck(repo)


def test_python_api_sweep_killed_ends_its_children_as_interrupted(git_repo: Path) -> None:
    repo = setup(git_repo)
    proc = _start_slow_api_sweep(repo)
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 60
    while len([r for r in Store.open(repo).index() if "sweep_index" in r.tags]) < 2:
        assert time.monotonic() < deadline, "the orphaned children were not ended"
        time.sleep(0.2)
    _, kids = children(repo)
    assert sorted(k.status for k in kids) == ["interrupted", "interrupted"]
    while subprocess.run(["pgrep", "-f", f"mark, for pgrep: {repo}"], capture_output=True).stdout:
        assert time.monotonic() < deadline, "the fork server or a child outlived the sweep"
        time.sleep(0.1)
    fsck(repo)
