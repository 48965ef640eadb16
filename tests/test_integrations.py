"""Framework callbacks with the real frameworks on tiny CPU problems, read back from the store.

Each training script runs as a real subprocess, alone (the callback starts
and commits its own experiment) and under `gitxp start` (the callback joins:
one experiment). A test skips only when its framework is not installed
(`pip install torch==2.13.0` then `pip install -e '.[dev,integrations]'`).
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
from gitxp.artifacts import manifest as artifacts
from conftest import fsck, gitxp as run_gitxp, run_git


def needs(*modules: str) -> pytest.MarkDecorator:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} not installed: pip install -e '.[dev,integrations]'")


def train(repo: Path, code: str, *, wrapped: bool, script: str = "train.py", timeout: float = 300) -> gitxp.Record:
    """Run ``code`` as ``python train.py`` (or under ``gitxp start``); the one experiment it made."""
    (repo / script).write_text(textwrap.dedent(code))
    env = {**os.environ, "KERAS_BACKEND": "torch", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if wrapped:
        r = run_gitxp(repo, "start", "--no-hardware", "--", sys.executable, script, check=False, timeout=timeout, env=env)
    else:
        r = subprocess.run([sys.executable, script, "own"], cwd=repo, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    recs = gitxp.open(str(repo)).experiments()
    assert len(recs) == 1, [(x.id, x.name) for x in recs]
    assert recs[0].status == "completed" and recs[0].name == Path(script).stem
    fsck(repo)
    return recs[0]


def steps(rec: gitxp.Record) -> dict[str, list[int]]:
    t = rec.metrics()
    out: dict[str, list[int]] = {}
    for name, step in zip(t.column("name").to_pylist(), t.column("step").to_pylist()):
        out.setdefault(name, []).append(step)
    return {k: sorted(set(v)) for k, v in out.items()}


# Scripts take "own" as argv[1] when run alone: they then pass start options
# that keep the test fast; under `gitxp start` they pass nothing.
OPTS = "import sys\nopts = dict(log_hardware=False, capture_env=False) if sys.argv[1:] == ['own'] else {}\n"


# ------------------------------------------------------------------ import cost


@pytest.mark.parametrize(("module", "heavy"), [
    ("lightning", ("lightning", "pytorch_lightning", "torch")),
    ("transformers", ("transformers", "torch")),
    ("keras", ("keras", "torch")),
    ("xgboost", ("xgboost",)),
    ("lightgbm", ("lightgbm",)),
])
def test_importing_an_integration_does_not_import_its_framework(module: str, heavy: tuple[str, ...]) -> None:
    code = f"import sys, gitxp.integrations.{module}\nprint(','.join(m for m in {heavy!r} + ('pyarrow', 'dulwich') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_missing_framework_names_the_extra() -> None:
    code = "import sys\nsys.modules['xgboost'] = None\nfrom gitxp.integrations.xgboost import GitxpCallback"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1
    assert "MissingDependencyError: gitxp.integrations.xgboost.GitxpCallback needs xgboost, which is not installed; pip install 'gitxp[xgboost]'" in r.stderr


# ------------------------------------------------------------------ Lightning

LIGHTNING = OPTS + """
import torch
from torch import nn
import __NS__ as L
from gitxp.integrations.lightning import GitxpLogger

torch.manual_seed(0)

class Net(L.LightningModule):
    def __init__(self, hidden=8, lr=0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def training_step(self, batch, i):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, i):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

    def test_step(self, batch, i):
        x, y = batch
        self.log("test_loss", nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

x = torch.randn(64, 4)
data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
logger = GitxpLogger(log_checkpoints=True, tags={"framework": "lightning"}, **opts)
assert isinstance(logger, L.loggers.Logger)
trainer = L.Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, enable_progress_bar=False,
                    enable_model_summary=False, default_root_dir="runs", accelerator="cpu")
model = Net()
trainer.fit(model, data, data)
version = logger.version
trainer.test(model, data)  # after fit's finalize: the same experiment, resumed when owned
assert logger.version == version

"""


@needs("lightning", "torch")
@pytest.mark.parametrize("wrapped", [False, True], ids=["own", "under-gitxp-start"])
def test_lightning_logger(git_repo: Path, wrapped: bool) -> None:
    code = LIGHTNING.replace("__NS__", "lightning.pytorch")
    rec = train(git_repo, code, wrapped=wrapped)
    s = steps(rec)
    assert s["train_loss"] == list(range(8))  # 4 batches x 2 epochs, logged at global_step
    assert s["val_loss"] == [3, 7] and "epoch" in s
    assert s["test_loss"] == [8]
    assert rec.params["hidden"] == 8 and rec.params["lr"] == 0.05
    assert rec.tags["framework"] == "lightning"
    arts = [a["path"] for a in artifacts.read_manifest(rec)]
    assert any(p.startswith("checkpoints/") and p.endswith(".ckpt") for p in arts), arts


RANK_ONE = """
import sys
from lightning.pytorch.utilities import rank_zero_only
from transformers import TrainerState, TrainingArguments
from gitxp.integrations.lightning import GitxpLogger
from gitxp.integrations.transformers import GitxpCallback

