"""git fsck's rules for fetched objects, for when git itself does not check them.

git's ``fetch.fsckObjects`` refuses objects that would make ``git fsck
--strict`` fail or a remote with ``receive.fsckObjects`` refuse the next
push. The dulwich engine has no such check, so this module holds git's
rules and the walk that applies them:

* :func:`git_name_problem`: a tree entry name (``.git`` in every spelling
  git refuses: letter case, trailing dots and spaces, ``git~1``, NTFS
  streams, HFS+ ignorable code points, after a backslash);
* :func:`tree_object_problems` and :func:`commit_object_problems`: one raw
  tree (modes, order, duplicates) or commit (headers, idents, NUL);
* :func:`gitmodules_problems` and :func:`gitattributes_problems`: the content
  of ``.gitmodules``/``.gitattributes`` in any spelling;
* :func:`check_fetched`: every new commit and folder of a fetch.

The store's own content rules (its layout, YAML and Parquet) are
:mod:`gitxp.store.validate`'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gitxp.errors import UnsafeDataError
from gitxp.plumbing.repo import EXEC_MODE, FILE_MODE, TREE_MODE, Repo

#: How many problems an :class:`UnsafeDataError` lists before it stops looking.
MAX_PROBLEMS = 10


# Code points HFS+ ignores when comparing names (git's utf8.c next_hfs_char).
_HFS_IGNORABLE = frozenset({0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF})


def _hfs_chars(raw: bytes) -> list[int]:
    """Code points as HFS+ compares them, ignorables dropped, ending in 0 (also at bad UTF-8)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw[: exc.start].decode("utf-8")
    return [ord(c) for c in text if ord(c) not in _HFS_IGNORABLE] + [0]


def _is_hfs_dotgit(raw: bytes, needle: str = "git") -> bool:
    chars = _hfs_chars(raw)
    n = len(needle)
    if len(chars) < n + 2 or chars[0] != ord("."):
        return False
    if any(c > 127 or chr(c).lower() != want for c, want in zip(chars[1 : n + 1], needle)):
        return False
    return chars[n + 1] in (0, ord("/"))


def _is_ntfs_dot_generic(raw: bytes, needle: bytes, short: bytes) -> bool:
    """git's ``is_ntfs_dot_generic``: ``.needle``, its 8.3 names ``NEEDLE~1..4`` and ``<short>~N``."""

    def rest_ok(i: int) -> bool:
        for c in raw[i:]:
            if c == ord(":"):
                return True
            if c not in b". ":
                return False
        return True

    low = raw.lower()
    if low[:1] == b"." and low[1 : 1 + len(needle)] == needle:
        return rest_ok(1 + len(needle))
    if low[:6] == needle[:6] and raw[6:7] == b"~" and raw[7:8] in (b"1", b"2", b"3", b"4"):
        return rest_ok(8)
    i, saw_tilde = 0, False
    while i < 8:
        if i >= len(raw):
            return False
        c = raw[i]
        if saw_tilde:
            if not 0x30 <= c <= 0x39:
                return False
        elif c == ord("~"):
            i += 1
            if i >= len(raw) or not 0x31 <= raw[i] <= 0x39:
                return False
            saw_tilde = True
        elif i >= 6 or c & 0x80 or bytes([c]).lower() != short[i : i + 1]:
            return False
        i += 1
    return rest_ok(8)


def _special(raw: bytes, needle: str, short: bytes) -> bool:
    """Is this entry (or a backslash-separated part of it) ``.gitmodules``/``.gitattributes`` to some filesystem?"""
    if _is_hfs_dotgit(raw, needle):
        return True
    return any(_is_ntfs_dot_generic(seg, needle.encode(), short) for seg in [raw, *raw.split(b"\\")[1:]])


#: git's limit on a line of .gitattributes (``ATTR_MAX_LINE_LENGTH``) and on the file (``ATTR_MAX_FILE_SIZE``).
_ATTR_MAX_LINE = 2048
_ATTR_MAX_FILE = 100 * 2**20


