"""The snapshot's dulwich engine, for when the git binary is absent.

An lstat loop over the index that checks stat data *and* mode (dulwich's own
helpers miss chmod-only changes), a walk for untracked files that prunes
ignored directories, and ``dulwich.index.commit_tree``; it builds the tree id
that the git engine in :mod:`gitxp.plumbing.snapshot` builds. Clean/smudge
filters and autocrlf are not applied on this path.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitxp.errors import GitxpError, NotARepositoryError, StoreError
from gitxp.plumbing.refs import head_info
from gitxp.plumbing.snapshot import EMPTY_TREE, Snapshot, Withhold, _hash_file, _notable, _under

if TYPE_CHECKING:
    from dulwich.object_store import BaseObjectStore
    from dulwich.objects import ObjectID

_GITLINK = 0o160000


def capture_dulwich(repo_root: Path, git_dir: Path, rel_dir: str | None, cap: int, withhold: Withhold) -> Snapshot:
    """The fallback when git is absent: own stat loop + untracked walk + commit_tree."""
    from dulwich.errors import NotGitRepository
    from dulwich.repo import Repo

    commit, branch = head_info(repo_root, git_dir)
    try:
        repo = Repo(str(repo_root))
    except NotGitRepository as exc:
        raise NotARepositoryError(str(repo_root)) from exc
    with repo:
        try:
            return _build_dulwich(repo, repo_root, git_dir, rel_dir, cap, commit, branch, withhold)
        except GitxpError:
            raise
        except (KeyError, ValueError) as exc:
            raise StoreError(f"cannot read the repository to snapshot it: {exc}",
                             "check it with `git fsck` or use --no-code") from exc


def _build_dulwich(repo, repo_root: Path, git_dir: Path, rel_dir: str | None, cap: int,  # type: ignore[no-untyped-def]
                   commit: str | None, branch: str | None, withhold: Withhold) -> Snapshot:
    from dulwich.index import Index

    store = repo.object_store
    index_path = git_dir / "index"
    index = Index(str(index_path)) if index_path.is_file() else None
    index_mtime = index_path.stat().st_mtime_ns if index else 0
    head_tree = store[commit.encode()].tree if commit else None
    in_head = _in_head(store, head_tree)
    entries, oversized, tracked = _tracked_entries(index, repo_root, rel_dir, cap, index_mtime=index_mtime,
                                                   filemode=_config_bool(repo, b"filemode", True), in_head=in_head)
    dirty_untracked, untracked = _add_untracked(repo, repo_root, rel_dir, cap, tracked, entries, oversized)

    ignored = _xpignored(repo_root, set(entries) | oversized)
    withheld = {p for p, (sha, mode, hashed) in entries.items() if p not in ignored and (
        withhold.always_covers(p) or (mode != _GITLINK and (
            withhold.covers(p, sha.decode()) or (hashed and withhold.holds_text(repo_root / p)))
            and not in_head(p, sha, mode)))}
    moved = {p for p in oversized if withhold.covers(p)}
    withheld |= moved
    oversized -= moved
    skipped = tuple(sorted(p for p in ignored | oversized | withheld if os.path.lexists(repo_root / p)))
    kept = {p: e for p, e in entries.items() if p not in ignored and p not in withheld}
    for path, (sha, mode, new) in kept.items():
        if new:
            _write_blob(store, repo_root / path, mode, sha)
    tree = _commit_tree(store, kept) if kept else None
    head_sub = _head_subtree(store, head_tree, rel_dir)
    if oversized:
        dirty = True
    elif ignored or withheld:
        from dulwich.object_store import MemoryObjectStore
        dirty = _commit_tree(MemoryObjectStore(), entries) != head_sub
    else:
        dirty = tree != head_sub or (tree is None and dirty_untracked)
    notable = _notable(repo_root, untracked - ignored - withheld)
    return Snapshot(tree, commit, branch, dirty, skipped, rel_dir, notable)


def _in_head(store: BaseObjectStore, head_tree: ObjectID | None) -> Callable[[str, bytes, int], bool]:
    """``in_head(path, sha, mode)``: does HEAD's tree hold exactly this blob at ``path``?"""
    from dulwich.object_store import tree_lookup_path

    def in_head(path: str, sha: bytes, mode: int) -> bool:
        if head_tree is None:
            return False
        try:
            head_mode, head_sha = tree_lookup_path(store.__getitem__, head_tree, os.fsencode(path))
        except KeyError:
            return False
        return bool(head_sha == sha and head_mode == mode)

    return in_head


