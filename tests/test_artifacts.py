"""Tests for gitxp.artifacts (manifest, write, read): storing, committing, reading and extracting artifacts.

Real git repositories made with the git CLI, real keys and real cryptography;
tampering is done by writing altered objects and pointing trees at them, and
every repository is checked with ``git fsck --strict``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import PEAK_RSS

from gitxp.artifacts import write as artifacts
from gitxp.artifacts import crypto, keys
from gitxp.store import layout
from gitxp.artifacts.manifest import read_manifest
from gitxp.artifacts.read import extract, iter_artifact, read_bytes
from gitxp.artifacts.write import ArtifactEntry, stage, staged, store_file, tree_changes
from gitxp.errors import DecryptionError, KeyMissingError, StoreError, UnsafeDataError, UsageError
from gitxp.plumbing.repo import FILE_MODE, TREE_MODE, Entry, Repo
from gitxp.store.record import Record
from gitxp.store.store import Store

ROOT = Path(__file__).resolve().parents[1]
EXP_ID = "20260101-000000-abcdefabcdef"
C = 64  # a small crypto chunk so that multi-chunk streams stay tiny
MiB = 2**20


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var, value in {"NAME": "Test", "EMAIL": "test@example.com"}.items():
        monkeypatch.setenv(f"GIT_AUTHOR_{var}", value)
        monkeypatch.setenv(f"GIT_COMMITTER_{var}", value)
    monkeypatch.delenv(keys.KEY_ENV, raising=False)
    monkeypatch.delenv("GIT_DIR", raising=False)


def git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], input=input, check=True, capture_output=True).stdout


@pytest.fixture()
def repo_path(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    git(path, "commit", "-q", "--allow-empty", "-m", "init")
    return path


@pytest.fixture()
def repo(repo_path: Path) -> Repo:
    r = Repo(repo_path)
    yield r
    r.close()


@pytest.fixture()
def key() -> bytes:
    return keys.generate_key()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def commit(repo: Repo, entries: list[ArtifactEntry], previous: list[dict] | None = None, base: str | None = None) -> Record:
    """Apply tree_changes as the lead's finish step does, publish the tree on a ref, return a Record."""
    changes = tree_changes(repo, entries, previous)
    return record_for(repo, apply(repo, changes, base))


def apply(repo: Repo, changes: dict, base: str | None = None) -> str:
    conv = {
        k: Entry(k.rsplit("/", 1)[-1], FILE_MODE, repo.write_blob(v)) if isinstance(v, bytes) else v
        for k, v in changes.items()
    }
    return repo.update_tree(base, conv)


def record_for(repo: Repo, tree: str) -> Record:
    root = repo.update_tree(None, {layout.experiment_dir(EXP_ID): Entry(EXP_ID, TREE_MODE, tree)})
    c = repo.write_commit(root, [], "test tree")
    git(repo.root, "update-ref", "refs/heads/t", c)
    return Record(store=Store(repo), id=EXP_ID, tree=tree, meta={}, params={})


def fsck(repo: Repo) -> None:
    git(repo.root, "fsck", "--strict", "--no-dangling")


def all_objects(repo: Repo) -> bytes:
    return git(repo.root, "cat-file", "--batch-all-objects", "--batch")


def objects_size(repo: Repo) -> int:
    return sum(p.stat().st_size for p in (repo.root / ".git" / "objects").rglob("*") if p.is_file())


def loader(key: bytes):
    def load(fp: str) -> bytes:
        if fp != keys.fingerprint(key):
            raise KeyMissingError(f"no artifact key {fp}")
        return key

    return load


# ------------------------------------------------------------------ round trips


SIZES = [0, 1, C - 1, C, C + 1, 5 * C + 7]