def gitmodules_problems(data: bytes) -> list[str]:
    """git fsck's errors for the content of a ``.gitmodules`` blob (an unparsable one is only a notice)."""
    from urllib.parse import unquote_to_bytes

    from gitxp.plumbing.gitconfig import parse_config

    sections = parse_config(data)
    if sections is None:  # git reports gitmodulesParse as information only
        return []
    out: list[str] = []
    for section, items in sections:
        if len(section) != 2 or section[0].lower() != b"submodule":
            continue
        name = section[1]
        if not name or b".." in re.split(rb"[/\\]", name):
            out.append("gitmodulesName")
        for key, value in items:
            key = key.lower()
            if key == b"url" and (value.startswith(b"-") or (
                value.startswith((b"./", b"../", b"git://", b"http://", b"https://", b"ftp://", b"ftps://"))
                and b"\n" in unquote_to_bytes(value)) or b"\n" in value):
                out.append("gitmodulesUrl")
            elif key == b"path" and value.startswith(b"-"):
                out.append("gitmodulesPath")
            elif key == b"update" and value.startswith(b"!"):
                out.append("gitmodulesUpdate")
    return out


def gitattributes_problems(data: bytes) -> list[str]:
    """git fsck's errors for a ``.gitattributes`` blob: too large, or a line too long to parse."""
    if len(data) > _ATTR_MAX_FILE:
        return ["gitattributesLarge"]
    return ["gitattributesLineLength"] if any(len(line) >= _ATTR_MAX_LINE for line in data.split(b"\n")) else []


def _is_ntfs_dotgit(raw: bytes) -> bool:
    low = raw.lower()
    if low.startswith(b".git"):
        rest = raw[4:]
    elif low.startswith(b"git~1"):
        rest = raw[5:]
    else:
        return False
    for c in rest:
        if c in b"\\/:":
            return True
        if c not in b". ":
            return False
    return True


def git_name_problem(name: str | bytes) -> str | None:
    """git fsck's verdict on one tree entry name: its message id, or None when git accepts it.

    The same rules as git's ``fsck_tree`` (``is_hfs_dotgit``/``is_ntfs_dotgit``
    in git's utf8.c and path.c), so that nothing gitxp merges can make
    ``git fsck --strict`` fail or a remote with ``receive.fsckObjects`` refuse
    the next push: ``.git`` in any letter case, with trailing dots or spaces
    or an NTFS stream suffix (``.git::$INDEX_ALLOCATION``), as the 8.3 short
    name ``git~1``, after a backslash, or spelt with the code points HFS+
    ignores (``.g\\u200cit``). Names come from :meth:`Repo.read_tree`
    (``surrogateescape``) or raw tree bytes.
    """
    raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
    if not raw:
        return "emptyName"
    if b"/" in raw:
        return "fullPathname"
    if raw == b".":
        return "hasDot"
    if raw == b"..":
        return "hasDotdot"
    if _is_hfs_dotgit(raw) or _is_ntfs_dotgit(raw) or any(_is_ntfs_dotgit(seg) for seg in raw.split(b"\\")[1:]):
        return "hasDotgit"
    return None


_GIT_MODES = {b"40000": TREE_MODE, b"100644": FILE_MODE, b"100755": EXEC_MODE, b"120000": 0o120000, b"160000": 0o160000}


