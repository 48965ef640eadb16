"""The code snapshot: the work tree as ``git add -A`` sees it, as one tree id.

An experiment records the exact code it ran, uncommitted edits and new files
included, without the user committing anything. The snapshot is a git tree
object written into the user's own object store (so it shares every blob with
their history and costs nothing for a clean tree), and the user's index, HEAD
and work tree are never touched.

Two engines build the same tree id:

* ``git`` (used when the binary is on PATH, measured 7x faster): copy the
  index to a temporary file under ``.git/gitxp/tmp/`` and run ``git add -A``
  and ``git write-tree`` against it. That inherits git's exact semantics
  (filters, racy-git, submodules, sparse checkouts).
* ``dulwich`` (when git is absent; :mod:`gitxp.plumbing.snapshot_dulwich`): an lstat loop over the index that checks
  stat data *and* mode (dulwich's own helpers miss chmod-only changes), a walk
  for untracked files that prunes ignored directories, and
  ``dulwich.index.commit_tree``. Clean/smudge filters and autocrlf are not
  applied on this path.

Three kinds of path are left out and listed in ``Snapshot.skipped``:

* paths matching ``.gitxpignore`` (gitignore syntax, repository root), always;
* regular files over ``max_file_size`` whose content is not already HEAD's
  (untracked, modified or staged): the snapshot never adds a blob over the
  cap to the repository, while a large file committed long ago stays in;
* what the caller withholds (:class:`Withhold`): secrets that sit in the
  work tree, such as the key folder and files logged as encrypted
  artifacts, which must never be written as plain blobs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitxp.errors import NotARepositoryError, StoreError, UsageError
from gitxp.plumbing import gitcli
from gitxp.plumbing.refs import common_dir, head_info

__all__ = ["Snapshot", "Withhold", "capture"]

DEFAULT_MAX_FILE_SIZE = 10 * 2**20
#: Untracked files at least this large are named at start even when they are text.
NOTABLE_SIZE = 2**20
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_ENGINES = ("auto", "git", "dulwich")


@dataclass(frozen=True)
class Snapshot:
    """What :func:`capture` recorded; the fields go to ``experiment.yaml``.

    Attributes:
        tree: hex id of the tree object, ``None`` when there is nothing to
            snapshot (no files at all).
        commit: HEAD's commit id, ``None`` on an unborn branch.
        branch: short name of the checked-out branch, ``None`` when detached.
        dirty: the work tree (within ``code_dir``) differs from HEAD, untracked
            files included.
        skipped: repository-relative paths left out (size cap,
            ``.gitxpignore`` or withheld), sorted.
        code_dir: repository-relative folder when only that was captured.
        untracked: ``(path, size)`` of the untracked files included that a
            user may not expect in a code snapshot (binary, or at least
            :data:`NOTABLE_SIZE`), largest first.
    """

    tree: str | None
    commit: str | None
    branch: str | None
    dirty: bool
    skipped: tuple[str, ...]
    code_dir: str | None
    untracked: tuple[tuple[str, int], ...] = ()


#: Files larger than this are not searched for the key's text (a key file, a ``.env`` or a config is far smaller).
TEXT_SCAN_LIMIT = 1 << 20


@dataclass(frozen=True)
class Withhold:
    """Paths of the work tree that must never become blobs of a snapshot.

    Attributes:
        always: repository-relative files or folders left out whatever their
            state, tracked and committed included (the key folder).
        paths: files left out when their content is not HEAD's (a file
            logged as an encrypted artifact, whatever it holds now).
        blobs: plaintext size → git blob ids: a file with exactly these bytes
            is left out wherever it lies (a copy of a logged artifact),
            unless HEAD already holds it at that path.
        texts: secrets (the key's text): a changed or untracked file of at
            most :data:`TEXT_SCAN_LIMIT` bytes that holds one is left out
            (``.env`` with ``GITXP_KEY=…`` among other lines).
    """

    always: tuple[str, ...] = ()
    paths: frozenset[str] = frozenset()
    blobs: Mapping[int, frozenset[str]] = field(default_factory=dict)
    texts: tuple[bytes, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.always or self.paths or self.blobs or self.texts)

    def holds_text(self, full: Path) -> bool:
        """Whether the regular file ``full`` (small enough to read whole) contains one of :attr:`texts`."""
        if not self.texts:
            return False
        try:
            st = full.lstat()
            if not stat.S_ISREG(st.st_mode) or st.st_size > TEXT_SCAN_LIMIT:
                return False
            data = full.read_bytes()
        except OSError:
            return False
        return any(t in data for t in self.texts)

    def always_covers(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.always)

    def covers(self, path: str, blob: str | None = None, *, full: Path | None = None) -> bool:
        """Whether a file whose content is not HEAD's is withheld.

        Give ``blob`` when its id is known (dulwich engine); otherwise
        ``full`` is hashed, but only when its size is one of :attr:`blobs`.
        """
        if path in self.paths or self.always_covers(path):
            return True
        if full is not None and self.holds_text(full):
            return True
        if not self.blobs:
            return False
        if blob is None and full is not None:
            try:
                st = full.lstat()
            except OSError:
                return False
            if not stat.S_ISREG(st.st_mode) or st.st_size not in self.blobs:
                return False
            return _hash_file(full) in self.blobs[st.st_size]
        return blob is not None and any(blob in ids for ids in self.blobs.values())


# --------------------------------------------------------------------------- #
# HEAD
# --------------------------------------------------------------------------- #


# --------------------------------------------------------------------------- #
# capture
# --------------------------------------------------------------------------- #


def capture(
    repo_root: Path,
    git_dir: Path,
    *,
    code_dir: Path | None = None,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    engine: str = "auto",
    withhold: Withhold | None = None,
) -> Snapshot:
    """Write the work tree as a tree object into the repository; return its id.

    The user's index (bytes and mtime), HEAD and work tree are left as they
    were; only new blob and tree objects are added to the object store. A clean
    work tree reuses HEAD's tree and writes nothing.

    Args:
        repo_root: the work tree's top folder.
        git_dir: its git dir (for a linked worktree, the worktree's own).
        code_dir: capture only this folder (absolute, or relative to
            ``repo_root``); its paths stay repository-relative.
        max_file_size: bytes; larger files not already in HEAD are left out.
        engine: ``"auto"`` (git when on PATH, else dulwich), ``"git"`` or
            ``"dulwich"``.
        withhold: secrets in the work tree to leave out (:class:`Withhold`).

    Returns:
        the :class:`Snapshot`.

    Raises:
        NotARepositoryError: ``git_dir`` is not a git repository.
        StoreError: the repository is bare, or git failed.
        UsageError: unknown engine, or ``code_dir`` outside the work tree.
    """
    repo_root, git_dir = Path(repo_root), Path(git_dir)
    if engine not in _ENGINES:
        raise UsageError(f"unknown snapshot engine {engine!r}", "use auto, git or dulwich")
    if not (git_dir / "HEAD").is_file():
        raise NotARepositoryError(str(repo_root))
    if _is_bare(repo_root, git_dir):
        raise StoreError(
            f"{repo_root} is a bare repository: no work tree to snapshot", "use --no-code"
        )
    rel_dir = _relative_code_dir(repo_root, code_dir)
    if engine == "auto":
        engine = "git" if gitcli.available() else "dulwich"
    elif engine == "git" and not gitcli.available():
        raise StoreError("the git engine was asked for but `git` is not on PATH",
                         "install git or use engine='dulwich'")
    if engine == "git":
        return _capture_git(repo_root, git_dir, rel_dir, max_file_size, withhold or Withhold())
    from gitxp.plumbing.snapshot_dulwich import capture_dulwich

    return capture_dulwich(repo_root, git_dir, rel_dir, max_file_size, withhold or Withhold())


def _is_bare(repo_root: Path, git_dir: Path) -> bool:
    """True when the repository has no work tree (git dir is the root, or core.bare)."""
    if repo_root.resolve() == git_dir.resolve():
        return True
    if (repo_root / ".git").exists():
        return False
    try:
        config = (git_dir / "config").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.replace(" ", "").replace("\t", "").lower() == "bare=true"
               for line in config.splitlines())


def _relative_code_dir(repo_root: Path, code_dir: Path | None) -> str | None:
    """``code_dir`` as a posix path relative to the root; refuses paths outside it."""
    if code_dir is None:
        return None
    full = Path(code_dir) if Path(code_dir).is_absolute() else repo_root / code_dir
    try:
        rel = full.resolve().relative_to(repo_root.resolve())
    except ValueError:
        raise UsageError(f"--code-dir {code_dir} is outside the repository {repo_root}",
                         "pass a folder inside the work tree") from None
    if not full.is_dir():
        raise UsageError(f"--code-dir {code_dir} is not a folder", "pass an existing folder")
    text = rel.as_posix()
    return None if text in ("", ".") else text


def _under(path: str, rel_dir: str | None) -> bool:
    return rel_dir is None or path.startswith(rel_dir + "/") or path == rel_dir


# --------------------------------------------------------------------------- #
# git engine
# --------------------------------------------------------------------------- #


def _git_env(repo_root: Path, git_dir: Path, index: Path | None = None) -> dict[str, str]:
    """git's environment for this repository: pinned, in the background, ``index`` or none inherited."""
    return gitcli.environment(git_dir=git_dir, work_tree=repo_root, index=index, background=True)


def _git(args: list[str], repo_root: Path, env: dict[str, str], stdin: bytes | None = None,
         ok: Iterable[int] = (0,)) -> bytes:
    proc = gitcli.run(args, repo_root, input=stdin, text=False, env=env)
    if proc.returncode not in ok:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise StoreError(f"`git {args[0]}` failed while taking the code snapshot: "
                         f"{message[-1] if message else proc.returncode}",
                         "fix the repository or use --no-code")
    return proc.stdout


def _split_z(data: bytes) -> list[str]:
    return [os.fsdecode(p) for p in data.split(b"\0") if p]


@dataclass(frozen=True)
class _Plan:
    """What the git engine found before writing anything: shared by capture and :func:`preview`."""

    commit: str | None
    branch: str | None
    dirty: bool
    changed: list[str]
    untracked: set[str]
    ignored: set[str]
    withheld: set[str]
    oversized: set[str]


def _plan_git(repo_root: Path, git_dir: Path, rel_dir: str | None, cap: int, withhold: Withhold) -> _Plan:
    """Read-only: which files differ from HEAD and which would be left out, and why."""
    commit, branch = head_info(repo_root, git_dir)
    env = _git_env(repo_root, git_dir)
    spec = ["--", rel_dir] if rel_dir else []
    # 1. What differs from HEAD (one process): the clean check and the size-cap candidates.
    out = _git(["status", "--porcelain=v2", "-z", "--untracked-files=all", "--no-renames",
                "--ignore-submodules=dirty", *spec], repo_root, env)
    changed: list[str] = []
    untracked: set[str] = set()
    for record in out.split(b"\0"):
        if record[:2] in (b"1 ", b"u "):
            fields = record.split(b" ", 8 if record[:1] == b"1" else 10)
            if fields[1][1:2] != b"D":
                changed.append(os.fsdecode(fields[-1]))
        elif record[:2] == b"? ":
            path = os.fsdecode(record[2:]).rstrip("/")
            changed.append(path)
            untracked.add(path)
    dirty = bool(out.strip(b"\0"))
    # 2. .gitxpignore, by git's own gitignore engine.
    ignored: set[str] = set()
    xpignore = repo_root / ".gitxpignore"
    if xpignore.is_file():
        listing = _git(["ls-files", "-z", "-t", "-c", "-o", "-i",
                        f"--exclude-from={xpignore}", *spec], repo_root, env)
        for item in _split_z(listing):
            tag, path = item[:1], item[2:]
            if tag != "?" or path in untracked:
                ignored.add(path)
    # 3. Secrets: the always-withheld folders (tracked files too), then changed files.
    withheld: set[str] = set()
    for folder in withhold.always:
        listing = _git(["ls-files", "-z", "-c", "--", f":(top,literal){folder}"], repo_root, env)
        withheld.update(p for p in _split_z(listing) if _under(p, rel_dir))
    withheld.update(p for p in changed if p not in ignored and withhold.covers(p, full=repo_root / p))
    oversized = {p for p in changed if p not in ignored and p not in withheld and _too_big(repo_root / p, cap)}
    return _Plan(commit, branch, dirty, changed, untracked, ignored, withheld, oversized)


def preview(repo_root: Path, git_dir: Path, *, code_dir: Path | None = None, max_file_size: int = DEFAULT_MAX_FILE_SIZE,
            withhold: Withhold | None = None) -> dict[str, Any]:
    """What :func:`capture` would hold and leave out, writing nothing (``gitxp start --dry-run``).

    Returns ``{files, size, edited, untracked, left_out: [(path, why)], commit, branch}``.
    Needs the git binary (the dulwich engine has no read-only listing yet).
    """
    repo_root, git_dir = Path(repo_root), Path(git_dir)
    if not gitcli.available():
        raise StoreError("a snapshot preview needs `git` on PATH", "install git, or run with --no-code")
    rel_dir = _relative_code_dir(repo_root, code_dir)
    plan = _plan_git(repo_root, git_dir, rel_dir, max_file_size, withhold or Withhold())
    env = _git_env(repo_root, git_dir)
    spec = ["--", rel_dir] if rel_dir else []
    listed = _split_z(_git(["ls-files", "-z", "-c", "-o", "--exclude-standard", *spec], repo_root, env))
    out = plan.ignored | plan.oversized | plan.withheld
    files, size = 0, 0
    for path in dict.fromkeys(listed):
        full = repo_root / path
        if path in out or not os.path.lexists(full) or full.is_dir():
            continue
        files += 1
        size += full.lstat().st_size
    why = {**{p: ".gitxpignore" for p in plan.ignored}, **{p: f"over {max_file_size} bytes" for p in plan.oversized},
           **{p: "secret (key folder or encrypted artifact)" for p in plan.withheld}}
    return {
        "files": files, "size": size, "commit": plan.commit, "branch": plan.branch,
        "edited": sorted(p for p in plan.changed if p not in plan.untracked),
        "untracked": sorted(p for p in plan.untracked if p not in out),
        "left_out": sorted((p, r) for p, r in why.items() if os.path.lexists(repo_root / p)),
    }


def _capture_git(repo_root: Path, git_dir: Path, rel_dir: str | None, cap: int, withhold: Withhold) -> Snapshot:
    """The fast path: temporary index + ``git add -A`` + ``git write-tree``."""
    plan = _plan_git(repo_root, git_dir, rel_dir, cap, withhold)
    commit, branch, dirty, untracked = plan.commit, plan.branch, plan.dirty, plan.untracked
    ignored, withheld, oversized = plan.ignored, plan.withheld, plan.oversized
    env = _git_env(repo_root, git_dir)
    skipped = tuple(sorted(p for p in ignored | oversized | withheld if os.path.lexists(repo_root / p)))
    notable = _notable(repo_root, untracked - ignored - oversized - withheld)

    tree: str | None
    if not dirty and not ignored and not withheld:
        if commit is None:
            return Snapshot(None, None, branch, False, skipped, rel_dir)
        rev = f"HEAD:{rel_dir}" if rel_dir else "HEAD^{tree}"
        tree = _git(["rev-parse", "-q", "--verify", rev], repo_root, env, ok=(0, 1)).decode().strip()
        tree = _wrap_git(repo_root, env, tree, rel_dir) if tree else None
        return Snapshot(tree, commit, branch, False, skipped, rel_dir)

    tmp_dir = common_dir(git_dir) / "gitxp" / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"index-{os.getpid()}-", dir=tmp_dir)
    os.close(fd)
    tmp_index = Path(name)
    try:
        source = git_dir / "index"
        if source.is_file():
            shutil.copy2(source, tmp_index)  # keep mtime: git's racy-entry check uses it
        else:
            tmp_index.unlink()  # a missing index is an empty one
        ienv = _git_env(repo_root, git_dir, tmp_index)
        excluded = sorted(ignored | oversized | withheld)
        if excluded:
            _git(["update-index", "-z", "--force-remove", "--stdin"], repo_root, ienv,
                 stdin=b"".join(os.fsencode(p) + b"\0" for p in excluded))
        pathspec = [f":(top,literal){rel_dir}" if rel_dir else ":/"]
        pathspec += [f":(top,exclude,literal){p}" for p in excluded]
        _git(["add", "-A", "--pathspec-from-file=-", "--pathspec-file-nul"], repo_root, ienv,
             stdin=b"".join(os.fsencode(p) + b"\0" for p in pathspec))
        if rel_dir:
            out = _git(["write-tree", f"--prefix={rel_dir}/"], repo_root, ienv, ok=(0, 128))
            tree = _wrap_git(repo_root, env, out.decode().strip(), rel_dir) if out else None
        else:
            tree = _git(["write-tree"], repo_root, ienv).decode().strip()
    finally:
        for leftover in (tmp_index, tmp_index.with_name(tmp_index.name + ".lock")):
            leftover.unlink(missing_ok=True)
    if tree == EMPTY_TREE:
        tree = None
    return Snapshot(tree, commit, branch, dirty, skipped, rel_dir, notable)


def _notable(repo_root: Path, paths: Iterable[str]) -> tuple[tuple[str, int], ...]:
    """Untracked files worth naming at start: binary (a NUL in the first 8000 bytes, as git
    decides) or at least :data:`NOTABLE_SIZE`; largest first."""
    found = []
    for path in paths:
        full = repo_root / path
        try:
            st = full.lstat()
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_size < NOTABLE_SIZE:
                with open(full, "rb") as handle:
                    if b"\0" not in handle.read(8000):
                        continue
        except OSError:
            continue
        found.append((path, st.st_size))
    return tuple(sorted(found, key=lambda item: (-item[1], item[0])))


def _too_big(path: Path, cap: int) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size > cap


def _wrap_git(repo_root: Path, env: dict[str, Any], subtree: str, rel_dir: str | None) -> str | None:
    """Nest ``subtree`` under ``rel_dir``'s parents so its paths stay repository-relative."""
    if not subtree or subtree == EMPTY_TREE:
        return None
    if rel_dir is None:
        return subtree
    tree = subtree
    for name in reversed(rel_dir.split("/")):
        line = b"040000 tree " + tree.encode() + b"\t" + os.fsencode(name) + b"\0"
        tree = _git(["mktree", "-z"], repo_root, env, stdin=line).decode().strip()
    return tree


def _hash_file(path: Path) -> str:
    """Blob id of a regular file, streamed so a huge one is never held in memory."""
    size = path.stat().st_size
    digest = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
