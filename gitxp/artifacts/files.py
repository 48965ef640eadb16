"""Artifacts: files kept with an experiment, encrypted unless asked not to.

Logging an artifact streams it straight into the repository's object store
(loose objects, unreferenced until the experiment commits, which is
harmless) and stages a small manifest line; nothing is copied into staging,
so a 4 GiB checkpoint is read twice and written once.

Encrypted artifacts use *convergent* encryption with a keyed hash, as
restic and borg derive their dedup ids with a keyed MAC: pass 1 reads the
file and computes the manifest digest (HMAC-SHA256 under the digest key) and
a SHA-256 of every chunk; the dedup MAC over those chunk hashes becomes the
stream's salt. Pass 2 encrypts with that salt, checking every chunk against
pass 1 *before* it is sealed, so a file modified between the passes can
never make one salt seal two different plaintexts (which would reuse GCM
nonces). Same plaintext + same key → byte-identical ciphertext → identical
blobs: git stores a re-logged file once, and only key holders can tell
which stored file is which.

Layout inside an experiment directory (docs/format.md, "Artifacts"):

* encrypted: ``artifacts/<path>.gxp``, one blob, or a folder
  ``artifacts/<path>.gxp/`` of blobs ``000000``, ``000001``, … whose
  concatenation is the stream, when it is larger than the part size
  (default 50 MiB: forges refuse blobs over 100 MB);
* unencrypted: ``artifacts/<path>``, or ``artifacts/<path>.parts/000000`` …
  split the same way;
* ``artifacts.yaml``: a list of ``{path, size, digest, encrypted, parts}``
  (plus ``key: <fingerprint>`` for encrypted ones), sorted by path.

Reading treats the manifest and the objects as untrusted (a pulled store):
paths are checked, the number and names of parts are checked, the stream is
authenticated chunk by chunk and the plaintext is compared with the digest
and size after the last chunk. :func:`extract` writes to temporary files and
renames them only once everything verified, and never outside its
destination.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import queue
import re
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeGuard

from gitxp.artifacts import crypto
from gitxp.store import layout
from gitxp.errors import DecryptionError, KeyMissingError, StoreError, UnsafeDataError, UsageError
from gitxp.plumbing.repo import FILE_MODE, TREE_MODE, Entry

if TYPE_CHECKING:
    from gitxp.plumbing.repo import Repo
    from gitxp.store.store import Record

__all__ = [
    "PART_SIZE", "ArtifactEntry", "artifact_name", "extract", "iter_artifact", "read_bytes",
    "read_manifest", "stage", "staged", "storage_path", "store_file", "terminal_progress", "tree_changes",
]

#: Bytes per stored part: under the 100 MB blob limit of GitHub and GitLab.
PART_SIZE = 50 * 2**20
#: Read size for unencrypted artifacts (encrypted ones read one crypto chunk at a time).
PIECE_SIZE = 1 << 20
#: Part names have six digits, so at most this many parts.
MAX_PARTS = 10**6
ENCRYPTED_SUFFIX = ".gxp"
PARTS_SUFFIX = ".parts"

_DEDUP_LABEL = b"gitxp artifact salt v1\0"
_DIGEST_RE = re.compile(r"(hmac-sha256|sha256):[0-9a-f]{64}")
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{16}")
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


def storage_path(path: str, *, encrypted: bool, parts: int) -> str:
    """``artifacts/<path>.gxp`` (blob or folder of parts), ``artifacts/<path>`` or ``….parts``."""
    base = f"{layout.ARTIFACTS_DIR}/{path}"
    if encrypted:
        return base + ENCRYPTED_SUFFIX
    return base if parts == 1 else base + PARTS_SUFFIX


def artifact_name(name: str | os.PathLike[str]) -> str:
    """Normalise a user-given artifact name; absolute paths and ``..`` are usage errors."""
    text = os.fspath(name) if isinstance(name, os.PathLike) else name
    try:
        return layout.safe_relpath(text, what="artifact name")  # type: ignore[arg-type]
    except UnsafeDataError as exc:
        raise UsageError(exc.message, "name artifacts with a relative path such as 'model.pt' or 'outputs/a.csv'") from exc


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

    ``key`` None stores the file as-is (sha256 digest, zlib level 1);
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


def _blocks(f: IO[bytes], size: int, block: int, path: str) -> Iterator[bytes]:
    """Exactly ``size`` bytes of ``f`` in blocks of ``block`` (the last shorter), then EOF."""
    left = size
    while left:
        data = f.read(min(block, left))
        if not data:
            raise _changed(path)
        left -= len(data)
        while len(data) < block and left:  # short read (pipes, network file systems)
            more = f.read(min(block - len(data), left))
            if not more:
                raise _changed(path)
            data += more
            left -= len(more)
        yield data
    if f.read(1):
        raise _changed(path)


def _store_plain(repo: Repo, f: IO[bytes], path: str, size: int, part_size: int, report: Callable[[int], None]) -> ArtifactEntry:
    h = hashlib.sha256()
    done = 0

    def hashed(length: int) -> Iterator[bytes]:
        nonlocal done
        left = length
        while left:
            data = f.read(min(PIECE_SIZE, left))
            if not data:
                raise _changed(path)
            h.update(data)
            left -= len(data)
            done += len(data)
            report(done)
            yield data

    objects = []
    for i in range(_count_parts(size, part_size)):
        length = min(part_size, size - i * part_size)
        objects.append(repo.write_stream("blob", hashed(length), length, level=1))
    if f.read(1):
        raise _changed(path)
    return ArtifactEntry(path, size, f"sha256:{h.hexdigest()}", False, len(objects), None, tuple(objects))


def _store_encrypted(
    repo: Repo, f: IO[bytes], path: str, size: int, key: bytes, part_size: int, chunk_size: int, report: Callable[[int], None]
) -> ArtifactEntry:
    # pass 1: one SHA-256 per chunk, for the salt and for pass 2 to check against, and
    # the manifest digest (pass 2 checks every chunk against these sums, so it is the
    # digest of exactly what gets encrypted). Both hashes release the GIL: on a large
    # file the chunk sums run on a second thread while this one feeds the HMAC.
    sums: list[bytes] = []
    digest = crypto.KeyedHasher(key, purpose="digest")
    done = 0
    pool = _HashThread() if size > 4 * chunk_size else None
    try:
        for block in _blocks(f, size, chunk_size, path):
            if pool is None:
                sums.append(hashlib.sha256(block).digest())
                digest.update(block)
            else:
                pool.start(block)
                digest.update(block)
                sums.append(pool.result())
            done += len(block)
            report(done // 2)
    finally:
        if pool is not None:
            pool.close()
    dedup = crypto.KeyedHasher(key, purpose="dedup")
    dedup.update(_DEDUP_LABEL + struct.pack(">IQ", chunk_size, size))
    dedup.update(b"".join(sums))
    salt = bytes.fromhex(dedup.hexdigest())

    # pass 2: encrypt exactly what pass 1 saw (a changed chunk aborts before it is sealed)
    def verified() -> Iterator[bytes]:
        f.seek(0)
        pos = 0
        for index, block in enumerate(_blocks(f, size, chunk_size, path)):
            if index >= len(sums) or hashlib.sha256(block).digest() != sums[index]:
                raise _changed(path)
            pos += len(block)
            report((size + pos) // 2)
            yield block

    encryptor = crypto.StreamEncryptor(key, chunk_size=chunk_size, salt=salt)
    total = crypto.ciphertext_size(size, chunk_size)
    stream = encryptor.encrypt(verified())
    objects = _write_parts(repo, _prefetch(stream) if size > 4 * chunk_size else stream, total, part_size)
    return ArtifactEntry(path, size, f"hmac-sha256:{digest.hexdigest()}", True, len(objects), encryptor.fingerprint, tuple(objects))


class _HashThread:
    """SHA-256 of one block at a time on a second thread (hashlib releases the GIL on large data)."""

    def __init__(self) -> None:
        self._todo: queue.Queue[Any] = queue.Queue(1)
        self._done: queue.Queue[Any] = queue.Queue(1)
        self._thread = threading.Thread(target=self._run, name="gitxp-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            block = self._todo.get()
            if block is None:
                return
            self._done.put(hashlib.sha256(block).digest())

    def start(self, block: bytes) -> None:
        self._todo.put(block)

    def result(self) -> bytes:
        return self._done.get()

    def close(self) -> None:
        while True:  # a block started but not collected (an error in between) is dropped
            try:
                self._done.get_nowait()
            except queue.Empty:
                break
        self._todo.put(None)
        self._thread.join()


def _prefetch(items: Iterator[bytes], depth: int = 4) -> Iterator[bytes]:
    """Run ``items`` in a helper thread, up to ``depth`` pieces ahead.

    hashlib, zlib and file I/O release the GIL, so reading, checking and
    encrypting overlap with the SHA-1, zlib and writes of the git object
    (measured 1.3x faster on two cores). Errors surface in the caller.
    """
    pipe: queue.Queue[Any] = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                pipe.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(end)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=run, name="gitxp-artifact", daemon=True)
    worker.start()
    try:
        while True:
            item = pipe.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def _count_parts(total: int, part_size: int) -> int:
    parts = max(1, -(-total // part_size))
    if parts > MAX_PARTS:
        raise UsageError(f"artifact needs {parts} parts, over the limit of {MAX_PARTS}", "use a larger part size")
    return parts


def _write_parts(repo: Repo, pieces: Iterable[bytes], total: int, part_size: int) -> list[str]:
    """Cut a stream of ``total`` bytes into blobs of ``part_size``; never holds a whole part."""
    it = iter(pieces)
    rest = memoryview(b"")

    def take(n: int) -> Iterator[memoryview]:
        nonlocal rest
        while n:
            if not rest:
                piece = next(it, None)
                if piece is None:
                    raise StoreError("encrypted stream ended early", "this is a bug in gitxp; please report it")
                rest = memoryview(piece).cast("B")
            out, rest = rest[:n], rest[n:]
            n -= len(out)
            yield out

    try:
        objects = []
        for i in range(_count_parts(total, part_size)):
            length = min(part_size, total - i * part_size)
            objects.append(repo.write_stream("blob", take(length), length, level=0))
        # run the stream to its end: the final checks (EOF of the file) happen there
        if rest or any(len(p) for p in it):
            raise StoreError("encrypted stream is longer than expected", "this is a bug in gitxp; please report it")
        return objects
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()  # stops a prefetch thread at once when a write failed


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
    item = _check_item(obj, what=what)
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
    items = {it["path"]: it for it in (_check_item(x, what=layout.ARTIFACTS_FILE) for x in previous_manifest or [])}
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
    clash = _clash(list(items.values())) or next(
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


def _clash(items: list[dict[str, Any]]) -> str | None:
    """A description of two artifacts whose storage paths collide, or None."""
    owner: dict[str, str] = {}
    for it in items:
        sp = storage_path(it["path"], encrypted=it["encrypted"], parts=it["parts"])
        if sp in owner:
            return f"{owner[sp]!r} and {it['path']!r} are both stored at {sp}"
        owner[sp] = it["path"]
    for sp, path in owner.items():
        parts = sp.split("/")
        for k in range(2, len(parts)):
            prefix = "/".join(parts[:k])
            if prefix in owner:
                return f"{owner[prefix]!r} is stored at {prefix}, where {path!r} needs a folder"
    paths = set(owner.values())
    for path in sorted(paths):
        parts = path.split("/")
        for k in range(1, len(parts)):
            prefix = "/".join(parts[:k])
            if prefix in paths:
                return f"{prefix!r} is a file, where {path!r} needs a folder"
    return None


# ------------------------------------------------------------------ reading


def _check_item(item: Any, *, what: str) -> dict[str, Any]:
    """Validate one manifest line (untrusted: it may come from a pulled store)."""
    hint = "the store may be damaged or hostile; see `git log -p` of artifacts.yaml"
    if not isinstance(item, dict):
        raise UnsafeDataError(f"{what}: an entry is not a mapping", hint)
    raw = item.get("path")
    path = layout.safe_relpath(raw, what=f"artifact path in {what}")  # type: ignore[arg-type]
    if path != raw:
        raise UnsafeDataError(f"{what}: artifact path {raw!r} is not normalised", hint)

    def is_int(v: Any) -> TypeGuard[int]:
        return isinstance(v, int) and not isinstance(v, bool)

    size, parts, encrypted, digest = item.get("size"), item.get("parts"), item.get("encrypted"), item.get("digest")
    if not is_int(size) or size < 0:
        raise UnsafeDataError(f"{what}: artifact {path!r} has a bad size {size!r}", hint)
    if not is_int(parts) or not 1 <= parts <= MAX_PARTS:
        raise UnsafeDataError(f"{what}: artifact {path!r} has a bad part count {parts!r}", hint)
    if not isinstance(encrypted, bool):
        raise UnsafeDataError(f"{what}: artifact {path!r} has a bad 'encrypted' flag {encrypted!r}", hint)
    m = _DIGEST_RE.fullmatch(digest) if isinstance(digest, str) else None
    if m is None or (m.group(1) == "hmac-sha256") != encrypted:
        raise UnsafeDataError(f"{what}: artifact {path!r} has a bad digest {str(digest)[:80]!r}", hint)
    out: dict[str, Any] = {"path": path, "size": size, "digest": digest, "encrypted": encrypted, "parts": parts}
    key = item.get("key")
    if encrypted:
        if key is not None and not (isinstance(key, str) and _FINGERPRINT_RE.fullmatch(key)):
            raise UnsafeDataError(f"{what}: artifact {path!r} has a bad key fingerprint {str(key)[:40]!r}", hint)
        out["key"] = key
    elif key is not None:
        raise UnsafeDataError(f"{what}: unencrypted artifact {path!r} names a key", hint)
    return out


def read_manifest(record: Record) -> list[dict[str, Any]]:
    """The validated ``artifacts.yaml`` of a stored experiment, sorted by path ([] when none).

    Raises:
        UnsafeDataError: malformed YAML, a path that could escape (absolute,
            ``..``, ``.git``), wrong types, duplicates or clashing paths.
    """
    data = record.read_file(layout.ARTIFACTS_FILE)
    if data is None:
        return []
    what = f"{record.id}/{layout.ARTIFACTS_FILE}"
    return check_manifest(layout.load_yaml(data, what=what), what=what)


def check_manifest(doc: Any, *, what: str) -> list[dict[str, Any]]:
    """A parsed ``artifacts.yaml`` validated (see :func:`read_manifest`), sorted by path.

    Also what ``gitxp pull`` checks, so that a store which ``gitxp get``
    would refuse never merges.
    """
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise UnsafeDataError(f"{what} is not a list", "the store may be damaged or hostile")
    items = [_check_item(x, what=what) for x in doc]
    seen: set[str] = set()
    for it in items:
        if it["path"] in seen:
            raise UnsafeDataError(f"{what} lists artifact {it['path']!r} twice", "the store may be damaged or hostile")
        seen.add(it["path"])
    clash = _clash(items)
    if clash:
        raise UnsafeDataError(f"{what}: {clash}", "the store may be damaged or hostile")
    return sorted(items, key=lambda it: it["path"])


def _find(record: Record, manifest: list[dict[str, Any]], path: str) -> dict[str, Any]:
    wanted = artifact_name(path)
    for it in manifest:
        if it["path"] == wanted:
            return it
    raise _unknown(record, manifest, wanted)


def _unknown(record: Record, manifest: list[dict[str, Any]], wanted: str) -> UsageError:
    names = [it["path"] for it in manifest]
    folders = sorted({p.rsplit("/", 1)[0] for p in names if "/" in p})
    close = difflib.get_close_matches(wanted, names + folders, n=5, cutoff=0.5)
    if not names:
        return UsageError(f"experiment {record.id} has no artifacts", "log some with xp.log_artifact() or `gitxp start --artifact GLOB`")
    listed = close or names[:5]
    more = "" if close or len(names) <= 5 else f" (and {len(names) - 5} more)"
    label = "did you mean" if close else "it has"
    return UsageError(
        f"experiment {record.id} has no artifact {wanted!r}",
        f"{label}: {', '.join(listed)}{more}; see `gitxp artifacts {record.id}`",
    )


def _part_shas(record: Record, item: dict[str, Any]) -> list[str]:
    """The blob of each part, after checking the stored shape against the manifest."""
    sp = storage_path(item["path"], encrypted=item["encrypted"], parts=item["parts"])
    hint = "the store is incomplete or was altered; fetch it again (`gitxp pull`)"
    e = record.entry(sp)
    if e is None:
        raise DecryptionError(f"artifact {item['path']!r} of experiment {record.id} is missing ({sp} is not stored)", hint)
    if item["parts"] == 1:
        if e.mode != FILE_MODE:
            raise DecryptionError(f"artifact {item['path']!r}: {sp} is not a file", hint)
        return [e.sha]
    if not e.is_tree:
        raise DecryptionError(f"artifact {item['path']!r}: {sp} is not a folder of parts", hint)
    stored = {x.name: x for x in record.store.repo.read_tree(e.sha)}
    expected = [f"{i:06d}" for i in range(item["parts"])]
    if sorted(stored) != expected or any(x.mode != FILE_MODE for x in stored.values()):
        raise DecryptionError(
            f"artifact {item['path']!r} should have {item['parts']} parts in {sp}, found {len(stored)} "
            "(missing, extra or misnamed parts)",
            hint,
        )
    return [stored[n].sha for n in expected]


def _stream_fingerprint(record: Record, item: dict[str, Any]) -> str:
    """The key fingerprint an encrypted artifact needs: the manifest's, else its header's."""
    if item.get("key"):
        return str(item["key"])
    shas = _part_shas(record, item)
    head = b""
    for piece in record.store.repo.iter_blob(shas[0]):
        head += piece
        if len(head) >= crypto.HEADER_SIZE:
            break
    return crypto.parse_header(head).fingerprint


def _need_key(fp: str, have: bytes | None) -> KeyMissingError:
    if have is None:
        err = KeyMissingError(f"artifact key {fp} is needed to read this artifact", "get it from a colleague (`gitxp key export`) and run `gitxp key import`")
    else:
        err = KeyMissingError(
            f"artifact was encrypted with key {fp}, not with the given key {crypto.fingerprint(have)}",
            "import it with `gitxp key import`",
        )
    err.fingerprint = fp  # type: ignore[attr-defined]
    return err


def iter_artifact(record: Record, path: str, *, key: bytes | None) -> Iterator[bytes]:
    """Stream an artifact's plaintext, verified.

    Lookup, the stored shape and the key are checked before this returns;
    the stream authenticates chunk by chunk, and the digest and size are
    compared after the last chunk: a mismatch raises there, so callers must
    write to a temporary file and keep it only when iteration finished.

    Raises:
        UsageError: no such artifact (the message lists close names).
        KeyMissingError: encrypted, and ``key`` is None or another key.
        DecryptionError: tampering, truncation, swapped or missing parts, digest mismatch.
        UnsafeDataError: a malformed manifest.
    """
    return _open(record, _find(record, read_manifest(record), path), key)


def _open(record: Record, item: dict[str, Any], key: bytes | None) -> Iterator[bytes]:
    """:func:`iter_artifact` for a manifest line already looked up (extract reads the manifest once)."""
    shas = _part_shas(record, item)
    if item["encrypted"]:
        fp = _stream_fingerprint(record, item)
        if key is None or crypto.fingerprint(key) != fp:
            raise _need_key(fp, key)
    return _verified(record, item, shas, key)


def _verified(record: Record, item: dict[str, Any], shas: list[str], key: bytes | None) -> Iterator[bytes]:
    repo = record.store.repo

    def stored() -> Iterator[bytes]:
        for sha in shas:
            yield from repo.iter_blob(sha)

    hasher: Any
    if item["encrypted"]:
        assert key is not None
        hasher, prefix, pieces = crypto.KeyedHasher(key, purpose="digest"), "hmac-sha256:", crypto.decrypt_stream(key, stored())
    else:
        hasher, prefix, pieces = hashlib.sha256(), "sha256:", stored()
    size = item["size"]
    done = 0
    mismatch = DecryptionError(
        f"artifact {item['path']!r} of experiment {record.id} does not match its recorded digest and size "
        "(parts swapped, altered or damaged)",
        "fetch a fresh copy (`gitxp pull`) or restore it from another clone",
    )
    for piece in pieces:
        done += len(piece)
        if done > size:
            raise mismatch
        hasher.update(piece)
        yield piece
    if done != size or prefix + hasher.hexdigest() != item["digest"]:
        raise mismatch


def read_bytes(record: Record, path: str, *, key: bytes | None) -> bytes:
    """An artifact's whole verified content (for small files: ``rec.read_artifact``)."""
    return b"".join(iter_artifact(record, path, key=key))


