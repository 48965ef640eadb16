"""gitxp.plumbing.snapshot against real repositories, both engines side by side.

The reference for every tree id is plain git: copy the index, ``git add -A``
and ``git write-tree``. Both engines must agree with it and with each other,
and neither may change the user's index, HEAD or work tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import GIT_ENV
from gitxp.errors import NotARepositoryError, StoreError, UsageError
from gitxp.plumbing.refs import head_info
from gitxp.plumbing.snapshot import EMPTY_TREE, Snapshot, capture

ENGINES = ("git", "dulwich")
ENV = {
    **os.environ,
    **GIT_ENV,
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engines spawn git too: give them the same isolated config."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def git(repo: Path, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, env=env or ENV, input=stdin,
                          capture_output=True, check=True)
    return proc.stdout.decode()


def write(repo: Path, rel: str, text: str | bytes) -> None:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write(root, "src/model.py", "print('model')\n")
    write(root, "src/util.py", "x = 1\n")
    write(root, "train.py", "print('train')\n")
    write(root, "gone.txt", "bye\n")
    write(root, "README.md", "hello\n")
    write(root, ".gitignore", "*.log\n/data/*\n!/data/keep.csv\nbuild/\n")
    write(root, "sub/.gitignore", "*.tmp\n")
    write(root, "sub/a.txt", "a\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    return root


def reference_tree(root: Path, exclude: tuple[str, ...] = ()) -> str:
    """Plain git's answer: copied index + add -A + write-tree."""
    tmp = root / ".git" / "ref-index"
    shutil.copy2(root / ".git" / "index", tmp)
    env = {**ENV, "GIT_INDEX_FILE": str(tmp)}
    try:
        for path in exclude:
            git(root, "rm", "--cached", "-q", "--ignore-unmatch", "--", path, env=env)
        spec = ["."] + [f":(exclude){p}" for p in exclude]
        git(root, "add", "-A", "--", *spec, env=env)
        return git(root, "write-tree", env=env).strip()
    finally:
        tmp.unlink()


def untouched(root: Path) -> tuple[bytes, int, str, str]:
    """What must not change: index bytes + mtime, status, HEAD."""
    index = root / ".git" / "index"
    status = git(root, "status", "--porcelain", "--untracked-files=all",
                 env={**ENV, "GIT_OPTIONAL_LOCKS": "0"})
    return (index.read_bytes() if index.exists() else b"",
            index.stat().st_mtime_ns if index.exists() else 0, status,
            (root / ".git" / "HEAD").read_text())


def both(root: Path, **kwargs: object) -> Snapshot:
    """Capture with both engines; assert they agree and touch nothing."""
    before = untouched(root)
    results = [capture(root, root / ".git", engine=e, **kwargs) for e in ENGINES]  # type: ignore[arg-type]
    assert untouched(root) == before
    assert results[0] == results[1], results
    if results[0].tree:
        git(root, "cat-file", "-e", results[0].tree + "^{tree}")
    return results[0]


def make_dirty(root: Path) -> None:
    write(root, "src/model.py", "print('model v2')\n")          # modified
    (root / "gone.txt").unlink()                                # deleted
    write(root, "notes.md", "new\n")                            # untracked
    write(root, "newdir/deep/x.py", "y = 2\n")                  # untracked in a new dir
    write(root, "run.log", "ignored\n")                         # ignored
    write(root, "data/big.csv", "ignored\n")                    # ignored by /data/*
    write(root, "data/keep.csv", "kept\n")                      # negation re-includes
    write(root, "sub/scratch.tmp", "ignored\n")                 # nested .gitignore
    write(root, "build/out.o", "ignored\n")                     # ignored folder
    (root / "train.py").chmod(0o755)                            # mode-only change
    os.symlink("src/model.py", root / "link.py")                # symlink


