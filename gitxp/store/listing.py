"""The store's own listing index: ``listing/<day>/*.jsonl`` on the store branch.

A fresh clone has no derived cache (``.git/gitxp/cache``), and listing
20,000 experiments from their files means parsing 40,000 YAML documents
(15 s) to show the newest twenty. So every commit that writes an experiment
also appends one *row* to its day's ``pending.jsonl``: the experiment's id,
its tree id, the four fields a listing sorts and filters on, and its
``experiment.yaml`` and ``params.yaml`` as JSON. When the pending file holds
:data:`SEAL_ROWS` rows or :data:`SEAL_BYTES` bytes it is *sealed*: the same
blob is renamed ``rows-<12 hex of its id>.jsonl`` and a new pending file
starts. A commit therefore rewrites at most one small blob, however busy the
day, and a cold listing reads a few blobs per day instead of three objects
per experiment.

The rows are derived data and, once pulled, untrusted:

* a row is used only while the experiment's tree id is the one it names —
  an experiment amended, merged or edited by hand since is read from its
  files, and so is one without a row (a merge, an import, an old store);
* rows are checked for types and sizes before use, and their documents with
  the very checks applied to the files they stand for; a row whose fields
  disagree with its documents is ignored;
* ``gitxp pull`` refuses a store whose rows disagree with the files of the
  experiments they name (:func:`row_problems`), and a merge unites two
  pending files line by line, so the folder never conflicts.

Deleting ``listing/`` loses nothing: listings fall back to the files.
"""

from __future__ import annotations

import json
import marshal
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from gitxp.plumbing.repo import FILE_MODE, Entry, Repo
from gitxp.store import layout

LISTING_DIR = "listing"
PENDING_FILE = "pending.jsonl"
#: A pending file is sealed (renamed, never rewritten again) at this many rows ...
SEAL_ROWS = 128
#: ... or this many bytes, so that a commit's rewrite of it stays small.
SEAL_BYTES = 512 * 1024
#: The largest row written or read; a larger experiment is listed from its files.
MAX_ROW_BYTES = 1 << 20
#: The largest listing file read (a sealed file is under SEAL_BYTES + MAX_ROW_BYTES).
MAX_FILE_BYTES = 8 << 20

_SEALED_RE = re.compile(r"^rows-[0-9a-f]{12}\.jsonl$")


class Row(NamedTuple):
    """One experiment as a listing sees it; ``line`` is the whole row, its documents still JSON text."""

    id: str
    tree: str
    created: str
    branch: str | None
    status: str
    name: str
    line: bytes


def sealed_name(blob: str) -> str:
    """A sealed listing file's name: named after its own blob id, so two stores' sealed files never clash."""
    return f"rows-{blob[:12]}.jsonl"


def file_name_ok(name: str) -> bool:
    return name == PENDING_FILE or bool(_SEALED_RE.match(name))


def day_path(day: str) -> str:
    return f"{LISTING_DIR}/{day}"


# ------------------------------------------------------------------ writing


