"""Foreign data: hostile stores built with git plumbing, pulled or committed in place.

Each attack is a real store branch: a clone of the user's repository whose
store branch gets one crafted experiment (``git hash-object -w``, ``git
mktree``, ``git read-tree --prefix`` into a private index, ``git
commit-tree``, ``git update-ref``), then ``gitxp pull`` from it; or the same
commit made directly on the local store branch, for data that is already in
the store (an older gitxp, a hand edit, a pull from before these checks).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

import gitxp
from conftest import fsck, gitxp as run_gitxp, run_git

BAD_ID = "20260101-120000-badbadbad000"
BAD_DIR = f"experiments/2026-01-01/{BAD_ID}"


# ---------------------------------------------------------------- helpers


def record(repo: Path, name: str = "good", loss: float = 0.5) -> str:
    with gitxp.start(repo=str(repo), name=name, params={"lr": 0.1}, tags={"team": "a"}, log_hardware=False, capture_env=False) as xp:
        xp.log_metric("loss", loss)
    return xp.id


def _blob(repo: Path, data: bytes) -> str:
    return run_git(repo, "hash-object", "-w", "--stdin", input=data).strip()


def _mktree(repo: Path, files: dict[str, bytes]) -> str:
    lines = [f"100644 blob {_blob(repo, data)}\t{name}" for name, data in sorted(files.items())]
    return run_git(repo, "mktree", input=("\n".join(lines) + "\n").encode()).strip()


def experiment_yaml(**fields: str) -> bytes:
    """A plausible experiment.yaml; ``fields`` replace lines by key (raw YAML values)."""
    base = {
        "id": BAD_ID, "name": "evil", "parent": "null", "status": "completed",
        "created": "'2026-01-01T12:00:00.000Z'", "ended": "'2026-01-01T12:00:01.000Z'",
        "tags": "{}", "source": "{branch: main, commit: null, dirty: false}", "metrics": "{}",
    }
    base.update(fields)
    return "".join(f"{k}: {v}\n" for k, v in base.items()).encode()


def bad_id(i: int) -> str:
    return f"20260101-1200{i:02d}-badbadbad0{i:02d}"


class StoreIndex:
    """Plumbing on ``repo``'s store branch through a private index (read from the branch tip), so crafting never touches the user's index."""

    def __init__(self, repo: Path, name: str) -> None:
        self.repo = repo
        self.env = {**os.environ, "GIT_INDEX_FILE": str(repo / ".git" / name)}
        self.tip = run_git(repo, "rev-parse", "gitxp").strip()
        self.git("read-tree", "gitxp")

    def git(self, *args: str, input: bytes | None = None) -> str:
        r = subprocess.run(["git", *args], cwd=self.repo, env=self.env, capture_output=True, input=input, check=False)
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout.decode().strip()

    def commit(self, message: str) -> str:
        """Commit the index on top of the tip, move the store branch there and drop the index."""
        tree = self.git("write-tree")
        os.unlink(self.env["GIT_INDEX_FILE"])
        commit = self.git("commit-tree", tree, "-p", self.tip, "-m", message)
        self.git("update-ref", "refs/heads/gitxp", commit, self.tip)
        return commit


def craft(repo: Path, files: dict[str, bytes], *, exp_dir: str = BAD_DIR, root_files: dict[str, bytes] | None = None, more: dict[str, dict[str, bytes]] | None = None) -> str:
    """Commit ``files`` as one experiment folder on top of ``repo``'s store branch, with plumbing only.

    ``more`` adds further experiment folders: id -> files.
    """
    index = StoreIndex(repo, "craft-index")
    git = index.git
    git("rm", "-q", "--cached", "-r", "--ignore-unmatch", exp_dir)
    for d, content in [(exp_dir, files), *((f"experiments/2026-01-01/{i}", c) for i, c in (more or {}).items())]:
        if content:
            git("read-tree", f"--prefix={d}/", _mktree(repo, content))
    for name, data in (root_files or {}).items():
        git("update-index", "--add", "--cacheinfo", f"100644,{_blob(repo, data)},{name}")
    return index.commit(f"gitxp: {BAD_ID} crafted completed")


@pytest.fixture
def mine(git_repo: Path) -> Path:
    """The user's repository with one good experiment in its store."""
    record(git_repo)
    return git_repo


