"""The store: one branch of the user's repository holding every experiment.

:class:`Store` opens the branch, creates it on first write, commits
experiments and amendments, and lists experiments through a derived index
under ``.git/gitxp/cache/`` that is brought up to date from the branch's new
trees (only day folders whose tree id changed are re-read), so listing
20,000 experiments never walks 20,000 directories. :class:`Record` is a
read-only view of one stored experiment.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gitxp import env as _config
from gitxp.store import layout
from gitxp.store import staging
from gitxp.errors import RefError, StoreError, UnsafeDataError
from gitxp.plumbing.repo import EXEC_MODE, FILE_MODE, TREE_MODE, Entry, Repo
from gitxp.store import listing
from gitxp.store.index import BRANCH, ID, LENGTH, NAME, OFFSET, STATUS, TREE, IndexCache, encode
from gitxp.store.record import Record, Records
from gitxp.threads import forked


class Store:
    """The experiments of one repository (branch ``gitxp`` unless configured)."""

    def __init__(self, repo: Repo, cfg: _config.Config | None = None) -> None:
        self.repo = repo
        self.config = cfg or _config.load(repo)
        self.branch = self.config.branch
        self._doc: tuple[str | None, dict[str, Any]] | None = None
        self._index: tuple[str | None, list[tuple[Any, ...]]] | None = None
        self._cache: Any = None
        self._checked: dict[str, bytes] = {}
        self._writes_at_exit = False  # _checked_rows registered with atexit (once per store)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike[str] = ".") -> Store:
        return cls(Repo(path))

    def close(self) -> None:
        if self._cache is not None:
            self._checked_rows("", None)
            self._cache.close()
        self.repo.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def tip(self) -> str | None:
        return self.repo.ref(self.branch)

    def exists(self) -> bool:
        return self.tip is not None

    def document(self) -> dict[str, Any] | None:
        """``gitxp.yaml`` of the branch tip, validated (None if no store yet)."""
        tip = self.tip
        if self._doc is not None and self._doc[0] == tip:
            return self._doc[1]
        if tip is None:
            return None
        doc = layout.check_store_document(self._store_file(tip))
        self._doc = (tip, doc)
        return doc

    def _store_file(self, tip: str) -> Any:
        """``gitxp.yaml`` at ``tip`` as parsed, through a one-entry cache keyed by the tip and the file's blob id.

        A commit id names its tree and so the file: at the cached tip no git
        object is read at all (a warm listing of a fresh clone, whose objects
        are all packed, opens no pack), and at a new tip with the same file
        (nearly every commit; its commit and tree are loose, cheap to read)
        nothing is parsed or written; listings read everything
        else from the index cache, so they never import the YAML parser for
        this one small file. The caller validates the value every time,
        cached or not; a value marshal cannot hold exactly is never cached.
        """
        import marshal

        path = self.repo.gitxp_dir / "cache" / "store-file.marshal"
        cached: tuple[Any, ...] | None = None
        try:
            cached = marshal.loads(path.read_bytes())
            if type(cached) is tuple and len(cached) == 3 and cached[0] == tip:
                return cached[2]
        except (OSError, EOFError, ValueError, TypeError):
            pass
        tree = self.repo.read_commit(tip)["tree"]
        entry = self.repo.lookup(tree, layout.STORE_FILE)
        if entry is None or entry.mode not in (FILE_MODE, EXEC_MODE):
            raise StoreError(f"branch {self.branch!r} exists but holds no {layout.STORE_FILE}", f"it is not a gitxp store; choose another with `git config gitxp.branch NAME`")
        if type(cached) is tuple and len(cached) == 3 and cached[1] == entry.sha:
            return cached[2]  # not rewritten for a new tip alone: a command that must write nothing (--dry-run) reads
        doc = layout.load_yaml(self.repo.read_blob(entry.sha), what=layout.STORE_FILE)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            body = marshal.dumps((tip, entry.sha, doc))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(body)
            os.replace(tmp, path)
        except (OSError, ValueError):  # read-only .git, or a value marshal cannot hold: just not cached
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        return doc

    @property
    def store_id(self) -> str:
        doc = self.ensure()
        return str(doc["store_id"])

    def ensure(self, *, quiet: bool = False) -> dict[str, Any]:
        """Create the store branch if missing (one notice on stderr); return gitxp.yaml."""
        doc = self.document()
        if doc is not None:
            return doc
        store_id = str(uuid.uuid4())
        body = layout.dump_yaml(layout.store_document(store_id))

        def build(tip: str | None, tree: str | None) -> tuple[str, str] | None:
            if tip is not None:
                return None  # someone else created it meanwhile
            blob = self.repo.write_blob(body.encode())
            t = self.repo.write_tree([Entry(layout.STORE_FILE, FILE_MODE, blob)])
            return t, f"gitxp: init store {store_id}\n\nformat {layout.FORMAT_VERSION}\n"

        made = self.repo.commit_to_branch(self.branch, build)
        if made and not quiet:
            print(f"gitxp: created the experiment store on branch '{self.branch}'", file=sys.stderr)
        self._doc = None
        doc = self.document()
        assert doc is not None
        return doc

    def set_keys(self, fingerprints: list[str]) -> None:
        """Record key fingerprints in gitxp.yaml (a new commit if they changed)."""

        def build(tip: str | None, tree: str | None) -> tuple[str, str] | None:
            doc = dict(self.document() or {})
            keys = list(doc.get("keys") or [])
            new = [k for k in fingerprints if k not in keys]
            if not new:
                return None
            doc["keys"] = keys + new
            blob = self.repo.write_blob(layout.dump_yaml(doc).encode())
            t = self.repo.update_tree(tree, {layout.STORE_FILE: Entry(layout.STORE_FILE, FILE_MODE, blob)})
            return t, f"gitxp: add key {', '.join(new)}\n"

        self.ensure()
        self.repo.commit_to_branch(self.branch, build)
        self._doc = None

    # ------------------------------------------------------------------ writing

    def commit_experiment(self, exp_id: str, files: Mapping[str, bytes | Entry | None], message: str) -> str:
        """Write an experiment's directory (overlaying what is already stored) in one commit.

        ``files`` maps directory-relative paths to content, to an existing
        object (an Entry, e.g. the code snapshot tree), or None to delete.
        """
        self.ensure()
        changes: dict[str, Entry | None] = {}
        for rel, content in files.items():
            if content is None or isinstance(content, Entry):
                changes[rel] = content
            else:
                changes[rel] = Entry(rel.rsplit("/", 1)[-1], FILE_MODE, self.repo.write_blob(content))
        base = layout.experiment_dir(exp_id)

        def build(tip: str | None, tree: str | None) -> tuple[str, str]:
            old = self.repo.lookup(tree, base)
            sub = self.repo.update_tree(old.sha if old is not None and old.is_tree else None, changes)
            row = self._listing_row(tree, exp_id, sub, files)
            return self.repo.update_tree(tree, {base: Entry(exp_id, TREE_MODE, sub), **row}), message

        commit = self.repo.commit_to_branch(self.branch, build)
        assert commit is not None
        self._index = None
        return commit

    def amend(self, ref: str, *, tags: Mapping[str, Any] | None = None, note: str | None = None, remove: bool = False) -> Record:
        """Tag, annotate or remove an experiment: each a new store commit.

        A removed experiment's directory leaves the branch tip, so it vanishes
        from listings; history still holds it.
        """
        tags = layout.check_tags(tags) if tags else tags
        if note is not None:
            layout.check_text(note, "note", multiline=True)
        rec = self._find(ref)
        base = layout.experiment_dir(rec.id)

        def build(tip: str | None, tree: str | None) -> tuple[str, str]:
            old = self.repo.lookup(tree, base)
            if old is None:
                raise RefError(rec.id, "it was removed meanwhile")
            if remove:
                return self.repo.update_tree(tree, {base: None}), f"gitxp: rm {rec.id} {rec.name}\n"
            meta = dict(layout.load_yaml(self.repo.read_path(old.sha, layout.EXPERIMENT_FILE) or b"{}", what=layout.EXPERIMENT_FILE) or {})
            what = []
            if tags:
                meta["tags"] = {**(meta.get("tags") or {}), **tags}
                layout.check_tag_count(meta["tags"])
                what.append("tag " + " ".join(f"{k}={v}" for k, v in tags.items()))
            if note is not None:
                meta["notes"] = layout.check_notes((str(meta.get("notes") or "") + ("\n" if meta.get("notes") else "") + note).strip())
                what.append("note")
            data = layout.dump_yaml(meta).encode()
            sub = self.repo.update_tree(old.sha, {layout.EXPERIMENT_FILE: Entry(layout.EXPERIMENT_FILE, FILE_MODE, self.repo.write_blob(data))})
            row = self._listing_row(tree, rec.id, sub, {layout.EXPERIMENT_FILE: data})
            return self.repo.update_tree(tree, {base: Entry(rec.id, TREE_MODE, sub), **row}), f"gitxp: {' and '.join(what) or 'amend'} {rec.id} {rec.name}\n"

        self.repo.commit_to_branch(self.branch, build)
        self._index = None
        return rec if remove else self.get(rec.id)

    def _listing_row(self, root: str | None, exp_id: str, sub: str, files: Mapping[str, bytes | Entry | None]) -> dict[str, Entry | None]:
        """The store's listing-index changes for an experiment now at tree ``sub`` (see :mod:`gitxp.store.listing`).

        The YAML is what this commit writes, else what the experiment holds;
        an experiment whose files would read as damaged gets no row.
        """
        docs = []
        for name in (layout.EXPERIMENT_FILE, layout.PARAMS_FILE):
            content = files.get(name)
            data = content if isinstance(content, bytes) else self.repo.read_path(sub, name)
            try:
                docs.append(layout.load_yaml(data, what=name) if data is not None else None)
            except UnsafeDataError:
                return {}
        meta, params = docs
        if not isinstance(meta, dict) or layout.experiment_problems(meta) or layout.params_problems(params):
            return {}
        return listing.changes_for(self.repo, root, exp_id, sub, meta, params)

    # ------------------------------------------------------------------ reading

    def index(self) -> list[Record]:
        """Every stored experiment, newest first, from the derived cache."""
        return [self._listed(h) for h in self._headers()]

    def _listed(self, h: tuple[Any, ...]) -> Record:
        """The record of one cache header (its metadata decoded only when read)."""
        return Record(self, h[ID], h[TREE], where=(h[OFFSET], h[LENGTH]))

    def _headers(self, *, defer: bool = False) -> list[tuple[Any, ...]]:
        """The cache's headers at the tip; ``defer``: a caller about to decode them all publishes new ones after (:meth:`_publish_deferred`)."""
        tip = self.tip
        if self._index is not None and self._index[0] == tip:
            return self._index[1]
        if tip is None:
            self._index = (None, [])
            return []
        self.document()  # format gate before reading anything else
        if self._cache is None:
            self._cache = IndexCache(self.repo.gitxp_dir / "cache", self.branch)
        headers = self._cache.headers(tip, lambda old: self._refresh(tip, old), defer=defer)
        self._index = (tip, headers)
        return headers

    def load(self, records: Sequence[Record]) -> None:
        """Decode the documents of many listed records now (a table reads them all).

        Many rows of the store's listing index to parse and check, as in the
        first table of a fresh clone, are split with a forked child
        (:func:`gitxp.threads.forked`): it decodes the older half from
        the cache, the only thing it reads (git's pack files share their file
        offsets with this process), and hands back each row it checked in the
        form the cache keeps, decoded here with one ``marshal.loads`` and kept
        as it is. Rows it did not check are read here, as are all of them
        when it failed. This machine's own cache blobs are not split: one
        decodes here in what receiving it from a child would cost.
        """
        todo = [r for r in records if not r.decoded]
        split = len(todo) >= PARALLEL_ROWS and self._mostly_unchecked(todo)
        theirs = todo[len(todo) // 2 :] if split else []  # copy-on-write slows the child as much as receiving its rows costs here

        def child() -> list[bytes | None]:
            out: list[bytes | None] = []
            for r in theirs:
                self._checked.pop(r.id, None)
                out.append(self._checked.get(r.id) if r.cached() is not None else None)
            return out

        wait = forked(child) if theirs else None
        for r in todo if wait is None else todo[: len(todo) - len(theirs)]:
            r.decode()
        if wait is None:
            return
        import marshal

        blobs = wait()
        if not isinstance(blobs, list) or len(blobs) != len(theirs):
            blobs = [None] * len(theirs)
        for r, blob in zip(theirs, blobs):
            if blob is None:
                r.decode()
                continue
            r.decode(marshal.loads(blob))
            self._keep_checked(r.id, blob)

    def _mostly_unchecked(self, records: Sequence[Record]) -> bool:
        """Whether most of eight records spread over ``records`` are listing rows still to check."""
        sample = records[:: max(1, len(records) // 8)][:8]
        return sum(r.unchecked for r in sample) * 2 > len(sample)

    def _record_data(self, exp_id: str, tree: str, where: tuple[int, int] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """An experiment's (meta, params): from the cache's blobs, else from git."""
        return self._cached_data(exp_id, tree, where) or self._read_summary(tree, exp_id)

    def _cache_blob(self, exp_id: str, where: tuple[int, int] | None, length: int | None = None) -> bytes | None:
        """An experiment's blob in the cache (new in this process, or at ``where`` on disk), or its first ``length`` bytes."""
        if self._cache is None:
            return None
        blob = self._cache.pending_blob(exp_id)
        if blob is None and where is not None and where[0] >= 0:
            blob = self._cache.read_blob(where[0], where[1] if length is None else min(length, where[1]))
        return blob

    def _unchecked(self, exp_id: str, where: tuple[int, int] | None) -> bool:
        blob = self._cache_blob(exp_id, where, 1)
        return blob is not None and blob[:1] == b"J"

    def _cached_data(self, exp_id: str, tree: str, where: tuple[int, int] | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """An experiment's (meta, params) from the cache's blobs, or None.

        A blob starting with ``J`` is a row of the store's listing index
        (pulled, so checked here like the files it stands for); any other is
        this machine's own marshal of already-checked documents.
        """
        import marshal

        blob = self._cache_blob(exp_id, where)
        if blob is not None and blob[:1] == b"J":
            docs = listing.decode_line(blob[1:], exp_id, tree)
            if docs is not None:
                meta, params = checked_summary(exp_id, docs[0], docs[1], [])
                self._checked_rows(exp_id, (meta, params))
                return meta, params
        elif blob is not None:
            try:
                meta, params = marshal.loads(blob)
                if meta.get("id") == exp_id:
                    return meta, params
            except (ValueError, EOFError, TypeError, AttributeError):
                pass
        return None

    def _checked_rows(self, exp_id: str, docs: tuple[dict[str, Any], dict[str, Any]] | None) -> None:
        """Keep checked listing rows in the cache in this machine's form, so the checks run once.

        Written once, when the store closes or the process exits, and only
        for many rows (a table): the write reloads and rewrites the cache's
        headers (0.1-0.2 s at 20,000), while checking the 20 rows of a
        ``log`` again costs 2 ms. ``docs`` None writes what is kept.
        """
        if docs is not None:
            self._keep_checked(exp_id, encode(docs))
            return
        self._publish_deferred()
        if len(self._checked) >= CHECKED_WORTH_WRITING and self._cache is not None and self._index is not None and self._index[0] is not None:
            self._cache.replace_blobs(self._index[0], self._checked)
        self._checked = {}

    def _publish_deferred(self) -> None:
        """Write a refresh held back for a batch decode, checked rows in place (they leave ``_checked``)."""
        if self._cache is not None:
            self._cache.publish_deferred(self._checked)

    def _keep_checked(self, exp_id: str, blob: bytes) -> None:
        if not self._writes_at_exit:
            import atexit

            atexit.register(self._checked_rows, "", None)
            self._writes_at_exit = True
        self._checked[exp_id] = blob

    def _refresh(self, tip: str, old_days: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
        root = self.repo.read_commit(tip)["tree"]
        exps = self.repo.lookup(root, layout.EXPERIMENTS_DIR)
        days: dict[str, Any] = {}
        pending: dict[str, bytes] = {}
        if exps is None or not exps.is_tree:
            return days, pending
        for day in self.repo.read_tree(exps.sha):
            if not day.is_tree:
                continue
            prev = old_days.get(day.name)
            if prev is not None and prev[0] == day.sha:
                days[day.name] = prev
                continue
            prev_exps = prev[1] if prev else {}
            found: dict[str, tuple[Any, ...]] = {}
            unknown = []
            for name, sha in self.repo.subtrees(day.sha):
                if not layout.is_id(name):
                    continue
                p = prev_exps.get(name)
                if p is not None and p[TREE] == sha:
                    found[name] = p
                else:
                    unknown.append((name, sha))
            rows = listing.day_rows(self.repo, root, day.name) if len(unknown) > ROWS_WORTH_READING else {}
            for name, sha in unknown:
                row = rows.get((name, sha))
                if row is not None:
                    blob = b"J" + row.line
                    pending[name] = blob
                    found[name] = (row.created, name, row.branch, row.status, row.name, sha, -1, len(blob))
                    continue
                meta, params = self._read_summary(sha, name)
                src: dict[str, Any] = meta["source"] if isinstance(meta.get("source"), dict) else {}
                blob = encode((meta, params))
                pending[name] = blob
                found[name] = (
                    str(meta.get("created") or ""), name, src.get("branch"), str(meta.get("status") or ""),
                    str(meta.get("name") or ""), sha, -1, len(blob),
                )
            days[day.name] = (day.sha, found)
        return days, pending

    def _read_summary(self, tree: str, exp_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(meta, params) of one stored experiment, read from its files; a damaged one never raises."""
        entries = {e.name: e for e in self.repo.read_tree(tree)}
        damage: list[str] = []

        def load(name: str) -> Any:
            e = entries.get(name)
            if e is None or e.mode not in (FILE_MODE, EXEC_MODE):
                if name == layout.EXPERIMENT_FILE:
                    damage.append(f"{name} is missing")
                return None
            try:
                return layout.load_yaml(self.repo.read_blob(e.sha), what=name)
            except UnsafeDataError as exc:
                damage.append(exc.message)
                return None

        return checked_summary(exp_id, load(layout.EXPERIMENT_FILE), load(layout.PARAMS_FILE), damage)

    def experiments(
        self,
        branch: str | None = None,
        status: str | None = None,
        name: str | None = None,
        where: str | None = None,
        limit: int | None = None,
        *,
        decoded: bool = False,
    ) -> Records:
        """Stored experiments, newest first, filtered (a list that Jupyter shows as a table).

        ``branch`` is the source branch the code was on; ``name`` is a glob;
        ``where`` is a query such as ``"params.lr < 0.01 and metrics.acc > 0.9"``.
        ``decoded`` decodes every record's metadata now, as one batch
        (:meth:`load`), for a caller that reads them all (a table); a
        ``where`` does so anyway.
        """
        try:
            return self._experiments(branch, status, name, where, limit, decoded)
        finally:
            self._publish_deferred()

    def _experiments(self, branch: str | None, status: str | None, name: str | None, where: str | None, limit: int | None, decoded: bool) -> Records:
        import fnmatch

        heads = self._headers(defer=decoded or bool(where))
        if branch is not None:
            heads = [h for h in heads if h[BRANCH] == branch]
        if status is not None:
            wanted = {s.strip() for s in status.split(",")}
            heads = [h for h in heads if h[STATUS] in wanted]
        if name is not None:
            heads = [h for h in heads if fnmatch.fnmatchcase(h[NAME], name)]
        if where:
            from gitxp.store.query import compile_filter

            keep = compile_filter(where)
            listed = [self._listed(h) for h in heads]
            self.load(listed)
            recs = [r for r in listed if keep(r.as_dict())]
            return Records(recs[:limit] if limit is not None else recs)
        if limit is not None:
            heads = heads[: max(limit, 0)]
        out = Records(map(self._listed, heads))
        if decoded:
            self.load(out)
        return out

    def get(self, ref: str) -> Record:
        """One experiment by ref: id, prefix, random-part prefix, name, ``@``, ``@~N``.

        Its metadata is read from its own files, not from the listing cache:
        in a plain ``git clone`` that cache may come from the store's listing
        index, and a view of one experiment (show, diff, get) must say what
        its files say.
        """
        rec = self._find(ref)
        meta, params = self._read_summary(rec.tree, rec.id)
        return Record(self, rec.id, rec.tree, meta, params)

    def _find(self, ref: str) -> Record:
        """The listing's record of ``ref`` (its id and tree are what count; metadata from the cache)."""
        from gitxp.store.resolve import ALIAS_PREFIX, resolve

        return resolve(self.index(), ref, self.aliases() if ref.strip().startswith(ALIAS_PREFIX) else None)

    def aliases(self) -> dict[str, str]:
        """``{alias: experiment id}`` of the aliases set on the store branch (``gitxp alias``)."""
        from gitxp.store import aliases

        return aliases.live(aliases.entries(self))

    def table(self, where: str | None = None, columns: Iterable[str] | None = None) -> Any:
        """One row per experiment: id, name, status, created, params.*, metrics.*, summary.*."""
        from gitxp.store.tables import experiments_table

        return experiments_table(self.experiments(where=where, decoded=True), columns=columns)

    def running(self) -> list[Record]:
        """Experiments still running (staged, owner alive), newest first; not yet in the store."""
        out = []
        for run in reversed(staging.list_runs(self.repo.gitxp_dir)):
            if run.is_dead():
                continue
            try:
                meta = run.read_meta()
                params = run.read_yaml("params.yaml", {}) or {}
            except (OSError, UnsafeDataError):
                continue  # finishing right now
            out.append(Record(self, run.id, "", meta=meta, params=params))
        return out

    def unrecovered(self) -> list[str]:
        return [r.id for r in staging.dead_runs(self.repo.gitxp_dir)]


#: A changed day folder with more experiments new to this machine than this reads the store's listing index.
ROWS_WORTH_READING = 16
#: Listing rows checked in one process worth keeping in the cache in checked form (see Store._checked_rows).
CHECKED_WORTH_WRITING = 500
#: Records to decode at once worth a forked second process (Store.load; the fork and the hand-back cost ~30 ms).
PARALLEL_ROWS = 2000


def checked_summary(exp_id: str, meta: Any, params: Any, damage: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(meta, params) as listings show them; a damaged experiment never raises.

    An experiment whose files do not parse or whose fields have the wrong
    type (data stored before pull validated it, or edited by hand) reads
    as status ``damaged``, with what is wrong in ``meta["damaged"]`` and
    only its well-formed fields kept, so that it never stops a listing.
    """
    if meta is not None and not isinstance(meta, dict):
        damage.append(f"{layout.EXPERIMENT_FILE} is not a mapping")
    meta = dict(meta) if isinstance(meta, dict) else {}
    problems = layout.experiment_problems(meta)
    if problems:
        damage += problems
        meta = {k: v for k, v in meta.items() if not layout.experiment_problems({k: v})}
    problems = layout.params_problems(params)
    if problems:
        damage += [f"{layout.PARAMS_FILE}: {p}" for p in problems]
        params = {}
    if damage:
        meta["status"] = "damaged"
        meta["damaged"] = damage
    meta["id"] = exp_id
    return meta, params if isinstance(params, dict) else {}


def open(path: str | os.PathLike[str] = ".") -> Store:  # noqa: A001 - the public name is gitxp.open
    """Open the experiment store of the repository at or above ``path``."""
    return Store.open(path)
