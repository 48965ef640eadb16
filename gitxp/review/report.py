"""The review report: experiments side by side against a baseline, for a pull request.

``gitxp report`` gathers its data once (:func:`build_report`) and writes it
as markdown (tables plus a Mermaid ``xychart``) or as one self-contained
HTML file (tables, the inline SVG of :mod:`gitxp.review.charts` and the code
diff). Laying out a report is a concern of its own, on top of the
comparisons in :mod:`gitxp.review.diff` and the drawing in :mod:`gitxp.review.charts`;
both formats share the rows built here, so they always show the same numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gitxp import text as render
from gitxp.review.charts import colour, curves, svg_chart
from gitxp.review.diff import (
    FileDiff,
    code_diff,
    command_line,
    delta,
    diff_line_kind,
    flat_params,
    format_code_diff,
    format_stat,
    get_all,
    label,
    main_metric,
    metric_names,
    same_value,
    series,
    short,
    source_line,
    unknown_metric,
)

if TYPE_CHECKING:
    from gitxp.store.record import Record
    from gitxp.store.store import Store


@dataclass
class Report:
    """The data of a review report; ``recs[0]`` is the baseline when there is one."""

    recs: list[Record]
    baseline: Record | None
    metric: str | None
    code: dict[str, list[FileDiff] | None]  # experiment id → changes against the baseline's code
    log_y: bool = False  # charts on a log-scale y axis


def build_report(store: Store, refs: Sequence[str], *, baseline: str | None = None, metric: str | None = None,
                 log_y: bool = False) -> Report:
    """Resolve the experiments and compare them against the baseline.

    The baseline is ``baseline`` when given, else the first REF when there
    are several; a single REF without ``--baseline`` is reported on its own,
    without deltas. The baseline is always the first column.
    """
    recs = get_all(store, refs)
    base = store.get(baseline) if baseline else (recs[0] if len(recs) > 1 else None)
    if base is not None:
        recs = [base] + [r for r in recs if r.id != base.id]
    if metric is not None and metric not in metric_names(recs):
        raise unknown_metric(metric, recs)
    code: dict[str, list[FileDiff] | None] = {}
    if base is not None:
        for r in recs[1:]:
            ta, tb = base.code_tree, r.code_tree
            code[r.id] = None if ta is None or tb is None else code_diff(store.repo, ta, tb)
    return Report(recs, base, metric or main_metric(recs), code, log_y)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _headers(rep: Report, *, md: bool) -> list[str]:
    out = []
    for r in rep.recs:
        tag = " (baseline)" if r is rep.baseline else ""
        out.append(f"`{r.id}`{tag}" if md else f"{r.id}{tag}")
    return out


def _rows(rep: Report) -> dict[str, list[list[tuple[str, bool]]]]:
    """Table rows as (text, emphasised) cells, shared by markdown and HTML."""
    base = rep.baseline
    overview = [
        [("name", False)] + [(r.name or "-", False) for r in rep.recs],
        [("status", False)] + [(r.status, False) for r in rep.recs],
        [("duration", False)] + [(render.fmt_duration(r.meta.get("duration_s")), False) for r in rep.recs],
        [("source", False)] + [(source_line(r), False) for r in rep.recs],
        [("command", False)] + [(command_line(r), base is not None and r is not base and command_line(r) != command_line(base))
                                 for r in rep.recs],
    ]
    metrics = []
    for name in metric_names(rep.recs):
        row = [(name, False)]
        b = (base.metric_summary.get(name) or {}).get("last") if base is not None else None
        for r in rep.recs:
            v = (r.metric_summary.get(name) or {}).get("last")
            text = render.fmt_value(v)
            if base is not None and r is not base and v is not None:
                d, rel = delta(b, v)
                text += f" ({d}, {rel})" if d != "-" else ""
            row.append((text, False))
        metrics.append(row)
    flat = [flat_params(r) for r in rep.recs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    params = []
    for k in keys:
        ref = flat[0].get(k, "<missing>") if base is not None else None
        params.append([(k, False)] + [(render.fmt_value(f.get(k)), base is not None and i > 0 and not same_value(f.get(k, "<missing>"), ref)) for i, f in enumerate(flat)])
    return {"overview": overview, "metrics": metrics, "params": params}


def _title(rep: Report) -> str:
    others = [label(r) for r in rep.recs if r is not rep.baseline]
    return f"Experiment report: {', '.join(others)}" + (f" vs baseline {label(rep.baseline)}" if rep.baseline else "")


def _md_table(first: str, headers: list[str], rows: list[list[tuple[str, bool]]]) -> list[str]:
    out = ["| " + " | ".join([first, *headers]) + " |", "|---" + "|---:" * len(headers) + "|"]
    for row in rows:
        out.append("| " + " | ".join(f"**{_cell(t)}**" if em else _cell(t) for t, em in row) + " |")
    return out


def mermaid_chart(rep: Report, points: int = 50) -> list[str]:
    """```` ```mermaid ```` ``xychart-beta`` blocks of the report's metric, each curve over its own steps.

    Mermaid lines share their x positions, so curves are grouped by the
    steps they span and each group is one chart (a run of 327 steps is
    never stretched flat to another's 457); every chart has the same y
    range, so they still compare. Within a chart each curve is interpolated
    linearly onto at most ``points`` evenly spaced steps. A metric logged
    once is a bar (a one-point line draws nothing). With ``log_y`` values
    are drawn as log10 (Mermaid has no log axis) and the axis says so.
    Colours match the HTML/SVG charts.
    """
    import bisect
    import math

    m = rep.metric
    if m is None:
        return []
    lines = [(i, r, series(r, m)) for i, r in enumerate(rep.recs)]
    if rep.log_y:
        lines = [(i, r, [(x, math.log10(y)) for x, y in pts if y > 0]) for i, r, pts in lines]
    lines = [(i, r, pts) for i, r, pts in lines if pts]
    if not lines:
        return []
    title = re.sub(r'["\n]', "", m)
    y_title = f"log10({title})" if rep.log_y else title
    ys = [y for _, _, pts in lines for _, y in pts]
    ylo, yhi = min(ys), max(ys)
    if ylo == yhi:
        ylo, yhi = ylo - (abs(ylo) * 0.05 or 1.0), yhi + (abs(yhi) * 0.05 or 1.0)
    groups: dict[tuple[float, float], list[tuple[int, Record, list[tuple[float, float]]]]] = {}
    for item in lines:
        groups.setdefault((item[2][0][0], item[2][-1][0]), []).append(item)
    out: list[str] = []
    for (lo, hi), members in groups.items():
        palette = ", ".join(colour(i) for i, _, _ in members)
        if out:
            out.append("")
        out += ["```mermaid", '%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "' + palette + '"}}}}%%',
                "xychart-beta", f'    title "{title}"']
        if lo == hi:  # one step: a bar per experiment
            out += [f'    x-axis "step" [{lo:g}]', f'    y-axis "{y_title}" {ylo:.6g} --> {yhi:.6g}']
            out += [f"    bar [{pts[-1][1]:.6g}]" for _, _, pts in members]
        else:
            xs = sorted({x for _, _, pts in members for x, _ in pts})
            n = max(2, min(points, len(xs)))
            grid = [lo + (hi - lo) * k / (n - 1) for k in range(n)]
            out += [f'    x-axis "step" {lo:g} --> {hi:g}', f'    y-axis "{y_title}" {ylo:.6g} --> {yhi:.6g}']
            for _, _, pts in members:
                px, py = [x for x, _ in pts], [y for _, y in pts]
                vals = []
                for g in grid:
                    k = bisect.bisect_left(px, g)
                    if k == 0 or k >= len(px):
                        vals.append(py[min(k, len(px) - 1)])
                    else:
                        f = (g - px[k - 1]) / (px[k] - px[k - 1])
                        vals.append(py[k - 1] + f * (py[k] - py[k - 1]))
                out.append("    line [" + ", ".join(f"{v:.6g}" for v in vals) + "]")
        out.append("```")
        span = "" if len(groups) == 1 else f" (steps {lo:g}–{hi:g})"
        out.append("Lines" + span + ": " + "; ".join(f"{colour(i)} `{label(r)}`" for i, r, _ in members))
    return out


