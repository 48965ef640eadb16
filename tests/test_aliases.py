"""gitxp alias: exclusive names, `alias/NAME` refs, merged across clones through a bare remote."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

import gitxp
from conftest import fsck, gitxp as run_gitxp, run_git


def record(repo: Path, name: str) -> str:
    with gitxp.start(repo=str(repo), name=name, log_hardware=False, capture_env=False, capture_code=False) as xp:
        xp.log_metric("loss", 0.5)
    return xp.id


def stored_aliases(repo: Path) -> dict:
    return yaml.safe_load(run_git(repo, "show", "gitxp:aliases.yaml"))


def test_set_moves_show_list_rm(git_repo: Path) -> None:
    first, second = record(git_repo, "one"), record(git_repo, "two")
    r = run_gitxp(git_repo, "alias", "set", "production", first[-12:])
    assert r.stdout.strip() == f"alias/production -> {first} one"
    assert f"experiment {first} " in run_gitxp(git_repo, "show", "alias/production").stdout
    r = run_gitxp(git_repo, "alias", "set", "production", "@")  # moves: one alias, one experiment
    assert f"(was {first})" in r.stdout
    assert f"experiment {second} " in run_gitxp(git_repo, "show", "alias/production").stdout
    with gitxp.open(str(git_repo)) as store:
        assert store.get("alias/production").id == second
        assert store.aliases() == {"production": second}
    assert run_gitxp(git_repo, "alias", "list").stdout.split("\t")[:3] == ["production", second, "two"]
    run_gitxp(git_repo, "alias", "set", "base", "alias/production")
    assert run_gitxp(git_repo, "diff", "alias/base", "alias/production").returncode == 0
    assert "removed alias/production" in run_gitxp(git_repo, "alias", "rm", "production").stdout
    entry = stored_aliases(git_repo)["production"]
    assert entry["id"] is None and entry["set_at"] and entry["set_by"]  # a tombstone, so the removal merges
    r = run_gitxp(git_repo, "show", "alias/production", check=False)
    assert r.returncode == 2 and "unknown experiment 'alias/production'" in r.stderr and "gitxp alias list" in r.stderr
    assert run_gitxp(git_repo, "alias", "list").stdout.splitlines()[0].startswith("base\t")
    fsck(git_repo)


@pytest.mark.parametrize("bad", ["a/b", "tab\there", "x" * 101, " padded"])
def test_bad_alias_names_are_refused(git_repo: Path, bad: str) -> None:
    record(git_repo, "one")
    r = run_gitxp(git_repo, "alias", "set", bad, "@", check=False)
    assert r.returncode == 2 and r.stderr.startswith("Error: alias name") and "Traceback" not in r.stderr
    assert run_git(git_repo, "ls-tree", "--name-only", "gitxp").split() == ["experiments", "gitxp.yaml", "listing"]  # no aliases.yaml


def test_rm_of_an_unknown_alias(git_repo: Path) -> None:
    record(git_repo, "one")
    r = run_gitxp(git_repo, "alias", "rm", "nope", check=False)
    assert r.returncode == 2 and "no alias 'nope'" in r.stderr


def test_aliases_move_and_merge_across_clones(two_clones: tuple[Path, Path, Path]) -> None:
    bare, a, b = two_clones
    x, y = record(a, "x"), record(a, "y")
    run_gitxp(a, "alias", "set", "production", x)
    run_gitxp(a, "alias", "set", "old", x)
    run_gitxp(a, "push")
    run_gitxp(b, "pull")
    assert f"experiment {x} " in run_gitxp(b, "show", "alias/production").stdout
    z = record(b, "z")
    # both clones change aliases; B's changes come later, except `staging`, set last on A
    run_gitxp(a, "alias", "set", "production", y)
    run_gitxp(a, "alias", "set", "candidate", y)
    time.sleep(0.01)
    run_gitxp(b, "alias", "set", "production", z)  # later: wins over A's move
    run_gitxp(b, "alias", "rm", "old")  # a removal merges too
    time.sleep(0.01)
    run_gitxp(a, "alias", "set", "staging", x)
    run_gitxp(a, "push")
    run_gitxp(b, "push")  # rejected, merges the remote's store, pushes
    run_gitxp(a, "pull")
    for repo in (a, b):
        with gitxp.open(str(repo)) as store:
            assert store.aliases() == {"candidate": y, "production": z, "staging": x}
    assert stored_aliases(a) == stored_aliases(b) == stored_aliases(bare)
    assert f"experiment {z} " in run_gitxp(a, "show", "alias/production").stdout
    fsck(bare)


def test_a_future_set_time_never_wins_a_merge(two_clones: tuple[Path, Path, Path]) -> None:
    """A forged (or badly skewed) set_at from next year must not pin an alias forever."""
    from gitxp.store import aliases

    bare, a, b = two_clones
    x, y = record(a, "x"), record(a, "y")
    run_gitxp(a, "alias", "set", "production", x)
    run_gitxp(a, "push")
    run_gitxp(b, "pull")
    future = {"production": {"id": x, "set_at": "2099-01-01T00:00:00.000Z", "set_by": "mallory"}}
    now = {"production": {"id": y, "set_at": "2026-01-01T00:00:00.000Z", "set_by": "ana"}}
    assert aliases.merge(future, now)["production"]["id"] == y
    assert aliases.merge(now, future)["production"]["id"] == y


def test_pull_refuses_bad_alias_names(two_clones: tuple[Path, Path, Path], tmp_path: Path) -> None:
    bare, a, b = two_clones
    x = record(a, "x")
    run_gitxp(a, "push")
    # a hostile clone writes aliases.yaml by hand with a control character in a name
    evil = tmp_path / "evil"
    run_git(tmp_path, "clone", "-q", str(bare), str(evil))
    run_git(evil, "fetch", "-q", "origin", "gitxp:gitxp")
    run_git(evil, "checkout", "-q", "gitxp")
    (evil / "aliases.yaml").write_text(yaml.safe_dump({"pro\x1bduction": {"id": x, "set_at": "2026-01-01T00:00:00.000Z", "set_by": "m"}}))
    run_git(evil, "add", "aliases.yaml")
    run_git(evil, "commit", "-q", "-m", "evil alias")
    run_git(evil, "push", "-q", "origin", "gitxp")
    r = run_gitxp(b, "pull", check=False)
    assert r.returncode != 0 and "alias name" in r.stderr and "U+001B" in r.stderr
    assert run_git(b, "rev-parse", "--verify", "-q", "gitxp", check=False).strip() == ""
