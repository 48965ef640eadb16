"""`gitxp start` as a real subprocess: exit codes, signals, output, snapshot, crash recovery."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import gitxp
from conftest import fsck, gitxp as run_gitxp, run_git, state

LOGGING_SCRIPT = """
import sys, time, gitxp
xp = gitxp.current()
xp.log_param("from_script", True)
for i in range(int(sys.argv[1])):
    xp.log_metric("loss", 1.0 / (i + 1), step=i)
    print(f"step {i}", flush=True)
    time.sleep(float(sys.argv[2]))
xp.summary["done"] = True
"""


def rec(repo: Path, ref: str = "@") -> gitxp.Record:
    return gitxp.open(str(repo)).get(ref)


def test_wraps_a_script_that_logs_through_current(git_repo: Path) -> None:
    (git_repo / "logme.py").write_text(LOGGING_SCRIPT)
    before = state(git_repo)
    r = run_gitxp(git_repo, "start", "--no-hardware", "-p", "lr=1e-3", "-p", "optim.name=adam", "-p", "flag=yes", "-p", "on=true", "--tag", "team=vision", "--", sys.executable, "logme.py", "3", "0")
    assert r.returncode == 0
    assert "step 2" in r.stdout  # passed through live
    assert r.stderr.strip().splitlines()[-1].startswith("gitxp: ") and "completed" in r.stderr
    x = rec(git_repo)
    assert x.name == "logme" and x.status == "completed" and x.meta["exit_code"] == 0
    assert x.params == {"lr": 0.001, "optim": {"name": "adam"}, "flag": "yes", "on": True, "from_script": True}
    assert x.tags == {"team": "vision"} and x.summary == {"done": True}
    assert x.metric_summary["loss"]["count"] == 3
    assert "step 0\nstep 1\nstep 2\n" in x.output()
    # the snapshot holds the untracked script, not ignored files
    assert before[3] == state(git_repo)[3]
    fsck(git_repo)


def test_snapshot_has_edits_and_untracked_but_not_ignored(git_repo: Path) -> None:
    (git_repo / "train.py").write_text("print('edited')\n")
    (git_repo / "new.py").write_text("x = 1\n")
    (git_repo / "debug.log").write_text("ignored\n")
    (git_repo / "data").mkdir()
    (git_repo / "data" / "big.bin").write_text("ignored too\n")
    before = state(git_repo)
    run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", "pass")
    assert state(git_repo) == before
    x = rec(git_repo)
    assert x.source["dirty"] is True and x.source["branch"] == "main"
    assert x.source["commit"] == run_git(git_repo, "rev-parse", "HEAD").strip()
    base = f"gitxp:experiments/{x.id[:4]}-{x.id[4:6]}-{x.id[6:8]}/{x.id}/code"
    files = run_git(git_repo, "ls-tree", "-r", "--name-only", base).split()
    assert sorted(files) == [".gitignore", "new.py", "train.py"]
    assert run_git(git_repo, "show", f"{base}/train.py") == "print('edited')\n"


def test_code_dir_and_no_code(git_repo: Path) -> None:
    (git_repo / "src").mkdir()
    (git_repo / "src" / "model.py").write_text("m = 1\n")
    run_gitxp(git_repo, "start", "--no-hardware", "--code-dir", "src", "--", sys.executable, "-c", "pass")
    x = rec(git_repo)
    base = f"gitxp:experiments/{x.id[:4]}-{x.id[4:6]}-{x.id[6:8]}/{x.id}/code"
    assert run_git(git_repo, "ls-tree", "-r", "--name-only", base).split() == ["src/model.py"]
    run_gitxp(git_repo, "start", "--no-hardware", "--no-code", "--", sys.executable, "-c", "pass")
    assert rec(git_repo).code_tree is None


@pytest.mark.parametrize(("code", "status", "exit_status"), [("0", "completed", 0), ("3", "failed", 3)])
def test_exit_status_is_the_commands(git_repo: Path, code: str, status: str, exit_status: int) -> None:
    r = run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", f"import sys; sys.exit({code})", check=False)
    assert r.returncode == exit_status
    x = rec(git_repo)
    assert x.status == status and x.meta["exit_code"] == int(code)


def test_killed_child_gives_128_plus_signal(git_repo: Path) -> None:
    r = run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", check=False)
    assert r.returncode == 128 + 9
    assert rec(git_repo).status == "failed"


def test_sigint_to_wrapper_is_forwarded_and_interrupts(git_repo: Path) -> None:
    script = "import time\ntry:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n    print('caught', flush=True)\n    raise SystemExit(130)\n"
    p = subprocess.Popen([sys.executable, "-m", "gitxp", "start", "--no-hardware", "--", sys.executable, "-c", script], cwd=git_repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "caught" in out
    assert rec(git_repo).status == "interrupted"


def test_no_capture_writes_no_output_log(git_repo: Path) -> None:
    r = run_gitxp(git_repo, "start", "--no-hardware", "--no-capture", "--", sys.executable, "-c", "print('hello')")
    assert "hello" in r.stdout
    assert rec(git_repo).output() is None


def test_scalars_become_metrics(git_repo: Path) -> None:
    script = "for i in range(4):\n    print(f'epoch {i+1}/4 step={i} loss={1/(i+1):.3f} acc: {i/4}')\n"
    run_gitxp(git_repo, "start", "--no-hardware", "--scalars", "--", sys.executable, "-c", script)
    x = rec(git_repo)
    assert set(x.metric_summary) == {"loss", "acc"}
    assert x.metric_summary["loss"]["last_step"] == 3 and x.metric_summary["acc"]["last"] == 0.75


def test_default_names(git_repo: Path) -> None:
    (git_repo / "train.py").write_text("pass\n")
    run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "train.py")
    assert rec(git_repo).name == "train"
    run_gitxp(git_repo, "start", "--no-hardware", "--", "true")
    assert rec(git_repo).name == "true"
    run_gitxp(git_repo, "start", "--no-hardware", "--name", "mine", "--", "true")
    assert rec(git_repo).name == "mine"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["start", "-p", "novalue", "--", "true"], "KEY=VALUE"),
        (["start", "-p", "=1", "--", "true"], "KEY=VALUE"),
        (["start", "--", "no-such-command-xyz"], "command not found: no-such-command-xyz"),
        (["start", "--hardware-interval", "abc", "--", "true"], "--hardware-interval"),
        (["show", "nothing-like-this"], "nothing-like-this"),
        # an option gitxp does not know is named as one (not run as the command `--bogus`), with what was meant
        (["start", "--bogus", "--", "true"], "No such option '--bogus'"),
        (["start", "-q", "--", "true"], "No such option '-q'"),
        (["start", "--nme", "x", "--", "true"], "Did you mean one of: '--name'"),
    ],
)
def test_bad_input_is_one_line_exit_2(git_repo: Path, args: list[str], needle: str) -> None:
    r = run_gitxp(git_repo, *args, check=False)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in r.stderr, r.stderr
    assert needle in lines[0], lines[0]


def test_kill_9_then_recover(git_repo: Path) -> None:
    (git_repo / "logme.py").write_text(LOGGING_SCRIPT)
    p = subprocess.Popen([sys.executable, "-m", "gitxp", "start", "--no-hardware", "--", sys.executable, "logme.py", "1000", "0.01"], cwd=git_repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(4.0)
    import psutil

    victims = [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
    killed_at = time.time()
    for v in victims:  # the wrapper and the script, like a lost node
        v.kill()
    p.wait()
    time.sleep(7)  # the heartbeat goes stale
    r = run_gitxp(git_repo, "log", "--all")
    assert "died without finishing" in r.stderr and "gitxp recover" in r.stderr
    r = run_gitxp(git_repo, "recover")
    assert "crashed" in r.stdout
    x = rec(git_repo)
    assert x.status == "crashed"
    m = x.metrics()
    assert m.num_rows > 50  # logged about every 10 ms for ~3 s before the kill
    last = m.column("timestamp").to_pylist()[-1].timestamp()
    assert killed_at - last < 3.0  # at most ~2 s lost
    assert "died without finishing" not in run_gitxp(git_repo, "log").stderr
    assert run_gitxp(git_repo, "recover").returncode == 0  # nothing to do is fine
    fsck(git_repo)


def test_kill_9_keeps_the_hardware_samples_of_all_but_the_last_flush(git_repo: Path) -> None:
    """Hardware segments (gitxp's own Parquet writer) survive kill -9 of wrapper and command; recover merges them."""
    busy = "import time\nt=time.time()\nwhile time.time()-t<60: pass"
    p = subprocess.Popen([sys.executable, "-m", "gitxp", "start", "--hardware-interval", "0.2", "--", sys.executable, "-c", busy],
                         cwd=git_repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(5.0)  # two flushes or more (every 2 s)
    import psutil

    victims = [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
    killed_at = time.time()
    for v in victims:
        v.kill()
    p.wait()
    time.sleep(7)  # the heartbeat goes stale
    assert "crashed" in run_gitxp(git_repo, "recover").stdout
    raw = rec(git_repo).read_file("hardware.parquet")
    assert raw is not None
    t = pq.read_table(io.BytesIO(raw))
    stamps = [ts.timestamp() for ts in t.column("timestamp").to_pylist()]
    assert len(stamps) >= 8 and stamps == sorted(stamps)  # a sample every 0.2 s for ~4 s, from several segments
    assert killed_at - stamps[-1] < 3.0  # at most one flush interval (2 s) lost
    assert t.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    fsck(git_repo)


def test_hardware_parquet_written(git_repo: Path) -> None:
    run_gitxp(git_repo, "start", "--hardware-interval", "0.2", "--", sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.5: pass")
    x = rec(git_repo)
    raw = x.read_file("hardware.parquet")
    assert raw is not None
    t = pq.read_table(io.BytesIO(raw))
    assert "timestamp" in t.column_names and "cpu_percent" in t.column_names and t.num_rows >= 3
    env = yaml.safe_load(x.read_file("environment.yaml"))
    assert env["python"]["version"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}")
    assert x.read_file("requirements.txt") is not None


def test_start_inside_a_wrapped_script_joins_it(git_repo: Path) -> None:
    script = "import gitxp\nwith gitxp.start(params={'inner': 1}) as xp:\n    xp.log_metric('m', 2.0)\n    print(xp.id)\n"
    r = run_gitxp(git_repo, "start", "--no-hardware", "-p", "outer=0", "--", sys.executable, "-c", script)
    store = gitxp.open(str(git_repo))
    assert len(store.experiments()) == 1  # one experiment, not two
    x = store.get("@")
    assert r.stdout.strip() == x.id and x.params == {"outer": 0, "inner": 1} and x.metric_summary["m"]["last"] == 2.0


def test_failing_script_with_exception_records_traceback(git_repo: Path) -> None:
    script = "import gitxp\nwith gitxp.start():\n    raise ValueError('bad batch')\n"
    r = run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", script, check=False)
    assert r.returncode == 1
    x = gitxp.open(str(git_repo)).get("@")
    assert x.status == "failed" and x.meta["error"]["type"] == "ValueError" and "bad batch" in x.meta["error"]["traceback"]
