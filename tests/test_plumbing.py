"""The plumbing layer on real repositories: objects, trees, refs, quarantine and git's fsck name rules.

Everything written here is checked with the real ``git`` CLI (``cat-file``,
``ls-tree``, ``mktree``, ``fsck --strict``), never against gitxp's own reader only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from conftest import committed_repo, fsck, run_git

from gitxp.errors import StoreError
from gitxp.plumbing.fsck import commit_object_problems, git_name_problem, tree_object_problems
from gitxp.plumbing.quarantine import Quarantine
from gitxp.plumbing.repo import EMPTY_TREE, EXEC_MODE, FILE_MODE, TREE_MODE, Entry, Repo

DAY = "2026-03-01"


@pytest.fixture
def bare_repo(tmp_path: Path) -> Path:
    """An empty non-bare repository (no commit yet)."""
    path = tmp_path / "r"
    path.mkdir()
    run_git(path, "init", "-q", "-b", "main")
    return path


def _ids(n: int) -> list[str]:
    """``n`` distinct experiment ids of one day, all 28 characters long."""
    return [f"20260301-{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}-{i * 7919:012x}" for i in range(n)]


def _commit(repo: Repo, tree: str, branch: str = "main", message: str = "test\n") -> str:
    tip = repo.ref(branch)
    commit = repo.write_commit(tree, [tip] if tip else [], message, when=1_700_000_000)
    assert repo.set_ref(f"refs/heads/{branch}", tip, commit)
    return commit


def _ls_tree(path: Path, rev: str, *, recursive: bool = False) -> list[tuple[str, str, str, str]]:
    """``(mode, type, sha, name)`` rows of ``git ls-tree``."""
    out = run_git(path, "ls-tree", *(["-r"] if recursive else []), rev)
    rows = []
    for line in out.splitlines():
        meta, name = line.split("\t", 1)
        mode, kind, sha = meta.split()
        rows.append((mode, kind, sha, name))
    return rows


# ------------------------------------------------------------------ writing objects


def test_blob_tree_and_commit_are_what_git_reads(bare_repo: Path) -> None:
    repo = Repo(bare_repo)
    blob = repo.write_blob(b"hello\n")
    assert blob == run_git(bare_repo, "hash-object", "--stdin", input=b"hello\n").strip()
    assert run_git(bare_repo, "cat-file", "-t", blob).strip() == "blob"
    assert run_git(bare_repo, "cat-file", "-p", blob) == "hello\n"

    script = repo.write_blob(b"#!/bin/sh\n")
    sub = repo.write_tree([Entry("x.txt", FILE_MODE, blob)])
    # "a" (a folder) sorts as "a/", after the file "a.txt"; git's order, not Python's
    tree = repo.write_tree([Entry("a", TREE_MODE, sub), Entry("a.txt", FILE_MODE, blob), Entry("run.sh", EXEC_MODE, script)])
    assert _ls_tree(bare_repo, tree) == [
        ("100644", "blob", blob, "a.txt"),
        ("040000", "tree", sub, "a"),
        ("100755", "blob", script, "run.sh"),
    ]
    raw = run_git(bare_repo, "ls-tree", tree)
    assert run_git(bare_repo, "mktree", input=raw.encode()).strip() == tree

    commit = repo.write_commit(tree, [], "first line\n\nbody\n", when=1_700_000_000)
    shown = run_git(bare_repo, "cat-file", "-p", commit)
    header, _, message = shown.partition("\n\n")
    lines = header.splitlines()
    assert lines[0] == f"tree {tree}"
    assert lines[1].startswith("author Test <test@example.com> 1700000000 ")
    assert lines[2].startswith("committer Test <test@example.com> 1700000000 ")
    assert message == "first line\n\nbody\n"
    assert repo.write_tree([]) == EMPTY_TREE
    child = repo.write_commit(EMPTY_TREE, [commit], "second", when=1_700_000_100)
    assert run_git(bare_repo, "cat-file", "-p", child).splitlines()[1] == f"parent {commit}"
    assert repo.read_commit(child) == {"tree": EMPTY_TREE, "parents": [commit], "message": "second\n", "time": 1_700_000_100}
    assert repo.set_ref("refs/heads/main", None, child)
    assert run_git(bare_repo, "rev-parse", "main").strip() == child
    fsck(bare_repo)


def test_stored_uncompressed_objects_read_like_any_other(bare_repo: Path) -> None:
    repo = Repo(bare_repo)
    data = os.urandom(200_000)
    sha = repo.write_stream("blob", [data[:70_000], data[70_000:]], len(data), level=0)
    path = bare_repo / ".git" / "objects" / sha[:2] / sha[2:]
    assert path.stat().st_size > len(data)  # stored blocks, not deflated
    assert zlib.decompress(path.read_bytes()) == b"blob 200000\0" + data
    r = subprocess.run(["git", "cat-file", "blob", sha], cwd=bare_repo, capture_output=True, check=True)
    assert r.stdout == data
    empty = repo.write_stream("blob", [], 0, level=0)
    assert empty == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert run_git(bare_repo, "cat-file", "-s", empty).strip() == "0"


def test_write_tree_refuses_bad_and_duplicate_names(bare_repo: Path) -> None:
    from gitxp.errors import StoreError

    repo = Repo(bare_repo)
    blob = repo.write_blob(b"x")
    for name in ("", "a/b", ".", "..", "nul\x00"):
        with pytest.raises(StoreError, match="invalid tree entry name"):
            repo.write_tree([Entry(name, FILE_MODE, blob)])
    with pytest.raises(StoreError, match="duplicate tree entry 'x'"):
        repo.write_tree([Entry("x", FILE_MODE, blob), Entry("x", FILE_MODE, blob)])


def test_write_stream_refuses_a_size_that_changed(bare_repo: Path) -> None:
    from gitxp.errors import StoreError

    repo = Repo(bare_repo)
    with pytest.raises(StoreError, match=r"object size changed while writing \(3 != 4 bytes\)"):
        repo.write_stream("blob", [b"abc"], 4)
    assert not list((bare_repo / ".git" / "objects").glob("tmp_obj_*"))


# ------------------------------------------------------------------ update_tree


def test_update_tree_nested_changes_and_removals(bare_repo: Path) -> None:
    repo = Repo(bare_repo)
    one, two, three = (repo.write_blob(b) for b in (b"1\n", b"2\n", b"3\n"))
    tree = repo.update_tree(None, {
        "a/b/c.txt": Entry("ignored", FILE_MODE, one),
        "a/d.txt": Entry("d.txt", FILE_MODE, two),
        "top.sh": Entry("top.sh", EXEC_MODE, three),
    })
    assert _ls_tree(bare_repo, tree, recursive=True) == [
        ("100644", "blob", one, "a/b/c.txt"),
        ("100644", "blob", two, "a/d.txt"),
        ("100755", "blob", three, "top.sh"),
    ]
    # replace deep down, add beside it: untouched siblings keep their ids
    a_before = repo.lookup(tree, "a")
    tree2 = repo.update_tree(tree, {"a/b/c.txt": Entry("c.txt", FILE_MODE, two), "a/b/e.txt": Entry("e.txt", FILE_MODE, three)})
    assert _ls_tree(bare_repo, tree2, recursive=True) == [
        ("100644", "blob", two, "a/b/c.txt"),
        ("100644", "blob", three, "a/b/e.txt"),
        ("100644", "blob", two, "a/d.txt"),
        ("100755", "blob", three, "top.sh"),
    ]
    assert a_before is not None and repo.lookup(tree2, "a") != a_before
    assert repo.lookup(tree2, "top.sh") == Entry("top.sh", EXEC_MODE, three)
    # removing every file of a folder removes the folder; removing what is absent changes nothing
    tree3 = repo.update_tree(tree2, {"a/b/c.txt": None, "a/b/e.txt": None, "missing/x": None, "nothing": None})
    assert _ls_tree(bare_repo, tree3, recursive=True) == [("100644", "blob", two, "a/d.txt"), ("100755", "blob", three, "top.sh")]
    assert repo.lookup(tree3, "a/b") is None
    assert repo.update_tree(tree3, {"a/d.txt": None, "top.sh": None}) == EMPTY_TREE
    for t in (tree, tree2, tree3):
        raw = run_git(bare_repo, "ls-tree", t)
        assert run_git(bare_repo, "mktree", input=raw.encode()).strip() == t
    _commit(repo, tree3)
    fsck(bare_repo)


def test_busy_day_splice_gives_git_mktree_tree(bare_repo: Path) -> None:
    """A day folder of thousands of fixed-size id records is edited in place and hashes as git builds it."""
    repo = Repo(bare_repo)
    leaf = repo.write_tree([Entry("experiment.yaml", FILE_MODE, repo.write_blob(b"name: x\n"))])
    other = repo.write_tree([Entry("params.yaml", FILE_MODE, repo.write_blob(b"lr: 1\n"))])
    ids = _ids(4000)
    kept, added = ids[::2], ids[1::2]
    day = repo.write_tree([Entry(i, TREE_MODE, leaf) for i in kept])
    raw_day = repo.read_raw(day)[1]
    assert len(raw_day) == 2000 * 55  # 27 bytes of overhead + a 28-character name per record

    new, replaced, removed = added[1000], kept[10], kept[500]
    changes = {new: Entry(new, TREE_MODE, other), replaced: Entry(replaced, TREE_MODE, other), removed: None}
    assert repo._splice(day, changes) is not None  # the fast path, not a parse and re-sort
    result = repo.update_tree(day, changes)

    expected = {i: leaf for i in kept if i != removed}
    expected[new] = other
    expected[replaced] = other
    listing = "".join(f"040000 tree {sha}\t{name}\n" for name, sha in sorted(expected.items(), key=lambda kv: kv[0][::-1]))
    assert run_git(bare_repo, "mktree", input=listing.encode()).strip() == result
    names = run_git(bare_repo, "ls-tree", "--name-only", result).split()
    assert names == sorted(expected)
    # so large a tree is stored without compression
    loose = bare_repo / ".git" / "objects" / result[:2] / result[2:]
    assert loose.stat().st_size > 2000 * 55
    # removing with an empty tree as value removes too, and an added id at the end is appended
    last = ids[-1]
    tail = repo.update_tree(result, {replaced: Entry(replaced, TREE_MODE, EMPTY_TREE), last: Entry(last, TREE_MODE, leaf)})
    tail_names = run_git(bare_repo, "ls-tree", "--name-only", tail).split()
    assert replaced not in tail_names and tail_names[-1] == last and len(tail_names) == len(expected)
    _commit(repo, repo.update_tree(None, {f"experiments/{DAY}": Entry(DAY, TREE_MODE, tail)}))
    fsck(bare_repo)


def test_subtrees_of_a_day_are_what_git_lists(bare_repo: Path) -> None:
    """A day folder's fixed-size records are sliced; any other tree is parsed; both give git's subtrees, in git's order."""
    repo = Repo(bare_repo)
    leaf = repo.write_tree([Entry("f", FILE_MODE, repo.write_blob(b"f"))])
    day = repo.write_tree([Entry(i, TREE_MODE, leaf) for i in _ids(1500)])
    mixed = repo.write_tree([Entry("README", FILE_MODE, repo.write_blob(b"hi")), *(Entry(i, TREE_MODE, leaf) for i in _ids(3))])
    for tree in (day, mixed):
        listed = [(name, sha) for mode, kind, sha, name in _ls_tree(bare_repo, tree) if kind == "tree"]
        assert repo.subtrees(tree) == listed
    with pytest.raises(StoreError, match="not a folder"):
        repo.subtrees(repo.write_blob(b"40000 x"))


