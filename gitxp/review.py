"""Reviewing results: diff two experiments, build a report, check code out.

Everything here reads stored experiments (:class:`gitxp.store.Record`) and
returns text or plain data; :mod:`gitxp.cli_review` only picks options and
prints. The pieces are shared: the metric deltas and code tree diffs of
``diff`` are what ``report`` tabulates, and the SVG charts of ``plot`` are
what the HTML report inlines, so a reviewer sees the same numbers everywhere.
Nothing here touches the user's HEAD, index or work tree.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import render, tables
from .errors import GitxpError, UsageError
from .plumbing import GITLINK_MODE, TREE_MODE, Entry

#: Text files larger than this are summarised, not diffed line by line
#: (difflib is quadratic in the worst case).
MAX_DIFF_BYTES = 1 << 20


def short(exp_id: str) -> str:
    """The random part's first 8 hex digits: what listings show and a valid ref."""
    return exp_id.rsplit("-", 1)[-1][:8]


def label(rec: Any) -> str:
    """``a3f9c2d8 train``: how an experiment is named in legends and headers."""
    return f"{short(rec.id)} {rec.name}".strip()


# ---------------------------------------------------------------- params and metrics


def flat_params(rec: Any) -> dict[str, Any]:
    """Params as dotted keys (``optim.lr``), the way users type them with ``-p``."""
    out: dict[str, Any] = {}
    tables.flatten("", dict(rec.params), out)
    return {k.lstrip("."): v for k, v in out.items() if k}


def param_changes(a: Any, b: Any) -> dict[str, list[tuple[str, Any, Any]]]:
    """``{"changed": [(key, a, b)], "added": [(key, None, b)], "removed": [(key, a, None)]}`` sorted by key."""
    pa, pb = flat_params(a), flat_params(b)
    return {
        "changed": [(k, pa[k], pb[k]) for k in sorted(pa.keys() & pb.keys()) if not _same(pa[k], pb[k])],
        "added": [(k, None, pb[k]) for k in sorted(pb.keys() - pa.keys())],
        "removed": [(k, pa[k], None) for k in sorted(pa.keys() - pb.keys())],
        "same": [(k, pa[k], pb[k]) for k in sorted(pa.keys() & pb.keys()) if _same(pa[k], pb[k])],
    }


def _same(x: Any, y: Any) -> bool:
    # 1 == 1.0 == True in Python; a param changing from 1 to True is a change.
    return type(x) is type(y) and x == y


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def delta(base: Any, value: Any) -> tuple[str, str]:
    """``("+0.012", "+1.3%")`` from ``base`` to ``value``; ``"-"`` where it cannot be said."""
    a, b = _num(base), _num(value)
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return "-", "-"
    d = b - a
    rel = f"{100 * d / abs(a):+.1f}%" if a != 0 else "-"
    return f"{d:+.4g}", rel


def metric_names(recs: Sequence[Any]) -> list[str]:
    """Every metric of any experiment, in first-seen order."""
    seen: dict[str, None] = {}
    for r in recs:
        for n in r.metric_summary:
            seen.setdefault(str(n), None)
    return list(seen)


def main_metric(recs: Sequence[Any]) -> str | None:
    """The metric most experiments share (ties: first seen); what charts show by default."""
    names = metric_names(recs)
    if not names:
        return None
    return max(names, key=lambda n: (sum(n in r.metric_summary for r in recs), -names.index(n)))


_TABLES: dict[tuple[str, str], Any] = {}


def series(rec: Any, metric: str) -> list[tuple[float, float]]:
    """``(step, value)`` of one metric, sorted by step; non-finite values dropped (they cannot be drawn)."""
    key = (rec.id, rec.tree)
    t = _TABLES.get(key)
    if t is None:
        t = _TABLES[key] = rec.metrics()
        while len(_TABLES) > 16:  # a report reads each log once per metric; keep only a few
            del _TABLES[next(iter(_TABLES))]
    if t.num_rows == 0:
        return []
    import pyarrow.compute as pc

    t = t.filter(pc.equal(t.column("name").cast("string"), metric))
    steps = t.column("step").to_pylist()
    values = t.column("value").to_pylist()
    pts = [(float(s), float(v)) for s, v in zip(steps, values) if v is not None and math.isfinite(v)]
    pts.sort(key=lambda p: p[0])
    return pts


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


