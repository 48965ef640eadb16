"""Hostile remotes built with git plumbing, pulled with both engines (issue 10, foreign data part B).

Each remote is a real bare repository whose store branch was written with
``git hash-object``/``mktree``/``commit-tree``; each pull runs the real CLI.
After a refused pull the local store branch, the object store (loose
objects and packs) and ``git fsck --strict`` must be exactly as before.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import fsck, gitxp as run_gitxp, run_git
from test_remote import GOOD_ID, _experiment, _push_crafted, _tree, record

from gitxp.plumbing import fsck as git_rules

ENGINES = ["git", "dulwich"]


def objects(repo: Path) -> tuple[str, list[str]]:
    """What the object store holds: git's counts and every name under objects/ (no quarantine left)."""
    counts = run_git(repo, "count-objects", "-v")
    names = sorted(p.relative_to(repo / ".git" / "objects").as_posix() for p in (repo / ".git" / "objects").rglob("*"))
    return counts, names


def hostile_remote(tmp_path: Path, repo: Path, experiment_files: dict[str, tuple[str, object]]) -> Path:
    bare = tmp_path / "evil.git"
    run_git(tmp_path, "init", "-q", "--bare", str(bare))
    _push_crafted(tmp_path, bare, {GOOD_ID: ("040000", _experiment(**experiment_files))}, run_git(repo, "show", "gitxp:gitxp.yaml").encode())
    return bare


def assert_refused_and_untouched(repo: Path, bare: Path, engine: str, expected: str) -> None:
    before = (run_git(repo, "rev-parse", "gitxp"), objects(repo))
    r = run_gitxp(repo, "pull", str(bare), check=False, env={"GITXP_ENGINE": engine})
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.startswith("Error: refusing the store fetched from") and expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert (run_git(repo, "rev-parse", "gitxp"), objects(repo)) == before
    assert run_git(repo, "for-each-ref", "refs/gitxp/") == ""
    fsck(repo)


# ---------------------------------------------------------------- 1. git's fsck name rules

NAMES = [
    ".git", ".GIT", "git~1", "GIT~1", ".git.", ".git ", ".GiT. .", "git~1 .", ".g\u200cit", "\u200c.git",
    ".git\u200c", ".gi\u200et", ".git\ufeff", ".git\u202e", ".git\u206a", ".git::$INDEX_ALLOCATION", ".git:x",
    ".git\\foo", "foo\\.git", "foo\\git~1", ".", "..", "a/b",
    # accepted by git:
    "a\\b", ".gitx", "git~2", "git~1x", ".git~1", "..git", ".g\u0130t", ".gitmodules", "\xe9.git", ".git\xa0",
    ".git\u2060", "foo\\..", "model.pt",
]


def _git_fsck_verdict(tmp_path: Path, raw: bytes) -> str | None:
    """Run the real `git fsck --strict` on a repository holding one tree with one entry ``raw``."""
    d = tmp_path / f"fsck-{raw.hex()[:40]}"
    run_git(tmp_path, "init", "-q", str(d))
    blob = run_git(d, "hash-object", "-w", "--stdin", input=b"x\n").strip()
    tree = run_git(d, "hash-object", "-w", "-t", "tree", "--literally", "--stdin", input=b"100644 " + raw + b"\0" + bytes.fromhex(blob)).strip()
    r = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=d, capture_output=True, text=True)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if tree in ln]
    return lines[0].split(": ")[1] if r.returncode and lines else None


def test_name_rules_match_git_fsck(tmp_path: Path) -> None:
    """One function, the same verdict as the installed git's fsck for every spelling."""
    raws = [n.encode() for n in NAMES] + [b".git\xff", b".g\xffit"]
    for raw in raws:
        assert git_rules.git_name_problem(raw) == _git_fsck_verdict(tmp_path, raw), raw


TREES = [
    [(b"100644", b"a"), (b"100644", b"b")],
    [(b"100644", b"b"), (b"100644", b"a")],
    [(b"100644", b"a"), (b"100644", b"a")],
    [(b"100644", b"a"), (b"100644", b"a-b"), (b"40000", b"a")],
    [(b"40000", b"a"), (b"100644", b"a.b")],
    [(b"100644", b"a.b"), (b"40000", b"a")],
    [(b"100664", b"a")],
    [(b"0100644", b"a")],
    [(b"040000", b"a")],
    [(b"120000", b"a"), (b"160000", b"b")],
    [(b"100644", b".git"), (b"100644", b"git~1")],
]