def test_day_with_a_foreign_entry_is_not_spliced(bare_repo: Path) -> None:
    repo = Repo(bare_repo)
    leaf = repo.write_tree([Entry("f", FILE_MODE, repo.write_blob(b"f"))])
    ids = _ids(3)
    day = repo.write_tree([Entry(ids[0], TREE_MODE, leaf), Entry("README", FILE_MODE, repo.write_blob(b"hi"))])
    assert repo._splice(day, {ids[1]: Entry(ids[1], TREE_MODE, leaf)}) is None
    result = repo.update_tree(day, {ids[1]: Entry(ids[1], TREE_MODE, leaf)})
    assert run_git(bare_repo, "ls-tree", "--name-only", result).split() == ["20260301-000000-000000000000", "20260301-000001-000000001eef", "README"]


def test_lookup_bisects_a_day_hit_and_miss(bare_repo: Path) -> None:
    repo = Repo(bare_repo)
    leaf = repo.write_tree([Entry("experiment.yaml", FILE_MODE, repo.write_blob(b"name: x\n"))])
    ids = _ids(3000)
    present = ids[::3]
    day = repo.write_tree([Entry(i, TREE_MODE, leaf) for i in present])
    root = repo.update_tree(None, {f"experiments/{DAY}": Entry(DAY, TREE_MODE, day)})
    for i in (present[0], present[517], present[-1]):
        assert repo.lookup(root, f"experiments/{DAY}/{i}") == Entry(i, TREE_MODE, leaf)
        assert repo._child(day, i) == Entry(i, TREE_MODE, leaf)
    for missing in (ids[1], ids[-1], "20250101-000000-000000000000", "20991231-235959-ffffffffffff"):
        assert repo._child(day, missing) is None
        assert repo.lookup(root, f"experiments/{DAY}/{missing}") is None
    assert repo._child(day, "short") is None  # another name length: the plain reader answers
    assert repo.lookup(root, f"experiments/{DAY}/{present[3]}/experiment.yaml") is not None
    assert repo.read_path(root, f"experiments/{DAY}/{present[3]}/experiment.yaml") == b"name: x\n"
    assert repo.lookup(root, f"experiments/{DAY}/{present[3]}/experiment.yaml/deeper") is None
    assert repo.read_path(root, f"experiments/{DAY}") is None  # a folder is no file
    assert repo.lookup(None, "experiments") is None
    assert run_git(bare_repo, "rev-parse", f"{root}:experiments/{DAY}/{present[517]}").strip() == leaf


