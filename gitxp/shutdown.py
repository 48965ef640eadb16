"""Work that runs while Python exits: saving what a script logged.

A script that never calls ``finish()`` has its metrics, params and tags
staged (and, when it owns the run, committed) by an ``atexit`` handler.
There is no hook before interpreter shutdown begins: by the time any
``atexit`` or ``threading._register_atexit`` callback runs, ``threading``
is already shutting down, and a module imported for the first time can
fail. pyarrow imports pandas lazily on its first call, pandas imports
``concurrent.futures.thread``, which registers a threading exit hook and
raises "can't register atexit after shutdown", and the logged data was
lost. So exit handlers run with such first imports refused: pyarrow then
records that pandas is absent (a clean ImportError, as when it is not
installed) and works without it; a module already imported is unaffected.
Nothing at exit can hold a pandas object that was never imported, so
nothing is lost by it. Other modules first imported at exit (filelock on Windows)
import ``concurrent.futures`` too: :func:`register` loads it beforehand.
"""

from __future__ import annotations

import atexit
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: Modules that libraries we call at exit import lazily and that cannot be
#: imported during shutdown.
LATE_IMPORTS = ("pandas",)


class _Blocker:
    """A meta path finder that refuses ``names`` (and their submodules) with a ModuleNotFoundError.

    (``sys.modules[name] = None`` is not enough: Cython's import returns
    that None instead of raising.)
    """

    def __init__(self, names: tuple[str, ...], why: str) -> None:
        self.names, self.why = names, why

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{name} is not imported {self.why}", name=name)
        return None


@contextmanager
def imports_blocked(names: tuple[str, ...], why: str) -> Iterator[None]:
    """Make a first import of ``names`` a plain ImportError meanwhile (modules already imported are unaffected)."""
    blocker = _Blocker(names, why)
    sys.meta_path.insert(0, blocker)  # type: ignore[arg-type]
    try:
        yield
    finally:
        try:
            sys.meta_path.remove(blocker)  # type: ignore[arg-type]
        except ValueError:
            pass


def register(func: Callable[[], Any]) -> Callable[[], Any]:
    """``atexit.register(func)`` with late imports blocked; returns what to ``unregister``.

    ``concurrent.futures.thread`` is imported now, while Python can: any
    module the exit work imports for the first time may import it
    (filelock does, on Windows), and its first import fails during shutdown.
    """
    import concurrent.futures.thread  # noqa: F401

    def at_exit() -> None:
        with imports_blocked(LATE_IMPORTS, "while Python exits"):
            func()

    atexit.register(at_exit)
    return at_exit


_last: list[Callable[[], Any]] = []


def register_last(func: Callable[[], Any]) -> None:
    """Run ``func`` at exit after every hook from :func:`register` (e.g. closing files they use).

    Still early enough for ``__del__`` methods that import (dulwich's pack
    files), which fail once Python has torn its import system down.
    """
    _last.append(func)


def _run_last() -> None:
    for func in reversed(_last):
        try:
            func()
        except Exception:  # best effort: nothing left to report to
            pass


atexit.register(_run_last)  # at import, so after any hook registered later (atexit is LIFO)

