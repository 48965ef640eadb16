"""The derived listing index (``.git/gitxp/cache``, gitxp/store/index.py) through a real Store.

Experiments are committed with ``Store.commit_experiment``; listings are read
by fresh Store objects, as separate ``gitxp`` commands would. Reads from git are
counted with a spy around ``Store._read_summary`` that calls the original.
"""

from __future__ import annotations

import json
import marshal
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import fsck, run_git

from gitxp.plumbing.repo import Repo
from gitxp.store import layout
from gitxp.store.index import VERSION
from gitxp.store.store import Store

IDS = {
    "a": "20260301-100000-00000000000a",
    "b": "20260301-110000-00000000000b",
    "c": "20260302-090000-00000000000c",
    "d": "20260302-120000-00000000000d",
}


def _meta(key: str, **extra: Any) -> bytes:
    exp_id = IDS[key]
    hh = exp_id[9:11]
    doc = {"id": exp_id, "name": f"run-{key}", "status": "completed", "created": f"{layout.id_day(exp_id)}T{hh}:00:00.000+00:00", "source": {"branch": "main"}, **extra}
    return layout.dump_yaml(doc).encode()


def _commit(store: Store, key: str, params: bytes | None = None, **extra: Any) -> None:
    files = {layout.EXPERIMENT_FILE: _meta(key, **extra)}
    if params is not None:
        files[layout.PARAMS_FILE] = params
    store.commit_experiment(IDS[key], files, f"gitxp: {IDS[key]} run-{key} completed\n")


def _listing(path: Path) -> list[tuple[str, str, str, str, dict[str, Any], dict[str, Any]]]:
    """(id, tree, name, status, meta, params) of every experiment, newest first, read by a fresh Store."""
    with Store(Repo(path)) as store:
        return [(r.id, r.tree, r.name, r.status, dict(r.meta), dict(r.params)) for r in store.index()]


