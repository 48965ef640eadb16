"""An exclusive lock on a file, held around a short write: the store's branch, a merge, the listing cache.

On POSIX it is one ``flock(2)`` on the file, the call ``filelock`` makes
there, so a gitxp holding it this way and one holding it through
``filelock`` (an older version, or Windows) exclude each other. ``filelock``
itself is imported only on Windows: its import takes ~20 ms (logging,
traceback, its settings), as long as a cold listing's whole cache write.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["locked"]


@contextmanager
def locked(path: str | os.PathLike[str], timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block.

    Waits with backoff; raises TimeoutError (an OSError) after ``timeout``
    seconds. The lock goes with the file descriptor: a killed holder
    releases it, so there is never a stale lock to remove.
    """
    if sys.platform == "win32":  # pragma: no cover - POSIX CI
        from filelock import FileLock, Timeout

        lock = FileLock(str(path))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise TimeoutError(f"{path} stayed locked for {timeout:g} s") from None
        try:
            yield
        finally:
            lock.release()
        return
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{path} stayed locked for {timeout:g} s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        yield
    finally:
        os.close(fd)  # releases the lock