def test_tree_rules_match_git_fsck(tmp_path: Path) -> None:
    """Modes, order and duplicates in a raw tree: the same verdict as `git fsck --strict`."""
    for k, entries in enumerate(TREES):
        d = tmp_path / f"tree-{k}"
        run_git(tmp_path, "init", "-q", str(d))
        blob = run_git(d, "hash-object", "-w", "--stdin", input=b"x\n").strip()
        empty = run_git(d, "mktree", input=b"").strip()
        data = b"".join(mode + b" " + name + b"\0" + bytes.fromhex(empty if mode.lstrip(b"0") == b"40000" else blob) for mode, name in entries)
        tree = run_git(d, "hash-object", "-w", "-t", "tree", "--literally", "--stdin", input=data).strip()
        r = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=d, capture_output=True, text=True)
        git = {ln.split(": ")[1] for ln in (r.stdout + r.stderr).splitlines() if tree in ln and ": " in ln}
        assert {what for _name, what in git_rules.tree_object_problems(data)} == git, entries


IDENT = b"A U Thor <a@example.com> 1700000000 +0000"
COMMITS = {
    "ok": b"tree TREE\nauthor " + IDENT + b"\ncommitter " + IDENT + b"\n\nmsg\n",
    "no author": b"tree TREE\ncommitter " + IDENT + b"\n\nmsg\n",
    "two authors": b"tree TREE\nauthor " + IDENT + b"\nauthor " + IDENT + b"\ncommitter " + IDENT + b"\n\nm\n",
    "no committer": b"tree TREE\nauthor " + IDENT + b"\n\nmsg\n",
    "bad email": b"tree TREE\nauthor A <a@b 1 +0000\ncommitter " + IDENT + b"\n\nm\n",
    "no space": b"tree TREE\nauthor A<a@b> 1 +0000\ncommitter " + IDENT + b"\n\nm\n",
    "no name": b"tree TREE\nauthor <a@b> 1 +0000\ncommitter " + IDENT + b"\n\nm\n",
    "bad name": b"tree TREE\nauthor A> <a@b> 1 +0000\ncommitter " + IDENT + b"\n\nm\n",
    "bad date": b"tree TREE\nauthor A <a@b> x +0000\ncommitter " + IDENT + b"\n\nm\n",
    "zero padded": b"tree TREE\nauthor A <a@b> 01 +0000\ncommitter " + IDENT + b"\n\nm\n",
    "overflow": b"tree TREE\nauthor A <a@b> 99999999999999999999 +0000\ncommitter " + IDENT + b"\n\nm\n",
    "negative": b"tree TREE\nauthor A <a@b> -1 +0000\ncommitter " + IDENT + b"\n\nm\n",
    "bad tz": b"tree TREE\nauthor A <a@b> 1 +00\ncommitter " + IDENT + b"\n\nm\n",
    "trailing": b"tree TREE\nauthor A <a@b> 1 +0000 x\ncommitter " + IDENT + b"\n\nm\n",
    "extra spaces": b"tree TREE\nauthor A <a@b>  1 +0000\ncommitter " + IDENT + b"\n\nm\n",
    "nul": b"tree TREE\nauthor " + IDENT + b"\ncommitter " + IDENT + b"\n\nm\0x\n",
    "encoding": b"tree TREE\nauthor " + IDENT + b"\ncommitter " + IDENT + b"\nencoding latin1\n\nm\n",
}


def test_commit_rules_match_git_fsck(tmp_path: Path) -> None:
    for k, (case, body) in enumerate(sorted(COMMITS.items())):
        d = tmp_path / f"commit-{k}"
        run_git(tmp_path, "init", "-q", str(d))
        data = body.replace(b"TREE", run_git(d, "mktree", input=b"").strip().encode())
        commit = run_git(d, "hash-object", "-w", "-t", "commit", "--literally", "--stdin", input=data).strip()
        r = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=d, capture_output=True, text=True)
        git = {ln.split(": ")[1] for ln in (r.stdout + r.stderr).splitlines() if commit in ln and ": " in ln}
        assert set(git_rules.commit_object_problems(data)) == git, case


