"""``gitxp import tensorboard LOGDIR``: one experiment per run folder of TensorBoard event files.

A run folder is any folder under LOGDIR (LOGDIR itself included) holding
``*tfevents*`` files; its scalars become metrics with their steps and wall
times: ``simple_value`` scalars (``torch.utils.tensorboard``, tensorboardX,
TF1) and scalar tensors of the ``scalars`` plugin (TF2 ``tf.summary``).
Events are read with the ``tensorboard`` package's ``EventAccumulator``
(``pip install 'gitxp[tensorboard]'``), which also drops the steps a
restarted run overwrote, as TensorBoard shows them. Images, histograms and
text are not imported.

The experiment is named after the run folder's path under LOGDIR (``/``
becomes ``-``; LOGDIR's own name for LOGDIR), started at the first event's
wall time and ended, completed, at the last. Tags: ``tensorboard.run`` (that
path) and ``tensorboard.run_id``, a digest of the event files' names and
first records (:func:`run_id`), which stays the same when the folder moves
and makes a re-import skip the run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from gitxp.errors import GitxpError, MissingDependencyError, UsageError
from gitxp.importers import ImportResult, Progress, experiment_name, imported_ids, metric_name_problem, timestamp, utc

RUN_ID_TAG = "tensorboard.run_id"


def _accumulator() -> Any:
    try:
        from tensorboard.backend.event_processing import event_accumulator  # type: ignore[import-untyped]
    except ImportError:
        raise MissingDependencyError("gitxp import tensorboard", "tensorboard", "tensorboard") from None
    return event_accumulator


def run_folders(root: Path) -> list[Path]:
    """Folders under ``root`` (itself included) holding event files, in path order; symlinks not followed."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(folder, d)))
        if any("tfevents" in f and os.path.isfile(os.path.join(folder, f)) and not os.path.islink(os.path.join(folder, f)) for f in files):
            found.append(Path(folder))
    return sorted(found)


def run_id(folder: Path) -> str:
    """A digest of each event file's name and first record.

    The name holds a time to the second and a host (tensorboardX adds no
    process id, so two writers started in the same second share it); the
    first record is the writer's ``file_version`` event with a microsecond
    wall time, written once and never changed while the file grows.
    """
    h = hashlib.sha256()
    for f in sorted(f for f in folder.iterdir() if "tfevents" in f.name and f.is_file() and not f.is_symlink()):
        with open(f, "rb") as fh:
            head = fh.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else 0
            first = head + fh.read(4 + min(length, 1024) + 4)  # TFRecord framing: length, its CRC, data, data CRC
        h.update(f.name.encode() + b"\0" + first + b"\0")
    return h.hexdigest()[:24]


def scalars(folder: Path, warn: Any) -> list[tuple[str, int, float, float]]:
    """``(tag, step, value, wall_time)`` of every scalar in ``folder``'s event files."""
    ea = _accumulator()
    acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    series: list[tuple[str, list[tuple[int, float, float]]]] = []
    for tag in tags.get("scalars", []):
        series.append((tag, [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)]))
    for tag in tags.get("tensors", []):
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            continue
        from tensorboard.util import tensor_util  # type: ignore[import-untyped]

        pts = []
        for e in acc.Tensors(tag):
            arr = tensor_util.make_ndarray(e.tensor_proto)
            if arr.size == 1:
                pts.append((e.step, float(arr.reshape(())), e.wall_time))
        series.append((tag, pts))
    rows = []
    for tag, pts in series:
        problem = metric_name_problem(tag)
        if problem:
            warn(f"scalar {tag[:60]!r} left out: {problem}")
            continue
        bad = 0
        for step, value, wall in pts:
            t = timestamp(wall)
            if t is None or not 0 <= step < 2**63:
                bad += 1
                continue
            rows.append((tag, int(step), float(value), t))
        if bad:
            warn(f"scalar {tag[:60]!r}: {bad} point(s) with a negative step or an impossible time left out")
    return rows


def import_tensorboard(logdir: str | os.PathLike[str], *, repo: str | os.PathLike[str] = ".", progress: Progress | None = None) -> ImportResult:
    """Import every run folder under ``logdir`` not imported before (see the module docstring).

    Raises:
        UsageError: ``logdir`` is not a folder or holds no event files.
        MissingDependencyError: the ``tensorboard`` package is not installed.
    """
    from gitxp.run.begin import record

    base = Path(logdir)
    if not base.is_dir():
        raise UsageError(f"{os.fspath(logdir)!r} is not a folder", "pass the log folder given to SummaryWriter (e.g. runs/)")
    folders = run_folders(base)
    if not folders:
        raise UsageError(f"no TensorBoard event files (*tfevents*) under {os.fspath(logdir)!r}", "pass the folder given to SummaryWriter or `tensorboard --logdir`")
    _accumulator()  # say the extra is missing before anything else
    result = ImportResult()
    done = imported_ids(repo, RUN_ID_TAG)
    say = progress or (lambda _line: None)
    for folder in folders:
        rel = folder.relative_to(base).as_posix()
        label = rel if rel != "." else base.resolve().name
        rid = run_id(folder)
        if rid in done:
            result.skipped.append((label, "already imported"))
            continue
        warnings: list[str] = []
        try:
            try:
                rows = scalars(folder, warnings.append)
            except GitxpError:
                raise
            except Exception as exc:  # the reader on a damaged or foreign file: this run only, never the others
                raise UsageError(f"cannot read its event files ({type(exc).__name__}: {exc})", "check the files, or move the folder out of LOGDIR") from exc
            if not rows:
                result.skipped.append((label, "without scalars"))
                say(f"tensorboard run {label}: no scalars, skipped")
                continue
            times = [r[3] for r in rows]
            exp_id = str(record(
                repo=repo, name=experiment_name(label, fallback="tensorboard"), started=utc(min(times)), ended=utc(max(times)),
                status="completed", tags={"tensorboard.run": label[:1000], RUN_ID_TAG: rid}, metrics=rows,
            ))
        except (GitxpError, OSError) as exc:
            result.unreadable("tensorboard", label, exc, say)
            continue
        done[rid] = exp_id
        result.added("tensorboard", label, exp_id, warnings, say, f" ({len({r[0] for r in rows})} scalars, {len(rows)} points)")
    return result
