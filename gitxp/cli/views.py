"""What the browsing commands print: log, show, table and metric exports.

Pure formatting over :class:`gitxp.store.record.Record`; the commands in
:mod:`gitxp.cli` only pick options and call one of these.
"""

from __future__ import annotations

import re
import string
import sys
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitxp.cli import render
from gitxp.store import tables
from gitxp.errors import UsageError

if TYPE_CHECKING:
    from gitxp.store.record import Record


def short(exp_id: str) -> str:
    """The random part's first 8 hex digits: unique in practice, and a valid ref."""
    return exp_id.rsplit("-", 1)[-1][:8]


def _when(created: str) -> str:
    return created.replace("T", " ").replace("Z", " UTC")[:16] if created else "-"


def _metrics_line(rec: Record, limit: int = 4) -> str:
    items = list(rec.metric_summary.items())[:limit]
    return " ".join(f"{k}={render.fmt_value(v.get('last') if isinstance(v, dict) else v)}" for k, v in items)


def exit_text(code: Any) -> str:
    """An exit code as ``gitxp start`` exited with it: a death by signal N is ``128+N (SIGNAME)``.

    The store keeps subprocess's ``-N``; a user saw ``130`` in the shell.
    """
    if isinstance(code, int) and not isinstance(code, bool) and code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"{128 - code} ({name})"
    return str(code)


def _params_line(rec: Record, limit: int = 6) -> str:
    flat: dict[str, Any] = {}
    tables.flatten("", dict(rec.params), flat)
    items = [(k.lstrip("."), v) for k, v in flat.items()][:limit]
    more = " …" if len(flat) > limit else ""
    return " ".join(f"{k}={render.fmt_value(v)}" for k, v in items) + more