def _tracked_entries(index, repo_root: Path, rel_dir: str | None, cap: int, *, index_mtime: int, filemode: bool,  # type: ignore[no-untyped-def]
                     in_head: Callable[[str, bytes, int], bool]) -> tuple[dict[str, tuple[bytes, int, bool]], set[str], set[str]]:
    """The index's files as they are in the work tree: (entries, oversized paths, every tracked path).

    ``entries`` maps a path to (sha, mode, needs writing); a file whose stat
    data and mode match its index entry keeps the entry's id unread.
    """
    from dulwich.index import ConflictedIndexEntry, cleanup_mode

    entries: dict[str, tuple[bytes, int, bool]] = {}   # path -> (sha, mode, needs writing)
    oversized: set[str] = set()
    tracked: set[str] = set()
    entry: Any  # an IndexEntry, or a ConflictedIndexEntry where `conflicted` says so (mypy can't follow the flag)
    for raw_path, entry in (index.items() if index else ()):
        path = os.fsdecode(raw_path)
        tracked.add(path)
        if not _under(path, rel_dir):
            continue
        full = repo_root / path
        conflicted = isinstance(entry, ConflictedIndexEntry)
        if not conflicted and entry.mode == _GITLINK:
            sub = _submodule_head(full)
            entries[path] = (sub.encode() if sub else entry.sha, _GITLINK, False)
            continue
        try:
            st = full.lstat()
        except OSError:
            if not conflicted and entry.skip_worktree:
                entries[path] = (entry.sha, entry.mode, False)
            continue  # deleted: `git add -A` drops it
        if stat.S_ISDIR(st.st_mode):
            continue  # replaced by a folder: the walk adds its files
        mode = cleanup_mode(st.st_mode)
        if not filemode and stat.S_ISREG(st.st_mode) and not conflicted and stat.S_ISREG(entry.mode):
            mode = entry.mode
        same = (not conflicted and mode == entry.mode and st.st_size == entry.size
                and st.st_mtime_ns == _ns(entry.mtime) and _ns(entry.mtime) < index_mtime)
        if same:
            if stat.S_ISREG(mode) and st.st_size > cap and not in_head(path, entry.sha, mode):
                oversized.add(path)
            else:
                entries[path] = (entry.sha, mode, False)
            continue
        if stat.S_ISREG(mode) and st.st_size > cap:
            content = _hash_file(full).encode()  # hashed, never written
            if in_head(path, content, mode):
                entries[path] = (content, mode, False)
            else:
                oversized.add(path)
            continue
        entries[path] = (_blob_id(full, st), mode, True)
    return entries, oversized, tracked


def _add_untracked(repo, repo_root: Path, rel_dir: str | None, cap: int, tracked: set[str],  # type: ignore[no-untyped-def]
                   entries: dict[str, tuple[bytes, int, bool]], oversized: set[str]) -> tuple[bool, set[str]]:
    """Add the untracked files (and nested repositories) to ``entries``/``oversized``: (any found, the files added)."""
    from dulwich.index import cleanup_mode

    dirty_untracked = False
    untracked: set[str] = set()
    for path, st, gitlink in _walk_untracked(repo, repo_root, rel_dir, tracked):
        dirty_untracked = True
        if gitlink is not None:
            entries[path] = (gitlink.encode(), _GITLINK, False)
        elif stat.S_ISREG(st.st_mode) and st.st_size > cap:
            oversized.add(path)
        else:
            entries[path] = (_blob_id(repo_root / path, st), cleanup_mode(st.st_mode), True)
            untracked.add(path)
    return dirty_untracked, untracked


def _ns(value: object) -> int:
    if isinstance(value, tuple):
        return int(value[0]) * 1_000_000_000 + int(value[1])
    return int(float(value) * 1_000_000_000)  # type: ignore[arg-type]


def _config_bool(repo, name: bytes, default: bool) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(repo.get_config().get_boolean((b"core",), name, default))
    except KeyError:
        return default


def _blob_bytes(path: Path, mode: int) -> bytes:
    if stat.S_ISLNK(mode):
        return os.fsencode(os.readlink(path))
    return path.read_bytes()


def _blob_id(path: Path, st: os.stat_result) -> bytes:
    """The blob id git would give this file (content or link target)."""
    if stat.S_ISLNK(st.st_mode):
        data = _blob_bytes(path, st.st_mode)
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest().encode()
    return _hash_file(path).encode()


def _write_blob(store, path: Path, mode: int, sha: bytes) -> None:  # type: ignore[no-untyped-def]
    """Add one blob; another process writing the same object at once is a success."""
    from dulwich.file import FileLocked
    from dulwich.objects import Blob

    if sha in store:
        return
    blob = Blob.from_string(_blob_bytes(path, mode))
    try:
        store.add_object(blob)
    except FileLocked:
        deadline = time.monotonic() + 5.0
        while blob.id not in store:
            if time.monotonic() > deadline:
                raise StoreError(f"object {blob.id.decode()} stays locked",
                                 "remove a stale .lock file under .git/objects/") from None
            time.sleep(0.01)


def _commit_tree(store, entries: dict[str, tuple[bytes, int, bool]]) -> str | None:  # type: ignore[no-untyped-def]
    """Write the nested trees for ``entries``; ``None`` when there are none."""
    from dulwich.file import FileLocked
    from dulwich.index import commit_tree

    if not entries:
        return None
    items = [(os.fsencode(p), sha, mode) for p, (sha, mode, _) in entries.items()]
    for attempt in range(200):
        try:
            return commit_tree(store, items).decode()  # type: ignore[arg-type]  # dulwich's ObjectID is a NewType of bytes
        except FileLocked:  # a twin snapshot writes the same tree right now
            time.sleep(0.01 * (1 + attempt % 5))
    raise StoreError("tree objects stay locked", "remove stale .lock files under .git/objects/")


