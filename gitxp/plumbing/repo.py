"""A small git layer: find the repository, write objects, read trees, move refs.

This is the only module that imports dulwich. Objects are written by a
streaming loose-object writer of our own (temp file + atomic rename), which
avoids dulwich's whole-object buffering and the ``FileLocked`` races it has
when several processes write the same object. Reading goes through dulwich,
which understands packs. Branch updates (the ref half, :mod:`refs`) happen
under a file lock plus compare-and-swap on the ref, retried when another
writer (or plain git) moved it first.
"""

from __future__ import annotations

import os
import time
import weakref
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gitxp import shutdown
from gitxp.errors import NotARepositoryError, StoreError
from gitxp.plumbing.loose import LooseObject
from gitxp.plumbing.refs import Refs
from gitxp.plumbing.trees import (  # the modes, Entry and EMPTY_TREE: callers across the package take them from here
    BIG_TREE,
    EMPTY_TREE,
    EXEC_MODE,
    FILE_MODE,
    FIXED_OVERHEAD,
    GITLINK_MODE,
    TREE_MODE,
    Entry,
    bisect_records,
    fixed_records,
    parse_tree,
    record_entries,
    splice_records,
)
from gitxp.threads import Worker

#: Objects at least this large are hashed on a second thread while they are written (a 1 MB day
#: folder of 20,000 experiments: 0.8 instead of 0.95 ms a commit here; below ~256 KiB the hand-off costs more).
HASH_BESIDE = 512 << 10

__all__ = ["EMPTY_TREE", "EXEC_MODE", "FILE_MODE", "GITLINK_MODE", "TREE_MODE", "Entry", "Repo", "discover", "init_repository"]


def _read_gitfile(path: Path) -> Path:
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    if not text.startswith("gitdir:"):
        raise NotARepositoryError(str(path.parent))
    target = Path(text[len("gitdir:"):].strip())
    return target if target.is_absolute() else (path.parent / target).resolve()


def discover(path: str | os.PathLike[str] = ".") -> tuple[Path | None, Path, Path]:
    """Find ``(work_tree, git_dir, common_dir)`` at or above ``path`` without dulwich.

    Cheap on purpose: listings read a cache and may never need dulwich at all.
    Linked worktrees (``.git`` is a file) and bare repositories are handled.
    """
    start = Path(path).resolve()
    env_dir = os.environ.get("GIT_DIR")
    if env_dir:
        git_dir = Path(env_dir).resolve()
        work = Path(os.environ.get("GIT_WORK_TREE", start)).resolve()
        return work, git_dir, _common(git_dir)
    for d in (start, *start.parents):
        dotgit = d / ".git"
        if dotgit.is_dir() and (dotgit / "HEAD").exists():
            return d, dotgit, _common(dotgit)
        if dotgit.is_file():
            git_dir = _read_gitfile(dotgit)
            return d, git_dir, _common(git_dir)
        if d.name.endswith(".git") or (d / "objects").is_dir() and (d / "refs").is_dir() and (d / "HEAD").is_file():
            if (d / "HEAD").is_file() and (d / "objects").is_dir():
                return None, d, _common(d)
    raise NotARepositoryError(str(start))


def _common(git_dir: Path) -> Path:
    f = git_dir / "commondir"
    if f.is_file():
        c = Path(f.read_text().strip())
        return c if c.is_absolute() else (git_dir / c).resolve()
    return git_dir


#: Repositories with dulwich open. Closed at exit while Python still works: a
#: store the API never closed otherwise prints "Exception ignored ...
#: sys.meta_path is None" from dulwich's pack ``__del__`` methods.
_OPEN: weakref.WeakSet[Repo] = weakref.WeakSet()


def _close_all() -> None:
    for repo in list(_OPEN):
        repo.close()


shutdown.register_last(_close_all)


