"""Share the store through git remotes: push, pull and the store merge.

Transport has two engines behind the same functions. The ``git`` CLI is used
when it is on PATH (it is 14-16x faster than dulwich on big stores and uses
the user's credentials, SSH config and helpers); dulwich is the fallback
(``GITXP_ENGINE=dulwich`` forces it, ``GITXP_ENGINE=git`` forces git). The
STYLE rule "only plumbing.py imports dulwich" is bent here: transport and the
merge-base walk need dulwich's client and graph modules, which plumbing.py
does not wrap; all such imports are inside functions.

Pull: fetch only the remote's store branch into a private ref
(``refs/gitxp/incoming/<pid>-<n>``), validate what is new in it
(:mod:`gitxp.store.validate`), then move ``refs/remotes/<remote>/<branch>`` (named
remotes only) and merge into the local store branch. A refused store leaves
the local branch exactly as it was. A clone without a local store branch gets
one pointing at the validated remote commit.

Push: push the store branch; when the remote moved on, fetch, validate,
merge and push again, with jittered backoff (``PUSH_ATTEMPTS`` tries), so
concurrent pushers all land eventually.

Merge rule (a union: no experiment is ever lost): a three-way merge against
the merge base, entry by entry. What only one side changed is taken from that
side (so an experiment deleted with ``gitxp rm`` on one side and untouched on
the other stays deleted). When both sides changed the same entry:

* folders are merged recursively (day folders, experiment folders, ``artifacts/``,
  ``tables/``); a change on one side and a deletion on the other keeps the change;
* inside one experiment, the *winner* is the side whose ``experiment.yaml``
  has the later ``ended`` (then the later commit time, then ours); a time
  more than :data:`CLOCK_SKEW_S` in the future counts as none, so a forged
  ``ended: 9999-12-31`` never wins; ``code/`` and every other file come from
  the winner;
* ``experiment.yaml`` is merged field by field against the base (amendments
  such as ``gitxp tag`` on one clone and ``gitxp note`` on another both
  survive): a field changed on one side only is taken from that side;
  changed on both, ``tags`` merge key by key, ``notes`` keep both texts,
  any other field comes from the winner;
* ``metrics.parquet`` keeps both sides' rows (union, identical rows once,
  sorted by name, step) and the winner's metric summary is recomputed from it;
* ``artifacts.yaml`` is the union of both manifests by path, winner first;
* ``gitxp.yaml`` keeps ours with the union of both key lists.

The loser's versions stay in history: the merge commit has both parents
(ours first). Different ``store_id``s are refused (ForeignStoreError) unless
``force``; a newer format is always refused (FormatTooNewError): merging it
would misread it.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

from gitxp import env as _config
from gitxp.store import aliases
from gitxp.store import layout
from gitxp.store import validate
from gitxp.errors import ForeignStoreError, GitxpError, RemoteError, StoreError, UnsafeDataError, UsageError
from gitxp.plumbing.quarantine import Quarantine
from gitxp.plumbing.repo import EXEC_MODE, FILE_MODE, TREE_MODE, Entry, Repo

PUSH_ATTEMPTS = 10
#: git fsck message ids for entry names (what :func:`validate.git_name_problem` returns), always errors.
_FSCK_ERRORS = (
    "hasDotgit", "hasDot", "hasDotdot", "fullPathname", "emptyName", "badFilemode", "zeroPaddedFilemode", "duplicateEntries", "treeNotSorted",
    "gitmodulesSymlink", "gitmodulesBlob", "gitmodulesName", "gitmodulesUrl", "gitmodulesPath", "gitmodulesUpdate",
    "gitattributesBlob", "gitattributesLarge", "gitattributesLineLength",
)
#: Seconds a recorded time may lie in the future (clock skew between machines) and still count in a merge.
CLOCK_SKEW_S = 300
ENGINE_ENV = "GITXP_ENGINE"
IN_HOOK_ENV = "GITXP_IN_HOOK"
_seq = count()


@dataclass
class SyncResult:
    """What a push or pull did. ``action``: created, fast-forward, merged, up-to-date, pushed, nothing."""

    remote: str
    branch: str
    action: str
    commit: str | None
    new_experiments: int = 0
    attempts: int = 1

    def describe(self, verb: str) -> str:
        short = (self.commit or "")[:10]
        extra = f" ({self.new_experiments} new experiment{'s' if self.new_experiments != 1 else ''})" if self.new_experiments else ""
        return f"{verb} {self.branch} {self.remote}: {self.action} {short}{extra}".rstrip()


# ---------------------------------------------------------------- engines and remotes


def engine(choice: str | None = None) -> str:
    """``git`` when the CLI is on PATH, else ``dulwich``; ``GITXP_ENGINE`` or ``choice`` overrides."""
    choice = choice or os.environ.get(ENGINE_ENV) or ("git" if shutil.which("git") else "dulwich")
    if choice not in ("git", "dulwich"):
        raise RemoteError(f"unknown engine {choice!r}", f"set {ENGINE_ENV} to git or dulwich")
    return choice


def _remote_config(repo: Repo, section: tuple[bytes, ...], key: bytes) -> str | None:
    try:
        value = repo.dulwich.get_config_stack().get(section, key)
    except KeyError:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def check_remote_name(name: str) -> str:
    """Refuse a remote git would misread: one starting with '-', or bytes that are not UTF-8.

    Raises:
        UsageError: `--upload-pack=CMD` as a remote would run CMD; a name
            that is not UTF-8 cannot be looked up in the config.
    """
    if name.startswith("-"):
        raise UsageError(f"invalid remote {name!r}: a remote name or URL cannot start with '-'", "pass a remote's name, a path (./-dir) or a URL")
    problem = layout.utf8_problem(name)
    if problem:
        raise UsageError(f"invalid remote {name!r}: it has a {problem}", layout.NOT_UTF8_HINT)
    return name


def resolve(repo: Repo, remote: str | None, branch: str) -> tuple[str, str | None, str]:
    """(what to pass to git, the configured remote name or None, its URL).

    Default: the store branch's upstream (``branch.<store>.remote``), else
    ``origin``. A local path given relative to the current folder is made
    absolute, since git runs from the repository's top folder.
    """
    name = check_remote_name(remote or _remote_config(repo, (b"branch", branch.encode()), b"remote") or "origin")
    url = _remote_config(repo, (b"remote", name.encode()), b"url")
    if url is not None:
        return name, name, url
    if remote is None:
        raise RemoteError(f"no remote named {name!r}", "pass a remote name or URL: `gitxp push URL`, or `git remote add origin URL`")
    if "://" not in name and not re.match(r"^[\w.-]+@[\w.-]+:", name) and Path(name).exists():
        name = str(Path(name).resolve())
    return name, None, name


def _git_env(*, in_hook: bool = False, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    if not sys.stdin.isatty():
        env["GIT_TERMINAL_PROMPT"] = "0"
    if in_hook:
        env[IN_HOOK_ENV] = "1"
    return env


def _run_git(repo: Repo, args: list[str], *, quiet: bool, in_hook: bool = False, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    show = not quiet and sys.stderr.isatty()
    cwd = str(repo.root or repo.git_dir)
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=_git_env(in_hook=in_hook, extra=env),
            stdout=subprocess.PIPE,
            stderr=None if show else subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise RemoteError(f"could not run git: {exc}", f"install git or set {ENGINE_ENV}=dulwich") from exc


def _last_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


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
        r = _run_git(repo, [*config, *args, "--", target, f"+refs/heads/{branch}:{incoming}"], quiet=quiet, env=quarantine.git_env())
        if r.returncode != 0:
            err = r.stderr or ""
            if "couldn't find remote ref" in err:
                return None, incoming
            bad = [ln.strip() for ln in err.splitlines() if ln.strip().startswith("error: object") or "fsck" in ln]
            if bad:
                raise UnsafeDataError(f"refusing the store fetched from {target}: git's object check failed: {bad[0]}", "nothing was merged; ask whoever pushed it to repair the store")
            raise RemoteError(f"git fetch from {target} failed: {_last_line(r.stderr)}", "check the remote's URL and your access to it")
        return _read_ref(repo, incoming), incoming
    return _dulwich_fetch(repo, target, branch, incoming, quarantine=quarantine, quiet=quiet), incoming


def _dulwich_fetch(repo: Repo, target: str, branch: str, incoming: str, *, quarantine: Quarantine, quiet: bool) -> str | None:
    from dulwich.client import get_transport_and_path
    from dulwich.repo import Repo as DRepo

    # The same repository (refs, config) writing its objects into the quarantine.
    r = DRepo(str(repo.root or repo.git_dir), object_directory=str(quarantine.path), alternates=[str(repo.objects_dir)])
    url = _remote_config(repo, (b"remote", target.encode()), b"url") or target
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


def _read_ref(repo: Repo, name: str) -> str | None:
    try:
        value = repo.dulwich.refs[name.encode()]
    except KeyError:
        return None
    return value.decode()


def _set_ref(repo: Repo, name: str, sha: str | None) -> None:
    refs = repo.dulwich.refs
    if sha is None:
        refs.remove_if_equals(name.encode(), None)
    else:
        refs[name.encode()] = sha.encode()


# ---------------------------------------------------------------- push


def _push_once(repo: Repo, target: str, branch: str, *, eng: str, quiet: bool, verify: bool = True) -> str:
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
    from gitxp.remote.hooks import hooks_dir

    try:
        hook = hooks_dir(str(repo.root or repo.git_dir)) / "pre-push"
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


def push(
    path: str | os.PathLike[str] = ".", remote: str | None = None, *, force: bool = False, quiet: bool = True,
    eng: str | None = None, attempts: int = PUSH_ATTEMPTS, verify: bool = True,
) -> SyncResult:
    """Push the store branch; merge the remote's first when it moved on, then push again.

    Raises:
        RemoteError: no store, transport failure, or still rejected after ``attempts``.
    """
    eng = engine(eng)
    with Repo(path) as repo:
        branch = _config.load(repo).branch
        if repo.ref(branch) is None:
            raise RemoteError(f"no experiment store to push (branch {branch!r} does not exist)", "record an experiment first, or join a shared store with `gitxp pull`")
        target, name, _url = resolve(repo, remote, branch)
        merged = 0
        for attempt in range(1, attempts + 1):
            outcome = _push_once(repo, target, branch, eng=eng, quiet=quiet, verify=verify)
            if outcome != "rejected":
                if name:
                    _set_ref(repo, f"refs/remotes/{name}/{branch}", repo.ref(branch))
                action = "up-to-date" if outcome == "up-to-date" and not merged else "pushed"
                return SyncResult(target, branch, action, repo.ref(branch), merged, attempt)
            result = _pull_into(repo, target, name, branch, eng=eng, force=force, quiet=quiet)
            merged += result.new_experiments
            time.sleep(min(2.0, 0.05 * 2 ** min(attempt, 6)) * (0.5 + random.random()))
        raise RemoteError(f"push to {target} was still rejected after {attempts} attempts", "others are pushing right now; run `gitxp push` again")


# ---------------------------------------------------------------- pull


def pull(path: str | os.PathLike[str] = ".", remote: str | None = None, *, force: bool = False, quiet: bool = True, eng: str | None = None) -> SyncResult:
    """Fetch, validate and merge the remote's store branch into the local one.

    Raises:
        UnsafeDataError / FormatTooNewError: the fetched store was refused.
        ForeignStoreError: a different store (without ``force``).
        RemoteError: transport failure.
    """
    eng = engine(eng)
    with Repo(path) as repo:
        branch = _config.load(repo).branch
        target, name, _url = resolve(repo, remote, branch)
        return _pull_into(repo, target, name, branch, eng=eng, force=force, quiet=quiet)


def _pull_into(repo: Repo, target: str, name: str | None, branch: str, *, eng: str, force: bool, quiet: bool) -> SyncResult:
    with Quarantine(repo) as quarantine:
        theirs, incoming = fetch(repo, target, branch, eng=eng, quarantine=quarantine, quiet=quiet)
        try:
            if theirs is None:
                return SyncResult(target, branch, "nothing", repo.ref(branch))
            ours = repo.ref(branch)
            if eng == "dulwich":
                # What git's fetch.fsckObjects did for the git engine.
                validate.check_fetched(repo, theirs, lambda sha: sha in quarantine, source=target)
            ours_tree = repo.read_commit(ours)["tree"] if ours else None
            theirs_tree = repo.read_commit(theirs)["tree"]
            if theirs_tree != ours_tree:
                theirs_doc = validate.check_tree(repo, theirs_tree, known=validate.known_trees(repo, ours_tree, theirs_tree), source=target)
                _check_same_store(repo, ours_tree, theirs_doc, target, force)
            quarantine.migrate()
        except BaseException:
            if _read_ref(repo, incoming) is not None:
                _set_ref(repo, incoming, None)
            raise
    try:
        if name:
            _set_ref(repo, f"refs/remotes/{name}/{branch}", theirs)
        action, commit, new = merge(repo, branch, theirs, label=name or target)
        return SyncResult(target, branch, action, commit, new)
    finally:
        if _read_ref(repo, incoming) is not None:
            _set_ref(repo, incoming, None)


def _check_same_store(repo: Repo, ours_tree: str | None, theirs_doc: dict[str, Any], target: str, force: bool) -> None:
    if ours_tree is None or force:
        return
    data = repo.read_path(ours_tree, layout.STORE_FILE)
    if data is None:
        return
    ours_doc = layout.load_yaml(data, what=layout.STORE_FILE)
    if isinstance(ours_doc, dict) and ours_doc.get("store_id") != theirs_doc.get("store_id"):
        raise ForeignStoreError(
            f"{target} holds a different store ({theirs_doc.get('store_id')}, this one is {ours_doc.get('store_id')})",
            "they were created separately; merge them anyway with --force",
        )


# ---------------------------------------------------------------- merge


def merge(repo: Repo, branch: str, theirs: str, *, label: str, timeout: float = 600.0) -> tuple[str, str, int]:
    """Bring the local store branch up to ``theirs``: (action, new tip, new experiments).

    Runs under the store lock that every gitxp writer takes, and moves the
    branch by compare-and-swap, retrying if plain git moved it meanwhile.
    """
    from filelock import FileLock

    repo.gitxp_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(repo.gitxp_dir / "store.lock")).acquire(timeout=timeout):
        for _ in range(100):
            ours = repo.ref(branch)
            theirs_tree = repo.read_commit(theirs)["tree"]
            if ours is None:
                if repo.cas_ref(branch, None, theirs, message=f"gitxp: create {branch} from {label}"):
                    return "created", theirs, count_experiments(repo, None, theirs_tree)
                continue
            if ours == theirs:
                return "up-to-date", ours, 0
            bases = merge_bases(repo, ours, theirs)
            if theirs in bases:
                return "up-to-date", ours, 0
            ours_info = repo.read_commit(ours)
            if ours in bases:
                if repo.cas_ref(branch, ours, theirs, message=f"gitxp: fast-forward from {label}"):
                    return "fast-forward", theirs, count_experiments(repo, ours_info["tree"], theirs_tree)
                continue
            base_tree = repo.read_commit(bases[0])["tree"] if bases else None
            theirs_info = repo.read_commit(theirs)
            m = _TreeMerger(repo, ours_info.get("time", 0), theirs_info.get("time", 0))
            tree = m.root(base_tree, ours_info["tree"], theirs_tree)
            new = count_experiments(repo, ours_info["tree"], tree)
            message = f"gitxp: merge {label} into {branch} ({new} new experiment{'s' if new != 1 else ''})\n"
            commit = repo.write_commit(tree, [ours, theirs], message)
            if repo.cas_ref(branch, ours, commit, message=message.strip()):
                return "merged", commit, new
            time.sleep(0.01 * (0.5 + random.random()))
    raise StoreError(f"could not update branch {branch!r}: it kept moving", "run the command again")


def merge_bases(repo: Repo, ours: str, theirs: str) -> list[str]:
    """Best common ancestors of two commits (dulwich's date-ordered walk)."""
    from dulwich.graph import find_merge_base

    return [b.decode() for b in find_merge_base(repo.dulwich, [ours.encode(), theirs.encode()])]  # type: ignore[list-item]  # dulwich's ObjectID is a NewType of bytes


def count_experiments(repo: Repo, old_tree: str | None, new_tree: str) -> int:
    """Experiments in ``new_tree`` that ``old_tree`` lacks; unchanged day folders are skipped."""

    def days(tree: str | None) -> dict[str, str]:
        e = repo.lookup(tree, layout.EXPERIMENTS_DIR) if tree else None
        return {d.name: d.sha for d in repo.read_tree(e.sha) if d.is_tree} if e is not None and e.is_tree else {}

    old, new = days(old_tree), days(new_tree)
    n = 0
    for day, sha in new.items():
        if old.get(day) == sha:
            continue
        have = {x.name for x in repo.read_tree(old[day])} if day in old else set()
        n += sum(1 for x in repo.read_tree(sha) if x.name not in have)
    return n


_Pick = Callable[[Entry | None, Entry, Entry, str], Entry]


class _TreeMerger:
    """The three-way union merge described in the module docstring."""

    def __init__(self, repo: Repo, ours_time: int, theirs_time: int) -> None:
        self.repo = repo
        self.ours_time = ours_time
        self.theirs_time = theirs_time

    def _map(self, sha: str | None) -> dict[str, Entry]:
        return {e.name: e for e in self.repo.read_tree(sha)} if sha else {}

    def _three(self, base: str | None, ours: str | None, theirs: str | None, path: str, both: _Pick) -> str:
        b, o, t = self._map(base), self._map(ours), self._map(theirs)
        out: list[Entry] = []
        for name in sorted({*o, *t}):
            bo, oo, to = b.get(name), o.get(name), t.get(name)
            if oo == to:
                pick = oo
            elif oo == bo:
                pick = to
            elif to == bo:
                pick = oo
            elif oo is None or to is None:
                pick = oo or to  # changed on one side, deleted on the other: keep the data
            else:
                pick = both(bo, oo, to, f"{path}/{name}" if path else name)
            if pick is not None:
                out.append(pick)
        return self.repo.write_tree(out)

    @staticmethod
    def _sub(e: Entry | None) -> str | None:
        return e.sha if e is not None and e.is_tree else None

    def root(self, base: str | None, ours: str, theirs: str) -> str:
        def both(b: Entry | None, o: Entry, t: Entry, path: str) -> Entry:
            if path == layout.EXPERIMENTS_DIR and o.is_tree and t.is_tree:
                return Entry(o.name, TREE_MODE, self._three(self._sub(b), o.sha, t.sha, path, self._day))
            if path == layout.STORE_FILE and not o.is_tree and not t.is_tree:
                return self._store_file(o, t)
            if path == aliases.FILE and not o.is_tree and not t.is_tree:
                return self._aliases(o, t)
            return self._generic(b, o, t, path, prefer_theirs=False)

        return self._three(base, ours, theirs, "", both)

    def _day(self, b: Entry | None, o: Entry, t: Entry, path: str) -> Entry:
        if not (o.is_tree and t.is_tree):
            return o
        return Entry(o.name, TREE_MODE, self._three(self._sub(b), o.sha, t.sha, path, self._experiment))

    def _experiment(self, b: Entry | None, o: Entry, t: Entry, path: str) -> Entry:
        if not (o.is_tree and t.is_tree):
            return o
        meta_o = self._meta(o.sha)
        meta_t = self._meta(t.sha)
        theirs_win = _precedence(meta_t.get("ended"), self.theirs_time) > _precedence(meta_o.get("ended"), self.ours_time)
        merged_metrics: list[bytes] = []

        def both(bb: Entry | None, oo: Entry, tt: Entry, p: str) -> Entry:
            name = oo.name
            if name == layout.METRICS_FILE and not oo.is_tree and not tt.is_tree:
                data = _union_metrics(self.repo.read_blob(oo.sha), self.repo.read_blob(tt.sha))
                merged_metrics.append(data)
                return Entry(name, FILE_MODE, self.repo.write_blob(data))
            if name == layout.ARTIFACTS_FILE and not oo.is_tree and not tt.is_tree:
                return self._manifest(oo, tt, theirs_win)
            if name == layout.EXPERIMENT_FILE and not oo.is_tree and not tt.is_tree:
                base = self._meta(b.sha) if b is not None and b.is_tree else None
                merged = merge_fields(base, meta_o, meta_t, theirs_win=theirs_win)
                if merged == meta_o:
                    return oo
                return Entry(name, FILE_MODE, self.repo.write_blob(layout.dump_yaml(merged).encode()))
            if name == layout.CODE_DIR:
                return tt if theirs_win else oo
            return self._generic(bb, oo, tt, p, prefer_theirs=theirs_win)

        tree = self._three(self._sub(b), o.sha, t.sha, path, both)
        if merged_metrics:
            tree = self._resummarise(tree, merged_metrics[0])
        return Entry(o.name, TREE_MODE, tree)

    def _generic(self, b: Entry | None, o: Entry, t: Entry, path: str, *, prefer_theirs: bool) -> Entry:
        if o.is_tree and t.is_tree:
            return Entry(o.name, TREE_MODE, self._three(self._sub(b), o.sha, t.sha, path, lambda bb, oo, tt, p: self._generic(bb, oo, tt, p, prefer_theirs=prefer_theirs)))
        return t if prefer_theirs else o

    def _meta(self, tree: str) -> dict[str, Any]:
        data = self.repo.read_path(tree, layout.EXPERIMENT_FILE)
        doc = layout.load_yaml(data, what=layout.EXPERIMENT_FILE) if data else None
        return doc if isinstance(doc, dict) else {}

    def _store_file(self, o: Entry, t: Entry) -> Entry:
        doc_o = layout.load_yaml(self.repo.read_blob(o.sha), what=layout.STORE_FILE)
        doc_t = layout.load_yaml(self.repo.read_blob(t.sha), what=layout.STORE_FILE)
        if not isinstance(doc_o, dict) or not isinstance(doc_t, dict):
            return o
        keys = list(doc_o.get("keys") or [])
        keys += [k for k in doc_t.get("keys") or [] if k not in keys]
        doc = dict(doc_o, keys=keys)
        return Entry(o.name, FILE_MODE, self.repo.write_blob(layout.dump_yaml(doc).encode()))

    def _aliases(self, o: Entry, t: Entry) -> Entry:
        """Each alias as its later set or removal left it (:func:`gitxp.store.aliases.merge`)."""
        doc_o = layout.load_yaml(self.repo.read_blob(o.sha), what=aliases.FILE)
        doc_t = layout.load_yaml(self.repo.read_blob(t.sha), what=aliases.FILE)
        if aliases.problems(doc_o) or aliases.problems(doc_t):
            return o
        merged = aliases.merge(doc_o or {}, doc_t or {})
        return Entry(o.name, FILE_MODE, self.repo.write_blob(layout.dump_yaml(merged).encode()))

    def _manifest(self, o: Entry, t: Entry, theirs_win: bool) -> Entry:
        first, second = (t, o) if theirs_win else (o, t)
        a = layout.load_yaml(self.repo.read_blob(first.sha), what=layout.ARTIFACTS_FILE) or []
        b = layout.load_yaml(self.repo.read_blob(second.sha), what=layout.ARTIFACTS_FILE) or []
        if not isinstance(a, list) or not isinstance(b, list):
            return first
        paths = {x.get("path") for x in a if isinstance(x, dict)}
        merged = a + [x for x in b if isinstance(x, dict) and x.get("path") not in paths]
        return Entry(o.name, FILE_MODE, self.repo.write_blob(layout.dump_yaml(merged).encode()))

    def _resummarise(self, tree: str, metrics_data: bytes) -> str:
        from gitxp.store import parquet as metrics

        e = self.repo.lookup(tree, layout.EXPERIMENT_FILE)
        if e is None or e.mode not in (FILE_MODE, EXEC_MODE):
            return tree
        doc = layout.load_yaml(self.repo.read_blob(e.sha), what=layout.EXPERIMENT_FILE)
        if not isinstance(doc, dict):
            return tree
        doc["metrics"] = metrics.summarize(metrics.from_parquet_bytes(metrics_data))
        blob = self.repo.write_blob(layout.dump_yaml(doc).encode())
        return self.repo.update_tree(tree, {layout.EXPERIMENT_FILE: Entry(layout.EXPERIMENT_FILE, FILE_MODE, blob)})


_TIME_FIELDS = ("created", "started", "ended")


def _timestamp(value: Any) -> float | None:
    """A recorded time as a POSIX timestamp; None when missing, unreadable or in the future."""
    import datetime as dt

    when = None
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            when = layout.parse_time(value)
        except ValueError:
            return None
    if when is None:
        return None
    stamp = (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()
    return stamp if stamp <= time.time() + CLOCK_SKEW_S else None


def _precedence(ended: Any, commit_time: int) -> tuple[float, float]:
    """Sort key of one side of a merge: (its ``ended``, its commit time); future times count as none."""
    stamp = _timestamp(ended)
    return (float("-inf") if stamp is None else stamp, commit_time if commit_time <= time.time() + CLOCK_SKEW_S else float("-inf"))


_MISSING = object()


def merge_fields(base: dict[str, Any] | None, ours: dict[str, Any], theirs: dict[str, Any], *, theirs_win: bool) -> dict[str, Any]:
    """Three-way merge of two ``experiment.yaml`` documents, field by field (see the module docstring)."""

    def side(o: Any, t: Any) -> Any:
        return t if theirs_win else o

    def three(b: Any, o: Any, t: Any, both: Callable[[Any, Any, Any], Any]) -> Any:
        if o == t:
            return o
        if o == b:
            return t
        if t == b:
            return o
        if o is _MISSING or t is _MISSING:  # changed on one side, removed on the other: keep the data
            return t if o is _MISSING else o
        return both(b, o, t)

    def mapping(b: dict[str, Any], o: dict[str, Any], t: dict[str, Any], both: Callable[[str, Any, Any, Any], Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in [*o, *(k for k in t if k not in o)]:
            v = three(b.get(k, _MISSING), o.get(k, _MISSING), t.get(k, _MISSING), lambda bb, oo, tt: both(k, bb, oo, tt))
            if v is not _MISSING:
                out[k] = v
        return out

    def field(k: str, b: Any, o: Any, t: Any) -> Any:
        if k == "tags" and isinstance(o, dict) and isinstance(t, dict):
            return mapping(b if isinstance(b, dict) else {}, o, t, lambda _k, _b, oo, tt: side(oo, tt))
        if k == "notes" and isinstance(o, str) and isinstance(t, str):
            added = t[len(b):].strip() if isinstance(b, str) and t.startswith(b) else t
            return o if added in o else f"{o}\n{added}".strip()
        return side(o, t)

    merged = mapping(base if isinstance(base, dict) else {}, ours, theirs, field)
    for k in _TIME_FIELDS:  # a time from the future is never taken over ours
        if k in merged and merged[k] != ours.get(k, _MISSING) and _timestamp(merged[k]) is None:
            if k in ours:
                merged[k] = ours[k]
            else:
                del merged[k]
    return merged


def _union_metrics(a: bytes, b: bytes) -> bytes:
    """Both sides' metric rows, identical rows once, sorted by name, step, timestamp."""
    import pyarrow as pa

    from gitxp.store import parquet as metrics

    cols = ["name", "step", "value", "timestamp"]
    parts = []
    for data in (a, b):
        t = metrics.from_parquet_bytes(data).select(cols)
        parts.append(pa.table({
            "name": t.column("name").cast(pa.string()),
            "step": t.column("step").cast(pa.int64()),
            "value": t.column("value").cast(pa.float64()),
            "timestamp": t.column("timestamp").cast(pa.timestamp("us", tz="UTC")),
        }))
    both = pa.concat_tables(parts)
    unique = both.group_by(cols, use_threads=False).aggregate([]).sort_by([("name", "ascending"), ("step", "ascending"), ("timestamp", "ascending")])
    out = pa.Table.from_arrays(
        [unique.column("name").combine_chunks().dictionary_encode(), unique.column("step"), unique.column("value"), unique.column("timestamp")],
        schema=metrics.schema(),
    )
    return metrics.to_parquet_bytes(out)


def tracking_tips(repo: Repo, branch: str) -> dict[str, str]:
    """``{remote: commit}`` of ``refs/remotes/<remote>/<branch>`` (loose or packed), as a clone leaves them."""
    found: dict[str, str] = {}
    base = repo.common_dir / "refs" / "remotes"
    try:
        with open(repo.common_dir / "packed-refs", "rb") as f:
            for raw in f:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line.startswith(("#", "^")) or " " not in line:
                    continue
                sha, _, name = line.partition(" ")
                parts = name.split("/")
                if len(parts) >= 4 and parts[:2] == ["refs", "remotes"] and "/".join(parts[3:]) == branch:
                    found[parts[2]] = sha
    except FileNotFoundError:
        pass
    if base.is_dir():
        for remote_dir in base.iterdir():
            try:
                value = (remote_dir / branch).read_text().strip()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue
            if len(value) == 40:
                found[remote_dir.name] = value
    return found


def pull_hint(store: Any) -> str | None:
    """For a clone with no local store yet: one line saying what ``gitxp pull`` would bring.

    Counted from the remote-tracking store's day folders (no experiment is
    read), so listings stay fast; None when there is nothing to say.
    """
    if store.exists():
        return None
    tips = tracking_tips(store.repo, store.branch)
    for remote in sorted(tips, key=lambda r: (r != "origin", r)):
        try:
            tree = store.repo.read_commit(tips[remote])["tree"]
            n = count_experiments(store.repo, None, tree)
        except Exception:  # a damaged or missing object: say nothing rather than fail a listing
            continue
        if n:
            more = "" if remote == "origin" else f" {remote}"
            return f"gitxp: no local store yet; `gitxp pull{more}` brings {n} experiment(s) from {remote}"
    return None
