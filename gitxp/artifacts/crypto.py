"""Artifact encryption: AES-256-GCM STREAM and the keyed hashes.

Artifacts are encrypted with AES-256-GCM in a chunked streaming construction
modelled on age's STREAM: every chunk is sealed with a nonce made of its index
and a last-chunk flag, under a subkey derived for this one file from the
master key and a random salt. That is what lets us detect truncation,
reordering, dropped chunks, chunks moved between files and plain tampering,
while holding only one chunk in memory. The byte layout is specified in
``docs/format.md`` ("Encrypted artifact stream"). The master key itself (its
text form, fingerprint and where it lives) is :mod:`gitxp.artifacts.keys`.

This is the only module that imports ``cryptography``, and it does so inside
functions so that ``import gitxp`` stays fast.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal

from gitxp.artifacts.keys import FINGERPRINT_BYTES, check_key, fingerprint
from gitxp.errors import DecryptionError, KeyMissingError

if TYPE_CHECKING:
    from typing import Union

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    Buffer = Union[bytes, bytearray, memoryview]

__all__ = [
    "CHUNK_SIZE", "HEADER_SIZE", "MAGIC", "MAX_CHUNK_SIZE", "TAG_SIZE", "VERSION",
    "ChunkTags", "KeyedHasher", "StreamEncryptor", "StreamHeader", "ciphertext_size", "decrypt_stream",
    "dedup_key", "digest_key", "encrypt_file", "parse_header",
]

CHUNK_SIZE = 1 << 20
#: Upper bound on a header's chunk size: a hostile file must not make us buffer more.
MAX_CHUNK_SIZE = 16 << 20
TAG_SIZE = 16
MAGIC = b"GXP\x1a"
VERSION = 1
SALT_SIZE = 32
# magic, version (u8), chunk size (u32 BE), fingerprint (8 raw bytes), salt (32 bytes)
_HEADER = struct.Struct(f">4sBI{FINGERPRINT_BYTES}s{SALT_SIZE}s")
HEADER_SIZE = _HEADER.size  # 49
NONCE_SIZE = 12

_STREAM_INFO = b"gitxp stream v1\0"
_DIGEST_INFO = b"gitxp digest key v1\0"
_DEDUP_INFO = b"gitxp dedup key v1\0"


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
    check_key(key)
    return _hkdf(key, salt=None, info=_DIGEST_INFO)


def dedup_key(key: bytes) -> bytes:
    """Return the HMAC key for deduplication look-ups (separate from digests on purpose)."""
    check_key(key)
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


class ChunkTags:
    """Tags that tell whether a chunk read twice is the same chunk: GMAC under a key only this object holds.

    The artifact writer must seal exactly the chunks its first pass hashed
    (see :mod:`gitxp.artifacts.write`). Re-hashing every chunk with SHA-256
    cost a quarter of the writer's CPU; a GMAC (GCM with the chunk as its
    associated data) under a fresh random key is a universal hash: a chunk
    that changed in between — by accident or by whoever changed it, who
    cannot see the key — gets the same tag with probability about 2^-112 (a
    1 MiB chunk), and it runs at ~30 GB/s. The tags never leave the process
    (the key dies with it), so computing the same nonce's tag twice leaks
    nothing.
    """

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._gmac = AESGCM(os.urandom(16))

    def tag(self, index: int, chunk: Buffer) -> bytes:
        """The 16-byte tag of chunk number ``index``."""
        return self._gmac.encrypt(index.to_bytes(NONCE_SIZE, "big"), b"", chunk)


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
    there was no data at all. Whole blocks inside a piece are handed on as
    views, not copied (AES-GCM runs at 9 GB/s; a copy per chunk halved it),
    so pieces must not be modified once handed in; only a block that spans
    pieces is assembled. Memory: one block plus the caller's piece.
    """
    held: Buffer | None = None  # a full block, not yet known not to be the last
    partial = bytearray()
    for piece in pieces:
        view = memoryview(piece).cast("B")
        if not view:
            continue
        if partial:
            need = size - len(partial)
            partial += view[:need]
            view = view[need:]
            if len(partial) < size:
                continue
            if held is not None:
                yield held, False
            held, partial = partial, bytearray()
        while len(view) >= size:
            if held is not None:
                yield held, False
            held, view = view[:size], view[size:]
        if view:
            if held is not None:
                yield held, False
                held = None
            partial += view
    if held is not None and partial:
        yield held, False
    yield (partial if partial or held is None else held), True


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
    is encrypted (``gitxp.artifacts.write`` checks every chunk against its first
    pass); a salt reused for a different plaintext reuses GCM nonces.
    """

    def __init__(self, key: bytes, *, chunk_size: int = CHUNK_SIZE, salt: bytes | None = None) -> None:
        check_key(key)
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
        self._cipher: AESGCM | None = None  # seal_into's
        self._sealed = 0  # chunks sealed by seal_into, -1 after the last

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
        self._claim()
        return self._encrypt(chunks)

    def _claim(self) -> None:
        if self._used:
            raise RuntimeError("a StreamEncryptor encrypts one stream only; make a new one")
        self._used = True

    def _encrypt(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        seal = _stream_cipher(self._key, self._header).encrypt
        yield self._header
        for index, (block, last) in enumerate(_reblock(chunks, self.chunk_size)):
            yield seal(_nonce(index, last), block, None)

    def seal_into(self, block: Buffer, last: bool, out: bytearray) -> Buffer:
        """Seal the next chunk into ``out``; return the sealed chunk (``len(block) + TAG_SIZE`` bytes).

        For a caller that keeps its own buffers: a large file then costs no
        allocation per chunk (fresh megabytes are page faults, which halved
        the writer's speed). Chunks come in order, each ``chunk_size`` bytes
        but the ``last``; the stream is :meth:`header` followed by them. The
        result is a view of ``out``, or new bytes with a ``cryptography``
        too old to seal in place.
        """
        if self._cipher is None:
            self._claim()
            self._cipher = _stream_cipher(self._key, self._header)
        if self._sealed < 0:
            raise RuntimeError("the final chunk was sealed already")
        n = len(block)
        if n > self.chunk_size or (n < self.chunk_size and not last):
            raise ValueError(f"chunk {self._sealed} has {n} bytes; only the last may be shorter than {self.chunk_size}")
        nonce = _nonce(self._sealed, last)
        self._sealed = -1 if last else self._sealed + 1
        if not hasattr(self._cipher, "encrypt_into"):  # cryptography before late 2025
            return self._cipher.encrypt(nonce, block, None)
        view = memoryview(out)[: n + TAG_SIZE]
        self._cipher.encrypt_into(nonce, block, None, view)
        return view


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
    check_key(key)
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
