"""``gitxp start`` (run a command as an experiment) and ``gitxp recover``.

Registered lazily by :mod:`gitxp.cli` (``LAZY_COMMANDS``); :func:`run_options` is shared with ``gitxp sweep``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gitxp.cli._common import kv, reject_unknown_option, store_of
from gitxp.errors import UsageError

if TYPE_CHECKING:
    from gitxp.run.options import RunOptions


def default_command_name(command: list[str]) -> str:
    prog = Path(command[0]).name
    if prog.startswith("python") or prog in ("pypy", "pypy3", "uv", "poetry"):
        args = command[1:]
        if prog in ("uv", "poetry") and args[:1] == ["run"]:
            args = args[1:]
            if args and Path(args[0]).name.startswith("python"):
                args = args[1:]
        i = 0
        while i < len(args):
            a = args[i]
            if a == "-m" and i + 1 < len(args):
                return args[i + 1].rsplit(".", 1)[-1]
            if a == "-c":
                return prog
            if not a.startswith("-"):
                return Path(a).stem
            i += 1
        return prog
    return Path(prog).stem or prog


def run_options(f: Any) -> Any:
    """The options that say how one run is recorded; shared by `start` and `sweep`."""
    for opt in reversed([
        click.option("--artifact", "artifact_globs", multiple=True, metavar="GLOB", help="Files to store as encrypted artifacts after the command ends (left out of code snapshots)."),
        click.option("--no-hardware", is_flag=True, help="Do not sample CPU/GPU/memory use."),
        click.option("--hardware-interval", type=float, default=1.0, show_default=True, metavar="SECONDS", help="Sampling interval."),
        click.option("--no-code", is_flag=True, help="Do not snapshot the code."),
        click.option("--code-dir", type=click.Path(file_okay=False), help="Snapshot only this folder."),
        click.option("--no-capture", is_flag=True, help="Pass output through without writing output.log."),
        click.option("--scalars", is_flag=True, help="Read metrics from output tokens `KEY=NUMBER` / `KEY: NUMBER` (never from prose or equations like `y = -13.59 x`)."),
        click.option("--scalar", "scalar_patterns", multiple=True, metavar="NAME=REGEX", help="Read metric NAME from output lines matching REGEX: its first group is the value, a group named `step` the step (repeatable; see Example)."),
        click.option("--env-var", "env_vars", multiple=True, metavar="NAME", help="Also record this environment variable."),
    ]):
        f = opt(f)
    return f


def recording_options(opts: Mapping[str, Any]) -> RunOptions:
    """The :class:`RunOptions` that :func:`run_options`' flags and ``--tag``/``--note`` give (both commands have them)."""
    from gitxp.run.options import RunOptions

    return RunOptions(
        tags=kv(opts["tags"], "--tag"), notes=opts["note"], artifact_globs=opts["artifact_globs"],
        log_hardware=not opts["no_hardware"], hardware_interval=opts["hardware_interval"], capture_code=not opts["no_code"],
        code_dir=opts["code_dir"], capture_output=not opts["no_capture"], scalars=opts["scalars"],
        scalar_patterns=opts["scalar_patterns"], env_vars=opts["env_vars"],
    )


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--name", help="Experiment name (default: the script's stem).")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="A parameter; VALUE is a YAML scalar; dotted keys nest.")
@click.option("--params-file", type=click.Path(exists=True, dir_okay=False), help="YAML file of parameters (-p overrides it).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag (repeatable).")
@click.option("--note", help="Free-text note.")
@click.option("--parent", metavar="REF", help="Parent experiment.")
@click.option("--resume", metavar="REF", help="Reopen a stored experiment (e.g. after preemption).")
@click.option("--sync", is_flag=False, flag_value="", default=None, metavar="[REMOTE]", help="Live run: push the experiment so far (status running) to REMOTE (default: the store's upstream, else origin) at each --sync-interval, and once more at the end.")
@click.option("--sync-interval", type=float, default=60.0, show_default=True, metavar="SECONDS", help="Seconds between --sync pushes.")
@click.option("--input", "inputs", multiple=True, metavar="[NAME=]PATH", help="Data the run reads: its size, file count and sha256 digest are recorded (cached by path, size and mtime); NAME defaults to the file or folder name without extension (repeatable).")
@click.option("--alert", "alert_specs", multiple=True, metavar="'COND: TEXT'", help="Alert when COND (the --where language over the logged values; status == 'failed' at the end) first holds: recorded, printed, and runs `git config gitxp.alertCommand` / $GITXP_ALERT_COMMAND (repeatable).")
@click.option("--dry-run", is_flag=True, help="Run and commit nothing: print the name, params, command, inputs and what the code snapshot would hold and leave out.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="With --dry-run: json prints the plan as one JSON document.")
@run_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def start(ctx: click.Context, command: tuple[str, ...], **opts: Any) -> int:
    """Run COMMAND as an experiment; exit with its status.

    Everything after `--` is the command. The script sees GITXP_EXPERIMENT
    (the id) and can log more with `gitxp.current()`.

    --scalars reads whole tokens `KEY=NUMBER` or `KEY: NUMBER` (the number
    being the whole value, or a decimal then plain words, as in `Loss:
    0.0009 after 395 batches`): `step=3 loss=0.25 acc: 0.9` gives loss and
    acc at step 3; `Learned function: y = -13.59 x^1`, `SVC(gamma=0.001)`
    or `Note: 3 files skipped` give nothing. For other output use --scalar NAME=REGEX: the regex is searched
    in each line, its first group (other than `step`) is the value and an
    optional group `(?P<step>...)` the step; for lines like `99 6543.69`
    (step, then loss) see the last example.

    The code snapshot is the work tree as `git add -A` sees it, untracked
    files included (the largest are named at start). Left out: files over
    10 MiB not already committed (`git config gitxp.snapshotMaxFileSize
    50m` to change it), paths in `.gitxpignore` (gitignore syntax), files
    logged as encrypted artifacts (--artifact matches too) and the key
    folder. Values of secret-looking options (`--api-key X`) are recorded as
    <redacted>; the command gets GITXP_KEY_FILE instead of GITXP_KEY.

    Exit status: COMMAND's (128+N if killed by signal N), and its exit code
    is recorded whatever happens after it ran. If gitxp could not record
    everything (an --artifact failed, the disk filled up, output capture
    stopped), the experiment says what in `recording_errors`; a command
    that succeeded is then recorded `failed` and gitxp exits 1. A run that
    could not be committed at all (no space, a stale ref lock) stays staged
    for `gitxp recover`, and the error says what to fix.

    \b
    Example:
      gitxp start -p lr=0.1 --tag team=vision -- python train.py --lr 0.1
      gitxp start --scalars --artifact 'out/*.pt' -- ./train.sh
      gitxp start --scalar 'loss=^(?P<step>\\d+) ([-+.\\deE]+)$' -- python polyfit.py
      gitxp start --sync --sync-interval 30 -- python train.py
      gitxp start --input data/train.csv --input images=data/img -- python train.py
      gitxp start --alert "metrics.loss < 0.25: converged" --alert "status == 'failed': broke" -- python train.py
      gitxp start --dry-run -p lr=0.1 -- python train.py
    """
    from gitxp.run.live import parse_interval
    from gitxp.run.wrapper import run_wrapped

    reject_unknown_option(ctx, command)
    params = _params(opts)
    if opts["dry_run"]:
        return _dry_run(ctx, command, params, opts)
    elif opts["fmt"] != "text":
        raise UsageError("--format applies to --dry-run only", "add --dry-run, or leave --format out")
    if opts["sync"]:
        from gitxp.remote.sync import check_remote_name

        check_remote_name(opts["sync"])  # before the command runs, not at its first push
    name = opts["name"] or default_command_name(list(command))
    options = replace(recording_options(opts), parent=opts["parent"], resume=opts["resume"], sync=opts["sync"],
                      sync_interval=parse_interval(opts["sync_interval"]), inputs=opts["inputs"], alert_specs=opts["alert_specs"])
    return run_wrapped(list(command), repo=ctx.obj["repo"], name=name, params=params, options=options)


def _params(opts: Mapping[str, Any]) -> dict[str, Any]:
    """``--params-file`` (a YAML mapping) with ``-p`` on top."""
    if not opts["params_file"]:
        return kv(opts["params"], "-p")
    from gitxp.run.logged import deep_merge
    from gitxp.params import yaml12_load

    loaded = yaml12_load(Path(opts["params_file"]).read_text())
    if loaded is not None and not isinstance(loaded, dict):
        raise UsageError(f"--params-file {opts['params_file']} must hold a mapping", "write key: value lines")
    return deep_merge(loaded or {}, kv(opts["params"], "-p"))


def _dry_run(ctx: click.Context, command: tuple[str, ...], params: dict[str, Any], opts: Mapping[str, Any]) -> int:
    """``--dry-run``: print what the run would record; run and commit nothing."""
    from gitxp.run import dryrun

    plan = dryrun.plan(command, repo=ctx.obj["repo"], name=opts["name"] or default_command_name(list(command)), params=params,
                       tags=kv(opts["tags"], "--tag"), code_dir=opts["code_dir"], capture_code=not opts["no_code"],
                       artifact_globs=opts["artifact_globs"], inputs=opts["inputs"], alert_specs=opts["alert_specs"])
    if opts["fmt"] == "json":
        import json

        click.echo(json.dumps(plan, indent=2, default=str))
    else:
        click.echo(dryrun.render(plan))
    return 0


@click.command()
@click.pass_context
def recover(ctx: click.Context) -> None:
    """Commit experiments whose process died, with status `crashed`.

    Metrics staged up to the last flush (at most ~2 s before the death) are
    kept. A run that ended but could not be committed (a full disk, a stale
    lock) keeps the status and exit code it ended with. Every run that can
    be committed is; each one that cannot is named on stderr (exit 1) and
    stays staged for a later try.

    \b
    Example:
      gitxp recover
    """
    from gitxp.run.finish import recover as _recover

    store = store_of(ctx)
    done, failed = _recover(store)
    for exp_id, status in done:
        click.echo(f"recovered {exp_id} ({status})")
    for exp_id, reason in failed:
        click.echo(f"gitxp: could not recover {exp_id}: {reason}", err=True)
    if failed:
        ctx.exit(1)
    if not done:
        click.echo("nothing to recover", err=True)
