"""Artifact encryption and the artifact key.

Artifacts are encrypted with AES-256-GCM in a chunked streaming construction
modelled on age's STREAM: every chunk is sealed with a nonce made of its index
and a last-chunk flag, under a subkey derived for this one file from the
master key and a random salt. That is what lets us detect truncation,
reordering, dropped chunks, chunks moved between files and plain tampering,
while holding only one chunk in memory. The byte layout is specified in
``docs/format.md`` ("Encrypted artifact stream").

The master key is 32 random bytes. It comes from ``GITXP_KEY`` (unpadded
base64url), from the file named by ``GITXP_KEY_FILE`` (how ``gitxp start``
hands it to the wrapped command, so that printing the environment shows a
path, not the key) or from ``$XDG_CONFIG_HOME/gitxp/keys/<store_id>.key``; it
is never written inside a repository's records. Its fingerprint (16 hex digits) is what the store
and every encrypted file record, so a missing or wrong key is reported by
name instead of looking like corruption.

This is the only module that imports ``cryptography``, and it does so inside
functions so that ``import gitxp`` stays fast.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from gitxp.errors import DecryptionError, KeyMissingError, UnsafeDataError, UsageError

if TYPE_CHECKING:
    from typing import Union

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    Buffer = Union[bytes, bytearray, memoryview]

__all__ = [
    "CHUNK_SIZE", "HEADER_SIZE", "KEY_ENV", "KEY_SIZE", "MAGIC", "MAX_CHUNK_SIZE",
    "TAG_SIZE", "VERSION", "KeyedHasher", "StreamEncryptor", "StreamHeader",
    "ciphertext_size", "decode_key", "decrypt_stream", "dedup_key", "digest_key",
    "encode_key", "encrypt_file", "ensure_key", "fingerprint", "generate_key",
    "key_dir", "key_path", "key_source", "known_key_texts", "load_key", "parse_header", "require_key", "save_key",
    "write_key_file",
]

KEY_ENV = "GITXP_KEY"
KEY_FILE_ENV = "GITXP_KEY_FILE"
KEY_SIZE = 32
CHUNK_SIZE = 1 << 20
#: Upper bound on a header's chunk size: a hostile file must not make us buffer more.
MAX_CHUNK_SIZE = 16 << 20
TAG_SIZE = 16
MAGIC = b"GXP\x1a"
VERSION = 1
SALT_SIZE = 32
FINGERPRINT_BYTES = 8
# magic, version (u8), chunk size (u32 BE), fingerprint (8 raw bytes), salt (32 bytes)
_HEADER = struct.Struct(f">4sBI{FINGERPRINT_BYTES}s{SALT_SIZE}s")
HEADER_SIZE = _HEADER.size  # 49
NONCE_SIZE = 12

_FINGERPRINT_LABEL = b"gitxp key fingerprint v1\0"
_STREAM_INFO = b"gitxp stream v1\0"
_DIGEST_INFO = b"gitxp digest key v1\0"
_DEDUP_INFO = b"gitxp dedup key v1\0"

_KEY_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")
_STORE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

_IMPORT_HINT = "get it from a colleague (`gitxp key export`) and run `gitxp key import`"


# --------------------------------------------------------------------------- keys


def generate_key() -> bytes:
    """Return a fresh random 32-byte master key."""
    return os.urandom(KEY_SIZE)


def encode_key(key: bytes) -> str:
    """Return ``key`` as unpadded base64url: the form of ``GITXP_KEY`` and key files."""
    _check_key(key)
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
    _check_key(key)
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
    _check_key(key)
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


def _check_key(key: bytes) -> None:
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


# ------------------------------------------------------------------ keyed hashes


def _hkdf(key: bytes, *, salt: bytes | None, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(bytes(key))


def digest_key(key: bytes) -> bytes:
    """Return the HMAC key for artifact digests (HKDF of the master key, own label).

    A plain SHA-256 in the manifest would let anyone confirm a guessed file;
    an HMAC under a key-derived key is only checkable by key holders.
    """
    _check_key(key)
    return _hkdf(key, salt=None, info=_DIGEST_INFO)


def dedup_key(key: bytes) -> bytes:
    """Return the HMAC key for deduplication look-ups (separate from digests on purpose)."""
    _check_key(key)
    return _hkdf(key, salt=None, info=_DEDUP_INFO)


class KeyedHasher:
    """HMAC-SHA256 of a plaintext under a key derived from the master key.

    ``KeyedHasher(key)`` computes the manifest digest (:func:`digest_key`);
    ``purpose="dedup"`` uses :func:`dedup_key` instead. Uses the stdlib's
    ``hmac``, which is as fast as hashlib's sha256.
    """

    def __init__(self, key: bytes, *, purpose: Literal["digest", "dedup"] = "digest") -> None:
        if purpose == "digest":
            derived = digest_key(key)
        elif purpose == "dedup":
            derived = dedup_key(key)
        else:
            raise ValueError(f"unknown KeyedHasher purpose {purpose!r}")
        self._mac = hmac.new(derived, digestmod=hashlib.sha256)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed more plaintext."""
        self._mac.update(data)

    def hexdigest(self) -> str:
        """Return the 64 hex digits of the HMAC so far."""
        return self._mac.hexdigest()

    def copy(self) -> KeyedHasher:
        """Return an independent copy (to digest a common prefix once)."""
        other = object.__new__(KeyedHasher)
        other._mac = self._mac.copy()
        return other


