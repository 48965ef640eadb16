"""Install gitxp's git hooks, chained after whatever hooks are already there.

Three hooks, all POSIX sh, silent on success and never blocking a git
command (a gitxp failure is one warning line):

* ``pre-push``: pushes the store to the remote the code goes to;
* ``post-merge``: pulls the store after ``git pull``;
* ``prepare-commit-msg``: adds a ``Gitxp-Experiments:`` trailer naming the
  experiments whose code snapshot is exactly the tree being committed.

An existing hook is never overwritten: it is renamed ``<name>.gitxp-chained``
and gitxp's script runs it first (with the same arguments and, for
``pre-push``, the same stdin) and stops when it fails, so the user's checks
keep their power. Installing twice updates gitxp's script in place;
``uninstall`` renames the original back, byte for byte. The scripts call
gitxp through the Python that installed them (``gitxp`` on PATH if that
Python is gone).

The pre-commit framework, installed after gitxp, renames gitxp's script
``<name>.legacy`` and runs it from its own; gitxp's script finds the
original by hook name, and ``install``/``uninstall`` look for gitxp's
script there too (``uninstall`` then leaves the original as
``<name>.legacy``, which pre-commit keeps running). Installed before gitxp,
pre-commit's script is just the chained original. The store push made from
``pre-push`` runs no hook (``--no-verify``), so a user's hook runs once per
``git push``; ``gitxp push`` by hand runs it once too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gitxp.errors import GitxpError
from gitxp.plumbing import gitcli

if TYPE_CHECKING:
    from gitxp.store.record import Record

HOOK_NAMES = ("pre-push", "post-merge", "prepare-commit-msg")
MARKER = "# gitxp-hook:"
CHAINED_SUFFIX = ".gitxp-chained"
#: Where the pre-commit framework moves a hook it finds when it installs its own.
LEGACY_SUFFIX = ".legacy"
TRAILER = "Gitxp-Experiments"
TRAILER_MAX = 10


class HookError(GitxpError):
    """A hook could not be installed or removed."""


def source_dir() -> Path:
    """The shipped hook scripts: package ``gitxp._hooks`` in a wheel, ``hooks/`` in a checkout."""
    try:
        from importlib.resources import files

        p = Path(str(files("gitxp._hooks")))
        if (p / "pre-push").is_file():
            return p
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "hooks"


def hooks_dir(path: str | os.PathLike[str] = ".") -> Path:
    """Where git looks for hooks: ``core.hooksPath`` if set, else ``<common git dir>/hooks``."""
    return gitcli.hooks_dir(path)


def _is_ours(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return MARKER.encode() in f.read(4096)
    except (OSError, IsADirectoryError):
        return False


def _render(name: str) -> str:
    text = (source_dir() / name).read_text(encoding="utf-8")
    python = sys.executable.replace("'", "'\\''")
    return text.replace("@GITXP_PYTHON@", python)


def _hook_files(d: Path, name: str) -> tuple[Path, Path, Path, bool]:
    """(the hook, the chained original, pre-commit's ``.legacy``, whether gitxp's script is that ``.legacy``)."""
    target = d / name
    chained = d / (name + CHAINED_SUFFIX)
    legacy = d / (name + LEGACY_SUFFIX)
    return target, chained, legacy, not _is_ours(target) and _is_ours(legacy)


def _write_executable(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.gitxp-tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


def install(path: str | os.PathLike[str] = ".") -> list[str]:
    """Install or update the hooks; returns one line per hook saying what was done."""
    d = hooks_dir(path)
    d.mkdir(parents=True, exist_ok=True)
    done = []
    for name in HOOK_NAMES:
        target, chained, legacy, ours_is_legacy = _hook_files(d, name)
        if ours_is_legacy:
            _write_executable(legacy, _render(name))
            done.append(f"updated {legacy} (run by the pre-commit framework's {name})")
            continue
        if target.exists() or target.is_symlink():
            if _is_ours(target):
                _write_executable(target, _render(name))
                done.append(f"updated {target}")
                continue
            if chained.exists() or chained.is_symlink():
                raise HookError(f"{target} is not gitxp's but {chained.name} exists too", f"move one of them away, then run `gitxp hooks install` again")
            os.rename(target, chained)
            _write_executable(target, _render(name))
            done.append(f"installed {target} (runs your existing hook first, kept as {chained.name})")
        else:
            _write_executable(target, _render(name))
            done.append(f"installed {target}")
    return done


def uninstall(path: str | os.PathLike[str] = ".") -> list[str]:
    """Remove gitxp's hooks and put chained originals back exactly as they were."""
    d = hooks_dir(path)
    done = []
    for name in HOOK_NAMES:
        target, chained, legacy, ours_is_legacy = _hook_files(d, name)
        if ours_is_legacy:
            legacy.unlink()
            done.append(f"removed {legacy}")
            if chained.exists() or chained.is_symlink():
                os.rename(chained, legacy)
                done.append(f"restored your hook as {legacy} (the pre-commit framework runs it)")
            continue
        if (target.exists() or target.is_symlink()) and not _is_ours(target):
            done.append(f"left {target} alone: it is not gitxp's")
            continue
        if target.exists():
            target.unlink()
            done.append(f"removed {target}")
        if chained.exists() or chained.is_symlink():
            os.rename(chained, target)
            done.append(f"restored {target}")
    return done


