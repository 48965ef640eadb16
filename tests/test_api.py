"""The Python API on real repositories, checked with the git CLI and pyarrow."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import gitxp
from conftest import fsck, run_git, state


def start(repo: Path, **kw):
    kw.setdefault("log_hardware", False)
    kw.setdefault("capture_env", False)
    return gitxp.start(repo=str(repo), **kw)


def test_context_manager_records_everything(git_repo: Path) -> None:
    before = state(git_repo)
    with start(git_repo, name="baseline", params={"lr": 0.1, "optim": {"name": "adam", "betas": [0.9, 0.99]}}, tags={"team": "vision"}) as xp:
        for i in range(100):
            xp.log_metric("loss", 1 / (i + 1), step=i)
        xp.log_metrics({"acc": 0.9, "f1": 0.8}, step=99)
        xp.log_param("epochs", 3)
        xp.summary["best_acc"] = 0.93
        xp.log_table("preds", pa.table({"x": [1, 2], "y": ["a", "b"]}))
    assert xp.status == "completed"
    assert state(git_repo) == before  # work tree, index, HEAD untouched
    fsck(git_repo)

    day = f"{xp.id[:4]}-{xp.id[4:6]}-{xp.id[6:8]}"
    base = f"experiments/{day}/{xp.id}"
    meta = yaml.safe_load(run_git(git_repo, "show", f"gitxp:{base}/experiment.yaml"))
    assert meta["id"] == xp.id and meta["name"] == "baseline" and meta["status"] == "completed"
    assert meta["metrics"]["loss"] == {"last": 0.01, "min": 0.01, "max": 1.0, "count": 100, "last_step": 99}
    assert meta["summary"] == {"best_acc": 0.93}
    assert meta["tags"] == {"team": "vision"}
    assert meta["source"]["branch"] == "main" and meta["source"]["dirty"] is False
    assert meta["created"].endswith("Z") and meta["ended"].endswith("Z")
    params = yaml.safe_load(run_git(git_repo, "show", f"gitxp:{base}/params.yaml"))
    assert params == {"lr": 0.1, "optim": {"name": "adam", "betas": [0.9, 0.99]}, "epochs": 3}

    raw = subprocess.run(["git", "show", f"gitxp:{base}/metrics.parquet"], cwd=git_repo, capture_output=True, check=True).stdout
    table = pq.read_table(io.BytesIO(raw))
    assert table.schema.field("name").type == pa.dictionary(pa.int32(), pa.string())
    assert table.schema.field("step").type == pa.int64()
    assert table.schema.field("value").type == pa.float64()
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    names = table.column("name").to_pylist()
    assert names == sorted(names) and table.num_rows == 102
    loss_steps = [s for n, s in zip(names, table.column("step").to_pylist()) if n == "loss"]
    assert loss_steps == list(range(100))

    subject = run_git(git_repo, "log", "-1", "--format=%s", "gitxp")
    assert subject.startswith(f"gitxp: {xp.id} baseline completed")
    log = run_git(git_repo, "log", "--oneline", "gitxp").splitlines()
    assert len(log) == 2 and "init store" in log[1]
    # the code snapshot is the tree of HEAD when clean: no copy
    assert run_git(git_repo, "rev-parse", f"gitxp:{base}/code").strip() == run_git(git_repo, "rev-parse", "HEAD^{tree}").strip()


def test_read_back_through_the_store(git_repo: Path) -> None:
    with start(git_repo, name="a", params={"lr": 0.1}) as xp:
        xp.log_metric("loss", 0.5)
        xp.log_metric("loss", 0.25)
        xp.log_table("t", pa.table({"k": [1]}))
    store = gitxp.open(str(git_repo))
    rec = store.get("@")
    assert rec.id == xp.id and rec.params == {"lr": 0.1} and rec.status == "completed"
    m = rec.metrics()
    assert m.column("step").to_pylist() == [0, 1]  # steps count up when not given
    assert rec.table("t").column("k").to_pylist() == [1]
    t = store.table()
    assert isinstance(t, pa.Table) and t.column("id").to_pylist() == [xp.id]
    assert t.column("params.lr").to_pylist() == [0.1] and t.column("metrics.loss").to_pylist() == [0.25]


def test_exception_marks_failed_and_reraises(git_repo: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        with start(git_repo, name="boom") as xp:
            xp.log_metric("loss", 1.0)
            1 / 0
    rec = gitxp.open(str(git_repo)).get("boom")
    assert rec.status == "failed"
    assert rec.meta["error"]["type"] == "ZeroDivisionError"
    assert "1 / 0" in rec.meta["error"]["traceback"]
    assert rec.metric_summary["loss"]["count"] == 1


def test_keyboard_interrupt_marks_interrupted(git_repo: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with start(git_repo, name="ctrlc"):
            raise KeyboardInterrupt
    assert gitxp.open(str(git_repo)).get("ctrlc").status == "interrupted"


def test_plain_object_and_finish(git_repo: Path) -> None:
    xp = start(git_repo, name="plain")
    xp.log_metric("x", 1)
    assert gitxp.current() is xp
    xp.finish()
    assert gitxp.current() is None
    with pytest.raises(gitxp.GitxpError, match="finished"):
        xp.log_metric("x", 2)
    assert gitxp.open(str(git_repo)).get("plain").metric_summary["x"]["last"] == 1.0


def test_log_metric_racing_finish_from_another_thread_is_refused_cleanly(git_repo: Path) -> None:
    """A thread still logging while another finishes: it gets 'finished' (never BufferError), the commit a clean prefix."""
    import threading

    for attempt in range(5):
        xp = start(git_repo, name=f"race{attempt}")
        logged, errors, started = [0], [], threading.Event()

        def log() -> None:
            step = 0
            try:
                while step < 50_000_000:
                    xp.log_metric("m", step * 0.5, step=step)
                    step += 1
                    logged[0] = step
                    if step == 1000:
                        started.set()
            except BaseException as exc:  # noqa: BLE001 - what the racing call raised is the point
                errors.append(exc)
            started.set()

        t = threading.Thread(target=log)
        t.start()
        started.wait(30)
        xp.finish()
        t.join(30)
        assert len(errors) == 1 and isinstance(errors[0], gitxp.GitxpError) and "finished" in str(errors[0]), errors
        raw = subprocess.run(["git", "show", f"{gitxp.open(str(git_repo)).get(xp.id).tree}:metrics.parquet"],
                             cwd=git_repo, capture_output=True, check=True).stdout
        table = pq.read_table(io.BytesIO(raw))
        steps, values = table.column("step").to_pylist(), table.column("value").to_pylist()
        assert steps == list(range(len(steps))) and values == [s * 0.5 for s in steps]
        assert 1000 <= len(steps) <= logged[0]  # a call that returned after finish took the points is the only loss
    fsck(git_repo)


def test_the_default_step_follows_the_newest_across_flushes(git_repo: Path) -> None:
    """No step given: one more than the metric's newest step, whether or not a flush has taken the points since."""
    import pyarrow.parquet as pq

    with start(git_repo, name="steps") as xp:
        xp.log_metric("loss", 1.0)  # 0
        xp.log_metric("loss", 0.9)  # 1
        xp.flush()
        xp.log_metric("loss", 0.8)  # 2, after a flush took 0 and 1
        xp.log_metric("loss", 0.7, step=10)
        xp.flush()
        xp.log_metric("loss", 0.6)  # 11
        xp.log_metrics({"loss": 0.5, "acc": 0.1})  # 12, and acc's first: 0
    raw = subprocess.run(["git", "show", f"{gitxp.open(str(git_repo)).get('steps').tree}:metrics.parquet"],
                         cwd=git_repo, capture_output=True, check=True).stdout
    table = pq.read_table(io.BytesIO(raw)).to_pylist()
    assert [(r["name"], r["step"]) for r in table] == [("acc", 0), *(("loss", s) for s in (0, 1, 2, 10, 11, 12))]


