"""The ``gitxp`` command: parse arguments, make one library call, render.

This module is the single error boundary: a :class:`GitxpError` becomes one
``Error: …`` line on stderr (exit 2 for usage errors, 1 otherwise); anything
else is a bug and keeps its traceback. Heavy modules are imported inside the
commands, so ``gitxp --help`` starts in tens of milliseconds.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from gitxp import __version__
from gitxp.errors import GitxpError, UsageError


#: Commands defined in their own modules, imported only when used or listed.
LAZY_COMMANDS = {
    "diff": "gitxp.cli.review:diff",
    "report": "gitxp.cli.review:report",
    "plot": "gitxp.cli.review:plot",
    "checkout": "gitxp.cli.review:checkout",
    "sweep": "gitxp.cli.sweep:sweep",
    "push": "gitxp.cli.remote:push",
    "pull": "gitxp.cli.remote:pull",
    "hooks": "gitxp.cli.remote:hooks",
    "ui": "gitxp.cli.ui:ui",
    "import": "gitxp.cli.importers:import_",
    "alias": "gitxp.cli.alias:alias",
}


class OutputFile(click.Path):
    """A file a command writes (``-o``): refused up front when its folder is missing.

    Otherwise the command does its work and then fails with a traceback.
    """

    def __init__(self) -> None:
        super().__init__(dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        folder = os.path.dirname(os.fsdecode(path))
        if folder and not os.path.isdir(folder):
            problem = f"{folder!r} is a file, not a folder" if os.path.exists(folder) else f"the folder {folder!r} does not exist; create it first"
            self.fail(f"{os.fsdecode(path)!r}: {problem}", param, ctx)
        return path


class GitxpGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *(n for n in LAZY_COMMANDS if self._lazy(n) is not None)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._lazy(cmd_name)

    def _lazy(self, name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(name)
        if target is None:
            return None
        import importlib

        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr, None)

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:  # type: ignore[override]
        extra["standalone_mode"] = False
        try:
            rv = super().main(args=args, prog_name=prog_name or "gitxp", **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        except click.UsageError as exc:
            path = exc.ctx.command_path if exc.ctx else "gitxp"
            click.echo(f"Error: {exc.format_message()} (see `{path} --help`)", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except GitxpError as exc:
            click.echo(f"Error: {exc}", err=True)
            if getattr(exc, "candidates", None):
                for c in exc.candidates:  # type: ignore[attr-defined]
                    click.echo(f"  {c}", err=True)
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            sys.stderr.close()
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=GitxpGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="gitxp")
@click.option("-C", "repo", default=".", metavar="PATH", help="Run as if started in PATH.")
@click.pass_context
def cli(ctx: click.Context, repo: str) -> None:
    """gitxp: experiments stored on a branch of your own git repository.

    \b
    Example:
      gitxp start -- python train.py --lr 0.1
      gitxp log
      gitxp show @
    """
    ctx.obj = {"repo": repo}


def _store(ctx: click.Context) -> Any:
    from gitxp.store.store import Store

    return Store.open(ctx.find_root().obj["repo"])


def _warn_unrecovered(store: Any) -> None:
    dead = store.unrecovered()
    if dead:
        click.echo(f"gitxp: {len(dead)} experiment(s) died without finishing ({', '.join(d[-12:] for d in dead[:3])}); run `gitxp recover`", err=True)


def _hint_pull(store: Any) -> None:
    """A fresh clone looks empty until `gitxp pull`: say so, with the count, in one line."""
    from gitxp.remote.sync import pull_hint

    hint = pull_hint(store)
    if hint:
        click.echo(hint, err=True)


def _kv(values: tuple[str, ...], what: str) -> dict[str, Any]:
    from gitxp.params import parse_scalar, set_dotted

    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"bad {what} {item!r}", f"write {what} KEY=VALUE, e.g. {what} lr=0.1")
        set_dotted(out, key.strip(), parse_scalar(value))
    return out


# ---------------------------------------------------------------- init


@cli.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the experiment store (and a repository, if there is none).

    Idempotent. Also creates the artifact key outside the repository.

    \b
    Example:
      gitxp init
    """
    from gitxp.plumbing.repo import discover, init_repository
    from gitxp.errors import NotARepositoryError

    path = Path(ctx.obj["repo"])
    try:
        discover(path)
    except NotARepositoryError:
        git_dir = init_repository(path)
        click.echo(f"Initialized empty git repository in {git_dir}", err=True)
    from gitxp.artifacts import keys

    store = _store(ctx)
    store.ensure()
    fp = keys.ensure_store_key(store)
    click.echo(f"gitxp store on branch '{store.branch}' (store {store.store_id}, key {fp})")


