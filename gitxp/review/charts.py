"""Metric charts: the SVG writer behind ``gitxp plot`` and the HTML report.

Drawing is its own concern, apart from comparing experiments
(:mod:`gitxp.review.diff`) and laying out a report (:mod:`gitxp.review.report`): the
palette, tick placement, downsampling and the hand-written SVG live here,
so ``plot`` and the HTML report draw the same chart in the same colours.
SVG needs no plotting library; PNG goes through matplotlib, imported only
when a PNG is asked for.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gitxp.errors import GitxpError, UsageError
from gitxp.review.diff import label, metric_names, series, unknown_metric

if TYPE_CHECKING:
    from gitxp.store.record import Record

#: Series colours; the first (baseline) is a red that nothing else on the page uses.
PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")

Panel = tuple[str, list[tuple[str, list[tuple[float, float]]]]]  # (metric, [(legend label, points)])


def colour(i: int) -> str:
    """The colour of the ``i``-th series (the palette repeats past its end)."""
    return PALETTE[i % len(PALETTE)]


def legend(panels: Sequence[Panel]) -> dict[str, str]:
    """Legend label → colour, in first-seen order, the same in every panel."""
    labels = dict.fromkeys(lab for _, lines in panels for lab, _ in lines)
    return {lab: colour(i) for i, lab in enumerate(labels)}


def curves(recs: Sequence[Record], metric: str) -> list[tuple[str, list[tuple[float, float]]]]:
    """One ``(legend label, points)`` per experiment: a panel's lines."""
    return [(label(r), series(r, metric)) for r in recs]


def downsample(points: Sequence[tuple[float, float]], limit: int = 2000) -> list[tuple[float, float]]:
    """At most ``limit`` points, keeping each bucket's min and max so spikes stay visible."""
    n = len(points)
    if n <= limit:
        return list(points)
    buckets = max(1, limit // 2)
    out: list[tuple[float, float]] = []
    for i in range(buckets):
        chunk = points[i * n // buckets : (i + 1) * n // buckets]
        if not chunk:
            continue
        lo = min(chunk, key=lambda p: p[1])
        hi = max(chunk, key=lambda p: p[1])
        out.extend(sorted({lo, hi}, key=lambda p: p[0]))
    return out


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 × 10^k) covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if (hi - lo) / (m * mag) <= n)
    first = math.ceil(lo / step - 1e-9)
    return [round(k * step, 12) for k in range(first, math.floor(hi / step + 1e-9) + 1)]


def _tick_label(v: float) -> str:
    return f"{v:.4g}" if v != 0 else "0"