# ------------------------------------------------------------------ reading blobs


def test_iter_blob_streams_loose_and_packed(bare_repo: Path) -> None:
    repo = Repo(bare_repo)
    data = os.urandom(300_000) + b"tail"
    blob = repo.write_blob(data)
    loose = bare_repo / ".git" / "objects" / blob[:2] / blob[2:]
    assert loose.exists()
    pieces = list(repo.iter_blob(blob, chunk=4096))
    assert len(pieces) > 1 and b"".join(pieces) == data
    _commit(repo, repo.write_tree([Entry("big.bin", FILE_MODE, blob)]))
    run_git(bare_repo, "gc", "-q", "--prune=now")
    assert not loose.exists()
    assert list((bare_repo / ".git" / "objects" / "pack").glob("*.pack"))
    fresh = Repo(bare_repo)
    assert b"".join(fresh.iter_blob(blob, chunk=4096)) == data
    assert fresh.read_blob(blob) == data
    assert fresh.has_object(blob)
    fresh.close()


def test_iter_blob_refuses_a_tree(bare_repo: Path) -> None:
    from gitxp.errors import StoreError

    repo = Repo(bare_repo)
    tree = repo.write_tree([Entry("f", FILE_MODE, repo.write_blob(b"f"))])
    with pytest.raises(StoreError, match="is not a file"):
        list(repo.iter_blob(tree))
    with pytest.raises(StoreError, match="is a tree, not a file"):
        repo.read_blob(tree)


