"""Python access as a notebook user meets it: module-level log_* functions, DataFrames,
HTML display, and the names of runs from notebooks and stdin."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gitxp
from conftest import fsck, gitxp as run_gitxp, run_git


def start(repo: Path, **kw):
    kw.setdefault("log_hardware", False)
    kw.setdefault("capture_env", False)
    return gitxp.start(repo=str(repo), **kw)


# ------------------------------------------------------------------ gitxp.log_* functions


def test_module_functions_log_into_the_current_experiment(git_repo: Path, tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"weights")
    with start(git_repo, name="mlflow-style") as xp:
        gitxp.log_metric("loss", 0.5, step=1)
        gitxp.log_metrics({"loss": 0.25, "acc": 0.9}, step=2)
        gitxp.log_param("lr", 0.1)
        gitxp.log_params({"optim": {"name": "adam"}})
        gitxp.set_tag("team", "vision")
        gitxp.set_tags({"stage": "dev"}, owner="me")
        gitxp.log_artifact(tmp_path / "model.bin", "model.bin")
    rec = gitxp.open(str(git_repo)).get(xp.id)
    assert rec.params == {"lr": 0.1, "optim": {"name": "adam"}}
    assert rec.tags == {"team": "vision", "stage": "dev", "owner": "me"}
    assert rec.metric_summary["loss"]["last"] == 0.25 and rec.metric_summary["loss"]["last_step"] == 2
    assert rec.read_artifact("model.bin") == b"weights"
    fsck(git_repo)


@pytest.mark.parametrize(("fn", "args"), [
    ("log_metric", ("loss", 1.0)), ("log_metrics", ({"loss": 1.0},)), ("log_param", ("lr", 1)),
    ("log_params", ({"lr": 1},)), ("log_artifact", ("x",)), ("set_tag", ("a", "b")), ("set_tags", ({"a": "b"},)),
])
def test_module_functions_without_an_experiment(fn: str, args: tuple) -> None:
    assert gitxp.current() is None
    with pytest.raises(gitxp.NoActiveExperimentError) as info:
        getattr(gitxp, fn)(*args)
    assert str(info.value) == "no active experiment; start one with gitxp.start() or run under gitxp start"
    assert isinstance(info.value, gitxp.GitxpError)


def test_module_functions_under_gitxp_start_join_it(git_repo: Path) -> None:
    (git_repo / "fit.py").write_text("import gitxp\ngitxp.log_param('lr', 0.3)\nfor i in range(3):\n    gitxp.log_metric('loss', 1 / (i + 1))\ngitxp.set_tag('kind', 'wrapped')\n")
    run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "fit.py")
    recs = gitxp.open(str(git_repo)).experiments()
    assert len(recs) == 1 and recs[0].name == "fit"
    assert recs[0].params["lr"] == 0.3 and recs[0].tags["kind"] == "wrapped"
    assert recs[0].metrics().column("step").to_pylist() == [0, 1, 2]


def test_set_tag_on_the_experiment(git_repo: Path) -> None:
    with start(git_repo) as xp:
        xp.set_tag("a", 1)
    assert gitxp.open(str(git_repo)).get(xp.id).tags == {"a": 1}


# ------------------------------------------------------------------ DataFrames


@pytest.fixture
def three_runs(git_repo: Path) -> tuple[Path, list[str]]:
    ids = []
    for lr, name in ((0.1, "a"), (0.01, "b"), (0.001, "c")):
        with start(git_repo, name=name, params={"lr": lr, "opt": {"name": "sgd"}}, tags={"lr_group": "x"}) as xp:
            for step in range(3):
                xp.log_metric("loss", lr * (3 - step), step=step)
            xp.log_metric("acc", 1 - lr, step=2)
            xp.summary["best"] = 1 - lr
        ids.append(xp.id)
    return git_repo, ids


def test_runs_dataframe(three_runs: tuple[Path, list[str]]) -> None:
    import pandas as pd

    repo, ids = three_runs
    df = gitxp.runs(repo=str(repo))
    assert isinstance(df, pd.DataFrame)
    assert list(df["id"]) == ids[::-1]  # newest first
    assert list(df.columns[:4]) == ["id", "name", "status", "created"]
    for col in ("params.lr", "params.opt.name", "metrics.loss", "metrics.acc", "summary.best", "tags.lr_group"):
        assert col in df.columns, col
    row = df.set_index("name").loc["b"]
    assert row["params.lr"] == 0.01 and row["metrics.loss"] == pytest.approx(0.01) and row["metrics.acc"] == 0.99
    assert row["status"] == "completed" and str(df["created"].dt.tz) == "UTC"

    small = gitxp.runs("params.lr < 0.05", repo=str(repo))
    assert sorted(small["name"]) == ["b", "c"]
    empty = gitxp.runs("params.lr > 5", repo=str(repo))
    assert len(empty) == 0 and "id" in empty.columns


def test_histories_long_dataframe(three_runs: tuple[Path, list[str]]) -> None:
    repo, ids = three_runs
    df = gitxp.histories("params.lr < 0.05", repo=str(repo))
    assert list(df.columns) == ["id", "name", "metric", "step", "value", "timestamp"]
    assert sorted(set(df["name"])) == ["b", "c"] and len(df) == 2 * 4
    loss_b = df[(df["name"] == "b") & (df["metric"] == "loss")].sort_values("step")
    assert list(loss_b["step"]) == [0, 1, 2] and list(loss_b["value"]) == pytest.approx([0.03, 0.02, 0.01])
    assert str(df["timestamp"].dt.tz) == "UTC"

    only_loss = gitxp.histories([ids[0], "b"], metrics=["loss"], repo=str(repo))
    assert set(only_loss["metric"]) == {"loss"} and set(only_loss["name"]) == {"a", "b"} and len(only_loss) == 6
    one = gitxp.histories("a", metrics="acc", repo=str(repo))  # a ref (the name), not a query
    assert list(one["value"]) == [0.9]
    from_runs = gitxp.histories(gitxp.runs("params.lr >= 0.01", repo=str(repo)), metrics="acc", repo=str(repo))
    assert sorted(from_runs["name"]) == ["a", "b"]
    none = gitxp.histories("params.lr > 5", repo=str(repo))
    assert list(none.columns) == ["id", "name", "metric", "step", "value", "timestamp"] and len(none) == 0


def test_unknown_ref_in_histories(three_runs: tuple[Path, list[str]]) -> None:
    with pytest.raises(gitxp.RefError):
        gitxp.histories(["nosuch"], repo=str(three_runs[0]))


def test_dataframes_without_pandas_name_the_extra(three_runs: tuple[Path, list[str]]) -> None:
    code = "import sys\nsys.modules['pandas'] = None\nimport gitxp\ngitxp.runs(repo=sys.argv[1])"
    r = subprocess.run([sys.executable, "-c", code, str(three_runs[0])], capture_output=True, text=True)
    assert r.returncode == 1
    assert "gitxp.runs() needs pandas, which is not installed; pip install 'gitxp[pandas]'" in r.stderr.splitlines()[-1]


# ------------------------------------------------------------------ HTML in Jupyter


def test_html_of_a_record_and_a_listing_is_escaped(git_repo: Path) -> None:
    with start(git_repo, name="<script>alert(1)", params={"lr": 0.1}, tags={"note": "<b>x</b> & y"}) as xp:
        xp.log_metric("loss", 0.5)
    store = gitxp.open(str(git_repo))
    rec = store.get(xp.id)
    page = rec._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;alert(1)" in page
    assert "&lt;b&gt;x&lt;/b&gt; &amp; y" in page and "<b>" not in page
    assert "params.lr" in page and "metrics.loss" in page and xp.id in page
    listing = store.experiments()
    assert isinstance(listing, list) and listing == [rec]
    table = listing._repr_html_()
    assert table.startswith("<table") and "&lt;script&gt;alert(1)" in table and "<script>" not in table
    assert "<th>params.lr</th>" in table and "<th>metrics.loss</th>" in table


# ------------------------------------------------------------------ default names


SCRIPT = "import gitxp\nwith gitxp.start(log_hardware=False, capture_env=False) as xp:\n    xp.log_metric('x', 1)\n"


@pytest.mark.parametrize(("how", "expected"), [("stdin", "stdin"), ("dash", "stdin"), ("-c", "python")])
def test_runs_from_stdin_or_c_are_not_named_after_a_placeholder(git_repo: Path, how: str, expected: str) -> None:
    if how == "-c":
        r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=git_repo, capture_output=True, text=True)
    else:
        args = [sys.executable] if how == "stdin" else [sys.executable, "-"]
        r = subprocess.run(args, cwd=git_repo, input=SCRIPT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert gitxp.open(str(git_repo)).get("@").name == expected


KERNEL_CODE = SCRIPT + "print(xp.id)\n"


@pytest.mark.skipif(importlib.util.find_spec("ipykernel") is None or importlib.util.find_spec("jupyter_client") is None,
                    reason="ipykernel/jupyter_client not installed: pip install -e '.[dev,integrations]'")
def test_a_run_in_a_notebook_kernel_is_named_after_the_notebook(git_repo: Path) -> None:
    """A real kernel started the way jupyter-server starts one for a session (JPY_SESSION_NAME)."""
    from jupyter_client.manager import start_new_kernel

    nb = git_repo / "analysis.ipynb"
    nb.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n')
    # a notebook git ignores is still the code that ran
    (git_repo / "vscode.ipynb").write_text('{"cells": [], "metadata": {"ignored": true}, "nbformat": 4, "nbformat_minor": 5}\n')
    with (git_repo / ".gitignore").open("a") as f:
        f.write("vscode.ipynb\n")
    env = {**os.environ, "JPY_SESSION_NAME": str(nb)}
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(git_repo), env=env, startup_timeout=60)
    try:
        outputs: list[str] = []

        def run(code: str) -> None:
            reply = kc.execute_interactive(code, timeout=120, output_hook=lambda m: outputs.append(m["content"].get("text", m["content"].get("evalue", ""))))
            assert reply["content"]["status"] == "ok", outputs

        run(KERNEL_CODE)
        # VS Code's Jupyter extension names the notebook in the kernel's globals instead
        run("__vsc_ipynb_file__ = " + repr(str(git_repo / "vscode.ipynb")) + "\n" + KERNEL_CODE)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    store = gitxp.open(str(git_repo))
    first, second = store.get("@~1"), store.get("@")
    assert first.name == "analysis" and second.name == "vscode"
    # the notebook (untracked here) is part of the code snapshot
    assert run_git(git_repo, "cat-file", "-t", f"{first.code_tree}:analysis.ipynb").strip() == "blob"
    assert first.source.get("dirty") is True and first.source["notebook"] == "analysis.ipynb"
    assert second.source["notebook"] == "vscode.ipynb"
    assert b'"ignored": true' in (run_git(git_repo, "show", f"{second.code_tree}:vscode.ipynb")).encode()
