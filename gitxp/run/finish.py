"""Finishing a run: merge everything staged into the experiment's files and commit.

Shared by a normal finish, the ``gitxp start`` wrapper and ``gitxp recover``
(status ``crashed``), so a recovered experiment has exactly the shape of a
finished one. Staging is deleted only after the store's ref has moved.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gitxp.store import layout
from gitxp.store import parquet as metrics
from gitxp.store import staging
from gitxp.errors import GitxpError, describe_failure
from gitxp.run.logged import deep_merge
from gitxp.run.output import OUTPUT_MARK
from gitxp.plumbing.repo import TREE_MODE, Entry

if TYPE_CHECKING:
    from gitxp.store.store import Store

#: The status a finished run meant to commit, staged in case the commit fails.
FINAL_FILE = "final.yaml"


def _children(run: staging.RunDir, stem: str) -> list[Any]:
    """Files that processes attached to the run wrote (``stem-<pid>.yaml``), oldest first."""
    files = sorted(run.path.glob(f"{stem}-*.yaml"), key=lambda p: p.stat().st_mtime)
    return [run.read_yaml(p.name) for p in files]


def headline(meta: dict[str, Any], limit: int = 3) -> str:
    """The one-line summary after ``gitxp: <id> <name> <status>``: a few last values and the duration."""
    parts = []
    for name, stats in list((meta.get("metrics") or {}).items())[:limit]:
        v = stats.get("last") if isinstance(stats, dict) else None
        if isinstance(v, float):
            parts.append(f"{name}={v:.4g}")
    d = meta.get("duration_s")
    if isinstance(d, (int, float)):
        parts.append(f"({d:.1f}s)")
    return " ".join(parts)


def _tail(data: bytes, cap: int) -> bytes:
    if len(data) <= cap:
        return data
    cut = data[-cap:]
    nl = cut.find(b"\n")
    if 0 <= nl < len(cut) - 1:
        cut = cut[nl + 1 :]
    return OUTPUT_MARK % (len(data) - len(cut)) + cut


def preload() -> None:
    """Import what committing a run needs beyond this module (~20 ms), ahead of it.

    The wrapper calls it on a thread as the command starts (it is idle
    until the command ends, and then the commit is all that stands between
    the command's exit and gitxp's); an experiment started from code, on its
    flush thread a moment after it starts.
    """
    try:
        from gitxp.artifacts import keys, write  # noqa: F401
        from gitxp.environment import imports  # noqa: F401
        from gitxp.redact import mask_text  # noqa: F401
    except Exception:  # noqa: BLE001 - the commit imports them again, and says what is wrong
        pass


def commit_run(
    store: Store, run: staging.RunDir, *, status: str, exit_code: int | None = None, recording_errors: Sequence[str] = (),
    ended_at: str | None = None, pending: metrics.Pending = (),
) -> str:
    """Turn a staged run into one store commit; returns the commit id.

    ``pending``: metric points of the committing process never staged
    (:func:`gitxp.store.parquet.write_merged`).

    ``recording_errors`` name what could not be recorded (one line each,
    ``output: …`` ones also end the stored output.log). The final status is
    staged first (``final.yaml``), so that if the commit itself fails (a
    stale lock, a full disk) ``gitxp recover`` records what happened rather
    than ``crashed``.
    """
    problems = list(recording_errors)
    end_time = layout.parse_time(ended_at) if ended_at else layout.utcnow()
    try:
        final = {"status": status, "exit_code": exit_code, "recording_errors": problems, "ended": layout.isotime(end_time)}
        run.write_yaml(FINAL_FILE, final)
    except OSError:
        pass  # a full disk: recover will say crashed, the best it can then know
    files, message = gather(store, run, status=status, exit_code=exit_code, problems=problems, end_time=end_time, pending=pending)
    commit = store.commit_experiment(run.id, files, message)
    run.remove()
    store.repo.delete_refs(run.keep_ref)
    return commit


def live_files(store: Store, run: staging.RunDir) -> tuple[dict[str, bytes | Entry | None], str]:
    """The experiment as it stands mid-run (status ``running``), for ``gitxp start --sync``.

    Reads the staging folder only (no ``final.yaml``, no hardware
    finalisation, no artifacts): the run goes on untouched, and its final
    commit later overlays every file written here.
    """
    return gather(store, run, status="running", exit_code=None, problems=[], end_time=None)


def gather(
    store: Store, run: staging.RunDir, *, status: str, exit_code: int | None, problems: list[str], end_time: Any,
    pending: metrics.Pending = (),
) -> tuple[dict[str, bytes | Entry | None], str]:
    """An experiment's files and commit message from its staging folder; ``end_time=None`` for a live one."""
    live = end_time is None
    meta = run.read_meta()
    exp_id = run.id
    params, extra = _merged_staging(run, meta)
    errors = _children(run, "error")
    if meta.get("inputs") or any(run.path.glob("inputs-*.yaml")):
        from gitxp.store.inputs import merged as merged_inputs

        meta["inputs"] = merged_inputs([meta.get("inputs"), *_children(run, "inputs")])

    files: dict[str, bytes | Entry | None] = {}
    summary = _metrics_file(store, run, files, pending)
    _hardware_file(run, files, live, problems)
    _environment_files(run, files)
    _output_file(store, run, files, problems)
    tables = run.path / "tables"
    for p in sorted(tables.glob("*.parquet")) if tables.is_dir() else []:
        files[f"{layout.TABLES_DIR}/{p.name}"] = p.read_bytes()
    if not live:
        files.update(_artifact_changes(store, run, exp_id, problems))

    ended, duration = _end_and_duration(run, meta, status, end_time)
    meta.update(
        status=status,
        ended=None if live else layout.isotime(ended),
        duration_s=duration,
        exit_code=exit_code,
        tags=extra["tags"],
        notes=extra["notes"],
        metrics=summary,
        summary=extra["summary"],
    )
    fired = _alerts_at_end(store, run, {**meta, "id": exp_id}, params)
    if fired:
        meta["alerts"] = fired
    if errors:
        meta["error"] = errors[-1]
    if problems:
        meta["recording_errors"] = problems
    ordered = {k: meta[k] for k in _ORDER if k in meta}
    ordered.update({k: v for k, v in meta.items() if k not in ordered})
    secrets = _known_secrets(store)
    ordered, params = _scrub(ordered, secrets), _scrub(params, secrets)
    for name in (layout.OUTPUT_FILE, layout.ENVIRONMENT_FILE, layout.REQUIREMENTS_FILE):
        data = files.get(name)
        if isinstance(data, bytes):
            files[name] = _scrub(data, secrets)
    files[layout.EXPERIMENT_FILE] = layout.dump_yaml(ordered).encode()
    files[layout.PARAMS_FILE] = layout.dump_yaml(params).encode()
    source = meta.get("source") or {}
    tree = source.get("tree") if isinstance(source, dict) else None
    if tree and store.repo.has_object(tree):
        files[layout.CODE_DIR] = Entry(layout.CODE_DIR, TREE_MODE, tree)
    return files, _commit_message(exp_id, ordered, status)


