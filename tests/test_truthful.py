"""Truthful status, no hangs, no crashes: what a user logged is what is stored.

Scripts run in real subprocesses (the API and ``gitxp start``) with pandas
installed but not imported, as in most ML environments: pyarrow imports it
lazily on its first call, which cannot work while Python shuts down.
"""

from __future__ import annotations

import importlib.util
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
