"""Tests for gitxp.artifacts.crypto: the encrypted stream, keys and keyed hashes.

Real files and real cryptography throughout; tampering is done on the bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import stat
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitxp.artifacts import crypto
from gitxp.artifacts.crypto import (
    CHUNK_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    KeyedHasher,
    StreamEncryptor,
    ciphertext_size,
    decrypt_stream,
    encrypt_file,
    parse_header,
)
from gitxp.artifacts.keys import (
    decode_key,
    encode_key,
    ensure_key,
    fingerprint,
    generate_key,
    key_dir,
    key_path,
    load_key,
    require_key,
    save_key,
)
from gitxp.errors import DecryptionError, KeyMissingError, UnsafeDataError, UsageError

REPO = Path(__file__).resolve().parents[1]
C = 64  # small chunk size so that multi-chunk streams stay tiny
SEALED = C + TAG_SIZE
KEY = bytes(range(32))


def encrypt(data: bytes, key: bytes = KEY, chunk_size: int = C) -> bytes:
    return b"".join(encrypt_file(key, io.BytesIO(data), chunk_size=chunk_size))


def decrypt(ct: bytes, key: bytes = KEY) -> bytes:
    return b"".join(decrypt_stream(key, [ct]))


def sealed_chunks(ct: bytes) -> list[bytes]:
    body = ct[HEADER_SIZE:]
    return [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


def pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """Cut data into pieces of the given sizes, cycling; includes empty pieces."""
    pos, k = 0, 0
    while pos < len(data):
        n = sizes[k % len(sizes)]
        yield data[pos : pos + n]
        pos += n
        k += 1


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv("GITXP_KEY", raising=False)
    return home


# ----------------------------------------------------------------- round trips


@pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 2 * C, 5 * C + 17])
def test_round_trip_small_chunks(size: int) -> None:
    data = os.urandom(size)
    ct = encrypt(data)
    assert len(ct) == ciphertext_size(size, C)
    assert decrypt(ct) == data
    # number of sealed chunks: at least one, no empty chunk after a full one
    assert len(sealed_chunks(ct)) == max(1, -(-size // C))


def test_empty_plaintext_is_one_authenticated_final_chunk() -> None:
    ct = encrypt(b"")
    assert len(ct) == HEADER_SIZE + TAG_SIZE
    assert list(decrypt_stream(KEY, [ct])) == [b""]
    with pytest.raises(DecryptionError, match="truncated"):
        decrypt(ct[:HEADER_SIZE])


def test_round_trip_default_chunks_three_mib() -> None:
    data = os.urandom(3 * CHUNK_SIZE + 12345)
    ct = b"".join(StreamEncryptor(KEY).encrypt(pieces(data, [700_001, 3, 2 * CHUNK_SIZE])))
    assert len(ct) == ciphertext_size(len(data))
    assert parse_header(ct).chunk_size == CHUNK_SIZE
    out = list(decrypt_stream(KEY, pieces(ct, [999_999, 1, 5_000_000])))
    assert [len(p) for p in out] == [CHUNK_SIZE] * 3 + [12345]
    assert b"".join(out) == data


@pytest.mark.parametrize("sizes", [[1], [7], [C], [SEALED], [SEALED + 1], [3, 0, 150, 1, 80]])
def test_odd_piece_sizes_both_directions(sizes: list[int]) -> None:
    data = os.urandom(7 * C + 5)
    ct = b"".join(StreamEncryptor(KEY, chunk_size=C).encrypt(pieces(data, sizes)))
    assert len(ct) == ciphertext_size(len(data), C)
    assert b"".join(decrypt_stream(KEY, pieces(ct, sizes))) == data
    # bytearray and memoryview pieces work too
    assert b"".join(decrypt_stream(KEY, [bytearray(ct[:10]), memoryview(ct)[10:]])) == data


def test_encryptor_header_first_and_single_use() -> None:
    enc = StreamEncryptor(KEY, chunk_size=C)
    out = list(enc.encrypt([b"x" * (2 * C + 1)]))
    assert out[0] == enc.header() and len(out[0]) == HEADER_SIZE
    assert [len(c) for c in out[1:]] == [SEALED, SEALED, 1 + TAG_SIZE]
    with pytest.raises(RuntimeError):
        enc.encrypt([b"again"])


def test_header_fields() -> None:
    ct = encrypt(b"hello")
    header = parse_header(ct)
    assert ct[:4] == crypto.MAGIC and ct[4] == 1
    assert header.version == 1 and header.chunk_size == C
    assert header.fingerprint == fingerprint(KEY)
    assert header.salt == ct[17:49]


def test_ciphertext_hides_plaintext_and_its_hash() -> None:
    data = b"secret model weights " * 50
    ct = encrypt(data)
    for needle in (data[:16], b"secret", hashlib.sha256(data).digest()):
        assert needle not in ct
    assert hashlib.sha256(data).hexdigest().encode() not in ct
    # random salt: encrypting twice gives unrelated ciphertexts
    other = encrypt(data)
    assert other != ct and other[HEADER_SIZE:] != ct[HEADER_SIZE:]


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        StreamEncryptor(b"short")
    with pytest.raises(ValueError):
        StreamEncryptor(KEY, chunk_size=0)
    with pytest.raises(ValueError):
        ciphertext_size(-1)
    assert ciphertext_size(0) == HEADER_SIZE + TAG_SIZE
    assert ciphertext_size(CHUNK_SIZE) == HEADER_SIZE + CHUNK_SIZE + TAG_SIZE
    assert ciphertext_size(CHUNK_SIZE + 1) == HEADER_SIZE + CHUNK_SIZE + 1 + 2 * TAG_SIZE


# -------------------------------------------------------------------- tampering


def test_every_flipped_byte_is_detected() -> None:
    data = os.urandom(3 * C + 10)
    ct = encrypt(data)
    for pos in range(len(ct)):
        bad = bytearray(ct)
        bad[pos] ^= 0x01
        expected = KeyMissingError if 9 <= pos < 17 else DecryptionError
        with pytest.raises(expected):
            decrypt(bytes(bad))


def test_plaintext_released_only_after_authentication() -> None:
    data = os.urandom(4 * C)
    ct = bytearray(encrypt(data))
    ct[HEADER_SIZE + 2 * SEALED + 5] ^= 0xFF  # damage chunk 2
    got: list[bytes] = []
    with pytest.raises(DecryptionError, match="chunk 2 failed authentication"):
        for plain in decrypt_stream(KEY, pieces(bytes(ct), [3])):
            got.append(plain)
    assert got == [data[:C], data[C : 2 * C]]


def test_truncation_detected() -> None:
    data = os.urandom(4 * C + 9)
    ct = encrypt(data)
    for boundary in range(1, 5):  # cut right after a full chunk
        with pytest.raises(DecryptionError, match="truncated"):
            decrypt(ct[: HEADER_SIZE + boundary * SEALED])
    for cut in (HEADER_SIZE + 5, HEADER_SIZE + SEALED + 40, len(ct) - 1, 20, 2):
        with pytest.raises(DecryptionError):
            decrypt(ct[:cut])
    with pytest.raises(DecryptionError, match="empty"):
        decrypt(b"")


def test_dropped_swapped_and_repeated_chunks_detected() -> None:
    ct = encrypt(os.urandom(4 * C + 9))
    header, chunks = ct[:HEADER_SIZE], sealed_chunks(ct)
    variants = {
        "drop middle": chunks[:1] + chunks[2:],
        "drop first": chunks[1:],
        "swap": [chunks[1], chunks[0], *chunks[2:]],
        "repeat": chunks[:2] + chunks[1:],
        "last moved first": [chunks[-1], *chunks[:-1]],
    }
    for name, parts in variants.items():
        with pytest.raises(DecryptionError):
            decrypt(header + b"".join(parts))
            pytest.fail(name)


def test_chunk_from_another_file_with_same_key_detected() -> None:
    a = encrypt(os.urandom(3 * C))
    b = encrypt(os.urandom(3 * C))
    chunks_a, chunks_b = sealed_chunks(a), sealed_chunks(b)
    mixed = a[:HEADER_SIZE] + chunks_a[0] + chunks_b[1] + chunks_a[2]
    with pytest.raises(DecryptionError, match="chunk 1 failed authentication"):
        decrypt(mixed)
    # b's body under a's header (same key, same chunk size) fails at once
    with pytest.raises(DecryptionError, match="chunk 0"):
        decrypt(a[:HEADER_SIZE] + b[HEADER_SIZE:])


def test_appended_data_detected() -> None:
    short = encrypt(os.urandom(2 * C + 3))
    for extra in (b"\x00", b"garbage" * 30, sealed_chunks(short)[0]):
        with pytest.raises(DecryptionError):
            decrypt(short + extra)
    # when the real final chunk is full-size, the reader can say what happened
    full = encrypt(os.urandom(2 * C))
    for extra in (b"x", b"garbage" * 30, sealed_chunks(full)[0]):
        with pytest.raises(DecryptionError, match="after its final chunk"):
            decrypt(full + extra)


def test_bad_magic_version_and_chunk_size() -> None:
    ct = bytearray(encrypt(b"payload"))
    with pytest.raises(DecryptionError, match="magic"):
        decrypt(b"PK\x03\x04" + bytes(ct[4:]))
    v2 = bytearray(ct)
    v2[4] = 2
    with pytest.raises(DecryptionError, match="version 2"):
        decrypt(bytes(v2))
    zero = bytearray(ct)
    zero[5:9] = (0).to_bytes(4, "big")
    with pytest.raises(DecryptionError, match="chunk size"):
        decrypt(bytes(zero))
    huge = bytearray(ct)
    huge[5:9] = (1 << 30).to_bytes(4, "big")
    with pytest.raises(DecryptionError, match="chunk size"):
        decrypt(bytes(huge))


def test_wrong_key_names_the_needed_fingerprint() -> None:
    ct = encrypt(b"payload")
    other = generate_key()
    with pytest.raises(KeyMissingError) as info:
        decrypt(ct, key=other)
    assert fingerprint(KEY) in str(info.value)
    assert fingerprint(other) in str(info.value)
    assert "gitxp key import" in str(info.value)
    assert info.value.fingerprint == fingerprint(KEY)  # type: ignore[attr-defined]
    assert "\n" not in str(info.value)


def test_independent_decryption_from_the_documented_format() -> None:
    """Re-implement the reader from docs/format.md with stdlib HKDF, to pin the format."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
        prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
        return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()

    data = os.urandom(2 * C + 30)
    ct = encrypt(data)
    header = ct[:49]
    assert header[:4] == b"GXP\x1a" and header[4] == 1
    assert int.from_bytes(header[5:9], "big") == C
    fp = hashlib.sha256(b"gitxp key fingerprint v1\x00" + KEY).hexdigest()[:16]
    assert header[9:17].hex() == fp == fingerprint(KEY)
    aead = AESGCM(hkdf(KEY, header[17:49], b"gitxp stream v1\x00" + header))
    chunks = sealed_chunks(ct)
    out = b""
    for i, chunk in enumerate(chunks):
        flag = b"\x01" if i == len(chunks) - 1 else b"\x00"
        out += aead.decrypt(i.to_bytes(11, "big") + flag, chunk, None)
    assert out == data

    hasher = KeyedHasher(KEY)
    hasher.update(data)
    kd = hkdf(KEY, b"", b"gitxp digest key v1\x00")
    assert hasher.hexdigest() == hmac.new(kd, data, hashlib.sha256).hexdigest()