# ---------------------------------------------------------------- start


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


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
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

    params: dict[str, Any] = {}
    if opts["params_file"]:
        from gitxp.run.experiment import deep_merge
        from gitxp.params import yaml12_load

        loaded = yaml12_load(Path(opts["params_file"]).read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise UsageError(f"--params-file {opts['params_file']} must hold a mapping", "write key: value lines")
        params = deep_merge(loaded or {}, _kv(opts["params"], "-p"))
    else:
        params = _kv(opts["params"], "-p")
    if opts["dry_run"]:
        from gitxp.run import dryrun

        plan = dryrun.plan(command, repo=ctx.obj["repo"], name=opts["name"] or default_command_name(list(command)), params=params,
                           tags=_kv(opts["tags"], "--tag"), code_dir=opts["code_dir"], capture_code=not opts["no_code"],
                           artifact_globs=opts["artifact_globs"], inputs=opts["inputs"], alert_specs=opts["alert_specs"])
        if opts["fmt"] == "json":
            import json

            click.echo(json.dumps(plan, indent=2, default=str))
        else:
            click.echo(dryrun.render(plan))
        return 0
    elif opts["fmt"] != "text":
        raise UsageError("--format applies to --dry-run only", "add --dry-run, or leave --format out")
    if opts["sync"]:
        from gitxp.remote.sync import check_remote_name

        check_remote_name(opts["sync"])  # before the command runs, not at its first push
    return run_wrapped(
        list(command),
        repo=ctx.obj["repo"],
        name=opts["name"] or default_command_name(list(command)),
        params=params,
        tags=_kv(opts["tags"], "--tag"),
        notes=opts["note"],
        parent=opts["parent"],
        resume=opts["resume"],
        artifact_globs=opts["artifact_globs"],
        log_hardware=not opts["no_hardware"],
        hardware_interval=opts["hardware_interval"],
        capture_code=not opts["no_code"],
        code_dir=opts["code_dir"],
        capture_output=not opts["no_capture"],
        scalars=opts["scalars"],
        env_vars=opts["env_vars"],
        scalar_patterns=opts["scalar_patterns"],
        sync=opts["sync"],
        sync_interval=parse_interval(opts["sync_interval"]),
        inputs=opts["inputs"],
        alert_specs=opts["alert_specs"],
    )


# ---------------------------------------------------------------- log / show


@cli.command()
@click.option("-n", "--max-count", "limit", type=int, metavar="N", help="Show at most N experiments.")
@click.option("--oneline", is_flag=True, help="One line per experiment.")
@click.option("--all", "all_", is_flag=True, help="Experiments from every branch.")
@click.option("--branch", metavar="B", help="Experiments whose code came from branch B.")
@click.option("--status", metavar="S", help="Only this status (comma-separated list allowed).")
@click.option("--name", metavar="GLOB", help="Only names matching GLOB.")
@click.option("--where", metavar="EXPR", help="Filter, e.g. \"params.lr < 0.01 and metrics.acc >= 0.9\".")
@click.option("--format", "fmt", metavar="F", help="`json` (one document: {total, experiments: [...]}, the UI's fields), or a template, e.g. '{short} {name} {metrics.loss}'.")
@click.pass_context
def log(ctx: click.Context, limit: int | None, oneline: bool, all_: bool, branch: str | None, status: str | None, name: str | None, where: str | None, fmt: str | None) -> None:
    """Experiments, newest first, like `git log`.

    By default only those whose code came from the current branch (all of
    them while the current branch has no commit yet, as in a fresh clone).

    \b
    Example:
      gitxp log -n 5
      gitxp log --oneline --all --status failed
      gitxp log --where "params.lr < 0.01" --format '{short} {params.lr} {metrics.acc}'
      gitxp log --format json | jq '.experiments[].metrics.loss.min'
    """
    from gitxp.cli import views

    store = _store(ctx)
    _hint_pull(store)
    if not all_ and branch is None:
        head_commit, branch = store.repo.head()
        if head_commit is None:
            all_ = True  # an unborn branch ran nothing yet: every experiment is more useful than none
    recs = store.experiments(branch=None if all_ else branch, status=status, name=name, where=where, limit=limit)
    if status in (None, "running") and where is None:
        import fnmatch

        live = [r for r in store.running() if (all_ or r.source.get("branch") == branch) and (name is None or fnmatch.fnmatchcase(r.name, name))]
        ids = {r.id for r in live}
        recs = [r for r in recs if r.id not in ids]  # a live run (--sync) is also in the store, as of its last push
        recs = (live + recs)[:limit] if limit is not None else live + recs
    if fmt == "json":
        from gitxp.review import jsonview

        views.emit(jsonview.dumps(jsonview.listing(recs)), None)
        return
    views.print_log(recs, oneline=oneline, fmt=fmt)
    if not recs and not all_ and branch is not None and status is None and name is None and where is None:
        others = len(store.experiments())
        if others:
            click.echo(f"gitxp: no experiments from branch '{branch}'; {others} from other branches (`gitxp log --all`)", err=True)
    _warn_unrecovered(store)


@cli.command()
@click.argument("ref")
@click.option("--metrics", "show_metrics", is_flag=True, help="Every metric with min/max/last and a sparkline.")
@click.option("--hardware", "show_hardware", is_flag=True, help="Hardware use: mean/max per quantity.")
@click.option("--env", "show_env", is_flag=True, help="The recorded environment.")
@click.option("--code", "show_code", is_flag=True, help="Files of the code snapshot and changes against the source commit.")
@click.option("--output", "show_output", is_flag=True, help="The captured output.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: one document with the UI's fields (params, metrics, artifacts, environment, ...).")
@click.pass_context
def show(ctx: click.Context, ref: str, fmt: str, **what: bool) -> None:
    """One experiment: metadata, params, metrics with sparklines, artifacts.

    REF is an id, a unique prefix of the id or of its random part, a name
    (its newest experiment), `@` (the newest) or `@~N`.

    \b
    Example:
      gitxp show @
      gitxp show a3f9 --metrics --env
      gitxp show @ --format json | jq .params
    """
    from gitxp.cli import views

    store = _store(ctx)
    _hint_pull(store)
    if fmt == "json":
        from gitxp.review import jsonview

        views.emit(jsonview.dumps(jsonview.describe(store.get(ref))), None)
        return
    views.print_show(store.get(ref), **what)
    _warn_unrecovered(store)


# ---------------------------------------------------------------- recover / amend


@cli.command()
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

    store = _store(ctx)
    done, failed = _recover(store)
    for exp_id, status in done:
        click.echo(f"recovered {exp_id} ({status})")
    for exp_id, reason in failed:
        click.echo(f"gitxp: could not recover {exp_id}: {reason}", err=True)
    if failed:
        ctx.exit(1)
    if not done:
        click.echo("nothing to recover", err=True)


@cli.command()
@click.argument("ref")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.pass_context
def tag(ctx: click.Context, ref: str, pairs: tuple[str, ...]) -> None:
    """Add or change tags of an experiment (a new store commit).

    \b
    Example:
      gitxp tag @ reviewed=yes baseline=true
    """
    rec = _store(ctx).amend(ref, tags=_kv(pairs, "tag"))
    click.echo(f"tagged {rec.id}")


@cli.command()
@click.argument("ref")
@click.argument("text")
@click.pass_context
def note(ctx: click.Context, ref: str, text: str) -> None:
    """Append a note to an experiment (a new store commit).

    \b
    Example:
      gitxp note @ "diverged after epoch 3: lr too high"
    """
    rec = _store(ctx).amend(ref, note=text)
    click.echo(f"noted {rec.id}")


@cli.command()
@click.argument("ref")
@click.pass_context
def rm(ctx: click.Context, ref: str) -> None:
    """Remove an experiment from listings (history keeps it).

    \b
    Example:
      gitxp rm a3f9
    """
    rec = _store(ctx).amend(ref, remove=True)
    click.echo(f"removed {rec.id} {rec.name}")


# ---------------------------------------------------------------- table / metrics


@cli.command()
@click.option("--where", metavar="EXPR", help="Filter experiments.")
@click.option("--columns", metavar="GLOBS", help="Comma-separated column globs, e.g. 'params.*,metrics.acc'.")
@click.option("--sort", "sort_by", metavar="COLUMN", help="Sort by a column (prefix '-' for descending).")
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "markdown", "json"]), default="text", show_default=True)
@click.option("-o", "--output", type=OutputFile(), help="Write to a file instead of stdout.")
@click.pass_context
def table(ctx: click.Context, where: str | None, columns: str | None, sort_by: str | None, fmt: str, output: str | None) -> None:
    """Experiments × params × final metrics.

    \b
    Example:
      gitxp table --where "status == 'completed'" --columns 'params.*,metrics.*'
      gitxp table --format csv -o runs.csv
    """
    from gitxp.cli import views

    store = _store(ctx)
    _hint_pull(store)
    text = views.format_table(store.experiments(where=where), columns=columns, sort_by=sort_by, fmt=fmt)
    views.emit(text, output, paged=fmt == "text")


