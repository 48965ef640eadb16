"""An attacker's and a careful user's second pass over DESIGN.md "Promises" (issue 10).

Each test here is a variant the first round of tests did not try: another
spelling, another command reading the same data, another place a secret
can sit. Real git, the real CLI, no mocks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import gitxp
from conftest import fsck, gitxp as run_gitxp, run_git
from test_foreign import BAD_DIR, BAD_ID, StoreIndex, assert_refused, experiment_yaml, hostile, mine  # noqa: F401 - mine is a fixture
from test_secrets import all_objects, stored


def test_a_copy_of_the_key_file_in_the_work_tree_is_never_snapshotted(git_repo: Path) -> None:
    """`gitxp key export > team.key` to hand it over, or a `cp` of the key file: the bytes stay out of the store."""
    run_gitxp(git_repo, "init")
    exported = run_gitxp(git_repo, "key", "export").stdout
    key_text = exported.strip()
    assert len(key_text) >= 40
    (git_repo / "team.key").write_text(exported)
    (git_repo / "conf").mkdir()
    (git_repo / "conf" / "gitxp.key").write_text(key_text)  # no trailing newline
    run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", "pass")
    x = gitxp.open(str(git_repo)).get("@")
    for rel in ("team.key", "conf/gitxp.key"):
        assert stored(git_repo, x.id, f"code/{rel}", check=False).returncode != 0, rel
        assert rel in x.source["skipped"]
    assert key_text.encode() not in all_objects(git_repo)
    fsck(git_repo)


# ------------------------------------------------------------------ names in a pulled tree

NAMED_ENTRIES = {
    "escape-in-a-file-name": ({"a\x1b]0;PWN\x07\x1b[2J.txt": b"x"}, {}),
    "newline-in-a-file-name": ({"notes\nError: fake.txt": b"x"}, {}),
    "escape-in-an-experiment-folder": ({}, {"exp_dir": "experiments/2026-01-01/\x1b[2Jevil\nid"}),
    "escape-in-a-table-name": ({"tables/t\x1b[2J.txt": b"x"}, {}),
}


@pytest.mark.parametrize("engine", ["git", "dulwich"])
@pytest.mark.parametrize("case", sorted(NAMED_ENTRIES))
def test_control_characters_in_pulled_file_names_are_refused(case: str, engine: str, tmp_path: Path, mine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Names hold no control characters anywhere (DESIGN "Safe with foreign data"), file names in the store included.

    The refusal names the entry escaped, on no extra line: a newline in a
    pulled name must not forge output of its own.
    """
    monkeypatch.setenv("GITXP_ENGINE", engine)
    extra, kw = NAMED_ENTRIES[case]
    evil = hostile(tmp_path, mine, {"experiment.yaml": experiment_yaml()}, **kw)
    if extra:
        _add_nested(evil, extra)  # update-index takes any name; mktree stops at a newline
    objects = _object_ids(mine)
    err = assert_refused(mine, evil, "control character")
    assert "\x1b" not in err and "\x07" not in err
    assert not any(line.startswith("Error: fake") for line in err.splitlines()[1:]), err
    assert "\nid" not in err, err
    assert _object_ids(mine) == objects


def _add_nested(repo: Path, files: dict[str, bytes]) -> None:
    """Add ``files`` (paths inside the crafted experiment) to the tip of ``repo``'s store branch."""
    index = StoreIndex(repo, "nested-index")
    for name, data in files.items():
        blob = index.git("hash-object", "-w", "--stdin", input=data)
        index.git("update-index", "--add", "--cacheinfo", f"100644,{blob},{BAD_DIR}/{name}")
    index.commit("nested")


def _object_ids(repo: Path) -> str:
    return run_git(repo, "cat-file", "--batch-all-objects", "--batch-check")


# ------------------------------------------------------------------ what the user typed

NOT_UTF8 = os.fsdecode(b"\xff\xfe")