def hostile(tmp_path: Path, mine: Path, files: dict[str, bytes], **kw: object) -> Path:
    """A clone of ``mine`` whose store branch adds one crafted experiment."""
    evil = tmp_path / "evil"
    tmp_path.mkdir(parents=True, exist_ok=True)
    run_git(tmp_path, "clone", "-q", str(mine), str(evil))
    run_git(evil, "fetch", "-q", "origin", "gitxp:gitxp")
    craft(evil, files, **kw)  # type: ignore[arg-type]
    return evil


def snapshot(repo: Path) -> tuple[str, str]:
    return run_git(repo, "rev-parse", "gitxp"), run_git(repo, "log", "--format=%H %P %s", "gitxp")


def assert_refused(repo: Path, source: Path, *needles: str, budget: float = 10.0, cmd: str = "pull") -> str:
    """``gitxp pull SOURCE`` fails (exit 1) fast, in one line, and changes nothing."""
    before = snapshot(repo)
    objects = run_git(repo, "cat-file", "--batch-all-objects", "--batch-check")
    t = time.monotonic()
    r = run_gitxp(repo, cmd, str(source), check=False, timeout=60)
    elapsed = time.monotonic() - t
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("Error: "), r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr
    assert elapsed < budget, f"{cmd} took {elapsed:.1f}s"
    assert snapshot(repo) == before
    assert run_git(repo, "cat-file", "--batch-all-objects", "--batch-check") == objects  # nothing left behind
    assert run_git(repo, "for-each-ref", "refs/gitxp/") == ""
    fsck(repo)
    return r.stderr


def assert_clean(r: subprocess.CompletedProcess[str], code: int = 0) -> None:
    assert r.returncode == code, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr


def timed(repo: Path, *args: str, budget: float = 10.0, code: int = 0) -> subprocess.CompletedProcess[str]:
    t = time.monotonic()
    r = run_gitxp(repo, *args, check=False, timeout=60)
    assert time.monotonic() - t < budget, f"gitxp {' '.join(args)} took {time.monotonic() - t:.1f}s"
    assert_clean(r, code)
    return r


def billion_laughs(depth: int = 9, width: int = 9) -> str:
    out = 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, depth):
        out += f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]\n"
    return out


def merge_key_bomb(depth: int = 9) -> str:
    out = "m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9}\n"
    for i in range(1, depth):
        out += f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 9) + "]}\n"
    return out


# ---------------------------------------------------------------- 1. YAML limits

YAML_BOMBS = {
    "params-laughs": {"experiment.yaml": experiment_yaml(), "params.yaml": billion_laughs().encode()},
    "tags-laughs": {"experiment.yaml": experiment_yaml(tags="&t0 {a: [x, x, x, x, x, x, x, x, x, x]}\nt1: &t1 [*t0, *t0, *t0, *t0, *t0, *t0, *t0, *t0, *t0, *t0]\nt2: &t2 [*t1, *t1, *t1, *t1, *t1, *t1, *t1, *t1, *t1, *t1]\nt3: &t3 [*t2, *t2, *t2, *t2, *t2, *t2, *t2, *t2, *t2, *t2]\nt4: &t4 [*t3, *t3, *t3, *t3, *t3, *t3, *t3, *t3, *t3, *t3]\nt5: &t5 [*t4, *t4, *t4, *t4, *t4, *t4, *t4, *t4, *t4, *t4]\nt6: [*t5, *t5, *t5, *t5, *t5, *t5, *t5, *t5, *t5, *t5]")},
    "params-merge-keys": {"experiment.yaml": experiment_yaml(), "params.yaml": merge_key_bomb().encode()},
    "params-deep": {"experiment.yaml": experiment_yaml(), "params.yaml": ("a: " + "[" * 500 + "]" * 500 + "\n").encode()},
    "params-recursive": {"experiment.yaml": experiment_yaml(), "params.yaml": b"a: &a [1, *a]\n"},
}


@pytest.mark.parametrize("case", sorted(YAML_BOMBS))
def test_yaml_bomb_is_refused_by_pull_within_seconds(case: str, tmp_path: Path, mine: Path) -> None:
    evil = hostile(tmp_path, mine, YAML_BOMBS[case])
    err = assert_refused(mine, evil, BAD_ID, budget=8)
    assert any(w in err for w in ("alias", "nesting", "recursive")), err


