"""Loose git objects written piece by piece: zlib-deflated (or stored) into a temporary file, renamed into place.

:class:`~gitxp.plumbing.repo.Repo` writes every object through this; an
artifact's parts (``gitxp.artifacts.write``) too, hashing on another thread
beside the writes.
"""

from __future__ import annotations

import hashlib
import os
import random
import zlib
from pathlib import Path
from typing import Any

from gitxp.errors import StoreError


class LooseObject:
    """One loose object written piece by piece: deflated into a temporary file, renamed into place.

    Every piece goes to :meth:`write` and, in the same order, to
    :meth:`checksum` (the SHA-1 that names the object), which may run on
    another thread beside the writes. A crash or :meth:`abort` leaves no
    half object, and concurrent writers of the same object both win.
    """

    def __init__(self, objects_dir: Path, kind: str, size: int, *, level: int) -> None:
        header = b"%s %d\0" % (kind.encode(), size)
        self._sha1 = hashlib.sha1(header)
        self.size = size
        self.written = 0
        self._dir = objects_dir
        objects_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = objects_dir / f"tmp_obj_{os.getpid()}_{random.getrandbits(48):x}"
        self._f = open(self._tmp, "wb")  # noqa: SIM115 - closed by commit() or abort()
        try:
            self._sink = _StoredDeflate(self._f, len(header) + size) if level == 0 else _Deflate(self._f, level)
            self._sink.write(header)
        except BaseException:
            self.abort()
            raise

    def write(self, piece: bytes | memoryview) -> None:
        """Append content."""
        self.written += len(piece)
        self._sink.write(piece)

    def checksum(self, piece: bytes | memoryview) -> None:
        """Feed the SHA-1 with the next piece written."""
        self._sha1.update(piece)

    def commit(self) -> str:
        """Finish the file and move it into place under the SHA-1 fed so far; return that sha."""
        try:
            self._sink.close()
            self._f.close()
            if self.written != self.size:
                raise StoreError(f"object size changed while writing ({self.written} != {self.size} bytes)", "do not modify files while they are being logged")
            sha = self._sha1.hexdigest()
            dest = self._dir / sha[:2] / sha[2:]
            if dest.exists():
                self._tmp.unlink()
            else:
                dest.parent.mkdir(exist_ok=True)
                os.chmod(self._tmp, 0o444)
                os.replace(self._tmp, dest)
            return sha
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the temporary file (safe to call twice)."""
        self._f.close()
        self._tmp.unlink(missing_ok=True)


class _Deflate:
    """A zlib stream at ``level`` written to ``f`` (the compressing twin of :class:`_StoredDeflate`)."""

    def __init__(self, f: Any, level: int) -> None:
        self.f = f
        self.comp = zlib.compressobj(level)

    def write(self, data: bytes | memoryview) -> None:
        self.f.write(self.comp.compress(data))

    def close(self) -> None:
        self.f.write(self.comp.flush())


class _StoredDeflate:
    """A zlib stream of *stored* (uncompressed) deflate blocks, written directly.

    For data that does not compress (encrypted artifacts) this is what zlib
    level 0 produces, without zlib copying every byte: block headers are
    built here and ``zlib.adler32`` (fast) gives the trailer. Git and
    dulwich read the result like any loose object.
    """

    BLOCK = 65535

    def __init__(self, f: Any, total: int) -> None:
        self.f = f
        self.left = total
        self.adler = 1
        f.write(b"\x78\x01")
        if total == 0:
            f.write(b"\x01\x00\x00\xff\xff")

    def write(self, data: bytes | memoryview) -> None:
        mv = memoryview(data)
        self.adler = zlib.adler32(mv, self.adler)
        out: list[bytes | memoryview] = []
        for i in range(0, len(mv), self.BLOCK):
            block = mv[i : i + self.BLOCK]
            n = len(block)
            self.left -= n
            out += (bytes((1 if self.left == 0 else 0, n & 0xFF, n >> 8, ~n & 0xFF, (~n >> 8) & 0xFF)), block)
        if _writev is None:
            for buf in out:
                self.f.write(buf)
            return
        self.f.flush()
        _write_all(self.f.fileno(), out)  # one system call per piece, not two per block

    def close(self) -> None:
        self.f.write(self.adler.to_bytes(4, "big"))


_writev = getattr(os, "writev", None)  # not on Windows


def _write_all(fd: int, buffers: list[bytes | memoryview]) -> None:
    """``os.writev`` until every buffer is written (a write may stop short)."""
    assert _writev is not None
    i = 0
    while i < len(buffers):
        n = _writev(fd, buffers[i : i + 1024])  # IOV_MAX on Linux
        while i < len(buffers) and n >= len(buffers[i]):
            n -= len(buffers[i])
            i += 1
        if n:
            buffers[i] = memoryview(buffers[i])[n:]
