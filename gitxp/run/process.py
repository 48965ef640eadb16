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
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gitxp.errors import UsageError
from gitxp.run.output import BoundedLog, Tee, capture_stopped

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
    keeps only the last ``output_cap`` bytes (see :class:`BoundedLog`) and
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
    log = BoundedLog(output_path, output_cap) if output_path is not None else None
    proc: subprocess.Popen[bytes] | None = None
    tee: Tee | None = None
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


def _start_tee(proc: subprocess.Popen[bytes], log: BoundedLog | None, on_line: Callable[[str], None] | None, mask: Sequence[str]) -> Tee:
    """Start reading the child's pipes (see :class:`Tee`)."""
    assert proc.stdout is not None and proc.stderr is not None
    tee = Tee(proc.stdout, proc.stderr, log, on_line, mask)
    tee.start()
    return tee


def _close_capture(tee: Tee | None, log: BoundedLog | None) -> str | None:
    """Drain the pipes and close output.log; returns why capture stopped, or None."""
    capture_error: str | None = None
    if tee is not None:
        tee.finish()
        capture_error = tee.capture_error
    if log is not None:
        try:
            log.close()
        except OSError as exc:  # trimming to the cap needs room too
            capture_error = capture_error or capture_stopped(log, exc)
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
