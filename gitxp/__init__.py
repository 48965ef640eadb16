"""gitxp: a git-backed, file-only experiment store for machine learning.

::

    import gitxp

    with gitxp.start(params={"lr": 0.1}) as xp:
        for step in range(100):
            xp.log_metric("loss", 1 / (step + 1), step=step)

    store = gitxp.open(".")
    store.get("@").metrics()          # a pyarrow Table

Importing this package is cheap: pyarrow, dulwich and cryptography load only
when a function needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .errors import (
    AmbiguousRefError,
    DecryptionError,
    FormatTooNewError,
    GitxpError,
    KeyMissingError,
    MetricValueError,
    NotARepositoryError,
    ParamTypeError,
    RefError,
    StoreError,
    UsageError,
)
from .experiment import Experiment, current, start

if TYPE_CHECKING:
    from .store import Record, Store

__all__ = [
    "AmbiguousRefError",
    "DecryptionError",
    "Experiment",
    "FormatTooNewError",
    "GitxpError",
    "KeyMissingError",
    "MetricValueError",
    "NotARepositoryError",
    "ParamTypeError",
    "Record",
    "RefError",
    "Store",
    "StoreError",
    "UsageError",
    "__version__",
    "current",
    "open",
    "start",
    "sweep",
]


def open(path: str = ".") -> Store:  # noqa: A001 - mirrors builtins.open on purpose: gitxp.open(".")
    """Open the experiment store of the repository at or above ``path``."""
    from .store import Store

    return Store.open(path)


def sweep(fn: Any, grid_or_file: Any, **options: Any) -> Any:
    """Run ``fn(xp, params)`` for every configuration of a sweep grid; returns a pyarrow Table.

    See :func:`gitxp.sweeps.sweep` for the options (``jobs``, ``repo``, ``name``, ``rerun``).
    """
    from .sweeps import sweep as _sweep

    return _sweep(fn, grid_or_file, **options)


def __getattr__(name: str) -> Any:
    if name in ("Store", "Record"):
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module 'gitxp' has no attribute {name!r}")
