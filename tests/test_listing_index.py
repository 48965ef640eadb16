"""The store's listing index (``listing/<day>/*.jsonl`` on the store branch).

A fresh clone lists from the rows, not from 2 YAML files per experiment; a
row is used only while it names the experiment's current tree; pulled rows
that disagree with their experiment's files are refused; two clones' rows
merge without conflict. All with real git repositories and the real CLI.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

import gitxp
from conftest import fsck, gitxp as run_gitxp, run_git
from gitxp.store import listing
from gitxp.store.store import Store


def _runs(repo: Path, n: int, prefix: str = "r") -> list[str]:
    import os

    ids = []
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        for i in range(n):
            with gitxp.start(name=f"{prefix}{i}", params={"lr": i / 10, "opt": {"name": "adam"}}, log_hardware=False) as xp:
                xp.log_metric("loss", 1.0 / (i + 1))
                xp.summary["best"] = i
                ids.append(xp.id)
    finally:
        os.chdir(cwd)
    return ids


def _listing_files(repo: Path, ref: str = "gitxp") -> dict[str, str]:
    out = run_git(repo, "ls-tree", "-r", ref, "--", "listing")
    return {line.split("\t")[1]: line.split()[2] for line in out.splitlines()}


def _rows(repo: Path, ref: str = "gitxp") -> list[list]:
    rows = []
    for path in _listing_files(repo, ref):
        for line in run_git(repo, "show", f"{ref}:{path}").splitlines():
            head, _, doc = line.partition("\t")
            rows.append([*json.loads(head), json.loads(doc)])
    return rows


def _clone(src: Path, dest: Path) -> Path:
    run_git(src.parent, "clone", "-q", "--no-local", str(src), str(dest))
    run_git(dest, "fetch", "-q", "origin", "gitxp:gitxp")
    return dest


class _FileReads:
    """Counts experiments read from their files (the slow path the rows avoid)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ids: list[str] = []
        original = Store._read_summary

        def spy(store: Store, tree: str, exp_id: str):  # type: ignore[no-untyped-def]
            self.ids.append(exp_id)
            return original(store, tree, exp_id)

        monkeypatch.setattr(Store, "_read_summary", spy)


def test_every_commit_leaves_a_row_and_full_files_are_sealed(git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "SEAL_ROWS", 3)
    ids = _runs(git_repo, 7)
    files = _listing_files(git_repo)
    day = f"{ids[0][:4]}-{ids[0][4:6]}-{ids[0][6:8]}"
    sealed = sorted(p for p in files if "/rows-" in p)
    assert len(sealed) == 2 and f"listing/{day}/pending.jsonl" in files, files
    for path in sealed:  # a sealed file is named after its own blob id
        assert path == f"listing/{day}/rows-{files[path][:12]}.jsonl"
    rows = _rows(git_repo)
    assert sorted(r[0] for r in rows) == sorted(ids)
    for exp_id, tree, created, branch, status, name, (meta, params) in rows:
        assert tree == run_git(git_repo, "rev-parse", f"gitxp:experiments/{day}/{exp_id}").strip()
        on_disk = yaml.safe_load(run_git(git_repo, "show", f"gitxp:experiments/{day}/{exp_id}/experiment.yaml"))
        assert meta == on_disk and (created, branch, status, name) == (on_disk["created"], "main", "completed", on_disk["name"])
        assert params == yaml.safe_load(run_git(git_repo, "show", f"gitxp:experiments/{day}/{exp_id}/params.yaml"))
    fsck(git_repo)