def _head_subtree(store, head_tree: bytes | None, rel_dir: str | None) -> str | None:  # type: ignore[no-untyped-def]
    """HEAD's tree restricted to ``rel_dir`` (paths kept), to decide ``dirty``."""
    from dulwich.object_store import MemoryObjectStore, tree_lookup_path

    if head_tree is None:
        return None
    if rel_dir is None:
        return None if head_tree.decode() == EMPTY_TREE else head_tree.decode()
    try:
        mode, sub = tree_lookup_path(store.__getitem__, head_tree, os.fsencode(rel_dir))  # type: ignore[arg-type]  # ObjectID is a NewType of bytes
    except KeyError:
        return None
    if not stat.S_ISDIR(mode):
        return None
    memory = MemoryObjectStore()
    entries = {}
    for item in store.iter_tree_contents(sub):
        entries[f"{rel_dir}/{os.fsdecode(item.path)}"] = (item.sha, item.mode, False)
    return _commit_tree(memory, entries)


def _submodule_head(path: Path) -> str | None:
    """The commit a checked-out submodule (or embedded repository) is at."""
    dot_git = path / ".git"
    try:
        if dot_git.is_file():
            text = dot_git.read_text(encoding="utf-8").strip()
            if not text.startswith("gitdir:"):
                return None
            sub_git = (path / text[7:].strip()).resolve()
        elif dot_git.is_dir():
            sub_git = dot_git
        else:
            return None
        return head_info(path, sub_git)[0]
    except (OSError, GitxpError):
        return None


def _walk_untracked(repo, repo_root: Path, rel_dir: str | None,  # type: ignore[no-untyped-def]
                    tracked: set[str]):
    """Yield ``(path, lstat, gitlink_commit)`` for untracked, non-ignored files.

    Ignored folders are pruned (not descended), ``.git`` entries are skipped
    everywhere, and a folder holding its own repository becomes a gitlink, as
    ``git add -A`` does.
    """
    from dulwich.ignore import IgnoreFilterManager

    manager = IgnoreFilterManager.from_repo(repo)
    tracked_dirs = {p.rsplit("/", 1)[0] for p in tracked if "/" in p}
    for p in list(tracked_dirs):
        while "/" in p:
            p = p.rsplit("/", 1)[0]
            tracked_dirs.add(p)
    # dulwich calls "data/" ignored under "/data/*" (git does not), so an
    # "ignored" folder is still entered when a negation could re-include files
    # below it; its files then get dulwich's per-file answer, which is right.
    start = rel_dir or ""
    negated = _has_negation(Path(repo.commondir()) / "info" / "exclude") or any(
        _has_negation(repo_root / prefix / ".gitignore") for prefix in _parents(start) if start)
    stack = [(start, negated)]
    while stack:
        folder, negated = stack.pop()
        try:
            scan = list(os.scandir(repo_root / folder if folder else repo_root))
        except OSError:
            continue
        negated = negated or any(
            item.name == ".gitignore" and _has_negation(Path(item.path)) for item in scan)
        for item in scan:
            if item.name == ".git":
                continue
            path = f"{folder}/{item.name}" if folder else item.name
            if path in tracked:
                continue
            if item.is_dir(follow_symlinks=False):
                if (manager.is_ignored(path + "/") is True and path not in tracked_dirs
                        and not negated):
                    continue
                if os.path.lexists(os.path.join(item.path, ".git")) and path not in tracked_dirs:
                    commit = _submodule_head(Path(item.path))
                    if commit is not None:
                        yield path, item.stat(follow_symlinks=False), commit
                    continue
                stack.append((path, negated))
            elif manager.is_ignored(path) is not True:
                yield path, item.stat(follow_symlinks=False), None


def _has_negation(path: Path) -> bool:
    """True when an ignore file has a ``!`` pattern that could re-include files."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return data.startswith(b"!") or b"\n!" in data


def _parents(folder: str) -> list[str]:
    """``a/b/c`` → ``["", "a", "a/b"]``: the folders whose .gitignore applies above it."""
    parts = folder.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts))]


def _xpignored(repo_root: Path, paths: set[str]) -> set[str]:
    """The ``paths`` that ``.gitxpignore`` matches, with gitignore semantics.

    A file is out if any of its folders is matched (git cannot re-include a
    file below an excluded folder) or if the file itself is.
    """
    from dulwich.ignore import IgnoreFilter, read_ignore_patterns

    source = repo_root / ".gitxpignore"
    if not source.is_file():
        return set()
    with open(source, "rb") as handle:
        rules = IgnoreFilter(list(read_ignore_patterns(handle)))
    out = set()
    for path in paths:
        parts = path.split("/")
        hit = any(rules.is_ignored("/".join(parts[:i]) + "/") is True for i in range(1, len(parts)))
        if hit or rules.is_ignored(path) is True:
            out.add(path)
    return out
