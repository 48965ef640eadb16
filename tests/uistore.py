"""A small real store for the `gitxp ui` tests and the README screenshots.

Experiments are recorded through the public API (``gitxp.start``) in one
subprocess, so they are exactly what users get: a sweep parent with six
children, a baseline with hardware samples, a long curve; plus hostile ones
committed the way a pulled store would bring them (names, tags, notes and
params made of HTML and script).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = {
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
}
HOSTILE_NAMES = ('<img src=x onerror="window.__pwned=1">', "<script>window.__pwned=2</script>")

_RECORD = r'''
import math, random, sys, time
import gitxp
from gitxp.store.store import Store
from gitxp.store import layout

random.seed(7)
LONG = int(sys.argv[1])
with gitxp.start(name="baseline", params={"lr": 0.01, "batch": 64, "model": {"depth": 4, "act": "relu"}}, hardware_interval=0.1, tags={"team": "vision"}, notes="first try") as xp:
    for i in range(200):
        xp.log_metric("loss", 2.0 * math.exp(-i / 60) + 0.05 + 0.02 * random.random(), step=i)
        xp.log_metric("acc", 0.9 * (1 - math.exp(-i / 50)) + 0.01 * random.random(), step=i)
    time.sleep(0.6)
    xp.summary["best_acc"] = 0.9

sweep = gitxp.start(name="lr-sweep", params={"batch": 64}, capture_env=False, log_hardware=False)
for k, lr in enumerate([0.001, 0.003, 0.01, 0.03, 0.1, 0.3]):
    with gitxp.start(name="lr-sweep", params={"lr": lr, "batch": 32 if k % 2 else 64}, parent=sweep.id, capture_env=False, log_hardware=False) as xp:
        speed = 20 + 300 * abs(math.log10(lr) + 1.5)
        for i in range(300):
            xp.log_metric("loss", 1.5 * math.exp(-i / speed) + 0.1 * lr + 0.03 * random.random(), step=i)
            xp.log_metric("acc", (0.95 - 0.2 * abs(math.log10(lr) + 1.5) / 1.5) * (1 - math.exp(-i / speed)), step=i)
sweep.finish()

with gitxp.start(name="long-curve", params={"lr": 0.05}, capture_env=False, log_hardware=False) as xp:
    for i in range(LONG):
        xp.log_metric("loss", math.sin(i / 500.0) + (5.0 if i == LONG // 3 else 0.0) - (7.0 if i == 2 * LONG // 3 else 0.0), step=i)

store = Store.open(".")
for n, name in enumerate(HOSTILE):
    exp_id = layout.new_id()
    meta = {
        "id": exp_id, "name": name, "parent": None, "status": "completed", "created": layout.isotime(),
        "command": ["python", "<b>x</b>.py"], "tags": {"<b>t</b>": "<script>window.__pwned=3</script>"},
        "notes": '<iframe src="https://evil.example/"></iframe>',
        "source": {"branch": "<i>main</i>", "commit": None, "dirty": False},
        "metrics": {"<img src=x onerror=window.__pwned=4>": {"last": 1.0, "min": 0.0, "max": 1.0, "count": 2, "last_step": 1}},
        "summary": {"<u>s</u>": "<a href='javascript:window.__pwned=5'>x</a>"},
        "inputs": "<b>not a list</b>", "alerts": {"<b>": 1}, "duration_s": "<i>long</i>",
    }
    store.commit_experiment(exp_id, {
        layout.EXPERIMENT_FILE: layout.dump_yaml(meta).encode(),
        layout.PARAMS_FILE: layout.dump_yaml({"<svg onload=window.__pwned=6>": n, "lr": 0.5}).encode(),
        layout.OUTPUT_FILE: b"\x1b[31m<script>window.__pwned=7</script>\x1b[0m\n",
    }, f"gitxp: {exp_id} hostile completed\n")
    time.sleep(1.1)  # distinct ids (second resolution)
'''


def git_env() -> dict[str, str]:
    env = {**os.environ, **IDENTITY}
    pp = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{pp}" if pp else str(ROOT)
    for var in ("GITXP_EXPERIMENT", "GITXP_RUN_DIR", "GITXP_KEY", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(var, None)
    return env


def make_store(repo: Path, *, long_points: int = 20_000, xdg: Path | None = None, hostile: bool = True) -> Path:
    """A repository at ``repo`` whose store holds the experiments described above (``hostile``: with the hostile ones)."""
    env = git_env()
    if xdg is not None:
        env["XDG_CONFIG_HOME"] = str(xdg)
    repo.mkdir(parents=True, exist_ok=True)
    run = lambda *a: subprocess.run(a, cwd=repo, env=env, check=True, capture_output=True)  # noqa: E731
    run("git", "init", "-q", "-b", "main")
    (repo / "train.py").write_text("print('training')\n")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "initial")
    (repo / "train.py").write_text("print('training, with a change')\n")  # a dirty tree: a code diff to show
    script = f"HOSTILE = {HOSTILE_NAMES if hostile else ()!r}\n" + _RECORD
    r = subprocess.run([sys.executable, "-c", script, str(long_points)], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"recording the UI test store failed:\n{r.stdout}\n{r.stderr}")
    return repo


@contextmanager
def serve(repo: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``gitxp ui --port 0 --no-open`` in a subprocess: (the printed URL, the process)."""
    p = subprocess.Popen([sys.executable, "-m", "gitxp", "-C", str(repo), "ui", "--port", "0", "--no-open", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or git_env())
    try:
        line = p.stdout.readline() if p.stdout else ""
        if not line.startswith("gitxp ui: http://"):
            p.kill()
            raise AssertionError(f"gitxp ui printed {line!r}; stderr: {p.stderr.read() if p.stderr else ''}")
        yield line.split(": ", 1)[1].strip(), p
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in (p.stdout, p.stderr):
            if f:
                f.close()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2):  # type: ignore[no-untyped-def]
    """Poll until ``predicate()`` returns something truthy; return it (or fail)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception as exc:  # a page re-rendering under selenium: the element went stale, ask again
            if type(exc).__name__ != "StaleElementReferenceException":
                raise
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)
