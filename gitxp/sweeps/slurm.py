"""``gitxp sweep FILE --slurm``: a sweep as one Slurm job array.

Slurm, not a home-made scheduler, spreads a sweep over machines: the script
written here asks for one array task per configuration (``--array=0-(N-1)``,
``%M`` with ``--max-parallel M``) and each task runs ``gitxp sweep FILE
--index $SLURM_ARRAY_TASK_ID -- CMD`` from the folder the sweep was
submitted from, so task ``i`` runs configuration ``i`` in ``--dry-run``
order under the sweep's shared parent experiment (the store already takes
concurrent writers, as with ``--split``).

The script and the tasks' output live under ``<git dir>/gitxp/slurm/``, not
in the work tree, where they would land in every child's code snapshot.
gitxp is called as ``<this python> -m gitxp``, so a compute node that sees
the same filesystem runs the same gitxp without relying on its PATH.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from gitxp.errors import SchedulerError, UsageError

SLURM_DIR = "slurm"


def parse_opts(opts: Sequence[str]) -> list[tuple[str, str]]:
    """``--sbatch-opt KEY=VALUE`` pairs; ``time=1:00:00`` becomes ``#SBATCH --time=1:00:00``."""
    out = []
    for opt in opts:
        key, eq, value = opt.partition("=")
        key = key.strip().lstrip("-")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", key) or "\n" in value or "\r" in value:
            raise UsageError(f"bad --sbatch-opt {opt!r}", "write KEY=VALUE with an sbatch long option as KEY, e.g. --sbatch-opt time=1:00:00")
        if key in ("array", "job-name", "output"):
            raise UsageError(f"--sbatch-opt {key} is set by gitxp", "use --max-parallel for the array's %N; the job name comes from --name")
        out.append((key, value if eq else ""))
    return out


def job_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] or "gitxp-sweep"


def script(*, task_args: Sequence[str], count: int, name: str, logs: Path, cwd: str, sbatch_opts: Sequence[tuple[str, str]],
           max_parallel: int | None) -> str:
    """The sbatch script's text. ``task_args`` is everything after ``gitxp`` in one task, before ``--index``."""
    if count < 1:
        raise UsageError("the sweep has no configurations", "check the sweep file with `gitxp sweep FILE --dry-run -- CMD`")
    array = f"0-{count - 1}" + (f"%{max_parallel}" if max_parallel else "")
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name(name)}",
        f"#SBATCH --array={array}",
        f"#SBATCH --output={logs}/{job_name(name)}-%A_%a.out",
        *(f"#SBATCH --{k}={v}" if v else f"#SBATCH --{k}" for k, v in sbatch_opts),
        "# Written by `gitxp sweep --slurm`: task i runs configuration i of the sweep (see `gitxp sweep FILE --dry-run`).",
        "set -eu",
        f"cd {shlex.quote(cwd)}",
        f"exec {shlex.join([sys.executable, '-m', 'gitxp'])} {task_command(task_args)}",
        "",
    ]
    return "\n".join(lines)


def task_command(task_args: Sequence[str]) -> str:
    """``sweep FILE --index "$SLURM_ARRAY_TASK_ID" ... -- CMD``, shell-quoted but for the task id."""
    args = list(task_args)
    cut = args.index("--") if "--" in args else len(args)
    head, tail = args[:cut], args[cut:]
    return " ".join([shlex.join(head[:2]), '--index "$SLURM_ARRAY_TASK_ID"', shlex.join(head[2:] + tail)])


def write(gitxp_dir: Path, name: str, text: str) -> Path:
    folder = gitxp_dir / SLURM_DIR
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    path = folder / f"{job_name(name)}.sbatch"
    path.write_text(text)
    path.chmod(0o755)
    return path


def submit(path: Path) -> str:
    """Run ``sbatch``; returns its one line (``Submitted batch job N``)."""
    exe = shutil.which("sbatch")
    if exe is None:
        raise SchedulerError("sbatch not found: Slurm is not installed here", f"use --print to write the script only, then submit {path} where Slurm runs")
    r = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        last = (r.stderr or r.stdout).strip().splitlines()
        raise SchedulerError(f"sbatch refused the job: {last[-1] if last else 'exit ' + str(r.returncode)}", f"fix the --sbatch-opt values or run `sbatch {path}` to see why")
    return r.stdout.strip()
