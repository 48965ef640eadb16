"""A small training script that knows nothing about gitxp.

It fits y = sin(pi x) with a cubic polynomial by gradient descent, as the
PyTorch "polynomial" tutorial does, and prints what such scripts print:
`99 0.0123` (step, then loss) while training, then `val_loss: 0.0128 -
val_acc: 0.9500` and the learned function `Result: y = … x + … x^3`.

Run it wrapped:

    gitxp start --scalars --scalar 'loss=^(?P<step>\\d+) ([-+.\\deE]+)$' -- python train.py --lr 0.1

`--scalar` reads the `99 0.0123` lines as the metric `loss` at step 99;
`--scalars` reads `val_loss` and `val_acc`, and nothing from the equation.
The script, its uncommitted edits, its output and its environment are
recorded as they are.
"""

import argparse
import math
import random
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    xs = [rng.uniform(-1, 1) for _ in range(200)]
    ys = [math.sin(math.pi * x) for x in xs]
    w = [0.0, 0.0, 0.0, 0.0]  # a + b x + c x^2 + d x^3

    def predict(x: float) -> float:
        return w[0] + w[1] * x + w[2] * x**2 + w[3] * x**3

    for t in range(args.steps):
        grad = [0.0] * 4
        loss = 0.0
        for x, y in zip(xs, ys):
            err = predict(x) - y
            loss += err * err
            for k in range(4):
                grad[k] += 2 * err * x**k
        w = [wk - args.lr * g / len(xs) for wk, g in zip(w, grad)]
        if t % 10 == 9:
            print(f"{t} {loss:.4f}", flush=True)
            time.sleep(0.01)
    val = [rng.uniform(-1, 1) for _ in range(100)]
    errors = [predict(x) - math.sin(math.pi * x) for x in val]
    val_loss = sum(e * e for e in errors) / len(errors)
    val_acc = sum(abs(e) < 0.25 for e in errors) / len(errors)
    print(f"val_loss: {val_loss:.4f} - val_acc: {val_acc:.4f}")
    terms = " ".join(f"{'-' if wk < 0 else '+'} {abs(wk):.3f} x^{k}" for k, wk in enumerate(w) if k)
    print(f"Result: y = {w[0]:.3f} {terms}")
    with open("model.txt", "w") as f:
        f.write(" ".join(f"{wk:.6f}" for wk in w) + "\n")


if __name__ == "__main__":
    main()