def _plain(obj: Any) -> bool:
    """True when JSON gives ``obj`` back unchanged (str keys; str, number, bool, None, list, dict)."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            if not all(isinstance(k, str) for k in o):
                return False
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
        elif not (o is None or isinstance(o, (str, int, float))):
            return False  # dates, binary, sets: the files say it better
    return True


def encode_row(exp_id: str, tree: str, meta: Any, params: Any) -> bytes | None:
    """One line of a listing file, or None when the experiment is better read from its files."""
    if not isinstance(meta, dict) or not isinstance(params, (dict, type(None))) or not _plain([meta, params]):
        return None
    src = meta.get("source")
    branch = src.get("branch") if isinstance(src, dict) else None
    head = [exp_id, tree, meta.get("created"), branch, meta.get("status"), meta.get("name")]
    if not all(v is None or isinstance(v, str) for v in head):
        return None
    line = (json.dumps(head, ensure_ascii=False, separators=(",", ":")) + "\t"
            + json.dumps([meta, params or {}], ensure_ascii=False, separators=(",", ":"))).encode("utf-8", "surrogatepass")
    return line + b"\n" if len(line) < MAX_ROW_BYTES else None


def changes_for(repo: Repo, root: str | None, exp_id: str, tree: str, meta: Any, params: Any) -> dict[str, Entry | None]:
    """The listing changes (for ``Repo.update_tree`` of the root) that record one experiment's row.

    The day's pending file gains the row; a full pending file is first
    sealed under its content's name (a rename of the same blob: free).
    """
    line = encode_row(exp_id, tree, meta, params)
    if line is None:
        return {}
    folder = day_path(layout.id_day(exp_id))
    changes: dict[str, Entry | None] = {}
    old = repo.lookup(root, f"{folder}/{PENDING_FILE}")
    data = b""
    if old is not None and not old.is_tree:
        data = repo.read_blob(old.sha)
        if data.count(b"\n") >= SEAL_ROWS or len(data) + len(line) > SEAL_BYTES:
            sealed = sealed_name(old.sha)
            changes[f"{folder}/{sealed}"] = Entry(sealed, FILE_MODE, old.sha)
            data = b""
        elif data and not data.endswith(b"\n"):
            data += b"\n"
    changes[f"{folder}/{PENDING_FILE}"] = Entry(PENDING_FILE, FILE_MODE, repo.write_blob(data + line))
    return changes


def merge_pending(ours: bytes, theirs: bytes) -> bytes:
    """Two sides' pending files as one: every line of both, each once, ours first."""
    seen: set[bytes] = set()
    out: list[bytes] = []
    for line in (ours + b"\n" + theirs).split(b"\n"):
        if line and line not in seen:
            seen.add(line)
            out.append(line)
    return b"".join(x + b"\n" for x in out)


# ------------------------------------------------------------------ reading


def _read_capped(repo: Repo, sha: str) -> bytes | None:
    """A listing file's bytes, or None past :data:`MAX_FILE_BYTES` (never read whole)."""
    parts: list[bytes] = []
    size = 0
    try:
        for chunk in repo.iter_blob(sha):
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                return None
            parts.append(chunk)
    except Exception:  # noqa: BLE001 - a missing or broken object: listed from the files instead
        return None
    return b"".join(parts)


def parse_rows(data: bytes) -> list[Row]:
    """The well-formed rows of one listing file; anything else is skipped.

    The headers of a file are decoded in one ``json.loads`` (a cold listing
    reads 20,000 of them); a file with a malformed one is decoded line by
    line so that only that row is lost.
    """
    lines = [line for line in data.split(b"\n") if line and len(line) <= MAX_ROW_BYTES]
    heads = [line.partition(b"\t") for line in lines]
    try:
        decoded = json.loads(b"[" + b",".join(h for h, tab, _ in heads if tab) + b"]") if all(tab for _, tab, _ in heads) else None
    except (ValueError, RecursionError):
        decoded = None
    if decoded is None or len(decoded) != len(lines):
        decoded = [_head(h) if tab else None for h, tab, _ in heads]
    return [row for h, line in zip(decoded, lines) if (row := _row(h, line)) is not None]


def _row(h: Any, line: bytes) -> Row | None:
    """A decoded header as a Row, or None when its types are wrong.

    Types only: ids and tree ids are compared with real tree entries, the
    other fields only sort and filter (a line is at most MAX_ROW_BYTES), and
    a row's documents are checked when shown.
    """
    if type(h) is list and len(h) == 6:
        exp_id, tree, created, branch, status, name = h
        if (type(exp_id) is str and type(tree) is str and (created is None or type(created) is str) and (branch is None or type(branch) is str)
                and (status is None or type(status) is str) and (name is None or type(name) is str)):
            return Row(exp_id, tree, created or "", branch, status or "", name or "", line)
    return None