@pytest.fixture
def store_repo(git_repo: Path) -> Path:
    """A repository whose store holds experiments a and b (day 1) and c (day 2)."""
    with Store(Repo(git_repo)) as store:
        _commit(store, "a", b"lr: 0.1\n")
        _commit(store, "b", b"lr: 0.2\nlayers: [1, 2]\n")
        _commit(store, "c", b"lr: 0.3\n")
    return git_repo


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ids of the experiments whose YAML is read from git (Store._read_summary calls)."""
    seen: list[str] = []
    original = Store._read_summary

    def spy(self: Store, tree: str, exp_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        seen.append(exp_id)
        return original(self, tree, exp_id)

    monkeypatch.setattr(Store, "_read_summary", spy)
    return seen


def _cache(path: Path) -> Path:
    return path / ".git" / "gitxp" / "cache"


def _blobs(path: Path) -> list[Path]:
    return sorted(_cache(path).glob("index-gitxp-*.blobs"))


def test_cache_files_appear_and_hold_the_tip(store_repo: Path, reads: list[str]) -> None:
    assert not (_cache(store_repo) / "index-gitxp.marshal").exists()
    rows = _listing(store_repo)
    assert [r[0] for r in rows] == [IDS["c"], IDS["b"], IDS["a"]]
    assert [(r[2], r[3], r[5]) for r in rows] == [
        ("run-c", "completed", {"lr": 0.3}),
        ("run-b", "completed", {"lr": 0.2, "layers": [1, 2]}),
        ("run-a", "completed", {"lr": 0.1}),
    ]
    assert sorted(reads) == sorted(IDS[k] for k in "abc")
    index = _cache(store_repo) / "index-gitxp.marshal"
    assert index.is_file() and len(_blobs(store_repo)) == 1
    doc = marshal.loads(index.read_bytes())
    assert doc["version"] == VERSION
    assert doc["tip"] == run_git(store_repo, "rev-parse", "gitxp").strip()
    assert doc["blobs"] == _blobs(store_repo)[0].name
    assert doc["size"] == _blobs(store_repo)[0].stat().st_size
    exps = run_git(store_repo, "rev-parse", "gitxp:experiments/2026-03-01").strip()
    assert sorted(doc["days"]) == ["2026-03-01", "2026-03-02"]
    assert doc["days"]["2026-03-01"][0] == exps
    assert sorted(doc["days"]["2026-03-01"][1]) == [IDS["a"], IDS["b"]]
    header = doc["days"]["2026-03-02"][1][IDS["c"]]
    tree_c = run_git(store_repo, "rev-parse", f"gitxp:experiments/2026-03-02/{IDS['c']}").strip()
    assert header[:6] == ("2026-03-02T09:00:00.000+00:00", IDS["c"], "main", "completed", "run-c", tree_c)


def test_warm_listing_reads_nothing_from_git(store_repo: Path, reads: list[str]) -> None:
    cold = _listing(store_repo)
    reads.clear()
    warm = _listing(store_repo)
    assert warm == cold
    assert reads == []  # headers from the index, meta and params from the blobs file


def test_a_new_commit_rereads_only_the_changed_day(store_repo: Path, reads: list[str]) -> None:
    _listing(store_repo)
    before = marshal.loads((_cache(store_repo) / "index-gitxp.marshal").read_bytes())
    reads.clear()
    with Store(Repo(store_repo)) as store:
        _commit(store, "d", b"lr: 0.4\n")
    rows = _listing(store_repo)
    assert reads == [IDS["d"]]  # day 2 changed: c kept by its tree id, day 1 untouched
    assert [r[0] for r in rows] == [IDS["d"], IDS["c"], IDS["b"], IDS["a"]]
    after = marshal.loads((_cache(store_repo) / "index-gitxp.marshal").read_bytes())
    assert after["days"]["2026-03-01"] == before["days"]["2026-03-01"]
    assert after["blobs"] == before["blobs"] and after["size"] > before["size"]  # appended, not rewritten

    reads.clear()
    with Store(Repo(store_repo)) as store:
        store.amend(IDS["a"], tags={"best": True})  # returns the amended record: the index is brought up to date
    assert set(reads) == {IDS["a"]}  # an amendment changes the experiment's tree id; b is kept (get() reads a's files too)
    reads.clear()
    rows = _listing(store_repo)
    assert reads == []
    assert next(r for r in rows if r[0] == IDS["a"])[4]["tags"] == {"best": True}


def test_a_deleted_blobs_file_falls_back_to_git(store_repo: Path, reads: list[str]) -> None:
    cold = _listing(store_repo)
    (blobs,) = _blobs(store_repo)
    # a reader that already holds the headers when the blobs file vanishes
    with Store(Repo(store_repo)) as store:
        records = store.index()
        blobs.unlink()
        reads.clear()
        got = [(r.id, r.tree, r.name, r.status, dict(r.meta), dict(r.params)) for r in records]
    assert got == cold
    assert sorted(reads) == sorted(IDS[k] for k in "abc")
    # the next reader finds the index unusable and rebuilds it from git
    reads.clear()
    assert _listing(store_repo) == cold
    assert sorted(reads) == sorted(IDS[k] for k in "abc")
    (rebuilt,) = _blobs(store_repo)
    assert rebuilt.name != blobs.name
    reads.clear()
    assert _listing(store_repo) == cold and reads == []


def test_deleting_the_cache_folder_loses_nothing(store_repo: Path, reads: list[str]) -> None:
    cold = _listing(store_repo)
    tip = run_git(store_repo, "rev-parse", "gitxp").strip()
    shutil.rmtree(_cache(store_repo))
    reads.clear()
    assert _listing(store_repo) == cold
    assert sorted(reads) == sorted(IDS[k] for k in "abc")
    assert run_git(store_repo, "rev-parse", "gitxp").strip() == tip  # the store branch is not the cache
    assert (_cache(store_repo) / "index-gitxp.marshal").is_file()
    fsck(store_repo)


def test_results_equal_across_cold_and_warm_with_damage(store_repo: Path) -> None:
    with Store(Repo(store_repo)) as store:
        store.commit_experiment(IDS["d"], {layout.EXPERIMENT_FILE: b"name: [not, text]\nstatus: completed\n"}, "gitxp: damaged\n")
    cold = _listing(store_repo)
    warm = _listing(store_repo)
    assert cold == warm
    damaged = next(r for r in cold if r[0] == IDS["d"])
    assert damaged[3] == "damaged"
    assert damaged[4]["damaged"] == ["field 'name' must be text, not list \"['not', 'text']\""]


_CHILD = """
import ctypes, json, os, sys
if os.geteuid() == 0 and not os.environ.get("GITXP_TEST_CAPS_DROPPED"):
    # root ignores file modes: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (PR_CAPBSET_DROP, then exec)
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            sys.exit(77)
    os.environ["GITXP_TEST_CAPS_DROPPED"] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])
