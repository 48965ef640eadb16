"""The artifact manifest: where artifacts are stored and what ``artifacts.yaml`` may say.

Layout inside an experiment directory (docs/format.md, "Artifacts"):

* encrypted: ``artifacts/<path>.gxp``, one blob, or a folder
  ``artifacts/<path>.gxp/`` of blobs ``000000``, ``000001``, … whose
  concatenation is the stream, when it is larger than the part size
  (default 50 MiB: forges refuse blobs over 100 MB);
* unencrypted: ``artifacts/<path>``, or ``artifacts/<path>.parts/000000`` …
  split the same way;
* ``artifacts.yaml``: a list of ``{path, size, digest, encrypted, parts}``
  (plus ``key: <fingerprint>`` for encrypted ones), sorted by path.

The manifest is untrusted (a pulled store): every line is checked here, by
the reader (:mod:`gitxp.artifacts.read`), the writer that merges with it
(:mod:`gitxp.artifacts.write`) and ``gitxp pull`` alike.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, TypeGuard

from gitxp.errors import UnsafeDataError, UsageError
from gitxp.store import layout

if TYPE_CHECKING:
    from gitxp.store.record import Record

__all__ = [
    "ENCRYPTED_SUFFIX", "MAX_PARTS", "PARTS_SUFFIX", "artifact_name", "check_item", "check_manifest",
    "find_clash", "read_manifest", "storage_path",
]

#: Part names have six digits, so at most this many parts.
MAX_PARTS = 10**6
ENCRYPTED_SUFFIX = ".gxp"
PARTS_SUFFIX = ".parts"

_DIGEST_RE = re.compile(r"(hmac-sha256|sha256):[0-9a-f]{64}")
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{16}")


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


def check_item(item: Any, *, what: str) -> dict[str, Any]:
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
    items = [check_item(x, what=what) for x in doc]
    seen: set[str] = set()
    for it in items:
        if it["path"] in seen:
            raise UnsafeDataError(f"{what} lists artifact {it['path']!r} twice", "the store may be damaged or hostile")
        seen.add(it["path"])
    clash = find_clash(items)
    if clash:
        raise UnsafeDataError(f"{what}: {clash}", "the store may be damaged or hostile")
    return sorted(items, key=lambda it: it["path"])


def find_clash(items: list[dict[str, Any]]) -> str | None:
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