def report_markdown(rep: Report) -> str:
    """Markdown ready to paste into a pull request description."""
    rows, heads = _rows(rep), _headers(rep, md=True)
    out = [f"## {_title(rep)}", ""] + _md_table("", heads, rows["overview"])
    if rows["metrics"]:
        out += ["", "### Metrics", "", "Last values" + ("; in brackets the change against the baseline." if rep.baseline else "."), ""]
        out += _md_table("metric", heads, rows["metrics"])
    chart = mermaid_chart(rep)
    if chart:
        out += ["", f"### `{rep.metric}`", ""] + chart
    if rows["params"]:
        out += ["", "### Params", ""] + (["Values that differ from the baseline are in bold.", ""] if rep.baseline else [])
        out += _md_table("param", heads, rows["params"])
    if rep.baseline is not None:
        out += ["", f"### Code against the baseline `{short(rep.baseline.id)}`", ""]
        for r in rep.recs[1:]:
            diffs = rep.code.get(r.id)
            if diffs is None:
                out.append(f"- `{label(r)}`: no code snapshot to compare")
                continue
            out.append(f"- `{label(r)}`: {format_stat(diffs)}")
            out += [f"  - `{d.path}` {d.status}" + (" (binary)" if d.binary else f" +{d.insertions} -{d.deletions}") for d in diffs[:30]]
            if len(diffs) > 30:
                out.append(f"  - … {len(diffs) - 30} more files")
    out += ["", f"<sub>Generated by gitxp. Browse with `gitxp show {short(rep.recs[0].id)}`.</sub>"]
    return "\n".join(out) + "\n"


