"""The store merge: a union in which no experiment is ever lost.

:func:`merge` brings the local store branch up to a fetched commit (the
pull and push of :mod:`gitxp.remote.sync` call it once the commit passed
:mod:`gitxp.store.validate`): a three-way merge against the merge base,
entry by entry. What only one side changed is taken from that side (so an
experiment deleted with ``gitxp rm`` on one side and untouched on the other
stays deleted). When both sides changed the same entry:

* folders are merged recursively (day folders, experiment folders, ``artifacts/``,
  ``tables/``); a change on one side and a deletion on the other keeps the change;
* inside one experiment, the *winner* is the side whose ``experiment.yaml``
  has the later ``ended`` (then the later commit time, then ours); a time
  more than :data:`CLOCK_SKEW_S` in the future counts as none, so a forged
  ``ended: 9999-12-31`` never wins; ``code/`` and every other file come from
  the winner;
* ``experiment.yaml`` is merged field by field against the base (amendments
  such as ``gitxp tag`` on one clone and ``gitxp note`` on another both
  survive): a field changed on one side only is taken from that side;
  changed on both, ``tags`` merge key by key, ``notes`` keep both texts,
  any other field comes from the winner;
* ``metrics.parquet`` keeps both sides' rows (union, identical rows once,
  sorted by name, step) and the winner's metric summary is recomputed from it;
* ``artifacts.yaml`` is the union of both manifests by path, winner first;
* ``gitxp.yaml`` keeps ours with the union of both key lists;
* ``listing/<day>/pending.jsonl`` keeps every row of both sides (the
  listing index is derived: a row is used only while it names the
  experiment's current tree, so an extra row is never wrong).

The loser's versions stay in history: the merge commit has both parents
(ours first).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from gitxp.errors import StoreError
from gitxp.plumbing.repo import EXEC_MODE, FILE_MODE, TREE_MODE, Entry, Repo
from gitxp.plumbing.transport import merge_bases
from gitxp.store import aliases
from gitxp.store import layout
from gitxp.store import listing

#: Seconds a recorded time may lie in the future (clock skew between machines) and still count in a merge.
CLOCK_SKEW_S = 300


def merge(repo: Repo, branch: str, theirs: str, *, label: str, timeout: float = 600.0) -> tuple[str, str, int]:
    """Bring the local store branch up to ``theirs``: (action, new tip, new experiments).

    Runs under the store lock that every gitxp writer takes, and moves the
    branch by compare-and-swap, retrying if plain git moved it meanwhile.
    """
    from gitxp.plumbing.lockfile import locked

    repo.gitxp_dir.mkdir(parents=True, exist_ok=True)
    with locked(repo.gitxp_dir / "store.lock", timeout):
        for _ in range(100):
            ours = repo.ref(branch)
            theirs_tree = repo.read_commit(theirs)["tree"]
            if ours is None:
                if repo.cas_ref(branch, None, theirs, message=f"gitxp: create {branch} from {label}"):
                    return "created", theirs, count_experiments(repo, None, theirs_tree)
                continue
            if ours == theirs:
                return "up-to-date", ours, 0
            bases = merge_bases(repo, ours, theirs)
            if theirs in bases:
                return "up-to-date", ours, 0
            ours_info = repo.read_commit(ours)
            if ours in bases:
                if repo.cas_ref(branch, ours, theirs, message=f"gitxp: fast-forward from {label}"):
                    return "fast-forward", theirs, count_experiments(repo, ours_info["tree"], theirs_tree)
                continue
            base_tree = repo.read_commit(bases[0])["tree"] if bases else None
            theirs_info = repo.read_commit(theirs)
            m = _TreeMerger(repo, ours_info.get("time", 0), theirs_info.get("time", 0))
            tree = m.root(base_tree, ours_info["tree"], theirs_tree)
            new = count_experiments(repo, ours_info["tree"], tree)
            message = f"gitxp: merge {label} into {branch} ({new} new experiment{'s' if new != 1 else ''})\n"
            commit = repo.write_commit(tree, [ours, theirs], message)
            if repo.cas_ref(branch, ours, commit, message=message.strip()):
                return "merged", commit, new
            time.sleep(0.01 * (0.5 + random.random()))
    raise StoreError(f"could not update branch {branch!r}: it kept moving", "run the command again")


def count_experiments(repo: Repo, old_tree: str | None, new_tree: str) -> int:
    """Experiments in ``new_tree`` that ``old_tree`` lacks; unchanged day folders are skipped."""

    def days(tree: str | None) -> dict[str, str]:
        e = repo.lookup(tree, layout.EXPERIMENTS_DIR) if tree else None
        return {d.name: d.sha for d in repo.read_tree(e.sha) if d.is_tree} if e is not None and e.is_tree else {}

    old, new = days(old_tree), days(new_tree)
    n = 0
    for day, sha in new.items():
        if old.get(day) == sha:
            continue
        have = {x.name for x in repo.read_tree(old[day])} if day in old else set()
        n += sum(1 for x in repo.read_tree(sha) if x.name not in have)
    return n


_Pick = Callable[[Entry | None, Entry, Entry, str], Entry]


class _TreeMerger:
    """The three-way union merge described in the module docstring."""

    def __init__(self, repo: Repo, ours_time: int, theirs_time: int) -> None:
        self.repo = repo
        self.ours_time = ours_time
        self.theirs_time = theirs_time

    def _map(self, sha: str | None) -> dict[str, Entry]:
        return {e.name: e for e in self.repo.read_tree(sha)} if sha else {}

    def _three(self, base: str | None, ours: str | None, theirs: str | None, path: str, both: _Pick) -> str:
        b, o, t = self._map(base), self._map(ours), self._map(theirs)
        out: list[Entry] = []
        for name in sorted({*o, *t}):
            bo, oo, to = b.get(name), o.get(name), t.get(name)
            if oo == to:
                pick = oo
            elif oo == bo:
                pick = to
            elif to == bo:
                pick = oo
            elif oo is None or to is None:
                pick = oo or to  # changed on one side, deleted on the other: keep the data
            else:
                pick = both(bo, oo, to, f"{path}/{name}" if path else name)
            if pick is not None:
                out.append(pick)
        return self.repo.write_tree(out)

    @staticmethod
    def _sub(e: Entry | None) -> str | None:
        return e.sha if e is not None and e.is_tree else None

    def root(self, base: str | None, ours: str, theirs: str) -> str:
        def both(b: Entry | None, o: Entry, t: Entry, path: str) -> Entry:
            if path == layout.EXPERIMENTS_DIR and o.is_tree and t.is_tree:
                return Entry(o.name, TREE_MODE, self._three(self._sub(b), o.sha, t.sha, path, self._day))
            if path == layout.STORE_FILE and not o.is_tree and not t.is_tree:
                return self._store_file(o, t)
            if path == aliases.FILE and not o.is_tree and not t.is_tree:
                return self._aliases(o, t)
            if path == listing.LISTING_DIR and o.is_tree and t.is_tree:
                return Entry(o.name, TREE_MODE, self._three(self._sub(b), o.sha, t.sha, path, self._listing_day))
            return self._generic(b, o, t, path, prefer_theirs=False)

        return self._three(base, ours, theirs, "", both)

    def _listing_day(self, b: Entry | None, o: Entry, t: Entry, path: str) -> Entry:
        def both(bb: Entry | None, oo: Entry, tt: Entry, p: str) -> Entry:
            if oo.name == listing.PENDING_FILE and not oo.is_tree and not tt.is_tree:
                data = listing.merge_pending(self.repo.read_blob(oo.sha), self.repo.read_blob(tt.sha))
                return Entry(oo.name, FILE_MODE, self.repo.write_blob(data))
            return oo  # a sealed file is named after its content: same name, same rows

        if not (o.is_tree and t.is_tree):
            return o
        return Entry(o.name, TREE_MODE, self._three(self._sub(b), o.sha, t.sha, path, both))

    def _day(self, b: Entry | None, o: Entry, t: Entry, path: str) -> Entry:
        if not (o.is_tree and t.is_tree):
            return o
        return Entry(o.name, TREE_MODE, self._three(self._sub(b), o.sha, t.sha, path, self._experiment))

    def _experiment(self, b: Entry | None, o: Entry, t: Entry, path: str) -> Entry:
        if not (o.is_tree and t.is_tree):
            return o
        meta_o = self._meta(o.sha)
        meta_t = self._meta(t.sha)
        theirs_win = _precedence(meta_t.get("ended"), self.theirs_time) > _precedence(meta_o.get("ended"), self.ours_time)
        merged_metrics: list[bytes] = []

        def both(bb: Entry | None, oo: Entry, tt: Entry, p: str) -> Entry:
            name = oo.name
            if name == layout.METRICS_FILE and not oo.is_tree and not tt.is_tree:
                data = _union_metrics(self.repo.read_blob(oo.sha), self.repo.read_blob(tt.sha))
                merged_metrics.append(data)
                return Entry(name, FILE_MODE, self.repo.write_blob(data))
            if name == layout.ARTIFACTS_FILE and not oo.is_tree and not tt.is_tree:
                return self._manifest(oo, tt, theirs_win)
            if name == layout.EXPERIMENT_FILE and not oo.is_tree and not tt.is_tree:
                base = self._meta(b.sha) if b is not None and b.is_tree else None
                merged = merge_fields(base, meta_o, meta_t, theirs_win=theirs_win)
                if merged == meta_o:
                    return oo
                return Entry(name, FILE_MODE, self.repo.write_blob(layout.dump_yaml(merged).encode()))
            if name == layout.CODE_DIR:
                return tt if theirs_win else oo
            return self._generic(bb, oo, tt, p, prefer_theirs=theirs_win)

        tree = self._three(self._sub(b), o.sha, t.sha, path, both)
        if merged_metrics:
            tree = self._resummarise(tree, merged_metrics[0])
        return Entry(o.name, TREE_MODE, tree)

    def _generic(self, b: Entry | None, o: Entry, t: Entry, path: str, *, prefer_theirs: bool) -> Entry:
        if o.is_tree and t.is_tree:
            return Entry(o.name, TREE_MODE, self._three(self._sub(b), o.sha, t.sha, path, lambda bb, oo, tt, p: self._generic(bb, oo, tt, p, prefer_theirs=prefer_theirs)))
        return t if prefer_theirs else o

    def _meta(self, tree: str) -> dict[str, Any]:
        data = self.repo.read_path(tree, layout.EXPERIMENT_FILE)
        doc = layout.load_yaml(data, what=layout.EXPERIMENT_FILE) if data else None
        return doc if isinstance(doc, dict) else {}

    def _store_file(self, o: Entry, t: Entry) -> Entry:
        doc_o = layout.load_yaml(self.repo.read_blob(o.sha), what=layout.STORE_FILE)
        doc_t = layout.load_yaml(self.repo.read_blob(t.sha), what=layout.STORE_FILE)
        if not isinstance(doc_o, dict) or not isinstance(doc_t, dict):
            return o
        keys = list(doc_o.get("keys") or [])
        keys += [k for k in doc_t.get("keys") or [] if k not in keys]
        doc = dict(doc_o, keys=keys)
        return Entry(o.name, FILE_MODE, self.repo.write_blob(layout.dump_yaml(doc).encode()))

    def _aliases(self, o: Entry, t: Entry) -> Entry:
        """Each alias as its later set or removal left it (:func:`gitxp.store.aliases.merge`)."""
        doc_o = layout.load_yaml(self.repo.read_blob(o.sha), what=aliases.FILE)
        doc_t = layout.load_yaml(self.repo.read_blob(t.sha), what=aliases.FILE)
        if aliases.problems(doc_o) or aliases.problems(doc_t):
            return o
        merged = aliases.merge(doc_o or {}, doc_t or {})
        return Entry(o.name, FILE_MODE, self.repo.write_blob(layout.dump_yaml(merged).encode()))

    def _manifest(self, o: Entry, t: Entry, theirs_win: bool) -> Entry:
        first, second = (t, o) if theirs_win else (o, t)
        a = layout.load_yaml(self.repo.read_blob(first.sha), what=layout.ARTIFACTS_FILE) or []
        b = layout.load_yaml(self.repo.read_blob(second.sha), what=layout.ARTIFACTS_FILE) or []
        if not isinstance(a, list) or not isinstance(b, list):
            return first
        paths = {x.get("path") for x in a if isinstance(x, dict)}
        merged = a + [x for x in b if isinstance(x, dict) and x.get("path") not in paths]
        return Entry(o.name, FILE_MODE, self.repo.write_blob(layout.dump_yaml(merged).encode()))

    def _resummarise(self, tree: str, metrics_data: bytes) -> str:
        from gitxp.store import parquet as metrics
        from gitxp.store.parquet_checks import from_parquet_bytes

        e = self.repo.lookup(tree, layout.EXPERIMENT_FILE)
        if e is None or e.mode not in (FILE_MODE, EXEC_MODE):
            return tree
        doc = layout.load_yaml(self.repo.read_blob(e.sha), what=layout.EXPERIMENT_FILE)
        if not isinstance(doc, dict):
            return tree
        doc["metrics"] = metrics.summarize(from_parquet_bytes(metrics_data))
        blob = self.repo.write_blob(layout.dump_yaml(doc).encode())
        return self.repo.update_tree(tree, {layout.EXPERIMENT_FILE: Entry(layout.EXPERIMENT_FILE, FILE_MODE, blob)})


_TIME_FIELDS = ("created", "started", "ended")


def _timestamp(value: Any) -> float | None:
    """A recorded time as a POSIX timestamp; None when missing, unreadable or in the future."""
    import datetime as dt

    when = None
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            when = layout.parse_time(value)
        except ValueError:
            return None
    if when is None:
        return None
    stamp = (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()
    return stamp if stamp <= time.time() + CLOCK_SKEW_S else None


def _precedence(ended: Any, commit_time: int) -> tuple[float, float]:
    """Sort key of one side of a merge: (its ``ended``, its commit time); future times count as none."""
    stamp = _timestamp(ended)
    return (float("-inf") if stamp is None else stamp, commit_time if commit_time <= time.time() + CLOCK_SKEW_S else float("-inf"))


_MISSING = object()


def merge_fields(base: dict[str, Any] | None, ours: dict[str, Any], theirs: dict[str, Any], *, theirs_win: bool) -> dict[str, Any]:
    """Three-way merge of two ``experiment.yaml`` documents, field by field (see the module docstring)."""

    def side(o: Any, t: Any) -> Any:
        return t if theirs_win else o

    def three(b: Any, o: Any, t: Any, both: Callable[[Any, Any, Any], Any]) -> Any:
        if o == t:
            return o
        if o == b:
            return t
        if t == b:
            return o
        if o is _MISSING or t is _MISSING:  # changed on one side, removed on the other: keep the data
            return t if o is _MISSING else o
        return both(b, o, t)

    def mapping(b: dict[str, Any], o: dict[str, Any], t: dict[str, Any], both: Callable[[str, Any, Any, Any], Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in [*o, *(k for k in t if k not in o)]:
            v = three(b.get(k, _MISSING), o.get(k, _MISSING), t.get(k, _MISSING), lambda bb, oo, tt: both(k, bb, oo, tt))
            if v is not _MISSING:
                out[k] = v
        return out

    def field(k: str, b: Any, o: Any, t: Any) -> Any:
        if k == "tags" and isinstance(o, dict) and isinstance(t, dict):
            return mapping(b if isinstance(b, dict) else {}, o, t, lambda _k, _b, oo, tt: side(oo, tt))
        if k == "notes" and isinstance(o, str) and isinstance(t, str):
            added = t[len(b):].strip() if isinstance(b, str) and t.startswith(b) else t
            return o if added in o else f"{o}\n{added}".strip()
        return side(o, t)

    merged = mapping(base if isinstance(base, dict) else {}, ours, theirs, field)
    for k in _TIME_FIELDS:  # a time from the future is never taken over ours
        if k in merged and merged[k] != ours.get(k, _MISSING) and _timestamp(merged[k]) is None:
            if k in ours:
                merged[k] = ours[k]
            else:
                del merged[k]
    return merged


def _union_metrics(a: bytes, b: bytes) -> bytes:
    """Both sides' metric rows, identical rows once, sorted by name, step, timestamp."""
    import pyarrow as pa

    from gitxp.store import parquet as metrics
    from gitxp.store.parquet_checks import from_parquet_bytes

    cols = ["name", "step", "value", "timestamp"]
    parts = []
    for data in (a, b):
        t = from_parquet_bytes(data).select(cols)
        parts.append(pa.table({
            "name": t.column("name").cast(pa.string()),
            "step": t.column("step").cast(pa.int64()),
            "value": t.column("value").cast(pa.float64()),
            "timestamp": t.column("timestamp").cast(pa.timestamp("us", tz="UTC")),
        }))
    both = pa.concat_tables(parts)
    unique = both.group_by(cols, use_threads=False).aggregate([]).sort_by([("name", "ascending"), ("step", "ascending"), ("timestamp", "ascending")])
    out = pa.Table.from_arrays(
        [unique.column("name").combine_chunks().dictionary_encode(), unique.column("step"), unique.column("value"), unique.column("timestamp")],
        schema=metrics.schema(),
    )
    return metrics.to_parquet_bytes(out)