# ------------------------------------------------------------------ extracting


def extract(
    record: Record,
    path: str | None,
    dest: str | os.PathLike[str] | None,
    *,
    key_loader: Callable[[str], bytes],
    progress: bool = False,
) -> list[Path]:
    """Write artifacts out, verified, as ``gitxp get REF [PATH] [-o DEST]`` does.

    ``path`` names one artifact, a folder of artifacts, or (None) all of
    them. One artifact goes to ``dest`` (default: its basename in the current
    folder; inside ``dest`` if that is an existing folder). A folder or
    everything goes into the folder ``dest`` (default ``./<id>/``) keeping
    artifact-relative paths (``outputs/a.csv`` → ``DEST/outputs/a.csv``).
    Everything is decrypted into temporary files first and renamed into
    place only when every artifact verified, so a failure leaves no output.
    Nothing is written outside ``dest``: manifest paths are validated, every
    target is resolved and checked, and symlinked folders below ``dest`` are
    refused. ``key_loader(fingerprint)`` returns the key (or raises
    :class:`KeyMissingError`); keys are loaded before anything is written.

    Returns the paths written, in artifact order.
    """
    manifest = read_manifest(record)
    if path is None:
        selected, single = manifest, False
    else:
        wanted = artifact_name(path)
        exact = [it for it in manifest if it["path"] == wanted]
        selected = exact or [it for it in manifest if it["path"].startswith(wanted + "/")]
        single = bool(exact)
        if not selected:
            raise _unknown(record, manifest, wanted)
    if not selected:
        return []

    keys: dict[str, bytes] = {}
    key_of: dict[str, bytes] = {}
    for it in selected:
        if it["encrypted"]:
            fp = _stream_fingerprint(record, it)
            if fp not in keys:
                keys[fp] = key_loader(fp)
            key_of[it["path"]] = keys[fp]

    if single:
        item = selected[0]
        base = item["path"].rsplit("/", 1)[-1]
        target = Path(dest) if dest is not None else Path.cwd() / base
        if target.is_dir():
            target = target / base
            if target.is_dir() and not target.is_symlink():
                raise UsageError(f"{target} is a folder", "choose another destination with -o DEST")
        target.parent.mkdir(parents=True, exist_ok=True)
        plan = [(item, target.parent.resolve() / target.name)]
        tmp_dir = plan[0][1].parent
    else:
        root = Path(dest) if dest is not None else Path.cwd() / record.id
        if root.exists() and not root.is_dir():
            raise UsageError(f"{root} exists and is not a folder", "choose another destination with -o DEST")
        return _extract_folder(record, selected, root, key_of, progress)

    item, target = plan[0]
    tmp = _write_temp(tmp_dir, _open(record, item, key_of.get(item["path"])), item, progress)
    try:
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return [target]


