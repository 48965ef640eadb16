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
  Parquet with the expected columns.

Only folders whose tree id the local store does not already hold are
walked, so pulling an unchanged 5,000-experiment store again reads one
tree. The history behind the tip is not walked: gitxp reads only the tip.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Iterable
from typing import Any

from gitxp.store import aliases
from gitxp.store import layout
from gitxp.errors import UnsafeDataError
from gitxp.plumbing.repo import EXEC_MODE, FILE_MODE, TREE_MODE, Entry, Repo

#: How many problems an :class:`UnsafeDataError` lists before it stops looking.
MAX_PROBLEMS = 10

_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_YAML_MAPPINGS = (layout.EXPERIMENT_FILE, layout.PARAMS_FILE, layout.ENVIRONMENT_FILE)
_FIELD_CHECKS = {
    layout.EXPERIMENT_FILE: layout.experiment_problems,
    layout.PARAMS_FILE: layout.params_problems,
    layout.ENVIRONMENT_FILE: layout.environment_problems,
}


class _TooMany(Exception):
    """Stops the walk once enough problems are known to refuse the store."""


class Checker:
    """Collects problems while walking one fetched tree.

    ``known`` holds tree ids already present in the local store (its day
    folders and experiment folders): those were checked when they arrived
    or were written by this gitxp, so they are skipped.
    """

    def __init__(self, repo: Repo, known: set[str] | None = None) -> None:
        self.repo = repo
        self.known = known or set()
        self.problems: list[str] = []
        self.experiments_checked = 0

    def problem(self, text: str) -> None:
        self.problems.append(text)
        if len(self.problems) >= MAX_PROBLEMS:
            raise _TooMany

    # ------------------------------------------------------------ walking

    def entries(self, sha: str, where: str) -> list[Entry]:
        """A tree's entries with their names checked (bad ones reported and dropped)."""
        try:
            items = self.repo.read_tree(sha)
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
        for day in self.entries(sha, layout.EXPERIMENTS_DIR):
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
                if xp.sha in self.known:
                    continue
                self.check_experiment(xp, day.name)

    def check_experiment(self, xp: Entry, day: str) -> None:
        where = f"{layout.EXPERIMENTS_DIR}/{day}/{xp.name}"
        if xp.mode != TREE_MODE:
            self.problem(f"{where}: not a folder")
            return
        if not layout.is_id(xp.name) or layout.id_day(xp.name) != day:
            self.problem(f"{where}: not a valid experiment id for day {day}")
            return
        self.experiments_checked += 1
        for e in self.entries(xp.sha, where):
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
            return self.repo.read_blob(e.sha)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            self.problem(f"{path}: unreadable file ({exc})")
            return None

    def check_yaml(self, e: Entry, path: str, exp_id: str) -> None:
        if e.mode == TREE_MODE:
            self.problem(f"{path}: a folder where a YAML file belongs")
            return
        data = self.blob(e, path)
        if data is None:
            return
        try:
            doc = layout.load_yaml(data, what=path)
        except UnsafeDataError as exc:
            self.problem(exc.message)
            return
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
        from gitxp.artifacts import files as artifacts

        try:  # types, duplicates, and names that clash (a file and a folder of one name)
            artifacts.check_manifest(doc, what=path)
        except UnsafeDataError as exc:
            self.problem(exc.message)

    def check_parquet(self, e: Entry, path: str, what: str) -> None:
        if e.mode == TREE_MODE:
            self.problem(f"{path}: a folder where a Parquet file belongs")
            return
        data = self.blob(e, path)
        if data is None:
            return
        from gitxp.store import parquet as metrics

        try:
            table = metrics.from_parquet_bytes(data, what=what)
        except UnsafeDataError as exc:
            self.problem(f"{path}: {exc.message}")
            return
        if what == layout.METRICS_FILE:
            for p in metrics.name_problems(table):
                self.problem(f"{path}: {p}")


def _name_ok(name: str) -> bool:
    return "\x00" not in name and git_name_problem(name) is None


# Code points HFS+ ignores when comparing names (git's utf8.c next_hfs_char).
_HFS_IGNORABLE = frozenset({0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF})


