"""Check a fetched store before anything of it is merged: pulled data is untrusted.

A remote store can be written by anyone with push access, or by a tool
that is not gitxp. Before ``gitxp pull`` (or the merge inside ``gitxp
push``) lets a fetched commit reach the local store branch, :func:`check_tree`
walks what is new in its tree and collects every problem it finds:

* tree entry names: no ``..``, ``.``, ``/``, NUL, empty names, ``.git`` in
  any letter case;
* modes: only regular files (100644, 100755) and folders, so no symlink or
  gitlink can be written out by ``gitxp get`` or ``checkout``. The ``code/``
  folder is the user's own code snapshot: anything git allows is allowed
  there, and gitxp never writes it out through its own paths;
* ``gitxp.yaml`` is valid (a newer format raises :class:`FormatTooNewError`
  at once: such a store would be misread);
* day folders are ``YYYY-MM-DD`` dates, experiment folders valid ids of
  that day, ``experiment.yaml``'s ``id`` matches its folder;
* every YAML file parses with the safe loader under the size limit, into a
  mapping (a list for ``artifacts.yaml``) whose paths stay inside their folder;
* ``metrics.parquet``, ``hardware.parquet`` and ``tables/*.parquet`` are
  Parquet with the expected columns;
* ``listing/`` holds day folders of listing files (:mod:`gitxp.store.listing`)
  whose rows say exactly what the files of the experiments they name say.

Only folders whose tree id the local store does not already hold are
walked, so pulling an unchanged 5,000-experiment store again reads one
tree. The history behind the tip is not walked: gitxp reads only the tip.
A first pull of a big store is what costs: experiment folders and their
YAML files are read ahead in groups through one ``git cat-file --batch``
(:mod:`gitxp.plumbing.batch`), and from 2,000 experiments on half of them
are checked in a forked child whose findings are replayed in walk order, so
the problems, and their order, are those of one process.
git's own rules for every fetched object (names, modes, commit headers,
``.gitmodules``) are :mod:`gitxp.plumbing.fsck`'s.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Iterable
from typing import Any

from gitxp.store import aliases
from gitxp.store import layout
from gitxp.store import listing
from gitxp.errors import StoreError, UnsafeDataError
from gitxp.plumbing.batch import ObjectReader
from gitxp.plumbing.fsck import MAX_PROBLEMS, git_name_problem, refusal
from gitxp.plumbing.repo import EXEC_MODE, FILE_MODE, TREE_MODE, Entry, Repo
from gitxp.plumbing.trees import parse_tree


_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_YAML_MAPPINGS = (layout.EXPERIMENT_FILE, layout.PARAMS_FILE, layout.ENVIRONMENT_FILE)
_FIELD_CHECKS = {
    layout.EXPERIMENT_FILE: layout.experiment_problems,
    layout.PARAMS_FILE: layout.params_problems,
    layout.ENVIRONMENT_FILE: layout.environment_problems,
}
#: Experiments whose folders and YAML files are read ahead together (one group of ids to git).
_READ_AHEAD = 512
#: Experiments to check from which the caller's ``progress`` hears their number (a second or more).
_SAY_FROM = 1000
#: Experiments to check from which half of them are checked in a forked child (forking costs ~50 ms).
_FORK_FROM = 2000
#: The files read ahead with their folders.
_READ_AHEAD_FILES = frozenset({*_YAML_MAPPINGS, layout.ARTIFACTS_FILE, layout.METRICS_FILE, layout.HARDWARE_FILE})
#: A file larger than this, or past this many bytes read ahead in all, is read when it is checked.
_AHEAD_LIMIT = 4 << 20
_AHEAD_BYTES = 64 << 20


class _TooMany(Exception):
    """Stops the walk once enough problems are known to refuse the store."""


class Checker:
    """Collects problems while walking one fetched tree.

    ``known`` holds tree ids already present in the local store (its day
    folders and experiment folders): those were checked when they arrived
    or were written by this gitxp, so they are skipped.
    """

    def __init__(self, repo: Repo, known: set[str] | None = None, *, engine: str | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        self.repo = repo
        self.known = known or set()
        self.problems: list[str] = []
        self.experiments_checked = 0
        self.parsed: dict[str, Any] = {}  # blob id -> document, for the listing rows' check
        self.folders: dict[str, str] = {}  # experiment id -> folder id, of every day folder walked
        self.files: dict[str, dict[str, str]] = {}  # experiment folder id -> {YAML file name: blob id}, of those checked
        self._reader = ObjectReader(repo, engine)
        # objects read ahead, id -> content, by kind (a hostile entry may name a tree as a file): the current
        # group's folders and files, and the day folders, kept while groups come and go
        self._trees: dict[str, bytes] = {}
        self._blobs: dict[str, bytes] = {}
        self._days: dict[str, bytes] = {}
        self._engine = engine
        self._progress = progress  # told how many experiments a walk of at least _SAY_FROM checks
        self._theirs: set[str] = set()  # day/id of the experiments a forked child checks
        self._wait: Any = None
        self._results: dict[str, Any] | None = None
        self._plan: list[str] = []  # experiment folders the walk will check, in order
        self._planned: dict[str, int] = {}
        self._clean: set[tuple[str, str]] = set()  # (file name, blob id) of YAML files checked without a problem

    def close(self) -> None:
        if self._wait is not None and self._results is None:
            self._results = {}
            self._wait()  # a walk stopped early: the child is reaped, never left behind
        self._reader.close()

    def __enter__(self) -> Checker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def problem(self, text: str) -> None:
        self.problems.append(text)
        if len(self.problems) >= MAX_PROBLEMS:
            raise _TooMany

    # ------------------------------------------------------------ walking

    def entries(self, sha: str, where: str) -> list[Entry]:
        """A tree's entries with their names checked (bad ones reported and dropped)."""
        try:
            items = parse_tree(self._read(sha, "tree"))
        except Exception as exc:  # noqa: BLE001 - a missing or mistyped object is a problem to report
            self.problem(f"{where or '/'}: unreadable folder ({exc})")
            return []
        good = []
        for e in items:
            if not _name_ok(e.name):
                self.problem(f"{where}/{e.name!r}: invalid entry name ({git_name_problem(e.name) or 'NUL byte'})")
                continue
            problem = layout.text_problem(e.name)
            if problem:  # gitxp's own folders only (code/ is never walked here): names stay one printable line
                self.problem(f"{where}/{e.name!r}: invalid entry name (a {problem})")
                continue
            good.append(e)
        return good

    def check_root(self, tree: str) -> dict[str, Any] | None:
        """Walk a whole store tree; returns its ``gitxp.yaml`` (None if unreadable)."""
        doc: dict[str, Any] | None = None
        try:
            entries = {e.name: e for e in self.entries(tree, "")}
            store_file = entries.pop(layout.STORE_FILE, None)
            if store_file is None or store_file.mode not in (FILE_MODE, EXEC_MODE):
                self.problem(f"{layout.STORE_FILE}: missing or not a regular file")
            else:
                data = self.blob(store_file, layout.STORE_FILE)
                if data is not None:
                    # FormatTooNewError propagates on purpose: never misread a newer store.
                    try:
                        doc = layout.check_store_document(layout.load_yaml(data, what=layout.STORE_FILE))
                    except UnsafeDataError as exc:
                        self.problem(exc.message)
            exps = entries.pop(layout.EXPERIMENTS_DIR, None)
            if exps is not None:
                if exps.mode != TREE_MODE:
                    self.problem(f"{layout.EXPERIMENTS_DIR}: not a folder")
                elif exps.sha not in self.known:
                    self.check_days(exps.sha)
            rows = entries.pop(listing.LISTING_DIR, None)
            if rows is not None:
                self.check_listing(tree, rows)
            alias_file = entries.get(aliases.FILE)
            if alias_file is not None and alias_file.mode in (FILE_MODE, EXEC_MODE) and alias_file.sha not in self.known:
                data = self.blob(alias_file, aliases.FILE)
                try:
                    for problem in aliases.problems(layout.load_yaml(data, what=aliases.FILE)) if data is not None else []:
                        self.problem(problem)
                except UnsafeDataError as exc:
                    self.problem(exc.message)
            for name, e in sorted(entries.items()):
                self.check_plain(e, name)
        except _TooMany:
            pass
        return doc

    def check_days(self, sha: str) -> None:
        days = self.entries(sha, layout.EXPERIMENTS_DIR)
        self._plan_reads(days)
        for day in days:
            where = f"{layout.EXPERIMENTS_DIR}/{day.name}"
            if day.mode != TREE_MODE:
                self.problem(f"{where}: not a folder")
                continue
            if not _day_ok(day.name):
                self.problem(f"{where}: day folder is not named YYYY-MM-DD")
                continue
            if day.sha in self.known:
                continue
            for xp in self.entries(day.sha, where):
                if xp.sha in self.known or self._replay(xp, day.name):
                    continue
                self.check_experiment(xp, day.name)

    def _plan_reads(self, days: list[Entry]) -> None:
        """Before the walk: which experiment folders it will check, in its order, to read them ahead in groups.

        Reports nothing (the walk does, in order); records every
        experiment's folder id for the listing check.
        """
        walked = [d for d in days if d.mode == TREE_MODE and _day_ok(d.name) and d.sha not in self.known]
        self._days = self._read_ahead([d.sha for d in walked], "tree")
        plan: list[tuple[Entry, str]] = []
        for day in walked:
            for xp in _entries(self._days, day.sha):
                self.folders[xp.name] = xp.sha
                if xp.mode == TREE_MODE and xp.sha not in self.known:
                    plan.append((xp, day.name))
        if self._progress is not None and len(plan) >= _SAY_FROM:
            self._progress(len(plan))
        if len(plan) >= _FORK_FROM:
            plan = self._share(plan)
        self._plan = [xp.sha for xp, _ in plan]
        self._planned = {sha: i for i, sha in enumerate(self._plan)}

    def _share(self, plan: list[tuple[Entry, str]]) -> list[tuple[Entry, str]]:
        """Check the second half of ``plan`` in a forked child (:func:`gitxp.threads.forked`); return the half left here.

        Parsing YAML holds the GIL: a second core halves a big pull's check.
        The walk replays the child's findings in its own order
        (:meth:`_replay`), so problems read exactly as from one process.
        """
        from gitxp.threads import forked

        half = len(plan) // 2
        theirs = plan[half:]
        wait = forked(lambda: self._check_alone(theirs))
        if wait is None:
            return plan
        self._theirs = {f"{day}/{xp.name}" for xp, day in theirs}
        self._wait = wait
        return plan[:half]

    def _check_alone(self, todo: list[tuple[Entry, str]]) -> dict[str, Any]:
        """In the child: each experiment's problems, YAML file ids and parsed documents, by ``day/id``."""
        import marshal

        self._reader = ObjectReader(self.repo, self._engine)  # the parent's git process stays the parent's
        self._plan = [xp.sha for xp, _ in todo]
        self._planned = {sha: i for i, sha in enumerate(self._plan)}
        out: dict[str, Any] = {}
        found = 0
        for xp, day in todo:
            self.problems = []
            try:
                self.check_experiment(xp, day)
            except _TooMany:
                pass
            files = self.files.get(xp.sha, {})
            result = (self.problems, files, {sha: self.parsed[sha] for sha in files.values() if sha in self.parsed})
            try:
                marshal.dumps(result)
            except ValueError:  # a document marshal cannot carry (a YAML timestamp): the parent checks this one
                continue
            out[f"{day}/{xp.name}"] = result
            found += len(self.problems)
            if found >= MAX_PROBLEMS:
                break
        self._reader.close()
        return out

    def _replay(self, xp: Entry, day: str) -> bool:
        """What the child found for one experiment, reported here; False when the parent must check it."""
        key = f"{day}/{xp.name}"
        if key not in self._theirs:
            return False
        if self._results is None:
            got = self._wait()
            self._results = got if isinstance(got, dict) else {}
        result = self._results.get(key)
        if result is None:
            return False
        problems, files, parsed = result
        self.experiments_checked += 1
        self.files[xp.sha] = files
        self.parsed.update(parsed)
        for problem in problems:
            self.problem(problem)
        return True

    def _next_group(self, sha: str) -> None:
        """An experiment folder about to be checked: read it and the next ones, folders then the files checked, unless already read."""
        i = self._planned.get(sha)
        if i is None or sha in self._trees:
            return
        self._trees = trees = self._read_ahead(self._plan[i : i + _READ_AHEAD], "tree")
        files = {e.sha: None for xp in trees for e in _entries(trees, xp) if e.name in _READ_AHEAD_FILES and (e.name, e.sha) not in self._clean}
        self._blobs = self._read_ahead(list(files), "blob", sum(map(len, trees.values())))

    def _read_ahead(self, shas: list[str], kind: str, held: int = 0) -> dict[str, bytes]:
        """Read objects the walk will need into memory, all at once (see :mod:`gitxp.plumbing.batch`).

        Anything not kept here (missing, of another kind, over
        :data:`_AHEAD_LIMIT` or past :data:`_AHEAD_BYTES` in all, or git
        failing) is read again alone where it is checked, and reported there
        with its path: a hostile store's big files cost no more memory here
        than one at a time.
        """
        out: dict[str, bytes] = {}
        try:
            for sha, got, data in self._reader.read(shas, limit=_AHEAD_LIMIT):
                if got == kind and data is not None and held + len(data) <= _AHEAD_BYTES:
                    out[sha] = data
                    held += len(data)
        except StoreError:
            pass
        return out

    def _read(self, sha: str, kind: str) -> bytes:
        """An object's content, read ahead or now; StoreError when it is missing or not a ``kind``."""
        ahead = self._trees.get(sha, self._days.get(sha)) if kind == "tree" else self._blobs.get(sha)
        if ahead is not None:
            return ahead
        got, data = self.repo.read_raw(sha)
        if got != kind:
            raise StoreError(f"object {sha[:12]} is a {got}, not a {'folder' if kind == 'tree' else 'file'}", "the store may be damaged or hostile")
        return data

    def check_listing(self, root: str, folder: Entry) -> None:
        """The listing index: day folders of listing files, each new row true to its experiment's files."""
        where = listing.LISTING_DIR
        if folder.mode != TREE_MODE:
            self.problem(f"{where}: not a folder")
            return
        if folder.sha in self.known:
            return
        files: list[tuple[str, Entry]] = []
        for day in self.entries(folder.sha, where):
            path = f"{where}/{day.name}"
            if day.mode != TREE_MODE or not _day_ok(day.name):
                self.problem(f"{path}: not a day folder named YYYY-MM-DD")
                continue
            if day.sha in self.known:
                continue
            for e in self.entries(day.sha, path):
                if e.mode != FILE_MODE:
                    self.problem(f"{path}/{e.name}: not a regular file")
                elif e.sha not in self.known:
                    files.append((f"{path}/{e.name}", e))
        for problem in listing.row_problems(self.repo, root, files, self.experiment_docs, self.folder):
            self.problem(problem)

    def experiment_docs(self, tree: str, exp_id: str) -> tuple[Any, Any]:
        """An experiment's experiment.yaml and params.yaml as parsed (None where missing or unreadable).

        Those of an experiment checked in this walk were parsed already;
        another (one the local store holds) is read now.
        """
        walked = self.files.get(tree)
        out: list[Any] = []
        for name in (layout.EXPERIMENT_FILE, layout.PARAMS_FILE):
            try:
                if walked is not None:
                    sha = walked.get(name)
                    out.append(None if sha is None else self.parsed.get(sha))
                    continue
                e = self.repo.lookup(tree, name)
                if e is None or e.is_tree:
                    out.append(None)
                elif e.sha in self.parsed:
                    out.append(self.parsed[e.sha])
                else:
                    out.append(layout.load_yaml(self.repo.read_blob(e.sha), what=name))
            except (UnsafeDataError, StoreError):
                out.append(None)
        return out[0], out[1]

    def folder(self, root: str, exp_id: str) -> str | None:
        """The id of experiment ``exp_id``'s folder in the store tree ``root``, or None."""
        if exp_id in self.folders:
            return self.folders[exp_id]
        e = self.repo.lookup(root, layout.experiment_dir(exp_id))
        return e.sha if e is not None else None

    def check_experiment(self, xp: Entry, day: str) -> None:
        where = f"{layout.EXPERIMENTS_DIR}/{day}/{xp.name}"
        if xp.mode != TREE_MODE:
            self.problem(f"{where}: not a folder")
            return
        if not layout.is_id(xp.name) or layout.id_day(xp.name) != day:
            self.problem(f"{where}: not a valid experiment id for day {day}")
            return
        self.experiments_checked += 1
        self._next_group(xp.sha)
        entries = self.entries(xp.sha, where)
        self.files[xp.sha] = {e.name: e.sha for e in entries if e.name in (layout.EXPERIMENT_FILE, layout.PARAMS_FILE) and e.mode in (FILE_MODE, EXEC_MODE)}
        for e in entries:
            path = f"{where}/{e.name}"
            if e.name == layout.CODE_DIR:
                if e.mode != TREE_MODE:
                    self.problem(f"{path}: not a folder")
                continue  # the user's code snapshot: git's rules, never written out by gitxp
            if not self.check_plain(e, path):
                continue
            if e.name in _YAML_MAPPINGS or e.name == layout.ARTIFACTS_FILE:
                self.check_yaml(e, path, xp.name)
            elif e.name in (layout.METRICS_FILE, layout.HARDWARE_FILE):
                self.check_parquet(e, path, e.name)
            elif e.name == layout.TABLES_DIR:
                for t in self.entries(e.sha, path):
                    if t.mode in (FILE_MODE, EXEC_MODE) and t.name.endswith(".parquet"):
                        self.check_parquet(t, f"{path}/{t.name}", f"table {t.name}")

    def check_plain(self, e: Entry, path: str) -> bool:
        """Only regular files and folders of regular files; False when ``e`` is bad."""
        if e.mode in (FILE_MODE, EXEC_MODE):
            return True
        if e.mode != TREE_MODE:
            kind = {0o120000: "a symlink", 0o160000: "a submodule link"}.get(e.mode, f"mode {e.mode:o}")
            self.problem(f"{path}: {kind} (only regular files are allowed)")
            return False
        if e.sha in self.known:
            return True
        for sub in self.entries(e.sha, path):
            self.check_plain(sub, f"{path}/{sub.name}")
        return True

    def blob(self, e: Entry, path: str) -> bytes | None:
        try:
            return self._read(e.sha, "blob")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            self.problem(f"{path}: unreadable file ({exc})")
            return None

    def file_blob(self, e: Entry, path: str, kind: str) -> bytes | None:
        """The bytes of ``path``, which must be a ``kind`` file: a folder there is a problem."""
        if e.mode == TREE_MODE:
            self.problem(f"{path}: a folder where a {kind} file belongs")
            return None
        return self.blob(e, path)

    def check_yaml(self, e: Entry, path: str, exp_id: str) -> None:
        """One YAML file; one found clean before (the same file name and bytes elsewhere) is not parsed again.

        Every experiment of an environment records the same
        ``environment.yaml``: checked once, not 20,000 times. An
        ``experiment.yaml`` is always checked (its id must match its folder).
        """
        key = (e.name, e.sha)
        if key in self._clean:
            return
        before = len(self.problems)
        self._check_yaml(e, path, exp_id)
        if len(self.problems) == before and e.name != layout.EXPERIMENT_FILE:
            self._clean.add(key)

    def _check_yaml(self, e: Entry, path: str, exp_id: str) -> None:
        data = self.file_blob(e, path, "YAML")
        if data is None:
            return
        try:
            doc = layout.load_yaml(data, what=path)
        except UnsafeDataError as exc:
            self.problem(exc.message)
            return
        if e.name in (layout.EXPERIMENT_FILE, layout.PARAMS_FILE):
            self.parsed[e.sha] = doc
        if e.name == layout.ARTIFACTS_FILE:
            self.check_manifest(doc, path)
        elif e.name == layout.PARAMS_FILE and doc is None:
            return  # an empty params file reads as no parameters
        elif not isinstance(doc, dict):
            self.problem(f"{path}: not a mapping")
        elif e.name == layout.EXPERIMENT_FILE and doc.get("id", exp_id) != exp_id:
            self.problem(f"{path}: id {doc.get('id')!r} does not match its folder")
        elif e.name in _FIELD_CHECKS:
            for p in _FIELD_CHECKS[e.name](doc)[:3]:
                self.problem(f"{path}: {p}")

    def check_manifest(self, doc: Any, path: str) -> None:
        if doc is None:
            return
        if not isinstance(doc, list):
            self.problem(f"{path}: not a list of artifacts")
            return
        for item in doc:
            if not isinstance(item, dict) or "path" not in item:
                self.problem(f"{path}: an entry without a path")
                continue
            try:
                layout.safe_relpath(item["path"], what="artifact path")
            except UnsafeDataError as exc:
                self.problem(f"{path}: {exc.message}")
                return
        from gitxp.artifacts import manifest as artifacts

        try:  # types, duplicates, and names that clash (a file and a folder of one name)
            artifacts.check_manifest(doc, what=path)
        except UnsafeDataError as exc:
            self.problem(exc.message)

    def check_parquet(self, e: Entry, path: str, what: str) -> None:
        data = self.file_blob(e, path, "Parquet")
        if data is None:
            return
        from gitxp.store import parquet_checks

        try:
            problems = parquet_checks.pull_problems(data, what=what)
        except UnsafeDataError as exc:
            problems = [exc.message]
        for p in problems:
            self.problem(f"{path}: {p}")