@pytest.mark.parametrize("encrypt", [True, False])
def test_round_trip_small_chunks_and_git_sees_valid_objects(tmp_path: Path, repo: Repo, key: bytes, encrypt: bool) -> None:
    data = {f"f{n}.bin": os.urandom(n) for n in SIZES}
    entries = [
        store_file(repo, write(tmp_path / "src" / name, body), name, key=key if encrypt else None, chunk_size=C)
        for name, body in data.items()
    ]
    rec = commit(repo, entries)
    fsck(repo)
    for e in entries:
        body = data[e.path]
        assert e.size == len(body) and e.parts == 1 and e.encrypted is encrypt
        assert b"".join(iter_artifact(rec, e.path, key=key)) == body
        assert read_bytes(rec, e.path, key=key) == body
        stored = git(repo.root, "cat-file", "blob", f"refs/heads/t:{layout.experiment_dir(EXP_ID)}/{e.storage_path}")
        if encrypt:
            assert e.storage_path == f"artifacts/{e.path}.gxp"
            assert len(stored) == crypto.ciphertext_size(len(body), C)
            assert crypto.parse_header(stored).fingerprint == keys.fingerprint(key) == e.key
            assert e.digest.startswith("hmac-sha256:") and e.digest[12:] != hashlib.sha256(body).hexdigest()
        else:
            assert e.storage_path == f"artifacts/{e.path}" and stored == body and e.key is None
            assert e.digest == "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("size", [crypto.CHUNK_SIZE - 1, crypto.CHUNK_SIZE, crypto.CHUNK_SIZE + 1])
def test_round_trip_default_chunk_boundaries(tmp_path: Path, repo: Repo, key: bytes, size: int) -> None:
    body = os.urandom(size)
    e = store_file(repo, write(tmp_path / "m.pt", body), "m.pt", key=key)
    rec = commit(repo, [e])
    assert read_bytes(rec, "m.pt", key=key) == body
    assert git(repo.root, "cat-file", "-s", e.objects[0]).strip() == str(crypto.ciphertext_size(size)).encode()
    fsck(repo)


@pytest.mark.parametrize("encrypt", [True, False])
def test_large_files_are_split_into_numbered_parts(tmp_path: Path, repo: Repo, key: bytes, encrypt: bool) -> None:
    body = os.urandom(350 * 1024)
    part = 100 * 1024
    e = store_file(repo, write(tmp_path / "big.bin", body), "out/big.bin", key=key if encrypt else None, part_size=part)
    rec = commit(repo, [e])
    fsck(repo)
    folder = f"{layout.experiment_dir(EXP_ID)}/artifacts/out/big.bin" + (".gxp" if encrypt else ".parts")
    listing = git(repo.root, "ls-tree", f"refs/heads/t:{folder}").decode().splitlines()
    names = [line.split("\t")[1] for line in listing]
    assert names == ["000000", "000001", "000002", "000003"] == [f"{i:06d}" for i in range(e.parts)]
    blobs = [git(repo.root, "cat-file", "blob", f"refs/heads/t:{folder}/{n}") for n in names]
    assert all(len(b) == part for b in blobs[:-1]) and 0 < len(blobs[-1]) <= part
    stream = b"".join(blobs)
    if encrypt:
        assert len(stream) == crypto.ciphertext_size(len(body))
        assert b"".join(crypto.decrypt_stream(key, [stream])) == body
    else:
        assert stream == body
    assert read_bytes(rec, "out/big.bin", key=key) == body
    manifest = read_manifest(rec)
    assert manifest == [e.manifest_item()] and manifest[0]["parts"] == 4


def test_streaming_pieces_are_bounded(tmp_path: Path, repo: Repo, key: bytes) -> None:
    body = os.urandom(3 * MiB + 5)
    e = store_file(repo, write(tmp_path / "a", body), "a", key=key, part_size=1 * MiB)
    rec = commit(repo, [e])
    sizes = [len(p) for p in iter_artifact(rec, "a", key=key)]
    assert sum(sizes) == len(body) and max(sizes) <= crypto.CHUNK_SIZE


# ------------------------------------------------------------------ secrecy and dedup


def test_no_object_holds_the_plaintext_its_hash_or_the_key(tmp_path: Path, repo: Repo, key: bytes) -> None:
    text = b"".join(b"line %06d of a very recognisable secret file\n" % i for i in range(5000))
    rnd = os.urandom(300 * 1024)
    entries = [
        store_file(repo, write(tmp_path / "t.txt", text), "t.txt", key=key, part_size=64 * 1024),
        store_file(repo, write(tmp_path / "r.bin", rnd), "r.bin", key=key),
    ]
    commit(repo, entries)
    blob = all_objects(repo)
    raw_files = b"".join(p.read_bytes() for p in (repo.root / ".git").rglob("*") if p.is_file())
    for haystack in (blob, raw_files):
        for body in (text, rnd):
            assert body[1000:1064] not in haystack
            assert hashlib.sha256(body).hexdigest().encode() not in haystack
            assert hashlib.sha256(body).digest() not in haystack
        assert b"recognisable secret" not in haystack
        assert key not in haystack
        assert keys.encode_key(key).encode() not in haystack
        assert base64.b64encode(key) not in haystack and key.hex().encode() not in haystack


