"""gitxp push / pull through real bare remotes, real clones and the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import gitxp
from conftest import fsck, gitxp as run_gitxp, run_git, run_in_pty


def record(repo: Path, name: str, loss: float = 0.5) -> str:
    with gitxp.start(repo=str(repo), name=name, params={"lr": 0.1}, log_hardware=False, capture_env=False) as xp:
        xp.log_metric("loss", loss)
    return xp.id


def ids(repo: Path) -> set[str]:
    out = run_git(repo, "ls-tree", "-r", "--name-only", "gitxp")
    return {p.split("/")[2] for p in out.splitlines() if p.endswith("/experiment.yaml")}


def test_two_clones_push_merge_and_pull(two_clones: tuple[Path, Path, Path]) -> None:
    bare, a, b = two_clones
    first = record(a, "a1")
    assert "pushed" in run_gitxp(a, "push").stdout
    r = run_gitxp(b, "pull")  # a fresh clone joins: its store branch is created from the remote's
    assert "created" in r.stdout and ids(b) == {first}
    second, third = record(b, "b1"), record(a, "a2")
    run_gitxp(a, "push")
    r = run_gitxp(b, "push")  # rejected first, so it merges the remote's store and pushes again
    assert "1 new experiment" in r.stdout
    run_gitxp(a, "pull")
    everything = {first, second, third}
    assert ids(a) == ids(b) == ids(bare) == everything
    tip = run_git(bare, "rev-parse", "gitxp").strip()
    assert run_git(a, "rev-parse", "gitxp").strip() == run_git(b, "rev-parse", "gitxp").strip() == tip
    parents = run_git(bare, "log", "-1", "--format=%P", "gitxp").split()
    assert len(parents) == 2
    assert run_git(bare, "log", "-1", "--format=%s", "gitxp") == "gitxp: merge origin into gitxp (1 new experiment)\n"
    assert run_git(a, "rev-parse", "refs/remotes/origin/gitxp").strip() == tip
    assert "up-to-date" in run_gitxp(a, "pull").stdout
    with gitxp.open(str(b)) as store:
        assert {r.id for r in store.experiments()} == everything
    for repo in (a, b, bare):
        fsck(repo)


def test_pull_on_a_terminal_shows_gits_progress_but_not_its_private_ref(two_clones: tuple[Path, Path, Path]) -> None:
    bare, a, b = two_clones
    for k in range(3):
        record(a, f"a{k}")
    run_gitxp(a, "push")
    code, out = run_in_pty([sys.executable, "-m", "gitxp", "pull"], b, {**os.environ, "GITXP_ENGINE": "git"})
    assert code == 0, out
    assert "Counting objects: 100%" in out and "objects: 100%" in out.split("Total")[-1]  # git's own progress, both sides
    assert "refs/gitxp/" not in out and "From " not in out  # the quarantine's private ref is not shown, nor its header
    assert "created" in out and len(ids(b)) == 3


def test_concurrent_pushes_both_land(two_clones: tuple[Path, Path, Path]) -> None:
    bare, a, b = two_clones
    record(a, "base")
    run_gitxp(a, "push")
    run_gitxp(b, "pull")
    expected = set(ids(a))
    for _ in range(2):
        expected |= {record(a, "a"), record(b, "b")}
        procs = [subprocess.Popen([sys.executable, "-m", "gitxp", "push", "-q"], cwd=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (a, b)]
        results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
        assert all(rc == 0 for _, _, rc in results), results
    assert ids(bare) == expected
    fsck(bare)


def test_stores_with_different_ids_need_force(tmp_path: Path, git_repo: Path) -> None:
    mine = record(git_repo, "mine")
    other = tmp_path / "other"
    run_git(tmp_path, "init", "-q", "-b", "main", str(other))
    theirs = record(other, "theirs")
    before = run_git(git_repo, "rev-parse", "gitxp")
    r = run_gitxp(git_repo, "pull", str(other), check=False)
    assert r.returncode == 1 and "different store" in r.stderr and "--force" in r.stderr
    assert run_git(git_repo, "rev-parse", "gitxp") == before
    run_gitxp(git_repo, "pull", "--force", str(other))
    assert ids(git_repo) == {mine, theirs}
    doc = run_git(git_repo, "show", "gitxp:gitxp.yaml")
    assert doc == run_git(git_repo, "show", f"{before.strip()}:gitxp.yaml")  # our store id stays
    fsck(git_repo)


def test_dulwich_engine_round_trip(two_clones: tuple[Path, Path, Path]) -> None:
    bare, a, b = two_clones
    env = {"GITXP_ENGINE": "dulwich"}
    first = record(a, "a1")
    run_gitxp(a, "push", env=env)
    assert "created" in run_gitxp(b, "pull", env=env).stdout
    second, third = record(b, "b1"), record(a, "a2")
    run_gitxp(a, "push", env=env)
    assert "1 new experiment" in run_gitxp(b, "push", env=env).stdout
    run_gitxp(a, "pull", env=env)
    assert ids(a) == ids(b) == ids(bare) == {first, second, third}
    for repo in (a, b, bare):
        fsck(repo)


@pytest.mark.parametrize("engine", ["git", "dulwich"])
def test_a_repository_whose_path_holds_the_path_separator_pulls(two_clones: tuple[Path, Path, Path], tmp_path: Path, engine: str) -> None:
    """git splits GIT_ALTERNATE_OBJECT_DIRECTORIES at ':': the quarantine and the object reader quote such a path.

    (A pull under `/data/team:a` was refused with "git's object check failed: object directory /data/team does not exist".)
    """
    bare, a, _ = two_clones
    first = record(a, "a1")
    run_gitxp(a, "push")
    odd = tmp_path / 'team:a "b"'
    run_git(tmp_path, "clone", "-q", str(bare), str(odd))
    r = run_gitxp(odd, "pull", env={"GITXP_ENGINE": engine})
    assert "created" in r.stdout and ids(odd) == {first}
    fsck(odd)


def test_pull_from_a_remote_without_store(two_clones: tuple[Path, Path, Path]) -> None:
    _, a, _ = two_clones
    r = run_gitxp(a, "pull")
    assert r.returncode == 0 and "no experiment store" in r.stderr
    assert run_git(a, "rev-parse", "-q", "--verify", "gitxp", check=False) == ""


def test_metrics_of_one_experiment_changed_on_both_sides_are_unioned(two_clones: tuple[Path, Path, Path]) -> None:
    """The same experiment rewritten on both sides keeps every metric row."""
    from gitxp.store import layout
    from gitxp.store import parquet as metrics
    from gitxp.store import parquet_checks
    from gitxp.plumbing.repo import Repo
    from gitxp.remote.merge import _union_metrics

    rows_a = metrics.rows_to_table([("loss", 0, 1.0, 1), ("loss", 1, 0.5, 2)])
    rows_b = metrics.rows_to_table([("acc", 0, 0.1, 1), ("loss", 1, 0.5, 2), ("loss", 2, 0.2, 3)])
    merged = parquet_checks.from_parquet_bytes(_union_metrics(metrics.to_parquet_bytes(rows_a), metrics.to_parquet_bytes(rows_b)))
    assert [(r["name"], r["step"]) for r in merged.to_pylist()] == [("acc", 0), ("loss", 0), ("loss", 1), ("loss", 2)]
    assert merged.schema.field("name").type == metrics.schema().field("name").type


def test_same_experiment_changed_on_both_sides(two_clones: tuple[Path, Path, Path]) -> None:
    """Both sides amend one experiment: both amendments are kept, deletions stay deleted."""
    bare, a, b = two_clones
    keep, gone = record(a, "keep"), record(a, "gone")
    run_gitxp(a, "push")
    run_gitxp(b, "pull")
    run_gitxp(a, "tag", keep, "side=a")
    run_gitxp(a, "rm", gone)
    run_gitxp(b, "note", keep, "from b")
    new_b = record(b, "new")
    run_gitxp(a, "push")
    run_gitxp(b, "push")
    assert ids(bare) == {keep, new_b}
    meta = run_git(bare, "show", f"gitxp:experiments/{keep[:4]}-{keep[4:6]}-{keep[6:8]}/{keep}/experiment.yaml")
    assert "from b" in meta and "side: a" in meta  # merged field by field
    fsck(bare)


# ---------------------------------------------------------------- hostile stores


def _obj(repo: Path, data: bytes) -> str:
    return run_git(repo, "hash-object", "-w", "--stdin", input=data).strip()


def _tree(repo: Path, entries: dict[str, tuple[str, object]]) -> str:
    """entries: name -> ("100644"|"120000", bytes) or ("040000", nested dict)."""
    lines = []
    for name, (mode, content) in entries.items():
        if mode == "040000":
            lines.append(f"040000 tree {_tree(repo, content)}\t{name}")  # type: ignore[arg-type]
        else:
            lines.append(f"{mode} blob {_obj(repo, content)}\t{name}")  # type: ignore[arg-type]
    return run_git(repo, "mktree", input="\n".join(lines).encode() + b"\n").strip()


GOOD_ID = "20260101-120000-a1b2c3d4e5f6"


def _experiment(**files: tuple[str, object]) -> dict[str, tuple[str, object]]:
    base: dict[str, tuple[str, object]] = {
        "experiment.yaml": ("100644", f"id: {GOOD_ID}\nname: x\nstatus: completed\n".encode()),
        "params.yaml": ("100644", b"lr: 0.1\n"),
    }
    base.update(files)
    return base


def _metrics_named(name: str) -> bytes:
    """A metrics.parquet that is well-formed in every way but the metric's name (written by pyarrow itself)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from gitxp.store.parquet import schema

    table = pa.table({"name": pa.array([name]).dictionary_encode(), "step": [0], "value": [0.5],
                      "timestamp": pa.array([0], pa.timestamp("us", tz="UTC"))}).cast(schema())
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


