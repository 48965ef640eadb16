"""Reading artifacts: one artifact streamed and verified, or many extracted all or nothing.

Reading treats the manifest and the objects as untrusted (a pulled store):
paths are checked (:mod:`gitxp.artifacts.manifest`), the number and names of
parts are checked, the stream is authenticated chunk by chunk and the
plaintext is compared with the digest and size after the last chunk.
:func:`extract` writes to temporary files and renames them only once
everything verified, and never outside its destination.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitxp.artifacts import crypto, keys
from gitxp.artifacts.manifest import artifact_name, read_manifest, storage_path
from gitxp.artifacts.write import PROGRESS_MIN_SIZE, terminal_progress
from gitxp.errors import DecryptionError, KeyMissingError, UnsafeDataError, UsageError
from gitxp.plumbing.repo import FILE_MODE
from gitxp.store import layout

if TYPE_CHECKING:
    from gitxp.store.record import Record

__all__ = ["extract", "iter_artifact", "read_bytes"]


# ------------------------------------------------------------------ reading


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
            f"artifact was encrypted with key {fp}, not with the given key {keys.fingerprint(have)}",
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
        if key is None or keys.fingerprint(key) != fp:
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