def test_same_file_and_key_dedups_to_the_same_objects(tmp_path: Path, repo: Repo, key: bytes) -> None:
    src = write(tmp_path / "w.bin", os.urandom(5 * 10**6))
    before = objects_size(repo)
    first = store_file(repo, src, "w.bin", key=key, part_size=2 * MiB)
    grown = objects_size(repo) - before
    second = store_file(repo, src, "again/w.bin", key=key, part_size=2 * MiB)
    regrown = objects_size(repo) - before - grown
    assert first.objects == second.objects and first.digest == second.digest and first.parts == 3
    assert grown > 5 * 10**6 and regrown < 0.1 * grown
    other = store_file(repo, src, "w.bin", key=keys.generate_key(), part_size=2 * MiB)
    assert set(other.objects).isdisjoint(first.objects) and other.digest != first.digest
    assert not list((repo.root / ".git" / "objects").glob("tmp_obj_*"))


def test_salt_keyword_gives_deterministic_streams(key: bytes) -> None:
    salt = os.urandom(32)
    body = os.urandom(1000)

    def enc(s: bytes | None) -> bytes:
        return b"".join(crypto.StreamEncryptor(key, chunk_size=C, salt=s).encrypt([body]))

    assert enc(salt) == enc(salt) != enc(None) != enc(None)
    assert crypto.parse_header(enc(salt)).salt == salt
    assert b"".join(crypto.decrypt_stream(key, [enc(salt)])) == body
    with pytest.raises(ValueError):
        crypto.StreamEncryptor(key, salt=b"short")


@pytest.mark.parametrize("encrypt", [True, False])
def test_stored_parts_are_exactly_the_reference_stream(tmp_path: Path, repo: Repo, key: bytes, encrypt: bool) -> None:
    """The writer reads, seals and hashes in reused buffers, several chunks apart on three threads:
    its parts, joined, must be byte for byte the plain stream encryptor's output (or the file)."""
    body = os.urandom(97 * C + 13)  # many chunks: the threaded path, buffers reused many times over
    e = store_file(repo, write(tmp_path / "big.bin", body), "big.bin", key=key if encrypt else None, chunk_size=C, part_size=10 * C + 3)
    stored = b"".join(git(repo.root, "cat-file", "blob", sha) for sha in e.objects)
    assert e.parts == len(e.objects) > 5
    if encrypt:
        salt = crypto.parse_header(stored).salt
        assert stored == b"".join(crypto.StreamEncryptor(key, chunk_size=C, salt=salt).encrypt([body]))
        digest = crypto.KeyedHasher(key, purpose="digest")
        digest.update(body)
        assert e.digest == "hmac-sha256:" + digest.hexdigest()
    else:
        assert stored == body and e.digest == "sha256:" + hashlib.sha256(body).hexdigest()
    fsck(repo)


def test_convergent_salt_is_the_documented_mac_of_the_digest(tmp_path: Path, repo: Repo, key: bytes) -> None:
    """docs/format.md, *Deduplication*: salt = HMAC(Kdd, "gitxp artifact salt v2" || 0 || u32 chunk || u64 size || digest)."""
    import hmac
    import struct

    def hkdf(info: bytes) -> bytes:
        prk = hmac.new(bytes(32), key, hashlib.sha256).digest()
        return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()

    for size in (0, 1, 9 * C + 1):  # the inline path, and the threaded one
        body = os.urandom(size)
        e = store_file(repo, write(tmp_path / f"s{size}", body), f"s{size}", key=key, chunk_size=C)
        digest = hmac.new(hkdf(b"gitxp digest key v1\x00"), body, hashlib.sha256).digest()
        assert e.digest == "hmac-sha256:" + digest.hex()
        label = b"gitxp artifact salt v2\x00" + struct.pack(">IQ", C, size)
        salt = hmac.new(hkdf(b"gitxp dedup key v1\x00"), label + digest, hashlib.sha256).digest()
        assert crypto.parse_header(git(repo.root, "cat-file", "blob", e.objects[0])).salt == salt