# ------------------------------------------------------------------ refs


def test_cas_refuses_a_stale_old_value(git_repo: Path) -> None:
    repo = Repo(git_repo)
    a = _commit(repo, repo.write_tree([Entry("a", FILE_MODE, repo.write_blob(b"a"))]))
    assert repo.write_tree([]) == EMPTY_TREE
    b = repo.write_commit(EMPTY_TREE, [a], "b", when=1_700_000_001)
    c = repo.write_commit(EMPTY_TREE, [a], "c", when=1_700_000_002)
    assert repo.cas_ref("main", a, b, message="to b")
    assert not repo.cas_ref("main", a, c)  # stale: the branch moved to b
    assert not repo.cas_ref("main", None, c)  # it exists already
    assert run_git(git_repo, "rev-parse", "main").strip() == b
    # git packs the ref: still read, still compared
    run_git(git_repo, "pack-refs", "--all")
    assert not (git_repo / ".git" / "refs" / "heads" / "main").exists()
    assert repo.ref("main") == b
    assert not repo.cas_ref("main", a, c)
    assert repo.cas_ref("main", b, c)
    assert run_git(git_repo, "rev-parse", "main").strip() == c
    # another writer holding the ref's lock: refused, the lock left alone
    lock = git_repo / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text("")
    assert not repo.cas_ref("main", c, b)
    assert lock.exists() and repo.ref("main") == c
    lock.unlink()
    reflog = run_git(git_repo, "reflog", "show", "--format=%H %gs", "main").splitlines()
    assert reflog[0] == f"{c} gitxp"
    assert reflog[1] == f"{b} to b"
    fsck(git_repo)


