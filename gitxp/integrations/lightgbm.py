"""A LightGBM callback that records boosting as a gitxp experiment.

::

    from gitxp.integrations.lightgbm import callback

    lgb.train(params, train_set, 50, valid_sets=[valid], callbacks=[callback()])

LightGBM callbacks are plain callables taking a ``CallbackEnv``; each entry
of ``env.evaluation_result_list`` becomes the metric ``<data>-<metric>``
(``valid_0-l2``, the names LightGBM prints) at step = iteration. Entries are
4-field ``(data, metric, value, higher_is_better)`` tuples from ``train()``
and 5-field ones from ``cv()`` whose standard deviation over the folds is
recorded as ``<data>-<metric>-stdv`` (LightGBM ≥ 4.7 passes them as
``EvalResult`` named tuples of the same shape). ``env.params`` are recorded
as params at the first iteration. An experiment the callback started is
committed after the last iteration; training cut short by early stopping
never reaches it, and such an experiment is committed when the process
exits, or by calling ``.finish()`` on the callback.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["GitxpLightGBMCallback", "callback"]


class GitxpLightGBMCallback:
    """The callable :func:`callback` returns; ``order`` places it after LightGBM's own loggers."""

    order = 25  # after record_evaluation (20), before early_stopping (30)
    before_iteration = False

    def __init__(self, session: Any) -> None:
        self._session = session
        self._params_logged = False

    @property
    def experiment(self) -> Any:
        return self._session.experiment

    def __call__(self, env: Any) -> None:
        from gitxp.integrations import numeric, param_safe

        xp = self.experiment
        if not self._params_logged:
            self._params_logged = True
            if env.params:
                xp.log_params(param_safe(env.params))
        values: dict[str, float] = {}
        for entry in env.evaluation_result_list or ():
            data, metric, value = entry[0], entry[1], numeric(entry[2])
            if value is not None:
                values[f"{data}-{metric}"] = value
            if len(entry) > 4 and entry[4] is not None:
                std = numeric(entry[4])
                if std is not None:
                    values[f"{data}-{metric}-stdv"] = std
        if values:
            xp.log_metrics(values, step=int(env.iteration))
        if env.iteration >= env.end_iteration - 1:
            self.finish()

    def finish(self, status: str = "completed") -> None:
        """Commit an experiment this callback started (early stopping ends before the last iteration)."""
        self._session.finish(status)


def callback(
    name: str | None = None,
    *,
    params: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    repo: str | os.PathLike[str] = ".",
    **start_options: Any,
) -> GitxpLightGBMCallback:
    """A LightGBM callback logging ``evaluation_result_list`` as ``<data>-<metric>`` metrics.

    Args:
        name: experiment name when the callback starts its own (default: the
            script's name); ignored when joining ``gitxp.current()``.
        params, tags: recorded besides the parameters LightGBM reports.
        repo: the repository holding the store.
        **start_options: passed to :func:`gitxp.start` (``log_hardware``…).
    """
    from gitxp.integrations import Session

    return GitxpLightGBMCallback(Session(name, params=params, tags=tags, repo=repo, **start_options))
