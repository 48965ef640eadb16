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
            if log_checkpoints not in (True, False, "all"):
                from gitxp.errors import UsageError

                raise UsageError(f"log_checkpoints must be True, False or 'all', got {log_checkpoints!r}", "e.g. GitxpLogger(log_checkpoints=True)")
            super().__init__(name, **options)
            self._log_checkpoints = log_checkpoints
            self._checkpoint_callback: Any = None
            self._logged_checkpoints: dict[str, float] = {}

        # -------------------------------------------------------------- identity

        @property
        def name(self) -> str | None:
            if rank_zero_only.rank != 0:
                return None
            return str(self.experiment.name)

        @property
        def version(self) -> str | None:
            if rank_zero_only.rank != 0:
                return None
            return str(self.experiment.id)

        # -------------------------------------------------------------- logging

        @rank_zero_only
        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            if params is None:
                return
            if not isinstance(params, dict):
                params = vars(params) if hasattr(params, "__dict__") else dict(params)
            if params:
                self.experiment.log_params(param_safe(params))

        @rank_zero_only
        def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
            values = {k: v for k, v in ((k, numeric(v)) for k, v in metrics.items()) if v is not None}
            if values:
                self.experiment.log_metrics(values, step=step)

        @rank_zero_only
        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            self._checkpoint_callback = checkpoint_callback
            if self._log_checkpoints == "all":
                self._store_checkpoints(checkpoint_callback)

        def _store_checkpoints(self, cb: Any) -> None:
            paths = [getattr(cb, "best_model_path", ""), getattr(cb, "last_model_path", "")]
            if self._log_checkpoints == "all":
                paths += list(getattr(cb, "best_k_models", {}) or {})
            for p in dict.fromkeys(str(p) for p in paths if p):
                if not os.path.isfile(p):
                    continue
                mtime = os.stat(p).st_mtime
                if self._logged_checkpoints.get(p) == mtime:
                    continue
                self.experiment.log_artifact(p, f"checkpoints/{os.path.basename(p)}")
                self._logged_checkpoints[p] = mtime

        @rank_zero_only
        def save(self) -> None:
            if self._session.started:
                self.experiment.flush()

        @rank_zero_only
        def finalize(self, status: str) -> None:
            """Lightning says ``success``, ``failed`` or ``finished``; an owned experiment is committed."""
            if not self._session.started:
                return
            if self._log_checkpoints and self._checkpoint_callback is not None:
                self._store_checkpoints(self._checkpoint_callback)
            exc = sys.exc_info()[1]  # Lightning calls this from its except block
            if status != "failed":
                self._session.finish("completed")
            elif isinstance(exc, KeyboardInterrupt):
                self._session.finish("interrupted", error=exc)
            else:
                self._session.finish("failed", error=exc)

    GitxpLogger.__module__ = __name__
    _classes[ns] = GitxpLogger
    return GitxpLogger


__getattr__ = lazy_class(__name__, "GitxpLogger", logger_class, cached=False)