# ---------------------------------------------------------------- code diffs


@dataclass
class FileDiff:
    """One changed path between two code snapshots."""

    path: str
    status: str  # "added", "removed", "modified", "mode"
    old: Entry | None
    new: Entry | None
    binary: bool = False
    lines: list[str] = field(default_factory=list)  # the unified diff body, without the git header
    insertions: int = 0
    deletions: int = 0


def _walk_changes(repo: Any, a: str | None, b: str | None, prefix: str = "") -> Iterator[tuple[str, Entry | None, Entry | None]]:
    """Paths whose entries differ; equal subtrees are skipped by id, so a big tree with few edits is cheap."""
    if a == b:
        return
    ea = {e.name: e for e in repo.read_tree(a)} if a else {}
    eb = {e.name: e for e in repo.read_tree(b)} if b else {}
    for name in sorted(ea.keys() | eb.keys()):
        x, y = ea.get(name), eb.get(name)
        if x is not None and y is not None and x.sha == y.sha and x.mode == y.mode:
            continue
        path = prefix + name
        xt = x is not None and x.mode == TREE_MODE
        yt = y is not None and y.mode == TREE_MODE
        if xt or yt:
            yield from _walk_changes(repo, x.sha if xt else None, y.sha if yt else None, path + "/")
        if (x is not None and not xt) or (y is not None and not yt):
            yield path, None if xt else x, None if yt else y


def _content(repo: Any, e: Entry | None) -> bytes:
    if e is None:
        return b""
    if e.mode == GITLINK_MODE:
        return f"Subproject commit {e.sha}\n".encode()
    return repo.read_blob(e.sha)


def _is_binary(data: bytes) -> bool:
    if b"\0" in data[:8000]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def code_diff(repo: Any, a: str | None, b: str | None, *, context: int = 3) -> list[FileDiff]:
    """File-by-file changes from tree ``a`` to tree ``b`` (either may be None: no snapshot)."""
    out: list[FileDiff] = []
    for path, x, y in _walk_changes(repo, a, b):
        status = "added" if x is None else "removed" if y is None else "modified" if x.sha != y.sha else "mode"
        fd = FileDiff(path, status, x, y)
        out.append(fd)
        if status == "mode":
            continue
        da, db = _content(repo, x), _content(repo, y)
        if _is_binary(da) or _is_binary(db) or len(da) + len(db) > 2 * MAX_DIFF_BYTES:
            fd.binary = True
            continue
        la = da.decode("utf-8").splitlines(keepends=True)
        lb = db.decode("utf-8").splitlines(keepends=True)
        body = list(difflib.unified_diff(la, lb, "/dev/null" if x is None else f"a/{path}", "/dev/null" if y is None else f"b/{path}", n=context))
        for line in body[2:]:
            if line.startswith("+"):
                fd.insertions += 1
            elif line.startswith("-"):
                fd.deletions += 1
        fd.lines = [ln if ln.endswith("\n") else ln + "\n\\ No newline at end of file\n" for ln in body]
    return out


def format_code_diff(diffs: Sequence[FileDiff], *, colour: bool = False) -> str:
    """``git diff``-shaped text: a ``diff --git`` header per file, then the hunks."""
    out: list[str] = []
    for fd in diffs:
        out.append(render.style(f"diff --git a/{fd.path} b/{fd.path}", "bold", colour))
        if fd.status == "added" and fd.new is not None:
            out.append(render.style(f"new file mode {fd.new.mode:06o}", "bold", colour))
        elif fd.status == "removed" and fd.old is not None:
            out.append(render.style(f"deleted file mode {fd.old.mode:06o}", "bold", colour))
        elif fd.old is not None and fd.new is not None and fd.old.mode != fd.new.mode:
            out.append(render.style(f"old mode {fd.old.mode:06o}\nnew mode {fd.new.mode:06o}", "bold", colour))
        if fd.binary:
            out.append(f"Binary files {'/dev/null' if fd.old is None else 'a/' + fd.path} and {'/dev/null' if fd.new is None else 'b/' + fd.path} differ")
            continue
        for line in "".join(fd.lines).splitlines():
            if line.startswith(("---", "+++")):
                out.append(render.style(line, "bold", colour))
            elif line.startswith("@@"):
                out.append(render.style(line, "cyan", colour))
            elif line.startswith("+"):
                out.append(render.style(line, "green", colour))
            elif line.startswith("-"):
                out.append(render.style(line, "red", colour))
            else:
                out.append(line)
    return "\n".join(out)


