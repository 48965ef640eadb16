"""Logging artifacts: files streamed into the object store, staged, then committed.

Logging an artifact streams it straight into the repository's object store
(loose objects, unreferenced until the experiment commits, which is
harmless) and stages a small manifest line; nothing is copied into staging,
so a 4 GiB checkpoint is read twice and written once. Content larger than
the part size is cut into parts (:mod:`gitxp.artifacts.manifest` has the
layout); at commit, :func:`tree_changes` merges the staged lines into
``artifacts.yaml``.

Encrypted artifacts use *convergent* encryption with a keyed hash, as
restic and borg derive their dedup ids with a keyed MAC: pass 1 reads the
file for the manifest digest (HMAC-SHA256 under the digest key) and a
check tag of every chunk; a MAC of the digest under the dedup key becomes
the stream's salt. Pass 2 encrypts with that salt, checking every chunk
against its pass-1 tag (:class:`~gitxp.artifacts.crypto.ChunkTags`, a
GMAC under a key that never leaves the process) *before* it is sealed, so
a file modified between the passes cannot make one salt seal two
different plaintexts (which would reuse GCM nonces) and the digest is of
what was sealed. Same plaintext + same key → byte-identical ciphertext →
identical blobs: git stores a re-logged file once, and only key holders
can tell which stored file is which.
"""

from __future__ import annotations

import collections
import io
import hashlib
import json
import os
import re
import stat
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gitxp.artifacts import crypto
from gitxp.artifacts.manifest import MAX_PARTS, artifact_name, check_item, find_clash, storage_path
from gitxp.errors import StoreError, UnsafeDataError, UsageError
from gitxp.plumbing.loose import LooseObject
from gitxp.plumbing.repo import FILE_MODE, TREE_MODE, Entry
from gitxp.store import layout
from gitxp.threads import Worker

if TYPE_CHECKING:
    from gitxp.plumbing.repo import Repo

__all__ = [
    "PART_SIZE", "PROGRESS_MIN_SIZE", "ArtifactEntry", "stage", "staged", "store_file", "terminal_progress",
    "tree_changes",
]

#: Bytes per stored part: under the 100 MB blob limit of GitHub and GitLab.
PART_SIZE = 50 * 2**20
#: Read size for unencrypted artifacts (encrypted ones read one crypto chunk at a time).
PIECE_SIZE = 1 << 20

#: Salt v1 (until 2026-12) was a MAC of every chunk's SHA-256: a second full hash of the file that
#: cost a fifth of the writer's CPU. v2 is a MAC of the digest, which pass 1 takes anyway; a file
#: logged under v1 and again under v2 is stored twice, once (docs/format.md, *Deduplication*).
_DEDUP_LABEL = b"gitxp artifact salt v2\0"

_STAGE_LOCK = threading.Lock()


@dataclass(frozen=True)
class ArtifactEntry:
    """One stored artifact: its manifest line plus the blobs that hold it."""

    path: str  # artifact-relative path, e.g. "model.pt" or "outputs/a.csv"
    size: int  # plaintext bytes
    digest: str  # "hmac-sha256:<hex>" when encrypted, "sha256:<hex>" otherwise
    encrypted: bool
    parts: int
    key: str | None  # key fingerprint when encrypted
    objects: tuple[str, ...]  # blob shas of the parts, in order (not in artifacts.yaml)

    @property
    def storage_path(self) -> str:
        """Where the content lives, relative to the experiment directory."""
        return storage_path(self.path, encrypted=self.encrypted, parts=self.parts)

    def manifest_item(self) -> dict[str, Any]:
        """The line of ``artifacts.yaml``: exactly the documented keys, in order."""
        item: dict[str, Any] = {
            "path": self.path, "size": self.size, "digest": self.digest,
            "encrypted": self.encrypted, "parts": self.parts,
        }
        if self.encrypted:
            item["key"] = self.key
        return item


# ------------------------------------------------------------------ writing


