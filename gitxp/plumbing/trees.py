"""Tree entries and the raw records of a day folder's tree, edited without parsing every entry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

TREE_MODE = 0o040000
FILE_MODE = 0o100644
EXEC_MODE = 0o100755
LINK_MODE = 0o120000
GITLINK_MODE = 0o160000

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    sha: str

    @property
    def is_tree(self) -> bool:
        return self.mode == TREE_MODE


def parse_tree(data: bytes) -> list[Entry]:
    """The entries of a raw tree object, in its order (ValueError on a malformed record)."""
    out: list[Entry] = []
    i, n = 0, len(data)
    while i < n:
        sp = data.index(b" ", i)
        nul = data.index(b"\0", sp)
        out.append(Entry(data[sp + 1 : nul].decode("utf-8", "surrogateescape"), int(data[i:sp], 8), data[nul + 1 : nul + 21].hex()))
        i = nul + 21
    return out


#: A tree this large (a day with thousands of experiments) is written uncompressed and its last read kept.
BIG_TREE = 1 << 16
#: Bytes of a subtree record besides its name: ``40000 `` + NUL + 20-byte id.
FIXED_OVERHEAD = 27


def fixed_records(data: bytes) -> int:
    """The record size when a raw tree holds only subtrees whose names share one length (≥ 3), else 0.

    Checked column by column with strided slices (C speed, no per-entry
    Python): the mode and space, the NUL after every name, and no NUL or
    ``/`` inside any name, so the records are exactly the entries git reads.
    """
    if not data.startswith(b"40000 "):
        return 0
    nul = data.find(b"\0", 6)
    if nul < 9:
        return 0
    size = nul + 21
    n, rest = divmod(len(data), size)
    if rest:
        return 0
    for j, c in enumerate(b"40000 "):
        if data[j::size] != bytes((c,)) * n:
            return 0
    if data[nul::size] != b"\0" * n:
        return 0
    for j in range(6, nul):
        column = data[j::size]
        if b"\0" in column or b"/" in column:
            return 0
    return size


def bisect_records(data: bytes, size: int, name: bytes) -> int:
    """Offset of the first fixed-size record whose name is ≥ ``name`` (equal-length subtree names sort as git sorts them)."""
    end = size - 21
    hi = len(data) // size
    if hi and data[(hi - 1) * size + 6 : (hi - 1) * size + end] < name:
        return hi * size  # the usual case: a new id is the newest of its day
    lo = 0
    while lo < hi:
        mid = (lo + hi) // 2
        if data[mid * size + 6 : mid * size + end] < name:
            lo = mid + 1
        else:
            hi = mid
    return lo * size


def splice_records(data: bytes, size: int, direct: Mapping[str, Entry | None]) -> bytes | None:
    """A day folder's raw tree ``data`` (records of ``size`` bytes) with ``direct`` set or removed in place, or None.

    A day folder holds only subtrees named by ids of one length, so its
    raw bytes are fixed-size records in git's order: the new entry is
    spliced in at its place (found by bisection; ids sort by time, so
    nearly always at the end) instead of parsing and re-sorting every
    entry, which made a commit's cost grow with how busy the day was.
    Anything else (mixed modes or name lengths) returns None.
    """
    out = data
    for name, entry in direct.items():
        nb = name.encode("utf-8", "surrogateescape")
        if len(nb) != size - FIXED_OVERHEAD or (entry is not None and entry.mode != TREE_MODE) or b"\0" in nb or b"/" in nb:
            return None
        pos = bisect_records(out, size, nb)
        end = pos + size if pos < len(out) and out[pos + 6 : pos + size - 21] == nb else pos
        record = b"" if entry is None or entry.sha == EMPTY_TREE else b"40000 " + nb + b"\0" + bytes.fromhex(entry.sha)
        view = memoryview(out)
        out = b"".join((view[:pos], record, view[end:]))  # one copy of the day, not three
    return out


def record_entries(data: bytes, size: int) -> list[tuple[str, str]]:
    """``(name, hex id)`` of every fixed-size subtree record (see :func:`fixed_records`), by slicing."""
    end = size - 21
    return [(data[i + 6 : i + end].decode("utf-8", "surrogateescape"), data[i + end + 1 : i + size].hex()) for i in range(0, len(data), size)]