def _hfs_chars(raw: bytes) -> list[int]:
    """Code points as HFS+ compares them, ignorables dropped, ending in 0 (also at bad UTF-8)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw[: exc.start].decode("utf-8")
    return [ord(c) for c in text if ord(c) not in _HFS_IGNORABLE] + [0]


def _is_hfs_dotgit(raw: bytes, needle: str = "git") -> bool:
    chars = _hfs_chars(raw)
    n = len(needle)
    if len(chars) < n + 2 or chars[0] != ord("."):
        return False
    if any(c > 127 or chr(c).lower() != want for c, want in zip(chars[1 : n + 1], needle)):
        return False
    return chars[n + 1] in (0, ord("/"))


def _is_ntfs_dot_generic(raw: bytes, needle: bytes, short: bytes) -> bool:
    """git's ``is_ntfs_dot_generic``: ``.needle``, its 8.3 names ``NEEDLE~1..4`` and ``<short>~N``."""

    def rest_ok(i: int) -> bool:
        for c in raw[i:]:
            if c == ord(":"):
                return True
            if c not in b". ":
                return False
        return True

    low = raw.lower()
    if low[:1] == b"." and low[1 : 1 + len(needle)] == needle:
        return rest_ok(1 + len(needle))
    if low[:6] == needle[:6] and raw[6:7] == b"~" and raw[7:8] in (b"1", b"2", b"3", b"4"):
        return rest_ok(8)
    i, saw_tilde = 0, False
    while i < 8:
        if i >= len(raw):
            return False
        c = raw[i]
        if saw_tilde:
            if not 0x30 <= c <= 0x39:
                return False
        elif c == ord("~"):
            i += 1
            if i >= len(raw) or not 0x31 <= raw[i] <= 0x39:
                return False
            saw_tilde = True
        elif i >= 6 or c & 0x80 or bytes([c]).lower() != short[i : i + 1]:
            return False
        i += 1
    return rest_ok(8)


def _special(raw: bytes, needle: str, short: bytes) -> bool:
    """Is this entry (or a backslash-separated part of it) ``.gitmodules``/``.gitattributes`` to some filesystem?"""
    if _is_hfs_dotgit(raw, needle):
        return True
    return any(_is_ntfs_dot_generic(seg, needle.encode(), short) for seg in [raw, *raw.split(b"\\")[1:]])


#: git's limit on a line of .gitattributes (``ATTR_MAX_LINE_LENGTH``) and on the file (``ATTR_MAX_FILE_SIZE``).
_ATTR_MAX_LINE = 2048
_ATTR_MAX_FILE = 100 * 2**20


def gitmodules_problems(data: bytes) -> list[str]:
    """git fsck's errors for the content of a ``.gitmodules`` blob (an unparsable one is only a notice)."""
    from urllib.parse import unquote_to_bytes

    from gitxp.plumbing.gitconfig import parse_config

    sections = parse_config(data)
    if sections is None:  # git reports gitmodulesParse as information only
        return []
    out: list[str] = []
    for section, items in sections:
        if len(section) != 2 or section[0].lower() != b"submodule":
            continue
        name = section[1]
        if not name or b".." in re.split(rb"[/\\]", name):
            out.append("gitmodulesName")
        for key, value in items:
            key = key.lower()
            if key == b"url" and (value.startswith(b"-") or (
                value.startswith((b"./", b"../", b"git://", b"http://", b"https://", b"ftp://", b"ftps://"))
                and b"\n" in unquote_to_bytes(value)) or b"\n" in value):
                out.append("gitmodulesUrl")
            elif key == b"path" and value.startswith(b"-"):
                out.append("gitmodulesPath")
            elif key == b"update" and value.startswith(b"!"):
                out.append("gitmodulesUpdate")
    return out


def gitattributes_problems(data: bytes) -> list[str]:
    """git fsck's errors for a ``.gitattributes`` blob: too large, or a line too long to parse."""
    if len(data) > _ATTR_MAX_FILE:
        return ["gitattributesLarge"]
    return ["gitattributesLineLength"] if any(len(line) >= _ATTR_MAX_LINE for line in data.split(b"\n")) else []


def _is_ntfs_dotgit(raw: bytes) -> bool:
    low = raw.lower()
    if low.startswith(b".git"):
        rest = raw[4:]
    elif low.startswith(b"git~1"):
        rest = raw[5:]
    else:
        return False
    for c in rest:
        if c in b"\\/:":
            return True
        if c not in b". ":
            return False
    return True


def git_name_problem(name: str | bytes) -> str | None:
    """git fsck's verdict on one tree entry name: its message id, or None when git accepts it.

    The same rules as git's ``fsck_tree`` (``is_hfs_dotgit``/``is_ntfs_dotgit``
    in git's utf8.c and path.c), so that nothing gitxp merges can make
    ``git fsck --strict`` fail or a remote with ``receive.fsckObjects`` refuse
    the next push: ``.git`` in any letter case, with trailing dots or spaces
    or an NTFS stream suffix (``.git::$INDEX_ALLOCATION``), as the 8.3 short
    name ``git~1``, after a backslash, or spelt with the code points HFS+
    ignores (``.g\\u200cit``). Names come from :meth:`Repo.read_tree`
    (``surrogateescape``) or raw tree bytes.
    """
    raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
    if not raw:
        return "emptyName"
    if b"/" in raw:
        return "fullPathname"
    if raw == b".":
        return "hasDot"
    if raw == b"..":
        return "hasDotdot"
    if _is_hfs_dotgit(raw) or _is_ntfs_dotgit(raw) or any(_is_ntfs_dotgit(seg) for seg in raw.split(b"\\")[1:]):
        return "hasDotgit"
    return None


