"""A tiny "training" script for sweeps: takes --lr/--batch/--epochs, logs loss and acc.

Run it alone (``python train.py --lr 0.1``), under ``gitxp start``, or in a
sweep (``gitxp sweep grid.yaml -- python train.py --lr {lr} --batch {batch}``);
``gitxp.current()`` is None when it runs outside gitxp, and logging is skipped.
"""

from __future__ import annotations

import argparse
import math

import gitxp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fail-above", type=float, default=None, help="exit 1 when lr exceeds this (to test failures)")
    args = parser.parse_args()
    if args.fail_above is not None and args.lr > args.fail_above:
        raise SystemExit(f"lr {args.lr} diverged")
    xp = gitxp.current()
    loss = 1.0
    for epoch in range(args.epochs):
        loss = loss * math.exp(-args.lr * math.sqrt(args.batch) / 4)
        acc = 1.0 - loss / 2
        print(f"epoch={epoch} loss={loss:.4f} acc={acc:.4f}")
        if xp is not None:
            xp.log_metrics({"loss": loss, "acc": acc}, step=epoch)


if __name__ == "__main__":
    main()
