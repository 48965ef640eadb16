"""Inputs: --input / xp.log_input record size, files and digest; the digest cache; diff and --where on them."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import yaml

import gitxp
from conftest import gitxp as run_gitxp, run_git


def stored(repo: Path, exp_id: str) -> dict:
    return yaml.safe_load(run_git(repo, "show", f"gitxp:experiments/{exp_id[:4]}-{exp_id[4:6]}-{exp_id[6:8]}/{exp_id}/experiment.yaml"))


def last_id(repo: Path) -> str:
    return run_gitxp(repo, "log", "--all", "--format", "{id}", "-n", "1").stdout.strip()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_a_folder_of_files_edit_one_see_the_diff(git_repo: Path) -> None:
    data = git_repo / "data" / "images"  # data/ is git-ignored in the fixture: datasets usually are
    (data / "sub").mkdir(parents=True)
    files = {"a.txt": b"alpha\n", "b.txt": b"beta\n", "sub/c.bin": b"\0\1\2"}
    for rel, content in files.items():
        (data / rel).write_bytes(content)
    (git_repo / "data" / "train.csv").write_text("x,y\n1,2\n")
    run_gitxp(git_repo, "start", "--input", "data/images", "--input", "data/train.csv", "--", sys.executable, "-c", "pass")
    first = last_id(git_repo)
    inputs = {i["name"]: i for i in stored(git_repo, first)["inputs"]}
    folder_digest = sha("".join(sorted(f"{rel}\0{sha(c)}\n" for rel, c in files.items())).encode())
    assert inputs["images"] == {"name": "images", "path": "data/images", "size": 14, "files": 3, "digest": folder_digest}
    assert inputs["train"] == {"name": "train", "path": "data/train.csv", "size": 8, "files": 1, "digest": sha(b"x,y\n1,2\n")}
    shown = run_gitxp(git_repo, "show", first).stdout
    assert f"Input:    images = data/images (14 B, 3 files, {folder_digest[7:19]})" in shown

    (data / "b.txt").write_bytes(b"beta, edited\n")
    run_gitxp(git_repo, "start", "--input", "data/images", "--input", "data/train.csv", "--", sys.executable, "-c", "pass")
    second = last_id(git_repo)
    new = {i["name"]: i for i in stored(git_repo, second)["inputs"]}
    assert new["images"]["digest"] != folder_digest and new["images"]["size"] == 22 and new["train"] == inputs["train"]
    out = run_gitxp(git_repo, "diff", first, second).stdout
    section = out[out.index("Inputs:"):].splitlines()
    assert section[1] == f"  ~ images: {folder_digest[7:19]} (14 B, 3 files) -> {new['images']['digest'][7:19]} (22 B, 3 files)"
    assert section[2] == "  (1 unchanged)"

    where = f"inputs.images.digest == '{folder_digest}'"
    assert run_gitxp(git_repo, "log", "--all", "--where", where, "--format", "{id}").stdout.split() == [first]
    assert set(run_gitxp(git_repo, "log", "--all", "--where", "inputs.images.files == 3 and inputs.train.size < 100", "--format", "{id}").stdout.split()) == {first, second}
    assert run_gitxp(git_repo, "log", "--all", "--where", "inputs.nothing.size > 0", "--format", "{id}").stdout.split() == []


def test_named_outside_the_repo_and_from_the_script(git_repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "shared" / "vocab.txt"
    outside.parent.mkdir()
    outside.write_text("a b c\n")
    (git_repo / "data").mkdir()
    (git_repo / "data" / "labels.json").write_text("{}")
    script = git_repo / "train.py"
    script.write_text("import gitxp\nprint(gitxp.current().log_input('data/labels.json')['digest'])\n")
    r = run_gitxp(git_repo, "start", "--input", f"vocab={outside}", "--", sys.executable, "train.py")
    meta = stored(git_repo, last_id(git_repo))
    by_name = {i["name"]: i for i in meta["inputs"]}
    assert by_name["vocab"]["path"] == str(outside.resolve())  # outside the repository: absolute
    assert by_name["labels"]["path"] == "data/labels.json" and by_name["labels"]["digest"] == sha(b"{}")
    assert sha(b"{}") in r.stdout


def test_unchanged_data_is_not_hashed_again(git_repo: Path) -> None:
    """The cache is keyed by path, size and mtime: a file whose bytes changed behind a restored
    mtime still reports the cached digest, which proves it was not read again."""
    big = git_repo / "data" / "big.bin"
    big.parent.mkdir()
    with open(big, "wb") as f:  # a sparse 64 MiB file
        f.truncate(64 * 2**20)
    cache = git_repo / ".git" / "gitxp" / "cache" / "inputs.json"
    with gitxp.start(repo=str(git_repo), name="one", log_hardware=False, capture_env=False, capture_code=False) as xp:
        first = xp.log_input(big)
    entries = json.loads(cache.read_text())
    st = big.stat()
    assert entries[str(big.resolve())] == [st.st_size, st.st_mtime_ns, first["digest"]]
    cache_mtime = cache.stat().st_mtime_ns
    with open(big, "r+b") as f:  # same size, different bytes, mtime put back
        f.write(b"changed")
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    with gitxp.start(repo=str(git_repo), name="two", log_hardware=False, capture_env=False, capture_code=False) as xp:
        second = xp.log_input(big, name="big")
    assert second["digest"] == first["digest"]  # from the cache: the file was not read
    assert cache.stat().st_mtime_ns == cache_mtime  # nothing new to write
    os.utime(big, None)  # a new mtime: hashed again
    with gitxp.start(repo=str(git_repo), name="three", log_hardware=False, capture_env=False, capture_code=False) as xp:
        third = xp.log_input(big)
    assert third["digest"] != first["digest"]


def test_a_missing_input_runs_nothing(git_repo: Path) -> None:
    r = run_gitxp(git_repo, "start", "--input", "data/nope.csv", "--", sys.executable, "-c", "open('ran', 'w')", check=False)
    assert r.returncode == 2 and r.stderr.startswith("Error: input 'data/nope.csv' does not exist")
    assert not (git_repo / "ran").exists()
    assert run_git(git_repo, "branch", "--list", "gitxp") == ""


def test_malformed_inputs_and_alerts_fields_are_problems() -> None:
    """What pull refuses (and a listing shows as damaged) for hand-edited or hostile experiment.yaml."""
    from gitxp.store.layout import experiment_problems

    ok = {"inputs": [{"name": "train", "path": "data/train.csv", "size": 8, "files": 1, "digest": "sha256:00"}],
          "alerts": [{"condition": "metrics.loss < 1", "text": "ok", "step": 3, "value": 0.5, "time": "2026-12-06T00:00:00Z"}]}
    assert experiment_problems(ok) == []
    assert experiment_problems({"inputs": "data"}) == ["field 'inputs' must be a list of mappings"]
    assert experiment_problems({"inputs": [{**ok["inputs"][0], "name": "tr\x1bain"}]}) == ["field 'inputs' entry 'tr\\x1bain' has a control character"]
    assert experiment_problems({"inputs": [{**ok["inputs"][0], "size": "big"}]}) == ["field 'inputs' entry 'train'.size must be a whole number"]
    assert experiment_problems({"alerts": [{"condition": "x\n", "text": "t"}]}) == ["field 'alerts' entry 'condition' must be one line of text"]
