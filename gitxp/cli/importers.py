"""``gitxp import mlflow|tensorboard DIR``: thin over :mod:`gitxp.importers`."""

from __future__ import annotations

import sys
from typing import Any

import click


def _run(importer: Any, folder: str, repo: str) -> None:
    """Progress per run on a terminal (warnings included); elsewhere only the warnings; the summary on stdout."""
    from gitxp.cli import render

    tty = render.isatty(sys.stderr)
    result = importer(folder, repo=repo, progress=(lambda line: click.echo(render.clean(line), err=True)) if tty else None)
    if not tty:
        for w in result.warnings:
            click.echo(f"gitxp: warning: {render.clean(w)}", err=True)
    click.echo(result.summary() + ("; see them with `gitxp log --all`" if result.imported else ""))


@click.group("import")
def import_() -> None:
    """Bring runs recorded by MLflow or TensorBoard into the store.

    Each run becomes one experiment; importing the same folder again only
    adds the runs not imported before. A line per run on a terminal, a
    summary at the end.

    \b
    Example:
      gitxp import mlflow ./mlruns
      gitxp import tensorboard ./runs
    """


@import_.command("mlflow")
@click.argument("mlruns", type=click.Path(file_okay=False), metavar="MLRUNS_DIR")
@click.pass_context
def mlflow(ctx: click.Context, mlruns: str) -> None:
    """Import MLflow's file store (the mlruns folder); mlflow need not be installed.

    Each run: params, metric histories (steps, timestamps), tags (with
    mlflow.runName, mlflow.source.name, ...), status, start and end time,
    and its artifacts, encrypted. The experiment is named after the MLflow
    experiment; the run id is kept as tag mlflow.run_id. FINISHED runs are
    completed, FAILED failed, KILLED interrupted, RUNNING crashed.

    \b
    Example:
      gitxp import mlflow ./mlruns
      gitxp log --all --where "tags.mlflow.experiment == 'demo'"
    """
    from gitxp.importers.mlflow import import_mlflow

    _run(import_mlflow, mlruns, ctx.obj["repo"])


@import_.command("tensorboard")
@click.argument("logdir", type=click.Path(file_okay=False), metavar="LOGDIR")
@click.pass_context
def tensorboard(ctx: click.Context, logdir: str) -> None:
    """Import TensorBoard event files: one experiment per run folder, scalars as metrics.

    Needs the tensorboard package (pip install 'gitxp[tensorboard]').
    Steps and wall times are kept; the run folder's path under LOGDIR is
    the experiment's name and tag tensorboard.run.

    \b
    Example:
      gitxp import tensorboard ./runs
      gitxp metrics --where "tags.tensorboard.run != ''" -m 'train/*' --format csv
    """
    from gitxp.importers.tensorboard import import_tensorboard

    _run(import_tensorboard, logdir, ctx.obj["repo"])