def test_clean_tree_reuses_head_tree(repo: Path) -> None:
    snap = both(repo)
    assert snap.tree == git(repo, "rev-parse", "HEAD^{tree}").strip()
    assert snap.commit == git(repo, "rev-parse", "HEAD").strip()
    assert (snap.branch, snap.dirty, snap.skipped, snap.code_dir) == ("main", False, (), None)
    assert not (repo / ".git" / "gitxp" / "tmp").exists() or not any(
        (repo / ".git" / "gitxp" / "tmp").iterdir())


def test_dirty_tree_matches_git_add_all(repo: Path) -> None:
    make_dirty(repo)
    snap = both(repo)
    assert snap.dirty is True
    assert snap.tree == reference_tree(repo)
    listing = git(repo, "ls-tree", "-r", snap.tree)
    assert "gone.txt" not in listing and "run.log" not in listing and "build/" not in listing
    assert "data/keep.csv" in listing and "data/big.csv" not in listing
    assert "sub/scratch.tmp" not in listing and "newdir/deep/x.py" in listing
    assert "100755 blob" in git(repo, "ls-tree", snap.tree, "train.py")
    assert git(repo, "ls-tree", snap.tree, "link.py").startswith("120000 blob")
    assert git(repo, "cat-file", "-p", f"{snap.tree}:src/model.py") == "print('model v2')\n"
    assert not any((repo / ".git" / "gitxp" / "tmp").iterdir())
    git(repo, "fsck", "--strict", "--no-dangling")


def test_staged_changes_are_included(repo: Path) -> None:
    write(repo, "src/util.py", "x = 3\n")
    git(repo, "add", "src/util.py")
    snap = both(repo)
    assert snap.dirty and snap.tree == reference_tree(repo)


def test_size_cap_leaves_out_new_large_files(repo: Path) -> None:
    make_dirty(repo)
    write(repo, "weights.bin", b"\0" * 2048)                     # untracked, over the cap
    write(repo, "README.md", "x" * 4096)                          # tracked, grew over the cap
    snap = both(repo, max_file_size=1024)
    assert snap.skipped == ("README.md", "weights.bin")
    assert snap.tree == reference_tree(repo, exclude=("README.md", "weights.bin"))
    objects = git(repo, "count-objects", "-v")
    assert "weights" not in git(repo, "ls-tree", "-r", "--name-only", snap.tree)
    assert objects  # the large blobs were never hashed into the store:
    big = git(repo, "hash-object", "weights.bin").strip()
    assert subprocess.run(["git", "cat-file", "-e", big], cwd=repo, env=ENV).returncode != 0


def test_size_cap_keeps_large_files_already_in_head(repo: Path) -> None:
    write(repo, "committed.bin", b"\1" * 4096)
    git(repo, "add", "committed.bin")
    git(repo, "commit", "-qm", "big")
    assert both(repo, max_file_size=1024).skipped == ()
    write(repo, "other.py", "z = 0\n")
    snap = both(repo, max_file_size=1024)
    assert snap.skipped == () and "committed.bin" in git(repo, "ls-tree", snap.tree)


def test_gitxpignore_leaves_paths_out(repo: Path) -> None:
    make_dirty(repo)
    write(repo, ".gitxpignore", "secrets/\n*.pem\n!keep.pem\nsrc/util.py\n")
    write(repo, "secrets/token.txt", "s3cret\n")
    write(repo, "a.pem", "key\n")
    write(repo, "keep.pem", "public\n")
    write(repo, "run2.log", "gitignored too\n")
    snap = both(repo)
    assert snap.skipped == ("a.pem", "secrets/token.txt", "src/util.py")
    assert snap.tree == reference_tree(repo, exclude=snap.skipped)
    names = git(repo, "ls-tree", "-r", "--name-only", snap.tree).split()
    assert "keep.pem" in names and ".gitxpignore" in names and "src/util.py" not in names


def test_gitxpignore_on_a_clean_tree_drops_committed_paths(repo: Path) -> None:
    write(repo, ".gitxpignore", "README.md\n")
    git(repo, "add", ".gitxpignore")
    git(repo, "commit", "-qm", "xpignore")
    snap = both(repo)
    assert snap.dirty is False and snap.skipped == ("README.md",)
    assert snap.tree != git(repo, "rev-parse", "HEAD^{tree}").strip()
    assert snap.tree == reference_tree(repo, exclude=("README.md",))


