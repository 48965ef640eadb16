"""The browsing commands: ``log``, ``show``, ``table`` and ``metrics``.

Registered lazily by :mod:`gitxp.cli` (``LAZY_COMMANDS``); what they print is in :mod:`gitxp.cli.views`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from gitxp.cli._common import OutputFile, gather, hint_pull, store_of, warn_unrecovered
from gitxp.errors import UsageError

if TYPE_CHECKING:
    from gitxp.store.record import Record


@click.command()
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

    store = store_of(ctx)
    hint_pull(store)
    if not all_ and branch is None:
        head_commit, branch = store.repo.head()
        if head_commit is None:
            all_ = True  # an unborn branch ran nothing yet: every experiment is more useful than none
    recs: list[Record] = store.experiments(branch=None if all_ else branch, status=status, name=name, where=where, limit=limit)
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
    warn_unrecovered(store)


@click.command()
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

    store = store_of(ctx)
    hint_pull(store)
    if fmt == "json":
        from gitxp.review import jsonview

        views.emit(jsonview.dumps(jsonview.describe(store.get(ref))), None)
        return
    views.print_show(store.get(ref), **what)
    warn_unrecovered(store)


@click.command()
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

    store = store_of(ctx)
    hint_pull(store)
    recs = store.experiments(where=where, decoded=True)
    text = views.format_table(recs, columns=columns, sort_by=sort_by, fmt=fmt)
    views.emit(text, output, paged=fmt == "text")


@click.command("metrics")
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
    recs = gather(store_of(ctx), refs, where)
    if where is not None and not recs:
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