def store_file(
    repo: Repo,
    src: str | os.PathLike[str],
    name: str,
    *,
    key: bytes | None,
    part_size: int = PART_SIZE,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = crypto.CHUNK_SIZE,
) -> ArtifactEntry:
    """Write the file ``src`` into ``repo``'s objects as artifact ``name``; return its entry.

    ``key`` None stores the file as-is (sha256 digest; zlib level 1 when a
    sample of each part compresses, else stored);
    otherwise it is encrypted convergently (see the module docstring) and
    stored uncompressed. Memory stays at a few chunks whatever the size.
    ``progress(done)`` is called often with ``0 ≤ done ≤ size``; wrap it with
    :func:`terminal_progress` for a throttled percentage. ``chunk_size`` is
    the crypto chunk size (tests make it small).

    Raises:
        UsageError: a bad name, or ``src`` is not a readable regular file.
        StoreError: the file changed size or content while it was stored.
    """
    path = artifact_name(name)
    if not isinstance(part_size, int) or part_size < 1:
        raise ValueError("part_size must be a positive int")
    hint = "pass an existing file; use log_artifacts() for a folder"
    try:
        f = open(src, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError as exc:
        raise UsageError(f"artifact file {os.fspath(src)!r} does not exist", hint) from exc
    except IsADirectoryError as exc:
        raise UsageError(f"artifact {os.fspath(src)!r} is a folder, not a file", hint) from exc
    except PermissionError as exc:
        raise UsageError(f"cannot read artifact file {os.fspath(src)!r}: permission denied", "check its permissions") from exc
    with f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"artifact {os.fspath(src)!r} is not a regular file", hint)
        report = progress or (lambda done: None)
        if key is None:
            return _store_plain(repo, f, path, st.st_size, part_size, report)
        return _store_encrypted(repo, f, path, st.st_size, key, part_size, chunk_size, report)


def _changed(path: str) -> StoreError:
    return StoreError(f"artifact {path!r} changed while it was being stored", "do not modify files while they are being logged; log it again")


def _read_into(f: io.BufferedIOBase, buf: bytearray, n: int, path: str) -> memoryview:
    """The next ``n`` bytes of ``f``, read into ``buf`` (short reads retried); a file that ends early changed."""
    view = memoryview(buf)[:n]
    got = 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            raise _changed(path)
        got += k
    return view


#: Chunks in flight while a large artifact is stored: read, digested, sealed, hashed and written a few apart.
RING = 4


