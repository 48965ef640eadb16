"""Shared fixtures: real git repositories with an isolated config, the real CLI.

Every test runs with GIT_CONFIG_GLOBAL=/dev/null, a fixed identity and a
private XDG_CONFIG_HOME, so neither the user's git config nor their gitxp
keys are read or written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

GIT_ENV = {
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))
    monkeypatch.setenv("GITXP_NO_PAGER", "1")
    for var in ("GITXP_EXPERIMENT", "GITXP_RUN_DIR", "GITXP_KEY", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    pp = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{pp}" if pp else str(ROOT))
    # `python` and `gitxp` in children (sweep commands, hooks) are this interpreter's,
    # also when pytest runs from a venv that is not activated.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


#: Python source of ``peak_rss_kib()`` for a child process to report its own peak memory. Linux's
#: ``ru_maxrss`` survives ``exec``: a child forked from a large pytest process (torch imported, say)
#: reports the parent's size. ``VmHWM`` is the peak of the child's own memory map.
PEAK_RSS = """
import sys


def peak_rss_kib():
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
"""


def run_git(repo: Path, *args: str, check: bool = True, input: bytes | None = None) -> str:
    """The real git CLI; returns stdout as text."""
    r = subprocess.run(["git", *args], cwd=repo, capture_output=True, input=input, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {r.stderr.decode()}")
    return r.stdout.decode()


def committed_repo(repo: Path, files: dict[str, str], message: str = "initial") -> Path:
    """A new repository at ``repo`` whose `main` holds ``files`` (name → text) in one commit."""
    repo.mkdir()
    run_git(repo, "init", "-q", "-b", "main")
    for name, text in files.items():
        (repo / name).write_text(text)
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", message)
    return repo


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A repository with one commit on `main` and a clean work tree."""
    return committed_repo(tmp_path / "repo", {"train.py": "print('training')\n", ".gitignore": "*.log\ndata/\n"})


@pytest.fixture
def two_clones(tmp_path: Path, git_repo: Path) -> tuple[Path, Path, Path]:
    """A bare remote, clone A (the ``git_repo`` fixture) and clone B, both with ``origin``."""
    bare = tmp_path / "remote.git"
    run_git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    run_git(git_repo, "remote", "add", "origin", str(bare))
    run_git(git_repo, "push", "-q", "origin", "main")
    b = tmp_path / "b"
    run_git(tmp_path, "clone", "-q", str(bare), str(b))
    return bare, git_repo, b


def gitxp(repo: Path, *args: str, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real `gitxp` command in a subprocess (``python -m gitxp``)."""
    r = subprocess.run(
        [sys.executable, "-m", "gitxp", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        input=input,
    )
    if check and r.returncode != 0:
        raise AssertionError(f"gitxp {' '.join(args)} exited {r.returncode}:\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def fsck(repo: Path) -> None:
    r = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "error" not in r.stderr.lower() and "warning" not in r.stderr.lower(), r.stderr


def state(repo: Path) -> tuple[bytes, int, str, str, str]:
    """What must never change: index bytes and mtime, HEAD, status, branch list."""
    idx = repo / ".git" / "index"
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, env=env).stdout
    return (
        idx.read_bytes() if idx.exists() else b"",
        idx.stat().st_mtime_ns if idx.exists() else 0,
        (repo / ".git" / "HEAD").read_text(),
        status,
        run_git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/main"),
    )


def run_in_pty(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``cmd`` with a terminal as stdin/stdout/stderr; returns (exit status, everything it wrote)."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=600), out.decode(errors="replace")