def test_commit_to_branch_retries_when_git_moves_the_branch(git_repo: Path) -> None:
    repo = Repo(git_repo)
    start = repo.ref("main")
    calls: list[str | None] = []

    def build(tip: str | None, tree: str | None) -> tuple[str, str]:
        calls.append(tip)
        if len(calls) == 1:  # plain git moves the branch between our read and our swap
            run_git(git_repo, "commit", "-q", "--allow-empty", "-m", "from git")
        return repo.update_tree(tree, {"gitxp.txt": Entry("gitxp.txt", FILE_MODE, repo.write_blob(b"x"))}), "from gitxp\n"

    commit = repo.commit_to_branch("main", build)
    assert commit is not None
    moved = calls[1]
    assert calls == [start, moved] and moved != start
    assert run_git(git_repo, "log", "--format=%s", "main").splitlines() == ["from gitxp", "from git", "initial"]
    assert run_git(git_repo, "rev-parse", "main^").strip() == moved
    assert repo.commit_to_branch("main", lambda tip, tree: None) is None
    assert repo.ref("main") == commit


def _add_files(path: Path, prefix: str, n: int) -> None:
    repo = Repo(path)
    for k in range(n):
        name = f"{prefix}-{k}.txt"
        blob = repo.write_blob(name.encode())
        repo.commit_to_branch("main", lambda tip, tree, name=name, blob=blob: (repo.update_tree(tree, {f"many/{name}": Entry(name, FILE_MODE, blob)}), f"add {name}\n"))
    repo.close()


