"""The one way gitxp runs the ``git`` binary, and the few git commands it needs by name.

Environment policy of :func:`run` (:func:`environment` builds it; ``os.environ`` is never changed):

* The caller's environment is inherited, with ``extra_env`` laid on top
  (a quarantine's ``GIT_OBJECT_DIRECTORY``, for instance).
* ``GIT_TERMINAL_PROMPT=0`` when ``prompt=False`` and our stdin is not a
  terminal: a git asking for credentials with nobody to answer would hang.
* ``git_dir`` (with ``work_tree``) pins the repository: ``GIT_DIR`` and
  ``GIT_WORK_TREE`` are set, and the caller's ``GIT_INDEX_FILE`` (a hook's
  index) is dropped unless ``index`` names the one to use. Without
  ``git_dir`` the inherited ``GIT_DIR``/``GIT_WORK_TREE``/``GIT_INDEX_FILE``
  stay, so a run inside a git hook sees the index git is using.
* ``background=True``, for runs the user did not ask for (the code snapshot):
  ``GIT_OPTIONAL_LOCKS=0``, ``GIT_AUTO_GC=0`` and ``LC_ALL=C`` so output and
  messages parse the same in every locale.
* ``in_hook=True`` sets ``GITXP_IN_HOOK=1`` (a push that runs the user's
  pre-push hook: gitxp's own hook knows it was called by gitxp).

stdin is ``input`` when given, else ``/dev/null``; stdout is captured; stderr
is captured unless ``show_stderr`` lets git's progress reach the terminal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

IN_HOOK_ENV = "GITXP_IN_HOOK"


def available() -> bool:
    """Whether the ``git`` command is on PATH."""
    return shutil.which("git") is not None


def alternates(paths: list[str]) -> str:
    """``GIT_ALTERNATE_OBJECT_DIRECTORIES`` naming ``paths``: a path holding the separator is quoted as git unquotes it.

    git splits the variable at ``os.pathsep`` unless an entry starts with a
    double quote (C-style quoting, as in ``objects/info/alternates``): a
    repository under ``/data/a:b`` would otherwise name ``/data/a`` and ``b``.
    """

    def one(p: str) -> str:
        control = any(ord(c) < 0x20 or ord(c) == 0x7F for c in p)
        if os.pathsep not in p and not p.startswith(('"', "#")) and not control:
            return p
        inner = "".join("\\" + c if c in '\\"' else f"\\{ord(c):03o}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in p)
        return f'"{inner}"'

    return os.pathsep.join(one(p) for p in paths)


def environment(
    *,
    extra_env: dict[str, str] | None = None,
    prompt: bool = True,
    git_dir: str | os.PathLike[str] | None = None,
    work_tree: str | os.PathLike[str] | None = None,
    index: str | os.PathLike[str] | None = None,
    background: bool = False,
    in_hook: bool = False,
) -> dict[str, str]:
    """The child environment of :func:`run` (the policy in this module's docstring)."""
    env = {**os.environ, **(extra_env or {})}
    if not prompt and not sys.stdin.isatty():
        env["GIT_TERMINAL_PROMPT"] = "0"
    if git_dir is not None:
        env.pop("GIT_INDEX_FILE", None)
        env["GIT_DIR"] = str(git_dir)
        if work_tree is not None:
            env["GIT_WORK_TREE"] = str(work_tree)
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    if background:
        env.update(GIT_OPTIONAL_LOCKS="0", GIT_AUTO_GC="0", LC_ALL="C")
    if in_hook:
        env[IN_HOOK_ENV] = "1"
    return env


def run(
    args: list[str],
    cwd: str | os.PathLike[str],
    *,
    input: str | bytes | None = None,
    text: bool = True,
    check: bool = False,
    show_stderr: bool = False,
    hide: Callable[[bytes], bool] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[Any]:
    """``git ARGS`` in ``cwd``, in ``env`` (made by :func:`environment`; its defaults when None).

    ``show_stderr`` lets git's stderr reach ours; with ``hide`` it is
    relayed as it comes (progress redraws end in CR), less the lines
    ``hide`` picks, and also kept in the result for an error message.

    Raises:
        OSError: git could not be started.
        subprocess.CalledProcessError: ``check`` and git failed.
    """
    argv, env = ["git", *args], environment() if env is None else env
    if show_stderr and hide is not None and input is None:
        return _relayed(argv, cwd, env, hide, text=text, check=check)
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        stdout=subprocess.PIPE,
        stderr=None if show_stderr else subprocess.PIPE,
        text=text,
        check=check,
    )


def _relayed(argv: list[str], cwd: str | os.PathLike[str], env: dict[str, str], hide: Callable[[bytes], bool], *, text: bool,
             check: bool) -> subprocess.CompletedProcess[Any]:
    import re
    import threading

    p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = p.stdout, p.stderr
    assert stdout is not None and stderr is not None
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(stdout.read()), daemon=True)
    reader.start()
    sink, kept, pending = sys.stderr.buffer, bytearray(), b""
    sys.stderr.flush()
    while chunk := os.read(stderr.fileno(), 65536):
        kept += chunk
        *pieces, pending = re.split(rb"(?<=[\r\n])", pending + chunk)
        sink.write(b"".join(piece for piece in pieces if not hide(piece)))
        sink.flush()
    if pending and not hide(pending):
        sink.write(pending)
    rc = p.wait()
    reader.join()
    stderr.close()
    result: subprocess.CompletedProcess[Any] = subprocess.CompletedProcess(argv, rc, b"".join(out), bytes(kept))
    if text:
        result.stdout, result.stderr = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    if check:
        result.check_returncode()
    return result


