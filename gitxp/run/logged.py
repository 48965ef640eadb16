"""What a run logs, checked, buffered and staged: the logging half of :class:`~gitxp.run.experiment.Experiment`.

:class:`Logbook` holds the metric buffers (one columnar :class:`~gitxp.store.parquet.Series`
per name, appended to on the hot path), the parameters, and the flush thread
that writes them, with summary, tags and notes, to the run's staging folder
about every second and checks the run's alerts. The lifecycle half (start,
attach, finish and commit, artifacts, tables) is :mod:`gitxp.run.experiment`.
The checks of parameter and metric values live here too: the Python API,
``begin`` and the importers share them.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import sys
import threading
import time
from time import time as _now
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gitxp.store import layout
from gitxp.store import parquet as metrics
from gitxp.store import staging
from gitxp.errors import ExperimentStateError, GitxpError, MetricValueError, ParamError, ParamTypeError

if TYPE_CHECKING:
    from gitxp.store.store import Store

#: Metric points reach staging every FLUSH_INTERVAL seconds (what a kill -9 can lose), or sooner once
#: FLUSH_ROWS wait (24 MB of buffers): a flush is a segment written and later merged, so a busier
#: one-second flush costs less per point than several small ones.
FLUSH_INTERVAL = 1.0
FLUSH_ROWS = 1_000_000
_MAX_STEP = metrics.MAX_STEP


_arrow_import: threading.Thread | None = None


def preload_arrow() -> None:
    """Start importing pyarrow (parquet, compute) on a thread, once per process, as a run starts.

    The first flush needs it. Imported by the flush thread only then, while
    the user's loop holds the GIL, the import's many file reads each wait a
    switch interval for it back: 2.6 s instead of 0.2, with 3 M points piling
    up unflushed (memory, and the every-second crash promise). Started here,
    it is usually done before the first metric; :func:`arrow_ready` waits.
    """
    global _arrow_import
    if _arrow_import is None and "pyarrow.compute" not in sys.modules:
        from gitxp import shutdown

        _arrow_import = threading.Thread(target=_import_arrow, name="gitxp-import-pyarrow", daemon=True)
        _arrow_import.start()
        shutdown.register(arrow_ready)  # never exit with pyarrow half imported under a daemon thread


def _import_arrow() -> None:
    try:
        import pyarrow.compute  # noqa: F401  (a segment's columns are built with it)
        import pyarrow.parquet  # noqa: F401
    except Exception:  # noqa: BLE001 - no pyarrow here: the flush that needs it reports it
        pass


def arrow_ready() -> None:
    """Wait for :func:`preload_arrow`'s import (called once per metric name, off the hot path)."""
    t = _arrow_import
    if t is not None and t.is_alive() and t is not threading.current_thread():
        t.join()


def closed() -> GitxpError:
    """Why log_metric refuses after finishing (checked off the hot path: no cost before)."""
    return ExperimentStateError("this experiment has finished", "start a new one, or resume it with gitxp.start(resume=ID)")


def _full() -> GitxpError:
    """Why log_metric refuses once an experiment holds the most metric values a store reads back."""
    return MetricValueError(
        f"this experiment holds {metrics.MAX_METRIC_POINTS} metric values, the most one stores (pulls refuse more)",
        "log less often, or start another experiment",
    )


