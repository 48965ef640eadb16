"""A tiny training script that knows nothing about gitxp.

Run it wrapped: `gitxp start --scalars -- python train.py --lr 0.1 --epochs 5`.
`--scalars` turns its `loss=… acc=…` lines into metrics; the script, its
uncommitted edits, its output and its environment are recorded as they are.
"""

import argparse
import math
import random
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    random.seed(args.seed)
    for epoch in range(args.epochs):
        loss = math.exp(-args.lr * (epoch + 1) * 3) + random.random() * 0.01
        acc = 1.0 - loss / 2
        print(f"step={epoch} loss={loss:.4f} acc={acc:.4f}", flush=True)
        time.sleep(0.05)
    with open("model.txt", "w") as f:
        f.write(f"weights trained with lr={args.lr}\n")


if __name__ == "__main__":
    main()
