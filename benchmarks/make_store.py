"""Generate a large gitxp store quickly, straight through gitxp's plumbing.

    python benchmarks/make_store.py PATH -n 20000 [--per-day 200] [--commits 1] [--same-day] [--seed 0]

PATH becomes a git repository (created when missing, with one commit on
``main``) whose ``gitxp`` branch holds N finished experiments, each with the
files a real run writes for listings: ``experiment.yaml`` (the same fields, in
the same order, as :mod:`gitxp.run.finish`) and ``params.yaml``. Experiments are
day-sharded like real ones (``experiments/YYYY-MM-DD/<id>/``), ``--per-day``
to a day, the newest created just before now, and land in ``--commits`` commits
(one by default) on top of the store's init commit. Ids are deterministic for
a given seed. No metric logs, code trees or artifacts are written: listing
reads only the two YAML files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gitxp.store import layout, listing  # noqa: E402
from gitxp.plumbing.repo import FILE_MODE, TREE_MODE, Entry, Repo  # noqa: E402
from gitxp.store.store import Store  # noqa: E402

MODELS = ("resnet18", "resnet50", "vit-s", "mlp", "convnext-t")
OPTIMIZERS = ("sgd", "adam", "adamw")


def _init_repo(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if (path / ".git").exists():
        return
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    (path / "train.py").write_text("print('train')\n")
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(path), "commit", "-q", "-m", "init"], check=True, env=env)
    for k, v in (("user.name", "bench"), ("user.email", "bench@example.com")):
        subprocess.run(["git", "-C", str(path), "config", k, v], check=True)


def experiment_docs(rng: random.Random, exp_id: str, created: dt.datetime, source_commit: str, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(experiment.yaml, params.yaml) documents shaped like a finished real run."""
    lr = round(10 ** rng.uniform(-5, -1), 6)
    params = {
        "lr": lr,
        "batch_size": rng.choice((32, 64, 128, 256)),
        "epochs": rng.choice((10, 20, 50)),
        "model": rng.choice(MODELS),
        "seed": index % 10,
        "optimizer": {"name": rng.choice(OPTIMIZERS), "momentum": round(rng.uniform(0.8, 0.99), 3), "weight_decay": 1e-4},
    }
    steps = params["epochs"] * 100
    loss_last = round(rng.uniform(0.05, 1.0), 6)
    acc_last = round(rng.uniform(0.5, 0.99), 6)
    duration = round(rng.uniform(5, 3600), 3)
    ended = created + dt.timedelta(seconds=duration)
    meta = {
        "id": exp_id,
        "name": f"{params['model']}-sweep",
        "parent": None,
        "status": "completed" if rng.random() > 0.05 else "failed",
        "created": layout.isotime(created),
        "started": layout.isotime(created),
        "ended": layout.isotime(ended),
        "duration_s": duration,
        "command": ["python", "train.py", "--lr", str(lr)],
        "cwd": "/home/bench/project",
        "exit_code": 0,
        "host": f"node{index % 8}",
        "user": "bench",
        "tags": {"team": "vision"} if index % 3 == 0 else {},
        "notes": None,
        "source": {"branch": "main", "commit": source_commit, "dirty": index % 4 == 0, "tree": None},
        "metrics": {
            "loss": {"last": loss_last, "min": round(loss_last * 0.9, 6), "max": 2.3, "count": steps, "last_step": steps - 1},
            "acc": {"last": acc_last, "min": 0.1, "max": round(min(1.0, acc_last * 1.01), 6), "count": params["epochs"], "last_step": params["epochs"] - 1},
        },
        "summary": {"best_acc": round(min(1.0, acc_last * 1.01), 6)},
    }
    if meta["status"] == "failed":
        meta["exit_code"] = 1
    return meta, params


