"""The review commands: ``diff``, ``report``, ``plot`` and ``checkout``.

Registered lazily by :mod:`gitxp.cli`; each parses its options, makes one
call into :mod:`gitxp.review.diff` (diff, checkout), :mod:`gitxp.review.report` or
:mod:`gitxp.review.charts` (plot) and prints the result. Errors are
:class:`gitxp.errors.GitxpError`s, turned into one line by the CLI's boundary.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gitxp.cli._common import OutputFile, gather
from gitxp.errors import UsageError

if TYPE_CHECKING:
    from gitxp.store.store import Store


def _store(ctx: click.Context) -> Store:
    from gitxp.store.store import Store

    return Store.open((ctx.obj or {}).get("repo", "."))


@click.command()
@click.argument("ref_a", metavar="[A", required=False)
@click.argument("ref_b", metavar="[B]]", required=False)
@click.option("--code", is_flag=True, help="Also show a unified diff of the two code snapshots.")
@click.option("--env", is_flag=True, help="Also show packages and python/CUDA versions that differ.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: {a, b, command, params, metrics (+ code, environment)}.")
@click.pass_context
def diff(ctx: click.Context, ref_a: str | None, ref_b: str | None, code: bool, env: bool, fmt: str) -> None:
    """Compare two experiments: command, params, metrics (with deltas), code, environment.

    Without refs, A and B are `@~1` and `@` (the two newest); with one, it
    is compared with `@`. Differing commands are shown as - A / + B; params
    as dotted keys (~ changed, + only in B, - only in A); metrics side by
    side as last/min/max with absolute and relative change from A to B.

    \b
    Example:
      gitxp diff --code
      gitxp diff @~1 @
      gitxp diff a3f9 b71c --code --env
      gitxp diff @~1 @ --format json | jq .metrics.loss.delta
    """
    from gitxp.cli import render
    from gitxp.review import diff as review

    store = _store(ctx)
    a, b = store.get(ref_a or "@~1"), store.get(ref_b or "@")
    if fmt == "json":
        from gitxp.review import jsonview
        from gitxp.cli import views

        views.emit(jsonview.dumps(jsonview.diff(a, b, code=code, env=env)), None)
        return
    render.page(review.diff_text(a, b, code=code, env=env, colour=render.use_colour()))


@click.command()
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option("--baseline", metavar="REF", help="Compare against this experiment (default: the first REF when several).")
@click.option("-m", "--metric", metavar="NAME", help="Metric to chart (default: the one most experiments logged).")
@click.option("--format", "fmt", type=click.Choice(["markdown", "html"]), default="markdown", show_default=True)
@click.option("-o", "--output", type=OutputFile(), help="Write to a file instead of stdout.")
@click.option("--log-y", is_flag=True, help="Charts on a log-scale y axis (values <= 0 are left out).")
@click.pass_context
def report(ctx: click.Context, refs: tuple[str, ...], baseline: str | None, metric: str | None, fmt: str, output: str | None, log_y: bool) -> None:
    """A review-ready summary to paste into a pull request.

    Params and metrics side by side, each metric's last value with its
    change against the baseline, a chart (Mermaid in markdown, inline SVG in
    HTML) and the code diff stat against the baseline's code. The baseline
    is --baseline, else the first REF when there are several; it is always
    the first column. HTML output is one self-contained file.

    \b
    Example:
      gitxp report a3f9 --baseline b71c
      gitxp report b71c a3f9 c0de --format html -o report.html
    """
    from gitxp.cli import views
    from gitxp.review.report import build_report, report_html, report_markdown

    rep = build_report(_store(ctx), refs, baseline=baseline, metric=metric, log_y=log_y)
    text = report_markdown(rep) if fmt == "markdown" else report_html(rep)
    views.emit(text, output)
    if output:
        click.echo(f"wrote {output}", err=True)


@click.command()
@click.argument("refs", nargs=-1, metavar="[REF...]")
@click.option("--where", metavar="EXPR", help="Also every experiment matching EXPR (one curve each).")
@click.option("-m", "--metric", "metrics", multiple=True, required=True, metavar="NAME", help="Metric or hardware column (cpu_percent) to draw (repeatable: one panel each).")
@click.option("-o", "--output", required=True, type=OutputFile(), help="FILE.svg, or FILE.png (needs matplotlib).")
@click.option("--log-y", is_flag=True, help="Log-scale y axis (values <= 0 are left out).")
@click.pass_context
def plot(ctx: click.Context, refs: tuple[str, ...], where: str | None, metrics: tuple[str, ...], output: str, log_y: bool) -> None:
    """Draw metric curves of several experiments on one chart.

    One curve per experiment per panel; a metric with a single point is a
    marker. A hardware column (cpu_percent, gpu0_util_percent, ...) is drawn
    against its sample index. SVG is written without any plotting library;
    PNG needs matplotlib (pip install 'gitxp[plot]'). Long curves are
    downsampled to 2000 points, keeping minima and maxima.

    \b
    Example:
      gitxp plot @~2 @~1 @ -m loss -o loss.svg
      gitxp plot a3f9 b71c -m loss -m acc -o curves.png
      gitxp plot @ -m loss --log-y -o loss.svg
      gitxp plot --where "params.lr < 0.01" -m val_loss -o val.svg
      gitxp plot @ -m cpu_percent -o cpu.svg
    """
    from gitxp.review import charts
    from gitxp.review import diff as review

    if not refs and where is None:
        raise UsageError("name experiments (REF...) or a filter (--where)", "e.g. gitxp plot @~1 @ -m loss -o loss.svg")
    recs = gather(_store(ctx), refs, where)
    if where is not None and not recs:
        raise UsageError(f"no experiment matches {where!r}", "see `gitxp table --where ...`")
    path = charts.plot(recs, metrics, output, log_y=log_y)
    missing = [review.label(r) for r in recs if not any(review.series(r, m) for m in metrics)]
    if missing:
        click.echo(f"gitxp: no {'/'.join(metrics)} in {', '.join(missing)}", err=True)
    click.echo(f"wrote {Path(path)}", err=True)


@click.command()
@click.argument("ref")
@click.option("-b", "branch", metavar="BRANCH", help="Create BRANCH (must not exist) at the experiment's code.")
@click.option("--worktree", metavar="DIR", type=click.Path(file_okay=False), help="Also open the code in a new worktree at DIR (detached without -b).")
@click.pass_context
def checkout(ctx: click.Context, ref: str, branch: str | None, worktree: str | None) -> None:
    """The experiment's exact code as a branch or a worktree.

    From a clean tree, BRANCH points at the source commit. From a dirty tree,
    one commit is made (parent: the source commit; tree: the snapshot) and
    BRANCH points at it. With neither -b nor --worktree the commit is only
    printed. Your current branch, index and files are never touched.

    \b
    Example:
      gitxp checkout a3f9 -b xp/lr-sweep
      gitxp checkout a3f9 --worktree ../a3f9
    """
    from gitxp.review import diff as review

    store = _store(ctx)
    rec = store.get(ref)
    res = review.checkout(store, rec.id, branch=branch, worktree=worktree)
    click.echo(review.describe_checkout(rec, res))
    if branch is None and worktree is None:
        click.echo("gitxp: nothing checked out; add -b BRANCH or --worktree DIR to open it", err=True)
    sys.stdout.flush()
