"""Moving the store branch between repositories: fetch, push and the merge-base walk.

Two engines behind the same functions. The ``git`` CLI is used when it is on
PATH (it is 14-16x faster than dulwich on big stores and uses the user's
credentials, SSH config and helpers); dulwich is the fallback
(``GITXP_ENGINE=dulwich`` forces it, ``GITXP_ENGINE=git`` forces git). The
dulwich imports are inside the functions that need them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from itertools import count
from typing import TYPE_CHECKING, Any

from gitxp.errors import GitxpError, RemoteError, UnsafeDataError
from gitxp.plumbing import gitcli
from gitxp.plumbing.repo import Repo

if TYPE_CHECKING:
    from gitxp.plumbing.quarantine import Quarantine

#: git fsck message ids for entry names (what :func:`gitxp.plumbing.fsck.git_name_problem` returns), always errors.
_FSCK_ERRORS = (
    "hasDotgit", "hasDot", "hasDotdot", "fullPathname", "emptyName", "badFilemode", "zeroPaddedFilemode", "duplicateEntries", "treeNotSorted",
    "gitmodulesSymlink", "gitmodulesBlob", "gitmodulesName", "gitmodulesUrl", "gitmodulesPath", "gitmodulesUpdate",
    "gitattributesBlob", "gitattributesLarge", "gitattributesLineLength",
)
ENGINE_ENV = "GITXP_ENGINE"
_seq = count()


def engine(choice: str | None = None) -> str:
    """``git`` when the CLI is on PATH, else ``dulwich``; ``GITXP_ENGINE`` or ``choice`` overrides."""
    choice = choice or os.environ.get(ENGINE_ENV) or ("git" if gitcli.available() else "dulwich")
    if choice not in ("git", "dulwich"):
        raise RemoteError(f"unknown engine {choice!r}", f"set {ENGINE_ENV} to git or dulwich")
    return choice


def remote_config(repo: Repo, section: tuple[bytes, ...], key: bytes) -> str | None:
    """One value from the repository's config stack (``branch.<b>.remote``, ``remote.<r>.url``), or None."""
    try:
        value = repo.dulwich.get_config_stack().get(section, key)
    except KeyError:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _run_git(
    repo: Repo, args: list[str], *, quiet: bool, in_hook: bool = False, env: dict[str, str] | None = None, hide: Callable[[bytes], bool] | None = None,
) -> subprocess.CompletedProcess[str]:
    """git with no prompt when nobody can answer; its stderr reaches the terminal unless ``quiet``, less the lines ``hide`` picks."""
    show = not quiet and sys.stderr.isatty()
    try:
        return gitcli.run(args, str(repo.root or repo.git_dir), env=gitcli.environment(extra_env=env, prompt=False, in_hook=in_hook), show_stderr=show,
                          hide=hide)
    except OSError as exc:
        raise RemoteError(f"could not run git: {exc}", f"install git or set {ENGINE_ENV}=dulwich") from exc


def _last_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def set_ref(repo: Repo, name: str, sha: str | None) -> None:
    """Point a full ref name at ``sha``, unconditionally; None removes it (read refs with :meth:`Repo.read_ref`)."""
    refs = repo.dulwich.refs
    if sha is None:
        refs.remove_if_equals(name.encode(), None)
    else:
        refs[name.encode()] = sha.encode()


# ---------------------------------------------------------------- fetch