def _extract_folder(record: Record, selected: list[dict[str, Any]], root: Path, key_of: dict[str, bytes], progress: bool) -> list[Path]:
    """All or nothing: everything is written and verified in a folder beside ``root``, then moved in.

    A new ``root`` is that folder renamed; into an existing one, every
    target is checked before anything is written, and files already moved
    are taken back if a later move fails. On any failure nothing is left.
    """
    import shutil
    import tempfile

    root.parent.mkdir(parents=True, exist_ok=True)
    existed = root.is_dir()
    final = root.resolve() if existed else root.parent.resolve() / root.name
    if existed:
        for it in selected:
            _target_in(final, it["path"])  # a conflict with what is there is found before anything is written
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.gitxp-get-", dir=final.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # it becomes DEST: a folder as mkdir makes it, not mkdtemp's 0700
    moved: list[Path] = []
    made: list[Path] = []
    try:
        for it in selected:
            target = _target_in(staging, it["path"], create=True)
            os.replace(_write_temp(target.parent, _open(record, it, key_of.get(it["path"])), it, progress), target)
        if not existed:
            os.rename(staging, final)
            return [final / it["path"] for it in selected]
        for it in selected:
            folder = final
            for part in it["path"].split("/")[:-1]:
                folder = folder / part
                if not folder.exists():
                    folder.mkdir()
                    made.append(folder)
            target = _target_in(final, it["path"])
            os.replace(staging / it["path"], target)
            moved.append(target)
        moved = []
        made = []
        return [final / it["path"] for it in selected]
    finally:
        for f in moved:
            f.unlink(missing_ok=True)
        for d in reversed(made):
            try:
                d.rmdir()
            except OSError:
                pass
        shutil.rmtree(staging, ignore_errors=True)


