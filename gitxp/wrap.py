"""``gitxp start -- CMD``: one experiment around an unchanged command.

The wrapper owns the run: it snapshots the code, samples hardware for the
child's process tree, tees the output, forwards signals, and commits when
the child ends. The child finds the run through ``GITXP_EXPERIMENT`` and
``GITXP_RUN_DIR``, so ``gitxp.current()`` in the script logs into it.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import render
from .errors import UsageError
from .experiment import ENV_ID, ENV_RUN_DIR


def _check_command(command: Sequence[str]) -> None:
    """Refuse a command that cannot start before an experiment is created for it."""
    prog = command[0]
    if os.sep in prog:
        if not os.path.exists(prog):
            raise UsageError(f"command not found: {prog}", "check the command after `--`")
        if not os.access(prog, os.X_OK) or os.path.isdir(prog):
            raise UsageError(f"command not executable: {prog}", "chmod +x it, or run it through its interpreter")
    elif shutil.which(prog) is None:
        raise UsageError(f"command not found: {prog}", "check the command after `--`")


def run_wrapped(
    command: list[str],
    *,
    repo: str,
    name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, Any],
    notes: str | None,
    parent: str | None,
    resume: str | None,
    artifact_globs: Sequence[str],
    log_hardware: bool,
    hardware_interval: float,
    capture_code: bool,
    code_dir: str | None,
    capture_output: bool,
    scalars: bool,
    env_vars: Sequence[str],
    scalar_patterns: Sequence[str] = (),
) -> int:
    """Run ``command`` as an experiment; returns the exit status for ``gitxp start``."""
    from . import runner
    from .experiment import start

    patterns = [runner.ScalarPattern(p) for p in scalar_patterns]  # a bad regex fails before anything runs
    _check_command(command)
    exp = start(
        name=name, params=params, tags=tags, notes=notes, log_hardware=log_hardware, hardware_interval=hardware_interval,
        code_dir=code_dir, capture_code=capture_code, env_vars=env_vars, parent=parent, resume=resume, repo=repo,
        command=command,
    )
    env = dict(os.environ)
    env[ENV_ID] = exp.id
    env[ENV_RUN_DIR] = str(exp.run_dir)

    def on_spawn(pid: int) -> None:
        if exp._hardware is not None:
            exp._hardware.set_pid(pid)

    def on_line(line: str) -> None:
        taken = set()
        for pat in patterns:
            got = pat.match(line)
            if got is not None:
                exp.log_metric(pat.name, got[0], step=got[1])
                taken.add(pat.name)
        found = runner.parse_scalars(line) if scalars else {}
        if not found:
            return
        step = found.pop("step", None)
        step_i = int(step) if step is not None and step >= 0 and float(step).is_integer() else None
        for key, value in found.items():
            if key not in taken:
                exp.log_metric(key, value, step=step_i)

    result = None
    try:
        result = runner.run_child(
            command,
            env=env,
            output_path=exp.run_dir / "output.log" if capture_output else None,
            output_cap=exp._store.config.output_max_size,
            on_line=on_line if scalars or patterns else None,
            on_spawn=on_spawn,
        )
    except BaseException as exc:
        exp.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", error=exc)
        raise
    if result.returncode == 0:
        status = "completed"
    elif result.interrupted:
        status = "interrupted"
    else:
        status = "failed"
    if artifact_globs:
        _collect_artifacts(exp, artifact_globs)
    exp.finish(status, exit_code=result.returncode)
    _report(exp, exp.status, result)
    return result.exit_status


def _collect_artifacts(exp: Any, patterns: Sequence[str]) -> None:
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True))
        if not matches:
            print(f"gitxp: --artifact {pattern!r} matched no file", file=sys.stderr)
        for m in matches:
            if os.path.isdir(m):
                exp.log_artifacts(m)
            else:
                exp.log_artifact(m)


def _report(exp: Any, status: str, result: Any) -> None:
    colour = render.use_colour(sys.stderr)
    word = render.style(status, render.status_colour(status), colour)
    print(f"gitxp: {exp.id} {exp.name} {word} in {render.fmt_duration(result.duration_s)} (gitxp show {exp.id.rsplit('-', 1)[-1][:8]})", file=sys.stderr)