def check_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Validate a parameter mapping; refuse types the YAML store cannot round-trip."""
    if not isinstance(params, Mapping):
        raise ParamTypeError(prefix or "params", params)
    out: dict[str, Any] = {}
    for k, v in params.items():
        if not isinstance(k, str) or not k:
            raise ParamTypeError(f"{prefix}{k!r}", k)
        layout.check_text(k, "parameter name")
        out[k] = _check_value(f"{prefix}{k}", v)
    if not prefix and layout.yaml_depth_problem(out):  # params.yaml must pass the store's reader
        raise ParamError(f"parameters: {layout.yaml_depth_problem(out)}", "flatten the parameters")
    return out


def _check_value(key: str, v: Any) -> Any:
    if isinstance(v, str) and layout.utf8_problem(v):
        raise ParamError(f"parameter {key!r} has a {layout.utf8_problem(v)}", layout.NOT_UTF8_HINT)
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, Mapping):
        return check_params(v, key + ".")
    if isinstance(v, (list, tuple)):
        return [_check_value(f"{key}[{i}]", x) for i, x in enumerate(v)]
    # numpy scalars and the like: accept what converts exactly to a Python scalar
    item = getattr(v, "item", None)
    if callable(item) and type(v).__module__ == "numpy":
        return _check_value(key, item())
    raise ParamTypeError(key, v)


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _bad_metric(name: Any, value: Any, step: Any) -> MetricValueError:
    if not isinstance(name, str) or not name:
        return MetricValueError(f"metric name must be a non-empty string, got {name!r}", "e.g. xp.log_metric('loss', 0.42, step=3)")
    if step is not None and (isinstance(step, bool) or not hasattr(step, "__index__") or not 0 <= step.__index__() <= metrics.MAX_STEP):
        return MetricValueError(f"step of metric {name!r} must be an int >= 0 and < 2**63, got {step!r:.40}", "pass step=epoch or leave it out to count up")
    return MetricValueError(f"value of metric {name!r} must be a number, got {type(value).__name__} {value!r:.40}", "log floats or ints (NaN and inf are kept)")


def _as_float(name: Any, value: Any, step: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond a float's range
        raise _bad_metric(name, value, step) from None


def _timestamp(t: Any) -> float:
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return t.timestamp()
    try:
        s = float(t)
    except (TypeError, ValueError, OverflowError):
        s = math.nan
    if not metrics.MIN_TIME <= s <= metrics.MAX_TIME:  # NaN too
        raise MetricValueError(f"timestamp must be a datetime or seconds since 1970 within years 1-9999, got {t!r:.40}", "leave it out to use the current time")
    return s


def _plain(d: Mapping[str, Any], *, one_line: bool = False) -> dict[str, Any]:
    """Summary or tags as stored, whatever was assigned to ``xp.summary``/``xp.tags`` directly.

    Names (and, with ``one_line``, text values: tags) get any control
    character replaced by ``?``: the store's reader refuses them.
    """
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = layout.CONTROL_RE.sub("?", str(k))
        try:
            v = _check_value(key, v)
        except ParamTypeError:
            v = float(v) if _is_number(v) else str(v)
        if one_line and isinstance(v, (list, dict)):
            v = str(v)  # a tag is a single value
        out[key] = layout.CONTROL_RE.sub("?", v) if one_line and isinstance(v, str) else v
    return out


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return not isinstance(v, str)
    except (TypeError, ValueError):
        return False


class Logbook:
    """The logging half of an experiment: metric buffers, parameters, and the flush thread that stages them.

    A base class of :class:`~gitxp.run.experiment.Experiment`, whose
    ``__init__`` sets the attributes declared here.
    """

    _store: Store | None  # None in a process that joined the run (gitxp.current()): opened on first write
    _run: staging.RunDir
    _meta: dict[str, Any]
    _params: dict[str, Any]
    _params_view: dict[str, Any] | None
    summary: dict[str, Any]
    tags: dict[str, Any]
    _owner: bool
    _series: dict[str, metrics.Series]
    _adders: dict[str, tuple[Any, Any, Any]]
    _refuse: Any
    _points: int
    _tag: str
    _seg_dir: Any
    _stop: threading.Event
    _flush_lock: threading.Lock
    _last_saved: tuple[Any, ...] | None
    _alerts: list[Any]
    _last: dict[str, tuple[int, float]]
    _fired: list[dict[str, Any]]
    _alert_command: Any

    # ------------------------------------------------------------------ logging

    def log_metric(self, name: str, value: float, step: int | None = None, timestamp: Any = None) -> None:
        """Record one value; buffered in memory, flushed to staging within a second.

        ``step`` defaults to one more than the metric's last step (from 0).
        Raises MetricValueError (a ValueError and TypeError) on an empty
        name, a non-numeric value or a negative/non-int step.
        """
        # the hot path: every test is ordered so that the usual call (a known name, a float, an int
        # step or none) takes the fewest steps; the first call of a name checks it once
        try:
            add_step, add_value, add_time = self._adders[name]
        except (KeyError, TypeError):  # a name not seen before, logging has ended, or not a name at all
            if name.__class__ is not str or not name:
                raise _bad_metric(name, value, step) from None
            add_step, add_value, add_time = self._new_series(name)
        if step is None:
            step = self._series[name].next_step()
            if step > _MAX_STEP:  # the step after the largest one
                raise _bad_metric(name, value, step)
        elif step.__class__ is not int or step < 0 or step > _MAX_STEP:
            if isinstance(step, bool) or not hasattr(step, "__index__") or not 0 <= step.__index__() <= _MAX_STEP:
                raise _bad_metric(name, value, step)
            step = step.__index__()
        t = _now() if timestamp is None else _timestamp(timestamp)  # checked before anything is kept
        # in this order: the value first, as only it can fail (nothing is kept then), the time last
        # (a flush counts complete points by their time)
        try:
            add_value(value)  # converts any real number in C: a float, an int, numpy's and torch's scalars
            add_step(step)
            add_time(t)
        except (TypeError, ValueError, OverflowError):  # only add_value raises these: nothing was kept
            add_value(_as_float(name, value, step))  # what float() takes besides (a numeric string), or refused
            add_step(step)
            add_time(t)
        except BufferError:  # finish() took this metric's buffers while the call raced it from another thread
            raise closed() from None

    def _new_series(self, name: str) -> tuple[Any, Any, Any]:
        if self._refuse is not None:
            raise self._refuse()
        series = self._series.get(name)
        if series is None:
            self._check_new_metric(name)
            arrow_ready()
            series = self._series[name] = metrics.Series()
        self._adders[name] = series.add
        return series.add

    def _check_new_metric(self, name: str) -> None:
        """A name not logged before: one line of text, and within what experiment.yaml can summarise."""
        if layout.text_problem(name):
            raise MetricValueError(f"metric name {name[:80]!r} has a {layout.text_problem(name)}", "use printable characters only, on one line")
        if len(name) > layout.MAX_NAME_CHARS:
            raise MetricValueError(f"metric name {name[:40]!r}... is longer than {layout.MAX_NAME_CHARS} characters", "use a shorter name")
        if len(self._series) >= layout.MAX_METRIC_NAMES:
            raise MetricValueError(
                f"this experiment already has {layout.MAX_METRIC_NAMES} metric names, the most experiment.yaml summarises; {name[:40]!r} was not logged",
                "log a table (log_table) for per-item values",
            )

    def log_metrics(self, values: Mapping[str, float], step: int | None = None, timestamp: Any = None) -> None:
        """Several metrics at one step (e.g. ``{"loss": 0.4, "acc": 0.9}``)."""
        if not isinstance(values, Mapping):
            raise MetricValueError(f"log_metrics takes a mapping of name to value, got {type(values).__name__}", "e.g. xp.log_metrics({'loss': 0.4}, step=3)")
        t = _now() if timestamp is None else _timestamp(timestamp)
        for k, v in values.items():
            self.log_metric(k, v, step, t)

    def log_param(self, key: str, value: Any) -> None:
        """Add or change one parameter (``params.yaml``); ParamTypeError on a type the store can't hold."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Add or update parameters (nested mappings allowed); TypeError on other types."""
        checked = check_params(params)
        merged = deep_merge(self._params, checked)
        problem = layout.params_size_problem(merged)
        if problem:
            raise ParamError(problem, "store large values with log_artifact or log_table")
        if not self._owner:
            self._say_overrides(checked)
        self._params, self._params_view = merged, None

    def _say_overrides(self, params: Mapping[str, Any]) -> None:
        """The script replaces a value given to `gitxp start -p`: record it, but say so (once per key).

        What the script used is what ran, so it wins; a silent loss of the
        command-line value would mislead whoever reads the experiment later.
        """
        from gitxp.store.tables import flatten

        given: dict[str, Any] = {}
        flatten("", dict(getattr(self, "_given", None) or {}), given)
        new: dict[str, Any] = {}
        flatten("", dict(params), new)
        said = self.__dict__.setdefault("_said", set())
        for key, value in new.items():
            if key in given and key not in said and not (value == given[key] and type(value) is type(given[key])):
                said.add(key)
                print(f"gitxp: param {key[1:]}: recording the script's {value!r}, not {given[key]!r} given to gitxp start",
                      file=sys.stderr, flush=True)

    def _check_alerts(self) -> None:
        """Note each alert metric's newest point, then test the conditions; fire those that just came to hold.

        Runs in the flush thread before the series are taken: one read of
        the newest point per metric the alerts name, nothing per logged value.
        """
        from gitxp.store import alerts

        for name in set().union(*(a.names for a in self._alerts)):
            series = self._series.get(name)
            newest = series.last() if series is not None else None
            if newest is not None:
                self._last[name] = newest
        record = alerts.metrics_record(self._last, self._params)
        new = [got for a in self._alerts if (got := a.check(record, self._last)) is not None]
        if not new:
            return
        if self._alert_command is False:
            self._alert_command = alerts.command(getattr(self._writer_store().repo, "config", None))
        for got in new:
            self._fired.append(got)
            alerts.fire(got, self._run.id, self._alert_command)
        alerts.stage_fired(self._run, self._fired)

    def _writer_store(self) -> Store:
        if self._store is None:
            from gitxp.store.store import Store

            self._store = Store.open(self._run.path.parents[2])
        return self._store

    # ------------------------------------------------------------------ staging

    def _flush_loop(self) -> None:
        last = time.monotonic()
        preloaded = not self._owner  # only the process that commits needs the commit's modules
        while not self._stop.wait(0.2):
            if not preloaded:  # idle here: finish() then spends its time committing, not importing (~15 ms)
                from gitxp.run import finish

                finish.preload()
                preloaded = True
            if time.monotonic() - last >= FLUSH_INTERVAL or sum(map(len, list(self._series.values()))) >= FLUSH_ROWS:
                try:
                    self.flush()
                except Exception as exc:  # never kill the user's run over staging; finish() retries
                    if threading.main_thread().is_alive():  # not a failure of Python shutting down under us
                        print(f"gitxp: could not stage metrics (will retry): {exc}", file=sys.stderr)
                last = time.monotonic()

    def flush(self, *, stage_metrics: bool = True) -> None:
        """Write what was logged since the last flush to staging (atomic files).

        ``stage_metrics=False`` (the committing process's finish) leaves the
        metric points in their buffers for :meth:`take_pending`.
        """
        with self._flush_lock:
            if self._alerts:
                try:
                    self._check_alerts()
                except Exception as exc:  # an alert must never cost the run its data
                    print(f"gitxp: warning: alert check failed: {exc}", file=sys.stderr)
            if stage_metrics:
                self._points += metrics.flush_series(self._series, self._seg_dir, self._tag)
            if self._points >= metrics.MAX_METRIC_POINTS and self._refuse is None:
                self._refuse = _full
                self._adders = {}  # a call racing this still lands in its series: flushed next time
            state = (repr(self._params), repr(self.summary), repr(self.tags), self._meta.get("notes"))
            if state != self._last_saved:
                suffix = "" if self._owner else f"-{os.getpid()}"
                self._run.write_yaml(f"params{suffix}.yaml", self._params)
                self._run.write_yaml(f"extra{suffix}.yaml", {"summary": _plain(self.summary), "tags": _plain(self.tags, one_line=True), "notes": self._meta.get("notes")})
                self._last_saved = state
            self._run.heartbeat()

    def take_pending(self) -> metrics.Pending:
        """The metric points not yet staged, out of their buffers: (name, (steps, values, times)) in name order.

        For the end of logging (``finish`` has closed the adders): views of
        the buffers are handed over, not copies.
        """
        with self._flush_lock:
            taken = [(name, chunk) for name, _series, chunk in metrics.take_all(self._series, final=True)]
        self._points += sum(len(chunk[0]) for _name, chunk in taken)
        return taken

    def stage_pending(self, pending: metrics.Pending) -> None:
        """Stage points taken by :meth:`take_pending` that did not reach a commit, for ``gitxp recover``."""
        if pending and self._run.path.is_dir():
            with self._flush_lock:
                metrics.write_segment(self._seg_dir, self._tag, [name for name, _ in pending], [chunk for _, chunk in pending])

