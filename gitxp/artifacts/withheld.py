"""Secrets in the work tree that the code snapshot must leave out.

An artifact logged encrypted usually stays where the script wrote it, as an
untracked file; the next experiment's snapshot would commit it as a plain
blob next to its ciphertext. So every file logged encrypted from a work
tree is remembered in ``.git/gitxp/withheld.jsonl`` (one JSON line per log:
repository-relative ``path``, ``size`` and git ``blob`` id of the bytes
logged; local, never pushed, never snapshotted since it is inside ``.git``)
and :func:`rules` turns that file, the key folder and the ``--artifact``
globs of the run about to start into a :class:`~gitxp.plumbing.snapshot.Withhold`.

The rules: a logged path is left out whenever its content is not HEAD's
(it may have been rewritten since), the same bytes are left out wherever
they lie (a copy), and the key folder is left out always, tracked or not.
A file already committed on the user's branch stays: it is in their history
anyway. Deleting ``withheld.jsonl`` forgets what was logged, so later
snapshots may include those files again.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from gitxp.plumbing.snapshot import Withhold, _hash_file

__all__ = ["REGISTRY", "remember", "rules"]

REGISTRY = "withheld.jsonl"
#: Files larger than this are remembered by path only (hashing them twice would
#: double the cost of logging a checkpoint); the size cap keeps copies out anyway.
_HASH_LIMIT = 256 * 2**20


def remember(src: str | os.PathLike[str]) -> None:
    """Record that ``src`` was just logged as an encrypted artifact.

    Does nothing when the file is not inside a git work tree. Never fails
    the caller's logging: an unwritable registry only warns.
    """
    from gitxp.errors import GitxpError
    from gitxp.plumbing.repo import discover

    full = Path(src).resolve()
    try:
        root, _, common = discover(full.parent)
    except GitxpError:
        return
    if root is None:
        return
    try:
        rel = full.relative_to(root).as_posix()
        size = full.stat().st_size
        blob = _hash_file(full) if size <= _HASH_LIMIT else None
        line = json.dumps({"path": rel, "size": size, "blob": blob}, separators=(",", ":")) + "\n"
        folder = common / "gitxp"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            if line in (folder / REGISTRY).read_text(encoding="utf-8", errors="replace"):
                return  # re-logging the same file adds nothing: the file grows with distinct files only
        except FileNotFoundError:
            pass
        fd = os.open(folder / REGISTRY, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode())  # one short append: atomic between processes
        finally:
            os.close(fd)
    except (OSError, ValueError) as exc:
        import sys

        print(f"gitxp: could not remember {src} as encrypted; later code snapshots may include it: {exc}",
              file=sys.stderr)


def rules(repo_root: Path, gitxp_dir: Path, *, artifact_globs: tuple[str, ...] = (),
          key_texts: Iterable[str] = ()) -> Withhold:
    """What a snapshot of ``repo_root`` must leave out now.

    ``artifact_globs`` (``gitxp start --artifact``, relative to the current
    folder) name files this run is about to log encrypted: what they match
    already is left out too. ``key_texts`` (:func:`gitxp.artifacts.keys.known_key_texts`)
    make a copy of the key file anywhere in the work tree (``gitxp key export
    > team.key``), or a changed file holding the key's text (``.env``),
    withheld like the key folder itself.
    """
    root = repo_root.resolve()
    always = {p for p in (_inside(root, _key_folder()), _inside(root, _key_file())) if p}
    paths: set[str] = set()
    blobs: dict[int, set[str]] = {}
    try:
        text = (gitxp_dir / REGISTRY).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        try:
            item = json.loads(line)
            path, size, blob = item["path"], item["size"], item.get("blob")
        except (ValueError, KeyError, TypeError):
            continue  # a torn line from a crash: the rest still counts
        if isinstance(path, str):
            paths.add(path)
        if isinstance(size, int) and isinstance(blob, str):
            blobs.setdefault(size, set()).add(blob)
    for text in key_texts:
        for data in _key_file_spellings(text):
            blobs.setdefault(len(data), set()).add(_blob_id(data))
    for pattern in artifact_globs:
        for match in glob.glob(pattern, recursive=True):
            found = [p for p in Path(match).rglob("*") if p.is_file()] if os.path.isdir(match) else [Path(match)]
            paths.update(rel for rel in (_inside(root, p.resolve()) for p in found) if rel)
    return Withhold(always=tuple(sorted(always)), paths=frozenset(paths),
                    blobs={size: frozenset(ids) for size, ids in blobs.items()},
                    texts=tuple(t.encode() for t in key_texts))


def _key_file_spellings(text: str) -> list[bytes]:
    """The bytes a saved copy of the key text may hold: bare, padded, with a line ending."""
    return [(text + pad + end).encode() for pad in ("", "=") for end in ("", "\n", "\r\n")]


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _key_folder() -> Path | None:
    from gitxp.artifacts import keys

    return keys.key_dir()


def _key_file() -> Path | None:
    from gitxp.artifacts import keys

    path = os.environ.get(keys.KEY_FILE_ENV, "").strip()
    return Path(path) if path else None


def _inside(root: Path, path: Path | None) -> str | None:
    """``path`` relative to ``root`` when inside it (never the root itself)."""
    if path is None:
        return None
    try:
        rel = path.resolve().relative_to(root).as_posix()
    except (ValueError, OSError):
        return None
    if rel in ("", ".") or rel == ".git" or rel.startswith(".git/"):
        return None  # git never snapshots its own folder
    return rel

