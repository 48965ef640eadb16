"""A fork server for ``gitxp.sweep(fn, ...)``: children forked from a process with one thread.

``sweep`` runs ``fn`` in forked children so that ``fn`` may be any
callable (a closure, a lambda, a function of ``__main__``), which spawn and
forkserver could not pickle. Forking straight from the sweep, though, forks
a process with threads: the parent experiment's pyarrow import, its flush
thread, the other workers launching. A child forked while one of them held
a lock (an import half done is the common one) waits for it forever: the
API sweep test hung 1 run in 6 under pytest. :class:`Forker` forks once, when ``sweep`` is
called and before gitxp starts any thread, a server that only forks: each
child is forked from that single-threaded process, with the user's state as
it was at the call.

The server runs in its own process group, so a Ctrl-C at the terminal
reaches only the sweep, which forwards it to each child once (as it does to
``gitxp sweep``'s children). When the sweep dies, the server sees its pipe
close, sends SIGTERM to the children still running (recorded as
``interrupted``) and exits.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

_REQUEST = struct.Struct("!QQ")  # ticket, size of the pickled spec that follows
_REPLY = struct.Struct("!BQq")  # kind, ticket, pid or exit code
_STARTED, _ENDED = 1, 2
_STOP = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: The exit code reported for a child whose server is gone (as if killed with it).
_SERVER_GONE = -int(signal.SIGKILL)


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Child:
    """A running child as the sweep's signal forwarding sees it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid


class _Slot:
    def __init__(self, started: Callable[[Child], None]) -> None:
        self.started, self.done, self.code = started, threading.Event(), 0


class Forker:
    """Runs ``target(spec)`` in children forked from a single-threaded server process."""

    def __init__(self, target: Callable[[dict[str, Any]], None]) -> None:
        req_r, self._req_w = os.pipe()
        self._resp_r, resp_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the server: never returns
            os.close(self._req_w)
            os.close(self._resp_r)
            _serve(target, req_r, resp_w)
        os.close(req_r)
        os.close(resp_w)
        self.pid = pid
        self._lock = threading.Lock()
        self._tickets = 0
        self._slots: dict[int, _Slot] = {}
        self._gone = False
        self._reader = threading.Thread(target=self._read, name="gitxp-sweep-forker", daemon=True)
        self._reader.start()

    def run(self, spec: dict[str, Any], started: Callable[[Child], None] = lambda c: None) -> int:
        """Run one child to its end: its exit code (negative: the signal that ended it).

        ``started`` is called with the child once it runs (from another thread).
        """
        data = pickle.dumps(spec)
        with self._lock:
            if self._gone:
                return _SERVER_GONE
            self._tickets += 1
            slot = self._slots[self._tickets] = _Slot(started)
            try:
                _write_all(self._req_w, _REQUEST.pack(self._tickets, len(data)) + data)
            except BrokenPipeError:  # the server was killed: the reader ends every waiting slot
                del self._slots[self._tickets]
                return _SERVER_GONE
        slot.done.wait()
        return slot.code

    def _read(self) -> None:
        while (data := _read_exact(self._resp_r, _REPLY.size)) is not None:
            kind, ticket, value = _REPLY.unpack(data)
            with self._lock:
                slot = self._slots[ticket] if kind == _STARTED else self._slots.pop(ticket)
            if kind == _STARTED:
                try:
                    slot.started(Child(value))
                except Exception:  # noqa: BLE001 - a failing callback must not stop the replies of the others
                    traceback.print_exc()
            else:
                slot.code = value
                slot.done.set()
        with self._lock:  # the server died (killed): its children with it, or orphans now
            self._gone = True
            for slot in self._slots.values():
                slot.code = _SERVER_GONE
                slot.done.set()
            self._slots.clear()

    def close(self) -> None:
        """Let the server exit (once its children have) and reap it."""
        os.close(self._req_w)
        os.waitpid(self.pid, 0)
        self._reader.join()
        os.close(self._resp_r)


def _serve(target: Callable[[dict[str, Any]], None], req_r: int, resp_w: int) -> None:
    code = 0
    try:
        os.setpgid(0, 0)
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w)
        for s in _STOP:
            signal.signal(s, signal.SIG_IGN)  # the sweep forwards signals to the children; the server outlives them
        running: dict[int, int] = {}
        open_ = True
        while open_ or running:
            ready, _, _ = select.select([req_r, wake_r] if open_ else [wake_r], [], [], 1.0)
            if wake_r in ready:
                while True:
                    try:
                        if not os.read(wake_r, 512):
                            break
                    except BlockingIOError:
                        break
            while running:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                ticket = running.pop(pid, None)
                if ticket is not None:
                    _write_all(resp_w, _REPLY.pack(_ENDED, ticket, os.waitstatus_to_exitcode(status)))
            if req_r in ready:
                header = _read_exact(req_r, _REQUEST.size)
                ticket, size = _REQUEST.unpack(header) if header is not None else (0, 0)
                message = _read_exact(req_r, size) if header is not None else None
                if message is None:  # the sweep closed the pipe or died
                    open_ = False
                    for pid in running:
                        os.kill(pid, signal.SIGTERM)
                    continue
                spec = pickle.loads(message)  # noqa: S301 - our own parent, over a private pipe
                pid = os.fork()
                if pid == 0:
                    _child(target, spec, (req_r, resp_w, wake_r, wake_w))
                running[pid] = ticket
                _write_all(resp_w, _REPLY.pack(_STARTED, ticket, pid))
    except BaseException:  # noqa: BLE001 - nothing may escape a forked server into the sweep's code
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _child(target: Callable[[dict[str, Any]], None], spec: dict[str, Any], fds: tuple[int, ...]) -> None:
    code = 1
    stopped: list[int] = []

    def interrupt(signum: int, _frame: Any) -> None:
        """The first SIGINT, SIGTERM or SIGHUP interrupts ``fn`` (the run is ``interrupted``); repeats cannot cut the commit."""
        for s in _STOP:
            signal.signal(s, signal.SIG_IGN)
        stopped.append(signum)
        raise KeyboardInterrupt

    try:
        signal.set_wakeup_fd(-1)
        for fd in fds:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for s in _STOP:
            signal.signal(s, interrupt)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # as `gitxp sweep`'s children: never read the sweep's terminal
        os.close(devnull)
        target(spec)
        code = 0
    except KeyboardInterrupt:
        code = 128 + (stopped[0] if stopped else signal.SIGINT)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported like an uncaught exception, as the exit code
        traceback.print_exc()
    finally:
        try:
            threading._shutdown()  # type: ignore[attr-defined]  # wait for fn's non-daemon threads, as an exit would
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