rank_zero_only.rank = 1  # what Lightning sets on the other processes of a DDP run
logger = GitxpLogger()
logger.log_hyperparams({"lr": 0.1})
logger.log_metrics({"loss": 1.0}, step=0)
logger.finalize("success")
assert logger.name is None and logger.version is None

state = TrainerState(is_world_process_zero=False, global_step=3)
cb = GitxpCallback()
args = TrainingArguments("out", report_to="none", use_cpu=True)
cb.on_train_begin(args, state, None)
cb.on_log(args, state, None, logs={"loss": 0.5})
cb.on_train_end(args, state, None)
print("nothing started")
"""


@needs("lightning", "transformers", "torch")
def test_other_ranks_write_nothing(git_repo: Path) -> None:
    r = subprocess.run([sys.executable, "-c", RANK_ONE], cwd=git_repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "nothing started" in r.stdout, r.stderr[-3000:]
    assert run_git(git_repo, "branch", "--list", "gitxp").strip() == ""  # not even a store
    assert not (git_repo / ".git" / "gitxp" / "staging").exists() or not any((git_repo / ".git" / "gitxp" / "staging").iterdir())


@needs("pytorch_lightning", "torch")
def test_lightning_logger_for_the_pytorch_lightning_namespace(git_repo: Path) -> None:
    code = LIGHTNING.replace("__NS__", "pytorch_lightning")
    rec = train(git_repo, code, wrapped=False)
    assert steps(rec)["train_loss"] == list(range(8))


# ------------------------------------------------------------------ Transformers

TRANSFORMERS = OPTS + """
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
from gitxp.integrations.transformers import GitxpCallback

torch.manual_seed(0)
config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=16, num_labels=2)
model = BertForSequenceClassification(config)  # random weights: no download
ids = torch.randint(0, 40, (32, 8))
data = [{"input_ids": ids[i], "labels": int(ids[i].sum() % 2)} for i in range(32)]
args = TrainingArguments(output_dir="hf-out", max_steps=4, logging_steps=1, per_device_train_batch_size=8,
                         learning_rate=1e-3, eval_strategy="steps", eval_steps=2, save_strategy="no",
                         report_to="none", use_cpu=True, disable_tqdm=True)
trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:8], callbacks=[GitxpCallback(**opts)])
trainer.train()
"""


@needs("transformers", "torch", "accelerate")
@pytest.mark.parametrize("wrapped", [False, True], ids=["own", "under-gitxp-start"])
def test_transformers_callback(git_repo: Path, wrapped: bool) -> None:
    rec = train(git_repo, TRANSFORMERS, wrapped=wrapped)
    s = steps(rec)
    assert s["loss"] == [1, 2, 3, 4]  # on_log at state.global_step
    assert s["eval_loss"] == [2, 4]
    assert s["train_runtime"] == [4] and "learning_rate" in s
    assert rec.params["learning_rate"] == 0.001 and rec.params["max_steps"] == 4
    assert rec.params["train_batch_size"] == 8 and rec.params["output_dir"] == "hf-out"


# ------------------------------------------------------------------ Keras

KERAS = OPTS + """
import numpy as np
import keras
from gitxp.integrations.keras import GitxpCallback

keras.utils.set_random_seed(0)
x = np.random.rand(64, 4).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse", metrics=["mae"])
model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0,
          callbacks=[GitxpCallback(log_every_n_batches=2, params={"hidden": 8}, **opts)])
assert keras.backend.backend() == "torch"
"""


@needs("keras", "torch")
@pytest.mark.parametrize("wrapped", [False, True], ids=["own", "under-gitxp-start"])
def test_keras_callback(git_repo: Path, wrapped: bool) -> None:
    rec = train(git_repo, KERAS, wrapped=wrapped)
    s = steps(rec)
    for name in ("loss", "mae", "val_loss", "val_mae"):  # val_ kept as Keras names it
        assert s[name] == [0, 1, 2], (name, s)
    assert s["batch/loss"] == [1, 3, 5, 7]  # 3 batches x 3 epochs, every 2nd
    assert rec.params["epochs"] == 3 and rec.params["steps"] == 3 and rec.params["hidden"] == 8
    assert rec.params["optimizer"] == "SGD" and abs(rec.params["learning_rate"] - 0.05) < 1e-6


# ------------------------------------------------------------------ XGBoost

XGBOOST = OPTS + """
import xgboost as xgb
from sklearn.datasets import load_diabetes
from gitxp.integrations.xgboost import GitxpCallback

X, y = load_diabetes(return_X_y=True)
dtrain, dvalid = xgb.DMatrix(X[:300], label=y[:300]), xgb.DMatrix(X[300:], label=y[300:])
params = {"max_depth": 2, "eta": 0.3, "objective": "reg:squarederror", "nthread": 1}
xgb.train(params, dtrain, 5, evals=[(dtrain, "train"), (dvalid, "valid")], verbose_eval=False,
          callbacks=[GitxpCallback(params=params, log_model=True, **opts)])
