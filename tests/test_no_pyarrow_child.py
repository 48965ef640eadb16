"""A wrapped script whose interpreter has no pyarrow cannot stage its metrics: the run must say so.

The child runs with ``python -S`` and a ``PYTHONPATH`` holding gitxp's
checkout and links to every package of this interpreter except pyarrow, so
``import pyarrow`` fails there as it would in an environment without it. The
wrapper (with pyarrow) must not commit that run as ``completed`` with no
metrics.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import gitxp
from conftest import ROOT, fsck
from conftest import gitxp as run_gitxp

SCRIPT = """
import sys, gitxp
try:
    import pyarrow
except ImportError:
    print("no pyarrow here", file=sys.stderr)
else:
    raise SystemExit("this interpreter has pyarrow: the test means nothing")
for i in range(5):
    gitxp.log_metric("loss", 1 / (i + 1))
gitxp.log_param("lr", 0.1)
"""


def _site_without_pyarrow(tmp_path: Path) -> Path:
    site = Path(sysconfig.get_paths()["purelib"])
    lib = tmp_path / "site-without-pyarrow"
    lib.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().startswith("pyarrow") and not entry.name.endswith(".pth"):
            (lib / entry.name).symlink_to(entry)
    return lib


def test_a_child_without_pyarrow_is_recorded_as_failed_not_completed(git_repo: Path, tmp_path: Path) -> None:
    (git_repo / "train.py").write_text(SCRIPT)
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(_site_without_pyarrow(tmp_path))])}
    r = run_gitxp(git_repo, "start", "--no-hardware", "--", sys.executable, "-S", "train.py", env=env, check=False)
    assert "no pyarrow here" in r.stderr, r.stderr
    assert r.returncode == 0, r.stderr  # the command's own status, as always; the run's status tells the rest
    assert "Traceback" not in r.stderr, r.stderr
    assert "could not save what this process logged (5 metric values" in r.stderr and "pyarrow" in r.stderr
    rec = gitxp.open(str(git_repo)).get("@")
    assert rec.status == "failed", rec.meta
    assert "No module named 'pyarrow'" in rec.meta["error"]["message"], rec.meta["error"]
    assert rec.meta["exit_code"] == 0
    assert f"{rec.id} train failed" in r.stderr
    fsck(git_repo)