def _padded(lo: float, hi: float) -> tuple[float, float]:
    if hi == lo:
        pad = abs(lo) * 0.05 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis, as exponents: whole decades, or 1-2-5 steps when the range is under two decades."""
    decades = list(range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1))
    if len(decades) >= 3:
        step = max(1, math.ceil(len(decades) / 8))
        return [float(d) for d in decades[::step]]
    out = [math.log10(m * 10.0**d) for d in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in (1, 2, 5)]
    return [t for t in out if lo - 1e-9 <= t <= hi + 1e-9] or [lo]


def logged(panels: Sequence[Panel]) -> tuple[list[Panel], int]:
    """``panels`` for a log y axis: values as log10, non-positive ones dropped (and counted)."""
    dropped = 0
    out: list[Panel] = []
    for metric, lines in panels:
        new_lines = []
        for lab, pts in lines:
            keep = [(x, math.log10(y)) for x, y in pts if y > 0]
            dropped += len(pts) - len(keep)
            new_lines.append((lab, keep))
        out.append((metric, new_lines))
    return out, dropped


def svg_chart(panels: Sequence[Panel], *, width: int = 800, height: int = 320, x_label: str = "step", log_y: bool = False) -> str:
    """A standalone SVG: one panel per metric, one polyline per experiment, a shared legend.

    Written by hand (no plotting library needed); points are downsampled to
    at most 2000 per line. Colours follow the legend order in every panel.
    A series of one point (a final accuracy) is drawn as a marker, which a
    polyline of one point would not show. ``log_y`` draws the y axis on a
    log scale (values <= 0 cannot be drawn there and are left out).
    """
    from html import escape

    if log_y:
        panels, _ = logged(panels)

    left, right, top, bottom = 72, 20, 30, 42
    colours = legend(panels)
    labels = list(colours)
    per_row = max(1, (width - 20) // 260)
    legend_h = 14 + 20 * math.ceil(len(labels) / per_row)
    total_h = height * len(panels) + legend_h
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" viewBox="0 0 {width} {total_h}" font-family="sans-serif" font-size="12">',
        f'<rect x="0" y="0" width="{width}" height="{total_h}" fill="#ffffff"/>',
    ]
    for i, lab in enumerate(labels):  # the legend on top, where it is seen before scrolling
        lx, ly = 20 + (i % per_row) * 260, 8 + (i // per_row) * 20
        out.append(f'<rect x="{lx}" y="{ly + 5}" width="14" height="4" fill="{colours[lab]}"/>')
        out.append(f'<text x="{lx + 20}" y="{ly + 11}" fill="#222">{escape(lab[:36])}</text>')
    for p, (metric, lines) in enumerate(panels):
        y0 = legend_h + p * height
        pw, ph = width - left - right, height - top - bottom
        pts_all = [pt for _, pts in lines for pt in pts]
        xlo, xhi = _padded(min(x for x, _ in pts_all), max(x for x, _ in pts_all)) if pts_all else (0.0, 1.0)
        ylo, yhi = _padded(min(y for _, y in pts_all), max(y for _, y in pts_all)) if pts_all else (0.0, 1.0)

        def sx(x: float) -> float:
            return left + (x - xlo) / (xhi - xlo) * pw

        def sy(y: float) -> float:
            return y0 + top + ph - (y - ylo) / (yhi - ylo) * ph

        out.append(f'<g class="panel" data-metric="{escape(metric)}">')
        out.append(f'<text x="{left}" y="{y0 + 20}" font-size="14" font-weight="bold" fill="#222">{escape(metric)}{" (log scale)" if log_y else ""}</text>')
        for t in log_ticks(ylo, yhi) if log_y else nice_ticks(ylo, yhi):
            y = sy(t)
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e5e5e5"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#444">{_tick_label(10**t if log_y else t)}</text>')
        for t in nice_ticks(xlo, xhi):
            x = sx(t)
            out.append(f'<line x1="{x:.1f}" y1="{y0 + top + ph}" x2="{x:.1f}" y2="{y0 + top + ph + 5}" stroke="#444"/>')
            out.append(f'<text x="{x:.1f}" y="{y0 + top + ph + 18}" text-anchor="middle" fill="#444">{_tick_label(t)}</text>')
        out.append(f'<rect x="{left}" y="{y0 + top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
        out.append(f'<text x="{left + pw / 2:.1f}" y="{y0 + height - 6}" text-anchor="middle" fill="#444">{escape(x_label)}</text>')
        for lab, pts in lines:
            if not pts:
                continue
            if len(pts) == 1:
                (mx, my), = pts
                out.append(f'<circle class="marker" cx="{sx(mx):.2f}" cy="{sy(my):.2f}" r="5" fill="{colours[lab]}"><title>{escape(lab)}: {_tick_label(10**my if log_y else my)} at step {mx:g}</title></circle>')
                continue
            coords = " ".join(f"{sx(x):.2f},{sy(y):.2f}" for x, y in downsample(pts))
            out.append(f'<polyline fill="none" stroke="{colours[lab]}" stroke-width="2.5" stroke-linejoin="round" points="{coords}"><title>{escape(lab)}</title></polyline>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


def chart_panels(recs: Sequence[Record], metrics: Sequence[str]) -> list[Panel]:
    """Panels for ``metrics`` over ``recs``; refuses a metric no experiment logged."""
    panels: list[Panel] = []
    for m in metrics:
        lines = curves(recs, m)
        if not any(pts for _, pts in lines):
            if m in metric_names(recs):
                raise UsageError(f"metric {m!r} has no finite values to draw", "see `gitxp metrics REF`")
            raise unknown_metric(m, recs)
        panels.append((m, lines))
    return panels


def plot(recs: Sequence[Record], metrics: Sequence[str], output: str | os.PathLike[str], *, log_y: bool = False) -> Path:
    """Write the curves of ``metrics`` to ``output`` (``.svg`` always; ``.png`` through matplotlib).

    ``log_y``: a log-scale y axis; a metric with no positive value is refused.
    """
    out = Path(output)
    suffix = out.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise UsageError(f"cannot tell the chart format of {out.name!r}", "end the file name in .svg or .png")
    panels = chart_panels(recs, metrics)
    if log_y:
        for metric, lines in logged(panels)[0]:
            if not any(pts for _, pts in lines):
                raise UsageError(f"metric {metric!r} has no positive value to draw on a log scale", "drop --log-y")
    if suffix == ".svg":
        out.write_text(svg_chart(panels, log_y=log_y), encoding="utf-8")
        return out
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GitxpError("writing PNG needs matplotlib, which is not installed", "pip install 'gitxp[plot]', or write an .svg instead") from None
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)), squeeze=False)
    colours = legend(panels)
    for ax, (metric, lines) in zip(axes[:, 0], panels):
        for lab, pts in lines:
            if log_y:
                pts = [(x, y) for x, y in pts if y > 0]
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], label=lab, color=colours[lab], marker="o" if len(pts) == 1 else None)
        if log_y:
            ax.set_yscale("log")
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