@pytest.mark.parametrize("engine", ENGINES)
def test_malformed_commit_is_refused_and_leaves_no_objects(engine: str, tmp_path: Path, git_repo: Path) -> None:
    """A store commit git fsck refuses (no space before the email) never lands, whichever engine fetches."""
    record(git_repo, "mine")
    bare = hostile_remote(tmp_path, git_repo, {})
    tip = run_git(bare, "rev-parse", "gitxp").strip()
    tree = run_git(bare, "rev-parse", "gitxp^{tree}").strip()
    body = f"tree {tree}\nparent {tip}\nauthor Mallory<m@example.com> 1700000000 +0000\ncommitter {IDENT.decode()}\n\ngitxp: forged\n"
    forged = run_git(bare, "hash-object", "-w", "-t", "commit", "--literally", "--stdin", input=body.encode()).strip()
    run_git(bare, "update-ref", "refs/heads/gitxp", forged)
    assert_refused_and_untouched(git_repo, bare, engine, "missingSpaceBeforeEmail")


MODULES = b'[submodule "lib"]\n\tpath = lib\n\turl = '
SPECIAL_FILES = [
    (b".gitmodules", b"100644", MODULES + b"https://example.com/lib.git\n"),
    (b".gitmodules", b"120000", b"target"),
    (b"GITMOD~1", b"120000", b"target"),
    (b"gi7eba~9", b"120000", b"target"),
    (".gitmodules\u200c".encode(), b"120000", b"target"),
    (b"x\\.gitmodules", b"120000", b"target"),
    (b".gitmodules", b"40000", b""),
    (b".gitmodules", b"100644", MODULES + b"--upload-pack=touch PWNED\n"),
    (b".gitmodules", b"100644", MODULES + b"https://a%0ab@example.com/x.git\n"),
    (b".gitmodules", b"100644", MODULES + b"../x.git\n"),
    (b".gitmodules", b"100644", b'[submodule "../../x"]\n\tpath = lib\n'),
    (b".gitmodules", b"100644", b'[submodule "lib"]\n\tpath = -lib\n\tupdate = !rm -rf ~\n'),
    (b".gitmodules", b"100644", b'[submodule "lib"\n'),  # unparsable: only a notice in git
    (b".gitattributes", b"100644", b"a" * 2048 + b" text\n"),
    (b".gitattributes", b"100644", b"a" * 2040 + b" text\n"),
    (b".gitattributes", b"40000", b""),
]


def test_special_file_rules_match_git_fsck(tmp_path: Path) -> None:
    """.gitmodules and .gitattributes in any spelling: git fsck's errors (its notices are not refused)."""
    notices = {"gitmodulesParse", "gitattributesSymlink", "gitignoreSymlink", "mailmapSymlink"}
    for k, (name, mode, content) in enumerate(SPECIAL_FILES):
        d = tmp_path / f"special-{k}"
        run_git(tmp_path, "init", "-q", str(d))
        sha = run_git(d, "mktree", input=b"").strip() if mode == b"40000" else run_git(d, "hash-object", "-w", "--stdin", input=content).strip()
        data = mode + b" " + name + b"\0" + bytes.fromhex(sha)
        tree = run_git(d, "hash-object", "-w", "-t", "tree", "--literally", "--stdin", input=data).strip()
        r = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=d, capture_output=True, text=True)
        git = {ln.split(": ")[1] for ln in (r.stdout + r.stderr).splitlines() if (tree in ln or sha in ln) and ": " in ln} - notices
        mine = {what for _n, what in git_rules.tree_object_problems(data)}
        for needle, short, check in (("gitmodules", b"gi7eba", git_rules.gitmodules_problems), ("gitattributes", b"gi7d29", git_rules.gitattributes_problems)):
            if git_rules._special(name, needle, short) and mode != b"120000":
                mine |= {f"{needle}Blob"} if mode == b"40000" else set(check(content))
        assert mine == git, (name, mode, content[:60])