def test_seal_into_seals_the_same_stream_in_place(key: bytes) -> None:
    body, salt = os.urandom(3 * C + 5), os.urandom(32)
    enc = crypto.StreamEncryptor(key, chunk_size=C, salt=salt)
    out = bytearray(C + crypto.TAG_SIZE)
    sealed = [bytes(enc.seal_into(body[i : i + C], i + C >= len(body), out)) for i in range(0, len(body), C)]
    assert enc.header() + b"".join(sealed) == b"".join(crypto.StreamEncryptor(key, chunk_size=C, salt=salt).encrypt([body]))
    with pytest.raises(RuntimeError, match="final chunk"):
        enc.seal_into(b"", True, out)  # after the last chunk: a nonce would repeat
    with pytest.raises(RuntimeError, match="one stream only"):
        enc.encrypt([b"x"])
    fresh = crypto.StreamEncryptor(key, chunk_size=C)
    with pytest.raises(ValueError, match="only the last may be shorter"):
        fresh.seal_into(b"short", False, out)


def test_file_changed_between_the_passes_is_refused(tmp_path: Path, repo: Repo, key: bytes) -> None:
    src = write(tmp_path / "live.bin", os.urandom(20 * C))
    touched = []

    def meddle(done: int) -> None:
        if not touched:  # during pass 1: change a chunk pass 1 has already hashed
            with open(src, "r+b") as f:
                f.write(b"\xff" * 8)
            touched.append(done)

    with pytest.raises(StoreError, match="changed while"):
        store_file(repo, src, "live.bin", key=key, chunk_size=C, progress=meddle)
    assert not list((repo.root / ".git" / "objects").glob("tmp_obj_*"))
    with open(src, "ab") as f:  # a size change between fstat and reading
        f.write(b"x")
    grow = []

    def append(done: int) -> None:
        if not grow:
            with open(src, "ab") as f:
                f.write(b"more")
            grow.append(done)

    with pytest.raises(StoreError, match="changed while"):
        store_file(repo, src, "live.bin", key=None, progress=append)


def test_unencrypted_parts_are_compressed_only_when_they_shrink(tmp_path: Path, repo: Repo) -> None:
    """Text is deflated; random bytes (weights, archives) are stored as they are, and git reads both."""
    text = b"epoch,loss\n" + b"".join(b"%d,%.6f\n" % (i, 1 / (i + 1)) for i in range(300_000))
    noise = os.urandom(6 * 2**20)
    for name, data in (("log.csv", text), ("weights.bin", noise)):
        entry = store_file(repo, write(tmp_path / name, data), name, key=None, part_size=4 * 2**20)
        assert entry.digest == "sha256:" + hashlib.sha256(data).hexdigest()
        got = b""
        for sha in entry.objects:
            loose = repo.root / ".git" / "objects" / sha[:2] / sha[2:]
            part = subprocess.run(["git", "cat-file", "blob", sha], cwd=repo.root, capture_output=True, check=True).stdout
            if name == "log.csv":
                assert loose.stat().st_size < 0.5 * len(part)
            else:
                assert loose.stat().st_size > len(part)  # stored: the bytes plus block headers
            got += part
        assert got == data
    subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=repo.root, check=True, capture_output=True)


def test_file_changed_during_the_second_pass_is_refused_before_sealing(tmp_path: Path, repo: Repo, key: bytes) -> None:
    """Pass 2 checks each chunk against pass 1's tag before sealing it: a chunk changed after pass 1 is never encrypted."""
    body = os.urandom(400 * C)  # larger than the reader's buffer
    src = write(tmp_path / "live.bin", body)
    touched = []

    def meddle(done: int) -> None:
        if done > len(body) // 2 + C and not touched:  # pass 2 has begun: change its last chunk
            with open(src, "r+b") as f:
                f.seek(len(body) - 3)
                f.write(b"\x00\x01\x02")
            touched.append(done)

    with pytest.raises(StoreError, match="changed while"):
        store_file(repo, src, "live.bin", key=key, chunk_size=C, progress=meddle)
    assert touched
    # unchanged again, the same file stores with the digest of its plaintext
    write(src, body)
    entry = store_file(repo, src, "live.bin", key=key, chunk_size=C)
    digest = crypto.KeyedHasher(key, purpose="digest")
    digest.update(body)
    assert entry.digest == f"hmac-sha256:{digest.hexdigest()}"


