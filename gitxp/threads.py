"""One job at a time on a second thread, for work that releases the GIL.

hashlib (on more than 2 KiB), zlib, AES-GCM and file I/O all release the GIL,
so on two cores a SHA-1 can run beside the write it belongs to. A pool
would be heavier than the hand-off this needs: queue jobs in order, do your
own share, collect the results in the same order. A job's input must stay
unchanged until its result is collected (bytes and views of bytes do);
callers that reuse buffers collect a job's result before refilling its
buffer. ``inline=True`` runs each job at once on the caller's thread, for
work too small to be worth a thread, behind the same interface.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Worker"]


class Worker:
    """``fn(job)`` on a daemon thread, in order, up to ``depth`` jobs queued; errors are raised by :meth:`result`."""

    def __init__(self, fn: Callable[[Any], Any], name: str = "gitxp-worker", *, depth: int = 1, inline: bool = False) -> None:
        self._fn = fn
        self._todo: queue.Queue[Any] = queue.Queue(depth)
        self._done: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self._thread = None if inline else threading.Thread(target=self._run, name=name, daemon=True)
        if self._thread is not None:
            self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._todo.get()
            if job is None:
                return
            self._do(job)
            del job  # hold no view of a caller's buffer while waiting

    def _do(self, job: Any) -> None:
        try:
            self._done.put((True, self._fn(job)))
        except BaseException as exc:  # raised in the caller, by result()
            self._done.put((False, exc))

    def start(self, job: Any) -> None:
        """Queue the next job (waits while ``depth`` jobs are queued); collect each result with :meth:`result`."""
        if self._thread is None:
            self._do(job)
        else:
            self._todo.put(job)

    def result(self) -> Any:
        """Wait for the oldest uncollected job and return what ``fn`` returned (or raise what it raised)."""
        ok, value = self._done.get()
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """Stop the thread once its queued jobs are done; results not collected (an error in between) are dropped."""
        if self._thread is not None:
            self._todo.put(None)
            self._thread.join()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