HOSTILE = {
    "symlink": ({GOOD_ID: ("040000", _experiment(**{"experiment.yaml": ("120000", b"/etc/passwd")}))}, "symlink"),
    "bad-name": ({"not-an-id": ("040000", _experiment())}, "not a valid experiment id"),
    "escaping-artifact": ({GOOD_ID: ("040000", _experiment(**{"artifacts.yaml": ("100644", b"- path: ../../evil\n  size: 1\n")}))}, "escapes its folder"),
    "oversized-yaml": ({GOOD_ID: ("040000", _experiment(**{"params.yaml": ("100644", b"a: " + b"x" * (9 * 2**20) + b"\n")}))}, "byte limit"),
    "bad-parquet": ({GOOD_ID: ("040000", _experiment(**{"metrics.parquet": ("100644", b"PAR1 not really")}))}, "not valid Parquet"),
    "escape-in-metric-name": ({GOOD_ID: ("040000", _experiment(**{"metrics.parquet": ("100644", _metrics_named("lo\x1b[2Jss"))}))}, "metric name 'lo\\x1b[2Jss' has a control character"),
    "dot-git": ({GOOD_ID: ("040000", _experiment(**{".GIT": ("040000", {"config": ("100644", b"[core]\n")})}))}, "hasDotgit"),
}


