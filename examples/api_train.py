"""Logging from code: `python api_train.py` inside a git repository.

The experiment is committed to the `gitxp` branch when the block ends;
an exception inside it marks the experiment `failed` and is re-raised.
"""

import math

import gitxp

config = {"lr": 0.05, "epochs": 20, "optimizer": {"name": "sgd", "momentum": 0.9}}

with gitxp.start(name="api-demo", params=config, tags={"kind": "example"}) as xp:
    for step in range(config["epochs"]):
        loss = math.exp(-config["lr"] * step)
        xp.log_metrics({"loss": loss, "acc": 1 - loss / 2}, step=step)
    xp.summary["best_acc"] = 1 - loss / 2
    print(f"recorded experiment {xp.id}")