def _head(text: bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def day_rows(repo: Repo, root: str, day: str) -> dict[tuple[str, str], Row]:
    """Every row kept for one day folder, by (id, tree id)."""
    folder = repo.lookup(root, day_path(day))
    rows: dict[tuple[str, str], Row] = {}
    if folder is None or not folder.is_tree:
        return rows
    for e in repo.read_tree(folder.sha):
        if e.mode != FILE_MODE or not file_name_ok(e.name):
            continue
        data = _read_capped(repo, e.sha)
        if data is None:
            continue
        for row in parse_rows(data):
            rows.setdefault((row.id, row.tree), row)
    return rows


def decode_doc(row: Row) -> tuple[Any, Any] | None:
    """A row's ``(meta, params)`` as raw documents (checked by the caller like parsed files), or None."""
    text = row.line.partition(b"\t")[2]
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return _agreeing(row, text, doc)


def decode_line(line: bytes, exp_id: str, tree: str) -> tuple[Any, Any] | None:
    """:func:`decode_doc` of one row known by its experiment's id and tree id, header and documents in one ``json.loads``.

    A table of 20,000 experiments in a fresh clone reads each row this way:
    one C call per row instead of a header parse and a document parse.
    """
    head, tab, text = line.partition(b"\t")
    if not tab or len(line) > MAX_ROW_BYTES:
        return None
    try:
        both = json.loads(b"[" + head + b"," + text + b"]")
    except (ValueError, RecursionError):
        return None
    row = _row(both[0], line) if type(both) is list and len(both) == 2 else None
    if row is None or row.id != exp_id or row.tree != tree:
        return None
    return _agreeing(row, text, both[1])


def _agreeing(row: Row, text: bytes, doc: Any) -> tuple[Any, Any] | None:
    """``(meta, params)`` of a decoded row document when it is well-shaped and agrees with the row's header, else None."""
    if not (isinstance(doc, list) and len(doc) == 2 and isinstance(doc[0], dict)):
        return None
    # nesting can't pass the YAML limit with fewer brackets than that (the usual row has ~15)
    if text.count(b"{") + text.count(b"[") > layout.MAX_YAML_DEPTH and layout.yaml_depth_problem(doc) is not None:
        return None
    meta, params = doc
    src = meta.get("source")
    agrees = (
        meta.get("id") == row.id and (meta.get("created") or "") == row.created and (meta.get("status") or "") == row.status
        and (meta.get("name") or "") == row.name and (src.get("branch") if isinstance(src, dict) else None) == row.branch
    )
    return (meta, params) if agrees else None


def row_problems(repo: Repo, root: str, files: Iterable[tuple[str, Entry]], read_files: Any, folder: Any) -> list[str]:
    """What is wrong with pulled listing files: a row that disagrees with the experiment it names.

    ``files`` are (path, entry) of the listing files to check; ``read_files(
    exp_tree, exp_id)`` returns the experiment's (meta, params) as parsed from
    its files, ``folder(root, exp_id)`` the id of its folder in ``root`` (or
    None). A row naming a tree that is no longer the experiment's is
    stale and harmless (never used); one naming the current tree must say
    exactly what the files say.
    """
    problems: list[str] = []
    for path, e in files:
        name = path.rsplit("/", 1)[-1]
        if not file_name_ok(name):
            problems.append(f"{path}: not a listing file name (pending.jsonl or rows-<12 hex>.jsonl)")
            continue
        data = _read_capped(repo, e.sha)
        if data is None:
            problems.append(f"{path}: over the {MAX_FILE_BYTES} byte limit of a listing file")
            continue
        if name != PENDING_FILE and name != sealed_name(e.sha):
            problems.append(f"{path}: a sealed listing file must be named after its content ({sealed_name(e.sha)})")
        for row in parse_rows(data):
            try:
                current = folder(root, row.id)
            except Exception:  # noqa: BLE001 - a malformed id is skipped by parse_rows already
                current = None
            if current != row.tree:
                continue
            doc = decode_doc(row)
            meta, params = read_files(row.tree, row.id)
            if doc is None or not _same(doc[0], meta) or not _same(doc[1] or {}, params or {}):
                problems.append(f"{path}: the listing row of {row.id} disagrees with its experiment.yaml/params.yaml")
    return problems


def _same(a: Any, b: Any) -> bool:
    """Whether two documents say the same, types included (``1`` is not ``1.0``), key order aside.

    Alike in marshal's form (version 2: no references, so sharing does not
    matter) is the same, at C speed: the usual case, as a row is written from
    the files' documents. Otherwise their canonical JSON decides.
    """
    try:
        if marshal.dumps(a, 2) == marshal.dumps(b, 2):
            return True
    except ValueError:
        pass
    return _canon(a) == _canon(b)


def _canon(doc: Any) -> str:
    try:
        return json.dumps(doc, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(doc)