def test_yaml_bombs_already_in_the_store_are_shown_damaged_quickly(mine: Path) -> None:
    good = run_git(mine, "log", "-1", "--format=%s", "gitxp").split()[1]
    cases = {bad_id(i): {**files, "experiment.yaml": files["experiment.yaml"].replace(BAD_ID.encode(), bad_id(i).encode())} for i, files in enumerate(YAML_BOMBS.values())}
    craft(mine, {}, more=cases)
    r = timed(mine, "log", "--all", "--oneline", budget=8)
    assert r.stdout.count("damaged") == len(cases) and good[-12:-4] in r.stdout
    r = timed(mine, "table", "--format", "json", budget=8)
    rows = {row["id"]: row for row in __import__("json").loads(r.stdout)}
    assert rows[good]["status"] == "completed" and all(rows[i]["status"] == "damaged" for i in cases)
    timed(mine, "show", good, budget=8)
    for exp_id in cases:
        r = timed(mine, "show", exp_id, budget=8)
        assert "Damaged:" in r.stdout
    for args in (("diff", good, bad_id(0)), ("report", good, bad_id(1))):
        timed(mine, *args, budget=8)


def test_yaml_limits_in_the_loader(tmp_path: Path) -> None:
    """One loader for stored YAML; a parameter file of the user's goes through the same limits."""
    from gitxp.store import layout
    from gitxp.errors import ParamError, UnsafeDataError
    from gitxp.params import yaml12_load

    for text in (billion_laughs(), merge_key_bomb(), "a: &a [1, *a]\n", "[" * 200 + "]" * 200):
        with pytest.raises(UnsafeDataError):
            layout.load_yaml(text.encode(), what="x.yaml")
    bomb = tmp_path / "p.yaml"
    bomb.write_text(billion_laughs())
    with pytest.raises(ParamError, match="alias"):
        yaml12_load(bomb.read_text(), source=str(bomb))
    # a few honest aliases are fine, and what gitxp writes never uses them
    assert layout.load_yaml(b"a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}
    shared = [1, 2]
    assert "*" not in layout.dump_yaml({"a": shared, "b": shared})


# ---------------------------------------------------------------- 2. typed fields

BAD_FIELDS = {
    "metrics-list": ("metrics", "[1, 2]"),
    "metrics-scalar-inside": ("metrics", "{loss: 3}"),
    "source-string": ("source", "'str'"),
    "tags-int": ("tags", "5"),
    "name-list": ("name", "[1, 2]"),
    "command-int": ("command", "5"),
    "created-int": ("created", "5"),
    "exit-code-string": ("exit_code", "'zero'"),
    "notes-mapping": ("notes", "{a: 1}"),
    "status-unknown": ("status", "pwned"),
    "summary-list": ("summary", "[1]"),
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_mistyped_field_is_refused_by_pull(case: str, tmp_path: Path, mine: Path) -> None:
    field, value = BAD_FIELDS[case]
    evil = hostile(tmp_path, mine, {"experiment.yaml": experiment_yaml(**{field: value})})
    assert_refused(mine, evil, BAD_ID, repr(field))


def test_mistyped_fields_in_the_store_never_stop_a_listing(mine: Path) -> None:
    good = run_git(mine, "log", "-1", "--format=%s", "gitxp").split()[1]
    cases = {bad_id(i): (field, value) for i, (field, value) in enumerate(BAD_FIELDS.values())}
    craft(mine, {}, more={i: {"experiment.yaml": experiment_yaml(id=i, **{f: v}), "params.yaml": b"lr: 0.2\n"} for i, (f, v) in cases.items()})
    r = timed(mine, "log", "--all")
    assert f"experiment {good}" in r.stdout and all(f"experiment {i}" in r.stdout for i in cases)
    assert r.stdout.count("Damaged:") == len(cases)
    timed(mine, "log", "--all", "--oneline", "--format", "{short} {name} {status} {metrics.loss} {tags.team}")
    r = timed(mine, "table", "--format", "csv")
    assert good in r.stdout and all(i in r.stdout for i in cases)
    timed(mine, "table")
    timed(mine, "table", "--where", "metrics.loss < 1", "--sort", "-created")
    timed(mine, "show", good)
    for exp_id, (field, _) in cases.items():
        r = timed(mine, "show", exp_id)
        assert "damaged" in r.stdout and repr(field) in r.stdout, r.stdout
    r = timed(mine, "log", "--all", "--status", "damaged", "--oneline")
    assert r.stdout.count("damaged") == len(cases) and good[-12:-4] not in r.stdout
    with gitxp.open(str(mine)) as store:
        for exp_id, (field, _) in cases.items():
            rec = store.get(exp_id)
            assert rec.status == "damaged" and any(repr(field) in p for p in rec.meta["damaged"])


# ---------------------------------------------------------------- 3. Parquet footers


def _parquet(table: object) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _wrong_types() -> bytes:
    import pyarrow as pa

    return _parquet(pa.table({"name": ["loss"], "step": ["zero"], "value": ["high"], "timestamp": ["now"]}))


def _many_rows(rows: int = 25_000_000, batch: int = 1_000_000) -> bytes:
    """A small file that decodes to tens of millions of rows (one row group per batch)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gitxp.store import parquet as metrics

    one = pa.table({
        "name": pa.array(["loss"] * batch).dictionary_encode(),
        "step": pa.array([0] * batch, pa.int64()),
        "value": pa.array([0.0] * batch, pa.float64()),
        "timestamp": pa.array([0] * batch, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    }).cast(metrics.schema())
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, metrics.schema(), compression="zstd") as w:
        for _ in range(rows // batch):
            w.write_table(one)
    return sink.getvalue().to_pybytes()


def test_metrics_with_wrong_column_types_are_refused_by_pull_and_push(tmp_path: Path, mine: Path) -> None:
    evil = hostile(tmp_path, mine, {"experiment.yaml": experiment_yaml(), "metrics.parquet": _wrong_types()})
    assert_refused(mine, evil, BAD_ID, "step")
    run_git(mine, "config", "receive.denyCurrentBranch", "ignore")
    bare = tmp_path / "bare.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(evil), str(bare))
    run_git(bare, "fetch", "-q", str(evil), "+gitxp:gitxp")
    record(mine, "newer")  # the local store moved on, so push has to merge the remote's first
    assert_refused(mine, bare, BAD_ID, "step", cmd="push")


def test_tiny_parquet_with_millions_of_rows_is_refused_from_its_footer(tmp_path: Path, mine: Path) -> None:
    data = _many_rows()
    assert len(data) < 4 * 2**20
    evil = hostile(tmp_path, mine, {"experiment.yaml": experiment_yaml(), "metrics.parquet": data})
    assert_refused(mine, evil, BAD_ID, "rows", budget=8)


def test_parquet_footer_limits(tmp_path: Path) -> None:
    import pyarrow as pa

    from gitxp.store import parquet as metrics

    from gitxp.store import parquet_checks
    from gitxp.errors import UnsafeDataError

    ok = metrics.to_parquet_bytes(metrics.rows_to_table([("loss", 0, 0.5, 1.0), ("loss", 1, 0.4, 2.0)]))
    assert parquet_checks.from_parquet_bytes(ok).num_rows == 2
    with pytest.raises(UnsafeDataError, match="column 'step'"):
        parquet_checks.from_parquet_bytes(_wrong_types())
    with pytest.raises(UnsafeDataError, match="rows"):
        parquet_checks.check_parquet(ok, what="metrics.parquet", max_rows=1)
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": ["x" * 1000] * 1000}), sink, use_dictionary=False, compression="zstd")
    flat = sink.getvalue().to_pybytes()  # about 1 MB uncompressed in a few kilobytes
    assert parquet_checks.check_parquet(flat, what="table t").metadata.num_rows == 1000
    with pytest.raises(UnsafeDataError, match="uncompressed"):
        parquet_checks.check_parquet(flat, what="table t", max_bytes=100 * len(flat))
    with pytest.raises(UnsafeDataError, match="byte limit"):
        parquet_checks.check_parquet(flat, what="table t", max_bytes=len(flat) - 1)
    wide = _parquet(pa.table({f"c{i}": [1] for i in range(parquet_checks.MAX_PARQUET_COLUMNS + 1)}))
    with pytest.raises(UnsafeDataError, match="columns"):
        parquet_checks.from_parquet_bytes(wide, what="table wide")
    hw = _parquet(pa.table({"timestamp": pa.array([0], pa.int64()).cast(pa.timestamp("us", tz="UTC")), "cpu_percent": ["hot"]}))
    with pytest.raises(UnsafeDataError, match="cpu_percent"):
        parquet_checks.from_parquet_bytes(hw, what="hardware.parquet")


def test_damaged_parquet_in_the_store_is_an_error_not_a_traceback(mine: Path) -> None:
    craft(mine, {"experiment.yaml": experiment_yaml(), "metrics.parquet": _wrong_types(), "hardware.parquet": _wrong_types()})
    timed(mine, "show", BAD_ID)
    r = timed(mine, "metrics", BAD_ID, code=1)
    assert r.stderr.startswith("Error: ") and "step" in r.stderr
    r = timed(mine, "show", BAD_ID, "--hardware", code=1)
    assert r.stderr.startswith("Error: ")


# ---------------------------------------------------------------- 4. keys: in gitxp.yaml


def test_keys_mapping_is_refused_by_pull_and_reported_by_key_show(tmp_path: Path, mine: Path) -> None:
    doc = run_git(mine, "show", "gitxp:gitxp.yaml")
    store_id = next(line.split(":", 1)[1].strip() for line in doc.splitlines() if line.startswith("store_id"))
    evil_doc = f"format: 1\nstore_id: {store_id}\nkeys: {{a: b}}\n".encode()
    evil = hostile(tmp_path, mine, {}, root_files={"gitxp.yaml": evil_doc})
    assert_refused(mine, evil, "keys")
    for bad in ("{a: b}", "[1234]", "[not-a-fingerprint]"):
        craft(mine, {}, root_files={"gitxp.yaml": f"format: 1\nstore_id: {store_id}\nkeys: {bad}\n".encode()})
        r = run_gitxp(mine, "key", "show", check=False)
        assert_clean(r, 1)
        assert r.stderr.startswith("Error: ") and "keys" in r.stderr and len(r.stderr.splitlines()) == 1


# ---------------------------------------------------------------- 5. names


@pytest.mark.parametrize("args", [
    ("--name", "a\nb"),
    ("--name", "x\x1b]0;pwned\x07"),
    ("--tag", "team=a\x1b[2J"),
    ("--tag", "te\nam=a"),
    ("-p", "l\nr=1"),
    ("--note", "look \x1b[31mhere"),
])
def test_control_characters_are_refused_at_start(args: tuple[str, str], git_repo: Path) -> None:
    r = run_gitxp(git_repo, "start", *args, "--", "true", check=False)
    assert_clean(r, 2)
    assert r.stderr.startswith("Error: ") and "control character" in r.stderr and len(r.stderr.splitlines()) == 1
    assert run_git(git_repo, "rev-parse", "-q", "--verify", "gitxp", check=False) == ""


def test_control_characters_are_refused_by_tag_note_and_the_api(mine: Path) -> None:
    for args in (("tag", "@", "k\x01ey=v"), ("tag", "@", "k=\x1b[2Jv"), ("note", "@", "\x1b]8;;http://evil\x07x")):
        r = run_gitxp(mine, *args, check=False)
        assert_clean(r, 2)
        assert "control character" in r.stderr
    assert "control" not in run_gitxp(mine, "note", "@", "two\nlines\tare fine").stderr
    with pytest.raises(gitxp.GitxpError, match="control character"):
        gitxp.start(repo=str(mine), name="a\rb", log_hardware=False, capture_env=False)
    with gitxp.start(repo=str(mine), name="api", log_hardware=False, capture_env=False) as xp:
        with pytest.raises(ValueError, match="control character"):
            xp.log_metric("lo\nss", 1.0)
        with pytest.raises(gitxp.UsageError, match="control character"):
            xp.log_params({"a\x1b": 1})
        with pytest.raises(gitxp.UsageError, match="control character"):
            xp.set_tags({"k": "v\n"})
        with pytest.raises(gitxp.UsageError, match="control character"):
            xp.note("\x1b[2J")
        f = mine / "a.txt"
        f.write_text("x")
        with pytest.raises(gitxp.GitxpError, match="control character"):
            xp.log_artifact(f, "a\nb.txt", encrypt=False)
        xp.log_metric("loss", 1.0)
        xp.summary["best\nacc"] = 0.9  # assigned directly: no call to refuse it
        xp.tags["k\x1b"] = ["v\n"]
    with gitxp.open(str(mine)) as store:
        rec = store.get(xp.id)
        assert rec.status == "completed" and "damaged" not in rec.meta
        assert dict(rec.summary) == {"best?acc": 0.9} and rec.tags["k?"] == "['v\\n']"
    fsck(mine)


@pytest.mark.parametrize("field,value", [
    ("name", '"x\\nSigned-off-by: Mallory <m@evil>"'),
    ("name", '"x\\e]0;pwned\\a"'),
    ("tags", '{"k\\n": v}'),
    ("tags", '{k: "\\e[2J"}'),
    ("notes", '"\\e[31mred"'),
    ("metrics", '{"lo\\nss": {last: 1.0, min: 1.0, max: 1.0, count: 1, last_step: 0}}'),
])
def test_control_characters_are_refused_by_pull(field: str, value: str, tmp_path: Path, mine: Path) -> None:
    evil = hostile(tmp_path, mine, {"experiment.yaml": experiment_yaml(**{field: value})})
    assert_refused(mine, evil, BAD_ID, "control character")


def test_control_characters_in_params_artifacts_and_metric_log_are_refused_by_pull(tmp_path: Path, mine: Path) -> None:
    from gitxp.store import parquet as metrics

    cases = [
        {"params.yaml": b'"l\\nr": 1\n'},
        {"artifacts.yaml": b'- {path: "a\\e[2Jb", size: 1, digest: x, encrypted: false, parts: 1}\n'},
        {"metrics.parquet": metrics.to_parquet_bytes(metrics.rows_to_table([("lo\x1b[2Jss", 0, 0.5, 1.0)]))},
    ]
    for i, files in enumerate(cases):
        evil = hostile(tmp_path / str(i), mine, {"experiment.yaml": experiment_yaml(), **files})
        assert_refused(mine, evil, BAD_ID, "control character")


def test_escape_sequences_in_the_store_never_reach_the_terminal(mine: Path) -> None:
    craft(mine, {
        "experiment.yaml": experiment_yaml(name='"x\\e]0;pwned\\a"', tags='{k: "\\e[2Jv"}', notes='"\\e[31mred"'),
        "params.yaml": b'"p\\e[1A": "\\e]8;;http://evil\\a"\n',
        "output.log": b"step 1\x1b[2J\x1b]0;title\x07 done\n",
    })
    for env in ({}, {"FORCE_COLOR": "1"}):
        for args in (("log", "--all"), ("log", "--all", "--oneline"), ("show", BAD_ID, "--output"), ("table",), ("table", "--format", "markdown"), ("table", "--format", "csv")):
            r = run_gitxp(mine, *args, check=False, env=env)
            assert_clean(r)
            assert "\x1b]" not in r.stdout and "\x1b[2J" not in r.stdout and "\x1b[1A" not in r.stdout and "\x07" not in r.stdout, (args, r.stdout)
            if not env:
                assert "\x1b" not in r.stdout, (args, r.stdout)


def test_newline_in_a_name_never_injects_commit_trailers(mine: Path) -> None:
    """The prepare-commit-msg hook names experiments on the committed tree; a stored name must not add trailers."""
    head_tree = run_git(mine, "rev-parse", "HEAD^{tree}").strip()
    name = '"x\\nSigned-off-by: Mallory <m@evil>\\nCo-authored-by: Mallory <m@evil>"'
    craft(mine, {"experiment.yaml": experiment_yaml(name=name, source=f"{{branch: main, commit: null, dirty: false, tree: {head_tree}}}")})
    from gitxp.remote import hooks
    from gitxp.store.record import Record

    with gitxp.open(str(mine)) as store:  # a record as an older reader kept it, name and all
        raw = Record(store, BAD_ID, "", meta={"name": "x\nSigned-off-by: M <m@evil>", "summary": {"a\nb": 1.0}}, params={})
        assert "\n" not in hooks._describe(raw)
    run_gitxp(mine, "hooks", "install")
    run_git(mine, "commit", "-q", "--allow-empty", "-m", "same code")  # the crafted experiment's tree
    body = run_git(mine, "log", "-1", "--format=%B")
    assert "Gitxp-Experiments:" in body, body
    assert "Signed-off-by" not in body and "Co-authored-by" not in body, body
    (mine / "train.py").write_text("print('v2')\n")
    with gitxp.start(repo=str(mine), name="honest", log_hardware=False, capture_env=False):
        pass
    run_git(mine, "commit", "-q", "-am", "train v2")
    trailers = run_git(mine, "log", "-1", "--format=%(trailers)")
    assert "Gitxp-Experiments:" in trailers and "honest" in trailers
    assert "Signed-off-by" not in trailers and "Co-authored-by" not in trailers, trailers
    fsck(mine)


def test_mistyped_environment_is_refused_by_pull_and_an_error_where_read(tmp_path: Path, mine: Path) -> None:
    files = {"experiment.yaml": experiment_yaml(), "environment.yaml": b"python: [1]\npackages: 5\n"}
    assert_refused(mine, hostile(tmp_path, mine, files), BAD_ID, "'python'")
    craft(mine, files)
    r = timed(mine, "show", BAD_ID, "--env")
    assert "(damaged: " in r.stdout and "'python'" in r.stdout
    r = timed(mine, "env", BAD_ID, code=1)
    assert r.stderr.startswith("Error: ") and "'python'" in r.stderr