# ------------------------------------------------------------------ tampering


def _two_artifacts(tmp_path: Path, repo: Repo, key: bytes) -> tuple[dict[str, bytes], list[ArtifactEntry], Record]:
    data = {"a.bin": os.urandom(3000), "b.bin": os.urandom(3000), "s1": os.urandom(100), "s2": os.urandom(100)}
    entries = [store_file(repo, write(tmp_path / n, b), n, key=key, chunk_size=C, part_size=1024) for n, b in data.items()]
    return data, entries, commit(repo, entries)


def _assert_refused(rec: Record, path: str, key: bytes, dest: Path, error: type[Exception] = DecryptionError) -> None:
    with pytest.raises(error):
        b"".join(iter_artifact(rec, path, key=key))
    dest.mkdir(exist_ok=True)
    with pytest.raises(error):
        extract(rec, path, dest / "out.bin", key_loader=loader(key))
    assert list(dest.iterdir()) == []


def test_flipped_byte_in_a_part(tmp_path: Path, repo: Repo, key: bytes) -> None:
    _, entries, rec = _two_artifacts(tmp_path, repo, key)
    a = entries[0]
    part = bytearray(repo.read_blob(a.objects[1]))
    part[500] ^= 0x01
    bad = repo.write_blob(bytes(part))
    tree = apply(repo, {f"{a.storage_path}/000001": Entry("000001", FILE_MODE, bad)}, rec.tree)
    _assert_refused(record_for(repo, tree), "a.bin", key, tmp_path / "dest")
    fsck(repo)


def test_dropped_last_part_and_fixed_up_manifest(tmp_path: Path, repo: Repo, key: bytes) -> None:
    _, entries, rec = _two_artifacts(tmp_path, repo, key)
    a = entries[0]
    last = f"{a.parts - 1:06d}"
    tree = apply(repo, {f"{a.storage_path}/{last}": None}, rec.tree)
    _assert_refused(record_for(repo, tree), "a.bin", key, tmp_path / "d1")
    # the attacker also edits the manifest: the stream itself fails to authenticate
    manifest = read_manifest(rec)
    manifest[0]["parts"] = a.parts - 1
    tree2 = apply(repo, {layout.ARTIFACTS_FILE: layout.dump_yaml(manifest).encode()}, tree)
    rec2 = record_for(repo, tree2)
    with pytest.raises(DecryptionError, match="chunk"):
        read_bytes(rec2, "a.bin", key=key)


def test_swapped_and_reordered_parts(tmp_path: Path, repo: Repo, key: bytes) -> None:
    _, entries, rec = _two_artifacts(tmp_path, repo, key)
    a, b, s1, s2 = entries
    swap = {f"{a.storage_path}/000001": Entry("000001", FILE_MODE, b.objects[1])}
    _assert_refused(record_for(repo, apply(repo, swap, rec.tree)), "a.bin", key, tmp_path / "d1")
    order = {
        f"{a.storage_path}/000000": Entry("000000", FILE_MODE, a.objects[1]),
        f"{a.storage_path}/000001": Entry("000001", FILE_MODE, a.objects[0]),
    }
    _assert_refused(record_for(repo, apply(repo, order, rec.tree)), "a.bin", key, tmp_path / "d2")
    # whole valid streams swapped between two artifacts: only the digest tells
    whole = {
        s1.storage_path: Entry("s1.gxp", FILE_MODE, s2.objects[0]),
        s2.storage_path: Entry("s2.gxp", FILE_MODE, s1.objects[0]),
    }
    rec3 = record_for(repo, apply(repo, whole, rec.tree))
    with pytest.raises(DecryptionError, match="digest"):
        read_bytes(rec3, "s1", key=key)
    _assert_refused(rec3, "s2", key, tmp_path / "d3")