HOSTILE_NAMES = {
    "git~1": {"git~1": ("040000", {"config": ("100644", b"[core]\n")})},
    ".git.": {".git.": ("040000", {"config": ("100644", b"[core]\n")})},
    ".git space": {".git ": ("040000", {"config": ("100644", b"[core]\n")})},
    "zwnj": {".g\u200cit": ("040000", {"config": ("100644", b"[core]\n")})},
    "code/.git": {"code": ("040000", {"train.py": ("100644", b"print(1)\n"), ".git": ("040000", {"config": ("100644", b"[core]\n")})})},
    "code/.gitmodules": {"code": ("040000", {".gitmodules": ("100644", MODULES + b"--upload-pack=touch PWNED\n")})},
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", sorted(HOSTILE_NAMES))
def test_dotgit_spellings_are_refused_and_leave_no_objects(case: str, engine: str, tmp_path: Path, git_repo: Path) -> None:
    record(git_repo, "mine")
    bare = hostile_remote(tmp_path, git_repo, HOSTILE_NAMES[case])
    assert_refused_and_untouched(git_repo, bare, engine, "gitmodulesUrl" if "gitmodules" in case else "hasDotgit")


def test_dulwich_engine_checks_history_behind_the_tip(tmp_path: Path, git_repo: Path) -> None:
    """A '.git' folder hidden in an older commit still reaches fsck: refused too."""
    record(git_repo, "mine")
    doc = run_git(git_repo, "show", "gitxp:gitxp.yaml").encode()
    bare = tmp_path / "evil.git"
    run_git(tmp_path, "init", "-q", "--bare", str(bare))
    scratch = tmp_path / "scratch"
    run_git(tmp_path, "init", "-q", str(scratch))
    bad = _tree(scratch, {"gitxp.yaml": ("100644", doc), "GIT~1": ("040000", {"hooks": ("100644", b"x")})})
    good = _tree(scratch, {"gitxp.yaml": ("100644", doc), "experiments": ("040000", {"2026-01-01": ("040000", {GOOD_ID: ("040000", _experiment())})})})
    first = run_git(scratch, "commit-tree", bad, "-m", "gitxp: hidden").strip()
    tip = run_git(scratch, "commit-tree", good, "-p", first, "-m", "gitxp: clean tip").strip()
    run_git(scratch, "push", "-q", str(bare), f"{tip}:refs/heads/gitxp")
    assert_refused_and_untouched(git_repo, bare, "dulwich", "hasDotgit")


@pytest.mark.parametrize("engine", ENGINES)
def test_refused_pull_by_gitxp_rules_leaves_no_objects(engine: str, tmp_path: Path, git_repo: Path) -> None:
    """Refused by gitxp's own checks (git accepts a symlink): still not one object left behind."""
    record(git_repo, "mine")
    bare = hostile_remote(tmp_path, git_repo, {"experiment.yaml": ("120000", b"/etc/passwd"), "output.log": ("100644", os.urandom(4096))})
    assert_refused_and_untouched(git_repo, bare, engine, "symlink")


@pytest.mark.parametrize("engine", ENGINES)
def test_accepted_pull_migrates_every_object(engine: str, tmp_path: Path, git_repo: Path) -> None:
    """The quarantine is moved in: the pulled experiment reads back, fsck is clean, no temp folder stays."""
    record(git_repo, "mine")
    bare = hostile_remote(tmp_path, git_repo, {"output.log": ("100644", b"hello\n")})
    r = run_gitxp(git_repo, "pull", str(bare), env={"GITXP_ENGINE": engine})
    assert "1 new experiment" in r.stdout, r.stdout + r.stderr
    assert run_git(git_repo, "show", f"gitxp:experiments/2026-01-01/{GOOD_ID}/output.log") == "hello\n"
    assert not [p for p in (git_repo / ".git" / "objects").iterdir() if p.name.startswith("tmp_objdir")]
    fsck(git_repo)


# ---------------------------------------------------------------- 4. `--` before remotes


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cmd", ["pull", "push"])
def test_remote_that_looks_like_an_option_is_refused(cmd: str, engine: str, git_repo: Path) -> None:
    record(git_repo, "mine")
    r = run_gitxp(git_repo, cmd, "--", "--upload-pack=touch PWNED; git-upload-pack", check=False, env={"GITXP_ENGINE": engine})
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("Error: invalid remote") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (git_repo / "PWNED").exists()


def test_remote_from_config_that_looks_like_an_option_is_refused(git_repo: Path) -> None:
    record(git_repo, "mine")
    run_git(git_repo, "config", "branch.gitxp.remote", "--upload-pack=touch PWNED; git-upload-pack")
    r = run_gitxp(git_repo, "pull", check=False)
    assert r.returncode == 2 and "invalid remote" in r.stderr, r.stderr
    assert not (git_repo / "PWNED").exists()


def test_push_to_a_folder_named_like_an_option(tmp_path: Path, git_repo: Path) -> None:
    """With `--` before it, a path whose folder starts with a dash is a plain path."""
    record(git_repo, "mine")
    bare = tmp_path / "-evil.git"
    run_git(tmp_path, "init", "-q", "--bare", "--", str(bare))
    run_gitxp(git_repo, "push", str(bare))
    assert run_git(bare, "rev-parse", "gitxp") == run_git(git_repo, "rev-parse", "gitxp")


# ---------------------------------------------------------------- 3. amendments merge field by field


def _meta(repo: Path, exp_id: str, ref: str = "gitxp") -> dict:
    import yaml

    day = f"{exp_id[:4]}-{exp_id[4:6]}-{exp_id[6:8]}"
    return yaml.safe_load(run_git(repo, "show", f"{ref}:experiments/{day}/{exp_id}/experiment.yaml"))


@pytest.mark.parametrize("engine", ENGINES)
def test_note_on_one_clone_and_tag_on_another_both_survive(engine: str, two_clones: tuple[Path, Path, Path]) -> None:
    bare, a, b = two_clones
    env = {"GITXP_ENGINE": engine}
    xp = record(a, "shared")
    run_gitxp(a, "push", env=env)
    run_gitxp(b, "pull", env=env)
    run_gitxp(a, "note", xp, "from a")
    run_gitxp(a, "tag", xp, "owner=a", "both=a")
    run_gitxp(b, "tag", xp, "team=b", "both=b")
    run_gitxp(b, "note", xp, "from b")
    run_gitxp(a, "push", env=env)
    run_gitxp(b, "push", env=env)  # b merges a's amendments, then pushes
    run_gitxp(a, "pull", env=env)
    for repo in (bare, a, b):
        meta = _meta(repo, xp)
        assert meta["tags"]["owner"] == "a" and meta["tags"]["team"] == "b", meta
        assert meta["tags"]["both"] in ("a", "b")
        assert "from a" in meta["notes"] and "from b" in meta["notes"], meta
        assert meta["status"] == "completed"
    assert _meta(a, xp) == _meta(b, xp) == _meta(bare, xp)
    fsck(bare)
    fsck(a)


def rewrite(repo: Path, path: str, content: bytes, *, message: str = "gitxp: forged", env: dict[str, str] | None = None) -> None:
    """Put ``content`` at ``path`` on ``repo``'s store branch with git plumbing (one new commit)."""
    parent = run_git(repo, "rev-parse", "gitxp").strip()
    parts = path.split("/")
    new_sha, new_mode = run_git(repo, "hash-object", "-w", "--stdin", input=content).strip(), "100644"
    for depth in range(len(parts) - 1, -1, -1):
        folder = "/".join(parts[:depth])
        out = run_git(repo, "ls-tree", f"gitxp:{folder}", check=False) if run_git(repo, "cat-file", "-t", f"gitxp:{folder}", check=False).strip() == "tree" else ""
        lines = [ln for ln in out.splitlines() if ln.split("\t", 1)[1] != parts[depth]]
        lines.append(f"{new_mode} {'tree' if new_mode == '040000' else 'blob'} {new_sha}\t{parts[depth]}")
        new_sha, new_mode = run_git(repo, "mktree", input="\n".join(lines).encode() + b"\n").strip(), "040000"
    r = subprocess.run(["git", "commit-tree", new_sha, "-p", parent, "-m", message], cwd=repo, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=True)
    run_git(repo, "update-ref", "refs/heads/gitxp", r.stdout.strip())


def _exp_dir(exp_id: str) -> str:
    return f"experiments/{exp_id[:4]}-{exp_id[4:6]}-{exp_id[6:8]}/{exp_id}"


def _forged_remote(tmp_path: Path, repo: Path, exp_id: str, edit: dict, *, commit_date: str | None = None) -> Path:
    """A remote whose store is ``repo``'s plus one commit rewriting ``exp_id``'s experiment.yaml."""
    import yaml

    bare = tmp_path / "forged.git"
    run_git(tmp_path, "init", "-q", "--bare", str(bare))
    run_git(repo, "push", "-q", str(bare), "gitxp:refs/heads/gitxp")
    meta = {**_meta(repo, exp_id), **edit}
    env = {"GIT_COMMITTER_DATE": commit_date, "GIT_AUTHOR_DATE": commit_date} if commit_date else None
    rewrite(bare, f"{_exp_dir(exp_id)}/experiment.yaml", yaml.safe_dump(meta, sort_keys=False).encode(), env=env)
    return bare


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("forged", ["9999-12-31", "2999-01-01T00:00:00.000Z"])
def test_future_end_time_never_wins_a_merge(forged: str, engine: str, tmp_path: Path, git_repo: Path) -> None:
    xp = record(git_repo, "mine")
    bare = _forged_remote(tmp_path, git_repo, xp, {"ended": forged, "name": "evil", "tags": {"reviewed": "evil"}, "notes": "evil"},
                          commit_date="@4102444800 +0000")  # the commit claims the year 2100 too
    run_gitxp(git_repo, "tag", xp, "reviewed=mine")
    run_gitxp(git_repo, "pull", str(bare), env={"GITXP_ENGINE": engine})
    meta = _meta(git_repo, xp)
    assert meta["tags"]["reviewed"] == "mine", meta  # changed on both sides: ours, the only real time
    assert meta["ended"] == _meta(git_repo, xp, "gitxp~1")["ended"]  # a future time is never taken over
    assert meta["name"] == "evil" and meta["notes"] == "evil"  # changed on their side only: a plain amendment
    fsck(git_repo)


def test_a_later_end_time_in_the_past_still_wins(tmp_path: Path, git_repo: Path) -> None:
    """The control for the test above: a real, later time decides conflicting fields."""
    import datetime as dt

    xp = record(git_repo, "mine")
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    bare = _forged_remote(tmp_path, git_repo, xp, {"ended": later, "tags": {"reviewed": "theirs"}})
    run_gitxp(git_repo, "tag", xp, "reviewed=mine")
    run_gitxp(git_repo, "pull", str(bare))
    assert _meta(git_repo, xp)["tags"]["reviewed"] == "theirs"


# ---------------------------------------------------------------- 6. artifact paths: a file and a folder of one name


@pytest.mark.parametrize("first_encrypted", [True, False])
def test_file_and_folder_of_one_name_refused_when_logged(first_encrypted: bool, git_repo: Path) -> None:
    import gitxp
    from gitxp.errors import UsageError

    (git_repo / "m1").write_text("one")
    (git_repo / "m2").write_text("two")
    with gitxp.start(repo=str(git_repo), name="clash", log_hardware=False, capture_env=False) as xp:
        xp.log_artifact(git_repo / "m1", "model", encrypt=first_encrypted)
        with pytest.raises(UsageError, match="artifact names clash: 'model' is a file, where 'model/extra.txt' needs a folder"):
            xp.log_artifact(git_repo / "m2", "model/extra.txt", encrypt=False)
        with pytest.raises(UsageError, match="artifact names clash"):  # encrypted `model` is stored as model.gxp
            xp.log_artifact(git_repo / "m2", "model.gxp" if first_encrypted else "model/x", encrypt=not first_encrypted)
        xp.log_artifact(git_repo / "m2", "model", encrypt=not first_encrypted)  # logging the same name again is fine
    listed = run_git(git_repo, "show", f"gitxp:{_exp_dir(xp.id)}/artifacts.yaml")
    assert listed.count("path:") == 1 and "path: model\n" in listed
    fsck(git_repo)


def _plain_item(path: str, data: bytes) -> str:
    import hashlib

    return f"- path: {path}\n  size: {len(data)}\n  digest: sha256:{hashlib.sha256(data).hexdigest()}\n  encrypted: false\n  parts: 1\n"


@pytest.mark.parametrize("engine", ENGINES)
def test_pulled_manifest_with_a_file_and_folder_of_one_name_is_refused(engine: str, tmp_path: Path, git_repo: Path) -> None:
    record(git_repo, "mine")
    manifest = (_plain_item("model", b"one") + _plain_item("model/extra.txt", b"two")).encode()
    bare = hostile_remote(tmp_path, git_repo, {
        "artifacts.yaml": ("100644", manifest),
        "artifacts": ("040000", {"model": ("100644", b"one"), "model.d": ("040000", {"extra.txt": ("100644", b"two")})}),
    })
    assert_refused_and_untouched(git_repo, bare, engine, "where 'model/extra.txt' needs a folder")


def _store_with_artifacts(repo: Path) -> str:
    import gitxp

    (repo / "a.txt").write_text("alpha")
    (repo / "b.txt").write_text("bravo")
    with gitxp.start(repo=str(repo), name="arts", log_hardware=False, capture_env=False) as xp:
        xp.log_artifact(repo / "a.txt", "a.txt", encrypt=False)
        xp.log_artifact(repo / "b.txt", "sub/b.txt", encrypt=False)
    return xp.id


def test_get_of_a_damaged_manifest_writes_nothing(tmp_path: Path, git_repo: Path) -> None:
    """A store damaged before this fix (``model`` and ``model/extra.txt``): no partial output."""
    xp = _store_with_artifacts(git_repo)
    manifest = _plain_item("model", b"alpha") + _plain_item("model/extra.txt", b"bravo")
    rewrite(git_repo, f"{_exp_dir(xp)}/artifacts.yaml", manifest.encode())
    rewrite(git_repo, f"{_exp_dir(xp)}/artifacts/model", b"alpha")
    r = run_gitxp(git_repo, "get", xp, "-o", str(tmp_path / "out"), check=False)
    assert r.returncode == 1 and "needs a folder" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if "gitxp-get" in p.name]


