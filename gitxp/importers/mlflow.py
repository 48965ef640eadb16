"""``gitxp import mlflow MLRUNS_DIR``: MLflow's file store, read as files (mlflow is not needed).

The layout (MLflow 1.x-3.x ``FileStore``)::

    mlruns/<experiment id>/meta.yaml              name, lifecycle_stage
    mlruns/<experiment id>/<run id>/meta.yaml     run_id, status, start_time, end_time (ms), user_id
    .../<run id>/params/<key>                     the value as text (keys may hold '/': sub-folders)
    .../<run id>/metrics/<key>                    lines "timestamp_ms value [step]"
    .../<run id>/tags/<key>                       the value as text
    .../<run id>/artifacts/...                    files

Each run becomes one experiment: named after its MLflow experiment (so
``gitxp show demo`` is the newest run of MLflow experiment ``demo``), params
read like ``-p`` values (``0.1`` is a number again), dotted keys nested,
metric histories with their steps and timestamps, tags (MLflow's
``mlflow.*`` system tags included, e.g. ``mlflow.runName``,
``mlflow.source.name``, ``mlflow.user``) plus ``mlflow.run_id``,
``mlflow.experiment_id`` and ``mlflow.experiment``; ``mlflow.note.content``
becomes the notes and the bulky ``mlflow.log-model.history`` is left out.
Status: FINISHED → completed, FAILED → failed, KILLED → interrupted, and
RUNNING/SCHEDULED → crashed (a file store cannot tell a live run from a dead
one; gitxp's word for "ended without saying how" is crashed). A child run
(``mlflow.parentRunId``) gets its imported parent as ``parent``. Artifacts are
read only from the run's own ``artifacts/`` folder (never from an
``artifact_uri`` elsewhere), symlinks skipped, and stored encrypted. Deleted
runs and experiments (``lifecycle_stage: deleted``, ``.trash``) are skipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gitxp.store import layout
from gitxp.errors import GitxpError, UsageError
from gitxp.importers import ImportResult, Progress, clean_tags, experiment_name, imported_ids, metric_name_problem, timestamp, utc, walk_files

#: The tag that remembers where an experiment came from (and makes re-imports skip it).
RUN_ID_TAG = "mlflow.run_id"
#: MLflow's RunStatus numbers and names → gitxp statuses.
STATUS = {
    1: "crashed", 2: "crashed", 3: "completed", 4: "failed", 5: "interrupted",
    "RUNNING": "crashed", "SCHEDULED": "crashed", "FINISHED": "completed", "FAILED": "failed", "KILLED": "interrupted",
}
#: Tags that are not worth a tag: huge JSON, or the notes (stored as notes).
DROPPED_TAGS = ("mlflow.log-model.history", "mlflow.note.content")
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: A meta.yaml, a param or a tag bigger than this is not MLflow's (it caps values at a few KB).
MAX_TEXT_BYTES = 1 << 20


def _read_text(path: Path, what: str) -> str:
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise UsageError(f"{what} is {size} bytes, more than MLflow writes", "check that this is an MLflow file store")
    return path.read_bytes().decode("utf-8", "replace")


def _meta(folder: Path) -> dict[str, Any] | None:
    p = folder / "meta.yaml"
    if p.is_symlink() or not p.is_file():
        return None
    doc = layout.load_yaml(_read_text(p, str(p)), what=str(p))
    return doc if isinstance(doc, dict) else None


def _ms(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return timestamp(value / 1000)


def runs(root: Path) -> list[tuple[dict[str, Any], Path, dict[str, Any]]]:
    """``(experiment meta, run folder, run meta)`` of every active run, oldest first (parents before children)."""
    found = []
    for exp_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and _ID_RE.fullmatch(p.name)):
        exp = _meta(exp_dir)
        if exp is None or exp.get("lifecycle_stage", "active") != "active":
            continue
        for run_dir in sorted(p for p in exp_dir.iterdir() if p.is_dir() and not p.is_symlink() and _ID_RE.fullmatch(p.name)):
            meta = _meta(run_dir)
            if meta is None or not isinstance(meta.get("run_id"), str) or not _ID_RE.fullmatch(meta["run_id"]):
                continue  # a logged model's or dataset's folder, not a run
            found.append((exp, run_dir, meta))
    found.sort(key=lambda f: (_ms(f[2].get("start_time")) or 0.0, f[2]["run_id"]))
    return found


def _values(folder: Path, what: str, warn: Any) -> dict[str, str]:
    """``{key: text}`` of a params/ or tags/ folder (keys with '/' are sub-folders)."""
    out: dict[str, str] = {}
    if not folder.is_dir() or folder.is_symlink():
        return out
    for key, p in walk_files(folder):
        try:
            out[key] = _read_text(p, f"{what} {key[:60]!r}").rstrip("\n") if what == "tag" else _read_text(p, f"{what} {key[:60]!r}")
        except (GitxpError, OSError) as exc:
            warn(f"{what} {key[:60]!r} left out: {exc}")
    return out


def _params(texts: dict[str, str], warn: Any) -> dict[str, Any]:
    from gitxp.run.logged import check_params
    from gitxp.params import parse_scalar, set_dotted

    out: dict[str, Any] = {}
    for key, text in sorted(texts.items()):
        value = parse_scalar(text) if "\n" not in text else text
        try:
            check_params({key: value})
            try:
                set_dotted(out, key, value)
            except GitxpError:
                out[key] = value  # "a" and "a.b" both set: keep the dotted key flat
        except GitxpError as exc:
            warn(f"param {key[:60]!r} left out: {exc}")
    return out


def _metrics(folder: Path, warn: Any) -> list[tuple[str, int, float, float]]:
    """``(name, step, value, seconds)`` rows of every metric file; lines that do not parse are counted and said."""
    rows: list[tuple[str, int, float, float]] = []
    if not folder.is_dir() or folder.is_symlink():
        return rows
    for name, p in walk_files(folder):
        problem = metric_name_problem(name)
        if problem:
            warn(f"metric {name[:60]!r} left out: {problem}")
            continue
        bad = 0
        with open(p, "rb") as f:
            for line in f:
                parts = line.split()
                try:
                    t = timestamp(int(parts[0]) / 1000)
                    value = float(parts[1])
                    step = int(parts[2]) if len(parts) > 2 else 0
                except (IndexError, ValueError):
                    bad += 1
                    continue
                if t is None or not 0 <= step < 2**63 or len(parts) > 3:
                    bad += 1
                    continue
                rows.append((name, step, value, t))
        if bad:
            warn(f"metric {name[:60]!r}: {bad} line(s) that are not 'timestamp value step' (or have a negative step) left out")
    return rows


def import_mlflow(root: str | os.PathLike[str], *, repo: str | os.PathLike[str] = ".", progress: Progress | None = None) -> ImportResult:
    """Import every run of the MLflow file store at ``root`` not imported before (see the module docstring).

    Raises:
        UsageError: ``root`` is not a folder, or holds no MLflow experiment.
    """
    from gitxp.run.begin import record

    base = Path(root)
    if not base.is_dir():
        raise UsageError(f"{os.fspath(root)!r} is not a folder", "pass the mlruns folder MLflow wrote (its tracking URI file:///…/mlruns)")
    if not any((p / "meta.yaml").is_file() for p in base.iterdir() if p.is_dir()):
        hint = f"did you mean {os.fspath(base / 'mlruns')!r}?" if (base / "mlruns").is_dir() else "pass the folder that holds <experiment id>/meta.yaml"
        raise UsageError(f"{os.fspath(root)!r} is not an MLflow file store (no experiment folders with meta.yaml)", hint)
    result = ImportResult()
    done = imported_ids(repo, RUN_ID_TAG)
    say = progress or (lambda _line: None)
    for exp, run_dir, meta in runs(base):
        run_id = meta["run_id"]
        if meta.get("lifecycle_stage", "active") != "active":
            result.skipped.append((run_id, "deleted in MLflow"))
            continue
        if run_id in done:
            result.skipped.append((run_id, "already imported"))
            continue
        warnings: list[str] = []
        warn = warnings.append
        try:
            exp_id = _import_run(record, repo, exp, run_dir, meta, done, warn)
        except (GitxpError, OSError) as exc:
            result.unreadable("mlflow", run_id, exc, say)
            continue
        done[run_id] = exp_id
        result.added("mlflow", run_id, exp_id, warnings, say)
    return result


def _import_run(record: Callable[..., str], repo: str | os.PathLike[str], exp: dict[str, Any], run_dir: Path, meta: dict[str, Any], done: dict[str, str], warn: Any) -> str:
    run_id = meta["run_id"]
    tag_texts = _values(run_dir / "tags", "tag", warn)
    notes = tag_texts.pop("mlflow.note.content", None)
    for t in DROPPED_TAGS:
        tag_texts.pop(t, None)
    exp_id_text = str(exp.get("experiment_id", ""))
    tags = clean_tags({**tag_texts, RUN_ID_TAG: run_id, "mlflow.experiment_id": exp_id_text, "mlflow.experiment": str(exp.get("name", ""))}, warn)
    params = _params(_values(run_dir / "params", "param", warn), warn)
    rows = _metrics(run_dir / "metrics", warn)
    times = [r[3] for r in rows]
    start = _ms(meta.get("start_time")) or (min(times) if times else None)
    end = _ms(meta.get("end_time")) or (max(times) if times else start)
    if start is None:
        start = end = layout.utcnow().timestamp()
        warn("no start time recorded: imported with the time of the import")
    status = STATUS.get(meta.get("status"), "crashed")
    if notes is not None:
        try:
            layout.check_notes(notes)
        except GitxpError as exc:
            warn(f"note left out: {exc}")
            notes = None
    artifacts = []
    art_dir = run_dir / "artifacts"
    if art_dir.is_dir() and not art_dir.is_symlink():
        for rel, p in walk_files(art_dir):
            try:
                artifacts.append((p, layout.safe_relpath(rel, what="artifact path")))
            except GitxpError as exc:
                warn(f"artifact left out: {exc}")
    parent = done.get(tag_texts.get("mlflow.parentRunId", ""))
    user = meta.get("user_id") if isinstance(meta.get("user_id"), str) else tag_texts.get("mlflow.user")
    return str(record(
        repo=repo, name=experiment_name(exp.get("name"), meta.get("run_name"), fallback=f"mlflow-{exp_id_text or 'run'}"),
        started=utc(start), ended=utc(end if end is not None and end >= start else start), status=status,
        params=params, tags=tags, notes=notes, parent=parent, source_commit=tag_texts.get("mlflow.source.git.commit"),
        user=user if user and not layout.text_problem(user) else None,
        error="the MLflow run ended with status FAILED" if status == "failed" else None,
        metrics=rows, artifacts=artifacts,
    ))