def test_wrong_or_missing_key_names_the_fingerprint(tmp_path: Path, repo: Repo, key: bytes) -> None:
    data, entries, rec = _two_artifacts(tmp_path, repo, key)
    fp = keys.fingerprint(key)
    other = keys.generate_key()
    for wrong in (other, None):
        with pytest.raises(KeyMissingError, match=fp) as info:
            iter_artifact(rec, "a.bin", key=wrong)
        assert info.value.fingerprint == fp  # type: ignore[attr-defined]
    dest = tmp_path / "dest"
    with pytest.raises(KeyMissingError, match=fp):
        extract(rec, None, dest, key_loader=loader(other))
    assert not dest.exists() or list(dest.iterdir()) == []
    # the manifest's key field is only a hint: the header decides
    manifest = read_manifest(rec)
    manifest[0]["key"] = keys.fingerprint(other)
    rec2 = record_for(repo, apply(repo, {layout.ARTIFACTS_FILE: layout.dump_yaml(manifest).encode()}, rec.tree))
    with pytest.raises(KeyMissingError, match=fp):
        read_bytes(rec2, "a.bin", key=other)


def test_tampered_plain_artifact_fails_its_digest(tmp_path: Path, repo: Repo) -> None:
    e = store_file(repo, write(tmp_path / "p.csv", b"a,b\n1,2\n"), "p.csv", key=None)
    rec = commit(repo, [e])
    bad = repo.write_blob(b"a,b\n1,3\n")
    rec2 = record_for(repo, apply(repo, {e.storage_path: Entry("p.csv", FILE_MODE, bad)}, rec.tree))
    _assert_refused(rec2, "p.csv", b"", tmp_path / "dest")


# ------------------------------------------------------------------ manifest and tree changes


def test_tree_changes_merge_replace_and_remove_old_layouts(tmp_path: Path, repo: Repo, key: bytes) -> None:
    a1 = store_file(repo, write(tmp_path / "a", b"one"), "a", key=None)
    b1 = store_file(repo, write(tmp_path / "b", b"bee"), "sub/b", key=key)
    rec = commit(repo, [a1, b1])
    previous = read_manifest(rec)
    assert [m["path"] for m in previous] == ["a", "sub/b"]
    assert list(previous[0]) == ["path", "size", "digest", "encrypted", "parts"]
    assert list(previous[1]) == ["path", "size", "digest", "encrypted", "parts", "key"]
    a2 = store_file(repo, write(tmp_path / "a2", b"two"), "a", key=key)  # plain -> encrypted
    c = store_file(repo, write(tmp_path / "c", b"sea"), "0c", key=key)
    changes = tree_changes(repo, [a2, c], previous)
    assert changes["artifacts/a"] is None and isinstance(changes["artifacts/a.gxp"], Entry)
    rec2 = record_for(repo, apply(repo, changes, rec.tree))
    fsck(repo)
    manifest = read_manifest(rec2)
    assert [m["path"] for m in manifest] == ["0c", "a", "sub/b"]
    assert rec2.entry("artifacts/a") is None
    assert read_bytes(rec2, "a", key=key) == b"two" and read_bytes(rec2, "sub/b", key=key) == b"bee"
    raw = layout.load_yaml(rec2.read_file("artifacts.yaml"))
    assert [m["path"] for m in raw] == ["0c", "a", "sub/b"] and all("objects" not in m for m in raw)


def test_clashing_names_are_refused(tmp_path: Path, repo: Repo, key: bytes) -> None:
    f = write(tmp_path / "x", b"x")
    a = store_file(repo, f, "a", key=None)
    ab = store_file(repo, f, "a/b", key=None)
    with pytest.raises(UsageError, match="clash"):
        tree_changes(repo, [a, ab], None)
    enc = store_file(repo, f, "m", key=key)
    plain = store_file(repo, f, "m.gxp", key=None)
    with pytest.raises(UsageError, match="clash"):
        tree_changes(repo, [enc, plain], None)


def test_missing_staged_object_is_reported(repo: Repo) -> None:
    ghost = ArtifactEntry("g", 1, "sha256:" + "0" * 64, False, 1, None, ("1" * 40,))
    with pytest.raises(StoreError, match="lost its stored object"):
        tree_changes(repo, [ghost], None)