def _push_crafted(tmp_path: Path, bare: Path, day_tree: dict[str, tuple[str, object]], store_doc: bytes) -> None:
    scratch = tmp_path / "scratch"
    run_git(tmp_path, "init", "-q", str(scratch))
    root = _tree(scratch, {"gitxp.yaml": ("100644", store_doc), "experiments": ("040000", {"2026-01-01": ("040000", day_tree)})})
    commit = run_git(scratch, "commit-tree", root, "-m", "gitxp: crafted").strip()
    run_git(scratch, "push", "-q", "-f", str(bare), f"{commit}:refs/heads/gitxp")


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_store_is_refused_and_nothing_changes(case: str, tmp_path: Path, git_repo: Path) -> None:
    record(git_repo, "mine")
    store_doc = run_git(git_repo, "show", "gitxp:gitxp.yaml").encode()
    bare = tmp_path / "evil.git"
    run_git(tmp_path, "init", "-q", "--bare", str(bare))
    day_tree, expected = HOSTILE[case]
    _push_crafted(tmp_path, bare, day_tree, store_doc)
    before = (run_git(git_repo, "rev-parse", "gitxp"), run_git(git_repo, "log", "--format=%H %P %s", "gitxp"))
    r = run_gitxp(git_repo, "pull", str(bare), check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("Error: refusing the store fetched from") and expected in r.stderr, r.stderr
    assert (run_git(git_repo, "rev-parse", "gitxp"), run_git(git_repo, "log", "--format=%H %P %s", "gitxp")) == before
    assert run_git(git_repo, "for-each-ref", "refs/gitxp/") == ""
    fsck(git_repo)


def test_dulwich_engine_checks_entry_names_itself(tmp_path: Path, git_repo: Path) -> None:
    """git's fetch.fsckObjects catches '.git' entries; without git, gitxp's own walk must."""
    record(git_repo, "mine")
    bare = tmp_path / "evil.git"
    run_git(tmp_path, "init", "-q", "--bare", str(bare))
    _push_crafted(tmp_path, bare, HOSTILE["dot-git"][0], run_git(git_repo, "show", "gitxp:gitxp.yaml").encode())
    before = run_git(git_repo, "rev-parse", "gitxp")
    r = run_gitxp(git_repo, "pull", str(bare), check=False, env={"GITXP_ENGINE": "dulwich"})
    assert r.returncode == 1 and "invalid entry" in r.stderr and "hasDotgit" in r.stderr, r.stderr
    assert run_git(git_repo, "rev-parse", "gitxp") == before


def test_newer_format_is_refused(tmp_path: Path, git_repo: Path) -> None:
    record(git_repo, "mine")
    bare = tmp_path / "future.git"
    run_git(tmp_path, "init", "-q", "--bare", str(bare))
    _push_crafted(tmp_path, bare, {GOOD_ID: ("040000", _experiment())}, b"format: 99\nstore_id: abc\nkeys: []\n")
    before = run_git(git_repo, "rev-parse", "gitxp")
    for extra in ((), ("--force",)):
        r = run_gitxp(git_repo, "pull", *extra, str(bare), check=False)
        assert r.returncode == 1 and "format 99" in r.stderr and "upgrade gitxp" in r.stderr
    assert run_git(git_repo, "rev-parse", "gitxp") == before


def test_fresh_clone_refuses_hostile_store(tmp_path: Path, git_repo: Path) -> None:
    """Without a local store the branch is only created after validation."""
    bare = tmp_path / "evil.git"
    run_git(tmp_path, "init", "-q", "--bare", str(bare))
    _push_crafted(tmp_path, bare, HOSTILE["symlink"][0], b"format: 1\nstore_id: abc\nkeys: []\n")
    r = run_gitxp(git_repo, "pull", str(bare), check=False)
    assert r.returncode == 1 and "symlink" in r.stderr
    assert run_git(git_repo, "rev-parse", "-q", "--verify", "gitxp", check=False) == ""


def test_push_without_store_says_what_to_do(two_clones: tuple[Path, Path, Path]) -> None:
    _, a, _ = two_clones
    r = run_gitxp(a, "push", check=False)
    assert r.returncode == 1 and "no experiment store to push" in r.stderr


@pytest.mark.parametrize("cmd", ["push", "pull"])
def test_help_has_example(cmd: str, git_repo: Path) -> None:
    out = run_gitxp(git_repo, cmd, "--help").stdout
    assert "Example:" in out and f"gitxp {cmd}" in out
    assert os.path.exists(git_repo)
