"""gitxp/plumbing/batch.py: many objects read through one `git cat-file --batch`, or dulwich, alike.

Objects are written by the real git CLI; reads are compared with `git cat-file`.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import run_git

from gitxp.errors import StoreError
from gitxp.plumbing.batch import GROUP, ObjectReader
from gitxp.plumbing.quarantine import Quarantine
from gitxp.plumbing.repo import Repo

ENGINES = ("git", "dulwich")


def _blob(repo: Path, data: bytes) -> str:
    return run_git(repo, "hash-object", "-w", "--stdin", input=data).strip()


@pytest.mark.parametrize("engine", ENGINES)
def test_reads_blobs_trees_and_missing_ids_in_order(git_repo: Path, engine: str) -> None:
    big = os.urandom(3 << 20)  # larger than any pipe buffer
    small = _blob(git_repo, b"hello\n")
    large = _blob(git_repo, big)
    (git_repo / "f.txt").write_text("x\n")
    run_git(git_repo, "add", "f.txt")
    tree = run_git(git_repo, "write-tree").strip()
    missing = "0" * 40
    with ObjectReader(Repo(git_repo), engine) as reader:
        got = list(reader.read([small, missing, tree, large, small]))
    assert [(sha, kind) for sha, kind, _ in got] == [(small, "blob"), (missing, None), (tree, "tree"), (large, "blob"), (small, "blob")]
    assert got[0][2] == b"hello\n" and got[1][2] is None and got[3][2] == big
    assert got[2][2] == subprocess.run(["git", "cat-file", "tree", tree], cwd=git_repo, capture_output=True, check=True).stdout


@pytest.mark.parametrize("engine", ENGINES)
def test_objects_over_the_limit_are_skipped_not_held(git_repo: Path, engine: str) -> None:
    over = _blob(git_repo, b"y" * 5000)
    under = _blob(git_repo, b"z" * 10)
    with ObjectReader(Repo(git_repo), engine) as reader:
        got = list(reader.read([over, under, over], limit=100))
    assert got == [(over, "blob", None), (under, "blob", b"z" * 10), (over, "blob", None)]


@pytest.mark.parametrize("engine", ENGINES)
def test_many_groups_and_a_quarantine(git_repo: Path, tmp_path: Path, engine: str) -> None:
    """More ids than one group; objects only in a pull's quarantine are read through it."""
    repo = Repo(git_repo)
    n = GROUP + 300
    paths = []
    for i in range(n):
        p = tmp_path / f"obj-{i}"
        p.write_bytes(f"object {i}\n".encode())
        paths.append(f"{p}\n")
    with Quarantine(repo) as q:
        shas = subprocess.run(["git", "hash-object", "-w", "--stdin-paths"], cwd=git_repo, env={**os.environ, **q.git_env()},
                              check=True, capture_output=True, text=True, input="".join(paths)).stdout.split()
        assert not (git_repo / ".git" / "objects" / shas[0][:2] / shas[0][2:]).exists()  # in the quarantine only
        with ObjectReader(repo, engine) as reader:
            got = list(reader.read(shas))
    assert [d for _, _, d in got] == [f"object {i}\n".encode() for i in range(n)]


def test_a_killed_git_is_a_store_error(git_repo: Path) -> None:
    shas = [_blob(git_repo, f"{i}\n".encode()) for i in range(3)]
    reader = ObjectReader(Repo(git_repo), "git")
    it = reader.read(shas)
    assert next(it)[2] == b"0\n"
    assert reader._proc is not None
    os.kill(reader._proc.pid, signal.SIGKILL)
    reader._proc.wait()
    with pytest.raises(StoreError, match="git cat-file stopped"):
        list(reader.read(shas))
    reader.close()


def test_a_read_left_mid_group_does_not_shift_the_next_answers(git_repo: Path) -> None:
    """A caller that stops reading (or fails) part-way through a group: the next read answers its own ids."""
    shas = [_blob(git_repo, f"{i}\n".encode()) for i in range(5)]
    with ObjectReader(Repo(git_repo), "git") as reader:
        it = reader.read(shas)
        assert next(it)[2] == b"0\n"
        it.close()  # four answers left unread in git's pipe
        assert [d for _, _, d in reader.read(shas[3:])] == [b"3\n", b"4\n"]