def test_a_fresh_clone_lists_from_the_rows(tmp_path: Path, git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _runs(git_repo, 20)
    want = json.loads(run_gitxp(git_repo, "table", "--format", "json").stdout)
    clone = _clone(git_repo, tmp_path / "clone")
    assert not (clone / ".git" / "gitxp").exists()
    reads = _FileReads(monkeypatch)
    store = gitxp.open(clone)
    records = store.experiments()
    assert [r.id for r in records] == ids[::-1]
    assert [(r.name, r.status, dict(r.params), r.summary["best"]) for r in records] == [
        (f"r{i}", "completed", {"lr": i / 10, "opt": {"name": "adam"}}, i) for i in reversed(range(20))]
    assert reads.ids == []  # not one experiment.yaml parsed
    store.close()
    # the CLI in the clone shows exactly what the original shows, cold and warm
    assert json.loads(run_gitxp(clone, "table", "--format", "json").stdout) == want
    assert json.loads(run_gitxp(clone, "table", "--format", "json").stdout) == want


def test_an_experiment_changed_without_a_row_is_read_from_its_files(tmp_path: Path, git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_hostile_remote import rewrite

    ids = _runs(git_repo, 18)
    day = f"{ids[0][:4]}-{ids[0][4:6]}-{ids[0][6:8]}"
    path = f"experiments/{day}/{ids[5]}/experiment.yaml"
    meta = yaml.safe_load(run_git(git_repo, "show", f"gitxp:{path}"))
    meta["name"] = "renamed-by-another-tool"
    rewrite(git_repo, path, yaml.safe_dump(meta, sort_keys=False).encode())  # git plumbing: no new row
    clone = _clone(git_repo, tmp_path / "clone")
    reads = _FileReads(monkeypatch)
    with gitxp.open(clone) as store:
        names = {r.id: r.name for r in store.experiments()}
    assert names[ids[5]] == "renamed-by-another-tool"
    assert reads.ids == [ids[5]]  # only the changed experiment came from its files


def test_tags_written_by_gitxp_get_a_new_row(tmp_path: Path, git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _runs(git_repo, 17)
    run_gitxp(git_repo, "tag", ids[3], "reviewed=yes")
    clone = _clone(git_repo, tmp_path / "clone")
    reads = _FileReads(monkeypatch)
    with gitxp.open(clone) as store:
        listed = {r.id: r for r in store.experiments()}
        assert len(listed) == 17 and listed[ids[3]].tags == {"reviewed": "yes"}
        assert reads.ids == []  # the amended experiment's new row was used
        assert store.get(ids[3]).tags == {"reviewed": "yes"}  # one experiment's view reads its files
    assert reads.ids == [ids[3]]


def _plant(repo: Path, day: str, name: str, content: bytes) -> None:
    from test_hostile_remote import rewrite

    rewrite(repo, f"listing/{day}/{name}", content)


def test_malformed_and_lying_rows_never_change_what_a_clone_lists(tmp_path: Path, git_repo: Path) -> None:
    ids = _runs(git_repo, 18)
    want = json.loads(run_gitxp(git_repo, "table", "--format", "json").stdout)
    day = f"{ids[0][:4]}-{ids[0][4:6]}-{ids[0][6:8]}"
    tree = run_git(git_repo, "rev-parse", f"gitxp:experiments/{day}/{ids[2]}").strip()
    meta = yaml.safe_load(run_git(git_repo, "show", f"gitxp:experiments/{day}/{ids[2]}/experiment.yaml"))
    # every row in the pending file is replaced: junk, wrong types, a header that disagrees with its documents
    lying_head = [ids[2], tree, meta["created"], "main", "completed", meta["name"]]
    lying_doc = [{**meta, "status": "failed"}, {"lr": 99}]
    bad = b"\n".join([
        b"not json at all",
        b"[1,2,3]\t{}",
        json.dumps([ids[1], 7, None, None, None, None]).encode() + b"\t[{}, {}]",
        json.dumps(lying_head).encode() + b"\t" + json.dumps(lying_doc).encode(),
        b'["x"' * 100_000,
    ]) + b"\n"
    _plant(git_repo, day, "pending.jsonl", bad)
    clone = _clone(git_repo, tmp_path / "clone")
    assert json.loads(run_gitxp(clone, "table", "--format", "json").stdout) == want
    r = run_gitxp(clone, "show", ids[2], "--format", "json")
    assert json.loads(r.stdout)["status"] == "completed" and json.loads(r.stdout)["params"]["lr"] == 0.2


def test_a_pulled_row_that_disagrees_with_its_files_is_refused(tmp_path: Path, two_clones: tuple[Path, Path, Path]) -> None:
    bare, a, b = two_clones
    ids = _runs(a, 2)
    run_gitxp(a, "push")
    run_gitxp(b, "pull")
    day = f"{ids[0][:4]}-{ids[0][4:6]}-{ids[0][6:8]}"
    tree = run_git(a, "rev-parse", f"gitxp:experiments/{day}/{ids[0]}").strip()
    meta = yaml.safe_load(run_git(a, "show", f"gitxp:experiments/{day}/{ids[0]}/experiment.yaml"))
    forged = {**meta, "metrics": {"loss": {"last": 0.0001, "min": 0.0001, "max": 0.0001, "count": 1, "last_step": 0}}}
    line = listing.encode_row(ids[0], tree, forged, {"lr": 0.0, "opt": {"name": "adam"}})
    assert line is not None
    pending = run_git(bare, "show", f"gitxp:listing/{day}/pending.jsonl").encode()
    _plant(bare, day, "pending.jsonl", pending + line)
    before = run_git(b, "rev-parse", "gitxp").strip()
    r = run_gitxp(b, "pull", check=False)
    assert r.returncode != 0
    assert f"listing row of {ids[0]} disagrees" in r.stderr
    assert run_git(b, "rev-parse", "gitxp").strip() == before


def test_two_clones_rows_merge_without_conflict(two_clones: tuple[Path, Path, Path]) -> None:
    bare, a, b = two_clones
    ids_a = _runs(a, 2, prefix="a")
    run_gitxp(a, "push")
    run_gitxp(b, "pull")
    ids_a += _runs(a, 2, prefix="a")  # both clones append to the same day's pending file
    run_gitxp(a, "push")
    ids_b = _runs(b, 2, prefix="b")
    run_gitxp(b, "pull")
    run_gitxp(b, "push")
    run_gitxp(a, "pull")
    for repo in (a, b, bare):
        assert sorted(r[0] for r in _rows(repo)) == sorted(ids_a + ids_b)
    fsck(a)
    fsck(b)


def test_a_store_without_rows_still_lists(tmp_path: Path, git_repo: Path) -> None:
    """Stores written before the index existed: everything is read from the files."""
    ids = _runs(git_repo, 3)
    parent = run_git(git_repo, "rev-parse", "gitxp").strip()
    tree = run_git(git_repo, "rev-parse", "gitxp^{tree}").strip()
    kept = [ln for ln in run_git(git_repo, "ls-tree", tree).splitlines() if not ln.endswith("\tlisting")]
    new_tree = run_git(git_repo, "mktree", input=("\n".join(kept) + "\n").encode()).strip()
    commit = subprocess.run(["git", "commit-tree", new_tree, "-p", parent, "-m", "no rows"], cwd=git_repo, capture_output=True, text=True, check=True).stdout.strip()
    run_git(git_repo, "update-ref", "refs/heads/gitxp", commit)
    clone = _clone(git_repo, tmp_path / "clone")
    out = json.loads(run_gitxp(clone, "log", "--format", "json").stdout)
    assert [e["id"] for e in out["experiments"]] == ids[::-1]


def test_show_reads_an_experiments_own_files_even_where_a_forged_row_lists_it(tmp_path: Path, git_repo: Path) -> None:
    """A plain git clone takes listing rows as they come (checked for types); one experiment's view never does."""
    ids = _runs(git_repo, 18)
    day = f"{ids[0][:4]}-{ids[0][4:6]}-{ids[0][6:8]}"
    tree = run_git(git_repo, "rev-parse", f"gitxp:experiments/{day}/{ids[4]}").strip()
    meta = yaml.safe_load(run_git(git_repo, "show", f"gitxp:experiments/{day}/{ids[4]}/experiment.yaml"))
    forged = {**meta, "summary": {"best": 1000}, "tags": {"verified": "yes"}}
    line = listing.encode_row(ids[4], tree, forged, {"lr": 0.4, "opt": {"name": "adam"}})
    assert line is not None
    # the forged row first: a clone takes the first row it finds for an (id, tree)
    pending = run_git(git_repo, "show", f"gitxp:listing/{day}/pending.jsonl").encode()
    _plant(git_repo, day, "pending.jsonl", line + pending)
    clone = _clone(git_repo, tmp_path / "clone")
    run_gitxp(clone, "log", "-n", "1")  # the cold listing fills the cache from the rows
    shown = json.loads(run_gitxp(clone, "show", ids[4], "--format", "json").stdout)
    assert shown["summary"] == {"best": 4} and shown["tags"] == {}
    with gitxp.open(clone) as store:
        assert store.get(ids[4]).summary == {"best": 4}


def test_decode_line_takes_only_a_row_that_is_exactly_what_it_claims() -> None:
    """One json.loads of header and documents: a row of another experiment or tree, a header spliced into the
    documents, or documents that disagree with the header give None (the experiment is then read from its files)."""
    meta = {"id": "20260301-000000-0123456789ab", "created": "2026-03-01T00:00:00Z", "status": "completed", "name": "a",
            "source": {"branch": "main"}}
    line = listing.encode_row(meta["id"], "ab" * 20, meta, {"lr": 0.1})
    assert line is not None
    assert listing.decode_line(line, meta["id"], "ab" * 20) == (meta, {"lr": 0.1})
    assert listing.decode_line(line, meta["id"], "cd" * 20) is None
    assert listing.decode_line(line, "20260301-000000-ffffffffffff", "ab" * 20) is None
    head, _, docs = line.partition(b"\t")
    # a header that is not one JSON value, closed by the documents: parses as one list, is still refused
    spliced = head + b",[" + docs[1:-1].partition(b",")[0] + b"\t" + docs[1:-1].partition(b",")[2] + b"]"
    assert listing.decode_line(spliced, meta["id"], "ab" * 20) is None
    lying = line.replace(b'"status":"completed"', b'"status":"failed"', 1)  # documents no longer agree with the header
    assert listing.decode_line(lying, meta["id"], "ab" * 20) is None
    assert listing.decode_line(b"\t".join([head, b"[" * 100_000]), meta["id"], "ab" * 20) is None


_LOAD = """
import json, sys
from gitxp import threads
from gitxp.plumbing.repo import Repo
from gitxp.store import store as S
S.PARALLEL_ROWS = int(sys.argv[1])
S.ROWS_WORTH_READING = S.CHECKED_WORTH_WRITING = 0  # a dozen runs listed and cached as thousands are
forks = []
def counted(fn):
    wait = threads.forked(fn)
    forks.append(wait is not None)
    return wait
S.forked = counted
st = S.Store(Repo("."))
recs = st.experiments(decoded=True)
print(json.dumps({"forks": forks, "rows": [[r.id, r.meta, r.params] for r in recs]}, default=dict))
"""


def test_many_rows_decode_in_a_forked_child_exactly_as_in_one_process(tmp_path: Path, git_repo: Path) -> None:
    """Store.load hands half of a big first decode to a forked child: the same records, a lying row
    still replaced by what its files say, and the checked rows kept for the next listing, which needs no child."""
    import sys

    ids = _runs(git_repo, 12)
    want = json.loads(run_gitxp(git_repo, "table", "--format", "json").stdout)
    day = f"{ids[0][:4]}-{ids[0][4:6]}-{ids[0][6:8]}"
    last = ids[-1]  # newest first: the child's half holds the oldest, the parent's the newest
    tree = run_git(git_repo, "rev-parse", f"gitxp:experiments/{day}/{ids[1]}").strip()
    meta = yaml.safe_load(run_git(git_repo, "show", f"gitxp:experiments/{day}/{ids[1]}/experiment.yaml"))
    lying = json.dumps([ids[1], tree, meta["created"], "main", "completed", meta["name"]]).encode()
    pending = run_git(git_repo, "show", f"gitxp:listing/{day}/pending.jsonl").encode()
    _plant(git_repo, day, "pending.jsonl", lying + b"\t" + json.dumps([{**meta, "status": "failed"}, {"lr": 99}]).encode() + b"\n" + pending)
    out = {}
    for name, threshold in (("forked", 4), ("serial", 10**9)):
        clone = _clone(git_repo, tmp_path / name)
        r = subprocess.run([sys.executable, "-c", _LOAD, str(threshold)], cwd=clone, capture_output=True, text=True, check=True)
        out[name] = json.loads(r.stdout)
        assert r.stderr == ""
        assert json.loads(run_gitxp(clone, "table", "--format", "json").stdout) == want  # cached, checked rows
    assert out["forked"]["forks"] == [True] and out["serial"]["forks"] == []
    assert out["forked"]["rows"] == out["serial"]["rows"]
    # the rows are now this machine's checked blobs: decoded here, without a child (receiving costs as much)
    warm = subprocess.run([sys.executable, "-c", _LOAD, "4"], cwd=tmp_path / "forked", capture_output=True, text=True, check=True)
    assert json.loads(warm.stdout) == {**out["forked"], "forks": []}
    rows = {i: (m, p) for i, m, p in out["forked"]["rows"]}
    assert rows[ids[1]][0]["status"] == "completed" and rows[ids[1]][1]["lr"] == 0.1 and last in rows


def test_a_first_table_of_a_fresh_clone_writes_the_cache_once_with_every_row_checked(tmp_path: Path, git_repo: Path) -> None:
    """The rows are held back until checked: the cache's blobs file holds each experiment once, in checked form."""
    import marshal
    import sys

    ids = _runs(git_repo, 6)
    clone = _clone(git_repo, tmp_path / "clone")
    subprocess.run([sys.executable, "-c", _LOAD, "4"], cwd=clone, capture_output=True, text=True, check=True)
    cache = clone / ".git" / "gitxp" / "cache"
    doc = marshal.loads((cache / "index-gitxp.marshal").read_bytes())
    blobs = (cache / doc["blobs"]).read_bytes()
    headers = [h for _, exps in doc["days"].values() for h in exps.values()]
    assert sorted(h[1] for h in headers) == sorted(ids)
    assert len(blobs) == sum(h[7] for h in headers) == doc["size"]  # nothing written twice
    for h in headers:
        meta, params = marshal.loads(blobs[h[6]:h[6] + h[7]])  # this machine's checked form, not a row
        assert meta["id"] == h[1] and params["opt"] == {"name": "adam"}