def tree_object_problems(data: bytes) -> list[tuple[str, str]]:
    """``(entry name, git fsck message id)`` for what ``git fsck --strict`` refuses in one raw tree.

    Names by :func:`git_name_problem`; modes must be one of git's five,
    written without zero padding; entries sorted in git's order (a folder
    sorts as ``name/``) and unique.
    """
    out: list[tuple[str, str]] = []
    keys: list[bytes] = []
    names: set[bytes] = set()
    i, n = 0, len(data)
    while i < n:
        sp, nul = data.find(b" ", i), data.find(b"\0", i)
        if sp < 0 or nul < sp or nul + 21 > n:
            return out + [("", "badTree")]
        mode, raw = data[i:sp], data[sp + 1 : nul]
        name = raw.decode("utf-8", "surrogateescape")
        if mode not in _GIT_MODES:
            out.append((name, "zeroPaddedFilemode" if mode.lstrip(b"0") in _GIT_MODES else "badFilemode"))
        problem = git_name_problem(raw)
        if problem:
            out.append((name, problem))
        if mode == b"120000" and _special(raw, "gitmodules", b"gi7eba"):
            out.append((name, "gitmodulesSymlink"))
        key = raw + b"/" if mode.lstrip(b"0") == b"40000" else raw
        if raw in names:
            out.append((name, "duplicateEntries"))
        elif keys and key <= keys[-1]:
            out.append((name, "treeNotSorted"))
        keys.append(key)
        names.add(raw)
        i = nul + 21
    return out


_HEX40 = re.compile(rb"[0-9a-fA-F]{40}")


def _ident_problem(line: bytes) -> str | None:
    """git fsck's ``fsck_ident`` on ``Name <email> date tz`` (after ``author ``/``committer ``)."""
    if line.startswith(b"<"):
        return "missingNameBeforeEmail"
    m = re.match(rb"[^<>\n]*", line)
    p = m.end() if m else 0
    if line[p:p + 1] == b">":
        return "badName"
    if line[p:p + 1] != b"<":
        return "missingEmail"
    if line[p - 1:p] != b" ":
        return "missingSpaceBeforeEmail"
    q = line.find(b">", p + 1)
    if q < 0 or re.search(rb"[<\n]", line[p + 1:q]):
        return "badEmail"
    rest = line[q + 1:]
    if not rest.startswith(b" "):
        return "missingSpaceBeforeDate"
    rest = rest[1:]
    if rest[:1] == b"0" and rest[1:2] != b" ":
        return "zeroPaddedDate"
    d = re.match(rb"[ \t]*([+-]?)([0-9]*)", rest)
    digits = d.group(2) if d else b""
    if digits and (d.group(1) == b"-" or int(digits) >= 2**63):  # type: ignore[union-attr]
        return "badDateOverflow"
    end = d.end() if d else 0
    if not digits or rest[end:end + 1] != b" ":
        return "badDate"
    if not re.fullmatch(rb"[+-][0-9]{4}", rest[end + 1:]):
        return "badTimezone"
    return None


def commit_object_problems(data: bytes) -> list[str]:
    """git fsck message ids for what ``git fsck --strict`` refuses in one raw commit (headers and NUL)."""
    out: list[str] = []
    head = data.split(b"\n\n", 1)[0]
    lines = head.split(b"\n")
    i = 0
    if not lines[0].startswith(b"tree "):
        return ["missingTree"]
    if not _HEX40.fullmatch(lines[0][5:]):
        return ["badTreeSha1"]
    i = 1
    while i < len(lines) and lines[i].startswith(b"parent "):
        if not _HEX40.fullmatch(lines[i][7:]):
            return ["badParentSha1"]
        i += 1
    authors = 0
    while i < len(lines) and lines[i].startswith(b"author "):
        authors += 1
        problem = _ident_problem(lines[i][7:])
        if problem:
            return out + [problem]
        i += 1
    if authors != 1:
        return out + ["missingAuthor" if not authors else "multipleAuthors"]
    if i >= len(lines) or not lines[i].startswith(b"committer "):
        return out + ["missingCommitter"]
    problem = _ident_problem(lines[i][10:])
    if problem:
        return out + [problem]
    if b"\0" in data:
        out.append("nulInCommit")
    return out