def test_commit_to_branch_from_two_threads_both_land(git_repo: Path) -> None:
    threads = [threading.Thread(target=_add_files, args=(git_repo, p, 15)) for p in ("t1", "t2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = run_git(git_repo, "ls-tree", "--name-only", "main:many").split()
    assert sorted(names) == sorted(f"t{t}-{k}.txt" for t in (1, 2) for k in range(15))
    assert len(run_git(git_repo, "rev-list", "main").split()) == 31
    fsck(git_repo)


def test_commit_to_branch_from_two_processes_both_land(git_repo: Path) -> None:
    script = (
        "import sys; sys.path.insert(0, sys.argv[3]); from pathlib import Path; import test_plumbing as t; "
        "t._add_files(Path(sys.argv[1]), sys.argv[2], 12)"
    )
    here = str(Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(git_repo), p, here], stderr=subprocess.PIPE) for p in ("p1", "p2")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    names = run_git(git_repo, "ls-tree", "--name-only", "main:many").split()
    assert sorted(names) == sorted(f"p{t}-{k}.txt" for t in (1, 2) for k in range(12))
    assert len(run_git(git_repo, "rev-list", "main").split()) == 25
    fsck(git_repo)


# ------------------------------------------------------------------ quarantine


def _source_pack(tmp_path: Path) -> tuple[Path, str]:
    """A repository with one commit, and that commit's id."""
    src = committed_repo(tmp_path / "src", {"f.txt": "from the source\n"}, "source")
    return src, run_git(src, "rev-parse", "HEAD").strip()


_HOLD = """
import sys, time
kind, path = sys.argv[1], sys.argv[2]
if kind == "filelock":
    from filelock import FileLock
    lock = FileLock(path); lock.acquire()
else:
    from gitxp.plumbing.lockfile import locked
    lock = locked(path, 5); lock.__enter__()
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""


@pytest.mark.parametrize("holder", ["gitxp", "filelock"])
def test_a_held_lock_file_makes_another_process_wait_then_time_out(tmp_path: Path, holder: str) -> None:
    """One flock(2) per holder: gitxp's lock and filelock's (an older gitxp, Windows' way) exclude each other."""
    from gitxp.plumbing.lockfile import locked

    path = tmp_path / "store.lock"
    p = subprocess.Popen([sys.executable, "-c", _HOLD, holder, str(path), "1.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "held\n"
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="stayed locked"):
            with locked(path, 0.3):
                pass
        assert 0.25 < time.monotonic() - t0 < 1.4
        with locked(path, 10):  # the holder lets go as it exits after 1.5 s (at its exit handlers, or with its last fd)
            assert time.monotonic() - t0 >= 1.4
    finally:
        p.kill()
        p.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "store.lock"
    p = subprocess.Popen([sys.executable, "-c", _HOLD, "gitxp", str(path), "60"], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "held\n"
    p.kill()
    p.wait()
    from gitxp.plumbing.lockfile import locked

    with locked(path, 0.5):
        assert path.exists()


def test_config_is_read_from_every_file_git_reads_and_defaults_when_none_names_it(git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files that never name `gitxp` skip dulwich's parser; a file that does, or includes another, is parsed exactly."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    assert Repo(git_repo).config("gitxp", "branch", "dflt") == "dflt"
    run_git(git_repo, "config", "--global", "gitxp.branch", "from-home")
    assert Repo(git_repo).config("gitxp", "branch") == "from-home"
    (home / ".gitconfig").write_text(f"[include]\n\tpath = {tmp_path / 'extra'}\n")
    (tmp_path / "extra").write_text("[GitXP]\n\tbranch = included\n")
    assert Repo(git_repo).config("gitxp", "branch") == "included"
    (home / ".gitconfig").unlink()
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".config" / "git" / "config").write_text("[gitxp]\n\tbranch = from-xdg\n")
    assert Repo(git_repo).config("gitxp", "branch") == "from-xdg"
    run_git(git_repo, "config", "gitxp.branch", "from-repo")
    assert Repo(git_repo).config("gitxp", "branch") == "from-repo"  # the repository's file wins
    assert run_git(git_repo, "config", "gitxp.branch").strip() == "from-repo"


def test_quarantine_migrates_checked_objects(git_repo: Path, tmp_path: Path) -> None:
    src, commit = _source_pack(tmp_path)
    repo = Repo(git_repo)
    with Quarantine(repo) as q:
        assert q.path.parent == git_repo / ".git" / "objects" and q.path.name.startswith("tmp_objdir-gitxp-")
        objects = run_git(src, "rev-list", "--objects", "--all")
        subprocess.run(["git", "pack-objects", "-q", str(q.path / "pack" / "pack")], cwd=src, input=objects.encode(), capture_output=True, check=True)
        loose = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=git_repo, input=b"loose one\n", capture_output=True, env={**os.environ, **q.git_env()}, check=True).stdout.decode().strip()
        assert (q.path / loose[:2] / loose[2:]).exists()
        assert commit in q and loose in q
        head = run_git(git_repo, "rev-parse", "HEAD").strip()
        assert head not in q  # the repository's own objects are not the fetch's
        assert repo.read_commit(commit)["message"] == "source\n"  # readable through the quarantine while open
        assert subprocess.run(["git", "cat-file", "-e", commit], cwd=git_repo).returncode != 0
        q.migrate()
    assert not q.path.exists()
    assert run_git(git_repo, "cat-file", "-p", loose) == "loose one\n"
    assert run_git(git_repo, "cat-file", "-t", commit).strip() == "commit"
    assert run_git(git_repo, "show", f"{commit}:f.txt") == "from the source\n"
    fsck(git_repo)


def test_quarantine_closed_unmigrated_leaves_nothing(git_repo: Path, tmp_path: Path) -> None:
    objects = git_repo / ".git" / "objects"
    stale = objects / "tmp_objdir-gitxp-stale"
    stale.mkdir()
    old = time.time() - 2 * 86400
    os.utime(stale, (old, old))
    recent = objects / "tmp_objdir-gitxp-recent"
    recent.mkdir()
    repo = Repo(git_repo)
    q = Quarantine(repo)
    assert not stale.exists() and recent.exists()  # a day-old quarantine was left by a killed pull
    sha = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=git_repo, input=b"refused\n", capture_output=True, env={**os.environ, **q.git_env()}, check=True).stdout.decode().strip()
    assert sha in q
    q.close()
    assert not q.path.exists()
    assert subprocess.run(["git", "cat-file", "-e", sha], cwd=git_repo).returncode != 0
    assert not repo.has_object(sha)
    assert repo.dulwich.object_store.alternates == []


# ------------------------------------------------------------------ git fsck's name rules


def _fsck_verdict(path: Path, name: bytes, mode: bytes = b"100644") -> tuple[int, str]:
    """Exit status and output of ``git fsck --strict`` on a repository whose tip holds one entry ``name``."""
    repo = Repo(path)
    blob = repo.write_blob(b"content\n")
    tree = repo.write_object("tree", mode + b" " + name + b"\0" + bytes.fromhex(blob))
    _commit(repo, tree)
    r = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=path, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (b".git", "hasDotgit"),
        (b".GIT", "hasDotgit"),
        (b".Git. ", "hasDotgit"),
        (b"git~1", "hasDotgit"),
        (b".git::$INDEX_ALLOCATION", "hasDotgit"),
        (".g\u200cit".encode(), "hasDotgit"),
        (b"dir\\.git", "hasDotgit"),
        (b".", "hasDot"),
        (b"..", "hasDotdot"),
        (b".gitignore", None),
        (b"git~2", None),
        (b"gitx", None),
        (b".gi", None),
    ],
)
def test_git_name_problem_matches_git_fsck(bare_repo: Path, name: bytes, problem: str | None) -> None:
    assert git_name_problem(name) == problem
    assert git_name_problem(name.decode("utf-8")) == problem
    rc, out = _fsck_verdict(bare_repo, name)
    if problem is None:
        assert rc == 0 and "warning" not in out and "error" not in out, out
    else:
        assert rc != 0, out
        assert problem in out, out
        assert tree_object_problems(b"100644 " + name + b"\0" + b"\x11" * 20) == [(name.decode(), problem)]