def test_bounded_memory_streaming() -> None:
    total = 24 * CHUNK_SIZE
    block = os.urandom(CHUNK_SIZE)

    def source() -> Iterator[bytes]:
        for _ in range(total // len(block)):
            yield block

    ct_len = 0
    tracemalloc.start()
    try:
        # encrypt and immediately decrypt, never holding the whole stream
        enc = StreamEncryptor(KEY).encrypt(source())

        def counted() -> Iterator[bytes]:
            nonlocal ct_len
            for piece in enc:
                ct_len += len(piece)
                yield piece

        plain = sum(len(p) for p in decrypt_stream(KEY, counted()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert plain == total and ct_len == ciphertext_size(total)
    assert peak < 8 * CHUNK_SIZE, peak


# ------------------------------------------------------------------------- keys


def test_key_text_round_trip_and_tolerance() -> None:
    key = generate_key()
    text = encode_key(key)
    assert len(text) == 43 and "=" not in text
    assert decode_key(text) == key
    assert decode_key(f"  {text}=\n") == key
    assert encode_key(KEY) == base64.urlsafe_b64encode(KEY).decode().rstrip("=")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "0 characters"),
        ("abc", "3 characters"),
        ("A" * 44, "44 characters"),
        ("A" * 42 + "+", "outside base64url"),
        ("A" * 41 + "/é", "outside base64url"),
        ("A" * 42 + "B", "not canonical"),  # low bits of the last character set
    ],
)
def test_decode_key_rejects_bad_text(text: str, match: str) -> None:
    with pytest.raises(UsageError, match=match) as info:
        decode_key(text)
    assert "gitxp key export" in str(info.value)
    assert text not in str(info.value) or not text  # a near-key is never echoed


