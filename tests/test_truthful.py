"""Truthful status, no hangs, no crashes: what a user logged is what is stored.

Scripts run in real subprocesses (the API and ``gitxp start``) with pandas
installed but not imported, as in most ML environments: pyarrow imports it
lazily on its first call, which cannot work while Python shuts down.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gitxp
from conftest import gitxp as run_gitxp


@pytest.fixture
def with_pandas() -> None:
    """These cases only exist where pandas is installed; it is in the dev extra."""
    assert importlib.util.find_spec("pandas") is not None, "pandas is part of the test setup: pip install -e '.[dev]'"


def _script(repo: Path, name: str, body: str) -> Path:
    path = repo / name
    path.write_text(textwrap.dedent(body))
    return path


def _python(repo: Path, script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(script)], cwd=repo, capture_output=True, text=True, timeout=120)


def _only(repo: Path) -> gitxp.Record:
    with gitxp.open(repo) as store:
        [rec] = list(store.experiments())
        return rec


def _assert_all_saved(rec: gitxp.Record, *, hardware: bool) -> None:
    assert rec.status == "completed", rec.meta
    assert rec.metric_summary["loss"]["last"] == 0.5
    assert rec.metric_summary["loss"]["count"] == 2
    assert rec.params == {"lr": 0.1, "layers": 3}
    assert rec.tags.get("team") == "vision"
    assert rec.summary.get("best") == 0.25
    assert "lost" not in str(rec.meta.get("error", ""))
    if hardware:
        assert rec.read_file("hardware.parquet") is not None


LOGS = """
    xp.log_metric("loss", 1.0)
    xp.log_metric("loss", 0.5)
    xp.log_params({"layers": 3})
    xp.set_tags(team="vision")
    xp.summary["best"] = 0.25