def make_store(path: str | os.PathLike[str], n: int, *, per_day: int = 200, commits: int = 1, seed: int = 0,
               now: dt.datetime | None = None, quiet: bool = False, same_day: bool = False, rows: bool = True) -> str:
    """Create (or extend) the store at ``path`` with ``n`` experiments; returns the new tip commit.

    ``same_day``: all of them in today's day folder (a sweep day), spread
    between midnight UTC and ``now``. ``rows``: write the store's listing
    index (``listing/``) as one commit per experiment would have; without
    it the store looks like one written before the index existed.
    """
    path = Path(path)
    _init_repo(path)
    repo = Repo(path)
    store = Store(repo)
    store.ensure(quiet=True)
    source_commit = repo.head()[0] or "0" * 40
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    spacing = 86400 / max(per_day, 1)
    if same_day:
        midnight = now.replace(hour=0, minute=0, second=0)
        spacing = max((now - midnight).total_seconds() - 1, 0) / max(n, 1)

    # every experiment, oldest first, the newest created just before now:
    # (day name, id, created, index); about per_day fall on each day
    plan = []
    for i in range(n):
        created = now - dt.timedelta(seconds=(n - i) * spacing - rng.uniform(0, spacing * 0.5))
        exp_id = f"{created:%Y%m%d-%H%M%S}-{rng.getrandbits(48):012x}"
        plan.append((layout.id_day(exp_id), exp_id, created, i))

    t0 = time.perf_counter()
    batches = max(1, commits)
    size = (n + batches - 1) // batches
    tip = store.tip
    for b in range(batches):
        chunk = plan[b * size : (b + 1) * size]
        if not chunk:
            break
        changes: dict[str, Entry | None] = {}
        by_day: dict[str, list[Entry]] = {}
        day_rows: dict[str, list[bytes]] = {}
        for day, exp_id, created, i in chunk:
            meta, params = experiment_docs(rng, exp_id, created, source_commit, i)
            sub = repo.write_tree([
                Entry(layout.EXPERIMENT_FILE, FILE_MODE, repo.write_blob(layout.dump_yaml(meta).encode())),
                Entry(layout.PARAMS_FILE, FILE_MODE, repo.write_blob(layout.dump_yaml(params).encode())),
            ])
            by_day.setdefault(day, []).append(Entry(exp_id, TREE_MODE, sub))
            line = listing.encode_row(exp_id, sub, meta, params)
            if rows and line is not None:
                day_rows.setdefault(day, []).append(line)
        tip_tree = repo.read_commit(tip)["tree"] if tip else None
        for day, entries in by_day.items():
            old = repo.lookup(tip_tree, f"{layout.EXPERIMENTS_DIR}/{day}")
            merged = {e.name: e for e in (repo.read_tree(old.sha) if old is not None and old.is_tree else [])}
            merged.update({e.name: e for e in entries})
            changes[f"{layout.EXPERIMENTS_DIR}/{day}"] = Entry(day, TREE_MODE, repo.write_tree(merged.values()))
        for day, lines in day_rows.items():
            # what one commit per experiment leaves: sealed files of SEAL_ROWS rows, the rest pending
            # (a generated batch on top of an existing pending file simply seals it first)
            folder = listing.day_path(day)
            old_pending = repo.lookup(tip_tree, f"{folder}/{listing.PENDING_FILE}")
            if old_pending is not None:
                changes[f"{folder}/{listing.sealed_name(old_pending.sha)}"] = old_pending
            for k in range(0, len(lines), listing.SEAL_ROWS):
                sha = repo.write_blob(b"".join(lines[k : k + listing.SEAL_ROWS]))
                name = listing.PENDING_FILE if k + listing.SEAL_ROWS >= len(lines) else listing.sealed_name(sha)
                changes[f"{folder}/{name}"] = Entry(name, FILE_MODE, sha)
        tree = repo.update_tree(tip_tree, changes)
        commit = repo.write_commit(tree, [tip] if tip else [], f"bench: {len(chunk)} generated experiments\n")
        if not repo.cas_ref(store.branch, tip, commit, message="bench: generated experiments"):
            raise RuntimeError("the store branch moved while generating")
        tip = commit
        if not quiet:
            print(f"make_store: commit {b + 1}/{batches}: {len(chunk)} experiments ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    repo.close()
    assert tip is not None
    return tip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path")
    ap.add_argument("-n", type=int, default=1000, help="number of experiments (default 1000)")
    ap.add_argument("--per-day", type=int, default=200, help="experiments per day shard (default 200)")
    ap.add_argument("--commits", type=int, default=1, help="spread them over this many commits (default 1)")
    ap.add_argument("--same-day", action="store_true", help="all in today's day folder (a sweep day)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-rows", action="store_true", help="no listing index (listing/), like a store written before it existed")
    a = ap.parse_args(argv)
    t = time.perf_counter()
    tip = make_store(a.path, a.n, per_day=a.per_day, commits=a.commits, seed=a.seed, same_day=a.same_day, rows=not a.no_rows)
    print(f"make_store: {a.n} experiments in {a.path} ({time.perf_counter() - t:.1f}s), tip {tip[:12]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