def diff_stat(diffs: Sequence[FileDiff]) -> tuple[int, int, int]:
    """(files changed, insertions, deletions), as ``git diff --shortstat`` counts them."""
    return len(diffs), sum(d.insertions for d in diffs), sum(d.deletions for d in diffs)


def format_stat(diffs: Sequence[FileDiff]) -> str:
    n, ins, dels = diff_stat(diffs)
    if not n:
        return "no code changes"
    return f"{n} file{'s' if n != 1 else ''} changed, {ins} insertion{'s' if ins != 1 else ''}(+), {dels} deletion{'s' if dels != 1 else ''}(-)"


# ---------------------------------------------------------------- diff A B


def _source_line(rec: Any) -> str:
    src = rec.source
    if not src:
        return "-"
    text = f"{src.get('branch') or '(detached)'} {str(src.get('commit') or '-')[:10]}"
    if src.get("dirty"):
        text += " +dirty"
    if src.get("code_dir"):
        text += f" (code: {src['code_dir']})"
    return text


def diff_text(a: Any, b: Any, *, code: bool = False, env: bool = False, colour: bool = False) -> str:
    """What ``gitxp diff A B`` prints: overview, params, metrics (+ code, environment on request)."""
    la, lb = label(a), label(b)
    lines = [
        render.style(f"--- {a.id} ({a.name})", "red", colour),
        render.style(f"+++ {b.id} ({b.name})", "green", colour),
        "",
    ]
    overview = [
        ["status", a.status, b.status],
        ["duration", render.fmt_duration(a.meta.get("duration_s")), render.fmt_duration(b.meta.get("duration_s"))],
        ["created", a.created or "-", b.created or "-"],
        ["source", _source_line(a), _source_line(b)],
    ]
    lines += _indent(render.text_table(["", la, lb], overview))

    ch = param_changes(a, b)
    lines += ["", "Params:"]
    if not (ch["changed"] or ch["added"] or ch["removed"]):
        lines.append(f"  (identical, {len(ch['same'])} params)")
    for k, x, y in ch["changed"]:
        lines.append(render.style(f"  ~ {k}: {render.fmt_value(x)} -> {render.fmt_value(y)}", "yellow", colour))
    for k, _, y in ch["added"]:
        lines.append(render.style(f"  + {k}: {render.fmt_value(y)}", "green", colour))
    for k, x, _ in ch["removed"]:
        lines.append(render.style(f"  - {k}: {render.fmt_value(x)}", "red", colour))
    if ch["same"] and (ch["changed"] or ch["added"] or ch["removed"]):
        lines.append(f"  ({len(ch['same'])} unchanged)")

    lines += ["", "Metrics:"]
    names = metric_names([a, b])
    if not names:
        lines.append("  (none logged)")
    else:
        rows = []
        for name in names:
            sa, sb = a.metric_summary.get(name) or {}, b.metric_summary.get(name) or {}
            for stat in ("last", "min", "max"):
                va, vb = sa.get(stat), sb.get(stat)
                d, rel = delta(va, vb)
                rows.append([name if stat == "last" else "", stat, va, vb, d, rel])
        lines += _indent(render.text_table(["metric", "", la, lb, "delta", "rel"], rows))

    if code:
        lines += ["", "Code:"]
        ta, tb = a.code_tree, b.code_tree
        if ta is None or tb is None:
            missing = " and ".join(label(r) for r, t in ((a, ta), (b, tb)) if t is None)
            lines.append(f"  (no code snapshot for {missing}; it ran with --no-code)")
        else:
            diffs = code_diff(a.store.repo, ta, tb)
            lines.append(f"  {format_stat(diffs)}")
            if diffs:
                lines += ["", format_code_diff(diffs, colour=colour)]
    if env:
        lines += ["", "Environment:"]
        lines += _indent(env_diff_text(a, b))
    return "\n".join(lines)