def _entries(objects: dict[str, bytes], sha: str) -> list[Entry]:
    """The entries of a tree read ahead (none when it was not, or is malformed: the walk reports that)."""
    try:
        return parse_tree(objects[sha]) if sha in objects else []
    except ValueError:
        return []


def _name_ok(name: str) -> bool:
    return "\x00" not in name and git_name_problem(name) is None


def _day_ok(name: str) -> bool:
    if not _DAY_RE.match(name):
        return False
    try:
        _dt.date.fromisoformat(name)
    except ValueError:
        return False
    return True


def known_trees(repo: Repo, tree: str | None, incoming: str | None = None) -> set[str]:
    """Tree ids of the local store that need no checking: ``experiments``, days, experiments.

    With ``incoming`` (the fetched root tree), experiment folders are listed
    only for the day folders that differ, so one new experiment in a
    5,000-experiment store costs a handful of tree reads.
    """
    out: set[str] = set()
    if tree is None:
        return out

    def days(root: str | None) -> dict[str, str]:
        e = repo.lookup(root, layout.EXPERIMENTS_DIR) if root else None
        if e is None or not e.is_tree:
            return {}
        if root == tree:
            out.add(e.sha)
        return {d.name: d.sha for d in repo.read_tree(e.sha) if d.is_tree}

    rows = repo.lookup(tree, listing.LISTING_DIR)
    if rows is not None and rows.is_tree:
        out.add(rows.sha)
        for day in repo.read_tree(rows.sha):
            if day.is_tree:
                out.add(day.sha)
                out.update(f.sha for f in repo.read_tree(day.sha))
    ours = days(tree)
    theirs = days(incoming) if incoming else None
    for name, sha in ours.items():
        out.add(sha)
        if theirs is not None and theirs.get(name) in (None, sha):
            continue
        out.update(x.sha for x in repo.read_tree(sha) if x.is_tree)
    return out


def check_tree(repo: Repo, tree: str, *, known: Iterable[str] = (), source: str = "the remote", engine: str | None = None,
               progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Validate a fetched store tree; return its ``gitxp.yaml`` or raise.

    Raises:
        FormatTooNewError: the fetched store has a newer format.
        UnsafeDataError: anything else is wrong. The message summarises;
            ``problems`` (also ``candidates``, which the CLI prints one per
            line) lists up to :data:`MAX_PROBLEMS` of them.
    """
    with Checker(repo, set(known), engine=engine, progress=progress) as checker:
        doc = checker.check_root(tree)
    if checker.problems or doc is None:
        raise refusal(checker.problems or [f"{layout.STORE_FILE}: unreadable"], source)
    return doc