class Repo(Refs):
    """One git repository as gitxp sees it.

    ``root`` is the work tree (None when bare); ``git_dir`` is this work
    tree's git directory; ``common_dir`` holds objects and refs shared by all
    worktrees, and so gitxp's own ``gitxp/`` folder.
    """

    def __init__(self, path: str | os.PathLike[str] = ".") -> None:
        self.root, self.git_dir, self.common_dir = discover(path)
        self.objects_dir = self.common_dir / "objects"
        self.gitxp_dir = self.common_dir / "gitxp"
        self._dulwich: Any = None
        self._objects: Any = None
        self._settings: Any = None  # the config stack, read when first asked
        self._parsed: dict[str, tuple[Entry, ...]] = {}  # the last trees read: a commit reads each tree on its path twice

    # ------------------------------------------------------------ dulwich

    @property
    def object_store(self) -> Any:
        """dulwich's store of this repository's objects (packs, alternates).

        Opened on its own when only objects are read (a listing of a fresh
        clone, whose objects are all packed): dulwich's ``Repo`` costs ~15 ms
        more to import and open. A ``Repo`` opened later shares this store,
        so an alternate added to it (a quarantine) stays visible to both.
        """
        if self._dulwich is not None:
            return self._dulwich.object_store
        if self._objects is None:
            from dulwich.object_store import DiskObjectStore

            self._objects = DiskObjectStore(str(self.objects_dir))
            _OPEN.add(self)
        return self._objects

    @property
    def dulwich(self) -> Any:
        if self._dulwich is None:
            os.environ.setdefault("GIT_AUTO_GC", "0")
            from dulwich.repo import Repo as DRepo

            try:
                self._dulwich = DRepo(str(self.git_dir) if self.root is None else str(self.root), object_store=self._objects)
            except Exception as exc:  # NotGitRepository and friends
                raise NotARepositoryError(str(self.root or self.git_dir)) from exc
            self._dulwich._autogc_disabled = True
            _OPEN.add(self)
        return self._dulwich

    def close(self) -> None:
        if self._dulwich is not None:
            self._dulwich.close()  # with its store, this one's when it was opened first
        elif self._objects is not None:
            self._objects.close()
        self._dulwich = self._objects = None

    def __del__(self) -> None:
        # dulwich's repo and its worktree container refer to each other: dropped unclosed, only the
        # cyclic GC would close its packs, and listing commands run without it (cli.GC_PAUSED) —
        # at interpreter teardown that printed "Exception ignored ... sys.meta_path is None"
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing to report to from a finalizer
            pass

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ writing objects

    def write_object(self, kind: str, data: bytes, *, level: int = 1) -> str:
        return self.write_stream(kind, [data], len(data), level=level)

    def write_blob(self, data: bytes) -> str:
        return self.write_object("blob", data)

    def write_stream(self, kind: str, chunks: Iterable[bytes | memoryview], size: int, *, level: int = 1) -> str:
        """Write one loose object from pieces, in bounded memory; return its sha.

        ``level=0`` stores without compression: right for encrypted data,
        which does not compress (and 10× faster than zlib on it).
        """
        obj = self.new_object(kind, size, level=level)
        # a large object's SHA-1 runs on a second core, a few pieces behind its writes
        with Worker(obj.checksum, "gitxp-sha1", depth=4, inline=size < HASH_BESIDE) as hasher:
            try:
                for chunk in chunks:
                    hasher.start(chunk)
                    obj.write(chunk)
                hasher.through(None)
            except BaseException:
                obj.abort()
                raise
        return obj.commit()

    def new_object(self, kind: str, size: int, *, level: int = 1) -> LooseObject:
        """A loose object of ``size`` bytes to write piece by piece (see :class:`LooseObject`)."""
        return LooseObject(self.objects_dir, kind, size, level=level)

    def write_file(self, path: str | os.PathLike[str], *, level: int = 1) -> Entry:
        """A file on disk as a blob (an Entry named like it), streamed in bounded memory."""
        size = os.path.getsize(path)

        def pieces() -> Iterable[bytes]:
            with open(path, "rb") as f:
                while data := f.read(1 << 20):
                    yield data

        return Entry(Path(path).name, FILE_MODE, self.write_stream("blob", pieces(), size, level=level))

    def write_tree(self, entries: Iterable[Entry]) -> str:
        """Serialise a tree in git's canonical order (directories sort as ``name/``)."""
        items = sorted(entries, key=lambda e: e.name + "/" if e.mode == TREE_MODE else e.name)
        out = bytearray()
        seen: set[str] = set()
        for e in items:
            if not e.name or "/" in e.name or e.name in (".", "..") or "\x00" in e.name:
                raise StoreError(f"invalid tree entry name {e.name!r}", "this is a bug in gitxp; please report it")
            if e.name in seen:
                raise StoreError(f"duplicate tree entry {e.name!r}", "this is a bug in gitxp; please report it")
            seen.add(e.name)
            out += b"%o %s\0" % (e.mode, e.name.encode("utf-8"))
            out += bytes.fromhex(e.sha)
        sha = self.write_object("tree", bytes(out))
        if len(items) <= _PARSED_ENTRIES:
            self._remember(sha, tuple(Entry(e.name, e.mode, e.sha.lower()) for e in items))  # the next commit reads it back
        return sha

    def write_commit(self, tree: str, parents: list[str], message: str, *, when: float | None = None) -> str:
        name, email = self.identity()
        ts = int(when if when is not None else time.time())
        off = -time.timezone if not time.localtime(ts).tm_isdst else -time.altzone
        sign = "+" if off >= 0 else "-"
        tz = f"{sign}{abs(off) // 3600:02d}{abs(off) % 3600 // 60:02d}"
        who = f"{name} <{email}> {ts} {tz}"
        lines = [f"tree {tree}"] + [f"parent {p}" for p in parents] + [f"author {who}", f"committer {who}", "", message.rstrip("\n") + "\n"]
        return self.write_object("commit", "\n".join(lines).encode("utf-8"))

    def identity(self) -> tuple[str, str]:
        name = os.environ.get("GIT_COMMITTER_NAME") or self.config("user", "name")
        email = os.environ.get("GIT_COMMITTER_EMAIL") or self.config("user", "email")
        if not name:
            name = "gitxp"
        if not email:
            import socket

            email = f"{os.environ.get('USER', 'gitxp')}@{socket.gethostname() or 'localhost'}"
        return name.replace("<", "").replace(">", "").replace("\n", " "), email.replace("<", "").replace(">", "").replace("\n", "")

    # ------------------------------------------------------------ config

    def config(self, section: str, key: str, default: str | None = None) -> str | None:
        """``git config section.key`` from the repository, user and system files."""
        if self._settings is None:
            from gitxp.plumbing.gitconfig import ConfigStack

            self._settings = ConfigStack(self.common_dir / "config")
        return self._settings.get(section, key, default)

    # ------------------------------------------------------------ reading

    def has_object(self, sha: str) -> bool:
        if (self.objects_dir / sha[:2] / sha[2:]).exists():
            return True
        return sha.encode() in self.object_store

    def read_raw(self, sha: str) -> tuple[str, bytes]:
        """(type, content) of an object: loose ones directly, packed ones through dulwich."""
        p = self.objects_dir / sha[:2] / sha[2:]
        try:
            raw = zlib.decompress(p.read_bytes())
        except FileNotFoundError:
            try:
                kind, data = self.object_store.get_raw(sha.encode())
            except KeyError as exc:
                raise StoreError(f"object {sha[:12]} is missing from the repository", "run `git fsck`; fetch the store again with `gitxp pull`") from exc
            return {1: "commit", 2: "tree", 3: "blob", 4: "tag"}[kind], data
        except zlib.error as exc:
            raise StoreError(f"object {sha[:12]} is corrupt", "run `git fsck`") from exc
        nul = raw.index(b"\0")
        kind, _, _size = raw[:nul].partition(b" ")
        return kind.decode(), raw[nul + 1 :]

    def read_blob(self, sha: str) -> bytes:
        kind, data = self.read_raw(sha)
        if kind != "blob":
            raise StoreError(f"object {sha[:12]} is a {kind}, not a file", "the store may be damaged or hostile")
        return data

    def iter_blob(self, sha: str, chunk: int = 1 << 20) -> Iterable[bytes]:
        """Stream a blob's content; loose objects are inflated piece by piece."""
        p = self.objects_dir / sha[:2] / sha[2:]
        if not p.exists():
            yield self.read_blob(sha)
            return
        d = zlib.decompressobj()
        header_done = False
        buf = b""
        with open(p, "rb") as f:
            while True:
                raw = f.read(chunk)
                if not raw:
                    break
                out = d.decompress(raw)
                if not header_done:
                    buf += out
                    nul = buf.find(b"\0")
                    if nul < 0:
                        continue
                    if not buf.startswith(b"blob "):
                        raise StoreError(f"object {sha[:12]} is not a file", "the store may be damaged or hostile")
                    header_done = True
                    out = buf[nul + 1 :]
                if out:
                    yield out
            tail = d.flush()
            if tail:
                yield tail

    def read_tree(self, sha: str) -> list[Entry]:
        entries = self._parsed.get(sha)
        if entries is None:
            kind, data = self.read_raw(sha)
            if kind != "tree":
                raise StoreError(f"object {sha[:12]} is a {kind}, not a folder", "the store may be damaged or hostile")
            entries = tuple(parse_tree(data))
        self._remember(sha, entries)
        return list(entries)

    def _remember(self, sha: str, entries: tuple[Entry, ...]) -> None:
        """Keep a tree's entries (an object's content never changes: its id is its hash), the least recently used dropped."""
        if len(entries) > _PARSED_ENTRIES:
            return  # a busy day's folder: edited as raw records (splice), never held parsed
        parsed = self._parsed
        parsed.pop(sha, None)
        if len(parsed) >= _PARSED_TREES:
            try:
                del parsed[next(iter(parsed))]
            except (KeyError, RuntimeError, StopIteration):  # another thread (the UI's server) trimmed it meanwhile
                pass
        parsed[sha] = entries

    def subtrees(self, sha: str) -> list[tuple[str, str]]:
        """``(name, id)`` of a tree's subtrees; a day folder's fixed-size records are sliced, not parsed one entry at a time."""
        data, size = self._day_tree(sha)
        if size:
            return record_entries(data, size)
        return [(e.name, e.sha) for e in self.read_tree(sha) if e.is_tree]

    def read_commit(self, sha: str) -> dict[str, Any]:
        kind, data = self.read_raw(sha)
        if kind != "commit":
            raise StoreError(f"object {sha[:12]} is a {kind}, not a commit", "the store may be damaged")
        head, _, message = data.partition(b"\n\n")
        info: dict[str, Any] = {"parents": [], "message": message.decode("utf-8", "replace")}
        for line in head.split(b"\n"):
            k, _, v = line.partition(b" ")
            if k == b"tree":
                info["tree"] = v.decode()
            elif k == b"parent":
                info["parents"].append(v.decode())
            elif k == b"committer":
                parts = v.rsplit(b" ", 2)
                info["time"] = int(parts[1]) if len(parts) == 3 else 0
        return info

    def lookup(self, tree: str | None, path: str) -> Entry | None:
        """The entry at ``path`` (``a/b/c``) under ``tree``, or None."""
        if tree is None:
            return None
        cur: Entry | None = Entry("", TREE_MODE, tree)
        for part in [p for p in path.split("/") if p]:
            if cur is None or not cur.is_tree:
                return None
            cur = self._child(cur.sha, part)
        return cur

    def _child(self, tree: str, name: str) -> Entry | None:
        """The entry ``name`` of a tree; a day folder's is found by bisection, without parsing it."""
        data, size = self._day_tree(tree)
        nb = name.encode("utf-8", "surrogateescape")
        if size and len(nb) == size - FIXED_OVERHEAD:
            pos = bisect_records(data, size, nb)
            if pos < len(data) and data[pos + 6 : pos + size - 21] == nb:
                return Entry(name, TREE_MODE, data[pos + size - 20 : pos + size].hex())
            return None
        for e in self.read_tree(tree):
            if e.name == name:
                return e
        return None

    def read_path(self, tree: str | None, path: str) -> bytes | None:
        e = self.lookup(tree, path)
        if e is None or e.mode not in (FILE_MODE, EXEC_MODE):
            return None
        return self.read_blob(e.sha)

    def update_tree(self, tree: str | None, changes: Mapping[str, Entry | None]) -> str:
        """Rewrite only the trees along the changed paths (cost O(depth × width)).

        ``changes`` maps a slash path to its new entry (mode + sha; the name is
        taken from the path) or None to remove it.
        """
        direct: dict[str, Entry | None] = {}
        nested: dict[str, dict[str, Entry | None]] = {}
        for path, entry in changes.items():
            head, _, rest = path.strip("/").partition("/")
            if rest:
                nested.setdefault(head, {})[rest] = entry
            else:
                direct[head] = None if entry is None else Entry(head, entry.mode, entry.sha)
        if tree and not nested:
            spliced = self._splice(tree, direct)
            if spliced is not None:
                data, size = spliced
                # a busy day's tree is mostly 20-byte ids that zlib barely shrinks: storing it
                # uncompressed keeps the commit's cost flat (git gc packs it with deltas later)
                sha = self.write_object("tree", data, level=0 if len(data) >= BIG_TREE else 1)
                if len(data) >= BIG_TREE:
                    # the next commit of this process (an importer, an in-process sweep) starts from this
                    # tree: keeping it spares re-reading and re-checking a megabyte per commit
                    self._last_tree = (sha, data, size)
                return sha
        current = {e.name: e for e in self.read_tree(tree)} if tree else {}
        for name, sub in nested.items():
            old = current.get(name)
            base = old.sha if old is not None and old.is_tree else None
            new_sha = self.update_tree(base, sub)
            current[name] = Entry(name, TREE_MODE, new_sha)
        for name, entry in direct.items():
            if entry is None:
                current.pop(name, None)
            else:
                current[name] = entry
        current = {k: v for k, v in current.items() if not (v.is_tree and v.sha == EMPTY_TREE)}
        return self.write_tree(current.values())

    def _day_tree(self, tree: str) -> tuple[bytes, int]:
        """(raw bytes, record size or 0) of a tree; the last large one is kept (a commit reads its day twice)."""
        cached = getattr(self, "_last_tree", None)
        if cached is not None and cached[0] == tree:
            return cached[1], cached[2]
        kind, data = self.read_raw(tree)
        if kind != "tree":
            return data, 0
        size = fixed_records(data)
        if len(data) >= BIG_TREE:
            self._last_tree = (tree, data, size)
        return data, size

    def _splice(self, tree: str, direct: Mapping[str, Entry | None]) -> tuple[bytes, int] | None:
        """A day folder's new raw tree and its record size with ``direct`` set or removed in place, or None to take the slow path (see trees.splice_records)."""
        data, size = self._day_tree(tree)
        if not size:
            return None
        spliced = splice_records(data, size, direct)
        return None if spliced is None else (spliced, size)


#: Parsed trees a Repo keeps (the listing/ folder of 20,000 experiments is ~160 entries: parsed twice a commit, 1 ms).
_PARSED_TREES = 16
#: ... of at most this many entries each (a long-lived process, the UI's server, holds no more than ~2 MB so).
_PARSED_ENTRIES = 1024


def init_repository(path: Path) -> Path:
    """An empty git repository at ``path`` (``gitxp init`` outside one); returns its git dir."""
    from dulwich.repo import Repo as DRepo

    path.mkdir(parents=True, exist_ok=True)
    DRepo.init(str(path)).close()
    return path.resolve() / ".git"