def env_diff_text(a: Any, b: Any) -> str:
    """Packages and python/CUDA/driver versions that differ; says so when one was not recorded."""
    ea, eb = a.environment, b.environment
    missing = [label(r) for r, e in ((a, ea), (b, eb)) if not isinstance(e, Mapping)]
    if missing:
        return f"(environment not recorded for {' and '.join(missing)})"
    from . import environment

    text = environment.format_diff(environment.diff(ea, eb))
    return text or "(identical)"


def _indent(text: str, pad: str = "  ") -> list[str]:
    return [pad + line if line else line for line in text.splitlines()]


# ---------------------------------------------------------------- checkout


@dataclass(frozen=True)
class CheckoutResult:
    """What ``checkout`` did: the commit holding the code and where it now is."""

    commit: str
    created_commit: bool
    branch: str | None
    worktree: Path | None
    notes: tuple[str, ...]


_BAD_REF = re.compile(r"(^[-/.])|(\.\.)|([\x00-\x20~^:?*\[\\\x7f])|(@\{)|(/\.)|(//)|(\.lock$)|([/.]$)|(^@$)")


def check_branch_name(name: str) -> str:
    """Refuse names git would refuse (``git check-ref-format --branch`` rules), without running git."""
    if not name or _BAD_REF.search(name) or any(part.endswith(".lock") for part in name.split("/")):
        raise UsageError(f"invalid branch name {name!r}", "use letters, digits, '-', '_', '.' and '/' (e.g. xp/lr-sweep)")
    return name


def code_commit(store: Any, rec: Any) -> tuple[str, bool, list[str]]:
    """The commit holding exactly ``rec``'s code: ``(sha, newly_made, notes)``.

    From a clean tree that is the source commit itself. Otherwise one commit
    is written (never on any branch yet): parent the source commit, tree the
    snapshot. A ``--code-dir`` snapshot only holds that folder, so its tree
    is laid over the source commit's tree: the rest of the repository is
    the source commit's, and ``git diff BRANCH^ BRANCH`` shows the
    experiment's uncommitted edits inside that folder.
    """
    repo = store.repo
    src = rec.source
    parent = src.get("commit") or None
    if parent is not None and not repo.has_object(parent):
        raise GitxpError(f"the source commit {parent[:10]} of {rec.id} is not in this repository", "fetch it (`git fetch`) from where the experiment ran")
    snap = rec.code_tree
    notes: list[str] = []
    if snap is None:
        if parent is None:
            raise GitxpError(f"experiment {rec.id} has no code snapshot and no source commit", "it ran with --no-code outside any commit; nothing to check out")
        notes.append("no code snapshot was recorded (--no-code): this is the source commit, without uncommitted edits")
        return parent, False, notes
    tree = snap
    code_dir = src.get("code_dir")
    if code_dir:
        notes.append(f"the snapshot holds only {code_dir}/ (--code-dir); other files are the source commit's")
        if parent is not None:
            inner = repo.lookup(snap, code_dir)
            base = repo.read_commit(parent)["tree"]
            tree = repo.update_tree(base, {code_dir: inner if inner is not None else None})
    if parent is not None and repo.read_commit(parent)["tree"] == tree:
        return parent, False, notes
    message = (
        f"gitxp: code of experiment {rec.id} {rec.name}\n\n"
        f"The code snapshot of experiment {rec.id} ({rec.name}, {rec.status}),\n"
        f"including uncommitted edits, on top of its source commit {parent or '(none)'}.\n"
        f"See `gitxp show {short(rec.id)}`.\n"
    )
    # Dated at the experiment's start, so asking twice gives the same commit id.
    when = _epoch(rec.meta.get("started") or rec.created)
    return repo.write_commit(tree, [parent] if parent else [], message, when=when), True, notes