def _target_in(root: Path, rel: str, *, create: bool = False) -> Path:
    """``root/rel`` checked to stay inside ``root`` with no symlinked folder on the way."""
    rel = layout.safe_relpath(rel, what="artifact path")
    parts = rel.split("/")
    folder = root
    for part in parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            raise UnsafeDataError(f"refusing to write through the symbolic link {folder}", "remove the link or choose another destination")
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{folder} is a file where artifact {rel!r} needs a folder", "choose another destination with -o DEST")
        if create:
            folder.mkdir(exist_ok=True)
    target = folder / parts[-1]
    if target.is_dir() and not target.is_symlink():
        raise UsageError(f"{target} is a folder where artifact {rel!r} is a file", "choose another destination with -o DEST")
    real = target.parent.resolve() / target.name if target.parent.exists() else target
    if os.path.commonpath([str(root), str(real)]) != str(root):
        raise UnsafeDataError(f"artifact {rel!r} would be written outside {root}", "the store may be hostile")
    return target


def _write_temp(folder: Path, pieces: Iterator[bytes], item: dict[str, Any], progress: bool) -> Path:
    """Write ``pieces`` to a new temporary file in ``folder``; removed if anything fails."""
    tmp = folder / f".gitxp-get-{os.getpid()}-{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    show = terminal_progress(item["path"], item["size"]) if progress and item["size"] >= PROGRESS_MIN_SIZE else None
    try:
        with os.fdopen(fd, "wb") as out:
            done = 0
            for piece in pieces:
                out.write(piece)
                done += len(piece)
                if show:
                    show(done)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp
