"""Framework callbacks: Lightning, Hugging Face Transformers, Keras 3, XGBoost, LightGBM.

Each module here is a thin adapter over :class:`gitxp.Experiment`: it maps
the framework's hook (``log_metrics``, ``on_log``, ``on_epoch_end``,
``after_iteration``, ``evaluation_result_list``) onto ``log_metrics`` and
``log_params``. Importing a module does not import its framework; the class
that subclasses the framework's base is built on first use (a module-level
``__getattr__``), so ``import gitxp.integrations.lightning`` stays cheap and
works without Lightning installed.

Every adapter logs through one :class:`Session`, which joins the experiment
this process already logs into (``gitxp.current()``: an enclosing ``gitxp
start -- python train.py``, or the user's own ``gitxp.start()``) and
otherwise starts one of its own and finishes it when training ends. A
framework that logs again after the end (``trainer.test()`` after
``trainer.fit()``) resumes that same experiment rather than starting a second.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gitxp.run.experiment import Experiment

__all__ = ["Session", "SessionMixin", "lazy_class", "numeric", "param_safe", "require"]


def require(module: str, feature: str, framework: str, extra: str) -> Any:
    """Import a framework module for ``feature``, or say which extra installs it.

    Called only when the adapter class is built, so importing an integration
    module never imports its framework.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        from gitxp.errors import MissingDependencyError

        raise MissingDependencyError(feature, framework, extra) from None


def lazy_class(module: str, name: str, builder: Callable[[], type], *, cached: bool = True) -> Callable[[str], Any]:
    """A module ``__getattr__`` that builds the class ``name`` on its first access.

    The class subclasses a framework base, so it can only exist once the
    framework is imported; building it on access keeps the module import
    cheap. ``cached=False`` leaves caching to ``builder`` (Lightning builds
    one class per namespace).
    """
    cache: list[type] = []

    def __getattr__(attr: str) -> Any:
        if attr != name:
            raise AttributeError(f"module {module!r} has no attribute {attr!r}")
        if cache:
            return cache[0]
        cls = builder()
        cls.__module__ = module
        if cached:
            cache.append(cls)
        return cls

    return __getattr__


class Session:
    """The experiment one callback logs into, joined or owned.

    Args:
        name, params, tags: used when the session starts its own experiment;
            with a joined one, ``params`` and ``tags`` are added to it.
        repo: the repository of the store (default: the current folder).
        **start_options: passed on to :func:`gitxp.start` (``log_hardware``,
            ``capture_env``, ``code_dir``, …).

    The callbacks take the same arguments and hand them over unchanged.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        repo: str | os.PathLike[str] = ".",
        **start_options: Any,
    ) -> None:
        self.name = name
        self.params = dict(params or {})
        self.tags = dict(tags or {})
        self.repo = repo
        self.start_options = start_options
        self._xp: Experiment | None = None
        self.owned = False

    @property
    def started(self) -> bool:
        return self._xp is not None

    @property
    def experiment(self) -> Any:
        """The live experiment: joined, started or (after :meth:`finish`) resumed."""
        import gitxp

        xp = self._xp
        if xp is not None and not xp._finished:
            return xp
        outer = gitxp.current()
        if outer is not None:
            self._xp, self.owned = outer, False
            if self.params:
                outer.log_params(param_safe(self.params))
            if self.tags:
                outer.set_tags(self.tags)
        elif xp is not None and self.owned:
            self._xp = gitxp.start(resume=xp.id, repo=self.repo, **self.start_options)
        else:
            self._xp = gitxp.start(self.name, param_safe(self.params), self.tags, repo=self.repo, **self.start_options)
            self.owned = True
        return self._xp

    def finish(self, status: str = "completed", error: BaseException | None = None) -> None:
        """Commit an experiment this session started; a joined one is only flushed."""
        xp = self._xp
        if xp is None or xp._finished:
            return
        if self.owned:
            xp.finish(status, error=error)
        else:
            xp.flush()


class SessionMixin:
    """The constructor and ``experiment`` every callback class shares; put it before the framework base.

    Its arguments are :class:`Session`'s (``name``, ``params``, ``tags``,
    ``repo``, ``**start_options``).
    """

    def __init__(self, name: str | None = None, **options: Any) -> None:
        super().__init__()
        self._session = Session(name, **options)

    @property
    def experiment(self) -> Any:
        """The :class:`gitxp.Experiment`; started (or joined) on first use."""
        return self._session.experiment


def param_safe(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as the store can hold them: what is not a plain value becomes its text.

    Frameworks hand over enums, paths, dtypes and callables among their
    settings; keeping their text records what was used, where refusing the
    whole mapping would record nothing.
    """
    return {str(k): _safe(v) for k, v in params.items()}


def _safe(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, enum.Enum):
        return _safe(v.value)
    if isinstance(v, Mapping):
        return param_safe(v)
    if isinstance(v, (list, tuple)):
        return [_safe(x) for x in v]
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    item = getattr(v, "item", None)
    if callable(item) and getattr(v, "ndim", None) == 0:  # numpy / torch scalars
        try:
            return _safe(item())
        except (TypeError, ValueError, RuntimeError):
            pass
    if isinstance(v, type) or callable(v):
        return f"{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', type(v).__name__)}".lstrip(".")
    return str(v)


def numeric(value: Any) -> float | None:
    """A loggable number from a framework value (float, numpy or 0-d tensor), else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            v = item()
        except (TypeError, ValueError, RuntimeError):  # not a single number
            return None
        return float(v) if isinstance(v, (int, float)) else None
    return None