"""


@needs("xgboost", "sklearn")
@pytest.mark.parametrize("wrapped", [False, True], ids=["own", "under-gitxp-start"])
def test_xgboost_callback(git_repo: Path, wrapped: bool) -> None:
    rec = train(git_repo, XGBOOST, wrapped=wrapped)
    s = steps(rec)
    assert s == {"train-rmse": [0, 1, 2, 3, 4], "valid-rmse": [0, 1, 2, 3, 4]}
    assert rec.params["max_depth"] == 2 and rec.params["objective"] == "reg:squarederror"
    assert b'"learner"' in rec.read_artifact("model.json")


@needs("xgboost", "sklearn")
def test_xgboost_cv_logs_mean_and_std(git_repo: Path) -> None:
    import xgboost as xgb
    from sklearn.datasets import load_diabetes

    from gitxp.integrations.xgboost import GitxpCallback

    X, y = load_diabetes(return_X_y=True)
    cb = GitxpCallback("cv", repo=str(git_repo), log_hardware=False, capture_env=False)
    xgb.cv({"max_depth": 2, "nthread": 1}, xgb.DMatrix(X, label=y), 3, nfold=3, callbacks=[cb])
    rec = gitxp.open(str(git_repo)).get("@")
    assert rec.name == "cv" and rec.status == "completed"
    assert set(steps(rec)) == {"train-rmse", "train-rmse-std", "test-rmse", "test-rmse-std"}


# ------------------------------------------------------------------ LightGBM

LIGHTGBM = OPTS + """
import lightgbm as lgb
from sklearn.datasets import load_breast_cancer
from gitxp.integrations.lightgbm import callback

X, y = load_breast_cancer(return_X_y=True)
train = lgb.Dataset(X[:400], label=y[:400])
valid = lgb.Dataset(X[400:], label=y[400:], reference=train)
params = {"objective": "binary", "metric": ["binary_logloss", "auc"], "num_leaves": 4, "verbose": -1, "num_threads": 1}
lgb.train(params, train, 5, valid_sets=[train, valid], valid_names=["train", "valid"], callbacks=[callback(**opts)])
"""


@needs("lightgbm", "sklearn")
@pytest.mark.parametrize("wrapped", [False, True], ids=["own", "under-gitxp-start"])
def test_lightgbm_callback(git_repo: Path, wrapped: bool) -> None:
    rec = train(git_repo, LIGHTGBM, wrapped=wrapped)
    s = steps(rec)
    assert s == {f"{d}-{m}": [0, 1, 2, 3, 4] for d in ("train", "valid") for m in ("binary_logloss", "auc")}
    assert rec.params["objective"] == "binary" and rec.params["num_leaves"] == 4


@needs("lightgbm", "sklearn")
def test_lightgbm_cv_five_field_results(git_repo: Path) -> None:
    import lightgbm as lgb
    from sklearn.datasets import load_breast_cancer

    from gitxp.integrations.lightgbm import callback

    X, y = load_breast_cancer(return_X_y=True)
    params = {"objective": "binary", "metric": "auc", "num_leaves": 4, "verbose": -1, "num_threads": 1}
    lgb.cv(params, lgb.Dataset(X, label=y), 3, nfold=3, callbacks=[callback("cv", repo=str(git_repo), log_hardware=False, capture_env=False)])
    rec = gitxp.open(str(git_repo)).get("@")
    assert rec.name == "cv" and rec.status == "completed"
    assert steps(rec) == {"valid-auc": [0, 1, 2], "valid-auc-stdv": [0, 1, 2]}


@needs("lightgbm", "sklearn")
def test_the_lightgbm_example_runs(git_repo: Path) -> None:
    example = (Path(__file__).resolve().parents[1] / "examples" / "lightgbm_train.py").read_text()
    rec = train(git_repo, example, wrapped=False, script="lightgbm_train.py")
    assert steps(rec) == {"valid-auc": list(range(20)), "valid-binary_logloss": list(range(20))}
    assert rec.tags == {"kind": "example"} and rec.params["num_leaves"] == 8


LIGHTNING_FAILS = """
import torch
from torch import nn
import lightning.pytorch as L
from gitxp.integrations.lightning import GitxpLogger

class Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 1)

    def training_step(self, batch, i):
        if self.global_step == 2:
            raise RuntimeError("diverged")
        loss = self.net(batch[0]).pow(2).mean()
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(64, 4)), batch_size=16)
trainer = L.Trainer(max_epochs=1, logger=GitxpLogger(log_hardware=False, capture_env=False), log_every_n_steps=1,
                    enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
trainer.fit(Net(), data)
"""


@needs("lightning", "torch")
def test_lightning_failure_is_recorded_as_failed(git_repo: Path) -> None:
    (git_repo / "fails.py").write_text(LIGHTNING_FAILS)
    r = subprocess.run([sys.executable, "fails.py"], cwd=git_repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "RuntimeError: diverged" in r.stderr
    rec = gitxp.open(str(git_repo)).get("@")
    assert rec.status == "failed" and rec.name == "fails"
    assert rec.meta["error"]["type"] == "RuntimeError" and rec.meta["error"]["message"] == "diverged"
    assert steps(rec)["train_loss"] == [0, 1]
