"""`gitxp sweep --slurm / --index / --status`: a sweep as a Slurm job array.

Two ways, both end to end with the real CLI:

* the generated script's task body run with bash for every task id
  (``SLURM_ARRAY_TASK_ID`` set, the ``#SBATCH`` lines are comments to bash),
  which needs no Slurm;
* a real single-node Slurm (Debian's ``slurm-wlm``: munged, slurmctld and
  slurmd started by the fixture with a private slurm.conf, ports and state
  folder), submitting the array with ``sbatch`` and waiting for it. Skipped,
  with the reason, where the daemons are not installed or cannot start.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import gitxp

SWEEP = "grid:\n  lr: [0.1, 0.01, 0.001]\n  batch: [8]\n"
TRAIN = """\
import sys
import gitxp
xp = gitxp.current()
xp.log_metric("loss", float(sys.argv[2]) * 10)
print("args:", sys.argv[1:])
"""


def _setup(repo: Path) -> None:
    (repo / "grid.yaml").write_text(SWEEP)
    (repo / "train.py").write_text(TRAIN)


def _children(repo: Path) -> list[dict]:
    import gitxp as api

    recs = api.open(repo).experiments()
    return [{"tags": dict(r.tags), "params": dict(r.params), "status": r.status, "command": r.meta.get("command"), "parent": r.meta.get("parent")}
            for r in recs if "sweep_index" in r.tags]


def _dry_run(repo: Path, *cmd: str) -> list[dict]:
    return json.loads(gitxp(repo, "sweep", "grid.yaml", "--dry-run", "--format", "json", "--", *cmd).stdout)["configurations"]


def _check_store(repo: Path, cmd: tuple[str, ...]) -> None:
    plan = _dry_run(repo, *cmd)
    kids = _children(repo)
    assert len(kids) == len(plan) == 3
    by_index = {int(k["tags"]["sweep_index"]): k for k in kids}
    for p in plan:
        kid = by_index[p["index"]]
        assert kid["status"] == "completed"
        assert kid["params"]["lr"] == p["params"]["lr"]  # task i ran configuration i in --dry-run order
        assert kid["command"] == p["command"]
    assert len({k["parent"] for k in kids}) == 1  # one shared parent experiment
    status = gitxp(repo, "sweep", "grid.yaml", "--status").stdout
    assert "3 configurations" in status and "completed    3" in status and "not run" not in status


CMD = ("python", "train.py", "--lr", "{lr}", "it's  $HOME")


def test_print_then_every_task_body_with_bash(git_repo: Path) -> None:
    _setup(git_repo)
    r = gitxp(git_repo, "sweep", "grid.yaml", "--slurm", "--print", "--no-hardware", "--max-parallel", "2",
              "--sbatch-opt", "time=0:10:00", "--sbatch-opt", "mem=1G", "--", *CMD)
    text = r.stdout
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "#SBATCH --array=0-2%2" in lines and "#SBATCH --time=0:10:00" in lines and "#SBATCH --mem=1G" in lines
    assert "#SBATCH --job-name=grid" in lines
    assert any(ln.startswith("#SBATCH --output=") and "/gitxp/slurm/logs/grid-%A_%a.out" in ln for ln in lines)
    assert """--index "$SLURM_ARRAY_TASK_ID" --no-hardware -- python train.py --lr '{lr}' 'it'"'"'s  $HOME'""" in text
    script = Path(r.stderr.split("wrote ", 1)[1].split(";", 1)[0])
    assert script.read_text() == text and script.is_relative_to(git_repo / ".git")
    assert _children(git_repo) == []  # --print submits nothing, runs nothing
    assert "not run      3" in gitxp(git_repo, "sweep", "grid.yaml", "--status").stdout

    for task in range(3):
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task)}
        done = subprocess.run(["bash", str(script)], cwd="/", env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "it's  $HOME" in done.stdout  # the argument arrived literally
        if task == 0:
            status = gitxp(git_repo, "sweep", "grid.yaml", "--status").stdout
            assert "completed    1" in status and "not run      2" in status
    _check_store(git_repo, CMD)


def test_index_runs_one_configuration_and_bad_input(git_repo: Path) -> None:
    _setup(git_repo)
    gitxp(git_repo, "sweep", "grid.yaml", "--index", "1", "--no-hardware", "--", "python", "train.py", "--lr", "{lr}")
    kids = _children(git_repo)
    assert [(k["tags"]["sweep_index"], k["params"]["lr"]) for k in kids] == [(1, 0.01)]
    r = gitxp(git_repo, "sweep", "grid.yaml", "--index", "3", "--", "python", "train.py", check=False)
    assert r.returncode == 2 and r.stderr.startswith("Error: --index 3 is outside the sweep") and len(r.stderr.splitlines()) == 1
    r = gitxp(git_repo, "sweep", "grid.yaml", "--slurm", "--sbatch-opt", "array=0-9", "--print", "--", "python", "train.py", check=False)
    assert r.returncode == 2 and "set by gitxp" in r.stderr
    r = gitxp(git_repo, "sweep", "grid.yaml", "--print", "--", "python", "train.py", check=False)
    assert r.returncode == 2 and "go with --slurm" in r.stderr


def test_missing_sbatch_says_to_use_print(git_repo: Path, tmp_path: Path) -> None:
    _setup(git_repo)
    bare_path = tmp_path / "bin"
    bare_path.mkdir()
    for tool in ("git", "python"):
        found = shutil.which(tool)
        assert found
        (bare_path / tool).symlink_to(found)
    r = gitxp(git_repo, "sweep", "grid.yaml", "--slurm", "--", "python", "train.py", check=False, env={"PATH": str(bare_path)})
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "sbatch not found" in r.stderr and "--print" in r.stderr


# ---------------------------------------------------------------- a real Slurm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(d: Path, env: dict[str, str]) -> None:
    subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True, timeout=30, check=False)
    subprocess.run(["munged", "-s", "-S", str(d / "munge" / "sock")], capture_output=True, timeout=30, check=False)
    for pidfile in ("slurmctld.pid", "slurmd.pid", "munge/pid"):  # only what this fixture started
        p = d / pidfile
        for _ in range(50):
            try:
                pid = int(p.read_text().strip())
                os.kill(pid, 0)
            except (OSError, ValueError):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, 9)


@pytest.fixture
def slurm(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A one-node Slurm cluster on this machine; yields the environment that points sbatch at it."""
    missing = [t for t in ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol") if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    d = tmp_path / "slurm"
    for sub in ("munge", "state", "spool", "log"):
        (d / sub).mkdir(parents=True)
    (d / "munge").chmod(0o700)
    key = d / "munge" / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    host = socket.gethostname().split(".")[0]
    user = getpass.getuser()
    conf = d / "slurm.conf"
    conf.write_text(f"""ClusterName=gitxptest
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/sock
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
NodeName={host} CPUs={max(1, min(2, os.cpu_count() or 1))} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": os.environ.get("PATH", "") + ":/usr/sbin"}
    try:
        started = [
            subprocess.run(["munged", "-f", "-S", f"{d}/munge/sock", f"--key-file={key}", f"--log-file={d}/log/munged.log",
                            f"--pid-file={d}/munge/pid", f"--seed-file={d}/munge/seed"], env=env, capture_output=True, text=True, timeout=30),
            subprocess.run(["slurmctld", "-f", str(conf)], env=env, capture_output=True, text=True, timeout=30),
            subprocess.run(["slurmd", "-f", str(conf)], env=env, capture_output=True, text=True, timeout=30),
        ]
        failed = [r for r in started if r.returncode != 0]
        if failed:
            pytest.skip(f"Slurm could not start here: {' '.join(failed[0].args[:1])}: {(failed[0].stderr or failed[0].stdout).strip()[-300:]}")
        deadline = time.monotonic() + 30
        state = ""
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=30).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            logs = " / ".join(((d / "log" / f).read_text().strip().splitlines() or [""])[-1] for f in ("slurmctld.log", "slurmd.log") if (d / "log" / f).exists())
            pytest.skip(f"Slurm started but its node never became idle (state {state!r}): {logs[-400:]}")
        yield env
    finally:
        _stop(d, env)


@pytest.mark.slow  # starts munged, slurmctld and slurmd: about 35 s
def test_real_slurm_runs_the_array(git_repo: Path, slurm: dict[str, str]) -> None:
    _setup(git_repo)
    r = gitxp(git_repo, "sweep", "grid.yaml", "--slurm", "--no-hardware", "--max-parallel", "2", "--sbatch-opt", "time=0:10:00", "--", *CMD, env=slurm)
    assert "Submitted batch job" in r.stdout and "3 task(s)" in r.stdout
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h"], env=slurm, capture_output=True, text=True).stdout.strip()
        if not queue:
            break
        time.sleep(1)
    else:
        pytest.fail(f"the array did not finish: {queue}")
    logs = sorted((git_repo / ".git" / "gitxp" / "slurm" / "logs").glob("grid-*_*.out"))
    assert len(logs) == 3, logs
    for log in logs:
        assert "it's  $HOME" in log.read_text(), log.read_text()
    _check_store(git_repo, CMD)