# ------------------------------------------------------------------ the stream


@dataclass(frozen=True)
class StreamHeader:
    """The parsed header of an encrypted stream (see docs/format.md)."""

    version: int
    chunk_size: int
    fingerprint: str
    salt: bytes
    raw: bytes


def _check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE}")


def _reblock(pieces: Iterable[Buffer], size: int) -> Iterator[tuple[Buffer, bool]]:
    """Cut pieces of any sizes into blocks of ``size`` bytes, flagging the final one.

    A full block is held back until more data arrives, because only then is
    it known not to be the last. The final block may be short, or empty when
    there was no data at all. Large pieces are sliced, not copied, so memory
    stays at one block plus the caller's piece.
    """
    pending = bytearray()
    for piece in pieces:
        view = memoryview(piece).cast("B")
        n = len(view)
        pos = 0
        if pending and n:
            need = size - len(pending)
            if n <= need:
                pending += view
                continue
            pending += view[:need]
            pos = need
            yield pending, False
            pending = bytearray()
        while n - pos > size:
            yield view[pos : pos + size], False
            pos += size
        pending += view[pos:]
    yield pending, True


def _nonce(index: int, last: bool) -> bytes:
    """11-byte big-endian chunk index, then 0x01 for the last chunk or 0x00."""
    return index.to_bytes(NONCE_SIZE - 1, "big") + (b"\x01" if last else b"\x00")


