"""``gitxp start -- CMD``: one experiment around an unchanged command.

The wrapper owns the run: it snapshots the code, samples hardware for the
child's process tree, tees the output, forwards signals, and commits when
the child ends. The child finds the run through ``GITXP_EXPERIMENT`` and
``GITXP_RUN_DIR``, so ``gitxp.current()`` in the script logs into it.

The artifact key never travels in the child's environment, where a script
that prints ``os.environ`` (or a crash reporter that dumps it) would put it
in ``output.log``: ``GITXP_KEY`` is replaced by ``GITXP_KEY_FILE``, a 0600
file in the run's staging folder that is deleted when the child ends. Any
key text that still shows up in the output is masked before it is written.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitxp import shutdown
from gitxp import text as render
from gitxp.errors import GitxpError, RunNotStoredError, StoreError, UsageError, describe_failure
from gitxp.run.experiment import ENV_ID, ENV_RUN_DIR
from gitxp.run.logged import preload_arrow
from gitxp.run.options import RunOptions

if TYPE_CHECKING:
    from gitxp.run.experiment import Experiment
    from gitxp.run.live import LiveSync


#: Seconds into the command after which the wrapper imports pyarrow on a thread: a run with hardware
#: sampling is then past its first segment (written without pyarrow) and will need it to merge them.
HARDWARE_PRELOAD_S = 1.5


def _preload_finish() -> None:
    from gitxp.run import finish

    finish.preload()


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
    options: RunOptions = RunOptions(),
) -> int:
    """Run ``command`` as an experiment; returns the exit status for ``gitxp start``."""
    # This process runs no user code and never converts to numpy; pyarrow (>= 16) imports numpy
    # only if it can, half its import time (~50 of ~110 ms), paid by every wrapped command that
    # needs pyarrow (merging metrics or hardware segments).
    with shutdown.imports_blocked(("numpy",), "by gitxp's wrapper (it runs no user code)"):
        return _run_wrapped(command, repo=repo, name=name, params=params, options=options)


def _run_wrapped(command: list[str], *, repo: str, name: str, params: Mapping[str, Any], options: RunOptions) -> int:
    from gitxp.run import process as runner
    from gitxp.run.begin import begin

    patterns, conditions, wanted = _checked_options(options)
    _check_command(command)
    try:
        exp = begin(name=name, params=params, repo=repo, command=command, options=options)
    except OSError as exc:  # a full disk before anything ran: say so, run nothing
        raise StoreError(f"could not set up the experiment: {describe_failure(exc)}", "free some disk space, then run the command again") from exc
    _record_at_start(exp, wanted, conditions)
    env, secrets, key_file = _child_environment(exp, command)

    def on_spawn(pid: int) -> None:
        threading.Thread(target=_preload_finish, name="gitxp-preload").start()  # joined at exit if the run ends first
        if exp._hardware is not None:
            exp._hardware.set_pid(pid)
            # past its first flush the run will need pyarrow to merge hardware segments: import it while the command runs
            preload.start()

    preload = threading.Timer(HARDWARE_PRELOAD_S, preload_arrow)
    preload.daemon = True

    live = _start_live_sync(exp, repo, options)
    result = None
    try:
        result = runner.run_child(
            command,
            env=env,
            output_path=exp.run_dir / "output.log" if options.capture_output else None,
            output_cap=exp._writer_store().config.output_max_size,  # the store begin() opened (an owner always has one)
            on_line=_metric_reader(exp, patterns, options.scalars) if options.scalars or patterns else None,
            on_spawn=on_spawn,
            mask=secrets,
        )
    except BaseException as exc:
        if live is not None:
            live.stop()
        exp.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", error=exc)
        raise
    finally:
        preload.cancel()  # a command that ended before it is left to a run that needs no merge
        if key_file is not None:
            key_file.unlink(missing_ok=True)
    if live is not None:
        live.stop()
    exit_status = _finish_run(exp, result, options)
    if live is not None:
        live.push_final()
    return exit_status


def _checked_options(options: RunOptions) -> tuple[list[Any], list[Any], list[tuple[str | None, str]]]:
    """``--scalar`` patterns, ``--alert`` conditions and ``--input`` paths, parsed and checked before anything runs."""
    from gitxp.run.scalars import ScalarPattern

    patterns = [ScalarPattern(p) for p in options.scalar_patterns]  # a bad regex fails before anything runs
    from gitxp.store import alerts as _alerts
    from gitxp.store import inputs as _inputs

    conditions = [_alerts.Alert(*_alerts.split_spec(spec)) for spec in options.alert_specs]  # so does a bad condition
    wanted = [_inputs.parse_spec(spec) for spec in options.inputs]
    for _name, path in wanted:
        _inputs.check_path(path)
    return patterns, conditions, wanted


def _record_at_start(exp: Experiment, wanted: Sequence[tuple[str | None, str]], conditions: Sequence[Any]) -> None:
    """Hash the ``--input`` data and stage the ``--alert`` conditions; a failure here fails the run."""
    from gitxp.store import alerts as _alerts

    try:
        for name_, path in wanted:  # hashed before the command can change them
            exp.log_input(path, name_)
        exp._alerts.extend(conditions)
        if conditions:
            _alerts.stage_specs(exp._run, conditions)  # the script's gitxp.current() checks them too
    except BaseException as exc:
        exp.finish("failed", error=exc)
        raise


def _child_environment(exp: Experiment, command: Sequence[str]) -> tuple[dict[str, str], list[str], Path | None]:
    """The child's environment (run id, staging folder, key file, import recording), the texts to mask, the key file."""
    from gitxp.artifacts import keys

    env = dict(os.environ)
    env[ENV_ID] = exp.id
    env[ENV_RUN_DIR] = str(exp.run_dir)
    from gitxp.redact import secret_values

    secrets = keys.known_key_texts(exp._writer_store().store_id) + secret_values(command)
    key_file = _hand_over_key(env, exp.run_dir)
    from gitxp.environment.imports import inject

    exp._record_imports = False  # the wrapper's own modules are not the command's
    inject(env, exp.run_dir)  # which distributions the command imports (gitxp.environment.imports)
    return env, secrets, key_file