def _merged_staging(run: staging.RunDir, meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The params and the summary/tags/notes that the owner and every attached process staged, merged."""
    params: dict[str, Any] = run.read_yaml("params.yaml", {}) or {}
    for child in _children(run, "params"):
        params = deep_merge(params, child or {})
    extra: dict[str, Any] = {"summary": {}, "tags": dict(meta.get("tags") or {}), "notes": meta.get("notes")}
    for e in [run.read_yaml("extra.yaml", {}) or {}, *_children(run, "extra")]:
        extra["summary"].update(e.get("summary") or {})
        extra["tags"].update(e.get("tags") or {})
        if e.get("notes"):
            extra["notes"] = e["notes"]
    return params, extra


def _metrics_file(
    store: Store, run: staging.RunDir, files: dict[str, bytes | Entry | None], pending: metrics.Pending,
) -> dict[str, Any]:
    """Merge the metric segments into ``metrics.parquet`` (in ``files``); returns the metrics summary."""
    merged = run.path / f".merged-{os.getpid()}.parquet"  # streamed to disk, then into git: bounded memory
    try:
        summary = metrics.write_merged(run.path / "metrics", merged, pending)
        if summary is not None:
            files[layout.METRICS_FILE] = store.repo.write_file(merged, level=0)  # zstd inside: zlib would gain nothing
        return summary or {}
    finally:
        merged.unlink(missing_ok=True)


def _hardware_file(run: staging.RunDir, files: dict[str, bytes | Entry | None], live: bool, problems: list[str]) -> None:
    hw = run.path / "hardware.parquet"
    try:
        from gitxp.run.hardware_parquet import finalize as _hw_finalize

        if not live and _hw_finalize(run.path / "hardware", hw):  # finalising writes to staging: final commit only
            files[layout.HARDWARE_FILE] = hw.read_bytes()
    except OSError as exc:
        problems.append(f"hardware: {describe_failure(exc)}")


def _environment_files(run: staging.RunDir, files: dict[str, bytes | Entry | None]) -> None:
    for name in (layout.ENVIRONMENT_FILE, layout.REQUIREMENTS_FILE):
        p = run.path / name
        if p.exists():
            files[name] = p.read_bytes()
    if isinstance(files.get(layout.ENVIRONMENT_FILE), bytes):
        from gitxp.environment.imports import mark

        files[layout.ENVIRONMENT_FILE] = mark(files[layout.ENVIRONMENT_FILE], run.path)  # type: ignore[arg-type]


def _output_file(store: Store, run: staging.RunDir, files: dict[str, bytes | Entry | None], problems: list[str]) -> None:
    """``output.log``: a resumed run's earlier output, then this session's, capped; a stopped capture says so at the end."""
    out = b""
    for p in (run.path / "output-previous.log", run.path / layout.OUTPUT_FILE):
        if p.exists():
            out += p.read_bytes()
    stopped = [p.removeprefix("output: ") for p in problems if p.startswith("output: ")]
    if out or stopped or (run.path / layout.OUTPUT_FILE).exists():
        kept = _tail(out, store.config.output_max_size)
        if stopped and kept and not kept.endswith(b"\n"):
            kept += b"\n"  # capture stopped mid-line
        files[layout.OUTPUT_FILE] = kept + b"".join(f"[gitxp: output {p}]\n".encode() for p in stopped)


def _end_and_duration(run: staging.RunDir, meta: dict[str, Any], status: str, end_time: Any) -> tuple[Any, float | None]:
    """The end time (a crashed run's last heartbeat) and ``duration_s`` (over every session of a resumed run); a live run has neither."""
    live = end_time is None
    ended = end_time
    started = meta.get("started")
    duration = None
    if isinstance(started, str) and not live:
        try:
            duration = round((ended - layout.parse_time(started)).total_seconds(), 3)
        except ValueError:
            duration = None
    if status == "crashed":
        beat = run.path / "heartbeat"
        if beat.exists():
            ended = layout.parse_time(layout.isotime(beat.stat().st_mtime))
    sessions = meta.get("sessions")
    if isinstance(sessions, list) and not live:
        sessions.append({"started": started, "ended": layout.isotime(ended), "status": status})
        duration = round(sum(_span(s) for s in sessions), 3)
    return ended, duration


def _commit_message(exp_id: str, ordered: dict[str, Any], status: str) -> str:
    message = f"gitxp: {exp_id} {ordered.get('name')} {status}"
    head = headline(ordered)
    if head:
        message += f" {head}"
    body = [f"command: {' '.join(map(str, ordered.get('command') or []))}"[:500]]
    return message + "\n\n" + "\n".join(body) + "\n"


_ORDER = (
    "id", "name", "parent", "status", "created", "started", "ended", "duration_s", "command", "cwd",
    "exit_code", "host", "user", "tags", "notes", "source", "inputs", "metrics", "summary", "error", "recording_errors", "alerts", "sessions",
)


def _alerts_at_end(store: Store, run: staging.RunDir, meta: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """What fired while the run ran, plus ``status == 'failed'``-style alerts that hold now; never fails the commit."""
    from gitxp.store import alerts

    if not any(run.path.glob(f"{alerts.SPEC_STEM}-*.yaml")) and not any(run.path.glob(f"{alerts.FIRED_STEM}-*.yaml")):
        return []
    try:
        return alerts.at_end(run, meta, params, alerts.command(store.repo.config))
    except Exception as exc:
        print(f"gitxp: warning: alerts not checked at the end: {exc}", file=sys.stderr)
        return []


def _known_secrets(store: Store) -> list[str]:
    """The artifact key's text as this process knows it: never recorded, whatever logged it."""
    from gitxp.artifacts import keys

    try:
        store_id = store.store_id
    except Exception:  # no readable gitxp.yaml: only the environment's key can be known
        store_id = None
    return keys.known_key_texts(store_id)


def _scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` (YAML-able data or bytes) with every secret replaced by ``<redacted>``."""
    from gitxp.redact import mask_text

    if not secrets:
        return value
    if isinstance(value, bytes):
        for secret in secrets:
            value = value.replace(secret.encode(), b"<redacted>")
        return value
    if isinstance(value, str):
        return mask_text(value, secrets)
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


def _span(s: Any) -> float:
    try:
        return (layout.parse_time(s["ended"]) - layout.parse_time(s["started"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return 0.0


def _artifact_changes(store: Store, run: staging.RunDir, exp_id: str, problems: list[str]) -> dict[str, bytes | Entry | None]:
    """The artifact part of the commit; an artifact whose objects are gone is left out and named in ``problems``."""
    from gitxp.artifacts import write as artifacts

    entries = []
    for e in artifacts.staged(run.path):
        lost = next((sha for sha in e.objects if not store.repo.has_object(sha)), None)
        if lost is None:
            entries.append(e)
        else:
            problems.append(f"artifacts: {e.path!r} lost its stored object {lost[:12]}; log it again")
    if not entries:
        return {}
    previous = None
    tip = store.tip
    if tip:
        old = store.repo.lookup(store.repo.read_commit(tip)["tree"], f"{layout.experiment_dir(exp_id)}/{layout.ARTIFACTS_FILE}")
        if old is not None:
            previous = layout.load_yaml(store.repo.read_blob(old.sha), what=layout.ARTIFACTS_FILE)
    return artifacts.tree_changes(store.repo, entries, previous if isinstance(previous, list) else None)


def recover(store: Store) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Commit every dead run it can; one bad run never blocks the others.

    A run whose final status was staged before its commit failed (a stale
    lock, a full disk) gets that status; any other dead run is ``crashed``.
    Returns ``(recovered, failed)``: ``(id, status)`` and ``(id, reason)``.
    """
    done: list[tuple[str, str]] = []
    failed: list[tuple[str, str]] = []
    for run in staging.dead_runs(store.repo.gitxp_dir):
        try:
            end = _staged_end(run)
            commit_run(store, run, **end)
            done.append((run.id, end["status"]))
        except (GitxpError, OSError) as exc:
            failed.append((run.id, describe_failure(exc)))
    if "gitxp.store.alerts" in sys.modules:  # a crashed run's alert fired: let its command report a failure
        sys.modules["gitxp.store.alerts"].settle()
    return done, failed


def _staged_end(run: staging.RunDir) -> dict[str, Any]:
    """commit_run's arguments from ``final.yaml``, or a crash's when there is none."""
    final = run.read_yaml(FINAL_FILE, None)
    if not isinstance(final, dict) or final.get("status") not in ("completed", "failed", "interrupted"):
        return {"status": "crashed"}
    problems, ended = final.get("recording_errors"), final.get("ended")
    try:
        layout.parse_time(ended)  # type: ignore[arg-type]  # anything YAML gave: a non-str is caught below
    except (AttributeError, TypeError, ValueError):  # not a time (None, a date YAML parsed, garbage)
        ended = None
    return {
        "status": final["status"],
        "exit_code": final.get("exit_code") if isinstance(final.get("exit_code"), int) else None,
        "recording_errors": [str(p) for p in problems] if isinstance(problems, list) else [],
        "ended_at": ended,
    }


