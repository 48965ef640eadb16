"""The sweep of grid.yaml from Python: ``gitxp.sweep(fn, grid)`` instead of ``gitxp sweep`` on a script.

Run it inside a git repository: ``python examples/sweep/api_sweep.py``.
Each configuration runs ``fit(xp, params)`` in a process of its own, two at
a time, as a child experiment of one sweep experiment; running it again
skips what completed (``rerun=True`` runs everything). ``fit`` may be any
function, a closure or a lambda: the children are forked, not re-imported.
"""

from __future__ import annotations

import math
from pathlib import Path

import gitxp

GRID = Path(__file__).with_name("grid.yaml")


def fit(xp: gitxp.Experiment, params: dict) -> None:
    loss = 1.0
    for epoch in range(params["epochs"]):
        loss *= math.exp(-params["lr"] * math.sqrt(params["batch"]) / 4)
        xp.log_metrics({"loss": loss, "acc": 1.0 - loss / 2}, step=epoch)


if __name__ == "__main__":
    table = gitxp.sweep(fit, GRID, jobs=2, capture_code=False)
    for row in sorted(table.select(["params.lr", "params.batch", "status", "metrics.loss"]).to_pylist(), key=str):
        print(row)