from gitxp.plumbing.repo import Repo
from gitxp.store.store import Store
with Store(Repo(sys.argv[1])) as store:
    print(json.dumps([[r.id, r.name, dict(r.params)] for r in store.index()]))
"""


def test_a_read_only_cache_folder_still_lists(git_repo: Path, tmp_path: Path) -> None:
    with Store(Repo(git_repo)) as store:
        _commit(store, "a", b"lr: 0.1\n")
        _commit(store, "c", b"lr: 0.3\n")
    _listing(git_repo)
    with Store(Repo(git_repo)) as store:
        _commit(store, "d", b"lr: 0.4\n")
    cache = _cache(git_repo)
    before = {p.name: p.read_bytes() for p in cache.iterdir() if p.is_file()}
    script = tmp_path / "list_read_only.py"
    script.write_text(_CHILD)
    for p in cache.iterdir():
        os.chmod(p, 0o444)
    os.chmod(cache, 0o555)
    try:
        r = subprocess.run([sys.executable, str(script), str(git_repo)], capture_output=True, text=True, timeout=120)
    finally:
        os.chmod(cache, 0o755)
        for p in cache.iterdir():
            os.chmod(p, 0o644)
    if r.returncode == 77:
        pytest.skip("running as root without the right to drop CAP_DAC_OVERRIDE")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [[IDS["d"], "run-d", {"lr": 0.4}], [IDS["c"], "run-c", {"lr": 0.3}], [IDS["a"], "run-a", {"lr": 0.1}]]
    assert {p.name: p.read_bytes() for p in cache.iterdir() if p.is_file()} == before  # nothing written, nothing raised


def test_checked_rows_replace_blobs_only_over_the_headers_still_on_disk(tmp_path: Path) -> None:
    """A table swaps pulled listing rows for checked ones as it exits; if another process published a newer
    tip meanwhile, that process's headers stay (the swap is checked under the lock, not before it)."""
    from gitxp.store.index import LENGTH, OFFSET, IndexCache

    def refresh(tip: str, rows: dict[str, bytes]) -> Any:
        def fill(old_days: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
            exps = {k: ("2026-03-01T00:00:00Z", k, "main", "completed", k, f"tree-{tip}-{k}", -1, len(b)) for k, b in rows.items()}
            return {"2026-03-01": (f"day-{tip}", exps)}, rows
        return fill

    def never(old_days: dict[str, Any]) -> Any:
        raise AssertionError("the cache on disk should have been used")

    def blobs(cache: IndexCache, tip: str) -> dict[str, bytes | None]:
        return {h[1]: cache.read_blob(h[OFFSET], h[LENGTH]) for h in cache.headers(tip, never)}

    folder = tmp_path / "cache"
    a = IndexCache(folder, "gitxp")
    a.headers("t1", refresh("t1", {"x": b"Jrow-x", "y": b"Jrow-y"}))
    a.replace_blobs("t1", {"x": b"checked-x"})
    assert blobs(IndexCache(folder, "gitxp"), "t1") == {"x": b"checked-x", "y": b"Jrow-y"}

    a.headers("t1", never)
    IndexCache(folder, "gitxp").headers("t2", refresh("t2", {"x": b"Jnew-x"}))  # another process, a newer tip
    a.replace_blobs("t1", {"y": b"checked-y"})
    assert blobs(IndexCache(folder, "gitxp"), "t2") == {"x": b"Jnew-x"}
