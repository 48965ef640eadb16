"""Inputs: the data a run read, as ``{name, path, size, files, digest}`` (did the data change?).

A file's digest is ``sha256:`` of its bytes; a folder's is ``sha256:`` of
its sorted ``path NUL digest LF`` lines (files only, symlinks followed not).
Digests are cached per file by absolute path, size and mtime (ns) in
``.git/gitxp/cache/inputs.json``, so a 10 GB dataset that did not change is
not read again: the cache is derived, deleting it loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from gitxp.errors import UsageError

CACHE_FILE = "inputs.json"
_CHUNK = 1 << 20


def parse_spec(spec: str) -> tuple[str | None, str]:
    """``NAME=PATH`` or ``PATH`` (a path that exists as given is never split at ``=``)."""
    name, sep, path = spec.partition("=")
    if sep and name and not os.path.exists(spec) and "/" not in name:
        return name, path
    return None, spec


def default_name(path: Path) -> str:
    """``data/train.csv`` → ``train``; a folder ``data/images`` → ``images``."""
    name = path.name or path.resolve().name
    stem = Path(name).stem
    return stem or name


def check_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"input {os.fspath(path)!r} does not exist", "give an existing file or folder, e.g. --input data/train.csv")
    if not (p.is_file() or p.is_dir()):
        raise UsageError(f"input {os.fspath(path)!r} is not a file or folder", "give a regular file or a folder")
    return p


def describe(path: str | os.PathLike[str], name: str | None, *, repo_root: Path | None, cache_dir: Path) -> dict[str, Any]:
    """One input's record; hashes only what the cache does not already know."""
    from gitxp.store import layout

    p = check_path(path)
    name = name if name is not None else default_name(p)
    layout.check_text(name, "input name")
    if not name or "." in name or len(name) > layout.MAX_NAME_CHARS:
        raise UsageError(f"invalid input name {name!r}", "name it NAME=PATH, with a name without dots, e.g. --input train=data/train.csv")
    cache = _Cache(cache_dir / CACHE_FILE)
    if p.is_file():
        st = p.stat()
        size, files, digest = st.st_size, 1, cache.digest(p, st)
    else:
        lines, size, files = [], 0, 0
        for rel, f in _walk(p):
            st = f.stat()
            lines.append(f"{rel}\0{cache.digest(f, st)}\n")
            size += st.st_size
            files += 1
        digest = "sha256:" + hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()
    cache.save()
    return {"name": name, "path": _recorded_path(p, repo_root), "size": size, "files": files, "digest": digest}


def _recorded_path(p: Path, repo_root: Path | None) -> str:
    """Repository-relative inside the repository (the same on every clone), absolute outside."""
    full = p.resolve()
    if repo_root is not None:
        try:
            return full.relative_to(Path(repo_root).resolve()).as_posix() or "."
        except ValueError:
            pass
    return str(full)


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for fn in sorted(filenames):
            f = Path(dirpath) / fn
            if f.is_file() and not f.is_symlink():
                yield f.relative_to(root).as_posix(), f


class _Cache:
    """``{absolute path: [size, mtime_ns, digest]}``, read once, written once if anything was hashed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.changed = False
        try:
            data = json.loads(path.read_text())
            self.entries: dict[str, list[Any]] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.entries = {}

    def digest(self, f: Path, st: os.stat_result) -> str:
        key = str(f.resolve())
        hit = self.entries.get(key)
        if isinstance(hit, list) and len(hit) == 3 and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return str(hit[2])
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        digest = "sha256:" + h.hexdigest()
        self.entries[key] = [st.st_size, st.st_mtime_ns, digest]
        self.changed = True
        return digest

    def save(self) -> None:
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache: the digest is right either way


def merged(staged: Sequence[Any]) -> list[dict[str, Any]]:
    """The inputs of a run from what its processes staged: a name logged again replaces the earlier one."""
    out: dict[str, dict[str, Any]] = {}
    for batch in staged:
        for entry in batch or []:
            if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
                out[entry["name"]] = dict(entry)
    return list(out.values())


def by_name(inputs: Any) -> dict[str, Any]:
    """``inputs:`` as ``{name: entry}`` (what queries and diffs read); anything malformed is skipped."""
    if not isinstance(inputs, list):
        return {}
    return {e["name"]: e for e in inputs if isinstance(e, Mapping) and isinstance(e.get("name"), str)}


def problems(inputs: Any) -> list[str]:
    """What is wrong with an ``inputs:`` field of experiment.yaml (pull refuses these)."""
    from gitxp.store.layout import text_problem

    if inputs is None:
        return []
    if not isinstance(inputs, list) or not all(isinstance(e, dict) for e in inputs):
        return ["field 'inputs' must be a list of mappings"]
    for e in inputs:
        if not isinstance(e.get("name"), str) or not isinstance(e.get("path"), str) or not isinstance(e.get("digest"), str):
            return ["field 'inputs' entries need a text name, path and digest"]
        if any(text_problem(e[k]) for k in ("name", "path", "digest")):
            return [f"field 'inputs' entry {e['name'][:40]!r} has a control character"]
        for k in ("size", "files"):
            if isinstance(e.get(k), bool) or not isinstance(e.get(k), (int, type(None))):
                return [f"field 'inputs' entry {e['name'][:40]!r}.{k} must be a whole number"]
    return []


def changes(a: Any, b: Any) -> list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]]:
    """``(kind, name, in A, in B)`` for inputs that differ: ``~`` changed digest, ``+`` only in B, ``-`` only in A."""
    ia, ib = by_name(a), by_name(b)
    out: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]] = []
    for name in sorted({*ia, *ib}):
        x, y = ia.get(name), ib.get(name)
        if x is None:
            out.append(("+", name, None, y))
        elif y is None:
            out.append(("-", name, x, None))
        elif x.get("digest") != y.get("digest"):
            out.append(("~", name, x, y))
    return out


def short_digest(digest: Any) -> str:
    text = str(digest or "-")
    return text.split(":", 1)[-1][:12]
