"""The process side of ``gitxp start -- CMD ARGS...``.

:func:`run_child` spawns the wrapped command, tees its output live to our own
stdout/stderr and into a size-capped ``output.log`` (tail kept), forwards the
signals a user or a scheduler sends to ``gitxp`` and reports how the child
ended. The lines it passes on are read for metrics by :mod:`gitxp.run.scalars`
(``--scalars`` / ``--scalar``). The experiment/store side lives elsewhere;
nothing here knows about experiments.

Signals and process groups (main thread only; see :func:`run_child`)
--------------------------------------------------------------------
The child runs in its own process group, so a signal aimed at ``gitxp``
(``kill -INT``, ``kill -TERM``, a scheduler, ``timeout``) reaches the child
exactly once: we forward SIGINT, SIGTERM and SIGHUP to the child's group.

A terminal would break that: Ctrl-C signals the terminal's *foreground*
group, which would be ours only, and a child in a background group is
stopped (SIGTTIN) when it reads the terminal (``input()``, ``breakpoint()``).
So when ``gitxp`` is in the foreground of its controlling terminal we do
what a shell does: hand the terminal's foreground to the child's group while
it runs (Ctrl-C then reaches the child directly and only it), take it back
when the child stops (Ctrl-Z: we stop ourselves too, so the shell's ``fg``
and ``bg`` work) and when it ends.

If ``gitxp`` itself dies of SIGKILL, the child keeps running (it is in
another group); when its output goes through our pipes it gets SIGPIPE /
``BrokenPipeError`` on its next write. ``gitxp recover`` commits what was
staged with status ``crashed``.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from gitxp.errors import UsageError

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Mapping, Sequence
    from types import FrameType

__all__ = ["ChildResult", "run_child"]

#: Signals forwarded to the child while it runs.
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Signals that make a run ``interrupted`` (received by us or fatal to the child).
_INTERRUPT_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
#: The third forwarded signal kills the child's group: a stuck child must not
#: make ``gitxp`` unkillable short of ``kill -9``.
_KILL_AFTER = 3
#: After the child exits, keep reading its pipes until EOF, until they are
#: idle this long, or at most _DRAIN_MAX_S (a daemon grandchild may hold them).
_DRAIN_IDLE_S = 0.25
_DRAIN_MAX_S = 2.0
_READ_SIZE = 64 * 1024
#: A "line" longer than this without a terminator is passed to on_line as is.
_MAX_LINE = 64 * 1024
_LINE_END = re.compile(rb"\r\n|\r|\n")
_MARKER_RE = re.compile(rb"\A\[gitxp: (\d+) bytes of earlier output dropped\]\n")


@dataclass(frozen=True)
class ChildResult:
    """How the wrapped command ended.

    ``returncode`` follows :mod:`subprocess` (``-N`` for death by signal N);
    ``exit_status`` is what ``gitxp start`` exits with, as a shell would
    report it (``128+N``). ``interrupted`` is True when we received (and
    forwarded) SIGINT/SIGTERM/SIGHUP, when the child died of one of them, or
    when it exited 130/143 (the shell convention for "stopped by Ctrl-C /
    SIGTERM", e.g. a Python script that caught KeyboardInterrupt): with a
    terminal, Ctrl-C goes straight to the child and never through us.
    ``capture_error`` says why output.log stopped growing (a full disk)
    while the output kept flowing through, or is None.
    """

    returncode: int
    exit_status: int
    signal: int | None
    interrupted: bool
    duration_s: float
    capture_error: str | None = None


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    output_path: Path | None = None,
    output_cap: int = 10 * 2**20,
    on_line: Callable[[str], None] | None = None,
    on_spawn: Callable[[int], None] | None = None,
    mask: Sequence[str] = (),
) -> ChildResult:
    """Run ``argv`` (no shell) to completion and say how it ended.

    Output: with ``output_path`` None and no ``on_line`` (``--no-capture``),
    the child inherits our stdout/stderr untouched. Otherwise both go
    through pipes: each chunk is passed through live, as raw bytes, to our
    stdout/stderr (so ``\\r`` progress bars still render) and, if
    ``output_path`` is given, appended in arrival order to that file, which
    keeps only the last ``output_cap`` bytes (see :class:`_BoundedLog`) and
    is written with one ``write(2)`` per chunk, so it survives ``kill -9``
    of this process. ``PYTHONUNBUFFERED=1`` is added to the child's
    environment (unless set) so Python scripts stream live through the
    pipes. The child's ``isatty()`` is then False.

    Every string in ``mask`` (the artifact key's text) is replaced by
    ``<redacted>`` in ``output.log``, also when the child's writes cut it in
    two; what passes through live to our own streams is left as it is.

    ``on_line`` gets every complete line of stdout and stderr (decoded as
    UTF-8 with replacement; ``\\n``, ``\\r\\n`` and a lone ``\\r`` all end a
    line), from the reader thread; its exceptions are reported once on
    stderr and never stop the run. ``on_spawn(pid)`` is called in the
    calling thread right after the child started; if it raises, the child's
    group is killed and the exception propagates.

    Signals: from the main thread, the child gets its own process group and
    SIGINT/SIGTERM/SIGHUP are forwarded to it (the third one kills the
    group); the terminal is handed over as described in the module
    docstring; the previous handlers are restored afterwards. From another
    thread (signal handlers cannot be set there) the child stays in our
    group, so a terminal Ctrl-C reaches it directly, and nothing is
    forwarded.

    Raises :class:`UsageError` (exit 2) when the command cannot be started
    (not found, not executable, missing ``cwd``).
    """
    if not argv:
        raise UsageError("no command given", "put the command after `--`, e.g. `gitxp start -- python train.py`")
    argv = [os.fspath(a) for a in argv]
    capture = output_path is not None or on_line is not None
    child_env = dict(os.environ if env is None else env)
    if capture:
        child_env.setdefault("PYTHONUNBUFFERED", "1")
    _flush_own_streams()
    in_main = threading.current_thread() is threading.main_thread()
    guard = _SignalGuard() if in_main else None
    log = _BoundedLog(output_path, output_cap) if output_path is not None else None
    proc: subprocess.Popen[bytes] | None = None
    tee: _Tee | None = None
    capture_error: str | None = None
    try:
        if guard is not None:
            guard.install()
        proc = _spawn(argv, child_env, cwd, capture=capture, own_group=in_main)
        started = time.monotonic()
        if guard is not None:
            guard.attach(proc.pid)
        if capture:
            tee = _start_tee(proc, log, on_line, mask)
        if on_spawn is not None:
            on_spawn(proc.pid)
        status = _wait(proc.pid, guard)
        duration = time.monotonic() - started
        proc.returncode = _returncode(status)
    except BaseException:
        if proc is not None and proc.returncode is None:
            _kill_and_reap(proc, own_group=in_main)
        raise
    finally:
        if guard is not None:
            guard.release_terminal()
        try:
            capture_error = _close_capture(tee, log)
        finally:
            # Only now: a Ctrl-C while the last output drains is still ours.
            if guard is not None:
                guard.restore_handlers()
    return _result(proc.returncode, guard, duration, capture_error)


def _flush_own_streams() -> None:
    """What we printed must come before the child's output."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _spawn(argv: list[str], env: dict[str, str], cwd: str | None, *, capture: bool, own_group: bool) -> subprocess.Popen[bytes]:
    """Start the child (in its own process group when ``own_group``); UsageError when it cannot start."""
    import subprocess

    group_kwargs: dict[str, object] = {}
    if own_group:
        if sys.version_info >= (3, 11):
            group_kwargs["process_group"] = 0
        else:  # pragma: no cover - Python 3.10
            group_kwargs["preexec_fn"] = os.setpgrp
    pipe = subprocess.PIPE if capture else None
    try:
        return subprocess.Popen(  # noqa: S603 - argv comes from the user on purpose
            argv, env=env, cwd=cwd, stdout=pipe, stderr=pipe, **group_kwargs  # type: ignore[call-overload]
        )
    except FileNotFoundError as exc:
        if cwd is not None and exc.filename == cwd:
            raise UsageError(f"working directory not found: {cwd}", "run gitxp from an existing directory") from exc
        raise UsageError(f"command not found: {argv[0]}", "check the command after `--`") from exc
    except PermissionError as exc:
        raise UsageError(f"command not executable: {argv[0]}", "check the command after `--` (chmod +x?)") from exc
    except OSError as exc:
        raise UsageError(
            f"cannot run {argv[0]}: {exc.strerror or exc}", "check the command after `--`"
        ) from exc


def _start_tee(proc: subprocess.Popen[bytes], log: _BoundedLog | None, on_line: Callable[[str], None] | None, mask: Sequence[str]) -> _Tee:
    """Start reading the child's pipes (see :class:`_Tee`)."""
    assert proc.stdout is not None and proc.stderr is not None
    tee = _Tee(proc.stdout, proc.stderr, log, on_line, mask)
    tee.start()
    return tee


def _close_capture(tee: _Tee | None, log: _BoundedLog | None) -> str | None:
    """Drain the pipes and close output.log; returns why capture stopped, or None."""
    capture_error: str | None = None
    if tee is not None:
        tee.finish()
        capture_error = tee.capture_error
    if log is not None:
        try:
            log.close()
        except OSError as exc:  # trimming to the cap needs room too
            capture_error = capture_error or _capture_stopped(log, exc)
    return capture_error


def _result(rc: int, guard: _SignalGuard | None, duration: float, capture_error: str | None) -> ChildResult:
    """How the child ended, as :class:`ChildResult` tells it."""
    sig = -rc if rc < 0 else None
    interrupted = (
        (guard is not None and guard.received > 0)
        or (sig is not None and sig in _INTERRUPT_SIGNALS)
        or rc in (128 + signal.SIGINT, 128 + signal.SIGTERM)
    )
    return ChildResult(
        returncode=rc,
        exit_status=128 + sig if sig is not None else rc,
        signal=sig,
        interrupted=interrupted,
        duration_s=duration,
        capture_error=capture_error,
    )


def _capture_stopped(log: _BoundedLog, exc: OSError) -> str:
    return f"capture stopped after {log.written} bytes ({exc.strerror or exc}); the rest was shown, not recorded"


def _returncode(status: int) -> int:
    """A wait status as subprocess reports it: exit code, or -N for signal N."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _wait(pid: int, guard: _SignalGuard | None) -> int:
    """Wait for ``pid`` to end; forwarded signals are handled meanwhile.

    ``waitpid`` is restarted after our handlers run (PEP 475). With the
    terminal handed over, stops are reported (WUNTRACED) so that Ctrl-Z
    suspends ``gitxp`` as well instead of leaving the shell waiting on us.
    """
    flags = os.WUNTRACED if guard is not None and guard.tty_fd is not None else 0
    while True:
        _, status = os.waitpid(pid, flags)
        if os.WIFSTOPPED(status):
            assert guard is not None
            guard.child_stopped(os.WSTOPSIG(status))
            continue
        return status


def _kill_and_reap(proc: subprocess.Popen[bytes], *, own_group: bool) -> None:
    """Leave no child behind when we give up on a run (on_spawn raised...)."""
    try:
        if own_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except OSError:
        pass
    proc.wait()


class _SignalGuard:
    """Our SIGINT/SIGTERM/SIGHUP handlers and the terminal hand-over.

    Installed before the child is spawned so that a signal arriving in
    between is not lost (it is forwarded as soon as the pid is known), and
    never turned into a KeyboardInterrupt that would orphan the child.
    """

    def __init__(self) -> None:
        self.received = 0
        self.pgid: int | None = None
        self.tty_fd: int | None = None
        self._pending: list[int] = []
        self._old_handlers: dict[int, object] = {}
        self._old_ttou: object = None

    def install(self) -> None:
        for signum in FORWARDED_SIGNALS:
            self._old_handlers[signum] = signal.signal(signum, self._handle)

    def attach(self, pid: int) -> None:
        """The child exists (its pgid is its pid): forward what came early, take the terminal."""
        self.pgid = pid
        for signum in self._pending:
            self._forward(signum)
        self._pending.clear()
        self._take_terminal_for_child()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        if self.pgid is None:
            self._pending.append(signum)
        else:
            self._forward(signum)

    def _forward(self, signum: int) -> None:
        assert self.pgid is not None
        sig = signal.SIGKILL if self.received >= _KILL_AFTER else signum
        try:
            os.killpg(self.pgid, sig)
        except OSError:  # already gone
            pass

    def _take_terminal_for_child(self) -> None:
        """If we are the terminal's foreground group, make the child's group it."""
        try:
            fd = os.open("/dev/tty", os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError:
            return  # no controlling terminal
        try:
            if os.tcgetpgrp(fd) != os.getpgrp():
                os.close(fd)
                return  # we run in the background: leave the terminal alone
        except OSError:
            os.close(fd)
            return
        self.tty_fd = fd
        # Writing to the terminal and tcsetpgrp() from a background group
        # raise SIGTTOU; ignoring it lets both through.
        self._old_ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        self._set_foreground(self.pgid)

    def _set_foreground(self, pgid: int | None) -> None:
        if self.tty_fd is None or pgid is None:
            return
        try:
            os.tcsetpgrp(self.tty_fd, pgid)
        except OSError:  # the group is gone already
            pass

    def child_stopped(self, stopsig: int) -> None:
        """The child was stopped: Ctrl-Z (suspend with it) or a terminal read race."""
        assert self.tty_fd is not None and self.pgid is not None
        if stopsig in (signal.SIGTTIN, signal.SIGTTOU):
            # It touched the terminal before we handed it over.
            self._set_foreground(self.pgid)
        else:
            self._set_foreground(os.getpgrp())
            os.killpg(os.getpgrp(), signal.SIGSTOP)  # the shell sees our job stopped
            # Resumed by `fg` (we are in the foreground again) or `bg`.
            try:
                if os.tcgetpgrp(self.tty_fd) == os.getpgrp():
                    self._set_foreground(self.pgid)
            except OSError:
                pass
        try:
            os.killpg(self.pgid, signal.SIGCONT)
        except OSError:
            pass

    def release_terminal(self) -> None:
        """Give the terminal's foreground back to our group."""
        if self.tty_fd is not None:
            self._set_foreground(os.getpgrp())
            os.close(self.tty_fd)
            self.tty_fd = None
            signal.signal(signal.SIGTTOU, self._old_ttou)  # type: ignore[arg-type]

    def restore_handlers(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._old_handlers.clear()


class _BoundedLog:
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
        marker = f"[gitxp: {self.dropped} bytes of earlier output dropped]\n".encode()
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


class _Tee:
    """One reader thread for the child's two pipes.

    A single thread with a selector keeps stdout and stderr chunks in the
    order they arrived, both in the log and on our own streams.
    """

    def __init__(
        self,
        stdout: IO[bytes],
        stderr: IO[bytes],
        log: _BoundedLog | None,
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
            self.capture_error = _capture_stopped(self._log, exc)
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
