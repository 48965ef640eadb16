"""gitxp: a git-backed, file-only experiment store for machine learning.

::

    import gitxp

    with gitxp.start(params={"lr": 0.1}) as xp:
        for step in range(100):
            xp.log_metric("loss", 1 / (step + 1), step=step)

    store = gitxp.open(".")
    store.get("@").metrics()          # a pyarrow Table

Importing this package is cheap: pyarrow, dulwich and cryptography load only
when a function needs them, and the run API itself on first use.

``__all__`` is the whole public surface (tests/test_exported_members.py keeps
it sorted and complete); everything else is internal. ``gitxp.open`` is public
but left out of ``__all__`` on purpose, so that ``from gitxp import *`` never
shadows the builtin ``open``: call it as ``gitxp.open(".")``.
"""

from __future__ import annotations

import typing as _typing

__version__ = "0.1.0"

from gitxp.errors import (
    AmbiguousRefError,
    DecryptionError,
    EnvironmentRecreateError,
    ExperimentStateError,
    ForeignStoreError,
    FormatTooNewError,
    GitxpError,
    KeyMissingError,
    MetricValueError,
    MissingDependencyError,
    NoActiveExperimentError,
    NotARepositoryError,
    ParamError,
    ParamsReadOnlyError,
    ParamTypeError,
    QueryError,
    RefError,
    RemoteError,
    RunNotStoredError,
    SchedulerError,
    StaleLockError,
    StoreError,
    SweepFileError,
    UnsafeDataError,
    UsageError,
)
if _typing.TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from gitxp.run.experiment import Experiment, current, start
    from gitxp.store.record import Record
    from gitxp.store.store import Store

__all__ = [
    "AmbiguousRefError",
    "DecryptionError",
    "EnvironmentRecreateError",
    "Experiment",
    "ExperimentStateError",
    "ForeignStoreError",
    "FormatTooNewError",
    "GitxpError",
    "KeyMissingError",
    "MetricValueError",
    "MissingDependencyError",
    "NoActiveExperimentError",
    "NotARepositoryError",
    "ParamError",
    "ParamTypeError",
    "ParamsReadOnlyError",
    "QueryError",
    "Record",
    "RefError",
    "RemoteError",
    "RunNotStoredError",
    "SchedulerError",
    "StaleLockError",
    "Store",
    "StoreError",
    "SweepFileError",
    "UnsafeDataError",
    "UsageError",
    "__version__",
    "current",
    "histories",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "runs",
    "set_tag",
    "set_tags",
    "start",
    "sweep",
]


def open(path: str = ".") -> Store:  # noqa: A001 - mirrors builtins.open on purpose: gitxp.open(".")
    """Open the experiment store of the repository at or above ``path``.

    Not in ``__all__``: ``from gitxp import *`` must not replace the builtin
    ``open``; write ``gitxp.open(".")``.
    """
    from gitxp.store.store import Store

    return Store.open(path)


def sweep(fn: Callable[[Any, dict[str, Any]], Any], grid_or_file: str | os.PathLike[str] | Mapping[str, Any], *,
          jobs: int = 1, repo: str | os.PathLike[str] = ".", name: str | None = None, rerun: bool = False,
          **start_options: Any) -> Any:
    """Run ``fn(xp, params)`` once per configuration of a sweep grid; returns a pyarrow Table.

    Each configuration runs in its own process (``jobs`` at a time) as a
    child experiment of one sweep experiment; completed configurations are
    skipped unless ``rerun``; ``start_options`` go to :func:`gitxp.start`.
    The signature is :func:`gitxp.sweeps.runner.sweep`'s (a test keeps them equal);
    the implementation is imported on the first call.
    """
    from gitxp.sweeps.runner import sweep as _sweep

    return _sweep(fn, grid_or_file, jobs=jobs, repo=repo, name=name, rerun=rerun, **start_options)


def _active() -> Experiment:
    from gitxp.run.experiment import current

    xp = current()
    if xp is None:
        raise NoActiveExperimentError()
    return xp


# MLflow-style module functions: the experiment is the one gitxp.current()
# returns (this process's gitxp.start(), or the enclosing `gitxp start`).


def log_metric(name: str, value: float, step: int | None = None, timestamp: Any = None) -> None:
    """``current().log_metric(...)``; NoActiveExperimentError when nothing is running."""
    _active().log_metric(name, value, step, timestamp)


def log_metrics(values: Mapping[str, float], step: int | None = None, timestamp: Any = None) -> None:
    """``current().log_metrics(...)``; NoActiveExperimentError when nothing is running."""
    _active().log_metrics(values, step, timestamp)


def log_param(key: str, value: Any) -> None:
    """``current().log_param(...)``; NoActiveExperimentError when nothing is running."""
    _active().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    """``current().log_params(...)``; NoActiveExperimentError when nothing is running."""
    _active().log_params(params)


def log_artifact(path: str | os.PathLike[str], name: str | None = None, *, encrypt: bool = True) -> None:
    """``current().log_artifact(...)``; NoActiveExperimentError when nothing is running."""
    _active().log_artifact(path, name, encrypt=encrypt)


def set_tag(key: str, value: Any) -> None:
    """``current().set_tag(...)``; NoActiveExperimentError when nothing is running."""
    _active().set_tag(key, value)


def set_tags(tags: Mapping[str, Any] | None = None, **more: Any) -> None:
    """``current().set_tags(...)``; NoActiveExperimentError when nothing is running."""
    _active().set_tags(tags, **more)


def runs(where: str | None = None, repo: str | os.PathLike[str] = ".") -> Any:
    """The stored experiments as a pandas DataFrame, one row each, newest first.

    Columns: ``id``, ``name``, ``status``, ``created`` (UTC datetimes),
    ``duration_s``, ``params.*``, ``metrics.*`` (last values), ``summary.*``,
    ``tags.*``. ``where`` is the ``--where`` language. Needs pandas
    (``pip install 'gitxp[pandas]'``).
    """
    from gitxp.store.frames import runs as _runs

    return _runs(where, repo=repo)


def histories(refs_or_where: str | Iterable[Any], metrics: str | Iterable[str] | None = None, repo: str | os.PathLike[str] = ".") -> Any:
    """Metric histories of several experiments as one long pandas DataFrame.

    Columns: ``id``, ``name``, ``metric``, ``step``, ``value``,
    ``timestamp``. ``refs_or_where`` is a ``--where`` expression, one ref,
    or refs / Records / a :func:`runs` DataFrame; ``metrics`` names (globs)
    keep only those. Needs pandas (``pip install 'gitxp[pandas]'``).
    """
    from gitxp.store.frames import histories as _histories

    return _histories(refs_or_where, metrics, repo=repo)


def __getattr__(name: str) -> Any:
    """The run API and the store's classes, imported on first use: ``gitxp --help`` and tools that
    only read never load the live-run machinery."""
    if name in ("Experiment", "current", "start"):
        from gitxp.run import experiment

        value = globals()[name] = getattr(experiment, name)
        return value
    if name == "Store":
        from gitxp.store.store import Store

        return Store
    if name == "Record":
        from gitxp.store.record import Record

        return Record
    raise AttributeError(f"module 'gitxp' has no attribute {name!r}")