def test_any_real_number_is_logged_as_its_float(git_repo: Path) -> None:
    """What training loops hand over: numpy scalars and 0-d arrays, ints, bools, Decimals, numeric strings."""
    from decimal import Decimal

    np = pytest.importorskip("numpy")  # torch's tensors convert the same way (__float__); importing it here would weigh on every later test
    values: list = [np.float32(0.25), np.float64(0.5), np.int64(3), np.array(1.25), 7, True, Decimal("1.5"), " 2.5 ", 10**20]
    with start(git_repo, name="reals") as xp:
        for v in values:
            xp.log_metric("v", v)
        for bad in (np.array([1.0, 2.0]), "0.5x"):  # not one number: refused, nothing kept
            with pytest.raises((ValueError, TypeError), match="must be a number"):
                xp.log_metric("v", bad)
    got = gitxp.open(str(git_repo)).get("reals").metrics().to_pylist()
    assert [(r["step"], r["value"]) for r in got] == [(i, float(v)) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        (("", 1.0), ValueError, "non-empty"),
        ((3, 1.0), TypeError, "non-empty"),
        (("loss", "abc"), ValueError, "must be a number"),
        (("loss", None), TypeError, "must be a number"),
        (("loss", 10**400), ValueError, "must be a number"),  # an int no float holds: not a bare OverflowError
        (("loss", 1.0, -1), ValueError, "int >= 0"),
        (("loss", 1.0, 1.5), TypeError, "int >= 0"),
    ],
)
def test_log_metric_validates(git_repo: Path, args: tuple, exc: type, match: str) -> None:
    with start(git_repo, name="v") as xp:
        with pytest.raises(exc, match=match):
            xp.log_metric(*args)
        xp.log_metric("nan", float("nan"))  # non-finite values are kept
        xp.log_metric("inf", float("inf"))