def _metric_reader(exp: Experiment, patterns: Sequence[Any], scalars: bool) -> Callable[[str], None]:
    """The ``on_line`` callback: ``--scalar`` patterns first, then (with ``--scalars``) the ``KEY=NUMBER`` tokens."""
    from gitxp.run.scalars import parse_scalars

    def on_line(line: str) -> None:
        taken = set()
        for pat in patterns:
            got = pat.match(line)
            if got is not None:
                exp.log_metric(pat.name, got[0], step=_output_step(got[1]))
                taken.add(pat.name)
        found = parse_scalars(line) if scalars else {}
        if not found:
            return
        step_i = _output_step(found.pop("step", None))
        for key, value in found.items():
            if key not in taken:
                exp.log_metric(key, value, step=step_i)

    return on_line


def _start_live_sync(exp: Experiment, repo: str, options: RunOptions) -> LiveSync | None:
    """``--sync``: the started :class:`~gitxp.run.live.LiveSync`, or None."""
    if options.sync is None:
        return None
    from gitxp.run.live import LiveSync

    live = LiveSync(exp, repo, options.sync or None, options.sync_interval)
    live.start()
    return live


def _finish_run(exp: Experiment, result: Any, options: RunOptions) -> int:
    """Map the child's result to a status, collect ``--artifact`` files, commit; returns gitxp's exit status."""
    if result.returncode == 0:
        status = "completed"
    elif result.interrupted:
        status = "interrupted"
    else:
        status = "failed"
    problems = [f"output: {result.capture_error}"] if result.capture_error else []
    if options.artifact_globs:
        try:
            _collect_artifacts(exp, options.artifact_globs)
        except (GitxpError, OSError) as exc:
            problems.append(f"artifacts: {describe_failure(exc)}")
    for problem in problems:
        print(f"gitxp: not recorded: {problem}", file=sys.stderr)
    # The command's own exit code is recorded whatever failed after it ran;
    # a successful command whose results were not all recorded is `failed`
    # (see recording_errors) and gitxp exits 1 for it.
    exit_status: int = result.exit_status
    if problems and status == "completed":
        status, exit_status = "failed", 1
    try:
        exp.finish(status, exit_code=result.returncode, recording_errors=problems)
    except RunNotStoredError as exc:
        exc.exit_code = exit_status or 1  # still the command's status
        raise
    _report(exp, exp.status, result)
    return exit_status


def _hand_over_key(env: dict[str, str], run_dir: Path) -> Path | None:
    """Move ``GITXP_KEY`` out of the child's environment into a 0600 file it is told about.

    Returns the file to delete when the child ends, or None when there was
    no usable key to pass (a malformed ``GITXP_KEY`` is dropped: the
    wrapper's own use of it reports the error).
    """
    from gitxp.artifacts import keys

    text = env.pop(keys.KEY_ENV, "")
    if not text.strip():
        return None
    try:
        key = keys.decode_key(text)
    except UsageError:
        return None
    path = keys.write_key_file(run_dir / "key", key)
    env[keys.KEY_FILE_ENV] = str(path)
    return path


def _output_step(step: float | None) -> int | None:
    """A step printed by the command, or None (count up) when no step can hold it (``step=1e30``, ``-3``, ``1.5``)."""
    from gitxp.store.parquet import MAX_STEP

    if step is None or not 0 <= step <= MAX_STEP or not float(step).is_integer():
        return None
    return int(step)


def _collect_artifacts(exp: Experiment, patterns: Sequence[str]) -> None:
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True))
        if not matches:
            print(f"gitxp: --artifact {pattern!r} matched no file", file=sys.stderr)
        for m in matches:
            if os.path.isdir(m):
                exp.log_artifacts(m)
            else:
                exp.log_artifact(m)


def _recorded_duration(exp: Experiment) -> float | None:
    """``duration_s`` as committed, so this line and ``gitxp show`` give one number."""
    from gitxp.store import layout

    try:
        repo = exp._writer_store().repo
        tree = repo.read_commit(exp.commit)["tree"]
        data = repo.read_path(tree, f"{layout.experiment_dir(exp.id)}/{layout.EXPERIMENT_FILE}")
        value = layout.load_yaml(data).get("duration_s") if data else None
    except Exception:  # the run is committed; a summary line must not fail it
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _report(exp: Experiment, status: str, result: Any) -> None:
    colour = render.use_colour(sys.stderr)
    word = render.style(status, render.status_colour(status), colour)
    duration = _recorded_duration(exp)
    took = render.fmt_duration(result.duration_s if duration is None else duration)
    print(f"gitxp: {exp.id} {exp.name} {word} in {took} (gitxp show {exp.id.rsplit('-', 1)[-1][:8]})", file=sys.stderr)
