"""gitxp/store/validate.py: check_tree on crafted store trees in a real repository.

Each tree is built object by object (what a hostile or foreign writer could
push); check_tree must return the store's ``gitxp.yaml`` for a good one and
name every problem of a bad one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import run_git

from gitxp.errors import FormatTooNewError, UnsafeDataError
from gitxp.plumbing.fsck import MAX_PROBLEMS
from gitxp.plumbing.repo import FILE_MODE, TREE_MODE, Entry, Repo
from gitxp.store import layout
from gitxp.store.validate import Checker, check_tree, known_trees

STORE_ID = "6f1c2a7e-0000-4000-8000-000000000001"
XP = "20260301-101500-0123456789ab"
XP_DIR = f"experiments/2026-03-01/{XP}"
GOOD_META = f"id: {XP}\nname: baseline\nstatus: completed\ncreated: '2026-03-01T10:15:00.000+00:00'\n".encode()


@pytest.fixture
def repo(git_repo: Path) -> Repo:
    return Repo(git_repo)


def _tree(repo: Repo, files: dict[str, bytes | Entry], *, store_file: bytes | None = None) -> str:
    """A store tree: ``gitxp.yaml`` (unless ``store_file`` is b"") plus ``files`` (path: content or entry)."""
    doc = layout.dump_yaml(layout.store_document(STORE_ID)).encode() if store_file is None else store_file
    changes: dict[str, Entry | None] = {}
    if doc:
        changes[layout.STORE_FILE] = Entry(layout.STORE_FILE, FILE_MODE, repo.write_blob(doc))
    for path, content in files.items():
        name = path.rsplit("/", 1)[-1]
        changes[path] = content if isinstance(content, Entry) else Entry(name, FILE_MODE, repo.write_blob(content))
    return repo.update_tree(None, changes)


def _problems(repo: Repo, tree: str, **kw: Any) -> list[str]:
    with pytest.raises(UnsafeDataError) as info:
        check_tree(repo, tree, **kw)
    err: Any = info.value
    assert err.candidates == err.problems
    return list(err.problems)


def test_a_good_store_returns_its_document(repo: Repo) -> None:
    tree = _tree(repo, {f"{XP_DIR}/{layout.EXPERIMENT_FILE}": GOOD_META, f"{XP_DIR}/{layout.PARAMS_FILE}": b"lr: 0.1\n", "README.md": b"hi\n"})
    assert check_tree(repo, tree) == {"format": 1, "store_id": STORE_ID, "keys": []}
    checker = Checker(repo)
    checker.check_root(tree)
    assert checker.problems == [] and checker.experiments_checked == 1


def test_missing_store_file(repo: Repo) -> None:
    tree = _tree(repo, {f"{XP_DIR}/{layout.EXPERIMENT_FILE}": GOOD_META}, store_file=b"")
    with pytest.raises(UnsafeDataError) as info:
        check_tree(repo, tree, source="origin")
    assert info.value.problems == ["gitxp.yaml: missing or not a regular file"]  # type: ignore[attr-defined]
    assert info.value.message == "refusing the store fetched from origin: 1 problem(s), first: gitxp.yaml: missing or not a regular file"
    folder = repo.write_tree([Entry("x", FILE_MODE, repo.write_blob(b"x"))])
    as_folder = repo.update_tree(tree, {layout.STORE_FILE: Entry(layout.STORE_FILE, TREE_MODE, folder)})
    assert _problems(repo, as_folder) == ["gitxp.yaml: missing or not a regular file"]


def test_store_file_contents(repo: Repo) -> None:
    assert _problems(repo, _tree(repo, {}, store_file=b"- a list\n")) == ["gitxp.yaml on the store branch is malformed"]
    assert _problems(repo, _tree(repo, {}, store_file=b"format: one\nstore_id: x\n")) == ["gitxp.yaml has a non-integer format 'one'"]
    assert _problems(repo, _tree(repo, {}, store_file=b"format: 1\n")) == ["gitxp.yaml has no store_id"]
    assert _problems(repo, _tree(repo, {}, store_file=b"format: 1\nstore_id: [\n")) == ["gitxp.yaml is not valid YAML (line 3)"]
    with pytest.raises(FormatTooNewError) as info:
        check_tree(repo, _tree(repo, {}, store_file=b"format: 2\nstore_id: x\n"))
    assert (info.value.found, info.value.supported) == (2, 1)


def test_a_file_where_the_experiments_folder_belongs(repo: Repo) -> None:
    tree = _tree(repo, {"experiments": b"not a folder\n"})
    assert _problems(repo, tree) == ["experiments: not a folder"]


def test_bad_day_and_experiment_names(repo: Repo) -> None:
    meta = {f"experiments/{day}/{XP}/{layout.EXPERIMENT_FILE}": GOOD_META for day in ("2026-13-01", "20260301", "2026-02-30")}
    tree = _tree(repo, {**meta, "experiments/2026-03-02": b"a file\n", f"experiments/2026-03-03/{XP}/{layout.EXPERIMENT_FILE}": GOOD_META, "experiments/2026-03-01/not-an-id/x": b"x"})
    assert _problems(repo, tree) == [  # in git's order of the days
        "experiments/2026-02-30: day folder is not named YYYY-MM-DD",
        "experiments/2026-03-01/not-an-id: not a valid experiment id for day 2026-03-01",
        "experiments/2026-03-02: not a folder",
        f"experiments/2026-03-03/{XP}: not a valid experiment id for day 2026-03-03",
        "experiments/2026-13-01: day folder is not named YYYY-MM-DD",
        "experiments/20260301: day folder is not named YYYY-MM-DD",
    ]


def test_bad_yaml_types(repo: Repo) -> None:
    tree = _tree(repo, {
        f"{XP_DIR}/{layout.EXPERIMENT_FILE}": b"id: 20260301-000000-000000000000\nname: x\n",
        f"{XP_DIR}/{layout.PARAMS_FILE}": b"- 1\n- 2\n",
        f"{XP_DIR}/{layout.ARTIFACTS_FILE}": b"a: mapping\n",
    })
    assert _problems(repo, tree) == [
        f"{XP_DIR}/{layout.ARTIFACTS_FILE}: not a list of artifacts",
        f"{XP_DIR}/{layout.EXPERIMENT_FILE}: id '20260301-000000-000000000000' does not match its folder",
        f"{XP_DIR}/{layout.PARAMS_FILE}: not a mapping",
    ]
    fields = _tree(repo, {f"{XP_DIR}/{layout.EXPERIMENT_FILE}": b"name: [a, b]\nstatus: finished\nexit_code: 1.5\n"})
    assert _problems(repo, fields) == [
        f"{XP_DIR}/{layout.EXPERIMENT_FILE}: field 'name' must be text, not list \"['a', 'b']\"",
        f"{XP_DIR}/{layout.EXPERIMENT_FILE}: field 'status' must be one of running, completed, failed, interrupted, crashed, not str 'finished'",
        f"{XP_DIR}/{layout.EXPERIMENT_FILE}: field 'exit_code' must be a number, not float '1.5'",
    ]
    not_mapping = _tree(repo, {f"{XP_DIR}/{layout.EXPERIMENT_FILE}": b"just text\n"})
    assert _problems(repo, not_mapping) == [f"{XP_DIR}/{layout.EXPERIMENT_FILE}: not a mapping"]
    broken = _tree(repo, {f"{XP_DIR}/{layout.EXPERIMENT_FILE}": b"name: [unclosed\n"})
    assert _problems(repo, broken) == [f"{XP_DIR}/{layout.EXPERIMENT_FILE} is not valid YAML (line 2)"]
    empty_params = _tree(repo, {f"{XP_DIR}/{layout.EXPERIMENT_FILE}": GOOD_META, f"{XP_DIR}/{layout.PARAMS_FILE}": b""})
    assert check_tree(repo, empty_params)["store_id"] == STORE_ID  # no parameters at all is fine


def test_oversize_yaml(repo: Repo) -> None:
    big = b"x: '" + b"a" * layout.MAX_YAML_BYTES + b"'\n"
    tree = _tree(repo, {f"{XP_DIR}/{layout.EXPERIMENT_FILE}": GOOD_META, f"{XP_DIR}/{layout.PARAMS_FILE}": big})
    assert _problems(repo, tree) == [f"{XP_DIR}/{layout.PARAMS_FILE}: {len(big)} bytes, over the {layout.MAX_YAML_BYTES} byte limit"]
    deep = b"a: " + b"[" * (layout.MAX_YAML_DEPTH + 1) + b"]" * (layout.MAX_YAML_DEPTH + 1) + b"\n"
    tree = _tree(repo, {f"{XP_DIR}/{layout.EXPERIMENT_FILE}": GOOD_META, f"{XP_DIR}/{layout.PARAMS_FILE}": deep})
    assert _problems(repo, tree) == [f"{XP_DIR}/{layout.PARAMS_FILE}: nesting deeper than {layout.MAX_YAML_DEPTH} levels"]


def test_modes_and_names(repo: Repo) -> None:
    link = Entry("link", 0o120000, repo.write_blob(b"/etc/passwd"))
    sub = Entry("sub", 0o160000, run_git(Path(repo.root or "."), "rev-parse", "HEAD").strip())
    code = repo.write_tree([link])
    tree = _tree(repo, {
        f"{XP_DIR}/{layout.EXPERIMENT_FILE}": GOOD_META,
        f"{XP_DIR}/link": link,
        f"{XP_DIR}/{layout.CODE_DIR}": Entry(layout.CODE_DIR, TREE_MODE, code),  # the code snapshot: git's rules only
        "sub": sub,
        ".GIT/x": b"x",
    })
    assert _problems(repo, tree) == [
        "/'.GIT': invalid entry name (hasDotgit)",
        f"{XP_DIR}/link: a symlink (only regular files are allowed)",
        "sub: a submodule link (only regular files are allowed)",
    ]


def test_known_trees_are_not_walked_again(repo: Repo) -> None:
    good = _tree(repo, {f"{XP_DIR}/{layout.EXPERIMENT_FILE}": GOOD_META})
    bad = repo.update_tree(good, {f"{XP_DIR}/{layout.PARAMS_FILE}": Entry(layout.PARAMS_FILE, FILE_MODE, repo.write_blob(b"- not a mapping\n"))})
    assert _problems(repo, bad) == [f"{XP_DIR}/{layout.PARAMS_FILE}: not a mapping"]
    xp = repo.lookup(bad, XP_DIR)
    assert xp is not None
    assert check_tree(repo, bad, known={xp.sha})["store_id"] == STORE_ID
    # what the local store already holds (from an older tip) counts as known
    known = known_trees(repo, bad)
    day = repo.lookup(bad, "experiments/2026-03-01")
    exps = repo.lookup(bad, "experiments")
    assert day is not None and exps is not None
    assert known == {exps.sha, day.sha, xp.sha}


def test_the_walk_stops_after_max_problems(repo: Repo) -> None:
    days = {f"experiments/2026-02-{d:02d}x/{XP}/{layout.EXPERIMENT_FILE}": GOOD_META for d in range(1, 16)}
    with pytest.raises(UnsafeDataError) as info:
        check_tree(repo, _tree(repo, days))
    problems = info.value.problems  # type: ignore[attr-defined]
    assert len(problems) == MAX_PROBLEMS
    assert problems[0] == "experiments/2026-02-01x: day folder is not named YYYY-MM-DD"
    assert info.value.message.startswith(f"refusing the store fetched from the remote: {MAX_PROBLEMS}+ problem(s), first: ")


def test_read_ahead_in_groups_finds_the_same_problems_in_the_same_order(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Experiments are read ahead in groups (git's batch reader or dulwich): neither the engine nor the
    group size changes what is found, or its order; a missing object is still named with its path."""
    from gitxp.store import validate

    files: dict[str, bytes | Entry] = {}
    for i in range(7):
        xp_id = f"20260301-1015{i:02d}-0123456789ab"
        where = f"experiments/2026-03-01/{xp_id}"
        files[f"{where}/{layout.EXPERIMENT_FILE}"] = GOOD_META.replace(XP.encode(), xp_id.encode()) if i % 3 else b"name: [a\n"
        files[f"{where}/{layout.PARAMS_FILE}"] = b"- 1\n" if i == 4 else f"lr: {i}\n".encode()
    files[f"experiments/2026-03-02/{XP.replace('20260301', '20260302')}/{layout.PARAMS_FILE}"] = Entry(layout.PARAMS_FILE, FILE_MODE, "1" * 40)
    tree = _tree(repo, files)
    expected = _problems(repo, tree, engine="dulwich")
    assert len(expected) == 5 and expected[-1].startswith("experiments/2026-03-02/") and "unreadable file" in expected[-1]
    for group, budget in ((1, 1 << 20), (2, 1 << 20), (3, 100), (512, 0), (512, 64 << 20)):
        monkeypatch.setattr(validate, "_READ_AHEAD", group)
        monkeypatch.setattr(validate, "_AHEAD_BYTES", budget)  # past it, files are read when checked
        for engine in ("git", "dulwich"):
            assert _problems(repo, tree, engine=engine) == expected, (group, budget, engine)


