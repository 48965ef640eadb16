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
    from gitxp.remote import hooks

    for name in hooks.HOOK_NAMES:
        p = hooks.source_dir() / name
        assert p.read_text().startswith("#!/bin/sh\n") and os.access(p, os.X_OK)
        assert "@GITXP_PYTHON@" in p.read_text()


# ---------------------------------------------------------------- once per git command, any install order

COUNTING_HOOK = "#!/bin/sh\ncat >/dev/null\necho \"$1\" >> \"$(git rev-parse --show-toplevel)/user-hook-runs.txt\"\n"
PRE_COMMIT_CONFIG = """repos:
- repo: local
  hooks:
  - id: count
    name: count
    entry: sh -c 'echo ran >> pre-commit-runs.txt'
    language: system
    stages: [pre-push]
    always_run: true
    pass_filenames: false
"""


def runs(repo: Path, name: str) -> int:
    p = repo / name
    return len(p.read_text().splitlines()) if p.exists() else 0


def new_commit(repo: Path, text: str) -> None:
    (repo / "train.py").write_text(text)
    run_git(repo, "commit", "-q", "-am", text)


def store_pushed(repo: Path, remote: Path) -> bool:
    return run_git(remote, "rev-parse", "--verify", "-q", "refs/heads/gitxp", check=False).strip() == run_git(repo, "rev-parse", "gitxp").strip()


def pre_commit(repo: Path, *args: str) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "pre_commit", *args], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def pre_commit_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, git_repo: Path) -> Path:
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path / "pre-commit-home"))
    (git_repo / ".pre-commit-config.yaml").write_text(PRE_COMMIT_CONFIG)
    (git_repo / ".gitignore").write_text("*.log\ndata/\n*-runs.txt\n")
    run_git(git_repo, "add", "-A")
    run_git(git_repo, "commit", "-q", "-m", "pre-commit config")
    return git_repo


def test_a_users_pre_push_hook_runs_once_per_git_command(git_repo: Path, remote: Path) -> None:
    (git_repo / ".gitignore").write_text("*.log\ndata/\n*-runs.txt\n")
    run_git(git_repo, "commit", "-q", "-am", "ignore counters")
    hook = git_repo / ".git" / "hooks" / "pre-push"
    hook.write_text(COUNTING_HOOK)
    hook.chmod(0o755)
    run_gitxp(git_repo, "hooks", "install")
    record(git_repo, "run")
    run_git(git_repo, "push", "-q", "origin", "main")
    assert runs(git_repo, "user-hook-runs.txt") == 1  # not again for the store's own push
    assert store_pushed(git_repo, remote)
    record(git_repo, "second")
    run_gitxp(git_repo, "push")  # a push of the store alone is one git command: the hook runs once
    assert runs(git_repo, "user-hook-runs.txt") == 2
    assert store_pushed(git_repo, remote)


def test_pre_commit_framework_installed_after_gitxp(git_repo: Path, remote: Path, pre_commit_home: Path) -> None:
    hook = git_repo / ".git" / "hooks" / "pre-push"
    hook.write_text(COUNTING_HOOK)
    hook.chmod(0o755)
    run_gitxp(git_repo, "hooks", "install")
    pre_commit(git_repo, "install", "-t", "pre-push")  # moves gitxp's hook to pre-push.legacy
    assert _is_gitxp(hook.parent / "pre-push.legacy")
    record(git_repo, "run")
    run_git(git_repo, "push", "-q", "origin", "main")
    assert runs(git_repo, "user-hook-runs.txt") == 1
    assert runs(git_repo, "pre-commit-runs.txt") == 1
    assert store_pushed(git_repo, remote)
    out = run_gitxp(git_repo, "hooks", "install").stdout  # updating finds gitxp's script where pre-commit put it
    assert "pre-push.legacy" in out and not (hook.parent / "pre-push.legacy.gitxp-chained").exists()
    run_gitxp(git_repo, "hooks", "uninstall")
    assert (hook.parent / "pre-push.legacy").read_text() == COUNTING_HOOK  # pre-commit runs the user's hook again
    assert not any("gitxp" in p.name for p in hook.parent.iterdir())
    new_commit(git_repo, "v2")
    run_git(git_repo, "push", "-q", "origin", "main")
    assert (runs(git_repo, "user-hook-runs.txt"), runs(git_repo, "pre-commit-runs.txt")) == (2, 2)
    pre_commit(git_repo, "uninstall", "-t", "pre-push")
    assert hook.read_text() == COUNTING_HOOK


def test_pre_commit_framework_installed_before_gitxp(git_repo: Path, remote: Path, pre_commit_home: Path) -> None:
    pre_commit(git_repo, "install", "-t", "pre-push")
    hook = git_repo / ".git" / "hooks" / "pre-push"
    theirs = hook.read_bytes()
    run_gitxp(git_repo, "hooks", "install")
    record(git_repo, "run")
    run_git(git_repo, "push", "-q", "origin", "main")
    assert runs(git_repo, "pre-commit-runs.txt") == 1
    assert store_pushed(git_repo, remote)
    record(git_repo, "second")
    run_gitxp(git_repo, "push")
    assert runs(git_repo, "pre-commit-runs.txt") == 2
    assert store_pushed(git_repo, remote)
    run_gitxp(git_repo, "hooks", "uninstall")
    assert hook.read_bytes() == theirs
    assert not any("gitxp" in p.name for p in hook.parent.iterdir())


LARGE_FILE_CHECK = """#!/bin/sh
while read local_ref local_sha remote_ref remote_sha; do
  case "$local_ref" in
    refs/heads/gitxp)
      echo "large-file check: experiments/model.pt is 3.0 MB, over the 1 MB limit" >&2
      echo "use git-lfs for files over 1 MB" >&2
      exit 1 ;;
  esac
done
exit 0
"""


def test_a_store_push_refused_by_a_users_hook_says_why(git_repo: Path, remote: Path) -> None:
    hook = git_repo / ".git" / "hooks" / "pre-push"
    hook.write_text(LARGE_FILE_CHECK)
    hook.chmod(0o755)
    run_gitxp(git_repo, "hooks", "install")
    record(git_repo, "run")
    r = run_gitxp(git_repo, "push", check=False)
    assert r.returncode == 1
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "pre-push hook" in line
    assert "experiments/model.pt is 3.0 MB, over the 1 MB limit" in line
    assert not store_pushed(git_repo, remote)


def test_a_store_push_refused_by_the_remote_says_why_in_the_hook_warning(git_repo: Path, remote: Path) -> None:
    receive = remote / "hooks" / "pre-receive"
    receive.write_text("#!/bin/sh\nwhile read old new ref; do\n  [ \"$ref\" = refs/heads/gitxp ] && { echo \"store refused: files over 1 MB are not allowed here\" >&2; exit 1; }\ndone\nexit 0\n")
    receive.chmod(0o755)
    run_gitxp(git_repo, "hooks", "install")
    record(git_repo, "run")
    import subprocess

    r = subprocess.run(["git", "push", "origin", "main"], cwd=git_repo, capture_output=True, text=True)
    assert r.returncode == 0  # the code went out
    assert run_git(remote, "rev-parse", "main").strip() == run_git(git_repo, "rev-parse", "main").strip()
    warning = [ln for ln in r.stderr.splitlines() if ln.startswith("gitxp: warning:")]
    assert len(warning) == 1 and "files over 1 MB are not allowed here" in warning[0], r.stderr
    assert not store_pushed(git_repo, remote)


def _is_gitxp(path: Path) -> bool:
    return path.is_file() and "gitxp-hook:" in path.read_text()
