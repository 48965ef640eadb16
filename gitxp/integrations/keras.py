"""A Keras 3 callback that records ``model.fit`` as a gitxp experiment.

::

    from gitxp.integrations.keras import GitxpCallback

    model.fit(x, y, epochs=5, validation_split=0.2, callbacks=[GitxpCallback()])

Epoch logs become metrics at step = epoch, under Keras's own names
(``loss``, ``val_loss``: the ``val_`` prefix is kept, so the names match
what ``History`` shows). ``log_every_n_batches=N`` also records every N-th
batch's logs as ``batch/<name>`` at step = the batch's number counted over
the whole fit. Works with every Keras 3 backend (TensorFlow, JAX, torch);
the class is built on first access, so importing this module does not
import Keras.
"""

from __future__ import annotations

from typing import Any

from gitxp.integrations import lazy_class

__all__ = ["GitxpCallback"]


def _build() -> type:
    from gitxp.integrations import SessionMixin, numeric, require

    keras = require("keras", "gitxp.integrations.keras.GitxpCallback", "Keras 3", "keras")

    class GitxpCallback(SessionMixin, keras.callbacks.Callback):  # type: ignore[misc, name-defined]
        """Logs epoch (and optionally batch) logs as metrics, fit settings as params.

        Args:
            name: experiment name when the callback starts its own (default:
                the script's name); ignored when joining ``gitxp.current()``.
            params, tags: recorded besides ``epochs``, ``steps`` and the optimizer.
            log_every_n_batches: also log every N-th training batch (0: never).
            repo: the repository holding the store.
            **start_options: passed to :func:`gitxp.start` (``log_hardware``…).
        """

        def __init__(self, name: str | None = None, *, log_every_n_batches: int = 0, **options: Any) -> None:
            if isinstance(log_every_n_batches, bool) or not isinstance(log_every_n_batches, int) or log_every_n_batches < 0:
                from gitxp.errors import UsageError

                raise UsageError(f"log_every_n_batches must be an int >= 0, got {log_every_n_batches!r}", "e.g. GitxpCallback(log_every_n_batches=50)")
            super().__init__(name, **options)
            self._every = log_every_n_batches
            self._batches = 0

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            fit = {k: v for k, v in (self.params or {}).items() if k in ("epochs", "steps") and v is not None}
            opt = getattr(self.model, "optimizer", None)
            if opt is not None:
                fit["optimizer"] = type(opt).__name__
                try:  # a backend variable (or a schedule, which has no single value)
                    lr = numeric(keras.ops.convert_to_numpy(opt.learning_rate))
                except Exception:
                    lr = None
                if lr is not None:
                    fit["learning_rate"] = lr
            self.experiment.log_params(fit)

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self._batches += 1
            if self._every and logs and self._batches % self._every == 0:
                values = {f"batch/{k}": v for k, v in ((k, numeric(v)) for k, v in logs.items()) if v is not None}
                if values:
                    self.experiment.log_metrics(values, step=self._batches - 1)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            values = {k: v for k, v in ((k, numeric(v)) for k, v in (logs or {}).items()) if v is not None}
            if values:
                self.experiment.log_metrics(values, step=int(epoch))

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            self._session.finish("completed")

    return GitxpCallback


__getattr__ = lazy_class(__name__, "GitxpCallback", _build)
