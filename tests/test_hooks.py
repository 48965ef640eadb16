"""gitxp hooks install/uninstall, driven by real `git push`, `git pull` and `git commit`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import gitxp
from conftest import fsck, gitxp as run_gitxp, run_git

USER_HOOK = b"#!/bin/sh\ncat >> \"$(dirname \"$0\")/../../pushed-refs.txt\"\necho \"$1\" > \"$(dirname \"$0\")/../../hook-ran.txt\"\n"


def record(repo: Path, name: str) -> str:
    with gitxp.start(repo=str(repo), name=name, params={}, log_hardware=False, capture_env=False) as xp:
        xp.log_metric("loss", 0.25)
    return xp.id


@pytest.fixture
def remote(tmp_path: Path, git_repo: Path) -> Path:
    bare = tmp_path / "remote.git"
    run_git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    run_git(git_repo, "remote", "add", "origin", str(bare))
    return bare


def test_git_push_pushes_the_store_and_runs_the_existing_hook(git_repo: Path, remote: Path) -> None:
    hook = git_repo / ".git" / "hooks" / "pre-push"
    hook.write_bytes(USER_HOOK)
    hook.chmod(0o750)
    run_gitxp(git_repo, "hooks", "install")
    run_gitxp(git_repo, "hooks", "install")  # idempotent: no double chaining
    hooks = sorted(p.name for p in hook.parent.iterdir() if "gitxp" in p.name)
    assert hooks == ["pre-push.gitxp-chained"]
    assert (hook.parent / "pre-push.gitxp-chained").read_bytes() == USER_HOOK
    xp = record(git_repo, "run")
    r = run_git(git_repo, "push", "-q", "origin", "main")
    assert r == ""
    assert run_git(remote, "rev-parse", "refs/heads/gitxp").strip() == run_git(git_repo, "rev-parse", "gitxp").strip()
    assert xp in run_git(remote, "ls-tree", "-r", "--name-only", "gitxp")
    assert "refs/heads/main" in (git_repo / "pushed-refs.txt").read_text()  # the original hook got stdin
    assert (git_repo / "hook-ran.txt").read_text().strip() == "origin"
    run_gitxp(git_repo, "hooks", "uninstall")
    assert hook.read_bytes() == USER_HOOK and stat.S_IMODE(hook.stat().st_mode) == 0o750
    assert not (hook.parent / "pre-push.gitxp-chained").exists()
    assert not (hook.parent / "post-merge").exists()
    fsck(remote)


def test_a_failing_user_hook_still_blocks_the_push(git_repo: Path, remote: Path) -> None:
    hook = git_repo / ".git" / "hooks" / "pre-push"
    hook.write_text("#!/bin/sh\necho no >&2\nexit 3\n")
    hook.chmod(0o755)
    run_gitxp(git_repo, "hooks", "install")
    record(git_repo, "run")
    import subprocess

    r = subprocess.run(["git", "push", "origin", "main"], cwd=git_repo, capture_output=True, text=True)
    assert r.returncode != 0 and "no" in r.stderr
    assert run_git(remote, "for-each-ref") == ""  # neither the code nor the store went out


def test_gitxp_failure_never_blocks_git(git_repo: Path, remote: Path) -> None:
    run_gitxp(git_repo, "hooks", "install")
    record(git_repo, "run")
    import subprocess

    r = subprocess.run(["git", "push", "origin", "main"], cwd=git_repo, capture_output=True, text=True, env={**os.environ, "GITXP_ENGINE": "bogus"})
    assert r.returncode == 0
    assert "gitxp: warning: the experiment store was not pushed" in r.stderr and "unknown engine" in r.stderr
    assert run_git(remote, "rev-parse", "main").strip() == run_git(git_repo, "rev-parse", "main").strip()


def test_commit_gets_a_trailer_for_experiments_on_that_code(git_repo: Path) -> None:
    run_gitxp(git_repo, "hooks", "install")
    (git_repo / "train.py").write_text("print('training v2')\n")
    xp = record(git_repo, "v2")
    run_git(git_repo, "add", "-A")
    run_git(git_repo, "commit", "-q", "-m", "train v2")
    msg = run_git(git_repo, "log", "-1", "--format=%B")
    assert f"Gitxp-Experiments: {xp.rsplit('-', 1)[1][:8]} v2 loss=0.25" in msg
    assert msg.startswith("train v2\n")
    (git_repo / "train.py").write_text("print('other code')\n")
    run_git(git_repo, "commit", "-q", "-am", "other")
    assert "Gitxp-Experiments" not in run_git(git_repo, "log", "-1", "--format=%B")
    run_git(git_repo, "commit", "-q", "--amend", "-m", "amended")  # $2 == "commit": left alone
    assert run_git(git_repo, "log", "-1", "--format=%B").strip() == "amended"


def test_git_pull_pulls_the_store(tmp_path: Path, git_repo: Path, remote: Path) -> None:
    run_git(git_repo, "push", "-q", "origin", "main")
    clone = tmp_path / "clone"
    run_git(tmp_path, "clone", "-q", str(remote), str(clone))
    run_gitxp(clone, "hooks", "install")
    xp = record(git_repo, "run")
    (git_repo / "more.py").write_text("x = 1\n")
    run_git(git_repo, "add", "-A")
    run_git(git_repo, "commit", "-q", "-m", "more")
    run_git(git_repo, "push", "-q", "origin", "main")
    run_gitxp(git_repo, "push")
    run_git(clone, "pull", "-q", "--ff-only")
    assert xp in run_git(clone, "ls-tree", "-r", "--name-only", "gitxp")
    fsck(clone)


def test_core_hooks_path_is_respected(git_repo: Path) -> None:
    run_git(git_repo, "config", "core.hooksPath", ".githooks")
    out = run_gitxp(git_repo, "hooks", "install").stdout
    assert ".githooks" in out
    for name in ("pre-push", "post-merge", "prepare-commit-msg"):
        p = git_repo / ".githooks" / name
        assert p.is_file() and os.access(p, os.X_OK)
    assert not (git_repo / ".git" / "hooks" / "pre-push").exists()
    run_gitxp(git_repo, "hooks", "uninstall")
    assert not any((git_repo / ".githooks").iterdir())


def test_hook_scripts_ship_executable_and_posix() -> None:
    from gitxp import hooks

    for name in hooks.HOOK_NAMES:
        p = hooks.source_dir() / name
        assert p.read_text().startswith("#!/bin/sh\n") and os.access(p, os.X_OK)
        assert "@GITXP_PYTHON@" in p.read_text()
