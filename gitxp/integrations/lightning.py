"""A Lightning ``Logger`` that records the run as a gitxp experiment.

::

    from gitxp.integrations.lightning import GitxpLogger

    trainer = lightning.Trainer(max_epochs=3, logger=GitxpLogger())
    trainer.fit(model, loader)

Lightning does not ship third-party loggers (Lightning-AI/pytorch-lightning#3985),
so this one lives here. It is a real subclass of Lightning's ``Logger``, built
on first access of ``GitxpLogger`` so that importing this module imports
neither Lightning nor torch. ``lightning`` (``lightning.pytorch``) is used
when importable, else the older ``pytorch_lightning`` package; a process that
imported only ``pytorch_lightning`` gets a logger for that namespace.
Everything that writes runs on global rank zero only.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from gitxp.integrations import lazy_class

__all__ = ["GitxpLogger", "logger_class"]

_classes: dict[str, type] = {}


def _namespace() -> str:
    if "pytorch_lightning" in sys.modules and "lightning" not in sys.modules:
        return "pytorch_lightning"
    try:
        import lightning.pytorch  # noqa: F401
    except ImportError:
        from gitxp.integrations import require

        require("pytorch_lightning", "gitxp.integrations.lightning.GitxpLogger", "Lightning", "lightning")
        return "pytorch_lightning"
    return "lightning.pytorch"


def logger_class(namespace: str | None = None) -> type:
    """``GitxpLogger`` built on ``namespace`` (``lightning.pytorch`` or ``pytorch_lightning``)."""
    import importlib

    ns = namespace or _namespace()
    if ns in _classes:
        return _classes[ns]
    base = importlib.import_module(f"{ns}.loggers.logger").Logger
    rank_zero_only = importlib.import_module(f"{ns}.utilities").rank_zero_only
    from gitxp.integrations import SessionMixin, numeric, param_safe

    class GitxpLogger(SessionMixin, base):  # type: ignore[misc, valid-type]
        """Logs metrics, hyperparameters and (optionally) checkpoints into a gitxp experiment.

        Args:
            name: experiment name when the logger starts its own (default:
                the script's name); ignored when joining ``gitxp.current()``.
            params, tags: recorded with the experiment besides the
                hyperparameters Lightning reports.
            log_checkpoints: ``False`` (default), ``True`` to store the best and
                last checkpoints as (encrypted) artifacts when training ends,
                or ``"all"`` to store every checkpoint as it is saved.
            repo: the repository holding the store.
            **start_options: passed to :func:`gitxp.start` (``log_hardware``…).
        """

        def __init__(self, name: str | None = None, *, log_checkpoints: bool | str = False, **options: Any) -> None:
            _check_log_checkpoints(log_checkpoints)
            super().__init__(name, **options)
            self._log_checkpoints = log_checkpoints
            self._checkpoint_callback: Any = None
            self._logged_checkpoints: dict[str, float] = {}

        # -------------------------------------------------------------- identity

        @property
        def name(self) -> str | None:
            return str(self.experiment.name) if rank_zero_only.rank == 0 else None

        @property
        def version(self) -> str | None:
            return str(self.experiment.id) if rank_zero_only.rank == 0 else None

        # -------------------------------------------------------------- logging

        @rank_zero_only
        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            params = _params_dict(params)
            if params:
                self.experiment.log_params(param_safe(params))

        @rank_zero_only
        def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
            if values := _numeric_values(metrics, numeric):
                self.experiment.log_metrics(values, step=step)

        @rank_zero_only
        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            self._checkpoint_callback = checkpoint_callback
            if self._log_checkpoints == "all":
                self._store_checkpoints(checkpoint_callback)

        def _store_checkpoints(self, cb: Any) -> None:
            _store_checkpoint_files(self, cb)

        @rank_zero_only
        def save(self) -> None:
            if self._session.started:
                self.experiment.flush()

        @rank_zero_only
        def finalize(self, status: str) -> None:
            """Lightning says ``success``, ``failed`` or ``finished``; an owned experiment is committed."""
            _finalize(self, status, sys.exc_info()[1])  # Lightning calls this from its except block

    GitxpLogger.__module__ = __name__
    _classes[ns] = GitxpLogger
    return GitxpLogger


def _check_log_checkpoints(value: Any) -> None:
    if value not in (True, False, "all"):
        from gitxp.errors import UsageError

        raise UsageError(f"log_checkpoints must be True, False or 'all', got {value!r}", "e.g. GitxpLogger(log_checkpoints=True)")


def _params_dict(params: Any) -> dict[str, Any] | None:
    """Lightning's hyperparameters (a dict, a Namespace, pairs) as a dict; None stays None."""
    if params is None or isinstance(params, dict):
        return params
    return vars(params) if hasattr(params, "__dict__") else dict(params)


def _numeric_values(metrics: dict[str, Any], numeric: Any) -> dict[str, Any]:
    """The metrics that are numbers (tensors included), as plain numbers."""
    return {k: v for k, v in ((k, numeric(v)) for k, v in metrics.items()) if v is not None}


def _store_checkpoint_files(logger: Any, cb: Any) -> None:
    """Store the best and last checkpoints of ``cb`` (every one with ``"all"``) that changed since last stored."""
    paths = [getattr(cb, "best_model_path", ""), getattr(cb, "last_model_path", "")]
    if logger._log_checkpoints == "all":
        paths += list(getattr(cb, "best_k_models", {}) or {})
    for p in dict.fromkeys(str(p) for p in paths if p):
        if not os.path.isfile(p):
            continue
        mtime = os.stat(p).st_mtime
        if logger._logged_checkpoints.get(p) == mtime:
            continue
        logger.experiment.log_artifact(p, f"checkpoints/{os.path.basename(p)}")
        logger._logged_checkpoints[p] = mtime


def _finalize(logger: Any, status: str, exc: BaseException | None) -> None:
    """The end of training: checkpoints stored, an owned experiment committed as completed, interrupted or failed."""
    if not logger._session.started:
        return
    if logger._log_checkpoints and logger._checkpoint_callback is not None:
        logger._store_checkpoints(logger._checkpoint_callback)
    if status != "failed":
        logger._session.finish("completed")
    elif isinstance(exc, KeyboardInterrupt):
        logger._session.finish("interrupted", error=exc)
    else:
        logger._session.finish("failed", error=exc)


__getattr__ = lazy_class(__name__, "GitxpLogger", logger_class, cached=False)
