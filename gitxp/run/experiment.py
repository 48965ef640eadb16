"""One experiment while it runs: logging API, staging, status, and finishing.

An :class:`Experiment` either *owns* its run (the Python API, or the
``gitxp start`` wrapper), in which case finishing merges the staged files
and commits them, or is *attached* to a run owned by an enclosing
``gitxp start`` (found through ``GITXP_EXPERIMENT``/``GITXP_RUN_DIR``), in
which case it only stages what the script logs and the wrapper commits.

This module is the lifecycle half (identity, start/current, tables,
artifacts, inputs, finishing); what is logged, its checks, buffers and the
flush thread that stages it are :class:`gitxp.run.logged.Logbook`, a base
class of :class:`Experiment`.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitxp import shutdown
from gitxp.store import layout
from gitxp.store import parquet as metrics
from gitxp.store import staging
from gitxp.errors import GitxpError, RunNotStoredError, UsageError, describe_failure
from gitxp.run.logged import Logbook, closed, preload_arrow

if TYPE_CHECKING:
    from gitxp.store.store import Store

ENV_ID = "GITXP_EXPERIMENT"
ENV_RUN_DIR = "GITXP_RUN_DIR"

_current: Experiment | None = None
_lock = threading.Lock()


class Experiment(Logbook):
    """A running experiment. Create it with :func:`gitxp.start`."""

    #: Record this process's imports at finish (gitxp.environment.imports); off in the ``gitxp start`` wrapper, whose child records its own.
    _record_imports = True

    def __init__(self, store: Store | None, run: staging.RunDir, meta: dict[str, Any], params: dict[str, Any], *, owner: bool) -> None:
        self._store = store
        self._run = run
        self._meta = meta
        self._params: dict[str, Any] = params
        self._params_view: dict[str, Any] | None = None
        self.summary: dict[str, Any] = dict(meta.get("summary") or {})
        self.tags: dict[str, Any] = dict(meta.get("tags") or {})
        self._owner = owner
        # per metric: columnar buffers (metrics.Series) and the hot path's shortcut to their appends;
        # emptying _adders (finished, full) sends every call to _new_series, which refuses
        self._series: dict[str, metrics.Series] = {}
        self._adders: dict[str, tuple[Any, Any, Any]] = {}
        self._refuse: Any = None
        self._points = 0  # metric values staged by this process
        self._tag = f"{os.getpid()}"
        self._seg_dir = run.path / "metrics"
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._last_saved: tuple[Any, ...] | None = None
        self._hardware: Any = None
        self._env_thread: threading.Thread | None = None
        self._finished = False
        self._alerts: list[Any] = []  # gitxp.store.alerts.Alert, checked by the flush thread
        self._last: dict[str, tuple[int, float]] = {}  # metric -> (step, value) last seen at a flush, for alerts
        self._fired: list[dict[str, Any]] = []
        self._alert_command: Any = False  # not looked up yet
        self.status = "running"
        self._thread = threading.Thread(target=self._flush_loop, name=f"gitxp-flush-{run.id}", daemon=True)
        self._thread.start()
        self._exit_hook = shutdown.register(self._atexit)

    # ------------------------------------------------------------------ identity

    @property
    def id(self) -> str:
        """The experiment id (``YYYYMMDD-HHMMSS-<12 hex>``), the folder name in the store."""
        return self._run.id

    @property
    def name(self) -> str:
        """The name given to start (default: the script's file name)."""
        return str(self._meta.get("name"))

    @property
    def run_dir(self) -> Path:
        """The staging folder under ``.git/gitxp/`` where the run's files wait until it is committed."""
        return self._run.path

    def __repr__(self) -> str:
        return f"<Experiment {self.id} {self.name} {self.status}>"

    @property
    def params(self) -> dict[str, Any]:
        """The parameters, read-only (ParamsReadOnlyError on a write): change them with :meth:`log_param`.

        A write straight into the dict would skip log_param's type check and
        fail only at commit, leaving the run staged. ``copy.deepcopy`` gives
        a plain dict.
        """
        if self._params_view is None:
            from gitxp.params import frozen

            self._params_view = frozen(self._params)
        return self._params_view

    @params.setter
    def params(self, _value: Any) -> None:
        from gitxp.errors import ParamsReadOnlyError

        raise ParamsReadOnlyError()

    # ------------------------------------------------------------------ tags, notes, tables, artifacts, inputs

    def set_tags(self, tags: Mapping[str, Any] | None = None, **more: Any) -> None:
        """Add or change tags; UsageError on a name or value with a control character."""
        new = layout.check_tags({**(tags or {}), **more})
        layout.check_tag_count({**self.tags, **new})
        self.tags.update(new)

    def set_tag(self, key: str, value: Any) -> None:
        """Add or change one tag; see :meth:`set_tags`."""
        self.set_tags({key: value})

    def note(self, text: str) -> None:
        """Append a note (newlines and tabs allowed, other control characters refused)."""
        layout.check_text(str(text), "note", multiline=True)
        self._meta["notes"] = layout.check_notes(((self._meta.get("notes") or "") + "\n" + str(text)).strip())

    def log_table(self, name: str, table: Any) -> None:
        """Store a table as ``tables/<name>.parquet`` (pyarrow Table or pandas DataFrame)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        layout.table_name(name)
        if not isinstance(table, pa.Table):
            if hasattr(table, "to_arrow"):
                table = table.to_arrow()
            elif type(table).__module__.startswith("pandas"):
                table = pa.Table.from_pandas(table, preserve_index=False)
            elif isinstance(table, Mapping):
                table = pa.table(dict(table))
            else:
                raise UsageError(f"log_table needs a pyarrow Table, a pandas DataFrame or a mapping of columns, got {type(table).__name__}", "convert it first")
        from gitxp.store import parquet_checks as limits

        for n, most, what in ((table.num_columns, limits.MAX_PARQUET_COLUMNS, "columns"), (table.num_rows, limits.MAX_PARQUET_ROWS, "rows"),
                              (table.nbytes, limits.MAX_PARQUET_BYTES, "bytes")):
            if n > most:  # what every reader of the store would refuse
                raise UsageError(f"table {name!r} has {n} {what}, over the {most} limit of a stored table", "split it, or log it as an artifact")
        d = self._run.path / "tables"
        d.mkdir(exist_ok=True)
        tmp = d / f".{name}.{os.getpid()}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, d / f"{name}.parquet")

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None, *, encrypt: bool = True) -> None:
        """Store a file as an artifact (AES-256-GCM encrypted unless ``encrypt=False``).

        The file is streamed into git objects right away, in bounded memory;
        the manifest entry is staged and committed with the experiment.
        """
        from gitxp.artifacts import keys
        from gitxp.artifacts import write as artifacts

        src = Path(path)
        if not src.is_file():
            raise UsageError(f"artifact {str(path)!r} is not a file", "pass a file; use log_artifacts() for a folder")
        store = self._writer_store()
        rel = name if name is not None else _artifact_name(src)
        key = keys.store_key(store) if encrypt else None
        size = src.stat().st_size
        show = artifacts.terminal_progress(f"gitxp: {'encrypting and ' if encrypt else ''}storing {rel}", size) if size >= artifacts.PROGRESS_MIN_SIZE else None
        entry = artifacts.store_file(store.repo, src, rel, key=key, progress=show)
        store.repo.keep_objects(self._run.keep_ref, entry.objects)
        artifacts.stage(self._run.path, entry)
        if encrypt:  # the plaintext stays in the work tree: later code snapshots must leave it out
            from gitxp.artifacts import withheld

            withheld.remember(src)

    def log_artifacts(self, folder: str | os.PathLike[str], prefix: str | None = None, *, encrypt: bool = True) -> None:
        """Every file under ``folder``, keeping relative paths (under ``prefix`` if given)."""
        root = Path(folder)
        if not root.is_dir():
            raise UsageError(f"{str(folder)!r} is not a folder", "use log_artifact() for a single file")
        base = prefix if prefix is not None else _artifact_name(root)
        for p in sorted(root.rglob("*")):
            if p.is_file() and not p.is_symlink():
                self.log_artifact(p, f"{base}/{p.relative_to(root).as_posix()}", encrypt=encrypt)

    def alert_on(self, condition: str, text: str | None = None, *, once: bool = True) -> None:
        """Be told when ``condition`` (the ``--where`` language) first holds over the values being logged.

        Checked at each flush (within about a second), never by
        ``log_metric`` itself; ``status == 'failed'`` or ``'crashed'`` is
        checked when the run ends. A firing is recorded under ``alerts:``,
        printed on stderr and runs ``GITXP_ALERT_COMMAND`` / ``git config
        gitxp.alertCommand`` in the background. ``once=False`` fires on
        every transition into the condition. Raises QueryError on a bad
        condition.
        """
        from gitxp.store import alerts

        self._alerts.append(alerts.Alert(condition, text, once=once))
        alerts.stage_specs(self._run, [a for a in self._alerts if not getattr(a, "inherited", False)])

    def log_input(self, path: str | os.PathLike[str], name: str | None = None) -> dict[str, Any]:
        """Record a file or folder the run reads: size, file count and content digest.

        Named after the file or folder without extension unless ``name`` is
        given (``data/train.csv`` → ``train``); a name logged again replaces
        the earlier entry. Digests are cached by path, size and mtime, so
        unchanged data is not read again. Returns the recorded entry.
        """
        from gitxp.store import inputs

        store = self._writer_store()
        root = store.repo.root
        if root is None:  # a script under `gitxp start` opened the store by its git dir: the work tree is where it runs
            from gitxp.errors import NotARepositoryError
            from gitxp.plumbing.repo import discover

            try:
                root = discover(Path.cwd())[0]
            except NotARepositoryError:
                root = None
        entry = inputs.describe(path, name, repo_root=root, cache_dir=store.repo.gitxp_dir / "cache")
        staged = [e for e in (self._run.read_yaml(f"inputs-{os.getpid()}.yaml", []) or []) if e.get("name") != entry["name"]]
        self._run.write_yaml(f"inputs-{os.getpid()}.yaml", [*staged, entry])
        return entry

    def _stop_background(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        if self._hardware is not None:
            try:
                self._hardware.stop()
            except Exception as exc:
                print(f"gitxp: hardware sampling failed: {exc}", file=sys.stderr)
        if self._env_thread is not None:
            self._env_thread.join(timeout=30)

    # ------------------------------------------------------------------ finishing

    def finish(
        self, status: str = "completed", *, exit_code: int | None = None, error: BaseException | str | None = None,
        recording_errors: Sequence[str] = (), ended_at: str | None = None,
    ) -> None:
        """End the experiment: stage the rest and (when owned) commit it to the store.

        Idempotent. ``status`` is one of completed, failed, interrupted.
        ``recording_errors`` (one line each) name what could not be
        recorded; they go to ``recording_errors`` in experiment.yaml.
        ``ended_at`` (ISO 8601) is the end time when it is not now: an
        imported run's (:func:`gitxp.run.begin.record`).
        """
        global _current
        with _lock:
            if self._finished:
                return
            self._finished = True
        atexit.unregister(self._exit_hook)
        self._stop_background()
        if error is not None:
            try:
                self._record_error(error)
            except OSError as exc:  # a full disk: the run is still committed, with what was staged
                print(f"gitxp: could not stage the error: {exc}", file=sys.stderr)
        try:
            # the committing process keeps its last points in memory: they go straight into metrics.parquet
            self.flush(stage_metrics=not self._owner)
        except Exception as exc:
            self._record_lost(exc)
        self._refuse = closed
        self._adders = {}
        pending = self.take_pending() if self._owner else []
        self.status = status
        if _current is self:
            _current = None
        if self._record_imports:
            from gitxp.environment.imports import record_process

            record_process(self._run.path)  # for `imported: true` in environment.yaml
        if not self._owner:
            self._settle_alerts()
            return
        from gitxp.run.finish import commit_run

        if status == "completed" and _lost_data(self._run):
            status = self.status = "failed"  # completed without what it logged would be untrue
        try:
            self.commit = commit_run(self._writer_store(), self._run, status=status, exit_code=exit_code, recording_errors=recording_errors,
                                     ended_at=ended_at, pending=pending)
        except BaseException as exc:  # a full disk, a stale ref lock, Ctrl-C: the run stays staged, its last points too
            try:
                self.stage_pending(pending)
            except Exception as lost:
                self._record_lost(lost)
            if isinstance(exc, (GitxpError, OSError)):
                raise RunNotStoredError(self.id, describe_failure(exc)) from exc
            raise
        finally:
            self._settle_alerts()

    def _settle_alerts(self) -> None:
        if "gitxp.store.alerts" in sys.modules:  # only a run that fired an alert ever imports it
            sys.modules["gitxp.store.alerts"].settle()

    end = finish

    def _record_error(self, error: BaseException | str) -> None:
        if isinstance(error, BaseException):
            info: dict[str, str | None] = {"type": type(error).__name__, "message": _clip(str(error)),
                                           "traceback": _clip("".join(traceback.format_exception(error)), keep_end=True)}
        else:
            info = {"type": "Error", "message": _clip(str(error)), "traceback": None}
        self._run.write_yaml(f"error-{os.getpid()}.yaml", info)

    def _record_lost(self, exc: BaseException) -> None:
        """Staging failed for good: say so, and record it so the run is not called completed."""
        message = f"could not save what this process logged ({sum(map(len, list(self._series.values())))} metric values, params, tags): {type(exc).__name__}: {exc}"
        print(f"gitxp: {message}", file=sys.stderr)
        try:
            self._run.write_yaml(f"error-{os.getpid()}.yaml", {"type": "StagingError", "message": message, "traceback": None, _LOST: True})
        except Exception as exc2:
            print(f"gitxp: could not record that failure either: {exc2}", file=sys.stderr)

    def _atexit(self) -> None:
        if not self._finished:
            try:
                self.finish("completed" if self._owner else "running")
            except Exception as exc:  # one line at exit, not a traceback; the run stays staged
                print(f"gitxp: could not finish experiment {self.id}: {exc}; run `gitxp recover` to commit what was staged", file=sys.stderr)

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.finish("completed")
        elif isinstance(exc, KeyboardInterrupt):
            self.finish("interrupted", error=exc)
        else:
            self.finish("failed", error=exc)


_LOST = "lost"  # key of the error record of a process whose logged data could not be staged


def _lost_data(run: staging.RunDir) -> bool:
    """Whether any process of the run (this one or an attached script) failed to stage its data."""
    for p in run.path.glob("error-*.yaml"):
        try:
            info = run.read_yaml(p.name)
        except Exception:
            continue
        if isinstance(info, dict) and info.get(_LOST):
            return True
    return False


_ERROR_CHARS = 32_768  # of an error's message and of its traceback, in experiment.yaml (within the reader's limit)


def _clip(text: str, *, keep_end: bool = False) -> str:
    """An error's text as recorded: a huge message (a repr of a big array) is cut, and says so."""
    if len(text) <= _ERROR_CHARS:
        return text
    mark = f" [... {len(text) - _ERROR_CHARS} characters left out] "
    return mark + text[-_ERROR_CHARS:] if keep_end else text[:_ERROR_CHARS] + mark


def _artifact_name(path: Path) -> str:
    """Repository-relative when inside the current folder, else the file name."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def default_name() -> str:
    """The calling script's stem; the notebook's in Jupyter; ``stdin`` / ``python`` for ``python -`` / ``-c``."""
    from gitxp.run.notebook import in_kernel, notebook_path

    nb = notebook_path()
    if nb is not None:
        return nb.stem
    if in_kernel():
        return "notebook"
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c") else None)
    if path in ("<stdin>", "-"):
        return "stdin"
    if path:
        stem = Path(path).stem
        return stem if stem not in ("__main__", "") else Path(path).parent.name or "python"
    return "python"


def current() -> Experiment | None:
    """The experiment this process logs into: one it started, or the enclosing ``gitxp start``."""
    global _current
    if _current is not None:
        return _current
    exp_id = os.environ.get(ENV_ID)
    run_path = os.environ.get(ENV_RUN_DIR)
    if not exp_id or not run_path:
        return None
    with _lock:
        if _current is None:
            run = staging.RunDir(Path(run_path))
            if not run.exists():
                return None
            meta = run.read_meta()
            params = run.read_yaml("params.yaml", {}) or {}
            preload_arrow()
            _current = Experiment(None, run, meta, dict(params), owner=False)
            _current._given = dict(params)  # type: ignore[attr-defined]  # what `gitxp start -p` set
            _inherit_alerts(_current)
    return _current


def _inherit_alerts(exp: Experiment) -> None:
    """A script under ``gitxp start --alert``: the wrapper's conditions apply to what the script logs."""
    from gitxp.store import alerts

    for spec in alerts.staged_specs(exp._run):
        try:
            alert = alerts.Alert(spec["condition"], spec.get("text"), once=bool(spec.get("once", True)))
        except Exception:  # checked by the wrapper already
            continue
        alert.inherited = True  # type: ignore[attr-defined]  # staged by the wrapper: not staged again
        exp._alerts.append(alert)


def start(
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    *,
    notes: str | None = None,
    log_hardware: bool = True,
    hardware_interval: float = 1.0,
    code_dir: str | os.PathLike[str] | None = None,
    capture_code: bool = True,
    capture_env: bool = True,
    env_vars: Sequence[str] = (),
    parent: str | None = None,
    resume: str | None = None,
    repo: str | os.PathLike[str] = ".",
    command: Sequence[str] | None = None,
) -> Experiment:
    """Start recording an experiment; use it as a context manager or call ``finish()``.

    Inside a script run by ``gitxp start``, this joins that experiment
    (params and metrics go to it) instead of creating a second one.
    """
    if command is None:
        outer = current()
        if outer is not None and not outer._owner:
            if params:
                outer.log_params(params)
            if tags:
                outer.set_tags(tags)
            if notes:
                outer.note(notes)
            return outer
    from gitxp.run.begin import begin
    from gitxp.run.options import RunOptions

    if command is None:
        preload_arrow()  # this process logs: see preload_arrow (gitxp start's wrapper logs nothing itself)
    options = RunOptions(
        tags=tags or {}, notes=notes, parent=parent, resume=resume, log_hardware=log_hardware, hardware_interval=hardware_interval,
        code_dir=code_dir, capture_code=capture_code, capture_env=capture_env, env_vars=tuple(env_vars),
    )
    return begin(name=name, params=params, repo=repo, command=command, options=options)


def _set_current(exp: Experiment) -> None:
    global _current
    _current = exp
