"""Reviewing results: diff two experiments and check an experiment's code out.

Everything here reads stored experiments (:class:`gitxp.store.record.Record`) and
returns text or plain data; :mod:`gitxp.cli.review` only picks options and
prints. The params, metrics and code comparisons here are the base the
other review modules build on: :mod:`gitxp.review.charts` draws :func:`series`,
and :mod:`gitxp.review.report` tabulates :func:`delta` and :func:`code_diff`, so a
reviewer sees the same numbers everywhere. Nothing here touches the user's
HEAD, index or work tree.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gitxp import text as render
from gitxp.store import tables
from gitxp.errors import GitxpError, UsageError
from gitxp.plumbing import gitcli
from gitxp.plumbing.repo import GITLINK_MODE, TREE_MODE, Entry

if TYPE_CHECKING:
    from gitxp.plumbing.repo import Repo
    from gitxp.store.record import Record
    from gitxp.store.store import Store

#: Text files larger than this are summarised, not diffed line by line
#: (difflib is quadratic in the worst case).
MAX_DIFF_BYTES = 1 << 20


def short(exp_id: str) -> str:
    """The random part's first 8 hex digits: what listings show and a valid ref."""
    return exp_id.rsplit("-", 1)[-1][:8]


def label(rec: Record) -> str:
    """``a3f9c2d8 train``: how an experiment is named in legends and headers."""
    return f"{short(rec.id)} {rec.name}".strip()


# ---------------------------------------------------------------- params and metrics


def get_all(store: Store, refs: Sequence[str]) -> list[Record]:
    """The experiments ``refs`` name, in order, each once (two REFs may name one experiment)."""
    return list({r.id: r for r in (store.get(ref) for ref in refs)}.values())


def flat_params(rec: Record) -> dict[str, Any]:
    """Params as dotted keys (``optim.lr``), the way users type them with ``-p``."""
    out: dict[str, Any] = {}
    tables.flatten("", dict(rec.params), out)
    return {k.lstrip("."): v for k, v in out.items() if k}


def param_changes(a: Any, b: Any) -> dict[str, list[tuple[str, Any, Any]]]:
    """``{"changed": [(key, a, b)], "added": [(key, None, b)], "removed": [(key, a, None)]}`` sorted by key."""
    pa, pb = flat_params(a), flat_params(b)
    return {
        "changed": [(k, pa[k], pb[k]) for k in sorted(pa.keys() & pb.keys()) if not same_value(pa[k], pb[k])],
        "added": [(k, None, pb[k]) for k in sorted(pb.keys() - pa.keys())],
        "removed": [(k, pa[k], None) for k in sorted(pa.keys() - pb.keys())],
        "same": [(k, pa[k], pb[k]) for k in sorted(pa.keys() & pb.keys()) if same_value(pa[k], pb[k])],
    }


def same_value(x: Any, y: Any) -> bool:
    """Equal and of one type: 1 == 1.0 == True in Python, but a param changing from 1 to True is a change."""
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


def metric_names(recs: Sequence[Record]) -> list[str]:
    """Every metric of any experiment, in first-seen order."""
    seen: dict[str, None] = {}
    for r in recs:
        for n in r.metric_summary:
            seen.setdefault(str(n), None)
    return list(seen)


def main_metric(recs: Sequence[Record]) -> str | None:
    """The metric most experiments share (ties: first seen); what charts show by default."""
    names = metric_names(recs)
    if not names:
        return None
    return max(names, key=lambda n: (sum(n in r.metric_summary for r in recs), -names.index(n)))


def unknown_metric(metric: str, recs: Sequence[Record]) -> UsageError:
    """The error for a metric no experiment in ``recs`` logged, listing those that were."""
    return UsageError(f"no experiment logged metric {metric!r}", f"choose one of: {', '.join(metric_names(recs)) or 'none'}")


_TABLES: dict[tuple[str, str], Any] = {}


