"""Refs: read them (loose, then packed), move them with compare-and-swap under git's lock protocol.

The one reader of refs and HEAD: :func:`head_info` and :func:`resolve_ref`
read files (per-worktree refs first, then the shared git dir, then
``packed-refs``), asking git only for a ref format they do not know
(reftable); :class:`Refs` (``Repo.ref``, ``read_ref``, ``head``) uses them.

:class:`Refs` is a part of :class:`~gitxp.plumbing.repo.Repo`: the branch
updates happen under a file lock plus compare-and-swap on the ref, retried
when another writer (or plain git) moved it first.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitxp.errors import NotARepositoryError, StoreError
from gitxp.plumbing import gitcli

ZERO_SHA = "0" * 40
#: A ref's ``.lock`` file older than this, while we hold gitxp's own lock, was
#: left by a killed process (git holds one for milliseconds; its own lock
#: timeout is 100 ms).
STALE_REF_LOCK_S = 5.0


def head_info(repo_root: Path, git_dir: Path) -> tuple[str | None, str | None]:
    """Return ``(commit, branch)`` for HEAD by reading files, no process.

    Every experiment records these, so they are read straight from
    ``HEAD``, the loose ref and ``packed-refs`` (a fraction of a millisecond)
    rather than by spawning git. ``commit`` is ``None`` on an unborn branch,
    ``branch`` is ``None`` when HEAD is detached.

    Raises:
        NotARepositoryError: ``git_dir`` has no HEAD.
    """
    git_dir = Path(git_dir)
    try:
        head = (git_dir / "HEAD").read_text(encoding="utf-8", errors="surrogateescape").strip()
    except OSError as exc:
        raise NotARepositoryError(str(repo_root)) from exc
    if not head.startswith("ref:"):
        return (head or None), None
    ref = head[4:].strip()
    branch = ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else None
    if (git_dir / "reftable").exists() or common_dir(git_dir).joinpath("reftable").exists():
        return _head_via_git(repo_root, git_dir), branch
    return resolve_ref(git_dir, ref), branch


def common_dir(git_dir: Path) -> Path:
    """The shared git dir of a linked worktree (``git_dir`` itself otherwise)."""
    try:
        rel = (git_dir / "commondir").read_text(encoding="utf-8").strip()
    except OSError:
        return git_dir
    return (git_dir / rel).resolve()


def resolve_ref(git_dir: Path, ref: str, depth: int = 0) -> str | None:
    """Follow a ref through loose files and ``packed-refs``; ``None`` if unborn."""
    if depth > 5:
        return None
    common = common_dir(git_dir)
    for base in (git_dir, common) if common != git_dir else (git_dir,):
        try:
            value = (base / ref).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if value.startswith("ref:"):
            return resolve_ref(git_dir, value[4:].strip(), depth + 1)
        return value or None
    try:
        packed = (common / "packed-refs").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    suffix = " " + ref
    for line in packed.splitlines():
        if line.endswith(suffix) and not line.startswith(("#", "^")):
            return line.split(" ", 1)[0]
    return None


def _head_via_git(repo_root: Path, git_dir: Path) -> str | None:
    """HEAD's commit for ref formats the file reader does not know (reftable)."""
    if not gitcli.available():
        return None
    proc = gitcli.run(["rev-parse", "-q", "--verify", "HEAD^{commit}"], repo_root,
                      env=gitcli.environment(git_dir=git_dir, work_tree=repo_root, background=True))
    return proc.stdout.strip() or None