def test_tree_and_commit_rules_match_git_fsck(bare_repo: Path) -> None:
    blob = bytes.fromhex(Repo(bare_repo).write_blob(b"x"))
    unsorted = b"100644 b\0" + blob + b"100644 a\0" + blob
    assert tree_object_problems(unsorted) == [("a", "treeNotSorted")]
    padded = b"0100644 a\0" + blob
    assert tree_object_problems(padded) == [("a", "zeroPaddedFilemode")]
    repo = Repo(bare_repo)
    _commit(repo, repo.write_object("tree", unsorted))
    r = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=bare_repo, capture_output=True, text=True)
    assert r.returncode != 0 and "treeNotSorted" in r.stdout + r.stderr

    good = repo.read_raw(repo.write_commit(EMPTY_TREE, [], "ok", when=1_700_000_000))[1]
    assert commit_object_problems(good) == []
    assert commit_object_problems(good.replace(b"author Test <", b"author Test<", 1)) == ["missingSpaceBeforeEmail"]
    assert commit_object_problems(b"parent " + b"0" * 40 + b"\n") == ["missingTree"]
    assert commit_object_problems(good.replace(b"\ncommitter ", b"\nauthor Test <t@e> 1 +0000\ncommitter ", 1)) == ["multipleAuthors"]
