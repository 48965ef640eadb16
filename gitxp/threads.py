"""Work beside the caller: jobs on a second thread (for work that releases the GIL), or one
function in a forked child (for pure-Python work, which the GIL keeps on one core).

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

import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Worker", "forked"]


class Worker:
    """``fn(job)`` on a daemon thread, in order, up to ``depth`` jobs queued; errors are raised by :meth:`result`."""

    def __init__(self, fn: Callable[[Any], Any], name: str = "gitxp-worker", *, depth: int = 1, inline: bool = False) -> None:
        self._fn = fn
        self._started = self._collected = 0
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
        self._started += 1
        if self._thread is None:
            self._do(job)
        else:
            self._todo.put(job)

    def result(self) -> Any:
        """Wait for the oldest uncollected job and return what ``fn`` returned (or raise what it raised)."""
        ok, value = self._done.get()
        self._collected += 1
        if not ok:
            raise value
        return value

    def through(self, job: int | None) -> None:
        """Collect results (dropped) until job number ``job`` (0-based, in start order; None: every job started) is done."""
        end = self._started if job is None else job + 1
        while self._collected < end:
            self.result()

    def close(self) -> None:
        """Stop the thread once its queued jobs are done; results not collected (an error in between) are dropped."""
        if self._thread is not None:
            self._todo.put(None)
            self._thread.join()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def forked(fn: Callable[[], Any]) -> Callable[[], Any] | None:
    """Start ``fn()`` in a forked child; return a function that waits for its result (None if it failed).

    As Mercurial's workers fork for a checkout: the second core, for Python
    work the GIL keeps on one. Only on Linux with two or more CPUs and no
    other thread in this process (a fork copies one thread; a lock another
    held would stay held in the child); None otherwise, and the caller does
    the work itself. The result comes back marshalled, so it may hold only
    plain types (no ``datetime``: the child fails and the waiter returns
    None). The child leaves with ``os._exit``: no exit hooks, no flushing
    of buffers it shares with this process.
    """
    if not sys.platform.startswith("linux") or threading.active_count() != 1 or len(os.sched_getaffinity(0)) < 2:
        return None
    import marshal

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(r)
            data = marshal.dumps(fn())
            with os.fdopen(w, "wb") as out:
                out.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(w)

    def wait() -> Any:
        with os.fdopen(r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if status != 0:
            return None
        try:
            return marshal.loads(data)
        except (ValueError, EOFError, TypeError):
            return None

    return wait
