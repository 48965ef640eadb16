"""The artifact key: its text form, its fingerprint, where it lives, and the store's key.

The master key is 32 random bytes. It comes from ``GITXP_KEY`` (unpadded
base64url), from the file named by ``GITXP_KEY_FILE`` (how ``gitxp start``
hands it to the wrapped command, so that printing the environment shows a
path, not the key) or from ``$XDG_CONFIG_HOME/gitxp/keys/<store_id>.key``; it
is never written inside a repository's records. Its fingerprint (16 hex digits) is what the store
and every encrypted file record, so a missing or wrong key is reported by
name instead of looking like corruption. Only the fingerprint is committed
(``keys`` in gitxp.yaml, :func:`ensure_store_key`).

Standard library only: the cipher that uses the key is
:mod:`gitxp.artifacts.crypto`, the one module that imports ``cryptography``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gitxp.errors import KeyMissingError, UnsafeDataError, UsageError

if TYPE_CHECKING:
    from gitxp.store.store import Store

__all__ = [
    "KEY_ENV", "KEY_FILE_ENV", "KEY_SIZE", "check_key", "decode_key", "encode_key", "ensure_key",
    "ensure_store_key", "fingerprint", "generate_key", "key_dir", "key_loader", "key_path", "key_source",
    "known_key_texts", "load_key", "require_key", "save_key", "store_key", "write_key_file",
]

KEY_ENV = "GITXP_KEY"
KEY_FILE_ENV = "GITXP_KEY_FILE"
KEY_SIZE = 32
FINGERPRINT_BYTES = 8

_FINGERPRINT_LABEL = b"gitxp key fingerprint v1\0"
_KEY_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")
_STORE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

_IMPORT_HINT = "get it from a colleague (`gitxp key export`) and run `gitxp key import`"


# --------------------------------------------------------------------------- the key


def generate_key() -> bytes:
    """Return a fresh random 32-byte master key."""
    return os.urandom(KEY_SIZE)


def encode_key(key: bytes) -> str:
    """Return ``key`` as unpadded base64url: the form of ``GITXP_KEY`` and key files."""
    check_key(key)
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


def decode_key(text: str) -> bytes:
    """Parse a key written by :func:`encode_key`.

    Surrounding whitespace and ``=`` padding are tolerated so that a key pasted
    from a terminal or another tool still works.

    Raises:
        UsageError: the text is not 43 base64url characters encoding 32 bytes.
    """
    cleaned = text.strip().rstrip("=")
    if not _KEY_TEXT.fullmatch(cleaned):
        # never echo the text: it is (nearly) a secret
        bad = any(not (c.isascii() and (c.isalnum() or c in "-_")) for c in cleaned)
        what = (
            "contains characters outside base64url (A-Z a-z 0-9 - _)"
            if bad
            else f"has {len(cleaned)} characters, expected 43"
        )
        raise UsageError(
            f"invalid artifact key: it {what}",
            "paste exactly what `gitxp key export` printed (32 bytes, unpadded base64url)",
        )
    key = base64.urlsafe_b64decode(cleaned + "=")
    if encode_key(key) != cleaned:  # stray low bits in the last character
        raise UsageError(
            "invalid artifact key: its last character is not canonical base64url",
            "paste exactly what `gitxp key export` printed",
        )
    return key


def fingerprint(key: bytes) -> str:
    """Return the key's fingerprint: 16 hex digits of SHA-256(label || key).

    The label keeps the fingerprint from being the SHA-256 of the bare key,
    which would be a useful oracle for nothing but still needless.
    """
    check_key(key)
    return hashlib.sha256(_FINGERPRINT_LABEL + key).hexdigest()[: 2 * FINGERPRINT_BYTES]


def key_dir() -> Path:
    """Return the folder of key files: ``$XDG_CONFIG_HOME/gitxp/keys``.

    ``XDG_CONFIG_HOME`` is ignored when unset, empty or relative (as the XDG
    spec says), falling back to ``~/.config``. This is outside any repository
    on purpose: the key must never be committed.
    """
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "gitxp" / "keys"


def key_path(store_id: str) -> Path:
    """Return the key file of a store: ``key_dir()/<store_id>.key``.

    Raises:
        UnsafeDataError: ``store_id`` (read from a possibly pulled
            ``gitxp.yaml``) is not a plain file name.
    """
    if not isinstance(store_id, str) or not _STORE_ID.fullmatch(store_id):
        raise UnsafeDataError(
            f"store id {store_id!r} is not a valid name for a key file",
            "check `store_id` in gitxp.yaml on the store branch",
        )
    return key_dir() / f"{store_id}.key"


def load_key(store_id: str) -> bytes | None:
    """Return the artifact key of a store, or None when there is none.

    ``GITXP_KEY`` wins over ``GITXP_KEY_FILE``, which wins over the key
    file, so CI and colleagues can supply a key without touching ``~/.config``.

    Raises:
        UsageError: ``GITXP_KEY`` is set but malformed.
        KeyMissingError: the key file exists but cannot be read or parsed, or
            ``GITXP_KEY_FILE`` names a missing file.
    """
    env = os.environ.get(KEY_ENV, "")
    if env.strip():
        try:
            return decode_key(env)
        except UsageError as exc:
            raise UsageError(f"{KEY_ENV}: {exc.message}", exc.hint) from exc
    named = os.environ.get(KEY_FILE_ENV, "").strip()
    path = Path(named) if named else key_path(store_id)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        if named:  # never make up a new key when the one named is missing
            raise KeyMissingError(f"{KEY_FILE_ENV} names {path}, which does not exist",
                                  f"point {KEY_FILE_ENV} at the key file or unset it") from None
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyMissingError(
            f"cannot read the artifact key file {path}: {exc}",
            "fix its permissions or restore it with `gitxp key import`",
        ) from exc
    try:
        return decode_key(text)
    except UsageError as exc:
        raise KeyMissingError(
            f"the artifact key file {path} is damaged: {exc.message}",
            "restore it with `gitxp key import`",
        ) from exc


def key_source(store_id: str) -> str:
    """Where :func:`load_key` looks first: ``GITXP_KEY``, the ``GITXP_KEY_FILE`` path or the key file."""
    if os.environ.get(KEY_ENV, "").strip():
        return KEY_ENV
    return os.environ.get(KEY_FILE_ENV, "").strip() or str(key_path(store_id))


def known_key_texts(store_id: str | None) -> list[str]:
    """Every key text this process knows (``GITXP_KEY``, ``GITXP_KEY_FILE``, the store's key file).

    These are masked wherever output or metadata is recorded. Never raises:
    a key that cannot be read cannot leak either.
    """
    texts = [os.environ.get(KEY_ENV, "")]
    paths = [os.environ.get(KEY_FILE_ENV, "").strip()]
    if store_id is not None:
        try:
            paths.append(str(key_path(store_id)))
        except UnsafeDataError:
            pass
    for path in filter(None, paths):
        try:
            texts.append(Path(path).read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError):
            pass
    out = []
    for text in texts:
        cleaned = text.strip().rstrip("=")
        if len(cleaned) >= 16 and cleaned not in out:  # a short or empty value would mask ordinary text
            out.append(cleaned)
    return out


def write_key_file(path: Path, key: bytes) -> Path:
    """Write ``key`` to a new file only its owner can read (for ``GITXP_KEY_FILE``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (encode_key(key) + "\n").encode("ascii"))
    finally:
        os.close(fd)
    return path


def save_key(store_id: str, key: bytes) -> Path:
    """Write ``key`` as the store's key file (mode 0600, folder 0700) and return its path.

    Used by ``gitxp key import``. A different key already there is kept as
    ``<store_id>.key.<fingerprint>.bak`` rather than lost: artifacts encrypted
    with it stay readable (:func:`require_key` looks there).
    """
    check_key(key)
    path = key_path(store_id)
    _make_key_dir(path.parent)
    try:
        old_text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        old_text = None
    except (OSError, UnicodeDecodeError):
        old_text = ""
    if old_text is not None:
        try:
            old = decode_key(old_text)
        except UsageError:
            old = None
        if old == key:
            os.chmod(path, 0o600)
            return path
        label = fingerprint(old) if old is not None else "damaged"
        os.replace(path, path.with_name(f"{path.name}.{label}.bak"))
    tmp = _write_temp(path, key)
    os.replace(tmp, path)
    return path


def ensure_key(store_id: str) -> bytes:
    """Return the store's key, creating and saving a new one if there is none.

    Two processes racing here agree on one key: the new file is published
    with a hard link, which fails if another process got there first, and
    then that process's key is used.
    """
    key = load_key(store_id)
    if key is not None:
        return key
    key = generate_key()
    path = key_path(store_id)
    _make_key_dir(path.parent)
    tmp = _write_temp(path, key)
    try:
        try:
            os.link(tmp, path)  # fails if another process published a key first
        except FileExistsError:
            existing = load_key(store_id)
            if existing is not None:
                return existing
            os.replace(tmp, path)  # it vanished in between: ours is as good as any
        except OSError:  # no hard links on this file system: last writer wins
            os.replace(tmp, path)
        return key
    finally:
        if tmp.exists():
            os.unlink(tmp)


def require_key(store_id: str, fingerprint_needed: str) -> bytes:
    """Return the key with fingerprint ``fingerprint_needed``.

    Looks at ``GITXP_KEY`` / the key file (:func:`load_key`), then at a key
    that :func:`save_key` set aside as ``<store_id>.key.<fingerprint>.bak``.

    Raises:
        KeyMissingError: no such key; the message names the fingerprint
            needed and, if there is one, the fingerprint of the key we have.
    """
    key = load_key(store_id)
    if key is not None and fingerprint(key) == fingerprint_needed:
        return key
    if re.fullmatch(r"[0-9a-f]{16}", fingerprint_needed):
        backup = key_path(store_id).with_name(f"{store_id}.key.{fingerprint_needed}.bak")
        try:
            old = decode_key(backup.read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError, UsageError):
            old = None
        if old is not None and fingerprint(old) == fingerprint_needed:
            return old
    if key is None:
        err = KeyMissingError(f"no artifact key {fingerprint_needed} for this store", _IMPORT_HINT)
    else:
        source = key_source(store_id)
        err = KeyMissingError(
            f"artifact key {fingerprint_needed} is needed but the key you have "
            f"({source}) is {fingerprint(key)}",
            _IMPORT_HINT,
        )
    err.fingerprint = fingerprint_needed  # type: ignore[attr-defined]
    raise err


def check_key(key: bytes) -> None:
    """Refuse anything but 32 bytes (``ValueError``: a caller's bug, not a user's mistake)."""
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
        raise ValueError(f"an artifact key is {KEY_SIZE} bytes")


def _make_key_dir(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)


def _write_temp(path: Path, key: bytes) -> Path:
    """Write ``key`` to a fresh temporary file next to ``path``; never readable by others."""
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (encode_key(key) + "\n").encode("ascii"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


# --------------------------------------------------------------------------- the store's key


def ensure_store_key(store: Store) -> str:
    """Make sure a key exists for this store and its fingerprint is in gitxp.yaml; returns it.

    The key itself lives outside the repository (``GITXP_KEY`` or the user's
    config folder); only the fingerprint is committed.
    """
    key = ensure_key(store.store_id)
    fp = fingerprint(key)
    doc = store.document() or {}
    if fp not in (doc.get("keys") or []):
        store.set_keys([fp])
    return fp


def store_key(store: Store) -> bytes:
    """The key for writing encrypted artifacts (created on first use)."""
    ensure_store_key(store)
    key = load_key(store.store_id)
    assert key is not None
    return key


def key_loader(store: Store) -> Callable[[str], bytes]:
    """A function fingerprint → key for reading, with a clear error when missing."""

    def load(fingerprint: str) -> bytes:
        return require_key(store.store_id, fingerprint)

    return load
