"""Text for people: colours, escape stripping, sparklines, numbers, durations, aligned tables.

Pure string formatting shared by the library and the CLI; the terminal side
(pager, width) lives in ``gitxp.cli.render``."""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

SPARK = "▁▂▃▄▅▆▇█"
_STATUS_COLOURS = {"completed": "green", "failed": "red", "crashed": "red", "interrupted": "yellow", "running": "cyan", "damaged": "magenta"}


def isatty(stream: TextIO | None = None) -> bool:
    s = stream or sys.stdout
    try:
        return s.isatty()
    except (AttributeError, ValueError):
        return False


def use_colour(stream: TextIO | None = None) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("CLICOLOR_FORCE") or os.environ.get("FORCE_COLOR"):
        return True
    return isatty(stream) and os.environ.get("TERM") != "dumb"


_CODES = {"red": 31, "green": 32, "yellow": 33, "blue": 34, "magenta": 35, "cyan": 36, "bold": 1, "dim": 2}

# ECMA-48 escape sequences: CSI (cursor moves, erase, colours), the string
# commands OSC/DCS/SOS/PM/APC up to their terminator (window titles,
# hyperlinks, clipboard writes), other two-character escapes, and their 8-bit
# forms. Stored strings may come from anyone who can push to a remote.
_ESCAPE_RE = re.compile(
    "\x1b\\[[0-?]*[ -/]*[@-~]?"
    "|\x1b[\\]PX^_].*?(?:\x07|\x1b\\\\|\x9c|\\Z)"
    "|\x1b[ -/]*[0-~]?"
    "|\x9b[0-?]*[ -/]*[@-~]?"
    "|[\x90\x98\x9d\x9e\x9f].*?(?:\x07|\x1b\\\\|\x9c|\\Z)",
    re.S,
)
_OWN_STYLE_RE = re.compile("(\x1b\\[(?:0|%s)m)" % "|".join(str(c) for c in _CODES.values()))


def clean(text: str, *, multiline: bool = False, keep_style: bool = False) -> str:
    """A stored string made safe to print on a terminal: escape sequences and control characters removed.

    The one helper every view uses (``fmt_value``, ``page`` and ``emit``
    apply it), so a name or an ``output.log`` pulled from someone else can
    neither drive the terminal (titles, hyperlinks, cursor moves, clearing)
    nor fake lines. One line: newlines and tabs become spaces. ``multiline``
    keeps newlines and tabs (``\\r`` becomes a newline). ``keep_style``
    keeps the colour codes :func:`style` writes, for whole pages built here.
    """
    if text.isprintable():
        return text  # the usual case, in C: every character removed below is non-printable (Cc, Cf, Zl, Zp, Cs)
    if multiline and text.replace("\n", "").isprintable():
        return text  # a page of clean lines (a table of 20,000 rows: 4 MB the regexes below took 0.1 s over)
    from gitxp.store.layout import CONTROL_MULTILINE_RE, CONTROL_RE

    if keep_style:
        return "".join(part if i % 2 else clean(part, multiline=multiline) for i, part in enumerate(_OWN_STYLE_RE.split(text)))
    text = _ESCAPE_RE.sub("", text)
    if multiline:
        return CONTROL_MULTILINE_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return CONTROL_RE.sub("", text.replace("\n", " ").replace("\t", " ").replace("\r", " "))


def style(text: str, colour: str | None, enabled: bool) -> str:
    if not enabled or not colour:
        return text
    return f"\x1b[{_CODES[colour]}m{text}\x1b[0m"


def status_colour(status: str) -> str | None:
    return _STATUS_COLOURS.get(status)


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """Unicode sparkline of a series, downsampled to ``width`` buckets (means); NaN shows as a space."""
    vals = [float(v) for v in values]
    if not vals:
        return ""
    if len(vals) > width:
        step = len(vals) / width
        buckets = []
        for i in range(width):
            chunk = [v for v in vals[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)] if math.isfinite(v)]
            buckets.append(sum(chunk) / len(chunk) if chunk else float("nan"))
        vals = buckets
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return " " * len(vals)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    out = []
    for v in vals:
        if not math.isfinite(v):
            out.append(" ")
        elif span == 0:
            out.append(SPARK[3])
        else:
            out.append(SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1) + 0.5))])
    return "".join(out)


def fmt_value(v: Any) -> str:
    """Numbers short and readable (4 significant digits), everything else as text."""
    if v is None:
        return "-"
    if v.__class__ is str:
        return clean(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"  # nan, inf and -inf as they are spelled
    return clean(v if isinstance(v, str) else str(v))


def fmt_size(n: int) -> str:
    """Bytes in binary units: ``3 B``, ``20.1 KiB``, ``2.9 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def fmt_duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def text_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, max_width: int | None = None) -> str:
    """Columns aligned (numbers right), trimmed to the terminal width from the right.

    Column by column (a table of 20,000 experiments has 340,000 cells): a
    column of numbers is known to be numeric from its values, and each line
    is one ``str.format`` of a template built once.
    """
    raw = [list(r) for r in rows]
    return text_columns(headers, list(zip(*raw)) if raw else [() for _ in headers], max_width=max_width)


def text_columns(headers: Sequence[str], columns: Sequence[Sequence[Any]], *, max_width: int | None = None) -> str:
    """:func:`text_table` of a table given as its columns (one per header, all as long), as a big one is built."""
    formatted = [_formatted(col) for col in columns]
    cells = [f[0] for f in formatted]
    numeric = [f[1] for f in formatted]
    widths = [max(len(h), max(map(len, col), default=0)) for h, col in zip(headers, cells)]
    keep = len(widths)
    if max_width:
        total, keep = 0, 0
        for w in widths:
            if total + w + (2 if keep else 0) > max_width and keep >= 2:
                break
            total += w + (2 if keep else 0)
            keep += 1
    template = "  ".join(("{:%s%d}" % (">" if n else "<", w)) if w else "{}" for w, n in zip(widths[:keep], numeric[:keep]))
    return "\n".join([template.format(*list(headers)[:keep]).rstrip()] + [template.format(*r).rstrip() for r in zip(*cells[:keep])])


_NUMBER_CLASSES = frozenset({int, float})


def _formatted(column: Sequence[Any]) -> tuple[list[str], bool]:
    """:func:`fmt_value` of every value, and whether the column is numeric (right-aligned).

    A column of one plain type, the usual case, takes no test per value:
    floats (4 significant digits), ints (their digits), or text that is
    printable as a whole. A column is numeric when all its values are
    numbers or missing, or when all its texts read as numbers.
    """
    kinds = set(map(type, column))
    kinds.discard(type(None))
    if kinds == {float}:
        cells = ["-" if v is None else f"{v:.4g}" for v in column]
    elif kinds == {int}:
        cells = ["-" if v is None else str(v) for v in column]
    elif kinds == {str} and "".join([v for v in column if v is not None]).isprintable():
        cells = ["-" if v is None else v for v in column]
    else:
        cells = ["-" if v is None else f"{v:.4g}" if v.__class__ is float else clean(v) if v.__class__ is str else fmt_value(v) for v in column]
    return cells, bool(column) and (kinds <= _NUMBER_CLASSES or all(_is_num(c) or c == "-" for c in cells))


def _is_num(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return s in ("nan", "inf", "-inf")