@pytest.mark.parametrize("args", [("pull", NOT_UTF8), ("push", NOT_UTF8), ("start", "--sync", NOT_UTF8, "--", "true")])
def test_a_remote_that_is_not_utf8_is_one_line(args: tuple[str, ...], mine: Path) -> None:
    tip = run_git(mine, "rev-parse", "gitxp")
    r = run_gitxp(mine, *args, check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and r.stderr.startswith("Error: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert "UTF-8" in r.stderr
    assert run_git(mine, "rev-parse", "gitxp") == tip  # start refuses before anything runs


# ------------------------------------------------------------------ secret options in the output


def test_values_of_secret_options_are_masked_in_output_log(git_repo: Path) -> None:
    """argparse's `print(args)` is how most training scripts start: the key given as --api-key must not reach output.log."""
    script = "import sys; print(sys.argv[1:]); print('Namespace(api_key=%r)' % sys.argv[2], file=sys.stderr)"
    r = run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", script,
                  "--api-key", "sk-LIVE123456", "--password=hunter2xyz", "--lr", "0.1", "--token", "1")
    assert "sk-LIVE123456" in r.stdout  # the terminal gets the command's own output
    x = gitxp.open(str(git_repo)).get("@")
    out = x.output()
    assert "sk-LIVE123456" not in out and "hunter2xyz" not in out, out
    assert out.count("<redacted>") >= 3 and "'0.1'" in out and "'1']" in out, out  # a short value masks nothing else
    blobs = all_objects(git_repo)
    assert b"sk-LIVE123456" not in blobs and b"hunter2xyz" not in blobs


# ------------------------------------------------------------------ escapes in what `gitxp env` says


def test_escape_sequences_in_package_sources_never_reach_the_terminal(mine: Path, tmp_path: Path) -> None:
    """`gitxp env REF --requirements/--venv` name the packages they leave out: a pulled URL or path is stored text too."""
    from test_foreign import craft

    esc = "\\e]0;pwned\\a\\e[2J"
    craft(mine, {
        "experiment.yaml": experiment_yaml(),
        "environment.yaml": (
            'python: {version: "3.11.7"}\n'
            f'packages: [{{name: evil, version: "1.0", source: {{url: "http://e/{esc}x.tar.gz"}}}},\n'
            f'           {{name: local, version: "1.0", source: {{path: "/src/{esc}pkg"}}}}]\n').encode(),
    })
    for args in (("--requirements", str(tmp_path / "r.txt")), ("--conda-file", str(tmp_path / "e.yml")), ("--venv", str(tmp_path / "venv"))):
        r = run_gitxp(mine, "env", BAD_ID, *args, check=False, timeout=300)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert "evil" in r.stderr or "local" in r.stderr, r.stderr
        for stream in (r.stdout, r.stderr):
            assert "\x1b" not in stream and "\x07" not in stream, (args, stream)


# ------------------------------------------------------------------ the key's text, wherever it is typed


def test_key_text_never_reaches_the_store_the_cache_or_any_file_under_git(git_repo: Path) -> None:
    """The key pasted by mistake into a param, a tag, a note, an argument or a recorded variable stays out of .git."""
    from gitxp.artifacts import keys

    key = keys.encode_key(keys.generate_key())
    env = {"GITXP_KEY": key, "HF_HOME": f"/cache/{key}", "GITXP_SEED": key}
    run_gitxp(git_repo, "start", "--no-hardware", "--name", "oops", "-p", f"seed={key}", "--tag", f"t={key}",
              "--note", f"key is {key}", "--", sys.executable, "-c", "import sys; print(sys.argv)", key, env=env)
    for args in (("log",), ("table",), ("table", "--format", "csv"), ("show", "@", "--env"), ("log", "--format", "json")):
        r = run_gitxp(git_repo, *args, env=env)
        assert key not in r.stdout and key not in r.stderr, args
    x = gitxp.open(str(git_repo)).get("@")
    assert x.environment is not None and x.environment["env_vars"]["HF_HOME"] == "/cache/<redacted>"
    assert key.encode() not in all_objects(git_repo)
    leaked = [p for p in (git_repo / ".git").rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert leaked == []


@pytest.mark.parametrize("engine", ["git", "dulwich"])
def test_a_file_holding_the_key_text_is_never_snapshotted(git_repo: Path, engine: str) -> None:
    """`.env` with `GITXP_KEY=...` among other lines, or a tracked config edited to hold the key: left out, in both engines."""
    from gitxp.artifacts import keys
    from gitxp.plumbing.snapshot import Withhold, capture as capture_snapshot

    key = keys.encode_key(keys.generate_key())
    (git_repo / ".env").write_text(f"HF_HOME=/data\nGITXP_KEY={key}\nOTHER=1\n")
    (git_repo / "train.py").write_text(f"KEY = '{key}'  # edited by mistake\n")
    (git_repo / "notes.txt").write_text("nothing secret\n")
    rules = Withhold(texts=(key.encode(),))
    snap = capture_snapshot(git_repo, git_repo / ".git", engine=engine, withhold=rules)
    names = run_git(git_repo, "ls-tree", "-r", "--name-only", snap.tree).split()
    assert "notes.txt" in names and ".gitignore" in names
    assert ".env" not in names and "train.py" not in names
    assert {".env", "train.py"} <= set(snap.skipped)
    assert key.encode() not in all_objects(git_repo)
    # the whole path: gitxp start knows the key from GITXP_KEY
    run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-c", "pass", env={"GITXP_KEY": key})
    x = gitxp.open(str(git_repo)).get("@")
    assert {".env", "train.py"} <= set(x.source["skipped"])
    assert key.encode() not in all_objects(git_repo)