_GIT_MODES = {b"40000": TREE_MODE, b"100644": FILE_MODE, b"100755": EXEC_MODE, b"120000": 0o120000, b"160000": 0o160000}


def tree_object_problems(data: bytes) -> list[tuple[str, str]]:
    """``(entry name, git fsck message id)`` for what ``git fsck --strict`` refuses in one raw tree.

    Names by :func:`git_name_problem`; modes must be one of git's five,
    written without zero padding; entries sorted in git's order (a folder
    sorts as ``name/``) and unique.
    """
    out: list[tuple[str, str]] = []
    keys: list[bytes] = []
    names: set[bytes] = set()
    i, n = 0, len(data)
    while i < n:
        sp, nul = data.find(b" ", i), data.find(b"\0", i)
        if sp < 0 or nul < sp or nul + 21 > n:
            return out + [("", "badTree")]
        mode, raw = data[i:sp], data[sp + 1 : nul]
        name = raw.decode("utf-8", "surrogateescape")
        if mode not in _GIT_MODES:
            out.append((name, "zeroPaddedFilemode" if mode.lstrip(b"0") in _GIT_MODES else "badFilemode"))
        problem = git_name_problem(raw)
        if problem:
            out.append((name, problem))
        if mode == b"120000" and _special(raw, "gitmodules", b"gi7eba"):
            out.append((name, "gitmodulesSymlink"))
        key = raw + b"/" if mode.lstrip(b"0") == b"40000" else raw
        if raw in names:
            out.append((name, "duplicateEntries"))
        elif keys and key <= keys[-1]:
            out.append((name, "treeNotSorted"))
        keys.append(key)
        names.add(raw)
        i = nul + 21
    return out


_HEX40 = re.compile(rb"[0-9a-fA-F]{40}")


def _ident_problem(line: bytes) -> str | None:
    """git fsck's ``fsck_ident`` on ``Name <email> date tz`` (after ``author ``/``committer ``)."""
    if line.startswith(b"<"):
        return "missingNameBeforeEmail"
    m = re.match(rb"[^<>\n]*", line)
    p = m.end() if m else 0
    if line[p:p + 1] == b">":
        return "badName"
    if line[p:p + 1] != b"<":
        return "missingEmail"
    if line[p - 1:p] != b" ":
        return "missingSpaceBeforeEmail"
    q = line.find(b">", p + 1)
    if q < 0 or re.search(rb"[<\n]", line[p + 1:q]):
        return "badEmail"
    rest = line[q + 1:]
    if not rest.startswith(b" "):
        return "missingSpaceBeforeDate"
    rest = rest[1:]
    if rest[:1] == b"0" and rest[1:2] != b" ":
        return "zeroPaddedDate"
    d = re.match(rb"[ \t]*([+-]?)([0-9]*)", rest)
    digits = d.group(2) if d else b""
    if digits and (d.group(1) == b"-" or int(digits) >= 2**63):  # type: ignore[union-attr]
        return "badDateOverflow"
    end = d.end() if d else 0
    if not digits or rest[end:end + 1] != b" ":
        return "badDate"
    if not re.fullmatch(rb"[+-][0-9]{4}", rest[end + 1:]):
        return "badTimezone"
    return None


def commit_object_problems(data: bytes) -> list[str]:
    """git fsck message ids for what ``git fsck --strict`` refuses in one raw commit (headers and NUL)."""
    out: list[str] = []
    head = data.split(b"\n\n", 1)[0]
    lines = head.split(b"\n")
    i = 0
    if not lines[0].startswith(b"tree "):
        return ["missingTree"]
    if not _HEX40.fullmatch(lines[0][5:]):
        return ["badTreeSha1"]
    i = 1
    while i < len(lines) and lines[i].startswith(b"parent "):
        if not _HEX40.fullmatch(lines[i][7:]):
            return ["badParentSha1"]
        i += 1
    authors = 0
    while i < len(lines) and lines[i].startswith(b"author "):
        authors += 1
        problem = _ident_problem(lines[i][7:])
        if problem:
            return out + [problem]
        i += 1
    if authors != 1:
        return out + ["missingAuthor" if not authors else "multipleAuthors"]
    if i >= len(lines) or not lines[i].startswith(b"committer "):
        return out + ["missingCommitter"]
    problem = _ident_problem(lines[i][10:])
    if problem:
        return out + [problem]
    if b"\0" in data:
        out.append("nulInCommit")
    return out