def _epoch(text: Any) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def checkout(store: Any, ref: str, *, branch: str | None = None, worktree: str | os.PathLike[str] | None = None) -> CheckoutResult:
    """Make an experiment's code a branch and/or a worktree; the current work tree is never touched.

    ``branch`` must not exist yet. ``worktree`` needs ``git`` on PATH; without
    ``branch`` it is detached at the code commit.
    """
    rec = store.get(ref)
    repo = store.repo
    if branch is not None:
        check_branch_name(branch)
        if repo.ref(branch) is not None:
            raise UsageError(f"branch {branch!r} already exists", "choose another name with -b, or delete it with `git branch -D`")
    dest: Path | None = None
    git = None
    if worktree is not None:
        git = shutil.which("git")
        if git is None:
            raise GitxpError("--worktree needs the `git` command, which is not on PATH", "install git, or use -b BRANCH alone")
        dest = Path(worktree).resolve()
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise UsageError(f"--worktree {worktree} exists and is not an empty folder", "choose a new folder")
    commit, made, notes = code_commit(store, rec)
    if branch is not None and not repo.cas_ref(branch, None, commit, message=f"gitxp: checkout {rec.id}"):
        raise UsageError(f"branch {branch!r} already exists", "choose another name with -b, or delete it with `git branch -D`")
    if dest is not None and git is not None:
        args = [git, "worktree", "add", "-q"] + ([str(dest), branch] if branch else ["--detach", str(dest), commit])
        cwd = repo.root or repo.common_dir
        r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
        if r.returncode != 0:
            msg = (r.stderr.strip().splitlines() or ["failed"])[-1]
            raise GitxpError(f"git worktree add failed: {msg}", f"the code is commit {commit[:10]}{' on branch ' + branch if branch else ''}; add the worktree by hand")
    return CheckoutResult(commit, made, branch, dest, tuple(notes))


def describe_checkout(rec: Any, res: CheckoutResult) -> str:
    """``branch xp/lr-sweep → 1a2b3c4 (code of <id> <name>, …)`` plus a worktree line."""
    how = "new commit on its source commit" if res.created_commit else "its source commit"
    what = f"{res.commit[:7]} (code of {rec.id} {rec.name}; {how})"
    lines = [f"branch {res.branch} → {what}" if res.branch else f"commit {what}"]
    if res.worktree is not None:
        lines.append(f"worktree {res.worktree}{' (detached)' if not res.branch else ''}")
    lines += [f"note: {n}" for n in res.notes]
    return "\n".join(lines)


# ---------------------------------------------------------------- charts

#: Series colours; the first (baseline) is a red that nothing else on the page uses.
PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")

Panel = tuple[str, list[tuple[str, list[tuple[float, float]]]]]  # (metric, [(legend label, points)])


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