def test_get_is_all_or_nothing_when_a_later_artifact_fails(tmp_path: Path, git_repo: Path) -> None:
    xp = _store_with_artifacts(git_repo)
    rewrite(git_repo, f"{_exp_dir(xp)}/artifacts/sub/b.txt", b"tampered")  # fails verification, after a.txt
    for existing in (False, True):
        out = tmp_path / f"out-{existing}"
        if existing:
            out.mkdir()
            (out / "keep.txt").write_text("mine")
        r = run_gitxp(git_repo, "get", xp, "-o", str(out), check=False)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert sorted(p.name for p in out.rglob("*")) == ["keep.txt"] if existing else not out.exists()
        assert not [p for p in tmp_path.iterdir() if "gitxp-get" in p.name]


def test_get_into_a_folder_with_a_conflict_writes_nothing(tmp_path: Path, git_repo: Path) -> None:
    xp = _store_with_artifacts(git_repo)
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_text("a file where the artifact needs a folder")
    r = run_gitxp(git_repo, "get", xp, "-o", str(out), check=False)
    assert r.returncode == 2 and "needs a folder" in r.stderr, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["sub"]
    (out / "sub").unlink()
    written = run_gitxp(git_repo, "get", xp, "-o", str(out))
    assert (out / "a.txt").read_text() == "alpha" and (out / "sub" / "b.txt").read_text() == "bravo", written.stderr
    fresh = tmp_path / "fresh"
    run_gitxp(git_repo, "get", xp, "-o", str(fresh))
    assert (fresh / "sub" / "b.txt").read_text() == "bravo"
    assert fresh.stat().st_mode & 0o777 == (tmp_path / "out").stat().st_mode & 0o777  # not mkdtemp's 0700
    assert not [p for p in tmp_path.iterdir() if "gitxp-get" in p.name]


def test_git_engine_ignores_a_users_weakened_fsck_config(tmp_path: Path, git_repo: Path) -> None:
    """`fetch.fsck.hasDotgit=ignore` in the user's config does not let a '.git' folder in."""
    record(git_repo, "mine")
    run_git(git_repo, "config", "fetch.fsck.hasDotgit", "ignore")
    bare = hostile_remote(tmp_path, git_repo, HOSTILE_NAMES["code/.git"])  # code/ is git's to check
    assert_refused_and_untouched(git_repo, bare, "git", "hasDotgit")