@pytest.mark.parametrize(
    "bad",
    [
        {"path": "../evil"}, {"path": "/etc/x"}, {"path": "a/../../b"}, {"path": ".git/config"},
        {"path": "a//b"}, {"path": 3}, {"size": -1}, {"size": True}, {"parts": 0}, {"encrypted": "yes"},
        {"digest": "sha256:" + "0" * 64}, {"key": "../../x"},
    ],
)
def test_hostile_manifest_is_refused_and_nothing_is_written(tmp_path: Path, repo: Repo, key: bytes, bad: dict) -> None:
    e = store_file(repo, write(tmp_path / "ok", b"fine"), "ok", key=key)
    item = {**e.manifest_item(), **bad}
    tree = apply(repo, {
        "artifacts.yaml": layout.dump_yaml([item]).encode(),
        e.storage_path: Entry("ok.gxp", FILE_MODE, e.objects[0]),
        "artifacts/evil.gxp": Entry("evil.gxp", FILE_MODE, e.objects[0]),
    })
    rec = record_for(repo, tree)
    dest = tmp_path / "work" / "dest"
    dest.mkdir(parents=True)
    with pytest.raises(UnsafeDataError):
        read_manifest(rec)
    with pytest.raises(UnsafeDataError):
        extract(rec, None, dest, key_loader=loader(key))
    assert [p for p in (tmp_path / "work").rglob("*")] == [dest]
    assert not (tmp_path / "evil").exists()


def test_manifest_that_is_not_a_list(tmp_path: Path, repo: Repo) -> None:
    rec = record_for(repo, apply(repo, {"artifacts.yaml": b"path: x\n"}))
    with pytest.raises(UnsafeDataError, match="not a list"):
        read_manifest(rec)
    assert read_manifest(record_for(repo, apply(repo, {"other": b""}))) == []


# ------------------------------------------------------------------ extract


@pytest.fixture()
def stocked(tmp_path: Path, repo: Repo, key: bytes) -> tuple[Record, dict[str, bytes]]:
    data = {"model.pt": os.urandom(5000), "outputs/a.csv": b"a\n1\n", "outputs/deep/b.txt": b"b", "plain.txt": b"p"}
    entries = [
        store_file(repo, write(tmp_path / "src" / n, b), n, key=None if n == "plain.txt" else key, part_size=1000)
        for n, b in data.items()
    ]
    return commit(repo, entries), data


def test_extract_single_file_destinations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: bytes, stocked) -> None:
    rec, data = stocked
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert extract(rec, "model.pt", None, key_loader=loader(key)) == [cwd / "model.pt"]
    assert (cwd / "model.pt").read_bytes() == data["model.pt"]
    assert extract(rec, "outputs/deep/b.txt", None, key_loader=loader(key)) == [cwd / "b.txt"]
    box = cwd / "box"
    box.mkdir()
    assert extract(rec, "outputs/a.csv", box, key_loader=loader(key)) == [box / "a.csv"]
    assert extract(rec, "plain.txt", cwd / "new" / "renamed.txt", key_loader=loader(key)) == [cwd / "new" / "renamed.txt"]
    assert (cwd / "new" / "renamed.txt").read_bytes() == b"p"
    assert not [p for p in cwd.rglob(".gitxp-get-*")]


def test_extract_folder_and_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: bytes, stocked) -> None:
    rec, data = stocked
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o"
    got = extract(rec, "outputs/", out, key_loader=loader(key))
    assert got == [out / "outputs" / "a.csv", out / "outputs" / "deep" / "b.txt"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["outputs/a.csv", "outputs/deep/b.txt"]
    every = extract(rec, None, None, key_loader=loader(key))
    root = tmp_path / EXP_ID
    assert [p.relative_to(root).as_posix() for p in every] == sorted(data)
    for name, body in data.items():
        assert (root / name).read_bytes() == body


def test_extract_unknown_path_lists_close_names(tmp_path: Path, key: bytes, stocked) -> None:
    rec, _ = stocked
    with pytest.raises(UsageError, match="did you mean: model.pt"):
        extract(rec, "modle.pt", tmp_path / "x", key_loader=loader(key))
    with pytest.raises(UsageError, match="no artifact"):
        iter_artifact(rec, "nothing-like-it-at-all", key=key)
    with pytest.raises(UsageError):
        extract(rec, "../model.pt", tmp_path / "x", key_loader=loader(key))
    assert not (tmp_path / "x").exists()


def test_extract_refuses_symlinked_folders_below_dest(tmp_path: Path, key: bytes, stocked) -> None:
    rec, _ = stocked
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "outputs").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafeDataError, match="symbolic link"):
        extract(rec, None, dest, key_loader=loader(key))
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in dest.iterdir()) == ["outputs"]