def svg_chart(panels: Sequence[Panel], *, width: int = 800, height: int = 320, x_label: str = "step") -> str:
    """A standalone SVG: one panel per metric, one polyline per experiment, a shared legend.

    Written by hand (no plotting library needed); points are downsampled to
    at most 2000 per line. Colours follow the legend order in every panel.
    """
    from html import escape

    left, right, top, bottom = 72, 20, 30, 42
    labels = list(dict.fromkeys(lab for _, lines in panels for lab, _ in lines))
    colour = {lab: PALETTE[i % len(PALETTE)] for i, lab in enumerate(labels)}
    per_row = max(1, (width - 20) // 260)
    legend_h = 14 + 20 * math.ceil(len(labels) / per_row)
    total_h = height * len(panels) + legend_h
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" viewBox="0 0 {width} {total_h}" font-family="sans-serif" font-size="12">',
        f'<rect x="0" y="0" width="{width}" height="{total_h}" fill="#ffffff"/>',
    ]
    for i, lab in enumerate(labels):  # the legend on top, where it is seen before scrolling
        x, y = 20 + (i % per_row) * 260, 8 + (i // per_row) * 20
        out.append(f'<rect x="{x}" y="{y + 5}" width="14" height="4" fill="{colour[lab]}"/>')
        out.append(f'<text x="{x + 20}" y="{y + 11}" fill="#222">{escape(lab[:36])}</text>')
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
        out.append(f'<text x="{left}" y="{y0 + 20}" font-size="14" font-weight="bold" fill="#222">{escape(metric)}</text>')
        for t in nice_ticks(ylo, yhi):
            y = sy(t)
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e5e5e5"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#444">{_tick_label(t)}</text>')
        for t in nice_ticks(xlo, xhi):
            x = sx(t)
            out.append(f'<line x1="{x:.1f}" y1="{y0 + top + ph}" x2="{x:.1f}" y2="{y0 + top + ph + 5}" stroke="#444"/>')
            out.append(f'<text x="{x:.1f}" y="{y0 + top + ph + 18}" text-anchor="middle" fill="#444">{_tick_label(t)}</text>')
        out.append(f'<rect x="{left}" y="{y0 + top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
        out.append(f'<text x="{left + pw / 2:.1f}" y="{y0 + height - 6}" text-anchor="middle" fill="#444">{escape(x_label)}</text>')
        for lab, pts in lines:
            if not pts:
                continue
            coords = " ".join(f"{sx(x):.2f},{sy(y):.2f}" for x, y in downsample(pts))
            out.append(f'<polyline fill="none" stroke="{colour[lab]}" stroke-width="2.5" stroke-linejoin="round" points="{coords}"><title>{escape(lab)}</title></polyline>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


def chart_panels(recs: Sequence[Any], metrics: Sequence[str]) -> list[Panel]:
    """Panels for ``metrics`` over ``recs``; refuses a metric no experiment logged."""
    panels: list[Panel] = []
    for m in metrics:
        lines = [(label(r), series(r, m)) for r in recs]
        if not any(pts for _, pts in lines):
            known = metric_names(recs)
            if m in known:
                raise UsageError(f"metric {m!r} has no finite values to draw", "see `gitxp metrics REF`")
            raise UsageError(f"no experiment logged metric {m!r}", f"choose one of: {', '.join(known) or 'none'}")
        panels.append((m, lines))
    return panels


def plot(recs: Sequence[Any], metrics: Sequence[str], output: str | os.PathLike[str]) -> Path:
    """Write the curves of ``metrics`` to ``output`` (``.svg`` always; ``.png`` through matplotlib)."""
    out = Path(output)
    suffix = out.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise UsageError(f"cannot tell the chart format of {out.name!r}", "end the file name in .svg or .png")
    panels = chart_panels(recs, metrics)
    if suffix == ".svg":
        out.write_text(svg_chart(panels), encoding="utf-8")
        return out
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GitxpError("writing PNG needs matplotlib, which is not installed", "pip install 'gitxp[plot]', or write an .svg instead") from None
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)), squeeze=False)
    labels = list(dict.fromkeys(lab for _, lines in panels for lab, _ in lines))
    for ax, (metric, lines) in zip(axes[:, 0], panels):
        for lab, pts in lines:
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], label=lab, color=PALETTE[labels.index(lab) % len(PALETTE)])
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


# ---------------------------------------------------------------- report


@dataclass
class Report:
    """The data of a review report; ``recs[0]`` is the baseline when there is one."""

    recs: list[Any]
    baseline: Any | None
    metric: str | None
    code: dict[str, list[FileDiff] | None]  # experiment id → changes against the baseline's code


def build_report(store: Any, refs: Sequence[str], *, baseline: str | None = None, metric: str | None = None) -> Report:
    """Resolve the experiments and compare them against the baseline.

    The baseline is ``baseline`` when given, else the first REF when there
    are several; a single REF without ``--baseline`` is reported on its own,
    without deltas. The baseline is always the first column.
    """
    recs = list({r.id: r for r in (store.get(ref) for ref in refs)}.values())
    base = store.get(baseline) if baseline else (recs[0] if len(recs) > 1 else None)
    if base is not None:
        recs = [base] + [r for r in recs if r.id != base.id]
    if metric is not None and metric not in metric_names(recs):
        raise UsageError(f"no experiment logged metric {metric!r}", f"choose one of: {', '.join(metric_names(recs)) or 'none'}")
    code: dict[str, list[FileDiff] | None] = {}
    if base is not None:
        for r in recs[1:]:
            ta, tb = base.code_tree, r.code_tree
            code[r.id] = None if ta is None or tb is None else code_diff(store.repo, ta, tb)
    return Report(recs, base, metric or main_metric(recs), code)


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
        [("source", False)] + [(_source_line(r), False) for r in rep.recs],
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
        params.append([(k, False)] + [(render.fmt_value(f.get(k)), base is not None and i > 0 and not _same(f.get(k, "<missing>"), ref)) for i, f in enumerate(flat)])
    return {"overview": overview, "metrics": metrics, "params": params}