_CSS = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:22px 0 8px}
table{border-collapse:collapse;font-size:13px;margin:4px 0}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f6f8fa}td.em{font-weight:bold;background:#fff8c5}
code,pre{font-family:SFMono-Regular,Consolas,monospace;font-size:12px}pre{background:#f6f8fa;padding:8px;overflow:auto}
.add{color:#1a7f37}.del{color:#cf222e}.hunk{color:#0969da}.note{color:#666;font-size:12px}"""

#: CSS class of each kind of diff line (file headers stay plain).
_DIFF_CLASS = {"hunk": "hunk", "add": "add", "del": "del"}


def _css_class(text: str, em: bool) -> str:
    num = bool(re.match(r"^[-+]?(\d|\.\d|inf|nan)", text))
    return " ".join(c for c, on in (("num", num), ("em", em)) if on)


def report_html(rep: Report) -> str:
    """One self-contained HTML file: inline CSS and SVG, no scripts, no external resources."""
    from html import escape

    rows, heads = _rows(rep), _headers(rep, md=False)

    def table(first: str, body: list[list[tuple[str, bool]]]) -> str:
        head = "".join(f"<th>{escape(h)}</th>" for h in [first, *heads])
        trs = "".join("<tr>" + "".join(f'<td class="{_css_class(t, em)}">{escape(t)}</td>' for t, em in row) + "</tr>" for row in body)
        return f"<table><tr>{head}</tr>{trs}</table>"

    title = _title(rep)
    parts = [f"<h1>{escape(title)}</h1>", table("", rows["overview"])]
    if rows["metrics"]:
        parts += ["<h2>Metrics</h2>", table("metric", rows["metrics"])]
    names = [n for n in [rep.metric, *metric_names(rep.recs)] if n][:4]
    names = list(dict.fromkeys(names))
    panels = [(n, lines) for n in names for lines in [curves(rep.recs, n)] if any(p for _, p in lines)]
    if panels:
        parts += ["<h2>Charts</h2>", svg_chart(panels, width=900, height=300, log_y=rep.log_y)]
    if rows["params"]:
        parts += ["<h2>Params</h2>", table("param", rows["params"])]
        if rep.baseline:
            parts.append('<p class="note">Highlighted values differ from the baseline.</p>')
    if rep.baseline is not None:
        parts.append(f"<h2>Code against the baseline {escape(short(rep.baseline.id))}</h2>")
        for r in rep.recs[1:]:
            diffs = rep.code.get(r.id)
            stat = "no code snapshot to compare" if diffs is None else format_stat(diffs)
            parts.append(f"<p><code>{escape(label(r))}</code>: {escape(stat)}</p>")
            if diffs:
                text = format_code_diff(diffs).splitlines()[:3000]
                cls = [_DIFF_CLASS.get(diff_line_kind(ln), "") for ln in text]
                body = "\n".join(f'<span class="{c}">{escape(ln)}</span>' if c else escape(ln) for ln, c in zip(text, cls))
                parts.append(f"<details><summary>diff</summary><pre>{body}</pre></details>")
    parts.append('<p class="note">Generated by gitxp.</p>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