"""

# ---------------------------------------------------------------- nothing lost at exit


@pytest.mark.usefixtures("with_pandas")
def test_api_script_that_never_finishes_keeps_everything(git_repo: Path) -> None:
    script = _script(git_repo, "short.py", "import gitxp, sys\nxp = gitxp.start(name='short', params={'lr': 0.1})\n" + textwrap.dedent(LOGS)
                     + "assert 'pandas' not in sys.modules\n")
    r = _python(git_repo, script)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() in ("", "gitxp: created the experiment store on branch 'gitxp'"), r.stderr
    _assert_all_saved(_only(git_repo), hardware=True)


@pytest.mark.usefixtures("with_pandas")
def test_metric_flush_does_not_import_pandas(git_repo: Path) -> None:
    """Staging and the merge build Arrow arrays from raw buffers: importing pandas cost the first flush seconds."""
    script = _script(git_repo, "flush.py", """
        import sys, gitxp
        xp = gitxp.start(name='short', params={'lr': 0.1}, log_hardware=False)
        xp.log_metric("loss", 1.0, step=5)
        xp.log_metric("loss", 0.5, step=2)
        xp.log_metric("acc", 0.9)
        xp.flush()
        assert any(xp._seg_dir.glob("*.parquet")), "nothing staged"
        assert 'pandas' not in sys.modules
        xp.finish()
        assert 'pandas' not in sys.modules, "the merge at finish imported pandas"
    """)
    r = _python(git_repo, script)
    assert r.returncode == 0, r.stderr
    rec = _only(git_repo)
    assert rec.metric_summary["loss"]["count"] == 2 and rec.metric_summary["acc"]["count"] == 1


@pytest.mark.usefixtures("with_pandas")
def test_api_with_block_keeps_everything(git_repo: Path) -> None:
    body = "import gitxp\nwith gitxp.start(name='short', params={'lr': 0.1}) as xp:\n" + textwrap.indent(textwrap.dedent(LOGS), "    ")
    r = _python(git_repo, _script(git_repo, "short.py", body))
    assert r.returncode == 0, r.stderr
    _assert_all_saved(_only(git_repo), hardware=True)


@pytest.mark.usefixtures("with_pandas")
@pytest.mark.parametrize("opening", ["xp = gitxp.current()", "xp = gitxp.start()", "xp = gitxp.start().__enter__()"])
def test_wrapped_script_keeps_everything(git_repo: Path, opening: str) -> None:
    _script(git_repo, "short.py", f"import gitxp, sys\n{opening}\n" + textwrap.dedent(LOGS) + "assert 'pandas' not in sys.modules\n")
    r = run_gitxp(git_repo, "start", "-p", "lr=0.1", "--", sys.executable, "short.py", check=False)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    _assert_all_saved(_only(git_repo), hardware=True)


def test_wrapped_script_whose_data_cannot_be_staged_is_not_completed(git_repo: Path) -> None:
    """A real failure to stage (the metrics folder replaced by a file) is recorded, never dropped silently."""
    _script(git_repo, "broken.py", """
        import os, shutil, gitxp
        xp = gitxp.current()
        xp.log_metric("loss", 0.5)
        seg = os.path.join(os.environ["GITXP_RUN_DIR"], "metrics")
        shutil.rmtree(seg)
        open(seg, "w").close()
    """)
    r = run_gitxp(git_repo, "start", "--", sys.executable, "broken.py", check=False)
    assert "Traceback" not in r.stderr, r.stderr
    rec = _only(git_repo)
    assert rec.status == "failed", rec.meta
    assert "1 metric values" in rec.meta["error"]["message"], rec.meta["error"]
    assert "could not save what this process logged (1 metric values" in r.stderr
    assert f"{rec.id} broken failed" in r.stderr


# ---------------------------------------------------------------- no crash at exit


def _store_with_curves(repo: Path) -> None:
    for j in range(2):
        with gitxp.start(name=f"e{j}", params={"j": j}, repo=str(repo), log_hardware=False, capture_env=False) as xp:
            for i in range(5000):
                xp.log_metrics({"loss": 1 / (i + 1), "acc": i / 5000}, step=i)


def test_show_and_plot_always_exit_cleanly(git_repo: Path, tmp_path: Path) -> None:
    """pyarrow's dataset scanner (``pq.read_table``) left threads that aborted the process at exit (134)."""
    import os
    import shutil

    _store_with_curves(git_repo)
    cache = git_repo / ".git" / "gitxp" / "cache"
    commands = [["show", "@"], ["plot", "@", "@~1", "-m", "loss", "-o", str(tmp_path / "c.svg")]] * 20
    env = {**os.environ}
    codes: list[tuple[int, str]] = []
    for i in range(0, len(commands), 4):  # four at a time: the crash is a race, load makes it likelier
        shutil.rmtree(cache, ignore_errors=True)  # cold cache, as after a clone
        procs = [subprocess.Popen([sys.executable, "-m", "gitxp", *c], cwd=git_repo, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for c in commands[i:i + 4]]
        codes += [(p.wait(timeout=120), p.stderr.read()) for p in procs if p.stderr]
    bad = [(rc, err[-200:]) for rc, err in codes if rc != 0 or "terminate" in err or "Traceback" in err]
    assert not bad, bad
    assert len(codes) == 40


def test_read_parquet_leaves_no_thread_behind(tmp_path: Path) -> None:
    """The one way gitxp reads Parquet files: a process that exits right after never aborts."""
    import pyarrow as pa

    from gitxp.store import parquet as metrics

    data = tmp_path / "m.parquet"
    data.write_bytes(metrics.to_parquet_bytes(pa.table({"x": list(range(200_000)), "y": [float(i) for i in range(200_000)]})))
    code = f"from gitxp.store import parquet as metrics; import pyarrow as pa; metrics.read_parquet({str(data)!r}); from gitxp.store import parquet_checks; parquet_checks.from_parquet_bytes(open({str(data)!r}, 'rb').read(), what='t.parquet')"
    codes = []
    for _ in range(10):
        procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)]
        codes += [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in procs]
    assert all(rc == 0 and not err for rc, err in codes), [c for c in codes if c[0] or c[1]][:3]