def _md_table(first: str, headers: list[str], rows: list[list[tuple[str, bool]]]) -> list[str]:
    out = ["| " + " | ".join([first, *headers]) + " |", "|---" + "|---:" * len(headers) + "|"]
    for row in rows:
        out.append("| " + " | ".join(f"**{_cell(t)}**" if em else _cell(t) for t, em in row) + " |")
    return out


def mermaid_chart(rep: Report, points: int = 50) -> list[str]:
    """A ```` ```mermaid ```` ``xychart-beta`` block: one line per experiment on a shared step grid.

    Mermaid lines share their x positions, so each curve is interpolated
    linearly onto ``points`` evenly spaced steps (held flat outside the steps
    it logged). Colours match the HTML/SVG charts.
    """
    import bisect

    m = rep.metric
    if m is None:
        return []
    lines = [(r, series(r, m)) for r in rep.recs]
    lines = [(r, pts) for r, pts in lines if pts]
    if not lines:
        return []
    xs = sorted({x for _, pts in lines for x, _ in pts})
    lo, hi = xs[0], xs[-1]
    n = max(1, min(points, len(xs)))
    grid = [lo + (hi - lo) * i / (n - 1) for i in range(n)] if n > 1 else [lo]
    title = re.sub(r'["\n]', "", m)
    palette = ", ".join(PALETTE[i % len(PALETTE)] for i in range(len(rep.recs)) if rep.recs[i] in [r for r, _ in lines])
    out = ["```mermaid", '%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "' + palette + '"}}}}%%', "xychart-beta",
           f'    title "{title}"', f'    x-axis "step" {lo:g} --> {hi:g}', f'    y-axis "{title}"']
    for _, pts in lines:
        px, py = [x for x, _ in pts], [y for _, y in pts]
        vals = []
        for g in grid:
            i = bisect.bisect_left(px, g)
            if i == 0 or i >= len(px):
                vals.append(py[min(i, len(px) - 1)])
            else:
                f = (g - px[i - 1]) / (px[i] - px[i - 1])
                vals.append(py[i - 1] + f * (py[i] - py[i - 1]))
        out.append("    line [" + ", ".join(f"{v:.6g}" for v in vals) + "]")
    out.append("```")
    out.append("Lines: " + "; ".join(f"{PALETTE[rep.recs.index(r) % len(PALETTE)]} `{label(r)}`" for r, _ in lines))
    return out


def report_markdown(rep: Report) -> str:
    """Markdown ready to paste into a pull request description."""
    rows, heads = _rows(rep), _headers(rep, md=True)
    others = [label(r) for r in rep.recs if r is not rep.baseline]
    title = f"## Experiment report: {', '.join(others)}" + (f" vs baseline {label(rep.baseline)}" if rep.baseline else "")
    out = [title, ""] + _md_table("", heads, rows["overview"])
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

    others = [label(r) for r in rep.recs if r is not rep.baseline]
    title = f"Experiment report: {', '.join(others)}" + (f" vs baseline {label(rep.baseline)}" if rep.baseline else "")
    parts = [f"<h1>{escape(title)}</h1>", table("", rows["overview"])]
    if rows["metrics"]:
        parts += ["<h2>Metrics</h2>", table("metric", rows["metrics"])]
    names = [n for n in [rep.metric, *metric_names(rep.recs)] if n][:4]
    names = list(dict.fromkeys(names))
    panels = [(n, lines) for n in names for lines in [[(label(r), series(r, n)) for r in rep.recs]] if any(p for _, p in lines)]
    if panels:
        parts += ["<h2>Charts</h2>", svg_chart(panels, width=900, height=300)]
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
                cls = lambda ln: "hunk" if ln.startswith("@@") else "" if ln.startswith(("+++", "---")) else "add" if ln.startswith("+") else "del" if ln.startswith("-") else ""  # noqa: E731
                body = "\n".join(f'<span class="{cls(ln)}">{escape(ln)}</span>' if cls(ln) else escape(ln) for ln in text)
                parts.append(f"<details><summary>diff</summary><pre>{body}</pre></details>")
    parts.append('<p class="note">Generated by gitxp.</p>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