class Refs:
    """The ref half of :class:`~gitxp.plumbing.repo.Repo`."""

    root: Path | None
    git_dir: Path
    common_dir: Path
    gitxp_dir: Path

    if TYPE_CHECKING:  # the object half, in Repo
        def identity(self) -> tuple[str, str]: ...
        def read_commit(self, sha: str) -> dict[str, Any]: ...
        def write_commit(self, tree: str, parents: list[str], message: str, *, when: float | None = None) -> str: ...

    def ref(self, branch: str) -> str | None:
        """The commit a branch points at, read without dulwich (loose, then packed)."""
        return self.read_ref(f"refs/heads/{branch}")

    def read_ref(self, name: str) -> str | None:
        """The object a ref (full name, ``refs/…``) points at: see :func:`resolve_ref`."""
        return resolve_ref(self.git_dir, name)

    def head(self) -> tuple[str | None, str | None]:
        """(commit, branch) of this work tree's HEAD; either may be None (see :func:`head_info`)."""
        try:
            return head_info(self.root or self.git_dir, self.git_dir)
        except NotARepositoryError:
            return None, None

    def cas_ref(self, branch: str, old: str | None, new: str, *, message: str = "") -> bool:
        """Move a branch from ``old`` (None: create it) to ``new`` only if it still points at ``old``.

        Git's own protocol: take ``<ref>.lock`` with O_EXCL, re-read the ref
        (loose, else packed), write, rename over. Returns False when the ref
        moved or another writer (gitxp or git) holds the lock. A reflog entry
        is appended when the repository keeps reflogs for branches.
        """
        if not self.set_ref(f"refs/heads/{branch}", old, new):
            return False
        self._reflog(branch, old or ZERO_SHA, new, message)
        return True

    def set_ref(self, name: str, old: str | None, new: str) -> bool:
        """Compare-and-swap of any ref (full name) as a loose ref; see :meth:`cas_ref`."""
        path = self.common_dir / name
        lock = path.with_name(path.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "w") as f:
                if self.read_ref(name) != old:
                    return False
                f.write(new + "\n")
            os.replace(lock, path)
        finally:
            lock.unlink(missing_ok=True)
        return True

    def delete_refs(self, name: str) -> None:
        """Remove the ref ``name`` and every ref under ``name/``, loose and packed; absent is fine.

        Follows git's protocol: loose files go, then ``packed-refs`` (``git
        gc`` packs refs) is rewritten under ``packed-refs.lock`` without
        those lines. A lock held by someone else leaves the packed lines for
        a later call.
        """
        import shutil

        loose = self.common_dir / name
        if loose.is_dir():
            shutil.rmtree(loose, ignore_errors=True)
        else:
            loose.unlink(missing_ok=True)
        packed = self.common_dir / "packed-refs"
        try:
            lines = packed.read_bytes().splitlines(keepends=True)
        except FileNotFoundError:
            return
        exact, under = name.encode(), name.encode() + b"/"
        kept: list[bytes] = []
        dropping = False
        for line in lines:
            if line.startswith(b"^"):  # the peeled value of the line before
                if not dropping:
                    kept.append(line)
                continue
            ref = line.rstrip(b"\n").partition(b" ")[2]
            dropping = not line.startswith(b"#") and (ref == exact or ref.startswith(under))
            if not dropping:
                kept.append(line)
        if len(kept) == len(lines):
            return
        lock = packed.with_name("packed-refs.lock")
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return
        try:
            with os.fdopen(fd, "wb") as f:
                if packed.read_bytes().splitlines(keepends=True) != lines:
                    return  # changed meanwhile: leave it to the next call
                f.write(b"".join(kept))
            os.replace(lock, packed)
        finally:
            lock.unlink(missing_ok=True)

    def keep_objects(self, name: str, shas: Iterable[str]) -> None:
        """Point a ref ``<name>/<sha>`` at each object so that ``git gc`` never prunes it.

        A live run's objects (its code snapshot, its artifacts) are referenced
        by nothing until it commits; ``git gc --prune=now`` would delete
        them. A ref may point at a tree or a blob (``git log --all`` shows
        nothing for it); one loose ref file per object costs no new object
        and no read-modify-write, whatever the run's size.
        """
        folder = self.common_dir / name
        for sha in shas:
            path = folder / sha
            if path.exists():
                continue
            folder.mkdir(parents=True, exist_ok=True)
            lock = path.with_name(sha + ".lock")  # git skips *.lock when it lists refs
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                continue  # another process of the run is writing the same ref
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(sha + "\n")
                os.replace(lock, path)
            finally:
                lock.unlink(missing_ok=True)

    def _reflog(self, branch: str, old: str, new: str, message: str) -> None:
        log = self.common_dir / "logs" / "refs" / "heads" / branch
        if not log.parent.is_dir():
            return  # git creates logs/ in non-bare repositories; respect its absence
        name, email = self.identity()
        ts = int(time.time())
        line = f"{old} {new} {name} <{email}> {ts} +0000\t{message.splitlines()[0] if message else 'gitxp'}\n"
        try:
            with open(log, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError:
            pass

    def stale_ref_lock(self, branch: str) -> Path | None:
        """``refs/heads/<branch>.lock`` when it is older than STALE_REF_LOCK_S (a killed writer left it)."""
        lock = self.common_dir / "refs" / "heads" / f"{branch}.lock"
        try:
            age = time.time() - lock.stat().st_mtime
        except OSError:
            return None
        return lock if age > STALE_REF_LOCK_S else None

    def commit_to_branch(
        self,
        branch: str,
        build: Callable[[str | None, str | None], tuple[str, str] | None],
        *,
        timeout: float = 600.0,
    ) -> str | None:
        """Commit on ``branch`` without checking it out; retried until it lands.

        ``build(tip_commit, tip_tree)`` returns ``(tree, message)`` for the new
        commit (or None to commit nothing); it runs again if another writer
        moved the branch meanwhile. A file lock orders gitxp writers, the CAS
        protects against everyone else (git itself included). A busy lock
        waits with backoff; it never fails a user's run.
        """
        from gitxp.errors import StaleLockError
        from gitxp.plumbing.lockfile import locked

        self.gitxp_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        attempt = 0
        with locked(self.gitxp_dir / "store.lock", timeout):
            while True:
                tip = self.ref(branch)
                tip_tree = self.read_commit(tip)["tree"] if tip else None
                built = build(tip, tip_tree)
                if built is None:
                    return None
                tree, message = built
                commit = self.write_commit(tree, [tip] if tip else [], message)
                if self.cas_ref(branch, tip, commit, message=message.splitlines()[0]):
                    return commit
                # We hold store.lock, so no gitxp writer holds the ref's lock now:
                # a git holds it for milliseconds; one that lasts was left by a kill.
                stale = self.stale_ref_lock(branch)
                if stale is not None:
                    raise StaleLockError(stale)
                attempt += 1
                if time.monotonic() > deadline:
                    raise StoreError(f"could not update branch {branch!r}: it kept moving or stayed locked", f"remove a stale {self.common_dir}/refs/heads/{branch}.lock if no git process runs")
                time.sleep(min(0.5, 0.002 * 2**min(attempt, 8)) * (0.5 + random.random()))

    def log(self, branch: str, *, limit: int | None = None) -> Iterable[tuple[str, dict[str, Any]]]:
        """First-parent history of a branch, newest first."""
        sha = self.ref(branch)
        n = 0
        while sha and (limit is None or n < limit):
            info = self.read_commit(sha)
            yield sha, info
            n += 1
            sha = info["parents"][0] if info["parents"] else None
