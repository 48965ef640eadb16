"""Share the store through git remotes: push and pull.

Transport (fetch, push, the git CLI and dulwich engines) lives in
:mod:`gitxp.plumbing.transport`, the store merge in :mod:`gitxp.remote.merge`.

Pull: fetch only the remote's store branch into a private ref
(``refs/gitxp/incoming/<pid>-<n>``), validate what is new in it
(:mod:`gitxp.plumbing.fsck`, :mod:`gitxp.store.validate`), then move
``refs/remotes/<remote>/<branch>`` (named remotes only) and merge into the
local store branch. A refused store leaves the local branch exactly as it
was. A clone without a local store branch gets one pointing at the validated
remote commit.

Push: push the store branch; when the remote moved on, fetch, validate,
merge and push again, with jittered backoff (``PUSH_ATTEMPTS`` tries), so
concurrent pushers all land eventually.

Different ``store_id``s are refused (ForeignStoreError) unless ``force``; a
newer format is always refused (FormatTooNewError): merging it would misread
it.
"""

from __future__ import annotations

import os
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitxp import env as _config
from gitxp.errors import ForeignStoreError, RemoteError, UsageError
from gitxp.plumbing import fsck
from gitxp.plumbing.quarantine import Quarantine
from gitxp.plumbing.repo import Repo
from gitxp.plumbing.transport import engine, fetch, push_once, remote_config, set_ref
from gitxp.remote.merge import count_experiments, merge
from gitxp.store import layout
from gitxp.store import validate

if TYPE_CHECKING:
    from gitxp.store.store import Store

PUSH_ATTEMPTS = 10


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
    name = check_remote_name(remote or remote_config(repo, (b"branch", branch.encode()), b"remote") or "origin")
    url = remote_config(repo, (b"remote", name.encode()), b"url")
    if url is not None:
        return name, name, url
    if remote is None:
        raise RemoteError(f"no remote named {name!r}", "pass a remote name or URL: `gitxp push URL`, or `git remote add origin URL`")
    if "://" not in name and not re.match(r"^[\w.-]+@[\w.-]+:", name) and Path(name).exists():
        name = str(Path(name).resolve())
    return name, None, name


# ---------------------------------------------------------------- push


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
            outcome = push_once(repo, target, branch, eng=eng, quiet=quiet, verify=verify)
            if outcome != "rejected":
                if name:
                    set_ref(repo, f"refs/remotes/{name}/{branch}", repo.ref(branch))
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
                fsck.check_fetched(repo, theirs, lambda sha: sha in quarantine, source=target)
            ours_tree = repo.read_commit(ours)["tree"] if ours else None
            theirs_tree = repo.read_commit(theirs)["tree"]
            if theirs_tree != ours_tree:
                say = None if quiet or not sys.stderr.isatty() else _say_checking
                theirs_doc = validate.check_tree(repo, theirs_tree, known=validate.known_trees(repo, ours_tree, theirs_tree), source=target,
                                                 progress=say)
                _check_same_store(repo, ours_tree, theirs_doc, target, force)
            quarantine.migrate()
        except BaseException:
            if repo.read_ref(incoming) is not None:
                set_ref(repo, incoming, None)
            raise
    try:
        if name:
            set_ref(repo, f"refs/remotes/{name}/{branch}", theirs)
        action, commit, new = merge(repo, branch, theirs, label=name or target)
        return SyncResult(target, branch, action, commit, new)
    finally:
        if repo.read_ref(incoming) is not None:
            set_ref(repo, incoming, None)


def _say_checking(count: int) -> None:
    """A terminal hears why a big pull is quiet after git's progress ends."""
    print(f"gitxp: checking {count:,} fetched experiments", file=sys.stderr, flush=True)


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


def pull_hint(store: Store) -> str | None:
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