def test_api_in_a_packed_repository_exits_silently(git_repo: Path) -> None:
    """Stores the API never closed: dulwich's pack ``__del__`` used to fail at exit, four blocks of noise."""
    from conftest import run_git

    _store_with_curves(git_repo)
    run_git(git_repo, "gc", "-q")
    assert list((git_repo / ".git" / "objects" / "pack").glob("*.pack"))
    script = _script(git_repo, "reader.py", """
        import gitxp
        store = gitxp.open(".")
        rec = store.get("@")
        print(rec.name, rec.metrics().num_rows, len(gitxp.open(".").experiments()))
        xp = gitxp.start(name="late", log_hardware=False, capture_env=False)
        xp.log_metric("loss", 0.5)
    """)
    r = _python(git_repo, script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["e1", "10000", "2"]
    assert r.stderr == ""
    assert _names(git_repo) == ["late", "e1", "e0"]


def _names(repo: Path) -> list[str]:
    with gitxp.open(repo) as store:
        return [r.name for r in store.experiments()]


# ---------------------------------------------------------------- bad input: one line, exit 2

BAD = os.fsdecode(b"caf\xe9")  # latin-1 bytes in argv, as Python decodes them (surrogateescape)


def _one_error_line(r: subprocess.CompletedProcess[str], *, code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize("args", [
    ["--name", BAD], ["-p", f"x={BAD}"], ["-p", f"{BAD}=1"], ["--note", BAD], ["--tag", f"k={BAD}"], ["--", "echo", BAD],
], ids=["name", "param-value", "param-key", "note", "tag", "command"])
def test_non_utf8_arguments_to_start_are_refused_before_anything_runs(git_repo: Path, args: list[str]) -> None:
    argv = ["start", "--no-hardware", *args] if "--" in args else ["start", "--no-hardware", *args, "--", "touch", "ran"]
    line = _one_error_line(run_gitxp(git_repo, *argv, check=False))
    assert "not valid UTF-8" in line and "0xE9" in line, line
    assert not (git_repo / "ran").exists()
    assert not list((git_repo / ".git" / "gitxp" / "runs").glob("*")) if (git_repo / ".git" / "gitxp" / "runs").exists() else True
    assert "died without finishing" not in run_gitxp(git_repo, "log").stderr


def test_non_utf8_note_and_tag_on_a_stored_experiment(git_repo: Path) -> None:
    run_gitxp(git_repo, "start", "--no-hardware", "--", "true")
    for argv in (["note", "@", BAD], ["tag", "@", f"k={BAD}"]):
        assert "not valid UTF-8" in _one_error_line(run_gitxp(git_repo, *argv, check=False))
    assert _only(git_repo).tags == {}


def test_non_utf8_text_from_the_api_is_a_usage_error(git_repo: Path) -> None:
    with pytest.raises(gitxp.UsageError, match="not valid UTF-8"):
        gitxp.start(name=BAD, repo=str(git_repo), log_hardware=False, capture_env=False)
    with gitxp.start(repo=str(git_repo), log_hardware=False, capture_env=False) as xp:
        with pytest.raises(gitxp.UsageError, match="not valid UTF-8"):
            xp.log_params({"path": BAD})
        with pytest.raises(ValueError, match="not valid UTF-8"):
            xp.log_metric(BAD, 1.0)
        xp.log_metric("ok", 1.0)
    assert _only(git_repo).metric_summary["ok"]["count"] == 1


@pytest.mark.parametrize("kwargs", [{"step": 2**63}, {"step": 10**30}, {"timestamp": 1e30}, {"timestamp": float("nan")}])
def test_out_of_range_step_or_time_is_refused_at_logging(git_repo: Path, kwargs: dict[str, float]) -> None:
    with gitxp.start(repo=str(git_repo), log_hardware=False, capture_env=False) as xp:
        xp.log_metric("loss", 1.0, step=2**63 - 1)  # the largest step that fits is fine
        with pytest.raises(gitxp.MetricValueError):
            xp.log_metric("loss", 0.5, **kwargs)
        with pytest.raises(gitxp.MetricValueError):
            xp.log_metric("loss", 0.5)  # the default step, one past the largest
    rec = _only(git_repo)
    assert rec.status == "completed" and rec.metric_summary["loss"]["last_step"] == 2**63 - 1


def test_wrapped_script_with_a_huge_step_is_committed_with_what_it_had(git_repo: Path) -> None:
    _script(git_repo, "huge.py", """
        import gitxp
        xp = gitxp.current()
        xp.log_metric("loss", 0.5)
        xp.log_metric("loss", 0.25, step=2**63)
    """)
    r = run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "huge.py", check=False)
    assert r.returncode == 1
    assert "MetricValueError" in r.stderr and "OverflowError" not in r.stderr
    rec = _only(git_repo)
    assert rec.status == "failed" and rec.meta["exit_code"] == 1
    assert rec.metric_summary["loss"]["count"] == 1


def test_scalars_with_a_step_out_of_range_keep_the_values(git_repo: Path) -> None:
    code = "print('loss=0.5'); print('step=1e30 loss=0.25'); print('step=-3 loss=0.125')"
    r = run_gitxp(git_repo, "start", "--no-hardware", "--scalars", "--", sys.executable, "-c", code, check=False)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "could not" not in r.stderr, r.stderr
    rec = _only(git_repo)
    assert rec.status == "completed"
    assert rec.metric_summary["loss"]["count"] == 3


@pytest.mark.parametrize("argv", [
    ["metrics", "@", "-o", "nodir/x.csv"],
    ["table", "-o", "nodir/x.csv"],
    ["report", "@", "-o", "nodir/r.md"],
    ["plot", "@", "-m", "loss", "-o", "nodir/p.svg"],
    ["env", "@", "--requirements", "nodir/requirements.txt"],
    ["env", "@", "--conda-file", "nodir/environment.yml"],
], ids=lambda a: a[0] + ("-" + a[2] if a[0] == "env" else ""))
def test_output_into_a_missing_folder_is_one_line(git_repo: Path, argv: list[str]) -> None:
    run_gitxp(git_repo, "start", "--no-hardware", "--scalars", "--", sys.executable, "-c", "print('loss=0.5')")
    line = _one_error_line(run_gitxp(git_repo, *argv, check=False))
    assert "'nodir' does not exist" in line, line
    assert not (git_repo / "nodir").exists()


# ---------------------------------------------------------------- what the writer accepts, the reader accepts


def _start(repo: Path) -> gitxp.Experiment:
    return gitxp.start(repo=str(repo), log_hardware=False, capture_env=False)


def _stored_yaml(repo: Path, name: str) -> bytes:
    rec = _only(repo)
    data = rec.read_file(name)
    assert data is not None
    return data


def test_metric_names_are_limited_so_that_experiment_yaml_stays_readable(git_repo: Path) -> None:
    from gitxp.store import layout

    with _start(git_repo) as xp:
        for i in range(layout.MAX_METRIC_NAMES):  # the longest names allowed: the worst case for the summary
            xp.log_metric(f"{i:07d}".ljust(layout.MAX_NAME_CHARS, "m"), 1 / 3, step=2**62)
        with pytest.raises(gitxp.MetricValueError, match=f"{layout.MAX_METRIC_NAMES} metric names"):
            xp.log_metric("one_more", 1.0)
        xp.log_metric("0000000".ljust(layout.MAX_NAME_CHARS, "m"), 0.5)  # a known name still logs
        with pytest.raises(gitxp.MetricValueError, match="longer than"):
            xp.log_metric("x" * (layout.MAX_NAME_CHARS + 1), 1.0)
    data = _stored_yaml(git_repo, "experiment.yaml")
    assert len(data) <= layout.MAX_YAML_BYTES // 2
    doc = layout.load_yaml(data, what="experiment.yaml")  # the reader a collaborator's pull uses
    assert len(doc["metrics"]) == layout.MAX_METRIC_NAMES
    assert not layout.experiment_problems(doc)


def test_a_huge_param_is_refused_when_logged_and_the_run_still_finishes(git_repo: Path) -> None:
    from gitxp.store import layout

    with _start(git_repo) as xp:
        xp.log_params({"lr": 0.1})
        with pytest.raises(gitxp.UsageError, match="over the .* limit"):
            xp.log_params({"blob": "x" * 9_000_000})
        with pytest.raises(gitxp.UsageError, match="over the .* limit"):
            xp.log_params({"many": list(range(1_000_000))})
    rec = _only(git_repo)
    assert rec.status == "completed" and rec.params == {"lr": 0.1}
    assert len(_stored_yaml(git_repo, "params.yaml")) < layout.MAX_YAML_BYTES


def test_a_huge_params_file_is_refused_by_start(git_repo: Path) -> None:
    (git_repo / "big.yaml").write_text("blob: " + "x" * 9_000_000 + "\n")
    line = _one_error_line(run_gitxp(git_repo, "start", "--no-hardware", "--params-file", "big.yaml", "--", "touch", "ran", check=False))
    assert "over the" in line and "limit" in line
    assert not (git_repo / "ran").exists()


def test_notes_and_tags_are_limited(git_repo: Path) -> None:
    from gitxp.store import layout

    with _start(git_repo) as xp:
        xp.note("short")
        with pytest.raises(gitxp.UsageError, match="notes"):
            xp.note("n" * layout.MAX_NOTES_BYTES)
        xp.set_tags({f"t{i}": i for i in range(layout.MAX_TAGS)})
        with pytest.raises(gitxp.UsageError, match=f"{layout.MAX_TAGS} tags"):
            xp.set_tags(one_more=1)
        with pytest.raises(gitxp.UsageError, match="longer than"):
            xp.set_tags(t0="v" * (layout.MAX_TAG_VALUE_CHARS + 1))
    rec = _only(git_repo)
    assert rec.meta["notes"] == "short" and len(rec.tags) == layout.MAX_TAGS
    r = run_gitxp(git_repo, "tag", "@", "another=1", check=False)
    assert f"{layout.MAX_TAGS} tags" in _one_error_line(r)


def test_a_table_the_reader_would_refuse_is_refused_by_log_table(git_repo: Path) -> None:
    import pyarrow as pa

    from gitxp.store import parquet as metrics

    from gitxp.store import parquet_checks

    with _start(git_repo) as xp:
        with pytest.raises(gitxp.UsageError, match="columns"):
            xp.log_table("wide", pa.table({f"c{i}": [i] for i in range(parquet_checks.MAX_PARQUET_COLUMNS + 1)}))
        xp.log_table("ok", pa.table({"c": [1, 2]}))
    assert _only(git_repo).tables() == ["ok"]


def test_metric_points_stop_before_the_reader_limit(git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked at each flush (nothing on the hot path): a small limit here, 16 M points in real use."""
    from gitxp.store import parquet as metrics

    monkeypatch.setattr(metrics, "MAX_METRIC_POINTS", 1000)
    with _start(git_repo) as xp:
        for i in range(999):
            xp.log_metric("loss", 1.0, step=i)
        xp.flush()
        with pytest.raises(gitxp.MetricValueError, match="1000 metric values"):
            for i in range(999, 5000):
                xp.log_metric("loss", 1.0, step=i)
                if i % 100 == 0:
                    xp.flush()
    rec = _only(git_repo)
    assert rec.status == "completed"
    assert 1000 <= rec.metric_summary["loss"]["count"] <= 1100


def test_a_huge_exception_message_is_recorded_within_the_reader_limit(git_repo: Path) -> None:
    from gitxp.store import layout

    with pytest.raises(ValueError):
        with _start(git_repo) as xp:
            xp.log_metric("loss", 0.5)
            raise ValueError("bad value " + "x" * 9_000_000)
    data = _stored_yaml(git_repo, "experiment.yaml")
    doc = layout.load_yaml(data, what="experiment.yaml")
    assert doc["status"] == "failed" and doc["metrics"]["loss"]["count"] == 1
    assert doc["error"]["message"].startswith("bad value xxx") and "characters left out" in doc["error"]["message"]
    assert len(data) < layout.MAX_YAML_BYTES // 8