def fetch(repo: Repo, target: str, branch: str, *, eng: str, quarantine: Quarantine, quiet: bool = True) -> tuple[str | None, str]:
    """Fetch the remote's store branch into a private ref; (commit or None, ref name).

    Only the one branch travels, and its objects land in ``quarantine``
    (the caller migrates them once validated). ``None``: the remote has no
    store branch.
    """
    incoming = f"refs/gitxp/incoming/{os.getpid()}-{next(_seq)}"
    if eng == "git":
        args = ["fetch", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules", "--no-auto-gc"]
        args.append("--progress" if not quiet and sys.stderr.isatty() else "--quiet")
        # fetch.fsckObjects: git itself refuses malformed objects (such as a
        # ".git" entry); no commit-graph or maintenance runs inside the quarantine.
        config = ["-c", "fetch.fsckObjects=true", "-c", "fetch.writeCommitGraph=false", "-c", "maintenance.auto=false"]
        # A user's fetch.fsck.<id>=ignore or skip list must not let these through.
        config += [arg for msg in _FSCK_ERRORS for arg in ("-c", f"fetch.fsck.{msg}=error")] + ["-c", f"fetch.fsck.skipList={os.devnull}"]
        # git's ref summary ("From <url>", "* [new branch] gitxp -> refs/gitxp/incoming/...") names the private ref: not shown
        r = _run_git(repo, [*config, *args, "--", target, f"+refs/heads/{branch}:{incoming}"], quiet=quiet, env=quarantine.git_env(),
                     hide=lambda line: line.startswith(b"From ") or incoming.encode() in line)
        if r.returncode != 0:
            err = r.stderr or ""
            if "couldn't find remote ref" in err:
                return None, incoming
            bad = [ln.strip() for ln in err.splitlines() if ln.strip().startswith("error: object") or "fsck" in ln]
            if bad:
                raise UnsafeDataError(f"refusing the store fetched from {target}: git's object check failed: {bad[0]}", "nothing was merged; ask whoever pushed it to repair the store")
            raise RemoteError(f"git fetch from {target} failed: {_last_line(r.stderr)}", "check the remote's URL and your access to it")
        return repo.read_ref(incoming), incoming
    return _dulwich_fetch(repo, target, branch, incoming, quarantine=quarantine, quiet=quiet), incoming


def _dulwich_fetch(repo: Repo, target: str, branch: str, incoming: str, *, quarantine: Quarantine, quiet: bool) -> str | None:
    from dulwich.client import get_transport_and_path
    from dulwich.repo import Repo as DRepo

    # The same repository (refs, config) writing its objects into the quarantine.
    r = DRepo(str(repo.root or repo.git_dir), object_directory=str(quarantine.path), alternates=[str(repo.objects_dir)])
    url = remote_config(repo, (b"remote", target.encode()), b"url") or target
    want = f"refs/heads/{branch}".encode()
    found: dict[str, bytes] = {}

    def determine_wants(refs: Any, *args: Any, **kwargs: Any) -> list[bytes]:
        sha = refs.get(want)
        if sha is None:
            return []
        found["sha"] = sha
        return [] if sha in r.object_store else [sha]

    progress = (lambda data: sys.stderr.buffer.write(data)) if not quiet and sys.stderr.isatty() else None
    try:
        client, path = get_transport_and_path(url, config=r.get_config_stack())
        client.fetch(path, r, determine_wants=determine_wants, progress=progress)  # type: ignore[arg-type]  # dulwich's hints lag its runtime: any callable(refs) works, progress's return is ignored
    except Exception as exc:  # noqa: BLE001 - dulwich raises many unrelated types for transport failures
        raise RemoteError(f"fetch from {target} failed: {exc}", "check the remote's URL and your access to it") from exc
    finally:
        r.close()
    if "sha" not in found:
        return None
    sha = found["sha"]
    repo.dulwich.refs[incoming.encode()] = sha
    return sha.decode()


# ---------------------------------------------------------------- push


def push_once(repo: Repo, target: str, branch: str, *, eng: str, quiet: bool, verify: bool = True) -> str:
    """One push attempt: ``pushed``, ``up-to-date`` or ``rejected`` (the remote moved on).

    ``verify=False`` (from gitxp's pre-push hook) runs no pre-push hook: the
    user's hook has already run once for the ``git push`` that called us.
    A refusal by the user's hook or the remote's says why, in their words.
    """
    spec = f"refs/heads/{branch}:refs/heads/{branch}"
    if eng == "git":
        args = ["push", "--porcelain", "--no-recurse-submodules"]
        if not verify:
            args.append("--no-verify")
        args.append("--progress" if not quiet and sys.stderr.isatty() else "--quiet")
        r = _run_git(repo, [*args, "--", target, spec], quiet=quiet, in_hook=True)
        status = [ln for ln in (r.stdout or "").splitlines() if ln[:1] in " +-*!=" and "\t" in ln]
        for line in status:
            flag, _, rest = line.partition("\t")
            if flag == "=":
                return "up-to-date"
            if flag in (" ", "*", "+"):
                return "pushed"
            if "[rejected]" in rest:
                return "rejected"
            if "[remote rejected]" in rest and re.search(r"lock|failed to update|expected|incorrect old", rest):
                return "rejected"
            raise RemoteError(f"push to {target} was refused: {rest.split(chr(9))[-1]}{_says(r.stderr, remote=True)}", "check the remote's rules for the store branch")
        if r.returncode == 0:
            return "pushed"
        if verify and _has_pre_push_hook(repo) and not re.search(r"^fatal:", r.stderr or "", re.M):
            raise RemoteError(f"push to {target} was refused by your pre-push hook{_says(r.stderr)}", "fix what it reports, then run `gitxp push`; the code's own push is not affected")
        raise RemoteError(f"git push to {target} failed: {_last_line(r.stderr)}", "check the remote's URL and your access to it")
    return _dulwich_push(repo, target, spec, quiet=quiet)


def _says(stderr: str | None, *, remote: bool = False) -> str:
    """``": "`` plus the first lines a hook printed (``remote:`` lines for the remote's), or ``""``."""
    lines = []
    for ln in (stderr or "").splitlines():
        ln = ln.strip()
        if remote:
            if not ln.startswith("remote:") or not ln[7:].strip():
                continue
            ln = ln[7:].strip()
        elif not ln or ln.startswith(("error: failed to push", "To ", "hint:")):
            continue
        lines.append(ln)
    text = " / ".join(lines[:3])
    return f": {text[:300]}" if text else ""


def _has_pre_push_hook(repo: Repo) -> bool:
    try:
        hook = gitcli.hooks_dir(str(repo.root or repo.git_dir)) / "pre-push"
    except GitxpError:
        return False
    return os.access(hook, os.X_OK)


def _dulwich_push(repo: Repo, target: str, spec: str, *, quiet: bool) -> str:
    import io

    from dulwich import porcelain
    from dulwich.errors import HangupException

    buf = io.BytesIO()
    err: Any = sys.stderr.buffer if not quiet and sys.stderr.isatty() else buf
    try:
        result = porcelain.push(repo.dulwich, target, refspecs=[spec.encode()], outstream=buf, errstream=err)
    except porcelain.DivergedBranches:
        return "rejected"
    except (porcelain.Error, HangupException, OSError) as exc:
        if re.search(r"lock|failed to update|expected", str(exc)):
            return "rejected"
        raise RemoteError(f"push to {target} failed: {exc}", "check the remote's URL and your access to it") from exc
    errors = {k: v for k, v in (getattr(result, "ref_status", None) or {}).items() if v is not None}
    if errors:
        reason = "; ".join(str(v) for v in errors.values())
        if re.search(r"lock|failed to update|expected|non-fast-forward|fetch first", reason):
            return "rejected"
        raise RemoteError(f"push to {target} was refused: {reason}", "check the remote's rules for the store branch")
    return "pushed"


def merge_bases(repo: Repo, ours: str, theirs: str) -> list[str]:
    """Best common ancestors of two commits (dulwich's date-ordered walk)."""
    from dulwich.graph import find_merge_base

    return [b.decode() for b in find_merge_base(repo.dulwich, [ours.encode(), theirs.encode()])]  # type: ignore[list-item]  # dulwich's ObjectID is a NewType of bytes
