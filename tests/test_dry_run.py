"""gitxp start --dry-run: prints what would be recorded and leaves the repository byte-identical."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import gitxp
from conftest import gitxp as run_gitxp, run_git


def state(repo: Path) -> dict:
    """Everything a dry run could touch: refs, every file under .git (size, mtime) and the work tree's bytes."""
    files = {}
    for root, _dirs, names in os.walk(repo):
        for n in names:
            p = Path(root) / n
            st = p.lstat()
            rel = p.relative_to(repo).as_posix()
            files[rel] = (st.st_size, st.st_mtime_ns) if rel.startswith(".git/") else p.read_bytes()
    dirs = sorted(Path(root).relative_to(repo).as_posix() for root, _d, _n in os.walk(repo))
    return {"refs": run_git(repo, "for-each-ref"), "files": files, "dirs": dirs}


def prepare(repo: Path) -> None:
    (repo / "train.py").write_text("print('training, edited')\n")
    (repo / "notes.md").write_text("untracked\n")
    (repo / "big.bin").write_bytes(b"\0" * 4096)
    (repo / "scratch").mkdir()
    (repo / "scratch" / "tmp.txt").write_text("x")
    (repo / ".gitxpignore").write_text("scratch/\n")
    (repo / "model.pt").write_bytes(b"weights")
    run_git(repo, "config", "gitxp.snapshotMaxFileSize", "1k")


def test_dry_run_prints_the_plan_and_changes_nothing(git_repo: Path) -> None:
    with gitxp.start(repo=str(git_repo), name="earlier", log_hardware=False, capture_env=False) as xp:
        xp.log_metric("loss", 1.0)
    prepare(git_repo)
    (git_repo / "data").mkdir()
    (git_repo / "data" / "train.csv").write_text("a,b\n")
    before = state(git_repo)
    r = run_gitxp(git_repo, "start", "--dry-run", "-p", "lr=0.1", "--tag", "team=vision", "--input", "data/train.csv",
                  "--alert", "metrics.loss < 0.2: converged", "--artifact", "*.pt",
                  "--", sys.executable, "train.py", "--api-key", "hunter2")
    assert state(git_repo) == before
    assert not list((git_repo / ".git" / "gitxp" / "runs").glob("*"))
    out = r.stdout.splitlines()
    assert out[0] == "gitxp: dry run: nothing was run, written or committed"
    assert out[1] == "name:     train"
    assert out[2] == f"command:  {sys.executable} train.py --api-key <redacted>" and "hunter2" not in r.stdout + r.stderr
    assert "params:" in out and "  lr: 0.1" in out and "tags:     team=vision" in out
    assert "input:    train = data/train.csv (4 B, 1 file; digest taken when it runs)" in out
    assert "alert:    converged when metrics.loss < 0.2" in out
    snap = next(line for line in out if line.startswith("snapshot:"))
    # .gitignore, train.py, .gitxpignore, notes.md (big.bin, scratch/ and model.pt are left out)
    assert snap.startswith("snapshot: 4 files, ") and " from main " in snap
    assert "  edited: train.py" in out
    assert "  untracked: .gitxpignore, notes.md" in out
    assert "  left out: big.bin (over 1024 bytes)" in out
    assert "  left out: model.pt (secret (key folder or encrypted artifact))" in out
    assert "  left out: scratch/tmp.txt (.gitxpignore)" in out or "  left out: scratch (.gitxpignore)" in out
    assert not (git_repo / "ran").exists()


def test_dry_run_in_a_repository_without_a_store_and_as_json(git_repo: Path) -> None:
    prepare(git_repo)
    before = state(git_repo)
    r = run_gitxp(git_repo, "start", "--dry-run", "--format", "json", "--name", "try", "--", sys.executable, "-c", "open('ran', 'w')")
    assert state(git_repo) == before  # no store branch, no .git/gitxp folder, no objects
    assert not (git_repo / ".git" / "gitxp").exists() and not (git_repo / "ran").exists()
    plan = json.loads(r.stdout)
    assert plan["name"] == "try" and plan["command"][-2:] == ["-c", "open('ran', 'w')"]
    assert plan["snapshot"]["edited"] == ["train.py"] and ["big.bin", "over 1024 bytes"] in plan["snapshot"]["left_out"]
    # what a real run then snapshots is what the dry run said
    run_gitxp(git_repo, "start", "--name", "real", "--", sys.executable, "-c", "pass")
    exp_id = run_gitxp(git_repo, "log", "--format", "{id}", "-n", "1").stdout.strip()
    listing = run_git(git_repo, "ls-tree", "-r", "-l", f"gitxp:experiments/{exp_id[:4]}-{exp_id[4:6]}-{exp_id[6:8]}/{exp_id}/code").splitlines()
    assert plan["snapshot"]["files"] == len(listing) == 5
    assert plan["snapshot"]["size"] == sum(int(line.split()[3]) for line in listing)


def test_dry_run_refuses_what_a_run_would(git_repo: Path) -> None:
    before = state(git_repo)
    r = run_gitxp(git_repo, "start", "--dry-run", "--", "no-such-program-xyz", check=False)
    assert r.returncode == 2 and "command not found" in r.stderr
    r = run_gitxp(git_repo, "start", "--format", "json", "--", sys.executable, "-c", "pass", check=False)
    assert r.returncode == 2 and "--format applies to --dry-run only" in r.stderr
    assert state(git_repo) == before