def test_fingerprint_format() -> None:
    fp = fingerprint(KEY)
    assert len(fp) == 16 and int(fp, 16) >= 0 and fp == fp.lower()
    assert fp == fingerprint(bytes(KEY))
    assert fp != fingerprint(generate_key())
    assert fp != hashlib.sha256(KEY).hexdigest()[:16]


def test_key_dir_follows_xdg(config_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert key_dir() == config_home / "gitxp" / "keys"
    assert key_path("abc-123") == config_home / "gitxp" / "keys" / "abc-123.key"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/path")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert key_dir() == tmp_path / "home" / ".config" / "gitxp" / "keys"
    for bad in ("../evil", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(UnsafeDataError):
            key_path(bad)


def test_ensure_key_creates_private_file(config_home: Path) -> None:
    store = "3b1f0c2e-0000-4000-8000-000000000001"
    assert load_key(store) is None
    key = ensure_key(store)
    path = key_path(store)
    assert path.read_text() == encode_key(key) + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ensure_key(store) == key == load_key(store)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files left


def test_ensure_key_concurrent_processes_agree(config_home: Path) -> None:
    code = "import sys; from gitxp.artifacts import keys; print(keys.fingerprint(keys.ensure_key(sys.argv[1])))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, "race"], stdout=subprocess.PIPE, env=env, text=True)
        for _ in range(4)
    ]
    outs = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert outs == {fingerprint(load_key("race"))}  # type: ignore[arg-type]
    assert [p.name for p in key_dir().iterdir()] == ["race.key"]  # no temp files left


def test_env_key_overrides_file(config_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file_key = ensure_key("s1")
    env_key = generate_key()
    monkeypatch.setenv("GITXP_KEY", f" {encode_key(env_key)}\n")
    assert load_key("s1") == env_key
    assert ensure_key("s1") == env_key
    assert decode_key(key_path("s1").read_text()) == file_key  # file untouched
    monkeypatch.setenv("GITXP_KEY", "not-a-key")
    with pytest.raises(UsageError, match="GITXP_KEY"):
        load_key("s1")


def test_damaged_key_file(config_home: Path) -> None:
    path = save_key("s2", KEY)
    path.write_text("garbage\n")
    with pytest.raises(KeyMissingError, match="damaged"):
        load_key("s2")


def test_save_key_backs_up_a_different_key(config_home: Path) -> None:
    old = ensure_key("s3")
    new = generate_key()
    path = save_key("s3", new)
    assert path == key_path("s3") and load_key("s3") == new
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    backup = path.with_name(f"s3.key.{fingerprint(old)}.bak")
    assert decode_key(backup.read_text()) == old
    # saving the same key again makes no further backup
    save_key("s3", new)
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, backup.name])
    # the set-aside key still opens old artifacts
    assert require_key("s3", fingerprint(old)) == old
    assert require_key("s3", fingerprint(new)) == new


