"""A Hugging Face ``TrainerCallback`` that records training as a gitxp experiment.

::

    from gitxp.integrations.transformers import GitxpCallback

    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[GitxpCallback()])
    trainer.train()

The training arguments become params at ``on_train_begin`` (``to_dict()``,
which masks tokens, plus the effective batch sizes); every ``on_log`` value
that is a number becomes a metric at ``state.global_step``; ``on_train_end``
commits an experiment the callback started. Only the world's process zero
writes. The class subclasses ``transformers.TrainerCallback`` and is built on
first access, so importing this module does not import transformers.
"""

from __future__ import annotations

from typing import Any

from gitxp.integrations import lazy_class

__all__ = ["GitxpCallback"]


def _build() -> type:
    from gitxp.integrations import SessionMixin, numeric, param_safe, require

    transformers = require("transformers", "gitxp.integrations.transformers.GitxpCallback", "transformers", "transformers")

    class GitxpCallback(SessionMixin, transformers.TrainerCallback):  # type: ignore[misc, name-defined]
        """Logs ``TrainingArguments`` as params and ``on_log`` values as metrics.

        Args:
            name: experiment name when the callback starts its own (default:
                the script's name); ignored when joining ``gitxp.current()``.
            params, tags: recorded besides the training arguments.
            repo: the repository holding the store.
            **start_options: passed to :func:`gitxp.start` (``log_hardware``…).
        """

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            values = args.to_dict()
            for extra in ("train_batch_size", "eval_batch_size"):
                if hasattr(args, extra):
                    values[extra] = getattr(args, extra)
            self.experiment.log_params(param_safe(values))

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            values = {k: v for k, v in ((k, numeric(v)) for k, v in logs.items()) if v is not None}
            if values:
                self.experiment.log_metrics(values, step=int(state.global_step))

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                self._session.finish("completed")

    return GitxpCallback


__getattr__ = lazy_class(__name__, "GitxpCallback", _build)