@cli.command("metrics")
@click.argument("refs", nargs=-1, metavar="[REF...]")
@click.option("--where", metavar="EXPR", help="Every experiment matching EXPR (with or instead of REFs).")
@click.option("-m", "--metric", "metrics", multiple=True, metavar="NAME", help="Only this metric (repeatable, globs allowed); a hardware column such as cpu_percent works too.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "parquet"]), default="csv", show_default=True)
@click.option("-o", "--output", type=OutputFile(), help="Write to a file (required for parquet on a terminal).")
@click.pass_context
def metrics_cmd(ctx: click.Context, refs: tuple[str, ...], where: str | None, metrics: tuple[str, ...], fmt: str, output: str | None) -> None:
    """The metric log: name, step, value, timestamp of one experiment.

    With several REFs or --where, one long log of all of them with the
    experiment's `id` and `name` first and the metric in `metric` (the
    columns of gitxp.histories()). JSON is one array of rows; NaN and
    infinities are null there.

    \b
    Example:
      gitxp metrics @ --format csv -o metrics.csv
      gitxp metrics @~2 @~1 @ -m loss --format json
      gitxp metrics --where "params.lr < 0.01" -m 'val_*' --format parquet -o runs.parquet
      gitxp metrics @ -m cpu_percent
    """
    from gitxp.store import frames
    from gitxp.review import diff as review
    from gitxp.cli import views

    if not refs and where is None:
        raise UsageError("name an experiment (REF) or a filter (--where)", "e.g. gitxp metrics @, or gitxp metrics --where \"status == 'completed'\"")
    store = _store(ctx)
    recs = review.get_all(store, refs) if refs else []
    if where is not None:
        seen = {r.id for r in recs}
        recs += [r for r in store.experiments(where=where) if r.id not in seen]
        if not recs:
            click.echo(f"gitxp: no experiment matches {where!r}", err=True)
    if len(recs) == 1 and where is None and not metrics:
        views.export_metrics(recs[0], fmt, output)
        return
    table = frames.history_table(recs, metrics or None, hardware=True)
    if metrics and table.num_rows == 0:
        raise review.unknown_metric("/".join(metrics), recs)
    if len(recs) == 1 and where is None:  # one experiment: the metric log's own columns
        table = table.select(["metric", "step", "value", "timestamp"]).rename_columns(["name", "step", "value", "timestamp"])
    views.export_log(table, fmt, output)

# ---------------------------------------------------------------- artifacts / keys


@cli.command()
@click.argument("ref")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: {id, name, artifacts: [{path, size, encrypted, parts, digest}]}.")
@click.pass_context
def artifacts(ctx: click.Context, ref: str, fmt: str) -> None:
    """List an experiment's artifacts: path, size, encryption, digest.

    \b
    Example:
      gitxp artifacts @
      gitxp artifacts @ --format json
    """
    from gitxp.artifacts import files as _artifacts
    from gitxp.cli import render
    from gitxp.cli import views

    rec = _store(ctx).get(ref)
    if fmt == "json":
        from gitxp.review import jsonview

        views.emit(jsonview.dumps({"id": rec.id, "name": rec.name, "artifacts": jsonview.artifact_list(rec, full=True)}), None)
        return
    rows = [[a["path"], views._size(a["size"]), "yes" if a.get("encrypted") else "no", a.get("parts"), str(a.get("digest", ""))[:24]] for a in _artifacts.read_manifest(rec)]
    if not rows:
        click.echo(f"experiment {rec.id} has no artifacts", err=True)
        return
    width = max(len(r[1]) for r in rows)
    for r in rows:  # sizes with units, right-aligned like numbers
        r[1] = r[1].rjust(width)
    click.echo(render.text_table(["path", "size", "encrypted", "parts", "digest"], rows))


@cli.command()
@click.argument("ref")
@click.argument("path", required=False)
@click.option("-o", "--output", "dest", type=click.Path(), help="Destination file or folder.")
@click.pass_context
def get(ctx: click.Context, ref: str, path: str | None, dest: str | None) -> None:
    """Decrypt, verify and write an artifact, a folder of artifacts, or all of them.

    One file goes to DEST (default: its name in the current folder); a
    folder or everything goes into the folder DEST (default ./<id>/).
    Nothing is written unless every byte verified.

    \b
    Example:
      gitxp get @ model.pt -o best.pt
      gitxp get a3f9 outputs/ -o ./a3f9-outputs
    """
    from gitxp.artifacts import files as _artifacts
    from gitxp.artifacts import keys
    from gitxp.cli import render

    store = _store(ctx)
    rec = store.get(ref)
    written = _artifacts.extract(rec, path, dest, key_loader=keys.key_loader(store), progress=render.isatty(sys.stderr))
    for p in written:
        click.echo(str(p))


@cli.group()
def key() -> None:
    """The artifact key: show its fingerprint, export it, import a colleague's.

    The key never enters the repository: it lives in your config folder
    (or GITXP_KEY). Share it over a secure channel.

    \b
    Example:
      gitxp key show
      gitxp key export | ssh colleague gitxp -C project key import -
    """


@key.command("show")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: {store, store_keys, key, key_source}.")
@click.pass_context
def key_show(ctx: click.Context, fmt: str) -> None:
    """Fingerprint and location of this store's key, and the fingerprints the store expects.

    \b
    Example:
      gitxp key show
      gitxp key show --format json
    """
    from gitxp.artifacts import crypto

    store = _store(ctx)
    store_id = store.store_id
    k = crypto.load_key(store_id)
    where = crypto.key_source(store_id)
    if fmt == "json":
        from gitxp.review import jsonview
        from gitxp.cli import views

        doc = {"store": store_id, "store_keys": list((store.document() or {}).get("keys") or []),
               "key": None if k is None else crypto.fingerprint(k), "key_source": str(where)}
        views.emit(jsonview.dumps(doc), None)
        return
    click.echo(f"store:       {store_id}")
    click.echo(f"store keys:  {', '.join((store.document() or {}).get('keys') or []) or '(none yet)'}")
    if k is None:
        click.echo(f"your key:    none (it would be created at {where})")
    else:
        click.echo(f"your key:    {crypto.fingerprint(k)} ({where})")


@key.command("export")
@click.pass_context
def key_export(ctx: click.Context) -> None:
    """Print the key (unpadded base64url) for a colleague or a CI secret.

    \b
    Example:
      gitxp key export > key.txt   # then: gitxp key import - < key.txt
    """
    from gitxp.artifacts import crypto
    from gitxp.artifacts import keys

    store = _store(ctx)
    keys.ensure_store_key(store)
    k = crypto.load_key(store.store_id)
    assert k is not None
    click.echo(crypto.encode_key(k))


@key.command("import")
@click.argument("value", required=False, default="-", metavar="[KEY|-]")
@click.pass_context
def key_import(ctx: click.Context, value: str) -> None:
    """Store a key (argument, or `-` for stdin) for this store; a different old key is kept as a backup.

    \b
    Example:
      gitxp key import "$GITXP_SHARED_KEY"
      gitxp key import - < key.txt
    """
    from gitxp.artifacts import crypto

    text = sys.stdin.read() if value == "-" else value
    k = crypto.decode_key(text)
    store = _store(ctx)
    path = crypto.save_key(store.store_id, k)
    fp = crypto.fingerprint(k)
    known = (store.document() or {}).get("keys") or []
    if known and fp not in known:
        click.echo(f"gitxp: warning: key {fp} is not one this store's artifacts use ({', '.join(known)})", err=True)
    click.echo(f"imported key {fp} into {path}")


# ---------------------------------------------------------------- environment


@cli.command()
@click.argument("ref")
@click.option("--requirements", type=OutputFile(), help="Write pip pins to FILE.")
@click.option("--venv", type=click.Path(file_okay=False), help="Create a virtual environment in DIR with the pins.")
@click.option("--python", "python_exe", metavar="EXE", help="Interpreter for --venv (default: this one).")
@click.option("--conda", "conda_name", metavar="NAME", help="Create a conda environment NAME (conda, mamba or micromamba).")
@click.option("--conda-file", type=OutputFile(), help="Write a conda environment.yml to FILE.")
@click.option("--allow-urls", is_flag=True, help="Also install (or write) packages recorded from a URL or VCS; their setup code runs.")
@click.option("--only-imported", is_flag=True, help="Only the packages the run imported (with their dependencies, at the recorded versions where recorded).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: {id, name, environment (summary), recorded (everything)}.")
@click.pass_context
def env(ctx: click.Context, ref: str, requirements: str | None, venv: str | None, python_exe: str | None, conda_name: str | None, conda_file: str | None, allow_urls: bool, only_imported: bool, fmt: str) -> None:
    """Show, export or recreate the environment an experiment ran in.

    --venv and --conda show the installer's progress on a terminal and use
    uv when it is installed (pip otherwise). gitxp itself is installed from
    the running gitxp; other packages installed from a local path are
    skipped, saying so. --only-imported rebuilds just what the run imported
    (`imported: true`, recorded for API runs and wrapped Python commands).

    Packages recorded from a URL, VCS or local path are listed with their
    source. A recorded experiment may come from anyone's store, so those
    from a URL or VCS are left out of --venv, --conda, --requirements and
    --conda-file unless --allow-urls is given.

    \b
    Example:
      gitxp env a3f9
      gitxp env a3f9 --venv .venv-a3f9
      gitxp env a3f9 --requirements requirements.txt --conda-file environment.yml
      gitxp env a3f9 --venv .venv-a3f9 --allow-urls   # trusted: include git+https:// pins
      gitxp env a3f9 --venv .venv-a3f9 --only-imported   # just what the run imported
      gitxp env a3f9 --format json | jq .recorded.packages
    """
    from gitxp.cli import envcmd

    if fmt == "json":
        from gitxp.review import jsonview
        from gitxp.cli import views

        if requirements or venv or conda_name or conda_file:
            raise UsageError("--format json only describes the environment", "drop --format json to export or recreate it")
        views.emit(jsonview.dumps(jsonview.environment_doc(_store(ctx).get(ref))), None)
        return
    envcmd.run(_store(ctx).get(ref), requirements=requirements, venv=venv, python=python_exe, conda_name=conda_name, conda_file=conda_file,
               allow_urls=allow_urls, only_imported=only_imported)



def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="gitxp")
