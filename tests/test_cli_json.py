"""`--format json` on every listing and describing command (issue 14), and `metrics`/`plot` over several experiments.

Each output goes through json.loads as a tool would read it; the field names
are the UI's API's (gitxp.review.jsonview builds both).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import gitxp
from conftest import gitxp as run_gitxp

ROW_FIELDS = {"id", "name", "status", "created", "duration_s", "parent", "params", "metrics", "summary", "tags"}
STATS = {"last", "min", "max", "count", "last_step"}


def loads(text: str) -> object:
    """json.loads that refuses NaN/Infinity literals (not JSON, though Python writes them)."""
    def bad(token: str) -> None:
        raise AssertionError(f"non-JSON constant {token} in output")

    return json.loads(text, parse_constant=bad)


@pytest.fixture
def two(git_repo: Path) -> tuple[Path, str, str]:
    """Two stored experiments: `a` (lr 0.1) and `b` (lr 0.01, an artifact, a loss that ends in inf)."""
    with gitxp.start("a", params={"lr": 0.1, "opt": {"name": "sgd"}}, repo=str(git_repo), log_hardware=False, capture_env=False) as xp:
        for i, v in enumerate([1.0, 0.5, 0.25]):
            xp.log_metric("loss", v, step=i)
        xp.log_metric("acc", float("nan"), step=0)
        a = xp.id
    (git_repo / "model.bin").write_bytes(b"\x00weights" * 100)
    with gitxp.start("b", params={"lr": 0.01, "opt": {"name": "adam"}}, tags={"team": "x"}, repo=str(git_repo), log_hardware=False) as xp:
        for i, v in enumerate([0.9, 0.2, float("inf")]):
            xp.log_metric("loss", v, step=i)
        xp.summary["best"] = 0.2
        xp.log_artifact(git_repo / "model.bin")
        b = xp.id
    return git_repo, a, b


def test_log_show_table_json_carry_the_ui_fields_and_stay_valid_with_nan_and_inf(two: tuple[Path, str, str]) -> None:
    repo, a, b = two
    doc = loads(run_gitxp(repo, "log", "--format", "json").stdout)
    assert doc["total"] == 2 and [e["id"] for e in doc["experiments"]] == [b, a]  # newest first
    for e in doc["experiments"]:
        assert set(e) == ROW_FIELDS
        assert set(e["metrics"]["loss"]) == STATS
    eb = doc["experiments"][0]
    assert eb["params"] == {"lr": 0.01, "opt": {"name": "adam"}} and eb["tags"]["team"] == "x"
    assert eb["status"] == "completed" and eb["summary"] == {"best": 0.2}
    assert eb["metrics"]["loss"]["last"] is None and eb["metrics"]["loss"]["min"] == 0.2  # inf: null, not Infinity
    assert eb["metrics"]["loss"]["count"] == 3 and eb["metrics"]["loss"]["last_step"] == 2

    one = loads(run_gitxp(repo, "log", "-n", "1", "--where", "params.lr > 0.05", "--format", "json").stdout)
    assert [e["id"] for e in one["experiments"]] == [a]

    show = loads(run_gitxp(repo, "show", b, "--format", "json").stdout)
    assert ROW_FIELDS | {"source", "command", "notes", "error", "environment", "artifacts", "inputs", "alerts"} <= set(show)
    assert show["id"] == b and show["artifacts"] == [{"path": "model.bin", "size": 800, "encrypted": True}]
    assert show["environment"]["python"]["version"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}")
    assert show["environment"]["package_count"] > 0 and show["error"] is None
    assert isinstance(show["source"], dict) and isinstance(show["command"], list)
    assert loads(run_gitxp(repo, "show", a, "--format", "json").stdout)["environment"] is None  # capture_env=False

    rows = loads(run_gitxp(repo, "table", "--columns", "params.lr,metrics.loss,metrics.loss.min,metrics.acc", "--format", "json").stdout)
    by_id = {r["id"]: r for r in rows}
    assert by_id[b]["metrics.loss"] is None and by_id[b]["metrics.loss.min"] == 0.2
    assert by_id[a]["metrics.acc"] is None and by_id[a]["params.lr"] == 0.1


def test_diff_artifacts_env_key_json(two: tuple[Path, str, str]) -> None:
    repo, a, b = two
    d = loads(run_gitxp(repo, "diff", a, b, "--format", "json", "--code", "--env").stdout)
    assert d["a"]["id"] == a and d["b"]["id"] == b and set(d["a"]) == ROW_FIELDS
    assert {"key": "lr", "a": 0.1, "b": 0.01} in d["params"]["changed"]
    assert {"key": "opt.name", "a": "sgd", "b": "adam"} in d["params"]["changed"]
    loss = d["metrics"]["loss"]
    assert loss["a"]["last"] == 0.25 and loss["b"]["last"] is None and loss["delta"] is None  # inf - 0.25: not a number to report
    assert d["metrics"]["acc"]["b"] is None
    assert isinstance(d["code"], list) and d["environment"] is None  # a has no recorded environment

    arts = loads(run_gitxp(repo, "artifacts", b, "--format", "json").stdout)
    (art,) = arts["artifacts"]
    assert arts["id"] == b and art["path"] == "model.bin" and art["size"] == 800 and art["encrypted"] is True
    assert art["parts"] >= 1 and isinstance(art["digest"], str)
    assert loads(run_gitxp(repo, "artifacts", a, "--format", "json").stdout)["artifacts"] == []

    env = loads(run_gitxp(repo, "env", b, "--format", "json").stdout)
    assert env["id"] == b and env["environment"]["package_count"] == len(env["recorded"]["packages"])
    assert any(p["name"] == "pyarrow" for p in env["recorded"]["packages"])
    r = run_gitxp(repo, "env", b, "--format", "json", "--requirements", "r.txt", check=False)
    assert r.returncode == 2 and r.stderr.startswith("Error: ") and not (repo / "r.txt").exists()

    key = loads(run_gitxp(repo, "key", "show", "--format", "json").stdout)
    assert set(key) == {"store", "store_keys", "key", "key_source"}
    assert key["key"] in key["store_keys"] and len(key["store_keys"]) == 1


def test_sweep_dry_run_json(git_repo: Path) -> None:
    (git_repo / "grid.yaml").write_text("epochs: 3\ngrid:\n  lr: [0.1, 0.01]\n  batch: [16, 32]\n")
    doc = loads(run_gitxp(git_repo, "sweep", "grid.yaml", "--dry-run", "--format", "json", "--", "python", "t.py", "--lr", "{lr}").stdout)
    assert doc["total"] == 4 and [c["index"] for c in doc["configurations"]] == [0, 1, 2, 3]
    assert doc["configurations"][0]["params"] == {"epochs": 3, "lr": 0.1, "batch": 16}
    assert doc["configurations"][3]["command"] == ["python", "t.py", "--lr", "0.01"]
    r = run_gitxp(git_repo, "sweep", "grid.yaml", "--format", "json", "--", "true", check=False)
    assert r.returncode == 2 and "--dry-run" in r.stderr and r.stdout == ""


def test_metrics_of_several_experiments_carry_id_and_name(two: tuple[Path, str, str]) -> None:
    repo, a, b = two
    single = loads(run_gitxp(repo, "metrics", b, "--format", "json").stdout)
    assert [r["name"] for r in single] == ["loss"] * 3 and single[2]["value"] is None  # inf as null
    assert single[0]["timestamp"].endswith("Z")

    rows = loads(run_gitxp(repo, "metrics", a, b, "-m", "loss", "--format", "json").stdout)
    assert {(r["id"], r["name"], r["metric"]) for r in rows} == {(a, "a", "loss"), (b, "b", "loss")}
    assert len(rows) == 6 and set(rows[0]) == {"id", "name", "metric", "step", "value", "timestamp"}

    text = run_gitxp(repo, "metrics", "--where", "params.lr < 1", "--format", "csv").stdout
    got = list(csv.DictReader(io.StringIO(text)))
    assert list(got[0]) == ["id", "name", "metric", "step", "value", "timestamp"]
    assert {r["id"] for r in got} == {a, b} and {r["metric"] for r in got} == {"loss", "acc"}

    run_gitxp(repo, "metrics", a, "--where", "params.lr < 0.05", "-m", "l*", "--format", "parquet", "-o", "m.parquet")
    t = pq.read_table(repo / "m.parquet")
    assert set(t.column("id").to_pylist()) == {a, b} and set(t.column("metric").to_pylist()) == {"loss"}

    one = loads(run_gitxp(repo, "metrics", a, "-m", "acc", "--format", "json").stdout)
    assert one == [{"name": "acc", "step": 0, "value": None, "timestamp": one[0]["timestamp"]}]

    r = run_gitxp(repo, "metrics", a, b, "-m", "nope", check=False)
    assert r.returncode == 2 and "nope" in r.stderr and "loss" in r.stderr
    r = run_gitxp(repo, "metrics", check=False)
    assert r.returncode == 2 and "--where" in r.stderr


def test_hardware_columns_in_metrics_and_plot_and_plot_where(git_repo: Path) -> None:
    burn = "import time\nt=time.time()\nwhile time.time()-t<1.2: pass\nprint('loss=0.5')"
    run_gitxp(git_repo, "start", "--name", "hw", "--scalars", "--hardware-interval", "0.2", "--", sys.executable, "-c", burn)
    run_gitxp(git_repo, "start", "--name", "other", "--scalars", "--no-hardware", "--", sys.executable, "-c", "print('loss=0.25')")

    rows = loads(run_gitxp(git_repo, "metrics", "hw", "-m", "cpu_percent", "--format", "json").stdout)
    assert len(rows) >= 3 and {r["name"] for r in rows} == {"cpu_percent"}
    assert [r["step"] for r in rows] == list(range(len(rows)))

    out = git_repo / "cpu.svg"
    r = run_gitxp(git_repo, "plot", "hw", "other", "-m", "cpu_percent", "-m", "loss", "-o", str(out))
    svg = out.read_text()
    assert "<polyline" in svg  # cpu_percent over samples
    assert svg.count('class="marker"') == 2  # loss: one point in each experiment, drawn as a marker
    assert "no cpu_percent/loss" not in r.stderr

    out2 = git_repo / "where.svg"
    run_gitxp(git_repo, "plot", "--where", "status == 'completed'", "-m", "loss", "--log-y", "-o", str(out2))
    svg2 = out2.read_text()
    assert svg2.count('class="marker"') == 2 and "hw" in svg2 and "other" in svg2
    r = run_gitxp(git_repo, "plot", "--where", "params.nope == 1", "-m", "loss", "-o", str(out2), check=False)
    assert r.returncode == 2 and r.stderr.startswith("Error: no experiment matches")


def test_log_json_shows_a_running_experiment_with_its_metrics_so_far(git_repo: Path) -> None:
    xp = gitxp.start("live", params={"lr": 0.5}, repo=str(git_repo), log_hardware=False, capture_env=False)
    try:
        for i in range(3):
            xp.log_metric("loss", 1.0 / (i + 1), step=i)
        xp.flush()
        doc = loads(run_gitxp(git_repo, "log", "--format", "json").stdout)
        (e,) = doc["experiments"]
        assert e["id"] == xp.id and e["status"] == "running" and e["params"] == {"lr": 0.5}
        assert e["metrics"]["loss"]["count"] == 3 and e["metrics"]["loss"]["last"] == pytest.approx(1 / 3)
    finally:
        xp.finish()