def test_code_dir_keeps_repository_relative_paths(repo: Path) -> None:
    make_dirty(repo)
    write(repo, "src/nested/new.py", "n = 1\n")
    snap = both(repo, code_dir=Path("src"))
    assert snap.code_dir == "src" and snap.dirty
    names = git(repo, "ls-tree", "-r", "--name-only", snap.tree).split()
    assert names == ["src/model.py", "src/nested/new.py", "src/util.py"]
    assert git(repo, "cat-file", "-p", f"{snap.tree}:src/model.py") == "print('model v2')\n"
    clean_sub = both(repo, code_dir=repo / "sub")
    assert git(repo, "ls-tree", "-r", "--name-only", clean_sub.tree).split() == [
        "sub/.gitignore", "sub/a.txt"]
    assert clean_sub.dirty is False


def test_code_dir_outside_repository_is_refused(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="outside the repository"):
        capture(repo, repo / ".git", code_dir=tmp_path)


def test_empty_repository(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    snap = both(root)
    assert snap == Snapshot(None, None, "main", False, (), None)
    write(root, "a.py", "a = 1\n")
    write(root, "x.log", "no\n")
    write(root, ".gitignore", "*.log\n")
    snap = both(root)
    assert snap.commit is None and snap.branch == "main" and snap.dirty
    assert git(root, "ls-tree", "-r", "--name-only", snap.tree).split() == [".gitignore", "a.py"]
    assert not (root / ".git" / "index").exists()


def test_detached_head_and_packed_refs(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "pack-refs", "--all")
    assert head_info(repo, repo / ".git") == (head, "main")
    git(repo, "checkout", "-q", "--detach")
    assert head_info(repo, repo / ".git") == (head, None)
    assert both(repo).branch is None


def test_linked_worktree(repo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "side", str(wt))
    gitdir = Path(git(wt, "rev-parse", "--absolute-git-dir").strip())
    write(wt, "side.py", "s = 1\n")
    snaps = [capture(wt, gitdir, engine=e) for e in ENGINES]
    assert snaps[0] == snaps[1] and snaps[0].branch == "side" and snaps[0].dirty
    assert "side.py" in git(repo, "ls-tree", "--name-only", snaps[0].tree)


def test_submodule_gitlink(repo: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    write(lib, "l.py", "l = 1\n")
    git(lib, "add", "-A")
    git(lib, "commit", "-qm", "lib")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(repo, "commit", "-qm", "sub")
    write(repo / "lib", "l.py", "l = 2\n")
    git(repo / "lib", "commit", "-qam", "moved")
    snap = both(repo)
    moved = git(repo / "lib", "rev-parse", "HEAD").strip()
    assert snap.tree == reference_tree(repo) and moved in git(repo, "ls-tree", snap.tree, "lib")


def test_not_a_repository_and_bare(tmp_path: Path) -> None:
    with pytest.raises(NotARepositoryError):
        capture(tmp_path, tmp_path / ".git")
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    for engine in ENGINES:
        with pytest.raises(StoreError, match="no work tree to snapshot; use --no-code"):
            capture(bare, bare, engine=engine)


def test_unknown_engine(repo: Path) -> None:
    with pytest.raises(UsageError, match="unknown snapshot engine"):
        capture(repo, repo / ".git", engine="svn")


def test_auto_engine_falls_back_to_dulwich_without_git(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dirty(repo)
    expected = reference_tree(repo)
    monkeypatch.setenv("PATH", "")
    assert shutil.which("git") is None
    assert capture(repo, repo / ".git").tree == expected
    with pytest.raises(StoreError, match="not on PATH"):
        capture(repo, repo / ".git", engine="git")


def test_empty_tree_constant(repo: Path) -> None:
    assert git(repo, "hash-object", "-t", "tree", "/dev/null").strip() == EMPTY_TREE
