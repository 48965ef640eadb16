"""Performance work must not change behaviour: busy days, listings, metrics at scale (issue 12)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from conftest import fsck, run_git

from gitxp import layout
from gitxp.plumbing import TREE_MODE, Entry, Repo
from gitxp.store import Store


def _ids_of_one_day(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    day = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    return [f"{day + dt.timedelta(seconds=rng.randrange(86400)):%Y%m%d-%H%M%S}-{rng.getrandbits(48):012x}" for _ in range(n)]


def test_busy_day_tree_is_spliced_in_git_order(git_repo: Path) -> None:
    """Commits into a day folder of fixed-size records (appends, inserts in the middle, replace, remove) give git's tree."""
    store = Store(Repo(git_repo))
    ids = _ids_of_one_day(60)
    for i, exp_id in enumerate(ids):  # random order: most land in the middle, not at the end
        store.commit_experiment(exp_id, {layout.EXPERIMENT_FILE: f"id: {exp_id}\nname: n{i}\nstatus: completed\n".encode()}, f"gitxp: {exp_id} n{i} completed\n")
    store.commit_experiment(ids[5], {layout.PARAMS_FILE: b"lr: 0.1\n"}, f"gitxp: {ids[5]} n5 completed\n")  # an existing entry replaced
    store.amend(ids[7], remove=True)
    day = f"{layout.EXPERIMENTS_DIR}/{layout.id_day(ids[0])}"
    listed = run_git(git_repo, "ls-tree", "--name-only", f"gitxp:{day}").split()
    assert listed == sorted(set(ids) - {ids[7]})
    assert run_git(git_repo, "show", f"gitxp:{day}/{ids[5]}/params.yaml").strip() == "lr: 0.1"
    # the spliced tree hashes exactly as git builds it from its own listing
    raw = run_git(git_repo, "ls-tree", f"gitxp:{day}")
    assert run_git(git_repo, "mktree", input=raw.encode()).strip() == run_git(git_repo, "rev-parse", f"gitxp:{day}").strip()
    fsck(git_repo)
    assert {r.id for r in Store(Repo(git_repo)).experiments()} == set(ids) - {ids[7]}


def test_day_tree_with_a_foreign_entry_takes_the_slow_path(git_repo: Path) -> None:
    """A day folder holding anything but same-length subtrees (a file, another name length) is rewritten by the general path, still in git's order."""
    repo = Repo(git_repo)
    store = Store(repo)
    ids = _ids_of_one_day(5, seed=1)
    store.commit_experiment(ids[0], {layout.EXPERIMENT_FILE: b"name: a\n"}, f"gitxp: {ids[0]} a completed\n")
    day = f"{layout.EXPERIMENTS_DIR}/{layout.id_day(ids[0])}"
    extra = repo.write_tree([Entry("x", 0o100644, repo.write_blob(b"x"))])

    def add(tip: str | None, tree: str | None) -> tuple[str, str]:
        return repo.update_tree(tree, {f"{day}/zz": Entry("zz", TREE_MODE, extra), f"{day}/README": Entry("README", 0o100644, repo.write_blob(b"hi"))}), "gitxp: foreign\n"

    repo.commit_to_branch(store.branch, add)
    for exp_id in ids[1:]:
        store.commit_experiment(exp_id, {layout.EXPERIMENT_FILE: b"name: b\n"}, f"gitxp: {exp_id} b completed\n")
    listed = run_git(git_repo, "ls-tree", "--name-only", f"gitxp:{day}").split()
    assert set(listed) == set(ids) | {"zz", "README"}
    raw = run_git(git_repo, "ls-tree", f"gitxp:{day}")
    assert run_git(git_repo, "mktree", input=raw.encode()).strip() == run_git(git_repo, "rev-parse", f"gitxp:{day}").strip()
    fsck(git_repo)