_FORKED_CHECK = """
import json, sys
from gitxp.plumbing.repo import Repo
from gitxp.store import validate
from gitxp.errors import UnsafeDataError
validate._FORK_FROM = 2
checker = validate.Checker(Repo(sys.argv[1]), engine=sys.argv[3])
with checker:
    checker.check_root(sys.argv[2])
print(json.dumps({"problems": checker.problems, "checked": checker.experiments_checked, "forked": len(checker._theirs)}))
"""


@pytest.mark.parametrize("engine", ["git", "dulwich"])
def test_a_forked_child_checks_half_and_the_findings_read_as_from_one_process(repo: Repo, engine: str) -> None:
    """A big walk checks half of its experiments in a forked child (a real process, here from 2 on): the
    same problems in the same order, the same count, and its parsed documents serve the listing check."""
    import json
    import subprocess
    import sys

    from gitxp.store import listing

    files: dict[str, bytes | Entry] = {}
    rows = []
    for i in range(8):
        xp_id = f"20260301-1015{i:02d}-0123456789ab"
        where = f"experiments/2026-03-01/{xp_id}"
        meta = GOOD_META.replace(XP.encode(), xp_id.encode())
        files[f"{where}/{layout.EXPERIMENT_FILE}"] = meta if i not in (1, 6) else b"name: [a\n"
        files[f"{where}/{layout.PARAMS_FILE}"] = b"- 1\n" if i == 5 else f"lr: {i}\n".encode()
        rows.append(xp_id)
    tree = _tree(repo, files)
    # a listing row for each good experiment, true to its files, except experiment 7's, which lies about its name
    for i, xp_id in enumerate(rows):
        xp = repo.lookup(tree, f"experiments/2026-03-01/{xp_id}")
        assert xp is not None
        meta = layout.load_yaml(GOOD_META.replace(XP.encode(), xp_id.encode()))
        if i in (1, 5, 6):
            continue
        if i == 7:
            meta["name"] = "not what the files say"
        tree = repo.update_tree(tree, listing.changes_for(repo, tree, xp_id, xp.sha, meta, {"lr": i}))
    expected = Checker(repo, engine=engine)
    with expected:
        expected.check_root(tree)
    out = subprocess.run([sys.executable, "-c", _FORKED_CHECK, str(repo.root), tree, engine], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["forked"] == 4  # the second half went to the child
    assert got["problems"] == expected.problems and len(expected.problems) == 4
    assert expected.problems[-1] == f"listing/2026-03-01/pending.jsonl: the listing row of {rows[7]} disagrees with its experiment.yaml/params.yaml"
    assert got["checked"] == expected.experiments_checked == 8


def test_a_big_walk_says_how_many_experiments_it_checks(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """`gitxp pull` on a terminal says why it is quiet after git's progress (from 1,000 experiments; 3 here)."""
    from gitxp.store import validate

    files: dict[str, bytes | Entry] = {}
    for i in range(3):
        xp_id = f"20260301-1015{i:02d}-0123456789ab"
        files[f"experiments/2026-03-01/{xp_id}/{layout.EXPERIMENT_FILE}"] = GOOD_META.replace(XP.encode(), xp_id.encode())
    tree = _tree(repo, files)
    heard: list[int] = []
    check_tree(repo, tree, progress=heard.append)
    assert heard == []  # a small pull says nothing
    monkeypatch.setattr(validate, "_SAY_FROM", 3)
    check_tree(repo, tree, progress=heard.append)
    assert heard == [3]
    xp = repo.lookup(tree, "experiments/2026-03-01/20260301-101500-0123456789ab")
    assert xp is not None
    check_tree(repo, tree, known={xp.sha}, progress=heard.append)  # what the local store holds is not counted
    assert heard == [3]


def test_a_file_entry_naming_a_folder_read_ahead_is_still_not_a_file(repo: Repo) -> None:
    """Objects read ahead are kept by kind: a hostile params.yaml naming another experiment's folder is refused as such."""
    other = "20260301-101501-0123456789ab"
    tree = _tree(repo, {f"{XP_DIR}/{layout.EXPERIMENT_FILE}": GOOD_META,
                        f"experiments/2026-03-01/{other}/{layout.EXPERIMENT_FILE}": GOOD_META.replace(XP.encode(), other.encode())})
    folder = repo.lookup(tree, f"experiments/2026-03-01/{other}")
    assert folder is not None
    tree = repo.update_tree(tree, {f"{XP_DIR}/{layout.PARAMS_FILE}": Entry(layout.PARAMS_FILE, FILE_MODE, folder.sha)})
    problems = _problems(repo, tree)
    assert len(problems) == 1 and problems[0].startswith(f"{XP_DIR}/{layout.PARAMS_FILE}: unreadable file (object {folder.sha[:12]} is a tree, not a file")