def _stream_cipher(key: bytes, header: bytes) -> AESGCM:
    """AES-256-GCM under the file's subkey: HKDF(master, salt, label || header).

    The whole header goes into the KDF info, so changing any header byte
    (chunk size, fingerprint, salt) changes the subkey and the first chunk
    fails to authenticate.
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt = header[HEADER_SIZE - SALT_SIZE : HEADER_SIZE]
    return AESGCM(_hkdf(key, salt=salt, info=_STREAM_INFO + header))


def ciphertext_size(plain_size: int, chunk_size: int = CHUNK_SIZE) -> int:
    """Return the exact size of the encrypted stream of ``plain_size`` bytes.

    There is always at least one chunk (an empty file has one empty, final
    chunk); a size that is a multiple of ``chunk_size`` ends with a full chunk.
    """
    _check_chunk_size(chunk_size)
    if plain_size < 0:
        raise ValueError("plain_size must be >= 0")
    chunks = max(1, -(-plain_size // chunk_size))
    return HEADER_SIZE + plain_size + chunks * TAG_SIZE


class StreamEncryptor:
    """Encrypts one file. Each instance has its own salt and may be used once.

    Using it twice would reuse (subkey, nonce) pairs, which breaks GCM; so a
    second :meth:`encrypt` is refused.

    ``salt`` (32 bytes) replaces the random salt, for convergent encryption:
    the same salt, key and plaintext give byte-identical streams, so git
    stores a re-logged artifact once. The caller must derive the salt from the
    whole plaintext under a secret key and make sure exactly that plaintext
    is encrypted (``gitxp.artifacts.files`` checks every chunk against its first
    pass); a salt reused for a different plaintext reuses GCM nonces.
    """

    def __init__(self, key: bytes, *, chunk_size: int = CHUNK_SIZE, salt: bytes | None = None) -> None:
        _check_key(key)
        _check_chunk_size(chunk_size)
        if salt is not None and (not isinstance(salt, (bytes, bytearray)) or len(salt) != SALT_SIZE):
            raise ValueError(f"salt must be {SALT_SIZE} bytes")
        self.chunk_size = chunk_size
        self.fingerprint = fingerprint(key)
        self._key = bytes(key)
        self._header = _HEADER.pack(
            MAGIC,
            VERSION,
            chunk_size,
            bytes.fromhex(self.fingerprint),
            bytes(salt) if salt is not None else os.urandom(SALT_SIZE),
        )
        self._used = False

    def header(self) -> bytes:
        """Return the stream header (the first bytes :meth:`encrypt` yields)."""
        return self._header

    def encrypt(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Yield the header, then each sealed chunk of the plaintext pieces ``chunks``.

        Pieces may have any sizes; they are re-blocked to ``chunk_size``. A
        full chunk is held back until more data arrives (or the input ends), so
        that the final chunk can be flagged. Memory: one chunk plus the piece
        the caller hands in (large pieces are sliced, not copied).
        """
        if self._used:
            raise RuntimeError("a StreamEncryptor encrypts one stream only; make a new one")
        self._used = True
        return self._encrypt(chunks)

    def _encrypt(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        aead = _stream_cipher(self._key, self._header)
        seal = aead.encrypt
        size = self.chunk_size
        yield self._header
        for index, (block, last) in enumerate(_reblock(chunks, size)):
            yield seal(_nonce(index, last), block, None)


def encrypt_file(key: bytes, src: BinaryIO, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the encrypted stream of the open binary file ``src``, read chunk by chunk."""
    encryptor = StreamEncryptor(key, chunk_size=chunk_size)

    def pieces() -> Iterator[bytes]:
        while block := src.read(chunk_size):
            yield block

    return encryptor.encrypt(pieces())


def parse_header(data: bytes) -> StreamHeader:
    """Parse the first :data:`HEADER_SIZE` bytes of an encrypted stream.

    Lets a caller learn which key a file needs (``.fingerprint``) before
    loading any key.

    Raises:
        DecryptionError: not a gitxp stream, an unknown version, or a bad chunk size.
    """
    head = bytes(data[:HEADER_SIZE])
    if not head.startswith(MAGIC) and not MAGIC.startswith(head):
        raise DecryptionError(
            "not an encrypted gitxp artifact (bad magic bytes)",
            "the file is damaged or was not written by gitxp; fetch it again",
        )
    if len(head) < HEADER_SIZE:
        raise DecryptionError(
            f"encrypted artifact is truncated inside its header ({len(head)} of {HEADER_SIZE} bytes)",
            "the file is incomplete; fetch it again (`gitxp pull`)",
        )
    _, version, chunk_size, fp, salt = _HEADER.unpack(head)
    if version != VERSION:
        raise DecryptionError(
            f"encrypted artifact has stream format version {version}, this gitxp reads {VERSION}",
            "upgrade gitxp (pip install -U gitxp)",
        )
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise DecryptionError(
            f"encrypted artifact declares an invalid chunk size {chunk_size}",
            "the file is damaged; fetch it again (`gitxp pull`)",
        )
    return StreamHeader(version, chunk_size, fp.hex(), salt, head)


def _split_header(data: Iterable[bytes]) -> tuple[bytes, Iterator[bytes]]:
    """Read exactly the header from pieces of any sizes; return it and the rest."""
    it = iter(data)
    head = bytearray()
    for piece in it:
        view = memoryview(piece).cast("B")
        need = HEADER_SIZE - len(head)
        head += view[:need]
        if len(head) == HEADER_SIZE:
            rest = view[need:]

            def tail() -> Iterator[bytes]:
                if len(rest):
                    yield rest  # type: ignore[misc]
                yield from it

            return bytes(head), tail()
    if not head:
        raise DecryptionError(
            "encrypted artifact is empty",
            "the file is incomplete; fetch it again (`gitxp pull`)",
        )
    parse_header(bytes(head))  # raises the precise error (magic or truncation)
    raise AssertionError("unreachable")  # pragma: no cover


def decrypt_stream(key: bytes, data: Iterable[bytes]) -> Iterator[bytes]:
    """Yield the plaintext of an encrypted stream given in pieces of any sizes.

    A plaintext chunk is yielded only after it authenticated, and memory is
    bounded by one chunk (plus the piece the caller hands in). The whole
    stream has been verified only when the generator finishes without error.

    Raises:
        KeyMissingError: the stream was encrypted with another key; the
            message names the fingerprint needed (``.fingerprint``).
        DecryptionError: bad magic or version, truncation, data after the
            final chunk, or a chunk that fails authentication.
    """
    _check_key(key)
    return _decrypt(key, data)


def _decrypt(key: bytes, data: Iterable[bytes]) -> Iterator[bytes]:
    head, rest = _split_header(data)
    header = parse_header(head)
    have = fingerprint(key)
    if header.fingerprint != have:
        err = KeyMissingError(
            f"artifact was encrypted with key {header.fingerprint}, not with the loaded key {have}",
            "import it with `gitxp key import`",
        )
        err.fingerprint = header.fingerprint  # type: ignore[attr-defined]
        raise err
    from cryptography.exceptions import InvalidTag

    open_ = _stream_cipher(key, header.raw).decrypt
    sealed = header.chunk_size + TAG_SIZE

    def open_chunk(chunk: Buffer, index: int, last: bool) -> bytes:
        try:
            plain = open_(_nonce(index, last), chunk, None)
        except InvalidTag as exc:
            raise _chunk_error(open_, chunk, index, last) from exc
        if last and not plain and index:
            raise DecryptionError(
                f"encrypted artifact ends with an empty chunk {index}, which gitxp never writes",
                "the file was altered; fetch it again (`gitxp pull`)",
            )
        return plain

    for index, (block, last) in enumerate(_reblock(rest, sealed)):
        if last and len(block) < TAG_SIZE:
            raise DecryptionError(
                f"encrypted artifact is truncated: it ends before chunk {index} is complete",
                "the file is incomplete; fetch it again (`gitxp pull`)",
            )
        yield open_chunk(block, index, last)


def _chunk_error(
    open_: Callable[[bytes, Buffer, None], bytes], chunk: Buffer, index: int, last: bool
) -> DecryptionError:
    """Tell truncation and trailing data apart from tampering, as age does.

    A chunk that fails as "not last" but opens as "last" means data follows
    the final chunk; one that fails as "last" but opens as "not last" means
    the stream was cut at a chunk boundary.
    """
    from cryptography.exceptions import InvalidTag

    try:
        open_(_nonce(index, not last), chunk, None)
    except InvalidTag:
        return DecryptionError(
            f"encrypted artifact chunk {index} failed authentication: the data was "
            + ("cut short, extended, modified or damaged" if last else "modified or damaged"),
            "fetch a fresh copy (`gitxp pull`) or restore it from another clone",
        )
    if last:
        return DecryptionError(
            f"encrypted artifact is truncated after chunk {index}",
            "the file is incomplete; fetch it again (`gitxp pull`)",
        )
    return DecryptionError(
        f"encrypted artifact has data after its final chunk {index}",
        "the file was altered; fetch a fresh copy (`gitxp pull`)",
    )