def series(rec: Record, metric: str) -> list[tuple[float, float]]:
    """``(step, value)`` of one metric, sorted by step; non-finite values dropped (they cannot be drawn).

    A name that is no metric of ``rec`` but one of its hardware columns
    (``cpu_percent``, ``gpu0_util_percent``) gives those samples, step = sample index.
    """
    key = (rec.id, rec.tree)
    t = _TABLES.get(key)
    if t is None:
        t = _TABLES[key] = rec.metrics()
        while len(_TABLES) > 16:  # a report reads each log once per metric; keep only a few
            del _TABLES[next(iter(_TABLES))]
    import pyarrow.compute as pc

    t = t.filter(pc.equal(t.column("name").cast("string"), metric))
    steps = t.column("step").to_pylist()
    values = t.column("value").to_pylist()
    if not steps and metric not in rec.metric_summary:  # a hardware column (cpu_percent): sample index as the step
        hw = rec.hardware()
        if hw is not None and metric in hw.column_names and metric != "timestamp":
            values = hw.column(metric).to_pylist()
            steps = list(range(len(values)))
    pts = [(float(s), float(v)) for s, v in zip(steps, values) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    pts.sort(key=lambda p: p[0])
    return pts



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


def _walk_changes(repo: Repo, a: str | None, b: str | None, prefix: str = "") -> Iterator[tuple[str, Entry | None, Entry | None]]:
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
            yield from _walk_changes(repo, x.sha if x is not None and xt else None, y.sha if y is not None and yt else None, path + "/")
        if (x is not None and not xt) or (y is not None and not yt):
            yield path, None if xt else x, None if yt else y


def _content(repo: Repo, e: Entry | None) -> bytes:
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


def code_diff(repo: Repo, a: str | None, b: str | None, *, context: int = 3, prefix: str = "") -> list[FileDiff]:
    """File-by-file changes from tree ``a`` to tree ``b`` (either may be None: no snapshot).

    ``prefix`` is prepended to paths when ``a`` and ``b`` are subtrees (``src/``).
    """
    out: list[FileDiff] = []
    for path, x, y in _walk_changes(repo, a, b, prefix):
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


class CodeSource(Protocol):
    """What :func:`source_diff` reads: a :class:`~gitxp.store.record.Record`, or the UI's stand-in for a running experiment's staged code."""

    @property
    def code_tree(self) -> str | None: ...

    @property
    def source(self) -> Mapping[str, Any]: ...


def source_diff(repo: Repo, rec: CodeSource) -> list[FileDiff] | None:
    """An experiment's uncommitted edits: its source commit's tree → its code snapshot.

    None when there is nothing to compare (no snapshot, no source commit, or
    a source commit this repository lacks). Paths the snapshot left out on
    purpose (``source.skipped``: ignored or too large) are not reported as
    removed. With ``--code-dir`` only that folder is compared.
    """
    snap = rec.code_tree
    src = rec.source
    commit = src.get("commit")
    if snap is None or not commit or not repo.has_object(str(commit)):
        return None
    base: str | None = repo.read_commit(str(commit))["tree"]
    code_dir = str(src.get("code_dir") or "").strip("/")
    snap_sub: str | None = snap
    if code_dir:
        eb, es = repo.lookup(base, code_dir), repo.lookup(snap, code_dir)
        base = eb.sha if eb is not None and eb.is_tree else None
        snap_sub = es.sha if es is not None and es.is_tree else None
    skipped = set(src.get("skipped") or [])
    diffs = code_diff(repo, base, snap_sub, prefix=f"{code_dir}/" if code_dir else "")
    return [d for d in diffs if not (d.status == "removed" and d.path in skipped)]


def diff_line_kind(line: str) -> str:
    """``"header"`` (---/+++), ``"hunk"`` (@@), ``"add"``, ``"del"`` or ``""`` for one line of a unified diff."""
    if line.startswith(("---", "+++")):
        return "header"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    return ""


_DIFF_STYLE = {"header": "bold", "hunk": "cyan", "add": "green", "del": "red"}


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
        out += [render.style(line, _DIFF_STYLE.get(diff_line_kind(line)), colour) for line in "".join(fd.lines).splitlines()]
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


def source_line(rec: Record) -> str:
    """``main 1a2b3c4d5e +dirty``: the branch and commit an experiment ran from."""
    src = rec.source
    if not src:
        return "-"
    text = f"{src.get('branch') or '(detached)'} {str(src.get('commit') or '-')[:10]}"
    if src.get("dirty"):
        text += " +dirty"
    if src.get("code_dir"):
        text += f" (code: {src['code_dir']})"
    return text


def command_line(rec: Record) -> str:
    """The command an experiment ran, as one shell-quoted line (``-`` for code that called ``gitxp.start``)."""
    import shlex

    cmd = rec.meta.get("command")
    if isinstance(cmd, list) and cmd:
        return shlex.join(str(c) for c in cmd)
    return str(cmd) if cmd else "-"


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
        ["source", source_line(a), source_line(b)],
    ]
    lines += _indent(render.text_table(["", la, lb], overview))

    ca, cb = command_line(a), command_line(b)
    if ca != cb:
        lines += ["", "Command:", render.style(f"  - {ca}", "red", colour), render.style(f"  + {cb}", "green", colour)]

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

    if a.meta.get("inputs") or b.meta.get("inputs"):
        lines += ["", "Inputs:"]
        lines += input_lines(a.meta.get("inputs"), b.meta.get("inputs"), colour=colour)
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