def _pieces(f: io.BufferedIOBase, size: int, block: int, path: str, ring: int, free: Callable[[int], None]) -> Iterator[tuple[int, memoryview]]:
    """``(index, piece)``: exactly ``size`` bytes of ``f`` read into ``ring`` reused buffers, then EOF.

    Piece ``index`` lives in buffer ``index % ring``: before piece
    ``index + ring`` is read into it, ``free(index)`` is called, and must
    return only when the caller's jobs on piece ``index`` are done. The
    caller waits for the last pieces' jobs itself.
    Fresh megabytes per piece were page faults that cost a fifth of the
    writer's time; reused buffers cost none.
    """
    bufs = [bytearray(min(block, size)) for _ in range(min(ring, -(-size // block)))]
    for index in range(-(-size // block)):
        if index >= ring:
            free(index - ring)
        yield index, _read_into(f, bufs[index % ring], min(block, size - index * block), path)
    if f.read(1):
        raise _changed(path)


def _store_plain(repo: Repo, f: io.BufferedIOBase, path: str, size: int, part_size: int, report: Callable[[int], None]) -> ArtifactEntry:
    h = hashlib.sha256()
    big = size > 4 * PIECE_SIZE
    ring = RING if big else 1
    # the SHA-256 on one thread, the parts' SHA-1 on another, reading, deflating and writing on this one
    with Worker(h.update, "gitxp-digest", depth=ring, inline=not big) as digest, _Parts(repo, size, part_size, level=None, threaded=big) as parts:

        def free(index: int) -> None:
            digest.through(index)
            parts.release(index)

        for index, piece in _pieces(f, size, PIECE_SIZE, path, ring, free):
            digest.start(piece)
            parts.write(piece, index)
            report(index * PIECE_SIZE + len(piece))
        objects = parts.finish()
        digest.through(None)  # the last pieces' share of the SHA-256
    return ArtifactEntry(path, size, f"sha256:{h.hexdigest()}", False, len(objects), None, tuple(objects))


#: How much of a part is test-compressed to choose its zlib level.
SAMPLE_SIZE = 1 << 18


def _level_for(sample: memoryview) -> int:
    """zlib level 1 when the sample shrinks by a tenth or more, else 0 (stored as is).

    Weights, archives and encrypted data barely compress, and zlib crawls
    over them (~40 MB/s); stored, they go in at the speed of the disk, and
    ``git gc`` still deflates them when it packs.
    """
    head = sample[:SAMPLE_SIZE]
    return 1 if len(zlib.compress(head, 1)) <= 0.9 * len(head) else 0


def _store_encrypted(
    repo: Repo, f: io.BufferedIOBase, path: str, size: int, key: bytes, part_size: int, chunk_size: int, report: Callable[[int], None]
) -> ArtifactEntry:
    # Every hash below releases the GIL; what runs where keeps both cores busy on a large file.
    # pass 1: the digest on a second thread, a check tag per chunk (for pass 2) on this one
    tags = crypto.ChunkTags()
    digest = crypto.KeyedHasher(key, purpose="digest")
    big = size > 4 * chunk_size
    ring = RING if big else 1
    checks: list[bytes] = []
    with Worker(digest.update, "gitxp-digest", depth=ring, inline=not big) as hmac:
        for index, block in _pieces(f, size, chunk_size, path, ring, hmac.through):
            hmac.start(block)
            checks.append(tags.tag(index, block))
            report((index * chunk_size + len(block)) // 2)
        hmac.through(None)
    dedup = crypto.KeyedHasher(key, purpose="dedup")
    dedup.update(_DEDUP_LABEL + struct.pack(">IQ", chunk_size, size) + bytes.fromhex(digest.hexdigest()))
    salt = bytes.fromhex(dedup.hexdigest())

    # pass 2: encrypt exactly what pass 1 saw (a changed chunk aborts before it is sealed, so the
    # digest is of what is sealed), sealing in place into reused buffers; each part's SHA-1 runs
    # on a second thread, a few chunks behind
    encryptor = crypto.StreamEncryptor(key, chunk_size=chunk_size, salt=salt)
    total = crypto.ciphertext_size(size, chunk_size)
    sealed = [bytearray(min(chunk_size, max(size, 1)) + crypto.TAG_SIZE) for _ in range(ring)]
    with _Parts(repo, total, part_size, level=0, threaded=big) as parts:
        f.seek(0)
        parts.write(encryptor.header(), -1)
        pieces = _pieces(f, size, chunk_size, path, ring, parts.release) if size else iter([(0, memoryview(b""))])
        for index, block in pieces:  # freeing a chunk's read buffer frees its sealed one: both are index % ring
            if block and (index >= len(checks) or tags.tag(index, block) != checks[index]):
                raise _changed(path)
            last = index * chunk_size + len(block) == size
            parts.write(encryptor.seal_into(block, last, sealed[index % ring]), index)
            report((size + index * chunk_size + len(block)) // 2)
        objects = parts.finish()
    return ArtifactEntry(path, size, f"hmac-sha256:{digest.hexdigest()}", True, len(objects), encryptor.fingerprint, tuple(objects))


def _count_parts(total: int, part_size: int) -> int:
    parts = max(1, -(-total // part_size))
    if parts > MAX_PARTS:
        raise UsageError(f"artifact needs {parts} parts, over the limit of {MAX_PARTS}", "use a larger part size")
    return parts


class _Parts:
    """A stream of ``total`` bytes cut into loose objects of ``part_size``; never holds a part.

    Writes (and deflating) happen on the caller's thread, each part's
    SHA-1 on a second one (``threaded``), a few pieces behind. Pieces are written
    with a mark (their chunk number); :meth:`release` waits until every
    piece up to a mark is hashed, so that its buffer can be refilled.
    ``level`` None chooses each part's zlib level from its first piece
    (:func:`_level_for`).
    """

    def __init__(self, repo: Repo, total: int, part_size: int, *, level: int | None, threaded: bool) -> None:
        self.repo, self.total, self.part_size, self.level = repo, total, part_size, level
        self.count = _count_parts(total, part_size)
        self.objects: list[str] = []
        self.current: LooseObject | None = None
        self.room = 0  # bytes the current part still takes
        self.marks: collections.deque[int] = collections.deque()  # of the SHA-1 jobs not yet collected
        self.hasher = Worker(lambda job: job[0].checksum(job[1]), "gitxp-sha1", depth=2 * RING, inline=not threaded)

    def __enter__(self) -> _Parts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.hasher.close()
        if self.current is not None:
            self.current.abort()

    def _open(self, first: memoryview) -> LooseObject:
        done = len(self.objects) * self.part_size
        if len(self.objects) == self.count:
            raise StoreError("artifact stream is longer than expected", "this is a bug in gitxp; please report it")
        self.room = min(self.part_size, self.total - done)
        level = _level_for(first) if self.level is None else self.level
        self.current = self.repo.new_object("blob", self.room, level=level)
        return self.current

    def write(self, data: bytes | bytearray | memoryview, mark: int) -> None:
        view = memoryview(data).cast("B")
        while view:
            obj = self.current or self._open(view)
            piece, view = view[: self.room], view[self.room :]
            obj.write(piece)
            self.hasher.start((obj, piece))
            self.marks.append(mark)
            self.room -= len(piece)
            if not self.room:
                self.release(None)  # the part's SHA-1 is complete
                self.objects.append(obj.commit())
                self.current = None

    def release(self, mark: int | None) -> None:
        """Wait until the pieces written with marks up to ``mark`` (None: all) are hashed."""
        while self.marks and (mark is None or self.marks[0] <= mark):
            self.hasher.result()
            self.marks.popleft()

    def finish(self) -> list[str]:
        """The blob shas of the parts, once exactly ``total`` bytes were written."""
        if not self.total and not self.objects:
            self.objects.append(self._open(memoryview(b"")).commit())
            self.current = None
        if self.current is not None or len(self.objects) != self.count:
            raise StoreError("artifact stream ended early", "this is a bug in gitxp; please report it")
        return self.objects


#: Artifacts at least this big show a progress line on a terminal while stored or extracted.
PROGRESS_MIN_SIZE = 8 * 2**20


def terminal_progress(label: str, total: int, stream: IO[str] | None = None) -> Callable[[int], None] | None:
    """A ``progress(done)`` callback printing ``label: NN%`` on a terminal, ≤ 10 times a second.

    Returns None when ``stream`` (default stderr) is not a terminal, so that
    pipes and logs stay quiet.
    """
    out = stream if stream is not None else sys.stderr
    try:
        if not out.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    last = [0.0, -1]

    def show(done: int) -> None:
        pct = 100 if total <= 0 else min(100, done * 100 // total)
        now = time.monotonic()
        if pct == last[1] or (pct < 100 and now - last[0] < 0.1):
            return
        last[0], last[1] = now, pct
        out.write(f"\r{label}: {pct:3d}%" + ("\n" if pct == 100 else ""))
        out.flush()

    return show


# ------------------------------------------------------------------ staging


def stage(run_path: str | os.PathLike[str], entry: ArtifactEntry) -> None:
    """Record ``entry`` in the run's staging, to be committed with the experiment.

    Each process appends one line to its own ``artifacts-<pid>.yaml`` (a
    YAML list of flow mappings), written with a single ``write``; a crash can
    at worst tear the last line, which :func:`staged` skips.
    Appending keeps ``log_artifacts`` of a large folder linear.
    """
    item = entry.manifest_item()
    item["objects"] = list(entry.objects)
    item["logged"] = time.time_ns()
    line = ("- " + json.dumps(item, ensure_ascii=False, separators=(", ", ": ")) + "\n").encode("utf-8")
    target = Path(run_path) / f"artifacts-{os.getpid()}.yaml"
    with _STAGE_LOCK:
        names = _STAGED_NAMES.get(str(run_path))
        if names is None:
            names = _STAGED_NAMES[str(run_path)] = _Names(staged(run_path))
        names.add(entry)  # raises before anything is staged
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            end = os.fstat(fd).st_size
            if end and os.pread(fd, 1, end - 1) != b"\n":
                line = b"\n" + line  # an earlier process with this pid crashed mid-line
            os.write(fd, line)  # no fsync: a killed process loses nothing written
        finally:
            os.close(fd)


class _Names:
    """The artifact names staged in one run, to refuse a clash when it is logged, not at commit.

    ``model`` and ``model/extra.txt`` cannot both be artifacts (one is a
    file, the other needs a folder of that name), nor can two names share a
    storage path. Kept incrementally so that ``log_artifacts`` of a large
    folder stays linear.
    """

    def __init__(self, entries: Iterable[ArtifactEntry]) -> None:
        self.storage: dict[str, str] = {}  # storage path -> artifact path
        self.of: dict[str, str] = {}  # artifact path -> storage path
        self.folders: dict[str, str] = {}  # folder (artifact or storage path) -> one artifact inside it
        for e in entries:
            self._put(e.path, e.storage_path)

    def _put(self, path: str, sp: str) -> None:
        self.storage[sp] = path
        self.of[path] = sp
        for p in (path, sp):
            parts = p.split("/")
            for k in range(1, len(parts)):
                self.folders.setdefault("/".join(parts[:k]), path)

    def add(self, e: ArtifactEntry) -> None:
        sp = e.storage_path
        clash = None
        if e.path in self.folders and self.folders[e.path] != e.path:
            clash = f"{e.path!r} is a file, where {self.folders[e.path]!r} needs a folder"
        elif sp in self.folders and self.folders[sp] != e.path:
            clash = f"{e.path!r} is stored at {sp}, where {self.folders[sp]!r} needs a folder"
        elif self.storage.get(sp, e.path) != e.path:
            clash = f"{self.storage[sp]!r} and {e.path!r} are both stored at {sp}"
        else:
            for p in (e.path, sp):
                parts = p.split("/")
                for k in range(1, len(parts)):
                    prefix = "/".join(parts[:k])
                    other = self.storage.get(prefix) or (prefix if prefix in self.of else None)
                    if other is not None and other != e.path:
                        clash = f"{other!r} is a file, where {e.path!r} needs a folder"
                        break
                if clash:
                    break
        if clash:
            raise UsageError(f"artifact names clash: {clash}", "rename one of the artifacts (a name cannot be both a file and a folder)")
        old = self.of.get(e.path)
        if old is not None and old != sp:
            self.storage.pop(old, None)
        self._put(e.path, sp)


_STAGED_NAMES: dict[str, _Names] = {}


def staged(run_path: str | os.PathLike[str]) -> list[ArtifactEntry]:
    """Every staged artifact of a run (all processes), the last logged per path, sorted by path."""
    found: list[tuple[int, str, int, ArtifactEntry]] = []
    for file in sorted(Path(run_path).glob("artifacts-*.yaml")):
        lines = file.read_bytes().split(b"\n")
        complete = lines[:-1]  # after the last newline: empty, or a torn line
        for number, raw in enumerate(complete):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw[2:]) if raw.startswith(b"- ") else None
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                continue  # a line torn by a crash (a new writer starts on a fresh line)
            try:
                entry = _entry_from_item(obj, what=f"staged artifact in {file.name}")
                logged = obj.get("logged", 0)
            except UnsafeDataError as exc:
                raise StoreError(f"staged artifact list {file} is damaged at line {number + 1}", "log the artifacts again") from exc
            found.append((logged if isinstance(logged, int) else 0, file.name, number, entry))
    found.sort(key=lambda t: t[:3])
    latest = {entry.path: entry for *_, entry in found}
    return [latest[p] for p in sorted(latest)]


def _entry_from_item(obj: Any, *, what: str) -> ArtifactEntry:
    item = check_item(obj, what=what)
    objects = obj.get("objects")
    if (
        not isinstance(objects, list)
        or len(objects) != item["parts"]
        or not all(isinstance(s, str) and re.fullmatch(r"[0-9a-f]{40}", s) for s in objects)
    ):
        raise UnsafeDataError(f"{what}: bad object list", "log the artifact again")
    return ArtifactEntry(item["path"], item["size"], item["digest"], item["encrypted"], item["parts"], item.get("key"), tuple(objects))


# ------------------------------------------------------------------ committing


def tree_changes(
    repo: Repo, entries: Sequence[ArtifactEntry], previous_manifest: list[dict[str, Any]] | None
) -> dict[str, bytes | Entry | None]:
    """The changes to make inside the experiment directory to commit ``entries``.

    Keys are relative to the experiment directory: ``artifacts.yaml`` (the
    previous manifest merged with ``entries``, new ones winning), each
    artifact's storage path (a blob, or a tree of parts), and None for the
    old storage path of an artifact whose layout changed.

    Raises:
        StoreError: a staged object is gone (pruned by ``git gc`` during a very long run).
        UsageError: two artifact names would occupy the same place (``x`` and ``x/y``).
        UnsafeDataError: the previous manifest is malformed.
    """
    items = {it["path"]: it for it in (check_item(x, what=layout.ARTIFACTS_FILE) for x in previous_manifest or [])}
    changes: dict[str, bytes | Entry | None] = {}
    removed: set[str] = set()
    for e in entries:
        if len(e.objects) != e.parts or not e.objects:
            raise ValueError(f"artifact {e.path!r}: {e.parts} parts but {len(e.objects)} objects")
        for sha in e.objects:
            if not repo.has_object(sha):
                raise StoreError(
                    f"artifact {e.path!r} lost its stored object {sha[:12]}",
                    "log the artifact again (did `git gc --prune=now` run while the experiment ran?)",
                )
        old = items.get(e.path)
        if old is not None:
            old_path = storage_path(old["path"], encrypted=old["encrypted"], parts=old["parts"])
            if old_path != e.storage_path:
                changes[old_path] = None
                removed.add(old_path)
        items[e.path] = e.manifest_item()
        removed.discard(e.storage_path)
        changes[e.storage_path] = _object_entry(repo, e)
    clash = find_clash(list(items.values())) or next(
        (k for k in changes if changes[k] is not None and any(k.startswith(r + "/") for r in removed)), None
    )
    if clash:
        raise UsageError(f"artifact names clash: {clash}", "rename one of the artifacts (a name cannot be both a file and a folder)")
    manifest = [items[p] for p in sorted(items)]
    changes[layout.ARTIFACTS_FILE] = layout.dump_yaml(manifest).encode("utf-8")
    return changes


def _object_entry(repo: Repo, e: ArtifactEntry) -> Entry:
    name = e.storage_path.rsplit("/", 1)[-1]
    if e.parts == 1:
        return Entry(name, FILE_MODE, e.objects[0])
    tree = repo.write_tree([Entry(f"{i:06d}", FILE_MODE, sha) for i, sha in enumerate(e.objects)])
    return Entry(name, TREE_MODE, tree)
