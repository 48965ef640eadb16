"""``gitxp sweep``: parse, call :func:`gitxp.sweeps.runner.run`, render the closing table.

Imported lazily by :mod:`gitxp.cli` (``LAZY_COMMANDS``), so ``gitxp --help``
stays cheap.
"""

from __future__ import annotations

import shlex
from typing import Any

import click


from gitxp.cli._common import reject_unknown_option  # noqa: E402
from gitxp.cli.start import recording_options, run_options  # noqa: E402  (cli imports this module only lazily)
from gitxp.errors import UsageError  # noqa: E402


# Options may follow FILE (interspersed); `--` ends them, so the command keeps its own options.
@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": True})
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-j", "--jobs", type=int, default=1, show_default=True, metavar="N", help="Run N configurations at once.")
@click.option("--split", metavar="I/N", help="Run only configurations i with i % N == I (0-based, for array jobs).")
@click.option("--queue", is_flag=True, help="Claim configurations, so any number of workers can share the sweep.")
@click.option("--claim-timeout", type=float, metavar="SECONDS", help="A claim not heartbeated for this long is taken over (default 60, or gitxp.claimTimeout).")
@click.option("--dry-run", is_flag=True, help="Print the configurations and commands; run nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="With --dry-run, json: {total, configurations: [{index, params, command}]}.")
@click.option("--fail-fast", is_flag=True, help="Start no new configuration after one fails.")
@click.option("--rerun", is_flag=True, help="Run configurations that already completed, too.")
@click.option("--name", help="Sweep name (default: the file's stem); also the children's name.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag on every child (repeatable).")
@click.option("--note", help="Free-text note on every child.")
@click.option("--index", "index", type=int, metavar="I", help="Run configuration I alone (0-based, --dry-run order), under the sweep's shared parent: what each Slurm array task runs.")
@click.option("--status", "show_status", is_flag=True, help="Count the configurations by their newest child's status (and those not run yet); runs nothing, needs no COMMAND.")
@click.option("--slurm", is_flag=True, help="Write an sbatch script for a job array (task i runs --index i) and submit it with sbatch.")
@click.option("--sbatch-opt", "sbatch_opts", multiple=True, metavar="KEY=VALUE", help="With --slurm: an `#SBATCH --KEY=VALUE` line (repeatable), e.g. time=1:00:00, partition=gpu.")
@click.option("--max-parallel", type=click.IntRange(min=1), metavar="N", help="With --slurm: at most N tasks at once (the array's %N).")
@click.option("--print", "print_only", is_flag=True, help="With --slurm: write the script and print it; submit nothing.")
@run_options
@click.argument("command", nargs=-1, required=False, type=click.UNPROCESSED)
@click.pass_context
def sweep(ctx: click.Context, file: str, command: tuple[str, ...], **opts: Any) -> int:
    """Run COMMAND once per configuration of the sweep FILE; exit 1 if any failed.

    FILE is YAML: top-level keys are fixed parameters (the same in every
    configuration); under `grid:` each key takes a list of values and every
    combination is one configuration (the first key varies slowest). Several
    blocks (a list under `grid:`) are a union; a `group:` inside a block
    zips its lists; `parent: base.yaml` merges another file under this one.
    A list outside `grid:` is one fixed value (gitxp warns when the command
    uses it). This file gives 2 x 2 = 4 configurations:

    \b
      epochs: 3            # fixed
      grid:
        lr: [0.1, 0.01]    # swept
        batch: [16, 32]

    The sweep is a parent experiment and each configuration a child, named
    after the sweep (--name, else FILE's stem); `{key}` in COMMAND is
    replaced by the parameter's value. Re-running skips the configurations
    that completed. Children see their params through
    `gitxp.current().params`.

    \b
    Example:
      gitxp sweep grid.yaml --dry-run -- python train.py --lr {lr}
      gitxp sweep grid.yaml --dry-run --format json -- python train.py --lr {lr}
      gitxp sweep grid.yaml --jobs 4 --no-hardware -- python train.py --lr {lr} --batch {batch}
      gitxp sweep grid.yaml --queue -- python train.py --lr {lr}    # on each machine
      sbatch --array=0-3 --wrap 'gitxp sweep grid.yaml --split $SLURM_ARRAY_TASK_ID/4 -- python train.py --lr {lr}'
      gitxp sweep grid.yaml --slurm --sbatch-opt time=1:00:00 --max-parallel 2 -- python train.py --lr {lr}
      gitxp sweep grid.yaml --slurm --print -- python train.py --lr {lr}    # write the script only
      gitxp sweep grid.yaml --index 3 -- python train.py --lr {lr}           # configuration 3 alone
      gitxp sweep grid.yaml --status

    \f
    Maintainers: all logic is in gitxp.sweeps.runner; see its module docstring for
    claims, parent reuse and skipping.
    """
    from pathlib import Path

    from gitxp.sweeps.spec import list_warnings, load, parse_split

    if opts["show_status"]:
        return _status(ctx, file, opts["name"])
    reject_unknown_option(ctx, command)
    _check_flags(command, opts)
    split = parse_split(opts["split"]) if opts["split"] else None
    spec = load(Path(file))
    for warning in list_warnings(spec, command):
        click.echo(f"gitxp sweep: warning: {warning}", err=True)
    if opts["fmt"] == "json" and not opts["dry_run"]:
        raise UsageError("--format json describes a plan: add --dry-run", "e.g. gitxp sweep grid.yaml --dry-run --format json -- python train.py --lr {lr}")
    if opts["dry_run"]:
        return _dry_run(spec, command, split, opts["fmt"])
    if opts["slurm"]:
        return _slurm(ctx, file, command, spec, opts)
    return _run(ctx, file, command, split, opts)


def _check_flags(command: tuple[str, ...], opts: dict[str, Any]) -> None:
    """Refuse a missing COMMAND and options that do not go together, before the sweep file is read."""
    if not command:
        raise UsageError("missing COMMAND", "put the command after `--`, e.g. gitxp sweep grid.yaml -- python train.py --lr {lr}")
    if (opts["sbatch_opts"] or opts["max_parallel"] or opts["print_only"]) and not opts["slurm"]:
        raise UsageError("--sbatch-opt, --max-parallel and --print go with --slurm", "add --slurm")
    if opts["index"] is not None and (opts["split"] or opts["queue"] or opts["slurm"]):
        raise UsageError("--index runs one configuration: it does not combine with --split, --queue or --slurm", "drop one of them")


def _dry_run(spec: Any, command: tuple[str, ...], split: tuple[int, int] | None, fmt: str) -> int:
    """``--dry-run``: each configuration's params and command, as text or JSON."""
    from gitxp.sweeps import runner as lib

    plan = list(lib.plan(spec.configurations, command, split=split))
    if fmt == "json":
        from gitxp.review import jsonview
        from gitxp.cli import views

        configs = [{"index": p.index, "params": p.params, "command": list(p.command)} for p in plan]
        views.emit(jsonview.dumps({"total": len(configs), "configurations": configs}), None)
        return 0
    for p in plan:
        click.echo(f"#{p.index} {lib._describe(p.params)}\n  {shlex.join(p.command)}")
    return 0


def _run(ctx: click.Context, file: str, command: tuple[str, ...], split: tuple[int, int] | None, opts: dict[str, Any]) -> int:
    """Run the sweep here (one child per configuration) and print the closing table."""
    from pathlib import Path

    from gitxp.sweeps import runner as lib
    from gitxp.run.scalars import ScalarPattern

    for pattern in opts["scalar_patterns"]:
        ScalarPattern(pattern)  # a bad --scalar fails before the sweep starts
    options = recording_options(opts)
    result = lib.run(
        file, list(command), repo=ctx.obj["repo"], jobs=opts["jobs"], split=split, queue=opts["queue"],
        fail_fast=opts["fail_fast"], rerun=opts["rerun"], name=opts["name"],
        child_name=opts["name"] or Path(file).stem, claim_timeout=opts["claim_timeout"],
        options=options, index=opts["index"],
    )
    click.echo(lib.result_table(result))
    return result.exit_status


def _status(ctx: click.Context, file: str, name: str | None) -> int:
    from pathlib import Path

    from gitxp.sweeps import runner as lib

    parent, counts = lib.status(file, repo=ctx.obj["repo"], name=name)
    total = sum(counts.values())
    head = f"sweep {parent} {name or Path(file).stem}" if parent else f"sweep {name or Path(file).stem} (not started)"
    click.echo(f"{head}: {total} configuration{'s' if total != 1 else ''}")
    order = ["completed", "running", "failed", "interrupted", "crashed", "not run"]
    for status in sorted(counts, key=lambda k: order.index(k) if k in order else len(order)):
        click.echo(f"  {status:<12} {counts[status]}")
    return 0


#: Options passed on to every array task as they were given (flag or valued, repeatable or not).
_TASK_FLAGS = (("rerun", "--rerun"), ("no_hardware", "--no-hardware"), ("no_code", "--no-code"), ("no_capture", "--no-capture"), ("scalars", "--scalars"))
_TASK_VALUES = (("name", "--name"), ("note", "--note"), ("code_dir", "--code-dir"), ("claim_timeout", "--claim-timeout"))
_TASK_LISTS = (("tags", "--tag"), ("artifact_globs", "--artifact"), ("scalar_patterns", "--scalar"), ("env_vars", "--env-var"))


def _slurm(ctx: click.Context, file: str, command: tuple[str, ...], spec: Any, opts: dict[str, Any]) -> int:
    """Write (and unless --print, submit) the job array; see gitxp.sweeps.slurm."""
    import os
    from pathlib import Path

    from gitxp.sweeps import slurm
    from gitxp.store.store import Store

    if opts["jobs"] != 1 or opts["split"] or opts["queue"] or opts["fail_fast"]:
        raise UsageError("--slurm runs one configuration per array task: --jobs, --split, --queue and --fail-fast do not apply", "drop them; use --max-parallel to limit the tasks running at once")
    sbatch_opts = slurm.parse_opts(opts["sbatch_opts"])
    args = ["sweep", file]
    for key, flag in _TASK_FLAGS:
        if opts[key]:
            args.append(flag)
    for key, flag in _TASK_VALUES:
        if opts[key] is not None:
            args += [flag, str(opts[key])]
    if opts["hardware_interval"] != 1.0:
        args += ["--hardware-interval", str(opts["hardware_interval"])]
    for key, flag in _TASK_LISTS:
        for value in opts[key]:
            args += [flag, value]
    args += ["--", *command]
    name = opts["name"] or Path(file).stem
    store = Store.open(ctx.obj["repo"])
    folder = store.repo.gitxp_dir / slurm.SLURM_DIR
    text = slurm.script(task_args=args, count=len(spec.configurations), name=name, logs=folder / "logs", cwd=os.getcwd(),
                        sbatch_opts=sbatch_opts, max_parallel=opts["max_parallel"])
    path = slurm.write(store.repo.gitxp_dir, name, text)
    if opts["print_only"]:
        click.echo(text, nl=False)
        click.echo(f"gitxp sweep: wrote {path}; submit it with `sbatch {path}`", err=True)
        return 0
    said = slurm.submit(path)
    click.echo(f"gitxp sweep: {said or 'submitted'}: {len(spec.configurations)} task(s) from {path}; output in {folder / 'logs'}; progress: gitxp sweep {file} --status")
    return 0