def hooks_dir(path: str | os.PathLike[str] = ".") -> Path:
    """Where git looks for hooks: ``core.hooksPath`` if set, else ``<common git dir>/hooks``."""
    from gitxp.plumbing.repo import Repo

    repo = Repo(path)
    cwd = repo.root or repo.git_dir
    try:
        out = run(["rev-parse", "--git-path", "hooks"], cwd, check=True).stdout.strip()
        return (Path(cwd) / out).resolve()
    except (OSError, subprocess.CalledProcessError):
        custom = repo.config("core", "hooksPath")
        if custom:
            p = Path(os.path.expanduser(custom))
            return p if p.is_absolute() else (Path(cwd) / p).resolve()
        return repo.common_dir / "hooks"


def write_index_tree(cwd: str | os.PathLike[str]) -> str | None:
    """``git write-tree`` of the index git is using (``GIT_INDEX_FILE`` included); None when it fails."""
    r = run(["write-tree"], cwd)
    tree = r.stdout.strip()
    return tree if r.returncode == 0 and tree else None


def add_trailer(message_file: str | os.PathLike[str], trailer: str, cwd: str | os.PathLike[str]) -> None:
    """``git interpret-trailers --in-place``: set ``trailer`` (``Key: value``), replacing one already there.

    Raises:
        subprocess.CalledProcessError: git refused.
    """
    run(["interpret-trailers", "--in-place", "--if-exists", "replace", "--trailer", trailer, str(message_file)], str(cwd), text=False, check=True)


def worktree_add(cwd: str | os.PathLike[str], dest: str | os.PathLike[str], *, branch: str | None = None, commit: str | None = None) -> str | None:
    """``git worktree add`` of ``branch`` (or ``commit``, detached) at ``dest``; None, or git's last line when it failed.

    Raises:
        OSError: git could not be started.
    """
    where = ["--", str(dest), branch] if branch else ["--detach", "--", str(dest), str(commit)]
    r = run(["worktree", "add", "-q", *where], cwd)
    if r.returncode == 0:
        return None
    return (r.stderr.strip().splitlines() or ["failed"])[-1]
