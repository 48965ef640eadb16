"""An XGBoost ``TrainingCallback`` that records boosting as a gitxp experiment.

::

    from gitxp.integrations.xgboost import GitxpCallback

    xgb.train(params, dtrain, 50, evals=[(dvalid, "valid")], callbacks=[GitxpCallback(params=params)])

After every iteration the last value of each evaluation in ``evals_log``
becomes the metric ``<data>-<metric>`` (``valid-rmse``, the names XGBoost
prints) at step = iteration; ``xgb.cv`` reports (mean, std) pairs, recorded
as ``<data>-<metric>`` and ``<data>-<metric>-std``. XGBoost does not hand
its parameters to callbacks, so pass them as ``params=``. With
``log_model=True`` the trained booster is stored as the artifact
``model.json`` after training. Importing this module does not import xgboost.
"""

from __future__ import annotations

import os
from typing import Any

from gitxp.integrations import lazy_class

__all__ = ["GitxpCallback"]


def _build() -> type:
    from gitxp.integrations import SessionMixin, numeric, require

    callback = require("xgboost.callback", "gitxp.integrations.xgboost.GitxpCallback", "xgboost", "xgboost")

    class GitxpCallback(SessionMixin, callback.TrainingCallback):  # type: ignore[misc, name-defined]
        """Logs ``evals_log`` after each iteration as ``<data>-<metric>``.

        Args:
            name: experiment name when the callback starts its own (default:
                the script's name); ignored when joining ``gitxp.current()``.
            params: the training parameters (xgboost keeps them from callbacks).
            tags: recorded with the experiment.
            log_model: store the booster as the artifact ``model.json`` at the end.
            repo: the repository holding the store.
            **start_options: passed to :func:`gitxp.start` (``log_hardware``…).
        """

        def __init__(self, name: str | None = None, *, log_model: bool = False, **options: Any) -> None:
            super().__init__(name, **options)
            self._log_model = log_model

        def before_training(self, model: Any) -> Any:
            self.experiment  # noqa: B018 - start (or join) before the first iteration
            return model

        def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, dict[str, list[Any]]]) -> bool:
            values: dict[str, float] = {}
            for data, metrics in evals_log.items():
                for metric, history in metrics.items():
                    if not history:
                        continue
                    last = history[-1]
                    if isinstance(last, tuple):  # xgb.cv: (mean, std)
                        mean, std = numeric(last[0]), numeric(last[1]) if len(last) > 1 else None
                        if mean is not None:
                            values[f"{data}-{metric}"] = mean
                        if std is not None:
                            values[f"{data}-{metric}-std"] = std
                    else:
                        v = numeric(last)
                        if v is not None:
                            values[f"{data}-{metric}"] = v
            if values:
                self.experiment.log_metrics(values, step=int(epoch))
            return False

        def after_training(self, model: Any) -> Any:
            if self._log_model and hasattr(model, "save_model"):
                import tempfile

                with tempfile.TemporaryDirectory(prefix="gitxp-xgb-") as tmp:
                    path = os.path.join(tmp, "model.json")
                    model.save_model(path)
                    self.experiment.log_artifact(path, "model.json")
            self._session.finish("completed")
            return model

    return GitxpCallback


__getattr__ = lazy_class(__name__, "GitxpCallback", _build)