# ---------------------------------------------------------------- commit trailer


def trailer_for(path: str | os.PathLike[str] = ".") -> str | None:
    """The trailer value naming experiments whose code is the tree being committed.

    The tree is ``git write-tree`` of the index git is committing (git sets
    ``GIT_INDEX_FILE`` for ``commit -a`` and ``commit <paths>``). An
    experiment matches when its snapshot tree is that tree; an experiment run
    on a clean HEAD has HEAD's tree as its snapshot, so it matches exactly
    when the commit leaves the code as it was. Newest first, at most ten.
    """
    from gitxp.store.store import Store

    store = Store.open(path)
    try:
        if not store.exists():
            return None
        tree = gitcli.write_index_tree(store.repo.root or store.repo.git_dir)
        if tree is None:
            return None
        items = []
        for rec in store.experiments():
            if rec.source.get("tree") != tree:
                continue
            items.append(_describe(rec))
            if len(items) >= TRAILER_MAX:
                break
        return ", ".join(items) or None
    finally:
        store.close()


def _describe(rec: Record) -> str:
    """``<short id> <name> <metric>=<value>``, one line whatever the stored name holds.

    Stored names may come from a pulled store: a newline in one would add
    ``Signed-off-by:``-style trailers to the user's commit, so control
    characters and escape sequences go (:func:`gitxp.cli.render.clean`).
    """
    from gitxp.text import clean

    exp_id: str = rec.id
    text = f"{exp_id.rsplit('-', 1)[-1][:8]} {clean(str(rec.name))}"
    summary = dict(rec.summary)
    metric: tuple[object, object] | None = next(((k, v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)), None)
    if metric is None:
        ms = rec.metric_summary
        metric = next(((k, v.get("last")) for k, v in ms.items() if isinstance(v, dict) and v.get("last") is not None), None)
    if metric is not None:
        text += f" {clean(str(metric[0]))}={metric[1]:.4g}"
    return text


def add_trailer(message_file: str | os.PathLike[str], path: str | os.PathLike[str] = ".") -> bool:
    """Add the trailer to a commit message file; False when nothing was added.

    A message with no text yet (an editor about to open) gets no trailer: a
    user who then leaves the message empty must still abort the commit.
    """
    msg = Path(message_file)
    text = msg.read_text(encoding="utf-8", errors="replace") if msg.exists() else ""
    if not any(line.strip() and not line.startswith("#") for line in text.splitlines()):
        return False
    value = trailer_for(path)
    if not value:
        return False
    gitcli.add_trailer(msg, f"{TRAILER}: {value}", Path(path).resolve())
    return True
