"""`gitxp import mlflow|tensorboard` (issue 14) against files written by the real tools.

The MLflow store is written by the real `mlflow` (mlflow-skinny) in a
subprocess, the event files by tensorboardX and torch.utils.tensorboard; the
import runs through the real CLI and what it stored is read back through the
library, Parquet and `gitxp get` (decryption).
"""

from __future__ import annotations

import importlib.util
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gitxp
from gitxp.artifacts import manifest as artifacts
from gitxp.store import layout
from conftest import fsck, gitxp as run_gitxp


def _needs(*modules: str) -> pytest.MarkDecorator:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} not installed: pip install -e '.[dev,integrations]'")


def write(tmp: Path, code: str, *args: str) -> None:
    """Run a writer script with the real library in its own process (no mlflow/torch state in pytest's)."""
    script = tmp / "writer.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_TRACKING_URI": ""}
    r = subprocess.run([sys.executable, str(script), *args], cwd=tmp, capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr


MLFLOW_WRITER = """
import os, sys, mlflow
mlflow.set_tracking_uri("file://" + os.path.abspath(sys.argv[1]))
mlflow.set_experiment("demo")
open("model.txt", "w").write("weights v1")
with mlflow.start_run(run_name="first") as run:
    mlflow.log_params({"lr": 0.1, "layers": 2, "optim.name": "adam", "activation": "relu"})
    for i in range(4):
        mlflow.log_metric("loss", 1.0 / (i + 1), step=i * 10)
    mlflow.log_metric("val/acc", float("nan"), step=3)
    mlflow.set_tag("team", "vision")
    mlflow.set_tag("mlflow.note.content", "baseline run")
    mlflow.log_artifact("model.txt", artifact_path="models")
    with mlflow.start_run(run_name="child", nested=True):
        mlflow.log_metric("loss", 0.5)
with mlflow.start_run(run_name="broken"):
    mlflow.log_metric("acc", 0.5)
    mlflow.end_run(status="FAILED")
with mlflow.start_run(run_name="stopped"):
    mlflow.end_run(status="KILLED")
with mlflow.start_run(run_name="gone") as gone:
    pass
mlflow.delete_run(gone.info.run_id)
print(run.info.run_id)
"""


@_needs("mlflow")
def test_mlflow_store_written_by_mlflow_imports_runs_once(git_repo: Path, tmp_path: Path) -> None:
    write(tmp_path, MLFLOW_WRITER, "mlruns")
    mlruns = tmp_path / "mlruns"
    r = run_gitxp(git_repo, "import", "mlflow", str(mlruns))
    assert r.stdout.strip() == "imported 4 runs, skipped 1 deleted in MLflow; see them with `gitxp log --all`", r.stdout + r.stderr
    assert "warning" not in r.stderr and "mlflow run" not in r.stderr  # not a terminal: no progress lines; nothing was left out

    store = gitxp.open(str(git_repo))
    recs = {rec.meta["tags"]["mlflow.runName"]: rec for rec in store.experiments()}
    assert set(recs) == {"first", "child", "broken", "stopped"}
    first = recs["first"]
    assert first.name == "demo" and first.status == "completed"
    assert dict(first.params) == {"lr": 0.1, "layers": 2, "optim": {"name": "adam"}, "activation": "relu"}
    tags = first.meta["tags"]
    assert tags["team"] == "vision" and tags["mlflow.experiment"] == "demo" and len(tags["mlflow.run_id"]) == 32
    assert tags["mlflow.source.name"].endswith("writer.py") and "mlflow.note.content" not in tags
    assert first.meta["notes"] == "baseline run"

    run_dir = next(mlruns.glob(f"*/{tags['mlflow.run_id']}"))
    meta = (run_dir / "meta.yaml").read_text()
    start_ms = int(next(ln for ln in meta.splitlines() if ln.startswith("start_time:")).split()[1])
    end_ms = int(next(ln for ln in meta.splitlines() if ln.startswith("end_time:")).split()[1])
    assert first.created == layout.isotime(start_ms / 1000) == first.meta["started"]
    assert first.meta["ended"] == layout.isotime(end_ms / 1000)
    assert first.meta["duration_s"] == pytest.approx((end_ms - start_ms) / 1000, abs=0.002)

    t = first.metrics()
    loss = [(r["step"], r["value"], r["timestamp"].timestamp()) for r in t.to_pylist() if r["name"] == "loss"]
    written = [ln.split() for ln in (run_dir / "metrics" / "loss").read_text().splitlines()]
    assert loss == [(int(s), float(v), int(ts) / 1000) for ts, v, s in written]
    assert [s for s, _, _ in loss] == [0, 10, 20, 30]
    acc = [r for r in t.to_pylist() if r["name"] == "val/acc"]
    assert len(acc) == 1 and acc[0]["step"] == 3 and acc[0]["value"] != acc[0]["value"]  # NaN kept

    arts = run_gitxp(git_repo, "artifacts", first.id, "--format", "json").stdout
    assert '"path": "models/model.txt"' in arts and '"encrypted": true' in arts
    run_gitxp(git_repo, "get", first.id, "models/model.txt", "-o", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "weights v1"

    assert recs["child"].meta["parent"] == first.id
    assert recs["broken"].status == "failed" and "FAILED" in str(recs["broken"].meta["error"])
    assert recs["stopped"].status == "interrupted"
    fsck(git_repo)

    again = run_gitxp(git_repo, "import", "mlflow", str(mlruns))
    assert again.stdout.strip() == "imported 0 runs, skipped 4 already imported, 1 deleted in MLflow"
    write(tmp_path, """
        import os, sys, mlflow
        mlflow.set_tracking_uri("file://" + os.path.abspath(sys.argv[1]))
        mlflow.set_experiment("demo")
        with mlflow.start_run(run_name="late"):
            mlflow.log_metric("loss", 0.1)
    """, "mlruns")
    third = run_gitxp(git_repo, "import", "mlflow", str(mlruns))
    assert third.stdout.startswith("imported 1 run, skipped 4 already imported")
    assert len(gitxp.open(str(git_repo)).experiments()) == 5


@_needs("mlflow")
def test_mlflow_files_are_untrusted(git_repo: Path, tmp_path: Path) -> None:
    write(tmp_path, MLFLOW_WRITER, "mlruns")
    mlruns = tmp_path / "mlruns"
    run_dir = next(p.parent.parent for p in mlruns.glob("*/*/tags/mlflow.runName") if p.read_text() == "first")
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (run_dir / "artifacts" / "leak.txt").symlink_to(secret)  # a link out of the store is never followed
    (run_dir / "artifacts" / "dir-link").symlink_to(tmp_path, target_is_directory=True)
    (run_dir / "metrics" / "loss").write_text((run_dir / "metrics" / "loss").read_text() + "garbage line\n12 0.5 -3\n")
    (run_dir / "metrics" / "bad\x1bname").write_text("1700000000000 1.0 0\n")
    (run_dir / "params" / "huge").write_bytes(b"x" * (2 << 20))
    bogus = run_dir.parent / ("f" * 32)  # a folder that looks like a run but whose meta.yaml is not a mapping
    bogus.mkdir()
    (bogus / "meta.yaml").write_text("- not\n- a mapping\n")

    r = run_gitxp(git_repo, "import", "mlflow", str(mlruns))
    assert r.stdout.startswith("imported 4 runs"), r.stdout + r.stderr
    err = r.stderr
    assert "2 line(s)" in err and "'loss'" in err
    assert "metric 'bad\\x1bname' left out" in err and "\x1b" not in err
    assert "param 'huge' left out" in err
    first = next(rec for rec in gitxp.open(str(git_repo)).experiments() if rec.meta["tags"]["mlflow.runName"] == "first")
    assert [a["path"] for a in artifacts.read_manifest(first)] == ["models/model.txt"]
    assert "huge" not in first.params and first.metric_summary["loss"]["count"] == 4
    fsck(git_repo)

    r = run_gitxp(git_repo, "import", "mlflow", str(tmp_path), check=False)
    assert r.returncode == 2 and r.stderr.startswith("Error: ") and "did you mean" in r.stderr and "mlruns" in r.stderr
    r = run_gitxp(git_repo, "import", "mlflow", str(tmp_path / "nope"), check=False)
    assert r.returncode == 2 and r.stderr.startswith("Error: ")


TB_WRITERS = """
import sys
import numpy as np
from tensorboardX import SummaryWriter
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboardX.proto.tensor_pb2 import TensorProto
from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
root = sys.argv[1]
w = SummaryWriter(root + "/lr0.1")
for i in range(5):
    w.add_scalar("train/loss", 1.0 / (i + 1), i)
w.add_scalar("val/acc", 0.75, 4)
w.add_text("note", "text is not a scalar")
# a TF2-style scalar: a float tensor under the scalars plugin
meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
tensor = TensorProto(dtype=1, float_val=[0.125], tensor_shape=TensorShapeProto())
w.file_writer.add_summary(Summary(value=[Summary.Value(tag="lr", metadata=meta, tensor=tensor)]), global_step=7, walltime=1700000000.5)
w.close()
from torch.utils.tensorboard import SummaryWriter as TorchWriter
w = TorchWriter(root + "/sweep/lr0.01")
for i in range(3):
    w.add_scalar("train/loss", 2.0 / (i + 1), i * 10, walltime=1700000100.0 + i)
w.close()
w = TorchWriter(root + "/histograms-only")
w.add_histogram("weights", np.arange(10), 0)
w.close()
"""


@_needs("tensorboard", "tensorboardX", "torch")
def test_tensorboard_event_files_from_real_writers(git_repo: Path, tmp_path: Path) -> None:
    write(tmp_path, TB_WRITERS, "runs")
    runs = tmp_path / "runs"
    r = run_gitxp(git_repo, "import", "tensorboard", str(runs))
    assert r.stdout.strip() == "imported 2 runs, skipped 1 without scalars; see them with `gitxp log --all`", r.stdout + r.stderr

    recs = {rec.name: rec for rec in gitxp.open(str(git_repo)).experiments()}
    assert set(recs) == {"lr0.1", "sweep-lr0.01"}
    a, b = recs["lr0.1"], recs["sweep-lr0.01"]
    assert a.status == "completed" and a.meta["tags"]["tensorboard.run"] == "lr0.1"
    assert b.meta["tags"]["tensorboard.run"] == "sweep/lr0.01" and len(b.meta["tags"]["tensorboard.run_id"]) == 24
    rows = b.metrics().to_pylist()
    assert [(r["name"], r["step"], r["value"], r["timestamp"].timestamp()) for r in rows] == [
        ("train/loss", 0, 2.0, 1700000100.0), ("train/loss", 10, 1.0, 1700000101.0), ("train/loss", 20, pytest.approx(2 / 3), 1700000102.0)]
    assert b.created == "2023-11-14T22:15:00.000Z" and b.meta["ended"] == "2023-11-14T22:15:02.000Z"
    summary = a.metric_summary
    assert summary["train/loss"]["count"] == 5 and summary["train/loss"]["last"] == pytest.approx(0.2)
    assert summary["val/acc"]["last"] == 0.75 and summary["val/acc"]["last_step"] == 4
    lr = [r for r in a.metrics().to_pylist() if r["name"] == "lr"]
    assert [(r["step"], r["value"], r["timestamp"].timestamp()) for r in lr] == [(7, 0.125, 1700000000.5)]
    assert "note" not in summary
    fsck(git_repo)

    (runs / "sweep" / "lr0.01").rename(runs / "moved")  # a moved folder is still the same run
    again = run_gitxp(git_repo, "import", "tensorboard", str(runs))
    assert again.stdout.strip() == "imported 0 runs, skipped 2 already imported, 1 without scalars"


@_needs("tensorboard", "tensorboardX")
def test_tensorboard_progress_on_a_terminal_and_missing_reader(git_repo: Path, tmp_path: Path) -> None:
    write(tmp_path, """
        import sys
        from tensorboardX import SummaryWriter
        for name in ("a", "b"):
            w = SummaryWriter(sys.argv[1] + "/" + name)
            w.add_scalar("loss", 0.5, 1)
            w.close()
    """, "runs")
    master, slave = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "gitxp", "import", "tensorboard", str(tmp_path / "runs")],
                          cwd=git_repo, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=120)
    os.close(slave)
    seen = b""
    try:
        while True:
            chunk = os.read(master, 4096)
            if not chunk:
                break
            seen += chunk
    except OSError:
        pass
    os.close(master)
    assert proc.returncode == 0 and proc.stdout.startswith("imported 2 runs")
    lines = seen.decode().splitlines()
    assert any(ln.startswith("tensorboard run a -> ") and "(1 scalars, 1 points)" in ln for ln in lines), lines
    assert any(ln.startswith("tensorboard run b -> ") for ln in lines), lines

    blocked = "import sys; sys.modules['tensorboard'] = None; sys.argv = ['gitxp', 'import', 'tensorboard', sys.argv[1]]; from gitxp.cli import main; main()"
    r = subprocess.run([sys.executable, "-c", blocked, str(tmp_path / "runs")], cwd=git_repo, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip() == "Error: gitxp import tensorboard needs tensorboard, which is not installed; pip install 'gitxp[tensorboard]'"
    r = run_gitxp(git_repo, "import", "tensorboard", str(git_repo), check=False)
    assert r.returncode == 2 and "no TensorBoard event files" in r.stderr
