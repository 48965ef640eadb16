"""Bring runs recorded by other tools into the store: ``gitxp import mlflow|tensorboard DIR``.

Each importer walks a folder another tool wrote (:mod:`.mlflow`: MLflow's
file store, read as plain files; :mod:`.tensorboard`: event files, read with
the ``tensorboard`` package) and stores one experiment per run through
:func:`gitxp.run.begin.record`, the same staging, validation, encryption and
commit a live run goes through. Everything read is untrusted: names, sizes
and paths are checked, and a value gitxp cannot store is left out and said,
never allowed to stop the other runs.

A run already imported is recognised by a tag naming its origin
(``mlflow.run_id``, ``tensorboard.run_id``) and skipped, so importing the
same folder again only adds what is new.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gitxp.store import layout

#: Called with one line per run (the CLI prints them on a terminal).
Progress = Callable[[str], None]

#: Years a timestamp read from foreign files may fall in (Parquet and ISO 8601 hold these).
_MIN_TS, _MAX_TS = 0.0, 253402300799.0


@dataclass
class ImportResult:
    """What an import did: ``imported`` (source run, experiment id) and ``skipped`` (source run, reason)."""

    imported: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def unreadable(self, tool: str, source: str, exc: BaseException, say: Progress) -> None:
        """A run that could not be imported: skipped, and said, while the others go on."""
        self.skipped.append((source, "unreadable"))
        self.warnings.append(f"{tool} run {source}: not imported: {exc}")
        say(self.warnings[-1])

    def added(self, tool: str, source: str, exp_id: str, warnings: list[str], say: Progress, detail: str = "") -> None:
        """A run stored as ``exp_id``, with what was left out of it said."""
        self.imported.append((source, exp_id))
        self.warnings += [f"{tool} run {source}: {w}" for w in warnings]
        say(f"{tool} run {source} -> {exp_id}{detail}")
        for w in warnings:
            say(f"  warning: {w}")

    def summary(self) -> str:
        """``imported 3 runs, skipped 2 already imported``: the line the CLI ends with."""
        n = len(self.imported)
        text = f"imported {n} run{'' if n == 1 else 's'}"
        if self.skipped:
            counts = Counter(reason for _, reason in self.skipped)
            text += ", skipped " + ", ".join(f"{c} {reason}" for reason, c in counts.most_common())
        return text


def imported_ids(repo: str | os.PathLike[str], tag: str) -> dict[str, str]:
    """``{tag value: experiment id}`` of the store's experiments carrying ``tag`` (what was imported before)."""
    from gitxp.store.store import Store

    with Store.open(repo) as store:
        if store.tip is None:
            return {}
        out: dict[str, str] = {}
        for rec in reversed(store.experiments()):
            tags = rec.meta.get("tags")
            value = tags.get(tag) if isinstance(tags, dict) else None
            if isinstance(value, str):
                out.setdefault(value, rec.id)
        return out


def timestamp(seconds: Any) -> float | None:
    """Unix seconds read from a foreign file, or None when not a finite time in years 1970-9999."""
    try:
        t = float(seconds)
    except (TypeError, ValueError, OverflowError):
        return None
    return t if math.isfinite(t) and _MIN_TS <= t <= _MAX_TS else None


def utc(seconds: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)


def metric_name_problem(name: str) -> str | None:
    """Why a foreign metric name cannot be a gitxp metric (the writer's rules), or None."""
    if not name:
        return "an empty name"
    problem = layout.text_problem(name)
    if problem:
        return problem
    if len(name) > layout.MAX_NAME_CHARS:
        return f"more than {layout.MAX_NAME_CHARS} characters"
    return None


def clean_tags(tags: dict[str, Any], warn: Callable[[str], None]) -> dict[str, Any]:
    """The tags gitxp can store; each one left out is named through ``warn``."""
    from gitxp.errors import GitxpError

    out: dict[str, Any] = {}
    for k, v in tags.items():
        if len(out) >= layout.MAX_TAGS:
            warn(f"more than {layout.MAX_TAGS} tags: {len(tags) - len(out)} left out")
            break
        try:
            out.update(layout.check_tags({k: v}))
        except GitxpError as exc:
            warn(f"tag {k[:60]!r} left out: {exc.message}")
    return out


def experiment_name(*candidates: Any, fallback: str) -> str:
    """The first candidate that is a valid experiment name (``/`` becomes ``-``), else ``fallback``."""
    from gitxp.errors import GitxpError

    for c in candidates:
        if isinstance(c, str) and c.strip():
            try:
                return layout.check_name(c.strip().replace("/", "-").replace("\\", "-"))
            except GitxpError:
                continue
    return fallback


def walk_files(root: Any) -> Iterable[tuple[str, Any]]:
    """``(relative posix path, path)`` of every regular file under ``root``; symlinks are never followed."""
    import os
    from pathlib import Path

    root = Path(root)
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(folder, d)))
        for f in sorted(files):
            p = Path(folder) / f
            if p.is_symlink() or not p.is_file():
                continue
            yield p.relative_to(root).as_posix(), p