def input_lines(a: Any, b: Any, *, colour: bool = False) -> list[str]:
    """Which inputs changed between two runs: name, short digests and sizes (``~``, ``+``, ``-``)."""
    from gitxp.store.inputs import by_name, changes, short_digest

    def what(e: Any) -> str:
        files = e.get("files")
        count = f", {files} files" if isinstance(files, int) and files != 1 else ""
        return f"{short_digest(e.get('digest'))} ({render.fmt_size(e.get('size') or 0)}{count})"

    out = []
    for kind, name, x, y in changes(a, b):
        if kind == "~":
            out.append(render.style(f"  ~ {name}: {what(x)} -> {what(y)}", "yellow", colour))
        elif kind == "+":
            out.append(render.style(f"  + {name}: {what(y)}", "green", colour))
        else:
            out.append(render.style(f"  - {name}: {what(x)}", "red", colour))
    ia, ib = by_name(a), by_name(b)
    same = sum(1 for n in ia if n in ib and ia[n].get("digest") == ib[n].get("digest"))
    if not out:
        out.append(f"  (identical, {same} inputs)")
    elif same > 0:
        out.append(f"  ({same} unchanged)")
    return out


def env_diff_text(a: Any, b: Any) -> str:
    """Packages and python/CUDA/driver versions that differ; says so when one was not recorded."""
    ea, eb = a.environment, b.environment
    missing = [label(r) for r, e in ((a, ea), (b, eb)) if not isinstance(e, Mapping)]
    if missing:
        return f"(environment not recorded for {' and '.join(missing)})"
    from gitxp.environment import describe as environment

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


def code_commit(store: Store, rec: Record) -> tuple[str, bool, list[str]]:
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


def _branch_exists(branch: str) -> UsageError:
    return UsageError(f"branch {branch!r} already exists", "choose another name with -b, or delete it with `git branch -D`")


def checkout(store: Store, ref: str, *, branch: str | None = None, worktree: str | os.PathLike[str] | None = None) -> CheckoutResult:
    """Make an experiment's code a branch and/or a worktree; the current work tree is never touched.

    ``branch`` must not exist yet. ``worktree`` needs ``git`` on PATH; without
    ``branch`` it is detached at the code commit.
    """
    rec = store.get(ref)
    repo = store.repo
    if branch is not None:
        check_branch_name(branch)
        if repo.ref(branch) is not None:
            raise _branch_exists(branch)
    dest: Path | None = None
    if worktree is not None:
        if not gitcli.available():
            raise GitxpError("--worktree needs the `git` command, which is not on PATH", "install git, or use -b BRANCH alone")
        dest = Path(worktree).resolve()
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise UsageError(f"--worktree {worktree} exists and is not an empty folder", "choose a new folder")
    commit, made, notes = code_commit(store, rec)
    if branch is not None and not repo.cas_ref(branch, None, commit, message=f"gitxp: checkout {rec.id}"):
        raise _branch_exists(branch)
    if dest is not None:
        msg = gitcli.worktree_add(repo.root or repo.common_dir, dest, branch=branch, commit=commit)
        if msg is not None:
            raise GitxpError(f"git worktree add failed: {msg}", f"the code is commit {commit[:10]}{' on branch ' + branch if branch else ''}; add the worktree by hand")
    return CheckoutResult(commit, made, branch, dest, tuple(notes))


def describe_checkout(rec: Record, res: CheckoutResult) -> str:
    """``branch xp/lr-sweep → 1a2b3c4 (code of <id> <name>, …)`` plus a worktree line."""
    how = "new commit on its source commit" if res.created_commit else "its source commit"
    what = f"{res.commit[:7]} (code of {rec.id} {rec.name}; {how})"
    lines = [f"branch {res.branch} → {what}" if res.branch else f"commit {what}"]
    if res.worktree is not None:
        lines.append(f"worktree {res.worktree}{' (detached)' if not res.branch else ''}")
    lines += [f"note: {n}" for n in res.notes]
    return "\n".join(lines)