class _Fields(string.Formatter):
    """``--format`` templates: ``{id}``, ``{short}``, ``{params.lr}``; a missing field prints ``-``."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        return self.row.get(field_name, "-"), field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec:
            try:
                return format(value, format_spec)
            except (TypeError, ValueError):
                pass
        return render.fmt_value(value) if value != "-" else "-"


def format_template(rec: Record, template: str) -> str:
    row = tables.row(rec)
    row.update(short=short(rec.id), duration=render.fmt_duration(rec.meta.get("duration_s")), date=_when(rec.created))
    try:
        return _Fields(row).format(template.replace("\\t", "\t").replace("\\n", "\n"))
    except (ValueError, IndexError) as exc:
        raise UsageError(f"bad --format template {template!r}: {exc}", "use fields like '{short} {name} {metrics.loss}'") from exc


def print_log(recs: Sequence[Record], *, oneline: bool, fmt: str | None) -> None:
    colour = render.use_colour()
    out: list[str] = []
    for rec in recs:
        status = render.style(rec.status, render.status_colour(rec.status), colour)
        if fmt:
            out.append(format_template(rec, fmt))
        elif oneline:
            out.append(f"{render.style(short(rec.id), 'yellow', colour)} {render.clean(rec.name)} {status} {_when(rec.created)} {_metrics_line(rec)}".rstrip())
        else:
            src = rec.source
            out.append(render.style(f"experiment {rec.id}", "yellow", colour) + f" ({render.clean(rec.name)})")
            line = f"Status:  {status}"
            if rec.meta.get("exit_code") not in (None, 0):
                line += f", exit {exit_text(rec.meta.get('exit_code'))}"
            line += f"  {render.fmt_duration(rec.meta.get('duration_s'))}"
            out.append(line)
            out.append(f"Date:    {_when(rec.created)}")
            if src.get("commit") or src.get("branch"):
                commit = str(src.get("commit") or "")[:10] or "(no commit)"
                out.append(f"Source:  {src.get('branch') or '(detached)'} {commit}{' +dirty' if src.get('dirty') else ''}")
            if rec.params:
                out.append(f"Params:  {_params_line(rec)}")
            if rec.metric_summary:
                out.append(f"Metrics: {_metrics_line(rec, 8)}")
            if rec.tags:
                out.append("Tags:    " + " ".join(f"{render.clean(k)}={render.fmt_value(v)}" for k, v in rec.tags.items()))
            if rec.meta.get("damaged"):
                out.append(f"Damaged: {render.clean(rec.meta['damaged'][0])}")
            out.append("")
    if out:
        render.page("\n".join(out).rstrip("\n"))


def print_show(rec: Record, *, show_metrics: bool = False, show_hardware: bool = False, show_env: bool = False, show_code: bool = False, show_output: bool = False) -> None:
    colour = render.use_colour()
    m = rec.meta
    lines = [render.style(f"experiment {rec.id}", "yellow", colour) + f" ({render.clean(rec.name)})"]
    status = render.style(rec.status, render.status_colour(rec.status), colour)
    lines.append(f"Status:   {status}" + (f", exit {exit_text(m.get('exit_code'))}" if m.get("exit_code") is not None else ""))
    for problem in m.get("damaged") or []:
        lines.append(f"Damaged:  {render.clean(problem)}")
    lines.append(f"Created:  {m.get('created', '-')}")
    lines.append(f"Duration: {render.fmt_duration(m.get('duration_s'))}")
    if m.get("parent"):
        lines.append(f"Parent:   {m['parent']}")
    cmd = m.get("command")
    if cmd:
        lines.append(f"Command:  {' '.join(map(str, cmd))}")
    if m.get("host") or m.get("user") or m.get("cwd"):  # an imported run knows none of them, or only the user
        lines.append(f"Host:     {m.get('user') or '-'}@{m.get('host') or '-'}  in {m.get('cwd') or '-'}")
    src = rec.source
    if src and (src.get("branch") or src.get("commit")):  # an imported run has no source
        lines.append(f"Source:   {src.get('branch') or '(detached)'} {str(src.get('commit') or '')[:10]}{' +dirty' if src.get('dirty') else ''}" + (f"  (code: {src.get('code_dir')})" if src.get("code_dir") else ""))
        if src.get("skipped"):
            lines.append(f"          left out of the snapshot: {', '.join(src['skipped'][:5])}{' …' if len(src['skipped']) > 5 else ''}")
    if rec.tags:
        lines.append("Tags:     " + " ".join(f"{render.clean(k)}={render.fmt_value(v)}" for k, v in rec.tags.items()))
    if m.get("notes"):
        lines.append("Notes:    " + str(m["notes"]).replace("\n", "\n          "))
    from gitxp.store.inputs import by_name, short_digest

    for name, i in by_name(m.get("inputs")).items():
        size = i.get("size") if isinstance(i.get("size"), int) else 0
        files = i.get("files")
        lines.append(f"Input:    {render.clean(name)} = {render.clean(str(i.get('path')))} ({render.fmt_size(size)}"
                     f"{f', {files} files' if isinstance(files, int) and files != 1 else ''}, {short_digest(i.get('digest'))})")
    for a in m.get("alerts") or [] if isinstance(m.get("alerts"), list) else []:
        if isinstance(a, dict):
            from gitxp.store.alerts import describe

            try:
                lines.append(f"Alert:    {render.clean(describe(a))} at {a.get('time')}")
            except (KeyError, TypeError, ValueError):
                continue
    if m.get("error"):
        err = m["error"]
        lines.append(f"Error:    {err.get('type')}: {err.get('message')}" if isinstance(err, dict) else f"Error:    {err}")
    if rec.params:
        lines += ["", "Params:"]
        flat: dict[str, Any] = {}
        tables.flatten("", dict(rec.params), flat)
        width = max(len(k) for k in flat) if flat else 0
        lines += [f"  {k.lstrip('.'):<{width}}  {render.fmt_value(v)}" for k, v in flat.items()]
    if rec.summary:
        width = max(len(str(k)) for k in rec.summary)
        lines += ["", "Summary:"] + [f"  {str(k):<{width}}  {render.fmt_value(v)}" for k, v in rec.summary.items()]
    if rec.metric_summary:
        lines += ["", "Metrics:"]
        lines.append(_metric_table(rec))
    extra = _artifacts_lines(rec)
    if extra:
        lines += ["", "Artifacts:"] + extra
    tabs = rec.tables()
    if tabs:
        lines += ["", "Tables:   " + ", ".join(tabs)]
    if show_hardware:
        lines += ["", "Hardware:"] + _hardware_lines(rec)
    if show_env:
        lines += ["", "Environment:"] + _env_lines(rec)
    if show_code:
        lines += ["", "Code:"] + _code_lines(rec)
    if show_output:
        lines += ["", "Output:", rec.output() or "(none captured)"]
    if show_metrics:
        lines += ["", "Metric log: see `gitxp metrics " + short(rec.id) + "` for every point"]
    render.page("\n".join(lines))


def _metric_table(rec: Record) -> str:
    curves: dict[str, list[float]] = {}
    try:
        t = rec.metrics()
        if t.num_rows:
            names = t.column("name").to_pylist()
            values = t.column("value").to_pylist()
            for n, v in zip(names, values):
                curves.setdefault(n, []).append(v)
    except Exception:
        curves = {}
    rows = []
    for name, s in rec.metric_summary.items():
        rows.append([name, s.get("last"), s.get("min"), s.get("max"), s.get("count"), s.get("last_step"), render.sparkline(curves.get(name, []))])
    text = render.text_table(["name", "last", "min", "max", "count", "step", "curve"], rows)
    return "\n".join("  " + line for line in text.splitlines())


def _artifacts_lines(rec: Record) -> list[str]:
    from gitxp.artifacts.manifest import read_manifest

    try:
        manifest = read_manifest(rec)
    except Exception as exc:
        return [f"  (unreadable manifest: {exc})"]
    sizes = [_size(a.get("size")) for a in manifest]
    pw = max((len(str(a["path"])) for a in manifest), default=0)
    sw = max((len(x) for x in sizes), default=0)
    return [f"  {str(a['path']):<{pw}}  {size:>{sw}}{'  encrypted' if a.get('encrypted') else ''}" for a, size in zip(manifest, sizes)]


def _size(n: Any) -> str:
    return render.fmt_size(n) if isinstance(n, int) else "-"


def _hardware_lines(rec: Record) -> list[str]:
    t = rec.hardware()
    if t is None or t.num_rows == 0:
        return ["  (no hardware samples)"]
    rows = []
    for name in t.column_names:
        if name == "timestamp":
            continue
        vals = [v for v in t.column(name).to_pylist() if isinstance(v, (int, float))]
        finite = [v for v in vals if v == v]
        if not finite:
            continue
        rows.append([name, _quantity(name, sum(finite) / len(finite)), _quantity(name, max(finite)), render.sparkline(vals)])
    for col in (1, 2):  # right-aligned, units or not
        width = max(len(r[col]) for r in rows) if rows else 0
        for r in rows:
            r[col] = r[col].rjust(width)
    text = render.text_table(["quantity", "mean", "max", "curve"], rows)
    return [f"  {t.num_rows} samples"] + ["  " + line for line in text.splitlines()]


def _quantity(column: str, value: float) -> str:
    """A hardware value for people: bytes in binary units (``1.7 GiB``, ``3.2 MiB/s``), others as numbers."""
    if column.endswith("_bytes"):
        return render.fmt_size(int(value))
    if column.endswith("_bytes_per_s"):
        return render.fmt_size(int(value)) + "/s"
    return render.fmt_value(value)


def _env_lines(rec: Record) -> list[str]:
    from gitxp.errors import UnsafeDataError

    try:
        env = rec.environment
    except UnsafeDataError as exc:
        return [f"  (damaged: {exc.message})"]
    if env is None:
        return ["  (not recorded)"]
    from gitxp.environment import describe as environment

    return ["  " + line for line in environment.summary(env).splitlines()]


def _code_lines(rec: Record) -> list[str]:
    tree = rec.code_tree
    if tree is None:
        return ["  (no code snapshot)"]
    repo = rec.store.repo
    files: list[str] = []

    def walk(sha: str, prefix: str) -> None:
        for e in repo.read_tree(sha):
            if e.is_tree:
                walk(e.sha, f"{prefix}{e.name}/")
            else:
                files.append(prefix + e.name)

    walk(tree, "")
    out = [f"  tree {tree}  ({len(files)} files)"]
    commit = rec.source.get("commit")
    if commit and rec.source.get("dirty"):
        out.append(f"  differs from {str(commit)[:10]}; see `git diff {str(commit)[:10]} {tree[:10]}`")
    out += [f"  {f}" for f in files[:200]]
    if len(files) > 200:
        out.append(f"  … {len(files) - 200} more")
    return out


# ---------------------------------------------------------------- table / exports


def format_table(recs: Sequence[Record], *, columns: str | None, sort_by: str | None, fmt: str) -> str:
    rows = [tables.row(r) for r in recs]
    names = tables.select(rows, [columns] if columns else None, recs) if rows else ["id", "name"]
    if sort_by:
        key = sort_by.lstrip("-")
        if rows and key not in names and not any(key in r for r in rows):
            raise UsageError(f"no column {key!r} to sort by", f"choose one of: {', '.join(names[:12])}")
        present = [r for r in rows if r.get(key) is not None]
        missing = [r for r in rows if r.get(key) is None]
        present.sort(key=lambda r: (isinstance(r[key], str), r[key]), reverse=sort_by.startswith("-"))
        rows = present + missing
    if fmt == "json":
        from gitxp.review import jsonview

        return jsonview.dumps([{n: r.get(n) for n in names} for r in rows])
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(names)
        for r in rows:
            w.writerow(["" if r.get(n) is None else r.get(n) for n in names])
        return buf.getvalue()
    if fmt == "markdown":
        head = "| " + " | ".join(names) + " |"
        sep = "|" + "|".join("---" for _ in names) + "|"
        body = ["| " + " | ".join(render.fmt_value(r.get(n)).replace("|", "\\|") for n in names) + " |" for r in rows]
        return "\n".join([head, sep, *body])
    cols: list[list[Any]] = []  # column by column: 20,000 rows are not copied into another 20,000 dicts
    for n in names:
        col: list[Any] = list(map(dict.get, rows, repeat(n)))  # a C loop: 340,000 cells
        if n == "id":
            col = [short(v) for v in col]
        elif str in set(map(type, col)) and any(v.__class__ is str and len(v) >= 32 for v in col):
            col = [_short_hex(v) for v in col]
        cols.append(col)
    return render.text_columns(names, cols, max_width=render.terminal_width() if render.isatty() else None)


_LONG_HEX = re.compile(r"[0-9a-f]{32,}")


def _short_hex(value: Any) -> Any:
    """A digest (``tags.sweep_key``) as its first 12 digits and ``…``: a terminal table, not an export."""
    if isinstance(value, str) and len(value) >= 32 and _LONG_HEX.fullmatch(value):
        return value[:12] + "…"
    return value


def emit(text: str, output: str | None, *, paged: bool = False) -> None:
    """Write to ``output``, or to stdout with escape sequences of stored strings removed."""
    if output:
        Path(output).write_text(text if text.endswith("\n") else text + "\n")
    elif paged:
        render.page(text)
    else:
        text = render.clean(text, multiline=True, keep_style=True)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def export_metrics(rec: Record, fmt: str, output: str | None) -> None:
    export_log(rec.metrics(), fmt, output)


def export_log(t: Any, fmt: str, output: str | None) -> None:
    """A long table (a metric log, or ``id, name, metric, ...`` histories) as csv, json or Parquet.

    Timestamps are ISO 8601 UTC in csv/json; NaN and infinities are null in
    json (JSON has none; csv and Parquet keep them).
    """
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if output is None:
            if render.isatty():
                raise UsageError("refusing to write Parquet to a terminal", "add -o FILE.parquet")
            pq.write_table(t, sys.stdout.buffer)
        else:
            pq.write_table(t, output)
        return
    names = t.column_names
    rows = t.to_pylist()
    for r in rows:
        ts = r.get("timestamp")
        if ts is not None and hasattr(ts, "isoformat"):
            r["timestamp"] = ts.isoformat().replace("+00:00", "Z")
    if fmt == "json":
        from gitxp.review import jsonview

        text = jsonview.dumps(rows)
    else:
        import csv
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, names, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        text = buf.getvalue()
    emit(text, output)