def check_fetched(repo: Repo, tip: str, is_new: Callable[[str], bool], *, source: str = "the remote") -> None:
    """git's ``fetch.fsckObjects`` for the dulwich engine: every fetched commit and folder.

    Walks the history of ``tip`` and every tree below it, but only objects
    for which ``is_new`` holds (those in the quarantine the fetch wrote), so
    a pull costs what it fetched. Unlike :func:`check_tree` this covers the
    code snapshots and older commits too: any object ``git fsck --strict``
    would refuse is refused here before it reaches the object store.

    Raises:
        UnsafeDataError: listing up to :data:`MAX_PROBLEMS` problems.
    """
    problems: list[str] = []
    seen: set[str] = set()
    commits = [tip]
    trees: list[tuple[str, str]] = []
    while commits and len(problems) < MAX_PROBLEMS:
        sha = commits.pop()
        if sha in seen or not is_new(sha):
            continue
        seen.add(sha)
        try:
            kind, raw = repo.read_raw(sha)
            if kind != "commit":
                problems.append(f"commit {sha[:12]}: a {kind}, not a commit")
                continue
            info = repo.read_commit(sha)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            problems.append(f"commit {sha[:12]}: unreadable ({exc})")
            continue
        bad = commit_object_problems(raw)
        if bad:
            problems += [f"commit {sha[:12]}: {what} (git fsck refuses it)" for what in bad]
            continue
        if not isinstance(info.get("tree"), str) or not re.fullmatch(r"[0-9a-f]{40}", info["tree"]):
            problems.append(f"commit {sha[:12]}: no tree")
            continue
        trees.append((info["tree"], ""))
        commits.extend(info["parents"])
    while trees and len(problems) < MAX_PROBLEMS:
        sha, where = trees.pop()
        if sha in seen or not is_new(sha):
            continue
        seen.add(sha)
        try:
            kind, data = repo.read_raw(sha)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            problems.append(f"{where or '/'}: unreadable folder ({exc})")
            continue
        if kind != "tree":
            problems.append(f"{where or '/'}: a {kind} where a folder belongs")
            continue
        problems += [f"{where}/{name!r}: invalid entry ({what}: git fsck refuses it)" for name, what in tree_object_problems(data)]
        for e in repo.read_tree(sha):
            path = f"{where}/{e.name}" if where else e.name
            if e.mode == TREE_MODE and git_name_problem(e.name) is None:
                trees.append((e.sha, path))
            raw = e.name.encode("utf-8", "surrogateescape")
            for needle, short, check in (("gitmodules", b"gi7eba", gitmodules_problems), ("gitattributes", b"gi7d29", gitattributes_problems)):
                if e.mode == 0o120000 or not _special(raw, needle, short):
                    continue
                if e.mode == TREE_MODE:
                    problems.append(f"{path}: {'gitmodulesBlob' if needle == 'gitmodules' else 'gitattributesBlob'} (git fsck refuses it)")
                elif e.mode != 0o160000:
                    try:
                        problems += [f"{path}: {what} (git fsck refuses it)" for what in check(repo.read_blob(e.sha))]
                    except Exception as exc:  # noqa: BLE001 - reported, not raised
                        problems.append(f"{path}: unreadable ({exc})")
    if problems:
        raise _refusal(problems[:MAX_PROBLEMS], source)


def _refusal(problems: list[str], source: str) -> UnsafeDataError:
    more = "+" if len(problems) >= MAX_PROBLEMS else ""
    err = UnsafeDataError(
        f"refusing the store fetched from {source}: {len(problems)}{more} problem(s), first: {problems[0]}",
        "nothing was merged; ask whoever pushed it to repair the store, or pull from another remote",
    )
    err.problems = problems  # type: ignore[attr-defined]
    err.candidates = problems  # type: ignore[attr-defined]
    return err


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

    ours = days(tree)
    theirs = days(incoming) if incoming else None
    for name, sha in ours.items():
        out.add(sha)
        if theirs is not None and theirs.get(name) in (None, sha):
            continue
        out.update(x.sha for x in repo.read_tree(sha) if x.is_tree)
    return out


def check_tree(repo: Repo, tree: str, *, known: Iterable[str] = (), source: str = "the remote") -> dict[str, Any]:
    """Validate a fetched store tree; return its ``gitxp.yaml`` or raise.

    Raises:
        FormatTooNewError: the fetched store has a newer format.
        UnsafeDataError: anything else is wrong. The message summarises;
            ``problems`` (also ``candidates``, which the CLI prints one per
            line) lists up to :data:`MAX_PROBLEMS` of them.
    """
    checker = Checker(repo, set(known))
    doc = checker.check_root(tree)
    if checker.problems or doc is None:
        raise _refusal(checker.problems or [f"{layout.STORE_FILE}: unreadable"], source)
    return doc
