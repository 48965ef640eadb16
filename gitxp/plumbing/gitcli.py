"""Runs of the ``git`` binary for transport and hooks: the hooks folder, ``write-tree``, trailers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any


def run(args: list[str], cwd: str | os.PathLike[str], **options: Any) -> subprocess.CompletedProcess[Any]:
    """``git ARGS`` in ``cwd``; ``options`` go to :func:`subprocess.run` (``text`` defaults to True, ``check`` to False)."""
    options.setdefault("text", True)
    options.setdefault("check", False)
    return subprocess.run(["git", *args], cwd=cwd, **options)


def hooks_dir(path: str | os.PathLike[str] = ".") -> Path:
    """Where git looks for hooks: ``core.hooksPath`` if set, else ``<common git dir>/hooks``."""
    from gitxp.plumbing.repo import Repo

    repo = Repo(path)
    cwd = repo.root or repo.git_dir
    try:
        out = run(["rev-parse", "--git-path", "hooks"], cwd, capture_output=True, check=True).stdout.strip()
        return (Path(cwd) / out).resolve()
    except (OSError, subprocess.CalledProcessError):
        custom = repo.config("core", "hooksPath")
        if custom:
            p = Path(os.path.expanduser(custom))
            return p if p.is_absolute() else (Path(cwd) / p).resolve()
        return repo.common_dir / "hooks"


def write_index_tree(cwd: str | os.PathLike[str]) -> str | None:
    """``git write-tree`` of the index git is using (``GIT_INDEX_FILE`` included); None when it fails."""
    r = run(["write-tree"], cwd, capture_output=True)
    tree = r.stdout.strip()
    return tree if r.returncode == 0 and tree else None


def add_trailer(message_file: str | os.PathLike[str], trailer: str, cwd: str | os.PathLike[str]) -> None:
    """``git interpret-trailers --in-place``: set ``trailer`` (``Key: value``), replacing one already there.

    Raises:
        subprocess.CalledProcessError: git refused.
    """
    run(["interpret-trailers", "--in-place", "--if-exists", "replace", "--trailer", trailer, str(message_file)], str(cwd), text=False, check=True, capture_output=True)