def check_fetched(repo: Repo, tip: str, is_new: Callable[[str], bool], *, source: str = "the remote") -> None:
    """git's ``fetch.fsckObjects`` for the dulwich engine: every fetched commit and folder.

    Walks the history of ``tip`` and every tree below it, but only objects
    for which ``is_new`` holds (those in the quarantine the fetch wrote), so
    a pull costs what it fetched. Unlike :func:`gitxp.store.validate.check_tree` this covers the
    code snapshots and older commits too: any object ``git fsck --strict``
    would refuse is refused here before it reaches the object store.

    Raises:
        UnsafeDataError: listing up to :data:`MAX_PROBLEMS` problems.
    """
    problems: list[str] = []
    seen: set[str] = set()
    commits = [tip]
    trees: list[tuple[str, str]] = []
    while commits and len(problems) < MAX_PROBLEMS:
        sha = commits.pop()
        if sha in seen or not is_new(sha):
            continue
        seen.add(sha)
        try:
            kind, raw = repo.read_raw(sha)
            if kind != "commit":
                problems.append(f"commit {sha[:12]}: a {kind}, not a commit")
                continue
            info = repo.read_commit(sha)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            problems.append(f"commit {sha[:12]}: unreadable ({exc})")
            continue
        bad = commit_object_problems(raw)
        if bad:
            problems += [f"commit {sha[:12]}: {what} (git fsck refuses it)" for what in bad]
            continue
        if not isinstance(info.get("tree"), str) or not re.fullmatch(r"[0-9a-f]{40}", info["tree"]):
            problems.append(f"commit {sha[:12]}: no tree")
            continue
        trees.append((info["tree"], ""))
        commits.extend(info["parents"])
    while trees and len(problems) < MAX_PROBLEMS:
        sha, where = trees.pop()
        if sha in seen or not is_new(sha):
            continue
        seen.add(sha)
        try:
            kind, data = repo.read_raw(sha)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            problems.append(f"{where or '/'}: unreadable folder ({exc})")
            continue
        if kind != "tree":
            problems.append(f"{where or '/'}: a {kind} where a folder belongs")
            continue
        problems += [f"{where}/{name!r}: invalid entry ({what}: git fsck refuses it)" for name, what in tree_object_problems(data)]
        for e in repo.read_tree(sha):
            path = f"{where}/{e.name}" if where else e.name
            if e.mode == TREE_MODE and git_name_problem(e.name) is None:
                trees.append((e.sha, path))
            raw = e.name.encode("utf-8", "surrogateescape")
            for needle, short, check in (("gitmodules", b"gi7eba", gitmodules_problems), ("gitattributes", b"gi7d29", gitattributes_problems)):
                if e.mode == 0o120000 or not _special(raw, needle, short):
                    continue
                if e.mode == TREE_MODE:
                    problems.append(f"{path}: {'gitmodulesBlob' if needle == 'gitmodules' else 'gitattributesBlob'} (git fsck refuses it)")
                elif e.mode != 0o160000:
                    try:
                        problems += [f"{path}: {what} (git fsck refuses it)" for what in check(repo.read_blob(e.sha))]
                    except Exception as exc:  # noqa: BLE001 - reported, not raised
                        problems.append(f"{path}: unreadable ({exc})")
    if problems:
        raise refusal(problems[:MAX_PROBLEMS], source)


def refusal(problems: list[str], source: str) -> UnsafeDataError:
    """The error that refuses a fetched store, listing ``problems`` (``problems`` and ``candidates`` hold them)."""
    more = "+" if len(problems) >= MAX_PROBLEMS else ""
    err = UnsafeDataError(
        f"refusing the store fetched from {source}: {len(problems)}{more} problem(s), first: {problems[0]}",
        "nothing was merged; ask whoever pushed it to repair the store, or pull from another remote",
    )
    err.problems = problems  # type: ignore[attr-defined]
    err.candidates = problems  # type: ignore[attr-defined]
    return err