def test_unsupported_param_type_names_the_key(git_repo: Path) -> None:
    with pytest.raises(TypeError, match="'model.layers'"):
        start(git_repo, params={"model": {"layers": object()}})
    with start(git_repo, name="p") as xp:
        with pytest.raises(gitxp.ParamTypeError, match="'fn'"):
            xp.log_param("fn", print)


def test_resume_appends_and_history_shows_both(git_repo: Path) -> None:
    with start(git_repo, name="long") as xp:
        xp.log_metric("loss", 1.0, step=0)
        xp.log_metric("loss", 0.5, step=1)
    with start(git_repo, resume=xp.id) as xp2:
        assert xp2.id == xp.id
        xp2.log_metric("loss", 0.25, step=2)
    rec = gitxp.open(str(git_repo)).get(xp.id)
    assert rec.metrics().column("step").to_pylist() == [0, 1, 2]
    assert rec.status == "completed" and len(rec.meta["sessions"]) == 2
    subjects = run_git(git_repo, "log", "--format=%s", "gitxp").splitlines()
    assert sum(s.startswith(f"gitxp: {xp.id} long completed") for s in subjects) == 2


def test_parent_and_refs(git_repo: Path) -> None:
    with start(git_repo, name="sweep") as parent:
        pass
    ids = []
    for i in range(3):
        with start(git_repo, name="child", parent=parent.id[-12:], params={"i": i}) as c:
            ids.append(c.id)
    store = gitxp.open(str(git_repo))
    assert store.get("@").id == ids[-1] and store.get("@~1").id == ids[-2]
    assert store.get("child").id == ids[-1]  # a name means its newest experiment
    assert store.get(ids[0][-12:-4]).id == ids[0]  # prefix of the random part
    assert store.get(ids[0]).meta["parent"] == parent.id
    with pytest.raises(gitxp.RefError):
        store.get("nothing-like-this")
    with pytest.raises(gitxp.RefError):
        store.get("@~9")
    assert [r.params["i"] for r in store.experiments(name="child")] == [2, 1, 0]
    assert [r.params["i"] for r in store.experiments(where="params.i >= 1")] == [2, 1]


def test_ambiguous_prefix_lists_candidates(git_repo: Path) -> None:
    import gitxp.store.resolve as resolve

    class R:
        def __init__(self, i: str) -> None:
            self.id, self.name = i, "n"

    recs = [R("20260101-000000-abcd00000001"), R("20260101-000000-abcd00000002")]
    with pytest.raises(gitxp.AmbiguousRefError) as info:
        resolve.resolve(recs, "abcd")
    assert len(info.value.candidates) == 2


def test_future_format_is_refused(git_repo: Path) -> None:
    with start(git_repo, name="a"):
        pass
    blob = run_git(git_repo, "hash-object", "-w", "--stdin", input=b"format: 2\nstore_id: x\nkeys: []\n").strip()
    tree = run_git(git_repo, "mktree", input=f"100644 blob {blob}\tgitxp.yaml\n".encode()).strip()
    commit = run_git(git_repo, "commit-tree", tree, "-p", "gitxp", "-m", "future").strip()
    run_git(git_repo, "update-ref", "refs/heads/gitxp", commit)
    with pytest.raises(gitxp.FormatTooNewError, match="format 2"):
        gitxp.open(str(git_repo)).experiments()


def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(gitxp.NotARepositoryError, match="gitxp init"):
        gitxp.open(str(tmp_path))


def test_import_is_light() -> None:
    code = textwrap.dedent(
        """
        import sys, gitxp
        heavy = [m for m in ("pyarrow", "dulwich", "cryptography", "psutil", "pynvml", "yaml", "click") if m in sys.modules]
        print(",".join(heavy))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


CONCURRENT = """
import sys, gitxp
for i in range(5):
    with gitxp.start(repo=sys.argv[1], name=f"w{sys.argv[2]}", params={"i": i}, log_hardware=False, capture_env=False) as xp:
        xp.log_metric("loss", i)
"""


def test_eight_concurrent_writers(git_repo: Path) -> None:
    gitxp.open(str(git_repo)).ensure()
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(git_repo), str(w)]) for w in range(8)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 8
    store = gitxp.open(str(git_repo))
    recs = store.experiments()
    assert len(recs) == 40 and len({r.id for r in recs}) == 40
    assert sorted(r.name for r in recs) == sorted(f"w{w}" for w in range(8) for _ in range(5))
    fsck(git_repo)
    assert len(run_git(git_repo, "log", "--format=%s", "gitxp").splitlines()) == 41
