"""A wrapped command's output: teed live to our own streams and into a bounded ``output.log``.

:class:`Tee` reads the child's pipes on a thread, passes every chunk on to
our stdout/stderr at once, splits lines for ``--scalars`` and writes
everything, with secrets masked, to a :class:`BoundedLog` that keeps only the
tail of a long output behind one marker line (:data:`OUTPUT_MARK`, which
:mod:`gitxp.run.finish` writes the same way when it trims a log).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

#: The first line of an output log whose beginning was dropped (``%d``: bytes dropped so far).
OUTPUT_MARK = b"[gitxp: %d bytes of earlier output dropped]\n"
#: After the child exits, keep reading its pipes until EOF, until they are
#: idle this long, or at most _DRAIN_MAX_S (a daemon grandchild may hold them).
_DRAIN_IDLE_S = 0.25
_DRAIN_MAX_S = 2.0
_READ_SIZE = 64 * 1024
#: A "line" longer than this without a terminator is passed to on_line as is.
_MAX_LINE = 64 * 1024
_LINE_END = re.compile(rb"\r\n|\r|\n")
_MARKER_RE = re.compile(rb"\A\[gitxp: (\d+) bytes of earlier output dropped\]\n")


class BoundedLog:
    """An append-only file that keeps only the tail of what was written.

    Chunks are written straight to the file descriptor (no user-space
    buffer), so the file is current on disk for anyone reading it after a
    crash. When it grows past ``2 * cap`` it is rewritten (temp file +
    ``os.replace``, so a reader sees the old or the new file, never half)
    as a first line ``[gitxp: N bytes of earlier output dropped]`` followed
    by the last ``cap`` bytes cut at a line boundary; :meth:`close` trims it
    the same way to at most ``cap`` bytes plus that line. Rewriting at
    twice the cap keeps the cost at about one extra copy per byte. An
    existing file is appended to and its marker's count carried on.
    """

    def __init__(self, path: Path, cap: int) -> None:
        self.path = Path(path)
        self.cap = max(int(cap), 1)
        self.dropped = 0
        self._marker_len = 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._size = os.fstat(self._fd).st_size
        if self._size:
            with open(self.path, "rb") as f:
                match = _MARKER_RE.match(f.read(200))
            if match:
                self.dropped = int(match.group(1))
                self._marker_len = match.end()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(data)
        if self._size - self._marker_len > 2 * self.cap:
            self._compact()

    def _compact(self) -> None:
        content = self._size - self._marker_len
        start = self._size - self.cap
        with open(self.path, "rb") as f:
            f.seek(start - 1)
            before = f.read(1)
            tail = f.read()
        if before != b"\n":
            newline = tail.find(b"\n")
            if newline != -1 and newline + 1 < len(tail):
                tail = tail[newline + 1 :]
        self.dropped += content - len(tail)
        marker = OUTPUT_MARK % self.dropped
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(marker)
            f.write(tail)
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._marker_len = len(marker)
        self._size = len(marker) + len(tail)

    @property
    def written(self) -> int:
        """Bytes in the file now (a failed write may have left part of a chunk)."""
        try:
            return os.fstat(self._fd).st_size if self._fd >= 0 else self._size
        except OSError:
            return self._size

    def close(self) -> None:
        if self._fd < 0:
            return
        if self._size - self._marker_len > self.cap:
            self._compact()
        os.close(self._fd)
        self._fd = -1


class Tee:
    """One reader thread for the child's two pipes.

    A single thread with a selector keeps stdout and stderr chunks in the
    order they arrived, both in the log and on our own streams.
    """

    def __init__(
        self,
        stdout: IO[bytes],
        stderr: IO[bytes],
        log: BoundedLog | None,
        on_line: Callable[[str], None] | None,
        mask: Sequence[str] = (),
    ) -> None:
        from gitxp.redact import StreamMasker

        self._pipes = {stdout.fileno(): stdout, stderr.fileno(): stderr}
        self._sinks: dict[int, IO[bytes] | None] = {
            stdout.fileno(): getattr(sys.stdout, "buffer", None),
            stderr.fileno(): getattr(sys.stderr, "buffer", None),
        }
        self._log = log
        self._masker = StreamMasker(mask)
        self._on_line = on_line
        self._partial: dict[int, bytes] = {fd: b"" for fd in self._pipes}
        self._line_error_reported = False
        self._exited_at: float | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="gitxp-tee", daemon=True)
        self._error: BaseException | None = None
        self.capture_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        """The child has ended: drain what is left, then stop."""
        with self._lock:
            self._exited_at = time.monotonic()
        self._thread.join()
        for pipe in self._pipes.values():
            pipe.close()
        held = self._masker.flush()  # the end of output that might have begun a secret
        if held:
            self._record(held)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        import selectors

        try:
            with selectors.DefaultSelector() as sel:
                for fd in self._pipes:
                    sel.register(fd, selectors.EVENT_READ)
                while sel.get_map():
                    events = sel.select(0.1)
                    for key, _ in events:
                        fd = key.fd
                        assert isinstance(fd, int)
                        data = os.read(fd, _READ_SIZE)
                        if data:
                            self._chunk(fd, data)
                        else:
                            sel.unregister(fd)
                            self._lines(fd, b"", final=True)
                    with self._lock:
                        exited_at = self._exited_at
                    if exited_at is not None:
                        waited = time.monotonic() - exited_at
                        if waited >= _DRAIN_MAX_S or (not events and waited >= _DRAIN_IDLE_S):
                            break  # a grandchild holds the pipes open
                for key in list(sel.get_map().values()):
                    self._lines(key.fd, b"", final=True)
        except BaseException as exc:  # surfaced by finish(), never silently lost
            self._error = exc

    def _chunk(self, fd: int, data: bytes) -> None:
        sink = self._sinks[fd]
        if sink is not None:
            try:
                sink.write(data)
                sink.flush()
            except (OSError, ValueError):  # our stdout closed (`| head`): keep recording
                self._sinks[fd] = None
        if self._log is not None:
            self._record(self._masker.feed(data))
        if self._on_line is not None:
            self._lines(fd, data, final=False)

    def _record(self, data: bytes) -> None:
        """Append to output.log; a write error (full disk) stops recording, never the draining.

        Were this thread to die, the child would block on a full pipe and a
        one-second command would hang until killed.
        """
        if self._log is None or not data:
            return
        try:
            self._log.write(data)
        except OSError as exc:
            self.capture_error = capture_stopped(self._log, exc)
            self._log = None

    def _lines(self, fd: int, data: bytes, *, final: bool) -> None:
        if self._on_line is None:
            return
        buf = self._partial[fd] + data
        hold = b""
        if not final and buf.endswith(b"\r"):
            hold, buf = b"\r", buf[:-1]  # may be the first half of a "\r\n" split across reads
        parts = _LINE_END.split(buf)
        rest = parts.pop()
        if rest and (final or len(rest) > _MAX_LINE):
            parts.append(rest)
            rest = b""
        self._partial[fd] = rest + hold
        for raw in parts:
            self._emit(raw.decode("utf-8", errors="replace"))

    def _emit(self, line: str) -> None:
        assert self._on_line is not None
        try:
            self._on_line(line)
        except Exception as exc:  # a metrics callback must never kill the user's run
            if not self._line_error_reported:
                self._line_error_reported = True
                try:
                    sys.stderr.write(f"gitxp: reading scalars from the output failed: {exc!r}\n")
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass


def capture_stopped(log: BoundedLog, exc: OSError) -> str:
    """The ``recording_errors`` line for an output log that could no longer be written."""
    return f"capture stopped after {log.written} bytes ({exc.strerror or exc}); the rest was shown, not recorded"