def test_require_key_errors_name_fingerprints(config_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needed = fingerprint(KEY)
    with pytest.raises(KeyMissingError) as info:
        require_key("s4", needed)
    message = str(info.value)
    assert f"no artifact key {needed} for this store" in message
    assert "gitxp key export" in message and "gitxp key import" in message
    have = ensure_key("s4")
    with pytest.raises(KeyMissingError) as info:
        require_key("s4", needed)
    assert needed in str(info.value) and fingerprint(have) in str(info.value)
    monkeypatch.setenv("GITXP_KEY", encode_key(KEY))
    assert require_key("s4", needed) == KEY


# ----------------------------------------------------------------- keyed hashes


def test_keyed_hashers() -> None:
    data = os.urandom(1000)
    whole = KeyedHasher(KEY)
    whole.update(data)
    split = KeyedHasher(KEY)
    split.update(data[:3])
    copy = split.copy()
    split.update(memoryview(data)[3:])
    copy.update(data[3:])
    assert whole.hexdigest() == split.hexdigest() == copy.hexdigest()
    assert len(whole.hexdigest()) == 64
    assert whole.hexdigest() != hashlib.sha256(data).hexdigest()
    dedup = KeyedHasher(KEY, purpose="dedup")
    dedup.update(data)
    assert dedup.hexdigest() != whole.hexdigest()
    other = KeyedHasher(generate_key())
    other.update(data)
    assert other.hexdigest() != whole.hexdigest()
    assert crypto.digest_key(KEY) != crypto.dedup_key(KEY) != KEY
    assert len(crypto.digest_key(KEY)) == 32


# ------------------------------------------------------------------- the module


def test_import_does_not_load_cryptography() -> None:
    code = (
        "import sys, gitxp.artifacts.crypto, gitxp.artifacts.keys\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] == 'cryptography']\n"
        "assert not heavy, heavy\n"
        "gitxp.artifacts.keys.fingerprint(bytes(32)); gitxp.artifacts.keys.encode_key(bytes(32))\n"
        "assert 'cryptography' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