# ------------------------------------------------------------------ staging and names


def test_stage_and_staged_last_entry_per_path_wins(tmp_path: Path, repo: Repo, key: bytes) -> None:
    run = tmp_path / "run"
    run.mkdir()
    one = store_file(repo, write(tmp_path / "1", b"one"), "m.pt", key=key)
    two = store_file(repo, write(tmp_path / "2", b"two"), "m.pt", key=key)
    other = store_file(repo, write(tmp_path / "3", b"x" * 300), "z/other", key=None, part_size=100)
    stage(run, one)
    code = f"""
        import json, sys
        from gitxp.artifacts.write import ArtifactEntry, stage
        stage(sys.argv[1], ArtifactEntry(**{{**json.loads(sys.argv[2]), "objects": tuple(json.loads(sys.argv[3]))}}))
    """
    fields = {"path": other.path, "size": other.size, "digest": other.digest, "encrypted": False, "parts": other.parts, "key": None}
    subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(run), json.dumps(fields), json.dumps(list(other.objects))], check=True, cwd=ROOT)
    stage(run, two)
    files = sorted(p.name for p in run.iterdir())
    assert len(files) == 2 and all(f.startswith("artifacts-") and f.endswith(".yaml") for f in files)
    assert staged(run) == [two, other]
    assert isinstance(layout.load_yaml((run / f"artifacts-{os.getpid()}.yaml").read_bytes()), list)
    with open(run / f"artifacts-{os.getpid()}.yaml", "ab") as f:  # a crash tore the last line
        f.write(b'- {"path": "torn", "si')
    assert staged(run) == [two, other]
    stage(run, one)
    assert staged(run) == [one, other]


@pytest.mark.parametrize("name", ["/abs/model.pt", "../up.pt", "a/../../b", "", ".git/hooks/x"])
def test_bad_names_are_usage_errors(tmp_path: Path, repo: Repo, name: str) -> None:
    with pytest.raises(UsageError):
        store_file(repo, write(tmp_path / "f", b"x"), name, key=None)


def test_missing_source_and_folder_are_usage_errors(tmp_path: Path, repo: Repo) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        store_file(repo, tmp_path / "nope", "nope", key=None)
    with pytest.raises(UsageError, match="folder"):
        store_file(repo, tmp_path, "dir", key=None)
    assert store_file(repo, write(tmp_path / "n", b"n"), "./x//y", key=None).path == "x/y"


def test_terminal_progress_is_throttled_and_quiet_off_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert artifacts.terminal_progress("x", 10, io.StringIO()) is None
    out = Tty()
    show = artifacts.terminal_progress("model.pt", 1000, out)
    assert show is not None
    for i in range(1001):
        show(i)
    text = out.getvalue()
    assert text.startswith("\rmodel.pt:   0%") and text.endswith("100%\n") and text.count("\r") <= 3


# ------------------------------------------------------------------ memory and speed


def _random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
        f.write(os.urandom(size % MiB))
    return path


@pytest.mark.slow
def test_memory_stays_bounded_for_a_300_mb_artifact(tmp_path: Path, repo: Repo, key: bytes) -> None:
    src = _random_file(tmp_path / "huge.bin", 300 * 10**6)
    code = """
        import sys
        from gitxp.artifacts import write as artifacts
        from gitxp.artifacts import keys
        from gitxp.plumbing.repo import Repo
        repo = Repo(sys.argv[1])
        e = artifacts.store_file(repo, sys.argv[2], "huge.bin", key=keys.decode_key(sys.argv[3]))
        print(e.parts, peak_rss_kib())
    """
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS + textwrap.dedent(code), str(repo.root), str(src), keys.encode_key(key)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    ).stdout.split()
    parts, rss_kib = int(out[0]), int(out[1])
    print(f"\nstore_file 300 MB: peak RSS {rss_kib / 1024:.1f} MiB, {parts} parts")
    assert parts == 6 and rss_kib < 300 * 1024  # the promise: bounded memory, 300 MB (quiet machine: ~40 MiB)

